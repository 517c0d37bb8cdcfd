/* SPDX-License-Identifier: MIT */
/*
 * region.c - managed regions: reservation, lookup, discard, and the
 * program's own changes to them (munmap, mremap, madvise) as userfaultfd
 * reports them.
 *
 * A region is one anonymous private mapping registered with the regions'
 * userfaultfd.  Its page table is a lazily backed array of struct upg_pte,
 * so reserving a terabyte costs a mapping of 4 GiB of address space for the
 * table and nothing else until pages are touched.
 *
 * Lookup runs on every fault: a binary search over the regions sorted by
 * base, under the read side of regions_lock.  The lock is held across the
 * handling of one fault, which keeps the region alive; release takes the
 * write side, so it waits for those, and then waits for in-flight I/O that
 * refers to the region (r->inflight) before freeing it.
 *
 * A region the program unmaps itself dies in two steps.  The handler that
 * reads the UNMAP event drops its pages and marks it dead (lookups skip
 * it); the reclaim thread, or the next reservation, unlinks and frees it
 * under the write side.  A handler must not wait for the write side
 * itself: a reader may be in madvise(), which returns only once some
 * handler has read the REMOVE event it sent.
 */
#include "pager.h"

#include <errno.h>
#include <sched.h>
#include <string.h>
#include <sys/mman.h>

int region_table_init(struct upg_runtime *rt)
{
	rt->sorted = upg_os_alloc(MAX_REGIONS * sizeof(*rt->sorted));
	rt->by_id = upg_os_alloc(MAX_REGIONS * sizeof(*rt->by_id));
	if (!rt->sorted || !rt->by_id)
		return -ENOMEM;
	return pthread_rwlock_init(&rt->regions_lock, NULL) ? -ENOMEM : 0;
}

static struct upg_region *lookup_locked(struct upg_runtime *rt, uintptr_t addr)
{
	uint32_t lo = 0, hi = rt->nregions;

	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		struct upg_region *r = rt->sorted[mid];
		uintptr_t base = atomic_load_explicit(&r->base, memory_order_relaxed);

		if (addr < base)
			hi = mid;
		else if (addr >= base + r->len)
			lo = mid + 1;
		else
			return r;
	}
	return NULL;
}

struct upg_region *region_get(struct upg_runtime *rt, uintptr_t addr,
			      size_t *pagep)
{
	struct upg_region *r;

	pthread_rwlock_rdlock(&rt->regions_lock);
	r = lookup_locked(rt, addr);
	if (!r || atomic_load(&r->dead)) {
		pthread_rwlock_unlock(&rt->regions_lock);
		return NULL;
	}
	*pagep = (addr - atomic_load_explicit(&r->base, memory_order_relaxed)) >>
		 rt->page_shift;
	return r;
}

void region_put(struct upg_runtime *rt)
{
	pthread_rwlock_unlock(&rt->regions_lock);
}

static void sorted_insert(struct upg_runtime *rt, struct upg_region *r)
{
	uintptr_t base = atomic_load(&r->base);
	uint32_t i = rt->nregions;

	while (i > 0 && atomic_load(&rt->sorted[i - 1]->base) > base) {
		rt->sorted[i] = rt->sorted[i - 1];
		i--;
	}
	rt->sorted[i] = r;
	rt->nregions++;
}

static void sorted_remove(struct upg_runtime *rt, struct upg_region *r)
{
	for (uint32_t i = 0; i < rt->nregions; i++) {
		if (rt->sorted[i] == r) {
			memmove(&rt->sorted[i], &rt->sorted[i + 1],
				(rt->nregions - i - 1) * sizeof(*rt->sorted));
			rt->nregions--;
			return;
		}
	}
}

static void region_free(struct upg_runtime *rt, struct upg_region *r);
static void region_unlink_locked(struct upg_runtime *rt, struct upg_region *r);

/*
 * Wait until every non-cooperative event read so far is applied: first
 * for the reads in progress now to be counted, then for the events they
 * returned.  Handlers never wait for a reserving thread, so this ends.
 */
