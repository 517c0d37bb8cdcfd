/* SPDX-License-Identifier: MIT */
/*
 * testutil.h - shared by the integration suites: runtimes that skip the
 * test (with the reason) when the kernel or the permissions lack what it
 * needs, deterministic page patterns, and resident-size probes.
 */
#ifndef UPG_TESTUTIL_H
#define UPG_TESTUTIL_H

#include <criterion/criterion.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <upager.h>

#define KiB (1024UL)
#define MiB (1024UL * 1024)

/* A runtime with @budget bytes and eviction mechanism @evict, or a skip. */
static inline struct upg_runtime *test_runtime_opts(struct upg_options *o)
{
	struct upg_runtime *rt = NULL;
	struct upg_stats st;
	int ret = upg_runtime_create(o, &rt);

	if (ret == -ENOTSUP && o->evict == UPG_EVICT_MOVE)
		cr_skip_test("this kernel has no UFFDIO_MOVE (Linux 6.8+)");
	cr_assert_eq(ret, 0, "upg_runtime_create: %s", strerror(-ret));
	if (!upg_runtime_is_paged(rt)) {
		char why[300];

		snprintf(why, sizeof(why), "userfaultfd unavailable: %s",
			 upg_runtime_unpaged_reason(rt));
		upg_runtime_destroy(rt);
		cr_skip_test("%s", why);
	}
	upg_stats_get(rt, &st);
	if (o->evict == UPG_EVICT_MOVE)
		cr_assert(st.evict_move);
	if (o->evict == UPG_EVICT_COPY)
		cr_assert(!st.evict_move);
	return rt;
}

static inline struct upg_runtime *test_runtime(size_t budget,
					       enum upg_evict_mode evict)
{
	struct upg_options o;

	upg_options_init(&o);
	o.budget = budget;
	o.evict = evict;
	return test_runtime_opts(&o);
}

static inline struct upg_runtime *test_runtime_dirty(size_t budget,
						     enum upg_evict_mode evict,
						     enum upg_dirty_mode dirty)
{
	struct upg_options o;
	struct upg_runtime *rt;
	struct upg_stats st;

	upg_options_init(&o);
	o.budget = budget;
	o.evict = evict;
	o.dirty = dirty;
	rt = test_runtime_opts(&o);
	upg_stats_get(rt, &st);
	cr_assert_eq(st.dirty_by_contents, dirty != UPG_DIRTY_WP_FAULT);
	return rt;
}

/*
 * Byte @i of page @page in generation @gen: differs by page, offset, gen.
 * Every input reaches the byte returned (a multiply and the high half
 * folded down), so a page of one generation and the same page of another
 * differ in all but about 1 byte in 256: a write that is lost shows.
 */
static inline uint8_t pattern(size_t page, size_t i, unsigned gen)
{
	uint64_t x = (page * 0x9E3779B97F4A7C15ULL) ^ (i * 0xBF58476D1CE4E5B9ULL) ^
		     (gen * 0xD6E8FEB86659FD93ULL);

	x ^= x >> 29;
	x *= 0x94D049BB133111EBULL;
	return (uint8_t)(x >> 56 ^ x >> 24);
}

static inline void fill_page(uint8_t *p, size_t page, size_t psize, unsigned gen)
{
	for (size_t i = 0; i < psize; i++)
		p[i] = pattern(page, i, gen);
}

/* Index of the first wrong byte, or SIZE_MAX. */
static inline size_t check_page(const uint8_t *p, size_t page, size_t psize,
				unsigned gen)
{
	for (size_t i = 0; i < psize; i++)
		if (p[i] != pattern(page, i, gen))
			return i;
	return SIZE_MAX;
}

#if defined(__SANITIZE_ADDRESS__)
/*
 * AddressSanitizer's shadow memory on x86-64: one byte per eight of the
 * address space.  Not the program's memory, and not always small: on a
 * kernel without the shared zero page (some VM guests) every shadow page
 * that an instrumented load reads is allocated, 8 MiB for a 64 MiB region
 * read once.
 */
#define ASAN_SHADOW_LO 0x00007fff8000UL
#define ASAN_SHADOW_HI 0x10007fff8000UL

/* Anonymous memory of the process outside ASan's shadow, in bytes. */
static inline size_t rss_anon(void)
{
	char line[512];
	size_t kb, total = 0;
	unsigned long lo, hi;
	bool shadow = false;
	FILE *f = fopen("/proc/self/smaps", "r");

	cr_assert(f);
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2) /* a mapping */
			shadow = lo >= ASAN_SHADOW_LO && hi <= ASAN_SHADOW_HI;
		else if (sscanf(line, "Anonymous: %zu kB", &kb) == 1 && !shadow)
			total += kb;
	}
	fclose(f);
	return total * 1024;
}
#else
/* RssAnon of this process, in bytes. */
static inline size_t rss_anon(void)
{
	char line[256];
	size_t kb = 0;
	FILE *f = fopen("/proc/self/status", "r");

	cr_assert(f);
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "RssAnon: %zu kB", &kb) == 1)
			break;
	fclose(f);
	return kb * 1024;
}
#endif

static inline struct upg_stats stats_of(struct upg_runtime *rt)
{
	struct upg_stats st;

	cr_assert_eq(upg_stats_get(rt, &st), 0);
	return st;
}

#endif
