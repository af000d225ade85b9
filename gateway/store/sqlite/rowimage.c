/*
 * Row images of a transaction (rowimage.h). The preupdate hook notes
 * (table, rowid) of every change; after the commit each noted row is read
 * once with a prepared statement, so a change undone by a savepoint or a
 * failed statement leaves the row as it really is. Much cheaper than the
 * session extension's changesets, which prepare their statements anew for
 * every changeset (docs/performance.md).
 *
 * Encoding, little-endian, one entry per row:
 *   'R' | name_len u8 | name | rowid i64 | ncols u16 | ncols × value
 *   'D' | name_len u8 | name | rowid i64                      (row gone)
 *   value: 1 i64 | 2 f64 | 3 u32 len, text | 4 u32 len, blob | 5 (null)
 */
#define SQLITE_ENABLE_PREUPDATE_HOOK 1

#include "rowimage.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#define TABLES_MAX 32
#define NAME_MAX_  64

struct table {
	char name[NAME_MAX_];
	sqlite3_stmt *sel;          /* SELECT * ... WHERE rowid = ? */
};

struct touched {
	uint16_t table;
	int64_t rowid;
};

struct gw_rowimage {
	struct table tables[TABLES_MAX];
	size_t n_tables;
	struct touched *rows;
	size_t n_rows, cap_rows;
	bool broken;                /* a change could not be noted */
	uint8_t *buf;
	size_t len, cap;
};

int
gw_rowimage_new(struct gw_rowimage **out)
{
	*out = calloc(1, sizeof(**out));
	return *out ? 0 : -1;
}

void
gw_rowimage_free(struct gw_rowimage **rip)
{
	struct gw_rowimage *ri = rip ? *rip : NULL;

	if (!ri)
		return;
	for (size_t i = 0; i < ri->n_tables; i++)
		sqlite3_finalize(ri->tables[i].sel);
	free(ri->rows);
	free(ri->buf);
	free(ri);
	*rip = NULL;
}

static void
note(struct gw_rowimage *ri, const char *name, int64_t rowid)
{
	size_t t;

	for (t = 0; t < ri->n_tables; t++)
		if (strcmp(ri->tables[t].name, name) == 0)
			break;
	if (t == ri->n_tables) {
		if (t == TABLES_MAX || strlen(name) >= NAME_MAX_) {
			ri->broken = true;
			return;
		}
		snprintf(ri->tables[t].name, NAME_MAX_, "%s", name);
		ri->n_tables++;
	}
	/* The same row again (an UPSERT after its INSERT…): once is enough. */
	if (ri->n_rows > 0 && ri->rows[ri->n_rows - 1].table == t &&
	    ri->rows[ri->n_rows - 1].rowid == rowid)
		return;
	if (ri->n_rows == ri->cap_rows) {
		size_t cap = ri->cap_rows ? 2 * ri->cap_rows : 64;
		struct touched *n = realloc(ri->rows, cap * sizeof(*n));
		if (!n) {
			ri->broken = true;
			return;
		}
		ri->rows = n;
		ri->cap_rows = cap;
	}
	ri->rows[ri->n_rows++] = (struct touched){ .table = (uint16_t)t, .rowid = rowid };
}

static void
hook(void *ctx, sqlite3 *db, int op, const char *zdb, const char *table,
     sqlite3_int64 key1, sqlite3_int64 key2)
{
	struct gw_rowimage *ri = ctx;

	(void)db;
	if (strcmp(zdb, "main") != 0)
		return;   /* temp tables are not the store */
	switch (op) {
	case SQLITE_INSERT:
		note(ri, table, key2);
		break;
	case SQLITE_DELETE:
		note(ri, table, key1);
		break;
	default:
		note(ri, table, key1);
		if (key2 != key1)
			note(ri, table, key2);
	}
}

void
gw_rowimage_start(struct gw_rowimage *ri, sqlite3 *db)
{
	ri->n_rows = 0;
	ri->broken = false;
	ri->len = 0;
	sqlite3_preupdate_hook(db, hook, ri);
}

