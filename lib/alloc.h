/* SPDX-License-Identifier: MIT */
/*
 * alloc.h - the region allocator's internal interface, shared by
 * lib/alloc*.c and the allocator's unit tests.
 *
 * Files:
 *   alloc_class.c    size classes: object sizes, slab shapes, cache sizes
 *   alloc_pagemap.c  address -> span map (all metadata lives outside regions)
 *   alloc_extent.c   the page heap: spans, free bins, coalescing, discard
 *   alloc_slab.c     slabs of one size class, per-thread caches
 *   alloc.c          a heap: malloc, free, realloc, memalign on one heap
 *   alloc_provider.c where regions come from: a runtime, or plain mmap
 *   alloc_process.c  the process-wide heap behind upg_malloc(): lazy start,
 *                    bootstrap arena, thread exit, fork, statistics at exit
 *   alloc_mmap.c     anonymous mmap/munmap/mremap of the shim, served by a
 *                    second heap of the same kind
 *
 * Lock order (outer first), all below every pager lock except that the
 * pager is called with them held (the pager never calls the allocator):
 *
 *   0. the mmap lock          (alloc_mmap.c: the intercepted mappings; held
 *                             while their memory is copied: see there)
 *   1. heap->central[c].lock  (one size class: its partial slabs, avail bits)
 *   2. heap->lock             (page heap: free spans, regions, span pool)
 *   3. upg_pagemap_lock       (creation of page-map leaves)
 *   4. heap->tc_lock          (the list of thread caches; leaf lock)
 *
 * No allocator lock but the mmap lock is held while managed memory is
 * touched (memset, memcpy run unlocked), so a thread holding one never
 * waits for a page fault.
 */
#ifndef UPG_ALLOC_H
#define UPG_ALLOC_H

#include "internal.h"

#include <pthread.h>
#include <stdatomic.h>

/* ------------------------------------------------------------------------ */
/* Units                                                                     */
/* ------------------------------------------------------------------------ */

/*
 * The allocator's own page, the "unit": spans are whole units.  It is the
 * smallest pager page; a larger pager page only makes discards coarser.
 */
#define UPG_UNIT_SHIFT 12
#define UPG_UNIT ((size_t)1 << UPG_UNIT_SHIFT)

static inline size_t upg_align_up(size_t x, size_t a)
{
	return (x + a - 1) & ~(a - 1);
}

static inline bool upg_is_pow2(size_t x)
{
	return x && !(x & (x - 1));
}

/* ------------------------------------------------------------------------ */
/* alloc_class.c: size classes                                               */
/* ------------------------------------------------------------------------ */

/*
 * 16..128 in steps of 16, then eight classes per power of two up to 32 KiB:
 * at most 12.5% internal waste above 128 bytes, 8 classes per cache line of
 * sizes below.  Every object is 16-byte aligned (max_align_t).
 */
#define UPG_MIN_ALIGN 16
#define UPG_CLASS_SHIFT 3 /* 2^3 classes per power of two above 128 */
#define UPG_NCLASSES (8 + 8 * (1 << UPG_CLASS_SHIFT)) /* 16..128, 8 doublings */
#define UPG_SMALL_MAX ((size_t)32768)
#define UPG_SLAB_MAX_OBJS 512
#define UPG_SLAB_WORDS (UPG_SLAB_MAX_OBJS / 64)

struct upg_class_info {
	uint32_t size;       /* object size: a multiple of 16, <= UPG_SMALL_MAX */
	uint16_t slab_units; /* units per slab */
	uint16_t nobjs;      /* slab_units * UNIT / size; 1 <= nobjs <= 512 */
	uint16_t tcache_cap; /* per-thread cache capacity, >= 2 */
	uint16_t batch;      /* objects moved per cache refill or flush */
	uint64_t magic;      /* ceil(2^40 / size): off / size == off * magic >> 40
			      * for every off < slab_units * UNIT */
};

