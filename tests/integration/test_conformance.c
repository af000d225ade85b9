/*
 * Conformance of the module's codes to PKCS#11 against the real parts:
 * our module (dlopen'ed) → a real sealgated → a real SoftHSM2 token
 * (tests/integration/fixture.sh). The codes pkcs11test and a probe found
 * wrong (issue 14), C_Verify on what the gateway signed, the login of an
 * OS user without an account, and slot events as the gateway goes and
 * comes. The same codes are checked against the fake gateway in
 * tests/module.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <p11-kit/pkcs11.h>

#include "sgtest.h"

static CK_FUNCTION_LIST *f;

static void
load(void)
{
	f = sgt_module_load(NULL);
}

/* A test that failed between a stop and a start leaves the gateway
 * running for the next one. */
static void
unload(void)
{
	char pidfile[512];

	sgt_module_unload(&f);
	snprintf(pidfile, sizeof(pidfile), "%s/sealgated.pid", sgt_env("SG_IT_DIR"));
	if (access(pidfile, F_OK) != 0)
		sgt_fixture("start");
}

TestSuite(conformance, .init = load, .fini = unload, .timeout = 120);

static CK_SLOT_ID
slot(void)
{
	CK_SLOT_ID s[4];
	CK_ULONG n = 4;

	cr_assert_eq(f->C_GetSlotList(CK_TRUE, s, &n), CKR_OK);
	cr_assert_eq(n, 1, "token not present");
	return s[0];
}

/* C_Initialize again acting as user (NULL: SEALGATE_USER unset). */
static void
reinit_as(const char *user)
{
	cr_assert_eq(f->C_Finalize(NULL), CKR_OK);
	if (user != NULL)
		setenv("SEALGATE_USER", user, 1);
	else
		unsetenv("SEALGATE_USER");
	cr_assert_eq(f->C_Initialize(NULL), CKR_OK);
}

static CK_SESSION_HANDLE
open_session(CK_FLAGS flags)
{
	CK_SESSION_HANDLE h;

	cr_assert_eq(f->C_OpenSession(slot(), CKF_SERIAL_SESSION | flags, NULL, NULL, &h), CKR_OK);
	return h;
}

static void
login(CK_SESSION_HANDLE h, const char *user)
{
	char pin[64];

	snprintf(pin, sizeof(pin), "%s-password", user);
	cr_assert_eq(f->C_Login(h, CKU_USER, (CK_UTF8CHAR_PTR)pin, strlen(pin)), CKR_OK);
}

static CK_OBJECT_HANDLE
find(CK_SESSION_HANDLE h, CK_OBJECT_CLASS cls, const char *label)
{
	return sgt_find(f, h, cls, label, NULL);
}

static long
all_records(void)
{
	return sgt_count_records(sgt_env("SG_IT_DIR"), "1 = 1");
}

/* ---- the codes ---- */

Test(conformance, legacy_parallel_functions_and_no_rng)
{
	CK_SESSION_HANDLE h = open_session(0);
	CK_TOKEN_INFO ti;
	CK_BYTE buf[16] = { 0 };

	cr_assert_eq(f->C_GetFunctionStatus(h), CKR_FUNCTION_NOT_PARALLEL);
	cr_assert_eq(f->C_CancelFunction(h), CKR_FUNCTION_NOT_PARALLEL);
	cr_assert_eq(f->C_GetTokenInfo(slot(), &ti), CKR_OK);
	cr_assert_eq(ti.flags & CKF_RNG, 0);
	cr_assert_eq(f->C_GenerateRandom(h, buf, sizeof(buf)), CKR_RANDOM_NO_RNG);
	cr_assert_eq(f->C_SeedRandom(h, buf, sizeof(buf)), CKR_RANDOM_NO_RNG);
}

Test(conformance, so_login)
{
	CK_SESSION_HANDLE rw, ro;
	long before;

	reinit_as("alice");
	rw = open_session(CKF_RW_SESSION);
	before = all_records();
	cr_assert_eq(f->C_Login(rw, CKU_SO, (CK_UTF8CHAR_PTR)"alice-password", 14),
	             CKR_PIN_INCORRECT);
	cr_assert_eq(all_records(), before, "an SO login reached the gateway");
	ro = open_session(0);
	cr_assert_eq(f->C_Login(rw, CKU_SO, (CK_UTF8CHAR_PTR)"x", 1), CKR_SESSION_READ_ONLY_EXISTS);
	cr_assert_eq(f->C_CloseSession(ro), CKR_OK);
	login(rw, "alice");
	cr_assert_eq(f->C_Login(rw, CKU_SO, (CK_UTF8CHAR_PTR)"x", 1),
	             CKR_USER_ANOTHER_ALREADY_LOGGED_IN);
}

