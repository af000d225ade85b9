/* Unit tests of the sign path's mechanism translation (gateway/signing.c). */
#include <criterion/criterion.h>
#include <string.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/objects.h>

#include "signing.h"

static struct gw_seal_key rsa = { .type = GW_KEY_RSA, .bits = 2048 };
static struct gw_seal_key ec = { .type = GW_KEY_EC, .bits = 256 };
static struct gw_seal_key ed = { .type = GW_KEY_ED25519, .bits = 255 };
static char err[256];

static void
sha256(const void *d, size_t n, uint8_t *out)
{
	unsigned int len;
	EVP_Digest(d, n, out, &len, EVP_sha256(), NULL);
}

Test(signing, mech_fits_key_type)
{
	cr_assert(gw_mech_fits_key(CKM_SHA256_RSA_PKCS, GW_KEY_RSA));
	cr_assert_not(gw_mech_fits_key(CKM_SHA256_RSA_PKCS, GW_KEY_EC));
	cr_assert(gw_mech_fits_key(CKM_ECDSA, GW_KEY_EC));
	cr_assert_not(gw_mech_fits_key(CKM_ECDSA, GW_KEY_ED25519));
	cr_assert(gw_mech_fits_key(CKM_EDDSA, GW_KEY_ED25519));
	cr_assert_not(gw_mech_fits_key(CKM_SHA1_RSA_PKCS, GW_KEY_RSA));
}

Test(signing, hash_and_sign_builds_digestinfo)
{
	const char *doc = "contract text";
	uint8_t md[32];
	struct gw_sign_input in = { .mechanism = CKM_SHA256_RSA_PKCS };
	struct gw_sign_plan plan;

	sha256(doc, strlen(doc), md);
	in.digest = md; in.digest_len = 32;
	in.data = (const uint8_t *)doc; in.data_len = strlen(doc); in.total_len = strlen(doc);
	cr_assert_eq(gw_sign_plan(&rsa, &in, &plan, err, sizeof(err)), CKR_OK, "%s", err);
	cr_assert_eq(plan.mech.mechanism, CKM_RSA_PKCS);
	cr_assert_eq(plan.tbs_len, 19 + 32);
	cr_assert_eq(plan.tbs[0], 0x30);
	cr_assert_eq(memcmp(plan.tbs + 19, md, 32), 0);
	cr_assert_eq(plan.signed_digest_len, 32);
	cr_assert_eq(memcmp(plan.signed_digest, md, 32), 0);
	cr_assert_eq(plan.sig_len, 256);
}

Test(signing, digest_must_match_whole_data)
{
	uint8_t md[32] = { 1 };
	struct gw_sign_input in = { .mechanism = CKM_SHA256_RSA_PKCS, .digest = md, .digest_len = 32,
		.data = (const uint8_t *)"abc", .data_len = 3, .total_len = 3 };
	struct gw_sign_plan plan;

	cr_assert_eq(gw_sign_plan(&rsa, &in, &plan, err, sizeof(err)), CKR_DATA_INVALID);
	/* Only a prefix came: the digest cannot be checked and is taken. */
	in.total_len = 100000;
	cr_assert_eq(gw_sign_plan(&rsa, &in, &plan, err, sizeof(err)), CKR_OK);
	/* Wrong digest length for the mechanism. */
	in.digest_len = 20;
	cr_assert_eq(gw_sign_plan(&rsa, &in, &plan, err, sizeof(err)), CKR_DATA_INVALID);
}

Test(signing, raw_rsa_pkcs_bounds_and_digestinfo_is_recorded)
{
	uint8_t di[51] = { 0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01,
		0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20 };
	uint8_t big[246];
	struct gw_sign_input in = { .mechanism = CKM_RSA_PKCS, .data = di, .data_len = 51, .total_len = 51 };
	struct gw_sign_plan plan;

	memset(di + 19, 0xab, 32);
	cr_assert_eq(gw_sign_plan(&rsa, &in, &plan, err, sizeof(err)), CKR_OK);
	cr_assert_eq(plan.signed_digest_len, 32);
	cr_assert_eq(plan.signed_digest[0], 0xab);
	memset(big, 1, sizeof(big));
	in.data = big; in.data_len = in.total_len = 246;   /* > 256 - 11 */
	cr_assert_eq(gw_sign_plan(&rsa, &in, &plan, err, sizeof(err)), CKR_DATA_LEN_RANGE);
	in.data_len = in.total_len = 245;
	cr_assert_eq(gw_sign_plan(&rsa, &in, &plan, err, sizeof(err)), CKR_OK);
	in.data_len = in.total_len = 0;
	cr_assert_eq(gw_sign_plan(&rsa, &in, &plan, err, sizeof(err)), CKR_DATA_LEN_RANGE);
	/* A raw mechanism needs all of its input. */
	in.data_len = 51; in.data = di; in.total_len = 60;
	cr_assert_eq(gw_sign_plan(&rsa, &in, &plan, err, sizeof(err)), CKR_DATA_INVALID);
}