extern struct upg_class_info upg_classes[UPG_NCLASSES];

/*
 * upg_size_class() by table for sizes up to 1 KiB, indexed by 16-byte
 * steps: one load in place of the count-leading-zeros arithmetic on the
 * malloc fast path (filled by upg_classes_init).
 */
#define UPG_CLASS_TAB_MAX 1024
extern uint8_t upg_class_tab[UPG_CLASS_TAB_MAX / 16 + 1];

/* Fill upg_classes[] (idempotent, thread-safe; no malloc). */
void upg_classes_init(void);

/* The smallest class holding @size bytes; @size <= UPG_SMALL_MAX. */
static inline unsigned upg_size_class(size_t size)
{
	unsigned lg;

	if (size <= 128)
		return size ? (unsigned)((size + 15) >> 4) - 1 : 0;
	lg = 63 - (unsigned)__builtin_clzl(size - 1); /* size in (2^lg, 2^lg+1] */
	return 8 + ((lg - 7) << UPG_CLASS_SHIFT) +
	       (unsigned)((size - 1 - (1UL << lg)) >> (lg - UPG_CLASS_SHIFT));
}

/* upg_size_class(@size) once upg_classes_init() has run. */
static inline unsigned upg_size_class_fast(size_t size)
{
	if (likely(size <= UPG_CLASS_TAB_MAX))
		return upg_class_tab[(size + 15) >> 4];
	return upg_size_class(size);
}

/* Object index of byte offset @off in a slab of class @ci (exact division). */
static inline uint32_t upg_class_index(const struct upg_class_info *ci,
				       size_t off)
{
	return (uint32_t)((off * ci->magic) >> 40);
}

/* ------------------------------------------------------------------------ */
/* Spans                                                                     */
/* ------------------------------------------------------------------------ */

enum upg_span_kind {
	UPG_SPAN_UNUSED = 0, /* in the span pool, describes nothing */
	UPG_SPAN_FREE,       /* free units, on a bin list */
	UPG_SPAN_LARGE,      /* one allocation of units * UNIT bytes */
	UPG_SPAN_SLAB,       /* objects of one size class */
};

/* span flags */
#define UPG_SPAN_DIRTY 0x01 /* FREE: its dirty hull [dlo, dhi) is not empty */
#define UPG_SPAN_ZERO 0x02  /* FREE: every byte outside the dirty hull is zero;
			     * LARGE, as allocated: every byte is zero */
#define UPG_SPAN_RFIRST 0x04 /* starts at its region's base */
#define UPG_SPAN_RLAST 0x08  /* ends at its region's end */
#define UPG_SPAN_MMAP 0x10   /* LARGE: an intercepted mmap (alloc_mmap.c),
			      * not a malloc block: free() rejects it */
#define UPG_SPAN_HOLE 0x20   /* LARGE: given over to the kernel (MAP_FIXED,
			      * mprotect); never freed, never reused */

/*
 * A run of units inside one region.  Described outside the region, in the
 * heap's span pool, so reading or changing it never touches managed memory.
 *
 * Invariants (page heap lock, except where said):
 *  - the spans of a region tile it exactly; RFIRST/RLAST mark its ends;
 *  - two FREE spans are never adjacent (freeing coalesces);
 *  - a FREE span is on exactly one bin list (bins[bin]) and on the dirty
 *    list iff DIRTY; heap->dirty_bytes is the sum of their dirty hulls;
 *  - the page map holds the span for its first and last unit, and for
 *    every unit of a SLAB; other entries may be stale: a reader trusts an
 *    entry only if the span it names is of the right kind and covers the
 *    address (span structs are never unmapped while the heap lives).
 */
#define UPG_SLAB_INLINE 40 /* fills the span's first line (see below) */

