/*
 * Applications, approvals and quota counters on PostgreSQL (tables of
 * migration 3 in store.c), with SQLite's semantics (sqlite/appstore.c):
 * ids from an identity column, every shared decision one conditional
 * statement whose row count is the answer, or a row lock (SELECT … FOR
 * UPDATE) held to the caller's commit. Multi-statement writes run in a
 * savepoint of their own, so a failure leaves nothing half-written.
 */
#include "pg_store.h"
#include "applevels.h"
#include "protocol.h"
#include "log.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Text of a 64-bit integer parameter. */
struct num {
	char s[24];
};

static const char *
num(struct num *n, int64_t v)
{
	snprintf(n->s, sizeof(n->s), "%" PRId64, v);
	return n->s;
}

static int64_t
col_i64(PGresult *r, int row, int col)
{
	return PQgetisnull(r, row, col) ? 0 : strtoll(PQgetvalue(r, row, col), NULL, 10);
}

static void
col_text(PGresult *r, int row, int col, char *dst, size_t cap)
{
	snprintf(dst, cap, "%s", PQgetisnull(r, row, col) ? "" : PQgetvalue(r, row, col));
}

/* "" is stored as NULL, as on SQLite (bind_text_or_null). */
static const char *
or_null(const char *v)
{
	return v && v[0] ? v : NULL;
}

/* ---- reading an application ---- */

/* The application and then its approvals: with lock, each FOR UPDATE.
 * The application's row is locked by the first statement; the approvals
 * are read by a second one, which under READ COMMITTED sees every
 * approval committed before that lock was granted. */
static int
app_read(struct gw_store *st, int64_t id, struct gw_application *app, bool lock)
{
	struct num n;
	const char *vals[1] = { num(&n, id) };
	PGresult *r = NULL, *a = NULL;
	unsigned char *doc = NULL;
	size_t doclen = 0;
	int rv = -1, rows;

	memset(app, 0, sizeof(*app));
	r = gw_pg_exec(st, lock ?
	               "SELECT applicant, seal, document_type, business_scope, amount, reason, "
	               "doc_digest, rule, levels, level, uses_granted, uses_left, created, "
	               "valid_until, state FROM applications WHERE id = $1::bigint FOR UPDATE" :
	               "SELECT applicant, seal, document_type, business_scope, amount, reason, "
	               "doc_digest, rule, levels, level, uses_granted, uses_left, created, "
	               "valid_until, state FROM applications WHERE id = $1::bigint",
	               1, vals, NULL, NULL, PGRES_TUPLES_OK, NULL, 0);
	if (r == NULL)
		goto out;
	if (PQntuples(r) == 0) {
		rv = 0;
		goto out;
	}
	app->id = id;
	col_text(r, 0, 0, app->applicant, sizeof(app->applicant));
	col_text(r, 0, 1, app->seal, sizeof(app->seal));
	col_text(r, 0, 2, app->document_type, sizeof(app->document_type));
	col_text(r, 0, 3, app->business_scope, sizeof(app->business_scope));
	app->has_amount = !PQgetisnull(r, 0, 4);
	app->amount = col_i64(r, 0, 4);
	col_text(r, 0, 5, app->reason, sizeof(app->reason));
	if (!PQgetisnull(r, 0, 6)) {
		/* A text result's bytea is hex ("\x…"). */
		doc = PQunescapeBytea((const unsigned char *)PQgetvalue(r, 0, 6), &doclen);
		if (doc == NULL)
			goto out;
		if (doclen == 32) {
			app->has_doc = true;
			memcpy(app->doc_digest, doc, 32);
		}
	}
	app->rule = (int)col_i64(r, 0, 7);
	if (gw_app_levels_parse(PQgetvalue(r, 0, 8), app) < 0) {
		gw_log_error("store: application #%lld has unreadable levels", (long long)id);
		goto out;
	}
	app->level = (unsigned)col_i64(r, 0, 9);
	app->uses_granted = (uint32_t)col_i64(r, 0, 10);
	app->uses_left = (uint32_t)col_i64(r, 0, 11);
	app->created = col_i64(r, 0, 12);
	app->valid_until = col_i64(r, 0, 13);
	if (gw_app_state_from_name(PQgetvalue(r, 0, 14), &app->state) < 0) {
		gw_log_error("store: application #%lld has an unknown state", (long long)id);
		goto out;
	}

	a = gw_pg_exec(st, lock ?
	               "SELECT level, approver, approve, comment, at FROM approvals "
	               "WHERE application = $1::bigint ORDER BY at, n FOR UPDATE" :
	               "SELECT level, approver, approve, comment, at FROM approvals "
	               "WHERE application = $1::bigint ORDER BY at, n",
	               1, vals, NULL, NULL, PGRES_TUPLES_OK, NULL, 0);
	if (a == NULL)
		goto out;
	rows = PQntuples(a);
	for (int i = 0; i < rows && app->n_approvals < GW_WF_MAX_APPROVALS; i++) {
		struct gw_approval *p = &app->approvals[app->n_approvals++];

		p->level = (unsigned)col_i64(a, i, 0);
		col_text(a, i, 1, p->approver, sizeof(p->approver));
		p->approve = strcmp(PQgetvalue(a, i, 2), "t") == 0;
		col_text(a, i, 3, p->comment, sizeof(p->comment));
		p->at = col_i64(a, i, 4);
	}
	rv = 1;
out:
	if (doc != NULL)
		PQfreemem(doc);
	PQclear(r);
	PQclear(a);
	return rv;
}

