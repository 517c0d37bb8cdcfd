/* SPDX-License-Identifier: MIT */
/*
 * internal.h - declarations shared inside lib/, one heading per file.
 *
 * Lock order (outer first; a thread never takes an outer lock while it holds
 * an inner one):
 *
 *   1. runtime->regions_lock   (rwlock: region table)
 *   2. page lock               (bit lock in a struct upg_pte, one page)
 *   3. runtime->lru_lock       (frame table and LRU lists)
 *   4. swap->lock              (slot allocator)
 *   5. stats are atomics, no lock
 *
 * Two page locks are never held at once, except by a handler zero-filling a
 * run of pages (fault.c), which takes them in address order with trylock
 * and never waits for one.
 */
#ifndef UPG_INTERNAL_H
#define UPG_INTERNAL_H

#include "config.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "upager.h"

#define UPG_API __attribute__((visibility("default")))

#ifdef UPG_DEBUG_BUILD
#define UPG_DEBUG 1
#else
#define UPG_DEBUG 0
#endif

#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* ------------------------------------------------------------------------ */
/* log.c: messages and assertions that never allocate                        */
/* ------------------------------------------------------------------------ */

/* Print "upager: <msg>\n" on stderr with one write(2); no malloc. */
void upg_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* upg_log() once per call site. */
#define upg_warn_once(...)                                                   \
	do {                                                                 \
		static atomic_bool warned_;                                  \
		if (!atomic_exchange(&warned_, true))                        \
			upg_log(__VA_ARGS__);                                \
	} while (0)
_Noreturn void upg_assert_fail(const char *expr, const char *file, int line,
			       const char *func);

