/*
 * Integration: the approval workflow enforced at every signature, on a real
 * sealgated + SoftHSM2 (fixture.sh: seal "approved" needs the head of the
 * applicant's department, and an executive too above 1,000,000; seal
 * "quota" needs no approval but allows 100 signatures a day). Applications
 * go over the wire protocol as sealctl sends them; signatures go through
 * our module as a desktop app makes them.
 */
#include <criterion/criterion.h>
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sqlite3.h>
#include <unistd.h>
#include <openssl/evp.h>
#include <p11-kit/pkcs11.h>

#include <liboath/oath.h>

#include "protocol.h"
#include "sealgate-pkcs11.h"

#include "sgtest.h"

static CK_FUNCTION_LIST *f;

static void
load(void)
{
	f = sgt_module_load(NULL);
}

static void
unload(void)
{
	sgt_module_unload(&f);
}

TestSuite(workflow, .init = load, .fini = unload, .timeout = 120);

/* ---- the wire protocol, as sealctl speaks it ---- */

struct who {
	int fd;
	char *session;
};

/* Approvers have a TOTP secret (fixture.sh) and approving needs password +
 * code. The gateway reads TOTP time from the fixture's test clock; each
 * such login moves it one 30 s step on, so every code is fresh. Appends
 * user's code to pin when user has a secret. */
static void
append_code(const char *user, char *pin, size_t pinlen)
{
	char path[512], b32[128], *bin = NULL, code[8];
	size_t binlen = 0;
	long long t = 0;
	FILE *fp;

	snprintf(path, sizeof(path), "%s/totp-%s.b32", sgt_env("SG_IT_DIR"), user);
	fp = fopen(path, "r");
	if (fp == NULL)
		return;
	cr_assert_not_null(fgets(b32, sizeof(b32), fp));
	fclose(fp);
	b32[strcspn(b32, "\n")] = '\0';
	cr_assert_eq(oath_init(), OATH_OK);
	cr_assert_eq(oath_base32_decode(b32, strlen(b32), &bin, &binlen), OATH_OK);
	snprintf(path, sizeof(path), "%s/clock", sgt_env("SG_IT_DIR"));
	fp = fopen(path, "r+");
	cr_assert_not_null(fp);
	cr_assert_eq(fscanf(fp, "%lld", &t), 1);
	t += 30;
	rewind(fp);
	fprintf(fp, "%lld\n", t);
	fclose(fp);
	cr_assert_eq(oath_totp_generate(bin, binlen, (time_t)t, 30, 0, 6, code), OATH_OK);
	free(bin);
	strncat(pin, code, pinlen - strlen(pin) - 1);
}

static struct who
as(const char *user)
{
	struct who w;
	char pw[64], err[256];
	json_t *req = sg_request_new(SG_OP_LOGIN), *rep = NULL;

	w.fd = sg_connect_unix(sgt_env("SEALGATE_SOCKET"));
	cr_assert_geq(w.fd, 0);
	snprintf(pw, sizeof(pw), "%s-password", user);
	append_code(user, pw, sizeof(pw));
	json_object_set_new(req, "user", json_string(user));
	json_object_set_new(req, "pin", json_string(pw));
	cr_assert_eq(sg_call(w.fd, req, &rep, err, sizeof(err)), 0, "%s", err);
	cr_assert(sg_reply_is_ok(rep, NULL, NULL, NULL), "login %s", user);
	w.session = strdup(json_string_value(json_object_get(rep, "session")));
	json_decref(req);
	json_decref(rep);
	return w;
}

static json_t *
call(struct who *w, json_t *req)
{
	json_t *rep = NULL;
	char err[256];

	json_object_set_new(req, "session", json_string(w->session));
	cr_assert_eq(sg_call(w->fd, req, &rep, err, sizeof(err)), 0, "%s", err);
	json_decref(req);
	return rep;
}

static void
done(struct who *w)
{
	json_decref(call(w, sg_request_new(SG_OP_LOGOUT)));
	close(w->fd);
	free(w->session);
}

static int64_t
apply(const char *user, int64_t amount, const uint8_t *doc_sha256, int uses)
{
	struct who w = as(user);
	json_t *req = sg_request_new(SG_OP_APPLY), *rep;
	int64_t id;

	json_object_set_new(req, "seal", json_string("approved"));
	json_object_set_new(req, "document_type", json_string("contract"));
	json_object_set_new(req, "amount", json_integer(amount));
	json_object_set_new(req, "reason", json_string("customer contract"));
	json_object_set_new(req, "uses", json_integer(uses));
	if (doc_sha256)
		sg_set_bytes(req, "doc_sha256", doc_sha256, 32);
	rep = call(&w, req);
	cr_assert(sg_reply_is_ok(rep, NULL, NULL, NULL), "apply: %s",
	          json_string_value(json_object_get(rep, "message")));
	id = json_integer_value(json_object_get(json_object_get(rep, "application"), "id"));
	cr_assert_gt(id, 0);
	json_decref(rep);
	done(&w);
	return id;
}

