/* SPDX-License-Identifier: MIT */
/*
 * pager.h - the pager's data structures: page table, frames, regions,
 * runtime.  Shared by runtime.c, region.c, frame.c, fault.c, reclaim.c,
 * advise.c, fork.c and stats.c.
 *
 * Two tables describe memory, as struct page and the page tables do in the
 * kernel:
 *
 *   - every pager page of every region has a struct upg_pte (16 bytes) in
 *     its region's page table, which says where the data is (state) and
 *     holds its swap slot and, while resident, its frame;
 *   - every unit of budget is a struct upg_frame.  A page needs a frame to
 *     be resident (ACTIVE, INACTIVE, WRITEBACK, READING); frames link the
 *     resident pages into the LRU lists.  The frame count is the budget, so
 *     "resident <= budget" holds by construction.
 *
 * A frame that is INACTIVE or WRITEBACK holds a staging slot, a page-sized
 * place in the staging area where its page's data sits while it is
 * unmapped from its region (staging.c).  Slots are not tied to frames: a
 * run of them is taken for each unmap, so that the consecutive pages of a
 * region leave it by one move, whatever their frames.
 */
#ifndef UPG_PAGER_H
#define UPG_PAGER_H

#include "internal.h"
#include "ring.h"
#include "uffd.h"

#include <pthread.h>
#include <stdatomic.h>

/* ------------------------------------------------------------------------ */
/* Page table entries                                                        */
/* ------------------------------------------------------------------------ */

enum upg_page_state {
	PS_EMPTY = 0, /* no data anywhere: a touch zero-fills */
	PS_ACTIVE,    /* mapped in the region */
	PS_INACTIVE,  /* unmapped, data in the frame's staging slot */
	PS_WRITEBACK, /* unmapped, staging slot being written to swap */
	PS_SWAPPED,   /* only in swap slot */
	PS_READING,   /* swap slot being read into an I/O buffer */
};

/* pte flags */
#define PTE_DIRTY 0x01   /* written since the slot was valid (or no slot) */
#define PTE_PINNED 0x02  /* PIN advice: frame kept off the LRU lists */
#define PTE_DISCARD 0x04 /* discarded while I/O was in flight: drop on completion */
#define PTE_IO 0x08      /* a write of this page's staging slot is in flight */
#define PTE_ZAPPING 0x10 /* copied out, being unmapped by the pager itself */
#define PTE_PREFETCHED 0x20 /* read ahead, not touched since */
#define PTE_WAITED 0x40  /* READING: a thread faulted on it and waits */
#define PTE_PROBE 0x80   /* mapped write-protected although write_hist
			    predicted a write: its fate grades the predictor */

#define UPG_NO_FRAME UINT32_MAX

struct upg_pte {
	atomic_uchar lock; /* page lock: guards everything below */
	uint8_t state;     /* enum upg_page_state */
	uint8_t flags;     /* PTE_* */
	/*
	 * write_hist: evidence that the page is written while resident, 0..3
	 * (fault.c, predict_write()).  Set to 3 by an observed first write
	 * to a clean page; each prediction spends one.
	 */
	uint8_t write_hist;
	/*
	 * slot: the swap slot holding a copy of the page, or UPG_NO_SLOT.
	 * SWAPPED and READING pages always have one.  An ACTIVE or INACTIVE
	 * page keeps its slot while clean, so it can be dropped without I/O;
	 * the first write frees it (unless PTE_IO: then the write completion
	 * frees it, so the slot cannot be reused under an in-flight write).
	 */
	uint32_t slot;
	/* frame: valid iff the state is ACTIVE, INACTIVE, WRITEBACK or READING */
	uint32_t frame;
	/*
	 * evicted_at: rt->eviction_clock when the page last left RAM; read
	 * by the major fault that brings it back (page_refaulted()).
	 */
	uint32_t evicted_at;
};

static inline bool pte_trylock(struct upg_pte *p)
{
	return !atomic_exchange_explicit(&p->lock, 1, memory_order_acquire);
}

void pte_lock_slow(struct upg_pte *p);

static inline void pte_lock(struct upg_pte *p)
{
	if (unlikely(!pte_trylock(p)))
		pte_lock_slow(p);
}

static inline void pte_unlock(struct upg_pte *p)
{
	atomic_store_explicit(&p->lock, 0, memory_order_release);
}

/* Page counts by state, kept so that a statistics snapshot is O(1). */
#define PTE_STATES 6