Test(conformance, object_size)
{
	CK_SESSION_HANDLE h;
	CK_OBJECT_HANDLE cert, pub;
	CK_ATTRIBUTE v = { CKA_VALUE, NULL, 0 };
	CK_ULONG size = 0;

	reinit_as("alice");
	h = open_session(0);
	cert = find(h, CKO_CERTIFICATE, "Contract Seal");
	pub = find(h, CKO_PUBLIC_KEY, "Contract Seal");

	cr_assert_eq(f->C_GetAttributeValue(h, cert, &v, 1), CKR_OK);
	cr_assert_eq(f->C_GetObjectSize(h, cert, &size), CKR_OK);
	cr_assert_gt(size, v.ulValueLen);
	cr_assert_eq(f->C_GetObjectSize(h, pub, &size), CKR_OK);
	cr_assert_gt(size, 256);                        /* the modulus at least */
	cr_assert_eq(f->C_GetObjectSize(h, 0x7fff, &size), CKR_OBJECT_HANDLE_INVALID);
}

Test(conformance, sign_init_with_a_public_key)
{
	CK_SESSION_HANDLE h;
	CK_MECHANISM m = { CKM_SHA256_RSA_PKCS, NULL, 0 };

	reinit_as("alice");
	h = open_session(0);
	login(h, "alice");
	cr_assert_eq(f->C_SignInit(h, &m, find(h, CKO_PUBLIC_KEY, "Contract Seal")),
	             CKR_KEY_FUNCTION_NOT_PERMITTED);
	cr_assert_eq(f->C_SignInit(h, &m, find(h, CKO_CERTIFICATE, "Contract Seal")),
	             CKR_KEY_HANDLE_INVALID);
}

/* ---- C_Verify on what the gateway signed ---- */

struct vcase {
	const char *user, *label;
	CK_MECHANISM_TYPE mech;
	const char *md;         /* raw mechanisms: the hash the input is */
};

static const struct vcase vcases[] = {
	{ "alice", "Contract Seal", CKM_RSA_PKCS, "SHA256" },
	{ "alice", "Contract Seal", CKM_SHA256_RSA_PKCS, NULL },
	{ "alice", "Contract Seal", CKM_SHA384_RSA_PKCS, NULL },
	{ "alice", "Contract Seal", CKM_SHA512_RSA_PKCS, NULL },
	{ "alice", "Contract Seal", CKM_RSA_PKCS_PSS, "SHA256" },
	{ "alice", "Contract Seal", CKM_SHA256_RSA_PKCS_PSS, NULL },
	{ "alice", "Contract Seal", CKM_SHA384_RSA_PKCS_PSS, NULL },
	{ "alice", "Contract Seal", CKM_SHA512_RSA_PKCS_PSS, NULL },
	{ "alice", "Ed Seal", CKM_EDDSA, NULL },
	{ "dave", "Finance Seal", CKM_ECDSA, "SHA256" },
	{ "dave", "Finance Seal", CKM_ECDSA_SHA256, NULL },
	{ "dave", "Finance Seal", CKM_ECDSA_SHA384, NULL },
	{ "dave", "Finance Seal", CKM_ECDSA_SHA512, NULL },
};

static void
pss_for(CK_MECHANISM_TYPE m, CK_RSA_PKCS_PSS_PARAMS *pp)
{
	switch (m) {
	case CKM_SHA384_RSA_PKCS_PSS:
		*pp = (CK_RSA_PKCS_PSS_PARAMS){ CKM_SHA384, CKG_MGF1_SHA384, 48 };
		break;
	case CKM_SHA512_RSA_PKCS_PSS:
		*pp = (CK_RSA_PKCS_PSS_PARAMS){ CKM_SHA512, CKG_MGF1_SHA512, 64 };
		break;
	default:
		*pp = (CK_RSA_PKCS_PSS_PARAMS){ CKM_SHA256, CKG_MGF1_SHA256, 32 };
	}
}

