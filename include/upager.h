/* SPDX-License-Identifier: MIT */
/*
 * upager.h - the public interface of upager, a user-space demand pager.
 *
 * upager reserves virtual regions, takes their page faults through
 * userfaultfd, keeps at most a budget of their pages resident and writes the
 * rest to a swap file through io_uring.  Everything a program needs is here:
 *
 *   struct upg_options opts;
 *   struct upg_runtime *rt;
 *   void *p;
 *
 *   upg_options_init(&opts);
 *   opts.budget = 256 << 20;
 *   upg_runtime_create(&opts, &rt);
 *   upg_region_reserve(rt, 1ULL << 40, &p);      // 1 TiB, paged on demand
 *   ...
 *   upg_region_release(rt, p);
 *   upg_runtime_destroy(rt);
 *
 * Conventions: every int function returns 0 or a negative errno value and
 * never sets errno; the malloc family returns NULL and sets errno, exactly
 * like malloc(3).  All functions are thread-safe unless said otherwise.
 */
#ifndef UPAGER_H
#define UPAGER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

#define UPG_VERSION_MAJOR 0
#define UPG_VERSION_MINOR 1
#define UPG_VERSION_STRING "0.1"

/* ------------------------------------------------------------------------ */
/* Options                                                                   */
/* ------------------------------------------------------------------------ */

/* How a page is taken out of a region without losing a concurrent write. */
enum upg_evict_mode {
	UPG_EVICT_AUTO = 0, /* MOVE where the kernel offers it, else COPY */
	UPG_EVICT_MOVE,     /* UFFDIO_MOVE into a staging area (Linux 6.8+) */
	UPG_EVICT_COPY,     /* write-protect, copy out, zap (Linux 5.7+) */
};

/* How the pager learns that a page with a valid swap copy was written. */
enum upg_dirty_mode {
	UPG_DIRTY_AUTO = 0, /* currently HASH */
	UPG_DIRTY_WP_FAULT, /* install clean pages write-protected; 1st write faults */
	UPG_DIRTY_HASH,     /* install them writable; compare with a fingerprint
			       of the swap copy at eviction (2^-64 chance per
			       changed page of taking it for unchanged) */
};

/*
 * Runtime options.  Initialise with upg_options_init(), then override fields
 * directly, by name with upg_options_set(), or from UPAGER_* environment
 * variables with upg_options_from_env().  Strings are borrowed, not copied:
 * they must outlive upg_runtime_create().
 */
struct upg_options {
	size_t budget;            /* UPAGER_BUDGET: max resident bytes (default 256M) */
	size_t page_size;         /* UPAGER_PAGE_SIZE: pager page, 4K..2M, power of two */
	const char *swap_dir;     /* UPAGER_SWAP_DIR: where the O_TMPFILE swap lives */
	const char *swap_path;    /* UPAGER_SWAP: existing file or block device instead */
	size_t swap_max;          /* UPAGER_SWAP_MAX: swap size limit, 0 = unlimited */
	unsigned handler_threads; /* UPAGER_THREADS: fault-handler threads (1..64) */
	unsigned low_watermark;   /* UPAGER_LOW_WATERMARK: % of budget kept free, start reclaim */
	unsigned high_watermark;  /* UPAGER_HIGH_WATERMARK: % of budget free when reclaim stops */
	unsigned spin_us;         /* UPAGER_SPIN_US: handler spins this long before sleeping */
	enum upg_evict_mode evict; /* UPAGER_EVICT: auto | move | copy */
	enum upg_dirty_mode dirty; /* UPAGER_DIRTY: auto | wp-fault */
	unsigned verbose;         /* UPAGER_VERBOSE: 0 quiet, 1 warnings+summary, 2 debug */
};

/* Fill @opts with the defaults. */
void upg_options_init(struct upg_options *opts);

