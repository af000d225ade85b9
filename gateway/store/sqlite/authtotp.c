/*
 * The TOTP secrets repository on SQLite (table auth_totp): sealed secrets
 * and the step of each person's last accepted code. It stores bytes only:
 * totp.c seals and opens them on the token, and nothing here sees a secret
 * in the clear.
 */
#include "sqlite_store.h"
#include "protocol.h"

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
		 * token key GW_TOTP_WRAP_LABEL, AAD "sealgate-totp-v1:" || user;
		 * empty when only the copies of auth_totp_sites hold it.
		 * last_counter: RFC 6238 step of the last accepted code. */
		"CREATE TABLE IF NOT EXISTS auth_totp ("
		"  user TEXT PRIMARY KEY NOT NULL,"
		"  secret BLOB NOT NULL,"
		"  last_counter INTEGER NOT NULL DEFAULT 0,"
		"  enrolled INTEGER NOT NULL"
		") STRICT;"
		/* One copy of a person's secret per site, sealed to that site's
		 * public key (totp.c); the row above keeps the step. */
		"CREATE TABLE IF NOT EXISTS auth_totp_sites ("
		"  user TEXT NOT NULL REFERENCES auth_totp (user) ON DELETE CASCADE,"
		"  site TEXT NOT NULL,"
		"  sealed BLOB NOT NULL,"
		"  PRIMARY KEY (user, site)"
		") STRICT;"
		"CREATE TABLE IF NOT EXISTS totp_site_keys ("
		"  site TEXT PRIMARY KEY NOT NULL,"
		"  pub BLOB NOT NULL,"
		"  published INTEGER NOT NULL"
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
	sqlite3_stmt *s = NULL, *d = NULL;
	int rv = -1;

	if (gw_sqlite_tx_begin(st, err, errlen) < 0)
		return -1;
	/* The copies of an earlier secret go with it. */
	if (sqlite3_prepare_v2(gw_store_db(st), "DELETE FROM auth_totp_sites WHERE user = ?", -1,
	                       &d, NULL) != SQLITE_OK) {
		sqlerr(st, err, errlen, "auth_totp_sites");
		goto out;
	}
	sqlite3_bind_text(d, 1, user, -1, SQLITE_TRANSIENT);
	if (sqlite3_step(d) != SQLITE_DONE) {
		sqlerr(st, err, errlen, "auth_totp_sites");
		goto out;
	}
	if (sqlite3_prepare_v2(gw_store_db(st),
	                       "INSERT INTO auth_totp (user, secret, last_counter, enrolled) "
	                       "VALUES (?1, ?2, ?3, ?4) ON CONFLICT (user) DO UPDATE SET "
	                       "secret = ?2, last_counter = ?3, enrolled = ?4", -1, &s, NULL) != SQLITE_OK) {
		sqlerr(st, err, errlen, "auth_totp");
		goto out;
	}
	sqlite3_bind_text(s, 1, user, -1, SQLITE_TRANSIENT);
	/* (a zero-length blob, not NULL, when only copies hold the secret) */
	sqlite3_bind_blob(s, 2, sealed_len ? (const void *)sealed : (const void *)"", (int)sealed_len,
	                  SQLITE_TRANSIENT);
	sqlite3_bind_int64(s, 3, (sqlite3_int64)counter);
	sqlite3_bind_int64(s, 4, (sqlite3_int64)time(NULL));
	if (sqlite3_step(s) != SQLITE_DONE) {
		sqlerr(st, err, errlen, "auth_totp");
		goto out;
	}
	rv = 0;
out:
	sqlite3_finalize(d);
	sqlite3_finalize(s);
	if (rv == 0 && gw_sqlite_tx_commit(st, err, errlen) < 0)
		rv = -1;
	else if (rv != 0)
		gw_sqlite_tx_rollback(st);
	return rv;
}

