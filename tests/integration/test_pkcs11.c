/*
 * Integration: our module (dlopen'ed) → a real sealgated → a real SoftHSM2
 * token (tests/integration/fixture.sh). Every mechanism signs and verifies
 * with OpenSSL against the seal certificate; the PKCS#11 error paths; the
 * gateway killed and restarted under an open session; fork; threads; and
 * every signature released has a durable audit record.
 */
#include <criterion/criterion.h>
#include <dlfcn.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <p11-kit/pkcs11.h>
#include <sqlite3.h>

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

TestSuite(pkcs11, .init = load, .fini = unload, .timeout = 60);

static CK_SLOT_ID
slot(void)
{
	CK_SLOT_ID s[4];
	CK_ULONG n = 4;

	cr_assert_eq(f->C_GetSlotList(CK_TRUE, s, &n), CKR_OK);
	cr_assert_eq(n, 1, "token not present");
	return s[0];
}

/* The module reads SEALGATE_USER at C_Initialize: switching accounts in
 * one process means initializing again. */
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
open_login(const char *user)
{
	CK_SESSION_HANDLE h;
	char pin[64];
	CK_RV rv;

	as_user(user);
	snprintf(pin, sizeof(pin), "%s-password", user);
	cr_assert_eq(f->C_OpenSession(slot(), CKF_SERIAL_SESSION, NULL, NULL, &h), CKR_OK);
	rv = f->C_Login(h, CKU_USER, (CK_UTF8CHAR_PTR)pin, strlen(pin));
	cr_assert(rv == CKR_OK || rv == CKR_USER_ALREADY_LOGGED_IN, "login: 0x%lx", rv);
	return h;
}

static CK_OBJECT_HANDLE
find(CK_SESSION_HANDLE h, CK_OBJECT_CLASS cls, const char *label)
{
	CK_ULONG n;

	return sgt_find(f, h, cls, label, &n);
}

/* The seal certificate's public key, read through the module. */
static EVP_PKEY *
cert_key(CK_SESSION_HANDLE h, const char *label)
{
	CK_OBJECT_HANDLE c = find(h, CKO_CERTIFICATE, label);
	CK_ATTRIBUTE a = { CKA_VALUE, NULL, 0 };
	const unsigned char *p;
	unsigned char *der;
	X509 *x;
	EVP_PKEY *k;

	cr_assert_neq(c, CK_INVALID_HANDLE, "no certificate %s", label);
	cr_assert_eq(f->C_GetAttributeValue(h, c, &a, 1), CKR_OK);
	der = malloc(a.ulValueLen);
	a.pValue = der;
	cr_assert_eq(f->C_GetAttributeValue(h, c, &a, 1), CKR_OK);
	p = der;
	x = d2i_X509(NULL, &p, (long)a.ulValueLen);
	cr_assert_not_null(x);
	k = X509_get_pubkey(x);
	X509_free(x);
	free(der);
	return k;
}

static long
count_records(const char *where)
{
	return sgt_count_records(sgt_env("SG_IT_DIR"), where);
}

static long
signed_ok(void)
{
	return count_records("action = 'sign' AND outcome = 'ok'");
}

static void
digest(const char *md, const void *data, size_t len, unsigned char *out, unsigned *outlen)
{
	cr_assert_eq(EVP_Digest(data, len, out, outlen, EVP_get_digestbyname(md), NULL), 1);
}

