/*
 * The store on PostgreSQL (libpq): the connection (synchronous commit, fail
 * closed, one reconnection outside a transaction), its own versioned schema
 * and migrations applied at open, the nesting transactions, sites (the
 * claim of one), and the credential repositories: passwords, the sign-in
 * attempts, the site's token binding and known keys (site_meta).
 * authtotp.c has the TOTP secrets, audit.c the audit log and checkpoints,
 * appstore.c applications, approvals and quota counters; ops.c the table
 * of calls (docs/store.md).
 */
#include "pg_store.h"
#include "protocol.h"
#include "log.h"

#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Seconds libpq waits for the server before the open fails (closed). */
#define CONNECT_TIMEOUT_S "10"
/* pg_advisory_xact_lock key: two gateways opening one database at once
 * migrate it one after the other. */
#define MIGRATE_LOCK_KEY "1397048679"
/* The advisory lock key of site $1: the first 64 bits of
 * sha256('sealgate-site:' || name), the same on every server and in every
 * gateway (sha256, not md5, which a server in FIPS mode refuses). */
#define SITE_KEY_SQL "('x' || left(encode(sha256(convert_to('sealgate-site:' || $1, " \
                     "'UTF8')), 'hex'), 16))::bit(64)::bigint"

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
	/* 3 (truth): applications, approvals and quota counters (pg/appstore.c
	 * owns their meaning and SQL; SQLite's migration 3). Ids from an
	 * identity column; approvals in the order stored (n, SQLite's rowid);
	 * the checks SQLite's STRICT tables leave to the code. */
	"CREATE TABLE applications ("
	"  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
	"  applicant text NOT NULL,"
	"  seal text NOT NULL,"
	"  document_type text,"
	"  business_scope text,"
	"  amount bigint,"
	"  reason text NOT NULL,"
	"  doc_digest bytea CHECK (doc_digest IS NULL OR octet_length(doc_digest) = 32),"
	"  rule integer NOT NULL,"
	"  levels text NOT NULL,"
	"  level integer NOT NULL CHECK (level >= 0),"
	"  uses_granted bigint NOT NULL CHECK (uses_granted >= 0),"
	"  uses_left bigint NOT NULL CHECK (uses_left >= 0 AND uses_left <= uses_granted),"
	"  created bigint NOT NULL,"
	"  valid_until bigint NOT NULL,"
	"  state text NOT NULL CHECK (state IN ('pending', 'authorized', 'used_up', 'expired',"
	"    'revoked', 'rejected')),"
	"  updated bigint NOT NULL);"
	"CREATE INDEX applications_by_applicant ON applications (applicant, seal, state);"
	"CREATE INDEX applications_by_state ON applications (state, seal);"
	"CREATE TABLE approvals ("
	"  application bigint NOT NULL REFERENCES applications (id),"
	"  n bigint GENERATED ALWAYS AS IDENTITY,"
	"  level integer NOT NULL CHECK (level >= 0),"
	"  approver text NOT NULL,"
	"  approve boolean NOT NULL,"
	"  comment text,"
	"  at bigint NOT NULL,"
	"  PRIMARY KEY (application, approver));"
	"CREATE TABLE quota_use ("
	"  seal text NOT NULL,"
	"  period text NOT NULL,"
	"  person text NOT NULL DEFAULT '',"
	"  used bigint NOT NULL CHECK (used >= 0),"
	"  PRIMARY KEY (seal, period, person));",
	/* 4 (audit): each site's facts, audit chain and checkpoints.
	 * site_meta takes the token binding and known keys from store_meta
	 * (site "main": the only one before sites), which keeps the group's
	 * own facts (its id). audit and audit_checkpoints are SQLite's
	 * (sqlite/store.c, migrations 2, 4-8) keyed by site; the indexes are
	 * the ones audit queries filter by. audit_checkpoint_ids keeps the
	 * highest checkpoint id ever given per site, as SQLite's
	 * sqlite_sequence does. The triggers refuse any change but INSERT to
	 * history, for the gateway's role and the owner alike; dropping them
	 * takes the table's owner, and the hash chain shows what they did. */
	"CREATE TABLE site_meta ("
	"  site text NOT NULL,"
	"  name text NOT NULL,"
	"  value bytea NOT NULL,"
	"  PRIMARY KEY (site, name));"
	"INSERT INTO site_meta (site, name, value)"
	"  SELECT 'main', name, value FROM store_meta"
	"  WHERE name = 'token_binding' OR left(name, 4) = 'key:';"
	"DELETE FROM store_meta WHERE name = 'token_binding' OR left(name, 4) = 'key:';"
	"CREATE TABLE audit ("
	"  site text NOT NULL,"
	"  seq bigint NOT NULL CHECK (seq >= 1),"
	"  ts_ns bigint NOT NULL,"
	"  action text, outcome text, reason text, actor text,"
	"  uid bigint NOT NULL, pid bigint NOT NULL,"
	"  exe text, host text, seal text,"
	"  application bigint NOT NULL,"
	"  doc_digest bytea, signed_digest bytea,"
	"  mechanism bigint NOT NULL,"
	"  detail text,"
	"  prev_hash bytea NOT NULL,"
	"  hash bytea NOT NULL,"
	"  PRIMARY KEY (site, seq));"
	"CREATE INDEX audit_by_time ON audit (ts_ns);"
	"CREATE INDEX audit_by_seal ON audit (seal, ts_ns);"
	"CREATE INDEX audit_by_actor ON audit (actor, ts_ns);"
	"CREATE INDEX audit_by_application ON audit (application) WHERE application <> 0;"
	"CREATE INDEX audit_by_doc_digest ON audit (doc_digest) WHERE doc_digest IS NOT NULL;"
	"CREATE INDEX audit_by_signed_digest ON audit (signed_digest);"
	"CREATE TABLE audit_checkpoints ("
	"  site text NOT NULL,"
	"  id bigint NOT NULL CHECK (id >= 1),"
	"  seq bigint NOT NULL CHECK (seq >= 0),"
	"  ts_ns bigint NOT NULL,"
	"  hash bytea NOT NULL,"
	"  alg text NOT NULL,"
	"  signature bytea NOT NULL,"
	"  cert bytea,"
	"  prev_id bigint,"
	"  prev_hash bytea,"
	"  PRIMARY KEY (site, id));"
	"CREATE INDEX audit_checkpoints_by_seq ON audit_checkpoints (site, seq, id);"
	"CREATE TABLE audit_checkpoint_ids ("
	"  site text PRIMARY KEY,"
	"  max_id bigint NOT NULL CHECK (max_id >= 1));"
	"CREATE FUNCTION sg_append_only() RETURNS trigger LANGUAGE plpgsql AS $$"
	"  BEGIN RAISE EXCEPTION '%', TG_ARGV[0]; END $$;"
	"CREATE TRIGGER audit_no_change BEFORE UPDATE OR DELETE ON audit"
	"  FOR EACH ROW EXECUTE FUNCTION sg_append_only('the audit log is append-only');"
	"CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit"
	"  FOR EACH STATEMENT EXECUTE FUNCTION sg_append_only('the audit log is append-only');"
	"CREATE TRIGGER audit_checkpoints_no_change BEFORE UPDATE OR DELETE ON audit_checkpoints"
	"  FOR EACH ROW EXECUTE FUNCTION sg_append_only('audit checkpoints are append-only');"
	"CREATE TRIGGER audit_checkpoints_no_truncate BEFORE TRUNCATE ON audit_checkpoints"
	"  FOR EACH STATEMENT EXECUTE FUNCTION sg_append_only('audit checkpoints are append-only');",
	/* 5 (the policy repository, policystore.h): every published version
	 * of the group's policy, its bytes as published. */
	"CREATE TABLE policy_versions ("
	"  version bigint PRIMARY KEY CHECK (version > 0),"
	"  sha256 bytea NOT NULL CHECK (octet_length(sha256) = 32),"
	"  text bytea NOT NULL,"
	"  author text NOT NULL,"
	"  published bigint NOT NULL);",
	/* 6 (TOTP secrets at every site, totp.c): one copy of a person's
	 * secret per site, sealed to that site's public key, and the sites'
	 * public keys; auth_totp.secret is empty when only copies hold it. */
	"ALTER TABLE auth_totp DROP CONSTRAINT auth_totp_secret_check;"
	"CREATE TABLE auth_totp_sites ("
	"  account text NOT NULL REFERENCES auth_totp (account) ON DELETE CASCADE,"
	"  site text NOT NULL,"
	"  sealed bytea NOT NULL CHECK (octet_length(sealed) > 0),"
	"  PRIMARY KEY (account, site));"
	"CREATE TABLE totp_site_keys ("
	"  site text PRIMARY KEY,"
	"  pub bytea NOT NULL CHECK (octet_length(pub) > 0),"
	"  published bigint NOT NULL);",
	/* 7 (the documents repository, docstore.h; stamp): the files
	 * applications are bound to, under their SHA-256; stored
	 * uncompressed, so that substring() reads a chunk alone. */
	"CREATE TABLE documents ("
	"  sha256 bytea PRIMARY KEY CHECK (octet_length(sha256) = 32),"
	"  size bigint NOT NULL CHECK (size >= 0),"
	"  name text NOT NULL,"
	"  created bigint NOT NULL,"
	"  data bytea NOT NULL);"
	"ALTER TABLE documents ALTER COLUMN data SET STORAGE EXTERNAL;",
	/* 8 (the outbox, outbox.h; gateway/notify/): notices waiting to be
	 * sent, the group's (no site: any gateway sends any). dedupe makes a
	 * second put of one notice a no-op (NULLs are distinct). */
	"CREATE TABLE outbox ("
	"  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
	"  event text NOT NULL,"
	"  channel text NOT NULL,"
	"  recipient text NOT NULL,"
	"  address text,"
	"  application bigint NOT NULL DEFAULT 0,"
	"  dedupe text UNIQUE,"
	"  detail text NOT NULL,"
	"  state text NOT NULL CHECK (state IN ('pending', 'sending', 'sent', 'failed')),"
	"  tries integer NOT NULL DEFAULT 0 CHECK (tries >= 0),"
	"  next_at bigint NOT NULL,"
	"  claimed_by text,"
	"  lease_until bigint NOT NULL DEFAULT 0,"
	"  last_error text,"
	"  created bigint NOT NULL,"
	"  settled bigint);"
	"CREATE INDEX outbox_due ON outbox (state, next_at);",
	/* 9 (the alerts repository, pg/alertstore.c; SQLite makes its table at
	 * start): the online risk engine's alerts of each site, one per key. */
	"CREATE TABLE risk_alerts ("
	"  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
	"  site text NOT NULL,"
	"  key text NOT NULL,"
	"  rule text NOT NULL,"
	"  severity text NOT NULL,"
	"  subject text NOT NULL,"
	"  why text NOT NULL,"
	"  ts_ns bigint NOT NULL,"
	"  seqs text NOT NULL,"
	"  apps text NOT NULL,"
	"  raised bigint NOT NULL,"
	"  state text NOT NULL CHECK (state IN ('open', 'acknowledged', 'closed')),"
	"  state_by text,"
	"  state_comment text,"
	"  state_at bigint NOT NULL DEFAULT 0,"
	"  UNIQUE (site, key));"
	"CREATE INDEX risk_alerts_by_time ON risk_alerts (site, ts_ns);",
	/* 10 (pgsess: the sessions repository, sessionstore.h): the group's
	 * logins under their token's BLAKE2b digest (never the token), with
	 * the idle time and the end each was made with. */
	"CREATE TABLE sessions ("
	"  id bytea PRIMARY KEY CHECK (octet_length(id) = 32),"
	"  account text NOT NULL,"
	"  uid bigint NOT NULL,"
	"  factors integer NOT NULL,"
	"  totp_at bigint NOT NULL,"
	"  created bigint NOT NULL,"
	"  last_used bigint NOT NULL,"
	"  idle bigint NOT NULL CHECK (idle > 0),"
	"  expires bigint NOT NULL);"
	"CREATE INDEX sessions_by_account ON sessions (account);",
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

