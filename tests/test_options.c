/* SPDX-License-Identifier: MIT */
/*
 * test_options.c - option defaults, size parsing, setting by name and from
 * the environment, validation and printing.
 *
 * Criterion runs every test in its own process, so setenv() here cannot
 * leak into another test.
 */
#include "internal.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

TestSuite(options);

static struct upg_options defaults(void)
{
	struct upg_options o;

	upg_options_init(&o);
	return o;
}

static bool same(const struct upg_options *a, const struct upg_options *b)
{
	return a->budget == b->budget && a->page_size == b->page_size &&
	       a->swap_dir == b->swap_dir && a->swap_path == b->swap_path &&
	       a->swap_max == b->swap_max &&
	       a->handler_threads == b->handler_threads &&
	       a->low_watermark == b->low_watermark &&
	       a->high_watermark == b->high_watermark &&
	       a->spin_us == b->spin_us && a->evict == b->evict &&
	       a->dirty == b->dirty && a->verbose == b->verbose;
}

/* ---------------------------------------------------------------- init -- */

Test(options, defaults)
{
	struct upg_options o;
	char err[256] = "";

	unsetenv("TMPDIR");
	upg_options_init(&o);
	cr_expect_eq(o.budget, UPG_DEFAULT_BUDGET);
	cr_expect_eq(o.page_size, UPG_DEFAULT_PAGE_SIZE);
	cr_expect_str_eq(o.swap_dir, "/var/tmp");
	cr_expect_null(o.swap_path);
	cr_expect_eq(o.swap_max, 0);
	cr_expect_eq(o.handler_threads, UPG_DEFAULT_THREADS);
	cr_expect_eq(o.low_watermark, UPG_DEFAULT_LOW_WATERMARK);
	cr_expect_eq(o.high_watermark, UPG_DEFAULT_HIGH_WATERMARK);
	cr_expect_eq(o.spin_us, UPG_DEFAULT_SPIN_US);
	cr_expect_eq(o.evict, UPG_EVICT_AUTO);
	cr_expect_eq(o.dirty, UPG_DIRTY_AUTO);
	cr_expect_eq(o.verbose, 0);
	cr_expect_eq(upg_options_validate(&o, err, sizeof(err)), 0, "%s", err);
}

Test(options, swap_dir_default_is_tmpdir)
{
	struct upg_options o;

	setenv("TMPDIR", "/some/where", 1);
	upg_options_init(&o);
	cr_expect_str_eq(o.swap_dir, "/some/where");

	/* An empty TMPDIR is no directory: fall back. */
	setenv("TMPDIR", "", 1);
	upg_options_init(&o);
	cr_expect_str_eq(o.swap_dir, "/var/tmp");
}

/* ---------------------------------------------------------- parse_size -- */

static const struct {
	const char *s;
	size_t v;
} good_sizes[] = {
	{ "0", 0 },
	{ "1", 1 },
	{ "4096", 4096 },
	{ "4096B", 4096 },
	{ "007", 7 },
	{ "1k", 1UL << 10 },
	{ "1K", 1UL << 10 },
	{ "1KB", 1UL << 10 },
	{ "1kB", 1UL << 10 },
	{ "1Ki", 1UL << 10 },
	{ "1KiB", 1UL << 10 },
	{ "64K", 64UL << 10 },
	{ "2m", 2UL << 20 },
	{ "2M", 2UL << 20 },
	{ "2MB", 2UL << 20 },
	{ "2MiB", 2UL << 20 },
	{ "512M", 512UL << 20 },
	{ "3g", 3UL << 30 },
	{ "3G", 3UL << 30 },
	{ "3GB", 3UL << 30 },
	{ "3GiB", 3UL << 30 },
	{ "1t", 1UL << 40 },
	{ "1T", 1UL << 40 },
	{ "1TB", 1UL << 40 },
	{ "1TiB", 1UL << 40 },
	{ "16777215T", 16777215UL << 40 },
	{ "18446744073709551615", SIZE_MAX },
};