static void wait_for_events(struct upg_runtime *rt)
{
	uint64_t begun = atomic_load(&rt->uffd_reads_begun);
	uint64_t read;

	while (atomic_load(&rt->uffd_reads_ended) < begun)
		sched_yield();
	read = atomic_load(&rt->events_read);
	while (atomic_load(&rt->events_applied) < read)
		sched_yield();
}

/*
 * Unlink the dead regions (regions_lock write-held) and return them as a
 * list for free_dead(), which waits for their I/O and so runs unlocked.
 * Pages a fault installed after the UNMAP event marked the region dead
 * are dropped here, where no fault can look at them.
 */
static struct upg_region *unlink_dead_locked(struct upg_runtime *rt)
{
	struct upg_region *list = NULL;

	if (!atomic_load(&rt->ndead))
		return NULL;
	for (uint32_t i = rt->nregions; i-- > 0;) {
		struct upg_region *r = rt->sorted[i];

		if (!atomic_load(&r->dead))
			continue;
		region_discard_pages(rt, r, 0, r->npages, DISCARD_DATA);
		region_unlink_locked(rt, r);
		atomic_fetch_sub(&rt->ndead, 1);
		r->next_dead = list;
		list = r;
	}
	return list;
}

static void free_dead(struct upg_runtime *rt, struct upg_region *list)
{
	while (list) {
		struct upg_region *next = list->next_dead;

		region_free(rt, list);
		list = next;
	}
}

void region_reap_dead(struct upg_runtime *rt)
{
	struct upg_region *list;

	if (!atomic_load(&rt->ndead))
		return;
	pthread_rwlock_wrlock(&rt->regions_lock);
	list = unlink_dead_locked(rt);
	pthread_rwlock_unlock(&rt->regions_lock);
	free_dead(rt, list);
}

UPG_API int upg_region_reserve(struct upg_runtime *rt, size_t len, void **addrp)
{
	struct upg_region *dead, *r = NULL;
	void *p = MAP_FAILED;
	uint32_t id;
	int ret;

	if (!rt || !addrp || len == 0)
		return -EINVAL;
	if (len > (SIZE_MAX >> 1))
		return -ENOMEM;
	len = (len + rt->page_size - 1) & ~(rt->page_size - 1);

	/*
	 * Over-reserve by one pager page to align the region to the pager
	 * page, so that every pager page is one naturally aligned unit.
	 */
	p = mmap(NULL, len + rt->page_size, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED)
		return -ENOMEM;
	{
		uintptr_t raw = (uintptr_t)p;
		uintptr_t al = (raw + rt->page_size - 1) & ~(rt->page_size - 1);

		if (al > raw)
			munmap(p, al - raw);
		if (raw + len + rt->page_size > al + len)
			munmap((void *)(al + len), raw + len + rt->page_size - al - len);
		p = (void *)al;
	}
	r = upg_os_alloc(sizeof(*r));
	if (!r) {
		ret = -ENOMEM;
		goto fail;
	}
	r->len = len;
	r->npages = len >> rt->page_shift;
	atomic_store(&r->base, (uintptr_t)p);
	/* Unpaged runtimes track regions only to release them. */
	if (rt->paged) {
		/*
		 * EMPTY is 0, so a lazily zero-filled table is all EMPTY.
		 * Slot and frame are set when a page first leaves EMPTY and
		 * are only read in states where they are valid.
		 */
		r->ptes_bytes = r->npages * sizeof(struct upg_pte);
		r->ptes = upg_os_alloc(r->ptes_bytes);
		if (!r->ptes) {
			ret = -ENOMEM;
			goto fail;
		}
		/*
		 * Transparent huge pages would let the kernel fill 2 MiB at
		 * once behind our back; the pager decides the unit.
		 */
		madvise(p, len, MADV_NOHUGEPAGE);
		ret = upg_uffd_register(&rt->uffd, (uintptr_t)p, len,
					rt->uffd.has_wp);
		if (ret)
			goto fail;
	}

	if (rt->paged)
		wait_for_events(rt);
	pthread_rwlock_wrlock(&rt->regions_lock);
	dead = unlink_dead_locked(rt);
	for (id = 0; id < MAX_REGIONS && rt->by_id[id]; id++)
		;
	if (id == MAX_REGIONS) {
		pthread_rwlock_unlock(&rt->regions_lock);
		free_dead(rt, dead);
		if (rt->paged)
			upg_uffd_unregister(&rt->uffd, (uintptr_t)p, len);
		ret = -ENOSPC;
		goto fail;
	}
	r->id = id;
	rt->by_id[id] = r;
	sorted_insert(rt, r);
	pthread_rwlock_unlock(&rt->regions_lock);
	free_dead(rt, dead);
	*addrp = p;
	return 0;
fail:
	if (r)
		upg_os_free(r->ptes, r->ptes_bytes);
	upg_os_free(r, sizeof(*r));
	munmap(p, len);
	return ret;
}