static int session_setup(struct gw_store *st, char *err, size_t errlen);

/* An idle connection whose server went away (a restart, a terminated
 * backend) has its end of file waiting on the socket, and libpq only
 * notices when it reads: read what is there, so that a connection already
 * lost is known before a statement is sent rather than by its failure. */
static void
probe_idle(struct gw_store *st)
{
	for (int i = 0; i < 4 && PQstatus(st->conn) == CONNECTION_OK; i++) {
		struct pollfd p = { .fd = PQsocket(st->conn), .events = POLLIN };

		if (p.fd < 0 || poll(&p, 1, 0) <= 0)
			return;
		if (!PQconsumeInput(st->conn))
			return;
	}
}

/* One try at a new connection with the parameters of the first (PQreset),
 * the session set up again and the site claimed again when it was. Only
 * outside a transaction: one on a lost connection is gone, and replaying
 * it is the caller's decision, never ours. */
static int
reconnect_locked(struct gw_store *st, char *buf, size_t len)
{
	char e[256] = "";
	int rv = -1;

	st->ready = false;
	st->reconnecting = true;
	st->prepared = 0;   /* the old session's, gone with it */
	PQreset(st->conn);
	if (PQstatus(st->conn) != CONNECTION_OK) {
		const char *m = PQerrorMessage(st->conn);
		size_t n = strlen(m);

		while (n > 0 && (m[n - 1] == '\n' || m[n - 1] == ' '))
			n--;
		snprintf(buf, len, "PostgreSQL store unreachable: %.*s", (int)n, m);
		goto out;
	}
	if (session_setup(st, e, sizeof(e)) < 0) {
		snprintf(buf, len, "PostgreSQL store unreachable: %s", e);
		goto out;
	}
	/* The claim was the old session's and went with it: a gateway that
	 * took the site meanwhile keeps it, and this store stays unready. */
	if (st->claimed && gw_pg_claim_locked(st, e, sizeof(e)) < 0) {
		snprintf(buf, len, "%s", e);
		goto out;
	}
	st->ready = true;
	gw_log_warn("store: reconnected to PostgreSQL%s", st->claimed ? ", site claimed again" : "");
	rv = 0;
out:
	st->reconnecting = false;
	return rv;
}