/*
 * Set the option @name (the variable name without the UPAGER_ prefix, in
 * lower or upper case: "budget", "BUDGET", "page_size") from the string
 * @value ("512M", "2G", "move", ...).  On error returns -EINVAL and, when
 * @err is not NULL, writes a message naming the variable, its value and an
 * example of a good value into @err (at most @errlen bytes).  Returns
 * -ENOENT for an unknown name.
 */
int upg_options_set(struct upg_options *opts, const char *name,
		    const char *value, char *err, size_t errlen);

/* Apply every UPAGER_* environment variable that is set.  Errors as above. */
int upg_options_from_env(struct upg_options *opts, char *err, size_t errlen);

/* Check the options as a whole (ranges, watermark order).  Errors as above. */
int upg_options_validate(const struct upg_options *opts, char *err,
			 size_t errlen);

/* Parse "4096", "64K", "512M", "2G", "1T" (binary units).  0 or -EINVAL. */
int upg_parse_size(const char *s, size_t *out);

/* Print one line per option: name, value, environment variable. */
void upg_options_print(const struct upg_options *opts, FILE *out);

/* ------------------------------------------------------------------------ */
/* Runtime and regions                                                       */
/* ------------------------------------------------------------------------ */

struct upg_runtime;

/*
 * Start a pager: open the userfaultfd, the swap store, the handler and
 * reclaim threads.  If the process may not use userfaultfd, the runtime
 * still starts, unpaged (regions are plain anonymous memory), a warning
 * naming the fix is printed once when opts->verbose > 0, and
 * upg_runtime_is_paged() returns false.  Returns -EINVAL for bad options.
 */
int upg_runtime_create(const struct upg_options *opts, struct upg_runtime **rtp);

/* Stop the threads, release every region and the swap store. */
void upg_runtime_destroy(struct upg_runtime *rt);

/* True when regions of @rt are really paged (userfaultfd is usable). */
bool upg_runtime_is_paged(const struct upg_runtime *rt);

/* Why the runtime is unpaged, or "" when it is paged. */
const char *upg_runtime_unpaged_reason(const struct upg_runtime *rt);

/* The pager page size of @rt, in bytes. */
size_t upg_runtime_page_size(const struct upg_runtime *rt);

/*
 * Bytes that @rt can still bring in before it must reclaim: its free budget
 * above the high watermark.  0 while reclaim runs or is about to; SIZE_MAX
 * when @rt is unpaged (no budget).  A cheap, racy reading, for a cache or
 * an allocator that keeps memory it could give back: keep it while there
 * is room, give it back when there is none, before the pager has to write
 * anything out.
 */
size_t upg_budget_room(const struct upg_runtime *rt);

/*
 * Count @bytes of memory that the caller holds outside the regions (its
 * own tables, say) against @rt's budget, or give back an earlier charge
 * (@bytes < 0): the pager then keeps that much less resident, so that the
 * process as a whole stays within the budget.  upager's allocator charges
 * its own metadata this way.  At most half of the budget is taken off for
 * charges; more is still recorded, but no longer counted.  Returns 0,
 * -EINVAL when more is given back than was charged; does nothing when @rt
 * is unpaged.
 */
int upg_budget_charge(struct upg_runtime *rt, int64_t bytes);

/*
 * Reserve a region of @len bytes (rounded up to the pager page size), aligned
 * to the pager page size, zero-filled on first touch.  Reserving is cheap for
 * any size: nothing is allocated until pages are touched.  *@addrp receives
 * the address.  Returns -EINVAL for len 0, -ENOMEM when no address space.
 */
int upg_region_reserve(struct upg_runtime *rt, size_t len, void **addrp);

/* Release a region returned by upg_region_reserve (its swap slots too). */
int upg_region_release(struct upg_runtime *rt, void *addr);