/* Verifies sig over msg the way the mechanism defines it. */
static bool
verify(EVP_PKEY *k, CK_MECHANISM_TYPE m, const unsigned char *msg, size_t len,
       const unsigned char *sig, size_t siglen)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	EVP_PKEY_CTX *pctx = NULL;
	const EVP_MD *md = NULL;
	bool pss = false, raw_ec = false, ok;
	unsigned char der[256];
	size_t derlen = 0;

	switch (m) {
	case CKM_SHA256_RSA_PKCS: md = EVP_sha256(); break;
	case CKM_SHA384_RSA_PKCS: md = EVP_sha384(); break;
	case CKM_SHA512_RSA_PKCS: md = EVP_sha512(); break;
	case CKM_SHA256_RSA_PKCS_PSS: md = EVP_sha256(); pss = true; break;
	case CKM_SHA384_RSA_PKCS_PSS: md = EVP_sha384(); pss = true; break;
	case CKM_SHA512_RSA_PKCS_PSS: md = EVP_sha512(); pss = true; break;
	case CKM_ECDSA_SHA256: md = EVP_sha256(); raw_ec = true; break;
	case CKM_ECDSA_SHA384: md = EVP_sha384(); raw_ec = true; break;
	case CKM_ECDSA_SHA512: md = EVP_sha512(); raw_ec = true; break;
	case CKM_EDDSA: md = NULL; break;
	default: cr_assert_fail("verify: mechanism 0x%lx", m);
	}
	if (raw_ec) {
		/* PKCS#11 gives r||s; OpenSSL wants DER. */
		ECDSA_SIG *es = ECDSA_SIG_new();
		unsigned char *p = der;
		ECDSA_SIG_set0(es, BN_bin2bn(sig, (int)siglen / 2, NULL),
		               BN_bin2bn(sig + siglen / 2, (int)siglen / 2, NULL));
		derlen = (size_t)i2d_ECDSA_SIG(es, &p);
		ECDSA_SIG_free(es);
		sig = der;
		siglen = derlen;
	}
	cr_assert_eq(EVP_DigestVerifyInit(ctx, &pctx, md, NULL, k), 1);
	if (pss) {
		EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING);
		EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST);
	}
	ok = EVP_DigestVerify(ctx, sig, siglen, msg, len) == 1;
	EVP_MD_CTX_free(ctx);
	return ok;
}

static size_t
sign_once(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE key, CK_MECHANISM *mech,
          const unsigned char *data, size_t len, unsigned char *sig)
{
	CK_ULONG siglen = 0;

	cr_assert_eq(f->C_SignInit(h, mech, key), CKR_OK);
	cr_assert_eq(f->C_Sign(h, (CK_BYTE_PTR)data, len, NULL, &siglen), CKR_OK);
	cr_assert_gt(siglen, 0);
	cr_assert_leq(siglen, 1024);
	cr_assert_eq(f->C_Sign(h, (CK_BYTE_PTR)data, len, sig, &siglen), CKR_OK);
	return siglen;
}

static const char doc[] = "Sales contract no. 2026-1127 between Acme Trading Co. and a customer.";

Test(pkcs11, token_info_and_mechanisms)
{
	CK_TOKEN_INFO ti;
	CK_MECHANISM_TYPE mechs[64];
	CK_ULONG n = 64;

	cr_assert_eq(f->C_GetTokenInfo(slot(), &ti), CKR_OK);
	cr_assert_eq(memcmp(ti.label, "Integration Co.", 15), 0);
	cr_assert_eq(memcmp(ti.manufacturerID, "sealgate", 8), 0);
	cr_assert(ti.flags & CKF_TOKEN_INITIALIZED);
	cr_assert(ti.flags & CKF_LOGIN_REQUIRED);
	cr_assert(ti.flags & CKF_WRITE_PROTECTED);
	cr_assert_eq(f->C_GetMechanismList(slot(), mechs, &n), CKR_OK);
	cr_assert_geq(n, 13);
}

