/*
 * The store's interface: sealgate's runtime state (accounts and their
 * credentials, the audit log and its signed checkpoints, TOTP secrets; and
 * in appstore.h applications, approvals and quota counters), whatever the
 * backend. Each call goes through the store's table of calls (backend.h);
 * SQLite (sqlite/: one database, WAL, synchronous=FULL, the file created
 * mode 0600) is the only backend today. docs/store.md.
 */
#ifndef GW_STORE_H
#define GW_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct gw_store;

int gw_store_open(const char *path, struct gw_store **out, char *err, size_t errlen);
/* Opens the store a URL names: "sqlite:PATH" or a plain path (SQLite, as
 * gw_store_open), "postgresql://…" or "postgres://…" (a libpq URL; the
 * PostgreSQL backend, when built with libpq: docs/store.md). Any other
 * "scheme://" is refused. The gateway itself opens SQLite only for now. */
int gw_store_open_url(const char *url, struct gw_store **out, char *err, size_t errlen);
/* true when url names a PostgreSQL store (whether or not it is built). */
bool gw_store_url_is_pg(const char *url);
void gw_store_close(struct gw_store **st);
/* The backend st runs on: "sqlite" or "postgresql". */
const char *gw_store_backend(struct gw_store *st);
/* Whether the store answers now (outside a transaction: on PostgreSQL one
 * round trip, after one reconnection if the connection was lost). 0, or -1
 * with err ("PostgreSQL store unreachable: …", never a password). Says
 * why a store call failed, for the people refused (docs/sites.md, "When
 * the store fails"). */
int gw_store_ping(struct gw_store *st, char *err, size_t errlen);

/* Credentials. hash is an Argon2id string (crypto_pwhash_str). get returns
 * 1 and fills hash, 0 when the account has no password, -1 on error. */
int gw_store_password_get(struct gw_store *st, const char *user, char *hash, size_t hashlen);
int gw_store_password_set(struct gw_store *st, const char *user, const char *hash);

/* The backend token the store's seals live on (token.h, "Binding"), kept
 * so that a gateway restarted with another token in the reader refuses it
 * before sending a PIN. since: Unix seconds when it was bound. */
struct gw_store_binding {
	char serial[20];
	uint8_t certs[32];
	unsigned ncerts;
	int64_t since;
};
/* Writes the binding (a synced commit). 0 or -1 with err. */
int gw_store_binding_set(struct gw_store *st, const struct gw_store_binding *b,
                         char *err, size_t errlen);
/* Reads the binding from the store file at path, read-only and without
 * the store being open (the gateway reads it before it opens the token;
 * sealgated --check while a gateway runs). 1 found, 0 none (no file yet,
 * or never bound), -1 with err. */
int gw_store_binding_peek(const char *path, struct gw_store_binding *b, char *err, size_t errlen);

/* The public part of the seal keys last found on the bound token (token.h,
 * gw_token_know_key), so the gateway can start while the token is away.
 * _set replaces them all (uri and gw_seal_key_encode bytes each). _peek
 * reads them like gw_store_binding_peek, calling fn for each (fn != 0 stops
 * with an error): the number read, 0 for none, -1 with err. */
struct gw_store_known_key {
	const char *uri;
	const uint8_t *blob;
	size_t len;
};
int gw_store_known_keys_set(struct gw_store *st, const struct gw_store_known_key *keys, size_t n,
                            char *err, size_t errlen);
int gw_store_known_keys_peek(const char *path,
                             int (*fn)(void *arg, const char *uri, const uint8_t *blob, size_t len),
                             void *arg, char *err, size_t errlen);

/* ---- sites ----
 *
 * A group of sites shares one store (PostgreSQL); a SQLite store is one
 * site's. A store handle is scoped to one site: the audit log, its
 * checkpoints, the token binding and the known keys read and written
 * through it are that site's; credentials, lockout, TOTP secrets,
 * applications, approvals and quota counters are the group's.
 * docs/sites.md. */
#define GW_SITE_MAX 32
#define GW_SITE_DEFAULT "main"