/* Advice for upg_advise(). */
enum upg_advice {
	UPG_ADV_WILLNEED = 1, /* read the range in now (prefetch, asynchronous) */
	UPG_ADV_DONTNEED,     /* discard: contents become zero, slots freed, no I/O */
	UPG_ADV_COLD,         /* evict the range now (written to swap if dirty) */
	UPG_ADV_PIN,          /* keep the range resident until UNPIN (faults it in) */
	UPG_ADV_UNPIN,        /* let the range be evicted again */
	/*
	 * The range is garbage (freed memory that may be reused soon): the
	 * pages not mapped now -- swapped, inactive, in flight -- are
	 * discarded without I/O, so neither their write nor their read back
	 * is ever paid; mapped pages are left as they are, for reuse at no
	 * cost.  Contents afterwards: unchanged or zero, page by page.  No
	 * TLB flush, no system call.
	 */
	UPG_ADV_FREE,
	/*
	 * The range is about to be written for the first time: its pages
	 * that hold nothing yet are mapped now, zeroed and writable, by the
	 * calling thread in runs of one system call each, instead of one
	 * fault through a handler per page.  A hint: only while the budget
	 * has room above the low watermark (it never makes reclaim evict
	 * anything), pages holding data are left alone, and it may stop
	 * early; the return value is 0 all the same.
	 */
	UPG_ADV_POPULATE,
	/*
	 * The range goes idle: its mapped pages are unmapped now but stay
	 * resident (INACTIVE), first in line when reclaim needs room.  A
	 * touch before then is a soft fault -- no I/O -- and maps the page
	 * back; nothing is written to swap by this call.  Like Linux's
	 * MADV_COLD, where COLD here is MADV_PAGEOUT.
	 */
	UPG_ADV_DEACTIVATE,
};

/*
 * Apply @advice to [@addr, @addr + @len), which must lie inside one region;
 * @addr is rounded down and the end up to pager pages, except for DONTNEED
 * and FREE, which only discard whole pages inside the range.  Returns -EINVAL for a
 * range outside the regions, -ENOMEM when PIN would exceed the budget.
 */
int upg_advise(struct upg_runtime *rt, void *addr, size_t len, int advice);

/* ------------------------------------------------------------------------ */
/* Statistics                                                                */
/* ------------------------------------------------------------------------ */

/* Fault kinds, for the latency histogram. */
enum upg_fault_kind {
	UPG_FAULT_ZERO = 0, /* first touch: zero-fill */
	UPG_FAULT_SOFT,     /* inactive page mapped back, no I/O */
	UPG_FAULT_MAJOR,    /* page read from swap */
	UPG_FAULT_WP,       /* first write to a clean page */
	UPG_FAULT_KINDS
};

/*
 * Latency histograms have four buckets per power of two of nanoseconds,
 * so that a quantile read off one is within 25% of the truth.  Bucket
 * i >= 8 counts [2^o + s * 2^(o-2), 2^o + (s+1) * 2^(o-2)) ns, where
 * o = i / 4 and s = i % 4; bucket i < 4 counts [i, i+1) ns; 4-7 are unused.
 */
#define UPG_LATENCY_OCTAVES 40
#define UPG_LATENCY_BUCKETS (4 * UPG_LATENCY_OCTAVES)

/*
 * Fields are only ever added at the end, so that a program built against
 * an older upager.h works with a newer library: see upg_stats_get().
 */
