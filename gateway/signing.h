/*
 * What the token signs for each mechanism an application may use
 * (docs/protocol.md, "sign"): maps the application's mechanism and inputs
 * to a backend mechanism and input, checking every length. Pure.
 */
#ifndef GW_SIGNING_H
#define GW_SIGNING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <p11-kit/pkcs11.h>

#include "token.h"

struct gw_sign_input {
	CK_MECHANISM_TYPE mechanism;      /* the application's */
	bool has_pss;
	CK_RSA_PKCS_PSS_PARAMS pss;
	const uint8_t *digest; size_t digest_len;
	const uint8_t *data; size_t data_len;   /* data, or its first 64 KiB */
	uint64_t total_len;               /* whole data length */
};

struct gw_sign_plan {
	CK_MECHANISM mech;                /* backend mechanism (points into pss) */
	CK_RSA_PKCS_PSS_PARAMS pss;
	uint8_t buf[128];                 /* DigestInfo, when built here */
	const uint8_t *tbs; size_t tbs_len;   /* what the token signs */
	uint8_t signed_digest[64];        /* the hash being signed, for the record */
	size_t signed_digest_len;
	size_t sig_len;                   /* signature length */
};

/* True when mech can be used with a key of this type. */
bool gw_mech_fits_key(CK_MECHANISM_TYPE mech, enum gw_key_type type);
/* Mechanisms the module may offer for a key type (static list). */
size_t gw_mech_for_key(enum gw_key_type type, const CK_MECHANISM_TYPE **list);
/* Name for logs and audit ("SHA256_RSA_PKCS"); "unknown" otherwise. */
const char *gw_mech_name(CK_MECHANISM_TYPE mech);

/* Fills plan from in for key. Returns CKR_OK, or CKR_MECHANISM_INVALID,
 * CKR_MECHANISM_PARAM_INVALID, CKR_DATA_LEN_RANGE, CKR_DATA_INVALID with a
 * reason in err. plan keeps pointers into in and into itself: do not move
 * it after the call. */
CK_RV gw_sign_plan(const struct gw_seal_key *key, const struct gw_sign_input *in,
                   struct gw_sign_plan *plan, char *err, size_t errlen);

#endif

/* True when the signature planned for in signs the document whose SHA-256
 * is doc: the hash being signed is doc itself, or the data is a complete
 * CMS signed-attributes SET whose messageDigest is doc (the module sends
 * the data with hash-and-sign mechanisms). */
bool gw_sign_binds_document(const struct gw_sign_input *in, const struct gw_sign_plan *plan,
                            const uint8_t doc[32]);
