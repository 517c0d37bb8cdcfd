/* SPDX-License-Identifier: MIT */
/*
 * alloc_extent.c - the page heap: runs of units ("spans") inside regions.
 *
 * Every byte of every region belongs to exactly one span, and the spans of
 * a region tile it:
 *
 *   region  |RFIRST                                                RLAST|
 *           [ LARGE ][ SLAB ][SLAB][      FREE       ][ LARGE  ][ FREE  ]
 *
 * A large allocation is one span; a slab of small objects is one span;
 * what is left are FREE spans, never two of them side by side (a freed span
 * merges with free neighbours, found through the page map at its two ends).
 * Free spans sit on size bins: one per length from 1 to 32 units, then one
 * per power of two, with a bitmap of non-empty bins, so a request finds a
 * fit with one find-first-set and at most one list walk.  Allocation cuts
 * from the front of a fit, so the heap stays packed towards region bases.
 *
 * Where upager beats the kernel's swap is here.  A free span's bytes are
 * garbage; the kernel would write them out when memory is short.  upager
 * discards them through the pager (UPG_ADV_DONTNEED): the pages go back to
 * EMPTY, their swap slots are freed and nothing is written.  Doing that on
 * every free would make a program that frees and reallocates the same
 * memory take a zero-fill fault per page each time, so freed spans first go
 * on a dirty list, oldest first, and only when more than dirty_max bytes are
 * waiting are the oldest discarded, down to half of it: recently freed
 * memory is reused while it is still resident.  How much may wait depends
 * on the pager's room (ops.room(), upg_budget_room()): dirty_max while the
 * budget has room above its high watermark, dirty_tight once it has none.
 * Garbage kept while there is room costs nothing but resident memory that
 * no one else wanted; when room runs out, the next free or allocation
 * discards it, down to dirty_tight at most, before reclaim would write live
 * data, or the garbage itself, to swap.  A fixed small bound instead made a program
 * cycling large blocks under a budget of ten times its footprint discard
 * and refault a block on nearly every malloc (bench/alloc large: 66 us
 * against 0.6 us per malloc at a 512 MiB budget).  There is no clock in
 * this: the policy depends only on the sequence of calls and the room
 * reported, so it is testable.  Room is asked when a block is handed out
 * (is there room for it?) and when one is freed (is there any?).
 *
 * Garbage also decays.  A heap well inside its budget never reaches
 * dirty_max, and then every page it ever touched would stay resident: a
 * program cycling large blocks whose total size wanders ends up holding
 * the whole range its heap ever spanned.  So garbage that no allocation
 * reused while the live large blocks turned over dirty_generations times
 * (counted in large frees: live blocks x generations, at least
 * DECAY_MIN_FREES) is discarded too.  The clock is the sequence of frees,
 * not time, so this too is testable.  Each discarded page that is reused
 * costs a zero-fill fault through the pager, ten times the kernel's own
 * on a small VM, so the decay must be slow: bench/alloc large (16 blocks
 * of 64 KiB..4 MiB cycled, two pages of each written; 2-vCPU VM,
 * 2026-12-01) gave peak RSS / jemalloc's and time / jemalloc's of 1.13 and
 * 0.46 without decay; 1.03 and 1.05 at 5 generations, 1.05 and 0.82 at 6,
 * 1.12 and 0.50 at 8, 0.98 and 1.26 at 4.
 *
 * What needs discarding is tracked as a byte range per free span, its
 * "dirty hull": a freed block that merges with the never-touched rest of a
 * region makes the block dirty, not the gigabytes behind it.  Bytes
 * outside the hull are known to be zero when the ZERO flag says so (never
 * touched, or discarded), and calloc() of them skips the memset that would
 * fault every page in.
 *
 * Span structs are carved from chunks mapped outside the regions and are
 * never unmapped while the heap lives, so a stale page-map entry always
 * points at a readable span (see the invariants in alloc.h).
 *
 * Every function here runs under h->lock.
 */
#include "alloc.h"

#include <errno.h>

#define POOL_CHUNK ((size_t)64 << 10)

/* ------------------------------------------------------------------ pool */

static struct upg_span *span_get(struct upg_heap *h)
{
	struct upg_span *s = h->pool;

