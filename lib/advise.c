/* SPDX-License-Identifier: MIT */
/*
 * advise.c - upg_advise(): the program tells the pager what it knows.
 *
 *   DONTNEED  the contents are garbage: pages become EMPTY, their frames
 *             and swap slots are freed at once, nothing is written.  This
 *             is how the allocator keeps freed memory out of swap.
 *   WILLNEED  read swapped pages in: queued for a handler, which reads
 *             them in runs and maps them (fault.c); the call returns at
 *             once.  PIN reads its pages here, synchronously.
 *   COLD      evict now: deactivate and write out, then return.
 *   DEACTIVATE  unmap now, keep resident (INACTIVE): the first half of
 *             COLD, without the write.
 *   PIN       keep resident: pinned frames leave the LRU lists.
 *   UNPIN     back to the LRU.
 *   POPULATE  about to be written: EMPTY pages zero-filled now, by the
 *             caller, without faults (fault.c, fault_populate()).
 */
#include "pager.h"

#include <errno.h>
#include <sched.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* Find the region holding all of [addr, addr+len); regions_lock read-held. */
static struct upg_region *range_region(struct upg_runtime *rt, uintptr_t addr,
				       size_t len, size_t *first, size_t *last)
{
	struct upg_region *r;
	uintptr_t base;
	size_t page;

	r = region_get(rt, addr, &page);
	if (!r)
		return NULL;
	base = atomic_load(&r->base);
	if (addr + len > base + r->len || addr + len < addr) {
		region_put(rt);
		return NULL;
	}
	*first = page;
	*last = (addr + len - base + rt->page_size - 1) >> rt->page_shift;
	return r;
}

/* Page @pte (locked), being read into frame @f, stays in swap after all. */
static void leave_in_swap(struct upg_runtime *rt, struct upg_pte *pte,
			  uint32_t f, uintptr_t pa)
{
	frame_free(rt, f);
	pte_set_state(rt, pte, PS_SWAPPED);
	upg_uffd_wake(&rt->uffd, pa, rt->page_size);
}

/*
 * Read page @page of @r in from swap if it is SWAPPED and budget is free.
 * Synchronous: the caller is a program thread asking for it.  Returns 0,
 * -ENOMEM (no free budget), -EIO, or -EAGAIN: an event is pending, and
 * the page was left in swap.
 */
static int prefetch_page(struct upg_runtime *rt, struct upg_region *r,
			 size_t page, char *buf)
{
	struct upg_pte *pte = &r->ptes[page];
	uintptr_t pa = region_page_addr(r, page, rt->page_size);
	uint32_t f, slot;
	ssize_t n;
	int ret = 0;

	pte_lock(pte);
	if (pte->state != PS_SWAPPED) {
		pte_unlock(pte);
		return 0;
	}
	if (frames_free_count(rt) <= rt->low_free &&
	    !(pte->flags & PTE_PINNED)) {
		pte_unlock(pte);
		return -ENOMEM;
	}
	f = frame_alloc(rt, r, page);
	/* a pinned page must come in: wait for reclaim to make room */
	for (int tries = 0; f == UPG_NO_FRAME && (pte->flags & PTE_PINNED) &&
			    tries < 100000; tries++) {
		pte_unlock(pte);
		runtime_wake_reclaim(rt);
		usleep(50);
		pte_lock(pte);
		if (pte->state != PS_SWAPPED) {
			pte_unlock(pte);
			return 0;
		}
		f = frame_alloc(rt, r, page);
	}
	if (f == UPG_NO_FRAME) {
		pte_unlock(pte);
		return -ENOMEM;
	}
	slot = pte->slot;
	pte->frame = f;
	pte_set_state(rt, pte, PS_READING);
	atomic_fetch_add(&r->inflight, 1);
	pte_unlock(pte);

	n = pread(rt->swapfile.fd, buf, rt->page_size,
		  (off_t)((uint64_t)slot * rt->page_size));
	STAT_INC(rt, read_requests);

	pte_lock(pte);
	if (pte->flags & PTE_DISCARD) {
		page_drop(rt, pte);
		upg_uffd_wake(&rt->uffd, pa, rt->page_size);
	} else if (n != (ssize_t)rt->page_size) {
		/* a fault will retry and report */
		leave_in_swap(rt, pte, f, pa);
		ret = -EIO;
	} else {
		size_t done = 0; /* a retry goes on where the kernel stopped */
		bool wp = rt->uffd.has_wp && !rt->dirty_by_sum;

		/*
		 * -EAGAIN: an event is pending, and the handler that is to
		 * read it may be waiting for this page's lock.  Nothing
		 * mapped yet: the page goes back to swap, for the caller to
		 * try again without the lock.  Part of a larger page mapped:
		 * it must be finished.
		 */
		while ((ret = upg_uffd_fill(&rt->uffd, UPG_FILL_COPY, pa, buf,
					    rt->page_size, wp, &done)) == -EAGAIN &&
		       done)
			sched_yield();
		if (ret == -EAGAIN) {
			leave_in_swap(rt, pte, f, pa);
		} else {
			if (ret == -EEXIST)
				ret = 0;
			pte->flags &= PTE_PINNED;
			if (rt->dirty_by_sum)
				pagesum_note(rt, f, buf);
			page_activate(rt, pte);
			STAT_INC(rt, pages_read);
		}
	}
	pte_unlock(pte);
	atomic_fetch_sub(&r->inflight, 1);
	return ret;
}

