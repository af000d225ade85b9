/*
 * The dispatch table and the sessions it checks, through gw_dispatch with
 * a real store and audit log (no token, no socket): every admin action
 * that changes credentials needs a login with password and code; a
 * session is re-checked against the policy in force at every use; a
 * password change ends the person's sessions; logout only from the uid
 * that logged in; a credential change or a login whose audit record cannot
 * be written is refused and changes nothing.
 */
#include <criterion/criterion.h>

#include <dlfcn.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "audit.h"
#include "auth.h"
#include "dispatch.h"
#include "server.h"
#include "store.h"
#include "token.h"
#include "totp.h"

/* frank is the seal admin, alice and dave employees; OS user "clerk" may
 * act as alice (act_as), which the second policy takes away. */
static const char policy_head[] =
	"version: 1\n"
	"organization:\n"
	"  name: Table Co.\n"
	"  timezone: UTC\n"
	"  departments:\n"
	"    - { id: ops, name: Operations, head: frank }\n"
	"  people:\n"
	"    - { id: alice, name: Alice, department: ops, roles: [employee] }\n"
	"    - { id: dave, name: Dave, department: ops, roles: [employee] }\n"
	"    - { id: frank, name: Frank, department: ops, roles: [seal_admin] }\n";
static const char policy_act_as[] =
	"  act_as:\n"
	"    - { os_login: clerk, accounts: [alice] }\n";
static const char policy_seals[] =
	"seals:\n"
	"  - id: plain\n"
	"    name: Plain Seal\n"
	"    mfa: none\n"
	"    key: \"pkcs11:object=rsa-seal;type=private\"\n"
	"    users: { departments: [ops] }\n"
	"    approval: none\n";

static char dir[64];
static struct gw_config cfg;
static struct gw_ctx ctx;

static void
load_policy(bool act_as)
{
	char path[128], err[512] = "";
	struct gw_snapshot *snap = NULL;
	FILE *f;

	snprintf(path, sizeof(path), "%s/policy.yaml", dir);
	f = fopen(path, "w");
	cr_assert(f);
	fputs(policy_head, f);
	if (act_as)
		fputs(policy_act_as, f);
	fputs(policy_seals, f);
	cr_assert_eq(fclose(f), 0);
	/* What a reload (SIGHUP) does: a new snapshot, swapped in. */
	cr_assert_eq(gw_snapshot_load(&ctx, path, &snap, err, sizeof(err)), 0, "policy: %s", err);
	gw_snapshot_swap(&ctx, snap);
}

static void
set_password(const char *user, const char *pw)
{
	char hash[256];

	cr_assert_eq(gw_auth_hash_password(pw, hash, sizeof(hash)), 0);
	cr_assert_eq(gw_store_password_set(ctx.store, user, hash), 0);
}

static void
setup(void)
{
	char path[128], err[512] = "";

	strcpy(dir, "/tmp/sg-table-XXXXXX");
	cr_assert(mkdtemp(dir));
	memset(&cfg, 0, sizeof(cfg));
	cfg.token_label = "Table Co.";
	cfg.session_timeout = 600;
	memset(&ctx, 0, sizeof(ctx));
	pthread_mutex_init(&ctx.snap_lock, NULL);
	pthread_mutex_init(&ctx.wf_lock, NULL);
	ctx.cfg = &cfg;
	snprintf(ctx.instance, sizeof(ctx.instance), "table");
	snprintf(ctx.host, sizeof(ctx.host), "tablehost");
	load_policy(true);
	snprintf(path, sizeof(path), "%s/store.db", dir);
	cr_assert_eq(gw_store_open(path, &ctx.store, err, sizeof(err)), 0, "store: %s", err);
	cr_assert_eq(gw_audit_open(ctx.store, &ctx.audit, err, sizeof(err)), 0, "audit: %s", err);
	cr_assert_eq(gw_auth_new(cfg.session_timeout, &ctx.auth), 0);
	set_password("alice", "alice-password");
	set_password("frank", "frank-password");
}

