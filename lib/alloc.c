/* SPDX-License-Identifier: MIT */
/*
 * alloc.c - one heap: the malloc family on top of slabs and extents.
 *
 * Requests up to 32 KiB go to a size class and a slab (alloc_slab.c),
 * larger ones get whole units of their own (alloc_extent.c).  Nothing is
 * stored next to a block: free() finds its span through the page map, so
 * freeing a block whose pages are in swap reads nothing back.
 *
 * A large block that grows is extended in place when the span after it is
 * free (often: allocations are cut from the front of free space, so the
 * newest large block tends to have free space behind it); one that shrinks
 * gives its tail back.  When it must move, the copy reads every old page
 * once and writes every new page once, and the old span is freed, hence
 * discarded rather than written out.  calloc() of a large block that comes
 * from never-touched or discarded memory skips the memset: the pages are
 * zero already, and writing them would fault every one of them in.
 */
#include "alloc.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_REGION_SIZE ((size_t)4 << 30)
#define DEFAULT_DIRTY_MAX ((size_t)8 << 20)
#define DEFAULT_DIRTY_GENERATIONS 6U /* alloc_extent.c: garbage decay */

_Noreturn void upg_alloc_bad_pointer(const char *what, const void *p,
				     const char *why)
{
	upg_log("%s(%p): invalid pointer: %s; aborting", what, p, why);
	abort();
}

int upg_heap_create(const struct upg_region_ops *ops,
		    const struct upg_heap_params *params,
		    struct upg_heap **hp)
{
	struct upg_heap *h;
	unsigned c;

	if (!upg_is_pow2(ops->page_size) || ops->page_size < UPG_UNIT)
		return -EINVAL;
	upg_classes_init();
	h = upg_os_alloc(sizeof(*h));
	if (!h)
		return -ENOMEM;
	h->ops = *ops;
	h->region_size = params && params->region_size ? params->region_size
						       : DEFAULT_REGION_SIZE;
	h->region_size = upg_align_up(h->region_size, ops->page_size);
	if (!params || !params->dirty_max)
		h->dirty_max = DEFAULT_DIRTY_MAX;
	else if (params->dirty_max == SIZE_MAX)
		h->dirty_max = 0;
	else
		h->dirty_max = params->dirty_max;
	h->dirty_tight = h->dirty_max;
	if (!params || !params->dirty_generations)
		h->dirty_generations = DEFAULT_DIRTY_GENERATIONS;
	else if (params->dirty_generations != UINT_MAX)
		h->dirty_generations = params->dirty_generations;
	if (params && params->dirty_tight && params->dirty_tight < h->dirty_max &&
	    ops->room)
		h->dirty_tight = params->dirty_tight;
	pthread_mutex_init(&h->lock, NULL);
	pthread_mutex_init(&h->tc_lock, NULL);
	for (c = 0; c < UPG_NCLASSES; c++)
		pthread_mutex_init(&h->central[c].lock, NULL);
	*hp = h;
	return 0;
}

/*
 * The heap's metadata lives outside its regions, so that malloc and free
 * never fault a page in to read a header: unpaged, and with a pager behind
 * the heap, charged to its budget, so that the process as a whole -- the
 * paged heap and the tables that describe it -- stays within the budget.
 * Span structs alone are 192 bytes per slab of a 4 KiB unit (redis-server
 * with 400000 keys: 4.9 MiB of span pool chunks and 1.3 MiB of state bytes
 * beside a 63 MiB budget).
 */
void upg_heap_charge(struct upg_heap *h, int64_t bytes)
{
	if (!h->ops.charge)
		return;
	atomic_fetch_add_explicit(&h->meta_charged, bytes, memory_order_relaxed);
	h->ops.charge(h->ops.ctx, bytes);
}

