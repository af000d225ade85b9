/*
 * gateway/token.c against a real SoftHSM2 token made by mktoken.sh for each
 * test (keys generated on the token, certificates from a test CA), and the
 * p11shim module around SoftHSM for what SoftHSM cannot be made to do:
 * PIN flags, a C_Sign that fails mid-operation, a pulled token.
 */
#include <criterion/criterion.h>

#include <dlfcn.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/sha.h>
#include <openssl/x509.h>

#include "config.h"
#include "token.h"

#define SOFTHSM "/usr/lib/softhsm/libsofthsm2.so"

static char dir[64];
static char shim_path[512];
static struct gw_config cfg;
static struct gw_token *tok;

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
setup(void)
{
	const char *src = getenv("SEALGATE_SOURCE");
	const char *build = getenv("SEALGATE_BUILD");
	char conf[128];

	cr_assert(src && build, "SEALGATE_SOURCE and SEALGATE_BUILD must be set (run through meson test)");
	strcpy(dir, "/tmp/sg-backend-XXXXXX");
	cr_assert(mkdtemp(dir));
	sh("%s/tests/backend/mktoken.sh %s sg-test 1234 rsa-seal:01:rsa:2048 "
	   "ec-seal:02:EC:prime256v1 ed-seal:03:EC:edwards25519 >/dev/null", src, dir);
	snprintf(conf, sizeof(conf), "%s/softhsm2.conf", dir);
	setenv("SOFTHSM2_CONF", conf, 1);
	snprintf(shim_path, sizeof(shim_path), "%s/tests/backend/p11shim.so", build);
	/* Kept mapped after token.c's dlclose so that LeakSanitizer can still
	 * name SoftHSM's own leaks (and the suppression above applies). */
	cr_assert(dlopen(SOFTHSM, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE));
	memset(&cfg, 0, sizeof(cfg));
	cfg.backend_module = SOFTHSM;
	cfg.backend_token = "pkcs11:token=sg-test";
	cfg.backend_sessions = 2;
}

static void
teardown(void)
{
	char cmd[128];

	gw_token_close(&tok);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", dir);
}

TestSuite(token, .init = setup, .fini = teardown, .timeout = 120);

static void
open_ok(void)
{
	char err[512] = "";

	cr_assert_eq(gw_token_open(&cfg, "1234", &tok, err, sizeof(err)), 0, "open: %s", err);
}

static struct gw_seal_key *
find_ok(const char *uri)
{
	struct gw_seal_key *key = NULL;
	char err[512] = "";

	cr_assert_eq(gw_token_find_key(tok, uri, &key, err, sizeof(err)), 0, "find %s: %s", uri, err);
	return key;
}

static void
find_fails(const char *uri, const char *needle)
{
	struct gw_seal_key *key = NULL;
	char err[512] = "";

	cr_assert_eq(gw_token_find_key(tok, uri, &key, err, sizeof(err)), -1, "%s should fail", uri);
	cr_assert_null(key);
	cr_assert(strstr(err, needle), "%s: error '%s' lacks '%s'", uri, err, needle);
}

/* Control of the shim module: the same dlopen handle token.c got. */
static void *
shim_handle(void)
{
	void *h = dlopen(shim_path, RTLD_NOW | RTLD_LOCAL);

	cr_assert(h, "dlopen %s: %s", shim_path, dlerror());
	return h;
}

static void
shim_set(void *h, const char *what, long v)
{
	void (*f)(const char *, long) = (void (*)(const char *, long))dlsym(h, "shim_set");

	cr_assert(f);
	f(what, v);
}

static long
shim_get(void *h, const char *what)
{
	long (*f)(const char *) = (long (*)(const char *))dlsym(h, "shim_get");

	cr_assert(f);
	return f(what);
}

static EVP_PKEY *
cert_key(const struct gw_seal_key *key)
{
	const unsigned char *p = key->cert.p;
	X509 *x = d2i_X509(NULL, &p, (long)key->cert.len);
	EVP_PKEY *pk;

	cr_assert(x);
	pk = X509_get_pubkey(x);
	X509_free(x);
	cr_assert(pk);
	return pk;
}

