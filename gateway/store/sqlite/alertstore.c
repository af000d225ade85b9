/*
 * The alerts repository on SQLite (table risk_alerts, alertstore.h): made
 * at start by gw_alertstore_init rather than by a numbered migration, as
 * the TOTP tables are (authtotp.c). Evidence is kept as the JSON arrays
 * the engine gives.
 */
#include "sqlite_store.h"
#include "sqlite_alertstore.h"
#include "protocol.h"

#include <stdio.h>
#include <string.h>
#include <sqlite3.h>

#define ALERT_COLS "id, key, rule, severity, subject, why, ts_ns, seqs, apps, raised, state, " \
                   "state_by, state_comment, state_at"

static void
sqlerr(struct gw_store *st, char *err, size_t errlen, const char *what)
{
	sg_seterr(err, errlen, "%s: %s", what, sqlite3_errmsg(gw_store_db(st)));
}

int
gw_sqlite_alert_init(struct gw_store *st, char *err, size_t errlen)
{
	int rc;

	gw_store_lock(st);
	rc = sqlite3_exec(gw_store_db(st),
		/* key: the engine's name of the alert (rule, subject, first
		 * evidence seq): one row however often it is found again. */
		"CREATE TABLE IF NOT EXISTS risk_alerts ("
		"  id INTEGER PRIMARY KEY NOT NULL,"
		"  key TEXT NOT NULL UNIQUE,"
		"  rule TEXT NOT NULL,"
		"  severity TEXT NOT NULL,"
		"  subject TEXT NOT NULL,"
		"  why TEXT NOT NULL,"
		"  ts_ns INTEGER NOT NULL,"
		"  seqs TEXT NOT NULL,"
		"  apps TEXT NOT NULL,"
		"  raised INTEGER NOT NULL,"
		"  state TEXT NOT NULL CHECK (state IN ('open', 'acknowledged', 'closed')),"
		"  state_by TEXT,"
		"  state_comment TEXT,"
		"  state_at INTEGER NOT NULL DEFAULT 0"
		") STRICT;"
		"CREATE INDEX IF NOT EXISTS risk_alerts_by_time ON risk_alerts (ts_ns);",
		NULL, NULL, NULL);
	if (rc != SQLITE_OK)
		sqlerr(st, err, errlen, "risk_alerts");
	gw_store_unlock(st);
	return rc == SQLITE_OK ? 0 : -1;
}

int
gw_sqlite_alert_put_tx(struct gw_store *st, const struct gw_alert_row *a, int64_t *id,
                       bool *created, char *err, size_t errlen)
{
	sqlite3 *db = gw_store_db(st);
	sqlite3_stmt *s = NULL;
	int rv = -1, rc;

	gw_store_lock(st);
	/* Evidence only grows: the row keeps its state and who gave it. */
	if (sqlite3_prepare_v2(db, "UPDATE risk_alerts SET why = ?2, ts_ns = ?3, seqs = ?4, "
	                       "apps = ?5 WHERE key = ?1 RETURNING id", -1, &s, NULL) != SQLITE_OK)
		goto sqlfail;
	sqlite3_bind_text(s, 1, a->key, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, a->why, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 3, a->ts_ns);
	sqlite3_bind_text(s, 4, a->seqs, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 5, a->apps, -1, SQLITE_STATIC);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		*id = sqlite3_column_int64(s, 0);
		*created = false;
		rv = 0;
		goto out;
	}
	if (rc != SQLITE_DONE)
		goto sqlfail;
	sqlite3_finalize(s);
	s = NULL;
	if (sqlite3_prepare_v2(db, "INSERT INTO risk_alerts (key, rule, severity, subject, why, "
	                       "ts_ns, seqs, apps, raised, state) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, "
	                       "'open') RETURNING id", -1, &s, NULL) != SQLITE_OK)
		goto sqlfail;
	sqlite3_bind_text(s, 1, a->key, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, a->rule, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 3, a->severity, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 4, a->subject, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 5, a->why, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 6, a->ts_ns);
	sqlite3_bind_text(s, 7, a->seqs, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 8, a->apps, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 9, a->raised);
	if (sqlite3_step(s) != SQLITE_ROW)
		goto sqlfail;
	*id = sqlite3_column_int64(s, 0);
	*created = true;
	rv = 0;
	goto out;
