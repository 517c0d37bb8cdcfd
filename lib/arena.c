/* SPDX-License-Identifier: MIT */
/*
 * arena.c - memory for the pager's own use.
 *
 * The pager's tables (page tables, frame table, buffers) are mapped straight
 * from the kernel, never from malloc and never inside a managed region, so
 * that a pager thread touching its own data can neither fault into itself
 * nor re-enter an interposed allocator.  Mappings are lazily backed: a large
 * table costs nothing until its entries are touched.
 */
#include "internal.h"

#include <sys/mman.h>

static size_t round_to_os_page(size_t size)
{
	return (size + 4095) & ~(size_t)4095;
}

void *upg_os_alloc(size_t size)
{
	void *p;

	if (size == 0)
		return NULL;
	p = mmap(NULL, round_to_os_page(size), PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	return p == MAP_FAILED ? NULL : p;
}

void upg_os_free(void *p, size_t size)
{
	if (p)
		munmap(p, round_to_os_page(size));
}
