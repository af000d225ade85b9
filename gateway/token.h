/*
 * The backend token: loads its PKCS#11 module, logs in once with the token
 * PIN, keeps a pool of sessions so signatures run in parallel without a
 * global lock, finds seal keys by PKCS#11 URI and signs with them. Backend
 * handles never leave this file's callers (the gateway).
 */
#ifndef GW_TOKEN_H
#define GW_TOKEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <p11-kit/pkcs11.h>

#include "config.h"

struct gw_token;

enum gw_key_type { GW_KEY_RSA = 1, GW_KEY_EC = 2, GW_KEY_ED25519 = 3 };

struct gw_bytes { uint8_t *p; size_t len; };

/* What the gateway knows of one seal key. Immutable once found. */
struct gw_seal_key {
	char *uri;                    /* as given in the policy */
	enum gw_key_type type;
	unsigned bits;                /* modulus bits, or field bits for EC */
	struct gw_bytes id;           /* CKA_ID */
	char *label;                  /* CKA_LABEL of the private key */
	struct gw_bytes cert;         /* certificate DER (CKA_VALUE), found by CKA_ID */
	struct gw_bytes subject, issuer, serial;
	struct gw_bytes modulus, public_exponent;   /* RSA */
	struct gw_bytes ec_params, ec_point;        /* EC, Ed25519 */
	CK_OBJECT_HANDLE priv;        /* backend handle: gateway-internal only */
	unsigned gen;                 /* the token's generation priv was found in (token.c):
	                               * after a token event it names nothing of ours */
	bool always_auth;             /* CKA_ALWAYS_AUTHENTICATE: token PIN per signature */
};

/* Loads cfg->backend_module, finds cfg->backend_token, logs in as CKU_USER
 * with pin (never retried on failure; refuses when the token reports
 * CKF_USER_PIN_FINAL_TRY or CKF_USER_PIN_LOCKED), opens the session pool. */
int gw_token_open(const struct gw_config *cfg, const char *pin,
                  struct gw_token **out, char *err, size_t errlen);
void gw_token_close(struct gw_token **tok);

/* Finds the private key named by uri (RFC 7512: object=, id=, type=private
 * implied) and its certificate (same CKA_ID) and public data. Returns 0 and
 * a new key (free with gw_seal_key_free) or -1 with err. */
int gw_token_find_key(struct gw_token *tok, const char *uri,
                      struct gw_seal_key **out, char *err, size_t errlen);
void gw_seal_key_free(struct gw_seal_key **key);

/* Signs in on a pooled session: C_SignInit(mech, key) + C_Sign.
 * sig/siglen in/out as in PKCS#11 (sig must be large enough). Thread safe;
 * blocks only while all pooled sessions are busy.
 * The key's object handle is used only in the token generation it was
 * found in: when the token is back after an event (removed, inserted,
 * reconnected) every known key is found again by class, CKA_ID and label
 * and kept for the generation (a signature that finds none looks again).
 * A handle is kept only once its object's CKA_CLASS, CKA_KEY_TYPE, CKA_ID
 * and public part (RSA modulus, EC/EdDSA curve) were read and found to be
 * the key's; it is then used for the rest of the generation without being
 * read again (PKCS#11 keeps a handle naming its object while the session
 * and the object live; an event that ends either ends the generation).
 * A handle that names another object is looked up once more, and when the
 * token still offers another key, the signature is refused with
 * CKR_KEY_CHANGED before C_SignInit. A kept handle that C_SignInit refuses
 * as naming no key is forgotten, and the key found again and checked. */
CK_RV gw_token_sign(struct gw_token *tok, const struct gw_seal_key *key,
                    CK_MECHANISM *mech, const uint8_t *in, size_t inlen,
                    uint8_t *sig, size_t *siglen);

/* True while the backend token is present and logged in. */
bool gw_token_present(struct gw_token *tok);

/* Token description for status output ("SoftHSM slot 0x1234, label Acme"). */
const char *gw_token_describe(struct gw_token *tok);

/* Refuses (-1, err) a login when the token reports the user PIN locked or
 * on its final try; warns on CKF_USER_PIN_COUNT_LOW. 0 = go ahead. */
int gw_token_check_pin_flags(CK_FLAGS flags, char *err, size_t errlen);

