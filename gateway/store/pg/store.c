/*
 * The store on PostgreSQL (libpq): the connection (synchronous commit, fail
 * closed), its own versioned schema and migrations applied at open, the
 * nesting transactions, and the credential repositories: passwords, the
 * sign-in attempts, the token binding and known keys (store_meta).
 * authtotp.c has the TOTP secrets; ops.c the table of calls. The other
 * repositories are not here yet (docs/store.md).
 */
#include "pg_store.h"
#include "protocol.h"
#include "log.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Seconds libpq waits for the server before the open fails (closed). */
#define CONNECT_TIMEOUT_S "10"
/* pg_advisory_xact_lock key: two gateways opening one database at once
 * migrate it one after the other. */
#define MIGRATE_LOCK_KEY "1397048679"

/*
 * Migrations, in order: migrations[v - 1] takes the schema from version
 * v - 1 to v, in the same transaction as its schema_version row. Never
 * edit one that has shipped; append a new one. The tables are SQLite's
 * (sqlite/store.c), typed for PostgreSQL (docs/store.md, "From SQLite to
 * PostgreSQL"); the account column is "account" because USER is a
 * reserved word here.
 */
static const char *const migrations[] = {
	/* 1: accounts and the store's own facts (its id, the token binding,
	 * the known keys). Times are Unix seconds (UTC). */
	"CREATE TABLE accounts ("
	"  account text PRIMARY KEY,"
	"  password_hash text,"
	"  created bigint NOT NULL,"
	"  updated bigint NOT NULL);"
	"CREATE TABLE store_meta ("
	"  name text PRIMARY KEY,"
	"  value bytea NOT NULL);"
	"INSERT INTO store_meta (name, value)"
	"  VALUES ('id', decode(replace(gen_random_uuid()::text, '-', ''), 'hex'));",
	/* 2: sign-in attempts and TOTP secrets, which SQLite makes on first
	 * use (gw_store_attempts_init, gw_store_totp_init) and which are
	 * part of the schema here. */
	"CREATE TABLE auth_lockout ("
	"  account text NOT NULL,"
	"  uid bigint NOT NULL,"
	"  failed bigint NOT NULL DEFAULT 0 CHECK (failed >= 0),"
	"  lockouts bigint NOT NULL DEFAULT 0 CHECK (lockouts >= 0),"
	"  locked_until bigint NOT NULL DEFAULT 0,"
	"  inflight bigint NOT NULL DEFAULT 0 CHECK (inflight >= 0),"
	"  inflight_until bigint NOT NULL DEFAULT 0,"
	"  PRIMARY KEY (account, uid));"
	"CREATE TABLE auth_totp ("
	"  account text PRIMARY KEY,"
	"  secret bytea NOT NULL CHECK (octet_length(secret) > 0),"
	"  last_counter bigint NOT NULL DEFAULT 0 CHECK (last_counter >= 0),"
	"  enrolled bigint NOT NULL);",
	/* 3 (the policy repository, policystore.h): every published version
	 * of the group's policy, its bytes as published. */
	"CREATE TABLE policy_versions ("
	"  version bigint PRIMARY KEY CHECK (version > 0),"
	"  sha256 bytea NOT NULL CHECK (octet_length(sha256) = 32),"
	"  text bytea NOT NULL,"
	"  author text NOT NULL,"
	"  published bigint NOT NULL);",
};
#define PG_SCHEMA_LATEST ((int)(sizeof(migrations) / sizeof(migrations[0])))

static int64_t
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec;
}

/* libpq's own message, its trailing newline cut. */
static void
conn_err(struct gw_store *st, char *err, size_t errlen, const char *what)
{
	const char *m = st->conn ? PQerrorMessage(st->conn) : "out of memory";
	size_t n = strlen(m);

	while (n > 0 && (m[n - 1] == '\n' || m[n - 1] == ' '))
		n--;
	sg_seterr(err, errlen, "PostgreSQL store: %s: %.*s", what, (int)n, m);
}

/* Notices ("relation already exists, skipping" and the like) go nowhere:
 * libpq would write them to stderr. */
static void
quiet_notice(void *arg, const char *msg)
{
	(void)arg;
	(void)msg;
}