struct upg_runtime;
static inline void pte_set_state(struct upg_runtime *rt, struct upg_pte *p,
				 uint8_t state);

static inline bool pte_resident(const struct upg_pte *p)
{
	return p->state == PS_ACTIVE || p->state == PS_INACTIVE ||
	       p->state == PS_WRITEBACK || p->state == PS_READING;
}

/* ------------------------------------------------------------------------ */
/* Regions                                                                   */
/* ------------------------------------------------------------------------ */

struct upg_region {
	_Atomic uintptr_t base; /* current start; changes on mremap */
	size_t len;             /* bytes, a multiple of the pager page */
	size_t npages;
	struct upg_pte *ptes;   /* npages entries, lazily backed mapping */
	size_t ptes_bytes;
	uint32_t id;            /* index in runtime->region_by_id */
	atomic_bool dead;       /* released or unmapped: no new work */
	atomic_uint inflight;   /* I/O requests referring to this region */
	struct upg_region *next_dead; /* region_reap_dead()'s list */
};

static inline uintptr_t region_page_addr(const struct upg_region *r,
					 size_t page, size_t page_size)
{
	return atomic_load_explicit(&r->base, memory_order_relaxed) +
	       page * page_size;
}

/* ------------------------------------------------------------------------ */
/* Frames                                                                    */
/* ------------------------------------------------------------------------ */

enum upg_frame_list {
	FL_FREE = 0,
	FL_ACTIVE,     /* mapped, and seen in use: the protected segment */
	FL_INACTIVE,
	FL_ISOLATED, /* owned by one operation (I/O, pinned): on no list */
	FL_PROBATION,  /* mapped, not yet seen in use since it came in */
};

#define UPG_NO_STAGE UINT32_MAX
#define ZAP_QUEUE_MAX 256

struct upg_frame {
	uint32_t prev, next; /* list links (frame numbers), of the LRU lists or
			       the free list; guarded by lru_lock */
	uint32_t region_id;  /* owner page, valid unless FL_FREE */
	uint32_t page_lo;    /* page index, low and high 32 bits */
	uint32_t page_hi;
	/*
	 * stage: the staging slot holding the page's data, or UPG_NO_STAGE.
	 * Valid iff the page is INACTIVE or WRITEBACK -- and for an ACTIVE
	 * page whose staged copy a write-back still reads (PTE_IO).  Set
	 * and cleared by the owner of the page lock.
	 */
	uint32_t stage;
	uint8_t list;        /* enum upg_frame_list */
	uint8_t passes;      /* times it is still to be passed over at the
				head of the active list (rotated, not
				deactivated): 1 after a soft fault
				(page_reactivate), REFAULT_PASSES after a
				quick refault (page_refaulted); guarded by
				lru_lock */
	/*
	 * rt->sums[frame] is the fingerprint of the page's swap slot
	 * (pagesum.c): set only while the page is clean (not PTE_DIRTY)
	 * and its slot valid, or its staged copy is being written to a new
	 * one; cleared by page_mark_dirty() and when a write-back begins.
	 * Guarded by the page lock, like the frame.
	 */
	uint8_t summed;
};

/* A page's fingerprint (pagesum.c): equal for equal contents. */
struct upg_pagesum {
	uint64_t h[2];
};

struct upg_list {
	uint32_t head, tail; /* oldest at head */
	uint32_t count;
};

/* ------------------------------------------------------------------------ */
/* Handler threads and I/O requests                                          */
/* ------------------------------------------------------------------------ */

#define IO_BUFS_PER_HANDLER 64
/* Most pages one zero-fill fault fills (and 256 KiB at most). */
#define ZERO_RUN_MAX 64
/* Sequential writers of fresh memory one handler follows at once. */
#define ZERO_STREAMS 4
#define PENDING_MAX 4096

/* A fault that could not be served yet (no frame, no buffer, page busy). */
struct upg_pending {
	uintptr_t addr;
	uint64_t flags;  /* UFFD_PAGEFAULT_FLAG_* */
	uint64_t t0;     /* when the message was read */
	uint32_t tries;
	uint8_t prefetch;
};

/*
 * A message read while a REMAP waits for regions_lock: applied after it,
 * in the order read, so that no event or fault overtakes the move.
 */
#define HELD_MAX 256
struct upg_held {
	struct uffd_msg msg;
	uint64_t t0;
};

