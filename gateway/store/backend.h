/*
 * What a store backend implements: the table of calls behind store.h and
 * appstore.h. store.c (beside this file) turns each public call into one
 * call through the store's table, so the gateway never knows which
 * backend it runs on. SQLite (sqlite/) is the gateway's backend; the pg
 * backend (pg/) has its own table beside it (docs/store.md).
 */
#ifndef GW_STORE_BACKEND_H
#define GW_STORE_BACKEND_H

#include "store.h"
#include "appstore.h"
#include "policystore.h"
#include "migrate.h"
#include "docstore.h"
#include "outbox.h"
#include "alertstore.h"
#include "sessionstore.h"

/* Every call of the interface but the ones that open a store (they pick
 * the backend) or read a store file without opening it (_peek), with the
 * same arguments and meaning as in store.h and appstore.h. */
struct gw_store_ops {
	const char *name;             /* "sqlite", "postgresql" */
	void (*close)(struct gw_store **st);
	/* NULL: the store is a file of this machine, reachable while open. */
	int (*ping)(struct gw_store *st, char *err, size_t errlen);
	int (*password_get)(struct gw_store *st, const char *user, char *hash, size_t hashlen);
	int (*password_set)(struct gw_store *st, const char *user, const char *hash);
	int (*binding_set)(struct gw_store *st, const struct gw_store_binding *b, char *err,
	                   size_t errlen);
	int (*known_keys_set)(struct gw_store *st, const struct gw_store_known_key *keys, size_t n,
	                      char *err, size_t errlen);
	int (*tx_begin)(struct gw_store *st, char *err, size_t errlen);
	int (*tx_commit)(struct gw_store *st, char *err, size_t errlen);
	void (*tx_rollback)(struct gw_store *st);
	bool (*tx_alive)(struct gw_store *st);
	int (*schema_version)(struct gw_store *st);
	int (*audit_insert)(struct gw_store *st, const struct gw_audit_row *row, char *err,
	                    size_t errlen);
	int (*audit_append)(struct gw_store *st, const struct gw_audit_row *rows, size_t n,
	                    char *err, size_t errlen);
	int (*audit_head)(struct gw_store *st, uint64_t *seq, uint8_t hash[32], char *err,
	                  size_t errlen);
	int (*audit_scan)(struct gw_store *st, gw_store_audit_fn fn, void *ctx, char *err,
	                  size_t errlen);
	int (*audit_query)(struct gw_store *st, const struct gw_audit_filter *f,
	                   gw_store_audit_fn fn, void *ctx, char *err, size_t errlen);
	int (*checkpoint_add)(struct gw_store *st, const struct gw_audit_checkpoint *cp, char *err,
	                      size_t errlen);
	int (*checkpoint_last)(struct gw_store *st, struct gw_audit_checkpoint *last,
	                       uint64_t *next_id, char *err, size_t errlen);
	int (*checkpoint_max_id)(struct gw_store *st, uint64_t *id, char *err, size_t errlen);
	int (*checkpoint_scan)(struct gw_store *st, uint64_t from_seq, uint64_t to_seq,
	                       gw_store_checkpoint_fn fn, void *ctx, char *err, size_t errlen);
	void (*batch_begin)(struct gw_store *st);
	void (*batch_images)(struct gw_store *st);
	int (*batch_durable)(struct gw_store *st, uint64_t first_seq, uint64_t last_seq, char *err,
	                     size_t errlen);
	void (*batch_end)(struct gw_store *st);
	void (*get_redo_stats)(struct gw_store *st, struct gw_store_redo_stats *out);
	void (*release_memory)(struct gw_store *st);
	bool (*mark_test)(struct gw_store *st, const void *key);
	void (*mark_set)(struct gw_store *st, const void *key);
	int (*attempts_init)(struct gw_store *st, char *err, size_t errlen);
	int (*attempts_get)(struct gw_store *st, const char *user, int64_t key, int64_t now,
	                    struct gw_store_attempts *out);
	int (*attempt_take)(struct gw_store *st, const char *user, int64_t key, int64_t now,
	                    unsigned max, unsigned ttl, struct gw_store_attempts *row);
	int (*attempt_end)(struct gw_store *st, const char *user, int64_t key, int64_t now,
	                   enum gw_attempt_outcome outcome, unsigned max, unsigned lockout_s,
	                   unsigned lockout_cap, struct gw_store_attempts *row);
	int (*attempts_clear)(struct gw_store *st, const char *user);
	int (*totp_init)(struct gw_store *st, char *err, size_t errlen);
	int (*totp_enrolled)(struct gw_store *st, const char *user);
	int (*totp_put)(struct gw_store *st, const char *user, const uint8_t *sealed,
	                size_t sealed_len, uint64_t counter, char *err, size_t errlen);
	int (*totp_delete)(struct gw_store *st, const char *user);
	int (*totp_get)(struct gw_store *st, const char *user, uint8_t *sealed, size_t *sealed_len,
	                uint64_t *last);
	int (*totp_advance)(struct gw_store *st, const char *user, uint64_t ctr);
	int (*totp_key_put)(struct gw_store *st, const char *site, const uint8_t *der, size_t len,
	                    char *err, size_t errlen);
	int (*totp_keys)(struct gw_store *st,
	                 void (*fn)(void *arg, const char *site, const uint8_t *der, size_t len),
	                 void *arg);
	int (*totp_copy_put)(struct gw_store *st, const char *user, const char *site,
	                     const uint8_t *sealed, size_t len, const char *from_site,
	                     const uint8_t *from, size_t from_len, char *err, size_t errlen);
	int (*totp_copy_get)(struct gw_store *st, const char *user, const char *site,
	                     uint8_t *sealed, size_t *len);
	int (*app_get)(struct gw_store *st, int64_t id, struct gw_application *app);
	int (*app_insert_tx)(struct gw_store *st, struct gw_application *app, char *err,
	                     size_t errlen);
	int (*app_update_tx)(struct gw_store *st, const struct gw_application *app,
	                     enum gw_app_state from, unsigned from_level, time_t now, char *err,
	                     size_t errlen);
	int (*app_spend_tx)(struct gw_store *st, int64_t id, time_t now, char *err, size_t errlen);
	int (*app_refund_tx)(struct gw_store *st, int64_t id, time_t now, char *err, size_t errlen);
	int (*app_page)(struct gw_store *st, const struct gw_app_filter *f, bool oldest_first,
	                int64_t from, int64_t *ids, size_t max, size_t *n);
	int (*app_due_to_expire)(struct gw_store *st, time_t now, int64_t *ids, size_t max,
	                         size_t *n);
	int (*quota_get)(struct gw_store *st, const char *seal, const char *period,
	                 const char *person, uint64_t *used);
	int (*quota_sub_tx)(struct gw_store *st, const char *seal, const char *period,
	                    const char *person, char *err, size_t errlen);
	int (*quota_add_tx)(struct gw_store *st, const char *seal, const char *period,
	                    const char *person, uint64_t limit, char *err, size_t errlen);
	/* sites (store.h): the name is checked and kept in the head by
	 * store.c; the backend checks it may serve it. */
	int (*set_site)(struct gw_store *st, const char *site, char *err, size_t errlen);
	int (*site_claim)(struct gw_store *st, char *err, size_t errlen);
	int (*binding_get)(struct gw_store *st, struct gw_store_binding *b, char *err,
	                   size_t errlen);
	int (*known_keys_get)(struct gw_store *st,
	                      int (*fn)(void *arg, const char *uri, const uint8_t *blob, size_t len),
	                      void *arg, char *err, size_t errlen);
	/* truth (applications, approvals and quotas decided in the store):
	 * appstore.h's gw_appstore_lock_tx. */
	int (*app_lock_tx)(struct gw_store *st, int64_t id, struct gw_application *app);
	/* the policy repository and the change feed (policystore.h). A feed
	 * is the backend's own object; changes_open leaves *feed NULL and
	 * returns 0 when the backend has none (then changes_wait and
	 * changes_close are never called and may be NULL). */
	int (*policy_publish_tx)(struct gw_store *st, const struct gw_policy_version *v, char *err,
	                         size_t errlen);
	int (*policy_get)(struct gw_store *st, int64_t n, struct gw_policy_version *out, char *err,
	                  size_t errlen);
	int (*policy_latest)(struct gw_store *st, int64_t *version, char *err, size_t errlen);
	int (*policy_history)(struct gw_store *st, size_t limit, gw_store_policy_fn fn, void *ctx,
	                      char *err, size_t errlen);
	int (*changes_open)(struct gw_store *st, void **feed, char *err, size_t errlen);
	int (*changes_wait)(void *feed, int timeout_ms, gw_store_change_fn fn, void *ctx, char *err,
	                    size_t errlen);
	void (*changes_close)(void *feed);
	int (*changes_notify_tx)(struct gw_store *st, const char *event, char *err, size_t errlen);
	/* moving a store (migrate.h): export_table calls fn for every row of
	 * table t of the store's site (none when the table was never made),
	 * in migrate.h's order; import_row_tx writes one such row into the
	 * store's site, inside the caller's transaction. NULL when the backend
	 * is not a source (import) or a target (export) of a move. */
	int (*export_table)(struct gw_store *st, enum gw_store_table t, gw_store_row_fn fn,
	                    void *ctx, char *err, size_t errlen);
	int (*import_row_tx)(struct gw_store *st, enum gw_store_table t,
	                     const struct gw_store_value *cols, char *err, size_t errlen);
	/* documents (docstore.h): the files applications are bound to. */
	int (*doc_put)(struct gw_store *st, const struct gw_doc_info *info, const uint8_t *data,
	               char *err, size_t errlen);
	int (*doc_info)(struct gw_store *st, const uint8_t sha256[32], struct gw_doc_info *out);
	int (*doc_read)(struct gw_store *st, const uint8_t sha256[32], uint64_t offset, uint8_t *buf,
	                size_t len, size_t *got);
	int (*doc_apps)(struct gw_store *st, const uint8_t sha256[32], int64_t *ids, size_t max,
	                size_t *n);
	/* quota counters (appstore.h): gw_appstore_quota_add_all_tx. NULL:
	 * store.c calls quota_add_tx for each counter in turn (SQLite, where a
	 * statement costs no round trip). */
	int (*quota_add_all_tx)(struct gw_store *st, const struct gw_appstore_quota_unit *u,
	                        size_t n, size_t *full, char *err, size_t errlen);
	/* the outbox (outbox.h; gateway/notify/): notices waiting to be sent. */
	int (*outbox_init)(struct gw_store *st, char *err, size_t errlen);
	int (*outbox_put_tx)(struct gw_store *st, struct gw_outbox_notice *n, const char *dedupe,
	                     int64_t now, char *err, size_t errlen);
	int (*outbox_claim)(struct gw_store *st, const char *claimer, int64_t now, unsigned lease_s,
	                    struct gw_outbox_notice *out, size_t max, size_t *n, char *err,
	                    size_t errlen);
	int (*outbox_settle_tx)(struct gw_store *st, int64_t id, const char *claimer,
	                        enum gw_outbox_outcome outcome, int64_t next_at, const char *error,
	                        int64_t now, char *err, size_t errlen);
	/* the alerts repository (alertstore.h) */
	int (*alert_init)(struct gw_store *st, char *err, size_t errlen);
	int (*alert_put_tx)(struct gw_store *st, const struct gw_alert_row *a, int64_t *id,
	                    bool *created, char *err, size_t errlen);
	int (*alert_state_tx)(struct gw_store *st, int64_t id, const char *const *from,
	                      const char *state, const char *by, const char *comment, int64_t at,
	                      char *err, size_t errlen);
	int (*alert_list)(struct gw_store *st, const struct gw_alert_filter *f,
	                  gw_alertstore_fn fn, void *ctx, char *err, size_t errlen);
	/* the sessions repository (sessionstore.h; pgsess): logins in the
	 * store, seen by every gateway of it. */
	int (*session_init)(struct gw_store *st, char *err, size_t errlen);
	int (*session_put)(struct gw_store *st, const struct gw_session_row *row, int64_t now,
	                   char *err, size_t errlen);
	int (*session_touch)(struct gw_store *st, const uint8_t id[GW_SESSION_ID_LEN], int64_t now,
	                     struct gw_session_row *out);
	int (*session_end)(struct gw_store *st, const uint8_t id[GW_SESSION_ID_LEN],
	                   char user[GW_SESSION_USER_MAX + 1]);
	int (*session_end_user)(struct gw_store *st, const char *user);
	/* the PostgreSQL sign path's speed (wave5-pgperf): gw_store_tx_errors_end.
	 * NULL: false. */
	bool (*tx_errors_end)(struct gw_store *st);
};