	if (!s) {
		char *chunk = upg_os_alloc(POOL_CHUNK);
		size_t off;

		if (!chunk)
			return NULL;
		*(void **)chunk = h->pool_chunks;
		h->pool_chunks = chunk;
		upg_heap_charge(h, (int64_t)POOL_CHUNK);
		/* the first 64 bytes hold the chunk link */
		for (off = 64; off + sizeof(*s) <= POOL_CHUNK; off += sizeof(*s)) {
			struct upg_span *n = (struct upg_span *)(chunk + off);

			n->next = h->pool;
			h->pool = n;
		}
		s = h->pool;
	}
	h->pool = s->next;
	s->next = s->prev = s->dnext = s->dprev = NULL;
	s->dlo = s->dhi = 0;
	s->flags = 0;
	s->on_partial = false;
	s->navail = 0;
	return s;
}

void upg_span_put(struct upg_heap *h, struct upg_span *s)
{
	atomic_store_explicit(&s->kind, UPG_SPAN_UNUSED, memory_order_relaxed);
	s->units = 0;
	s->next = h->pool;
	h->pool = s;
}

/* ------------------------------------------------------------------ bins */

static unsigned bin_of(size_t units)
{
	if (units <= UPG_EXACT_BINS)
		return (unsigned)units - 1;
	/* log bins: [2^k, 2^(k+1)) for k >= 5 */
	return UPG_EXACT_BINS + (63 - (unsigned)__builtin_clzl(units)) - 5;
}

static void bin_insert(struct upg_heap *h, struct upg_span *s)
{
	unsigned b = bin_of(s->units);

	s->bin = (uint8_t)b;
	s->prev = NULL;
	s->next = h->bins[b];
	if (s->next)
		s->next->prev = s;
	h->bins[b] = s;
	h->bin_mask |= (uint64_t)1 << b;
}

static void bin_remove(struct upg_heap *h, struct upg_span *s)
{
	unsigned b = s->bin;

	if (s->prev)
		s->prev->next = s->next;
	else
		h->bins[b] = s->next;
	if (s->next)
		s->next->prev = s->prev;
	if (!h->bins[b])
		h->bin_mask &= ~((uint64_t)1 << b);
	s->next = s->prev = NULL;
}

static void dirty_append(struct upg_heap *h, struct upg_span *s)
{
	s->dnext = NULL;
	s->dprev = h->dirty_tail;
	if (h->dirty_tail)
		h->dirty_tail->dnext = s;
	else
		h->dirty_head = s;
	h->dirty_tail = s;
	h->dirty_bytes += s->dhi - s->dlo;
	s->dirty_since = h->large_frees;
}

static void dirty_unlink(struct upg_heap *h, struct upg_span *s)
{
	if (s->dprev)
		s->dprev->dnext = s->dnext;
	else
		h->dirty_head = s->dnext;
	if (s->dnext)
		s->dnext->dprev = s->dprev;
	else
		h->dirty_tail = s->dprev;
	s->dnext = s->dprev = NULL;
}

static void dirty_remove(struct upg_heap *h, struct upg_span *s)
{
	dirty_unlink(h, s);
	h->dirty_bytes -= s->dhi - s->dlo;
}

static inline uintptr_t max_ptr(uintptr_t a, uintptr_t b)
{
	return a > b ? a : b;
}

static inline uintptr_t min_ptr(uintptr_t a, uintptr_t b)
{
	return a < b ? a : b;
}

/* Set the hull of an unlisted span to [lo, hi) clipped to [from, to). */
static void hull_set(struct upg_span *s, uintptr_t lo, uintptr_t hi,
		     uintptr_t from, uintptr_t to)
{
	lo = max_ptr(lo, from);
	hi = min_ptr(hi, to);
	if (lo >= hi)
		lo = hi = 0;
	s->dlo = lo;
	s->dhi = hi;
	s->flags = lo < hi ? s->flags | UPG_SPAN_DIRTY
			   : s->flags & (uint8_t)~UPG_SPAN_DIRTY;
}

