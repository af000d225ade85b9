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

#include "auditfmt.h"
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
	/* When set, the application is read from here after the record's
	 * change ran (gw_audit_record_with's apply): the change that creates
	 * an application gets its id from the store, inside the transaction. */
	const int64_t *application_from;
	const uint8_t *doc_digest; size_t doc_digest_len;
	const uint8_t *signed_digest; size_t signed_digest_len;  /* what the token signed, or its SHA-256 */
	unsigned long mechanism;  /* CKM, 0 = none */
	const char *detail;       /* free JSON text (e.g. policy hash), or NULL */
	/* When set, the detail is read from here after the change ran,
	 * like application_from: a decision's record says whether it
	 * authorized the application, which only the change knows. */
	const char *const *detail_from;
	/* The apply (gw_audit_record_with) changes all or nothing by
	 * itself: a refusal changes nothing and only a failed statement
	 * leaves a change half done. Where a failed statement ends the
	 * whole transaction (gw_store_tx_errors_end: PostgreSQL) it then
	 * runs with no savepoint of its own, a signature's SAVEPOINT and
	 * RELEASE being two statements of three; its store error fails the
	 * batch rather than its record alone. Elsewhere it has its savepoint. */
	bool apply_whole;
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

/* A change to the store that must be durable together with its record. It
 * runs on the writer thread inside the batch transaction, under a SAVEPOINT
 * of its own, before the record is appended; it may call any gw_store_*
 * function (the store's lock is recursive/held; no BEGIN/COMMIT inside).
 * Returning non-zero (with err) refuses this record only: its savepoint is
 * rolled back, the record is not written, other records of the batch are
 * unaffected, and gw_audit_record_with returns -1 with that err. (An
 * event's apply_whole leaves the savepoint out where it can.) */
typedef int (*gw_audit_apply_fn)(struct gw_store *st, void *arg, char *err, size_t errlen);
/* gw_audit_record_with in two halves, so a caller can do something else
 * (sign on the token) while its record is being committed: submit queues
 * the record (ev's strings and buffers must stay valid until wait), wait
 * blocks until it is durable or refused and frees the ticket. */
struct gw_audit_ticket;
int gw_audit_submit_with(struct gw_audit *au, const struct gw_audit_event *ev,
                         gw_audit_apply_fn apply, void *arg, struct gw_audit_ticket **t,
                         char *err, size_t errlen);
int gw_audit_wait(struct gw_audit *au, struct gw_audit_ticket **t, uint64_t *seq,
                  char *err, size_t errlen);
int gw_audit_record_with(struct gw_audit *au, const struct gw_audit_event *ev,
                         gw_audit_apply_fn apply, void *arg, uint64_t *seq,
                         char *err, size_t errlen);
/* Notes on gw_audit_record_with:
 * - apply must not call gw_audit_record* (it runs on the writer: deadlock)
 *   nor wait for another thread that takes the store lock.
 * - When the batch's COMMIT fails (disk full, I/O error) every record of
 *   the batch fails and every apply's changes are rolled back with it:
 *   -1 with err "audit: …". A change is never durable without its record,
 *   nor a record without its change.
 * - apply may be NULL (then it is gw_audit_record with an err text). */

/* Walks the whole chain from the store. Returns 0 when intact; otherwise -1
 * with err naming the first bad sequence number. */
int gw_audit_verify_store(struct gw_store *st, uint64_t *count, char *err, size_t errlen);

/* ---- additions ---- */

/* GW_AUDIT_HASH_LEN, gw_audit_row_encode, gw_audit_row_hash: auditfmt.h */

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
	uint64_t refused;         /* records whose apply function refused them */
};
void gw_audit_get_stats(struct gw_audit *au, struct gw_audit_stats *out);

/* ---- the hand-off to a reader of the log (gateway/risk/online.c) ---- */

/* Called on the writer thread with each batch's records, in seq order,
 * once they are durable and before their callers go on: it must copy what
 * it keeps (the rows' strings are the callers') and return at once. */
typedef void (*gw_audit_observer_fn)(void *arg, const struct gw_audit_row *rows, size_t n);
/* Sets (or with NULL clears) the one observer; once this returns, an
 * observer cleared is not running and is not called again. */
void gw_audit_set_observer(struct gw_audit *au, gw_audit_observer_fn fn, void *arg);

/* ---- signed checkpoints (docs/audit.md, "Checkpoints") ---- */

struct gw_token;
struct gw_seal_key;

#define GW_AUDIT_CHECKPOINT_INTERVAL 300    /* seconds, default */
#define GW_AUDIT_CHECKPOINT_EVERY    1000   /* records, default */

/* Finds the audit key (key_uri, on the backend token, with its certificate)
 * and starts checkpointing: a signed checkpoint of the head every
 * interval_s seconds (0 = default) when records were added, every every_n
 * records (0 = default), on gw_audit_checkpoint_now, and at gw_audit_close.
 * Also records token_absent / token_present when tok's presence changes.
 * Call once, after gw_audit_open. 0 or -1 with err (no such key, no
 * certificate, a key type it cannot sign checkpoints with). */
int gw_audit_checkpoints_start(struct gw_audit *au, struct gw_token *tok, const char *key_uri,
                               unsigned interval_s, unsigned every_n, char *err, size_t errlen);

/* Signs and stores a checkpoint of the current head now (none if the head
 * is already covered). *seq = the head covered. 0 or -1 with err (no audit
 * key, token absent, store error). Thread safe. */
int gw_audit_checkpoint_now(struct gw_audit *au, uint64_t *seq, char *err, size_t errlen);

/* Signs an approval receipt (docs/stamp.md) with the audit key: the
 * message "SGRCPT01" || digest (SHA-256 of the receipt's text), apart
 * from every checkpoint's ("SGCHKPT1/2"). 0, or -1 with err (no audit
 * key, token absent). Thread safe. */
int gw_audit_sign_receipt(struct gw_audit *au, const uint8_t digest[32], uint8_t *sig,
                          size_t *siglen, char *err, size_t errlen);

/* The audit certificate (DER), or NULL before gw_audit_checkpoints_start. */
const uint8_t *gw_audit_cert(struct gw_audit *au, size_t *len);

/* For gw_snapshot_load: -1 with err when seal_key is the audit key named by
 * audit_key_uri (same key pair, whatever URI found it): the audit key must
 * never be usable as a seal. 0 when it is not (or no audit key is set). */
int gw_audit_key_check(struct gw_token *tok, const char *audit_key_uri,
                       const struct gw_seal_key *seal_key, char *err, size_t errlen);

/* Verifies the log in the store with its stored checkpoints (signatures
 * checked with pinned_cert, or each checkpoint's own certificate when
 * NULL): the chain, and that every signed head is still there. Fills
 * *verdict (free with gw_audit_verifier_free(v)). 0 intact, 1 not, -1 on a
 * store error. */
int gw_audit_verify_full(struct gw_store *st, const uint8_t *pinned_cert, size_t pinned_len,
                         struct gw_audit_verifier **v, struct gw_audit_verdict *verdict,
                         char *err, size_t errlen);

#endif
