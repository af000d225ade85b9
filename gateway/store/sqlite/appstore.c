/*
 * SQL for applications, approvals and quota counters (appstore.h). Every
 * function takes the store's lock (recursive, so _tx functions also work
 * inside the audit writer's transaction callback).
 */
#include "sqlite_store.h"

#include <stdio.h>
#include <string.h>
#include <sqlite3.h>
#include <jansson.h>

#include "applevels.h"
#include "log.h"

static int
fail(struct gw_store *st, char *err, size_t errlen, const char *what)
{
	if (err)
		snprintf(err, errlen, "%s: %s", what, sqlite3_errmsg(gw_store_db(st)));
	return -1;
}

/* sql is always a literal: the store keeps it parsed (gw_store_cached). */
static sqlite3_stmt *
prep(struct gw_store *st, const char *sql)
{
	return gw_store_cached(st, sql);
}

static void
done(sqlite3_stmt *s)
{
	if (s)
		sqlite3_reset(s);
}

static void
bind_text_or_null(sqlite3_stmt *s, int i, const char *v)
{
	if (v && v[0])
		sqlite3_bind_text(s, i, v, -1, SQLITE_TRANSIENT);
	else
		sqlite3_bind_null(s, i);
}

static void
col_text(sqlite3_stmt *s, int i, char *dst, size_t cap)
{
	const unsigned char *t = sqlite3_column_text(s, i);
	snprintf(dst, cap, "%s", t ? (const char *)t : "");
}

int
gw_sqlite_app_get(struct gw_store *st, int64_t id, struct gw_application *app)
{
	sqlite3_stmt *s = NULL, *a = NULL;
	int rv = -1, rc;

	memset(app, 0, sizeof(*app));
	gw_store_lock(st);
	s = prep(st, "SELECT applicant, seal, document_type, business_scope, amount, reason, doc_digest,"
	             " rule, levels, level, uses_granted, uses_left, created, valid_until, state"
	             " FROM applications WHERE id = ?");
	if (s == NULL)
		goto out;
	sqlite3_bind_int64(s, 1, id);
	rc = sqlite3_step(s);
	if (rc == SQLITE_DONE) {
		rv = 0;
		goto out;
	}
	if (rc != SQLITE_ROW)
		goto out;
	app->id = id;
	col_text(s, 0, app->applicant, sizeof(app->applicant));
	col_text(s, 1, app->seal, sizeof(app->seal));
	col_text(s, 2, app->document_type, sizeof(app->document_type));
	col_text(s, 3, app->business_scope, sizeof(app->business_scope));
	app->has_amount = sqlite3_column_type(s, 4) != SQLITE_NULL;
	app->amount = sqlite3_column_int64(s, 4);
	col_text(s, 5, app->reason, sizeof(app->reason));
	if (sqlite3_column_type(s, 6) == SQLITE_BLOB && sqlite3_column_bytes(s, 6) == 32) {
		app->has_doc = true;
		memcpy(app->doc_digest, sqlite3_column_blob(s, 6), 32);
	}
	app->rule = sqlite3_column_int(s, 7);
	if (gw_app_levels_parse((const char *)sqlite3_column_text(s, 8), app) < 0)
		goto out;
	app->level = (unsigned)sqlite3_column_int(s, 9);
	app->uses_granted = (uint32_t)sqlite3_column_int64(s, 10);
	app->uses_left = (uint32_t)sqlite3_column_int64(s, 11);
	app->created = sqlite3_column_int64(s, 12);
	app->valid_until = sqlite3_column_int64(s, 13);
	if (gw_app_state_from_name((const char *)sqlite3_column_text(s, 14), &app->state) < 0)
		goto out;

	a = prep(st, "SELECT level, approver, approve, comment, at FROM approvals"
	             " WHERE application = ? ORDER BY at, rowid");
	if (a == NULL)
		goto out;
	sqlite3_bind_int64(a, 1, id);
	while ((rc = sqlite3_step(a)) == SQLITE_ROW && app->n_approvals < GW_WF_MAX_APPROVALS) {
		struct gw_approval *p = &app->approvals[app->n_approvals++];
		p->level = (unsigned)sqlite3_column_int(a, 0);
		col_text(a, 1, p->approver, sizeof(p->approver));
		p->approve = sqlite3_column_int(a, 2) != 0;
		col_text(a, 3, p->comment, sizeof(p->comment));
		p->at = sqlite3_column_int64(a, 4);
	}
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		goto out;
	rv = 1;
out:
	done(s);
	done(a);
	gw_store_unlock(st);
	return rv;
}

