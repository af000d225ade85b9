/*
 * Request dispatch. The table below is the one place that says what each
 * operation needs (a logged-in session, the factors its login proved, a
 * role), and every use of a session is checked against the policy in
 * force; handlers then do their work. The sign path checks everything before the token is touched and
 * releases a signature only after its audit record is durable.
 */
#include "dispatch.h"
#include "device.h"
#include "alert_ops.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <openssl/crypto.h>
#include <sodium.h>

#include "audit_ops.h"
#include "log.h"
#include "refusals.h"
#include "signing.h"
#include "signpath.h"
#include "workflow_ops.h"
#include "auth_ops.h"
#include "policy_ops.h"
#include "quota.h"
#include "doc_ops.h"
#include "stamp_ops.h"
#include "sg-config.h"
#include "totp.h"

/* The session a request needs. */
enum need { NEED_NONE, NEED_SESSION, NEED_OPT_SESSION };

/* The factors its login must have proved (struct op .factors). */
#define F_PASSWORD      0x1u      /* the account's password */
#define F_CODE          0x2u      /* and a TOTP code */
#define F_CODE_ENROLLED 0x4u      /* a code, when the account has a TOTP secret */
#define F_FRESH_CODE    0x8u      /* a code accepted at most FRESH_CODE s ago */
#define FRESH_CODE      120

#define SEAL_ADMIN "seal_admin"

struct op {
	const char *name;
	enum need need;
	unsigned factors;             /* F_*: what the login must have proved */
	const char *role;             /* a role the person must hold, or NULL */
	/* When the request's "user" is the logged-in person: the factors
	 * needed instead of .factors, and no role (0: no such rule). */
	unsigned self_factors;
	/* The PKCS#11 code of a missing factor (0: CKR_FUNCTION_REJECTED). */
	unsigned long mfa_rv;
	gw_handler_fn fn;
};

int
gw_req_record(struct gw_req *r, const char *action, const char *outcome, const char *reason,
      const char *actor, const char *seal, unsigned long mech,
      const uint8_t *dig, size_t diglen, uint64_t *seq_out)
{
	struct gw_audit_event ev = {
		.action = action, .outcome = outcome, .reason = reason,
		.actor = actor ? actor : (r->logged_in ? r->login.user : NULL),
		.uid = r->peer->uid, .pid = r->peer->pid, .exe = r->peer->exe,
		.host = r->ctx->host, .seal = seal, .mechanism = mech,
		.signed_digest = dig, .signed_digest_len = diglen,
	};
	uint64_t seq = 0;

	if (gw_reflimit_req(r, action, outcome, reason, ev.actor)) {
		if (seq_out)
			*seq_out = 0;   /* counted for a summary record (refusals.h) */
		return 0;
	}
	if (r->ctx->audit == NULL || gw_audit_record(r->ctx->audit, &ev, &seq) < 0) {
		if (seq_out)
			*seq_out = 0;
		if (r->ctx->audit)
			gw_log_error("audit record for %s (%s) could not be written", action, outcome);
		return -1;
	}
	if (seq_out)
		*seq_out = seq;
	return 0;
}

json_t *
gw_bad_request(struct gw_req *r)
{
	return sg_reply_error(CKR_ARGUMENTS_BAD, "bad_request", "%s", r->err);
}

static const char *
token_label(const struct gw_req *r)
{
	if (r->snap->token_label)   /* (the snapshot's: a reload frees the old one) */
		return r->snap->token_label;
	return r->snap->policy->org_name ? r->snap->policy->org_name : "sealgate";
}

bool
gw_req_token_usable(const struct gw_req *r)
{
	return r->ctx->token != NULL && gw_token_present(r->ctx->token);
}

static json_t *
op_hello(struct gw_req *r)
{
	json_t *rep = sg_reply_ok();

	/* A client looking for the token is a good moment to see whether it
	 * is back (at most one try a second, and none while another runs;
	 * the card watcher does this for cards, nobody else for a token that
	 * was away when the gateway started). */
	if (r->ctx->token != NULL && !gw_token_present(r->ctx->token))
		(void)gw_token_reconnect(r->ctx->token);

	json_object_set_new(rep, "instance", json_string(r->ctx->instance));
	json_object_set_new(rep, "version", json_string(SEALGATE_VERSION));
	json_object_set_new(rep, "token_label", json_string(token_label(r)));
	json_object_set_new(rep, "manufacturer", json_string("sealgate"));
	json_object_set_new(rep, "model", json_string("sealgated"));
	json_object_set_new(rep, "serial", json_string(r->ctx->instance));
	json_object_set_new(rep, "token_present", json_boolean(gw_req_token_usable(r)));
	json_object_set_new(rep, "session_timeout",
		json_integer(r->ctx->cfg ? r->ctx->cfg->session_timeout : 0));
	return rep;
}

