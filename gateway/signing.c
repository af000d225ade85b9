/*
 * Mechanism translation for the sign path. Hash-and-sign mechanisms arrive
 * as a digest computed by the module (plus the data's first 64 KiB), and
 * the token signs the digest with the matching raw mechanism; when the
 * whole data came along, the digest is checked against it.
 */
#include "signing.h"

#include <stdio.h>
#include <string.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/x509.h>

static const CK_MECHANISM_TYPE rsa_mechs[] = {
	CKM_RSA_PKCS, CKM_SHA256_RSA_PKCS, CKM_SHA384_RSA_PKCS, CKM_SHA512_RSA_PKCS,
	CKM_RSA_PKCS_PSS, CKM_SHA256_RSA_PKCS_PSS, CKM_SHA384_RSA_PKCS_PSS,
	CKM_SHA512_RSA_PKCS_PSS,
};
static const CK_MECHANISM_TYPE ec_mechs[] = {
	CKM_ECDSA, CKM_ECDSA_SHA256, CKM_ECDSA_SHA384, CKM_ECDSA_SHA512,
};
static const CK_MECHANISM_TYPE ed_mechs[] = { CKM_EDDSA };

/* DER DigestInfo prefixes (RFC 8017, section 9.2 note 1). */
static const uint8_t di_sha256[] = { 0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01,
	0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20 };
static const uint8_t di_sha384[] = { 0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01,
	0x65, 0x03, 0x04, 0x02, 0x02, 0x05, 0x00, 0x04, 0x30 };
static const uint8_t di_sha512[] = { 0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01,
	0x65, 0x03, 0x04, 0x02, 0x03, 0x05, 0x00, 0x04, 0x40 };

struct hashinfo {
	CK_MECHANISM_TYPE hash;
	CK_RSA_PKCS_MGF_TYPE mgf;
	size_t len;
	const uint8_t *di; size_t di_len;
	const char *evp;
};

static const struct hashinfo hashes[] = {
	{ CKM_SHA256, CKG_MGF1_SHA256, 32, di_sha256, sizeof(di_sha256), "SHA256" },
	{ CKM_SHA384, CKG_MGF1_SHA384, 48, di_sha384, sizeof(di_sha384), "SHA384" },
	{ CKM_SHA512, CKG_MGF1_SHA512, 64, di_sha512, sizeof(di_sha512), "SHA512" },
};

static const struct hashinfo *
hash_by_mech(CK_MECHANISM_TYPE h)
{
	for (size_t i = 0; i < sizeof(hashes) / sizeof(hashes[0]); i++)
		if (hashes[i].hash == h)
			return &hashes[i];
	return NULL;
}

/* The hash a hash-and-sign mechanism implies, or NULL for raw ones. */
static const struct hashinfo *
implied_hash(CK_MECHANISM_TYPE m)
{
	switch (m) {
	case CKM_SHA256_RSA_PKCS: case CKM_SHA256_RSA_PKCS_PSS: case CKM_ECDSA_SHA256:
		return hash_by_mech(CKM_SHA256);
	case CKM_SHA384_RSA_PKCS: case CKM_SHA384_RSA_PKCS_PSS: case CKM_ECDSA_SHA384:
		return hash_by_mech(CKM_SHA384);
	case CKM_SHA512_RSA_PKCS: case CKM_SHA512_RSA_PKCS_PSS: case CKM_ECDSA_SHA512:
		return hash_by_mech(CKM_SHA512);
	default:
		return NULL;
	}
}

size_t
gw_mech_for_key(enum gw_key_type type, const CK_MECHANISM_TYPE **list)
{
	switch (type) {
	case GW_KEY_RSA:
		*list = rsa_mechs;
		return sizeof(rsa_mechs) / sizeof(rsa_mechs[0]);
	case GW_KEY_EC:
		*list = ec_mechs;
		return sizeof(ec_mechs) / sizeof(ec_mechs[0]);
	case GW_KEY_ED25519:
		*list = ed_mechs;
		return 1;
	}
	*list = NULL;
	return 0;
}

bool
gw_mech_fits_key(CK_MECHANISM_TYPE mech, enum gw_key_type type)
{
	const CK_MECHANISM_TYPE *l;
	size_t n = gw_mech_for_key(type, &l);

	for (size_t i = 0; i < n; i++)
		if (l[i] == mech)
			return true;
	return false;
}

