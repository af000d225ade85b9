/*
 * The PostgreSQL backend of the store, inside: the connection, its lock and
 * the helpers its files share (store.c, authtotp.c, appstore.c, audit.c),
 * and the calls of its table (ops.c). Nothing outside gateway/store/pg/
 * includes this.
 */
#ifndef GW_STORE_PG_H
#define GW_STORE_PG_H

#include "backend.h"

#include <pthread.h>
#include <libpq-fe.h>

#define GW_PG_TX_DEPTH_MAX 32
#define GW_PG_MARKS_MAX 16
#define GW_PG_PENDING_MAX 8

/* One connection per store, used by one thread at a time: libpq's
 * connections are not for concurrent use, and a statement run by the
 * thread holding lock belongs to that thread's open transaction, as on
 * SQLite (store.h, "Thread safety"). Two stores (two gateways, or two
 * handles of one test) are two connections: the database, not this lock,
 * decides between them. */
struct gw_store {
	struct gw_store_head head;   /* first: the table of calls (backend.h) */
	PGconn *conn;
	pthread_mutex_t lock;        /* recursive */
	unsigned tx_depth;           /* changed only by the thread holding lock */
	const void *marks[GW_PG_MARKS_MAX];
	size_t n_marks;
	/* The connection is set up (session settings, and the site's claim
	 * when claimed): false after a reconnection that did not finish, so
	 * that the next call outside a transaction tries again. */
	bool ready;
	bool reconnecting;           /* inside gw_pg_reconnect: no second try */
	bool claimed;                /* gw_store_site_claim took the site */
	/* audit.c: the rows of an audit batch, INSERTed together just
	 * before its COMMIT; rows_at[d] is gw_pg_rows_mark when level d
	 * began, for a rollback to it. */
	struct gw_pg_rows *rows;
	size_t rows_at[GW_PG_TX_DEPTH_MAX];
	/* SAVEPOINT and RELEASE SAVEPOINT not sent yet: they go ahead of
	 * the next statement, in one round trip with it (store.c). */
	char pending[GW_PG_PENDING_MAX][40];
	unsigned n_pending;
	/* The statements of enum gw_pg_stmt prepared on this connection (a
	 * bit each), cleared when it is replaced. */
	uint32_t prepared;
	/* The COMMIT sent in one pipeline with the batch's last audit
	 * INSERT: wanted by gw_pg_tx_commit, asked for (commit_after) by
	 * gw_pg_rows_flush for that INSERT, its result kept in commit_res
	 * for gw_pg_tx_commit. */
	bool commit_wanted, commit_after, commit_sent;
	PGresult *commit_res;
};

/* The statements of the sign path, prepared once per connection
 * (gw_pg_exec_prepared): the server parses and plans them once, not on
 * every signature. */
enum gw_pg_stmt {
	GW_PG_STMT_QUOTA_ADD_ALL,
	GW_PG_STMT_APP_SPEND,
	/* the audit batch's INSERT of 1 … GW_PG_INSERT_PREPARED rows (audit.c):
	 * its statement is that of its row count */
	GW_PG_STMT_AUDIT_INSERT_1,
	GW_PG_STMT_MAX = GW_PG_STMT_AUDIT_INSERT_1 + 16
};
#define GW_PG_INSERT_PREPARED 16
/* (a bit each in struct gw_store's prepared) */
_Static_assert(GW_PG_STMT_MAX <= 32, "more prepared statements than bits");

/* Runs sql with n text parameters (vals[i] NULL = SQL NULL; lens/fmts NULL
 * = all text, else fmts[i] 1 = binary of lens[i] bytes), results in text.
 * The result when its status is want (PQclear it), else NULL with err set
 * (and logged when err is NULL). Call with the lock held. */
PGresult *gw_pg_exec(struct gw_store *st, const char *sql, int n, const char *const *vals,
                     const int *lens, const int *fmts, ExecStatusType want, char *err,
                     size_t errlen);
/* gw_pg_exec with results in binary (result_format 1) or text (0). */
PGresult *gw_pg_exec_fmt(struct gw_store *st, const char *sql, int n, const char *const *vals,
                         const int *lens, const int *fmts, ExecStatusType want,
                         int result_format, char *err, size_t errlen);
/* gw_pg_exec of the statement id, whose text is sql (the same on every
 * call), prepared on the connection the first time (one round trip more,
 * once per connection), with n text parameters. */
PGresult *gw_pg_exec_prepared(struct gw_store *st, enum gw_pg_stmt id, const char *sql, int n,
                              const char *const *vals, ExecStatusType want, char *err,
                              size_t errlen);
/* gw_pg_exec_prepared with parameters as gw_pg_exec takes them (lens/fmts:
 * binary ones). */
