/*
 * The store: sealgate's runtime state in one SQLite database (WAL,
 * synchronous=FULL): accounts and their credentials, and the audit log.
 * Later issues add applications, approvals and quota counters here.
 * Only the gateway opens it; the file is created mode 0600.
 */
#ifndef GW_STORE_H
#define GW_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct gw_store;

int gw_store_open(const char *path, struct gw_store **out, char *err, size_t errlen);
void gw_store_close(struct gw_store **st);

/* Credentials. hash is an Argon2id string (crypto_pwhash_str). get returns
 * 1 and fills hash, 0 when the account has no password, -1 on error. */
int gw_store_password_get(struct gw_store *st, const char *user, char *hash, size_t hashlen);
int gw_store_password_set(struct gw_store *st, const char *user, const char *hash);

/*
 * Thread safety: one SQLite connection per store, opened in serialized mode
 * (SQLITE_OPEN_FULLMUTEX) and, above that, guarded by the store's own mutex
 * so that each function's statement sequence (bind, step, reset; BEGIN …
 * COMMIT) is atomic. Every function here may be called from any thread.
 */

/* The schema version this build creates and understands. A database with
 * a newer version is refused; an older one is migrated on open. */
#define GW_STORE_SCHEMA_LATEST 2

/* gw_store_open that migrates only up to schema version upto (0 = latest):
 * for tests of the migrations. */
int gw_store_open_version(const char *path, int upto, struct gw_store **out,
                          char *err, size_t errlen);
/* Current schema version, -1 on error. */
int gw_store_schema_version(struct gw_store *st);

/* One audit row as stored. audit.c owns its meaning and the hash chain;
 * the store only writes and reads rows. Strings may be NULL; byte fields
 * of length 0 are stored as NULL. */
struct gw_audit_row {
	uint64_t seq;
	int64_t ts_ns;
	const char *action, *outcome, *reason, *actor;
	int64_t uid, pid;
	const char *exe, *host, *seal;
	int64_t application;
	const uint8_t *doc_digest; size_t doc_digest_len;
	const uint8_t *signed_digest; size_t signed_digest_len;
	uint64_t mechanism;
	const char *detail;
	const uint8_t *prev_hash; size_t prev_hash_len;
	const uint8_t *hash; size_t hash_len;
	/* Set by gw_store_audit_scan: the first column whose stored type is not
	 * what sealgate writes (tampering outside the gateway), or NULL. */
	const char *bad_column;
};

/* Appends rows in ONE transaction (BEGIN IMMEDIATE … COMMIT; durable on
 * return with synchronous=FULL). On any failure the transaction is rolled
 * back, nothing is written, and -1 is returned with err. */
int gw_store_audit_append(struct gw_store *st, const struct gw_audit_row *rows, size_t n,
                          char *err, size_t errlen);

/* The last row by seq (one indexed lookup): 1 and seq/hash, 0 when the log
 * is empty, -1 on error (also when the stored hash is not 32 bytes). */
int gw_store_audit_head(struct gw_store *st, uint64_t *seq, uint8_t hash[32],
                        char *err, size_t errlen);

/* Calls fn for every row in seq order (pointers valid during the call
 * only). Reads in pages, so writers are held up one page at a time. fn
 * returning non-zero stops the walk and is returned; -1 with err on a
 * store error; 0 when all rows were seen. */
typedef int (*gw_store_audit_fn)(void *ctx, const struct gw_audit_row *row);
int gw_store_audit_scan(struct gw_store *st, gw_store_audit_fn fn, void *ctx,
                        char *err, size_t errlen);

/* Test hook: fn runs at every COMMIT of this store's connection (SQLite
 * commit hook); returning non-zero turns the COMMIT into a rollback.
 * NULL removes it. Not for production use. */
void gw_store_test_set_commit_hook(struct gw_store *st, int (*fn)(void *), void *ctx);

#endif
