/* SPDX-License-Identifier: MIT */
/*
 * test_workloads.c - every workload of bench/paging, small, under upager
 * with a budget a quarter of its data: the data must verify and the pager
 * must really have paged (written to swap).  Correctness only, no timing:
 * the same code is what bench/compare times.  Also runs each workload on
 * plain RAM and on a MAP_SHARED file, so a broken workload is told apart
 * from a broken pager.  The upager tests skip, with the reason, without
 * userfaultfd.
 */
#include "config.h"

#include <errno.h>
#include <string.h>

#include <criterion/criterion.h>

#include "paging.h"

#define MiB (1024UL * 1024)

/* 8 MiB of data under a 2 MiB budget: 512 frames, 2048 pages. */
#define FOOTPRINT (8 * MiB)
#define BUDGET (2 * MiB)

static void run_one(const char *name, enum pg_system kind, unsigned threads)
{
	const struct pg_workload *w = pg_workload_find(name);
	struct pg_params p = { .footprint = FOOTPRINT, .threads = threads,
			       .seed = 42, .work = 0.5 };
	struct pg_outcome out;
	struct pg_sys s;
	char err[512];
	int ret;

	cr_assert(w, "no workload %s", name);
	ret = pg_sys_open(&s, kind, BUDGET, "/var/tmp", err, sizeof(err));
	if (ret == -ENOTSUP)
		cr_skip_test("%s", err);
	cr_assert_eq(ret, 0, "pg_sys_open(%s): %s", pg_system_name(kind), err);
	ret = pg_workload_run(w, &s, &p, &out);
	cr_assert_geq(ret, 0, "%s on %s: %s", name, pg_system_name(kind),
		      strerror(-ret));
	cr_assert(out.ok, "%s on %s: %s", name, pg_system_name(kind),
		  out.error);
	cr_assert_gt(out.verified_bytes, 0);
	cr_assert_gt(out.accesses, 0);
	if (kind == PG_SYS_UPAGER)
		cr_assert_gt(out.delta.write_bytes, 0,
			     "%s: 4x the budget but nothing written to swap", name);
	pg_sys_close(&s);
}

#define WORKLOAD_TEST(id, name, threads)                                   \
	Test(upager, id) { run_one(name, PG_SYS_UPAGER, threads); }         \
	Test(ram, id) { run_one(name, PG_SYS_RAM, threads); }               \
	Test(mmapfile, id) { run_one(name, PG_SYS_MMAPFILE, threads); }

WORKLOAD_TEST(seq_read, "seq-read", 1)
WORKLOAD_TEST(seq_rmw, "seq-rmw", 1)
WORKLOAD_TEST(uniform_rand, "uniform-rand", 1)
WORKLOAD_TEST(zipf, "zipf", 1)
WORKLOAD_TEST(phase_shift, "phase-shift", 1)
WORKLOAD_TEST(strided, "strided", 1)
WORKLOAD_TEST(alloc_churn, "alloc-churn", 1)
WORKLOAD_TEST(mt_uniform, "mt-uniform", 3)

/* Every workload in the table has a test above. */
Test(workloads, all_listed)
{
	static const char *const tested[] = {
		"seq-read", "seq-rmw", "uniform-rand", "zipf", "phase-shift",
		"strided", "alloc-churn", "mt-uniform",
	};

	cr_assert_eq(pg_nworkloads, sizeof(tested) / sizeof(*tested));
	for (size_t i = 0; i < pg_nworkloads; i++)
		cr_assert_str_eq(pg_workloads[i].name, tested[i]);
}
