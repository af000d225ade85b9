/*
 * Authentication end to end: a real sealgated on SoftHSM2 (fixture.sh),
 * our module loaded as an application loads it, pkcs11-tool, openssl with
 * the libp11 engine and sealctl. Every second-factor mode of a seal
 * (login, per_signature, out_of_band, out_of_band_confirm), replayed and
 * skewed codes, lockout with the PKCS#11 PIN flags on the way, one OS user
 * unable to lock out another, approvals needing a code, C_SetPIN, and no
 * secret in the log or the audit trail. The gateway's TOTP clock is the
 * fixture's test clock: codes are computed for a fixed time, never waited
 * for.
 */
#include <criterion/criterion.h>
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <liboath/oath.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <p11-kit/pkcs11.h>

#include "protocol.h"
#include "sealgate-pkcs11.h"

#include "sgtest.h"

static CK_FUNCTION_LIST *f;

static void
load(void)
{
	f = sgt_module_load(NULL);
	cr_assert_eq(oath_init(), OATH_OK);
}

static void
unload(void)
{
	sgt_module_unload(&f);
}

TestSuite(mfa, .init = load, .fini = unload, .timeout = 120);

/* ---- the test clock and codes ---- */

/* DIR/<prefix><arg><suffix>, where fmt is "prefix%ssuffix" or a plain name. */
static char *
path_of(const char *fmt, const char *arg)
{
	static char buf[4][512];
	static int k;
	const char *pct = strstr(fmt, "%s");

	k = (k + 1) % 4;
	if (pct == NULL)
		snprintf(buf[k], sizeof(buf[k]), "%s/%s", sgt_env("SG_AUTH_DIR"), fmt);
	else
		snprintf(buf[k], sizeof(buf[k]), "%s/%.*s%s%s", sgt_env("SG_AUTH_DIR"), (int)(pct - fmt), fmt,
		         arg, pct + 2);
	return buf[k];
}

static long long
clock_now(void)
{
	FILE *fp = fopen(path_of("clock", ""), "r");
	long long t = 0;

	cr_assert_not_null(fp);
	cr_assert_eq(fscanf(fp, "%lld", &t), 1);
	fclose(fp);
	return t;
}

/* Written beside and renamed over: the gateway may read the clock at any
 * moment, and a file caught empty would send it to the real clock. */
static void
clock_set(long long t)
{
	char tmp[PATH_MAX];
	FILE *fp;

	snprintf(tmp, sizeof(tmp), "%s.new", path_of("clock", ""));
	fp = fopen(tmp, "w");
	cr_assert_not_null(fp);
	fprintf(fp, "%lld\n", t);
	cr_assert_eq(fclose(fp), 0);
	cr_assert_eq(rename(tmp, path_of("clock", "")), 0, "%s", strerror(errno));
}

/* Moves the clock one TOTP step on: every code after it is unused. */
static long long
tick(void)
{
	long long t = clock_now() + 30;

	clock_set(t);
	return t;
}

static void
code_at(const char *user, long long t, char out[8])
{
	char b32[128], *bin = NULL;
	size_t binlen = 0;
	FILE *fp = fopen(path_of("totp-%s.b32", user), "r");

	cr_assert_not_null(fp, "no TOTP secret for %s", user);
	cr_assert_not_null(fgets(b32, sizeof(b32), fp));
	fclose(fp);
	b32[strcspn(b32, "\n")] = '\0';
	cr_assert_eq(oath_base32_decode(b32, strlen(b32), &bin, &binlen), OATH_OK);
	cr_assert_eq(oath_totp_generate(bin, binlen, (time_t)t, 30, 0, 6, out), OATH_OK);
	free(bin);
}

/* A fresh code of user: the clock moves one step on first. */
static void
fresh_code(const char *user, char out[8])
{
	code_at(user, tick(), out);
}

static void
pin_of(const char *user, const char *code, char *out, size_t len)
{
	snprintf(out, len, "%s-password%s", user, code ? code : "");
}

/* ---- shell ---- */

static int
sh(char *out, size_t outlen, const char *fmt, ...)
{
	char cmd[4096];
	va_list ap;
	FILE *p;
	size_t n = 0;
	int st;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	p = popen(cmd, "r");
	cr_assert_not_null(p);
	if (out != NULL && outlen > 0) {
		n = fread(out, 1, outlen - 1, p);
		out[n] = '\0';
	} else {
		char sink[512];
		while (fread(sink, 1, sizeof(sink), p) > 0)
			;
	}
	st = pclose(p);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static const char *
sealctl(void)
{
	static char p[512];

	snprintf(p, sizeof(p), "%s/tools/sealctl", sgt_env("SEALGATE_BUILD"));
	return p;
}

/* Writes user's password to a file for sealctl -p. */
static const char *
pwfile(const char *user)
{
	const char *p = path_of("pw-%s", user);
	FILE *fp = fopen(p, "w");

	cr_assert_not_null(fp);
	fprintf(fp, "%s-password\n", user);
	fclose(fp);
	return p;
}

/* ---- the module ---- */

static void
as_user(const char *user)
{
	setenv("SEALGATE_USER", user, 1);
	cr_assert_eq(f->C_Finalize(NULL), CKR_OK);
	cr_assert_eq(f->C_Initialize(NULL), CKR_OK);
}

static CK_SESSION_HANDLE
session(void)
{
	CK_SESSION_HANDLE h;

	cr_assert_eq(f->C_OpenSession(SEALGATE_SLOT_ID, CKF_SERIAL_SESSION, NULL, NULL, &h), CKR_OK);
	return h;
}

static CK_RV
login(CK_SESSION_HANDLE h, const char *pin)
{
	return f->C_Login(h, CKU_USER, (CK_UTF8CHAR_PTR)pin, pin ? strlen(pin) : 0);
}

static CK_FLAGS
token_flags(void)
{
	CK_TOKEN_INFO ti;

	cr_assert_eq(f->C_GetTokenInfo(SEALGATE_SLOT_ID, &ti), CKR_OK);
	return ti.flags;
}

static CK_OBJECT_HANDLE
find(CK_SESSION_HANDLE h, CK_OBJECT_CLASS cls, const char *label)
{
	return sgt_find(f, h, cls, label, NULL);
}

static const unsigned char msg[] = "Contract No. 2024-117, 1000 CNY";

/* Signs msg with CKM_SHA256_RSA_PKCS (RSA seals) or CKM_ECDSA_SHA256. */
static CK_RV
sign(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE key, bool ec, unsigned char *sig, CK_ULONG *siglen)
{
	CK_MECHANISM m = { ec ? CKM_ECDSA_SHA256 : CKM_SHA256_RSA_PKCS, NULL, 0 };
	CK_RV rv = f->C_SignInit(h, &m, key);

	if (rv != CKR_OK)
		return rv;
	return f->C_Sign(h, (CK_BYTE_PTR)msg, sizeof(msg) - 1, sig, siglen);
}

/* The RSA signature sig over msg verifies with the seal's certificate. */
static void
assert_verifies(CK_SESSION_HANDLE h, const char *label, const unsigned char *sig, size_t siglen)
{
	CK_OBJECT_HANDLE c = find(h, CKO_CERTIFICATE, label);
	CK_ATTRIBUTE a = { CKA_VALUE, NULL, 0 };
	const unsigned char *p;
	unsigned char *der;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	EVP_PKEY *k;
	X509 *x;

	cr_assert_eq(f->C_GetAttributeValue(h, c, &a, 1), CKR_OK);
	der = malloc(a.ulValueLen);
	a.pValue = der;
	cr_assert_eq(f->C_GetAttributeValue(h, c, &a, 1), CKR_OK);
	p = der;
	x = d2i_X509(NULL, &p, (long)a.ulValueLen);
	cr_assert_not_null(x);
	k = X509_get_pubkey(x);
	cr_assert_eq(EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, k), 1);
	cr_assert_eq(EVP_DigestVerify(ctx, sig, siglen, msg, sizeof(msg) - 1), 1,
	             "the signature does not verify with the %s certificate", label);
	EVP_MD_CTX_free(ctx);
	EVP_PKEY_free(k);
	X509_free(x);
	free(der);
}

/* ---- the wire protocol, as sealctl speaks it ---- */