static void
teardown(void)
{
	char cmd[128];

	gw_store_test_set_commit_hook(ctx.store, NULL, NULL);
	gw_ctx_close(&ctx);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", dir);
}

TestSuite(table, .init = setup, .fini = teardown, .timeout = 60);

/* ---- requests ---- */

struct session {
	uint8_t tok[SG_SESSION_TOKEN_LEN];
};

/* The peer: OS login and uid (the request's own pid and exe). */
static struct gw_peer
peer_of(const char *login, uid_t uid)
{
	struct gw_peer p;

	memset(&p, 0, sizeof(p));
	p.uid = uid;
	p.gid = getgid();
	p.pid = getpid();
	snprintf(p.login, sizeof(p.login), "%s", login);
	snprintf(p.exe, sizeof(p.exe), "/usr/bin/test-auth-dispatch");
	return p;
}

/* A session of user from uid with the factors a login would have proved
 * (logins themselves: the login tests below and tests/auth/test_mfa.c). */
static struct session
session_of(const char *user, uid_t uid, unsigned factors)
{
	struct session s;

	cr_assert_eq(gw_auth_session_new_factors(ctx.auth, user, uid, factors,
	                                         factors & GW_FACTOR_TOTP ? gw_auth_now(ctx.auth) : 0,
	                                         s.tok), 0);
	return s;
}

/* Dispatches op from peer p with session s (or none) and the string
 * fields given as name, value pairs, NULL-terminated. */
static json_t *
call(const struct gw_peer *p, const char *op, const struct session *s, ...)
{
	json_t *m = sg_request_new(op), *rep;
	const char *k, *v;
	va_list ap;

	cr_assert(m);
	if (s)
		cr_assert_eq(sg_set_bytes(m, "session", s->tok, sizeof(s->tok)), 0);
	va_start(ap, s);
	while ((k = va_arg(ap, const char *)) != NULL) {
		v = va_arg(ap, const char *);
		json_object_set_new(m, k, json_string(v));
	}
	va_end(ap);
	rep = gw_dispatch(&ctx, p, m);
	json_decref(m);
	cr_assert(rep && json_is_object(rep));
	return rep;
}

static const char *
err_of(const json_t *rep)
{
	const char *e = json_string_value(json_object_get(rep, "error"));
	return e ? e : "";
}

static const char *
msg_of(const json_t *rep)
{
	const char *e = json_string_value(json_object_get(rep, "message"));
	return e ? e : "";
}

static bool
ok(json_t *rep)
{
	bool yes = sg_reply_is_ok(rep, NULL, NULL, NULL);

	json_decref(rep);
	return yes;
}

static void
hash_of(const char *user, char *out, size_t len)
{
	out[0] = '\0';
	cr_assert_geq(gw_store_password_get(ctx.store, user, out, len), 0);
}

/* Locks alice's own logins (max_failures wrong guesses counted). */
static void
lock_alice(void)
{
	struct gw_store_attempts row;

	cr_assert_eq(gw_store_attempts_init(ctx.store, NULL, 0), 0);
	for (int i = 0; i < 5; i++) {
		int rc = gw_store_attempt_take(ctx.store, "alice", -1, gw_auth_now(ctx.auth), 5, 120, &row);
		cr_assert_eq(rc, GW_ATTEMPT_TAKEN, "attempt %d: %d (failed %ld, in flight %ld)", i, rc,
		             (long)row.failed, (long)row.inflight);
		cr_assert_eq(gw_store_attempt_end(ctx.store, "alice", -1, gw_auth_now(ctx.auth),
		                                  GW_ATTEMPT_FAILED, 5, 60, 86400, &row), 0);
	}
	cr_assert_gt(row.locked_until, gw_auth_now(ctx.auth));
}

static bool
alice_locked(void)
{
	struct gw_store_attempts row;

	cr_assert_eq(gw_store_attempts_get(ctx.store, "alice", -1, gw_auth_now(ctx.auth), &row), 0);
	return row.locked_until > gw_auth_now(ctx.auth);
}

