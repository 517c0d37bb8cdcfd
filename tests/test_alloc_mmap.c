/* SPDX-License-Identifier: MIT */
/*
 * test_alloc_mmap.c - the shim's anonymous mappings (alloc_mmap.c) on a
 * real pager with a budget far below the mapped data: what is served from
 * managed regions and what is left to the kernel; munmap of parts;
 * mremap grow, shrink and move; madvise; mprotect and MAP_FIXED handing
 * pages to the kernel with their contents; fork and threads.  Contents
 * are checked against a shadow copy kept in ordinary memory.  Skipped,
 * with the reason, without userfaultfd.
 */
#include "config.h"

#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "alloc.h"
#include "testutil.h"

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif
#ifndef MREMAP_DONTUNMAP
#define MREMAP_DONTUNMAP 4
#endif

#define PG 4096UL
#define RW (PROT_READ | PROT_WRITE)
#define ANON (MAP_PRIVATE | MAP_ANONYMOUS)

static struct upg_runtime *rt;

/* The process heap on a paged runtime of @budget, mmap interception on. */
static void start(size_t budget, const char *min)
{
	rt = test_runtime(budget, UPG_EVICT_AUTO);
	setenv("UPAGER_MMAP", "1", 1);
	setenv("UPAGER_MMAP_MIN", min, 1);
	cr_assert_eq(upg_alloc_init(rt), 0);
	cr_assert_not_null(upg_mmap_heap(), "interception did not start");
}

static void *map(size_t len)
{
	return upg_mmap(NULL, len, RW, ANON, -1, 0, NULL);
}

static bool served(const void *p)
{
	return p != MAP_FAILED && upg_heap_owns(upg_mmap_heap(), p);
}

static bool all_zero(const uint8_t *p, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (p[i])
			return false;
	return true;
}