Test(options, parse_size_suffixes)
{
	size_t i, v;

	for (i = 0; i < ARRAY_SIZE(good_sizes); i++) {
		v = 12345;
		cr_expect_eq(upg_parse_size(good_sizes[i].s, &v), 0,
			     "\"%s\" should parse", good_sizes[i].s);
		cr_expect_eq(v, good_sizes[i].v, "\"%s\" gave %zu, not %zu",
			     good_sizes[i].s, v, good_sizes[i].v);
	}
}

static const char *const bad_sizes[] = {
	"", "-1", "+1", " 1", "1 ", "1.5G", "12Q", "K", "M", "0x10", "1KK",
	"1iB", "1MBB", "1Mi B", "1 M", "1e6", "one",
	"18446744073709551616",   /* 2^64 */
	"16777216T",              /* 2^64 with a suffix */
	"99999999999999999999999G",
};

Test(options, parse_size_rejects)
{
	size_t i, v;

	for (i = 0; i < ARRAY_SIZE(bad_sizes); i++) {
		v = 12345;
		cr_expect_eq(upg_parse_size(bad_sizes[i], &v), -EINVAL,
			     "\"%s\" should be rejected", bad_sizes[i]);
		cr_expect_eq(v, 12345, "\"%s\" changed the output",
			     bad_sizes[i]);
	}
	cr_expect_eq(upg_parse_size(NULL, &v), -EINVAL);
}

/* ----------------------------------------------------------------- set -- */

Test(options, set_every_option)
{
	struct upg_options o = defaults();
	char err[256] = "";

#define SET(name, value)                                                     \
	cr_assert_eq(upg_options_set(&o, name, value, err, sizeof(err)), 0,  \
		     "%s=%s: %s", name, value, err)
	SET("budget", "1G");
	SET("page_size", "64K");
	SET("swap_dir", "/srv/swap");
	SET("swap", "/dev/nvme0n1p3");
	SET("swap_max", "16G");
	SET("threads", "4");
	SET("low_watermark", "10");
	SET("high_watermark", "20");
	SET("spin_us", "0");
	SET("evict", "copy");
	SET("dirty", "wp-fault");
	SET("verbose", "2");
#undef SET
	cr_expect_eq(o.budget, 1UL << 30);
	cr_expect_eq(o.page_size, 64UL << 10);
	cr_expect_str_eq(o.swap_dir, "/srv/swap");
	cr_expect_str_eq(o.swap_path, "/dev/nvme0n1p3");
	cr_expect_eq(o.swap_max, 16UL << 30);
	cr_expect_eq(o.handler_threads, 4);
	cr_expect_eq(o.low_watermark, 10);
	cr_expect_eq(o.high_watermark, 20);
	cr_expect_eq(o.spin_us, 0);
	cr_expect_eq(o.evict, UPG_EVICT_COPY);
	cr_expect_eq(o.dirty, UPG_DIRTY_WP_FAULT);
	cr_expect_eq(o.verbose, 2);
	cr_expect_eq(upg_options_validate(&o, err, sizeof(err)), 0, "%s", err);
}

Test(options, set_name_spellings)
{
	static const char *const names[] = {
		"page_size", "PAGE_SIZE", "page-size", "Page-Size",
		"UPAGER_PAGE_SIZE", "upager_page_size", "upager-page-size",
	};
	struct upg_options o;
	size_t i;

	for (i = 0; i < ARRAY_SIZE(names); i++) {
		upg_options_init(&o);
		cr_expect_eq(upg_options_set(&o, names[i], "16K", NULL, 0), 0,
			     "%s not accepted", names[i]);
		cr_expect_eq(o.page_size, 16UL << 10, "%s", names[i]);
	}
	/* The struct field names work too. */
	cr_expect_eq(upg_options_set(&o, "handler_threads", "3", NULL, 0), 0);
	cr_expect_eq(o.handler_threads, 3);
	cr_expect_eq(upg_options_set(&o, "swap_path", "/x", NULL, 0), 0);
	cr_expect_str_eq(o.swap_path, "/x");
}