/* A management gateway (backend_token: none): no seal is held here. */
static bool
no_token(const struct gw_req *r)
{
	return r->ctx->cfg != NULL && r->ctx->cfg->no_token;
}

static json_t *
op_status(struct gw_req *r)
{
	json_t *rep = op_hello(r), *seals = json_array();
	const struct gw_policy *p = r->snap->policy;
	char hex[2 * GW_HASH_LEN + 1];

	char why[256] = "", store_err[384] = "";
	/* A store that does not answer refuses every signature (the record
	 * cannot commit): say so here too, with libpq's reason. */
	bool store_ok = r->ctx->store == NULL ||
	                gw_store_ping(r->ctx->store, store_err, sizeof(store_err)) == 0;

	/* Say why, per seal: a pulled card, a refused card, a refused PIN. */
	if (r->ctx->token == NULL)
		snprintf(why, sizeof(why), "no backend token");
	else
		gw_token_reason(r->ctx->token, why, sizeof(why));
	for (size_t i = 0; i < p->n_seals; i++) {
		const struct gw_seal *s = &p->seals[i];
		bool have_key = r->snap->keys && r->snap->keys[i];
		bool avail = gw_req_token_usable(r) && have_key && store_ok;
		/* Held: a seal of this gateway's site (docs/sites.md). */
		bool held = strcmp(s->site, gw_ctx_site(r->ctx)) == 0 && !no_token(r);
		char other[96];

		snprintf(other, sizeof(other), "held by site %s", s->site);
		json_array_append_new(seals, json_pack("{s:s,s:s,s:s,s:s,s:b,s:b,s:s}",
			"id", s->id, "label", s->name, "kind", s->kind ? s->kind : "",
			"site", s->site, "held", held, "available", avail,
			"reason", avail ? "" :
			          strcmp(s->site, gw_ctx_site(r->ctx)) != 0 ? other :
			          no_token(r) ? "a management gateway: no token" :
			          !have_key ? "its key was not found on the backend token" :
			          !store_ok ? "the store is unreachable" :
			          why[0] ? why : "backend token not present"));
	}
	json_object_set_new(rep, "seals", seals);
	json_object_set_new(rep, "site", json_string(gw_ctx_site(r->ctx)));
	json_object_set_new(rep, "management", json_boolean(no_token(r)));
	if (r->ctx->store != NULL) {
		json_object_set_new(rep, "store", json_string(gw_store_backend(r->ctx->store)));
		json_object_set_new(rep, "store_reachable", json_boolean(store_ok));
		if (!store_ok)
			json_object_set_new(rep, "store_error", json_string(store_err));
	}
	/* Which backend token the seals are bound to (docs/smartcard.md). */
	if (r->ctx->token != NULL) {
		struct gw_token_binding b;

		if (gw_token_get_binding(r->ctx->token, &b))
			json_object_set_new(rep, "backend", json_pack("{s:s,s:i}", "serial", b.serial,
			                                              "certificates", (int)b.ncerts));
	}
	sodium_bin2hex(hex, sizeof(hex), p->hash, GW_HASH_LEN);
	json_object_set_new(rep, "policy", json_string(hex));
	/* 0: the policy_path file, no version published (policy.md) */
	json_object_set_new(rep, "policy_version", json_integer((json_int_t)r->snap->policy_version));
	json_object_set_new(rep, "logins", json_integer((json_int_t)gw_auth_session_count(r->ctx->auth)));
	/* How records are made durable, and the group commit at work. */
	if (r->ctx->audit != NULL && r->ctx->store != NULL) {
		struct gw_audit_stats as;
		struct gw_store_redo_stats rs;

		gw_audit_get_stats(r->ctx->audit, &as);
		gw_store_get_redo_stats(r->ctx->store, &rs);
		json_object_set_new(rep, "audit", json_pack("{s:s,s:I,s:I,s:I,s:I}",
			"durability", rs.on ? "redo log" : "synced commits",
			"commits", (json_int_t)as.commits, "records", (json_int_t)as.records,
			"largest_batch", (json_int_t)as.max_batch,
			"replayed_at_start", (json_int_t)rs.replayed_frames));
	}
	return rep;
}

/* A device over TLS has no OS login the gateway could check: the person
 * names their account and proves it with their own password (and second
 * factor), and no os_logins or act_as entry applies. */
