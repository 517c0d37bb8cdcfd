/* SPDX-License-Identifier: MIT */
/*
 * paging_workloads.c - the access patterns of bench/paging, each checking
 * every value it reads.
 *
 * The data.  A workload's data area is F / 8 64-bit words.  Word i starts
 * as base(i), a hash of the seed and i, and every write adds STEP = 2^32:
 *
 *   word[i] = base(i) + c_i * 2^32          c_i = writes to word i so far
 *
 * so any read can be checked on the spot without a shadow copy: the low 32
 * bits must equal those of base(i).  A page lost to zero-fill, a page served
 * from the wrong slot or a neighbour's data fails that check (with
 * probability 1 - 2^-32 per word).  A lost write (a stale page: the pager
 * evicted a page and later served an older copy) keeps the low bits right,
 * so the final pass also sums every word: the sum must be
 * sum(base) + STEP * writes, where writes is counted as they happen.
 * The sequential workloads know every c_i and check exact values.
 *
 * Timing.  A run is fill (create the data: the first touch of every page,
 * and the first evictions), run (the access pattern) and verify (the
 * final check).  "seconds" is fill + run, because a program has to make its
 * data, and it is what the user waits for; the final check is the
 * benchmark's, not the workload's, and is timed apart.  Fault and swap
 * counters cover fill + run likewise.
 *
 * Sizes.  Work is stated per page of footprint, so that a run's number of
 * misses grows with F and the ratio of footprint to budget, not with a
 * constant: at B = F/4 every workload does a few faults per page.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "paging.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"

#define PAGE 4096UL
#define WORDS_PER_PAGE (PAGE / sizeof(uint64_t))
#define STEP (1ULL << 32)
#define LOW_MASK (STEP - 1)

struct pg_ctx {
	struct pg_sys *s;
	const struct pg_params *p;
	struct pg_outcome *out;
	uint64_t t_start, t_filled, t_ran;
	struct pg_counters c_start;
	atomic_bool failed;       /* a mismatch was seen: stop early */
};

/* ------------------------------------------------------------ helpers */

static inline uint64_t base_of(uint64_t seed, uint64_t i)
{
	uint64_t z = (i + 1) * 0x9e3779b97f4a7c15ULL ^ seed;

	z ^= z >> 31;
	z *= 0xbf58476d1ce4e5b9ULL;
	z ^= z >> 29;
	return z;
}

static void mark_filled(struct pg_ctx *c)
{
	c->t_filled = bench_now_ns();
}

static void mark_ran(struct pg_ctx *c)
{
	struct pg_counters now;

	c->t_ran = bench_now_ns();
	pg_sys_counters(c->s, &now);
	c->out->delta.major_faults = now.major_faults - c->c_start.major_faults;
	c->out->delta.minor_faults = now.minor_faults - c->c_start.minor_faults;
	c->out->delta.read_bytes = now.read_bytes - c->c_start.read_bytes;
	c->out->delta.write_bytes = now.write_bytes - c->c_start.write_bytes;
}

static inline bool stopped(struct pg_ctx *c)
{
	return atomic_load_explicit(&c->failed, memory_order_relaxed);
}

/* Record the first mismatch; later ones (other threads) only stop them. */
static void __attribute__((format(printf, 2, 3)))
fail(struct pg_ctx *c, const char *fmt, ...)
{
	va_list ap;

	if (atomic_exchange(&c->failed, true))
		return;
	va_start(ap, fmt);
	vsnprintf(c->out->error, sizeof(c->out->error), fmt, ap);
	va_end(ap);
}

static void fail_word(struct pg_ctx *c, const char *what,
		      const uint64_t *addr, uint64_t i, uint64_t got,
		      uint64_t want)
{
	fail(c, "%s: word %" PRIu64 " (page %" PRIu64 ", address %p) is "
	     "%#" PRIx64 ", want %#" PRIx64, what, i, i / WORDS_PER_PAGE,
	     (const void *)addr, got, want);
}

/* At least 1, rounding a scaled count. */
static uint64_t scaled(const struct pg_ctx *c, double per_page, uint64_t pages)
{
	double v = per_page * c->p->work * (double)pages;

	return v < 1 ? 1 : (uint64_t)(v + 0.5);
}

/* ------------------------------------------------------- the data area */

struct array {
	struct pg_area a;
	uint64_t *w;
	uint64_t n;           /* words */
	uint64_t pages;
	uint64_t sum_base;    /* sum of base(i) over all words */
};