Test(pkcs11, wrong_pin_and_private_objects_after_login_only)
{
	CK_SESSION_HANDLE h;
	long before = count_records("action = 'login' AND outcome = 'denied'");

	as_user("alice");
	cr_assert_eq(f->C_OpenSession(slot(), CKF_SERIAL_SESSION, NULL, NULL, &h), CKR_OK);
	cr_assert_neq(find(h, CKO_CERTIFICATE, "Contract Seal"), CK_INVALID_HANDLE);
	cr_assert_eq(find(h, CKO_PRIVATE_KEY, "Contract Seal"), CK_INVALID_HANDLE);
	cr_assert_eq(f->C_Login(h, CKU_USER, (CK_UTF8CHAR_PTR)"wrong-password", 14), CKR_PIN_INCORRECT);
	cr_assert_eq(count_records("action = 'login' AND outcome = 'denied'"), before + 1);
	cr_assert_eq(f->C_Login(h, CKU_USER, (CK_UTF8CHAR_PTR)"alice-password", 14), CKR_OK);
	cr_assert_neq(find(h, CKO_PRIVATE_KEY, "Contract Seal"), CK_INVALID_HANDLE);
	/* alice is in sales: the finance seal is not hers to see. */
	cr_assert_eq(find(h, CKO_CERTIFICATE, "Finance Seal"), CK_INVALID_HANDLE);
	cr_assert_eq(f->C_Logout(h), CKR_OK);
	cr_assert_eq(find(h, CKO_PRIVATE_KEY, "Contract Seal"), CK_INVALID_HANDLE);
}

Test(pkcs11, every_mechanism_signs_and_verifies)
{
	static const struct {
		const char *user, *seal;
		CK_MECHANISM_TYPE m;
	} cases[] = {
		{ "alice", "Contract Seal", CKM_SHA256_RSA_PKCS },
		{ "alice", "Contract Seal", CKM_SHA384_RSA_PKCS },
		{ "alice", "Contract Seal", CKM_SHA512_RSA_PKCS },
		{ "alice", "Contract Seal", CKM_SHA256_RSA_PKCS_PSS },
		{ "alice", "Contract Seal", CKM_SHA384_RSA_PKCS_PSS },
		{ "alice", "Contract Seal", CKM_SHA512_RSA_PKCS_PSS },
		{ "alice", "Ed Seal", CKM_EDDSA },
		{ "dave", "Finance Seal", CKM_ECDSA_SHA256 },
		{ "dave", "Finance Seal", CKM_ECDSA_SHA384 },
		{ "dave", "Finance Seal", CKM_ECDSA_SHA512 },
	};
	unsigned char sig[1024];
	long before = signed_ok();

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		CK_SESSION_HANDLE h = open_login(cases[i].user);
		CK_OBJECT_HANDLE key = find(h, CKO_PRIVATE_KEY, cases[i].seal);
		EVP_PKEY *pub = cert_key(h, cases[i].seal);
		CK_RSA_PKCS_PSS_PARAMS pss = { 0 };
		CK_MECHANISM mech = { cases[i].m, NULL, 0 };
		size_t len;

		switch (cases[i].m) {
		case CKM_SHA256_RSA_PKCS_PSS: pss = (CK_RSA_PKCS_PSS_PARAMS){ CKM_SHA256, CKG_MGF1_SHA256, 32 }; break;
		case CKM_SHA384_RSA_PKCS_PSS: pss = (CK_RSA_PKCS_PSS_PARAMS){ CKM_SHA384, CKG_MGF1_SHA384, 48 }; break;
		case CKM_SHA512_RSA_PKCS_PSS: pss = (CK_RSA_PKCS_PSS_PARAMS){ CKM_SHA512, CKG_MGF1_SHA512, 64 }; break;
		default: break;
		}
		if (pss.hashAlg) {
			mech.pParameter = &pss;
			mech.ulParameterLen = sizeof(pss);
		}
		cr_assert_neq(key, CK_INVALID_HANDLE, "%s: no key %s", cases[i].user, cases[i].seal);
		len = sign_once(h, key, &mech, (const unsigned char *)doc, sizeof(doc) - 1, sig);
		cr_assert(verify(pub, cases[i].m, (const unsigned char *)doc, sizeof(doc) - 1, sig, len),
		          "signature with mechanism 0x%lx does not verify", cases[i].m);
		/* A changed document does not verify. */
		cr_assert_not(verify(pub, cases[i].m, (const unsigned char *)"x", 1, sig, len));
		EVP_PKEY_free(pub);
		f->C_Logout(h);
		f->C_CloseSession(h);
	}
	cr_assert_eq(signed_ok(), before + (long)(sizeof(cases) / sizeof(cases[0])));
}