static uint64_t rnd(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static void check_heap(void)
{
	cr_assert(upg_heap_is_valid(upg_mmap_heap()), "mmap heap invalid");
}

static void fill_pages(uint8_t *p, size_t first, size_t n, unsigned gen)
{
	for (size_t i = first; i < first + n; i++)
		fill_page(p + i * PG, i, PG, gen);
}

static void check_pages(const uint8_t *p, size_t first, size_t n,
			unsigned gen, const char *what)
{
	for (size_t i = first; i < first + n; i++)
		cr_assert_eq(check_page(p + i * PG, i, PG, gen), SIZE_MAX,
			     "%s: page %zu wrong", what, i);
}

/* ------------------------------------------------------------ options */

Test(mmap_options, check)
{
	char err[200];

	cr_assert_eq(upg_alloc_option_check("mmap", "1", err, sizeof(err)), 0);
	cr_assert_eq(upg_alloc_option_check("MMAP", "off", err, sizeof(err)), 0);
	cr_assert_eq(upg_alloc_option_check("mmap_min", "64K", err, sizeof(err)), 0);
	cr_assert_eq(upg_alloc_option_check("UPAGER_MMAP_MIN", "1M", err,
					    sizeof(err)), 0);
	cr_assert_eq(upg_alloc_option_check("mmap", "perhaps", err, sizeof(err)),
		     -EINVAL);
	cr_assert(strstr(err, "UPAGER_MMAP=perhaps") && strstr(err, "UPAGER_MMAP=1"),
		  "message: %s", err);
	cr_assert_eq(upg_alloc_option_check("mmap_min", "12Q", err, sizeof(err)),
		     -EINVAL);
	cr_assert(strstr(err, "UPAGER_MMAP_MIN=12Q"), "message: %s", err);
	cr_assert_eq(upg_alloc_option_check("budget", "1G", err, sizeof(err)),
		     -ENOENT);
}

Test(mmap_options, off_means_off)
{
	void *p;

	rt = test_runtime(8 * MiB, UPG_EVICT_AUTO);
	setenv("UPAGER_MMAP", "0", 1);
	cr_assert_eq(upg_alloc_init(rt), 0);
	cr_assert_null(upg_mmap_heap());
	p = map(4 * MiB);
	cr_assert_neq(p, MAP_FAILED);
	cr_assert_eq(upg_munmap(p, 4 * MiB, NULL), 0);
}

/* ------------------------------------------------------ what is served */

TestSuite(mmap, .timeout = 300);

Test(mmap, served_and_passed_through)
{
	struct { const char *what; int prot, flags; size_t len; } pass[] = {
		{ "below the minimum", RW, ANON, 32 * KiB },
		{ "shared", RW, MAP_SHARED | MAP_ANONYMOUS, MiB },
		{ "read-only", PROT_READ, ANON, MiB },
		{ "inaccessible", PROT_NONE, ANON, MiB },
		{ "executable", RW | PROT_EXEC, ANON, MiB },
		{ "stack", RW, ANON | MAP_STACK, MiB },
		{ "grows down", RW, ANON | MAP_GROWSDOWN, MiB },
		{ "populate", RW, ANON | MAP_POPULATE, MiB },
		{ "hugetlb", RW, ANON | MAP_HUGETLB, 2 * MiB },
	};
	struct upg_alloc_stats st;
	uint8_t *p;

	start(8 * MiB, "64K");
	p = map(MiB);
	cr_assert(served(p), "a private anonymous 1 MiB mapping is served");
	cr_assert_eq((uintptr_t)p % PG, 0);
	cr_assert(all_zero(p, MiB));
	memset(p, 7, MiB);
	cr_assert_eq(upg_munmap(p, MiB, NULL), 0);

	/* MAP_NORESERVE and an odd length: served, page-granular */
	p = upg_mmap(NULL, MiB + 1, RW, ANON | MAP_NORESERVE, -1, 0, NULL);
	cr_assert(served(p));
	cr_assert(all_zero(p, MiB + PG), "recycled memory is zero again");
	cr_assert_eq(upg_munmap(p, MiB + 1, NULL), 0);

	for (size_t i = 0; i < sizeof(pass) / sizeof(pass[0]); i++) {
		p = upg_mmap(NULL, pass[i].len, pass[i].prot, pass[i].flags, -1,
			     0, NULL);
		if (p == MAP_FAILED) /* e.g. no huge pages reserved */
			continue;
		cr_assert(!served(p), "%s: must be left to the kernel",
			  pass[i].what);
		cr_assert_eq(upg_munmap(p, pass[i].len, NULL), 0, "%s", pass[i].what);
	}

	/* an address hint, a file: the kernel's */
	p = upg_mmap((void *)(64UL << 30), MiB, RW, ANON, -1, 0, NULL);
	cr_assert(!served(p));
	cr_assert_eq(upg_munmap(p, MiB, NULL), 0);
	{
		FILE *f = tmpfile();

		cr_assert_not_null(f);
		cr_assert_eq(ftruncate(fileno(f), MiB), 0);
		p = upg_mmap(NULL, MiB, RW, MAP_PRIVATE, fileno(f), 0, NULL);
		cr_assert(!served(p), "file-backed");
		cr_assert_eq(upg_munmap(p, MiB, NULL), 0);
		fclose(f);
	}

	/* libupager's own calls go straight to the kernel: the text of this
	 * test binary is libupager's here (it is linked in statically) */
	p = upg_mmap(NULL, MiB, RW, ANON, -1, 0, (const void *)upg_malloc);
	cr_assert(!served(p), "an internal call was intercepted");
	cr_assert_eq(upg_munmap(p, MiB, (const void *)upg_malloc), 0);

	cr_assert_eq(upg_alloc_stats_get(&st), 0);
	cr_assert_eq(st.mmap_bytes, 0);
	cr_assert_eq(st.mmap_calls, 2);
	cr_assert_geq(st.mmap_passed, 8);
	check_heap();
}

/* --------------------------------------------------------- munmap parts */

Test(mmap, partial_munmap)
{
	const size_t n = 256; /* pages */
	struct upg_alloc_stats st;
	uint8_t *p, *q;

	start(2 * MiB, "64K");
	p = map(n * PG);
	cr_assert(served(p));
	fill_pages(p, 0, n, 1);
	/* head, tail, two holes in the middle, one of them at once twice */
	cr_assert_eq(upg_munmap(p, 4 * PG, NULL), 0);
	cr_assert_eq(upg_munmap(p + (n - 4) * PG, 4 * PG, NULL), 0);
	cr_assert_eq(upg_munmap(p + 100 * PG, 8 * PG, NULL), 0);
	cr_assert_eq(upg_munmap(p + 100 * PG, 8 * PG, NULL), 0,
		     "munmap of unmapped pages succeeds, as in the kernel");
	cr_assert_eq(upg_munmap(p + 150 * PG, PG, NULL), 0);
	upg_alloc_stats_get(&st);
	cr_assert_eq(st.mmap_bytes, (n - 4 - 4 - 8 - 1) * PG);
	cr_assert_geq(st.mmap_partial, 4);
	check_pages(p, 4, 96, 1, "before the first hole");
	check_pages(p, 108, 42, 1, "between the holes");
	check_pages(p, 151, n - 4 - 151, 1, "after the second hole");
	check_heap();

	/* the freed pages come back zero */
	q = map(8 * PG + 64 * KiB);
	cr_assert(served(q));
	cr_assert(all_zero(q, 8 * PG + 64 * KiB));
	cr_assert_eq(upg_munmap(q, 8 * PG + 64 * KiB, NULL), 0);

	/* one munmap over all of it and beyond, holes included */
	cr_assert_eq(upg_munmap(p, n * PG, NULL), 0);
	upg_alloc_stats_get(&st);
	cr_assert_eq(st.mmap_bytes, 0);
	check_heap();
}

/* One munmap across several mappings and the kernel's memory between. */
Test(mmap, munmap_across_mappings)
{
	uint8_t *a, *b, *c;

	start(4 * MiB, "64K");
	a = map(MiB);
	b = map(MiB);
	c = map(MiB);
	cr_assert(served(a) && served(b) && served(c));
	fill_pages(a, 0, 256, 2);
	fill_pages(c, 0, 256, 3);
	/* spans are cut from the front of free space: a, b, c are adjacent */
	cr_assert_eq(b, a + MiB);
	cr_assert_eq(c, b + MiB);
	cr_assert_eq(upg_munmap(a + MiB / 2, 2 * MiB, NULL), 0);
	check_pages(a, 0, 128, 2, "a");
	check_pages(c, 128, 128, 3, "c");
	cr_assert_eq(upg_munmap(a, 3 * MiB, NULL), 0);
	check_heap();
}

/* -------------------------------------------------------------- mremap */

Test(mmap, mremap_shrink_grow_move)
{
	struct upg_alloc_stats st;
	uint8_t *p, *q, *r, *blocker;

	start(2 * MiB, "64K");
	p = map(64 * PG);
	cr_assert(served(p));
	fill_pages(p, 0, 64, 4);

	/* shrink in place */
	q = upg_mremap(p, 64 * PG, 32 * PG, 0, NULL, NULL);
	cr_assert_eq(q, p);
	check_pages(p, 0, 32, 4, "shrunk");

	/* grow in place: the space after is free */
	q = upg_mremap(p, 32 * PG, 2048 * PG, 0, NULL, NULL);
	cr_assert_eq(q, p, "grow in place failed: %s", strerror(errno));
	check_pages(p, 0, 32, 4, "grown");
	cr_assert(all_zero(p + 32 * PG, (2048 - 32) * PG),
		  "the grown part is zero, though it held data before");
	fill_pages(p, 0, 2048, 5);

	/* something right after it: growing must move */
	blocker = map(64 * KiB);
	cr_assert_eq(blocker, p + 2048 * PG);
	q = upg_mremap(p, 2048 * PG, 4096 * PG, 0, NULL, NULL);
	cr_assert_eq(q, MAP_FAILED, "no MREMAP_MAYMOVE: cannot grow");
	cr_assert_eq(errno, ENOMEM);
	check_pages(p, 0, 2048, 5, "after a failed grow");
	q = upg_mremap(p, 2048 * PG, 4096 * PG, MREMAP_MAYMOVE, NULL, NULL);
	cr_assert(served(q) && q != p);
	check_pages(q, 0, 2048, 5, "moved");
	cr_assert(all_zero(q + 2048 * PG, 2048 * PG));
	fill_pages(q, 2048, 2048, 5);

	/* part of a mapping: its tail grows into a new place */
	r = upg_mremap(q + 1024 * PG, 1024 * PG, 3000 * PG, MREMAP_MAYMOVE,
		       NULL, NULL);
	cr_assert(served(r));
	for (size_t i = 0; i < 1024; i++)
		cr_assert_eq(check_page(r + i * PG, 1024 + i, PG, 5), SIZE_MAX,
			     "tail page %zu", i);
	check_pages(q, 0, 1024, 5, "the part left behind");
	check_pages(q, 2048, 2048, 5, "the part left behind");
	cr_assert_eq(upg_munmap(q, 4096 * PG, NULL), 0);
	cr_assert_eq(upg_munmap(r, 3000 * PG, NULL), 0);
	cr_assert_eq(upg_munmap(blocker, 64 * KiB, NULL), 0);

	/* a range that is not one mapping: EFAULT, like the kernel */
	p = map(MiB);
	q = upg_mremap(p + MiB - PG, 2 * PG, 4 * PG, MREMAP_MAYMOVE, NULL, NULL);
	cr_assert_eq(q, MAP_FAILED);
	cr_assert_eq(errno, EFAULT);
	cr_assert_eq(upg_munmap(p, MiB, NULL), 0);

	upg_alloc_stats_get(&st);
	cr_assert_eq(st.mmap_bytes, 0);
	cr_assert_geq(st.mremap_in_place, 2);
	cr_assert_geq(st.mremap_moves, 2);
	check_heap();
}

Test(mmap, mremap_fixed_and_dontunmap)
{
	uint8_t *p, *d, *k, *q;

	start(2 * MiB, "64K");
	p = map(256 * PG);
	fill_pages(p, 0, 256, 6);

	/* onto another intercepted mapping: stays intercepted */
	d = map(512 * PG);
	memset(d, 0x55, 512 * PG);
	q = upg_mremap(p, 256 * PG, 512 * PG, MREMAP_MAYMOVE | MREMAP_FIXED, d,
		       NULL);
	cr_assert_eq(q, d);
	cr_assert(served(d));
	check_pages(d, 0, 256, 6, "fixed move");
	cr_assert(all_zero(d + 256 * PG, 256 * PG),
		  "past the old length the destination is new, zero memory");

	/* onto the kernel's memory: moved out of upager, contents kept */
	k = upg_mmap(NULL, 512 * PG, PROT_READ, ANON, -1, 0, NULL);
	cr_assert(!served(k));
	q = upg_mremap(d, 512 * PG, 512 * PG, MREMAP_MAYMOVE | MREMAP_FIXED, k,
		       NULL);
	cr_assert_eq(q, k);
	check_pages(k, 0, 256, 6, "moved to the kernel's");
	cr_assert(all_zero(k + 256 * PG, 256 * PG));
	k[0] ^= 1; /* writable now, as mremap makes it */
	k[0] ^= 1;

	/* DONTUNMAP: the old range stays mapped, empty */
	p = map(128 * PG);
	fill_pages(p, 0, 128, 7);
	q = upg_mremap(p, 128 * PG, 128 * PG, MREMAP_MAYMOVE | MREMAP_DONTUNMAP,
		       NULL, NULL);
	cr_assert(served(q) && q != p);
	check_pages(q, 0, 128, 7, "dontunmap");
	cr_assert(all_zero(p, 128 * PG));
	cr_assert_eq(upg_munmap(p, 128 * PG, NULL), 0);
	cr_assert_eq(upg_munmap(q, 128 * PG, NULL), 0);
	cr_assert_eq(upg_munmap(k, 512 * PG, NULL), 0);
	check_heap();
}

/* A kernel mapping moved into the middle of an intercepted one. */
Test(mmap, kernel_mapping_moved_into_one)
{
	uint8_t *p, *k;

	start(2 * MiB, "64K");
	p = map(64 * PG);
	fill_pages(p, 0, 64, 8);
	k = upg_mmap(NULL, 4 * PG, RW, ANON, -1, 0, NULL); /* below the minimum */
	cr_assert(!served(k));
	memset(k, 0xab, 4 * PG);
	cr_assert_eq(upg_mremap(k, 4 * PG, 4 * PG, MREMAP_MAYMOVE | MREMAP_FIXED,
				p + 10 * PG, NULL), p + 10 * PG);
	for (size_t i = 0; i < 4 * PG; i++)
		cr_assert_eq(p[10 * PG + i], 0xab);
	check_pages(p, 0, 10, 8, "before");
	check_pages(p, 14, 50, 8, "after");
	/* unmapping all of it: the hole is the kernel's to unmap */
	cr_assert_eq(upg_munmap(p, 64 * PG, NULL), 0);
	check_heap();
}

/* Random mmap/munmap/mremap/madvise/writes, six times the budget, against
 * a shadow copy of every mapping. */
struct mapping {
	uint8_t *p, *shadow;
	size_t len;
};

static void shadow_check(const struct mapping *m)
{
	for (size_t off = 0; off < m->len; off += PG)
		if (memcmp(m->p + off, m->shadow + off, PG))
			cr_assert_fail("mapping %p len %zu: page at %zu differs",
				       m->p, m->len, off);
}

Test(mmap, random_against_shadow, .timeout = 600)
{
	enum { SLOTS = 24, OPS = 2500 };
	struct mapping m[SLOTS] = { { 0 } };
	struct upg_alloc_stats st;
	uint64_t rs = 0x1234567;
	size_t total = 0;

	start(4 * MiB, "16K");
	for (unsigned op = 0; op < OPS; op++) {
		struct mapping *x = &m[rnd(&rs) % SLOTS];
		unsigned what = (unsigned)(rnd(&rs) % 100);
		size_t pages = x->len / PG, nl;
		uint8_t *q;

		if (!x->p) {
			x->len = (4 + rnd(&rs) % 508) * PG;
			x->p = map(x->len);
			cr_assert(served(x->p));
			x->shadow = calloc(1, x->len);
			cr_assert(all_zero(x->p, x->len), "op %u: new mapping not zero", op);
			continue;
		}
		if (what < 35) { /* write some pages */
			size_t first = rnd(&rs) % pages;
			size_t n = 1 + rnd(&rs) % 16;
			uint8_t v = (uint8_t)rnd(&rs);

			if (first + n > pages)
				n = pages - first;
			for (size_t i = first; i < first + n; i++) {
				memset(x->p + i * PG, v + (uint8_t)i, PG);
				memset(x->shadow + i * PG, v + (uint8_t)i, PG);
			}
		} else if (what < 45) { /* check all of it */
			shadow_check(x);
		} else if (what < 52) { /* unmap it */
			shadow_check(x);
			cr_assert_eq(upg_munmap(x->p, x->len, NULL), 0);
			free(x->shadow);
			x->p = NULL;
		} else if (what < 60 && pages > 4) { /* trim the head */
			size_t k = 1 + rnd(&rs) % (pages / 2);

			cr_assert_eq(upg_munmap(x->p, k * PG, NULL), 0);
			x->p += k * PG;
			x->len -= k * PG;
			memmove(x->shadow, x->shadow + k * PG, x->len);
		} else if (what < 68 && pages > 4) { /* shrink (mremap) */
			nl = (1 + rnd(&rs) % (pages - 1)) * PG;
			q = upg_mremap(x->p, x->len, nl, 0, NULL, NULL);
			cr_assert_eq(q, x->p, "op %u: shrink moved", op);
			x->len = nl;
		} else if (what < 80) { /* grow, maybe moving */
			nl = x->len + (1 + rnd(&rs) % 256) * PG;
			q = upg_mremap(x->p, x->len, nl, MREMAP_MAYMOVE, NULL, NULL);
			cr_assert(served(q), "op %u: grow: %s", op, strerror(errno));
			x->shadow = realloc(x->shadow, nl);
			memset(x->shadow + x->len, 0, nl - x->len);
			x->p = q;
			x->len = nl;
		} else if (what < 88) { /* madvise DONTNEED / FREE on some */
			size_t first = rnd(&rs) % pages;
			size_t n = 1 + rnd(&rs) % 32;

			if (first + n > pages)
				n = pages - first;
			cr_assert_eq(upg_madvise(x->p + first * PG, n * PG,
						 what & 1 ? MADV_DONTNEED : MADV_FREE,
						 NULL), 0);
			memset(x->shadow + first * PG, 0, n * PG);
		} else if (what < 94) { /* move onto a new intercepted mapping */
			nl = x->len + (rnd(&rs) % 64) * PG;
			q = map(nl);
			cr_assert(served(q));
			memset(q, 0xee, nl < 8 * PG ? nl : 8 * PG);
			cr_assert_eq(upg_mremap(x->p, x->len, nl,
						MREMAP_MAYMOVE | MREMAP_FIXED, q,
						NULL), q);
			x->shadow = realloc(x->shadow, nl);
			memset(x->shadow + x->len, 0, nl - x->len);
			x->p = q;
			x->len = nl;
		} else { /* MAP_FIXED over part of it: fresh zero pages */
			size_t first = rnd(&rs) % pages;
			size_t n = 1 + rnd(&rs) % 8;

			if (first + n > pages)
				n = pages - first;
			cr_assert_eq(upg_mmap(x->p + first * PG, n * PG, RW,
					      ANON | MAP_FIXED, -1, 0, NULL),
				     x->p + first * PG);
			memset(x->shadow + first * PG, 0, n * PG);
		}
	}
	for (unsigned i = 0; i < SLOTS; i++) {
		if (!m[i].p)
			continue;
		shadow_check(&m[i]);
		total += m[i].len;
	}
	upg_alloc_stats_get(&st);
	cr_assert_eq(st.mmap_bytes, total);
	cr_assert_gt(st.mmap_peak_bytes, 4 * 4 * MiB,
		     "the mappings should have been far over the budget");
	check_heap();
	for (unsigned i = 0; i < SLOTS; i++)
		if (m[i].p) {
			cr_assert_eq(upg_munmap(m[i].p, m[i].len, NULL), 0);
			free(m[i].shadow);
		}
	upg_alloc_stats_get(&st);
	cr_assert_eq(st.mmap_bytes, 0);
	check_heap();
}

/* ------------------------------------------------- handed to the kernel */

Test(mmap, mprotect_keeps_contents)
{
	struct upg_alloc_stats st;
	uint8_t *p;

	start(2 * MiB, "64K");
	p = map(128 * PG);
	fill_pages(p, 0, 128, 9);
	/* read-write is what it is: nothing changes */
	cr_assert_eq(upg_mprotect(p, 128 * PG, RW, NULL), 0);
	upg_alloc_stats_get(&st);
	cr_assert_eq(st.mmap_detached_bytes, 0);
	/* read-only in the middle: handed over, contents kept */
	cr_assert_eq(upg_mprotect(p + 32 * PG, 16 * PG, PROT_READ, NULL), 0);
	check_pages(p, 0, 128, 9, "after mprotect");
	upg_alloc_stats_get(&st);
	cr_assert_eq(st.mmap_detached_bytes, 16 * PG);
	cr_assert_eq(upg_mprotect(p + 32 * PG, 16 * PG, RW, NULL), 0);
	fill_pages(p, 0, 128, 10);
	check_pages(p, 0, 128, 10, "written again");
	/* madvise that changes what fork does: handed over too */
	cr_assert_eq(upg_madvise(p + 64 * PG, 8 * PG, MADV_DONTFORK, NULL), 0);
	cr_assert_eq(upg_madvise(p + 64 * PG, 8 * PG, MADV_DOFORK, NULL), 0);
	check_pages(p, 0, 128, 10, "after madvise");
	/* hints are accepted and change nothing */
	cr_assert_eq(upg_madvise(p, 128 * PG, MADV_HUGEPAGE, NULL), 0);
	cr_assert_eq(upg_madvise(p, 128 * PG, MADV_WILLNEED, NULL), 0);
	cr_assert_eq(upg_munmap(p, 128 * PG, NULL), 0);
	/* free space of the mmap regions is unmapped to the program */
	cr_assert_eq(upg_mprotect(p, PG, PROT_READ, NULL), -1);
	cr_assert_eq(errno, ENOMEM);
	check_heap();
}

Test(mmap, mprotect_read_only_faults)
{
	uint8_t *p;
	pid_t pid;
	int st;

	start(2 * MiB, "64K");
	p = map(64 * PG);
	p[40 * PG] = 1;
	cr_assert_eq(upg_mprotect(p + 32 * PG, 16 * PG, PROT_READ, NULL), 0);
	cr_assert_eq(p[40 * PG], 1);
	/* in a child, with the default action (ASan catches SIGSEGV) */
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		signal(SIGSEGV, SIG_DFL);
		*(volatile uint8_t *)(p + 40 * PG) = 2; /* must fault */
		_exit(0);
	}
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV,
		  "a write to a read-only page did not fault (status %#x)", st);
	*(volatile uint8_t *)(p + 20 * PG) = 2; /* the rest is still writable */
}

