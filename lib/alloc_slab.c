/* SPDX-License-Identifier: MIT */
/*
 * alloc_slab.c - small objects: slabs of one size class, thread caches.
 *
 * An object of a slab is in exactly one of three places, and metadata
 * outside the managed memory says which (so no free list is threaded
 * through the objects: writing a link into a freed object would fault its
 * page in, and a swapped-out page would be read back only to hold a
 * pointer):
 *
 *                    malloc                     flush (class lock)
 *   live (program) <-------- thread cache -------------------------> avail
 *   state[i] = LIVE ------>  (entry in a    <-------------------- bit in avail[]
 *                    free     per-thread array)  refill (class lock)
 *
 * - state[]: one byte per object, LIVE while the program has it, set by
 *   malloc and cleared by free with a plain store and no lock.  Freeing an
 *   object whose byte is not LIVE is a double free (or a pointer that was
 *   never handed out), caught before anything is changed.  A byte, not a
 *   bit: a bit shared with 63 other objects needs a locked read-modify-write
 *   (measured: a third of a malloc/free pair), and its word, shared with
 *   other threads' objects, bounces between their caches.  An object
 *   belongs to one thread at a time, and so does its byte; a thread refills
 *   from slabs of its own shard (alloc.h, UPG_SHARDS), so two threads
 *   rarely hold objects of one slab and write the same line.  The price is nobjs bytes per
 *   slab: 1/16 of a slab of 16-byte objects, under 1% above 128 bytes,
 *   and nothing for slabs of up to 40 objects (112 bytes and up), whose
 *   bytes fit in the first line of their span, beside the fields free()
 *   reads anyway.
 * - the thread cache: an array per class of (object, state byte, slab)
 *   entries; malloc and
 *   free of a small size touch only their own thread's cache, so small
 *   allocation takes no lock and scales with threads.  Their common case is
 *   inline in upg_malloc() and upg_free() (upg_tcache_pop/push, alloc.h):
 *   no call, no lock, no atomic read-modify-write.
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
	struct upg_span **head = &c->partial[s->owner];

	s->prev = NULL;
	s->next = *head;
	if (*head)
		(*head)->prev = s;
	*head = s;
	s->on_partial = true;
}

static void partial_remove(struct upg_central *c, struct upg_span *s)
{
	if (s->prev)
		s->prev->next = s->next;
	else
		c->partial[s->owner] = s->next;
	if (s->next)
		s->next->prev = s->prev;
	s->next = s->prev = NULL;
	s->on_partial = false;
}

#define ST_CHUNK ((size_t)64 << 10)

static size_t state_bytes(const struct upg_class_info *ci)
{
	return upg_align_up(ci->nobjs, 64);
}

/* A state array for a slab of class @cls (class lock held), all FREE. */
static _Atomic uint8_t *state_get(struct upg_heap *h, struct upg_central *c,
				  const struct upg_class_info *ci)
{
	size_t n = state_bytes(ci);
	uint8_t *st;

	if (c->st_free) {
		st = c->st_free;
		c->st_free = *(void **)st;
		memset(st, UPG_OBJ_FREE, n);
		return (_Atomic uint8_t *)st;
	}
	if (!c->st_next || (size_t)(c->st_end - c->st_next) < n) {
		/* the first cache line links the chunk list */
		uint8_t *chunk = upg_os_alloc(ST_CHUNK);

		if (!chunk)
			return NULL;
		*(void **)chunk = c->st_chunks;
		c->st_chunks = chunk;
		c->st_next = chunk + 64;
		c->st_end = chunk + ST_CHUNK;
		c->st_charged = chunk;
	}
	st = c->st_next; /* fresh from mmap: zero, i.e. FREE */
	c->st_next += n;
	/*
	 * Charge the chunk a page at a time as it is carved: one chunk per
	 * class, charged whole, was 64 KiB for each class a program used
	 * (4.5 MiB for all 72), where a slab's states take at most 512 bytes.
	 */
	if (c->st_next > c->st_charged) {
		uint8_t *end = (uint8_t *)upg_align_up((uintptr_t)c->st_next,
						       UPG_UNIT);

		upg_heap_charge(h, (int64_t)(end - c->st_charged));
		c->st_charged = end;
	}
	return (_Atomic uint8_t *)st;
}

