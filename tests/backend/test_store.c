/*
 * gateway/store/sqlite/store.c on real SQLite files in a temp dir: creation mode,
 * migrations, refusal of newer schemas, accounts, the audit row API and
 * the append-only triggers.
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "store.h"
#include "sqlite_store.h"   /* gw_store_db: a look at the file from inside */
#include "backend.h"

static char dir[64];
static char path[128];
static struct gw_store *st;

static void
setup(void)
{
	strcpy(dir, "/tmp/sg-store-XXXXXX");
	cr_assert(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/sealgate.db", dir);
}

static void
teardown(void)
{
	char cmd[128];

	gw_store_close(&st);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", dir);
}

TestSuite(store, .init = setup, .fini = teardown, .timeout = 60);

static void
open_ok(int upto)
{
	char err[512] = "";

	cr_assert_eq(gw_store_open_version(path, upto, &st, err, sizeof(err)), 0, "open: %s", err);
}

/* Runs SQL on the file behind the gateway's back. */
static int
raw_sql(const char *sql)
{
	sqlite3 *db = NULL;
	int rc;

	cr_assert_eq(sqlite3_open(path, &db), SQLITE_OK);
	rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
	sqlite3_close(db);
	return rc;
}

static mode_t
file_mode(const char *p)
{
	struct stat sb;

	cr_assert_eq(stat(p, &sb), 0, "stat %s", p);
	return sb.st_mode & 07777;
}

Test(store, create_is_0600_and_latest_schema)
{
	char wal[160];

	umask(022);
	open_ok(0);
	cr_assert_eq(file_mode(path), 0600);
	cr_assert_eq(gw_store_schema_version(st), GW_STORE_SCHEMA_LATEST);
	cr_assert_eq(gw_store_password_set(st, "alice", "$argon2id$x"), 0);
	snprintf(wal, sizeof(wal), "%s-wal", path);
	cr_assert_eq(file_mode(wal), 0600, "the WAL must not be more readable than the database");
}

Test(store, loose_mode_is_tightened)
{
	FILE *f = fopen(path, "w");

	cr_assert(f);
	fclose(f);
	chmod(path, 0644);
	open_ok(0);
	cr_assert_eq(file_mode(path), 0600);
}

Test(store, symlink_refused)
{
	char target[160], err[256] = "";

	snprintf(target, sizeof(target), "%s/elsewhere.db", dir);
	cr_assert_eq(symlink(target, path), 0);
	cr_assert_eq(gw_store_open(path, &st, err, sizeof(err)), -1);
	cr_assert_null(st);
	cr_assert(access(target, F_OK) != 0, "nothing created through the link");
}

Test(store, journal_is_wal_and_synchronous_full)
{
	sqlite3 *db;
	sqlite3_stmt *s;

	open_ok(0);
	cr_assert_eq(sqlite3_open(path, &db), SQLITE_OK);
	cr_assert_eq(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &s, NULL), SQLITE_OK);
	cr_assert_eq(sqlite3_step(s), SQLITE_ROW);
	cr_assert_str_eq((const char *)sqlite3_column_text(s, 0), "wal");
	sqlite3_finalize(s);
	sqlite3_close(db);
}

Test(store, passwords)
{
	char hash[128];

	open_ok(0);
	cr_assert_eq(gw_store_password_get(st, "alice", hash, sizeof(hash)), 0);
	cr_assert_eq(gw_store_password_set(st, "alice", "$argon2id$v=19$one"), 0);
	cr_assert_eq(gw_store_password_get(st, "alice", hash, sizeof(hash)), 1);
	cr_assert_str_eq(hash, "$argon2id$v=19$one");
	cr_assert_eq(gw_store_password_set(st, "alice", "$argon2id$v=19$two"), 0);
	cr_assert_eq(gw_store_password_get(st, "alice", hash, sizeof(hash)), 1);
	cr_assert_str_eq(hash, "$argon2id$v=19$two");
	/* Too small a buffer is an error, never a truncated hash. */
	cr_assert_eq(gw_store_password_get(st, "alice", hash, 5), -1);
	/* An account without a password. */
	cr_assert_eq(gw_store_password_set(st, "bob", NULL), 0);
	cr_assert_eq(gw_store_password_get(st, "bob", hash, sizeof(hash)), 0);
	cr_assert_eq(gw_store_password_set(st, "", "x"), -1);
}

/* The interface reaches the store only through the table of calls the
 * store was opened with (gateway/store/backend.h): a table put in its place
 * answers every call, the SQLite one included. */
static int
fake_password_get(struct gw_store *s, const char *user, char *hash, size_t hashlen)
{
	snprintf(hash, hashlen, "from-the-table:%s", user);
	return 1;
}

static int
fake_app_get(struct gw_store *s, int64_t id, struct gw_application *app)
{
	memset(app, 0, sizeof(*app));
	app->id = id * 2;
	return 1;
}

