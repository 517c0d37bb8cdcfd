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
 *
 * The mmap family goes to alloc_mmap.c with the caller's return address:
 * libupager's own mappings come through here too, and must reach the
 * kernel untouched.  mmap64 is a name of its own for programs built with
 * 64-bit file offsets (most GNU programs).
 */
#include "config.h"

#include <malloc.h>
#include <stdarg.h>
#include <stdlib.h>
#include <sys/mman.h>

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

#define CALLER __builtin_return_address(0)

EXPORT void *mmap(void *addr, size_t len, int prot, int flags, int fd,
		  off_t off)
{
	return upg_mmap(addr, len, prot, flags, fd, (long)off, CALLER);
}

EXPORT void *mmap64(void *addr, size_t len, int prot, int flags, int fd,
		    off64_t off)
{
	return upg_mmap(addr, len, prot, flags, fd, (long)off, CALLER);
}

EXPORT int munmap(void *addr, size_t len)
{
	return upg_munmap(addr, len, CALLER);
}

EXPORT void *mremap(void *old_addr, size_t old_len, size_t new_len,
		    int flags, ...)
{
	void *new_addr = NULL;
	va_list ap;

	/* the fifth argument exists only with MREMAP_FIXED, as in glibc */
	if (flags & MREMAP_FIXED) {
		va_start(ap, flags);
		new_addr = va_arg(ap, void *);
		va_end(ap);
	}
	return upg_mremap(old_addr, old_len, new_len, flags, new_addr, CALLER);
}

EXPORT int mprotect(void *addr, size_t len, int prot)
{
	return upg_mprotect(addr, len, prot, CALLER);
}

EXPORT int madvise(void *addr, size_t len, int advice)
{
	return upg_madvise(addr, len, advice, CALLER);
}
