/* SPDX-License-Identifier: MIT */
/*
 * staging.c - the staging area, where an INACTIVE or WRITEBACK page lives
 * while it is unmapped from its region.
 *
 * The area is a private anonymous mapping of page-sized slots, one per
 * frame and a few more.  Slots are not tied to frames: whoever unmaps
 * pages takes a run of free slots and moves the pages in, and the frame
 * records which slot holds its page.  A run lets the pages of a span of a
 * region -- with holes between them, pages that are not mapped -- leave
 * into slots at the same offsets, each run of consecutive pages by one
 * UFFDIO_MOVE and one TLB flush (reclaim.c), where a flush interrupts
 * every CPU that runs the program.  The holes' slots stay empty and are
 * given back.  With one slot per frame, only pages with consecutive
 * frames could share a move.
 *
 * A slot is free (no page behind it), taken, or stale: a physical page
 * whose contents no longer matter (written to swap, or copied back into
 * the region).  UFFDIO_MOVE and UFFDIO_COPY only fill an empty slot, so a
 * stale one is zapped before it is free again -- a MADV_DONTNEED, and its
 * TLB flush.  Stale slots are queued and zapped together: with
 * process_madvise() on the process itself (Linux 6.13+), one system call
 * and one flush for the whole batch.  The queue is small and bounded
 * (stale pages are memory the program does not see: they count as slack
 * over the budget).
 *
 * Free slots are found in runs by the allocator of swap slots (slots.c),
 * under zap_lock.  Taken slots never exceed the frames in use, nor stale
 * ones the queue, nor the holes of a span in flight its length, so the
 * area always has a free slot (the invariant in pager.h).
 */
#include "pager.h"

#include <errno.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

/* "The calling process" for pidfd system calls (Linux 6.15+). */
#define PIDFD_SELF_PROCESS (-20000)

static long self_madvise(struct upg_runtime *rt, const struct iovec *iov,
			 size_t n)
{
	return syscall(SYS_process_madvise, rt->zap_pidfd, iov, n, MADV_DONTNEED, 0);
}