const char *
gw_mech_name(CK_MECHANISM_TYPE m)
{
	switch (m) {
	case CKM_RSA_PKCS: return "RSA_PKCS";
	case CKM_SHA256_RSA_PKCS: return "SHA256_RSA_PKCS";
	case CKM_SHA384_RSA_PKCS: return "SHA384_RSA_PKCS";
	case CKM_SHA512_RSA_PKCS: return "SHA512_RSA_PKCS";
	case CKM_RSA_PKCS_PSS: return "RSA_PKCS_PSS";
	case CKM_SHA256_RSA_PKCS_PSS: return "SHA256_RSA_PKCS_PSS";
	case CKM_SHA384_RSA_PKCS_PSS: return "SHA384_RSA_PKCS_PSS";
	case CKM_SHA512_RSA_PKCS_PSS: return "SHA512_RSA_PKCS_PSS";
	case CKM_ECDSA: return "ECDSA";
	case CKM_ECDSA_SHA256: return "ECDSA_SHA256";
	case CKM_ECDSA_SHA384: return "ECDSA_SHA384";
	case CKM_ECDSA_SHA512: return "ECDSA_SHA512";
	case CKM_EDDSA: return "EDDSA";
	default: return "unknown";
	}
}

static void
note_digest(struct gw_sign_plan *plan, const uint8_t *d, size_t len)
{
	if (len <= sizeof(plan->signed_digest)) {
		memcpy(plan->signed_digest, d, len);
		plan->signed_digest_len = len;
	} else {
		unsigned int n = 0;
		EVP_Digest(d, len, plan->signed_digest, &n, EVP_sha256(), NULL);
		plan->signed_digest_len = n;
	}
}

/* For CKM_RSA_PKCS over a DigestInfo, the digest it carries. */
static void
note_rsa_pkcs(struct gw_sign_plan *plan, const uint8_t *d, size_t len)
{
	for (size_t i = 0; i < sizeof(hashes) / sizeof(hashes[0]); i++) {
		const struct hashinfo *h = &hashes[i];
		if (len == h->di_len + h->len && memcmp(d, h->di, h->di_len) == 0) {
			note_digest(plan, d + h->di_len, h->len);
			return;
		}
	}
	note_digest(plan, d, len);
}

static size_t
sig_len(const struct gw_seal_key *key)
{
	switch (key->type) {
	case GW_KEY_RSA: return (key->bits + 7) / 8;
	case GW_KEY_EC: return 2 * ((key->bits + 7) / 8);
	case GW_KEY_ED25519: return 64;
	}
	return 0;
}

static CK_RV
check_pss(const struct gw_sign_input *in, const struct hashinfo *need,
          size_t modbytes, char *err, size_t errlen)
{
	const struct hashinfo *h;

	if (!in->has_pss) {
		snprintf(err, errlen, "PSS needs parameters");
		return CKR_MECHANISM_PARAM_INVALID;
	}
	h = hash_by_mech(in->pss.hashAlg);
	if (h == NULL || (need != NULL && h != need)) {
		snprintf(err, errlen, "PSS hash does not fit the mechanism");
		return CKR_MECHANISM_PARAM_INVALID;
	}
	if (hash_by_mech(in->pss.hashAlg)->mgf != in->pss.mgf) {
		snprintf(err, errlen, "PSS MGF must use the same hash");
		return CKR_MECHANISM_PARAM_INVALID;
	}
	if (in->pss.sLen > modbytes || h->len + in->pss.sLen + 2 > modbytes) {
		snprintf(err, errlen, "PSS salt length too large for the key");
		return CKR_MECHANISM_PARAM_INVALID;
	}
	return CKR_OK;
}

CK_RV
gw_sign_plan(const struct gw_seal_key *key, const struct gw_sign_input *in,
             struct gw_sign_plan *plan, char *err, size_t errlen)
{
	const struct hashinfo *h = implied_hash(in->mechanism);
	size_t modbytes = (key->bits + 7) / 8;
	CK_RV rv;

	memset(plan, 0, sizeof(*plan));
	if (!gw_mech_fits_key(in->mechanism, key->type)) {
		snprintf(err, errlen, "mechanism %s does not fit this key", gw_mech_name(in->mechanism));
		return CKR_MECHANISM_INVALID;
	}
	plan->sig_len = sig_len(key);
	if (in->total_len < in->data_len) {
		snprintf(err, errlen, "data_len is less than the data sent");
		return CKR_DATA_INVALID;
	}

