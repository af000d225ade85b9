/*
 * The PostgreSQL backend's table of calls. The credential repositories
 * (store.c, authtotp.c) are real; the audit log, checkpoints, audit
 * batches, applications, approvals and quota counters are not on
 * PostgreSQL yet: their entries fail closed with an error that says so,
 * which is also why the gateway refuses a postgresql:// store for now
 * (docs/store.md).
 */
#include "pg_store.h"
#include "pg_policystore.h"
#include "protocol.h"
#include "log.h"

#include <string.h>

#define NOT_YET "not yet on the PostgreSQL store (docs/store.md)"

static int
not_yet(char *err, size_t errlen, const char *what)
{
	if (err != NULL)
		sg_seterr(err, errlen, "%s: " NOT_YET, what);
	else
		gw_log_error("store: %s: " NOT_YET, what);
	return -1;
}

static int
pg_audit_insert(struct gw_store *st, const struct gw_audit_row *row, char *err, size_t errlen)
{
	(void)st; (void)row;
	return not_yet(err, errlen, "the audit log");
}

static int
pg_audit_append(struct gw_store *st, const struct gw_audit_row *rows, size_t n, char *err,
                size_t errlen)
{
	(void)st; (void)rows; (void)n;
	return not_yet(err, errlen, "the audit log");
}

static int
pg_audit_head(struct gw_store *st, uint64_t *seq, uint8_t hash[32], char *err, size_t errlen)
{
	(void)st; (void)seq; (void)hash;
	return not_yet(err, errlen, "the audit log");
}

static int
pg_audit_scan(struct gw_store *st, gw_store_audit_fn fn, void *ctx, char *err, size_t errlen)
{
	(void)st; (void)fn; (void)ctx;
	return not_yet(err, errlen, "the audit log");
}

static int
pg_audit_query(struct gw_store *st, const struct gw_audit_filter *f, gw_store_audit_fn fn,
               void *ctx, char *err, size_t errlen)
{
	(void)st; (void)f; (void)fn; (void)ctx;
	return not_yet(err, errlen, "the audit log");
}

static int
pg_checkpoint_add(struct gw_store *st, const struct gw_audit_checkpoint *cp, char *err,
                  size_t errlen)
{
	(void)st; (void)cp;
	return not_yet(err, errlen, "audit checkpoints");
}

static int
pg_checkpoint_last(struct gw_store *st, struct gw_audit_checkpoint *last, uint64_t *next_id,
                   char *err, size_t errlen)
{
	(void)st; (void)last; (void)next_id;
	return not_yet(err, errlen, "audit checkpoints");
}

static int
pg_checkpoint_max_id(struct gw_store *st, uint64_t *id, char *err, size_t errlen)
{
	(void)st; (void)id;
	return not_yet(err, errlen, "audit checkpoints");
}

static int
pg_checkpoint_scan(struct gw_store *st, uint64_t from_seq, uint64_t to_seq,
                   gw_store_checkpoint_fn fn, void *ctx, char *err, size_t errlen)
{
	(void)st; (void)from_seq; (void)to_seq; (void)fn; (void)ctx;
	return not_yet(err, errlen, "audit checkpoints");
}

/* The batch calls keep their pairing (begin takes the lock, end drops
 * it) so that a caller's cleanup is right; no batch is ever durable. */
static void
pg_batch_begin(struct gw_store *st)
{
	pthread_mutex_lock(&st->lock);
}

static void
pg_batch_images(struct gw_store *st)
{
	(void)st;
}

static int
pg_batch_durable(struct gw_store *st, uint64_t first_seq, uint64_t last_seq, char *err,
                 size_t errlen)
{
	(void)st; (void)first_seq; (void)last_seq;
	return not_yet(err, errlen, "audit batches");
}

static void
pg_batch_end(struct gw_store *st)
{
	pthread_mutex_unlock(&st->lock);
}

/* No redo log on PostgreSQL: its WAL does that job. */
static void
pg_get_redo_stats(struct gw_store *st, struct gw_store_redo_stats *out)
{
	(void)st;
	memset(out, 0, sizeof(*out));
}

static void
pg_release_memory(struct gw_store *st)
{
	(void)st;
}

static int64_t
pg_app_max_id(struct gw_store *st)
{
	(void)st;
	return not_yet(NULL, 0, "applications");
}

static int
pg_app_get(struct gw_store *st, int64_t id, struct gw_application *app)
{
	(void)st; (void)id; (void)app;
	return not_yet(NULL, 0, "applications");
}

static int
pg_app_insert_tx(struct gw_store *st, const struct gw_application *app, char *err, size_t errlen)
{
	(void)st; (void)app;
	return not_yet(err, errlen, "applications");
}

static int
pg_app_update_tx(struct gw_store *st, const struct gw_application *app, enum gw_app_state from,
                 unsigned from_level, time_t now, char *err, size_t errlen)
{
	(void)st; (void)app; (void)from; (void)from_level; (void)now;
	return not_yet(err, errlen, "applications");
}

static int
pg_app_spend_tx(struct gw_store *st, int64_t id, time_t now, char *err, size_t errlen)
{
	(void)st; (void)id; (void)now;
	return not_yet(err, errlen, "applications");
}

static int
pg_app_refund_tx(struct gw_store *st, int64_t id, time_t now, char *err, size_t errlen)
{
	(void)st; (void)id; (void)now;
	return not_yet(err, errlen, "applications");
}

