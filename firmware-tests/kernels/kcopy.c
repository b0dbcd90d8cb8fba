// SPDX-License-Identifier: Apache-2.0
/*
 * kcopy: the guest-side helper of the copy-offload kernel tests (see README.md here).
 *
 * scripts/guest-kernel builds it with `gcc -static -O2` against the uapi headers of the
 * patched kernel it builds (`make headers`, then -I <tree>/usr/include), so the copy ioctls
 * come from that kernel's own <linux/fs.h>; a kernel whose headers lack them gets a kcopy
 * that says so (exit 3) instead of guessing ioctl numbers.
 *
 *   kcopy cfr DEV SRC_OFF DST_OFF LEN [MAX_PER_CALL]
 *   kcopy blkcpy DEV DST_OFF SRC_OFF LEN
 *   kcopy blkcpy-vec DEV DST_OFF SRC_OFF:LEN[,SRC_OFF:LEN...]
 *   kcopy fill DEV OFF LEN SEED [AS_OFF]
 *   kcopy check DEV OFF LEN SEED [AS_OFF]
 *
 * All offsets and lengths are in bytes (suffixes K, M, G = KiB, MiB, GiB; 0x.. accepted).
 * Every command prints one line and exits 0 on success, 1 on failure, 2 on a usage error,
 * 3 when the kernel lacks the interface (copy ioctls only).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/fs.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#define BUF_SIZE (1u << 20) /* one O_DIRECT transfer of fill/check */
#define ALIGN 4096

static const char *prog = "kcopy";

static void usage(void)
{
	fprintf(stderr,
		"usage: kcopy cfr DEV SRC_OFF DST_OFF LEN [MAX_PER_CALL]\n"
		"       kcopy blkcpy DEV DST_OFF SRC_OFF LEN\n"
		"       kcopy blkcpy-vec DEV DST_OFF SRC_OFF:LEN[,SRC_OFF:LEN...]\n"
		"       kcopy fill DEV OFF LEN SEED [AS_OFF]\n"
		"       kcopy check DEV OFF LEN SEED [AS_OFF]\n"
		"offsets and lengths in bytes (K/M/G suffixes); SEED a number or 'zero'\n");
	exit(2);
}

static void die_usage(const char *what, const char *arg)
{
	fprintf(stderr, "%s: bad %s '%s'\n", prog, what, arg);
	exit(2);
}

/* A byte count: decimal or 0x hex, optional K/M/G (binary) suffix. */
static uint64_t parse_size(const char *what, const char *s)
{
	char *end;
	uint64_t v, mul = 1;

	errno = 0;
	if (*s == '-' || *s == '\0')
		die_usage(what, s);
	v = strtoull(s, &end, 0);
	if (errno)
		die_usage(what, s);
	switch (*end) {
	case '\0':
		break;
	case 'k': case 'K': mul = 1ull << 10; end++; break;
	case 'm': case 'M': mul = 1ull << 20; end++; break;
	case 'g': case 'G': mul = 1ull << 30; end++; break;
	default: die_usage(what, s);
	}
	if (*end != '\0' || (v && mul > UINT64_MAX / v))
		die_usage(what, s);
	return v * mul;
}

static uint64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static int open_dev(const char *cmd, const char *dev)
{
	int fd = open(dev, O_RDWR | O_DIRECT);

	if (fd < 0) {
		printf("%s: open %s failed errno %d (%s)\n", cmd, dev, errno, strerror(errno));
		exit(1);
	}
	return fd;
}

/* ------------------------------------------------------------------------------------------
 * copy_file_range(2) between two O_DIRECT descriptors of the same block device (the
 * interface of the v20 and vanassche2026 series).
 */