struct upg_stats {
	uint64_t page_size;
	uint64_t budget_pages;    /* as configured */
	uint64_t charged_bytes;   /* held outside the regions and counted
				     against the budget (upg_budget_charge()) */
	/* pages by state (a snapshot) */
	uint64_t resident_pages;  /* active + inactive + writeback + reading */
	uint64_t active_pages;
	uint64_t inactive_pages;
	uint64_t writeback_pages;
	uint64_t reading_pages;
	uint64_t swapped_pages;   /* data only in swap */
	uint64_t pinned_pages;
	uint64_t peak_resident_pages;
	/* events since start */
	uint64_t faults[UPG_FAULT_KINDS];
	uint64_t faults_duplicate;   /* messages for a page already being served */
	uint64_t faults_waited;      /* faults that had to wait for reclaim */
	uint64_t deactivations;      /* active -> inactive */
	uint64_t pages_written;      /* pages written to swap */
	uint64_t pages_read;         /* pages read from swap */
	uint64_t bytes_written;
	uint64_t bytes_read;
	uint64_t write_requests;     /* I/O requests (a batch may hold many pages) */
	uint64_t read_requests;
	uint64_t clean_drops;        /* evicted without I/O: swap copy still valid */
	uint64_t discards;           /* pages discarded (DONTNEED, munmap, release) */
	uint64_t swap_full;          /* evictions refused because swap was full */
	uint64_t io_errors;          /* failed swap requests (after retries) */
	uint64_t io_retries;
	uint64_t poisoned;           /* pages failed with SIGBUS */
	uint64_t swap_slots_used;
	uint64_t swap_slots_total;
	uint64_t events_fork, events_remap, events_remove, events_unmap;
	uint64_t prefetch_issued;    /* pages read ahead of a fault */
	uint64_t prefetch_hits;      /* of which used: touched while staged (a
					soft fault), or mapped and stepped over by
					the stream that asked for them */
	uint64_t zero_filled_ahead;  /* pages zero-filled ahead of a sequential writer */
	uint64_t zero_mapped_around; /* EMPTY pages given the zero page around a
					first touch: no fault of their own */
	uint64_t populated;          /* pages zero-filled by UPG_ADV_POPULATE: no fault */
	uint64_t zero_drops;         /* evicted all-zero pages: EMPTY, never written */
	uint64_t writable_installs;  /* UPAGER_DIRTY=wp-fault: clean pages mapped
					writable (and so dirty) because they
					were written last time: no write-protect
					fault to take */
	uint64_t deactivation_flushes; /* unmapping calls (each one TLB flush)
					  that made the deactivations: runs of
					  pages move out together */
	uint64_t latency[UPG_FAULT_KINDS][UPG_LATENCY_BUCKETS];
	/*
	 * Swap reads a faulting thread waits for, from their submission to
	 * their completion being seen: the part of a major fault's latency
	 * spent in the I/O path (the rest is the pager's own work).
	 */
	uint64_t read_latency[UPG_LATENCY_BUCKETS];
	/* what the running kernel offered, and what is used */
	bool paged;
	bool evict_move;             /* UFFDIO_MOVE in use */
	bool has_poison;             /* UFFDIO_POISON available */
	/*
	 * The machine: how long an idle vCPU of this KVM guest polls before
	 * it halts (cpuidle-haltpoll's guest_halt_poll_ns; Linux's default
	 * 200000), 0 where the module is loaded but is not the active cpuidle
	 * driver, -1 where there is no such module.  At 0 a fault's wake-ups
	 * across vCPUs each go through the host (README, *Guest idle polling*).
	 */
	int64_t guest_halt_poll_ns;
	/*
	 * Dirty tracking by contents (UPAGER_DIRTY=hash): clean pages are
	 * mapped writable, and when one leaves RAM it is compared with a
	 * fingerprint of its swap copy.  Of those evictions, how many found
	 * the page as it came in (dropped, no write) or changed (written).
	 */
	bool dirty_by_contents;
	uint64_t sum_unchanged;
	uint64_t sum_changed;
	/*
	 * Major faults of pages evicted at most half a budget of evictions
	 * earlier: in the working set after all, so kept two more turns of
	 * the active list than a page read back late.
	 */
	uint64_t refaults_kept;
	/*
	 * Active pages are on probation until seen in use (touched while
	 * inactive, or back from swap soon after they left): then they are
	 * protected, up to 7/8 of the resident pages.  How many are
	 * protected now, and how many were demoted to probation since start
	 * (the oldest, when the protected ones were over their share).
	 */
	uint64_t protected_pages;
	uint64_t demotions;
	/*
	 * Windows of a stream read ahead at the first touch of their
	 * predecessor's marker page, while the program was still using it
	 * (prefetch.c): not at a fault that waits for them.
	 */
	uint64_t prefetch_async;
};

