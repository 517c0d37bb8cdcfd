/* SPDX-License-Identifier: MIT */
/*
 * test_alloc.c - the allocator's bookkeeping, without a pager: size
 * classes, slabs, extents, discards, invalid frees, and randomized
 * malloc/realloc/free sequences checked byte for byte against a shadow.
 * Regions come from alloc_fake.h (mmap), which records every discard.
 */
#include "config.h"

#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "alloc.h"
#include "alloc_fake.h"

static struct fake_provider fake;
static struct upg_heap *heap;

static void heap_setup_params(size_t page_size,
			      const struct upg_heap_params *params)
{
	struct upg_region_ops ops;

	if (heap) /* a test that wants other parameters than its suite's */
		upg_heap_destroy(heap);
	fake_ops(&fake, &ops, page_size);
	cr_assert_eq(upg_heap_create(&ops, params, &heap), 0);
}

static void heap_setup(size_t page_size, size_t region_size, size_t dirty_max)
{
	struct upg_heap_params params = { .region_size = region_size,
					  .dirty_max = dirty_max };
	struct upg_region_ops ops;

	if (heap) /* a test that wants other parameters than its suite's */
		upg_heap_destroy(heap);
	fake_ops(&fake, &ops, page_size);
	cr_assert_eq(upg_heap_create(&ops, &params, &heap), 0);
}

static void setup_default(void)
{
	heap_setup(4096, 64 << 20, 0);
}

static void teardown(void)
{
	if (heap) {
		cr_assert(upg_heap_is_valid(heap));
		upg_heap_destroy(heap);
		heap = NULL;
		cr_assert_eq(fake.charged, 0, "a destroyed heap still charges %lld bytes",
			     (long long)fake.charged);
	}
}

static void stats(struct upg_alloc_stats *st)
{
	upg_heap_stats(heap, st);
}

/* ---------------------------------------------------------- size classes */

Test(classes, round_trip)
{
	size_t size;

	upg_classes_init();
	for (size = 0; size <= UPG_SMALL_MAX; size++) {
		unsigned c = upg_size_class(size);

		cr_assert_lt(c, UPG_NCLASSES);
		cr_assert_geq(upg_classes[c].size, size, "size %zu", size);
		if (c > 0)
			cr_assert_lt(upg_classes[c - 1].size, size,
				     "size %zu: class %u is not the smallest", size, c);
	}
	cr_assert_eq(upg_size_class(UPG_SMALL_MAX), UPG_NCLASSES - 1);
}

Test(classes, shapes)
{
	unsigned c;

	upg_classes_init();
	for (c = 0; c < UPG_NCLASSES; c++) {
		const struct upg_class_info *ci = &upg_classes[c];
		size_t bytes = (size_t)ci->slab_units * UPG_UNIT;

		cr_assert_eq(ci->size % 16, 0);
		if (c)
			cr_assert_gt(ci->size, upg_classes[c - 1].size);
		/* at most 12.5% waste for a request just above the class below */
		if (c > 8)
			cr_assert_leq(ci->size * 8, (upg_classes[c - 1].size + 1) * 9 + 128,
				      "class %u (%u) after %u", c, ci->size,
				      upg_classes[c - 1].size);
		cr_assert_eq(ci->nobjs, bytes / ci->size);
		cr_assert_leq(ci->nobjs, UPG_SLAB_MAX_OBJS);
		cr_assert_leq(bytes - ci->nobjs * ci->size, bytes / 8,
			      "class %u: slab tail too big", c);
		cr_assert_geq(ci->tcache_cap, 2);
		cr_assert_geq(ci->batch, 1);
		cr_assert_lt(ci->batch, ci->tcache_cap + 1);
	}
}

Test(classes, reciprocal_is_exact)
{
	unsigned c;

	upg_classes_init();
	for (c = 0; c < UPG_NCLASSES; c++) {
		const struct upg_class_info *ci = &upg_classes[c];
		size_t off, bytes = (size_t)ci->slab_units * UPG_UNIT;

		for (off = 0; off < bytes; off++)
			if (upg_class_index(ci, off) != off / ci->size)
				cr_assert_fail("class %u (size %u): index(%zu) = %u, want %zu",
					 c, ci->size, off, upg_class_index(ci, off),
					 off / ci->size);
	}
}

/* ------------------------------------------------------------------ slabs */

TestSuite(slab, .init = setup_default, .fini = teardown);

