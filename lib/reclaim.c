/* SPDX-License-Identifier: MIT */
/*
 * reclaim.c - the reclaim thread: keeps free budget between the watermarks.
 *
 * When free frames fall below the low watermark (or a fault is waiting for
 * one), reclaim runs until the high watermark is reached:
 *
 *   1. deactivate: the oldest ACTIVE pages are unmapped from their region
 *      but kept in RAM, in their frame's staging slot (INACTIVE).  A page
 *      the program still uses faults straight back (a soft fault, no I/O):
 *      that fault is the reference bit user space does not have.
 *   2. evict: the oldest INACTIVE pages -- unreferenced since they were
 *      deactivated -- leave RAM.  A clean one (its swap copy still valid)
 *      is dropped without I/O; dirty ones get consecutive swap slots and
 *      go out in one vectored write per run of slots.
 *
 * Unmapping must not lose a write that races with it.  With UFFDIO_MOVE
 * the page is atomically taken out of the region (a later access faults
 * as missing and is served from staging).  Without it: write-protect the
 * page, copy it to staging, then zap it; a write arriving in between waits
 * on the protection and is retried as a missing fault after the zap.
 */
#include "pager.h"

#include <errno.h>
#include <sched.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define BATCH 64
#define WRITE_RETRIES 3
/*
 * The inactive list is kept at 1/INACTIVE_SHARE of the resident pages.
 * A page there is unmapped, so every touch of it is a soft fault: a
 * userfaultfd round trip, where the kernel's own inactive list costs a
 * touch nothing.  A large list samples references well and pays for it in
 * soft faults; 1/16 against 1/4 (2026-12-01, release build): GNU sort of
 * 92 MB at a 90 MiB budget 56 s -> 35 s (soft faults 496000 -> 146000,
 * major 201000 -> 241000), python3 pywork.py at 25 MiB 12.0 s -> 8.7 s,
 * bench/paging uniform-rand -9%, zipf +3%, phase-shift even.
 */
#define INACTIVE_SHARE 16

/* Page of frame @f, locked, if it still is the owner; NULL otherwise. */
static struct upg_pte *lock_frame_page(struct upg_runtime *rt, uint32_t f,
				       struct upg_region **rp, size_t *pagep)
{
	struct upg_frame *fr = &rt->frames[f];
	struct upg_region *r;
	struct upg_pte *pte;
	size_t page;

	if (fr->list == FL_FREE)
		return NULL;
	r = rt->by_id[fr->region_id];
	page = frame_page(fr);
	if (!r || atomic_load(&r->dead) || page >= r->npages)
		return NULL;
	pte = &r->ptes[page];
	if (!pte_trylock(pte))
		return NULL;
	if (!pte_resident(pte) || pte->frame != f) {
		pte_unlock(pte);
		return NULL;
	}
	*rp = r;
	*pagep = page;
	return pte;
}

void selfzap_forget(struct upg_runtime *rt, uintptr_t start, uintptr_t end)
{
	pthread_mutex_lock(&rt->selfzap_lock);
	for (unsigned i = 0; i < rt->nselfzap;) {
		if (rt->selfzap[i].start >= start && rt->selfzap[i].end <= end)
			rt->selfzap[i] = rt->selfzap[--rt->nselfzap];
		else
			i++;
	}
	pthread_mutex_unlock(&rt->selfzap_lock);
}

/*
 * Zap page @pa of @r, announced so that the handler takes its REMOVE event
 * for ours.  No event comes when the program has unmapped or moved the
 * region meanwhile (the madvise fails, or lands on a mapping not yet
 * registered): the entry is forgotten here when the region is dead by now,
 * and by the UNMAP or REMAP event's handling otherwise (region.c) -- left
 * behind, it would swallow a later REMOVE of the program's own on that
 * page.  A REMOVE that did come for the dead region and is not applied yet
 * then discards pages of a dead region: garbage anyway.
 */
static void selfzap(struct upg_runtime *rt, struct upg_region *r, uintptr_t pa)
{
	pthread_mutex_lock(&rt->selfzap_lock);
	upg_check(rt->nselfzap < ARRAY_SIZE(rt->selfzap));
	rt->selfzap[rt->nselfzap].start = pa;
	rt->selfzap[rt->nselfzap].end = pa + rt->page_size;
	rt->nselfzap++;
	pthread_mutex_unlock(&rt->selfzap_lock);
	if (madvise((void *)pa, rt->page_size, MADV_DONTNEED) != 0 ||
	    atomic_load(&r->dead))
		selfzap_forget(rt, pa, pa + rt->page_size);
}

/* Is every system page of the pager page at @pa mapped? */
static bool page_mapped(struct upg_runtime *rt, uintptr_t pa)
{
	unsigned char in[UPG_MAX_PAGE_SIZE / UPG_MIN_PAGE_SIZE];
	size_t n = rt->page_size / (size_t)sysconf(_SC_PAGESIZE);

	if (mincore((void *)pa, rt->page_size, in) != 0)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!(in[i] & 1))
			return false;
	return true;
}

/*
 * Are pages [first, last) of @r in a range the program unmapped or moved,
 * its event read but not yet applied?  The address may be a new mapping's
 * by now, whose page a move would steal; the event's application settles
 * the page, which stays as it is until then.
 */
static bool pages_event_pending(struct upg_runtime *rt,
				const struct upg_region *r, size_t first,
				size_t last)
{
	return events_pending_in(rt, region_page_addr(r, first, rt->page_size),
				 region_page_addr(r, last, rt->page_size));
}

/*
 * Page @pte (locked) was zapped or unmapped by the program while reclaim
 * was taking it, its REMOVE or UNMAP event on the way: it is dropped, and
 * the staging slot @slot it was to go to, still empty, given back.
 */