/* A login over the wire; returns the reply (caller decrefs). */
static json_t *
wire_login(int fd, const char *user, const char *pin)
{
	json_t *req = sg_request_new(SG_OP_LOGIN);

	json_object_set_new(req, "user", json_string(user));
	json_object_set_new(req, "pin", json_string(pin));
	return sgt_call(fd, req);
}

static const char *
rep_code(const json_t *rep)
{
	const char *c = json_string_value(json_object_get(rep, "error"));
	return c ? c : "";
}

static const char *
rep_msg(const json_t *rep)
{
	const char *m = json_string_value(json_object_get(rep, "message"));
	return m ? m : "";
}

static json_t *
auth_state(int fd, const char *user)
{
	json_t *req = sg_request_new(SG_OP_AUTH_STATE);

	json_object_set_new(req, "user", json_string(user));
	return sgt_call(fd, req);
}

static long
audit_count(const char *where)
{
	return sgt_count_records(sgt_env("SG_AUTH_DIR"), where);
}

/* A seal admin unlocks user (sealctl, password + code). */
static void
admin_unlock(const char *user)
{
	char code[8], out[512];
	int rc;

	fresh_code("frank", code);
	rc = sh(out, sizeof(out), "%s --user frank -p %s user unlock %s --code %s 2>&1", sealctl(),
	        pwfile("frank"), user, code);
	cr_assert_eq(rc, 0, "unlock: %s", out);
}

/* ================================================================== */

/* Real clients (pkcs11-tool, openssl) cannot load a module built with
 * AddressSanitizer: those tests run in the plain pass only. */
static void
skip_if_sanitized(void)
{
	const char *s = getenv("SEALGATE_SANITIZE");

	if (s != NULL && s[0] != '\0' && strcmp(s, "none") != 0)
		cr_skip_test("a sanitized module cannot be loaded by pkcs11-tool or openssl (by design): run in the plain pass");
}

Test(mfa, login_mode_needs_the_code_in_the_pin)
{
	CK_SESSION_HANDLE h;
	CK_OBJECT_HANDLE key;
	unsigned char sig[512];
	CK_ULONG siglen = sizeof(sig);
	char code[8], pin[64];

	as_user("alice");
	h = session();
	/* The password alone logs in, but the seal wants the code at login. */
	pin_of("alice", NULL, pin, sizeof(pin));
	cr_assert_eq(login(h, pin), CKR_OK);
	key = find(h, CKO_PRIVATE_KEY, "Login Seal");
	cr_assert_eq(sign(h, key, false, sig, &siglen), CKR_FUNCTION_REJECTED);
	cr_assert_eq(f->C_Logout(h), CKR_OK);

	/* PIN = password followed by the current code. */
	fresh_code("alice", code);
	pin_of("alice", code, pin, sizeof(pin));
	cr_assert_eq(login(h, pin), CKR_OK);
	key = find(h, CKO_PRIVATE_KEY, "Login Seal");
	siglen = sizeof(sig);
	cr_assert_eq(sign(h, key, false, sig, &siglen), CKR_OK);
	assert_verifies(h, "Login Seal", sig, siglen);
	/* Sessions end at C_Logout: no more signatures. */
	cr_assert_eq(f->C_Logout(h), CKR_OK);
	siglen = sizeof(sig);
	cr_assert_neq(sign(h, key, false, sig, &siglen), CKR_OK);

	/* An account without TOTP cannot use a login-mode seal at all. */
	as_user("nora");
	h = session();
	cr_assert_eq(login(h, "nora-password"), CKR_OK);
	key = find(h, CKO_PRIVATE_KEY, "Login Seal");
	siglen = sizeof(sig);
	cr_assert_eq(sign(h, key, false, sig, &siglen), CKR_FUNCTION_REJECTED);
	cr_assert_eq(login(h, "nora-password123456"), CKR_USER_ALREADY_LOGGED_IN);
}

Test(mfa, login_mode_with_openssl_libp11)
{
	char code[8], out[2048], cnf[512], data[512];
	FILE *fp;
	int rc;

	skip_if_sanitized();

	snprintf(cnf, sizeof(cnf), "%s", path_of("openssl-%s.cnf", "alice"));
	fp = fopen(cnf, "w");
	cr_assert_not_null(fp);
	fprintf(fp, "openssl_conf = openssl_init\n[openssl_init]\nengines = engine_section\n"
	        "[engine_section]\npkcs11 = pkcs11_section\n[pkcs11_section]\nengine_id = pkcs11\n"
	        "dynamic_path = /usr/lib/x86_64-linux-gnu/engines-3/pkcs11.so\nMODULE_PATH = %s\ninit = 0\n",
	        sgt_env("SEALGATE_MODULE"));
	fclose(fp);
	if (access("/usr/lib/x86_64-linux-gnu/engines-3/pkcs11.so", R_OK) != 0)
		cr_skip_test("libengine-pkcs11-openssl is not installed");
	snprintf(data, sizeof(data), "%s", path_of("doc-%s.txt", "alice"));
	fp = fopen(data, "w");
	fputs((const char *)msg, fp);
	fclose(fp);

	fresh_code("alice", code);
	rc = sh(out, sizeof(out),
	        "cd %s && OPENSSL_CONF=%s SEALGATE_USER=alice openssl dgst -sha256 -engine pkcs11 "
	        "-keyform engine -sign 'pkcs11:object=Login%%20Seal;type=private;pin-value=alice-password%s' "
	        "-out sig.bin %s 2>&1 && "
	        "SEALGATE_USER=alice pkcs11-tool --module %s --read-object --type cert --label 'Login Seal' "
	        "-o login.der >/dev/null 2>&1 && openssl x509 -inform DER -in login.der -pubkey -noout >login.pub && "
	        "openssl dgst -sha256 -verify login.pub -signature sig.bin %s 2>&1",
	        sgt_env("SG_AUTH_DIR"), cnf, code, data, sgt_env("SEALGATE_MODULE"), data);
	cr_assert_eq(rc, 0, "openssl + libp11 with password followed by code: %s", out);
	cr_assert_not_null(strstr(out, "Verified OK"), "%s", out);

	/* The same code again: replayed, refused. */
	rc = sh(out, sizeof(out),
	        "cd %s && OPENSSL_CONF=%s SEALGATE_USER=alice openssl dgst -sha256 -engine pkcs11 "
	        "-keyform engine -sign 'pkcs11:object=Login%%20Seal;type=private;pin-value=alice-password%s' "
	        "-out sig2.bin %s 2>&1", sgt_env("SG_AUTH_DIR"), cnf, code, data);
	cr_assert_neq(rc, 0, "a replayed code signed: %s", out);
}

Test(mfa, replayed_code_is_refused_and_recorded)
{
	int fd = sg_connect_unix(sgt_env("SEALGATE_SOCKET"));
	char code[8], pin[64];
	json_t *rep;
	long before = audit_count("action = 'login' AND outcome = 'denied' AND reason LIKE 'replayed code%'");

	cr_assert_geq(fd, 0);
	fresh_code("bob", code);
	pin_of("bob", code, pin, sizeof(pin));
	rep = wire_login(fd, "bob", pin);
	cr_assert(sg_reply_is_ok(rep, NULL, NULL, NULL), "%s", rep_msg(rep));
	cr_assert_str_eq(json_string_value(json_array_get(json_object_get(rep, "factors"), 1)), "totp");
	json_decref(rep);
	rep = wire_login(fd, "bob", pin);
	cr_assert_not(sg_reply_is_ok(rep, NULL, NULL, NULL), "a replayed code was accepted");
	cr_assert_str_eq(rep_code(rep), "replayed");
	cr_assert_eq(json_integer_value(json_object_get(rep, "rv")), CKR_PIN_INCORRECT);
	json_decref(rep);
	cr_assert_eq(audit_count("action = 'login' AND outcome = 'denied' AND reason LIKE 'replayed code%'"),
	             before + 1);
	close(fd);
}