/* Some page is not mapped: INACTIVE, SWAPPED, READING or WRITEBACK. */
static bool unmapped_pages_exist(struct upg_runtime *rt)
{
	return atomic_load_explicit(&rt->nr_state[PS_INACTIVE], memory_order_relaxed) |
	       atomic_load_explicit(&rt->nr_state[PS_SWAPPED], memory_order_relaxed) |
	       atomic_load_explicit(&rt->nr_state[PS_READING], memory_order_relaxed) |
	       atomic_load_explicit(&rt->nr_state[PS_WRITEBACK], memory_order_relaxed);
}

/*
 * Drop the pages of [first, last) to EMPTY.  Called with regions_lock held
 * (read or write).  Pages with I/O in flight are marked PTE_DISCARD and
 * finished by the I/O completion.  DISCARD_UNMAPPED leaves mapped pages
 * alone, so it needs no zap and sends no TLB flush: the pages it drops are
 * not in the program's page table.
 */
void region_discard_pages(struct upg_runtime *rt, struct upg_region *r,
			  size_t first, size_t last, enum upg_discard_mode mode)
{
	uint64_t n = 0;

	if (last > r->npages)
		last = r->npages;
	/*
	 * Nothing has ever left RAM: no page is unmapped, FREE has nothing
	 * to drop.  (The allocator calls it on every large free.)
	 */
	if (mode == DISCARD_UNMAPPED && !unmapped_pages_exist(rt))
		return;
	for (size_t i = first; i < last; i++) {
		struct upg_pte *pte = &r->ptes[i];
		uint8_t zapping;

		/*
		 * Racy peeks: EMPTY pages have nothing to free, and FREE
		 * leaves mapped ones alone -- unless their lock is held: then
		 * reclaim may be unmapping one right now, and waiting for it
		 * finds it unmapped.  A hint may miss a page that starts to
		 * leave just after the peek; it must not lock a thousand
		 * pages to find none.
		 */
		if (pte->state == PS_EMPTY ||
		    (mode == DISCARD_UNMAPPED && pte->state == PS_ACTIVE &&
		     !(pte->flags & PTE_ZAPPING) &&
		     !atomic_load_explicit(&pte->lock, memory_order_relaxed)))
			continue;
		pte_lock(pte);
		/* still mapped: ACTIVE, or INACTIVE with the zap to come */
		if (mode == DISCARD_UNMAPPED &&
		    (pte->state == PS_ACTIVE || (pte->flags & PTE_ZAPPING))) {
			pte_unlock(pte);
			continue;
		}
		if (pte->flags & PTE_PINNED) {
			pte->flags &= (uint8_t)~PTE_PINNED;
			atomic_fetch_sub(&rt->pinned_pages, 1);
		}
		/*
		 * A page the reclaim thread is zapping stays ZAPPING after the
		 * drop: its zap is still to come, and a fault served before it
		 * would install a page that the zap then takes away.
		 */
		zapping = pte->flags & PTE_ZAPPING;
		switch (pte->state) {
		case PS_EMPTY:
			break;
		case PS_READING:
		case PS_WRITEBACK:
			/* the I/O completion finishes the discard */
			pte->flags |= PTE_DISCARD;
			n++;
			break;
		case PS_ACTIVE:
		case PS_INACTIVE:
			if (pte->flags & PTE_IO) {
				/*
				 * Its staging slot is still being written:
				 * the completion frees slot and frame.
				 */
				frame_move(rt, pte->frame, FL_ISOLATED);
				pte_set_state(rt, pte, PS_WRITEBACK);
				pte->flags = PTE_IO | PTE_DISCARD;
			} else {
				page_drop(rt, pte);
			}
			n++;
			break;
		case PS_SWAPPED:
			swap_free(rt, pte->slot);
			pte->slot = UPG_NO_SLOT;
			pte_set_state(rt, pte, PS_EMPTY);
			pte->flags = 0;
			n++;
			break;
		}
		pte->flags |= zapping;
		pte_unlock(pte);
	}
	if (mode == DISCARD_AND_ZAP && last > first) {
		uintptr_t a = region_page_addr(r, first, rt->page_size);

		madvise((void *)a, (last - first) * rt->page_size, MADV_DONTNEED);
	}
	STAT_ADD(rt, discards, n);
}