static int advise_willneed(struct upg_runtime *rt, struct upg_region *r,
			   size_t first, size_t last)
{
	char *buf = upg_os_alloc(rt->page_size);
	int ret = 0;

	if (!buf)
		return -ENOMEM;
	for (size_t p = first; p < last && ret == 0; p++) {
		/* a page being pinned must come in; for others it is a hint */
		while ((ret = prefetch_page(rt, r, p, buf)) == -EAGAIN &&
		       (__atomic_load_n(&r->ptes[p].flags, __ATOMIC_RELAXED) &
			PTE_PINNED))
			sched_yield();
		if (ret == -EAGAIN)
			ret = 0;
	}
	upg_os_free(buf, rt->page_size);
	/* out of free budget is not an error for a hint */
	return ret == -ENOMEM ? 0 : ret;
}

static int advise_pin(struct upg_runtime *rt, struct upg_region *r,
		      size_t first, size_t last, bool pin)
{
	uint32_t limit = rt->budget_frames > rt->high_free ?
		rt->budget_frames - rt->high_free : 0;

	if (pin && atomic_load(&rt->pinned_pages) + (last - first) > limit)
		return -ENOMEM;
	for (size_t p = first; p < last; p++) {
		struct upg_pte *pte = &r->ptes[p];

		pte_lock(pte);
		if (pin && !(pte->flags & PTE_PINNED)) {
			pte->flags |= PTE_PINNED;
			atomic_fetch_add(&rt->pinned_pages, 1);
			if (pte->state == PS_ACTIVE)
				frame_move(rt, pte->frame, FL_ISOLATED);
		} else if (!pin && (pte->flags & PTE_PINNED)) {
			pte->flags &= (uint8_t)~PTE_PINNED;
			atomic_fetch_sub(&rt->pinned_pages, 1);
			if (pte->state == PS_ACTIVE)
				frame_move(rt, pte->frame, FL_ACTIVE);
		}
		pte_unlock(pte);
	}
	return pin ? advise_willneed(rt, r, first, last) : 0;
}

UPG_API int upg_advise(struct upg_runtime *rt, void *addr, size_t len,
		       int advice)
{
	uintptr_t start = (uintptr_t)addr;
	struct upg_region *r;
	size_t first, last;
	int ret = 0;

	if (!rt || len == 0 || advice < UPG_ADV_WILLNEED || advice > UPG_ADV_DEACTIVATE)
		return -EINVAL;
	if (!rt->paged) {
		if (advice == UPG_ADV_DONTNEED)
			return madvise(addr, len, MADV_DONTNEED) ? -errno : 0;
		return 0;
	}
	if (advice == UPG_ADV_COLD || advice == UPG_ADV_DEACTIVATE)
		/* COLD waits for reclaim: no fork_lock */
		return reclaim_cold(rt, addr, len, advice == UPG_ADV_COLD);

	pthread_rwlock_rdlock(&rt->fork_lock);
	r = range_region(rt, start, len, &first, &last);
	if (!r) {
		pthread_rwlock_unlock(&rt->fork_lock);
		return -EINVAL;
	}
	switch (advice) {
	case UPG_ADV_DONTNEED:
	case UPG_ADV_FREE: {
		uintptr_t base = atomic_load(&r->base);

		/* whole pages only: a partial page still holds live data */
		first = (start - base + rt->page_size - 1) >> rt->page_shift;
		last = (start + len - base) >> rt->page_shift;
		if (first < last)
			region_discard_pages(rt, r, first, last,
					     advice == UPG_ADV_FREE ?
					     DISCARD_UNMAPPED : DISCARD_AND_ZAP);
		break;
	}
	case UPG_ADV_WILLNEED: {
		uintptr_t base = atomic_load(&r->base);

		/* asynchronous, through a handler; synchronous if it is busy */
		if (fault_queue_willneed(rt, base + (first << rt->page_shift),
					 base + (last << rt->page_shift)))
			ret = advise_willneed(rt, r, first, last);
		break;
	}
	case UPG_ADV_POPULATE:
		(void)fault_populate(rt, r, first, last);
		break;
	case UPG_ADV_PIN:
		ret = advise_pin(rt, r, first, last, true);
		break;
	case UPG_ADV_UNPIN:
		ret = advise_pin(rt, r, first, last, false);
		break;
	}
	region_put(rt);
	pthread_rwlock_unlock(&rt->fork_lock);
	return ret;
}