static void drop_zapped(struct upg_runtime *rt, struct upg_pte *pte,
			uint32_t slot)
{
	staging_give_back(rt, slot, 1);
	page_drop(rt, pte);
	pte_unlock(pte);
}

/* Page @pte (locked), frame @f, was moved into staging slot @slot. */
static void moved_out(struct upg_runtime *rt, struct upg_pte *pte, uint32_t f,
		      uint32_t slot)
{
	rt->frames[f].stage = slot;
	STAGING_TRACE(slot, STAGE_MOVED_OUT, (uintptr_t)pte);
	pte_set_state(rt, pte, PS_INACTIVE);
	frame_move(rt, f, FL_INACTIVE);
	pte_unlock(pte);
	STAT_INC(rt, deactivations);
}

/*
 * Unmap the ACTIVE page @pte (locked; its frame @f isolated by the caller)
 * into staging.  Returns with the page unlocked, INACTIVE and its frame at
 * the tail of the inactive list -- put there under the page lock, since
 * once it is dropped a discard or a soft fault may take the frame.  Returns
 * false if the page turned out to be gone.
 */
static bool deactivate_locked(struct upg_runtime *rt, struct upg_region *r,
			      size_t page, struct upg_pte *pte, uint32_t f)
{
	uintptr_t pa = region_page_addr(r, page, rt->page_size);
	uint32_t slot = staging_take(rt);
	uintptr_t s = (uintptr_t)stage_addr(rt, slot);
	int ret = -ENOTSUP;

	if (pages_event_pending(rt, r, page, page + 1)) {
		staging_give_back(rt, slot, 1);
		frame_move(rt, f, FL_ACTIVE);
		pte_unlock(pte);
		return false;
	}
	if (rt->use_move) {
		size_t moved = 0;

		/*
		 * A larger page may stop moving partway: it goes on, or on an
		 * error what moved is put back before it is copied instead --
		 * half a page in staging and half in the region is no state a
		 * page can be in.  Both may retry -EAGAIN under the page lock,
		 * which the rest of reclaim avoids (see below): the page must
		 * be made whole first.  If a handler that is to read the
		 * pending event waits for this lock, only another handler can
		 * end the wait.  Pages of several system pages only, and only
		 * when an event comes between two parts of the page.
		 */
		ret = upg_uffd_move_whole(&rt->staging_uffd, s, pa,
					  rt->page_size, &moved);
		if (ret == 0) {
			moved_out(rt, pte, f, slot);
			STAT_INC(rt, deactivation_flushes);
			return true;
		}
		if (ret == -ENOENT) {
			drop_zapped(rt, pte, slot);
			return false;
		}
		/* -EBUSY: shared with a fork child, KSM, ...: copy instead */
		if (moved) /* back where it was, and the slot empty again */
			UFFD_RETRY(upg_uffd_move(&rt->uffd, pa, s, moved, false));
	}

	/*
	 * Protect, copy, zap.  No retry under the page lock: -EAGAIN means an
	 * event is pending, and the handler that is to read it may be waiting
	 * for this very lock.  The page stays active; a later pass retries.
	 */
	if (upg_uffd_writeprotect(&rt->uffd, pa, rt->page_size, true)) {
		staging_give_back(rt, slot, 1);
		frame_move(rt, f, FL_ACTIVE);
		pte_unlock(pte);
		return false;
	}
	/*
	 * The copy reads the page through the kernel, and a page missing
	 * there would be a fault for a handler to serve, which may be waiting
	 * for this page's lock: reclaim would wait for ever (seen in
	 * events::dontneed_races_unmap_and_remap_copy, 2026-12-08: the
	 * program had unmapped the region, and its address was already a
	 * new region's).  A page the program zapped or unmapped is dropped,
	 * as a move that finds nothing drops it.  A zap between this check
	 * and the copy would still hang it: a window of a few microseconds,
	 * in copy mode only.
	 */
	if (!page_mapped(rt, pa)) {
		drop_zapped(rt, pte, slot);
		return false;
	}
	if (UPG_DEBUG && rt->inject_copyout_every &&
	    __atomic_add_fetch(&rt->copyouts, 1, __ATOMIC_RELAXED) %
	    rt->inject_copyout_every == 0)
		ret = -EEXIST; /* debug builds: exercise the failure path */
	else
		ret = upg_uffd_copy(&rt->staging_uffd, s, (void *)pa,
				    rt->page_size, false, false);
	if (ret) {
		upg_log("copy-out of %#lx (frame %u) failed: %s; page kept active",
			(unsigned long)pa, f, upg_strerror(-ret));
		/*
		 * Left protected if that fails (-EAGAIN, as above): the next
		 * write takes a write-protect fault, which marks the active
		 * page dirty and lifts the protection (fault.c).
		 */
		upg_uffd_writeprotect(&rt->uffd, pa, rt->page_size, false);
		staging_discard(rt, slot); /* part of the page may be there */
		/* under the page lock: once it is dropped the frame may go */
		frame_move(rt, f, FL_ACTIVE);
		pte_unlock(pte);
		return false;
	}
	rt->frames[f].stage = slot;
	STAGING_TRACE(slot, STAGE_COPIED_OUT, pa);
	pte_set_state(rt, pte, PS_INACTIVE);
	pte->flags |= PTE_ZAPPING;
	pte_unlock(pte);
	/* Not under the page lock: the zap waits until a handler reads it. */
	selfzap(rt, r, pa);
	pte_lock(pte);
	pte->flags &= (uint8_t)~PTE_ZAPPING;
	/* discarded while it was being zapped: the frame is not ours now */
	if (pte->state != PS_INACTIVE || pte->frame != f) {
		pte_unlock(pte);
		return false;
	}
	frame_move(rt, f, FL_INACTIVE);
	pte_unlock(pte);
	STAT_INC(rt, deactivations);
	STAT_ADD(rt, deactivation_flushes, 2); /* the protection and the zap */
	return true;
}

