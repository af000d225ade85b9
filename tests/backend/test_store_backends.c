/*
 * The store's credential repositories run the same assertions on each
 * backend: SQLite (a file in a temp dir) and PostgreSQL (the cluster
 * run-store-backends.sh starts with tests/lib/pg.sh and names in
 * SG_TEST_PG_URL; without it the pg tests are skipped). Passwords, the
 * sign-in attempts raced by 16 threads on 16 store handles (the database
 * decides, not a mutex), lockout and unlock, TOTP secrets, the token
 * binding and known keys; on pg also its schema, its migrations, failing
 * closed and reconnecting. The audit log and sites: test_pgaudit_backends.c.
 */
#include <criterion/criterion.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>
#include <sqlite3.h>

#include "store.h"
#include "backend.h"

#define THREADS 16

static char dir[64];
static char url[512];

static void
setup(void)
{
	strcpy(dir, "/tmp/sg-sb-XXXXXX");
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
sqlite_url(void)
{
	snprintf(url, sizeof(url), "sqlite:%s/sealgate.db", dir);
	return url;
}

static const char *
pg_url(void)
{
	const char *u = getenv("SG_TEST_PG_URL");

	if (u == NULL || *u == '\0')
		cr_skip_test("no PostgreSQL cluster (run through run-store-backends.sh)");
	snprintf(url, sizeof(url), "%s", u);
	return url;
}

static struct gw_store *
open_url(const char *u)
{
	struct gw_store *st = NULL;
	char err[512] = "";

	cr_assert_eq(gw_store_open_url(u, &st, err, sizeof(err)), 0, "open %s: %s", u, err);
	cr_assert_eq(gw_store_attempts_init(st, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(gw_store_totp_init(st, err, sizeof(err)), 0, "%s", err);
	return st;
}

/* Each check once per backend; account names carry the backend's name so
 * that the checks never share a row on the one pg database. */
#define BOTH(name)                                                       \
	static void check_##name(const char *u, const char *be);         \
	Test(sqlite, name) { check_##name(sqlite_url(), "sq"); }         \
	Test(pg, name) { check_##name(pg_url(), "pg"); }                 \
	static void check_##name(const char *u, const char *be)

static const char *
acct_name(const char *be, const char *name)
{
	static char buf[64];

	snprintf(buf, sizeof(buf), "%s-%s", be, name);
	return buf;
}

BOTH(backend_name)
{
	struct gw_store *st = open_url(u);

	cr_assert_str_eq(gw_store_backend(st), strcmp(be, "pg") == 0 ? "postgresql" : "sqlite");
	cr_assert_gt(gw_store_schema_version(st), 0);
	gw_store_close(&st);
	cr_assert_null(st);
}

BOTH(passwords_round_trip)
{
	struct gw_store *st = open_url(u), *st2;
	char user[64], h[256];
	const char *hash = "$argon2id$v=19$m=65536,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA";

	snprintf(user, sizeof(user), "%s", acct_name(be, "alice"));
	cr_assert_eq(gw_store_password_get(st, user, h, sizeof(h)), 0, "no account yet");
	cr_assert_eq(gw_store_password_set(st, user, hash), 0);
	cr_assert_eq(gw_store_password_get(st, user, h, sizeof(h)), 1);
	cr_assert_str_eq(h, hash);
	/* Replaced, and seen by another handle (another gateway). */
	cr_assert_eq(gw_store_password_set(st, user, "$argon2id$second"), 0);
	st2 = open_url(u);
	cr_assert_eq(gw_store_password_get(st2, user, h, sizeof(h)), 1);
	cr_assert_str_eq(h, "$argon2id$second");
	/* Too small a buffer is an error, not a cut hash. */
	cr_assert_eq(gw_store_password_get(st2, user, h, 8), -1);
	/* No password (NULL) reads as none. */
	cr_assert_eq(gw_store_password_set(st, user, NULL), 0);
	cr_assert_eq(gw_store_password_get(st2, user, h, sizeof(h)), 0);
	cr_assert_eq(gw_store_password_set(st, "", hash), -1);
	gw_store_close(&st2);
	gw_store_close(&st);
}

/* ---- sign-in attempts under 16 threads, each on its own store handle ---- */

struct race {
	const char *url, *user;
	unsigned max;
	int64_t now;
	pthread_barrier_t go;
	atomic_int taken, evaluated, errors;
	bool fail_each;          /* end every taken attempt as a failure */
};

static void *
racer(void *arg)
{
	struct race *r = arg;
	struct gw_store *st = NULL;
	struct gw_store_attempts row;
	char err[512];
	int t;

	if (gw_store_open_url(r->url, &st, err, sizeof(err)) < 0 ||
	    gw_store_attempts_init(st, err, sizeof(err)) < 0) {
		atomic_fetch_add(&r->errors, 1);
		pthread_barrier_wait(&r->go);
		gw_store_close(&st);
		return NULL;
	}
	pthread_barrier_wait(&r->go);
	for (;;) {
		t = gw_store_attempt_take(st, r->user, -1, r->now, r->max, 60, &row);
		if (t < 0) {
			atomic_fetch_add(&r->errors, 1);
			break;
		}
		if (t != GW_ATTEMPT_TAKEN)
			break;
		atomic_fetch_add(&r->taken, 1);
		if (!r->fail_each)
			break;
		/* A wrong guess checked: counted, locks at max. */
		atomic_fetch_add(&r->evaluated, 1);
		if (gw_store_attempt_end(st, r->user, -1, r->now, GW_ATTEMPT_FAILED, r->max, 30,
		                         3600, &row) < 0) {
			atomic_fetch_add(&r->errors, 1);
			break;
		}
	}
	gw_store_close(&st);
	return NULL;
}

static void
race(struct race *r)
{
	pthread_t th[THREADS];

	pthread_barrier_init(&r->go, NULL, THREADS);
	for (int i = 0; i < THREADS; i++)
		cr_assert_eq(pthread_create(&th[i], NULL, racer, r), 0);
	for (int i = 0; i < THREADS; i++)
		pthread_join(th[i], NULL);
	pthread_barrier_destroy(&r->go);
	cr_assert_eq(atomic_load(&r->errors), 0, "store errors in the race");
}

BOTH(attempts_in_flight_at_most_max)
{
	struct race r = { .url = u, .user = acct_name(be, "racer"), .max = 3, .now = time(NULL) };
	struct gw_store *st;
	struct gw_store_attempts row;

	/* The table exists before the race (SQLite makes it on first use). */
	st = open_url(u);
	race(&r);
	cr_assert_eq(atomic_load(&r.taken), 3, "%d of %d threads took an attempt, max 3",
	             atomic_load(&r.taken), THREADS);
	cr_assert_eq(gw_store_attempts_get(st, r.user, -1, r.now, &row), 0);
	cr_assert_eq(row.inflight, 3);
	/* A fourth is refused as full, not as locked. */
	cr_assert_eq(gw_store_attempt_take(st, r.user, -1, r.now, 3, 60, &row), GW_ATTEMPT_FULL);
	/* In-flight attempts stop counting after their ttl. */
	cr_assert_eq(gw_store_attempt_take(st, r.user, -1, r.now + 61, 3, 60, &row),
	             GW_ATTEMPT_TAKEN);
	cr_assert_eq(row.inflight, 1);
	gw_store_close(&st);
}

BOTH(racing_guesses_lock_after_max)
{
	struct race r = { .url = u, .user = acct_name(be, "guesser"), .max = 5, .now = time(NULL),
	                  .fail_each = true };
	struct gw_store *st;
	struct gw_store_attempts row;

	st = open_url(u);
	race(&r);
	/* Whatever the interleaving, max wrong guesses are checked and then
	 * the account is locked: no sixth guess anywhere. */
	cr_assert_eq(atomic_load(&r.evaluated), 5, "%d guesses checked before the lockout, max 5",
	             atomic_load(&r.evaluated));
	cr_assert_eq(gw_store_attempts_get(st, r.user, -1, r.now, &row), 0);
	cr_assert_eq(row.lockouts, 1);
	cr_assert_eq(row.failed, 0);
	cr_assert_eq(row.inflight, 0);
	cr_assert_eq(row.locked_until, r.now + 30);
	cr_assert_eq(gw_store_attempt_take(st, r.user, -1, r.now, 5, 60, &row), GW_ATTEMPT_LOCKED);
	cr_assert_eq(row.locked_until, r.now + 30);
	gw_store_close(&st);
}

BOTH(lockout_doubles_and_clear_unlocks)
{
	struct gw_store *st = open_url(u);
	struct gw_store_attempts row;
	char user[64];
	int64_t now = 1700000000;

	snprintf(user, sizeof(user), "%s", acct_name(be, "bob"));
	for (int i = 0; i < 2; i++) {
		cr_assert_eq(gw_store_attempt_take(st, user, 1000, now, 2, 60, &row), GW_ATTEMPT_TAKEN);
		cr_assert_eq(gw_store_attempt_end(st, user, 1000, now, GW_ATTEMPT_FAILED, 2, 30, 100,
		                                  &row), 0);
	}
	cr_assert_eq(row.locked_until, now + 30);
	cr_assert_eq(row.lockouts, 1);
	cr_assert_eq(gw_store_attempt_take(st, user, 1000, now + 29, 2, 60, &row), GW_ATTEMPT_LOCKED);
	/* The key is the OS user: the account's own logins are not locked. */
	cr_assert_eq(gw_store_attempt_take(st, user, -1, now, 2, 60, &row), GW_ATTEMPT_TAKEN);
	cr_assert_eq(gw_store_attempt_end(st, user, -1, now, GW_ATTEMPT_VOID, 2, 30, 100, &row), 0);
	/* The second lockout in a row doubles, the third is capped. */
	now += 30;
	for (int i = 0; i < 2; i++) {
		cr_assert_eq(gw_store_attempt_take(st, user, 1000, now, 2, 60, &row), GW_ATTEMPT_TAKEN);
		cr_assert_eq(gw_store_attempt_end(st, user, 1000, now, GW_ATTEMPT_FAILED, 2, 30, 100,
		                                  &row), 0);
	}
	cr_assert_eq(row.locked_until, now + 60);
	cr_assert_eq(row.lockouts, 2);
	/* Unlock: every key of the account, failures and lockouts gone. */
	cr_assert_eq(gw_store_attempts_clear(st, user), 2);
	cr_assert_eq(gw_store_attempts_get(st, user, 1000, now, &row), 0);
	cr_assert_eq(row.locked_until, 0);
	cr_assert_eq(row.lockouts, 0);
	cr_assert_eq(row.failed, 0);
	cr_assert_eq(gw_store_attempt_take(st, user, 1000, now, 2, 60, &row), GW_ATTEMPT_TAKEN);
	/* A success ends the run of failures. */
	cr_assert_eq(gw_store_attempt_end(st, user, 1000, now, GW_ATTEMPT_FAILED, 2, 30, 100, &row), 0);
	cr_assert_eq(row.failed, 1);
	cr_assert_eq(gw_store_attempt_take(st, user, 1000, now, 2, 60, &row), GW_ATTEMPT_TAKEN);
	cr_assert_eq(gw_store_attempt_end(st, user, 1000, now, GW_ATTEMPT_OK, 2, 30, 100, &row), 0);
	cr_assert_eq(row.failed, 0);
	cr_assert_eq(row.inflight, 0);
	cr_assert_eq(gw_store_attempts_clear(st, acct_name(be, "nobody")), 0);
	gw_store_close(&st);
}

BOTH(totp_put_get_advance_delete)
{
	struct gw_store *st = open_url(u);
	uint8_t sealed[64], got[64];
	size_t n;
	uint64_t last = 0;
	char user[64], err[512];

	snprintf(user, sizeof(user), "%s", acct_name(be, "carol"));
	for (size_t i = 0; i < sizeof(sealed); i++)
		sealed[i] = (uint8_t)(i * 7 + 1);
	sealed[5] = 0;              /* bytes, not a string */
	cr_assert_eq(gw_store_totp_enrolled(st, user), 0);
	n = sizeof(got);
	cr_assert_eq(gw_store_totp_get(st, user, got, &n, &last), 0);
	cr_assert_eq(gw_store_totp_put(st, user, sealed, 44, 100, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(gw_store_totp_enrolled(st, user), 1);
	n = sizeof(got);
	cr_assert_eq(gw_store_totp_get(st, user, got, &n, &last), 1);
	cr_assert_eq(n, 44);
	cr_assert_arr_eq(got, sealed, 44);
	cr_assert_eq(last, 100);
	/* Too little room is an error. */
	n = 10;
	cr_assert_eq(gw_store_totp_get(st, user, got, &n, &last), -1);
	/* A step is used once: forward only. */
	cr_assert_eq(gw_store_totp_advance(st, user, 101), 1);
	cr_assert_eq(gw_store_totp_advance(st, user, 101), 0);
	cr_assert_eq(gw_store_totp_advance(st, user, 99), 0);
	/* Replaced by a new enrolment. */
	cr_assert_eq(gw_store_totp_put(st, user, sealed + 1, 60, 7, err, sizeof(err)), 0, "%s", err);
	n = sizeof(got);
	cr_assert_eq(gw_store_totp_get(st, user, got, &n, &last), 1);
	cr_assert_eq(n, 60);
	cr_assert_arr_eq(got, sealed + 1, 60);
	cr_assert_eq(last, 7);
	cr_assert_eq(gw_store_totp_delete(st, user), 1);
	cr_assert_eq(gw_store_totp_delete(st, user), 0);
	cr_assert_eq(gw_store_totp_enrolled(st, user), 0);
	gw_store_close(&st);
}

struct keys_seen {
	char site[4][64];
	size_t len[4];
	uint8_t first[4];
	int n;
};

static void
key_seen(void *arg, const char *site, const uint8_t *der, size_t len)
{
	struct keys_seen *k = arg;

	if (k->n < 4) {
		snprintf(k->site[k->n], sizeof(k->site[0]), "%s", site);
		k->len[k->n] = len;
		k->first[k->n] = der[0];
	}
	k->n++;
}

BOTH(totp_site_keys_and_copies)
{
	struct gw_store *st = open_url(u);
	uint8_t key[300], copy[500], got[GW_STORE_TOTP_COPY_MAX], legacy[44];
	struct keys_seen seen = { 0 };
	char user[64], site_a[64], site_b[64], err[512];
	size_t n;
	uint64_t last = 0;

	snprintf(user, sizeof(user), "%s", acct_name(be, "erin"));
	snprintf(site_a, sizeof(site_a), "%s", acct_name(be, "sa"));
	snprintf(site_b, sizeof(site_b), "%s", acct_name(be, "sb"));
	for (size_t i = 0; i < sizeof(key); i++)
		key[i] = (uint8_t)(i * 5 + 3);
	for (size_t i = 0; i < sizeof(copy); i++)
		copy[i] = (uint8_t)(i * 11 + 2);
	memset(legacy, 0x5a, sizeof(legacy));
	/* Keys: published, replaced, listed by site (bytes, not strings). */
	key[3] = 0;
	cr_assert_eq(gw_store_totp_key_put(st, site_b, key, 290, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(gw_store_totp_key_put(st, site_a, key + 1, 280, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(gw_store_totp_key_put(st, site_a, key + 2, 270, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(gw_store_totp_key_put(st, site_a, key, 0, err, sizeof(err)), -1);
	cr_assert_geq(gw_store_totp_keys(st, key_seen, &seen), 2);
	for (int i = 0; i < seen.n && i < 4; i++) {
		if (strcmp(seen.site[i], site_a) == 0)
			cr_assert(seen.len[i] == 270 && seen.first[i] == key[2]);
		if (strcmp(seen.site[i], site_b) == 0)
			cr_assert(seen.len[i] == 290 && seen.first[i] == key[0]);
	}
	/* A copy needs an enrolled person. */
	cr_assert_eq(gw_store_totp_copy_put(st, user, site_a, copy, 400, NULL, NULL, 0, err,
	                                    sizeof(err)), 0);
	/* Enrolled with no secret of the old kind: an empty one comes back. */
	cr_assert_eq(gw_store_totp_put(st, user, NULL, 0, 3, err, sizeof(err)), 0, "%s", err);
	n = sizeof(got);
	cr_assert_eq(gw_store_totp_get(st, user, got, &n, &last), 1);
	cr_assert_eq(n, 0);
	cr_assert_eq(last, 3);
	cr_assert_eq(gw_store_totp_copy_put(st, user, site_a, copy, 400, NULL, NULL, 0, err,
	                                    sizeof(err)), 1, "%s", err);
	n = sizeof(got);
	cr_assert_eq(gw_store_totp_copy_get(st, user, site_a, got, &n), 1);
	cr_assert_eq(n, 400);
	cr_assert_arr_eq(got, copy, 400);
	n = sizeof(got);
	cr_assert_eq(gw_store_totp_copy_get(st, user, site_b, got, &n), 0);
	n = 10;
	cr_assert_eq(gw_store_totp_copy_get(st, user, site_a, got, &n), -1);
	/* Made from site a's copy: only while that copy is still the same. */
	cr_assert_eq(gw_store_totp_copy_put(st, user, site_b, copy + 1, 450, site_a, copy + 1, 400,
	                                    err, sizeof(err)), 0);
	cr_assert_eq(gw_store_totp_copy_put(st, user, site_b, copy + 1, 450, site_a, copy, 400, err,
	                                    sizeof(err)), 1, "%s", err);
	/* Made from the old kind of secret: only while it is still there. */
	cr_assert_eq(gw_store_totp_copy_put(st, user, site_b, copy, 300, NULL, legacy,
	                                    sizeof(legacy), err, sizeof(err)), 0);
	cr_assert_eq(gw_store_totp_put(st, user, legacy, sizeof(legacy), 3, err, sizeof(err)), 0);
	n = sizeof(got);
	cr_assert_eq(gw_store_totp_copy_get(st, user, site_a, got, &n), 0,
	             "a new enrolment removes the copies of the old secret");
	cr_assert_eq(gw_store_totp_copy_put(st, user, site_b, copy, 300, NULL, legacy,
	                                    sizeof(legacy), err, sizeof(err)), 1, "%s", err);
	/* A reset removes the copies with the secret. */
	cr_assert_eq(gw_store_totp_delete(st, user), 1);
	n = sizeof(got);
	cr_assert_eq(gw_store_totp_copy_get(st, user, site_b, got, &n), 0);
	gw_store_close(&st);
}

/* ---- the token binding and known keys (store_meta) ---- */

/* Reads store_meta behind the store's back: SQLite by its file, pg with
 * libpq. name NULL: the number of known keys (rows 'key:…'); else the
 * length of that row's value, copied to out. */
static long
meta_read(const char *u, const char *be, const char *name, uint8_t *out, size_t room)
{
	long rv = -1;

	if (strcmp(be, "sq") == 0) {
		sqlite3 *db = NULL;
		sqlite3_stmt *s = NULL;

		cr_assert_eq(sqlite3_open(u + 7, &db), SQLITE_OK);
		cr_assert_eq(sqlite3_prepare_v2(db, name ? "SELECT value FROM store_meta WHERE name = ?" :
		             "SELECT count(*) FROM store_meta WHERE name LIKE 'key:%'", -1, &s,
		             NULL), SQLITE_OK);
		if (name)
			sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
		if (sqlite3_step(s) == SQLITE_ROW) {
			if (name == NULL) {
				rv = sqlite3_column_int(s, 0);
			} else {
				rv = sqlite3_column_bytes(s, 0);
				if ((size_t)rv <= room)
					memcpy(out, sqlite3_column_blob(s, 0), (size_t)rv);
			}
		}
		sqlite3_finalize(s);
		sqlite3_close(db);
	} else {
		PGconn *c = PQconnectdb(u);
		const char *vals[1] = { name };
		PGresult *r;

		cr_assert_eq(PQstatus(c), CONNECTION_OK, "%s", PQerrorMessage(c));
		/* The binding and known keys are the site's (site_meta), the
		 * store's id the group's (store_meta). */
		r = PQexecParams(c, !name ? "SELECT count(*) FROM site_meta WHERE site = 'main' AND "
		                 "name LIKE 'key:%'" : strcmp(name, "id") == 0 ?
		                 "SELECT value FROM store_meta WHERE name = $1" :
		                 "SELECT value FROM site_meta WHERE site = 'main' AND name = $1",
		                 name ? 1 : 0, NULL, vals, NULL, NULL, 1);
		cr_assert_eq(PQresultStatus(r), PGRES_TUPLES_OK, "%s", PQerrorMessage(c));
		if (PQntuples(r) == 1) {
			if (name == NULL) {
				const uint8_t *v = (const uint8_t *)PQgetvalue(r, 0, 0);
				rv = 0;
				for (int i = 0; i < 8; i++)
					rv = rv << 8 | v[i];
			} else {
				rv = PQgetlength(r, 0, 0);
				if ((size_t)rv <= room)
					memcpy(out, PQgetvalue(r, 0, 0), (size_t)rv);
			}
		}
		PQclear(r);
		PQfinish(c);
	}
	return rv;
}

BOTH(binding_and_known_keys)
{
	struct gw_store *st = open_url(u);
	struct gw_store_binding b = { .serial = "0123456789abcdef", .ncerts = 3,
	                              .since = 1700000001 };
	struct gw_store_known_key keys[3] = {
		{ "pkcs11:object=a", (const uint8_t *)"\x01\x00\x02", 3 },
		{ "pkcs11:object=b", (const uint8_t *)"bbbb", 4 },
		{ "pkcs11:object=c", (const uint8_t *)"c", 1 },
	};
	uint8_t v[128];
	char err[512];

	(void)be;
	memset(b.certs, 0xab, sizeof(b.certs));
	cr_assert_eq(gw_store_binding_set(st, &b, err, sizeof(err)), 0, "%s", err);
	b.ncerts = 4;
	cr_assert_eq(gw_store_binding_set(st, &b, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(meta_read(u, be, "token_binding", v, sizeof(v)), 64);
	cr_assert_arr_eq(v, "0123456789abcdef\0\0\0\0", 20);
	cr_assert_eq(v[20], 0xab);
	cr_assert_eq(v[55], 4, "the second binding replaced the first");
	cr_assert_eq(v[63], 1700000001 & 0xff);
	/* The store's id, made with the schema. */
	cr_assert_eq(meta_read(u, be, "id", v, sizeof(v)), 16);

	cr_assert_eq(gw_store_known_keys_set(st, keys, 3, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(meta_read(u, be, NULL, NULL, 0), 3);
	cr_assert_eq(meta_read(u, be, "key:pkcs11:object=a", v, sizeof(v)), 3);
	cr_assert_arr_eq(v, "\x01\x00\x02", 3);
	/* Replaced as a whole. */
	cr_assert_eq(gw_store_known_keys_set(st, keys + 1, 1, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(meta_read(u, be, NULL, NULL, 0), 1);
	cr_assert_eq(meta_read(u, be, "key:pkcs11:object=b", v, sizeof(v)), 4);
	cr_assert_eq(meta_read(u, be, "key:pkcs11:object=a", v, sizeof(v)), -1);
	/* The binding is not a known key. */
	cr_assert_eq(meta_read(u, be, "token_binding", v, sizeof(v)), 64);
	cr_assert_eq(gw_store_known_keys_set(st, NULL, 0, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(meta_read(u, be, NULL, NULL, 0), 0);
	gw_store_close(&st);
}

BOTH(transactions_nest)
{
	struct gw_store *st = open_url(u);
	char err[512], h[64];
	char user[64];

	snprintf(user, sizeof(user), "%s", acct_name(be, "tx"));
	cr_assert_eq(gw_store_tx_begin(st, err, sizeof(err)), 0, "%s", err);
	cr_assert(gw_store_tx_alive(st));
	cr_assert_eq(gw_store_password_set(st, user, "$outer"), 0);
	cr_assert_eq(gw_store_tx_begin(st, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(gw_store_password_set(st, user, "$inner"), 0);
	gw_store_tx_rollback(st);
	cr_assert_eq(gw_store_password_get(st, user, h, sizeof(h)), 1);
	cr_assert_str_eq(h, "$outer", "the inner level alone was undone");
	cr_assert_eq(gw_store_tx_commit(st, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(gw_store_password_get(st, user, h, sizeof(h)), 1);
	cr_assert_str_eq(h, "$outer");
	/* A rolled back outer level leaves nothing. */
	cr_assert_eq(gw_store_tx_begin(st, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(gw_store_password_set(st, user, "$gone"), 0);
	gw_store_tx_rollback(st);
	cr_assert_eq(gw_store_password_get(st, user, h, sizeof(h)), 1);
	cr_assert_str_eq(h, "$outer");
	gw_store_close(&st);
}

/* ---- sites ---- */

Test(sqlite, one_site_per_file)
{
	struct gw_store *st = open_url(sqlite_url());
	char err[512] = "";

	cr_assert_str_eq(gw_store_site(st), GW_SITE_DEFAULT, "a store is site main until set");
	cr_assert_eq(gw_store_set_site(st, "Shanghai", err, sizeof(err)), -1, "upper case refused");
	cr_assert_eq(gw_store_set_site(st, "", err, sizeof(err)), -1);
	cr_assert_eq(gw_store_set_site(st, "shanghai", err, sizeof(err)), 0, "%s", err);
	cr_assert_str_eq(gw_store_site(st), "shanghai");
	cr_assert_eq(gw_store_site_claim(st, err, sizeof(err)), 0, "%s", err);
	gw_store_close(&st);
	st = open_url(sqlite_url());
	cr_assert_eq(gw_store_set_site(st, "shanghai", err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(gw_store_set_site(st, "shenzhen", err, sizeof(err)), -1,
	             "a SQLite file holds one site's chain");
	cr_assert(strstr(err, "belongs to site \"shanghai\"") != NULL, "%s", err);
	cr_assert_str_eq(gw_store_site(st), "shanghai", "a refused name leaves the site as it was");
	gw_store_close(&st);
}

/* ---- the URL, and what only PostgreSQL has ---- */

Test(sqlite, url_forms)
{
	struct gw_store *st = NULL;
	char err[512] = "", p[128];

	snprintf(p, sizeof(p), "%s/plain.db", dir);
	cr_assert_eq(gw_store_open_url(p, &st, err, sizeof(err)), 0, "%s", err);
	cr_assert_str_eq(gw_store_backend(st), "sqlite");
	gw_store_close(&st);
	cr_assert(access(p, F_OK) == 0, "a plain path is a SQLite file");
	cr_assert_eq(gw_store_open_url("mysql://x/y", &st, err, sizeof(err)), -1);
	cr_assert(strstr(err, "unknown store scheme") != NULL, "%s", err);
	cr_assert_null(st);
	cr_assert(gw_store_url_is_pg("postgresql:///sealgate"));
	cr_assert(gw_store_url_is_pg("postgres://h/db"));
	cr_assert(!gw_store_url_is_pg("sqlite:/x"));
}

Test(pg, unreachable_server_fails_closed)
{
	struct gw_store *st = NULL;
	char err[512] = "", bad[600];

	(void)pg_url();
	/* A socket directory with no server; the password in the URL is
	 * never in the message. */
	snprintf(bad, sizeof(bad),
	         "postgresql://sealgate:Sup3rS3cretPw@/sealgate?host=%s/nothing-here", dir);
	cr_assert_eq(gw_store_open_url(bad, &st, err, sizeof(err)), -1);
	cr_assert_null(st);
	cr_assert(strstr(err, "PostgreSQL store: cannot connect") != NULL, "%s", err);
	cr_assert(strstr(err, "Sup3rS3cretPw") == NULL, "the password is in the error: %s", err);
}

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

Test(pg, schema_versions_and_migrations)
{
	const char *u = pg_url();
	struct gw_store *st = NULL;
	struct gw_store_attempts row;
	char err[512] = "", su[700], h[64];
	int latest;

	/* The latest version: that of the test's database, migrated at open. */
	st = open_url(u);
	latest = gw_store_schema_version(st);
	cr_assert_geq(latest, 3);
	gw_store_close(&st);
	/* A schema of its own, so the migrations start from nothing. */
	pg_sql(u, "DROP SCHEMA IF EXISTS mig CASCADE; CREATE SCHEMA mig");
	snprintf(su, sizeof(su), "%s%soptions=-csearch_path%%3Dmig", u, strchr(u, '?') ? "&" : "?");
	cr_assert_eq(gw_store_pg_open(su, 1, &st, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(gw_store_schema_version(st), 1);
	cr_assert_eq(gw_store_password_set(st, "mig-dave", "$v1"), 0);
	/* Version 1 has no auth_lockout yet. */
	cr_assert_eq(gw_store_attempt_take(st, "mig-dave", -1, 1, 3, 60, &row), -1);
	gw_store_close(&st);
	/* Opened again: migrated to the latest, the data kept. */
	cr_assert_eq(gw_store_open_url(su, &st, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(gw_store_schema_version(st), latest);
	cr_assert_eq(gw_store_password_get(st, "mig-dave", h, sizeof(h)), 1);
	cr_assert_str_eq(h, "$v1");
	cr_assert_eq(gw_store_attempt_take(st, "mig-dave", -1, 1, 3, 60, &row), GW_ATTEMPT_TAKEN);
	gw_store_close(&st);
	/* Opened again: nothing applied twice. */
	cr_assert_eq(gw_store_open_url(su, &st, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(gw_store_schema_version(st), latest);
	gw_store_close(&st);
	/* A database from a newer sealgate is refused, not touched. */
	pg_sql(u, "INSERT INTO mig.schema_version VALUES (99, 0)");
	cr_assert_eq(gw_store_open_url(su, &st, err, sizeof(err)), -1);
	cr_assert(strstr(err, "newer") != NULL, "%s", err);
	cr_assert_null(st);
	pg_sql(u, "DROP SCHEMA mig CASCADE");
}

/* Ends the server backend of the store named application_name app. */
static void
pg_kill(const char *u, const char *app)
{
	char sql[256];

	snprintf(sql, sizeof(sql), "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
	         "WHERE usename = current_user AND application_name = '%s'", app);
	pg_sql(u, sql);
	usleep(100000);
}

Test(pg, lost_connection_fails_closed)
{
	const char *u = pg_url();
	struct gw_store *st;
	char h[64], lu[700], err[512] = "";

	/* Named apart, so that only this store's backend is ended. */
	snprintf(lu, sizeof(lu), "%s%sapplication_name=sg-lost", u, strchr(u, '?') ? "&" : "?");
	st = open_url(lu);
	cr_assert_eq(gw_store_password_set(st, "pg-erin", "$before"), 0);
	/* Lost in the middle of a transaction: every call of it fails, its
	 * COMMIT too, and nothing of it is replayed on a new connection. */
	cr_assert_eq(gw_store_tx_begin(st, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(gw_store_password_set(st, "pg-erin", "$in-tx"), 0);
	pg_kill(u, "sg-lost");
	cr_assert_eq(gw_store_password_set(st, "pg-erin", "$after"), -1);
	cr_assert_eq(gw_store_password_get(st, "pg-erin", h, sizeof(h)), -1);
	cr_assert_eq(gw_store_attempt_take(st, "pg-erin", -1, 1, 3, 60,
	                                   &(struct gw_store_attempts){ 0 }), -1);
	cr_assert(!gw_store_tx_alive(st));
	cr_assert_eq(gw_store_tx_commit(st, err, sizeof(err)), -1, "a COMMIT on a lost connection");
	cr_assert(strstr(err, "connection is lost") != NULL, "%s", err);
	/* Outside a transaction, the next call connects again (once) and
	 * works; what the lost transaction wrote is not there. */
	cr_assert_eq(gw_store_password_get(st, "pg-erin", h, sizeof(h)), 1);
	cr_assert_str_eq(h, "$before");
	/* A backend ended between calls: the next call finds it gone before
	 * sending anything, and reconnects. */
	pg_kill(u, "sg-lost");
	cr_assert_eq(gw_store_password_set(st, "pg-erin", "$later"), 0);
	gw_store_close(&st);
	st = open_url(u);
	cr_assert_eq(gw_store_password_get(st, "pg-erin", h, sizeof(h)), 1);
	cr_assert_str_eq(h, "$later");
	gw_store_close(&st);
}
