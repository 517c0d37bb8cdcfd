/* SPDX-License-Identifier: MIT */
/*
 * fault.c - what a page fault costs under upager, against what it cannot
 * cost less than.
 *
 * A fault served by a user-space pager is at least one userfaultfd round
 * trip: the faulting thread traps, the kernel queues a uffd_msg, a handler
 * thread reads it and resolves the address with an ioctl that maps a page
 * and wakes the faulter.  A major fault adds one read of the page from swap.
 * So the floors are measured here, in the same run and on the same machine
 * as upager itself, with nothing of upager in them:
 *
 *   raw_zeropage_{spin,block}  bare handler thread, UFFDIO_ZEROPAGE
 *   raw_copy_{spin,block}      bare handler thread, UFFDIO_COPY of 4 KiB
 *   raw_read_{spin,block}      one io_uring 4 KiB O_DIRECT read at a time, of
 *                              random offsets of a pre-written file in the
 *                              swap directory
 *
 * and then upager's own figures, each divided by its floor:
 *
 *   zero_fill    first touch of a page          / raw ZEROPAGE or COPY
 *   soft_fault   touch of an INACTIVE page      / raw COPY
 *   major_fault  touch of a SWAPPED page        / raw COPY + raw read
 *
 * Spin or block.  On a virtual machine, waking a sleeping handler on another
 * CPU can cost several times the fault itself, so upager's handlers may spin
 * for UPAGER_SPIN_US after their last event before they sleep (by default
 * they sleep at once: spinning has cost more than it saved on the machines
 * measured, see README, Guest idle polling).  The raw handler
 * gets exactly the same treatment (a non-blocking read() loop for spin_us,
 * then poll()), and each upager figure is compared with the raw variant of
 * the same mode: spin when spin_us > 0, block otherwise.  Both raw variants
 * are always reported, so the cost of a wake-up is visible too.
 *
 * Timing.  The faulting thread times its own access with clock_gettime()
 * around a single load or store: that is the latency a program sees,
 * trap to return, including the wake-up.  One access per sample, one
 * sample at a time, so no fault overlaps another.  Every figure is set up
 * first and then sampled in interleaved rounds (a slice of each figure per
 * round): on a shared machine a neighbour's burst of work then slows a
 * floor and the upager figure compared with it alike, where measuring one
 * after the other would turn it into a false ratio.
 *
 * Which faults were what.  upager decides whether a touch is a zero-fill, a
 * soft or a major fault, not the benchmark: a page we expect to be swapped
 * may still be inactive, or already prefetched.  So every timed access is
 * bracketed by two upg_stats_get() calls (outside the timed window) and
 * classified by which fault counter moved; each class gets its own sample.
 * If no counter moved but the access was slow, the handler may have counted
 * the fault after it woke us, so the stats are re-read for a short while
 * before the access is called "unattributed".  The time between two timed
 * accesses (stats, verification) is reported as gap_*: if it exceeded the
 * spin time, upager's handler was asleep when the fault came and the
 * comparison with the spinning floor is unfair to upager.
 *
 * Data.  Every page the soft and major phases read back is compared, word by
 * word, with the pattern written into it; a mismatch aborts the run with the
 * address, the page and the fault class, because a pager that loses data
 * has no latency worth reporting.
 *
 * Build with -DBENCH_RAW_ONLY to measure the floors without libupager.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <liburing.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "bench_util.h"

#ifndef BENCH_RAW_ONLY
#include "upager.h"
#endif

#ifndef USERFAULTFD_IOC_NEW
#define USERFAULTFD_IOC_NEW _IO(0xAA, 0x00)
#endif

#define BENCH "fault"
#define RAW_PAGE 4096UL

/* Exit codes: automake's convention for a skipped test is 77. */
enum {
	EXIT_BADARGS = 2,
	EXIT_SKIP = 77,
};

/* Targets from issue 2, as a ratio of median to the matching floor. */
#define TARGET_ZERO 1.25
#define TARGET_SOFT 1.25
#define TARGET_MAJOR 1.15

/*
 * A resident access costs ~100 ns even with a TLB miss; the fastest uffd
 * round trip is a few microseconds.  An access slower than this that moved
 * no counter is suspected to be a fault the handler has not counted yet.
 */
#define SETTLE_THRESHOLD_NS 1000
/*
 * How long to wait for such a late count, and how often to look: seldom,
 * because upg_stats_get() takes the lock the handler needs to finish the
 * fault and count it; polling it back to back would delay the very count
 * we wait for.
 */
#define SETTLE_WAIT_NS 5000000
#define SETTLE_POLL_NS 50000

enum phase {
	PH_RAW = 1 << 0,   /* raw uffd ZEROPAGE and COPY */
	PH_READ = 1 << 1,  /* raw io_uring read */
	PH_ZERO = 1 << 2,
	PH_SOFT = 1 << 3,
	PH_MAJOR = 1 << 4,
	PH_ALL = (1 << 5) - 1,
	PH_UPAGER = PH_ZERO | PH_SOFT | PH_MAJOR,
};

static const struct {
	const char *name;
	unsigned bit;
} phase_names[] = {
	{ "raw", PH_RAW }, { "read", PH_READ }, { "zero", PH_ZERO },
	{ "soft", PH_SOFT }, { "major", PH_MAJOR }, { "all", PH_ALL },
};

struct bench_opts {
	uint64_t samples;       /* per figure */
	uint64_t warmup;        /* discarded before the samples */
	uint64_t budget;        /* upager budget for the soft and major phases */
	uint64_t spin_us;       /* handler spin, raw and upager alike */
	uint64_t file_size;     /* raw read file */
	uint64_t soft_ws_pct;   /* soft phase working set, % of budget */
	uint64_t max_seconds;   /* per phase, so a stuck phase cannot run forever */
	uint64_t rounds;        /* samples are taken in this many interleaved slices */
	uint64_t seed;
	const char *dir;        /* swap directory: raw file and upager swap */
	unsigned phases;
	bool write_touch;       /* zero/soft/raw touches store instead of load */
	bool require;           /* no userfaultfd is a failure, not a skip */
	bool check;             /* exit 1 when a target is missed */
	bool pin;               /* raw floors: faulter on CPU 0, handler on 1 */
};

/* ------------------------------------------------------------------------ */
/* Figures                                                                   */
/* ------------------------------------------------------------------------ */

enum fig {
	FIG_ZEROPAGE_SPIN, FIG_ZEROPAGE_BLOCK,
	FIG_COPY_SPIN, FIG_COPY_BLOCK,
	FIG_READ_SPIN, FIG_READ_BLOCK,
	FIG_ZERO, FIG_SOFT, FIG_MAJOR,
	FIG_N
};

struct figure {
	const char *name;   /* machine name */
	const char *label;  /* for the table */
	bool done;
	struct bench_summary sum;
	/* upager figures only */
	struct bench_summary gap;
	bool partial;       /* fewer samples than asked (time or access cap) */
	char classes[512];  /* "hit:1,zero:2,..." of the phase, and pager deltas */
};

