/*
 * The policy repository on PostgreSQL (table policy_versions, migration 3
 * of store.c) and the change feed: a LISTEN connection of its own per
 * feed, and NOTIFY sent inside the transaction that makes a change, so a
 * feed hears of it only once it is committed.
 */
#include "pg_store.h"
#include "pg_policystore.h"
#include "protocol.h"
#include "log.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The one channel every gateway of the store listens on. */
#define CHANNEL "sealgate_changes"

int
gw_pg_policy_publish_tx(struct gw_store *st, const struct gw_policy_version *v, char *err,
                        size_t errlen)
{
	char ver[24], prev[24], when[24], event[48];
	const char *vals[6];
	int lens[6] = { 0 }, fmts[6] = { 0 };
	PGresult *r;
	int rv = -1, n;

	snprintf(ver, sizeof(ver), "%" PRId64, v->version);
	snprintf(prev, sizeof(prev), "%" PRId64, v->version - 1);
	snprintf(when, sizeof(when), "%" PRId64, v->published);
	vals[0] = ver;
	vals[1] = (const char *)v->sha256; lens[1] = 32; fmts[1] = 1;
	vals[2] = v->text ? v->text : ""; lens[2] = (int)v->len; fmts[2] = 1;
	vals[3] = v->author;
	vals[4] = when;
	vals[5] = prev;
	pthread_mutex_lock(&st->lock);
	/* The newest must be the one before: the row count says whether it
	 * was. Two publishing at once both see it; the primary key then
	 * makes the second wait for the first and fail. */
	r = gw_pg_exec(st, "INSERT INTO policy_versions (version, sha256, text, author, published) "
	               "SELECT $1, $2, $3, $4, $5 WHERE (SELECT coalesce(max(version), 0) "
	               "FROM policy_versions) = $6", 6, vals, lens, fmts, PGRES_COMMAND_OK, err,
	               errlen);
	if (r == NULL) {
		if (err != NULL && strstr(err, "SQLSTATE 23505") != NULL)
			sg_seterr(err, errlen, "policy version %" PRId64 " was published meanwhile: "
			          "publish again", v->version);
		goto out;
	}
	n = gw_pg_changes(r);
	PQclear(r);
	if (n != 1) {
		sg_seterr(err, errlen, "policy version %" PRId64 " cannot follow the newest "
		          "(published meanwhile): publish again", v->version);
		goto out;
	}
	snprintf(event, sizeof(event), "policy:%" PRId64, v->version);
	rv = gw_pg_changes_notify_tx(st, event, err, errlen);
out:
	pthread_mutex_unlock(&st->lock);
	return rv;
}

/* A bytea column of a text result, as bytes (PQfreemem them). */
static unsigned char *
col_bytes(PGresult *r, int row, int col, size_t *len)
{
	return PQunescapeBytea((const unsigned char *)PQgetvalue(r, row, col), len);
}

static int
row_to_version(PGresult *r, int row, bool with_text, struct gw_policy_version *v)
{
	unsigned char *h, *t;
	size_t hl = 0, tl = 0;

	memset(v, 0, sizeof(*v));
	v->version = strtoll(PQgetvalue(r, row, 0), NULL, 10);
	h = col_bytes(r, row, 1, &hl);
	if (h == NULL || hl != 32) {
		PQfreemem(h);
		return -1;
	}
	memcpy(v->sha256, h, 32);
	PQfreemem(h);
	v->published = strtoll(PQgetvalue(r, row, 3), NULL, 10);
	if ((v->author = strdup(PQgetvalue(r, row, 2))) == NULL)
		return -1;
	if (with_text) {
		t = col_bytes(r, row, 4, &tl);
		if (t == NULL || (v->text = malloc(tl + 1)) == NULL) {
			PQfreemem(t);
			return -1;
		}
		memcpy(v->text, t, tl);
		v->text[tl] = '\0';
		v->len = tl;
		PQfreemem(t);
	}
	return 0;
}

