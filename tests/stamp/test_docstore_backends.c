/*
 * The documents repository (docstore.h) on each backend: SQLite (a file
 * in a temp dir) and PostgreSQL (the cluster run-store-backends.sh starts
 * and names in SG_TEST_PG_URL; without it the pg tests skip). A document
 * stored once under its SHA-256 (a second put keeps the first), read back
 * whole and in ranges, nothing past its end, nothing for another hash.
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>
#include <openssl/evp.h>

#include "store.h"
#include "docstore.h"

static char dir[64];
static char url[700];

static void
setup(void)
{
	strcpy(dir, "/tmp/sg-ds-XXXXXX");
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

/* A schema of the test's own on the one database. */
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
	Test(sqlite, name) { check_##name(sqlite_url("ds_" #name)); }    \
	Test(pg, name) { check_##name(pg_url("ds_" #name)); }            \
	static void check_##name(const char *u)

static void
doc_of(struct gw_doc_info *d, const uint8_t *data, size_t len, const char *name)
{
	memset(d, 0, sizeof(*d));
	cr_assert(EVP_Digest(data, len, d->sha256, NULL, EVP_sha256(), NULL));
	d->size = len;
	snprintf(d->name, sizeof(d->name), "%s", name);
	d->created = 1700000000;
}

BOTH(put_info_read)
{
	struct gw_store *st = open_url(u);
	enum { LEN = 1300000 };
	uint8_t *data = malloc(LEN), *back = malloc(LEN), other[32] = { 1 };
	struct gw_doc_info d, got;
	size_t n = 0;
	char err[256] = "";

	cr_assert(data && back);
	for (size_t i = 0; i < LEN; i++)
		data[i] = (uint8_t)(i * 2654435761u >> 13);
	doc_of(&d, data, LEN, "合同.pdf");
	cr_assert_eq(gw_docstore_info(st, d.sha256, &got), 0, "nothing stored yet");
	cr_assert_eq(gw_docstore_put(st, &d, data, err, sizeof(err)), 1, "%s", err);
	/* A second put of the same hash keeps the first (and its name). */
	snprintf(d.name, sizeof(d.name), "renamed.pdf");
	cr_assert_eq(gw_docstore_put(st, &d, data, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(gw_docstore_info(st, d.sha256, &got), 1);
	cr_assert_eq(got.size, LEN);
	cr_assert_str_eq(got.name, "合同.pdf");
	cr_assert_eq(got.created, 1700000000);

	/* Whole, in 512 KiB chunks, and a range across a chunk's end. */
	for (size_t off = 0; off < LEN; off += n) {
		cr_assert_eq(gw_docstore_read(st, d.sha256, off, back + off, 524288, &n), 1);
		cr_assert_gt(n, 0);
	}
	cr_assert_eq(memcmp(data, back, LEN), 0, "the bytes read back are the ones stored");
	cr_assert_eq(gw_docstore_read(st, d.sha256, 524000, back, 1000, &n), 1);
	cr_assert_eq(n, 1000);
	cr_assert_eq(memcmp(back, data + 524000, 1000), 0);
	/* The tail is short; past the end there is nothing. */
	cr_assert_eq(gw_docstore_read(st, d.sha256, LEN - 10, back, 1000, &n), 1);
	cr_assert_eq(n, 10);
	cr_assert_eq(gw_docstore_read(st, d.sha256, LEN, back, 1000, &n), 1);
	cr_assert_eq(n, 0);
	/* Another hash: none. */
	cr_assert_eq(gw_docstore_read(st, other, 0, back, 1000, &n), 0);
	cr_assert_eq(gw_docstore_info(st, other, &got), 0);
	gw_store_close(&st);

	/* Kept across a reopen. */
	st = open_url(u);
	cr_assert_eq(gw_docstore_info(st, d.sha256, &got), 1);
	cr_assert_eq(got.size, LEN);
	gw_store_close(&st);
	free(data);
	free(back);
}

BOTH(empty_document)
{
	struct gw_store *st = open_url(u);
	struct gw_doc_info d, got;
	uint8_t buf[4];
	size_t n = 9;
	char err[256] = "";

	doc_of(&d, (const uint8_t *)"", 0, "empty");
	cr_assert_eq(gw_docstore_put(st, &d, NULL, err, sizeof(err)), 1, "%s", err);
	cr_assert_eq(gw_docstore_info(st, d.sha256, &got), 1);
	cr_assert_eq(got.size, 0);
	cr_assert_eq(gw_docstore_read(st, d.sha256, 0, buf, sizeof(buf), &n), 1);
	cr_assert_eq(n, 0);
	gw_store_close(&st);
}
