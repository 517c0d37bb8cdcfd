/* SPDX-License-Identifier: MIT */
/*
 * alloc_process.c - the process heap behind upg_malloc() and the shim.
 *
 * Starting.  The heap starts on the first allocation (or upg_alloc_init):
 * it reads the UPAGER_* variables, creates a runtime and then the heap.
 * Creating a runtime allocates too (pthread_create, pthread_atfork, the
 * dynamic loader), and in the LD_PRELOAD shim those allocations come right
 * back here, before there is a heap to serve them.  They are served from
 * the bootstrap arena: a static bump allocator that never frees.  Other
 * threads wait for the heap instead: a thread allocating in a loop would
 * exhaust the arena in the milliseconds a runtime takes to start.  A freed bootstrap
 * pointer is recognised by its address and ignored; realloc copies it out.
 *
 *   first malloc --> state NONE -> STARTING --(runtime + heap made)--> READY
 *                        |            |
 *                        |            +-- the starting thread's mallocs
 *                        |            |   meanwhile: bootstrap
 *                        |            +-- other threads' mallocs: wait for
 *                        |                READY (bounded), then bootstrap
 *                        +-- upg_alloc_init(rt): same, with the given runtime
 *
 * Threads.  Each thread gets a cache (alloc_slab.c) on its first small
 * allocation, found through an initial-exec TLS pointer (no lookup, no
 * malloc), and returned by a pthread key destructor when the thread exits.
 * Frees after that destructor (from later destructors, from the thread
 * library releasing the thread) go straight to the slabs.
 *
 * fork.  pthread_atfork handlers registered after the runtime's take every
 * heap lock before the pager's, so the child starts with consistent
 * allocator state; the child keeps only the forking thread's cache.
 *
 * Exit.  The heap and the runtime are never torn down: threads may still be
 * running and using memory while exit handlers run.  With UPAGER_STATS the
 * statistics are printed by an exit handler, on a duplicate of stderr taken
 * at start (programs such as GNU coreutils close stderr at exit).
 */
#include "alloc.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define TLS_IE __attribute__((tls_model("initial-exec")))
#define TC_DEAD ((struct upg_tcache *)1)
#define BOOT_SIZE ((size_t)1 << 20)

enum { PH_NONE, PH_STARTING, PH_READY };

static _Atomic(struct upg_heap *) proc_heap;
static atomic_int proc_state;
static struct upg_runtime *proc_rt;
static pthread_key_t tc_key;
static __thread struct upg_tcache *t_cache TLS_IE;
static __thread bool t_starting TLS_IE; /* this thread is starting the heap */

/* --------------------------------------------------------- bootstrap */

static char boot_arena[BOOT_SIZE] __attribute__((aligned(4096)));
static atomic_size_t boot_used;

/* A block of the arena: its size in the 16 bytes before it. */
static void *boot_alloc(size_t size, size_t align)
{
	size_t cur = atomic_load_explicit(&boot_used, memory_order_relaxed);
	size_t start, end;

	if (align < UPG_MIN_ALIGN)
		align = UPG_MIN_ALIGN;
	if (size > BOOT_SIZE || align > BOOT_SIZE / 2)
		goto full;
	do {
		start = upg_align_up(cur + 16, align);
		end = start + upg_align_up(size ? size : 1, 16);
		if (end > BOOT_SIZE)
			goto full;
	} while (!atomic_compare_exchange_weak_explicit(
		&boot_used, &cur, end, memory_order_relaxed,
		memory_order_relaxed));
	*(size_t *)(boot_arena + start - 16) = size;
	return boot_arena + start;
full:
	upg_warn_once("bootstrap arena exhausted (%zu bytes) while the heap was starting",
		      BOOT_SIZE);
	errno = ENOMEM;
	return NULL;
}

static inline bool boot_owns(const void *p)
{
	return (const char *)p >= boot_arena &&
	       (const char *)p < boot_arena + BOOT_SIZE;
}

static inline size_t boot_size(const void *p)
{
	return *(const size_t *)((const char *)p - 16);
}

/* ----------------------------------------------------------- statistics */

static int stats_fd = -1;       /* dup of stderr for UPAGER_STATS=1 */
static dev_t stats_dev;
static ino_t stats_ino;
/*
 * UPAGER_STATS=<file>, copied at start: programs that set their process
 * title (redis-server, postgres) overwrite their environment strings.
 */
