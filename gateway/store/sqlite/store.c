/*
 * The store: one SQLite database for the gateway's runtime state. Owns the
 * file (created 0600), the connection settings (WAL, synchronous=FULL), the
 * schema and its migrations, the lock and the nesting transactions, and the
 * SQL of accounts and the audit log (audit.c gets rows in, rows out, one
 * transaction a batch), and the redo log that makes an audit batch durable
 * with one small sync (redo.c; docs/audit.md, "Durability"). appstore.c
 * and authtotp.c run their own SQL through gw_store_db (sqlite_store.h);
 * the gateway reaches all of them through the table in ops.c.
 */
#include "sqlite_store.h"
#include "protocol.h"
#include "log.h"
#include "redo.h"
#include "rowimage.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#define BUSY_TIMEOUT_MS 5000
/* The WAL file is cut back to this when SQLite starts it over (see "the
 * checkpointer" below). */
#define WAL_KEEP_BYTES 8388608
#define SCAN_PAGE       512
#define STR_(x) #x
#define STR(x) STR_(x)

/*
 * Migrations, in order: migrations[v - 1] takes the schema from version
 * v - 1 to v. Never edit one that has shipped; append a new one.
 */
static const char *const migrations[] = {
	/* 1: accounts. Times are Unix seconds (UTC). */
	"CREATE TABLE accounts ("
	"  user TEXT PRIMARY KEY NOT NULL,"
	"  password_hash TEXT,"
	"  created INTEGER NOT NULL,"
	"  updated INTEGER NOT NULL,"
	"  locked_until INTEGER NOT NULL DEFAULT 0,"
	"  failed_count INTEGER NOT NULL DEFAULT 0"
	") STRICT;",

	/* 2: the audit log (docs/audit.md). seq is the rowid, so the head is
	 * one B-tree lookup. The triggers make the gateway's own connection
	 * unable to change history; someone with the file can drop them, which
	 * is what the hash chain is for. */
	"CREATE TABLE audit ("
	"  seq INTEGER PRIMARY KEY NOT NULL,"
	"  ts_ns INTEGER NOT NULL,"
	"  action TEXT, outcome TEXT, reason TEXT, actor TEXT,"
	"  uid INTEGER NOT NULL, pid INTEGER NOT NULL,"
	"  exe TEXT, host TEXT, seal TEXT,"
	"  application INTEGER NOT NULL,"
	"  doc_digest BLOB, signed_digest BLOB,"
	"  mechanism INTEGER NOT NULL,"
	"  detail TEXT,"
	"  prev_hash BLOB NOT NULL,"
	"  hash BLOB NOT NULL"
	") STRICT;"
	"CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit"
	"  BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;"
	"CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit"
	"  BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;",

	/* 3: applications, approvals and quota counters (gateway/store/sqlite/appstore.c
	 * owns their meaning and SQL). */
	"CREATE TABLE applications ("
	"  id INTEGER PRIMARY KEY AUTOINCREMENT,"
	"  applicant TEXT NOT NULL, seal TEXT NOT NULL,"
	"  document_type TEXT, business_scope TEXT, amount INTEGER, reason TEXT NOT NULL,"
	"  doc_digest BLOB, rule INTEGER NOT NULL, levels TEXT NOT NULL,"
	"  level INTEGER NOT NULL, uses_granted INTEGER NOT NULL, uses_left INTEGER NOT NULL,"
	"  created INTEGER NOT NULL, valid_until INTEGER NOT NULL, state TEXT NOT NULL,"
	"  updated INTEGER NOT NULL) STRICT;"
	"CREATE INDEX applications_by_applicant ON applications(applicant, seal, state);"
	"CREATE INDEX applications_by_state ON applications(state, seal);"
	"CREATE TABLE approvals ("
	"  application INTEGER NOT NULL REFERENCES applications(id),"
	"  level INTEGER NOT NULL, approver TEXT NOT NULL, approve INTEGER NOT NULL,"
	"  comment TEXT, at INTEGER NOT NULL,"
	"  PRIMARY KEY (application, approver)) STRICT;"
	"CREATE TABLE quota_use ("
	"  seal TEXT NOT NULL, period TEXT NOT NULL, person TEXT NOT NULL DEFAULT '',"
	"  used INTEGER NOT NULL,"
	"  PRIMARY KEY (seal, period, person)) STRICT;",

	/* 4: signed audit checkpoints (docs/audit.md, "Checkpoints") and the
	 * indexes audit queries filter by. A checkpoint covers the head at seq;
	 * one per seq. Append-only like the log itself. */
	"CREATE TABLE audit_checkpoints ("
	"  seq INTEGER PRIMARY KEY NOT NULL,"
	"  ts_ns INTEGER NOT NULL,"
	"  hash BLOB NOT NULL,"
	"  alg TEXT NOT NULL,"
	"  signature BLOB NOT NULL,"
	"  cert BLOB"
	") STRICT;"
	"CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints"
	"  BEGIN SELECT RAISE(ABORT, 'audit checkpoints are append-only'); END;"
	"CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints"
	"  BEGIN SELECT RAISE(ABORT, 'audit checkpoints are append-only'); END;"
	"CREATE INDEX audit_by_time ON audit(ts_ns);"
	"CREATE INDEX audit_by_seal ON audit(seal, ts_ns);"
	"CREATE INDEX audit_by_actor ON audit(actor, ts_ns);"
	"CREATE INDEX audit_by_application ON audit(application);"
	"CREATE INDEX audit_by_doc_digest ON audit(doc_digest);"
	"CREATE INDEX audit_by_signed_digest ON audit(signed_digest);",

	/* 5: more than one checkpoint may name the same seq (a log cut back
	 * and grown again must not lose the checkpoint that proves the cut),
	 * so checkpoints get their own id. */
	"CREATE TABLE audit_checkpoints_new ("
	"  id INTEGER PRIMARY KEY AUTOINCREMENT,"
	"  seq INTEGER NOT NULL,"
	"  ts_ns INTEGER NOT NULL,"
	"  hash BLOB NOT NULL,"
	"  alg TEXT NOT NULL,"
	"  signature BLOB NOT NULL,"
	"  cert BLOB"
	") STRICT;"
	"INSERT INTO audit_checkpoints_new (seq, ts_ns, hash, alg, signature, cert)"
	"  SELECT seq, ts_ns, hash, alg, signature, cert FROM audit_checkpoints ORDER BY seq;"
	"DROP TABLE audit_checkpoints;"
	"ALTER TABLE audit_checkpoints_new RENAME TO audit_checkpoints;"
	"CREATE INDEX audit_checkpoints_by_seq ON audit_checkpoints(seq, id);"
	"CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints"
	"  BEGIN SELECT RAISE(ABORT, 'audit checkpoints are append-only'); END;"
	"CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints"
	"  BEGIN SELECT RAISE(ABORT, 'audit checkpoints are append-only'); END;",
	/* 6: most records name no application and no document: index only
	 * those that do, so an ordinary record writes two index pages less. */
	"DROP INDEX audit_by_application;"
	"DROP INDEX audit_by_doc_digest;"
	"CREATE INDEX audit_by_application ON audit(application) WHERE application != 0;"
	"CREATE INDEX audit_by_doc_digest ON audit(doc_digest) WHERE doc_digest IS NOT NULL;",
	/* 7: a random id for this store: its redo log's frames carry it, so
	 * a log left beside a store made anew is never replayed into it. */
	"CREATE TABLE store_meta ("
	"  name TEXT PRIMARY KEY NOT NULL,"
	"  value BLOB NOT NULL) STRICT;"
	"INSERT INTO store_meta (name, value) VALUES ('id', randomblob(16));",
	/* 8: the checkpoint chain (docs/audit.md, "Checkpoints"): a checkpoint
	 * signs the id and hash of the one before it. NULL: a checkpoint made
	 * before the chain. */
	"ALTER TABLE audit_checkpoints ADD COLUMN prev_id INTEGER;"
	"ALTER TABLE audit_checkpoints ADD COLUMN prev_hash BLOB;",
};

_Static_assert(sizeof(migrations) / sizeof(migrations[0]) == GW_STORE_SCHEMA_LATEST,
               "GW_STORE_SCHEMA_LATEST must equal the number of migrations");

#define AUDIT_COLS "seq, ts_ns, action, outcome, reason, actor, uid, pid, exe, host, " \
                   "seal, application, doc_digest, signed_digest, mechanism, detail, "  \
                   "prev_hash, hash"

#define TX_DEPTH_MAX 32

#define STMT_CACHE_MAX 64
#define MARKS_MAX 16

struct gw_store {
	struct gw_store_head head;   /* first: the table of calls (backend.h) */
	sqlite3 *db;
	pthread_mutex_t lock;       /* recursive: see store.h */
	/* Nesting transactions; changed only by the thread holding lock. */
	unsigned tx_depth;
	bool tx_outer[TX_DEPTH_MAX];   /* level i began with BEGIN (not SAVEPOINT) */
	sqlite3_stmt *pw_get, *pw_set;
	sqlite3_stmt *audit_insert, *audit_head, *audit_page;
	sqlite3_stmt *cp_insert, *cp_page;
	sqlite3_stmt *begin, *commit, *rollback;
	/* Statements of other parts (gw_store_cached), keyed by their SQL
	 * text's address: parsed once, not once per signature. */
	struct cached_stmt { const char *sql; sqlite3_stmt *stmt; } cache[STMT_CACHE_MAX];
	size_t n_cache;
	int (*commit_hook)(void *);
	void *commit_hook_ctx;
	/* The redo log (NULL: every commit syncs the WAL itself) and the
	 * open audit batch (gw_store_batch_*), under lock. */
	struct gw_redo *redo;
	struct gw_rowimage *rows;   /* what the open batch changed */
	bool batch_fast;            /* this batch's COMMIT does not sync */
	bool batch_writer;          /* this instance writes batches */
	/* The writer's checkpointer: copies the WAL into the database on
	 * its own connection and thread, so the audit writer never stalls
	 * for it (ckpt_lock guards the rest). */
	pthread_t ckpt_thread;
	bool ckpt_started, ckpt_due, ckpt_stop;
	uint64_t wal_restarts;      /* the writer's own checkpoints (under lock) */
	pthread_mutex_t ckpt_lock;
	pthread_cond_t ckpt_cond;
	char *path;
	bool img_ok;                /* the batch's row images were read */
	const void *img;            /* ...here (owned by rows) */
	size_t img_len;
	sqlite3_stmt *sync_normal, *sync_full;
	struct gw_store_redo_stats redo_stats;
	/* Frames go to the redo log in the order their batches committed,
	 * though the audit writer may commit the next batch while one is
	 * being appended (audit.c's two stages): a batch takes frame_next
	 * (under lock) as it commits and appends when frame_turn (under
	 * frame_lock) is its number. Only the turn's holder changes redo. */
	uint64_t frame_next, frame_turn;
	pthread_mutex_t frame_lock;
	pthread_cond_t frame_cond;
	/* gw_store_mark_*: what other parts set up in this store (under lock). */
	const void *marks[MARKS_MAX];
	size_t n_marks;
	/* gw_store_site_claim: an exclusive flock on PATH.site-lock, held
	 * until close (claim_fd valid only when claimed). */
	bool claimed;
	int claim_fd;
};


static int64_t
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec;
}