static const struct gw_person *
resolve(const struct gw_req *r, const char *requested, char *err, size_t errlen)
{
	const struct gw_person *who;

	if (r->peer->device == 0 && !r->peer->web)
		return gw_policy_resolve_account(r->snap->policy, r->peer->login, requested, err,
		                                 errlen);
	if (requested == NULL) {
		snprintf(err, errlen, r->peer->web ? "through the web front the account must be named" :
		         "over TLS the account must be named (SEALGATE_USER, or user = in sealgate.conf)");
		return NULL;
	}
	who = gw_policy_person(r->snap->policy, requested);
	if (who == NULL)
		snprintf(err, errlen, "there is no sealgate account '%s'", requested);
	return who;
}

const struct gw_person *
gw_req_resolve(struct gw_req *r, const char *requested)
{
	return resolve(r, requested, r->err, sizeof(r->err));
}

json_t *
gw_roles_json(const struct gw_person *who)
{
	json_t *a = json_array();

	for (size_t i = 0; i < who->n_roles; i++)
		json_array_append_new(a, json_string(who->roles[i]));
	return a;
}

static json_t *
op_whoami(struct gw_req *r)
{
	const char *user = NULL;
	const struct gw_person *who = r->who;
	json_t *rep;

	if (who == NULL) {
		if (sg_get_str(r->msg, "user", false, &user, SG_NAME_MAX, r->err, sizeof(r->err)) < 0)
			return gw_bad_request(r);
		who = gw_req_resolve(r, user);
		if (who == NULL)
			return sg_reply_error(CKR_USER_TYPE_INVALID, "not_allowed", "%s", r->err);
	}
	rep = sg_reply_ok();
	json_object_set_new(rep, "user", json_string(who->id));
	json_object_set_new(rep, "name", json_string(who->name ? who->name : who->id));
	json_object_set_new(rep, "department", json_string(who->department ? who->department : ""));
	json_object_set_new(rep, "roles", gw_roles_json(who));
	json_object_set_new(rep, "logged_in", json_boolean(r->logged_in));
	json_object_set_new(rep, "os_user", json_string(r->peer->login));
	return rep;
}

static void
mechs_for_seal(const struct gw_seal *s, const struct gw_seal_key *k, json_t *arr)
{
	const CK_MECHANISM_TYPE *l;
	size_t n = gw_mech_for_key(k->type, &l);

	/* The same rule the sign path applies: the key's mechanisms the
	 * seal's policy allows. */
	for (size_t i = 0; i < n; i++)
		if (gw_policy_mechanism_allowed(s, l[i]))
			json_array_append_new(arr, json_integer((json_int_t)l[i]));
}

static const char *
key_type_name(enum gw_key_type t)
{
	switch (t) {
	case GW_KEY_RSA: return "rsa";
	case GW_KEY_EC: return "ec";
	case GW_KEY_ED25519: return "ed25519";
	}
	return "unknown";
}

static json_t *
seal_json(struct gw_req *r, const struct gw_person *who, size_t i)
{
	const struct gw_seal *s = &r->snap->policy->seals[i];
	const struct gw_seal_key *k = r->snap->keys ? r->snap->keys[i] : NULL;
	int64_t uses = -1, quota = -1;
	json_t *o;

	gw_signpath_state(r->ctx, r->snap->policy, who, s, &uses, &quota);
	o = json_pack("{s:s,s:s,s:s,s:s,s:b,s:b,s:I,s:I,s:b}", "id", s->id, "label", s->name,
	              "kind", s->kind ? s->kind : "", "site", s->site,
	              "held", strcmp(s->site, gw_ctx_site(r->ctx)) == 0 && !no_token(r),
	              "available", k != NULL && gw_req_token_usable(r),
	              "uses_left", (json_int_t)uses, "quota_left", (json_int_t)quota,
	              "approval_required", s->approval_required);
	json_t *mechs = json_array();

	/* Each quota's limit and use, from the store (either backend): what
	 * quota_left sums up, for a gauge per period. */
	if (r->ctx->quota != NULL) {
		struct gw_quota_use u[GW_QUOTA_MAX_KEYS];
		unsigned nq = gw_quota_list(r->ctx->quota, s, who->id, time(NULL), u);
		json_t *qs = json_array();

		for (unsigned j = 0; j < nq; j++)
			json_array_append_new(qs, json_pack("{s:s,s:I,s:I}", "period", u[j].period,
			                                    "limit", (json_int_t)u[j].limit,
			                                    "used", (json_int_t)u[j].used));
		json_object_set_new(o, "quotas", qs);
	}

	if (k != NULL) {
		json_object_set_new(o, "key_type", json_string(key_type_name(k->type)));
		json_object_set_new(o, "bits", json_integer(k->bits));
		sg_set_bytes(o, "ckaid", k->id.p, k->id.len);
		sg_set_bytes(o, "cert", k->cert.p, k->cert.len);
		sg_set_bytes(o, "subject", k->subject.p, k->subject.len);
		sg_set_bytes(o, "issuer", k->issuer.p, k->issuer.len);
		sg_set_bytes(o, "serial", k->serial.p, k->serial.len);
		if (k->type == GW_KEY_RSA) {
			sg_set_bytes(o, "modulus", k->modulus.p, k->modulus.len);
			sg_set_bytes(o, "public_exponent", k->public_exponent.p, k->public_exponent.len);
		} else {
			sg_set_bytes(o, "ec_params", k->ec_params.p, k->ec_params.len);
			sg_set_bytes(o, "ec_point", k->ec_point.p, k->ec_point.len);
		}
		mechs_for_seal(s, k, mechs);
	}
	json_object_set_new(o, "mechanisms", mechs);
	json_object_set_new(o, "mfa", json_string(s->mfa ? s->mfa : "login"));
	return o;
}