	if (h != NULL) {
		/* Hash-and-sign: the module hashed; check what we can. */
		uint8_t md[EVP_MAX_MD_SIZE];
		unsigned int mdlen = 0;

		if (in->digest == NULL || in->digest_len != h->len) {
			snprintf(err, errlen, "digest of %zu bytes expected", h->len);
			return CKR_DATA_INVALID;
		}
		if (in->data_len > 65536) {
			snprintf(err, errlen, "data prefix too long");
			return CKR_DATA_LEN_RANGE;
		}
		if (in->total_len == in->data_len) {
			if (EVP_Digest(in->data ? in->data : (const uint8_t *)"", in->data_len,
			               md, &mdlen, EVP_get_digestbyname(h->evp), NULL) != 1 ||
			    mdlen != h->len || memcmp(md, in->digest, h->len) != 0) {
				snprintf(err, errlen, "digest does not match the data");
				return CKR_DATA_INVALID;
			}
		}
		note_digest(plan, in->digest, in->digest_len);
		switch (in->mechanism) {
		case CKM_SHA256_RSA_PKCS: case CKM_SHA384_RSA_PKCS: case CKM_SHA512_RSA_PKCS:
			if (h->di_len + h->len + 11 > modbytes) {
				snprintf(err, errlen, "key too small for this hash");
				return CKR_KEY_SIZE_RANGE;
			}
			memcpy(plan->buf, h->di, h->di_len);
			memcpy(plan->buf + h->di_len, in->digest, h->len);
			plan->mech.mechanism = CKM_RSA_PKCS;
			plan->tbs = plan->buf;
			plan->tbs_len = h->di_len + h->len;
			return CKR_OK;
		case CKM_SHA256_RSA_PKCS_PSS: case CKM_SHA384_RSA_PKCS_PSS: case CKM_SHA512_RSA_PKCS_PSS:
			if ((rv = check_pss(in, h, modbytes, err, errlen)) != CKR_OK)
				return rv;
			plan->pss = in->pss;
			plan->mech.mechanism = CKM_RSA_PKCS_PSS;
			plan->mech.pParameter = &plan->pss;
			plan->mech.ulParameterLen = sizeof(plan->pss);
			plan->tbs = in->digest;
			plan->tbs_len = in->digest_len;
			return CKR_OK;
		default: /* ECDSA_SHA* */
			plan->mech.mechanism = CKM_ECDSA;
			plan->tbs = in->digest;
			plan->tbs_len = in->digest_len;
			return CKR_OK;
		}
	}

	/* Raw mechanisms: the data is exactly what the token signs. */
	if (in->data == NULL || in->total_len != in->data_len) {
		snprintf(err, errlen, "this mechanism needs the whole input");
		return CKR_DATA_INVALID;
	}
	plan->tbs = in->data;
	plan->tbs_len = in->data_len;
	plan->mech.mechanism = in->mechanism;
	switch (in->mechanism) {
	case CKM_RSA_PKCS:
		if (in->data_len == 0 || in->data_len + 11 > modbytes) {
			snprintf(err, errlen, "RSA PKCS#1 input of %zu bytes does not fit a %u-bit key",
			         in->data_len, key->bits);
			return CKR_DATA_LEN_RANGE;
		}
		note_rsa_pkcs(plan, in->data, in->data_len);
		return CKR_OK;
	case CKM_RSA_PKCS_PSS:
		if ((rv = check_pss(in, NULL, modbytes, err, errlen)) != CKR_OK)
			return rv;
		if (in->data_len != hash_by_mech(in->pss.hashAlg)->len) {
			snprintf(err, errlen, "PSS input must be a hash of the parameters' algorithm");
			return CKR_DATA_LEN_RANGE;
		}
		plan->pss = in->pss;
		plan->mech.pParameter = &plan->pss;
		plan->mech.ulParameterLen = sizeof(plan->pss);
		note_digest(plan, in->data, in->data_len);
		return CKR_OK;
	case CKM_ECDSA:
		if (in->data_len == 0 || in->data_len > 64) {
			snprintf(err, errlen, "ECDSA input must be a hash (1 to 64 bytes)");
			return CKR_DATA_LEN_RANGE;
		}
		note_digest(plan, in->data, in->data_len);
		return CKR_OK;
	case CKM_EDDSA:
		if (in->data_len > 512 * 1024) {
			snprintf(err, errlen, "EdDSA message too long");
			return CKR_DATA_LEN_RANGE;
		}
		{
			/* Pure EdDSA signs the message itself: record its SHA-256. */
			unsigned int n = 0;
			EVP_Digest(in->data, in->data_len, plan->signed_digest, &n, EVP_sha256(), NULL);
			plan->signed_digest_len = n;
		}
		return CKR_OK;
	default:
		snprintf(err, errlen, "mechanism not supported");
		return CKR_MECHANISM_INVALID;
	}
}