void
gw_rowimage_stop(struct gw_rowimage *ri, sqlite3 *db)
{
	(void)ri;
	sqlite3_preupdate_hook(db, NULL, NULL);
}

bool
gw_rowimage_touched(const struct gw_rowimage *ri)
{
	return ri->n_rows > 0 || ri->broken;
}

/* ---- encoding ---- */

static int
put(struct gw_rowimage *ri, const void *p, size_t n)
{
	if (ri->cap - ri->len < n) {
		size_t cap = ri->cap ? ri->cap : 4096;
		uint8_t *b;

		while (cap - ri->len < n)
			cap *= 2;
		b = realloc(ri->buf, cap);
		if (!b)
			return -1;
		ri->buf = b;
		ri->cap = cap;
	}
	memcpy(ri->buf + ri->len, p, n);
	ri->len += n;
	return 0;
}

static int
put_le(struct gw_rowimage *ri, uint64_t v, size_t n)
{
	uint8_t b[8];

	for (size_t i = 0; i < n; i++)
		b[i] = (uint8_t)(v >> (8 * i));
	return put(ri, b, n);
}

static int
cmp_touched(const void *a, const void *b)
{
	const struct touched *x = a, *y = b;

	if (x->table != y->table)
		return x->table < y->table ? -1 : 1;
	return x->rowid < y->rowid ? -1 : x->rowid > y->rowid;
}

static int
put_value(struct gw_rowimage *ri, sqlite3_stmt *s, int i)
{
	int type = sqlite3_column_type(s, i);
	uint8_t tag = (uint8_t)type;
	double d;
	uint64_t bits;
	const void *p;
	int n;

	if (put(ri, &tag, 1))
		return -1;
	switch (type) {
	case SQLITE_INTEGER:
		return put_le(ri, (uint64_t)sqlite3_column_int64(s, i), 8);
	case SQLITE_FLOAT:
		d = sqlite3_column_double(s, i);
		memcpy(&bits, &d, sizeof(bits));
		return put_le(ri, bits, 8);
	case SQLITE_TEXT:
		p = sqlite3_column_text(s, i);
		n = sqlite3_column_bytes(s, i);
		return put_le(ri, (uint64_t)n, 4) || (n > 0 && put(ri, p, (size_t)n)) ? -1 : 0;
	case SQLITE_BLOB:
		p = sqlite3_column_blob(s, i);
		n = sqlite3_column_bytes(s, i);
		return put_le(ri, (uint64_t)n, 4) || (n > 0 && put(ri, p, (size_t)n)) ? -1 : 0;
	default:
		return 0;
	}
}

int
gw_rowimage_encode(struct gw_rowimage *ri, sqlite3 *db, const void **out, size_t *len)
{
	*out = NULL;
	*len = 0;
	ri->len = 0;
	if (ri->broken)
		return -1;
	qsort(ri->rows, ri->n_rows, sizeof(*ri->rows), cmp_touched);
	for (size_t i = 0; i < ri->n_rows; i++) {
		struct touched *t = &ri->rows[i];
		struct table *tb = &ri->tables[t->table];
		uint8_t namelen = (uint8_t)strlen(tb->name);
		int rc, ncols;

		if (i > 0 && cmp_touched(t, &ri->rows[i - 1]) == 0)
			continue;
		if (!tb->sel) {
			char *sql = sqlite3_mprintf("SELECT * FROM main.\"%w\" WHERE rowid = ?", tb->name);
			/* Fails for a table without rowids: no image, the
			 * caller syncs instead. */
			rc = sql ? sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, &tb->sel, NULL)
			         : SQLITE_NOMEM;
			sqlite3_free(sql);
			if (rc != SQLITE_OK)
				return -1;
		}
		sqlite3_bind_int64(tb->sel, 1, t->rowid);
		rc = sqlite3_step(tb->sel);
		if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
			sqlite3_reset(tb->sel);
			return -1;
		}
		ncols = rc == SQLITE_ROW ? sqlite3_column_count(tb->sel) : 0;
		if (put(ri, rc == SQLITE_ROW ? "R" : "D", 1) || put(ri, &namelen, 1) ||
		    put(ri, tb->name, namelen) || put_le(ri, (uint64_t)t->rowid, 8) ||
		    (rc == SQLITE_ROW && put_le(ri, (uint64_t)ncols, 2))) {
			sqlite3_reset(tb->sel);
			return -1;
		}
		for (int c = 0; c < ncols; c++) {
			if (put_value(ri, tb->sel, c)) {
				sqlite3_reset(tb->sel);
				return -1;
			}
		}
		sqlite3_reset(tb->sel);
	}
	*out = ri->buf;
	*len = ri->len;
	return 0;
}

