/*
 * Moving a SQLite store to PostgreSQL (gateway/store/migrate.c, docs/store.md
 * "Moving to PostgreSQL"): a store filled through the interface is moved
 * and read back through the interface on the pg store, row for row; the
 * refusals leave both stores as they were. The pg tests need the cluster
 * run-store-backends.sh names in SG_TEST_PG_URL (skipped without it), each
 * in a schema of its own (applications and accounts are the group's).
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <libpq-fe.h>
#include <sodium.h>
#include <sqlite3.h>

#include "store.h"
#include "appstore.h"
#include "policystore.h"
#include "docstore.h"
#include "outbox.h"
#include "alertstore.h"
#include "migrate.h"
#include "audit.h"
#include "auditfmt.h"

static char dir[64], db[96], url[512];

static void
setup(void)
{
	strcpy(dir, "/tmp/sg-mig-XXXXXX");
	cr_assert(mkdtemp(dir));
	snprintf(db, sizeof(db), "%s/sealgate.db", dir);
	cr_assert(sodium_init() >= 0);
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

static void
pg_sql(const char *u, const char *sql)
{
	PGconn *c = PQconnectdb(u);
	PGresult *r;

	cr_assert_eq(PQstatus(c), CONNECTION_OK, "%s", PQerrorMessage(c));
	r = PQexec(c, sql);
	cr_assert(PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK,
	          "%s: %s", sql, PQresultErrorMessage(r));
	PQclear(r);
	PQfinish(c);
}

/* A schema of the test's own on the cluster's one database. */
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
open_site(const char *u, const char *site)
{
	struct gw_store *st = NULL;
	char err[512] = "";

	cr_assert_eq(gw_store_open_url(u, &st, err, sizeof(err)), 0, "open: %s", err);
	cr_assert_eq(gw_store_set_site(st, site, err, sizeof(err)), 0, "%s", err);
	return st;
}

/* The file's bytes, hashed: the move must leave the SQLite store as it was. */
static void
file_hash(const char *path, uint8_t out[32])
{
	crypto_generichash_state h;
	uint8_t buf[8192];
	size_t n;
	FILE *f = fopen(path, "rb");

	cr_assert(f, "%s", path);
	crypto_generichash_init(&h, NULL, 0, 32);
	while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
		crypto_generichash_update(&h, buf, n);
	fclose(f);
	crypto_generichash_final(&h, out, 32);
}

static const uint8_t sealed_carol[] = "\x01\x02\x00\xff sealed bytes of carol's secret \x00\x7f";

/* A stored document's bytes: NULs and high bytes, over one SQLite page. */
static uint8_t doc_bytes[5000];

static void
doc_fill(struct gw_doc_info *info)
{
	for (size_t i = 0; i < sizeof(doc_bytes); i++)
		doc_bytes[i] = (uint8_t)(i * 7 + (i >> 8));
	memset(info, 0, sizeof(*info));
	crypto_hash_sha256(info->sha256, doc_bytes, sizeof(doc_bytes));
	info->size = sizeof(doc_bytes);
	snprintf(info->name, sizeof(info->name), "contract-2.pdf");
	info->created = 1700000000;
}

/* Two notices (the first sent, the second pending) and an alert an
 * auditor acknowledged, as a gateway leaves them. */