static int
exec_sql(struct gw_store *st, const char *sql, char *err, size_t errlen)
{
	char *msg = NULL;

	if (sqlite3_exec(st->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
		sg_seterr(err, errlen, "%s", msg ? msg : sqlite3_errmsg(st->db));
		sqlite3_free(msg);
		return -1;
	}
	return 0;
}

/* Runs a prepared no-row statement (BEGIN, COMMIT, ROLLBACK). */
static int
step_done(struct gw_store *st, sqlite3_stmt *s, char *err, size_t errlen)
{
	int rc = sqlite3_step(s);

	sqlite3_reset(s);
	if (rc != SQLITE_DONE) {
		sg_seterr(err, errlen, "%s: %s", sqlite3_sql(s), sqlite3_errmsg(st->db));
		return -1;
	}
	return 0;
}

/* Creates the file 0600 ourselves (SQLite would use the umask) and refuses
 * anything that is not a regular file of ours. SQLite gives the -wal and
 * -shm files the database file's mode. */
static int
prepare_file(const char *path, char *err, size_t errlen)
{
	struct stat sb;
	int fd, rv = -1;

	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		sg_seterr(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	if (fstat(fd, &sb) != 0) {
		sg_seterr(err, errlen, "%s: %s", path, strerror(errno));
		goto out;
	}
	if (!S_ISREG(sb.st_mode)) {
		sg_seterr(err, errlen, "%s is not a regular file", path);
		goto out;
	}
	if (sb.st_uid != geteuid()) {
		sg_seterr(err, errlen, "%s belongs to uid %lu, not to the gateway's uid %lu", path,
		       (unsigned long)sb.st_uid, (unsigned long)geteuid());
		goto out;
	}
	if ((sb.st_mode & 0777) != 0600) {
		gw_log_warn("%s had mode %04o; setting 0600", path, (unsigned)(sb.st_mode & 07777));
		if (fchmod(fd, 0600) != 0) {
			sg_seterr(err, errlen, "chmod 0600 %s: %s", path, strerror(errno));
			goto out;
		}
	}
	rv = 0;
out:
	/* Closed before SQLite opens the file: closing any descriptor of a
	 * file drops all of this process's POSIX locks on it. */
	close(fd);
	return rv;
}

static int
schema_version_locked(struct gw_store *st)
{
	sqlite3_stmt *s = NULL;
	int v = -1;

	if (sqlite3_prepare_v2(st->db, "SELECT COALESCE(MAX(version), 0) FROM schema_version",
	                       -1, &s, NULL) == SQLITE_OK &&
	    sqlite3_step(s) == SQLITE_ROW)
		v = sqlite3_column_int(s, 0);
	sqlite3_finalize(s);
	return v;
}

/* Brings the schema to version upto in one transaction: a crash mid-way
 * leaves the old schema. */
static int
migrate(struct gw_store *st, int upto, char *err, size_t errlen)
{
	sqlite3_stmt *ins = NULL;
	int cur, v, rv = -1;
	char e[256];

	if (exec_sql(st, "BEGIN IMMEDIATE", err, errlen))
		return -1;
	if (exec_sql(st, "CREATE TABLE IF NOT EXISTS schema_version ("
	                 " version INTEGER PRIMARY KEY NOT NULL,"
	                 " applied INTEGER NOT NULL) STRICT", err, errlen))
		goto out;
	cur = schema_version_locked(st);
	if (cur < 0) {
		sg_seterr(err, errlen, "reading the schema version: %s", sqlite3_errmsg(st->db));
		goto out;
	}
	if (cur > GW_STORE_SCHEMA_LATEST) {
		sg_seterr(err, errlen, "the database has schema version %d; this sealgated knows up to %d",
		       cur, GW_STORE_SCHEMA_LATEST);
		goto out;
	}
	if (sqlite3_prepare_v2(st->db, "INSERT INTO schema_version (version, applied) VALUES (?, ?)",
	                       -1, &ins, NULL) != SQLITE_OK) {
		sg_seterr(err, errlen, "%s", sqlite3_errmsg(st->db));
		goto out;
	}
	for (v = cur + 1; v <= upto; v++) {
		if (exec_sql(st, migrations[v - 1], e, sizeof(e))) {
			sg_seterr(err, errlen, "schema migration %d: %s", v, e);
			goto out;
		}
		sqlite3_bind_int(ins, 1, v);
		sqlite3_bind_int64(ins, 2, now_s());
		if (sqlite3_step(ins) != SQLITE_DONE) {
			sg_seterr(err, errlen, "schema migration %d: %s", v, sqlite3_errmsg(st->db));
			goto out;
		}
		sqlite3_reset(ins);
		gw_log_info("store schema migrated to version %d", v);
	}
	if (exec_sql(st, "COMMIT", err, errlen))
		goto out;
	rv = 0;
out:
	sqlite3_finalize(ins);
	if (rv != 0)
		sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
	return rv;
}

static int
prepare(struct gw_store *st, sqlite3_stmt **s, const char *sql, char *err, size_t errlen)
{
	if (sqlite3_prepare_v3(st->db, sql, -1, SQLITE_PREPARE_PERSISTENT, s, NULL) != SQLITE_OK) {
		sg_seterr(err, errlen, "preparing '%s': %s", sql, sqlite3_errmsg(st->db));
		return -1;
	}
	return 0;
}

static int redo_setup(struct gw_store *st, const char *path, char *err, size_t errlen);
static void wal_shrink(struct gw_store *st);
static int wal_sync(struct gw_store *st, char *err, size_t errlen);
static void ckpt_stop(struct gw_store *st);

static int
commit_hook_cb(void *arg)
{
	struct gw_store *st = arg;

	return st->commit_hook ? st->commit_hook(st->commit_hook_ctx) : 0;
}

int
gw_store_open_version(const char *path, int upto, struct gw_store **out,
                      char *err, size_t errlen)
{
	struct gw_store *st = NULL;
	sqlite3_stmt *s = NULL;
	int rv = -1;
	const char *mode;

	*out = NULL;
	if (upto <= 0 || upto > GW_STORE_SCHEMA_LATEST)
		upto = GW_STORE_SCHEMA_LATEST;
	if (!path || !*path) {
		sg_seterr(err, errlen, "no store path");
		return -1;
	}
	if (prepare_file(path, err, errlen))
		return -1;
	st = calloc(1, sizeof(*st));
	if (!st) {
		sg_seterr(err, errlen, "out of memory");
		return -1;
	}
	/* Before any call below: even the cleanup goes through the table. */
	st->head.ops = &gw_store_sqlite_ops;
	{
		pthread_mutexattr_t ma;

		pthread_mutexattr_init(&ma);
		pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_RECURSIVE);
		pthread_mutex_init(&st->lock, &ma);
		pthread_mutexattr_destroy(&ma);
	}
	pthread_mutex_init(&st->ckpt_lock, NULL);
	pthread_cond_init(&st->ckpt_cond, NULL);
	pthread_mutex_init(&st->frame_lock, NULL);
	pthread_cond_init(&st->frame_cond, NULL);
	st->path = strdup(path);
	if (!st->path) {
		sg_seterr(err, errlen, "out of memory");
		goto out;
	}
	if (sqlite3_open_v2(path, &st->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_FULLMUTEX |
	                    SQLITE_OPEN_NOFOLLOW, NULL) != SQLITE_OK) {
		sg_seterr(err, errlen, "%s: %s", path, st->db ? sqlite3_errmsg(st->db) : "cannot open");
		goto out;
	}
	sqlite3_extended_result_codes(st->db, 1);
	sqlite3_busy_timeout(st->db, BUSY_TIMEOUT_MS);
	/* WAL + synchronous=FULL: a COMMIT that returned is on disk (the WAL
	 * is fsync'd at every commit). trusted_schema=OFF: the file is data,
	 * never code. */
	if (sqlite3_prepare_v2(st->db, "PRAGMA journal_mode=WAL", -1, &s, NULL) != SQLITE_OK ||
	    sqlite3_step(s) != SQLITE_ROW) {
		sg_seterr(err, errlen, "%s: %s", path, sqlite3_errmsg(st->db));
		goto out;
	}
	mode = (const char *)sqlite3_column_text(s, 0);
	if (!mode || strcmp(mode, "wal") != 0) {
		sg_seterr(err, errlen, "%s: cannot switch to WAL (journal_mode is %s)", path,
		       mode ? mode : "unknown");
		goto out;
	}
	sqlite3_finalize(s);   /* a statement left mid-step would block COMMIT */
	s = NULL;
	if (exec_sql(st, "PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON; PRAGMA cache_size=-8192; "
	                 "PRAGMA trusted_schema=OFF; "
	                 "PRAGMA journal_size_limit=" STR(WAL_KEEP_BYTES) ";", err, errlen))
		goto out;
	if (migrate(st, upto, err, errlen))
		goto out;

	if (prepare(st, &st->begin, "BEGIN IMMEDIATE", err, errlen) ||
	    prepare(st, &st->commit, "COMMIT", err, errlen) ||
	    prepare(st, &st->rollback, "ROLLBACK", err, errlen) ||
	    prepare(st, &st->pw_get, "SELECT password_hash FROM accounts WHERE user = ?", err, errlen) ||
	    prepare(st, &st->pw_set,
	            "INSERT INTO accounts (user, password_hash, created, updated) VALUES (?1, ?2, ?3, ?3)"
	            " ON CONFLICT (user) DO UPDATE SET password_hash = excluded.password_hash,"
	            " updated = excluded.updated", err, errlen))
		goto out;
	if (upto >= 2 &&
	    (prepare(st, &st->audit_insert, "INSERT INTO audit (" AUDIT_COLS ") VALUES "
	             "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", err, errlen) ||
	     prepare(st, &st->audit_head, "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1",
	             err, errlen) ||
	     prepare(st, &st->audit_page, "SELECT " AUDIT_COLS " FROM audit WHERE seq > ?"
	             " ORDER BY seq LIMIT " STR(SCAN_PAGE), err, errlen)))
		goto out;
	if (upto >= 8 &&
	    (prepare(st, &st->cp_insert, "INSERT INTO audit_checkpoints"
	             " (id, seq, ts_ns, hash, alg, signature, cert, prev_id, prev_hash)"
	             " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", err, errlen) ||
	     prepare(st, &st->cp_page, "SELECT seq, ts_ns, hash, alg, signature, cert, id,"
	             " prev_id, prev_hash"
	             " FROM audit_checkpoints WHERE (seq, id) > (?1, ?2) AND seq <= ?3"
	             " ORDER BY seq, id LIMIT " STR(SCAN_PAGE), err, errlen)))
		goto out;
	/* (A store opened at an older schema, by the migration tests.) */
	if (upto >= 5 && upto < 8 &&
	    (prepare(st, &st->cp_insert, "INSERT INTO audit_checkpoints"
	             " (id, seq, ts_ns, hash, alg, signature, cert) VALUES (?, ?, ?, ?, ?, ?, ?)",
	             err, errlen) ||
	     prepare(st, &st->cp_page, "SELECT seq, ts_ns, hash, alg, signature, cert, id,"
	             " NULL, NULL"
	             " FROM audit_checkpoints WHERE (seq, id) > (?1, ?2) AND seq <= ?3"
	             " ORDER BY seq, id LIMIT " STR(SCAN_PAGE), err, errlen)))
		goto out;
	sqlite3_commit_hook(st->db, commit_hook_cb, st);
	if (upto >= 7 && redo_setup(st, path, err, errlen) != 0)
		goto out;
	wal_shrink(st);

	*out = st;
	st = NULL;
	rv = 0;
out:
	sqlite3_finalize(s);
	gw_store_close(&st);
	return rv;
}

int
gw_store_open(const char *path, struct gw_store **out, char *err, size_t errlen)
{
	return gw_store_open_version(path, 0, out, err, errlen);
}

void
gw_sqlite_close(struct gw_store **stp)
{
	struct gw_store *st = stp ? *stp : NULL;

	if (!st)
		return;
	ckpt_stop(st);
	sqlite3_finalize(st->pw_get);
	sqlite3_finalize(st->pw_set);
	sqlite3_finalize(st->audit_insert);
	sqlite3_finalize(st->audit_head);
	sqlite3_finalize(st->audit_page);
	sqlite3_finalize(st->cp_insert);
	sqlite3_finalize(st->cp_page);
	sqlite3_finalize(st->begin);
	sqlite3_finalize(st->commit);
	sqlite3_finalize(st->rollback);
	sqlite3_finalize(st->sync_normal);
	sqlite3_finalize(st->sync_full);
	gw_rowimage_free(&st->rows);
	/* The writer's clean close: the store is made durable, then its
	 * redo log emptied. Another process's (sealgated --verify beside a
	 * running gateway) never touches the log it did not write. */
	if (st->redo && st->batch_writer) {
		char e[256];
		if (wal_sync(st, e, sizeof(e)) != 0 || gw_redo_clear(st->redo) != 0)
			gw_log_warn("store: the redo log was not emptied at close (replayed at the next open)");
	}
	gw_redo_close(&st->redo);
	for (size_t i = 0; i < st->n_cache; i++)
		sqlite3_finalize(st->cache[i].stmt);
	if (st->db && sqlite3_close(st->db) != SQLITE_OK)
		gw_log_error("closing the store: %s", sqlite3_errmsg(st->db));
	pthread_mutex_destroy(&st->lock);
	pthread_mutex_destroy(&st->ckpt_lock);
	pthread_cond_destroy(&st->ckpt_cond);
	pthread_mutex_destroy(&st->frame_lock);
	pthread_cond_destroy(&st->frame_cond);
	if (st->claimed)
		close(st->claim_fd);   /* (after the database: the claim covers its last writes) */
	free(st->path);
	free(st);
	*stp = NULL;
}

sqlite3_stmt *
gw_store_cached(struct gw_store *st, const char *sql)
{
	sqlite3_stmt *stmt = NULL;

	for (size_t i = 0; i < st->n_cache; i++) {
		if (st->cache[i].sql == sql) {
			sqlite3_reset(st->cache[i].stmt);
			sqlite3_clear_bindings(st->cache[i].stmt);
			return st->cache[i].stmt;
		}
	}
	if (sqlite3_prepare_v3(st->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &stmt, NULL) != SQLITE_OK)
		return NULL;
	if (st->n_cache < STMT_CACHE_MAX)
		st->cache[st->n_cache++] = (struct cached_stmt){ .sql = sql, .stmt = stmt };
	else
		gw_log_warn("store: statement cache full; not caching");
	return stmt;
}

bool
gw_sqlite_mark_test(struct gw_store *st, const void *key)
{
	bool found = false;

	pthread_mutex_lock(&st->lock);
	for (size_t i = 0; i < st->n_marks && !found; i++)
		found = st->marks[i] == key;
	pthread_mutex_unlock(&st->lock);
	return found;
}

void
gw_sqlite_mark_set(struct gw_store *st, const void *key)
{
	pthread_mutex_lock(&st->lock);
	if (!gw_store_mark_test(st, key)) {
		if (st->n_marks < MARKS_MAX)
			st->marks[st->n_marks++] = key;
		else
			gw_log_warn("store: too many marks; the setup runs again next time");
	}
	pthread_mutex_unlock(&st->lock);
}

int
gw_sqlite_schema_version(struct gw_store *st)
{
	int v;

	pthread_mutex_lock(&st->lock);
	v = schema_version_locked(st);
	pthread_mutex_unlock(&st->lock);
	return v;
}

struct sqlite3 *
gw_store_db(struct gw_store *st)
{
	return st->db;
}

void
gw_store_lock(struct gw_store *st)
{
	pthread_mutex_lock(&st->lock);
}

void
gw_store_unlock(struct gw_store *st)
{
	pthread_mutex_unlock(&st->lock);
}

/* ---- nesting transactions ---- */

int
gw_sqlite_tx_begin(struct gw_store *st, char *err, size_t errlen)
{
	char sql[48];
	bool outer;

	pthread_mutex_lock(&st->lock);
	if (st->tx_depth >= TX_DEPTH_MAX) {
		sg_seterr(err, errlen, "transactions nested too deep");
		goto fail;
	}
	/* Outermost only when SQLite agrees no transaction is open: a caller
	 * that ran a raw BEGIN gets savepoints inside it. */
	outer = st->tx_depth == 0 && sqlite3_get_autocommit(st->db);
	if (outer) {
		if (step_done(st, st->begin, err, errlen))
			goto fail;
	} else {
		snprintf(sql, sizeof(sql), "SAVEPOINT sg_tx_%u", st->tx_depth);
		if (exec_sql(st, sql, err, errlen))
			goto fail;
	}
	st->tx_outer[st->tx_depth++] = outer;
	return 0;   /* the lock stays held until commit or rollback */
fail:
	pthread_mutex_unlock(&st->lock);
	return -1;
}

/* Ends the innermost level: RELEASE/COMMIT when commit, else undo. */
static int
tx_end(struct gw_store *st, bool commit, char *err, size_t errlen)
{
	char sql[80];
	unsigned d;
	int rv = 0;

	if (st->tx_depth == 0) {
		sg_seterr(err, errlen, "no transaction to end");
		return -1;
	}
	d = --st->tx_depth;
	if (st->tx_outer[d]) {
		if (commit && step_done(st, st->commit, err, errlen) != 0)
			rv = -1;
		/* A failed COMMIT may already have rolled back (SQLITE_FULL, the
		 * commit hook); ROLLBACK then is not needed. */
		if ((!commit || rv != 0) && !sqlite3_get_autocommit(st->db))
			step_done(st, st->rollback, NULL, 0);
	} else if (sqlite3_get_autocommit(st->db)) {
		/* SQLite rolled the whole transaction back under us (SQLITE_FULL
		 * and friends): the savepoint is gone with it. */
		if (commit) {
			sg_seterr(err, errlen, "the transaction was rolled back by the store: %s",
			       sqlite3_errmsg(st->db));
			rv = -1;
		}
	} else if (commit) {
		snprintf(sql, sizeof(sql), "RELEASE sg_tx_%u", d);
		rv = exec_sql(st, sql, err, errlen);
	} else {
		snprintf(sql, sizeof(sql), "ROLLBACK TO sg_tx_%u; RELEASE sg_tx_%u", d, d);
		exec_sql(st, sql, NULL, 0);
	}
	pthread_mutex_unlock(&st->lock);
	return rv;
}

int
gw_sqlite_tx_commit(struct gw_store *st, char *err, size_t errlen)
{
	int rv;

	pthread_mutex_lock(&st->lock);   /* (recursive: for the depth check) */
	rv = tx_end(st, true, err, errlen);
	pthread_mutex_unlock(&st->lock);
	return rv;
}

void
gw_sqlite_tx_rollback(struct gw_store *st)
{
	pthread_mutex_lock(&st->lock);
	tx_end(st, false, NULL, 0);
	pthread_mutex_unlock(&st->lock);
}

bool
gw_sqlite_tx_alive(struct gw_store *st)
{
	bool alive;

	pthread_mutex_lock(&st->lock);
	alive = !sqlite3_get_autocommit(st->db);
	pthread_mutex_unlock(&st->lock);
	return alive;
}

void
gw_store_test_set_commit_hook(struct gw_store *st, int (*fn)(void *), void *ctx)
{
	pthread_mutex_lock(&st->lock);
	st->commit_hook = fn;
	st->commit_hook_ctx = ctx;
	pthread_mutex_unlock(&st->lock);
}

/* ---- the redo log (docs/audit.md, "Durability") ----
 *
 * An audit batch commits with synchronous=NORMAL (its WAL frames are
 * written, not synced), and its changes, as the images of the rows it
 * touched (rowimage.c),
 * go to the redo log with one small write and one fdatasync: that sync is
 * what makes the batch durable before its callers go on. A power loss can
 * cost the store its last unsynced transactions, never a prefix of them;
 * at open the store replays the redo frames past its own last audit seq.
 * Everything that is not an audit batch still commits with a sync. */

/* fdatasync of the WAL: every transaction committed so far is durable. */
static int
wal_sync(struct gw_store *st, char *err, size_t errlen)
{
	sqlite3_file *f = NULL;
	int rc;

	if (sqlite3_file_control(st->db, "main", SQLITE_FCNTL_JOURNAL_POINTER, &f) != SQLITE_OK ||
	    f == NULL || f->pMethods == NULL)
		return 0;   /* no WAL open: this connection wrote nothing through it */
	rc = f->pMethods->xSync(f, SQLITE_SYNC_NORMAL);
	if (rc != SQLITE_OK) {
		sg_seterr(err, errlen, "syncing the store's WAL: %s", sqlite3_errstr(rc));
		return -1;
	}
	st->redo_stats.store_syncs++;
	return 0;
}

struct replay {
	sqlite3 *db;
	uint64_t cur, from;
	unsigned frames;
	char why[300];
};

static int
replay_frame(void *ctx, uint64_t first, uint64_t last, const void *data, size_t len)
{
	struct replay *rp = ctx;

	if (last <= rp->cur)
		return 0;   /* the store has it */
	if (first != rp->cur + 1) {
		snprintf(rp->why, sizeof(rp->why),
		         "the redo log holds seq %llu..%llu but the store ends at seq %llu "
		         "(a store put back from a backup? move the .redo file aside)",
		         (unsigned long long)first, (unsigned long long)last,
		         (unsigned long long)rp->cur);
		return -1;
	}
	if (gw_rowimage_apply(rp->db, data, len, rp->why, sizeof(rp->why)) != 0)
		return -1;
	if (rp->frames++ == 0)
		rp->from = first;
	rp->cur = last;
	return 0;
}

/* Replays what the store lost (a power failure after a batch's redo frame
 * was synced but before its WAL frames were), inside one write
 * transaction, so a gateway running beside us cannot be mid-batch; then
 * syncs the WAL (a killed predecessor's last commits may be in the page
 * cache only) and starts the log over. */
static int
redo_recover(struct gw_store *st, const char *rpath, char *err, size_t errlen)
{
	struct replay rp = { .db = st->db };
	sqlite3_stmt *s = NULL;
	char e[256] = "";
	int rv = -1;

	/* Rows come back in table order: references are checked at COMMIT. */
	if (exec_sql(st, "BEGIN IMMEDIATE; PRAGMA defer_foreign_keys=ON", err, errlen))
		return -1;
	if (sqlite3_prepare_v2(st->db, "SELECT COALESCE(MAX(seq), 0) FROM audit", -1, &s,
	                       NULL) != SQLITE_OK || sqlite3_step(s) != SQLITE_ROW) {
		sg_seterr(err, errlen, "reading the audit head: %s", sqlite3_errmsg(st->db));
		goto out;
	}
	rp.cur = (uint64_t)sqlite3_column_int64(s, 0);
	if (gw_redo_scan(st->redo, replay_frame, &rp, e, sizeof(e)) != 0) {
		sg_seterr(err, errlen, "%s: cannot replay it into the store: %s", rpath,
		       rp.why[0] ? rp.why : e);
		goto out;
	}
	if (exec_sql(st, "COMMIT", err, errlen))
		goto out;
	if (rp.frames > 0)
		gw_log_warn("store: replayed %u batch(es) of audit records seq %llu..%llu from %s "
		            "that the store had lost (a power failure?)", rp.frames,
		            (unsigned long long)rp.from, (unsigned long long)rp.cur, rpath);
	st->redo_stats.replayed_frames = rp.frames;
	if (wal_sync(st, err, errlen))
		goto out;
	gw_redo_reset(st->redo);
	rv = 0;
out:
	sqlite3_finalize(s);
	if (rv != 0 && !sqlite3_get_autocommit(st->db))
		sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
	return rv;
}

static int
redo_setup(struct gw_store *st, const char *path, char *err, size_t errlen)
{
	char rpath[PATH_MAX];
	uint8_t id[GW_REDO_ID_LEN];
	sqlite3_stmt *s = NULL;
	struct stat sb;
	char e[300] = "";
	int ok;

	if (!sqlite3_compileoption_used("ENABLE_PREUPDATE_HOOK")) {
		gw_log_info("store: this SQLite has no preupdate hook; every commit syncs");
		return 0;
	}
	if (gw_rowimage_new(&st->rows) != 0) {
		sg_seterr(err, errlen, "out of memory");
		return -1;
	}
	if ((size_t)snprintf(rpath, sizeof(rpath), "%s.redo", path) >= sizeof(rpath)) {
		sg_seterr(err, errlen, "store path too long");
		return -1;
	}
	ok = sqlite3_prepare_v2(st->db, "SELECT value FROM store_meta WHERE name = 'id'", -1, &s,
	                        NULL) == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW &&
	     sqlite3_column_bytes(s, 0) == (int)sizeof(id);
	if (ok)
		memcpy(id, sqlite3_column_blob(s, 0), sizeof(id));
	sqlite3_finalize(s);
	if (!ok) {
		sg_seterr(err, errlen, "the store has no id (store_meta): %s", sqlite3_errmsg(st->db));
		return -1;
	}
	if (gw_redo_open(rpath, id, true, &st->redo, e, sizeof(e)) != 0) {
		/* A log that exists may hold records: never go on without it. A
		 * log we cannot make (a full disk) only costs speed. */
		if (lstat(rpath, &sb) == 0) {
			sg_seterr(err, errlen, "redo log: %s", e);
			return -1;
		}
		gw_log_warn("store: no redo log (%s); every commit syncs", e);
		return 0;
	}
	if (redo_recover(st, rpath, err, errlen) != 0 ||
	    prepare(st, &st->sync_normal, "PRAGMA synchronous=NORMAL", err, errlen) ||
	    prepare(st, &st->sync_full, "PRAGMA synchronous=FULL", err, errlen))
		return -1;
	return 0;
}

/* ---- the checkpointer ----
 *
 * SQLite's automatic checkpoint runs inside the COMMIT that crosses 1000
 * WAL pages: that signer waits for the copy and two syncs. The writer's
 * store checkpoints on a second connection instead, woken by the WAL hook
 * (PASSIVE: it never blocks the writer, and copies what it can).
 *
 * Copying is not enough to bound the WAL: SQLite starts the WAL over only
 * when a write transaction begins while every frame has been copied, and
 * under a signing storm the next batch has always begun before the
 * checkpointer's copy ends, so the file grew by every batch forever
 * (docs/operations.md, "Disk use"). So when the WAL passes
 * CKPT_RESTART_PAGES the writer's own connection, between two of its
 * transactions, copies the few frames the checkpointer has not yet copied
 * (and syncs): the next batch then starts the WAL over, and
 * journal_size_limit cuts the file back to WAL_KEEP_BYTES. */

#define CKPT_PAGES 1000
#define CKPT_RESTART_PAGES 2000
/* At open, a WAL larger than this (left by a sealgated that never
 * checkpointed, or by a crash mid-storm) is checkpointed and truncated. */
#define WAL_SHRINK_BYTES (16 << 20)

static void *
ckpt_main(void *arg)
{
	struct gw_store *st = arg;
	sqlite3 *db = NULL;

	pthread_setname_np(pthread_self(), "sg-walckpt");   /* ps -L, top -H, gdb */

	if (sqlite3_open_v2(st->path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOFOLLOW, NULL) != SQLITE_OK) {
		gw_log_error("store: the checkpointer cannot open %s: %s", st->path,
		             db ? sqlite3_errmsg(db) : "no memory");
		sqlite3_close(db);
		return NULL;
	}
	sqlite3_busy_timeout(db, BUSY_TIMEOUT_MS);
	/* A connection that has never read the database has not opened its
	 * WAL either: SQLite 3.40's checkpoint on it returns SQLITE_OK and
	 * copies nothing (the WAL of a busy gateway grew without bound).
	 * One read opens it for the life of the connection. */
	if (sqlite3_exec(db, "SELECT COUNT(*) FROM sqlite_schema", NULL, NULL, NULL) != SQLITE_OK)
		gw_log_warn("store: the checkpointer cannot read %s: %s", st->path, sqlite3_errmsg(db));
	pthread_mutex_lock(&st->ckpt_lock);
	for (;;) {
		while (!st->ckpt_due && !st->ckpt_stop)
			pthread_cond_wait(&st->ckpt_cond, &st->ckpt_lock);
		if (st->ckpt_stop)
			break;
		st->ckpt_due = false;
		pthread_mutex_unlock(&st->ckpt_lock);
		if (sqlite3_wal_checkpoint_v2(db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL) != SQLITE_OK &&
		    sqlite3_errcode(db) != SQLITE_BUSY)
			gw_log_warn("store: checkpoint: %s", sqlite3_errmsg(db));
		pthread_mutex_lock(&st->ckpt_lock);
	}
	pthread_mutex_unlock(&st->ckpt_lock);
	sqlite3_close(db);
	return NULL;
}

static int
wal_hook_cb(void *arg, sqlite3 *db, const char *name, int pages)
{
	struct gw_store *st = arg;

	if (pages >= CKPT_RESTART_PAGES) {
		/* Busy (the checkpointer is copying): the next commit tries again. */
		if (sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL) == SQLITE_OK)
			st->wal_restarts++;
	} else if (pages >= CKPT_PAGES) {
		pthread_mutex_lock(&st->ckpt_lock);
		st->ckpt_due = true;
		pthread_cond_signal(&st->ckpt_cond);
		pthread_mutex_unlock(&st->ckpt_lock);
	}
	return SQLITE_OK;
}

