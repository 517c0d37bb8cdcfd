/* SPDX-License-Identifier: MIT */
/*
 * prefetch.c - which pages to read before they are asked for.
 *
 * Each handler remembers the pages of its last few major faults.  If most
 * of the steps between consecutive ones are the same (a majority vote over
 * the deltas, as Leap does for remote memory), the program is walking with
 * that stride -- 1 for a sequential scan, a row length for a column walk --
 * and the next pages on that line are read at once, asynchronously.  A
 * vote rather than "the last two deltas agree" keeps one stray fault (a
 * pointer chase, a stack page) from breaking a detected stream.
 *
 * While the window is small -- the stream not yet proven -- prefetched
 * pages are not mapped: they wait in their frame's staging slot as INACTIVE
 * pages, exactly like pages on their way out.  A touch is then a soft fault
 * (a hit, counted); an untouched one reaches the head of the inactive list
 * and is dropped without I/O, its swap copy still valid.  Once the window
 * has grown to PREFETCH_MAP_WINDOW the stream has proven itself, and its
 * pages are mapped at once, write-protected like any clean page: no fault
 * at all when they are used.  Their hits are then counted when the stream
 * goes on past the window (the next major fault is the one expected).
 *
 * The window adapts like the kernel's readahead: it doubles while hits keep
 * up with what was issued, and halves when they do not.
 *
 * A stream read ahead only at its faults stalls once per window: the
 * program uses the window up, faults on the page past it and waits for
 * that read -- with the next window's reads queued beside it.  So, as the
 * kernel marks a page of each readahead window (PG_readahead), one page
 * of every window, half-way through it, is the marker: staged even when
 * the rest is mapped, so that its first touch is a fault, which reads the
 * next window while the program goes on through the second half of this
 * one.  A stream that keeps its pace then waits for no read at all.
 *
 * A program may walk several lines at once -- a loop over the columns of
 * four matrices -- and then one history of its faults interleaves four
 * strides and no vote is won.  So a handler keeps several streams, each
 * with its own history and window, like a hardware prefetcher's stream
 * table: a fault goes to the stream it continues (the one expected), else
 * to the stream whose last fault is nearest, if that is within
 * PREFETCH_STREAM_GAP pages in the same region.  A fault far from every
 * stream starts one in place of the one idle longest, and is voted on in
 * the history of all faults, which finds a single stream of any stride
 * (a column walk over rows of many pages).
 */
#include "pager.h"

void stride_init(struct upg_stride *s)
{
	s->n = 0;
	s->window = PREFETCH_MIN_WINDOW;
	s->issued = s->hits = 0;
	s->stride = 0;
	s->expect = 0;
	s->trigger = PREFETCH_NO_TRIGGER;
	s->mapped = 0;
}

int64_t stride_next(struct upg_stride *s, uint64_t key)
{
	/* a major fault of the stream ends its window: a new one, a new marker */
	s->trigger = PREFETCH_NO_TRIGGER;
	/*
	 * The first fault past the last window continues the stream: its
	 * distance is the window's, not the stride, so it is not voted on;
	 * and the mapped pages it stepped over were used.
	 */
	if (s->stride && key == s->expect) {
		s->hits += s->mapped;
		s->mapped = 0;
		return s->stride;
	}
	s->mapped = 0;
	s->stride = stride_observe(s, key);
	return s->stride;
}

int64_t stride_observe(struct upg_stride *s, uint64_t key)
{
	int64_t cand = 0;
	unsigned votes = 0, ndeltas, agree = 0;

	/* history, newest last */
	if (s->n == ARRAY_SIZE(s->hist)) {
		for (unsigned i = 1; i < s->n; i++)
			s->hist[i - 1] = s->hist[i];
		s->n--;
	}
	s->hist[s->n++] = key;
	if (s->n < 3)
		return 0;
	ndeltas = s->n - 1;

	/* Boyer-Moore majority vote over the deltas ... */
	for (unsigned i = 1; i < s->n; i++) {
		int64_t d = (int64_t)(s->hist[i] - s->hist[i - 1]);

		if (votes == 0) {
			cand = d;
			votes = 1;
		} else if (d == cand) {
			votes++;
		} else {
			votes--;
		}
	}
	/* ... then check that the candidate really has a majority */
	for (unsigned i = 1; i < s->n; i++)
		if ((int64_t)(s->hist[i] - s->hist[i - 1]) == cand)
			agree++;
	if (cand == 0 || 2 * agree <= ndeltas)
		return 0;
	return cand;
}