static const char *stats_path;
static char stats_path_buf[PATH_MAX];

static void stats_at_exit(void)
{
	struct upg_alloc_stats as;
	struct upg_stats st;
	struct stat sb;
	FILE *out;
	int fd;

	if (stats_path) {
		fd = open(stats_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC,
			  0644);
		if (fd < 0) {
			upg_log("UPAGER_STATS=%s: cannot open: %s", stats_path,
				strerrordesc_np(errno));
			return;
		}
	} else {
		/* the program may have closed the fd and reused the number */
		if (fstat(stats_fd, &sb) || sb.st_dev != stats_dev ||
		    sb.st_ino != stats_ino)
			return;
		fd = stats_fd;
	}
	out = fdopen(fd, "a");
	if (!out) {
		if (stats_path)
			close(fd);
		return;
	}
	fprintf(out, "upager: statistics of pid %d (%s)\n", (int)getpid(),
		program_invocation_short_name);
	if (proc_rt && upg_stats_get(proc_rt, &st) == 0)
		upg_stats_print(&st, out);
	upg_alloc_stats_get(&as);
	upg_alloc_stats_print(&as, out);
	fclose(out);
	stats_fd = -1;
}

static void stats_setup(void)
{
	const char *v = getenv("UPAGER_STATS");
	struct stat sb;

	if (!v || !*v || !strcmp(v, "0") || !strcmp(v, "no"))
		return;
	if (!strcmp(v, "1") || !strcmp(v, "yes") || !strcmp(v, "stderr")) {
		stats_fd = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 3);
		if (stats_fd < 0 || fstat(stats_fd, &sb))
			return;
		stats_dev = sb.st_dev;
		stats_ino = sb.st_ino;
	} else {
		if (strlen(v) >= sizeof(stats_path_buf)) {
			upg_log("UPAGER_STATS=%s: path too long", v);
			return;
		}
		strcpy(stats_path_buf, v);
		stats_path = stats_path_buf;
	}
	atexit(stats_at_exit);
}

/* ---------------------------------------------------------------- fork */

/* The mmap lock comes first in the lock order (alloc.h). */
static void fork_prepare(void)
{
	struct upg_heap *h = atomic_load(&proc_heap);

	upg_mmap_fork_prepare();
	if (h)
		upg_heap_fork_prepare(h);
}

static void fork_parent(void)
{
	struct upg_heap *h = atomic_load(&proc_heap);

	if (h)
		upg_heap_fork_parent(h);
	upg_mmap_fork_parent();
}

static void fork_child(void)
{
	struct upg_heap *h = atomic_load(&proc_heap);

	if (h)
		upg_heap_fork_child(h, (uintptr_t)t_cache > 1 ? t_cache : NULL);
	upg_mmap_fork_child();
}

/* ------------------------------------------------------------- starting */

static void tc_destructor(void *arg)
{
	t_cache = TC_DEAD;
	upg_tcache_destroy(arg);
}

/*
 * Free garbage kept undiscarded (alloc_extent.c).  While the budget has
 * room, up to half of it: reusing a discarded page costs a zero-fill fault
 * through the pager (tens of microseconds where idle vCPUs halt, against
 * about one for the kernel's own), so garbage is worth keeping for as long
 * as nothing else wants the memory.  Without room, a small share (1/32,
 * capped at 64 MiB), so that reclaim finds little garbage to write out.
 */
static void dirty_limits_for(struct upg_runtime *rt,
			     struct upg_heap_params *params)
{
	size_t min = 4 * upg_runtime_page_size(rt), budget, tight;
	struct upg_stats st;

	if (upg_stats_get(rt, &st) < 0)
		return;
	budget = (size_t)(st.budget_pages * st.page_size);
	tight = budget / 32;
	if (tight > ((size_t)64 << 20))
		tight = (size_t)64 << 20;
	params->dirty_tight = tight > min ? tight : min;
	params->dirty_max = budget / 2 > params->dirty_tight ? budget / 2
							       : params->dirty_tight;
}

