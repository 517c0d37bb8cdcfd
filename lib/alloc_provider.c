/* SPDX-License-Identifier: MIT */
/*
 * alloc_provider.c - where the heap's address space comes from.
 *
 * The allocator sits on top of the pager and uses nothing of it but its
 * public calls: reserve a region, release it, advise on pages of it, read
 * the budget's room and charge the heap's own metadata to the budget.  Going
 * through this small table instead of calling them directly keeps the
 * allocator testable without a pager, and gives the process heap somewhere
 * to live when no runtime can be created at all (plain mmap: the program
 * runs unpaged rather than not at all).
 */
#include "alloc.h"

#include <errno.h>
#include <sys/mman.h>

static int rt_reserve(void *ctx, size_t len, void **addrp)
{
	return upg_region_reserve(ctx, len, addrp);
}

static int rt_release(void *ctx, void *addr, size_t len)
{
	return upg_region_release(ctx, addr);
}

static int rt_discard(void *ctx, void *addr, size_t len)
{
	return upg_advise(ctx, addr, len, UPG_ADV_DONTNEED);
}

static int rt_lazy_free(void *ctx, void *addr, size_t len)
{
	return upg_advise(ctx, addr, len, UPG_ADV_FREE);
}

static int rt_populate(void *ctx, void *addr, size_t len)
{
	return upg_advise(ctx, addr, len, UPG_ADV_POPULATE);
}

static size_t rt_room(void *ctx)
{
	return upg_budget_room(ctx);
}

static int rt_charge(void *ctx, int64_t bytes)
{
	return upg_budget_charge(ctx, bytes);
}

void upg_region_ops_runtime(struct upg_region_ops *ops, struct upg_runtime *rt)
{
	ops->reserve = rt_reserve;
	ops->release = rt_release;
	ops->discard = rt_discard;
	ops->lazy_free = rt_lazy_free;
	ops->populate = rt_populate;
	ops->room = rt_room;
	ops->charge = rt_charge;
	ops->ctx = rt;
	ops->page_size = upg_runtime_page_size(rt);
}

static int os_reserve(void *ctx, size_t len, void **addrp)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

	if (p == MAP_FAILED)
		return -ENOMEM;
	*addrp = p;
	return 0;
}

static int os_release(void *ctx, void *addr, size_t len)
{
	return munmap(addr, len) ? -errno : 0;
}

static int os_discard(void *ctx, void *addr, size_t len)
{
	return madvise(addr, len, MADV_DONTNEED) ? -errno : 0;
}

void upg_region_ops_os(struct upg_region_ops *ops)
{
	ops->reserve = os_reserve;
	ops->release = os_release;
	ops->discard = os_discard;
	ops->lazy_free = NULL;
	ops->populate = NULL; /* the kernel's own faults are cheap enough */
	ops->room = NULL;
	ops->charge = NULL; /* no budget to count it against */
	ops->ctx = NULL;
	ops->page_size = UPG_UNIT;
}
