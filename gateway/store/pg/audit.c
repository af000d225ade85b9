/*
 * The audit log and its checkpoints on PostgreSQL: each site's chain in
 * table audit keyed (site, seq), its checkpoints keyed (site, id), and the
 * audit batches, which here are the transaction alone (the server's WAL
 * with synchronous_commit on is what SQLite's redo log is). Every call is
 * scoped to the store's site; a query may name another site or "*".
 * Inside a batch the rows wait in memory and go in with one multi-row
 * INSERT just before the transaction's COMMIT (docs/store.md).
 * audit.c owns the rows' meaning and the hash chain (docs/audit.md).
 */
#include "pg_store.h"
#include "protocol.h"
#include "log.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Rows read per statement: the lock (and the connection) is held one page
 * at a time, as on SQLite. */
#define PAGE 512
#define PAGE_S "512"

#define AUDIT_COLS "seq, ts_ns, action, outcome, reason, actor, uid, pid, exe, host, " \
                   "seal, application, doc_digest, signed_digest, mechanism, detail, "  \
                   "prev_hash, hash, site"
#define CP_COLS "seq, ts_ns, hash, alg, signature, cert, id, prev_id, prev_hash"

/* ---- reading binary results ---- */

static int64_t
bin_i64(PGresult *r, int row, int col)
{
	const uint8_t *v = (const uint8_t *)PQgetvalue(r, row, col);
	uint64_t x = 0;

	if (PQgetisnull(r, row, col) || PQgetlength(r, row, col) != 8)
		return 0;
	for (int i = 0; i < 8; i++)
		x = x << 8 | v[i];
	return (int64_t)x;
}

static const char *
bin_text(PGresult *r, int row, int col)
{
	return PQgetisnull(r, row, col) ? NULL : PQgetvalue(r, row, col);
}

static const uint8_t *
bin_blob(PGresult *r, int row, int col, size_t *len)
{
	*len = 0;
	if (PQgetisnull(r, row, col))
		return NULL;
	*len = (size_t)PQgetlength(r, row, col);
	/* NULL and empty are one value (store.h). */
	return *len ? (const uint8_t *)PQgetvalue(r, row, col) : NULL;
}

/* The AUDIT_COLS of row i. The types are the table's: no bad_column. */
static void
read_row(PGresult *r, int i, struct gw_audit_row *a)
{
	memset(a, 0, sizeof(*a));
	a->seq = (uint64_t)bin_i64(r, i, 0);
	a->ts_ns = bin_i64(r, i, 1);
	a->action = bin_text(r, i, 2);
	a->outcome = bin_text(r, i, 3);
	a->reason = bin_text(r, i, 4);
	a->actor = bin_text(r, i, 5);
	a->uid = bin_i64(r, i, 6);
	a->pid = bin_i64(r, i, 7);
	a->exe = bin_text(r, i, 8);
	a->host = bin_text(r, i, 9);
	a->seal = bin_text(r, i, 10);
	a->application = bin_i64(r, i, 11);
	a->doc_digest = bin_blob(r, i, 12, &a->doc_digest_len);
	a->signed_digest = bin_blob(r, i, 13, &a->signed_digest_len);
	a->mechanism = (uint64_t)bin_i64(r, i, 14);
	a->detail = bin_text(r, i, 15);
	a->prev_hash = bin_blob(r, i, 16, &a->prev_hash_len);
	a->hash = bin_blob(r, i, 17, &a->hash_len);
	a->site = bin_text(r, i, 18);
}

/* Parameters as text (numbers) or binary (bytea). */
struct params {
	const char *v[20];
	int len[20], fmt[20];
	char num[20][24];
	int n;
};

static void
p_str(struct params *p, const char *s)
{
	p->v[p->n] = s;
	p->len[p->n] = 0;
	p->fmt[p->n] = 0;
	p->n++;
}

static void
p_i64(struct params *p, int64_t x)
{
	snprintf(p->num[p->n], sizeof(p->num[0]), "%" PRId64, x);
	p_str(p, p->num[p->n]);
}

static void
p_blob(struct params *p, const uint8_t *b, size_t len)
{
	p->v[p->n] = b && len ? (const char *)b : NULL;
	p->len[p->n] = b && len ? (int)len : 0;
	p->fmt[p->n] = 1;
	p->n++;
}

