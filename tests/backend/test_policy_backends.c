/*
 * The policy repository and the change feed on each backend: SQLite (a
 * file in a temp dir) and PostgreSQL (the cluster run-store-backends.sh
 * starts and names in SG_TEST_PG_URL; without it the pg tests skip).
 * Versions, their hash and text, one past the newest or refused, nothing
 * kept from a rolled-back transaction; on pg two store handles, a publish
 * through one heard by the feed of the other only once committed, and a
 * lost feed connection reported so that it can be opened again.
 */
#include <criterion/criterion.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libpq-fe.h>
#include <openssl/evp.h>

#include "store.h"
#include "policystore.h"

static char dir[64];
static char url[700];

static void
setup(void)
{
	strcpy(dir, "/tmp/sg-pb-XXXXXX");
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

TestSuite(sqlite, .init = setup, .fini = teardown, .timeout = 60);
TestSuite(pg, .init = setup, .fini = teardown, .timeout = 60);

/* Runs sql on the test's own connection to the cluster. */
static void
pg_sql(const char *u, const char *sql)
{
	PGconn *c = PQconnectdb(u);
	PGresult *r;

	cr_assert_eq(PQstatus(c), CONNECTION_OK, "%s", PQerrorMessage(c));
	r = PQexec(c, sql);
	cr_assert(PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK,
	          "%s: %s", sql, PQerrorMessage(c));
	PQclear(r);
	PQfinish(c);
}

static const char *
sqlite_url(const char *name)
{
	(void)name;
	snprintf(url, sizeof(url), "sqlite:%s/sealgate.db", dir);
	return url;
}

/* A schema of the test's own on the one database: the policy is the
 * group's, so tests must not see each other's versions. */
static const char *
pg_url(const char *name)
{
	const char *u = getenv("SG_TEST_PG_URL");
	char sql[256];

	if (u == NULL || *u == '\0')
		cr_skip_test("no PostgreSQL cluster (run through run-store-backends.sh)");
	snprintf(sql, sizeof(sql), "DROP SCHEMA IF EXISTS %s CASCADE; CREATE SCHEMA %s", name, name);
	pg_sql(u, sql);
	snprintf(url, sizeof(url), "%s%soptions=-csearch_path%%3D%s", u, strchr(u, '?') ? "&" : "?",
	         name);
	return url;
}

static struct gw_store *
open_url(const char *u)
{
	struct gw_store *st = NULL;
	char err[512] = "";

	cr_assert_eq(gw_store_open_url(u, &st, err, sizeof(err)), 0, "open %s: %s", u, err);
	return st;
}

#define BOTH(name)                                                       \
	static void check_##name(const char *u);                         \
	Test(sqlite, name) { check_##name(sqlite_url("pb_" #name)); }    \
	Test(pg, name) { check_##name(pg_url("pb_" #name)); }            \
	static void check_##name(const char *u)

static void
version_of(struct gw_policy_version *v, int64_t n, const char *text, const char *author)
{
	memset(v, 0, sizeof(*v));
	v->version = n;
	v->text = (char *)text;
	v->len = strlen(text);
	v->author = (char *)author;
	v->published = 1700000000 + n;
	cr_assert(EVP_Digest(text, v->len, v->sha256, NULL, EVP_sha256(), NULL));
}

/* Publishes v in a transaction of its own, as the audit writer would. */
static int
publish(struct gw_store *st, const struct gw_policy_version *v, char *err, size_t errlen)
{
	cr_assert_eq(gw_store_tx_begin(st, err, errlen), 0, "%s", err);
	if (gw_store_policy_publish_tx(st, v, err, errlen) < 0) {
		gw_store_tx_rollback(st);
		return -1;
	}
	return gw_store_tx_commit(st, err, errlen);
}

struct hist { int64_t seen[8]; size_t n; };

static int
hist_fn(void *ctx, const struct gw_policy_version *v)
{
	struct hist *h = ctx;

	cr_assert_null(v->text, "a history carries no text");
	if (h->n < 8)
		h->seen[h->n++] = v->version;
	return 0;
}

BOTH(versions_hash_and_text)
{
	struct gw_store *st = open_url(u);
	struct gw_policy_version v1, v2, v3, got;
	struct hist h = { 0 };
	char err[512] = "";
	int64_t latest = -1;

	cr_assert_eq(gw_store_policy_latest(st, &latest, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(latest, 0);
	cr_assert_eq(gw_store_policy_get(st, 0, &got, err, sizeof(err)), 0, "%s", err);

	version_of(&v1, 1, "version: 1\n# one\n", "frank");
	version_of(&v2, 2, "version: 1\n# two, \xe4 byte that is no UTF-8\n", "frank");
	version_of(&v3, 3, "version: 1\n# three\n", "frank");
	/* Only one past the newest: not 2 before 1 exists. */
	cr_assert_eq(publish(st, &v2, err, sizeof(err)), -1);
	cr_assert(strstr(err, "meanwhile") != NULL, "%s", err);
	cr_assert_eq(publish(st, &v1, err, sizeof(err)), 0, "%s", err);
	/* Nor 1 again (two gateways publishing at once). */
	cr_assert_eq(publish(st, &v1, err, sizeof(err)), -1);
	cr_assert(strstr(err, "meanwhile") != NULL, "%s", err);
	cr_assert_eq(publish(st, &v2, err, sizeof(err)), 0, "%s", err);

	cr_assert_eq(gw_store_policy_get(st, 0, &got, err, sizeof(err)), 1, "%s", err);
	cr_assert_eq(got.version, 2);
	cr_assert_eq(got.len, v2.len);
	cr_assert_eq(memcmp(got.text, v2.text, v2.len), 0, "the bytes as published");
	cr_assert_eq(memcmp(got.sha256, v2.sha256, 32), 0);
	cr_assert_str_eq(got.author, "frank");
	cr_assert_eq(got.published, v2.published);
	gw_policy_version_clear(&got);
	cr_assert_eq(gw_store_policy_get(st, 1, &got, err, sizeof(err)), 1, "%s", err);
	cr_assert_str_eq(got.text, v1.text);
	gw_policy_version_clear(&got);
	cr_assert_eq(gw_store_policy_get(st, 9, &got, err, sizeof(err)), 0, "%s", err);

	/* A publish rolled back leaves nothing. */
	cr_assert_eq(gw_store_tx_begin(st, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(gw_store_policy_publish_tx(st, &v3, err, sizeof(err)), 0, "%s", err);
	gw_store_tx_rollback(st);
	cr_assert_eq(gw_store_policy_latest(st, &latest, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(latest, 2);

	cr_assert_eq(gw_store_policy_history(st, 0, hist_fn, &h, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(h.n, 2);
	cr_assert_eq(h.seen[0], 2, "newest first");
	cr_assert_eq(h.seen[1], 1);
	h.n = 0;
	cr_assert_eq(gw_store_policy_history(st, 1, hist_fn, &h, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(h.n, 1);

	/* Closed and opened again: kept. */
	gw_store_close(&st);
	st = open_url(u);
	cr_assert_eq(gw_store_policy_latest(st, &latest, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(latest, 2);
	gw_store_close(&st);
}

Test(sqlite, no_feed)
{
	struct gw_store *st = open_url(sqlite_url("x"));
	struct gw_store_feed *f = NULL;
	char err[256] = "";

	/* One gateway per file: it applies its own changes (changes.c). */
	cr_assert_eq(gw_store_changes_open(st, &f, err, sizeof(err)), 0, "%s", err);
	cr_assert_null(f);
	cr_assert_eq(gw_store_tx_begin(st, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(gw_store_changes_notify_tx(st, "policy:1", err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(gw_store_tx_commit(st, err, sizeof(err)), 0, "%s", err);
	gw_store_close(&st);
}

struct heard { char ev[8][GW_CHANGE_EVENT_MAX + 1]; size_t n; };

static void
heard_fn(void *ctx, const char *event)
{
	struct heard *h = ctx;

	if (h->n < 8)
		snprintf(h->ev[h->n++], sizeof(h->ev[0]), "%s", event);
}

static bool
heard(const struct heard *h, const char *event)
{
	for (size_t i = 0; i < h->n; i++)
		if (strcmp(h->ev[i], event) == 0)
			return true;
	return false;
}

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Waits on f until event is heard or 10 s pass (a deadline for a stuck
 * test, not a speed goal). */
static bool
wait_for(struct gw_store_feed *f, struct heard *h, const char *event)
{
	double until = now_s() + 10;
	char err[256];

	while (!heard(h, event) && now_s() < until)
		cr_assert_geq(gw_store_changes_wait(f, 100, heard_fn, h, err, sizeof(err)), 0, "%s", err);
	return heard(h, event);
}

Test(pg, feed_hears_a_publish_of_another_handle)
{
	const char *u = pg_url("pb_feed");
	struct gw_store *a = open_url(u), *b = open_url(u);
	struct gw_store_feed *f = NULL;
	struct gw_policy_version v1;
	struct heard h = { 0 };
	char err[512] = "";

	cr_assert_eq(gw_store_changes_open(b, &f, err, sizeof(err)), 1, "%s", err);
	cr_assert_not_null(f);
	version_of(&v1, 1, "version: 1\n", "frank");
	cr_assert_eq(gw_store_tx_begin(a, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(gw_store_policy_publish_tx(a, &v1, err, sizeof(err)), 0, "%s", err);
	/* Not before the commit: a feed that heard of an uncommitted
	 * version would look for it and not find it. */
	for (int i = 0; i < 3; i++)
		cr_assert_geq(gw_store_changes_wait(f, 100, heard_fn, &h, err, sizeof(err)), 0, "%s",
		              err);
	cr_assert_eq(h.n, 0, "heard %s before the commit", h.ev[0]);
	cr_assert_eq(gw_store_tx_commit(a, err, sizeof(err)), 0, "%s", err);
	cr_assert(wait_for(f, &h, "policy:1"), "the feed did not hear of version 1");

	/* A rolled-back publish is never heard; the next committed one is. */
	h.n = 0;
	version_of(&v1, 2, "version: 1\n# 2\n", "frank");
	cr_assert_eq(gw_store_tx_begin(a, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(gw_store_policy_publish_tx(a, &v1, err, sizeof(err)), 0, "%s", err);
	gw_store_tx_rollback(a);
	cr_assert_eq(publish(a, &v1, err, sizeof(err)), 0, "%s", err);
	cr_assert(wait_for(f, &h, "policy:2"));
	cr_assert_eq(h.n, 1, "heard %zu events for one commit", h.n);
	/* Other events go through the same feed. */
	cr_assert_eq(gw_store_tx_begin(a, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(gw_store_changes_notify_tx(a, "app:42", err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(gw_store_tx_commit(a, err, sizeof(err)), 0, "%s", err);
	cr_assert(wait_for(f, &h, "app:42"));
	/* Outside a transaction an event would go out with nothing it tells of. */
	cr_assert_eq(gw_store_changes_notify_tx(a, "app:43", err, sizeof(err)), -1);

	gw_store_changes_close(&f);
	cr_assert_null(f);
	gw_store_close(&a);
	gw_store_close(&b);
}

Test(pg, feed_connection_lost_is_reported)
{
	const char *u = pg_url("pb_lost");
	char plain[700];
	struct gw_store *a = open_url(u);
	struct gw_store_feed *f = NULL;
	struct gw_policy_version v1;
	struct heard h = { 0 };
	char err[512] = "";
	double until;
	int r = 0;

	snprintf(plain, sizeof(plain), "%s", getenv("SG_TEST_PG_URL"));
	cr_assert_eq(gw_store_changes_open(a, &f, err, sizeof(err)), 1, "%s", err);
	/* The server ends the feed's connection (a restart, a network cut). */
	pg_sql(plain, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
	       "WHERE application_name = 'sealgated-feed'");
	until = now_s() + 10;
	while (r >= 0 && now_s() < until)
		r = gw_store_changes_wait(f, 100, heard_fn, &h, err, sizeof(err));
	cr_assert_eq(r, -1, "a lost feed connection was not reported");
	cr_assert(strstr(err, "lost") != NULL, "%s", err);
	cr_assert(strstr(err, "pgpass") == NULL && strstr(err, "password=") == NULL, "%s", err);
	gw_store_changes_close(&f);
	/* A feed opened again hears the next change (what came meanwhile
	 * is the caller's to re-read). */
	cr_assert_eq(gw_store_changes_open(a, &f, err, sizeof(err)), 1, "%s", err);
	version_of(&v1, 1, "version: 1\n", "frank");
	cr_assert_eq(publish(a, &v1, err, sizeof(err)), 0, "%s", err);
	cr_assert(wait_for(f, &h, "policy:1"));
	gw_store_changes_close(&f);
	gw_store_close(&a);
}

struct racer { const char *url; int rv; char err[512]; pthread_barrier_t *go; };

static void *
race_publish(void *arg)
{
	struct racer *r = arg;
	struct gw_store *st = NULL;
	struct gw_policy_version v;

	r->rv = -2;
	if (gw_store_open_url(r->url, &st, r->err, sizeof(r->err)) < 0)
		return NULL;
	version_of(&v, 1, "version: 1\n# raced\n", "frank");
	pthread_barrier_wait(r->go);
	r->rv = publish(st, &v, r->err, sizeof(r->err));
	gw_store_close(&st);
	return NULL;
}

Test(pg, two_publishing_at_once_one_wins)
{
	const char *u = pg_url("pb_race");
	struct racer r[4];
	pthread_t th[4];
	pthread_barrier_t go;
	struct gw_store *st;
	char err[512] = "";
	int64_t latest = 0;
	int won = 0;

	pthread_barrier_init(&go, NULL, 4);
	for (int i = 0; i < 4; i++) {
		r[i] = (struct racer){ .url = u, .go = &go };
		cr_assert_eq(pthread_create(&th[i], NULL, race_publish, &r[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		cr_assert_neq(r[i].rv, -2, "open: %s", r[i].err);
		if (r[i].rv == 0)
			won++;
		else
			cr_assert(strstr(r[i].err, "meanwhile") != NULL, "%s", r[i].err);
	}
	pthread_barrier_destroy(&go);
	cr_assert_eq(won, 1, "%d of 4 published version 1", won);
	st = open_url(u);
	cr_assert_eq(gw_store_policy_latest(st, &latest, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(latest, 1);
	gw_store_close(&st);
}
