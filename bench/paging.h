/* SPDX-License-Identifier: MIT */
/*
 * paging.h - the workloads of bench/paging and the memory systems they run
 * on, shared by the benchmark (bench/paging.c) and by the correctness suite
 * (tests/test_workloads.c), which runs small versions of the same code.
 *
 * A workload asks its system for memory in two shapes only: one large
 * zero-filled data area (pg_sys_map) and, for the allocation churn, many
 * large objects (pg_sys_obj_alloc/free).  Everything that differs between
 * upager, plain RAM (also the kernel-swap column: the same code in a memory
 * cgroup) and a MAP_SHARED file lives behind those calls, so a workload is
 * one piece of code whatever pages it.
 */
#ifndef UPG_BENCH_PAGING_H
#define UPG_BENCH_PAGING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct upg_runtime;

/* ------------------------------------------------------------------------ */
/* Systems                                                                   */
/* ------------------------------------------------------------------------ */

enum pg_system {
	PG_SYS_UPAGER,   /* upg_region_reserve / upg_malloc, budget B */
	PG_SYS_RAM,      /* anonymous mmap / glibc malloc (kernel swap in a cgroup) */
	PG_SYS_MMAPFILE, /* MAP_SHARED mapping of an unnamed file: the page cache */
};

struct pg_sys {
	enum pg_system kind;
	size_t budget;            /* upager only; the cgroup enforces the others */
	struct upg_runtime *rt;   /* upager */
	bool heap_ready;          /* upager: upg_alloc_init() done */
	int fd;                   /* mmapfile: the unnamed data file, else -1 */
	off_t file_end;           /* mmapfile: next free offset (never reused) */
	const char *io_source;    /* where swap_*_bytes come from, for the report */
	bool file_advice;         /* mmapfile: pass the workload's access hint */
};

/* Backing-store activity of the process so far (see pg_sys_counters). */
struct pg_counters {
	uint64_t major_faults;
	uint64_t minor_faults;    /* kernel minor faults; upager: zero + soft + wp */
	uint64_t read_bytes;      /* read from swap (or the file) */
	uint64_t write_bytes;     /* written to swap (or dirtied in the file) */
};

const char *pg_system_name(enum pg_system kind);
/* 0 and *@kind, or -EINVAL for an unknown name. */
int pg_system_parse(const char *name, enum pg_system *kind);

/*
 * Start system @kind.  upager: a runtime with options from UPAGER_* and
 * budget @budget; returns -ENOTSUP (with the reason in @err) when the
 * runtime would be unpaged.  mmapfile: an unnamed file in @dir.  Other
 * errors are -errno, described in @err.
 */
int pg_sys_open(struct pg_sys *s, enum pg_system kind, size_t budget,
		const char *dir, char *err, size_t errlen);
void pg_sys_close(struct pg_sys *s);

/* Memory handed out by a system: where, how long, and at what file offset. */
struct pg_area {
	void *p;
	size_t len;
	off_t off;                /* mmapfile: offset in the data file */
};

/* A zero-filled, page-aligned area of @len bytes in @a: 0 or -ENOMEM. */
int pg_sys_map(struct pg_sys *s, size_t len, struct pg_area *a);
void pg_sys_unmap(struct pg_sys *s, struct pg_area *a);

/* A large heap object of @len bytes (contents undefined): 0 or -ENOMEM. */
int pg_sys_obj_alloc(struct pg_sys *s, size_t len, struct pg_area *a);
void pg_sys_obj_free(struct pg_sys *s, struct pg_area *a);

/*
 * The workload will access @a at random.  mmapfile with file_advice: tell
 * the kernel (MADV_RANDOM), as a careful program would, because the
 * default read-around of every fault thrashes in a small memory cgroup.
 * Anonymous memory and upager get no hint: their swap-in has no such mode.
 */
void pg_sys_hint_random(struct pg_sys *s, struct pg_area *a);

void pg_sys_counters(struct pg_sys *s, struct pg_counters *c);

/* ------------------------------------------------------------------------ */
/* Workloads                                                                 */
/* ------------------------------------------------------------------------ */

struct pg_params {
	size_t footprint;  /* bytes of data (alloc-churn: twice the live bytes) */
	unsigned threads;  /* mt-uniform */
	uint64_t seed;
	double work;       /* scales the number of accesses (1.0 = the default) */
};

struct pg_outcome {
	double fill_seconds;   /* creating the data */
	double run_seconds;    /* the access pattern itself */
	double verify_seconds; /* final check, untimed in "seconds" */
	struct pg_counters delta; /* during fill + run */
	uint64_t accesses;     /* workload-defined unit (words, objects) */
	uint64_t verified_bytes;
	bool ok;
	char error[256];       /* the first mismatch, when !ok */
};

/* One run of a workload: its system, parameters, clock and outcome. */
struct pg_ctx;

struct pg_workload {
	const char *name;
	const char *what;      /* one line for --help */
	/* Fill, mark, run, mark, verify; 0 or -errno (mismatches go in ctx). */
	int (*run)(struct pg_ctx *ctx);
};

extern const struct pg_workload pg_workloads[];
extern const size_t pg_nworkloads;

const struct pg_workload *pg_workload_find(const char *name);

/*
 * Run @w on @s.  Returns 0 when the data verified (out->ok), 1 on a data
 * mismatch (out->error says where), -errno when memory could not be had.
 */
int pg_workload_run(const struct pg_workload *w, struct pg_sys *s,
		    const struct pg_params *p, struct pg_outcome *out);

#endif /* UPG_BENCH_PAGING_H */