/* "The token went away": marks it absent (gw_token_present false) and
 * abandons the pool. Called by the signers on CKR_DEVICE_REMOVED & co.,
 * and by a card watcher. Idempotent. */
void gw_token_lost(struct gw_token *tok, const char *why);

/* "Maybe it is back": if absent, finds the token again, checks it is the
 * same token as at first load (binding, below), re-checks the PIN flags,
 * logs in once and reopens the pool. At most one try a second and never
 * after a failed login. CKR_OK when present afterwards;
 * CKR_TOKEN_NOT_RECOGNIZED when another token/card is there (refused,
 * no PIN sent to it); CKR_PIN_* when the PIN is not to be tried. */
CK_RV gw_token_reconnect(struct gw_token *tok);

/* ---- cards: binding, presence, events ----
 *
 * Binding: at the first login the token's serial number and the set of its
 * certificates (SHA-256 over their sorted DER hashes; certificates are
 * public, so this needs no login) are recorded. A reconnect to a token
 * with another serial or other certificates is refused before any PIN is
 * sent: a seal lives on one card, and a different card in the reader is
 * not that seal. The gateway keeps the binding in its store, so it holds
 * across restarts too (gw_token_open_bound). */

struct gw_token_binding {
	char serial[20];              /* CK_TOKEN_INFO serialNumber, trimmed */
	uint8_t certs[32];            /* SHA-256 over the sorted certificate hashes */
	unsigned ncerts;
};

/* gw_token_open, but the token must be the one prior describes (a binding
 * remembered from an earlier run): any other is refused before its PIN
 * is sent, and the call returns -2 with err saying which token was found.
 * With prior and wait, a token that is not there (no matching token in
 * any slot: a card not inserted) is no error: the call returns 1 with the
 * token absent (err says what was looked for), and the first reconnect
 * (card watcher, a signer, the ticker) checks what comes against prior
 * and logs in. Keys are then known only from gw_token_know_key.
 * prior NULL: gw_token_open. */
int gw_token_open_bound(const struct gw_config *cfg, const char *pin,
                        const struct gw_token_binding *prior, bool wait,
                        struct gw_token **out, char *err, size_t errlen);

/* ---- known keys: the public part of each key found, for a token that
 * is away ----
 * Every key gw_token_find_key finds on the token is remembered (uri,
 * certificate, public key, CKA_ID and label; no handle, nothing secret).
 * While the token is not present, gw_token_find_key answers from them with
 * priv = CK_INVALID_HANDLE (the signer finds the key again by CKA_ID and
 * label once the token is back; the binding makes sure it is the same
 * token). The gateway keeps them in its store, so a gateway can start
 * without its card (docs/smartcard.md). */

/* Remembers key (copied; priv dropped), replacing one of the same uri. 0 or -1. */
int gw_token_know_key(struct gw_token *tok, const struct gw_seal_key *key);
/* Calls fn for each known key, under the token's lock (fn must not call
 * the token). Returns how many. */
size_t gw_token_known_keys(struct gw_token *tok,
                           void (*fn)(void *arg, const struct gw_seal_key *key), void *arg);

/* The public part of a key as bytes, for the store (malloc'ed; NULL when
 * out of memory), and back: -1 with err for anything malformed. */
uint8_t *gw_seal_key_encode(const struct gw_seal_key *key, size_t *len);
int gw_seal_key_decode(const char *uri, const uint8_t *p, size_t len,
                       struct gw_seal_key **out, char *err, size_t errlen);

/* The binding in force (set at the first login): false before any. */
bool gw_token_get_binding(struct gw_token *tok, struct gw_token_binding *out);

enum gw_token_event {
	GW_TOKEN_REMOVED = 1,     /* it went away (card pulled, device error) */
	GW_TOKEN_INSERTED,        /* it is back and logged in again */
	GW_TOKEN_REFUSED,         /* another token/card is there: refused */
};

/* Called outside the token's locks, from whichever thread saw the change
 * (a signer, the card watcher). detail: words for people. The gateway
 * writes an audit record from it; the hook must not call back into the
 * token. Set once before other threads use the token. */
typedef void (*gw_token_event_fn)(void *arg, enum gw_token_event ev, const char *detail);
void gw_token_set_event_hook(struct gw_token *tok, gw_token_event_fn fn, void *arg);