PGresult *
gw_pg_exec(struct gw_store *st, const char *sql, int n, const char *const *vals,
           const int *lens, const int *fmts, ExecStatusType want, char *err, size_t errlen)
{
	char buf[256];
	PGresult *r;
	const char *prim, *state;

	if (PQstatus(st->conn) != CONNECTION_OK) {
		/* Fail closed: no reconnect here, in the middle of a call that
		 * may belong to a transaction the server has already ended. */
		snprintf(buf, sizeof(buf), "PostgreSQL store: the connection is lost");
		goto fail;
	}
	r = PQexecParams(st->conn, sql, n, NULL, vals, lens, fmts, 0);
	if (r != NULL && PQresultStatus(r) == want)
		return r;
	/* The primary message and SQLSTATE only: a DETAIL line may quote a
	 * row, and rows hold password hashes and sealed secrets. */
	prim = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;
	state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
	if (prim != NULL)
		snprintf(buf, sizeof(buf), "PostgreSQL store: %s (SQLSTATE %s)", prim,
		         state ? state : "?");
	else if (PQstatus(st->conn) != CONNECTION_OK)
		snprintf(buf, sizeof(buf), "PostgreSQL store: the connection is lost");
	else
		snprintf(buf, sizeof(buf), "PostgreSQL store: unexpected result %s",
		         r ? PQresStatus(PQresultStatus(r)) : "(none)");
	PQclear(r);
fail:
	if (err != NULL)
		sg_seterr(err, errlen, "%s", buf);
	else
		gw_log_error("%s", buf);
	return NULL;
}

int
gw_pg_changes(PGresult *r)
{
	const char *n = PQcmdTuples(r);

	return n && *n ? atoi(n) : 0;
}

static int
exec_cmd(struct gw_store *st, const char *sql, char *err, size_t errlen)
{
	PGresult *r = gw_pg_exec(st, sql, 0, NULL, NULL, NULL, PGRES_COMMAND_OK, err, errlen);

	PQclear(r);
	return r ? 0 : -1;
}

/* Reads a bigint column of a text result. */
static int64_t
col_i64(PGresult *r, int row, int col)
{
	return PQgetisnull(r, row, col) ? 0 : strtoll(PQgetvalue(r, row, col), NULL, 10);
}

/* ---- open, schema, close ---- */

static int
schema_version_locked(struct gw_store *st, char *err, size_t errlen)
{
	PGresult *r = gw_pg_exec(st, "SELECT COALESCE(MAX(version), 0) FROM schema_version", 0,
	                         NULL, NULL, NULL, PGRES_TUPLES_OK, err, errlen);
	int v;

	if (r == NULL)
		return -1;
	v = PQntuples(r) == 1 ? (int)col_i64(r, 0, 0) : -1;
	PQclear(r);
	return v;
}

/* One transaction under the migration lock: the version table, every
 * migration still missing up to upto, each with its version row. A
 * database newer than this build is refused, not touched. */
static int
migrate(struct gw_store *st, int upto, char *err, size_t errlen)
{
	char v[16], t[24];
	const char *vals[2] = { v, t };
	PGresult *r;
	int cur, rv = -1;

	if (upto <= 0 || upto > PG_SCHEMA_LATEST)
		upto = PG_SCHEMA_LATEST;
	if (gw_pg_tx_begin(st, err, errlen) < 0)
		return -1;
	r = gw_pg_exec(st, "SELECT pg_advisory_xact_lock(" MIGRATE_LOCK_KEY ")", 0, NULL, NULL,
	               NULL, PGRES_TUPLES_OK, err, errlen);
	if (r == NULL)
		goto out;
	PQclear(r);
	/* The table that versions the others; the one table made "if not
	 * there", since nothing could say which version made it. */
	if (exec_cmd(st, "CREATE TABLE IF NOT EXISTS schema_version ("
	             "  version integer PRIMARY KEY,"
	             "  applied bigint NOT NULL)", err, errlen) < 0)
		goto out;
	cur = schema_version_locked(st, err, errlen);
	if (cur < 0)
		goto out;
	if (cur > PG_SCHEMA_LATEST) {
		sg_seterr(err, errlen, "PostgreSQL store: the database has schema version %d, newer "
		          "than this sealgate's %d: refusing it", cur, PG_SCHEMA_LATEST);
		goto out;
	}
	for (int i = cur; i < upto; i++) {
		r = PQexec(st->conn, migrations[i]);
		if (r == NULL || PQresultStatus(r) != PGRES_COMMAND_OK) {
			const char *m = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;
			sg_seterr(err, errlen, "PostgreSQL store: migration %d: %s", i + 1,
			          m ? m : "the connection is lost");
			PQclear(r);
			goto out;
		}
		PQclear(r);
		snprintf(v, sizeof(v), "%d", i + 1);
		snprintf(t, sizeof(t), "%" PRId64, now_s());
		r = gw_pg_exec(st, "INSERT INTO schema_version (version, applied) VALUES ($1, $2)",
		               2, vals, NULL, NULL, PGRES_COMMAND_OK, err, errlen);
		if (r == NULL)
			goto out;
		PQclear(r);
	}
	rv = 0;
out:
	if (rv == 0)
		return gw_pg_tx_commit(st, err, errlen);
	gw_pg_tx_rollback(st);
	return -1;
}

