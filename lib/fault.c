/* SPDX-License-Identifier: MIT */
/*
 * fault.c - the fault loop: one per handler thread.
 *
 * Each handler thread owns an io_uring that multiplexes everything it waits
 * for: the userfaultfd becoming readable, its eventfd (frames freed, stop),
 * and completions of the swap reads it issued.  A fault is served by state:
 *
 *   EMPTY     -> zero page (read) or zeroed copy (write)        zero-fill
 *   INACTIVE  -> move the staged page back (no I/O)             soft fault
 *   WRITEBACK -> copy from the staging slot being written       soft fault
 *   SWAPPED   -> submit a read, go on; the completion installs  major fault
 *   READING   -> nothing: the completion wakes every waiter     duplicate
 *   ACTIVE    -> already mapped (stale message), or the program
 *                discarded it behind our back: zero page        duplicate
 *
 * A handler never blocks on a page lock held by someone else, nor waits
 * for a frame: such a fault goes to its pending list and is retried when
 * something changes.  That keeps every handler free to read the next
 * message, which is what the reclaim thread may be waiting for (its own
 * MADV_DONTNEED blocks until a handler reads the REMOVE event it causes).
 */
#include "pager.h"

#include <errno.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define TAG_UFFD (1ULL << 56)
#define TAG_WAKE (2ULL << 56)
#define TAG_READ (3ULL << 56)
#define TAG_READV (4ULL << 56) /* a run of reads; index: its first buffer */
#define TAG_TYPE(t) ((t) & (0xffULL << 56))
#define TAG_INDEX(t) ((unsigned)((t) & 0xffffffffULL))

#define READ_RETRIES 3
/* Most pages one vectored read-ahead request carries (32 KiB of 4 KiB). */
#define READ_RUN_MAX 8
#define PENDING_RETRY_NS 200000ULL
/* A fault on an address no region claims is retried this long (mremap). */
#define UNKNOWN_ADDR_TRIES 20000

enum served { SERVED, DEFER_LOCK, DEFER_FRAME, DEFER_BUF, DEFER_REGION };

static void read_done(struct upg_handler *h, unsigned b, int res);
static int map_page(struct upg_handler *h, uintptr_t pa, enum upg_fill how,
		    const void *src, bool wp, size_t *done);

static bool is_write(uint64_t flags)
{
	return flags & UFFD_PAGEFAULT_FLAG_WRITE;
}

/*
 * Write prediction.  A clean page (its swap copy valid) is mapped write-
 * protected so that its first write is seen; that write costs a round trip
 * through a handler, a write-protect fault, only to learn that the page is
 * dirty.  A page written during a recent residency (write_hist >= 2) may be
 * mapped writable and counted dirty at once instead.  A wrong guess costs a
 * needless swap write at eviction, never data, but in a phase that only
 * reads it costs one write per page -- so guesses are made only while they
 * are mostly right: one in four candidates (one in eight while the guesses
 * are nearly always right; all of them while guessing is off) is mapped
 * protected as a probe, and a probe that is written
 * counts as right, one evicted clean as wrong.  Each guess spends the page's
 * evidence, so a page that stops being written is soon protected again.
 * The page lock is held.
 */
static void predict_grade(struct upg_runtime *rt, bool right)
{
	if (right)
		rt->predict_right++;
	else
		rt->predict_wrong++;
	if (rt->predict_right + rt->predict_wrong >= 512) {
		rt->predict_right /= 2;
		rt->predict_wrong /= 2;
	}
}

void predict_graded_wrong(struct upg_runtime *rt)
{
	predict_grade(rt, false);
}

/* Probes right 15 times in 16, and enough of them to tell. */
static bool predict_confident(const struct upg_runtime *rt)
{
	return rt->predict_right >= 15 * rt->predict_wrong + 32;
}

static void note_write(struct upg_runtime *rt, struct upg_pte *pte)
{
	pte->write_hist = 3;
	if (pte->flags & PTE_PROBE) {
		pte->flags &= (uint8_t)~PTE_PROBE;
		predict_grade(rt, true);
	}
}

/* Should the clean page @pte be mapped writable?  May mark it a probe. */
static bool predict_write(struct upg_runtime *rt, struct upg_pte *pte)
{
	bool trusted = rt->predict_right >= 3 * rt->predict_wrong + 8;
	unsigned probe_mask = predict_confident(rt) ? 7 : 3;

	if (pte->write_hist < 2)
		return false;
	if (!trusted || (++rt->predict_installs & probe_mask) == 0) {
		pte->flags |= PTE_PROBE;
		return false;
	}
	return true;
}

/*
 * A guess was acted on: the page is mapped writable.  It spends the page's
 * evidence, unless the probes say guesses are nearly always right (a
 * program that updates what it reads, pass after pass): then a page's
 * evidence would run out every few passes and cost a write-protect fault
 * to renew, and a read-only phase is still caught, by the probes.
 */
static void spend_prediction(struct upg_runtime *rt, struct upg_pte *pte)
{
	if (!predict_confident(rt))
		pte->write_hist--;
	STAT_INC(rt, writable_installs);
}

/*
 * Lock and frame the EMPTY pages from @page on: at most @max of them, none
 * at or past @end, while more than @min_free frames are free.  Trylock
 * only, in address order, so that a busy page ends the run and a thread
 * holding one page lock never waits for another.  Returns the run's length.
 */
static unsigned take_empty_run(struct upg_runtime *rt, struct upg_region *r,
			       size_t page, size_t end, uint32_t *frames,
			       unsigned max, uint32_t min_free)
{
	unsigned n = 0;

	while (n < max && page + n < end && frames_free_count(rt) > min_free) {
		struct upg_pte *p = &r->ptes[page + n];

		if (p->state != PS_EMPTY || !pte_trylock(p))
			break;
		if (p->state != PS_EMPTY ||
		    (frames[n] = frame_alloc(rt, r, page + n)) == UPG_NO_FRAME) {
			pte_unlock(p);
			break;
		}
		n++;
	}
	return n;
}

/*
 * The zero-filled page @p, locked, now holds frame @f: it is ACTIVE and
 * dirty (its zeroes are in no slot).  A @write is the first of its page (or
 * the next page of a sequential writer): evidence for write prediction, as
 * a write-protect fault would be, so that a program that fills its memory
 * and then updates it in place does not pay one such fault per page on its
 * first pass back.
 */
static void zero_install(struct upg_runtime *rt, struct upg_pte *p, uint32_t f,
			 bool write)
{
	p->frame = f;
	p->slot = UPG_NO_SLOT;
	p->flags &= PTE_PINNED;
	p->flags |= PTE_DIRTY;
	if (write)
		p->write_hist = 3;
	page_activate(rt, p);
}

/*
 * Map a run taken by take_empty_run() with zeroes: private zeroed pages,
 * writable, if @writable (the program writes them next), else the shared
 * zero page, read-only, which costs no memory until the kernel's own
 * copy-on-write fault gives a written page its copy.  One ioctl and no
 * retry: whatever it did not map (an event is queued, or a stale fault's
 * page sits in the way) is given back, and a fault will sort it out.
 * Every page of the run is unlocked.  Returns how many were mapped.
 */
static unsigned map_zero_run(struct upg_runtime *rt, struct upg_region *r,
			     size_t page, const uint32_t *frames, unsigned n,
			     bool writable)
{
	long ret = upg_uffd_map_prefix(&rt->uffd,
				       region_page_addr(r, page, rt->page_size),
				       writable ? rt->zero_page : NULL,
				       (size_t)n << rt->page_shift);
	unsigned mapped = ret > 0 ? (unsigned)((size_t)ret >> rt->page_shift) : 0;

	for (unsigned i = 0; i < n; i++) {
		struct upg_pte *p = &r->ptes[page + i];

		if (i < mapped)
			zero_install(rt, p, frames[i], writable);
		else
			frame_free(rt, frames[i]);
		pte_unlock(p);
	}
	return mapped;
}