/*
 * Take the oldest frame of @which (rotating it to the tail, so that a page
 * that cannot be taken now does not block the scan) and lock its page if
 * it is in @state and none of @busy flags is set.  Returns false when the
 * list is empty; *@ptep is NULL when this frame had to be passed over --
 * and *@rotated, if given, is set when that was an active page's owed
 * turn.
 */
static bool scan_head(struct upg_runtime *rt, enum upg_frame_list which,
		      uint8_t state, uint8_t busy, uint32_t *fp,
		      struct upg_pte **ptep, struct upg_region **rp,
		      size_t *pagep, bool *rotated)
{
	struct upg_list *l = frame_list(rt, (uint8_t)which);
	struct upg_pte *pte;
	uint32_t f;

	*ptep = NULL;
	if (rotated)
		*rotated = false;
	pthread_mutex_lock(&rt->lru_lock);
	f = l->head;
	if (f == UPG_NO_FRAME) {
		pthread_mutex_unlock(&rt->lru_lock);
		return false;
	}
	frame_move_locked(rt, f, which);
	if (which == FL_ACTIVE && rt->frames[f].passes) {
		/* page_reactivate(), page_refaulted(): one more turn */
		rt->frames[f].passes--;
		if (rotated)
			*rotated = true;
		pthread_mutex_unlock(&rt->lru_lock);
		return true;
	}
	pthread_mutex_unlock(&rt->lru_lock);

	pte = lock_frame_page(rt, f, rp, pagep);
	if (!pte)
		return true;
	if (pte->state != state || (pte->flags & busy)) {
		pte_unlock(pte);
		return true;
	}
	*fp = f;
	*ptep = pte;
	return true;
}

/*
 * Is the staged copy of frame @f all zero?  Staging is the pager's own
 * memory, and a staged slot is populated, so reading it cannot fault.
 * Zero pages are never written to swap (a bitmap scan costs far less than
 * the write and the later read).
 */
static bool staged_is_zero(struct upg_runtime *rt, uint32_t f)
{
	const uint64_t *w;
	uint64_t acc = 0;

	if (rt->frames[f].stage == UPG_NO_STAGE)
		return false;
	w = (const uint64_t *)frame_staging(rt, f);
	for (size_t i = 0; i < rt->page_size / sizeof(*w); i += 8) {
		acc |= w[i] | w[i + 1] | w[i + 2] | w[i + 3] | w[i + 4] |
		       w[i + 5] | w[i + 6] | w[i + 7];
		if (acc)
			return false;
	}
	return true;
}

/*
 * A handler holds a REMAP, and every message read after it, until it gets
 * regions_lock for writing (fault.c); reclaim holds the read side for a
 * whole pass.  Step aside for it between pages: meanwhile the REMOVE
 * events of our own zaps are read but not applied, and their entries pile
 * up in rt->selfzap.  Called with regions_lock read-held, no page locked.
 */
static void yield_to_writer(struct upg_runtime *rt)
{
	if (!atomic_load_explicit(&rt->regions_writer_waiting, memory_order_relaxed))
		return;
	pthread_rwlock_unlock(&rt->regions_lock);
	for (int i = 0; i < 1000 && atomic_load(&rt->regions_writer_waiting); i++)
		sched_yield();
	pthread_rwlock_rdlock(&rt->regions_lock);
}

/*
 * Spans.  Each UFFDIO_MOVE ends with a TLB flush, an interrupt to every
 * other CPU that runs the process: per single-page move, 17 us on a 2-vCPU
 * KVM guest and 21 us on a PVM guest while another thread runs, against
 * 0.06 and 0.65 us per page when 64 pages move in one call (bench/unmap).
 * So the oldest page does not leave alone: the pages around it in its
 * region that are on the same list, with no turn owed, leave with it into
 * a run of staging slots, locked meanwhile.  A page that is locked by
 * someone else, or that stays (protected, pinned, under I/O), ends the
 * span; the pages between those taken that are not active -- holes --
 * stay where they are.
 *
 * Each run of consecutive pages taken moves by one UFFDIO_MOVE: the kernel
 * flushes once per run of present pages anyway.  A move never passes over
 * holes (UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES): in Linux 6.18 move_pages()
 * keeps the -EAGAIN of an attempt that found a page changing under it,
 * and when the retry finds that page zapped by the program it counts a
 * hole as progress but still sees the old -EAGAIN, and loops for ever.
 * Seen 2026-12-07: test-alloc-mmap hung with the reclaim thread spinning
 * in move_pages_ptes() over a range the program had discarded.  Without
 * the flag the retry fails with -ENOENT, and the move stops.
 *
 * A page so taken may be younger than the pages left on the list, but it
 * is unmapped only, not evicted: it still has its time on the inactive
 * list to be seen in use.  Measured 2026-12-07 on bench/paging (256 MiB,
 * --work 0.5, PVM guest), moves that took pages -- TLB flushes -- for
 * the same deactivations:
 *
 *                  deactivations   runs of consecutive   spans, after
 *                                  frames (replaced)     and before
 *   uniform-rand      158000             82700               39200
 *   strided           142000             42100               19500
 *   zipf              154000             77900               43000
 *
 * Faults did not rise: soft and major within 2% on uniform-rand and zipf;
 * strided had fewer.  (The spans' figures first published, 17600-21000
 * for uniform-rand, counted one flush per move over holes.)
 */
#define SPAN_MAX STAGE_RUN_MAX

struct span {
	struct upg_region *r;
	size_t page;                     /* the span's first page */
	unsigned n;                      /* pages, holes included */
	struct upg_pte *ptes[SPAN_MAX];  /* locked, but for the holes */
	uint32_t frames[SPAN_MAX];       /* isolated; UPG_NO_FRAME: a hole */
};