/* Scopes st to site (1 to GW_SITE_MAX of [a-z0-9_-]); until called, st is
 * site "main". Call before anything else uses st. 0, or -1 with err (a bad
 * name; a SQLite store that belongs to another site). */
int gw_store_set_site(struct gw_store *st, const char *site, char *err, size_t errlen);
/* The site st is scoped to. */
const char *gw_store_site(struct gw_store *st);
/* Claims the site for the calling gateway for as long as st is open: a
 * second gateway serving the same site of one store is refused, with err
 * saying so. SQLite: nothing to claim (one site per file). 0 or -1. */
int gw_store_site_claim(struct gw_store *st, char *err, size_t errlen);
/* The site's binding and known keys, read through an open store (as
 * gw_store_binding_peek / gw_store_known_keys_peek return). */
int gw_store_binding_get(struct gw_store *st, struct gw_store_binding *b, char *err,
                         size_t errlen);
int gw_store_known_keys_get(struct gw_store *st,
                            int (*fn)(void *arg, const char *uri, const uint8_t *blob, size_t len),
                            void *arg, char *err, size_t errlen);

/*
 * Thread safety (what every backend must give; SQLite: one connection per
 * store, opened in serialized mode (SQLITE_OPEN_FULLMUTEX) and, above that,
 * guarded by the store's own RECURSIVE mutex so that each function's
 * statement sequence (bind, step, reset; BEGIN … COMMIT) is atomic). Every
 * function here may be called from any thread, and from inside a
 * transaction of the same thread (e.g. a gw_audit_apply_fn): the
 * connection is shared, so a statement run by a thread that holds the lock
 * is part of that thread's open transaction.
 */

/* The schema version this build creates and understands. A database with
 * a newer version is refused; an older one is migrated on open. */
#define GW_STORE_SCHEMA_LATEST 8

/* A transaction that nests: the outermost gw_store_tx_begin is BEGIN
 * IMMEDIATE, inner ones are SAVEPOINTs. begin takes the store lock and
 * holds it until the matching commit or rollback. commit of the outermost
 * level is a durable COMMIT (synchronous=FULL); of an inner one, RELEASE.
 * rollback undoes this level only (ROLLBACK TO + RELEASE; ROLLBACK for the
 * outermost). All return 0 or -1 with err; after a failed commit the level
 * is gone (rolled back) either way — do not call rollback for it.
 * A statement error such as SQLITE_FULL may make SQLite roll back the whole
 * transaction by itself: gw_store_tx_alive tells whether it is still open. */
int gw_store_tx_begin(struct gw_store *st, char *err, size_t errlen);
int gw_store_tx_commit(struct gw_store *st, char *err, size_t errlen);
void gw_store_tx_rollback(struct gw_store *st);
bool gw_store_tx_alive(struct gw_store *st);
/* Whether a failed statement outside a savepoint ends the whole
 * transaction on this store (PostgreSQL: the transaction is aborted, its
 * COMMIT answers ROLLBACK, gw_store_tx_alive is false),
 * so that a change that refuses without changing anything and fails only
 * with its transaction needs no savepoint of its own (the audit writer's
 * whole applies, audit.h). SQLite: false (a failed statement is undone by
 * itself, the transaction goes on). */
bool gw_store_tx_errors_end(struct gw_store *st);

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
	/* The site whose chain the row is in: set by scan and query. On
	 * insert NULL (or the store's own site): a row goes into the chain of
	 * the store's site only. */
	const char *site;
};

/* Inserts one row; for a caller inside gw_store_tx_begin (the audit
 * writer). 0, or -1 with err. */
int gw_store_audit_insert(struct gw_store *st, const struct gw_audit_row *row,
                          char *err, size_t errlen);

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

/* ---- audit queries ---- */