static int
insert_approvals(struct gw_store *st, const struct gw_application *app, char *err, size_t errlen)
{
	sqlite3_stmt *s = prep(st, "INSERT OR IGNORE INTO approvals(application, level, approver,"
	                           " approve, comment, at) VALUES (?,?,?,?,?,?)");
	int rv = 0;

	if (s == NULL)
		return fail(st, err, errlen, "approvals");
	for (unsigned i = 0; i < app->n_approvals && rv == 0; i++) {
		const struct gw_approval *p = &app->approvals[i];
		sqlite3_reset(s);
		sqlite3_bind_int64(s, 1, app->id);
		sqlite3_bind_int(s, 2, (int)p->level);
		sqlite3_bind_text(s, 3, p->approver, -1, SQLITE_TRANSIENT);
		sqlite3_bind_int(s, 4, p->approve);
		bind_text_or_null(s, 5, p->comment);
		sqlite3_bind_int64(s, 6, p->at);
		if (sqlite3_step(s) != SQLITE_DONE)
			rv = fail(st, err, errlen, "approvals");
	}
	done(s);
	return rv;
}

/* The id is the table's: the applications table is AUTOINCREMENT, so
 * SQLite gives max(any id ever used) + 1 from sqlite_sequence, inside this
 * insert's transaction (one writer at a time: BEGIN IMMEDIATE), and never
 * an id again once it was committed, even after its row is gone. A second
 * store handle on the file (another process) waits for the write lock and
 * gets the next one. */
