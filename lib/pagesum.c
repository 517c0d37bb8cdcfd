/* SPDX-License-Identifier: MIT */
/*
 * pagesum.c - dirty tracking by contents: is a page still what its swap
 * slot holds?
 *
 * A page read back from swap is clean: its slot holds its contents, so it
 * can leave RAM again with no write.  User space sees no dirty bit, so the
 * first write to such a page has to be noticed some other way.  Two ways
 * (UPAGER_DIRTY):
 *
 *   wp-fault  map it write-protected; its first write is a write-protect
 *             fault, a round trip through a handler (fault.c, with write
 *             prediction to skip it for pages that are written every time);
 *   hash      map it writable, keep a 128-bit fingerprint of the slot's
 *             contents, and at eviction compare the page with it: the same
 *             means clean.  No fault at all, and a page that was written
 *             with what it already held (a counter taken and given back, a
 *             header rewritten with the same bytes) is not written to swap
 *             either, where a dirty bit would send it.
 *
 * The fingerprint is NH, the hash at the core of UMAC (Black, Halevi,
 * Krawczyk, Krovetz and Rogaway, "UMAC: fast and secure message
 * authentication", CRYPTO 1999), over 32-bit words, twice with Toeplitz-
 * shifted keys: for any two different pages of equal length, the chance
 * over the random key that they collide is at most 2^-64.  A collision
 * would drop a write, so the key is drawn from getrandom() when the
 * runtime starts and is never derived from the data; 2^-64 per changed
 * page is far below the rate at which DRAM corrupts pages on its own.
 * Where even that is too much, UPAGER_DIRTY=wp-fault is exact.
 *
 * Cost: one multiply-add per 8 bytes and key -- 0.37 us per 4 KiB page on
 * the 2-vCPU guest of bench/results/dirty-20261202.txt, release build --
 * once when the page comes in (by the handler, after the faulting thread
 * is already on its way) and once when it leaves (by reclaim).
 */
#include "pager.h"

#include <errno.h>
#include <string.h>
#include <sys/random.h>

/* Toeplitz shift between the two NH passes, in 32-bit key words */
#define SUM_SHIFT 4

static int fill_random(void *buf, size_t len)
{
	char *p = buf;

	while (len) {
		ssize_t n = getrandom(p, len, 0);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int pagesum_init(struct upg_runtime *rt)
{
	size_t words = rt->page_size / sizeof(uint32_t);
	int ret;

	rt->sum_key_bytes = (words + SUM_SHIFT) * sizeof(uint32_t);
	rt->sum_key = upg_os_alloc(rt->sum_key_bytes);
	rt->sums_bytes = (size_t)rt->nframes * sizeof(*rt->sums);
	rt->sums = upg_os_alloc(rt->sums_bytes);
	if (!rt->sum_key || !rt->sums) {
		pagesum_destroy(rt);
		return -ENOMEM;
	}
	ret = fill_random(rt->sum_key, rt->sum_key_bytes);
	if (ret)
		pagesum_destroy(rt);
	return ret;
}

void pagesum_destroy(struct upg_runtime *rt)
{
	if (rt->sum_key)
		upg_os_free(rt->sum_key, rt->sum_key_bytes);
	if (rt->sums)
		upg_os_free(rt->sums, rt->sums_bytes);
	rt->sum_key = NULL;
	rt->sums = NULL;
}

/*
 * NH: the sum over word pairs of (m[2i] + k[2i]) * (m[2i+1] + k[2i+1]),
 * each factor mod 2^32, the sum mod 2^64; the second pass uses the key
 * SUM_SHIFT words on.  Two accumulators per pass keep the multiplier busy.
 */
void pagesum_compute(const struct upg_runtime *rt, const void *data,
		     struct upg_pagesum *out)
{
	const uint32_t *m = data;
	const uint32_t *k = rt->sum_key;
	size_t words = rt->page_size / sizeof(uint32_t);
	uint64_t a0 = 0, a1 = 0, b0 = 0, b1 = 0;

	for (size_t i = 0; i < words; i += 4) {
		uint32_t m0 = m[i], m1 = m[i + 1], m2 = m[i + 2], m3 = m[i + 3];

		a0 += (uint64_t)(uint32_t)(m0 + k[i]) * (uint32_t)(m1 + k[i + 1]);
		a1 += (uint64_t)(uint32_t)(m2 + k[i + 2]) * (uint32_t)(m3 + k[i + 3]);
		b0 += (uint64_t)(uint32_t)(m0 + k[i + SUM_SHIFT]) *
		      (uint32_t)(m1 + k[i + SUM_SHIFT + 1]);
		b1 += (uint64_t)(uint32_t)(m2 + k[i + SUM_SHIFT + 2]) *
		      (uint32_t)(m3 + k[i + SUM_SHIFT + 3]);
	}
	out->h[0] = a0 + a1;
	out->h[1] = b0 + b1;
}

void pagesum_note(struct upg_runtime *rt, uint32_t f, const void *data)
{
	pagesum_compute(rt, data, &rt->sums[f]);
	rt->frames[f].summed = 1;
}

bool pagesum_unchanged(const struct upg_runtime *rt, uint32_t f,
		       const void *data)
{
	struct upg_pagesum now;

	upg_assert(rt->frames[f].summed);
	pagesum_compute(rt, data, &now);
	return now.h[0] == rt->sums[f].h[0] && now.h[1] == rt->sums[f].h[1];
}
