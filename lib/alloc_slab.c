/* SPDX-License-Identifier: MIT */
/*
 * alloc_slab.c - small objects: slabs of one size class, thread caches.
 *
 * An object of a slab is in exactly one of three places, and one bit says
 * which, outside the managed memory (so no free list is threaded through
 * the objects: writing a link into a freed object would fault its page in,
 * and a swapped-out page would be read back only to hold a pointer):
 *
 *                    malloc                     flush (class lock)
 *   live (program) <-------- thread cache -------------------------> avail
 *      bit in live[] ------>  (entry in a    <-------------------- bit in avail[]
 *                    free     per-thread array)  refill (class lock)
 *
 * - live[]: set by malloc, cleared by free, with one atomic instruction and
 *   no lock.  Clearing a bit that is already clear is a double free (or a
 *   pointer that was never handed out), caught before anything is changed.
 * - the thread cache: an array per class of (object, slab) pairs; malloc and
 *   free of a small size touch only their own thread's cache, so small
 *   allocation takes no lock and scales with threads.
 * - avail[]: the slab's own free objects, under its class's lock.  A cache
 *   that runs dry takes a batch (half its capacity) from the partial slabs;
 *   a full one returns its oldest half.  Both are one lock round trip for
 *   many objects, and a lock per class, not one for the heap.
 *
 * When every object of a slab is avail again, the slab goes back to the
 * page heap, which merges it with its free neighbours and, in time,
 * discards it (alloc_extent.c): a page of small objects that all died is
 * never written to swap.
 */
#include "alloc.h"

#include <errno.h>
#include <string.h>

static void partial_add(struct upg_central *c, struct upg_span *s)
{
	s->prev = NULL;
	s->next = c->partial;
	if (c->partial)
		c->partial->prev = s;
	c->partial = s;
	s->on_partial = true;
}

static void partial_remove(struct upg_central *c, struct upg_span *s)
{
	if (s->prev)
		s->prev->next = s->next;
	else
		c->partial = s->next;
	if (s->next)
		s->next->prev = s->prev;
	s->next = s->prev = NULL;
	s->on_partial = false;
}

/* A new slab of class @cls, every object avail, on the partial list. */
static struct upg_span *slab_new(struct upg_heap *h, unsigned cls)
{
	const struct upg_class_info *ci = &upg_classes[cls];
	struct upg_central *c = &h->central[cls];
	struct upg_span *s;
	unsigned w;

	pthread_mutex_lock(&h->lock);
	s = upg_pages_alloc(h, ci->slab_units, 1);
	if (s) {
		s->cls = (uint8_t)cls;
		for (w = 0; w < UPG_SLAB_WORDS; w++) {
			unsigned lo = w * 64;

			s->avail[w] = ci->nobjs >= lo + 64 ? ~(uint64_t)0
				      : ci->nobjs > lo ? ((uint64_t)1 << (ci->nobjs - lo)) - 1
				      : 0;
			atomic_store_explicit(&s->live[w], 0, memory_order_relaxed);
		}
		s->navail = ci->nobjs;
		atomic_store_explicit(&s->kind, UPG_SPAN_SLAB, memory_order_release);
		upg_pages_set_map(s);
		h->slab_bytes += (size_t)s->units * UPG_UNIT;
	}
	pthread_mutex_unlock(&h->lock);
	if (!s)
		return NULL;
	c->slabs++;
	partial_add(c, s);
	return s;
}

/* Under the class lock: slab @s has every object avail again. */
static void slab_release(struct upg_heap *h, struct upg_central *c,
			 struct upg_span *s)
{
	if (s->on_partial)
		partial_remove(c, s);
	c->slabs--;
	pthread_mutex_lock(&h->lock);
	h->slab_bytes -= (size_t)s->units * UPG_UNIT;
	upg_pages_free(h, s);
	pthread_mutex_unlock(&h->lock);
}

/* Move up to @want avail objects of class @cls into @out[]; returns how many. */
static unsigned central_take(struct upg_heap *h, unsigned cls,
			     struct upg_tcache_entry *out, unsigned want)
{
	const struct upg_class_info *ci = &upg_classes[cls];
	struct upg_central *c = &h->central[cls];
	unsigned got = 0, w;

	pthread_mutex_lock(&c->lock);
	while (got < want) {
		struct upg_span *s = c->partial;

		if (!s) {
			s = slab_new(h, cls);
			if (!s)
				break;
		}
		for (w = 0; w < UPG_SLAB_WORDS && got < want; w++) {
			while (s->avail[w] && got < want) {
				unsigned bit = (unsigned)__builtin_ctzll(s->avail[w]);

				s->avail[w] &= s->avail[w] - 1;
				out[got].p = (void *)(s->base +
						      (size_t)(w * 64 + bit) * ci->size);
				out[got].slab = s;
				got++;
				s->navail--;
			}
		}
		if (s->navail == 0)
			partial_remove(c, s);
	}
	pthread_mutex_unlock(&c->lock);
	return got;
}

/* Make the @n objects of @e[] avail in their slabs (class @cls). */
static void central_return(struct upg_heap *h, unsigned cls,
			   const struct upg_tcache_entry *e, unsigned n)
{
	const struct upg_class_info *ci = &upg_classes[cls];
	struct upg_central *c = &h->central[cls];
	unsigned i;

	pthread_mutex_lock(&c->lock);
	for (i = 0; i < n; i++) {
		struct upg_span *s = e[i].slab;
		uint32_t idx = upg_class_index(ci, (uintptr_t)e[i].p - s->base);
		uint64_t bit = (uint64_t)1 << (idx % 64);

		upg_check(!(s->avail[idx / 64] & bit));
		s->avail[idx / 64] |= bit;
		if (++s->navail == ci->nobjs)
			slab_release(h, c, s);
		else if (!s->on_partial)
			partial_add(c, s);
	}
	pthread_mutex_unlock(&c->lock);
}

