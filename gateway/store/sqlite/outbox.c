/*
 * The outbox on SQLite (table outbox, made on first use like
 * policy_versions, so that it takes no number of store.c's schema): one
 * gateway per file, so a claim is decided under the store's lock by one
 * UPDATE … RETURNING; a lease that ran out (a gateway killed while
 * sending) makes the notice claimable again after a restart.
 */
#include "sqlite_store.h"
#include "sqlite_outbox.h"
#include "protocol.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sqlite3.h>

static const int table_made;   /* its address marks a store whose table exists */

static int
fail(struct gw_store *st, char *err, size_t errlen, const char *what)
{
	if (err)
		snprintf(err, errlen, "outbox: %s: %s", what, sqlite3_errmsg(gw_store_db(st)));
	return -1;
}

/* Call with the lock held, outside a transaction the first time (at
 * start: gw_outbox_init), for the reason policystore.c gives. */
static int
ensure_table(struct gw_store *st, char *err, size_t errlen)
{
	if (gw_store_mark_test(st, &table_made))
		return 0;
	if (sqlite3_exec(gw_store_db(st),
		"CREATE TABLE IF NOT EXISTS outbox ("
		"  id INTEGER PRIMARY KEY AUTOINCREMENT,"
		"  event TEXT NOT NULL,"
		"  channel TEXT NOT NULL,"
		"  recipient TEXT NOT NULL,"
		"  address TEXT,"
		"  application INTEGER NOT NULL DEFAULT 0,"
		"  dedupe TEXT UNIQUE,"
		"  detail TEXT NOT NULL,"
		"  state TEXT NOT NULL CHECK (state IN ('pending', 'sending', 'sent', 'failed')),"
		"  tries INTEGER NOT NULL DEFAULT 0 CHECK (tries >= 0),"
		"  next_at INTEGER NOT NULL,"
		"  claimed_by TEXT,"
		"  lease_until INTEGER NOT NULL DEFAULT 0,"
		"  last_error TEXT,"
		"  created INTEGER NOT NULL,"
		"  settled INTEGER"
		") STRICT;"
		"CREATE INDEX IF NOT EXISTS outbox_due ON outbox (state, next_at);",
		NULL, NULL, NULL) != SQLITE_OK)
		return fail(st, err, errlen, "creating the table");
	gw_store_mark_set(st, &table_made);
	return 0;
}

int
gw_sqlite_outbox_init(struct gw_store *st, char *err, size_t errlen)
{
	int rv;

	gw_store_lock(st);
	rv = ensure_table(st, err, errlen);
	gw_store_unlock(st);
	return rv;
}

static void
bind_opt(sqlite3_stmt *s, int i, const char *v)
{
	if (v == NULL)
		sqlite3_bind_null(s, i);
	else
		sqlite3_bind_text(s, i, v, -1, SQLITE_TRANSIENT);
}

int
gw_sqlite_outbox_put_tx(struct gw_store *st, struct gw_outbox_notice *n, const char *dedupe,
                        int64_t now, char *err, size_t errlen)
{
	sqlite3_stmt *s;
	int rv = -1;

	gw_store_lock(st);
	if (ensure_table(st, err, errlen) < 0)
		goto out;
	s = gw_store_cached(st, "INSERT INTO outbox (event, channel, recipient, address, "
	                        "application, dedupe, detail, state, next_at, created) VALUES "
	                        "(?1, ?2, ?3, ?4, ?5, ?6, ?7, 'pending', ?8, ?8) "
	                        "ON CONFLICT (dedupe) DO NOTHING");
	if (s == NULL) {
		fail(st, err, errlen, "insert");
		goto out;
	}
	bind_opt(s, 1, n->event);
	bind_opt(s, 2, n->channel);
	bind_opt(s, 3, n->recipient);
	bind_opt(s, 4, n->address);
	sqlite3_bind_int64(s, 5, n->application);
	bind_opt(s, 6, dedupe);
	bind_opt(s, 7, n->detail);
	sqlite3_bind_int64(s, 8, now);
	if (sqlite3_step(s) != SQLITE_DONE) {
		fail(st, err, errlen, "insert");
		sqlite3_reset(s);
		sqlite3_clear_bindings(s);
		goto out;
	}
	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
	if (sqlite3_changes(gw_store_db(st)) == 0) {
		rv = 0;
		goto out;
	}
	n->id = sqlite3_last_insert_rowid(gw_store_db(st));
	n->created = now;
	rv = 1;
out:
	gw_store_unlock(st);
	return rv;
}

