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
#include <sqlite3.h>
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

/* ---- the store ---- */

static void
sqlerr(struct gw_store *st, char *err, size_t errlen, const char *what)
{
	if (err != NULL)
		snprintf(err, errlen, "%s: %s", what, sqlite3_errmsg(gw_store_db(st)));
}

int
gw_totp_store_init(struct gw_store *st, char *err, size_t errlen)
{
	int rc;

	gw_store_lock(st);
	rc = sqlite3_exec(gw_store_db(st),
		/* secret: iv(12) || AES-256-GCM ciphertext || tag(16) under the
		 * token key GW_TOTP_WRAP_LABEL, AAD "sealgate-totp-v1:" || user.
		 * last_counter: RFC 6238 step of the last accepted code. */
		"CREATE TABLE IF NOT EXISTS auth_totp ("
		"  user TEXT PRIMARY KEY NOT NULL,"
		"  secret BLOB NOT NULL,"
		"  last_counter INTEGER NOT NULL DEFAULT 0,"
		"  enrolled INTEGER NOT NULL"
		") STRICT;", NULL, NULL, NULL);
	if (rc != SQLITE_OK)
		sqlerr(st, err, errlen, "auth_totp");
	gw_store_unlock(st);
	return rc == SQLITE_OK ? 0 : -1;
}

int
gw_totp_enrolled(struct gw_store *st, const char *user)
{
	sqlite3_stmt *s = NULL;
	int rv = -1, rc;

	gw_store_lock(st);
	if (sqlite3_prepare_v2(gw_store_db(st), "SELECT 1 FROM auth_totp WHERE user = ?", -1, &s,
	                       NULL) != SQLITE_OK)
		goto out;
	sqlite3_bind_text(s, 1, user, -1, SQLITE_TRANSIENT);
	rc = sqlite3_step(s);
	rv = rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
out:
	sqlite3_finalize(s);
	gw_store_unlock(st);
	return rv;
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
	sqlite3_stmt *s = NULL;
	int rv = -1;

	gw_store_lock(st);
	if (sqlite3_prepare_v2(gw_store_db(st),
	                       "INSERT INTO auth_totp (user, secret, last_counter, enrolled) "
	                       "VALUES (?1, ?2, ?3, ?4) ON CONFLICT (user) DO UPDATE SET "
	                       "secret = ?2, last_counter = ?3, enrolled = ?4", -1, &s, NULL) != SQLITE_OK) {
		sqlerr(st, err, errlen, "auth_totp");
		goto out;
	}
	sqlite3_bind_text(s, 1, user, -1, SQLITE_TRANSIENT);
	sqlite3_bind_blob(s, 2, sealed, (int)sealed_len, SQLITE_TRANSIENT);
	sqlite3_bind_int64(s, 3, (sqlite3_int64)counter);
	sqlite3_bind_int64(s, 4, (sqlite3_int64)time(NULL));
	if (sqlite3_step(s) != SQLITE_DONE) {
		sqlerr(st, err, errlen, "auth_totp");
		goto out;
	}
	rv = 0;
out:
	sqlite3_finalize(s);
	gw_store_unlock(st);
	return rv;
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
	sqlite3_stmt *s = NULL;
	int rv = -1;

	gw_store_lock(st);
	if (sqlite3_prepare_v2(gw_store_db(st), "DELETE FROM auth_totp WHERE user = ?", -1, &s,
	                       NULL) != SQLITE_OK)
		goto out;
	sqlite3_bind_text(s, 1, user, -1, SQLITE_TRANSIENT);
	if (sqlite3_step(s) == SQLITE_DONE)
		rv = sqlite3_changes(gw_store_db(st)) > 0 ? 1 : 0;
out:
	sqlite3_finalize(s);
	gw_store_unlock(st);
	return rv;
}

/* Reads user's sealed secret and last counter. 1 found, 0 none, -1 error. */
static int
load(struct gw_store *st, const char *user, uint8_t *sealed, size_t *sealed_len,
     uint64_t *last)
{
	sqlite3_stmt *s = NULL;
	int rv = -1, rc, n;
	const void *b;

	gw_store_lock(st);
	if (sqlite3_prepare_v2(gw_store_db(st),
	                       "SELECT secret, last_counter FROM auth_totp WHERE user = ?", -1, &s,
	                       NULL) != SQLITE_OK)
		goto out;
	sqlite3_bind_text(s, 1, user, -1, SQLITE_TRANSIENT);
	rc = sqlite3_step(s);
	if (rc == SQLITE_DONE) {
		rv = 0;
		goto out;
	}
	if (rc != SQLITE_ROW)
		goto out;
	b = sqlite3_column_blob(s, 0);
	n = sqlite3_column_bytes(s, 0);
	if (b == NULL || n <= 0 || (size_t)n > *sealed_len)
		goto out;
	memcpy(sealed, b, (size_t)n);
	*sealed_len = (size_t)n;
	*last = (uint64_t)sqlite3_column_int64(s, 1);
	rv = 1;
out:
	sqlite3_finalize(s);
	gw_store_unlock(st);
	return rv;
}

/* Moves the counter forward to ctr unless another use got there first.
 * 1 recorded, 0 lost the race (the code was used meanwhile), -1 error. */
static int
advance(struct gw_store *st, const char *user, uint64_t ctr)
{
	sqlite3_stmt *s = NULL;
	int rv = -1;

	gw_store_lock(st);
	if (sqlite3_prepare_v2(gw_store_db(st),
	                       "UPDATE auth_totp SET last_counter = ?1 WHERE user = ?2 AND last_counter < ?1",
	                       -1, &s, NULL) != SQLITE_OK)
		goto out;
	sqlite3_bind_int64(s, 1, (sqlite3_int64)ctr);
	sqlite3_bind_text(s, 2, user, -1, SQLITE_TRANSIENT);
	if (sqlite3_step(s) == SQLITE_DONE)
		rv = sqlite3_changes(gw_store_db(st)) == 1 ? 1 : 0;
out:
	sqlite3_finalize(s);
	gw_store_unlock(st);
	return rv;
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
	rc = load(st, user, sealed, &sealed_len, &last);
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
		rc = advance(st, user, ctr);
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
