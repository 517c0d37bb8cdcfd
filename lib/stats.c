/* SPDX-License-Identifier: MIT */
/*
 * stats.c - what the pager did, for programs, benchmarks and people.
 *
 * Event counters and page counts by state are relaxed atomics bumped where
 * things happen, so a snapshot costs the same at any budget and can be
 * taken between every two accesses of a benchmark.
 */
#include "pager.h"

#include <errno.h>
#include <inttypes.h>
#include <string.h>

/* Histogram bucket of the time since @t0 (see UPG_LATENCY_BUCKETS). */
static unsigned latency_bucket(uint64_t t0)
{
	uint64_t ns = upg_now_ns() - t0;
	unsigned o, b;

	if (ns < 4)
		return (unsigned)ns;
	o = 63 - (unsigned)__builtin_clzll(ns);
	b = 4 * o + (unsigned)((ns >> (o - 2)) & 3);
	return b < UPG_LATENCY_BUCKETS ? b : UPG_LATENCY_BUCKETS - 1;
}

/* The upper edge of bucket @b, in nanoseconds. */
static uint64_t bucket_end(unsigned b)
{
	if (b < 8)
		return b + 1;
	return (uint64_t)(4 + b % 4 + 1) << (b / 4 - 2);
}

void stats_fault(struct upg_runtime *rt, enum upg_fault_kind kind, uint64_t t0)
{
	STAT_INC(rt, latency[kind][latency_bucket(t0)]);
}

void stats_read(struct upg_runtime *rt, uint64_t t_submit)
{
	STAT_INC(rt, read_latency[latency_bucket(t_submit)]);
}

void stats_note_resident(struct upg_runtime *rt, uint32_t used)
{
	uint64_t peak = atomic_load_explicit(&rt->c.peak_resident,
					     memory_order_relaxed);

	while (used > peak &&
	       !atomic_compare_exchange_weak(&rt->c.peak_resident, &peak, used))
		;
}

#define LOAD(x) atomic_load_explicit(&(x), memory_order_relaxed)

static void stats_fill(struct upg_runtime *rt, struct upg_stats *st)
{
	memset(st, 0, sizeof(*st));
	st->page_size = rt->page_size;
	st->paged = rt->paged;
	st->guest_halt_poll_ns = rt->guest_halt_poll_ns; /* paged or not */
	if (!rt->paged)
		return;
	st->budget_pages = rt->base_frames;
	st->charged_bytes = (uint64_t)__atomic_load_n(&rt->charged_bytes,
						      __ATOMIC_RELAXED);
	st->evict_move = rt->use_move;
	st->dirty_by_contents = rt->dirty_by_sum;
	st->has_poison = rt->uffd.has_poison;

	for (int k = 0; k < UPG_FAULT_KINDS; k++) {
		st->faults[k] = LOAD(rt->c.faults[k]);
		for (int b = 0; b < UPG_LATENCY_BUCKETS; b++)
			st->latency[k][b] = LOAD(rt->c.latency[k][b]);
	}
	st->faults_duplicate = LOAD(rt->c.faults_duplicate);
	for (int b = 0; b < UPG_LATENCY_BUCKETS; b++)
		st->read_latency[b] = LOAD(rt->c.read_latency[b]);
	st->faults_waited = LOAD(rt->c.faults_waited);
	st->deactivations = LOAD(rt->c.deactivations);
	st->pages_written = LOAD(rt->c.pages_written);
	st->pages_read = LOAD(rt->c.pages_read);
	st->bytes_written = st->pages_written * rt->page_size;
	st->bytes_read = st->pages_read * rt->page_size;
	st->write_requests = LOAD(rt->c.write_requests);
	st->read_requests = LOAD(rt->c.read_requests);
	st->clean_drops = LOAD(rt->c.clean_drops);
	st->discards = LOAD(rt->c.discards);
	st->swap_full = LOAD(rt->c.swap_full);
	st->io_errors = LOAD(rt->c.io_errors);
	st->io_retries = LOAD(rt->c.io_retries);
	st->poisoned = LOAD(rt->c.poisoned);
	st->events_fork = LOAD(rt->c.events_fork);
	st->events_remap = LOAD(rt->c.events_remap);
	st->events_remove = LOAD(rt->c.events_remove);
	st->events_unmap = LOAD(rt->c.events_unmap);
	st->prefetch_issued = LOAD(rt->c.prefetch_issued);
	st->prefetch_hits = LOAD(rt->c.prefetch_hits);
	st->prefetch_async = LOAD(rt->c.prefetch_async);
	st->zero_filled_ahead = LOAD(rt->c.zero_filled_ahead);
	st->populated = LOAD(rt->c.populated);
	st->zero_mapped_around = LOAD(rt->c.zero_mapped_around);
	st->zero_drops = LOAD(rt->c.zero_drops);
	st->writable_installs = LOAD(rt->c.writable_installs);
	st->sum_unchanged = LOAD(rt->c.sum_unchanged);
	st->sum_changed = LOAD(rt->c.sum_changed);
	st->refaults_kept = LOAD(rt->c.refaults_kept);
	st->protected_pages = __atomic_load_n(&rt->active.count, __ATOMIC_RELAXED);
	st->demotions = LOAD(rt->c.demotions);
	st->deactivation_flushes = LOAD(rt->c.deactivation_flushes);
	st->peak_resident_pages = LOAD(rt->c.peak_resident);
	st->pinned_pages = atomic_load(&rt->pinned_pages);

	pthread_mutex_lock(&rt->swap_lock);
	st->swap_slots_used = rt->slots.used;
	st->swap_slots_total = rt->slots.capacity;
	pthread_mutex_unlock(&rt->swap_lock);

	st->resident_pages = __atomic_load_n(&rt->used_frames, __ATOMIC_RELAXED);
	st->active_pages = (uint64_t)LOAD(rt->nr_state[PS_ACTIVE]);
	st->inactive_pages = (uint64_t)LOAD(rt->nr_state[PS_INACTIVE]);
	st->writeback_pages = (uint64_t)LOAD(rt->nr_state[PS_WRITEBACK]);
	st->reading_pages = (uint64_t)LOAD(rt->nr_state[PS_READING]);
	st->swapped_pages = (uint64_t)LOAD(rt->nr_state[PS_SWAPPED]);
}

