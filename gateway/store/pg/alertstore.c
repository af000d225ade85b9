/*
 * The alerts repository on PostgreSQL (table risk_alerts, migration 7 of
 * store.c), per site, as on SQLite (sqlite/alertstore.c).
 */
#include "pg_store.h"
#include "pg_alertstore.h"
#include "protocol.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ALERT_COLS "id, key, rule, severity, subject, why, ts_ns, seqs, apps, raised, state, " \
                   "state_by, state_comment, state_at, site"

int
gw_pg_alert_init(struct gw_store *st, char *err, size_t errlen)
{
	/* Made by migration 7. */
	(void)st;
	(void)err;
	(void)errlen;
	return 0;
}

int
gw_pg_alert_put_tx(struct gw_store *st, const struct gw_alert_row *a, int64_t *id,
                   bool *created, char *err, size_t errlen)
{
	char ts[24], raised[24];
	const char *vals[10] = { gw_store_site(st), a->key, a->rule, a->severity, a->subject,
	                         a->why, ts, a->seqs, a->apps, raised };
	PGresult *r;

	snprintf(ts, sizeof(ts), "%" PRId64, a->ts_ns);
	snprintf(raised, sizeof(raised), "%" PRId64, a->raised);
	pthread_mutex_lock(&st->lock);
	/* xmax = 0: the row was inserted by this statement, not updated (the
	 * evidence only grows; the state and who gave it are kept). */
	r = gw_pg_exec(st, "INSERT INTO risk_alerts (site, key, rule, severity, subject, why, ts_ns, "
	               "seqs, apps, raised, state) VALUES ($1, $2, $3, $4, $5, $6, $7::bigint, $8, $9, "
	               "$10::bigint, 'open') ON CONFLICT (site, key) DO UPDATE SET why = excluded.why, "
	               "ts_ns = excluded.ts_ns, seqs = excluded.seqs, apps = excluded.apps "
	               "RETURNING id, (xmax = 0)", 10, vals, NULL, NULL, PGRES_TUPLES_OK, err, errlen);
	pthread_mutex_unlock(&st->lock);
	if (r == NULL)
		return -1;
	if (PQntuples(r) != 1) {
		sg_seterr(err, errlen, "risk_alerts: no row returned");
		PQclear(r);
		return -1;
	}
	*id = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
	*created = PQgetvalue(r, 0, 1)[0] == 't';
	PQclear(r);
	return 0;
}

int
gw_pg_alert_state_tx(struct gw_store *st, int64_t id, const char *const *from,
                     const char *state, const char *by, const char *comment, int64_t at,
                     char *err, size_t errlen)
{
	char ids[24], ats[24];
	const char *vals[6] = { gw_store_site(st), ids, state, by, comment, ats };
	PGresult *r;
	int rv = 0;

	snprintf(ids, sizeof(ids), "%" PRId64, id);
	snprintf(ats, sizeof(ats), "%" PRId64, at);
	pthread_mutex_lock(&st->lock);
	for (size_t i = 0; from[i] != NULL && rv == 0; i++) {
		const char *v[7] = { vals[0], vals[1], vals[2], vals[3], vals[4], vals[5], from[i] };
		r = gw_pg_exec(st, "UPDATE risk_alerts SET state = $3, state_by = $4, state_comment = $5, "
		               "state_at = $6::bigint WHERE site = $1 AND id = $2::bigint AND state = $7",
		               7, v, NULL, NULL, PGRES_COMMAND_OK, err, errlen);
		if (r == NULL) {
			rv = -1;
			break;
		}
		rv = gw_pg_changes(r) > 0 ? 1 : 0;
		PQclear(r);
	}
	pthread_mutex_unlock(&st->lock);
	return rv;
}

static const char *
val(PGresult *r, int row, int col)
{
	return PQgetisnull(r, row, col) ? NULL : PQgetvalue(r, row, col);
}

int
gw_pg_alert_list(struct gw_store *st, const struct gw_alert_filter *f, gw_alertstore_fn fn,
                 void *ctx, char *err, size_t errlen)
{
	char since[24], id[24], limit[24];
	const char *vals[6] = { gw_store_site(st), f->open_only ? "1" : "0", f->rule, since, id,
	                        limit };
	PGresult *r;
	int rv = 0;

	snprintf(since, sizeof(since), "%" PRId64, f->since_ns);
	snprintf(id, sizeof(id), "%" PRId64, f->id);
	snprintf(limit, sizeof(limit), "%zu", f->limit);
	pthread_mutex_lock(&st->lock);
	r = gw_pg_exec(st, "SELECT " ALERT_COLS " FROM risk_alerts WHERE site = $1 AND "
	               "($2 = '0' OR state <> 'closed') AND ($3::text IS NULL OR rule = $3) AND "
	               "ts_ns >= $4::bigint AND ($5::bigint = 0 OR id = $5::bigint) "
	               "ORDER BY ts_ns DESC, id DESC LIMIT NULLIF($6::bigint, 0)", 6, vals, NULL,
	               NULL, PGRES_TUPLES_OK, err, errlen);
	pthread_mutex_unlock(&st->lock);
	if (r == NULL)
		return -1;
	/* The result is the caller's copy: fn may use the store. */
	for (int i = 0; i < PQntuples(r) && rv == 0; i++) {
		struct gw_alert_row a = {
			.id = strtoll(PQgetvalue(r, i, 0), NULL, 10), .key = val(r, i, 1),
			.rule = val(r, i, 2), .severity = val(r, i, 3), .subject = val(r, i, 4),
			.why = val(r, i, 5), .ts_ns = strtoll(PQgetvalue(r, i, 6), NULL, 10),
			.seqs = val(r, i, 7), .apps = val(r, i, 8),
			.raised = strtoll(PQgetvalue(r, i, 9), NULL, 10), .state = val(r, i, 10),
			.state_by = val(r, i, 11), .state_comment = val(r, i, 12),
			.state_at = strtoll(PQgetvalue(r, i, 13), NULL, 10), .site = val(r, i, 14),
		};
		rv = fn(ctx, &a);
	}
	PQclear(r);
	return rv;
}