static struct figure figs[FIG_N] = {
	[FIG_ZEROPAGE_SPIN] = { "raw_zeropage_spin", "raw uffd ZEROPAGE, spin" },
	[FIG_ZEROPAGE_BLOCK] = { "raw_zeropage_block", "raw uffd ZEROPAGE, block" },
	[FIG_COPY_SPIN] = { "raw_copy_spin", "raw uffd COPY 4K, spin" },
	[FIG_COPY_BLOCK] = { "raw_copy_block", "raw uffd COPY 4K, block" },
	[FIG_READ_SPIN] = { "raw_read_spin", "raw io_uring 4K read, spin" },
	[FIG_READ_BLOCK] = { "raw_read_block", "raw io_uring 4K read, block" },
	[FIG_ZERO] = { "zero_fill", "upager zero-fill fault" },
	[FIG_SOFT] = { "soft_fault", "upager soft fault" },
	[FIG_MAJOR] = { "major_fault", "upager major fault" },
};

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
	va_list ap;

	fflush(stdout);
	fputs("fault: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

static void note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void note(const char *fmt, ...)
{
	va_list ap;

	fputs("fault: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static void record(enum fig f, struct bench_samples *s)
{
	bench_summarize(s, &figs[f].sum);
	figs[f].done = true;
}

/*
 * The contents of word @w of page @pg: a per-page key so that a page served
 * at the wrong address is caught, mixed with the word index so that a shift
 * inside a page is caught, never zero in practice so that a page that was
 * zero-filled instead of read back is caught.
 */
static inline uint64_t page_key(uint64_t seed, uint64_t pg)
{
	uint64_t s = seed ^ (pg * 0x9e3779b97f4a7c15ULL);

	return bench_rand(&s);
}

static inline uint64_t pattern_word(uint64_t key, uint64_t w)
{
	return key ^ (w * 0xff51afd7ed558ccdULL);
}

static void fill_page(uint64_t *p, size_t page, uint64_t seed, uint64_t pg)
{
	uint64_t key = page_key(seed, pg);

	for (size_t w = 0; w < page / 8; w++)
		p[w] = pattern_word(key, w);
}

/* ------------------------------------------------------------------------ */
/* Raw floor A: a bare userfaultfd handler                                    */
/* ------------------------------------------------------------------------ */

/*
 * Open a userfaultfd the way a pager must: not UFFD_USER_MODE_ONLY (kernel
 * accesses to managed memory must fault too), through the system call, or
 * through /dev/userfaultfd where the sysctl forbids the call but the device
 * is accessible.  Returns the fd or -errno of the first refusal.
 */
static int uffd_open(void)
{
	struct uffdio_api api = { .api = UFFD_API, .features = 0 };
	int fd, err, dev;

	fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (fd < 0) {
		err = errno;
		dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
		if (dev < 0)
			return -err;
		fd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
		close(dev);
		if (fd < 0)
			return -err;
	}
	if (ioctl(fd, UFFDIO_API, &api) < 0) {
		err = errno;
		close(fd);
		return -err;
	}
	return fd;
}

enum raw_resolve { RAW_ZEROPAGE, RAW_COPY };

struct raw_handler {
	int uffd;
	int stopfd;              /* eventfd that wakes a sleeping handler */
	enum raw_resolve how;
	uint64_t spin_ns;
	const void *src;         /* the 4 KiB UFFDIO_COPY copies */
	atomic_bool stop;
	uint64_t resolved;       /* read after join */
	uint64_t eexist;
	pthread_t thread;
};

static void raw_resolve(struct raw_handler *h, uint64_t addr)
{
	addr &= ~(RAW_PAGE - 1);
	for (;;) {
		int r;

		if (h->how == RAW_ZEROPAGE) {
			struct uffdio_zeropage z = {
				.range = { .start = addr, .len = RAW_PAGE },
			};
			r = ioctl(h->uffd, UFFDIO_ZEROPAGE, &z);
		} else {
			struct uffdio_copy c = {
				.dst = addr, .src = (uintptr_t)h->src,
				.len = RAW_PAGE,
			};
			r = ioctl(h->uffd, UFFDIO_COPY, &c);
		}
		if (r == 0) {
			h->resolved++;
			return;
		}
		if (errno == EAGAIN)  /* the mm changed under us: retry */
			continue;
		if (errno == EEXIST) {
			/* Mapped already; the ioctl did not wake anyone. */
			struct uffdio_range rg = { .start = addr, .len = RAW_PAGE };

			h->eexist++;
			ioctl(h->uffd, UFFDIO_WAKE, &rg);
			return;
		}
		/* The faulting thread would hang forever: stop everything. */
		die("raw handler: resolving %#" PRIx64 ": %s", addr, strerror(errno));
	}
}

static void *raw_handler_main(void *arg)
{
	struct raw_handler *h = arg;
	uint64_t idle_since = bench_now_ns();
	struct uffd_msg msg;

	for (;;) {
		ssize_t n = read(h->uffd, &msg, sizeof(msg));

		if (n == (ssize_t)sizeof(msg)) {
			if (msg.event == UFFD_EVENT_PAGEFAULT)
				raw_resolve(h, msg.arg.pagefault.address);
			idle_since = bench_now_ns();
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno != EAGAIN)
			die("raw handler: read(uffd): %s", strerror(errno));
		if (atomic_load_explicit(&h->stop, memory_order_acquire))
			break;
		/* Spin-before-sleep, exactly as upager's handler does it. */
		if (bench_now_ns() - idle_since < h->spin_ns) {
			bench_cpu_relax();
			continue;
		}
		struct pollfd pfd[2] = {
			{ .fd = h->uffd, .events = POLLIN },
			{ .fd = h->stopfd, .events = POLLIN },
		};
		if (poll(pfd, 2, -1) < 0 && errno != EINTR)
			die("raw handler: poll: %s", strerror(errno));
	}
	return NULL;
}

/*
 * --pin: keep the measuring thread on CPU 0 and raw handlers on CPU 1, so a
 * blocking handler is always woken by an IPI on another CPU (the expensive
 * case on a VM).  Unpinned, the scheduler often wakes it on the faulting
 * thread's own CPU, which is cheap.  upager's threads are never pinned.
 */
static void pin_to(pthread_t t, int cpu)
{
	if (sysconf(_SC_NPROCESSORS_ONLN) >= 2)
		bench_pin_thread(t, cpu);
}

static void pin_handler(pthread_t handler)
{
	pin_to(handler, 1);
}

/*
 * Runners.  Each figure is produced by a runner in slices: start sets it up
 * and warms it, batch adds n more samples, finish records the figure and
 * frees everything.  main() interleaves the batches of all runners in
 * rounds, so that a burst of load from a neighbour on a shared machine
 * slows floors and upager alike instead of skewing one ratio.
 */
struct runner {
	enum fig fig;
	void *ctx;
	void (*batch)(void *ctx, const struct bench_opts *o, uint64_t n);
	void (*finish)(void *ctx, const struct bench_opts *o);
};

/*
 * The first accesses of each batch are not kept: the handler has been idle
 * while other runners ran, so it is asleep, and the first fault would
 * measure its wake-up instead of the mode under test.
 */
#define REWARM 2

struct raw_uffd {
	struct raw_handler h;
	enum fig fig;
	uint64_t spin_us;
	char *region;
	size_t len;
	uint64_t next;       /* next untouched page; invariant: next <= pages */
	uint64_t pages;
	uint8_t expect;      /* what a resolved page reads */
	void *src;
	struct bench_samples s;
};

/* Touch the next new page; its latency in ns. */
static uint64_t raw_uffd_touch(struct raw_uffd *r, const struct bench_opts *o)
{
	volatile uint8_t *p;
	uint64_t t0, t1;
	uint8_t v = 0;

	if (r->next == r->pages)
		die("%s: ran out of pages (a bug in the sample count)",
		    figs[r->fig].name);
	p = (volatile uint8_t *)(r->region + r->next++ * RAW_PAGE);
	t0 = bench_now_ns();
	if (o->write_touch)
		*p = r->expect;
	else
		v = *p;
	t1 = bench_now_ns();
	if (!o->write_touch && v != r->expect)
		die("%s: a resolved page reads %#x, expected %#x",
		    figs[r->fig].name, v, r->expect);
	return t1 - t0;
}

static void raw_uffd_batch(void *ctx, const struct bench_opts *o, uint64_t n)
{
	struct raw_uffd *r = ctx;

	for (int i = 0; i < REWARM; i++)
		raw_uffd_touch(r, o);
	for (uint64_t i = 0; i < n; i++)
		bench_samples_add(&r->s, raw_uffd_touch(r, o));
}

static void raw_uffd_finish(void *ctx, const struct bench_opts *o)
{
	struct raw_uffd *r = ctx;
	struct raw_handler *h = &r->h;

	atomic_store_explicit(&h->stop, true, memory_order_release);
	if (eventfd_write(h->stopfd, 1) < 0)
		die("eventfd_write: %s", strerror(errno));
	pthread_join(h->thread, NULL);
	if (h->resolved != r->next)
		die("%s: handler resolved %" PRIu64 " faults of %" PRIu64
		    " (%" PRIu64 " already mapped)", figs[r->fig].name,
		    h->resolved, r->next, h->eexist);
	close(h->stopfd);
	close(h->uffd);
	munmap(r->region, r->len);
	free(r->src);

	record(r->fig, &r->s);
	bench_result(BENCH, figs[r->fig].name, &figs[r->fig].sum,
		     " spin_us=%" PRIu64 " touch=%s pinned=%d", r->spin_us,
		     o->write_touch ? "write" : "read", o->pin);
	bench_samples_free(&r->s);
	free(r);
}

/*
 * A region registered for missing faults, one new page per sample, served by
 * a bare handler thread resolving with @how.
 */
static struct runner raw_uffd_start(const struct bench_opts *o,
				    enum raw_resolve how, uint64_t spin_us,
				    enum fig fig)
{
	struct raw_uffd *r = calloc(1, sizeof(*r));
	struct raw_handler *h;
	int err;

	if (!r)
		die("out of memory");
	h = &r->h;
	r->fig = fig;
	r->spin_us = spin_us;
	r->pages = o->warmup + o->samples + o->rounds * REWARM;
	r->len = r->pages * RAW_PAGE;
	r->expect = how == RAW_COPY ? 0xa5 : 0;
	r->region = mmap(NULL, r->len, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (r->region == MAP_FAILED)
		die("mmap %zu bytes: %s", r->len, strerror(errno));
	/* A pager fault maps one page; a huge page would be another test. */
	madvise(r->region, r->len, MADV_NOHUGEPAGE);
	r->src = aligned_alloc(RAW_PAGE, RAW_PAGE);
	if (!r->src || bench_samples_init(&r->s, o->samples))
		die("out of memory");
	memset(r->src, r->expect, RAW_PAGE);

	h->how = how;
	h->spin_ns = spin_us * 1000;
	h->src = r->src;
	h->uffd = uffd_open();
	if (h->uffd < 0)
		die("userfaultfd: %s", strerror(-h->uffd));
	struct uffdio_register reg = {
		.range = { .start = (uintptr_t)r->region, .len = r->len },
		.mode = UFFDIO_REGISTER_MODE_MISSING,
	};
	if (ioctl(h->uffd, UFFDIO_REGISTER, &reg) < 0)
		die("UFFDIO_REGISTER: %s", strerror(errno));
	h->stopfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (h->stopfd < 0)
		die("eventfd: %s", strerror(errno));
	err = pthread_create(&h->thread, NULL, raw_handler_main, h);
	if (err)
		die("pthread_create: %s", strerror(err));
	if (o->pin)
		pin_handler(h->thread);

	for (uint64_t i = 0; i < o->warmup; i++)
		raw_uffd_touch(r, o);
	return (struct runner){ fig, r, raw_uffd_batch, raw_uffd_finish };
}

/* ------------------------------------------------------------------------ */
/* Raw floor B: io_uring 4 KiB O_DIRECT reads                                 */
/* ------------------------------------------------------------------------ */

/*
 * An unnamed file in @dir: O_TMPFILE, so that nothing is left behind even if
 * we are killed; a named file unlinked at once where the filesystem lacks
 * O_TMPFILE.  *@direct tells whether O_DIRECT was accepted.
 */
static int tmpfile_open(const char *dir, bool *direct)
{
	int fd;

	*direct = true;
	fd = open(dir, O_TMPFILE | O_RDWR | O_DIRECT | O_CLOEXEC, 0600);
	if (fd < 0 && errno == EINVAL) {
		/* O_DIRECT refused (tmpfs) or O_TMPFILE unknown: find out. */
		fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
		if (fd >= 0)
			*direct = false;
	}
	if (fd < 0 && (errno == EOPNOTSUPP || errno == EISDIR ||
		       errno == EINVAL)) {
		char path[4096];

		snprintf(path, sizeof(path), "%s/upager-bench-XXXXXX", dir);
		fd = mkostemp(path, O_CLOEXEC);
		if (fd < 0)
			return -errno;
		unlink(path);
		*direct = fcntl(fd, F_SETFL, O_DIRECT) == 0;
	}
	return fd < 0 ? -errno : fd;
}

/*
 * Write the whole file for real: reading a hole or an unwritten extent
 * returns zeros without touching the device, which would be no floor at all.
 */
static void raw_file_fill(int fd, uint64_t size, uint64_t seed)
{
	const size_t chunk = 1 << 20;
	uint64_t *buf = aligned_alloc(RAW_PAGE, chunk);

	if (!buf)
		die("out of memory");
	for (uint64_t off = 0; off < size; off += chunk) {
		size_t n = size - off < chunk ? (size_t)(size - off) : chunk;

		for (size_t b = 0; b < n / RAW_PAGE; b++)
			fill_page(buf + b * (RAW_PAGE / 8), RAW_PAGE, seed,
				  off / RAW_PAGE + b);
		for (size_t done = 0; done < n;) {
			ssize_t w = pwrite(fd, (char *)buf + done, n - done,
					   (off_t)(off + done));

			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0)
				die("writing the read-floor file: %s",
				    w < 0 ? strerror(errno) : "short write");
			done += (size_t)w;
		}
	}
	if (fdatasync(fd) < 0)
		die("fdatasync: %s", strerror(errno));
	free(buf);
}

/* The file both read runners share; written once. */
static int raw_file_fd = -1;
static bool raw_file_direct;

static void raw_file_open(const struct bench_opts *o)
{
	note("writing %" PRIu64 " MiB to an unnamed file in %s...",
	     o->file_size >> 20, o->dir);
	raw_file_fd = tmpfile_open(o->dir, &raw_file_direct);
	if (raw_file_fd < 0)
		die("cannot create a file in %s: %s (choose another with --swap-dir)",
		    o->dir, strerror(-raw_file_fd));
	if (!raw_file_direct)
		note("warning: %s refuses O_DIRECT; reads may come from the page "
		     "cache, so raw_read is not a device floor", o->dir);
	raw_file_fill(raw_file_fd, o->file_size, o->seed);
	if (!raw_file_direct)
		posix_fadvise(raw_file_fd, 0, 0, POSIX_FADV_DONTNEED);
}

struct raw_read {
	enum fig fig;
	uint64_t spin_us;
	struct io_uring ring;
	void *buf;
	uint64_t rng;
	struct bench_samples s;
};

/* One read of a random block, submitted alone and waited for; ns. */
static uint64_t raw_read_one(struct raw_read *r, const struct bench_opts *o)
{
	uint64_t blk = bench_rand_below(&r->rng, o->file_size / RAW_PAGE);
	struct io_uring_sqe *sqe = io_uring_get_sqe(&r->ring);
	struct io_uring_cqe *cqe;
	uint64_t t0, t1;
	int ret;

	io_uring_prep_read_fixed(sqe, 0, r->buf, RAW_PAGE, blk * RAW_PAGE, 0);
	io_uring_sqe_set_flags(sqe, IOSQE_FIXED_FILE);
	t0 = bench_now_ns();
	if (r->spin_us) {
		/* Poll the completion ring, then sleep, as a handler would. */
		uint64_t end;

		ret = io_uring_submit(&r->ring);
		end = bench_now_ns() + r->spin_us * 1000;
		while (ret >= 0) {  /* ret < 0 here only if submit failed */
			ret = io_uring_peek_cqe(&r->ring, &cqe);
			if (ret != -EAGAIN)
				break;
			if (bench_now_ns() >= end) {
				ret = io_uring_wait_cqe(&r->ring, &cqe);
				break;
			}
			bench_cpu_relax();
			ret = 0;
		}
	} else {
		ret = io_uring_submit_and_wait(&r->ring, 1);
		if (ret >= 0)
			ret = io_uring_peek_cqe(&r->ring, &cqe);
	}
	t1 = bench_now_ns();
	if (ret < 0)
		die("%s: io_uring: %s", figs[r->fig].name, strerror(-ret));
	if (cqe->res != (int)RAW_PAGE)
		die("%s: read of block %" PRIu64 ": %s", figs[r->fig].name,
		    blk, cqe->res < 0 ? strerror(-cqe->res) : "short read");
	io_uring_cqe_seen(&r->ring, cqe);
	if (*(uint64_t *)r->buf != pattern_word(page_key(o->seed, blk), 0))
		die("%s: block %" PRIu64 " does not hold what was written",
		    figs[r->fig].name, blk);
	return t1 - t0;
}

static void raw_read_batch(void *ctx, const struct bench_opts *o, uint64_t n)
{
	struct raw_read *r = ctx;

	for (int i = 0; i < REWARM; i++)
		raw_read_one(r, o);
	for (uint64_t i = 0; i < n; i++)
		bench_samples_add(&r->s, raw_read_one(r, o));
}

static void raw_read_finish(void *ctx, const struct bench_opts *o)
{
	struct raw_read *r = ctx;

	io_uring_queue_exit(&r->ring);
	free(r->buf);
	record(r->fig, &r->s);
	bench_result(BENCH, figs[r->fig].name, &figs[r->fig].sum,
		     " spin_us=%" PRIu64 " direct=%d file_bytes=%" PRIu64,
		     r->spin_us, raw_file_direct, o->file_size);
	bench_samples_free(&r->s);
	free(r);
}

static struct runner raw_read_start(const struct bench_opts *o,
				    uint64_t spin_us, enum fig fig)
{
	struct raw_read *r = calloc(1, sizeof(*r));
	struct iovec iov;
	int ret;

	if (!r)
		die("out of memory");
	r->fig = fig;
	r->spin_us = spin_us;
	r->rng = o->seed ^ (0x5eedULL + fig);
	r->buf = aligned_alloc(RAW_PAGE, RAW_PAGE);
	if (!r->buf || bench_samples_init(&r->s, o->samples))
		die("out of memory");
	ret = io_uring_queue_init(8, &r->ring, 0);
	if (ret < 0)
		die("io_uring_queue_init: %s", strerror(-ret));
	/* upager reads into registered buffers; so does its floor. */
	iov.iov_base = r->buf;
	iov.iov_len = RAW_PAGE;
	ret = io_uring_register_buffers(&r->ring, &iov, 1);
	if (ret < 0)
		die("io_uring_register_buffers: %s", strerror(-ret));
	ret = io_uring_register_files(&r->ring, &raw_file_fd, 1);
	if (ret < 0)
		die("io_uring_register_files: %s", strerror(-ret));
	for (uint64_t i = 0; i < o->warmup; i++)
		raw_read_one(r, o);
	return (struct runner){ fig, r, raw_read_batch, raw_read_finish };
}

/* ------------------------------------------------------------------------ */
/* upager                                                                    */
/* ------------------------------------------------------------------------ */

#ifndef BENCH_RAW_ONLY

enum cls {
	CLS_HIT,           /* no fault: the page was resident and mapped */
	CLS_ZERO,
	CLS_SOFT,
	CLS_MAJOR,
	CLS_WP,
	CLS_MIXED,         /* more than one counter moved */
	CLS_UNATTRIBUTED,  /* slow, but no counter moved */
	CLS_N
};

static const char *const cls_names[CLS_N] = {
	"hit", "zero", "soft", "major", "wp", "mixed", "unattributed",
};

static enum cls classify(const struct upg_stats *a, const struct upg_stats *b)
{
	static const enum cls of_kind[UPG_FAULT_KINDS] = {
		[UPG_FAULT_ZERO] = CLS_ZERO, [UPG_FAULT_SOFT] = CLS_SOFT,
		[UPG_FAULT_MAJOR] = CLS_MAJOR, [UPG_FAULT_WP] = CLS_WP,
	};
	uint64_t total = 0;
	enum cls c = CLS_HIT;

	for (int k = 0; k < UPG_FAULT_KINDS; k++) {
		uint64_t d = b->faults[k] - a->faults[k];

		total += d;
		if (d)
			c = of_kind[k];
	}
	return total <= 1 ? c : CLS_MIXED;
}

/* What a runner saw, per class, plus the time between timed accesses. */
struct tally {
	struct bench_samples s[CLS_N];
	struct bench_samples gap;
	uint64_t count[CLS_N];   /* kept accesses by class */
	uint64_t accesses;       /* all accesses, kept or not */
	uint64_t last_end;       /* end of the previous timed access, or 0 */
};

static void tally_init(struct tally *t, uint64_t cap)
{
	memset(t, 0, sizeof(*t));
	for (int c = 0; c < CLS_N; c++)
		if (bench_samples_init(&t->s[c], c == CLS_HIT ? 16 : cap))
			die("out of memory");
	if (bench_samples_init(&t->gap, cap))
		die("out of memory");
}

static void tally_free(struct tally *t)
{
	for (int c = 0; c < CLS_N; c++)
		bench_samples_free(&t->s[c]);
	bench_samples_free(&t->gap);
}

static void tally_classes(const struct tally *t, char *buf, size_t len)
{
	size_t n = 0;

	buf[0] = '\0';
	for (int c = 0; c < CLS_N && n < len; c++)
		n += (size_t)snprintf(buf + n, len - n, "%s%s:%" PRIu64,
				      c ? "," : "", cls_names[c], t->count[c]);
}

/*
 * Time one access to @p and classify it: by construction when @known is not
 * CLS_N, else by the stats delta from *@prev, which is then updated.  The
 * snapshot after one access serves as the one before the next, because
 * upg_stats_get() is not free and the time between two faults must stay
 * well inside the handler's spin.  Stats are read only outside the timed
 * window.  When @keep, the access goes into the tally.
 */
static enum cls upg_timed_touch(struct upg_runtime *rt, struct upg_stats *prev,
				enum cls known, volatile uint64_t *p,
				bool write, uint64_t wval, uint64_t *rval,
				struct tally *t, bool keep)
{
	struct upg_stats after;
	uint64_t t0, t1, ns;
	enum cls c = known;

	t0 = bench_now_ns();
	if (write)
		*p = wval;
	else
		*rval = *p;
	t1 = bench_now_ns();
	ns = t1 - t0;
	if (known == CLS_N) {
		upg_stats_get(rt, &after);
		c = classify(prev, &after);
		if (c == CLS_HIT && ns > SETTLE_THRESHOLD_NS) {
			/* The handler counts after it wakes us: give it time. */
			uint64_t end = bench_now_ns() + SETTLE_WAIT_NS;

			c = CLS_UNATTRIBUTED;
			while (bench_now_ns() < end) {
				uint64_t next = bench_now_ns() + SETTLE_POLL_NS;

				while (bench_now_ns() < next)
					bench_cpu_relax();
				upg_stats_get(rt, &after);
				if (classify(prev, &after) != CLS_HIT) {
					c = classify(prev, &after);
					break;
				}
			}
		} else if (c != CLS_HIT && ns < SETTLE_THRESHOLD_NS) {
			/* A count that arrived too late for the access before. */
			c = CLS_UNATTRIBUTED;
		}
		*prev = after;
	}
	t->accesses++;
	if (keep) {
		t->count[c]++;
		if (c != CLS_HIT) {
			bench_samples_add(&t->s[c], ns);
			if (t->last_end)
				bench_samples_add(&t->gap, t0 - t->last_end);
		}
	}
	/* From here on the handler idles: stats and checks count as gap. */
	t->last_end = t1;
	return c;
}

static void corrupt(const uint64_t *p, size_t page, uint64_t pg,
		    const char *phase, enum cls c, size_t bad, size_t first,
		    uint64_t want)
{
	fflush(stdout);
	fprintf(stderr,
		"fault: DATA CORRUPTION in the %s phase: page %" PRIu64
		" at %p (after a '%s' access): %zu of %zu words wrong; word %zu "
		"holds %#" PRIx64 ", expected %#" PRIx64 "\n",
		phase, pg, (const void *)p, cls_names[c], bad, page / 8, first,
		p[first], want);
	abort();
}

/* Every word of page @pg must hold its pattern. */
static void verify_page(const uint64_t *p, size_t page, uint64_t seed,
			uint64_t pg, const char *phase, enum cls c)
{
	uint64_t key = page_key(seed, pg);
	size_t bad = 0, first = 0;

	for (size_t w = 0; w < page / 8; w++)
		if (p[w] != pattern_word(key, w) && !bad++)
			first = w;
	if (bad)
		corrupt(p, page, pg, phase, c, bad, first, pattern_word(key, first));
}

/* A zero-filled page reads zero, except the word the touch wrote (@w0). */
static void verify_zero(const uint64_t *p, size_t page, uint64_t pg,
			uint64_t w0, enum cls c)
{
	size_t bad = 0, first = 0;

	for (size_t w = 0; w < page / 8; w++)
		if (p[w] != (w ? 0 : w0) && !bad++)
			first = w;
	if (bad)
		corrupt(p, page, pg, "zero", c, bad, first, first ? 0 : w0);
}

/* Options of every upager runtime: library defaults, UPAGER_*, then ours. */
static struct upg_options base_upg_opts;

static struct upg_runtime *runtime_start(const struct bench_opts *o,
					 uint64_t budget, const char *phase)
{
	struct upg_options uo = base_upg_opts;
	struct upg_runtime *rt;
	char err[256] = "";
	int r;

	uo.budget = budget;
	uo.spin_us = (unsigned)o->spin_us;
	if (!uo.swap_path)
		uo.swap_dir = o->dir;
	r = upg_options_validate(&uo, err, sizeof(err));
	if (r) {
		fprintf(stderr, "fault: %s\n", err[0] ? err : strerror(-r));
		exit(EXIT_BADARGS);
	}
	r = upg_runtime_create(&uo, &rt);
	if (r)
		die("%s phase: upg_runtime_create: %s", phase, strerror(-r));
	if (!upg_runtime_is_paged(rt))
		die("%s phase: upager runs unpaged (%s) although a bare "
		    "userfaultfd works", phase, upg_runtime_unpaged_reason(rt));
	return rt;
}

/* PFN of the page mapped at @addr, or 0 when not mapped or hidden (not root). */
static uint64_t pagemap_pfn(const void *addr)
{
	long ps = sysconf(_SC_PAGESIZE);
	uint64_t e = 0;
	int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return 0;
	if (pread(fd, &e, sizeof(e),
		  (off_t)((uintptr_t)addr / (uintptr_t)ps * 8)) != sizeof(e))
		e = 0;
	close(fd);
	if (!(e >> 63))
		return 0;
	return e & ((1ULL << 55) - 1);
}

/* PFN of the kernel's shared zero page, or 0 if it cannot be seen. */
static uint64_t zero_page_pfn(void)
{
	long ps = sysconf(_SC_PAGESIZE);
	volatile char *p = mmap(NULL, (size_t)ps, PROT_READ,
				MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uint64_t pfn;

	if (p == MAP_FAILED)
		return 0;
	(void)*p;  /* a read fault of untouched anonymous memory maps it */
	pfn = pagemap_pfn((const void *)p);
	munmap((void *)p, (size_t)ps);
	return pfn;
}

/* How upager resolved zero-fill faults: "zeropage", "copy" or "unknown". */
static const char *zero_resolved_by = "unknown";

enum upg_kind { UK_ZERO, UK_SOFT, UK_MAJOR };

struct upg_run {
	enum upg_kind kind;
	enum fig fig;
	enum cls want;          /* the class this runner measures */
	struct upg_runtime *rt;
	char *region;
	size_t page;
	uint64_t pages;
	uint64_t pos;           /* zero: next page, in order */
	uint64_t *perm;         /* soft, major: this pass's order */
	uint64_t k;             /* soft, major: next index into perm */
	uint64_t rng;
	uint64_t limit;         /* give up after this many accesses */
	uint64_t busy_ns;       /* time in batches, against --max-seconds */
	bool gave_up;
	struct upg_stats st0;   /* after setup, for the deltas reported */
	struct upg_stats prev;  /* the latest snapshot, for classification */
	uint64_t stats_ns;      /* median cost of one upg_stats_get() */
	struct tally t;
};

/* zero phase: pages between two first touches (a 256 KiB step) */
#define ZERO_STRIDE 64

/*
 * soft phase: pages are unmapped by one round of DEACTIVATE advice before
 * they are touched in turn, so that the time between two timed faults
 * stays that of the other phases (0.7 us, against 21 us with the advice,
 * a move and its TLB flush before every touch): past spin_us the handler
 * sleeps, and the fault would be timed against the wrong floor.
 */
#define SOFT_BATCH 64

static void deactivate_next(struct upg_run *u)
{
	for (uint64_t i = u->k; i < u->k + SOFT_BATCH && i < u->pages; i++)
		if (upg_advise(u->rt, u->region + u->perm[i] * u->page, u->page,
			       UPG_ADV_DEACTIVATE))
			die("soft: DEACTIVATE advice failed");
}

static uint64_t upg_next_page(struct upg_run *u)
{
	switch (u->kind) {
	case UK_ZERO:
		return u->pos++ * ZERO_STRIDE;
	case UK_SOFT:
	case UK_MAJOR:
		if (u->k == u->pages) {
			bench_permutation(u->perm, u->pages, &u->rng);
			u->k = 0;
		}
		if (u->kind == UK_SOFT && u->k % SOFT_BATCH == 0)
			deactivate_next(u);
		return u->perm[u->k++];
	}
	return 0;
}

/*
 * Access pages until @n accesses of the wanted class were kept, or, when
 * !@keep (warming up), until @n faults of any class were taken.  The first
 * REWARM faults of a kept batch are not kept (see REWARM).
 */
static void upg_steps(struct upg_run *u, const struct bench_opts *o,
		      uint64_t n, bool keep)
{
	uint64_t got = 0, faults = 0, start = bench_now_ns();
	uint64_t max_ns = o->max_seconds * 1000000000ULL;

	u->t.last_end = 0;
	while (got < n) {
		bool k = keep && faults >= REWARM;
		uint64_t pg, v = 0, key;
		uint64_t *p;
		enum cls c;

		if (u->t.accesses >= u->limit || (u->kind == UK_ZERO && u->pos == u->pages) ||
		    u->busy_ns + (bench_now_ns() - start) > max_ns) {
			u->gave_up = true;
			break;
		}
		pg = upg_next_page(u);
		p = (uint64_t *)(u->region + pg * u->page);
		key = page_key(o->seed, pg);
		if (u->kind == UK_ZERO) {
			/*
			 * A first touch is a zero-fill fault by construction;
			 * upg_finish() checks the count as a whole.
			 */
			c = upg_timed_touch(u->rt, &u->prev, CLS_ZERO, p,
					    o->write_touch, 1, &v, &u->t, k);
			verify_zero(p, u->page, pg, o->write_touch ? 1 : 0, c);
		} else {
			/* A store writes back what is there: data stays checkable. */
			c = upg_timed_touch(u->rt, &u->prev, CLS_N, p,
					    o->write_touch && u->kind == UK_SOFT,
					    pattern_word(key, 0), &v, &u->t, k);
			verify_page(p, u->page, o->seed, pg,
				    u->kind == UK_SOFT ? "soft" : "major", c);
		}
		if (c != CLS_HIT)
			faults++;
		if (keep ? (k && c == u->want) : c != CLS_HIT)
			got++;
	}
	u->busy_ns += bench_now_ns() - start;
}

static void upg_batch(void *ctx, const struct bench_opts *o, uint64_t n)
{
	struct upg_run *u = ctx;

	if (!u->gave_up)
		upg_steps(u, o, n, true);
}

/* Median cost of upg_stats_get(), which falls between two timed faults. */
static uint64_t stats_get_cost(struct upg_runtime *rt)
{
	uint64_t v[21];
	struct bench_samples s = { .v = v, .n = 0, .cap = 21 };
	struct bench_summary sum;
	struct upg_stats st;

	for (int i = 0; i < 21; i++) {
		uint64_t t0 = bench_now_ns();

		upg_stats_get(rt, &st);
		v[s.n++] = bench_now_ns() - t0;
	}
	bench_summarize(&s, &sum);
	return sum.median;
}

/* Wait (a bounded time) for write-back started by a setup pass to drain. */
static void settle(struct upg_runtime *rt)
{
	uint64_t end = bench_now_ns() + 5000000000ULL;
	struct upg_stats st;

	while (bench_now_ns() < end) {
		if (upg_stats_get(rt, &st) ||
		    (!st.writeback_pages && !st.reading_pages))
			return;
		usleep(1000);
	}
}

static void upg_finish(void *ctx, const struct bench_opts *o)
{
	struct upg_run *u = ctx;
	struct figure *f = &figs[u->fig];
	struct upg_stats st;
	size_t n;

	upg_stats_get(u->rt, &st);
	/* The zero runner's classes are by construction: check them here. */
	if (u->kind == UK_ZERO &&
	    st.faults[UPG_FAULT_ZERO] - u->st0.faults[UPG_FAULT_ZERO] != u->t.accesses)
		note("warning: zero_fill: upager counted %" PRIu64 " zero-fill "
		     "faults for %" PRIu64 " first touches",
		     st.faults[UPG_FAULT_ZERO] - u->st0.faults[UPG_FAULT_ZERO],
		     u->t.accesses);
	if (u->kind == UK_ZERO) {
		if (!o->write_touch) {
			uint64_t zpfn = zero_page_pfn(), pfn = pagemap_pfn(u->region);

			if (zpfn && pfn)
				zero_resolved_by = pfn == zpfn ? "zeropage" : "copy";
		} else {
			/* A store needs a private page, however it got there. */
			zero_resolved_by = "copy";
		}
	}
	record(u->fig, &u->t.s[u->want]);
	bench_summarize(&u->t.gap, &f->gap);
	f->partial = f->sum.n < o->samples;
	tally_classes(&u->t, f->classes, sizeof(f->classes));
	n = strlen(f->classes);
	/* What the pager did meanwhile: shows why a class is missing. */
	snprintf(f->classes + n, sizeof(f->classes) - n,
		 " pages=%" PRIu64 " accesses=%" PRIu64 " deactivations=%" PRIu64
		 " pages_written=%" PRIu64 " pages_read=%" PRIu64
		 " stats_get_ns=%" PRIu64,
		 u->pages, u->t.accesses, st.deactivations - u->st0.deactivations,
		 st.pages_written - u->st0.pages_written,
		 st.pages_read - u->st0.pages_read, u->stats_ns);
	if (u->gave_up)
		note("%s: gave up after %" PRIu64 " accesses with %zu samples",
		     f->name, u->t.accesses, f->sum.n);

	tally_free(&u->t);
	free(u->perm);
	upg_region_release(u->rt, u->region);
	upg_runtime_destroy(u->rt);
	free(u);
}

/*
 * 3. Zero-fill: first touches of a region whose budget holds every page
 *    touched, with room to spare so that reclaim never starts.  One page
 *    in every ZERO_STRIDE: upager maps the zero page over the rest of a
 *    touched page's 64 KiB block (fault-around), so touching every page
 *    in turn would time mostly no fault at all, and a stride of one
 *    would be taken for a sequential writer and filled ahead.
 * 4. Soft: random order over a working set of half the budget, each page
 *    unmapped just before its touch by the DEACTIVATE advice (outside the
 *    timed window): the touch finds it INACTIVE, still in RAM, and nothing
 *    else happens meanwhile -- reclaim never runs, since the working set
 *    fits.  (Waiting for reclaim to deactivate pages instead takes a
 *    working set so close to the budget that reclaim also evicts: the
 *    figure then times faults that queue behind its swap writes, and a
 *    quarter of the touches are major faults.)
 * 5. Major: write a region four times the budget, so that three quarters of
 *    it must be in swap, then read pages in random order (a permutation, so
 *    no page is read twice in a pass), checking each.
 */
static struct runner upg_start(const struct bench_opts *o, enum upg_kind kind)
{
	static const enum fig fig_of[] = { FIG_ZERO, FIG_SOFT, FIG_MAJOR };
	static const enum cls cls_of[] = { CLS_ZERO, CLS_SOFT, CLS_MAJOR };
	static const char *const name_of[] = { "zero", "soft", "major" };
	struct upg_run *u = calloc(1, sizeof(*u));
	uint64_t total = o->warmup + o->samples + o->rounds * REWARM;
	uint64_t budget = o->budget;
	int r;

	if (!u)
		die("out of memory");
	u->kind = kind;
	u->fig = fig_of[kind];
	u->want = cls_of[kind];
	u->rng = o->seed ^ 0x3a0f;
	if (kind == UK_ZERO) {
		/* Twice what is touched and mapped around it, plus slack:
		 * reclaim must not start. */
		budget = 2 * total * 4096 * 16 + (16 << 20);
	}
	u->rt = runtime_start(o, budget, name_of[kind]);
	u->page = upg_runtime_page_size(u->rt);
	if (kind == UK_ZERO && u->page > 4096) {
		upg_runtime_destroy(u->rt);
		budget = 2 * total * u->page * 16 + (16 << 20);
		u->rt = runtime_start(o, budget, name_of[kind]);
	}
	switch (kind) {
	case UK_ZERO:
		/* Slack for accesses that turn out to be something else. */
		u->pages = total + total / 8 + 64;
		u->limit = u->pages;
		break;
	case UK_SOFT:
		u->pages = budget / u->page * o->soft_ws_pct / 100;
		if (u->pages < 16)
			u->pages = 16;
		u->limit = 50 * total + 4 * u->pages;
		break;
	case UK_MAJOR:
		u->pages = 4 * (budget / u->page);
		u->limit = 20 * total + 4 * u->pages;
		break;
	}
	if (kind != UK_ZERO) {
		u->perm = malloc(u->pages * sizeof(*u->perm));
		if (!u->perm)
			die("out of memory");
		bench_permutation(u->perm, u->pages, &u->rng);
	}
	r = upg_region_reserve(u->rt, u->pages * u->page *
				       (kind == UK_ZERO ? ZERO_STRIDE : 1),
			       (void **)&u->region);
	if (r)
		die("upg_region_reserve %" PRIu64 " bytes: %s",
		    u->pages * u->page, strerror(-r));
	if (kind != UK_ZERO) {
		note("%s: writing %" PRIu64 " pages (%" PRIu64 "%% of the budget)...",
		     figs[u->fig].name, u->pages,
		     u->pages * u->page * 100 / budget);
		for (uint64_t i = 0; i < u->pages; i++)
			fill_page((uint64_t *)(u->region + i * u->page),
				  u->page, o->seed, i);
		settle(u->rt);
	}
	u->stats_ns = stats_get_cost(u->rt);
	upg_stats_get(u->rt, &u->st0);
	u->prev = u->st0;
	tally_init(&u->t, o->samples);
	note("%s: warming up...", figs[u->fig].name);
	upg_steps(u, o, o->warmup, false);
	return (struct runner){ u->fig, u, upg_batch, upg_finish };
}

#endif /* !BENCH_RAW_ONLY */


/* ------------------------------------------------------------------------ */
/* Report                                                                    */
/* ------------------------------------------------------------------------ */

static double ratio(uint64_t num, uint64_t den)
{
	return den ? (double)num / (double)den : 0;
}

/* Ratios of an upager figure to its floor; false when a figure is missing. */
struct verdict {
	bool have;
	double ratio;       /* median / floor median */
	double ratio_p99;   /* p99 / floor p99 */
	double target;
	uint64_t floor_median;
	char floor[64];     /* which floor */
};

static struct verdict verdicts[FIG_N];

static void judge(enum fig f, enum fig floor_a, int floor_b, double target)
{
	struct verdict *v = &verdicts[f];
	uint64_t med, p99;

	if (!figs[f].done || !figs[floor_a].done || figs[f].sum.n == 0 ||
	    (floor_b >= 0 && !figs[floor_b].done))
		return;
	med = figs[floor_a].sum.median;
	p99 = figs[floor_a].sum.p99;
	snprintf(v->floor, sizeof(v->floor), "%s", figs[floor_a].name);
	if (floor_b >= 0) {
		med += figs[floor_b].sum.median;
		p99 += figs[floor_b].sum.p99;
		snprintf(v->floor, sizeof(v->floor), "%s+%s",
			 figs[floor_a].name, figs[floor_b].name);
	}
	v->have = true;
	v->floor_median = med;
	v->ratio = ratio(figs[f].sum.median, med);
	v->ratio_p99 = ratio(figs[f].sum.p99, p99);
	v->target = target;
}

/* The machine lines of the upager figures, once the floors are known. */
static void report_upager(const struct bench_opts *o, bool spin)
{
	enum fig zp = spin ? FIG_ZEROPAGE_SPIN : FIG_ZEROPAGE_BLOCK;
	enum fig cp = spin ? FIG_COPY_SPIN : FIG_COPY_BLOCK;
	enum fig rd = spin ? FIG_READ_SPIN : FIG_READ_BLOCK;
	bool zp_floor = false;

#ifndef BENCH_RAW_ONLY
	zp_floor = !strcmp(zero_resolved_by, "zeropage");
#endif
	judge(FIG_ZERO, zp_floor ? zp : cp, -1, TARGET_ZERO);
	judge(FIG_SOFT, cp, -1, TARGET_SOFT);
	judge(FIG_MAJOR, cp, (int)rd, TARGET_MAJOR);

	for (enum fig f = FIG_ZERO; f <= FIG_MAJOR; f++) {
		struct verdict *v = &verdicts[f];
		char extra[512];
		size_t n = 0;

		if (!figs[f].done)
			continue;
		extra[0] = '\0';
		if (v->have)
			n += (size_t)snprintf(extra + n, sizeof(extra) - n,
				" ratio=%.3f ratio_p99=%.3f target=%.2f ok=%d floor=%s floor_median_ns=%" PRIu64,
				v->ratio, v->ratio_p99, v->target,
				v->ratio <= v->target, v->floor, v->floor_median);
		if (f == FIG_ZERO) {
#ifndef BENCH_RAW_ONLY
			n += (size_t)snprintf(extra + n, sizeof(extra) - n,
					      " resolved_by=%s", zero_resolved_by);
#endif
			if (figs[zp].done && figs[zp].sum.median)
				n += (size_t)snprintf(extra + n, sizeof(extra) - n,
					" ratio_zeropage=%.3f",
					ratio(figs[f].sum.median, figs[zp].sum.median));
			if (figs[cp].done && figs[cp].sum.median)
				n += (size_t)snprintf(extra + n, sizeof(extra) - n,
					" ratio_copy=%.3f",
					ratio(figs[f].sum.median, figs[cp].sum.median));
		}
		n += (size_t)snprintf(extra + n, sizeof(extra) - n,
				      " partial=%d gap_median_ns=%" PRIu64
				      " gap_p99_ns=%" PRIu64 " classes=%s",
				      figs[f].partial, figs[f].gap.median,
				      figs[f].gap.p99, figs[f].classes);
		bench_result(BENCH, figs[f].name, &figs[f].sum, "%s", extra);
		if (figs[f].gap.n && figs[f].gap.p99 > o->spin_us * 1000 && spin)
			note("warning: %s: p99 of the time between faults (%" PRIu64
			     " ns) exceeds the spin time; upager's handler may "
			     "have been asleep where the raw one was not",
			     figs[f].name, figs[f].gap.p99);
	}
}

static void print_table(const struct bench_opts *o, bool spin)
{
	char a[32], b[32];

	printf("\n%-30s %10s %10s %8s %8s  %s\n", "figure", "median", "p99",
	       "ratio", "target", "floor");
	for (enum fig f = 0; f < FIG_N; f++) {
		struct verdict *v = &verdicts[f];

		if (!figs[f].done)
			continue;
		printf("%-30s %10s %10s", figs[f].label,
		       bench_fmt_ns(a, sizeof(a), (double)figs[f].sum.median),
		       bench_fmt_ns(b, sizeof(b), (double)figs[f].sum.p99));
		if (v->have)
			printf(" %7.2fx %7.2fx  %s%s", v->ratio, v->target,
			       v->ratio <= v->target ? "ok   " : "MISS ", v->floor);
		if (figs[f].partial)
			printf("  (only %zu samples)", figs[f].sum.n);
		putchar('\n');
	}
	printf("\nupager figures are compared with the %s floors "
	       "(spin_us=%" PRIu64 ").\n", spin ? "spinning" : "blocking",
	       o->spin_us);
	fflush(stdout);
}

/* ------------------------------------------------------------------------ */
/* Options                                                                   */
/* ------------------------------------------------------------------------ */

static void usage(FILE *f)
{
	fprintf(f,
"usage: fault [options]\n"
"Measure upager's zero-fill, soft and major fault latency and the raw\n"
"userfaultfd and io_uring floors beneath them (see bench/README.md).\n"
"\n"
"  --samples N      samples per figure (default 20000; --quick 2000)\n"
"  --budget SIZE    upager budget for the soft and major phases\n"
"                   (default 64M, or UPAGER_BUDGET; --quick 16M)\n"
"  --spin-us N      handler spin before sleeping, raw and upager\n"
"                   (default: upager's, i.e. UPAGER_SPIN_US or 0)\n"
"  --swap-dir DIR   where upager's swap and the raw read file live\n"
"                   (default: UPAGER_SWAP_DIR, $TMPDIR, /var/tmp)\n"
"  --file-size SIZE size of the raw read file (default 256M; --quick 32M)\n"
"  --soft-ws PCT    soft phase working set, %% of the budget (default 50)\n"
"  --write          touch by storing, not loading (zero, soft, raw uffd)\n"
"  --phases LIST    comma list of raw,read,zero,soft,major,all (default all)\n"
"  --rounds N       interleave the figures in N slices (default 10; --quick 4)\n"
"  --max-seconds N  give up an upager figure after N seconds\n"
"                   (default 120; --quick 20)\n"
"  --seed N         data pattern and access order (default 1)\n"
"  --quick          a small run, for a smoke test\n"
"  --require        fail (exit 1) instead of skipping (exit 77) without\n"
"                   userfaultfd\n"
"  --check          exit 1 if an upager figure misses its target\n"
"  --pin            measuring thread on CPU 0, raw uffd handlers on CPU 1\n"
"                   (shows the cost of a cross-CPU wake-up)\n"
"  --help\n");
}

static void bad_arg(const char *opt, const char *val, const char *example)
{
	fprintf(stderr, "fault: bad value '%s' for %s (example: %s %s); "
		"see --help\n", val, opt, opt, example);
	exit(EXIT_BADARGS);
}

static unsigned parse_phases(const char *s)
{
	unsigned bits = 0;
	char buf[128], *tok, *save;

	if (strlen(s) >= sizeof(buf))
		bad_arg("--phases", s, "raw,zero");
	strcpy(buf, s);
	for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		size_t i;

		for (i = 0; i < sizeof(phase_names) / sizeof(phase_names[0]); i++)
			if (!strcmp(tok, phase_names[i].name))
				break;
		if (i == sizeof(phase_names) / sizeof(phase_names[0]))
			bad_arg("--phases", s, "raw,zero");
		bits |= phase_names[i].bit;
	}
	if (!bits)
		bad_arg("--phases", s, "raw,zero");
	return bits;
}

static void parse_args(int argc, char **argv, struct bench_opts *o)
{
	enum { O_SAMPLES = 256, O_BUDGET, O_SPIN, O_DIR, O_FILE, O_SOFTWS,
	       O_WRITE, O_PHASES, O_MAXSEC, O_SEED, O_QUICK, O_REQUIRE,
	       O_CHECK, O_PIN, O_ROUNDS, O_HELP };
	static const struct option lo[] = {
		{ "samples", required_argument, NULL, O_SAMPLES },
		{ "budget", required_argument, NULL, O_BUDGET },
		{ "spin-us", required_argument, NULL, O_SPIN },
		{ "swap-dir", required_argument, NULL, O_DIR },
		{ "file-size", required_argument, NULL, O_FILE },
		{ "soft-ws", required_argument, NULL, O_SOFTWS },
		{ "write", no_argument, NULL, O_WRITE },
		{ "phases", required_argument, NULL, O_PHASES },
		{ "max-seconds", required_argument, NULL, O_MAXSEC },
		{ "seed", required_argument, NULL, O_SEED },
		{ "quick", no_argument, NULL, O_QUICK },
		{ "require", no_argument, NULL, O_REQUIRE },
		{ "check", no_argument, NULL, O_CHECK },
		{ "pin", no_argument, NULL, O_PIN },
		{ "rounds", required_argument, NULL, O_ROUNDS },
		{ "help", no_argument, NULL, O_HELP },
		{ 0 },
	};
	bool quick = false, set_samples = false, set_budget = false;
	bool set_spin = false, set_file = false, set_rounds = false;
	bool set_maxsec = false;
	const char *env;
	int c;

	memset(o, 0, sizeof(*o));
	o->soft_ws_pct = 50;
	o->seed = 1;
	o->phases = PH_ALL;
	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (c) {
		case O_SAMPLES:
			if (bench_parse_u64(optarg, 10, 100000000, &o->samples))
				bad_arg("--samples", optarg, "20000");
			set_samples = true;
			break;
		case O_BUDGET:
			if (bench_parse_size(optarg, &o->budget) ||
			    o->budget < (1 << 20))
				bad_arg("--budget", optarg, "64M");
			set_budget = true;
			break;
		case O_SPIN:
			if (bench_parse_u64(optarg, 0, 1000000, &o->spin_us))
				bad_arg("--spin-us", optarg, "50");
			set_spin = true;
			break;
		case O_DIR:
			o->dir = optarg;
			break;
		case O_FILE:
			if (bench_parse_size(optarg, &o->file_size) ||
			    o->file_size < (1 << 20) || o->file_size % RAW_PAGE)
				bad_arg("--file-size", optarg, "256M");
			set_file = true;
			break;
		case O_SOFTWS:
			if (bench_parse_u64(optarg, 1, 1000, &o->soft_ws_pct))
				bad_arg("--soft-ws", optarg, "50");
			break;
		case O_WRITE:
			o->write_touch = true;
			break;
		case O_PHASES:
			o->phases = parse_phases(optarg);
			break;
		case O_MAXSEC:
			if (bench_parse_u64(optarg, 1, 86400, &o->max_seconds))
				bad_arg("--max-seconds", optarg, "120");
			set_maxsec = true;
			break;
		case O_SEED:
			if (bench_parse_u64(optarg, 0, UINT64_MAX, &o->seed))
				bad_arg("--seed", optarg, "1");
			break;
		case O_QUICK:
			quick = true;
			break;
		case O_REQUIRE:
			o->require = true;
			break;
		case O_CHECK:
			o->check = true;
			break;
		case O_PIN:
			o->pin = true;
			break;
		case O_ROUNDS:
			if (bench_parse_u64(optarg, 1, 10000, &o->rounds))
				bad_arg("--rounds", optarg, "10");
			set_rounds = true;
			break;
		case O_HELP:
			usage(stdout);
			exit(0);
		default:
			fprintf(stderr, "fault: see --help for the options\n");
			exit(EXIT_BADARGS);
		}
	}
	if (optind < argc) {
		fprintf(stderr, "fault: unexpected argument '%s'; see --help\n",
			argv[optind]);
		exit(EXIT_BADARGS);
	}

	/* Explicit options win over --quick, wherever they stand. */
	if (!set_samples)
		o->samples = quick ? 2000 : 20000;
	if (!set_file)
		o->file_size = quick ? 32 << 20 : 256 << 20;
	if (!set_rounds)
		o->rounds = quick ? 4 : 10;
	if (!set_maxsec)
		o->max_seconds = quick ? 20 : 120;
	if (o->rounds > o->samples)
		o->rounds = o->samples;
	if (!set_budget) {
		env = getenv("UPAGER_BUDGET");
		if (env && *env) {
			if (bench_parse_size(env, &o->budget) || o->budget < (1 << 20))
				bad_arg("UPAGER_BUDGET", env, "64M");
		} else {
			o->budget = quick ? 16 << 20 : 64 << 20;
		}
	}
	o->warmup = o->samples / 10;
	if (o->warmup < 50)
		o->warmup = 50;
	if (o->warmup > 1000)
		o->warmup = 1000;

#ifndef BENCH_RAW_ONLY
	{
		char err[256] = "";
		int r;

		/* upager's own defaults and UPAGER_*: the floors must match. */
		upg_options_init(&base_upg_opts);
		r = upg_options_from_env(&base_upg_opts, err, sizeof(err));
		if (r) {
			fprintf(stderr, "fault: %s\n", err[0] ? err : strerror(-r));
			exit(EXIT_BADARGS);
		}
		if (!set_spin)
			o->spin_us = base_upg_opts.spin_us;
		if (!o->dir)
			o->dir = base_upg_opts.swap_dir;
	}
#else
	o->phases &= ~(unsigned)PH_UPAGER;
	if (!set_spin) {
		env = getenv("UPAGER_SPIN_US");
		o->spin_us = 0;
		if (env && *env && bench_parse_u64(env, 0, 1000000, &o->spin_us))
			bad_arg("UPAGER_SPIN_US", env, "0");
	}
#endif
	if (!o->dir || !*o->dir)
		o->dir = getenv("TMPDIR");
	if (!o->dir || !*o->dir)
		o->dir = "/var/tmp";
}

int main(int argc, char **argv)
{
	struct runner run[FIG_N];
	size_t nrun = 0;
	struct bench_opts o;
	struct utsname un;
	bool spin;
	int fd;

	parse_args(argc, argv, &o);
	spin = o.spin_us > 0;

	if (o.phases & (PH_RAW | PH_UPAGER)) {
		fd = uffd_open();
		if (fd < 0) {
			fprintf(stderr,
				"fault: userfaultfd is not available: %s.\n"
				"  Run as root, or 'sysctl vm.unprivileged_userfaultfd=1', "
				"or give this user read-write access to /dev/userfaultfd.\n",
				strerror(-fd));
			return o.require ? 1 : EXIT_SKIP;
		}
		close(fd);
	}

	uname(&un);
	bench_config(BENCH, "kernel=%s cpus=%ld samples=%" PRIu64
		     " warmup=%" PRIu64 " rounds=%" PRIu64 " budget=%" PRIu64
		     " spin_us=%" PRIu64
		     " touch=%s swap_dir=%s timer_ns=%" PRIu64 " mode=%s",
		     un.release, sysconf(_SC_NPROCESSORS_ONLN), o.samples,
		     o.warmup, o.rounds, o.budget, o.spin_us,
		     o.write_touch ? "write" : "read", o.dir,
		     bench_timer_overhead_ns(), spin ? "spin" : "block");

	if (o.pin)
		pin_to(pthread_self(), 0);
	/* Set everything up first, so that setup does not fall in a round. */
	if (o.phases & PH_RAW) {
		if (spin)
			run[nrun++] = raw_uffd_start(&o, RAW_ZEROPAGE, o.spin_us,
						     FIG_ZEROPAGE_SPIN);
		run[nrun++] = raw_uffd_start(&o, RAW_ZEROPAGE, 0, FIG_ZEROPAGE_BLOCK);
		if (spin)
			run[nrun++] = raw_uffd_start(&o, RAW_COPY, o.spin_us,
						     FIG_COPY_SPIN);
		run[nrun++] = raw_uffd_start(&o, RAW_COPY, 0, FIG_COPY_BLOCK);
	}
	if (o.phases & PH_READ) {
		raw_file_open(&o);
		if (spin)
			run[nrun++] = raw_read_start(&o, o.spin_us, FIG_READ_SPIN);
		run[nrun++] = raw_read_start(&o, 0, FIG_READ_BLOCK);
	}
#ifndef BENCH_RAW_ONLY
	if (o.phases & PH_ZERO)
		run[nrun++] = upg_start(&o, UK_ZERO);
	if (o.phases & PH_SOFT)
		run[nrun++] = upg_start(&o, UK_SOFT);
	if (o.phases & PH_MAJOR)
		run[nrun++] = upg_start(&o, UK_MAJOR);
#endif

	note("measuring: %" PRIu64 " rounds of %zu figures...", o.rounds, nrun);
	for (uint64_t r = 0; r < o.rounds; r++) {
		/* Split the samples evenly; the last round takes the rest. */
		uint64_t n = o.samples / o.rounds;

		if (r == o.rounds - 1)
			n = o.samples - n * (o.rounds - 1);
		for (size_t i = 0; i < nrun; i++)
			run[i].batch(run[i].ctx, &o, n);
	}
	for (size_t i = 0; i < nrun; i++)
		run[i].finish(run[i].ctx, &o);
	if (raw_file_fd >= 0)
		close(raw_file_fd);

	report_upager(&o, spin);
	print_table(&o, spin);

	if (o.check) {
		for (enum fig f = FIG_ZERO; f <= FIG_MAJOR; f++)
			if (verdicts[f].have && verdicts[f].ratio > verdicts[f].target)
				return 1;
	}
	return 0;
}
