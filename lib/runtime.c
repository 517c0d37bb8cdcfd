/* SPDX-License-Identifier: MIT */
/*
 * runtime.c - start and stop a pager: descriptors, tables, swap, threads.
 *
 * Start-up order matters for the failure semantics: if userfaultfd cannot
 * be had, the runtime still starts, unpaged (regions are plain memory), so
 * a program under the shim keeps running; if the swap store cannot be
 * opened, it starts paged but can only drop clean pages, and runs over
 * budget (with one warning) rather than lose data.
 */
#include "pager.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

void pte_lock_slow(struct upg_pte *p)
{
	for (unsigned spins = 0;; spins++) {
		if (!atomic_load_explicit(&p->lock, memory_order_relaxed) &&
		    pte_trylock(p))
			return;
		if (spins > 64)
			sched_yield();
	}
}

void runtime_wake_handlers(struct upg_runtime *rt)
{
	uint64_t one = 1;

	/* EAGAIN (counter saturated) means a wake-up is pending anyway */
	for (unsigned i = 0; i < rt->nhandlers; i++)
		if (rt->handlers[i].wake_fd >= 0)
			(void)!write(rt->handlers[i].wake_fd, &one, sizeof(one));
}

void runtime_wake_reclaim(struct upg_runtime *rt)
{
	pthread_mutex_lock(&rt->reclaim_lock);
	pthread_cond_signal(&rt->reclaim_cond);
	pthread_mutex_unlock(&rt->reclaim_lock);
}

static void unpaged(struct upg_runtime *rt, const char *why)
{
	rt->paged = false;
	snprintf(rt->unpaged_reason, sizeof(rt->unpaged_reason), "%s", why);
	if (rt->opts.verbose)
		upg_warn_once("running unpaged: %s", why);
}

static int handler_init(struct upg_runtime *rt, struct upg_handler *h,
			unsigned index)
{
	unsigned nbufs = IO_BUFS_PER_HANDLER;
	int ret;

	h->rt = rt;
	h->index = index;
	streams_init(&h->streams);
	stride_init(&h->zero_stride);
	for (unsigned i = 0; i < ZERO_STREAMS; i++)
		h->zero_next[i] = UINT64_MAX;
	h->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (h->wake_fd < 0)
		return -errno;
	ret = upg_ring_init(&h->ring, 256);
	if (ret)
		return ret;
	h->bufs_bytes = (size_t)nbufs * rt->page_size;
	h->bufs = upg_os_alloc(h->bufs_bytes);
	h->pending = upg_os_alloc(PENDING_MAX * sizeof(*h->pending));
	h->held = upg_os_alloc(HELD_MAX * sizeof(*h->held));
	if (!h->bufs || !h->pending || !h->held)
		return -ENOMEM;
	/* Pinned once: reads never fault, and skip per-I/O page mapping. */
	upg_ring_register_buffers(&h->ring, h->bufs, rt->page_size, nbufs);
	for (unsigned i = 0; i < nbufs; i++)
		h->free_bufs[i] = nbufs - 1 - i;
	h->nfree_bufs = nbufs;
	return 0;
}

static void handler_fini(struct upg_handler *h)
{
	if (h->rt == NULL)
		return;
	upg_ring_exit(&h->ring);
	if (h->wake_fd >= 0)
		close(h->wake_fd);
	upg_os_free(h->bufs, h->bufs_bytes);
	upg_os_free(h->pending, PENDING_MAX * sizeof(*h->pending));
	upg_os_free(h->held, HELD_MAX * sizeof(*h->held));
}

