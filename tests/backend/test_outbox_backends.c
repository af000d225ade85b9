/*
 * The outbox repository (outbox.h) on each backend: SQLite (a file in a
 * temp dir) and PostgreSQL (the cluster run-store-backends.sh starts; the
 * pg tests skip without it). Two store handles stand for two gateways:
 * 240 notices claimed by 8 threads of each are each claimed exactly once
 * (pg: FOR UPDATE SKIP LOCKED); a lease that ran out hands a notice to
 * the other gateway, whose settling then wins; a retry is due only at its
 * time; a dedupe key makes a second put a no-op; a rolled-back put leaves
 * nothing.
 */
#include <criterion/criterion.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sqlite3.h>
#ifdef GW_STORE_HAVE_PG
#include <libpq-fe.h>
#endif

#include "store.h"
#include "outbox.h"

static char dir[64];
static char url[700];

static void
setup(void)
{
	strcpy(dir, "/tmp/sg-ob-XXXXXX");
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

static struct gw_store *
open_url(const char *u)
{
	struct gw_store *st = NULL;
	char err[512] = "";

	cr_assert_eq(gw_store_open_url(u, &st, err, sizeof(err)), 0, "open: %s", err);
	cr_assert_eq(gw_outbox_init(st, err, sizeof(err)), 0, "%s", err);
	return st;
}

/* The test's own connection: the outbox is the group's (one per
 * database), so each test starts from an empty one. */
static void
empty_outbox(const char *u, bool is_pg)
{
	if (is_pg) {
#ifdef GW_STORE_HAVE_PG
		PGconn *c = PQconnectdb(u);
		PGresult *r;

		cr_assert_eq(PQstatus(c), CONNECTION_OK, "%s", PQerrorMessage(c));
		r = PQexec(c, "DELETE FROM outbox");
		cr_assert_eq(PQresultStatus(r), PGRES_COMMAND_OK, "%s", PQerrorMessage(c));
		PQclear(r);
		PQfinish(c);
#endif
	} else {
		sqlite3 *db;

		cr_assert_eq(sqlite3_open(u + strlen("sqlite:"), &db), SQLITE_OK);
		sqlite3_busy_timeout(db, 5000);
		cr_assert_eq(sqlite3_exec(db, "DELETE FROM outbox", NULL, NULL, NULL), SQLITE_OK);
		sqlite3_close(db);
	}
}

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

#define BOTH(name)                                                       \
	static void check_##name(const char *u, bool is_pg);             \
	Test(sqlite, name) { check_##name(the_url(false), false); }      \
	Test(pg, name) { check_##name(the_url(true), true); }            \
	static void check_##name(const char *u, bool is_pg)

static int
put(struct gw_store *st, const char *recipient, const char *dedupe, int64_t now, int64_t *id)
{
	struct gw_outbox_notice n = {
		.event = "app_waiting", .channel = "email", .recipient = (char *)recipient,
		.address = "bob@example.test", .application = 7, .detail = "{\"application\":7}",
	};
	char err[256] = "";
	int rc;

	cr_assert_eq(gw_store_tx_begin(st, err, sizeof(err)), 0, "%s", err);
	rc = gw_outbox_put_tx(st, &n, dedupe, now, err, sizeof(err));
	cr_assert_geq(rc, 0, "put: %s", err);
	cr_assert_eq(gw_store_tx_commit(st, err, sizeof(err)), 0, "%s", err);
	if (id)
		*id = n.id;
	return rc;
}

static int
settle(struct gw_store *st, int64_t id, const char *claimer, enum gw_outbox_outcome o,
       int64_t next_at, int64_t now)
{
	char err[256] = "";
	int rc;

	cr_assert_eq(gw_store_tx_begin(st, err, sizeof(err)), 0, "%s", err);
	rc = gw_outbox_settle_tx(st, id, claimer, o, next_at, "test", now, err, sizeof(err));
	cr_assert_geq(rc, 0, "settle: %s", err);
	cr_assert_eq(gw_store_tx_commit(st, err, sizeof(err)), 0, "%s", err);
	return rc;
}

#define RACE_N 240
#define RACE_THREADS 8

struct race {
	struct gw_store *st;
	const char *claimer;
	int64_t now;
	pthread_mutex_t *lock;
	int64_t first;
	unsigned *seen;               /* [RACE_N]: claims of each notice */
	unsigned errors;
};

static void *
racer(void *arg)
{
	struct race *r = arg;
	struct gw_outbox_notice got[8];
	char err[256];
	size_t n;

	for (;;) {
		if (gw_outbox_claim(r->st, r->claimer, r->now, 300, got, 3, &n, err, sizeof(err)) < 0) {
			r->errors++;
			break;
		}
		if (n == 0)
			break;
		for (size_t i = 0; i < n; i++) {
			int64_t k = got[i].id - r->first;

			pthread_mutex_lock(r->lock);
			if (k >= 0 && k < RACE_N)
				r->seen[k]++;
			else
				r->errors++;
			pthread_mutex_unlock(r->lock);
			if (gw_store_tx_begin(r->st, err, sizeof(err)) < 0 ||
			    gw_outbox_settle_tx(r->st, got[i].id, r->claimer, GW_OUTBOX_SENT, 0, NULL,
			                        r->now, err, sizeof(err)) != 1 ||
			    gw_store_tx_commit(r->st, err, sizeof(err)) < 0)
				r->errors++;
			gw_outbox_notice_clear(&got[i]);
		}
	}
	return NULL;
}

/* Two gateways' senders, eight threads each, never take one notice twice
 * and leave none behind. */
BOTH(two_gateways_claim_each_notice_once)
{
	struct gw_store *a = open_url(u), *b = open_url(u);
	pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
	unsigned *seen = calloc(RACE_N, sizeof(*seen));
	struct race rs[2 * RACE_THREADS];
	pthread_t th[2 * RACE_THREADS];
	int64_t first = 0, id = 0, now = 1700000000;
	struct gw_outbox_notice got[4];
	char err[256], who[16];
	size_t n = 9;

	cr_assert(seen);
	empty_outbox(u, is_pg);
	for (int i = 0; i < RACE_N; i++) {
		snprintf(who, sizeof(who), "p%d", i);
		cr_assert_eq(put(i % 2 ? b : a, who, NULL, now, &id), 1);
		if (i == 0)
			first = id;
		cr_assert_eq(id, first + i, "ids in order");
	}
	for (int i = 0; i < 2 * RACE_THREADS; i++) {
		rs[i] = (struct race){ .st = i % 2 ? b : a, .claimer = i % 2 ? "gw-b" : "gw-a",
		                       .now = now, .lock = &lock, .first = first, .seen = seen };
		cr_assert_eq(pthread_create(&th[i], NULL, racer, &rs[i]), 0);
	}
	for (int i = 0; i < 2 * RACE_THREADS; i++) {
		pthread_join(th[i], NULL);
		cr_assert_eq(rs[i].errors, 0, "thread %d: errors", i);
	}
	for (int i = 0; i < RACE_N; i++)
		cr_assert_eq(seen[i], 1, "notice %d claimed %u times", i, seen[i]);
	cr_assert_eq(gw_outbox_claim(a, "gw-a", now + 100000, 300, got, 4, &n, err, sizeof(err)), 0);
	cr_assert_eq(n, 0, "a sent notice is never claimed again");
	free(seen);
	gw_store_close(&a);
	gw_store_close(&b);
}

/* A sender that died while sending: its lease runs out and the other
 * gateway takes the notice (a try more); the first one's settling then
 * finds it no longer its own, the second's wins. */
BOTH(a_lease_that_ran_out_goes_to_the_other)
{
	struct gw_store *a = open_url(u), *b = open_url(u);
	struct gw_outbox_notice got[4];
	int64_t id = 0, now = 1700000000;
	char err[256];
	size_t n = 0;

	empty_outbox(u, is_pg);
	cr_assert_eq(put(a, "bob", NULL, now, &id), 1);
	cr_assert_eq(gw_outbox_claim(a, "gw-a", now, 60, got, 4, &n, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(n, 1);
	cr_assert_eq(got[0].id, id);
	cr_assert_eq(got[0].tries, 1);
	cr_assert_str_eq(got[0].address, "bob@example.test");
	cr_assert_str_eq(got[0].detail, "{\"application\":7}");
	cr_assert_eq(got[0].application, 7);
	gw_outbox_notice_clear(&got[0]);
	cr_assert_eq(gw_outbox_claim(b, "gw-b", now + 59, 60, got, 4, &n, err, sizeof(err)), 0);
	cr_assert_eq(n, 0, "claimed: not before its lease ends");
	cr_assert_eq(gw_outbox_claim(b, "gw-b", now + 60, 60, got, 4, &n, err, sizeof(err)), 0);
	cr_assert_eq(n, 1, "its lease over: the other gateway takes it");
	cr_assert_eq(got[0].tries, 2);
	gw_outbox_notice_clear(&got[0]);
	cr_assert_eq(settle(a, id, "gw-a", GW_OUTBOX_SENT, 0, now + 61), 0, "no longer a's");
	cr_assert_eq(settle(b, id, "gw-b", GW_OUTBOX_SENT, 0, now + 61), 1);
	cr_assert_eq(gw_outbox_claim(a, "gw-a", now + 100000, 60, got, 4, &n, err, sizeof(err)), 0);
	cr_assert_eq(n, 0);
	gw_store_close(&a);
	gw_store_close(&b);
}

/* A retry is due at its time; a failed notice is never claimed again. */
BOTH(a_retry_waits_for_its_time)
{
	struct gw_store *a = open_url(u);
	struct gw_outbox_notice got[4];
	int64_t id = 0, now = 1700000000;
	char err[256];
	size_t n = 0;

	empty_outbox(u, is_pg);
	cr_assert_eq(put(a, "bob", NULL, now, &id), 1);
	cr_assert_eq(gw_outbox_claim(a, "gw-a", now, 60, got, 4, &n, err, sizeof(err)), 0);
	cr_assert_eq(n, 1);
	gw_outbox_notice_clear(&got[0]);
	cr_assert_eq(settle(a, id, "gw-a", GW_OUTBOX_RETRY, now + 30, now), 1);
	cr_assert_eq(gw_outbox_claim(a, "gw-a", now + 29, 60, got, 4, &n, err, sizeof(err)), 0);
	cr_assert_eq(n, 0, "not due before its retry time");
	cr_assert_eq(gw_outbox_claim(a, "gw-a", now + 30, 60, got, 4, &n, err, sizeof(err)), 0);
	cr_assert_eq(n, 1);
	cr_assert_eq(got[0].tries, 2);
	gw_outbox_notice_clear(&got[0]);
	cr_assert_eq(settle(a, id, "gw-a", GW_OUTBOX_FAILED, 0, now + 30), 1);
	cr_assert_eq(gw_outbox_claim(a, "gw-a", now + 100000, 60, got, 4, &n, err, sizeof(err)), 0);
	cr_assert_eq(n, 0, "failed for good");
	gw_store_close(&a);
}

/* One change never makes a notice twice; a put rolled back leaves none. */
BOTH(dedupe_and_rollback)
{
	struct gw_store *a = open_url(u);
	struct gw_outbox_notice got[4], x = {
		.event = "app_waiting", .channel = "email", .recipient = "carol",
		.detail = "{}",
	};
	int64_t now = 1700000000;
	char err[256];
	size_t n = 0;

	empty_outbox(u, is_pg);
	cr_assert_eq(put(a, "bob", "app_waiting:7:1:email:bob", now, NULL), 1);
	cr_assert_eq(put(a, "bob", "app_waiting:7:1:email:bob", now, NULL), 0);
	cr_assert_eq(gw_store_tx_begin(a, err, sizeof(err)), 0);
	cr_assert_eq(gw_outbox_put_tx(a, &x, NULL, now, err, sizeof(err)), 1, "%s", err);
	gw_store_tx_rollback(a);
	x.event = "no such event, and far too long to be one";
	cr_assert_eq(gw_outbox_put_tx(a, &x, NULL, now, err, sizeof(err)), -1);
	cr_assert_eq(gw_outbox_claim(a, "gw-a", now, 60, got, 4, &n, err, sizeof(err)), 0);
	cr_assert_eq(n, 1, "one notice: the dedupe key's first");
	cr_assert_str_eq(got[0].recipient, "bob");
	gw_outbox_notice_clear(&got[0]);
	gw_store_close(&a);
}