Test(slab, one_slab_holds_nobjs)
{
	unsigned c = upg_size_class(64);
	const struct upg_class_info *ci = &upg_classes[c];
	void *p[UPG_SLAB_MAX_OBJS + 1];
	struct upg_alloc_stats st;
	uintptr_t lo = UINTPTR_MAX, hi = 0;
	unsigned i, j;

	for (i = 0; i < ci->nobjs; i++) {
		p[i] = upg_heap_malloc(heap, NULL, 64);
		cr_assert_not_null(p[i]);
		cr_assert_eq((uintptr_t)p[i] % 16, 0);
		lo = (uintptr_t)p[i] < lo ? (uintptr_t)p[i] : lo;
		hi = (uintptr_t)p[i] > hi ? (uintptr_t)p[i] : hi;
		memset(p[i], (int)i, 64);
	}
	cr_assert_lt(hi - lo, (size_t)ci->slab_units * UPG_UNIT);
	stats(&st);
	cr_assert_eq(st.slabs, 1);
	cr_assert_eq(st.slab_bytes, (size_t)ci->slab_units * UPG_UNIT);
	p[i] = upg_heap_malloc(heap, NULL, 64); /* one more: a second slab */
	stats(&st);
	cr_assert_eq(st.slabs, 2);
	for (i = 0; i < ci->nobjs; i++)
		for (j = 0; j < 64; j++)
			cr_assert_eq(((unsigned char *)p[i])[j], (unsigned char)i);
	cr_assert(upg_heap_is_valid(heap));
	for (i = 0; i <= ci->nobjs; i++)
		upg_heap_free(heap, NULL, p[i]);
	stats(&st);
	cr_assert_eq(st.slabs, 0);
	cr_assert_eq(st.slab_bytes, 0);
	cr_assert_eq(st.free_bytes, st.mapped_bytes);
}

Test(slab, usable_size_is_class_size)
{
	size_t sizes[] = { 0, 1, 15, 16, 17, 100, 129, 1000, 4097, 32768 };
	unsigned i;

	for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		void *p = upg_heap_malloc(heap, NULL, sizes[i]);

		cr_assert_eq(upg_heap_usable_size(heap, p),
			     upg_classes[upg_size_class(sizes[i])].size);
		upg_heap_free(heap, NULL, p);
	}
}

Test(slab, thread_cache_refill_and_flush)
{
	struct upg_tcache *tc = upg_tcache_create(heap);
	unsigned c = upg_size_class(48);
	const struct upg_class_info *ci = &upg_classes[c];
	unsigned n = ci->tcache_cap * 3, i;
	struct upg_alloc_stats st;
	void **p = calloc(n, sizeof(*p));

	for (i = 0; i < n; i++)
		p[i] = upg_heap_malloc(heap, tc, 48);
	stats(&st);
	cr_assert_geq(st.cache_refills, n / ci->batch);
	for (i = 0; i < n; i++)
		upg_heap_free(heap, tc, p[i]);
	stats(&st);
	cr_assert_gt(st.cache_flushes, 0);
	cr_assert_leq(tc->bin[c].count, tc->bin[c].cap);
	cr_assert(upg_heap_is_valid(heap));
	/* what the cache holds still pins its slabs; destroying it frees them */
	upg_tcache_destroy(tc);
	stats(&st);
	cr_assert_eq(st.slabs, 0);
	cr_assert_eq(st.thread_caches, 0);
	free(p);
}

/*
 * Threads refill from slabs of their own shard.  Another shard's partial
 * slab is taken only while it is nearly free (7/8 avail): its objects in
 * use by the other thread would share cache lines with the ones handed out.
 */
Test(slab, other_threads_slab_only_when_nearly_free)
{
	struct upg_tcache *a = upg_tcache_create(heap);
	struct upg_tcache *b = upg_tcache_create(heap);
	unsigned c = 0, take, i;
	const struct upg_class_info *ci;
	struct upg_alloc_stats st;
	size_t size;
	void **p, *q;

	/* a class whose slab holds several refill batches */
	while (upg_classes[c].nobjs < 4 * upg_classes[c].batch ||
	       upg_classes[c].nobjs < 8)
		cr_assert_lt(++c, UPG_NCLASSES);
	ci = &upg_classes[c];
	size = ci->size;
	take = ci->nobjs * 3 / 4 / ci->batch * ci->batch;
	p = calloc(take, sizeof(*p));
	cr_assert_neq(a->shard, b->shard);
	cr_assert_gt(2 * take, ci->nobjs);

	/* a refill leaves a slab less than 7/8 free: not shared */
	p[0] = upg_heap_malloc(heap, a, size);
	q = upg_heap_malloc(heap, b, size);
	stats(&st);
	cr_assert_eq(st.slabs, 2, "a slab a thread refilled from is its own");
	upg_heap_free(heap, b, q);
	upg_tcache_destroy(b);
	stats(&st);
	cr_assert_eq(st.slabs, 1, "b's slab, all free again, was released");

	/* a's cache given back: all its slab but p[0] is free, so shared */
	upg_tcache_destroy(a);
	b = upg_tcache_create(heap);
	q = upg_heap_malloc(heap, b, size);
	stats(&st);
	cr_assert_eq(st.slabs, 1, "a nearly free slab is shared, not doubled");
	upg_heap_free(heap, b, q);
	upg_tcache_destroy(b);

	/* taken over and mostly used by a: no longer shared */
	a = upg_tcache_create(heap);
	for (i = 1; i < take; i++)
		p[i] = upg_heap_malloc(heap, a, size);
	stats(&st);
	cr_assert_eq(st.slabs, 1);
	b = upg_tcache_create(heap);
	cr_assert_neq(a->shard, b->shard);
	q = upg_heap_malloc(heap, b, size);
	stats(&st);
	cr_assert_eq(st.slabs, 2, "a slab mostly in another thread's use");
	upg_heap_free(heap, b, q);
	for (i = 0; i < take; i++)
		upg_heap_free(heap, a, p[i]);
	cr_assert(upg_heap_is_valid(heap));
	upg_tcache_destroy(b);
	upg_tcache_destroy(a);
	free(p);
}

