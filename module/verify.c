/*
 * Verification: C_VerifyInit/C_Verify/C_VerifyUpdate/C_VerifyFinal with
 * OpenSSL on the seal's public key as the `seals` reply gave it (RSA
 * modulus and exponent, EC parameters and point, Ed25519 point), for the
 * mechanisms the seal offers for signing. It needs no policy and no
 * login: nothing is sent to the gateway.
 */
#include "sgm.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/objects.h>
#include <openssl/param_build.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

struct sgm_verify_op {
	const struct sgm_mech *mech;
	const struct sgm_hash *pss_hash;
	CK_RSA_PKCS_PSS_PARAMS pss;
	EVP_PKEY *pkey;
	CK_ULONG sig_len;
	struct sgm_input in;
	bool multi;             /* C_VerifyUpdate was called */
};

void
sgm_verify_op_free(struct sgm_verify_op *op)
{
	if (op == NULL)
		return;
	sgm_input_clear(&op->in);
	EVP_PKEY_free(op->pkey);
	free(op);
}

/* ---- the public key ---- */

/* The point inside CKA_EC_POINT's DER OCTET STRING (PKCS#11 3.0 wants it
 * wrapped; a bare point is accepted too). Points into the seal's bytes. */
static bool
ec_point_raw(const struct sgm_bytes *b, const uint8_t **p, size_t *len)
{
	const unsigned char *q = b->p;
	ASN1_OCTET_STRING *os;
	bool ok = false;

	if (b->p == NULL || b->len == 0 || b->len > LONG_MAX)
		return false;
	os = d2i_ASN1_OCTET_STRING(NULL, &q, (long)b->len);
	if (os != NULL && q == b->p + b->len && ASN1_STRING_length(os) > 0) {
		/* The octets start after the DER header: same buffer. */
		*len = (size_t)ASN1_STRING_length(os);
		*p = b->p + b->len - *len;
		ok = true;
	}
	ASN1_OCTET_STRING_free(os);
	if (!ok) {
		*p = b->p;
		*len = b->len;
	}
	return true;
}

static EVP_PKEY *
pkey_from_params(const char *type, OSSL_PARAM_BLD *bld)
{
	OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);
	EVP_PKEY *pkey = NULL;

	if (params == NULL || ctx == NULL || EVP_PKEY_fromdata_init(ctx) != 1 ||
	    EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) != 1)
		pkey = NULL;
	EVP_PKEY_CTX_free(ctx);
	OSSL_PARAM_free(params);
	return pkey;
}

static EVP_PKEY *
seal_pkey(const struct sgm_seal *s)
{
	OSSL_PARAM_BLD *bld = NULL;
	BIGNUM *n = NULL, *e = NULL;
	ASN1_OBJECT *oid = NULL;
	EVP_PKEY *pkey = NULL;
	const unsigned char *q;
	const uint8_t *pt;
	size_t ptlen;
	const char *curve;

	switch (s->key_type) {
	case SGM_KEY_RSA:
		n = BN_bin2bn(s->modulus.p, (int)s->modulus.len, NULL);
		e = BN_bin2bn(s->pubexp.p, (int)s->pubexp.len, NULL);
		bld = OSSL_PARAM_BLD_new();
		if (n == NULL || e == NULL || bld == NULL ||
		    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) != 1 ||
		    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e) != 1)
			goto out;
		pkey = pkey_from_params("RSA", bld);
		break;
	case SGM_KEY_EC:
		q = s->ec_params.p;
		if (s->ec_params.p == NULL || s->ec_params.len > LONG_MAX)
			goto out;
		oid = d2i_ASN1_OBJECT(NULL, &q, (long)s->ec_params.len);
		curve = oid != NULL ? OBJ_nid2sn(OBJ_obj2nid(oid)) : NULL;
		bld = OSSL_PARAM_BLD_new();
		if (curve == NULL || bld == NULL || !ec_point_raw(&s->ec_point, &pt, &ptlen) ||
		    OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, curve, 0) != 1 ||
		    OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pt, ptlen) != 1)
			goto out;
		pkey = pkey_from_params("EC", bld);
		break;
	case SGM_KEY_ED25519:
		if (ec_point_raw(&s->ec_point, &pt, &ptlen))
			pkey = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, pt, ptlen);
		break;
	}
out:
	if (pkey == NULL)
		sgm_debug("verify: seal %s: its public key does not load", s->id);
	OSSL_PARAM_BLD_free(bld);
	ASN1_OBJECT_free(oid);
	BN_free(n);
	BN_free(e);
	return pkey;
}

/* ---- C_VerifyInit ---- */