/* Whether a statement may be sent now: in a transaction only on the
 * connection it began on; outside one, after one reconnection if the
 * connection is lost. */
static int
conn_check(struct gw_store *st, char *buf, size_t len)
{
	if (st->reconnecting || st->tx_depth > 0) {
		if (PQstatus(st->conn) == CONNECTION_OK)
			return 0;
		snprintf(buf, len, "PostgreSQL store: the connection is lost");
		return -1;
	}
	probe_idle(st);
	if (PQstatus(st->conn) == CONNECTION_OK && st->ready)
		return 0;
	return reconnect_locked(st, buf, len);
}

/* ---- BEGIN and savepoints sent with the next statement ----
 *
 * A transaction's BEGIN, a record's savepoint and its release carry no
 * answer anyone waits for: they are kept (st->pending) and sent in a
 * pipeline ahead of the next statement, so that they cost no round trip
 * of their own (four of a lone signature's eight on the audit writer's
 * connection). The first of them that fails is that statement's failure,
 * as the server, having aborted the transaction, skips the rest. A
 * transaction begins only on a connection known to be there: BEGIN is
 * kept only after conn_check (reconnecting when lost) said so. COMMIT is
 * sent at once. */

/* BEGIN is kept, not sent yet: nothing of the transaction reached the
 * server. */
static bool
begin_pending(const struct gw_store *st)
{
	return st->n_pending > 0 && strcmp(st->pending[0], "BEGIN") == 0;
}

/* The pending commands as one simple query ("A; B"), emptied. */
static void
pending_join(struct gw_store *st, char *buf, size_t len)
{
	size_t at = 0;

	buf[0] = '\0';
	for (unsigned i = 0; i < st->n_pending && at < len; i++)
		at += (size_t)snprintf(buf + at, len - at, "%s%s", i ? "; " : "", st->pending[i]);
	st->n_pending = 0;
}