int
gw_pg_app_get(struct gw_store *st, int64_t id, struct gw_application *app)
{
	int rv;

	pthread_mutex_lock(&st->lock);
	rv = app_read(st, id, app, false);
	pthread_mutex_unlock(&st->lock);
	return rv;
}

int
gw_pg_app_lock_tx(struct gw_store *st, int64_t id, struct gw_application *app)
{
	int rv = -1;

	pthread_mutex_lock(&st->lock);
	/* Outside a transaction FOR UPDATE would hold the lock for that one
	 * statement: nothing decided on the copy would be protected. */
	if (st->tx_depth == 0) {
		gw_log_error("store: application #%lld read for a decision outside a transaction",
		             (long long)id);
		memset(app, 0, sizeof(*app));
	} else {
		rv = app_read(st, id, app, true);
	}
	pthread_mutex_unlock(&st->lock);
	return rv;
}

/* ---- writing ---- */

/* The approvals of app not yet stored (one person once per application:
 * the primary key; an approval already there is left as it is). */
static int
insert_approvals(struct gw_store *st, const struct gw_application *app, char *err,
                 size_t errlen)
{
	struct num id, lv, at;
	const char *vals[6];
	PGresult *r;

	for (unsigned i = 0; i < app->n_approvals; i++) {
		const struct gw_approval *p = &app->approvals[i];

		vals[0] = num(&id, app->id);
		vals[1] = num(&lv, p->level);
		vals[2] = p->approver;
		vals[3] = p->approve ? "true" : "false";
		vals[4] = or_null(p->comment);
		vals[5] = num(&at, p->at);
		r = gw_pg_exec(st, "INSERT INTO approvals (application, level, approver, approve, "
		               "comment, at) VALUES ($1::bigint, $2::integer, $3, $4::boolean, $5, "
		               "$6::bigint) ON CONFLICT (application, approver) DO NOTHING", 6, vals,
		               NULL, NULL, PGRES_COMMAND_OK, err, errlen);
		if (r == NULL)
			return -1;
		PQclear(r);
	}
	return 0;
}

/* Ends the savepoint of a write: kept when rv is 0, else undone. */
static int
end_write(struct gw_store *st, int rv, char *err, size_t errlen)
{
	if (rv == 0)
		return gw_pg_tx_commit(st, err, errlen);
	gw_pg_tx_rollback(st);
	return -1;
}