static void region_free(struct upg_runtime *rt, struct upg_region *r)
{
	/* in-flight I/O holds references to r: let it finish first */
	while (atomic_load(&r->inflight) > 0)
		sched_yield();
	upg_os_free(r->ptes, r->ptes_bytes);
	upg_os_free(r, sizeof(*r));
}

/* Remove @r from the table; the caller holds regions_lock for writing. */
static void region_unlink_locked(struct upg_runtime *rt, struct upg_region *r)
{
	atomic_store(&r->dead, true);
	sorted_remove(rt, r);
	rt->by_id[r->id] = NULL;
}

UPG_API int upg_region_release(struct upg_runtime *rt, void *addr)
{
	struct upg_region *dead, *r;
	uintptr_t base;
	size_t len;

	if (!rt || !addr)
		return -EINVAL;

	if (rt->paged)
		wait_for_events(rt);
	pthread_rwlock_wrlock(&rt->regions_lock);
	dead = unlink_dead_locked(rt);
	r = lookup_locked(rt, (uintptr_t)addr);
	if (!r || atomic_load(&r->base) != (uintptr_t)addr) {
		pthread_rwlock_unlock(&rt->regions_lock);
		free_dead(rt, dead);
		return -EINVAL;
	}
	/* Free slots and frames while no fault can look at the pages. */
	if (rt->paged)
		region_discard_pages(rt, r, 0, r->npages, DISCARD_DATA);
	region_unlink_locked(rt, r);
	base = atomic_load(&r->base);
	len = r->len;
	pthread_rwlock_unlock(&rt->regions_lock);
	free_dead(rt, dead);

	if (rt->paged)
		upg_uffd_unregister(&rt->uffd, base, len);
	munmap((void *)base, len);
	region_free(rt, r);
	return 0;
}

void region_table_destroy(struct upg_runtime *rt)
{
	if (rt->sorted) {
		while (rt->nregions > 0) {
			struct upg_region *r = rt->sorted[0];
			uintptr_t base = atomic_load(&r->base);
			size_t len = r->len;
			/* the program unmapped it: the range may be another's now */
			bool mapped = !atomic_load(&r->dead);

			if (rt->paged)
				region_discard_pages(rt, r, 0, r->npages, DISCARD_DATA);
			region_unlink_locked(rt, r);
			if (mapped && rt->paged && rt->uffd.fd >= 0)
				upg_uffd_unregister(&rt->uffd, base, len);
			if (mapped)
				munmap((void *)base, len);
			region_free(rt, r);
		}
	}
	upg_os_free(rt->sorted, MAX_REGIONS * sizeof(*rt->sorted));
	upg_os_free(rt->by_id, MAX_REGIONS * sizeof(*rt->by_id));
	pthread_rwlock_destroy(&rt->regions_lock);
}

/* ------------------------------------------------------------------------ */
/* Non-cooperative events                                                     */
/* ------------------------------------------------------------------------ */

