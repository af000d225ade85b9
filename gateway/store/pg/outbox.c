/*
 * The outbox on PostgreSQL (table outbox, migration 7 of store.c), the
 * group's: any gateway of the store sends any notice. A claim is one
 * UPDATE of the rows a subquery locks FOR UPDATE SKIP LOCKED: two gateways
 * claiming at once take different notices (a row the other holds is
 * skipped, a row it claimed meanwhile no longer matches once re-read), so
 * no notice is sent by two.
 */
#include "pg_store.h"
#include "pg_outbox.h"
#include "protocol.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int
gw_pg_outbox_init(struct gw_store *st, char *err, size_t errlen)
{
	(void)st; (void)err; (void)errlen;
	return 0;   /* (the schema's: migration 7) */
}

int
gw_pg_outbox_put_tx(struct gw_store *st, struct gw_outbox_notice *n, const char *dedupe,
                    int64_t now, char *err, size_t errlen)
{
	char app[24], when[24];
	const char *vals[8];
	PGresult *r;
	int rv = -1;

	snprintf(app, sizeof(app), "%" PRId64, n->application);
	snprintf(when, sizeof(when), "%" PRId64, now);
	vals[0] = n->event;
	vals[1] = n->channel;
	vals[2] = n->recipient;
	vals[3] = n->address;
	vals[4] = app;
	vals[5] = dedupe;
	vals[6] = n->detail;
	vals[7] = when;
	pthread_mutex_lock(&st->lock);
	r = gw_pg_exec(st, "INSERT INTO outbox (event, channel, recipient, address, application, "
	               "dedupe, detail, state, next_at, created) VALUES ($1, $2, $3, $4, "
	               "$5::bigint, $6, $7, 'pending', $8::bigint, $8::bigint) "
	               "ON CONFLICT (dedupe) DO NOTHING RETURNING id", 8, vals, NULL, NULL,
	               PGRES_TUPLES_OK, err, errlen);
	if (r == NULL)
		goto out;
	if (PQntuples(r) == 1) {
		n->id = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
		n->created = now;
		rv = 1;
	} else {
		rv = 0;
	}
	PQclear(r);
out:
	pthread_mutex_unlock(&st->lock);
	return rv;
}

static char *
col_dup(PGresult *r, int row, int col)
{
	return PQgetisnull(r, row, col) ? NULL : strdup(PQgetvalue(r, row, col));
}

int
gw_pg_outbox_claim(struct gw_store *st, const char *claimer, int64_t now, unsigned lease_s,
                   struct gw_outbox_notice *out, size_t max, size_t *n, char *err,
                   size_t errlen)
{
	char until[24], when[24], lim[24];
	const char *vals[4] = { claimer, until, when, lim };
	PGresult *r;
	int rv = -1, rows;

	*n = 0;
	snprintf(until, sizeof(until), "%" PRId64, now + (int64_t)lease_s);
	snprintf(when, sizeof(when), "%" PRId64, now);
	snprintf(lim, sizeof(lim), "%zu", max);
	pthread_mutex_lock(&st->lock);
	r = gw_pg_exec(st, "UPDATE outbox SET state = 'sending', claimed_by = $1, "
	               "lease_until = $2::bigint, tries = tries + 1 WHERE id IN (SELECT id FROM "
	               "outbox WHERE (state = 'pending' AND next_at <= $3::bigint) OR "
	               "(state = 'sending' AND lease_until <= $3::bigint) ORDER BY next_at, id "
	               "LIMIT $4::bigint FOR UPDATE SKIP LOCKED) RETURNING id, event, channel, "
	               "recipient, address, application, detail, tries, created", 4, vals, NULL,
	               NULL, PGRES_TUPLES_OK, err, errlen);
	if (r == NULL)
		goto out;
	rows = PQntuples(r);
	for (int i = 0; i < rows && *n < max; i++) {
		struct gw_outbox_notice *o = &out[*n];

		memset(o, 0, sizeof(*o));
		o->id = strtoll(PQgetvalue(r, i, 0), NULL, 10);
		o->event = col_dup(r, i, 1);
		o->channel = col_dup(r, i, 2);
		o->recipient = col_dup(r, i, 3);
		o->address = col_dup(r, i, 4);
		o->application = strtoll(PQgetvalue(r, i, 5), NULL, 10);
		o->detail = col_dup(r, i, 6);
		o->tries = (unsigned)strtoul(PQgetvalue(r, i, 7), NULL, 10);
		o->created = strtoll(PQgetvalue(r, i, 8), NULL, 10);
		(*n)++;
		if (o->event == NULL || o->channel == NULL || o->recipient == NULL ||
		    o->detail == NULL) {
			/* Claimed but not handed out: its lease runs out and
			 * a later claim takes it again. */
			sg_seterr(err, errlen, "outbox: claim: out of memory");
			for (size_t j = 0; j < *n; j++)
				gw_outbox_notice_clear(&out[j]);
			*n = 0;
			PQclear(r);
			goto out;
		}
	}
	PQclear(r);
	rv = 0;
out:
	pthread_mutex_unlock(&st->lock);
	return rv;
}

int
gw_pg_outbox_settle_tx(struct gw_store *st, int64_t id, const char *claimer,
                       enum gw_outbox_outcome outcome, int64_t next_at, const char *error,
                       int64_t now, char *err, size_t errlen)
{
	static const char *const states[] = { "sent", "pending", "failed" };
	char ids[24], next[24], when[24];
	const char *vals[6] = { states[outcome], next, error, when, ids, claimer };
	PGresult *r;
	int rv = -1;

	snprintf(ids, sizeof(ids), "%" PRId64, id);
	snprintf(next, sizeof(next), "%" PRId64, next_at);
	snprintf(when, sizeof(when), "%" PRId64, now);
	pthread_mutex_lock(&st->lock);
	r = gw_pg_exec(st, "UPDATE outbox SET state = $1, next_at = $2::bigint, last_error = $3, "
	               "claimed_by = NULL, lease_until = 0, settled = CASE WHEN $1 = 'pending' "
	               "THEN NULL ELSE $4::bigint END WHERE id = $5::bigint AND state = 'sending' "
	               "AND claimed_by = $6", 6, vals, NULL, NULL, PGRES_COMMAND_OK, err, errlen);
	if (r == NULL)
		goto out;
	rv = gw_pg_changes(r) == 1 ? 1 : 0;
	PQclear(r);
out:
	pthread_mutex_unlock(&st->lock);
	return rv;
}