struct upg_span {
	/*
	 * The first cache line holds all that free() reads (and, for small
	 * slabs, the state bytes it writes); the fields written under the
	 * class lock (lists, avail) are on the next lines, so a refill or
	 * flush by one thread does not evict the line other threads' free()
	 * reads.  Span structs are 64-byte aligned.
	 */
	uintptr_t base;       /* first byte, UNIT-aligned */
	uint32_t units;       /* length, >= 1 */
	_Atomic uint8_t kind; /* enum upg_span_kind; read unlocked by free() */
	uint8_t flags;        /* UPG_SPAN_* */
	uint8_t cls;          /* SLAB: size class, constant while SLAB */
	uint8_t bin;          /* FREE: the bin list it is on */
	_Atomic uint8_t *state; /* SLAB: object states, see below */
	union {
		struct {
			/* FREE and DIRTY: dirty list */
			struct upg_span *dnext, *dprev;
			/*
			 * FREE: the dirty hull.  Bytes that may hold garbage
			 * not yet discarded all lie in [dlo, dhi), inside the
			 * span; dlo == dhi == 0 when there are none.  A hull,
			 * not a flag: a freed block merging with gigabytes of
			 * untouched region must not make them all dirty.
			 */
			uintptr_t dlo, dhi;
		};
		/*
		 * SLAB of at most UPG_SLAB_INLINE objects: their state
		 * bytes (state points here), in the line free() reads
		 * anyway, so it takes one dependent load less.  Classes
		 * of 112 bytes and up.
		 */
		_Atomic uint8_t inl[UPG_SLAB_INLINE];
	};

	/* SLAB, central lock of its class: the shard of the thread that
	 * last took objects from it; its partial list is partial[owner] */
	uint8_t owner __attribute__((aligned(64)));
	struct upg_span *next, *prev; /* FREE: bin list; SLAB: partial list;
				       * UNUSED: pool free list (next) */
	/* SLAB, central lock of its class: */
	uint16_t navail;      /* objects with an avail bit; < nobjs, else the
			       * slab is released; > 0 iff on the partial list */
	bool on_partial;
	union {
		uint64_t avail[UPG_SLAB_WORDS]; /* object free in the slab (not
						 * live, not in a thread cache) */
		/* FREE and DIRTY: the heap's large_frees when the span joined
		 * the dirty list; its garbage's age is counted from it */
		uint64_t dirty_since;
	};
	/*
	 * SLAB, state (above): state[i] is UPG_OBJ_LIVE iff object i is
	 * allocated to the program, else UPG_OBJ_FREE; nobjs bytes, inl[]
	 * or a cache-line-aligned array of the class (alloc_slab.c), set
	 * when the slab is made.
	 * Written by malloc and free with plain (relaxed) byte stores and no
	 * lock: an object belongs to one thread at a time, and a byte per
	 * object, not a shared bit, keeps one thread's stores off another's
	 * objects.
	 */
} __attribute__((aligned(64)));

_Static_assert(__builtin_offsetof(struct upg_span, owner) == 64,
	       "free() reads one line of a span: base..inl must fill it");

#define UPG_OBJ_FREE 0 /* avail, or in a thread cache */
#define UPG_OBJ_LIVE 1 /* handed out by malloc, not yet freed */

/* ------------------------------------------------------------------------ */
/* alloc_pagemap.c: address -> span                                          */
/* ------------------------------------------------------------------------ */

/*
 * A two-level radix tree over the 47-bit user address space, one entry per
 * unit: 2^17 root slots of 1 GiB, leaves of 2^18 entries (2 MiB, lazily
 * backed).  Leaves are created when a region is added and never freed, so
 * lookups take no lock.
 */
#define UPG_PM_VA_BITS 47
#define UPG_PM_LEAF_BITS 18
#define UPG_PM_ROOT_BITS (UPG_PM_VA_BITS - UPG_PM_LEAF_BITS - UPG_UNIT_SHIFT)

typedef _Atomic(struct upg_span *) upg_pm_entry;
extern _Atomic(upg_pm_entry *) upg_pm_root[(size_t)1 << UPG_PM_ROOT_BITS];