static CK_MECHANISM
mech_of(CK_MECHANISM_TYPE t, CK_RSA_PKCS_PSS_PARAMS *pp)
{
	CK_MECHANISM m = { t, NULL, 0 };

	if (t == CKM_RSA_PKCS_PSS || t == CKM_SHA256_RSA_PKCS_PSS || t == CKM_SHA384_RSA_PKCS_PSS ||
	    t == CKM_SHA512_RSA_PKCS_PSS) {
		pss_for(t, pp);
		m.pParameter = pp;
		m.ulParameterLen = sizeof(*pp);
	}
	return m;
}

/* The input the application gives the token for the case. */
static size_t
input_for(const struct vcase *c, const unsigned char *msg, size_t len, unsigned char *out)
{
	static const unsigned char di256[] = { 0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86,
	                                       0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05,
	                                       0x00, 0x04, 0x20 };
	unsigned n = 0;
	size_t pre = 0;

	if (c->md == NULL) {
		memcpy(out, msg, len);
		return len;
	}
	if (c->mech == CKM_RSA_PKCS) {
		memcpy(out, di256, sizeof(di256));
		pre = sizeof(di256);
	}
	cr_assert_eq(EVP_Digest(msg, len, out + pre, &n, EVP_get_digestbyname(c->md), NULL), 1);
	return pre + n;
}

Test(conformance, verify_what_the_gateway_signed)
{
	unsigned char msg[5000], in[5100], sig[1024];
	CK_RSA_PKCS_PSS_PARAMS pp;
	size_t inlen;
	long before;

	for (size_t i = 0; i < sizeof(msg); i++)
		msg[i] = (unsigned char)(i * 11 + 7);
	for (size_t i = 0; i < sizeof(vcases) / sizeof(vcases[0]); i++) {
		const struct vcase *c = &vcases[i];
		CK_MECHANISM m = mech_of(c->mech, &pp);
		CK_SESSION_HANDLE h;
		CK_OBJECT_HANDLE key, pub;
		CK_ULONG siglen = sizeof(sig);

		reinit_as(c->user);
		h = open_session(0);
		login(h, c->user);
		key = find(h, CKO_PRIVATE_KEY, c->label);
		inlen = input_for(c, msg, sizeof(msg), in);
		cr_assert_eq(f->C_SignInit(h, &m, key), CKR_OK, "mech 0x%lx", c->mech);
		cr_assert_eq(f->C_Sign(h, in, inlen, sig, &siglen), CKR_OK, "mech 0x%lx", c->mech);
		/* Verified without a login: a fresh start of the module. */
		reinit_as(c->user);
		h = open_session(0);
		pub = find(h, CKO_PUBLIC_KEY, c->label);
		before = all_records();

		cr_assert_eq(f->C_VerifyInit(h, &m, pub), CKR_OK, "mech 0x%lx", c->mech);
		cr_assert_eq(f->C_Verify(h, in, inlen, sig, siglen), CKR_OK, "mech 0x%lx", c->mech);
		cr_assert_eq(f->C_VerifyInit(h, &m, pub), CKR_OK);
		cr_assert_eq(f->C_VerifyUpdate(h, in, inlen / 2), CKR_OK);
		cr_assert_eq(f->C_VerifyUpdate(h, in + inlen / 2, inlen - inlen / 2), CKR_OK);
		cr_assert_eq(f->C_VerifyFinal(h, sig, siglen), CKR_OK, "mech 0x%lx", c->mech);
		sig[siglen - 1] ^= 0x80;
		cr_assert_eq(f->C_VerifyInit(h, &m, pub), CKR_OK);
		cr_assert_eq(f->C_Verify(h, in, inlen, sig, siglen), CKR_SIGNATURE_INVALID,
		             "mech 0x%lx", c->mech);
		sig[siglen - 1] ^= 0x80;
		cr_assert_eq(f->C_VerifyInit(h, &m, pub), CKR_OK);
		cr_assert_eq(f->C_Verify(h, in, inlen, sig, siglen + 1), CKR_SIGNATURE_LEN_RANGE);
		cr_assert_eq(all_records(), before, "verification reached the gateway");
	}
}

