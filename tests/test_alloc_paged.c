/* SPDX-License-Identifier: MIT */
/*
 * test_alloc_paged.c - the allocator on a real pager, with a budget far
 * below the live data: contents survive eviction, freed memory is
 * discarded (never written, slots released), the process heap
 * (upg_malloc) and fork.  Skipped, with the reason, without userfaultfd.
 */
#include "config.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "alloc.h"
#include "testutil.h"

struct block {
	unsigned char *p;
	size_t size;
	uint32_t seed;
};

static unsigned char byte_of(uint32_t seed, size_t i)
{
	return (unsigned char)(seed + i * 2654435761u + (i >> 12) * 97);
}

static void fill(struct block *b, size_t from)
{
	for (size_t i = from; i < b->size; i++)
		b->p[i] = byte_of(b->seed, i);
}

static void verify(const struct block *b, size_t upto)
{
	for (size_t i = 0; i < upto && i < b->size; i++)
		if (b->p[i] != byte_of(b->seed, i))
			cr_assert_fail("block %p size %zu: byte %zu is %u, want %u",
				       b->p, b->size, i, b->p[i], byte_of(b->seed, i));
}

static uint64_t rnd(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static size_t rnd_size(uint64_t *s)
{
	uint64_t r = rnd(s) % 100;

	if (r < 50)
		return rnd(s) % 512;
	if (r < 80)
		return rnd(s) % 32768;
	return 32768 + rnd(s) % (1 << 20);
}

static struct upg_heap *paged_heap(struct upg_runtime *rt, size_t dirty_max)
{
	struct upg_heap_params params = { .region_size = 256 << 20,
					  .dirty_max = dirty_max };
	struct upg_region_ops ops;
	struct upg_heap *h;

	upg_region_ops_runtime(&ops, rt);
	cr_assert_eq(upg_heap_create(&ops, &params, &h), 0);
	return h;
}

/* Random malloc/realloc/free over ~6x the budget, every byte checked. */
Test(paged, random_far_over_budget, .timeout = 300)
{
	struct upg_runtime *rt = test_runtime(16 * MiB, UPG_EVICT_AUTO);
	struct upg_heap *h = paged_heap(rt, 1 << 20);
	struct upg_tcache *tc = upg_tcache_create(h);
	const unsigned nslots = 400;
	struct block *blk = calloc(nslots, sizeof(*blk));
	uint64_t s = 0x1234567, live = 0;
	struct upg_alloc_stats as;
	struct upg_stats st;
	unsigned op, i;

	/* fill up to ~96 MiB live */
	for (i = 0; i < nslots; i++) {
		blk[i].size = 32768 + rnd(&s) % (480 << 10);
		blk[i].seed = (uint32_t)rnd(&s);
		blk[i].p = upg_heap_malloc(h, tc, blk[i].size);
		cr_assert_not_null(blk[i].p);
		fill(&blk[i], 0);
		live += blk[i].size;
	}
	cr_assert_gt(live, 80 * MiB);
	for (op = 0; op < 3000; op++) {
		struct block *b = &blk[rnd(&s) % nslots];
		uint64_t k = rnd(&s) % 4;

		verify(b, b->size);
		if (k == 0) {
			size_t n = rnd_size(&s) + 1;

			b->p = upg_heap_realloc(h, tc, b->p, n);
			cr_assert_not_null(b->p);
			verify(b, n);
			b->size = n;
			fill(b, 0);
		} else if (k == 1) {
			upg_heap_free(h, tc, b->p);
			b->size = rnd_size(&s);
			b->seed = (uint32_t)rnd(&s);
			b->p = upg_heap_malloc(h, tc, b->size);
			cr_assert_not_null(b->p);
			fill(b, 0);
		}
	}
	for (i = 0; i < nslots; i++)
		verify(&blk[i], blk[i].size);
	upg_stats_get(rt, &st);
	cr_assert_gt(st.pages_written, 0, "the budget held: pages went to swap");
	cr_assert_gt(st.faults[UPG_FAULT_MAJOR], 0);
	for (i = 0; i < nslots; i++)
		upg_heap_free(h, tc, blk[i].p);
	upg_tcache_destroy(tc);
	upg_heap_stats(h, &as);
	cr_assert_eq(as.slab_bytes + as.large_bytes, 0);
	cr_assert_gt(as.discarded_bytes, 0);
	cr_assert(upg_heap_is_valid(h));
	upg_stats_get(rt, &st);
	/* everything is free: what swap still holds is at most dirty_max */
	cr_assert_leq(st.swapped_pages * st.page_size, as.dirty_bytes,
		      "%llu pages still in swap, %zu bytes undiscarded",
		      (unsigned long long)st.swapped_pages, (size_t)as.dirty_bytes);
	upg_heap_destroy(h);
	upg_runtime_destroy(rt);
	free(blk);
}

/* Freed memory is discarded, not written: its swap slots come back. */
Test(paged, freed_memory_releases_swap, .timeout = 120)
{
	struct upg_runtime *rt = test_runtime(8 * MiB, UPG_EVICT_AUTO);
	struct upg_heap *h = paged_heap(rt, SIZE_MAX); /* discard at once */
	struct upg_stats st;
	struct block b[16];
	unsigned i;

	for (i = 0; i < 16; i++) {
		b[i].size = 4 * MiB;
		b[i].seed = i;
		b[i].p = upg_heap_malloc(h, NULL, b[i].size);
		fill(&b[i], 0);
	}
	upg_stats_get(rt, &st);
	cr_assert_gt(st.swapped_pages, 0);
	for (i = 0; i < 16; i++) {
		verify(&b[i], b[i].size);
		upg_heap_free(h, NULL, b[i].p);
	}
	upg_stats_get(rt, &st);
	cr_assert_eq(st.swapped_pages, 0, "freed pages left in swap");
	cr_assert_geq(st.discards, 16 * MiB / st.page_size);
	upg_heap_destroy(h);
	upg_runtime_destroy(rt);
}

/*
 * Freed memory is kept for reuse while the budget has room (dirty_max),
 * and discarded when a new block needs the room: the budget goes to the
 * new block, not to writing the garbage -- or live data -- to swap.
 */
Test(paged, garbage_goes_before_live_data, .timeout = 120)
{
	struct upg_runtime *rt = test_runtime(16 * MiB, UPG_EVICT_AUTO);
	struct upg_heap_params params = { .region_size = 256 << 20,
					  .dirty_max = 12 * MiB,
					  .dirty_tight = 1 * MiB };
	struct upg_region_ops ops;
	struct upg_alloc_stats as;
	struct upg_heap *h;
	struct upg_stats st;
	struct block live[4], garbage[8], fence, fresh;
	unsigned i;

	upg_region_ops_runtime(&ops, rt);
	cr_assert_eq(upg_heap_create(&ops, &params, &h), 0);
	for (i = 0; i < 4; i++) {
		live[i] = (struct block){ .size = 1 * MiB, .seed = i };
		live[i].p = upg_heap_malloc(h, NULL, live[i].size);
		fill(&live[i], 0);
	}
	for (i = 0; i < 8; i++) {
		garbage[i] = (struct block){ .size = 1 * MiB, .seed = 100 + i };
		garbage[i].p = upg_heap_malloc(h, NULL, garbage[i].size);
		fill(&garbage[i], 0);
	}
	/* keeps the hole the garbage leaves from merging with the free rest */
	fence = (struct block){ .size = 64 * KiB, .seed = 200 };
	fence.p = upg_heap_malloc(h, NULL, fence.size);
	fill(&fence, 0);
	for (i = 0; i < 8; i++)
		upg_heap_free(h, NULL, garbage[i].p);
	upg_heap_stats(h, &as);
	cr_assert_eq(as.dirty_bytes, 8 * MiB, "room: the garbage is kept");
	cr_assert_eq(as.discarded_bytes, 0);

	/* 9 MiB does not fit the hole, nor the room: the garbage goes */
	fresh = (struct block){ .size = 9 * MiB, .seed = 300 };
	fresh.p = upg_heap_malloc(h, NULL, fresh.size);
	cr_assert_not_null(fresh.p);
	upg_heap_stats(h, &as);
	cr_assert_geq(as.discarded_bytes, 8 * MiB);
	fill(&fresh, 0);
	for (i = 0; i < 4; i++)
		verify(&live[i], live[i].size);
	verify(&fence, fence.size);
	verify(&fresh, fresh.size);
	upg_stats_get(rt, &st);
	cr_assert_eq(st.pages_written, 0,
		     "%llu pages written to swap: the garbage should have made room",
		     (unsigned long long)st.pages_written);

	for (i = 0; i < 4; i++)
		upg_heap_free(h, NULL, live[i].p);
	upg_heap_free(h, NULL, fence.p);
	upg_heap_free(h, NULL, fresh.p);
	cr_assert(upg_heap_is_valid(h));
	upg_heap_destroy(h);
	upg_runtime_destroy(rt);
}

/*
 * Slabs carved from fresh memory are populated before their objects are
 * written (UPG_ADV_POPULATE): the writes take no zero-fill faults.
 */
Test(paged, fresh_slabs_are_populated, .timeout = 120)
{
	struct upg_runtime *rt = test_runtime(64 * MiB, UPG_EVICT_AUTO);
	struct upg_heap *h = paged_heap(rt, 0);
	enum { N = 20000, SIZE = 200 };
	struct block *b = calloc(N, sizeof(*b));
	struct upg_stats a, st;
	size_t pages = (size_t)N * SIZE / 4096;

	cr_assert_not_null(b);
	upg_stats_get(rt, &a);
	for (unsigned i = 0; i < N; i++) {
		b[i] = (struct block){ .size = SIZE, .seed = i };
		b[i].p = upg_heap_malloc(h, NULL, SIZE);
		cr_assert_not_null(b[i].p);
		fill(&b[i], 0);
	}
	upg_stats_get(rt, &st);
	cr_assert_geq(st.populated - a.populated, pages,
		      "%lu pages populated for %zu pages of objects",
		      (unsigned long)(st.populated - a.populated), pages);
	cr_assert_lt(st.faults[UPG_FAULT_ZERO] - a.faults[UPG_FAULT_ZERO], pages / 16,
		     "%lu zero-fill faults for %zu pages of objects",
		     (unsigned long)(st.faults[UPG_FAULT_ZERO] - a.faults[UPG_FAULT_ZERO]),
		     pages);
	for (unsigned i = 0; i < N; i++) {
		verify(&b[i], SIZE);
		upg_heap_free(h, NULL, b[i].p);
	}
	free(b);
	upg_heap_destroy(h);
	upg_runtime_destroy(rt);
}

/* upg_malloc() on a runtime given by the program. */
Test(paged, process_heap, .timeout = 120)
{
	struct upg_runtime *rt = test_runtime(16 * MiB, UPG_EVICT_AUTO);
	struct block b[64];
	struct upg_alloc_stats as;
	unsigned i;

	cr_assert_eq(upg_alloc_init(rt), 0);
	cr_assert_eq(upg_alloc_init(rt), -EBUSY);
	cr_assert_eq(upg_alloc_runtime(), rt);
	for (i = 0; i < 64; i++) {
		b[i].size = (i % 2 ? 1 * MiB : 100) + i;
		b[i].seed = i * 7;
		b[i].p = i % 3 ? upg_malloc(b[i].size) : upg_calloc(1, b[i].size);
		cr_assert_not_null(b[i].p);
		fill(&b[i], 0);
	}
	for (i = 0; i < 64; i++) {
		size_t n = b[i].size * 2;

		verify(&b[i], b[i].size);
		b[i].p = upg_realloc(b[i].p, n);
		verify(&b[i], b[i].size);
		b[i].size = n;
		fill(&b[i], 0);
		cr_assert_geq(upg_malloc_usable_size(b[i].p), n);
	}
	for (i = 0; i < 64; i++) {
		verify(&b[i], b[i].size);
		upg_free(b[i].p);
	}
	upg_alloc_stats_get(&as);
	cr_assert_eq(as.large_bytes, 0);
	cr_assert_geq(as.grow_in_place + as.realloc_moves, 32);
}

/* fork without exec: the child reads the parent's swapped-out heap. */
Test(paged, fork_child_reads_swapped_heap, .timeout = 120)
{
	struct upg_runtime *rt = test_runtime(16 * MiB, UPG_EVICT_AUTO);
	struct block b[48];
	struct upg_stats st;
	int status;
	pid_t pid;
	unsigned i;

	cr_assert_eq(upg_alloc_init(rt), 0);
	for (i = 0; i < 48; i++) {
		b[i].size = 1 * MiB + i * 1000;
		b[i].seed = i;
		b[i].p = upg_malloc(b[i].size);
		fill(&b[i], 0);
	}
	upg_stats_get(rt, &st);
	cr_assert_gt(st.swapped_pages, 0);
	pid = fork();
	if (pid == 0) {
		for (i = 0; i < 48; i++)
			for (size_t j = 0; j < b[i].size; j++)
				if (b[i].p[j] != byte_of(b[i].seed, j))
					_exit(10);
		/* and the child's heap works: allocate, write, free */
		for (i = 0; i < 48; i++) {
			upg_free(b[i].p);
			b[i].p = upg_malloc(b[i].size);
			memset(b[i].p, 1, b[i].size);
		}
		_exit(0);
	}
	cr_assert_gt(pid, 0);
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status), "child died by signal %d", WTERMSIG(status));
	cr_assert_eq(WEXITSTATUS(status), 0, "child saw wrong data");
	for (i = 0; i < 48; i++) {
		verify(&b[i], b[i].size);
		upg_free(b[i].p);
	}
}