CK_RV
sgm_verify_init(struct sgm_state *st, CK_SESSION_HANDLE h, CK_MECHANISM_PTR mech,
                CK_OBJECT_HANDLE key)
{
	const struct sgm_mech *m = sgm_mech_find(mech->mechanism);
	const struct sgm_seal *seal;
	struct sgm_session *s;
	struct sgm_verify_op *op = NULL;
	CK_OBJECT_CLASS cls = 0;
	CK_RV rv;

	/* The key is built under the lock: the seal cache may be replaced by
	 * a refresh in another thread. It is a parse, not a computation. */
	sgm_lock(st);
	rv = sgm_session_check_locked(st, h, &s);
	if (rv != CKR_OK)
		goto out;
	rv = CKR_OPERATION_ACTIVE;
	if (s->verify != NULL || s->vbusy)
		goto out;
	rv = CKR_KEY_HANDLE_INVALID;
	seal = sgm_object_lookup_locked(st, key, &cls);
	if (seal == NULL || cls == CKO_CERTIFICATE)
		goto out;
	/* The private key has no CKA_VERIFY; its public key does. */
	rv = CKR_KEY_FUNCTION_NOT_PERMITTED;
	if (cls != CKO_PUBLIC_KEY)
		goto out;
	rv = CKR_MECHANISM_INVALID;
	if (m == NULL)
		goto out;
	rv = CKR_KEY_TYPE_INCONSISTENT;
	if (m->key != seal->key_type)
		goto out;
	rv = CKR_MECHANISM_INVALID;
	if (!sgm_seal_allows(seal, m->type))
		goto out;

	rv = CKR_HOST_MEMORY;
	op = calloc(1, sizeof(*op));
	if (op == NULL)
		goto out;
	rv = sgm_check_params(m, seal, mech, &op->pss, &op->pss_hash);
	if (rv != CKR_OK)
		goto out;
	op->mech = m;
	op->sig_len = seal->sig_len;
	rv = sgm_input_init(&op->in, m, seal, op->pss_hash);
	if (rv != CKR_OK)
		goto out;
	/* Material the gateway sent but OpenSSL cannot load. */
	rv = CKR_FUNCTION_FAILED;
	op->pkey = seal_pkey(seal);
	if (op->pkey == NULL)
		goto out;
	s->verify = op;
	op = NULL;
	rv = CKR_OK;
out:
	sgm_unlock(st);
	sgm_verify_op_free(op);
	return rv;
}

/* ---- the op is taken out of its session while a thread works on it ---- */

static CK_RV
op_take(struct sgm_state *st, CK_SESSION_HANDLE h, struct sgm_session **sp,
        struct sgm_verify_op **opp)
{
	struct sgm_session *s;
	CK_RV rv;

	sgm_lock(st);
	rv = sgm_session_check_locked(st, h, &s);
	if (rv == CKR_OK && s->vbusy)
		rv = CKR_OPERATION_ACTIVE;
	else if (rv == CKR_OK && s->verify == NULL)
		rv = CKR_OPERATION_NOT_INITIALIZED;
	if (rv == CKR_OK) {
		*opp = s->verify;
		*sp = s;
		s->verify = NULL;
		s->vbusy = true;
	}
	sgm_unlock(st);
	return rv;
}

static void
op_put(struct sgm_state *st, struct sgm_session *s, struct sgm_verify_op *op, bool keep)
{
	sgm_lock(st);
	s->vbusy = false;
	if (s->closed) {
		if (!s->busy)
			sgm_session_free(s);    /* closed meanwhile: ours to free */
	} else if (keep && s->epoch == st->epoch) {
		s->verify = op;
		op = NULL;
	}
	sgm_unlock(st);
	sgm_verify_op_free(op);
}

/* ---- the check ---- */

/* r || s as the DER ECDSA-Sig-Value OpenSSL verifies; false when r or s
 * is zero (never a valid signature). */
static bool
ecdsa_der(const CK_BYTE *sig, CK_ULONG siglen, unsigned char **der, int *derlen)
{
	ECDSA_SIG *es = ECDSA_SIG_new();
	BIGNUM *r = BN_bin2bn(sig, (int)(siglen / 2), NULL);
	BIGNUM *s = BN_bin2bn(sig + siglen / 2, (int)(siglen / 2), NULL);
	bool ok = false;

	*der = NULL;
	if (es == NULL || r == NULL || s == NULL || BN_is_zero(r) || BN_is_zero(s))
		goto out;
	if (ECDSA_SIG_set0(es, r, s) != 1)
		goto out;
	r = s = NULL;
	*derlen = i2d_ECDSA_SIG(es, der);
	ok = *derlen > 0;
out:
	BN_free(r);
	BN_free(s);
	ECDSA_SIG_free(es);
	return ok;
}

