/* SPDX-License-Identifier: MIT */
/*
 * uffd.c - userfaultfd ioctls.
 *
 * EAGAIN means the mm is changing: a non-cooperative event (REMOVE, UNMAP,
 * REMAP) is queued and not yet read.  It is returned to the caller, never
 * spun on here: a fault handler that spun would never read the event that
 * ends it.  Handlers defer the fault; other threads retry (UFFD_RETRY).
 * EEXIST from a resolve ioctl means that
 * the range is already populated -- someone resolved it first -- and is
 * returned as is: the callers decide what "already resolved" means for them.
 */
#include "internal.h"
#include "uffd.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

static int uffd_ioctl(int fd, unsigned long req, void *arg)
{
	return ioctl(fd, req, arg) == 0 ? 0 : -errno;
}

static int open_raw(char *why, size_t whylen)
{
	int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	int err;

	if (fd >= 0)
		return fd;
	err = errno;
	/*
	 * With vm.unprivileged_userfaultfd=0, a process without
	 * CAP_SYS_PTRACE may still use the device node if it can open it.
	 */
	if (err == EPERM || err == ENOSYS) {
		int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);

		if (dev >= 0) {
			fd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
			close(dev);
			if (fd >= 0)
				return fd;
		}
	}
	if (err == EPERM)
		snprintf(why, whylen,
			 "userfaultfd is not permitted for this process; run as root, "
			 "or 'sysctl -w vm.unprivileged_userfaultfd=1', or give the "
			 "user access to /dev/userfaultfd");
	else if (err == ENOSYS)
		snprintf(why, whylen,
			 "this kernel has no userfaultfd (CONFIG_USERFAULTFD), or a "
			 "seccomp filter blocks it");
	else
		snprintf(why, whylen, "userfaultfd() failed: %s", upg_strerror(err));
	return -err;
}

int upg_uffd_open(struct upg_uffd *u, uint64_t wanted, char *why,
		  size_t whylen)
{
	struct uffdio_api api;
	int fd, ret;

	memset(u, 0, sizeof(*u));
	u->fd = -1;
	fd = open_raw(why, whylen);
	if (fd < 0)
		return fd;

	/* Ask what the kernel has, then ask for what we want of it. */
	memset(&api, 0, sizeof(api));
	api.api = UFFD_API;
	ret = uffd_ioctl(fd, UFFDIO_API, &api);
	if (ret) {
		snprintf(why, whylen, "UFFDIO_API failed: %s", upg_strerror(-ret));
		close(fd);
		return ret;
	}
	close(fd);
	fd = open_raw(why, whylen);
	if (fd < 0)
		return fd;
	{
		uint64_t offered = api.features;

		memset(&api, 0, sizeof(api));
		api.api = UFFD_API;
		api.features = offered & wanted;
	}
	ret = uffd_ioctl(fd, UFFDIO_API, &api);
	if (ret) {
		snprintf(why, whylen, "UFFDIO_API (features) failed: %s",
			 upg_strerror(-ret));
		close(fd);
		return ret;
	}
	u->fd = fd;
	u->features = api.features;
	u->has_wp = api.features & UFFD_FEATURE_PAGEFAULT_FLAG_WP;
	u->has_move = api.features & UFFD_FEATURE_MOVE;
	u->has_poison = api.features & UFFD_FEATURE_POISON;
	if (!u->has_wp) {
		snprintf(why, whylen,
			 "this kernel lacks userfaultfd write-protect on anonymous "
			 "memory (Linux 5.10 or later is needed)");
		close(fd);
		u->fd = -1;
		return -ENOTSUP;
	}
	return 0;
}

void upg_uffd_close(struct upg_uffd *u)
{
	if (u->fd >= 0)
		close(u->fd);
	u->fd = -1;
}

int upg_uffd_register(struct upg_uffd *u, uintptr_t start, size_t len, bool wp)
{
	struct uffdio_register reg = {
		.range = { .start = start, .len = len },
		.mode = UFFDIO_REGISTER_MODE_MISSING |
			(wp ? UFFDIO_REGISTER_MODE_WP : 0),
	};

	return uffd_ioctl(u->fd, UFFDIO_REGISTER, &reg);
}

int upg_uffd_unregister(struct upg_uffd *u, uintptr_t start, size_t len)
{
	struct uffdio_range r = { .start = start, .len = len };

	return uffd_ioctl(u->fd, UFFDIO_UNREGISTER, &r);
}

/*
 * Debug builds: every Nth fill of more than one system page stops halfway
 * and reports -EAGAIN, as the kernel does when an event is queued midway.
 * Returns the length to ask for.
 */