/* With the store lock held. If the thread cannot start, SQLite's own
 * automatic checkpoint stays on. */
static void
ckpt_start(struct gw_store *st)
{
	if (st->ckpt_started)
		return;
	st->ckpt_started = true;
	if (pthread_create(&st->ckpt_thread, NULL, ckpt_main, st) != 0) {
		gw_log_warn("store: no checkpointer thread; checkpoints run in commits");
		st->ckpt_started = false;
		return;
	}
	sqlite3_wal_hook(st->db, wal_hook_cb, st);   /* replaces the automatic one */
}

/* A WAL left large (by a sealgated that never checkpointed it, or a crash
 * mid-storm) stays that size on disk until it is truncated: SQLite only
 * reuses it from the start. At open nobody of ours writes yet, so one
 * TRUNCATE checkpoint gives the space back; a reader of another process
 * (sealgated --verify-audit beside a running gateway) may make it busy,
 * and then the file stays as it is until the next start. */
static void
wal_shrink(struct gw_store *st)
{
	char wal[PATH_MAX];
	struct stat sb;
	int log = 0, done = 0;

	if ((size_t)snprintf(wal, sizeof(wal), "%s-wal", st->path) >= sizeof(wal) ||
	    stat(wal, &sb) != 0 || sb.st_size <= WAL_SHRINK_BYTES)
		return;
	if (sqlite3_wal_checkpoint_v2(st->db, NULL, SQLITE_CHECKPOINT_TRUNCATE, &log, &done) != SQLITE_OK) {
		gw_log_warn("store: the WAL is %lld MiB and could not be truncated now: %s",
		            (long long)(sb.st_size >> 20), sqlite3_errmsg(st->db));
		return;
	}
	gw_log_info("store: the WAL had grown to %lld MiB; copied into the store and truncated",
	            (long long)(sb.st_size >> 20));
}