/* ================================================================== */

/* Each admin request that changes credentials, as frank sends it. */
struct admin_op {
	const char *op, *user;
	bool has_password;
};
static const struct admin_op admin_ops[] = {
	{ SG_OP_USER_ADD, "dave", true },
	{ SG_OP_USER_PASSWD, "alice", true },
	{ SG_OP_TOTP_RESET, "alice", false },
	{ SG_OP_USER_UNLOCK, "alice", false },
};

static json_t *
admin_call(const struct gw_peer *p, const struct admin_op *a, const struct session *s)
{
	return a->has_password ? call(p, a->op, s, "user", a->user, "password", "new-password-1", NULL)
	                       : call(p, a->op, s, "user", a->user, NULL);
}

Test(table, admin_credential_changes_need_the_second_factor)
{
	struct gw_peer frank = peer_of("frank", 1001), alice = peer_of("alice", 1002);
	struct session pw = session_of("frank", 1001, GW_FACTOR_PASSWORD);
	struct session mfa = session_of("frank", 1001, GW_FACTOR_PASSWORD | GW_FACTOR_TOTP);
	struct session emp;
	char before[256], after[256];
	json_t *rep;

	for (size_t i = 0; i < sizeof(admin_ops) / sizeof(admin_ops[0]); i++) {
		const struct admin_op *a = &admin_ops[i];

		if (strcmp(a->op, SG_OP_USER_UNLOCK) == 0)
			lock_alice();
		hash_of(a->user, before, sizeof(before));
		/* A seal admin with the password alone: refused, nothing changed. */
		rep = admin_call(&frank, a, &pw);
		cr_assert_not(sg_reply_is_ok(rep, NULL, NULL, NULL), "%s with a password-only login", a->op);
		cr_assert_str_eq(err_of(rep), "mfa_required", "%s: %s", a->op, msg_of(rep));
		json_decref(rep);
		hash_of(a->user, after, sizeof(after));
		cr_assert_str_eq(before, after, "%s changed a password", a->op);
		if (strcmp(a->op, SG_OP_USER_UNLOCK) == 0)
			cr_assert(alice_locked(), "unlocked with a password-only login");
		/* Someone who is not a seal admin, even with a code: refused.
		 * (A fresh session: changes to alice's credentials end hers.) */
		emp = session_of("alice", 1002, GW_FACTOR_PASSWORD | GW_FACTOR_TOTP);
		rep = admin_call(&alice, a, &emp);
		if (strcmp(a->op, SG_OP_USER_PASSWD) != 0 || strcmp(a->user, "alice") != 0) {
			cr_assert_not(sg_reply_is_ok(rep, NULL, NULL, NULL), "%s by an employee", a->op);
			cr_assert_str_eq(err_of(rep), "denied", "%s: %s", a->op, msg_of(rep));
		}
		json_decref(rep);
		/* The seal admin with password and code: done. */
		rep = admin_call(&frank, a, &mfa);
		cr_assert(sg_reply_is_ok(rep, NULL, NULL, NULL), "%s with password and code: %s", a->op,
		          msg_of(rep));
		json_decref(rep);
		if (strcmp(a->op, SG_OP_USER_UNLOCK) == 0)
			cr_assert_not(alice_locked());
	}
	hash_of("dave", after, sizeof(after));
	cr_assert(strncmp(after, "$argon2id$", 10) == 0, "user_add set no password");
}

/* Changing one's own password needs a session, the old password, and (once
 * enrolled) a code: alice has no TOTP secret here. */