static void state_put(struct upg_central *c, _Atomic uint8_t *st)
{
	*(void **)st = c->st_free;
	c->st_free = (void *)st;
}

void upg_slab_destroy_states(struct upg_heap *h)
{
	unsigned cls;

	for (cls = 0; cls < UPG_NCLASSES; cls++) {
		struct upg_central *c = &h->central[cls];
		void *chunk, *next;

		for (chunk = c->st_chunks; chunk; chunk = next) {
			next = *(void **)chunk;
			upg_os_free(chunk, ST_CHUNK);
		}
		c->st_chunks = c->st_free = NULL;
		c->st_next = c->st_end = c->st_charged = NULL;
	}
}

/* A new slab of class @cls, every object avail, on @shard's partial list. */
static struct upg_span *slab_new(struct upg_heap *h, unsigned cls,
				 unsigned shard)
{
	const struct upg_class_info *ci = &upg_classes[cls];
	struct upg_central *c = &h->central[cls];
	bool inl = ci->nobjs <= UPG_SLAB_INLINE;
	_Atomic uint8_t *st = inl ? NULL : state_get(h, c, ci);
	struct upg_span *s;
	uintptr_t plo = 0, phi = 0;
	bool populate = false;
	unsigned w;

	if (!inl && !st)
		return NULL;
	pthread_mutex_lock(&h->lock);
	s = upg_pages_alloc(h, ci->slab_units, 1);
	if (s) {
		populate = upg_pages_populate_plan(h, s, &plo, &phi);
		s->cls = (uint8_t)cls;
		for (w = 0; w < UPG_SLAB_WORDS; w++) {
			unsigned lo = w * 64;

			s->avail[w] = ci->nobjs >= lo + 64 ? ~(uint64_t)0
				      : ci->nobjs > lo ? ((uint64_t)1 << (ci->nobjs - lo)) - 1
				      : 0;
		}
		if (inl) {
			/* over the dead FREE fields (see alloc.h) */
			memset((void *)s->inl, UPG_OBJ_FREE, sizeof(s->inl));
			st = s->inl;
		}
		s->state = st;
		s->navail = ci->nobjs;
		atomic_store_explicit(&s->kind, UPG_SPAN_SLAB, memory_order_release);
		upg_pages_set_map(s);
		h->slab_bytes += (size_t)s->units * UPG_UNIT;
	}
	pthread_mutex_unlock(&h->lock);
	if (!s) {
		if (!inl)
			state_put(c, st);
		return NULL;
	}
	/*
	 * Fresh memory: map it before the objects' first writes fault it in
	 * page by page.  Outside the heap lock, which other classes' slabs
	 * need meanwhile.
	 */
	if (populate)
		(void)h->ops.populate(h->ops.ctx, (void *)plo, phi - plo);
	c->slabs++;
	s->owner = (uint8_t)shard;
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
	if (s->state != s->inl)
		state_put(c, s->state);
	s->state = NULL;
	pthread_mutex_lock(&h->lock);
	h->slab_bytes -= (size_t)s->units * UPG_UNIT;
	upg_pages_free(h, s);
	pthread_mutex_unlock(&h->lock);
}

/*
 * A partial slab for a thread of @shard: its own shard's, else another's
 * that is nearly free (7/8 of it avail), else none (a new slab is carved).
 * A slab taken from another shard has objects live in, or cached by, that
 * shard's threads, side by side with the ones handed out now: two threads
 * then write the same cache lines -- of the objects, of the state bytes --
 * on every malloc and free.  bench/alloc small-2t, time / jemalloc's on two
 * CPUs: 1.33-1.44 when any partial slab was taken (1.04-1.06 with both
 * threads on one CPU); on a 2-vCPU VM of 2026-12-01, 1.24-1.37 when half
 * free, 1.15-1.18 when 7/8 free, 1.11-1.14 never (peak RSS the same).
 */
