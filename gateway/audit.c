/*
 * The audit log: the canonical encoding of a record, the SHA-256 hash chain
 * over records, the group-commit writer that makes each record durable
 * before its caller goes on, and the verifier. docs/audit.md is the
 * reference a third party writes a verifier from.
 */
#include "audit.h"
#include "log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#define BATCH_MAX       1024            /* records per transaction */
#define FIELD_STR_MAX   (64u * 1024u)   /* any one string of an event */
#define FIELD_BIN_MAX   (4u * 1024u)    /* a digest (callers hash long data) */
#define ENC_NULL        0xffffffffu     /* length of a NULL string */

static const uint8_t enc_magic[8] = { 'S', 'G', 'A', 'U', 'D', 'I', 'T', '1' };

/* One gw_audit_record call waiting for its commit. Lives on the caller's
 * stack: the caller is blocked until the writer is done with it, so the
 * event's strings stay valid without a deep copy. */
struct pending {
	struct gw_audit_event ev;
	int64_t ts_ns;
	uint64_t seq;
	int status;
	bool done;
	pthread_cond_t cond;
	struct pending *next;
};

struct gw_audit {
	struct gw_store *st;
	pthread_t writer;
	bool writer_started;

	pthread_mutex_t lock;       /* guards the queue, head and stats */
	pthread_cond_t work;        /* the writer's: queue not empty or stopping */
	struct pending *qhead, *qtail;
	bool stopping;
	uint64_t seq;               /* chain head */
	uint8_t hash[GW_AUDIT_HASH_LEN];
	struct gw_audit_stats stats;

	/* Writer-only state. */
	bool head_stale;            /* a commit failed: re-read the head first */
	struct gw_audit_row rows[BATCH_MAX];
	uint8_t hashes[BATCH_MAX][GW_AUDIT_HASH_LEN];
};