/* r || s checked by OpenSSL over an input it truncates itself. */
static bool
ecdsa_raw_ok(EVP_PKEY *k, const unsigned char *in, size_t inlen, const unsigned char *sig,
             size_t siglen)
{
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(k, NULL);
	ECDSA_SIG *es = ECDSA_SIG_new();
	unsigned char der[256], *p = der;
	int derlen;
	bool ok;

	ECDSA_SIG_set0(es, BN_bin2bn(sig, (int)siglen / 2, NULL),
	               BN_bin2bn(sig + siglen / 2, (int)siglen / 2, NULL));
	derlen = i2d_ECDSA_SIG(es, &p);
	ok = EVP_PKEY_verify_init(ctx) == 1 &&
	     EVP_PKEY_verify(ctx, der, (size_t)derlen, in, inlen) == 1;
	ECDSA_SIG_free(es);
	EVP_PKEY_CTX_free(ctx);
	return ok;
}

Test(conformance, ecdsa_input_longer_than_the_key)
{
	CK_SESSION_HANDLE h;
	CK_MECHANISM m = { CKM_ECDSA, NULL, 0 };
	CK_OBJECT_HANDLE key, cert;
	CK_ATTRIBUTE v = { CKA_VALUE, NULL, 0 };
	unsigned char in[64], sig[132], *der;
	const unsigned char *p;
	CK_ULONG siglen = sizeof(sig);
	EVP_PKEY *k;
	X509 *x;

	/* A SHA-512 hash given to CKM_ECDSA on P-256, as SoftHSM2 takes it. */
	cr_assert_eq(EVP_Digest("contract", 8, in, NULL, EVP_sha512(), NULL), 1);
	reinit_as("dave");
	h = open_session(0);
	login(h, "dave");
	key = find(h, CKO_PRIVATE_KEY, "Finance Seal");
	cr_assert_eq(f->C_SignInit(h, &m, key), CKR_OK);
	cr_assert_eq(f->C_Sign(h, in, sizeof(in), sig, &siglen), CKR_OK);
	cr_assert_eq(siglen, 64);
	cert = find(h, CKO_CERTIFICATE, "Finance Seal");
	cr_assert_eq(f->C_GetAttributeValue(h, cert, &v, 1), CKR_OK);
	der = malloc(v.ulValueLen);
	v.pValue = der;
	cr_assert_eq(f->C_GetAttributeValue(h, cert, &v, 1), CKR_OK);
	p = der;
	x = d2i_X509(NULL, &p, (long)v.ulValueLen);
	cr_assert_not_null(x);
	k = X509_get_pubkey(x);
	cr_assert(ecdsa_raw_ok(k, in, sizeof(in), sig, siglen));
	cr_assert(ecdsa_raw_ok(k, in, 32, sig, siglen));
	/* And through the module. */
	cr_assert_eq(f->C_VerifyInit(h, &m, find(h, CKO_PUBLIC_KEY, "Finance Seal")), CKR_OK);
	cr_assert_eq(f->C_Verify(h, in, sizeof(in), sig, siglen), CKR_OK);
	EVP_PKEY_free(k);
	X509_free(x);
	free(der);
}

/* ---- a user the gateway has no account for ---- */

static CK_RV
login_capturing_stderr(CK_SESSION_HANDLE h, char *out, size_t outlen)
{
	FILE *tmp = tmpfile();
	int saved = dup(2);
	size_t n;
	CK_RV rv;

	cr_assert_not_null(tmp);
	fflush(stderr);
	cr_assert_geq(dup2(fileno(tmp), 2), 0);
	rv = f->C_Login(h, CKU_USER, (CK_UTF8CHAR_PTR)"alice-password", 14);
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	rewind(tmp);
	n = fread(out, 1, outlen - 1, tmp);
	out[n] = '\0';
	fclose(tmp);
	return rv;
}