/* ---- rows waiting for the commit ----
 *
 * A batch's rows are written by one round trip per ROWS_PER_STMT rows
 * rather than one each: the writer holds the store's one connection for
 * the whole batch, and on a loaded machine each round trip is a wait for
 * the server's backend to be scheduled. Each row's values are copied (the
 * caller's buffers are its own again once insert returns). A savepoint
 * rolled back drops the rows given since it began (gw_pg_rows_mark);
 * whatever keeps a row from the INSERT (memory, a row the server refuses)
 * fails the COMMIT, so a batch is all in or none of it. */

#define AUDIT_NPARAMS 19
/* 19 parameters a row: 4,864 per statement, far from libpq's 65,535. */
#define ROWS_PER_STMT 256

struct pg_row {
	char *mem;                   /* the copied values, one block */
	const char *v[AUDIT_NPARAMS];
	int len[AUDIT_NPARAMS], fmt[AUDIT_NPARAMS];
};

struct gw_pg_rows {
	struct pg_row *v;
	size_t n, cap;
	size_t sent;                 /* rows of this transaction already INSERTed */
	bool failed;                 /* a row was lost: the transaction must not commit */
	char why[256];
};

static void
rows_drop(struct gw_pg_rows *q, size_t keep)
{
	while (q->n > keep)
		free(q->v[--q->n].mem);
}

/* Copies p's values into a new row of q: 0, or -1 (out of memory). */
static int
rows_add(struct gw_pg_rows *q, const struct params *p)
{
	struct pg_row *row;
	size_t total = 0, at = 0;

	if (q->n == q->cap) {
		size_t cap = q->cap ? 2 * q->cap : 64;
		struct pg_row *v = realloc(q->v, cap * sizeof(*v));

		if (v == NULL)
			return -1;
		q->v = v;
		q->cap = cap;
	}
	for (int i = 0; i < p->n; i++)
		if (p->v[i] != NULL)
			total += p->fmt[i] ? (size_t)p->len[i] : strlen(p->v[i]) + 1;
	row = &q->v[q->n];
	row->mem = malloc(total ? total : 1);
	if (row->mem == NULL)
		return -1;
	for (int i = 0; i < p->n; i++) {
		size_t l = p->v[i] == NULL ? 0 : p->fmt[i] ? (size_t)p->len[i] : strlen(p->v[i]) + 1;

		row->v[i] = p->v[i] == NULL ? NULL : row->mem + at;
		row->len[i] = p->len[i];
		row->fmt[i] = p->fmt[i];
		if (l)
			memcpy(row->mem + at, p->v[i], l);
		at += l;
	}
	q->n++;
	return 0;
}

#define AUDIT_INSERT "INSERT INTO audit (site, seq, ts_ns, action, outcome, reason, actor, " \
                     "uid, pid, exe, host, seal, application, doc_digest, signed_digest, "  \
                     "mechanism, detail, prev_hash, hash) VALUES "
/* Room for one row's placeholders: 19 × ("$" + 4 digits + "::bigint, "). */
#define VALUES_ROOM 320

/* The statement of ROWS_PER_STMT rows, made once: that of n rows is its
 * first insert_end[n] bytes (the placeholders go in row order), so no
 * batch formats its own. */
static char insert_sql[sizeof(AUDIT_INSERT) + ROWS_PER_STMT * VALUES_ROOM];
static size_t insert_end[ROWS_PER_STMT + 1];
static pthread_once_t insert_once = PTHREAD_ONCE_INIT;

static void
insert_sql_make(void)
{
	size_t len = sizeof(AUDIT_INSERT) - 1, room = sizeof(insert_sql);

	memcpy(insert_sql, AUDIT_INSERT, len);
	insert_end[0] = len;
	for (int i = 0; i < ROWS_PER_STMT; i++) {
		int k = i * AUDIT_NPARAMS + 1;
		int w = snprintf(insert_sql + len, room - len, "%s($%d, $%d::bigint, $%d::bigint, "
		                 "$%d, $%d, $%d, $%d, $%d::bigint, $%d::bigint, $%d, $%d, $%d, "
		                 "$%d::bigint, $%d, $%d, $%d::bigint, $%d, $%d, $%d)", i ? "," : "",
		                 k, k + 1, k + 2, k + 3, k + 4, k + 5, k + 6, k + 7, k + 8, k + 9,
		                 k + 10, k + 11, k + 12, k + 13, k + 14, k + 15, k + 16, k + 17, k + 18);

		/* (VALUES_ROOM is far more than a row takes: never cut) */
		len += w > 0 && (size_t)w < room - len ? (size_t)w : 0;
		insert_end[i + 1] = len;
	}
}