/* Returns the reply's state, or NULL and *msg on refusal. */
static bool
decide(const char *user, const char *op, int64_t id, char *msg, size_t msglen)
{
	struct who w = as(user);
	json_t *req = sg_request_new(op), *rep;
	bool ok;

	json_object_set_new(req, "id", json_integer(id));
	json_object_set_new(req, "comment", json_string("checked"));
	rep = call(&w, req);
	ok = sg_reply_is_ok(rep, NULL, NULL, NULL);
	snprintf(msg, msglen, "%s", ok ? json_string_value(json_object_get(json_object_get(rep, "application"), "state"))
	                                : json_string_value(json_object_get(rep, "message")));
	json_decref(rep);
	done(&w);
	return ok;
}

static char *
why(const char *user)
{
	struct who w = as(user);
	json_t *rep = call(&w, sg_request_new(SG_OP_WHY));
	char *out = strdup(json_string_value(json_object_get(rep, "reason")) ?: "");

	json_decref(rep);
	done(&w);
	return out;
}

/* ---- signing through the module ---- */

static void
as_user(const char *user)
{
	const char *cur = getenv("SEALGATE_USER");

	if (cur != NULL && strcmp(cur, user) == 0)
		return;
	setenv("SEALGATE_USER", user, 1);
	cr_assert_eq(f->C_Finalize(NULL), CKR_OK);
	cr_assert_eq(f->C_Initialize(NULL), CKR_OK);
}

static CK_SESSION_HANDLE
session(const char *user)
{
	CK_SESSION_HANDLE h;
	CK_SLOT_ID s;
	CK_ULONG n = 1;
	char pin[64];
	CK_RV rv;

	as_user(user);
	cr_assert_eq(f->C_GetSlotList(CK_TRUE, &s, &n), CKR_OK);
	cr_assert_eq(n, 1);
	cr_assert_eq(f->C_OpenSession(s, CKF_SERIAL_SESSION, NULL, NULL, &h), CKR_OK);
	snprintf(pin, sizeof(pin), "%s-password", user);
	rv = f->C_Login(h, CKU_USER, (CK_UTF8CHAR_PTR)pin, strlen(pin));
	cr_assert(rv == CKR_OK || rv == CKR_USER_ALREADY_LOGGED_IN);
	return h;
}

static CK_OBJECT_HANDLE
key_of(CK_SESSION_HANDLE h, const char *label)
{
	CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
	CK_ATTRIBUTE t[] = { { CKA_CLASS, &cls, sizeof(cls) }, { CKA_LABEL, (void *)label, strlen(label) } };
	CK_OBJECT_HANDLE o = CK_INVALID_HANDLE;
	CK_ULONG n = 0;

	cr_assert_eq(f->C_FindObjectsInit(h, t, 2), CKR_OK);
	cr_assert_eq(f->C_FindObjects(h, &o, 1, &n), CKR_OK);
	f->C_FindObjectsFinal(h);
	cr_assert_eq(n, 1, "no private key %s", label);
	return o;
}

static CK_LONG
uses_left(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE k)
{
	CK_LONG v = -2;
	CK_ATTRIBUTE a = { CKA_SEALGATE_USES_LEFT, &v, sizeof(v) };

	cr_assert_eq(f->C_GetAttributeValue(h, k, &a, 1), CKR_OK);
	return v;
}

static CK_RV
sign(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE k, CK_MECHANISM_TYPE m, const void *data, size_t len)
{
	CK_MECHANISM mech = { m, NULL, 0 };
	uint8_t sig[512];
	CK_ULONG siglen = sizeof(sig);
	CK_RV rv = f->C_SignInit(h, &mech, k);

	if (rv != CKR_OK)
		return rv;
	return f->C_Sign(h, (CK_BYTE_PTR)data, len, sig, &siglen);
}

static long
records(const char *where)
{
	return sgt_count_records(sgt_env("SG_IT_DIR"), where);
}

static const char contract[] = "Sales contract 2026-1127, 50,000 CNY";

