/* SPDX-License-Identifier: MIT */
/*
 * mtheap.c - a multi-threaded program that works its heap hard, for the
 * tests that run real programs under `upager run' and compare the output
 * with a plain run.  It knows nothing of upager.
 *
 *   mtheap work THREADS MIB   each thread keeps ~MIB MiB live in a hash
 *                             table of blocks (16 B .. 256 KiB), grows and
 *                             frees them, hands some to the next thread
 *                             (which checks and frees them); checksums
 *   mtheap fork MIB           fill MIB MiB, fork without exec: the child
 *                             checks every byte, then the parent does
 *   mtheap exit THREADS MIB   like work, but exit() while threads still
 *                             allocate
 *
 * Every block's bytes are a function of its seed, checked before it is
 * freed or grown and at the end, so any lost or corrupted page shows up.
 * The output depends only on the arguments, never on scheduling.
 */
#define _GNU_SOURCE
#include <inttypes.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

struct item {
	uint64_t seed;
	size_t len;
	unsigned char *data;
	struct item *next;
};

struct queue {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct item *head;
	uint64_t received;
};

struct worker {
	unsigned id;
	size_t live_max;
	pthread_t thread;
	struct queue q;         /* items sent to this worker */
	uint64_t expect;        /* items it will receive */
	uint64_t sent;
	uint64_t checksum;
	uint64_t items, bytes;
};

static unsigned nworkers;
static struct worker *workers;
static volatile int stop_spinning;