struct upg_read {
	struct upg_region *region;
	size_t page;
	uint32_t slot;
	uint32_t tries;
	uint64_t t0;
	uint64_t t_submit; /* when its read was queued (stats: read_latency) */
	bool write_fault; /* install writable and dirty */
	bool prefetch;    /* no faulting thread is waiting */
	bool map;         /* prefetch of a proven stream: map, don't stage */
	bool busy;
	bool install_retry; /* read done, UFFDIO_COPY got EAGAIN: retry */
	unsigned run_next;  /* next buffer of one vectored read, or UINT32_MAX */
};

/*
 * A page's key in the stride detectors: its region's id above its page
 * number, so that keys of one region are ordered and one apart per page.
 */
#define PAGE_KEY_SHIFT 40
static inline uint64_t page_key(uint32_t region_id, size_t page)
{
	return (uint64_t)region_id << PAGE_KEY_SHIFT | page;
}

static inline uint32_t page_key_region(uint64_t key)
{
	return (uint32_t)(key >> PAGE_KEY_SHIFT);
}

static inline size_t page_key_page(uint64_t key)
{
	return (size_t)(key & ((1ULL << PAGE_KEY_SHIFT) - 1));
}

/* prefetch.c: stride detection over a handler's recent major faults */
#define PREFETCH_MIN_WINDOW 2
#define PREFETCH_MAX_WINDOW 32
#define PREFETCH_MAP_WINDOW 8  /* from this window on, map prefetched pages */

struct upg_stride {
	uint64_t hist[8];   /* page_key()s of recent major faults */
	uint64_t last_use;  /* streams' clock when it last took a fault */
	unsigned n;         /* entries in hist */
	unsigned window;    /* pages to prefetch ahead */
	unsigned issued;    /* prefetches since the window was last judged */
	unsigned hits;      /* of which touched */
	int64_t stride;     /* of the current stream, 0 if none */
	uint64_t expect;    /* key of the fault that would continue it */
	/*
	 * Key of the window's marker page, PREFETCH_NO_TRIGGER if none: read
	 * ahead like the rest but staged, not mapped, so that its first touch
	 * is a fault, which reads the next window while this one is used.
	 */
	uint64_t trigger;
	unsigned mapped;    /* pages of the last window that were mapped */
};
#define PREFETCH_NO_TRIGGER UINT64_MAX

void stride_init(struct upg_stride *s);
/* Record a major fault at @key; returns the detected stride, or 0. */
int64_t stride_observe(struct upg_stride *s, uint64_t key);
/* The same, but a fault that continues the current stream keeps it. */
int64_t stride_next(struct upg_stride *s, uint64_t key);
/* Grow or shrink the window from its hit rate. */
void stride_feedback(struct upg_stride *s);

/*
 * Several streams at once (prefetch.c): a loop over the columns of several
 * arrays interleaves their faults, and one history of them shows no stride.
 * A fault goes to the stream it continues, else to the nearby stream it is
 * nearest to, else to the history of all faults (which finds one stream of
 * any stride) while it starts a nearby stream of its own.
 */
#define PREFETCH_STREAMS 8
/* Nearby: at most this many pages from the stream's last fault. */
#define PREFETCH_STREAM_GAP 64
struct upg_streams {
	struct upg_stride all;                   /* every fault */
	struct upg_stride s[PREFETCH_STREAMS];   /* nearby streams */
	uint64_t clock;
};
void streams_init(struct upg_streams *ss);
/* The stream a major fault at @key belongs to (an old one is reused). */
struct upg_stride *streams_pick(struct upg_streams *ss, uint64_t key);
/* A page read ahead near @key was used: credit the stream nearest to it. */
void streams_hit(struct upg_streams *ss, uint64_t key);
/* The stream whose marker page is @key, or NULL. */
struct upg_stride *streams_triggered(struct upg_streams *ss, uint64_t key);