/* INSERTs rows [from, from + n) of q with one statement. Call with the
 * lock held, inside the transaction. */
static int
rows_insert(struct gw_store *st, struct gw_pg_rows *q, size_t from, size_t n, char *err,
            size_t errlen)
{
	size_t len;
	char *sql = NULL;
	const char **v = calloc(n * AUDIT_NPARAMS, sizeof(*v));
	int *lens = calloc(n * AUDIT_NPARAMS, sizeof(*lens));
	int *fmts = calloc(n * AUDIT_NPARAMS, sizeof(*fmts));
	PGresult *r = NULL;
	int rv = -1;

	if (n == 0 || n > ROWS_PER_STMT) {
		sg_seterr(err, errlen, "%zu audit records for one INSERT", n);
		goto out;
	}
	pthread_once(&insert_once, insert_sql_make);
	len = insert_end[n];
	sql = malloc(len + 1);
	if (sql == NULL || v == NULL || lens == NULL || fmts == NULL) {
		sg_seterr(err, errlen, "out of memory writing %zu audit record(s)", n);
		goto out;
	}
	memcpy(sql, insert_sql, len);
	sql[len] = '\0';
	for (size_t i = 0; i < n; i++) {
		const struct pg_row *row = &q->v[from + i];

		memcpy(v + i * AUDIT_NPARAMS, row->v, sizeof(row->v));
		memcpy(lens + i * AUDIT_NPARAMS, row->len, sizeof(row->len));
		memcpy(fmts + i * AUDIT_NPARAMS, row->fmt, sizeof(row->fmt));
	}
	/* A batch's usual sizes prepared, one statement a row count: the
	 * server parsed and planned this INSERT of 19 parameters a row for
	 * every batch (its row count varies, so one statement is not
	 * enough); a larger batch is rare and its parse shared by more. */
	if (n <= GW_PG_INSERT_PREPARED)
		r = gw_pg_exec_prepared_fmt(st, (enum gw_pg_stmt)(GW_PG_STMT_AUDIT_INSERT_1 + n - 1),
		                            sql, (int)(n * AUDIT_NPARAMS), v, lens, fmts,
		                            PGRES_COMMAND_OK, err, errlen);
	else
		r = gw_pg_exec(st, sql, (int)(n * AUDIT_NPARAMS), v, lens, fmts, PGRES_COMMAND_OK,
		               err, errlen);
	if (r == NULL)
		goto out;
	if (gw_pg_changes(r) != (int)n) {
		sg_seterr(err, errlen, "the audit INSERT wrote %d of %zu record(s)", gw_pg_changes(r),
		          n);
		goto out;
	}
	rv = 0;
out:
	PQclear(r);
	free(sql);
	free(v);
	free(lens);
	free(fmts);
	return rv;
}

size_t
gw_pg_rows_mark(struct gw_store *st)
{
	return st->rows ? st->rows->sent + st->rows->n : 0;
}

void
gw_pg_rows_undo(struct gw_store *st, size_t mark)
{
	struct gw_pg_rows *q = st->rows;

	if (q == NULL)
		return;
	/* Rows INSERTed after the mark the server has undone itself. */
	rows_drop(q, mark > q->sent ? mark - q->sent : 0);
	if (st->tx_depth == 0) {
		q->sent = 0;
		q->failed = false;
	}
}

int
gw_pg_rows_flush(struct gw_store *st, char *err, size_t errlen)
{
	struct gw_pg_rows *q = st->rows;
	char e[256] = "";
	size_t done = 0;
	int rv = 0;

	if (q == NULL)
		return 0;
	if (!q->failed) {
		while (done < q->n && rv == 0) {
			size_t k = q->n - done < ROWS_PER_STMT ? q->n - done : ROWS_PER_STMT;

			/* The COMMIT, when this flush is the transaction's end,
			 * goes with the last INSERT (store.c). */
			st->commit_after = st->commit_wanted && st->tx_depth <= 1 && done + k == q->n;
			rv = rows_insert(st, q, done, k, e, sizeof(e));
			st->commit_after = false;
			done += k;
		}
		if (rv < 0) {
			q->failed = true;
			snprintf(q->why, sizeof(q->why), "%s", e);
		}
		q->sent += q->n;
		rows_drop(q, 0);
	}
	if (st->tx_depth <= 1) {
		/* The transaction ends with this flush, committed or not. */
		q->sent = 0;
	}
	if (q->failed) {
		sg_seterr(err, errlen, "%s", q->why);
		if (st->tx_depth <= 1)
			q->failed = false;
		return -1;
	}
	return 0;
}