Test(mfa, previous_step_accepted_two_steps_ago_refused)
{
	int fd = sg_connect_unix(sgt_env("SEALGATE_SOCKET"));
	char code[8], pin[64];
	long long t;
	json_t *rep;

	cr_assert_geq(fd, 0);
	/* Three steps on, so nothing of the last two steps was used. */
	tick();
	tick();
	t = tick();
	code_at("bob", t - 60, code);
	pin_of("bob", code, pin, sizeof(pin));
	rep = wire_login(fd, "bob", pin);
	cr_assert_not(sg_reply_is_ok(rep, NULL, NULL, NULL), "a code of two steps ago was accepted");
	cr_assert_str_eq(rep_code(rep), "clock_skew");
	cr_assert_not_null(strstr(rep_msg(rep), "clock"), "%s", rep_msg(rep));
	cr_assert_not_null(strstr(rep_msg(rep), "60 s before"), "%s", rep_msg(rep));
	json_decref(rep);

	code_at("bob", t - 30, code);
	pin_of("bob", code, pin, sizeof(pin));
	rep = wire_login(fd, "bob", pin);
	cr_assert(sg_reply_is_ok(rep, NULL, NULL, NULL), "the previous step's code: %s", rep_msg(rep));
	json_decref(rep);
	close(fd);
}

Test(mfa, lockout_with_pkcs11_flags_and_admin_unlock)
{
	CK_SESSION_HANDLE h;
	char code[8], pin[64];
	int fd = sg_connect_unix(sgt_env("SEALGATE_SOCKET"));
	json_t *st;
	long long now, until;

	cr_assert_geq(fd, 0);
	/* lena's own OS login is this test's: her failures count for her account. */
	as_user("lena");
	h = session();
	cr_assert_eq(token_flags() & (CKF_USER_PIN_COUNT_LOW | CKF_USER_PIN_FINAL_TRY | CKF_USER_PIN_LOCKED), 0);
	cr_assert_eq(login(h, "not-her-password"), CKR_PIN_INCORRECT);
	cr_assert(token_flags() & CKF_USER_PIN_COUNT_LOW);
	cr_assert_not(token_flags() & CKF_USER_PIN_FINAL_TRY);
	for (int i = 0; i < 3; i++)
		cr_assert_eq(login(h, "not-her-password"), CKR_PIN_INCORRECT);
	/* Four of five used: a careful application stops here. */
	cr_assert(token_flags() & CKF_USER_PIN_FINAL_TRY);
	cr_assert_not(token_flags() & CKF_USER_PIN_LOCKED);
	/* A wrong code counts as much as a wrong password. */
	cr_assert_eq(login(h, "lena-password000000"), CKR_PIN_LOCKED);
	cr_assert(token_flags() & CKF_USER_PIN_LOCKED);
	fresh_code("lena", code);
	pin_of("lena", code, pin, sizeof(pin));
	cr_assert_eq(login(h, pin), CKR_PIN_LOCKED, "the right password while locked");

	/* A seal admin unlocks; recorded. */
	admin_unlock("lena");
	cr_assert_geq(audit_count("action = 'user_unlock' AND outcome = 'ok' AND actor = 'frank'"), 1);
	cr_assert_eq(token_flags() & (CKF_USER_PIN_COUNT_LOW | CKF_USER_PIN_LOCKED), 0);
	fresh_code("lena", code);
	pin_of("lena", code, pin, sizeof(pin));
	cr_assert_eq(login(h, pin), CKR_OK);
	cr_assert_eq(f->C_Logout(h), CKR_OK);

	/* Locked again: the delay grows (60 s, then 120 s), and it ends by itself. */
	for (int i = 0; i < 5; i++)
		login(h, "not-her-password");
	for (int i = 0; i < 5; i++)
		login(h, "not-her-password");
	st = auth_state(fd, "lena");
	cr_assert(json_is_true(json_object_get(st, "locked")));
	now = clock_now();
	until = json_integer_value(json_object_get(st, "locked_until"));
	json_decref(st);
	/* The first lock of this run lasted 60 s; it was still on when the
	 * next five failures came, so they were refused without counting... */
	cr_assert_eq(until - now, 60, "first lock of a run: %lld s", until - now);
	clock_set(until + 1);
	for (int i = 0; i < 5; i++)
		login(h, "not-her-password");
	st = auth_state(fd, "lena");
	now = clock_now();
	until = json_integer_value(json_object_get(st, "locked_until"));
	json_decref(st);
	cr_assert_eq(until - now, 120, "second lock in a row: %lld s", until - now);
	clock_set(until + 1);
	fresh_code("lena", code);
	pin_of("lena", code, pin, sizeof(pin));
	cr_assert_eq(login(h, pin), CKR_OK, "the lock ends by itself");
	close(fd);
}

/* ---- parallel guesses ---- */

#define BURST 40

struct guess {
	const char *user;
	char pin[64];
	bool answered, ok;
	unsigned long rv;
};

/* One login on a connection of its own (no Criterion asserts off the
 * main thread: they would unwind the wrong stack). */
static void *
guess_thread(void *arg)
{
	struct guess *g = arg;
	int fd = sg_connect_unix(getenv("SEALGATE_SOCKET"));
	json_t *q = sg_request_new(SG_OP_LOGIN), *r = NULL;
	char err[256];

	json_object_set_new(q, "user", json_string(g->user));
	json_object_set_new(q, "pin", json_string(g->pin));
	if (fd >= 0 && sg_call(fd, q, &r, err, sizeof(err)) == 0) {
		g->answered = true;
		g->ok = sg_reply_is_ok(r, &g->rv, NULL, NULL);
	}
	json_decref(q);
	json_decref(r);
	if (fd >= 0)
		close(fd);
	return NULL;
}

/* Sends all n logins at once, each from its own thread and connection. */
static void
burst(struct guess *g, size_t n)
{
	pthread_t th[BURST * 2];

	cr_assert_leq(n, sizeof(th) / sizeof(th[0]));
	for (size_t i = 0; i < n; i++)
		cr_assert_eq(pthread_create(&th[i], NULL, guess_thread, &g[i]), 0);
	for (size_t i = 0; i < n; i++)
		pthread_join(th[i], NULL);
	for (size_t i = 0; i < n; i++)
		cr_assert(g[i].answered, "login %zu of the burst got no answer", i);
}

/* SELECT fn(seq) FROM audit WHERE where: the last record (max), the
 * first of a kind (min); 0 when there is none. */
static long
audit_seq(const char *fn, const char *where)
{
	char sql[512];

	snprintf(sql, sizeof(sql), "SELECT coalesce(%s(seq), 0) FROM audit WHERE %s", fn, where);
	return sgt_store_number(sgt_env("SG_AUTH_DIR"), sql);
}

static long
audit_head(void)
{
	return audit_seq("max", "1");
}

/* A code of user that is none of the codes accepted or named as skewed
 * around the test clock now (so it is "wrong", and only that). */
static void
wrong_code(const char *user, int i, char out[8])
{
	long long t = clock_now();
	char near[2 * 20 + 1][8];
	bool clash;

	for (int k = -20; k <= 20; k++)
		code_at(user, t + 30LL * k, near[k + 20]);
	for (int n = i;; n += BURST) {
		snprintf(out, 8, "%06d", (n * 7919 + 13) % 1000000);
		clash = false;
		for (int k = 0; k < 41; k++)
			clash = clash || strcmp(out, near[k]) == 0;
		if (!clash)
			return;
	}
}

/* Forty wrong passwords at once: the attempt is taken in the store before
 * Argon2 runs, so exactly max_failures (5) are evaluated and the rest are
 * refused as locked (none evaluated after the lock). */
Test(mfa, parallel_wrong_passwords_evaluate_at_most_max_failures)
{
	struct guess g[BURST];
	long head, evaluated, locked;
	json_t *st;
	int fd = sgt_conn();

	admin_unlock("lena");
	head = audit_head();
	for (int i = 0; i < BURST; i++) {
		g[i] = (struct guess){ .user = "lena" };
		snprintf(g[i].pin, sizeof(g[i].pin), "guess-%02d-password", i);
	}
	burst(g, BURST);
	{
		char where[256];
		snprintf(where, sizeof(where), "action = 'login' AND actor = 'lena' AND seq > %ld AND "
		         "reason LIKE 'wrong password for lena%%'", head);
		evaluated = audit_count(where);
	}
	/* (the refusals as locked are pure denials: past the first few they
	 * are counted in a summary record, not one each: refusals.h) */
	locked = 0;
	for (int i = 0; i < BURST; i++)
		locked += g[i].rv == CKR_PIN_LOCKED;
	cr_assert_eq(evaluated, 5, "%ld of %d parallel wrong passwords were evaluated (limit 5)",
	             evaluated, BURST);
	/* (the guess that locked the account is answered CKR_PIN_LOCKED too) */
	cr_assert_geq(locked, BURST - 5, "%ld refused as locked", locked);
	for (int i = 0; i < BURST; i++)
		cr_assert(!g[i].ok && (g[i].rv == CKR_PIN_INCORRECT || g[i].rv == CKR_PIN_LOCKED),
		          "login %d: rv 0x%lx", i, g[i].rv);
	st = auth_state(fd, "lena");
	cr_assert(json_is_true(json_object_get(st, "locked")));
	json_decref(st);
	admin_unlock("lena");
	close(fd);
}