sqlfail:
	sqlerr(st, err, errlen, "risk_alerts");
out:
	sqlite3_finalize(s);
	gw_store_unlock(st);
	return rv;
}

int
gw_sqlite_alert_state_tx(struct gw_store *st, int64_t id, const char *const *from,
                         const char *state, const char *by, const char *comment, int64_t at,
                         char *err, size_t errlen)
{
	sqlite3 *db = gw_store_db(st);
	sqlite3_stmt *s = NULL;
	int rv = -1;

	gw_store_lock(st);
	for (size_t i = 0; from[i] != NULL; i++) {
		if (sqlite3_prepare_v2(db, "UPDATE risk_alerts SET state = ?2, state_by = ?3, "
		                       "state_comment = ?4, state_at = ?5 WHERE id = ?1 AND state = ?6",
		                       -1, &s, NULL) != SQLITE_OK)
			goto sqlfail;
		sqlite3_bind_int64(s, 1, id);
		sqlite3_bind_text(s, 2, state, -1, SQLITE_STATIC);
		sqlite3_bind_text(s, 3, by, -1, SQLITE_STATIC);
		sqlite3_bind_text(s, 4, comment, -1, SQLITE_STATIC);
		sqlite3_bind_int64(s, 5, at);
		sqlite3_bind_text(s, 6, from[i], -1, SQLITE_STATIC);
		if (sqlite3_step(s) != SQLITE_DONE)
			goto sqlfail;
		sqlite3_finalize(s);
		s = NULL;
		if (sqlite3_changes(db) > 0) {
			rv = 1;
			goto out;
		}
	}
	rv = 0;
	goto out;
sqlfail:
	sqlerr(st, err, errlen, "risk_alerts");
out:
	sqlite3_finalize(s);
	gw_store_unlock(st);
	return rv;
}

static const char *
col_text(sqlite3_stmt *s, int i)
{
	return (const char *)sqlite3_column_text(s, i);
}

int
gw_sqlite_alert_list(struct gw_store *st, const struct gw_alert_filter *f, gw_alertstore_fn fn,
                     void *ctx, char *err, size_t errlen)
{
	sqlite3_stmt *s = NULL;
	int rv = -1, rc;

	gw_store_lock(st);
	if (sqlite3_prepare_v2(gw_store_db(st), "SELECT " ALERT_COLS " FROM risk_alerts WHERE "
	                       "(?1 = 0 OR state <> 'closed') AND (?2 IS NULL OR rule = ?2) AND "
	                       "ts_ns >= ?3 AND (?4 = 0 OR id = ?4) ORDER BY ts_ns DESC, id DESC "
	                       "LIMIT ?5", -1, &s, NULL) != SQLITE_OK)
		goto sqlfail;
	sqlite3_bind_int(s, 1, f->open_only);
	if (f->rule != NULL)
		sqlite3_bind_text(s, 2, f->rule, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 3, f->since_ns);
	sqlite3_bind_int64(s, 4, f->id);
	sqlite3_bind_int64(s, 5, f->limit ? (int64_t)f->limit : -1);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		struct gw_alert_row a = {
			.id = sqlite3_column_int64(s, 0), .key = col_text(s, 1), .rule = col_text(s, 2),
			.severity = col_text(s, 3), .subject = col_text(s, 4), .why = col_text(s, 5),
			.ts_ns = sqlite3_column_int64(s, 6), .seqs = col_text(s, 7),
			.apps = col_text(s, 8), .raised = sqlite3_column_int64(s, 9),
			.state = col_text(s, 10), .state_by = col_text(s, 11),
			.state_comment = col_text(s, 12), .state_at = sqlite3_column_int64(s, 13),
			.site = gw_store_site(st),
		};
		int r = fn(ctx, &a);
		if (r != 0) {
			rv = r;
			goto out;
		}
	}
	if (rc != SQLITE_DONE)
		goto sqlfail;
	rv = 0;
	goto out;
sqlfail:
	sqlerr(st, err, errlen, "risk_alerts");
out:
	sqlite3_finalize(s);
	gw_store_unlock(st);
	return rv;
}
