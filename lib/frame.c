/* SPDX-License-Identifier: MIT */
/*
 * frame.c - frames: the budget made concrete, and the LRU lists.
 *
 * A frame is one pager page of budget.  A page holds a frame for as long as
 * its data is in RAM: mapped in its region (ACTIVE), parked in a staging
 * slot (INACTIVE, WRITEBACK), or being read (READING).  Because a
 * page cannot become resident without a frame, the number of frames in use
 * is the resident size, and the budget is a limit on frames.
 *
 * The lists are those of Linux's mm/vmscan.c, with the active list split
 * in two as in segmented LRU:
 *
 *   fault/prefetch --> [PROBATION head ... tail] --+
 *   seen in use ---> [ACTIVE (protected) h ... t]  +- deactivate oldest
 *                          |  over 7/8 of resident:   (probation first)
 *                          +--> demoted to PROBATION  |
 *                                                     v
 *                     [INACTIVE head ... tail] -- evict oldest --> swap
 *                          |
 *                          +---- soft fault: seen in use
 *
 * User space cannot see accessed bits, so "referenced" means "faulted back
 * while inactive": a page that is touched while on the inactive list takes
 * a soft fault and goes to the protected list; one that is not is evicted.
 * A page back from swap soon after it left was in use too (page_refaulted()):
 * it goes there as well, owed extra turns.  Everything else -- a first
 * touch, a page read back late, one read ahead -- is on probation, and a
 * page touched once (the tail of a skewed distribution, a scan) leaves
 * after crossing probation only, not the whole resident set: the pages in
 * use keep their frames.  Protected pages age too: past their share of the
 * resident set the oldest are demoted to probation (reclaim.c), mapped all
 * the while, and stay protected only if they are seen in use again.
 *
 * The frame table and lists are guarded by rt->lru_lock.  A frame is taken
 * and released by whoever holds its page's lock.
 */
#include "pager.h"

#include <errno.h>
#include <sys/mman.h>

struct upg_list *frame_list(struct upg_runtime *rt, uint8_t l)
{
	switch (l) {
	case FL_FREE:
		return &rt->free;
	case FL_ACTIVE:
		return &rt->active;
	case FL_INACTIVE:
		return &rt->inactive;
	case FL_PROBATION:
		return &rt->probation;
	default:
		return NULL;
	}
}

static void list_unlink(struct upg_runtime *rt, uint32_t f)
{
	struct upg_frame *fr = &rt->frames[f];
	struct upg_list *l = frame_list(rt, fr->list);

	if (!l)
		return;
	if (fr->prev != UPG_NO_FRAME)
		rt->frames[fr->prev].next = fr->next;
	else
		l->head = fr->next;
	if (fr->next != UPG_NO_FRAME)
		rt->frames[fr->next].prev = fr->prev;
	else
		l->tail = fr->prev;
	l->count--;
	fr->prev = fr->next = UPG_NO_FRAME;
}

static void list_append(struct upg_runtime *rt, uint32_t f, uint8_t to)
{
	struct upg_frame *fr = &rt->frames[f];
	struct upg_list *l = frame_list(rt, to);

	fr->list = to;
	fr->prev = fr->next = UPG_NO_FRAME;
	if (!l)
		return;
	fr->prev = l->tail;
	if (l->tail != UPG_NO_FRAME)
		rt->frames[l->tail].next = f;
	else
		l->head = f;
	l->tail = f;
	l->count++;
}

