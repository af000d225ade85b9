/*
 * The documents repository on SQLite (table documents, made on first use
 * like policy_versions, so that it takes no number of store.c's schema):
 * each document's bytes under its SHA-256, read back in ranges through
 * SQLite's incremental BLOB reads (a 32 MiB file is not loaded to serve a
 * 512 KiB chunk).
 */
#include "sqlite_store.h"
#include "protocol.h"

#include <stdio.h>
#include <string.h>
#include <sqlite3.h>

static const int table_made;   /* its address marks a store whose table exists */

static int
fail(struct gw_store *st, char *err, size_t errlen, const char *what)
{
	if (err)
		snprintf(err, errlen, "documents: %s: %s", what, sqlite3_errmsg(gw_store_db(st)));
	return -1;
}

/* Call with the lock held, outside an audit batch (no document row is
 * written inside one: a batch's redo frame replays into tables that
 * exist, sqlite/policystore.c). */
static int
ensure_table(struct gw_store *st, char *err, size_t errlen)
{
	if (gw_store_mark_test(st, &table_made))
		return 0;
	if (sqlite3_exec(gw_store_db(st),
		"CREATE TABLE IF NOT EXISTS documents ("
		"  id INTEGER PRIMARY KEY,"
		"  sha256 BLOB NOT NULL UNIQUE CHECK (length(sha256) = 32),"
		"  size INTEGER NOT NULL CHECK (size >= 0),"
		"  name TEXT NOT NULL,"
		"  created INTEGER NOT NULL,"
		"  data BLOB NOT NULL"
		") STRICT;", NULL, NULL, NULL) != SQLITE_OK)
		return fail(st, err, errlen, "creating the table");
	gw_store_mark_set(st, &table_made);
	return 0;
}

int
gw_sqlite_doc_put(struct gw_store *st, const struct gw_doc_info *info, const uint8_t *data,
                  char *err, size_t errlen)
{
	sqlite3_stmt *s;
	int rv = -1;

	/* SQLite's default SQLITE_MAX_LENGTH: a BLOB of at most 10^9 bytes. */
	if (info->size > (uint64_t)1000000000u) {
		sg_seterr(err, errlen, "documents: %llu bytes is more than a SQLite store keeps",
		          (unsigned long long)info->size);
		return -1;
	}
	gw_store_lock(st);
	if (ensure_table(st, err, errlen) < 0)
		goto out;
	s = gw_store_cached(st, "INSERT INTO documents (sha256, size, name, created, data) "
	                        "VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (sha256) DO NOTHING");
	if (s == NULL) {
		fail(st, err, errlen, "insert");
		goto out;
	}
	sqlite3_bind_blob(s, 1, info->sha256, 32, SQLITE_STATIC);
	sqlite3_bind_int64(s, 2, (sqlite3_int64)info->size);
	sqlite3_bind_text(s, 3, info->name, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 4, info->created);
	sqlite3_bind_blob64(s, 5, info->size ? (const void *)data : (const void *)"",
	                    (sqlite3_uint64)info->size, SQLITE_STATIC);
	if (sqlite3_step(s) != SQLITE_DONE)
		fail(st, err, errlen, "insert");
	else
		rv = sqlite3_changes(gw_store_db(st)) > 0 ? 1 : 0;
	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
out:
	gw_store_unlock(st);
	return rv;
}

/* The row of sha256: 1 (*rowid, *out), 0 none, -1 error. Lock held. */
static int
find(struct gw_store *st, const uint8_t sha256[32], sqlite3_int64 *rowid, struct gw_doc_info *out)
{
	sqlite3_stmt *s;
	int rc, rv = -1;

	if (ensure_table(st, NULL, 0) < 0)
		return -1;
	s = gw_store_cached(st, "SELECT id, size, name, created FROM documents WHERE sha256 = ?1");
	if (s == NULL)
		return -1;
	sqlite3_bind_blob(s, 1, sha256, 32, SQLITE_STATIC);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		const unsigned char *name = sqlite3_column_text(s, 2);

		*rowid = sqlite3_column_int64(s, 0);
		if (out != NULL) {
			memset(out, 0, sizeof(*out));
			memcpy(out->sha256, sha256, 32);
			out->size = (uint64_t)sqlite3_column_int64(s, 1);
			snprintf(out->name, sizeof(out->name), "%s", name ? (const char *)name : "");
			out->created = sqlite3_column_int64(s, 3);
		}
		rv = 1;
	} else if (rc == SQLITE_DONE) {
		rv = 0;
	}
	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
	return rv;
}

int
gw_sqlite_doc_info(struct gw_store *st, const uint8_t sha256[32], struct gw_doc_info *out)
{
	sqlite3_int64 rowid;
	int rv;

	gw_store_lock(st);
	rv = find(st, sha256, &rowid, out);
	gw_store_unlock(st);
	return rv;
}

int
gw_sqlite_doc_read(struct gw_store *st, const uint8_t sha256[32], uint64_t offset, uint8_t *buf,
                   size_t len, size_t *got)
{
	struct gw_doc_info info;
	sqlite3_int64 rowid;
	sqlite3_blob *b = NULL;
	size_t n;
	int rv;

	*got = 0;
	gw_store_lock(st);
	rv = find(st, sha256, &rowid, &info);
	if (rv != 1 || offset >= info.size || len == 0)
		goto out;
	n = info.size - offset < len ? (size_t)(info.size - offset) : len;
	if (n > (size_t)INT32_MAX || offset > (uint64_t)INT32_MAX ||
	    sqlite3_blob_open(gw_store_db(st), "main", "documents", "data", rowid, 0, &b) != SQLITE_OK ||
	    sqlite3_blob_bytes(b) != (int)info.size ||
	    sqlite3_blob_read(b, buf, (int)n, (int)offset) != SQLITE_OK) {
		rv = -1;
		goto out;
	}
	*got = n;
out:
	if (b != NULL)
		sqlite3_blob_close(b);
	gw_store_unlock(st);
	return rv;
}

int
gw_sqlite_doc_apps(struct gw_store *st, const uint8_t sha256[32], int64_t *ids, size_t max,
                   size_t *n)
{
	sqlite3_stmt *s;
	int rc, rv = -1;

	*n = 0;
	gw_store_lock(st);
	s = gw_store_cached(st, "SELECT id FROM applications WHERE doc_digest = ?1 "
	                        "ORDER BY id DESC LIMIT ?2");
	if (s == NULL)
		goto out;
	sqlite3_bind_blob(s, 1, sha256, 32, SQLITE_STATIC);
	sqlite3_bind_int64(s, 2, (sqlite3_int64)max);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW && *n < max)
		ids[(*n)++] = sqlite3_column_int64(s, 0);
	rv = rc == SQLITE_DONE || rc == SQLITE_ROW ? 0 : -1;
	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
out:
	gw_store_unlock(st);
	return rv;
}