struct upg_handler {
	struct upg_runtime *rt;
	pthread_t thread;
	unsigned index;
	struct upg_ring ring;
	int wake_fd;                 /* eventfd: frames freed, stop, work queued */
	char *bufs;                  /* IO_BUFS_PER_HANDLER pager pages */
	size_t bufs_bytes;
	struct upg_read reads[IO_BUFS_PER_HANDLER];
	unsigned free_bufs[IO_BUFS_PER_HANDLER];
	unsigned nfree_bufs;
	unsigned last_buffer;        /* taken by the latest fault_major() */
	/* iovecs of vectored reads prepared since the last submit */
	struct iovec iov_pool[IO_BUFS_PER_HANDLER];
	unsigned iov_used;
	struct upg_pending *pending; /* PENDING_MAX entries */
	unsigned npending;
	struct upg_held *held;       /* HELD_MAX entries, a ring */
	/*
	 * Messages read and not yet applied, in order: behind a REMAP that
	 * waits for regions_lock, or read while map_page() finished a page.
	 */
	unsigned held_head, nheld;
	bool starved;                /* counted in rt->frame_waiters */
	struct upg_streams streams;  /* of major faults: prefetch */
	struct upg_stride zero_stride; /* of zero-fill writes: fill ahead */
	/*
	 * Where each of the last ZERO_STREAMS writers of fresh memory will
	 * fault next if it goes on in order (the page_key() of the page after
	 * the last one zero-filled for it), most recent first; UINT64_MAX when
	 * unused.  Threads that fill their own buffers side by side share a
	 * handler: with one remembered position they would overwrite it at
	 * every turn, and none would be filled ahead.
	 */
	uint64_t zero_next[ZERO_STREAMS];
	unsigned ninstall_retry;     /* reads with install_retry set */
	/*
	 * The uffd may have messages: set by its poll completion (and at
	 * start), cleared before a drain.  The loop reads the uffd only when
	 * it is set, so that spinning costs no system call.
	 */
	bool uffd_ready;
};

/* ------------------------------------------------------------------------ */
/* The runtime                                                               */
/* ------------------------------------------------------------------------ */

#define MAX_REGIONS 65536

struct upg_counters {
	atomic_uint_least64_t faults[UPG_FAULT_KINDS];
	atomic_uint_least64_t faults_duplicate, faults_waited;
	atomic_uint_least64_t deactivations, deactivation_flushes;
	atomic_uint_least64_t pages_written, pages_read;
	atomic_uint_least64_t write_requests, read_requests;
	atomic_uint_least64_t clean_drops, discards, swap_full;
	atomic_uint_least64_t refaults_kept;
	atomic_uint_least64_t demotions;
	atomic_uint_least64_t io_errors, io_retries, poisoned;
	atomic_uint_least64_t events_fork, events_remap, events_remove,
		events_unmap;
	atomic_uint_least64_t peak_resident;
	atomic_uint_least64_t prefetch_issued, prefetch_hits, prefetch_async;
	atomic_uint_least64_t zero_filled_ahead, zero_mapped_around, zero_drops;
	atomic_uint_least64_t populated;
	atomic_uint_least64_t staging_zaps, staging_zap_batches;
	atomic_uint_least64_t writable_installs;
	/* evictions of clean pages mapped writable: found as they came in
	   (no write), or changed after all */
	atomic_uint_least64_t sum_unchanged, sum_changed;
	atomic_uint_least64_t latency[UPG_FAULT_KINDS][UPG_LATENCY_BUCKETS];
	atomic_uint_least64_t read_latency[UPG_LATENCY_BUCKETS];
};

struct upg_runtime {
	struct upg_options opts;
	size_t page_size;
	unsigned page_shift;
	bool paged;
	char unpaged_reason[256];
	/*
	 * one_sys_page: a pager page is one system page, so an ioctl over a
	 * run of pages that the kernel stops midway (an event queued) stops
	 * between pages.  With larger pages it may stop inside one, leaving it
	 * half mapped; only the single-page paths, which finish such a page
	 * before they let go of its lock (fault.c, map_page()), may map them.
	 * So run-ahead, fault-around and POPULATE are off, and so are runs of
	 * moves.
	 */
	bool one_sys_page;
	bool use_move; /* evict with UFFDIO_MOVE, else protect-copy-zap */
	bool move_runs; /* ... several pages per move (pager page = system page) */
	bool soft_move; /* soft faults move dirty pages back, not copy them:
			   pager pages larger than a system page */
	/*
	 * Dirty tracking by contents (UPAGER_DIRTY=hash, pagesum.c): clean
	 * pages are mapped writable, never write-protected, and compared
	 * with the fingerprint of their slot when they leave.  Otherwise
	 * write-protect faults and write prediction (fault.c).
	 */
	bool dirty_by_sum;
	uint32_t *sum_key;     /* random, page_size + 16 bytes */
	size_t sum_key_bytes;
	struct upg_pagesum *sums; /* per frame, see upg_frame.summed */
	size_t sums_bytes;
	/*
	 * How long an idle vCPU of this KVM guest polls before it halts
	 * (cpuidle-haltpoll's guest_halt_poll_ns), read once at start; 0
	 * where that driver is loaded but not the active one, -1 where it is
	 * absent.  Reported, not acted on: at 0 every
	 * wake-up of a fault across vCPUs goes through the host.
	 */
	int64_t guest_halt_poll_ns;