/* May frame @g, of a page near a span's head, leave with it? */
static bool joins_span(struct upg_runtime *rt, enum upg_frame_list which,
		       uint32_t g)
{
	struct upg_frame *fr = &rt->frames[g];
	bool joins;

	pthread_mutex_lock(&rt->lru_lock);
	joins = fr->list == which && !fr->passes;
	if (joins)
		frame_move_locked(rt, g, FL_ISOLATED);
	pthread_mutex_unlock(&rt->lru_lock);
	return joins;
}

/*
 * Lock @pte for a span if it is to go: returns 1 for a page taken (its
 * frame isolated, in *@g), 0 for a hole, and -1 for a page that ends the
 * span; only the page taken is left locked.
 */
static int span_lock_page(struct upg_runtime *rt, enum upg_frame_list which,
			  struct upg_pte *pte, uint32_t *g)
{
	*g = UPG_NO_FRAME;
	if (!pte_trylock(pte))
		return -1;
	/* INACTIVE, and mapped until its zap */
	if (pte->flags & PTE_ZAPPING)
		goto end;
	if (pte->state != PS_ACTIVE) {
		pte_unlock(pte);
		return 0;
	}
	if ((pte->flags & (PTE_PINNED | PTE_IO)) ||
	    !joins_span(rt, which, pte->frame))
		goto end;
	*g = pte->frame;
	return 1;
end:
	pte_unlock(pte);
	return -1;
}

/*
 * Lock pages after the span's end for it while it has fewer than @limit
 * and @max are not taken yet, counting those taken in *@taken.  Returns
 * false once a page ends it.
 */
static bool span_extend(struct upg_runtime *rt, enum upg_frame_list which,
			struct span *sp, unsigned limit, unsigned max,
			unsigned *taken)
{
	while (sp->n < limit && *taken < max &&
	       sp->page + sp->n < sp->r->npages) {
		struct upg_pte *pte = &sp->r->ptes[sp->page + sp->n];
		int got = span_lock_page(rt, which, pte, &sp->frames[sp->n]);

		if (got < 0)
			return false;
		sp->ptes[sp->n++] = pte;
		*taken += (unsigned)got;
	}
	return sp->page + sp->n < sp->r->npages;
}

/* Drop the holes at the end of a span; its first page is always taken. */
static void span_trim(struct span *sp)
{
	while (sp->frames[sp->n - 1] == UPG_NO_FRAME)
		sp->n--;
}

/*
 * Let the pages of a span from index @from on go -- put back, oldest
 * again, on the list they came from -- and the holes then at its end.
 */
static void span_release(struct upg_runtime *rt, enum upg_frame_list which,
			 struct span *sp, unsigned from)
{
	pthread_mutex_lock(&rt->lru_lock);
	for (unsigned k = sp->n; k-- > from;)
		if (sp->frames[k] != UPG_NO_FRAME)
			frame_move_head_locked(rt, sp->frames[k], which);
	pthread_mutex_unlock(&rt->lru_lock);
	for (unsigned k = from; k < sp->n; k++)
		if (sp->frames[k] != UPG_NO_FRAME)
			pte_unlock(sp->ptes[k]);
	sp->n = from;
	span_trim(sp);
}

/*
 * Lock the pages around the span's head (locked and isolated, sp->n == 1)
 * that can go with it, taking at most @max pages in all: after the head
 * over up to half the span's length, then before it, then after it again
 * as far as the span's length allows.  Each way ends at the first page
 * that is locked by someone else, or mapped and not to go; holes beyond
 * the last page taken are left out.
 */
static void gather_span(struct upg_runtime *rt, enum upg_frame_list which,
			struct span *sp, unsigned max)
{
	struct upg_pte *before[SPAN_MAX];
	uint32_t before_frames[SPAN_MAX];
	unsigned taken = 1, nb = 0, lastb = 0;
	bool open;

	if (!rt->move_runs)
		return;
	open = span_extend(rt, which, sp, SPAN_MAX / 2, max, &taken);
	while (sp->n + nb < SPAN_MAX && taken < max && nb < sp->page) {
		struct upg_pte *pte = &sp->r->ptes[sp->page - 1 - nb];
		int got = span_lock_page(rt, which, pte, &before_frames[nb]);

		if (got < 0)
			break;
		before[nb++] = pte;
		if (got) {
			taken++;
			lastb = nb;
		}
	}
	nb = lastb; /* no holes before the first page */
	if (open)
		span_extend(rt, which, sp, SPAN_MAX - nb, max, &taken);
	span_trim(sp);
	if (!nb)
		return;
	/* the pages before the head go first, in address order */
	memmove(&sp->ptes[nb], sp->ptes, sp->n * sizeof(sp->ptes[0]));
	memmove(&sp->frames[nb], sp->frames, sp->n * sizeof(sp->frames[0]));
	for (unsigned k = 0; k < nb; k++) {
		sp->ptes[k] = before[nb - 1 - k];
		sp->frames[k] = before_frames[nb - 1 - k];
	}
	sp->page -= nb;
	sp->n += nb;
}

/*
 * Where each page of a span is after its moves, from the page tables: a
 * move may stop partway (an event pending, a page shared with a fork
 * child, a page the program zapped meanwhile, whose REMOVE event is on its
 * way), and it may have moved a page it reported as not moved (uffd.c).
 */
static bool span_where(struct upg_runtime *rt, const struct span *sp,
		       uint32_t slot, unsigned char *in_slot,
		       unsigned char *in_region)
{
	size_t len = sp->n * rt->page_size;

	upg_check(mincore(stage_addr(rt, slot), len, in_slot) == 0);
	return mincore((void *)region_page_addr(sp->r, sp->page, rt->page_size),
		       len, in_region) == 0;
}

