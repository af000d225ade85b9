/*
 * The fake gateway behind the module tests (see fakegw.h). It follows
 * docs/protocol.md: framing and replies through gateway/protocol.c, the
 * error table's codes and rv values, the sign table's input shapes (and
 * the digest check when the whole data is shown), so the real sealgated
 * can take its place in the integration suite.
 */
#include "fakegw.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/objects.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <p11-kit/pkcs11.h>

#include "protocol.h"

#define MAX_CONNS 64
#define MAX_SESSIONS 64

struct fake_seal {
	const char *id, *label, *kind, *key_type;
	EVP_PKEY *pkey;
	X509 *cert;
	unsigned char ckaid;
	CK_MECHANISM_TYPE mechs[8];
	size_t n_mechs;
	int64_t uses_left, quota_left;
};

struct conn {
	pthread_t thread;
	int fd;
	bool used;
	bool done;          /* thread finished: slot reusable after a join */
	struct fakegw *fg;
};

struct fakegw {
	char dir[64], path[128];
	char instance[64];
	struct fake_seal seals[4];
	size_t n_seals;

	pthread_mutex_t lock;
	int lfd, wake[2];
	bool running;
	pthread_t accept_thread;
	struct conn conns[MAX_CONNS];

	bool token_present, deny, no_account;
	uint8_t sessions[MAX_SESSIONS][SG_SESSION_TOKEN_LEN];
	size_t n_sessions;
	unsigned signs, accepts, logouts, hellos, logins, requests;
	struct fakegw_last_sign last;
	char last_user[64];
};

/* ---- keys and certificates ---- */

static X509 *
self_signed(EVP_PKEY *k, const char *cn, long serial)
{
	X509 *x = X509_new();
	X509_NAME *n = X509_NAME_new();

	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), serial);
	X509_NAME_add_entry_by_txt(n, "O", MBSTRING_UTF8, (const unsigned char *)"ACME", -1, -1, 0);
	X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1, -1, 0);
	X509_set_subject_name(x, n);
	X509_set_issuer_name(x, n);
	X509_gmtime_adj(X509_getm_notBefore(x), 0);
	X509_gmtime_adj(X509_getm_notAfter(x), 3600L * 24 * 365);
	X509_set_pubkey(x, k);
	/* Ed25519 signs without a separate digest. */
	X509_sign(x, k, EVP_PKEY_id(k) == EVP_PKEY_ED25519 ? NULL : EVP_sha256());
	X509_NAME_free(n);
	return x;
}

static void
add_seal(struct fakegw *fg, const char *id, const char *label, const char *kind,
         const char *kt, EVP_PKEY *k, const CK_MECHANISM_TYPE *mechs, size_t n,
         int64_t uses, int64_t quota)
{
	struct fake_seal *s = &fg->seals[fg->n_seals];

	s->id = id;
	s->label = label;
	s->kind = kind;
	s->key_type = kt;
	s->pkey = k;
	s->cert = self_signed(k, label, (long)fg->n_seals + 100);
	s->ckaid = (unsigned char)(0xA0 + fg->n_seals);
	memcpy(s->mechs, mechs, n * sizeof(*mechs));
	s->n_mechs = n;
	s->uses_left = uses;
	s->quota_left = quota;
	fg->n_seals++;
}