Test(table, own_password_needs_the_old_one)
{
	struct gw_peer alice = peer_of("alice", 1002);
	struct session s = session_of("alice", 1002, GW_FACTOR_PASSWORD);
	json_t *rep;

	rep = call(&alice, SG_OP_USER_PASSWD, &s, "user", "alice", "password", "alice-password-2",
	           "old_password", "not-the-password", NULL);
	cr_assert_not(sg_reply_is_ok(rep, NULL, NULL, NULL));
	cr_assert_eq(json_integer_value(json_object_get(rep, "rv")), CKR_PIN_INCORRECT, "%s", msg_of(rep));
	json_decref(rep);
	cr_assert(ok(call(&alice, SG_OP_USER_PASSWD, &s, "user", "alice", "password", "alice-password-2",
	                  "old_password", "alice-password", NULL)));
	/* Without a session, nothing. */
	rep = call(&alice, SG_OP_USER_PASSWD, NULL, "user", "alice", "password", "alice-password-3", NULL);
	cr_assert_str_eq(err_of(rep), "not_logged_in");
	json_decref(rep);
}

/* A reload that withdraws act_as: the session that OS user opened as
 * alice is refused at its next use, and ended. */
Test(table, a_session_follows_the_policy_in_force)
{
	struct gw_peer clerk = peer_of("clerk", 1003);
	json_t *rep;
	struct session s;

	rep = call(&clerk, SG_OP_LOGIN, NULL, "user", "alice", "pin", "alice-password", NULL);
	cr_assert(sg_reply_is_ok(rep, NULL, NULL, NULL), "%s", msg_of(rep));
	{
		uint8_t *t = NULL;
		size_t n = 0;
		char err[128];
		cr_assert_eq(sg_get_bytes(rep, "session", true, &t, &n, SG_SESSION_TOKEN_LEN, err,
		                          sizeof(err)), 0, "%s", err);
		cr_assert_eq(n, sizeof(s.tok));
		memcpy(s.tok, t, n);
		sg_free_secret(t, n);
	}
	json_decref(rep);
	cr_assert(ok(call(&clerk, SG_OP_LIST, &s, NULL)));

	load_policy(false);
	rep = call(&clerk, SG_OP_LIST, &s, NULL);
	cr_assert_str_eq(err_of(rep), "not_logged_in", "a withdrawn act_as still acts: %s", msg_of(rep));
	json_decref(rep);
	/* Ended, not just refused: giving the right back does not revive it. */
	load_policy(true);
	rep = call(&clerk, SG_OP_LIST, &s, NULL);
	cr_assert_str_eq(err_of(rep), "not_logged_in");
	json_decref(rep);
}

Test(table, a_password_change_ends_the_persons_sessions)
{
	struct gw_peer alice = peer_of("alice", 1002), frank = peer_of("frank", 1001);
	struct session a1 = session_of("alice", 1002, GW_FACTOR_PASSWORD);
	struct session a2 = session_of("alice", 1002, GW_FACTOR_PASSWORD);
	struct session f = session_of("frank", 1001, GW_FACTOR_PASSWORD | GW_FACTOR_TOTP);
	json_t *rep;

	/* Her own change ends her other session too. */
	cr_assert(ok(call(&alice, SG_OP_USER_PASSWD, &a1, "user", "alice", "password", "alice-password-2",
	                  "old_password", "alice-password", NULL)));
	rep = call(&alice, SG_OP_LIST, &a2, NULL);
	cr_assert_str_eq(err_of(rep), "not_logged_in", "a session outlived the password change");
	json_decref(rep);

	/* A seal admin's change ends them as well. */
	a1 = session_of("alice", 1002, GW_FACTOR_PASSWORD);
	cr_assert(ok(call(&frank, SG_OP_USER_PASSWD, &f, "user", "alice", "password", "alice-password-3",
	                  NULL)));
	rep = call(&alice, SG_OP_LIST, &a1, NULL);
	cr_assert_str_eq(err_of(rep), "not_logged_in", "a session outlived the admin's change");
	json_decref(rep);
	/* The admin's own session stays. */
	cr_assert(ok(call(&frank, SG_OP_LIST, &f, NULL)));
}

