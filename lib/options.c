/* SPDX-License-Identifier: MIT */
/*
 * options.c - runtime options: defaults, parsing, validation, printing.
 *
 * Every option is one row of opt_table[] below: its name, its environment
 * variable, how its value is spelled, where it lives in struct upg_options,
 * the range it must lie in, an example of a good value and one line saying
 * what it does.  Setting by name, reading the environment, validating,
 * printing and the error messages are all driven by that one table, so an
 * option added there is parsed, checked, documented and printed at once.
 *
 * This code may run inside the LD_PRELOAD shim before any allocator works,
 * so it never calls malloc: strings are borrowed (getenv's pointers, the
 * caller's), and messages are formatted with snprintf into the caller's
 * buffer.  Only upg_options_print() writes to a stdio stream, which may
 * allocate its buffer: it is for after start-up.
 */
#include "internal.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum opt_kind {
	OPT_SIZE,   /* size_t, "512M"; printed the same way */
	OPT_UINT,   /* unsigned, decimal */
	OPT_ENUM,   /* an enum stored as unsigned, spelled by names[] */
	OPT_STRING, /* const char *, borrowed */
};

struct opt_desc {
	const char *name;     /* upg_options_set() name: env without UPAGER_ */
	const char *env;      /* environment variable */
	enum opt_kind kind;
	const char *field;    /* struct upg_options field, also accepted by name */
	size_t offset;        /* offsetof(struct upg_options, field) */
	/*
	 * Accepted range of the value alone (the checks that relate two
	 * options are in upg_options_validate()).  OPT_SIZE, OPT_UINT: min <=
	 * value <= max.  OPT_ENUM: value < number of names.  OPT_STRING: min
	 * is the least length (1: must not be empty; 0: "" means NULL, unset).
	 */
	uint64_t min, max;
	bool pow2;            /* OPT_SIZE: must be a power of two */
	const char *const *names; /* OPT_ENUM: NULL-terminated, index = value */
	const char *example;  /* a good value, quoted in error messages */
	const char *desc;     /* one line, printed by upg_options_print() */
};

/* The field name and its offset, from one spelling. */
#define OPT_FIELD(f) #f, offsetof(struct upg_options, f)

/* Enum names, index = enum value; the first is the default. */
static const char *const evict_names[] = { "auto", "move", "copy", NULL };
static const char *const dirty_names[] = { "auto", "wp-fault", "hash", NULL };

/* Enum fields are accessed as unsigned: this is what makes that legal. */
_Static_assert(sizeof(enum upg_evict_mode) == sizeof(unsigned),
	       "enum upg_evict_mode must be stored as unsigned");
_Static_assert(sizeof(enum upg_dirty_mode) == sizeof(unsigned),
	       "enum upg_dirty_mode must be stored as unsigned");

static const struct opt_desc opt_table[] = {
	{ "budget", "UPAGER_BUDGET", OPT_SIZE, OPT_FIELD(budget),
	  UPG_MIN_BUDGET_PAGES * UPG_MIN_PAGE_SIZE, SIZE_MAX, false, NULL,
	  "512M", "most bytes of managed memory kept resident" },
	{ "page_size", "UPAGER_PAGE_SIZE", OPT_SIZE, OPT_FIELD(page_size),
	  UPG_MIN_PAGE_SIZE, UPG_MAX_PAGE_SIZE, true, NULL,
	  "64K", "pager page: unit of faults, eviction and swap I/O" },
	{ "swap_dir", "UPAGER_SWAP_DIR", OPT_STRING, OPT_FIELD(swap_dir),
	  1, 0, false, NULL,
	  "/var/tmp", "directory of the invisible swap file (O_TMPFILE)" },
	{ "swap", "UPAGER_SWAP", OPT_STRING, OPT_FIELD(swap_path),
	  0, 0, false, NULL,
	  "/dev/nvme0n1p3", "existing file or block device to swap to instead" },
	{ "swap_max", "UPAGER_SWAP_MAX", OPT_SIZE, OPT_FIELD(swap_max),
	  0, SIZE_MAX, false, NULL,
	  "16G", "largest size of the swap store, 0 = unlimited" },
	{ "threads", "UPAGER_THREADS", OPT_UINT, OPT_FIELD(handler_threads),
	  1, UPG_MAX_THREADS, false, NULL,
	  "2", "fault-handler threads" },
	{ "low_watermark", "UPAGER_LOW_WATERMARK", OPT_UINT,
	  OPT_FIELD(low_watermark), 1, 49, false, NULL,
	  "2", "% of budget free below which reclaim starts" },
	{ "high_watermark", "UPAGER_HIGH_WATERMARK", OPT_UINT,
	  OPT_FIELD(high_watermark), 2, 50, false, NULL,
	  "5", "% of budget free at which reclaim stops" },
	{ "spin_us", "UPAGER_SPIN_US", OPT_UINT, OPT_FIELD(spin_us),
	  0, UPG_MAX_SPIN_US, false, NULL,
	  "50", "microseconds a handler spins before it sleeps (0: none)" },
	{ "evict", "UPAGER_EVICT", OPT_ENUM, OPT_FIELD(evict),
	  0, 0, false, evict_names,
	  "auto", "how pages leave a region: auto, move (6.8+), copy" },
	{ "dirty", "UPAGER_DIRTY", OPT_ENUM, OPT_FIELD(dirty),
	  0, 0, false, dirty_names,
	  "auto", "how writes to clean pages are noticed: auto (hash), hash, wp-fault" },
	{ "verbose", "UPAGER_VERBOSE", OPT_UINT, OPT_FIELD(verbose),
	  0, 2, false, NULL,
	  "1", "0 quiet, 1 warnings and summary, 2 debug" },
};