static char *
col_dup(sqlite3_stmt *s, int i)
{
	const unsigned char *t = sqlite3_column_text(s, i);

	return t ? strdup((const char *)t) : NULL;
}

int
gw_sqlite_outbox_claim(struct gw_store *st, const char *claimer, int64_t now, unsigned lease_s,
                       struct gw_outbox_notice *out, size_t max, size_t *n, char *err,
                       size_t errlen)
{
	sqlite3_stmt *s;
	int rv = -1, rc;

	*n = 0;
	gw_store_lock(st);
	if (ensure_table(st, err, errlen) < 0)
		goto out;
	s = gw_store_cached(st, "UPDATE outbox SET state = 'sending', claimed_by = ?1, "
	                        "lease_until = ?2, tries = tries + 1 WHERE id IN (SELECT id FROM "
	                        "outbox WHERE (state = 'pending' AND next_at <= ?3) OR "
	                        "(state = 'sending' AND lease_until <= ?3) ORDER BY next_at, id "
	                        "LIMIT ?4) RETURNING id, event, channel, recipient, address, "
	                        "application, detail, tries, created");
	if (s == NULL) {
		fail(st, err, errlen, "claim");
		goto out;
	}
	sqlite3_bind_text(s, 1, claimer, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(s, 2, now + (int64_t)lease_s);
	sqlite3_bind_int64(s, 3, now);
	sqlite3_bind_int64(s, 4, (int64_t)max);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		struct gw_outbox_notice *o = &out[*n];

		if (*n == max)
			continue;   /* (LIMIT says it cannot happen) */
		memset(o, 0, sizeof(*o));
		o->id = sqlite3_column_int64(s, 0);
		o->event = col_dup(s, 1);
		o->channel = col_dup(s, 2);
		o->recipient = col_dup(s, 3);
		o->address = col_dup(s, 4);
		o->application = sqlite3_column_int64(s, 5);
		o->detail = col_dup(s, 6);
		o->tries = (unsigned)sqlite3_column_int64(s, 7);
		o->created = sqlite3_column_int64(s, 8);
		(*n)++;
		if (o->event == NULL || o->channel == NULL || o->recipient == NULL ||
		    o->detail == NULL)
			rc = SQLITE_NOMEM;
	}
	if (rc != SQLITE_DONE) {
		fail(st, err, errlen, "claim");
		sqlite3_reset(s);
		sqlite3_clear_bindings(s);
		for (size_t i = 0; i < *n; i++)
			gw_outbox_notice_clear(&out[i]);
		*n = 0;
		goto out;
	}
	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
	rv = 0;
out:
	gw_store_unlock(st);
	return rv;
}

int
gw_sqlite_outbox_settle_tx(struct gw_store *st, int64_t id, const char *claimer,
                           enum gw_outbox_outcome outcome, int64_t next_at, const char *error,
                           int64_t now, char *err, size_t errlen)
{
	static const char *const states[] = { "sent", "pending", "failed" };
	sqlite3_stmt *s;
	int rv = -1;

	gw_store_lock(st);
	if (ensure_table(st, err, errlen) < 0)
		goto out;
	s = gw_store_cached(st, "UPDATE outbox SET state = ?1, next_at = ?2, last_error = ?3, "
	                        "claimed_by = NULL, lease_until = 0, settled = CASE WHEN ?1 = "
	                        "'pending' THEN NULL ELSE ?4 END WHERE id = ?5 AND state = "
	                        "'sending' AND claimed_by = ?6");
	if (s == NULL) {
		fail(st, err, errlen, "settle");
		goto out;
	}
	sqlite3_bind_text(s, 1, states[outcome], -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 2, next_at);
	bind_opt(s, 3, error);
	sqlite3_bind_int64(s, 4, now);
	sqlite3_bind_int64(s, 5, id);
	sqlite3_bind_text(s, 6, claimer, -1, SQLITE_TRANSIENT);
	if (sqlite3_step(s) != SQLITE_DONE) {
		fail(st, err, errlen, "settle");
		sqlite3_reset(s);
		sqlite3_clear_bindings(s);
		goto out;
	}
	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
	rv = sqlite3_changes(gw_store_db(st)) == 1 ? 1 : 0;
out:
	gw_store_unlock(st);
	return rv;
}
