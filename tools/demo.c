/* SPDX-License-Identifier: MIT */
/*
 * demo.c - upager in one screen: a program that uses four times more
 * memory than its budget, verifies every byte, and prints what the pager
 * did.  Run by 'make demo' and by the README's first command.
 *
 *   upager-demo [BUDGET [FOOTPRINT]]      defaults: 64M 256M
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <upager.h>

static uint8_t byte_at(size_t i, unsigned pass)
{
	uint64_t x = i * 0x9E3779B97F4A7C15ULL + pass;

	return (uint8_t)(x >> 56 ^ x >> 23);
}

int main(int argc, char **argv)
{
	struct upg_options opts;
	struct upg_runtime *rt;
	struct upg_stats st;
	size_t footprint = 256UL << 20;
	char err[256];
	uint8_t *mem;
	unsigned seed = 42;
	int ret;

	upg_options_init(&opts);
	opts.budget = 64UL << 20;
	opts.verbose = 1;
	if (upg_options_from_env(&opts, err, sizeof(err))) {
		fprintf(stderr, "%s\n", err);
		return 2;
	}
	if (argc > 1 && upg_options_set(&opts, "budget", argv[1], err, sizeof(err))) {
		fprintf(stderr, "%s\n", err);
		return 2;
	}
	if (argc > 2 && upg_parse_size(argv[2], &footprint)) {
		fprintf(stderr, "footprint \"%s\" is not a size; use e.g. 256M\n", argv[2]);
		return 2;
	}
	ret = upg_runtime_create(&opts, &rt);
	if (ret) {
		fprintf(stderr, "upager: cannot start: %s\n", strerror(-ret));
		return 1;
	}
	ret = upg_region_reserve(rt, footprint, (void **)&mem);
	if (ret) {
		fprintf(stderr, "upager: cannot reserve: %s\n", strerror(-ret));
		return 1;
	}
	printf("upager demo: %zu MiB of data, budget %zu MiB, %s\n",
	       footprint >> 20, opts.budget >> 20,
	       upg_runtime_is_paged(rt) ? "paged" : "UNPAGED");

	/* 1. write everything: most of it must go to swap */
	for (size_t i = 0; i < footprint; i++)
		mem[i] = byte_at(i, 1);
	/* 2. random reads of 4 KiB records, each verified */
	for (unsigned k = 0; k < 20000; k++) {
		size_t at = ((size_t)rand_r(&seed) % (footprint >> 12)) << 12;

		for (size_t i = at; i < at + 4096; i++)
			if (mem[i] != byte_at(i, 1)) {
				fprintf(stderr, "DATA ERROR at byte %zu\n", i);
				return 1;
			}
	}
	/* 3. a final sequential check of every byte */
	for (size_t i = 0; i < footprint; i++)
		if (mem[i] != byte_at(i, 1)) {
			fprintf(stderr, "DATA ERROR at byte %zu\n", i);
			return 1;
		}
	printf("verified %zu bytes\n", footprint);
	upg_stats_get(rt, &st);
	upg_stats_print(&st, stdout);
	upg_region_release(rt, mem);
	upg_runtime_destroy(rt);
	return 0;
}