Test(options, set_enum_spellings)
{
	struct upg_options o = defaults();

	cr_expect_eq(upg_options_set(&o, "evict", "MOVE", NULL, 0), 0);
	cr_expect_eq(o.evict, UPG_EVICT_MOVE);
	cr_expect_eq(upg_options_set(&o, "evict", "auto", NULL, 0), 0);
	cr_expect_eq(o.evict, UPG_EVICT_AUTO);
	cr_expect_eq(upg_options_set(&o, "dirty", "WP_FAULT", NULL, 0), 0);
	cr_expect_eq(o.dirty, UPG_DIRTY_WP_FAULT);
}

Test(options, set_empty_swap_path_unsets)
{
	struct upg_options o = defaults();

	cr_assert_eq(upg_options_set(&o, "swap", "/dev/sdb2", NULL, 0), 0);
	cr_assert_str_eq(o.swap_path, "/dev/sdb2");
	cr_expect_eq(upg_options_set(&o, "swap", "", NULL, 0), 0);
	cr_expect_null(o.swap_path);
}

Test(options, set_unknown_name)
{
	struct upg_options o = defaults(), before = o;
	char err[512] = "";

	cr_expect_eq(upg_options_set(&o, "bugdet", "1G", err, sizeof(err)),
		     -ENOENT);
	cr_expect(strstr(err, "bugdet") != NULL, "message: %s", err);
	cr_expect(strstr(err, "budget") != NULL,
		  "message should list the known names: %s", err);
	cr_expect(same(&o, &before));
	cr_expect_eq(upg_options_set(&o, "upager_", "1", NULL, 0), -ENOENT);
	cr_expect_eq(upg_options_set(&o, "", "1", NULL, 0), -ENOENT);
}

/* A bad value for every option, with the variable that names it. */
static const struct {
	const char *name, *env, *value;
} bad_values[] = {
	{ "budget", "UPAGER_BUDGET", "12Q" },
	{ "budget", "UPAGER_BUDGET", "-1" },
	{ "budget", "UPAGER_BUDGET", "32K" },   /* below 16 pages of 4K */
	{ "page_size", "UPAGER_PAGE_SIZE", "12K" },  /* not a power of two */
	{ "page_size", "UPAGER_PAGE_SIZE", "2K" },   /* too small */
	{ "page_size", "UPAGER_PAGE_SIZE", "4M" },   /* too large */
	{ "page_size", "UPAGER_PAGE_SIZE", "big" },
	{ "swap_dir", "UPAGER_SWAP_DIR", "" },
	{ "swap_max", "UPAGER_SWAP_MAX", "lots" },
	{ "swap_max", "UPAGER_SWAP_MAX", "1.5G" },
	{ "threads", "UPAGER_THREADS", "0" },
	{ "threads", "UPAGER_THREADS", "65" },
	{ "threads", "UPAGER_THREADS", "two" },
	{ "threads", "UPAGER_THREADS", "-1" },
	{ "threads", "UPAGER_THREADS", "99999999999" },
	{ "low_watermark", "UPAGER_LOW_WATERMARK", "0" },
	{ "low_watermark", "UPAGER_LOW_WATERMARK", "50" },
	{ "high_watermark", "UPAGER_HIGH_WATERMARK", "1" },
	{ "high_watermark", "UPAGER_HIGH_WATERMARK", "51" },
	{ "high_watermark", "UPAGER_HIGH_WATERMARK", "5%" },
	{ "spin_us", "UPAGER_SPIN_US", "100001" },
	{ "spin_us", "UPAGER_SPIN_US", "1ms" },
	{ "evict", "UPAGER_EVICT", "fast" },
	{ "evict", "UPAGER_EVICT", "" },
	{ "dirty", "UPAGER_DIRTY", "async" },
	{ "verbose", "UPAGER_VERBOSE", "3" },
	{ "verbose", "UPAGER_VERBOSE", "yes" },
};