int
gw_pg_policy_get(struct gw_store *st, int64_t n, struct gw_policy_version *out, char *err,
                 size_t errlen)
{
	char ver[24];
	const char *vals[1] = { ver };
	PGresult *r;
	int rv = -1;

	memset(out, 0, sizeof(*out));
	snprintf(ver, sizeof(ver), "%" PRId64, n);
	pthread_mutex_lock(&st->lock);
	r = n > 0 ?
	    gw_pg_exec(st, "SELECT version, sha256, author, published, text FROM policy_versions "
	               "WHERE version = $1", 1, vals, NULL, NULL, PGRES_TUPLES_OK, err, errlen) :
	    gw_pg_exec(st, "SELECT version, sha256, author, published, text FROM policy_versions "
	               "ORDER BY version DESC LIMIT 1", 0, NULL, NULL, NULL, PGRES_TUPLES_OK, err,
	               errlen);
	if (r == NULL)
		goto out;
	if (PQntuples(r) == 0) {
		rv = 0;
	} else if (row_to_version(r, 0, true, out) < 0) {
		gw_policy_version_clear(out);
		sg_seterr(err, errlen, "policy versions: a row is not as sealgate writes it, or out "
		          "of memory");
	} else
		rv = 1;
	PQclear(r);
out:
	pthread_mutex_unlock(&st->lock);
	return rv;
}

int
gw_pg_policy_latest(struct gw_store *st, int64_t *version, char *err, size_t errlen)
{
	PGresult *r;

	*version = 0;
	pthread_mutex_lock(&st->lock);
	r = gw_pg_exec(st, "SELECT coalesce(max(version), 0) FROM policy_versions", 0, NULL, NULL,
	               NULL, PGRES_TUPLES_OK, err, errlen);
	if (r != NULL && PQntuples(r) == 1)
		*version = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
	pthread_mutex_unlock(&st->lock);
	PQclear(r);
	return r != NULL ? 0 : -1;
}

int
gw_pg_policy_history(struct gw_store *st, size_t limit, gw_store_policy_fn fn, void *ctx,
                     char *err, size_t errlen)
{
	char lim[24];
	const char *vals[1] = { lim };
	struct gw_policy_version v;
	PGresult *r;
	int rv = 0;

	/* ALL when there is no limit: LIMIT NULL is none. */
	snprintf(lim, sizeof(lim), "%zu", limit);
	pthread_mutex_lock(&st->lock);
	r = gw_pg_exec(st, "SELECT version, sha256, author, published FROM policy_versions "
	               "ORDER BY version DESC LIMIT nullif($1::bigint, 0)", 1, vals, NULL, NULL,
	               PGRES_TUPLES_OK, err, errlen);
	pthread_mutex_unlock(&st->lock);
	if (r == NULL)
		return -1;
	/* (the rows are the result's own: fn runs without the lock) */
	for (int i = 0; i < PQntuples(r) && rv == 0; i++) {
		if (row_to_version(r, i, false, &v) < 0) {
			sg_seterr(err, errlen, "policy versions: a row is not as sealgate writes it, or "
			          "out of memory");
			rv = -1;
		} else
			rv = fn(ctx, &v);
		gw_policy_version_clear(&v);
	}
	PQclear(r);
	return rv;
}

int
gw_pg_changes_notify_tx(struct gw_store *st, const char *event, char *err, size_t errlen)
{
	const char *vals[1] = { event };
	PGresult *r;

	pthread_mutex_lock(&st->lock);
	if (st->tx_depth == 0) {
		pthread_mutex_unlock(&st->lock);
		sg_seterr(err, errlen, "PostgreSQL store: a change event outside a transaction");
		return -1;
	}
	/* Delivered at COMMIT, and not at all on a rollback. */
	r = gw_pg_exec(st, "SELECT pg_notify('" CHANNEL "', $1)", 1, vals, NULL, NULL,
	               PGRES_TUPLES_OK, err, errlen);
	pthread_mutex_unlock(&st->lock);
	PQclear(r);
	return r != NULL ? 0 : -1;
}

/* ---- the feed ---- */

struct pg_feed {
	PGconn *conn;
};

static void
feed_err(PGconn *c, char *err, size_t errlen, const char *what)
{
	const char *m = c ? PQerrorMessage(c) : "out of memory";
	size_t n = strlen(m);

	while (n > 0 && (m[n - 1] == '\n' || m[n - 1] == ' '))
		n--;
	sg_seterr(err, errlen, "PostgreSQL change feed: %s: %.*s", what, (int)n, m);
}

static void
quiet_notice(void *arg, const char *msg)
{
	(void)arg;
	(void)msg;
}