/*
 * The heap's metadata -- span structs, state bytes, thread caches -- is
 * charged to the provider (with a pager: its budget) as it is made.
 */
Test(slab, metadata_is_charged)
{
	struct upg_tcache *tc;
	int64_t before = fake.charged;
	void *p[4096];
	unsigned i;

	for (i = 0; i < 4096; i++)
		p[i] = upg_heap_malloc(heap, NULL, 64 + (i % 8) * 16);
	cr_assert_gt(fake.charged, before, "span and state chunks charged");
	before = fake.charged;
	tc = upg_tcache_create(heap);
	cr_assert_eq((size_t)(fake.charged - before), tc->map_bytes);
	upg_tcache_destroy(tc);
	cr_assert_eq(fake.charged, before);
	for (i = 0; i < 4096; i++)
		upg_heap_free(heap, NULL, p[i]);
}

/*
 * A class's state bytes are carved from a 64 KiB chunk of its own; what is
 * charged is the part carved, a page at a time, not the whole chunk: one
 * object in each of 16 classes charges at most a pool chunk of span structs
 * and a page of states per class (it was 16 chunks, 1 MiB).
 */
Test(slab, state_chunks_charged_as_carved)
{
	int64_t before = fake.charged;
	void *p[16];
	unsigned i;

	for (i = 0; i < 16; i++)
		p[i] = upg_heap_malloc(heap, NULL, 16 * (i + 1));
	cr_assert_gt(fake.charged, before);
	cr_assert_leq(fake.charged - before, (int64_t)(64 * 1024 + 16 * UPG_UNIT),
		      "16 classes charged %lld bytes",
		      (long long)(fake.charged - before));
	for (i = 0; i < 16; i++)
		upg_heap_free(heap, NULL, p[i]);
}

Test(slab, lowest_address_first)
{
	struct upg_tcache *tc = upg_tcache_create(heap);
	char *a = upg_heap_malloc(heap, tc, 32);
	char *b = upg_heap_malloc(heap, tc, 32);
	char *c = upg_heap_malloc(heap, tc, 32);

	cr_assert_eq(b, a + 32);
	cr_assert_eq(c, b + 32);
	upg_heap_free(heap, tc, b);
	cr_assert_eq(upg_heap_malloc(heap, tc, 32), b, "a freed block is reused first");
	upg_heap_free(heap, tc, a);
	upg_heap_free(heap, tc, b);
	upg_heap_free(heap, tc, c);
	upg_tcache_destroy(tc);
}

Test(slab, empty_slab_is_discarded)
{
	unsigned c = upg_size_class(256);
	const struct upg_class_info *ci = &upg_classes[c];
	void *p[UPG_SLAB_MAX_OBJS];
	uintptr_t lo = UINTPTR_MAX;
	unsigned i;

	heap_setup(4096, 64 << 20, SIZE_MAX); /* discard at once */
	for (i = 0; i < ci->nobjs; i++) {
		p[i] = upg_heap_malloc(heap, NULL, 256);
		memset(p[i], 0xab, 256);
		lo = (uintptr_t)p[i] < lo ? (uintptr_t)p[i] : lo;
	}
	cr_assert_eq(fake.discards, 0);
	for (i = 0; i + 1 < ci->nobjs; i++)
		upg_heap_free(heap, NULL, p[i]);
	cr_assert_eq(fake.discards, 0, "a slab with a live object is kept");
	upg_heap_free(heap, NULL, p[i]);
	cr_assert_eq(fake.discards, 1);
	/* the slab merged with the free rest of the region; only it is discarded */
	cr_assert_eq(fake.last_discard, lo);
	cr_assert_eq(fake.last_discard_len, (size_t)ci->slab_units * UPG_UNIT);
	cr_assert_eq(*(volatile unsigned char *)lo, 0, "discarded memory reads zero");
}

static void *cross_free_thread(void *arg)
{
	void **p = arg;
	struct upg_tcache *tc = upg_tcache_create(heap);
	unsigned i;

	for (i = 0; p[i]; i++)
		upg_heap_free(heap, tc, p[i]);
	upg_tcache_destroy(tc);
	return NULL;
}