static void
fill_notices_and_alert(struct gw_store *st)
{
	struct gw_outbox_notice n = { .event = "app_waiting", .channel = "email",
	                              .recipient = "bob", .address = "bob@example.test",
	                              .application = 2, .detail = "{\"application\":2}" };
	struct gw_outbox_notice got[4];
	struct gw_alert_row a = { .key = "quota.burst:alice:7", .rule = "quota.burst",
	                          .severity = "high", .subject = "alice",
	                          .why = "12 signatures in 5 minutes", .ts_ns = 1700000000123456789,
	                          .seqs = "[7,8,9]", .apps = "[2]", .raised = 1700000001 };
	const char *const from_open[] = { "open", NULL };
	int64_t id = 0;
	bool created = false;
	size_t k = 0;
	char err[512] = "";

	cr_assert_eq(gw_outbox_init(st, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(gw_alertstore_init(st, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(gw_store_tx_begin(st, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(gw_outbox_put_tx(st, &n, "app_waiting:2:1:email:bob", 1700000000, err,
	                              sizeof(err)), 1, "%s", err);
	cr_assert_eq(n.id, 1);
	cr_assert_eq(gw_store_tx_commit(st, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(gw_outbox_claim(st, "gw-main", 1700000000, 60, got, 4, &k, err, sizeof(err)),
	             0, "%s", err);
	cr_assert_eq(k, 1);
	gw_outbox_notice_clear(&got[0]);
	cr_assert_eq(gw_store_tx_begin(st, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(gw_outbox_settle_tx(st, 1, "gw-main", GW_OUTBOX_SENT, 0, NULL, 1700000002,
	                                 err, sizeof(err)), 1, "%s", err);
	n.recipient = "zed";
	n.address = "zed@example.test";
	cr_assert_eq(gw_outbox_put_tx(st, &n, "app_waiting:2:1:email:zed", 1700000003, err,
	                              sizeof(err)), 1, "%s", err);
	cr_assert_eq(n.id, 2);
	cr_assert_eq(gw_alertstore_put_tx(st, &a, &id, &created, err, sizeof(err)), 0, "%s", err);
	cr_assert(created);
	cr_assert_eq(gw_alertstore_state_tx(st, id, from_open, "acknowledged", "erin", "seen it",
	                                    1700000005, err, sizeof(err)), 1, "%s", err);
	cr_assert_eq(gw_store_tx_commit(st, err, sizeof(err)), 0, "%s", err);
}

/* A SQLite store of site main as a gateway leaves it: accounts, lockout,
 * a TOTP secret, three applications (approvals on two), quota counters,
 * the binding and known keys, a policy version, records of the audit
 * writer (n of them). Closed on return. */
static void
fill_sqlite(unsigned n)
{
	struct gw_store *st = open_site(db, "main");
	struct gw_application *app = calloc(1, sizeof(*app));
	struct gw_store_attempts at;
	struct gw_store_binding b;
	struct gw_store_known_key keys[2] = {
		{ "pkcs11:object=contract-seal;type=private", (const uint8_t *)"\x30\x82\x01\x00 rsa", 9 },
		{ "pkcs11:object=finance-seal;type=private", (const uint8_t *)"\x30\x59\x00 ec", 6 },
	};
	struct gw_policy_version pv = { 0 };
	struct gw_doc_info di;
	struct gw_audit *au = NULL;
	struct gw_audit_event ev = { .action = "sign", .outcome = "ok", .actor = "alice",
	                             .uid = 1000, .pid = 42, .exe = "/usr/bin/pdfsig",
	                             .host = "ws-1", .seal = "contract", .mechanism = 0x1041 };
	uint8_t d[32];
	uint64_t seq;
	char err[512] = "";
	time_t now = time(NULL);

	cr_assert(app);
	cr_assert_eq(gw_store_password_set(st, "alice", "$argon2id$alice"), 0);
	cr_assert_eq(gw_store_password_set(st, "bob", "$argon2id$bob"), 0);
	cr_assert_eq(gw_store_attempts_init(st, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(gw_store_attempt_take(st, "bob", 1000, (int64_t)now, 5, 60, &at), 1);
	cr_assert_geq(gw_store_attempt_end(st, "bob", 1000, (int64_t)now, GW_ATTEMPT_FAILED, 5, 30,
	                                   3600, &at), 0);
	cr_assert_eq(gw_store_totp_init(st, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(gw_store_totp_put(st, "carol", sealed_carol, sizeof(sealed_carol), 56666666,
	                               err, sizeof(err)), 0, "%s", err);
	for (int i = 0; i < 3; i++) {
		memset(app, 0, sizeof(*app));
		snprintf(app->applicant, sizeof(app->applicant), "alice");
		snprintf(app->seal, sizeof(app->seal), "approved");
		snprintf(app->reason, sizeof(app->reason), "contract %d", i);
		snprintf(app->document_type, sizeof(app->document_type), "contract");
		app->has_amount = i == 1;
		app->amount = 5000;
		app->has_doc = i == 2;
		memset(app->doc_digest, 0xd0 + i, 32);
		app->n_levels = 1;
		app->levels[0].kind = GW_LEVEL_RELATIVE_HEAD;
		app->levels[0].quorum = 2;
		app->uses_granted = app->uses_left = 3;
		app->created = now - 100;
		app->valid_until = now + 3600;
		app->state = i == 0 ? GW_APP_PENDING : GW_APP_AUTHORIZED;
		app->n_approvals = i == 0 ? 0 : 2;
		for (unsigned k = 0; k < app->n_approvals; k++) {
			/* zed before bob: the order stored, not the names' */
			snprintf(app->approvals[k].approver, sizeof(app->approvals[k].approver), "%s",
			         k == 0 ? "zed" : "bob");
			app->approvals[k].approve = true;
			snprintf(app->approvals[k].comment, sizeof(app->approvals[k].comment),
			         k ? "ok" : "");
			app->approvals[k].at = now - 50 + k;
		}
		cr_assert_eq(gw_store_tx_begin(st, err, sizeof(err)), 0, "%s", err);
		cr_assert_eq(gw_appstore_insert_tx(st, app, err, sizeof(err)), 0, "%s", err);
		cr_assert_eq(app->id, i + 1);
		if (i == 1)
			cr_assert_eq(gw_appstore_spend_tx(st, app->id, now, err, sizeof(err)), 0, "%s", err);
		cr_assert_eq(gw_store_tx_commit(st, err, sizeof(err)), 0, "%s", err);
	}
	cr_assert_eq(gw_store_tx_begin(st, err, sizeof(err)), 0, "%s", err);
	for (int i = 0; i < 3; i++)
		cr_assert_eq(gw_appstore_quota_add_tx(st, "quota", "d:20000", "dave", 100, err,
		                                      sizeof(err)), 1, "%s", err);
	cr_assert_eq(gw_appstore_quota_add_tx(st, "quota", "total", "", 0, err, sizeof(err)), 1);
	pv.version = 1;
	pv.text = "version: 1\n# the group's policy\n";
	pv.len = strlen(pv.text);
	crypto_hash_sha256(pv.sha256, (const uint8_t *)pv.text, pv.len);
	pv.author = "frank";
	pv.published = (int64_t)now - 30;
	cr_assert_eq(gw_store_policy_publish_tx(st, &pv, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(gw_store_tx_commit(st, err, sizeof(err)), 0, "%s", err);
	memset(&b, 0, sizeof(b));
	memcpy(b.serial, "0123456789abcdef", 16);
	memset(b.certs, 0xc5, sizeof(b.certs));
	b.ncerts = 2;
	b.since = (int64_t)now - 1000;
	cr_assert_eq(gw_store_binding_set(st, &b, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(gw_store_known_keys_set(st, keys, 2, err, sizeof(err)), 0, "%s", err);
	doc_fill(&di);
	cr_assert_eq(gw_docstore_put(st, &di, doc_bytes, err, sizeof(err)), 1, "%s", err);
	fill_notices_and_alert(st);
	memset(d, 0xab, sizeof(d));
	ev.doc_digest = d;
	ev.doc_digest_len = sizeof(d);
	cr_assert_eq(gw_audit_open(st, &au, err, sizeof(err)), 0, "%s", err);
	for (unsigned i = 0; i < n; i++) {
		ev.application = i % 4 == 0 ? 2 : 0;
		ev.detail = i % 3 ? NULL : "{\"policy\":\"v1\"}";
		cr_assert_eq(gw_audit_record(au, &ev, &seq), 0, "record %u", i);
	}
	gw_audit_close(&au);
	free(app);
	gw_store_close(&st);
}

/* The head of a store's site, and how many records verify there. */
static void
head_of(struct gw_store *st, uint64_t *seq, uint8_t hash[32], uint64_t *records)
{
	struct gw_audit_verifier *v = NULL;
	struct gw_audit_verdict vd;
	char err[512] = "";

	memset(hash, 0, 32);
	cr_assert_geq(gw_store_audit_head(st, seq, hash, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(gw_audit_verify_full(st, NULL, 0, &v, &vd, err, sizeof(err)), 0, "%s: %s", err,
	             vd.n_problems ? vd.problems[0] : "");
	*records = vd.records;
	gw_audit_verifier_free(&v);
}

static int
key_count(void *arg, const char *uri, const uint8_t *blob, size_t len)
{
	(void)uri;
	(void)blob;
	(void)len;
	(*(int *)arg)++;
	return 0;
}

struct alerts_seen {
	int n;
	struct gw_alert_row a;
	char key[GW_ALERT_KEY_MAX], by[64], comment[64], state[16], seqs[64];
};

static int
alert_seen(void *arg, const struct gw_alert_row *a)
{
	struct alerts_seen *s = arg;

	s->n++;
	s->a = *a;
	snprintf(s->key, sizeof(s->key), "%s", a->key);
	snprintf(s->by, sizeof(s->by), "%s", a->state_by ? a->state_by : "");
	snprintf(s->comment, sizeof(s->comment), "%s", a->state_comment ? a->state_comment : "");
	snprintf(s->state, sizeof(s->state), "%s", a->state);
	snprintf(s->seqs, sizeof(s->seqs), "%s", a->seqs);
	return 0;
}

/* The document, the notices and the alert, as they were (docs/store.md,
 * "Moving to PostgreSQL": what a move carries). */
static void
assert_docs_notices_alerts(struct gw_store *pg)
{
	struct gw_doc_info di, got;
	struct gw_outbox_notice out[4], n = { .event = "alert", .channel = "email",
	                                      .recipient = "erin", .detail = "{}" };
	struct gw_alert_filter f = { 0 };
	struct alerts_seen seen;
	static uint8_t back[sizeof(doc_bytes) + 16];
	size_t len = 0, k = 9;
	char err[512] = "";

	doc_fill(&di);
	cr_assert_eq(gw_docstore_info(pg, di.sha256, &got), 1, "the document was not moved");
	cr_assert_eq(got.size, sizeof(doc_bytes));
	cr_assert_str_eq(got.name, "contract-2.pdf");
	cr_assert_eq(got.created, 1700000000);
	cr_assert_eq(gw_docstore_read(pg, di.sha256, 0, back, sizeof(back), &len), 1);
	cr_assert_eq(len, sizeof(doc_bytes));
	cr_assert_arr_eq(back, doc_bytes, sizeof(doc_bytes), "the document's bytes changed");
	/* the sent notice is not sent again; the pending one is, once */
	cr_assert_eq(gw_outbox_claim(pg, "gw-hq", 1700000100, 60, out, 4, &k, err, sizeof(err)), 0,
	             "%s", err);
	cr_assert_eq(k, 1, "%zu notices due after the move, not the pending one alone", k);
	cr_assert_eq(out[0].id, 2);
	cr_assert_str_eq(out[0].recipient, "zed");
	cr_assert_str_eq(out[0].address, "zed@example.test");
	cr_assert_eq(out[0].application, 2);
	cr_assert_str_eq(out[0].detail, "{\"application\":2}");
	cr_assert_eq(out[0].tries, 1);
	gw_outbox_notice_clear(&out[0]);
	/* its dedupe key came along: the same notice is not put twice */
	n.event = "app_waiting";
	cr_assert_eq(gw_store_tx_begin(pg, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(gw_outbox_put_tx(pg, &n, "app_waiting:2:1:email:bob", 1700000200, err,
	                              sizeof(err)), 0, "%s", err);
	cr_assert_eq(gw_outbox_put_tx(pg, &n, NULL, 1700000200, err, sizeof(err)), 1, "%s", err);
	/* after every id given (PostgreSQL's sequence also spends one on the
	 * put that found its dedupe key) */
	cr_assert_gt(n.id, 2, "a new notice got id %lld", (long long)n.id);
	cr_assert_eq(gw_store_tx_commit(pg, err, sizeof(err)), 0, "%s", err);
	/* the alert, with its id and the auditor's acknowledgement */
	memset(&seen, 0, sizeof(seen));
	cr_assert_eq(gw_alertstore_list(pg, &f, alert_seen, &seen, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(seen.n, 1, "%d alerts listed on the copy", seen.n);
	cr_assert_eq(seen.a.id, 1);
	cr_assert_str_eq(seen.key, "quota.burst:alice:7");
	cr_assert_str_eq(seen.state, "acknowledged");
	cr_assert_str_eq(seen.by, "erin");
	cr_assert_str_eq(seen.comment, "seen it");
	cr_assert_str_eq(seen.seqs, "[7,8,9]");
	cr_assert_eq(seen.a.ts_ns, 1700000000123456789);
	cr_assert_eq(seen.a.state_at, 1700000005);
}

static void
assert_app_same(struct gw_store *a, struct gw_store *b, int64_t id)
{
	struct gw_application *x = calloc(1, sizeof(*x)), *y = calloc(1, sizeof(*y));

	cr_assert(x && y);
	cr_assert_eq(gw_appstore_get(a, id, x), 1);
	cr_assert_eq(gw_appstore_get(b, id, y), 1, "application %lld not moved", (long long)id);
	cr_assert_str_eq(x->reason, y->reason);
	cr_assert_eq(x->has_amount, y->has_amount);
	cr_assert_eq(x->has_doc, y->has_doc);
	cr_assert_arr_eq(x->doc_digest, y->doc_digest, 32);
	cr_assert_eq(x->uses_left, y->uses_left);
	cr_assert_eq(x->state, y->state);
	cr_assert_eq(x->valid_until, y->valid_until);
	cr_assert_eq(x->n_levels, y->n_levels);
	cr_assert_eq(x->levels[0].quorum, y->levels[0].quorum);
	cr_assert_eq(x->n_approvals, y->n_approvals);
	for (unsigned k = 0; k < x->n_approvals; k++) {
		cr_assert_str_eq(x->approvals[k].approver, y->approvals[k].approver);
		cr_assert_str_eq(x->approvals[k].comment, y->approvals[k].comment);
		cr_assert_eq(x->approvals[k].approve, y->approvals[k].approve);
		cr_assert_eq(x->approvals[k].at, y->approvals[k].at);
	}
	free(x);
	free(y);
}

Test(pg, moves_every_row_and_the_chain)
{
	const char *u = pg_url("mig_all");
	struct gw_migrate_report rep;
	struct gw_store *sq, *pg;
	struct gw_store_attempts a1, a2;
	struct gw_store_binding b1, b2;
	struct gw_policy_version v1 = { 0 }, v2 = { 0 };
	struct gw_application *app = calloc(1, sizeof(*app));
	uint8_t before[32], after[32], h1[32], h2[32], sealed[256];
	uint64_t s1, s2, r1, r2, used1, used2, last;
	size_t sealed_len = sizeof(sealed);
	char err[2048] = "", hash[256];
	int k1 = 0, k2 = 0;

	cr_assert(app);
	fill_sqlite(40);
	/* applications 4 to 9 were given and are gone (as SQLite's
	 * sqlite_sequence remembers): no id of them is given again */
	{
		sqlite3 *h = NULL;

		cr_assert_eq(sqlite3_open(db, &h), SQLITE_OK);
		cr_assert_eq(sqlite3_exec(h, "UPDATE sqlite_sequence SET seq = 9 WHERE name = "
		                          "'applications'", NULL, NULL, NULL), SQLITE_OK);
		sqlite3_close(h);
	}
	file_hash(db, before);
	cr_assert_eq(gw_store_migrate(db, "main", u, "hq", &rep, err, sizeof(err)), 0, "%s", err);
	file_hash(db, after);
	cr_assert_arr_eq(before, after, 32, "the SQLite file changed");
	cr_assert_eq(rep.rows[GW_TABLE_ACCOUNTS], 2);
	cr_assert_eq(rep.rows[GW_TABLE_LOCKOUT], 1);
	cr_assert_eq(rep.rows[GW_TABLE_TOTP], 1);
	cr_assert_eq(rep.rows[GW_TABLE_APPLICATIONS], 3);
	cr_assert_eq(rep.rows[GW_TABLE_APPROVALS], 4);
	cr_assert_eq(rep.rows[GW_TABLE_QUOTA], 2);
	cr_assert_eq(rep.rows[GW_TABLE_SITE_META], 3);
	cr_assert_eq(rep.rows[GW_TABLE_POLICY], 1);
	cr_assert_eq(rep.rows[GW_TABLE_AUDIT], 40);
	cr_assert_eq(rep.rows[GW_TABLE_DOCUMENTS], 1);
	cr_assert_eq(rep.rows[GW_TABLE_OUTBOX], 2);
	cr_assert_eq(rep.rows[GW_TABLE_ALERTS], 1);

	sq = open_site(db, "main");
	pg = open_site(u, "hq");
	head_of(sq, &s1, h1, &r1);
	head_of(pg, &s2, h2, &r2);
	cr_assert_eq(s1, 40);
	cr_assert_eq(s2, s1);
	cr_assert_arr_eq(h1, h2, 32);
	cr_assert_eq(r2, r1);
	cr_assert_eq(rep.head_seq, 40);
	cr_assert_arr_eq(rep.head_hash, h1, 32);
	/* the rest, through the interface */
	cr_assert_eq(gw_store_password_get(pg, "alice", hash, sizeof(hash)), 1);
	cr_assert_str_eq(hash, "$argon2id$alice");
	cr_assert_eq(gw_store_password_get(pg, "bob", hash, sizeof(hash)), 1);
	cr_assert_str_eq(hash, "$argon2id$bob");
	cr_assert_geq(gw_store_attempts_get(sq, "bob", 1000, time(NULL), &a1), 0);
	cr_assert_geq(gw_store_attempts_get(pg, "bob", 1000, time(NULL), &a2), 0);
	cr_assert_eq(a1.failed, 1);
	cr_assert_eq(a2.failed, a1.failed);
	cr_assert_eq(a2.locked_until, a1.locked_until);
	cr_assert_eq(gw_store_totp_get(pg, "carol", sealed, &sealed_len, &last), 1);
	cr_assert_eq(sealed_len, sizeof(sealed_carol));
	cr_assert_arr_eq(sealed, sealed_carol, sizeof(sealed_carol), "the sealed bytes changed");
	cr_assert_eq(last, 56666666);
	for (int64_t id = 1; id <= 3; id++)
		assert_app_same(sq, pg, id);
	cr_assert_eq(gw_appstore_quota_get(sq, "quota", "d:20000", "dave", &used1), 0);
	cr_assert_eq(gw_appstore_quota_get(pg, "quota", "d:20000", "dave", &used2), 0);
	cr_assert_eq(used1, 3);
	cr_assert_eq(used2, 3);
	cr_assert_eq(gw_store_binding_get(sq, &b1, err, sizeof(err)), 1, "%s", err);
	cr_assert_eq(gw_store_binding_get(pg, &b2, err, sizeof(err)), 1, "%s", err);
	cr_assert_arr_eq(b1.serial, b2.serial, sizeof(b1.serial));
	cr_assert_arr_eq(b1.certs, b2.certs, sizeof(b1.certs));
	cr_assert_eq(b1.ncerts, b2.ncerts);
	cr_assert_eq(b1.since, b2.since);
	cr_assert_geq(gw_store_known_keys_get(pg, key_count, &k2, err, sizeof(err)), 0, "%s", err);
	cr_assert_geq(gw_store_known_keys_get(sq, key_count, &k1, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(k1, 2);
	cr_assert_eq(k2, 2);
	cr_assert_eq(gw_store_policy_get(sq, 0, &v1, err, sizeof(err)), 1, "%s", err);
	cr_assert_eq(gw_store_policy_get(pg, 0, &v2, err, sizeof(err)), 1, "%s", err);
	cr_assert_eq(v2.version, 1);
	cr_assert_eq(v2.len, v1.len);
	cr_assert_arr_eq(v2.text, v1.text, v1.len);
	cr_assert_arr_eq(v2.sha256, v1.sha256, 32);
	cr_assert_str_eq(v2.author, "frank");
	gw_policy_version_clear(&v1);
	gw_policy_version_clear(&v2);
	assert_docs_notices_alerts(pg);
	/* the identity sequence moved past every id given */
	cr_assert_eq(gw_appstore_get(pg, 3, app), 1);
	app->id = 0;
	app->n_approvals = 0;
	cr_assert_eq(gw_store_tx_begin(pg, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(gw_appstore_insert_tx(pg, app, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(gw_store_tx_commit(pg, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(app->id, 10, "a new application got id %lld", (long long)app->id);
	/* the audit writer goes on from the moved head */
	{
		struct gw_audit *au = NULL;
		struct gw_audit_event ev = { .action = "gateway_start", .outcome = "ok", .uid = -1 };
		uint64_t seq = 0;

		cr_assert_eq(gw_audit_open(pg, &au, err, sizeof(err)), 0, "%s", err);
		cr_assert_eq(gw_audit_record(au, &ev, &seq), 0);
		cr_assert_eq(seq, 41);
		gw_audit_close(&au);
		head_of(pg, &s2, h2, &r2);
		cr_assert_eq(r2, 41);
	}
	free(app);
	gw_store_close(&sq);
	gw_store_close(&pg);
}

/* Changes record seq of the SQLite file behind the gateway's back (the
 * append-only triggers dropped, as someone with the file can). */
static void
tamper(unsigned seq)
{
	sqlite3 *h = NULL;
	char sql[256];

	cr_assert_eq(sqlite3_open(db, &h), SQLITE_OK);
	snprintf(sql, sizeof(sql), "DROP TRIGGER audit_no_update; "
	         "UPDATE audit SET actor = 'mallory' WHERE seq = %u", seq);
	cr_assert_eq(sqlite3_exec(h, sql, NULL, NULL, NULL), SQLITE_OK, "%s", sqlite3_errmsg(h));
	sqlite3_close(h);
}

/* Nothing of the move is on the target: no audit row, no account. */
static void
assert_target_untouched(const char *u, const char *site)
{
	struct gw_store *pg = open_site(u, site);
	uint64_t seq = 0;
	uint8_t h[32];
	char err[512] = "", hash[256];

	cr_assert_eq(gw_store_audit_head(pg, &seq, h, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(gw_store_password_get(pg, "alice", hash, sizeof(hash)), 0,
	             "an account was written");
	gw_store_close(&pg);
}

Test(pg, refuses_a_chain_that_does_not_verify)
{
	const char *u = pg_url("mig_tamper");
	struct gw_migrate_report rep;
	char err[2048] = "";

	fill_sqlite(12);
	tamper(7);
	cr_assert_eq(gw_store_migrate(db, "main", u, "hq", &rep, err, sizeof(err)), -1);
	cr_assert(strstr(err, "the SQLite store: the audit log is NOT intact") && strstr(err, "seq 7"),
	          "the refusal does not say where the chain breaks: %s", err);
	assert_target_untouched(u, "hq");
}

Test(pg, refuses_a_site_with_rows)
{
	const char *u = pg_url("mig_rows");
	struct gw_migrate_report rep;
	struct gw_store *pg;
	struct gw_audit *au = NULL;
	struct gw_audit_event ev = { .action = "gateway_start", .outcome = "ok", .uid = -1 };
	uint64_t seq = 0;
	uint8_t h[32];
	char err[2048] = "", hash[256];

	fill_sqlite(5);
	pg = open_site(u, "hq");
	cr_assert_eq(gw_audit_open(pg, &au, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(gw_audit_record(au, &ev, &seq), 0);
	gw_audit_close(&au);
	gw_store_close(&pg);
	cr_assert_eq(gw_store_migrate(db, "main", u, "hq", &rep, err, sizeof(err)), -1);
	cr_assert(strstr(err, "not empty"), "%s", err);
	pg = open_site(u, "hq");
	cr_assert_eq(gw_store_audit_head(pg, &seq, h, err, sizeof(err)), 1, "%s", err);
	cr_assert_eq(seq, 1, "the site's own chain changed");
	cr_assert_eq(gw_store_password_get(pg, "alice", hash, sizeof(hash)), 0);
	gw_store_close(&pg);
	/* another site of the same store is free */
	cr_assert_eq(gw_store_migrate(db, "main", u, "shanghai", &rep, err, sizeof(err)), 0, "%s",
	             err);
}

Test(pg, refuses_a_row_the_group_has_and_writes_nothing)
{
	const char *u = pg_url("mig_conflict");
	struct gw_migrate_report rep;
	struct gw_store *pg;
	uint64_t seq = 0;
	uint8_t h[32];
	char err[2048] = "", hash[256];

	fill_sqlite(5);
	pg = open_site(u, "hq");
	cr_assert_eq(gw_store_password_set(pg, "bob", "$argon2id$bob-elsewhere"), 0);
	gw_store_close(&pg);
	cr_assert_eq(gw_store_migrate(db, "main", u, "hq", &rep, err, sizeof(err)), -1);
	cr_assert(strstr(err, "accounts"), "%s", err);
	/* one transaction: alice (copied before bob) is not there either */
	pg = open_site(u, "hq");
	cr_assert_eq(gw_store_password_get(pg, "alice", hash, sizeof(hash)), 0);
	cr_assert_eq(gw_store_password_get(pg, "bob", hash, sizeof(hash)), 1);
	cr_assert_str_eq(hash, "$argon2id$bob-elsewhere");
	cr_assert_eq(gw_store_audit_head(pg, &seq, h, err, sizeof(err)), 0, "%s", err);
	gw_store_close(&pg);
}

Test(pg, refuses_while_a_gateway_serves_either_store)
{
	const char *u = pg_url("mig_claim");
	struct gw_migrate_report rep;
	struct gw_store *gw;
	char err[2048] = "";

	fill_sqlite(5);
	/* a gateway on the SQLite store */
	gw = open_site(db, "main");
	cr_assert_eq(gw_store_site_claim(gw, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(gw_store_migrate(db, "main", u, "hq", &rep, err, sizeof(err)), -1);
	cr_assert(strstr(err, "another gateway"), "%s", err);
	gw_store_close(&gw);
	assert_target_untouched(u, "hq");
	/* a gateway of the target site */
	gw = open_site(u, "hq");
	cr_assert_eq(gw_store_site_claim(gw, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(gw_store_migrate(db, "main", u, "hq", &rep, err, sizeof(err)), -1);
	cr_assert(strstr(err, "already served"), "%s", err);
	gw_store_close(&gw);
	assert_target_untouched(u, "hq");
}

Test(sqlite, refuses_an_unreachable_server)
{
	struct gw_migrate_report rep;
	uint8_t before[32], after[32];
	char err[2048] = "", bad[256];

	fill_sqlite(5);
	file_hash(db, before);
	snprintf(bad, sizeof(bad), "postgresql:///sealgate?host=%s/no-such-dir&connect_timeout=2",
	         dir);
	cr_assert_eq(gw_store_migrate(db, "main", bad, "hq", &rep, err, sizeof(err)), -1);
	cr_assert(strstr(err, "cannot connect"), "%s", err);
	file_hash(db, after);
	cr_assert_arr_eq(before, after, 32, "the SQLite file changed");
}

Test(sqlite, refuses_no_file_and_a_sqlite_target)
{
	struct gw_migrate_report rep;
	struct stat sb;
	char err[2048] = "", other[128];

	cr_assert_eq(gw_store_migrate(db, "main", "postgresql:///x", "hq", &rep, err, sizeof(err)),
	             -1);
	cr_assert_neq(stat(db, &sb), 0, "a store was made where there was none");
	fill_sqlite(1);
	snprintf(other, sizeof(other), "sqlite:%s/other.db", dir);
	cr_assert_eq(gw_store_migrate(db, "main", other, "hq", &rep, err, sizeof(err)), -1);
	cr_assert(strstr(err, "postgresql://"), "%s", err);
}
