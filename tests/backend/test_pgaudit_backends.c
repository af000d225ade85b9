/*
 * The audit log, its checkpoints and sites on both backends: SQLite (a
 * file in a temp dir, one site's) and PostgreSQL (the cluster
 * run-store-backends.sh starts and names in SG_TEST_PG_URL and
 * SG_TEST_PG_DIR; without it the pg tests are skipped). Append, head,
 * scan and every query filter; on pg also several sites' chains side by
 * side, the immutability triggers, the claim of a site, a server restart
 * between calls, and the gateway's audit writer on a pg store. Each pg
 * test works in sites of its own, so they never share a chain.
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "store.h"
#include "backend.h"
#include "audit.h"
#include "auditfmt.h"

static char dir[64];
static char url[512];

static void
setup(void)
{
	strcpy(dir, "/tmp/sg-pa-XXXXXX");
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

/* A store of u scoped to site (NULL: the default). */
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

#define BOTH(name)                                                       \
	static void check_##name(const char *u, const char *be);         \
	Test(sqlite, name) { check_##name(sqlite_url(), "sq"); }         \
	Test(pg, name) { check_##name(pg_url(), "pg"); }                 \
	static void check_##name(const char *u, const char *be)

/* Runs sql on the test's own connection: 0 when it worked, else -1 with
 * the server's primary message in msg. */
static int
pg_try(const char *u, const char *sql, char *msg, size_t len)
{
	PGconn *c = PQconnectdb(u);
	PGresult *r;
	int rv;

	cr_assert_eq(PQstatus(c), CONNECTION_OK, "%s", PQerrorMessage(c));
	r = PQexec(c, sql);
	rv = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK ? 0 : -1;
	if (msg != NULL)
		snprintf(msg, len, "%s", rv == 0 ? "" :
		         PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) ?
		         PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : "?");
	PQclear(r);
	PQfinish(c);
	return rv;
}

/* ---- rows ---- */

/* Row seq of a made-up chain: fields that vary with seq, so that each
 * filter picks a known set. hash[i] = seq, prev = seq - 1. */
struct mkrow {
	struct gw_audit_row r;
	uint8_t prev[32], hash[32], doc[32], sig[20];
	char detail[48];
};

static void
mkrow(struct mkrow *m, uint64_t seq)
{
	static const char *const actors[] = { "alice", "bob", "carol" };
	static const char *const actions[] = { "sign", "login", "sign", "application_create" };

	memset(m, 0, sizeof(*m));
	memset(m->prev, (int)((seq - 1) & 0xff), 32);
	memset(m->hash, (int)(seq & 0xff), 32);
	m->prev[0] = (uint8_t)((seq - 1) >> 8);
	m->hash[0] = (uint8_t)(seq >> 8);
	m->r.seq = seq;
	m->r.ts_ns = 1700000000000000000LL + (int64_t)seq * 1000;
	m->r.action = actions[seq % 4];
	m->r.outcome = seq % 5 == 0 ? "denied" : "ok";
	m->r.reason = seq % 5 == 0 ? "quota 'monthly' reached" : NULL;
	m->r.actor = actors[seq % 3];
	m->r.uid = 1000 + (int64_t)(seq % 3);
	m->r.pid = 4000 + (int64_t)seq;
	m->r.exe = "/usr/bin/pdfsig";
	m->r.host = "ws-7";
	m->r.seal = seq % 2 ? "contract" : "finance";
	m->r.application = seq % 7 == 0 ? (int64_t)seq / 7 : 0;
	if (seq % 6 == 0) {
		memset(m->doc, 0xd0, 32);
		m->doc[30] = (uint8_t)(seq >> 8);
		m->doc[31] = (uint8_t)seq;
		m->r.doc_digest = m->doc;
		m->r.doc_digest_len = 32;
	}
	if (seq % 4 == 0 || seq % 4 == 2) {
		memset(m->sig, 0x5a, 20);
		m->sig[18] = (uint8_t)(seq >> 8);
		m->sig[19] = (uint8_t)seq;
		m->sig[3] = 0;           /* bytes, not a string */
		m->r.signed_digest = m->sig;
		m->r.signed_digest_len = 20;
	}
	m->r.mechanism = seq % 2 ? 0x1041UL : 0xffffffff80000001ULL;
	snprintf(m->detail, sizeof(m->detail), "{\"n\":%llu}", (unsigned long long)seq);
	m->r.detail = m->detail;
	m->r.prev_hash = m->prev;
	m->r.prev_hash_len = 32;
	m->r.hash = m->hash;
	m->r.hash_len = 32;
}

/* Appends seq from..to (in one transaction per 256). */
static void
append_rows(struct gw_store *st, uint64_t from, uint64_t to)
{
	static struct mkrow m[256];
	static struct gw_audit_row rows[256];
	char err[512] = "";

	while (from <= to) {
		size_t n = 0;

		for (; from <= to && n < 256; from++, n++) {
			mkrow(&m[n], from);
			rows[n] = m[n].r;
		}
		cr_assert_eq(gw_store_audit_append(st, rows, n, err, sizeof(err)), 0, "%s", err);
	}
}

/* What a walk saw. */
struct seen {
	uint64_t n, seqs[2048];
	char sites[2048][16];
	bool bad;                    /* a row differs from mkrow's */
	const char *want_site;       /* NULL = any */
};

static int
collect(void *ctx, const struct gw_audit_row *r)
{
	struct seen *s = ctx;
	struct mkrow m;

	mkrow(&m, r->seq);
#define STR_EQ(a, b) ((a) == NULL ? (b) == NULL : (b) != NULL && strcmp((a), (b)) == 0)
#define BLOB_EQ(a, al, b, bl) ((al) == (bl) && ((al) == 0 || memcmp((a), (b), (al)) == 0))
	if (r->ts_ns != m.r.ts_ns || !STR_EQ(r->action, m.r.action) ||
	    !STR_EQ(r->outcome, m.r.outcome) || !STR_EQ(r->reason, m.r.reason) ||
	    !STR_EQ(r->actor, m.r.actor) || r->uid != m.r.uid || r->pid != m.r.pid ||
	    !STR_EQ(r->exe, m.r.exe) || !STR_EQ(r->host, m.r.host) || !STR_EQ(r->seal, m.r.seal) ||
	    r->application != m.r.application ||
	    !BLOB_EQ(r->doc_digest, r->doc_digest_len, m.r.doc_digest, m.r.doc_digest_len) ||
	    !BLOB_EQ(r->signed_digest, r->signed_digest_len, m.r.signed_digest,
	             m.r.signed_digest_len) ||
	    r->mechanism != m.r.mechanism || !STR_EQ(r->detail, m.r.detail) ||
	    !BLOB_EQ(r->prev_hash, r->prev_hash_len, m.prev, (size_t)32) ||
	    !BLOB_EQ(r->hash, r->hash_len, m.hash, (size_t)32) || r->bad_column != NULL ||
	    r->site == NULL || (s->want_site && strcmp(r->site, s->want_site) != 0)) {
		if (!s->bad)
			fprintf(stderr, "row seq %llu of site %s differs\n", (unsigned long long)r->seq,
			        r->site ? r->site : "(none)");
		s->bad = true;
	}
#undef STR_EQ
#undef BLOB_EQ
	if (s->n < 2048) {
		s->seqs[s->n] = r->seq;
		snprintf(s->sites[s->n], sizeof(s->sites[0]), "%s", r->site ? r->site : "");
	}
	s->n++;
	return 0;
}

static struct seen *
query(struct gw_store *st, const struct gw_audit_filter *f, const char *want_site)
{
	static struct seen s;
	char err[512] = "";

	memset(&s, 0, sizeof(s));
	s.want_site = want_site;
	cr_assert_eq(gw_store_audit_query(st, f, collect, &s, err, sizeof(err)), 0, "%s", err);
	cr_assert(!s.bad, "a row read back is not the row written");
	return &s;
}

/* The number of seq in 1..n that pred picks. */
static uint64_t
count_where(uint64_t n, bool (*pred)(uint64_t))
{
	uint64_t c = 0;

	for (uint64_t i = 1; i <= n; i++)
		c += pred(i);
	return c;
}

static bool by_seal(uint64_t s) { return s % 2 == 1; }
static bool by_actor(uint64_t s) { return s % 3 == 1; }
static bool by_action(uint64_t s) { return s % 4 == 0 || s % 4 == 2; }
static bool by_outcome(uint64_t s) { return s % 5 == 0; }
static bool by_actors(uint64_t s) { return s % 3 != 1; }
static bool by_time(uint64_t s) { return s >= 10 && s < 20; }
static bool by_sign_denied_contract(uint64_t s) { return by_action(s) && by_outcome(s) && by_seal(s); }

BOTH(append_head_scan)
{
	struct gw_store *st = open_site(u, strcmp(be, "pg") == 0 ? "t-scan" : NULL);
	struct gw_audit_row dup[2];
	struct mkrow a, b;
	struct seen *s;
	uint64_t seq = 99;
	uint8_t h[32];
	char err[512] = "";

	cr_assert_eq(gw_store_audit_head(st, &seq, h, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(seq, 0, "an empty log");
	/* More than a page (512), so that the scan goes on from page to page. */
	append_rows(st, 1, 1100);
	cr_assert_eq(gw_store_audit_head(st, &seq, h, err, sizeof(err)), 1, "%s", err);
	cr_assert_eq(seq, 1100);
	mkrow(&a, 1100);
	cr_assert_arr_eq(h, a.hash, 32);
	memset(&b, 0, sizeof(b));
	s = calloc(1, sizeof(*s));
	s->want_site = gw_store_site(st);
	cr_assert_eq(gw_store_audit_scan(st, collect, s, err, sizeof(err)), 0, "%s", err);
	cr_assert(!s->bad, "a row read back is not the row written");
	cr_assert_eq(s->n, 1100);
	for (uint64_t i = 0; i < 1100; i++)
		cr_assert_eq(s->seqs[i], i + 1, "seq order");
	free(s);
	/* A batch with a seq already there writes nothing of itself. */
	mkrow(&a, 1101);
	mkrow(&b, 1100);
	dup[0] = a.r;
	dup[1] = b.r;
	cr_assert_eq(gw_store_audit_append(st, dup, 2, err, sizeof(err)), -1);
	cr_assert_eq(gw_store_audit_head(st, &seq, h, err, sizeof(err)), 1, "%s", err);
	cr_assert_eq(seq, 1100, "the batch's first row was rolled back with it");
	/* A record of another site is not this store's to write. */
	a.r.site = "elsewhere";
	cr_assert_eq(gw_store_audit_append(st, &a.r, 1, err, sizeof(err)), -1);
	cr_assert(strstr(err, "site elsewhere") != NULL, "%s", err);
	a.r.site = gw_store_site(st);
	cr_assert_eq(gw_store_audit_append(st, &a.r, 1, err, sizeof(err)), 0, "%s", err);
	gw_store_close(&st);
}

BOTH(query_filters)
{
	struct gw_store *st = open_site(u, strcmp(be, "pg") == 0 ? "t-query" : NULL);
	const uint64_t N = 600;
	struct gw_audit_filter f;
	struct mkrow m;
	struct seen *s;
	const char *site;

	append_rows(st, 1, N);
	site = gw_store_site(st);
#define Q(...) (f = (struct gw_audit_filter){ __VA_ARGS__ }, query(st, &f, site))
	cr_assert_eq(Q(.limit = 0)->n, N, "no filter: every row, over two pages");
	cr_assert_eq(Q(.seal = "contract")->n, count_where(N, by_seal));
	cr_assert_eq(Q(.actor = "bob")->n, count_where(N, by_actor));
	cr_assert_eq(Q(.action = "sign")->n, count_where(N, by_action));
	cr_assert_eq(Q(.outcome = "denied")->n, count_where(N, by_outcome));
	cr_assert_eq(Q(.actors_json = "[\"alice\",\"carol\"]")->n, count_where(N, by_actors));
	cr_assert_eq(Q(.actors_json = "[]")->n, 0);
	cr_assert_eq(Q(.from_ns = 1700000000000000000LL + 10000,
	               .to_ns = 1700000000000000000LL + 20000)->n, count_where(N, by_time));
	cr_assert_eq(Q(.action = "sign", .outcome = "denied", .seal = "contract")->n,
	             count_where(N, by_sign_denied_contract), "filters combine");
	/* Application 0 is none, and does not filter. */
	s = Q(.application = 5);
	cr_assert_eq(s->n, 1);
	cr_assert_eq(s->seqs[0], 35);
	/* A digest matches the document's or what was signed. */
	mkrow(&m, 36);
	s = Q(.digest = m.doc, .digest_len = 32);
	cr_assert_eq(s->n, 1);
	cr_assert_eq(s->seqs[0], 36);
	s = Q(.digest = m.sig, .digest_len = 20);
	cr_assert_eq(s->n, 1);
	cr_assert_eq(s->seqs[0], 36);
	/* Paging: after, up to, limit. */
	s = Q(.after_seq = 100, .upto_seq = 110);
	cr_assert_eq(s->n, 10);
	cr_assert_eq(s->seqs[0], 101);
	cr_assert_eq(s->seqs[9], 110);
	s = Q(.after_seq = 50, .limit = 3, .seal = "finance");
	cr_assert_eq(s->n, 3);
	cr_assert_eq(s->seqs[0], 52);
	cr_assert_eq(s->seqs[2], 56);
	cr_assert_eq(Q(.limit = 550)->n, 550, "a limit past the first page");
	/* The store's own site by name; on SQLite "*" is that one site (on
	 * pg the other tests' sites are there too: sites_side_by_side). */
	cr_assert_eq(Q(.site = site, .seal = "finance")->n, N - count_where(N, by_seal));
	if (strcmp(be, "sq") == 0)
		cr_assert_eq(Q(.site = "*")->n, N);
	/* Another site has none of these rows. */
	f = (struct gw_audit_filter){ .site = "nowhere" };
	cr_assert_eq(query(st, &f, NULL)->n, 0);
#undef Q
	gw_store_close(&st);
}

Test(sqlite, rows_carry_the_files_site)
{
	struct gw_store *st = open_site(sqlite_url(), "shanghai");
	struct gw_audit_filter f = { .site = "*" };
	struct seen *s;

	append_rows(st, 1, 3);
	s = query(st, &f, "shanghai");
	cr_assert_eq(s->n, 3);
	cr_assert_str_eq(s->sites[2], "shanghai");
	gw_store_close(&st);
}

/* ---- checkpoints ---- */

struct cps {
	size_t n;
	uint64_t ids[16], seqs[16];
	bool chained[16];
};

static int
cp_collect(void *ctx, const struct gw_audit_checkpoint *cp)
{
	struct cps *c = ctx;

	if (c->n < 16) {
		c->ids[c->n] = cp->id;
		c->seqs[c->n] = cp->seq;
		c->chained[c->n] = cp->chained;
	}
	c->n++;
	return 0;
}

static void
cp_make(struct gw_audit_checkpoint *cp, uint64_t id, uint64_t seq, bool chained)
{
	static const uint8_t sig[8] = { 0x30, 6, 2, 1, 1, 2, 1, 0 };
	static const uint8_t cert[4] = { 0x30, 2, 5, 0 };

	memset(cp, 0, sizeof(*cp));
	cp->id = id;
	cp->seq = seq;
	cp->ts_ns = 1700000000000000000LL + (int64_t)id;
	memset(cp->hash, (int)id, 32);
	cp->alg = "ecdsa-sha256";
	cp->sig = sig;
	cp->sig_len = sizeof(sig);
	cp->cert = id % 2 ? cert : NULL;
	cp->cert_len = id % 2 ? sizeof(cert) : 0;
	cp->chained = chained;
	if (chained) {
		cp->prev_id = id - 1;
		memset(cp->prev_hash, 0xc0 + (int)id, 32);
	}
}

/* Checkpoints ids 1..3 at seqs 10, 20, 20, their scan and the last one. */
static void
checkpoints_check(struct gw_store *st)
{
	struct gw_audit_checkpoint cp, last;
	struct cps c;
	uint64_t next = 0, max = 9;
	char err[512] = "";

	cr_assert_eq(gw_store_checkpoint_last(st, &last, &next, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(next, 1);
	cr_assert_eq(gw_store_checkpoint_max_id(st, &max, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(max, 0);
	cp_make(&cp, 1, 10, false);
	cr_assert_eq(gw_store_checkpoint_add(st, &cp, err, sizeof(err)), 0, "%s", err);
	cp_make(&cp, 2, 20, true);
	cr_assert_eq(gw_store_checkpoint_add(st, &cp, err, sizeof(err)), 0, "%s", err);
	/* Two may name one seq (a log cut back and grown again). */
	cp_make(&cp, 3, 20, true);
	cr_assert_eq(gw_store_checkpoint_add(st, &cp, err, sizeof(err)), 0, "%s", err);
	/* An id taken, or a prev_id not before the id, is refused. */
	cp_make(&cp, 3, 30, true);
	cr_assert_eq(gw_store_checkpoint_add(st, &cp, err, sizeof(err)), -1);
	cp_make(&cp, 4, 30, true);
	cp.prev_id = 4;
	cr_assert_eq(gw_store_checkpoint_add(st, &cp, err, sizeof(err)), -1);
	cr_assert(strstr(err, "malformed checkpoint") != NULL, "%s", err);

	cr_assert_eq(gw_store_checkpoint_last(st, &last, &next, err, sizeof(err)), 1, "%s", err);
	cr_assert_eq(last.id, 3);
	cr_assert_eq(last.seq, 20);
	cr_assert_eq(next, 4);
	cr_assert(last.chained);
	cr_assert_eq(last.prev_id, 2);
	cr_assert_eq(last.prev_hash[0], 0xc3);
	cr_assert_eq(last.hash[31], 3);
	cr_assert_str_eq(last.alg, "ecdsa-sha256");
	cr_assert_eq(last.sig_len, 8);
	cr_assert_eq(last.sig[0], 0x30);
	cr_assert_eq(last.cert_len, 4, "id 3 has a certificate");
	cr_assert_eq(last.ts_ns, 1700000000000000003LL);
	gw_store_checkpoint_clear(&last);
	cr_assert_eq(gw_store_checkpoint_max_id(st, &max, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(max, 3);

	memset(&c, 0, sizeof(c));
	cr_assert_eq(gw_store_checkpoint_scan(st, 0, 0, cp_collect, &c, err, sizeof(err)), 0, "%s",
	             err);
	cr_assert_eq(c.n, 3);
	cr_assert_eq(c.ids[0], 1);
	cr_assert(!c.chained[0], "a checkpoint from before the chain reads back unchained");
	cr_assert(c.chained[1]);
	cr_assert_eq(c.ids[2], 3);
	memset(&c, 0, sizeof(c));
	cr_assert_eq(gw_store_checkpoint_scan(st, 11, 20, cp_collect, &c, err, sizeof(err)), 0,
	             "%s", err);
	cr_assert_eq(c.n, 2);
	cr_assert_eq(c.seqs[0], 20);
	memset(&c, 0, sizeof(c));
	cr_assert_eq(gw_store_checkpoint_scan(st, 0, 19, cp_collect, &c, err, sizeof(err)), 0,
	             "%s", err);
	cr_assert_eq(c.n, 1);
}

BOTH(checkpoints)
{
	struct gw_store *st = open_site(u, strcmp(be, "pg") == 0 ? "t-cp" : NULL);

	checkpoints_check(st);
	gw_store_close(&st);
}

/* ---- several sites in one PostgreSQL store ---- */

Test(pg, sites_side_by_side)
{
	const char *u = pg_url();
	static const char *const names[3] = { "s3-hq", "s3-shanghai", "s3-shenzhen" };
	struct gw_store *st[3];
	struct gw_audit_filter f;
	struct seen *s;
	uint64_t seq;
	uint8_t h[32];
	char err[512] = "", su[700];

	/* A schema of its own: "*" is every site of the store, and the other
	 * tests' sites are in the public one. */
	cr_assert_eq(pg_try(u, "DROP SCHEMA IF EXISTS s3 CASCADE; CREATE SCHEMA s3", NULL, 0), 0);
	snprintf(su, sizeof(su), "%s%soptions=-csearch_path%%3Ds3", u, strchr(u, '?') ? "&" : "?");
	u = su;

	for (int i = 0; i < 3; i++) {
		st[i] = open_site(u, names[i]);
		cr_assert_str_eq(gw_store_site(st[i]), names[i]);
	}
	/* Each its own chain from seq 1, written in turns. */
	append_rows(st[0], 1, 300);
	append_rows(st[1], 1, 100);
	append_rows(st[2], 1, 300);
	append_rows(st[1], 101, 300);
	for (int i = 0; i < 3; i++) {
		cr_assert_eq(gw_store_audit_head(st[i], &seq, h, err, sizeof(err)), 1, "%s", err);
		cr_assert_eq(seq, 300, "site %s", names[i]);
		f = (struct gw_audit_filter){ 0 };
		s = query(st[i], &f, names[i]);
		cr_assert_eq(s->n, 300, "a site sees its own chain only");
	}
	/* Every site ("*"), in (seq, site) order: 900 rows, so that the first
	 * page (512) ends inside seq 171 and the next goes on with its third
	 * site. */
	f = (struct gw_audit_filter){ .site = "*" };
	s = query(st[0], &f, NULL);
	cr_assert_eq(s->n, 900, "%llu rows of every site", (unsigned long long)s->n);
	for (uint64_t i = 0; i < 900; i++) {
		cr_assert_eq(s->seqs[i], i / 3 + 1, "row %llu", (unsigned long long)i);
		cr_assert_str_eq(s->sites[i], names[i % 3], "row %llu", (unsigned long long)i);
	}
	f = (struct gw_audit_filter){ .site = "*", .after_seq = 298, .seal = "finance" };
	s = query(st[2], &f, NULL);
	cr_assert_eq(s->n, 3, "filters apply to every site");
	cr_assert_eq(s->seqs[0], 300);
	/* Another site by name, through any site's store. */
	f = (struct gw_audit_filter){ .site = names[1], .upto_seq = 5 };
	s = query(st[0], &f, names[1]);
	cr_assert_eq(s->n, 5);
	/* Checkpoints are per site too: each its own ids from 1. */
	checkpoints_check(st[1]);
	checkpoints_check(st[2]);
	for (int i = 0; i < 3; i++)
		gw_store_close(&st[i]);
	cr_assert_eq(pg_try(pg_url(), "DROP SCHEMA s3 CASCADE", NULL, 0), 0);
}

Test(pg, history_is_immutable)
{
	const char *u = pg_url();
	struct gw_store *st = open_site(u, "t-immutable");
	struct gw_audit_checkpoint cp;
	char err[512] = "", msg[256];
	uint64_t seq;
	uint8_t h[32];

	append_rows(st, 1, 3);
	cp_make(&cp, 1, 3, false);
	cr_assert_eq(gw_store_checkpoint_add(st, &cp, err, sizeof(err)), 0, "%s", err);
	/* As the role that owns the tables, behind the store's back. */
	cr_assert_eq(pg_try(u, "UPDATE audit SET actor = 'mallory' WHERE site = 't-immutable'",
	                    msg, sizeof(msg)), -1);
	cr_assert(strstr(msg, "the audit log is append-only") != NULL, "%s", msg);
	cr_assert_eq(pg_try(u, "DELETE FROM audit WHERE site = 't-immutable' AND seq = 3", msg,
	                    sizeof(msg)), -1);
	cr_assert(strstr(msg, "append-only") != NULL, "%s", msg);
	cr_assert_eq(pg_try(u, "TRUNCATE audit", msg, sizeof(msg)), -1);
	cr_assert(strstr(msg, "append-only") != NULL, "%s", msg);
	cr_assert_eq(pg_try(u, "UPDATE audit_checkpoints SET seq = 2", msg, sizeof(msg)), -1);
	cr_assert(strstr(msg, "audit checkpoints are append-only") != NULL, "%s", msg);
	cr_assert_eq(pg_try(u, "DELETE FROM audit_checkpoints", msg, sizeof(msg)), -1);
	cr_assert_eq(pg_try(u, "TRUNCATE audit_checkpoints", msg, sizeof(msg)), -1);
	cr_assert(strstr(msg, "append-only") != NULL, "%s", msg);
	cr_assert_eq(gw_store_audit_head(st, &seq, h, err, sizeof(err)), 1, "%s", err);
	cr_assert_eq(seq, 3);
	cr_assert_eq(gw_store_checkpoint_max_id(st, &seq, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(seq, 1);
	gw_store_close(&st);
}

/* A checkpoint removed from the end (by the tables' owner, its triggers
 * off) leaves its id taken: the next one signs over the gap, as with
 * SQLite's sqlite_sequence. */
Test(pg, checkpoint_gap_kept)
{
	const char *u = pg_url();
	struct gw_store *st = open_site(u, "t-cp-gap");
	struct gw_audit_checkpoint cp, last;
	uint64_t next = 0;
	char err[512] = "";

	for (uint64_t id = 1; id <= 3; id++) {
		cp_make(&cp, id, id * 10, true);
		cr_assert_eq(gw_store_checkpoint_add(st, &cp, err, sizeof(err)), 0, "%s", err);
	}
	cr_assert_eq(pg_try(u, "ALTER TABLE audit_checkpoints DISABLE TRIGGER USER;"
	                    "DELETE FROM audit_checkpoints WHERE site = 't-cp-gap' AND id = 3;"
	                    "ALTER TABLE audit_checkpoints ENABLE TRIGGER USER", NULL, 0), 0);
	cr_assert_eq(gw_store_checkpoint_last(st, &last, &next, err, sizeof(err)), 1, "%s", err);
	cr_assert_eq(last.id, 2);
	cr_assert_eq(next, 4, "id 3 was given once and is not given again");
	gw_store_checkpoint_clear(&last);
	gw_store_close(&st);
}

Test(pg, site_claim)
{
	const char *u = pg_url();
	struct gw_store *a, *b, *c;
	char err[512] = "", bu[700];

	a = open_site(u, "t-claim");
	cr_assert_eq(gw_store_site_claim(a, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(gw_store_site_claim(a, err, sizeof(err)), 0, "claiming twice is one claim");
	/* The claimed site is the store's for good. */
	cr_assert_eq(gw_store_set_site(a, "t-claim-other", err, sizeof(err)), -1);
	cr_assert_str_eq(gw_store_site(a), "t-claim");
	/* A second gateway for the site, named so it shows in the message. */
	snprintf(bu, sizeof(bu), "%s%sapplication_name=sg-second", u, strchr(u, '?') ? "&" : "?");
	b = open_site(bu, "t-claim");
	cr_assert_eq(gw_store_site_claim(b, err, sizeof(err)), -1);
	cr_assert(strstr(err, "site t-claim is already served by another gateway") != NULL, "%s",
	          err);
	cr_assert(strstr(err, "application_name 'sealgated'") != NULL, "the holder named: %s", err);
	cr_assert(strstr(err, "pgpass") == NULL && strstr(err, "password") == NULL, "%s", err);
	/* Another site is free. */
	c = open_site(u, "t-claim-2");
	cr_assert_eq(gw_store_site_claim(c, err, sizeof(err)), 0, "%s", err);
	/* Closed, the claim is free again. */
	gw_store_close(&a);
	cr_assert_eq(gw_store_site_claim(b, err, sizeof(err)), 0, "%s", err);
	gw_store_close(&b);
	gw_store_close(&c);
}

static int
key_collect(void *arg, const char *uri, const uint8_t *blob, size_t len)
{
	char *out = arg;

	(void)blob;
	snprintf(out + strlen(out), 256 - strlen(out), "%s=%zu;", uri, len);
	return 0;
}

BOTH(binding_and_keys_per_site)
{
	struct gw_store *x = open_site(u, strcmp(be, "pg") == 0 ? "t-bind-x" : NULL);
	struct gw_store_binding b = { .serial = "serial-x", .ncerts = 2, .since = 1700000002 }, got;
	struct gw_store_known_key kx[2] = {
		{ "pkcs11:object=x1", (const uint8_t *)"\x01\x00", 2 },
		{ "pkcs11:object=x2", (const uint8_t *)"xxx", 3 },
	};
	char err[512] = "", keys[256] = "";

	memset(b.certs, 0x11, sizeof(b.certs));
	cr_assert_eq(gw_store_binding_get(x, &got, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(gw_store_binding_set(x, &b, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(gw_store_known_keys_set(x, kx, 2, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(gw_store_binding_get(x, &got, err, sizeof(err)), 1, "%s", err);
	cr_assert_str_eq(got.serial, "serial-x");
	cr_assert_eq(got.ncerts, 2);
	cr_assert_eq(got.since, 1700000002);
	cr_assert_eq(got.certs[31], 0x11);
	cr_assert_eq(gw_store_known_keys_get(x, key_collect, keys, err, sizeof(err)), 2, "%s", err);
	cr_assert_str_eq(keys, "pkcs11:object=x1=2;pkcs11:object=x2=3;");
	if (strcmp(be, "pg") == 0) {
		/* Another site of the store has its own token. */
		struct gw_store *y = open_site(u, "t-bind-y");
		struct gw_store_known_key ky = { "pkcs11:object=y", (const uint8_t *)"y", 1 };

		cr_assert_eq(gw_store_binding_get(y, &got, err, sizeof(err)), 0, "%s", err);
		keys[0] = '\0';
		cr_assert_eq(gw_store_known_keys_get(y, key_collect, keys, err, sizeof(err)), 0);
		b.ncerts = 7;
		snprintf(b.serial, sizeof(b.serial), "serial-y");
		cr_assert_eq(gw_store_binding_set(y, &b, err, sizeof(err)), 0, "%s", err);
		cr_assert_eq(gw_store_known_keys_set(y, &ky, 1, err, sizeof(err)), 0, "%s", err);
		cr_assert_eq(gw_store_binding_get(x, &got, err, sizeof(err)), 1, "%s", err);
		cr_assert_str_eq(got.serial, "serial-x", "site x keeps its binding");
		keys[0] = '\0';
		cr_assert_eq(gw_store_known_keys_get(x, key_collect, keys, err, sizeof(err)), 2);
		cr_assert_eq(gw_store_binding_get(y, &got, err, sizeof(err)), 1, "%s", err);
		cr_assert_eq(got.ncerts, 7);
		keys[0] = '\0';
		cr_assert_eq(gw_store_known_keys_get(y, key_collect, keys, err, sizeof(err)), 1);
		cr_assert_str_eq(keys, "pkcs11:object=y=1;");
		gw_store_close(&y);
	}
	gw_store_close(&x);
}

/* ---- the server going away ---- */

static void
pg_ctl(const char *what)
{
	const char *d = getenv("SG_TEST_PG_DIR"), *src = getenv("SEALGATE_SOURCE");
	char cmd[1024];

	cr_assert(d && *d && src && *src, "SG_TEST_PG_DIR and SEALGATE_SOURCE");
	snprintf(cmd, sizeof(cmd), "sh -c '. \"%s/tests/lib/pg.sh\" && pg_%s \"%s\"'", src, what, d);
	cr_assert_eq(system(cmd), 0, "pg_%s", what);
}

Test(pg, server_restart_between_calls)
{
	const char *u = pg_url();
	struct gw_store *st = open_site(u, "t-restart"), *other;
	struct mkrow m;
	uint64_t seq;
	uint8_t h[32];
	char err[512] = "", pw[64];

	cr_assert_eq(gw_store_site_claim(st, err, sizeof(err)), 0, "%s", err);
	append_rows(st, 1, 5);
	/* A transaction open when the server goes: what it wrote is gone,
	 * its COMMIT fails, and nothing of it comes back on its own. */
	mkrow(&m, 6);
	cr_assert_eq(gw_store_tx_begin(st, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(gw_store_audit_insert(st, &m.r, err, sizeof(err)), 0, "%s", err);
	pg_ctl("stop");
	cr_assert_eq(gw_store_tx_commit(st, err, sizeof(err)), -1);
	/* Down: every call fails, saying so. */
	cr_assert_eq(gw_store_audit_head(st, &seq, h, err, sizeof(err)), -1);
	cr_assert(strstr(err, "PostgreSQL store unreachable") != NULL, "%s", err);
	cr_assert(strstr(err, "pgpass") == NULL, "%s", err);
	cr_assert_eq(gw_store_audit_append(st, &m.r, 1, err, sizeof(err)), -1);
	cr_assert(strstr(err, "PostgreSQL store unreachable") != NULL, "%s", err);
	cr_assert_eq(gw_store_tx_begin(st, err, sizeof(err)), -1);
	cr_assert_eq(gw_store_password_get(st, "pg-restart", pw, sizeof(pw)), -1);
	pg_ctl("start");
	/* Up again: the same handle works, with the head as it was. */
	cr_assert_eq(gw_store_audit_head(st, &seq, h, err, sizeof(err)), 1, "%s", err);
	cr_assert_eq(seq, 5, "the transaction the server lost left nothing");
	cr_assert_eq(gw_store_audit_append(st, &m.r, 1, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(gw_store_audit_head(st, &seq, h, err, sizeof(err)), 1, "%s", err);
	cr_assert_eq(seq, 6);
	/* And its site is claimed again with the new connection. */
	other = open_site(u, "t-restart");
	cr_assert_eq(gw_store_site_claim(other, err, sizeof(err)), -1);
	cr_assert(strstr(err, "already served by another gateway") != NULL, "%s", err);

	/* A restart with no call while it is down: the next call finds the
	 * old connection gone and reconnects before sending anything. */
	gw_store_close(&other);
	pg_ctl("stop");
	pg_ctl("start");
	cr_assert_eq(gw_store_audit_head(st, &seq, h, err, sizeof(err)), 1, "%s", err);
	cr_assert_eq(seq, 6);

	/* Someone else took the site while it was down: the reconnection
	 * fails, and keeps failing, rather than serve the site twice. */
	pg_ctl("stop");
	pg_ctl("start");
	other = open_site(u, "t-restart");
	cr_assert_eq(gw_store_site_claim(other, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(gw_store_audit_head(st, &seq, h, err, sizeof(err)), -1);
	cr_assert(strstr(err, "site t-restart is already served by another gateway") != NULL, "%s",
	          err);
	cr_assert_eq(gw_store_audit_append(st, &m.r, 1, err, sizeof(err)), -1);
	gw_store_close(&other);
	/* Freed, the store takes its site back at its next call. */
	cr_assert_eq(gw_store_audit_head(st, &seq, h, err, sizeof(err)), 1, "%s", err);
	gw_store_close(&st);
}

/* ---- the gateway's audit writer on a pg store ---- */

Test(pg, audit_writer_on_pg)
{
	const char *u = pg_url();
	struct gw_store *st = open_site(u, "t-writer");
	struct gw_audit *au = NULL;
	struct gw_audit_verifier *v = NULL;
	struct gw_audit_verdict verdict;
	struct gw_audit_event ev = { .action = "sign", .outcome = "ok", .actor = "alice",
	                             .uid = 1000, .pid = 42, .exe = "/usr/bin/pdfsig",
	                             .host = "ws-1", .seal = "contract", .mechanism = 0x1041 };
	uint64_t seq = 0, count = 0;
	uint8_t d[32];
	char err[512] = "";

	memset(d, 0xab, sizeof(d));
	ev.doc_digest = d;
	ev.doc_digest_len = sizeof(d);
	/* Another site's chain beside it changes nothing of this one. */
	{
		struct gw_store *o = open_site(u, "t-writer-other");

		append_rows(o, 1, 4);
		gw_store_close(&o);
	}
	cr_assert_eq(gw_audit_open(st, &au, err, sizeof(err)), 0, "%s", err);
	for (int i = 0; i < 20; i++) {
		cr_assert_eq(gw_audit_record(au, &ev, &seq), 0, "record %d", i);
		cr_assert_eq(seq, (uint64_t)i + 1);
	}
	gw_audit_close(&au);
	/* Opened again, it goes on from the head in the store. */
	cr_assert_eq(gw_audit_open(st, &au, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(gw_audit_record(au, &ev, &seq), 0);
	cr_assert_eq(seq, 21);
	gw_audit_close(&au);
	cr_assert_eq(gw_audit_verify_store(st, &count, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(count, 21);
	cr_assert_eq(gw_audit_verify_full(st, NULL, 0, &v, &verdict, err, sizeof(err)), 0,
	             "%s: %s", err, verdict.n_problems ? verdict.problems[0] : "");
	cr_assert_eq(verdict.records, 21);
	cr_assert_eq(verdict.last_seq, 21);
	gw_audit_verifier_free(&v);
	gw_store_close(&st);
}

/* Text is UTF-8 on pg: a record whose strings are not is refused whole
 * (with the server's reason, not its bytes) and leaves nothing; SQLite
 * keeps the bytes (docs/store.md). */
Test(pg, text_not_utf8_refused)
{
	const char *u = pg_url();
	struct gw_store *st = open_site(u, "t-utf8");
	struct mkrow m;
	uint64_t seq = 9;
	uint8_t h[32];
	char err[512] = "";

	mkrow(&m, 1);
	m.r.exe = "/tmp/\xff\xfe-odd";
	cr_assert_eq(gw_store_audit_append(st, &m.r, 1, err, sizeof(err)), -1);
	cr_assert(strstr(err, "invalid byte sequence") != NULL, "%s", err);
	cr_assert(strstr(err, "odd") == NULL, "the row's text is not in the message: %s", err);
	cr_assert_eq(gw_store_audit_head(st, &seq, h, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(seq, 0);
	gw_store_close(&st);
}

/* The gateway's writer when the server goes away: a record asked for
 * while it is down fails (its caller must not release what it covers),
 * and once it is back the chain goes on from the head in the store. */
Test(pg, audit_writer_across_a_restart)
{
	const char *u = pg_url();
	struct gw_store *st = open_site(u, "t-writer-restart");
	struct gw_audit *au = NULL;
	struct gw_audit_event ev = { .action = "sign", .outcome = "ok", .actor = "bob",
	                             .uid = 1001, .pid = 7, .seal = "finance" };
	uint64_t seq = 0, count = 0;
	char err[512] = "";

	cr_assert_eq(gw_store_site_claim(st, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(gw_audit_open(st, &au, err, sizeof(err)), 0, "%s", err);
	for (int i = 0; i < 3; i++)
		cr_assert_eq(gw_audit_record(au, &ev, &seq), 0);
	pg_ctl("stop");
	cr_assert_eq(gw_audit_record(au, &ev, &seq), -1, "a record with the server down");
	cr_assert_eq(gw_audit_record(au, &ev, &seq), -1);
	pg_ctl("start");
	cr_assert_eq(gw_audit_record(au, &ev, &seq), 0);
	cr_assert_eq(seq, 4, "the failed records took no seq");
	gw_audit_close(&au);
	cr_assert_eq(gw_audit_verify_store(st, &count, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(count, 4);
	gw_store_close(&st);
}
