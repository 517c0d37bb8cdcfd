/* SPDX-License-Identifier: MIT */
/*
 * test_swapfile.c - the swap store's file: invisible O_TMPFILE, growth in
 * chunks, the size limit, page I/O at slot offsets, bad directories, and
 * existing files given by path.
 *
 * Each test works in a fresh directory under $TMPDIR (or /var/tmp) and
 * removes it.
 */
#include "internal.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define PAGE 4096UL
#define MIB (1ULL << 20)

static char dir[PATH_MAX];

static void make_dir(void)
{
	const char *tmp = getenv("TMPDIR");

	snprintf(dir, sizeof(dir), "%s/upager-test-swapfile-XXXXXX",
		 tmp && tmp[0] ? tmp : "/var/tmp");
	cr_assert_not_null(mkdtemp(dir), "mkdtemp %s: %s", dir,
			   strerror(errno));
}

static void remove_dir(void)
{
	char path[PATH_MAX + 16];

	snprintf(path, sizeof(path), "%s/file", dir);
	unlink(path);
	chmod(dir, 0700);
	rmdir(dir);
}

TestSuite(swapfile, .init = make_dir, .fini = remove_dir);

static int count_entries(const char *path)
{
	struct dirent *e;
	DIR *d = opendir(path);
	int n = 0;

	cr_assert_not_null(d, "opendir %s: %s", path, strerror(errno));
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			n++;
	closedir(d);
	return n;
}

static void open_tmp(struct upg_swapfile *sf, uint64_t max, size_t page)
{
	char why[256] = "";
	int ret;

	ret = upg_swapfile_open(sf, NULL, dir, max, page, why, sizeof(why));
	cr_assert_eq(ret, 0, "open in %s: %d %s", dir, ret, why);
	cr_assert_geq(sf->fd, 0);
}

Test(swapfile, tmpfile_is_invisible)
{
	struct upg_swapfile sf;
	char link[64], target[PATH_MAX];
	struct stat st;
	ssize_t n;

	cr_assert_eq(count_entries(dir), 0);
	open_tmp(&sf, 0, PAGE);
	cr_assert_eq(upg_swapfile_reserve(&sf, PAGE), 0);
	cr_expect_eq(count_entries(dir), 0, "the swap file has a name");

	cr_assert_eq(fstat(sf.fd, &st), 0);
	cr_expect_eq(st.st_nlink, 0, "the swap file has %lu links",
		     (unsigned long)st.st_nlink);
	cr_expect_eq(st.st_mode & 07777, 0600, "mode %o", st.st_mode & 07777);
	cr_expect(S_ISREG(st.st_mode));

	snprintf(link, sizeof(link), "/proc/self/fd/%d", sf.fd);
	n = readlink(link, target, sizeof(target) - 1);
	cr_assert_gt(n, 0, "readlink %s: %s", link, strerror(errno));
	target[n] = '\0';
	cr_expect(strstr(target, "(deleted)") != NULL, "fd link: %s", target);
	cr_expect_eq(strncmp(target, dir, strlen(dir)), 0, "fd link: %s",
		     target);

	/* Closed on exec: a child program does not inherit the swap. */
	cr_expect(fcntl(sf.fd, F_GETFD) & FD_CLOEXEC);
	upg_swapfile_close(&sf);
	cr_expect_eq(sf.fd, -1);
	upg_swapfile_close(&sf);        /* idempotent */
}

Test(swapfile, direct_flag_matches_descriptor)
{
	struct upg_swapfile sf;
	int fl;

	open_tmp(&sf, 0, PAGE);
	fl = fcntl(sf.fd, F_GETFL);
	cr_assert_geq(fl, 0);
	cr_expect_eq(!!(fl & O_DIRECT), sf.direct);
	cr_expect_eq(fl & O_ACCMODE, O_RDWR);
	upg_swapfile_close(&sf);
}

Test(swapfile, grow_step)
{
	struct upg_swapfile sf;

	open_tmp(&sf, 0, PAGE);
	cr_expect_eq(sf.grow_step, 64 * MIB);
	upg_swapfile_close(&sf);
	open_tmp(&sf, 0, 2 * MIB);
	cr_expect_eq(sf.grow_step, 64 * MIB);
	upg_swapfile_close(&sf);
	/* 16 pages when they are more than 64 MiB. */
	open_tmp(&sf, 0, 8 * MIB);
	cr_expect_eq(sf.grow_step, 128 * MIB);
	upg_swapfile_close(&sf);
}

