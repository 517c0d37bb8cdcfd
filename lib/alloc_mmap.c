/* SPDX-License-Identifier: MIT */
/*
 * alloc_mmap.c - the program's anonymous mmap()s, served from managed
 * regions.
 *
 * Compilers (gcc's garbage-collected heap), language runtimes (CPython's
 * arenas) and programs with allocators of their own take their memory
 * from mmap(2), not malloc(3).  A budget that only covers malloc does not
 * hold for them.  So the shim forwards the mmap family here, and a private
 * anonymous read-write mapping of at least UPAGER_MMAP_MIN bytes is cut
 * from a second heap of the allocator's own kind (alloc_extent.c), whose
 * regions the pager manages.  Such a mapping is one LARGE span flagged
 * MMAP; all of them, with the HOLE spans below, are listed by address in
 * one sorted vector, so that munmap, mremap, mprotect and madvise of any
 * page range find what they touch by binary search:
 *
 *   mmap regions  [ MMAP ][ free ][MMAP][ HOLE ][    free    ][ MMAP ]
 *   malloc heap   [ ...... left alone: munmap of it is refused ...... ]
 *   elsewhere     the kernel's, passed through unchanged
 *
 * A mapping's pages are whole units, so munmap of part of one splits the
 * span and frees the part (the pager discards it: never written to swap);
 * the heap keeps no freed garbage (dirty_max 0), so what it hands out next
 * is zero already, as anonymous memory must be, and only edges of large
 * pager pages are ever cleared by hand.  mremap shrinks in place, grows in
 * place when the span after is free, and otherwise copies: each old page
 * read once, each new page written once, the old ones discarded.
 *
 * What the kernel would do differently cannot be served from a region
 * (one VMA registered with userfaultfd, whose page batches must not cross
 * a VMA boundary), so those pages are handed over to the kernel for good:
 * a HOLE span, never reused.  That happens for mprotect to anything but
 * read-write (and madvise of the fork-related kinds) -- the pages are
 * copied to a plain mapping that is then mremap()ed over them, contents
 * kept -- and for MAP_FIXED over them, which replaces them anyway.  The
 * kernel's UNMAP event tells the pager to forget those pages.
 *
 * libupager's own calls (the pager reserving its regions, zapping pages)
 * come through the shim too; they are recognised by their return address,
 * which lies in libupager's text, and go straight to the kernel, before any
 * lock.  Nothing here holds the mmap lock while it touches managed memory:
 * a copy or a clearing drops the lock (the pages concerned are out of the
 * program's reach meanwhile, or the program is racing itself), so a thread
 * waiting for the lock never waits for a page fault.
 */
#include "alloc.h"

#include <errno.h>
#include <link.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif
#ifndef MREMAP_DONTUNMAP
#define MREMAP_DONTUNMAP 4
#endif
#ifndef MADV_WIPEONFORK
#define MADV_WIPEONFORK 18
#define MADV_KEEPONFORK 19
#endif
#ifndef MADV_DONTNEED_LOCKED
#define MADV_DONTNEED_LOCKED 24
#endif

#define OS_PAGE ((uintptr_t)4096)
/*
 * Smaller mappings are left to the kernel.  16 KiB: gcc's cc1 maps each
 * large garbage-collected object on its own, 16 KiB for a 12 KiB object,
 * and those alone made 30 MiB of a 256 MiB budget run stay unpaged; below
 * that, little but guard pages and tiny tables.
 */
#define DEFAULT_MIN ((size_t)16 << 10)
#define RW (PROT_READ | PROT_WRITE)

static _Atomic(struct upg_heap *) mm_heap; /* NULL: interception off */
static struct upg_heap *mm_malloc_heap;
static struct upg_runtime *mm_rt;
static size_t mm_min = DEFAULT_MIN;
static uintptr_t mm_page;             /* pager page, discard granularity */
static uintptr_t self_lo, self_hi;    /* libupager's text */

static pthread_mutex_t mm_lock = PTHREAD_MUTEX_INITIALIZER;
/* mm_lock: MMAP and HOLE spans of mm_heap by base; disjoint, so also by end */
static struct upg_span **mm_v;
static size_t mm_n, mm_cap;
/* mm_lock: statistics */
static uint64_t st_bytes, st_peak, st_calls, st_partial;
static _Atomic uint64_t st_passed; /* counted without the lock */
static uint64_t st_in_place, st_moves, st_detached;

/* ------------------------------------------------------------- the kernel */

static void *sys_mmap(void *a, size_t l, int prot, int fl, int fd, long off)
{
	return (void *)syscall(SYS_mmap, a, l, prot, fl, fd, off);
}