/* Filters of gw_store_audit_query; zero/NULL fields do not filter. */
struct gw_audit_filter {
	int64_t from_ns, to_ns;       /* ts_ns in [from_ns, to_ns) when non-zero */
	const char *seal, *actor, *action, *outcome;
	/* Only these actors: a JSON array of account ids, e.g. a department's
	 * people ('["alice","bob"]'); NULL = any actor. */
	const char *actors_json;
	int64_t application;          /* 0 = any */
	const uint8_t *digest; size_t digest_len;   /* doc_digest or signed_digest equals */
	uint64_t after_seq;           /* seq > after_seq (paging) */
	uint64_t upto_seq;            /* seq <= upto_seq when non-zero */
	uint64_t limit;               /* 0 = no limit */
	/* NULL = the store's own site; "*" = every site of the store (rows in
	 * (seq, site) order, each with its site); else that site. */
	const char *site;
};

/* Calls fn for each matching row in seq order, reading in pages (the lock
 * is held one page at a time). fn returning non-zero stops the walk and is
 * returned; -1 with err on a store error; 0 when done. */
int gw_store_audit_query(struct gw_store *st, const struct gw_audit_filter *f,
                         gw_store_audit_fn fn, void *ctx, char *err, size_t errlen);

/* ---- signed checkpoints (audit.c makes them; docs/audit.md) ---- */

struct gw_audit_checkpoint {
	uint64_t id;                  /* 1, 2, 3, …; 0 = not known (an old export) */
	uint64_t seq;                 /* the head it covers; 0 = the empty log */
	int64_t ts_ns;
	uint8_t hash[32];             /* chain hash of record seq */
	const char *alg;              /* "ecdsa-sha256", "rsa-pkcs1-sha256", "ed25519" */
	const uint8_t *sig; size_t sig_len;   /* ECDSA: DER Ecdsa-Sig-Value */
	const uint8_t *cert; size_t cert_len; /* DER X.509 of the audit key, or none */
	/* The checkpoint chain (docs/audit.md, "Checkpoints"): chained
	 * checkpoints also sign the id and the hash of the one before them.
	 * false: a checkpoint made before the chain (SGCHKPT1). */
	bool chained;
	uint64_t prev_id;             /* 0 = the first checkpoint */
	uint8_t prev_hash[32];        /* gw_audit_checkpoint_hash of prev_id */
};

/* Stores cp durably under cp->id (its own transaction). Several may name
 * one seq (a log cut back and grown again). 0 or -1 with err. */
int gw_store_checkpoint_add(struct gw_store *st, const struct gw_audit_checkpoint *cp,
                            char *err, size_t errlen);
/* The checkpoint with the highest id (found 1, none 0, -1 with err; its
 * pointers are malloc'd copies: gw_store_checkpoint_clear), and the id
 * the next one takes: one past the highest id ever given, so that one
 * removed from the end of the table still leaves its gap. */
int gw_store_checkpoint_last(struct gw_store *st, struct gw_audit_checkpoint *last,
                             uint64_t *next_id, char *err, size_t errlen);
void gw_store_checkpoint_clear(struct gw_audit_checkpoint *cp);
/* The highest checkpoint id now (0 = none): what an export includes. */
int gw_store_checkpoint_max_id(struct gw_store *st, uint64_t *id, char *err, size_t errlen);
/* Calls fn for each checkpoint with from_seq <= seq <= to_seq (to_seq 0 =
 * no bound) in (seq, id) order; pointers valid during the call. Return as
 * gw_store_audit_scan. */
typedef int (*gw_store_checkpoint_fn)(void *ctx, const struct gw_audit_checkpoint *cp);
int gw_store_checkpoint_scan(struct gw_store *st, uint64_t from_seq, uint64_t to_seq,
                             gw_store_checkpoint_fn fn, void *ctx, char *err, size_t errlen);

/* ---- audit batches and the redo log (docs/audit.md, "Durability") ----
 *
 * The audit writer's transaction, between gw_store_batch_begin (takes the
 * lock) and gw_store_batch_end (drops it):
 *
 *   gw_store_batch_begin(st);
 *   gw_store_tx_begin(...) ... inserts ...
 *   gw_store_batch_images(st);          // the changed rows, read in the tx
 *   gw_store_tx_commit(...);
 *   if committed: gw_store_batch_durable(st, first_seq, last_seq, ...);
 *   gw_store_batch_end(st);
 *
 * With a redo log the COMMIT writes without syncing and
 * gw_store_batch_durable writes the batch's changes to the log with one
 * fdatasync; without one (or when the log fails) the COMMIT or the WAL
 * sync makes it durable. gw_store_batch_durable: 0 = on disk, -1 = not
 * (err says why; the batch is committed but may be lost on power loss). */