int
gw_pg_changes_open(struct gw_store *st, void **impl, char *err, size_t errlen)
{
	PQconninfoOption *opts = NULL;
	const char **keys = NULL, **vals = NULL;
	struct pg_feed *f = NULL;
	size_t n = 0, i = 0;
	PGresult *r;
	int rv = -1;

	*impl = NULL;
	/* The store's own connection parameters, password included (from its
	 * URL or passfile): they stay in memory and in no message. */
	pthread_mutex_lock(&st->lock);
	opts = PQconninfo(st->conn);
	pthread_mutex_unlock(&st->lock);
	if (opts == NULL) {
		sg_seterr(err, errlen, "PostgreSQL change feed: out of memory");
		goto out;
	}
	for (PQconninfoOption *o = opts; o->keyword != NULL; o++)
		n++;
	keys = calloc(n + 2, sizeof(*keys));
	vals = calloc(n + 2, sizeof(*vals));
	f = calloc(1, sizeof(*f));
	if (keys == NULL || vals == NULL || f == NULL) {
		sg_seterr(err, errlen, "PostgreSQL change feed: out of memory");
		goto out;
	}
	for (PQconninfoOption *o = opts; o->keyword != NULL; o++)
		if (o->val != NULL && strcmp(o->keyword, "application_name") != 0) {
			keys[i] = o->keyword;
			vals[i++] = o->val;
		}
	keys[i] = "application_name";
	vals[i++] = "sealgated-feed";
	f->conn = PQconnectdbParams(keys, vals, 0);
	if (f->conn == NULL || PQstatus(f->conn) != CONNECTION_OK) {
		feed_err(f->conn, err, errlen, "cannot connect");
		goto out;
	}
	PQsetNoticeProcessor(f->conn, quiet_notice, NULL);
	r = PQexec(f->conn, "LISTEN " CHANNEL);
	if (r == NULL || PQresultStatus(r) != PGRES_COMMAND_OK) {
		PQclear(r);
		feed_err(f->conn, err, errlen, "LISTEN");
		goto out;
	}
	PQclear(r);
	*impl = f;
	f = NULL;
	rv = 1;
out:
	if (f != NULL) {
		if (f->conn)
			PQfinish(f->conn);
		free(f);
	}
	free(keys);
	free(vals);
	if (opts)
		PQconninfoFree(opts);
	return rv;
}

/* Delivers what libpq has read so far. */
static int
drain(struct pg_feed *f, gw_store_change_fn fn, void *ctx)
{
	PGnotify *n;
	int count = 0;

	while ((n = PQnotifies(f->conn)) != NULL) {
		if (n->extra != NULL && strlen(n->extra) <= GW_CHANGE_EVENT_MAX)
			fn(ctx, n->extra);
		PQfreemem(n);
		count++;
	}
	return count;
}

int
gw_pg_changes_wait(void *impl, int timeout_ms, gw_store_change_fn fn, void *ctx, char *err,
                   size_t errlen)
{
	struct pg_feed *f = impl;
	struct pollfd p;
	int count, pr;

	if (PQstatus(f->conn) != CONNECTION_OK) {
		sg_seterr(err, errlen, "PostgreSQL change feed: the connection is lost");
		return -1;
	}
	count = drain(f, fn, ctx);
	if (count > 0)
		return count;
	p.fd = PQsocket(f->conn);
	p.events = POLLIN;
	p.revents = 0;
	if (p.fd < 0) {
		sg_seterr(err, errlen, "PostgreSQL change feed: the connection is lost");
		return -1;
	}
	pr = poll(&p, 1, timeout_ms);
	if (pr < 0 && errno != EINTR) {
		sg_seterr(err, errlen, "PostgreSQL change feed: poll: %s", strerror(errno));
		return -1;
	}
	if (pr <= 0)
		return 0;
	/* Readable with nothing to read is the server gone. */
	if (!PQconsumeInput(f->conn) || PQstatus(f->conn) != CONNECTION_OK) {
		feed_err(f->conn, err, errlen, "the connection is lost");
		return -1;
	}
	return drain(f, fn, ctx);
}

void
gw_pg_changes_close(void *impl)
{
	struct pg_feed *f = impl;

	if (f == NULL)
		return;
	if (f->conn)
		PQfinish(f->conn);
	free(f);
}
