/* SPDX-License-Identifier: MIT */
/*
 * test_slots.c - the swap slot allocator: runs, next fit, wrap-around,
 * growth, and a randomized comparison against a plain bool array.
 */
#include "internal.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

TestSuite(slots);

/* Allocate @want, expect exactly [@start, @start + @len). */
static void expect_alloc(struct upg_slots *s, uint32_t want, uint32_t start,
			 uint32_t len)
{
	uint32_t got = 12345, slot;

	slot = upg_slots_alloc(s, want, &got);
	cr_expect_eq(slot, start, "alloc(%u) gave slot %u, expected %u", want,
		     slot, start);
	cr_expect_eq(got, len, "alloc(%u) gave %u slots, expected %u", want,
		     got, len);
	cr_expect(upg_slots_is_valid(s));
}

static void fill(struct upg_slots *s)
{
	uint32_t got;

	while (upg_slots_alloc(s, 1000, &got) != UPG_NO_SLOT)
		;
	cr_assert_eq(s->used, s->capacity);
}

Test(slots, init_rejects_bad_limits)
{
	struct upg_slots s;

	cr_expect_eq(upg_slots_init(&s, 100, 99), -EINVAL);
	cr_assert_eq(upg_slots_init(&s, 100, 100), 0);
	cr_expect_eq(s.capacity, 100);
	cr_expect_eq(s.used, 0);
	cr_expect(upg_slots_is_valid(&s));
	upg_slots_destroy(&s);
}

Test(slots, runs_are_consecutive_and_disjoint)
{
	enum { CAP = 1000, WANT = 7 };
	static bool seen[CAP];
	struct upg_slots s;
	uint32_t slot, got, i, total = 0;

	cr_assert_eq(upg_slots_init(&s, CAP, CAP), 0);
	while ((slot = upg_slots_alloc(&s, WANT, &got)) != UPG_NO_SLOT) {
		cr_assert(got >= 1 && got <= WANT, "got %u", got);
		/* Only the last run may be short: 1000 = 142 * 7 + 6. */
		cr_expect(got == WANT || total + got == CAP,
			  "short run of %u at %u", got, slot);
		cr_assert(slot + got <= CAP);
		for (i = slot; i < slot + got; i++) {
			cr_expect_not(seen[i], "slot %u handed out twice", i);
			seen[i] = true;
			cr_expect(upg_slots_is_used(&s, i));
		}
		total += got;
	}
	cr_expect_eq(total, CAP);
	cr_expect_eq(got, 0);
	cr_expect_eq(s.used, CAP);
	cr_expect(upg_slots_is_valid(&s));
	upg_slots_destroy(&s);
}

Test(slots, next_fit_ascends)
{
	struct upg_slots s;

	cr_assert_eq(upg_slots_init(&s, 256, 256), 0);
	expect_alloc(&s, 10, 0, 10);
	expect_alloc(&s, 10, 10, 10);
	/* A freed slot behind the cursor is not reused while there is room ahead. */
	upg_slots_free(&s, 3);
	expect_alloc(&s, 1, 20, 1);
	/* Runs cross word boundaries. */
	expect_alloc(&s, 100, 21, 100);
	upg_slots_destroy(&s);
}

Test(slots, want_zero_means_one)
{
	struct upg_slots s;

	cr_assert_eq(upg_slots_init(&s, 64, 64), 0);
	expect_alloc(&s, 0, 0, 1);
	upg_slots_destroy(&s);
}

Test(slots, free_and_realloc)
{
	struct upg_slots s;
	uint32_t i;

	cr_assert_eq(upg_slots_init(&s, 64, 64), 0);
	fill(&s);
	for (i = 10; i < 20; i++)
		upg_slots_free(&s, i);
	cr_expect_eq(s.used, 54);
	cr_expect_not(upg_slots_is_used(&s, 15));
	cr_expect(upg_slots_is_used(&s, 9));
	cr_expect(upg_slots_is_used(&s, 20));
	cr_expect(upg_slots_is_valid(&s));
	expect_alloc(&s, 10, 10, 10);
	cr_expect_eq(s.used, 64);
	upg_slots_destroy(&s);
}

Test(slots, longest_run_when_no_full_run)
{
	struct upg_slots s;
	uint32_t i, got;

	cr_assert_eq(upg_slots_init(&s, 200, 200), 0);
	fill(&s);
	for (i = 5; i < 8; i++)         /* 3 free */
		upg_slots_free(&s, i);
	for (i = 130; i < 137; i++)     /* 7 free, across a word boundary */
		upg_slots_free(&s, i);
	for (i = 190; i < 192; i++)     /* 2 free */
		upg_slots_free(&s, i);
	expect_alloc(&s, 10, 130, 7);
	expect_alloc(&s, 10, 5, 3);
	expect_alloc(&s, 10, 190, 2);
	cr_expect_eq(upg_slots_alloc(&s, 1, &got), UPG_NO_SLOT);
	cr_expect_eq(got, 0);
	upg_slots_destroy(&s);
}

