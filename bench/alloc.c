/* SPDX-License-Identifier: MIT */
/*
 * alloc.c - bench/alloc: malloc/free throughput and peak RSS of upager's
 * allocator beside glibc malloc and jemalloc, in the same run.
 *
 * Three allocators cannot share one process: whichever owns the symbol
 * malloc serves every library's allocations too, and peak RSS is a
 * property of a whole process.  So the driver runs every measurement in a
 * fresh child, which is this same binary with --child:
 *
 *   bench/alloc (driver) --fork+exec--> bench/alloc --child=glibc   --work=W
 *                        --fork+exec--> bench/alloc --child=jemalloc --work=W
 *                                       (LD_PRELOAD=libjemalloc.so.2)
 *                        --fork+exec--> bench/alloc --child=upager  --work=W
 *                                       (upg_malloc/upg_free, the public API,
 *                                        UPAGER_BUDGET above the working set)
 *
 * The child times its workload and writes "ns_per_op=..." on a pipe; the
 * driver takes the child's peak RSS from wait4()'s ru_maxrss.  Repetitions
 * are interleaved (rep 1 of every allocator, then rep 2, ...) and the order
 * of the allocators rotates, so a noisy neighbour on a shared machine
 * spreads over all of them; medians are compared, and only ratios from the
 * same run mean anything.
 *
 * The benchmark's own arrays (pointer pools, the producer/consumer ring)
 * come from mmap, not malloc, so that they weigh the same in every child.
 *
 * Workloads (see bench/README.md):
 *   small     1 thread, 1024 slots, random sizes 16..512: free + malloc
 *   small-2t  the same in 2 threads at once (ns per op per thread)
 *   prodcons  a producer mallocs, a consumer thread frees (ns per object)
 *   large     1 thread, 16 slots, random sizes 64 KiB..4 MiB; first and
 *             last byte written
 *   fill      256K objects of 16..512 B (~66 MiB) live, half freed at
 *             random and refilled, then all freed: peak RSS
 */
#define _GNU_SOURCE
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench_util.h"
#include "upager.h"

#define BENCH "alloc"

enum alloc_kind { AK_GLIBC, AK_JEMALLOC, AK_UPAGER, AK_N };

static const char *const alloc_names[AK_N] = { "glibc", "jemalloc", "upager" };

/* The allocator under test in a child; upager's is called by name so the
 * child measures the public API, not a preloaded malloc. */
static void *(*am_malloc)(size_t) = malloc;
static void (*am_free)(void *) = free;

/* ----------------------------------------------------------- workloads */

struct work {
	const char *name;
	uint64_t ops; /* default per child (per thread for small-2t) */
	double (*run)(uint64_t ops);
};

static void *bench_map(size_t bytes)
{
	void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED) {
		perror("mmap");
		exit(1);
	}
	return p;
}

static inline size_t small_size(uint64_t *rs)
{
	return 16 + (size_t)bench_rand_below(rs, 497);
}

/*
 * Replace a random slot of a pool of @nslots, @ops times: the steady state
 * of a program whose live objects turn over.  One op = one free + one
 * malloc; the first 8 bytes are written, as a program would.
 */
static double churn_small(uint64_t ops, size_t nslots, uint64_t seed)
{
	void **pool = bench_map(nslots * sizeof(*pool));
	uint64_t rs = seed, t0, t1, i;
	size_t k;

	for (k = 0; k < nslots; k++) {
		pool[k] = am_malloc(small_size(&rs));
		*(volatile uint64_t *)pool[k] = k;
	}
	t0 = bench_now_ns();
	for (i = 0; i < ops; i++) {
		uint64_t r = bench_rand(&rs);

		k = (size_t)(r & (nslots - 1));
		am_free(pool[k]);
		pool[k] = am_malloc(16 + (size_t)((r >> 32) % 497));
		*(volatile uint64_t *)pool[k] = i;
	}
	t1 = bench_now_ns();
	for (k = 0; k < nslots; k++)
		am_free(pool[k]);
	munmap(pool, nslots * sizeof(*pool));
	return (double)(t1 - t0) / (double)ops;
}