static int
fake_totp_enrolled(struct gw_store *s, const char *user)
{
	return strcmp(user, "alice") == 0 ? 1 : 0;
}

Test(store, calls_go_through_the_backend_table)
{
	struct gw_store_head *head;
	struct gw_store_ops fake;
	const struct gw_store_ops *real;
	struct gw_application app;
	char hash[128];

	open_ok(0);
	cr_assert_str_eq(gw_store_backend(st), "sqlite");
	cr_assert_eq(gw_store_password_set(st, "alice", "$argon2id$v=19$real"), 0);
	head = (struct gw_store_head *)(void *)st;
	real = head->ops;
	cr_assert_eq(real, &gw_store_sqlite_ops);
	fake = *real;
	fake.name = "fake";
	fake.password_get = fake_password_get;
	fake.app_get = fake_app_get;
	fake.totp_enrolled = fake_totp_enrolled;
	head->ops = &fake;
	cr_assert_str_eq(gw_store_backend(st), "fake");
	cr_assert_eq(gw_store_password_get(st, "alice", hash, sizeof(hash)), 1);
	cr_assert_str_eq(hash, "from-the-table:alice");
	cr_assert_eq(gw_appstore_get(st, 21, &app), 1);
	cr_assert_eq(app.id, 42);
	cr_assert_eq(gw_store_totp_enrolled(st, "alice"), 1);
	/* The calls left as they were still reach SQLite. */
	cr_assert_eq(gw_store_schema_version(st), GW_STORE_SCHEMA_LATEST);
	head->ops = real;
	cr_assert_eq(gw_store_password_get(st, "alice", hash, sizeof(hash)), 1);
	cr_assert_str_eq(hash, "$argon2id$v=19$real");
}

Test(store, reopen_keeps_data)
{
	char hash[128];

	open_ok(0);
	cr_assert_eq(gw_store_password_set(st, "alice", "h1"), 0);
	gw_store_close(&st);
	cr_assert_null(st);
	open_ok(0);
	cr_assert_eq(gw_store_password_get(st, "alice", hash, sizeof(hash)), 1);
	cr_assert_str_eq(hash, "h1");
	cr_assert_eq(gw_store_schema_version(st), GW_STORE_SCHEMA_LATEST);
}

/* The backend token's binding: none before the file exists or before the
 * first bind, read back while the store is open elsewhere, and a row that
 * is not one is an error, not a binding. */