/* True when the DER SET OF Attribute (CMS signed attributes) has exactly
 * one messageDigest and it is doc. Bounded by OpenSSL's DER decoders; nothing is trusted. */
static bool
signed_attrs_digest_is(const uint8_t *der, size_t len, const uint8_t doc[32])
{
	const unsigned char *p = der;
	STACK_OF(ASN1_TYPE) *set;
	bool match = false;
	int n_md = 0;

	if (len < 2 || der[0] != 0x31 || len > 65536)
		return false;
	set = d2i_ASN1_SET_ANY(NULL, &p, (long)len);
	if (set == NULL || p != der + len) {
		sk_ASN1_TYPE_pop_free(set, ASN1_TYPE_free);
		return false;
	}
	for (int i = 0; i < sk_ASN1_TYPE_num(set); i++) {
		ASN1_TYPE *t = sk_ASN1_TYPE_value(set, i);
		const unsigned char *q;
		X509_ATTRIBUTE *attr;
		ASN1_TYPE *v;

		if (t->type != V_ASN1_SEQUENCE)
			continue;
		q = t->value.sequence->data;
		attr = d2i_X509_ATTRIBUTE(NULL, &q, t->value.sequence->length);
		if (attr == NULL)
			continue;
		if (OBJ_obj2nid(X509_ATTRIBUTE_get0_object(attr)) == NID_pkcs9_messageDigest) {
			/* One messageDigest with one value, or it is no binding. */
			v = X509_ATTRIBUTE_count(attr) == 1 ? X509_ATTRIBUTE_get0_type(attr, 0) : NULL;
			match = v != NULL && v->type == V_ASN1_OCTET_STRING &&
			        v->value.octet_string->length == 32 &&
			        memcmp(v->value.octet_string->data, doc, 32) == 0;
			n_md++;
		}
		X509_ATTRIBUTE_free(attr);
	}
	sk_ASN1_TYPE_pop_free(set, ASN1_TYPE_free);
	return n_md == 1 && match;
}

bool
gw_sign_binds_document(const struct gw_sign_input *in, const struct gw_sign_plan *plan,
                       const uint8_t doc[32])
{
	if (plan->signed_digest_len == 32 && memcmp(plan->signed_digest, doc, 32) == 0 &&
	    in->mechanism != CKM_EDDSA)
		return true;
	/* Signed attributes: only when the whole data came and its hash is
	 * what gets signed (gw_sign_plan checked the digest against it). */
	if (implied_hash(in->mechanism) != NULL && in->data != NULL && in->total_len == in->data_len)
		return signed_attrs_digest_is(in->data, in->data_len, doc);
	return false;
}

/* ---- ECDSA signatures of a promised DER length ---- */

static size_t
der_len_of_len(size_t content)
{
	return content < 0x80 ? 1 : content < 0x100 ? 2 : 3;
}

/* A whole DER INTEGER (tag, length, content) holding the unsigned
 * big-endian v: leading zeros dropped, a 0x00 added when the top bit is
 * set. */
static size_t
der_uint_len(const uint8_t *v, size_t n)
{
	size_t i = 0, c;

	while (i < n && v[i] == 0)
		i++;
	c = i == n ? 1 : (n - i) + ((v[i] & 0x80) != 0);
	return 1 + der_len_of_len(c) + c;
}

/* DER length of ECDSA-Sig-Value { r, s } for halves of half bytes. */
static size_t
der_pair_len(const uint8_t *r, const uint8_t *s, size_t half)
{
	size_t c = der_uint_len(r, half) + der_uint_len(s, half);

	return 1 + der_len_of_len(c) + c;
}

size_t
gw_ecdsa_der_len(const uint8_t *rs, size_t len)
{
	if (len == 0 || len % 2 != 0)
		return 0;
	return der_pair_len(rs, rs + len / 2, len / 2);
}

/* The order of key's curve (CKA_EC_PARAMS as an OID; for a key without
 * them, the NIST curve of its size), or NULL. */