static double work_small(uint64_t ops)
{
	return churn_small(ops, 1024, 1);
}

struct thr_arg {
	uint64_t ops;
	uint64_t seed;
	double ns;
	pthread_barrier_t *bar;
};

static void *small_thread(void *arg)
{
	struct thr_arg *a = arg;

	pthread_barrier_wait(a->bar);
	a->ns = churn_small(a->ops, 1024, a->seed);
	return NULL;
}

static double work_small_2t(uint64_t ops)
{
	struct thr_arg a[2];
	pthread_barrier_t bar;
	pthread_t t[2];
	int i;

	pthread_barrier_init(&bar, NULL, 3);
	for (i = 0; i < 2; i++) {
		a[i] = (struct thr_arg){ .ops = ops, .seed = 1 + (uint64_t)i,
					 .bar = &bar };
		pthread_create(&t[i], NULL, small_thread, &a[i]);
	}
	pthread_barrier_wait(&bar);
	for (i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	pthread_barrier_destroy(&bar);
	/* the slower thread's time per op: equal to work_small's when two
	 * threads scale perfectly */
	return a[0].ns > a[1].ns ? a[0].ns : a[1].ns;
}

/*
 * Producer/consumer: objects are freed by a thread that did not allocate
 * them, the case that per-thread caches make hard.  A single-producer,
 * single-consumer ring of 4096 pointers between them.
 */
#define RING 4096

struct ring {
	_Atomic uint64_t head __attribute__((aligned(64))); /* producer */
	_Atomic uint64_t tail __attribute__((aligned(64))); /* consumer */
	void *slot[RING] __attribute__((aligned(64)));
	uint64_t ops;
};

static void *consumer(void *arg)
{
	struct ring *r = arg;
	uint64_t tail = 0;

	while (tail < r->ops) {
		uint64_t head = atomic_load_explicit(&r->head,
						     memory_order_acquire);

		if (head == tail) {
			bench_cpu_relax();
			continue;
		}
		while (tail < head) {
			void *p = r->slot[tail % RING];

			if (*(volatile uint64_t *)p != tail)
				abort();
			am_free(p);
			tail++;
		}
		atomic_store_explicit(&r->tail, tail, memory_order_release);
	}
	return NULL;
}

static double work_prodcons(uint64_t ops)
{
	struct ring *r = bench_map(sizeof(*r));
	uint64_t rs = 7, head, t0, t1;
	pthread_t t;

	r->ops = ops;
	pthread_create(&t, NULL, consumer, r);
	t0 = bench_now_ns();
	for (head = 0; head < ops; head++) {
		void *p;

		while (head - atomic_load_explicit(&r->tail,
						   memory_order_acquire) >= RING)
			bench_cpu_relax();
		p = am_malloc(small_size(&rs));
		*(volatile uint64_t *)p = head;
		r->slot[head % RING] = p;
		if (head % 32 == 31 || head + 1 == ops)
			atomic_store_explicit(&r->head, head + 1,
					      memory_order_release);
	}
	pthread_join(t, NULL);
	t1 = bench_now_ns();
	munmap(r, sizeof(*r));
	return (double)(t1 - t0) / (double)ops;
}

/*
 * Large blocks: only the first and the last byte are written, so this
 * measures the allocator and what it does with freed pages (a block whose
 * pages were given back faults again when reused), not the zeroing of
 * fresh pages, which bench/fault measures.
 */
static double work_large(uint64_t ops)
{
	enum { NSLOTS = 16 };
	const size_t lo = 64 << 10, hi = 4 << 20;
	void *pool[NSLOTS] = { 0 };
	size_t size[NSLOTS] = { 0 };
	uint64_t rs = 3, t0, t1, i;
	size_t k;

	t0 = bench_now_ns();
	for (i = 0; i < ops; i++) {
		k = (size_t)bench_rand_below(&rs, NSLOTS);
		am_free(pool[k]);
		size[k] = lo + (size_t)bench_rand_below(&rs, hi - lo + 1);
		pool[k] = am_malloc(size[k]);
		((volatile char *)pool[k])[0] = 1;
		((volatile char *)pool[k])[size[k] - 1] = 1;
	}
	t1 = bench_now_ns();
	for (k = 0; k < NSLOTS; k++)
		am_free(pool[k]);
	return (double)(t1 - t0) / (double)ops;
}

/*
 * Peak RSS of a heap of small objects: 256K objects (mean 264 B, ~66 MiB)
 * written whole, half of them freed at random and replaced by objects of
 * other sizes (fragmentation), then everything freed.  Time per malloc.
 */
static double work_fill(uint64_t ops)
{
	size_t n = (size_t)ops, k;
	void **pool = bench_map(n * sizeof(*pool));
	uint64_t rs = 11, t0, t1, mallocs = 0;

	t0 = bench_now_ns();
	for (k = 0; k < n; k++) {
		size_t sz = small_size(&rs);

		pool[k] = am_malloc(sz);
		memset(pool[k], (int)k, sz);
		mallocs++;
	}
	for (k = 0; k < n; k++) {
		if (bench_rand(&rs) & 1) {
			am_free(pool[k]);
			pool[k] = NULL;
		}
	}
	for (k = 0; k < n; k++) {
		if (!pool[k]) {
			size_t sz = small_size(&rs);

			pool[k] = am_malloc(sz);
			memset(pool[k], (int)k, sz);
			mallocs++;
		}
	}
	for (k = 0; k < n; k++)
		am_free(pool[k]);
	t1 = bench_now_ns();
	munmap(pool, n * sizeof(*pool));
	return (double)(t1 - t0) / (double)mallocs;
}

static const struct work works[] = {
	{ "small", 8000000, work_small },
	{ "small-2t", 8000000, work_small_2t },
	{ "prodcons", 4000000, work_prodcons },
	{ "large", 200000, work_large },
	{ "fill", 262144, work_fill },
};
#define NWORKS (sizeof(works) / sizeof(works[0]))

static const struct work *work_find(const char *name)
{
	size_t i;

	for (i = 0; i < NWORKS; i++)
		if (!strcmp(works[i].name, name))
			return &works[i];
	return NULL;
}

/* --------------------------------------------------------------- child */

static int child_main(const char *alloc, const char *wname, uint64_t ops)
{
	const struct work *w = work_find(wname);
	double ns;

	if (!w) {
		fprintf(stderr, "alloc: unknown workload '%s'\n", wname);
		return 2;
	}
	if (!strcmp(alloc, "upager")) {
		am_malloc = upg_malloc;
		am_free = upg_free;
	} else if (strcmp(alloc, "glibc") && strcmp(alloc, "jemalloc")) {
		fprintf(stderr, "alloc: unknown allocator '%s'\n", alloc);
		return 2;
	}
	ns = w->run(ops ? ops : w->ops);
	printf("ns_per_op=%.3f\n", ns);
	fflush(stdout);
	return 0;
}

/* -------------------------------------------------------------- driver */

static char self_path[4096];
static char jemalloc_path[4096];
static const char *budget = "2G";

/* libjemalloc.so.2 from the loader's cache; "" if there is none. */
static void find_jemalloc(void)
{
	FILE *f = popen("ldconfig -p 2>/dev/null", "r");
	char line[1024];

	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		char *arrow = strstr(line, "=> ");

		if (strstr(line, "libjemalloc.so.2 ") && arrow &&
		    !jemalloc_path[0]) {
			snprintf(jemalloc_path, sizeof(jemalloc_path), "%s",
				 arrow + 3);
			jemalloc_path[strcspn(jemalloc_path, "\n")] = 0;
		}
	}
	pclose(f);
}