static void
ckpt_stop(struct gw_store *st)
{
	if (!st->ckpt_started)
		return;
	sqlite3_wal_autocheckpoint(st->db, CKPT_PAGES);
	pthread_mutex_lock(&st->ckpt_lock);
	st->ckpt_stop = true;
	pthread_cond_signal(&st->ckpt_cond);
	pthread_mutex_unlock(&st->ckpt_lock);
	pthread_join(st->ckpt_thread, NULL);
	st->ckpt_started = false;
}

void
gw_sqlite_batch_begin(struct gw_store *st)
{
	pthread_mutex_lock(&st->lock);
	st->batch_fast = false;
	st->batch_writer = true;
	ckpt_start(st);
	if (st->redo == NULL)
		return;
	if (step_done(st, st->sync_normal, NULL, 0) != 0)
		return;   /* this batch syncs its own COMMIT */
	gw_rowimage_start(st->rows, st->db);
	st->img_ok = false;
	st->img = NULL;
	st->img_len = 0;
	st->batch_fast = true;
}

void
gw_sqlite_batch_images(struct gw_store *st)
{
	pthread_mutex_lock(&st->lock);
	if (st->batch_fast) {
		/* Read inside the write transaction: the rows as the COMMIT
		 * will leave them, without a read transaction (and its WAL
		 * locks) per row afterwards. */
		gw_rowimage_stop(st->rows, st->db);
		st->img_ok = gw_rowimage_encode(st->rows, st->db, &st->img, &st->img_len) == 0;
	}
	pthread_mutex_unlock(&st->lock);
}

/* Waits until it is frame's turn at the redo log. */
static void
frame_turn_wait(struct gw_store *st, uint64_t frame)
{
	pthread_mutex_lock(&st->frame_lock);
	while (st->frame_turn != frame)
		pthread_cond_wait(&st->frame_cond, &st->frame_lock);
	pthread_mutex_unlock(&st->frame_lock);
}

static void
frame_turn_pass(struct gw_store *st)
{
	pthread_mutex_lock(&st->frame_lock);
	st->frame_turn++;
	pthread_cond_broadcast(&st->frame_cond);
	pthread_mutex_unlock(&st->frame_lock);
}

int
gw_sqlite_batch_durable(struct gw_store *st, uint64_t first_seq, uint64_t last_seq,
                       char *err, size_t errlen)
{
	uint8_t *img = NULL;
	size_t n = st->img_len;
	uint64_t frame;
	int r = -2, rv;
	char e[256] = "";

	if (!st->batch_fast)
		return 0;   /* its COMMIT synced */
	gw_rowimage_stop(st->rows, st->db);
	if (!gw_rowimage_touched(st->rows))
		return 0;   /* it changed nothing */
	/* The connection is back to syncing commits before anyone else may
	 * use it. */
	step_done(st, st->sync_full, NULL, 0);
	st->batch_fast = false;
	if (!(first_seq > 0 && last_seq >= first_seq && st->img_ok && n > 0) ||
	    (img = malloc(n)) == NULL)
		return wal_sync(st, err, errlen);
	/* Our own copy: the next batch's images take the rows' buffer while
	 * this frame is written. */
	memcpy(img, st->img, n);
	frame = st->frame_next++;
	/* The append runs without the store lock: the next batch's
	 * statements and readers of the store need not wait for the disk.
	 * Frames keep the order of the commits (their turn). */
	pthread_mutex_unlock(&st->lock);
	frame_turn_wait(st, frame);
	if (st->redo != NULL)
		r = gw_redo_append(st->redo, first_seq, last_seq, img, n, e, sizeof(e));
	free(img);
	pthread_mutex_lock(&st->lock);
	switch (r) {
	case 0:
		st->redo_stats.frames++;
		st->redo_stats.used = gw_redo_used(st->redo);
		rv = 0;
		break;
	case 1:
		/* The log is full: the store itself becomes durable (with
		 * every batch committed so far), and the log starts over. */
		rv = wal_sync(st, err, errlen);
		if (rv == 0) {
			gw_redo_reset(st->redo);
			st->redo_stats.rounds++;
			st->redo_stats.used = 0;
		}
		break;
	case -1:
		/* The log's tail is unknown now: a later frame after a torn one
		 * would never be replayed. Stop using it for this run. */
		gw_log_error("store: the redo log failed (%s); every commit syncs from now on", e);
		gw_redo_close(&st->redo);
		rv = wal_sync(st, err, errlen);
		break;
	default:
		/* No log any more (an earlier frame's failure closed it). */
		rv = wal_sync(st, err, errlen);
		break;
	}
	frame_turn_pass(st);
	return rv;
}

void
gw_sqlite_batch_end(struct gw_store *st)
{
	if (st->batch_fast) {
		gw_rowimage_stop(st->rows, st->db);
		step_done(st, st->sync_full, NULL, 0);
	}
	st->batch_fast = false;
	pthread_mutex_unlock(&st->lock);
}