int frames_init(struct upg_runtime *rt)
{
	uint32_t budget = (uint32_t)(rt->opts.budget / rt->page_size);
	uint32_t cap;

	rt->budget_frames = budget;
	rt->base_frames = budget;
	rt->frame_limit = budget;
	/*
	 * Room beyond the budget, used only while the swap store is full or
	 * failing: then the pager keeps running over budget rather than drop
	 * a page: three budgets more, or 1 GiB of 4 KiB pages.  Address space
	 * only; nothing is touched until used.
	 */
	cap = budget + (budget * 3 > 262144 ? budget * 3 : 262144);
	rt->nframes = cap;
	rt->frames_bytes = (size_t)cap * sizeof(struct upg_frame);
	rt->frames = upg_os_alloc(rt->frames_bytes);
	if (!rt->frames)
		return -ENOMEM;
	/* frames past next_unused are free and untouched: no table to fill */
	rt->free = (struct upg_list){ UPG_NO_FRAME, UPG_NO_FRAME, 0 };
	rt->next_unused = 0;
	rt->active = (struct upg_list){ UPG_NO_FRAME, UPG_NO_FRAME, 0 };
	rt->inactive = (struct upg_list){ UPG_NO_FRAME, UPG_NO_FRAME, 0 };
	rt->probation = (struct upg_list){ UPG_NO_FRAME, UPG_NO_FRAME, 0 };

	rt->low_free = (uint32_t)((uint64_t)budget * rt->opts.low_watermark / 100);
	rt->high_free = (uint32_t)((uint64_t)budget * rt->opts.high_watermark / 100);
	if (rt->low_free < 2)
		rt->low_free = 2;
	if (rt->high_free < rt->low_free + 2)
		rt->high_free = rt->low_free + 2;

	return staging_init(rt);
}

void frames_destroy(struct upg_runtime *rt)
{
	pagesum_destroy(rt);
	staging_destroy(rt);
	upg_os_free(rt->frames, rt->frames_bytes);
	rt->frames = NULL;
}

/* The oldest free frame, else one never used; lru_lock held. */
static uint32_t pick_free_frame(struct upg_runtime *rt)
{
	if (rt->free.head != UPG_NO_FRAME) {
		uint32_t f = rt->free.head;

		list_unlink(rt, f);
		return f;
	}
	return rt->next_unused++;
}

uint32_t frame_alloc(struct upg_runtime *rt, struct upg_region *r, size_t page)
{
	struct upg_frame *fr;
	uint32_t f, used;

	pthread_mutex_lock(&rt->lru_lock);
	if (rt->used_frames >= rt->frame_limit ||
	    (rt->free.head == UPG_NO_FRAME && rt->next_unused == rt->nframes)) {
		pthread_mutex_unlock(&rt->lru_lock);
		return UPG_NO_FRAME;
	}
	f = pick_free_frame(rt);
	fr = &rt->frames[f];
	fr->region_id = r->id;
	fr->page_lo = (uint32_t)page;
	fr->page_hi = (uint32_t)((uint64_t)page >> 32);
	fr->list = FL_ISOLATED;
	fr->passes = 0;
	fr->summed = 0;
	/* a freed frame gave its slot up (frame_free); a new one has none */
	fr->stage = UPG_NO_STAGE;
	fr->prev = fr->next = UPG_NO_FRAME;
	used = ++rt->used_frames;
	upg_assert(rt->free.count + rt->used_frames == rt->next_unused);
	pthread_mutex_unlock(&rt->lru_lock);

	stats_note_resident(rt, used);
	if (rt->budget_frames - (used < rt->budget_frames ? used : rt->budget_frames) <
	    rt->low_free)
		runtime_wake_reclaim(rt);
	return f;
}

void frame_free(struct upg_runtime *rt, uint32_t f)
{
	struct upg_frame *fr = &rt->frames[f];
	bool wake;

	staging_release(rt, f);
	pthread_mutex_lock(&rt->lru_lock);
	upg_assert(fr->list != FL_FREE);
	list_unlink(rt, f);
	list_append(rt, f, FL_FREE);
	rt->used_frames--;
	upg_assert(rt->free.count + rt->used_frames == rt->next_unused);
	wake = atomic_load(&rt->frame_waiters) > 0;
	pthread_mutex_unlock(&rt->lru_lock);
	if (wake)
		runtime_wake_handlers(rt);
}

void frame_move_locked(struct upg_runtime *rt, uint32_t f,
		       enum upg_frame_list to)
{
	list_unlink(rt, f);
	list_append(rt, f, (uint8_t)to);
}

