/*
 * The SQLite backend of the store, inside: what its files share (the
 * connection, the lock, the statement cache) and the calls of its table
 * (ops.c). Nothing outside gateway/store/sqlite/ includes this, but the
 * tests that look at a store file from inside.
 */
#ifndef GW_STORE_SQLITE_H
#define GW_STORE_SQLITE_H

#include "backend.h"

/* ---- The files of this backend (appstore.c, authtotp.c) ----
 *
 * The schema of every table lives in store.c's migrations[] (one list, one
 * version number; auth_totp and auth_lockout are made on first use). The
 * backend's other files run their own SQL on the store's connection:
 *
 *   gw_store_lock(st);                    // or gw_store_tx_begin()
 *   sqlite3 *db = gw_store_db(st);
 *   ... prepare / step / finalize ...
 *   gw_store_unlock(st);
 *
 * Hold the lock from the first to the last sqlite3_* call of a sequence
 * (and while reading sqlite3_errmsg), never across a blocking wait for
 * another thread (e.g. gw_audit_record: the audit writer takes this lock).
 * Inside a gw_audit_apply_fn the writer already holds it (recursive: taking
 * it again is fine) and a transaction is open: use gw_store_tx_* (they nest
 * as SAVEPOINTs), never a raw BEGIN/COMMIT.
 */
struct sqlite3;
struct sqlite3 *gw_store_db(struct gw_store *st);
void gw_store_lock(struct gw_store *st);
void gw_store_unlock(struct gw_store *st);

/* A prepared statement for sql, parsed on first use and kept until the
 * store closes; reset and unbound on every return. sql must be a string
 * with static storage (its address is the key). Call with the store lock
 * held; do not finalize the result. NULL on a prepare error. */
struct sqlite3_stmt *gw_store_cached(struct gw_store *st, const char *sql);

/* ---- the calls of gw_store_sqlite_ops (store.h and appstore.h say what
 * each does) ---- */
void gw_sqlite_close(struct gw_store **st);
int gw_sqlite_password_get(struct gw_store *st, const char *user, char *hash, size_t hashlen);
int gw_sqlite_password_set(struct gw_store *st, const char *user, const char *hash);
int gw_sqlite_binding_set(struct gw_store *st, const struct gw_store_binding *b, char *err,
                          size_t errlen);
int gw_sqlite_known_keys_set(struct gw_store *st, const struct gw_store_known_key *keys, size_t n,
                             char *err, size_t errlen);
int gw_sqlite_tx_begin(struct gw_store *st, char *err, size_t errlen);
int gw_sqlite_tx_commit(struct gw_store *st, char *err, size_t errlen);
void gw_sqlite_tx_rollback(struct gw_store *st);
bool gw_sqlite_tx_alive(struct gw_store *st);
int gw_sqlite_schema_version(struct gw_store *st);
int gw_sqlite_audit_insert(struct gw_store *st, const struct gw_audit_row *row, char *err,
                           size_t errlen);
int gw_sqlite_audit_append(struct gw_store *st, const struct gw_audit_row *rows, size_t n,
                           char *err, size_t errlen);
int gw_sqlite_audit_head(struct gw_store *st, uint64_t *seq, uint8_t hash[32], char *err,
                         size_t errlen);
int gw_sqlite_audit_scan(struct gw_store *st, gw_store_audit_fn fn, void *ctx, char *err,
                         size_t errlen);
int gw_sqlite_audit_query(struct gw_store *st, const struct gw_audit_filter *f,
                          gw_store_audit_fn fn, void *ctx, char *err, size_t errlen);
int gw_sqlite_checkpoint_add(struct gw_store *st, const struct gw_audit_checkpoint *cp, char *err,
                             size_t errlen);
int gw_sqlite_checkpoint_last(struct gw_store *st, struct gw_audit_checkpoint *last,
                              uint64_t *next_id, char *err, size_t errlen);
int gw_sqlite_checkpoint_max_id(struct gw_store *st, uint64_t *id, char *err, size_t errlen);
int gw_sqlite_checkpoint_scan(struct gw_store *st, uint64_t from_seq, uint64_t to_seq,
                              gw_store_checkpoint_fn fn, void *ctx, char *err, size_t errlen);
void gw_sqlite_batch_begin(struct gw_store *st);
void gw_sqlite_batch_images(struct gw_store *st);
int gw_sqlite_batch_durable(struct gw_store *st, uint64_t first_seq, uint64_t last_seq, char *err,
                            size_t errlen);
void gw_sqlite_batch_end(struct gw_store *st);
void gw_sqlite_get_redo_stats(struct gw_store *st, struct gw_store_redo_stats *out);
void gw_sqlite_release_memory(struct gw_store *st);
bool gw_sqlite_mark_test(struct gw_store *st, const void *key);
void gw_sqlite_mark_set(struct gw_store *st, const void *key);
int gw_sqlite_attempts_init(struct gw_store *st, char *err, size_t errlen);
int gw_sqlite_attempts_get(struct gw_store *st, const char *user, int64_t key, int64_t now,
                           struct gw_store_attempts *out);
int gw_sqlite_attempt_take(struct gw_store *st, const char *user, int64_t key, int64_t now,
                           unsigned max, unsigned ttl, struct gw_store_attempts *row);