void
gw_sqlite_release_memory(struct gw_store *st)
{
	pthread_mutex_lock(&st->lock);
	sqlite3_db_release_memory(st->db);
	pthread_mutex_unlock(&st->lock);
}

void
gw_sqlite_get_redo_stats(struct gw_store *st, struct gw_store_redo_stats *out)
{
	pthread_mutex_lock(&st->lock);
	*out = st->redo_stats;
	out->on = st->redo != NULL;
	out->wal_restarts = st->wal_restarts;
	pthread_mutex_unlock(&st->lock);
}

/* ---- accounts ---- */

int
gw_sqlite_password_get(struct gw_store *st, const char *user, char *hash, size_t hashlen)
{
	int rv = -1, rc;
	const unsigned char *h;
	int n;

	if (!user || !hash || hashlen == 0)
		return -1;
	pthread_mutex_lock(&st->lock);
	sqlite3_bind_text(st->pw_get, 1, user, -1, SQLITE_STATIC);
	rc = sqlite3_step(st->pw_get);
	if (rc == SQLITE_DONE) {
		rv = 0;
	} else if (rc == SQLITE_ROW) {
		h = sqlite3_column_text(st->pw_get, 0);
		n = sqlite3_column_bytes(st->pw_get, 0);
		if (!h) {
			rv = 0;
		} else if ((size_t)n < hashlen && strlen((const char *)h) == (size_t)n) {
			memcpy(hash, h, (size_t)n + 1);
			rv = 1;
		} else {
			gw_log_error("store: password hash of '%s' is too long or malformed", user);
		}
	} else {
		gw_log_error("store: reading the password of '%s': %s", user, sqlite3_errmsg(st->db));
	}
	sqlite3_reset(st->pw_get);
	sqlite3_clear_bindings(st->pw_get);
	pthread_mutex_unlock(&st->lock);
	return rv;
}

int
gw_sqlite_password_set(struct gw_store *st, const char *user, const char *hash)
{
	int rv = -1;

	if (!user || !*user)
		return -1;
	pthread_mutex_lock(&st->lock);
	sqlite3_bind_text(st->pw_set, 1, user, -1, SQLITE_STATIC);
	if (hash)
		sqlite3_bind_text(st->pw_set, 2, hash, -1, SQLITE_STATIC);
	else
		sqlite3_bind_null(st->pw_set, 2);
	sqlite3_bind_int64(st->pw_set, 3, now_s());
	if (sqlite3_step(st->pw_set) == SQLITE_DONE)
		rv = 0;
	else
		gw_log_error("store: setting the password of '%s': %s", user, sqlite3_errmsg(st->db));
	sqlite3_reset(st->pw_set);
	sqlite3_clear_bindings(st->pw_set);
	pthread_mutex_unlock(&st->lock);
	return rv;
}

/* ---- reading the store before it is open (the gateway, before its token) ---- */

/* Opens the store file at path read-only and prepares sql on it: 1 ready
 * (*db, *s to finalize and close), 0 nothing to read (no file yet, or a
 * store from before store_meta: migration 7), -1 with err. */
static int
peek_prepare(const char *path, const char *sql, sqlite3 **db, sqlite3_stmt **s,
             char *err, size_t errlen)
{
	struct stat sb;

	*db = NULL;
	*s = NULL;
	if (stat(path, &sb) != 0 && errno == ENOENT)
		return 0;
	if (sqlite3_open_v2(path, db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOFOLLOW, NULL) != SQLITE_OK) {
		sg_seterr(err, errlen, "%s: %s", path, *db ? sqlite3_errmsg(*db) : "cannot open");
		return -1;
	}
	sqlite3_busy_timeout(*db, 5000);
	if (sqlite3_prepare_v2(*db, sql, -1, s, NULL) == SQLITE_OK)
		return 1;
	if (strstr(sqlite3_errmsg(*db), "no such table") != NULL)
		return 0;
	sg_seterr(err, errlen, "%s: %s", path, sqlite3_errmsg(*db));
	return -1;
}

/* ---- the backend token's binding ---- */

/* One store_meta row 'token_binding': serial (20 bytes, NUL-padded) |
 * certificate set hash (32) | certificate count (u32 BE) | since (i64 BE). */
#define BINDING_LEN 64

int
gw_sqlite_binding_set(struct gw_store *st, const struct gw_store_binding *b,
                     char *err, size_t errlen)
{
	uint8_t v[BINDING_LEN] = { 0 };
	sqlite3_stmt *s = NULL;
	int rv = -1;

	memcpy(v, b->serial, strnlen(b->serial, sizeof(b->serial)));
	memcpy(v + 20, b->certs, 32);
	for (int i = 0; i < 4; i++)
		v[52 + i] = (uint8_t)(b->ncerts >> (24 - 8 * i));
	for (int i = 0; i < 8; i++)
		v[56 + i] = (uint8_t)((uint64_t)b->since >> (56 - 8 * i));
	pthread_mutex_lock(&st->lock);
	if (sqlite3_prepare_v2(st->db, "INSERT INTO store_meta (name, value) VALUES ('token_binding', ?1) "
	                       "ON CONFLICT (name) DO UPDATE SET value = excluded.value", -1, &s,
	                       NULL) != SQLITE_OK) {
		sg_seterr(err, errlen, "%s", sqlite3_errmsg(st->db));
		goto out;
	}
	sqlite3_bind_blob(s, 1, v, sizeof(v), SQLITE_STATIC);
	if (sqlite3_step(s) != SQLITE_DONE) {
		sg_seterr(err, errlen, "%s", sqlite3_errmsg(st->db));
		goto out;
	}
	rv = 0;
out:
	sqlite3_finalize(s);
	pthread_mutex_unlock(&st->lock);
	return rv;
}

int
gw_store_binding_peek(const char *path, struct gw_store_binding *b, char *err, size_t errlen)
{
	sqlite3 *db;
	sqlite3_stmt *s;
	const uint8_t *v;
	int rv, r;

	memset(b, 0, sizeof(*b));
	rv = peek_prepare(path, "SELECT value FROM store_meta WHERE name = 'token_binding'", &db, &s,
	                  err, errlen);
	if (rv != 1)
		goto out;
	rv = -1;
	r = sqlite3_step(s);
	if (r == SQLITE_DONE) {
		rv = 0;
		goto out;
	}
	if (r != SQLITE_ROW) {
		sg_seterr(err, errlen, "%s: %s", path, sqlite3_errmsg(db));
		goto out;
	}
	if (sqlite3_column_bytes(s, 0) != BINDING_LEN) {
		sg_seterr(err, errlen, "%s: the token binding is malformed", path);
		goto out;
	}
	v = sqlite3_column_blob(s, 0);
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
	sqlite3_finalize(s);
	sqlite3_close(db);
	return rv;
}

/* ---- keys known from the token (token.h, gw_token_know_key) ---- */

/* store_meta rows 'key:' || uri, each the key's public part
 * (gw_seal_key_encode). Replaced as a whole. */
int
gw_sqlite_known_keys_set(struct gw_store *st, const struct gw_store_known_key *keys, size_t n,
                        char *err, size_t errlen)
{
	sqlite3_stmt *s = NULL;
	char name[8 + 2048];
	int rv = -1;

	if (gw_store_tx_begin(st, err, errlen) != 0)
		return -1;
	if (exec_sql(st, "DELETE FROM store_meta WHERE name >= 'key:' AND name < 'key;'", err,
	             errlen) != 0)
		goto out;
	if (sqlite3_prepare_v2(st->db, "INSERT INTO store_meta (name, value) VALUES (?1, ?2)", -1,
	                       &s, NULL) != SQLITE_OK) {
		sg_seterr(err, errlen, "%s", sqlite3_errmsg(st->db));
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		if ((size_t)snprintf(name, sizeof(name), "key:%s", keys[i].uri) >= sizeof(name)) {
			sg_seterr(err, errlen, "key URI too long: %.60s…", keys[i].uri);
			goto out;
		}
		sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
		sqlite3_bind_blob(s, 2, keys[i].blob, (int)keys[i].len, SQLITE_STATIC);
		if (sqlite3_step(s) != SQLITE_DONE) {
			sg_seterr(err, errlen, "%s", sqlite3_errmsg(st->db));
			goto out;
		}
		sqlite3_reset(s);
	}
	rv = 0;
out:
	sqlite3_finalize(s);
	if (rv == 0)
		return gw_store_tx_commit(st, err, errlen);
	gw_store_tx_rollback(st);
	return -1;
}

int
gw_store_known_keys_peek(const char *path,
                         int (*fn)(void *arg, const char *uri, const uint8_t *blob, size_t len),
                         void *arg, char *err, size_t errlen)
{
	sqlite3 *db;
	sqlite3_stmt *s;
	int rv, r, n = 0;

	rv = peek_prepare(path, "SELECT substr(name, 5), value FROM store_meta "
	                  "WHERE name >= 'key:' AND name < 'key;' ORDER BY name", &db, &s, err, errlen);
	if (rv != 1)
		goto out;
	rv = -1;
	while ((r = sqlite3_step(s)) == SQLITE_ROW) {
		const char *uri = (const char *)sqlite3_column_text(s, 0);
		const uint8_t *blob = sqlite3_column_blob(s, 1);
		int len = sqlite3_column_bytes(s, 1);

		if (uri == NULL || blob == NULL || len <= 0) {
			sg_seterr(err, errlen, "%s: a known key is malformed", path);
			goto out;
		}
		if (fn(arg, uri, blob, (size_t)len) != 0) {
			sg_seterr(err, errlen, "%s: the known key %s is malformed", path, uri);
			goto out;
		}
		n++;
	}
	if (r != SQLITE_DONE) {
		sg_seterr(err, errlen, "%s: %s", path, sqlite3_errmsg(db));
		goto out;
	}
	rv = n;
out:
	sqlite3_finalize(s);
	sqlite3_close(db);
	return rv;
}

/* ---- audit rows ---- */

static void
bind_str(sqlite3_stmt *s, int i, const char *v)
{
	if (v)
		sqlite3_bind_text(s, i, v, -1, SQLITE_STATIC);
	else
		sqlite3_bind_null(s, i);
}

static void
bind_blob(sqlite3_stmt *s, int i, const uint8_t *p, size_t len)
{
	if (p && len)
		sqlite3_bind_blob64(s, i, p, len, SQLITE_STATIC);
	else
		sqlite3_bind_null(s, i);
}

int
gw_sqlite_audit_insert(struct gw_store *st, const struct gw_audit_row *r,
                      char *err, size_t errlen)
{
	sqlite3_stmt *s = st->audit_insert;
	int rc, rv = -1;

	if (!s) {
		sg_seterr(err, errlen, "the store has no audit table (schema too old)");
		return -1;
	}
	if (r->seq > INT64_MAX) {
		sg_seterr(err, errlen, "audit seq overflow");
		return -1;
	}
	/* The file is one site's chain (gw_sqlite_set_site). */
	if (r->site != NULL && strcmp(r->site, gw_store_site(st)) != 0) {
		sg_seterr(err, errlen, "an audit record of site %.32s given to the store of site %s",
		          r->site, gw_store_site(st));
		return -1;
	}
	pthread_mutex_lock(&st->lock);
	sqlite3_bind_int64(s, 1, (sqlite3_int64)r->seq);
	sqlite3_bind_int64(s, 2, r->ts_ns);
	bind_str(s, 3, r->action);
	bind_str(s, 4, r->outcome);
	bind_str(s, 5, r->reason);
	bind_str(s, 6, r->actor);
	sqlite3_bind_int64(s, 7, r->uid);
	sqlite3_bind_int64(s, 8, r->pid);
	bind_str(s, 9, r->exe);
	bind_str(s, 10, r->host);
	bind_str(s, 11, r->seal);
	sqlite3_bind_int64(s, 12, r->application);
	bind_blob(s, 13, r->doc_digest, r->doc_digest_len);
	bind_blob(s, 14, r->signed_digest, r->signed_digest_len);
	/* CKM values are unsigned long; stored as their 64-bit pattern. */
	sqlite3_bind_int64(s, 15, (sqlite3_int64)r->mechanism);
	bind_str(s, 16, r->detail);
	sqlite3_bind_blob64(s, 17, r->prev_hash, r->prev_hash_len, SQLITE_STATIC);
	sqlite3_bind_blob64(s, 18, r->hash, r->hash_len, SQLITE_STATIC);
	rc = sqlite3_step(s);
	if (rc == SQLITE_DONE)
		rv = 0;
	else
		sg_seterr(err, errlen, "writing audit seq %llu: %s",
		       (unsigned long long)r->seq, sqlite3_errmsg(st->db));
	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
	pthread_mutex_unlock(&st->lock);
	return rv;
}

