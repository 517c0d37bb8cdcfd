/* SPDX-License-Identifier: MIT */
/*
 * slots.c - the swap slot allocator.
 *
 * Reclaim writes pages out in batches.  If the pages of one batch land in
 * consecutive slots, the batch is one sequential write (one io_uring request,
 * one extent for the filesystem) instead of one scattered write per page; and
 * pages evicted together tend to be wanted together, so a later read-ahead
 * of neighbouring slots finds related pages.  So the allocator hands out
 * *runs* of consecutive slots, the way the kernel's swap allocator hands out
 * clusters (mm/swapfile.c).
 *
 * One bit per slot, set = in use.  A next-fit cursor remembers where the last
 * run ended, so successive batches go to ascending offsets and a search does
 * not rescan the crowded start of the file every time:
 *
 *      cursor
 *        v
 *   1111 0000 0011 1000 0000 0111
 *        ^^^^ ^^ first full run of 6 from the cursor
 *
 * The search goes word by word: a word of all ones is skipped whole, and
 * inside a word the next free (or used) bit is found with ctz on the word
 * (inverted).  It takes the first run of @want free slots after the cursor;
 * failing that, wrapping around once, the longest shorter run it saw, so that
 * an allocation only fails when every slot is in use.  Bits past capacity are
 * kept zero and masked off by the search.
 */
#include "internal.h"

#include <errno.h>
#include <string.h>

#define WORD_BITS 64U

static size_t words_for(uint32_t slots)
{
	return ((size_t)slots + WORD_BITS - 1) / WORD_BITS;
}

static bool bit_test(const uint64_t *map, uint32_t i)
{
	return (map[i / WORD_BITS] >> (i % WORD_BITS)) & 1;
}

/*
 * First slot in [from, to) whose bit equals @used, or @to.  Word at a time:
 * invert the word when looking for a free bit, mask the bits below @from,
 * and ctz finds the answer.
 */
static uint32_t find_bit(const uint64_t *map, uint32_t from, uint32_t to,
			 bool used)
{
	uint32_t i = from;

	while (i < to) {
		uint64_t w = map[i / WORD_BITS];
		uint32_t found;

		if (!used)
			w = ~w;
		w &= ~0ULL << (i % WORD_BITS);
		if (w) {
			found = (i & ~(WORD_BITS - 1)) +
				(uint32_t)__builtin_ctzll(w);
			return found < to ? found : to;
		}
		/* Next word; (i | 63) + 1 cannot overflow below UINT32_MAX. */
		if ((i | (WORD_BITS - 1)) >= to - 1)
			break;
		i = (i | (WORD_BITS - 1)) + 1;
	}
	return to;
}

/* Set (or clear) @len bits from @start, a word at a time. */
static void set_range(uint64_t *map, uint32_t start, uint32_t len, bool set)
{
	while (len > 0) {
		uint32_t bit = start % WORD_BITS;
		uint32_t n = WORD_BITS - bit < len ? WORD_BITS - bit : len;
		uint64_t mask = (n == WORD_BITS ? ~0ULL : ((1ULL << n) - 1))
				<< bit;

		if (set)
			map[start / WORD_BITS] |= mask;
		else
			map[start / WORD_BITS] &= ~mask;
		start += n;
		len -= n;
	}
}

int upg_slots_init(struct upg_slots *s, uint32_t capacity, uint32_t limit)
{
	memset(s, 0, sizeof(*s));
	if (capacity > limit || limit > UPG_NO_SLOT)
		return -EINVAL;
	s->limit = limit;
	if (capacity == 0)
		return 0;
	s->bitmap_bytes = words_for(capacity) * sizeof(uint64_t);
	s->bitmap = upg_os_alloc(s->bitmap_bytes);
	if (!s->bitmap) {
		s->bitmap_bytes = 0;
		return -ENOMEM;
	}
	s->capacity = capacity;
	return 0;
}

void upg_slots_destroy(struct upg_slots *s)
{
	upg_os_free(s->bitmap, s->bitmap_bytes);
	memset(s, 0, sizeof(*s));
}