int
gw_sqlite_app_insert_tx(struct gw_store *st, struct gw_application *app,
                      char *err, size_t errlen)
{
	sqlite3_stmt *s;
	char *levels = gw_app_levels_json(app);
	int rv = -1;

	gw_store_lock(st);
	s = prep(st, "INSERT INTO applications(id, applicant, seal, document_type, business_scope,"
	             " amount, reason, doc_digest, rule, levels, level, uses_granted, uses_left,"
	             " created, valid_until, state, updated) VALUES (NULL,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)");
	if (s == NULL || levels == NULL) {
		fail(st, err, errlen, "applications");
		goto out;
	}
	sqlite3_bind_text(s, 1, app->applicant, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(s, 2, app->seal, -1, SQLITE_TRANSIENT);
	bind_text_or_null(s, 3, app->document_type);
	bind_text_or_null(s, 4, app->business_scope);
	if (app->has_amount)
		sqlite3_bind_int64(s, 5, app->amount);
	else
		sqlite3_bind_null(s, 5);
	sqlite3_bind_text(s, 6, app->reason, -1, SQLITE_TRANSIENT);
	if (app->has_doc)
		sqlite3_bind_blob(s, 7, app->doc_digest, 32, SQLITE_TRANSIENT);
	else
		sqlite3_bind_null(s, 7);
	sqlite3_bind_int(s, 8, app->rule);
	sqlite3_bind_text(s, 9, levels, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int(s, 10, (int)app->level);
	sqlite3_bind_int64(s, 11, app->uses_granted);
	sqlite3_bind_int64(s, 12, app->uses_left);
	sqlite3_bind_int64(s, 13, app->created);
	sqlite3_bind_int64(s, 14, app->valid_until);
	sqlite3_bind_text(s, 15, gw_app_state_name(app->state), -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 16, app->created);
	if (sqlite3_step(s) != SQLITE_DONE) {
		fail(st, err, errlen, "applications");
		goto out;
	}
	app->id = sqlite3_last_insert_rowid(gw_store_db(st));
	rv = insert_approvals(st, app, err, errlen);
out:
	done(s);
	free(levels);
	gw_store_unlock(st);
	return rv;
}

int
gw_sqlite_app_lock_tx(struct gw_store *st, int64_t id, struct gw_application *app)
{
	int rv;

	gw_store_lock(st);
	/* Inside the writer's BEGIN IMMEDIATE nobody else writes the file
	 * until the commit: the read is as good as a row lock. Outside a
	 * transaction it would lock nothing, so it is refused. */
	if (sqlite3_get_autocommit(gw_store_db(st))) {
		gw_log_error("store: application #%lld read for a decision outside a transaction",
		             (long long)id);
		memset(app, 0, sizeof(*app));
		rv = -1;
	} else {
		rv = gw_sqlite_app_get(st, id, app);
	}
	gw_store_unlock(st);
	return rv;
}

int
gw_sqlite_app_update_tx(struct gw_store *st, const struct gw_application *app,
                      enum gw_app_state from, unsigned from_level, time_t now,
                      char *err, size_t errlen)
{
	sqlite3_stmt *s;
	int rv = -1;

	gw_store_lock(st);
	/* uses_left is not written: a transition (approve, reject, revoke,
	 * expire) never changes it, and a value read before the transition
	 * may be stale by now — signatures spend uses in the store meanwhile
	 * (gw_appstore_spend_tx), and a write-back would give them back. */
	s = prep(st, "UPDATE applications SET state = ?, level = ?, updated = ?"
	             " WHERE id = ? AND state = ? AND level = ?");
	if (s == NULL) {
		fail(st, err, errlen, "applications");
		goto out;
	}
	sqlite3_bind_text(s, 1, gw_app_state_name(app->state), -1, SQLITE_STATIC);
	sqlite3_bind_int(s, 2, (int)app->level);
	sqlite3_bind_int64(s, 3, now);
	sqlite3_bind_int64(s, 4, app->id);
	sqlite3_bind_text(s, 5, gw_app_state_name(from), -1, SQLITE_STATIC);
	sqlite3_bind_int(s, 6, (int)from_level);
	if (sqlite3_step(s) != SQLITE_DONE) {
		fail(st, err, errlen, "applications");
		goto out;
	}
	if (sqlite3_changes(gw_store_db(st)) != 1) {
		snprintf(err, errlen, "application #%lld changed meanwhile; try again", (long long)app->id);
		goto out;
	}
	rv = insert_approvals(st, app, err, errlen);
out:
	done(s);
	gw_store_unlock(st);
	return rv;
}

int
gw_sqlite_app_spend_tx(struct gw_store *st, int64_t id, time_t now, char *err, size_t errlen)
{
	sqlite3_stmt *s;
	int rv = -1;

	gw_store_lock(st);
	s = prep(st, "UPDATE applications SET uses_left = uses_left - 1,"
	             " state = CASE WHEN uses_left = 1 THEN 'used_up' ELSE state END, updated = ?"
	             " WHERE id = ? AND state = 'authorized' AND uses_left > 0 AND valid_until > ?");
	if (s == NULL) {
		fail(st, err, errlen, "applications");
		goto out;
	}
	sqlite3_bind_int64(s, 1, now);
	sqlite3_bind_int64(s, 2, id);
	sqlite3_bind_int64(s, 3, now);
	if (sqlite3_step(s) != SQLITE_DONE) {
		fail(st, err, errlen, "applications");
		goto out;
	}
	if (sqlite3_changes(gw_store_db(st)) != 1) {
		snprintf(err, errlen, "application #%lld has no use left", (long long)id);
		rv = -2;
		goto out;
	}
	rv = 0;
out:
	done(s);
	gw_store_unlock(st);
	return rv;
}

/* The state names' bits as workflow.h numbers them, for the filter in SQL. */
#define STATE_BIT "(1 << CASE state WHEN 'pending' THEN 1 WHEN 'authorized' THEN 2" \
	" WHEN 'used_up' THEN 3 WHEN 'expired' THEN 4 WHEN 'revoked' THEN 5" \
	" WHEN 'rejected' THEN 6 ELSE 0 END)"

int
gw_sqlite_app_page(struct gw_store *st, const struct gw_app_filter *f, bool oldest_first,
                 int64_t from, int64_t *ids, size_t max, size_t *n)
{
	sqlite3_stmt *s;
	int rc = SQLITE_DONE, rv = -1;

	*n = 0;
	gw_store_lock(st);
	/* Two literals rather than one built string: the store keeps each
	 * parsed, and the id order is what the index on id serves. */
	if (oldest_first)
		s = prep(st, "SELECT id FROM applications WHERE (?1 IS NULL OR applicant = ?1)"
		             " AND (?2 IS NULL OR seal = ?2) AND (?3 = 0 OR (?3 & " STATE_BIT ") != 0)"
		             " AND id > ?4 ORDER BY id LIMIT ?5");
	else
		s = prep(st, "SELECT id FROM applications WHERE (?1 IS NULL OR applicant = ?1)"
		             " AND (?2 IS NULL OR seal = ?2) AND (?3 = 0 OR (?3 & " STATE_BIT ") != 0)"
		             " AND id < ?4 ORDER BY id DESC LIMIT ?5");
	if (s == NULL)
		goto out;
	bind_text_or_null(s, 1, f->applicant);
	bind_text_or_null(s, 2, f->seal);
	sqlite3_bind_int64(s, 3, f->states);
	sqlite3_bind_int64(s, 4, oldest_first || from > 0 ? from : INT64_MAX);
	sqlite3_bind_int64(s, 5, (sqlite3_int64)max);
	while (*n < max && (rc = sqlite3_step(s)) == SQLITE_ROW)
		ids[(*n)++] = sqlite3_column_int64(s, 0);
	if (*n < max && rc != SQLITE_DONE)
		goto out;
	rv = 0;
out:
	done(s);
	gw_store_unlock(st);
	return rv;
}

int
gw_sqlite_app_due_to_expire(struct gw_store *st, time_t now, int64_t *ids, size_t max, size_t *n)
{
	sqlite3_stmt *s;
	int rv = -1;

	*n = 0;
	gw_store_lock(st);
	s = prep(st, "SELECT id FROM applications WHERE state IN ('pending', 'authorized')"
	             " AND valid_until <= ? ORDER BY id LIMIT ?");
	if (s == NULL)
		goto out;
	sqlite3_bind_int64(s, 1, now);
	sqlite3_bind_int64(s, 2, (sqlite3_int64)max);
	while (*n < max && sqlite3_step(s) == SQLITE_ROW)
		ids[(*n)++] = sqlite3_column_int64(s, 0);
	rv = 0;
out:
	done(s);
	gw_store_unlock(st);
	return rv;
}

int
gw_sqlite_quota_get(struct gw_store *st, const char *seal, const char *period,
                      const char *person, uint64_t *used)
{
	sqlite3_stmt *s;
	int rv = -1, rc;

	*used = 0;
	gw_store_lock(st);
	s = prep(st, "SELECT used FROM quota_use WHERE seal = ? AND period = ? AND person = ?");
	if (s == NULL)
		goto out;
	sqlite3_bind_text(s, 1, seal, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(s, 2, period, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(s, 3, person ? person : "", -1, SQLITE_TRANSIENT);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW)
		*used = (uint64_t)sqlite3_column_int64(s, 0);
	rv = rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : -1;
out:
	done(s);
	gw_store_unlock(st);
	return rv;
}

int
gw_sqlite_quota_add_tx(struct gw_store *st, const char *seal, const char *period,
                         const char *person, uint64_t limit, char *err, size_t errlen)
{
	sqlite3_stmt *s;
	int rv = -1;

	if (limit > (uint64_t)INT64_MAX) {
		snprintf(err, errlen, "quota_use: limit out of range");
		return -1;
	}
	gw_store_lock(st);
	/* The limit is in the statement and the row count decides: the first
	 * row is inserted only when one use fits (limit 0 = none), a later
	 * one grows only while used + 1 <= limit. The SELECT's WHERE is what
	 * lets SQLite parse the upsert of an INSERT … SELECT. */
	s = prep(st, "INSERT INTO quota_use(seal, period, person, used) SELECT ?1, ?2, ?3, 1"
	             " WHERE ?4 = 0 OR ?4 >= 1"
	             " ON CONFLICT(seal, period, person) DO UPDATE SET used = used + 1"
	             " WHERE ?4 = 0 OR used + 1 <= ?4");
	if (s == NULL) {
		fail(st, err, errlen, "quota_use");
		goto out;
	}
	sqlite3_bind_text(s, 1, seal, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(s, 2, period, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(s, 3, person ? person : "", -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(s, 4, (sqlite3_int64)limit);
	if (sqlite3_step(s) != SQLITE_DONE) {
		fail(st, err, errlen, "quota_use");
		goto out;
	}
	rv = sqlite3_changes(gw_store_db(st)) == 1 ? 1 : 0;
out:
	done(s);
	gw_store_unlock(st);
	return rv;
}

int
gw_sqlite_app_refund_tx(struct gw_store *st, int64_t id, time_t now, char *err, size_t errlen)
{
	sqlite3_stmt *s;
	int rv = -1;

	gw_store_lock(st);
	s = prep(st, "UPDATE applications SET uses_left = uses_left + 1, state = 'authorized', updated = ?"
	             " WHERE id = ? AND state IN ('authorized', 'used_up') AND uses_left < uses_granted");
	if (s == NULL) {
		fail(st, err, errlen, "applications");
		goto out;
	}
	sqlite3_bind_int64(s, 1, now);
	sqlite3_bind_int64(s, 2, id);
	rv = sqlite3_step(s) == SQLITE_DONE ? 0 : fail(st, err, errlen, "applications");
out:
	done(s);
	gw_store_unlock(st);
	return rv;
}

int
gw_sqlite_quota_sub_tx(struct gw_store *st, const char *seal, const char *period,
                         const char *person, char *err, size_t errlen)
{
	sqlite3_stmt *s;
	int rv = -1;

	gw_store_lock(st);
	s = prep(st, "UPDATE quota_use SET used = used - 1 WHERE seal = ? AND period = ? AND person = ?"
	             " AND used > 0");
	if (s == NULL) {
		fail(st, err, errlen, "quota_use");
		goto out;
	}
	sqlite3_bind_text(s, 1, seal, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(s, 2, period, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(s, 3, person ? person : "", -1, SQLITE_TRANSIENT);
	rv = sqlite3_step(s) == SQLITE_DONE ? 0 : fail(st, err, errlen, "quota_use");
out:
	done(s);
	gw_store_unlock(st);
	return rv;
}