Test(slots, wraps_around_once)
{
	struct upg_slots s;
	uint32_t i;

	cr_assert_eq(upg_slots_init(&s, 128, 128), 0);
	for (i = 0; i < 100; i++)
		expect_alloc(&s, 1, i, 1);
	for (i = 0; i < 50; i++)
		upg_slots_free(&s, i);
	/* From the cursor (100) only 28 are free: the full run is at 0. */
	expect_alloc(&s, 40, 0, 40);
	/* No run of 40 is left: the longest (100..127) beats the first. */
	expect_alloc(&s, 40, 100, 28);
	expect_alloc(&s, 40, 40, 10);
	cr_expect_eq(s.used, 128);
	upg_slots_destroy(&s);
}

/* A run found after wrapping may extend past the cursor. */
Test(slots, run_across_the_cursor)
{
	struct upg_slots s;
	uint32_t i;

	cr_assert_eq(upg_slots_init(&s, 128, 128), 0);
	expect_alloc(&s, 50, 0, 50);
	expect_alloc(&s, 78, 50, 78);   /* cursor wraps to 0 */
	for (i = 40; i < 60; i++)
		upg_slots_free(&s, i);
	expect_alloc(&s, 5, 40, 5);     /* cursor 45 */
	for (i = 40; i < 45; i++)
		upg_slots_free(&s, i);
	/* From 45: a run of 15 only; after wrapping, 40..59 is whole. */
	expect_alloc(&s, 20, 40, 20);
	upg_slots_destroy(&s);
}

Test(slots, fill_to_capacity)
{
	struct upg_slots s;
	uint32_t got = 99, i;

	/* Not a multiple of 64: slots past capacity are never handed out. */
	cr_assert_eq(upg_slots_init(&s, 70, 1000), 0);
	for (i = 0; i < 70; i++)
		expect_alloc(&s, 1, i, 1);
	cr_expect_eq(upg_slots_alloc(&s, 1, &got), UPG_NO_SLOT);
	cr_expect_eq(got, 0);
	cr_expect_eq(upg_slots_alloc(&s, 64, &got), UPG_NO_SLOT);
	cr_expect_not(upg_slots_is_used(&s, 70));
	cr_expect_not(upg_slots_is_used(&s, UPG_NO_SLOT));
	cr_expect(upg_slots_is_valid(&s));
	upg_slots_destroy(&s);
}

Test(slots, empty_allocator_grows)
{
	struct upg_slots s;
	uint32_t got;

	cr_assert_eq(upg_slots_init(&s, 0, 1000), 0);
	cr_expect(upg_slots_is_valid(&s));
	cr_expect_eq(upg_slots_alloc(&s, 4, &got), UPG_NO_SLOT);
	cr_assert_eq(upg_slots_grow(&s, 10), 0);
	expect_alloc(&s, 4, 0, 4);
	upg_slots_destroy(&s);
}

Test(slots, grow)
{
	struct upg_slots s;
	uint32_t i, got;

	cr_assert_eq(upg_slots_init(&s, 100, 1u << 20), 0);
	fill(&s);
	upg_slots_free(&s, 42);
	/* Far past the first mapping: the bitmap is copied to a new one. */
	cr_assert_eq(upg_slots_grow(&s, 100000), 0);
	cr_expect_eq(s.capacity, 100000);
	cr_expect_geq(s.bitmap_bytes, (100000 + 63) / 64 * 8);
	cr_expect(upg_slots_is_valid(&s));
	for (i = 0; i < 100; i++)
		cr_expect_eq(upg_slots_is_used(&s, i), i != 42, "slot %u", i);
	cr_expect_not(upg_slots_is_used(&s, 100));
	/* The cursor was at 0 (filled): 42 comes first, then the new room. */
	expect_alloc(&s, 1, 42, 1);
	expect_alloc(&s, 50, 100, 50);

	/* Shrinking is a no-op, past the limit is refused. */
	cr_expect_eq(upg_slots_grow(&s, 50), 0);
	cr_expect_eq(s.capacity, 100000);
	cr_expect_eq(upg_slots_grow(&s, (1u << 20) + 1), -EINVAL);
	cr_expect_eq(s.capacity, 100000);
	cr_assert_eq(upg_slots_grow(&s, 1u << 20), 0);
	fill(&s);
	cr_expect_eq(upg_slots_alloc(&s, 1, &got), UPG_NO_SLOT);
	upg_slots_destroy(&s);
}

