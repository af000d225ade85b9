/*
 * The TOTP second factor (RFC 6238 through liboath: HMAC-SHA1, 6 digits,
 * 30 s steps, ±1 step) and its secrets in the store. A secret is sealed
 * once per site, to a key pair whose private half never leaves that
 * site's token, with the account bound in as associated data: the store
 * alone reveals no secret, and a copy moved to another account does not
 * open. A code is accepted once per account for the whole group: the step
 * counter of the last accepted code only grows.
 */
#ifndef GW_TOTP_H
#define GW_TOTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "store.h"
#include "token.h"

#define GW_TOTP_SECRET_LEN   20   /* 160 bits, RFC 4226 section 4 */
#define GW_TOTP_SECRET_MIN   16
#define GW_TOTP_SECRET_MAX   64
#define GW_TOTP_DIGITS       6
#define GW_TOTP_STEP         30
#define GW_TOTP_WINDOW       1    /* steps either side that are accepted */
#define GW_TOTP_SKEW_STEPS   20   /* searched further only to name a wrong clock */
#define GW_TOTP_WRAP_LABEL   "sealgate-totp-wrap"   /* secrets enrolled before copies per site */
#define GW_TOTP_KEM_LABEL    "sealgate-totp-site"   /* the site's key pair (token.h, "kem") */

enum gw_totp_result {
	GW_TOTP_OK = 0,
	GW_TOTP_WRONG,                /* not a code of this secret near now */
	GW_TOTP_REPLAYED,             /* a code of a step already used (or older) */
	GW_TOTP_SKEWED,               /* a real code, but of a time too far from now */
	GW_TOTP_NOT_ENROLLED,
	GW_TOTP_ERROR,                /* store or token error */
};

/* True when code is exactly GW_TOTP_DIGITS ASCII digits. */
bool gw_totp_syntax(const char *code, size_t len);

/* Pure check of code against secret at now. last_counter: the step of the
 * last code accepted for the account (0 = none). On GW_TOTP_OK *counter is
 * the code's step; on GW_TOTP_SKEWED *skew is how far the code's time is
 * from now, in seconds (negative: the authenticator is behind). */
enum gw_totp_result gw_totp_check(const uint8_t *secret, size_t len, time_t now,
                                  const char *code, uint64_t last_counter,
                                  uint64_t *counter, long *skew);

/* The code of secret at t (tests, enrollment checks). 0 / -1. */
int gw_totp_generate(const uint8_t *secret, size_t len, time_t t, char out[GW_TOTP_DIGITS + 1]);

/* ---- the store (table auth_totp, created here) ---- */

int gw_totp_store_init(struct gw_store *st, char *err, size_t errlen);
/* 1 enrolled, 0 not, -1 store error. */
int gw_totp_enrolled(struct gw_store *st, const char *user);
/* Seals secret for every site (gw_totp_seal_sites) and stores it as
 * user's active secret (replacing an earlier one); counter is the step of the code that confirmed it, so that
 * code cannot be used again. 0, or -1 with err. */
int gw_totp_store_set(struct gw_store *st, struct gw_token *tok, const char *user,
                      const uint8_t *secret, size_t len, uint64_t counter,
                      char *err, size_t errlen);
/* The format before copies per site (a secret sealed with this token's
 * secret key; still opened, no longer written by enrolment): in two
 * halves, so that storing can run inside an audit
 * record's transaction (gw_audit_record_with) while sealing, on the
 * token, does not: seal fills sealed (*sealed_len in: its size, at least
 * GW_TOTP_SEALED_MAX; out: the length), put stores it. 0, or -1 with err. */
#define GW_TOTP_SEALED_MAX (GW_TOTP_SECRET_MAX + 64)
int gw_totp_seal(struct gw_token *tok, const char *user, const uint8_t *secret, size_t len,
                 uint8_t *sealed, size_t *sealed_len, char *err, size_t errlen);
int gw_totp_store_put(struct gw_store *st, const char *user, const uint8_t *sealed,
                      size_t sealed_len, uint64_t counter, char *err, size_t errlen);
/* ---- one copy per site (docs/authentication.md, "Across sites") ----
 * Every site has a key pair on its token (GW_TOTP_KEM_LABEL) whose public
 * key it publishes in the store; a secret is sealed to each site whose
 * key is pinned here (totp_site_keys: the SHA-256 of each site's key,
 * kept outside the store) and to this site's own, so that every site opens
 * its copy on its own token and no site needs another's. */
/* At start: this gateway's site, the pins (pins_path, or NULL: none), and
 * (with a token) the site's key pair, generated on first use and
 * published; without a token, the key pair of key_path (totp_key_file, a
 * management gateway's; NULL: none, so no code is checked here). 0, or -1
 * with err. */
int gw_totp_sites_start(struct gw_store *st, struct gw_token *tok, const char *site,
                        const char *pins_path, const char *key_path, char *err, size_t errlen);
/* Whether a TOTP code can be checked here: a token, or a key file. */
bool gw_totp_opens_here(struct gw_token *tok);
struct gw_totp_copies;
/* Seals secret to every site's key (this site's from tok, may be NULL;
 * the others' from the store, checked against their pins: a key that is
 * not its pin refuses the whole sealing). *out to free with
 * gw_totp_copies_free. 0, or -1 with err. */
int gw_totp_seal_sites(struct gw_store *st, struct gw_token *tok, const char *user,
                       const uint8_t *secret, size_t len, struct gw_totp_copies **out,
                       char *err, size_t errlen);
/* Stores them as user's secret (replacing an earlier one and its copies),
 * counter its last step; may run inside an audit record's transaction. */
int gw_totp_store_put_sites(struct gw_store *st, const char *user,
                            const struct gw_totp_copies *cp, uint64_t counter,
                            char *err, size_t errlen);
void gw_totp_copies_free(struct gw_totp_copies **cp);

/* Removes user's secret (reset by a seal admin). 1 removed, 0 none, -1 error. */
int gw_totp_store_delete(struct gw_store *st, const char *user);
/* Checks code for user at now: opens this site's copy on tok (or a
 * secret sealed before copies, with the token's secret key), checks it,
 * and records its step in the one row of the group so that it is never
 * accepted again, at any site (atomically: of two concurrent uses of one
 * code, one wins). Then seals a copy for each pinned site that lacks one.
 * *skew as in gw_totp_check. */
enum gw_totp_result gw_totp_verify(struct gw_store *st, struct gw_token *tok, const char *user,
                                   const char *code, time_t now, long *skew,
                                   char *err, size_t errlen);

#endif