/*
 * The caller's struct upg_stats is @size bytes: its own header's, which may
 * be older (fields are only ever appended, so it gets the ones it knows) or
 * newer than this library's (the fields this one lacks read as zero).
 */
UPG_API int upg_stats_snapshot(struct upg_runtime *rt, struct upg_stats *st,
			   size_t size)
{
	struct upg_stats now; /* 6.5 KiB: only for a struct of another size */

	if (!rt || !st || size < sizeof(now.page_size))
		return -EINVAL;
	if (size == sizeof(now)) {
		stats_fill(rt, st);
		return 0;
	}
	stats_fill(rt, &now);
	if (size > sizeof(now)) {
		memset((char *)st + sizeof(now), 0, size - sizeof(now));
		size = sizeof(now);
	}
	memcpy(st, &now, size);
	return 0;
}

/* Upper edge of the bucket below which a fraction @q of @hist lies. */
static uint64_t quantile(const uint64_t *hist, double q)
{
	uint64_t total = 0, seen = 0;

	for (int b = 0; b < UPG_LATENCY_BUCKETS; b++)
		total += hist[b];
	if (total == 0)
		return 0;
	for (int b = 0; b < UPG_LATENCY_BUCKETS; b++) {
		seen += hist[b];
		if ((double)seen >= q * (double)total)
			return bucket_end((unsigned)b);
	}
	return bucket_end(UPG_LATENCY_BUCKETS - 1);
}

UPG_API uint64_t upg_stats_latency_quantile(const struct upg_stats *st,
					    enum upg_fault_kind kind, double q)
{
	if (!st || kind >= UPG_FAULT_KINDS)
		return 0;
	return quantile(st->latency[kind], q);
}

UPG_API uint64_t upg_stats_read_latency_quantile(const struct upg_stats *st,
						 double q)
{
	return st ? quantile(st->read_latency, q) : 0;
}

static void human(char *buf, size_t n, uint64_t bytes)
{
	static const char units[] = "BKMGT";
	double v = (double)bytes;
	int u = 0;

	while (v >= 1024 && u < 4) {
		v /= 1024;
		u++;
	}
	snprintf(buf, n, u ? "%.1f%c" : "%.0f%c", v, units[u]);
}