Test(table, logout_only_from_the_uid_that_logged_in)
{
	struct gw_peer alice = peer_of("alice", 1002), other = peer_of("alice", 1004);
	struct session s = session_of("alice", 1002, GW_FACTOR_PASSWORD);

	(void)ok(call(&other, SG_OP_LOGOUT, &s, NULL));
	cr_assert(ok(call(&alice, SG_OP_LIST, &s, NULL)), "another uid ended the session");
	cr_assert(ok(call(&alice, SG_OP_LOGOUT, &s, NULL)));
	cr_assert_not(ok(call(&alice, SG_OP_LIST, &s, NULL)));
}

/* ---- the audit record cannot be written (disk full) ---- */

/* Fails the commits of the audit writer only (its thread is sg-audit):
 * the store itself still works, so what is refused is the record. */
static int
fail_audit_commit(void *arg)
{
	char name[32] = "";

	(void)arg;
	pthread_getname_np(pthread_self(), name, sizeof(name));
	return strcmp(name, "sg-audit") == 0;
}

Test(table, a_credential_change_without_its_record_is_refused)
{
	struct gw_peer frank = peer_of("frank", 1001);
	struct session f = session_of("frank", 1001, GW_FACTOR_PASSWORD | GW_FACTOR_TOTP);
	char before[256], after[256];
	json_t *rep;

	lock_alice();
	hash_of("alice", before, sizeof(before));
	gw_store_test_set_commit_hook(ctx.store, fail_audit_commit, NULL);
	for (size_t i = 0; i < sizeof(admin_ops) / sizeof(admin_ops[0]); i++) {
		rep = admin_call(&frank, &admin_ops[i], &f);
		cr_assert_not(sg_reply_is_ok(rep, NULL, NULL, NULL), "%s without its record", admin_ops[i].op);
		cr_assert_str_eq(err_of(rep), "audit_failed", "%s: %s", admin_ops[i].op, msg_of(rep));
		json_decref(rep);
	}
	gw_store_test_set_commit_hook(ctx.store, NULL, NULL);
	hash_of("alice", after, sizeof(after));
	cr_assert_str_eq(before, after, "the password changed without its record");
	hash_of("dave", after, sizeof(after));
	cr_assert_str_eq(after, "", "user_add without its record");
	cr_assert(alice_locked(), "unlocked without its record");
	/* With the log writable again, the same change goes through. */
	cr_assert(ok(admin_call(&frank, &admin_ops[3], &f)));
	cr_assert_not(alice_locked());
}

Test(table, a_login_without_its_record_is_refused)
{
	struct gw_peer alice = peer_of("alice", 1002);
	size_t before = gw_auth_session_count(ctx.auth);
	json_t *rep;

	gw_store_test_set_commit_hook(ctx.store, fail_audit_commit, NULL);
	rep = call(&alice, SG_OP_LOGIN, NULL, "user", "alice", "pin", "alice-password", NULL);
	gw_store_test_set_commit_hook(ctx.store, NULL, NULL);
	cr_assert_not(sg_reply_is_ok(rep, NULL, NULL, NULL), "logged in without a record");
	cr_assert_str_eq(err_of(rep), "audit_failed", "%s", msg_of(rep));
	cr_assert_null(json_object_get(rep, "session"));
	json_decref(rep);
	cr_assert_eq(gw_auth_session_count(ctx.auth), before, "a session was left behind");
	cr_assert(ok(call(&alice, SG_OP_LOGIN, NULL, "user", "alice", "pin", "alice-password", NULL)));
}

/* ---- with a token: TOTP enrolment (the secret is sealed on it) ---- */

#define SOFTHSM "/usr/lib/softhsm/libsofthsm2.so"

static struct gw_config tok_cfg;

