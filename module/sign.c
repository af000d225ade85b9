/*
 * Signing: the mechanism table, parameter checks, the input of an
 * operation (hashed in the module for the hash-and-sign mechanisms with
 * OpenSSL EVP, bounded buffers for the raw ones; verify.c shares both),
 * single- and multi-part operations and the one `sign` round trip per
 * signature. Size queries and too-small buffers are answered here and
 * never reach the gateway, so they cannot consume an approval or a quota.
 */
#include "sgm.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

static const struct sgm_hash sgm_hashes[] = {
	{ CKM_SHA256, "SHA256", 32, CKG_MGF1_SHA256 },
	{ CKM_SHA384, "SHA384", 48, CKG_MGF1_SHA384 },
	{ CKM_SHA512, "SHA512", 64, CKG_MGF1_SHA512 },
};
#define H256 (&sgm_hashes[0])
#define H384 (&sgm_hashes[1])
#define H512 (&sgm_hashes[2])

#define SGM_ECDSA_IN_MAX 64             /* the gateway's bound on a raw ECDSA input */

/* Signing is the gateway's (CKF_HW: the key is in hardware behind it);
 * verification is done here on the public key (verify.c). */
#define RSA_FLAGS (CKF_SIGN | CKF_VERIFY | CKF_HW)
#define EC_FLAGS  (CKF_SIGN | CKF_VERIFY | CKF_HW | CKF_EC_F_P | CKF_EC_NAMEDCURVE | \
                   CKF_EC_UNCOMPRESS)

static const struct sgm_mech sgm_mechs[] = {
	{ CKM_RSA_PKCS,            SGM_KEY_RSA,     NULL, false, 1024, 8192, RSA_FLAGS },
	{ CKM_SHA256_RSA_PKCS,     SGM_KEY_RSA,     H256, false, 1024, 8192, RSA_FLAGS },
	{ CKM_SHA384_RSA_PKCS,     SGM_KEY_RSA,     H384, false, 1024, 8192, RSA_FLAGS },
	{ CKM_SHA512_RSA_PKCS,     SGM_KEY_RSA,     H512, false, 1024, 8192, RSA_FLAGS },
	{ CKM_RSA_PKCS_PSS,        SGM_KEY_RSA,     NULL, true,  1024, 8192, RSA_FLAGS },
	{ CKM_SHA256_RSA_PKCS_PSS, SGM_KEY_RSA,     H256, true,  1024, 8192, RSA_FLAGS },
	{ CKM_SHA384_RSA_PKCS_PSS, SGM_KEY_RSA,     H384, true,  1024, 8192, RSA_FLAGS },
	{ CKM_SHA512_RSA_PKCS_PSS, SGM_KEY_RSA,     H512, true,  1024, 8192, RSA_FLAGS },
	{ CKM_ECDSA,               SGM_KEY_EC,      NULL, false, 256,  521,  EC_FLAGS },
	{ CKM_ECDSA_SHA256,        SGM_KEY_EC,      H256, false, 256,  521,  EC_FLAGS },
	{ CKM_ECDSA_SHA384,        SGM_KEY_EC,      H384, false, 256,  521,  EC_FLAGS },
	{ CKM_ECDSA_SHA512,        SGM_KEY_EC,      H512, false, 256,  521,  EC_FLAGS },
	{ CKM_EDDSA,               SGM_KEY_ED25519, NULL, false, 255,  255,
	  CKF_SIGN | CKF_VERIFY | CKF_HW },
};
#define SGM_N_MECHS (sizeof(sgm_mechs) / sizeof(sgm_mechs[0]))

struct sgm_sign_op {
	const struct sgm_mech *mech;
	const struct sgm_hash *pss_hash;
	CK_RSA_PKCS_PSS_PARAMS pss;
	char *seal_id;
	CK_ULONG sig_len;
	struct sgm_input in;
	bool multi;             /* C_SignUpdate was called */
};

const struct sgm_mech *
sgm_mech_find(CK_MECHANISM_TYPE t)
{
	for (size_t i = 0; i < SGM_N_MECHS; i++)
		if (sgm_mechs[i].type == t)
			return &sgm_mechs[i];
	return NULL;
}

