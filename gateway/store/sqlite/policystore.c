/*
 * The policy repository on SQLite (table policy_versions, made on first
 * use like auth_totp, so that it takes no number of store.c's schema):
 * every published version of the policy with its text. One gateway per
 * file, so there is no change feed: changes.c applies its own changes.
 */
#include "sqlite_store.h"
#include "sqlite_policystore.h"
#include "protocol.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sqlite3.h>

static const int table_made;   /* its address marks a store whose table exists */

static int
fail(struct gw_store *st, char *err, size_t errlen, const char *what)
{
	if (err)
		snprintf(err, errlen, "policy versions: %s: %s", what, sqlite3_errmsg(gw_store_db(st)));
	return -1;
}

/* Call with the lock held. The table must be made outside an audit
 * batch: a batch commits without a sync and its redo frame replays rows
 * into tables that exist (store.c, "the redo log"), so the gateway reads
 * the repository (policy_ops.c: at start, and before every publish)
 * before it publishes, and this CREATE commits on its own, synced. */
static int
ensure_table(struct gw_store *st, char *err, size_t errlen)
{
	if (gw_store_mark_test(st, &table_made))
		return 0;
	if (sqlite3_exec(gw_store_db(st),
		/* text: the bytes as published (BLOB: never re-encoded, so
		 * their SHA-256 stays the one recorded). */
		"CREATE TABLE IF NOT EXISTS policy_versions ("
		"  version INTEGER PRIMARY KEY NOT NULL CHECK (version > 0),"
		"  sha256 BLOB NOT NULL CHECK (length(sha256) = 32),"
		"  text BLOB NOT NULL,"
		"  author TEXT NOT NULL,"
		"  published INTEGER NOT NULL"
		") STRICT;", NULL, NULL, NULL) != SQLITE_OK)
		return fail(st, err, errlen, "creating the table");
	gw_store_mark_set(st, &table_made);
	return 0;
}

int
gw_sqlite_policy_publish_tx(struct gw_store *st, const struct gw_policy_version *v, char *err,
                            size_t errlen)
{
	sqlite3_stmt *s = NULL;
	int64_t newest = 0;
	int rv = -1;

	gw_store_lock(st);
	if (ensure_table(st, err, errlen) < 0)
		goto out;
	s = gw_store_cached(st, "SELECT coalesce(max(version), 0) FROM policy_versions");
	if (s == NULL || sqlite3_step(s) != SQLITE_ROW) {
		fail(st, err, errlen, "reading the newest");
		goto out;
	}
	newest = sqlite3_column_int64(s, 0);
	sqlite3_reset(s);
	if (v->version != newest + 1) {
		sg_seterr(err, errlen, "policy version %lld was published meanwhile (the newest is "
		          "%lld): publish again", (long long)v->version, (long long)newest);
		goto out;
	}
	s = gw_store_cached(st, "INSERT INTO policy_versions (version, sha256, text, author, "
	                        "published) VALUES (?1, ?2, ?3, ?4, ?5)");
	if (s == NULL) {
		fail(st, err, errlen, "insert");
		goto out;
	}
	sqlite3_bind_int64(s, 1, v->version);
	sqlite3_bind_blob(s, 2, v->sha256, 32, SQLITE_STATIC);
	sqlite3_bind_blob(s, 3, v->text ? v->text : "", (int)v->len, SQLITE_STATIC);
	sqlite3_bind_text(s, 4, v->author, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 5, v->published);
	if (sqlite3_step(s) != SQLITE_DONE) {
		fail(st, err, errlen, "insert");
		sqlite3_reset(s);
		sqlite3_clear_bindings(s);
		goto out;
	}
	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
	rv = 0;
out:
	gw_store_unlock(st);
	return rv;
}