static int sys_munmap(void *a, size_t l)
{
	return (int)syscall(SYS_munmap, a, l);
}

static void *sys_mremap(void *o, size_t ol, size_t nl, int fl, void *n)
{
	return (void *)syscall(SYS_mremap, o, ol, nl, fl, n);
}

static int sys_mprotect(void *a, size_t l, int prot)
{
	return (int)syscall(SYS_mprotect, a, l, prot);
}

static int sys_madvise(void *a, size_t l, int advice)
{
	return (int)syscall(SYS_madvise, a, l, advice);
}

/* ------------------------------------------------------------- options */

static int parse_bool(const char *v, bool *out)
{
	static const char *const yes[] = { "1", "yes", "on", "true" };
	static const char *const no[] = { "0", "no", "off", "false" };
	unsigned i;

	for (i = 0; i < 4; i++) {
		if (!strcasecmp(v, yes[i])) {
			*out = true;
			return 0;
		}
		if (!strcasecmp(v, no[i])) {
			*out = false;
			return 0;
		}
	}
	return -EINVAL;
}

UPG_API int upg_alloc_option_check(const char *name, const char *value,
				   char *err, size_t errlen)
{
	size_t size;
	bool b;

	if (!strncasecmp(name, "UPAGER_", 7))
		name += 7;
	if (!strcasecmp(name, "mmap")) {
		if (parse_bool(value, &b) == 0)
			return 0;
		if (err)
			snprintf(err, errlen,
				 "UPAGER_MMAP=%s: not on or off; use UPAGER_MMAP=1 or UPAGER_MMAP=0",
				 value);
		return -EINVAL;
	}
	if (!strcasecmp(name, "mmap_min") || !strcasecmp(name, "mmap-min")) {
		if (upg_parse_size(value, &size) == 0)
			return 0;
		if (err)
			snprintf(err, errlen,
				 "UPAGER_MMAP_MIN=%s: not a size; use e.g. UPAGER_MMAP_MIN=256K",
				 value);
		return -EINVAL;
	}
	return -ENOENT;
}

/* ------------------------------------------------------------- starting */

static int find_self(struct dl_phdr_info *info, size_t size, void *arg)
{
	uintptr_t me = (uintptr_t)arg;
	unsigned i;

	for (i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		uintptr_t lo = info->dlpi_addr + ph->p_vaddr;

		if (ph->p_type == PT_LOAD && (ph->p_flags & PF_X) && me >= lo &&
		    me < lo + ph->p_memsz) {
			self_lo = lo;
			self_hi = lo + ph->p_memsz;
			return 1;
		}
	}
	return 0;
}

/*
 * Discard as the program itself would: madvise, whose REMOVE event tells
 * the pager.  Not upg_advise(DONTNEED), which zaps with the pager's region
 * table locked: if a handler is applying an UNMAP event at that moment
 * (MAP_FIXED or mprotect has just handed pages of a region to the kernel),
 * it waits for that lock while the zap waits for the handler to read its
 * REMOVE event.
 */
static int mm_discard(void *ctx, void *addr, size_t len)
{
	return sys_madvise(addr, len, MADV_DONTNEED) ? -errno : 0;
}

int upg_mmap_start(struct upg_runtime *rt, struct upg_heap *malloc_heap,
		   char *err, size_t errlen)
{
	struct upg_heap_params params = { .dirty_max = SIZE_MAX };
	struct upg_region_ops ops;
	const char *v;
	struct upg_heap *h;
	bool on = true;
	int ret;

	v = getenv("UPAGER_MMAP");
	if (v && *v) {
		ret = upg_alloc_option_check("mmap", v, err, errlen);
		if (ret < 0)
			return ret;
		parse_bool(v, &on);
	}
	v = getenv("UPAGER_MMAP_MIN");
	if (v && *v) {
		ret = upg_alloc_option_check("mmap_min", v, err, errlen);
		if (ret < 0)
			return ret;
		upg_parse_size(v, &mm_min);
	}
	/* unpaged, there is nothing to gain and the kernel does it best */
	if (!on || !rt || !upg_runtime_is_paged(rt))
		return 0;
	upg_region_ops_runtime(&ops, rt);
	ops.discard = mm_discard;
	ops.lazy_free = NULL; /* as discard: never the pager under our lock */
	ops.populate = NULL;
	ret = upg_heap_create(&ops, &params, &h);
	if (ret < 0)
		return 0; /* no interception: the program still runs */
	dl_iterate_phdr(find_self, (void *)find_self);
	mm_rt = rt;
	mm_malloc_heap = malloc_heap;
	mm_page = ops.page_size;
	atomic_store_explicit(&mm_heap, h, memory_order_release);
	return 0;
}