static struct upg_span *partial_first(struct upg_central *c, unsigned shard,
				      const struct upg_class_info *ci)
{
	unsigned i;

	if (c->partial[shard])
		return c->partial[shard];
	for (i = 1; i < UPG_SHARDS; i++) {
		struct upg_span *s = c->partial[(shard + i) % UPG_SHARDS];

		if (s && 8 * (unsigned)s->navail >= 7 * ci->nobjs)
			return s;
	}
	return NULL;
}

/*
 * Move up to @want avail objects of class @cls into @out[] for a thread of
 * @shard; returns how many.
 */
static unsigned central_take(struct upg_heap *h, unsigned cls, unsigned shard,
			     struct upg_tcache_entry *out, unsigned want)
{
	const struct upg_class_info *ci = &upg_classes[cls];
	struct upg_central *c = &h->central[cls];
	unsigned got = 0, w;

	pthread_mutex_lock(&c->lock);
	while (got < want) {
		struct upg_span *s = partial_first(c, shard, ci);

		if (!s) {
			s = slab_new(h, cls, shard);
			if (!s)
				break;
		} else if (s->owner != shard) {
			partial_remove(c, s);
			s->owner = (uint8_t)shard;
			partial_add(c, s);
		}
		for (w = 0; w < UPG_SLAB_WORDS && got < want; w++) {
			while (s->avail[w] && got < want) {
				unsigned bit = (unsigned)__builtin_ctzll(s->avail[w]);

				s->avail[w] &= s->avail[w] - 1;
				out[got].p = (void *)(s->base +
						      (size_t)(w * 64 + bit) * ci->size);
				out[got].state = &s->state[w * 64 + bit];
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

static void mark_live(const struct upg_tcache_entry *e)
{
	/* a cached object that is live: the heap itself is corrupt */
	upg_assert(e->state == upg_obj_state(e->slab, &upg_classes[e->slab->cls],
					     e->p) &&
		   atomic_load_explicit(e->state, memory_order_relaxed) ==
			   UPG_OBJ_FREE);
	atomic_store_explicit(e->state, UPG_OBJ_LIVE, memory_order_relaxed);
}

void *upg_slab_alloc(struct upg_heap *h, struct upg_tcache *tc, unsigned cls)
{
	struct upg_tcache_entry e;

	if (likely(tc != NULL)) {
		struct upg_tcache_bin *b = &tc->bin[cls];

		if (unlikely(b->count == 0)) {
			struct upg_tcache_entry tmp[128];
			unsigned got, i;

			got = central_take(h, cls, tc->shard, tmp,
					   upg_classes[cls].batch);
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
	} else if (!central_take(h, cls, 0, &e, 1)) {
		return NULL;
	}
	mark_live(&e);
	return e.p;
}

void upg_slab_free(struct upg_heap *h, struct upg_tcache *tc,
		   struct upg_span *s, void *p, uint32_t idx)
{
	struct upg_tcache_entry e = { p, &s->state[idx], s };

	if (unlikely(atomic_load_explicit(&s->state[idx], memory_order_relaxed) !=
		     UPG_OBJ_LIVE))
		upg_alloc_bad_pointer("free", p,
				      "double free: the block is not allocated");
	atomic_store_explicit(&s->state[idx], UPG_OBJ_FREE, memory_order_relaxed);
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
	upg_heap_charge(h, (int64_t)bytes);
	e = (struct upg_tcache_entry *)(tc + 1);
	for (cls = 0; cls < UPG_NCLASSES; cls++) {
		tc->bin[cls].e = e;
		tc->bin[cls].cap = upg_classes[cls].tcache_cap;
		e += upg_classes[cls].tcache_cap;
	}
	pthread_mutex_lock(&h->tc_lock);
	tc->shard = h->next_shard++ % UPG_SHARDS;
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
	upg_heap_charge(h, -(int64_t)tc->map_bytes);
	upg_os_free(tc, tc->map_bytes);
}
