/*
 * What two gateways on one store must agree on, decided by the store, on
 * each backend: SQLite (a file two handles share) and PostgreSQL (the
 * cluster run-store-backends.sh names in SG_TEST_PG_URL; without it the
 * pg tests skip). Two store handles stand for two gateways, eight threads
 * each race: application ids never collide (nor come back after the newest
 * row is gone), a quota of Q counts exactly Q through two quota caches (a
 * seal's three counters too, counted together), an
 * application of N uses is spent exactly N times, and two approvers of one
 * level with quorum 2 each count once and advance the level once.
 */
#include <criterion/criterion.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifdef GW_STORE_HAVE_PG
#include <libpq-fe.h>
#endif
#include <sqlite3.h>

#include "appstore.h"
#include "audit.h"
#include "quota.h"
#include "store.h"
#include "workflow_ops.h"

#define GATEWAYS 2
#define PER_GATEWAY 8
#define THREADS (GATEWAYS * PER_GATEWAY)

static char dir[64];
static char url[512];
static char be_tag[32];   /* "sq" / "pg" + a random part: rows of one run apart */
static struct gw_policy *pol;

/* Seal ids carry the run's tag (%1$s): one pg database serves every test. */
#define POLICY_FMT \
	"version: 1\n" \
	"organization:\n" \
	"  name: Truth Co.\n" \
	"  timezone: Asia/Shanghai\n" \
	"  departments: [ { id: hq, name: HQ } ]\n" \
	"  people:\n" \
	"    - { id: ann, name: Ann, department: hq, roles: [employee] }\n" \
	"    - { id: max, name: Max, department: hq, roles: [employee, manager] }\n" \
	"    - { id: mia, name: Mia, department: hq, roles: [employee, manager] }\n" \
	"    - { id: eve, name: Eve, department: hq, roles: [employee, executive] }\n" \
	"seals:\n" \
	"  - id: %1$s-q\n" \
	"    name: Q Seal\n" \
	"    kind: invoice\n" \
	"    key: \"pkcs11:object=q\"\n" \
	"    holder: hq\n" \
	"    users: { departments: [hq] }\n" \
	"    quotas: { total: 37 }\n" \
	"    approval: none\n" \
	"  - id: %1$s-m\n" \
	"    name: M Seal\n" \
	"    kind: invoice\n" \
	"    key: \"pkcs11:object=m\"\n" \
	"    holder: hq\n" \
	"    users: { departments: [hq] }\n" \
	"    quotas: { per_month: 1000, total: 37, per_person_per_day: 1000 }\n" \
	"    approval: none\n" \
	"  - id: %1$s-a\n" \
	"    name: A Seal\n" \
	"    kind: contract\n" \
	"    key: \"pkcs11:object=a\"\n" \
	"    holder: hq\n" \
	"    users: { departments: [hq] }\n" \
	"    approval:\n" \
	"      rules:\n" \
	"        - levels:\n" \
	"            - { role: manager, quorum: 2 }\n" \
	"            - { role: executive }\n"

static void
setup(void)
{
	strcpy(dir, "/tmp/sg-tb-XXXXXX");
	cr_assert(mkdtemp(dir));
}

/* The policy, its seal ids tagged for this test (after be_tag is set). */
static void
load_policy(void)
{
	char text[sizeof(POLICY_FMT) + 64], err[512];
	int n = snprintf(text, sizeof(text), POLICY_FMT, be_tag);

	cr_assert(n > 0 && (size_t)n < sizeof(text));
	cr_assert_eq(gw_policy_parse("truth.yaml", (const uint8_t *)text, (size_t)n, &pol, err,
	                             sizeof(err)), 0, "%s", err);
}

/* A seal of the policy by its untagged name ("q", "m", "a"). */
static const char *
seal_id(const char *name)
{
	static char id[3][48];
	int k = name[0] == 'q' ? 0 : name[0] == 'm' ? 2 : 1;

	snprintf(id[k], sizeof(id[k]), "%s-%s", be_tag, name);
	return id[k];
}

static void
teardown(void)
{
	char cmd[128];

	gw_policy_unref(&pol);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", dir);
}

TestSuite(sqlite, .init = setup, .fini = teardown, .timeout = 120);
TestSuite(pg, .init = setup, .fini = teardown, .timeout = 120);

static const char *
sqlite_url(void)
{
	snprintf(url, sizeof(url), "sqlite:%s/sealgate.db", dir);
	snprintf(be_tag, sizeof(be_tag), "sq");
	return url;
}