/* Called in state STARTING by the one thread that moved it there. */
static int heap_start(struct upg_runtime *rt)
{
	struct upg_heap_params params = { 0 };
	struct upg_region_ops ops;
	bool given = rt != NULL; /* by upg_alloc_init: errors are returned */
	struct upg_heap *h;
	int ret;

	if (!rt) {
		struct upg_options o;
		char err[256];

		upg_options_init(&o);
		ret = upg_options_from_env(&o, err, sizeof(err));
		if (ret == 0)
			ret = upg_options_validate(&o, err, sizeof(err));
		if (ret < 0) {
			upg_log("%s", ret == -EINVAL ? err : "bad UPAGER_* variable");
			_exit(2);
		}
		ret = upg_runtime_create(&o, &rt);
		if (ret < 0) {
			upg_log("cannot start the pager (%s): the heap runs unpaged",
				strerrordesc_np(-ret) ? strerrordesc_np(-ret) : "?");
			rt = NULL;
		} else if (!upg_runtime_is_paged(rt) && !o.verbose) {
			/* the runtime says it only when verbose; a program run
			 * under the shim must hear it once in any case */
			upg_log("running unpaged: %s",
				upg_runtime_unpaged_reason(rt));
		}
	}
	if (rt) {
		upg_region_ops_runtime(&ops, rt);
		dirty_limits_for(rt, &params);
	} else {
		upg_region_ops_os(&ops);
	}
	ret = upg_heap_create(&ops, &params, &h);
	if (ret < 0)
		return ret;
	if (pthread_key_create(&tc_key, tc_destructor)) {
		upg_heap_destroy(h);
		return -EAGAIN;
	}
	if (rt) {
		char err[256];

		ret = upg_mmap_start(rt, h, err, sizeof(err));
		if (ret == -EINVAL && !given) {
			/* a bad UPAGER_* variable, as above */
			upg_log("%s", err);
			_exit(2);
		}
		if (ret < 0) {
			pthread_key_delete(tc_key);
			upg_heap_destroy(h);
			return ret;
		}
	}
	pthread_atfork(fork_prepare, fork_parent, fork_child);
	stats_setup();
	proc_rt = rt;
	atomic_store_explicit(&proc_heap, h, memory_order_release);
	atomic_store(&proc_state, PH_READY);
	return 0;
}

/*
 * Another thread is starting the heap.  Wait for it rather than take the
 * bootstrap arena: a thread that allocates in a loop meanwhile (the
 * runtime takes milliseconds to start) would exhaust the arena.  The wait
 * is bounded, because a thread the starter itself waits for (one created
 * while the runtime starts) may allocate too; after it, the arena serves.
 */
static struct upg_heap *heap_wait(void)
{
	struct timespec ts = { 0, 100000 };
	struct upg_heap *h;
	unsigned i;

	for (i = 0; i < 20000; i++) { /* 2 s */
		h = atomic_load_explicit(&proc_heap, memory_order_acquire);
		if (h || atomic_load(&proc_state) != PH_STARTING)
			return h;
		nanosleep(&ts, NULL);
	}
	return atomic_load_explicit(&proc_heap, memory_order_acquire);
}

/* The heap, starting it if needed; NULL: use the bootstrap arena. */
static struct upg_heap *heap_get(void)
{
	struct upg_heap *h = atomic_load_explicit(&proc_heap,
						  memory_order_acquire);
	int expect = PH_NONE;

	if (likely(h != NULL))
		return h;
	if (t_starting)
		return NULL; /* the runtime allocating while it starts */
	if (!atomic_compare_exchange_strong(&proc_state, &expect, PH_STARTING))
		return heap_wait();
	t_starting = true;
	if (heap_start(NULL) < 0) {
		upg_log("cannot create the heap: out of memory");
		abort();
	}
	t_starting = false;
	return atomic_load_explicit(&proc_heap, memory_order_acquire);
}

void upg_alloc_start(void)
{
	heap_get();
}

static struct upg_tcache *tcache_slow(struct upg_heap *h)
{
	struct upg_tcache *tc;

	if (t_cache == TC_DEAD)
		return NULL;
	tc = upg_tcache_create(h);
	if (!tc)
		return NULL;
	/* set first: pthread_setspecific may itself allocate */
	t_cache = tc;
	pthread_setspecific(tc_key, tc);
	return tc;
}

static inline struct upg_tcache *tcache(struct upg_heap *h)
{
	struct upg_tcache *tc = t_cache;

	if (likely((uintptr_t)tc > 1))
		return tc;
	return tcache_slow(h);
}