/* The same burst with the right password among the guesses. It logs in
 * only if it is one of the five attempts taken before the lock (its
 * success then ends that run, and five more guesses may be evaluated
 * before the next lock); else it is refused as locked, unevaluated. */
Test(mfa, right_password_in_a_burst_of_guesses_not_while_locked)
{
	struct guess g[BURST];
	char where[256];
	long head, evaluated;
	const struct guess *right = &g[BURST / 2];

	admin_unlock("lena");
	head = audit_head();
	for (int i = 0; i < BURST; i++) {
		g[i] = (struct guess){ .user = "lena" };
		snprintf(g[i].pin, sizeof(g[i].pin), i == BURST / 2 ? "lena-password" : "guess-%02d-password", i);
	}
	burst(g, BURST);
	snprintf(where, sizeof(where), "action = 'login' AND actor = 'lena' AND seq > %ld AND "
	         "reason LIKE 'wrong password for lena%%'", head);
	evaluated = audit_count(where);
	if (right->ok) {
		cr_assert_leq(evaluated, 9, "%ld wrong passwords evaluated around one success", evaluated);
	} else {
		cr_assert_eq(right->rv, CKR_PIN_LOCKED, "the right password: rv 0x%lx", right->rv);
		cr_assert_eq(evaluated, 5, "%ld of %d wrong passwords evaluated (limit 5)", evaluated,
		             BURST - 1);
	}
	admin_unlock("lena");
}

/* A stolen password and forty codes tried at once: five codes evaluated. */
Test(mfa, parallel_wrong_codes_evaluate_at_most_max_failures)
{
	struct guess g[BURST];
	char where[256], code[8];
	long head, evaluated;

	admin_unlock("lena");
	tick();
	head = audit_head();
	for (int i = 0; i < BURST; i++) {
		g[i] = (struct guess){ .user = "lena" };
		wrong_code("lena", i, code);
		pin_of("lena", code, g[i].pin, sizeof(g[i].pin));
	}
	burst(g, BURST);
	snprintf(where, sizeof(where), "action = 'login' AND actor = 'lena' AND seq > %ld AND "
	         "reason LIKE 'wrong code for lena%%'", head);
	evaluated = audit_count(where);
	cr_assert_eq(evaluated, 5, "%ld of %d parallel codes were evaluated (limit 5)", evaluated, BURST);
	for (int i = 0; i < BURST; i++)
		cr_assert_not(g[i].ok, "a wrong code logged in");
	admin_unlock("lena");
}

/* A field of /proc/PID/status of the fixture's sealgated, in KiB. */
static long
gateway_kib(const char *field)
{
	char line[256];
	long pid = 0, kib = -1;
	size_t n = strlen(field);
	FILE *fp = fopen(path_of("sealgated.pid", ""), "r");

	cr_assert_not_null(fp);
	cr_assert_eq(fscanf(fp, "%ld", &pid), 1);
	fclose(fp);
	snprintf(line, sizeof(line), "/proc/%ld/status", pid);
	fp = fopen(line, "r");
	cr_assert_not_null(fp, "%s: %s", line, strerror(errno));
	while (fgets(line, sizeof(line), fp) != NULL)
		if (strncmp(line, field, n) == 0 && line[n] == ':')
			kib = atol(line + n + 1);
	fclose(fp);
	cr_assert_geq(kib, 0, "no %s", field);
	return kib;
}

/* Forty logins at once: every one is answered, and the gateway's peak
 * memory grows by no more than its hashing pool (password_hash_concurrency:
 * 2 in the fixture) times Argon2id's 64 MiB ("interactive"), plus 64 MiB
 * for everything else — not forty times 64 MiB. */
Test(mfa, parallel_logins_hash_in_a_bounded_pool)
{
	static const char *const users[] = { "alice", "paul", "olga", "lena", "nora", "bob", "frank" };
	const size_t nu = sizeof(users) / sizeof(users[0]);
	struct guess g[BURST];
	long rss = gateway_kib("VmRSS"), hwm;
	int ok = 0;

	for (size_t i = 0; i < BURST; i++) {
		g[i] = (struct guess){ .user = users[i % nu] };
		pin_of(users[i % nu], NULL, g[i].pin, sizeof(g[i].pin));
	}
	burst(g, BURST);
	hwm = gateway_kib("VmHWM");
	for (size_t i = 0; i < BURST; i++) {
		/* A refusal may only be "busy, try again". */
		cr_assert(g[i].ok || g[i].rv == CKR_FUNCTION_FAILED, "%s: rv 0x%lx", g[i].user, g[i].rv);
		ok += g[i].ok;
	}
	cr_assert_gt(ok, 0);
	cr_log_info("40 parallel logins: %d logged in, peak %ld MiB over the %ld MiB before", ok,
	            (hwm - rss) / 1024, rss / 1024);
	cr_assert_lt(hwm - rss, (2 + 1) * 64 * 1024, "peak %ld MiB over the %ld MiB before the logins",
	             (hwm - rss) / 1024, rss / 1024);
}

Test(mfa, another_os_user_cannot_lock_out_the_account)
{
	int fd, status;
	pid_t pid;
	json_t *st;
	char code[8], pin[64];

	if (getuid() != 0)
		cr_skip_test("needs root to switch uid");
	admin_unlock("lena");
	/* uid nobody may act as lena (act_as): it guesses ten times. */
	pid = fork();
	if (pid == 0) {
		int c, locked = 0, refused = 0;
		if (setgid(65534) != 0 || setuid(65534) != 0)
			_exit(10);
		c = sg_connect_unix(getenv("SEALGATE_SOCKET"));
		if (c < 0)
			_exit(11);
		for (int i = 0; i < 10; i++) {
			json_t *q = sg_request_new(SG_OP_LOGIN), *r = NULL;
			unsigned long rv = 0;
			char err[256];
			json_object_set_new(q, "user", json_string("lena"));
			json_object_set_new(q, "pin", json_string("guess-guess"));
			if (sg_call(c, q, &r, err, sizeof(err)) != 0)
				_exit(12);
			if (!sg_reply_is_ok(r, &rv, NULL, NULL)) {
				if (rv == CKR_PIN_LOCKED)
					locked++;
				else
					refused++;
			}
			json_decref(q);
			json_decref(r);
		}
		{
			/* ...and may not even try alice. */
			json_t *q = sg_request_new(SG_OP_LOGIN), *r = NULL;
			unsigned long rv = 0;
			char err[256];
			json_object_set_new(q, "user", json_string("alice"));
			json_object_set_new(q, "pin", json_string("alice-password"));
			if (sg_call(c, q, &r, err, sizeof(err)) != 0 || sg_reply_is_ok(r, &rv, NULL, NULL) ||
			    rv != CKR_USER_TYPE_INVALID)
				_exit(13);
		}
		_exit(refused == 4 && locked == 6 ? 0 : 14);
	}
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status));
	cr_assert_eq(WEXITSTATUS(status), 0, "child step %d", WEXITSTATUS(status));

	/* lena's own OS user is not affected: no flags, and she logs in. */
	fd = sg_connect_unix(sgt_env("SEALGATE_SOCKET"));
	st = auth_state(fd, "lena");
	cr_assert(json_is_false(json_object_get(st, "locked")));
	cr_assert(json_is_false(json_object_get(st, "count_low")));
	json_decref(st);
	fresh_code("lena", code);
	pin_of("lena", code, pin, sizeof(pin));
	st = wire_login(fd, "lena", pin);
	cr_assert(sg_reply_is_ok(st, NULL, NULL, NULL), "%s", rep_msg(st));
	json_decref(st);
	close(fd);
}