/* ---- audit rows ---- */

int
gw_pg_audit_insert(struct gw_store *st, const struct gw_audit_row *a, char *err, size_t errlen)
{
	const char *site = gw_store_site(st);
	struct params p = { .n = 0 };
	PGresult *r;
	int rv;

	if (a->seq == 0 || a->seq > INT64_MAX) {
		sg_seterr(err, errlen, "audit seq out of range");
		return -1;
	}
	/* A row goes into this store's chain only: a row of another site's
	 * would fork that site's chain from here. */
	if (a->site != NULL && strcmp(a->site, site) != 0) {
		sg_seterr(err, errlen, "an audit record of site %.32s given to the store of site %s",
		          a->site, site);
		return -1;
	}
	if (a->prev_hash_len > INT32_MAX || a->hash_len > INT32_MAX ||
	    a->doc_digest_len > INT32_MAX || a->signed_digest_len > INT32_MAX ||
	    a->prev_hash == NULL || a->hash == NULL || a->prev_hash_len == 0 || a->hash_len == 0) {
		sg_seterr(err, errlen, "malformed audit record seq %" PRIu64, a->seq);
		return -1;
	}
	p_str(&p, site);
	p_i64(&p, (int64_t)a->seq);
	p_i64(&p, a->ts_ns);
	p_str(&p, a->action);
	p_str(&p, a->outcome);
	p_str(&p, a->reason);
	p_str(&p, a->actor);
	p_i64(&p, a->uid);
	p_i64(&p, a->pid);
	p_str(&p, a->exe);
	p_str(&p, a->host);
	p_str(&p, a->seal);
	p_i64(&p, a->application);
	p_blob(&p, a->doc_digest, a->doc_digest_len);
	p_blob(&p, a->signed_digest, a->signed_digest_len);
	/* CKM values are unsigned long; stored as their 64-bit pattern. */
	p_i64(&p, (int64_t)a->mechanism);
	p_str(&p, a->detail);
	p_blob(&p, a->prev_hash, a->prev_hash_len);
	p_blob(&p, a->hash, a->hash_len);
	pthread_mutex_lock(&st->lock);
	if (st->rows != NULL && st->tx_depth > 0) {
		/* In a batch: with the others, at the commit. */
		rv = rows_add(st->rows, &p);
		if (rv < 0)
			sg_seterr(err, errlen, "out of memory for audit record seq %" PRIu64, a->seq);
		pthread_mutex_unlock(&st->lock);
		return rv;
	}
	r = gw_pg_exec(st, "INSERT INTO audit (site, seq, ts_ns, action, outcome, reason, actor, "
	               "uid, pid, exe, host, seal, application, doc_digest, signed_digest, "
	               "mechanism, detail, prev_hash, hash) VALUES ($1, $2::bigint, $3::bigint, "
	               "$4, $5, $6, $7, $8::bigint, $9::bigint, $10, $11, $12, $13::bigint, $14, "
	               "$15, $16::bigint, $17, $18, $19)", p.n, p.v, p.len, p.fmt,
	               PGRES_COMMAND_OK, err, errlen);
	pthread_mutex_unlock(&st->lock);
	if (r == NULL)
		return -1;
	PQclear(r);
	return 0;
}

static void
rows_free(struct gw_pg_rows **qp)
{
	if (*qp == NULL)
		return;
	rows_drop(*qp, 0);
	free((*qp)->v);
	free(*qp);
	*qp = NULL;
}

int
gw_pg_audit_append(struct gw_store *st, const struct gw_audit_row *rows, size_t n, char *err,
                   size_t errlen)
{
	bool own;
	int rv = -1;

	pthread_mutex_lock(&st->lock);
	/* The rows as one batch's, INSERTed together at the commit; inside
	 * a transaction of the caller's, as that one's rows are (one by one
	 * unless it is a batch). */
	own = st->rows == NULL && st->tx_depth == 0;
	if (own && (st->rows = calloc(1, sizeof(*st->rows))) == NULL) {
		sg_seterr(err, errlen, "out of memory");
		goto out;
	}
	if (gw_pg_tx_begin(st, err, errlen) < 0)
		goto out;
	for (size_t i = 0; i < n; i++) {
		if (gw_pg_audit_insert(st, &rows[i], err, errlen) < 0) {
			gw_pg_tx_rollback(st);
			goto out;
		}
	}
	rv = gw_pg_tx_commit(st, err, errlen);
out:
	if (own)
		rows_free(&st->rows);
	pthread_mutex_unlock(&st->lock);
	return rv;
}