static int array_map(struct pg_ctx *c, struct array *ar, bool random)
{
	int ret = pg_sys_map(c->s, c->p->footprint, &ar->a);

	if (ret < 0)
		return ret;
	if (random)
		pg_sys_hint_random(c->s, &ar->a);
	ar->w = ar->a.p;
	ar->n = c->p->footprint / sizeof(uint64_t);
	ar->pages = (ar->n + WORDS_PER_PAGE - 1) / WORDS_PER_PAGE;
	ar->sum_base = 0;
	return 0;
}

static uint64_t fill_range(struct array *ar, uint64_t seed, uint64_t from,
			   uint64_t to)
{
	uint64_t sum = 0;

	for (uint64_t i = from; i < to; i++) {
		uint64_t b = base_of(seed, i);

		ar->w[i] = b;
		sum += b;
	}
	return sum;
}

/* Every word: low bits right, and the sum says no write was lost. */
static void array_verify_sum(struct pg_ctx *c, struct array *ar,
			     uint64_t writes)
{
	uint64_t seed = c->p->seed, sum = 0, want;

	for (uint64_t i = 0; i < ar->n; i++) {
		uint64_t v = ar->w[i], b = base_of(seed, i);

		if (((v - b) & LOW_MASK) != 0) {
			fail_word(c, "final check", &ar->w[i], i, v, b);
			return;
		}
		sum += v;
	}
	want = ar->sum_base + writes * STEP;
	if (sum != want)
		fail(c, "final check: the words sum to %#" PRIx64 ", want %#"
		     PRIx64 ": %" PRId64 " writes lost (a stale page)", sum,
		     want, (int64_t)(want - sum) / (int64_t)STEP);
	c->out->verified_bytes += ar->n * sizeof(uint64_t);
}

/* --------------------------------------------------- sequential scans */

/*
 * seq-read: fill, then 3 passes reading every word in order.  The pure
 * streaming case: every page is needed once per pass, and nothing is dirty
 * after the fill, so eviction should cost no I/O (the swap copy is valid).
 */
static int wl_seq_read(struct pg_ctx *c)
{
	struct array ar;
	uint64_t passes = scaled(c, 3, 1), seed = c->p->seed;
	int ret = array_map(c, &ar, false);

	if (ret < 0)
		return ret;
	ar.sum_base = fill_range(&ar, seed, 0, ar.n);
	mark_filled(c);
	for (uint64_t pass = 0; pass < passes && !stopped(c); pass++) {
		for (uint64_t i = 0; i < ar.n; i++) {
			uint64_t v = ar.w[i], b = base_of(seed, i);

			if (v != b) {
				fail_word(c, "seq-read", &ar.w[i], i, v, b);
				break;
			}
		}
		c->out->verified_bytes += ar.n * sizeof(uint64_t);
	}
	c->out->accesses = passes * ar.n;
	mark_ran(c);
	pg_sys_unmap(c->s, &ar.a);
	return 0;
}

/*
 * seq-rmw: fill, then 3 passes adding STEP to every word in order.  Every
 * page is dirty again when it leaves: the sequential write-back case.
 */
static int wl_seq_rmw(struct pg_ctx *c)
{
	struct array ar;
	uint64_t passes = scaled(c, 3, 1), seed = c->p->seed;
	int ret = array_map(c, &ar, false);

	if (ret < 0)
		return ret;
	ar.sum_base = fill_range(&ar, seed, 0, ar.n);
	mark_filled(c);
	for (uint64_t pass = 0; pass < passes && !stopped(c); pass++) {
		for (uint64_t i = 0; i < ar.n; i++) {
			uint64_t v = ar.w[i], want = base_of(seed, i) + pass * STEP;

			if (v != want) {
				fail_word(c, "seq-rmw", &ar.w[i], i, v, want);
				break;
			}
			ar.w[i] = v + STEP;
		}
	}
	c->out->accesses = passes * ar.n;
	mark_ran(c);
	for (uint64_t i = 0; i < ar.n && !stopped(c); i++) {
		uint64_t want = base_of(seed, i) + passes * STEP;

		if (ar.w[i] != want)
			fail_word(c, "final check", &ar.w[i], i, ar.w[i], want);
	}
	c->out->verified_bytes += ar.n * sizeof(uint64_t);
	pg_sys_unmap(c->s, &ar.a);
	return 0;
}