/* Why the token is not usable now, for status output ("card removed from
 * reader 'X'", "a different card is in the reader ... refused", "PIN
 * refused ..."); "" while present. Copies into buf. */
void gw_token_reason(struct gw_token *tok, char *buf, size_t len);

/* True when the backend module is OpenSC (cards behind pcsc-lite): the
 * gateway then runs a card watcher (gateway/cardwatch.h). */
bool gw_token_is_pcsc(struct gw_token *tok);

/* The slot description of the token's slot at its last login, blanks
 * trimmed: for OpenSC, the PC/SC reader name (at most 64 characters, so
 * possibly a prefix of it). Copies into buf. */
void gw_token_slot_name(struct gw_token *tok, char *buf, size_t len);

/* The card watcher saw a card arrive or leave: a refusal of the card that
 * was there before is forgotten, so the next reconnect looks afresh (and a
 * refusal of a new foreign card is reported again). */
void gw_token_card_changed(struct gw_token *tok);

/* Serial number recorded at first login ("" before). Copies into buf. */
void gw_token_bound_serial(struct gw_token *tok, char *buf, size_t len);

/* ---- secrets sealed on the token (auth: TOTP secrets; totp.h) ----
 * AES-256-GCM under a secret key that lives on the backend token with
 * label `label`: generated there on first use (CKA_TOKEN, CKA_PRIVATE,
 * CKA_SENSITIVE, not CKA_EXTRACTABLE) and never read out. A sealed value is
 * iv (12) || ciphertext || tag (16); aad is bound in. */
#define GW_TOKEN_SEAL_OVERHEAD (12 + 16)
/* out must hold inlen + GW_TOKEN_SEAL_OVERHEAD; *outlen in/out. 0 or -1 with err. */
int gw_token_seal(struct gw_token *tok, const char *label, const uint8_t *aad, size_t aadlen,
                  const uint8_t *in, size_t inlen, uint8_t *out, size_t *outlen,
                  char *err, size_t errlen);
/* Opens a sealed value; -1 with err when the key is not on this token or
 * the value or aad was altered (GCM tag). out is wiped on failure. */
int gw_token_unseal(struct gw_token *tok, const char *label, const uint8_t *aad, size_t aadlen,
                    const uint8_t *in, size_t inlen, uint8_t *out, size_t *outlen,
                    char *err, size_t errlen);

/* ---- a site's key pair for secrets sealed to it (totp.h) ----
 * RSA-3072 with label `label`, generated on the backend token on first
 * use (private key CKA_SENSITIVE, not CKA_EXTRACTABLE, decrypt only).
 * Anyone may seal to its public key; only this token opens. */
/* The public key as SubjectPublicKeyInfo DER (*derlen in: der's size, at
 * least 600 bytes). create: generate the pair when absent. 0 or -1 with err. */
int gw_token_kem_public(struct gw_token *tok, const char *label, bool create, uint8_t *der,
                        size_t *derlen, char *err, size_t errlen);
/* RSA-OAEP (SHA-1, MGF1-SHA-1: what SoftHSM and most cards do) decryption of in with the private key;
 * *outlen in/out. out is wiped on failure. 0 or -1 with err. */
int gw_token_kem_open(struct gw_token *tok, const char *label, const uint8_t *in, size_t inlen,
                      uint8_t *out, size_t *outlen, char *err, size_t errlen);


/* ---- the device CA's key pair (device.c, docs/deployment.md) ----
 * EC P-256 with label `label` and a random CKA_ID of its own, generated on
 * the backend token on first use (private key CKA_SENSITIVE, not
 * CKA_EXTRACTABLE, sign only). Certificates are signed through the token. */
/* The public key as SubjectPublicKeyInfo DER (*derlen in: der's size, at
 * least 128 bytes). create: generate the pair when absent. 0 or -1 with err. */
int gw_token_ca_public(struct gw_token *tok, const char *label, bool create, uint8_t *der,
                       size_t *derlen, char *err, size_t errlen);
/* ECDSA over a SHA-256 digest with the private key, as DER ECDSA-Sig-Value
 * (*derlen in/out, at least 72 bytes). 0 or -1 with err. */
int gw_token_ca_sign(struct gw_token *tok, const char *label, const uint8_t digest[32],
                     uint8_t *der, size_t *derlen, char *err, size_t errlen);

#endif
