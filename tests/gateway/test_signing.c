/* Unit tests of the sign path's mechanism translation (gateway/signing.c). */
#include <criterion/criterion.h>
#include <string.h>
#include <openssl/evp.h>

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