/*
 * Zero-fill the EMPTY pages of [from, to) in runs (map_zero_run()),
 * stepping over pages that are busy or hold data, while more than
 * @min_free frames are free.  Stops at a run that the kernel mapped only
 * in part: an event is queued, or a stale fault's page is in the way, and
 * a handler sorts either out.  Returns how many pages it mapped.
 */
static size_t zero_fill_range(struct upg_runtime *rt, struct upg_region *r,
			      size_t from, size_t to, bool writable,
			      uint32_t min_free)
{
	uint32_t frames[ZERO_RUN_MAX];
	unsigned max = writable ? rt->zero_run : ZERO_RUN_MAX;
	size_t page = from, done = 0;

	while (page < to) {
		unsigned n = take_empty_run(rt, r, page, to, frames, max,
					    min_free);
		unsigned mapped;

		if (n == 0) {
			if (frames_free_count(rt) <= min_free)
				break;
			page++; /* busy or not EMPTY: step over it */
			continue;
		}
		mapped = map_zero_run(rt, r, page, frames, n, writable);
		done += mapped;
		if (mapped < n)
			break;
		page += n;
	}
	return done;
}

/* Does a zero-fill write at @key continue one of the writers followed? */
static bool zero_stream_continues(const struct upg_handler *h, uint64_t key)
{
	for (unsigned i = 0; i < ZERO_STREAMS; i++)
		if (h->zero_next[i] == key)
			return true;
	return false;
}

/*
 * A zero-fill write at @key was served up to @next: the writer it
 * continued (or, if none, a new one in place of the one followed least
 * recently) is now expected at @next, and goes to the front.
 */
static void zero_stream_advance(struct upg_handler *h, uint64_t key,
				uint64_t next)
{
	unsigned i = 0;

	while (i < ZERO_STREAMS - 1 && h->zero_next[i] != key)
		i++;
	for (; i > 0; i--)
		h->zero_next[i] = h->zero_next[i - 1];
	h->zero_next[0] = next;
}

/*
 * Zero-fill around a sequential writer: when this handler's recent
 * zero-fill write faults walk page by page (a program filling a new
 * buffer), or a write faults right where one of the last few zero-fills
 * for a write ended (several threads filling buffers of their own), the
 * EMPTY pages just ahead are filled with the same ioctl, one round trip
 * for a whole run instead of one per page.
 * Returns how many pages after @page were locked and framed (0..max).
 */
static unsigned zero_run_ahead(struct upg_handler *h, struct upg_region *r,
			       size_t page, uint32_t *frames, unsigned max)
{
	struct upg_runtime *rt = h->rt;
	uint64_t key = page_key(r->id, page);

	if (stride_observe(&h->zero_stride, key) != 1 &&
	    !zero_stream_continues(h, key))
		return 0;
	return take_empty_run(rt, r, page + 1, r->npages, frames, max,
			      rt->low_free);
}

/*
 * Fault-around for a first touch that is not a sequential writer's (a
 * heap handing out scattered fresh blocks): the other EMPTY pages of the
 * aligned zero_around block holding @page get the shared zero page.  A
 * later touch of one is then no fault at all (a read) or the kernel's own
 * copy-on-write fault (a write), never a round trip through a handler --
 * two thread wake-ups, which cost tens of microseconds where idle vCPUs
 * halt.  The kernel maps anonymous memory 2 MiB at a time (THP) for the
 * same reason.
 *
 * Only for a block in use: written now, or one of its other pages holds
 * something.  A write is memory being put to use, and a heap puts
 * neighbouring blocks to use together; a first read of a block says
 * nothing of its neighbours (a lookup in a sparse table, a strided scan),
 * and the handler's work here delays the faulting thread when both share
 * a CPU: the block's second touch makes it worth it.  And only while the
 * budget is above the high watermark: the frames these pages take are
 * given back without I/O if they are never written (reclaim drops zero
 * pages), but reclaim must not be made to run for them.  @page is locked
 * by the caller.  Returns pages mapped.
 */
static unsigned zero_around(struct upg_runtime *rt, struct upg_region *r,
			    size_t page, bool write)
{
	size_t n = rt->zero_around, w0 = page & ~(n - 1), w1 = w0 + n;
	bool in_use = write;

	if (n < 2 || frames_free_count(rt) <= rt->high_free)
		return 0;
	if (w1 > r->npages)
		w1 = r->npages;
	for (size_t p = w0; p < w1 && !in_use; p++)
		in_use = p != page && r->ptes[p].state != PS_EMPTY;
	if (!in_use)
		return 0;
	return (unsigned)(zero_fill_range(rt, r, w0, page, false, rt->high_free) +
			  zero_fill_range(rt, r, page + 1, w1, false,
					  rt->high_free));
}

static enum served fault_zero(struct upg_handler *h, struct upg_region *r,
			      size_t page, struct upg_pte *pte, uintptr_t pa,
			      uint64_t flags, uint64_t t0)
{
	struct upg_runtime *rt = h->rt;
	uint32_t frames[ZERO_RUN_MAX];
	unsigned ahead = 0, mapped;
	uint32_t f = frame_alloc(rt, r, page);
	size_t done = 0, next;
	int ret;

	if (f == UPG_NO_FRAME)
		return DEFER_FRAME;
	/*
	 * A read maps the shared zero page and costs no memory until written;
	 * a write gets its own zeroed page at once, saving a second fault.
	 */
	STAT_INC(rt, faults[UPG_FAULT_ZERO]);
	if (is_write(flags))
		ahead = zero_run_ahead(h, r, page, frames, rt->zero_run - 1);
	if (ahead) /* one system page per pager page: it stops between pages */
		ret = upg_uffd_fill(&rt->uffd, UPG_FILL_COPY, pa, rt->zero_page,
				    (size_t)(ahead + 1) << rt->page_shift, false,
				    &done);
	else
		ret = map_page(h, pa, is_write(flags) ? UPG_FILL_COPY :
			       UPG_FILL_ZERO, rt->zero_page, false, &done);
	if (ret == -EAGAIN && done == 0) {
		STAT_DEC(rt, faults[UPG_FAULT_ZERO]);
		frame_free(rt, f);
		for (unsigned i = 0; i < ahead; i++) {
			frame_free(rt, frames[i]);
			pte_unlock(&r->ptes[page + 1 + i]);
		}
		return DEFER_LOCK; /* an event is queued: read it first */
	}
	/*
	 * EEXIST: the page was mapped already (a stale fault); it is ACTIVE
	 * all the same.  Pages of the run that the kernel did not get to
	 * (an event queued midway) go back to EMPTY.
	 */
	if (ret && ret != -EEXIST && ret != -EAGAIN)
		upg_log("zero-fill at %#lx failed: %s", (unsigned long)pa,
			upg_strerror(-ret));
	mapped = ret == 0 ? ahead + 1 : (unsigned)(done >> rt->page_shift);
	zero_install(rt, &r->ptes[page], f, is_write(flags));
	for (unsigned i = 0; i < ahead; i++) {
		if (1 + i < mapped)
			zero_install(rt, &r->ptes[page + 1 + i], frames[i], true);
		else
			frame_free(rt, frames[i]);
		pte_unlock(&r->ptes[page + 1 + i]);
	}
	ahead = mapped > 1 ? mapped - 1 : 0;
	stats_fault(rt, UPG_FAULT_ZERO, t0); /* the faulting thread runs again */
	next = page + 1 + ahead;
	if (!ahead && ret == 0) {
		unsigned around = zero_around(rt, r, page, is_write(flags));

		/* a writer that goes on in order next faults at the block's end */
		if (around)
			next = (page | (rt->zero_around - 1)) + 1;
		STAT_ADD(rt, zero_mapped_around, around);
	}
	if (is_write(flags))
		zero_stream_advance(h, page_key(r->id, page),
				    page_key(r->id, next));
	STAT_ADD(rt, zero_filled_ahead, ahead);
	return SERVED;
}