/* Does the hull of @s meet [lo, hi)? */
static inline bool hull_meets(const struct upg_span *s, uintptr_t lo,
			      uintptr_t hi)
{
	return s->dlo < s->dhi && s->dlo < hi && lo < s->dhi;
}

static inline uintptr_t span_end(const struct upg_span *s)
{
	return s->base + (uintptr_t)s->units * UPG_UNIT;
}

void upg_pages_set_map(struct upg_span *s)
{
	if (atomic_load_explicit(&s->kind, memory_order_relaxed) ==
	    UPG_SPAN_SLAB) {
		uintptr_t a;

		for (a = s->base; a < span_end(s); a += UPG_UNIT)
			upg_pagemap_set(a, s);
		return;
	}
	upg_pagemap_set(s->base, s);
	upg_pagemap_set(span_end(s) - UPG_UNIT, s);
}

/* Make @s (base, units, flags set) a FREE span on the lists. */
static void free_insert(struct upg_heap *h, struct upg_span *s)
{
	atomic_store_explicit(&s->kind, UPG_SPAN_FREE, memory_order_relaxed);
	bin_insert(h, s);
	if (s->flags & UPG_SPAN_DIRTY)
		dirty_append(h, s);
	h->free_bytes += (size_t)s->units * UPG_UNIT;
	upg_pages_set_map(s);
}

static void free_remove(struct upg_heap *h, struct upg_span *s)
{
	bin_remove(h, s);
	if (s->flags & UPG_SPAN_DIRTY)
		dirty_remove(h, s);
	h->free_bytes -= (size_t)s->units * UPG_UNIT;
}

/* Drop the first @n units of free span @s (which keeps the rest). */
static void free_shrink_front(struct upg_heap *h, struct upg_span *s, size_t n)
{
	unsigned old_bin = s->bin;

	s->base += n * UPG_UNIT;
	s->units -= (uint32_t)n;
	s->flags &= (uint8_t)~UPG_SPAN_RFIRST;
	h->free_bytes -= n * UPG_UNIT;
	if (s->flags & UPG_SPAN_DIRTY) {
		/* clip the hull where it is on the list: it keeps its age */
		h->dirty_bytes -= s->dhi - s->dlo;
		if (s->dhi <= s->base) {
			dirty_unlink(h, s);
			hull_set(s, 0, 0, 0, 0);
		} else {
			s->dlo = max_ptr(s->dlo, s->base);
			h->dirty_bytes += s->dhi - s->dlo;
		}
	}
	if (bin_of(s->units) != old_bin) {
		bin_remove(h, s);
		bin_insert(h, s);
	}
	upg_pagemap_set(s->base, s);
}

/* -------------------------------------------------------------- discard */

/*
 * Discard the dirty hull of @s: the whole pager pages that lie inside the
 * span and cover the hull.  If a pager page of the hull also holds bytes of
 * a neighbour (pages larger than units), it stays, and so does the garbage
 * in it: then the span no longer knows that it is zero outside its hull.
 */
static void discard(struct upg_heap *h, struct upg_span *s)
{
	uintptr_t ps = h->ops.page_size, dlo = s->dlo, dhi = s->dhi;
	uintptr_t lo = max_ptr(s->base, dlo & ~(ps - 1));
	uintptr_t hi = min_ptr(span_end(s), upg_align_up(dhi, ps));
	int ret;

	dirty_remove(h, s);
	hull_set(s, 0, 0, 0, 0);
	lo = upg_align_up(lo, ps);
	hi &= ~(ps - 1);
	if (hi <= lo || lo > dlo || hi < dhi)
		s->flags &= (uint8_t)~UPG_SPAN_ZERO;
	if (hi <= lo)
		return; /* no whole pager page inside: nothing to give back */
	ret = h->ops.discard(h->ops.ctx, (void *)lo, hi - lo);
	if (ret < 0) {
		upg_warn_once("cannot discard freed memory at %p (%zu bytes): error %d; it stays resident",
			      (void *)lo, (size_t)(hi - lo), -ret);
		s->flags &= (uint8_t)~UPG_SPAN_ZERO;
		return;
	}
	h->discards++;
	h->discarded_bytes += hi - lo;
}