int
gw_pg_app_insert_tx(struct gw_store *st, struct gw_application *app, char *err, size_t errlen)
{
	struct num amount, rule, level, granted, left, created, until;
	char *levels = gw_app_levels_json(app);
	const char *vals[15];
	int lens[15] = { 0 }, fmts[15] = { 0 };
	PGresult *r;
	int rv = -1;

	if (levels == NULL) {
		sg_seterr(err, errlen, "applications: out of memory");
		return -1;
	}
	if (gw_pg_tx_begin(st, err, errlen) < 0) {
		free(levels);
		return -1;
	}
	vals[0] = app->applicant;
	vals[1] = app->seal;
	vals[2] = or_null(app->document_type);
	vals[3] = or_null(app->business_scope);
	vals[4] = app->has_amount ? num(&amount, app->amount) : NULL;
	vals[5] = app->reason;
	vals[6] = app->has_doc ? (const char *)app->doc_digest : NULL;
	lens[6] = 32;
	fmts[6] = 1;
	vals[7] = num(&rule, app->rule);
	vals[8] = levels;
	vals[9] = num(&level, app->level);
	vals[10] = num(&granted, app->uses_granted);
	vals[11] = num(&left, app->uses_left);
	vals[12] = num(&created, app->created);
	vals[13] = num(&until, app->valid_until);
	vals[14] = gw_app_state_name(app->state);
	/* The id is the identity column's: a sequence hands each value out
	 * once, whichever connection asks (a rolled-back insert leaves a gap). */
	r = gw_pg_exec(st, "INSERT INTO applications (applicant, seal, document_type, "
	               "business_scope, amount, reason, doc_digest, rule, levels, level, "
	               "uses_granted, uses_left, created, valid_until, state, updated) VALUES "
	               "($1, $2, $3, $4, $5::bigint, $6, $7, $8::integer, $9, $10::integer, "
	               "$11::bigint, $12::bigint, $13::bigint, $14::bigint, $15, $13::bigint) "
	               "RETURNING id", 15, vals, lens, fmts, PGRES_TUPLES_OK, err, errlen);
	if (r == NULL)
		goto out;
	if (PQntuples(r) != 1) {
		sg_seterr(err, errlen, "applications: no id returned");
		PQclear(r);
		goto out;
	}
	app->id = col_i64(r, 0, 0);
	PQclear(r);
	rv = insert_approvals(st, app, err, errlen);
out:
	free(levels);
	return end_write(st, rv, err, errlen);
}

int
gw_pg_app_update_tx(struct gw_store *st, const struct gw_application *app,
                    enum gw_app_state from, unsigned from_level, time_t now, char *err,
                    size_t errlen)
{
	struct num level, t, id, fl;
	const char *vals[6] = { gw_app_state_name(app->state), num(&level, app->level),
	                        num(&t, now), num(&id, app->id), gw_app_state_name(from),
	                        num(&fl, from_level) };
	PGresult *r;
	int rv = -1;

	if (gw_pg_tx_begin(st, err, errlen) < 0)
		return -1;
	/* As on SQLite: uses_left is never written by a transition, and the
	 * row must still be in the state and level the decision saw. */
	r = gw_pg_exec(st, "UPDATE applications SET state = $1, level = $2::integer, "
	               "updated = $3::bigint WHERE id = $4::bigint AND state = $5 AND "
	               "level = $6::integer", 6, vals, NULL, NULL, PGRES_COMMAND_OK, err, errlen);
	if (r == NULL)
		goto out;
	if (gw_pg_changes(r) != 1) {
		sg_seterr(err, errlen, "application #%lld changed meanwhile; try again",
		          (long long)app->id);
		PQclear(r);
		goto out;
	}
	PQclear(r);
	rv = insert_approvals(st, app, err, errlen);
out:
	return end_write(st, rv, err, errlen);
}