void upg_heap_destroy(struct upg_heap *h)
{
	unsigned c;

	if (UPG_DEBUG)
		upg_check(upg_heap_is_valid(h));
	while (h->tcaches)
		upg_tcache_destroy(h->tcaches);
	upg_pages_destroy(h);
	upg_slab_destroy_states(h);
	upg_heap_charge(h, -atomic_load(&h->meta_charged));
	pthread_mutex_destroy(&h->lock);
	pthread_mutex_destroy(&h->tc_lock);
	for (c = 0; c < UPG_NCLASSES; c++)
		pthread_mutex_destroy(&h->central[c].lock);
	upg_os_free(h, sizeof(*h));
}

/* ----------------------------------------------------------------- large */

static void *large_alloc(struct upg_heap *h, size_t size, size_t align,
			 bool *zero)
{
	struct upg_span *s;
	size_t units;

	if (size > PTRDIFF_MAX) {
		errno = ENOMEM;
		return NULL;
	}
	units = upg_align_up(size ? size : 1, UPG_UNIT) / UPG_UNIT;
	pthread_mutex_lock(&h->lock);
	s = upg_pages_alloc(h, units, align / UPG_UNIT);
	if (s) {
		upg_assert(s->units == units && s->base % align == 0);
		atomic_store_explicit(&s->kind, UPG_SPAN_LARGE,
				      memory_order_release);
		upg_pages_set_map(s);
		h->large_bytes += units * UPG_UNIT;
		h->large_allocs++;
		if (zero)
			*zero = s->flags & UPG_SPAN_ZERO;
	}
	pthread_mutex_unlock(&h->lock);
	if (!s) {
		errno = ENOMEM;
		return NULL;
	}
	return (void *)s->base;
}

/*
 * The span covering @p, for an error message only: entries inside a large
 * span are not kept, so walk back to its first unit (bounded: 4 GiB).
 */
static struct upg_span *span_covering(uintptr_t p)
{
	uintptr_t a = p & ~(uintptr_t)(UPG_UNIT - 1);
	unsigned n;

	for (n = 0; n < (1U << 20) && a >= UPG_UNIT; n++, a -= UPG_UNIT) {
		struct upg_span *s = upg_pagemap_get(a);

		if (s && atomic_load_explicit(&s->kind, memory_order_relaxed) !=
				 UPG_SPAN_UNUSED &&
		    p >= s->base && p < s->base + (uintptr_t)s->units * UPG_UNIT)
			return s;
	}
	return NULL;
}

/* The LARGE span starting at @p; h->lock held.  Aborts if there is none. */
static struct upg_span *large_find(struct upg_heap *h, void *p,
				   const char *what)
{
	struct upg_span *s = upg_pagemap_get((uintptr_t)p);
	unsigned kind;

	if (s && atomic_load_explicit(&s->kind, memory_order_relaxed) ==
			 UPG_SPAN_LARGE && s->base == (uintptr_t)p &&
	    !(s->flags & (UPG_SPAN_MMAP | UPG_SPAN_HOLE)))
		return s;
	if (s && s->base == (uintptr_t)p &&
	    (s->flags & (UPG_SPAN_MMAP | UPG_SPAN_HOLE))) {
		/* the page map is shared with the mmap heap (alloc_mmap.c) */
		pthread_mutex_unlock(&h->lock);
		upg_alloc_bad_pointer(what, p,
				      "it was returned by mmap(), not by malloc()");
	}
	s = span_covering((uintptr_t)p);
	kind = s ? atomic_load_explicit(&s->kind, memory_order_relaxed)
		 : UPG_SPAN_UNUSED;
	pthread_mutex_unlock(&h->lock);
	if (kind == UPG_SPAN_FREE)
		upg_alloc_bad_pointer(what, p,
				      "double free: the block is not allocated");
	if (kind != UPG_SPAN_UNUSED)
		upg_alloc_bad_pointer(what, p,
				      "points inside a block, not at its start");
	upg_alloc_bad_pointer(what, p, "not allocated by upager");
}