/*
 * Keep the undiscarded free bytes under dirty_max (hysteresis: down to half
 * of it).  When the pager has no more room than the @need bytes about to
 * be handed out, the oldest go until it has, but not below dirty_tight / 2:
 * garbage beyond what the room needs is still worth keeping for reuse.
 */
static void dirty_trim(struct upg_heap *h, size_t need)
{
	size_t limit = h->dirty_max;
	bool tight = false;

	if (h->dirty_bytes <= h->dirty_tight)
		return;
	if (h->dirty_tight < limit && h->ops.room(h->ops.ctx) <= need) {
		limit = h->dirty_tight;
		tight = true;
	}
	if (h->dirty_bytes <= limit)
		return;
	while (h->dirty_head && h->dirty_bytes > limit / 2) {
		discard(h, h->dirty_head);
		if (tight && h->ops.room(h->ops.ctx) > need)
			break;
	}
}

/* A heap with few live blocks still keeps garbage this many frees. */
#define DECAY_MIN_FREES 64

/*
 * Discard the garbage that waited longer than dirty_generations turnovers
 * of the live large blocks.  The dirty list is in order of age, so only
 * its head is looked at.
 */
static void dirty_decay(struct upg_heap *h)
{
	uint64_t live = h->large_allocs - h->large_frees, age;

	if (!h->dirty_generations)
		return;
	age = live * h->dirty_generations;
	if (age < DECAY_MIN_FREES)
		age = DECAY_MIN_FREES;
	while (h->dirty_head && h->large_frees - h->dirty_head->dirty_since > age)
		discard(h, h->dirty_head);
}

/* -------------------------------------------------------------- regions */

static struct upg_span *grow(struct upg_heap *h, size_t units)
{
	struct upg_heap_region *r;
	struct upg_span *s;
	size_t len;
	void *addr;
	int ret;

	if (units > ((size_t)UINT32_MAX >> 1))
		return NULL;
	len = upg_align_up(units * UPG_UNIT, h->region_size);
	r = upg_os_alloc(sizeof(*r));
	s = span_get(h);
	if (!r || !s)
		goto fail;
	ret = h->ops.reserve(h->ops.ctx, len, &addr);
	if (ret < 0)
		goto fail;
	if (upg_pagemap_cover((uintptr_t)addr, len) < 0) {
		h->ops.release(h->ops.ctx, addr, len);
		goto fail;
	}
	r->base = (uintptr_t)addr;
	r->len = len;
	r->next = h->regions;
	h->regions = r;
	h->mapped_bytes += len;
	s->base = (uintptr_t)addr;
	s->units = (uint32_t)(len / UPG_UNIT);
	s->flags = UPG_SPAN_ZERO | UPG_SPAN_RFIRST | UPG_SPAN_RLAST;
	free_insert(h, s);
	return s;
fail:
	if (s)
		upg_span_put(h, s);
	if (r)
		upg_os_free(r, sizeof(*r));
	return NULL;
}

/* ------------------------------------------------------------ allocate */

/*
 * The best fit of list @s for @units units: the smallest span that holds
 * them, the lowest-addressed of equals, looking at FIT_SCAN spans at most.
 * Best fit keeps the heap's footprint (the pages ever touched and not yet
 * discarded) smallest, and lowest address makes a heap reuse its low end:
 * bench/alloc large, where only two pages of each block are written, ends
 * with 2% fewer resident pages than with a first fit off a LIFO list.
 */
#define FIT_SCAN 32

static struct upg_span *best_fit(struct upg_span *s, size_t units)
{
	struct upg_span *best = NULL;
	unsigned n;

	for (n = 0; s && n < FIT_SCAN; s = s->next, n++)
		if (s->units >= units &&
		    (!best || s->units < best->units ||
		     (s->units == best->units && s->base < best->base)))
			best = s;
	return best;
}

static struct upg_span *find_fit(struct upg_heap *h, size_t units)
{
	unsigned b = bin_of(units);
	struct upg_span *s;
	uint64_t higher;

	if (b >= UPG_EXACT_BINS) {
		s = best_fit(h->bins[b], units);
		if (s)
			return s;
	} else if (h->bins[b]) {
		return h->bins[b];
	}
	higher = b + 1 < UPG_NBINS ? h->bin_mask & ~(((uint64_t)2 << b) - 1) : 0;
	if (!higher)
		return NULL;
	return best_fit(h->bins[__builtin_ctzl(higher)], units);
}

