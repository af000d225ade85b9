/*
 * The audit batch on both backends through the store's batch calls: the
 * rows of a batch are all in after its commit or none of them (on pg they
 * wait in memory and go in together before the COMMIT, gateway/store/pg/
 * audit.c), a savepoint rolled back takes its rows with it, and a failed
 * batch leaves nothing behind for the next. pg runs on the cluster of
 * run-store-backends.sh (SG_TEST_PG_URL; skipped without it), each test in
 * a site of its own.
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store.h"
#include "appstore.h"

static char dir[64];
static char url[512];

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
open_site(const char *u, const char *site)
{
	struct gw_store *st = NULL;
	char err[512] = "";

	cr_assert_eq(gw_store_open_url(u, &st, err, sizeof(err)), 0, "open %s: %s", u, err);
	if (site != NULL)
		cr_assert_eq(gw_store_set_site(st, site, err, sizeof(err)), 0, "%s", err);
	return st;
}

/* A test on both backends; on pg in site "t-batch-" pgsite. */
#define BOTH(name, pgsite)                                               \
	static void check_##name(const char *u, const char *site);       \
	Test(sqlite, name) { check_##name(sqlite_url(), NULL); }         \
	Test(pg, name) { check_##name(pg_url(), "t-batch-" pgsite); }    \
	static void check_##name(const char *u, const char *site)

/* Row seq, its values drawn from seq and tag (so that two rows of one seq
 * differ): hash[i] = seq, prev = seq - 1, detail names the tag. */
struct row {
	struct gw_audit_row r;
	uint8_t prev[32], hash[32], doc[32];
	char detail[48];
};

static void
mkrow(struct row *m, uint64_t seq, const char *tag)
{
	memset(m, 0, sizeof(*m));
	memset(m->prev, (int)((seq - 1) & 0xff), 32);
	memset(m->hash, (int)(seq & 0xff), 32);
	m->prev[0] = (uint8_t)((seq - 1) >> 8);
	m->hash[0] = (uint8_t)(seq >> 8);
	memset(m->doc, 0xd0 ^ (int)(seq & 0xff), 32);
	snprintf(m->detail, sizeof(m->detail), "{\"tag\":\"%s\",\"n\":%llu}", tag,
	         (unsigned long long)seq);
	m->r.seq = seq;
	m->r.ts_ns = 1700000000000000000LL + (int64_t)seq * 1000;
	m->r.action = "sign";
	m->r.outcome = "ok";
	m->r.actor = seq % 2 ? "alice" : "bob";
	m->r.uid = 1000;
	m->r.pid = 4000 + (int64_t)seq;
	m->r.exe = "/usr/bin/pdfsig";
	m->r.seal = "contract";
	m->r.doc_digest = m->doc;
	m->r.doc_digest_len = 32;
	m->r.mechanism = 0x1041;
	m->r.detail = m->detail;
	m->r.prev_hash = m->prev;
	m->r.prev_hash_len = 32;
	m->r.hash = m->hash;
	m->r.hash_len = 32;
}

/* Gives row seq (tagged) to the open transaction. */
static int
give(struct gw_store *st, uint64_t seq, const char *tag, char *err, size_t errlen)
{
	struct row m;

	mkrow(&m, seq, tag);
	return gw_store_audit_insert(st, &m.r, err, errlen);
}

/* What a scan read back. */
struct seen {
	uint64_t n, last;
	bool bad;                   /* a row differs from mkrow's, or out of order */
	char tags[1200][8];
};

static int
collect(void *ctx, const struct gw_audit_row *r)
{
	struct seen *s = ctx;
	struct row m;
	char tag[8] = "";

	if (r->detail == NULL || sscanf(r->detail, "{\"tag\":\"%7[a-z0-9]\"", tag) != 1)
		s->bad = true;
	mkrow(&m, r->seq, tag);
	if (r->seq != s->last + 1 || r->ts_ns != m.r.ts_ns || r->pid != m.r.pid ||
	    strcmp(r->actor ? r->actor : "", m.r.actor) != 0 ||
	    strcmp(r->detail ? r->detail : "", m.detail) != 0 || r->mechanism != m.r.mechanism ||
	    r->doc_digest_len != 32 || memcmp(r->doc_digest, m.doc, 32) != 0 ||
	    r->hash_len != 32 || memcmp(r->hash, m.hash, 32) != 0 || r->prev_hash_len != 32 ||
	    memcmp(r->prev_hash, m.prev, 32) != 0 || r->signed_digest_len != 0 || r->reason != NULL)
		s->bad = true;
	s->last = r->seq;
	if (s->n < 1200)
		snprintf(s->tags[s->n], sizeof(s->tags[0]), "%s", tag);
	s->n++;
	return 0;
}

static struct seen *
scan(struct gw_store *st)
{
	static struct seen s;
	char err[512] = "";

	memset(&s, 0, sizeof(s));
	cr_assert_eq(gw_store_audit_scan(st, collect, &s, err, sizeof(err)), 0, "%s", err);
	cr_assert(!s.bad, "a row read back is not the row written");
	return &s;
}

static uint64_t
head(struct gw_store *st)
{
	uint64_t seq = 0;
	uint8_t h[32];
	char err[512] = "";

	cr_assert_geq(gw_store_audit_head(st, &seq, h, err, sizeof(err)), 0, "%s", err);
	return seq;
}

/* A batch of more rows than one statement takes on pg (256) is read back
 * row for row, in order. */
BOTH(batch_of_many_rows, "many")
{
	struct gw_store *st = open_site(u, site);
	char err[512] = "";
	struct seen *s;

	gw_store_batch_begin(st);
	cr_assert_eq(gw_store_tx_begin(st, err, sizeof(err)), 0, "%s", err);
	for (uint64_t i = 1; i <= 600; i++)
		cr_assert_eq(give(st, i, "a", err, sizeof(err)), 0, "row %llu: %s",
		             (unsigned long long)i, err);
	gw_store_batch_images(st);
	cr_assert_eq(gw_store_tx_commit(st, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(gw_store_batch_durable(st, 1, 600, err, sizeof(err)), 0, "%s", err);
	gw_store_batch_end(st);
	s = scan(st);
	cr_assert_eq(s->n, 600);
	cr_assert_eq(head(st), 600);
	gw_store_close(&st);
}

/* A batch one of whose rows the store refuses (its seq given twice) is
 * none of it in the store, however many rows came before and after; the
 * next batch goes in whole, from the same head. */
BOTH(failed_batch_leaves_none_of_its_rows, "failed")
{
	struct gw_store *st = open_site(u, site);
	char err[512] = "";
	struct seen *s;
	int rc = 0;

	gw_store_batch_begin(st);
	cr_assert_eq(gw_store_tx_begin(st, err, sizeof(err)), 0, "%s", err);
	for (uint64_t i = 1; i <= 300 && rc == 0; i++) {
		rc = give(st, i, "bad", err, sizeof(err));
		if (rc == 0 && i == 260)
			rc = give(st, 7, "bad", err, sizeof(err));   /* a second seq 7 */
	}
	if (rc == 0) {
		/* (pg: refused only at the commit, with the batch's INSERT) */
		gw_store_batch_images(st);
		rc = gw_store_tx_commit(st, err, sizeof(err));
	} else {
		gw_store_tx_rollback(st);
	}
	gw_store_batch_end(st);
	cr_assert_eq(rc, -1, "a batch with seq 7 twice was committed");
	cr_assert(err[0] != '\0', "the failure says why");
	cr_assert_eq(head(st), 0, "rows of the failed batch are in the store");
	cr_assert_eq(scan(st)->n, 0);

	gw_store_batch_begin(st);
	cr_assert_eq(gw_store_tx_begin(st, err, sizeof(err)), 0, "%s", err);
	for (uint64_t i = 1; i <= 5; i++)
		cr_assert_eq(give(st, i, "good", err, sizeof(err)), 0, "%s", err);
	gw_store_batch_images(st);
	cr_assert_eq(gw_store_tx_commit(st, err, sizeof(err)), 0, "the batch after: %s", err);
	gw_store_batch_end(st);
	s = scan(st);
	cr_assert_eq(s->n, 5);
	for (int i = 0; i < 5; i++)
		cr_assert_str_eq(s->tags[i], "good");
	gw_store_close(&st);
}

/* A record's savepoint rolled back after its row was given takes the row
 * with it (as the audit writer's refused records are undone): the seq is
 * given again, and the batch commits with the second row of it only. The
 * row given before the savepoint, and one given inside a savepoint that
 * was released, stay. */
BOTH(savepoint_rolled_back_takes_its_rows, "savepoint")
{
	struct gw_store *st = open_site(u, site);
	char err[512] = "";
	struct seen *s;

	gw_store_batch_begin(st);
	cr_assert_eq(gw_store_tx_begin(st, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(give(st, 1, "keep", err, sizeof(err)), 0, "%s", err);
	/* a savepoint released: its row stays */
	cr_assert_eq(gw_store_tx_begin(st, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(give(st, 2, "keep", err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(gw_store_tx_commit(st, err, sizeof(err)), 0, "%s", err);
	/* a savepoint rolled back, with two levels inside: its rows go */
	cr_assert_eq(gw_store_tx_begin(st, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(give(st, 3, "gone", err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(gw_store_tx_begin(st, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(give(st, 4, "gone", err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(gw_store_tx_commit(st, err, sizeof(err)), 0, "%s", err);
	gw_store_tx_rollback(st);
	cr_assert(gw_store_tx_alive(st), "the batch goes on after its savepoint's rollback");
	cr_assert_eq(give(st, 3, "again", err, sizeof(err)), 0, "%s", err);
	gw_store_batch_images(st);
	cr_assert_eq(gw_store_tx_commit(st, err, sizeof(err)), 0, "%s", err);
	gw_store_batch_end(st);
	s = scan(st);
	cr_assert_eq(s->n, 3);
	cr_assert_str_eq(s->tags[0], "keep");
	cr_assert_str_eq(s->tags[1], "keep");
	cr_assert_str_eq(s->tags[2], "again");
	gw_store_close(&st);
}

/* A read inside the batch sees the rows given before it (pg INSERTs them
 * first), and the batch still commits whole. */
BOTH(read_inside_a_batch_sees_its_rows, "read")
{
	struct gw_store *st = open_site(u, site);
	char err[512] = "";

	gw_store_batch_begin(st);
	cr_assert_eq(gw_store_tx_begin(st, err, sizeof(err)), 0, "%s", err);
	for (uint64_t i = 1; i <= 3; i++)
		cr_assert_eq(give(st, i, "a", err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(head(st), 3);
	cr_assert_eq(give(st, 4, "a", err, sizeof(err)), 0, "%s", err);
	gw_store_batch_images(st);
	cr_assert_eq(gw_store_tx_commit(st, err, sizeof(err)), 0, "%s", err);
	gw_store_batch_end(st);
	cr_assert_eq(scan(st)->n, 4);
	gw_store_close(&st);
}

/* Savepoints around statements that run (pg sends a savepoint and its
 * release with the statement after them): a level rolled back undoes its
 * statement, one released keeps it, and a statement the server refuses
 * inside a level (text that is not UTF-8 on pg) is undone with its level
 * alone, the transaction going on. */
BOTH(savepoints_around_statements, "stmts")
{
	struct gw_store *st = open_site(u, site);
	char err[512] = "";
	const char *bad = site == NULL ? NULL : "seal-\xff\xfe";   /* (pg only) */
	uint64_t used = 9;

	cr_assert_eq(gw_store_tx_begin(st, err, sizeof(err)), 0, "%s", err);
	for (int round = 0; round < 3; round++) {
		/* kept */
		cr_assert_eq(gw_store_tx_begin(st, err, sizeof(err)), 0, "%s", err);
		cr_assert_eq(gw_appstore_quota_add_tx(st, "s1", "d", NULL, 0, err, sizeof(err)), 1,
		             "%s", err);
		cr_assert_eq(gw_store_tx_commit(st, err, sizeof(err)), 0, "%s", err);
		/* undone */
		cr_assert_eq(gw_store_tx_begin(st, err, sizeof(err)), 0, "%s", err);
		cr_assert_eq(gw_appstore_quota_add_tx(st, "s2", "d", NULL, 0, err, sizeof(err)), 1,
		             "%s", err);
		gw_store_tx_rollback(st);
		/* refused by the server, undone with its level */
		if (bad != NULL) {
			cr_assert_eq(gw_store_tx_begin(st, err, sizeof(err)), 0, "%s", err);
			cr_assert_eq(gw_appstore_quota_add_tx(st, bad, "d", NULL, 0, err, sizeof(err)),
			             -1);
			gw_store_tx_rollback(st);
			cr_assert(gw_store_tx_alive(st), "the transaction is lost with a savepoint's "
			          "statement");
		}
	}
	cr_assert_eq(gw_store_tx_commit(st, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(gw_appstore_quota_get(st, "s1", "d", NULL, &used), 0);
	cr_assert_eq(used, 3);
	cr_assert_eq(gw_appstore_quota_get(st, "s2", "d", NULL, &used), 0);
	cr_assert_eq(used, 0);
	gw_store_close(&st);
}