/*
 * POPULATE advice (advise.c): the program is about to write [first, last)
 * for the first time -- the allocator carving a new slab, say.  Its EMPTY
 * pages are zero-filled here, in the program's own thread: one
 * UFFDIO_COPY per run of up to zero_run pages, and no fault, so neither
 * the trap nor the two thread wake-ups of a handler round trip (on a
 * virtual machine whose idle vCPUs halt, each wake-up costs more than the
 * fault itself).  A hint, so it gives up rather than wait: a page lock
 * already held, a page with data, the budget down to the low watermark
 * (it must never make reclaim evict anything) or a queued event that the
 * kernel wants read first each end a run, and only the first two let the
 * next run start.  Returns how many pages it mapped.
 */
size_t fault_populate(struct upg_runtime *rt, struct upg_region *r,
		      size_t first, size_t last)
{
	size_t done;

	if (!rt->one_sys_page)
		return 0; /* a run may stop inside a pager page (one_sys_page) */
	done = zero_fill_range(rt, r, first, last, true, rt->low_free);
	STAT_ADD(rt, populated, done);
	return done;
}

/* INACTIVE or WRITEBACK: the data is in the frame's staging slot. */
static enum served fault_soft(struct upg_handler *h, struct upg_pte *pte,
			      uintptr_t pa, uint64_t flags, uint64_t t0)
{
	struct upg_runtime *rt = h->rt;
	uint32_t f = pte->frame;
	uintptr_t s = (uintptr_t)frame_staging(rt, f);
	bool write = is_write(flags);
	bool clean = !(pte->flags & PTE_DIRTY) && !write;
	bool by_sum = !(pte->flags & PTE_DIRTY) && rt->dirty_by_sum;
	bool predicted = clean && !by_sum && predict_write(rt, pte);
	/* unmapped by reclaim and touched again -- not a read-ahead's first use */
	bool refault = !(pte->flags & PTE_PREFETCHED);
	size_t done = 0;
	int ret = -ENOTSUP;

	if (predicted) {
		clean = false;
		write = true;
	}
	if (by_sum) {
		/*
		 * Mapped writable, read or written, and compared with its slot
		 * when it leaves (pagesum.c).  The staged copy is the slot's
		 * contents -- or, while it is written back, those of the slot
		 * it is going to -- and is summed before a move empties it.
		 */
		if (!rt->frames[f].summed)
			pagesum_note(rt, f, (void *)s);
		clean = false;
		write = false;
	}

	/*
	 * The page is copied back (UFFDIO_COPY, write-protected if clean) and
	 * its staged copy left for a batched zap (staging.c).  Moving it back
	 * would save the copy but unmap the staging slot there and then: a TLB
	 * flush that interrupts every other CPU running the process, measured
	 * 7-24 us per move on a 2-vCPU guest against 4.3 us for a whole copy
	 * fault (bench/fault soft).  A larger pager page moves (a dirty one
	 * only: a move carries no write protection along), since its copy
	 * grows with it; a page whose staged copy is being written is pinned
	 * by the I/O and cannot move.
	 */
	STAT_INC(rt, faults[UPG_FAULT_SOFT]);
	if (rt->soft_move && !clean && !(pte->flags & PTE_IO)) {
		ret = map_page(h, pa, UPG_FILL_MOVE, (void *)s, false, &done);
		if (ret == 0) {
			STAGING_TRACE(rt->frames[f].stage, STAGE_MOVED_BACK, pa);
			staging_emptied(rt, f);
		}
	}
	/* not moved, or not all of it (-EBUSY: pinned, say): copy the rest */
	if (ret && ret != -EAGAIN)
		ret = map_page(h, pa, UPG_FILL_COPY, (void *)s,
			       clean && rt->uffd.has_wp, &done);
	if (ret == -EAGAIN && done == 0) {
		STAT_DEC(rt, faults[UPG_FAULT_SOFT]);
		return DEFER_LOCK;
	}
	if (ret && ret != -EEXIST && ret != -EAGAIN) {
		upg_log("soft fault at %#lx: copy failed: %s",
			(unsigned long)pa, upg_strerror(-ret));
		return SERVED;
	}
	stats_fault(rt, UPG_FAULT_SOFT, t0);
	if (predicted)
		spend_prediction(rt, pte);
	else if (write && !(pte->flags & PTE_DIRTY))
		note_write(rt, pte);
	if (pte->flags & PTE_PREFETCHED) {
		pte->flags &= (uint8_t)~PTE_PREFETCHED;
		STAT_INC(rt, prefetch_hits);
		streams_hit(&h->streams, page_key(rt->frames[f].region_id,
						  frame_page(&rt->frames[f])));
	}
	/* a copied-from staging slot is garbage, unless a write still reads it */
	if (!(pte->flags & PTE_IO))
		staging_release(rt, f);
	if (write)
		page_mark_dirty(rt, pte);
	if (refault)
		page_reactivate(rt, pte);
	else
		page_activate(rt, pte);
	return SERVED;
}

static unsigned take_buffer(struct upg_handler *h)
{
	return h->nfree_bufs ? h->free_bufs[--h->nfree_bufs] : UINT32_MAX;
}

static void put_buffer(struct upg_handler *h, unsigned b)
{
	h->reads[b].busy = false;
	h->free_bufs[h->nfree_bufs++] = b;
}

static char *buffer_addr(struct upg_handler *h, unsigned b)
{
	return h->bufs + (size_t)b * h->rt->page_size;
}

static void submit_read(struct upg_handler *h, unsigned b)
{
	struct upg_runtime *rt = h->rt;
	struct upg_read *rd = &h->reads[b];

	rd->t_submit = upg_now_ns();
	upg_ring_read(&h->ring, rt->swapfile.fd, buffer_addr(h, b), b,
		      rt->page_size, (uint64_t)rd->slot * rt->page_size,
		      TAG_READ | b);
	STAT_INC(rt, read_requests);
}

static enum served fault_major(struct upg_handler *h, struct upg_region *r,
			       size_t page, struct upg_pte *pte,
			       uint64_t flags, uint64_t t0, bool prefetch)
{
	struct upg_runtime *rt = h->rt;
	unsigned b;
	uint32_t f;

	b = take_buffer(h);
	if (b == UINT32_MAX)
		return DEFER_BUF;
	h->last_buffer = b;
	f = frame_alloc(rt, r, page);
	if (f == UPG_NO_FRAME) {
		put_buffer(h, b);
		return DEFER_FRAME;
	}
	pte->frame = f;
	pte_set_state(rt, pte, PS_READING);
	h->reads[b] = (struct upg_read){
		.region = r,
		.page = page,
		.slot = pte->slot,
		.t0 = t0,
		.write_fault = is_write(flags),
		.prefetch = prefetch,
		.busy = true,
		.run_next = UINT32_MAX,
	};
	atomic_fetch_add(&r->inflight, 1);
	if (!prefetch)
		submit_read(h, b); /* read-ahead is submitted by prefetch_after() */
	return SERVED;
}

/*
 * Submit the reads of buffers @run[0..n) -- pages whose swap slots follow
 * one another -- as one vectored request: one dio and one completion for
 * the run instead of one per page, as the kernel's swap clusters do.  A
 * run that fails is retried page by page (read_done()).
 */