int
gw_store_pg_open(const char *url, int upto, struct gw_store **out, char *err, size_t errlen)
{
	/* Ours first, so that whatever the URL says wins (expand_dbname). */
	const char *const keys[] = { "connect_timeout", "application_name", "dbname", NULL };
	const char *vals[] = { CONNECT_TIMEOUT_S, "sealgated", url, NULL };
	pthread_mutexattr_t ma;
	struct gw_store *st;
	PGresult *r;
	int rv = -1;

	*out = NULL;
	st = calloc(1, sizeof(*st));
	if (st == NULL) {
		sg_seterr(err, errlen, "out of memory");
		return -1;
	}
	st->head.ops = &gw_store_pg_ops;
	pthread_mutexattr_init(&ma);
	pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_RECURSIVE);
	pthread_mutex_init(&st->lock, &ma);
	pthread_mutexattr_destroy(&ma);

	/* The URL may hold a password: it is never copied into a message or
	 * the log; libpq's messages name the host, not the password. */
	st->conn = PQconnectdbParams(keys, vals, 1);
	if (st->conn == NULL || PQstatus(st->conn) != CONNECTION_OK) {
		conn_err(st, err, errlen, "cannot connect");
		goto out;
	}
	PQsetNoticeProcessor(st->conn, quiet_notice, NULL);
	if (PQserverVersion(st->conn) < 130000) {
		sg_seterr(err, errlen, "PostgreSQL store: the server is version %d; 13 or later is "
		          "needed", PQserverVersion(st->conn));
		goto out;
	}
	/* A signature is released only after its record is committed: the
	 * COMMIT must wait for the WAL flush (and a synchronous standby's,
	 * when the server has one). */
	if (exec_cmd(st, "SET synchronous_commit = on", err, errlen) < 0 ||
	    exec_cmd(st, "SET client_encoding = 'UTF8'", err, errlen) < 0)
		goto out;
	r = gw_pg_exec(st, "SELECT current_setting('fsync')", 0, NULL, NULL, NULL,
	               PGRES_TUPLES_OK, err, errlen);
	if (r == NULL)
		goto out;
	if (PQntuples(r) != 1 || strcmp(PQgetvalue(r, 0, 0), "on") != 0) {
		sg_seterr(err, errlen, "PostgreSQL store: the server runs with fsync off: a "
		          "committed record could be lost; refusing it");
		PQclear(r);
		goto out;
	}
	PQclear(r);
	if (migrate(st, upto, err, errlen) < 0)
		goto out;
	*out = st;
	st = NULL;
	rv = 0;
out:
	if (st != NULL)
		gw_pg_close(&st);
	return rv;
}

void
gw_pg_close(struct gw_store **stp)
{
	struct gw_store *st = *stp;

	if (st == NULL)
		return;
	if (st->conn != NULL)
		PQfinish(st->conn);
	pthread_mutex_destroy(&st->lock);
	free(st);
	*stp = NULL;
}

int
gw_pg_schema_version(struct gw_store *st)
{
	int v;

	pthread_mutex_lock(&st->lock);
	v = schema_version_locked(st, NULL, 0);
	pthread_mutex_unlock(&st->lock);
	return v;
}