struct fakegw *
fakegw_new(void)
{
	static const CK_MECHANISM_TYPE rsa[] = {
		CKM_RSA_PKCS, CKM_SHA256_RSA_PKCS, CKM_SHA384_RSA_PKCS, CKM_SHA512_RSA_PKCS,
		CKM_RSA_PKCS_PSS, CKM_SHA256_RSA_PKCS_PSS, CKM_SHA384_RSA_PKCS_PSS,
		CKM_SHA512_RSA_PKCS_PSS,
	};
	static const CK_MECHANISM_TYPE ec[] = {
		CKM_ECDSA, CKM_ECDSA_SHA256, CKM_ECDSA_SHA384, CKM_ECDSA_SHA512,
	};
	static const CK_MECHANISM_TYPE ed[] = { CKM_EDDSA };
	struct fakegw *fg = calloc(1, sizeof(*fg));

	if (fg == NULL)
		return NULL;
	snprintf(fg->dir, sizeof(fg->dir), "/tmp/sgm-test-XXXXXX");
	if (mkdtemp(fg->dir) == NULL) {
		free(fg);
		return NULL;
	}
	snprintf(fg->path, sizeof(fg->path), "%s/gw.sock", fg->dir);
	pthread_mutex_init(&fg->lock, NULL);
	fg->lfd = -1;
	fg->wake[0] = fg->wake[1] = -1;
	fg->token_present = true;
	add_seal(fg, "contract", "Contract Seal", "contract", "rsa",
	         EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048), rsa, 8, 5, 10);
	add_seal(fg, "official", "Official Seal", "official", "ec",
	         EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256"), ec, 4, -1, -1);
	add_seal(fg, "finance", "财务专用章", "finance", "ed25519",
	         EVP_PKEY_Q_keygen(NULL, NULL, "ED25519"), ed, 1, 3, -1);
	add_seal(fg, "invoice", "Invoice Seal", "invoice", "ec",
	         EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256"), ec, 1, -1, 7);
	return fg;
}

void
fakegw_free(struct fakegw *fg)
{
	if (fg == NULL)
		return;
	fakegw_stop(fg);
	for (size_t i = 0; i < fg->n_seals; i++) {
		EVP_PKEY_free(fg->seals[i].pkey);
		X509_free(fg->seals[i].cert);
	}
	rmdir(fg->dir);
	pthread_mutex_destroy(&fg->lock);
	free(fg);
}

const char *
fakegw_path(const struct fakegw *fg)
{
	return fg->path;
}

static struct fake_seal *
seal_find(struct fakegw *fg, const char *id)
{
	for (size_t i = 0; i < fg->n_seals; i++)
		if (strcmp(fg->seals[i].id, id) == 0)
			return &fg->seals[i];
	return NULL;
}

EVP_PKEY *
fakegw_key(struct fakegw *fg, const char *id)
{
	struct fake_seal *s = seal_find(fg, id);
	return s ? s->pkey : NULL;
}

X509 *
fakegw_cert(struct fakegw *fg, const char *id)
{
	struct fake_seal *s = seal_find(fg, id);
	return s ? s->cert : NULL;
}

/* ---- knobs ---- */

void
fakegw_set_token_present(struct fakegw *fg, bool present)
{
	pthread_mutex_lock(&fg->lock);
	fg->token_present = present;
	pthread_mutex_unlock(&fg->lock);
}

void
fakegw_set_no_account(struct fakegw *fg, bool none)
{
	pthread_mutex_lock(&fg->lock);
	fg->no_account = none;
	pthread_mutex_unlock(&fg->lock);
}

void
fakegw_set_deny(struct fakegw *fg, bool deny)
{
	pthread_mutex_lock(&fg->lock);
	fg->deny = deny;
	pthread_mutex_unlock(&fg->lock);
}

void
fakegw_expire_sessions(struct fakegw *fg)
{
	pthread_mutex_lock(&fg->lock);
	fg->n_sessions = 0;
	pthread_mutex_unlock(&fg->lock);
}

#define COUNTER(name, field)                          \
	unsigned name(struct fakegw *fg)              \
	{                                             \
		unsigned v;                           \
		pthread_mutex_lock(&fg->lock);        \
		v = fg->field;                        \
		pthread_mutex_unlock(&fg->lock);      \
		return v;                             \
	}
COUNTER(fakegw_sign_count, signs)
COUNTER(fakegw_accept_count, accepts)
COUNTER(fakegw_logout_count, logouts)
COUNTER(fakegw_hello_count, hellos)
COUNTER(fakegw_login_count, logins)
COUNTER(fakegw_request_count, requests)

size_t
fakegw_live_sessions(struct fakegw *fg)
{
	size_t n;

	pthread_mutex_lock(&fg->lock);
	n = fg->n_sessions;
	pthread_mutex_unlock(&fg->lock);
	return n;
}

void
fakegw_last_sign(struct fakegw *fg, struct fakegw_last_sign *out)
{
	pthread_mutex_lock(&fg->lock);
	*out = fg->last;
	pthread_mutex_unlock(&fg->lock);
}

void
fakegw_last_user(struct fakegw *fg, char *buf, size_t len)
{
	pthread_mutex_lock(&fg->lock);
	snprintf(buf, len, "%s", fg->last_user);
	pthread_mutex_unlock(&fg->lock);
}

/* ---- requests ---- */

/* Sets key to the DER that i2d wrote into *der (then freed). */
static int
set_der(json_t *o, const char *key, int len, unsigned char **der)
{
	int rc = len > 0 ? sg_set_bytes(o, key, *der, (size_t)len) : -1;
	OPENSSL_free(*der);
	*der = NULL;
	return rc;
}

static int
set_bn(json_t *o, const char *key, EVP_PKEY *k, const char *param)
{
	BIGNUM *bn = NULL;
	unsigned char buf[1024];
	int n, rc = -1;

	if (EVP_PKEY_get_bn_param(k, param, &bn) == 1) {
		n = BN_bn2bin(bn, buf);
		rc = sg_set_bytes(o, key, buf, (size_t)n);
	}
	BN_free(bn);
	return rc;
}

static json_t *
seal_json(const struct fake_seal *s)
{
	json_t *o = json_object(), *mechs = json_array();
	unsigned char *der = NULL, pt[256];
	size_t ptlen = 0;
	ASN1_OCTET_STRING *os;
	int n;

	json_object_set_new(o, "id", json_string(s->id));
	json_object_set_new(o, "label", json_string(s->label));
	json_object_set_new(o, "kind", json_string(s->kind));
	sg_set_bytes(o, "ckaid", &s->ckaid, 1);
	json_object_set_new(o, "key_type", json_string(s->key_type));
	json_object_set_new(o, "bits", json_integer(EVP_PKEY_get_bits(s->pkey)));
	n = i2d_X509(s->cert, &der);
	set_der(o, "cert", n, &der);
	n = i2d_X509_NAME(X509_get_subject_name(s->cert), &der);
	set_der(o, "subject", n, &der);
	n = i2d_X509_NAME(X509_get_issuer_name(s->cert), &der);
	set_der(o, "issuer", n, &der);
	n = i2d_ASN1_INTEGER(X509_get_serialNumber(s->cert), &der);
	set_der(o, "serial", n, &der);
	if (strcmp(s->key_type, "rsa") == 0) {
		set_bn(o, "modulus", s->pkey, OSSL_PKEY_PARAM_RSA_N);
		set_bn(o, "public_exponent", s->pkey, OSSL_PKEY_PARAM_RSA_E);
	} else {
		int nid = strcmp(s->key_type, "ec") == 0 ? NID_X9_62_prime256v1 : NID_ED25519;
		n = i2d_ASN1_OBJECT(OBJ_nid2obj(nid), &der);
		set_der(o, "ec_params", n, &der);
		if (nid == NID_ED25519) {
			ptlen = sizeof(pt);
			EVP_PKEY_get_raw_public_key(s->pkey, pt, &ptlen);
		} else {
			EVP_PKEY_get_octet_string_param(s->pkey, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY,
			                                pt, sizeof(pt), &ptlen);
		}
		os = ASN1_OCTET_STRING_new();
		ASN1_OCTET_STRING_set(os, pt, (int)ptlen);
		n = i2d_ASN1_OCTET_STRING(os, &der);
		set_der(o, "ec_point", n, &der);
		ASN1_OCTET_STRING_free(os);
	}
	for (size_t i = 0; i < s->n_mechs; i++)
		json_array_append_new(mechs, json_integer((json_int_t)s->mechs[i]));
	json_object_set_new(o, "mechanisms", mechs);
	json_object_set_new(o, "available", json_true());
	json_object_set_new(o, "uses_left", json_integer(s->uses_left));
	json_object_set_new(o, "quota_left", json_integer(s->quota_left));
	return o;
}

/* Caller holds fg->lock. */
static bool
session_valid(struct fakegw *fg, const json_t *req)
{
	uint8_t *tok = NULL;
	size_t len = 0;
	bool ok = false;
	char err[64];

	if (sg_get_bytes(req, "session", true, &tok, &len, 64, err, sizeof(err)) < 0 ||
	    len != SG_SESSION_TOKEN_LEN)
		goto out;
	for (size_t i = 0; i < fg->n_sessions && !ok; i++)
		ok = memcmp(fg->sessions[i], tok, len) == 0;
out:
	free(tok);
	return ok;
}

static const EVP_MD *
md_for(CK_MECHANISM_TYPE m, size_t *len)
{
	switch (m) {
	case CKM_SHA256: case CKM_SHA256_RSA_PKCS: case CKM_SHA256_RSA_PKCS_PSS:
	case CKM_ECDSA_SHA256:
		*len = 32;
		return EVP_sha256();
	case CKM_SHA384: case CKM_SHA384_RSA_PKCS: case CKM_SHA384_RSA_PKCS_PSS:
	case CKM_ECDSA_SHA384:
		*len = 48;
		return EVP_sha384();
	case CKM_SHA512: case CKM_SHA512_RSA_PKCS: case CKM_SHA512_RSA_PKCS_PSS:
	case CKM_ECDSA_SHA512:
		*len = 64;
		return EVP_sha512();
	}
	*len = 0;
	return NULL;
}

/* Signs the token input (per the sign table) the way the token would. */
static int
token_sign(EVP_PKEY *k, CK_MECHANISM_TYPE mech, const EVP_MD *pss_md, int64_t slen,
           const uint8_t *in, size_t inlen, uint8_t *sig, size_t *siglen)
{
	EVP_PKEY_CTX *ctx = NULL;
	EVP_MD_CTX *mctx = NULL;
	ECDSA_SIG *es = NULL;
	uint8_t der[256];
	const uint8_t *p = der;
	size_t derlen = sizeof(der), dlen;
	const EVP_MD *md = md_for(mech, &dlen);
	int rc = -1;

	if (mech == CKM_EDDSA) {
		mctx = EVP_MD_CTX_new();
		if (EVP_DigestSignInit(mctx, NULL, NULL, NULL, k) == 1 &&
		    EVP_DigestSign(mctx, sig, siglen, in, inlen) == 1)
			rc = 0;
		goto out;
	}
	ctx = EVP_PKEY_CTX_new(k, NULL);
	if (EVP_PKEY_sign_init(ctx) != 1)
		goto out;
	if (EVP_PKEY_get_id(k) == EVP_PKEY_RSA) {
		bool pss = pss_md != NULL;
		if (EVP_PKEY_CTX_set_rsa_padding(ctx, pss ? RSA_PKCS1_PSS_PADDING : RSA_PKCS1_PADDING) != 1)
			goto out;
		if (pss && (EVP_PKEY_CTX_set_signature_md(ctx, pss_md) != 1 ||
		            EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, pss_md) != 1 ||
		            EVP_PKEY_CTX_set_rsa_pss_saltlen(ctx, (int)slen) != 1))
			goto out;
		/* CKM_SHA*_RSA_PKCS: the token signs DigestInfo(digest). */
		if (!pss && md != NULL && EVP_PKEY_CTX_set_signature_md(ctx, md) != 1)
			goto out;
		if (EVP_PKEY_sign(ctx, sig, siglen, in, inlen) != 1)
			goto out;
		rc = 0;
		goto out;
	}
	/* ECDSA: PKCS#11 wants r || s, each the field size. */
	if (EVP_PKEY_sign(ctx, der, &derlen, in, inlen) != 1)
		goto out;
	es = d2i_ECDSA_SIG(NULL, &p, (long)derlen);
	if (es == NULL)
		goto out;
	BN_bn2binpad(ECDSA_SIG_get0_r(es), sig, 32);
	BN_bn2binpad(ECDSA_SIG_get0_s(es), sig + 32, 32);
	*siglen = 64;
	rc = 0;
out:
	ECDSA_SIG_free(es);
	EVP_PKEY_CTX_free(ctx);
	EVP_MD_CTX_free(mctx);
	return rc;
}