void gw_store_batch_begin(struct gw_store *st);
void gw_store_batch_images(struct gw_store *st);
int gw_store_batch_durable(struct gw_store *st, uint64_t first_seq, uint64_t last_seq,
                           char *err, size_t errlen);
void gw_store_batch_end(struct gw_store *st);

struct gw_store_redo_stats {
	bool on;                    /* batches are made durable by the redo log */
	uint64_t frames;            /* batches written to it */
	uint64_t rounds;            /* times it filled and started over */
	uint64_t store_syncs;       /* WAL syncs of our own */
	uint64_t replayed_frames;   /* batches replayed at open */
	uint64_t wal_restarts;      /* the writer's own checkpoints, after which the WAL starts over */
	size_t used;                /* bytes of the current round */
};
void gw_store_get_redo_stats(struct gw_store *st, struct gw_store_redo_stats *out);

/* Gives the cache pages nobody uses back to the system (an idle gateway). */
void gw_store_release_memory(struct gw_store *st);

/* Test hook: fn runs at every COMMIT of this store's connection (SQLite
 * commit hook); returning non-zero turns the COMMIT into a rollback.
 * NULL removes it. Not for production use. */
void gw_store_test_set_commit_hook(struct gw_store *st, int (*fn)(void *), void *ctx);

/* Marks of what another part has set up in this open store (its tables
 * made on first use), keyed by the address of something static of that
 * part. They live and die with this store: a cache of the store's own
 * address outlives a close, and a store opened next at the same address
 * (malloc hands it out again) would be taken for the old one, its tables
 * never made. */
bool gw_store_mark_test(struct gw_store *st, const void *key);
void gw_store_mark_set(struct gw_store *st, const void *key);

/* ---- sign-in attempts (table auth_lockout; docs/authentication.md,
 * "Lockout") ----
 * Per account and key (-1: the account's own OS logins, else the uid of
 * another OS user acting as it): failures in a row, lockouts in a row, the
 * end of the current lockout, and the attempts being checked now. The
 * store is the truth, so that several gateways on one database share it. */
struct gw_store_attempts {
	int64_t failed, lockouts, locked_until;
	int64_t inflight;             /* attempts being checked (not yet stale) */
};
enum gw_attempt_take { GW_ATTEMPT_LOCKED = 0, GW_ATTEMPT_TAKEN = 1, GW_ATTEMPT_FULL = 2 };
enum gw_attempt_outcome {
	GW_ATTEMPT_OK,                /* accepted: the run of failures ends */
	GW_ATTEMPT_FAILED,            /* a wrong guess: counted, locks at max */
	GW_ATTEMPT_VOID,              /* not a guess (store error, busy): only given back */
};
/* Creates (or extends) the table. 0 or -1 with err. */
int gw_store_attempts_init(struct gw_store *st, char *err, size_t errlen);
/* The row of (user, key) at now (zeros when none). 0 or -1. */
int gw_store_attempts_get(struct gw_store *st, const char *user, int64_t key, int64_t now,
                          struct gw_store_attempts *out);
/* Takes one attempt, atomically, only while not locked and failed +
 * inflight < max; a taken attempt stops counting as in flight ttl seconds
 * after the last one was taken. GW_ATTEMPT_TAKEN, _LOCKED (row: until
 * when), _FULL (max attempts are being checked now), or -1. */
int gw_store_attempt_take(struct gw_store *st, const char *user, int64_t key, int64_t now,
                          unsigned max, unsigned ttl, struct gw_store_attempts *row);
/* Ends a taken attempt with its outcome; a failure that reaches max locks
 * for lockout_s doubled for each lockout in a row, at most lockout_cap.
 * *row is the row after. 0 or -1. */