Test(slab, free_from_another_thread)
{
	struct upg_tcache *tc = upg_tcache_create(heap);
	void *p[1001];
	struct upg_alloc_stats st;
	pthread_t t;
	unsigned i;

	for (i = 0; i < 1000; i++)
		p[i] = upg_heap_malloc(heap, tc, 16 + (i % 50) * 16);
	p[i] = NULL;
	pthread_create(&t, NULL, cross_free_thread, p);
	pthread_join(t, NULL);
	upg_tcache_destroy(tc);
	stats(&st);
	cr_assert_eq(st.slabs, 0);
}

/* ---------------------------------------------------------------- extents */

TestSuite(extent, .init = setup_default, .fini = teardown);

Test(extent, neighbours_coalesce)
{
	char *a = upg_heap_malloc(heap, NULL, 100000);
	char *b = upg_heap_malloc(heap, NULL, 200000);
	char *c = upg_heap_malloc(heap, NULL, 300000);
	struct upg_alloc_stats st;

	cr_assert_eq(b, a + upg_align_up(100000, 4096), "cut from the front");
	cr_assert_eq(c, b + upg_align_up(200000, 4096));
	upg_heap_free(heap, NULL, b);
	cr_assert(upg_heap_is_valid(heap));
	upg_heap_free(heap, NULL, a);
	cr_assert(upg_heap_is_valid(heap));
	/* a+b merged: a block of their total size fits exactly there */
	cr_assert_eq(upg_heap_malloc(heap, NULL, upg_align_up(100000, 4096) +
					      upg_align_up(200000, 4096)), a);
	upg_heap_free(heap, NULL, a);
	upg_heap_free(heap, NULL, c);
	stats(&st);
	cr_assert_eq(st.free_bytes, st.mapped_bytes);
	cr_assert_eq(st.large_allocs, 4);
	cr_assert_eq(st.large_frees, 4);
}

Test(extent, realloc_grows_in_place_then_moves)
{
	unsigned char *p = upg_heap_malloc(heap, NULL, 100000), *q, *r;
	struct upg_alloc_stats st;
	size_t i;

	for (i = 0; i < 100000; i++)
		p[i] = (unsigned char)(i * 7);
	q = upg_heap_realloc(heap, NULL, p, 1 << 20);
	cr_assert_eq(q, p, "free space behind: grown in place");
	r = upg_heap_malloc(heap, NULL, 50000); /* now right behind p */
	cr_assert_eq(r, p + (1 << 20));
	q = upg_heap_realloc(heap, NULL, p, 2 << 20);
	cr_assert_neq(q, p, "blocked: moved");
	for (i = 0; i < 100000; i++)
		cr_assert_eq(q[i], (unsigned char)(i * 7));
	stats(&st);
	cr_assert_eq(st.grow_in_place, 1);
	cr_assert_eq(st.realloc_moves, 1);
	upg_heap_free(heap, NULL, q);
	upg_heap_free(heap, NULL, r);
}

Test(extent, realloc_shrinks_in_place)
{
	unsigned char *p = upg_heap_malloc(heap, NULL, 1 << 20), *q;
	struct upg_alloc_stats st;

	memset(p, 0x5a, 1 << 20);
	q = upg_heap_realloc(heap, NULL, p, 300000);
	cr_assert_eq(q, p);
	cr_assert_eq(upg_heap_usable_size(heap, p), upg_align_up(300000, 4096));
	cr_assert_eq(q[299999], 0x5a);
	stats(&st);
	cr_assert_eq(st.shrink_in_place, 1);
	cr_assert_eq(st.large_bytes, upg_align_up(300000, 4096));
	/* shrinking below the small limit moves it into a slab */
	q = upg_heap_realloc(heap, NULL, p, 1000);
	cr_assert_neq(q, p);
	cr_assert_eq(q[999], 0x5a);
	upg_heap_free(heap, NULL, q);
}

Test(extent, aligned_blocks)
{
	size_t align, size;
	void *p;

	for (align = 16; align <= (4 << 20); align <<= 1) {
		for (size = 1; size < (1 << 21); size = size * 3 + 5) {
			p = upg_heap_memalign(heap, NULL, align, size);
			cr_assert_not_null(p);
			cr_assert_eq((uintptr_t)p % align, 0, "align %zu size %zu: %p",
				     align, size, p);
			cr_assert_geq(upg_heap_usable_size(heap, p), size);
			memset(p, 1, size);
			upg_heap_free(heap, NULL, p);
		}
	}
	cr_assert(upg_heap_is_valid(heap));
}

Test(extent, calloc_is_zero_after_reuse)
{
	size_t n = 3 << 20, i;
	unsigned char *p;

	heap_setup(4096, 64 << 20, SIZE_MAX);
	p = upg_heap_calloc(heap, NULL, 1, n);
	for (i = 0; i < n; i += 97)
		cr_assert_eq(p[i], 0);
	memset(p, 0xee, n);
	upg_heap_free(heap, NULL, p);
	p = upg_heap_calloc(heap, NULL, n / 8, 8);
	for (i = 0; i < n; i += 97)
		cr_assert_eq(p[i], 0);
	upg_heap_free(heap, NULL, p);
	/* small calloc of a recycled object */
	p = upg_heap_malloc(heap, NULL, 200);
	memset(p, 0xee, 200);
	upg_heap_free(heap, NULL, p);
	p = upg_heap_calloc(heap, NULL, 200, 1);
	for (i = 0; i < 200; i++)
		cr_assert_eq(p[i], 0);
	upg_heap_free(heap, NULL, p);
	cr_assert_null(upg_heap_calloc(heap, NULL, SIZE_MAX / 2, 3));
}