static void mark_live(struct upg_span *s, void *p)
{
	const struct upg_class_info *ci = &upg_classes[s->cls];
	uint32_t idx = upg_class_index(ci, (uintptr_t)p - s->base);
	uint64_t bit = (uint64_t)1 << (idx % 64);
	uint64_t old;

	old = atomic_fetch_or_explicit(&s->live[idx / 64], bit,
				       memory_order_relaxed);
	/* a cached object that is live: the heap itself is corrupt */
	upg_check(!(old & bit));
}

void *upg_slab_alloc(struct upg_heap *h, struct upg_tcache *tc, unsigned cls)
{
	struct upg_tcache_entry e;

	if (likely(tc != NULL)) {
		struct upg_tcache_bin *b = &tc->bin[cls];

		if (unlikely(b->count == 0)) {
			struct upg_tcache_entry tmp[128];
			unsigned got, i;

			got = central_take(h, cls, tmp, upg_classes[cls].batch);
			if (!got)
				return NULL;
			/* lowest address on top: handed out first */
			for (i = 0; i < got; i++)
				b->e[i] = tmp[got - 1 - i];
			b->count = got;
			atomic_fetch_add_explicit(&h->refills, 1,
						  memory_order_relaxed);
		}
		e = b->e[--b->count];
	} else if (!central_take(h, cls, &e, 1)) {
		return NULL;
	}
	mark_live(e.slab, e.p);
	return e.p;
}

void upg_slab_free(struct upg_heap *h, struct upg_tcache *tc,
		   struct upg_span *s, void *p, uint32_t idx)
{
	uint64_t bit = (uint64_t)1 << (idx % 64);
	struct upg_tcache_entry e = { p, s };
	uint64_t old;

	old = atomic_fetch_and_explicit(&s->live[idx / 64], ~bit,
					memory_order_relaxed);
	if (unlikely(!(old & bit)))
		upg_alloc_bad_pointer("free", p,
				      "double free: the block is not allocated");
	if (likely(tc != NULL)) {
		struct upg_tcache_bin *b = &tc->bin[s->cls];

		if (unlikely(b->count == b->cap)) {
			unsigned n = upg_classes[s->cls].batch;

			/* the oldest half goes back; the recent stay hot */
			central_return(h, s->cls, b->e, n);
			memmove(b->e, b->e + n, (b->count - n) * sizeof(*b->e));
			b->count -= n;
			atomic_fetch_add_explicit(&h->flushes, 1,
						  memory_order_relaxed);
		}
		b->e[b->count++] = e;
		return;
	}
	central_return(h, s->cls, &e, 1);
}

struct upg_span *upg_slab_find(void *p, uint32_t *idxp, const char *what)
{
	struct upg_span *s = upg_pagemap_get((uintptr_t)p);
	const struct upg_class_info *ci;
	size_t off;
	uint32_t idx;

	if (!s || atomic_load_explicit(&s->kind, memory_order_acquire) !=
			  UPG_SPAN_SLAB)
		return NULL;
	ci = &upg_classes[s->cls];
	off = (uintptr_t)p - s->base;
	if (off >= (size_t)s->units * UPG_UNIT)
		return NULL; /* a stale entry */
	idx = upg_class_index(ci, off);
	if ((size_t)idx * ci->size != off || idx >= ci->nobjs)
		upg_alloc_bad_pointer(what, p,
				      "points inside a block, not at its start");
	*idxp = idx;
	return s;
}

/* ------------------------------------------------------------ the cache */

struct upg_tcache *upg_tcache_create(struct upg_heap *h)
{
	struct upg_tcache_entry *e;
	struct upg_tcache *tc;
	size_t entries = 0, bytes;
	unsigned cls;

	for (cls = 0; cls < UPG_NCLASSES; cls++)
		entries += upg_classes[cls].tcache_cap;
	bytes = sizeof(*tc) + entries * sizeof(*e);
	tc = upg_os_alloc(bytes);
	if (!tc)
		return NULL;
	tc->heap = h;
	tc->map_bytes = bytes;
	e = (struct upg_tcache_entry *)(tc + 1);
	for (cls = 0; cls < UPG_NCLASSES; cls++) {
		tc->bin[cls].e = e;
		tc->bin[cls].cap = upg_classes[cls].tcache_cap;
		e += upg_classes[cls].tcache_cap;
	}
	pthread_mutex_lock(&h->tc_lock);
	tc->next = h->tcaches;
	if (h->tcaches)
		h->tcaches->prev = tc;
	h->tcaches = tc;
	pthread_mutex_unlock(&h->tc_lock);
	return tc;
}

void upg_tcache_destroy(struct upg_tcache *tc)
{
	struct upg_heap *h = tc->heap;
	unsigned cls;

	for (cls = 0; cls < UPG_NCLASSES; cls++) {
		if (tc->bin[cls].count)
			central_return(h, cls, tc->bin[cls].e, tc->bin[cls].count);
		tc->bin[cls].count = 0;
	}
	pthread_mutex_lock(&h->tc_lock);
	if (tc->prev)
		tc->prev->next = tc->next;
	else
		h->tcaches = tc->next;
	if (tc->next)
		tc->next->prev = tc->prev;
	pthread_mutex_unlock(&h->tc_lock);
	upg_os_free(tc, tc->map_bytes);
}