/* Run one child; 0 and its figures, or -1. */
static int run_child(int ak, const struct work *w, uint64_t ops, double *ns,
		     long *rss_kib)
{
	char a_opt[64], w_opt[64], o_opt[64], buf[256];
	struct rusage ru;
	int fd[2], status;
	ssize_t n, got = 0;
	pid_t pid;

	snprintf(a_opt, sizeof(a_opt), "--child=%s", alloc_names[ak]);
	snprintf(w_opt, sizeof(w_opt), "--work=%s", w->name);
	snprintf(o_opt, sizeof(o_opt), "--ops=%llu", (unsigned long long)ops);
	if (pipe(fd))
		return -1;
	pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		dup2(fd[1], STDOUT_FILENO);
		close(fd[0]);
		close(fd[1]);
		unsetenv("LD_PRELOAD");
		if (ak == AK_JEMALLOC)
			setenv("LD_PRELOAD", jemalloc_path, 1);
		if (ak == AK_UPAGER)
			setenv("UPAGER_BUDGET", budget, 1);
		execl(self_path, self_path, a_opt, w_opt, o_opt, (char *)NULL);
		_exit(127);
	}
	close(fd[1]);
	while ((n = read(fd[0], buf + got, sizeof(buf) - 1 - (size_t)got)) > 0)
		got += n;
	close(fd[0]);
	buf[got] = 0;
	if (wait4(pid, &status, 0, &ru) < 0 || !WIFEXITED(status) ||
	    WEXITSTATUS(status) != 0 || sscanf(buf, "ns_per_op=%lf", ns) != 1) {
		fprintf(stderr, "alloc: %s %s failed (status 0x%x)\n",
			alloc_names[ak], w->name, status);
		return -1;
	}
	*rss_kib = ru.ru_maxrss;
	return 0;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void usage(FILE *out)
{
	fprintf(out,
		"usage: bench/alloc [--reps N] [--work NAME[,NAME...]] [--budget SIZE]\n"
		"                   [--scale F]\n"
		"  workloads: small small-2t prodcons large fill (default: all)\n"
		"  --reps N    children per allocator and workload (default 7)\n"
		"  --budget    UPAGER_BUDGET of the upager children (default 2G)\n"
		"  --scale F   multiply every workload's operation count (default 1)\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "child", required_argument, NULL, 'c' },
		{ "work", required_argument, NULL, 'w' },
		{ "ops", required_argument, NULL, 'o' },
		{ "reps", required_argument, NULL, 'r' },
		{ "budget", required_argument, NULL, 'b' },
		{ "scale", required_argument, NULL, 's' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	const char *child = NULL, *wlist = NULL;
	uint64_t ops = 0, reps = 7, tmp;
	double scale = 1.0;
	bool selected[NWORKS];
	size_t wi;
	int c, nalloc;

	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'c': child = optarg; break;
		case 'w': wlist = optarg; break;
		case 'o':
			if (bench_parse_u64(optarg, 1, UINT64_MAX / 2, &ops))
				goto bad;
			break;
		case 'r':
			if (bench_parse_u64(optarg, 1, 1000, &reps))
				goto bad;
			break;
		case 'b':
			if (bench_parse_size(optarg, &tmp))
				goto bad;
			budget = optarg;
			break;
		case 's':
			scale = strtod(optarg, NULL);
			if (!(scale > 0 && scale <= 1000))
				goto bad;
			break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (child)
		return child_main(child, wlist ? wlist : "small", ops);

	for (wi = 0; wi < NWORKS; wi++)
		selected[wi] = !wlist;
	if (wlist) {
		char *copy = strdup(wlist), *save = NULL, *tok;

		for (tok = strtok_r(copy, ",", &save); tok;
		     tok = strtok_r(NULL, ",", &save)) {
			const struct work *w = work_find(tok);

			if (!w) {
				fprintf(stderr, "alloc: --work: unknown workload '%s' (e.g. --work small,large)\n",
					tok);
				return 2;
			}
			selected[w - works] = true;
		}
		free(copy);
	}
	if (readlink("/proc/self/exe", self_path, sizeof(self_path) - 1) < 0) {
		perror("readlink /proc/self/exe");
		return 1;
	}
	find_jemalloc();
	nalloc = AK_N;
	bench_config(BENCH, "reps=%llu budget=%s scale=%g jemalloc=%s have_jemalloc_build=%d",
		     (unsigned long long)reps, budget, scale,
		     jemalloc_path[0] ? jemalloc_path : "none",
#ifdef HAVE_JEMALLOC
		     1
#else
		     0
#endif
		     );
	if (!jemalloc_path[0])
		fprintf(stderr, "alloc: libjemalloc.so.2 not found (ldconfig -p): jemalloc column skipped\n");

	printf("%-9s %9s %9s %9s %7s %7s | %8s %8s %8s %6s %6s\n", "workload",
	       "glibc ns", "jemal ns", "upager ns", "up/je", "up/gl",
	       "glibc MB", "jemal MB", "upager MB", "up/je", "up/gl");
	for (wi = 0; wi < NWORKS; wi++) {
		const struct work *w = &works[wi];
		uint64_t wops = (uint64_t)((double)w->ops * scale);
		double ns[AK_N][1000], rss[AK_N][1000], mns[AK_N], mrss[AK_N];
		int ak, r, ok[AK_N] = { 0 };

		if (!selected[wi])
			continue;
		if (wops < 1)
			wops = 1;
		for (r = 0; r < (int)reps; r++) {
			for (c = 0; c < nalloc; c++) {
				long kib;
				double x;

				ak = (c + r) % nalloc; /* rotate the order */
				if (ak == AK_JEMALLOC && !jemalloc_path[0])
					continue;
				if (run_child(ak, w, wops, &x, &kib) < 0)
					return 1;
				ns[ak][ok[ak]] = x;
				rss[ak][ok[ak]++] = (double)kib;
			}
		}
		for (ak = 0; ak < nalloc; ak++) {
			struct bench_summary sum = { 0 };
			uint64_t v[1000];
			struct bench_samples s = { v, 0, 1000 };

			mns[ak] = ok[ak] ? median(ns[ak], ok[ak]) : 0;
			mrss[ak] = ok[ak] ? median(rss[ak], ok[ak]) : 0;
			if (!ok[ak])
				continue;
			for (r = 0; r < ok[ak]; r++)
				v[s.n++] = (uint64_t)(ns[ak][r] + 0.5);
			bench_summarize(&s, &sum);
			{
				char name[64];

				snprintf(name, sizeof(name), "%s.%s", w->name,
					 alloc_names[ak]);
				bench_result(BENCH, name, &sum,
					     " workload=%s allocator=%s ns_per_op=%.2f maxrss_kib=%.0f ops=%llu",
					     w->name, alloc_names[ak], mns[ak],
					     mrss[ak], (unsigned long long)wops);
			}
		}
#define RATIO(a, b) ((b) > 0 ? (a) / (b) : 0.0)
		bench_result(BENCH, w->name, &(struct bench_summary){ 0 },
			     " workload=%s time_upager_jemalloc=%.3f time_upager_glibc=%.3f rss_upager_jemalloc=%.3f rss_upager_glibc=%.3f",
			     w->name,
			     RATIO(mns[AK_UPAGER], mns[AK_JEMALLOC]),
			     RATIO(mns[AK_UPAGER], mns[AK_GLIBC]),
			     RATIO(mrss[AK_UPAGER], mrss[AK_JEMALLOC]),
			     RATIO(mrss[AK_UPAGER], mrss[AK_GLIBC]));
		printf("%-9s %9.1f %9.1f %9.1f %7.2f %7.2f | %8.1f %8.1f %8.1f %6.2f %6.2f\n",
		       w->name, mns[AK_GLIBC], mns[AK_JEMALLOC], mns[AK_UPAGER],
		       RATIO(mns[AK_UPAGER], mns[AK_JEMALLOC]),
		       RATIO(mns[AK_UPAGER], mns[AK_GLIBC]),
		       mrss[AK_GLIBC] / 1024, mrss[AK_JEMALLOC] / 1024,
		       mrss[AK_UPAGER] / 1024,
		       RATIO(mrss[AK_UPAGER], mrss[AK_JEMALLOC]),
		       RATIO(mrss[AK_UPAGER], mrss[AK_GLIBC]));
		fflush(stdout);
#undef RATIO
	}
	return 0;
bad:
	fprintf(stderr, "alloc: bad value '%s' (e.g. --reps 7 --budget 2G --scale 0.5)\n",
		optarg);
	usage(stderr);
	return 2;
}