/* ------------------------------------------- random access, 1..N threads */

/*
 * A random access reads a word, checks its low bits and, every other time,
 * writes it back plus STEP: half the touched pages leave dirty.
 */
static inline bool touch(struct pg_ctx *c, struct array *ar, uint64_t i,
			 bool write, const char *what)
{
	uint64_t v = ar->w[i], b = base_of(c->p->seed, i);

	if (((v - b) & LOW_MASK) != 0) {
		fail_word(c, what, &ar->w[i], i, v, b);
		return false;
	}
	if (write)
		ar->w[i] = v + STEP;
	return true;
}

struct uni_thread {
	pthread_t tid;
	struct pg_ctx *c;
	struct array *ar;
	unsigned t, nthreads;
	uint64_t from, to;    /* fill: words [from, to) */
	uint64_t ops;
	uint64_t sum, writes; /* results */
};

static void *uni_fill(void *arg)
{
	struct uni_thread *u = arg;

	u->sum = fill_range(u->ar, u->c->p->seed, u->from, u->to);
	return NULL;
}

/*
 * Thread t reads anywhere but writes only words with i % nthreads == t (the
 * word of the same group as the one it read), so that no increment is lost
 * to a race between threads and the sum check stays exact, while all threads
 * still share every page.
 */
static void *uni_run(void *arg)
{
	struct uni_thread *u = arg;
	struct pg_ctx *c = u->c;
	struct array *ar = u->ar;
	uint64_t rng = c->p->seed ^ (0x5851f42d4c957f2dULL * (u->t + 1));

	for (uint64_t k = 0; k < u->ops; k++) {
		uint64_t i = bench_rand_below(&rng, ar->n);

		if (!touch(c, ar, i, false, "uniform-rand"))
			break;
		if (k & 1) {
			uint64_t j = i - i % u->nthreads + u->t;

			if (j < ar->n) {
				touch(c, ar, j, true, "uniform-rand");
				u->writes++;
			}
		}
		if ((k & 1023) == 0 && stopped(c))
			break;
	}
	return NULL;
}

static int run_uniform(struct pg_ctx *c, unsigned nthreads)
{
	struct array ar;
	struct uni_thread *u;
	uint64_t ops, writes = 0;
	int ret = array_map(c, &ar, true);

	if (ret < 0)
		return ret;
	u = calloc(nthreads, sizeof(*u));
	if (!u) {
		pg_sys_unmap(c->s, &ar.a);
		return -ENOMEM;
	}
	ops = scaled(c, 2, ar.pages);
	for (unsigned t = 0; t < nthreads; t++) {
		u[t] = (struct uni_thread){ .c = c, .ar = &ar, .t = t,
			.nthreads = nthreads,
			.from = ar.n * t / nthreads,
			.to = ar.n * (t + 1) / nthreads,
			.ops = ops / nthreads + (t < ops % nthreads) };
	}
	/* One thread runs inline: uniform-rand is mt-uniform with N = 1. */
	for (unsigned t = 1; t < nthreads; t++)
		pthread_create(&u[t].tid, NULL, uni_fill, &u[t]);
	uni_fill(&u[0]);
	for (unsigned t = 1; t < nthreads; t++)
		pthread_join(u[t].tid, NULL);
	for (unsigned t = 0; t < nthreads; t++)
		ar.sum_base += u[t].sum;
	mark_filled(c);
	for (unsigned t = 1; t < nthreads; t++)
		pthread_create(&u[t].tid, NULL, uni_run, &u[t]);
	uni_run(&u[0]);
	for (unsigned t = 1; t < nthreads; t++)
		pthread_join(u[t].tid, NULL);
	for (unsigned t = 0; t < nthreads; t++)
		writes += u[t].writes;
	c->out->accesses = ops;
	mark_ran(c);
	if (!stopped(c))
		array_verify_sum(c, &ar, writes);
	pg_sys_unmap(c->s, &ar.a);
	free(u);
	return 0;
}

/* uniform-rand: 2 accesses per page of footprint, uniformly at random. */
static int wl_uniform(struct pg_ctx *c)
{
	return run_uniform(c, 1);
}

/* mt-uniform: the same accesses shared among --threads threads. */
static int wl_mt_uniform(struct pg_ctx *c)
{
	return run_uniform(c, c->p->threads ? c->p->threads : 2);
}