/*
 * Take a snapshot of the statistics: upg_stats_get(rt, &st).  It passes the
 * size of the struct upg_stats the program was built with, and fields are
 * only ever added at its end, so a program built against an older upager.h
 * keeps working with a newer library (and gets the fields it knows), and
 * one built against a newer header reads zero in fields an older library
 * lacks.  Returns 0, or -EINVAL.
 */
int upg_stats_snapshot(struct upg_runtime *rt, struct upg_stats *st, size_t size);
#define upg_stats_get(rt, st) upg_stats_snapshot((rt), (st), sizeof(*(st)))

/*
 * The latency below which a fraction @q (0..1) of faults of @kind were served,
 * in nanoseconds, read off the histogram (upper edge of the bucket).
 */
uint64_t upg_stats_latency_quantile(const struct upg_stats *st,
				    enum upg_fault_kind kind, double q);

/* The same for the swap reads of major faults (read_latency). */
uint64_t upg_stats_read_latency_quantile(const struct upg_stats *st, double q);

/* Print a human-readable summary: upg_stats_print(&st, out). */
void upg_stats_print_sized(const struct upg_stats *st, size_t size, FILE *out);
#define upg_stats_print(st, out) \
	upg_stats_print_sized((st), sizeof(*(st)), (out))

/* ------------------------------------------------------------------------ */
/* Allocator                                                                 */
/* ------------------------------------------------------------------------ */

/*
 * upg_malloc() and its family serve memory from managed regions of one
 * process-wide heap, so everything a program allocates is paged by upager.
 * They behave exactly like their C library namesakes (NULL and errno on
 * failure; posix_memalign returns the error number), and are what the
 * LD_PRELOAD shim (libupager-preload.so) puts behind malloc(3).
 *
 * The heap takes its regions from one runtime: the one given to
 * upg_alloc_init() before the first allocation or, when the program
 * allocates first, one created from the UPAGER_* environment variables
 * (upg_options_from_env).  A bad UPAGER_* value is then fatal: the message
 * is printed and the process exits with status 2, as `upager run` does.
 * With UPAGER_STATS=1 that runtime's and the heap's statistics are printed
 * on stderr when the process exits.
 *
 * All allocator metadata lives outside the managed regions, so malloc and
 * free never fault a page in.  Free pages are discarded through the pager
 * (never written to swap); a few MiB of recently freed memory are kept
 * undiscarded so that a free/malloc cycle does not fault every time.
 * Passing free() a pointer that upager did not allocate, or freeing twice,
 * prints a message naming the pointer and aborts.
 */

/*
 * Make the process heap take its regions from @rt, which must outlive every
 * allocation.  Returns -EBUSY if the heap is already running (something was
 * allocated already, or upg_alloc_init was called before), -ENOMEM.
 */
int upg_alloc_init(struct upg_runtime *rt);

/* The runtime behind the process heap; NULL before the first allocation,
 * or when no runtime could be created (the heap then uses plain memory). */
struct upg_runtime *upg_alloc_runtime(void);

void *upg_malloc(size_t size);
void upg_free(void *ptr);
void *upg_calloc(size_t nmemb, size_t size);
void *upg_realloc(void *ptr, size_t size);
void *upg_reallocarray(void *ptr, size_t nmemb, size_t size);
/* @alignment: a power of two multiple of sizeof(void *); returns 0, EINVAL
 * or ENOMEM (positive, like posix_memalign(3)).  Any alignment works. */
int upg_posix_memalign(void **memptr, size_t alignment, size_t size);
/* @alignment: a power of two, else NULL with errno EINVAL. */
void *upg_aligned_alloc(size_t alignment, size_t size);
/* Obsolete forms, as in glibc: memalign rounds @alignment up to a power of
 * two; valloc aligns to 4 KiB; pvalloc also rounds @size up to 4 KiB. */
void *upg_memalign(size_t alignment, size_t size);
void *upg_valloc(size_t size);
void *upg_pvalloc(size_t size);
/* Bytes usable at @ptr (>= the size asked for); 0 for NULL. */
size_t upg_malloc_usable_size(void *ptr);