/* A read inside a transaction sees the rows given before it. */
static int
rows_before_read(struct gw_store *st, char *err, size_t errlen)
{
	if (st->rows == NULL || st->rows->n == 0 || st->tx_depth == 0)
		return 0;
	return gw_pg_rows_flush(st, err, errlen);
}

int
gw_pg_audit_head(struct gw_store *st, uint64_t *seq, uint8_t hash[32], char *err, size_t errlen)
{
	const char *vals[1] = { gw_store_site(st) };
	PGresult *r;
	int rv = -1;

	*seq = 0;
	memset(hash, 0, 32);
	pthread_mutex_lock(&st->lock);
	if (rows_before_read(st, err, errlen) < 0)
		goto out;
	r = gw_pg_exec_fmt(st, "SELECT seq, hash FROM audit WHERE site = $1 ORDER BY seq DESC "
	                   "LIMIT 1", 1, vals, NULL, NULL, PGRES_TUPLES_OK, 1, err, errlen);
	if (r == NULL)
		goto out;
	if (PQntuples(r) == 0) {
		rv = 0;
	} else if (bin_i64(r, 0, 0) <= 0 || PQgetlength(r, 0, 1) != 32) {
		sg_seterr(err, errlen, "the last audit record (seq %" PRId64 ") of site %s is "
		          "malformed", bin_i64(r, 0, 0), vals[0]);
	} else {
		*seq = (uint64_t)bin_i64(r, 0, 0);
		memcpy(hash, PQgetvalue(r, 0, 1), 32);
		rv = 1;
	}
	PQclear(r);
out:
	pthread_mutex_unlock(&st->lock);
	return rv;
}

int
gw_pg_audit_scan(struct gw_store *st, gw_store_audit_fn fn, void *ctx, char *err, size_t errlen)
{
	struct gw_audit_filter f = { 0 };

	/* Every row of the site, in seq order: the unfiltered query. */
	return gw_pg_audit_query(st, &f, fn, ctx, err, errlen);
}

/* ---- audit queries ---- */

/* One page's statement and its parameters: only fixed text goes into the
 * SQL, every value is a parameter, numbered as it is added (PostgreSQL
 * wants a type for each, so only the filters in use are there). One
 * site's rows page by seq; every site's by (seq, site) in byte order, so
 * a page that ends inside one seq goes on with the next site's row of it. */
static int
query_page(const struct gw_audit_filter *f, bool all, const char *site, bool more,
           int64_t last_seq, const char *last_site, uint64_t page, char *sql, size_t room,
           struct params *p)
{
	size_t len;

	p->n = 0;
#define ADD(...) len += (size_t)snprintf(sql + len, len < room ? room - len : 0, __VA_ARGS__)
	len = 0;
	ADD("SELECT " AUDIT_COLS " FROM audit WHERE ");
	p_i64(p, last_seq);
	if (!all) {
		p_str(p, site);
		ADD("site = $2 AND seq > $1::bigint");
	} else if (more) {
		p_str(p, last_site);
		ADD("(seq > $1::bigint OR (seq = $1::bigint AND site COLLATE \"C\" > $2))");
	} else {
		ADD("seq > $1::bigint");
	}
	if (f->upto_seq) {
		p_i64(p, (int64_t)f->upto_seq);
		ADD(" AND seq <= $%d::bigint", p->n);
	}
	if (f->from_ns) {
		p_i64(p, f->from_ns);
		ADD(" AND ts_ns >= $%d::bigint", p->n);
	}
	if (f->to_ns) {
		p_i64(p, f->to_ns);
		ADD(" AND ts_ns < $%d::bigint", p->n);
	}
	if (f->seal) {
		p_str(p, f->seal);
		ADD(" AND seal = $%d", p->n);
	}
	if (f->actor) {
		p_str(p, f->actor);
		ADD(" AND actor = $%d", p->n);
	}
	if (f->action) {
		p_str(p, f->action);
		ADD(" AND action = $%d", p->n);
	}
	if (f->outcome) {
		p_str(p, f->outcome);
		ADD(" AND outcome = $%d", p->n);
	}
	if (f->actors_json) {
		p_str(p, f->actors_json);
		ADD(" AND actor IN (SELECT jsonb_array_elements_text($%d::jsonb))", p->n);
	}
	if (f->application) {
		/* The literal condition lets the planner use the partial index. */
		p_i64(p, f->application);
		ADD(" AND application = $%d::bigint AND application <> 0", p->n);
	}
	if (f->digest && f->digest_len) {
		p_blob(p, f->digest, f->digest_len);
		ADD(" AND ((doc_digest = $%d::bytea AND doc_digest IS NOT NULL) OR "
		    "signed_digest = $%d::bytea)", p->n, p->n);
	}
	p_i64(p, (int64_t)page);
	ADD(all ? " ORDER BY seq, site COLLATE \"C\" LIMIT $%d::bigint" :
	          " ORDER BY seq LIMIT $%d::bigint", p->n);
#undef ADD
	return len < room ? 0 : -1;
}