/* Runs the pending commands, then sql, then COMMIT when commit, in one
 * round trip: sql's result, or the first failed command's (an error
 * result), or NULL; the COMMIT's result (maybe an error or an aborted
 * pipeline's) in *commit_res, NULL when it has none. */
static PGresult *
exec_pipelined(struct gw_store *st, const char *name, const char *sql, int n,
               const char *const *vals, const int *lens, const int *fmts, int result_format,
               bool commit, PGresult **commit_res)
{
	PGresult *r, *fail = NULL, *res = NULL;
	unsigned k = st->n_pending;
	bool sent = PQenterPipelineMode(st->conn) == 1;

	*commit_res = NULL;
	for (unsigned i = 0; sent && i < k; i++)
		sent = PQsendQueryParams(st->conn, st->pending[i], 0, NULL, NULL, NULL, NULL, 0) == 1;
	st->n_pending = 0;
	if (name != NULL)
		sent = sent && PQsendQueryPrepared(st->conn, name, n, vals, lens, fmts,
		                                   result_format) == 1;
	else
		sent = sent && PQsendQueryParams(st->conn, sql, n, NULL, vals, lens, fmts,
		                                 result_format) == 1;
	if (commit)
		sent = sent && PQsendQueryParams(st->conn, "COMMIT", 0, NULL, NULL, NULL, NULL,
		                                 0) == 1;
	sent = sent && PQpipelineSync(st->conn) == 1;
	if (!sent) {
		/* Not all sent: the connection is gone or the pipeline broken;
		 * the transaction cannot be trusted to go on. */
		PQexitPipelineMode(st->conn);
		return NULL;
	}
	/* k + 1 (+ 1) results, each followed by NULL, then the sync's. */
	for (unsigned i = 0; i <= k + (commit ? 1 : 0); i++) {
		r = PQgetResult(st->conn);
		if (r == NULL)
			break;
		if (i < k && fail == NULL && PQresultStatus(r) != PGRES_COMMAND_OK)
			fail = r;
		else if (i == k)
			res = r;
		else if (i == k + 1)
			*commit_res = r;
		else
			PQclear(r);
		while ((r = PQgetResult(st->conn)) != NULL && PQresultStatus(r) != PGRES_PIPELINE_SYNC)
			PQclear(r);
		if (r != NULL) {
			PQclear(r);   /* (the sync, early: the pipeline ended short) */
			break;
		}
	}
	while ((r = PQgetResult(st->conn)) != NULL) {
		bool sync = PQresultStatus(r) == PGRES_PIPELINE_SYNC;

		PQclear(r);
		if (sync)
			break;
	}
	PQexitPipelineMode(st->conn);
	if (fail != NULL) {
		PQclear(res);
		return fail;
	}
	return res;
}

PGresult *
gw_pg_exec(struct gw_store *st, const char *sql, int n, const char *const *vals,
           const int *lens, const int *fmts, ExecStatusType want, char *err, size_t errlen)
{
	return gw_pg_exec_fmt(st, sql, n, vals, lens, fmts, want, 0, err, errlen);
}

/* Prepares statement id on this connection unless it already was: the
 * result of a failed Parse (an error result) or of a lost connection
 * (NULL), or NULL with *name set when it is there to run. */
static PGresult *
prepare_once(struct gw_store *st, unsigned id, const char *sql, int n, char *name,
             size_t namelen, bool *ready)
{
	PGresult *r;

	snprintf(name, namelen, "sg_p%u", id);
	*ready = false;
	if (st->prepared & (1u << id)) {
		*ready = true;
		return NULL;
	}
	r = PQprepare(st->conn, name, sql, n, NULL);
	if (r != NULL && PQresultStatus(r) == PGRES_COMMAND_OK) {
		PQclear(r);
		st->prepared |= 1u << id;
		*ready = true;
		return NULL;
	}
	return r;
}

/* The one place statements are sent: prepared as statement id when id >=
 * 0, else unnamed (parsed and planned on every call). */
