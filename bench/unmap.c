/* SPDX-License-Identifier: MIT */
/*
 * unmap.c - what it costs to take a page out of a running program's
 * address space, one page at a time against many at once.
 *
 * Every page upager evicts leaves its region through an unmap (a
 * deactivation: UFFDIO_MOVE into staging), and every unmap of a page that
 * a CPU may have cached in its TLB needs a TLB flush -- on every CPU the
 * process is running on at that moment, through an interrupt (a
 * shootdown).  The kernel's own reclaim unmaps a batch of pages and
 * flushes once; a user-space pager can batch only pages that are
 * contiguous (one UFFDIO_MOVE of a run), or drop scattered pages with one
 * process_madvise(MADV_DONTNEED), which loses their contents.  This
 * program measures, per page:
 *
 *   move_page       UFFDIO_MOVE of one page, every other page of an area
 *   move_run        UFFDIO_MOVE of runs of --run pages
 *   move_holes      UFFDIO_MOVE of every other page, over 2 x --run pages
 *                   a call with UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES: does the
 *                   kernel flush once per call, or once per run of
 *                   present pages (Linux 6.18: per run -- a page each)?
 *   dontneed_page   madvise(MADV_DONTNEED) of one page, every other page
 *   dontneed_batch  process_madvise(MADV_DONTNEED) of every other page,
 *                   --batch pages a call (Linux 6.13+; skipped otherwise)
 *
 * each twice: "alone", with no other thread of the process running, and
 * "sibling", with a second thread pinned to another CPU touching memory of
 * its own, so that every flush must interrupt it (the situation of a
 * program running while upager's reclaim thread evicts).  The measuring
 * thread is pinned to CPU 0.  Figures are medians over --rounds rounds of
 * --pages pages, the rounds of all figures interleaved.
 *
 * No upager code runs here: these are floors of the machine, to read
 * beside bench/fault and the deactivation counts of `upager run --stats`.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "bench_util.h"
#include "uffd.h" /* UFFDIO_MOVE, which Debian 12's headers lack */

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#ifndef SYS_process_madvise
#define SYS_process_madvise 440
#endif
#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif

#ifndef UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES
#define UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES ((__u64)1 << 1)
#endif

#define PAGE 4096UL

enum method {
	MOVE_PAGE, MOVE_RUN, MOVE_HOLES, DONTNEED_PAGE, DONTNEED_BATCH,
	NMETHODS
};
static const char *const method_names[NMETHODS] = {
	"move_page", "move_run", "move_holes", "dontneed_page", "dontneed_batch",
};

struct params {
	size_t pages;   /* pages of the area a round empties */
	unsigned rounds;
	unsigned run;   /* pages per UFFDIO_MOVE in move_run */
	unsigned batch; /* iovecs per process_madvise in dontneed_batch */
};

struct area {
	char *src, *dst; /* dst is registered with the uffd, for UFFDIO_MOVE */
	size_t len;
	int uffd, pidfd;
	bool has_move, has_batch;
};

static atomic_bool sibling_stop;

static void die(const char *what, int err)
{
	fprintf(stderr, "unmap: %s: %s\n", what, strerror(err));
	exit(1);
}

/* The other thread of the process: keeps its CPU in the mm's TLB users. */
static void *sibling_main(void *arg)
{
	volatile char *mem = arg;

	while (!atomic_load_explicit(&sibling_stop, memory_order_relaxed))
		for (size_t i = 0; i < 64; i++)
			mem[i * PAGE]++;
	return NULL;
}