/* The seal's image from the policy (image:), for sealctl stamp to draw:
 * the bytes checked at load, to a person who may use the seal. */
static json_t *
op_seal_image(struct gw_req *r)
{
	const struct gw_policy *p = r->snap->policy;
	const struct gw_seal *seal;
	const char *id = NULL;
	json_t *rep;

	if (sg_get_str(r->msg, "seal", true, &id, 64, r->err, sizeof(r->err)) < 0)
		return gw_bad_request(r);
	if ((seal = gw_policy_seal(p, id)) == NULL || !gw_policy_may_use(p, r->who, seal))
		return sg_reply_error(CKR_ARGUMENTS_BAD, "no_seal", "no seal %s for %s", id, r->who->id);
	if (seal->image == NULL)
		return sg_reply_error(CKR_ARGUMENTS_BAD, "no_image", "the policy names no image for "
		                      "the %s", seal->name);
	rep = sg_reply_ok();
	sg_set_bytes(rep, "image", seal->image, seal->image_len);
	return rep;
}

static json_t *
op_seals(struct gw_req *r)
{
	const struct gw_policy *p = r->snap->policy;
	const struct gw_person *who = r->who;
	const char *user = NULL;
	json_t *rep, *arr;

	if (who == NULL) {
		if (sg_get_str(r->msg, "user", false, &user, SG_NAME_MAX, r->err, sizeof(r->err)) < 0)
			return gw_bad_request(r);
		who = gw_req_resolve(r, user);
		if (who == NULL)
			return sg_reply_error(CKR_USER_TYPE_INVALID, "not_allowed", "%s", r->err);
	}
	rep = sg_reply_ok();
	arr = json_array();
	for (size_t i = 0; i < p->n_seals; i++)
		if (gw_policy_may_use(p, who, &p->seals[i]))
			json_array_append_new(arr, seal_json(r, who, i));
	json_object_set_new(rep, "user", json_string(who->id));
	json_object_set_new(rep, "seals", arr);
	return rep;
}

/* THE table: per request, the session, the factors and the role it needs.
 * Every admin action that changes credentials needs the second factor;
 * what a person does to their own credentials needs their password, and a
 * code once they have a TOTP secret. Handlers check nothing of this. */
