/*
 * The sessions repository on SQLite (table sessions, made at start by
 * gw_sessionstore_init like the outbox, so that it takes no number of
 * store.c's schema and exists before an audit batch deletes from it: a
 * batch's redo frame replays rows into tables that exist). One gateway
 * per file, so the table is what carries a login over a restart; the
 * gateway's cache in front of it is auth.c's.
 */
#include "sqlite_store.h"
#include "protocol.h"

#include <stdio.h>
#include <string.h>
#include <sqlite3.h>

static const int table_made;   /* its address marks a store whose table exists */

static int
fail(struct gw_store *st, char *err, size_t errlen, const char *what)
{
	if (err)
		snprintf(err, errlen, "sessions: %s: %s", what, sqlite3_errmsg(gw_store_db(st)));
	return -1;
}

/* Lock held. */
static int
ensure_table(struct gw_store *st, char *err, size_t errlen)
{
	if (gw_store_mark_test(st, &table_made))
		return 0;
	if (sqlite3_exec(gw_store_db(st),
		"CREATE TABLE IF NOT EXISTS sessions ("
		"  id BLOB PRIMARY KEY CHECK (length(id) = 32),"
		"  account TEXT NOT NULL,"
		"  uid INTEGER NOT NULL,"
		"  factors INTEGER NOT NULL,"
		"  totp_at INTEGER NOT NULL,"
		"  created INTEGER NOT NULL,"
		"  last_used INTEGER NOT NULL,"
		"  idle INTEGER NOT NULL CHECK (idle > 0),"
		"  expires INTEGER NOT NULL"
		") STRICT;"
		"CREATE INDEX IF NOT EXISTS sessions_by_account ON sessions (account);",
		NULL, NULL, NULL) != SQLITE_OK)
		return fail(st, err, errlen, "creating the table");
	gw_store_mark_set(st, &table_made);
	return 0;
}

/* Whether the table is there, without making it: the calls that only
 * read or delete run inside audit batches too (a revocation, even
 * `sealgated --set-password` before any start), where no table may be
 * made. 1 yes, 0 no (nothing to read or delete), -1 error. Lock held. */
static int
table_exists(struct gw_store *st)
{
	sqlite3_stmt *s;
	int rc;

	if (gw_store_mark_test(st, &table_made))
		return 1;
	s = gw_store_cached(st, "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'sessions'");
	if (s == NULL)
		return -1;
	rc = sqlite3_step(s);
	sqlite3_reset(s);
	if (rc == SQLITE_ROW) {
		gw_store_mark_set(st, &table_made);
		return 1;
	}
	return rc == SQLITE_DONE ? 0 : -1;
}

int
gw_sqlite_session_init(struct gw_store *st, char *err, size_t errlen)
{
	int rv;

	gw_store_lock(st);
	rv = ensure_table(st, err, errlen);
	gw_store_unlock(st);
	return rv;
}

int
gw_sqlite_session_put(struct gw_store *st, const struct gw_session_row *row, int64_t now,
                      char *err, size_t errlen)
{
	sqlite3_stmt *s;
	int rv = -1;

	gw_store_lock(st);
	if (ensure_table(st, err, errlen) < 0)
		goto out;
	/* What expired is dropped here, at the rate of logins, not of uses. */
	s = gw_store_cached(st, "DELETE FROM sessions WHERE last_used + idle < ?1 OR expires < ?1");
	if (s == NULL) {
		fail(st, err, errlen, "purge");
		goto out;
	}
	sqlite3_bind_int64(s, 1, now);
	rv = sqlite3_step(s) == SQLITE_DONE ? 0 : fail(st, err, errlen, "purge");
	sqlite3_reset(s);
	if (rv < 0)
		goto out;
	rv = -1;
	s = gw_store_cached(st, "INSERT INTO sessions (id, account, uid, factors, totp_at, created, "
	                        "last_used, idle, expires) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)");
	if (s == NULL) {
		fail(st, err, errlen, "insert");
		goto out;
	}
	sqlite3_bind_blob(s, 1, row->id, GW_SESSION_ID_LEN, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, row->user, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 3, row->uid);
	sqlite3_bind_int64(s, 4, (sqlite3_int64)row->factors);
	sqlite3_bind_int64(s, 5, row->totp_at);
	sqlite3_bind_int64(s, 6, row->created);
	sqlite3_bind_int64(s, 7, row->last_used);
	sqlite3_bind_int64(s, 8, row->idle);
	sqlite3_bind_int64(s, 9, row->expires);
	if (sqlite3_step(s) != SQLITE_DONE)
		fail(st, err, errlen, "insert");
	else
		rv = 0;
	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
out:
	gw_store_unlock(st);
	return rv;
}