int
gw_sqlite_audit_append(struct gw_store *st, const struct gw_audit_row *rows, size_t n,
                      char *err, size_t errlen)
{
	size_t i;

	if (!st->audit_insert) {
		sg_seterr(err, errlen, "the store has no audit table (schema too old)");
		return -1;
	}
	if (gw_store_tx_begin(st, err, errlen))
		return -1;
	for (i = 0; i < n; i++) {
		if (gw_store_audit_insert(st, &rows[i], err, errlen)) {
			gw_store_tx_rollback(st);
			return -1;
		}
	}
	return gw_store_tx_commit(st, err, errlen);
}

int
gw_sqlite_audit_head(struct gw_store *st, uint64_t *seq, uint8_t hash[32],
                    char *err, size_t errlen)
{
	sqlite3_stmt *s = st->audit_head;
	int rv = -1, rc;

	if (!s) {
		sg_seterr(err, errlen, "the store has no audit table (schema too old)");
		return -1;
	}
	pthread_mutex_lock(&st->lock);
	rc = sqlite3_step(s);
	if (rc == SQLITE_DONE) {
		*seq = 0;
		memset(hash, 0, 32);
		rv = 0;
	} else if (rc == SQLITE_ROW) {
		sqlite3_int64 v = sqlite3_column_int64(s, 0);
		const void *h = sqlite3_column_blob(s, 1);

		if (v <= 0 || sqlite3_column_type(s, 1) != SQLITE_BLOB ||
		    sqlite3_column_bytes(s, 1) != 32 || !h) {
			sg_seterr(err, errlen, "the last audit record (seq %lld) is malformed", (long long)v);
		} else {
			*seq = (uint64_t)v;
			memcpy(hash, h, 32);
			rv = 1;
		}
	} else {
		sg_seterr(err, errlen, "reading the audit head: %s", sqlite3_errmsg(st->db));
	}
	sqlite3_reset(s);
	pthread_mutex_unlock(&st->lock);
	return rv;
}

/*
 * Column readers over sqlite3_column_value(): one API call per column
 * instead of three (type, value, bytes), each of which takes and drops the
 * connection mutex (FULLMUTEX): that locking was a fifth of a log scan.
 * The values of sqlite3_column_value() may only be read with the
 * connection mutex held: read_row takes it once per row, col_* per column.
 */

/* Reads a text column; flags a type other than TEXT/NULL or an embedded NUL. */
static const char *
val_text(sqlite3_value *c, const char *name, const char **bad)
{
	int t = sqlite3_value_type(c);
	const char *v;

	if (t == SQLITE_NULL)
		return NULL;
	v = (const char *)sqlite3_value_text(c);
	if (t != SQLITE_TEXT || !v || strlen(v) != (size_t)sqlite3_value_bytes(c)) {
		if (!*bad)
			*bad = name;
	}
	return v;
}

static const uint8_t *
val_blob(sqlite3_value *c, const char *name, size_t *len, const char **bad)
{
	int t = sqlite3_value_type(c);
	const uint8_t *v;

	*len = 0;
	if (t == SQLITE_NULL)
		return NULL;
	if (t != SQLITE_BLOB && !*bad)
		*bad = name;
	v = sqlite3_value_blob(c);
	*len = (size_t)sqlite3_value_bytes(c);
	return v;
}

static int64_t
val_int(sqlite3_value *c, const char *name, const char **bad)
{
	if (sqlite3_value_type(c) != SQLITE_INTEGER && !*bad)
		*bad = name;
	return sqlite3_value_int64(c);
}

static const char *
col_text(sqlite3_stmt *s, int i, const char *name, const char **bad)
{
	sqlite3_mutex *mx = sqlite3_db_mutex(sqlite3_db_handle(s));
	const char *v;

	sqlite3_mutex_enter(mx);
	v = val_text(sqlite3_column_value(s, i), name, bad);
	sqlite3_mutex_leave(mx);
	return v;
}

static const uint8_t *
col_blob(sqlite3_stmt *s, int i, const char *name, size_t *len, const char **bad)
{
	sqlite3_mutex *mx = sqlite3_db_mutex(sqlite3_db_handle(s));
	const uint8_t *v;

	sqlite3_mutex_enter(mx);
	v = val_blob(sqlite3_column_value(s, i), name, len, bad);
	sqlite3_mutex_leave(mx);
	return v;
}

static int64_t
col_int(sqlite3_stmt *s, int i, const char *name, const char **bad)
{
	sqlite3_mutex *mx = sqlite3_db_mutex(sqlite3_db_handle(s));
	int64_t v;

	sqlite3_mutex_enter(mx);
	v = val_int(sqlite3_column_value(s, i), name, bad);
	sqlite3_mutex_leave(mx);
	return v;
}

/* Reads the AUDIT_COLS of the current row of s. */
static void
read_row(sqlite3_stmt *s, struct gw_audit_row *r)
{
	sqlite3_mutex *mx = sqlite3_db_mutex(sqlite3_db_handle(s));
	const char *bad = NULL;

#define COL(i) sqlite3_column_value(s, i)
	memset(r, 0, sizeof(*r));
	sqlite3_mutex_enter(mx);
	r->seq = (uint64_t)val_int(COL(0), "seq", &bad);
	r->ts_ns = val_int(COL(1), "ts_ns", &bad);
	r->action = val_text(COL(2), "action", &bad);
	r->outcome = val_text(COL(3), "outcome", &bad);
	r->reason = val_text(COL(4), "reason", &bad);
	r->actor = val_text(COL(5), "actor", &bad);
	r->uid = val_int(COL(6), "uid", &bad);
	r->pid = val_int(COL(7), "pid", &bad);
	r->exe = val_text(COL(8), "exe", &bad);
	r->host = val_text(COL(9), "host", &bad);
	r->seal = val_text(COL(10), "seal", &bad);
	r->application = val_int(COL(11), "application", &bad);
	r->doc_digest = val_blob(COL(12), "doc_digest", &r->doc_digest_len, &bad);
	r->signed_digest = val_blob(COL(13), "signed_digest", &r->signed_digest_len, &bad);
	r->mechanism = (uint64_t)val_int(COL(14), "mechanism", &bad);
	r->detail = val_text(COL(15), "detail", &bad);
	r->prev_hash = val_blob(COL(16), "prev_hash", &r->prev_hash_len, &bad);
	r->hash = val_blob(COL(17), "hash", &r->hash_len, &bad);
	sqlite3_mutex_leave(mx);
#undef COL
	r->bad_column = bad;
}

int
gw_sqlite_audit_scan(struct gw_store *st, gw_store_audit_fn fn, void *ctx,
                    char *err, size_t errlen)
{
	sqlite3_stmt *s = st->audit_page;
	sqlite3_int64 last = INT64_MIN;
	int rv = 0, rc, inpage;

	if (!s) {
		sg_seterr(err, errlen, "the store has no audit table (schema too old)");
		return -1;
	}
	for (;;) {
		pthread_mutex_lock(&st->lock);
		/* Held for the page, so the step's and read_row's own takes of the
		 * connection mutex are cheap recursive ones. */
		sqlite3_mutex_enter(sqlite3_db_mutex(st->db));
		sqlite3_bind_int64(s, 1, last);
		inpage = 0;
		while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
			struct gw_audit_row r;

			read_row(s, &r);
			r.site = gw_store_site(st);
			last = (sqlite3_int64)r.seq;
			inpage++;
			rv = fn(ctx, &r);
			if (rv != 0)
				break;
		}
		if (rv == 0 && rc != SQLITE_DONE && rc != SQLITE_ROW) {
			sg_seterr(err, errlen, "reading the audit log: %s", sqlite3_errmsg(st->db));
			rv = -1;
		}
		sqlite3_reset(s);
		sqlite3_mutex_leave(sqlite3_db_mutex(st->db));
		pthread_mutex_unlock(&st->lock);
		if (rv != 0 || inpage < SCAN_PAGE)
			return rv;
	}
}

/* ---- audit queries ---- */

int
gw_sqlite_audit_query(struct gw_store *st, const struct gw_audit_filter *f,
                     gw_store_audit_fn fn, void *ctx, char *err, size_t errlen)
{
	char sql[1024];
	size_t len;
	sqlite3_stmt *s = NULL;
	sqlite3_int64 last;
	uint64_t seen = 0;
	int rv = 0, rc, inpage, page;

	if (!st->audit_insert) {
		sg_seterr(err, errlen, "the store has no audit table (schema too old)");
		return -1;
	}
	if (f->after_seq > INT64_MAX || f->upto_seq > INT64_MAX) {
		sg_seterr(err, errlen, "seq out of range");
		return -1;
	}
	/* The file holds its own site's chain alone: "*" is that one, any
	 * other site has no rows here. */
	if (f->site != NULL && strcmp(f->site, "*") != 0 && strcmp(f->site, gw_store_site(st)) != 0)
		return 0;
	/* Only fixed text goes into the SQL; every value is bound. */
	len = (size_t)snprintf(sql, sizeof(sql), "SELECT " AUDIT_COLS " FROM audit WHERE seq > ?1");
#define ADD(cond, text) do { if (cond) len += (size_t)snprintf(sql + len, sizeof(sql) - len, "%s", text); } while (0)
	ADD(f->upto_seq, " AND seq <= ?2");
	ADD(f->from_ns, " AND ts_ns >= ?3");
	ADD(f->to_ns, " AND ts_ns < ?4");
	ADD(f->seal, " AND seal = ?5");
	ADD(f->actor, " AND actor = ?6");
	ADD(f->action, " AND action = ?7");
	ADD(f->outcome, " AND outcome = ?8");
	ADD(f->actors_json, " AND actor IN (SELECT value FROM json_each(?9))");
	/* The literal conditions let SQLite use the partial indexes. */
	ADD(f->application, " AND application = ?10 AND application != 0");
	ADD(f->digest && f->digest_len, " AND ((doc_digest = ?11 AND doc_digest IS NOT NULL) OR signed_digest = ?11)");
	ADD(true, " ORDER BY seq LIMIT ?12");
#undef ADD
	page = SCAN_PAGE;
	if (f->limit && f->limit < (uint64_t)page)
		page = (int)f->limit;
	pthread_mutex_lock(&st->lock);
	rc = sqlite3_prepare_v2(st->db, sql, -1, &s, NULL);
	pthread_mutex_unlock(&st->lock);
	if (rc != SQLITE_OK) {
		sg_seterr(err, errlen, "preparing the audit query: %s", sqlite3_errmsg(st->db));
		return -1;
	}
	last = (sqlite3_int64)f->after_seq;
	for (;;) {
		pthread_mutex_lock(&st->lock);
		sqlite3_reset(s);
		sqlite3_clear_bindings(s);
		sqlite3_bind_int64(s, 1, last);
		if (f->upto_seq)
			sqlite3_bind_int64(s, 2, (sqlite3_int64)f->upto_seq);
		sqlite3_bind_int64(s, 3, f->from_ns);
		sqlite3_bind_int64(s, 4, f->to_ns);
		bind_str(s, 5, f->seal);
		bind_str(s, 6, f->actor);
		bind_str(s, 7, f->action);
		bind_str(s, 8, f->outcome);
		bind_str(s, 9, f->actors_json);
		sqlite3_bind_int64(s, 10, f->application);
		bind_blob(s, 11, f->digest, f->digest_len);
		sqlite3_bind_int(s, 12, page);
		inpage = 0;
		while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
			struct gw_audit_row r;

			read_row(s, &r);
			r.site = gw_store_site(st);
			last = (sqlite3_int64)r.seq;
			inpage++;
			seen++;
			rv = fn(ctx, &r);
			if (rv != 0 || (f->limit && seen >= f->limit))
				break;
		}
		if (rv == 0 && rc != SQLITE_DONE && rc != SQLITE_ROW) {
			sg_seterr(err, errlen, "reading the audit log: %s", sqlite3_errmsg(st->db));
			rv = -1;
		}
		sqlite3_reset(s);
		pthread_mutex_unlock(&st->lock);
		if (rv != 0 || inpage < page || (f->limit && seen >= f->limit))
			break;
	}
	pthread_mutex_lock(&st->lock);
	sqlite3_finalize(s);
	pthread_mutex_unlock(&st->lock);
	return rv;
}