/* Verifies sig from the token with OpenSSL against the key's certificate. */
static bool
verify_sig(const struct gw_seal_key *key, CK_MECHANISM_TYPE mech, const uint8_t *msg,
           size_t msglen, const uint8_t *sig, size_t siglen)
{
	EVP_PKEY *pk = cert_key(key);
	EVP_PKEY_CTX *ctx = NULL;
	EVP_MD_CTX *md = NULL;
	ECDSA_SIG *es = NULL;
	unsigned char *der = NULL;
	uint8_t hash[32];
	bool ok = false;
	int n;

	SHA256(msg, msglen, hash);
	switch (mech) {
	case CKM_RSA_PKCS:
	case CKM_RSA_PKCS_PSS:
		ctx = EVP_PKEY_CTX_new(pk, NULL);
		ok = ctx && EVP_PKEY_verify_init(ctx) > 0 &&
		     EVP_PKEY_CTX_set_rsa_padding(ctx, mech == CKM_RSA_PKCS ?
		                                  RSA_PKCS1_PADDING : RSA_PKCS1_PSS_PADDING) > 0 &&
		     EVP_PKEY_CTX_set_signature_md(ctx, EVP_sha256()) > 0 &&
		     (mech == CKM_RSA_PKCS || EVP_PKEY_CTX_set_rsa_pss_saltlen(ctx, 32) > 0) &&
		     EVP_PKEY_verify(ctx, sig, siglen, hash, sizeof(hash)) == 1;
		break;
	case CKM_ECDSA:
		/* PKCS#11 gives r || s; OpenSSL wants DER. */
		es = ECDSA_SIG_new();
		cr_assert(es && siglen == 64);
		ECDSA_SIG_set0(es, BN_bin2bn(sig, 32, NULL), BN_bin2bn(sig + 32, 32, NULL));
		n = i2d_ECDSA_SIG(es, &der);
		ctx = EVP_PKEY_CTX_new(pk, NULL);
		ok = n > 0 && ctx && EVP_PKEY_verify_init(ctx) > 0 &&
		     EVP_PKEY_verify(ctx, der, (size_t)n, hash, sizeof(hash)) == 1;
		break;
	case CKM_EDDSA:
		md = EVP_MD_CTX_new();
		ok = md && EVP_DigestVerifyInit(md, NULL, NULL, NULL, pk) > 0 &&
		     EVP_DigestVerify(md, sig, siglen, msg, msglen) == 1;
		break;
	}
	OPENSSL_free(der);
	ECDSA_SIG_free(es);
	EVP_MD_CTX_free(md);
	EVP_PKEY_CTX_free(ctx);
	EVP_PKEY_free(pk);
	return ok;
}

static const uint8_t sha256_prefix[19] = {
	0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01,
	0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20
};

/* Signs msg as desktop apps do (digest for RSA_PKCS/PSS/ECDSA, the message
 * for EdDSA) and returns the CK_RV; sig/siglen out. */
static CK_RV
sign_as_app(const struct gw_seal_key *key, CK_MECHANISM_TYPE m, const uint8_t *msg,
            size_t msglen, uint8_t *sig, size_t *siglen)
{
	CK_RSA_PKCS_PSS_PARAMS pss = { CKM_SHA256, CKG_MGF1_SHA256, 32 };
	CK_MECHANISM mech = { m, NULL, 0 };
	uint8_t in[sizeof(sha256_prefix) + 32];
	size_t inlen;

	if (m == CKM_RSA_PKCS) {
		memcpy(in, sha256_prefix, sizeof(sha256_prefix));
		SHA256(msg, msglen, in + sizeof(sha256_prefix));
		inlen = sizeof(in);
	} else if (m == CKM_RSA_PKCS_PSS || m == CKM_ECDSA) {
		SHA256(msg, msglen, in);
		inlen = 32;
		if (m == CKM_RSA_PKCS_PSS) {
			mech.pParameter = &pss;
			mech.ulParameterLen = sizeof(pss);
		}
	} else {
		return gw_token_sign(tok, key, &mech, msg, msglen, sig, siglen);
	}
	return gw_token_sign(tok, key, &mech, in, inlen, sig, siglen);
}

static void
sign_verify(const struct gw_seal_key *key, CK_MECHANISM_TYPE m)
{
	uint8_t msg[100], sig[512];
	size_t siglen = sizeof(sig);
	CK_RV rv;

	RAND_bytes(msg, sizeof(msg));
	rv = sign_as_app(key, m, msg, sizeof(msg), sig, &siglen);
	cr_assert_eq(rv, CKR_OK, "sign mech 0x%lx: rv 0x%lx", (unsigned long)m, (unsigned long)rv);
	cr_assert(verify_sig(key, m, msg, sizeof(msg), sig, siglen),
	          "signature (mech 0x%lx) does not verify", (unsigned long)m);
	/* And a wrong message must not verify: the check can fail. */
	msg[0] ^= 1;
	cr_assert_not(verify_sig(key, m, msg, sizeof(msg), sig, siglen));
}

/* ---- open ---- */

Test(token, open_by_uri)
{
	open_ok();
	cr_assert(gw_token_present(tok));
	cr_assert(strstr(gw_token_describe(tok), "sg-test"), "%s", gw_token_describe(tok));
}

Test(token, open_by_plain_label_and_default_pool)
{
	cfg.backend_token = "sg-test";
	cfg.backend_sessions = 0;   /* 2 x CPUs */
	open_ok();
	cr_assert(gw_token_present(tok));
}

Test(token, open_by_uri_with_manufacturer_and_model)
{
	cfg.backend_token = "pkcs11:manufacturer=SoftHSM%20project;model=SoftHSM%20v2;token=sg-test";
	open_ok();
}