/* A SoftHSM2 token for the gateway (ctx.token), made by mktoken.sh. */
static void
open_token(void)
{
	const char *src = getenv("SEALGATE_SOURCE");
	char cmd[512], conf[128], err[512] = "";

	cr_assert(src, "SEALGATE_SOURCE must be set (run through meson test)");
	snprintf(cmd, sizeof(cmd), "%s/tests/backend/mktoken.sh %s sg-table 1234 k:01:EC:prime256v1 "
	         ">/dev/null", src, dir);
	cr_assert_eq(system(cmd), 0, "%s", cmd);
	snprintf(conf, sizeof(conf), "%s/softhsm2.conf", dir);
	setenv("SOFTHSM2_CONF", conf, 1);
	/* Kept mapped after token.c's dlclose so LeakSanitizer can name
	 * SoftHSM's own leaks. */
	cr_assert(dlopen(SOFTHSM, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE));
	memset(&tok_cfg, 0, sizeof(tok_cfg));
	tok_cfg.backend_module = SOFTHSM;
	tok_cfg.backend_token = "pkcs11:token=sg-table";
	tok_cfg.backend_sessions = 2;
	cr_assert_eq(gw_token_open(&tok_cfg, "1234", &ctx.token, err, sizeof(err)), 0, "%s", err);
}

static const uint8_t secret[20] = "sealgate-test-secret";

/* secret as the request carries it, and its code at the gateway's now. */
static json_t *
enrol_req(const struct session *s)
{
	json_t *m = sg_request_new(SG_OP_TOTP_ENROLL);
	char code[GW_TOTP_DIGITS + 1];

	cr_assert_eq(gw_totp_generate(secret, sizeof(secret), gw_auth_now(ctx.auth), code), 0);
	cr_assert_eq(sg_set_bytes(m, "session", s->tok, sizeof(s->tok)), 0);
	cr_assert_eq(sg_set_bytes(m, "secret", secret, sizeof(secret)), 0);
	json_object_set_new(m, "code", json_string(code));
	return m;
}

static json_t *
dispatch(const struct gw_peer *p, json_t *m)
{
	json_t *rep = gw_dispatch(&ctx, p, m);

	json_decref(m);
	cr_assert(rep && json_is_object(rep));
	return rep;
}

Test(table, enrolment_is_recorded_or_refused_and_then_needs_the_code)
{
	struct gw_peer alice = peer_of("alice", 1002);
	struct session pw = session_of("alice", 1002, GW_FACTOR_PASSWORD);
	struct session mfa;
	json_t *rep;

	open_token();

	/* The audit log cannot be written: no secret becomes active. */
	gw_store_test_set_commit_hook(ctx.store, fail_audit_commit, NULL);
	rep = dispatch(&alice, enrol_req(&pw));
	gw_store_test_set_commit_hook(ctx.store, NULL, NULL);
	cr_assert_str_eq(err_of(rep), "audit_failed", "%s", msg_of(rep));
	json_decref(rep);
	cr_assert_eq(gw_totp_enrolled(ctx.store, "alice"), 0, "a secret active without its record");

	/* Recorded: active. */
	cr_assert(ok(dispatch(&alice, enrol_req(&pw))));
	cr_assert_eq(gw_totp_enrolled(ctx.store, "alice"), 1);

	/* From now on the password alone replaces nothing and changes nothing. */
	rep = dispatch(&alice, enrol_req(&pw));
	cr_assert_str_eq(err_of(rep), "mfa_required", "%s", msg_of(rep));
	json_decref(rep);
	rep = call(&alice, SG_OP_USER_PASSWD, &pw, "user", "alice", "password", "alice-password-2",
	           "old_password", "alice-password", NULL);
	cr_assert_str_eq(err_of(rep), "mfa_required", "%s", msg_of(rep));
	cr_assert_eq(json_integer_value(json_object_get(rep, "rv")), CKR_PIN_INCORRECT);
	json_decref(rep);
	mfa = session_of("alice", 1002, GW_FACTOR_PASSWORD | GW_FACTOR_TOTP);
	cr_assert(ok(call(&alice, SG_OP_USER_PASSWD, &mfa, "user", "alice", "password",
	                  "alice-password-2", "old_password", "alice-password", NULL)));
}