/*
 * Cut @units units at unit offset @off out of FREE span @s: [front = s][a]
 * [back], front and back possibly empty.  Returns @a with kind still FREE
 * and flags ZERO, RFIRST, RLAST as they hold; NULL if no span struct.
 */
static struct upg_span *carve(struct upg_heap *h, struct upg_span *s,
			      size_t off, size_t units)
{
	struct upg_span *a, *back;
	uintptr_t lo, hi, dlo, dhi;
	size_t total;
	uint8_t fl, zero;

	fl = s->flags;
	lo = s->base + off * UPG_UNIT;
	hi = lo + units * UPG_UNIT;
	zero = (fl & UPG_SPAN_ZERO) && !hull_meets(s, lo, hi) ? UPG_SPAN_ZERO : 0;
	if (off == 0 && s->units == units) {
		free_remove(h, s);
		hull_set(s, 0, 0, 0, 0);
		s->flags = zero | (fl & (UPG_SPAN_RFIRST | UPG_SPAN_RLAST));
		return s;
	}
	a = span_get(h);
	if (!a)
		return NULL;
	if (off == 0) {
		/* the common case: cut from the front, @s keeps its place */
		a->base = s->base;
		a->units = (uint32_t)units;
		a->flags = zero | (fl & UPG_SPAN_RFIRST);
		free_shrink_front(h, s, units);
		return a;
	}
	back = NULL;
	total = s->units;
	if (total - off - units) {
		back = span_get(h);
		if (!back) {
			upg_span_put(h, a);
			return NULL;
		}
	}
	free_remove(h, s);
	dlo = s->dlo;
	dhi = s->dhi;
	a->base = lo;
	a->units = (uint32_t)units;
	a->flags = zero;
	if (back) {
		back->base = hi;
		back->units = (uint32_t)(total - off - units);
		back->flags = fl & (UPG_SPAN_ZERO | UPG_SPAN_RLAST);
		hull_set(back, dlo, dhi, hi, span_end(back));
		free_insert(h, back);
	} else {
		a->flags |= fl & UPG_SPAN_RLAST;
	}
	s->units = (uint32_t)off;
	s->flags = fl & (uint8_t)~UPG_SPAN_RLAST;
	hull_set(s, dlo, dhi, s->base, lo);
	free_insert(h, s);
	return a;
}

/*
 * Take @units units aligned to @align_units units (a power of two) from
 * the free spans, growing the heap if needed.  Returns the new span with
 * kind still FREE (the caller sets it and the page map) and flags ZERO,
 * RFIRST, RLAST as they hold; NULL when out of memory.
 */
struct upg_span *upg_pages_alloc(struct upg_heap *h, size_t units,
				 size_t align_units)
{
	size_t need = units + (align_units > 1 ? align_units - 1 : 0);
	struct upg_span *s;
	size_t off;

	if (need < units || need > ((size_t)UINT32_MAX >> 1))
		return NULL;
	/* the block is about to be used: make room for it first */
	dirty_trim(h, units * UPG_UNIT);
	s = find_fit(h, need);
	if (!s) {
		s = grow(h, need);
		if (!s)
			return NULL;
	}
	off = align_units > 1
		      ? (upg_align_up(s->base, align_units * UPG_UNIT) - s->base) /
				UPG_UNIT
		      : 0;
	return carve(h, s, off, units);
}

/* The region of @h holding @addr, or NULL. */
struct upg_heap_region *upg_heap_region_of(struct upg_heap *h, uintptr_t addr)
{
	struct upg_heap_region *r;

	for (r = h->regions; r; r = r->next)
		if (addr >= r->base && addr < r->base + r->len)
			break;
	return r;
}