void stride_feedback(struct upg_stride *s)
{
	/* judge the window once enough of it has had a chance to be used */
	if (s->issued < 2 * s->window)
		return;
	if (2 * s->hits >= s->issued) {
		if (s->window < PREFETCH_MAX_WINDOW)
			s->window *= 2;
	} else if (s->window > PREFETCH_MIN_WINDOW) {
		s->window /= 2;
	}
	s->issued = s->hits = 0;
}

void streams_init(struct upg_streams *ss)
{
	stride_init(&ss->all);
	ss->all.last_use = 0;
	for (unsigned i = 0; i < PREFETCH_STREAMS; i++) {
		stride_init(&ss->s[i]);
		ss->s[i].last_use = 0;
	}
	ss->clock = 0;
}

/*
 * Distance from @key to stream @s: to its last fault, or to the span it
 * has read ahead (from its last fault to the one it expects next), since
 * a page of that span may fault too (evicted before its use).  UINT64_MAX
 * in another region.
 */
static uint64_t stream_distance(const struct upg_stride *s, uint64_t key)
{
	uint64_t lo, hi;

	if (s->n == 0 ||
	    page_key_region(s->hist[s->n - 1]) != page_key_region(key))
		return UINT64_MAX;
	lo = hi = s->hist[s->n - 1];
	if (s->stride && page_key_region(s->expect) == page_key_region(key)) {
		if (s->expect < lo)
			lo = s->expect;
		else
			hi = s->expect;
	}
	if (key < lo)
		return lo - key;
	return key > hi ? key - hi : 0;
}

/* The nearby stream nearest to @key, or NULL. */
static struct upg_stride *nearest(struct upg_streams *ss, uint64_t key)
{
	struct upg_stride *best = NULL;
	uint64_t best_d = PREFETCH_STREAM_GAP + 1;

	for (unsigned i = 0; i < PREFETCH_STREAMS; i++) {
		uint64_t d = stream_distance(&ss->s[i], key);

		if (d < best_d) {
			best = &ss->s[i];
			best_d = d;
		}
	}
	return best;
}

struct upg_stride *streams_pick(struct upg_streams *ss, uint64_t key)
{
	struct upg_stride *s = NULL;

	if (ss->all.stride && ss->all.expect == key)
		s = &ss->all;
	for (unsigned i = 0; i < PREFETCH_STREAMS && !s; i++)
		if (ss->s[i].stride && ss->s[i].expect == key)
			s = &ss->s[i];
	if (!s)
		s = nearest(ss, key);
	if (!s) {
		struct upg_stride *idle = &ss->s[0];

		for (unsigned i = 1; i < PREFETCH_STREAMS; i++)
			if (ss->s[i].last_use < idle->last_use)
				idle = &ss->s[i];
		stride_init(idle);
		stride_observe(idle, key);
		idle->last_use = ++ss->clock;
		s = &ss->all;
	}
	s->last_use = ++ss->clock;
	return s;
}

void streams_hit(struct upg_streams *ss, uint64_t key)
{
	struct upg_stride *s = nearest(ss, key);

	(s ? s : &ss->all)->hits++;
}

struct upg_stride *streams_triggered(struct upg_streams *ss, uint64_t key)
{
	if (ss->all.trigger == key)
		return &ss->all;
	for (unsigned i = 0; i < PREFETCH_STREAMS; i++)
		if (ss->s[i].trigger == key)
			return &ss->s[i];
	return NULL;
}