Test(options, set_bad_values)
{
	struct upg_options o, before;
	char err[256];
	size_t i;

	for (i = 0; i < ARRAY_SIZE(bad_values); i++) {
		upg_options_init(&o);
		before = o;
		strcpy(err, "");
		cr_expect_eq(upg_options_set(&o, bad_values[i].name,
					     bad_values[i].value, err,
					     sizeof(err)),
			     -EINVAL, "%s=\"%s\" accepted", bad_values[i].name,
			     bad_values[i].value);
		cr_expect(strstr(err, bad_values[i].env) != NULL,
			  "message lacks %s: %s", bad_values[i].env, err);
		cr_expect(bad_values[i].value[0] == '\0' ||
				  strstr(err, bad_values[i].value) != NULL,
			  "message lacks \"%s\": %s", bad_values[i].value, err);
		cr_expect(strstr(err, "e.g.") != NULL,
			  "message lacks an example: %s", err);
		cr_expect(same(&o, &before), "%s=\"%s\" changed the options",
			  bad_values[i].name, bad_values[i].value);
	}
}

/* The message format promised in the design, word for word. */
Test(options, set_message_text)
{
	struct upg_options o = defaults();
	char err[256] = "";

	upg_options_set(&o, "budget", "12Q", err, sizeof(err));
	cr_expect_str_eq(err,
			 "UPAGER_BUDGET=\"12Q\" is not a size; use e.g. UPAGER_BUDGET=512M");
}

Test(options, set_null_value_and_small_buffers)
{
	struct upg_options o = defaults();
	char err[8];

	/* UPAGER_SWAP accepts any path; only a missing value is wrong. */
	cr_expect_eq(upg_options_set(&o, "swap", NULL, NULL, 0), -EINVAL);
	/* Messages are truncated, never overflow. */
	memset(err, 'x', sizeof(err));
	cr_expect_eq(upg_options_set(&o, "budget", "12Q", err, sizeof(err)),
		     -EINVAL);
	cr_expect_eq(strlen(err), sizeof(err) - 1);
	memset(err, 'x', sizeof(err));
	cr_expect_eq(upg_options_set(&o, "nope", "1", err, sizeof(err)),
		     -ENOENT);
	cr_expect_eq(strlen(err), sizeof(err) - 1);
	cr_expect_eq(upg_options_set(&o, "budget", "12Q", err, 0), -EINVAL);
	cr_expect_eq(upg_options_set(NULL, "budget", "1G", NULL, 0), -EINVAL);
}

/* ----------------------------------------------------------------- env -- */

Test(options, from_env_reads_every_variable)
{
	struct upg_options o = defaults();
	char err[256] = "";

	setenv("UPAGER_BUDGET", "2G", 1);
	setenv("UPAGER_PAGE_SIZE", "2M", 1);
	setenv("UPAGER_SWAP_DIR", "/mnt/fast", 1);
	setenv("UPAGER_SWAP", "/dev/sdz9", 1);
	setenv("UPAGER_SWAP_MAX", "100G", 1);
	setenv("UPAGER_THREADS", "8", 1);
	setenv("UPAGER_LOW_WATERMARK", "3", 1);
	setenv("UPAGER_HIGH_WATERMARK", "9", 1);
	setenv("UPAGER_SPIN_US", "1000", 1);
	setenv("UPAGER_EVICT", "move", 1);
	setenv("UPAGER_DIRTY", "hash", 1);
	setenv("UPAGER_VERBOSE", "1", 1);
	cr_assert_eq(upg_options_from_env(&o, err, sizeof(err)), 0, "%s", err);
	cr_expect_eq(o.budget, 2UL << 30);
	cr_expect_eq(o.page_size, 2UL << 20);
	cr_expect_str_eq(o.swap_dir, "/mnt/fast");
	cr_expect_str_eq(o.swap_path, "/dev/sdz9");
	cr_expect_eq(o.swap_max, 100UL << 30);
	cr_expect_eq(o.handler_threads, 8);
	cr_expect_eq(o.low_watermark, 3);
	cr_expect_eq(o.high_watermark, 9);
	cr_expect_eq(o.spin_us, 1000);
	cr_expect_eq(o.evict, UPG_EVICT_MOVE);
	cr_expect_eq(o.dirty, UPG_DIRTY_HASH);
	cr_expect_eq(o.verbose, 1);
}

Test(options, from_env_without_variables_changes_nothing)
{
	struct upg_options o = defaults(), before = o;
	size_t i;

	for (i = 0; i < ARRAY_SIZE(bad_values); i++)
		unsetenv(bad_values[i].env);
	unsetenv("UPAGER_SWAP");
	cr_expect_eq(upg_options_from_env(&o, NULL, 0), 0);
	cr_expect(same(&o, &before));
}