/* ----------------------------------------------------------------- zipf */

/*
 * Zipf-distributed page ranks by the inverse-CDF approximation of Gray et
 * al., "Quickly generating billion-record synthetic databases" (SIGMOD
 * 1994): one pow() per sample after an O(n) sum.  Rank r is the r-th most
 * popular page; ranks are spread over the area by r -> r * A mod pages (A
 * a prime above any page count we use, so the map is a bijection): hot
 * pages are scattered, as in a real heap, not one sequential run that
 * readahead would serve for free.
 */
struct zipf {
	uint64_t n;
	double theta, alpha, zetan, eta, half_pow;
};

static void zipf_init(struct zipf *z, uint64_t n, double theta)
{
	double zeta2 = 1 + pow(0.5, theta);

	z->n = n;
	z->theta = theta;
	z->zetan = 0;
	for (uint64_t i = 1; i <= n; i++)
		z->zetan += 1 / pow((double)i, theta);
	z->alpha = 1 / (1 - theta);
	z->eta = (1 - pow(2.0 / (double)n, 1 - theta)) / (1 - zeta2 / z->zetan);
	z->half_pow = 1 + pow(0.5, theta);
}

static uint64_t zipf_next(const struct zipf *z, uint64_t *rng)
{
	double u = (double)(bench_rand(rng) >> 11) * 0x1.0p-53;
	double uz = u * z->zetan;
	uint64_t r;

	if (uz < 1)
		return 0;
	if (uz < z->half_pow)
		return 1 % z->n;
	r = (uint64_t)((double)z->n * pow(z->eta * u - z->eta + 1, z->alpha));
	return r < z->n ? r : z->n - 1;
}

#define ZIPF_SPREAD 4294967291ULL /* the largest prime below 2^32 */

/* zipf: 8 accesses per page, page rank ~ Zipf(0.99), word uniform. */
static int wl_zipf(struct pg_ctx *c)
{
	struct array ar;
	struct zipf z;
	uint64_t ops, writes = 0, rng = c->p->seed ^ 0x2545f4914f6cdd1dULL;
	int ret = array_map(c, &ar, true);

	if (ret < 0)
		return ret;
	ar.sum_base = fill_range(&ar, c->p->seed, 0, ar.n);
	zipf_init(&z, ar.pages, 0.99);
	mark_filled(c);
	ops = scaled(c, 8, ar.pages);
	for (uint64_t k = 0; k < ops; k++) {
		uint64_t page = zipf_next(&z, &rng) * ZIPF_SPREAD % ar.pages;
		uint64_t i = page * WORDS_PER_PAGE +
			     bench_rand_below(&rng, WORDS_PER_PAGE);

		if (i >= ar.n)
			i = ar.n - 1;
		if (!touch(c, &ar, i, k & 1, "zipf"))
			break;
		writes += k & 1;
	}
	c->out->accesses = ops;
	mark_ran(c);
	if (!stopped(c))
		array_verify_sum(c, &ar, writes);
	pg_sys_unmap(c->s, &ar.a);
	return 0;
}

/* --------------------------------------------------------- phase shift */

/*
 * phase-shift: 8 phases; each picks a window of F/8 at a random place and
 * makes 8 random accesses per window page inside it.  At B = F/4 a window
 * fits twice in the budget: a good policy faults each window in once and
 * then runs at memory speed, and must let the old window go.
 */
static int wl_phase_shift(struct pg_ctx *c)
{
	struct array ar;
	uint64_t writes = 0, total = 0, rng = c->p->seed ^ 0x94d049bb133111ebULL;
	uint64_t win_pages, win_words, phases = 8;
	int ret = array_map(c, &ar, true);

	if (ret < 0)
		return ret;
	ar.sum_base = fill_range(&ar, c->p->seed, 0, ar.n);
	mark_filled(c);
	win_pages = ar.pages / 8 ? ar.pages / 8 : 1;
	win_words = win_pages * WORDS_PER_PAGE;
	for (uint64_t ph = 0; ph < phases && !stopped(c); ph++) {
		uint64_t first = bench_rand_below(&rng, ar.pages - win_pages + 1);
		uint64_t lo = first * WORDS_PER_PAGE;
		uint64_t ops = scaled(c, 8, win_pages);

		for (uint64_t k = 0; k < ops; k++) {
			uint64_t i = lo + bench_rand_below(&rng, win_words);

			if (i >= ar.n)
				i = ar.n - 1;
			if (!touch(c, &ar, i, k & 1, "phase-shift"))
				break;
			writes += k & 1;
		}
		total += ops;
	}
	c->out->accesses = total;
	mark_ran(c);
	if (!stopped(c))
		array_verify_sum(c, &ar, writes);
	pg_sys_unmap(c->s, &ar.a);
	return 0;
}