	struct upg_uffd uffd;
	/*
	 * Held for reading by every pager thread while it changes pages, and
	 * by the API calls that do; held for writing across fork() (fork.c),
	 * so that the child's copy of the tables is a consistent snapshot.
	 * Prefers readers: a handler must get it while fork waits for reclaim.
	 */
	pthread_rwlock_t fork_lock;
	/*
	 * The staging area has a userfaultfd of its own: UFFDIO_MOVE needs its
	 * destination registered, but zapping a staging slot must not send
	 * REMOVE events to the fault handlers, and a touch of an empty staging
	 * slot (a bug) must raise SIGBUS rather than wait for a handler.
	 */
	struct upg_uffd staging_uffd;
	/*
	 * Self zaps: MADV_DONTNEED that the pager itself issues on a region
	 * (protect-copy-zap eviction) produces a REMOVE event like the
	 * program's own would; the handler recognises ours by range here.
	 */
	pthread_mutex_t selfzap_lock;
	struct { uintptr_t start, end; } selfzap[64];
	unsigned nselfzap;
	/*
	 * Ranges whose event a handler has read but not yet applied: an
	 * UNMAP's, the old range of a REMAP's, and with several handlers a
	 * REMOVE's.  The program zaps as soon as a REMOVE is read, so another
	 * handler may read a fault there first: it must wait, or it would
	 * serve the discarded data.  And once an UNMAP or REMAP is read the
	 * range may be a new mapping's: reclaim must not move or copy a page
	 * of the old region from there (events_pending_in()).  Guarded by
	 * selfzap_lock; nremoving is read without it as a fast check.
	 */
	struct { uintptr_t start, end; } removing[64];
	atomic_uint nremoving;
	pthread_mutex_t uffd_read_lock; /* several handlers: read + announce */
	/*
	 * WILLNEED advice waiting for handler 0, which reads it in through its
	 * ring like read-ahead (fault.c).  [start, end) addresses, page
	 * aligned; budget: pages it may still read.  Guarded by willneed_lock;
	 * nwillneed is read without it as a fast check.
	 */
	pthread_mutex_t willneed_lock;
	struct { uintptr_t start, end; uint64_t budget; } willneed[32];
	atomic_uint nwillneed;

	/*
	 * regions: sorted by base for lookup; by id for frames.  The lock
	 * prefers readers, and a reader may be blocked in madvise() until a
	 * handler reads its REMOVE event: so a handler never waits for the
	 * write side.  It marks unmapped regions dead (reclaim or the next
	 * reservation unlinks them) and takes the write side for a REMAP
	 * only by trylock, holding later messages back meanwhile (fault.c).
	 */
	pthread_rwlock_t regions_lock;
	struct upg_region **sorted;  /* nregions entries, sorted by base */
	struct upg_region **by_id;   /* MAX_REGIONS slots */
	uint32_t nregions;
	atomic_uint ndead;           /* dead regions still in the table */
	/* a handler waits for the write side: long readers step aside */
	atomic_bool regions_writer_waiting;
	/*
	 * The kernel lets munmap/mremap/madvise return once a handler has
	 * read their event, not applied it.  An address the program just
	 * unmapped can come back from mmap at once, and its new region must
	 * not be hit by the older UNMAP: a reservation first waits until the
	 * events read before it are applied.  reads_begun/ended bracket each
	 * read() of the uffd, so that one in progress is waited for too.
	 */
	atomic_uint_least64_t uffd_reads_begun, uffd_reads_ended;
	atomic_uint_least64_t events_read, events_applied;