Test(pkcs11, raw_mechanisms_sign_what_apps_send)
{
	CK_SESSION_HANDLE h = open_login("alice");
	CK_OBJECT_HANDLE key = find(h, CKO_PRIVATE_KEY, "Contract Seal");
	EVP_PKEY *pub = cert_key(h, "Contract Seal");
	unsigned char md[64], di[19 + 32] = { 0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48,
		0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20 };
	unsigned mdlen, sig[256];
	unsigned char out[256];
	CK_MECHANISM rsa = { CKM_RSA_PKCS, NULL, 0 };
	CK_RSA_PKCS_PSS_PARAMS pp = { CKM_SHA256, CKG_MGF1_SHA256, 32 };
	CK_MECHANISM pss = { CKM_RSA_PKCS_PSS, &pp, sizeof(pp) };
	EVP_PKEY_CTX *ctx;
	size_t len;
	(void)sig;

	/* What NSS, libp11 and GnuTLS send: CKM_RSA_PKCS over a DigestInfo. */
	digest("SHA256", doc, sizeof(doc) - 1, md, &mdlen);
	memcpy(di + 19, md, 32);
	len = sign_once(h, key, &rsa, di, sizeof(di), out);
	cr_assert(verify(pub, CKM_SHA256_RSA_PKCS, (const unsigned char *)doc, sizeof(doc) - 1, out, len));

	len = sign_once(h, key, &pss, md, 32, out);
	ctx = EVP_PKEY_CTX_new(pub, NULL);
	EVP_PKEY_verify_init(ctx);
	EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PSS_PADDING);
	EVP_PKEY_CTX_set_signature_md(ctx, EVP_sha256());
	EVP_PKEY_CTX_set_rsa_pss_saltlen(ctx, 32);
	cr_assert_eq(EVP_PKEY_verify(ctx, out, len, md, 32), 1);
	EVP_PKEY_CTX_free(ctx);
	EVP_PKEY_free(pub);

	/* CKM_ECDSA over a hash, as pdfsig does with EC keys. */
	f->C_Logout(h);
	f->C_CloseSession(h);
	h = open_login("dave");
	key = find(h, CKO_PRIVATE_KEY, "Finance Seal");
	pub = cert_key(h, "Finance Seal");
	{
		CK_MECHANISM ec = { CKM_ECDSA, NULL, 0 };
		len = sign_once(h, key, &ec, md, 32, out);
		cr_assert_eq(len, 64);
		cr_assert(verify(pub, CKM_ECDSA_SHA256, (const unsigned char *)doc, sizeof(doc) - 1, out, len));
	}
	EVP_PKEY_free(pub);
}

Test(pkcs11, multipart_signing)
{
	CK_SESSION_HANDLE h = open_login("alice");
	CK_OBJECT_HANDLE key = find(h, CKO_PRIVATE_KEY, "Contract Seal");
	EVP_PKEY *pub = cert_key(h, "Contract Seal");
	CK_MECHANISM m = { CKM_SHA256_RSA_PKCS, NULL, 0 };
	unsigned char sig[512], *big = malloc(200000);
	CK_ULONG siglen = sizeof(sig);

	for (size_t i = 0; i < 200000; i++)
		big[i] = (unsigned char)(i * 7);
	cr_assert_eq(f->C_SignInit(h, &m, key), CKR_OK);
	for (size_t off = 0; off < 200000; off += 50000)
		cr_assert_eq(f->C_SignUpdate(h, big + off, 50000), CKR_OK);
	cr_assert_eq(f->C_SignFinal(h, sig, &siglen), CKR_OK);
	cr_assert(verify(pub, CKM_SHA256_RSA_PKCS, big, 200000, sig, siglen));
	EVP_PKEY_free(pub);
	free(big);
}