int
gw_pg_app_spend_tx(struct gw_store *st, int64_t id, time_t now, char *err, size_t errlen)
{
	struct num t, i;
	const char *vals[2] = { num(&t, now), num(&i, id) };
	PGresult *r;
	int n;

	pthread_mutex_lock(&st->lock);
	/* A second UPDATE of the row waits for the first and evaluates its
	 * WHERE again on the row the first left: of N spenders at once on
	 * any number of connections, at most uses_left succeed. */
	r = gw_pg_exec_prepared(st, GW_PG_STMT_APP_SPEND,
	                        "UPDATE applications SET uses_left = uses_left - 1, "
	                        "state = CASE WHEN uses_left = 1 THEN 'used_up' ELSE state END, "
	                        "updated = $1::bigint WHERE id = $2::bigint AND "
	                        "state = 'authorized' AND uses_left > 0 AND "
	                        "valid_until > $1::bigint", 2, vals, PGRES_COMMAND_OK, err, errlen);
	pthread_mutex_unlock(&st->lock);
	if (r == NULL)
		return -1;
	n = gw_pg_changes(r);
	PQclear(r);
	if (n != 1) {
		sg_seterr(err, errlen, "application #%lld has no use left", (long long)id);
		return -2;
	}
	return 0;
}

int
gw_pg_app_refund_tx(struct gw_store *st, int64_t id, time_t now, char *err, size_t errlen)
{
	struct num t, i;
	const char *vals[2] = { num(&t, now), num(&i, id) };
	PGresult *r;

	pthread_mutex_lock(&st->lock);
	r = gw_pg_exec(st, "UPDATE applications SET uses_left = uses_left + 1, "
	               "state = 'authorized', updated = $1::bigint WHERE id = $2::bigint AND "
	               "state IN ('authorized', 'used_up') AND uses_left < uses_granted", 2, vals,
	               NULL, NULL, PGRES_COMMAND_OK, err, errlen);
	pthread_mutex_unlock(&st->lock);
	PQclear(r);
	return r ? 0 : -1;
}

/* ---- listing ---- */

/* The state names' bits as workflow.h numbers them, for the filter. */
#define STATE_BIT "(1::bigint << CASE state WHEN 'pending' THEN 1 WHEN 'authorized' THEN 2" \
	" WHEN 'used_up' THEN 3 WHEN 'expired' THEN 4 WHEN 'revoked' THEN 5" \
	" WHEN 'rejected' THEN 6 ELSE 0 END)"

static int
ids_of(PGresult *r, int64_t *ids, size_t max, size_t *n)
{
	int rows = PQntuples(r);

	for (int i = 0; i < rows && *n < max; i++)
		ids[(*n)++] = col_i64(r, i, 0);
	return 0;
}

int
gw_pg_app_page(struct gw_store *st, const struct gw_app_filter *f, bool oldest_first,
               int64_t from, int64_t *ids, size_t max, size_t *n)
{
	struct num states, fr, lim;
	const char *vals[5] = { or_null(f->applicant), or_null(f->seal), num(&states, f->states),
	                        num(&fr, oldest_first || from > 0 ? from : INT64_MAX),
	                        num(&lim, (int64_t)max) };
	PGresult *r;

	*n = 0;
	pthread_mutex_lock(&st->lock);
	r = gw_pg_exec(st, oldest_first ?
	               "SELECT id FROM applications WHERE ($1::text IS NULL OR applicant = $1) "
	               "AND ($2::text IS NULL OR seal = $2) AND ($3::bigint = 0 OR "
	               "($3::bigint & " STATE_BIT ") <> 0) AND id > $4::bigint "
	               "ORDER BY id LIMIT $5::bigint" :
	               "SELECT id FROM applications WHERE ($1::text IS NULL OR applicant = $1) "
	               "AND ($2::text IS NULL OR seal = $2) AND ($3::bigint = 0 OR "
	               "($3::bigint & " STATE_BIT ") <> 0) AND id < $4::bigint "
	               "ORDER BY id DESC LIMIT $5::bigint",
	               5, vals, NULL, NULL, PGRES_TUPLES_OK, NULL, 0);
	pthread_mutex_unlock(&st->lock);
	if (r == NULL)
		return -1;
	ids_of(r, ids, max, n);
	PQclear(r);
	return 0;
}

