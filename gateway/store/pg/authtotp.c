/*
 * The TOTP secrets repository on PostgreSQL (table auth_totp, migration 2
 * of store.c): sealed secrets and the step of each person's last accepted
 * code, bytes only, as on SQLite (sqlite/authtotp.c).
 */
#include "pg_store.h"
#include "protocol.h"
#include "log.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int
gw_pg_totp_init(struct gw_store *st, char *err, size_t errlen)
{
	/* Made by migration 2. */
	(void)st;
	(void)err;
	(void)errlen;
	return 0;
}

int
gw_pg_totp_enrolled(struct gw_store *st, const char *user)
{
	const char *vals[1] = { user };
	PGresult *r;
	int rv;

	pthread_mutex_lock(&st->lock);
	r = gw_pg_exec(st, "SELECT 1 FROM auth_totp WHERE account = $1", 1, vals, NULL, NULL,
	               PGRES_TUPLES_OK, NULL, 0);
	pthread_mutex_unlock(&st->lock);
	if (r == NULL)
		return -1;
	rv = PQntuples(r) > 0 ? 1 : 0;
	PQclear(r);
	return rv;
}

int
gw_pg_totp_put(struct gw_store *st, const char *user, const uint8_t *sealed, size_t sealed_len,
               uint64_t counter, char *err, size_t errlen)
{
	char c[24], t[24];
	const char *vals[4] = { user, sealed_len ? (const char *)sealed : "", c, t };
	const int lens[4] = { 0, (int)sealed_len, 0, 0 }, fmts[4] = { 0, 1, 0, 0 };
	PGresult *r;

	if (sealed_len > (size_t)INT32_MAX || counter > (uint64_t)INT64_MAX) {
		sg_seterr(err, errlen, "auth_totp: a sealed secret of %zu bytes", sealed_len);
		return -1;
	}
	snprintf(c, sizeof(c), "%" PRIu64, counter);
	snprintf(t, sizeof(t), "%lld", (long long)time(NULL));
	pthread_mutex_lock(&st->lock);
	/* One statement: the copies of an earlier secret go with it. */
	r = gw_pg_exec(st, "WITH gone AS (DELETE FROM auth_totp_sites WHERE account = $1) "
	               "INSERT INTO auth_totp (account, secret, last_counter, enrolled) "
	               "VALUES ($1, $2, $3::bigint, $4::bigint) ON CONFLICT (account) DO UPDATE SET "
	               "secret = excluded.secret, last_counter = excluded.last_counter, "
	               "enrolled = excluded.enrolled", 4, vals, lens, fmts, PGRES_COMMAND_OK,
	               err, errlen);
	pthread_mutex_unlock(&st->lock);
	PQclear(r);
	return r ? 0 : -1;
}

int
gw_pg_totp_delete(struct gw_store *st, const char *user)
{
	const char *vals[1] = { user };
	PGresult *r;
	int rv;

	pthread_mutex_lock(&st->lock);
	r = gw_pg_exec(st, "DELETE FROM auth_totp WHERE account = $1", 1, vals, NULL, NULL,
	               PGRES_COMMAND_OK, NULL, 0);
	pthread_mutex_unlock(&st->lock);
	if (r == NULL)
		return -1;
	rv = gw_pg_changes(r) > 0 ? 1 : 0;
	PQclear(r);
	return rv;
}

int
gw_pg_totp_get(struct gw_store *st, const char *user, uint8_t *sealed, size_t *sealed_len,
               uint64_t *last)
{
	const char *vals[1] = { user };
	unsigned char *b = NULL;
	size_t n = 0;
	PGresult *r;
	int rv = -1;

	pthread_mutex_lock(&st->lock);
	r = gw_pg_exec(st, "SELECT secret, last_counter FROM auth_totp WHERE account = $1", 1,
	               vals, NULL, NULL, PGRES_TUPLES_OK, NULL, 0);
	pthread_mutex_unlock(&st->lock);
	if (r == NULL)
		return -1;
	if (PQntuples(r) == 0) {
		rv = 0;
		goto out;
	}
	/* The text result's bytea is hex ("\x…"): back to bytes. */
	b = PQunescapeBytea((const unsigned char *)PQgetvalue(r, 0, 0), &n);
	if (b == NULL || n > *sealed_len)
		goto out;
	if (n > 0)
		memcpy(sealed, b, n);
	*sealed_len = n;
	*last = (uint64_t)strtoull(PQgetvalue(r, 0, 1), NULL, 10);
	rv = 1;
out:
	if (b != NULL) {
		memset(b, 0, n);
		PQfreemem(b);
	}
	PQclear(r);
	return rv;
}

int
gw_pg_totp_advance(struct gw_store *st, const char *user, uint64_t ctr)
{
	char c[24];
	const char *vals[2] = { c, user };
	PGresult *r;
	int rv;

	if (ctr > (uint64_t)INT64_MAX)
		return -1;
	snprintf(c, sizeof(c), "%" PRIu64, ctr);
	pthread_mutex_lock(&st->lock);
	/* Conditional, as on SQLite: of two uses of one code (two threads,
	 * two gateways) only the one whose update changes the row wins. */
	r = gw_pg_exec(st, "UPDATE auth_totp SET last_counter = $1::bigint "
	               "WHERE account = $2 AND last_counter < $1::bigint", 2, vals, NULL, NULL,
	               PGRES_COMMAND_OK, NULL, 0);
	pthread_mutex_unlock(&st->lock);
	if (r == NULL)
		return -1;
	rv = gw_pg_changes(r) == 1 ? 1 : 0;
	PQclear(r);
	return rv;
}

