/* SPDX-License-Identifier: MIT */
/*
 * test_pagesum.c - the fingerprints of dirty tracking by contents
 * (lib/pagesum.c): equal pages agree, and the changes a program makes --
 * one bit, a word, two words that a weaker hash would let cancel out --
 * all change the fingerprint.  A change it missed would be a lost write.
 */
#include "pager.h"

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

TestSuite(pagesum);

static struct upg_runtime *sum_runtime(size_t page_size)
{
	struct upg_runtime *rt = calloc(1, sizeof(*rt));

	cr_assert_not_null(rt);
	rt->page_size = page_size;
	rt->nframes = 16;
	cr_assert_eq(pagesum_init(rt), 0);
	return rt;
}

static void sum_runtime_free(struct upg_runtime *rt)
{
	pagesum_destroy(rt);
	free(rt);
}

static uint64_t *random_page(size_t page_size, uint64_t seed)
{
	uint64_t *p = aligned_alloc(64, page_size);

	cr_assert_not_null(p);
	for (size_t i = 0; i < page_size / 8; i++) {
		seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
		p[i] = seed ^ (seed >> 29);
	}
	return p;
}

static bool same(const struct upg_pagesum *a, const struct upg_pagesum *b)
{
	return a->h[0] == b->h[0] && a->h[1] == b->h[1];
}

/* @page was changed (by @what, at words @a and @b): its sum must differ. */
static void expect_changed(struct upg_runtime *rt, uint64_t *page,
			   const struct upg_pagesum *orig, const char *what,
			   size_t a, size_t b)
{
	struct upg_pagesum now;

	pagesum_compute(rt, page, &now);
	cr_expect(!same(&now, orig), "%s (words %zu, %zu) left the sum as it was",
		  what, a, b);
}

/* Flip bit @bit of word @w: the sum must change.  Then flip it back. */
static void expect_flip_changes(struct upg_runtime *rt, uint64_t *page,
				const struct upg_pagesum *orig, size_t w,
				unsigned bit)
{
	page[w] ^= (uint64_t)1 << bit;
	expect_changed(rt, page, orig, "a bit flip", w, bit);
	page[w] ^= (uint64_t)1 << bit;
}

Test(pagesum, equal_pages_agree)
{
	struct upg_runtime *rt = sum_runtime(4096);
	uint64_t *p = random_page(4096, 1), *q = random_page(4096, 1);
	struct upg_pagesum a, b;

	pagesum_compute(rt, p, &a);
	pagesum_compute(rt, q, &b);
	cr_assert(same(&a, &b));
	/* and a sum is the same when computed again */
	pagesum_compute(rt, p, &b);
	cr_assert(same(&a, &b));
	free(p);
	free(q);
	sum_runtime_free(rt);
}

/* Every single-bit flip, at every position of the page. */
Test(pagesum, every_bit_flip_changes_it)
{
	struct upg_runtime *rt = sum_runtime(4096);
	uint64_t *p = random_page(4096, 2);
	struct upg_pagesum orig;

	pagesum_compute(rt, p, &orig);
	for (size_t w = 0; w < 4096 / 8; w++)
		for (unsigned bit = 0; bit < 64; bit++)
			expect_flip_changes(rt, p, &orig, w, bit);
	free(p);
	sum_runtime_free(rt);
}

/*
 * Two-word changes that cancel out in multiply-xor hashes with several
 * lanes: the top bit of two words one lane stride apart, two words
 * swapped, a value moved from one word to another, a word and its pair
 * partner both negated.
 */
Test(pagesum, two_word_changes_change_it)
{
	struct upg_runtime *rt = sum_runtime(4096);
	uint64_t *p = random_page(4096, 3);
	const size_t n = 4096 / 8;
	struct upg_pagesum orig;

	pagesum_compute(rt, p, &orig);
	for (size_t a = 0; a < n; a++) {
		for (size_t d = 1; d <= 8 && a + d < n; d++) {
			size_t b = a + d;
			uint64_t x = p[a], y = p[b];

			if (x == y)
				continue;
			p[a] ^= 1ULL << 63;
			p[b] ^= 1ULL << 63;
			expect_changed(rt, p, &orig, "two top bits", a, b);
			p[a] = y;
			p[b] = x;
			expect_changed(rt, p, &orig, "a swap", a, b);
			p[a] = x + 12345;
			p[b] = y - 12345;
			expect_changed(rt, p, &orig, "a move of 12345", a, b);
			p[a] = ~x;
			p[b] = ~y;
			expect_changed(rt, p, &orig, "two complements", a, b);
			p[a] = x;
			p[b] = y;
		}
	}
	free(p);
	sum_runtime_free(rt);
}

/* A page of zeroes and a page of ones, one word changed anywhere. */
Test(pagesum, uniform_pages)
{
	struct upg_runtime *rt = sum_runtime(4096);
	uint64_t *p = aligned_alloc(64, 4096);
	struct upg_pagesum orig;

	for (int fillc = 0; fillc < 2; fillc++) {
		memset(p, fillc ? 0xff : 0, 4096);
		pagesum_compute(rt, p, &orig);
		for (size_t w = 0; w < 4096 / 8; w++) {
			uint64_t old = p[w];

			p[w] = old ^ 0x0101010101010101ULL;
			expect_changed(rt, p, &orig, "a word", w, w);
			p[w] = old;
		}
	}
	free(p);
	sum_runtime_free(rt);
}

/* The key is drawn at random: two runtimes disagree on the same page. */
Test(pagesum, key_is_random)
{
	struct upg_runtime *a = sum_runtime(4096), *b = sum_runtime(4096);
	uint64_t *p = random_page(4096, 4);
	struct upg_pagesum sa, sb;

	pagesum_compute(a, p, &sa);
	pagesum_compute(b, p, &sb);
	cr_assert(!same(&sa, &sb), "two runtimes drew the same key");
	free(p);
	sum_runtime_free(a);
	sum_runtime_free(b);
}

/* Pager pages larger than a system page are summed whole. */
Test(pagesum, large_pages)
{
	struct upg_runtime *rt = sum_runtime(65536);
	uint64_t *p = random_page(65536, 5);
	struct upg_pagesum orig;

	pagesum_compute(rt, p, &orig);
	for (size_t w = 0; w < 65536 / 8; w += 97)
		expect_flip_changes(rt, p, &orig, w, (unsigned)(w % 64));
	p[65536 / 8 - 1] += 1;
	expect_changed(rt, p, &orig, "the last word", 65536 / 8 - 1, 0);
	free(p);
	sum_runtime_free(rt);
}