Test(extent, discard_hysteresis)
{
	void *f[5], *keep[5];
	struct upg_alloc_stats st;
	unsigned i;

	heap_setup(4096, 64 << 20, 1 << 20);
	for (i = 0; i < 5; i++) {
		f[i] = upg_heap_malloc(heap, NULL, 256 << 10);
		keep[i] = upg_heap_malloc(heap, NULL, 100000); /* no merging */
		memset(f[i], 1, 256 << 10);
	}
	upg_heap_free(heap, NULL, f[0]);
	/* reused while still resident, without a discard in between */
	cr_assert_eq(upg_heap_malloc(heap, NULL, 256 << 10), f[0]);
	for (i = 0; i < 4; i++)
		upg_heap_free(heap, NULL, f[i]);
	stats(&st);
	cr_assert_eq(fake.discards, 0, "up to dirty_max: kept for reuse");
	cr_assert_eq(st.dirty_bytes, 1 << 20);
	upg_heap_free(heap, NULL, f[4]);
	stats(&st);
	/* over dirty_max: the oldest go, down to half of it */
	cr_assert_eq(fake.discards, 3);
	cr_assert_eq(fake.last_discard, (uintptr_t)f[2]);
	cr_assert_eq(st.dirty_bytes, 512 << 10);
	cr_assert_eq(st.discarded_bytes, 768 << 10);
	for (i = 0; i < 5; i++)
		upg_heap_free(heap, NULL, keep[i]);
}

/*
 * Garbage is kept up to dirty_max while the pager has room; once it has
 * none, the oldest goes until it has some again, down to dirty_tight / 2
 * at most.
 */
static void free_blocks_apart(void **f, void **keep, unsigned n, size_t len)
{
	for (unsigned i = 0; i < n; i++) {
		f[i] = upg_heap_malloc(heap, NULL, len);
		keep[i] = upg_heap_malloc(heap, NULL, 100000); /* no merging */
		memset(f[i], 1, len);
	}
}

static const struct upg_heap_params room_params = {
	.region_size = 64 << 20, .dirty_max = 4 << 20, .dirty_tight = 512 << 10,
};

Test(extent, discard_when_the_pager_has_no_room)
{
	void *f[7], *keep[7];
	struct upg_alloc_stats st;
	unsigned i;

	heap_setup_params(4096, &room_params);
	free_blocks_apart(f, keep, 7, 256 << 10);
	for (i = 0; i < 6; i++)
		upg_heap_free(heap, NULL, f[i]);
	stats(&st);
	cr_assert_eq(fake.discards, 0, "room: 1.5 MiB kept, over dirty_tight");
	cr_assert_eq(st.dirty_bytes, 6 * (256 << 10));
	fake.room = 0;
	upg_heap_free(heap, NULL, f[6]);
	stats(&st);
	cr_assert_eq(fake.discards, 6, "no room: down to dirty_tight / 2");
	cr_assert_eq(fake.last_discard, (uintptr_t)f[5], "oldest first");
	cr_assert_eq(st.dirty_bytes, 256 << 10);
	for (i = 0; i < 7; i++)
		upg_heap_free(heap, NULL, keep[i]);
}

Test(extent, discard_until_the_pager_has_room)
{
	void *f[4], *keep[4], *small, *big;
	struct upg_alloc_stats st;
	unsigned i;

	heap_setup_params(4096, &room_params);
	free_blocks_apart(f, keep, 4, 256 << 10);
	for (i = 0; i < 3; i++)
		upg_heap_free(heap, NULL, f[i]);
	fake.room = 0;
	fake.discard_gives_room = true;
	upg_heap_free(heap, NULL, f[3]);
	stats(&st);
	cr_assert_eq(fake.discards, 1, "one discard made room: the rest stays");
	cr_assert_eq(fake.last_discard, (uintptr_t)f[0]);
	cr_assert_eq(st.dirty_bytes, 3 * (256 << 10));
	/* a block is handed out only with room for it */
	fake.room = 0;
	small = upg_heap_malloc(heap, NULL, 200 << 10);
	cr_assert_not_null(small);
	stats(&st);
	cr_assert_eq(fake.discards, 2, "one more discard: room for 200 KiB");
	cr_assert_eq(st.dirty_bytes, 2 * (256 << 10));
	/* garbage within dirty_tight stays, room or not */
	fake.room = 0;
	big = upg_heap_malloc(heap, NULL, 4 << 20);
	cr_assert_not_null(big);
	stats(&st);
	cr_assert_eq(fake.discards, 2);
	cr_assert_eq(st.dirty_bytes, 2 * (256 << 10));
	upg_heap_free(heap, NULL, small);
	upg_heap_free(heap, NULL, big);
	for (i = 0; i < 4; i++)
		upg_heap_free(heap, NULL, keep[i]);
}