static BIGNUM *
ec_order(const struct gw_seal_key *key)
{
	int nid = NID_undef;
	EC_GROUP *grp;
	BIGNUM *n = NULL;

	if (key->type != GW_KEY_EC)
		return NULL;
	if (key->ec_params.len > 0) {
		const unsigned char *p = key->ec_params.p;
		ASN1_OBJECT *oid = d2i_ASN1_OBJECT(NULL, &p, (long)key->ec_params.len);

		if (oid != NULL && p == key->ec_params.p + key->ec_params.len)
			nid = OBJ_obj2nid(oid);
		ASN1_OBJECT_free(oid);
	} else {
		nid = key->bits == 256 ? NID_X9_62_prime256v1 : key->bits == 384 ? NID_secp384r1 :
		      key->bits == 521 ? NID_secp521r1 : NID_undef;
	}
	if (nid == NID_undef || (grp = EC_GROUP_new_by_curve_name(nid)) == NULL)
		return NULL;
	n = BN_dup(EC_GROUP_get0_order(grp));
	EC_GROUP_free(grp);
	return n;
}

size_t
gw_ecdsa_target_len(const struct gw_seal_key *key, size_t len)
{
	BIGNUM *n = ec_order(key);
	size_t half = len / 2, c;
	int nbits;

	if (n == NULL || len == 0 || len % 2 != 0)
		goto none;
	nbits = BN_num_bits(n);
	BN_free(n);
	if ((size_t)(nbits + 7) / 8 != half)
		return 0;      /* halves not of the order's size: nothing to promise */
	/* When the order fills its top byte (P-256, P-384), an integer below n
	 * is half+1 bytes in DER when its top bit is set, and of s and n - s
	 * one nearly always has it and the other not: one long, one not, is
	 * met by almost every token signature, r deciding which of s, n - s.
	 * Otherwise (P-521) no integer reaches its top bit: both of the
	 * longest length, met by 3 signatures in 4 (r >= 2^(nbits-2)). */
	c = nbits % 8 == 0 ? (2 + half) + (2 + half + 1) : 2 * (2 + half);
	if (half + 1 >= 0x80)
		return 0;      /* INTEGER lengths of two bytes: no such curve */
	return 1 + der_len_of_len(c) + c;
none:
	BN_free(n);
	return 0;
}

int
gw_ecdsa_fit(const struct gw_seal_key *key, uint8_t *rs, size_t len, size_t target)
{
	size_t half = len / 2;
	uint8_t alt[128];
	BIGNUM *n = NULL, *s = NULL;
	int rv = -1;

	if (len == 0 || len % 2 != 0 || half > sizeof(alt))
		return -1;
	if (gw_ecdsa_der_len(rs, len) == target)
		return 1;
	if ((n = ec_order(key)) == NULL || (s = BN_bin2bn(rs + half, (int)half, NULL)) == NULL)
		goto out;
	if (BN_is_zero(s) || BN_cmp(s, n) >= 0)
		goto out;
	/* (r, n - s) verifies wherever (r, s) does: ECDSA verification uses
	 * s only through s^-1, and -s gives the point -R, of the same x. */
	if (!BN_sub(s, n, s) || BN_bn2binpad(s, alt, (int)half) != (int)half)
		goto out;
	rv = 0;
	if (der_pair_len(rs, alt, half) == target) {
		memcpy(rs + half, alt, half);
		rv = 1;
	}
out:
	OPENSSL_cleanse(alt, sizeof(alt));
	BN_clear_free(s);
	BN_free(n);
	return rv;
}

int
gw_ecdsa_placeholder(const struct gw_seal_key *key, uint8_t *rs, size_t len, size_t target)
{
	size_t half = len / 2;
	BIGNUM *n = ec_order(key), *v = BN_new();
	int rv = -1;

	if (n == NULL || v == NULL || len == 0 || len % 2 != 0 || target == 0)
		goto out;
	/* Random r and s below n: at least 3 draws in 4 meet the length
	 * (gw_ecdsa_target_len), so 64 draws do not all miss. */
	for (int i = 0; i < 64 && rv < 0; i++) {
		if (!BN_rand_range(v, n) || BN_is_zero(v) ||
		    BN_bn2binpad(v, rs, (int)half) != (int)half ||
		    !BN_rand_range(v, n) || BN_is_zero(v) ||
		    BN_bn2binpad(v, rs + half, (int)half) != (int)half)
			continue;
		if (gw_ecdsa_fit(key, rs, len, target) == 1)
			rv = 0;
	}
out:
	BN_free(v);
	BN_free(n);
	return rv;
}