Test(mfa, per_signature_code_through_context_specific_login)
{
	CK_SESSION_HANDLE h;
	CK_OBJECT_HANDLE key;
	CK_BBOOL always = CK_FALSE;
	CK_ATTRIBUTE a = { CKA_ALWAYS_AUTHENTICATE, &always, sizeof(always) };
	CK_MECHANISM m = { CKM_SHA256_RSA_PKCS, NULL, 0 };
	unsigned char sig[512];
	CK_ULONG siglen = sizeof(sig);
	char code[8];

	as_user("paul");
	h = session();
	/* The login itself needs the password only. */
	cr_assert_eq(login(h, "paul-password"), CKR_OK);
	key = find(h, CKO_PRIVATE_KEY, "Per-Signature Seal");
	cr_assert_eq(f->C_GetAttributeValue(h, key, &a, 1), CKR_OK);
	cr_assert_eq(always, CK_TRUE, "CKA_ALWAYS_AUTHENTICATE is not set");

	/* Without the context-specific login: refused, the app's login stays. */
	cr_assert_eq(sign(h, key, false, sig, &siglen), CKR_USER_NOT_LOGGED_IN);
	/* A size query passes without it. */
	cr_assert_eq(f->C_SignInit(h, &m, key), CKR_OK);
	siglen = 0;
	cr_assert_eq(f->C_Sign(h, (CK_BYTE_PTR)msg, sizeof(msg) - 1, NULL, &siglen), CKR_OK);
	cr_assert_eq(siglen, 256);
	fresh_code("paul", code);
	cr_assert_eq(f->C_Login(h, CKU_CONTEXT_SPECIFIC, (CK_UTF8CHAR_PTR)code, 6), CKR_OK);
	siglen = sizeof(sig);
	cr_assert_eq(f->C_Sign(h, (CK_BYTE_PTR)msg, sizeof(msg) - 1, sig, &siglen), CKR_OK);
	assert_verifies(h, "Per-Signature Seal", sig, siglen);

	/* One code, one signature: the next needs a new one. */
	cr_assert_eq(f->C_SignInit(h, &m, key), CKR_OK);
	cr_assert_eq(f->C_Login(h, CKU_CONTEXT_SPECIFIC, (CK_UTF8CHAR_PTR)code, 6), CKR_PIN_INCORRECT);
	fresh_code("paul", code);
	{
		/* Password followed by code works too (pkcs11-tool sends its --pin). */
		char pin[64];
		pin_of("paul", code, pin, sizeof(pin));
		cr_assert_eq(f->C_Login(h, CKU_CONTEXT_SPECIFIC, (CK_UTF8CHAR_PTR)pin, strlen(pin)), CKR_OK);
	}
	siglen = sizeof(sig);
	cr_assert_eq(f->C_Sign(h, (CK_BYTE_PTR)msg, sizeof(msg) - 1, sig, &siglen), CKR_OK);
	cr_assert_eq(f->C_Login(h, CKU_CONTEXT_SPECIFIC, (CK_UTF8CHAR_PTR)code, 6),
	             CKR_OPERATION_NOT_INITIALIZED);
}

/* A signature the quota refuses is refused before its second factor is
 * spent: the per-signature grant a code bought stays unused. Over the
 * wire, where the gateway's order shows (the module asks for the code
 * itself before anything reaches the gateway). */
static json_t *
wire_sign(int fd, const char *sess, const char *seal)
{
	json_t *req = sg_request_new(SG_OP_SIGN);
	uint8_t d[32] = { 1, 2, 3 };

	json_object_set_new(req, "session", json_string(sess));
	json_object_set_new(req, "seal", json_string(seal));
	json_object_set_new(req, "mechanism", json_integer(CKM_ECDSA));
	sg_set_bytes(req, "data", d, sizeof(d));
	return sgt_call(fd, req);
}

static void
wire_context(int fd, const char *sess, const char *seal, const char *user)
{
	json_t *req = sg_request_new(SG_OP_AUTH_CONTEXT), *rep;
	char code[8];

	fresh_code(user, code);
	json_object_set_new(req, "session", json_string(sess));
	json_object_set_new(req, "seal", json_string(seal));
	json_object_set_new(req, "pin", json_string(code));
	rep = sgt_call(fd, req);
	cr_assert(sg_reply_is_ok(rep, NULL, NULL, NULL), "auth_context: %s", rep_msg(rep));
	json_decref(rep);
}

Test(mfa, a_quota_refusal_comes_before_the_second_factor)
{
	int fd = sg_connect_unix(sgt_env("SEALGATE_SOCKET"));
	json_t *rep = wire_login(fd, "paul", "paul-password");
	char *sess;

	cr_assert(sg_reply_is_ok(rep, NULL, NULL, NULL), "%s", rep_msg(rep));
	sess = strdup(json_string_value(json_object_get(rep, "session")));
	json_decref(rep);
	/* Room in the quota, no code: refused for the code. */
	rep = wire_sign(fd, sess, "quota");
	cr_assert_str_eq(rep_code(rep), "mfa_required", "%s", rep_msg(rep));
	json_decref(rep);
	/* The day's one signature, with its code. */
	wire_context(fd, sess, "quota", "paul");
	rep = wire_sign(fd, sess, "quota");
	cr_assert(sg_reply_is_ok(rep, NULL, NULL, NULL), "%s", rep_msg(rep));
	json_decref(rep);
	/* The quota is used up: refused as such, with or without a code, and
	 * a code given is not spent on a signature that cannot happen. */
	rep = wire_sign(fd, sess, "quota");
	cr_assert_str_eq(rep_code(rep), "denied", "no code, quota used up: %s", rep_msg(rep));
	json_decref(rep);
	wire_context(fd, sess, "quota", "paul");
	rep = wire_sign(fd, sess, "quota");
	cr_assert_str_eq(rep_code(rep), "denied", "%s", rep_msg(rep));
	cr_assert(strstr(rep_msg(rep), "quota") || strstr(rep_msg(rep), "limit"), "%s", rep_msg(rep));
	json_decref(rep);
	free(sess);
	close(fd);
}

/* The document the command-line clients sign, in the fixture directory. */
static void
write_doc(void)
{
	FILE *fp = fopen(path_of("doc.txt", ""), "w");

	cr_assert_not_null(fp);
	fputs((const char *)msg, fp);
	fclose(fp);
}

Test(mfa, per_signature_with_pkcs11_tool)
{
	char code[8], out[4096];
	int rc;

	skip_if_sanitized();

	write_doc();
	fresh_code("paul", code);
	/* pkcs11-tool asks on stdin: the user PIN, then the context-specific
	 * PIN; it wants a terminal on stdout for that (script gives one). */
	rc = sh(out, sizeof(out),
	        "cd %s && script -qec \"printf 'paul-password\\n%s\\n' | SEALGATE_USER=paul pkcs11-tool "
	        "--module %s --login --sign --id 12 -m SHA256-RSA-PKCS -i doc.txt -o persig.sig\" "
	        "/dev/null </dev/null 2>&1 && "
	        "SEALGATE_USER=paul pkcs11-tool --module %s --read-object --type cert --id 12 -o persig.der "
	        ">/dev/null 2>&1 && openssl x509 -inform DER -in persig.der -pubkey -noout >persig.pub && "
	        "openssl dgst -sha256 -verify persig.pub -signature persig.sig doc.txt 2>&1",
	        sgt_env("SG_AUTH_DIR"), code, sgt_env("SEALGATE_MODULE"), sgt_env("SEALGATE_MODULE"));
	cr_assert_eq(rc, 0, "pkcs11-tool per-signature: %s", out);
	cr_assert_not_null(strstr(out, "Verified OK"), "%s", out);

	/* A wrong code: no signature. */
	rc = sh(out, sizeof(out),
	        "cd %s && rm -f bad.sig && script -qec \"printf 'paul-password\\n000000\\n' | "
	        "SEALGATE_USER=paul pkcs11-tool --module %s --login --sign --id 12 -m SHA256-RSA-PKCS "
	        "-i doc.txt -o bad.sig\" /dev/null </dev/null 2>&1; test ! -s bad.sig",
	        sgt_env("SG_AUTH_DIR"), sgt_env("SEALGATE_MODULE"));
	cr_assert_eq(rc, 0, "signed with a wrong code: %s", out);
}