static void submit_run(struct upg_handler *h, const unsigned *run, unsigned n)
{
	struct upg_runtime *rt = h->rt;
	struct iovec *iov = &h->iov_pool[h->iov_used];
	uint64_t now;

	if (n == 1 || h->iov_used + n > ARRAY_SIZE(h->iov_pool)) {
		for (unsigned i = 0; i < n; i++)
			submit_read(h, run[i]);
		return;
	}
	h->iov_used += n;
	now = upg_now_ns();
	for (unsigned i = 0; i < n; i++) {
		iov[i] = (struct iovec){ buffer_addr(h, run[i]), rt->page_size };
		h->reads[run[i]].run_next = i + 1 < n ? run[i + 1] : UINT32_MAX;
		h->reads[run[i]].t_submit = now;
	}
	upg_ring_readv(&h->ring, rt->swapfile.fd, iov, n,
		       (uint64_t)h->reads[run[0]].slot * rt->page_size,
		       TAG_READV | run[0]);
	STAT_INC(rt, read_requests);
}

/* The read into buffer @b completed: time it if a thread waits for it. */
static void read_completed(struct upg_handler *h, unsigned b)
{
	if (!h->reads[b].prefetch)
		stats_read(h->rt, h->reads[b].t_submit);
}

/* A vectored read of @res bytes ended: each page of it is done. */
static void read_run_done(struct upg_handler *h, unsigned b, int res)
{
	int ps = (int)h->rt->page_size;

	while (b != UINT32_MAX) {
		unsigned next = h->reads[b].run_next;
		/* a short run: the pages it covered are fine, the rest retry */
		int mine = res < 0 ? res : res >= ps ? ps : 0;

		if (res > 0)
			res -= mine;
		h->reads[b].run_next = UINT32_MAX;
		read_completed(h, b);
		read_done(h, b, mine);
		b = next;
	}
}

/*
 * Read @st's next window ahead: its pages on the stride's line from @from
 * of @r on.  Only free budget is used: a guess never evicts anything.
 * regions_lock is held, no page locked.
 */
static void prefetch_window(struct upg_handler *h, struct upg_region *r,
			    struct upg_stride *st, size_t from)
{
	struct upg_runtime *rt = h->rt;
	int64_t stride = st->stride;
	unsigned run[READ_RUN_MAX], nrun = 0, k;
	bool map = st->window >= PREFETCH_MAP_WINDOW;

	st->trigger = PREFETCH_NO_TRIGGER;
	for (k = 0; k < st->window; k++) {
		int64_t t = (int64_t)from + stride * (int64_t)k;
		struct upg_pte *pte;
		enum served s = SERVED;

		if (t < 0 || (uint64_t)t >= r->npages ||
		    frames_free_count(rt) <= rt->low_free / 2)
			break;
		pte = &r->ptes[t];
		if (pte->state != PS_SWAPPED || !pte_trylock(pte))
			continue;
		if (pte->state == PS_SWAPPED && !(pte->flags & PTE_ZAPPING)) {
			s = fault_major(h, r, (size_t)t, pte, 0, 0, true);
			if (s == SERVED) {
				unsigned b = h->last_buffer;

				pte->flags |= PTE_PREFETCHED;
				STAT_INC(rt, prefetch_issued);
				st->issued++;
				/* the first page read of the second half: staged */
				if (st->trigger == PREFETCH_NO_TRIGGER &&
				    2 * k >= st->window) {
					st->trigger = page_key(r->id, (size_t)t);
				} else if (map) {
					h->reads[b].map = true;
					st->mapped++;
				}
				if (nrun && (nrun == READ_RUN_MAX ||
					     h->reads[b].slot !=
					     h->reads[run[nrun - 1]].slot + 1)) {
					submit_run(h, run, nrun);
					nrun = 0;
				}
				run[nrun++] = b;
			}
		}
		pte_unlock(pte);
		if (s != SERVED)
			break; /* out of buffers or frames */
	}
	/*
	 * The stream's next fault is expected at the first page not read
	 * ahead: past the window, or where the window was cut short (no free
	 * frames, no buffer, the region's end).  Expecting it past the whole
	 * window after a short one would take that fault for a stray one:
	 * its step voted on, and the pages mapped ahead never counted used.
	 */
	st->expect = page_key(r->id,
			      (size_t)((int64_t)from + stride * (int64_t)k));
	if (nrun)
		submit_run(h, run, nrun);
}

/*
 * After a major fault at @page of @r: if the recent faults walk with a
 * stride, read the next pages on that line (see prefetch.c).
 * regions_lock is held, no page locked.
 */
static void prefetch_after(struct upg_handler *h, struct upg_region *r,
			   size_t page)
{
	struct upg_runtime *rt = h->rt;
	uint64_t key = page_key(r->id, page);
	struct upg_stride *st = streams_pick(&h->streams, key);
	unsigned mapped = st->mapped;
	bool continued = st->stride && key == st->expect;
	int64_t stride = stride_next(st, key);

	if (continued)
		STAT_ADD(rt, prefetch_hits, mapped);
	stride_feedback(st);
	if (stride)
		prefetch_window(h, r, st, (size_t)((int64_t)page + stride));
}

/*
 * The first touch of page @page of @r, read ahead: if it is a stream's
 * marker, the program is half-way through that stream's window, and the
 * next window is read now, from where the stream's next fault was
 * expected.  The mapped pages of the window it is in count as used: a
 * stream that reached the marker walks on through them.  regions_lock is
 * held, no page locked.
 */
static void prefetch_triggered(struct upg_handler *h, struct upg_region *r,
			       size_t page)
{
	struct upg_runtime *rt = h->rt;
	struct upg_stride *st;
	uint64_t from;

	st = streams_triggered(&h->streams, page_key(r->id, page));
	if (!st || !st->stride)
		return;
	from = st->expect;
	STAT_ADD(rt, prefetch_hits, st->mapped);
	st->hits += st->mapped;
	st->mapped = 0;
	stride_feedback(st);
	STAT_INC(rt, prefetch_async);
	if (page_key_region(from) == r->id)
		prefetch_window(h, r, st, page_key_page(from));
}

/*
 * WILLNEED advice, asynchronous: the program's call only queues the range;
 * handler 0 reads its swapped pages in runs of consecutive slots, as
 * read-ahead does, and maps them when they arrive, so that touching them
 * costs no fault.  It takes frames down to the budget (reclaim makes room:
 * the program asked), but never more than half the budget per call, which
 * would evict the range's own first pages.  A step stops at the first
 * page it cannot take now (no buffer, no frame) and the loop comes back.
 */
int fault_queue_willneed(struct upg_runtime *rt, uintptr_t start, uintptr_t end)
{
	struct upg_handler *h = &rt->handlers[0];
	uint64_t one = 1;
	unsigned n;

	pthread_mutex_lock(&rt->willneed_lock);
	n = atomic_load(&rt->nwillneed);
	if (n == ARRAY_SIZE(rt->willneed)) {
		pthread_mutex_unlock(&rt->willneed_lock);
		return -EBUSY;
	}
	rt->willneed[n].start = start;
	rt->willneed[n].end = end;
	rt->willneed[n].budget = rt->budget_frames / 2;
	atomic_store(&rt->nwillneed, n + 1);
	pthread_mutex_unlock(&rt->willneed_lock);
	(void)!write(h->wake_fd, &one, sizeof(one));
	return 0;
}