static void __attribute__((format(printf, 3, 4)))
seterr(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (!err || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

static int64_t
realtime_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* ---- canonical encoding ---- */

/* The encoder writes into a bounded buffer (counting what does not fit) or
 * feeds a digest, so one definition serves storage-free hashing and a
 * later Merkle leaf alike. */
struct enc {
	uint8_t *buf;
	size_t cap, len;
	EVP_MD_CTX *md;
	bool fail;
};

static void
put(struct enc *e, const void *p, size_t n)
{
	if (n == 0)
		return;
	if (e->md) {
		if (!EVP_DigestUpdate(e->md, p, n))
			e->fail = true;
	} else if (e->buf && n <= e->cap && e->len <= e->cap - n) {
		memcpy(e->buf + e->len, p, n);
	}
	e->len += n;
}

static void
put_u32(struct enc *e, uint32_t v)
{
	uint8_t b[4] = { v >> 24, v >> 16, v >> 8, v };

	put(e, b, 4);
}

static void
put_u64(struct enc *e, uint64_t v)
{
	uint8_t b[8];

	for (int i = 7; i >= 0; i--, v >>= 8)
		b[i] = (uint8_t)v;
	put(e, b, 8);
}

static void
put_i64(struct enc *e, int64_t v)
{
	put_u64(e, (uint64_t)v);   /* two's complement */
}

static void
put_str(struct enc *e, const char *s)
{
	size_t n;

	if (!s) {
		put_u32(e, ENC_NULL);
		return;
	}
	n = strlen(s);
	if (n >= ENC_NULL) {
		e->fail = true;
		return;
	}
	put_u32(e, (uint32_t)n);
	put(e, s, n);
}

/* Byte fields: absent and empty are the same value (length 0). */
static void
put_bin(struct enc *e, const uint8_t *p, size_t n)
{
	if (!p)
		n = 0;
	if (n >= ENC_NULL) {
		e->fail = true;
		return;
	}
	put_u32(e, (uint32_t)n);
	put(e, p, n);
}

static void
encode(struct enc *e, const struct gw_audit_row *r)
{
	put(e, enc_magic, sizeof(enc_magic));
	put_u64(e, r->seq);
	put_i64(e, r->ts_ns);
	put_str(e, r->action);
	put_str(e, r->outcome);
	put_str(e, r->reason);
	put_str(e, r->actor);
	put_i64(e, r->uid);
	put_i64(e, r->pid);
	put_str(e, r->exe);
	put_str(e, r->host);
	put_str(e, r->seal);
	put_i64(e, r->application);
	put_bin(e, r->doc_digest, r->doc_digest_len);
	put_bin(e, r->signed_digest, r->signed_digest_len);
	put_u64(e, r->mechanism);
	put_str(e, r->detail);
}

size_t
gw_audit_row_encode(const struct gw_audit_row *row, uint8_t *buf, size_t buflen)
{
	struct enc e = { .buf = buf, .cap = buflen };

	encode(&e, row);
	return e.fail ? 0 : e.len;
}

int
gw_audit_row_hash(const uint8_t prev[GW_AUDIT_HASH_LEN], const struct gw_audit_row *row,
                  uint8_t hash[GW_AUDIT_HASH_LEN])
{
	struct enc e = { 0 };
	unsigned int n = 0;
	int rv = -1;

	e.md = EVP_MD_CTX_new();
	if (!e.md || !EVP_DigestInit_ex(e.md, EVP_sha256(), NULL))
		goto out;
	put(&e, prev, GW_AUDIT_HASH_LEN);
	encode(&e, row);
	if (e.fail || !EVP_DigestFinal_ex(e.md, hash, &n) || n != GW_AUDIT_HASH_LEN)
		goto out;
	rv = 0;
out:
	EVP_MD_CTX_free(e.md);
	return rv;
}

/* ---- the writer ---- */

static void
row_from_event(struct gw_audit_row *r, const struct pending *p)
{
	const struct gw_audit_event *ev = &p->ev;

	memset(r, 0, sizeof(*r));
	r->ts_ns = p->ts_ns;
	r->action = ev->action;
	r->outcome = ev->outcome;
	r->reason = ev->reason;
	r->actor = ev->actor;
	r->uid = ev->uid;
	r->pid = ev->pid;
	r->exe = ev->exe;
	r->host = ev->host;
	r->seal = ev->seal;
	r->application = ev->application;
	r->doc_digest = ev->doc_digest_len ? ev->doc_digest : NULL;
	r->doc_digest_len = ev->doc_digest ? ev->doc_digest_len : 0;
	r->signed_digest = ev->signed_digest_len ? ev->signed_digest : NULL;
	r->signed_digest_len = ev->signed_digest ? ev->signed_digest_len : 0;
	r->mechanism = ev->mechanism;
	r->detail = ev->detail;
}

/* After a failed commit the head in memory is what we believe; the file
 * is what is. They differ if a COMMIT reported failure after its WAL
 * frames reached the disk: re-read rather than fork the chain. */
static int
resync_head(struct gw_audit *au)
{
	uint64_t seq;
	uint8_t hash[GW_AUDIT_HASH_LEN];
	char err[256];

	if (gw_store_audit_head(au->st, &seq, hash, err, sizeof(err)) < 0) {
		gw_log_error("audit: cannot re-read the chain head: %s", err);
		return -1;
	}
	pthread_mutex_lock(&au->lock);
	if (seq != au->seq)
		gw_log_warn("audit: chain head moved from seq %llu to %llu after a failed commit",
		            (unsigned long long)au->seq, (unsigned long long)seq);
	au->seq = seq;
	memcpy(au->hash, hash, sizeof(hash));
	pthread_mutex_unlock(&au->lock);
	au->head_stale = false;
	return 0;
}

/* Chains and commits batch[0..n) in one transaction. 0 or -1. */
static int
write_batch(struct gw_audit *au, struct pending **batch, size_t n)
{
	const uint8_t *prev;
	uint64_t head;
	size_t i;
	char err[512];

	if (au->head_stale && resync_head(au) != 0)
		return -1;
	/* Only the writer changes the head, so reading it unlocked is safe. */
	head = au->seq;
	prev = au->hash;
	for (i = 0; i < n; i++) {
		struct gw_audit_row *r = &au->rows[i];

		row_from_event(r, batch[i]);
		r->seq = head + 1 + i;
		r->prev_hash = prev;
		r->prev_hash_len = GW_AUDIT_HASH_LEN;
		if (gw_audit_row_hash(prev, r, au->hashes[i]) != 0) {
			gw_log_error("audit: hashing record seq %llu failed", (unsigned long long)r->seq);
			return -1;
		}
		r->hash = au->hashes[i];
		r->hash_len = GW_AUDIT_HASH_LEN;
		batch[i]->seq = r->seq;
		prev = au->hashes[i];
	}
	if (gw_store_audit_append(au->st, au->rows, n, err, sizeof(err)) != 0) {
		gw_log_error("audit: committing %zu record(s) failed, none released: %s", n, err);
		au->head_stale = true;
		resync_head(au);
		return -1;
	}
	pthread_mutex_lock(&au->lock);
	au->seq = head + n;
	memcpy(au->hash, au->hashes[n - 1], GW_AUDIT_HASH_LEN);
	pthread_mutex_unlock(&au->lock);
	return 0;
}

static void *
writer_main(void *arg)
{
	struct gw_audit *au = arg;
	struct pending *batch[BATCH_MAX];
	size_t n, i;
	int status;

	pthread_mutex_lock(&au->lock);
	for (;;) {
		while (!au->qhead && !au->stopping)
			pthread_cond_wait(&au->work, &au->lock);
		if (!au->qhead)
			break;   /* stopping, and everything queued is written */
		/* Everything queued so far goes into this one commit: while we
		 * fsync, the next batch gathers. No timer: a lone record is
		 * written the moment it arrives. */
		for (n = 0; au->qhead && n < BATCH_MAX; n++) {
			batch[n] = au->qhead;
			au->qhead = au->qhead->next;
		}
		if (!au->qhead)
			au->qtail = NULL;
		pthread_mutex_unlock(&au->lock);

		status = write_batch(au, batch, n);

		pthread_mutex_lock(&au->lock);
		if (status == 0) {
			au->stats.commits++;
			au->stats.records += n;
			if (n > au->stats.max_batch)
				au->stats.max_batch = n;
		} else {
			au->stats.failed_batches++;
			au->stats.failed_records += n;
		}
		/* The waiters cannot run before we unlock, so touching batch[i]
		 * after its signal is safe. */
		for (i = 0; i < n; i++) {
			batch[i]->status = status;
			batch[i]->done = true;
			pthread_cond_signal(&batch[i]->cond);
		}
	}
	pthread_mutex_unlock(&au->lock);
	return NULL;
}

/* ---- public ---- */

int
gw_audit_open(struct gw_store *st, struct gw_audit **out, char *err, size_t errlen)
{
	struct gw_audit *au;
	int r;

	*out = NULL;
	au = calloc(1, sizeof(*au));
	if (!au) {
		seterr(err, errlen, "out of memory");
		return -1;
	}
	au->st = st;
	pthread_mutex_init(&au->lock, NULL);
	pthread_cond_init(&au->work, NULL);
	/* The head is the last record by seq: one indexed lookup. */
	r = gw_store_audit_head(st, &au->seq, au->hash, err, errlen);
	if (r < 0)
		goto fail;
	if (pthread_create(&au->writer, NULL, writer_main, au) != 0) {
		seterr(err, errlen, "cannot start the audit writer thread");
		goto fail;
	}
	au->writer_started = true;
	gw_log_info("audit log open, chain head at seq %llu", (unsigned long long)au->seq);
	*out = au;
	return 0;
fail:
	gw_audit_close(&au);
	return -1;
}

void
gw_audit_close(struct gw_audit **aup)
{
	struct gw_audit *au = aup ? *aup : NULL;

	if (!au)
		return;
	if (au->writer_started) {
		pthread_mutex_lock(&au->lock);
		au->stopping = true;
		pthread_cond_signal(&au->work);
		pthread_mutex_unlock(&au->lock);
		pthread_join(au->writer, NULL);
	}
	pthread_mutex_destroy(&au->lock);
	pthread_cond_destroy(&au->work);
	free(au);
	*aup = NULL;
}

static bool
str_ok(const char *s)
{
	return !s || strnlen(s, FIELD_STR_MAX + 1) <= FIELD_STR_MAX;
}

int
gw_audit_record(struct gw_audit *au, const struct gw_audit_event *ev, uint64_t *seq)
{
	struct pending p = { 0 };

	if (!au || !ev)
		return -1;
	/* Bounded so one record cannot stall the log; callers hash long data. */
	if (!str_ok(ev->action) || !str_ok(ev->outcome) || !str_ok(ev->reason) ||
	    !str_ok(ev->actor) || !str_ok(ev->exe) || !str_ok(ev->host) ||
	    !str_ok(ev->seal) || !str_ok(ev->detail) ||
	    (ev->doc_digest && ev->doc_digest_len > FIELD_BIN_MAX) ||
	    (ev->signed_digest && ev->signed_digest_len > FIELD_BIN_MAX)) {
		gw_log_error("audit: refusing an oversized record (action %.32s)",
		             ev->action ? ev->action : "-");
		return -1;
	}
	p.ev = *ev;
	pthread_cond_init(&p.cond, NULL);
	pthread_mutex_lock(&au->lock);
	if (au->stopping) {
		pthread_mutex_unlock(&au->lock);
		pthread_cond_destroy(&p.cond);
		return -1;
	}
	/* Stamped under the queue lock, so time follows seq (barring clock
	 * steps). */
	p.ts_ns = realtime_ns();
	if (au->qtail)
		au->qtail->next = &p;
	else
		au->qhead = &p;
	au->qtail = &p;
	pthread_cond_signal(&au->work);
	while (!p.done)
		pthread_cond_wait(&p.cond, &au->lock);
	pthread_mutex_unlock(&au->lock);
	pthread_cond_destroy(&p.cond);
	if (p.status == 0 && seq)
		*seq = p.seq;
	return p.status;
}

void
gw_audit_head(struct gw_audit *au, uint64_t *seq, uint8_t hash[GW_AUDIT_HASH_LEN])
{
	pthread_mutex_lock(&au->lock);
	*seq = au->seq;
	memcpy(hash, au->hash, GW_AUDIT_HASH_LEN);
	pthread_mutex_unlock(&au->lock);
}

void
gw_audit_get_stats(struct gw_audit *au, struct gw_audit_stats *out)
{
	pthread_mutex_lock(&au->lock);
	*out = au->stats;
	pthread_mutex_unlock(&au->lock);
}

/* ---- verification ---- */

struct verify {
	uint64_t expect;                      /* next seq */
	uint8_t running[GW_AUDIT_HASH_LEN];   /* hash of expect - 1 */
	uint64_t count;
	uint64_t anchor_seq;                  /* 0 = none */
	const uint8_t *anchor_hash;
	bool anchor_seen;
	char *err;
	size_t errlen;
};

static int
verify_row(void *arg, const struct gw_audit_row *r)
{
	struct verify *v = arg;
	uint8_t h[GW_AUDIT_HASH_LEN];
	unsigned long long seq = v->expect;

	if (r->seq != v->expect) {
		if ((int64_t)r->seq > (int64_t)v->expect)
			seterr(v->err, v->errlen, "seq %llu: missing (record removed; the next present is seq %llu)",
			       seq, (unsigned long long)r->seq);
		else
			seterr(v->err, v->errlen, "seq %lld: not a valid sequence number here (expected seq %llu)",
			       (long long)r->seq, seq);
		return 1;
	}
	if (r->bad_column) {
		seterr(v->err, v->errlen, "seq %llu: column %s holds a type sealgate never writes (record changed)",
		       seq, r->bad_column);
		return 1;
	}
	if (r->prev_hash_len != GW_AUDIT_HASH_LEN || !r->prev_hash ||
	    CRYPTO_memcmp(r->prev_hash, v->running, GW_AUDIT_HASH_LEN) != 0) {
		seterr(v->err, v->errlen, "seq %llu: prev_hash is not the hash of seq %llu "
		       "(record inserted, replaced or reordered)", seq, seq - 1);
		return 1;
	}
	if (gw_audit_row_hash(v->running, r, h) != 0) {
		seterr(v->err, v->errlen, "seq %llu: cannot hash the record", seq);
		return 1;
	}
	if (r->hash_len != GW_AUDIT_HASH_LEN || !r->hash ||
	    CRYPTO_memcmp(r->hash, h, GW_AUDIT_HASH_LEN) != 0) {
		seterr(v->err, v->errlen, "seq %llu: hash does not match the record's content (record changed)", seq);
		return 1;
	}
	if (v->anchor_seq == r->seq) {
		if (CRYPTO_memcmp(h, v->anchor_hash, GW_AUDIT_HASH_LEN) != 0) {
			seterr(v->err, v->errlen, "seq %llu: differs from the remembered head (log rewritten)", seq);
			return 1;
		}
		v->anchor_seen = true;
	}
	memcpy(v->running, h, sizeof(h));
	v->count++;
	v->expect++;
	return 0;
}

static int
verify(struct gw_store *st, uint64_t anchor_seq, const uint8_t *anchor_hash,
       uint64_t *count, char *err, size_t errlen)
{
	struct verify v = { .expect = 1, .anchor_seq = anchor_seq, .anchor_hash = anchor_hash,
	                    .err = err, .errlen = errlen };
	int r;

	r = gw_store_audit_scan(st, verify_row, &v, err, errlen);
	if (count)
		*count = v.count;
	if (r != 0)
		return -1;
	if (anchor_seq && !v.anchor_seen) {
		seterr(err, errlen, "seq %llu: missing (the log ends at seq %llu; records were cut off the end)",
		       (unsigned long long)v.expect, (unsigned long long)(v.expect - 1));
		return -1;
	}
	return 0;
}

int
gw_audit_verify_store(struct gw_store *st, uint64_t *count, char *err, size_t errlen)
{
	return verify(st, 0, NULL, count, err, errlen);
}

int
gw_audit_verify_store_anchor(struct gw_store *st, uint64_t anchor_seq,
                             const uint8_t anchor_hash[GW_AUDIT_HASH_LEN],
                             uint64_t *count, char *err, size_t errlen)
{
	if (anchor_seq == 0)
		return verify(st, 0, NULL, count, err, errlen);
	return verify(st, anchor_seq, anchor_hash, count, err, errlen);
}
