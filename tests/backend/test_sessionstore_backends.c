/*
 * The sessions repository (sessionstore.h) on each backend: SQLite (a file
 * in a temp dir) and PostgreSQL (the cluster run-store-backends.sh starts;
 * the pg tests skip without it). Two store handles stand for two
 * gateways: a row put through one is touched through the other; idle time
 * and the absolute end are checked by the statement (a row idle too long
 * or past its end is not returned, at the second exactly); a touch moves
 * the idle time on; ending one row or a person's rows is seen by both; a
 * delete on SQLite before the table exists finds nothing and makes no
 * table (it runs inside audit batches).
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>
#ifdef GW_STORE_HAVE_PG
#include <libpq-fe.h>
#endif

#include "store.h"
#include "sessionstore.h"

static char dir[64];
static char url[700];

static void
setup(void)
{
	strcpy(dir, "/tmp/sg-ss-XXXXXX");
	cr_assert(mkdtemp(dir));
}

static void
teardown(void)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", dir);
}

TestSuite(sqlite, .init = setup, .fini = teardown, .timeout = 120);
TestSuite(pg, .init = setup, .fini = teardown, .timeout = 120);

static const char *
the_url(bool is_pg)
{
	if (!is_pg) {
		snprintf(url, sizeof(url), "sqlite:%s/sealgate.db", dir);
		return url;
	}
#ifndef GW_STORE_HAVE_PG
	cr_skip_test("built without libpq");
#endif
	if (getenv("SG_TEST_PG_URL") == NULL || getenv("SG_TEST_PG_URL")[0] == '\0')
		cr_skip_test("no PostgreSQL cluster (run through run-store-backends.sh)");
	snprintf(url, sizeof(url), "%s", getenv("SG_TEST_PG_URL"));
	return url;
}

static struct gw_store *
open_url(const char *u, bool init)
{
	struct gw_store *st = NULL;
	char err[512] = "";

	cr_assert_eq(gw_store_open_url(u, &st, err, sizeof(err)), 0, "open: %s", err);
	if (init)
		cr_assert_eq(gw_sessionstore_init(st, err, sizeof(err)), 0, "%s", err);
	return st;
}

/* The sessions are the group's (one table per database): each test
 * starts from an empty one. */
static void
empty(struct gw_store *st)
{
	(void)gw_sessionstore_end_user(st, "ann");
	(void)gw_sessionstore_end_user(st, "bob");
}