/* Read in some of the oldest queued WILLNEED range.  Returns pages issued. */
static unsigned willneed_step(struct upg_handler *h)
{
	struct upg_runtime *rt = h->rt;
	unsigned run[READ_RUN_MAX], nrun = 0, issued = 0;
	uintptr_t a, end;
	uint64_t budget;
	bool stuck = false;

	pthread_mutex_lock(&rt->willneed_lock);
	a = rt->willneed[0].start;
	end = rt->willneed[0].end;
	budget = rt->willneed[0].budget;
	pthread_mutex_unlock(&rt->willneed_lock);

	for (; a < end && budget > 0 && issued < IO_BUFS_PER_HANDLER && !stuck;
	     a += rt->page_size) {
		struct upg_region *r;
		struct upg_pte *pte;
		size_t page;
		enum served s = SERVED;

		r = region_get(rt, a, &page);
		if (!r)
			continue; /* released meanwhile */
		pte = &r->ptes[page];
		if (pte->state == PS_SWAPPED && pte_trylock(pte)) {
			if (pte->state == PS_SWAPPED && !(pte->flags & PTE_ZAPPING)) {
				s = fault_major(h, r, page, pte, 0, 0, true);
				if (s == SERVED) {
					unsigned b = h->last_buffer;

					h->reads[b].map = true;
					STAT_INC(rt, prefetch_issued);
					issued++;
					budget--;
					if (nrun && (nrun == READ_RUN_MAX ||
						     h->reads[b].slot !=
						     h->reads[run[nrun - 1]].slot + 1)) {
						submit_run(h, run, nrun);
						nrun = 0;
					}
					run[nrun++] = b;
				}
			}
			pte_unlock(pte);
		}
		region_put(rt);
		if (s != SERVED) {
			stuck = true; /* come back when buffers or frames free up */
			break;
		}
	}
	if (nrun)
		submit_run(h, run, nrun);

	pthread_mutex_lock(&rt->willneed_lock);
	if (a >= end || budget == 0) {
		unsigned n = atomic_load(&rt->nwillneed);

		memmove(&rt->willneed[0], &rt->willneed[1],
			(n - 1) * sizeof(rt->willneed[0]));
		atomic_store(&rt->nwillneed, n - 1);
	} else {
		rt->willneed[0].start = a;
		rt->willneed[0].budget = budget;
	}
	pthread_mutex_unlock(&rt->willneed_lock);
	return issued;
}

bool events_pending_in(struct upg_runtime *rt, uintptr_t start, uintptr_t end)
{
	bool found = false;

	if (!atomic_load_explicit(&rt->nremoving, memory_order_acquire))
		return false;
	pthread_mutex_lock(&rt->selfzap_lock);
	for (unsigned i = 0; i < atomic_load(&rt->nremoving); i++)
		if (start < rt->removing[i].end && end > rt->removing[i].start)
			found = true;
	pthread_mutex_unlock(&rt->selfzap_lock);
	return found;
}

static bool being_removed(struct upg_runtime *rt, uintptr_t addr)
{
	return events_pending_in(rt, addr, addr + 1);
}

/*
 * Is @addr in a range that a REMOVE or UNMAP read by this handler and held
 * (hold_queued()) is about to discard?  The program zaps as soon as the
 * event is read: mapping the page's old data now would outlive the zap.
 */
static bool held_removal(const struct upg_handler *h, uintptr_t addr)
{
	for (unsigned i = 0; i < h->nheld; i++) {
		const struct uffd_msg *m = &h->held[(h->held_head + i) % HELD_MAX].msg;

		if ((m->event == UFFD_EVENT_REMOVE ||
		     m->event == UFFD_EVENT_UNMAP) &&
		    addr >= m->arg.remove.start && addr < m->arg.remove.end)
			return true;
	}
	return false;
}

static void removing_add(struct upg_runtime *rt, uintptr_t start, uintptr_t end)
{
	unsigned n;

	pthread_mutex_lock(&rt->selfzap_lock);
	n = atomic_load(&rt->nremoving);
	if (n < ARRAY_SIZE(rt->removing)) {
		rt->removing[n].start = start;
		rt->removing[n].end = end;
		atomic_store_explicit(&rt->nremoving, n + 1, memory_order_release);
	}
	pthread_mutex_unlock(&rt->selfzap_lock);
}

static void removing_del(struct upg_runtime *rt, uintptr_t start, uintptr_t end)
{
	unsigned n;

	pthread_mutex_lock(&rt->selfzap_lock);
	n = atomic_load(&rt->nremoving);
	for (unsigned i = 0; i < n; i++) {
		if (rt->removing[i].start == start && rt->removing[i].end == end) {
			rt->removing[i] = rt->removing[n - 1];
			atomic_store_explicit(&rt->nremoving, n - 1,
					      memory_order_release);
			break;
		}
	}
	pthread_mutex_unlock(&rt->selfzap_lock);
}

static enum served serve(struct upg_handler *h, uintptr_t addr, uint64_t flags,
			 uint64_t t0)
{
	struct upg_runtime *rt = h->rt;
	struct upg_region *r;
	struct upg_pte *pte;
	enum served ret = SERVED;
	bool major = false, read_ahead = false;
	uintptr_t pa;
	size_t page;

	if (being_removed(rt, addr) || (h->nheld && held_removal(h, addr)))
		return DEFER_LOCK;
	r = region_get(rt, addr, &page);
	if (!r)
		return DEFER_REGION;
	pte = &r->ptes[page];
	pa = region_page_addr(r, page, rt->page_size);
	if (!pte_trylock(pte)) {
		region_put(rt);
		return DEFER_LOCK;
	}
	/*
	 * Being unmapped by the pager (protect-copy-zap): until the zap is
	 * done, installing anything would be zapped with it.
	 */
	if (pte->flags & PTE_ZAPPING) {
		ret = DEFER_LOCK;
		goto out;
	}

	if (flags & UFFD_PAGEFAULT_FLAG_WP) {
		if (pte->state == PS_ACTIVE) {
			page_mark_dirty(rt, pte);
			note_write(rt, pte);
			STAT_INC(rt, faults[UPG_FAULT_WP]);
			if (upg_uffd_writeprotect(&rt->uffd, pa, rt->page_size,
						  false) == -EAGAIN) {
				STAT_DEC(rt, faults[UPG_FAULT_WP]);
				ret = DEFER_LOCK;
			} else {
				stats_fault(rt, UPG_FAULT_WP, t0);
			}
		} else {
			/* unmapped meanwhile: the retry will be a missing fault */
			upg_uffd_wake(&rt->uffd, pa, rt->page_size);
		}
		goto out;
	}

	/* its first touch: a soft fault, or one that waits for the read */
	read_ahead = (pte->flags & PTE_PREFETCHED) &&
		     (pte->state == PS_INACTIVE || pte->state == PS_READING);
	switch (pte->state) {
	case PS_EMPTY:
		ret = fault_zero(h, r, page, pte, pa, flags, t0);
		break;
	case PS_INACTIVE:
		ret = fault_soft(h, pte, pa, flags, t0);
		break;
	case PS_WRITEBACK:
		if (pte->flags & PTE_DISCARD) {
			ret = DEFER_LOCK; /* becomes EMPTY when the write ends */
			break;
		}
		ret = fault_soft(h, pte, pa, flags, t0);
		break;
	case PS_SWAPPED:
		ret = fault_major(h, r, page, pte, flags, t0, false);
		major = ret == SERVED;
		break;
	case PS_READING:
		/* a prefetch completion must map it, not stage it */
		pte->flags |= PTE_WAITED;
		STAT_INC(rt, faults_duplicate);
		break;
	case PS_ACTIVE:
		/*
		 * Mapped already (EEXIST: the message was stale), or zapped by
		 * the program with its REMOVE event still queued: then zero
		 * is exactly what it must read.
		 */
		switch (upg_uffd_zeropage(&rt->uffd, pa, rt->page_size, true)) {
		case -EEXIST:
			STAT_INC(rt, faults_duplicate);
			break;
		case -EAGAIN:
			ret = DEFER_LOCK;
			break;
		}
		break;
	}
out:
	pte_unlock(pte);
	if (major)
		prefetch_after(h, r, page);
	else if (read_ahead && ret == SERVED)
		prefetch_triggered(h, r, page);
	region_put(rt);
	return ret;
}

/* ------------------------------------------------------------------------ */
/* Read completions                                                          */
/* ------------------------------------------------------------------------ */