int
gw_pg_totp_key_put(struct gw_store *st, const char *site, const uint8_t *der, size_t len,
                   char *err, size_t errlen)
{
	char t[24];
	const char *vals[3] = { site, (const char *)der, t };
	const int lens[3] = { 0, (int)len, 0 }, fmts[3] = { 0, 1, 0 };
	PGresult *r;

	if (len == 0 || len > GW_STORE_TOTP_KEY_MAX) {
		sg_seterr(err, errlen, "totp_site_keys: a key of %zu bytes", len);
		return -1;
	}
	snprintf(t, sizeof(t), "%lld", (long long)time(NULL));
	pthread_mutex_lock(&st->lock);
	r = gw_pg_exec(st, "INSERT INTO totp_site_keys (site, pub, published) "
	               "VALUES ($1, $2, $3::bigint) ON CONFLICT (site) DO UPDATE SET "
	               "pub = excluded.pub, published = excluded.published", 3, vals, lens, fmts,
	               PGRES_COMMAND_OK, err, errlen);
	pthread_mutex_unlock(&st->lock);
	PQclear(r);
	return r ? 0 : -1;
}

int
gw_pg_totp_keys(struct gw_store *st,
                void (*fn)(void *arg, const char *site, const uint8_t *der, size_t len),
                void *arg)
{
	PGresult *r;
	int n = 0;

	pthread_mutex_lock(&st->lock);
	r = gw_pg_exec_fmt(st, "SELECT site, pub FROM totp_site_keys ORDER BY site", 0, NULL, NULL,
	                   NULL, PGRES_TUPLES_OK, 1, NULL, 0);
	pthread_mutex_unlock(&st->lock);
	if (r == NULL)
		return -1;
	for (int i = 0; i < PQntuples(r); i++) {
		int len = PQgetlength(r, i, 1);
		char site[SG_NAME_MAX + 1];
		int sl = PQgetlength(r, i, 0);

		/* A row out of bounds is no key: skipped, never passed on. */
		if (len <= 0 || len > GW_STORE_TOTP_KEY_MAX || sl <= 0 || sl > SG_NAME_MAX)
			continue;
		memcpy(site, PQgetvalue(r, i, 0), (size_t)sl);
		site[sl] = '\0';
		fn(arg, site, (const uint8_t *)PQgetvalue(r, i, 1), (size_t)len);
		n++;
	}
	PQclear(r);
	return n;
}

int
gw_pg_totp_copy_put(struct gw_store *st, const char *user, const char *site,
                    const uint8_t *sealed, size_t len, const char *from_site,
                    const uint8_t *from, size_t from_len, char *err, size_t errlen)
{
	const char *vals[5] = { user, site, (const char *)sealed,
	                        from ? (from_len ? (const char *)from : "") : NULL,
	                        from ? from_site : NULL };
	const int lens[5] = { 0, 0, (int)len, (int)from_len, 0 }, fmts[5] = { 0, 0, 1, 1, 0 };
	PGresult *r;
	int rv;

	if (len == 0 || len > GW_STORE_TOTP_COPY_MAX) {
		sg_seterr(err, errlen, "auth_totp_sites: a copy of %zu bytes", len);
		return -1;
	}
	if (from_len > GW_STORE_TOTP_COPY_MAX) {
		sg_seterr(err, errlen, "auth_totp_sites: a copy of %zu bytes", from_len);
		return -1;
	}
	pthread_mutex_lock(&st->lock);
	/* Only beside an enrolled secret, and the one it was opened from: a
	 * copy never outlives a reset or brings back a replaced secret. */
	r = gw_pg_exec(st, "INSERT INTO auth_totp_sites (account, site, sealed) "
	               "SELECT $1, $2, $3 WHERE EXISTS (SELECT 1 FROM auth_totp WHERE account = $1) "
	               "AND ($4::bytea IS NULL OR CASE WHEN $5::text IS NULL "
	               "THEN EXISTS (SELECT 1 FROM auth_totp WHERE account = $1 AND secret = $4) "
	               "ELSE EXISTS (SELECT 1 FROM auth_totp_sites WHERE account = $1 AND site = $5 "
	               "AND sealed = $4) END) "
	               "ON CONFLICT (account, site) DO UPDATE SET sealed = excluded.sealed", 5, vals,
	               lens, fmts, PGRES_COMMAND_OK, err, errlen);
	pthread_mutex_unlock(&st->lock);
	if (r == NULL)
		return -1;
	rv = gw_pg_changes(r) == 1 ? 1 : 0;
	PQclear(r);
	return rv;
}

int
gw_pg_totp_copy_get(struct gw_store *st, const char *user, const char *site, uint8_t *sealed,
                    size_t *len)
{
	const char *vals[2] = { user, site };
	PGresult *r;
	int rv = -1, n;

	pthread_mutex_lock(&st->lock);
	r = gw_pg_exec_fmt(st, "SELECT sealed FROM auth_totp_sites WHERE account = $1 AND site = $2",
	                   2, vals, NULL, NULL, PGRES_TUPLES_OK, 1, NULL, 0);
	pthread_mutex_unlock(&st->lock);
	if (r == NULL)
		return -1;
	if (PQntuples(r) == 0) {
		rv = 0;
		goto out;
	}
	n = PQgetlength(r, 0, 0);
	if (n <= 0 || (size_t)n > *len)
		goto out;
	memcpy(sealed, PQgetvalue(r, 0, 0), (size_t)n);
	*len = (size_t)n;
	rv = 1;
out:
	PQclear(r);
	return rv;
}