Test(signing, pss_params_checked)
{
	uint8_t md[48] = { 0 };
	struct gw_sign_input in = { .mechanism = CKM_RSA_PKCS_PSS, .data = md, .data_len = 32,
		.total_len = 32, .has_pss = true,
		.pss = { .hashAlg = CKM_SHA256, .mgf = CKG_MGF1_SHA256, .sLen = 32 } };
	struct gw_sign_plan plan;

	cr_assert_eq(gw_sign_plan(&rsa, &in, &plan, err, sizeof(err)), CKR_OK);
	cr_assert_eq(plan.mech.mechanism, CKM_RSA_PKCS_PSS);
	cr_assert_eq(plan.mech.ulParameterLen, sizeof(CK_RSA_PKCS_PSS_PARAMS));
	cr_assert_eq(((CK_RSA_PKCS_PSS_PARAMS *)plan.mech.pParameter)->sLen, 32);
	in.pss.mgf = CKG_MGF1_SHA384;
	cr_assert_eq(gw_sign_plan(&rsa, &in, &plan, err, sizeof(err)), CKR_MECHANISM_PARAM_INVALID);
	in.pss.mgf = CKG_MGF1_SHA256;
	in.pss.sLen = 300;
	cr_assert_eq(gw_sign_plan(&rsa, &in, &plan, err, sizeof(err)), CKR_MECHANISM_PARAM_INVALID);
	in.pss.sLen = 0;
	in.data_len = in.total_len = 31;
	cr_assert_eq(gw_sign_plan(&rsa, &in, &plan, err, sizeof(err)), CKR_DATA_LEN_RANGE);
	in.has_pss = false;
	cr_assert_eq(gw_sign_plan(&rsa, &in, &plan, err, sizeof(err)), CKR_MECHANISM_PARAM_INVALID);
	/* SHA384_RSA_PKCS_PSS with SHA-256 params is refused. */
	in.mechanism = CKM_SHA384_RSA_PKCS_PSS;
	in.has_pss = true;
	in.digest = md; in.digest_len = 48; in.data = NULL; in.data_len = 0; in.total_len = 1000;
	cr_assert_eq(gw_sign_plan(&rsa, &in, &plan, err, sizeof(err)), CKR_MECHANISM_PARAM_INVALID);
}

Test(signing, ecdsa_and_eddsa)
{
	uint8_t md[32] = { 7 }, md65[65] = { 0 };
	struct gw_sign_input in = { .mechanism = CKM_ECDSA, .data = md, .data_len = 32, .total_len = 32 };
	struct gw_sign_plan plan;

	cr_assert_eq(gw_sign_plan(&ec, &in, &plan, err, sizeof(err)), CKR_OK);
	cr_assert_eq(plan.sig_len, 64);
	cr_assert_eq(plan.mech.mechanism, CKM_ECDSA);
	in.data = md65; in.data_len = in.total_len = 65;
	cr_assert_eq(gw_sign_plan(&ec, &in, &plan, err, sizeof(err)), CKR_DATA_LEN_RANGE);
	cr_assert_eq(gw_sign_plan(&rsa, &in, &plan, err, sizeof(err)), CKR_MECHANISM_INVALID);
	in.mechanism = CKM_EDDSA;
	in.data = (const uint8_t *)"hello"; in.data_len = in.total_len = 5;
	cr_assert_eq(gw_sign_plan(&ed, &in, &plan, err, sizeof(err)), CKR_OK);
	cr_assert_eq(plan.sig_len, 64);
	cr_assert_eq(plan.tbs_len, 5);
	cr_assert_eq(plan.signed_digest_len, 32);   /* SHA-256 of the message */
	cr_assert_eq(gw_sign_plan(&ec, &in, &plan, err, sizeof(err)), CKR_MECHANISM_INVALID);
}

/* ---- ECDSA signatures of a promised DER length ---- */

/* An EC key of curve nid as token.c finds one (CKA_EC_PARAMS = the OID),
 * and an OpenSSL key pair on that curve to sign and verify with. */
struct eckey {
	struct gw_seal_key k;
	uint8_t oid[16];
	EVP_PKEY *pkey;
	size_t half;
};