	/* frames, LRU lists, staging area; guarded by lru_lock */
	pthread_mutex_t lru_lock;
	struct upg_frame *frames;
	size_t frames_bytes;
	uint32_t nframes;       /* frames that exist (capacity) */
	uint32_t frame_limit;   /* frames that may be in use: the budget, or more
				   while swap is full */
	/*
	 * budget_frames: the budget in frames, less the memory charged to it
	 * from outside the regions (upg_budget_charge(): the allocator's
	 * metadata), rounded up to frames, at most half of it:
	 * budget_frames = base_frames - min(ceil(charged_bytes / page),
	 * base_frames / 2).  Written under lru_lock, read without it.
	 */
	uint32_t budget_frames;
	uint32_t eviction_clock; /* pages evicted so far, mod 2^32: the time
				    of page_refaulted()'s distances */
	uint32_t base_frames;   /* the budget as configured */
	int64_t charged_bytes;  /* written under lru_lock */
	uint32_t used_frames;   /* invariant: used_frames <= frame_limit */
	/*
	 * Freed frames, oldest first.  Frames >= next_unused are on no list;
	 * invariant: free.count + used_frames == next_unused.
	 */
	struct upg_list free;
	uint32_t next_unused;   /* frames >= next_unused were never used */
	struct upg_list active, inactive, probation;
	atomic_uint pinned_pages; /* pages with PTE_PINNED */
	/*
	 * The staging area (staging.c), of page-sized slots.  A slot is free
	 * (no page behind it), taken (holds a page's data, or is being filled
	 * by the one that took it), or stale (a page nobody needs, on the zap
	 * queue); stages, guarded by zap_lock, marks the taken and stale ones.
	 * Invariant: stages.limit >= nframes + ZAP_QUEUE_MAX + STAGE_RUN_MAX,
	 * so a single slot can always be had.
	 */
	char *staging;
	size_t staging_bytes;
	struct upg_slots stages;
	pthread_mutex_t zap_lock;
	uint32_t zapq[ZAP_QUEUE_MAX]; /* stale slots, zapped together */
	unsigned nzap, zap_cap;       /* invariant: nzap < zap_cap */
	int zap_pidfd;                /* for process_madvise(); -1: per slot */
	pid_t zap_owner;              /* the process zap_pidfd names */
	uint32_t low_free, high_free; /* watermarks in frames */

	/* swap store */
	pthread_mutex_t swap_lock;
	struct upg_swapfile swapfile;
	struct upg_slots slots;

	/* threads */
	atomic_bool stopping;
	struct upg_handler *handlers;
	unsigned nhandlers;
	pthread_t reclaim_thread;
	pid_t reclaim_tid;
	pthread_mutex_t reclaim_lock;
	pthread_cond_t reclaim_cond;   /* reclaim waits for work here */
	pthread_cond_t reclaim_done;   /* COLD requests wait here */
	atomic_uint frame_waiters;     /* faults waiting for a free frame */
	uint32_t cold_pending;         /* COLD pages queued at the inactive head;
					  guarded by lru_lock */
	uint64_t reclaim_generation;   /* passes completed; guarded by reclaim_lock */
	struct upg_ring reclaim_ring;
	/* zeroes for UFFDIO_COPY: zero_run pager pages (zero-fill around) */
	char *zero_page;
	unsigned zero_run;
	unsigned zero_around; /* pages per fault-around block, a power of two */

	struct upg_counters c;
	/*
	 * Debug builds only: UPAGER_DEBUG_READ_EIO=1 makes every swap read
	 * fail, so tests can reach the retry and poison paths.
	 */
	bool inject_read_errors;
	/* debug builds: every Nth protect-copy-zap copy-out fails (0: none) */
	unsigned inject_copyout_every, copyouts;
	/* debug builds: COLD advice sleeps this long between queuing and waiting */
	unsigned inject_cold_delay_ms;
	/*
	 * How often pages whose history predicts a write are really written
	 * (fault.c): probes are graded right (a write-protect fault) or wrong
	 * (evicted clean); both halve when their sum reaches 512.  Updated
	 * racily: it is a statistic, not state.
	 */
	uint32_t predict_right, predict_wrong, predict_installs;
	/* pages per state, EMPTY excluded (never counted: tables start zeroed) */
	atomic_long nr_state[PTE_STATES];
};

static inline void pte_set_state(struct upg_runtime *rt, struct upg_pte *p,
				 uint8_t state)
{
	if (p->state != PS_EMPTY)
		atomic_fetch_sub_explicit(&rt->nr_state[p->state], 1,
					  memory_order_relaxed);
	if (state != PS_EMPTY)
		atomic_fetch_add_explicit(&rt->nr_state[state], 1,
					  memory_order_relaxed);
	p->state = state;
}

/* runtime.c */
void runtime_wake_handlers(struct upg_runtime *rt);
void runtime_wake_reclaim(struct upg_runtime *rt);

/* region.c */
/* Find the region and page of @addr; returns with regions_lock read-held
 * on success (caller releases with region_put()), NULL otherwise. */
struct upg_region *region_get(struct upg_runtime *rt, uintptr_t addr,
			      size_t *pagep);
