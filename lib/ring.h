/* SPDX-License-Identifier: MIT */
/*
 * ring.h - the only door to io_uring.
 *
 * Each pager thread owns one ring.  A request carries a 64-bit tag that
 * comes back with its completion; the pager encodes in it what finished.
 */
#ifndef UPG_RING_H
#define UPG_RING_H

#include <liburing.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

struct upg_ring {
	struct io_uring ring;
	bool fixed_buffers; /* buffers registered: reads use read_fixed */
	unsigned pending;   /* prepared but not yet submitted */
};

struct upg_completion {
	uint64_t tag;
	int32_t res;
	uint32_t flags;
};

int upg_ring_init(struct upg_ring *r, unsigned entries);
void upg_ring_exit(struct upg_ring *r);
/* Pin @n buffers of @size bytes at @base for fixed I/O (best effort). */
int upg_ring_register_buffers(struct upg_ring *r, void *base, size_t size,
			      unsigned n);
/* Read @len bytes at @off into buffer @index of the registered ones. */
int upg_ring_read(struct upg_ring *r, int fd, void *buf, unsigned index,
		  size_t len, uint64_t off, uint64_t tag);
/* Read into @n buffers (the iovec array must live until the submit). */
int upg_ring_readv(struct upg_ring *r, int fd, const struct iovec *iov,
		   unsigned n, uint64_t off, uint64_t tag);
int upg_ring_writev(struct upg_ring *r, int fd, const struct iovec *iov,
		    unsigned n, uint64_t off, uint64_t tag);
/* Multishot poll for POLLIN on @fd: one completion per wake-up. */
int upg_ring_poll(struct upg_ring *r, int fd, uint64_t tag);
int upg_ring_submit(struct upg_ring *r);
/* Collect up to @max completions without blocking. */
unsigned upg_ring_reap(struct upg_ring *r, struct upg_completion *out,
		       unsigned max);
/* Submit and block until a completion is ready or @timeout_ns (0: none). */
int upg_ring_wait(struct upg_ring *r, uint64_t timeout_ns);

#endif /* UPG_RING_H */