static json_t *
do_sign(struct fakegw *fg, const json_t *req)
{
	const char *sid = NULL;
	struct fake_seal *s;
	int64_t mech = -1, data_len = -1, phash = 0, pmgf = 0, slen = 0;
	uint8_t *digest = NULL, *data = NULL, sig[1024], calc[64];
	size_t dglen = 0, datalen = 0, siglen = sizeof(sig), hlen = 0;
	const EVP_MD *md, *pss_md = NULL;
	json_t *pss, *reply = NULL;
	const uint8_t *in;
	size_t inlen;
	bool allowed = false;
	char err[128];

	pthread_mutex_lock(&fg->lock);
	if (!session_valid(fg, req)) {
		pthread_mutex_unlock(&fg->lock);
		return sg_reply_error(CKR_USER_NOT_LOGGED_IN, "not_logged_in", "no such session");
	}
	if (fg->deny) {
		pthread_mutex_unlock(&fg->lock);
		return sg_reply_error(CKR_FUNCTION_REJECTED, "denied", "no approval for this use");
	}
	pthread_mutex_unlock(&fg->lock);

	if (sg_get_str(req, "seal", true, &sid, 64, err, sizeof(err)) < 0 ||
	    sg_get_int(req, "mechanism", true, 0, INT64_MAX, &mech, err, sizeof(err)) < 0 ||
	    sg_get_int(req, "data_len", true, 0, INT64_MAX, &data_len, err, sizeof(err)) < 0 ||
	    sg_get_bytes(req, "digest", false, &digest, &dglen, 64, err, sizeof(err)) < 0 ||
	    sg_get_bytes(req, "data", true, &data, &datalen, SG_EDDSA_DATA_MAX, err, sizeof(err)) < 0) {
		reply = sg_reply_error(CKR_ARGUMENTS_BAD, "bad_request", "%s", err);
		goto out;
	}
	s = seal_find(fg, sid);
	if (s == NULL) {
		reply = sg_reply_error(CKR_KEY_HANDLE_INVALID, "no_seal", "no seal %s", sid);
		goto out;
	}
	for (size_t i = 0; i < s->n_mechs; i++)
		allowed |= s->mechs[i] == (CK_MECHANISM_TYPE)mech;
	if (!allowed) {
		reply = sg_reply_error(CKR_MECHANISM_INVALID, "mechanism", "not for this seal");
		goto out;
	}
	pthread_mutex_lock(&fg->lock);
	fg->last.had_digest = digest != NULL;
	fg->last.data_size = datalen;
	fg->last.data_len = data_len;
	snprintf(fg->last.seal, sizeof(fg->last.seal), "%s", sid);
	pthread_mutex_unlock(&fg->lock);

	pss = json_object_get(req, "pss");
	if (mech == CKM_RSA_PKCS_PSS || mech == CKM_SHA256_RSA_PKCS_PSS ||
	    mech == CKM_SHA384_RSA_PKCS_PSS || mech == CKM_SHA512_RSA_PKCS_PSS) {
		if (!json_is_object(pss) ||
		    sg_get_int(pss, "hash", true, 0, INT64_MAX, &phash, err, sizeof(err)) < 0 ||
		    sg_get_int(pss, "mgf", true, 0, INT64_MAX, &pmgf, err, sizeof(err)) < 0 ||
		    sg_get_int(pss, "slen", true, 0, 1024, &slen, err, sizeof(err)) < 0) {
			reply = sg_reply_error(CKR_ARGUMENTS_BAD, "bad_request", "pss");
			goto out;
		}
		pss_md = md_for((CK_MECHANISM_TYPE)phash, &hlen);
	}
	md = md_for((CK_MECHANISM_TYPE)mech, &hlen);
	if (md != NULL) {
		/* Hash-and-sign: digest + data prefix; checked when whole. */
		if (digest == NULL || dglen != hlen || datalen > SG_SIGN_DATA_MAX ||
		    (int64_t)datalen > data_len) {
			reply = sg_reply_error(CKR_DATA_INVALID, "bad_data", "digest or prefix");
			goto out;
		}
		if (data_len <= (int64_t)SG_SIGN_DATA_MAX) {
			unsigned int n = 0;
			if ((int64_t)datalen != data_len ||
			    EVP_Digest(data, datalen, calc, &n, md, NULL) != 1 ||
			    memcmp(calc, digest, hlen) != 0) {
				reply = sg_reply_error(CKR_DATA_INVALID, "bad_data", "digest mismatch");
				goto out;
			}
		}
		in = digest;
		inlen = dglen;
	} else {
		if ((int64_t)datalen != data_len || digest != NULL) {
			reply = sg_reply_error(CKR_DATA_INVALID, "bad_data", "raw data");
			goto out;
		}
		if (mech == CKM_RSA_PKCS && datalen > (size_t)EVP_PKEY_get_size(s->pkey) - 11) {
			reply = sg_reply_error(CKR_DATA_LEN_RANGE, "bad_data", "too long");
			goto out;
		}
		in = data;
		inlen = datalen;
	}
	if (token_sign(s->pkey, (CK_MECHANISM_TYPE)mech, pss_md, slen, in, inlen, sig, &siglen) < 0) {
		reply = sg_reply_error(CKR_GENERAL_ERROR, "internal", "sign failed");
		goto out;
	}
	pthread_mutex_lock(&fg->lock);
	fg->signs++;
	pthread_mutex_unlock(&fg->lock);
	reply = sg_reply_ok();
	sg_set_bytes(reply, "signature", sig, siglen);
	json_object_set_new(reply, "record", json_integer(fakegw_sign_count(fg)));
out:
	free(digest);
	free(data);
	return reply;
}