/* ------------------------------------------------------------------------ */
/* Field access                                                              */
/* ------------------------------------------------------------------------ */

static size_t *opt_size(struct upg_options *o, const struct opt_desc *d)
{
	return (size_t *)((char *)o + d->offset);
}

static unsigned *opt_uint(struct upg_options *o, const struct opt_desc *d)
{
	return (unsigned *)((char *)o + d->offset);
}

static const char **opt_str(struct upg_options *o, const struct opt_desc *d)
{
	return (const char **)((char *)o + d->offset);
}

/* Read-only views, for validate and print. */
static size_t get_size(const struct upg_options *o, const struct opt_desc *d)
{
	return *(const size_t *)((const char *)o + d->offset);
}

static unsigned get_uint(const struct upg_options *o, const struct opt_desc *d)
{
	return *(const unsigned *)((const char *)o + d->offset);
}

static const char *get_str(const struct upg_options *o,
			   const struct opt_desc *d)
{
	return *(const char *const *)((const char *)o + d->offset);
}

static unsigned enum_count(const struct opt_desc *d)
{
	unsigned n = 0;

	while (d->names[n])
		n++;
	return n;
}

/* ------------------------------------------------------------------------ */
/* Sizes                                                                     */
/* ------------------------------------------------------------------------ */

UPG_API int upg_parse_size(const char *s, size_t *out)
{
	const char *p = s;
	uint64_t n = 0;
	unsigned shift = 0;

	if (!s || !out)
		return -EINVAL;
	/* Digits only: strtoull would accept spaces, signs and hex. */
	if (*p < '0' || *p > '9')
		return -EINVAL;
	for (; *p >= '0' && *p <= '9'; p++) {
		unsigned digit = (unsigned)(*p - '0');

		if (n > (UINT64_MAX - digit) / 10)
			return -EINVAL;
		n = n * 10 + digit;
	}
	switch (*p) {
	case 'k': case 'K': shift = 10; break;
	case 'm': case 'M': shift = 20; break;
	case 'g': case 'G': shift = 30; break;
	case 't': case 'T': shift = 40; break;
	default: break;
	}
	if (shift) {
		p++;
		if (*p == 'i')  /* KiB, MiB, ... */
			p++;
	}
	if (*p == 'B')
		p++;
	if (*p != '\0')
		return -EINVAL;
	if (n > (UINT64_MAX >> shift) || (n << shift) > SIZE_MAX)
		return -EINVAL;
	*out = (size_t)(n << shift);
	return 0;
}

/*
 * Format @v the way upg_parse_size() reads it back: with the largest unit
 * that divides it exactly ("256M", "4K", "12345").
 */
static const char *format_size(char *buf, size_t len, uint64_t v)
{
	static const char units[] = "KMGT";
	int i;

	for (i = 3; i >= 0; i--) {
		unsigned shift = 10 * (unsigned)(i + 1);

		if (v != 0 && (v & ((1ULL << shift) - 1)) == 0) {
			snprintf(buf, len, "%llu%c",
				 (unsigned long long)(v >> shift), units[i]);
			return buf;
		}
	}
	snprintf(buf, len, "%llu", (unsigned long long)v);
	return buf;
}