Test(swapfile, reserve_grows_in_steps)
{
	struct upg_swapfile sf;
	struct stat st;

	open_tmp(&sf, 0, PAGE);
	cr_expect_eq(sf.size, 0);
	cr_expect_not(sf.is_device);
	cr_expect_eq(sf.max_size, 0);

	cr_assert_eq(upg_swapfile_reserve(&sf, 1), 0);
	cr_expect_eq(sf.size, sf.grow_step);
	cr_assert_eq(fstat(sf.fd, &st), 0);
	cr_expect_eq((uint64_t)st.st_size, sf.size);
	/* Allocated, not sparse: a later write cannot fail for space. */
	cr_expect_geq((uint64_t)st.st_blocks * 512, sf.size);

	cr_assert_eq(upg_swapfile_reserve(&sf, sf.grow_step + 1), 0);
	cr_expect_eq(sf.size, 2 * sf.grow_step);
	cr_assert_eq(upg_swapfile_reserve(&sf, PAGE), 0);
	cr_expect_eq(sf.size, 2 * sf.grow_step, "reserve shrank or grew");
	cr_assert_eq(fstat(sf.fd, &st), 0);
	cr_expect_eq((uint64_t)st.st_size, 2 * sf.grow_step);
	upg_swapfile_close(&sf);
}

Test(swapfile, max_size_is_enforced)
{
	struct upg_swapfile sf;
	struct stat st;

	/* Not a multiple of the page: rounded down. */
	open_tmp(&sf, 70 * MIB + 100, PAGE);
	cr_expect_eq(sf.max_size, 70 * MIB);
	cr_assert_eq(upg_swapfile_reserve(&sf, 1), 0);
	cr_expect_eq(sf.size, 64 * MIB);
	/* The last chunk stops at the limit. */
	cr_assert_eq(upg_swapfile_reserve(&sf, 65 * MIB), 0);
	cr_expect_eq(sf.size, 70 * MIB);
	cr_expect_eq(upg_swapfile_reserve(&sf, 70 * MIB + 1), -ENOSPC);
	cr_expect_eq(sf.size, 70 * MIB);
	cr_expect_eq(upg_swapfile_reserve(&sf, 1ULL << 40), -ENOSPC);
	cr_assert_eq(fstat(sf.fd, &st), 0);
	cr_expect_eq((uint64_t)st.st_size, 70 * MIB);
	upg_swapfile_close(&sf);
}

Test(swapfile, max_below_one_page_is_refused)
{
	struct upg_swapfile sf;
	char why[256] = "";

	cr_expect_eq(upg_swapfile_open(&sf, NULL, dir, PAGE - 1, PAGE, why,
				       sizeof(why)),
		     -EINVAL);
	cr_expect(strstr(why, "UPAGER_SWAP_MAX") != NULL, "%s", why);
	cr_expect_eq(sf.fd, -1);
}

/* Fill @buf with a pattern that differs per slot and per byte. */
static void pattern(unsigned char *buf, size_t len, uint32_t slot)
{
	size_t i;

	for (i = 0; i < len; i++)
		buf[i] = (unsigned char)(slot * 31 + i * 7 + (i >> 8));
}

static void *page_buf(size_t len)
{
	void *p = NULL;

	/* O_DIRECT wants buffers aligned to the logical block: use a page. */
	cr_assert_eq(posix_memalign(&p, PAGE, len), 0);
	return p;
}

Test(swapfile, page_io_round_trips)
{
	static const uint32_t slots[] = { 0, 1, 5, 16383 };
	struct upg_swapfile sf;
	unsigned char *out = page_buf(PAGE), *in = page_buf(PAGE);
	size_t i;

	open_tmp(&sf, 0, PAGE);
	cr_assert_eq(upg_swapfile_reserve(&sf, 16384 * PAGE), 0);
	for (i = 0; i < ARRAY_SIZE(slots); i++) {
		pattern(out, PAGE, slots[i]);
		cr_assert_eq(pwrite(sf.fd, out, PAGE,
				    (off_t)slots[i] * (off_t)PAGE),
			     (ssize_t)PAGE, "write slot %u: %s", slots[i],
			     strerror(errno));
	}
	for (i = 0; i < ARRAY_SIZE(slots); i++) {
		memset(in, 0, PAGE);
		cr_assert_eq(pread(sf.fd, in, PAGE,
				   (off_t)slots[i] * (off_t)PAGE),
			     (ssize_t)PAGE, "read slot %u: %s", slots[i],
			     strerror(errno));
		pattern(out, PAGE, slots[i]);
		cr_expect_eq(memcmp(in, out, PAGE), 0, "slot %u differs",
			     slots[i]);
	}
	upg_swapfile_close(&sf);
	free(out);
	free(in);
}