int gw_sqlite_attempt_end(struct gw_store *st, const char *user, int64_t key, int64_t now,
                          enum gw_attempt_outcome outcome, unsigned max, unsigned lockout_s,
                          unsigned lockout_cap, struct gw_store_attempts *row);
int gw_sqlite_attempts_clear(struct gw_store *st, const char *user);
int gw_sqlite_totp_init(struct gw_store *st, char *err, size_t errlen);
int gw_sqlite_totp_enrolled(struct gw_store *st, const char *user);
int gw_sqlite_totp_put(struct gw_store *st, const char *user, const uint8_t *sealed,
                       size_t sealed_len, uint64_t counter, char *err, size_t errlen);
int gw_sqlite_totp_delete(struct gw_store *st, const char *user);
int gw_sqlite_totp_get(struct gw_store *st, const char *user, uint8_t *sealed, size_t *sealed_len,
                       uint64_t *last);
int gw_sqlite_totp_advance(struct gw_store *st, const char *user, uint64_t ctr);
int gw_sqlite_totp_key_put(struct gw_store *st, const char *site, const uint8_t *der, size_t len,
                      char *err, size_t errlen);
int gw_sqlite_totp_keys(struct gw_store *st,
                   void (*fn)(void *arg, const char *site, const uint8_t *der, size_t len),
                   void *arg);
int gw_sqlite_totp_copy_put(struct gw_store *st, const char *user, const char *site,
                       const uint8_t *sealed, size_t len, const char *from_site,
                       const uint8_t *from, size_t from_len, char *err, size_t errlen);
int gw_sqlite_totp_copy_get(struct gw_store *st, const char *user, const char *site,
                       uint8_t *sealed, size_t *len);
int gw_sqlite_app_get(struct gw_store *st, int64_t id, struct gw_application *app);
int gw_sqlite_app_insert_tx(struct gw_store *st, struct gw_application *app, char *err,
                            size_t errlen);
int gw_sqlite_app_lock_tx(struct gw_store *st, int64_t id, struct gw_application *app);
int gw_sqlite_app_update_tx(struct gw_store *st, const struct gw_application *app,
                            enum gw_app_state from, unsigned from_level, time_t now, char *err,
                            size_t errlen);
int gw_sqlite_app_spend_tx(struct gw_store *st, int64_t id, time_t now, char *err, size_t errlen);
int gw_sqlite_app_refund_tx(struct gw_store *st, int64_t id, time_t now, char *err, size_t errlen);
int gw_sqlite_app_page(struct gw_store *st, const struct gw_app_filter *f, bool oldest_first,
                       int64_t from, int64_t *ids, size_t max, size_t *n);
int gw_sqlite_app_due_to_expire(struct gw_store *st, time_t now, int64_t *ids, size_t max, size_t *n);
int gw_sqlite_quota_get(struct gw_store *st, const char *seal, const char *period,
                        const char *person, uint64_t *used);
int gw_sqlite_quota_sub_tx(struct gw_store *st, const char *seal, const char *period,
                           const char *person, char *err, size_t errlen);
int gw_sqlite_quota_add_tx(struct gw_store *st, const char *seal, const char *period,
                           const char *person, uint64_t limit, char *err, size_t errlen);

int gw_sqlite_set_site(struct gw_store *st, const char *site, char *err, size_t errlen);
int gw_sqlite_site_claim(struct gw_store *st, char *err, size_t errlen);
int gw_sqlite_binding_get(struct gw_store *st, struct gw_store_binding *b, char *err,
                          size_t errlen);
int gw_sqlite_known_keys_get(struct gw_store *st,
                             int (*fn)(void *arg, const char *uri, const uint8_t *blob, size_t len),
                             void *arg, char *err, size_t errlen);

/* sessions (sessionstore.h; sqlite/sessionstore.c) */
int gw_sqlite_session_init(struct gw_store *st, char *err, size_t errlen);
int gw_sqlite_session_put(struct gw_store *st, const struct gw_session_row *row, int64_t now,
                          char *err, size_t errlen);
int gw_sqlite_session_touch(struct gw_store *st, const uint8_t id[GW_SESSION_ID_LEN], int64_t now,
                            struct gw_session_row *out);
int gw_sqlite_session_end(struct gw_store *st, const uint8_t id[GW_SESSION_ID_LEN],
                          char user[GW_SESSION_USER_MAX + 1]);
int gw_sqlite_session_end_user(struct gw_store *st, const char *user);

/* documents (docstore.h; sqlite/docstore.c) */
int gw_sqlite_doc_put(struct gw_store *st, const struct gw_doc_info *info, const uint8_t *data,
                      char *err, size_t errlen);
int gw_sqlite_doc_info(struct gw_store *st, const uint8_t sha256[32], struct gw_doc_info *out);
int gw_sqlite_doc_read(struct gw_store *st, const uint8_t sha256[32], uint64_t offset, uint8_t *buf,
                       size_t len, size_t *got);
int gw_sqlite_doc_apps(struct gw_store *st, const uint8_t sha256[32], int64_t *ids, size_t max,
                       size_t *n);

#endif