int
gw_sqlite_totp_delete(struct gw_store *st, const char *user)
{
	sqlite3_stmt *s = NULL;
	int rv = -1;

	gw_store_lock(st);
	/* The copies first, whether or not the store enforces foreign keys. */
	if (sqlite3_prepare_v2(gw_store_db(st), "DELETE FROM auth_totp_sites WHERE user = ?", -1,
	                       &s, NULL) != SQLITE_OK)
		goto out;
	sqlite3_bind_text(s, 1, user, -1, SQLITE_TRANSIENT);
	if (sqlite3_step(s) != SQLITE_DONE)
		goto out;
	sqlite3_finalize(s);
	s = NULL;
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
	if (n < 0 || (size_t)n > *sealed_len || (n > 0 && b == NULL))
		goto out;
	if (n > 0)
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

int
gw_sqlite_totp_key_put(struct gw_store *st, const char *site, const uint8_t *der, size_t len,
                       char *err, size_t errlen)
{
	sqlite3_stmt *s = NULL;
	int rv = -1;

	if (len == 0 || len > GW_STORE_TOTP_KEY_MAX) {
		sg_seterr(err, errlen, "totp_site_keys: a key of %zu bytes", len);
		return -1;
	}
	gw_store_lock(st);
	if (sqlite3_prepare_v2(gw_store_db(st),
	                       "INSERT INTO totp_site_keys (site, pub, published) VALUES (?1, ?2, ?3) "
	                       "ON CONFLICT (site) DO UPDATE SET pub = ?2, published = ?3", -1, &s,
	                       NULL) != SQLITE_OK) {
		sqlerr(st, err, errlen, "totp_site_keys");
		goto out;
	}
	sqlite3_bind_text(s, 1, site, -1, SQLITE_TRANSIENT);
	sqlite3_bind_blob(s, 2, der, (int)len, SQLITE_TRANSIENT);
	sqlite3_bind_int64(s, 3, (sqlite3_int64)time(NULL));
	if (sqlite3_step(s) != SQLITE_DONE) {
		sqlerr(st, err, errlen, "totp_site_keys");
		goto out;
	}
	rv = 0;
out:
	sqlite3_finalize(s);
	gw_store_unlock(st);
	return rv;
}

int
gw_sqlite_totp_keys(struct gw_store *st,
                    void (*fn)(void *arg, const char *site, const uint8_t *der, size_t len),
                    void *arg)
{
	sqlite3_stmt *s = NULL;
	int rv = -1, rc, n = 0, len;
	const unsigned char *site;
	const void *b;

	gw_store_lock(st);
	if (sqlite3_prepare_v2(gw_store_db(st), "SELECT site, pub FROM totp_site_keys ORDER BY site",
	                       -1, &s, NULL) != SQLITE_OK)
		goto out;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		site = sqlite3_column_text(s, 0);
		b = sqlite3_column_blob(s, 1);
		len = sqlite3_column_bytes(s, 1);
		/* A row out of bounds is no key: skipped, never passed on. */
		if (site == NULL || b == NULL || len <= 0 || len > GW_STORE_TOTP_KEY_MAX)
			continue;
		fn(arg, (const char *)site, b, (size_t)len);
		n++;
	}
	if (rc == SQLITE_DONE)
		rv = n;
out:
	sqlite3_finalize(s);
	gw_store_unlock(st);
	return rv;
}

int
gw_sqlite_totp_copy_put(struct gw_store *st, const char *user, const char *site,
                        const uint8_t *sealed, size_t len, const char *from_site,
                        const uint8_t *from, size_t from_len, char *err, size_t errlen)
{
	sqlite3_stmt *s = NULL;
	int rv = -1;

	if (len == 0 || len > GW_STORE_TOTP_COPY_MAX) {
		sg_seterr(err, errlen, "auth_totp_sites: a copy of %zu bytes", len);
		return -1;
	}
	gw_store_lock(st);
	/* Only beside an enrolled secret, and the one it was opened from: a
	 * copy never outlives a reset or brings back a replaced secret. */
	if (sqlite3_prepare_v2(gw_store_db(st),
	                       "INSERT INTO auth_totp_sites (user, site, sealed) "
	                       "SELECT ?1, ?2, ?3 WHERE EXISTS (SELECT 1 FROM auth_totp WHERE user = ?1) "
	                       "AND (?4 IS NULL OR CASE WHEN ?5 IS NULL "
	                       "THEN EXISTS (SELECT 1 FROM auth_totp WHERE user = ?1 AND secret = ?4) "
	                       "ELSE EXISTS (SELECT 1 FROM auth_totp_sites WHERE user = ?1 AND site = ?5 "
	                       "AND sealed = ?4) END) "
	                       "ON CONFLICT (user, site) DO UPDATE SET sealed = ?3", -1, &s,
	                       NULL) != SQLITE_OK) {
		sqlerr(st, err, errlen, "auth_totp_sites");
		goto out;
	}
	sqlite3_bind_text(s, 1, user, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(s, 2, site, -1, SQLITE_TRANSIENT);
	sqlite3_bind_blob(s, 3, sealed, (int)len, SQLITE_TRANSIENT);
	if (from != NULL)
		sqlite3_bind_blob(s, 4, from_len ? (const void *)from : (const void *)"", (int)from_len,
		                  SQLITE_TRANSIENT);
	if (from != NULL && from_site != NULL)
		sqlite3_bind_text(s, 5, from_site, -1, SQLITE_TRANSIENT);
	if (sqlite3_step(s) != SQLITE_DONE) {
		sqlerr(st, err, errlen, "auth_totp_sites");
		goto out;
	}
	rv = sqlite3_changes(gw_store_db(st)) == 1 ? 1 : 0;
out:
	sqlite3_finalize(s);
	gw_store_unlock(st);
	return rv;
}

int
gw_sqlite_totp_copy_get(struct gw_store *st, const char *user, const char *site, uint8_t *sealed,
                        size_t *len)
{
	sqlite3_stmt *s = NULL;
	int rv = -1, rc, n;
	const void *b;

	gw_store_lock(st);
	if (sqlite3_prepare_v2(gw_store_db(st),
	                       "SELECT sealed FROM auth_totp_sites WHERE user = ? AND site = ?", -1, &s,
	                       NULL) != SQLITE_OK)
		goto out;
	sqlite3_bind_text(s, 1, user, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(s, 2, site, -1, SQLITE_TRANSIENT);
	rc = sqlite3_step(s);
	if (rc == SQLITE_DONE) {
		rv = 0;
		goto out;
	}
	if (rc != SQLITE_ROW)
		goto out;
	b = sqlite3_column_blob(s, 0);
	n = sqlite3_column_bytes(s, 0);
	if (b == NULL || n <= 0 || (size_t)n > *len)
		goto out;
	memcpy(sealed, b, (size_t)n);
	*len = (size_t)n;
	rv = 1;
out:
	sqlite3_finalize(s);
	gw_store_unlock(st);
	return rv;
}