static PGresult *
exec_any(struct gw_store *st, int id, const char *sql, int n, const char *const *vals,
         const int *lens, const int *fmts, ExecStatusType want, int result_format,
         char *err, size_t errlen)
{
	char buf[512], name[16];
	PGresult *r;
	const char *prim, *state;
	/* (asked for by gw_pg_rows_flush for the batch's last INSERT) */
	bool commit = st->commit_after;

	st->commit_after = false;
	if (conn_check(st, buf, sizeof(buf)) < 0) {
		st->n_pending = 0;
		goto fail;
	}
	if (id >= 0) {
		bool ready;

		r = prepare_once(st, (unsigned)id, sql, n, name, sizeof(name), &ready);
		if (!ready) {
			st->n_pending = 0;   /* (the transaction is aborted or gone) */
			goto failed;
		}
		st->commit_sent = commit;
		if (st->n_pending > 0 || commit)
			r = exec_pipelined(st, name, sql, n, vals, lens, fmts, result_format, commit,
			                   &st->commit_res);
		else
			r = PQexecPrepared(st->conn, name, n, vals, lens, fmts, result_format);
	} else if (st->n_pending > 0 || commit) {
		st->commit_sent = commit;
		r = exec_pipelined(st, NULL, sql, n, vals, lens, fmts, result_format, commit,
		                   &st->commit_res);
	} else {
		r = PQexecParams(st->conn, sql, n, NULL, vals, lens, fmts, result_format);
	}
	if (r != NULL && PQresultStatus(r) == want)
		return r;
failed:
	/* The primary message and SQLSTATE only: a DETAIL line may quote a
	 * row, and rows hold password hashes and sealed secrets. */
	prim = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;
	state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
	/* A prepared statement the session no longer has (a DISCARD ALL, a
	 * pooler between us and the server): prepared again next time. */
	if (id >= 0 && state != NULL && strcmp(state, "26000") == 0)
		st->prepared &= ~(1u << id);
	if (PQstatus(st->conn) != CONNECTION_OK)
		/* Lost in the statement: whether it was done is unknown, so it
		 * fails; the next call outside a transaction reconnects. */
		snprintf(buf, sizeof(buf), "PostgreSQL store: the connection is lost%s%s",
		         prim ? ": " : "", prim ? prim : "");
	else if (prim != NULL)
		snprintf(buf, sizeof(buf), "PostgreSQL store: %s (SQLSTATE %s)", prim,
		         state ? state : "?");
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

PGresult *
gw_pg_exec_fmt(struct gw_store *st, const char *sql, int n, const char *const *vals,
               const int *lens, const int *fmts, ExecStatusType want, int result_format,
               char *err, size_t errlen)
{
	return exec_any(st, -1, sql, n, vals, lens, fmts, want, result_format, err, errlen);
}

PGresult *
gw_pg_exec_prepared(struct gw_store *st, enum gw_pg_stmt id, const char *sql, int n,
                    const char *const *vals, ExecStatusType want, char *err, size_t errlen)
{
	return exec_any(st, (int)id, sql, n, vals, NULL, NULL, want, 0, err, errlen);
}

PGresult *
gw_pg_exec_prepared_fmt(struct gw_store *st, enum gw_pg_stmt id, const char *sql, int n,
                        const char *const *vals, const int *lens, const int *fmts,
                        ExecStatusType want, char *err, size_t errlen)
{
	return exec_any(st, (int)id, sql, n, vals, lens, fmts, want, 0, err, errlen);
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
	bool have;
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
	 * there", since nothing could say which version made it. Looked for
	 * first: CREATE … IF NOT EXISTS needs the right to create in the
	 * schema even when the table is there, and a gateway role that only
	 * uses tables an owner role migrated has no such right
	 * (docs/operations.md, "Roles and rights"). */
	r = gw_pg_exec(st, "SELECT to_regclass('schema_version') IS NOT NULL", 0, NULL, NULL,
	               NULL, PGRES_TUPLES_OK, err, errlen);
	if (r == NULL)
		goto out;
	have = PQntuples(r) == 1 && strcmp(PQgetvalue(r, 0, 0), "t") == 0;
	PQclear(r);
	if (!have && exec_cmd(st, "CREATE TABLE IF NOT EXISTS schema_version ("
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

/* What each connection of the store is checked for and set to, at open
 * and again after a reconnection (the server may have been replaced). */
static int
session_setup(struct gw_store *st, char *err, size_t errlen)
{
	PGresult *r;

	if (PQserverVersion(st->conn) < 130000) {
		sg_seterr(err, errlen, "PostgreSQL store: the server is version %d; 13 or later is "
		          "needed", PQserverVersion(st->conn));
		return -1;
	}
	/* A signature is released only after its record is committed: the
	 * COMMIT must wait for the WAL flush (and a synchronous standby's,
	 * when the server has one). */
	if (exec_cmd(st, "SET synchronous_commit = on", err, errlen) < 0 ||
	    exec_cmd(st, "SET client_encoding = 'UTF8'", err, errlen) < 0)
		return -1;
	r = gw_pg_exec(st, "SELECT current_setting('fsync')", 0, NULL, NULL, NULL,
	               PGRES_TUPLES_OK, err, errlen);
	if (r == NULL)
		return -1;
	if (PQntuples(r) != 1 || strcmp(PQgetvalue(r, 0, 0), "on") != 0) {
		sg_seterr(err, errlen, "PostgreSQL store: the server runs with fsync off: a "
		          "committed record could be lost; refusing it");
		PQclear(r);
		return -1;
	}
	PQclear(r);
	return 0;
}

int
gw_store_pg_open(const char *url, int upto, struct gw_store **out, char *err, size_t errlen)
{
	/* Ours first, so that whatever the URL says wins (expand_dbname). */
	const char *const keys[] = { "connect_timeout", "application_name", "dbname", NULL };
	const char *vals[] = { CONNECT_TIMEOUT_S, "sealgated", url, NULL };
	pthread_mutexattr_t ma;
	struct gw_store *st;
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
	st->ready = true;
	if (session_setup(st, err, errlen) < 0)
		goto out;
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
	/* The server frees a session's locks when its backend exits, a
	 * moment after PQfinish returns: let the claim go first, so that the
	 * site is free once the store is closed. */
	if (st->claimed && st->ready && st->conn != NULL && PQstatus(st->conn) == CONNECTION_OK &&
	    PQtransactionStatus(st->conn) == PQTRANS_IDLE) {
		const char *vals[1] = { gw_store_site(st) };

		PQclear(PQexecParams(st->conn, "SELECT pg_advisory_unlock(" SITE_KEY_SQL ")", 1, NULL,
		                     vals, NULL, NULL, 0));
	}
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

/* Sends the pending commands now (one round trip): 0 or -1. */
static int
pending_send(struct gw_store *st, char *err, size_t errlen)
{
	char sql[GW_PG_PENDING_MAX * 40];

	pending_join(st, sql, sizeof(sql));
	return exec_cmd(st, sql, err, errlen);
}

int
gw_pg_tx_begin(struct gw_store *st, char *err, size_t errlen)
{
	pthread_mutex_lock(&st->lock);
	if (st->tx_depth >= GW_PG_TX_DEPTH_MAX) {
		sg_seterr(err, errlen, "PostgreSQL store: transactions nested too deep");
		goto fail;
	}
	if (st->tx_depth == 0) {
		char buf[512];

		/* The connection is checked (and made again when lost) now,
		 * outside the transaction, without a round trip; BEGIN itself
		 * goes with the first statement. */
		st->n_pending = 0;
		if (conn_check(st, buf, sizeof(buf)) < 0) {
			sg_seterr(err, errlen, "%s", buf);
			goto fail;
		}
		snprintf(st->pending[st->n_pending++], sizeof(st->pending[0]), "BEGIN");
	} else {
		if (st->n_pending == GW_PG_PENDING_MAX && pending_send(st, err, errlen) < 0)
			goto fail;
		snprintf(st->pending[st->n_pending++], sizeof(st->pending[0]), "SAVEPOINT sg_%u",
		         st->tx_depth);
	}
	st->rows_at[st->tx_depth] = gw_pg_rows_mark(st);
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
	int rv = -1, flushed;

	if (st->tx_depth == 0) {
		sg_seterr(err, errlen, "PostgreSQL store: commit without a transaction");
		return -1;
	}
	if (st->tx_depth > 1) {
		st->tx_depth--;
		snprintf(sql, sizeof(sql), "SAVEPOINT sg_%u", st->tx_depth);
		if (st->n_pending > 0 && strcmp(st->pending[st->n_pending - 1], sql) == 0) {
			/* Nothing ran in the level: it was never sent. */
			st->n_pending--;
			rv = 0;
			goto out;
		}
		rv = 0;
		if (st->n_pending == GW_PG_PENDING_MAX)
			rv = pending_send(st, err, errlen);
		if (rv == 0)
			snprintf(st->pending[st->n_pending++], sizeof(st->pending[0]),
			         "RELEASE SAVEPOINT sg_%u", st->tx_depth);
		if (rv < 0) {
			/* The level is gone either way (store.h). */
			snprintf(sql, sizeof(sql), "ROLLBACK TO SAVEPOINT sg_%u", st->tx_depth);
			PQclear(PQexec(st->conn, sql));
			gw_pg_rows_undo(st, st->rows_at[st->tx_depth]);
		}
		goto out;
	}
	/* An audit batch's rows go in first, the COMMIT in one round trip
	 * with the last of their INSERTs; one lost, nothing commits (the
	 * COMMIT after a failed INSERT is not run: the pipeline aborts). */
	st->commit_wanted = true;
	st->commit_sent = false;
	flushed = gw_pg_rows_flush(st, err, errlen);
	st->commit_wanted = false;
	st->commit_after = false;
	r = st->commit_res;
	st->commit_res = NULL;
	if (flushed < 0) {
		/* (a COMMIT that did run, after an INSERT that wrote fewer rows
		 * than it was given, commits the batch but it fails all the
		 * same: nothing of it is released) */
		PQclear(r);
		if (PQstatus(st->conn) == CONNECTION_OK &&
		    PQtransactionStatus(st->conn) != PQTRANS_IDLE)
			PQclear(PQexec(st->conn, "ROLLBACK"));
		st->n_pending = 0;
		st->tx_depth = 0;
		goto out;
	}
	if (r != NULL && PQresultStatus(r) != PGRES_COMMAND_OK) {
		const char *prim = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);

		sg_seterr(err, errlen, "PostgreSQL store: %s", prim ? prim : "COMMIT not run");
		PQclear(r);
		r = NULL;
		st->tx_depth = 0;
	} else if (r == NULL && st->commit_sent) {
		/* Sent, its answer lost with the connection: whether it
		 * committed is unknown, and it is not sent again. */
		sg_seterr(err, errlen, "PostgreSQL store: the connection is lost at COMMIT");
		st->tx_depth = 0;
	} else if (r == NULL && st->n_pending == 1 && begin_pending(st)) {
		/* Nothing ran: nothing to commit, no round trip. */
		st->n_pending = 0;
		st->tx_depth = 0;
		rv = 0;
		goto out;
	} else if (r == NULL) {
		/* Sent while the level still counts, so that a lost connection
		 * fails the COMMIT rather than reconnecting and committing
		 * nothing. */
		r = gw_pg_exec(st, "COMMIT", 0, NULL, NULL, NULL, PGRES_COMMAND_OK, err, errlen);
		st->tx_depth = 0;
	} else {
		st->tx_depth = 0;
	}
	if (r == NULL) {
		/* A connection lost at COMMIT leaves it unknown whether it
		 * committed: the caller must not take it for either. A
		 * release sent with it that failed left the COMMIT unrun, the
		 * transaction open and aborted: it is ended here. */
		if (PQstatus(st->conn) == CONNECTION_OK &&
		    PQtransactionStatus(st->conn) != PQTRANS_IDLE)
			PQclear(PQexec(st->conn, "ROLLBACK"));
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
	char sql[GW_PG_PENDING_MAX * 40 + 96], last[40];
	size_t at;

	if (st->tx_depth == 0)
		return;
	st->tx_depth--;
	snprintf(last, sizeof(last), "SAVEPOINT sg_%u", st->tx_depth);
	if (st->tx_depth > 0 && st->n_pending > 0 &&
	    strcmp(st->pending[st->n_pending - 1], last) == 0) {
		/* Nothing ran in the level: it was never sent. */
		st->n_pending--;
		goto out;
	}
	if (st->tx_depth == 0) {
		bool sent = !begin_pending(st);

		st->n_pending = 0;   /* (undone with the rest) */
		if (!sent)
			goto out;    /* nothing reached the server */
		snprintf(sql, sizeof(sql), "ROLLBACK");
	} else {
		/* What is pending first, then the rollback: one round trip. */
		pending_join(st, sql, sizeof(sql) - 96);
		at = strlen(sql);
		snprintf(sql + at, sizeof(sql) - at, "%sROLLBACK TO SAVEPOINT sg_%u; "
		         "RELEASE SAVEPOINT sg_%u", at ? "; " : "", st->tx_depth, st->tx_depth);
	}
	PQclear(PQexec(st->conn, sql));
out:
	gw_pg_rows_undo(st, st->rows_at[st->tx_depth]);
	pthread_mutex_unlock(&st->lock);
}

bool
gw_pg_tx_alive(struct gw_store *st)
{
	bool alive;

	pthread_mutex_lock(&st->lock);
	/* (a BEGIN not sent yet is a transaction nothing has ended) */
	alive = st->tx_depth > 0 && (PQtransactionStatus(st->conn) == PQTRANS_INTRANS ||
	                             (begin_pending(st) && PQstatus(st->conn) == CONNECTION_OK));
	pthread_mutex_unlock(&st->lock);
	return alive;
}

/* One round trip (after one reconnection, as every call outside a
 * transaction): whether the server answers now. A transaction another
 * thread holds is waited for, under the lock. */
int
gw_pg_ping(struct gw_store *st, char *err, size_t errlen)
{
	PGresult *r;

	pthread_mutex_lock(&st->lock);
	r = gw_pg_exec(st, "SELECT 1", 0, NULL, NULL, NULL, PGRES_TUPLES_OK, err, errlen);
	pthread_mutex_unlock(&st->lock);
	if (r == NULL)
		return -1;
	PQclear(r);
	return 0;
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

/* ---- the backend token's binding and known keys (site_meta) ----
 *
 * Each site has its own token: its rows in site_meta are named as the
 * SQLite store's rows in store_meta. */

/* The row 'token_binding' as on SQLite: serial (20 bytes, NUL-padded) |
 * certificate set hash (32) | certificate count (u32 BE) | since (i64 BE). */
#define BINDING_LEN 64

int
gw_pg_binding_set(struct gw_store *st, const struct gw_store_binding *b, char *err,
                  size_t errlen)
{
	uint8_t v[BINDING_LEN] = { 0 };
	const char *vals[2] = { (const char *)v, gw_store_site(st) };
	const int lens[2] = { BINDING_LEN, 0 }, fmts[2] = { 1, 0 };
	PGresult *r;

	memcpy(v, b->serial, strnlen(b->serial, sizeof(b->serial)));
	memcpy(v + 20, b->certs, 32);
	for (int i = 0; i < 4; i++)
		v[52 + i] = (uint8_t)(b->ncerts >> (24 - 8 * i));
	for (int i = 0; i < 8; i++)
		v[56 + i] = (uint8_t)((uint64_t)b->since >> (56 - 8 * i));
	pthread_mutex_lock(&st->lock);
	r = gw_pg_exec(st, "INSERT INTO site_meta (site, name, value) "
	               "VALUES ($2, 'token_binding', $1) "
	               "ON CONFLICT (site, name) DO UPDATE SET value = excluded.value", 2, vals, lens,
	               fmts, PGRES_COMMAND_OK, err, errlen);
	pthread_mutex_unlock(&st->lock);
	if (r == NULL)
		return -1;
	PQclear(r);
	return 0;
}

int
gw_pg_binding_get(struct gw_store *st, struct gw_store_binding *b, char *err, size_t errlen)
{
	const char *vals[1] = { gw_store_site(st) };
	const uint8_t *v;
	PGresult *r;
	int rv = -1;

	memset(b, 0, sizeof(*b));
	pthread_mutex_lock(&st->lock);
	r = gw_pg_exec_fmt(st, "SELECT value FROM site_meta WHERE site = $1 AND "
	                   "name = 'token_binding'", 1, vals, NULL, NULL, PGRES_TUPLES_OK, 1, err,
	                   errlen);
	if (r == NULL)
		goto out;
	if (PQntuples(r) == 0) {
		rv = 0;
		goto out;
	}
	if (PQgetlength(r, 0, 0) != BINDING_LEN) {
		sg_seterr(err, errlen, "PostgreSQL store: the token binding of site %s is malformed",
		          vals[0]);
		goto out;
	}
	v = (const uint8_t *)PQgetvalue(r, 0, 0);
	memcpy(b->serial, v, 19);
	memcpy(b->certs, v + 20, 32);
	for (int i = 0; i < 4; i++)
		b->ncerts = b->ncerts << 8 | v[52 + i];
	{
		uint64_t t = 0;
		for (int i = 0; i < 8; i++)
			t = t << 8 | v[56 + i];
		b->since = (int64_t)t;
	}
	rv = 1;
out:
	PQclear(r);
	pthread_mutex_unlock(&st->lock);
	return rv;
}

int
gw_pg_known_keys_get(struct gw_store *st,
                     int (*fn)(void *arg, const char *uri, const uint8_t *blob, size_t len),
                     void *arg, char *err, size_t errlen)
{
	const char *vals[1] = { gw_store_site(st) };
	PGresult *r;
	int rv = -1, n;

	pthread_mutex_lock(&st->lock);
	r = gw_pg_exec_fmt(st, "SELECT substr(name, 5), value FROM site_meta WHERE site = $1 AND "
	                   "left(name, 4) = 'key:' ORDER BY name", 1, vals, NULL, NULL,
	                   PGRES_TUPLES_OK, 1, err, errlen);
	if (r == NULL)
		goto out;
	n = PQntuples(r);
	for (int i = 0; i < n; i++) {
		const char *uri = PQgetvalue(r, i, 0);
		int len = PQgetlength(r, i, 1);

		if ((size_t)PQgetlength(r, i, 0) != strlen(uri) || len <= 0) {
			sg_seterr(err, errlen, "PostgreSQL store: a known key of site %s is malformed",
			          vals[0]);
			goto out;
		}
		if (fn(arg, uri, (const uint8_t *)PQgetvalue(r, i, 1), (size_t)len) != 0) {
			sg_seterr(err, errlen, "PostgreSQL store: the known key %.200s is malformed", uri);
			goto out;
		}
	}
	rv = n;
out:
	PQclear(r);
	pthread_mutex_unlock(&st->lock);
	return rv;
}

/* Rows 'key:' || uri of the site, replaced as a whole in one transaction. */
int
gw_pg_known_keys_set(struct gw_store *st, const struct gw_store_known_key *keys, size_t n,
                     char *err, size_t errlen)
{
	char name[8 + 2048];
	const char *site = gw_store_site(st);
	const char *vals[3] = { name, NULL, site };
	int lens[3] = { 0, 0, 0 };
	const int fmts[3] = { 0, 1, 0 };
	PGresult *r;
	int rv = -1;

	if (gw_pg_tx_begin(st, err, errlen) < 0)
		return -1;
	r = gw_pg_exec(st, "DELETE FROM site_meta WHERE site = $1 AND left(name, 4) = 'key:'", 1,
	               &site, NULL, NULL, PGRES_COMMAND_OK, err, errlen);
	if (r == NULL)
		goto out;
	PQclear(r);
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
		r = gw_pg_exec(st, "INSERT INTO site_meta (site, name, value) VALUES ($3, $1, $2)", 3,
		               vals, lens, fmts, PGRES_COMMAND_OK, err, errlen);
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
	gw_store_attempt_settle(row, outcome, max, lockout_s, lockout_cap, now);
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

/* ---- sites (store.h) ----
 *
 * A handle serves one site; a group of sites shares the database. The
 * claim of a site is a session-level advisory lock on a key made from its
 * name: the server holds it as long as this connection lives, whichever
 * process asks next, and frees it when the connection ends (a close, a
 * crash, a lost connection). */


int
gw_pg_set_site(struct gw_store *st, const char *site, char *err, size_t errlen)
{
	int rv = 0;

	/* store.c has checked the name; any valid one may share the store.
	 * The claim is of the site it was taken for. */
	pthread_mutex_lock(&st->lock);
	if (st->claimed && strcmp(site, gw_store_site(st)) != 0) {
		sg_seterr(err, errlen, "PostgreSQL store: site %s is claimed by this store; it "
		          "cannot serve %s", gw_store_site(st), site);
		rv = -1;
	}
	pthread_mutex_unlock(&st->lock);
	return rv;
}

int
gw_pg_claim_locked(struct gw_store *st, char *err, size_t errlen)
{
	const char *site = gw_store_site(st);
	const char *vals[1] = { site };
	char who[200] = "";
	PGresult *r;

	r = gw_pg_exec(st, "SELECT pg_try_advisory_lock(" SITE_KEY_SQL ")", 1, vals, NULL, NULL,
	               PGRES_TUPLES_OK, err, errlen);
	if (r == NULL)
		return -1;
	if (PQntuples(r) == 1 && strcmp(PQgetvalue(r, 0, 0), "t") == 0) {
		PQclear(r);
		return 0;
	}
	PQclear(r);
	/* Who holds it, to say where to look: its application name and
	 * address as the server shows them to this role (never a query or
	 * a password); nothing when the server will not say. */
	r = gw_pg_exec(st, "SELECT a.pid, coalesce(a.application_name, ''), "
	               "  coalesce(host(a.client_addr), 'a local socket') "
	               "FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
	               "WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 AND "
	               "  ((l.classid::bigint << 32) | l.objid::bigint) = " SITE_KEY_SQL
	               " LIMIT 1", 1, vals, NULL, NULL, PGRES_TUPLES_OK, NULL, 0);
	if (r != NULL && PQntuples(r) == 1)
		snprintf(who, sizeof(who), " (application_name '%.64s' from %.64s, server pid %.12s)",
		         PQgetvalue(r, 0, 1), PQgetvalue(r, 0, 2), PQgetvalue(r, 0, 0));
	PQclear(r);
	sg_seterr(err, errlen, "site %s is already served by another gateway%s", site, who);
	return -1;
}

int
gw_pg_site_claim(struct gw_store *st, char *err, size_t errlen)
{
	int rv = 0;

	pthread_mutex_lock(&st->lock);
	if (!st->claimed) {
		rv = gw_pg_claim_locked(st, err, errlen);
		if (rv == 0)
			st->claimed = true;
	}
	pthread_mutex_unlock(&st->lock);
	return rv;
}