/* Format the current value of option @d of @o for messages and printing. */
static const char *format_value(char *buf, size_t len,
				const struct upg_options *o,
				const struct opt_desc *d)
{
	unsigned u;

	switch (d->kind) {
	case OPT_SIZE:
		return format_size(buf, len, get_size(o, d));
	case OPT_UINT:
		snprintf(buf, len, "%u", get_uint(o, d));
		return buf;
	case OPT_ENUM:
		u = get_uint(o, d);
		if (u < enum_count(d))
			snprintf(buf, len, "%s", d->names[u]);
		else
			snprintf(buf, len, "%u", u);
		return buf;
	case OPT_STRING:
		snprintf(buf, len, "%s", get_str(o, d) ? get_str(o, d) : "");
		return buf;
	}
	return "?";
}

/* ------------------------------------------------------------------------ */
/* Lookup by name                                                            */
/* ------------------------------------------------------------------------ */

static int fold(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A' + 'a';
	if (c == '-')
		return '_';
	return (unsigned char)c;
}

/* Compare ignoring case, with '-' and '_' equal. */
static bool name_eq(const char *a, const char *b)
{
	for (; *a && *b; a++, b++)
		if (fold(*a) != fold(*b))
			return false;
	return *a == '\0' && *b == '\0';
}

static bool name_has_prefix(const char *s, const char *prefix)
{
	for (; *prefix; s++, prefix++)
		if (fold(*s) != fold(*prefix))
			return false;
	return true;
}

/*
 * "budget", "BUDGET", "UPAGER_BUDGET", "upager-budget" all find budget; so
 * does the field name ("handler_threads" as well as "threads").
 */
static const struct opt_desc *opt_find(const char *name)
{
	size_t i;

	if (name_has_prefix(name, "upager_"))
		name += strlen("upager_");
	for (i = 0; i < ARRAY_SIZE(opt_table); i++)
		if (name_eq(name, opt_table[i].name) ||
		    name_eq(name, opt_table[i].field))
			return &opt_table[i];
	return NULL;
}

/* ------------------------------------------------------------------------ */
/* Setting one option                                                        */
/* ------------------------------------------------------------------------ */