static int cmd_cfr(int argc, char **argv)
{
	if (argc != 5 && argc != 6)
		usage();
	const char *dev = argv[1];
	uint64_t src = parse_size("SRC_OFF", argv[2]);
	uint64_t dst = parse_size("DST_OFF", argv[3]);
	uint64_t len = parse_size("LEN", argv[4]);
	uint64_t max = argc == 6 ? parse_size("MAX_PER_CALL", argv[5]) : 0;
	int in = open_dev("cfr", dev), out = open_dev("cfr", dev);
	loff_t soff = (loff_t)src, doff = (loff_t)dst;
	uint64_t done = 0, calls = 0, t0 = now_us();
	int err = 0;

	if (argc == 6 && max == 0)
		die_usage("MAX_PER_CALL", argv[5]);
	while (done < len) {
		size_t want = (size_t)(len - done);
		ssize_t n;

		if (max && want > max)
			want = (size_t)max;
		calls++;
		n = copy_file_range(in, &soff, out, &doff, want, 0);
		if (n < 0) {
			err = errno;
			break;
		}
		if (n == 0)
			break;
		done += (uint64_t)n;
	}
	printf("cfr: requested %" PRIu64 " copied %" PRIu64 " calls %" PRIu64
	       " errno %d (%s) time_us %" PRIu64 "\n",
	       len, done, calls, err, strerror(err), now_us() - t0);
	return done == len ? 0 : 1;
}

/* ------------------------------------------------------------------------------------------
 * The busch2025 ioctls. Their arguments are 512-byte sectors (block/ioctl.c of that series:
 * range[] and copy_source are compared with bdev_nr_sectors() and aligned to the logical
 * block size in sectors); kcopy takes bytes like its other commands and converts.
 *
 * "Unknown to the kernel": an unpatched kernel answers ENOTTY. EINVAL is also what the
 * series returns for bad arguments, so EINVAL counts as "unknown" only when the arguments
 * pass the same checks the series makes (alignment, bounds, no overlap).
 */
#ifdef BLKCPY
/* The device's logical block size and size in bytes, for the argument checks below. */
static void dev_geometry(int fd, unsigned *lbs, uint64_t *bytes)
{
	int ss = 0;

	*lbs = 0;
	*bytes = 0;
	if (ioctl(fd, BLKSSZGET, &ss) == 0 && ss > 0)
		*lbs = (unsigned)ss;
	if (ioctl(fd, BLKGETSIZE64, bytes) != 0)
		*bytes = 0;
}

static __u64 sectors(const char *cmd, const char *what, uint64_t bytes)
{
	if (bytes % 512) {
		fprintf(stderr, "%s: %s %" PRIu64 " is not a multiple of 512 bytes\n", cmd, what, bytes);
		exit(2);
	}
	return bytes / 512;
}

/* The overlap rule of the series: src == dst is allowed. */
static int overlaps(uint64_t a, uint64_t b, uint64_t len)
{
	return (a < b && a + len > b) || (b < a && b + len > a);
}

static int ioctl_result(int ret, int err, int args_valid)
{
	if (ret == 0)
		return 0;
	if (err == ENOTTY || (err == EINVAL && args_valid))
		return 3;
	return 1;
}

static const char *unknown_note(int rc, int err)
{
	if (rc != 3)
		return "";
	return err == ENOTTY ? " interface: ioctl unknown to this kernel"
			     : " interface: EINVAL for valid arguments, ioctl probably unknown to this kernel";
}

static int cmd_blkcpy(int argc, char **argv)
{
	if (argc != 5)
		usage();
	const char *dev = argv[1];
	uint64_t dst = parse_size("DST_OFF", argv[2]);
	uint64_t src = parse_size("SRC_OFF", argv[3]);
	uint64_t len = parse_size("LEN", argv[4]);
	__u64 range[3];
	int fd = open_dev("blkcpy", dev), ret, err = 0, rc, valid;
	unsigned lbs;
	uint64_t size, t0;

	range[0] = sectors("blkcpy", "DST_OFF", dst);
	range[1] = sectors("blkcpy", "SRC_OFF", src);
	range[2] = sectors("blkcpy", "LEN", len);
	dev_geometry(fd, &lbs, &size);
	valid = lbs && len && !(dst % lbs) && !(src % lbs) && !(len % lbs) &&
		src + len <= size && dst + len <= size && !overlaps(src, dst, len);
	t0 = now_us();
	ret = ioctl(fd, BLKCPY, range);
	if (ret < 0)
		err = errno;
	rc = ioctl_result(ret, err, valid);
	printf("blkcpy: dst %" PRIu64 " src %" PRIu64 " len %" PRIu64 " (sectors %llu %llu %llu)"
	       " ret %d errno %d (%s) time_us %" PRIu64 "%s\n",
	       dst, src, len, (unsigned long long)range[0], (unsigned long long)range[1],
	       (unsigned long long)range[2], ret, err, strerror(err), now_us() - t0,
	       unknown_note(rc, err));
	return rc;
}

