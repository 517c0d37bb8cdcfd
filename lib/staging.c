/* SPDX-License-Identifier: MIT */
/*
 * staging.c - the staging area: one page-sized slot per frame, where an
 * INACTIVE or WRITEBACK page lives while it is unmapped from its region.
 *
 * A slot is EMPTY (no page behind it), holds the page's DATA, or is STALE:
 * a physical page whose contents no longer matter (written to swap, or
 * copied back into the region).  A stale slot must be emptied before it is
 * filled again -- UFFDIO_MOVE and UFFDIO_COPY only fill an empty one -- and
 * emptying is a MADV_DONTNEED, whose TLB flush interrupts every CPU that
 * runs the program.  One flush per page was the largest single cost of a
 * paging workload, so stale slots are queued and zapped together: with
 * process_madvise() on the process itself (Linux 6.13+), one system call
 * and one TLB flush for the whole batch.
 *
 * The queue is small and bounded (stale pages are memory the program does
 * not see: they count as slack over the budget), and a slot is taken off it
 * before it is filled: staging_make_empty() flushes the queue if the slot
 * is on it.  Slot states change only under zap_lock, and a slot is filled
 * only by the owner of its frame, after staging_make_empty(), so a batched
 * zap never meets a slot that holds data.
 */
#include "pager.h"

#include <errno.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

/* "The calling process" for pidfd system calls (Linux 6.15+). */
#define PIDFD_SELF_PROCESS (-20000)
#define ZAP_QUEUE_MAX 256

static long self_madvise(struct upg_runtime *rt, const struct iovec *iov,
			 size_t n)
{
	return syscall(SYS_process_madvise, rt->zap_pidfd, iov, n, MADV_DONTNEED, 0);
}

