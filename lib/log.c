/* SPDX-License-Identifier: MIT */
/*
 * log.c - messages and assertion failures.
 *
 * Pager threads must never call malloc (in the preload shim malloc is ours,
 * and may need the very pager thread that is printing).  So messages are
 * formatted into a stack buffer and written with one write(2), which also
 * keeps lines from different threads from interleaving.
 */
#include "internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

void upg_log(const char *fmt, ...)
{
	char buf[512];
	size_t n = 0;
	va_list ap;
	int r;

	memcpy(buf, "upager: ", 8);
	n = 8;
	va_start(ap, fmt);
	r = vsnprintf(buf + n, sizeof(buf) - n - 1, fmt, ap);
	va_end(ap);
	if (r > 0)
		n += (size_t)r < sizeof(buf) - n - 1 ? (size_t)r : sizeof(buf) - n - 2;
	buf[n++] = '\n';
	while (n > 0) {
		ssize_t w = write(STDERR_FILENO, buf, n);
		if (w <= 0)
			break;
		n -= (size_t)w;
	}
}

void upg_assert_fail(const char *expr, const char *file, int line,
		     const char *func)
{
	upg_log("assertion failed: %s (%s:%d in %s)", expr, file, line, func);
	abort();
}

const char *upg_strerror(int err)
{
	const char *s = strerrordesc_np(err);

	return s ? s : "unknown error";
}

uint64_t upg_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}