static const char *
oob_uri_sign(char *out, size_t outlen, const char *file)
{
	char cnf[512];
	FILE *fp;
	int rc;

	snprintf(cnf, sizeof(cnf), "%s", path_of("openssl-%s.cnf", "olga"));
	fp = fopen(cnf, "w");
	cr_assert_not_null(fp);
	fprintf(fp, "openssl_conf = openssl_init\n[openssl_init]\nengines = engine_section\n"
	        "[engine_section]\npkcs11 = pkcs11_section\n[pkcs11_section]\nengine_id = pkcs11\n"
	        "dynamic_path = /usr/lib/x86_64-linux-gnu/engines-3/pkcs11.so\nMODULE_PATH = %s\ninit = 0\n",
	        sgt_env("SEALGATE_MODULE"));
	fclose(fp);
	/* No PIN anywhere: libp11 sees the protected authentication path. */
	rc = sh(out, outlen,
	        "cd %s && OPENSSL_CONF=%s SEALGATE_USER=olga openssl dgst -sha256 -engine pkcs11 "
	        "-keyform engine -sign 'pkcs11:object=Out-of-Band%%20Seal;type=private' -out %s "
	        "doc.txt </dev/null 2>&1", sgt_env("SG_AUTH_DIR"), cnf, file);
	return rc == 0 ? "ok" : NULL;
}

Test(mfa, out_of_band_window_for_apps_that_cannot_prompt)
{
	CK_SESSION_HANDLE h;
	CK_OBJECT_HANDLE key;
	unsigned char sig[512];
	CK_ULONG siglen = sizeof(sig);
	char code[8], out[4096];
	int rc;

	skip_if_sanitized();

	as_user("olga");
	cr_assert_eq(sh(out, sizeof(out), "%s --user olga logout 2>&1", sealctl()), 0, "%s", out);
	/* The token says: no PIN to type here. */
	cr_assert(token_flags() & CKF_PROTECTED_AUTHENTICATION_PATH);
	h = session();
	/* Outside a window a PIN-less login is refused. */
	cr_assert_eq(login(h, NULL), CKR_FUNCTION_CANCELED);
	cr_assert_geq(audit_count("action = 'login' AND outcome = 'denied' AND actor = 'olga' AND "
	                          "reason LIKE 'no signing window%'"), 1);

	fresh_code("olga", code);
	rc = sh(out, sizeof(out), "%s --user olga -p %s login --code %s 2>&1", sealctl(),
	        pwfile("olga"), code);
	cr_assert_eq(rc, 0, "sealctl login: %s", out);
	cr_assert_not_null(strstr(out, "signing window open"), "%s", out);

	cr_assert_eq(login(h, NULL), CKR_OK);
	key = find(h, CKO_PRIVATE_KEY, "Out-of-Band Seal");
	cr_assert_eq(sign(h, key, false, sig, &siglen), CKR_OK);
	assert_verifies(h, "Out-of-Band Seal", sig, siglen);

	/* Real clients, no PIN given: pkcs11-tool and openssl + libp11. */
	write_doc();
	rc = sh(out, sizeof(out),
	        "cd %s && SEALGATE_USER=olga pkcs11-tool --module %s --login --sign --id 13 "
	        "-m SHA256-RSA-PKCS -i doc.txt -o oob.sig </dev/null 2>&1 && test -s oob.sig",
	        sgt_env("SG_AUTH_DIR"), sgt_env("SEALGATE_MODULE"));
	cr_assert_eq(rc, 0, "pkcs11-tool without a PIN in the window: %s", out);
	if (access("/usr/lib/x86_64-linux-gnu/engines-3/pkcs11.so", R_OK) == 0)
		cr_assert_not_null(oob_uri_sign(out, sizeof(out), "oob-openssl.sig"),
		                   "openssl + libp11 without a PIN in the window: %s", out);

	/* The window closes by itself: the open session signs no more. */
	clock_set(clock_now() + 301);
	siglen = sizeof(sig);
	cr_assert_eq(sign(h, key, false, sig, &siglen), CKR_FUNCTION_REJECTED);
	cr_assert_eq(f->C_Logout(h), CKR_OK);
	cr_assert_eq(login(h, NULL), CKR_FUNCTION_CANCELED);
	if (access("/usr/lib/x86_64-linux-gnu/engines-3/pkcs11.so", R_OK) == 0)
		cr_assert_null(oob_uri_sign(out, sizeof(out), "late.sig"), "signed outside the window");

	/* sealctl logout closes a window early. */
	fresh_code("olga", code);
	cr_assert_eq(sh(out, sizeof(out), "%s --user olga -p %s login --code %s 2>&1", sealctl(),
	                pwfile("olga"), code), 0, "%s", out);
	cr_assert_eq(sh(out, sizeof(out), "%s --user olga logout 2>&1", sealctl()), 0, "%s", out);
	cr_assert_eq(login(h, NULL), CKR_FUNCTION_CANCELED);

	/* A window does not outlive a lockout: five wrong passwords from this
	 * OS user lock it out of olga's account, and the open window then lets
	 * no PIN-less login in either. */
	fresh_code("olga", code);
	cr_assert_eq(sh(out, sizeof(out), "%s --user olga -p %s login --code %s 2>&1", sealctl(),
	                pwfile("olga"), code), 0, "%s", out);
	for (int i = 0; i < 5; i++)
		login(h, "not-her-password");
	cr_assert(token_flags() & CKF_USER_PIN_LOCKED);
	cr_assert_eq(login(h, NULL), CKR_PIN_LOCKED, "a PIN-less login while the account is locked");
	cr_assert_geq(audit_count("action = 'login' AND outcome = 'denied' AND actor = 'olga' AND "
	                          "reason LIKE 'this OS user may not try the account olga until%'"), 1);
	admin_unlock("olga");
	cr_assert_eq(login(h, NULL), CKR_OK, "the window still open after the unlock");
	cr_assert_eq(f->C_Logout(h), CKR_OK);
	cr_assert_eq(sh(out, sizeof(out), "%s --user olga logout 2>&1", sealctl()), 0, "%s", out);
}

struct signer {
	CK_SESSION_HANDLE h;
	CK_OBJECT_HANDLE key;
	CK_RV rv;
};

static void *
sign_thread(void *arg)
{
	struct signer *s = arg;
	unsigned char sig[256];
	CK_ULONG siglen = sizeof(sig);

	s->rv = sign(s->h, s->key, true, sig, &siglen);
	return NULL;
}

/* olga opens her signing window (`sealctl login` with a code) and gets a
 * session logged in through it, with the key of the seal labelled label. */
static void
olga_in_window(struct signer *s, const char *label)
{
	char code[8], out[2048];

	as_user("olga");
	fresh_code("olga", code);
	cr_assert_eq(sh(out, sizeof(out), "%s --user olga -p %s login --code %s 2>&1", sealctl(),
	                pwfile("olga"), code), 0, "%s", out);
	s->h = session();
	cr_assert_eq(login(s->h, NULL), CKR_OK);
	s->key = find(s->h, CKO_PRIVATE_KEY, label);
}

/* `sealctl confirm` for olga with a fresh code: its exit status, out its output. */
static int
olga_confirms(char *out, size_t outlen)
{
	char code[8];

	fresh_code("olga", code);
	return sh(out, outlen, "%s --user olga confirm --wait 15 --code %s 2>&1", sealctl(), code);
}

/* A signature waiting for its confirmation holds the quota unit it would
 * spend: a second one for a seal allowed once a day is refused at once
 * (not after its own wait, and never after its user confirmed it), and the
 * first, confirmed, signs. */