int upg_pagemap_cover(uintptr_t base, size_t len); /* 0 or -ENOMEM */

/* NULL: not mapped.  Inline: free() does this for every object. */
static inline struct upg_span *upg_pagemap_get(uintptr_t addr)
{
	upg_pm_entry *leaf;

	if (unlikely(addr >> UPG_PM_VA_BITS))
		return NULL;
	leaf = atomic_load_explicit(
		&upg_pm_root[addr >> (UPG_PM_LEAF_BITS + UPG_UNIT_SHIFT)],
		memory_order_acquire);
	if (unlikely(!leaf))
		return NULL;
	return atomic_load_explicit(
		&leaf[(addr >> UPG_UNIT_SHIFT) &
		      (((size_t)1 << UPG_PM_LEAF_BITS) - 1)],
		memory_order_acquire);
}

void upg_pagemap_set(uintptr_t addr, struct upg_span *s);
void upg_pagemap_clear(uintptr_t base, size_t len);
extern pthread_mutex_t upg_pagemap_lock;

/* ------------------------------------------------------------------------ */
/* alloc_provider.c: where regions come from                                 */
/* ------------------------------------------------------------------------ */

/*
 * The heap gets its address space through these three calls, and only
 * through them: the pager (a runtime) in production, plain mmap when no
 * runtime can be had, or a test's fake.
 */
struct upg_region_ops {
	/* Reserve @len bytes (a multiple of the page size), zero on first touch. */
	int (*reserve)(void *ctx, size_t len, void **addrp);
	int (*release)(void *ctx, void *addr, size_t len);
	/* Discard whole pages of [addr, addr+len): zero after, no write-out. */
	int (*discard)(void *ctx, void *addr, size_t len);
	/*
	 * Optional (NULL: none).  [addr, addr+len), whole pages, was just
	 * freed: drop what costs nothing to drop -- with the pager, the pages
	 * not mapped now, so that garbage is never written nor read back.
	 * Contents after: unchanged or zero, page by page.
	 */
	int (*lazy_free)(void *ctx, void *addr, size_t len);
	/*
	 * Optional (NULL: none).  [addr, addr+len), whole pages, is about to
	 * be written for the first time: map what holds nothing yet, zeroed,
	 * now.  A hint; contents after: unchanged (a page that held nothing
	 * reads as zero either way).
	 */
	int (*populate)(void *ctx, void *addr, size_t len);
	/*
	 * Optional (NULL: always room).  Bytes the backing store can still
	 * take before it must reclaim (upg_budget_room()); 0 says: give back
	 * what you can, now.
	 */
	size_t (*room)(void *ctx);
	/*
	 * Optional (NULL: nothing counted).  The heap now holds @bytes more
	 * (fewer, if negative) of its own metadata outside the regions: with
	 * a pager, counted against its budget (upg_budget_charge()).
	 */
	int (*charge)(void *ctx, int64_t bytes);
	void *ctx;
	size_t page_size; /* discard granularity: a power of two >= UNIT */
};

/* Regions from @rt (upg_region_reserve, upg_advise DONTNEED). */
void upg_region_ops_runtime(struct upg_region_ops *ops, struct upg_runtime *rt);
/* Regions from mmap(MAP_NORESERVE), discard with madvise(MADV_DONTNEED). */
void upg_region_ops_os(struct upg_region_ops *ops);

/* ------------------------------------------------------------------------ */
/* alloc.c, alloc_extent.c, alloc_slab.c: a heap                             */
/* ------------------------------------------------------------------------ */

#define UPG_NBINS 64
#define UPG_EXACT_BINS 32 /* bins 0..31 hold spans of 1..32 units */

struct upg_heap_params {
	size_t region_size; /* address space reserved at a time; 0: 4 GiB */
	size_t dirty_max;   /* free bytes kept undiscarded; 0: 8 MiB,
			     * (size_t)-1: discard every free span at once */
	size_t dirty_tight; /* the same while ops.room() says 0; 0: as
			     * dirty_max (room is not asked) */
	unsigned dirty_generations; /* garbage not reused while the live
				     * large blocks turn over this many times
				     * is discarded; 0: 6, UINT_MAX: never */
};

