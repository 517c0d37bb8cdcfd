/* SPDX-License-Identifier: MIT */
/*
 * paging.c - one workload on one memory system, timed and verified:
 *
 *   bench/paging --system upager|ram|mmapfile --workload NAME
 *                --footprint F [--budget B] [--threads N] [--seed S]
 *                [--file DIR] [--work X] [--stats] [--file-advice hint|none]
 *
 * The program does not limit itself: under upager the budget is upager's;
 * for "ram" and "mmapfile" the limit is the memory cgroup bench/compare
 * runs it in (without one, "ram" is the all-in-RAM floor).  So the kernel's
 * swap is measured on exactly the binary and code path that the floor is.
 *
 * It prints one machine-readable line (bench/README.md):
 *
 *   result bench=paging name=<workload> workload=... system=... seconds=...
 *          major_faults=... swap_read_bytes=... swap_write_bytes=...
 *          verified_bytes=... ok=1 ...
 *
 * and exits 0; 1 when the data did not verify (the first mismatch is on
 * stderr) or memory could not be had; 2 for bad arguments; 77 when upager
 * cannot page (no userfaultfd), because its figure would be plain RAM.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "bench_util.h"
#include "paging.h"
#include "upager.h"

#define BENCH "paging"

enum {
	EXIT_ERROR = 1,
	EXIT_BADARGS = 2,
	EXIT_SKIP = 77,
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: paging --system upager|ram|mmapfile --workload NAME\n"
		"              --footprint SIZE [--budget SIZE] [--threads N]\n"
		"              [--seed N] [--file DIR] [--work X] [--stats]\n"
		"              [--file-advice hint|none]\n"
		"  --footprint SIZE  data size, e.g. 256M or 1G\n"
		"  --budget SIZE     upager's budget (default footprint/4); the\n"
		"                    kernel systems take theirs from a cgroup\n"
		"  --threads N       threads of mt-uniform (default 2)\n"
		"  --seed N          data and access order (default 1)\n"
		"  --file DIR        where mmapfile's data file lives (/var/tmp)\n"
		"  --work X          scale the number of accesses (default 1)\n"
		"  --stats           print upager's statistics on stderr\n"
		"  --file-advice hint|none  mmapfile: MADV_RANDOM on the random\n"
		"                    workloads (hint, default) or kernel defaults\n"
		"workloads:\n");
	for (size_t i = 0; i < pg_nworkloads; i++)
		fprintf(f, "  %-13s %s\n", pg_workloads[i].name,
			pg_workloads[i].what);
}

static __attribute__((noreturn, format(printf, 1, 2)))
void badarg(const char *fmt, ...)
{
	va_list ap;

	fputs("paging: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs(" (see --help)\n", stderr);
	exit(EXIT_BADARGS);
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "system", required_argument, NULL, 's' },
		{ "workload", required_argument, NULL, 'w' },
		{ "footprint", required_argument, NULL, 'f' },
		{ "budget", required_argument, NULL, 'b' },
		{ "threads", required_argument, NULL, 't' },
		{ "seed", required_argument, NULL, 'S' },
		{ "file", required_argument, NULL, 'F' },
		{ "work", required_argument, NULL, 'W' },
		{ "stats", no_argument, NULL, 'x' },
		{ "file-advice", required_argument, NULL, 'A' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const struct pg_workload *w = NULL;
	enum pg_system sys = PG_SYS_UPAGER;
	bool have_sys = false, stats = false, file_advice = true;
	uint64_t footprint = 0, budget = 0, threads = 2, seed = 1;
	const char *dir = "/var/tmp";
	struct pg_params p;
	struct pg_outcome out;
	struct pg_sys s;
	struct rusage ru;
	struct utsname un;
	char err[512], *end;
	double work = 1;
	int c, ret;

	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (c) {
		case 's':
			if (pg_system_parse(optarg, &sys) < 0)
				badarg("--system %s: want upager, ram or mmapfile",
				       optarg);
			have_sys = true;
			break;
		case 'w':
			w = pg_workload_find(optarg);
			if (!w)
				badarg("--workload %s: unknown", optarg);
			break;
		case 'f':
			if (bench_parse_size(optarg, &footprint) < 0 ||
			    footprint < (1 << 20))
				badarg("--footprint %s: want a size of at least 1M, e.g. 256M",
				       optarg);
			break;
		case 'b':
			if (bench_parse_size(optarg, &budget) < 0 || budget == 0)
				badarg("--budget %s: want a size, e.g. 64M", optarg);
			break;
		case 't':
			if (bench_parse_u64(optarg, 1, 256, &threads) < 0)
				badarg("--threads %s: want 1..256", optarg);
			break;
		case 'S':
			if (bench_parse_u64(optarg, 0, UINT64_MAX, &seed) < 0)
				badarg("--seed %s: want a number", optarg);
			break;
		case 'F':
			dir = optarg;
			break;
		case 'W':
			work = strtod(optarg, &end);
			if (*end || !(work > 0 && work <= 1000))
				badarg("--work %s: want a number in (0, 1000], e.g. 0.5",
				       optarg);
			break;
		case 'x':
			stats = true;
			break;
		case 'A':
			if (strcmp(optarg, "hint") && strcmp(optarg, "none"))
				badarg("--file-advice %s: want hint or none", optarg);
			file_advice = strcmp(optarg, "hint") == 0;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return EXIT_BADARGS;
		}
	}
	if (optind < argc)
		badarg("unexpected argument %s", argv[optind]);
	if (!have_sys || !w || !footprint)
		badarg("--system, --workload and --footprint are required");
	if (!budget)
		budget = footprint / 4;

	ret = pg_sys_open(&s, sys, budget, dir, err, sizeof(err));
	if (ret == -ENOTSUP) {
		fprintf(stderr, "paging: %s\n", err);
		return EXIT_SKIP;
	}
	if (ret < 0) {
		fprintf(stderr, "paging: %s\n", err[0] ? err : strerror(-ret));
		return ret == -EINVAL ? EXIT_BADARGS : EXIT_ERROR;
	}
	s.file_advice = file_advice;
	p = (struct pg_params){ .footprint = footprint, .threads = threads,
				.seed = seed, .work = work };
	uname(&un);
	bench_config(BENCH, "kernel=%s cpus=%ld system=%s workload=%s "
		     "footprint=%" PRIu64 " budget=%" PRIu64 " threads=%" PRIu64
		     " seed=%" PRIu64 " work=%g file_advice=%s",
		     un.release, sysconf(_SC_NPROCESSORS_ONLN), pg_system_name(sys),
		     w->name, footprint, budget, threads, seed, work,
		     file_advice ? "hint" : "none");

	ret = pg_workload_run(w, &s, &p, &out);
	if (ret < 0) {
		fprintf(stderr, "paging: %s on %s: %s\n", w->name,
			pg_system_name(sys), strerror(-ret));
		pg_sys_close(&s);
		return EXIT_ERROR;
	}
	if (!out.ok)
		fprintf(stderr, "paging: DATA MISMATCH: %s on %s: %s\n",
			w->name, pg_system_name(sys), out.error);
	getrusage(RUSAGE_SELF, &ru);
	printf("result bench=" BENCH " name=%s workload=%s system=%s "
	       "seconds=%.4f fill_seconds=%.4f run_seconds=%.4f "
	       "verify_seconds=%.4f major_faults=%" PRIu64
	       " minor_faults=%" PRIu64 " swap_read_bytes=%" PRIu64
	       " swap_write_bytes=%" PRIu64 " io_source=%s accesses=%" PRIu64
	       " verified_bytes=%" PRIu64 " maxrss_bytes=%ld footprint=%" PRIu64
	       " budget=%" PRIu64 " threads=%" PRIu64 " seed=%" PRIu64
	       " ok=%d\n",
	       w->name, w->name, pg_system_name(sys),
	       out.fill_seconds + out.run_seconds, out.fill_seconds,
	       out.run_seconds, out.verify_seconds, out.delta.major_faults,
	       out.delta.minor_faults, out.delta.read_bytes,
	       out.delta.write_bytes, s.io_source, out.accesses,
	       out.verified_bytes, ru.ru_maxrss * 1024L, footprint, budget,
	       threads, seed, out.ok);
	fflush(stdout);
	if (stats && s.rt) {
		struct upg_stats st;

		if (upg_stats_get(s.rt, &st) == 0)
			upg_stats_print(&st, stderr);
	}
	pg_sys_close(&s);
	return out.ok ? 0 : EXIT_ERROR;
}