/* ---- applying ---- */

struct reader {
	const uint8_t *p;
	size_t left;
};

static bool
take(struct reader *r, void *out, size_t n)
{
	if (r->left < n)
		return false;
	if (out)
		memcpy(out, r->p, n);
	r->p += n;
	r->left -= n;
	return true;
}

static bool
take_le(struct reader *r, uint64_t *v, size_t n)
{
	uint8_t b[8];

	if (!take(r, b, n))
		return false;
	*v = 0;
	for (size_t i = n; i-- > 0;)
		*v = *v << 8 | b[i];
	return true;
}

/* Binds the next encoded value to parameter idx of s. */
static bool
bind_value(struct reader *r, sqlite3_stmt *s, int idx)
{
	uint8_t tag;
	uint64_t v;
	double d;
	const uint8_t *p;

	if (!take(r, &tag, 1))
		return false;
	switch (tag) {
	case SQLITE_INTEGER:
		return take_le(r, &v, 8) && sqlite3_bind_int64(s, idx, (sqlite3_int64)v) == SQLITE_OK;
	case SQLITE_FLOAT:
		if (!take_le(r, &v, 8))
			return false;
		memcpy(&d, &v, sizeof(d));
		return sqlite3_bind_double(s, idx, d) == SQLITE_OK;
	case SQLITE_TEXT:
	case SQLITE_BLOB:
		if (!take_le(r, &v, 4) || v > r->left)
			return false;
		p = r->p;
		take(r, NULL, (size_t)v);
		return (tag == SQLITE_TEXT ? sqlite3_bind_text(s, idx, (const char *)p, (int)v, SQLITE_TRANSIENT)
		                           : sqlite3_bind_blob(s, idx, p, (int)v, SQLITE_TRANSIENT)) == SQLITE_OK;
	case SQLITE_NULL:
		return sqlite3_bind_null(s, idx) == SQLITE_OK;
	default:
		return false;
	}
}

/* The table's columns in SELECT * order: the order the image has them. */
static char *
column_list(sqlite3 *db, const char *table, int *ncols, bool assign)
{
	sqlite3_stmt *s = NULL;
	char *sql = sqlite3_mprintf("SELECT * FROM main.\"%w\" LIMIT 0", table), *list = NULL;

	if (sql && sqlite3_prepare_v2(db, sql, -1, &s, NULL) == SQLITE_OK) {
		*ncols = sqlite3_column_count(s);
		list = sqlite3_mprintf("%s", "");
		for (int c = 0; list && c < *ncols; c++) {
			char *n = assign ? sqlite3_mprintf("%s%s\"%w\" = ?%d", list, c ? ", " : "",
			                                   sqlite3_column_name(s, c), c + 1)
			                 : sqlite3_mprintf("%s%s\"%w\"", list, c ? ", " : "",
			                                   sqlite3_column_name(s, c));
			sqlite3_free(list);
			list = n;
		}
	}
	sqlite3_finalize(s);
	sqlite3_free(sql);
	return list;
}

static int
exec_row(sqlite3 *db, const char *sql, const struct reader *vals, int ncols, int64_t rowid,
         int *changes)
{
	sqlite3_stmt *s = NULL;
	struct reader r = *vals;
	int rc = -1;

	if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) != SQLITE_OK)
		return -1;
	for (int c = 0; c < ncols; c++)
		if (!bind_value(&r, s, c + 1))
			goto out;
	/* The rowid is the last parameter where the statement has one. */
	if (ncols + 1 <= sqlite3_bind_parameter_count(s) &&
	    sqlite3_bind_int64(s, ncols + 1, rowid) != SQLITE_OK)
		goto out;
	if (sqlite3_step(s) != SQLITE_DONE)
		goto out;
	*changes = sqlite3_changes(db);
	rc = 0;