Test(pkcs11, error_paths)
{
	CK_SESSION_HANDLE h;
	CK_OBJECT_HANDLE key;
	CK_MECHANISM m = { CKM_SHA256_RSA_PKCS, NULL, 0 };
	CK_MECHANISM ec = { CKM_ECDSA, NULL, 0 };
	unsigned char sig[512];
	CK_ULONG siglen;
	long before = signed_ok();

	as_user("alice");
	cr_assert_eq(f->C_OpenSession(slot(), CKF_SERIAL_SESSION, NULL, NULL, &h), CKR_OK);
	/* Not logged in: no private key, and signing is refused. */
	cr_assert_eq(f->C_Sign(h, (CK_BYTE_PTR)doc, 4, sig, &siglen), CKR_OPERATION_NOT_INITIALIZED);
	f->C_CloseSession(h);
	h = open_login("alice");
	key = find(h, CKO_PRIVATE_KEY, "Contract Seal");
	cr_assert_eq(f->C_SignInit(h, &m, 0xdeadbeef), CKR_KEY_HANDLE_INVALID);
	cr_assert_eq(f->C_SignInit(h, &ec, key), CKR_KEY_TYPE_INCONSISTENT);
	cr_assert_eq(f->C_SignInit(123456, &m, key), CKR_SESSION_HANDLE_INVALID);
	/* Size query and a too-small buffer consume nothing and keep the op. */
	cr_assert_eq(f->C_SignInit(h, &m, key), CKR_OK);
	cr_assert_eq(f->C_SignInit(h, &m, key), CKR_OPERATION_ACTIVE);
	siglen = 0;
	cr_assert_eq(f->C_Sign(h, (CK_BYTE_PTR)doc, 4, NULL, &siglen), CKR_OK);
	cr_assert_eq(siglen, 256);
	siglen = 10;
	cr_assert_eq(f->C_Sign(h, (CK_BYTE_PTR)doc, 4, sig, &siglen), CKR_BUFFER_TOO_SMALL);
	cr_assert_eq(siglen, 256);
	cr_assert_eq(signed_ok(), before, "a size query reached the token");
	siglen = sizeof(sig);
	cr_assert_eq(f->C_Sign(h, (CK_BYTE_PTR)doc, 4, sig, &siglen), CKR_OK);
	cr_assert_eq(signed_ok(), before + 1);
	/* The operation is over after a real signature. */
	cr_assert_eq(f->C_Sign(h, (CK_BYTE_PTR)doc, 4, sig, &siglen), CKR_OPERATION_NOT_INITIALIZED);
	/* Write functions are refused. */
	cr_assert_eq(f->C_DestroyObject(h, key), CKR_TOKEN_WRITE_PROTECTED);
}

/* fixture.sh CMD DIR [ARG] */
static void
fixture(const char *what, const char *arg)
{
	char cmd[1024];

	snprintf(cmd, sizeof(cmd), "sh '%s' %s '%s' %s", sgt_env("SG_IT_FIXTURE"), what,
	         sgt_env("SG_IT_DIR"), arg ? arg : "");
	cr_assert_eq(system(cmd), 0, "%s failed", cmd);
}