/* -------------------------------------------------------------- the API */

UPG_API int upg_alloc_init(struct upg_runtime *rt)
{
	int expect = PH_NONE;
	int ret;

	if (!rt)
		return -EINVAL;
	if (!atomic_compare_exchange_strong(&proc_state, &expect, PH_STARTING))
		return -EBUSY;
	t_starting = true;
	ret = heap_start(rt);
	t_starting = false;
	if (ret < 0)
		atomic_store(&proc_state, PH_NONE);
	return ret;
}

UPG_API struct upg_runtime *upg_alloc_runtime(void)
{
	return atomic_load(&proc_heap) ? proc_rt : NULL;
}

/*
 * The slow paths are separate functions so that the fast ones compile to
 * a few loads and stores with no stack frame, ending in a tail jump here.
 */
static __attribute__((noinline)) void *malloc_slow(size_t size)
{
	struct upg_heap *h = heap_get();

	if (unlikely(!h))
		return boot_alloc(size, UPG_MIN_ALIGN);
	return upg_heap_malloc(h, tcache(h), size);
}

static __attribute__((noinline)) void free_slow(void *p)
{
	struct upg_heap *h;

	if (unlikely(boot_owns(p)) || !p)
		return;
	h = atomic_load_explicit(&proc_heap, memory_order_acquire);
	if (unlikely(!h))
		upg_alloc_bad_pointer("free", p, "not allocated by upager");
	upg_heap_free(h, tcache(h), p);
}

UPG_API void *upg_malloc(size_t size)
{
	struct upg_tcache *tc = t_cache;

	/* the common case, inline: a small size this thread has cached (a
	 * thread with a cache implies a running heap) */
	if (likely((uintptr_t)tc > 1 && size <= UPG_SMALL_MAX)) {
		void *p = upg_tcache_pop(tc, upg_size_class_fast(size));

		if (likely(p != NULL))
			return p;
	}
	return malloc_slow(size);
}

UPG_API void upg_free(void *p)
{
	struct upg_tcache *tc = t_cache;

	/* the common case, inline: a live small object into a cache with
	 * room; NULL, bootstrap and large blocks, a full cache and every bad
	 * pointer fail upg_tcache_push's checks and go to free_slow */
	if (likely((uintptr_t)tc > 1) && likely(upg_tcache_push(tc, p)))
		return;
	free_slow(p);
}

UPG_API void *upg_calloc(size_t nmemb, size_t size)
{
	struct upg_heap *h = heap_get();
	size_t total;

	if (unlikely(!h)) {
		if (__builtin_mul_overflow(nmemb, size, &total)) {
			errno = ENOMEM;
			return NULL;
		}
		return boot_alloc(total, UPG_MIN_ALIGN); /* never used: zero */
	}
	return upg_heap_calloc(h, tcache(h), nmemb, size);
}

UPG_API void *upg_realloc(void *p, size_t size)
{
	struct upg_heap *h;

	if (unlikely(boot_owns(p))) {
		size_t old = boot_size(p);
		void *q;

		if (size == 0)
			return NULL;
		q = upg_malloc(size);
		if (q)
			memcpy(q, p, old < size ? old : size);
		return q;
	}
	h = heap_get();
	if (unlikely(!h)) {
		if (p)
			upg_alloc_bad_pointer("realloc", p, "not allocated by upager");
		return boot_alloc(size, UPG_MIN_ALIGN);
	}
	return upg_heap_realloc(h, tcache(h), p, size);
}

UPG_API void *upg_reallocarray(void *p, size_t nmemb, size_t size)
{
	size_t total;

	if (__builtin_mul_overflow(nmemb, size, &total)) {
		errno = ENOMEM;
		return NULL;
	}
	return upg_realloc(p, total);
}

static void *memalign_pow2(size_t align, size_t size)
{
	struct upg_heap *h = heap_get();

	if (unlikely(!h))
		return boot_alloc(size, align);
	return upg_heap_memalign(h, tcache(h), align, size);
}

UPG_API int upg_posix_memalign(void **memptr, size_t alignment, size_t size)
{
	int saved = errno;
	void *p;

	if (!upg_is_pow2(alignment) || alignment % sizeof(void *))
		return EINVAL;
	p = memalign_pow2(alignment, size);
	errno = saved;
	if (!p)
		return ENOMEM;
	*memptr = p;
	return 0;
}