Test(conformance, login_without_an_account)
{
	CK_SESSION_HANDLE h;
	char err[4096];

	/* The test's OS login may act as every account but is none itself. */
	setenv("SEALGATE_DEBUG", "1", 1);
	reinit_as(NULL);
	h = open_session(0);
	cr_assert_eq(login_capturing_stderr(h, err, sizeof(err)), CKR_PIN_INCORRECT);
	cr_assert_not_null(strstr(err, "SEALGATE_USER is not set"), "stderr: %s", err);
	cr_assert_not_null(strstr(err, "is not a sealgate account"), "stderr: %s", err);
	cr_assert_null(strstr(err, "alice-password"));
	/* No objects rather than an error C_FindObjectsInit has no code for. */
	{
		CK_OBJECT_HANDLE o[4];
		CK_ULONG n = 1;
		cr_assert_eq(f->C_FindObjectsInit(h, NULL, 0), CKR_OK);
		cr_assert_eq(f->C_FindObjects(h, o, 4, &n), CKR_OK);
		cr_assert_eq(n, 0);
		cr_assert_eq(f->C_FindObjectsFinal(h), CKR_OK);
	}
	reinit_as("no-such-account");
	h = open_session(0);
	cr_assert_eq(login_capturing_stderr(h, err, sizeof(err)), CKR_PIN_INCORRECT);
	cr_assert_not_null(strstr(err, "no-such-account"), "stderr: %s", err);
	unsetenv("SEALGATE_DEBUG");
}

/* ---- slot events as the gateway goes and comes ---- */

Test(conformance, slot_events)
{
	CK_SLOT_ID s = slot();
	CK_SLOT_ID got = 0;

	(void)s;
	cr_assert_eq(f->C_WaitForSlotEvent(CKF_DONT_BLOCK, &got, NULL), CKR_NO_EVENT);
	sgt_fixture("stop");
	cr_assert_eq(f->C_WaitForSlotEvent(CKF_DONT_BLOCK, &got, NULL), CKR_OK);
	cr_assert_eq(got, s);
	cr_assert_eq(f->C_WaitForSlotEvent(CKF_DONT_BLOCK, &got, NULL), CKR_NO_EVENT);
	sgt_fixture("start");
	got = 0;
	cr_assert_eq(f->C_WaitForSlotEvent(CKF_DONT_BLOCK, &got, NULL), CKR_OK);
	cr_assert_eq(got, s);
	cr_assert_eq(f->C_WaitForSlotEvent(CKF_DONT_BLOCK, &got, NULL), CKR_NO_EVENT);
}

struct waiter {
	CK_FLAGS flags;
	CK_SLOT_ID slot;
	CK_RV rv;
	pid_t tid;
	int done;
};

static void *
waiter_main(void *arg)
{
	struct waiter *w = arg;

	__atomic_store_n(&w->tid, (pid_t)syscall(SYS_gettid), __ATOMIC_RELEASE);
	w->rv = f->C_WaitForSlotEvent(w->flags, &w->slot, NULL);
	__atomic_store_n(&w->done, 1, __ATOMIC_RELEASE);
	return NULL;
}

/* Returns once the waiter sleeps (the kernel says S), which it does only
 * inside the module, or has returned. */
static void
waiter_asleep(struct waiter *w)
{
	char path[64], buf[256], *p;
	FILE *fp;

	for (;;) {
		pid_t tid = __atomic_load_n(&w->tid, __ATOMIC_ACQUIRE);
		if (__atomic_load_n(&w->done, __ATOMIC_ACQUIRE))
			return;
		if (tid != 0) {
			snprintf(path, sizeof(path), "/proc/self/task/%d/stat", (int)tid);
			fp = fopen(path, "r");
			if (fp != NULL) {
				p = fgets(buf, sizeof(buf), fp) ? strrchr(buf, ')') : NULL;
				fclose(fp);
				if (p != NULL && p[1] == ' ' && p[2] == 'S')
					return;
			}
		}
		usleep(1000);
	}
}

Test(conformance, blocked_waiter_sees_the_gateway_go)
{
	CK_SLOT_ID s = slot();
	struct waiter w = { 0 };
	pthread_t th;

	cr_assert_eq(pthread_create(&th, NULL, waiter_main, &w), 0);
	waiter_asleep(&w);
	sgt_fixture("stop");
	pthread_join(th, NULL);
	cr_assert_eq(w.rv, CKR_OK);
	cr_assert_eq(w.slot, s);
	sgt_fixture("start");
}

Test(conformance, finalize_wakes_a_blocked_waiter)
{
	struct waiter w = { 0 };
	pthread_t th;

	(void)slot();
	cr_assert_eq(pthread_create(&th, NULL, waiter_main, &w), 0);
	waiter_asleep(&w);
	cr_assert_eq(f->C_Finalize(NULL), CKR_OK);
	pthread_join(th, NULL);
	cr_assert_eq(w.rv, CKR_CRYPTOKI_NOT_INITIALIZED);
	cr_assert_eq(f->C_Initialize(NULL), CKR_OK);
}