static void large_free(struct upg_heap *h, void *p, const char *what)
{
	struct upg_span *s;

	pthread_mutex_lock(&h->lock);
	s = large_find(h, p, what);
	h->large_bytes -= (size_t)s->units * UPG_UNIT;
	h->large_frees++;
	upg_pages_free(h, s);
	pthread_mutex_unlock(&h->lock);
}

/* ------------------------------------------------------------ the family */

void *upg_heap_malloc(struct upg_heap *h, struct upg_tcache *tc, size_t size)
{
	if (likely(size <= UPG_SMALL_MAX)) {
		void *p = upg_slab_alloc(h, tc, upg_size_class(size));

		if (unlikely(!p))
			errno = ENOMEM;
		return p;
	}
	return large_alloc(h, size, UPG_UNIT, NULL);
}

void *upg_heap_calloc(struct upg_heap *h, struct upg_tcache *tc, size_t n,
		      size_t size)
{
	size_t total;
	bool zero = false;
	void *p;

	if (__builtin_mul_overflow(n, size, &total)) {
		errno = ENOMEM;
		return NULL;
	}
	if (total <= UPG_SMALL_MAX) {
		p = upg_heap_malloc(h, tc, total);
		if (p)
			memset(p, 0, total);
		return p;
	}
	p = large_alloc(h, total, UPG_UNIT, &zero);
	if (p && !zero)
		memset(p, 0, total);
	return p;
}

void *upg_heap_memalign(struct upg_heap *h, struct upg_tcache *tc,
			size_t align, size_t size)
{
	upg_assert(upg_is_pow2(align));
	if (align <= UPG_MIN_ALIGN)
		return upg_heap_malloc(h, tc, size);
	if (align <= UPG_UNIT && size <= UPG_SMALL_MAX) {
		/* a class whose size is a multiple of align: slabs are
		 * unit-aligned, so every object of it is aligned */
		unsigned cls = upg_size_class(upg_align_up(size ? size : 1, align));
		void *p;

		while (upg_classes[cls].size % align)
			cls++;
		p = upg_slab_alloc(h, tc, cls);
		if (!p)
			errno = ENOMEM;
		return p;
	}
	return large_alloc(h, size, align < UPG_UNIT ? UPG_UNIT : align, NULL);
}

void upg_heap_free(struct upg_heap *h, struct upg_tcache *tc, void *p)
{
	struct upg_span *s;
	uint32_t idx;

	if (!p)
		return;
	s = upg_slab_find(p, &idx, "free");
	if (likely(s != NULL)) {
		upg_slab_free(h, tc, s, p, idx);
		return;
	}
	large_free(h, p, "free");
}

void *upg_heap_realloc(struct upg_heap *h, struct upg_tcache *tc, void *p,
		       size_t size)
{
	struct upg_span *s;
	size_t old, units;
	uint32_t idx;
	void *q;

	if (!p)
		return upg_heap_malloc(h, tc, size);
	if (size == 0) {
		/* glibc's behaviour, which programs rely on */
		upg_heap_free(h, tc, p);
		return NULL;
	}
	if (size > PTRDIFF_MAX) {
		errno = ENOMEM;
		return NULL;
	}
	s = upg_slab_find(p, &idx, "realloc");
	if (s) {
		unsigned cls = s->cls;

		if (atomic_load_explicit(&s->state[idx], memory_order_relaxed) !=
		    UPG_OBJ_LIVE)
			upg_alloc_bad_pointer("realloc", p,
					      "the block is not allocated (freed already?)");
		if (size <= UPG_SMALL_MAX && upg_size_class(size) == cls)
			return p;
		old = upg_classes[cls].size;
		goto move;
	}

	pthread_mutex_lock(&h->lock);
	s = large_find(h, p, "realloc");
	old = (size_t)s->units * UPG_UNIT;
	if (size <= UPG_SMALL_MAX) {
		/* small now: a slab object wastes less than a unit */
		pthread_mutex_unlock(&h->lock);
		goto move;
	}
	units = upg_align_up(size, UPG_UNIT) / UPG_UNIT;
	if (units < s->units) {
		size_t before = s->units;

		upg_pages_shrink(h, s, units);
		h->large_bytes -= (before - s->units) * UPG_UNIT;
		h->shrink_in_place++;
		pthread_mutex_unlock(&h->lock);
		return p;
	}
	if (units == s->units) {
		pthread_mutex_unlock(&h->lock);
		return p;
	}
	if (upg_pages_grow(h, s, units, NULL)) {
		h->large_bytes += (units * UPG_UNIT) - old;
		h->grow_in_place++;
		pthread_mutex_unlock(&h->lock);
		return p;
	}
	h->realloc_moves++;
	pthread_mutex_unlock(&h->lock);
move:
	q = upg_heap_malloc(h, tc, size);
	if (!q)
		return NULL;
	memcpy(q, p, old < size ? old : size);
	upg_heap_free(h, tc, p);
	return q;
}