bool
gw_pg_mark_test(struct gw_store *st, const void *key)
{
	bool found = false;

	pthread_mutex_lock(&st->lock);
	for (size_t i = 0; i < st->n_marks; i++)
		if (st->marks[i] == key)
			found = true;
	pthread_mutex_unlock(&st->lock);
	return found;
}

void
gw_pg_mark_set(struct gw_store *st, const void *key)
{
	pthread_mutex_lock(&st->lock);
	if (st->n_marks < GW_PG_MARKS_MAX)
		st->marks[st->n_marks++] = key;
	pthread_mutex_unlock(&st->lock);
}

/* ---- transactions ----
 *
 * As on SQLite (store.h): the outermost level is BEGIN … COMMIT, inner
 * ones savepoints, and the lock is held from begin to the matching commit
 * or rollback. PostgreSQL's BEGIN takes no lock of its own (SQLite's
 * BEGIN IMMEDIATE does): what two connections must agree on is decided by
 * a conditional statement or a row lock (SELECT … FOR UPDATE). */

int
gw_pg_tx_begin(struct gw_store *st, char *err, size_t errlen)
{
	char sql[48];

	pthread_mutex_lock(&st->lock);
	if (st->tx_depth >= GW_PG_TX_DEPTH_MAX) {
		sg_seterr(err, errlen, "PostgreSQL store: transactions nested too deep");
		goto fail;
	}
	if (st->tx_depth == 0)
		snprintf(sql, sizeof(sql), "BEGIN");
	else
		snprintf(sql, sizeof(sql), "SAVEPOINT sg_%u", st->tx_depth);
	if (exec_cmd(st, sql, err, errlen) < 0)
		goto fail;
	st->tx_depth++;
	return 0;
fail:
	pthread_mutex_unlock(&st->lock);
	return -1;
}

int
gw_pg_tx_commit(struct gw_store *st, char *err, size_t errlen)
{
	char sql[48];
	PGresult *r;
	int rv = -1;

	if (st->tx_depth == 0) {
		sg_seterr(err, errlen, "PostgreSQL store: commit without a transaction");
		return -1;
	}
	st->tx_depth--;
	if (st->tx_depth > 0) {
		snprintf(sql, sizeof(sql), "RELEASE SAVEPOINT sg_%u", st->tx_depth);
		rv = exec_cmd(st, sql, err, errlen);
		if (rv < 0) {
			/* The level is gone either way (store.h). */
			snprintf(sql, sizeof(sql), "ROLLBACK TO SAVEPOINT sg_%u", st->tx_depth);
			PQclear(PQexec(st->conn, sql));
		}
		goto out;
	}
	r = gw_pg_exec(st, "COMMIT", 0, NULL, NULL, NULL, PGRES_COMMAND_OK, err, errlen);
	if (r == NULL) {
		/* A connection lost at COMMIT leaves it unknown whether it
		 * committed: the caller must not take it for either. */
		goto out;
	}
	/* COMMIT of a transaction a failed statement ended answers
	 * ROLLBACK, with no error. */
	if (strcmp(PQcmdStatus(r), "COMMIT") == 0)
		rv = 0;
	else
		sg_seterr(err, errlen, "PostgreSQL store: the transaction was rolled back");
	PQclear(r);
out:
	pthread_mutex_unlock(&st->lock);
	return rv;
}

void
gw_pg_tx_rollback(struct gw_store *st)
{
	char sql[96];

	if (st->tx_depth == 0)
		return;
	st->tx_depth--;
	if (st->tx_depth > 0)
		snprintf(sql, sizeof(sql), "ROLLBACK TO SAVEPOINT sg_%u; RELEASE SAVEPOINT sg_%u",
		         st->tx_depth, st->tx_depth);
	else
		snprintf(sql, sizeof(sql), "ROLLBACK");
	PQclear(PQexec(st->conn, sql));
	pthread_mutex_unlock(&st->lock);
}

bool
gw_pg_tx_alive(struct gw_store *st)
{
	bool alive;

	pthread_mutex_lock(&st->lock);
	alive = st->tx_depth > 0 && PQtransactionStatus(st->conn) == PQTRANS_INTRANS;
	pthread_mutex_unlock(&st->lock);
	return alive;
}

/* ---- accounts ---- */