int staging_init(struct upg_runtime *rt)
{
	struct iovec probe;

	rt->zap_pidfd = -1;
	rt->staging_bytes = (size_t)rt->nframes * rt->page_size;
	rt->staging = mmap(NULL, rt->staging_bytes, PROT_READ | PROT_WRITE,
			   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (rt->staging == MAP_FAILED) {
		rt->staging = NULL;
		return -ENOMEM;
	}
	/* Same layout as the regions, so that pages move between them. */
	madvise(rt->staging, rt->staging_bytes, MADV_NOHUGEPAGE);

	pthread_mutex_init(&rt->zap_lock, NULL);
	/* stale pages are slack over the budget: at most 1/64 of it */
	rt->zap_cap = rt->budget_frames / 64;
	if (rt->zap_cap > ZAP_QUEUE_MAX)
		rt->zap_cap = ZAP_QUEUE_MAX;
	if (rt->zap_cap < 1)
		rt->zap_cap = 1;
	rt->nzap = 0;

	/* Probe on an empty slot: zapping nothing is harmless. */
	probe = (struct iovec){ rt->staging, rt->page_size };
	rt->zap_pidfd = PIDFD_SELF_PROCESS;
	if (self_madvise(rt, &probe, 1) < 0) {
		rt->zap_pidfd = (int)syscall(SYS_pidfd_open, getpid(), 0);
		if (rt->zap_pidfd >= 0 && self_madvise(rt, &probe, 1) < 0) {
			close(rt->zap_pidfd);
			rt->zap_pidfd = -1;
		}
	}
	rt->zap_owner = getpid();
	return 0;
}

void staging_destroy(struct upg_runtime *rt)
{
	if (!rt->staging)
		return;
	munmap(rt->staging, rt->staging_bytes);
	rt->staging = NULL;
	if (rt->zap_pidfd >= 0)
		close(rt->zap_pidfd);
	rt->zap_pidfd = -1;
}

/* Zap every queued slot; zap_lock held. */
static void zap_queue_locked(struct upg_runtime *rt)
{
	struct iovec iov[ZAP_QUEUE_MAX];
	size_t n = 0;
	long done = -1;

	for (unsigned i = 0; i < rt->nzap; i++) {
		char *s = frame_staging(rt, rt->zapq[i]);

		/* neighbouring slots merge: fewer ranges to walk */
		if (n && (char *)iov[n - 1].iov_base + iov[n - 1].iov_len == s)
			iov[n - 1].iov_len += rt->page_size;
		else
			iov[n++] = (struct iovec){ s, rt->page_size };
	}
	/* a pidfd_open()ed descriptor names the parent in a fork child */
	if (rt->zap_pidfd != -1 &&
	    (rt->zap_pidfd == PIDFD_SELF_PROCESS || getpid() == rt->zap_owner))
		done = self_madvise(rt, iov, n);
	if (done < 0) {
		for (size_t i = 0; i < n; i++)
			madvise(iov[i].iov_base, iov[i].iov_len, MADV_DONTNEED);
	} else {
		/* a partial result (cannot happen on our own mapping): finish */
		size_t skip = (size_t)done;

		for (size_t i = 0; i < n; i++) {
			if (skip >= iov[i].iov_len) {
				skip -= iov[i].iov_len;
				continue;
			}
			madvise((char *)iov[i].iov_base + skip,
				iov[i].iov_len - skip, MADV_DONTNEED);
			skip = 0;
		}
	}
	for (unsigned i = 0; i < rt->nzap; i++) {
		rt->frames[rt->zapq[i]].staged = SLOT_EMPTY;
		STAGING_TRACE(rt->zapq[i], STAGE_ZAPPED, 0);
	}
	STAT_ADD(rt, staging_zaps, rt->nzap);
	STAT_INC(rt, staging_zap_batches);
	rt->nzap = 0;
}

void staging_release(struct upg_runtime *rt, uint32_t f)
{
	struct upg_frame *fr = &rt->frames[f];

	if (fr->staged != SLOT_DATA)
		return;
	STAGING_TRACE(f, STAGE_RELEASED, 0);
	pthread_mutex_lock(&rt->zap_lock);
	fr->staged = SLOT_STALE;
	rt->zapq[rt->nzap++] = f;
	if (rt->nzap >= rt->zap_cap)
		zap_queue_locked(rt);
	pthread_mutex_unlock(&rt->zap_lock);
}

#if UPG_DEBUG
#define TRACE_LEN 65536
static struct {
	uint32_t frame, tid;
	uint8_t op;
	uint64_t arg;
} trace[TRACE_LEN];
static atomic_uint trace_next;

void staging_trace(uint32_t f, enum staging_op op, uint64_t arg)
{
	unsigned i = atomic_fetch_add_explicit(&trace_next, 1,
					       memory_order_relaxed) % TRACE_LEN;

	trace[i].frame = f;
	trace[i].tid = (uint32_t)syscall(SYS_gettid);
	trace[i].op = (uint8_t)op;
	trace[i].arg = arg;
}

static void trace_dump(uint32_t f)
{
	static const char *const names[] = { "moved out", "copied out", "parked",
					     "moved back", "released", "zapped" };
	unsigned end = atomic_load(&trace_next);

	for (unsigned k = end > TRACE_LEN ? end - TRACE_LEN : 0; k < end; k++) {
		unsigned i = k % TRACE_LEN;

		if (trace[i].frame == f)
			upg_log("  frame %u: %s (%#lx) by thread %u", f,
				names[trace[i].op], (unsigned long)trace[i].arg,
				trace[i].tid);
	}
}
#else
void staging_trace(uint32_t f, enum staging_op op, uint64_t arg)
{
	(void)f;
	(void)op;
	(void)arg;
}

static void trace_dump(uint32_t f)
{
	(void)f;
}
#endif

/* Is there a page behind frame @f's slot?  (A system call: for checks.) */
static bool slot_holds_page(struct upg_runtime *rt, uint32_t f)
{
	/* one byte per system page (4 KiB at least) of a pager page */
	unsigned char in[UPG_MAX_PAGE_SIZE / 4096];
	bool held = false;

	if (mincore(frame_staging(rt, f), rt->page_size, in) != 0)
		return false;
	for (size_t i = 0; i < rt->page_size / (size_t)sysconf(_SC_PAGESIZE); i++)
		held |= in[i] & 1;
	return held;
}

/*
 * Debug builds: an EMPTY slot must have no page behind it.  A page there
 * would be one whose move out the pager lost track of -- its data, or a
 * slot that no move or copy can fill again.
 */
static void check_really_empty(struct upg_runtime *rt, uint32_t f)
{
	bool held;

	if (!UPG_DEBUG)
		return;
	held = slot_holds_page(rt, f);
	if (held) {
		upg_log("staging slot of frame %u is EMPTY but holds a page", f);
		trace_dump(f);
	}
	upg_assert(!held);
}

void staging_make_empty(struct upg_runtime *rt, uint32_t f)
{
	if (__atomic_load_n(&rt->frames[f].staged, __ATOMIC_RELAXED) == SLOT_EMPTY) {
		check_really_empty(rt, f);
		return;
	}
	pthread_mutex_lock(&rt->zap_lock);
	if (rt->frames[f].staged == SLOT_STALE)
		zap_queue_locked(rt);
	pthread_mutex_unlock(&rt->zap_lock);
	upg_assert(rt->frames[f].staged == SLOT_EMPTY);
	check_really_empty(rt, f);
}

void staging_flush(struct upg_runtime *rt)
{
	pthread_mutex_lock(&rt->zap_lock);
	if (rt->nzap)
		zap_queue_locked(rt);
	pthread_mutex_unlock(&rt->zap_lock);
}
