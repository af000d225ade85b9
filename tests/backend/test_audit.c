/*
 * gateway/audit.c on real SQLite files: the chain (checked against an
 * independent encoder written from docs/audit.md), tampering with the file
 * behind the gateway's back, group commit under 8 threads, and commit
 * failures (SQLite commit hook; a full tmpfs when mounting is allowed).
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/sha.h>
#include <openssl/x509.h>
#include <sqlite3.h>

#include "audit.h"
#include "auditfmt.h"
#include "store.h"

static char dir[64];
static char path[128];
static struct gw_store *st;
static struct gw_audit *au;
static bool mounted;

static void
setup(void)
{
	strcpy(dir, "/tmp/sg-audit-XXXXXX");
	cr_assert(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/sealgate.db", dir);
	mounted = false;
}

static void
teardown(void)
{
	char cmd[128];

	gw_audit_close(&au);
	gw_store_close(&st);
	if (mounted)
		umount2(dir, MNT_DETACH);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", dir);
}

TestSuite(audit, .init = setup, .fini = teardown, .timeout = 120);

static void
open_all(void)
{
	char err[512] = "";

	cr_assert_eq(gw_store_open(path, &st, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(gw_audit_open(st, &au, err, sizeof(err)), 0, "%s", err);
}

static void
close_all(void)
{
	gw_audit_close(&au);
	gw_store_close(&st);
}

static uint64_t
record(const char *action, const char *actor, int64_t app)
{
	uint8_t digest[32];
	struct gw_audit_event ev = {
		.action = action, .outcome = "ok", .actor = actor, .uid = 1000, .pid = 42,
		.exe = "/usr/bin/pdfsig", .host = "ws1", .seal = "contract", .application = app,
		.signed_digest = digest, .signed_digest_len = sizeof(digest),
		.mechanism = 0x1 /* CKM_RSA_PKCS */, .detail = "{\"policy\":\"abc\"}",
	};
	uint64_t seq = 0;

	memset(digest, (int)app, sizeof(digest));
	cr_assert_eq(gw_audit_record(au, &ev, &seq), 0, "record %s", action);
	return seq;
}

static int
verify(uint64_t *count, char *err, size_t errlen)
{
	char e[512] = "";
	int r;

	gw_store_close(&st);   /* (the audit writer must be closed first) */
	cr_assert_eq(gw_store_open(path, &st, e, sizeof(e)), 0, "%s", e);
	r = gw_audit_verify_store(st, count, err, errlen);
	return r;
}

/* Runs SQL on the file behind the gateway's back, as an attacker would:
 * the append-only triggers are dropped first. */
static void
tamper(const char *sql)
{
	sqlite3 *db = NULL;
	char *msg = NULL;
	int rc;

	cr_assert_eq(sqlite3_open(path, &db), SQLITE_OK);
	rc = sqlite3_exec(db, "DROP TRIGGER IF EXISTS audit_no_update;"
	                      "DROP TRIGGER IF EXISTS audit_no_delete;", NULL, NULL, &msg);
	cr_assert_eq(rc, SQLITE_OK, "%s", msg);
	rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
	cr_assert_eq(rc, SQLITE_OK, "%s: %s", sql, msg);
	sqlite3_close(db);
}

static void
make_log(int n)
{
	open_all();
	for (int i = 1; i <= n; i++)
		cr_assert_eq(record("sign", i % 2 ? "alice" : "bob", i), (uint64_t)i);
	close_all();
}

static void
expect_bad(const char *needle)
{
	char err[512] = "", e[512] = "";
	uint64_t count = 0;

	cr_assert_eq(gw_store_open(path, &st, e, sizeof(e)), 0, "%s", e);
	cr_assert_eq(gw_audit_verify_store(st, &count, err, sizeof(err)), -1,
	             "tampering not detected (count %llu)", (unsigned long long)count);
	cr_assert(strstr(err, needle), "error '%s' should name '%s'", err, needle);
	fprintf(stderr, "detected: %s\n", err);
}

/* ---- an independent encoder, written from docs/audit.md ---- */

struct buf { uint8_t b[4096]; size_t n; };

