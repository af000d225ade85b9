/*
 * Authentication requests: login, logout, and account administration
 * (user_add, user_passwd). Passwords are checked by auth.c; the session
 * table lives there too.
 */
#include "auth_ops.h"

#include <stdio.h>
#include <string.h>
#include <sodium.h>

#include "log.h"

json_t *
gw_op_login(struct gw_req *r)
{
	const char *user = NULL, *pin = NULL;
	const struct gw_person *who;
	uint8_t token[SG_SESSION_TOKEN_LEN];
	json_t *rep;
	int ok;

	if (sg_get_str(r->msg, "user", false, &user, SG_NAME_MAX, r->err, sizeof(r->err)) < 0 ||
	    sg_get_str(r->msg, "pin", true, &pin, SG_PIN_MAX, r->err, sizeof(r->err)) < 0)
		return gw_bad_request(r);
	who = gw_req_resolve(r, user);
	if (who == NULL) {
		gw_req_record(r, "login", "denied", r->err, user, NULL, 0, NULL, 0, NULL);
		return sg_reply_error(CKR_USER_TYPE_INVALID, "not_allowed", "%s", r->err);
	}
	ok = gw_auth_check_password(r->ctx->auth, r->ctx->store, who->id, pin);
	if (ok < 0) {
		gw_req_record(r, "login", "error", "store error", who->id, NULL, 0, NULL, 0, NULL);
		return sg_reply_error(CKR_DEVICE_ERROR, "internal", "credential store error");
	}
	if (ok == 0) {
		gw_req_record(r, "login", "denied", "wrong password", who->id, NULL, 0, NULL, 0, NULL);
		return sg_reply_error(CKR_PIN_INCORRECT, "bad_pin", "wrong password for %s", who->id);
	}
	if (gw_auth_session_new(r->ctx->auth, who->id, r->peer->uid, token) < 0)
		return sg_reply_error(CKR_HOST_MEMORY, "internal", "too many sessions");
	gw_req_record(r, "login", "ok", NULL, who->id, NULL, 0, NULL, 0, NULL);
	rep = sg_reply_ok();
	sg_set_bytes(rep, "session", token, sizeof(token));
	sodium_memzero(token, sizeof(token));
	json_object_set_new(rep, "user", json_string(who->id));
	json_object_set_new(rep, "name", json_string(who->name ? who->name : who->id));
	json_object_set_new(rep, "roles", gw_roles_json(who));
	return rep;
}

json_t *
gw_op_logout(struct gw_req *r)
{
	uint8_t *tok = NULL;
	size_t len = 0;

	if (sg_get_bytes(r->msg, "session", false, &tok, &len, SG_SESSION_TOKEN_LEN,
	                 r->err, sizeof(r->err)) < 0)
		return gw_bad_request(r);
	if (r->logged_in)
		gw_req_record(r, "logout", "ok", NULL, NULL, NULL, 0, NULL, 0, NULL);
	gw_auth_session_end(r->ctx->auth, tok, len);
	sg_free_secret(tok, len);
	return sg_reply_ok();
}

static bool
is_seal_admin(const struct gw_req *r)
{
	return r->who != NULL && gw_person_has_role(r->who, "seal_admin");
}

/* user_add and user_passwd share everything but who may do them. */
static json_t *
set_password(struct gw_req *r, const char *action)
{
	const char *user = NULL, *password = NULL, *old = NULL;
	char hash[256];
	bool self;

	if (sg_get_str(r->msg, "user", true, &user, SG_NAME_MAX, r->err, sizeof(r->err)) < 0 ||
	    sg_get_str(r->msg, "password", true, &password, SG_PIN_MAX, r->err, sizeof(r->err)) < 0 ||
	    sg_get_str(r->msg, "old_password", false, &old, SG_PIN_MAX, r->err, sizeof(r->err)) < 0)
		return gw_bad_request(r);
	self = strcmp(user, r->who->id) == 0;
	if (!is_seal_admin(r) && !(self && strcmp(action, "user_passwd") == 0)) {
		snprintf(r->err, sizeof(r->err), "only a seal admin may set another account's password");
		gw_req_record(r, action, "denied", r->err, NULL, NULL, 0, NULL, 0, NULL);
		return sg_reply_error(CKR_USER_NOT_LOGGED_IN, "denied", "%s", r->err);
	}
	if (gw_policy_person(r->snap->policy, user) == NULL) {
		snprintf(r->err, sizeof(r->err), "no person \"%s\" in the policy", user);
		return sg_reply_error(CKR_ARGUMENTS_BAD, "bad_request", "%s", r->err);
	}
	if (strlen(password) < 8) {
		snprintf(r->err, sizeof(r->err), "a password needs at least 8 characters");
		return sg_reply_error(CKR_PIN_LEN_RANGE, "bad_request", "%s", r->err);
	}
	if (!is_seal_admin(r)) {
		if (old == NULL || gw_auth_check_password(r->ctx->auth, r->ctx->store, user, old) != 1) {
			gw_req_record(r, action, "denied", "wrong old password", NULL, NULL, 0, NULL, 0, NULL);
			return sg_reply_error(CKR_PIN_INCORRECT, "bad_pin", "the old password is wrong");
		}
	}
	if (gw_auth_hash_password(password, hash, sizeof(hash)) < 0 ||
	    gw_store_password_set(r->ctx->store, user, hash) < 0) {
		sodium_memzero(hash, sizeof(hash));
		return sg_reply_error(CKR_DEVICE_ERROR, "internal", "could not store the password");
	}
	sodium_memzero(hash, sizeof(hash));
	snprintf(r->err, sizeof(r->err), "password set for %s", user);
	gw_req_record(r, action, "ok", r->err, NULL, NULL, 0, NULL, 0, NULL);
	return sg_reply_ok();
}

json_t *gw_op_user_add(struct gw_req *r) { return set_password(r, "user_add"); }
json_t *gw_op_user_passwd(struct gw_req *r) { return set_password(r, "user_passwd"); }

