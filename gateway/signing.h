/*
 * What the token signs for each mechanism an application may use
 * (docs/protocol.md, "sign"): maps the application's mechanism and inputs
 * to a backend mechanism and input, checking every length; and the DER
 * length of ECDSA signatures a size probe promised. Pure but for the
 * placeholder's random bytes.
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

/* True when the signature planned for in signs the document whose SHA-256
 * is doc: the hash being signed is doc itself, or the data is a complete
 * CMS signed-attributes SET whose messageDigest is doc (the module sends
 * the data with hash-and-sign mechanisms). */
bool gw_sign_binds_document(const struct gw_sign_input *in, const struct gw_sign_plan *plan,
                            const uint8_t doc[32]);

/* ECDSA signatures of a promised DER length (docs/workflow.md, "Size
 * probes"). Clients such as NSS DER-encode the token's raw r||s as
 * ECDSA-Sig-Value, whose length depends on r and s; poppler 22.12 wants
 * the real signature exactly as long as its probe's. */

/* Token signatures tried for one signature of the promised length before
 * the gateway gives up (none released, nothing spent). */
#define GW_ECDSA_FIT_TRIES 16

/* DER length of ECDSA-Sig-Value { r INTEGER, s INTEGER } for the raw r||s
 * (len bytes, two halves), as NSS and OpenSSL encode it; 0 when len is
 * odd or 0. */
size_t gw_ecdsa_der_len(const uint8_t *rs, size_t len);

/* The DER length the gateway promises for key's raw signatures of len
 * bytes: one INTEGER as long as the curve allows, the other one byte
 * shorter when the order fills its top byte (P-256: 71, P-384: 103), both
 * as long as the curve allows otherwise (P-521: 139). 0 when key is not
 * an EC key of a curve OpenSSL knows. */
size_t gw_ecdsa_target_len(const struct gw_seal_key *key, size_t len);

/* Makes the raw r||s rs (len bytes) one of DER length target: as it is, or
 * with s replaced by n - s (n the curve order), which signs the same
 * digest. 1 when rs now has that length, 0 when neither does (sign
 * again), -1 when s is not in [1, n-1] or out of memory. */
int gw_ecdsa_fit(const struct gw_seal_key *key, uint8_t *rs, size_t len, size_t target);

/* A size probe's placeholder for an EC key: a random r||s (len bytes,
 * r and s in [1, n-1]) of DER length target, which signs no digest
 * anyone asked for. 0, or -1. */
int gw_ecdsa_placeholder(const struct gw_seal_key *key, uint8_t *rs, size_t len, size_t target);

#endif
