/*
 * The PostgreSQL backend's table of calls. The credential repositories
 * (store.c, authtotp.c), sites, the audit log, checkpoints and audit
 * batches (audit.c), applications, approvals and quota counters
 * (appstore.c): every call of the interface is on PostgreSQL
 * (docs/store.md).
 */
#include "pg_store.h"
#include "pg_outbox.h"
#include "pg_policystore.h"
#include "pg_import.h"
#include "pg_alertstore.h"
#include "protocol.h"
#include "log.h"

#include <string.h>

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

/* A failed statement aborts the transaction: its COMMIT answers ROLLBACK
 * (gw_pg_tx_commit fails it), and tx_alive says it is gone. */
static bool
pg_tx_errors_end(struct gw_store *st)
{
	(void)st;
	return true;
}

const struct gw_store_ops gw_store_pg_ops = {
	.name = "postgresql",
	.close = gw_pg_close,
	.ping = gw_pg_ping,
	.password_get = gw_pg_password_get,
	.password_set = gw_pg_password_set,
	.binding_set = gw_pg_binding_set,
	.known_keys_set = gw_pg_known_keys_set,
	.tx_begin = gw_pg_tx_begin,
	.tx_commit = gw_pg_tx_commit,
	.tx_rollback = gw_pg_tx_rollback,
	.tx_alive = gw_pg_tx_alive,
	.schema_version = gw_pg_schema_version,
	.audit_insert = gw_pg_audit_insert,
	.audit_append = gw_pg_audit_append,
	.audit_head = gw_pg_audit_head,
	.audit_scan = gw_pg_audit_scan,
	.audit_query = gw_pg_audit_query,
	.checkpoint_add = gw_pg_checkpoint_add,
	.checkpoint_last = gw_pg_checkpoint_last,
	.checkpoint_max_id = gw_pg_checkpoint_max_id,
	.checkpoint_scan = gw_pg_checkpoint_scan,
	.batch_begin = gw_pg_batch_begin,
	.batch_images = gw_pg_batch_images,
	.batch_durable = gw_pg_batch_durable,
	.batch_end = gw_pg_batch_end,
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
	.totp_key_put = gw_pg_totp_key_put,
	.totp_keys = gw_pg_totp_keys,
	.totp_copy_put = gw_pg_totp_copy_put,
	.totp_copy_get = gw_pg_totp_copy_get,
	.app_get = gw_pg_app_get,
	.app_insert_tx = gw_pg_app_insert_tx,
	.app_update_tx = gw_pg_app_update_tx,
	.app_spend_tx = gw_pg_app_spend_tx,
	.app_refund_tx = gw_pg_app_refund_tx,
	.app_page = gw_pg_app_page,
	.app_due_to_expire = gw_pg_app_due_to_expire,
	.quota_get = gw_pg_quota_get,
	.quota_sub_tx = gw_pg_quota_sub_tx,
	.quota_add_tx = gw_pg_quota_add_tx,
	.set_site = gw_pg_set_site,
	.site_claim = gw_pg_site_claim,
	.binding_get = gw_pg_binding_get,
	.known_keys_get = gw_pg_known_keys_get,
	/* truth */
	.app_lock_tx = gw_pg_app_lock_tx,
	/* the policy repository and the change feed (policystore.h) */
	.policy_publish_tx = gw_pg_policy_publish_tx,
	.policy_get = gw_pg_policy_get,
	.policy_latest = gw_pg_policy_latest,
	.policy_history = gw_pg_policy_history,
	.changes_open = gw_pg_changes_open,
	.changes_wait = gw_pg_changes_wait,
	.changes_close = gw_pg_changes_close,
	.changes_notify_tx = gw_pg_changes_notify_tx,
	/* moving a store (migrate.h): a target only */
	.import_row_tx = gw_pg_import_row_tx,
	/* documents (docstore.h) */
	.doc_put = gw_pg_doc_put,
	.doc_info = gw_pg_doc_info,
	.doc_read = gw_pg_doc_read,
	.doc_apps = gw_pg_doc_apps,
	.quota_add_all_tx = gw_pg_quota_add_all_tx,
	/* the outbox (outbox.h; notify) */
	.outbox_init = gw_pg_outbox_init,
	.outbox_put_tx = gw_pg_outbox_put_tx,
	.outbox_claim = gw_pg_outbox_claim,
	.outbox_settle_tx = gw_pg_outbox_settle_tx,
	/* the alerts repository (alertstore.h) */
	.alert_init = gw_pg_alert_init,
	.alert_put_tx = gw_pg_alert_put_tx,
	.alert_state_tx = gw_pg_alert_state_tx,
	.alert_list = gw_pg_alert_list,
	/* the sessions repository (sessionstore.h) */
	.session_init = gw_pg_session_init,
	.session_put = gw_pg_session_put,
	.session_touch = gw_pg_session_touch,
	.session_end = gw_pg_session_end,
	.session_end_user = gw_pg_session_end_user,
	/* the PostgreSQL sign path's speed (wave5-pgperf) */
	.tx_errors_end = pg_tx_errors_end,
};