#define BOTH(name)                                                       \
	static void check_##name(const char *u, bool is_pg);             \
	Test(sqlite, name) { check_##name(the_url(false), false); }      \
	Test(pg, name) { check_##name(the_url(true), true); }            \
	static void check_##name(const char *u, bool is_pg)

static void
row_of(struct gw_session_row *r, uint8_t idbyte, const char *user, int64_t now)
{
	memset(r, 0, sizeof(*r));
	memset(r->id, idbyte, sizeof(r->id));
	snprintf(r->user, sizeof(r->user), "%s", user);
	r->uid = 1000;
	r->factors = 3;
	r->totp_at = now - 5;
	r->created = r->last_used = now;
	r->idle = 100;
	r->expires = now + 1000;
}

static void
put(struct gw_store *st, const struct gw_session_row *r, int64_t now)
{
	char err[256] = "";

	cr_assert_eq(gw_sessionstore_put(st, r, now, err, sizeof(err)), 0, "put: %s", err);
}

BOTH(a_row_is_seen_by_another_handle_until_it_idles_or_ends)
{
	struct gw_store *a = open_url(u, true), *b = open_url(u, true);
	struct gw_session_row r, got;
	int64_t t = 1800000000;

	(void)is_pg;
	empty(a);
	row_of(&r, 0x11, "ann", t);
	put(a, &r, t);
	cr_assert_eq(gw_sessionstore_touch(b, r.id, t + 10, &got), 1);
	cr_assert_str_eq(got.user, "ann");
	cr_assert_eq(got.uid, 1000);
	cr_assert_eq(got.factors, 3u);
	cr_assert_eq(got.totp_at, t - 5);
	cr_assert_eq(got.created, t);
	cr_assert_eq(got.last_used, t + 10);
	/* The idle time counts from the last touch: t + 10 + 100 is in, one
	 * second more is out, whatever the caller holds. */
	cr_assert_eq(gw_sessionstore_touch(a, r.id, t + 110, &got), 1);
	cr_assert_eq(gw_sessionstore_touch(b, r.id, t + 211, &got), 0, "idle 101 s: still returned");
	cr_assert_eq(gw_sessionstore_touch(a, r.id, t + 210, &got), 1);
	/* The end: at t + 1000 still, at t + 1001 not, however recently used. */
	for (int64_t x = t + 300; x <= t + 1000; x += 90)
		cr_assert_eq(gw_sessionstore_touch(b, r.id, x, &got), 1);
	cr_assert_eq(gw_sessionstore_touch(b, r.id, t + 1000, &got), 1);
	cr_assert_eq(gw_sessionstore_touch(a, r.id, t + 1001, &got), 0, "past its end: still returned");
	/* An unknown id. */
	memset(r.id, 0x22, sizeof(r.id));
	cr_assert_eq(gw_sessionstore_touch(a, r.id, t, &got), 0);
	gw_store_close(&a);
	gw_store_close(&b);
}

BOTH(an_end_is_seen_by_both_and_a_person_s_rows_go_in_one_statement)
{
	struct gw_store *a = open_url(u, true), *b = open_url(u, true);
	struct gw_session_row r1, r2, r3, got;
	char user[GW_SESSION_USER_MAX + 1];
	int64_t t = 1800000000;

	(void)is_pg;
	empty(a);
	row_of(&r1, 0x31, "ann", t);
	row_of(&r2, 0x32, "ann", t);
	row_of(&r3, 0x33, "bob", t);
	put(a, &r1, t);
	put(b, &r2, t);
	put(a, &r3, t);
	cr_assert_eq(gw_sessionstore_end(b, r1.id, user), 1);
	cr_assert_str_eq(user, "ann");
	cr_assert_eq(gw_sessionstore_end(a, r1.id, user), 0, "ended twice");
	cr_assert_eq(gw_sessionstore_touch(a, r1.id, t, &got), 0);
	cr_assert_eq(gw_sessionstore_touch(a, r2.id, t, &got), 1);
	cr_assert_eq(gw_sessionstore_end_user(b, "ann"), 1);
	cr_assert_eq(gw_sessionstore_touch(a, r2.id, t, &got), 0);
	cr_assert_eq(gw_sessionstore_touch(a, r3.id, t, &got), 1, "bob's went with ann's");
	/* A login purges what expired by then (bob's row, 2000 s later). */
	row_of(&r1, 0x34, "ann", t + 2000);
	put(b, &r1, t + 2000);
	cr_assert_eq(gw_sessionstore_end(a, r3.id, user), 0, "an expired row was kept");
	gw_store_close(&a);
	gw_store_close(&b);
}

Test(sqlite, a_delete_before_the_table_exists_makes_none)
{
	struct gw_store *st = open_url(the_url(false), false);
	char user[GW_SESSION_USER_MAX + 1];
	uint8_t id[GW_SESSION_ID_LEN] = { 1 };
	sqlite3 *db;
	sqlite3_stmt *s;

	cr_assert_eq(gw_sessionstore_end_user(st, "ann"), 0);
	cr_assert_eq(gw_sessionstore_end(st, id, user), 0);
	gw_store_close(&st);
	cr_assert_eq(sqlite3_open(url + strlen("sqlite:"), &db), SQLITE_OK);
	cr_assert_eq(sqlite3_prepare_v2(db, "SELECT count(*) FROM sqlite_master WHERE name = 'sessions'",
	                                -1, &s, NULL), SQLITE_OK);
	cr_assert_eq(sqlite3_step(s), SQLITE_ROW);
	cr_assert_eq(sqlite3_column_int(s, 0), 0, "a delete made the table");
	sqlite3_finalize(s);
	sqlite3_close(db);
}