static uint64_t rnd(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static unsigned char byte_at(uint64_t seed, size_t i)
{
	return (unsigned char)((seed >> (i % 7 * 8)) + i * 37 + (i >> 12));
}

static void fill(struct item *it, size_t from)
{
	size_t i;

	for (i = from; i < it->len; i++)
		it->data[i] = byte_at(it->seed, i);
}

static uint64_t check(const struct item *it)
{
	uint64_t h = it->seed;
	size_t i;

	for (i = 0; i < it->len; i++) {
		if (it->data[i] != byte_at(it->seed, i)) {
			fprintf(stderr, "mtheap: corrupt block %p len %zu at %zu\n",
				(void *)it->data, it->len, i);
			abort();
		}
	}
	for (i = 0; i < it->len; i += 4096)
		h = h * 1000003 + it->data[i];
	return h;
}

static size_t pick_len(uint64_t *s)
{
	uint64_t r = rnd(s) % 100;

	if (r < 60)
		return 16 + rnd(s) % 200;
	if (r < 90)
		return 200 + rnd(s) % 4000;
	if (r < 98)
		return 4096 + rnd(s) % 60000;
	return 65536 + rnd(s) % 200000;
}

static struct item *item_new(uint64_t *s)
{
	struct item *it = malloc(sizeof(*it));

	if (!it)
		abort();
	it->seed = rnd(s);
	it->len = pick_len(s);
	it->data = rnd(s) % 4 ? malloc(it->len) : calloc(1, it->len);
	if (!it->data)
		abort();
	fill(it, 0);
	it->next = NULL;
	return it;
}

static void item_free(struct item *it)
{
	free(it->data);
	free(it);
}

static void send_item(struct worker *to, struct item *it)
{
	pthread_mutex_lock(&to->q.lock);
	it->next = to->q.head;
	to->q.head = it;
	pthread_cond_signal(&to->q.cond);
	pthread_mutex_unlock(&to->q.lock);
}

/* Check and free what other threads sent; wait until @want have come. */
static uint64_t drain(struct worker *w, uint64_t want)
{
	uint64_t sum = 0;
	struct item *list;

	pthread_mutex_lock(&w->q.lock);
	for (;;) {
		list = w->q.head;
		w->q.head = NULL;
		while (list) {
			struct item *next = list->next;

			sum += check(list);
			item_free(list);
			w->q.received++;
			list = next;
		}
		if (w->q.received >= want)
			break;
		pthread_cond_wait(&w->q.cond, &w->q.lock);
	}
	pthread_mutex_unlock(&w->q.lock);
	return sum;
}

static void *work(void *arg)
{
	struct worker *w = arg;
	struct worker *next = &workers[(w->id + 1) % nworkers];
	uint64_t s = 0x9e3779b97f4a7c15ULL * (w->id + 1);
	size_t nb = 1 << 14, live = 0, i;
	struct item **table = calloc(nb, sizeof(*table));
	uint64_t round, recv_sum = 0;

	if (!table)
		abort();
	for (round = 0; round < 6; round++) {
		/* grow to the live target */
		while (live < w->live_max) {
			struct item *it = item_new(&s);
			size_t b = it->seed % nb;

			it->next = table[b];
			table[b] = it;
			live += it->len;
		}
		/* churn: free a third, grow a tenth, send some away */
		for (i = 0; i < nb; i++) {
			struct item **pp = &table[i];

			while (*pp) {
				struct item *it = *pp;
				uint64_t r = rnd(&s) % 30;

				if (r < 10) {
					*pp = it->next;
					live -= it->len;
					w->checksum += check(it);
					if (r == 0 && w->sent < 2000) {
						send_item(next, it);
						w->sent++;
					} else {
						item_free(it);
					}
					continue;
				}
				if (r < 13) {
					size_t old = it->len;

					check(it);
					it->len = old + old / 2 + rnd(&s) % 5000;
					it->data = realloc(it->data, it->len);
					if (!it->data)
						abort();
					fill(it, old);
					live += it->len - old;
				}
				pp = &it->next;
			}
		}
		recv_sum += drain(w, 0);
	}
	/* hand-off totals are fixed: every worker sends the same count */
	for (i = 0; i < nb; i++) {
		while (table[i]) {
			struct item *it = table[i];

			table[i] = it->next;
			w->checksum += check(it);
			w->items++;
			w->bytes += it->len;
			item_free(it);
		}
	}
	free(table);
	w->checksum += recv_sum;
	return NULL;
}

static void start(unsigned n, size_t mib)
{
	unsigned i;

	nworkers = n;
	workers = calloc(n, sizeof(*workers));
	for (i = 0; i < n; i++) {
		workers[i].id = i;
		workers[i].live_max = (mib << 20) / n;
		pthread_mutex_init(&workers[i].q.lock, NULL);
		pthread_cond_init(&workers[i].q.cond, NULL);
	}
	for (i = 0; i < n; i++)
		pthread_create(&workers[i].thread, NULL, work, &workers[i]);
}

static int cmd_work(unsigned n, size_t mib)
{
	uint64_t total = 0, sent = 0;
	unsigned i;

	start(n, mib);
	for (i = 0; i < n; i++)
		pthread_join(workers[i].thread, NULL);
	/* what is still queued: received after the senders finished */
	for (i = 0; i < n; i++) {
		workers[i].checksum += drain(&workers[i],
					     workers[(i + n - 1) % n].sent);
		sent += workers[i].sent;
	}
	for (i = 0; i < n; i++) {
		printf("worker %u: %" PRIu64 " items, %" PRIu64 " bytes left, sent %" PRIu64
		       ", checksum %016" PRIx64 "\n", i, workers[i].items,
		       workers[i].bytes, workers[i].sent, workers[i].checksum);
		total += workers[i].checksum;
	}
	printf("total: %u workers, %" PRIu64 " handed over, checksum %016" PRIx64 "\n",
	       n, sent, total);
	return 0;
}

static int cmd_fork(size_t mib)
{
	size_t n = (mib << 20) / 65536, i;
	struct item **its = calloc(n, sizeof(*its));
	uint64_t s = 42, sum = 0, child_sum;
	int status;
	pid_t pid;
	int fd[2];

	for (i = 0; i < n; i++) {
		its[i] = malloc(sizeof(**its));
		its[i]->seed = rnd(&s);
		its[i]->len = 65536;
		its[i]->data = malloc(65536);
		fill(its[i], 0);
	}
	for (i = 0; i < n; i++)
		sum += check(its[i]);
	fflush(stdout);
	if (pipe(fd))
		abort();
	pid = fork();
	if (pid == 0) {
		/* the child reads everything, including what is swapped out,
		 * then writes to half of it: copy-on-write must hold */
		uint64_t cs = 0;

		for (i = 0; i < n; i++)
			cs += check(its[i]);
		for (i = 0; i < n; i += 2) {
			its[i]->seed ^= 1;
			fill(its[i], 0);
		}
		for (i = 0; i < n; i++)
			check(its[i]);
		if (write(fd[1], &cs, sizeof(cs)) != sizeof(cs))
			_exit(3);
		_exit(0);
	}
	close(fd[1]); /* so that a child that dies unexpectedly ends the read */
	if (read(fd[0], &child_sum, sizeof(child_sum)) != sizeof(child_sum))
		child_sum = 0;
	waitpid(pid, &status, 0);
	for (i = 0; i < n; i++) {
		if (check(its[i]) == 0)
			abort();
		item_free(its[i]);
	}
	free(its);
	printf("fork: %zu blocks, parent %016" PRIx64 ", child %016" PRIx64
	       ", child status %d\n", n, sum, child_sum,
	       WIFEXITED(status) ? WEXITSTATUS(status) : -1);
	return sum == child_sum && WIFEXITED(status) && !WEXITSTATUS(status) ? 0 : 1;
}

static void *spin(void *arg)
{
	uint64_t s = (uintptr_t)arg + 1;

	(void)arg;
	while (!stop_spinning) {
		struct item *it = item_new(&s);

		check(it);
		item_free(it);
	}
	return NULL;
}

static int cmd_exit(unsigned n, size_t mib)
{
	pthread_t t;
	unsigned i;

	for (i = 0; i < n; i++)
		pthread_create(&t, NULL, spin, (void *)(uintptr_t)i);
	cmd_work(n, mib);
	fflush(stdout);
	exit(0); /* the spinners are still allocating */
}

int main(int argc, char **argv)
{
	if (argc == 4 && !strcmp(argv[1], "work"))
		return cmd_work((unsigned)atoi(argv[2]), (size_t)atol(argv[3]));
	if (argc == 3 && !strcmp(argv[1], "fork"))
		return cmd_fork((size_t)atol(argv[2]));
	if (argc == 4 && !strcmp(argv[1], "exit"))
		return cmd_exit((unsigned)atoi(argv[2]), (size_t)atol(argv[3]));
	fprintf(stderr, "usage: mtheap work THREADS MIB | fork MIB | exit THREADS MIB\n");
	return 2;
}