Test(workflow, one_use_after_the_head_approves)
{
	char msg[512], *w;
	CK_SESSION_HANDLE h;
	CK_OBJECT_HANDLE k;
	int64_t id;
	CK_ULONG len = 0;
	CK_MECHANISM mech = { CKM_SHA256_RSA_PKCS, NULL, 0 };

	/* Nothing applied for: refused, with the reason kept for `why`. */
	h = session("alice");
	k = key_of(h, "Approved Seal");
	cr_assert_eq(uses_left(h, k), 0);
	cr_assert_eq(sign(h, k, CKM_SHA256_RSA_PKCS, contract, sizeof(contract)), CKR_FUNCTION_REJECTED);
	w = why("alice");
	cr_assert_not_null(strstr(w, "no authorized application"), "why: %s", w);
	free(w);

	id = apply("alice", 50000, NULL, 1);
	/* Pending: still refused, and why names who must approve. */
	cr_assert_eq(sign(h, k, CKM_SHA256_RSA_PKCS, contract, sizeof(contract)), CKR_FUNCTION_REJECTED);
	w = why("alice");
	cr_assert_not_null(strstr(w, "waiting for level 1 of 1"), "why: %s", w);
	cr_assert_not_null(strstr(w, "bob"), "why: %s", w);
	free(w);
	/* The applicant never approves her own application; carol is not her head. */
	cr_assert_not(decide("alice", SG_OP_APPROVE, id, msg, sizeof(msg)));
	cr_assert_not(decide("carol", SG_OP_APPROVE, id, msg, sizeof(msg)));
	cr_assert(decide("bob", SG_OP_APPROVE, id, msg, sizeof(msg)), "%s", msg);
	cr_assert_str_eq(msg, "authorized");

	cr_assert_eq(uses_left(h, k), 1);
	/* A size query spends nothing, twice. */
	cr_assert_eq(f->C_SignInit(h, &mech, k), CKR_OK);
	cr_assert_eq(f->C_Sign(h, (CK_BYTE_PTR)contract, sizeof(contract), NULL, &len), CKR_OK);
	cr_assert_eq(f->C_Sign(h, (CK_BYTE_PTR)contract, sizeof(contract), NULL, &len), CKR_OK);
	{
		uint8_t sig[512];
		CK_ULONG siglen = sizeof(sig);
		cr_assert_eq(f->C_Sign(h, (CK_BYTE_PTR)contract, sizeof(contract), sig, &siglen), CKR_OK);
	}
	cr_assert_eq(uses_left(h, k), 0);
	/* The one use is spent: a second signature is refused. */
	cr_assert_eq(sign(h, k, CKM_SHA256_RSA_PKCS, contract, sizeof(contract)), CKR_FUNCTION_REJECTED);
	{
		char where[160];
		/* The store gave the id inside the record's transaction: the
		 * record of the creation names it. */
		snprintf(where, sizeof(where), "action = 'application_create' AND actor = 'alice' AND "
		         "outcome = 'ok' AND application = %lld", (long long)id);
		cr_assert_eq(records(where), 1);
		snprintf(where, sizeof(where), "action = 'application_approve' AND actor = 'bob' AND outcome = 'ok'"
		         " AND application = %lld", (long long)id);
		cr_assert_eq(records(where), 1);
		snprintf(where, sizeof(where), "action = 'sign' AND outcome = 'ok' AND application = %lld",
		         (long long)id);
		cr_assert_eq(records(where), 1);
	}
}

Test(workflow, large_amount_needs_head_then_executive_in_order)
{
	char msg[512];
	CK_SESSION_HANDLE h;
	CK_OBJECT_HANDLE k;
	int64_t id = apply("alice", 5000000, NULL, 1);

	cr_assert_not(decide("carol", SG_OP_APPROVE, id, msg, sizeof(msg)), "carol before bob");
	cr_assert(decide("bob", SG_OP_APPROVE, id, msg, sizeof(msg)), "%s", msg);
	cr_assert_str_eq(msg, "pending");
	h = session("alice");
	k = key_of(h, "Approved Seal");
	cr_assert_eq(sign(h, k, CKM_SHA256_RSA_PKCS, contract, sizeof(contract)), CKR_FUNCTION_REJECTED);
	{
		char *w = why("alice");
		cr_assert_not_null(strstr(w, "waiting for level 2 of 2: an executive (carol)"), "why: %s", w);
		free(w);
	}
	cr_assert_not(decide("bob", SG_OP_APPROVE, id, msg, sizeof(msg)), "bob counted twice");
	cr_assert(decide("carol", SG_OP_APPROVE, id, msg, sizeof(msg)), "%s", msg);
	cr_assert_str_eq(msg, "authorized");
	cr_assert_eq(sign(h, k, CKM_SHA256_RSA_PKCS, contract, sizeof(contract)), CKR_OK);
	/* The record of the application carries its case, for the risk rules
	 * (docs/risk.md): the amount under an approval threshold is in the log. */
	{
		char where[256];
		snprintf(where, sizeof(where), "action = 'application_create' AND application = %lld AND "
		         "json_extract(detail, '$.amount') = 5000000 AND "
		         "json_extract(detail, '$.document_type') = 'contract'", (long long)id);
		cr_assert_eq(records(where), 1, "no application_create record with the case in its detail");
	}
}