static const struct sgm_hash *
hash_find(CK_MECHANISM_TYPE t)
{
	for (size_t i = 0; i < sizeof(sgm_hashes) / sizeof(sgm_hashes[0]); i++)
		if (sgm_hashes[i].ckm == t)
			return &sgm_hashes[i];
	return NULL;
}

CK_RV
sgm_mechanism_list(CK_MECHANISM_TYPE_PTR list, CK_ULONG_PTR count)
{
	if (list == NULL) {
		*count = SGM_N_MECHS;
		return CKR_OK;
	}
	if (*count < SGM_N_MECHS) {
		*count = SGM_N_MECHS;
		return CKR_BUFFER_TOO_SMALL;
	}
	for (size_t i = 0; i < SGM_N_MECHS; i++)
		list[i] = sgm_mechs[i].type;
	*count = SGM_N_MECHS;
	return CKR_OK;
}

CK_RV
sgm_mechanism_info(CK_MECHANISM_TYPE type, CK_MECHANISM_INFO_PTR info)
{
	const struct sgm_mech *m = sgm_mech_find(type);

	if (m == NULL)
		return CKR_MECHANISM_INVALID;
	info->ulMinKeySize = m->min_bits;
	info->ulMaxKeySize = m->max_bits;
	info->flags = m->flags;
	return CKR_OK;
}

/* ---- the input of a sign or verify operation ---- */

CK_RV
sgm_input_init(struct sgm_input *in, const struct sgm_mech *m, const struct sgm_seal *seal,
               const struct sgm_hash *pss_hash)
{
	memset(in, 0, sizeof(*in));
	in->mech = m;
	in->pss_hash = pss_hash;
	if (m->hash != NULL) {
		in->max_in = SG_SIGN_DATA_MAX;
		in->md = EVP_MD_CTX_new();
		if (in->md == NULL)
			return CKR_HOST_MEMORY;
		if (EVP_DigestInit_ex(in->md, EVP_get_digestbyname(m->hash->md), NULL) != 1)
			return CKR_GENERAL_ERROR;
	} else if (m->type == CKM_RSA_PKCS) {
		in->max_in = seal->sig_len - 11;      /* PKCS#1 v1.5 padding */
	} else if (m->pss) {
		in->max_in = pss_hash->len;
	} else if (m->type == CKM_ECDSA) {
		/* PKCS#11 (as FIPS 186-4 and SoftHSM2): only the leftmost bits
		 * of a longer input, up to the order's length, are used. Whole
		 * bytes are kept here; the token drops the bits past the order
		 * itself. A key longer than the gateway's 64-byte bound (P-521)
		 * cannot be cut to size: its longer inputs stay out of range. */
		in->max_in = (seal->bits + 7) / 8;
		in->truncate = in->max_in <= SGM_ECDSA_IN_MAX;
		if (!in->truncate)
			in->max_in = SGM_ECDSA_IN_MAX;
	} else {
		in->max_in = SG_EDDSA_DATA_MAX;
	}
	return CKR_OK;
}

void
sgm_input_clear(struct sgm_input *in)
{
	EVP_MD_CTX_free(in->md);
	/* Raw inputs and message prefixes are the caller's data: wipe. */
	sg_free_secret(in->buf, in->cap);
	memset(in, 0, sizeof(*in));
}

CK_RV
sgm_input_feed(struct sgm_input *in, const CK_BYTE *data, CK_ULONG len)
{
	size_t take = len;

	if (len == 0)
		return CKR_OK;
	if (in->md != NULL || in->truncate) {
		if (in->md != NULL && EVP_DigestUpdate(in->md, data, len) != 1)
			return CKR_GENERAL_ERROR;
		/* Keep only the prefix the gateway is shown (hash-and-sign)
		 * or the token uses (CKM_ECDSA). */
		take = len < in->max_in - in->len ? len : in->max_in - in->len;
	} else if (len > in->max_in - in->len) {
		return CKR_DATA_LEN_RANGE;
	}
	if (take > 0) {
		if (in->len + take > in->cap) {
			size_t cap = in->cap ? in->cap : 256;
			uint8_t *nb;
			while (cap < in->len + take)
				cap *= 2;
			if (cap > in->max_in)
				cap = in->max_in;
			nb = malloc(cap);
			if (nb == NULL)
				return CKR_HOST_MEMORY;
			if (in->len > 0)
				memcpy(nb, in->buf, in->len);
			sg_free_secret(in->buf, in->cap);
			in->buf = nb;
			in->cap = cap;
		}
		memcpy(in->buf + in->len, data, take);
		in->len += take;
	}
	in->total += len;
	return CKR_OK;
}

