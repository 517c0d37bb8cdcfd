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
 */
#include "pager.h"

void stride_init(struct upg_stride *s)
{
	s->n = 0;
	s->window = PREFETCH_MIN_WINDOW;
	s->issued = s->hits = 0;
	s->stride = 0;
	s->expect = 0;
	s->mapped = 0;
}

int64_t stride_next(struct upg_stride *s, uint64_t key)
{
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