Test(token, open_no_such_token_names_what_exists)
{
	char err[512] = "";

	cfg.backend_token = "pkcs11:token=nope";
	cr_assert_eq(gw_token_open(&cfg, "1234", &tok, err, sizeof(err)), -1);
	cr_assert_null(tok);
	cr_assert(strstr(err, "no backend token matches") && strstr(err, "'sg-test'"), "%s", err);
}

Test(token, open_ambiguous_token)
{
	char err[512] = "";

	/* A second token with the same label. */
	sh("softhsm2-util --init-token --free --label sg-test --pin 1234 --so-pin 5678 >/dev/null");
	cr_assert_eq(gw_token_open(&cfg, "1234", &tok, err, sizeof(err)), -1);
	cr_assert(strstr(err, "2 backend tokens match"), "%s", err);
}

Test(token, open_bad_uri)
{
	char err[512] = "";

	cfg.backend_token = "pkcs11:token=sg-test;object=rsa-seal";
	cr_assert_eq(gw_token_open(&cfg, "1234", &tok, err, sizeof(err)), -1);
	cr_assert(strstr(err, "names an object"), "%s", err);
	cfg.backend_token = "pkcs11:token=%zz";
	cr_assert_eq(gw_token_open(&cfg, "1234", &tok, err, sizeof(err)), -1);
}

Test(token, wrong_pin_is_tried_once)
{
	char err[512] = "";
	void *h = shim_handle();

	cfg.backend_module = shim_path;
	cr_assert_eq(gw_token_open(&cfg, "9999", &tok, err, sizeof(err)), -1);
	cr_assert(strstr(err, "C_Login") && strstr(err, "will not retry"), "%s", err);
	cr_assert_eq(shim_get(h, "logins"), 1);
	dlclose(h);
}

/* ---- PIN flags ---- */

Test(token, pin_flag_check)
{
	char err[256];

	cr_assert_eq(gw_token_check_pin_flags(0, err, sizeof(err)), 0);
	cr_assert_eq(gw_token_check_pin_flags(CKF_USER_PIN_COUNT_LOW, err, sizeof(err)), 0);
	cr_assert_eq(gw_token_check_pin_flags(CKF_USER_PIN_FINAL_TRY, err, sizeof(err)), -1);
	cr_assert(strstr(err, "FINAL_TRY"), "%s", err);
	cr_assert_eq(gw_token_check_pin_flags(CKF_USER_PIN_FINAL_TRY | CKF_USER_PIN_COUNT_LOW,
	                                      err, sizeof(err)), -1);
	cr_assert_eq(gw_token_check_pin_flags(CKF_USER_PIN_LOCKED, err, sizeof(err)), -1);
	cr_assert(strstr(err, "locked"), "%s", err);
}

Test(token, final_try_refused_without_login)
{
	char err[512] = "";
	void *h = shim_handle();

	cfg.backend_module = shim_path;
	shim_set(h, "extra_flags", CKF_USER_PIN_FINAL_TRY);
	cr_assert_eq(gw_token_open(&cfg, "1234", &tok, err, sizeof(err)), -1);
	cr_assert(strstr(err, "FINAL_TRY"), "%s", err);
	cr_assert_eq(shim_get(h, "logins"), 0, "no login may be attempted on the final try");
	shim_set(h, "extra_flags", CKF_USER_PIN_LOCKED);
	cr_assert_eq(gw_token_open(&cfg, "1234", &tok, err, sizeof(err)), -1);
	cr_assert_eq(shim_get(h, "logins"), 0);
	/* COUNT_LOW only warns. */
	shim_set(h, "extra_flags", CKF_USER_PIN_COUNT_LOW);
	open_ok();
	cr_assert_eq(shim_get(h, "logins"), 1);
	shim_set(h, "extra_flags", 0);
	gw_token_close(&tok);
	dlclose(h);
}

/* ---- keys ---- */

Test(token, find_rsa_key)
{
	struct gw_seal_key *key;
	FILE *f;
	uint8_t der[4096];
	size_t n;
	char path[128];

	open_ok();
	key = find_ok("pkcs11:token=sg-test;object=rsa-seal;type=private");
	cr_assert_eq(key->type, GW_KEY_RSA);
	cr_assert_eq(key->bits, 2048);
	cr_assert_eq(key->modulus.len, 256);
	cr_assert(key->public_exponent.len > 0);
	cr_assert_str_eq(key->label, "rsa-seal");
	cr_assert_eq(key->id.len, 1);
	cr_assert_eq(key->id.p[0], 0x01);
	cr_assert(key->subject.len > 0 && key->issuer.len > 0 && key->serial.len > 0);
	snprintf(path, sizeof(path), "%s/rsa-seal.crt.der", dir);
	f = fopen(path, "rb");
	cr_assert(f);
	n = fread(der, 1, sizeof(der), f);
	fclose(f);
	cr_assert_eq(key->cert.len, n);
	cr_assert_eq(memcmp(key->cert.p, der, n), 0, "the certificate is the one mktoken wrote");
	gw_seal_key_free(&key);
	cr_assert_null(key);
}

