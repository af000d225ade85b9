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
