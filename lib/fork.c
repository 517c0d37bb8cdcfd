/* SPDX-License-Identifier: MIT */
/*
 * fork.c - a child forked without exec reads exactly what the parent wrote.
 *
 * A child inherits the parent's address space, but not its pager: the
 * handler threads stay in the parent, and without UFFD_FEATURE_EVENT_FORK
 * (which would hand the child's faults to the parent's handlers, against a
 * page table the parent keeps changing) the child's copies of the regions
 * are plain anonymous memory.  Pages that were ACTIVE are there (copy on
 * write); the others must be put back before the child runs:
 *
 *   INACTIVE, WRITEBACK   copied from the child's copy of the staging slot
 *   SWAPPED, READING      read from the swap file, which the child shares
 *
 * For that the snapshot must be consistent and the slots must not change
 * until the child has read them.  So, around fork():
 *
 *   prepare  take fork_lock for writing: every pager thread holds it for
 *            reading while it works, so no transition is half done and no
 *            write is in flight;
 *   child    restore every page, close the pager's descriptors, and run
 *            unpaged from then on (its memory is all resident);
 *   parent   wait until the child says it has read the swap (a pipe closes),
 *            then release fork_lock.
 *
 * The cost is paid at fork time, by the parent and the child, in proportion
 * to what is swapped out; a child that calls exec pays it as well.  Forks
 * that bypass pthread_atfork (a raw clone syscall) are not covered.
 */
#include "pager.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define MAX_RUNTIMES 64

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static struct upg_runtime *registry[MAX_RUNTIMES];
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;
static int fork_pipe[2] = { -1, -1 };

/* Restore the pages of @r that are not mapped, in the child. */
static void child_restore_region(struct upg_runtime *rt, struct upg_region *r)
{
	size_t table_page = 4096 / sizeof(struct upg_pte);
	unsigned char incore;

	for (size_t first = 0; first < r->npages; first += table_page) {
		/* untouched parts of the table are all EMPTY: skip them */
		if (mincore((char *)&r->ptes[first] - ((uintptr_t)&r->ptes[first] & 4095),
			    4096, &incore) == 0 && !(incore & 1))
			continue;
		for (size_t i = first; i < first + table_page && i < r->npages; i++) {
			struct upg_pte *pte = &r->ptes[i];
			char *pa = (char *)region_page_addr(r, i, rt->page_size);
			ssize_t n;

			switch (pte->state) {
			case PS_INACTIVE:
			case PS_WRITEBACK:
				memcpy(pa, frame_staging(rt, pte->frame), rt->page_size);
				break;
			case PS_SWAPPED:
			case PS_READING:
				n = pread(rt->swapfile.fd, pa, rt->page_size,
					  (off_t)((uint64_t)pte->slot * rt->page_size));
				if (n != (ssize_t)rt->page_size)
					upg_log("fork: child could not read page %p "
						"from swap", (void *)pa);
				break;
			default:
				break;
			}
		}
	}
}

static void child_restore(struct upg_runtime *rt)
{
	for (uint32_t i = 0; i < rt->nregions; i++)
		child_restore_region(rt, rt->sorted[i]);
	/* the threads are the parent's: the child's pager is gone */
	rt->paged = false;
	snprintf(rt->unpaged_reason, sizeof(rt->unpaged_reason),
		 "forked child: its memory is all resident, not paged");
	close(rt->uffd.fd);
	close(rt->staging_uffd.fd);
	if (rt->swapfile.fd >= 0)
		close(rt->swapfile.fd);
	rt->uffd.fd = rt->staging_uffd.fd = rt->swapfile.fd = -1;
	rt->nhandlers = 0;
	rt->handlers = NULL;
	rt->reclaim_thread = 0;
	staging_destroy(rt);
}

static void prepare(void)
{
	pthread_mutex_lock(&registry_lock);
	for (int i = 0; i < MAX_RUNTIMES; i++)
		if (registry[i])
			pthread_rwlock_wrlock(&registry[i]->fork_lock);
	if (pipe2(fork_pipe, O_CLOEXEC))
		fork_pipe[0] = fork_pipe[1] = -1;
}

static void in_parent(void)
{
	char c;

	if (fork_pipe[1] >= 0) {
		close(fork_pipe[1]);
		/* EOF once the child has restored its pages (or died) */
		while (read(fork_pipe[0], &c, 1) < 0 && errno == EINTR)
			;
		close(fork_pipe[0]);
	}
	for (int i = MAX_RUNTIMES - 1; i >= 0; i--)
		if (registry[i])
			pthread_rwlock_unlock(&registry[i]->fork_lock);
	pthread_mutex_unlock(&registry_lock);
}

static void in_child(void)
{
	if (fork_pipe[0] >= 0)
		close(fork_pipe[0]);
	for (int i = 0; i < MAX_RUNTIMES; i++) {
		struct upg_runtime *rt = registry[i];

		if (!rt)
			continue;
		child_restore(rt);
		registry[i] = NULL;
		/* a fresh lock: the inherited one is held by the parent's view */
		pthread_rwlock_init(&rt->fork_lock, NULL);
		STAT_INC(rt, events_fork);
	}
	if (fork_pipe[1] >= 0)
		close(fork_pipe[1]);
	fork_pipe[0] = fork_pipe[1] = -1;
	pthread_mutex_init(&registry_lock, NULL);
}

static void register_atfork(void)
{
	pthread_atfork(prepare, in_parent, in_child);
}

int fork_handlers_install(struct upg_runtime *rt)
{
	int ret = -ENOSPC;

	pthread_once(&atfork_once, register_atfork);
	pthread_mutex_lock(&registry_lock);
	for (int i = 0; i < MAX_RUNTIMES; i++) {
		if (!registry[i]) {
			registry[i] = rt;
			ret = 0;
			break;
		}
	}
	pthread_mutex_unlock(&registry_lock);
	if (ret)
		upg_log("more than %d runtimes: fork support is off for this one",
			MAX_RUNTIMES);
	return ret;
}

void fork_handlers_remove(struct upg_runtime *rt)
{
	pthread_mutex_lock(&registry_lock);
	for (int i = 0; i < MAX_RUNTIMES; i++)
		if (registry[i] == rt)
			registry[i] = NULL;
	pthread_mutex_unlock(&registry_lock);
}
