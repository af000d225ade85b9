/*
 * TOTP codes (liboath) and the sealed secrets of table auth_totp. The
 * secret is unsealed on the backend token for each check and wiped right
 * after; it is never logged and never leaves the gateway.
 */
#include "totp.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <liboath/oath.h>
#include <sodium.h>

#include "protocol.h"

#define SEALED_MAX GW_TOTP_SEALED_MAX
#define AAD_PREFIX "sealgate-totp-v1:"

static pthread_once_t oath_once = PTHREAD_ONCE_INIT;
static int oath_ok;

static void
oath_start(void)
{
	oath_ok = oath_init() == OATH_OK;
}

bool
gw_totp_syntax(const char *code, size_t len)
{
	if (code == NULL || len != GW_TOTP_DIGITS)
		return false;
	for (size_t i = 0; i < len; i++)
		if (code[i] < '0' || code[i] > '9')
			return false;
	return true;
}

int
gw_totp_generate(const uint8_t *secret, size_t len, time_t t, char out[GW_TOTP_DIGITS + 1])
{
	pthread_once(&oath_once, oath_start);
	if (!oath_ok)
		return -1;
	return oath_totp_generate((const char *)secret, len, t, GW_TOTP_STEP, 0, GW_TOTP_DIGITS,
	                          out) == OATH_OK ? 0 : -1;
}

enum gw_totp_result
gw_totp_check(const uint8_t *secret, size_t len, time_t now, const char *code,
              uint64_t last_counter, uint64_t *counter, long *skew)
{
	int pos = 0, rc;
	uint64_t ctr = 0;

	*counter = 0;
	*skew = 0;
	if (!gw_totp_syntax(code, code ? strlen(code) : 0))
		return GW_TOTP_WRONG;
	pthread_once(&oath_once, oath_start);
	if (!oath_ok)
		return GW_TOTP_ERROR;
	/* One search over the wide window: a match within ±1 step is a code;
	 * further out it is a real code from a clock that is wrong, which
	 * deserves a message of its own rather than "wrong code". */
	rc = oath_totp_validate3((const char *)secret, len, now, GW_TOTP_STEP, 0,
	                         GW_TOTP_SKEW_STEPS, &pos, &ctr, code);
	if (rc < 0)
		return rc == OATH_INVALID_OTP ? GW_TOTP_WRONG : GW_TOTP_ERROR;
	if (pos > GW_TOTP_WINDOW || pos < -GW_TOTP_WINDOW) {
		*skew = (long)pos * GW_TOTP_STEP;
		return GW_TOTP_SKEWED;
	}
	if (ctr <= last_counter)
		return GW_TOTP_REPLAYED;
	*counter = ctr;
	return GW_TOTP_OK;
}

/* ---- the store (its TOTP secrets repository, gw_store_totp_*) ---- */

int
gw_totp_store_init(struct gw_store *st, char *err, size_t errlen)
{
	return gw_store_totp_init(st, err, errlen);
}

int
gw_totp_enrolled(struct gw_store *st, const char *user)
{
	return gw_store_totp_enrolled(st, user);
}

static size_t
aad_of(const char *user, uint8_t *aad, size_t max)
{
	int n = snprintf((char *)aad, max, "%s%s", AAD_PREFIX, user);

	return n < 0 || (size_t)n >= max ? 0 : (size_t)n;
}

int
gw_totp_seal(struct gw_token *tok, const char *user, const uint8_t *secret, size_t len,
             uint8_t *sealed, size_t *sealed_len, char *err, size_t errlen)
{
	uint8_t aad[SG_NAME_MAX + 32];
	size_t aadlen;

	if (len < GW_TOTP_SECRET_MIN || len > GW_TOTP_SECRET_MAX || tok == NULL ||
	    *sealed_len < SEALED_MAX) {
		snprintf(err, errlen, tok == NULL ? "no backend token to seal the secret with"
		                                  : "a TOTP secret has 16 to 64 bytes");
		return -1;
	}
	aadlen = aad_of(user, aad, sizeof(aad));
	if (aadlen == 0 ||
	    gw_token_seal(tok, GW_TOTP_WRAP_LABEL, aad, aadlen, secret, len, sealed, sealed_len,
	                  err, errlen) < 0)
		return -1;
	return 0;
}

int
gw_totp_store_put(struct gw_store *st, const char *user, const uint8_t *sealed, size_t sealed_len,
                  uint64_t counter, char *err, size_t errlen)
{
	return gw_store_totp_put(st, user, sealed, sealed_len, counter, err, errlen);
}

int
gw_totp_store_set(struct gw_store *st, struct gw_token *tok, const char *user,
                  const uint8_t *secret, size_t len, uint64_t counter, char *err, size_t errlen)
{
	uint8_t sealed[SEALED_MAX];
	size_t sealed_len = sizeof(sealed);
	int rv;

	rv = gw_totp_seal(tok, user, secret, len, sealed, &sealed_len, err, errlen);
	if (rv == 0)
		rv = gw_totp_store_put(st, user, sealed, sealed_len, counter, err, errlen);
	return rv;
}

int
gw_totp_store_delete(struct gw_store *st, const char *user)
{
	return gw_store_totp_delete(st, user);
}

enum gw_totp_result
gw_totp_verify(struct gw_store *st, struct gw_token *tok, const char *user, const char *code,
               time_t now, long *skew, char *err, size_t errlen)
{
	uint8_t sealed[SEALED_MAX], secret[SEALED_MAX], aad[SG_NAME_MAX + 32];
	size_t sealed_len = sizeof(sealed), secret_len = sizeof(secret), aadlen;
	uint64_t last = 0, ctr = 0;
	enum gw_totp_result res = GW_TOTP_ERROR;
	int rc;

	*skew = 0;
	rc = gw_store_totp_get(st, user, sealed, &sealed_len, &last);
	if (rc <= 0) {
		if (rc < 0)
			snprintf(err, errlen, "the TOTP store could not be read");
		return rc == 0 ? GW_TOTP_NOT_ENROLLED : GW_TOTP_ERROR;
	}
	aadlen = aad_of(user, aad, sizeof(aad));
	if (tok == NULL || aadlen == 0 ||
	    gw_token_unseal(tok, GW_TOTP_WRAP_LABEL, aad, aadlen, sealed, sealed_len,
	                    secret, &secret_len, err, errlen) < 0) {
		if (tok == NULL)
			snprintf(err, errlen, "no backend token to open the TOTP secret with");
		goto out;
	}
	res = gw_totp_check(secret, secret_len, now, code, last, &ctr, skew);
	if (res == GW_TOTP_OK) {
		rc = gw_store_totp_advance(st, user, ctr);
		if (rc < 0) {
			snprintf(err, errlen, "the TOTP store could not be written");
			res = GW_TOTP_ERROR;
		} else if (rc == 0) {
			res = GW_TOTP_REPLAYED;
		}
	}
out:
	sodium_memzero(secret, sizeof(secret));
	sodium_memzero(sealed, sizeof(sealed));
	return res;
}