void frame_move_head_locked(struct upg_runtime *rt, uint32_t f,
			    enum upg_frame_list to)
{
	struct upg_frame *fr = &rt->frames[f];
	struct upg_list *l = frame_list(rt, (uint8_t)to);

	list_unlink(rt, f);
	fr->list = (uint8_t)to;
	fr->prev = fr->next = UPG_NO_FRAME;
	if (!l)
		return;
	fr->next = l->head;
	if (l->head != UPG_NO_FRAME)
		rt->frames[l->head].prev = f;
	else
		l->tail = f;
	l->head = f;
	l->count++;
}

void frame_move(struct upg_runtime *rt, uint32_t f, enum upg_frame_list to)
{
	pthread_mutex_lock(&rt->lru_lock);
	frame_move_locked(rt, f, to);
	pthread_mutex_unlock(&rt->lru_lock);
}

static void activate(struct upg_runtime *rt, struct upg_pte *pte,
		     uint8_t passes)
{
	pte_set_state(rt, pte, PS_ACTIVE);
	pthread_mutex_lock(&rt->lru_lock);
	frame_move_locked(rt, pte->frame,
			  (pte->flags & PTE_PINNED) ? FL_ISOLATED :
			  passes ? FL_ACTIVE : FL_PROBATION);
	rt->frames[pte->frame].passes = passes;
	pthread_mutex_unlock(&rt->lru_lock);
}

void page_activate(struct upg_runtime *rt, struct upg_pte *pte)
{
	activate(rt, pte, 0);
}

/*
 * A page that faulted back from the inactive list is in the working set.
 * Unmapping it again as soon as it reaches the head of the active list
 * would cost it another soft fault: it is passed over once (the reclaim
 * scan clears the mark), the second chance that the accessed bit gives a
 * page in the kernel's CLOCK.
 */
void page_reactivate(struct upg_runtime *rt, struct upg_pte *pte)
{
	activate(rt, pte, 1);
}

/*
 * Refaults.  The inactive list is small (reclaim.c), so a page in heavy
 * use is often evicted all the same, and a fault soon after is the first
 * sign of it -- as in the kernel's mm/workingset.c, the refault distance
 * says how soon: the pages evicted between the page's eviction and its
 * return.  One that comes back within half a budget of evictions would
 * have stayed had it been kept a little longer, so it is: passed over
 * REFAULT_PASSES times at the head of the active list, as many full
 * turns of the list.  Pages read once, or cycled through, come back late
 * or never and get no passes.  Measured 2026-12-02 (experiments-20261202-
 * evening.txt): zipf 52600 -> 50700 major faults, python3 bigdict.py
 * 70500 -> 66500; eight passes, and a window of a whole budget, cut
 * zipf further (50000) but held an earlier phase of python3 pywork.py
 * in memory, 25% slower.
 */
#define REFAULT_PASSES 2

void page_evicted(struct upg_runtime *rt, struct upg_pte *pte)
{
	pte->evicted_at = __atomic_add_fetch(&rt->eviction_clock, 1,
					     __ATOMIC_RELAXED);
}

void page_refaulted(struct upg_runtime *rt, struct upg_pte *pte)
{
	uint32_t now = __atomic_load_n(&rt->eviction_clock, __ATOMIC_RELAXED);
	uint32_t budget = __atomic_load_n(&rt->budget_frames, __ATOMIC_RELAXED);

	/* unsigned: right across the clock's wrap-around */
	if (now - pte->evicted_at <= budget / 2) {
		STAT_INC(rt, refaults_kept);
		activate(rt, pte, REFAULT_PASSES);
	} else {
		activate(rt, pte, 0);
	}
}

/*
 * A clean page's copy in swap stays valid until its first write; the slot
 * is freed here, unless a write of it is in flight (PTE_IO: its completion
 * frees it).  Its fingerprint (pagesum.c) goes with it.
 */