Test(store, token_binding_peek_and_set)
{
	struct gw_store_binding b = { .serial = "626324eaf9dea992", .ncerts = 5,
	                              .since = 1764300000 }, got;
	char err[256] = "";

	memset(b.certs, 0xa5, sizeof(b.certs));
	cr_assert_eq(gw_store_binding_peek(path, &got, err, sizeof(err)), 0, "no file yet: %s", err);
	open_ok(0);
	cr_assert_eq(gw_store_binding_peek(path, &got, err, sizeof(err)), 0, "never bound: %s", err);
	cr_assert_eq(gw_store_binding_set(st, &b, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(gw_store_binding_peek(path, &got, err, sizeof(err)), 1, "%s", err);
	cr_assert_str_eq(got.serial, b.serial);
	cr_assert_eq(memcmp(got.certs, b.certs, sizeof(b.certs)), 0);
	cr_assert_eq(got.ncerts, 5);
	cr_assert_eq(got.since, 1764300000);
	/* Rebound: replaced, not added. */
	snprintf(b.serial, sizeof(b.serial), "0a2ae2d705e33f16");
	cr_assert_eq(gw_store_binding_set(st, &b, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(gw_store_binding_peek(path, &got, err, sizeof(err)), 1, "%s", err);
	cr_assert_str_eq(got.serial, "0a2ae2d705e33f16");
	gw_store_close(&st);

	cr_assert_eq(raw_sql("UPDATE store_meta SET value = x'0102' WHERE name = 'token_binding'"),
	             SQLITE_OK);
	err[0] = '\0';
	cr_assert_eq(gw_store_binding_peek(path, &got, err, sizeof(err)), -1);
	cr_assert(strstr(err, "malformed"), "%s", err);
}

Test(store, migrates_from_version_1)
{
	char hash[128], err[256];
	uint64_t seq;
	uint8_t h[32];

	open_ok(1);
	cr_assert_eq(gw_store_schema_version(st), 1);
	cr_assert_eq(gw_store_audit_head(st, &seq, h, err, sizeof(err)), -1, "no audit table at v1");
	cr_assert_eq(gw_store_password_set(st, "alice", "h1"), 0);
	gw_store_close(&st);

	open_ok(0);
	cr_assert_eq(gw_store_schema_version(st), GW_STORE_SCHEMA_LATEST);
	cr_assert_eq(gw_store_password_get(st, "alice", hash, sizeof(hash)), 1);
	cr_assert_eq(gw_store_audit_head(st, &seq, h, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(seq, 0);
}

Test(store, newer_schema_refused)
{
	char err[256] = "";

	open_ok(0);
	gw_store_close(&st);
	cr_assert_eq(raw_sql("INSERT INTO schema_version VALUES (99, 0)"), SQLITE_OK);
	cr_assert_eq(gw_store_open(path, &st, err, sizeof(err)), -1);
	cr_assert(strstr(err, "schema version 99"), "%s", err);
}

static int
collect(void *ctx, const struct gw_audit_row *r)
{
	uint64_t *seen = ctx;

	cr_assert_null(r->bad_column, "column %s", r->bad_column);
	seen[0]++;
	seen[1] += r->seq;
	if (r->seq == 2) {
		cr_assert_str_eq(r->action, "sign");
		cr_assert_null(r->reason);
		cr_assert_str_eq(r->detail, "");
		cr_assert_eq(r->doc_digest_len, 3);
		cr_assert_eq(r->signed_digest_len, 0);
		cr_assert_null(r->signed_digest);
		cr_assert_eq(r->mechanism, 0x80000001UL);
		cr_assert_eq(r->uid, -1);
	}
	return 0;
}

Test(store, audit_rows_roundtrip_and_append_only)
{
	uint8_t h1[32], h2[32], got[32], zero[32] = { 0 };
	struct gw_audit_row rows[2] = {
		{ .seq = 1, .ts_ns = 5, .action = "start", .uid = 0, .prev_hash = zero,
		  .prev_hash_len = 32, .hash = h1, .hash_len = 32 },
		{ .seq = 2, .ts_ns = 6, .action = "sign", .detail = "", .uid = -1,
		  .doc_digest = (const uint8_t *)"abc", .doc_digest_len = 3,
		  .mechanism = 0x80000001UL, .prev_hash = h1, .prev_hash_len = 32,
		  .hash = h2, .hash_len = 32 },
	};
	uint64_t seq = 0, seen[2] = { 0 };
	char err[256] = "";

	memset(h1, 1, 32);
	memset(h2, 2, 32);
	open_ok(0);
	cr_assert_eq(gw_store_audit_append(st, rows, 2, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(gw_store_audit_head(st, &seq, got, err, sizeof(err)), 1);
	cr_assert_eq(seq, 2);
	cr_assert_eq(memcmp(got, h2, 32), 0);
	cr_assert_eq(gw_store_audit_scan(st, collect, seen, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(seen[0], 2);
	cr_assert_eq(seen[1], 3);
	/* The same seq again: the whole batch is refused, nothing written. */
	rows[0].seq = 3;
	cr_assert_eq(gw_store_audit_append(st, rows, 2, err, sizeof(err)), -1);
	cr_assert_eq(gw_store_audit_head(st, &seq, got, err, sizeof(err)), 1);
	cr_assert_eq(seq, 2, "a failed batch leaves no row behind");
	gw_store_close(&st);
	/* The triggers stop edits through SQL until someone drops them. */
	cr_assert_neq(raw_sql("UPDATE audit SET actor = 'x' WHERE seq = 1"), SQLITE_OK);
	cr_assert_neq(raw_sql("DELETE FROM audit WHERE seq = 1"), SQLITE_OK);
}

static int
fail_commit(void *ctx)
{
	(void)ctx;
	return 1;
}

Test(store, commit_hook_failure_rolls_back)
{
	uint8_t h[32], zero[32] = { 0 };
	struct gw_audit_row row = { .seq = 1, .prev_hash = zero, .prev_hash_len = 32,
	                            .hash = h, .hash_len = 32 };
	uint64_t seq = 9;
	char err[256] = "";

	open_ok(0);
	gw_store_test_set_commit_hook(st, fail_commit, NULL);
	cr_assert_eq(gw_store_audit_append(st, &row, 1, err, sizeof(err)), -1);
	gw_store_test_set_commit_hook(st, NULL, NULL);
	cr_assert_eq(gw_store_audit_head(st, &seq, h, err, sizeof(err)), 0);
	cr_assert_eq(seq, 0);
	cr_assert_eq(gw_store_audit_append(st, &row, 1, err, sizeof(err)), 0, "%s", err);
}

/* Tables another part makes on first use (auth_ops.c's lockout and TOTP
 * tables) are remembered per open store: a store closed and a new one
 * opened, typically at the very same address, gets its tables made
 * again. Each round is a new file, so a table found there was made in
 * that round. */
static int setup_key;

static void
ensure_table(struct gw_store *s)
{
	if (gw_store_mark_test(s, &setup_key))
		return;
	gw_store_lock(s);
	cr_assert_eq(sqlite3_exec(gw_store_db(s), "CREATE TABLE IF NOT EXISTS part_table (x INTEGER)",
	                          NULL, NULL, NULL), SQLITE_OK);
	gw_store_unlock(s);
	gw_store_mark_set(s, &setup_key);
}

Test(store, setup_marks_die_with_the_store)
{
	const void *first = NULL;
	int same_address = 0;

	for (int round = 0; round < 20; round++) {
		sqlite3_stmt *q = NULL;
		char cmd[4 * sizeof(path) + 32];

		snprintf(cmd, sizeof(cmd), "rm -f %s %s-wal %s-shm %s.redo", path, path, path, path);
		cr_assert_eq(system(cmd), 0);
		open_ok(0);
		if (round == 0)
			first = st;
		else if ((const void *)st == first)
			same_address++;
		cr_assert(!gw_store_mark_test(st, &setup_key), "round %d: a new store already marked", round);
		ensure_table(st);
		cr_assert(gw_store_mark_test(st, &setup_key));
		gw_store_lock(st);
		cr_assert_eq(sqlite3_prepare_v2(gw_store_db(st), "SELECT x FROM part_table", -1, &q, NULL),
		             SQLITE_OK, "round %d: the table was not made: %s", round,
		             sqlite3_errmsg(gw_store_db(st)));
		sqlite3_finalize(q);
		gw_store_unlock(st);
		gw_store_close(&st);
	}
	cr_log_info("the store came back at its first address in %d of 19 rounds", same_address);
}

/* Checkpoints of a store made before the checkpoint chain (schema 7) come
 * back unchained after the migration; the next one takes the id after
 * the highest ever given, also when the newest row was deleted. */
static int
count_cp(void *ctx, const struct gw_audit_checkpoint *cp)
{
	struct gw_audit_checkpoint *seen = ctx;

	seen[cp->id < 8 ? cp->id : 0] = *cp;
	seen[cp->id < 8 ? cp->id : 0].alg = NULL;   /* (pointers end with the call) */
	seen[cp->id < 8 ? cp->id : 0].sig = NULL;
	seen[cp->id < 8 ? cp->id : 0].cert = NULL;
	return 0;
}

Test(store, checkpoints_before_the_chain_and_ids_after_a_removal)
{
	static const uint8_t sig[8] = { 1, 2, 3, 4, 5, 6, 7, 8 };
	struct gw_audit_checkpoint last, cp = { 0 }, seen[8];
	uint64_t next = 0;
	char err[256] = "";

	open_ok(7);
	gw_store_close(&st);
	cr_assert_eq(raw_sql("INSERT INTO audit_checkpoints (seq, ts_ns, hash, alg, signature)"
	                     " VALUES (3, 1, zeroblob(32), 'ecdsa-sha256', x'01'),"
	                     "        (5, 2, zeroblob(32), 'ecdsa-sha256', x'02')"), SQLITE_OK);
	open_ok(0);
	cr_assert_eq(gw_store_checkpoint_last(st, &last, &next, err, sizeof(err)), 1, "%s", err);
	cr_assert_eq(last.id, 2);
	cr_assert_eq(last.seq, 5);
	cr_assert(!last.chained, "a checkpoint from before the chain");
	cr_assert_eq(next, 3);
	gw_store_checkpoint_clear(&last);

	cp.id = next;
	cp.seq = 7;
	cp.ts_ns = 3;
	cp.alg = "ecdsa-sha256";
	cp.sig = sig;
	cp.sig_len = sizeof(sig);
	cp.chained = true;
	cp.prev_id = 2;
	memset(cp.prev_hash, 0xab, 32);
	cr_assert_eq(gw_store_checkpoint_add(st, &cp, err, sizeof(err)), 0, "%s", err);
	memset(seen, 0, sizeof(seen));
	cr_assert_eq(gw_store_checkpoint_scan(st, 0, 0, count_cp, seen, err, sizeof(err)), 0, "%s", err);
	cr_assert(!seen[1].chained && !seen[2].chained);
	cr_assert(seen[3].chained && seen[3].prev_id == 2 && seen[3].prev_hash[31] == 0xab);
	gw_store_close(&st);

	/* The newest checkpoint deleted behind the gateway's back: its id is
	 * not given again, so the gap stays. */
	cr_assert_eq(raw_sql("DROP TRIGGER audit_checkpoints_no_delete;"
	                     "DELETE FROM audit_checkpoints WHERE id = 3"), SQLITE_OK);
	open_ok(0);
	cr_assert_eq(gw_store_checkpoint_last(st, &last, &next, err, sizeof(err)), 1, "%s", err);
	cr_assert_eq(last.id, 2);
	cr_assert_eq(next, 4, "the id of a removed checkpoint was given again");
	gw_store_checkpoint_clear(&last);
}