/*
 * Slab @s was just carved and its objects are about to be written: if its
 * memory was never touched (or was discarded), the range worth handing to
 * ops.populate, in [*lo, *hi): the slab and what follows it, up to
 * POPULATE_AHEAD in all, within its region -- unless the last such range
 * covers the slab already.  False when there is nothing to do.
 *
 * Ahead, because the next slabs are cut from the same free span, right
 * behind this one (allocation cuts from the front of a fit), so one call
 * serves many slabs.  Populating memory that ends up in another span, or
 * in none, changes no content: the pager maps only pages that hold
 * nothing, and those read as zero either way.
 */
#define POPULATE_AHEAD ((uintptr_t)256 << 10)

bool upg_pages_populate_plan(struct upg_heap *h, const struct upg_span *s,
			     uintptr_t *lo, uintptr_t *hi)
{
	uintptr_t pg = h->ops.page_size, end = span_end(s), rend;
	struct upg_heap_region *r;

	if (!h->ops.populate || !(s->flags & UPG_SPAN_ZERO))
		return false;
	if (s->base >= h->populated_lo && end <= h->populated_hi)
		return false;
	r = upg_heap_region_of(h, s->base);
	if (!r)
		return false;
	rend = r->base + r->len;
	*lo = s->base & ~(pg - 1);
	*hi = upg_align_up(end > s->base + POPULATE_AHEAD ? end
						   : s->base + POPULATE_AHEAD, pg);
	if (*hi > rend)
		*hi = rend;
	h->populated_lo = *lo;
	h->populated_hi = *hi;
	return true;
}

/*
 * The span covering @addr, which lies in a region of @h.  Only the ends
 * of a FREE or LARGE span are in the page map, so this walks back a unit
 * at a time to the nearest entry that covers @addr (bounded by the
 * region's base).  For the rare paths only: mmap(MAP_FIXED) into free
 * space, error messages.
 */
struct upg_span *upg_pages_find(struct upg_heap *h, uintptr_t addr)
{
	struct upg_heap_region *r = upg_heap_region_of(h, addr);
	uintptr_t a = addr & ~(uintptr_t)(UPG_UNIT - 1);

	if (!r)
		return NULL;
	for (;; a -= UPG_UNIT) {
		struct upg_span *s = upg_pagemap_get(a);

		if (s && atomic_load_explicit(&s->kind, memory_order_relaxed) !=
				 UPG_SPAN_UNUSED &&
		    s->base <= addr && addr < span_end(s))
			return s;
		if (a == r->base)
			return NULL;
	}
}

/*
 * Take exactly [@base, @base + @units units), which must lie in one FREE
 * span of @h.  Returns it as upg_pages_alloc() does; NULL if that range is
 * not free or no span struct can be had.
 */
struct upg_span *upg_pages_alloc_at(struct upg_heap *h, uintptr_t base,
				    size_t units)
{
	struct upg_span *s = upg_pages_find(h, base);

	if (!s || atomic_load_explicit(&s->kind, memory_order_relaxed) !=
			  UPG_SPAN_FREE ||
	    base % UPG_UNIT || base + units * UPG_UNIT > span_end(s))
		return NULL;
	return carve(h, s, (base - s->base) / UPG_UNIT, units);
}

/* ---------------------------------------------------------------- free */

/* The free span right before @s in its region, if there is one. */
static struct upg_span *free_before(struct upg_span *s)
{
	struct upg_span *p;

	if (s->flags & UPG_SPAN_RFIRST)
		return NULL;
	p = upg_pagemap_get(s->base - UPG_UNIT);
	if (p && atomic_load_explicit(&p->kind, memory_order_relaxed) ==
			 UPG_SPAN_FREE && span_end(p) == s->base)
		return p;
	return NULL;
}

static struct upg_span *free_after(struct upg_span *s)
{
	struct upg_span *n;

	if (s->flags & UPG_SPAN_RLAST)
		return NULL;
	n = upg_pagemap_get(span_end(s));
	if (n && atomic_load_explicit(&n->kind, memory_order_relaxed) ==
			 UPG_SPAN_FREE && n->base == span_end(s))
		return n;
	return NULL;
}

/*
 * Give back the units of LARGE or SLAB span @s: merge with free neighbours,
 * queue on the dirty list, discard the oldest garbage beyond dirty_max and
 * the garbage that decayed.
 */