static void read_done(struct upg_handler *h, unsigned b, int res)
{
	struct upg_runtime *rt = h->rt;
	struct upg_read *rd = &h->reads[b];
	struct upg_region *r = rd->region;
	struct upg_pte *pte = &r->ptes[rd->page];
	uintptr_t pa = region_page_addr(r, rd->page, rt->page_size);
	int ret;

	if (UPG_DEBUG && rt->inject_read_errors)
		res = -EIO; /* debug builds: exercise the error path */
	if (res != (int)rt->page_size && !(pte->flags & PTE_DISCARD)) {
		STAT_INC(rt, io_retries);
		if (++rd->tries < READ_RETRIES) {
			submit_read(h, b);
			return;
		}
	}

	pte_lock(pte);
	if (pte->flags & PTE_DISCARD) {
		/* discarded while being read: it reads as zero from now on */
		page_drop(rt, pte);
		upg_uffd_wake(&rt->uffd, pa, rt->page_size);
	} else if (res != (int)rt->page_size && rd->prefetch &&
		   !(pte->flags & PTE_WAITED)) {
		/* a guess that failed: a real fault will retry and report */
		frame_free(rt, pte->frame);
		pte_set_state(rt, pte, PS_SWAPPED);
		pte->flags &= PTE_PINNED;
	} else if (res != (int)rt->page_size) {
		/* the data is unreadable: fail the faulting thread, never hang */
		STAT_INC(rt, io_errors);
		STAT_INC(rt, poisoned);
		upg_log("swap read of page %#lx (slot %u) failed: %s; the page is "
			"lost, accesses raise SIGBUS", (unsigned long)pa, rd->slot,
			res < 0 ? upg_strerror(-res) : "short read");
		frame_free(rt, pte->frame);
		pte_set_state(rt, pte, PS_SWAPPED);
		pte->flags &= PTE_PINNED;
		if (upg_uffd_poison(&rt->uffd, pa, rt->page_size))
			upg_uffd_wake(&rt->uffd, pa, rt->page_size);
	} else if (rd->prefetch && !rd->map &&
		   !(pte->flags & (PTE_WAITED | PTE_PINNED))) {
		/* nobody asked yet: park it in staging, a touch is a soft fault */
		uint32_t f = pte->frame, slot = staging_take(rt);

		ret = upg_uffd_copy(&rt->staging_uffd,
				    (uintptr_t)stage_addr(rt, slot),
				    buffer_addr(h, b), rt->page_size, false, false);
		if (ret) {
			upg_log("prefetch of %#lx could not be staged: %s",
				(unsigned long)pa, upg_strerror(-ret));
			staging_discard(rt, slot); /* part of it may be there */
			frame_free(rt, f);
			pte_set_state(rt, pte, PS_SWAPPED);
			pte->flags &= PTE_PINNED;
		} else {
			rt->frames[f].stage = slot;
			if (rt->dirty_by_sum)
				pagesum_note(rt, f, buffer_addr(h, b));
			STAGING_TRACE(slot, STAGE_PARKED, pa);
			pte->flags &= PTE_PINNED | PTE_PREFETCHED;
			pte_set_state(rt, pte, PS_INACTIVE);
			frame_move(rt, f, FL_INACTIVE);
		}
		STAT_INC(rt, pages_read);
	} else {
		/* by contents: writable, read or written (pagesum.c) */
		bool by_sum = rt->dirty_by_sum;
		bool predicted = !by_sum && !rd->write_fault &&
				 rt->uffd.has_wp && predict_write(rt, pte);
		bool write = !by_sum && (rd->write_fault || predicted);
		bool wp = !write && !by_sum && rt->uffd.has_wp;
		size_t done = 0;

		/*
		 * A thread faulted on it while it was read ahead: a hit.  Not
		 * for a page to be mapped: those are counted when their stream
		 * goes past them (prefetch_after(), prefetch_triggered()).
		 */
		if (rd->prefetch && !rd->map && (pte->flags & PTE_WAITED)) {
			STAT_INC(rt, prefetch_hits);
			streams_hit(&h->streams, page_key(r->id, rd->page));
		}

		if (!rd->prefetch)
			STAT_INC(rt, faults[UPG_FAULT_MAJOR]);
		if (h->nheld && held_removal(h, pa))
			ret = -EAGAIN; /* the program discards it: wait for that */
		else
			ret = map_page(h, pa, UPG_FILL_COPY, buffer_addr(h, b),
				       wp, &done);
		if (ret == -EAGAIN && done == 0) {
			if (!rd->prefetch)
				STAT_DEC(rt, faults[UPG_FAULT_MAJOR]);
			/* an event is queued: install after reading it */
			pte_unlock(pte);
			rd->install_retry = true;
			h->ninstall_retry++;
			return;
		}
		/* -EAGAIN with a part mapped: an event discards the page */
		if (ret && ret != -EEXIST && ret != -EAGAIN)
			upg_log("install of %#lx failed: %s", (unsigned long)pa,
				upg_strerror(-ret));
		pte->flags &= PTE_PINNED | PTE_PROBE;
		if (predicted)
			spend_prediction(rt, pte);
		else if (write)
			note_write(rt, pte);
		if (write)
			page_mark_dirty(rt, pte);
		if (rd->prefetch)
			page_activate(rt, pte);
		else
			page_refaulted(rt, pte);
		STAT_INC(rt, pages_read);
		if (!rd->prefetch)
			stats_fault(rt, UPG_FAULT_MAJOR, rd->t0);
		/* after the mapping, which woke the faulting thread */
		if (by_sum)
			pagesum_note(rt, pte->frame, buffer_addr(h, b));
	}
	pte_unlock(pte);
	atomic_fetch_sub(&r->inflight, 1);
	put_buffer(h, b);
}

/* ------------------------------------------------------------------------ */
/* Messages and the loop                                                     */
/* ------------------------------------------------------------------------ */

static bool selfzap_consume(struct upg_runtime *rt, uintptr_t start,
			    uintptr_t end)
{
	bool found = false;

	pthread_mutex_lock(&rt->selfzap_lock);
	for (unsigned i = 0; i < rt->nselfzap; i++) {
		if (rt->selfzap[i].start == start && rt->selfzap[i].end == end) {
			rt->selfzap[i] = rt->selfzap[--rt->nselfzap];
			found = true;
			break;
		}
	}
	pthread_mutex_unlock(&rt->selfzap_lock);
	return found;
}

static void defer(struct upg_handler *h, uintptr_t addr, uint64_t flags,
		  uint64_t t0, uint32_t tries)
{
	if (h->npending == PENDING_MAX) {
		/* cannot happen with fewer faulting threads than PENDING_MAX */
		upg_log("pending fault list full; dropping fault at %#lx",
			(unsigned long)addr);
		return;
	}
	h->pending[h->npending++] = (struct upg_pending){
		.addr = addr, .flags = flags, .t0 = t0, .tries = tries,
	};
}

static void handle_pagefault(struct upg_handler *h, const struct uffd_msg *m,
			     uint64_t t0)
{
	struct upg_runtime *rt = h->rt;
	uintptr_t addr = m->arg.pagefault.address & ~(uintptr_t)(rt->page_size - 1);
	uint64_t flags = m->arg.pagefault.flags;
	enum served s;

	/*
	 * The reclaim thread copying out a page that the program zapped at
	 * that very moment: it holds the page lock, so serve it here without
	 * taking it.  Zero is the content of a zapped page.
	 */
	if (rt->reclaim_tid && (pid_t)m->arg.pagefault.feat.ptid == rt->reclaim_tid &&
	    !(flags & UFFD_PAGEFAULT_FLAG_WP)) {
		upg_uffd_zeropage(&rt->uffd, addr, rt->page_size, true);
		return;
	}
	s = serve(h, addr, flags, t0);
	if (s != SERVED)
		defer(h, addr, flags, t0, 0);
}