static size_t fill_inject_split(struct upg_uffd *u, size_t len, bool *split)
{
	size_t sys_page = (size_t)sysconf(_SC_PAGESIZE);

	*split = UPG_DEBUG && u->inject_fill_split_every && len > sys_page &&
		 __atomic_add_fetch(&u->fills, 1, __ATOMIC_RELAXED) %
		 u->inject_fill_split_every == 0;
	return *split ? (len / 2 + sys_page - 1) & ~(sys_page - 1) : len;
}

/*
 * A pager page larger than a system page is resolved by one ioctl over
 * several system pages, which the kernel may complete only in part: it
 * maps a prefix and reports -EAGAIN when an event is queued midway (or
 * any error, once it made progress).  The ioctl is then repeated from
 * where it stopped, *@done bytes in, and an error is returned only by an
 * attempt that made no progress.  @inject: the debug builds' split
 * (upg_uffd_fill() only).
 */
static int fill_range(struct upg_uffd *u, enum upg_fill how, uintptr_t dst,
		      const void *src, size_t len, bool wp, bool wake,
		      bool inject, size_t *done)
{
	while (*done < len) {
		uintptr_t d = dst + *done, s = (uintptr_t)src + *done;
		bool split = false;
		size_t want = inject ? fill_inject_split(u, len - *done, &split)
				     : len - *done;
		__s64 got;
		int ret;

		if (how == UPG_FILL_COPY) {
			struct uffdio_copy c = {
				.dst = d, .src = s, .len = want,
				.mode = (wp ? UFFDIO_COPY_MODE_WP : 0) |
					(wake ? 0 : UFFDIO_COPY_MODE_DONTWAKE),
			};

			ret = uffd_ioctl(u->fd, UFFDIO_COPY, &c);
			got = c.copy;
		} else if (how == UPG_FILL_ZERO) {
			struct uffdio_zeropage z = {
				.range = { .start = d, .len = want },
				.mode = wake ? 0 : UFFDIO_ZEROPAGE_MODE_DONTWAKE,
			};

			ret = uffd_ioctl(u->fd, UFFDIO_ZEROPAGE, &z);
			got = z.zeropage;
		} else {
			size_t moved;

			ret = upg_uffd_move_part(u, d, s, want, wake, &moved);
			got = moved ? (__s64)moved : ret;
		}
		if (got > 0)
			*done += (size_t)got;
		if (split && ret == 0)
			return -EAGAIN; /* with half of it mapped */
		if (got <= 0)
			return ret ? ret : -EIO;
	}
	return 0;
}

int upg_uffd_fill(struct upg_uffd *u, enum upg_fill how, uintptr_t dst,
		  const void *src, size_t len, bool wp, size_t *done)
{
	return fill_range(u, how, dst, src, len, wp, true, true, done);
}

int upg_uffd_move_whole(struct upg_uffd *u, uintptr_t dst, uintptr_t src,
			size_t len, size_t *moved)
{
	int ret;

	while ((ret = fill_range(u, UPG_FILL_MOVE, dst, (const void *)src, len,
				 false, false, false, moved)) == -EAGAIN &&
	       *moved)
		sched_yield();
	return ret;
}

int upg_uffd_copy(struct upg_uffd *u, uintptr_t dst, const void *src,
		  size_t len, bool wp, bool wake)
{
	size_t done = 0;

	return fill_range(u, UPG_FILL_COPY, dst, src, len, wp, wake, false, &done);
}

/*
 * One UFFDIO_COPY from @src, or UFFDIO_ZEROPAGE when @src is NULL, no
 * retry, waking whoever waits on the range: returns how many bytes from
 * @dst on are now mapped (a prefix of the range, possibly all of it), or a
 * negative error when not one page was.  For a caller that holds the page
 * locks of a run and must not wait for a queued event to be read (the
 * handler reading it may need those very locks): it keeps the prefix and
 * lets the rest go.
 */
long upg_uffd_map_prefix(struct upg_uffd *u, uintptr_t dst, const void *src,
			 size_t len)
{
	__s64 done;
	int ret;

	if (src) {
		struct uffdio_copy c = {
			.dst = dst, .src = (uintptr_t)src, .len = len,
		};

		ret = uffd_ioctl(u->fd, UFFDIO_COPY, &c);
		done = c.copy;
	} else {
		struct uffdio_zeropage z = { .range = { .start = dst, .len = len } };

		ret = uffd_ioctl(u->fd, UFFDIO_ZEROPAGE, &z);
		done = z.zeropage;
	}
	if (done > 0)
		return (long)done;
	return ret ? ret : -EIO;
}