void page_mark_dirty(struct upg_runtime *rt, struct upg_pte *pte)
{
	pte->flags |= PTE_DIRTY;
	rt->frames[pte->frame].summed = 0;
	if (!(pte->flags & PTE_IO) && pte->slot != UPG_NO_SLOT) {
		swap_free(rt, pte->slot);
		pte->slot = UPG_NO_SLOT;
	}
}

void page_drop(struct upg_runtime *rt, struct upg_pte *pte)
{
	swap_free(rt, pte->slot);
	frame_free(rt, pte->frame);
	pte_set_state(rt, pte, PS_EMPTY);
	pte->flags &= PTE_PINNED;
	pte->slot = UPG_NO_SLOT;
	pte->frame = UPG_NO_FRAME;
}

uint32_t frames_free_count(const struct upg_runtime *rt)
{
	uint32_t used = __atomic_load_n(&rt->used_frames, __ATOMIC_RELAXED);
	uint32_t budget = __atomic_load_n(&rt->budget_frames, __ATOMIC_RELAXED);

	return used >= budget ? 0 : budget - used;
}

/*
 * Charges against the budget (upg_budget_charge()).  A smaller budget
 * takes effect as any shortage does: frames_free_count() falls, and
 * reclaim evicts down to the high watermark of the new budget; until then
 * the frames in use stay allowed (frame_limit), so that no fault has to
 * wait for a frame the charge took away.
 */
int frames_charge(struct upg_runtime *rt, int64_t bytes)
{
	uint64_t pages, cap = rt->base_frames / 2;
	uint32_t budget, old;

	pthread_mutex_lock(&rt->lru_lock);
	if (bytes < 0 && -bytes > rt->charged_bytes) {
		pthread_mutex_unlock(&rt->lru_lock);
		return -EINVAL;
	}
	__atomic_store_n(&rt->charged_bytes, rt->charged_bytes + bytes,
			 __ATOMIC_RELAXED);
	pages = ((uint64_t)rt->charged_bytes + rt->page_size - 1) >> rt->page_shift;
	budget = rt->base_frames - (uint32_t)(pages < cap ? pages : cap);
	old = rt->budget_frames;
	__atomic_store_n(&rt->budget_frames, budget, __ATOMIC_RELAXED);
	/* (above the old budget, frame_limit is swap-full headroom: reclaim.c) */
	if (rt->frame_limit <= old)
		rt->frame_limit = rt->used_frames > budget ? rt->used_frames : budget;
	pthread_mutex_unlock(&rt->lru_lock);
	if (budget < old)
		runtime_wake_reclaim(rt);
	return 0;
}

/* ------------------------------------------------------------------------ */
/* Swap slots: the allocator grows the store on demand.                      */
/* ------------------------------------------------------------------------ */

uint32_t swap_alloc(struct upg_runtime *rt, uint32_t want, uint32_t *got)
{
	uint32_t slot;

	pthread_mutex_lock(&rt->swap_lock);
	slot = upg_slots_alloc(&rt->slots, want, got);
	if (slot == UPG_NO_SLOT && rt->slots.capacity < rt->slots.limit) {
		uint64_t grow = rt->swapfile.grow_step / rt->page_size;
		uint64_t cap = (uint64_t)rt->slots.capacity + (grow ? grow : 1);

		if (cap > rt->slots.limit)
			cap = rt->slots.limit;
		if (upg_swapfile_reserve(&rt->swapfile, cap * rt->page_size) == 0 &&
		    upg_slots_grow(&rt->slots, (uint32_t)cap) == 0)
			slot = upg_slots_alloc(&rt->slots, want, got);
	}
	pthread_mutex_unlock(&rt->swap_lock);
	return slot;
}

void swap_free(struct upg_runtime *rt, uint32_t slot)
{
	if (slot == UPG_NO_SLOT)
		return;
	pthread_mutex_lock(&rt->swap_lock);
	upg_slots_free(&rt->slots, slot);
	pthread_mutex_unlock(&rt->swap_lock);
}