/* Apply @fn to the part of every region that [start, end) overlaps. */
static void for_each_overlap(struct upg_runtime *rt, uintptr_t start,
			     uintptr_t end,
			     void (*fn)(struct upg_runtime *, struct upg_region *,
					size_t, size_t))
{
	pthread_rwlock_rdlock(&rt->regions_lock);
	for (uint32_t i = 0; i < rt->nregions; i++) {
		struct upg_region *r = rt->sorted[i];
		uintptr_t base = atomic_load(&r->base);
		uintptr_t s = start > base ? start : base;
		uintptr_t e = end < base + r->len ? end : base + r->len;

		if (s >= e)
			continue;
		/* only whole pager pages are discarded */
		fn(rt, r, (s - base + rt->page_size - 1) >> rt->page_shift,
		   (e - base) >> rt->page_shift);
	}
	pthread_rwlock_unlock(&rt->regions_lock);
}

static void discard_range(struct upg_runtime *rt, struct upg_region *r,
			  size_t first, size_t last)
{
	if (first < last)
		region_discard_pages(rt, r, first, last, DISCARD_DATA);
}

void region_event_remove(struct upg_runtime *rt, uintptr_t start, uintptr_t end)
{
	STAT_INC(rt, events_remove);
	for_each_overlap(rt, start, end, discard_range);
}

void region_event_unmap(struct upg_runtime *rt, uintptr_t start, uintptr_t end)
{
	bool killed = false;

	STAT_INC(rt, events_unmap);
	/* no self-zap in the range can send its REMOVE now (reclaim.c) */
	selfzap_forget(rt, start, end);
	for_each_overlap(rt, start, end, discard_range);

	/* Regions wholly unmapped are gone: dead now, unlinked later. */
	pthread_rwlock_rdlock(&rt->regions_lock);
	for (uint32_t i = 0; i < rt->nregions; i++) {
		struct upg_region *r = rt->sorted[i];
		uintptr_t base = atomic_load(&r->base);

		if (base >= start && base + r->len <= end &&
		    !atomic_exchange(&r->dead, true)) {
			atomic_fetch_add(&rt->ndead, 1);
			killed = true;
		}
	}
	pthread_rwlock_unlock(&rt->regions_lock);
	if (killed)
		runtime_wake_reclaim(rt);
}

/*
 * mremap moved [from, from+len) to [to, to+len).  A whole region moving is
 * the case that matters (realloc of a big block, a runtime growing its
 * heap): its pages keep their state, only the base changes.  Faults at the
 * new address may have been read before this event; they wait in the
 * handlers' pending lists and succeed once the base is updated.
 */
bool region_event_remap(struct upg_runtime *rt, uintptr_t from, uintptr_t to,
			size_t len)
{
	if (pthread_rwlock_trywrlock(&rt->regions_lock)) {
		atomic_store(&rt->regions_writer_waiting, true);
		return false;
	}
	atomic_store(&rt->regions_writer_waiting, false);
	STAT_INC(rt, events_remap);
	/* the old range is not ours now: no self-zap there sends a REMOVE */
	selfzap_forget(rt, from, from + len);
	for (uint32_t i = 0; i < rt->nregions; i++) {
		struct upg_region *r = rt->sorted[i];
		uintptr_t base = atomic_load(&r->base);

		if (atomic_load(&r->dead))
			continue;
		if (from == base && len >= r->len) {
			sorted_remove(rt, r);
			atomic_store(&r->base, to);
			sorted_insert(rt, r);
			pthread_rwlock_unlock(&rt->regions_lock);
			return true;
		}
		if (from < base + r->len && from + len > base) {
			/* part of a region moved: its pages there are lost to us */
			size_t first = from > base ? (from - base) >> rt->page_shift : 0;
			size_t last = (from + len - base) >> rt->page_shift;

			upg_warn_once("mremap of part of a region (%#lx+%zu) is not "
				      "tracked; the moved pages are unmanaged",
				      (unsigned long)from, len);
			region_discard_pages(rt, r, first, last, DISCARD_DATA);
		}
	}
	pthread_rwlock_unlock(&rt->regions_lock);
	return true;
}