/*
 * Garbage that no allocation reuses while the live large blocks turn over
 * dirty_generations times (6; at least 64 frees) is discarded, although
 * dirty_max is far away; garbage that keeps being reused stays.
 */
Test(extent, garbage_decays)
{
	enum { LIVE = 20 };
	struct upg_alloc_stats st;
	void *keep[LIVE], *a, *b;
	unsigned i, age;

	for (i = 0; i < LIVE - 1; i++)
		keep[i] = upg_heap_malloc(heap, NULL, 64 << 10);
	a = upg_heap_malloc(heap, NULL, 256 << 10);
	memset(a, 1, 256 << 10);
	keep[LIVE - 1] = upg_heap_malloc(heap, NULL, 64 << 10); /* a's fence */
	upg_heap_free(heap, NULL, a);
	stats(&st);
	cr_assert_eq(st.large_allocs - st.large_frees, LIVE);
	age = LIVE * 6;
	/* b, too big for a's hole, is freed and reused after a */
	for (i = 0; i < age; i++) {
		b = upg_heap_malloc(heap, NULL, 512 << 10);
		cr_assert_gt((uintptr_t)b, (uintptr_t)a);
		memset(b, 2, 512 << 10);
		upg_heap_free(heap, NULL, b);
		cr_assert_eq(fake.discards, 0, "after %u frees: a is %u frees old, not %u yet",
			     i + 1, i + 1, age + 1);
	}
	b = upg_heap_malloc(heap, NULL, 512 << 10);
	upg_heap_free(heap, NULL, b);
	cr_assert_eq(fake.discards, 1, "a decayed");
	cr_assert_eq(fake.last_discard, (uintptr_t)a);
	cr_assert_eq(fake.last_discard_len, 256 << 10);
	stats(&st);
	cr_assert_eq(st.dirty_bytes, 512 << 10, "b, reused each time, stays");
	for (i = 0; i < LIVE; i++)
		upg_heap_free(heap, NULL, keep[i]);
}

Test(extent, discard_only_what_was_used)
{
	struct upg_alloc_stats st;
	char *p, *q;

	heap_setup(4096, 64 << 20, SIZE_MAX);
	p = upg_heap_malloc(heap, NULL, 1 << 20);
	upg_heap_free(heap, NULL, p);
	/* merged with the untouched rest of the region: only p is discarded */
	cr_assert_eq(fake.discards, 1);
	cr_assert_eq(fake.last_discard, (uintptr_t)p);
	cr_assert_eq(fake.last_discard_len, 1 << 20);
	/* and the whole free span is known to be zero again */
	q = upg_heap_calloc(heap, NULL, 1, 8 << 20);
	cr_assert_eq(q, p);
	stats(&st);
	cr_assert_eq(st.discarded_bytes, 1 << 20);
	upg_heap_free(heap, NULL, q);
	cr_assert_eq(fake.last_discard_len, 8 << 20);
}

Test(extent, discards_whole_pager_pages_only)
{
	const size_t ps = 64 << 10;
	void *p[64];
	unsigned i;

	heap_setup(ps, 64 << 20, SIZE_MAX);
	for (i = 0; i < 64; i++)
		p[i] = upg_heap_malloc(heap, NULL, 40000 + i * 1000);
	for (i = 0; i < 64; i += 2)
		upg_heap_free(heap, NULL, p[i]);
	for (i = 1; i < 64; i += 2)
		upg_heap_free(heap, NULL, p[i]);
	/* fake_discard asserted alignment and containment on every call */
	cr_assert_gt(fake.discards, 0);
	cr_assert_eq(fake.discarded_bytes % ps, 0);
}

Test(extent, many_regions)
{
	void *p[40];
	unsigned i;

	heap_setup(4096, 1 << 20, 0); /* tiny regions: growth and edges */
	for (i = 0; i < 40; i++) {
		p[i] = upg_heap_malloc(heap, NULL, (i % 5 + 1) * 300000);
		cr_assert_not_null(p[i]);
		memset(p[i], (int)i, (i % 5 + 1) * 300000);
	}
	p[0] = upg_heap_realloc(heap, NULL, p[0], 5 << 20); /* > a region */
	cr_assert(upg_heap_is_valid(heap));
	cr_assert_gt(fake.nregions, 5);
	for (i = 0; i < 40; i++)
		upg_heap_free(heap, NULL, p[i]);
	cr_assert(upg_heap_is_valid(heap));
}