static void area_open(struct area *a, size_t len)
{
	struct uffdio_api api = { .api = UFFD_API, .features = UFFD_FEATURE_MOVE };
	struct uffdio_register reg;
	long pidfd;

	*a = (struct area){ .len = len, .pidfd = -1 };
	a->src = mmap(NULL, len, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	a->dst = mmap(NULL, len, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (a->src == MAP_FAILED || a->dst == MAP_FAILED)
		die("mmap", errno);
	/* 4 KiB pages on both sides: a huge page would move or drop whole */
	madvise(a->src, len, MADV_NOHUGEPAGE);
	madvise(a->dst, len, MADV_NOHUGEPAGE);
	a->uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (a->uffd < 0)
		die("userfaultfd (as root, or vm.unprivileged_userfaultfd=1)",
		    errno);
	a->has_move = ioctl(a->uffd, UFFDIO_API, &api) == 0 &&
		      (api.features & UFFD_FEATURE_MOVE);
	reg = (struct uffdio_register){
		.range = { (uintptr_t)a->dst, len },
		.mode = UFFDIO_REGISTER_MODE_MISSING,
	};
	if (a->has_move && ioctl(a->uffd, UFFDIO_REGISTER, &reg) != 0)
		die("UFFDIO_REGISTER", errno);
	pidfd = syscall(SYS_pidfd_open, getpid(), 0);
	a->pidfd = (int)pidfd;
	/* probe: an empty page of src, dropped in a batch of one */
	if (pidfd >= 0) {
		struct iovec iov = { a->src, PAGE };

		a->has_batch = syscall(SYS_process_madvise, a->pidfd, &iov, 1,
				       MADV_DONTNEED, 0) == (long)PAGE;
	}
}

/* Back to a populated src and an empty dst. */
static void area_refill(struct area *a)
{
	if (madvise(a->dst, a->len, MADV_DONTNEED) != 0)
		die("madvise(dst)", errno);
	memset(a->src, 0x5a, a->len);
}

/*
 * No page of src is zapped while it moves: with holes allowed, Linux 6.18
 * would loop for ever on such a page (lib/reclaim.c, spans).
 */
static void move(struct area *a, size_t off, size_t len, bool holes)
{
	struct uffdio_move m = {
		.dst = (uintptr_t)a->dst + off,
		.src = (uintptr_t)a->src + off,
		.len = len,
		.mode = holes ? UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES : 0,
	};

	if (ioctl(a->uffd, UFFDIO_MOVE, &m) != 0 || (size_t)m.move != len)
		die("UFFDIO_MOVE", errno);
}

/* Take @p->pages pages (every other one, or runs) out of src; returns ns. */
static uint64_t one_round(struct area *a, const struct params *p,
			  enum method m, struct iovec *iov)
{
	uint64_t t0, t1;
	size_t n = 0;

	area_refill(a);
	if (m == MOVE_HOLES) /* every other page a hole */
		for (size_t i = 1; i < 2 * p->pages; i += 2)
			if (madvise(a->src + i * PAGE, PAGE, MADV_DONTNEED))
				die("madvise", errno);
	t0 = bench_now_ns();
	switch (m) {
	case MOVE_PAGE:
		for (size_t i = 0; i < 2 * p->pages; i += 2)
			move(a, i * PAGE, PAGE, false);
		break;
	case MOVE_RUN:
		for (size_t i = 0; i < p->pages; i += p->run)
			move(a, i * PAGE, p->run * PAGE, false);
		break;
	case MOVE_HOLES:
		for (size_t i = 0; i < 2 * p->pages; i += 2 * p->run)
			move(a, i * PAGE, 2 * p->run * PAGE, true);
		break;
	case DONTNEED_PAGE:
		for (size_t i = 0; i < 2 * p->pages; i += 2)
			if (madvise(a->src + i * PAGE, PAGE, MADV_DONTNEED))
				die("madvise", errno);
		break;
	case DONTNEED_BATCH:
		for (size_t i = 0; i < 2 * p->pages; i += 2) {
			iov[n].iov_base = a->src + i * PAGE;
			iov[n].iov_len = PAGE;
			if (++n == p->batch || i + 2 >= 2 * p->pages) {
				if (syscall(SYS_process_madvise, a->pidfd, iov,
					    n, MADV_DONTNEED, 0) != (long)(n * PAGE))
					die("process_madvise", errno);
				n = 0;
			}
		}
		break;
	default:
		break;
	}
	t1 = bench_now_ns();
	return (t1 - t0) / p->pages;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: unmap [--pages N] [--rounds N] [--run N] [--batch N]\n"
		"Per-page cost of taking pages out of the address space: one\n"
		"UFFDIO_MOVE or madvise per page against a run or a batch, with\n"
		"and without another thread of the process running on another\n"
		"CPU (see bench/README.md).\n"
		"\n"
		"  --pages N   pages each round takes out (default 4096)\n"
		"  --rounds N  rounds per figure, interleaved (default 10)\n"
		"  --run N     pages per UFFDIO_MOVE in move_run and move_holes\n"
		"              (default 64)\n"
		"  --batch N   pages per process_madvise call (default 512)\n");
}

static void parse(int argc, char **argv, struct params *p)
{
	static const struct option opts[] = {
		{ "pages", required_argument, NULL, 'p' },
		{ "rounds", required_argument, NULL, 'r' },
		{ "run", required_argument, NULL, 'u' },
		{ "batch", required_argument, NULL, 'b' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	uint64_t v;
	int c;

	*p = (struct params){ .pages = 4096, .rounds = 10, .run = 64,
			      .batch = 512 };
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		if (c == 'h') {
			usage(stdout);
			exit(0);
		}
		if (c == '?' || bench_parse_u64(optarg, 1, 1 << 20, &v) != 0) {
			if (c != '?')
				fprintf(stderr, "unmap: bad value '%s'\n", optarg);
			usage(stderr);
			exit(2);
		}
		if (c == 'p')
			p->pages = v;
		else if (c == 'r')
			p->rounds = (unsigned)v;
		else if (c == 'u')
			p->run = (unsigned)v;
		else
			p->batch = (unsigned)(v > 1024 ? 1024 : v); /* IOV_MAX */
	}
	if (p->pages % p->run) {
		fprintf(stderr, "unmap: --pages must be a multiple of --run\n");
		exit(2);
	}
}

int main(int argc, char **argv)
{
	struct bench_samples s[2][NMETHODS];
	struct params p;
	struct area a;
	struct iovec *iov;
	char *sibling_mem;
	pthread_t sibling;
	bool two_cpus = sysconf(_SC_NPROCESSORS_ONLN) >= 2;

	parse(argc, argv, &p);
	area_open(&a, 2 * p.pages * PAGE);
	iov = calloc(p.batch, sizeof(*iov));
	sibling_mem = mmap(NULL, 64 * PAGE, PROT_READ | PROT_WRITE,
			   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (!iov || sibling_mem == MAP_FAILED)
		die("allocation", ENOMEM);
	bench_pin_thread(pthread_self(), 0);
	bench_config("unmap", "pages=%zu rounds=%u run=%u batch=%u cpus=%ld",
		     p.pages, p.rounds, p.run, p.batch,
		     sysconf(_SC_NPROCESSORS_ONLN));
	if (!a.has_move)
		printf("unmap: skipped move_page, move_run, move_holes: this "
		       "kernel has no "
		       "UFFDIO_MOVE (Linux 6.8+)\n");
	if (!a.has_batch)
		printf("unmap: skipped dontneed_batch: process_madvise() refuses "
		       "MADV_DONTNEED here (Linux 6.13+)\n");
	if (!two_cpus)
		printf("unmap: skipped the sibling figures: one CPU\n");
	for (int sib = 0; sib < 2; sib++)
		for (int m = 0; m < NMETHODS; m++)
			if (bench_samples_init(&s[sib][m], p.rounds))
				die("allocation", ENOMEM);

	for (unsigned r = 0; r < p.rounds; r++)
		for (int sib = 0; sib < (two_cpus ? 2 : 1); sib++) {
			if (sib) {
				atomic_store(&sibling_stop, false);
				if (pthread_create(&sibling, NULL, sibling_main,
						   sibling_mem))
					die("pthread_create", EAGAIN);
				bench_pin_thread(sibling, 1);
				usleep(1000); /* let it run on its CPU */
			}
			for (int m = 0; m < NMETHODS; m++) {
				if ((m <= MOVE_HOLES && !a.has_move) ||
				    (m == DONTNEED_BATCH && !a.has_batch))
					continue;
				bench_samples_add(&s[sib][m],
						  one_round(&a, &p, m, iov));
			}
			if (sib) {
				atomic_store(&sibling_stop, true);
				pthread_join(sibling, NULL);
			}
		}

	uint64_t median[2][NMETHODS] = { { 0 } };

	for (int m = 0; m < NMETHODS; m++) {
		char extra[32] = "";

		if (m == MOVE_RUN || m == MOVE_HOLES)
			snprintf(extra, sizeof(extra), " run=%u", p.run);
		else if (m == DONTNEED_BATCH)
			snprintf(extra, sizeof(extra), " batch=%u", p.batch);
		for (int sib = 0; sib < 2; sib++) {
			struct bench_summary sum;

			if (!s[sib][m].n)
				continue;
			bench_summarize(&s[sib][m], &sum);
			median[sib][m] = sum.median;
			bench_result("unmap", method_names[m], &sum,
				     " threads=%s pages=%zu%s",
				     sib ? "sibling" : "alone", p.pages, extra);
		}
	}
	printf("\n%-16s %14s %14s\n", "per page", "alone", "sibling");
	for (int m = 0; m < NMETHODS; m++) {
		char b0[32], b1[32];

		if (!s[0][m].n)
			continue;
		printf("%-16s %14s %14s\n", method_names[m],
		       bench_fmt_ns(b0, sizeof(b0), (double)median[0][m]),
		       s[1][m].n ? bench_fmt_ns(b1, sizeof(b1),
						(double)median[1][m]) : "-");
	}
	return 0;
}