static void stats_print(const struct upg_stats *st, FILE *out)
{
	static const char *kinds[] = { "zero-fill", "soft", "major", "write-protect" };
	char a[32], b[32], c[32];

	if (!st || !out)
		return;
	if (!st->paged) {
		fprintf(out, "upager: unpaged (userfaultfd unavailable)\n");
		return;
	}
	human(a, sizeof(a), st->budget_pages * st->page_size);
	human(b, sizeof(b), st->peak_resident_pages * st->page_size);
	human(c, sizeof(c), st->page_size);
	fprintf(out, "upager: budget %s, peak resident %s, page %s, eviction by %s\n",
		a, b, c, st->evict_move ? "UFFDIO_MOVE" : "protect-copy-zap");
	if (st->charged_bytes) {
		human(a, sizeof(a), st->charged_bytes);
		fprintf(out, "  charged to the budget: %s held outside the regions "
			"(allocator metadata)\n", a);
	}
	fprintf(out, "  now: %" PRIu64 " resident (%" PRIu64 " active, %" PRIu64
		" inactive, %" PRIu64 " writeback, %" PRIu64 " reading), %" PRIu64
		" swapped, %" PRIu64 " pinned\n",
		st->resident_pages, st->active_pages, st->inactive_pages,
		st->writeback_pages, st->reading_pages, st->swapped_pages,
		st->pinned_pages);
	fprintf(out, "  faults:");
	for (int k = 0; k < UPG_FAULT_KINDS; k++)
		fprintf(out, " %s %" PRIu64 " (p50 %.1fus, p99 %.1fus)%s", kinds[k],
			st->faults[k],
			upg_stats_latency_quantile(st, k, 0.5) / 1000.0,
			upg_stats_latency_quantile(st, k, 0.99) / 1000.0,
			k + 1 < UPG_FAULT_KINDS ? "," : "\n");
	human(a, sizeof(a), st->bytes_written);
	human(b, sizeof(b), st->bytes_read);
	fprintf(out, "  swap: %" PRIu64 " pages written (%s in %" PRIu64
		" requests), %" PRIu64 " read (%s), %" PRIu64 " clean drops, %"
		PRIu64 " deactivations (%" PRIu64 " TLB flushes)\n",
		st->pages_written, a, st->write_requests, st->pages_read, b,
		st->clean_drops, st->deactivations, st->deactivation_flushes);
	fprintf(out, "  replacement: %" PRIu64 " pages faulted back from the "
		"inactive list, %" PRIu64 " back from swap soon after they "
		"left (kept longer); %" PRIu64 " protected now, %" PRIu64
		" demoted to probation\n", st->faults[UPG_FAULT_SOFT],
		st->refaults_kept, st->protected_pages, st->demotions);
	fprintf(out, "  swap reads of major faults, submitted to completed: p50 "
		"%.1fus, p99 %.1fus\n",
		upg_stats_read_latency_quantile(st, 0.5) / 1000.0,
		upg_stats_read_latency_quantile(st, 0.99) / 1000.0);
	fprintf(out, "  prefetch: %" PRIu64 " pages read ahead, %" PRIu64
		" used; %" PRIu64 " windows read at a marker, ahead of need\n",
		st->prefetch_issued, st->prefetch_hits, st->prefetch_async);
	fprintf(out, "  zero-fill without a fault: %" PRIu64 " ahead of a writer, %"
		PRIu64 " around a first touch, %" PRIu64 " populated; %" PRIu64
		" zero pages dropped unwritten\n",
		st->zero_filled_ahead, st->zero_mapped_around, st->populated,
		st->zero_drops);
	if (st->dirty_by_contents)
		fprintf(out, "  dirty tracking by contents: of the clean pages "
			"that left, %" PRIu64 " were as they came in (no write), "
			"%" PRIu64 " had changed\n",
			st->sum_unchanged, st->sum_changed);
	else
		fprintf(out, "  dirty tracking: %" PRIu64 " write-protect faults, %"
			PRIu64 " pages mapped writable ahead of a predicted "
			"write\n", st->faults[UPG_FAULT_WP],
			st->writable_installs);
	fprintf(out, "  discarded %" PRIu64 ", waited for reclaim %" PRIu64
		", duplicate faults %" PRIu64 ", swap full %" PRIu64
		", I/O errors %" PRIu64 "\n",
		st->discards, st->faults_waited, st->faults_duplicate,
		st->swap_full, st->io_errors);
	if (st->guest_halt_poll_ns == 0)
		fprintf(out, "  machine: idle vCPUs halt without polling "
			"(guest_halt_poll_ns 0, or cpuidle-haltpoll not the "
			"active idle driver), so a fault's wake-ups across "
			"vCPUs go through the host: see README, Guest idle "
			"polling; a single-threaded program may gain from "
			"`upager run --cpus swap-irq`\n");
}

/* @st is @size bytes, as in upg_stats_snapshot(). */
UPG_API void upg_stats_print_sized(const struct upg_stats *st, size_t size,
				   FILE *out)
{
	struct upg_stats all;

	if (!st || !out)
		return;
	if (size == sizeof(all)) {
		stats_print(st, out);
		return;
	}
	memset(&all, 0, sizeof(all));
	memcpy(&all, st, size < sizeof(all) ? size : sizeof(all));
	stats_print(&all, out);
}