CK_RV
sgm_input_check_final(const struct sgm_input *in)
{
	if (in->mech->pss && in->mech->hash == NULL && in->len != in->pss_hash->len)
		return CKR_DATA_LEN_RANGE;
	if (in->mech->type == CKM_ECDSA && in->len == 0)
		return CKR_DATA_LEN_RANGE;
	return CKR_OK;
}

void
sgm_sign_op_free(struct sgm_sign_op *op)
{
	if (op == NULL)
		return;
	sgm_input_clear(&op->in);
	free(op->seal_id);
	free(op);
}

/* ---- C_SignInit ---- */

CK_RV
sgm_check_params(const struct sgm_mech *m, const struct sgm_seal *seal, const CK_MECHANISM *mech,
             CK_RSA_PKCS_PSS_PARAMS *pss, const struct sgm_hash **pss_hash)
{
	const CK_RSA_PKCS_PSS_PARAMS *p;
	const struct sgm_hash *h;
	CK_ULONG em_len;

	*pss_hash = NULL;
	if (m->type == CKM_EDDSA) {
		const CK_EDDSA_PARAMS *e = mech->pParameter;
		if (mech->ulParameterLen == 0)
			return CKR_OK;
		/* Only pure Ed25519: no pre-hash, no context (the protocol has
		 * no field for either). */
		if (e == NULL || mech->ulParameterLen != sizeof(*e) || e->phFlag ||
		    e->ulContextDataLen != 0)
			return CKR_MECHANISM_PARAM_INVALID;
		return CKR_OK;
	}
	if (!m->pss)
		return mech->ulParameterLen == 0 ? CKR_OK : CKR_MECHANISM_PARAM_INVALID;

	p = mech->pParameter;
	if (p == NULL || mech->ulParameterLen != sizeof(*p))
		return CKR_MECHANISM_PARAM_INVALID;
	h = hash_find(p->hashAlg);
	if (h == NULL || (m->hash != NULL && h != m->hash) || p->mgf != h->mgf)
		return CKR_MECHANISM_PARAM_INVALID;
	/* RFC 8017 9.1.1: emLen >= hLen + sLen + 2, emLen = ceil((modBits-1)/8). */
	em_len = (seal->bits - 1 + 7) / 8;
	if (em_len < h->len + 2 || p->sLen > em_len - h->len - 2)
		return CKR_MECHANISM_PARAM_INVALID;
	*pss = *p;
	*pss_hash = h;
	return CKR_OK;
}

bool
sgm_seal_allows(const struct sgm_seal *seal, CK_MECHANISM_TYPE t)
{
	for (size_t i = 0; i < seal->n_mechs; i++)
		if (seal->mechs[i] == t)
			return true;
	return false;
}

CK_RV
sgm_sign_init(struct sgm_state *st, CK_SESSION_HANDLE h, CK_MECHANISM_PTR mech,
              CK_OBJECT_HANDLE key)
{
	const struct sgm_mech *m = sgm_mech_find(mech->mechanism);
	const struct sgm_seal *seal;
	struct sgm_session *s;
	struct sgm_sign_op *op = NULL;
	CK_OBJECT_CLASS cls = 0;
	CK_RV rv;

	sgm_lock(st);
	rv = sgm_session_check_locked(st, h, &s);
	if (rv != CKR_OK)
		goto out;
	rv = CKR_OPERATION_ACTIVE;
	if (s->sign != NULL || s->busy)
		goto out;
	rv = CKR_USER_NOT_LOGGED_IN;
	if (!st->logged_in)
		goto out;
	rv = CKR_KEY_HANDLE_INVALID;
	seal = sgm_object_lookup_locked(st, key, &cls);
	if (seal == NULL || cls == CKO_CERTIFICATE)
		goto out;
	/* A key, but one that cannot sign (PKCS#11: CKA_SIGN is false). */
	rv = CKR_KEY_FUNCTION_NOT_PERMITTED;
	if (cls != CKO_PRIVATE_KEY)
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
	rv = CKR_HOST_MEMORY;
	op->mech = m;
	op->sig_len = seal->sig_len;
	op->seal_id = strdup(seal->id);
	if (op->seal_id == NULL)
		goto out;
	rv = sgm_input_init(&op->in, m, seal, op->pss_hash);
	if (rv != CKR_OK)
		goto out;
	s->sign = op;
	op = NULL;
	rv = CKR_OK;
out:
	sgm_unlock(st);
	sgm_sign_op_free(op);
	return rv;
}

