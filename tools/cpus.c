/* SPDX-License-Identifier: MIT */
/*
 * cpus.c - which CPUs `upager run --cpus' runs the program on.
 *
 * A major fault served through userfaultfd wakes three threads where the
 * kernel's swap wakes one: the handler (the program faulted), the handler
 * again (its read completed: the completion interrupt lands on one fixed
 * CPU for a single-queue disk) and the faulting thread (its page is in).
 * On a virtual machine whose idle vCPUs halt instead of polling, each
 * wake-up of another, halted vCPU goes through the host and costs tens of
 * microseconds.  Run on the CPU that takes the swap device's interrupts,
 * the program and the pager's threads, which inherit its affinity, make
 * all three wake-ups local (README, *Guest idle polling*).
 *
 * "swap-irq" finds that CPU: the block device of the swap store is looked
 * up in /sys/dev/block, and from there up through its parents for the
 * first directory whose name begins the name of interrupts in
 * /proc/interrupts -- "virtio1" of virtio1-req.0, "nvme0" of nvme0q1 --
 * and the CPUs are the effective affinity of those interrupts that have
 * fired (a device's configuration interrupt is left out).
 */
#include "config.h"

#include "cpus.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

static int fail(char *err, size_t errlen, int ret, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int fail(char *err, size_t errlen, int ret, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return ret;
}

static bool parse_cpu(const char **p, unsigned long *cpu)
{
	char *end;

	if (!isdigit((unsigned char)**p))
		return false;
	errno = 0;
	*cpu = strtoul(*p, &end, 10);
	if (errno || *cpu >= CPU_SETSIZE)
		return false;
	*p = end;
	return true;
}

int cpus_parse_list(const char *list, cpu_set_t *set, char *err, size_t errlen)
{
	const char *p = list;

	CPU_ZERO(set);
	for (;;) {
		unsigned long lo, hi;

		if (!parse_cpu(&p, &lo))
			break;
		hi = lo;
		if (*p == '-') {
			p++;
			if (!parse_cpu(&p, &hi) || hi < lo)
				break;
		}
		for (unsigned long c = lo; c <= hi; c++)
			CPU_SET(c, set);
		if (*p == '\0')
			return 0;
		if (*p++ != ',')
			break;
	}
	return fail(err, errlen, -EINVAL,
		    "--cpus '%s': not a CPU list like 1, 0,2 or 0-3 (CPUs below %d), "
		    "nor swap-irq", list, CPU_SETSIZE);
}

void cpus_format(const cpu_set_t *set, char *out, size_t outlen)
{
	size_t n = 0;

	out[0] = '\0';
	for (int c = 0; c < CPU_SETSIZE && n < outlen; c++) {
		int last = c;

		if (!CPU_ISSET(c, set))
			continue;
		while (last + 1 < CPU_SETSIZE && CPU_ISSET(last + 1, set))
			last++;
		n += (size_t)snprintf(out + n, outlen - n, "%s%d", n ? "," : "", c);
		if (last > c && n < outlen)
			n += (size_t)snprintf(out + n, outlen - n, "-%d", last);
		c = last;
	}
}

/* Does interrupt @name belong to the device whose sysfs name is @dev? */
static bool irq_of(const char *name, const char *dev)
{
	size_t n = strlen(dev);

	if (strncmp(name, dev, n))
		return false;
	/* virtio1-req.0, nvme0q1; not virtio10-req.0 for virtio1 */
	if (name[n] == '-')
		return !strstr(name + n, "config");
	return name[n] == 'q' && isdigit((unsigned char)name[n + 1]);
}

/* Add the effective affinity of interrupt @irq to @set. */
static bool add_irq_cpus(unsigned irq, cpu_set_t *set)
{
	static const char *const files[] = { "effective_affinity_list",
					      "smp_affinity_list" };
	char path[64], list[256], err[128];
	cpu_set_t one;

	for (unsigned i = 0; i < 2; i++) {
		FILE *f;

		snprintf(path, sizeof(path), "/proc/irq/%u/%s", irq, files[i]);
		f = fopen(path, "r");
		if (!f)
			continue;
		if (!fgets(list, sizeof(list), f)) {
			fclose(f);
			continue;
		}
		fclose(f);
		list[strcspn(list, "\n")] = '\0';
		if (cpus_parse_list(list, &one, err, sizeof(err)) == 0) {
			CPU_OR(set, set, &one);
			return true;
		}
	}
	return false;
}

/*
 * The interrupts of device @dev that have fired, from /proc/interrupts:
 * their CPUs into @set, their names into @what.  Returns how many.
 */
static unsigned device_irqs(const char *dev, cpu_set_t *set, char *what,
			    size_t whatlen)
{
	FILE *f = fopen("/proc/interrupts", "r");
	char *line = NULL;
	size_t cap = 0, n = 0;
	unsigned ncpus = 0, found = 0;

	if (!f)
		return 0;
	if (getline(&line, &cap, f) > 0)
		for (char *t = strtok(line, " \t\n"); t; t = strtok(NULL, " \t\n"))
			ncpus += !strncmp(t, "CPU", 3);
	while (getline(&line, &cap, f) > 0) {
		char *p = line, *end, *name = NULL;
		unsigned long irq, fired = 0;

		irq = strtoul(p, &end, 10);
		if (end == p || *end != ':')
			continue; /* NMI:, LOC:, ... */
		p = end + 1;
		for (unsigned c = 0; c < ncpus; c++) {
			fired += strtoul(p, &end, 10);
			p = end;
		}
		for (char *t = strtok(p, " \t\n"); t; t = strtok(NULL, " \t\n"))
			name = t; /* the action, last on the line */
		if (!name || !fired || !irq_of(name, dev) ||
		    !add_irq_cpus((unsigned)irq, set))
			continue;
		found++;
		if (n < whatlen)
			n += (size_t)snprintf(what + n, whatlen - n, "%s%s",
					      n ? ", " : "", name);
	}
	free(line);
	fclose(f);
	return found;
}

int cpus_of_swap_irq(const char *path, cpu_set_t *set, char *what,
		     size_t whatlen, char *err, size_t errlen)
{
	char sys[64], real[PATH_MAX], *slash;
	struct stat st;
	dev_t dev;

	CPU_ZERO(set);
	if (stat(path, &st) < 0)
		return fail(err, errlen, -errno, "--cpus swap-irq: %s: %s", path,
			    strerror(errno));
	dev = S_ISBLK(st.st_mode) ? st.st_rdev : st.st_dev;
	snprintf(sys, sizeof(sys), "/sys/dev/block/%u:%u", major(dev), minor(dev));
	if (!realpath(sys, real))
		return fail(err, errlen, -ENODEV,
			    "--cpus swap-irq: %s is on no block device (%u:%u): "
			    "give a CPU list", path, major(dev), minor(dev));
	/* vda1, vda, block, virtio1, ...: the nearest with interrupts */
	while ((slash = strrchr(real, '/')) && slash != real) {
		if (device_irqs(slash + 1, set, what, whatlen)) {
			size_t n = strlen(what);

			snprintf(what + n, n < whatlen ? whatlen - n : 0,
				 " of %s, device %u:%u", path, major(dev),
				 minor(dev));
			return 0;
		}
		*slash = '\0';
	}
	return fail(err, errlen, -ENODEV,
		    "--cpus swap-irq: found no interrupt of the device of %s "
		    "(%u:%u) in /proc/interrupts: give a CPU list", path,
		    major(dev), minor(dev));
}