struct upg_heap *upg_mmap_heap(void)
{
	return atomic_load_explicit(&mm_heap, memory_order_acquire);
}

/* A call made by libupager itself: straight to the kernel. */
static inline bool internal(const void *caller)
{
	return (uintptr_t)caller >= self_lo && (uintptr_t)caller < self_hi;
}

static inline uintptr_t send(const struct upg_span *s)
{
	return s->base + (uintptr_t)s->units * UPG_UNIT;
}

static inline uintptr_t os_align(size_t len)
{
	return upg_align_up(len, OS_PAGE);
}

/* -------------------------------------------------- the sorted vector */

/* Index of the first span that ends after @a; mm_n if none. */
static size_t vec_search(uintptr_t a)
{
	size_t lo = 0, hi = mm_n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (send(mm_v[mid]) > a)
			hi = mid;
		else
			lo = mid + 1;
	}
	return lo;
}

/* Room for @more entries, so that a split cannot fail half way. */
static int vec_reserve(size_t more)
{
	struct upg_span **nv;
	size_t cap;

	if (mm_n + more <= mm_cap)
		return 0;
	cap = mm_cap ? mm_cap * 2 : 512;
	while (cap < mm_n + more)
		cap *= 2;
	nv = upg_os_alloc(cap * sizeof(*nv));
	if (!nv)
		return -ENOMEM;
	if (mm_n)
		memcpy(nv, mm_v, mm_n * sizeof(*nv));
	upg_os_free(mm_v, mm_cap * sizeof(*nv));
	mm_v = nv;
	mm_cap = cap;
	return 0;
}

static void vec_insert(struct upg_span *s)
{
	size_t i = vec_search(s->base);

	upg_assert(mm_n < mm_cap);
	memmove(&mm_v[i + 1], &mm_v[i], (mm_n - i) * sizeof(*mm_v));
	mm_v[i] = s;
	mm_n++;
}

static void vec_remove(struct upg_span *s)
{
	size_t i = vec_search(s->base);

	upg_assert(i < mm_n && mm_v[i] == s);
	memmove(&mm_v[i], &mm_v[i + 1], (mm_n - i - 1) * sizeof(*mm_v));
	mm_n--;
}

/* --------------------------------------------------------------- pieces */

enum piece_kind {
	P_OUTSIDE, /* not upager's: the kernel's business */
	P_HEAP,    /* the malloc heap's regions */
	P_FREE,    /* free space of the mmap regions: unmapped to the program */
	P_LIVE,    /* an intercepted mapping (span s) */
	P_HOLE,    /* handed to the kernel (span s) */
};

struct piece {
	enum piece_kind kind;
	uintptr_t lo, hi;
	struct upg_span *s;
};

/* The piece of [@a, @hi) that starts at @a (mm_lock held). */
static void piece_at(struct upg_heap *h, uintptr_t a, uintptr_t hi,
		     struct piece *p)
{
	uintptr_t l1 = 0, h1 = 0, l2 = 0, h2 = 0, e = hi;
	bool r1 = upg_heap_region_after(h, a, &l1, &h1);
	bool r2 = mm_malloc_heap &&
		  upg_heap_region_after(mm_malloc_heap, a, &l2, &h2);
	size_t i;

	p->lo = a;
	p->s = NULL;
	if (r1 && l1 <= a) {
		e = h1 < hi ? h1 : hi;
		i = vec_search(a);
		if (i < mm_n && mm_v[i]->base <= a) {
			p->s = mm_v[i];
			p->kind = p->s->flags & UPG_SPAN_HOLE ? P_HOLE : P_LIVE;
			p->hi = send(p->s) < e ? send(p->s) : e;
			return;
		}
		p->kind = P_FREE;
		p->hi = i < mm_n && mm_v[i]->base < e ? mm_v[i]->base : e;
		return;
	}
	if (r2 && l2 <= a) {
		p->kind = P_HEAP;
		p->hi = h2 < hi ? h2 : hi;
		return;
	}
	if (r1 && l1 < e)
		e = l1;
	if (r2 && l2 < e)
		e = l2;
	p->kind = P_OUTSIDE;
	p->hi = e;
}

/* --------------------------------------------------------- span changes */

/*
 * Split MMAP or HOLE span @s so that [@lo, @hi), inside it, is a span of
 * its own, and return that (mm_lock held); NULL when out of memory.
 */