Test(workflow, rejection_and_revocation_end_it)
{
	char msg[512];
	int64_t a = apply("alice", 100, NULL, 1), b = apply("alice", 100, NULL, 1);

	cr_assert(decide("bob", SG_OP_REJECT, a, msg, sizeof(msg)), "%s", msg);
	cr_assert_str_eq(msg, "rejected");
	cr_assert_not(decide("bob", SG_OP_APPROVE, a, msg, sizeof(msg)));
	cr_assert_not(decide("dave", SG_OP_REVOKE, b, msg, sizeof(msg)));
	cr_assert(decide("alice", SG_OP_REVOKE, b, msg, sizeof(msg)), "%s", msg);
	cr_assert_str_eq(msg, "revoked");
	cr_assert_not(decide("bob", SG_OP_APPROVE, b, msg, sizeof(msg)));
}

Test(workflow, document_bound_approval_signs_that_document_only)
{
	static const char doc_a[] = "Contract A: 10 tons of steel", doc_b[] = "Contract B: 99 tons of gold";
	uint8_t md[32];
	unsigned mdlen;
	char msg[512];
	CK_SESSION_HANDLE h;
	CK_OBJECT_HANDLE k;
	int64_t id;

	EVP_Digest(doc_a, sizeof(doc_a), md, &mdlen, EVP_sha256(), NULL);
	id = apply("alice", 100, md, 1);
	cr_assert(decide("bob", SG_OP_APPROVE, id, msg, sizeof(msg)), "%s", msg);
	h = session("alice");
	k = key_of(h, "Approved Seal");
	cr_assert_eq(sign(h, k, CKM_SHA256_RSA_PKCS, doc_b, sizeof(doc_b)), CKR_FUNCTION_REJECTED);
	{
		char *w = why("alice");
		cr_assert_not_null(strstr(w, "bound to another document"), "why: %s", w);
		free(w);
	}
	cr_assert_eq(sign(h, k, CKM_SHA256_RSA_PKCS, doc_a, sizeof(doc_a)), CKR_OK);
	cr_assert_eq(sign(h, k, CKM_SHA256_RSA_PKCS, doc_a, sizeof(doc_a)), CKR_FUNCTION_REJECTED);
}

#define SIGNERS 8
#define EACH 20

static void *
signer(void *arg)
{
	int *good = arg;
	CK_SLOT_ID s;
	CK_ULONG n = 1;
	CK_SESSION_HANDLE h;
	CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
	CK_ATTRIBUTE t[] = { { CKA_CLASS, &cls, sizeof(cls) }, { CKA_LABEL, "Quota Seal", 10 } };
	CK_OBJECT_HANDLE k;

	if (f->C_GetSlotList(CK_TRUE, &s, &n) != CKR_OK || n != 1 ||
	    f->C_OpenSession(s, CKF_SERIAL_SESSION, NULL, NULL, &h) != CKR_OK ||
	    f->C_FindObjectsInit(h, t, 2) != CKR_OK || f->C_FindObjects(h, &k, 1, &n) != CKR_OK || n != 1)
		return NULL;
	f->C_FindObjectsFinal(h);
	for (int i = 0; i < EACH; i++) {
		uint8_t md[32] = { (uint8_t)i };
		if (sign(h, k, CKM_ECDSA, md, sizeof(md)) == CKR_OK)
			__atomic_add_fetch(good, 1, __ATOMIC_RELAXED);
	}
	f->C_CloseSession(h);
	return NULL;
}

Test(workflow, concurrent_signers_get_exactly_the_quota)
{
	pthread_t th[SIGNERS];
	int good = 0;
	CK_SESSION_HANDLE h = session("dave");
	long before = records("action = 'sign' AND outcome = 'ok' AND seal = 'quota'");

	cr_assert_eq(before, 0);
	for (int i = 0; i < SIGNERS; i++)
		cr_assert_eq(pthread_create(&th[i], NULL, signer, &good), 0);
	for (int i = 0; i < SIGNERS; i++)
		pthread_join(th[i], NULL);
	cr_assert_eq(good, 100, "%d signatures against a daily quota of 100", good);
	cr_assert_eq(records("action = 'sign' AND outcome = 'ok' AND seal = 'quota'"), 100);
	f->C_CloseSession(h);
	/* Every refusal is in the log: the first ones recorded, the rest
	 * counted in a summary written at the latest when the gateway stops
	 * (docs/audit.md, "Refusal summaries"). */
	sgt_fixture("stop");
	cr_assert_eq(records("action = 'sign' AND outcome = 'denied' AND seal = 'quota'") +
	             sgt_count_summarized(sgt_env("SG_IT_DIR"), "actor = 'dave' AND "
	                                  "json_extract(detail, '$.reason') LIKE '%quota%'"),
	             SIGNERS * EACH - 100);
	sgt_fixture("start");
}