#ifdef BLKCPY_VEC
static int cmd_blkcpy_vec(int argc, char **argv)
{
	if (argc != 4)
		usage();
	const char *dev = argv[1];
	uint64_t dst = parse_size("DST_OFF", argv[2]), total = 0, size, t0;
	struct copy_source *src = NULL;
	struct copy_range cr;
	unsigned n = 0, cap = 0, lbs;
	int fd = open_dev("blkcpy-vec", dev), ret, err = 0, rc, valid;
	char *list = strdup(argv[3]), *tok, *save = NULL;

	memset(&cr, 0, sizeof(cr));
	cr.dst_sector = sectors("blkcpy-vec", "DST_OFF", dst);
	dev_geometry(fd, &lbs, &size);
	valid = lbs && !(dst % lbs);
	for (tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		char *colon = strchr(tok, ':');
		uint64_t s, l;

		if (!colon)
			die_usage("SRC_OFF:LEN", tok);
		*colon = '\0';
		s = parse_size("SRC_OFF", tok);
		l = parse_size("LEN", colon + 1);
		if (n == cap) {
			cap = cap ? 2 * cap : 16;
			src = realloc(src, cap * sizeof(*src));
			if (!src) {
				perror("realloc");
				return 1;
			}
		}
		src[n].src_sector = sectors("blkcpy-vec", "SRC_OFF", s);
		src[n].nr_sectors = sectors("blkcpy-vec", "LEN", l);
		/* The series checks each source against dst only (not dst + the bytes before). */
		valid = valid && l && !(s % lbs) && !(l % lbs) && s + l <= size && !overlaps(s, dst, l);
		total += l;
		n++;
	}
	if (n == 0 || n > UINT16_MAX)
		die_usage("range list", argv[3]);
	valid = valid && dst + total <= size;
	cr.nr_ranges = (__u16)n;
	cr.sources = (__u64)(uintptr_t)src;
	t0 = now_us();
	ret = ioctl(fd, BLKCPY_VEC, &cr);
	if (ret < 0)
		err = errno;
	rc = ioctl_result(ret, err, valid);
	printf("blkcpy-vec: dst %" PRIu64 " ranges %u len %" PRIu64 " ret %d errno %d (%s) time_us %" PRIu64
	       "%s\n",
	       dst, n, total, ret, err, strerror(err), now_us() - t0, unknown_note(rc, err));
	free(src);
	free(list);
	return rc;
}
#endif /* BLKCPY_VEC */
#endif /* BLKCPY */

/* Built against headers without the ioctls: the kernel lacks the interface. */
#ifndef BLKCPY
static int cmd_blkcpy(int argc, char **argv)
{
	(void)argv;
	if (argc != 5)
		usage();
	printf("blkcpy: interface: BLKCPY is not in this kernel's uapi <linux/fs.h> (kcopy built without it)\n");
	return 3;
}
#endif
#ifndef BLKCPY_VEC
static int cmd_blkcpy_vec(int argc, char **argv)
{
	(void)argv;
	if (argc != 4)
		usage();
	printf("blkcpy-vec: interface: BLKCPY_VEC is not in this kernel's uapi <linux/fs.h> (kcopy built without it)\n");
	return 3;
}
#endif


/* ------------------------------------------------------------------------------------------
 * fill / check: a pattern that is a function of (seed, byte offset) only, so a copy can be
 * verified byte for byte: after copying SRC to DST, `check DEV DST LEN SEED SRC` expects at
 * DST the bytes `fill` wrote at SRC. SEED `zero` is the all-zero pattern.
 */
static int zero_seed;

static uint64_t splitmix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

/* The pattern for [off, off + len) into buf; off need not be 8-byte aligned. */
static void pattern(uint64_t seed, uint64_t off, uint8_t *buf, size_t len)
{
	size_t i = 0;

	if (zero_seed) {
		memset(buf, 0, len);
		return;
	}
	while (i < len) {
		uint64_t o = off + i, w = splitmix64(seed ^ splitmix64(o >> 3));
		unsigned b = (unsigned)(o & 7);

		if (b == 0 && len - i >= 8) {
			memcpy(buf + i, &w, 8); /* little-endian byte order on x86 */
			i += 8;
			continue;
		}
		buf[i++] = (uint8_t)(w >> (8 * b));
	}
}

