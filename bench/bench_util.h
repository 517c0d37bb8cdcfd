/* SPDX-License-Identifier: MIT */
/*
 * bench_util.h - helpers shared by the benchmarks under bench/.
 *
 * Every benchmark reports a figure the same way, so that scripts can read
 * any of them with one parser:
 *
 *   result bench=<program> name=<figure> n=<samples> median_ns=... p99_ns=... [key=value ...]
 *
 * one line per figure, on stdout, keys and values without spaces.  Lines that
 * describe the run (kernel, options) start with "config " in the same format.
 * Anything else a benchmark prints (tables, progress) is for people and may
 * change.
 *
 * Latencies are kept as raw samples, not histograms: a benchmark sample is a
 * few tens of thousands of numbers, sorting them is cheap, and exact order
 * statistics are what the targets are stated in.
 */
#ifndef UPG_BENCH_UTIL_H
#define UPG_BENCH_UTIL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

/*
 * Nanoseconds on CLOCK_MONOTONIC.  On x86 with a TSC clocksource this is a
 * vDSO call of ~20 ns, small beside the microsecond events measured here;
 * bench_timer_overhead_ns() measures it so a report can show it.
 */
static inline uint64_t bench_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* Tell the CPU we are spinning (frees the sibling hyperthread). */
static inline void bench_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield" ::: "memory");
#else
	__asm__ __volatile__("" ::: "memory");
#endif
}

/* Median cost of one back-to-back pair of bench_now_ns() calls. */
uint64_t bench_timer_overhead_ns(void);

/* ------------------------------------------------------------------------ */
/* Samples and order statistics                                              */
/* ------------------------------------------------------------------------ */

/*
 * A growable array of latencies in ns.  bench_samples_add() never allocates
 * while n < cap, so reserve the expected count up front and no allocation
 * falls between two timed events.
 */
struct bench_samples {
	uint64_t *v;
	size_t n;
	size_t cap;
};

/* Summary of a sample; every field is 0 when n == 0. */
struct bench_summary {
	size_t n;
	uint64_t min;
	uint64_t median;
	uint64_t p90;
	uint64_t p99;
	uint64_t max;
	double mean;
};

/* 0 or -ENOMEM. */
int bench_samples_init(struct bench_samples *s, size_t cap);
void bench_samples_free(struct bench_samples *s);
/* Append one value; grows the array when full (then it may allocate). */
void bench_samples_add(struct bench_samples *s, uint64_t ns);
/* Sort @s in place and fill @sum. */
void bench_summarize(struct bench_samples *s, struct bench_summary *sum);
/*
 * The nearest-rank quantile of the sorted array @v of @n values: the smallest
 * value such that at least a fraction @q of the values are <= it.  So the
 * median of 4 values is the 2nd and the p99 of 100 values is the 99th.
 * Returns 0 for n == 0.
 */
uint64_t bench_quantile_sorted(const uint64_t *v, size_t n, double q);

/* ------------------------------------------------------------------------ */
/* Parsing command-line values                                               */
/* ------------------------------------------------------------------------ */

/*
 * "4096", "64K", "512M", "2G", "1T" (binary units, optional trailing "B" or
 * "iB") into bytes.  Returns 0, or -EINVAL for anything else (including
 * overflow and a negative number).
 */
int bench_parse_size(const char *s, uint64_t *out);
/* A decimal integer in [min, max].  0 or -EINVAL. */
int bench_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out);

/* ------------------------------------------------------------------------ */
/* Output                                                                    */
/* ------------------------------------------------------------------------ */

/*
 * Print "result bench=@bench name=@name n=.. median_ns=.. p99_ns=.. min_ns=..
 * p90_ns=.. max_ns=.. mean_ns=.." and then @fmt (extra " key=value" pairs, may
 * be NULL or empty) and a newline on stdout, and flush it so a reader sees
 * results as they come.
 */
void bench_result(const char *bench, const char *name,
		  const struct bench_summary *sum, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
/* Print "config bench=@bench " then @fmt and a newline on stdout. */
void bench_config(const char *bench, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Format @ns for people: "812 ns", "4.81 us", "1.20 ms", into @buf. */
const char *bench_fmt_ns(char *buf, size_t len, double ns);

/* ------------------------------------------------------------------------ */
/* Threads                                                                   */
/* ------------------------------------------------------------------------ */

/* Pin thread @t to CPU @cpu alone.  Returns false if the kernel refused. */
bool bench_pin_thread(pthread_t t, int cpu);

/* ------------------------------------------------------------------------ */
/* Pseudo-random numbers                                                     */
/* ------------------------------------------------------------------------ */

/* splitmix64: a full-period 64-bit generator, good enough to pick pages. */
static inline uint64_t bench_rand(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* A value in [0, n), n > 0 (the modulo bias is irrelevant for n << 2^64). */
static inline uint64_t bench_rand_below(uint64_t *state, uint64_t n)
{
	return bench_rand(state) % n;
}

/* Fill @perm with a random permutation of 0..n-1 (Fisher-Yates). */
void bench_permutation(uint64_t *perm, size_t n, uint64_t *state);

#endif /* UPG_BENCH_UTIL_H */
