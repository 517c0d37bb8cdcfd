/* SPDX-License-Identifier: MIT */
/*
 * uffd.h - the only door to userfaultfd.  Every ioctl the pager issues goes
 * through these wrappers, which return 0 or -errno and retry EAGAIN.
 *
 * Debian 12's headers (Linux 6.1) predate UFFDIO_MOVE, UFFDIO_POISON and
 * WP_ASYNC, while the running kernel may well have them: the constants are
 * defined here and their presence is decided at run time from UFFDIO_API.
 */
#ifndef UPG_UFFD_H
#define UPG_UFFD_H

#include <linux/userfaultfd.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sched.h>
#include <sys/ioctl.h>

#ifndef UFFD_FEATURE_WP_UNPOPULATED
#define UFFD_FEATURE_WP_UNPOPULATED (1 << 13)
#endif
#ifndef UFFD_FEATURE_POISON
#define UFFD_FEATURE_POISON (1 << 14)
#endif
#ifndef UFFD_FEATURE_WP_ASYNC
#define UFFD_FEATURE_WP_ASYNC (1 << 15)
#endif
#ifndef UFFD_FEATURE_MOVE
#define UFFD_FEATURE_MOVE (1 << 16)
#endif

#ifndef _UFFDIO_MOVE
#define _UFFDIO_MOVE (0x05)
struct uffdio_move {
	__u64 dst;
	__u64 src;
	__u64 len;
#define UFFDIO_MOVE_MODE_DONTWAKE ((__u64)1 << 0)
	__u64 mode;
	__s64 move;
};
#define UFFDIO_MOVE _IOWR(UFFDIO, _UFFDIO_MOVE, struct uffdio_move)
#endif

#ifndef _UFFDIO_POISON
#define _UFFDIO_POISON (0x08)
struct uffdio_poison {
	struct uffdio_range range;
#define UFFDIO_POISON_MODE_DONTWAKE ((__u64)1 << 0)
	__u64 mode;
	__s64 updated;
};
#define UFFDIO_POISON _IOWR(UFFDIO, _UFFDIO_POISON, struct uffdio_poison)
#endif

/*
 * Retry a call that returned -EAGAIN.  Only for threads that are not fault
 * handlers: a handler must go back to reading events instead.
 */
#define UFFD_RETRY(call)                                                     \
	({                                                                   \
		int r_;                                                      \
		while ((r_ = (call)) == -EAGAIN)                             \
			sched_yield();                                       \
		r_;                                                          \
	})

/* What the kernel offered when the descriptor was opened. */
struct upg_uffd {
	int fd;
	uint64_t features; /* UFFD_FEATURE_* granted */
	bool has_wp;       /* write-protect on anonymous memory */
	bool has_move;
	bool has_poison;
	/* debug builds: every Nth move reports an error after it moved */
	unsigned inject_move_error_every, moves;
	/* debug builds: every Nth multi-page fill stops halfway, -EAGAIN */
	unsigned inject_fill_split_every, fills;
};

/*
 * Open a userfaultfd (syscall, else /dev/userfaultfd), non-blocking, and
 * negotiate the features the pager uses.  Returns -EPERM/-ENOSYS/... when
 * the process may not use it; @why then says why and how to fix it.
 */
int upg_uffd_open(struct upg_uffd *u, uint64_t wanted, char *why,
		  size_t whylen);

/* Features asked for the regions' descriptor (those the kernel has). */
#define UPG_UFFD_REGION_FEATURES                                             \
	(UFFD_FEATURE_PAGEFAULT_FLAG_WP | UFFD_FEATURE_EVENT_REMAP |          \
	 UFFD_FEATURE_EVENT_REMOVE | UFFD_FEATURE_EVENT_UNMAP |               \
	 UFFD_FEATURE_THREAD_ID | UFFD_FEATURE_POISON | UFFD_FEATURE_MOVE)
/* The staging area's: no events, SIGBUS instead of waiting. */
#define UPG_UFFD_STAGING_FEATURES                                            \
	(UFFD_FEATURE_PAGEFAULT_FLAG_WP | UFFD_FEATURE_SIGBUS |              \
	 UFFD_FEATURE_MOVE)
void upg_uffd_close(struct upg_uffd *u);

int upg_uffd_register(struct upg_uffd *u, uintptr_t start, size_t len, bool wp);
int upg_uffd_unregister(struct upg_uffd *u, uintptr_t start, size_t len);
/*
 * Map the missing range [@dst, @dst + @len), a pager page, and wake whoever
 * waits on it: by copy from @src (write-protected if @wp), as the zero page
 * (@src unused), or by moving @src's pages over.  It starts *@done bytes
 * in, where an earlier call stopped, and adds what it maps to *@done.
 * Returns 0 once all of it is mapped, else the error of an attempt that
 * mapped nothing: -EAGAIN (an event is queued; *@done may be anywhere
 * from 0 to a whole prefix), -EEXIST (mapped already), ...
 */
enum upg_fill { UPG_FILL_COPY, UPG_FILL_ZERO, UPG_FILL_MOVE };
int upg_uffd_fill(struct upg_uffd *u, enum upg_fill how, uintptr_t dst,
		  const void *src, size_t len, bool wp, size_t *done);
/*
 * Move @len bytes of present pages from @src to the missing range at @dst,
 * no wake-up, for a descriptor without events: a move that stops partway
 * with -EAGAIN goes on (*@moved bytes moved in all).  Returns 0, or the
 * error that stopped it.
 */
int upg_uffd_move_whole(struct upg_uffd *u, uintptr_t dst, uintptr_t src,
			size_t len, size_t *moved);
/* Copy @len bytes from @src into the missing range at @dst. */
int upg_uffd_copy(struct upg_uffd *u, uintptr_t dst, const void *src,
		  size_t len, bool wp, bool wake);
long upg_uffd_map_prefix(struct upg_uffd *u, uintptr_t dst, const void *src,
			 size_t len);
int upg_uffd_zeropage(struct upg_uffd *u, uintptr_t dst, size_t len, bool wake);
/* Move present pages from @src to the missing range @dst (zero copy). */
int upg_uffd_move(struct upg_uffd *u, uintptr_t dst, uintptr_t src,
		  size_t len, bool wake);
/* ... and how many bytes of the range moved before an error stopped it */
int upg_uffd_move_part(struct upg_uffd *u, uintptr_t dst, uintptr_t src,
		       size_t len, bool wake, size_t *moved);
/* Set (@protect) or clear write protection; clearing wakes the waiters. */
int upg_uffd_writeprotect(struct upg_uffd *u, uintptr_t start, size_t len,
			  bool protect);
int upg_uffd_wake(struct upg_uffd *u, uintptr_t start, size_t len);
/* Make accesses to the range raise SIGBUS (Linux 6.6+). */
int upg_uffd_poison(struct upg_uffd *u, uintptr_t start, size_t len);

#endif /* UPG_UFFD_H */