static json_t *
handle(struct fakegw *fg, const json_t *req)
{
	const char *op = NULL, *pin = NULL, *user = NULL;
	char err[128];
	json_t *reply, *arr;

	if (sg_get_str(req, "op", true, &op, 32, err, sizeof(err)) < 0)
		return sg_reply_error(CKR_ARGUMENTS_BAD, "bad_request", "%s", err);
	if (strcmp(op, SG_OP_HELLO) == 0) {
		reply = sg_reply_ok();
		pthread_mutex_lock(&fg->lock);
		fg->hellos++;
		json_object_set_new(reply, "instance", json_string(fg->instance));
		json_object_set_new(reply, "serial", json_stringn(fg->instance,
		                    strlen(fg->instance) > 16 ? 16 : strlen(fg->instance)));
		json_object_set_new(reply, "token_present", json_boolean(fg->token_present));
		pthread_mutex_unlock(&fg->lock);
		json_object_set_new(reply, "version", json_string("0.1.0"));
		json_object_set_new(reply, "token_label", json_string(FAKE_LABEL));
		json_object_set_new(reply, "manufacturer", json_string("sealgate"));
		json_object_set_new(reply, "model", json_string("sealgated"));
		json_object_set_new(reply, "session_timeout", json_integer(900));
		return reply;
	}
	if (strcmp(op, SG_OP_LOGIN) == 0) {
		if (sg_get_str(req, "pin", true, &pin, SG_PIN_MAX, err, sizeof(err)) < 0 ||
		    sg_get_str(req, "user", false, &user, SG_NAME_MAX, err, sizeof(err)) < 0)
			return sg_reply_error(CKR_ARGUMENTS_BAD, "bad_request", "%s", err);
		pthread_mutex_lock(&fg->lock);
		fg->logins++;
		snprintf(fg->last_user, sizeof(fg->last_user), "%s", user ? user : "");
		/* The gateway's answers when no account may be used (policy.c
		 * gw_policy_resolve_account). */
		if ((user == NULL && fg->no_account) || (user != NULL && strcmp(user, "stranger") == 0)) {
			pthread_mutex_unlock(&fg->lock);
			if (user == NULL)
				return sg_reply_error(CKR_USER_TYPE_INVALID, "not_allowed",
				                      "OS login 'tester' is not a sealgate account");
			return sg_reply_error(CKR_USER_TYPE_INVALID, "not_allowed",
			                      "there is no sealgate account '%s'", user);
		}
		if (strcmp(pin, FAKE_PIN) != 0 || fg->n_sessions == MAX_SESSIONS) {
			pthread_mutex_unlock(&fg->lock);
			return sg_reply_error(CKR_PIN_INCORRECT, "bad_pin", "wrong password");
		}
		RAND_bytes(fg->sessions[fg->n_sessions], SG_SESSION_TOKEN_LEN);
		reply = sg_reply_ok();
		sg_set_bytes(reply, "session", fg->sessions[fg->n_sessions], SG_SESSION_TOKEN_LEN);
		fg->n_sessions++;
		pthread_mutex_unlock(&fg->lock);
		json_object_set_new(reply, "user", json_string(user ? user : "alice"));
		json_object_set_new(reply, "name", json_string("Alice"));
		json_object_set_new(reply, "roles", json_pack("[s]", "employee"));
		return reply;
	}
	if (strcmp(op, SG_OP_LOGOUT) == 0) {
		uint8_t *tok = NULL;
		size_t len = 0;
		if (sg_get_bytes(req, "session", true, &tok, &len, 64, err, sizeof(err)) < 0)
			return sg_reply_error(CKR_ARGUMENTS_BAD, "bad_request", "%s", err);
		pthread_mutex_lock(&fg->lock);
		fg->logouts++;
		for (size_t i = 0; i < fg->n_sessions; i++) {
			if (len == SG_SESSION_TOKEN_LEN && memcmp(fg->sessions[i], tok, len) == 0) {
				memmove(fg->sessions[i], fg->sessions[fg->n_sessions - 1],
				        SG_SESSION_TOKEN_LEN);
				fg->n_sessions--;
				break;
			}
		}
		pthread_mutex_unlock(&fg->lock);
		free(tok);
		return sg_reply_ok();
	}
	if (strcmp(op, SG_OP_SEALS) == 0) {
		bool none;
		if (sg_get_str(req, "user", false, &user, SG_NAME_MAX, err, sizeof(err)) < 0)
			return sg_reply_error(CKR_ARGUMENTS_BAD, "bad_request", "%s", err);
		pthread_mutex_lock(&fg->lock);
		none = (user == NULL && fg->no_account) || (user != NULL && strcmp(user, "stranger") == 0);
		pthread_mutex_unlock(&fg->lock);
		if (none)
			return sg_reply_error(CKR_USER_TYPE_INVALID, "not_allowed",
			                      "OS login 'tester' is not a sealgate account");
		if (json_object_get(req, "session") != NULL) {
			bool ok;
			pthread_mutex_lock(&fg->lock);
			ok = session_valid(fg, req);
			pthread_mutex_unlock(&fg->lock);
			if (!ok)
				return sg_reply_error(CKR_USER_NOT_LOGGED_IN, "not_logged_in",
				                      "session expired");
		}
		reply = sg_reply_ok();
		arr = json_array();
		for (size_t i = 0; i < fg->n_seals; i++)
			json_array_append_new(arr, seal_json(&fg->seals[i]));
		json_object_set_new(reply, "user", json_string("alice"));
		json_object_set_new(reply, "seals", arr);
		return reply;
	}
	if (strcmp(op, SG_OP_SIGN) == 0)
		return do_sign(fg, req);
	return sg_reply_error(CKR_FUNCTION_NOT_SUPPORTED, "unknown_op", "unknown op %s", op);
}