/*
 * Move each run of pages taken in span @sp into the slots from @slot on,
 * the page of index k to slot + k.  A page that stops a move is passed
 * over and the move goes on after it, but -EAGAIN (an event pending)
 * stops them all: the moves would fail until a handler reads the event.
 * Returns how many moves took pages, each a TLB flush.
 */
static unsigned span_move(struct upg_runtime *rt, const struct span *sp,
			  uint32_t slot)
{
	unsigned k = 0, moves = 0;

	while (k < sp->n) {
		unsigned end = k + 1;
		size_t bytes = 0;
		int ret;

		if (sp->frames[k] == UPG_NO_FRAME) {
			k++;
			continue;
		}
		while (end < sp->n && sp->frames[end] != UPG_NO_FRAME)
			end++;
		if (pages_event_pending(rt, sp->r, sp->page + k, sp->page + end)) {
			k = end;
			continue;
		}
		ret = upg_uffd_move_part(&rt->staging_uffd,
					 (uintptr_t)stage_addr(rt, slot + k),
					 region_page_addr(sp->r, sp->page + k,
							  rt->page_size),
					 (end - k) * rt->page_size, false, &bytes);
		moves += bytes > 0;
		if (ret == -EAGAIN)
			break;
		k += (unsigned)(bytes >> rt->page_shift) + (ret != 0);
	}
	return moves;
}

/*
 * Deactivate the pages of the span by moves into a run of slots.  A page
 * that did not move takes the single-page path, which knows what to do
 * with it -- but that path may zap the page and wait for a handler to
 * read the event, and a handler may be waiting for the lock of a later
 * page: the rest of the span is let go first.  Returns how many pages
 * went inactive.
 */
static unsigned deactivate_span(struct upg_runtime *rt,
				enum upg_frame_list which, struct span *sp)
{
	unsigned char in_slot[SPAN_MAX], in_region[SPAN_MAX];
	unsigned got, done = 0, left = 0, k;
	uint32_t slot;
	bool known;

	if (sp->n == 1)
		return deactivate_locked(rt, sp->r, sp->page, sp->ptes[0],
					 sp->frames[0]);
	slot = staging_take_run(rt, sp->n, &got);
	if (got < sp->n) {
		/* a shorter run of slots: a shorter span */
		span_release(rt, which, sp, got);
		staging_give_back(rt, slot + sp->n, got - sp->n);
	}
	STAT_ADD(rt, deactivation_flushes, span_move(rt, sp, slot));
	known = span_where(rt, sp, slot, in_slot, in_region);
	for (k = 0; k < sp->n; k++) {
		struct upg_pte *pte = sp->ptes[k];

		if (sp->frames[k] == UPG_NO_FRAME) {
			staging_give_back(rt, slot + k, 1);
		} else if (in_slot[k] & 1) {
			moved_out(rt, pte, sp->frames[k], slot + k);
			done++;
		} else if (known && !(in_region[k] & 1) &&
			   !pages_event_pending(rt, sp->r, sp->page + k,
						sp->page + k + 1)) {
			drop_zapped(rt, pte, slot + k);
		} else {
			/* still mapped, or its event pending: kept locked */
			staging_give_back(rt, slot + k, 1);
			sp->ptes[left] = pte;
			sp->frames[left++] = sp->frames[k];
		}
	}
	if (!left)
		return done;
	/* the first page left takes the single-page path, the rest go back */
	sp->n = left;
	span_release(rt, which, sp, 1);
	return done + deactivate_locked(rt, sp->r,
					frame_page(&rt->frames[sp->frames[0]]),
					sp->ptes[0], sp->frames[0]);
}

/*
 * Protection (frame.c): the active pages seen in use -- touched while
 * inactive, or back from swap soon after they left -- may fill at most
 * PROTECTED_SHARE_NUM/PROTECTED_SHARE_DEN of the resident pages.  Past
 * that, the oldest are demoted to the tail of probation, still mapped (no
 * unmap, no TLB flush), and are protected again only if they are seen in
 * use again on their way out.  A page that still owes passes goes round
 * the protected list instead.  Measured 2026-12-02 against one active
 * list (bench/results/experiments-20261202-night.txt), at 3/4: python3
 * bigdict.py 66800 -> 47900 major faults, zipf 50700 -> 48700, redis 5%
 * and sqlite3 4% fewer bytes read from swap, sort 3% more; at 7/8 against
 * 3/4: bigdict.py 44500, sort 8% and redis 5% less read, zipf and the
 * other workloads of bench/paging the same; at 1/2 zipf's faults fell by
 * only 1.6%.
 */
#define PROTECTED_SHARE_NUM 7
#define PROTECTED_SHARE_DEN 8

static void demote_protected(struct upg_runtime *rt)
{
	unsigned rotations = 0, demoted = 0;

	pthread_mutex_lock(&rt->lru_lock);
	while ((uint64_t)rt->active.count * PROTECTED_SHARE_DEN >
	       (uint64_t)rt->used_frames * PROTECTED_SHARE_NUM) {
		uint32_t f = rt->active.head;

		if (rt->frames[f].passes && rotations++ < rt->active.count) {
			rt->frames[f].passes--;
			frame_move_locked(rt, f, FL_ACTIVE);
			continue;
		}
		frame_move_locked(rt, f, FL_PROBATION);
		demoted++;
	}
	pthread_mutex_unlock(&rt->lru_lock);
	STAT_ADD(rt, demotions, demoted);
}

/*
 * Deactivate up to @n of the oldest active pages: probation's first, the
 * protected list's only when probation is empty.  Returns how many.
 */