#define PW_CODE (F_PASSWORD | F_CODE)
#define PW_OWN  (F_PASSWORD | F_CODE_ENROLLED)
static const struct op ops[] = {
	{ SG_OP_HELLO,       NEED_NONE,        0, NULL, 0, 0, op_hello },
	{ SG_OP_STATUS,      NEED_NONE,        0, NULL, 0, 0, op_status },
	{ SG_OP_LOGIN,       NEED_NONE,        0, NULL, 0, 0, gw_op_login },
	{ SG_OP_LOGOUT,      NEED_OPT_SESSION, 0, NULL, 0, 0, gw_op_logout },
	{ SG_OP_WHOAMI,      NEED_OPT_SESSION, 0, NULL, 0, 0, op_whoami },
	{ SG_OP_SEALS,       NEED_OPT_SESSION, 0, NULL, 0, 0, op_seals },
	/* a seal's own second factor: gw_auth_check_sign */
	{ SG_OP_SIGN,        NEED_SESSION,     0, NULL, 0, 0, gw_op_sign },
	{ SG_OP_WHY,         NEED_SESSION,     0, NULL, 0, 0, gw_op_why },
	{ SG_OP_APPLY,       NEED_SESSION,     0, NULL, 0, 0, gw_op_apply },
	{ SG_OP_LIST,        NEED_SESSION,     0, NULL, 0, 0, gw_op_list },
	{ SG_OP_SHOW,        NEED_SESSION,     0, NULL, 0, 0, gw_op_show },
	{ SG_OP_APPROVE,     NEED_SESSION,     PW_CODE, NULL, 0, 0, gw_op_approve },
	{ SG_OP_REJECT,      NEED_SESSION,     PW_CODE, NULL, 0, 0, gw_op_reject },
	{ SG_OP_REVOKE,      NEED_SESSION,     0, NULL, 0, 0, gw_op_revoke },
	{ SG_OP_EXPLAIN,     NEED_SESSION,     0, NULL, 0, 0, gw_op_explain },
	{ SG_OP_AUDIT_QUERY,      NEED_SESSION, 0, NULL, 0, 0, gw_op_audit_query },
	{ SG_OP_AUDIT_EXPORT,     NEED_SESSION, 0, NULL, 0, 0, gw_op_audit_export },
	{ SG_OP_AUDIT_CHECKPOINT, NEED_SESSION, 0, NULL, 0, 0, gw_op_audit_checkpoint },
	{ SG_OP_AUDIT_VERIFY,     NEED_SESSION, 0, NULL, 0, 0, gw_op_audit_verify },
	{ SG_OP_USER_ADD,    NEED_SESSION,     PW_CODE, SEAL_ADMIN, 0, 0, gw_op_user_add },
	/* C_SetPIN: a PIN without its code is an incorrect PIN */
	{ SG_OP_USER_PASSWD, NEED_SESSION,     PW_CODE, SEAL_ADMIN, PW_OWN, CKR_PIN_INCORRECT,
	  gw_op_user_passwd },
	{ SG_OP_TOTP_ENROLL, NEED_SESSION,     PW_OWN, NULL, 0, 0, gw_op_totp_enroll },
	{ SG_OP_TOTP_RESET,  NEED_SESSION,     PW_CODE, SEAL_ADMIN, 0, 0, gw_op_totp_reset },
	{ SG_OP_USER_UNLOCK, NEED_SESSION,     PW_CODE, SEAL_ADMIN, 0, 0, gw_op_user_unlock },
	/* devices (device.c): a device certificate is a credential */
	{ SG_OP_DEVICE_LIST, NEED_SESSION,     0, SEAL_ADMIN, 0, 0, gw_op_device_list },
	{ SG_OP_DEVICE_APPROVE, NEED_SESSION,  PW_CODE, SEAL_ADMIN, 0, 0, gw_op_device_approve },
	{ SG_OP_DEVICE_REVOKE, NEED_SESSION,   PW_CODE, SEAL_ADMIN, 0, 0, gw_op_device_revoke },
	{ SG_OP_AUTH_STATE,  NEED_OPT_SESSION, 0, NULL, 0, 0, gw_op_auth_state },
	/* carries its own code */
	{ SG_OP_AUTH_CONTEXT, NEED_SESSION,    0, NULL, 0, 0, gw_op_auth_context },
	{ SG_OP_WINDOW_OPEN, NEED_SESSION,     F_PASSWORD | F_CODE | F_FRESH_CODE, NULL, 0, 0,
	  gw_op_window_open },
	{ SG_OP_WINDOW_CLOSE, NEED_OPT_SESSION, 0, NULL, 0, 0, gw_op_window_close },
	/* carries its own code */
	{ SG_OP_CONFIRM,     NEED_NONE,        0, NULL, 0, 0, gw_op_confirm },
	/* one policy for the group: publishing changes every gateway's */
	{ SG_OP_POLICY_PUBLISH, NEED_SESSION,  PW_CODE, SEAL_ADMIN, 0, 0, gw_op_policy_publish },
	{ SG_OP_POLICY_SHOW,    NEED_SESSION,  0, NULL, 0, 0, gw_op_policy_show },
	{ SG_OP_POLICY_HISTORY, NEED_SESSION,  0, NULL, 0, 0, gw_op_policy_history },
	/* the web front's views (docs/api.md) */
	{ SG_OP_USAGE,       NEED_SESSION,     0, NULL, 0, 0, gw_op_usage },
	{ SG_OP_USERS,       NEED_SESSION,     0, SEAL_ADMIN, 0, 0, gw_op_users },
	/* documents (doc_ops.c): who may read one is decided per document */
	{ SG_OP_DOC_PUT,     NEED_SESSION,     0, NULL, 0, 0, gw_op_doc_put },
	{ SG_OP_DOC_GET,     NEED_SESSION,     0, NULL, 0, 0, gw_op_doc_get },
	/* stamps (stamp_ops.c): checked against the approved document */
	{ SG_OP_STAMP_PREPARE, NEED_SESSION,   0, NULL, 0, 0, gw_op_stamp_prepare },
	/* alerts (risk/alert_ops.c): auditors and seal admins read, auditors
	 * acknowledge and close (the handlers check the role) */
	{ SG_OP_ALERTS,      NEED_SESSION,     0, NULL, 0, 0, gw_op_alerts },
	{ SG_OP_ALERT_ACK,   NEED_SESSION,     0, NULL, 0, 0, gw_op_alert_ack },
	{ SG_OP_ALERT_CLOSE, NEED_SESSION,     0, NULL, 0, 0, gw_op_alert_close },
	{ SG_OP_RECEIPT,     NEED_SESSION,     0, NULL, 0, 0, gw_op_receipt },
	{ SG_OP_SEAL_IMAGE,  NEED_SESSION,     0, NULL, 0, 0, op_seal_image },
};