/* Checked in debug builds only, but always compiled so it cannot rot. */
#define upg_assert(expr)                                                     \
	do {                                                                 \
		if (UPG_DEBUG && unlikely(!(expr)))                          \
			upg_assert_fail(#expr, __FILE__, __LINE__, __func__); \
	} while (0)
/* Checked in every build: for conditions whose failure would lose data. */
#define upg_check(expr)                                                      \
	do {                                                                 \
		if (unlikely(!(expr)))                                       \
			upg_assert_fail(#expr, __FILE__, __LINE__, __func__); \
	} while (0)

uint64_t upg_now_ns(void);

/*
 * strerror() without translation: strerror may call into gettext, which
 * reads (and may allocate) memory in the program's heap -- paged memory
 * under the shim, which a pager thread must never touch.
 */
const char *upg_strerror(int err);

/* ------------------------------------------------------------------------ */
/* arena.c: the pager's own memory, outside every managed region             */
/* ------------------------------------------------------------------------ */

/*
 * Pager threads never call malloc (the shim may route it to managed memory).
 * Their memory comes from mmap directly, zero-filled, rounded to 4 KiB.
 */
void *upg_os_alloc(size_t size);
void upg_os_free(void *p, size_t size);

/* ------------------------------------------------------------------------ */
/* options.c                                                                 */
/* ------------------------------------------------------------------------ */

/* Defaults, also used by documentation and tests. */
#define UPG_DEFAULT_BUDGET (256UL << 20)
#define UPG_DEFAULT_PAGE_SIZE 4096UL
#define UPG_MIN_PAGE_SIZE 4096UL
#define UPG_MAX_PAGE_SIZE (2UL << 20)
#define UPG_DEFAULT_THREADS 1U
#define UPG_MAX_THREADS 64U
#define UPG_DEFAULT_LOW_WATERMARK 2U  /* percent of budget */
#define UPG_DEFAULT_HIGH_WATERMARK 5U /* percent of budget */
#define UPG_DEFAULT_SPIN_US 0U /* see README: measure before you spin */
#define UPG_MAX_SPIN_US 100000U
/* The budget must hold at least this many pager pages. */
#define UPG_MIN_BUDGET_PAGES 16UL

/* ------------------------------------------------------------------------ */
/* slots.c: swap slot allocator                                              */
/* ------------------------------------------------------------------------ */

/*
 * Slots are numbered from 0; slot s holds one pager page at byte offset
 * s * page_size of the swap store.  Slots are handed out in runs of
 * consecutive numbers so that pages evicted together are written with one
 * request.  Not thread-safe: the caller serialises (swap store lock).
 */
#define UPG_NO_SLOT UINT32_MAX

struct upg_slots {
	uint64_t *bitmap;    /* bit set = slot in use; (capacity + 63) / 64 words;
			      * bits past capacity are 0; NULL if capacity 0 */
	uint32_t capacity;   /* slots the bitmap covers (all usable) */
	uint32_t limit;      /* capacity may grow up to this; <= UPG_NO_SLOT */
	uint32_t used;       /* bits set; invariant: used <= capacity */
	uint32_t cursor;     /* next-fit search start, < capacity or 0 */
	size_t bitmap_bytes; /* mapping size of bitmap (upg_os_alloc) */
};

/* Empty allocator with room for @capacity slots, growing up to @limit. */
int upg_slots_init(struct upg_slots *s, uint32_t capacity, uint32_t limit);
void upg_slots_destroy(struct upg_slots *s);
/*
 * Allocate a run of up to @want consecutive slots (0 is taken as 1): the
 * first full run from the next-fit cursor, else the longest shorter one
 * among the first UPG_SLOTS_MAX_RUNS free runs.
 * Returns the first slot and stores the run length (>= 1) in *@got, or
 * returns UPG_NO_SLOT and stores 0 when every slot up to capacity is used
 * (the caller may then grow the store and call upg_slots_grow()).
 */
uint32_t upg_slots_alloc(struct upg_slots *s, uint32_t want, uint32_t *got);
/* Free runs upg_slots_alloc looks at before it settles for the longest. */
#define UPG_SLOTS_MAX_RUNS 64
/* Free one slot.  Freeing a free slot is a bug: checked, aborts. */
void upg_slots_free(struct upg_slots *s, uint32_t slot);
/*
 * Extend capacity to @capacity; the new slots are free.  A capacity not
 * above the current one is a no-op.  0, -EINVAL past the limit, -ENOMEM.
 */
int upg_slots_grow(struct upg_slots *s, uint32_t capacity);
/* False for a free slot and for any slot at or past capacity. */
bool upg_slots_is_used(const struct upg_slots *s, uint32_t slot);
/* Debug: recount the bitmap and check used/cursor/capacity. */
bool upg_slots_is_valid(const struct upg_slots *s);

/* ------------------------------------------------------------------------ */
/* swapfile.c: the file or device behind the swap store                      */
/* ------------------------------------------------------------------------ */

struct upg_swapfile {
	int fd;
	bool direct;        /* opened O_DIRECT */
	bool is_device;     /* a block device: fixed size */
	uint64_t size;      /* bytes usable now (allocated) */
	uint64_t max_size;  /* 0 = unlimited (file), device size for a device */
	uint64_t grow_step; /* bytes added per fallocate */
};

/*
 * Open the swap store: @path (an existing file or block device) when not
 * NULL or "", else an O_TMPFILE (mode 0600, invisible, gone at exit) in
 * @dir.  O_DIRECT is used where the filesystem accepts it.  @max_bytes limits
 * the size (0 = unlimited; else at least @page_size, rounded down to pages).
 * An existing file starts at its size (rounded down to pages) and may grow;
 * a device's size is fixed.  Returns 0 or -errno; on error sf->fd is -1 and
 * @why gets a message naming the path and the variable to change.
 */
int upg_swapfile_open(struct upg_swapfile *sf, const char *path,
		      const char *dir, uint64_t max_bytes, size_t page_size,
		      char *why, size_t whylen);
/*
 * Make at least @bytes usable (fallocate in grow_step chunks, the last one
 * cut at max_size).  0; -ENOSPC past max_size, for a device, or when the
 * filesystem is full (size then counts the chunks that were allocated);
 * another -errno from fallocate.
 */
int upg_swapfile_reserve(struct upg_swapfile *sf, uint64_t bytes);
/* Tell the filesystem that [off, off+len) is garbage (punch hole); best effort. */
void upg_swapfile_discard(struct upg_swapfile *sf, uint64_t off, uint64_t len);
void upg_swapfile_close(struct upg_swapfile *sf);

#endif /* UPG_INTERNAL_H */