/*
 * A REMOVE that is the reclaim thread's own zap (reclaim.c, selfzap()):
 * nothing to apply but the bookkeeping, done here.  False for any other
 * message.  Needs no page lock.
 */
static bool apply_selfzap(struct upg_runtime *rt, const struct uffd_msg *m)
{
	if (m->event != UFFD_EVENT_REMOVE ||
	    !selfzap_consume(rt, m->arg.remove.start, m->arg.remove.end))
		return false;
	removing_del(rt, m->arg.remove.start, m->arg.remove.end);
	atomic_fetch_add(&rt->events_applied, 1);
	return true;
}

/* Apply one message; false if it must wait (a REMAP, regions_lock busy). */
static bool handle_msg(struct upg_handler *h, const struct uffd_msg *m,
		       uint64_t t0)
{
	struct upg_runtime *rt = h->rt;

	switch (m->event) {
	case UFFD_EVENT_PAGEFAULT:
		handle_pagefault(h, m, t0);
		return true;
	case UFFD_EVENT_REMOVE:
		if (apply_selfzap(rt, m))
			return true;
		region_event_remove(rt, m->arg.remove.start, m->arg.remove.end);
		removing_del(rt, m->arg.remove.start, m->arg.remove.end);
		break;
	case UFFD_EVENT_UNMAP:
		region_event_unmap(rt, m->arg.remove.start, m->arg.remove.end);
		removing_del(rt, m->arg.remove.start, m->arg.remove.end);
		break;
	case UFFD_EVENT_REMAP:
		if (!region_event_remap(rt, m->arg.remap.from, m->arg.remap.to,
					m->arg.remap.len))
			return false;
		removing_del(rt, m->arg.remap.from,
			     m->arg.remap.from + m->arg.remap.len);
		break;
	default:
		upg_warn_once("unexpected userfaultfd event %u", m->event);
		break;
	}
	atomic_fetch_add(&rt->events_applied, 1);
	return true;
}

static void hold(struct upg_handler *h, const struct uffd_msg *m, uint64_t t0)
{
	unsigned tail = (h->held_head + h->nheld) % HELD_MAX;

	upg_check(h->nheld < HELD_MAX);
	h->held[tail] = (struct upg_held){ .msg = *m, .t0 = t0 };
	h->nheld++;
}

/*
 * Apply @m, or hold it: behind a REMAP that waits for regions_lock,
 * everything waits, so that nothing overtakes the move.  Except the
 * reclaim thread's own fault, which needs no lock and which a reader of
 * regions_lock may be waiting for.
 */
static void dispatch(struct upg_handler *h, const struct uffd_msg *m,
		     uint64_t t0)
{
	if (h->nheld) {
		if (m->event == UFFD_EVENT_PAGEFAULT && h->rt->reclaim_tid &&
		    (pid_t)m->arg.pagefault.feat.ptid == h->rt->reclaim_tid)
			handle_pagefault(h, m, t0);
		else
			hold(h, m, t0);
		return;
	}
	if (!handle_msg(h, m, t0))
		hold(h, m, t0);
}

/* Apply held messages in order while regions_lock lets the REMAP in. */
static unsigned release_held(struct upg_handler *h)
{
	unsigned n = 0;

	while (h->nheld) {
		struct upg_held *x = &h->held[h->held_head];

		if (!handle_msg(h, &x->msg, x->t0))
			break;
		h->held_head = (h->held_head + 1) % HELD_MAX;
		h->nheld--;
		n++;
	}
	return n;
}

static unsigned count_events(const struct uffd_msg *msgs, unsigned n)
{
	unsigned events = 0;

	for (unsigned i = 0; i < n; i++)
		events += msgs[i].event != UFFD_EVENT_PAGEFAULT;
	return events;
}

/*
 * Read up to @max queued messages into @msgs.  Returns how many.
 *
 * With several handlers, a REMOVE read by one must be announced before any
 * other handler can read a fault that follows it (the program zaps as soon
 * as the event is read): reading and announcing happen under one lock.
 */
static unsigned read_msgs(struct upg_handler *h, struct uffd_msg *msgs,
			  unsigned max)
{
	struct upg_runtime *rt = h->rt;
	bool several = rt->nhandlers > 1;
	unsigned nmsg;
	ssize_t n;

	if (several)
		pthread_mutex_lock(&rt->uffd_read_lock);
	atomic_fetch_add(&rt->uffd_reads_begun, 1);
	n = read(rt->uffd.fd, msgs, max * sizeof(msgs[0]));
	nmsg = n > 0 ? (unsigned)(n / (ssize_t)sizeof(msgs[0])) : 0;
	/*
	 * Announced at once, with one handler as with several: once the
	 * event is read, the program's munmap() or mremap() returns, and a
	 * new mapping may take the old range.  Reclaim must not take a page
	 * there for the old region's (events_pending_in()).
	 */
	for (unsigned i = 0; i < nmsg; i++) {
		const struct uffd_msg *m = &msgs[i];

		if (m->event == UFFD_EVENT_UNMAP ||
		    (several && m->event == UFFD_EVENT_REMOVE))
			removing_add(rt, m->arg.remove.start, m->arg.remove.end);
		else if (m->event == UFFD_EVENT_REMAP)
			removing_add(rt, m->arg.remap.from,
				     m->arg.remap.from + m->arg.remap.len);
	}
	atomic_fetch_add(&rt->events_read, count_events(msgs, nmsg));
	atomic_fetch_add(&rt->uffd_reads_ended, 1);
	if (several)
		pthread_mutex_unlock(&rt->uffd_read_lock);
	return nmsg;
}

/*
 * Read and serve every queued message.  Returns how many.  Stops reading
 * while the held ring could not take a full batch: the program then waits
 * in the kernel, as it would for a slow handler.
 */
static unsigned drain_uffd(struct upg_handler *h)
{
	struct uffd_msg msgs[32];
	unsigned total = 0;

	for (;;) {
		uint64_t t0;
		unsigned nmsg;

		if (h->nheld + ARRAY_SIZE(msgs) > HELD_MAX) {
			h->uffd_ready = true; /* come back when it has drained */
			break;
		}
		nmsg = read_msgs(h, msgs, ARRAY_SIZE(msgs));
		if (nmsg == 0)
			break;
		t0 = upg_now_ns();
		for (unsigned i = 0; i < nmsg; i++)
			dispatch(h, &msgs[i], t0);
		total += nmsg;
		if (nmsg < ARRAY_SIZE(msgs))
			break;
	}
	return total;
}

/*
 * map_page() found its page half mapped and the kernel waiting for queued
 * messages to be read: read them, and hold every one (the reclaim thread's
 * own fault aside, as dispatch() does) to be applied once the page is
 * whole and unlocked -- applying an event now could need that very lock
 * (the reclaim thread's own zaps are applied at once: they need none).
 * An event about the page decides what becomes of the install: a REMAP
 * has moved the half-mapped page along (*@pa follows it), a REMOVE or
 * UNMAP discards it -- then, and when the held ring is full, returns
 * false: the install is left as it is, and the page goes with the event.
 */
