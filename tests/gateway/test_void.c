/*
 * The sign path's "sign_void" (gateway/signpath.c, docs/audit.md): the
 * record and the spent uses are committed while the token signs, so a
 * C_Sign that fails afterwards must be voided by a second record that gives
 * the seal quota and the application use back, and no signature may leave.
 * Runs gw_dispatch over a real SoftHSM2 token (mktoken.sh) behind p11shim,
 * which makes one C_Sign fail, with a real store and audit log.
 */
#include <criterion/criterion.h>

#include <dlfcn.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <openssl/x509.h>

#include "appstore.h"
#include "audit.h"
#include "auth.h"
#include "dispatch.h"
#include "quota.h"
#include "server.h"
#include "signing.h"
#include "signpath.h"
#include "store.h"
#include "token.h"

#define SOFTHSM "/usr/lib/softhsm/libsofthsm2.so"

/* "plain": no approval, a per-person quota of 2 a day, so a use the void
 * failed to give back would make the second real signature fail.
 * "gated": one approval level (ann's head, boss). */
static const char policy[] =
	"version: 1\n"
	"organization:\n"
	"  name: Void Co.\n"
	"  timezone: Asia/Shanghai\n"
	"  departments:\n"
	"    - { id: ops, name: Operations, head: boss }\n"
	"    - { id: sales, name: Sales, head: sam }\n"
	"  people:\n"
	"    - { id: ann, name: Ann, department: ops, roles: [employee] }\n"
	"    - { id: boss, name: Boss, department: ops, roles: [employee, department_head] }\n"
	"    - { id: carl, name: Carl, department: sales, roles: [employee] }\n"
	"    - { id: sam, name: Sam, department: sales, roles: [employee, department_head] }\n"
	"  act_as:\n"
	"    - { os_login: ann, accounts: [boss, carl, sam] }\n"
	"clients:\n"
	"  size_probe: [/usr/bin/test-probe]\n"
	"seals:\n"
	"  - id: plain\n"
	"    name: Plain Seal\n"
	"    kind: invoice\n"
	"    mfa: none\n"
	"    key: \"pkcs11:object=rsa-seal;type=private\"\n"
	"    holder: ops\n"
	"    users: { departments: [ops] }\n"
	"    quotas: { per_day: 10, per_month: 100, total: 1000, per_person_per_day: 2 }\n"
	"    approval: none\n"
	"  - id: gated\n"
	"    name: Gated Seal\n"
	"    kind: contract\n"
	"    mfa: none\n"
	"    key: \"pkcs11:object=ec-seal;type=private\"\n"
	"    holder: ops\n"
	"    users: { departments: [ops] }\n"
	"    quotas: { per_day: 10, per_person_per_day: 5 }\n"
	"    approval:\n"
	"      rules:\n"
	"        - levels:\n"
	"            - { head_of: applicant }\n"
	/* The sign path's other tests (below the sign_void ones): no quota,
	 * so a storm of signatures is limited by its application alone... */
	"  - id: storm\n"
	"    name: Storm Seal\n"
	"    kind: contract\n"
	"    mfa: none\n"
	"    key: \"pkcs11:object=ec-seal;type=private\"\n"
	"    holder: ops\n"
	"    users: { departments: [ops, sales] }\n"
	"    approval:\n"
	"      rules:\n"
	"        - levels:\n"
	"            - { head_of: applicant }\n"
	/* ...and the two second factors a size probe must not touch. */
	"  - id: persig\n"
	"    name: Code Seal\n"
	"    kind: invoice\n"
	"    mfa: per_signature\n"
	"    key: \"pkcs11:object=rsa-seal;type=private\"\n"
	"    holder: ops\n"
	"    users: { departments: [ops] }\n"
	"    quotas: { per_day: 10 }\n"
	"    approval: none\n"
	"  - id: confirm\n"
	"    name: Confirm Seal\n"
	"    kind: invoice\n"
	"    mfa: out_of_band_confirm\n"
	"    key: \"pkcs11:object=rsa-seal;type=private\"\n"
	"    holder: ops\n"
	"    users: { departments: [ops] }\n"
	"    quotas: { per_day: 10 }\n"
	"    approval: none\n";

static char dir[64];
static char shim_path[512];
static void *shim;
static struct gw_config cfg;
static struct gw_ctx ctx;
static struct gw_peer peer;

static void
sh(const char *fmt, ...)
{
	char cmd[2048];
	va_list ap;
	int r;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	r = system(cmd);
	cr_assert_eq(r, 0, "command failed (%d): %s", r, cmd);
}

static void
shim_set(const char *what, long v)
{
	void (*f)(const char *, long) = (void (*)(const char *, long))dlsym(shim, "shim_set");

	cr_assert(f, "shim_set: %s", dlerror());
	f(what, v);
}

static long
shim_get(const char *what)
{
	long (*f)(const char *) = (long (*)(const char *))dlsym(shim, "shim_get");

	cr_assert(f, "shim_get: %s", dlerror());
	return f(what);
}

/* The gateway as main.c builds it, minus the socket server. */
static void
setup(void)
{
	const char *src = getenv("SEALGATE_SOURCE");
	const char *build = getenv("SEALGATE_BUILD");
	char path[256], err[1024] = "";
	struct gw_snapshot *snap = NULL;
	FILE *f;

	cr_assert(src && build, "SEALGATE_SOURCE and SEALGATE_BUILD must be set (run through meson test)");
	strcpy(dir, "/tmp/sg-void-XXXXXX");
	cr_assert(mkdtemp(dir));
	sh("%s/tests/backend/mktoken.sh %s sg-test 1234 rsa-seal:01:rsa:2048 "
	   "ec-seal:02:EC:prime256v1 >/dev/null", src, dir);
	snprintf(path, sizeof(path), "%s/softhsm2.conf", dir);
	setenv("SOFTHSM2_CONF", path, 1);
	/* Kept mapped after token.c's dlclose so LeakSanitizer can name
	 * SoftHSM's own leaks. */
	cr_assert(dlopen(SOFTHSM, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE));
	/* Our own build of tests/backend/p11shim.c (tests/gateway/meson.build);
	 * token.c's dlopen of the same path gets this very handle. */
	snprintf(shim_path, sizeof(shim_path), "%s/tests/gateway/p11shim.so", build);
	shim = dlopen(shim_path, RTLD_NOW | RTLD_LOCAL);
	cr_assert(shim, "dlopen %s: %s", shim_path, dlerror());
	shim_set("fail_sign_rv", 0);

	memset(&cfg, 0, sizeof(cfg));
	cfg.backend_module = shim_path;
	cfg.backend_token = "pkcs11:token=sg-test";
	cfg.backend_sessions = 1;     /* the failed session must be replaced, not reused */
	cfg.token_label = "Void Co.";
	cfg.session_timeout = 600;

	memset(&ctx, 0, sizeof(ctx));
	pthread_mutex_init(&ctx.snap_lock, NULL);
	pthread_mutex_init(&ctx.wf_lock, NULL);
	ctx.cfg = &cfg;
	snprintf(ctx.instance, sizeof(ctx.instance), "void");
	snprintf(ctx.host, sizeof(ctx.host), "voidhost");
	ctx.started = time(NULL);
	cr_assert_eq(gw_token_open(&cfg, "1234", &ctx.token, err, sizeof(err)), 0, "token: %s", err);

	snprintf(path, sizeof(path), "%s/policy.yaml", dir);
	f = fopen(path, "w");
	cr_assert(f);
	cr_assert_eq(fwrite(policy, 1, sizeof(policy) - 1, f), sizeof(policy) - 1);
	fclose(f);
	cr_assert_eq(gw_snapshot_load(&ctx, path, &snap, err, sizeof(err)), 0, "policy: %s", err);
	gw_snapshot_swap(&ctx, snap);

	snprintf(path, sizeof(path), "%s/store.db", dir);
	cr_assert_eq(gw_store_open(path, &ctx.store, err, sizeof(err)), 0, "store: %s", err);
	cr_assert_eq(gw_audit_open(ctx.store, &ctx.audit, err, sizeof(err)), 0, "audit: %s", err);
	cr_assert_eq(gw_quota_new(ctx.store, &ctx.quota), 0);
	cr_assert_eq(gw_signpath_init(&ctx), 0);
	cr_assert_eq(gw_auth_new(cfg.session_timeout, &ctx.auth), 0);

	memset(&peer, 0, sizeof(peer));
	peer.uid = getuid();
	peer.gid = getgid();
	peer.pid = getpid();
	snprintf(peer.login, sizeof(peer.login), "ann");
	snprintf(peer.exe, sizeof(peer.exe), "/usr/bin/test-void");
}