static void *
conn_main(void *arg)
{
	struct conn *c = arg;
	json_t *req, *reply;
	char err[128];

	for (;;) {
		int rc = sg_msg_read(c->fd, &req, err, sizeof(err));
		if (rc == -EPROTO) {
			reply = sg_reply_error(CKR_ARGUMENTS_BAD, "bad_request", "%s", err);
			sg_msg_write(c->fd, reply);
			json_decref(reply);
			break;
		}
		if (rc < 0)
			break;
		pthread_mutex_lock(&c->fg->lock);
		c->fg->requests++;
		pthread_mutex_unlock(&c->fg->lock);
		reply = handle(c->fg, req);
		json_decref(req);
		rc = reply ? sg_msg_write(c->fd, reply) : -1;
		json_decref(reply);
		if (rc < 0)
			break;
	}
	shutdown(c->fd, SHUT_RDWR);
	pthread_mutex_lock(&c->fg->lock);
	c->done = true;
	pthread_mutex_unlock(&c->fg->lock);
	return NULL;
}

static void *
accept_main(void *arg)
{
	struct fakegw *fg = arg;
	struct pollfd p[2] = { { .fd = fg->lfd, .events = POLLIN },
	                       { .fd = fg->wake[0], .events = POLLIN } };

	for (;;) {
		int fd;
		if (poll(p, 2, -1) < 0)
			continue;
		if (p[1].revents)
			break;
		fd = accept4(fg->lfd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0)
			continue;
		pthread_mutex_lock(&fg->lock);
		fg->accepts++;
		for (size_t i = 0; i < MAX_CONNS; i++) {
			struct conn *c = &fg->conns[i];
			if (c->used && !c->done)
				continue;
			if (c->used) {
				pthread_join(c->thread, NULL);
				close(c->fd);
			}
			c->used = true;
			c->done = false;
			c->fd = fd;
			c->fg = fg;
			pthread_create(&c->thread, NULL, conn_main, c);
			fd = -1;
			break;
		}
		pthread_mutex_unlock(&fg->lock);
		if (fd >= 0)
			close(fd);
	}
	return NULL;
}