static bool hold_queued(struct upg_handler *h, uintptr_t *pa)
{
	struct upg_runtime *rt = h->rt;
	struct uffd_msg msgs[8];
	bool go_on = true;
	unsigned nmsg;
	uint64_t t0;

	if (h->nheld + ARRAY_SIZE(msgs) > HELD_MAX)
		return false;
	nmsg = read_msgs(h, msgs, ARRAY_SIZE(msgs));
	t0 = upg_now_ns();
	for (unsigned i = 0; i < nmsg; i++) {
		const struct uffd_msg *m = &msgs[i];

		if (m->event == UFFD_EVENT_PAGEFAULT && rt->reclaim_tid &&
		    (pid_t)m->arg.pagefault.feat.ptid == rt->reclaim_tid) {
			handle_pagefault(h, m, t0);
			continue;
		}
		/*
		 * The reclaim thread's zap of another page (never this one:
		 * a page being zapped is not mapped back, serve()): nothing
		 * to apply, and reclaim may zap on and on meanwhile -- held,
		 * its announcements would pile up.
		 */
		if (apply_selfzap(rt, m))
			continue;
		if (m->event == UFFD_EVENT_REMAP &&
		    *pa >= m->arg.remap.from &&
		    *pa < m->arg.remap.from + m->arg.remap.len)
			*pa = *pa - m->arg.remap.from + m->arg.remap.to;
		if ((m->event == UFFD_EVENT_REMOVE ||
		     m->event == UFFD_EVENT_UNMAP) &&
		    *pa < m->arg.remove.end &&
		    *pa + rt->page_size > m->arg.remove.start)
			go_on = false;
		hold(h, m, t0);
	}
	return go_on && !being_removed(rt, *pa);
}

/*
 * Map all of the pager page at @pa (locked) from @src, as upg_uffd_fill()
 * does, going on from *@done.  The kernel may stop partway when an event
 * is queued: a page larger than a system page is then half mapped, while
 * its state says where its data is -- INACTIVE, SWAPPED, EMPTY.  Let go
 * of its lock in that state and reclaim may write back or drop the page
 * under a mapped half that the program goes on writing, a later install
 * may decide write protection differently, and the half written is lost.
 * So the page is finished here, the lock held: the queued messages are
 * read (and held), which lets the kernel go on.  A page mapped only in
 * part is left so only when an event discards it.  Returns 0, or the
 * error of an attempt that mapped nothing (-EAGAIN: defer).
 */
static int map_page(struct upg_handler *h, uintptr_t pa, enum upg_fill how,
		    const void *src, bool wp, size_t *done)
{
	struct upg_runtime *rt = h->rt;
	int ret;

	while ((ret = upg_uffd_fill(&rt->uffd, how, pa, src, rt->page_size,
				    wp, done)) == -EAGAIN && *done) {
		if (!hold_queued(h, &pa))
			break;
		sched_yield(); /* the event's sender lets go once it runs */
	}
	return ret;
}

/* Retry deferred faults.  Returns how many were served. */
static unsigned retry_pending(struct upg_handler *h)
{
	unsigned n = h->npending, served = 0;
	bool starved = false;

	h->npending = 0;
	for (unsigned i = 0; i < n; i++) {
		struct upg_pending p = h->pending[i];
		enum served s = serve(h, p.addr, p.flags, p.t0);

		if (s == SERVED) {
			served++;
			continue;
		}
		if (s == DEFER_FRAME)
			starved = true;
		if (s == DEFER_REGION && ++p.tries > UNKNOWN_ADDR_TRIES) {
			upg_log("fault at %#lx outside every region; waking it",
				(unsigned long)p.addr);
			upg_uffd_wake(&h->rt->uffd, p.addr, h->rt->page_size);
			continue;
		}
		defer(h, p.addr, p.flags, p.t0, p.tries);
	}
	if (starved && !h->starved) {
		h->starved = true;
		atomic_fetch_add(&h->rt->frame_waiters, 1);
		STAT_INC(h->rt, faults_waited);
		runtime_wake_reclaim(h->rt);
	} else if (!starved && h->starved) {
		h->starved = false;
		atomic_fetch_sub(&h->rt->frame_waiters, 1);
	}
	return served;
}

static unsigned reap(struct upg_handler *h)
{
	struct upg_completion c[32];
	unsigned n = upg_ring_reap(&h->ring, c, ARRAY_SIZE(c));

	for (unsigned i = 0; i < n; i++) {
		switch (TAG_TYPE(c[i].tag)) {
		case TAG_UFFD:
			h->uffd_ready = true;
			if (!(c[i].flags & IORING_CQE_F_MORE))
				upg_ring_poll(&h->ring, h->rt->uffd.fd, TAG_UFFD);
			break;
		case TAG_WAKE: {
			uint64_t v;

			if (read(h->wake_fd, &v, sizeof(v)) < 0)
				v = 0;
			if (!(c[i].flags & IORING_CQE_F_MORE))
				upg_ring_poll(&h->ring, h->wake_fd, TAG_WAKE);
			break;
		}
		case TAG_READ:
			read_completed(h, TAG_INDEX(c[i].tag));
			read_done(h, TAG_INDEX(c[i].tag), c[i].res);
			break;
		case TAG_READV:
			read_run_done(h, TAG_INDEX(c[i].tag), c[i].res);
			break;
		}
	}
	return n;
}

static unsigned retry_installs(struct upg_handler *h)
{
	unsigned n = 0;

	for (unsigned b = 0; b < IO_BUFS_PER_HANDLER && h->ninstall_retry; b++) {
		if (!h->reads[b].install_retry)
			continue;
		h->reads[b].install_retry = false;
		h->ninstall_retry--;
		read_done(h, b, (int)h->rt->page_size);
		n++;
	}
	return n;
}

/* Hand the prepared requests to the kernel; their iovecs are free again. */
static void handler_submit(struct upg_handler *h)
{
	upg_ring_submit(&h->ring);
	h->iov_used = 0;
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#endif
}

void *handler_main(void *arg)
{
	struct upg_handler *h = arg;
	struct upg_runtime *rt = h->rt;
	uint64_t spin_ns = (uint64_t)rt->opts.spin_us * 1000;
	uint64_t last_work = upg_now_ns();

	upg_ring_poll(&h->ring, rt->uffd.fd, TAG_UFFD);
	upg_ring_poll(&h->ring, h->wake_fd, TAG_WAKE);
	upg_ring_submit(&h->ring);
	h->uffd_ready = true;

	while (!atomic_load_explicit(&rt->stopping, memory_order_relaxed)) {
		unsigned work;

		pthread_rwlock_rdlock(&rt->fork_lock);
		/*
		 * Reap first: the uffd's poll completion is what says there
		 * are messages.  A message that arrives during the drain
		 * wakes the poll again, so none is left unread.
		 */
		work = reap(h);
		if (h->nheld)
			work += release_held(h);
		if (h->uffd_ready) {
			h->uffd_ready = false;
			work += drain_uffd(h);
		}
		if (h->ninstall_retry)
			work += retry_installs(h);
		/*
		 * Deferred faults are retried on every pass: most wait for a
		 * page lock held for a few microseconds, and a fault must not
		 * sit out a whole sleep for it.
		 */
		if (h->npending)
			work += retry_pending(h);
		/* after the faults: a hint never delays a thread that waits */
		if (h->index == 0 && atomic_load(&rt->nwillneed))
			work += willneed_step(h);
		handler_submit(h);
		pthread_rwlock_unlock(&rt->fork_lock);
		if (work) {
			last_work = upg_now_ns();
			continue;
		}
		if (spin_ns && upg_now_ns() - last_work < spin_ns) {
			cpu_relax();
			continue;
		}
		/*
		 * Sleep with a timeout while work waits on a retry: deferred
		 * faults, held messages, installs refused with EAGAIN (the
		 * event that refused them may have been read already, and no
		 * completion may ever come to wake us), and hints.
		 */
		upg_ring_wait(&h->ring, h->npending || h->nheld ||
				     h->ninstall_retry ||
				     (h->index == 0 && atomic_load(&rt->nwillneed)) ?
			      PENDING_RETRY_NS : 0);
		if (h->npending || h->ninstall_retry) {
			pthread_rwlock_rdlock(&rt->fork_lock);
			if (h->ninstall_retry)
				retry_installs(h);
			retry_pending(h);
			handler_submit(h);
			pthread_rwlock_unlock(&rt->fork_lock);
		}
	}
	return NULL;
}