static int open_swap(struct upg_runtime *rt)
{
	char why[256] = "";
	uint64_t limit;
	int ret;

	ret = upg_swapfile_open(&rt->swapfile, rt->opts.swap_path,
				rt->opts.swap_dir, rt->opts.swap_max,
				rt->page_size, why, sizeof(why));
	if (ret) {
		/* paged, but only clean pages can leave: over budget, warned */
		upg_log("no swap store: %s; pages cannot be written out, the "
			"budget will be exceeded", why);
		rt->swapfile.fd = -1;
		return upg_slots_init(&rt->slots, 0, 0);
	}
	limit = rt->swapfile.max_size ? rt->swapfile.max_size / rt->page_size
				      : UPG_NO_SLOT - 1;
	if (limit > UPG_NO_SLOT - 1)
		limit = UPG_NO_SLOT - 1;
	return upg_slots_init(&rt->slots,
			      (uint32_t)(rt->swapfile.size / rt->page_size),
			      (uint32_t)limit);
}

/* The first line of a sysfs file into @buf, or -1.  Plain syscalls: the
 * shim may create the runtime before stdio is safe to use. */
static ssize_t read_sysfs(const char *path, char *buf, size_t len)
{
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -1;
	n = read(fd, buf, len - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	buf[strcspn(buf, "\n")] = '\0';
	return n;
}

/*
 * How long an idle vCPU of this guest polls before it halts: the
 * cpuidle-haltpoll driver's guest_halt_poll_ns, or -1 where that module is
 * absent (bare metal, or a guest without it).  The parameter is only in
 * force while haltpoll is the active cpuidle driver: a guest that loads the
 * module but runs with no cpuidle driver (seen on a PVM guest:
 * current_driver "none", guest_halt_poll_ns 200000) halts its idle vCPUs
 * without polling in the guest, so that counts as 0.
 */
static int64_t guest_halt_poll_ns(void)
{
	char ns[32], driver[64];

	if (read_sysfs("/sys/module/haltpoll/parameters/guest_halt_poll_ns",
		       ns, sizeof(ns)) < 0 || ns[0] < '0' || ns[0] > '9')
		return -1;
	if (read_sysfs("/sys/devices/system/cpu/cpuidle/current_driver",
		       driver, sizeof(driver)) < 0 ||
	    strcmp(driver, "haltpoll") != 0)
		return 0;
	return strtoll(ns, NULL, 10);
}

static int start_threads(struct upg_runtime *rt)
{
	int ret;

	rt->nhandlers = rt->opts.handler_threads;
	rt->handlers = upg_os_alloc(rt->nhandlers * sizeof(*rt->handlers));
	if (!rt->handlers)
		return -ENOMEM;
	for (unsigned i = 0; i < rt->nhandlers; i++)
		rt->handlers[i].wake_fd = -1;
	for (unsigned i = 0; i < rt->nhandlers; i++) {
		ret = handler_init(rt, &rt->handlers[i], i);
		if (ret)
			return ret;
	}
	ret = upg_ring_init(&rt->reclaim_ring, 128);
	if (ret)
		return ret;
	ret = -pthread_create(&rt->reclaim_thread, NULL, reclaim_main, rt);
	if (ret)
		return ret;
	/* named, so that top -H, perf and gdb show who is who */
	pthread_setname_np(rt->reclaim_thread, "upager-reclaim");
	for (unsigned i = 0; i < rt->nhandlers; i++) {
		char name[16];

		ret = -pthread_create(&rt->handlers[i].thread, NULL, handler_main,
				      &rt->handlers[i]);
		if (ret)
			return ret;
		snprintf(name, sizeof(name), "upager-fault%u", i % 100);
		pthread_setname_np(rt->handlers[i].thread, name);
	}
	/* reclaim_tid tells handlers which faults are the reclaim thread's */
	while (!__atomic_load_n(&rt->reclaim_tid, __ATOMIC_ACQUIRE))
		sched_yield();
	return 0;
}

UPG_API int upg_runtime_create(const struct upg_options *opts,
			       struct upg_runtime **rtp)
{
	struct upg_runtime *rt;
	char why[256] = "";
	int ret;

	if (!opts || !rtp)
		return -EINVAL;
	ret = upg_options_validate(opts, why, sizeof(why));
	if (ret) {
		if (opts->verbose)
			upg_log("%s", why);
		return ret;
	}
	rt = upg_os_alloc(sizeof(*rt));
	if (!rt)
		return -ENOMEM;
	rt->opts = *opts;
	rt->guest_halt_poll_ns = guest_halt_poll_ns();
	if (UPG_DEBUG) {
		const char *e = getenv("UPAGER_DEBUG_READ_EIO");

		rt->inject_read_errors = e && *e == '1';
		e = getenv("UPAGER_DEBUG_COPYOUT_FAIL");
		rt->inject_copyout_every = e ? (unsigned)strtoul(e, NULL, 10) : 0;
		e = getenv("UPAGER_DEBUG_COLD_DELAY_MS");
		rt->inject_cold_delay_ms = e ? (unsigned)strtoul(e, NULL, 10) : 0;
	}
	rt->page_size = opts->page_size;
	rt->page_shift = (unsigned)__builtin_ctzl(opts->page_size);
	rt->uffd.fd = rt->staging_uffd.fd = -1;
	rt->swapfile.fd = -1;
	pthread_mutex_init(&rt->lru_lock, NULL);
	pthread_mutex_init(&rt->swap_lock, NULL);
	pthread_mutex_init(&rt->reclaim_lock, NULL);
	pthread_mutex_init(&rt->selfzap_lock, NULL);
	pthread_mutex_init(&rt->uffd_read_lock, NULL);
	pthread_mutex_init(&rt->willneed_lock, NULL);
	pthread_cond_init(&rt->reclaim_cond, NULL);
	pthread_cond_init(&rt->reclaim_done, NULL);
	pthread_rwlock_init(&rt->fork_lock, NULL);
	ret = region_table_init(rt);
	if (ret)
		goto fail;

	rt->paged = true;
	ret = upg_uffd_open(&rt->uffd, UPG_UFFD_REGION_FEATURES, why, sizeof(why));
	if (ret == 0)
		ret = upg_uffd_open(&rt->staging_uffd, UPG_UFFD_STAGING_FEATURES,
				    why, sizeof(why));
	if (ret) {
		upg_uffd_close(&rt->uffd);
		unpaged(rt, why);
		*rtp = rt;
		return 0;
	}
	if (opts->evict == UPG_EVICT_MOVE &&
	    !(rt->uffd.has_move && rt->staging_uffd.has_move)) {
		if (opts->verbose)
			upg_log("UPAGER_EVICT=move: this kernel has no UFFDIO_MOVE "
				"(Linux 6.8+); use UPAGER_EVICT=copy or auto");
		ret = -ENOTSUP;
		goto fail;
	}
	rt->use_move = opts->evict != UPG_EVICT_COPY && rt->uffd.has_move &&
		       rt->staging_uffd.has_move;
	if (UPG_DEBUG) {
		/* moves out (into staging) that report an error after moving */
		const char *e = getenv("UPAGER_DEBUG_MOVE_ERROR_AFTER");

		rt->staging_uffd.inject_move_error_every =
			e ? (unsigned)strtoul(e, NULL, 10) : 0;
		/* pager pages mapped only in part, as at a queued event */
		e = getenv("UPAGER_DEBUG_FILL_SPLIT");
		rt->uffd.inject_fill_split_every =
			e ? (unsigned)strtoul(e, NULL, 10) : 0;
	}
	rt->one_sys_page = rt->page_size == (size_t)sysconf(_SC_PAGESIZE);
	rt->move_runs = rt->use_move && rt->one_sys_page;
	rt->soft_move = rt->use_move && !rt->move_runs;

	ret = frames_init(rt);
	if (ret)
		goto fail;
	rt->dirty_by_sum = opts->dirty != UPG_DIRTY_WP_FAULT;
	if (rt->dirty_by_sum) {
		ret = pagesum_init(rt);
		if (ret && opts->dirty == UPG_DIRTY_HASH)
			goto fail;
		if (ret) {
			upg_log("no random key for dirty tracking by contents "
				"(%s): using write-protect faults",
				upg_strerror(-ret));
			rt->dirty_by_sum = false;
		}
	}
	ret = upg_uffd_register(&rt->staging_uffd, (uintptr_t)rt->staging,
				rt->staging_bytes, rt->staging_uffd.has_wp);
	if (ret)
		goto fail;
	rt->zero_run = (unsigned)((256UL << 10) / rt->page_size);
	if (rt->zero_run < 1 || !rt->one_sys_page)
		rt->zero_run = 1;
	if (rt->zero_run > ZERO_RUN_MAX)
		rt->zero_run = ZERO_RUN_MAX;
	/*
	 * fault-around: 256 KiB.  The kernel maps 64 KiB around a file fault
	 * (fault_around_bytes), but its faults cost about a microsecond; one
	 * through a handler costs tens where idle vCPUs halt.  bench/alloc
	 * large, whose blocks are touched at both ends only: 954 faults and
	 * 1.28x jemalloc's time with 64 KiB, 0.85x with 256 KiB.
	 */
	rt->zero_around = (unsigned)((256UL << 10) / rt->page_size);
	if (rt->zero_around < 1 || !rt->one_sys_page)
		rt->zero_around = 1;
	rt->zero_page = upg_os_alloc(rt->zero_run * rt->page_size);
	if (!rt->zero_page) {
		ret = -ENOMEM;
		goto fail;
	}
	ret = open_swap(rt);
	if (ret)
		goto fail;
	ret = start_threads(rt);
	if (ret)
		goto fail;
	fork_handlers_install(rt);
	*rtp = rt;
	return 0;
fail:
	upg_runtime_destroy(rt);
	return ret;
}

UPG_API void upg_runtime_destroy(struct upg_runtime *rt)
{
	if (!rt)
		return;
	if (rt->paged)
		fork_handlers_remove(rt);
	atomic_store(&rt->stopping, true);
	if (rt->handlers) {
		runtime_wake_handlers(rt);
		for (unsigned i = 0; i < rt->nhandlers; i++)
			if (rt->handlers[i].thread)
				pthread_join(rt->handlers[i].thread, NULL);
	}
	if (rt->reclaim_thread) {
		runtime_wake_reclaim(rt);
		pthread_join(rt->reclaim_thread, NULL);
		upg_ring_exit(&rt->reclaim_ring);
	}
	if (rt->handlers) {
		for (unsigned i = 0; i < rt->nhandlers; i++)
			handler_fini(&rt->handlers[i]);
		upg_os_free(rt->handlers, rt->nhandlers * sizeof(*rt->handlers));
	}
	/*
	 * The handlers are gone: a region must not stay registered, or a
	 * thread touching it would wait forever.  Releasing unmaps them.
	 */
	region_table_destroy(rt);
	if (rt->slots.bitmap)
		upg_slots_destroy(&rt->slots);
	if (rt->swapfile.fd >= 0)
		upg_swapfile_close(&rt->swapfile);
	frames_destroy(rt);
	upg_os_free(rt->zero_page, rt->zero_run * rt->page_size);
	upg_uffd_close(&rt->staging_uffd);
	upg_uffd_close(&rt->uffd);
	upg_os_free(rt, sizeof(*rt));
}

UPG_API bool upg_runtime_is_paged(const struct upg_runtime *rt)
{
	return rt && rt->paged;
}

UPG_API const char *upg_runtime_unpaged_reason(const struct upg_runtime *rt)
{
	return rt ? rt->unpaged_reason : "no runtime";
}

UPG_API size_t upg_runtime_page_size(const struct upg_runtime *rt)
{
	return rt ? rt->page_size : 0;
}

UPG_API int upg_budget_charge(struct upg_runtime *rt, int64_t bytes)
{
	if (!rt)
		return -EINVAL;
	if (!rt->paged)
		return 0;
	return frames_charge(rt, bytes);
}

UPG_API size_t upg_budget_room(const struct upg_runtime *rt)
{
	uint32_t nfree;

	if (!rt || !rt->paged)
		return SIZE_MAX;
	nfree = frames_free_count(rt);
	if (nfree <= rt->high_free)
		return 0;
	return (size_t)(nfree - rt->high_free) << rt->page_shift;
}