/* Which factors of need the login of r lacks (0: none). -1 on a store
 * error (whether the account has a TOTP secret). */
static int
missing_factors(struct gw_req *r, unsigned need, unsigned *missing)
{
	const struct gw_login_info *l = &r->login;
	time_t now;
	int enrolled;

	*missing = 0;
	if ((need & F_PASSWORD) && !(l->factors & GW_FACTOR_PASSWORD))
		*missing |= F_PASSWORD;
	if ((need & F_CODE) && !(l->factors & GW_FACTOR_TOTP))
		*missing |= F_CODE;
	if ((need & F_CODE_ENROLLED) && !(l->factors & GW_FACTOR_TOTP)) {
		enrolled = gw_auth_enrolled(r, l->user);
		if (enrolled < 0)
			return -1;
		if (enrolled)
			*missing |= F_CODE;
	}
	if ((need & F_FRESH_CODE) && (l->factors & GW_FACTOR_TOTP)) {
		now = gw_auth_now(r->ctx->auth);
		if (now - l->totp_at > FRESH_CODE || l->totp_at > now + FRESH_CODE)
			*missing |= F_FRESH_CODE;
	}
	return 0;
}

/* The policy in force still lets the peer act as the session's account:
 * the person is there and the OS login may act as them (own os_logins or
 * act_as, gw_policy_resolve_account). */
static const struct gw_person *
session_person(struct gw_req *r, char *why, size_t len)
{
	const struct gw_person *who = resolve(r, r->login.user, why, len);

	return who != NULL && strcmp(who->id, r->login.user) == 0 ? who : NULL;
}

/* Checks r against op: session, role, factors. NULL to go on, else the
 * refusal (recorded when someone logged in was refused). */
static json_t *
authorize(struct gw_req *r, const struct op *op, const uint8_t *tok, size_t toklen)
{
	const char *target = NULL;
	unsigned factors = op->factors, missing = 0;
	const char *role = op->role;
	char why[256];

	if (tok != NULL) {
		int found = gw_auth_session_find(r->ctx->auth, tok, toklen, r->peer->uid, &r->login);

		/* The store could not say whether the session lives: a store
		 * failure (dispatch's store_unreachable), not a logout the
		 * application would act on. */
		if (found < 0)
			return sg_reply_error(CKR_DEVICE_ERROR, "internal",
			                      "the session could not be read from the store");
		r->logged_in = found == 1;
		if (r->logged_in) {
			r->who = session_person(r, why, sizeof(why));
			if (r->who == NULL) {
				/* A reload took the person out, or took away this OS
				 * user's right to act as them: the session ends. */
				gw_auth_session_end(r->ctx->auth, tok, toklen, r->peer->uid);
				snprintf(r->err, sizeof(r->err), "session of %.64s ended: the policy in force "
				         "no longer lets OS user %.63s act as it", r->login.user, r->peer->login);
				gw_log_info("%s (%s)", r->err, why);
				(void)gw_req_record(r, "logout", "ok", r->err, r->login.user, NULL, 0, NULL,
				                    0, NULL);
			}
		}
		if (r->who == NULL) {
			/* Unknown, expired, from another uid, or no longer allowed:
			 * not logged in. */
			r->logged_in = false;
			memset(&r->login, 0, sizeof(r->login));
			if (op->need == NEED_SESSION)
				return sg_reply_error(CKR_USER_NOT_LOGGED_IN, "not_logged_in",
				                      "not logged in (session ended or unknown)");
		}
	}
	if (!r->logged_in)
		return NULL;      /* NEED_NONE / NEED_OPT_SESSION */

	/* What a person does to their own account has its own rule. */
	if (op->self_factors != 0 &&
	    sg_get_str(r->msg, "user", false, &target, SG_NAME_MAX, r->err, sizeof(r->err)) == 0 &&
	    target != NULL && strcmp(target, r->who->id) == 0) {
		factors = op->self_factors;
		role = NULL;
	}
	if (role != NULL && !gw_person_has_role(r->who, role)) {
		snprintf(r->err, sizeof(r->err), "only a %s may %s", strcmp(role, SEAL_ADMIN) == 0 ?
		         "seal admin" : role, op->name);
		(void)gw_req_record(r, op->name, "denied", r->err, NULL, NULL, 0, NULL, 0, NULL);
		return sg_reply_error(CKR_FUNCTION_REJECTED, "denied", "%s", r->err);
	}
	/* Through the web front a code at login proves nothing for later: a
	 * browser left open is not the person. What needs a code carries one
	 * of its own, spent here (gw_auth_code_check: once only, lockout). */
	bool web_code = r->peer->web && (factors & F_CODE);
	if (web_code)
		factors &= ~(F_CODE | F_FRESH_CODE);
	if (missing_factors(r, factors, &missing) < 0)
		return sg_reply_error(CKR_DEVICE_ERROR, "internal", "credential store error");
	if (missing != 0) {
		if (missing == F_FRESH_CODE)
			snprintf(r->err, sizeof(r->err), "%s needs a login with your password and a code "
			         "given in the last %d s", op->name, FRESH_CODE);
		else if ((missing & F_CODE) && no_token(r) && !gw_totp_opens_here(r->ctx->token))
			/* TOTP secrets are sealed on a site's token (docs/sites.md). */
			snprintf(r->err, sizeof(r->err), "%s needs a TOTP code, which a management gateway "
			         "without totp_key_file cannot check (no key to open TOTP secrets with): "
			         "do it at a site's gateway", op->name);
		else
			snprintf(r->err, sizeof(r->err), "%s needs a login with your password and a current "
			         "code (PIN = password followed by the code; `sealctl user totp-enroll` "
			         "first)", op->name);
		(void)gw_req_record(r, op->name, "denied", r->err, NULL, NULL, 0, NULL, 0, NULL);
		return sg_reply_error(op->mfa_rv ? op->mfa_rv : CKR_FUNCTION_REJECTED, "mfa_required",
		                      "%s", r->err);
	}
	if (web_code)
		return gw_auth_code_check(r, op->name);
	return NULL;
}