/* ---- checkpoints ---- */

int
gw_sqlite_checkpoint_add(struct gw_store *st, const struct gw_audit_checkpoint *cp,
                        char *err, size_t errlen)
{
	sqlite3_stmt *s = st->cp_insert;
	int rv = -1;

	if (!s) {
		sg_seterr(err, errlen, "the store has no checkpoint table (schema too old)");
		return -1;
	}
	if (cp->seq > INT64_MAX || cp->id == 0 || cp->id > INT64_MAX || cp->prev_id >= cp->id ||
	    !cp->alg || !cp->sig || !cp->sig_len) {
		sg_seterr(err, errlen, "malformed checkpoint");
		return -1;
	}
	if (gw_store_tx_begin(st, err, errlen))
		return -1;
	sqlite3_bind_int64(s, 1, (sqlite3_int64)cp->id);
	sqlite3_bind_int64(s, 2, (sqlite3_int64)cp->seq);
	sqlite3_bind_int64(s, 3, cp->ts_ns);
	sqlite3_bind_blob(s, 4, cp->hash, 32, SQLITE_STATIC);
	sqlite3_bind_text(s, 5, cp->alg, -1, SQLITE_STATIC);
	sqlite3_bind_blob64(s, 6, cp->sig, cp->sig_len, SQLITE_STATIC);
	bind_blob(s, 7, cp->cert, cp->cert_len);
	if (cp->chained && sqlite3_bind_parameter_count(s) >= 9) {
		sqlite3_bind_int64(s, 8, (sqlite3_int64)cp->prev_id);
		sqlite3_bind_blob(s, 9, cp->prev_hash, 32, SQLITE_STATIC);
	}
	if (sqlite3_step(s) == SQLITE_DONE)
		rv = 0;
	else
		sg_seterr(err, errlen, "storing checkpoint %llu: %s", (unsigned long long)cp->seq,
		       sqlite3_errmsg(st->db));
	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
	if (rv == 0)
		return gw_store_tx_commit(st, err, errlen);
	gw_store_tx_rollback(st);
	return -1;
}

int
gw_sqlite_checkpoint_scan(struct gw_store *st, uint64_t from_seq, uint64_t to_seq,
                         gw_store_checkpoint_fn fn, void *ctx, char *err, size_t errlen)
{
	sqlite3_stmt *s = st->cp_page;
	/* (seq, id) > (from_seq - 1, max): every checkpoint with seq >= from_seq. */
	sqlite3_int64 last_seq = from_seq == 0 ? -1 :
	                         (sqlite3_int64)(from_seq > INT64_MAX ? INT64_MAX : from_seq) - 1;
	sqlite3_int64 last_id = INT64_MAX;
	sqlite3_int64 upto = to_seq == 0 || to_seq > INT64_MAX ? INT64_MAX : (sqlite3_int64)to_seq;
	int rv = 0, rc, inpage;

	if (!s) {
		sg_seterr(err, errlen, "the store has no checkpoint table (schema too old)");
		return -1;
	}
	for (;;) {
		pthread_mutex_lock(&st->lock);
		sqlite3_bind_int64(s, 1, last_seq);
		sqlite3_bind_int64(s, 2, last_id);
		sqlite3_bind_int64(s, 3, upto);
		inpage = 0;
		while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
			struct gw_audit_checkpoint cp = { 0 };
			const char *bad = NULL;
			size_t hl = 0;
			const uint8_t *h;

			cp.seq = (uint64_t)col_int(s, 0, "seq", &bad);
			cp.ts_ns = col_int(s, 1, "ts_ns", &bad);
			h = col_blob(s, 2, "hash", &hl, &bad);
			if (h && hl == 32)
				memcpy(cp.hash, h, 32);
			cp.alg = col_text(s, 3, "alg", &bad);
			cp.sig = col_blob(s, 4, "signature", &cp.sig_len, &bad);
			cp.cert = col_blob(s, 5, "cert", &cp.cert_len, &bad);
			if (hl != 32 && !bad)
				bad = "hash";
			cp.id = (uint64_t)sqlite3_column_int64(s, 6);
			if (sqlite3_column_type(s, 8) != SQLITE_NULL) {
				size_t pl = 0;
				const uint8_t *ph = col_blob(s, 8, "prev_hash", &pl, &bad);
				cp.chained = true;
				cp.prev_id = (uint64_t)col_int(s, 7, "prev_id", &bad);
				if (ph && pl == 32)
					memcpy(cp.prev_hash, ph, 32);
				else if (!bad)
					bad = "prev_hash";
			}
			if (bad) {
				/* Keep going: the verifier reports the bad signature. */
				gw_log_warn("audit checkpoint %llu: column %s malformed",
				            (unsigned long long)cp.seq, bad);
			}
			last_seq = (sqlite3_int64)cp.seq;
			last_id = sqlite3_column_int64(s, 6);
			inpage++;
			rv = fn(ctx, &cp);
			if (rv != 0)
				break;
		}
		if (rv == 0 && rc != SQLITE_DONE && rc != SQLITE_ROW) {
			sg_seterr(err, errlen, "reading audit checkpoints: %s", sqlite3_errmsg(st->db));
			rv = -1;
		}
		sqlite3_reset(s);
		pthread_mutex_unlock(&st->lock);
		if (rv != 0 || inpage < SCAN_PAGE)
			return rv;
	}
}

/* The row of the highest id, copied out (the statement is gone after). */
int
gw_sqlite_checkpoint_last(struct gw_store *st, struct gw_audit_checkpoint *last,
                         uint64_t *next_id, char *err, size_t errlen)
{
	sqlite3_stmt *s = NULL;
	const char *bad = NULL;
	sqlite3_int64 ever = 0;
	int rv = -1, rc;

	memset(last, 0, sizeof(*last));
	*next_id = 1;
	pthread_mutex_lock(&st->lock);
	/* AUTOINCREMENT's sqlite_sequence remembers the highest id ever used,
	 * also when that row is gone. */
	if (sqlite3_prepare_v2(st->db, "SELECT seq FROM sqlite_sequence WHERE name = 'audit_checkpoints'",
	                       -1, &s, NULL) == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW)
		ever = sqlite3_column_int64(s, 0);
	sqlite3_finalize(s);
	s = NULL;
	if (sqlite3_prepare_v2(st->db, "SELECT seq, ts_ns, hash, alg, signature, cert, id, prev_id,"
	                       " prev_hash FROM audit_checkpoints ORDER BY id DESC LIMIT 1",
	                       -1, &s, NULL) != SQLITE_OK) {
		sg_seterr(err, errlen, "reading the last checkpoint: %s", sqlite3_errmsg(st->db));
		goto out;
	}
	rc = sqlite3_step(s);
	if (rc == SQLITE_DONE) {
		rv = 0;
	} else if (rc == SQLITE_ROW) {
		const uint8_t *h, *sig, *cert, *ph;
		size_t hl = 0, sl = 0, cl = 0, pl = 0;
		const char *alg;

		last->seq = (uint64_t)col_int(s, 0, "seq", &bad);
		last->ts_ns = col_int(s, 1, "ts_ns", &bad);
		h = col_blob(s, 2, "hash", &hl, &bad);
		alg = col_text(s, 3, "alg", &bad);
		sig = col_blob(s, 4, "signature", &sl, &bad);
		cert = col_blob(s, 5, "cert", &cl, &bad);
		last->id = (uint64_t)sqlite3_column_int64(s, 6);
		if (sqlite3_column_type(s, 8) != SQLITE_NULL) {
			last->chained = true;
			last->prev_id = (uint64_t)col_int(s, 7, "prev_id", &bad);
			ph = col_blob(s, 8, "prev_hash", &pl, &bad);
			if (ph && pl == 32)
				memcpy(last->prev_hash, ph, 32);
			else
				bad = "prev_hash";
		}
		if (!h || hl != 32)
			bad = "hash";
		if (bad) {
			sg_seterr(err, errlen, "the last audit checkpoint (id %llu): column %s malformed",
			          (unsigned long long)last->id, bad);
			goto out;
		}
		memcpy(last->hash, h, 32);
		last->alg = alg ? strdup(alg) : NULL;
		if (sl) {
			uint8_t *c = malloc(sl);
			if (c)
				memcpy(c, sig, sl);
			last->sig = c;
			last->sig_len = c ? sl : 0;
		}
		if (cl) {
			uint8_t *c = malloc(cl);
			if (c)
				memcpy(c, cert, cl);
			last->cert = c;
			last->cert_len = c ? cl : 0;
		}
		rv = 1;
	} else {
		sg_seterr(err, errlen, "reading the last checkpoint: %s", sqlite3_errmsg(st->db));
		goto out;
	}
	*next_id = (uint64_t)(ever > (sqlite3_int64)last->id ? ever : (sqlite3_int64)last->id) + 1;
out:
	sqlite3_finalize(s);
	pthread_mutex_unlock(&st->lock);
	if (rv < 0)
		gw_store_checkpoint_clear(last);
	return rv;
}

void
gw_store_checkpoint_clear(struct gw_audit_checkpoint *cp)
{
	free((void *)cp->alg);
	free((void *)cp->sig);
	free((void *)cp->cert);
	memset(cp, 0, sizeof(*cp));
}

int
gw_sqlite_checkpoint_max_id(struct gw_store *st, uint64_t *id, char *err, size_t errlen)
{
	sqlite3_stmt *s = NULL;
	int rv = -1;

	*id = 0;
	pthread_mutex_lock(&st->lock);
	if (sqlite3_prepare_v2(st->db, "SELECT COALESCE(MAX(id), 0) FROM audit_checkpoints", -1, &s,
	                       NULL) == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW) {
		*id = (uint64_t)sqlite3_column_int64(s, 0);
		rv = 0;
	} else {
		sg_seterr(err, errlen, "reading the checkpoints: %s", sqlite3_errmsg(st->db));
	}
	sqlite3_finalize(s);
	pthread_mutex_unlock(&st->lock);
	return rv;
}

/* ---- sign-in attempts (table auth_lockout; auth_ops.c decides, this
 * block keeps the counts) ----
 *
 * Each row counts, for an account and one key (-1: the account's own OS
 * logins, else the uid of someone acting as it), the failures in a row,
 * the lockouts in a row and the end of the current lockout, and the
 * attempts being checked right now (inflight, with the time they stop
 * counting: a gateway that died mid-check must not hold them forever).
 * An attempt is taken by one conditional UPDATE that succeeds only while
 * failed + inflight < max, so that whatever the number of threads or
 * gateways on one database, at most max guesses are ever evaluated before
 * a lockout. */