Test(mfa, a_waiting_confirmation_holds_its_quota_unit)
{
	struct signer a, b;
	pthread_t th;
	char out[2048];
	time_t t0;
	int rc;

	olga_in_window(&a, "Once A Day Seal");
	b.h = session();
	b.key = find(b.h, CKO_PRIVATE_KEY, "Once A Day Seal");

	cr_assert_eq(pthread_create(&th, NULL, sign_thread, &a), 0);
	/* a is waiting when sealctl lists it */
	rc = 1;
	for (int i = 0; i < 50 && rc != 0; i++) {
		sh(out, sizeof(out), "%s --user olga confirm --list 2>&1", sealctl());
		rc = strstr(out, "waiting: #") && strstr(out, "confirm1") ? 0 : 1;
		if (rc != 0)
			usleep(100000);
	}
	cr_assert_eq(rc, 0, "the first signature never waited for a confirmation: %s", out);
	t0 = time(NULL);
	sign_thread(&b);
	cr_assert_eq(b.rv, CKR_FUNCTION_REJECTED, "rv 0x%lx", b.rv);
	cr_assert_lt(time(NULL) - t0, 4, "the second signature waited instead of being refused");
	cr_assert_geq(audit_count("action = 'sign' AND outcome = 'denied' AND seal = 'confirm1' AND "
	                          "reason LIKE '%quota%'"), 1);

	rc = olga_confirms(out, sizeof(out));
	pthread_join(th, NULL);
	cr_assert_eq(rc, 0, "sealctl confirm: %s (C_Sign: rv 0x%lx)", out, a.rv);
	cr_assert_eq(a.rv, CKR_OK, "the confirmed signature: rv 0x%lx", a.rv);
	cr_assert_eq(audit_count("action = 'sign' AND outcome = 'ok' AND seal = 'confirm1'"), 1);
	cr_assert_eq(sh(out, sizeof(out), "%s --user olga logout 2>&1", sealctl()), 0, "%s", out);
}

/* A signature waiting for its confirmation from a program whose path is
 * not UTF-8 (a directory named b<0xff>in): sealctl confirm --list shows it,
 * the path hex-escaped, and the confirmation names it the same way (the
 * list used to leave it out: its exe could not go into the JSON reply). */
Test(mfa, a_waiting_signature_from_a_path_not_in_utf8_is_listed)
{
	char out[2048], code[8], weird[512], ws[600];
	int rc = 1;

	as_user("olga");
	fresh_code("olga", code);
	cr_assert_eq(sh(out, sizeof(out), "%s --user olga -p %s login --code %s 2>&1", sealctl(),
	                pwfile("olga"), code), 0, "%s", out);
	snprintf(weird, sizeof(weird), "%s/b\xffin", sgt_env("SG_AUTH_DIR"));
	snprintf(ws, sizeof(ws), "%s/waitsign", weird);
	cr_assert_eq(sh(NULL, 0, "mkdir -p '%s' && cp '%s' '%s'", weird, sgt_env("SG_WAITSIGN"), ws), 0);
	cr_assert_eq(sh(NULL, 0, "SEALGATE_USER=olga '%s' '%s' 'Confirmed Seal' >%s 2>&1 </dev/null &",
	                ws, sgt_env("SEALGATE_MODULE"), path_of("waitsign.out", "")), 0);
	for (int i = 0; i < 50 && rc != 0; i++) {
		sh(out, sizeof(out), "%s --user olga confirm --list 2>&1", sealctl());
		rc = strstr(out, "waiting: #") ? 0 : 1;
		if (rc != 0)
			usleep(100000);
	}
	cr_assert_eq(rc, 0, "the signature from the 0xff path is not listed: %s", out);
	cr_assert_not_null(strstr(out, "/b\\xffin/waitsign"), "%s", out);
	rc = olga_confirms(out, sizeof(out));
	cr_assert_eq(rc, 0, "sealctl confirm: %s", out);
	for (int i = 0; i < 50; i++) {
		sh(out, sizeof(out), "cat %s", path_of("waitsign.out", ""));
		if (strstr(out, "rv "))
			break;
		usleep(100000);
	}
	cr_assert_not_null(strstr(out, "rv 0x0"), "waitsign: %s", out);
	cr_assert_eq(audit_count("action = 'sign_confirm' AND outcome = 'ok' AND "
	                         "reason LIKE '%/b_xffin/waitsign%'"), 1);
	cr_assert_eq(sh(out, sizeof(out), "%s --user olga logout 2>&1", sealctl()), 0, "%s", out);
}

Test(mfa, out_of_band_confirm_waits_for_sealctl_confirm)
{
	struct signer s;
	pthread_t th;
	char out[2048];
	int rc;
	time_t t0;

	olga_in_window(&s, "Confirmed Seal");

	/* C_Sign waits while the user confirms with a fresh code. */
	cr_assert_eq(pthread_create(&th, NULL, sign_thread, &s), 0);
	rc = olga_confirms(out, sizeof(out));
	pthread_join(th, NULL);
	cr_assert_eq(rc, 0, "sealctl confirm: %s (C_Sign: rv 0x%lx)", out, s.rv);
	cr_assert_not_null(strstr(out, "confirmed: confirm"), "%s", out);
	cr_assert_eq(s.rv, CKR_OK, "rv 0x%lx", s.rv);

	/* Nobody confirms: bounded wait, then refused. */
	t0 = time(NULL);
	sign_thread(&s);
	cr_assert_eq(s.rv, CKR_FUNCTION_REJECTED);
	cr_assert_geq(time(NULL) - t0, 2, "did not wait for a confirmation");
	cr_assert_geq(audit_count("action = 'sign' AND outcome = 'denied' AND seal = 'confirm' AND "
	                          "reason LIKE '%sealctl confirm%'"), 1);
	cr_assert_eq(sh(out, sizeof(out), "%s --user olga logout 2>&1", sealctl()), 0, "%s", out);
}

Test(mfa, approving_needs_password_and_code)
{
	int fd = sg_connect_unix(sgt_env("SEALGATE_SOCKET"));
	char code[8], pin[64];
	json_t *rep, *req;
	const char *session;
	int64_t id;

	/* alice applies for the open seal (password alone is enough to apply). */
	rep = wire_login(fd, "alice", "alice-password");
	cr_assert(sg_reply_is_ok(rep, NULL, NULL, NULL), "%s", rep_msg(rep));
	req = sg_request_new(SG_OP_APPLY);
	json_object_set_new(req, "session", json_copy(json_object_get(rep, "session")));
	json_decref(rep);
	json_object_set_new(req, "seal", json_string("open"));
	json_object_set_new(req, "reason", json_string("customer contract"));
	json_object_set_new(req, "uses", json_integer(1));
	rep = sgt_call(fd, req);
	cr_assert(sg_reply_is_ok(rep, NULL, NULL, NULL), "apply: %s", rep_msg(rep));
	id = json_integer_value(json_object_get(json_object_get(rep, "application"), "id"));
	json_decref(rep);

	/* bob with his password only: refused. */
	rep = wire_login(fd, "bob", "bob-password");
	cr_assert(sg_reply_is_ok(rep, NULL, NULL, NULL), "%s", rep_msg(rep));
	session = json_string_value(json_object_get(rep, "session"));
	req = sg_request_new(SG_OP_APPROVE);
	json_object_set_new(req, "session", json_string(session));
	json_object_set_new(req, "id", json_integer(id));
	json_decref(rep);
	rep = sgt_call(fd, req);
	cr_assert_not(sg_reply_is_ok(rep, NULL, NULL, NULL), "approved with a password alone");
	cr_assert_str_eq(rep_code(rep), "mfa_required");
	json_decref(rep);

	/* With password and code: approved. */
	fresh_code("bob", code);
	pin_of("bob", code, pin, sizeof(pin));
	rep = wire_login(fd, "bob", pin);
	cr_assert(sg_reply_is_ok(rep, NULL, NULL, NULL), "%s", rep_msg(rep));
	req = sg_request_new(SG_OP_APPROVE);
	json_object_set_new(req, "session", json_copy(json_object_get(rep, "session")));
	json_object_set_new(req, "id", json_integer(id));
	json_decref(rep);
	rep = sgt_call(fd, req);
	cr_assert(sg_reply_is_ok(rep, NULL, NULL, NULL), "approve: %s", rep_msg(rep));
	json_decref(rep);
	close(fd);
}