Test(pkcs11, gateway_killed_mid_session_then_restarted)
{
	CK_SESSION_HANDLE h = open_login("alice"), h2;
	CK_OBJECT_HANDLE key = find(h, CKO_PRIVATE_KEY, "Contract Seal");
	CK_MECHANISM m = { CKM_SHA256_RSA_PKCS, NULL, 0 };
	CK_SLOT_ID s[2];
	CK_ULONG n = 2, siglen = 512;
	unsigned char sig[512];
	CK_RV rv;

	cr_assert_eq(f->C_SignInit(h, &m, key), CKR_OK);
	fixture("stop", "KILL");
	rv = f->C_Sign(h, (CK_BYTE_PTR)doc, 10, sig, &siglen);
	cr_assert(rv == CKR_DEVICE_REMOVED || rv == CKR_TOKEN_NOT_PRESENT, "sign with gateway down: 0x%lx", rv);
	cr_assert_eq(f->C_GetSlotList(CK_TRUE, s, &n), CKR_OK);
	cr_assert_eq(n, 0, "token still present with the gateway down");
	n = 2;
	cr_assert_eq(f->C_GetSlotList(CK_FALSE, s, &n), CKR_OK);
	cr_assert_eq(n, 1);
	cr_assert_eq(f->C_OpenSession(s[0], CKF_SERIAL_SESSION, NULL, NULL, &h2), CKR_TOKEN_NOT_PRESENT);

	fixture("start", NULL);
	/* The old session died with the gateway run: whatever reaches the
	 * new run on it fails (C_SignInit alone may not ask the gateway). */
	rv = f->C_SignInit(h, &m, key);
	if (rv == CKR_OK) {
		siglen = sizeof(sig);
		rv = f->C_Sign(h, (CK_BYTE_PTR)doc, 10, sig, &siglen);
	}
	cr_assert(rv == CKR_DEVICE_REMOVED || rv == CKR_SESSION_HANDLE_INVALID ||
	          rv == CKR_SESSION_CLOSED || rv == CKR_USER_NOT_LOGGED_IN,
	          "old session after restart: 0x%lx", rv);
	f->C_CloseSession(h);
	h = open_login("alice");
	key = find(h, CKO_PRIVATE_KEY, "Contract Seal");
	cr_assert_eq(f->C_SignInit(h, &m, key), CKR_OK);
	siglen = sizeof(sig);
	cr_assert_eq(f->C_Sign(h, (CK_BYTE_PTR)doc, 10, sig, &siglen), CKR_OK);
}

Test(pkcs11, fork_in_the_middle_of_a_session)
{
	CK_SESSION_HANDLE h = open_login("alice");
	CK_OBJECT_HANDLE key = find(h, CKO_PRIVATE_KEY, "Contract Seal");
	CK_MECHANISM m = { CKM_SHA256_RSA_PKCS, NULL, 0 };
	int status;
	pid_t pid;

	cr_assert_eq(f->C_SignInit(h, &m, key), CKR_OK);
	pid = fork();
	if (pid == 0) {
		unsigned char sig[512];
		CK_ULONG siglen = sizeof(sig);
		CK_SESSION_HANDLE c;
		CK_OBJECT_HANDLE k;
		CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
		CK_ATTRIBUTE t = { CKA_CLASS, &cls, sizeof(cls) };
		CK_ULONG n = 0;

		if (f->C_Sign(h, (CK_BYTE_PTR)doc, 10, sig, &siglen) != CKR_CRYPTOKI_NOT_INITIALIZED)
			_exit(10);
		if (f->C_OpenSession(1, CKF_SERIAL_SESSION, NULL, NULL, &c) != CKR_CRYPTOKI_NOT_INITIALIZED)
			_exit(11);
		if (f->C_Initialize(NULL) != CKR_OK)
			_exit(12);
		if (f->C_OpenSession(slot(), CKF_SERIAL_SESSION, NULL, NULL, &c) != CKR_OK)
			_exit(13);
		if (f->C_Login(c, CKU_USER, (CK_UTF8CHAR_PTR)"alice-password", 14) != CKR_OK)
			_exit(14);
		if (f->C_FindObjectsInit(c, &t, 1) != CKR_OK || f->C_FindObjects(c, &k, 1, &n) != CKR_OK ||
		    n != 1 || f->C_FindObjectsFinal(c) != CKR_OK)
			_exit(15);
		if (f->C_SignInit(c, &m, k) != CKR_OK || f->C_Sign(c, (CK_BYTE_PTR)doc, 10, sig, &siglen) != CKR_OK)
			_exit(16);
		f->C_Finalize(NULL);
		_exit(0);
	}
	cr_assert_gt(pid, 0);
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status), "child crashed");
	cr_assert_eq(WEXITSTATUS(status), 0, "child step %d failed", WEXITSTATUS(status));
	/* The parent's operation is untouched by the child. */
	{
		unsigned char sig[512];
		CK_ULONG siglen = sizeof(sig);
		cr_assert_eq(f->C_Sign(h, (CK_BYTE_PTR)doc, 10, sig, &siglen), CKR_OK);
	}
}