size_t upg_heap_usable_size(struct upg_heap *h, void *p)
{
	struct upg_span *s;
	uint32_t idx;
	size_t n;

	if (!p)
		return 0;
	s = upg_slab_find(p, &idx, "malloc_usable_size");
	if (s)
		return upg_classes[s->cls].size;
	pthread_mutex_lock(&h->lock);
	s = large_find(h, p, "malloc_usable_size");
	n = (size_t)s->units * UPG_UNIT;
	pthread_mutex_unlock(&h->lock);
	return n;
}

bool upg_heap_owns(struct upg_heap *h, const void *p)
{
	bool found;

	pthread_mutex_lock(&h->lock);
	found = upg_heap_region_of(h, (uintptr_t)p) != NULL;
	pthread_mutex_unlock(&h->lock);
	return found;
}

bool upg_heap_region_after(struct upg_heap *h, uintptr_t a, uintptr_t *lo,
			   uintptr_t *hi)
{
	struct upg_heap_region *r, *best = NULL;

	pthread_mutex_lock(&h->lock);
	for (r = h->regions; r; r = r->next)
		if (r->base + r->len > a && (!best || r->base < best->base))
			best = r;
	if (best) {
		*lo = best->base;
		*hi = best->base + best->len;
	}
	pthread_mutex_unlock(&h->lock);
	return best != NULL;
}

void upg_heap_stats(struct upg_heap *h, struct upg_alloc_stats *st)
{
	struct upg_tcache *tc;
	unsigned c;

	memset(st, 0, sizeof(*st));
	for (c = 0; c < UPG_NCLASSES; c++) {
		pthread_mutex_lock(&h->central[c].lock);
		st->slabs += h->central[c].slabs;
		pthread_mutex_unlock(&h->central[c].lock);
	}
	pthread_mutex_lock(&h->lock);
	st->mapped_bytes = h->mapped_bytes;
	st->slab_bytes = h->slab_bytes;
	st->large_bytes = h->large_bytes;
	st->free_bytes = h->free_bytes;
	st->dirty_bytes = h->dirty_bytes;
	st->discards = h->discards;
	st->discarded_bytes = h->discarded_bytes;
	st->large_allocs = h->large_allocs;
	st->large_frees = h->large_frees;
	st->grow_in_place = h->grow_in_place;
	st->shrink_in_place = h->shrink_in_place;
	st->realloc_moves = h->realloc_moves;
	pthread_mutex_unlock(&h->lock);
	st->cache_refills = atomic_load_explicit(&h->refills, memory_order_relaxed);
	st->cache_flushes = atomic_load_explicit(&h->flushes, memory_order_relaxed);
	pthread_mutex_lock(&h->tc_lock);
	for (tc = h->tcaches; tc; tc = tc->next)
		st->thread_caches++;
	pthread_mutex_unlock(&h->tc_lock);
}