/* Small steps inside one mapping, then across it. */
Test(slots, grow_in_small_steps)
{
	struct upg_slots s;
	uint32_t cap, i;

	cr_assert_eq(upg_slots_init(&s, 1, 5000), 0);
	for (cap = 1; cap <= 5000; cap += 37) {
		cr_assert_eq(upg_slots_grow(&s, cap), 0);
		fill(&s);
		cr_assert(upg_slots_is_valid(&s), "capacity %u", cap);
	}
	for (i = 0; i < s.capacity; i++)
		cr_assert(upg_slots_is_used(&s, i), "slot %u", i);
	upg_slots_destroy(&s);
}

Test(slots, is_valid_catches_corruption)
{
	struct upg_slots s;
	uint32_t got;

	cr_assert_eq(upg_slots_init(&s, 100, 100), 0);
	upg_slots_alloc(&s, 10, &got);
	cr_assert(upg_slots_is_valid(&s));
	s.bitmap[1] |= 1;               /* a used bit nobody counted */
	cr_expect_not(upg_slots_is_valid(&s));
	s.bitmap[1] &= ~1ULL;
	cr_assert(upg_slots_is_valid(&s));
	s.bitmap[1] |= 1ULL << 40;      /* slot 104, past capacity */
	s.used++;
	cr_expect_not(upg_slots_is_valid(&s));
	s.bitmap[1] &= ~(1ULL << 40);
	s.used--;
	s.cursor = 100;
	cr_expect_not(upg_slots_is_valid(&s));
	upg_slots_destroy(&s);
}

/*
 * Random allocs, frees and grows, checked against a bool per slot after
 * every step.  Seeded: a failure repeats.
 */
Test(slots, randomized_against_shadow)
{
	enum { LIMIT = 4096, STEPS = 4000 };
	static bool shadow[LIMIT];
	struct upg_slots s;
	uint32_t step, i, slot, got, want, used = 0;
	unsigned seed = 12345;

	cr_assert_eq(upg_slots_init(&s, 500, LIMIT), 0);
	for (step = 0; step < STEPS; step++) {
		unsigned op = (unsigned)rand_r(&seed) % 100;

		if (op < 55) {
			want = 1 + (unsigned)rand_r(&seed) % 40;
			slot = upg_slots_alloc(&s, want, &got);
			if (slot == UPG_NO_SLOT) {
				cr_assert_eq(used, s.capacity,
					     "step %u: NO_SLOT with %u of %u used",
					     step, used, s.capacity);
			} else {
				cr_assert(got >= 1 && got <= want);
				cr_assert(slot + got <= s.capacity);
				for (i = slot; i < slot + got; i++) {
					cr_assert_not(shadow[i],
						      "step %u: slot %u reused",
						      step, i);
					shadow[i] = true;
				}
				used += got;
			}
		} else if (op < 97) {
			if (used == 0)
				continue;
			/* A random used slot: the next one from a random point. */
			i = (unsigned)rand_r(&seed) % s.capacity;
			while (!shadow[i])
				i = (i + 1) % s.capacity;
			upg_slots_free(&s, i);
			shadow[i] = false;
			used--;
		} else if (s.capacity < LIMIT) {
			uint32_t cap = s.capacity + 1 +
				       (unsigned)rand_r(&seed) % 300;

			if (cap > LIMIT)
				cap = LIMIT;
			cr_assert_eq(upg_slots_grow(&s, cap), 0);
		}
		cr_assert(upg_slots_is_valid(&s), "step %u", step);
		cr_assert_eq(s.used, used, "step %u", step);
		for (i = 0; i < LIMIT; i++)
			cr_assert_eq(upg_slots_is_used(&s, i), shadow[i],
				     "step %u: slot %u", step, i);
	}
	upg_slots_destroy(&s);
}

Test(slots, double_free_aborts, .signal = SIGABRT)
{
	struct upg_slots s;
	uint32_t got, slot;

	cr_assert_eq(upg_slots_init(&s, 64, 64), 0);
	slot = upg_slots_alloc(&s, 1, &got);
	upg_slots_free(&s, slot);
	upg_slots_free(&s, slot);
}

Test(slots, free_out_of_range_aborts, .signal = SIGABRT)
{
	struct upg_slots s;

	cr_assert_eq(upg_slots_init(&s, 64, 64), 0);
	upg_slots_free(&s, 64);
}