#define THREADS 4
#define PER_THREAD 40

struct worker {
	CK_SLOT_ID slot;
	EVP_PKEY *pub;
	int good;
};

static void *
worker_main(void *arg)
{
	struct worker *w = arg;
	CK_SESSION_HANDLE h;
	CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
	CK_ATTRIBUTE t[] = { { CKA_CLASS, &cls, sizeof(cls) }, { CKA_LABEL, "Contract Seal", 13 } };
	CK_OBJECT_HANDLE key;
	CK_ULONG n = 0;
	CK_MECHANISM m = { CKM_SHA256_RSA_PKCS, NULL, 0 };

	if (f->C_OpenSession(w->slot, CKF_SERIAL_SESSION, NULL, NULL, &h) != CKR_OK)
		return NULL;
	if (f->C_FindObjectsInit(h, t, 2) != CKR_OK || f->C_FindObjects(h, &key, 1, &n) != CKR_OK || n != 1)
		return NULL;
	f->C_FindObjectsFinal(h);
	for (int i = 0; i < PER_THREAD; i++) {
		unsigned char sig[512], msg[32];
		CK_ULONG siglen = sizeof(sig);
		snprintf((char *)msg, sizeof(msg), "doc %p %d", (void *)w, i);
		if (f->C_SignInit(h, &m, key) != CKR_OK ||
		    f->C_Sign(h, msg, strlen((char *)msg), sig, &siglen) != CKR_OK)
			continue;
		EVP_MD_CTX *ctx = EVP_MD_CTX_new();
		EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, w->pub);
		if (EVP_DigestVerify(ctx, sig, siglen, msg, strlen((char *)msg)) == 1)
			w->good++;
		EVP_MD_CTX_free(ctx);
	}
	f->C_CloseSession(h);
	return NULL;
}

Test(pkcs11, threads_sign_at_once_and_every_signature_is_recorded)
{
	CK_SESSION_HANDLE h = open_login("alice");
	EVP_PKEY *pub = cert_key(h, "Contract Seal");
	struct worker w[THREADS];
	pthread_t th[THREADS];
	long before = signed_ok();

	for (int i = 0; i < THREADS; i++) {
		w[i] = (struct worker){ .slot = slot(), .pub = pub };
		cr_assert_eq(pthread_create(&th[i], NULL, worker_main, &w[i]), 0);
	}
	for (int i = 0; i < THREADS; i++) {
		pthread_join(th[i], NULL);
		cr_assert_eq(w[i].good, PER_THREAD, "thread %d: %d good signatures", i, w[i].good);
	}
	cr_assert_eq(signed_ok(), before + THREADS * PER_THREAD);
	EVP_PKEY_free(pub);
}

Test(pkcs11, audit_chain_of_the_whole_run_verifies)
{
	char cmd[1024];

	snprintf(cmd, sizeof(cmd), "%s/gateway/sealgated --config %s/sealgated.yaml --verify-audit",
	         sgt_env("SEALGATE_BUILD"), sgt_env("SG_IT_DIR"));
	cr_assert_eq(system(cmd), 0, "audit chain does not verify");
	cr_assert_gt(count_records("action = 'gateway_start'"), 0);
}