Test(swapfile, discard_punches_a_hole)
{
	struct upg_swapfile sf;
	unsigned char *buf = page_buf(4 * PAGE), *zero = page_buf(PAGE);
	struct stat st;

	open_tmp(&sf, 0, PAGE);
	cr_assert_eq(upg_swapfile_reserve(&sf, 4 * PAGE), 0);
	pattern(buf, 4 * PAGE, 9);
	cr_assert_eq(pwrite(sf.fd, buf, 4 * PAGE, 0), (ssize_t)(4 * PAGE));

	upg_swapfile_discard(&sf, PAGE, PAGE);
	cr_assert_eq(pread(sf.fd, buf, 4 * PAGE, 0), (ssize_t)(4 * PAGE));
	memset(zero, 0, PAGE);
	cr_expect_eq(memcmp(buf + PAGE, zero, PAGE), 0,
		     "discarded page still holds data");
	/* Its neighbours are untouched, the size is kept. */
	pattern(zero, PAGE, 0);
	cr_expect_neq(memcmp(buf, zero, PAGE), 0);
	cr_expect_neq(buf[2 * PAGE], 0);
	cr_assert_eq(fstat(sf.fd, &st), 0);
	cr_expect_eq((uint64_t)st.st_size, sf.size);
	upg_swapfile_close(&sf);
	free(buf);
	free(zero);
}

/* ---------------------------------------------------------- bad places -- */

static void expect_open_fails(const char *path, const char *in_dir, int err,
			      const char *name, const char *var)
{
	struct upg_swapfile sf;
	char why[512] = "";
	int ret;

	ret = upg_swapfile_open(&sf, path, in_dir, 0, PAGE, why, sizeof(why));
	cr_expect_eq(ret, err, "open %s: %d (%s), expected %d",
		     path ? path : in_dir, ret, strerror(-ret), err);
	cr_expect(strstr(why, name) != NULL, "message lacks \"%s\": %s", name,
		  why);
	cr_expect(strstr(why, var) != NULL, "message lacks %s: %s", var, why);
	cr_expect_eq(sf.fd, -1);
}

Test(swapfile, missing_dir)
{
	char missing[PATH_MAX + 16];

	snprintf(missing, sizeof(missing), "%s/no-such-dir", dir);
	expect_open_fails(NULL, missing, -ENOENT, missing, "UPAGER_SWAP_DIR");
}

Test(swapfile, dir_is_a_file)
{
	char file[PATH_MAX + 16];
	int fd;

	snprintf(file, sizeof(file), "%s/file", dir);
	fd = open(file, O_CREAT | O_WRONLY, 0600);
	cr_assert_geq(fd, 0);
	close(fd);
	expect_open_fails(NULL, file, -ENOTDIR, file, "UPAGER_SWAP_DIR");
}

/*
 * root may write anywhere, so the open runs in a child that has become
 * nobody (the parent stays root to clean up).  The child sends back what
 * upg_swapfile_open() said.
 */
Test(swapfile, dir_not_writable)
{
	struct { int ret; char why[512]; } res = { 0, "" };
	struct upg_swapfile sf;
	int pfd[2], status;
	pid_t pid;

	cr_assert_eq(chmod(dir, 0555), 0, "chmod %s: %s", dir, strerror(errno));
	cr_assert_eq(pipe(pfd), 0);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		if (geteuid() == 0 && (setgid(65534) < 0 || setuid(65534) < 0))
			_exit(2);
		res.ret = upg_swapfile_open(&sf, NULL, dir, 0, PAGE, res.why,
					    sizeof(res.why));
		_exit(write(pfd[1], &res, sizeof(res)) == sizeof(res) ? 0 : 3);
	}
	close(pfd[1]);
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	if (WIFEXITED(status) && WEXITSTATUS(status) == 2) {
		remove_dir();   /* a skipped test does not run .fini */
		cr_skip_test("running as root and cannot become nobody (65534)");
	}
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		  "child status %#x", status);
	cr_assert_eq(read(pfd[0], &res, sizeof(res)), (ssize_t)sizeof(res));
	close(pfd[0]);
	cr_expect_eq(res.ret, -EACCES, "open: %d (%s)", res.ret,
		     strerror(-res.ret));
	cr_expect(strstr(res.why, dir) != NULL, "message lacks %s: %s", dir,
		  res.why);
	cr_expect(strstr(res.why, "not writable") != NULL, "%s", res.why);
	cr_expect(strstr(res.why, "UPAGER_SWAP_DIR") != NULL, "%s", res.why);
}

Test(swapfile, dir_without_tmpfile_support)
{
	/* procfs has no O_TMPFILE. */
	expect_open_fails(NULL, "/proc", -EOPNOTSUPP, "/proc",
			  "UPAGER_SWAP_DIR");
}

Test(swapfile, no_dir)
{
	expect_open_fails(NULL, NULL, -EINVAL, "directory", "UPAGER_SWAP_DIR");
	expect_open_fails(NULL, "", -EINVAL, "directory", "UPAGER_SWAP_DIR");
}