uint32_t upg_slots_alloc(struct upg_slots *s, uint32_t want, uint32_t *got)
{
	uint32_t best = UPG_NO_SLOT, best_len = 0;
	uint32_t pos, stop, start, end;
	unsigned runs = 0;
	bool wrapped = false;

	upg_assert(s->used <= s->capacity);
	*got = 0;
	if (s->used == s->capacity)
		return UPG_NO_SLOT;
	if (want == 0)
		want = 1;
	if (want > s->capacity - s->used)
		want = s->capacity - s->used;

	/*
	 * Run starts are searched in [cursor, capacity), then in
	 * [0, cursor); a run found in the second pass may extend past the
	 * cursor, since slot numbers, not the search, must be consecutive.
	 */
	pos = s->cursor;
	stop = s->capacity;
	for (;;) {
		start = find_bit(s->bitmap, pos, stop, false);
		if (start == stop) {
			if (wrapped || s->cursor == 0)
				break;
			wrapped = true;
			pos = 0;
			stop = s->cursor;
			continue;
		}
		end = find_bit(s->bitmap, start,
			       s->capacity - start > want ? start + want :
							    s->capacity,
			       true);
		if (end - start > best_len) {
			best = start;
			best_len = end - start;
			if (best_len == want)
				break;
		}
		/*
		 * A fragmented store may have no full run anywhere: looking
		 * at every free run would make each allocation scan the whole
		 * bitmap.  After UPG_SLOTS_MAX_RUNS candidates, take the best.
		 */
		if (++runs >= UPG_SLOTS_MAX_RUNS)
			break;
		if (end >= stop)
			pos = stop;
		else
			pos = end;
	}
	/* used < capacity, so some bit in [0, capacity) was free. */
	upg_check(best != UPG_NO_SLOT && best_len > 0);
	upg_assert(find_bit(s->bitmap, best, best + best_len, true) ==
		   best + best_len);

	set_range(s->bitmap, best, best_len, true);
	s->used += best_len;
	s->cursor = best + best_len < s->capacity ? best + best_len : 0;
	*got = best_len;
	return best;
}

void upg_slots_free(struct upg_slots *s, uint32_t slot)
{
	/* A double free would hand one slot to two pages: data loss. */
	upg_check(slot < s->capacity);
	upg_check(bit_test(s->bitmap, slot));
	s->bitmap[slot / WORD_BITS] &= ~(1ULL << (slot % WORD_BITS));
	s->used--;
}

int upg_slots_grow(struct upg_slots *s, uint32_t capacity)
{
	size_t need, bytes;
	uint64_t *map;

	if (capacity > s->limit)
		return -EINVAL;
	if (capacity <= s->capacity)
		return 0;
	need = words_for(capacity) * sizeof(uint64_t);
	if (need > s->bitmap_bytes) {
		/*
		 * Double the mapping (up to what the limit needs) so that a
		 * store growing chunk by chunk copies the bitmap only
		 * log(size) times.
		 */
		bytes = s->bitmap_bytes * 2;
		if (bytes < need)
			bytes = need;
		if (bytes > words_for(s->limit) * sizeof(uint64_t))
			bytes = words_for(s->limit) * sizeof(uint64_t);
		map = upg_os_alloc(bytes);
		if (!map)
			return -ENOMEM;
		if (s->bitmap)
			memcpy(map, s->bitmap,
			       words_for(s->capacity) * sizeof(uint64_t));
		upg_os_free(s->bitmap, s->bitmap_bytes);
		s->bitmap = map;
		s->bitmap_bytes = bytes;
	}
	/* Bits past the old capacity are zero (invariant): now free slots. */
	s->capacity = capacity;
	return 0;
}

bool upg_slots_is_used(const struct upg_slots *s, uint32_t slot)
{
	return slot < s->capacity && bit_test(s->bitmap, slot);
}

bool upg_slots_is_valid(const struct upg_slots *s)
{
	size_t i, words = words_for(s->capacity);
	uint64_t count = 0;
	uint32_t tail = s->capacity % WORD_BITS;

	if (s->limit > UPG_NO_SLOT || s->capacity > s->limit)
		return false;
	if (s->used > s->capacity)
		return false;
	if (s->cursor >= s->capacity && s->cursor != 0)
		return false;
	if (s->capacity > 0 &&
	    (!s->bitmap || s->bitmap_bytes < words * sizeof(uint64_t)))
		return false;
	for (i = 0; i < words; i++)
		count += (uint64_t)__builtin_popcountll(s->bitmap[i]);
	if (count != s->used)
		return false;
	/* Bits past capacity stay zero, so that grow() need not clear them. */
	if (tail && (s->bitmap[words - 1] >> tail) != 0)
		return false;
	return true;
}