/* Format into @err when it is not NULL; always returns @ret. */
static int opt_error(int ret, char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int opt_error(int ret, char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err && errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return ret;
}

static int parse_uint(const char *s, uint64_t *out)
{
	uint64_t n = 0;

	if (*s < '0' || *s > '9')
		return -EINVAL;
	for (; *s >= '0' && *s <= '9'; s++) {
		unsigned digit = (unsigned)(*s - '0');

		if (n > (UINT_MAX - digit) / 10)
			return -EINVAL;
		n = n * 10 + digit;
	}
	if (*s != '\0')
		return -EINVAL;
	*out = n;
	return 0;
}

/* "auto, move, copy" into @buf. */
static const char *enum_list(char *buf, size_t len, const struct opt_desc *d)
{
	size_t n = 0;
	unsigned i;

	buf[0] = '\0';
	for (i = 0; d->names[i] && n < len; i++) {
		int r = snprintf(buf + n, len - n, "%s%s", i ? ", " : "",
				 d->names[i]);

		if (r < 0)
			break;
		n += (size_t)r;
	}
	return buf;
}

/* Range text for a message: "4K..2M", "at least 64K", "1..64". */
static const char *range_text(char *buf, size_t len, const struct opt_desc *d)
{
	char lo[32], hi[32];

	if (d->kind == OPT_SIZE) {
		format_size(lo, sizeof(lo), d->min);
		format_size(hi, sizeof(hi), d->max);
		if (d->max == SIZE_MAX)
			snprintf(buf, len, "at least %s", lo);
		else
			snprintf(buf, len, "%s..%s", lo, hi);
	} else {
		snprintf(buf, len, "%llu..%llu", (unsigned long long)d->min,
			 (unsigned long long)d->max);
	}
	return buf;
}

/* Parse @value for @d and store it into @o; @o is untouched on error. */
static int opt_apply(struct upg_options *o, const struct opt_desc *d,
		     const char *value, char *err, size_t errlen)
{
	char buf[96];
	size_t sz;
	uint64_t u;
	unsigned i;

	if (!value)
		return opt_error(-EINVAL, err, errlen,
				 "%s has no value; use e.g. %s=%s", d->env,
				 d->env, d->example);

	switch (d->kind) {
	case OPT_SIZE:
		if (upg_parse_size(value, &sz) < 0)
			return opt_error(-EINVAL, err, errlen,
					 "%s=\"%s\" is not a size; use e.g. %s=%s",
					 d->env, value, d->env, d->example);
		if (sz < d->min || sz > d->max)
			return opt_error(-EINVAL, err, errlen,
					 "%s=\"%s\" is out of range (%s); use e.g. %s=%s",
					 d->env, value,
					 range_text(buf, sizeof(buf), d),
					 d->env, d->example);
		if (d->pow2 && (sz & (sz - 1)) != 0)
			return opt_error(-EINVAL, err, errlen,
					 "%s=\"%s\" is not a power of two; use e.g. %s=%s",
					 d->env, value, d->env, d->example);
		*opt_size(o, d) = sz;
		return 0;
	case OPT_UINT:
		if (parse_uint(value, &u) < 0)
			return opt_error(-EINVAL, err, errlen,
					 "%s=\"%s\" is not a whole number; use e.g. %s=%s",
					 d->env, value, d->env, d->example);
		if (u < d->min || u > d->max)
			return opt_error(-EINVAL, err, errlen,
					 "%s=\"%s\" is out of range (%s); use e.g. %s=%s",
					 d->env, value,
					 range_text(buf, sizeof(buf), d),
					 d->env, d->example);
		*opt_uint(o, d) = (unsigned)u;
		return 0;
	case OPT_ENUM:
		for (i = 0; d->names[i]; i++) {
			if (name_eq(value, d->names[i])) {
				*opt_uint(o, d) = i;
				return 0;
			}
		}
		return opt_error(-EINVAL, err, errlen,
				 "%s=\"%s\" is not one of %s; use e.g. %s=%s",
				 d->env, value, enum_list(buf, sizeof(buf), d),
				 d->env, d->example);
	case OPT_STRING:
		if (strlen(value) < d->min)
			return opt_error(-EINVAL, err, errlen,
					 "%s=\"%s\" is empty; use e.g. %s=%s",
					 d->env, value, d->env, d->example);
		*opt_str(o, d) = value[0] ? value : NULL;
		return 0;
	}
	return opt_error(-EINVAL, err, errlen, "%s: bad option kind", d->env);
}

/* ------------------------------------------------------------------------ */
/* Public API                                                                */
/* ------------------------------------------------------------------------ */

UPG_API void upg_options_init(struct upg_options *opts)
{
	const char *tmpdir = getenv("TMPDIR");

	memset(opts, 0, sizeof(*opts));
	opts->budget = UPG_DEFAULT_BUDGET;
	opts->page_size = UPG_DEFAULT_PAGE_SIZE;
	/* Borrowed from the environment, like every string option. */
	opts->swap_dir = tmpdir && tmpdir[0] ? tmpdir : "/var/tmp";
	opts->swap_path = NULL;
	opts->swap_max = 0;
	opts->handler_threads = UPG_DEFAULT_THREADS;
	opts->low_watermark = UPG_DEFAULT_LOW_WATERMARK;
	opts->high_watermark = UPG_DEFAULT_HIGH_WATERMARK;
	opts->spin_us = UPG_DEFAULT_SPIN_US;
	opts->evict = UPG_EVICT_AUTO;
	opts->dirty = UPG_DIRTY_AUTO;
	opts->verbose = 0;
}

UPG_API int upg_options_set(struct upg_options *opts, const char *name,
			    const char *value, char *err, size_t errlen)
{
	const struct opt_desc *d;
	size_t i, n = 0;
	int r;

	if (!opts || !name)
		return opt_error(-EINVAL, err, errlen,
				 "upg_options_set: no options or no name");
	d = opt_find(name);
	if (d)
		return opt_apply(opts, d, value, err, errlen);

	/* Unknown: list the names, so a typo is fixed in one step. */
	if (!err || !errlen)
		return -ENOENT;
	r = snprintf(err, errlen, "unknown option \"%s\"; known:", name);
	for (i = 0; r >= 0 && i < ARRAY_SIZE(opt_table); i++) {
		n += (size_t)r;
		if (n >= errlen)
			break;
		r = snprintf(err + n, errlen - n, "%s %s", i ? "," : "",
			     opt_table[i].name);
	}
	return -ENOENT;
}

UPG_API int upg_options_from_env(struct upg_options *opts, char *err,
				 size_t errlen)
{
	struct upg_options tmp;
	size_t i;
	int ret;

	if (!opts)
		return opt_error(-EINVAL, err, errlen,
				 "upg_options_from_env: no options");
	/* All or nothing: a bad variable leaves @opts as it was. */
	tmp = *opts;
	for (i = 0; i < ARRAY_SIZE(opt_table); i++) {
		const char *v = getenv(opt_table[i].env);

		if (!v)
			continue;
		ret = opt_apply(&tmp, &opt_table[i], v, err, errlen);
		if (ret < 0)
			return ret;
	}
	*opts = tmp;
	return 0;
}

UPG_API int upg_options_validate(const struct upg_options *opts, char *err,
				 size_t errlen)
{
	char val[64], buf[96], min_budget[32];
	size_t i;

	if (!opts)
		return opt_error(-EINVAL, err, errlen,
				 "upg_options_validate: no options");

	/* Each option alone: fields may have been set directly. */
	for (i = 0; i < ARRAY_SIZE(opt_table); i++) {
		const struct opt_desc *d = &opt_table[i];
		uint64_t v;
		const char *s;

		format_value(val, sizeof(val), opts, d);
		switch (d->kind) {
		case OPT_SIZE:
		case OPT_UINT:
			v = d->kind == OPT_SIZE ? get_size(opts, d) :
						  get_uint(opts, d);
			if (v < d->min || v > d->max)
				return opt_error(-EINVAL, err, errlen,
						 "%s=\"%s\" is out of range (%s); use e.g. %s=%s",
						 d->env, val,
						 range_text(buf, sizeof(buf), d),
						 d->env, d->example);
			if (d->pow2 && (v & (v - 1)) != 0)
				return opt_error(-EINVAL, err, errlen,
						 "%s=\"%s\" is not a power of two; use e.g. %s=%s",
						 d->env, val, d->env, d->example);
			break;
		case OPT_ENUM:
			if (get_uint(opts, d) >= enum_count(d))
				return opt_error(-EINVAL, err, errlen,
						 "%s=\"%s\" is not one of %s; use e.g. %s=%s",
						 d->env, val,
						 enum_list(buf, sizeof(buf), d),
						 d->env, d->example);
			break;
		case OPT_STRING:
			s = get_str(opts, d);
			if (d->min > 0 && (!s || strlen(s) < d->min))
				return opt_error(-EINVAL, err, errlen,
						 "%s=\"%s\" is empty; use e.g. %s=%s",
						 d->env, val, d->env, d->example);
			break;
		}
	}

	/* Options that constrain each other. */
	if (opts->budget / opts->page_size < UPG_MIN_BUDGET_PAGES) {
		format_size(val, sizeof(val), opts->budget);
		format_size(buf, sizeof(buf), opts->page_size);
		format_size(min_budget, sizeof(min_budget),
			    UPG_MIN_BUDGET_PAGES * opts->page_size);
		return opt_error(-EINVAL, err, errlen,
				 "UPAGER_BUDGET=\"%s\" is too small for UPAGER_PAGE_SIZE=%s: it must hold %lu pages (%s); use e.g. UPAGER_BUDGET=512M",
				 val, buf, UPG_MIN_BUDGET_PAGES, min_budget);
	}
	if (opts->low_watermark >= opts->high_watermark)
		return opt_error(-EINVAL, err, errlen,
				 "UPAGER_LOW_WATERMARK=\"%u\" must be below UPAGER_HIGH_WATERMARK=\"%u\"; use e.g. UPAGER_LOW_WATERMARK=%u UPAGER_HIGH_WATERMARK=%u",
				 opts->low_watermark, opts->high_watermark,
				 UPG_DEFAULT_LOW_WATERMARK,
				 UPG_DEFAULT_HIGH_WATERMARK);
	if (opts->swap_max != 0 && opts->swap_max < opts->page_size) {
		format_size(val, sizeof(val), opts->swap_max);
		format_size(buf, sizeof(buf), opts->page_size);
		return opt_error(-EINVAL, err, errlen,
				 "UPAGER_SWAP_MAX=\"%s\" is smaller than one page (UPAGER_PAGE_SIZE=%s); use 0 for no limit or e.g. UPAGER_SWAP_MAX=16G",
				 val, buf);
	}
	return 0;
}

UPG_API void upg_options_print(const struct upg_options *opts, FILE *out)
{
	char buf[64];
	size_t i;

	for (i = 0; i < ARRAY_SIZE(opt_table); i++) {
		const struct opt_desc *d = &opt_table[i];
		const char *val;

		/* Strings are printed whole: a path may be long. */
		if (d->kind == OPT_STRING)
			val = get_str(opts, d) ? get_str(opts, d) : "(unset)";
		else
			val = format_value(buf, sizeof(buf), opts, d);
		fprintf(out, "%-22s %-12s %s\n", d->env, val, d->desc);
	}
}