out:
	sqlite3_finalize(s);
	return rc;
}

int
gw_rowimage_apply(sqlite3 *db, const void *data, size_t len, char *err, size_t errlen)
{
	struct reader r = { data, len };
	char table[256];
	int rv = -1;

	while (r.left > 0) {
		uint8_t op, namelen;
		uint64_t rowid, ncols64;
		char *sql = NULL, *cols = NULL, *sets = NULL;
		int ncols = 0, changes = 0, ok;

		if (!take(&r, &op, 1) || !take(&r, &namelen, 1) || !take(&r, table, namelen) ||
		    !take_le(&r, &rowid, 8) || (op != 'R' && op != 'D')) {
			snprintf(err, errlen, "malformed row image");
			goto out;
		}
		table[namelen] = '\0';
		if (op == 'D') {
			sql = sqlite3_mprintf("DELETE FROM main.\"%w\" WHERE rowid = ?1", table);
			ok = sql && exec_row(db, sql, &r, 0, (int64_t)rowid, &changes) == 0;
			sqlite3_free(sql);
			if (!ok) {
				snprintf(err, errlen, "deleting row %lld of %s: %s", (long long)rowid, table,
				         sqlite3_errmsg(db));
				goto out;
			}
			continue;
		}
		if (!take_le(&r, &ncols64, 2)) {
			snprintf(err, errlen, "malformed row image");
			goto out;
		}
		sets = column_list(db, table, &ncols, true);
		cols = column_list(db, table, &ncols, false);
		ok = sets && cols && (uint64_t)ncols == ncols64;
		if (ok) {
			/* The row as the image says: update it where it is, or
			 * insert it and give it its rowid. */
			sql = sqlite3_mprintf("UPDATE main.\"%w\" SET %s WHERE rowid = ?%d", table, sets,
			                      ncols + 1);
			ok = sql && exec_row(db, sql, &r, ncols, (int64_t)rowid, &changes) == 0;
			sqlite3_free(sql);
		}
		if (ok && changes == 0) {
			char *marks = sqlite3_mprintf("%s", "");
			for (int c = 0; marks && c < ncols; c++) {
				char *n = sqlite3_mprintf("%s%s?%d", marks, c ? ", " : "", c + 1);
				sqlite3_free(marks);
				marks = n;
			}
			sql = marks ? sqlite3_mprintf("INSERT INTO main.\"%w\" (%s) VALUES (%s)", table, cols,
			                              marks) : NULL;
			sqlite3_free(marks);
			ok = sql && exec_row(db, sql, &r, ncols, (int64_t)rowid, &changes) == 0;
			sqlite3_free(sql);
			if (ok && sqlite3_last_insert_rowid(db) != (sqlite3_int64)rowid) {
				sql = sqlite3_mprintf("UPDATE main.\"%w\" SET rowid = ?1 WHERE rowid = %lld",
				                      table, (long long)sqlite3_last_insert_rowid(db));
				ok = sql && exec_row(db, sql, &r, 0, (int64_t)rowid, &changes) == 0;
				sqlite3_free(sql);
			}
		}
		sqlite3_free(sets);
		sqlite3_free(cols);
		if (!ok) {
			snprintf(err, errlen, "restoring row %lld of %s: %s", (long long)rowid, table,
			         sqlite3_errmsg(db));
			goto out;
		}
		/* Past this row's values to the next entry. */
		for (uint64_t c = 0; c < ncols64; c++) {
			uint8_t tag;
			uint64_t n;
			if (!take(&r, &tag, 1) ||
			    ((tag == SQLITE_INTEGER || tag == SQLITE_FLOAT) && !take(&r, NULL, 8)) ||
			    ((tag == SQLITE_TEXT || tag == SQLITE_BLOB) &&
			     (!take_le(&r, &n, 4) || !take(&r, NULL, (size_t)n)))) {
				snprintf(err, errlen, "malformed row image");
				goto out;
			}
		}
	}
	rv = 0;
out:
	return rv;
}
