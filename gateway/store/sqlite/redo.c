/*
 * The redo log file (redo.h): frames appended to a preallocated file with
 * one pwrite and one fdatasync each, read back in order at store open.
 * What a frame holds and when it is replayed is the store's business.
 */
#include "redo.h"
#include "protocol.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#define MAGIC     "SGR1"
#define SUM_LEN   16u
#define FILL_STEP (1u << 20)

struct gw_redo {
	int fd;
	uint8_t id[GW_REDO_ID_LEN];
	size_t size;   /* of the file */
	size_t off;    /* where the next frame goes */
};


static void
put_le(uint8_t *p, uint64_t v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t
get_le(const uint8_t *p, size_t n)
{
	uint64_t v = 0;

	for (size_t i = n; i-- > 0;)
		v = v << 8 | p[i];
	return v;
}

/* SHA-256 fetched once: EVP_sha256() makes every EVP_DigestInit_ex fetch
 * it again from the provider store, and a frame is summed on every batch
 * of the sign path (as auditfmt.c does for the record hash). */
static EVP_MD *sum_md;
static pthread_once_t sum_once = PTHREAD_ONCE_INIT;

static void
sum_fetch(void)
{
	sum_md = EVP_MD_fetch(NULL, "SHA256", NULL);
}

/* The checksum covers the header up to the sum and the payload: a torn
 * write, a frame cut short or stale bytes never pass for a frame. */
static int
frame_sum(const uint8_t *hdr, const void *data, size_t len, uint8_t out[SUM_LEN])
{
	uint8_t md[EVP_MAX_MD_SIZE];
	unsigned mdlen = 0;
	EVP_MD_CTX *c;
	int ok;

	pthread_once(&sum_once, sum_fetch);
	if (sum_md == NULL)
		return -1;
	c = EVP_MD_CTX_new();
	ok = c && EVP_DigestInit_ex(c, sum_md, NULL) &&
	     EVP_DigestUpdate(c, hdr, GW_REDO_HDR_LEN - SUM_LEN) &&
	     (len == 0 || EVP_DigestUpdate(c, data, len)) &&
	     EVP_DigestFinal_ex(c, md, &mdlen);
	EVP_MD_CTX_free(c);
	if (!ok || mdlen < SUM_LEN)
		return -1;
	memcpy(out, md, SUM_LEN);
	return 0;
}

static int
write_all(int fd, const void *buf, size_t n, off_t off)
{
	const uint8_t *p = buf;

	while (n > 0) {
		ssize_t w = pwrite(fd, p, n, off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			if (w == 0)
				errno = EIO;
			return -1;
		}
		p += w;
		n -= (size_t)w;
		off += w;
	}
	return 0;
}

/* GW_REDO_SIZE; tests make it small (SEALGATE_TEST_REDO_SIZE, bytes, at
 * least 64 KiB) to go round the file many times. */
static size_t
redo_size(void)
{
	const char *v = getenv("SEALGATE_TEST_REDO_SIZE");
	char *end;
	unsigned long long n;

	if (v == NULL || *v == '\0')
		return GW_REDO_SIZE;
	n = strtoull(v, &end, 10);
	return *end == '\0' && n >= (64u << 10) && n <= GW_REDO_SIZE ? (size_t)n : GW_REDO_SIZE;
}

/* Zeros from `from` to size, then a sync: the blocks exist on disk before
 * any frame is written, so a frame's fdatasync flushes data only (no
 * allocation, no file size to journal). */
static int
fill(int fd, size_t from, size_t size, char *err, size_t errlen, const char *path)
{
	uint8_t *zero = calloc(1, FILL_STEP);
	int rv = -1;

	if (!zero) {
		sg_seterr(err, errlen, "out of memory");
		return -1;
	}
	for (size_t off = from; off < size;) {
		size_t n = size - off < FILL_STEP ? size - off : FILL_STEP;
		if (write_all(fd, zero, n, (off_t)off) != 0) {
			sg_seterr(err, errlen, "%s: writing: %s", path, strerror(errno));
			goto out;
		}
		off += n;
	}
	if (fsync(fd) != 0) {
		sg_seterr(err, errlen, "%s: fsync: %s", path, strerror(errno));
		goto out;
	}
	rv = 0;
out:
	free(zero);
	return rv;
}

int
gw_redo_open(const char *path, const uint8_t store_id[GW_REDO_ID_LEN], bool create,
             struct gw_redo **out, char *err, size_t errlen)
{
	struct gw_redo *r = NULL;
	struct stat sb;
	size_t size = redo_size();
	int fd;

	*out = NULL;
	fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW | (create ? O_CREAT : 0), 0600);
	if (fd < 0) {
		if (!create && errno == ENOENT)
			return 0;
		sg_seterr(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	if (fstat(fd, &sb) != 0) {
		sg_seterr(err, errlen, "%s: %s", path, strerror(errno));
		goto fail;
	}
	if (!S_ISREG(sb.st_mode) || sb.st_uid != geteuid()) {
		sg_seterr(err, errlen, "%s is not a regular file of uid %lu", path,
		       (unsigned long)geteuid());
		goto fail;
	}
	if ((sb.st_mode & 0777) != 0600 && fchmod(fd, 0600) != 0) {
		sg_seterr(err, errlen, "chmod 0600 %s: %s", path, strerror(errno));
		goto fail;
	}
	if ((uint64_t)sb.st_size < size) {
		/* New, or cut short (a crash while it was being made): its
		 * frames, if any, are still read; the rest becomes zeros. */
		if (!create) {
			sg_seterr(err, errlen, "%s is %lld bytes, expected %u", path,
			       (long long)sb.st_size, (unsigned)size);
			goto fail;
		}
		if (fill(fd, (size_t)sb.st_size, size, err, errlen, path) != 0) {
			/* Frames are written only into a whole file: a short
			 * one holds none, so nothing is lost by removing it. */
			unlink(path);
			goto fail;
		}
	}
	r = calloc(1, sizeof(*r));
	if (!r) {
		sg_seterr(err, errlen, "out of memory");
		goto fail;
	}
	r->fd = fd;
	memcpy(r->id, store_id, GW_REDO_ID_LEN);
	r->size = size;
	*out = r;
	return 0;
fail:
	close(fd);
	return -1;
}

void
gw_redo_close(struct gw_redo **rp)
{
	struct gw_redo *r = rp ? *rp : NULL;

	if (!r)
		return;
	close(r->fd);
	free(r);
	*rp = NULL;
}

int
gw_redo_scan(struct gw_redo *r, gw_redo_frame_fn fn, void *ctx, char *err, size_t errlen)
{
	uint8_t *buf;
	size_t off = 0, got = 0;
	uint64_t prev_last = 0;
	int rv = -1;

	buf = malloc(r->size);
	if (!buf) {
		sg_seterr(err, errlen, "out of memory reading the redo log");
		return -1;
	}
	while (got < r->size) {
		ssize_t n = pread(r->fd, buf + got, r->size - got, (off_t)got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			sg_seterr(err, errlen, "reading the redo log: %s", strerror(errno));
			goto out;
		}
		if (n == 0)
			break;
		got += (size_t)n;
	}
	while (off + GW_REDO_HDR_LEN <= got) {
		const uint8_t *h = buf + off;
		uint8_t sum[SUM_LEN];
		uint64_t len = get_le(h + 4, 4), first = get_le(h + 8, 8), last = get_le(h + 16, 8);

		if (memcmp(h, MAGIC, 4) != 0 || len > got - off - GW_REDO_HDR_LEN ||
		    memcmp(h + 24, r->id, GW_REDO_ID_LEN) != 0)
			break;
		if (frame_sum(h, h + GW_REDO_HDR_LEN, (size_t)len, sum) != 0 ||
		    memcmp(sum, h + GW_REDO_HDR_LEN - SUM_LEN, SUM_LEN) != 0)
			break;
		if (first == 0 || first > last || (prev_last != 0 && first <= prev_last))
			break;   /* the tail of an older round through the file */
		if (fn(ctx, first, last, h + GW_REDO_HDR_LEN, (size_t)len) != 0) {
			sg_seterr(err, errlen, "replaying the redo frame of seq %llu..%llu failed",
			       (unsigned long long)first, (unsigned long long)last);
			goto out;
		}
		prev_last = last;
		off += GW_REDO_HDR_LEN + (size_t)len;
	}
	rv = 0;
out:
	free(buf);
	return rv;
}

int
gw_redo_append(struct gw_redo *r, uint64_t first_seq, uint64_t last_seq,
               const void *data, size_t len, char *err, size_t errlen)
{
	uint8_t *buf;
	size_t total = GW_REDO_HDR_LEN + len;
	int rv = -1;

	if (len > r->size || r->off + total > r->size)
		return 1;
	buf = malloc(total);
	if (!buf) {
		sg_seterr(err, errlen, "out of memory");
		return -1;
	}
	memcpy(buf, MAGIC, 4);
	put_le(buf + 4, len, 4);
	put_le(buf + 8, first_seq, 8);
	put_le(buf + 16, last_seq, 8);
	memcpy(buf + 24, r->id, GW_REDO_ID_LEN);
	memcpy(buf + GW_REDO_HDR_LEN, data, len);
	if (frame_sum(buf, data, len, buf + GW_REDO_HDR_LEN - SUM_LEN) != 0) {
		sg_seterr(err, errlen, "hashing a redo frame failed");
		goto out;
	}
	if (write_all(r->fd, buf, total, (off_t)r->off) != 0) {
		sg_seterr(err, errlen, "writing the redo log: %s", strerror(errno));
		goto out;
	}
	if (fdatasync(r->fd) != 0) {
		sg_seterr(err, errlen, "syncing the redo log: %s", strerror(errno));
		goto out;
	}
	r->off += total;
	rv = 0;
out:
	free(buf);
	return rv;
}

void
gw_redo_reset(struct gw_redo *r)
{
	r->off = 0;
}

int
gw_redo_clear(struct gw_redo *r)
{
	uint8_t zero[GW_REDO_HDR_LEN] = { 0 };

	r->off = 0;
	if (write_all(r->fd, zero, sizeof(zero), 0) != 0 || fdatasync(r->fd) != 0)
		return -1;
	return 0;
}

size_t
gw_redo_used(const struct gw_redo *r)
{
	return r->off;
}
