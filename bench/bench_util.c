/* SPDX-License-Identifier: MIT */
/*
 * bench_util.c - timing, order statistics, option parsing, thread pinning
 * and the "result ..." output format shared by the benchmarks (see
 * bench_util.h).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* pthread_setaffinity_np */
#endif
#include "bench_util.h"

#include <errno.h>
#include <inttypes.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

uint64_t bench_timer_overhead_ns(void)
{
	enum { N = 1001 };
	uint64_t v[N];
	struct bench_samples s = { .v = v, .n = 0, .cap = N };
	struct bench_summary sum;

	for (int i = 0; i < N; i++) {
		uint64_t t0 = bench_now_ns();
		uint64_t t1 = bench_now_ns();

		s.v[s.n++] = t1 - t0;
	}
	bench_summarize(&s, &sum);
	return sum.median;
}

int bench_samples_init(struct bench_samples *s, size_t cap)
{
	s->n = 0;
	s->cap = cap ? cap : 1;
	s->v = malloc(s->cap * sizeof(*s->v));
	return s->v ? 0 : -ENOMEM;
}

void bench_samples_free(struct bench_samples *s)
{
	free(s->v);
	s->v = NULL;
	s->n = s->cap = 0;
}

void bench_samples_add(struct bench_samples *s, uint64_t ns)
{
	if (s->n == s->cap) {
		size_t cap = s->cap * 2;
		uint64_t *v = realloc(s->v, cap * sizeof(*v));

		if (!v) {
			/* A benchmark that cannot keep its samples is useless. */
			fprintf(stderr, "bench: out of memory for %zu samples\n", cap);
			exit(1);
		}
		s->v = v;
		s->cap = cap;
	}
	s->v[s->n++] = ns;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return (x > y) - (x < y);
}

uint64_t bench_quantile_sorted(const uint64_t *v, size_t n, double q)
{
	size_t rank;

	if (n == 0)
		return 0;
	if (q <= 0)
		return v[0];
	if (q >= 1)
		return v[n - 1];
	/* Nearest rank: ceil(q * n), 1-based.  The epsilon keeps 0.99 * 100
	 * from becoming 99.00000000000001 and rounding up to 100. */
	rank = (size_t)(q * (double)n - 1e-9);
	if ((double)rank < q * (double)n - 1e-9)
		rank++;
	if (rank < 1)
		rank = 1;
	return v[rank - 1];
}

void bench_summarize(struct bench_samples *s, struct bench_summary *sum)
{
	double total = 0;

	memset(sum, 0, sizeof(*sum));
	if (s->n == 0)
		return;
	qsort(s->v, s->n, sizeof(*s->v), cmp_u64);
	for (size_t i = 0; i < s->n; i++)
		total += (double)s->v[i];
	sum->n = s->n;
	sum->min = s->v[0];
	sum->max = s->v[s->n - 1];
	sum->median = bench_quantile_sorted(s->v, s->n, 0.5);
	sum->p90 = bench_quantile_sorted(s->v, s->n, 0.9);
	sum->p99 = bench_quantile_sorted(s->v, s->n, 0.99);
	sum->mean = total / (double)s->n;
}

int bench_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
	unsigned long long v;
	char *end;

	if (!s || !*s || *s == '-' || *s == '+')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s || *end || v < min || v > max)
		return -EINVAL;
	*out = v;
	return 0;
}

int bench_parse_size(const char *s, uint64_t *out)
{
	unsigned long long v;
	unsigned shift = 0;
	char *end;

	if (!s || !*s || *s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s)
		return -EINVAL;
	switch (*end) {
	case 'k': case 'K': shift = 10; end++; break;
	case 'm': case 'M': shift = 20; end++; break;
	case 'g': case 'G': shift = 30; end++; break;
	case 't': case 'T': shift = 40; end++; break;
	default: break;
	}
	if (shift && *end == 'i')
		end++;
	if ((*end == 'B' || *end == 'b') && end[1] == '\0')
		end++;
	if (*end)
		return -EINVAL;
	if (shift && v > (UINT64_MAX >> shift))
		return -EINVAL;
	*out = (uint64_t)v << shift;
	return 0;
}

void bench_result(const char *bench, const char *name,
		  const struct bench_summary *sum, const char *fmt, ...)
{
	va_list ap;

	printf("result bench=%s name=%s n=%zu median_ns=%" PRIu64
	       " p99_ns=%" PRIu64 " min_ns=%" PRIu64 " p90_ns=%" PRIu64
	       " max_ns=%" PRIu64 " mean_ns=%.0f",
	       bench, name, sum->n, sum->median, sum->p99, sum->min, sum->p90,
	       sum->max, sum->mean);
	if (fmt && *fmt) {
		va_start(ap, fmt);
		vprintf(fmt, ap);
		va_end(ap);
	}
	putchar('\n');
	fflush(stdout);
}

void bench_config(const char *bench, const char *fmt, ...)
{
	va_list ap;

	printf("config bench=%s ", bench);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
}

const char *bench_fmt_ns(char *buf, size_t len, double ns)
{
	if (ns < 1e3)
		snprintf(buf, len, "%.0f ns", ns);
	else if (ns < 1e6)
		snprintf(buf, len, "%.2f us", ns / 1e3);
	else if (ns < 1e9)
		snprintf(buf, len, "%.2f ms", ns / 1e6);
	else
		snprintf(buf, len, "%.2f s", ns / 1e9);
	return buf;
}

void bench_permutation(uint64_t *perm, size_t n, uint64_t *state)
{
	for (size_t i = 0; i < n; i++)
		perm[i] = i;
	for (size_t i = n; i > 1; i--) {
		size_t j = (size_t)bench_rand_below(state, i);
		uint64_t t = perm[i - 1];

		perm[i - 1] = perm[j];
		perm[j] = t;
	}
}

bool bench_pin_thread(pthread_t t, int cpu)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	return pthread_setaffinity_np(t, sizeof(set), &set) == 0;
}