static void
teardown(void)
{
	char cmd[128];

	gw_ctx_close(&ctx);
	if (shim)
		dlclose(shim);
	shim = NULL;
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", dir);
}

TestSuite(sign_void, .init = setup, .fini = teardown, .timeout = 180);

/* ---- requests ---- */

struct session { uint8_t tok[SG_SESSION_TOKEN_LEN]; };

/* A logged-in session of user with the factors a login would have proved
 * (the login op itself is tested in tests/auth; approve needs password and
 * code, which would otherwise take a TOTP enrolment first). */
static struct session
login(const char *user, unsigned factors)
{
	struct session s;

	cr_assert_eq(gw_auth_session_new_factors(ctx.auth, user, peer.uid, factors,
	                                         factors & GW_FACTOR_TOTP ? time(NULL) : 0, s.tok), 0);
	return s;
}

static json_t *
request(const char *op, const struct session *s)
{
	json_t *m = sg_request_new(op);

	cr_assert(m);
	if (s)
		cr_assert_eq(sg_set_bytes(m, "session", s->tok, sizeof(s->tok)), 0);
	return m;
}

/* Dispatches m (consumed) and returns the reply. */
static json_t *
call(json_t *m)
{
	json_t *rep = gw_dispatch(&ctx, &peer, m);

	cr_assert(rep && json_is_object(rep));
	json_decref(m);
	return rep;
}

static const char doc[] = "Contract no. 42 between Void Co. and its customer.";

static json_t *
sign_req(const struct session *s, const char *seal, unsigned long mech)
{
	json_t *m = request(SG_OP_SIGN, s);
	uint8_t md[SHA256_DIGEST_LENGTH];

	SHA256((const uint8_t *)doc, sizeof(doc) - 1, md);
	json_object_set_new(m, "seal", json_string(seal));
	json_object_set_new(m, "mechanism", json_integer((json_int_t)mech));
	sg_set_bytes(m, "digest", md, sizeof(md));
	sg_set_bytes(m, "data", (const uint8_t *)doc, sizeof(doc) - 1);
	json_object_set_new(m, "data_len", json_integer(sizeof(doc) - 1));
	return m;
}

static const struct gw_seal_key *
seal_key(const char *seal)
{
	const struct gw_policy *p = ctx.snap->policy;

	for (size_t i = 0; i < p->n_seals; i++)
		if (strcmp(p->seals[i].id, seal) == 0)
			return ctx.snap->keys[i];
	cr_assert_fail("no seal %s", seal);
	return NULL;
}

/* Checks sig over doc with the public key of the seal's certificate:
 * SHA256_RSA_PKCS or ECDSA_SHA256 (raw r||s). */
static bool
sig_verifies(const char *seal, const uint8_t *sig, size_t siglen)
{
	const struct gw_seal_key *k = seal_key(seal);
	const uint8_t *p = k->cert.p;
	X509 *x = d2i_X509(NULL, &p, (long)k->cert.len);
	EVP_PKEY *pub = x ? X509_get_pubkey(x) : NULL;
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	uint8_t der[256], *dp = der;
	const uint8_t *check = sig;
	size_t checklen = siglen;
	bool ok = false;

	cr_assert(pub && md);
	if (k->type == GW_KEY_EC) {
		/* PKCS#11 ECDSA is r || s; OpenSSL verifies DER. */
		ECDSA_SIG *es = ECDSA_SIG_new();
		size_t half = siglen / 2;
		cr_assert(es);
		ECDSA_SIG_set0(es, BN_bin2bn(sig, (int)half, NULL), BN_bin2bn(sig + half, (int)half, NULL));
		checklen = (size_t)i2d_ECDSA_SIG(es, &dp);
		check = der;
		ECDSA_SIG_free(es);
	}
	ok = EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, pub) == 1 &&
	     EVP_DigestVerify(md, check, checklen, (const uint8_t *)doc, sizeof(doc) - 1) == 1;
	EVP_MD_CTX_free(md);
	EVP_PKEY_free(pub);
	X509_free(x);
	return ok;
}

/* A signature that must succeed: returns its audit record's seq. */
static uint64_t
sign_ok(const struct session *s, const char *seal, unsigned long mech)
{
	json_t *rep = call(sign_req(s, seal, mech));
	uint8_t *sig = NULL;
	size_t siglen = 0;
	char err[128];
	uint64_t seq;

	cr_assert(json_is_true(json_object_get(rep, "ok")), "sign refused: %s",
	          json_string_value(json_object_get(rep, "message")));
	cr_assert_eq(sg_get_bytes(rep, "signature", true, &sig, &siglen, 1024, err, sizeof(err)), 0, "%s", err);
	cr_assert(sig_verifies(seal, sig, siglen), "the released signature does not verify");
	seq = (uint64_t)json_integer_value(json_object_get(rep, "record"));
	cr_assert_gt(seq, 0);
	free(sig);
	json_decref(rep);
	return seq;
}

/* The seal's entry in the seals reply for s: uses_left, quota_left. */
static void
seal_state(const struct session *s, const char *seal, int64_t *uses_left, int64_t *quota_left)
{
	json_t *rep = call(request(SG_OP_SEALS, s)), *arr, *o;
	size_t i;

	cr_assert(json_is_true(json_object_get(rep, "ok")));
	arr = json_object_get(rep, "seals");
	json_array_foreach(arr, i, o) {
		if (strcmp(json_string_value(json_object_get(o, "id")), seal) == 0) {
			*uses_left = json_integer_value(json_object_get(o, "uses_left"));
			*quota_left = json_integer_value(json_object_get(o, "quota_left"));
			json_decref(rep);
			return;
		}
	}
	cr_assert_fail("seal %s not in the seals reply", seal);
}

/* ---- the store ---- */

/* Every quota_use row the seal's counters can touch for ann now. */
struct counters { uint64_t day, month, total, person_day; };

static struct counters
counters(const char *seal_id)
{
	const struct gw_seal *seal = gw_policy_seal(ctx.snap->policy, seal_id);
	time_t now = time(NULL);
	char day[32], month[32];
	struct counters c = { 0 };

	snprintf(day, sizeof(day), "d:%" PRId64, gw_policy_local_day(seal, now));
	snprintf(month, sizeof(month), "m:%" PRId64, gw_policy_local_month(seal, now));
	cr_assert_eq(gw_appstore_quota_get(ctx.store, seal_id, day, "", &c.day), 0);
	cr_assert_eq(gw_appstore_quota_get(ctx.store, seal_id, month, "", &c.month), 0);
	cr_assert_eq(gw_appstore_quota_get(ctx.store, seal_id, "total", "", &c.total), 0);
	cr_assert_eq(gw_appstore_quota_get(ctx.store, seal_id, day, "ann", &c.person_day), 0);
	return c;
}

struct rec {
	uint64_t seq;
	char action[32], outcome[16], actor[32], seal[32], detail[64];
	int64_t application;
	uint64_t mechanism;
};

struct recs { struct rec r[64]; size_t n; uint64_t after; };

static int
collect(void *arg, const struct gw_audit_row *row)
{
	struct recs *rs = arg;
	struct rec *e;

	if (row->seq <= rs->after)
		return 0;
	cr_assert_lt(rs->n, sizeof(rs->r) / sizeof(rs->r[0]));
	e = &rs->r[rs->n++];
	e->seq = row->seq;
	snprintf(e->action, sizeof(e->action), "%s", row->action ? row->action : "");
	snprintf(e->outcome, sizeof(e->outcome), "%s", row->outcome ? row->outcome : "");
	snprintf(e->actor, sizeof(e->actor), "%s", row->actor ? row->actor : "");
	snprintf(e->seal, sizeof(e->seal), "%s", row->seal ? row->seal : "");
	snprintf(e->detail, sizeof(e->detail), "%s", row->detail ? row->detail : "");
	e->application = row->application;
	e->mechanism = row->mechanism;
	return 0;
}