/* ------------------------------------------------------------------ */
/* The web front (docs/web.md)                                         */

/* What the web front may not relay: it holds no token session of its
 * own to sign with, and windows, confirmations and per-signature codes
 * belong to an OS user at a desk, not to a uid shared by every browser. */
static const char *const web_refused[] = {
	SG_OP_SIGN, SG_OP_WINDOW_OPEN, SG_OP_WINDOW_CLOSE, SG_OP_CONFIRM, SG_OP_AUTH_CONTEXT,
	SG_OP_TOTP_ENROLL, SG_OP_DEVICE_ENROLL, SG_OP_DEVICE_FETCH, NULL
};

/* Copies what the front reported, for the record: printable ASCII, no
 * quotes or backslashes (they would read as the record's own syntax). */
static void
web_clean(char *dst, size_t len, const char *src)
{
	size_t o = 0;

	for (; src != NULL && *src != '\0' && o + 1 < len; src++)
		dst[o++] = (*src >= 0x20 && *src < 0x7f && *src != '"' && *src != '\\') ? *src : '?';
	dst[o] = '\0';
}

/* The peer of one request of the web front: "via" {remote, agent} is
 * required from the front's uid and refused from anyone else (an OS user
 * cannot pass for a browser elsewhere). 0: not the front (out = peer), 1:
 * the front (out filled), -1: refused (err). */
static int
web_peer(struct gw_ctx *ctx, const struct gw_peer *peer, const json_t *msg, const char *op,
         struct gw_peer *out, char *err, size_t errlen)
{
	const json_t *via = json_object_get(msg, "via");
	const char *remote = NULL, *agent = NULL;
	unsigned char addr[sizeof(struct in6_addr)];
	char clean[200];
	bool front = ctx->cfg != NULL && ctx->cfg->web_front && peer->device == 0 &&
	             peer->uid == ctx->cfg->web_front_uid;

	*out = *peer;
	if (!front) {
		if (via != NULL) {
			snprintf(err, errlen, "\"via\" is for the web front only (web_front in the "
			         "gateway's configuration), not OS user %s", peer->login);
			return -1;
		}
		return 0;
	}
	if (ctx->cfg->web_front_exe != NULL && strcmp(peer->exe, ctx->cfg->web_front_exe) != 0) {
		snprintf(err, errlen, "OS user %.63s is the web front's, but %.120s is not its program "
		         "(web_front.exe)", peer->login, peer->exe[0] ? peer->exe : "this program");
		return -1;
	}
	if (!json_is_object(via)) {
		snprintf(err, errlen, "a request of the web front (OS user %s) must say who it is for "
		         "(\"via\": {\"remote\", \"agent\"})", peer->login);
		return -1;
	}
	if (sg_get_str(via, "remote", true, &remote, 64, err, errlen) < 0 ||
	    sg_get_str(via, "agent", false, &agent, 512, err, errlen) < 0)
		return -1;
	if (inet_pton(AF_INET, remote, addr) != 1 && inet_pton(AF_INET6, remote, addr) != 1) {
		snprintf(err, errlen, "via.remote must be an IP address");
		return -1;
	}
	for (size_t i = 0; web_refused[i] != NULL; i++)
		if (strcmp(op, web_refused[i]) == 0) {
			snprintf(err, errlen, "%s is not done through the web front", op);
			return -1;
		}
	out->web = true;
	snprintf(out->login, sizeof(out->login), "web:%s", remote);
	web_clean(clean, sizeof(clean), agent ? agent : "");
	snprintf(out->exe, sizeof(out->exe), "web:%s (front %s uid %u pid %d); reported: agent %s",
	         remote, ctx->cfg->web_front_user, (unsigned)peer->uid, (int)peer->pid,
	         clean[0] ? clean : "-");
	return 1;
}

