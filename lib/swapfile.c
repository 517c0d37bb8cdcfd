/* SPDX-License-Identifier: MIT */
/*
 * swapfile.c - the file or block device behind the swap store.
 *
 * By default the store is an O_TMPFILE: a file with no name, created mode
 * 0600 in the swap directory.  Nobody else can open it, nothing is left
 * behind when the process dies however it dies, and its blocks go back to
 * the filesystem with the last descriptor.
 *
 * O_DIRECT is tried first: swapped pages are cold by definition, and copying
 * them through the page cache would spend the very memory the budget is
 * saving (and let the kernel's own reclaim fight ours).  Filesystems that do
 * not support it answer EINVAL, and then the file is opened buffered.
 *
 * The file grows in chunks with fallocate, so that a write to a new slot
 * never fails for lack of space half way through a batch: running out of
 * space is found here, by reclaim, before any page is committed to a slot.
 * Chunks are large (64 MiB) so that the filesystem can lay them out as few
 * extents and growing is rare.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#define SWAP_GROW_MIN (64ULL << 20)
#define SWAP_GROW_MIN_PAGES 16ULL

static uint64_t round_up(uint64_t v, uint64_t to)
{
	return (v + to - 1) / to * to;
}

static uint64_t round_down(uint64_t v, uint64_t to)
{
	return v / to * to;
}

/*
 * open(2) with O_DIRECT if the filesystem takes it, else buffered.  Returns
 * the descriptor or -errno, and whether O_DIRECT was used in *@direct.
 */
static int open_maybe_direct(const char *path, int flags, mode_t mode,
			     bool *direct)
{
	int fd;

	fd = open(path, flags | O_DIRECT, mode);
	if (fd >= 0) {
		*direct = true;
		return fd;
	}
	if (errno != EINVAL)
		return -errno;
	fd = open(path, flags, mode);
	if (fd < 0)
		return -errno;
	*direct = false;
	return fd;
}

static int open_tmpfile(struct upg_swapfile *sf, const char *dir,
			char *why, size_t whylen)
{
	int fd;

	if (!dir || !dir[0]) {
		snprintf(why, whylen,
			 "no swap directory; set UPAGER_SWAP_DIR to a writable directory, e.g. UPAGER_SWAP_DIR=/var/tmp");
		return -EINVAL;
	}
	fd = open_maybe_direct(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600,
			       &sf->direct);
	if (fd >= 0) {
		sf->fd = fd;
		return 0;
	}

	switch (-fd) {
	case ENOENT:
		snprintf(why, whylen,
			 "swap directory \"%s\" does not exist; set UPAGER_SWAP_DIR to a writable directory",
			 dir);
		break;
	case ENOTDIR:
		snprintf(why, whylen,
			 "swap directory \"%s\" is not a directory; set UPAGER_SWAP_DIR to a writable directory",
			 dir);
		break;
	case EACCES:
	case EPERM:
	case EROFS:
		snprintf(why, whylen,
			 "swap directory \"%s\" is not writable (%s); set UPAGER_SWAP_DIR to a writable directory",
			 dir, upg_strerror(-fd));
		break;
	case EOPNOTSUPP:
	case EISDIR: /* kernels before 3.11 */
		snprintf(why, whylen,
			 "the filesystem of swap directory \"%s\" cannot create unnamed files (O_TMPFILE); set UPAGER_SWAP_DIR to a directory on ext4, xfs, btrfs or tmpfs, or UPAGER_SWAP to a file",
			 dir);
		break;
	default:
		snprintf(why, whylen,
			 "cannot create a swap file in \"%s\": %s; set UPAGER_SWAP_DIR to a writable directory",
			 dir, upg_strerror(-fd));
		break;
	}
	return fd;
}