Test(token, find_ec_key_by_id)
{
	static const uint8_t p256[] = { 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07 };
	struct gw_seal_key *key;

	open_ok();
	key = find_ok("pkcs11:id=%02");
	cr_assert_eq(key->type, GW_KEY_EC);
	cr_assert_eq(key->bits, 256);
	cr_assert_eq(key->ec_params.len, sizeof(p256));
	cr_assert_eq(memcmp(key->ec_params.p, p256, sizeof(p256)), 0);
	/* DER OCTET STRING of the uncompressed point. */
	cr_assert_eq(key->ec_point.len, 67);
	cr_assert_eq(key->ec_point.p[0], 0x04);
	cr_assert_eq(key->ec_point.p[1], 65);
	cr_assert_eq(key->ec_point.p[2], 0x04);
	gw_seal_key_free(&key);
}

Test(token, find_ed25519_key)
{
	struct gw_seal_key *key;

	open_ok();
	key = find_ok("pkcs11:object=ed-seal;id=%03");
	cr_assert_eq(key->type, GW_KEY_ED25519);
	cr_assert_eq(key->bits, 255);
	cr_assert(key->ec_params.len > 0);
	cr_assert_eq(key->ec_point.len, 34);
	cr_assert_eq(key->ec_point.p[0], 0x04);
	cr_assert_eq(key->ec_point.p[1], 32);
	gw_seal_key_free(&key);
}

Test(token, find_errors)
{
	open_ok();
	find_fails("pkcs11:object=nope", "no private key");
	find_fails("pkcs11:token=other;object=rsa-seal", "another token");
	find_fails("pkcs11:type=cert;object=rsa-seal", "type= must be private");
	find_fails("not-a-uri", "key URI");
	find_fails("pkcs11:token=sg-test", "names no key");
	find_fails("pkcs11:object=rsa-seal?pin-value=1234", "PIN");
	find_fails("pkcs11:object=rsa-seal;id=%02", "no private key");
}

Test(token, missing_certificate_is_an_error)
{
	open_ok();
	sh("pkcs11-tool --module " SOFTHSM " --token-label sg-test --login --pin 1234 "
	   "--keypairgen --key-type EC:prime256v1 --label nocert --id 04 >/dev/null");
	find_fails("pkcs11:object=nocert", "no X.509 certificate");
}

Test(token, certificate_of_another_key_is_refused)
{
	open_ok();
	/* A new RSA key under id 05 with rsa-seal's certificate next to it. */
	sh("pkcs11-tool --module " SOFTHSM " --token-label sg-test --login --pin 1234 "
	   "--keypairgen --key-type rsa:2048 --label swapped --id 05 >/dev/null && "
	   "pkcs11-tool --module " SOFTHSM " --token-label sg-test --login --pin 1234 "
	   "--write-object %s/rsa-seal.crt.der --type cert --id 05 --label swapped >/dev/null", dir);
	find_fails("pkcs11:object=swapped", "does not match");
	/* An EC key next to an RSA certificate: refused too. */
	sh("pkcs11-tool --module " SOFTHSM " --token-label sg-test --login --pin 1234 "
	   "--keypairgen --key-type EC:prime256v1 --label wrongtype --id 06 >/dev/null && "
	   "pkcs11-tool --module " SOFTHSM " --token-label sg-test --login --pin 1234 "
	   "--write-object %s/rsa-seal.crt.der --type cert --id 06 --label wrongtype >/dev/null", dir);
	find_fails("pkcs11:object=wrongtype", "no EC key");
}

Test(token, ambiguous_key_uri)
{
	open_ok();
	sh("pkcs11-tool --module " SOFTHSM " --token-label sg-test --login --pin 1234 "
	   "--keypairgen --key-type EC:prime256v1 --label rsa-seal --id 07 >/dev/null");
	find_fails("pkcs11:object=rsa-seal", "more than one private key");
	gw_seal_key_free((struct gw_seal_key *[]){ find_ok("pkcs11:object=rsa-seal;id=%01") });
}

/* ---- signing ---- */

Test(token, sign_all_mechanisms_and_verify)
{
	struct gw_seal_key *rsa, *ec, *ed;

	open_ok();
	rsa = find_ok("pkcs11:object=rsa-seal");
	ec = find_ok("pkcs11:object=ec-seal");
	ed = find_ok("pkcs11:object=ed-seal");
	sign_verify(rsa, CKM_RSA_PKCS);
	sign_verify(rsa, CKM_RSA_PKCS_PSS);
	sign_verify(ec, CKM_ECDSA);
	sign_verify(ed, CKM_EDDSA);
	gw_seal_key_free(&rsa);
	gw_seal_key_free(&ec);
	gw_seal_key_free(&ed);
}

static void
count_known(void *arg, const struct gw_seal_key *key)
{
	(void)key;
	(*(int *)arg)++;
}

/* The public part of a key as the store keeps it (token.h, known keys):
 * the same key back, without a handle, and it still signs (found again by
 * CKA_ID and label). */