int staging_init(struct upg_runtime *rt)
{
	struct iovec probe;
	uint32_t limit = rt->nframes + ZAP_QUEUE_MAX + STAGE_RUN_MAX;
	uint32_t first = rt->budget_frames + ZAP_QUEUE_MAX + STAGE_RUN_MAX;
	int ret;

	rt->zap_pidfd = -1;
	/*
	 * Address space for the most slots that can be taken (pager.h); the
	 * allocator covers about a budget's worth at first, so that the
	 * slots in use -- and the page tables that map them -- stay there,
	 * and grows only while the pager runs over budget.
	 */
	ret = upg_slots_init(&rt->stages, first < limit ? first : limit, limit);
	if (ret)
		return ret;
	rt->staging_bytes = (size_t)limit * rt->page_size;
	rt->staging = mmap(NULL, rt->staging_bytes, PROT_READ | PROT_WRITE,
			   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (rt->staging == MAP_FAILED) {
		rt->staging = NULL;
		upg_slots_destroy(&rt->stages);
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
	upg_slots_destroy(&rt->stages);
	if (rt->zap_pidfd >= 0)
		close(rt->zap_pidfd);
	rt->zap_pidfd = -1;
}

/* Zap every queued slot, and free them; zap_lock held. */
static void zap_queue_locked(struct upg_runtime *rt)
{
	struct iovec iov[ZAP_QUEUE_MAX];
	size_t n = 0;
	long done = -1;

	for (unsigned i = 0; i < rt->nzap; i++) {
		char *s = stage_addr(rt, rt->zapq[i]);

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
		upg_slots_free(&rt->stages, rt->zapq[i]);
		STAGING_TRACE(rt->zapq[i], STAGE_ZAPPED, 0);
	}
	STAT_ADD(rt, staging_zaps, rt->nzap);
	STAT_INC(rt, staging_zap_batches);
	rt->nzap = 0;
}

void staging_discard(struct upg_runtime *rt, uint32_t slot)
{
	STAGING_TRACE(slot, STAGE_RELEASED, 0);
	pthread_mutex_lock(&rt->zap_lock);
	rt->zapq[rt->nzap++] = slot;
	if (rt->nzap >= rt->zap_cap)
		zap_queue_locked(rt);
	pthread_mutex_unlock(&rt->zap_lock);
}

void staging_release(struct upg_runtime *rt, uint32_t f)
{
	struct upg_frame *fr = &rt->frames[f];

	if (fr->stage == UPG_NO_STAGE)
		return;
	staging_discard(rt, fr->stage);
	fr->stage = UPG_NO_STAGE;
}

void staging_give_back(struct upg_runtime *rt, uint32_t slot, unsigned n)
{
	pthread_mutex_lock(&rt->zap_lock);
	for (unsigned i = 0; i < n; i++)
		upg_slots_free(&rt->stages, slot + i);
	pthread_mutex_unlock(&rt->zap_lock);
}

void staging_emptied(struct upg_runtime *rt, uint32_t f)
{
	struct upg_frame *fr = &rt->frames[f];

	upg_assert(fr->stage != UPG_NO_STAGE);
	staging_give_back(rt, fr->stage, 1);
	fr->stage = UPG_NO_STAGE;
}

static void check_really_empty(struct upg_runtime *rt, uint32_t slot);

/*
 * Up to @n free slots as upg_slots_alloc() finds them -- the first run of
 * @n after the last one taken, else the longest shorter one; zap_lock
 * held.  With every slot taken (only while the pager runs over budget)
 * the allocator grows into the rest of the area.
 */
static uint32_t take_locked(struct upg_runtime *rt, unsigned n, unsigned *got)
{
	struct upg_slots *s = &rt->stages;
	uint32_t first = upg_slots_alloc(s, n, got);

	if (first == UPG_NO_SLOT && rt->nzap) {
		zap_queue_locked(rt);
		first = upg_slots_alloc(s, n, got);
	}
	if (first == UPG_NO_SLOT &&
	    upg_slots_grow(s, s->limit - s->capacity > rt->budget_frames ?
			   s->capacity + rt->budget_frames : s->limit) == 0)
		first = upg_slots_alloc(s, n, got);
	return first;
}

uint32_t staging_take_run(struct upg_runtime *rt, unsigned n, unsigned *got)
{
	uint32_t first;

	upg_assert(n >= 1 && n <= STAGE_RUN_MAX);
	pthread_mutex_lock(&rt->zap_lock);
	first = take_locked(rt, n, got);
	pthread_mutex_unlock(&rt->zap_lock);
	/* the invariant on the area's size (pager.h) */
	upg_check(first != UPG_NO_SLOT);
	for (unsigned i = 0; UPG_DEBUG && i < *got; i++)
		check_really_empty(rt, first + i);
	return first;
}

uint32_t staging_take(struct upg_runtime *rt)
{
	unsigned got;

	return staging_take_run(rt, 1, &got);
}

#if UPG_DEBUG
#define TRACE_LEN 65536
static struct {
	uint32_t slot, tid;
	uint8_t op;
	uint64_t arg;
} trace[TRACE_LEN];
static atomic_uint trace_next;

void staging_trace(uint32_t slot, enum staging_op op, uint64_t arg)
{
	unsigned i = atomic_fetch_add_explicit(&trace_next, 1,
					       memory_order_relaxed) % TRACE_LEN;

	trace[i].slot = slot;
	trace[i].tid = (uint32_t)syscall(SYS_gettid);
	trace[i].op = (uint8_t)op;
	trace[i].arg = arg;
}

static void trace_dump(uint32_t slot)
{
	static const char *const names[] = { "moved out", "copied out", "parked",
					     "moved back", "released", "zapped" };
	unsigned end = atomic_load(&trace_next);

	for (unsigned k = end > TRACE_LEN ? end - TRACE_LEN : 0; k < end; k++) {
		unsigned i = k % TRACE_LEN;

		if (trace[i].slot == slot)
			upg_log("  slot %u: %s (%#lx) by thread %u", slot,
				names[trace[i].op], (unsigned long)trace[i].arg,
				trace[i].tid);
	}
}
#else
void staging_trace(uint32_t slot, enum staging_op op, uint64_t arg)
{
	(void)slot;
	(void)op;
	(void)arg;
}

static void trace_dump(uint32_t slot)
{
	(void)slot;
}
#endif

/* Is there a page behind slot @slot?  (A system call: for checks.) */
static bool slot_holds_page(struct upg_runtime *rt, uint32_t slot)
{
	/* one byte per system page (4 KiB at least) of a pager page */
	unsigned char in[UPG_MAX_PAGE_SIZE / 4096];
	bool held = false;

	if (mincore(stage_addr(rt, slot), rt->page_size, in) != 0)
		return false;
	for (size_t i = 0; i < rt->page_size / (size_t)sysconf(_SC_PAGESIZE); i++)
		held |= in[i] & 1;
	return held;
}

/*
 * Debug builds: a free slot must have no page behind it.  A page there
 * would be one whose move out the pager lost track of -- its data, or a
 * slot that no move or copy can fill again.
 */
static void check_really_empty(struct upg_runtime *rt, uint32_t slot)
{
	bool held;

	if (!UPG_DEBUG)
		return;
	held = slot_holds_page(rt, slot);
	if (held) {
		upg_log("staging slot %u is free but holds a page", slot);
		trace_dump(slot);
	}
	upg_assert(!held);
}