Test(mmap, map_fixed_over_one)
{
	uint8_t *p;

	start(2 * MiB, "64K");
	p = map(64 * PG);
	fill_pages(p, 0, 64, 11);
	/* read-write anonymous: served in place, zero */
	cr_assert_eq(upg_mmap(p + 8 * PG, 8 * PG, RW, ANON | MAP_FIXED, -1, 0,
			      NULL), p + 8 * PG);
	cr_assert(served(p + 8 * PG));
	cr_assert(all_zero(p + 8 * PG, 8 * PG));
	check_pages(p, 0, 8, 11, "before");
	check_pages(p, 16, 48, 11, "after");
	/* anything else: the kernel's mapping replaces those pages */
	cr_assert_eq(upg_mmap(p + 32 * PG, 4 * PG, PROT_READ, ANON | MAP_FIXED,
			      -1, 0, NULL), p + 32 * PG);
	cr_assert(all_zero(p + 32 * PG, 4 * PG));
	check_pages(p, 16, 16, 11, "before the kernel's");
	check_pages(p, 36, 28, 11, "after the kernel's");
	/* MAP_FIXED_NOREPLACE never replaces */
	cr_assert_eq(upg_mmap(p, PG, RW, ANON | MAP_FIXED_NOREPLACE, -1, 0, NULL),
		     MAP_FAILED);
	cr_assert_eq(upg_munmap(p, 64 * PG, NULL), 0);
	check_heap();
}