static CK_RV
check_signature(struct sgm_verify_op *op, const CK_BYTE *sig, CK_ULONG siglen)
{
	uint8_t digest[EVP_MAX_MD_SIZE];
	unsigned int dlen = 0;
	const uint8_t *tbs = op->in.buf;
	size_t tbslen = op->in.len;
	EVP_PKEY_CTX *ctx = NULL;
	EVP_MD_CTX *mctx = NULL;
	unsigned char *der = NULL;
	int derlen = 0, ok = 0;
	CK_RV rv;

	/* A signature of another length cannot be one of this key's. */
	if (siglen != op->sig_len)
		return CKR_SIGNATURE_LEN_RANGE;
	rv = sgm_input_check_final(&op->in);
	if (rv != CKR_OK)
		return rv;

	rv = CKR_GENERAL_ERROR;
	if (op->mech->type == CKM_EDDSA) {
		mctx = EVP_MD_CTX_new();
		if (mctx == NULL || EVP_DigestVerifyInit(mctx, NULL, NULL, NULL, op->pkey) != 1)
			goto out;
		ok = EVP_DigestVerify(mctx, sig, siglen, tbs, tbslen);
		rv = ok == 1 ? CKR_OK : CKR_SIGNATURE_INVALID;
		goto out;
	}
	if (op->in.md != NULL) {
		if (EVP_DigestFinal_ex(op->in.md, digest, &dlen) != 1)
			goto out;
		tbs = digest;
		tbslen = dlen;
	}
	ctx = EVP_PKEY_CTX_new(op->pkey, NULL);
	if (ctx == NULL || EVP_PKEY_verify_init(ctx) != 1)
		goto out;
	if (op->mech->key == SGM_KEY_RSA) {
		const struct sgm_hash *h = op->mech->pss ? op->pss_hash : op->mech->hash;
		const EVP_MD *md = h != NULL ? EVP_get_digestbyname(h->md) : NULL;

		if (EVP_PKEY_CTX_set_rsa_padding(ctx, op->mech->pss ? RSA_PKCS1_PSS_PADDING
		                                                    : RSA_PKCS1_PADDING) != 1)
			goto out;
		/* CKM_RSA_PKCS has no md: OpenSSL compares the recovered block
		 * with the input (a DigestInfo) as it is. */
		if (md != NULL && EVP_PKEY_CTX_set_signature_md(ctx, md) != 1)
			goto out;
		if (op->mech->pss &&
		    (EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, md) != 1 ||
		     EVP_PKEY_CTX_set_rsa_pss_saltlen(ctx, (int)op->pss.sLen) != 1))
			goto out;
		ok = EVP_PKEY_verify(ctx, sig, siglen, tbs, tbslen);
	} else {
		/* ECDSA over the digest, or the (truncated) CKM_ECDSA input. */
		if (ecdsa_der(sig, siglen, &der, &derlen))
			ok = EVP_PKEY_verify(ctx, der, (size_t)derlen, tbs, tbslen);
	}
	/* 0 is a wrong signature, < 0 one OpenSSL cannot even parse (say an
	 * RSA value past the modulus): both are invalid signatures. */
	rv = ok == 1 ? CKR_OK : CKR_SIGNATURE_INVALID;
out:
	OPENSSL_cleanse(digest, sizeof(digest));
	OPENSSL_free(der);
	EVP_PKEY_CTX_free(ctx);
	EVP_MD_CTX_free(mctx);
	return rv;
}

CK_RV
sgm_verify(struct sgm_state *st, CK_SESSION_HANDLE h, bool final, const CK_BYTE *data,
           CK_ULONG len, const CK_BYTE *sig, CK_ULONG siglen)
{
	struct sgm_session *s = NULL;
	struct sgm_verify_op *op = NULL;
	CK_RV rv;

	rv = op_take(st, h, &s, &op);
	if (rv != CKR_OK)
		return rv;
	/* Every outcome ends the operation (PKCS#11: there is no length
	 * query in verification). */
	rv = CKR_ARGUMENTS_BAD;
	if (sig == NULL || (!final && data == NULL && len > 0))
		goto out;
	rv = CKR_OPERATION_ACTIVE;
	if (!final && op->multi)
		goto out;                       /* C_Verify inside a multi-part op */
	if (!final) {
		rv = sgm_input_feed(&op->in, data, len);
		if (rv != CKR_OK)
			goto out;
	}
	rv = check_signature(op, sig, siglen);
out:
	op_put(st, s, op, false);
	return rv;
}

CK_RV
sgm_verify_update(struct sgm_state *st, CK_SESSION_HANDLE h, const CK_BYTE *part, CK_ULONG len)
{
	struct sgm_session *s = NULL;
	struct sgm_verify_op *op = NULL;
	CK_RV rv;

	rv = op_take(st, h, &s, &op);
	if (rv != CKR_OK)
		return rv;
	if (part == NULL && len > 0) {
		rv = CKR_ARGUMENTS_BAD;
	} else {
		op->multi = true;
		rv = sgm_input_feed(&op->in, part, len);
	}
	/* An error ends the operation, as in signing. */
	op_put(st, s, op, rv == CKR_OK);
	return rv;
}