int
gw_pg_audit_query(struct gw_store *st, const struct gw_audit_filter *f, gw_store_audit_fn fn,
                  void *ctx, char *err, size_t errlen)
{
	char sql[1400];
	bool all = f->site != NULL && strcmp(f->site, "*") == 0, more = false;
	const char *site = f->site != NULL ? f->site : gw_store_site(st);
	struct params p;
	int64_t last_seq = (int64_t)f->after_seq;
	char last_site[128] = "";
	uint64_t seen = 0, page;
	int rv = 0;

	if (f->after_seq > INT64_MAX || f->upto_seq > INT64_MAX) {
		sg_seterr(err, errlen, "seq out of range");
		return -1;
	}
	if (f->digest_len > INT32_MAX) {
		sg_seterr(err, errlen, "digest too long");
		return -1;
	}
	page = PAGE;
	if (f->limit && f->limit < page)
		page = f->limit;
	pthread_mutex_lock(&st->lock);
	rv = rows_before_read(st, err, errlen);
	pthread_mutex_unlock(&st->lock);
	if (rv < 0)
		return -1;
	for (;;) {
		PGresult *r;
		int n;

		if (query_page(f, all, site, more, last_seq, last_site, page, sql, sizeof(sql),
		               &p) < 0) {
			sg_seterr(err, errlen, "the audit query is too long");
			return -1;
		}
		pthread_mutex_lock(&st->lock);
		r = gw_pg_exec_fmt(st, sql, p.n, p.v, p.len, p.fmt, PGRES_TUPLES_OK, 1, err, errlen);
		if (r == NULL) {
			pthread_mutex_unlock(&st->lock);
			return -1;
		}
		n = PQntuples(r);
		for (int i = 0; i < n && rv == 0; i++) {
			struct gw_audit_row a;

			read_row(r, i, &a);
			last_seq = (int64_t)a.seq;
			/* (A site name longer than any valid one is not ours:
			 * cut, it could page back onto itself.) */
			if ((size_t)snprintf(last_site, sizeof(last_site), "%s", a.site ? a.site : "") >=
			    sizeof(last_site)) {
				sg_seterr(err, errlen, "audit record seq %" PRIu64 " has a malformed site",
				          a.seq);
				rv = -1;
				break;
			}
			more = true;
			seen++;
			rv = fn(ctx, &a);
			if (f->limit && seen >= f->limit)
				break;
		}
		PQclear(r);
		pthread_mutex_unlock(&st->lock);
		if (rv != 0 || (uint64_t)n < page || (f->limit && seen >= f->limit))
			return rv;
	}
}

/* ---- checkpoints ---- */

int
gw_pg_checkpoint_add(struct gw_store *st, const struct gw_audit_checkpoint *cp, char *err,
                     size_t errlen)
{
	struct params p = { .n = 0 };
	PGresult *r;

	if (cp->seq > INT64_MAX || cp->id == 0 || cp->id > INT64_MAX || cp->prev_id >= cp->id ||
	    !cp->alg || !cp->sig || !cp->sig_len || cp->sig_len > INT32_MAX ||
	    cp->cert_len > INT32_MAX) {
		sg_seterr(err, errlen, "malformed checkpoint");
		return -1;
	}
	p_str(&p, gw_store_site(st));
	p_i64(&p, (int64_t)cp->id);
	p_i64(&p, (int64_t)cp->seq);
	p_i64(&p, cp->ts_ns);
	p_blob(&p, cp->hash, 32);
	p_str(&p, cp->alg);
	p_blob(&p, cp->sig, cp->sig_len);
	p_blob(&p, cp->cert, cp->cert_len);
	if (cp->chained) {
		p_i64(&p, (int64_t)cp->prev_id);
		p_blob(&p, cp->prev_hash, 32);
	} else {
		p_str(&p, NULL);
		p_blob(&p, NULL, 0);
	}
	if (gw_pg_tx_begin(st, err, errlen) < 0)
		return -1;
	r = gw_pg_exec(st, "INSERT INTO audit_checkpoints (site, id, seq, ts_ns, hash, alg, "
	               "signature, cert, prev_id, prev_hash) VALUES ($1, $2::bigint, $3::bigint, "
	               "$4::bigint, $5, $6, $7, $8, $9::bigint, $10)", p.n, p.v, p.len, p.fmt,
	               PGRES_COMMAND_OK, err, errlen);
	if (r == NULL)
		goto fail;
	PQclear(r);
	/* The highest id ever given, kept apart from the rows. */
	r = gw_pg_exec(st, "INSERT INTO audit_checkpoint_ids (site, max_id) VALUES ($1, $2::bigint) "
	               "ON CONFLICT (site) DO UPDATE SET max_id = "
	               "greatest(audit_checkpoint_ids.max_id, excluded.max_id)", 2, p.v, NULL, NULL,
	               PGRES_COMMAND_OK, err, errlen);
	if (r == NULL)
		goto fail;
	PQclear(r);
	return gw_pg_tx_commit(st, err, errlen);
fail:
	gw_pg_tx_rollback(st);
	return -1;
}

