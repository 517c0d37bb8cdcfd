/* SPDX-License-Identifier: MIT */
/*
 * alloc_fake.h - a region provider for allocator tests: plain mmap regions,
 * madvise discards, and a record of every call so that tests can check what
 * the heap asked of the pager (discard ranges, page alignment, regions).
 */
#ifndef UPG_TEST_ALLOC_FAKE_H
#define UPG_TEST_ALLOC_FAKE_H

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/mman.h>

#include <criterion/criterion.h>

#include "alloc.h"

#define FAKE_MAX_REGIONS 64

struct fake_provider {
	pthread_mutex_t lock;
	size_t page_size;
	unsigned nregions;
	struct {
		uintptr_t base;
		size_t len;
	} region[FAKE_MAX_REGIONS];
	uint64_t discards;
	uint64_t discarded_bytes;
	uintptr_t last_discard;
	size_t last_discard_len;
	bool fail_reserve;
	size_t room;             /* what ops.room() reports; SIZE_MAX at first */
	bool discard_gives_room; /* a discard adds its length to room */
	int64_t charged;         /* metadata charged through ops.charge */
};

static int fake_reserve(void *ctx, size_t len, void **addrp)
{
	struct fake_provider *f = ctx;
	void *p;

	if (f->fail_reserve || f->nregions == FAKE_MAX_REGIONS)
		return -ENOMEM;
	cr_assert_eq(len % f->page_size, 0, "region length %zu not in pages", len);
	/* over-map to align the region to the (fake) pager page */
	p = mmap(NULL, len + f->page_size, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED)
		return -ENOMEM;
	p = (void *)upg_align_up((uintptr_t)p, f->page_size);
	pthread_mutex_lock(&f->lock);
	f->region[f->nregions].base = (uintptr_t)p;
	f->region[f->nregions].len = len;
	f->nregions++;
	pthread_mutex_unlock(&f->lock);
	*addrp = p;
	return 0;
}

static int fake_release(void *ctx, void *addr, size_t len)
{
	(void)ctx;
	munmap(addr, len); /* the alignment slack stays mapped: a test */
	return 0;
}

static int fake_discard(void *ctx, void *addr, size_t len)
{
	struct fake_provider *f = ctx;
	uintptr_t a = (uintptr_t)addr;
	unsigned i;
	bool inside = false;

	cr_assert_eq(a % f->page_size, 0, "discard at %p not page aligned", addr);
	cr_assert_eq(len % f->page_size, 0, "discard of %zu not in pages", len);
	cr_assert_gt(len, 0);
	pthread_mutex_lock(&f->lock);
	for (i = 0; i < f->nregions; i++)
		if (a >= f->region[i].base &&
		    a + len <= f->region[i].base + f->region[i].len)
			inside = true;
	f->discards++;
	f->discarded_bytes += len;
	f->last_discard = a;
	f->last_discard_len = len;
	if (f->discard_gives_room && f->room != SIZE_MAX)
		f->room += len;
	pthread_mutex_unlock(&f->lock);
	cr_assert(inside, "discard [%p, +%zu) not inside one region", addr, len);
	return madvise(addr, len, MADV_DONTNEED) ? -errno : 0;
}

static size_t fake_room(void *ctx)
{
	struct fake_provider *f = ctx;
	size_t room;

	pthread_mutex_lock(&f->lock);
	room = f->room;
	pthread_mutex_unlock(&f->lock);
	return room;
}

static int fake_charge(void *ctx, int64_t bytes)
{
	struct fake_provider *f = ctx;

	pthread_mutex_lock(&f->lock);
	f->charged += bytes;
	cr_assert_geq(f->charged, 0, "more metadata given back than charged");
	pthread_mutex_unlock(&f->lock);
	return 0;
}

static inline void fake_ops(struct fake_provider *f, struct upg_region_ops *ops,
			    size_t page_size)
{
	memset(f, 0, sizeof(*f));
	pthread_mutex_init(&f->lock, NULL);
	f->page_size = page_size;
	f->room = SIZE_MAX;
	ops->reserve = fake_reserve;
	ops->release = fake_release;
	ops->discard = fake_discard;
	ops->lazy_free = NULL;
	ops->populate = NULL;
	ops->room = fake_room;
	ops->charge = fake_charge;
	ops->ctx = f;
	ops->page_size = page_size;
}

#endif