Test(token, known_keys_round_trip_and_sign_without_a_handle)
{
	const char *uris[] = { "pkcs11:object=rsa-seal", "pkcs11:object=ec-seal", "pkcs11:object=ed-seal" };
	const CK_MECHANISM_TYPE mechs[] = { CKM_RSA_PKCS, CKM_ECDSA, CKM_EDDSA };
	struct gw_seal_key *bad = NULL;
	char err[256];
	int n = 0;

	open_ok();
	for (int i = 0; i < 3; i++) {
		struct gw_seal_key *key = find_ok(uris[i]), *back = NULL;
		size_t len = 0;
		uint8_t *blob = gw_seal_key_encode(key, &len);

		cr_assert_not_null(blob);
		cr_assert_eq(gw_seal_key_decode(uris[i], blob, len, &back, err, sizeof(err)), 0, "%s", err);
		cr_assert_str_eq(back->uri, uris[i]);
		cr_assert_eq(back->type, key->type);
		cr_assert_eq(back->bits, key->bits);
		cr_assert_str_eq(back->label, key->label);
		cr_assert_eq(back->always_auth, key->always_auth);
		cr_assert_eq(back->priv, CK_INVALID_HANDLE);
		cr_assert_eq(back->cert.len, key->cert.len);
		cr_assert_eq(memcmp(back->cert.p, key->cert.p, key->cert.len), 0);
		cr_assert_eq(back->id.len, key->id.len);
		cr_assert_eq(memcmp(back->id.p, key->id.p, key->id.len), 0);
		cr_assert_eq(back->modulus.len, key->modulus.len);
		cr_assert_eq(back->ec_point.len, key->ec_point.len);
		cr_assert_eq(memcmp(back->ec_point.p ? back->ec_point.p : back->modulus.p,
		                    key->ec_point.p ? key->ec_point.p : key->modulus.p,
		                    key->ec_point.p ? key->ec_point.len : key->modulus.len), 0);
		sign_verify(back, mechs[i]);
		/* cut short: refused, nothing returned */
		cr_assert_eq(gw_seal_key_decode(uris[i], blob, len - 1, &bad, err, sizeof(err)), -1);
		cr_assert_null(bad);
		free(blob);
		gw_seal_key_free(&back);
		gw_seal_key_free(&key);
	}
	/* found again: replaced, not added */
	bad = find_ok("pkcs11:object=ec-seal");
	gw_seal_key_free(&bad);
	cr_assert_eq(gw_token_known_keys(tok, count_known, &n), 3);
	cr_assert_eq(n, 3);
}

Test(token, buffer_too_small_reports_size_and_pool_recovers)
{
	struct gw_seal_key *rsa;
	uint8_t msg[10] = "0123456789", sig[512];
	size_t siglen = 10;

	cfg.backend_sessions = 1;
	open_ok();
	rsa = find_ok("pkcs11:object=rsa-seal");
	cr_assert_eq(sign_as_app(rsa, CKM_RSA_PKCS, msg, sizeof(msg), sig, &siglen), CKR_BUFFER_TOO_SMALL);
	cr_assert_eq(siglen, 256);
	/* The one session had an operation left active: the next signature
	 * must not see CKR_OPERATION_ACTIVE. */
	siglen = sizeof(sig);
	cr_assert_eq(sign_as_app(rsa, CKM_RSA_PKCS, msg, sizeof(msg), sig, &siglen), CKR_OK);
	cr_assert(verify_sig(rsa, CKM_RSA_PKCS, msg, sizeof(msg), sig, siglen));
	gw_seal_key_free(&rsa);
}

Test(token, failed_sign_leaves_no_active_operation)
{
	struct gw_seal_key *ec;
	uint8_t msg[10] = "0123456789", sig[128];
	size_t siglen = sizeof(sig);
	void *h = shim_handle();
	long closes;

	cfg.backend_module = shim_path;
	cfg.backend_sessions = 1;
	open_ok();
	ec = find_ok("pkcs11:object=ec-seal");
	closes = shim_get(h, "closes");
	shim_set(h, "fail_sign_rv", CKR_DEVICE_ERROR);
	cr_assert_eq(sign_as_app(ec, CKM_ECDSA, msg, sizeof(msg), sig, &siglen), CKR_DEVICE_ERROR);
	cr_assert_eq(shim_get(h, "closes"), closes + 1, "the dirty session is closed, not reused");
	cr_assert(gw_token_present(tok), "a device error is not a pulled token");
	for (int i = 0; i < 3; i++) {
		siglen = sizeof(sig);
		cr_assert_eq(sign_as_app(ec, CKM_ECDSA, msg, sizeof(msg), sig, &siglen), CKR_OK);
		cr_assert(verify_sig(ec, CKM_ECDSA, msg, sizeof(msg), sig, siglen));
	}
	gw_seal_key_free(&ec);
	gw_token_close(&tok);
	dlclose(h);
}