int
fakegw_start(struct fakegw *fg, const char *instance)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };

	snprintf(fg->instance, sizeof(fg->instance), "%s", instance);
	unlink(fg->path);
	if (strlen(fg->path) >= sizeof(sun.sun_path))
		return -1;
	memcpy(sun.sun_path, fg->path, strlen(fg->path) + 1);
	fg->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fg->lfd < 0 || bind(fg->lfd, (struct sockaddr *)&sun, sizeof(sun)) < 0 ||
	    listen(fg->lfd, 64) < 0 || pipe2(fg->wake, O_CLOEXEC) < 0)
		return -1;
	fg->n_sessions = 0;   /* a new run knows no logins */
	fg->running = true;
	return pthread_create(&fg->accept_thread, NULL, accept_main, fg) == 0 ? 0 : -1;
}

void
fakegw_stop(struct fakegw *fg)
{
	if (!fg->running)
		return;
	(void)!write(fg->wake[1], "x", 1);
	pthread_join(fg->accept_thread, NULL);
	close(fg->lfd);
	close(fg->wake[0]);
	close(fg->wake[1]);
	unlink(fg->path);
	fg->lfd = fg->wake[0] = fg->wake[1] = -1;
	for (size_t i = 0; i < MAX_CONNS; i++) {
		struct conn *c = &fg->conns[i];
		if (!c->used)
			continue;
		shutdown(c->fd, SHUT_RDWR);
		pthread_join(c->thread, NULL);
		close(c->fd);
		c->used = c->done = false;
	}
	fg->running = false;
}
