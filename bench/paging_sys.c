/* SPDX-License-Identifier: MIT */
/*
 * paging_sys.c - the three memory systems bench/paging compares.
 *
 *   upager    the data area is a region of a runtime with budget B
 *             (upg_region_reserve); heap objects come from upg_malloc on
 *             that runtime, whose free() discards pages instead of keeping
 *             them (garbage is never written to swap).
 *   ram       an anonymous private mapping and glibc malloc, untuned.  Run
 *             alone it is the floor; run inside a memory cgroup limited to
 *             B (bench/compare does that) it is the kernel-swap column.
 *   mmapfile  the data lives in an unnamed file (O_TMPFILE) mapped
 *             MAP_SHARED, so the kernel pages it through the page cache:
 *             clean pages are dropped, dirty ones written back to the file.
 *             A heap object is its own MAP_SHARED range at a fresh offset
 *             of the file, and freeing it punches a hole, so that, as with
 *             upager, garbage is never written back: the fair best case of
 *             a file-backed heap.
 *
 * Counters.  Each system says what paging cost it, as the same four
 * numbers.  upager counts its own faults and swap bytes (upg_stats).  For
 * the kernel, major and minor faults come from getrusage() (a swap-in or a
 * file read that had to wait is a major fault), swap bytes from the
 * system-wide pswpin/pswpout of /proc/vmstat (bench/compare runs one
 * program at a time and checks that they moved), and the file's I/O from
 * /proc/self/io: read_bytes is counted when a read is submitted,
 * write_bytes when a page is dirtied (it will have to be written back),
 * both for this process only.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "paging.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include "upager.h"

static const char *const system_names[] = {
	[PG_SYS_UPAGER] = "upager",
	[PG_SYS_RAM] = "ram",
	[PG_SYS_MMAPFILE] = "mmapfile",
};

const char *pg_system_name(enum pg_system kind)
{
	return system_names[kind];
}

int pg_system_parse(const char *name, enum pg_system *kind)
{
	for (size_t i = 0; i < sizeof(system_names) / sizeof(*system_names); i++) {
		if (strcmp(name, system_names[i]) == 0) {
			*kind = (enum pg_system)i;
			return 0;
		}
	}
	return -EINVAL;
}

static int open_upager(struct pg_sys *s, size_t budget, char *err,
		       size_t errlen)
{
	struct upg_options o;
	int ret;

	upg_options_init(&o);
	ret = upg_options_from_env(&o, err, errlen);
	if (ret < 0)
		return ret;
	/* The command line's budget wins over UPAGER_BUDGET. */
	o.budget = budget;
	ret = upg_options_validate(&o, err, errlen);
	if (ret < 0)
		return ret;
	ret = upg_runtime_create(&o, &s->rt);
	if (ret < 0) {
		snprintf(err, errlen, "upg_runtime_create: %s", strerror(-ret));
		return ret;
	}
	if (!upg_runtime_is_paged(s->rt)) {
		/* An unpaged upager is plain RAM: a result would be a lie. */
		snprintf(err, errlen, "upager runs unpaged: %s",
			 upg_runtime_unpaged_reason(s->rt));
		upg_runtime_destroy(s->rt);
		s->rt = NULL;
		return -ENOTSUP;
	}
	s->io_source = "upager";
	return 0;
}

static int open_file(struct pg_sys *s, const char *dir, char *err,
		     size_t errlen)
{
	char path[4096];
	int ret;

	s->fd = open(dir, O_TMPFILE | O_RDWR | O_EXCL, 0600);
	if (s->fd < 0 && (errno == EOPNOTSUPP || errno == EISDIR)) {
		/* Filesystems without O_TMPFILE: a named file, unlinked at once. */
		snprintf(path, sizeof(path), "%s/upager-paging-XXXXXX", dir);
		s->fd = mkstemp(path);
		if (s->fd >= 0)
			unlink(path);
	}
	if (s->fd < 0) {
		ret = -errno;
		snprintf(err, errlen, "cannot create the data file in %s: %s",
			 dir, strerror(errno));
		return ret;
	}
	s->io_source = "proc-self-io";
	return 0;
}

int pg_sys_open(struct pg_sys *s, enum pg_system kind, size_t budget,
		const char *dir, char *err, size_t errlen)
{
	memset(s, 0, sizeof(*s));
	s->kind = kind;
	s->budget = budget;
	s->fd = -1;
	s->io_source = "vmstat";
	err[0] = '\0';
	switch (kind) {
	case PG_SYS_UPAGER:
		return open_upager(s, budget, err, errlen);
	case PG_SYS_MMAPFILE:
		return open_file(s, dir ? dir : "/var/tmp", err, errlen);
	case PG_SYS_RAM:
		return 0;
	}
	return -EINVAL;
}

void pg_sys_close(struct pg_sys *s)
{
	/*
	 * The upager heap never lets go of its runtime (alloc_process.c):
	 * once upg_malloc used it, it must stay up until the process exits.
	 */
	if (s->rt && !s->heap_ready)
		upg_runtime_destroy(s->rt);
	s->rt = NULL;
	if (s->fd >= 0)
		close(s->fd);
	s->fd = -1;
}