Test(options, from_env_bad_values)
{
	struct upg_options o, before;
	char err[256];
	size_t i;

	for (i = 0; i < ARRAY_SIZE(bad_values); i++) {
		upg_options_init(&o);
		before = o;
		strcpy(err, "");
		/* A good variable first: a failure must not half-apply. */
		setenv("UPAGER_VERBOSE", "2", 1);
		setenv(bad_values[i].env, bad_values[i].value, 1);
		cr_expect_eq(upg_options_from_env(&o, err, sizeof(err)),
			     -EINVAL, "%s=\"%s\" accepted", bad_values[i].env,
			     bad_values[i].value);
		cr_expect(strstr(err, bad_values[i].env) != NULL,
			  "message lacks %s: %s", bad_values[i].env, err);
		cr_expect(bad_values[i].value[0] == '\0' ||
				  strstr(err, bad_values[i].value) != NULL,
			  "message lacks \"%s\": %s", bad_values[i].value, err);
		cr_expect(same(&o, &before), "%s=\"%s\" changed the options",
			  bad_values[i].env, bad_values[i].value);
		unsetenv(bad_values[i].env);
		unsetenv("UPAGER_VERBOSE");
	}
}

/* ------------------------------------------------------------ validate -- */

static void expect_invalid(const struct upg_options *o, const char *env,
			   const char *value)
{
	char err[256] = "";

	cr_expect_eq(upg_options_validate(o, err, sizeof(err)), -EINVAL,
		     "%s=%s passed validation", env, value);
	cr_expect(strstr(err, env) != NULL, "message lacks %s: %s", env, err);
	cr_expect(strstr(err, value) != NULL, "message lacks %s: %s", value,
		  err);
}

Test(options, validate_watermark_order)
{
	struct upg_options o = defaults();

	o.low_watermark = 10;
	o.high_watermark = 5;
	expect_invalid(&o, "UPAGER_LOW_WATERMARK", "10");
	o.high_watermark = 10;
	expect_invalid(&o, "UPAGER_HIGH_WATERMARK", "10");
	o.high_watermark = 11;
	cr_expect_eq(upg_options_validate(&o, NULL, 0), 0);
	o.low_watermark = 0;
	expect_invalid(&o, "UPAGER_LOW_WATERMARK", "0");
	o.low_watermark = 1;
	o.high_watermark = 51;
	expect_invalid(&o, "UPAGER_HIGH_WATERMARK", "51");
}

Test(options, validate_page_size)
{
	struct upg_options o = defaults();

	o.page_size = 12288;
	expect_invalid(&o, "UPAGER_PAGE_SIZE", "12K");
	o.page_size = 0;
	expect_invalid(&o, "UPAGER_PAGE_SIZE", "0");
	o.page_size = 4UL << 20;
	expect_invalid(&o, "UPAGER_PAGE_SIZE", "4M");
	o.page_size = 2UL << 20;
	o.budget = 1UL << 30;
	cr_expect_eq(upg_options_validate(&o, NULL, 0), 0);
}

Test(options, validate_budget_too_small)
{
	struct upg_options o = defaults();
	char err[256] = "";

	/* 16 pages of 2M are 32M: 16M each alone is fine, together not. */
	o.page_size = 2UL << 20;
	o.budget = 16UL << 20;
	cr_expect_eq(upg_options_validate(&o, err, sizeof(err)), -EINVAL);
	cr_expect(strstr(err, "UPAGER_BUDGET=\"16M\"") != NULL, "%s", err);
	cr_expect(strstr(err, "UPAGER_PAGE_SIZE=2M") != NULL, "%s", err);
	cr_expect(strstr(err, "32M") != NULL, "%s", err);
	o.budget = 32UL << 20;
	cr_expect_eq(upg_options_validate(&o, NULL, 0), 0);
	o.page_size = 4096;
	o.budget = 60UL << 10;
	expect_invalid(&o, "UPAGER_BUDGET", "60K");
}