struct upg_alloc_stats {
	uint64_t mapped_bytes;    /* address space reserved for the heap */
	uint64_t slab_bytes;      /* in slabs of small objects (used or not) */
	uint64_t large_bytes;     /* in large allocations (whole pages) */
	uint64_t free_bytes;      /* in free spans */
	uint64_t dirty_bytes;     /* free but not yet discarded */
	uint64_t slabs;           /* slabs now */
	uint64_t discards;        /* discard requests sent to the pager */
	uint64_t discarded_bytes; /* bytes they covered */
	uint64_t large_allocs;    /* large allocations since start */
	uint64_t large_frees;
	uint64_t grow_in_place;   /* realloc grew a large block where it was */
	uint64_t shrink_in_place;
	uint64_t realloc_moves;   /* realloc had to copy a large block */
	uint64_t cache_refills;   /* thread cache refills from slabs */
	uint64_t cache_flushes;   /* thread cache returns to slabs */
	uint64_t thread_caches;   /* threads with a cache now */
	/* anonymous mappings of the shim (upg_mmap), all 0 when off */
	uint64_t mmap_bytes;      /* intercepted mappings now */
	uint64_t mmap_peak_bytes; /* their peak */
	uint64_t mmap_calls;      /* mmap calls served from managed regions */
	uint64_t mmap_passed;     /* mmap calls left to the kernel */
	uint64_t mmap_partial;    /* munmap or mremap shrink of part of one */
	uint64_t mremap_in_place; /* mremap grown or shrunk where it was */
	uint64_t mremap_moves;    /* mremap that copied to a new place */
	uint64_t mmap_detached_bytes; /* handed to the kernel (mprotect, MAP_FIXED) */
};

/*
 * Anonymous memory mapped by the program: the mmap family of the LD_PRELOAD
 * shim.  Programs with allocators of their own (compilers, language
 * runtimes) take most of their memory straight from mmap(2); these serve
 * it from managed regions too, so the budget holds for them.  Each behaves
 * like its namesake in the C library (MAP_FAILED or -1 with errno set).
 *
 * Served by upager: private anonymous mappings, readable and writable, of
 * at least UPAGER_MMAP_MIN bytes (default 16K), with no address hint and
 * no flag but MAP_NORESERVE; munmap, mremap (grow, shrink, move) and
 * madvise(MADV_DONTNEED, MADV_FREE) of them, in whole or in part.
 * Everything else goes to the kernel unchanged.  mprotect to anything but
 * read-write, MAP_FIXED over them and the fork-related madvise hand the
 * pages concerned to the kernel first, contents kept: from then on they
 * are ordinary, unpaged memory.  UPAGER_MMAP=0 turns interception off
 * (default on whenever the pager is paged).
 *
 * @caller is the return address of the interposed call: calls made by
 * libupager itself (the pager's own mappings) go straight to the kernel.
 * NULL: a call of the program.
 */
void *upg_mmap(void *addr, size_t len, int prot, int flags, int fd,
	       long off, const void *caller);
int upg_munmap(void *addr, size_t len, const void *caller);
void *upg_mremap(void *old_addr, size_t old_len, size_t new_len, int flags,
		 void *new_addr, const void *caller);
int upg_mprotect(void *addr, size_t len, int prot, const void *caller);
int upg_madvise(void *addr, size_t len, int advice, const void *caller);

/*
 * Check an option of the allocator ("mmap", "mmap_min", in either case,
 * without the UPAGER_ prefix) before it is put in the environment.
 * 0; -EINVAL with a message naming the variable, its value and a good
 * example in @err; -ENOENT if @name is not an allocator option.
 */
int upg_alloc_option_check(const char *name, const char *value, char *err,
			   size_t errlen);

/* Statistics of the process heap (all zero before the first allocation). */
int upg_alloc_stats_get(struct upg_alloc_stats *st);
void upg_alloc_stats_print(const struct upg_alloc_stats *st, FILE *out);

#ifdef __cplusplus
}
#endif
#endif /* UPAGER_H */