static int
pg_app_page(struct gw_store *st, const struct gw_app_filter *f, bool oldest_first, int64_t from,
            int64_t *ids, size_t max, size_t *n)
{
	(void)st; (void)f; (void)oldest_first; (void)from; (void)ids; (void)max;
	*n = 0;
	return not_yet(NULL, 0, "applications");
}

static int
pg_app_due_to_expire(struct gw_store *st, time_t now, int64_t *ids, size_t max, size_t *n)
{
	(void)st; (void)now; (void)ids; (void)max;
	*n = 0;
	return not_yet(NULL, 0, "applications");
}

static int
pg_quota_get(struct gw_store *st, const char *seal, const char *period, const char *person,
             uint64_t *used)
{
	(void)st; (void)seal; (void)period; (void)person; (void)used;
	return not_yet(NULL, 0, "quota counters");
}

static int
pg_quota_sub_tx(struct gw_store *st, const char *seal, const char *period, const char *person,
                char *err, size_t errlen)
{
	(void)st; (void)seal; (void)period; (void)person;
	return not_yet(err, errlen, "quota counters");
}

static int
pg_quota_add_tx(struct gw_store *st, const char *seal, const char *period, const char *person,
                char *err, size_t errlen)
{
	(void)st; (void)seal; (void)period; (void)person;
	return not_yet(err, errlen, "quota counters");
}

static int
pg_set_site(struct gw_store *st, const char *site, char *err, size_t errlen)
{
	(void)st; (void)site;
	return not_yet(err, errlen, "sites");
}

static int
pg_site_claim(struct gw_store *st, char *err, size_t errlen)
{
	(void)st;
	return not_yet(err, errlen, "sites");
}

static int
pg_binding_get(struct gw_store *st, struct gw_store_binding *b, char *err, size_t errlen)
{
	(void)st;
	memset(b, 0, sizeof(*b));
	return not_yet(err, errlen, "the token binding");
}

static int
pg_known_keys_get(struct gw_store *st,
                  int (*fn)(void *arg, const char *uri, const uint8_t *blob, size_t len),
                  void *arg, char *err, size_t errlen)
{
	(void)st; (void)fn; (void)arg;
	return not_yet(err, errlen, "the known keys");
}

const struct gw_store_ops gw_store_pg_ops = {
	.name = "postgresql",
	.close = gw_pg_close,
	.password_get = gw_pg_password_get,
	.password_set = gw_pg_password_set,
	.binding_set = gw_pg_binding_set,
	.known_keys_set = gw_pg_known_keys_set,
	.tx_begin = gw_pg_tx_begin,
	.tx_commit = gw_pg_tx_commit,
	.tx_rollback = gw_pg_tx_rollback,
	.tx_alive = gw_pg_tx_alive,
	.schema_version = gw_pg_schema_version,
	.audit_insert = pg_audit_insert,
	.audit_append = pg_audit_append,
	.audit_head = pg_audit_head,
	.audit_scan = pg_audit_scan,
	.audit_query = pg_audit_query,
	.checkpoint_add = pg_checkpoint_add,
	.checkpoint_last = pg_checkpoint_last,
	.checkpoint_max_id = pg_checkpoint_max_id,
	.checkpoint_scan = pg_checkpoint_scan,
	.batch_begin = pg_batch_begin,
	.batch_images = pg_batch_images,
	.batch_durable = pg_batch_durable,
	.batch_end = pg_batch_end,
	.get_redo_stats = pg_get_redo_stats,
	.release_memory = pg_release_memory,
	.mark_test = gw_pg_mark_test,
	.mark_set = gw_pg_mark_set,
	.attempts_init = gw_pg_attempts_init,
	.attempts_get = gw_pg_attempts_get,
	.attempt_take = gw_pg_attempt_take,
	.attempt_end = gw_pg_attempt_end,
	.attempts_clear = gw_pg_attempts_clear,
	.totp_init = gw_pg_totp_init,
	.totp_enrolled = gw_pg_totp_enrolled,
	.totp_put = gw_pg_totp_put,
	.totp_delete = gw_pg_totp_delete,
	.totp_get = gw_pg_totp_get,
	.totp_advance = gw_pg_totp_advance,
	.app_max_id = pg_app_max_id,
	.app_get = pg_app_get,
	.app_insert_tx = pg_app_insert_tx,
	.app_update_tx = pg_app_update_tx,
	.app_spend_tx = pg_app_spend_tx,
	.app_refund_tx = pg_app_refund_tx,
	.app_page = pg_app_page,
	.app_due_to_expire = pg_app_due_to_expire,
	.quota_get = pg_quota_get,
	.quota_sub_tx = pg_quota_sub_tx,
	.quota_add_tx = pg_quota_add_tx,
	.set_site = pg_set_site,
	.site_claim = pg_site_claim,
	.binding_get = pg_binding_get,
	.known_keys_get = pg_known_keys_get,
	/* the policy repository and the change feed (policystore.h) */
	.policy_publish_tx = gw_pg_policy_publish_tx,
	.policy_get = gw_pg_policy_get,
	.policy_latest = gw_pg_policy_latest,
	.policy_history = gw_pg_policy_history,
	.changes_open = gw_pg_changes_open,
	.changes_wait = gw_pg_changes_wait,
	.changes_close = gw_pg_changes_close,
	.changes_notify_tx = gw_pg_changes_notify_tx,
};