static size_t page_round(size_t len)
{
	size_t pg = (size_t)sysconf(_SC_PAGESIZE);

	return (len + pg - 1) & ~(pg - 1);
}

int pg_sys_map(struct pg_sys *s, size_t len, struct pg_area *a)
{
	void *p = NULL;

	len = page_round(len);
	a->p = NULL;
	a->len = len;
	a->off = -1;
	switch (s->kind) {
	case PG_SYS_UPAGER:
		if (upg_region_reserve(s->rt, len, &p) < 0)
			return -ENOMEM;
		break;
	case PG_SYS_RAM:
		p = mmap(NULL, len, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		if (p == MAP_FAILED)
			return -ENOMEM;
		break;
	case PG_SYS_MMAPFILE:
		/* A fresh range of the file each time: holes keep it sparse. */
		if (ftruncate(s->fd, s->file_end + (off_t)len) < 0)
			return -ENOMEM;
		p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, s->fd,
			 s->file_end);
		if (p == MAP_FAILED)
			return -ENOMEM;
		a->off = s->file_end;
		s->file_end += (off_t)len;
		break;
	}
	a->p = p;
	return 0;
}

void pg_sys_unmap(struct pg_sys *s, struct pg_area *a)
{
	if (!a->p)
		return;
	switch (s->kind) {
	case PG_SYS_UPAGER:
		upg_region_release(s->rt, a->p);
		break;
	case PG_SYS_RAM:
		munmap(a->p, a->len);
		break;
	case PG_SYS_MMAPFILE:
		/* Punching drops the range's dirty page-cache pages unwritten. */
		munmap(a->p, a->len);
		fallocate(s->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			  a->off, (off_t)a->len);
		break;
	}
	a->p = NULL;
}

void pg_sys_hint_random(struct pg_sys *s, struct pg_area *a)
{
	if (s->kind == PG_SYS_MMAPFILE && s->file_advice && a->p)
		madvise(a->p, a->len, MADV_RANDOM);
}

int pg_sys_obj_alloc(struct pg_sys *s, size_t len, struct pg_area *a)
{
	a->len = len;
	a->off = -1;
	switch (s->kind) {
	case PG_SYS_UPAGER:
		if (!s->heap_ready) {
			if (upg_alloc_init(s->rt) < 0)
				return -ENOMEM;
			s->heap_ready = true;
		}
		a->p = upg_malloc(len);
		break;
	case PG_SYS_RAM:
		a->p = malloc(len);
		break;
	case PG_SYS_MMAPFILE:
		return pg_sys_map(s, len, a);
	}
	return a->p ? 0 : -ENOMEM;
}

void pg_sys_obj_free(struct pg_sys *s, struct pg_area *a)
{
	switch (s->kind) {
	case PG_SYS_UPAGER:
		upg_free(a->p);
		break;
	case PG_SYS_RAM:
		free(a->p);
		break;
	case PG_SYS_MMAPFILE:
		pg_sys_unmap(s, a);
		break;
	}
	a->p = NULL;
}

/* Value of the line "@key <number>" of @path (0 when absent). */
static uint64_t proc_value(const char *path, const char *key)
{
	char line[256];
	size_t klen = strlen(key);
	uint64_t v = 0;
	FILE *f = fopen(path, "r");

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f)) {
		if (strncmp(line, key, klen) == 0 &&
		    (line[klen] == ' ' || line[klen] == ':')) {
			v = strtoull(line + klen + 1, NULL, 10);
			break;
		}
	}
	fclose(f);
	return v;
}

void pg_sys_counters(struct pg_sys *s, struct pg_counters *c)
{
	struct upg_stats st;
	struct rusage ru;
	uint64_t pg = (uint64_t)sysconf(_SC_PAGESIZE);

	memset(c, 0, sizeof(*c));
	if (s->kind == PG_SYS_UPAGER) {
		if (upg_stats_get(s->rt, &st) < 0)
			return;
		c->major_faults = st.faults[UPG_FAULT_MAJOR];
		c->minor_faults = st.faults[UPG_FAULT_ZERO] +
				  st.faults[UPG_FAULT_SOFT] +
				  st.faults[UPG_FAULT_WP];
		c->read_bytes = st.bytes_read;
		c->write_bytes = st.bytes_written;
		return;
	}
	getrusage(RUSAGE_SELF, &ru);
	c->major_faults = (uint64_t)ru.ru_majflt;
	c->minor_faults = (uint64_t)ru.ru_minflt;
	if (s->kind == PG_SYS_MMAPFILE) {
		c->read_bytes = proc_value("/proc/self/io", "read_bytes");
		c->write_bytes = proc_value("/proc/self/io", "write_bytes");
	} else {
		c->read_bytes = proc_value("/proc/vmstat", "pswpin") * pg;
		c->write_bytes = proc_value("/proc/vmstat", "pswpout") * pg;
	}
}
