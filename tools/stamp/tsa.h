/*
 * RFC 3161 timestamps for `sealctl stamp --tsa` (docs/stamp.md, PAdES-B-T):
 * the request for a timestamp of the SignerInfo's signature value, sent to
 * the TSA by HTTP POST, the reply checked, and the token that goes into the
 * SignerInfo's unsigned attributes (id-aa-signatureTimeStampToken); and the
 * check `sealctl verify` makes of a token found in a file. OpenSSL's TS_*
 * API reads and writes the DER.
 */
#ifndef SG_TSA_H
#define SG_TSA_H

#include <stddef.h>
#include <stdint.h>
#include <openssl/x509.h>

/* Bytes of /Contents reserved for the token on top of the signature's
 * own room: a token with its TSA certificate (and a chain of one or two
 * intermediates) is 2 to 6 KiB. A larger one is refused, said. */
#define SG_TSA_RESERVE 8192
/* Seconds the whole exchange with the TSA may take (connect included). */
#define SG_TSA_TIMEOUT 15
/* Bytes of the TSA's reply read at most: a reply carrying a token larger
 * than the reserve is refused anyway, this bounds what is buffered. */
#define SG_TSA_REPLY_MAX 65536

/* What a token says (for verify): the time and the TSA's name. */
struct sg_tsa_info {
	char time[64];            /* "2026-12-03 18:40:12 UTC", "" when unread */
	char tsa[512];            /* the TSTInfo's tsa name, else the signer's subject */
};

/* Asks the TSA at url for a timestamp of SHA-256(sig) (a 64-bit nonce,
 * certReq true), waiting at most timeout seconds, and checks the reply:
 * status granted, the nonce and the message imprint the request's, the
 * token's signature by its certificate, that certificate for
 * id-kp-timeStamping only (RFC 3161 2.3). *token: the TimeStampToken's
 * DER (OPENSSL_free). 0, or -1 with err. */
int sg_tsa_stamp(const char *url, const uint8_t *sig, size_t siglen, long timeout,
                 uint8_t **token, size_t *token_len, char *err, size_t errlen);

/* Checks a TimeStampToken (DER, len bytes) found over signature value
 * sig: its imprint SHA-256(sig), its signature by its own certificate (a
 * timestamping one), and with store that certificate chained to it.
 * nonce, when not NULL, must be the token's. info is filled as far as
 * the token reads. 0 holds, -1 does not (err says why). */
int sg_tsa_check_token(const uint8_t *der, size_t len, const uint8_t *sig, size_t siglen,
                       const ASN1_INTEGER *nonce, X509_STORE *store, struct sg_tsa_info *info,
                       char *err, size_t errlen);

#endif