Test(options, validate_other_fields)
{
	struct upg_options o;

	upg_options_init(&o);
	o.swap_max = 100;
	expect_invalid(&o, "UPAGER_SWAP_MAX", "100");
	o.swap_max = 4096;
	cr_expect_eq(upg_options_validate(&o, NULL, 0), 0);

	upg_options_init(&o);
	o.handler_threads = 0;
	expect_invalid(&o, "UPAGER_THREADS", "0");
	o.handler_threads = UPG_MAX_THREADS + 1;
	expect_invalid(&o, "UPAGER_THREADS", "65");

	upg_options_init(&o);
	o.spin_us = UPG_MAX_SPIN_US + 1;
	expect_invalid(&o, "UPAGER_SPIN_US", "100001");

	upg_options_init(&o);
	o.evict = (enum upg_evict_mode)7;
	expect_invalid(&o, "UPAGER_EVICT", "7");

	upg_options_init(&o);
	o.dirty = (enum upg_dirty_mode)3;
	expect_invalid(&o, "UPAGER_DIRTY", "3");

	upg_options_init(&o);
	o.verbose = 3;
	expect_invalid(&o, "UPAGER_VERBOSE", "3");

	upg_options_init(&o);
	o.swap_dir = NULL;
	expect_invalid(&o, "UPAGER_SWAP_DIR", "\"\"");
}

/* --------------------------------------------------------------- print -- */

Test(options, print_one_line_per_option)
{
	struct upg_options o = defaults();
	char *text = NULL, *line, *save = NULL;
	size_t len = 0, lines = 0;
	FILE *f;

	o.swap_max = 16UL << 30;
	o.evict = UPG_EVICT_COPY;
	f = open_memstream(&text, &len);
	cr_assert_not_null(f);
	upg_options_print(&o, f);
	fclose(f);

	cr_expect(strstr(text, "UPAGER_BUDGET") != NULL, "%s", text);
	cr_expect(strstr(text, "256M") != NULL, "%s", text);
	cr_expect(strstr(text, "16G") != NULL, "%s", text);
	cr_expect(strstr(text, "copy") != NULL, "%s", text);
	cr_expect(strstr(text, "(unset)") != NULL, "%s", text);
	for (line = strtok_r(text, "\n", &save); line;
	     line = strtok_r(NULL, "\n", &save)) {
		cr_expect_eq(strncmp(line, "UPAGER_", 7), 0, "line: %s", line);
		lines++;
	}
	cr_expect_eq(lines, 12);
	free(text);
}

/* Every printed value reads back as the same option. */
Test(options, print_round_trips)
{
	struct upg_options o = defaults(), back = defaults();
	char *text = NULL, *line, *save = NULL, *env, *val, *save2;
	size_t len = 0;
	FILE *f;

	o.budget = 3UL << 30;
	o.page_size = 16384;
	o.swap_dir = "/srv/swap";
	o.swap_max = 12345;
	o.swap_path = "/dev/sdq";
	o.handler_threads = 5;
	o.low_watermark = 7;
	o.high_watermark = 8;
	o.spin_us = 99;
	o.evict = UPG_EVICT_MOVE;
	o.dirty = UPG_DIRTY_WP_FAULT;
	o.verbose = 2;
	f = open_memstream(&text, &len);
	cr_assert_not_null(f);
	upg_options_print(&o, f);
	fclose(f);
	for (line = strtok_r(text, "\n", &save); line;
	     line = strtok_r(NULL, "\n", &save)) {
		/* Tokens point into text: the borrowed strings stay valid. */
		env = strtok_r(line, " ", &save2);
		val = strtok_r(NULL, " ", &save2);
		cr_assert(env && val, "%s", line);
		cr_expect_eq(upg_options_set(&back, env, val, NULL, 0), 0,
			     "%s %s", env, val);
	}
	/* Strings are borrowed: compare them, then the rest. */
	cr_expect_str_eq(back.swap_dir, o.swap_dir);
	cr_expect_str_eq(back.swap_path, o.swap_path);
	back.swap_dir = o.swap_dir;
	back.swap_path = o.swap_path;
	cr_expect(same(&o, &back));
	free(text);
}
