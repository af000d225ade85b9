/*
 * The SQLite backend's table of calls: what gw_store_open hands out. Each
 * entry is the backend's own function for the call of the same name in
 * store.h or appstore.h.
 */
#include "sqlite_store.h"
#include "sqlite_policystore.h"
#include "sqlite_export.h"
#include "sqlite_outbox.h"
#include "sqlite_alertstore.h"

const struct gw_store_ops gw_store_sqlite_ops = {
	.name = "sqlite",
	.close = gw_sqlite_close,
	.password_get = gw_sqlite_password_get,
	.password_set = gw_sqlite_password_set,
	.binding_set = gw_sqlite_binding_set,
	.known_keys_set = gw_sqlite_known_keys_set,
	.tx_begin = gw_sqlite_tx_begin,
	.tx_commit = gw_sqlite_tx_commit,
	.tx_rollback = gw_sqlite_tx_rollback,
	.tx_alive = gw_sqlite_tx_alive,
	.schema_version = gw_sqlite_schema_version,
	.audit_insert = gw_sqlite_audit_insert,
	.audit_append = gw_sqlite_audit_append,
	.audit_head = gw_sqlite_audit_head,
	.audit_scan = gw_sqlite_audit_scan,
	.audit_query = gw_sqlite_audit_query,
	.checkpoint_add = gw_sqlite_checkpoint_add,
	.checkpoint_last = gw_sqlite_checkpoint_last,
	.checkpoint_max_id = gw_sqlite_checkpoint_max_id,
	.checkpoint_scan = gw_sqlite_checkpoint_scan,
	.batch_begin = gw_sqlite_batch_begin,
	.batch_images = gw_sqlite_batch_images,
	.batch_durable = gw_sqlite_batch_durable,
	.batch_end = gw_sqlite_batch_end,
	.get_redo_stats = gw_sqlite_get_redo_stats,
	.release_memory = gw_sqlite_release_memory,
	.mark_test = gw_sqlite_mark_test,
	.mark_set = gw_sqlite_mark_set,
	.attempts_init = gw_sqlite_attempts_init,
	.attempts_get = gw_sqlite_attempts_get,
	.attempt_take = gw_sqlite_attempt_take,
	.attempt_end = gw_sqlite_attempt_end,
	.attempts_clear = gw_sqlite_attempts_clear,
	.totp_init = gw_sqlite_totp_init,
	.totp_enrolled = gw_sqlite_totp_enrolled,
	.totp_put = gw_sqlite_totp_put,
	.totp_delete = gw_sqlite_totp_delete,
	.totp_get = gw_sqlite_totp_get,
	.totp_advance = gw_sqlite_totp_advance,
	.totp_key_put = gw_sqlite_totp_key_put,
	.totp_keys = gw_sqlite_totp_keys,
	.totp_copy_put = gw_sqlite_totp_copy_put,
	.totp_copy_get = gw_sqlite_totp_copy_get,
	.app_get = gw_sqlite_app_get,
	.app_insert_tx = gw_sqlite_app_insert_tx,
	.app_update_tx = gw_sqlite_app_update_tx,
	.app_spend_tx = gw_sqlite_app_spend_tx,
	.app_refund_tx = gw_sqlite_app_refund_tx,
	.app_page = gw_sqlite_app_page,
	.app_due_to_expire = gw_sqlite_app_due_to_expire,
	.quota_get = gw_sqlite_quota_get,
	.quota_sub_tx = gw_sqlite_quota_sub_tx,
	.quota_add_tx = gw_sqlite_quota_add_tx,
	.set_site = gw_sqlite_set_site,
	.site_claim = gw_sqlite_site_claim,
	.binding_get = gw_sqlite_binding_get,
	.known_keys_get = gw_sqlite_known_keys_get,
	/* truth */
	.app_lock_tx = gw_sqlite_app_lock_tx,
	/* the policy repository (policystore.h) */
	.policy_publish_tx = gw_sqlite_policy_publish_tx,
	.policy_get = gw_sqlite_policy_get,
	.policy_latest = gw_sqlite_policy_latest,
	.policy_history = gw_sqlite_policy_history,
	.changes_open = gw_sqlite_changes_open,
	.changes_notify_tx = gw_sqlite_changes_notify_tx,
	/* moving a store (migrate.h): a source only */
	.export_table = gw_sqlite_export_table,
	/* documents (docstore.h) */
	.doc_put = gw_sqlite_doc_put,
	.doc_info = gw_sqlite_doc_info,
	.doc_read = gw_sqlite_doc_read,
	.doc_apps = gw_sqlite_doc_apps,
	/* the outbox (outbox.h; notify) */
	.outbox_init = gw_sqlite_outbox_init,
	.outbox_put_tx = gw_sqlite_outbox_put_tx,
	.outbox_claim = gw_sqlite_outbox_claim,
	.outbox_settle_tx = gw_sqlite_outbox_settle_tx,
	/* the alerts repository (alertstore.h) */
	.alert_init = gw_sqlite_alert_init,
	.alert_put_tx = gw_sqlite_alert_put_tx,
	.alert_state_tx = gw_sqlite_alert_state_tx,
	.alert_list = gw_sqlite_alert_list,
	/* the sessions repository (sessionstore.h) */
	.session_init = gw_sqlite_session_init,
	.session_put = gw_sqlite_session_put,
	.session_touch = gw_sqlite_session_touch,
	.session_end = gw_sqlite_session_end,
	.session_end_user = gw_sqlite_session_end_user,
};
