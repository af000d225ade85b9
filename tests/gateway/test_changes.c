/*
 * The change feed (gateway/changes.c) and following the newest published
 * policy (gw_policy_follow, gateway/policy_ops.c). On SQLite, two store
 * handles on one file: a version written through the other is put in
 * force with its record, one that does not validate is refused and
 * recorded and the one in force kept, and no feed thread runs. On
 * PostgreSQL (the cluster run-store-backends.sh starts; skipped without
 * it), a gateway's feed thread hands an event committed through another
 * store handle to the hooks of its kind, and after its connection is cut
 * connects again and has every hook re-read what it caches.
 */
#include <criterion/criterion.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libpq-fe.h>
#include <openssl/evp.h>

#include "audit.h"
#include "changes.h"
#include "policy_ops.h"
#include "policystore.h"
#include "server.h"
#include "store.h"

static char dir[64];

static void
setup(void)
{
	strcpy(dir, "/tmp/sg-ch-XXXXXX");
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

#define POLICY(seal) \
	"version: 1\n" \
	"organization:\n" \
	"  name: Feed Co.\n" \
	"  timezone: UTC\n" \
	"  departments: [{ id: hq }]\n" \
	"  people: [{ id: frank, department: hq, roles: [seal_admin] }]\n" \
	"seals:\n" \
	"  - { id: " seal ", key: \"pkcs11:object=x\", users: { departments: [hq] }, approval: none }\n"

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Writes version n of text through st, as a publish at another gateway
 * would (without validating: what another build or a hand might store). */
static void
store_version(struct gw_store *st, int64_t n, const char *text)
{
	struct gw_policy_version v = {
		.version = n, .text = (char *)text, .len = strlen(text), .author = "frank",
		.published = 1700000000,
	};
	char err[512] = "";

	cr_assert(EVP_Digest(text, v.len, v.sha256, NULL, EVP_sha256(), NULL));
	cr_assert_eq(gw_store_tx_begin(st, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(gw_store_policy_publish_tx(st, &v, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(gw_store_tx_commit(st, err, sizeof(err)), 0, "%s", err);
}

struct count { const char *outcome, *like; long n; };

static int
count_fn(void *ctx, const struct gw_audit_row *row)
{
	struct count *c = ctx;

	if (strcmp(row->outcome, c->outcome) == 0 && row->detail != NULL &&
	    strstr(row->detail, c->like) != NULL)
		c->n++;
	return 0;
}

static long
reloads(struct gw_store *st, const char *outcome, const char *like)
{
	struct gw_audit_filter f = { .action = "policy_reload" };
	struct count c = { outcome, like, 0 };
	char err[256];

	cr_assert_eq(gw_store_audit_query(st, &f, count_fn, &c, err, sizeof(err)), 0, "%s", err);
	return c.n;
}

static int64_t
in_force(struct gw_ctx *ctx, char *seal, size_t len)
{
	struct gw_snapshot *s = gw_snapshot_get(ctx);
	int64_t v = s->policy_version;

	snprintf(seal, len, "%s", s->policy->n_seals ? s->policy->seals[0].id : "");
	gw_snapshot_put(&s);
	return v;
}

Test(sqlite, follow_the_newest_valid_version)
{
	struct gw_ctx ctx;
	struct gw_store *other = NULL;
	struct gw_snapshot *snap = NULL;
	char err[1024] = "", path[128], seal[64];

	memset(&ctx, 0, sizeof(ctx));
	pthread_mutex_init(&ctx.snap_lock, NULL);
	snprintf(path, sizeof(path), "%s/sealgate.db", dir);
	cr_assert_eq(gw_store_open(path, &ctx.store, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(gw_audit_open(ctx.store, &ctx.audit, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(gw_snapshot_load_text(&ctx, "file", POLICY("zero"), strlen(POLICY("zero")), &snap,
	                                   err, sizeof(err)), 0, "%s", err);
	gw_snapshot_swap(&ctx, snap);
	cr_assert_eq(gw_policy_store_start(&ctx, NULL, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(in_force(&ctx, seal, sizeof(seal)), 0, "nothing published: the file");
	/* No feed on SQLite: no thread, the gateway applies its own changes. */
	cr_assert_eq(gw_changes_start(&ctx, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(gw_changes_connects(&ctx), 0);

	cr_assert_eq(gw_store_open(path, &other, err, sizeof(err)), 0, "%s", err);
	store_version(other, 1, POLICY("one"));
	gw_changes_local(&ctx, GW_CHANGE_POLICY, "1");
	cr_assert_eq(in_force(&ctx, seal, sizeof(seal)), 1);
	cr_assert_str_eq(seal, "one");
	cr_assert_eq(reloads(ctx.store, "ok", "\"version\":1,"), 1, "version 1 put in force unrecorded");
	/* Heard twice (its own publish, on pg): nothing new. */
	cr_assert_eq(gw_policy_follow(&ctx), 0);
	cr_assert_eq(reloads(ctx.store, "ok", "\"version\":1,"), 1);

	/* A version that does not validate: refused, recorded, v1 kept. */
	store_version(other, 2, "version: 1\norganization: {}\nseals: []\n");
	cr_assert_eq(gw_policy_follow(&ctx), -1);
	cr_assert_eq(in_force(&ctx, seal, sizeof(seal)), 1);
	cr_assert_str_eq(seal, "one");
	cr_assert_eq(reloads(ctx.store, "error", "{\"version\":2}"), 1, "the refusal is not recorded");
	/* Heard of again (a re-read after a reconnection): not recorded again. */
	cr_assert_eq(gw_policy_follow(&ctx), -1);
	cr_assert_eq(reloads(ctx.store, "error", "{\"version\":2}"), 1, "refused and recorded twice");
	/* The next valid one is followed. */
	store_version(other, 3, POLICY("three"));
	cr_assert_eq(gw_policy_follow(&ctx), 0);
	cr_assert_eq(in_force(&ctx, seal, sizeof(seal)), 3);
	cr_assert_str_eq(seal, "three");

	gw_store_close(&other);
	gw_changes_free(&ctx);
	gw_audit_close(&ctx.audit);
	gw_snapshot_swap(&ctx, NULL);
	gw_store_close(&ctx.store);
}

Test(sqlite, a_newest_version_that_does_not_validate_stops_the_start)
{
	struct gw_ctx ctx;
	struct gw_snapshot *snap = NULL;
	char err[1024] = "", path[128];

	memset(&ctx, 0, sizeof(ctx));
	pthread_mutex_init(&ctx.snap_lock, NULL);
	snprintf(path, sizeof(path), "%s/sealgate.db", dir);
	cr_assert_eq(gw_store_open(path, &ctx.store, err, sizeof(err)), 0, "%s", err);
	store_version(ctx.store, 1, "version: 1\norganization: {}\nseals: []\n");
	cr_assert_eq(gw_snapshot_load_text(&ctx, "file", POLICY("zero"), strlen(POLICY("zero")), &snap,
	                                   err, sizeof(err)), 0, "%s", err);
	gw_snapshot_swap(&ctx, snap);
	/* Never the file instead, nor an older version: the start fails. */
	cr_assert_eq(gw_policy_store_start(&ctx, NULL, err, sizeof(err)), -1);
	cr_assert(strstr(err, "version 1, does not validate here: policy version 1:") != NULL, "%s",
	          err);
	gw_changes_free(&ctx);
	gw_snapshot_swap(&ctx, NULL);
	gw_store_close(&ctx.store);
}

/* ---- PostgreSQL: the feed thread ---- */

static pthread_mutex_t heard_lock = PTHREAD_MUTEX_INITIALIZER;
static struct { char kind[16], id[32]; } heard[64];
static size_t n_heard;

static void
hook(struct gw_ctx *ctx, const char *kind, const char *id, void *arg)
{
	(void)ctx; (void)arg;
	pthread_mutex_lock(&heard_lock);
	if (n_heard < 64) {
		snprintf(heard[n_heard].kind, sizeof(heard[0].kind), "%s", kind);
		snprintf(heard[n_heard].id, sizeof(heard[0].id), "%s", id ? id : "(all)");
		n_heard++;
	}
	pthread_mutex_unlock(&heard_lock);
}

static size_t
times_heard(const char *kind, const char *id)
{
	size_t n = 0;

	pthread_mutex_lock(&heard_lock);
	for (size_t i = 0; i < n_heard; i++)
		if (strcmp(heard[i].kind, kind) == 0 && strcmp(heard[i].id, id) == 0)
			n++;
	pthread_mutex_unlock(&heard_lock);
	return n;
}

/* Until kind:id has been heard n times, or 10 s (a stuck test's deadline,
 * not a speed goal). */
static bool
wait_heard(const char *kind, const char *id, size_t n)
{
	double until = now_s() + 10;
	struct timespec ts = { 0, 20 * 1000000L };

	while (times_heard(kind, id) < n && now_s() < until)
		nanosleep(&ts, NULL);
	return times_heard(kind, id) >= n;
}

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

static void
announce(struct gw_store *st, const char *kind, const char *id)
{
	char err[256] = "";

	cr_assert_eq(gw_store_tx_begin(st, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(gw_changes_announce_tx(st, kind, id, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(gw_store_tx_commit(st, err, sizeof(err)), 0, "%s", err);
}

Test(pg, feed_thread_hands_events_to_hooks_and_reconnects)
{
	const char *u = getenv("SG_TEST_PG_URL");
	struct gw_ctx ctx;
	struct gw_store *other = NULL;
	char err[512] = "";

	if (u == NULL || *u == '\0')
		cr_skip_test("no PostgreSQL cluster (run through run-store-backends.sh)");
	memset(&ctx, 0, sizeof(ctx));
	pthread_mutex_init(&ctx.snap_lock, NULL);
	cr_assert_eq(gw_store_open_url(u, &ctx.store, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(gw_store_open_url(u, &other, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(gw_changes_subscribe(&ctx, GW_CHANGE_APP, hook, NULL), 0);
	cr_assert_eq(gw_changes_subscribe(&ctx, GW_CHANGE_QUOTA, hook, NULL), 0);
	cr_assert_eq(gw_changes_start(&ctx, err, sizeof(err)), 0, "%s", err);
	/* Once connected, every hook re-reads (what came before it listened). */
	cr_assert(wait_heard(GW_CHANGE_APP, "(all)", 1), "no re-read at the first connection");
	cr_assert(wait_heard(GW_CHANGE_QUOTA, "(all)", 1));
	cr_assert_eq(gw_changes_connects(&ctx), 1);

	announce(other, GW_CHANGE_APP, "42");
	cr_assert(wait_heard(GW_CHANGE_APP, "42", 1), "app:42 committed elsewhere was not heard");
	announce(other, GW_CHANGE_QUOTA, "contract");
	cr_assert(wait_heard(GW_CHANGE_QUOTA, "contract", 1));
	cr_assert_eq(times_heard(GW_CHANGE_QUOTA, "42"), 0, "an app event went to the quota hook");

	/* The server cuts the feed: it connects again and has everything
	 * re-read, since an event may have come meanwhile. */
	pg_sql(u, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
	       "WHERE application_name = 'sealgated-feed'");
	cr_assert(wait_heard(GW_CHANGE_APP, "(all)", 2), "no re-read after the feed was lost");
	cr_assert(wait_heard(GW_CHANGE_QUOTA, "(all)", 2));
	cr_assert_eq(gw_changes_connects(&ctx), 2);
	announce(other, GW_CHANGE_APP, "43");
	cr_assert(wait_heard(GW_CHANGE_APP, "43", 1), "nothing heard after the reconnection");

	gw_changes_free(&ctx);
	cr_assert_null(ctx.changes);
	gw_store_close(&other);
	gw_store_close(&ctx.store);
}