struct upg_heap_region {
	uintptr_t base;
	size_t len;
	struct upg_heap_region *next;
};

/*
 * Partial slabs are kept per shard of threads, and a thread refills from
 * its own shard's slabs first: objects of one slab then go to one thread,
 * so two threads seldom write the same line of state bytes (or of a slab's
 * avail bits).  Objects freed by another thread go back to the slab's
 * owner.  A thread whose shard has none takes another's slab (and owns it).
 */
#define UPG_SHARDS 4

/* One size class's slabs. */
struct upg_central {
	pthread_mutex_t lock;
	/* slabs with 0 < navail < nobjs, by owner */
	struct upg_span *partial[UPG_SHARDS];
	uint64_t slabs;           /* SLAB spans of this class now */
	/* state arrays of this class's slabs: a free list (first word links)
	 * and the unused rest [st_next, st_end) of the newest chunk */
	void *st_free;
	uint8_t *st_next, *st_end;
	/* the newest chunk is charged to the budget up to here, a page past
	 * st_next at most: the untouched rest is only address space */
	uint8_t *st_charged;
	void *st_chunks; /* chunk list, first word links */
} __attribute__((aligned(64)));

struct upg_tcache;

struct upg_heap {
	struct upg_region_ops ops;
	size_t region_size; /* multiple of ops.page_size */
	size_t dirty_max;   /* garbage kept while the store has room */
	size_t dirty_tight; /* ... and while it has none (<= dirty_max) */
	unsigned dirty_generations; /* garbage decay, 0 = none (alloc_extent.c) */

	pthread_mutex_t lock; /* the page heap: everything down to stats */
	uint64_t bin_mask;    /* bit b set iff bins[b] is not empty */
	struct upg_span *bins[UPG_NBINS];
	struct upg_span *dirty_head, *dirty_tail; /* oldest first */
	size_t dirty_bytes;
	/* metadata charged through ops.charge: span pool and state chunks,
	 * thread caches; given back when the heap is destroyed */
	_Atomic int64_t meta_charged;
	struct upg_span *pool;     /* UNUSED span structs */
	void *pool_chunks;         /* chunk list: first word links */
	struct upg_heap_region *regions;
	/* the last range handed to ops.populate: slabs inside it skip the call */
	uintptr_t populated_lo, populated_hi;
	/* statistics (page heap lock) */
	size_t mapped_bytes, free_bytes, large_bytes, slab_bytes;
	uint64_t discards, discarded_bytes, large_allocs, large_frees;
	uint64_t grow_in_place, shrink_in_place, realloc_moves;

	struct upg_central central[UPG_NCLASSES];

	pthread_mutex_t tc_lock;
	struct upg_tcache *tcaches; /* every live thread cache of this heap */
	unsigned next_shard;        /* tc_lock: given to the next cache */
	_Atomic uint64_t refills, flushes;
};

/* A cached free object: where it is, its state byte and its slab (so
 * that malloc writes the byte without reading the slab). */
struct upg_tcache_entry {
	void *p;
	_Atomic uint8_t *state;
	struct upg_span *slab;
};

struct upg_tcache_bin {
	struct upg_tcache_entry *e; /* cap entries; e[0..count) cached, newest last */
	uint32_t count;
	uint32_t cap;
};

/*
 * One thread's cache of free small objects: malloc and free of a small size
 * touch only this (and the object's state byte), no lock.  Objects in a
 * cache are neither live nor avail, so their slab cannot be released under
 * them.
 */
struct upg_tcache {
	struct upg_heap *heap;
	struct upg_tcache *next, *prev; /* heap->tcaches */
	size_t map_bytes;
	unsigned shard; /* < UPG_SHARDS: partial lists it refills from */
	struct upg_tcache_bin bin[UPG_NCLASSES];
};

