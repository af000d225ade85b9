/*
 * The sessions repository on PostgreSQL (table sessions, migration 10):
 * the group's logins, seen by every gateway of the store. A revocation is
 * one DELETE in the transaction of the change that revokes, whose NOTIFY
 * (changes.c, kind "revoke") tells the other gateways to drop what they
 * cache; expiry is checked in the statement that reads a row.
 */
#include "pg_store.h"
#include "protocol.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int
gw_pg_session_init(struct gw_store *st, char *err, size_t errlen)
{
	(void)st;
	(void)err;
	(void)errlen;
	return 0;   /* (the migration made the table) */
}

int
gw_pg_session_put(struct gw_store *st, const struct gw_session_row *row, int64_t now,
                  char *err, size_t errlen)
{
	char uid[24], factors[24], totp_at[24], created[24], last[24], idle[24], expires[24],
	     nows[24];
	const char *vals[10] = { (const char *)row->id, row->user, uid, factors, totp_at, created,
	                         last, idle, expires, nows };
	int lens[10] = { GW_SESSION_ID_LEN, 0, 0, 0, 0, 0, 0, 0, 0, 0 };
	int fmts[10] = { 1, 0, 0, 0, 0, 0, 0, 0, 0, 0 };
	PGresult *r;

	snprintf(uid, sizeof(uid), "%" PRId64, row->uid);
	snprintf(factors, sizeof(factors), "%u", row->factors);
	snprintf(totp_at, sizeof(totp_at), "%" PRId64, row->totp_at);
	snprintf(created, sizeof(created), "%" PRId64, row->created);
	snprintf(last, sizeof(last), "%" PRId64, row->last_used);
	snprintf(idle, sizeof(idle), "%" PRId64, row->idle);
	snprintf(expires, sizeof(expires), "%" PRId64, row->expires);
	snprintf(nows, sizeof(nows), "%" PRId64, now);
	pthread_mutex_lock(&st->lock);
	/* One round trip: the rows that expired by now go with the insert
	 * (at the rate of logins, not of uses). */
	r = gw_pg_exec(st, "WITH gone AS (DELETE FROM sessions WHERE last_used + idle < $10::bigint "
	               "OR expires < $10::bigint) "
	               "INSERT INTO sessions (id, account, uid, factors, totp_at, created, last_used, "
	               "idle, expires) VALUES ($1, $2, $3::bigint, $4::integer, $5::bigint, "
	               "$6::bigint, $7::bigint, $8::bigint, $9::bigint)",
	               10, vals, lens, fmts, PGRES_COMMAND_OK, err, errlen);
	PQclear(r);
	pthread_mutex_unlock(&st->lock);
	return r != NULL ? 0 : -1;
}

int
gw_pg_session_touch(struct gw_store *st, const uint8_t id[GW_SESSION_ID_LEN], int64_t now,
                    struct gw_session_row *out)
{
	char nows[24];
	const char *vals[2] = { (const char *)id, nows };
	int lens[2] = { GW_SESSION_ID_LEN, 0 }, fmts[2] = { 1, 0 };
	PGresult *r;
	int rv = -1;

	memset(out, 0, sizeof(*out));
	snprintf(nows, sizeof(nows), "%" PRId64, now);
	pthread_mutex_lock(&st->lock);
	/* Expiry in the statement: a row idle too long or past its end is
	 * not returned, whatever the caller's cache holds. */
	r = gw_pg_exec(st, "UPDATE sessions SET last_used = greatest(last_used, $2::bigint) "
	               "WHERE id = $1 AND last_used + idle >= $2::bigint AND expires >= $2::bigint "
	               "RETURNING account, uid, factors, totp_at, created, last_used, idle, expires",
	               2, vals, lens, fmts, PGRES_TUPLES_OK, NULL, 0);
	if (r != NULL) {
		rv = PQntuples(r) > 0;
		if (rv) {
			memcpy(out->id, id, GW_SESSION_ID_LEN);
			snprintf(out->user, sizeof(out->user), "%s", PQgetvalue(r, 0, 0));
			out->uid = strtoll(PQgetvalue(r, 0, 1), NULL, 10);
			out->factors = (unsigned)strtoul(PQgetvalue(r, 0, 2), NULL, 10);
			out->totp_at = strtoll(PQgetvalue(r, 0, 3), NULL, 10);
			out->created = strtoll(PQgetvalue(r, 0, 4), NULL, 10);
			out->last_used = strtoll(PQgetvalue(r, 0, 5), NULL, 10);
			out->idle = strtoll(PQgetvalue(r, 0, 6), NULL, 10);
			out->expires = strtoll(PQgetvalue(r, 0, 7), NULL, 10);
		}
	}
	PQclear(r);
	pthread_mutex_unlock(&st->lock);
	return rv;
}

int
gw_pg_session_end(struct gw_store *st, const uint8_t id[GW_SESSION_ID_LEN],
                  char user[GW_SESSION_USER_MAX + 1])
{
	const char *vals[1] = { (const char *)id };
	int lens[1] = { GW_SESSION_ID_LEN }, fmts[1] = { 1 };
	PGresult *r;
	int rv = -1;

	pthread_mutex_lock(&st->lock);
	r = gw_pg_exec(st, "DELETE FROM sessions WHERE id = $1 RETURNING account", 1, vals, lens,
	               fmts, PGRES_TUPLES_OK, NULL, 0);
	if (r != NULL) {
		rv = PQntuples(r) > 0;
		if (rv)
			snprintf(user, GW_SESSION_USER_MAX + 1, "%s", PQgetvalue(r, 0, 0));
	}
	PQclear(r);
	pthread_mutex_unlock(&st->lock);
	return rv;
}

int
gw_pg_session_end_user(struct gw_store *st, const char *user)
{
	const char *vals[1] = { user };
	PGresult *r;
	int rv = -1;

	pthread_mutex_lock(&st->lock);
	r = gw_pg_exec(st, "DELETE FROM sessions WHERE account = $1", 1, vals, NULL, NULL,
	               PGRES_COMMAND_OK, NULL, 0);
	if (r != NULL)
		rv = gw_pg_changes(r);
	PQclear(r);
	pthread_mutex_unlock(&st->lock);
	return rv;
}