static struct upg_span *isolate(struct upg_heap *h, struct upg_span *s,
				uintptr_t lo, uintptr_t hi)
{
	struct upg_span *t;

	if (vec_reserve(2) < 0)
		return NULL;
	pthread_mutex_lock(&h->lock);
	if (lo > s->base) {
		t = upg_pages_split(h, s, (lo - s->base) / UPG_UNIT);
		if (!t)
			goto fail;
		vec_insert(t);
		s = t;
	}
	if (hi < send(s)) {
		t = upg_pages_split(h, s, (hi - s->base) / UPG_UNIT);
		if (!t)
			goto fail;
		vec_insert(t);
	}
	pthread_mutex_unlock(&h->lock);
	return s;
fail:
	pthread_mutex_unlock(&h->lock);
	return NULL;
}

/* Free intercepted span @s: the pager discards its pages (mm_lock held). */
static void free_span(struct upg_heap *h, struct upg_span *s)
{
	size_t bytes = (size_t)s->units * UPG_UNIT;

	vec_remove(s);
	st_bytes -= bytes;
	pthread_mutex_lock(&h->lock);
	h->large_bytes -= bytes;
	h->large_frees++;
	upg_pages_free(h, s);
	pthread_mutex_unlock(&h->lock);
}

/* A new MMAP span of @len bytes (mm_lock held); *@zero: known zero. */
static struct upg_span *span_new(struct upg_heap *h, size_t len, bool *zero)
{
	size_t units = upg_align_up(len, UPG_UNIT) / UPG_UNIT;
	struct upg_span *s;

	if (vec_reserve(1) < 0)
		return NULL;
	pthread_mutex_lock(&h->lock);
	s = upg_pages_alloc(h, units, mm_page / UPG_UNIT);
	if (s) {
		*zero = s->flags & UPG_SPAN_ZERO;
		s->flags = (uint8_t)((s->flags & (UPG_SPAN_RFIRST | UPG_SPAN_RLAST)) |
				     UPG_SPAN_MMAP);
		atomic_store_explicit(&s->kind, UPG_SPAN_LARGE,
				      memory_order_release);
		upg_pages_set_map(s);
		h->large_bytes += units * UPG_UNIT;
		h->large_allocs++;
	}
	pthread_mutex_unlock(&h->lock);
	if (!s)
		return NULL;
	vec_insert(s);
	st_bytes += units * UPG_UNIT;
	if (st_bytes > st_peak)
		st_peak = st_bytes;
	return s;
}

/*
 * Make [@lo, @hi) of one intercepted span read as zero: its whole pager
 * pages are discarded, the rest (edges of pages larger than a unit) is
 * cleared by hand.  Touches memory: mm_lock not held.
 */
static void zero_range(struct upg_heap *h, uintptr_t lo, uintptr_t hi)
{
	uintptr_t plo = upg_align_up(lo, mm_page), phi = hi & ~(mm_page - 1);

	if (plo >= phi) {
		memset((void *)lo, 0, hi - lo);
		return;
	}
	if (h->ops.discard(h->ops.ctx, (void *)plo, phi - plo) < 0)
		memset((void *)plo, 0, phi - plo);
	memset((void *)lo, 0, plo - lo);
	memset((void *)phi, 0, hi - phi);
}

/*
 * Make every piece of [@lo, @hi) in the mmap regions a HOLE, given to the
 * kernel, whose MAP_FIXED or mremap is about to replace it (mm_lock
 * held).  -ENOMEM if a span cannot be split.
 */
static int make_holes(struct upg_heap *h, uintptr_t lo, uintptr_t hi)
{
	struct piece p;
	uintptr_t a;

	for (a = lo; a < hi; a = p.hi) {
		struct upg_span *s;

		piece_at(h, a, hi, &p);
		if (p.kind == P_LIVE) {
			s = isolate(h, p.s, p.lo, p.hi);
			if (!s)
				return -ENOMEM;
			s->flags = (uint8_t)((s->flags & ~UPG_SPAN_MMAP) |
					     UPG_SPAN_HOLE);
			st_bytes -= p.hi - p.lo;
			st_detached += p.hi - p.lo;
		} else if (p.kind == P_FREE) {
			if (vec_reserve(1) < 0)
				return -ENOMEM;
			pthread_mutex_lock(&h->lock);
			s = upg_pages_alloc_at(h, p.lo, (p.hi - p.lo) / UPG_UNIT);
			if (s) {
				s->flags = (uint8_t)((s->flags & (UPG_SPAN_RFIRST |
								  UPG_SPAN_RLAST)) |
						     UPG_SPAN_HOLE);
				atomic_store_explicit(&s->kind, UPG_SPAN_LARGE,
						      memory_order_release);
				upg_pages_set_map(s);
				h->large_bytes += p.hi - p.lo;
			}
			pthread_mutex_unlock(&h->lock);
			if (!s)
				return -ENOMEM;
			vec_insert(s);
		}
	}
	return 0;
}