UPG_API void *upg_aligned_alloc(size_t alignment, size_t size)
{
	if (!upg_is_pow2(alignment)) {
		errno = EINVAL;
		return NULL;
	}
	return memalign_pow2(alignment, size);
}

UPG_API void *upg_memalign(size_t alignment, size_t size)
{
	if (alignment > ((size_t)1 << 62)) {
		errno = EINVAL;
		return NULL;
	}
	if (alignment < UPG_MIN_ALIGN)
		alignment = UPG_MIN_ALIGN;
	if (!upg_is_pow2(alignment))
		alignment = (size_t)1 << (64 - __builtin_clzl(alignment));
	return memalign_pow2(alignment, size);
}

UPG_API void *upg_valloc(size_t size)
{
	return memalign_pow2(UPG_UNIT, size);
}

UPG_API void *upg_pvalloc(size_t size)
{
	if (size > SIZE_MAX - UPG_UNIT) {
		errno = ENOMEM;
		return NULL;
	}
	return memalign_pow2(UPG_UNIT, upg_align_up(size, UPG_UNIT));
}

UPG_API size_t upg_malloc_usable_size(void *p)
{
	struct upg_heap *h;

	if (!p)
		return 0;
	if (boot_owns(p))
		return boot_size(p);
	h = atomic_load_explicit(&proc_heap, memory_order_acquire);
	if (!h)
		upg_alloc_bad_pointer("malloc_usable_size", p,
				      "not allocated by upager");
	return upg_heap_usable_size(h, p);
}

UPG_API int upg_alloc_stats_get(struct upg_alloc_stats *st)
{
	struct upg_heap *h = atomic_load_explicit(&proc_heap,
						  memory_order_acquire);

	if (!h) {
		memset(st, 0, sizeof(*st));
		return 0;
	}
	upg_heap_stats(h, st);
	upg_mmap_stats(st);
	return 0;
}

UPG_API void upg_alloc_stats_print(const struct upg_alloc_stats *st,
				   FILE *out)
{
	const double mib = 1024.0 * 1024.0;

	fprintf(out, "allocator:\n");
	fprintf(out, "  heap reserved    %10.1f MiB\n", st->mapped_bytes / mib);
	fprintf(out, "  in slabs         %10.1f MiB  (%llu slabs)\n",
		st->slab_bytes / mib, (unsigned long long)st->slabs);
	fprintf(out, "  in large blocks  %10.1f MiB  (%llu allocated, %llu freed)\n",
		st->large_bytes / mib, (unsigned long long)st->large_allocs,
		(unsigned long long)st->large_frees);
	fprintf(out, "  free             %10.1f MiB  (%.1f MiB not yet discarded)\n",
		st->free_bytes / mib, st->dirty_bytes / mib);
	fprintf(out, "  discarded        %10.1f MiB  in %llu requests (never written to swap)\n",
		st->discarded_bytes / mib, (unsigned long long)st->discards);
	fprintf(out, "  realloc          %llu grown in place, %llu shrunk in place, %llu moved\n",
		(unsigned long long)st->grow_in_place,
		(unsigned long long)st->shrink_in_place,
		(unsigned long long)st->realloc_moves);
	fprintf(out, "  thread caches    %llu now, %llu refills, %llu flushes\n",
		(unsigned long long)st->thread_caches,
		(unsigned long long)st->cache_refills,
		(unsigned long long)st->cache_flushes);
	if (!st->mmap_calls && !st->mmap_passed)
		return;
	fprintf(out, "  mmap             %10.1f MiB now, %.1f MiB at most  (%llu served, %llu left to the kernel)\n",
		st->mmap_bytes / mib, st->mmap_peak_bytes / mib,
		(unsigned long long)st->mmap_calls,
		(unsigned long long)st->mmap_passed);
	fprintf(out, "  munmap, mremap   %llu of part of a mapping, %llu in place, %llu moved; %.1f MiB handed to the kernel\n",
		(unsigned long long)st->mmap_partial,
		(unsigned long long)st->mremap_in_place,
		(unsigned long long)st->mremap_moves,
		st->mmap_detached_bytes / mib);
}