void region_put(struct upg_runtime *rt);
int region_table_init(struct upg_runtime *rt);
void region_table_destroy(struct upg_runtime *rt);
/* Discard pages [first, last) of @r: slots and frames freed, state EMPTY.
 * @zap: also drop what is mapped in the region. */
enum upg_discard_mode {
	DISCARD_DATA,     /* every page; the range is unmapped by the caller */
	DISCARD_AND_ZAP,  /* every page, and the range is zapped here */
	DISCARD_UNMAPPED, /* only pages not mapped now: no zap, no TLB flush */
};
void region_discard_pages(struct upg_runtime *rt, struct upg_region *r,
			  size_t first, size_t last, enum upg_discard_mode mode);
/*
 * fault.c: is part of [start, end) in a range whose UNMAP, REMAP (or, with
 * several handlers, REMOVE) event has been read but not yet applied?
 */
bool events_pending_in(struct upg_runtime *rt, uintptr_t start, uintptr_t end);
/* reclaim.c: drop the self-zap entries in [start, end) (region unmapped) */
void selfzap_forget(struct upg_runtime *rt, uintptr_t start, uintptr_t end);
/* Unlink and free the regions UNMAP events killed; not from a handler. */
void region_reap_dead(struct upg_runtime *rt);
/* uffd non-cooperative events, applied by handlers */
void region_event_remove(struct upg_runtime *rt, uintptr_t start, uintptr_t end);
void region_event_unmap(struct upg_runtime *rt, uintptr_t start, uintptr_t end);
/* false: regions_lock is busy, call again later (the event is not applied) */
bool region_event_remap(struct upg_runtime *rt, uintptr_t from, uintptr_t to,
			size_t len);

/* fault.c: queue WILLNEED for handler 0; -EBUSY if the queue is full */
int fault_queue_willneed(struct upg_runtime *rt, uintptr_t start, uintptr_t end);
size_t fault_populate(struct upg_runtime *rt, struct upg_region *r,
		      size_t first, size_t last);
/* fault.c: a probe of the write predictor was evicted clean */
void predict_graded_wrong(struct upg_runtime *rt);

/* frame.c */
int frames_init(struct upg_runtime *rt);
void frames_destroy(struct upg_runtime *rt);

/* Dirty tracking by contents (pagesum.c) */
int pagesum_init(struct upg_runtime *rt);
void pagesum_destroy(struct upg_runtime *rt);
void pagesum_compute(const struct upg_runtime *rt, const void *data,
		     struct upg_pagesum *out);
/* Fingerprint @data, the contents of frame @f's page's slot. */
void pagesum_note(struct upg_runtime *rt, uint32_t f, const void *data);
/* Is @data, frame @f's page now, what its slot holds?  Only if summed. */
bool pagesum_unchanged(const struct upg_runtime *rt, uint32_t f,
		       const void *data);
/* Take a free frame for (@r, @page), isolated; UPG_NO_FRAME if none. */
uint32_t frame_alloc(struct upg_runtime *rt, struct upg_region *r, size_t page);
/* Return a frame; its staging slot, if it has one, becomes stale. */
void frame_free(struct upg_runtime *rt, uint32_t f);
/* The list of frames that @l names; NULL for FL_ISOLATED (on no list). */
struct upg_list *frame_list(struct upg_runtime *rt, uint8_t l);
/* Move frame @f to the tail of list @to (any but FL_FREE). */
void frame_move(struct upg_runtime *rt, uint32_t f, enum upg_frame_list to);
void frame_move_locked(struct upg_runtime *rt, uint32_t f,
		       enum upg_frame_list to);
/* ... to the head instead: first in line for eviction (COLD advice). */
void frame_move_head_locked(struct upg_runtime *rt, uint32_t f,
			    enum upg_frame_list to);
static inline char *stage_addr(const struct upg_runtime *rt, uint32_t slot)
{
	return rt->staging + (size_t)slot * rt->page_size;
}
/* The staging slot that holds frame @f's page (it must have one). */
static inline char *frame_staging(const struct upg_runtime *rt, uint32_t f)
{
	upg_assert(rt->frames[f].stage != UPG_NO_STAGE);
	return stage_addr(rt, rt->frames[f].stage);
}
static inline size_t frame_page(const struct upg_frame *fr)
{
	return (size_t)fr->page_lo | ((size_t)fr->page_hi << 32);
}

