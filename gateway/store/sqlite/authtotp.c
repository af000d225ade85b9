/*
 * The TOTP secrets repository on SQLite (table auth_totp): sealed secrets
 * and the step of each person's last accepted code. It stores bytes only:
 * totp.c seals and opens them on the token, and nothing here sees a secret
 * in the clear.
 */
#include "sqlite_store.h"

#include <stdio.h>
#include <string.h>
#include <time.h>
#include <sqlite3.h>

static void
sqlerr(struct gw_store *st, char *err, size_t errlen, const char *what)
{
	if (err != NULL)
		snprintf(err, errlen, "%s: %s", what, sqlite3_errmsg(gw_store_db(st)));
}

int
gw_sqlite_totp_init(struct gw_store *st, char *err, size_t errlen)
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
gw_sqlite_totp_enrolled(struct gw_store *st, const char *user)
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

int
gw_sqlite_totp_put(struct gw_store *st, const char *user, const uint8_t *sealed, size_t sealed_len,
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
gw_sqlite_totp_delete(struct gw_store *st, const char *user)
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

int
gw_sqlite_totp_get(struct gw_store *st, const char *user, uint8_t *sealed, size_t *sealed_len,
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

int
gw_sqlite_totp_advance(struct gw_store *st, const char *user, uint64_t ctr)
{
	sqlite3_stmt *s = NULL;
	int rv = -1;

	gw_store_lock(st);
	/* Conditional: of two uses of one code (two threads, later two
	 * gateways) only the one whose update changes the row wins. */
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