int upg_heap_create(const struct upg_region_ops *ops,
		    const struct upg_heap_params *params,
		    struct upg_heap **hp);
/* Release every region and all metadata.  No thread may use @h any more. */
void upg_heap_destroy(struct upg_heap *h);

struct upg_tcache *upg_tcache_create(struct upg_heap *h);
/* Metadata of @h outside its regions grew by @bytes (ops.charge). */
void upg_heap_charge(struct upg_heap *h, int64_t bytes);
/* Return the cached objects to their slabs, free the cache. */
void upg_tcache_destroy(struct upg_tcache *tc);

/* @tc may be NULL: no cache (slower, takes the class lock). */
void *upg_heap_malloc(struct upg_heap *h, struct upg_tcache *tc, size_t size);
void *upg_heap_calloc(struct upg_heap *h, struct upg_tcache *tc, size_t n,
		      size_t size);
/* @align: a power of two. */
void *upg_heap_memalign(struct upg_heap *h, struct upg_tcache *tc,
			size_t align, size_t size);
void *upg_heap_realloc(struct upg_heap *h, struct upg_tcache *tc, void *p,
		       size_t size);
/* Invalid or double frees are reported and abort(); NULL is ignored. */
void upg_heap_free(struct upg_heap *h, struct upg_tcache *tc, void *p);
size_t upg_heap_usable_size(struct upg_heap *h, void *p);
/* Does @p lie in memory of @h (allocated or not)? */
bool upg_heap_owns(struct upg_heap *h, const void *p);
/* The lowest region of @h that ends after @a: its bounds, or false. */
bool upg_heap_region_after(struct upg_heap *h, uintptr_t a, uintptr_t *lo,
			   uintptr_t *hi);
void upg_heap_stats(struct upg_heap *h, struct upg_alloc_stats *st);
/* Debug: walk every region and list; check the invariants above. */
bool upg_heap_is_valid(struct upg_heap *h);

/* fork: take every heap lock before, release (or reset, in the child) after */
void upg_heap_fork_prepare(struct upg_heap *h);
void upg_heap_fork_parent(struct upg_heap *h);
void upg_heap_fork_child(struct upg_heap *h, struct upg_tcache *keep);

/* Report a bad pointer passed to @what and abort. */
_Noreturn void upg_alloc_bad_pointer(const char *what, const void *p,
				     const char *why);

/* alloc_extent.c: the page heap (callers hold h->lock) */
struct upg_span *upg_pages_alloc(struct upg_heap *h, size_t units,
				 size_t align_units);
struct upg_span *upg_pages_alloc_at(struct upg_heap *h, uintptr_t base,
				    size_t units);
struct upg_span *upg_pages_find(struct upg_heap *h, uintptr_t addr);
void upg_pages_free(struct upg_heap *h, struct upg_span *s);
bool upg_pages_grow(struct upg_heap *h, struct upg_span *s, size_t units,
		    bool *zero);
struct upg_span *upg_pages_split(struct upg_heap *h, struct upg_span *s,
				 size_t units);
void upg_pages_shrink(struct upg_heap *h, struct upg_span *s, size_t units);
void upg_pages_set_map(struct upg_span *s);
struct upg_heap_region *upg_heap_region_of(struct upg_heap *h, uintptr_t addr);
bool upg_pages_populate_plan(struct upg_heap *h, const struct upg_span *s,
			     uintptr_t *lo, uintptr_t *hi);
void upg_span_put(struct upg_heap *h, struct upg_span *s);
void upg_pages_destroy(struct upg_heap *h);
bool upg_pages_is_valid(struct upg_heap *h);

/* alloc_slab.c */

/* Object @p of slab @s (class @ci): its state byte. */
static inline _Atomic uint8_t *upg_obj_state(struct upg_span *s,
					     const struct upg_class_info *ci,
					     const void *p)
{
	return &s->state[upg_class_index(ci, (uintptr_t)p - s->base)];
}