int gw_store_attempt_end(struct gw_store *st, const char *user, int64_t key, int64_t now,
                         enum gw_attempt_outcome outcome, unsigned max, unsigned lockout_s,
                         unsigned lockout_cap, struct gw_store_attempts *row);
/* Unlock: clears the failures and lockouts of every key of user (a
 * gw_audit_apply_fn may call it). The number of rows, or -1. */
int gw_store_attempts_clear(struct gw_store *st, const char *user);

/* ---- TOTP secrets (table auth_totp; gateway/totp.c seals and opens
 * them, the store keeps bytes) ----
 * A sealed secret is at most GW_TOTP_SEALED_MAX bytes. last_counter is the
 * RFC 6238 step of the last accepted code. */
/* Creates the table when missing. 0 or -1 with err. */
int gw_store_totp_init(struct gw_store *st, char *err, size_t errlen);
/* 1 enrolled, 0 not, -1 store error. */
int gw_store_totp_enrolled(struct gw_store *st, const char *user);
/* Stores user's sealed secret with counter as its last step (replacing an
 * earlier one, and removing every copy of the earlier one: the copies of
 * the new secret follow with gw_store_totp_copy_put). sealed_len 0: no
 * secret sealed on a token's secret key (the copies hold it). 0, or -1
 * with err. */
int gw_store_totp_put(struct gw_store *st, const char *user, const uint8_t *sealed,
                      size_t sealed_len, uint64_t counter, char *err, size_t errlen);
/* 1 removed, 0 none, -1 error. */
int gw_store_totp_delete(struct gw_store *st, const char *user);
/* user's sealed secret (*sealed_len: in, the room; out, the length, 0 when
 * only copies hold it) and last step. 1 found, 0 none, -1 error (also a secret larger than the
 * room). */
int gw_store_totp_get(struct gw_store *st, const char *user, uint8_t *sealed,
                      size_t *sealed_len, uint64_t *last);
/* Moves the last step forward to ctr unless another use got there first:
 * the conditional update's row count decides. 1 recorded, 0 lost the race
 * (the code was used meanwhile), -1 error. */
int gw_store_totp_advance(struct gw_store *st, const char *user, uint64_t ctr);

/* Secrets sealed to each site (table auth_totp_sites, one copy per person
 * and site, at most GW_TOTP_COPY_MAX bytes) and the sites' public keys
 * (table totp_site_keys: SubjectPublicKeyInfo DER, at most
 * GW_STORE_TOTP_KEY_MAX bytes). The store keeps bytes; whether a key is a
 * site's own is totp.c's question (pins outside the store). */
#define GW_STORE_TOTP_KEY_MAX 1024
#define GW_STORE_TOTP_COPY_MAX 1024
/* Publishes site's public key (replacing an earlier one). 0, or -1 with err. */
int gw_store_totp_key_put(struct gw_store *st, const char *site, const uint8_t *der,
                          size_t len, char *err, size_t errlen);
/* Calls fn for each site's key, by site name. The number of keys, or -1. */
int gw_store_totp_keys(struct gw_store *st,
                       void (*fn)(void *arg, const char *site, const uint8_t *der, size_t len),
                       void *arg);
/* Stores user's copy for site (replacing an earlier one); user must be
 * enrolled (gw_store_totp_put). from: what the secret was opened from, so
 * that a copy made after a sign-in is never one of a secret replaced or
 * reset meanwhile: NULL, no condition; from_site NULL, the sealed secret of
 * auth_totp must still be from; else from_site's copy must still be from.
 * 1 stored, 0 not (the condition failed), -1 error with err. */
int gw_store_totp_copy_put(struct gw_store *st, const char *user, const char *site,
                           const uint8_t *sealed, size_t len, const char *from_site,
                           const uint8_t *from, size_t from_len, char *err, size_t errlen);
/* user's copy for site. 1 found, 0 none, -1 error (or larger than *len). */
int gw_store_totp_copy_get(struct gw_store *st, const char *user, const char *site,
                           uint8_t *sealed, size_t *len);

#endif