int
gw_pg_app_due_to_expire(struct gw_store *st, time_t now, int64_t *ids, size_t max, size_t *n)
{
	struct num t, lim;
	const char *vals[2] = { num(&t, now), num(&lim, (int64_t)max) };
	PGresult *r;

	*n = 0;
	pthread_mutex_lock(&st->lock);
	r = gw_pg_exec(st, "SELECT id FROM applications WHERE state IN ('pending', 'authorized') "
	               "AND valid_until <= $1::bigint ORDER BY id LIMIT $2::bigint", 2, vals, NULL,
	               NULL, PGRES_TUPLES_OK, NULL, 0);
	pthread_mutex_unlock(&st->lock);
	if (r == NULL)
		return -1;
	ids_of(r, ids, max, n);
	PQclear(r);
	return 0;
}

/* ---- quota counters ---- */

int
gw_pg_quota_get(struct gw_store *st, const char *seal, const char *period, const char *person,
                uint64_t *used)
{
	const char *vals[3] = { seal, period, person ? person : "" };
	PGresult *r;

	*used = 0;
	pthread_mutex_lock(&st->lock);
	r = gw_pg_exec(st, "SELECT used FROM quota_use WHERE seal = $1 AND period = $2 AND "
	               "person = $3", 3, vals, NULL, NULL, PGRES_TUPLES_OK, NULL, 0);
	pthread_mutex_unlock(&st->lock);
	if (r == NULL)
		return -1;
	if (PQntuples(r) == 1)
		*used = (uint64_t)col_i64(r, 0, 0);
	PQclear(r);
	return 0;
}

int
gw_pg_quota_add_tx(struct gw_store *st, const char *seal, const char *period,
                   const char *person, uint64_t limit, char *err, size_t errlen)
{
	struct num l;
	const char *vals[4] = { seal, period, person ? person : "", NULL };
	PGresult *r;
	int n;

	if (limit > (uint64_t)INT64_MAX) {
		sg_seterr(err, errlen, "quota_use: limit out of range");
		return -1;
	}
	vals[3] = num(&l, (int64_t)limit);
	pthread_mutex_lock(&st->lock);
	/* The limit in the statement, the row count deciding: the first row
	 * only when one use fits; two first inserts at once meet on the
	 * primary key and the second takes the update. The update locks the
	 * row and, under READ COMMITTED, evaluates its WHERE on the newest
	 * version, so exactly limit adds count however many connections. */
	r = gw_pg_exec(st, "INSERT INTO quota_use (seal, period, person, used) "
	               "SELECT $1::text, $2::text, $3::text, 1 WHERE $4::bigint = 0 OR $4::bigint >= 1 "
	               "ON CONFLICT (seal, period, person) DO UPDATE SET used = quota_use.used + 1 "
	               "WHERE $4::bigint = 0 OR quota_use.used + 1 <= $4::bigint",
	               4, vals, NULL, NULL, PGRES_COMMAND_OK, err, errlen);
	pthread_mutex_unlock(&st->lock);
	if (r == NULL)
		return -1;
	n = gw_pg_changes(r);
	PQclear(r);
	return n == 1 ? 1 : 0;
}

/* Appends v to the text[] literal at buf[*at], quoted ("…", with \\ and
 * " escaped, so any text is one element): 0, or -1 when it does not fit. */
static int
arr_add(char *buf, size_t len, size_t *at, const char *v)
{
	size_t k = *at;

	if (k + 2 > len)
		return -1;
	if (k > 1)
		buf[k++] = ',';
	buf[k++] = '"';
	for (; *v; v++) {
		if (k + 4 > len)
			return -1;
		if (*v == '"' || *v == '\\')
			buf[k++] = '\\';
		buf[k++] = *v;
	}
	if (k + 3 > len)
		return -1;
	buf[k++] = '"';
	buf[k] = '\0';
	*at = k;
	return 0;
}

/* Ends the literal arr_add filled: 0, or -1 when "}" does not fit. */
static int
arr_end(char *buf, size_t len, size_t at)
{
	if (at + 2 > len)
		return -1;
	buf[at] = '}';
	buf[at + 1] = '\0';
	return 0;
}

/* Makes the open transaction fail (its COMMIT answers ROLLBACK): for a
 * change that must not be left half done and could not be undone. */