Test(token, token_goes_away_and_comes_back)
{
	struct gw_seal_key *rsa;
	uint8_t msg[10] = "0123456789", sig[512];
	size_t siglen = sizeof(sig);
	void *h = shim_handle();

	cfg.backend_module = shim_path;
	open_ok();
	rsa = find_ok("pkcs11:object=rsa-seal");
	cr_assert_eq(shim_get(h, "logins"), 1);

	shim_set(h, "removed", 1);
	cr_assert_eq(sign_as_app(rsa, CKM_RSA_PKCS, msg, sizeof(msg), sig, &siglen), CKR_DEVICE_REMOVED);
	cr_assert_not(gw_token_present(tok));
	siglen = sizeof(sig);
	cr_assert_eq(sign_as_app(rsa, CKM_RSA_PKCS, msg, sizeof(msg), sig, &siglen), CKR_TOKEN_NOT_PRESENT);
	cr_assert_not(gw_token_present(tok));

	shim_set(h, "removed", 0);
	/* Reconnects are spaced a second apart after a failed one. */
	cr_assert_eq(gw_token_reconnect(tok), CKR_TOKEN_NOT_PRESENT);
	usleep(1100 * 1000);
	siglen = sizeof(sig);
	cr_assert_eq(sign_as_app(rsa, CKM_RSA_PKCS, msg, sizeof(msg), sig, &siglen), CKR_OK);
	cr_assert(gw_token_present(tok));
	cr_assert(verify_sig(rsa, CKM_RSA_PKCS, msg, sizeof(msg), sig, siglen));
	cr_assert_eq(shim_get(h, "logins"), 2, "exactly one re-login");
	gw_seal_key_free(&rsa);
	gw_token_close(&tok);
	dlclose(h);
}

Test(token, lost_then_login_refused_stays_down)
{
	void *h = shim_handle();

	cfg.backend_module = shim_path;
	open_ok();
	gw_token_lost(tok, "test");
	cr_assert_not(gw_token_present(tok));
	/* The token comes back saying one PIN try is left: no login. */
	shim_set(h, "extra_flags", CKF_USER_PIN_FINAL_TRY);
	cr_assert_neq(gw_token_reconnect(tok), CKR_OK);
	cr_assert_eq(shim_get(h, "logins"), 1);
	shim_set(h, "extra_flags", 0);
	usleep(1100 * 1000);
	/* Refused once means refused until restart: never try again. */
	cr_assert_neq(gw_token_reconnect(tok), CKR_OK);
	cr_assert_eq(shim_get(h, "logins"), 1);
	gw_token_close(&tok);
	dlclose(h);
}

Test(token, always_authenticate_key_logs_in_per_signature)
{
	struct gw_seal_key *key;
	void *h = shim_handle();
	long logins;

	/* A smartcard-style signature key: PIN again for every operation. */
	sh("cd %s && pkcs11-tool --module " SOFTHSM " --token-label sg-test --login --pin 1234 "
	   "--keypairgen --key-type EC:prime256v1 --label aa-seal --id 08 --always-auth >/dev/null && "
	   "pkcs11-tool --module " SOFTHSM " --token-label sg-test --read-object --type pubkey "
	   "--id 08 -o aa.pub.der >/dev/null 2>&1 && openssl pkey -pubin -in aa.pub.der -out aa.pub.pem && "
	   "openssl x509 -new -subj /CN=aa-seal -force_pubkey aa.pub.pem -CA ca.pem -CAkey ca.key "
	   "-days 30 -outform DER -out aa.crt.der && "
	   "pkcs11-tool --module " SOFTHSM " --token-label sg-test --login --pin 1234 "
	   "--write-object aa.crt.der --type cert --id 08 --label aa-seal >/dev/null", dir);
	cfg.backend_module = shim_path;
	open_ok();
	key = find_ok("pkcs11:object=aa-seal");
	cr_assert(key->always_auth);
	logins = shim_get(h, "logins");
	sign_verify(key, CKM_ECDSA);
	sign_verify(key, CKM_ECDSA);
	cr_assert_eq(shim_get(h, "logins"), logins + 2, "one context-specific login per signature");
	gw_seal_key_free(&key);
	gw_token_close(&tok);
	dlclose(h);
}

/* ---- concurrency ---- */

#define THREADS 4
#define PER_THREAD 200

struct worker {
	const struct gw_seal_key *key;
	CK_MECHANISM_TYPE mech;
	int ok, bad;
	CK_RV last_rv;
};

static void *
worker_main(void *arg)
{
	struct worker *w = arg;
	uint8_t msg[64], sig[512];
	size_t siglen;

	for (int i = 0; i < PER_THREAD; i++) {
		RAND_bytes(msg, sizeof(msg));
		siglen = sizeof(sig);
		w->last_rv = sign_as_app(w->key, w->mech, msg, sizeof(msg), sig, &siglen);
		if (w->last_rv == CKR_OK && verify_sig(w->key, w->mech, msg, sizeof(msg), sig, siglen))
			w->ok++;
		else
			w->bad++;
	}
	return NULL;
}