int
gw_pg_password_get(struct gw_store *st, const char *user, char *hash, size_t hashlen)
{
	const char *vals[1] = { user };
	PGresult *r;
	int rv = -1;

	if (!user || !hash || hashlen == 0)
		return -1;
	pthread_mutex_lock(&st->lock);
	r = gw_pg_exec(st, "SELECT password_hash FROM accounts WHERE account = $1", 1, vals, NULL,
	               NULL, PGRES_TUPLES_OK, NULL, 0);
	if (r == NULL)
		goto out;
	if (PQntuples(r) == 0 || PQgetisnull(r, 0, 0)) {
		rv = 0;
	} else {
		size_t n = (size_t)PQgetlength(r, 0, 0);

		if (n < hashlen && strlen(PQgetvalue(r, 0, 0)) == n) {
			memcpy(hash, PQgetvalue(r, 0, 0), n + 1);
			rv = 1;
		} else {
			gw_log_error("store: password hash of '%s' is too long or malformed", user);
		}
	}
	PQclear(r);
out:
	pthread_mutex_unlock(&st->lock);
	return rv;
}

int
gw_pg_password_set(struct gw_store *st, const char *user, const char *hash)
{
	char now[24];
	const char *vals[3] = { user, hash, now };
	PGresult *r;

	if (!user || !*user)
		return -1;
	snprintf(now, sizeof(now), "%" PRId64, now_s());
	pthread_mutex_lock(&st->lock);
	r = gw_pg_exec(st, "INSERT INTO accounts (account, password_hash, created, updated) "
	               "VALUES ($1, $2, $3, $3) ON CONFLICT (account) DO UPDATE SET "
	               "password_hash = excluded.password_hash, updated = excluded.updated",
	               3, vals, NULL, NULL, PGRES_COMMAND_OK, NULL, 0);
	pthread_mutex_unlock(&st->lock);
	if (r == NULL) {
		gw_log_error("store: setting the password of '%s' failed", user);
		return -1;
	}
	PQclear(r);
	return 0;
}

/* ---- the backend token's binding and known keys (store_meta) ---- */

/* The row 'token_binding' as on SQLite: serial (20 bytes, NUL-padded) |
 * certificate set hash (32) | certificate count (u32 BE) | since (i64 BE). */
#define BINDING_LEN 64

int
gw_pg_binding_set(struct gw_store *st, const struct gw_store_binding *b, char *err,
                  size_t errlen)
{
	uint8_t v[BINDING_LEN] = { 0 };
	const char *vals[1] = { (const char *)v };
	const int lens[1] = { BINDING_LEN }, fmts[1] = { 1 };
	PGresult *r;

	memcpy(v, b->serial, strnlen(b->serial, sizeof(b->serial)));
	memcpy(v + 20, b->certs, 32);
	for (int i = 0; i < 4; i++)
		v[52 + i] = (uint8_t)(b->ncerts >> (24 - 8 * i));
	for (int i = 0; i < 8; i++)
		v[56 + i] = (uint8_t)((uint64_t)b->since >> (56 - 8 * i));
	pthread_mutex_lock(&st->lock);
	r = gw_pg_exec(st, "INSERT INTO store_meta (name, value) VALUES ('token_binding', $1) "
	               "ON CONFLICT (name) DO UPDATE SET value = excluded.value", 1, vals, lens,
	               fmts, PGRES_COMMAND_OK, err, errlen);
	pthread_mutex_unlock(&st->lock);
	PQclear(r);
	return r ? 0 : -1;
}