/* staging.c */
int staging_init(struct upg_runtime *rt);
void staging_destroy(struct upg_runtime *rt);
/* The longest run of slots staging_take_run() gives. */
#define STAGE_RUN_MAX 64
/* One free slot, empty, to be filled by the caller; never fails. */
uint32_t staging_take(struct upg_runtime *rt);
/* Up to @n consecutive free slots: the first, and how many in *@got
 * (at least one); never fails. */
uint32_t staging_take_run(struct upg_runtime *rt, unsigned n, unsigned *got);
/* Give back @n taken slots from @slot that were never filled (empty). */
void staging_give_back(struct upg_runtime *rt, uint32_t slot, unsigned n);
/* Taken slot @slot may hold a page nobody needs: queue its zap. */
void staging_discard(struct upg_runtime *rt, uint32_t slot);
/* Frame @f's slot (owned by the caller) no longer matters: queue its zap
 * and detach it from the frame.  Nothing if the frame has none. */
void staging_release(struct upg_runtime *rt, uint32_t f);
/* Frame @f's page was moved out of its slot: the slot is empty again. */
void staging_emptied(struct upg_runtime *rt, uint32_t f);
/*
 * Debug builds: a ring of the last operations on staging slots, printed
 * for a slot found holding a page while free (check in staging.c).
 */
enum staging_op {
	STAGE_MOVED_OUT, STAGE_COPIED_OUT, STAGE_PARKED, STAGE_MOVED_BACK,
	STAGE_RELEASED, STAGE_ZAPPED,
};
void staging_trace(uint32_t slot, enum staging_op op, uint64_t arg);
#define STAGING_TRACE(slot, op, arg)                                         \
	do {                                                                 \
		if (UPG_DEBUG)                                               \
			staging_trace((slot), (op), (uint64_t)(arg));        \
	} while (0)
/* Page @pte (locked, holding a frame) is mapped: ACTIVE, on the active list
 * unless pinned. */
void page_activate(struct upg_runtime *rt, struct upg_pte *pte);
/* ... after a soft fault: the page proved it is in use (second chance). */
void page_reactivate(struct upg_runtime *rt, struct upg_pte *pte);
/* Page @pte (locked) has just left RAM: stamp it with the eviction clock. */
void page_evicted(struct upg_runtime *rt, struct upg_pte *pte);
/* ... it is back from swap by a fault: ACTIVE, longer if it came back soon. */
void page_refaulted(struct upg_runtime *rt, struct upg_pte *pte);
/* Page @pte (locked, holding a frame) was written: DIRTY, slot freed. */
void page_mark_dirty(struct upg_runtime *rt, struct upg_pte *pte);
/* Page @pte (locked, holding a frame) has no data left -- discarded, or
 * found all zero: its slot and frame are freed and it is EMPTY. */
void page_drop(struct upg_runtime *rt, struct upg_pte *pte);
uint32_t frames_free_count(const struct upg_runtime *rt);
int frames_charge(struct upg_runtime *rt, int64_t bytes);

/* swap (in frame.c): slot allocation under swap_lock */
uint32_t swap_alloc(struct upg_runtime *rt, uint32_t want, uint32_t *got);
void swap_free(struct upg_runtime *rt, uint32_t slot);

/* fault.c */
void *handler_main(void *arg);

/* reclaim.c */
void *reclaim_main(void *arg);
/* Evict [start, start+len) now; waits until written. */
/* Deactivate the range's pages; with @evict, evict them and wait for it. */
int reclaim_cold(struct upg_runtime *rt, void *start, size_t len, bool evict);

/* stats.c */
/*
 * A fault is counted (STAT_INC(rt, faults[kind])) before the ioctl that
 * wakes its thread, so that the thread sees its own fault in the
 * statistics; its latency is recorded after, by stats_fault().
 */
void stats_fault(struct upg_runtime *rt, enum upg_fault_kind kind, uint64_t t0);
void stats_read(struct upg_runtime *rt, uint64_t t_submit);
void stats_note_resident(struct upg_runtime *rt, uint32_t used);

/* fork.c */
int fork_handlers_install(struct upg_runtime *rt);
void fork_handlers_remove(struct upg_runtime *rt);

#define STAT_INC(rt, field) \
	atomic_fetch_add_explicit(&(rt)->c.field, 1, memory_order_relaxed)
#define STAT_DEC(rt, field) \
	atomic_fetch_sub_explicit(&(rt)->c.field, 1, memory_order_relaxed)
#define STAT_ADD(rt, field, n) \
	atomic_fetch_add_explicit(&(rt)->c.field, (n), memory_order_relaxed)

#endif /* UPG_PAGER_H */