Test(token, parallel_signatures_all_verify)
{
	struct gw_seal_key *keys[3];
	CK_MECHANISM_TYPE mechs[THREADS] = { CKM_RSA_PKCS, CKM_ECDSA, CKM_EDDSA, CKM_RSA_PKCS_PSS };
	struct worker w[THREADS];
	pthread_t th[THREADS];

	/* Fewer sessions than threads: signers also wait for one another. */
	cfg.backend_sessions = 2;
	open_ok();
	keys[0] = find_ok("pkcs11:object=rsa-seal");
	keys[1] = find_ok("pkcs11:object=ec-seal");
	keys[2] = find_ok("pkcs11:object=ed-seal");
	for (int i = 0; i < THREADS; i++) {
		memset(&w[i], 0, sizeof(w[i]));
		w[i].mech = mechs[i];
		w[i].key = mechs[i] == CKM_ECDSA ? keys[1] : mechs[i] == CKM_EDDSA ? keys[2] : keys[0];
		cr_assert_eq(pthread_create(&th[i], NULL, worker_main, &w[i]), 0);
	}
	for (int i = 0; i < THREADS; i++) {
		pthread_join(th[i], NULL);
		cr_assert_eq(w[i].ok, PER_THREAD, "thread %d: %d bad signatures (last rv 0x%lx)",
		             i, w[i].bad, (unsigned long)w[i].last_rv);
	}
	for (int i = 0; i < 3; i++)
		gw_seal_key_free(&keys[i]);
}

/* ---- object handles after token events (issue item 13) ---- */

/* A token with two RSA keys, behind the shim: a handle that names the
 * wrong one signs with a key of the very same kind, so only the key's
 * identity tells them apart. */
static void *
two_rsa_token(struct gw_seal_key **one, struct gw_seal_key **two)
{
	const char *src = getenv("SEALGATE_SOURCE");
	char conf[160];
	void *h = shim_handle();

	sh("%s/tests/backend/mktoken.sh %s/two sg-two 1234 rsa-one:11:rsa:2048 rsa-two:12:rsa:2048 "
	   ">/dev/null", src, dir);
	snprintf(conf, sizeof(conf), "%s/two/softhsm2.conf", dir);
	setenv("SOFTHSM2_CONF", conf, 1);
	cfg.backend_module = shim_path;
	cfg.backend_token = "pkcs11:token=sg-two";
	open_ok();
	*one = find_ok("pkcs11:object=rsa-one");
	*two = find_ok("pkcs11:object=rsa-two");
	cr_assert_neq((*one)->priv, (*two)->priv);
	sign_verify(*one, CKM_RSA_PKCS);
	return h;
}

/* The token is pulled: a signature finds it gone. */
static void
token_pulled(void *h, const struct gw_seal_key *key)
{
	uint8_t msg[10] = "0123456789", sig[512];
	size_t siglen = sizeof(sig);

	shim_set(h, "removed", 1);
	cr_assert_eq(sign_as_app(key, CKM_RSA_PKCS, msg, sizeof(msg), sig, &siglen), CKR_DEVICE_REMOVED);
	cr_assert_not(gw_token_present(tok));
}

/* ... and re-inserted. */
static void
token_back(void *h)
{
	shim_set(h, "removed", 0);
	usleep(1100 * 1000);    /* reconnects are a second apart after a failed one */
	cr_assert_eq(gw_token_reconnect(tok), CKR_OK);
}

/* The number uri's key has on the token now (SoftHSM itself numbers its
 * objects anew after all sessions were closed). */
static CK_OBJECT_HANDLE
number_now(const char *uri)
{
	struct gw_seal_key *k = find_ok(uri);
	CK_OBJECT_HANDLE n = k->priv;

	gw_seal_key_free(&k);
	return n;
}

static void
shim_reset(void *h)
{
	shim_set(h, "swap_a", 0);
	shim_set(h, "swap_b", 0);
	shim_set(h, "swap_find_only", 0);
	shim_set(h, "find_one_as_two", 0);
	shim_set(h, "fail_signinit_rv", 0);
	gw_token_close(&tok);
	dlclose(h);
}

/* After the card returns, the old number of rsa-one names rsa-two: the
 * key is found again by CKA_ID, so each key still signs as itself. */
Test(token, after_a_token_event_keys_are_found_again_not_their_old_handles)
{
	struct gw_seal_key *one, *two;
	void *h = two_rsa_token(&one, &two);

	token_pulled(h, one);
	token_back(h);
	shim_set(h, "swap_a", (long)one->priv);
	shim_set(h, "swap_b", (long)number_now("pkcs11:object=rsa-two"));
	sign_verify(one, CKM_RSA_PKCS);
	sign_verify(two, CKM_RSA_PKCS);
	gw_seal_key_free(&one);
	gw_seal_key_free(&two);
	shim_reset(h);
}

/* Every key is found again as the token comes back, before any signature
 * asks for it: two keys known, two lookups of a private key. */