/* Rows 'key:' || uri, replaced as a whole in one transaction. */
int
gw_pg_known_keys_set(struct gw_store *st, const struct gw_store_known_key *keys, size_t n,
                     char *err, size_t errlen)
{
	char name[8 + 2048];
	const char *vals[2] = { name, NULL };
	int lens[2] = { 0, 0 };
	const int fmts[2] = { 0, 1 };
	PGresult *r;
	int rv = -1;

	if (gw_pg_tx_begin(st, err, errlen) < 0)
		return -1;
	if (exec_cmd(st, "DELETE FROM store_meta WHERE left(name, 4) = 'key:'", err, errlen) < 0)
		goto out;
	for (size_t i = 0; i < n; i++) {
		if ((size_t)snprintf(name, sizeof(name), "key:%s", keys[i].uri) >= sizeof(name)) {
			sg_seterr(err, errlen, "key URI too long: %.60s…", keys[i].uri);
			goto out;
		}
		if (keys[i].len > (size_t)INT32_MAX) {
			sg_seterr(err, errlen, "key %.60s too large", keys[i].uri);
			goto out;
		}
		vals[1] = (const char *)keys[i].blob;
		lens[1] = (int)keys[i].len;
		r = gw_pg_exec(st, "INSERT INTO store_meta (name, value) VALUES ($1, $2)", 2, vals,
		               lens, fmts, PGRES_COMMAND_OK, err, errlen);
		if (r == NULL)
			goto out;
		PQclear(r);
	}
	rv = 0;
out:
	if (rv == 0)
		return gw_pg_tx_commit(st, err, errlen);
	gw_pg_tx_rollback(st);
	return -1;
}

/* ---- sign-in attempts (table auth_lockout; the SQLite backend's block
 * says what each column counts) ----
 *
 * The decision is the same single conditional UPDATE as on SQLite: under
 * READ COMMITTED a second UPDATE of the row waits for the first to commit
 * and then evaluates its WHERE again on the row the first left, so of any
 * number of connections at most max - failed take an attempt. */

static int
attempts_get_locked(struct gw_store *st, const char *user, int64_t key, int64_t now,
                    bool for_update, struct gw_store_attempts *out)
{
	char k[24], t[24];
	const char *vals[3] = { user, k, t };
	PGresult *r;

	memset(out, 0, sizeof(*out));
	snprintf(k, sizeof(k), "%" PRId64, key);
	snprintf(t, sizeof(t), "%" PRId64, now);
	r = gw_pg_exec(st, for_update ?
	               "SELECT failed, lockouts, locked_until, "
	               "  CASE WHEN inflight_until > $3::bigint THEN inflight ELSE 0 END "
	               "FROM auth_lockout WHERE account = $1 AND uid = $2::bigint FOR UPDATE" :
	               "SELECT failed, lockouts, locked_until, "
	               "  CASE WHEN inflight_until > $3::bigint THEN inflight ELSE 0 END "
	               "FROM auth_lockout WHERE account = $1 AND uid = $2::bigint",
	               3, vals, NULL, NULL, PGRES_TUPLES_OK, NULL, 0);
	if (r == NULL)
		return -1;
	if (PQntuples(r) == 1) {
		out->failed = col_i64(r, 0, 0);
		out->lockouts = col_i64(r, 0, 1);
		out->locked_until = col_i64(r, 0, 2);
		out->inflight = col_i64(r, 0, 3);
	}
	PQclear(r);
	return 0;
}

int
gw_pg_attempts_init(struct gw_store *st, char *err, size_t errlen)
{
	/* Made by migration 2. */
	(void)st;
	(void)err;
	(void)errlen;
	return 0;
}

int
gw_pg_attempts_get(struct gw_store *st, const char *user, int64_t key, int64_t now,
                   struct gw_store_attempts *out)
{
	int rv;

	pthread_mutex_lock(&st->lock);
	rv = attempts_get_locked(st, user, key, now, false, out);
	pthread_mutex_unlock(&st->lock);
	return rv;
}

