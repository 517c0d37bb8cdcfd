/* SPDX-License-Identifier: MIT */
/*
 * alloc_pagemap.c - from an address to the span that describes it.
 *
 * free(p) must find p's metadata without reading anything next to p: a
 * header in front of the object could be on a page that is swapped out,
 * and reading it would fault the page in just to throw it away.  So every
 * unit of managed memory has an entry in a table kept outside the regions,
 * as the kernel finds a struct page from a pfn:
 *
 *      addr:  | 17 bits: root index | 18 bits: leaf index | 12 bits |
 *                     |                      |
 *        root[2^17] --+--> leaf[2^18] -------+--> struct upg_span *
 *
 * The root is 1 MiB of .bss and a leaf is 2 MiB of lazily backed mmap, so
 * the table costs 8 bytes per unit in use (0.2%), nothing for the rest of
 * a reserved region.  Leaves
 * are created when a region is added and live as long as the process, so
 * a lookup is two loads and never takes a lock, and a stale pointer into a
 * released region still finds a leaf (whose entries were cleared).
 */
#include "alloc.h"

#include <errno.h>

#define PM_VA_BITS UPG_PM_VA_BITS
#define PM_LEAF_BITS UPG_PM_LEAF_BITS
#define PM_LEAF_SIZE ((size_t)1 << PM_LEAF_BITS)
#define pm_root upg_pm_root

#define pm_entry upg_pm_entry

/* upg_pagemap_get() is inline in alloc.h: free() looks up every object */
_Atomic(pm_entry *) upg_pm_root[(size_t)1 << UPG_PM_ROOT_BITS];
pthread_mutex_t upg_pagemap_lock = PTHREAD_MUTEX_INITIALIZER;

static inline size_t pm_root_index(uintptr_t a)
{
	return a >> (PM_LEAF_BITS + UPG_UNIT_SHIFT);
}

static inline size_t pm_leaf_index(uintptr_t a)
{
	return (a >> UPG_UNIT_SHIFT) & (PM_LEAF_SIZE - 1);
}

int upg_pagemap_cover(uintptr_t base, size_t len)
{
	uintptr_t a, end = base + len;
	int ret = 0;

	if (end < base || end > ((uintptr_t)1 << PM_VA_BITS))
		return -ENOMEM; /* above 128 TiB (5-level paging): not ours */
	pthread_mutex_lock(&upg_pagemap_lock);
	for (a = base & ~(((uintptr_t)1 << (PM_LEAF_BITS + UPG_UNIT_SHIFT)) - 1);
	     a < end; a += (uintptr_t)1 << (PM_LEAF_BITS + UPG_UNIT_SHIFT)) {
		size_t r = pm_root_index(a);
		pm_entry *leaf;

		if (atomic_load_explicit(&pm_root[r], memory_order_relaxed))
			continue;
		leaf = upg_os_alloc(PM_LEAF_SIZE * sizeof(pm_entry));
		if (!leaf) {
			ret = -ENOMEM;
			break;
		}
		atomic_store_explicit(&pm_root[r], leaf, memory_order_release);
	}
	pthread_mutex_unlock(&upg_pagemap_lock);
	return ret;
}

void upg_pagemap_set(uintptr_t addr, struct upg_span *s)
{
	pm_entry *leaf = atomic_load_explicit(&pm_root[pm_root_index(addr)],
					      memory_order_relaxed);

	upg_check(leaf != NULL); /* upg_pagemap_cover() was called */
	atomic_store_explicit(&leaf[pm_leaf_index(addr)], s,
			      memory_order_release);
}

void upg_pagemap_clear(uintptr_t base, size_t len)
{
	uintptr_t a;

	for (a = base; a < base + len; a += UPG_UNIT) {
		pm_entry *leaf = atomic_load_explicit(
			&pm_root[pm_root_index(a)], memory_order_relaxed);

		if (leaf)
			atomic_store_explicit(&leaf[pm_leaf_index(a)], NULL,
					      memory_order_relaxed);
	}
}