/* One partial list of class @c, shard @sh; adds its length to *@n. */
static bool partial_is_valid(struct upg_span *s, unsigned c, unsigned sh,
			     uint64_t *n)
{
	const struct upg_class_info *ci = &upg_classes[c];
	bool ok = true;

	for (; ok && s; s = s->next) {
		unsigned w, i, avail = 0;

		for (w = 0; w < UPG_SLAB_WORDS; w++)
			avail += (unsigned)__builtin_popcountll(s->avail[w]);
		ok = s->state != NULL && s->kind == UPG_SPAN_SLAB &&
		     s->cls == c && s->owner == sh && s->on_partial &&
		     avail == s->navail && s->navail > 0 &&
		     s->navail < ci->nobjs;
		/* an avail object is not live */
		for (i = 0; ok && i < ci->nobjs; i++)
			ok = !(s->avail[i / 64] & ((uint64_t)1 << (i % 64))) ||
			     atomic_load_explicit(&s->state[i],
						  memory_order_relaxed) ==
				     UPG_OBJ_FREE;
		(*n)++;
	}
	return ok;
}

bool upg_heap_is_valid(struct upg_heap *h)
{
	bool ok;
	unsigned c;

	for (c = 0; c < UPG_NCLASSES; c++)
		pthread_mutex_lock(&h->central[c].lock);
	pthread_mutex_lock(&h->lock);
	ok = upg_pages_is_valid(h) &&
	     h->mapped_bytes == h->free_bytes + h->slab_bytes + h->large_bytes;
	for (c = 0; ok && c < UPG_NCLASSES; c++) {
		uint64_t n = 0;
		unsigned sh;

		for (sh = 0; sh < UPG_SHARDS; sh++)
			ok = ok && partial_is_valid(h->central[c].partial[sh],
						    c, sh, &n);
		ok = ok && n <= h->central[c].slabs;
	}
	pthread_mutex_unlock(&h->lock);
	for (c = UPG_NCLASSES; c-- > 0;)
		pthread_mutex_unlock(&h->central[c].lock);
	if (!ok)
		upg_log("heap invalid: byte counts or slab lists disagree");
	return ok;
}

/* --------------------------------------------------------------- fork */

void upg_heap_fork_prepare(struct upg_heap *h)
{
	unsigned c;

	for (c = 0; c < UPG_NCLASSES; c++)
		pthread_mutex_lock(&h->central[c].lock);
	pthread_mutex_lock(&h->lock);
	pthread_mutex_lock(&upg_pagemap_lock);
	pthread_mutex_lock(&h->tc_lock);
}

void upg_heap_fork_parent(struct upg_heap *h)
{
	unsigned c;

	pthread_mutex_unlock(&h->tc_lock);
	pthread_mutex_unlock(&upg_pagemap_lock);
	pthread_mutex_unlock(&h->lock);
	for (c = UPG_NCLASSES; c-- > 0;)
		pthread_mutex_unlock(&h->central[c].lock);
}

/*
 * In the child only the forking thread exists: the caches of the others
 * are dropped with what they held (a small, bounded leak, as with glibc's
 * per-thread caches).  The locks are re-initialised, not unlocked: their
 * owners may be threads that do not exist here.
 */
void upg_heap_fork_child(struct upg_heap *h, struct upg_tcache *keep)
{
	struct upg_tcache *tc, *next;
	unsigned c;

	for (tc = h->tcaches; tc; tc = next) {
		next = tc->next;
		if (tc != keep)
			upg_os_free(tc, tc->map_bytes);
	}
	h->tcaches = keep;
	if (keep)
		keep->next = keep->prev = NULL;
	pthread_mutex_init(&h->tc_lock, NULL);
	pthread_mutex_init(&upg_pagemap_lock, NULL);
	pthread_mutex_init(&h->lock, NULL);
	for (c = 0; c < UPG_NCLASSES; c++)
		pthread_mutex_init(&h->central[c].lock, NULL);
}