int upg_uffd_zeropage(struct upg_uffd *u, uintptr_t dst, size_t len, bool wake)
{
	size_t done = 0;

	return fill_range(u, UPG_FILL_ZERO, dst, NULL, len, false, wake, false,
			  &done);
}

/*
 * Did the move of the page at @src to @dst happen although the ioctl
 * reported no progress?  Linux 6.18 fails a UFFDIO_MOVE after it moved
 * the page (seen under python3 in bench/programs: the page then counted
 * as still in place, with nothing mapped, and read back as zero).  Its
 * move_pages() keeps the -EAGAIN of an attempt that found the page
 * changing under it; when the retry moves the page, the next round, still
 * failed, finds the destination taken: -EEXIST, with the pages before it
 * as the count.  (When the page was zapped instead, a move that passes
 * over holes loops for ever: reclaim.c, spans.)  The destination
 * holds a page and the source none: then it moved.
 * Returns the bytes moved (one system page) or 0.  Two system calls, on
 * the error path only.
 */
static size_t moved_anyway(uintptr_t dst, uintptr_t src)
{
	size_t sys_page = (size_t)sysconf(_SC_PAGESIZE);
	unsigned char d = 0, s = 0;

	if (mincore((void *)dst, sys_page, &d) ||
	    mincore((void *)src, sys_page, &s))
		return 0;
	return (d & 1) && !(s & 1) ? sys_page : 0;
}

static int move_part(struct upg_uffd *u, uintptr_t dst, uintptr_t src,
		     size_t len, __u64 mode, size_t *moved)
{
	*moved = 0;
	while (len > 0) {
		struct uffdio_move m = {
			.dst = dst,
			.src = src,
			.len = len,
			.mode = mode,
		};
		int ret = uffd_ioctl(u->fd, UFFDIO_MOVE, &m);
		size_t got;

		if (UPG_DEBUG && ret == 0 && u->inject_move_error_every &&
		    __atomic_add_fetch(&u->moves, 1, __ATOMIC_RELAXED) %
		    u->inject_move_error_every == 0) {
			/* debug builds: as the kernel did */
			ret = -EAGAIN;
			m.move = -EAGAIN;
		}
		if (ret && m.move <= 0 && (got = moved_anyway(dst, src))) {
			upg_warn_once("UFFDIO_MOVE failed (%s) after moving a "
				      "page; the page is kept", upg_strerror(-ret));
			ret = 0;
			m.move = (__s64)(got < len ? got : len);
		}
		if (m.move > 0 && (size_t)m.move < len) {
			dst += (size_t)m.move;
			src += (size_t)m.move;
			len -= (size_t)m.move;
			*moved += (size_t)m.move;
			continue;
		}
		if (ret)
			return ret;
		if (m.move != (__s64)len)
			return m.move < 0 ? (int)m.move : -EIO;
		*moved += len;
		len = 0;
	}
	return 0;
}

int upg_uffd_move_part(struct upg_uffd *u, uintptr_t dst, uintptr_t src,
		       size_t len, bool wake, size_t *moved)
{
	return move_part(u, dst, src, len, wake ? 0 : UFFDIO_MOVE_MODE_DONTWAKE,
			 moved);
}

int upg_uffd_move(struct upg_uffd *u, uintptr_t dst, uintptr_t src,
		  size_t len, bool wake)
{
	size_t moved;

	return upg_uffd_move_part(u, dst, src, len, wake, &moved);
}

int upg_uffd_writeprotect(struct upg_uffd *u, uintptr_t start, size_t len,
			  bool protect)
{
	struct uffdio_writeprotect w = {
		.range = { .start = start, .len = len },
		.mode = protect ? UFFDIO_WRITEPROTECT_MODE_WP : 0,
	};

	return uffd_ioctl(u->fd, UFFDIO_WRITEPROTECT, &w);
}

int upg_uffd_wake(struct upg_uffd *u, uintptr_t start, size_t len)
{
	struct uffdio_range r = { .start = start, .len = len };

	return uffd_ioctl(u->fd, UFFDIO_WAKE, &r);
}

int upg_uffd_poison(struct upg_uffd *u, uintptr_t start, size_t len)
{
	struct uffdio_poison p = {
		.range = { .start = start, .len = len },
	};

	if (!u->has_poison)
		return -ENOTSUP;
	return uffd_ioctl(u->fd, UFFDIO_POISON, &p);
}
