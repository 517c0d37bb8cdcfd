/* SPDX-License-Identifier: MIT */
/* cpus.c: the CPUs of `upager run --cpus' */
#ifndef UPAGER_TOOLS_CPUS_H
#define UPAGER_TOOLS_CPUS_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <sched.h>
#include <stddef.h>

/*
 * A CPU list as taskset(1) takes it ("1", "0,2", "0-3,6") into @set.
 * Returns 0, or -EINVAL with a message in @err.
 */
int cpus_parse_list(const char *list, cpu_set_t *set, char *err, size_t errlen);

/*
 * The CPUs that take the completion interrupts of the block device holding
 * @path (the swap file's directory, or the swap file or device itself).
 * On success, @what names them ("virtio1-req.0 of /var/tmp, device 254:0").
 * Returns 0, or a negative errno with a message in @err.
 */
int cpus_of_swap_irq(const char *path, cpu_set_t *set, char *what,
		     size_t whatlen, char *err, size_t errlen);

/* @set as a list ("0-1,3") into @out. */
void cpus_format(const cpu_set_t *set, char *out, size_t outlen);

#endif