/* ---- the op is taken out of its session while a thread works on it ---- */

static CK_RV
op_take(struct sgm_state *st, CK_SESSION_HANDLE h, struct sgm_session **sp,
        struct sgm_sign_op **opp)
{
	struct sgm_session *s;
	CK_RV rv;

	sgm_lock(st);
	rv = sgm_session_check_locked(st, h, &s);
	if (rv == CKR_OK && s->busy)
		rv = CKR_OPERATION_ACTIVE;      /* another thread is signing here */
	else if (rv == CKR_OK && s->sign == NULL)
		rv = CKR_OPERATION_NOT_INITIALIZED;
	if (rv == CKR_OK) {
		*opp = s->sign;
		*sp = s;
		s->sign = NULL;
		s->busy = true;
	}
	sgm_unlock(st);
	return rv;
}

static void
op_put(struct sgm_state *st, struct sgm_session *s, struct sgm_sign_op *op, bool keep)
{
	sgm_lock(st);
	s->busy = false;
	if (s->closed) {
		/* Closed meanwhile: ours to free, unless a verify is still
		 * running on it (then that thread frees it). */
		if (!s->vbusy)
			sgm_session_free(s);
	} else if (keep && st->logged_in && s->epoch == st->epoch) {
		s->sign = op;
		op = NULL;
	}
	sgm_unlock(st);
	sgm_sign_op_free(op);
}

static CK_RV
build_request(const struct sgm_sign_op *op, const uint8_t tok[SG_SESSION_TOKEN_LEN],
              json_t **out)
{
	uint8_t digest[EVP_MAX_MD_SIZE];
	unsigned int dlen = 0;
	json_t *req = sg_request_new(SG_OP_SIGN);
	CK_RV rv = CKR_HOST_MEMORY;

	*out = NULL;
	if (req == NULL)
		goto out;
	if (sg_set_bytes(req, "session", tok, SG_SESSION_TOKEN_LEN) < 0 ||
	    json_object_set_new(req, "seal", json_string(op->seal_id)) != 0 ||
	    json_object_set_new(req, "mechanism", json_integer((json_int_t)op->mech->type)) != 0)
		goto out;
	if (op->mech->pss &&
	    json_object_set_new(req, "pss", json_pack("{s:I,s:I,s:I}",
	                        "hash", (json_int_t)op->pss.hashAlg,
	                        "mgf", (json_int_t)op->pss.mgf,
	                        "slen", (json_int_t)op->pss.sLen)) != 0)
		goto out;
	if (op->in.md != NULL) {
		if (EVP_DigestFinal_ex(op->in.md, digest, &dlen) != 1) {
			rv = CKR_GENERAL_ERROR;
			goto out;
		}
		if (sg_set_bytes(req, "digest", digest, dlen) < 0)
			goto out;
	}
	/* A truncated ECDSA input is sent as the input the token signs. */
	if (sg_set_bytes(req, "data", op->in.buf, op->in.len) < 0 ||
	    json_object_set_new(req, "data_len",
	                        json_integer((json_int_t)(op->in.truncate ? op->in.len
	                                                                  : op->in.total))) != 0)
		goto out;
	*out = req;
	req = NULL;
	rv = CKR_OK;
out:
	OPENSSL_cleanse(digest, sizeof(digest));
	if (req != NULL)
		sgm_json_wipe_str(req, "session");
	json_decref(req);
	return rv;
}