PGresult *gw_pg_exec_prepared_fmt(struct gw_store *st, enum gw_pg_stmt id, const char *sql,
                                  int n, const char *const *vals, const int *lens,
                                  const int *fmts, ExecStatusType want, char *err,
                                  size_t errlen);
/* The row count of a command's result (UPDATE, DELETE, INSERT). */
int gw_pg_changes(PGresult *r);
/* Takes the advisory lock of the store's site on this connection: 0, or
 * -1 with err naming who holds it. Call with the lock held. */
int gw_pg_claim_locked(struct gw_store *st, char *err, size_t errlen);

/* ---- the calls of gw_store_pg_ops (store.h says what each does) ---- */
void gw_pg_close(struct gw_store **st);
int gw_pg_ping(struct gw_store *st, char *err, size_t errlen);
int gw_pg_password_get(struct gw_store *st, const char *user, char *hash, size_t hashlen);
int gw_pg_password_set(struct gw_store *st, const char *user, const char *hash);
int gw_pg_binding_set(struct gw_store *st, const struct gw_store_binding *b, char *err,
                      size_t errlen);
int gw_pg_known_keys_set(struct gw_store *st, const struct gw_store_known_key *keys, size_t n,
                         char *err, size_t errlen);
int gw_pg_tx_begin(struct gw_store *st, char *err, size_t errlen);
int gw_pg_tx_commit(struct gw_store *st, char *err, size_t errlen);
void gw_pg_tx_rollback(struct gw_store *st);
bool gw_pg_tx_alive(struct gw_store *st);
int gw_pg_schema_version(struct gw_store *st);
bool gw_pg_mark_test(struct gw_store *st, const void *key);
void gw_pg_mark_set(struct gw_store *st, const void *key);
int gw_pg_attempts_init(struct gw_store *st, char *err, size_t errlen);
int gw_pg_attempts_get(struct gw_store *st, const char *user, int64_t key, int64_t now,
                       struct gw_store_attempts *out);
int gw_pg_attempt_take(struct gw_store *st, const char *user, int64_t key, int64_t now,
                       unsigned max, unsigned ttl, struct gw_store_attempts *row);
int gw_pg_attempt_end(struct gw_store *st, const char *user, int64_t key, int64_t now,
                      enum gw_attempt_outcome outcome, unsigned max, unsigned lockout_s,
                      unsigned lockout_cap, struct gw_store_attempts *row);
int gw_pg_attempts_clear(struct gw_store *st, const char *user);
int gw_pg_totp_init(struct gw_store *st, char *err, size_t errlen);
int gw_pg_totp_enrolled(struct gw_store *st, const char *user);
int gw_pg_totp_put(struct gw_store *st, const char *user, const uint8_t *sealed,
                   size_t sealed_len, uint64_t counter, char *err, size_t errlen);
int gw_pg_totp_delete(struct gw_store *st, const char *user);
int gw_pg_totp_get(struct gw_store *st, const char *user, uint8_t *sealed, size_t *sealed_len,
                   uint64_t *last);
int gw_pg_totp_advance(struct gw_store *st, const char *user, uint64_t ctr);
int gw_pg_totp_key_put(struct gw_store *st, const char *site, const uint8_t *der, size_t len,
                      char *err, size_t errlen);
int gw_pg_totp_keys(struct gw_store *st,
                   void (*fn)(void *arg, const char *site, const uint8_t *der, size_t len),
                   void *arg);
int gw_pg_totp_copy_put(struct gw_store *st, const char *user, const char *site,
                       const uint8_t *sealed, size_t len, const char *from_site,
                       const uint8_t *from, size_t from_len, char *err, size_t errlen);
int gw_pg_totp_copy_get(struct gw_store *st, const char *user, const char *site,
                       uint8_t *sealed, size_t *len);
/* appstore.c (truth) */
int gw_pg_app_get(struct gw_store *st, int64_t id, struct gw_application *app);
int gw_pg_app_lock_tx(struct gw_store *st, int64_t id, struct gw_application *app);
int gw_pg_app_insert_tx(struct gw_store *st, struct gw_application *app, char *err,
                        size_t errlen);
int gw_pg_app_update_tx(struct gw_store *st, const struct gw_application *app,
                        enum gw_app_state from, unsigned from_level, time_t now, char *err,
                        size_t errlen);
int gw_pg_app_spend_tx(struct gw_store *st, int64_t id, time_t now, char *err, size_t errlen);
int gw_pg_app_refund_tx(struct gw_store *st, int64_t id, time_t now, char *err, size_t errlen);
int gw_pg_app_page(struct gw_store *st, const struct gw_app_filter *f, bool oldest_first,
                   int64_t from, int64_t *ids, size_t max, size_t *n);