/* Fills cp from row i of CP_COLS (pointers into r); the first malformed
 * column or NULL. */
static const char *
read_cp(PGresult *r, int i, struct gw_audit_checkpoint *cp)
{
	const char *bad = NULL;
	size_t hl, pl;
	const uint8_t *h, *ph;

	memset(cp, 0, sizeof(*cp));
	cp->seq = (uint64_t)bin_i64(r, i, 0);
	cp->ts_ns = bin_i64(r, i, 1);
	h = bin_blob(r, i, 2, &hl);
	if (h && hl == 32)
		memcpy(cp->hash, h, 32);
	else
		bad = "hash";
	cp->alg = bin_text(r, i, 3);
	cp->sig = bin_blob(r, i, 4, &cp->sig_len);
	cp->cert = bin_blob(r, i, 5, &cp->cert_len);
	cp->id = (uint64_t)bin_i64(r, i, 6);
	if (!PQgetisnull(r, i, 8)) {
		cp->chained = true;
		cp->prev_id = (uint64_t)bin_i64(r, i, 7);
		ph = bin_blob(r, i, 8, &pl);
		if (ph && pl == 32)
			memcpy(cp->prev_hash, ph, 32);
		else if (!bad)
			bad = "prev_hash";
	}
	return bad;
}

int
gw_pg_checkpoint_scan(struct gw_store *st, uint64_t from_seq, uint64_t to_seq,
                      gw_store_checkpoint_fn fn, void *ctx, char *err, size_t errlen)
{
	/* (seq, id) > (from_seq - 1, max): every checkpoint with seq >= from_seq. */
	int64_t last_seq = from_seq == 0 ? -1 :
	                   (int64_t)(from_seq > INT64_MAX ? INT64_MAX : from_seq) - 1;
	int64_t last_id = INT64_MAX;
	int64_t upto = to_seq == 0 || to_seq > INT64_MAX ? INT64_MAX : (int64_t)to_seq;
	struct params p;
	int rv = 0;

	for (;;) {
		PGresult *r;
		int n;

		p.n = 0;
		p_str(&p, gw_store_site(st));
		p_i64(&p, last_seq);
		p_i64(&p, last_id);
		p_i64(&p, upto);
		pthread_mutex_lock(&st->lock);
		r = gw_pg_exec_fmt(st, "SELECT " CP_COLS " FROM audit_checkpoints WHERE site = $1 AND "
		                   "(seq, id) > ($2::bigint, $3::bigint) AND seq <= $4::bigint "
		                   "ORDER BY seq, id LIMIT " PAGE_S, p.n, p.v, NULL, NULL,
		                   PGRES_TUPLES_OK, 1, err, errlen);
		if (r == NULL) {
			pthread_mutex_unlock(&st->lock);
			return -1;
		}
		n = PQntuples(r);
		for (int i = 0; i < n && rv == 0; i++) {
			struct gw_audit_checkpoint cp;
			const char *bad = read_cp(r, i, &cp);

			if (bad) {
				/* Keep going: the verifier reports the bad signature. */
				gw_log_warn("audit checkpoint %" PRIu64 ": column %s malformed", cp.seq,
				            bad);
			}
			last_seq = (int64_t)cp.seq;
			last_id = (int64_t)cp.id;
			rv = fn(ctx, &cp);
		}
		PQclear(r);
		pthread_mutex_unlock(&st->lock);
		if (rv != 0 || n < PAGE)
			return rv;
	}
}