void upg_pages_free(struct upg_heap *h, struct upg_span *s)
{
	struct upg_span *p = free_before(s), *n = free_after(s);
	uintptr_t dlo = s->base, dhi = span_end(s);
	uintptr_t pg = h->ops.page_size;
	uintptr_t flo = (s->base + pg - 1) & ~(pg - 1), fhi = span_end(s) & ~(pg - 1);

	upg_assert(s->kind == UPG_SPAN_LARGE || s->kind == UPG_SPAN_SLAB);
	upg_assert(!(s->flags & UPG_SPAN_HOLE));

	/*
	 * The freed bytes are garbage from now on.  Those in pages already
	 * out of RAM are dropped at once: reusing them must not read garbage
	 * back from swap, and leaving them must not keep swap slots.  Mapped
	 * pages stay for reuse, on the dirty list.
	 */
	if (h->ops.lazy_free && flo < fhi)
		(void)h->ops.lazy_free(h->ops.ctx, (void *)flo, fhi - flo);

	/* all of it is dirty, so "zero outside the hull" holds trivially */
	s->flags = (s->flags & (UPG_SPAN_RFIRST | UPG_SPAN_RLAST)) |
		   UPG_SPAN_ZERO;
	if (p) {
		free_remove(h, p);
		if (p->flags & UPG_SPAN_DIRTY)
			dlo = p->dlo;
		s->base = p->base;
		s->units += p->units;
		s->flags = (s->flags & ~(UPG_SPAN_RFIRST | UPG_SPAN_ZERO)) |
			   (p->flags & (UPG_SPAN_RFIRST | UPG_SPAN_ZERO));
		upg_span_put(h, p);
	}
	if (n) {
		free_remove(h, n);
		if (n->flags & UPG_SPAN_DIRTY)
			dhi = n->dhi;
		s->units += n->units;
		s->flags = (s->flags & ~UPG_SPAN_RLAST) |
			   (n->flags & UPG_SPAN_RLAST);
		if (!(n->flags & UPG_SPAN_ZERO))
			s->flags &= (uint8_t)~UPG_SPAN_ZERO;
		upg_span_put(h, n);
	}
	hull_set(s, dlo, dhi, s->base, span_end(s));
	free_insert(h, s);
	dirty_trim(h, 0);
	dirty_decay(h);
}

/*
 * Extend LARGE span @s in place to @units units.  False if it cannot.
 * *@zero (if not NULL) tells whether the units added are known to be zero.
 */
bool upg_pages_grow(struct upg_heap *h, struct upg_span *s, size_t units,
		    bool *zero)
{
	struct upg_span *n = free_after(s);
	size_t k = units - s->units;

	if (!n || n->units < k)
		return false;
	if (zero)
		*zero = (n->flags & UPG_SPAN_ZERO) &&
			!hull_meets(n, n->base, n->base + k * UPG_UNIT);
	if (n->units == k) {
		free_remove(h, n);
		s->flags |= n->flags & UPG_SPAN_RLAST;
		upg_span_put(h, n);
	} else {
		free_shrink_front(h, n, k);
	}
	s->units = (uint32_t)units;
	s->flags &= (uint8_t)~UPG_SPAN_ZERO;
	upg_pagemap_set(span_end(s) - UPG_UNIT, s);
	return true;
}

/*
 * Split LARGE span @s after its first @units units (0 < @units < length):
 * @s keeps them, the new LARGE span returned holds the rest and inherits
 * the MMAP and HOLE flags.  NULL if no span struct can be had.
 */
struct upg_span *upg_pages_split(struct upg_heap *h, struct upg_span *s,
				 size_t units)
{
	struct upg_span *t;

	upg_assert(units > 0 && units < s->units);
	t = span_get(h);
	if (!t)
		return NULL;
	t->base = s->base + units * UPG_UNIT;
	t->units = s->units - (uint32_t)units;
	t->flags = s->flags & (UPG_SPAN_RLAST | UPG_SPAN_MMAP | UPG_SPAN_HOLE);
	atomic_store_explicit(&t->kind, UPG_SPAN_LARGE, memory_order_relaxed);
	s->flags &= (uint8_t)~(UPG_SPAN_RLAST | UPG_SPAN_ZERO);
	s->units = (uint32_t)units;
	upg_pagemap_set(span_end(s) - UPG_UNIT, s);
	upg_pages_set_map(t);
	return t;
}