int
gw_sqlite_session_touch(struct gw_store *st, const uint8_t id[GW_SESSION_ID_LEN], int64_t now,
                        struct gw_session_row *out)
{
	sqlite3_stmt *s;
	int rc, rv = -1;

	gw_store_lock(st);
	if ((rc = table_exists(st)) <= 0) {
		rv = rc;
		goto out;
	}
	/* Expiry in the statement: a row idle too long or past its end is
	 * not returned, whatever the caller's cache holds. */
	s = gw_store_cached(st, "UPDATE sessions SET last_used = max(last_used, ?2) WHERE id = ?1 "
	                        "AND last_used + idle >= ?2 AND expires >= ?2 "
	                        "RETURNING account, uid, factors, totp_at, created, last_used, idle, "
	                        "expires");
	if (s == NULL)
		goto out;
	sqlite3_bind_blob(s, 1, id, GW_SESSION_ID_LEN, SQLITE_STATIC);
	sqlite3_bind_int64(s, 2, now);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		const unsigned char *user = sqlite3_column_text(s, 0);

		memcpy(out->id, id, GW_SESSION_ID_LEN);
		snprintf(out->user, sizeof(out->user), "%s", user ? (const char *)user : "");
		out->uid = sqlite3_column_int64(s, 1);
		out->factors = (unsigned)sqlite3_column_int64(s, 2);
		out->totp_at = sqlite3_column_int64(s, 3);
		out->created = sqlite3_column_int64(s, 4);
		out->last_used = sqlite3_column_int64(s, 5);
		out->idle = sqlite3_column_int64(s, 6);
		out->expires = sqlite3_column_int64(s, 7);
		rv = 1;
		/* (RETURNING: the update is done once the statement is) */
		if (sqlite3_step(s) != SQLITE_DONE)
			rv = -1;
	} else if (rc == SQLITE_DONE) {
		rv = 0;
	}
	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
out:
	gw_store_unlock(st);
	if (rv != 1)
		memset(out, 0, sizeof(*out));
	return rv;
}

int
gw_sqlite_session_end(struct gw_store *st, const uint8_t id[GW_SESSION_ID_LEN],
                      char user[GW_SESSION_USER_MAX + 1])
{
	sqlite3_stmt *s;
	int rc, rv = -1;

	gw_store_lock(st);
	if ((rc = table_exists(st)) <= 0) {
		rv = rc;
		goto out;
	}
	s = gw_store_cached(st, "DELETE FROM sessions WHERE id = ?1 RETURNING account");
	if (s == NULL)
		goto out;
	sqlite3_bind_blob(s, 1, id, GW_SESSION_ID_LEN, SQLITE_STATIC);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		const unsigned char *u = sqlite3_column_text(s, 0);

		snprintf(user, GW_SESSION_USER_MAX + 1, "%s", u ? (const char *)u : "");
		rv = sqlite3_step(s) == SQLITE_DONE ? 1 : -1;
	} else if (rc == SQLITE_DONE) {
		rv = 0;
	}
	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
out:
	gw_store_unlock(st);
	return rv;
}

int
gw_sqlite_session_end_user(struct gw_store *st, const char *user)
{
	sqlite3_stmt *s;
	int rc, rv = -1;

	gw_store_lock(st);
	if ((rc = table_exists(st)) <= 0) {
		rv = rc;
		goto out;
	}
	s = gw_store_cached(st, "DELETE FROM sessions WHERE account = ?1");
	if (s == NULL)
		goto out;
	sqlite3_bind_text(s, 1, user, -1, SQLITE_STATIC);
	if (sqlite3_step(s) == SQLITE_DONE)
		rv = sqlite3_changes(gw_store_db(st));
	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
out:
	gw_store_unlock(st);
	return rv;
}