static void b_raw(struct buf *b, const void *p, size_t n) { memcpy(b->b + b->n, p, n); b->n += n; }
static void b_u32(struct buf *b, uint32_t v) { uint8_t x[4] = { v >> 24, v >> 16, v >> 8, v }; b_raw(b, x, 4); }
static void b_u64(struct buf *b, uint64_t v) { b_u32(b, (uint32_t)(v >> 32)); b_u32(b, (uint32_t)v); }
static void b_str(struct buf *b, const char *s)
{
	if (!s) { b_u32(b, 0xffffffffu); return; }
	b_u32(b, (uint32_t)strlen(s));
	b_raw(b, s, strlen(s));
}
static void b_bin(struct buf *b, const uint8_t *p, size_t n) { b_u32(b, (uint32_t)n); if (n) b_raw(b, p, n); }

struct row_check { int n; uint8_t prev[32]; bool ok; };

static int
check_row(void *ctx, const struct gw_audit_row *r)
{
	struct row_check *c = ctx;
	struct buf b = { .n = 0 };
	uint8_t h[32];

	b_raw(&b, c->prev, 32);
	b_raw(&b, "SGAUDIT1", 8);
	b_u64(&b, r->seq);
	b_u64(&b, (uint64_t)r->ts_ns);
	b_str(&b, r->action); b_str(&b, r->outcome); b_str(&b, r->reason); b_str(&b, r->actor);
	b_u64(&b, (uint64_t)r->uid); b_u64(&b, (uint64_t)r->pid);
	b_str(&b, r->exe); b_str(&b, r->host); b_str(&b, r->seal);
	b_u64(&b, (uint64_t)r->application);
	b_bin(&b, r->doc_digest, r->doc_digest_len);
	b_bin(&b, r->signed_digest, r->signed_digest_len);
	b_u64(&b, r->mechanism);
	b_str(&b, r->detail);
	SHA256(b.b, b.n, h);
	cr_assert_eq(r->prev_hash_len, 32);
	cr_assert_eq(memcmp(r->prev_hash, c->prev, 32), 0, "seq %llu prev", (unsigned long long)r->seq);
	cr_assert_eq(memcmp(r->hash, h, 32), 0, "seq %llu: hash differs from the documented encoding",
	             (unsigned long long)r->seq);
	memcpy(c->prev, h, 32);
	c->n++;
	return 0;
}

/* ---- chain ---- */