static void *
dup_bytes(const void *p, size_t n)
{
	void *c = n ? malloc(n) : NULL;

	if (c)
		memcpy(c, p, n);
	return c;
}

int
gw_pg_checkpoint_last(struct gw_store *st, struct gw_audit_checkpoint *last, uint64_t *next_id,
                      char *err, size_t errlen)
{
	const char *vals[1] = { gw_store_site(st) };
	PGresult *r = NULL;
	int64_t ever = 0;
	int rv = -1;

	memset(last, 0, sizeof(*last));
	*next_id = 1;
	pthread_mutex_lock(&st->lock);
	r = gw_pg_exec_fmt(st, "SELECT max_id FROM audit_checkpoint_ids WHERE site = $1", 1, vals,
	                   NULL, NULL, PGRES_TUPLES_OK, 1, err, errlen);
	if (r == NULL)
		goto out;
	if (PQntuples(r) == 1)
		ever = bin_i64(r, 0, 0);
	PQclear(r);
	r = gw_pg_exec_fmt(st, "SELECT " CP_COLS " FROM audit_checkpoints WHERE site = $1 "
	                   "ORDER BY id DESC LIMIT 1", 1, vals, NULL, NULL, PGRES_TUPLES_OK, 1,
	                   err, errlen);
	if (r == NULL)
		goto out;
	if (PQntuples(r) == 1) {
		struct gw_audit_checkpoint cp;
		const char *bad = read_cp(r, 0, &cp);

		if (bad) {
			sg_seterr(err, errlen, "the last audit checkpoint (id %" PRIu64 ") of site %s: "
			          "column %s malformed", cp.id, vals[0], bad);
			goto out;
		}
		*last = cp;
		last->alg = cp.alg ? strdup(cp.alg) : NULL;
		last->sig = dup_bytes(cp.sig, cp.sig_len);
		last->sig_len = last->sig ? cp.sig_len : 0;
		last->cert = dup_bytes(cp.cert, cp.cert_len);
		last->cert_len = last->cert ? cp.cert_len : 0;
		rv = 1;
	} else {
		rv = 0;
	}
	*next_id = (uint64_t)(ever > (int64_t)last->id ? ever : (int64_t)last->id) + 1;
out:
	PQclear(r);
	pthread_mutex_unlock(&st->lock);
	if (rv < 0)
		gw_store_checkpoint_clear(last);
	return rv;
}

int
gw_pg_checkpoint_max_id(struct gw_store *st, uint64_t *id, char *err, size_t errlen)
{
	const char *vals[1] = { gw_store_site(st) };
	PGresult *r;

	*id = 0;
	pthread_mutex_lock(&st->lock);
	r = gw_pg_exec_fmt(st, "SELECT COALESCE(MAX(id), 0)::bigint FROM audit_checkpoints "
	                   "WHERE site = $1", 1, vals, NULL, NULL, PGRES_TUPLES_OK, 1, err, errlen);
	if (r != NULL && PQntuples(r) == 1)
		*id = (uint64_t)bin_i64(r, 0, 0);
	pthread_mutex_unlock(&st->lock);
	if (r == NULL)
		return -1;
	PQclear(r);
	return 0;
}

/* ---- audit batches ----
 *
 * No redo log: the batch's COMMIT waits for the server's WAL flush
 * (synchronous_commit on, set and checked at open), so a committed batch
 * is durable and there is nothing more to write. begin and end keep the
 * lock from the batch's first statement to its commit, as on SQLite; in
 * between, the batch's rows wait for the commit (st->rows). Without
 * memory for that they are INSERTed one by one, as before. */

void
gw_pg_batch_begin(struct gw_store *st)
{
	pthread_mutex_lock(&st->lock);
	if (st->rows == NULL)
		st->rows = calloc(1, sizeof(*st->rows));
}

void
gw_pg_batch_images(struct gw_store *st)
{
	(void)st;
}

int
gw_pg_batch_durable(struct gw_store *st, uint64_t first_seq, uint64_t last_seq, char *err,
                    size_t errlen)
{
	(void)st; (void)first_seq; (void)last_seq; (void)err; (void)errlen;
	return 0;
}

void
gw_pg_batch_end(struct gw_store *st)
{
	/* (Empty: the commit or the rollback before took them.) */
	rows_free(&st->rows);
	pthread_mutex_unlock(&st->lock);
}
