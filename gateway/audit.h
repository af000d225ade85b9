/*
 * The audit log: every event gets a record, hash-chained to the one
 * before it (docs/audit.md), and is durable (committed with
 * synchronous=FULL) before gw_audit_record returns. A single writer thread
 * batches concurrent records into one commit (group commit), so N signers
 * pay for one fsync, while a lone signer still waits for its own.
 */
#ifndef GW_AUDIT_H
#define GW_AUDIT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "store.h"

struct gw_audit;

/* One event. Strings may be NULL. Digests are raw bytes. */
struct gw_audit_event {
	const char *action;       /* "sign", "login", "gateway_start", … */
	const char *outcome;      /* "ok", "denied", "error" */
	const char *reason;       /* words for people; NULL on success */
	const char *actor;        /* sealgate account */
	int64_t uid;              /* OS uid of the client, -1 if none */
	int64_t pid;
	const char *exe;          /* client executable path */
	const char *host;
	const char *seal;
	int64_t application;      /* 0 = none */
	const uint8_t *doc_digest; size_t doc_digest_len;
	const uint8_t *signed_digest; size_t signed_digest_len;  /* what the token signed, or its SHA-256 */
	unsigned long mechanism;  /* CKM, 0 = none */
	const char *detail;       /* free JSON text (e.g. policy hash), or NULL */
};

/* Starts the writer thread over st; recovers the chain head from the last
 * record (no full scan). */
int gw_audit_open(struct gw_store *st, struct gw_audit **out, char *err, size_t errlen);
/* Flushes and stops the writer. */
void gw_audit_close(struct gw_audit **au);

/* Appends ev and waits until it is durable. Returns 0 and *seq, or -1 when
 * the record could not be committed (disk full, I/O error): the caller must
 * not release what the record covers. Thread safe. */
int gw_audit_record(struct gw_audit *au, const struct gw_audit_event *ev, uint64_t *seq);

/* Walks the whole chain from the store. Returns 0 when intact; otherwise -1
 * with err naming the first bad sequence number. */
int gw_audit_verify_store(struct gw_store *st, uint64_t *count, char *err, size_t errlen);

/* ---- additions ---- */

#define GW_AUDIT_HASH_LEN 32

/* The canonical encoding of one record (docs/audit.md): writes it to buf
 * when buflen is large enough and returns its length either way (0 when a
 * field is longer than the encoding allows). */
size_t gw_audit_row_encode(const struct gw_audit_row *row, uint8_t *buf, size_t buflen);

/* hash = SHA-256(prev || encoding(row)). 0, or -1 on failure. */
int gw_audit_row_hash(const uint8_t prev[GW_AUDIT_HASH_LEN], const struct gw_audit_row *row,
                      uint8_t hash[GW_AUDIT_HASH_LEN]);

/* The chain head as the writer knows it (seq 0 and zero hash when empty). */
void gw_audit_head(struct gw_audit *au, uint64_t *seq, uint8_t hash[GW_AUDIT_HASH_LEN]);

/* Like gw_audit_verify_store, and also checks that record anchor_seq exists
 * with hash anchor_hash (a head remembered earlier, e.g. from a signed
 * checkpoint): this is what detects records cut off the end of the log. */
int gw_audit_verify_store_anchor(struct gw_store *st, uint64_t anchor_seq,
                                 const uint8_t anchor_hash[GW_AUDIT_HASH_LEN],
                                 uint64_t *count, char *err, size_t errlen);

/* Counters of the writer, for status output and tests of the group commit. */
struct gw_audit_stats {
	uint64_t commits;         /* transactions committed */
	uint64_t records;         /* records committed */
	uint64_t failed_batches;  /* transactions that failed (records refused) */
	uint64_t failed_records;
	uint64_t max_batch;       /* most records in one transaction */
};
void gw_audit_get_stats(struct gw_audit *au, struct gw_audit_stats *out);

#endif