/* -------------------------------------------------------------- strided */

/*
 * strided: four streams, interleaved access by access, each walking the
 * whole area with its own stride in pages (1, 3, 8, 21), like a loop over
 * the columns of several matrices.  Three streams read; the last one also
 * writes.  Each access is to a new page, so without prefetch every access
 * misses; the fault addresses in order interleave four strides, which a
 * prefetcher has to see through.  One access per page of footprint.
 */
static const uint64_t strides[] = { 1, 3, 8, 21 };
#define NSTREAMS (sizeof(strides) / sizeof(*strides))

static int wl_strided(struct pg_ctx *c)
{
	struct array ar;
	uint64_t pos[NSTREAMS], ops, writes = 0;
	int ret = array_map(c, &ar, true);

	if (ret < 0)
		return ret;
	ar.sum_base = fill_range(&ar, c->p->seed, 0, ar.n);
	mark_filled(c);
	for (size_t s = 0; s < NSTREAMS; s++)
		pos[s] = ar.pages * s / NSTREAMS;
	ops = scaled(c, 1, ar.pages);
	for (uint64_t k = 0; k < ops; k++) {
		size_t s = k % NSTREAMS;
		bool write = s == NSTREAMS - 1;
		/* A different word of the page each visit. */
		uint64_t i = pos[s] * WORDS_PER_PAGE +
			     (k / NSTREAMS * 61 + s * 128) % WORDS_PER_PAGE;

		if (i >= ar.n)
			i = ar.n - 1;
		if (!touch(c, &ar, i, write, "strided"))
			break;
		writes += write;
		pos[s] = (pos[s] + strides[s]) % ar.pages;
	}
	c->out->accesses = ops;
	mark_ran(c);
	if (!stopped(c))
		array_verify_sum(c, &ar, writes);
	pg_sys_unmap(c->s, &ar.a);
	return 0;
}

/* --------------------------------------------------------- alloc churn */

/*
 * alloc-churn: a heap of large objects (64 KiB to 1 MiB, not page
 * multiples) with F/2 bytes live, through which 3F bytes are allocated:
 * each new object is written whole; once the live bytes pass F/2 a random
 * object dies (its first, middle and last words are checked, the rest is
 * never read again); every fourth step a random live object is read whole
 * and checked.  Freed memory is garbage: a pager that writes it to swap, or
 * reads it back before the allocator reuses it, pays for nothing.
 */
struct obj {
	struct pg_area a;
	size_t size;          /* bytes asked for (a.len may be rounded up) */
	uint64_t seed;
};

static size_t obj_words(const struct obj *o)
{
	return o->size / sizeof(uint64_t);
}

static int obj_new(struct pg_ctx *c, struct obj *o, uint64_t *rng,
		   uint64_t id)
{
	size_t len = (16 + bench_rand_below(rng, 241)) * PAGE -
		     bench_rand_below(rng, 128) * sizeof(uint64_t);
	uint64_t *w;
	int ret = pg_sys_obj_alloc(c->s, len, &o->a);

	if (ret < 0)
		return ret;
	o->size = len;
	o->seed = c->p->seed ^ (id * 0xd1b54a32d192ed03ULL);
	w = o->a.p;
	for (size_t j = 0; j < len / sizeof(uint64_t); j++)
		w[j] = base_of(o->seed, j);
	return 0;
}

static bool obj_check(struct pg_ctx *c, const struct obj *o, size_t j)
{
	const uint64_t *w = o->a.p;
	uint64_t want = base_of(o->seed, j);

	if (w[j] != want) {
		fail(c, "alloc-churn: object %p (%zu bytes), word %zu is %#"
		     PRIx64 ", want %#" PRIx64, o->a.p, o->size, j, w[j], want);
		return false;
	}
	return true;
}

static bool obj_check_all(struct pg_ctx *c, const struct obj *o)
{
	for (size_t j = 0; j < obj_words(o); j++)
		if (!obj_check(c, o, j))
			return false;
	c->out->verified_bytes += obj_words(o) * sizeof(uint64_t);
	return true;
}