static unsigned deactivate_some(struct upg_runtime *rt, unsigned n)
{
	struct span sp;
	unsigned done = 0, scanned = 0, rotations = 0, max_rotations;

	demote_protected(rt);
	pthread_mutex_lock(&rt->lru_lock);
	max_rotations = rt->active.count;
	pthread_mutex_unlock(&rt->lru_lock);
	while (done < n && scanned < 2 * n) {
		enum upg_frame_list which;
		struct upg_region *r;
		struct upg_pte *pte;
		size_t page;
		uint32_t f;
		bool rotated;

		yield_to_writer(rt);
		which = __atomic_load_n(&rt->probation.count, __ATOMIC_RELAXED) ?
			FL_PROBATION : FL_ACTIVE;
		if (!scan_head(rt, which, PS_ACTIVE,
			       PTE_PINNED | PTE_IO | PTE_ZAPPING, &f, &pte, &r,
			       &page, &rotated))
			break;
		/*
		 * A rotation (a page's extra pass) is cheap and no failure to
		 * take a page: it is not counted, up to one whole list's worth.
		 */
		if (rotated && rotations++ < max_rotations)
			continue;
		scanned++;
		if (!pte)
			continue;
		frame_move(rt, f, FL_ISOLATED);
		sp.r = r;
		sp.page = page;
		sp.n = 1;
		sp.ptes[0] = pte;
		sp.frames[0] = f;
		gather_span(rt, which, &sp, n - done);
		done += deactivate_span(rt, which, &sp);
	}
	return done;
}

struct wb_page {
	struct upg_region *region;
	size_t page;
	uint32_t frame;
};

struct wb_run {
	uint32_t slot, n, tries;
	struct wb_page *pages; /* n entries of the batch */
	struct iovec iov[BATCH];
};

/* A write that finished (@ok) or failed for good: settle each page. */
static void writeback_done(struct upg_runtime *rt, struct wb_run *run, bool ok)
{
	for (uint32_t i = 0; i < run->n; i++) {
		struct wb_page *w = &run->pages[i];
		struct upg_pte *pte = &w->region->ptes[w->page];
		uint32_t slot = run->slot + i;

		pte_lock(pte);
		pte->flags &= (uint8_t)~PTE_IO;
		if (pte->flags & PTE_DISCARD) {
			swap_free(rt, slot);
			page_drop(rt, pte);
		} else if (!ok) {
			/* never drop a page: keep it in RAM, dirty */
			swap_free(rt, slot);
			if (pte->state == PS_WRITEBACK) {
				pte_set_state(rt, pte, PS_INACTIVE);
				frame_move(rt, w->frame, FL_INACTIVE);
			} else {
				staging_release(rt, w->frame);
			}
			page_mark_dirty(rt, pte);
		} else if (pte->state == PS_WRITEBACK) {
			pte_set_state(rt, pte, PS_SWAPPED);
			page_evicted(rt, pte);
			pte->slot = slot;
			pte->flags &= PTE_PINNED;
			frame_free(rt, w->frame);
			STAT_INC(rt, pages_written);
		} else {
			/* faulted back in during the write (ACTIVE now) */
			if (pte->flags & PTE_DIRTY)
				swap_free(rt, slot);
			else
				pte->slot = slot;
			staging_release(rt, w->frame);
			STAT_INC(rt, pages_written);
		}
		pte_unlock(pte);
		atomic_fetch_sub(&w->region->inflight, 1);
	}
}

static void submit_run(struct upg_runtime *rt, struct wb_run *run, unsigned idx)
{
	upg_ring_writev(&rt->reclaim_ring, rt->swapfile.fd, run->iov, run->n,
			(uint64_t)run->slot * rt->page_size, idx);
	STAT_INC(rt, write_requests);
}

/*
 * Evict up to @n of the oldest inactive pages.  Returns how many frames
 * were freed; *@blocked is set when dirty pages could not be written
 * (swap full or failing).
 */
