/*
 * Authentication requests (auth_ops.c): login (password, password + code,
 * or PIN-less inside an out-of-band window), logout, account
 * administration, TOTP enrollment, lockout and its PKCS#11 flags,
 * per-signature codes, out-of-band windows and confirmations.
 */
#ifndef GW_AUTH_OPS_H
#define GW_AUTH_OPS_H

#include <jansson.h>

#include "dispatch.h"

/* 1 when user has a TOTP secret, 0 not, -1 store error (dispatch.c). */
int gw_auth_enrolled(struct gw_req *r, const char *user);

/* A password change, applied inside its audit record's transaction
 * (gw_audit_record_with): arg is a struct gw_password_change. Used by
 * user_add/user_passwd and by `sealgated --set-password`. */
struct gw_password_change {
	const char *user, *hash;
};
int gw_auth_password_apply_tx(struct gw_store *st, void *arg, char *err, size_t errlen);
/* Inside a credential change's transaction: deletes every session of
 * user from the store and tells the other gateways (changes.h: kind
 * "revoke", which closes the user's signing windows too, when windows;
 * else "session"). The caller ends them here too once the change
 * committed (gw_auth_session_end_user, gw_auth_session_forget_user).
 * 0 or -1 with err. */
int gw_auth_sessions_revoke_tx(struct gw_store *st, const char *user, bool windows, char *err,
                               size_t errlen);
/* Sessions in the store (auth.h, gw_auth_use_store): makes the table
 * when the backend needs it, follows the other gateways' logouts and
 * revocations through the change feed. Call after gw_auth_new, before
 * gw_changes_start. max_age 0 = GW_AUTH_MAX_AGE. 0 or -1 with err. */
int gw_auth_sessions_follow(struct gw_ctx *ctx, unsigned max_age, char *err, size_t errlen);
/* A policy replaced (gw_snapshot_swap): the sessions of every person who
 * lost a role in it end, here and in the store (kind "revoke"). */
void gw_auth_sessions_policy_swapped(struct gw_ctx *ctx, const struct gw_policy *old,
                                     const struct gw_policy *now);

/* The code a request of the web front carries ("code") for action,
 * checked as a login's would be (once only, counted for the lockout,
 * a refusal recorded): NULL when it holds, else the refusal. */
json_t *gw_auth_code_check(struct gw_req *r, const char *action);

json_t *gw_op_login(struct gw_req *r);
json_t *gw_op_logout(struct gw_req *r);
json_t *gw_op_user_add(struct gw_req *r);
json_t *gw_op_user_passwd(struct gw_req *r);

/* What each needs (session, factors, role): the table in dispatch.c. */
json_t *gw_op_totp_enroll(struct gw_req *r);
json_t *gw_op_totp_reset(struct gw_req *r);
json_t *gw_op_user_unlock(struct gw_req *r);
json_t *gw_op_auth_state(struct gw_req *r);
json_t *gw_op_auth_context(struct gw_req *r);
json_t *gw_op_window_open(struct gw_req *r);
json_t *gw_op_window_close(struct gw_req *r);
json_t *gw_op_confirm(struct gw_req *r);
/* users (seal admins): the policy's people, TOTP and lockouts. */
json_t *gw_op_users(struct gw_req *r);

#endif
