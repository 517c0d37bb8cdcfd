/* SPDX-License-Identifier: MIT */
/*
 * alloc_class.c - size classes and the shape of their slabs.
 *
 * A small request (<= 32 KiB) is rounded up to one of 72 sizes:
 *
 *   16, 32, ..., 128                 steps of 16       (8 classes)
 *   144, 160, ..., 256               steps of 2^(k-3)  (8 per power of two)
 *   288, 320, ..., 512
 *   ...
 *   18432, 20480, ..., 32768
 *
 * so internal waste is below 12.5% and the class of a size is computed with
 * one count-leading-zeros, no table.  Eight steps rather than the four of
 * jemalloc because waste is not only RSS here: every wasted byte is paged.
 * The allocation that matters most is "a page plus a header" (a database's
 * page cache: sqlite3 asks for 4104 and 4368 bytes).  Four classes per
 * power of two give it 5120 bytes, and sqlite3's footprint under
 * bench/programs grew by a quarter over glibc's, which a budget turns into
 * as many more page faults; eight give it 4608.
 *
 * A slab is the run of units that holds the objects of one class.  Its size
 * is the smallest number of units that holds "enough" objects (16 small
 * ones, 8 medium, 4 large) with at most 1/8 of it left over at the end.
 * Big slabs cost nothing until touched: the pager zero-fills a unit on its
 * first access, so an unused tail is only address space.
 *
 * Freeing computes an object's index from its offset in the slab by a
 * multiplication with a precomputed reciprocal instead of a division
 * (see upg_class_index: exact because slabs are at most 256 KiB).
 */
#include "alloc.h"

struct upg_class_info upg_classes[UPG_NCLASSES];
uint8_t upg_class_tab[UPG_CLASS_TAB_MAX / 16 + 1];

static pthread_once_t classes_once = PTHREAD_ONCE_INIT;

static size_t class_size(unsigned cls)
{
	unsigned lg, sub;

	if (cls < 8)
		return (cls + 1) * 16;
	lg = 7 + ((cls - 8) >> UPG_CLASS_SHIFT);
	sub = (cls - 8) & ((1U << UPG_CLASS_SHIFT) - 1);
	return ((size_t)1 << lg) + (sub + 1) * ((size_t)1 << (lg - UPG_CLASS_SHIFT));
}

static unsigned min_objects(size_t size)
{
	if (size <= 1024)
		return 16;
	if (size <= 8192)
		return 8;
	return 4;
}

static void classes_fill(void)
{
	unsigned cls;
	size_t sz;

	for (cls = 0; cls < UPG_NCLASSES; cls++) {
		struct upg_class_info *ci = &upg_classes[cls];
		size_t size = class_size(cls);
		size_t units, cap;

		for (units = 1; units < 64; units++) {
			size_t bytes = units * UPG_UNIT;
			size_t n = bytes / size;

			if (n > UPG_SLAB_MAX_OBJS) {
				/* only 16-byte objects: a single unit is plenty */
				units = 1;
				break;
			}
			if (n >= min_objects(size) && bytes - n * size <= bytes / 8)
				break;
		}
		ci->size = (uint32_t)size;
		ci->slab_units = (uint16_t)units;
		ci->nobjs = (uint16_t)(units * UPG_UNIT / size);
		cap = 65536 / size;
		cap = cap < 2 ? 2 : cap > 128 ? 128 : cap;
		ci->tcache_cap = (uint16_t)cap;
		ci->batch = (uint16_t)(cap / 2);
		ci->magic = (((uint64_t)1 << 40) + size - 1) / size;
		upg_check(ci->nobjs >= 1 && ci->nobjs <= UPG_SLAB_MAX_OBJS);
		upg_check(units * UPG_UNIT <= ((size_t)1 << 18));
	}
	for (cls = 0; cls <= UPG_CLASS_TAB_MAX / 16; cls++)
		upg_class_tab[cls] = (uint8_t)upg_size_class((size_t)cls * 16);
	/* exact because every class size is a multiple of 16 */
	if (UPG_DEBUG)
		for (sz = 0; sz <= UPG_CLASS_TAB_MAX; sz++)
			upg_assert(upg_size_class_fast(sz) == upg_size_class(sz));
}

void upg_classes_init(void)
{
	pthread_once(&classes_once, classes_fill);
}