/*
 * The fast paths, inline in the callers (alloc_process.c): no lock, no
 * atomic read-modify-write, no call.  NULL / false: take the slow path
 * (empty or full cache, not a small object, or a bad pointer to report).
 */
static inline void *upg_tcache_pop(struct upg_tcache *tc, unsigned cls)
{
	struct upg_tcache_bin *b = &tc->bin[cls];
	struct upg_tcache_entry *e;
	_Atomic uint8_t *st;
	void *p;

	if (unlikely(b->count == 0))
		return NULL;
	e = &b->e[--b->count];
	/* both loads before the store, which the compiler must otherwise
	 * assume may change the entry */
	p = e->p;
	st = e->state;
	atomic_store_explicit(st, UPG_OBJ_LIVE, memory_order_relaxed);
	return p;
}

static inline bool upg_tcache_push(struct upg_tcache *tc, void *p)
{
	struct upg_span *s = upg_pagemap_get((uintptr_t)p);
	const struct upg_class_info *ci;
	struct upg_tcache_bin *b;
	_Atomic uint8_t *st;
	size_t off;
	uint32_t idx;

	if (unlikely(!s) ||
	    atomic_load_explicit(&s->kind, memory_order_acquire) != UPG_SPAN_SLAB)
		return false;
	ci = &upg_classes[s->cls];
	b = &tc->bin[s->cls];
	off = (uintptr_t)p - s->base;
	idx = upg_class_index(ci, off);
	/* a stale map entry, an inner pointer, a full cache: slow path */
	if (unlikely(off >= (size_t)ci->slab_units * UPG_UNIT ||
		     (size_t)idx * ci->size != off || b->count == b->cap))
		return false;
	st = &s->state[idx];
	if (unlikely(atomic_load_explicit(st, memory_order_relaxed) !=
		     UPG_OBJ_LIVE))
		return false; /* the slow path reports the double free */
	atomic_store_explicit(st, UPG_OBJ_FREE, memory_order_relaxed);
	b->e[b->count].p = p;
	b->e[b->count].state = st;
	b->e[b->count].slab = s;
	b->count++;
	return true;
}

void *upg_slab_alloc(struct upg_heap *h, struct upg_tcache *tc, unsigned cls);
void upg_slab_free(struct upg_heap *h, struct upg_tcache *tc,
		   struct upg_span *s, void *p, uint32_t idx);
/* Free every slab state array of @h (upg_heap_destroy). */
void upg_slab_destroy_states(struct upg_heap *h);
/* The slab holding small object @p and its index; aborts naming @what if
 * @p is not the start of a live object. */
struct upg_span *upg_slab_find(void *p, uint32_t *idxp, const char *what);

/* ------------------------------------------------------------------------ */
/* alloc_mmap.c: anonymous mappings of the shim                              */
/* ------------------------------------------------------------------------ */

/*
 * Start serving the program's anonymous mmap()s from regions of @rt, as
 * UPAGER_MMAP and UPAGER_MMAP_MIN say; @malloc_heap is the process heap
 * (munmap of its memory is refused).  Called once, by the process heap's
 * start, before any intercepted call can see it.  0, or -errno when the
 * variables are bad (the message is in @err).
 */
int upg_mmap_start(struct upg_runtime *rt, struct upg_heap *malloc_heap,
		   char *err, size_t errlen);
/* alloc_process.c: start the process heap (and this) if not yet started */
void upg_alloc_start(void);
void upg_mmap_fork_prepare(void);
void upg_mmap_fork_parent(void);
void upg_mmap_fork_child(void);
/* Adds the mmap counters to @st. */
void upg_mmap_stats(struct upg_alloc_stats *st);
/* The heap behind intercepted mappings (tests), NULL when off. */
struct upg_heap *upg_mmap_heap(void);

#endif /* UPG_ALLOC_H */
