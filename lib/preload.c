/* SPDX-License-Identifier: MIT */
/*
 * preload.c - libupager-preload.so: the malloc family of an unmodified
 * program, served by upager.
 *
 *   LD_PRELOAD=libupager-preload.so program   (or: upager run -- program)
 *
 * Symbol interposition only: every function forwards to its upg_*
 * namesake in libupager (alloc_process.c), which starts the pager from the
 * UPAGER_* variables on the first allocation.  C++ operator new and delete
 * reach these through libstdc++'s calls to malloc and free.
 */
#include "config.h"

#include <malloc.h>
#include <stdlib.h>

#include "upager.h"

#define EXPORT __attribute__((visibility("default")))

EXPORT void *malloc(size_t size)
{
	return upg_malloc(size);
}

EXPORT void free(void *ptr)
{
	upg_free(ptr);
}

EXPORT void *calloc(size_t nmemb, size_t size)
{
	return upg_calloc(nmemb, size);
}

EXPORT void *realloc(void *ptr, size_t size)
{
	return upg_realloc(ptr, size);
}

EXPORT void *reallocarray(void *ptr, size_t nmemb, size_t size)
{
	return upg_reallocarray(ptr, nmemb, size);
}

EXPORT int posix_memalign(void **memptr, size_t alignment, size_t size)
{
	return upg_posix_memalign(memptr, alignment, size);
}

EXPORT void *aligned_alloc(size_t alignment, size_t size)
{
	return upg_aligned_alloc(alignment, size);
}

EXPORT void *memalign(size_t alignment, size_t size)
{
	return upg_memalign(alignment, size);
}

EXPORT void *valloc(size_t size)
{
	return upg_valloc(size);
}

EXPORT void *pvalloc(size_t size)
{
	return upg_pvalloc(size);
}

EXPORT size_t malloc_usable_size(void *ptr)
{
	return upg_malloc_usable_size(ptr);
}