/* One row (version, sha256, author, published[, text]) into *v. */
static int
row_to_version(sqlite3_stmt *s, bool with_text, struct gw_policy_version *v)
{
	const void *h = sqlite3_column_blob(s, 1);
	const unsigned char *a = sqlite3_column_text(s, 2);

	memset(v, 0, sizeof(*v));
	v->version = sqlite3_column_int64(s, 0);
	if (h == NULL || sqlite3_column_bytes(s, 1) != 32)
		return -1;
	memcpy(v->sha256, h, 32);
	v->published = sqlite3_column_int64(s, 3);
	if ((v->author = strdup(a ? (const char *)a : "")) == NULL)
		return -1;
	if (with_text) {
		const void *t = sqlite3_column_blob(s, 4);
		int n = sqlite3_column_bytes(s, 4);

		if (n < 0 || (v->text = malloc((size_t)n + 1)) == NULL)
			return -1;
		if (n > 0)
			memcpy(v->text, t, (size_t)n);
		v->text[n] = '\0';
		v->len = (size_t)n;
	}
	return 0;
}

int
gw_sqlite_policy_get(struct gw_store *st, int64_t n, struct gw_policy_version *out, char *err,
                     size_t errlen)
{
	sqlite3_stmt *s;
	int rv = -1, rc;

	memset(out, 0, sizeof(*out));
	gw_store_lock(st);
	if (ensure_table(st, err, errlen) < 0)
		goto out;
	s = gw_store_cached(st, n > 0 ?
		"SELECT version, sha256, author, published, text FROM policy_versions "
		"WHERE version = ?1" :
		"SELECT version, sha256, author, published, text FROM policy_versions "
		"ORDER BY version DESC LIMIT 1");
	if (s == NULL) {
		fail(st, err, errlen, "select");
		goto out;
	}
	if (n > 0)
		sqlite3_bind_int64(s, 1, n);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		if (row_to_version(s, true, out) < 0) {
			gw_policy_version_clear(out);
			sg_seterr(err, errlen, "policy versions: a row is not as sealgate writes it, "
			          "or out of memory");
		} else
			rv = 1;
	} else if (rc == SQLITE_DONE)
		rv = 0;
	else
		fail(st, err, errlen, "select");
	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
out:
	gw_store_unlock(st);
	return rv;
}

int
gw_sqlite_policy_latest(struct gw_store *st, int64_t *version, char *err, size_t errlen)
{
	sqlite3_stmt *s;
	int rv = -1;

	*version = 0;
	gw_store_lock(st);
	if (ensure_table(st, err, errlen) < 0)
		goto out;
	s = gw_store_cached(st, "SELECT coalesce(max(version), 0) FROM policy_versions");
	if (s == NULL || sqlite3_step(s) != SQLITE_ROW) {
		fail(st, err, errlen, "reading the newest");
	} else {
		*version = sqlite3_column_int64(s, 0);
		rv = 0;
	}
	if (s)
		sqlite3_reset(s);
out:
	gw_store_unlock(st);
	return rv;
}

int
gw_sqlite_policy_history(struct gw_store *st, size_t limit, gw_store_policy_fn fn, void *ctx,
                         char *err, size_t errlen)
{
	sqlite3_stmt *s;
	struct gw_policy_version v;
	int rv = -1, rc;

	gw_store_lock(st);
	if (ensure_table(st, err, errlen) < 0)
		goto out;
	s = gw_store_cached(st, "SELECT version, sha256, author, published FROM policy_versions "
	                        "ORDER BY version DESC LIMIT ?1");
	if (s == NULL) {
		fail(st, err, errlen, "select");
		goto out;
	}
	/* (a history is small: read under the lock in one go) */
	sqlite3_bind_int64(s, 1, limit > 0 ? (sqlite3_int64)limit : -1);
	rv = 0;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		if (row_to_version(s, false, &v) < 0) {
			gw_policy_version_clear(&v);
			sg_seterr(err, errlen, "policy versions: a row is not as sealgate writes it, "
			          "or out of memory");
			rv = -1;
			break;
		}
		rv = fn(ctx, &v);
		gw_policy_version_clear(&v);
		if (rv != 0)
			break;
	}
	if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
		fail(st, err, errlen, "select");
		rv = -1;
	}
	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
out:
	gw_store_unlock(st);
	return rv;
}

int
gw_sqlite_changes_open(struct gw_store *st, void **impl, char *err, size_t errlen)
{
	(void)st; (void)err; (void)errlen;
	*impl = NULL;
	return 0;   /* one gateway per file: nobody else to hear from */
}

int
gw_sqlite_changes_notify_tx(struct gw_store *st, const char *event, char *err, size_t errlen)
{
	(void)st; (void)event; (void)err; (void)errlen;
	return 0;
}