/*
 * Hand [@lo, @hi) of intercepted span @s to the kernel with its contents:
 * copy them to a plain mapping, which then replaces the range.  Called
 * and returns with mm_lock held, drops it for the copy.  -errno.
 */
static int detach(struct upg_heap *h, struct upg_span *s, uintptr_t lo,
		  uintptr_t hi)
{
	size_t len;
	void *tmp;
	int ret = 0;

	/* whole pager pages, as far as the span goes: a page batch of the
	 * pager must not reach across into the kernel's mapping */
	lo = lo & ~(mm_page - 1);
	hi = upg_align_up(hi, mm_page);
	if (lo < s->base)
		lo = s->base;
	if (hi > send(s))
		hi = send(s);
	len = hi - lo;
	tmp = sys_mmap(NULL, len, RW, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (tmp == MAP_FAILED)
		return -errno;
	s = isolate(h, s, lo, hi);
	if (!s) {
		sys_munmap(tmp, len);
		return -ENOMEM;
	}
	/* a HOLE from now on: nobody frees it while the lock is dropped */
	s->flags = (uint8_t)((s->flags & ~UPG_SPAN_MMAP) | UPG_SPAN_HOLE);
	st_bytes -= len;
	st_detached += len;
	pthread_mutex_unlock(&mm_lock);
	memcpy(tmp, (void *)lo, len);
	if (sys_mremap(tmp, len, len, MREMAP_MAYMOVE | MREMAP_FIXED,
		       (void *)lo) == MAP_FAILED) {
		ret = -errno;
		sys_munmap(tmp, len);
	}
	pthread_mutex_lock(&mm_lock);
	if (ret < 0)
		upg_warn_once("cannot hand %p (%zu bytes) over to the kernel: error %d",
			      (void *)lo, len, -ret);
	return ret;
}

/* munmap of [@lo, @hi) (mm_lock held). */
static int unmap_locked(struct upg_heap *h, uintptr_t lo, uintptr_t hi)
{
	struct piece p;
	uintptr_t a;
	int ret = 0;

	for (a = lo; a < hi; a = p.hi) {
		struct upg_span *s;

		piece_at(h, a, hi, &p);
		switch (p.kind) {
		case P_OUTSIDE:
		case P_HOLE:
			if (sys_munmap((void *)p.lo, p.hi - p.lo) < 0)
				ret = -errno;
			break;
		case P_HEAP:
			upg_warn_once("munmap(%p, %zu): memory of malloc(), not of mmap(); ignored",
				      (void *)p.lo, (size_t)(p.hi - p.lo));
			break;
		case P_FREE:
			break;
		case P_LIVE:
			s = p.s;
			if (p.lo != s->base || p.hi != send(s)) {
				s = isolate(h, s, p.lo, p.hi);
				if (!s) {
					/* keep it mapped: correct, not tight */
					ret = -ENOMEM;
					break;
				}
				st_partial++;
			}
			free_span(h, s);
			break;
		}
	}
	return ret;
}

/* ---------------------------------------------------------------- mmap */

/* Can a mapping of these arguments be served from a region exactly? */
static bool interceptable(void *addr, size_t len, int prot, int flags, long off)
{
	return !addr && len >= mm_min && len <= ((size_t)1 << 43) &&
	       prot == RW && off == 0 &&
	       (flags & ~(MAP_NORESERVE)) == (MAP_PRIVATE | MAP_ANONYMOUS);
}

static void *map_fixed(struct upg_heap *h, void *addr, size_t len, int prot,
		       int flags, int fd, long off)
{
	uintptr_t lo = (uintptr_t)addr, hi = lo + os_align(len), a;
	bool exact = prot == RW && off == 0 &&
		     (flags & ~(MAP_NORESERVE | MAP_FIXED)) ==
			     (MAP_PRIVATE | MAP_ANONYMOUS);
	struct piece p;
	int ret;

	if (lo % OS_PAGE || len == 0 || hi < lo)
		return sys_mmap(addr, len, prot, flags, fd, off);
	pthread_mutex_lock(&mm_lock);
	for (a = lo; exact && a < hi; a = p.hi) {
		piece_at(h, a, hi, &p);
		exact = p.kind == P_LIVE;
	}
	if (exact) {
		/* fresh zero pages over intercepted ones: discard them */
		for (a = lo; a < hi; a = p.hi) {
			piece_at(h, a, hi, &p);
			pthread_mutex_unlock(&mm_lock);
			zero_range(h, p.lo, p.hi);
			pthread_mutex_lock(&mm_lock);
		}
		st_calls++;
		pthread_mutex_unlock(&mm_lock);
		return addr;
	}
	ret = make_holes(h, lo, hi);
	st_passed++;
	pthread_mutex_unlock(&mm_lock);
	if (ret < 0) {
		errno = -ret;
		return MAP_FAILED;
	}
	return sys_mmap(addr, len, prot, flags, fd, off);
}

UPG_API void *upg_mmap(void *addr, size_t len, int prot, int flags, int fd,
		       long off, const void *caller)
{
	struct upg_heap *h = atomic_load_explicit(&mm_heap, memory_order_acquire);
	struct upg_span *s;
	bool zero = false;

	if (unlikely(!h) && !internal(caller) &&
	    interceptable(addr, len, prot, flags, off)) {
		/* a program that maps memory before it mallocs any */
		upg_alloc_start();
		h = atomic_load_explicit(&mm_heap, memory_order_acquire);
	}
	if (!h || internal(caller))
		return sys_mmap(addr, len, prot, flags, fd, off);
	if (flags & MAP_FIXED)
		return map_fixed(h, addr, len, prot, flags, fd, off);
	if (!interceptable(addr, len, prot, flags, off)) {
		atomic_fetch_add_explicit(&st_passed, 1, memory_order_relaxed);
		return sys_mmap(addr, len, prot, flags, fd, off);
	}
	pthread_mutex_lock(&mm_lock);
	s = span_new(h, len, &zero);
	if (s)
		st_calls++;
	else
		st_passed++;
	pthread_mutex_unlock(&mm_lock);
	if (!s) /* no address space or metadata: the kernel may still have some */
		return sys_mmap(addr, len, prot, flags, fd, off);
	if (!zero)
		zero_range(h, s->base, s->base + os_align(len));
	return (void *)s->base;
}

UPG_API int upg_munmap(void *addr, size_t len, const void *caller)
{
	struct upg_heap *h = atomic_load_explicit(&mm_heap, memory_order_acquire);
	uintptr_t lo = (uintptr_t)addr, hi = lo + os_align(len);
	int ret;

	if (!h || internal(caller) || lo % OS_PAGE || len == 0 || hi < lo)
		return sys_munmap(addr, len);
	pthread_mutex_lock(&mm_lock);
	ret = unmap_locked(h, lo, hi);
	pthread_mutex_unlock(&mm_lock);
	if (ret < 0) {
		errno = -ret;
		return -1;
	}
	return 0;
}

/* -------------------------------------------------------------- mremap */

/* mremap of [@o, @o + @ol) inside intercepted span @s (mm_lock held;
 * dropped to copy). */
static void *remap_live(struct upg_heap *h, struct upg_span *s, uintptr_t o,
			size_t ol, size_t nl, int flags, uintptr_t n)
{
	bool zero = false, grown = false;
	struct upg_span *t;
	size_t copy;

	if (!(flags & (MREMAP_FIXED | MREMAP_DONTUNMAP))) {
		if (nl == ol)
			return (void *)o;
		if (nl < ol) {
			int ret = unmap_locked(h, o + nl, o + ol);

			if (ret < 0) {
				errno = -ret;
				return MAP_FAILED;
			}
			st_in_place++;
			return (void *)o;
		}
		if (o + ol == send(s)) {
			size_t units = (o + nl - s->base) / UPG_UNIT;

			pthread_mutex_lock(&h->lock);
			grown = upg_pages_grow(h, s, units, &zero);
			if (grown)
				h->large_bytes += nl - ol;
			pthread_mutex_unlock(&h->lock);
		}
		if (grown) {
			st_bytes += nl - ol;
			if (st_bytes > st_peak)
				st_peak = st_bytes;
			st_in_place++;
			pthread_mutex_unlock(&mm_lock);
			if (!zero)
				zero_range(h, o + ol, o + nl);
			pthread_mutex_lock(&mm_lock);
			return (void *)o;
		}
		if (!(flags & MREMAP_MAYMOVE)) {
			errno = ENOMEM;
			return MAP_FAILED;
		}
	}
	if ((flags & MREMAP_DONTUNMAP) && ol != nl) {
		errno = EINVAL;
		return MAP_FAILED;
	}
	copy = ol < nl ? ol : nl;
	if (flags & MREMAP_FIXED) {
		void *p;

		/* the destination, as mmap(MAP_FIXED) would make it */
		pthread_mutex_unlock(&mm_lock);
		p = map_fixed(h, (void *)n, nl, RW,
			      MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
		pthread_mutex_lock(&mm_lock);
		if (p == MAP_FAILED)
			return MAP_FAILED;
	} else {
		t = span_new(h, nl, &zero);
		if (!t) {
			errno = ENOMEM;
			return MAP_FAILED;
		}
		n = t->base;
		if (!zero) {
			pthread_mutex_unlock(&mm_lock);
			zero_range(h, n + copy, n + nl);
			pthread_mutex_lock(&mm_lock);
		}
	}
	st_moves++;
	pthread_mutex_unlock(&mm_lock);
	memcpy((void *)n, (void *)o, copy);
	pthread_mutex_lock(&mm_lock);
	if (flags & MREMAP_DONTUNMAP) {
		struct piece p;
		uintptr_t a;

		/* the old range stays mapped, empty */
		for (a = o; a < o + ol; a = p.hi) {
			piece_at(h, a, o + ol, &p);
			if (p.kind != P_LIVE)
				continue;
			pthread_mutex_unlock(&mm_lock);
			zero_range(h, p.lo, p.hi);
			pthread_mutex_lock(&mm_lock);
		}
	} else {
		unmap_locked(h, o, o + ol);
	}
	return (void *)n;
}

UPG_API void *upg_mremap(void *old_addr, size_t old_len, size_t new_len,
			 int flags, void *new_addr, const void *caller)
{
	struct upg_heap *h = atomic_load_explicit(&mm_heap, memory_order_acquire);
	uintptr_t o = (uintptr_t)old_addr, n = (uintptr_t)new_addr;
	size_t ol = os_align(old_len), nl = os_align(new_len);
	struct piece p;
	void *ret;

	if (!h || internal(caller))
		return sys_mremap(old_addr, old_len, new_len, flags, new_addr);
	/* bad arguments: the kernel rejects them before it changes anything */
	if (o % OS_PAGE || new_len == 0 || nl < new_len || ol < old_len ||
	    (flags & ~(MREMAP_MAYMOVE | MREMAP_FIXED | MREMAP_DONTUNMAP)) ||
	    ((flags & (MREMAP_FIXED | MREMAP_DONTUNMAP)) &&
	     !(flags & MREMAP_MAYMOVE)) ||
	    ((flags & MREMAP_FIXED) && n % OS_PAGE))
		return sys_mremap(old_addr, old_len, new_len, flags, new_addr);
	pthread_mutex_lock(&mm_lock);
	piece_at(h, o, o + (ol ? ol : OS_PAGE), &p);
	if (p.kind == P_LIVE) {
		if (ol == 0 || p.hi < o + ol) {
			/* no private mapping is duplicated; no VMA spans two */
			errno = ol == 0 ? EINVAL : EFAULT;
			ret = MAP_FAILED;
		} else if ((flags & MREMAP_FIXED) && n < o + ol && o < n + nl) {
			errno = EINVAL;
			ret = MAP_FAILED;
		} else {
			ret = remap_live(h, p.s, o, ol, nl, flags, n);
		}
		pthread_mutex_unlock(&mm_lock);
		return ret;
	}
	if (p.kind == P_FREE || p.kind == P_HEAP) {
		pthread_mutex_unlock(&mm_lock);
		errno = EFAULT;
		return MAP_FAILED;
	}
	/* the kernel's mapping; whatever it lands on in a region is lost */
	if (flags & MREMAP_FIXED) {
		int r = make_holes(h, n, n + nl);

		if (r < 0) {
			pthread_mutex_unlock(&mm_lock);
			errno = -r;
			return MAP_FAILED;
		}
	}
	pthread_mutex_unlock(&mm_lock);
	return sys_mremap(old_addr, old_len, new_len, flags, new_addr);
}

/* ------------------------------------------------- mprotect and madvise */

UPG_API int upg_mprotect(void *addr, size_t len, int prot, const void *caller)
{
	struct upg_heap *h = atomic_load_explicit(&mm_heap, memory_order_acquire);
	uintptr_t lo = (uintptr_t)addr, hi = lo + os_align(len), a;
	struct piece p;
	int ret = 0;

	if (!h || internal(caller) || lo % OS_PAGE || len == 0 || hi < lo)
		return sys_mprotect(addr, len, prot);
	pthread_mutex_lock(&mm_lock);
	/* unmapped pages (free space of a region): the kernel's ENOMEM */
	for (a = lo; a < hi; a = p.hi) {
		piece_at(h, a, hi, &p);
		if (p.kind == P_FREE) {
			pthread_mutex_unlock(&mm_lock);
			errno = ENOMEM;
			return -1;
		}
	}
	for (a = lo; a < hi && ret == 0; a = p.hi) {
		piece_at(h, a, hi, &p);
		if (p.kind == P_LIVE) {
			/* read-write is what it is already */
			if (prot == RW)
				continue;
			ret = detach(h, p.s, p.lo, p.hi);
			if (ret < 0)
				break;
		}
		if (sys_mprotect((void *)p.lo, p.hi - p.lo, prot) < 0)
			ret = -errno;
	}
	pthread_mutex_unlock(&mm_lock);
	if (ret < 0) {
		errno = -ret;
		return -1;
	}
	return 0;
}

enum advice_kind { ADV_ZERO, ADV_HINT, ADV_WILLNEED, ADV_DETACH, ADV_BAD };

static enum advice_kind advice_kind(int advice)
{
	switch (advice) {
	case MADV_DONTNEED:
	case MADV_FREE:
	case MADV_DONTNEED_LOCKED:
		return ADV_ZERO;
	case MADV_WILLNEED:
		return ADV_WILLNEED;
	case MADV_NORMAL:
	case MADV_RANDOM:
	case MADV_SEQUENTIAL:
	case MADV_HUGEPAGE:
	case MADV_NOHUGEPAGE:
	case MADV_DONTDUMP:
	case MADV_DODUMP:
	case MADV_MERGEABLE:
	case MADV_UNMERGEABLE:
	case 20: /* MADV_COLD */
	case 21: /* MADV_PAGEOUT */
	case 22: /* MADV_POPULATE_READ */
	case 23: /* MADV_POPULATE_WRITE */
	case 25: /* MADV_COLLAPSE */
		/* hints: splitting the region's VMA for them would do harm */
		return ADV_HINT;
	case MADV_DONTFORK:
	case MADV_DOFORK:
	case MADV_WIPEONFORK:
	case MADV_KEEPONFORK:
		return ADV_DETACH;
	default:
		return ADV_BAD;
	}
}

UPG_API int upg_madvise(void *addr, size_t len, int advice, const void *caller)
{
	struct upg_heap *h = atomic_load_explicit(&mm_heap, memory_order_acquire);
	uintptr_t lo = (uintptr_t)addr, hi = lo + os_align(len), a;
	enum advice_kind k = advice_kind(advice);
	struct piece p;
	int ret = 0;

	if (!h || internal(caller) || lo % OS_PAGE || len == 0 || hi < lo)
		return sys_madvise(addr, len, advice);
	pthread_mutex_lock(&mm_lock);
	for (a = lo; a < hi; a = p.hi) {
		piece_at(h, a, hi, &p);
		if (p.kind == P_FREE) {
			ret = -ENOMEM; /* the kernel's answer for unmapped pages */
			continue;
		}
		if (p.kind != P_LIVE) {
			if (sys_madvise((void *)p.lo, p.hi - p.lo, advice) < 0)
				ret = -errno;
			continue;
		}
		switch (k) {
		case ADV_ZERO:
			pthread_mutex_unlock(&mm_lock);
			zero_range(h, p.lo, p.hi);
			pthread_mutex_lock(&mm_lock);
			break;
		case ADV_WILLNEED:
			upg_advise(mm_rt, (void *)p.lo, p.hi - p.lo,
				   UPG_ADV_WILLNEED);
			break;
		case ADV_HINT:
			break;
		case ADV_DETACH:
			ret = detach(h, p.s, p.lo, p.hi);
			if (ret == 0 && sys_madvise((void *)p.lo, p.hi - p.lo,
						    advice) < 0)
				ret = -errno;
			break;
		case ADV_BAD:
			ret = -EINVAL;
			break;
		}
	}
	pthread_mutex_unlock(&mm_lock);
	if (ret < 0) {
		errno = -ret;
		return -1;
	}
	return 0;
}

/* ------------------------------------------------------- fork, statistics */

void upg_mmap_fork_prepare(void)
{
	struct upg_heap *h = atomic_load(&mm_heap);

	if (!h)
		return;
	pthread_mutex_lock(&mm_lock);
	pthread_mutex_lock(&h->lock);
}

void upg_mmap_fork_parent(void)
{
	struct upg_heap *h = atomic_load(&mm_heap);

	if (!h)
		return;
	pthread_mutex_unlock(&h->lock);
	pthread_mutex_unlock(&mm_lock);
}

void upg_mmap_fork_child(void)
{
	struct upg_heap *h = atomic_load(&mm_heap);

	if (!h)
		return;
	pthread_mutex_init(&h->lock, NULL);
	pthread_mutex_init(&mm_lock, NULL);
}

void upg_mmap_stats(struct upg_alloc_stats *st)
{
	if (!atomic_load(&mm_heap))
		return;
	pthread_mutex_lock(&mm_lock);
	st->mmap_bytes = st_bytes;
	st->mmap_peak_bytes = st_peak;
	st->mmap_calls = st_calls;
	st->mmap_passed = atomic_load_explicit(&st_passed, memory_order_relaxed);
	st->mmap_partial = st_partial;
	st->mremap_in_place = st_in_place;
	st->mremap_moves = st_moves;
	st->mmap_detached_bytes = st_detached;
	pthread_mutex_unlock(&mm_lock);
}