int gw_pg_app_due_to_expire(struct gw_store *st, time_t now, int64_t *ids, size_t max,
                            size_t *n);
int gw_pg_quota_get(struct gw_store *st, const char *seal, const char *period,
                    const char *person, uint64_t *used);
int gw_pg_quota_add_tx(struct gw_store *st, const char *seal, const char *period,
                       const char *person, uint64_t limit, char *err, size_t errlen);
int gw_pg_quota_add_all_tx(struct gw_store *st, const struct gw_appstore_quota_unit *u,
                           size_t n, size_t *full, char *err, size_t errlen);
int gw_pg_quota_sub_tx(struct gw_store *st, const char *seal, const char *period,
                       const char *person, char *err, size_t errlen);
/* sites (store.c) */
int gw_pg_set_site(struct gw_store *st, const char *site, char *err, size_t errlen);
int gw_pg_site_claim(struct gw_store *st, char *err, size_t errlen);
int gw_pg_binding_get(struct gw_store *st, struct gw_store_binding *b, char *err, size_t errlen);
int gw_pg_known_keys_get(struct gw_store *st,
                         int (*fn)(void *arg, const char *uri, const uint8_t *blob, size_t len),
                         void *arg, char *err, size_t errlen);
/* the audit log, checkpoints and audit batches (audit.c) */
int gw_pg_audit_insert(struct gw_store *st, const struct gw_audit_row *row, char *err,
                       size_t errlen);
int gw_pg_audit_append(struct gw_store *st, const struct gw_audit_row *rows, size_t n,
                       char *err, size_t errlen);
int gw_pg_audit_head(struct gw_store *st, uint64_t *seq, uint8_t hash[32], char *err,
                     size_t errlen);
int gw_pg_audit_scan(struct gw_store *st, gw_store_audit_fn fn, void *ctx, char *err,
                     size_t errlen);
int gw_pg_audit_query(struct gw_store *st, const struct gw_audit_filter *f,
                      gw_store_audit_fn fn, void *ctx, char *err, size_t errlen);
int gw_pg_checkpoint_add(struct gw_store *st, const struct gw_audit_checkpoint *cp, char *err,
                         size_t errlen);
int gw_pg_checkpoint_last(struct gw_store *st, struct gw_audit_checkpoint *last,
                          uint64_t *next_id, char *err, size_t errlen);
int gw_pg_checkpoint_max_id(struct gw_store *st, uint64_t *id, char *err, size_t errlen);
int gw_pg_checkpoint_scan(struct gw_store *st, uint64_t from_seq, uint64_t to_seq,
                          gw_store_checkpoint_fn fn, void *ctx, char *err, size_t errlen);
/* The batch's waiting rows (audit.c), for the transaction calls of
 * store.c: a mark of how many were given; dropping those given after a
 * mark (after a rollback to its level); INSERTing them (before the
 * COMMIT: -1 when one was lost, and the COMMIT must not be sent). */
size_t gw_pg_rows_mark(struct gw_store *st);
void gw_pg_rows_undo(struct gw_store *st, size_t mark);
int gw_pg_rows_flush(struct gw_store *st, char *err, size_t errlen);
void gw_pg_batch_begin(struct gw_store *st);
void gw_pg_batch_images(struct gw_store *st);
int gw_pg_batch_durable(struct gw_store *st, uint64_t first_seq, uint64_t last_seq, char *err,
                        size_t errlen);
void gw_pg_batch_end(struct gw_store *st);

/* sessions (sessionstore.h; pg/sessionstore.c) */
int gw_pg_session_init(struct gw_store *st, char *err, size_t errlen);
int gw_pg_session_put(struct gw_store *st, const struct gw_session_row *row, int64_t now,
                      char *err, size_t errlen);
int gw_pg_session_touch(struct gw_store *st, const uint8_t id[GW_SESSION_ID_LEN], int64_t now,
                        struct gw_session_row *out);
int gw_pg_session_end(struct gw_store *st, const uint8_t id[GW_SESSION_ID_LEN],
                      char user[GW_SESSION_USER_MAX + 1]);
int gw_pg_session_end_user(struct gw_store *st, const char *user);

/* documents (docstore.h; pg/docstore.c) */
int gw_pg_doc_put(struct gw_store *st, const struct gw_doc_info *info, const uint8_t *data,
                  char *err, size_t errlen);
int gw_pg_doc_info(struct gw_store *st, const uint8_t sha256[32], struct gw_doc_info *out);
int gw_pg_doc_read(struct gw_store *st, const uint8_t sha256[32], uint64_t offset, uint8_t *buf,
                   size_t len, size_t *got);
int gw_pg_doc_apps(struct gw_store *st, const uint8_t sha256[32], int64_t *ids, size_t max,
                   size_t *n);

#endif