static unsigned evict_some(struct upg_runtime *rt, unsigned n, bool *blocked)
{
	struct wb_page dirty[BATCH];
	struct wb_run runs[BATCH];
	unsigned ndirty = 0, nruns = 0, freed = 0, scanned = 0, inflight = 0;

	if (n > BATCH)
		n = BATCH;
	while (ndirty + freed < n && scanned < 2 * n) {
		struct upg_region *r;
		struct upg_pte *pte;
		size_t page;
		uint32_t f;

		scanned++;
		if (!scan_head(rt, FL_INACTIVE, PS_INACTIVE,
			       PTE_ZAPPING | PTE_PINNED, &f, &pte, &r, &page,
			       NULL))
			break;
		if (!pte)
			continue;
		/* by contents, every clean page was summed as it came in */
		upg_assert(!rt->dirty_by_sum || (pte->flags & PTE_DIRTY) ||
			   pte->slot == UPG_NO_SLOT || rt->frames[f].summed);
		if (!(pte->flags & PTE_DIRTY) && pte->slot != UPG_NO_SLOT &&
		    rt->frames[f].summed) {
			/* mapped writable: did the program write it? */
			if (pagesum_unchanged(rt, f, frame_staging(rt, f))) {
				STAT_INC(rt, sum_unchanged);
			} else {
				STAT_INC(rt, sum_changed);
				page_mark_dirty(rt, pte);
			}
		}
		if (!(pte->flags & PTE_DIRTY) && pte->slot != UPG_NO_SLOT) {
			/* clean: swap already has it */
			if (pte->flags & PTE_PROBE)
				predict_graded_wrong(rt);
			frame_free(rt, f);
			pte_set_state(rt, pte, PS_SWAPPED);
			page_evicted(rt, pte);
			pte->flags &= PTE_PINNED;
			STAT_INC(rt, clean_drops);
			freed++;
			pte_unlock(pte);
			continue;
		}
		if (staged_is_zero(rt, f)) {
			/*
			 * All zero: a page filled ahead that nobody wrote, or
			 * zeroed by the program.  EMPTY reads back the same.
			 */
			page_drop(rt, pte);
			STAT_INC(rt, zero_drops);
			freed++;
			pte_unlock(pte);
			continue;
		}
		frame_move(rt, f, FL_ISOLATED);
		pte_set_state(rt, pte, PS_WRITEBACK);
		pte->flags |= PTE_IO;
		pte->flags &= (uint8_t)~PTE_DIRTY;
		pte->slot = UPG_NO_SLOT;
		/* for its new slot: summed again if it is faulted back clean */
		rt->frames[f].summed = 0;
		atomic_fetch_add(&r->inflight, 1);
		pte_unlock(pte);
		dirty[ndirty++] = (struct wb_page){ r, page, f };
	}

	/* consecutive slots, one vectored write per run */
	for (unsigned i = 0; i < ndirty;) {
		uint32_t got = 0;
		uint32_t slot = swap_alloc(rt, ndirty - i, &got);
		struct wb_run *run;

		if (slot == UPG_NO_SLOT) {
			/* swap full: the rest go back to the inactive list */
			for (uint32_t k = 0; k < ndirty - i; k++) {
				struct upg_pte *pte =
					&dirty[i + k].region->ptes[dirty[i + k].page];

				pte_lock(pte);
				pte->flags &= (uint8_t)~PTE_IO;
				page_mark_dirty(rt, pte);
				if (pte->flags & PTE_DISCARD) {
					page_drop(rt, pte);
				} else {
					if (pte->state == PS_WRITEBACK)
						pte_set_state(rt, pte, PS_INACTIVE);
					else /* faulted back: staging is garbage */
						staging_release(rt, dirty[i + k].frame);
					frame_move(rt, dirty[i + k].frame,
						   pte->state == PS_INACTIVE ?
						   FL_INACTIVE : FL_ACTIVE);
				}
				pte_unlock(pte);
				atomic_fetch_sub(&dirty[i + k].region->inflight, 1);
			}
			STAT_INC(rt, swap_full);
			*blocked = true;
			break;
		}
		run = &runs[nruns];
		run->slot = slot;
		run->n = got;
		run->tries = 0;
		run->pages = &dirty[i];
		for (uint32_t k = 0; k < got; k++) {
			run->iov[k].iov_base = frame_staging(rt, dirty[i + k].frame);
			run->iov[k].iov_len = rt->page_size;
		}
		submit_run(rt, run, nruns);
		nruns++;
		inflight++;
		i += got;
	}
	upg_ring_submit(&rt->reclaim_ring);

	while (inflight > 0) {
		struct upg_completion c[BATCH];
		unsigned k;

		upg_ring_wait(&rt->reclaim_ring, 0);
		k = upg_ring_reap(&rt->reclaim_ring, c, ARRAY_SIZE(c));
		for (unsigned j = 0; j < k; j++) {
			struct wb_run *run = &runs[c[j].tag];
			bool ok = c[j].res == (int32_t)(run->n * rt->page_size);

			if (!ok && ++run->tries < WRITE_RETRIES) {
				STAT_INC(rt, io_retries);
				submit_run(rt, run, (unsigned)c[j].tag);
				continue;
			}
			if (!ok) {
				STAT_INC(rt, io_errors);
				upg_warn_once("swap write failed: %s; pages stay in "
					      "memory", c[j].res < 0 ?
					      upg_strerror(-c[j].res) : "short write");
				*blocked = true;
			} else {
				freed += run->n;
			}
			writeback_done(rt, run, ok);
			inflight--;
		}
		upg_ring_submit(&rt->reclaim_ring);
	}
	return freed;
}

static bool need_reclaim(struct upg_runtime *rt)
{
	return frames_free_count(rt) < rt->low_free ||
	       atomic_load(&rt->frame_waiters) > 0 ||
	       __atomic_load_n(&rt->cold_pending, __ATOMIC_RELAXED) > 0;
}

/* One reclaim pass, up to the high watermark and through queued COLD pages. */
static void reclaim_run(struct upg_runtime *rt)
{
	unsigned idle = 0;

	pthread_rwlock_rdlock(&rt->regions_lock);
	while (!atomic_load(&rt->stopping) && idle < 3) {
		uint32_t free = frames_free_count(rt);
		uint32_t cold = __atomic_load_n(&rt->cold_pending, __ATOMIC_RELAXED);
		uint32_t used = __atomic_load_n(&rt->used_frames, __ATOMIC_RELAXED);
		uint32_t inactive_target = used / INACTIVE_SHARE > BATCH ?
			used / INACTIVE_SHARE : BATCH;
		unsigned want, freed;
		bool blocked = false;

		if (free >= rt->high_free && cold == 0 &&
		    atomic_load(&rt->frame_waiters) == 0)
			break;
		want = free < rt->high_free ? rt->high_free - free : 1;
		if (cold > want)
			want = cold;
		if (want > BATCH)
			want = BATCH;
		/*
		 * Keep the inactive list near its target, so that a page
		 * spends time there -- time in which a touch is a soft fault
		 * that saves it -- before it reaches the head and leaves.
		 */
		if (rt->inactive.count < inactive_target + want) {
			uint32_t short_by = inactive_target + want - rt->inactive.count;

			deactivate_some(rt, short_by < 4 * BATCH ? short_by : 4 * BATCH);
		}
		freed = evict_some(rt, want, &blocked);
		if (cold) {
			pthread_mutex_lock(&rt->lru_lock);
			rt->cold_pending = freed >= rt->cold_pending ?
				0 : rt->cold_pending - freed;
			if (blocked)
				rt->cold_pending = 0;
			/*
			 * Queued COLD pages are on the inactive list: those
			 * that left it another way (faulted back, discarded,
			 * evicted by a pass that began before they were
			 * queued) are not waited for -- a count above the
			 * list's length would keep COLD advice waiting for
			 * evictions that can never come.
			 */
			if (rt->cold_pending > rt->inactive.count)
				rt->cold_pending = rt->inactive.count;
			pthread_mutex_unlock(&rt->lru_lock);
		}
		if (blocked && freed == 0) {
			/*
			 * Swap full or failing: run over budget rather than
			 * drop a page or leave a fault waiting forever.
			 */
			pthread_mutex_lock(&rt->lru_lock);
			if (rt->frame_limit < rt->nframes) {
				uint32_t more = rt->high_free;

				if (rt->frame_limit + more > rt->nframes)
					more = rt->nframes - rt->frame_limit;
				rt->frame_limit += more;
			}
			pthread_mutex_unlock(&rt->lru_lock);
			upg_warn_once("swap store is full or failing: running over "
				      "the budget (see the swap_full statistic)");
			runtime_wake_handlers(rt);
			break;
		}
		if (!blocked && rt->frame_limit > rt->budget_frames) {
			pthread_mutex_lock(&rt->lru_lock);
			rt->frame_limit = rt->used_frames > rt->budget_frames ?
				rt->used_frames : rt->budget_frames;
			pthread_mutex_unlock(&rt->lru_lock);
		}
		idle = freed ? 0 : idle + 1;
		yield_to_writer(rt);
	}
	pthread_rwlock_unlock(&rt->regions_lock);
}