int
gw_pg_attempt_take(struct gw_store *st, const char *user, int64_t key, int64_t now,
                   unsigned max, unsigned ttl, struct gw_store_attempts *row)
{
	char k[24], t[24], m[24], l[24];
	const char *vals[5] = { user, k, t, m, l };
	PGresult *r;
	int rv = -1, n;

	snprintf(k, sizeof(k), "%" PRId64, key);
	snprintf(t, sizeof(t), "%" PRId64, now);
	snprintf(m, sizeof(m), "%u", max);
	snprintf(l, sizeof(l), "%u", ttl);
	pthread_mutex_lock(&st->lock);
	r = gw_pg_exec(st, "INSERT INTO auth_lockout (account, uid) VALUES ($1, $2::bigint) "
	               "ON CONFLICT (account, uid) DO NOTHING", 2, vals, NULL, NULL,
	               PGRES_COMMAND_OK, NULL, 0);
	if (r == NULL)
		goto out;
	PQclear(r);
	/* The reservation itself: one statement, its row count the answer. */
	r = gw_pg_exec(st, "UPDATE auth_lockout SET "
	               "  inflight = (CASE WHEN inflight_until > $3::bigint THEN inflight ELSE 0 END) + 1,"
	               "  inflight_until = $3::bigint + $5::bigint "
	               "WHERE account = $1 AND uid = $2::bigint AND locked_until <= $3::bigint AND "
	               "  failed + (CASE WHEN inflight_until > $3::bigint THEN inflight ELSE 0 END)"
	               "    < $4::bigint",
	               5, vals, NULL, NULL, PGRES_COMMAND_OK, NULL, 0);
	if (r == NULL)
		goto out;
	n = gw_pg_changes(r);
	PQclear(r);
	if (attempts_get_locked(st, user, key, now, false, row) < 0)
		goto out;
	rv = n == 1 ? GW_ATTEMPT_TAKEN : row->locked_until > now ? GW_ATTEMPT_LOCKED : GW_ATTEMPT_FULL;
out:
	if (rv < 0)
		gw_log_error("store: counting an attempt at '%s' failed", user);
	pthread_mutex_unlock(&st->lock);
	return rv;
}

int
gw_pg_attempt_end(struct gw_store *st, const char *user, int64_t key, int64_t now,
                  enum gw_attempt_outcome outcome, unsigned max, unsigned lockout_s,
                  unsigned lockout_cap, struct gw_store_attempts *row)
{
	char k[24], f[24], lo[24], lu[24], in[24];
	const char *vals[6] = { user, k, f, lo, lu, in };
	PGresult *r;
	int rv = -1;

	/* Read under a row lock and written in one transaction: another
	 * gateway ending an attempt of the same row waits, so the failure
	 * each adds is counted, and the lockout it may start with it. */
	if (gw_pg_tx_begin(st, NULL, 0) < 0)
		return -1;
	if (attempts_get_locked(st, user, key, now, true, row) < 0)
		goto out;
	if (row->inflight > 0)
		row->inflight--;
	if (outcome == GW_ATTEMPT_OK) {
		row->failed = 0;
		row->lockouts = 0;
	} else if (outcome == GW_ATTEMPT_FAILED) {
		row->failed++;
		if (row->failed >= (int64_t)max) {
			int64_t d = lockout_s;
			for (int64_t i = 0; i < row->lockouts && d < lockout_cap; i++)
				d *= 2;
			if (d > lockout_cap)
				d = lockout_cap;
			row->locked_until = now + d;
			row->lockouts++;
			row->failed = 0;
		}
	}
	snprintf(k, sizeof(k), "%" PRId64, key);
	snprintf(f, sizeof(f), "%" PRId64, row->failed);
	snprintf(lo, sizeof(lo), "%" PRId64, row->lockouts);
	snprintf(lu, sizeof(lu), "%" PRId64, row->locked_until);
	snprintf(in, sizeof(in), "%" PRId64, row->inflight);
	r = gw_pg_exec(st, "UPDATE auth_lockout SET failed = $3::bigint, lockouts = $4::bigint, "
	               "locked_until = $5::bigint, inflight = $6::bigint "
	               "WHERE account = $1 AND uid = $2::bigint", 6, vals, NULL, NULL,
	               PGRES_COMMAND_OK, NULL, 0);
	if (r == NULL)
		goto out;
	PQclear(r);
	rv = 0;
out:
	if (rv == 0 && gw_pg_tx_commit(st, NULL, 0) < 0)
		return -1;
	if (rv < 0)
		gw_pg_tx_rollback(st);
	return rv;
}

int
gw_pg_attempts_clear(struct gw_store *st, const char *user)
{
	const char *vals[1] = { user };
	PGresult *r;
	int n;

	/* Attempts being checked keep their place, as on SQLite. */
	pthread_mutex_lock(&st->lock);
	r = gw_pg_exec(st, "UPDATE auth_lockout SET failed = 0, lockouts = 0, locked_until = 0 "
	               "WHERE account = $1", 1, vals, NULL, NULL, PGRES_COMMAND_OK, NULL, 0);
	pthread_mutex_unlock(&st->lock);
	if (r == NULL)
		return -1;
	n = gw_pg_changes(r);
	PQclear(r);
	return n;
}