static void
tx_fail(struct gw_store *st, const char *why)
{
	const char *vals[1] = { why };

	pthread_mutex_lock(&st->lock);
	PQclear(gw_pg_exec(st, "SELECT $1::text::bigint", 1, vals, NULL, NULL, PGRES_TUPLES_OK,
	                   NULL, 0));
	pthread_mutex_unlock(&st->lock);
}

/* Takes back the units of u[i] with counted[i] that this transaction
 * has just counted, so that a call that did not count them all counted
 * none (appstore.h): the transaction holds those rows' locks since it
 * counted them, so no other connection has seen or changed them and one
 * less is exactly what they were. No savepoint is needed for it, whose
 * SAVEPOINT and RELEASE were two of a signature's three statements. 0, or
 * -1 with err and the transaction failed (nothing of it commits). */
static int
uncount(struct gw_store *st, const struct gw_appstore_quota_unit *u, size_t n,
        const bool *counted, char *err, size_t errlen)
{
	char seals[2048] = "{", periods[512] = "{", persons[2048] = "{";
	size_t as = 1, ap = 1, aq = 1, m = 0;
	const char *vals[3] = { seals, periods, persons };
	PGresult *r = NULL;
	int rv = -1;

	for (size_t i = 0; i < n; i++) {
		if (!counted[i])
			continue;
		m++;
		/* (the same names fitted the counting statement's arrays) */
		if (arr_add(seals, sizeof(seals), &as, u[i].seal) < 0 ||
		    arr_add(periods, sizeof(periods), &ap, u[i].period) < 0 ||
		    arr_add(persons, sizeof(persons), &aq, u[i].person ? u[i].person : "") < 0) {
			sg_seterr(err, errlen, "quota_use: counter names too long");
			goto out;
		}
	}
	if (m == 0)
		return 0;
	if (arr_end(seals, sizeof(seals), as) < 0 || arr_end(periods, sizeof(periods), ap) < 0 ||
	    arr_end(persons, sizeof(persons), aq) < 0) {
		sg_seterr(err, errlen, "quota_use: counter names too long");
		goto out;
	}
	pthread_mutex_lock(&st->lock);
	r = gw_pg_exec(st, "UPDATE quota_use AS q SET used = q.used - 1 FROM unnest($1::text[], "
	               "$2::text[], $3::text[]) AS k(seal, period, person) WHERE q.seal = k.seal "
	               "AND q.period = k.period AND q.person = k.person AND q.used > 0", 3, vals,
	               NULL, NULL, PGRES_COMMAND_OK, err, errlen);
	pthread_mutex_unlock(&st->lock);
	if (r == NULL)
		return -1;   /* (the failed statement failed the transaction) */
	if (gw_pg_changes(r) == (int)m)
		rv = 0;
	else
		sg_seterr(err, errlen, "quota_use: %d of %zu counter(s) taken back", gw_pg_changes(r),
		          m);
out:
	PQclear(r);
	/* (cannot be, the rows being locked and their names fitting: but a
	 * refusal must never leave a unit counted) */
	if (rv < 0)
		tx_fail(st, "quota_use: counted units not taken back");
	return rv;
}