static int wl_alloc_churn(struct pg_ctx *c)
{
	uint64_t live_target = c->p->footprint / 2, live = 0, allocated = 0;
	uint64_t total = (uint64_t)(3.0 * c->p->work * (double)c->p->footprint);
	uint64_t rng = c->p->seed ^ 0xa0761d6478bd642fULL, id = 0, steps = 0;
	size_t max = live_target / (15 * PAGE) + 2, n = 0;
	struct obj *objs = calloc(max, sizeof(*objs));
	int ret = 0;

	if (!objs)
		return -ENOMEM;
	/* Fill: the live heap. */
	while (live < live_target && n < max) {
		ret = obj_new(c, &objs[n], &rng, id++);
		if (ret < 0)
			goto out;
		live += objs[n].size;
		allocated += objs[n].size;
		n++;
	}
	mark_filled(c);
	while (allocated < total && !stopped(c)) {
		if (live >= live_target || n == max) {
			size_t k = bench_rand_below(&rng, n);
			struct obj *o = &objs[k];

			if (!obj_check(c, o, 0) ||
			    !obj_check(c, o, obj_words(o) / 2) ||
			    !obj_check(c, o, obj_words(o) - 1))
				break;
			live -= o->size;
			pg_sys_obj_free(c->s, &o->a);
			objs[k] = objs[--n];
			continue;
		}
		ret = obj_new(c, &objs[n], &rng, id++);
		if (ret < 0)
			goto out;
		live += objs[n].size;
		allocated += objs[n].size;
		n++;
		if ((++steps & 3) == 0 &&
		    !obj_check_all(c, &objs[bench_rand_below(&rng, n)]))
			break;
	}
	c->out->accesses = id;
	mark_ran(c);
	for (size_t k = 0; k < n && !stopped(c); k++)
		obj_check_all(c, &objs[k]);
out:
	for (size_t k = 0; k < n; k++)
		pg_sys_obj_free(c->s, &objs[k].a);
	free(objs);
	return ret;
}

/* ---------------------------------------------------------------- table */

const struct pg_workload pg_workloads[] = {
	{ "seq-read", "3 sequential read passes", wl_seq_read },
	{ "seq-rmw", "3 sequential read-modify-write passes", wl_seq_rmw },
	{ "uniform-rand", "8-byte reads and writes, uniformly random", wl_uniform },
	{ "zipf", "8-byte reads and writes, pages Zipf(0.99)", wl_zipf },
	{ "phase-shift", "random access in a window of F/8 that moves 8 times",
	  wl_phase_shift },
	{ "strided", "4 interleaved streams, strides 1, 3, 8, 21 pages",
	  wl_strided },
	{ "alloc-churn", "large objects allocated, used and freed; F/2 live",
	  wl_alloc_churn },
	{ "mt-uniform", "uniform-rand shared by --threads threads",
	  wl_mt_uniform },
};

const size_t pg_nworkloads = sizeof(pg_workloads) / sizeof(*pg_workloads);

const struct pg_workload *pg_workload_find(const char *name)
{
	for (size_t i = 0; i < pg_nworkloads; i++)
		if (strcmp(pg_workloads[i].name, name) == 0)
			return &pg_workloads[i];
	return NULL;
}

int pg_workload_run(const struct pg_workload *w, struct pg_sys *s,
		    const struct pg_params *p, struct pg_outcome *out)
{
	struct pg_ctx c = { .s = s, .p = p, .out = out };
	uint64_t t_end;
	int ret;

	memset(out, 0, sizeof(*out));
	atomic_init(&c.failed, false);
	pg_sys_counters(s, &c.c_start);
	c.t_start = bench_now_ns();
	c.t_filled = c.t_ran = 0;
	ret = w->run(&c);
	t_end = bench_now_ns();
	if (!c.t_filled)
		c.t_filled = t_end;
	if (!c.t_ran)
		c.t_ran = t_end;
	out->fill_seconds = (double)(c.t_filled - c.t_start) / 1e9;
	out->run_seconds = (double)(c.t_ran - c.t_filled) / 1e9;
	out->verify_seconds = (double)(t_end - c.t_ran) / 1e9;
	out->ok = ret == 0 && !atomic_load(&c.failed);
	if (ret < 0)
		return ret;
	return out->ok ? 0 : 1;
}