static const char *
pg_url(void)
{
	const char *u = getenv("SG_TEST_PG_URL");

	if (u == NULL || *u == '\0')
		cr_skip_test("no PostgreSQL cluster (run through run-store-backends.sh)");
	snprintf(url, sizeof(url), "%s", u);
	/* One database for every test of the run (and a rerun): keys apart. */
	snprintf(be_tag, sizeof(be_tag), "pg%lx-%x", (unsigned long)time(NULL) & 0xfffffff,
	         (unsigned)getpid() & 0xffff);
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
	static void check_##name(const char *u, bool is_pg);             \
	Test(sqlite, name) { const char *u_ = sqlite_url(); load_policy(); check_##name(u_, false); } \
	Test(pg, name) { const char *u_ = pg_url(); load_policy(); check_##name(u_, true); } \
	static void check_##name(const char *u, bool is_pg)

/* Runs sql on a connection of the test's own, beside the stores. */
static void
raw_sql(const char *u, bool is_pg, const char *sql)
{
	if (is_pg) {
#ifdef GW_STORE_HAVE_PG
		PGconn *c = PQconnectdb(u);
		PGresult *r;

		cr_assert_eq(PQstatus(c), CONNECTION_OK, "%s", PQerrorMessage(c));
		r = PQexec(c, sql);
		cr_assert(PQresultStatus(r) == PGRES_COMMAND_OK, "%s: %s", sql, PQerrorMessage(c));
		PQclear(r);
		PQfinish(c);
#else
		cr_skip_test("built without libpq");
#endif
	} else {
		sqlite3 *db;
		char *msg = NULL;

		cr_assert_eq(sqlite3_open(u + strlen("sqlite:"), &db), SQLITE_OK);
		sqlite3_busy_timeout(db, 5000);
		cr_assert_eq(sqlite3_exec(db, sql, NULL, NULL, &msg), SQLITE_OK, "%s: %s", sql,
		             msg ? msg : "");
		sqlite3_close(db);
	}
}

/* A new authorized application of ann for seal with n uses, as stored. */
static void
app_fill(struct gw_application *app, const char *seal, uint32_t n)
{
	memset(app, 0, sizeof(*app));
	snprintf(app->applicant, sizeof(app->applicant), "ann");
	snprintf(app->seal, sizeof(app->seal), "%s", seal);
	snprintf(app->reason, sizeof(app->reason), "truth test");
	app->uses_granted = app->uses_left = n;
	app->created = time(NULL);
	app->valid_until = app->created + 3600;
	app->state = GW_APP_AUTHORIZED;
}

/* Inserts app in a transaction of its own; app->id set by the store. */
static int
app_insert(struct gw_store *st, struct gw_application *app)
{
	char err[256] = "";

	if (gw_store_tx_begin(st, err, sizeof(err)) < 0)
		return -1;
	if (gw_appstore_insert_tx(st, app, err, sizeof(err)) < 0) {
		gw_store_tx_rollback(st);
		return -1;
	}
	return gw_store_tx_commit(st, err, sizeof(err));
}

/* ---- the racers ---- */

struct racer {
	struct gw_store *st;
	struct gw_quota *q;           /* the gateway's cache (quota tests) */
	pthread_barrier_t *go;
	const char *seal;             /* seal of the quota test, or the app's */
	int64_t app_id;               /* application tests */
	unsigned tries;
	int64_t ids[16];              /* id tests */
	unsigned ok, refused, late, failed;
};

static void *
insert_racer(void *arg)
{
	struct racer *r = arg;
	struct gw_application *app = malloc(sizeof(*app));

	pthread_barrier_wait(r->go);
	for (unsigned i = 0; app && i < r->tries; i++) {
		app_fill(app, r->seal, 1);
		if (app_insert(r->st, app) == 0 && app->id > 0)
			r->ids[r->ok++] = app->id;
		else
			r->failed++;
	}
	free(app);
	return NULL;
}

static int
cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return x < y ? -1 : x > y;
}

BOTH(ids_from_two_handles_never_collide)
{
	struct gw_store *st[GATEWAYS];
	struct racer r[THREADS];
	pthread_t t[THREADS];
	pthread_barrier_t go;
	int64_t all[THREADS * 16], last;
	size_t n = 0;
	char seal[48], sql[160];
	struct gw_application *app = malloc(sizeof(*app));

	cr_assert(app);
	snprintf(seal, sizeof(seal), "%s-ids", be_tag);
	for (int g = 0; g < GATEWAYS; g++)
		st[g] = open_url(u);
	pthread_barrier_init(&go, NULL, THREADS);
	for (int i = 0; i < THREADS; i++) {
		memset(&r[i], 0, sizeof(r[i]));
		r[i].st = st[i % GATEWAYS];
		r[i].go = &go;
		r[i].seal = seal;
		r[i].tries = 10;
		cr_assert_eq(pthread_create(&t[i], NULL, insert_racer, &r[i]), 0);
	}
	for (int i = 0; i < THREADS; i++) {
		pthread_join(t[i], NULL);
		cr_assert_eq(r[i].failed, 0, "thread %d: %u inserts failed", i, r[i].failed);
		for (unsigned k = 0; k < r[i].ok; k++)
			all[n++] = r[i].ids[k];
	}
	pthread_barrier_destroy(&go);
	cr_assert_eq(n, THREADS * 10);
	qsort(all, n, sizeof(all[0]), cmp_i64);
	for (size_t i = 1; i < n; i++)
		cr_assert_neq(all[i], all[i - 1], "id %lld handed out twice", (long long)all[i]);
	/* Each id is the application it was given to. */
	cr_assert_eq(gw_appstore_get(st[1], all[0], app), 1);
	cr_assert_str_eq(app->seal, seal);

	/* An id never comes back, even after the newest rows are gone. */
	last = all[n - 1];
	if (is_pg)
		snprintf(sql, sizeof(sql), "DELETE FROM applications WHERE seal = '%s'", seal);
	else
		snprintf(sql, sizeof(sql), "DELETE FROM applications");
	raw_sql(u, is_pg, sql);
	cr_assert_eq(gw_appstore_get(st[0], last, app), 0);
	app_fill(app, seal, 1);
	cr_assert_eq(app_insert(st[0], app), 0);
	cr_assert_gt(app->id, last, "id %lld given again after the rows were gone",
	             (long long)app->id);
	/* And another handle's next one is past it. */
	last = app->id;
	app_fill(app, seal, 1);
	cr_assert_eq(app_insert(st[1], app), 0);
	cr_assert_gt(app->id, last);
	for (int g = 0; g < GATEWAYS; g++)
		gw_store_close(&st[g]);
	free(app);
}

/* Whether sign_once commits the transaction of a signature the store
 * refused, as the audit writer commits a batch around a refused record
 * with no savepoint of its own (audit.h, apply_whole): what the refusal
 * counted is then committed too. Each test runs in a process of its own. */
static bool commit_refused;

/* One signature's accounting as the sign path does it: reserve in the
 * gateway's cache, count in the store in one transaction, release. 0
 * counted; 1 refused by the cache (before the token would sign); 2 refused
 * by the store at the commit (after it); -1 a store error. */
static int
sign_once(struct gw_store *st, struct gw_quota *q, const char *seal_name, int64_t app_id,
          struct gw_application *app)
{
	const struct gw_seal *seal = gw_policy_seal(pol, seal_name);
	struct gw_quota_resv resv;
	char why[256], err[256] = "";
	uint32_t granted = 0, left = 0;
	int rc;

	if (app_id != 0) {
		/* The sign path reads the application just before. */
		if (gw_appstore_get(st, app_id, app) != 1)
			return -1;
		granted = app->uses_granted;
		left = app->uses_left;
	}
	if (gw_quota_reserve(q, seal, "ann", time(NULL), app_id, granted, left, &resv, why,
	                     sizeof(why)) < 0)
		return 1;
	if (gw_store_tx_begin(st, err, sizeof(err)) < 0) {
		gw_quota_release(q, &resv, false);
		return -1;
	}
	rc = gw_quota_commit_tx(st, &resv, err, sizeof(err));
	if (rc == 0) {
		rc = gw_store_tx_commit(st, err, sizeof(err));
	} else if (rc == -2 && commit_refused) {
		rc = gw_store_tx_commit(st, err, sizeof(err)) == 0 ? 2 : -1;
	} else {
		gw_store_tx_rollback(st);
		rc = rc == -2 ? 2 : -1;
	}
	gw_quota_release(q, &resv, rc == 0);
	if (rc != 0)
		gw_quota_refresh(q, &resv);
	return rc;
}

static void *
quota_racer(void *arg)
{
	struct racer *r = arg;
	struct gw_application *app = malloc(sizeof(*app));

	pthread_barrier_wait(r->go);
	for (unsigned i = 0; app && i < r->tries; i++) {
		int rc = sign_once(r->st, r->q, r->seal, r->app_id, app);

		if (rc == 0)
			r->ok++;
		else if (rc == 1)
			r->refused++;
		else if (rc == 2)
			r->late++;
		else
			r->failed++;
	}
	free(app);
	return NULL;
}

/* 2 gateways × 8 threads × tries signatures; the total of those counted. */
static unsigned
race_quota(struct gw_store **st, struct gw_quota **q, const char *seal, int64_t app_id,
           unsigned tries)
{
	struct racer r[THREADS];
	pthread_t t[THREADS];
	pthread_barrier_t go;
	unsigned ok = 0, early = 0, late = 0;

	pthread_barrier_init(&go, NULL, THREADS);
	for (int i = 0; i < THREADS; i++) {
		memset(&r[i], 0, sizeof(r[i]));
		r[i].st = st[i % GATEWAYS];
		r[i].q = q[i % GATEWAYS];
		r[i].go = &go;
		r[i].seal = seal;
		r[i].app_id = app_id;
		r[i].tries = tries;
		cr_assert_eq(pthread_create(&t[i], NULL, quota_racer, &r[i]), 0);
	}
	for (int i = 0; i < THREADS; i++) {
		pthread_join(t[i], NULL);
		cr_assert_eq(r[i].failed, 0, "thread %d: %u store errors", i, r[i].failed);
		ok += r[i].ok;
		early += r[i].refused;
		late += r[i].late;
	}
	pthread_barrier_destroy(&go);
	/* How often a refused signature would have been signed on the token
	 * first (refused at the commit) rather than before (by the cache). */
	fprintf(stderr, "%s %s: %u counted, %u refused by the cache, %u at the commit\n",
	        be_tag, app_id ? "application" : "quota", ok, early, late);
	return ok;
}

BOTH(a_quota_of_q_counts_exactly_q_across_gateways)
{
	struct gw_store *st[GATEWAYS];
	struct gw_quota *q[GATEWAYS];
	const char *seal = seal_id("q");
	uint64_t used = 0;
	unsigned ok;

	for (int g = 0; g < GATEWAYS; g++) {
		st[g] = open_url(u);
		cr_assert_eq(gw_quota_new(st[g], &q[g]), 0);
	}
	/* 16 × 5 = 80 tries at 37. */
	ok = race_quota(st, q, seal, 0, 5);
	cr_assert_eq(ok, 37, "%u signatures counted for a quota of 37", ok);
	cr_assert_eq(gw_appstore_quota_get(st[0], seal, "total", "", &used), 0);
	cr_assert_eq(used, 37);
	for (int g = 0; g < GATEWAYS; g++) {
		cr_assert_eq(gw_quota_left(q[g], gw_policy_seal(pol, seal), "ann", time(NULL)), 0);
		gw_quota_free(&q[g]);
		gw_store_close(&st[g]);
	}
}

/* A seal of three counters, the middle one (total) the one that fills:
 * each signature's counters are counted together (one statement on
 * PostgreSQL), and a signature the total refuses leaves nothing counted in
 * the counters before and after it. */
BOTH(a_seal_of_three_counters_counts_exactly_across_gateways)
{
	struct gw_store *st[GATEWAYS];
	struct gw_quota *q[GATEWAYS];
	const char *seal = seal_id("m");
	const struct gw_seal *s = gw_policy_seal(pol, seal);
	char day[32], month[32];
	uint64_t used = 0;
	time_t now = time(NULL);
	unsigned ok;

	cr_assert_not_null(s);
	snprintf(day, sizeof(day), "d:%lld", (long long)gw_policy_local_day(s, now));
	snprintf(month, sizeof(month), "m:%lld", (long long)gw_policy_local_month(s, now));
	for (int g = 0; g < GATEWAYS; g++) {
		st[g] = open_url(u);
		cr_assert_eq(gw_quota_new(st[g], &q[g]), 0);
	}
	ok = race_quota(st, q, seal, 0, 5);
	cr_assert_eq(ok, 37, "%u signatures counted for a total of 37", ok);
	cr_assert_eq(gw_appstore_quota_get(st[0], seal, "total", "", &used), 0);
	cr_assert_eq(used, 37);
	cr_assert_eq(gw_appstore_quota_get(st[0], seal, month, "", &used), 0);
	cr_assert_eq(used, 37, "the month counted %llu for 37 signatures", (unsigned long long)used);
	cr_assert_eq(gw_appstore_quota_get(st[0], seal, day, "ann", &used), 0);
	cr_assert_eq(used, 37, "the person's day counted %llu for 37 signatures",
	             (unsigned long long)used);
	for (int g = 0; g < GATEWAYS; g++) {
		gw_quota_free(&q[g]);
		gw_store_close(&st[g]);
	}
}

/* The same race with each refused signature's transaction committed, as
 * the audit writer commits its batch around a record refused with no
 * savepoint: a refusal by the total (the middle counter) counts nothing
 * in the month before it, in the store's one statement or another
 * gateway's, and an application with no use left takes back the
 * counters counted before its spend. */
BOTH(a_refused_signature_counts_nothing_without_a_savepoint)
{
	struct gw_store *st[GATEWAYS];
	struct gw_quota *q[GATEWAYS];
	struct gw_application *app = malloc(sizeof(*app));
	const char *seal = seal_id("m");
	const struct gw_seal *s = gw_policy_seal(pol, seal);
	char day[32], month[32], err[256] = "";
	uint64_t used = 0;
	time_t now = time(NULL);
	unsigned ok;

	cr_assert(app);
	cr_assert_not_null(s);
	commit_refused = true;
	snprintf(day, sizeof(day), "d:%lld", (long long)gw_policy_local_day(s, now));
	snprintf(month, sizeof(month), "m:%lld", (long long)gw_policy_local_month(s, now));
	for (int g = 0; g < GATEWAYS; g++) {
		st[g] = open_url(u);
		cr_assert_eq(gw_quota_new(st[g], &q[g]), 0);
	}
	/* The month's counter is counted first: the racers of both gateways
	 * find the total full in the store (the cache of the other gateway
	 * does not know), after the month counted. */
	ok = race_quota(st, q, seal, 0, 5);
	cr_assert_eq(ok, 37, "%u signatures counted for a total of 37", ok);
	cr_assert_eq(gw_appstore_quota_get(st[0], seal, "total", "", &used), 0);
	cr_assert_eq(used, 37);
	cr_assert_eq(gw_appstore_quota_get(st[0], seal, month, "", &used), 0);
	cr_assert_eq(used, 37, "the month counted %llu for 37 signatures", (unsigned long long)used);
	cr_assert_eq(gw_appstore_quota_get(st[0], seal, day, "ann", &used), 0);
	cr_assert_eq(used, 37, "the person's day counted %llu for 37 signatures",
	             (unsigned long long)used);

	/* A gateway that still believes in a use of an application spent
	 * at the other one: the seal's total is counted before the spend is
	 * refused, and given back in the same transaction. */
	{
		const char *sq = seal_id("q");
		struct gw_quota_resv resv;
		char why[256] = "";

		app_fill(app, sq, 1);
		cr_assert_eq(app_insert(st[0], app), 0);
		cr_assert_eq(gw_store_tx_begin(st[1], err, sizeof(err)), 0, "%s", err);
		cr_assert_eq(gw_appstore_spend_tx(st[1], app->id, time(NULL), err, sizeof(err)), 0,
		             "%s", err);
		cr_assert_eq(gw_store_tx_commit(st[1], err, sizeof(err)), 0, "%s", err);
		cr_assert_eq(gw_quota_reserve(q[0], gw_policy_seal(pol, sq), "ann", now, app->id, 1, 1,
		                              &resv, why, sizeof(why)), 0, "%s", why);
		cr_assert_eq(gw_store_tx_begin(st[0], err, sizeof(err)), 0, "%s", err);
		cr_assert_eq(gw_quota_commit_tx(st[0], &resv, err, sizeof(err)), -2);
		cr_assert_eq(gw_store_tx_commit(st[0], err, sizeof(err)), 0, "%s", err);
		gw_quota_release(q[0], &resv, false);
		cr_assert_eq(gw_appstore_quota_get(st[0], sq, "total", "", &used), 0);
		cr_assert_eq(used, 0, "a refused application's signature counted %llu of the total",
		             (unsigned long long)used);
	}
	for (int g = 0; g < GATEWAYS; g++) {
		gw_quota_free(&q[g]);
		gw_store_close(&st[g]);
	}
	free(app);
}

/* A transaction whose levels ran nothing is alive all along (on
 * PostgreSQL its BEGIN is not sent yet) and commits what comes after. */
BOTH(a_level_that_ran_nothing_leaves_the_transaction_alive)
{
	struct gw_store *st = open_url(u);
	char seal[64], err[256] = "";
	uint64_t used = 0;

	snprintf(seal, sizeof(seal), "%s-idle", be_tag);
	cr_assert_eq(gw_store_tx_begin(st, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(gw_store_tx_begin(st, err, sizeof(err)), 0, "%s", err);
	gw_store_tx_rollback(st);
	cr_assert(gw_store_tx_alive(st), "a transaction that ran nothing taken for dropped");
	cr_assert_eq(gw_store_tx_begin(st, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(gw_store_tx_commit(st, err, sizeof(err)), 0, "%s", err);
	cr_assert(gw_store_tx_alive(st));
	cr_assert_eq(gw_appstore_quota_add_tx(st, seal, "total", "", 0, err, sizeof(err)), 1, "%s",
	             err);
	cr_assert_eq(gw_store_tx_commit(st, err, sizeof(err)), 0, "%s", err);
	/* And one that ran nothing at all commits (nothing) without error. */
	cr_assert_eq(gw_store_tx_begin(st, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(gw_store_tx_commit(st, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(gw_appstore_quota_get(st, seal, "total", "", &used), 0);
	cr_assert_eq(used, 1);
	gw_store_close(&st);
}

/* gw_appstore_quota_add_all_tx alone: every counter within its own limit,
 * the first full one named, all or none counted with no savepoint around
 * it, names of any text (a quote, a backslash, a comma, braces:
 * PostgreSQL gets them as array elements). */
BOTH(several_counters_in_one_call)
{
	struct gw_store *st = open_url(u);
	char seal[64], err[256] = "";
	const char *odd = "a\"n,{n}\\";
	uint64_t used = 0;
	size_t full = 9;

	snprintf(seal, sizeof(seal), "%s-all", be_tag);
	const struct gw_appstore_quota_unit units[3] = {
		{ .seal = seal, .period = "d:1", .person = "", .limit = 3 },
		{ .seal = seal, .period = "m:1", .person = "", .limit = 0 },
		{ .seal = seal, .period = "d:1", .person = odd, .limit = 2 },
	};

	cr_assert_eq(gw_store_tx_begin(st, err, sizeof(err)), 0, "%s", err);
	for (int i = 0; i < 2; i++) {
		cr_assert_eq(gw_appstore_quota_add_all_tx(st, units, 3, &full, err, sizeof(err)), 1,
		             "%s", err);
	}
	/* The person's (the last) is full: the two before it are not
	 * counted either, with no savepoint to undo them. */
	cr_assert_eq(gw_appstore_quota_add_all_tx(st, units, 3, &full, err, sizeof(err)), 0, "%s",
	             err);
	cr_assert_eq(full, 2);
	/* The first alone still has room for one, then it is the full one. */
	cr_assert_eq(gw_appstore_quota_add_all_tx(st, units, 2, &full, err, sizeof(err)), 1, "%s",
	             err);
	full = 9;
	cr_assert_eq(gw_appstore_quota_add_all_tx(st, units, 2, &full, err, sizeof(err)), 0, "%s",
	             err);
	cr_assert_eq(full, 0);
	cr_assert_eq(gw_store_tx_commit(st, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(gw_appstore_quota_get(st, seal, "d:1", "", &used), 0);
	cr_assert_eq(used, 3);
	cr_assert_eq(gw_appstore_quota_get(st, seal, "m:1", "", &used), 0);
	cr_assert_eq(used, 3);
	cr_assert_eq(gw_appstore_quota_get(st, seal, "d:1", odd, &used), 0);
	cr_assert_eq(used, 2);
	gw_store_close(&st);
}

BOTH(the_limit_is_in_the_statement)
{
	struct gw_store *st = open_url(u);
	char seal[48], err[256] = "";
	uint64_t used = 0;

	snprintf(seal, sizeof(seal), "%s-lim", be_tag);
	cr_assert_eq(gw_store_tx_begin(st, err, sizeof(err)), 0, "%s", err);
	/* The first row, bounded too. */
	cr_assert_eq(gw_appstore_quota_add_tx(st, seal, "d:1", "", 1, err, sizeof(err)), 1, "%s", err);
	cr_assert_eq(gw_appstore_quota_add_tx(st, seal, "d:1", "", 1, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(gw_appstore_quota_add_tx(st, seal, "d:1", "", 2, err, sizeof(err)), 1, "%s", err);
	cr_assert_eq(gw_appstore_quota_add_tx(st, seal, "d:1", "", 2, err, sizeof(err)), 0, "%s", err);
	/* Per person apart; 0 = no limit. */
	cr_assert_eq(gw_appstore_quota_add_tx(st, seal, "d:1", "ann", 1, err, sizeof(err)), 1, "%s", err);
	for (int i = 0; i < 5; i++)
		cr_assert_eq(gw_appstore_quota_add_tx(st, seal, "total", "", 0, err, sizeof(err)), 1);
	cr_assert_eq(gw_store_tx_commit(st, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(gw_appstore_quota_get(st, seal, "d:1", "", &used), 0);
	cr_assert_eq(used, 2);
	cr_assert_eq(gw_appstore_quota_get(st, seal, "d:1", "ann", &used), 0);
	cr_assert_eq(used, 1);
	cr_assert_eq(gw_appstore_quota_get(st, seal, "total", "", &used), 0);
	cr_assert_eq(used, 5);
	gw_store_close(&st);
}

/* The cache never refuses what the store would still count: a unit given
 * back at another gateway is seen before a refusal. */
BOTH(a_unit_given_back_elsewhere_is_not_refused)
{
	struct gw_store *st[GATEWAYS];
	struct gw_quota *q[GATEWAYS];
	const char *seal = seal_id("q");
	const struct gw_seal *s = gw_policy_seal(pol, seal);
	struct gw_quota_resv r;
	char why[256], err[256] = "";
	time_t now = time(NULL);

	for (int g = 0; g < GATEWAYS; g++) {
		st[g] = open_url(u);
		cr_assert_eq(gw_quota_new(st[g], &q[g]), 0);
	}
	/* Gateway 0 fills the quota of 37. */
	for (int i = 0; i < 37; i++) {
		cr_assert_eq(gw_quota_reserve(q[0], s, "ann", now, 0, 0, 0, &r, why, sizeof(why)), 0,
		             "%d: %s", i, why);
		cr_assert_eq(gw_store_tx_begin(st[0], err, sizeof(err)), 0);
		cr_assert_eq(gw_quota_commit_tx(st[0], &r, err, sizeof(err)), 0, "%s", err);
		cr_assert_eq(gw_store_tx_commit(st[0], err, sizeof(err)), 0);
		gw_quota_release(q[0], &r, true);
	}
	cr_assert_eq(gw_quota_reserve(q[0], s, "ann", now, 0, 0, 0, &r, why, sizeof(why)), -1);
	/* Gateway 1 voids one of its signatures: the unit goes back. */
	cr_assert_eq(gw_store_tx_begin(st[1], err, sizeof(err)), 0);
	cr_assert_eq(gw_appstore_quota_sub_tx(st[1], seal, "total", "", err, sizeof(err)), 0);
	cr_assert_eq(gw_store_tx_commit(st[1], err, sizeof(err)), 0);
	/* Gateway 0 takes it, and then no more. */
	cr_assert_eq(gw_quota_left(q[0], s, "ann", now), 1);
	cr_assert_eq(gw_quota_reserve(q[0], s, "ann", now, 0, 0, 0, &r, why, sizeof(why)), 0,
	             "refused a unit the store has: %s", why);
	cr_assert_eq(gw_store_tx_begin(st[0], err, sizeof(err)), 0);
	cr_assert_eq(gw_quota_commit_tx(st[0], &r, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(gw_store_tx_commit(st[0], err, sizeof(err)), 0);
	gw_quota_release(q[0], &r, true);
	cr_assert_eq(gw_quota_reserve(q[0], s, "ann", now, 0, 0, 0, &r, why, sizeof(why)), -1);
	for (int g = 0; g < GATEWAYS; g++) {
		gw_quota_free(&q[g]);
		gw_store_close(&st[g]);
	}
}

BOTH(an_application_of_n_uses_is_spent_exactly_n_times)
{
	struct gw_store *st[GATEWAYS];
	struct gw_quota *q[GATEWAYS];
	struct gw_application *app = malloc(sizeof(*app));
	const char *seal = seal_id("a");   /* no quota of its own */
	unsigned ok;

	cr_assert(app);
	for (int g = 0; g < GATEWAYS; g++) {
		st[g] = open_url(u);
		cr_assert_eq(gw_quota_new(st[g], &q[g]), 0);
	}
	app_fill(app, seal, 5);
	cr_assert_eq(app_insert(st[0], app), 0);
	ok = race_quota(st, q, seal, app->id, 4);
	cr_assert_eq(ok, 5, "%u signatures spent an application of 5 uses", ok);
	cr_assert_eq(gw_appstore_get(st[1], app->id, app), 1);
	cr_assert_eq(app->uses_left, 0);
	cr_assert_eq(app->state, GW_APP_USED_UP);
	/* A use given back at one gateway is the other's to spend, even by
	 * the gateway that spent them all (its cache has seen 2 of 2). */
	app_fill(app, seal, 2);
	cr_assert_eq(app_insert(st[0], app), 0);
	cr_assert_eq(sign_once(st[0], q[0], seal, app->id, app), 0);
	cr_assert_eq(sign_once(st[0], q[0], seal, app->id, app), 0);
	cr_assert_eq(sign_once(st[0], q[0], seal, app->id, app), 1, "not refused by the cache");
	{
		char err[256] = "";

		cr_assert_eq(gw_store_tx_begin(st[1], err, sizeof(err)), 0);
		cr_assert_eq(gw_appstore_refund_tx(st[1], app->id, time(NULL), err, sizeof(err)), 0);
		cr_assert_eq(gw_store_tx_commit(st[1], err, sizeof(err)), 0);
	}
	cr_assert_eq(sign_once(st[0], q[0], seal, app->id, app), 0, "the use given back was refused");
	cr_assert_eq(sign_once(st[1], q[1], seal, app->id, app), 1, "not refused by the cache");
	for (int g = 0; g < GATEWAYS; g++) {
		gw_quota_free(&q[g]);
		gw_store_close(&st[g]);
	}
	free(app);
}

/* ---- approvals ---- */

struct approver {
	struct gw_store *st;
	pthread_barrier_t *go;
	const char *who;
	int64_t id;
	struct gw_application *app;
	int rv;
	bool refused;
	char why[GW_WF_TEXT_MAX];
};

static void *
approve_racer(void *arg)
{
	struct approver *a = arg;
	struct gw_wf_decide d = {
		.policy = pol, .who = gw_policy_person(pol, a->who), .d = GW_WF_APPROVE,
		.comment = "ok", .now = time(NULL), .id = a->id, .app = a->app,
	};
	char err[256] = "";

	/* As a gateway does: the request reads the application first (to
	 * check who may see it), then decides inside the commit. */
	(void)gw_appstore_get(a->st, a->id, a->app);
	pthread_barrier_wait(a->go);
	a->rv = -1;
	if (gw_store_tx_begin(a->st, err, sizeof(err)) < 0)
		return NULL;
	if (gw_wf_decide_tx(a->st, &d, err, sizeof(err)) == 0) {
		a->rv = gw_store_tx_commit(a->st, err, sizeof(err));
	} else {
		gw_store_tx_rollback(a->st);
	}
	a->refused = d.refused;
	snprintf(a->why, sizeof(a->why), "%s", d.why);
	return NULL;
}

/* Two approvers on two handles at once on application id. */
static void
race_approvers(struct gw_store **st, int64_t id, const char *w0, const char *w1,
               struct approver *a)
{
	pthread_t t[2];
	pthread_barrier_t go;
	const char *who[2] = { w0, w1 };

	pthread_barrier_init(&go, NULL, 2);
	for (int i = 0; i < 2; i++) {
		memset(&a[i], 0, sizeof(a[i]));
		a[i].st = st[i];
		a[i].go = &go;
		a[i].who = who[i];
		a[i].id = id;
		a[i].app = malloc(sizeof(*a[i].app));
		cr_assert(a[i].app);
		cr_assert_eq(pthread_create(&t[i], NULL, approve_racer, &a[i]), 0);
	}
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	pthread_barrier_destroy(&go);
	for (int i = 0; i < 2; i++)
		free(a[i].app);
}

static int64_t
new_pending(struct gw_store *st)
{
	struct gw_application *app = malloc(sizeof(*app));
	struct gw_use_case uc = { 0 };
	char why[256];
	int64_t id;

	cr_assert(app);
	cr_assert_eq(gw_wf_create(pol, gw_policy_seal(pol, seal_id("a")), gw_policy_person(pol, "ann"), &uc,
	                          "two managers", NULL, 1, 0, time(NULL), app, why, sizeof(why)),
	             0, "%s", why);
	cr_assert_eq(app->state, GW_APP_PENDING);
	cr_assert_eq(app->n_levels, 2);
	cr_assert_eq(app_insert(st, app), 0);
	id = app->id;
	free(app);
	return id;
}

#define ROUNDS 12

BOTH(two_approvers_of_one_level_on_two_gateways_count_once_each)
{
	struct gw_store *st[GATEWAYS];
	struct gw_application *app = malloc(sizeof(*app));
	struct approver a[2];

	cr_assert(app);
	for (int g = 0; g < GATEWAYS; g++)
		st[g] = open_url(u);
	for (int round = 0; round < ROUNDS; round++) {
		int64_t id = new_pending(st[0]);

		race_approvers(st, id, "max", "mia", a);
		for (int i = 0; i < 2; i++)
			cr_assert_eq(a[i].rv, 0, "round %d: %s's approval: %s", round, a[i].who, a[i].why);
		cr_assert_eq(gw_appstore_get(st[0], id, app), 1);
		cr_assert_eq(app->n_approvals, 2, "round %d: %u approvals", round, app->n_approvals);
		/* Quorum 2 met once: on to the executive's level, not past it. */
		cr_assert_eq(app->state, GW_APP_PENDING, "round %d: %s", round,
		             gw_app_state_name(app->state));
		cr_assert_eq(app->level, 1, "round %d: level %u after both managers", round,
		             app->level);
		for (unsigned k = 0; k < 2; k++)
			cr_assert_eq(app->approvals[k].level, 0);
	}
	for (int g = 0; g < GATEWAYS; g++)
		gw_store_close(&st[g]);
	free(app);
}

BOTH(the_same_approver_twice_at_one_level_is_refused)
{
	struct gw_store *st[GATEWAYS];
	struct gw_application *app = malloc(sizeof(*app));
	struct approver a[2];

	cr_assert(app);
	for (int g = 0; g < GATEWAYS; g++)
		st[g] = open_url(u);
	for (int round = 0; round < ROUNDS; round++) {
		int64_t id = new_pending(st[0]);
		int won = -1;

		race_approvers(st, id, "max", "max", a);
		for (int i = 0; i < 2; i++)
			if (a[i].rv == 0)
				won = won < 0 ? i : 99;
		cr_assert(won == 0 || won == 1, "round %d: %s", round,
		          won < 0 ? "neither counted" : "max counted twice");
		cr_assert(a[1 - won].refused, "round %d: not refused by the workflow: %s", round,
		          a[1 - won].why);
		cr_assert(strstr(a[1 - won].why, "already acted") != NULL, "%s", a[1 - won].why);
		cr_assert_eq(gw_appstore_get(st[1], id, app), 1);
		cr_assert_eq(app->n_approvals, 1);
		cr_assert_eq(app->level, 0);
		cr_assert_eq(app->state, GW_APP_PENDING);
	}
	for (int g = 0; g < GATEWAYS; g++)
		gw_store_close(&st[g]);
	free(app);
}

/* A decision read outside a transaction would lock nothing: refused. */
BOTH(a_locked_read_needs_a_transaction)
{
	struct gw_store *st = open_url(u);
	struct gw_application *app = malloc(sizeof(*app));
	char err[256] = "";
	int64_t id;

	cr_assert(app);
	(void)is_pg;
	id = new_pending(st);
	cr_assert_eq(gw_appstore_lock_tx(st, id, app), -1);
	cr_assert_eq(gw_store_tx_begin(st, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(gw_appstore_lock_tx(st, id, app), 1);
	cr_assert_eq(app->id, id);
	cr_assert_eq(app->n_levels, 2);
	cr_assert_eq(gw_appstore_lock_tx(st, id + 1000000, app), 0);
	gw_store_tx_rollback(st);
	gw_store_close(&st);
	free(app);
}

/* Every appstore call keeps SQLite's meaning on each backend: the fields
 * round-trip, listings filter in the store, a transition from a state the
 * row has left fails, a spend of what has no use left says so (-2). */
BOTH(applications_round_trip_and_list)
{
	struct gw_store *st = open_url(u), *st2 = open_url(u);
	struct gw_application *app = malloc(sizeof(*app)), *got = malloc(sizeof(*got));
	struct gw_app_filter f = { 0 };
	char applicant[48], err[256] = "";
	int64_t ids[8], a1, a2, a3;
	size_t n = 0;
	time_t now = time(NULL);

	cr_assert(app && got);
	(void)is_pg;
	snprintf(applicant, sizeof(applicant), "%s-rt", be_tag);
	app_fill(app, seal_id("a"), 3);
	snprintf(app->applicant, sizeof(app->applicant), "%s", applicant);
	snprintf(app->document_type, sizeof(app->document_type), "contract");
	snprintf(app->business_scope, sizeof(app->business_scope), "sales");
	app->has_amount = true;
	app->amount = 123456789012LL;
	app->has_doc = true;
	for (int i = 0; i < 32; i++)
		app->doc_digest[i] = (uint8_t)(i * 7 + 1);
	app->rule = 1;
	app->n_levels = 2;
	app->levels[0].kind = GW_LEVEL_ROLE;
	snprintf(app->levels[0].role, sizeof(app->levels[0].role), "manager");
	app->levels[0].quorum = 2;
	app->levels[1].kind = GW_LEVEL_RELATIVE_HEAD;
	app->levels[1].up = 1;
	app->levels[1].quorum = 1;
	app->level = 1;
	app->state = GW_APP_PENDING;
	app->n_approvals = 2;
	snprintf(app->approvals[0].approver, sizeof(app->approvals[0].approver), "max");
	app->approvals[0].approve = true;
	snprintf(app->approvals[0].comment, sizeof(app->approvals[0].comment), "fine by me");
	app->approvals[0].at = now - 10;
	snprintf(app->approvals[1].approver, sizeof(app->approvals[1].approver), "mia");
	app->approvals[1].approve = true;
	app->approvals[1].at = now - 5;
	cr_assert_eq(app_insert(st, app), 0);
	a1 = app->id;
	cr_assert_eq(gw_appstore_get(st2, a1, got), 1);
	cr_assert_str_eq(got->applicant, applicant);
	cr_assert_str_eq(got->seal, seal_id("a"));
	cr_assert_str_eq(got->document_type, "contract");
	cr_assert_str_eq(got->business_scope, "sales");
	cr_assert(got->has_amount);
	cr_assert_eq(got->amount, 123456789012LL);
	cr_assert_str_eq(got->reason, "truth test");
	cr_assert(got->has_doc);
	cr_assert_arr_eq(got->doc_digest, app->doc_digest, 32);
	cr_assert_eq(got->rule, 1);
	cr_assert_eq(got->n_levels, 2);
	cr_assert_eq(got->levels[0].kind, GW_LEVEL_ROLE);
	cr_assert_str_eq(got->levels[0].role, "manager");
	cr_assert_eq(got->levels[0].quorum, 2);
	cr_assert_eq(got->levels[1].kind, GW_LEVEL_RELATIVE_HEAD);
	cr_assert_eq(got->levels[1].up, 1);
	cr_assert_eq(got->level, 1);
	cr_assert_eq(got->uses_granted, 3);
	cr_assert_eq(got->uses_left, 3);
	cr_assert_eq(got->created, app->created);
	cr_assert_eq(got->valid_until, app->valid_until);
	cr_assert_eq(got->state, GW_APP_PENDING);
	cr_assert_eq(got->n_approvals, 2);
	cr_assert_str_eq(got->approvals[0].approver, "max");
	cr_assert_str_eq(got->approvals[0].comment, "fine by me");
	cr_assert(got->approvals[0].approve);
	cr_assert_eq(got->approvals[0].at, now - 10);
	cr_assert_str_eq(got->approvals[1].approver, "mia");
	cr_assert_str_eq(got->approvals[1].comment, "");
	cr_assert_eq(gw_appstore_get(st2, a1 + 1000000, app), 0);

	/* Pending: no use to spend. */
	cr_assert_eq(gw_store_tx_begin(st, err, sizeof(err)), 0);
	cr_assert_eq(gw_appstore_spend_tx(st, a1, now, err, sizeof(err)), -2);
	cr_assert(strstr(err, "no use left") != NULL, "%s", err);
	/* A transition from a state the row is not in. */
	got->state = GW_APP_REVOKED;
	cr_assert_eq(gw_appstore_update_tx(st, got, GW_APP_AUTHORIZED, 1, now, err, sizeof(err)), -1);
	cr_assert(strstr(err, "changed meanwhile") != NULL, "%s", err);
	/* From the right one: the state moves, a new approval is added. */
	got->state = GW_APP_AUTHORIZED;
	got->level = 2;
	snprintf(got->approvals[2].approver, sizeof(got->approvals[2].approver), "eve");
	got->approvals[2].approve = false;
	got->approvals[2].level = 1;
	got->approvals[2].at = now;
	got->n_approvals = 3;
	cr_assert_eq(gw_appstore_update_tx(st, got, GW_APP_PENDING, 1, now, err, sizeof(err)), 0,
	             "%s", err);
	cr_assert_eq(gw_appstore_spend_tx(st, a1, now, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(gw_store_tx_commit(st, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(gw_appstore_get(st2, a1, got), 1);
	cr_assert_eq(got->state, GW_APP_AUTHORIZED);
	cr_assert_eq(got->uses_left, 2);
	cr_assert_eq(got->n_approvals, 3);
	cr_assert_eq(got->approvals[2].level, 1);
	cr_assert_not(got->approvals[2].approve);

	/* Two more of the applicant: one past its validity, one without a
	 * document, amount or scope. */
	app_fill(app, seal_id("a"), 1);
	snprintf(app->applicant, sizeof(app->applicant), "%s", applicant);
	app->valid_until = now - 1;
	cr_assert_eq(app_insert(st2, app), 0);
	a2 = app->id;
	app_fill(app, seal_id("q"), 1);
	snprintf(app->applicant, sizeof(app->applicant), "%s", applicant);
	cr_assert_eq(app_insert(st, app), 0);
	a3 = app->id;
	cr_assert_eq(gw_appstore_get(st2, a3, got), 1);
	cr_assert_not(got->has_doc);
	cr_assert_not(got->has_amount);
	cr_assert_str_eq(got->business_scope, "");
	cr_assert_eq(got->n_levels, 0);

	f.applicant = applicant;
	cr_assert_eq(gw_appstore_page(st2, &f, true, 0, ids, 8, &n), 0);
	cr_assert_eq(n, 3);
	cr_assert(ids[0] == a1 && ids[1] == a2 && ids[2] == a3);
	cr_assert_eq(gw_appstore_page(st2, &f, false, 0, ids, 2, &n), 0);
	cr_assert_eq(n, 2);
	cr_assert(ids[0] == a3 && ids[1] == a2);
	cr_assert_eq(gw_appstore_page(st2, &f, false, a2, ids, 8, &n), 0);
	cr_assert(n == 1 && ids[0] == a1);
	f.seal = seal_id("a");
	cr_assert_eq(gw_appstore_page(st2, &f, true, a1, ids, 8, &n), 0);
	cr_assert(n == 1 && ids[0] == a2);
	f.seal = NULL;
	f.states = 1u << GW_APP_PENDING;
	cr_assert_eq(gw_appstore_page(st2, &f, true, 0, ids, 8, &n), 0);
	cr_assert_eq(n, 0);
	f.states = (1u << GW_APP_AUTHORIZED) | (1u << GW_APP_REVOKED);
	cr_assert_eq(gw_appstore_page(st2, &f, true, 0, ids, 8, &n), 0);
	cr_assert_eq(n, 3);

	/* Due to expire: a2 (authorized, past its validity), not the others. */
	cr_assert_eq(gw_appstore_due_to_expire(st2, now, ids, 8, &n), 0);
	{
		bool a2_due = false;

		for (size_t i = 0; i < n; i++) {
			cr_assert(ids[i] != a1 && ids[i] != a3);
			a2_due |= ids[i] == a2;
		}
		cr_assert(a2_due);
	}
	/* Given back only up to what was granted. */
	cr_assert_eq(gw_store_tx_begin(st, err, sizeof(err)), 0);
	cr_assert_eq(gw_appstore_refund_tx(st, a1, now, err, sizeof(err)), 0);
	cr_assert_eq(gw_appstore_refund_tx(st, a1, now, err, sizeof(err)), 0);
	cr_assert_eq(gw_store_tx_commit(st, err, sizeof(err)), 0);
	cr_assert_eq(gw_appstore_get(st, a1, got), 1);
	cr_assert_eq(got->uses_left, 3);
	gw_store_close(&st2);
	gw_store_close(&st);
	free(app);
	free(got);
}

#ifdef GW_STORE_HAVE_PG
/* A lost connection fails every appstore call, and nothing is left of a
 * write it was in the middle of. */
/* The sign path's statements are prepared once per connection: after the
 * connection is cut and made again they are prepared anew (a new session
 * has none), not run by a name the server no longer knows. */
/* ---- the audit writer's whole applies (audit.h, apply_whole) ---- */

struct whole {
	const char *seal;
	uint64_t limit;
};

static int
whole_apply(struct gw_store *st, void *arg, char *err, size_t errlen)
{
	const struct whole *w = arg;
	const struct gw_appstore_quota_unit u[2] = {
		{ .seal = w->seal, .period = "m:1", .person = "", .limit = 0 },
		{ .seal = w->seal, .period = "total", .person = "", .limit = w->limit },
	};
	size_t full = 0;
	int rc = gw_appstore_quota_add_all_tx(st, u, 2, &full, err, errlen);

	if (rc == 0)
		snprintf(err, errlen, "used up");
	return rc == 1 ? 0 : -1;
}

#ifdef GW_STORE_HAVE_PG
/* The first row's xmin of sql (one parameter) on a connection of the
 * test's own: the id of the (sub)transaction that wrote it. */
static void
xmin_of(PGconn *c, const char *sql, const char *param, char *out, size_t len)
{
	PGresult *r = PQexecParams(c, sql, 1, NULL, &param, NULL, NULL, 0);

	cr_assert_eq(PQresultStatus(r), PGRES_TUPLES_OK, "%s", PQerrorMessage(c));
	cr_assert_eq(PQntuples(r), 1, "%s: %d rows", sql, PQntuples(r));
	snprintf(out, len, "%s", PQgetvalue(r, 0, 0));
	PQclear(r);
}
#endif

/* On PostgreSQL a whole apply runs in the batch's own transaction, with
 * no savepoint (the savepoint's subtransaction would have written its
 * rows under an id of its own, the audit row's being the batch's); a
 * refused one changes nothing and leaves no record, the next goes on. */
Test(pg, a_whole_apply_runs_with_no_savepoint)
{
#ifdef GW_STORE_HAVE_PG
	const char *u = pg_url();
	struct gw_store *st = open_url(u);
	struct gw_audit *au = NULL;
	struct whole w = { .limit = 2 };
	struct gw_audit_event ev = { .action = "sign", .outcome = "ok", .actor = "ann", .uid = -1,
	                             .pid = -1, .apply_whole = true };
	char seal[64], site[40], err[512] = "", xq[32], xm[32], xa[32];
	uint64_t seq = 0, used = 9;
	PGconn *c;

	snprintf(seal, sizeof(seal), "%s-whole", be_tag);
	snprintf(site, sizeof(site), "t-whole-%x", (unsigned)getpid() & 0xffff);
	w.seal = seal;
	ev.seal = seal;
	cr_assert_eq(gw_store_set_site(st, site, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(gw_audit_open(st, &au, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(gw_audit_record_with(au, &ev, whole_apply, &w, &seq, err, sizeof(err)), 0,
	             "%s", err);
	cr_assert_eq(seq, 1);
	c = PQconnectdb(u);
	cr_assert_eq(PQstatus(c), CONNECTION_OK, "%s", PQerrorMessage(c));
	xmin_of(c, "SELECT xmin::text FROM quota_use WHERE seal = $1 AND period = 'total'", seal,
	        xq, sizeof(xq));
	xmin_of(c, "SELECT xmin::text FROM quota_use WHERE seal = $1 AND period = 'm:1'", seal,
	        xm, sizeof(xm));
	xmin_of(c, "SELECT xmin::text FROM audit WHERE site = $1 AND seq = 1", site, xa,
	        sizeof(xa));
	cr_assert_str_eq(xq, xa, "the counter was written by transaction %s, its record by %s",
	                 xq, xa);
	cr_assert_str_eq(xm, xa);
	/* The total's second unit, then a refusal: the month not counted. */
	cr_assert_eq(gw_audit_record_with(au, &ev, whole_apply, &w, &seq, err, sizeof(err)), 0,
	             "%s", err);
	cr_assert_eq(seq, 2);
	cr_assert_eq(gw_audit_record_with(au, &ev, whole_apply, &w, &seq, err, sizeof(err)), -1);
	cr_assert_str_eq(err, "used up");
	w.limit = 3;
	cr_assert_eq(gw_audit_record_with(au, &ev, whole_apply, &w, &seq, err, sizeof(err)), 0,
	             "%s", err);
	cr_assert_eq(seq, 3, "a refused record left a gap: seq %llu", (unsigned long long)seq);
	gw_audit_close(&au);
	cr_assert_eq(gw_appstore_quota_get(st, seal, "m:1", "", &used), 0);
	cr_assert_eq(used, 3, "the month counted %llu for 3 records", (unsigned long long)used);
	cr_assert_eq(gw_appstore_quota_get(st, seal, "total", "", &used), 0);
	cr_assert_eq(used, 3);
	PQfinish(c);
	gw_store_close(&st);
#else
	cr_skip_test("built without libpq");
#endif
}

Test(pg, prepared_statements_survive_a_reconnection)
{
	const char *u = pg_url();
	struct gw_store *st;
	struct gw_application *app = malloc(sizeof(*app));
	char lu[700], seal[64], err[256] = "";
	uint64_t used = 0;
	size_t full = 9;

	cr_assert(app);
	load_policy();
	snprintf(seal, sizeof(seal), "%s-prep", be_tag);
	const struct gw_appstore_quota_unit unit = { .seal = seal, .period = "total", .person = "" };

	snprintf(lu, sizeof(lu), "%s%sapplication_name=sg-truth-prep", u, strchr(u, '?') ? "&" : "?");
	st = open_url(lu);
	app_fill(app, seal_id("a"), 3);
	cr_assert_eq(app_insert(st, app), 0);
	for (int round = 0; round < 2; round++) {
		cr_assert_eq(gw_store_tx_begin(st, err, sizeof(err)), 0, "round %d: %s", round, err);
		cr_assert_eq(gw_appstore_quota_add_all_tx(st, &unit, 1, &full, err, sizeof(err)), 1,
		             "round %d: %s", round, err);
		cr_assert_eq(gw_appstore_spend_tx(st, app->id, time(NULL), err, sizeof(err)), 0,
		             "round %d: %s", round, err);
		cr_assert_eq(gw_store_tx_commit(st, err, sizeof(err)), 0, "round %d: %s", round, err);
		if (round > 0)
			break;
		PGconn *c = PQconnectdb(u);
		PGresult *r;

		cr_assert_eq(PQstatus(c), CONNECTION_OK);
		r = PQexec(c, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
		           "WHERE usename = current_user AND application_name = 'sg-truth-prep'");
		cr_assert_eq(PQresultStatus(r), PGRES_TUPLES_OK, "%s", PQerrorMessage(c));
		cr_assert_eq(PQntuples(r), 1);
		PQclear(r);
		PQfinish(c);
		usleep(100000);
		/* The next transaction's begin finds the connection cut and
		 * makes it again before its BEGIN (which goes with the first
		 * statement) is sent. */
	}
	cr_assert_eq(gw_appstore_quota_get(st, seal, "total", "", &used), 0);
	cr_assert_eq(used, 2);
	cr_assert_eq(gw_appstore_get(st, app->id, app), 1);
	cr_assert_eq(app->uses_left, 1);
	gw_store_close(&st);
	free(app);
}

Test(pg, applications_fail_closed_on_a_lost_connection)
{
	const char *u = pg_url();
	struct gw_store *st;
	struct gw_application *app = malloc(sizeof(*app));
	char lu[700], err[256] = "", sql[200];
	uint64_t used = 7;
	size_t n = 9;
	int64_t ids[4], first;

	cr_assert(app);
	load_policy();
	snprintf(lu, sizeof(lu), "%s%sapplication_name=sg-truth-lost", u, strchr(u, '?') ? "&" : "?");
	st = open_url(lu);
	app_fill(app, seal_id("a"), 1);
	snprintf(app->applicant, sizeof(app->applicant), "lost-conn");
	cr_assert_eq(app_insert(st, app), 0);
	first = app->id;
	cr_assert_eq(gw_store_tx_begin(st, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(gw_appstore_insert_tx(st, app, err, sizeof(err)), 0, "%s", err);
	snprintf(sql, sizeof(sql), "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
	         "WHERE usename = current_user AND application_name = 'sg-truth-lost'");
	{
		PGconn *c = PQconnectdb(u);
		PGresult *r;

		cr_assert_eq(PQstatus(c), CONNECTION_OK);
		r = PQexec(c, sql);
		cr_assert_eq(PQresultStatus(r), PGRES_TUPLES_OK, "%s", PQerrorMessage(c));
		PQclear(r);
		PQfinish(c);
	}
	usleep(100000);
	/* Inside the transaction the cut connection fails every call, with no
	 * row content in the message, and the transaction commits nothing. */
	cr_assert_eq(gw_appstore_get(st, app->id, app), -1);
	cr_assert_eq(gw_appstore_insert_tx(st, app, err, sizeof(err)), -1);
	cr_assert(strstr(err, "PostgreSQL store") != NULL, "%s", err);
	cr_assert(strstr(err, "truth test") == NULL, "row content in the message: %s", err);
	cr_assert_eq(gw_appstore_spend_tx(st, 1, time(NULL), err, sizeof(err)), -1);
	cr_assert_eq(gw_appstore_quota_add_tx(st, seal_id("q"), "total", "", 5, err, sizeof(err)), -1);
	cr_assert_eq(gw_appstore_quota_get(st, seal_id("q"), "total", "", &used), -1);
	cr_assert_eq(gw_appstore_page(st, &(struct gw_app_filter){ 0 }, true, 0, ids, 4, &n), -1);
	cr_assert_eq(n, 0);
	cr_assert_eq(gw_store_tx_commit(st, err, sizeof(err)), -1, "a lost transaction commits nothing");
	/* Outside any transaction the next call reconnects (docs/store.md)
	 * and finds only what was committed before the cut. */
	cr_assert_eq(gw_appstore_get(st, first, app), 1, "reconnected after the cut");
	cr_assert_eq(gw_appstore_page(st, &(struct gw_app_filter){ .applicant = "lost-conn" }, true, 0,
	                              ids, 4, &n), 0);
	cr_assert_eq(n, 1, "the insert of the lost transaction is not there");
	cr_assert_eq(ids[0], first);
	gw_store_close(&st);
	free(app);
}
#endif