/* The records written after seq `after`. */
static void
records_after(uint64_t after, struct recs *rs)
{
	char err[256];

	memset(rs, 0, sizeof(*rs));
	rs->after = after;
	cr_assert_eq(gw_store_audit_scan(ctx.store, collect, rs, err, sizeof(err)), 0, "%s", err);
}

static uint64_t
head(void)
{
	uint64_t seq;
	uint8_t hash[GW_AUDIT_HASH_LEN];

	gw_audit_head(ctx.audit, &seq, hash);
	return seq;
}

static void
chain_verifies(void)
{
	uint64_t count = 0;
	char err[256] = "";

	cr_assert_eq(gw_audit_verify_store(ctx.store, &count, err, sizeof(err)), 0, "chain: %s", err);
	cr_assert_eq(count, head(), "every record is in the verified chain");
}

enum failure {
	FAIL_SIGN,       /* C_Sign returns CKR_DEVICE_ERROR (operation left active) */
	PULLED,          /* the token is pulled after the record was submitted */
	OTHER_KEY,       /* the token offers another key (the caller set the shim's swap) */
};

/* The token fails one signature: the reply is an error with no signature,
 * and the records after `before` are exactly: the committed sign, its
 * sign_void naming it, and the refusal. Returns the voided seq. */
static uint64_t
failed_sign(const struct session *s, const char *seal, unsigned long mech, int64_t app_id,
            enum failure how)
{
	uint64_t before = head(), voided;
	long closes = shim_get("closes");
	struct recs rs;
	json_t *rep, *detail;
	json_error_t jerr;
	const struct rec *sign, *vd, *refusal;

	if (how == FAIL_SIGN)
		shim_set("fail_sign_rv", CKR_DEVICE_ERROR);
	else if (how == PULLED)
		shim_set("removed", 1);
	rep = call(sign_req(s, seal, mech));
	cr_assert(json_is_false(json_object_get(rep, "ok")));
	cr_assert_null(json_object_get(rep, "signature"), "no signature leaves after a token failure");
	cr_assert_null(json_object_get(rep, "record"));
	if (how == FAIL_SIGN) {
		cr_assert_eq(shim_get("fail_sign_rv"), 0, "the failing C_Sign was reached");
		cr_assert_eq(shim_get("closes"), closes + 1, "the dirty backend session is dropped");
		cr_assert_eq(json_integer_value(json_object_get(rep, "rv")), CKR_DEVICE_ERROR);
		cr_assert_str_eq(json_string_value(json_object_get(rep, "error")), "internal");
	} else if (how == OTHER_KEY) {
		cr_assert_eq(json_integer_value(json_object_get(rep, "rv")), CKR_DEVICE_ERROR);
		cr_assert_str_eq(json_string_value(json_object_get(rep, "error")), "internal");
		cr_assert(strstr(json_string_value(json_object_get(rep, "message")), "is not that key"),
		          "%s", json_string_value(json_object_get(rep, "message")));
		cr_assert(gw_token_present(ctx.token), "the token is not given up for a wrong key");
	} else {
		cr_assert_eq(json_integer_value(json_object_get(rep, "rv")), CKR_TOKEN_NOT_PRESENT);
		cr_assert_str_eq(json_string_value(json_object_get(rep, "error")), "token_absent");
		cr_assert_not(gw_token_present(ctx.token), "a pulled token is marked absent");
	}
	cr_assert(strstr(json_string_value(json_object_get(rep, "message")), "refused to sign"),
	          "%s", json_string_value(json_object_get(rep, "message")));
	json_decref(rep);

	records_after(before, &rs);
	cr_assert_eq(rs.n, 3, "sign, sign_void, refusal: got %zu records", rs.n);
	sign = &rs.r[0];
	vd = &rs.r[1];
	refusal = &rs.r[2];
	cr_assert_str_eq(sign->action, "sign");
	cr_assert_str_eq(sign->outcome, "ok");
	cr_assert_str_eq(sign->actor, "ann");
	cr_assert_str_eq(sign->seal, seal);
	cr_assert_eq(sign->application, app_id);
	cr_assert_eq(sign->mechanism, mech);

	cr_assert_str_eq(vd->action, "sign_void");
	cr_assert_str_eq(vd->outcome, "error");
	cr_assert_str_eq(vd->actor, "ann");
	cr_assert_str_eq(vd->seal, seal);
	cr_assert_eq(vd->application, app_id);
	cr_assert_eq(vd->seq, sign->seq + 1);
	detail = json_loads(vd->detail, 0, &jerr);
	cr_assert(detail && json_is_object(detail), "detail is JSON: '%s'", vd->detail);
	voided = (uint64_t)json_integer_value(json_object_get(detail, "voids"));
	json_decref(detail);
	cr_assert_eq(voided, sign->seq, "sign_void names the voided record (%s)", vd->detail);

	cr_assert_str_eq(refusal->action, "sign");
	cr_assert_str_eq(refusal->outcome, "error");
	cr_assert_str_eq(refusal->seal, seal);
	return voided;
}

/* ---- tests ---- */

Test(sign_void, token_failure_gives_the_seal_quota_back)
{
	struct session ann = login("ann", GW_FACTOR_PASSWORD);
	struct counters c0, c1, c2;
	int64_t uses, left0, left1, left2;
	uint64_t seq;

	/* ann may sign twice a day with the plain seal: spend one. */
	sign_ok(&ann, "plain", CKM_SHA256_RSA_PKCS);
	c0 = counters("plain");
	cr_assert_eq(c0.day, 1);
	cr_assert_eq(c0.month, 1);
	cr_assert_eq(c0.total, 1);
	cr_assert_eq(c0.person_day, 1);
	seal_state(&ann, "plain", &uses, &left0);
	cr_assert_eq(uses, -1, "no approval needed");
	cr_assert_eq(left0, 1, "one use left today for ann");

	failed_sign(&ann, "plain", CKM_SHA256_RSA_PKCS, 0, FAIL_SIGN);
	c1 = counters("plain");
	cr_assert_eq(memcmp(&c0, &c1, sizeof(c0)), 0,
	             "quota_use after the void: day %" PRIu64 " month %" PRIu64 " total %" PRIu64
	             " ann %" PRIu64 " (want 1 each)", c1.day, c1.month, c1.total, c1.person_day);
	seal_state(&ann, "plain", &uses, &left1);
	cr_assert_eq(left1, left0, "quota_left after the void: %" PRId64, left1);

	/* The use given back is there: ann's last one today signs... */
	seq = sign_ok(&ann, "plain", CKM_SHA256_RSA_PKCS);
	cr_assert_eq(seq, head());
	c2 = counters("plain");
	cr_assert_eq(c2.day, 2);
	cr_assert_eq(c2.month, 2);
	cr_assert_eq(c2.total, 2);
	cr_assert_eq(c2.person_day, 2);
	seal_state(&ann, "plain", &uses, &left2);
	cr_assert_eq(left2, 0);

	/* ...and it was spent for real: the next one is over the quota. */
	{
		json_t *rep = call(sign_req(&ann, "plain", CKM_SHA256_RSA_PKCS));
		cr_assert(json_is_false(json_object_get(rep, "ok")));
		cr_assert_str_eq(json_string_value(json_object_get(rep, "error")), "denied");
		cr_assert_null(json_object_get(rep, "signature"));
		json_decref(rep);
	}
	chain_verifies();
}

/* Another gateway on the same store (a second handle) spends ann's last
 * unit of the day: this gateway's cache still says one is left, but the
 * store's conditional add decides at the commit. No signature is released,
 * the refusal is recorded, nothing of it is counted, and the cache is
 * read again from the store, so the next one is refused before signing. */