static uint64_t parse_seed(const char *s)
{
	if (strcmp(s, "zero") == 0) {
		zero_seed = 1;
		return 0;
	}
	return parse_size("SEED", s);
}

static void *aligned_buf(size_t len)
{
	void *p = NULL;

	if (posix_memalign(&p, ALIGN, len) != 0) {
		fprintf(stderr, "%s: posix_memalign(%zu) failed\n", prog, len);
		exit(1);
	}
	return p;
}

static int cmd_fill_check(int argc, char **argv, int check)
{
	const char *cmd = check ? "check" : "fill";

	if (argc != 5 && argc != 6)
		usage();
	const char *dev = argv[1];
	uint64_t off = parse_size("OFF", argv[2]);
	uint64_t len = parse_size("LEN", argv[3]);
	uint64_t seed = parse_seed(argv[4]);
	uint64_t as = argc == 6 ? parse_size("AS_OFF", argv[5]) : off;
	int fd = open_dev(cmd, dev);
	uint8_t *buf = aligned_buf(BUF_SIZE), *want = aligned_buf(BUF_SIZE);
	uint64_t done = 0, bad = 0, first = 0;
	uint8_t first_got = 0, first_want = 0;

	while (done < len) {
		size_t n = len - done > BUF_SIZE ? BUF_SIZE : (size_t)(len - done);
		ssize_t r;

		pattern(seed, as + done, want, n);
		if (check)
			r = pread(fd, buf, n, (off_t)(off + done));
		else
			r = pwrite(fd, want, n, (off_t)(off + done));
		if (r != (ssize_t)n) {
			int err = r < 0 ? errno : EIO;

			printf("%s: off %" PRIu64 " len %" PRIu64 " %s failed at byte %" PRIu64
			       " (returned %zd) errno %d (%s)\n",
			       cmd, off, len, check ? "read" : "write", off + done, r, err, strerror(err));
			return 1;
		}
		if (check && memcmp(buf, want, n) != 0) {
			for (size_t i = 0; i < n; i++) {
				if (buf[i] == want[i])
					continue;
				if (!bad++) {
					first = off + done + i;
					first_got = buf[i];
					first_want = want[i];
				}
			}
		}
		done += n;
	}
	if (!check) {
		printf("fill: off %" PRIu64 " len %" PRIu64 " seed %s as %" PRIu64 " ok\n", off, len,
		       argv[4], as);
		return 0;
	}
	if (!bad) {
		printf("check: off %" PRIu64 " len %" PRIu64 " seed %s as %" PRIu64 " ok\n", off, len,
		       argv[4], as);
		return 0;
	}
	printf("check: off %" PRIu64 " len %" PRIu64 " seed %s as %" PRIu64 " MISMATCH first %" PRIu64
	       " (+%" PRIu64 ") got 0x%02x want 0x%02x bad_bytes %" PRIu64 "\n",
	       off, len, argv[4], as, first, first - off, first_got, first_want, bad);
	return 1;
}

int main(int argc, char **argv)
{
	if (argc < 2)
		usage();
	setvbuf(stdout, NULL, _IOLBF, 0);
	const char *c = argv[1];

	if (strcmp(c, "cfr") == 0)
		return cmd_cfr(argc - 1, argv + 1);
	if (strcmp(c, "blkcpy") == 0)
		return cmd_blkcpy(argc - 1, argv + 1);
	if (strcmp(c, "blkcpy-vec") == 0)
		return cmd_blkcpy_vec(argc - 1, argv + 1);
	if (strcmp(c, "fill") == 0)
		return cmd_fill_check(argc - 1, argv + 1, 0);
	if (strcmp(c, "check") == 0)
		return cmd_fill_check(argc - 1, argv + 1, 1);
	if (strcmp(c, "-h") == 0 || strcmp(c, "--help") == 0)
		usage();
	fprintf(stderr, "%s: unknown command '%s'\n", prog, c);
	usage();
	return 2;
}