/* An existing file or block device at @path: size from what is there. */
static int open_path(struct upg_swapfile *sf, const char *path,
		     uint64_t max_bytes, size_t page_size, char *why,
		     size_t whylen)
{
	struct stat st;
	uint64_t bytes;
	int fd, ret;

	fd = open_maybe_direct(path, O_RDWR | O_CLOEXEC, 0, &sf->direct);
	if (fd < 0) {
		snprintf(why, whylen,
			 "cannot open swap \"%s\": %s; set UPAGER_SWAP to an existing file or block device",
			 path, upg_strerror(-fd));
		return fd;
	}
	sf->fd = fd;
	if (fstat(fd, &st) < 0) {
		ret = -errno;
		snprintf(why, whylen, "cannot stat swap \"%s\": %s", path,
			 upg_strerror(-ret));
		goto out_close;
	}

	if (S_ISBLK(st.st_mode)) {
		if (ioctl(fd, BLKGETSIZE64, &bytes) < 0) {
			ret = -errno;
			snprintf(why, whylen,
				 "cannot read the size of swap device \"%s\": %s",
				 path, upg_strerror(-ret));
			goto out_close;
		}
		/* A device cannot grow: its size is its limit. */
		if (max_bytes && max_bytes < bytes)
			bytes = max_bytes;
		sf->is_device = true;
		sf->size = round_down(bytes, page_size);
		sf->max_size = sf->size;
	} else if (S_ISREG(st.st_mode)) {
		bytes = (uint64_t)st.st_size;
		if (max_bytes && max_bytes < bytes)
			bytes = max_bytes;
		sf->size = round_down(bytes, page_size);
		sf->max_size = round_down(max_bytes, page_size);
	} else {
		ret = -EINVAL;
		snprintf(why, whylen,
			 "swap \"%s\" is neither a regular file nor a block device; set UPAGER_SWAP to an existing file or block device",
			 path);
		goto out_close;
	}
	if (sf->is_device && sf->size == 0) {
		ret = -ENOSPC;
		snprintf(why, whylen,
			 "swap device \"%s\" is smaller than one page", path);
		goto out_close;
	}
	return 0;

out_close:
	close(sf->fd);
	sf->fd = -1;
	return ret;
}

int upg_swapfile_open(struct upg_swapfile *sf, const char *path,
		      const char *dir, uint64_t max_bytes, size_t page_size,
		      char *why, size_t whylen)
{
	int ret;

	memset(sf, 0, sizeof(*sf));
	sf->fd = -1;
	if (!why)
		whylen = 0;
	if (whylen)
		why[0] = '\0';
	if (page_size == 0 || (page_size & (page_size - 1)) != 0) {
		snprintf(why, whylen, "swap page size %zu is not a power of two",
			 page_size);
		return -EINVAL;
	}
	/* Rounded down below, a limit under one page would mean "none". */
	if (max_bytes != 0 && max_bytes < page_size) {
		snprintf(why, whylen,
			 "swap size limit %llu is smaller than one page (%zu); set UPAGER_SWAP_MAX to 0 or e.g. 16G",
			 (unsigned long long)max_bytes, page_size);
		return -EINVAL;
	}
	sf->grow_step = SWAP_GROW_MIN;
	if (sf->grow_step < SWAP_GROW_MIN_PAGES * page_size)
		sf->grow_step = SWAP_GROW_MIN_PAGES * page_size;
	sf->grow_step = round_up(sf->grow_step, page_size);

	if (path && path[0]) {
		ret = open_path(sf, path, max_bytes, page_size, why, whylen);
	} else {
		ret = open_tmpfile(sf, dir, why, whylen);
		sf->max_size = round_down(max_bytes, page_size);
	}
	return ret;
}

/* Extend the file to @size, never shrinking it (a given file may be longer). */
static int grow_sparse(int fd, uint64_t size)
{
	struct stat st;

	if (fstat(fd, &st) < 0)
		return -errno;
	if ((uint64_t)st.st_size >= size)
		return 0;
	if (ftruncate(fd, (off_t)size) < 0)
		return -errno;
	return 0;
}

int upg_swapfile_reserve(struct upg_swapfile *sf, uint64_t bytes)
{
	uint64_t chunk;
	int ret;

	upg_assert(sf->fd >= 0);
	if (bytes <= sf->size)
		return 0;
	if (sf->is_device || (sf->max_size && bytes > sf->max_size))
		return -ENOSPC;

	/* One chunk at a time, so that what was allocated before ENOSPC counts. */
	while (sf->size < bytes) {
		chunk = sf->grow_step;
		if (sf->max_size && chunk > sf->max_size - sf->size)
			chunk = sf->max_size - sf->size;
		if (fallocate(sf->fd, 0, (off_t)sf->size, (off_t)chunk) < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EOPNOTSUPP)
				return -errno;
			/* No fallocate here: a sparse file is the best we get. */
			ret = grow_sparse(sf->fd, sf->size + chunk);
			if (ret < 0)
				return ret;
		}
		sf->size += chunk;
	}
	return 0;
}

void upg_swapfile_discard(struct upg_swapfile *sf, uint64_t off, uint64_t len)
{
	/* A device keeps its blocks; its slots are simply reused. */
	if (sf->is_device || len == 0)
		return;
	/* Best effort: if punching fails, the blocks stay allocated, no harm. */
	(void)fallocate(sf->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			(off_t)off, (off_t)len);
}

void upg_swapfile_close(struct upg_swapfile *sf)
{
	if (sf->fd >= 0)
		close(sf->fd);
	sf->fd = -1;
}