/* ------------------------------------------------------- existing path -- */

Test(swapfile, existing_file)
{
	struct upg_swapfile sf;
	char file[PATH_MAX + 16], why[256] = "";
	unsigned char *out = page_buf(PAGE), *in = page_buf(PAGE);
	struct stat st;
	int fd;

	snprintf(file, sizeof(file), "%s/file", dir);
	fd = open(file, O_CREAT | O_RDWR, 0600);
	cr_assert_geq(fd, 0);
	/* Not a whole number of pages: the tail is not used. */
	cr_assert_eq(ftruncate(fd, (off_t)(MIB + 100)), 0);
	close(fd);

	cr_assert_eq(upg_swapfile_open(&sf, file, "/nonexistent", 0, PAGE, why,
				       sizeof(why)),
		     0, "%s", why);
	cr_expect_not(sf.is_device);
	cr_expect_eq(sf.size, MIB);
	cr_expect_eq(sf.max_size, 0);
	pattern(out, PAGE, 3);
	cr_assert_eq(pwrite(sf.fd, out, PAGE, 3 * PAGE), (ssize_t)PAGE);
	cr_assert_eq(pread(sf.fd, in, PAGE, 3 * PAGE), (ssize_t)PAGE);
	cr_expect_eq(memcmp(in, out, PAGE), 0);

	/* A file may grow. */
	cr_assert_eq(upg_swapfile_reserve(&sf, 2 * MIB), 0);
	cr_expect_geq(sf.size, 2 * MIB);
	cr_assert_eq(fstat(sf.fd, &st), 0);
	cr_expect_geq((uint64_t)st.st_size, 2 * MIB);
	upg_swapfile_close(&sf);

	/* The file is still there: it is the user's. */
	cr_expect_eq(stat(file, &st), 0);
	free(out);
	free(in);
}

Test(swapfile, existing_file_with_limit)
{
	struct upg_swapfile sf;
	char file[PATH_MAX + 16], why[256] = "";
	struct stat st;
	int fd;

	snprintf(file, sizeof(file), "%s/file", dir);
	fd = open(file, O_CREAT | O_RDWR, 0600);
	cr_assert_geq(fd, 0);
	cr_assert_eq(ftruncate(fd, (off_t)(4 * MIB)), 0);
	close(fd);

	cr_assert_eq(upg_swapfile_open(&sf, file, NULL, MIB, PAGE, why,
				       sizeof(why)),
		     0, "%s", why);
	cr_expect_eq(sf.size, MIB);
	cr_expect_eq(sf.max_size, MIB);
	cr_expect_eq(upg_swapfile_reserve(&sf, MIB + 1), -ENOSPC);
	upg_swapfile_close(&sf);
	/* The user's file is neither truncated nor extended. */
	cr_assert_eq(stat(file, &st), 0);
	cr_expect_eq((uint64_t)st.st_size, 4 * MIB);
}

Test(swapfile, existing_path_errors)
{
	char missing[PATH_MAX + 16];

	snprintf(missing, sizeof(missing), "%s/no-such-file", dir);
	expect_open_fails(missing, dir, -ENOENT, missing, "UPAGER_SWAP");
	/* A character device is neither a file nor a block device. */
	expect_open_fails("/dev/null", dir, -EINVAL, "/dev/null",
			  "UPAGER_SWAP");
}

/*
 * A block device is only opened when one is named for the test: nobody
 * wants a test suite to pick a disk.  This test does not write to it;
 * tests/test-pager's swap::block_device_pages does.
 */
Test(swapfile, block_device)
{
	const char *dev = getenv("UPAGER_TEST_BLOCK_DEVICE");
	struct upg_swapfile sf;
	char why[256] = "";
	struct stat st;

	if (!dev || !dev[0]) {
		remove_dir();   /* a skipped test does not run .fini */
		cr_skip_test("set UPAGER_TEST_BLOCK_DEVICE to a spare block device to test it");
	}
	cr_assert_eq(stat(dev, &st), 0, "%s: %s", dev, strerror(errno));
	cr_assert(S_ISBLK(st.st_mode), "%s is not a block device", dev);
	cr_assert_eq(upg_swapfile_open(&sf, dev, NULL, 0, PAGE, why,
				       sizeof(why)),
		     0, "%s", why);
	cr_expect(sf.is_device);
	cr_expect_gt(sf.size, 0);
	cr_expect_eq(sf.size % PAGE, 0);
	cr_expect_eq(sf.max_size, sf.size);
	cr_expect_eq(upg_swapfile_reserve(&sf, sf.size), 0);
	cr_expect_eq(upg_swapfile_reserve(&sf, sf.size + 1), -ENOSPC);
	upg_swapfile_close(&sf);
}