static void
eckey_new(struct eckey *e, int nid, unsigned bits)
{
	unsigned char *p = e->oid;
	int n;

	memset(e, 0, sizeof(*e));
	n = i2d_ASN1_OBJECT(OBJ_nid2obj(nid), &p);
	cr_assert_gt(n, 0);
	e->k.type = GW_KEY_EC;
	e->k.bits = bits;
	e->k.ec_params.p = e->oid;
	e->k.ec_params.len = (size_t)n;
	e->pkey = EVP_EC_gen(OBJ_nid2sn(nid));
	cr_assert(e->pkey);
	e->half = (bits + 7) / 8;
}

/* A fresh OpenSSL signature over md as PKCS#11 returns it: r || s. */
static void
raw_sign(const struct eckey *e, const uint8_t md[32], uint8_t *rs)
{
	EVP_PKEY_CTX *c = EVP_PKEY_CTX_new(e->pkey, NULL);
	uint8_t der[160];
	const uint8_t *p = der;
	size_t derlen = sizeof(der);
	ECDSA_SIG *sig;

	cr_assert(c && EVP_PKEY_sign_init(c) == 1);
	cr_assert_eq(EVP_PKEY_sign(c, der, &derlen, md, 32), 1);
	sig = d2i_ECDSA_SIG(NULL, &p, (long)derlen);
	cr_assert(sig);
	cr_assert_eq(BN_bn2binpad(ECDSA_SIG_get0_r(sig), rs, (int)e->half), (int)e->half);
	cr_assert_eq(BN_bn2binpad(ECDSA_SIG_get0_s(sig), rs + e->half, (int)e->half), (int)e->half);
	ECDSA_SIG_free(sig);
	EVP_PKEY_CTX_free(c);
}

/* OpenSSL's DER of r || s (what NSS sends, too), and whether it verifies. */
static size_t
openssl_der(const struct eckey *e, const uint8_t *rs, uint8_t *der)
{
	ECDSA_SIG *sig = ECDSA_SIG_new();
	int n;

	cr_assert(sig);
	ECDSA_SIG_set0(sig, BN_bin2bn(rs, (int)e->half, NULL), BN_bin2bn(rs + e->half, (int)e->half, NULL));
	n = i2d_ECDSA_SIG(sig, &der);
	ECDSA_SIG_free(sig);
	cr_assert_gt(n, 0);
	return (size_t)n;
}

static bool
raw_verifies(const struct eckey *e, const uint8_t md[32], const uint8_t *rs)
{
	EVP_PKEY_CTX *c = EVP_PKEY_CTX_new(e->pkey, NULL);
	uint8_t der[160];
	size_t n = openssl_der(e, rs, der);
	bool ok;

	cr_assert(c && EVP_PKEY_verify_init(c) == 1);
	ok = EVP_PKEY_verify(c, der, n, md, 32) == 1;
	EVP_PKEY_CTX_free(c);
	return ok;
}

Test(signing, ecdsa_der_length_is_openssls)
{
	uint8_t rs[64], der[80];

	/* Top bits, leading zeros, zero. */
	memset(rs, 0x7f, 64);
	cr_assert_eq(gw_ecdsa_der_len(rs, 64), 2 + 2 * 34);
	rs[0] = 0x80;
	cr_assert_eq(gw_ecdsa_der_len(rs, 64), 71);
	rs[32] = 0xff;
	cr_assert_eq(gw_ecdsa_der_len(rs, 64), 72);
	rs[0] = 0;
	rs[1] = 0x80;            /* 31 bytes, top bit set: 32 with the 0x00 */
	cr_assert_eq(gw_ecdsa_der_len(rs, 64), 71);
	rs[1] = 0x01;
	cr_assert_eq(gw_ecdsa_der_len(rs, 64), 70 - 1 + 1);
	memset(rs, 0, 32);
	cr_assert_eq(gw_ecdsa_der_len(rs, 64), 2 + 3 + 35);
	cr_assert_eq(gw_ecdsa_der_len(rs, 63), 0);
	cr_assert_eq(gw_ecdsa_der_len(rs, 0), 0);

	/* And for real signatures of every size, including P-521's long form. */
	{
		struct eckey keys[3];
		uint8_t md[32] = { 1, 2, 3 }, raw[132], d[160];

		eckey_new(&keys[0], NID_X9_62_prime256v1, 256);
		eckey_new(&keys[1], NID_secp384r1, 384);
		eckey_new(&keys[2], NID_secp521r1, 521);
		for (int k = 0; k < 3; k++) {
			for (int i = 0; i < 200; i++) {
				md[5] = (uint8_t)i;
				raw_sign(&keys[k], md, raw);
				cr_assert_eq(gw_ecdsa_der_len(raw, 2 * keys[k].half), openssl_der(&keys[k], raw, d));
			}
			EVP_PKEY_free(keys[k].pkey);
		}
	}
	(void)der;
}