Test(extent, out_of_address_space)
{
	heap_setup(4096, 1 << 20, 0);
	fake.fail_reserve = true;
	errno = 0;
	cr_assert_null(upg_heap_malloc(heap, NULL, 100));
	cr_assert_eq(errno, ENOMEM);
	cr_assert_null(upg_heap_malloc(heap, NULL, 1 << 20));
	cr_assert_eq(errno, ENOMEM);
	fake.fail_reserve = false;
	cr_assert_not_null(upg_heap_malloc(heap, NULL, 100));
}

/* ---------------------------------------------------------- invalid frees */

TestSuite(invalid, .init = setup_default, .fini = teardown);

Test(invalid, foreign_pointer, .signal = SIGABRT)
{
	int x;

	upg_heap_malloc(heap, NULL, 10);
	upg_heap_free(heap, NULL, &x);
}

Test(invalid, double_free_small, .signal = SIGABRT)
{
	struct upg_tcache *tc = upg_tcache_create(heap);
	void *p = upg_heap_malloc(heap, tc, 24);

	upg_heap_free(heap, tc, p);
	upg_heap_free(heap, tc, p); /* still in the thread cache */
}

Test(invalid, double_free_small_uncached, .signal = SIGABRT)
{
	void *p = upg_heap_malloc(heap, NULL, 24);
	void *keep = upg_heap_malloc(heap, NULL, 24);

	upg_heap_free(heap, NULL, p);
	upg_heap_free(heap, NULL, p);
	upg_heap_free(heap, NULL, keep);
}

Test(invalid, double_free_large, .signal = SIGABRT)
{
	void *p = upg_heap_malloc(heap, NULL, 1 << 20);

	upg_heap_free(heap, NULL, p);
	upg_heap_free(heap, NULL, p);
}

Test(invalid, interior_small, .signal = SIGABRT)
{
	char *p = upg_heap_malloc(heap, NULL, 64);

	upg_heap_free(heap, NULL, p + 16);
}

Test(invalid, interior_large, .signal = SIGABRT)
{
	char *p = upg_heap_malloc(heap, NULL, 1 << 20);

	upg_heap_free(heap, NULL, p + 8192);
}

Test(invalid, realloc_freed, .signal = SIGABRT)
{
	void *p = upg_heap_malloc(heap, NULL, 64);
	void *keep = upg_heap_malloc(heap, NULL, 64);

	upg_heap_free(heap, NULL, p);
	upg_heap_realloc(heap, NULL, p, 100);
	upg_heap_free(heap, NULL, keep);
}

Test(invalid, slab_tail, .signal = SIGABRT)
{
	/* class 48: 85 objects in a unit, 16 bytes of tail */
	char *p = upg_heap_malloc(heap, NULL, 48);
	uintptr_t base = (uintptr_t)p & ~(uintptr_t)4095;

	upg_heap_free(heap, NULL, (void *)(base + 85 * 48));
}

/* ------------------------------------------------------------- randomized */

struct rng {
	uint64_t s;
};

static uint64_t rnd(struct rng *r)
{
	r->s ^= r->s << 13;
	r->s ^= r->s >> 7;
	r->s ^= r->s << 17;
	return r->s;
}

static size_t rnd_size(struct rng *r)
{
	switch (rnd(r) % 16) {
	case 0:
		return rnd(r) % (1 << 20); /* large */
	case 1:
	case 2:
		return rnd(r) % 100000;
	case 3:
		return 0;
	default:
		return rnd(r) % 600; /* mostly small */
	}
}

struct block {
	unsigned char *p;
	size_t size;
	uint8_t seed;
};

static void fill(struct block *b, size_t from)
{
	size_t i;

	for (i = from; i < b->size; i++)
		b->p[i] = (unsigned char)(b->seed + i * 131 + (i >> 8));
}

static void verify(const struct block *b, size_t upto)
{
	size_t i;

	for (i = 0; i < upto && i < b->size; i++)
		if (b->p[i] != (unsigned char)(b->seed + i * 131 + (i >> 8)))
			cr_assert_fail("block %p (size %zu): byte %zu is %u, want %u", b->p,
				 b->size, i, b->p[i],
				 (unsigned char)(b->seed + i * 131 + (i >> 8)));
}