/* What ending an attempt does to its row, the same on every backend (each
 * reads the row and writes it back in one transaction around this): the
 * attempt no longer in flight; a success ends the run of failures and the
 * growing delay; a failure that reaches max locks for lockout_s, doubled
 * for each lockout before, at most lockout_cap, and starts counting anew. */
void gw_store_attempt_settle(struct gw_store_attempts *row, enum gw_attempt_outcome outcome,
                             unsigned max, unsigned lockout_s, unsigned lockout_cap, int64_t now);

/* Every backend's store begins with this, so that the interface finds the
 * table from the opaque struct gw_store pointer alone. */
struct gw_store_head {
	const struct gw_store_ops *ops;
	char site[GW_SITE_MAX + 1];   /* "" = GW_SITE_DEFAULT */
};

extern const struct gw_store_ops gw_store_sqlite_ops;

#ifdef GW_STORE_HAVE_PG
/* The PostgreSQL backend (pg/), built when libpq is found: only its
 * credential repositories are real yet (docs/store.md). Opens the database
 * a libpq URL or conninfo names, migrating its schema up to version upto
 * (0 = latest; for tests of the migrations). 0, or -1 with err. */
extern const struct gw_store_ops gw_store_pg_ops;
int gw_store_pg_open(const char *url, int upto, struct gw_store **out, char *err, size_t errlen);
#endif

#endif