static const char attempts_table_sql[] =
	"CREATE TABLE IF NOT EXISTS auth_lockout ("
	"  user TEXT NOT NULL,"
	"  uid INTEGER NOT NULL,"
	"  failed INTEGER NOT NULL DEFAULT 0,"
	"  lockouts INTEGER NOT NULL DEFAULT 0,"
	"  locked_until INTEGER NOT NULL DEFAULT 0,"
	"  inflight INTEGER NOT NULL DEFAULT 0,"
	"  inflight_until INTEGER NOT NULL DEFAULT 0,"
	"  PRIMARY KEY (user, uid)"
	") STRICT;";

int
gw_sqlite_attempts_init(struct gw_store *st, char *err, size_t errlen)
{
	sqlite3_stmt *s = NULL;
	bool have_inflight = false;
	int rv = -1;

	pthread_mutex_lock(&st->lock);
	if (exec_sql(st, attempts_table_sql, err, errlen))
		goto out;
	/* A table made before in-flight attempts were counted gains them. */
	if (prepare(st, &s, "PRAGMA table_info(auth_lockout)", err, errlen))
		goto out;
	while (sqlite3_step(s) == SQLITE_ROW)
		if (strcmp((const char *)sqlite3_column_text(s, 1), "inflight") == 0)
			have_inflight = true;
	sqlite3_finalize(s);
	if (!have_inflight &&
	    (exec_sql(st, "ALTER TABLE auth_lockout ADD COLUMN inflight INTEGER NOT NULL DEFAULT 0",
	              err, errlen) ||
	     exec_sql(st, "ALTER TABLE auth_lockout ADD COLUMN inflight_until INTEGER NOT NULL "
	              "DEFAULT 0", err, errlen)))
		goto out;
	rv = 0;
out:
	pthread_mutex_unlock(&st->lock);
	return rv;
}

static const char attempts_get_sql[] =
	"SELECT failed, lockouts, locked_until, "
	"  CASE WHEN inflight_until > ?3 THEN inflight ELSE 0 END "
	"FROM auth_lockout WHERE user = ?1 AND uid = ?2";

int
gw_sqlite_attempts_get(struct gw_store *st, const char *user, int64_t key, int64_t now,
                      struct gw_store_attempts *out)
{
	sqlite3_stmt *s;
	int rv = -1, rc;

	memset(out, 0, sizeof(*out));
	pthread_mutex_lock(&st->lock);
	s = gw_store_cached(st, attempts_get_sql);
	if (s == NULL)
		goto out;
	sqlite3_bind_text(s, 1, user, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 2, key);
	sqlite3_bind_int64(s, 3, now);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		out->failed = sqlite3_column_int64(s, 0);
		out->lockouts = sqlite3_column_int64(s, 1);
		out->locked_until = sqlite3_column_int64(s, 2);
		out->inflight = sqlite3_column_int64(s, 3);
	}
	rv = rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : -1;
	if (rv < 0)
		gw_log_error("store: reading the attempts of '%s': %s", user, sqlite3_errmsg(st->db));
	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
out:
	pthread_mutex_unlock(&st->lock);
	return rv;
}

static const char attempts_row_sql[] =
	"INSERT INTO auth_lockout (user, uid) VALUES (?1, ?2) ON CONFLICT (user, uid) DO NOTHING";
/* The reservation itself: one statement, so it is atomic on any SQL
 * database, and it changes a row only while the attempt is allowed. */
static const char attempts_take_sql[] =
	"UPDATE auth_lockout SET "
	"  inflight = (CASE WHEN inflight_until > ?3 THEN inflight ELSE 0 END) + 1,"
	"  inflight_until = ?3 + ?5 "
	"WHERE user = ?1 AND uid = ?2 AND locked_until <= ?3 AND "
	"  failed + (CASE WHEN inflight_until > ?3 THEN inflight ELSE 0 END) < ?4";

static int
attempts_step(struct gw_store *st, const char *sql, const char *user, int64_t key,
              int64_t now, int64_t max, int64_t ttl)
{
	sqlite3_stmt *s = gw_store_cached(st, sql);
	int rc;

	if (s == NULL)
		return -1;
	sqlite3_bind_text(s, 1, user, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 2, key);
	if (sql == attempts_take_sql) {
		sqlite3_bind_int64(s, 3, now);
		sqlite3_bind_int64(s, 4, max);
		sqlite3_bind_int64(s, 5, ttl);
	}
	rc = sqlite3_step(s);
	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
	if (rc != SQLITE_DONE) {
		gw_log_error("store: counting an attempt at '%s': %s", user, sqlite3_errmsg(st->db));
		return -1;
	}
	return sqlite3_changes(st->db);
}

int
gw_sqlite_attempt_take(struct gw_store *st, const char *user, int64_t key, int64_t now,
                      unsigned max, unsigned ttl, struct gw_store_attempts *row)
{
	int rv = -1, n;

	pthread_mutex_lock(&st->lock);
	if (attempts_step(st, attempts_row_sql, user, key, now, 0, 0) < 0)
		goto out;
	n = attempts_step(st, attempts_take_sql, user, key, now, max, ttl);
	if (n < 0)
		goto out;
	if (gw_store_attempts_get(st, user, key, now, row) < 0)
		goto out;
	rv = n == 1 ? GW_ATTEMPT_TAKEN : row->locked_until > now ? GW_ATTEMPT_LOCKED : GW_ATTEMPT_FULL;
out:
	pthread_mutex_unlock(&st->lock);
	return rv;
}

static const char attempts_put_sql[] =
	"UPDATE auth_lockout SET failed = ?3, lockouts = ?4, locked_until = ?5, inflight = ?6 "
	"WHERE user = ?1 AND uid = ?2";

int
gw_sqlite_attempt_end(struct gw_store *st, const char *user, int64_t key, int64_t now,
                     enum gw_attempt_outcome outcome, unsigned max, unsigned lockout_s,
                     unsigned lockout_cap, struct gw_store_attempts *row)
{
	sqlite3_stmt *s;
	int rv = -1, rc;

	/* Read and written under the lock, in one transaction: the count a
	 * failure adds and the lockout it may start belong together. */
	if (gw_store_tx_begin(st, NULL, 0) < 0)
		return -1;
	if (gw_store_attempts_get(st, user, key, now, row) < 0)
		goto out;
	gw_store_attempt_settle(row, outcome, max, lockout_s, lockout_cap, now);
	s = gw_store_cached(st, attempts_put_sql);
	if (s == NULL)
		goto out;
	sqlite3_bind_text(s, 1, user, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 2, key);
	sqlite3_bind_int64(s, 3, row->failed);
	sqlite3_bind_int64(s, 4, row->lockouts);
	sqlite3_bind_int64(s, 5, row->locked_until);
	sqlite3_bind_int64(s, 6, row->inflight);
	rc = sqlite3_step(s);
	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
	if (rc != SQLITE_DONE) {
		gw_log_error("store: counting an attempt at '%s': %s", user, sqlite3_errmsg(st->db));
		goto out;
	}
	rv = 0;
out:
	if (rv == 0 && gw_store_tx_commit(st, NULL, 0) < 0)
		return -1;
	if (rv < 0)
		gw_store_tx_rollback(st);
	return rv;
}

static const char attempts_clear_all_sql[] =
	"UPDATE auth_lockout SET failed = 0, lockouts = 0, locked_until = 0 WHERE user = ?1";

int
gw_sqlite_attempts_clear(struct gw_store *st, const char *user)
{
	int n;

	/* Attempts being checked keep their place (they end by themselves);
	 * the failures, the lockout and its growing delay go. */
	pthread_mutex_lock(&st->lock);
	n = attempts_step(st, attempts_clear_all_sql, user, 0, 0, 0, 0);
	pthread_mutex_unlock(&st->lock);
	return n;
}

/* ---- sites (store.h) ---- */

/* A SQLite store is one site's: the first name set is kept in store_meta
 * ('site'), and a later handle naming another site is refused, so that
 * two sites' audit chains never end up in one file. */
int
gw_sqlite_set_site(struct gw_store *st, const char *site, char *err, size_t errlen)
{
	sqlite3_stmt *s = NULL;
	int rv = -1, r;

	pthread_mutex_lock(&st->lock);
	if (sqlite3_prepare_v2(st->db, "INSERT INTO store_meta (name, value) VALUES ('site', ?1) "
	                       "ON CONFLICT (name) DO NOTHING", -1, &s, NULL) != SQLITE_OK) {
		sg_seterr(err, errlen, "%s", sqlite3_errmsg(st->db));
		goto out;
	}
	sqlite3_bind_blob(s, 1, site, (int)strlen(site), SQLITE_STATIC);
	if (sqlite3_step(s) != SQLITE_DONE) {
		sg_seterr(err, errlen, "%s", sqlite3_errmsg(st->db));
		goto out;
	}
	sqlite3_finalize(s);
	s = NULL;
	if (sqlite3_prepare_v2(st->db, "SELECT value FROM store_meta WHERE name = 'site'", -1, &s,
	                       NULL) != SQLITE_OK) {
		sg_seterr(err, errlen, "%s", sqlite3_errmsg(st->db));
		goto out;
	}
	r = sqlite3_step(s);
	if (r != SQLITE_ROW) {
		sg_seterr(err, errlen, "reading the store's site: %s", sqlite3_errmsg(st->db));
		goto out;
	}
	if ((size_t)sqlite3_column_bytes(s, 0) != strlen(site) ||
	    memcmp(sqlite3_column_blob(s, 0), site, strlen(site)) != 0) {
		sg_seterr(err, errlen, "this SQLite store belongs to site \"%.*s\", not \"%s\" "
		          "(one site per SQLite store; a group of sites shares a PostgreSQL store)",
		          sqlite3_column_bytes(s, 0) > GW_SITE_MAX ? GW_SITE_MAX : sqlite3_column_bytes(s, 0),
		          (const char *)sqlite3_column_blob(s, 0), site);
		goto out;
	}
	rv = 0;
out:
	sqlite3_finalize(s);
	pthread_mutex_unlock(&st->lock);
	return rv;
}

/* One site per file, and one gateway per site: two gateways on one file
 * (each with its own socket) would each extend the chain from the head
 * they read and fork it. The claim is a flock on a file of its own beside
 * the database, never on the database: closing any descriptor of the
 * database file would drop SQLite's own POSIX locks. The kernel lets go
 * of it when the process dies, so a crashed gateway leaves no stale claim. */
int
gw_sqlite_site_claim(struct gw_store *st, char *err, size_t errlen)
{
	char *lock = NULL;
	int fd = -1, rv = -1;

	if (st->claimed)
		return 0;
	if (asprintf(&lock, "%s.site-lock", st->path) < 0) {
		lock = NULL;
		sg_seterr(err, errlen, "out of memory");
		goto out;
	}
	fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY, 0600);
	if (fd < 0) {
		sg_seterr(err, errlen, "claiming the site: %s: %s", lock, strerror(errno));
		goto out;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		if (errno == EWOULDBLOCK)
			sg_seterr(err, errlen, "another gateway already serves site \"%s\" on the store "
			          "%s (one gateway per site; stop it first)", gw_store_site(st), st->path);
		else
			sg_seterr(err, errlen, "claiming the site: %s: %s", lock, strerror(errno));
		goto out;
	}
	st->claim_fd = fd;
	st->claimed = true;
	fd = -1;
	rv = 0;
out:
	if (fd >= 0)
		close(fd);
	free(lock);
	return rv;
}

int
gw_sqlite_binding_get(struct gw_store *st, struct gw_store_binding *b, char *err, size_t errlen)
{
	return gw_store_binding_peek(st->path, b, err, errlen);
}

int
gw_sqlite_known_keys_get(struct gw_store *st,
                         int (*fn)(void *arg, const char *uri, const uint8_t *blob, size_t len),
                         void *arg, char *err, size_t errlen)
{
	return gw_store_known_keys_peek(st->path, fn, arg, err, errlen);
}