Test(signing, ecdsa_target_lengths)
{
	struct eckey e;

	eckey_new(&e, NID_X9_62_prime256v1, 256);
	cr_assert_eq(gw_ecdsa_target_len(&e.k, 64), 71);
	cr_assert_eq(gw_ecdsa_target_len(&e.k, 66), 0, "halves not of the order's size");
	EVP_PKEY_free(e.pkey);
	eckey_new(&e, NID_secp384r1, 384);
	cr_assert_eq(gw_ecdsa_target_len(&e.k, 96), 103);
	EVP_PKEY_free(e.pkey);
	eckey_new(&e, NID_secp521r1, 521);
	cr_assert_eq(gw_ecdsa_target_len(&e.k, 132), 139);
	EVP_PKEY_free(e.pkey);
	cr_assert_eq(gw_ecdsa_target_len(&ec, 64), 71, "a key without CKA_EC_PARAMS: by its size");
	cr_assert_eq(gw_ecdsa_target_len(&rsa, 256), 0);
	cr_assert_eq(gw_ecdsa_target_len(&ed, 64), 0);
}

/* The s flip: (r, n - s) verifies in OpenSSL as (r, s) does, and gives
 * nearly every signature the promised length at once (P-256, P-384: all
 * but about 1 in 256; P-521: 3 in 4). */
static void
fits(int nid, unsigned bits, int min_fitting)
{
	struct eckey e;
	uint8_t md[32], raw[132], before[132], d[160];
	size_t len, target;
	int fitting = 0, flipped = 0;

	eckey_new(&e, nid, bits);
	len = 2 * e.half;
	target = gw_ecdsa_target_len(&e.k, len);
	cr_assert_gt(target, 0);
	for (int i = 0; i < 200; i++) {
		int rv;

		sha256(&i, sizeof(i), md);
		raw_sign(&e, md, raw);
		memcpy(before, raw, len);
		rv = gw_ecdsa_fit(&e.k, raw, len, target);
		cr_assert_geq(rv, 0);
		cr_assert_eq(memcmp(raw, before, e.half), 0, "r is never changed");
		cr_assert(raw_verifies(&e, md, raw), "the fitted signature verifies (%s, #%d)",
		          OBJ_nid2sn(nid), i);
		if (rv == 1) {
			fitting++;
			cr_assert_eq(openssl_der(&e, raw, d), target);
			if (memcmp(raw, before, len) != 0)
				flipped++;
		} else {
			cr_assert_eq(memcmp(raw, before, len), 0, "a miss leaves the signature as it was");
		}
	}
	cr_assert_geq(fitting, min_fitting, "%s: %d of 200 fitted", OBJ_nid2sn(nid), fitting);
	cr_assert_gt(flipped, 0, "%s: some fitted only by the flip", OBJ_nid2sn(nid));
	/* s not below n is refused, not flipped. */
	memset(raw + e.half, 0xff, e.half);
	raw[0] = 0;              /* r short: no length fits as it is */
	raw[1] = 0;
	raw[2] = 1;
	cr_assert_eq(gw_ecdsa_fit(&e.k, raw, len, target), -1);
	memset(raw + e.half, 0, e.half);
	cr_assert_eq(gw_ecdsa_fit(&e.k, raw, len, target), -1);
	EVP_PKEY_free(e.pkey);
}

Test(signing, ecdsa_s_flip_fits_and_verifies)
{
	fits(NID_X9_62_prime256v1, 256, 190);
	fits(NID_secp384r1, 384, 190);
	fits(NID_secp521r1, 521, 100);
}

Test(signing, ecdsa_placeholder_has_the_promised_length_and_verifies_nothing)
{
	struct eckey e;
	uint8_t md[32] = { 9 }, raw[132], d[160];
	size_t target;

	eckey_new(&e, NID_X9_62_prime256v1, 256);
	target = gw_ecdsa_target_len(&e.k, 64);
	for (int i = 0; i < 100; i++) {
		cr_assert_eq(gw_ecdsa_placeholder(&e.k, raw, 64, target), 0);
		cr_assert_eq(openssl_der(&e, raw, d), 71);
		cr_assert_not(raw_verifies(&e, md, raw));
	}
	EVP_PKEY_free(e.pkey);
	eckey_new(&e, NID_secp521r1, 521);
	target = gw_ecdsa_target_len(&e.k, 132);
	cr_assert_eq(gw_ecdsa_placeholder(&e.k, raw, 132, target), 0);
	cr_assert_eq(openssl_der(&e, raw, d), 139);
	EVP_PKEY_free(e.pkey);
	cr_assert_eq(gw_ecdsa_placeholder(&rsa, raw, 64, 71), -1);
}