Test(audit, records_are_chained_as_documented)
{
	struct row_check c = { .n = 0 };
	struct gw_audit_event ev = { .action = "login", .outcome = "denied", .reason = "bad TOTP",
	                             .uid = -1, .pid = -1 };
	char err[512] = "";
	uint64_t seq, count = 0, hseq;
	uint8_t hh[32], sh[32];
	int64_t before, after;
	struct timespec ts;

	open_all();
	clock_gettime(CLOCK_REALTIME, &ts);
	before = ts.tv_sec * 1000000000LL + ts.tv_nsec;
	for (int i = 1; i <= 10; i++)
		cr_assert_eq(record("sign", "alice", i), (uint64_t)i);
	cr_assert_eq(gw_audit_record(au, &ev, &seq), 0);
	cr_assert_eq(seq, 11);
	clock_gettime(CLOCK_REALTIME, &ts);
	after = ts.tv_sec * 1000000000LL + ts.tv_nsec;
	gw_audit_head(au, &hseq, hh);
	cr_assert_eq(hseq, 11);
	cr_assert_eq(gw_store_audit_head(st, &seq, sh, err, sizeof(err)), 1);
	cr_assert_eq(memcmp(hh, sh, 32), 0);
	cr_assert_eq(gw_audit_verify_store(st, &count, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(count, 11);
	cr_assert_eq(gw_store_audit_scan(st, check_row, &c, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(c.n, 11);
	(void)before;
	(void)after;
}

static int
check_time(void *ctx, const struct gw_audit_row *r)
{
	int64_t *lim = ctx;

	cr_assert(r->ts_ns >= lim[0] && r->ts_ns <= lim[1], "ts_ns %lld outside the test's window",
	          (long long)r->ts_ns);
	return 0;
}

Test(audit, time_is_realtime_ns)
{
	struct timespec ts;
	int64_t lim[2];
	char err[256];

	open_all();
	clock_gettime(CLOCK_REALTIME, &ts);
	lim[0] = ts.tv_sec * 1000000000LL + ts.tv_nsec;
	record("sign", "alice", 1);
	clock_gettime(CLOCK_REALTIME, &ts);
	lim[1] = ts.tv_sec * 1000000000LL + ts.tv_nsec;
	cr_assert_eq(gw_store_audit_scan(st, check_time, lim, err, sizeof(err)), 0);
}

Test(audit, reopen_continues_the_chain)
{
	char err[512] = "";
	uint64_t count;

	make_log(5);
	open_all();
	cr_assert_eq(record("sign", "carol", 6), 6);
	close_all();
	cr_assert_eq(verify(&count, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(count, 6);
}

Test(audit, lone_record_is_prompt)
{
	struct timespec a, b;
	double ms;

	open_all();
	record("sign", "alice", 1);
	clock_gettime(CLOCK_MONOTONIC, &a);
	record("sign", "alice", 2);
	clock_gettime(CLOCK_MONOTONIC, &b);
	ms = (double)(b.tv_sec - a.tv_sec) * 1e3 + (double)(b.tv_nsec - a.tv_nsec) / 1e6;
	cr_assert(ms < 200, "a lone record took %.1f ms", ms);
}

Test(audit, oversized_record_refused)
{
	char *big = malloc(70 * 1024);
	struct gw_audit_event ev = { .action = "sign", .detail = big, .uid = -1, .pid = -1 };
	uint64_t seq = 0;

	cr_assert(big);
	memset(big, 'x', 70 * 1024 - 1);
	big[70 * 1024 - 1] = '\0';
	open_all();
	cr_assert_eq(gw_audit_record(au, &ev, &seq), -1);
	free(big);
	cr_assert_eq(record("sign", "alice", 1), 1, "the log goes on");
}

/* ---- tampering ---- */

Test(audit, changed_field_is_named)
{
	make_log(20);
	tamper("UPDATE audit SET actor = 'mallory' WHERE seq = 7");
	expect_bad("seq 7:");
}

Test(audit, changed_digest_is_named)
{
	make_log(20);
	tamper("UPDATE audit SET signed_digest = zeroblob(32) WHERE seq = 12");
	expect_bad("seq 12:");
}

Test(audit, null_made_text_is_named)
{
	make_log(20);
	tamper("UPDATE audit SET reason = 'x' WHERE seq = 3");
	expect_bad("seq 3:");
}

Test(audit, removed_record_is_named)
{
	make_log(20);
	tamper("DELETE FROM audit WHERE seq = 9");
	expect_bad("seq 9: missing");
}

Test(audit, removed_first_record_is_named)
{
	make_log(5);
	tamper("DELETE FROM audit WHERE seq = 1");
	expect_bad("seq 1: missing");
}

Test(audit, swapped_records_are_named)
{
	make_log(20);
	/* Swap everything but seq between 5 and 6. */
	tamper("CREATE TEMP TABLE t AS SELECT * FROM audit WHERE seq IN (5, 6);"
	       "UPDATE audit SET (ts_ns, action, outcome, reason, actor, uid, pid, exe, host, seal,"
	       " application, doc_digest, signed_digest, mechanism, detail, prev_hash, hash) ="
	       " (SELECT ts_ns, action, outcome, reason, actor, uid, pid, exe, host, seal,"
	       "  application, doc_digest, signed_digest, mechanism, detail, prev_hash, hash"
	       "  FROM t WHERE t.seq = 11 - audit.seq) WHERE seq IN (5, 6);");
	expect_bad("seq 5:");
}

Test(audit, inserted_record_is_named)
{
	make_log(20);
	/* Renumber 11..20 up by one and slip a record in at 11. */
	tamper("UPDATE audit SET seq = seq + 100 WHERE seq > 10;"
	       "UPDATE audit SET seq = seq - 99 WHERE seq > 100;"
	       "INSERT INTO audit SELECT 11, ts_ns, action, outcome, reason, 'mallory', uid, pid,"
	       " exe, host, seal, application, doc_digest, signed_digest, mechanism, detail,"
	       " hash, hash FROM audit WHERE seq = 10;");
	expect_bad("seq 11:");
}

Test(audit, forged_record_at_the_end_is_named)
{
	make_log(20);
	tamper("INSERT INTO audit SELECT 21, ts_ns, action, outcome, reason, actor, uid, pid,"
	       " exe, host, seal, application, doc_digest, signed_digest, mechanism, detail,"
	       " hash, zeroblob(32) FROM audit WHERE seq = 20;");
	expect_bad("seq 21:");
}

Test(audit, cut_tail_needs_the_remembered_head)
{
	uint64_t head_seq, count = 0;
	uint8_t head_hash[32];
	char err[512] = "", e[512];

	open_all();
	for (int i = 1; i <= 20; i++)
		record("sign", "alice", i);
	gw_audit_head(au, &head_seq, head_hash);
	close_all();
	tamper("DELETE FROM audit WHERE seq > 17");
	cr_assert_eq(gw_store_open(path, &st, e, sizeof(e)), 0, "%s", e);
	/* The chain alone cannot see a cut end (docs/audit.md) ... */
	cr_assert_eq(gw_audit_verify_store(st, &count, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(count, 17);
	/* ... the remembered head can. */
	cr_assert_eq(gw_audit_verify_store_anchor(st, head_seq, head_hash, &count, err, sizeof(err)), -1);
	cr_assert(strstr(err, "seq 18: missing"), "%s", err);
	/* A rewritten log that keeps the length fails the anchor too. */
	cr_assert_eq(gw_audit_verify_store_anchor(st, 17, head_hash, &count, err, sizeof(err)), -1);
	cr_assert(strstr(err, "seq 17:"), "%s", err);
}

Test(audit, truncated_file_is_detected)
{
	char err[512] = "", e[512] = "";
	uint64_t count = 0;
	struct stat sb;

	make_log(2000);
	cr_assert_eq(stat(path, &sb), 0);
	cr_assert(sb.st_size > 8192);
	cr_assert_eq(truncate(path, sb.st_size / 2), 0);
	/* Either the store refuses the file or the walk fails; never "intact". */
	if (gw_store_open(path, &st, e, sizeof(e)) == 0)
		cr_assert_eq(gw_audit_verify_store(st, &count, err, sizeof(err)), -1,
		             "a half file verified (%llu records)", (unsigned long long)count);
}

/* ---- group commit ---- */

#define WRITERS 8
#define PER_WRITER 500

struct writer { int id; uint64_t seqs[PER_WRITER]; int fails; };

static void *
writer_main(void *arg)
{
	struct writer *w = arg;
	char actor[16];
	struct gw_audit_event ev = { .action = "sign", .outcome = "ok", .actor = actor,
	                             .uid = 1000, .pid = 1 };

	snprintf(actor, sizeof(actor), "user%d", w->id);
	for (int i = 0; i < PER_WRITER; i++) {
		ev.application = i;
		if (gw_audit_record(au, &ev, &w->seqs[i]) != 0)
			w->fails++;
	}
	return NULL;
}

static int
cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

Test(audit, parallel_records_group_commit)
{
	static struct writer w[WRITERS];
	static uint64_t all[WRITERS * PER_WRITER];
	pthread_t th[WRITERS];
	struct gw_audit_stats s;
	char err[512] = "";
	uint64_t count = 0;

	open_all();
	for (int i = 0; i < WRITERS; i++) {
		memset(&w[i], 0, sizeof(w[i]));
		w[i].id = i;
		cr_assert_eq(pthread_create(&th[i], NULL, writer_main, &w[i]), 0);
	}
	for (int i = 0; i < WRITERS; i++) {
		pthread_join(th[i], NULL);
		cr_assert_eq(w[i].fails, 0);
		for (int j = 1; j < PER_WRITER; j++)
			cr_assert(w[i].seqs[j] > w[i].seqs[j - 1], "one thread's records keep their order");
		memcpy(all + i * PER_WRITER, w[i].seqs, sizeof(w[i].seqs));
	}
	qsort(all, WRITERS * PER_WRITER, sizeof(all[0]), cmp_u64);
	for (int i = 0; i < WRITERS * PER_WRITER; i++)
		cr_assert_eq(all[i], (uint64_t)i + 1, "seqs are distinct and contiguous");
	gw_audit_get_stats(au, &s);
	cr_assert_eq(s.records, WRITERS * PER_WRITER);
	cr_assert_eq(s.failed_batches, 0);
	cr_assert_lt(s.commits, s.records / 2, "group commit: %llu commits for %llu records",
	             (unsigned long long)s.commits, (unsigned long long)s.records);
	cr_assert_gt(s.max_batch, 1);
	fprintf(stderr, "group commit: %llu records in %llu commits (largest %llu)\n",
	        (unsigned long long)s.records, (unsigned long long)s.commits,
	        (unsigned long long)s.max_batch);
	cr_assert_eq(gw_audit_verify_store(st, &count, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(count, WRITERS * PER_WRITER);
}

/* ---- two stages: a batch commits while the one before is still out ---- */

static pthread_mutex_t stage_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t stage_cv = PTHREAD_COND_INITIALIZER;
static bool first_held, second_applied, applied_while_held;
static uint64_t observed[4];
static size_t nobserved;

/* Holds the first batch's release (the observer runs once it is durable,
 * before its caller is woken) until the second record's transaction ran,
 * or 30 s: long past any disk, so only a writer that cannot start the
 * next batch meanwhile gets there. */
static void
holding_observer(void *arg, const struct gw_audit_row *rows, size_t n)
{
	struct timespec until;

	(void)arg;
	pthread_mutex_lock(&stage_mu);
	for (size_t i = 0; i < n && nobserved < 4; i++)
		observed[nobserved++] = rows[i].seq;
	if (!first_held) {
		first_held = true;
		pthread_cond_broadcast(&stage_cv);
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += 30;
		while (!second_applied &&
		       pthread_cond_timedwait(&stage_cv, &stage_mu, &until) == 0)
			;
		applied_while_held = second_applied;
	}
	pthread_mutex_unlock(&stage_mu);
}

static int
note_applied(struct gw_store *s, void *arg, char *err, size_t errlen)
{
	(void)s; (void)arg; (void)err; (void)errlen;
	pthread_mutex_lock(&stage_mu);
	second_applied = true;
	pthread_cond_broadcast(&stage_cv);
	pthread_mutex_unlock(&stage_mu);
	return 0;
}

static void *
first_record_main(void *arg)
{
	struct gw_audit_event ev = { .action = "sign", .outcome = "ok", .actor = "alice",
	                             .uid = 1, .pid = 1 };

	return gw_audit_record(au, &ev, arg) == 0 ? arg : NULL;
}

Test(audit, the_next_batch_commits_while_the_one_before_is_released)
{
	struct gw_audit_event ev = { .action = "sign", .outcome = "ok", .actor = "bob",
	                             .uid = 2, .pid = 2 };
	struct gw_audit_ticket *t = NULL;
	uint64_t seq1 = 0, seq2 = 0, count = 0;
	char err[512] = "";
	pthread_t th;
	void *ok;

	open_all();
	gw_audit_set_observer(au, holding_observer, NULL);
	cr_assert_eq(pthread_create(&th, NULL, first_record_main, &seq1), 0);
	pthread_mutex_lock(&stage_mu);
	while (!first_held)
		pthread_cond_wait(&stage_cv, &stage_mu);
	pthread_mutex_unlock(&stage_mu);
	/* The first record is durable and held in its release. */
	cr_assert_eq(gw_audit_submit_with(au, &ev, note_applied, NULL, &t, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(gw_audit_wait(au, &t, &seq2, err, sizeof(err)), 0, "%s", err);
	pthread_join(th, &ok);
	cr_assert_not_null(ok, "the first record was written");
	pthread_mutex_lock(&stage_mu);
	cr_assert(applied_while_held, "the second record's transaction ran while the first was held");
	cr_assert_eq(nobserved, 2);
	pthread_mutex_unlock(&stage_mu);
	cr_assert_eq(seq1, 1);
	cr_assert_eq(seq2, 2);
	cr_assert_eq(observed[0], 1, "released in commit order");
	cr_assert_eq(observed[1], 2);
	gw_audit_set_observer(au, NULL, NULL);
	cr_assert_eq(gw_audit_verify_store(st, &count, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(count, 2);
}

/* ---- commit failure ---- */

static int fail_commits;

static int
commit_hook(void *ctx)
{
	(void)ctx;
	return __atomic_load_n(&fail_commits, __ATOMIC_SEQ_CST);
}

Test(audit, failed_commit_fails_the_record_and_keeps_the_chain)
{
	struct gw_audit_event ev = { .action = "sign", .outcome = "ok", .uid = 1, .pid = 1 };
	struct gw_audit_stats s;
	uint64_t seq = 0, count = 0;
	char err[512] = "";

	open_all();
	for (int i = 1; i <= 5; i++)
		record("sign", "alice", i);
	gw_store_test_set_commit_hook(st, commit_hook, NULL);
	__atomic_store_n(&fail_commits, 1, __ATOMIC_SEQ_CST);
	cr_assert_eq(gw_audit_record(au, &ev, &seq), -1, "a record whose commit failed must fail");
	cr_assert_eq(gw_audit_record(au, &ev, &seq), -1);
	__atomic_store_n(&fail_commits, 0, __ATOMIC_SEQ_CST);
	cr_assert_eq(gw_audit_record(au, &ev, &seq), 0);
	cr_assert_eq(seq, 6, "failed records take no seq");
	gw_audit_get_stats(au, &s);
	cr_assert_eq(s.failed_records, 2);
	cr_assert_eq(gw_audit_verify_store(st, &count, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(count, 6);
}

struct failer { int ok, fail; };

static void *
failer_main(void *arg)
{
	struct failer *f = arg;
	struct gw_audit_event ev = { .action = "sign", .outcome = "ok", .uid = 1, .pid = 1 };
	uint64_t seq;

	for (int i = 0; i < 50; i++) {
		if (gw_audit_record(au, &ev, &seq) == 0)
			f->ok++;
		else
			f->fail++;
	}
	return NULL;
}

Test(audit, failed_commit_under_load_fails_everyone_in_the_batch)
{
	struct failer f[4] = { { 0 } };
	pthread_t th[4];
	uint64_t count = 0;
	char err[512] = "";

	open_all();
	gw_store_test_set_commit_hook(st, commit_hook, NULL);
	__atomic_store_n(&fail_commits, 1, __ATOMIC_SEQ_CST);
	for (int i = 0; i < 4; i++)
		pthread_create(&th[i], NULL, failer_main, &f[i]);
	for (int i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		cr_assert_eq(f[i].ok, 0);
		cr_assert_eq(f[i].fail, 50);
	}
	__atomic_store_n(&fail_commits, 0, __ATOMIC_SEQ_CST);
	cr_assert_eq(record("sign", "alice", 1), 1);
	cr_assert_eq(gw_audit_verify_store(st, &count, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(count, 1);
}

Test(audit, disk_full_fails_the_record_and_keeps_the_chain)
{
	char filler[160], err[512] = "", detail[8192];
	struct gw_audit_event ev = { .action = "sign", .outcome = "ok", .uid = 1, .pid = 1,
	                             .detail = detail };
	uint64_t seq = 0, count = 0, ok = 0;
	int fd, failed = 0;
	char block[4096];

	/* A real ENOSPC needs a tiny file system: root can mount a tmpfs. */
	if (mount("sg-audit-test", dir, "tmpfs", 0, "size=384k,mode=0700") != 0)
		cr_skip_test("cannot mount a tmpfs here (%s)", strerror(errno));
	mounted = true;
	snprintf(filler, sizeof(filler), "%s/filler", dir);
	open_all();
	cr_assert_eq(record("sign", "alice", 1), 1);
	memset(detail, 'd', sizeof(detail) - 1);
	detail[sizeof(detail) - 1] = '\0';
	/* Keep some space back to free later. */
	fd = open(filler, O_WRONLY | O_CREAT, 0600);
	cr_assert(fd >= 0);
	memset(block, 0, sizeof(block));
	for (int i = 0; i < 16; i++)
		cr_assert_eq(write(fd, block, sizeof(block)), (ssize_t)sizeof(block));
	close(fd);
	for (int i = 0; i < 1000 && !failed; i++) {
		if (gw_audit_record(au, &ev, &seq) != 0)
			failed = 1;
		else
			ok++;
	}
	cr_assert(failed, "the file system never filled");
	cr_assert_eq(unlink(filler), 0);
	cr_assert_eq(gw_audit_record(au, &ev, &seq), 0, "the log resumes once there is space");
	cr_assert_eq(seq, ok + 2, "the failed record took no seq (got %llu after %llu)",
	             (unsigned long long)seq, (unsigned long long)ok);
	cr_assert_eq(gw_audit_verify_store(st, &count, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(count, seq);
}

/* ---- the worked example of docs/audit.md ---- */

static void
hex(const uint8_t *p, size_t n, char *out)
{
	for (size_t i = 0; i < n; i++)
		sprintf(out + 2 * i, "%02x", p[i]);
}

Test(audit, documented_example_vectors)
{
	uint8_t zero[32] = { 0 }, sd[32], h1[32], h2[32], enc[512];
	char hx[1100];
	struct gw_audit_row r1 = {
		.seq = 1, .ts_ns = 1767225600000000000LL, .action = "sign", .outcome = "ok",
		.actor = "alice", .uid = 1000, .pid = 4242, .exe = "/usr/bin/pdfsig", .host = "ws1",
		.seal = "contract", .application = 7, .signed_digest = sd, .signed_digest_len = 32,
		.mechanism = 1,
	};
	struct gw_audit_row r2 = {
		.seq = 2, .ts_ns = 1767225601500000000LL, .action = "login", .outcome = "denied",
		.reason = "wrong TOTP code", .actor = "bob", .uid = -1, .pid = -1, .detail = "",
	};
	size_t n;

	memset(sd, 0x11, sizeof(sd));
	n = gw_audit_row_encode(&r1, enc, sizeof(enc));
	cr_assert_eq(n, 165);
	hex(enc, n, hx);
	cr_assert_str_eq(hx, "5347415544495431000000000000000118867251edfa0000000000047369676e"
	                     "000000026f6bffffffff00000005616c69636500000000000003e80000000000"
	                     "0010920000000f2f7573722f62696e2f7064667369670000000377733100000008"
	                     "636f6e74726163740000000000000007000000000000002011111111111111111111"
	                     "111111111111111111111111111111111111111111110000000000000001ffffffff");
	cr_assert_eq(gw_audit_row_encode(&r1, enc, 10), 165, "a short buffer still reports the length");
	cr_assert_eq(gw_audit_row_hash(zero, &r1, h1), 0);
	hex(h1, 32, hx);
	cr_assert_str_eq(hx, "6d19123de900fb3dc440a72a7962e4ac36c1fc8c2178559082a3ee07bf8ecd5d");
	cr_assert_eq(gw_audit_row_encode(&r2, enc, sizeof(enc)), 125);
	cr_assert_eq(gw_audit_row_hash(h1, &r2, h2), 0);
	hex(h2, 32, hx);
	cr_assert_str_eq(hx, "9bd477fb3b38072537bc72d6a2559347e119b1ce84eb1fa3292b5d1b103876ab");
}

/* ---- the checkpoint chain, in the verifier alone ----
 *
 * Ten records and four checkpoints signed here with a P-256 key of the
 * test's own (the verifier is told to trust its certificate): two made
 * before the chain (SGCHKPT1, ids 1 and 2) and two chained ones after
 * them, the first signing the hash of the last SGCHKPT1 one. */

#define VLOG_N 10

struct vlog {
	EVP_PKEY *key;
	uint8_t *cert; size_t cert_len;
	struct gw_audit_row rows[VLOG_N];
	uint8_t hash[VLOG_N + 1][32];
	struct gw_audit_checkpoint cp[4];
	uint8_t sig[4][128];
};

static void
vlog_sign(struct vlog *l, struct gw_audit_checkpoint *cp, uint8_t *sig)
{
	uint8_t msg[GW_AUDIT_CHECKPOINT_MSG_LEN];
	size_t n = gw_audit_checkpoint_message(cp, msg), sl = 128;
	EVP_MD_CTX *md = EVP_MD_CTX_new();

	cr_assert(md && EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, l->key) == 1 &&
	          EVP_DigestSign(md, sig, &sl, msg, n) == 1);
	EVP_MD_CTX_free(md);
	cp->alg = "ecdsa-sha256";
	cp->sig = sig;
	cp->sig_len = sl;
}

/* Checkpoint i (0-based) of id i+1 over record seq; chained ones follow
 * checkpoint i-1. */
static void
vlog_cp(struct vlog *l, int i, uint64_t seq, bool chained, int64_t ts)
{
	struct gw_audit_checkpoint *cp = &l->cp[i];

	memset(cp, 0, sizeof(*cp));
	cp->id = (uint64_t)i + 1;
	cp->seq = seq;
	cp->ts_ns = ts;
	memcpy(cp->hash, l->hash[seq], 32);
	cp->chained = chained;
	if (chained && i > 0) {
		cp->prev_id = l->cp[i - 1].id;
		cr_assert_eq(gw_audit_checkpoint_hash(&l->cp[i - 1], cp->prev_hash), 0);
	}
	vlog_sign(l, cp, l->sig[i]);
}

static void
vlog_make(struct vlog *l)
{
	X509 *x = X509_new();
	unsigned char *p = NULL;
	int n;

	memset(l, 0, sizeof(*l));
	l->key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	cr_assert(l->key && x);
	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
	X509_gmtime_adj(X509_getm_notBefore(x), 0);
	X509_gmtime_adj(X509_getm_notAfter(x), 3600);
	X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
	                           (const unsigned char *)"test audit", -1, -1, 0);
	X509_set_issuer_name(x, X509_get_subject_name(x));
	X509_set_pubkey(x, l->key);
	cr_assert(X509_sign(x, l->key, EVP_sha256()) > 0);
	n = i2d_X509(x, &p);
	cr_assert_gt(n, 0);
	l->cert = p;
	l->cert_len = (size_t)n;
	X509_free(x);
	for (int i = 0; i < VLOG_N; i++) {
		struct gw_audit_row *r = &l->rows[i];
		r->seq = (uint64_t)i + 1;
		r->ts_ns = 1767225600000000000LL + i;
		r->action = "sign";
		r->outcome = "ok";
		r->uid = r->pid = -1;
		r->prev_hash = l->hash[i];
		r->prev_hash_len = 32;
		cr_assert_eq(gw_audit_row_hash(l->hash[i], r, l->hash[i + 1]), 0);
		r->hash = l->hash[i + 1];
		r->hash_len = 32;
	}
	vlog_cp(l, 0, 3, false, 100);
	vlog_cp(l, 1, 5, false, 200);
	vlog_cp(l, 2, 7, true, 300);
	vlog_cp(l, 3, 10, true, 400);
}

static void
vlog_free(struct vlog *l)
{
	EVP_PKEY_free(l->key);
	OPENSSL_free(l->cert);
}

/* Verifies l's records with the checkpoints whose bit is set in mask;
 * the verdict's problems and notes joined in text. */
static int
vlog_verify(struct vlog *l, unsigned mask, char *text, size_t len)
{
	struct gw_audit_verifier *v = gw_audit_verifier_new();
	struct gw_audit_verdict vd;
	size_t off = 0;
	int rc;

	cr_assert(v);
	cr_assert_eq(gw_audit_verifier_pin_cert(v, l->cert, l->cert_len), 0);
	for (int i = 0; i < 4; i++)
		if (mask & (1u << i))
			gw_audit_verifier_add_checkpoint(v, &l->cp[i], NULL);
	for (int i = 0; i < VLOG_N; i++)
		gw_audit_verifier_add_record(v, &l->rows[i], NULL);
	rc = gw_audit_verifier_finish(v, &vd);
	text[0] = '\0';
	for (size_t i = 0; i < vd.n_problems && off < len; i++)
		off += (size_t)snprintf(text + off, len - off, "problem: %s\n", vd.problems[i]);
	for (size_t i = 0; i < vd.n_notes && off < len; i++)
		off += (size_t)snprintf(text + off, len - off, "note: %s\n", vd.notes[i]);
	gw_audit_verifier_free(&v);
	return rc;
}

Test(audit, checkpoint_chain_after_older_checkpoints_verifies)
{
	static struct vlog l;
	char text[4096];

	vlog_make(&l);
	cr_assert_eq(vlog_verify(&l, 0xf, text, sizeof(text)), 0, "%s", text);
	cr_assert(strstr(text, "note: 2 checkpoint(s) up to id 2 predate the checkpoint chain"), "%s", text);
	vlog_free(&l);
}

Test(audit, a_removed_checkpoint_is_named_by_its_id)
{
	static struct vlog l;
	char text[4096];

	vlog_make(&l);
	/* The chained checkpoint 3 removed (its seq 7 is still covered by
	 * nothing else: only the id gap shows it). */
	cr_assert_eq(vlog_verify(&l, 0xb, text, sizeof(text)), 1, "%s", text);
	cr_assert(strstr(text, "checkpoint id 3: missing"), "%s", text);
	/* One of the older ones: their ids are not signed, still a gap. */
	cr_assert_eq(vlog_verify(&l, 0xd, text, sizeof(text)), 1, "%s", text);
	cr_assert(strstr(text, "checkpoint id 2: missing"), "%s", text);
	vlog_free(&l);
}

Test(audit, a_replaced_checkpoint_breaks_the_chain)
{
	static struct vlog l;
	char text[4096];

	vlog_make(&l);
	/* Checkpoint 3 signed again (a validly signed one, another time): 4
	 * signed the hash of the first. */
	vlog_cp(&l, 2, 7, true, 301);
	cr_assert_eq(vlog_verify(&l, 0xf, text, sizeof(text)), 1, "%s", text);
	cr_assert(strstr(text, "checkpoint id 4") && strstr(text, "the checkpoint chain is broken"),
	          "%s", text);
	vlog_free(&l);
}

Test(audit, a_log_cut_back_between_two_checkpoints_is_named)
{
	static struct vlog l;
	char text[4096];

	vlog_make(&l);
	/* Checkpoint 4 covers seq 6 after checkpoint 3 covered seq 7. */
	vlog_cp(&l, 3, 6, true, 400);
	cr_assert_eq(vlog_verify(&l, 0xf, text, sizeof(text)), 1, "%s", text);
	cr_assert(strstr(text, "the log was cut back between them"), "%s", text);
	vlog_free(&l);
}