/* Cut LARGE span @s down to @units units; the tail is freed. */
void upg_pages_shrink(struct upg_heap *h, struct upg_span *s, size_t units)
{
	struct upg_span *t = upg_pages_split(h, s, units);

	if (t) /* else keep it whole: correct, just not tight */
		upg_pages_free(h, t);
}

/* ------------------------------------------------------------- teardown */

void upg_pages_destroy(struct upg_heap *h)
{
	while (h->regions) {
		struct upg_heap_region *r = h->regions;

		h->regions = r->next;
		upg_pagemap_clear(r->base, r->len);
		h->ops.release(h->ops.ctx, (void *)r->base, r->len);
		upg_os_free(r, sizeof(*r));
	}
	while (h->pool_chunks) {
		void *c = h->pool_chunks;

		h->pool_chunks = *(void **)c;
		upg_os_free(c, POOL_CHUNK);
	}
	h->pool = NULL;
}

/* ---------------------------------------------------------------- debug */

#define CHECK(cond)                                                          \
	do {                                                                 \
		if (!(cond)) {                                               \
			upg_log("heap invalid: %s (%s:%d)", #cond, __FILE__, \
				__LINE__);                                   \
			return false;                                        \
		}                                                            \
	} while (0)

bool upg_pages_is_valid(struct upg_heap *h)
{
	size_t free_bytes = 0, dirty_bytes = 0, mapped = 0, n;
	struct upg_heap_region *r;
	struct upg_span *s;
	unsigned b;

	for (r = h->regions; r; r = r->next) {
		uintptr_t a = r->base;
		bool prev_free = false;

		mapped += r->len;
		while (a < r->base + r->len) {
			unsigned kind;

			s = upg_pagemap_get(a);
			CHECK(s && s->base == a && s->units >= 1);
			CHECK(span_end(s) <= r->base + r->len);
			CHECK(upg_pagemap_get(span_end(s) - UPG_UNIT) == s);
			CHECK(!!(s->flags & UPG_SPAN_RFIRST) == (a == r->base));
			CHECK(!!(s->flags & UPG_SPAN_RLAST) ==
			      (span_end(s) == r->base + r->len));
			kind = atomic_load_explicit(&s->kind, memory_order_relaxed);
			CHECK(kind == UPG_SPAN_FREE || kind == UPG_SPAN_LARGE ||
			      kind == UPG_SPAN_SLAB);
			if (kind == UPG_SPAN_FREE) {
				CHECK(!prev_free);
				CHECK(s->bin == bin_of(s->units));
				free_bytes += (size_t)s->units * UPG_UNIT;
				CHECK(!!(s->flags & UPG_SPAN_DIRTY) == (s->dlo < s->dhi));
				if (s->flags & UPG_SPAN_DIRTY) {
					CHECK(s->dlo >= s->base && s->dhi <= span_end(s));
					dirty_bytes += s->dhi - s->dlo;
				}
			}
			prev_free = kind == UPG_SPAN_FREE;
			a = span_end(s);
		}
	}
	CHECK(mapped == h->mapped_bytes);
	CHECK(free_bytes == h->free_bytes);
	CHECK(dirty_bytes == h->dirty_bytes);
	for (b = 0, n = 0; b < UPG_NBINS; b++) {
		CHECK(!!h->bins[b] == !!(h->bin_mask & ((uint64_t)1 << b)));
		for (s = h->bins[b]; s; s = s->next) {
			CHECK(s->kind == UPG_SPAN_FREE && s->bin == b);
			CHECK(!s->next || s->next->prev == s);
			n += (size_t)s->units * UPG_UNIT;
		}
	}
	CHECK(n == free_bytes);
	for (s = h->dirty_head, n = 0; s; s = s->dnext) {
		CHECK(s->kind == UPG_SPAN_FREE && (s->flags & UPG_SPAN_DIRTY));
		CHECK(s->dnext ? s->dnext->dprev == s : h->dirty_tail == s);
		n += s->dhi - s->dlo;
	}
	CHECK(n == dirty_bytes);
	return true;
}