void *reclaim_main(void *arg)
{
	struct upg_runtime *rt = arg;

	rt->reclaim_tid = (pid_t)syscall(SYS_gettid);
	pthread_mutex_lock(&rt->reclaim_lock);
	while (!atomic_load(&rt->stopping)) {
		if (atomic_load(&rt->ndead)) {
			/* regions the program unmapped: not a handler's job */
			pthread_mutex_unlock(&rt->reclaim_lock);
			pthread_rwlock_rdlock(&rt->fork_lock);
			region_reap_dead(rt);
			pthread_rwlock_unlock(&rt->fork_lock);
			pthread_mutex_lock(&rt->reclaim_lock);
		}
		if (!need_reclaim(rt)) {
			struct timespec ts;

			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_nsec += 50 * 1000 * 1000;
			if (ts.tv_nsec >= 1000000000L) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000L;
			}
			pthread_cond_timedwait(&rt->reclaim_cond, &rt->reclaim_lock,
					       &ts);
			continue;
		}
		pthread_mutex_unlock(&rt->reclaim_lock);
		pthread_rwlock_rdlock(&rt->fork_lock);
		reclaim_run(rt);
		pthread_rwlock_unlock(&rt->fork_lock);
		pthread_mutex_lock(&rt->reclaim_lock);
		rt->reclaim_generation++;
		pthread_cond_broadcast(&rt->reclaim_done);
		if (atomic_load(&rt->frame_waiters) > 0 &&
		    frames_free_count(rt) == 0) {
			/* nothing could be freed right now: don't spin */
			pthread_mutex_unlock(&rt->reclaim_lock);
			usleep(200);
			pthread_mutex_lock(&rt->reclaim_lock);
		}
	}
	pthread_cond_broadcast(&rt->reclaim_done);
	pthread_mutex_unlock(&rt->reclaim_lock);
	return NULL;
}

/*
 * COLD and DEACTIVATE advice: deactivate the pages of the range and put
 * their frames at the head of the inactive list; for COLD (@evict), then
 * let the reclaim thread write them, and wait.
 */
int reclaim_cold(struct upg_runtime *rt, void *start, size_t len, bool evict)
{
	uintptr_t a = (uintptr_t)start & ~(uintptr_t)(rt->page_size - 1);
	uintptr_t end = (uintptr_t)start + len;
	uint32_t queued = 0;
	uint64_t gen;

	/*
	 * The pass to wait for is one that ends after the pages were queued.
	 * The generation is taken before queuing: the reclaim thread wakes on
	 * its own and may evict every queued page, and end its pass, before
	 * this thread gets to wait -- and it would then sleep, idle, while a
	 * generation taken after queuing waited for a pass that never comes.
	 */
	pthread_mutex_lock(&rt->reclaim_lock);
	gen = rt->reclaim_generation;
	pthread_mutex_unlock(&rt->reclaim_lock);
	for (; a < end; a += rt->page_size) {
		struct upg_region *r;
		struct upg_pte *pte;
		size_t page;
		uint32_t f;

		r = region_get(rt, a, &page);
		if (!r)
			return -EINVAL;
		pte = &r->ptes[page];
		pte_lock(pte);
		f = pte->frame;
		if (pte->state == PS_ACTIVE &&
		    !(pte->flags & (PTE_PINNED | PTE_IO | PTE_ZAPPING))) {
			frame_move(rt, f, FL_ISOLATED);
			if (!deactivate_locked(rt, r, page, pte, f)) {
				region_put(rt);
				continue;
			}
			pte_lock(pte);
		}
		if (pte->state == PS_INACTIVE && pte->frame == f) {
			/* to the head: evicted first */
			pthread_mutex_lock(&rt->lru_lock);
			frame_move_head_locked(rt, f, FL_INACTIVE);
			rt->cold_pending += evict;
			pthread_mutex_unlock(&rt->lru_lock);
			queued += evict;
		}
		pte_unlock(pte);
		region_put(rt);
	}
	if (!queued)
		return 0;
	if (UPG_DEBUG && rt->inject_cold_delay_ms)
		usleep(rt->inject_cold_delay_ms * 1000U);
	pthread_mutex_lock(&rt->reclaim_lock);
	pthread_cond_signal(&rt->reclaim_cond);
	while (!atomic_load(&rt->stopping) &&
	       (rt->reclaim_generation == gen ||
		__atomic_load_n(&rt->cold_pending, __ATOMIC_RELAXED) > 0))
		pthread_cond_wait(&rt->reclaim_done, &rt->reclaim_lock);
	pthread_mutex_unlock(&rt->reclaim_lock);
	return 0;
}
