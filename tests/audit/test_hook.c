/*
 * gw_audit_record_with: a store change made durable in the same
 * transaction as its audit record. A refusing change refuses its record
 * only; a failed commit loses both; a crash (SIGKILL) never leaves one
 * without the other.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "audit.h"
#include "redo.h"
#include "store.h"
#include "sqlite_store.h"   /* gw_store_db: a look at the file from inside */

static char dir[64];
static char path[128];
static struct gw_store *st;
static struct gw_audit *au;

static void
setup(void)
{
	strcpy(dir, "/tmp/sg-hook-XXXXXX");
	cr_assert(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/sealgate.db", dir);
}

static void
teardown(void)
{
	char cmd[128];

	gw_audit_close(&au);
	gw_store_close(&st);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", dir);
}

TestSuite(hook, .init = setup, .fini = teardown, .timeout = 120);

static void
open_all(void)
{
	char err[512] = "";

	cr_assert_eq(gw_store_open(path, &st, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(gw_audit_open(st, &au, err, sizeof(err)), 0, "%s", err);
}

static void
reopen(void)
{
	char err[512] = "";

	gw_audit_close(&au);
	gw_store_close(&st);
	cr_assert_eq(gw_store_open(path, &st, err, sizeof(err)), 0, "%s", err);
}

/* One integer from SQL on the store's own connection (the lead's way). */
static long long
sql_int(const char *sql)
{
	sqlite3_stmt *s = NULL;
	long long v = -1;

	gw_store_lock(st);
	cr_assert_eq(sqlite3_prepare_v2(gw_store_db(st), sql, -1, &s, NULL), SQLITE_OK, "%s: %s",
	             sql, sqlite3_errmsg(gw_store_db(st)));
	if (sqlite3_step(s) == SQLITE_ROW)
		v = sqlite3_column_int64(s, 0);
	sqlite3_finalize(s);
	gw_store_unlock(st);
	return v;
}

/* What an apply function does: a quota row keyed by n, then maybe no. */
struct spend {
	int n;
	bool refuse;         /* insert, then refuse: the insert must vanish */
	bool nested;         /* also use a nested gw_store_tx and a gw_store_* call */
	bool kill_tx;        /* run a raw ROLLBACK: the whole transaction is gone */
};

static int
apply_spend(struct gw_store *s, void *arg, char *err, size_t errlen)
{
	struct spend *sp = arg;
	sqlite3 *db = gw_store_db(s);
	sqlite3_stmt *q = NULL;
	int rc;

	gw_store_lock(s);   /* recursive: the writer holds it already */
	rc = sqlite3_prepare_v2(db, "INSERT INTO quota_use (seal, period, person, used) "
	                            "VALUES ('contract', 'd', ?, 1)", -1, &q, NULL);
	if (rc == SQLITE_OK) {
		char who[32];
		snprintf(who, sizeof(who), "ev%d", sp->n);
		sqlite3_bind_text(q, 1, who, -1, SQLITE_TRANSIENT);
		rc = sqlite3_step(q) == SQLITE_DONE ? SQLITE_OK : SQLITE_ERROR;
	}
	sqlite3_finalize(q);
	gw_store_unlock(s);
	if (rc != SQLITE_OK) {
		snprintf(err, errlen, "insert: %s", sqlite3_errmsg(db));
		return -1;
	}
	if (sp->nested) {
		char e[128];
		if (gw_store_tx_begin(s, e, sizeof(e)) != 0)
			return snprintf(err, errlen, "nested: %s", e), -1;
		if (gw_store_password_set(s, "nested-user", "h") != 0) {
			gw_store_tx_rollback(s);
			return snprintf(err, errlen, "password_set failed"), -1;
		}
		if (gw_store_tx_commit(s, e, sizeof(e)) != 0)
			return snprintf(err, errlen, "nested commit: %s", e), -1;
	}
	if (sp->kill_tx) {
		gw_store_lock(s);
		sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
		gw_store_unlock(s);
		snprintf(err, errlen, "broke the transaction");
		return -1;
	}
	if (sp->refuse) {
		snprintf(err, errlen, "quota exhausted for ev%d", sp->n);
		return -1;
	}
	return 0;
}

static int
spend(int n, bool refuse, uint64_t *seq, char *err, size_t errlen)
{
	struct spend sp = { .n = n, .refuse = refuse };
	struct gw_audit_event ev = { .action = "sign", .outcome = "ok", .actor = "alice",
	                             .uid = 1000, .pid = 1, .seal = "contract", .application = n };

	return gw_audit_record_with(au, &ev, apply_spend, &sp, seq, err, errlen);
}

Test(hook, change_and_record_commit_together)
{
	char err[256] = "";
	uint64_t seq = 0, count = 0;
	struct spend sp = { .n = 2, .nested = true };
	struct gw_audit_event ev = { .action = "approve", .outcome = "ok", .uid = 1, .pid = 1,
	                             .application = 2 };

	open_all();
	cr_assert_eq(spend(1, false, &seq, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(seq, 1);
	cr_assert_eq(gw_audit_record_with(au, &ev, apply_spend, &sp, &seq, err, sizeof(err)), 0,
	             "nested transaction and gw_store_* inside apply: %s", err);
	cr_assert_eq(seq, 2);
	reopen();
	cr_assert_eq(sql_int("SELECT COUNT(*) FROM quota_use WHERE person IN ('ev1','ev2')"), 2);
	cr_assert_eq(sql_int("SELECT COUNT(*) FROM accounts WHERE user = 'nested-user'"), 1);
	cr_assert_eq(gw_audit_verify_store(st, &count, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(count, 2);
}

Test(hook, refusal_refuses_its_record_only)
{
	char err[256] = "";
	uint64_t seq = 0, count = 0;
	struct gw_audit_stats s;

	open_all();
	cr_assert_eq(spend(1, false, &seq, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(spend(2, true, &seq, err, sizeof(err)), -1);
	cr_assert_str_eq(err, "quota exhausted for ev2");
	cr_assert_eq(spend(3, false, &seq, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(seq, 2, "a refused record takes no seq");
	gw_audit_get_stats(au, &s);
	cr_assert_eq(s.refused, 1);
	cr_assert_eq(s.failed_batches, 0);
	reopen();
	cr_assert_eq(sql_int("SELECT COUNT(*) FROM quota_use WHERE person = 'ev2'"), 0,
	             "the refused change was rolled back");
	cr_assert_eq(sql_int("SELECT COUNT(*) FROM quota_use"), 2);
	cr_assert_eq(sql_int("SELECT COUNT(*) FROM audit WHERE application = 2"), 0);
	cr_assert_eq(gw_audit_verify_store(st, &count, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(count, 2);
}

/* Many threads, every third change refuses: refusals share batches with
 * successes and must not spoil them. */
#define THREADS 8
#define PER_THREAD 150

struct worker { int id; int ok, refused, wrong; };

static void *
worker_main(void *arg)
{
	struct worker *w = arg;
	char err[256];
	uint64_t seq;

	for (int i = 0; i < PER_THREAD; i++) {
		int n = w->id * PER_THREAD + i + 1;
		bool refuse = n % 3 == 0;
		int r = spend(n, refuse, &seq, err, sizeof(err));

		if (r == 0 && !refuse)
			w->ok++;
		else if (r != 0 && refuse && strstr(err, "quota exhausted"))
			w->refused++;
		else
			w->wrong++;
	}
	return NULL;
}

Test(hook, refusals_inside_concurrent_batches)
{
	static struct worker w[THREADS];
	pthread_t th[THREADS];
	struct gw_audit_stats s;
	char err[256] = "";
	uint64_t count = 0;
	int ok = 0, refused = 0;

	open_all();
	for (int i = 0; i < THREADS; i++) {
		memset(&w[i], 0, sizeof(w[i]));
		w[i].id = i;
		cr_assert_eq(pthread_create(&th[i], NULL, worker_main, &w[i]), 0);
	}
	for (int i = 0; i < THREADS; i++) {
		pthread_join(th[i], NULL);
		cr_assert_eq(w[i].wrong, 0);
		ok += w[i].ok;
		refused += w[i].refused;
	}
	gw_audit_get_stats(au, &s);
	cr_assert_eq(s.records, (uint64_t)ok);
	cr_assert_eq(s.refused, (uint64_t)refused);
	cr_assert_gt(s.max_batch, 1, "the test did batch");
	reopen();
	cr_assert_eq(sql_int("SELECT COUNT(*) FROM quota_use"), ok);
	/* Every change has its record and every record its change. */
	cr_assert_eq(sql_int("SELECT COUNT(*) FROM quota_use q WHERE NOT EXISTS (SELECT 1 FROM audit a"
	                     " WHERE 'ev' || a.application = q.person)"), 0);
	cr_assert_eq(sql_int("SELECT COUNT(*) FROM audit a WHERE NOT EXISTS (SELECT 1 FROM quota_use q"
	                     " WHERE 'ev' || a.application = q.person)"), 0);
	cr_assert_eq(gw_audit_verify_store(st, &count, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(count, (uint64_t)ok);
}

static int
fail_commit(void *ctx)
{
	return *(int *)ctx;
}

Test(hook, failed_commit_loses_change_and_record)
{
	char err[256] = "";
	uint64_t seq = 0, count = 0;
	int fail = 1;

	open_all();
	cr_assert_eq(spend(1, false, &seq, err, sizeof(err)), 0, "%s", err);
	gw_store_test_set_commit_hook(st, fail_commit, &fail);
	cr_assert_eq(spend(2, false, &seq, err, sizeof(err)), -1);
	cr_assert(strstr(err, "audit"), "%s", err);
	fail = 0;
	cr_assert_eq(spend(3, false, &seq, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(seq, 2);
	gw_store_test_set_commit_hook(st, NULL, NULL);
	reopen();
	cr_assert_eq(sql_int("SELECT COUNT(*) FROM quota_use WHERE person = 'ev2'"), 0);
	cr_assert_eq(sql_int("SELECT COUNT(*) FROM quota_use"), 2);
	cr_assert_eq(gw_audit_verify_store(st, &count, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(count, 2);
}

Test(hook, a_change_that_breaks_the_transaction_fails_only_its_batch)
{
	char err[256] = "";
	uint64_t seq = 0, count = 0;
	struct spend sp = { .n = 2, .kill_tx = true };
	struct gw_audit_event ev = { .action = "sign", .outcome = "ok", .uid = 1, .pid = 1,
	                             .application = 2 };

	open_all();
	cr_assert_eq(spend(1, false, &seq, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(gw_audit_record_with(au, &ev, apply_spend, &sp, &seq, err, sizeof(err)), -1);
	cr_assert_eq(spend(3, false, &seq, err, sizeof(err)), 0, "the log goes on: %s", err);
	cr_assert_eq(seq, 2);
	reopen();
	cr_assert_eq(sql_int("SELECT COUNT(*) FROM quota_use"), 2);
	cr_assert_eq(gw_audit_verify_store(st, &count, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(count, 2);
}

/* Other files' own transactions (appstore.c outside a callback) run
 * between the writer's batches, never inside them. */
static volatile bool stop_side;

static void *
side_main(void *arg)
{
	int *n = arg;
	char e[128];

	while (!stop_side) {
		sqlite3_stmt *q = NULL;
		if (gw_store_tx_begin(st, e, sizeof(e)) != 0)
			continue;
		sqlite3_prepare_v2(gw_store_db(st), "INSERT INTO quota_use (seal, period, person, used)"
		                   " VALUES ('side', 'd', ?, 1)", -1, &q, NULL);
		sqlite3_bind_int(q, 1, *n);
		sqlite3_step(q);
		sqlite3_finalize(q);
		if (*n % 2)
			gw_store_tx_rollback(st);
		else
			gw_store_tx_commit(st, e, sizeof(e));
		(*n)++;
	}
	return NULL;
}

Test(hook, outside_transactions_do_not_mix_with_batches)
{
	pthread_t side, th[THREADS];
	static struct worker w[THREADS];
	char err[256] = "";
	uint64_t count = 0;
	int n = 0, ok = 0;

	open_all();
	stop_side = false;
	cr_assert_eq(pthread_create(&side, NULL, side_main, &n), 0);
	for (int i = 0; i < THREADS; i++) {
		memset(&w[i], 0, sizeof(w[i]));
		w[i].id = i;
		pthread_create(&th[i], NULL, worker_main, &w[i]);
	}
	for (int i = 0; i < THREADS; i++) {
		pthread_join(th[i], NULL);
		cr_assert_eq(w[i].wrong, 0);
		ok += w[i].ok;
	}
	stop_side = true;
	pthread_join(side, NULL);
	reopen();
	cr_assert_eq(sql_int("SELECT COUNT(*) FROM quota_use WHERE seal = 'side'"), (n + 1) / 2,
	             "the side thread's commits and rollbacks were its own (%d runs)", n);
	cr_assert_eq(sql_int("SELECT COUNT(*) FROM quota_use WHERE seal = 'contract'"), ok);
	cr_assert_eq(gw_audit_verify_store(st, &count, err, sizeof(err)), 0, "%s", err);
}

/* SIGKILL mid-storm: a child records with changes from 8 threads, reporting
 * each acknowledged n on a pipe; the parent kills it at a random moment.
 * Afterwards: every acknowledged n has both, nothing has one without the
 * other, the chain verifies. */
static void
child_storm(int wfd)
{
	char err[512];

	if (gw_store_open(path, &st, err, sizeof(err)) || gw_audit_open(st, &au, err, sizeof(err)))
		_exit(2);
	for (int round = 0;; round++) {
		static struct worker w[THREADS];
		pthread_t th[THREADS];
		for (int i = 0; i < THREADS; i++) {
			w[i].id = round * THREADS + i;
			w[i].ok = w[i].refused = w[i].wrong = 0;
			pthread_create(&th[i], NULL, worker_main, &w[i]);
		}
		for (int i = 0; i < THREADS; i++)
			pthread_join(th[i], NULL);
		if (write(wfd, "r", 1) != 1)
			_exit(3);
	}
}

Test(hook, sigkill_leaves_nothing_half_written)
{
	char err[512] = "", c;
	uint64_t count = 0;
	int fds[2], status;
	pid_t pid;
	struct timespec ts = { 0, 0 };

	cr_assert_eq(pipe(fds), 0);
	pid = fork();
	cr_assert(pid >= 0);
	if (pid == 0) {
		close(fds[0]);
		child_storm(fds[1]);
	}
	close(fds[1]);
	cr_assert_eq(read(fds[0], &c, 1), 1, "the child made a first round");
	srand((unsigned)time(NULL));
	ts.tv_nsec = (rand() % 200) * 1000000L;
	nanosleep(&ts, NULL);
	kill(pid, SIGKILL);
	waitpid(pid, &status, 0);
	cr_assert(WIFSIGNALED(status), "the child was killed");
	close(fds[0]);

	cr_assert_eq(gw_store_open(path, &st, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(gw_audit_verify_store(st, &count, err, sizeof(err)), 0, "%s", err);
	cr_assert_geq(count, (uint64_t)(THREADS * PER_THREAD * 2 / 3 - THREADS));
	cr_assert_eq(sql_int("SELECT COUNT(*) FROM quota_use q WHERE NOT EXISTS (SELECT 1 FROM audit a"
	                     " WHERE 'ev' || a.application = q.person)"), 0, "a change without its record");
	cr_assert_eq(sql_int("SELECT COUNT(*) FROM audit a WHERE NOT EXISTS (SELECT 1 FROM quota_use q"
	                     " WHERE 'ev' || a.application = q.person)"), 0, "a record without its change");
	cr_assert_eq(sql_int("SELECT COUNT(*) FROM audit WHERE application % 3 = 0"), 0);
	/* And the log goes on from the recovered head. */
	cr_assert_eq(gw_audit_open(st, &au, err, sizeof(err)), 0, "%s", err);
	{
		uint64_t seq = 0;
		cr_assert_eq(spend(1000001, false, &seq, err, sizeof(err)), 0, "%s", err);
		cr_assert_eq(seq, count + 1);
	}
}

/* ---- the redo log: a power failure that costs the store its last
 * commits (docs/audit.md, "Durability") ----
 *
 * An audit batch is durable once its redo frame is synced; its WAL frames
 * are written but not synced. A power failure is played here by putting
 * back the store files as they were at an earlier synced point while
 * keeping the redo log a killed writer left behind. */

static void
sh(const char *fmt, ...)
{
	char cmd[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	cr_assert_eq(system(cmd), 0, "%s", cmd);
}

static unsigned expect_rounds;   /* killed_writer: times round the log, at least */

/* A writer that records n spends from first on, then dies without closing
 * (no final sync, no emptied redo log). */
static void
killed_writer(int first, int n, int refuse_every)
{
	pid_t pid = fork();
	int status;

	cr_assert(pid >= 0);
	if (pid == 0) {
		char err[512];
		uint64_t seq;

		if (gw_store_open(path, &st, err, sizeof(err)) != 0 ||
		    gw_audit_open(st, &au, err, sizeof(err)) != 0)
			_exit(2);
		for (int i = first; i < first + n; i++) {
			bool refuse = refuse_every && i % refuse_every == 0;
			if (spend(i, refuse, &seq, err, sizeof(err)) != (refuse ? -1 : 0))
				_exit(3);
		}
		{
			struct gw_store_redo_stats rs;
			gw_store_get_redo_stats(st, &rs);
			if (!rs.on || rs.rounds < expect_rounds)
				_exit(4);
		}
		_exit(0);
	}
	waitpid(pid, &status, 0);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "writer status %d", status);
}

/* Clean history up to seq n, and a copy of the store files as they are. */
static void
synced_point(int n)
{
	char err[512] = "";
	uint64_t seq;

	open_all();
	for (int i = 1; i <= n; i++)
		cr_assert_eq(spend(i, false, &seq, err, sizeof(err)), 0, "%s", err);
	gw_audit_close(&au);
	gw_store_close(&st);
	sh("cp %s %s.synced && rm -f %s-wal %s-shm", path, path, path, path);
}

static void
power_failure(void)
{
	sh("cp %s.synced %s && rm -f %s-wal %s-shm", path, path, path, path);
}

Test(hook, power_failure_replays_what_the_redo_log_holds)
{
	char err[512] = "";
	uint64_t count = 0, seq = 0;

	synced_point(5);
	killed_writer(6, 9, 7);            /* 6..14, 7 and 14 refused: 7 records */
	power_failure();
	cr_assert_eq(gw_store_open(path, &st, err, sizeof(err)), 0, "%s", err);
	{
		struct gw_store_redo_stats rs;
		gw_store_get_redo_stats(st, &rs);
		cr_assert(rs.on);
		cr_assert_eq(rs.replayed_frames, 7, "one frame per batch of one (%llu)",
		             (unsigned long long)rs.replayed_frames);
	}
	cr_assert_eq(gw_audit_verify_store(st, &count, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(count, 12);
	/* Every record came back with its change, and nothing refused did. */
	cr_assert_eq(sql_int("SELECT COUNT(*) FROM quota_use"), 12);
	cr_assert_eq(sql_int("SELECT COUNT(*) FROM quota_use WHERE person IN ('ev7', 'ev14')"), 0);
	cr_assert_eq(sql_int("SELECT COUNT(*) FROM audit a WHERE NOT EXISTS (SELECT 1 FROM quota_use q"
	                     " WHERE 'ev' || a.application = q.person)"), 0);
	cr_assert_eq(sql_int("SELECT application FROM audit WHERE seq = 12"), 13);
	/* The chain goes on from the replayed head. */
	cr_assert_eq(gw_audit_open(st, &au, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(spend(100, false, &seq, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(seq, 13);
	/* Replayed once: a clean close empties the log, a second open finds
	 * nothing to do. */
	reopen();
	{
		struct gw_store_redo_stats rs;
		gw_store_get_redo_stats(st, &rs);
		cr_assert_eq(rs.replayed_frames, 0);
	}
	cr_assert_eq(gw_audit_verify_store(st, &count, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(count, 13);
}

Test(hook, a_torn_redo_frame_ends_the_replay)
{
	char err[512] = "", rpath[160];
	uint64_t count = 0;
	FILE *f;
	uint8_t hdr[4];
	long len;

	synced_point(2);
	killed_writer(3, 3, 0);            /* frames for seq 3, 4, 5 */
	power_failure();
	/* Tear the second frame: one byte of its changes. */
	snprintf(rpath, sizeof(rpath), "%s.redo", path);
	f = fopen(rpath, "r+b");
	cr_assert_not_null(f);
	cr_assert_eq(fread(hdr, 1, 4, f), 4);
	cr_assert_eq(memcmp(hdr, "SGR1", 4), 0, "the first frame is at the start");
	cr_assert_eq(fread(hdr, 1, 4, f), 4);
	len = hdr[0] | hdr[1] << 8 | hdr[2] << 16 | (long)hdr[3] << 24;
	cr_assert_eq(fseek(f, GW_REDO_HDR_LEN + len + GW_REDO_HDR_LEN + 3, SEEK_SET), 0);
	cr_assert_eq(fputc(0x5a, f), 0x5a);
	fclose(f);
	cr_assert_eq(gw_store_open(path, &st, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(gw_audit_verify_store(st, &count, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(count, 3, "seq 3 replayed, the torn frame and what follows not (%llu)",
	             (unsigned long long)count);
	cr_assert_eq(sql_int("SELECT COUNT(*) FROM quota_use"), 3);
}

Test(hook, a_redo_log_that_does_not_follow_the_store_is_refused)
{
	char err[512] = "";

	synced_point(3);
	/* A clean run that the copy will not have: seq 4..5, log emptied. */
	open_all();
	{
		uint64_t seq;
		cr_assert_eq(spend(4, false, &seq, err, sizeof(err)), 0, "%s", err);
		cr_assert_eq(spend(5, false, &seq, err, sizeof(err)), 0, "%s", err);
	}
	gw_audit_close(&au);
	gw_store_close(&st);
	killed_writer(6, 2, 0);            /* frames for seq 6, 7 */
	power_failure();                   /* the store back at seq 3 */
	cr_assert_neq(gw_store_open(path, &st, err, sizeof(err)), 0, "a gap of seq 4..5 is not papered over");
	cr_assert(strstr(err, "holds seq 6..6 but the store ends at seq 3"), "%s", err);
	cr_assert_null(st);
}

Test(hook, a_redo_log_of_another_store_is_never_replayed)
{
	char err[512] = "";
	uint64_t count = 1;

	synced_point(1);
	killed_writer(2, 3, 0);
	/* The store is made anew beside the old log. */
	sh("rm -f %s %s-wal %s-shm", path, path, path);
	cr_assert_eq(gw_store_open(path, &st, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(gw_audit_verify_store(st, &count, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(count, 0);
	cr_assert_eq(sql_int("SELECT COUNT(*) FROM quota_use"), 0);
}

Test(hook, the_redo_log_goes_round_when_full)
{
	char err[512] = "";
	uint64_t count = 0;

	/* A 64 KiB log holds ~150 of these frames: 600 records go round it
	 * a few times, the store syncing itself at each turn. */
	setenv("SEALGATE_TEST_REDO_SIZE", "65536", 1);
	expect_rounds = 2;
	killed_writer(1, 600, 0);
	expect_rounds = 0;
	cr_assert_eq(gw_store_open(path, &st, err, sizeof(err)), 0, "%s", err);
	unsetenv("SEALGATE_TEST_REDO_SIZE");
	cr_assert_eq(gw_audit_verify_store(st, &count, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(count, 600);
	cr_assert_eq(sql_int("SELECT COUNT(*) FROM quota_use"), 600);
}