/* The input checks only the complete data allows, then one round trip. */
static CK_RV
op_finish(struct sgm_state *st, struct sgm_session *s, struct sgm_sign_op *op,
          CK_BYTE_PTR sig, CK_ULONG_PTR siglen)
{
	uint8_t tok[SG_SESSION_TOKEN_LEN];
	json_t *req = NULL, *reply = NULL;
	uint8_t *out = NULL;
	size_t outlen = 0;
	uint64_t epoch;
	json_int_t record = -1;
	char err[128];
	bool have;
	CK_RV rv;

	rv = sgm_input_check_final(&op->in);
	if (rv != CKR_OK)
		return rv;

	sgm_lock(st);
	have = sgm_login_token_locked(st, tok);
	sgm_unlock(st);
	if (!have)
		return CKR_USER_NOT_LOGGED_IN;

	rv = build_request(op, tok, &req);
	if (rv != CKR_OK)
		goto out;
	/* Never resent once it may have reached the gateway: a second
	 * signature would be a second use. */
	rv = sgm_client_call(st, req, false, &reply, &epoch);
	sgm_json_wipe_str(req, "session");
	if (rv != CKR_OK)
		goto out;
	if (epoch != s->epoch) {
		rv = CKR_DEVICE_REMOVED;
		goto out;
	}
	if (!sg_reply_is_ok(reply, NULL, NULL, NULL)) {
		const char *msg = NULL;
		rv = sgm_reply_rv(reply);
		(void)sg_reply_is_ok(reply, NULL, NULL, &msg);
		sgm_debug("sign refused by the gateway (rv 0x%lx): %s", rv, msg ? msg : "");
		if (rv == CKR_USER_NOT_LOGGED_IN)
			sgm_login_invalidate(st, tok);
		goto out;
	}
	if (sg_get_bytes(reply, "signature", true, &out, &outlen, SGM_SIG_MAX, err,
	                 sizeof(err)) < 0 || outlen != op->sig_len) {
		sgm_debug("sign reply: bad signature (%s)", err);
		rv = CKR_DEVICE_ERROR;
		goto out;
	}
	if (json_is_integer(json_object_get(reply, "record")))
		record = json_integer_value(json_object_get(reply, "record"));
	sgm_debug("signed with seal %s, audit record %lld", op->seal_id, (long long)record);
	memcpy(sig, out, outlen);
	*siglen = outlen;
	rv = CKR_OK;
out:
	OPENSSL_cleanse(tok, sizeof(tok));
	json_decref(req);
	json_decref(reply);
	free(out);
	return rv;
}

CK_RV
sgm_sign(struct sgm_state *st, CK_SESSION_HANDLE h, bool final, const CK_BYTE *data,
         CK_ULONG len, CK_BYTE_PTR sig, CK_ULONG_PTR siglen)
{
	struct sgm_session *s = NULL;
	struct sgm_sign_op *op = NULL;
	bool keep = false;
	CK_RV rv;

	rv = op_take(st, h, &s, &op);
	if (rv != CKR_OK)
		return rv;
	/* From here every outcome but a length answer ends the operation. */
	rv = CKR_ARGUMENTS_BAD;
	if (siglen == NULL || (!final && data == NULL && len > 0))
		goto out;
	rv = CKR_OPERATION_ACTIVE;
	if (!final && op->multi)
		goto out;                       /* C_Sign inside a multi-part op */
	if (sig == NULL || *siglen < op->sig_len) {
		/* Answered locally: nothing is hashed, sent or consumed. */
		rv = sig == NULL ? CKR_OK : CKR_BUFFER_TOO_SMALL;
		*siglen = op->sig_len;
		keep = true;
		goto out;
	}
	if (!final) {
		rv = sgm_input_feed(&op->in, data, len);
		if (rv != CKR_OK)
			goto out;
	}
	rv = op_finish(st, s, op, sig, siglen);
out:
	op_put(st, s, op, keep);
	return rv;
}

CK_RV
sgm_sign_update(struct sgm_state *st, CK_SESSION_HANDLE h, const CK_BYTE *part, CK_ULONG len)
{
	struct sgm_session *s = NULL;
	struct sgm_sign_op *op = NULL;
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
	op_put(st, s, op, rv == CKR_OK);
	return rv;
}