Test(mfa, set_pin_changes_the_password)
{
	CK_SESSION_HANDLE h;
	char code[8], old[64], pin[64];
	const char *np = "nora-new-password";

	/* nora has no TOTP: old password, new password. */
	as_user("nora");
	h = session();
	cr_assert_eq(f->C_SetPIN(h, (CK_UTF8CHAR_PTR)"wrong-password", 14, (CK_UTF8CHAR_PTR)np,
	                         strlen(np)), CKR_PIN_INCORRECT);
	cr_assert_eq(f->C_SetPIN(h, (CK_UTF8CHAR_PTR)"nora-password", 13, (CK_UTF8CHAR_PTR)"short", 5),
	             CKR_PIN_LEN_RANGE);
	cr_assert_eq(f->C_SetPIN(h, (CK_UTF8CHAR_PTR)"nora-password", 13, (CK_UTF8CHAR_PTR)np,
	                         strlen(np)), CKR_OK);
	cr_assert_eq(login(h, "nora-password"), CKR_PIN_INCORRECT);
	cr_assert_eq(login(h, np), CKR_OK);
	cr_assert_eq(f->C_SetPIN(h, (CK_UTF8CHAR_PTR)np, strlen(np), (CK_UTF8CHAR_PTR)"nora-password",
	                         13), CKR_OK);

	/* alice has TOTP: the old PIN is password followed by code. */
	as_user("alice");
	h = session();
	/* The old password without the code is not enough. */
	cr_assert_eq(f->C_SetPIN(h, (CK_UTF8CHAR_PTR)"alice-password", 14,
	                         (CK_UTF8CHAR_PTR)"alice-password-2", 16), CKR_PIN_INCORRECT);
	fresh_code("alice", code);
	pin_of("alice", code, old, sizeof(old));
	cr_assert_eq(f->C_SetPIN(h, (CK_UTF8CHAR_PTR)old, strlen(old),
	                         (CK_UTF8CHAR_PTR)"alice-password-2", 16), CKR_OK);
	fresh_code("alice", code);
	snprintf(pin, sizeof(pin), "alice-password-2%s", code);
	cr_assert_eq(login(h, pin), CKR_OK);
	cr_assert_eq(f->C_Logout(h), CKR_OK);
	fresh_code("alice", code);
	snprintf(pin, sizeof(pin), "alice-password-2%s", code);
	cr_assert_eq(f->C_SetPIN(h, (CK_UTF8CHAR_PTR)pin, strlen(pin), (CK_UTF8CHAR_PTR)"alice-password",
	                         14), CKR_OK);
}

/* Reloads the gateway's policy after sed edits it (SIGHUP), and waits for
 * the reload's record. */
static void
reload_policy(const char *sed)
{
	long before = audit_count("action = 'policy_reload' AND outcome = 'ok'");
	char out[512];

	cr_assert_eq(sh(out, sizeof(out), "sed -i '%s' %s 2>&1", sed, path_of("policy.yaml", "")), 0,
	             "%s", out);
	cr_assert_eq(sh(out, sizeof(out), "kill -HUP $(cat %s) 2>&1", path_of("sealgated.pid", "")), 0,
	             "%s", out);
	for (int i = 0; i < 100 && audit_count("action = 'policy_reload' AND outcome = 'ok'") == before; i++)
		usleep(100000);
	cr_assert_gt(audit_count("action = 'policy_reload' AND outcome = 'ok'"), before, "no reload");
}

/* A reload that takes away this OS user's act_as for nora: the session it
 * opened as nora is refused at its next use (and stays ended). */
Test(mfa, withdrawing_act_as_by_reload_ends_the_session)
{
	int fd = sgt_conn();
	json_t *rep, *req, *tok;

	rep = wire_login(fd, "nora", "nora-password");
	cr_assert(sg_reply_is_ok(rep, NULL, NULL, NULL), "%s", rep_msg(rep));
	tok = json_incref(json_object_get(rep, "session"));
	json_decref(rep);
	req = sg_request_new(SG_OP_LIST);
	json_object_set_new(req, "session", json_copy(tok));
	rep = sgt_call(fd, req);
	cr_assert(sg_reply_is_ok(rep, NULL, NULL, NULL), "%s", rep_msg(rep));
	json_decref(rep);

	reload_policy("s/accounts: \\[alice, paul, olga, nora, bob, frank\\]/accounts: [alice, paul, olga, bob, frank]/");
	req = sg_request_new(SG_OP_LIST);
	json_object_set_new(req, "session", json_copy(tok));
	rep = sgt_call(fd, req);
	cr_assert_str_eq(rep_code(rep), "not_logged_in", "the session still acts as nora: %s", rep_msg(rep));
	json_decref(rep);
	cr_assert_geq(audit_count("action = 'logout' AND actor = 'nora' AND reason LIKE '%no longer lets%'"), 1);

	reload_policy("s/accounts: \\[alice, paul, olga, bob, frank\\]/accounts: [alice, paul, olga, nora, bob, frank]/");
	req = sg_request_new(SG_OP_LIST);
	json_object_set_new(req, "session", json_copy(tok));
	rep = sgt_call(fd, req);
	cr_assert_str_eq(rep_code(rep), "not_logged_in", "an ended session came back: %s", rep_msg(rep));
	json_decref(rep);
	json_decref(tok);
	close(fd);
}

Test(mfa, z_no_secret_in_the_log_or_the_audit_trail)
{
	const char *users[] = { "alice", "paul", "olga", "lena", "bob", "frank" };
	char out[256], b32[128];
	FILE *fp;

	for (size_t i = 0; i < sizeof(users) / sizeof(users[0]); i++) {
		fp = fopen(path_of("totp-%s.b32", users[i]), "r");
		cr_assert_not_null(fp);
		cr_assert_not_null(fgets(b32, sizeof(b32), fp));
		fclose(fp);
		b32[strcspn(b32, "\n")] = '\0';
		/* grep -F exits 1 when nothing matches. */
		cr_assert_eq(sh(out, sizeof(out), "grep -F -c '%s' %s", b32, path_of("sealgated.log", "")), 1,
		             "TOTP secret of %s in the log", users[i]);
		cr_assert_eq(sh(out, sizeof(out), "grep -F -c '%s-password' %s", users[i],
		                path_of("sealgated.log", "")), 1, "password of %s in the log", users[i]);
		snprintf(out, sizeof(out), "reason LIKE '%%%s-password%%' OR detail LIKE '%%%s-password%%'",
		         users[i], users[i]);
		cr_assert_eq(audit_count(out), 0, "password of %s in the audit trail", users[i]);
	}
	/* The store holds alice's TOTP secret sealed only (the stolen-store
	 * case on two tokens is tests/auth/test_totp.c). */
	{
		char *bin = NULL;
		size_t binlen = 0;
		char hexs[2048];
		unsigned char blob[1024];
		size_t n = 0;

		fp = fopen(path_of("totp-%s.b32", "alice"), "r");
		cr_assert_not_null(fgets(b32, sizeof(b32), fp));
		fclose(fp);
		b32[strcspn(b32, "\n")] = '\0';
		cr_assert_eq(oath_base32_decode(b32, strlen(b32), &bin, &binlen), OATH_OK);
		/* Enrolled as today: no secret in auth_totp, one copy for the
		 * site, sealed to its key (magic, key hash, RSA-3072 wrap, nonce,
		 * ciphertext, tag). (The account's column is user in SQLite,
		 * account in PostgreSQL.) */
		cr_assert_eq(sgt_store_number(sgt_env("SG_AUTH_DIR"), sgt_store_is_pg() ?
		             "SELECT octet_length(secret) FROM auth_totp WHERE account = 'alice'" :
		             "SELECT length(secret) FROM auth_totp WHERE user = 'alice'"), 0);
		cr_assert_eq(sgt_store_text(sgt_env("SG_AUTH_DIR"), sgt_store_is_pg() ?
		             "SELECT encode(sealed, 'hex') FROM auth_totp_sites WHERE account = 'alice' "
		             "AND site = 'main'" :
		             "SELECT hex(sealed) FROM auth_totp_sites WHERE user = 'alice' AND site = 'main'",
		             hexs, sizeof(hexs)), 0);
		for (; hexs[2 * n] && hexs[2 * n + 1] && n < sizeof(blob); n++)
			cr_assert_eq(sscanf(hexs + 2 * n, "%2hhx", &blob[n]), 1);
		cr_assert_eq(n, 4 + 32 + 2 + 384 + 24 + binlen + 16);
		for (size_t i = 0; i + 8 <= n; i++)
			cr_assert_neq(memcmp(blob + i, bin, 8), 0, "the secret is in the store in clear");
		free(bin);
	}
}