int
gw_pg_quota_add_all_tx(struct gw_store *st, const struct gw_appstore_quota_unit *u, size_t n,
                       size_t *full, char *err, size_t errlen)
{
	/* (GW_QUOTA_MAX_KEYS counters of names up to 128 bytes, each
	 * character escaped at worst) */
	char seals[2048] = "{", periods[512] = "{", persons[2048] = "{", limits[256] = "{";
	size_t as = 1, ap = 1, aq = 1, al = 1;
	const char *vals[4] = { seals, periods, persons, limits };
	bool counted[8] = { false };
	PGresult *r;
	int rv = -1;

	*full = 0;
	if (n == 0)
		return 1;
	if (n > sizeof(counted) / sizeof(counted[0])) {
		sg_seterr(err, errlen, "quota_use: too many counters at once");
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		int w;

		if (u[i].limit > (uint64_t)INT64_MAX) {
			sg_seterr(err, errlen, "quota_use: limit out of range");
			return -1;
		}
		w = snprintf(limits + al, sizeof(limits) - al, "%s%" PRIu64, i ? "," : "", u[i].limit);
		if (w < 0 || (size_t)w >= sizeof(limits) - al ||
		    arr_add(seals, sizeof(seals), &as, u[i].seal) < 0 ||
		    arr_add(periods, sizeof(periods), &ap, u[i].period) < 0 ||
		    arr_add(persons, sizeof(persons), &aq, u[i].person ? u[i].person : "") < 0) {
			sg_seterr(err, errlen, "quota_use: counter names too long");
			return -1;
		}
		al += (size_t)w;
	}
	if (arr_end(seals, sizeof(seals), as) < 0 || arr_end(periods, sizeof(periods), ap) < 0 ||
	    arr_end(persons, sizeof(persons), aq) < 0 || arr_end(limits, sizeof(limits), al) < 0) {
		sg_seterr(err, errlen, "quota_use: counter names too long");
		return -1;
	}
	pthread_mutex_lock(&st->lock);
	/* gw_pg_quota_add_tx's statement over a list of counters, in their
	 * order: each row decided as there (the limit in the statement, the
	 * newest row version re-checked under its row lock), so exactly
	 * limit adds count however many connections; the rows it returns are
	 * the counters it counted. One round trip for all of a signature's
	 * counters (it was one each). The update's limit is looked up in the
	 * list again: ON CONFLICT sees only the proposed row's columns. */
	r = gw_pg_exec_prepared(st, GW_PG_STMT_QUOTA_ADD_ALL,
	                        "INSERT INTO quota_use AS q (seal, period, person, used) "
	                        "SELECT k.seal, k.period, k.person, 1 FROM unnest($1::text[], "
	                        "$2::text[], $3::text[], $4::bigint[]) WITH ORDINALITY "
	                        "AS k(seal, period, person, lim, i) WHERE k.lim = 0 OR k.lim >= 1 "
	                        "ORDER BY k.i "
	                        "ON CONFLICT (seal, period, person) DO UPDATE SET used = q.used + 1 "
	                        "WHERE EXISTS (SELECT 1 FROM unnest($1::text[], $2::text[], "
	                        "$3::text[], $4::bigint[]) AS l(seal, period, person, lim) "
	                        "WHERE l.seal = q.seal AND l.period = q.period AND "
	                        "l.person = q.person AND (l.lim = 0 OR q.used + 1 <= l.lim)) "
	                        "RETURNING q.seal, q.period, q.person",
	                        4, vals, PGRES_TUPLES_OK, err, errlen);
	pthread_mutex_unlock(&st->lock);
	if (r == NULL)
		return -1;
	for (int row = 0; row < PQntuples(r); row++)
		for (size_t i = 0; i < n; i++)
			if (!counted[i] && strcmp(PQgetvalue(r, row, 0), u[i].seal) == 0 &&
			    strcmp(PQgetvalue(r, row, 1), u[i].period) == 0 &&
			    strcmp(PQgetvalue(r, row, 2), u[i].person ? u[i].person : "") == 0) {
				counted[i] = true;
				break;
			}
	PQclear(r);
	rv = 1;
	for (size_t i = 0; i < n; i++)
		if (!counted[i]) {
			*full = i;
			rv = 0;
			break;
		}
	if (rv == 0 && uncount(st, u, n, counted, err, errlen) < 0)
		return -1;
	return rv;
}

int
gw_pg_quota_sub_tx(struct gw_store *st, const char *seal, const char *period,
                   const char *person, char *err, size_t errlen)
{
	const char *vals[3] = { seal, period, person ? person : "" };
	PGresult *r;

	pthread_mutex_lock(&st->lock);
	r = gw_pg_exec(st, "UPDATE quota_use SET used = used - 1 WHERE seal = $1 AND period = $2 "
	               "AND person = $3 AND used > 0", 3, vals, NULL, NULL, PGRES_COMMAND_OK, err,
	               errlen);
	pthread_mutex_unlock(&st->lock);
	PQclear(r);
	return r ? 0 : -1;
}
