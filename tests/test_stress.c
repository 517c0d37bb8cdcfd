/* SPDX-License-Identifier: MIT */
/*
 * test_stress.c - data integrity under concurrency and memory pressure.
 *
 * Several threads do random reads and writes of random lengths over a
 * region eight times the budget.  The bytes are dealt out to the threads in
 * 64-byte stripes, so every page is touched by every thread (faults race on
 * the same pages) while each byte has one writer and a shadow copy that is
 * exact.  Every byte read is compared with the shadow.  The run is long
 * enough that every page goes through swap several times; the test asserts
 * that it did.  It runs once per eviction mechanism.
 */
#define _GNU_SOURCE
#include "testutil.h"

#include <pthread.h>
#include <stdlib.h>

#define PS 4096UL
#define STRIPE 64
#define NTHREADS 3
#define BUDGET (8 * MiB)
#define REGION (8 * BUDGET)
#define CYCLES 3 /* each page written to swap at least this often, on average */

struct worker {
	uint8_t *region;
	uint8_t *shadow;
	unsigned id;
	unsigned seed;
	uint64_t ops, bytes_checked;
	volatile uint64_t *stop_after_written;
	struct upg_runtime *rt;
	char error[256];
};

static bool owns(const struct worker *w, size_t off)
{
	return (off / STRIPE) % NTHREADS == w->id;
}

static void *work(void *arg)
{
	struct worker *w = arg;
	const size_t npages = REGION / PS;

	for (;;) {
		size_t page = (size_t)rand_r(&w->seed) % npages;
		size_t start = (size_t)rand_r(&w->seed) % PS;
		size_t len = 1 + (size_t)rand_r(&w->seed) % (2 * PS);
		bool write = rand_r(&w->seed) & 1;
		size_t off = page * PS + start;

		if (off + len > REGION)
			len = REGION - off;
		for (size_t o = off; o < off + len; o++) {
			if (!owns(w, o)) {
				o += STRIPE - 1 - o % STRIPE;
				continue;
			}
			if (write) {
				uint8_t v = (uint8_t)rand_r(&w->seed);

				w->region[o] = v;
				w->shadow[o] = v;
			} else {
				if (w->region[o] != w->shadow[o]) {
					snprintf(w->error, sizeof(w->error),
						 "thread %u: byte %zu is %#x, shadow %#x",
						 w->id, o, w->region[o], w->shadow[o]);
					return NULL;
				}
				w->bytes_checked++;
			}
		}
		if (++w->ops % 256 == 0) {
			struct upg_stats st;

			upg_stats_get(w->rt, &st);
			if (st.pages_written >= *w->stop_after_written)
				break;
		}
	}
	return NULL;
}

static void stress(enum upg_evict_mode mode, unsigned handlers)
{
	struct upg_options o;
	struct upg_runtime *rt;
	struct worker w[NTHREADS];
	pthread_t t[NTHREADS];
	volatile uint64_t target = CYCLES * (REGION / PS);
	uint64_t checked = 0;
	struct upg_stats st;
	uint8_t *p, *shadow;

	upg_options_init(&o);
	o.budget = BUDGET;
	o.evict = mode;
	o.handler_threads = handlers;
	rt = test_runtime_opts(&o);
	cr_assert_eq(upg_region_reserve(rt, REGION, (void **)&p), 0);
	shadow = calloc(1, REGION);
	cr_assert(shadow);
	for (unsigned i = 0; i < NTHREADS; i++) {
		w[i] = (struct worker){ .region = p, .shadow = shadow, .id = i,
					.seed = 12345 + i, .rt = rt,
					.stop_after_written = &target };
		cr_assert_eq(pthread_create(&t[i], NULL, work, &w[i]), 0);
	}
	for (unsigned i = 0; i < NTHREADS; i++)
		pthread_join(t[i], NULL);
	for (unsigned i = 0; i < NTHREADS; i++) {
		cr_assert_eq(w[i].error[0], 0, "%s", w[i].error);
		checked += w[i].bytes_checked;
	}
	/* and a last full sweep of every byte */
	for (size_t i = 0; i < REGION; i++)
		cr_assert_eq(p[i], shadow[i], "byte %zu is %#x, shadow %#x", i, p[i],
			     shadow[i]);
	checked += REGION;
	st = stats_of(rt);
	cr_log_info("stress(%s, %u handlers): %lu bytes verified, %lu pages "
		    "written (%.1f per page), %lu read, %lu soft faults",
		    st.evict_move ? "move" : "copy", handlers,
		    (unsigned long)checked, (unsigned long)st.pages_written,
		    (double)st.pages_written / (double)(REGION / PS),
		    (unsigned long)st.pages_read,
		    (unsigned long)st.faults[UPG_FAULT_SOFT]);
	printf("# stress %s handlers=%u bytes_verified=%lu pages_written=%lu "
	       "pages_read=%lu cycles_per_page=%.2f\n",
	       st.evict_move ? "move" : "copy", handlers,
	       (unsigned long)checked, (unsigned long)st.pages_written,
	       (unsigned long)st.pages_read,
	       (double)st.pages_written / (double)(REGION / PS));
	cr_assert_geq(st.pages_written, target);
	cr_assert_geq(st.pages_read, REGION / PS);
	cr_assert_eq(st.io_errors, 0);
	cr_assert_leq(st.peak_resident_pages, st.budget_pages);
	free(shadow);
	upg_region_release(rt, p);
	upg_runtime_destroy(rt);
}

Test(stress, random_rw_move, .timeout = 600) { stress(UPG_EVICT_MOVE, 1); }
Test(stress, random_rw_copy, .timeout = 600) { stress(UPG_EVICT_COPY, 1); }
Test(stress, random_rw_two_handlers, .timeout = 600) { stress(UPG_EVICT_AUTO, 2); }