/* ------------------------------------------------------ fork and threads */

Test(mmap, fork_child_reads_and_maps)
{
	const size_t n = 2048; /* 8 MiB, four times the budget */
	uint8_t *p;
	pid_t pid;
	int st;

	start(2 * MiB, "64K");
	p = map(n * PG);
	fill_pages(p, 0, n, 12);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		uint8_t *q;

		for (size_t i = 0; i < n; i++)
			if (check_page(p + i * PG, i, PG, 12) != SIZE_MAX)
				_exit(1);
		if (upg_munmap(p + PG, 16 * PG, NULL))
			_exit(2);
		q = map(MiB);
		if (!served(q) || !all_zero(q, MiB))
			_exit(3);
		_exit(0);
	}
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child status %#x", st);
	check_pages(p, 0, n, 12, "parent after the child");
	cr_assert_eq(upg_munmap(p, n * PG, NULL), 0);
	check_heap();
}

static void *churn(void *arg)
{
	uint64_t rs = (uintptr_t)arg;

	for (unsigned i = 0; i < 300; i++) {
		size_t len = (16 + rnd(&rs) % 120) * 2 * PG; /* halves: pages */
		uint8_t *p = map(len), v = (uint8_t)rnd(&rs), *q;

		if (!served(p) || !all_zero(p, len))
			return (void *)1;
		memset(p, v, len);
		q = upg_mremap(p, len, len * 2, MREMAP_MAYMOVE, NULL, NULL);
		if (q == MAP_FAILED)
			return (void *)2;
		for (size_t k = 0; k < len; k += 512)
			if (q[k] != v)
				return (void *)3;
		/* the middle, then what is left on either side (not all of
		 * it again: another thread may have mapped the middle) */
		if (upg_munmap(q + len / 2, len, NULL) ||
		    upg_munmap(q, len / 2, NULL) ||
		    upg_munmap(q + len / 2 + len, len / 2, NULL))
			return (void *)4;
	}
	return NULL;
}

Test(mmap, threads)
{
	pthread_t t[4];
	void *ret;

	start(4 * MiB, "64K");
	for (uintptr_t i = 0; i < 4; i++)
		cr_assert_eq(pthread_create(&t[i], NULL, churn, (void *)(i + 1)), 0);
	for (unsigned i = 0; i < 4; i++) {
		cr_assert_eq(pthread_join(t[i], &ret), 0);
		cr_assert_null(ret, "thread %u failed at step %p", i, ret);
	}
	check_heap();
}