Test(sign_void, a_quota_filled_at_another_gateway_is_refused_at_the_commit)
{
	struct session ann = login("ann", GW_FACTOR_PASSWORD);
	const struct gw_seal *seal = gw_policy_seal(ctx.snap->policy, "plain");
	struct gw_store *other = NULL;
	struct counters c;
	struct recs rs;
	char path[128], day[32], err[256] = "";
	int64_t uses, left;
	uint64_t before;
	json_t *rep;
	bool recorded = false;

	sign_ok(&ann, "plain", CKM_SHA256_RSA_PKCS);
	seal_state(&ann, "plain", &uses, &left);
	cr_assert_eq(left, 1);
	snprintf(path, sizeof(path), "%s/store.db", dir);
	cr_assert_eq(gw_store_open(path, &other, err, sizeof(err)), 0, "%s", err);
	snprintf(day, sizeof(day), "d:%" PRId64, gw_policy_local_day(seal, time(NULL)));
	cr_assert_eq(gw_store_tx_begin(other, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(gw_appstore_quota_add_tx(other, "plain", day, "ann", 2, err, sizeof(err)), 1,
	             "%s", err);
	cr_assert_eq(gw_store_tx_commit(other, err, sizeof(err)), 0, "%s", err);
	gw_store_close(&other);

	before = head();
	rep = call(sign_req(&ann, "plain", CKM_SHA256_RSA_PKCS));
	cr_assert(json_is_false(json_object_get(rep, "ok")), "signed over the store's quota");
	cr_assert_str_eq(json_string_value(json_object_get(rep, "error")), "denied");
	cr_assert_null(json_object_get(rep, "signature"));
	cr_assert(strstr(json_string_value(json_object_get(rep, "message")), "used up in the store"),
	          "%s", json_string_value(json_object_get(rep, "message")));
	json_decref(rep);
	records_after(before, &rs);
	for (size_t i = 0; i < rs.n; i++) {
		cr_assert(strcmp(rs.r[i].action, "sign") != 0 || strcmp(rs.r[i].outcome, "ok") != 0,
		          "a sign record committed for a refused signature");
		recorded |= strcmp(rs.r[i].action, "sign") == 0 && strcmp(rs.r[i].outcome, "denied") == 0;
	}
	cr_assert(recorded, "the refusal is recorded");
	/* Nothing of it counted: ann's day is the other gateway's 1 + ours. */
	c = counters("plain");
	cr_assert_eq(c.person_day, 2);
	cr_assert_eq(c.day, 1);
	cr_assert_eq(c.total, 1);
	/* The cache knows now. */
	seal_state(&ann, "plain", &uses, &left);
	cr_assert_eq(left, 0, "quota_left after the store refused: %" PRId64, left);
	rep = call(sign_req(&ann, "plain", CKM_SHA256_RSA_PKCS));
	cr_assert(json_is_false(json_object_get(rep, "ok")));
	cr_assert(strstr(json_string_value(json_object_get(rep, "message")), "for you"), "%s",
	          json_string_value(json_object_get(rep, "message")));
	json_decref(rep);
	chain_verifies();
}

Test(sign_void, token_failure_gives_the_application_use_back)
{
	struct session ann = login("ann", GW_FACTOR_PASSWORD);
	struct session boss = login("boss", GW_FACTOR_PASSWORD | GW_FACTOR_TOTP);
	struct gw_application app;
	struct counters c0, c1, c2;
	int64_t id, uses, left0, left1;
	json_t *m, *rep;

	/* One use, so the failed signature takes it to used_up in spend_tx
	 * and the refund has to bring it back to authorized. */
	m = request(SG_OP_APPLY, &ann);
	json_object_set_new(m, "seal", json_string("gated"));
	json_object_set_new(m, "reason", json_string("customer contract no. 42"));
	json_object_set_new(m, "uses", json_integer(1));
	rep = call(m);
	cr_assert(json_is_true(json_object_get(rep, "ok")), "apply: %s",
	          json_string_value(json_object_get(rep, "message")));
	id = json_integer_value(json_object_get(json_object_get(rep, "application"), "id"));
	cr_assert_gt(id, 0);
	json_decref(rep);
	m = request(SG_OP_APPROVE, &boss);
	json_object_set_new(m, "id", json_integer(id));
	json_object_set_new(m, "comment", json_string("fine"));
	rep = call(m);
	cr_assert(json_is_true(json_object_get(rep, "ok")), "approve: %s",
	          json_string_value(json_object_get(rep, "message")));
	cr_assert_str_eq(json_string_value(json_object_get(json_object_get(rep, "application"), "state")),
	                 "authorized");
	json_decref(rep);

	c0 = counters("gated");
	seal_state(&ann, "gated", &uses, &left0);
	cr_assert_eq(uses, 1);
	cr_assert_eq(left0, 5);

	failed_sign(&ann, "gated", CKM_ECDSA_SHA256, id, FAIL_SIGN);
	cr_assert_eq(gw_appstore_get(ctx.store, id, &app), 1);
	cr_assert_eq(app.state, GW_APP_AUTHORIZED, "state %s after the void",
	             gw_app_state_name(app.state));
	cr_assert_eq(app.uses_left, 1, "uses_left %u after the void", app.uses_left);
	c1 = counters("gated");
	cr_assert_eq(memcmp(&c0, &c1, sizeof(c0)), 0, "quota_use unchanged by the void");
	seal_state(&ann, "gated", &uses, &left1);
	cr_assert_eq(uses, 1, "uses_left in the seals reply after the void: %" PRId64, uses);
	cr_assert_eq(left1, left0);

	/* The use is spendable, once. */
	m = sign_req(&ann, "gated", CKM_ECDSA_SHA256);
	rep = call(m);
	cr_assert(json_is_true(json_object_get(rep, "ok")), "sign: %s",
	          json_string_value(json_object_get(rep, "message")));
	cr_assert_eq(json_integer_value(json_object_get(rep, "application")), id);
	{
		uint8_t *sig = NULL;
		size_t siglen = 0;
		char err[128];
		cr_assert_eq(sg_get_bytes(rep, "signature", true, &sig, &siglen, 1024, err, sizeof(err)), 0);
		cr_assert(sig_verifies("gated", sig, siglen));
		free(sig);
	}
	json_decref(rep);
	cr_assert_eq(gw_appstore_get(ctx.store, id, &app), 1);
	cr_assert_eq(app.state, GW_APP_USED_UP);
	cr_assert_eq(app.uses_left, 0);
	c2 = counters("gated");
	cr_assert_eq(c2.day, c0.day + 1);
	cr_assert_eq(c2.person_day, c0.person_day + 1);
	seal_state(&ann, "gated", &uses, &left1);
	cr_assert_eq(uses, 0);
	cr_assert_eq(left1, left0 - 1);

	rep = call(sign_req(&ann, "gated", CKM_ECDSA_SHA256));
	cr_assert(json_is_false(json_object_get(rep, "ok")), "the approval was used up");
	cr_assert_str_eq(json_string_value(json_object_get(rep, "error")), "denied");
	json_decref(rep);
	chain_verifies();
}

/* A failure of every attempt must not leak uses either: quota and
 * application counters stay where they were however often it happens. */
Test(sign_void, repeated_failures_spend_nothing)
{
	struct session ann = login("ann", GW_FACTOR_PASSWORD);
	struct counters c0, c1;
	int64_t uses, left0, left1;

	c0 = counters("plain");
	seal_state(&ann, "plain", &uses, &left0);
	cr_assert_eq(left0, 2);
	for (int i = 0; i < 3; i++)
		failed_sign(&ann, "plain", CKM_SHA256_RSA_PKCS, 0, FAIL_SIGN);
	c1 = counters("plain");
	cr_assert_eq(memcmp(&c0, &c1, sizeof(c0)), 0);
	seal_state(&ann, "plain", &uses, &left1);
	cr_assert_eq(left1, left0);
	sign_ok(&ann, "plain", CKM_SHA256_RSA_PKCS);
	sign_ok(&ann, "plain", CKM_SHA256_RSA_PKCS);
	cr_assert_eq(counters("plain").person_day, 2);
	chain_verifies();
}

/* CKR_DEVICE_REMOVED after the record was committed (the shim fails
 * C_SignInit): voided the same way, and the client is told the token is
 * absent. */
Test(sign_void, a_token_pulled_mid_signature_is_voided)
{
	struct session ann = login("ann", GW_FACTOR_PASSWORD);
	struct counters c0, c1;
	int64_t uses, left0, left1;

	sign_ok(&ann, "plain", CKM_SHA256_RSA_PKCS);
	c0 = counters("plain");
	seal_state(&ann, "plain", &uses, &left0);
	failed_sign(&ann, "plain", CKM_SHA256_RSA_PKCS, 0, PULLED);
	shim_set("removed", 0);
	c1 = counters("plain");
	cr_assert_eq(memcmp(&c0, &c1, sizeof(c0)), 0, "quota_use unchanged by the void");
	seal_state(&ann, "plain", &uses, &left1);
	cr_assert_eq(left1, left0);
	chain_verifies();
}

/* docs/smartcard.md: without a card watcher the gateway "notices the
 * card's return only when the next signature is attempted": the sign path
 * reconnects before it refuses with token_absent. */
Test(sign_void, signing_resumes_when_the_token_is_back)
{
	struct session ann = login("ann", GW_FACTOR_PASSWORD);
	json_t *rep = NULL;
	bool ok = false;

	failed_sign(&ann, "plain", CKM_SHA256_RSA_PKCS, 0, PULLED);
	shim_set("removed", 0);
	/* token.c tries a reconnect at most once a second. */
	for (int i = 0; i < 4 && !ok; i++) {
		sleep(1);
		rep = call(sign_req(&ann, "plain", CKM_SHA256_RSA_PKCS));
		ok = json_is_true(json_object_get(rep, "ok"));
		if (!ok)
			cr_log_info("attempt %d: %s", i, json_string_value(json_object_get(rep, "message")));
		json_decref(rep);
	}
	cr_assert(ok, "the token is back but signing did not resume");
	chain_verifies();
}

/* ---- the sign path's other checks, on the same in-process gateway ---- */

/* ann applies for seal with uses; boss approves unless pending. Returns the id. */
static int64_t
apply_as(const struct session *who, const char *seal, int uses)
{
	json_t *m = request(SG_OP_APPLY, who), *rep;
	int64_t id;

	json_object_set_new(m, "seal", json_string(seal));
	json_object_set_new(m, "reason", json_string("customer contract no. 42"));
	json_object_set_new(m, "uses", json_integer(uses));
	rep = call(m);
	cr_assert(json_is_true(json_object_get(rep, "ok")), "apply: %s",
	          json_string_value(json_object_get(rep, "message")));
	id = json_integer_value(json_object_get(json_object_get(rep, "application"), "id"));
	cr_assert_gt(id, 0);
	json_decref(rep);
	return id;
}

static json_t *
by_id(const char *op, const struct session *who, int64_t id)
{
	json_t *m = request(op, who);

	json_object_set_new(m, "id", json_integer(id));
	json_object_set_new(m, "comment", json_string("fine"));
	return call(m);
}

static void
approve(const struct session *boss, int64_t id)
{
	json_t *rep = by_id(SG_OP_APPROVE, boss, id);

	cr_assert(json_is_true(json_object_get(rep, "ok")), "approve #%lld: %s", (long long)id,
	          json_string_value(json_object_get(rep, "message")));
	json_decref(rep);
}

/* The application as stored (on the heap: it is about 45 KiB). */
static struct gw_application *
stored(int64_t id)
{
	struct gw_application *app = calloc(1, sizeof(*app));

	cr_assert(app);
	cr_assert_eq(gw_appstore_get(ctx.store, id, app), 1, "application #%lld", (long long)id);
	return app;
}

struct revoke_tx { struct gw_application *app; };

static int
revoke_apply(struct gw_store *st, void *arg, char *err, size_t errlen)
{
	struct revoke_tx *t = arg;

	return gw_appstore_update_tx(st, t->app, GW_APP_AUTHORIZED, t->app->level, time(NULL),
	                             err, errlen);
}

/* Issue item 10, deterministically: a transition stored from a copy read
 * before a signature spent a use must not give that use back. */
Test(sign_void, a_transition_never_writes_back_a_stale_uses_left)
{
	struct session ann = login("ann", GW_FACTOR_PASSWORD);
	struct session boss = login("boss", GW_FACTOR_PASSWORD | GW_FACTOR_TOTP);
	struct gw_application *before, *after;
	struct revoke_tx t;
	struct gw_audit_event ev = { .action = "application_revoke", .outcome = "ok", .actor = "ann",
	                             .seal = "storm", .exe = "test" };
	uint64_t seq;
	char err[256] = "";
	int64_t id = apply_as(&ann, "storm", 5);

	approve(&boss, id);
	before = stored(id);            /* what a revoke read: 5 left */
	cr_assert_eq(before->uses_left, 5);
	sign_ok(&ann, "storm", CKM_ECDSA_SHA256);
	sign_ok(&ann, "storm", CKM_ECDSA_SHA256);
	cr_assert_eq(gw_wf_revoke(before, gw_policy_person(ctx.snap->policy, "ann"), time(NULL),
	                          err, sizeof(err)), 0, "%s", err);
	t.app = before;
	ev.application = id;
	cr_assert_eq(gw_audit_record_with(ctx.audit, &ev, revoke_apply, &t, &seq, err, sizeof(err)), 0,
	             "%s", err);
	after = stored(id);
	cr_assert_eq(after->state, GW_APP_REVOKED);
	cr_assert_eq(after->uses_left, 3, "uses_left %u after the revoke: the two spent uses came back",
	             after->uses_left);
	free(before);
	free(after);
}

/* ---- a revoke racing a signing storm ---- */

#define STORM_THREADS 4
#define STORM_ROUNDS 5
#define STORM_USES 400

struct storm {
	const struct session *s;
	int stop;                /* atomic */
	long ok, refused, bad;   /* atomic */
	long audit_failed;       /* atomic: refusals that blamed the audit log */
};

/* A signer: signs with the storm seal until told to stop. No Criterion
 * assertion here (another thread); the main thread checks the counts. */
static void *
storm_signer(void *arg)
{
	struct storm *st = arg;
	uint8_t md[SHA256_DIGEST_LENGTH];

	SHA256((const uint8_t *)doc, sizeof(doc) - 1, md);
	while (!__atomic_load_n(&st->stop, __ATOMIC_SEQ_CST)) {
		json_t *m = sg_request_new(SG_OP_SIGN), *rep;

		if (m == NULL) {
			__atomic_add_fetch(&st->bad, 1, __ATOMIC_SEQ_CST);
			break;
		}
		sg_set_bytes(m, "session", st->s->tok, sizeof(st->s->tok));
		json_object_set_new(m, "seal", json_string("storm"));
		json_object_set_new(m, "mechanism", json_integer(CKM_ECDSA_SHA256));
		sg_set_bytes(m, "digest", md, sizeof(md));
		sg_set_bytes(m, "data", (const uint8_t *)doc, sizeof(doc) - 1);
		json_object_set_new(m, "data_len", json_integer(sizeof(doc) - 1));
		rep = gw_dispatch(&ctx, &peer, m);
		json_decref(m);
		if (rep == NULL)
			__atomic_add_fetch(&st->bad, 1, __ATOMIC_SEQ_CST);
		else if (json_is_true(json_object_get(rep, "ok")) && json_object_get(rep, "signature"))
			__atomic_add_fetch(&st->ok, 1, __ATOMIC_SEQ_CST);
		else
			__atomic_add_fetch(&st->refused, 1, __ATOMIC_SEQ_CST);
		if (rep != NULL && json_is_false(json_object_get(rep, "ok")) &&
		    strcmp(json_string_value(json_object_get(rep, "error")) ?: "", "audit_failed") == 0)
			__atomic_add_fetch(&st->audit_failed, 1, __ATOMIC_SEQ_CST);
		json_decref(rep);
	}
	return NULL;
}

/* The log's view of one application: its released signatures, their last
 * seq, and the seq of its revocation. */
struct app_log { int64_t app; long signs; uint64_t last_sign, revoke; };

static int
app_log_scan(void *arg, const struct gw_audit_row *row)
{
	struct app_log *l = arg;

	if (row->application != l->app || row->action == NULL || row->outcome == NULL)
		return 0;
	if (strcmp(row->action, "sign") == 0 && strcmp(row->outcome, "ok") == 0) {
		l->signs++;
		l->last_sign = row->seq;
	} else if (strcmp(row->action, "sign_void") == 0) {
		l->signs--;
	} else if (strcmp(row->action, "application_revoke") == 0 && strcmp(row->outcome, "ok") == 0) {
		l->revoke = row->seq;
	}
	return 0;
}

/* Issue item 10: signers keep signing while the applicant revokes. After
 * the revoke no signature is made with the application, every use spent is
 * a recorded signature, and uses_left never rises. Several rounds, since
 * a race shows only now and then. */
Test(sign_void, a_revoke_racing_a_signing_storm_keeps_the_count_exact)
{
	struct session ann = login("ann", GW_FACTOR_PASSWORD);
	struct session boss = login("boss", GW_FACTOR_PASSWORD | GW_FACTOR_TOTP);

	for (int round = 0; round < STORM_ROUNDS; round++) {
		struct storm st = { .s = &ann };
		pthread_t th[STORM_THREADS];
		int64_t id = apply_as(&ann, "storm", STORM_USES);
		uint32_t low = STORM_USES;
		long attempts_at_revoke;
		struct app_log lg = { .app = id };
		struct gw_application *app;
		char err[256];
		json_t *rep;

		approve(&boss, id);
		for (int i = 0; i < STORM_THREADS; i++)
			cr_assert_eq(pthread_create(&th[i], NULL, storm_signer, &st), 0);
		/* Revoke once a few signatures are in, while the rest keep coming. */
		for (;;) {
			app = stored(id);
			cr_assert_leq(app->uses_left, low, "round %d: uses_left rose from %u to %u",
			              round, low, app->uses_left);
			low = app->uses_left;
			free(app);
			if (STORM_USES - low >= 5 + (uint32_t)round * 3)
				break;
			usleep(1000);
		}
		rep = by_id(SG_OP_REVOKE, &ann, id);
		cr_assert(json_is_true(json_object_get(rep, "ok")), "round %d: revoke: %s", round,
		          json_string_value(json_object_get(rep, "message")));
		json_decref(rep);
		attempts_at_revoke = __atomic_load_n(&st.ok, __ATOMIC_SEQ_CST) +
		                     __atomic_load_n(&st.refused, __ATOMIC_SEQ_CST);
		/* Let the signers try on: each of these must be refused. */
		while (__atomic_load_n(&st.ok, __ATOMIC_SEQ_CST) +
		       __atomic_load_n(&st.refused, __ATOMIC_SEQ_CST) < attempts_at_revoke + 4 * STORM_THREADS) {
			app = stored(id);
			cr_assert_leq(app->uses_left, low, "round %d: uses_left rose from %u to %u after the revoke",
			              round, low, app->uses_left);
			low = app->uses_left;
			free(app);
			usleep(1000);
		}
		__atomic_store_n(&st.stop, 1, __ATOMIC_SEQ_CST);
		for (int i = 0; i < STORM_THREADS; i++)
			pthread_join(th[i], NULL);
		cr_assert_eq(st.bad, 0, "round %d: %ld requests got no reply", round, st.bad);
		/* One the revoke overtook is refused for that, not as a failure
		 * of the audit log. */
		cr_assert_eq(st.audit_failed, 0, "round %d: %ld refusals blamed the audit log", round,
		             st.audit_failed);

		cr_assert_eq(gw_store_audit_scan(ctx.store, app_log_scan, &lg, err, sizeof(err)), 0, "%s", err);
		app = stored(id);
		cr_assert_eq(app->state, GW_APP_REVOKED, "round %d: state %s", round,
		             gw_app_state_name(app->state));
		cr_assert_gt(lg.revoke, 0, "round %d: the revoke is recorded", round);
		cr_assert_lt(lg.last_sign, lg.revoke, "round %d: a signature (record %llu) came after the revoke (%llu)",
		             round, (unsigned long long)lg.last_sign, (unsigned long long)lg.revoke);
		cr_assert_eq(lg.signs, st.ok, "round %d: %ld signatures released, %ld recorded", round,
		             st.ok, lg.signs);
		cr_assert_eq((long)(STORM_USES - app->uses_left), lg.signs,
		             "round %d: uses spent %u, signatures recorded %ld", round,
		             STORM_USES - app->uses_left, lg.signs);
		cr_assert_leq(app->uses_left, low, "round %d: uses_left rose to %u", round, app->uses_left);
		cr_log_info("round %d: %ld signed, %ld refused, %u of %d uses left", round, st.ok,
		            st.refused, app->uses_left, STORM_USES);
		free(app);
	}
	chain_verifies();
}

/* ---- applications beyond the newest few (issue item 16) ---- */

static bool
listed(json_t *rep, int64_t id)
{
	json_t *a;
	size_t i;

	json_array_foreach(json_object_get(rep, "applications"), i, a)
		if (json_integer_value(json_object_get(a, "id")) == id)
			return true;
	return false;
}

static json_t *
list(const struct session *who, const char *which, int64_t before)
{
	json_t *m = request(SG_OP_LIST, who), *rep;

	json_object_set_new(m, "which", json_string(which));
	if (before > 0)
		json_object_set_new(m, "before", json_integer(before));
	rep = call(m);
	cr_assert(json_is_true(json_object_get(rep, "ok")), "list: %s",
	          json_string_value(json_object_get(rep, "message")));
	return rep;
}

/* The sign path used to look at the newest 64 of ann's applications only:
 * 70 newer pending ones hid the authorized one. */
Test(sign_void, an_application_older_than_the_newest_64_is_approved_shown_and_used)
{
	struct session ann = login("ann", GW_FACTOR_PASSWORD);
	struct session boss = login("boss", GW_FACTOR_PASSWORD | GW_FACTOR_TOTP);
	int64_t old = apply_as(&ann, "storm", 1);
	json_t *rep;

	for (int i = 0; i < 70; i++)
		apply_as(&ann, "storm", 1);
	approve(&boss, old);
	rep = by_id(SG_OP_SHOW, &ann, old);
	cr_assert(json_is_true(json_object_get(rep, "ok")));
	cr_assert_str_eq(json_string_value(json_object_get(json_object_get(rep, "application"), "state")),
	                 "authorized");
	json_decref(rep);
	rep = call(sign_req(&ann, "storm", CKM_ECDSA_SHA256));
	cr_assert(json_is_true(json_object_get(rep, "ok")), "sign: %s",
	          json_string_value(json_object_get(rep, "message")));
	cr_assert_eq(json_integer_value(json_object_get(rep, "application")), old);
	json_decref(rep);
	{
		struct gw_application *app = stored(old);
		cr_assert_eq(app->state, GW_APP_USED_UP);
		free(app);
	}
}

/* `list` used to cut at the newest 500 and filter afterwards: carl's 501
 * newer applications, which boss may not see, hid ann's. Also: pages. */
Test(sign_void, list_finds_a_match_older_than_500_others_and_pages)
{
	struct session ann = login("ann", GW_FACTOR_PASSWORD);
	struct session carl = login("carl", GW_FACTOR_PASSWORD);
	struct session boss = login("boss", GW_FACTOR_PASSWORD);
	struct session sam = login("sam", GW_FACTOR_PASSWORD);
	int64_t mine = apply_as(&ann, "storm", 1), next;
	size_t seen;
	json_t *rep;

	for (int i = 0; i < 501; i++)
		apply_as(&carl, "storm", 1);
	rep = list(&boss, "all", 0);
	cr_assert(listed(rep, mine), "boss's --all misses ann's application #%lld", (long long)mine);
	cr_assert_eq(json_array_size(json_object_get(rep, "applications")), 1);
	cr_assert_null(json_object_get(rep, "next"));
	json_decref(rep);
	rep = list(&boss, "waiting", 0);
	cr_assert(listed(rep, mine), "boss's --waiting misses ann's application #%lld", (long long)mine);
	json_decref(rep);

	/* sam sees carl's 501: one page of 500, then the rest below it. */
	rep = list(&sam, "all", 0);
	seen = json_array_size(json_object_get(rep, "applications"));
	cr_assert_eq(seen, 500);
	cr_assert_not(listed(rep, mine));
	next = json_integer_value(json_object_get(rep, "next"));
	cr_assert_gt(next, mine, "a next page is announced");
	json_decref(rep);
	rep = list(&sam, "all", next);
	cr_assert_eq(json_array_size(json_object_get(rep, "applications")), 1);
	cr_assert_not(listed(rep, next), "the next page starts below the last one shown");
	cr_assert_null(json_object_get(rep, "next"));
	json_decref(rep);
}

/* ---- size probes decided first (issue item 14) ---- */

static json_t *
probe_sign(const struct session *s, const char *seal)
{
	snprintf(peer.exe, sizeof(peer.exe), "/usr/bin/test-probe");
	return call(sign_req(s, seal, CKM_SHA256_RSA_PKCS));
}

static void
is_probe(json_t *rep)
{
	cr_assert(json_is_true(json_object_get(rep, "ok")), "probe refused: %s",
	          json_string_value(json_object_get(rep, "message")));
	cr_assert(json_is_true(json_object_get(rep, "probe")), "answered as a probe");
	json_decref(rep);
}

/* A probe takes no per-signature grant: the code given for the real
 * signature is still there for it. */
Test(sign_void, a_size_probe_spends_no_per_signature_grant)
{
	struct session ann = login("ann", GW_FACTOR_PASSWORD);
	struct gw_login_info li;
	struct counters c0, c1;
	json_t *rep;

	cr_assert(gw_auth_session_get(ctx.auth, ann.tok, sizeof(ann.tok), peer.uid, &li));
	cr_assert_eq(gw_auth_grant_add(ctx.auth, li.sid, "persig"), 0);
	c0 = counters("persig");
	is_probe(probe_sign(&ann, "persig"));
	c1 = counters("persig");
	cr_assert_eq(memcmp(&c0, &c1, sizeof(c0)), 0, "the probe counted nothing");

	rep = probe_sign(&ann, "persig");     /* the same process: the real one */
	cr_assert(json_is_true(json_object_get(rep, "ok")), "the real signature lost its grant: %s",
	          json_string_value(json_object_get(rep, "message")));
	cr_assert_null(json_object_get(rep, "probe"));
	json_decref(rep);
	cr_assert_eq(counters("persig").day, c0.day + 1);

	rep = probe_sign(&ann, "persig");     /* one grant, one signature */
	cr_assert(json_is_false(json_object_get(rep, "ok")));
	cr_assert_str_eq(json_string_value(json_object_get(rep, "error")), "mfa_required");
	json_decref(rep);
}

struct waiting_sign { const struct session *s; json_t *rep; };

static void *
sign_in_thread(void *arg)
{
	struct waiting_sign *w = arg;
	uint8_t md[SHA256_DIGEST_LENGTH];
	json_t *m = sg_request_new(SG_OP_SIGN);

	SHA256((const uint8_t *)doc, sizeof(doc) - 1, md);
	sg_set_bytes(m, "session", w->s->tok, sizeof(w->s->tok));
	json_object_set_new(m, "seal", json_string("confirm"));
	json_object_set_new(m, "mechanism", json_integer(CKM_SHA256_RSA_PKCS));
	sg_set_bytes(m, "digest", md, sizeof(md));
	sg_set_bytes(m, "data", (const uint8_t *)doc, sizeof(doc) - 1);
	json_object_set_new(m, "data_len", json_integer(sizeof(doc) - 1));
	w->rep = gw_dispatch(&ctx, &peer, m);
	json_decref(m);
	return NULL;
}

/* A probe waits for no confirmation (it used to wait confirm_timeout for
 * one that yielded only a placeholder); the real signature still does. */
Test(sign_void, a_size_probe_waits_for_no_confirmation)
{
	struct session ann = login("ann", GW_FACTOR_PASSWORD);
	struct gw_auth_settings set;
	struct gw_confirm_info ci;
	struct waiting_sign w = { .s = &ann };
	pthread_t th;
	time_t until;

	gw_auth_settings_default(&set);
	set.confirm_timeout = 10;    /* a probe that waited would be refused after it */
	gw_auth_configure(ctx.auth, &set);
	cr_assert_eq(gw_auth_window_open(ctx.auth, "ann", peer.uid, 300, &until), 0);

	is_probe(probe_sign(&ann, "confirm"));
	cr_assert_eq(gw_auth_confirm_list(ctx.auth, "ann", peer.uid, &ci, 1), 0);

	cr_assert_eq(pthread_create(&th, NULL, sign_in_thread, &w), 0);
	while (gw_auth_confirm_list(ctx.auth, "ann", peer.uid, &ci, 1) == 0)
		usleep(10000);
	cr_assert_eq(gw_auth_confirm_give(ctx.auth, "ann", peer.uid, 0, &ci), 1);
	pthread_join(th, NULL);
	cr_assert(w.rep && json_is_true(json_object_get(w.rep, "ok")), "confirmed signature: %s",
	          w.rep ? json_string_value(json_object_get(w.rep, "message")) : "no reply");
	cr_assert_null(json_object_get(w.rep, "probe"));
	json_decref(w.rep);
}

/* ---- the key's identity after a token event (issue item 13) ---- */

static CK_OBJECT_HANDLE
number_now(const char *uri)
{
	struct gw_seal_key *k = NULL;
	CK_OBJECT_HANDLE n;
	char err[256];

	cr_assert_eq(gw_token_find_key(ctx.token, uri, &k, err, sizeof(err)), 0, "%s", err);
	n = k->priv;
	gw_seal_key_free(&k);
	return n;
}

/* The card comes back, its find answers for the plain seal's RSA key
 * with the EC key, and the handle checked at the reconnect is refused at
 * C_SignInit (as if the object were gone), so the key is looked up again:
 * refused with words that say so, the committed record voided, nothing
 * spent; once the token answers truly it signs again. */
Test(sign_void, a_token_that_offers_another_key_is_refused_and_recorded)
{
	struct session ann = login("ann", GW_FACTOR_PASSWORD);
	struct counters c0, c1;

	sign_ok(&ann, "plain", CKM_SHA256_RSA_PKCS);
	failed_sign(&ann, "plain", CKM_SHA256_RSA_PKCS, 0, PULLED);
	shim_set("removed", 0);
	sleep(1);
	for (int i = 0; i < 3 && gw_token_reconnect(ctx.token) != CKR_OK; i++)
		sleep(1);
	cr_assert(gw_token_present(ctx.token));
	shim_set("swap_a", (long)number_now("pkcs11:object=rsa-seal;type=private"));
	shim_set("swap_b", (long)number_now("pkcs11:object=ec-seal;type=private"));
	shim_set("swap_find_only", 1);
	shim_set("fail_signinit_rv", CKR_KEY_HANDLE_INVALID);
	c0 = counters("plain");
	failed_sign(&ann, "plain", CKM_SHA256_RSA_PKCS, 0, OTHER_KEY);
	c1 = counters("plain");
	cr_assert_eq(memcmp(&c0, &c1, sizeof(c0)), 0, "quota_use unchanged by the refusal");
	shim_set("swap_a", 0);
	shim_set("swap_b", 0);
	shim_set("swap_find_only", 0);
	sign_ok(&ann, "plain", CKM_SHA256_RSA_PKCS);
	chain_verifies();
}

/* ---- EC signatures of the length the probe promised (issue 14) ---- */

/* A pdfsig-like process: its probe, then its real signature, with the EC
 * storm seal (CKM_ECDSA_SHA256, raw r||s). Returns the real reply. */
static json_t *
probe_then_real(const struct session *s, pid_t pid, size_t *probe_der)
{
	json_t *rep;
	uint8_t *sig = NULL;
	size_t siglen = 0;
	char err[128];

	peer.pid = pid;     /* no such process: its start time reads as 0, both times */
	snprintf(peer.exe, sizeof(peer.exe), "/usr/bin/test-probe");
	rep = call(sign_req(s, "storm", CKM_ECDSA_SHA256));
	cr_assert(json_is_true(json_object_get(rep, "probe")), "answered as a probe: %s",
	          json_string_value(json_object_get(rep, "message")));
	cr_assert_eq(sg_get_bytes(rep, "signature", true, &sig, &siglen, 1024, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(siglen, 64);
	cr_assert_not(sig_verifies("storm", sig, siglen), "a placeholder verifies against nothing");
	*probe_der = gw_ecdsa_der_len(sig, siglen);
	free(sig);
	json_decref(rep);
	return call(sign_req(s, "storm", CKM_ECDSA_SHA256));
}

/* The records after `before` are one sign_probe and one sign ok whose
 * detail counts the token signatures (sign_inits the shim saw). */
static void
probe_and_sign_recorded(uint64_t before, long inits)
{
	struct recs rs;
	json_t *d;
	json_error_t jerr;

	records_after(before, &rs);
	cr_assert_eq(rs.n, 2, "sign_probe and sign: got %zu records", rs.n);
	cr_assert_str_eq(rs.r[0].action, "sign_probe");
	cr_assert_str_eq(rs.r[1].action, "sign");
	cr_assert_str_eq(rs.r[1].outcome, "ok");
	d = json_loads(rs.r[1].detail, 0, &jerr);
	cr_assert(d && json_is_object(d), "detail is JSON: '%s'", rs.r[1].detail);
	cr_assert_eq(json_integer_value(json_object_get(d, "token_signatures")), inits,
	             "the record counts the token signatures (%s; %ld C_SignInit)", rs.r[1].detail, inits);
	cr_assert_eq(json_integer_value(json_object_get(d, "der_len")), 71);
	cr_assert_null(json_object_get(d, "bound_hit"));
	json_decref(d);
}

/* 40 probe-then-real pairs with a P-256 seal: every real signature
 * verifies, has the placeholder's DER length (poppler 22.12 takes no
 * other) and spends exactly one use; the probes spend none. Without the
 * length matching about 5 pairs in 8 differ. */
Test(sign_void, an_ec_signature_after_a_probe_has_the_placeholders_der_length)
{
	struct session ann = login("ann", GW_FACTOR_PASSWORD);
	struct session boss = login("boss", GW_FACTOR_PASSWORD | GW_FACTOR_TOTP);
	int64_t id = apply_as(&ann, "storm", 40);
	struct gw_application *app;
	pid_t self = peer.pid;

	approve(&boss, id);
	for (int i = 0; i < 40; i++) {
		uint64_t before = head();
		long inits;
		size_t probe_der = 0, siglen = 0;
		uint8_t *sig = NULL;
		char err[128];
		json_t *rep;

		inits = shim_get("sign_inits");
		rep = probe_then_real(&ann, 4000000 + i, &probe_der);
		inits = shim_get("sign_inits") - inits;
		cr_assert(json_is_true(json_object_get(rep, "ok")), "real signature #%d refused: %s", i,
		          json_string_value(json_object_get(rep, "message")));
		cr_assert_null(json_object_get(rep, "probe"));
		cr_assert_eq(sg_get_bytes(rep, "signature", true, &sig, &siglen, 1024, err, sizeof(err)), 0, "%s", err);
		cr_assert(sig_verifies("storm", sig, siglen), "signature #%d verifies", i);
		cr_assert_eq(gw_ecdsa_der_len(sig, siglen), probe_der,
		             "pair #%d: the real signature's DER length %zu is the placeholder's %zu", i,
		             gw_ecdsa_der_len(sig, siglen), probe_der);
		free(sig);
		json_decref(rep);
		cr_assert_geq(inits, 1);
		cr_assert_leq(inits, 16);
		probe_and_sign_recorded(before, inits);
		app = stored(id);
		cr_assert_eq(app->uses_left, (uint32_t)(40 - i - 1), "one use per pair (%u left after #%d)",
		             app->uses_left, i);
		free(app);
	}
	peer.pid = self;
	chain_verifies();
}

/* The token fails the real signature after a probe: nothing was recorded
 * as signed (the signature is made before its record), so nothing is
 * voided or spent; only the refusal is on the record. */
Test(sign_void, a_failed_ec_signature_after_a_probe_spends_nothing)
{
	struct session ann = login("ann", GW_FACTOR_PASSWORD);
	struct session boss = login("boss", GW_FACTOR_PASSWORD | GW_FACTOR_TOTP);
	int64_t id = apply_as(&ann, "storm", 1);
	struct gw_application *app;
	uint64_t before;
	size_t probe_der = 0;
	struct recs rs;
	json_t *rep;

	approve(&boss, id);
	before = head();
	shim_set("fail_sign_rv", 0);
	peer.pid = 4100000;
	snprintf(peer.exe, sizeof(peer.exe), "/usr/bin/test-probe");
	json_decref(call(sign_req(&ann, "storm", CKM_ECDSA_SHA256)));   /* the probe */
	shim_set("fail_sign_rv", CKR_DEVICE_ERROR);
	rep = call(sign_req(&ann, "storm", CKM_ECDSA_SHA256));
	cr_assert(json_is_false(json_object_get(rep, "ok")));
	cr_assert_null(json_object_get(rep, "signature"));
	json_decref(rep);
	records_after(before, &rs);
	cr_assert_eq(rs.n, 2, "sign_probe and the refusal: got %zu records", rs.n);
	cr_assert_str_eq(rs.r[0].action, "sign_probe");
	cr_assert_str_eq(rs.r[1].action, "sign");
	cr_assert_str_eq(rs.r[1].outcome, "error");
	app = stored(id);
	cr_assert_eq(app->uses_left, 1, "the use is still there");
	free(app);

	/* The next try of a new process signs with it. */
	rep = probe_then_real(&ann, 4100001, &probe_der);
	cr_assert(json_is_true(json_object_get(rep, "ok")), "%s",
	          json_string_value(json_object_get(rep, "message")));
	json_decref(rep);
	app = stored(id);
	cr_assert_eq(app->uses_left, 0);
	free(app);
	chain_verifies();
}

/* A token whose signatures never have the promised length (r too short
 * for any s to make up): after 16 token signatures the real signature is
 * refused, says so, releases nothing and spends nothing; fewer misses are
 * signed again and counted in the record. */
Test(sign_void, an_ec_signature_that_never_fits_is_refused_after_16_tries)
{
	struct session ann = login("ann", GW_FACTOR_PASSWORD);
	struct session boss = login("boss", GW_FACTOR_PASSWORD | GW_FACTOR_TOTP);
	int64_t id = apply_as(&ann, "storm", 1);
	struct gw_application *app;
	uint64_t before;
	size_t probe_der = 0;
	long inits;
	struct recs rs;
	json_t *rep, *d;
	json_error_t jerr;
	const char *msg;

	approve(&boss, id);
	before = head();
	shim_set("short_r", 16);
	inits = shim_get("sign_inits");
	rep = probe_then_real(&ann, 4200000, &probe_der);
	cr_assert_eq(shim_get("sign_inits") - inits, 16, "16 token signatures, not more");
	cr_assert_eq(shim_get("short_r"), 0);
	cr_assert(json_is_false(json_object_get(rep, "ok")));
	cr_assert_null(json_object_get(rep, "signature"));
	msg = json_string_value(json_object_get(rep, "message"));
	cr_assert(msg && strstr(msg, "in 16 tries") && strstr(msg, "nothing was spent"), "%s", msg);
	json_decref(rep);
	records_after(before, &rs);
	cr_assert_eq(rs.n, 2, "sign_probe and the refusal: got %zu records", rs.n);
	cr_assert_str_eq(rs.r[1].action, "sign");
	cr_assert_str_eq(rs.r[1].outcome, "error");
	d = json_loads(rs.r[1].detail, 0, &jerr);
	cr_assert(d, "detail is JSON: '%s'", rs.r[1].detail);
	cr_assert_eq(json_integer_value(json_object_get(d, "token_signatures")), 16);
	cr_assert(json_is_true(json_object_get(d, "bound_hit")), "%s", rs.r[1].detail);
	json_decref(d);
	app = stored(id);
	cr_assert_eq(app->uses_left, 1, "the use is still there");
	free(app);

	/* Three misses, then a fitting one: four token signatures, one use. */
	before = head();
	shim_set("short_r", 3);
	inits = shim_get("sign_inits");
	rep = probe_then_real(&ann, 4200001, &probe_der);
	inits = shim_get("sign_inits") - inits;
	cr_assert(json_is_true(json_object_get(rep, "ok")), "%s",
	          json_string_value(json_object_get(rep, "message")));
	json_decref(rep);
	cr_assert_geq(inits, 4);
	probe_and_sign_recorded(before, inits);
	app = stored(id);
	cr_assert_eq(app->uses_left, 0);
	free(app);
	chain_verifies();
}