static void random_ops(struct upg_heap *h, struct upg_tcache *tc, uint64_t seed,
		       unsigned nslots, unsigned nops)
{
	struct block *blk = calloc(nslots, sizeof(*blk));
	struct rng r = { seed };
	unsigned op, i;

	for (op = 0; op < nops; op++) {
		struct block *b = &blk[rnd(&r) % nslots];
		unsigned kind = rnd(&r) % 8;

		if (b->p) {
			verify(b, b->size);
			if (kind < 3) {
				size_t n = rnd_size(&r);
				unsigned char *q = upg_heap_realloc(h, tc, b->p, n);

				if (n == 0) {
					cr_assert_null(q);
					b->p = NULL;
					continue;
				}
				cr_assert_not_null(q);
				b->p = q;
				verify(b, n);
				b->size = n;
				fill(b, 0);
			} else {
				upg_heap_free(h, tc, b->p);
				b->p = NULL;
			}
			continue;
		}
		b->size = rnd_size(&r);
		b->seed = (uint8_t)rnd(&r);
		if (kind == 0) {
			size_t align = (size_t)16 << (rnd(&r) % 10);

			b->p = upg_heap_memalign(h, tc, align, b->size);
			cr_assert_eq((uintptr_t)b->p % align, 0);
		} else if (kind == 1) {
			b->p = upg_heap_calloc(h, tc, 1, b->size);
			for (i = 0; i < b->size; i++)
				cr_assert_eq(b->p[i], 0);
		} else {
			b->p = upg_heap_malloc(h, tc, b->size);
		}
		cr_assert_not_null(b->p);
		cr_assert_geq(upg_heap_usable_size(h, b->p), b->size);
		fill(b, 0);
	}
	for (i = 0; i < nslots; i++) {
		if (blk[i].p) {
			verify(&blk[i], blk[i].size);
			upg_heap_free(h, tc, blk[i].p);
		}
	}
	free(blk);
}

TestSuite(random, .fini = teardown);

Test(random, one_thread)
{
	struct upg_tcache *tc;
	struct upg_alloc_stats st;

	heap_setup(4096, 16 << 20, 256 << 10);
	tc = upg_tcache_create(heap);
	random_ops(heap, tc, 0x9e3779b97f4a7c15ULL, 500, 15000);
	cr_assert(upg_heap_is_valid(heap));
	upg_tcache_destroy(tc);
	stats(&st);
	cr_assert_eq(st.slab_bytes + st.large_bytes, 0, "everything freed");
	cr_assert_eq(st.free_bytes, st.mapped_bytes);
	cr_assert_leq(st.dirty_bytes, 256 << 10);
}

Test(random, no_cache_big_pages)
{
	heap_setup(2 << 20, 8 << 20, 0);
	random_ops(heap, NULL, 12345, 200, 5000);
}

static void *random_thread(void *arg)
{
	struct upg_tcache *tc = upg_tcache_create(heap);

	random_ops(heap, tc, (uint64_t)(uintptr_t)arg * 0x2545F4914F6CDD1DULL + 1,
		   300, 8000);
	upg_tcache_destroy(tc);
	return NULL;
}

Test(random, four_threads)
{
	pthread_t t[4];
	struct upg_alloc_stats st;
	uintptr_t i;

	heap_setup(4096, 32 << 20, 0);
	for (i = 0; i < 4; i++)
		pthread_create(&t[i], NULL, random_thread, (void *)(i + 1));
	for (i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	stats(&st);
	cr_assert_eq(st.slab_bytes + st.large_bytes, 0);
}

/* producer/consumer: every block is freed by a thread that did not allocate it */
#define RING 256
static struct {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct block b[RING];
	unsigned head, tail;
	bool done;
} ring = { .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER };

static void *producer(void *arg)
{
	struct upg_tcache *tc = upg_tcache_create(heap);
	struct rng r = { 77 };
	unsigned i;

	for (i = 0; i < 10000; i++) {
		struct block b = { .size = rnd_size(&r), .seed = (uint8_t)i };

		b.p = upg_heap_malloc(heap, tc, b.size);
		cr_assert_not_null(b.p);
		fill(&b, 0);
		pthread_mutex_lock(&ring.lock);
		while (ring.head - ring.tail == RING)
			pthread_cond_wait(&ring.cond, &ring.lock);
		ring.b[ring.head++ % RING] = b;
		pthread_cond_broadcast(&ring.cond);
		pthread_mutex_unlock(&ring.lock);
	}
	pthread_mutex_lock(&ring.lock);
	ring.done = true;
	pthread_cond_broadcast(&ring.cond);
	pthread_mutex_unlock(&ring.lock);
	upg_tcache_destroy(tc);
	return arg;
}

static void *consumer(void *arg)
{
	struct upg_tcache *tc = upg_tcache_create(heap);

	for (;;) {
		struct block b;

		pthread_mutex_lock(&ring.lock);
		while (ring.head == ring.tail && !ring.done)
			pthread_cond_wait(&ring.cond, &ring.lock);
		if (ring.head == ring.tail) {
			pthread_mutex_unlock(&ring.lock);
			break;
		}
		b = ring.b[ring.tail++ % RING];
		pthread_cond_broadcast(&ring.cond);
		pthread_mutex_unlock(&ring.lock);
		verify(&b, b.size);
		upg_heap_free(heap, tc, b.p);
	}
	upg_tcache_destroy(tc);
	return arg;
}

Test(random, producer_consumer)
{
	pthread_t p, c;
	struct upg_alloc_stats st;

	heap_setup(4096, 32 << 20, 0);
	pthread_create(&p, NULL, producer, NULL);
	pthread_create(&c, NULL, consumer, NULL);
	pthread_join(p, NULL);
	pthread_join(c, NULL);
	stats(&st);
	cr_assert_eq(st.slab_bytes + st.large_bytes, 0);
}