/* A refusal for want of the store: a request that failed inside (a
 * credential read, a record's commit, an application's write: CKR_DEVICE_ERROR)
 * while the store does not answer is refused as that, the same for every
 * request, instead of each call site's "credential store error" or "audit
 * record failed" (docs/sites.md, "When the store fails"). Nothing was
 * released or changed: every change commits with its record, and a
 * signature leaves only after its record committed. */
static json_t *
store_refusal(struct gw_ctx *ctx, const char *name, json_t *rep)
{
	/* One warning every STORE_WARN_S with the count meanwhile: clients
	 * retrying through an outage must not fill the disk with the log. */
	enum { STORE_WARN_S = 10 };
	static _Atomic int64_t warned_at;
	static _Atomic unsigned refused;
	unsigned long rv;
	char err[384];
	int64_t now, last;

	if (ctx->store == NULL || rep == NULL || sg_reply_is_ok(rep, &rv, NULL, NULL) ||
	    rv != CKR_DEVICE_ERROR || gw_store_ping(ctx->store, err, sizeof(err)) == 0)
		return rep;
	atomic_fetch_add(&refused, 1);
	now = (int64_t)time(NULL);
	last = atomic_load(&warned_at);
	if (now - last >= STORE_WARN_S && atomic_compare_exchange_strong(&warned_at, &last, now))
		gw_log_warn("%s refused: the store is unreachable: %s (%u request(s) refused for want of "
		            "the store since the last such message)", name, err, atomic_exchange(&refused, 0));
	json_decref(rep);
	return sg_reply_error(CKR_DEVICE_ERROR, "store_unreachable", "%s refused: the store is "
	                      "unreachable (%s); nothing was signed or changed, try again once it "
	                      "answers", name, err);
}

json_t *
gw_dispatch(struct gw_ctx *ctx, const struct gw_peer *peer, const json_t *msg)
{
	struct gw_req r = { .ctx = ctx, .peer = peer, .msg = msg };
	struct gw_peer web;
	const char *name = NULL;
	const struct op *op = NULL;
	uint8_t *tok = NULL;
	size_t toklen = 0;
	json_t *rep;

	if (sg_get_str(msg, "op", true, &name, SG_NAME_MAX, r.err, sizeof(r.err)) < 0)
		return gw_bad_request(&r);
	for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++)
		if (strcmp(ops[i].name, name) == 0)
			op = &ops[i];
	if (op == NULL)
		return sg_reply_error(CKR_FUNCTION_NOT_SUPPORTED, "unknown_op",
		                      "unknown operation \"%s\"", name);
	switch (web_peer(ctx, peer, msg, op->name, &web, r.err, sizeof(r.err))) {
	case 1:
		r.peer = &web;
		break;
	case -1:
		return sg_reply_error(CKR_USER_TYPE_INVALID, "not_allowed", "%s", r.err);
	}

	r.snap = gw_snapshot_get(ctx);
	if (op->need != NEED_NONE) {
		bool need = op->need == NEED_SESSION;
		if (sg_get_bytes(msg, "session", need, &tok, &toklen,
		                 SG_SESSION_TOKEN_LEN, r.err, sizeof(r.err)) < 0) {
			rep = need && json_object_get(msg, "session") == NULL ?
			      sg_reply_error(CKR_USER_NOT_LOGGED_IN, "not_logged_in", "not logged in") :
			      gw_bad_request(&r);
			goto out;
		}
	}
	rep = authorize(&r, op, tok, toklen);
	if (rep == NULL)
		rep = op->fn(&r);
	rep = store_refusal(ctx, op->name, rep);
out:
	sg_free_secret(tok, toklen);
	gw_snapshot_put(&r.snap);
	if (rep == NULL)
		rep = sg_reply_error(CKR_HOST_MEMORY, "internal", "out of memory");
	return rep;
}