Test(token, when_the_token_is_back_every_key_is_found_again_at_once)
{
	struct gw_seal_key *one, *two;
	void *h = two_rsa_token(&one, &two);
	long finds;

	token_pulled(h, one);
	finds = shim_get(h, "key_finds");
	token_back(h);
	cr_assert_eq(shim_get(h, "key_finds"), finds + 2, "private-key lookups at the reconnect: %ld",
	             shim_get(h, "key_finds") - finds);
	finds = shim_get(h, "key_finds");
	sign_verify(one, CKM_RSA_PKCS);
	sign_verify(two, CKM_RSA_PKCS);
	cr_assert_eq(shim_get(h, "key_finds"), finds, "the handles found then are used, not looked up again");
	gw_seal_key_free(&one);
	gw_seal_key_free(&two);
	shim_reset(h);
}

/* A key's handle is checked once in a token generation (token.h): the
 * signatures after the first read no attribute of the key; after an event
 * (the token pulled and back) the handles are checked at the reconnect and
 * not again. */
Test(token, a_handle_is_checked_once_a_generation)
{
	struct gw_seal_key *one, *two;
	void *h = two_rsa_token(&one, &two);
	long reads;

	reads = shim_get(h, "attr_reads");
	sign_verify(one, CKM_RSA_PKCS);
	sign_verify(one, CKM_RSA_PKCS);
	cr_assert_eq(shim_get(h, "attr_reads"), reads, "no key check after the first: %ld reads",
	             shim_get(h, "attr_reads") - reads);
	token_pulled(h, one);
	token_back(h);
	reads = shim_get(h, "attr_reads");
	sign_verify(one, CKM_RSA_PKCS);
	sign_verify(two, CKM_RSA_PKCS);
	cr_assert_eq(shim_get(h, "attr_reads"), reads, "checked at the reconnect, not again");
	gw_seal_key_free(&one);
	gw_seal_key_free(&two);
	shim_reset(h);
}

/* The token comes back offering rsa-two for rsa-one (its find answers
 * with the other key, whatever the numbers): refused with CKR_KEY_CHANGED
 * before any C_SignInit, at every try, and the right key is not replaced
 * by a wrong one for later signatures either. */
Test(token, a_token_that_offers_another_key_is_refused_before_signing)
{
	struct gw_seal_key *one, *two;
	void *h = two_rsa_token(&one, &two);
	uint8_t msg[10] = "0123456789", sig[512];
	size_t siglen = sizeof(sig);
	long inits;
	CK_RV rv;

	token_pulled(h, one);
	shim_set(h, "find_one_as_two", 1);
	token_back(h);
	inits = shim_get(h, "sign_inits");
	rv = sign_as_app(one, CKM_RSA_PKCS, msg, sizeof(msg), sig, &siglen);
	cr_assert_eq(rv, CKR_KEY_CHANGED, "rv 0x%lx", (unsigned long)rv);
	cr_assert_eq(shim_get(h, "sign_inits"), inits, "nothing was signed");
	siglen = sizeof(sig);
	rv = sign_as_app(one, CKM_RSA_PKCS, msg, sizeof(msg), sig, &siglen);
	cr_assert_eq(rv, CKR_KEY_CHANGED, "again: rv 0x%lx", (unsigned long)rv);
	cr_assert_eq(shim_get(h, "sign_inits"), inits, "nothing was signed the second time");
	cr_assert(gw_token_present(tok), "a wrong key is refused, the token is not given up");
	sign_verify(two, CKM_RSA_PKCS);
	/* Once the token answers truly again, rsa-one signs as itself. */
	shim_set(h, "find_one_as_two", 0);
	sign_verify(one, CKM_RSA_PKCS);
	gw_seal_key_free(&one);
	gw_seal_key_free(&two);
	shim_reset(h);
}

/* A checked handle the token refuses at C_SignInit (its object gone, and
 * the number may come back naming another): the key is found again and
 * checked before a second try; here the find offers rsa-two for rsa-one,
 * so nothing is signed. */
Test(token, a_handle_refused_at_sign_init_is_found_again_and_checked)
{
	struct gw_seal_key *one, *two;
	void *h = two_rsa_token(&one, &two);
	uint8_t msg[10] = "0123456789", sig[512];
	size_t siglen = sizeof(sig);
	long inits;
	CK_RV rv;

	shim_set(h, "find_one_as_two", 1);
	shim_set(h, "fail_signinit_rv", CKR_KEY_HANDLE_INVALID);
	inits = shim_get(h, "sign_inits");
	rv = sign_as_app(one, CKM_RSA_PKCS, msg, sizeof(msg), sig, &siglen);
	cr_assert_eq(rv, CKR_KEY_CHANGED, "rv 0x%lx", (unsigned long)rv);
	cr_assert_eq(shim_get(h, "sign_inits"), inits, "nothing was signed");
	shim_set(h, "find_one_as_two", 0);
	sign_verify(one, CKM_RSA_PKCS);
	sign_verify(two, CKM_RSA_PKCS);
	gw_seal_key_free(&one);
	gw_seal_key_free(&two);
	shim_reset(h);
}
