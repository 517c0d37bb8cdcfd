/* SPDX-License-Identifier: MIT */
/*
 * ring.c - io_uring wrappers.
 *
 * Submissions are batched: the prep functions only fill SQEs, and one
 * io_uring_enter per loop iteration hands them all to the kernel.  When the
 * submission queue is full it is flushed first, so a prep never fails for
 * lack of room.
 */
#include "internal.h"
#include "ring.h"

#include <errno.h>
#include <poll.h>
#include <string.h>

int upg_ring_init(struct upg_ring *r, unsigned entries)
{
	memset(r, 0, sizeof(*r));
	return io_uring_queue_init(entries, &r->ring, 0);
}

void upg_ring_exit(struct upg_ring *r)
{
	io_uring_queue_exit(&r->ring);
}

int upg_ring_register_buffers(struct upg_ring *r, void *base, size_t size,
			      unsigned n)
{
	struct iovec iov[256];
	int ret;

	if (n > ARRAY_SIZE(iov))
		return -EINVAL;
	for (unsigned i = 0; i < n; i++) {
		iov[i].iov_base = (char *)base + (size_t)i * size;
		iov[i].iov_len = size;
	}
	ret = io_uring_register_buffers(&r->ring, iov, n);
	r->fixed_buffers = ret == 0;
	return ret;
}

static struct io_uring_sqe *get_sqe(struct upg_ring *r)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&r->ring);

	if (!sqe) {
		io_uring_submit(&r->ring);
		r->pending = 0;
		sqe = io_uring_get_sqe(&r->ring);
	}
	if (sqe)
		r->pending++;
	return sqe;
}

int upg_ring_read(struct upg_ring *r, int fd, void *buf, unsigned index,
		  size_t len, uint64_t off, uint64_t tag)
{
	struct io_uring_sqe *sqe = get_sqe(r);

	if (!sqe)
		return -EBUSY;
	if (r->fixed_buffers)
		io_uring_prep_read_fixed(sqe, fd, buf, (unsigned)len, off,
					 (int)index);
	else
		io_uring_prep_read(sqe, fd, buf, (unsigned)len, off);
	io_uring_sqe_set_data64(sqe, tag);
	return 0;
}

int upg_ring_readv(struct upg_ring *r, int fd, const struct iovec *iov,
		   unsigned n, uint64_t off, uint64_t tag)
{
	struct io_uring_sqe *sqe = get_sqe(r);

	if (!sqe)
		return -EBUSY;
	io_uring_prep_readv(sqe, fd, iov, n, off);
	io_uring_sqe_set_data64(sqe, tag);
	return 0;
}

int upg_ring_writev(struct upg_ring *r, int fd, const struct iovec *iov,
		    unsigned n, uint64_t off, uint64_t tag)
{
	struct io_uring_sqe *sqe = get_sqe(r);

	if (!sqe)
		return -EBUSY;
	io_uring_prep_writev(sqe, fd, iov, n, off);
	io_uring_sqe_set_data64(sqe, tag);
	return 0;
}

int upg_ring_poll(struct upg_ring *r, int fd, uint64_t tag)
{
	struct io_uring_sqe *sqe = get_sqe(r);

	if (!sqe)
		return -EBUSY;
	io_uring_prep_poll_multishot(sqe, fd, POLLIN);
	io_uring_sqe_set_data64(sqe, tag);
	return 0;
}

int upg_ring_submit(struct upg_ring *r)
{
	int ret;

	if (!r->pending)
		return 0;
	ret = io_uring_submit(&r->ring);
	if (ret >= 0)
		r->pending = 0;
	return ret < 0 ? ret : 0;
}

unsigned upg_ring_reap(struct upg_ring *r, struct upg_completion *out,
		       unsigned max)
{
	struct io_uring_cqe *cqe;
	unsigned n = 0;

	while (n < max && io_uring_peek_cqe(&r->ring, &cqe) == 0) {
		out[n].tag = io_uring_cqe_get_data64(cqe);
		out[n].res = cqe->res;
		out[n].flags = cqe->flags;
		io_uring_cqe_seen(&r->ring, cqe);
		n++;
	}
	return n;
}

int upg_ring_wait(struct upg_ring *r, uint64_t timeout_ns)
{
	struct io_uring_cqe *cqe;
	struct __kernel_timespec ts = {
		.tv_sec = (long long)(timeout_ns / 1000000000ULL),
		.tv_nsec = (long long)(timeout_ns % 1000000000ULL),
	};
	int ret;

	r->pending = 0;
	/* The CQE is left in the ring for upg_ring_reap(). */
	ret = io_uring_submit_and_wait_timeout(&r->ring, &cqe, 1,
					       timeout_ns ? &ts : NULL, NULL);
	if (ret == -ETIME || ret == -EINTR)
		return 0;
	return ret < 0 ? ret : 0;
}
