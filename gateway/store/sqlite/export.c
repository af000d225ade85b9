/*
 * The SQLite store as the source of a move to PostgreSQL (migrate.h): one
 * SELECT per table, in the order the rows were made, each column handed
 * over with the type and bytes it is stored with, so that what the target
 * writes is what this file holds (the audit chain's hashes cover it).
 */
#include "sqlite_export.h"
#include "sqlite_store.h"

#include <stdio.h>
#include <string.h>
#include <sqlite3.h>

/* migrate.h's columns of each table, in its order. Tables made on first
 * use (auth_lockout, auth_totp and its copies and keys, policy_versions,
 * documents, outbox, risk_alerts) may not be there. */
static const struct {
	const char *table;   /* the table that must exist */
	const char *sql;
} exports[GW_TABLE_COUNT] = {
	[GW_TABLE_ACCOUNTS] = { "accounts",
		"SELECT user, password_hash, created, updated FROM accounts ORDER BY user" },
	[GW_TABLE_LOCKOUT] = { "auth_lockout",
		"SELECT user, uid, failed, lockouts, locked_until, inflight, inflight_until "
		"FROM auth_lockout ORDER BY user, uid" },
	[GW_TABLE_TOTP] = { "auth_totp",
		"SELECT user, secret, last_counter, enrolled FROM auth_totp ORDER BY user" },
	[GW_TABLE_TOTP_SITES] = { "auth_totp_sites",
		"SELECT user, site, sealed FROM auth_totp_sites ORDER BY user, site" },
	[GW_TABLE_TOTP_KEYS] = { "totp_site_keys",
		"SELECT site, pub, published FROM totp_site_keys ORDER BY site" },
	[GW_TABLE_APPLICATIONS] = { "applications",
		"SELECT id, applicant, seal, document_type, business_scope, amount, reason, "
		"doc_digest, rule, levels, level, uses_granted, uses_left, created, valid_until, "
		"state, updated FROM applications ORDER BY id" },
	/* rowid: the order approvals were given, which the target's n keeps */
	[GW_TABLE_APPROVALS] = { "approvals",
		"SELECT application, level, approver, approve, comment, at FROM approvals "
		"ORDER BY rowid" },
	[GW_TABLE_QUOTA] = { "quota_use",
		"SELECT seal, period, person, used FROM quota_use ORDER BY seal, period, person" },
	/* the site's own facts; the store's id ('id') and site name ('site')
	 * are this file's, not the site's */
	[GW_TABLE_SITE_META] = { "store_meta",
		"SELECT name, value FROM store_meta WHERE name = 'token_binding' "
		"OR (name >= 'key:' AND name < 'key;') ORDER BY name" },
	[GW_TABLE_POLICY] = { "policy_versions",
		"SELECT version, sha256, text, author, published FROM policy_versions "
		"ORDER BY version" },
	[GW_TABLE_AUDIT] = { "audit",
		"SELECT seq, ts_ns, action, outcome, reason, actor, uid, pid, exe, host, seal, "
		"application, doc_digest, signed_digest, mechanism, detail, prev_hash, hash "
		"FROM audit ORDER BY seq" },
	[GW_TABLE_CHECKPOINTS] = { "audit_checkpoints",
		"SELECT id, seq, ts_ns, hash, alg, signature, cert, prev_id, prev_hash "
		"FROM audit_checkpoints ORDER BY id" },
	/* the bytes as stored; the row id is the file's own (the target
	 * keys documents by their SHA-256 alone) */
	[GW_TABLE_DOCUMENTS] = { "documents",
		"SELECT sha256, size, name, created, data FROM documents ORDER BY id" },
	/* every notice, sent or not, with its state and lease as they are:
	 * a pending one is sent by the gateway on the copy, a sent one is not
	 * sent again */
	[GW_TABLE_OUTBOX] = { "outbox",
		"SELECT id, event, channel, recipient, address, application, dedupe, detail, state, "
		"tries, next_at, claimed_by, lease_until, last_error, created, settled "
		"FROM outbox ORDER BY id" },
	[GW_TABLE_ALERTS] = { "risk_alerts",
		"SELECT id, key, rule, severity, subject, why, ts_ns, seqs, apps, raised, state, "
		"state_by, state_comment, state_at FROM risk_alerts ORDER BY id" },
	/* AUTOINCREMENT's memory of the highest id ever given */
	[GW_TABLE_IDS] = { "sqlite_sequence",
		"SELECT name, seq FROM sqlite_sequence "
		"WHERE name IN ('applications', 'audit_checkpoints', 'outbox') ORDER BY name" },
};

/* 1 when the table is there, 0 when not, -1 with err. */
static int
table_exists(sqlite3 *db, const char *table, char *err, size_t errlen)
{
	sqlite3_stmt *s = NULL;
	int rc, rv = -1;

	if (sqlite3_prepare_v2(db, "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1",
	                       -1, &s, NULL) != SQLITE_OK) {
		snprintf(err, errlen, "%s: %s", table, sqlite3_errmsg(db));
		goto out;
	}
	sqlite3_bind_text(s, 1, table, -1, SQLITE_STATIC);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW)
		rv = 1;
	else if (rc == SQLITE_DONE)
		rv = 0;
	else
		snprintf(err, errlen, "%s: %s", table, sqlite3_errmsg(db));
out:
	sqlite3_finalize(s);
	return rv;
}

int
gw_sqlite_export_table(struct gw_store *st, enum gw_store_table t, gw_store_row_fn fn,
                       void *ctx, char *err, size_t errlen)
{
	struct gw_store_value vals[GW_STORE_COLS_MAX];
	sqlite3_stmt *s = NULL;
	sqlite3 *db;
	int rc, rv = -1, ncols;

	if ((unsigned)t >= GW_TABLE_COUNT) {
		snprintf(err, errlen, "no such table to export");
		return -1;
	}
	gw_store_lock(st);
	db = gw_store_db(st);
	rc = table_exists(db, exports[t].table, err, errlen);
	if (rc <= 0) {
		rv = rc;
		goto out;
	}
	if (sqlite3_prepare_v2(db, exports[t].sql, -1, &s, NULL) != SQLITE_OK) {
		snprintf(err, errlen, "%s: %s", gw_store_table_names[t], sqlite3_errmsg(db));
		goto out;
	}
	ncols = sqlite3_column_count(s);
	if (ncols != (int)gw_store_table_cols[t] || ncols > GW_STORE_COLS_MAX) {
		snprintf(err, errlen, "%s: %d columns", gw_store_table_names[t], ncols);
		goto out;
	}
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		for (int i = 0; i < ncols; i++) {
			memset(&vals[i], 0, sizeof(vals[i]));
			switch (sqlite3_column_type(s, i)) {
			case SQLITE_INTEGER:
				vals[i].type = GW_VAL_INT;
				vals[i].i = sqlite3_column_int64(s, i);
				break;
			case SQLITE_TEXT:
				vals[i].type = GW_VAL_TEXT;
				vals[i].p = sqlite3_column_text(s, i);
				vals[i].len = (size_t)sqlite3_column_bytes(s, i);
				break;
			case SQLITE_BLOB:
				vals[i].type = GW_VAL_BLOB;
				vals[i].p = sqlite3_column_blob(s, i);
				vals[i].len = (size_t)sqlite3_column_bytes(s, i);
				break;
			case SQLITE_NULL:
				vals[i].type = GW_VAL_NULL;
				break;
			default:
				/* REAL: no column of sealgate's holds one (STRICT) */
				snprintf(err, errlen, "%s: column %d is not of a type sealgate writes",
				         gw_store_table_names[t], i + 1);
				goto out;
			}
		}
		if ((rc = fn(ctx, t, vals, err, errlen)) != 0) {
			rv = rc;
			goto out;
		}
	}
	if (rc != SQLITE_DONE) {
		snprintf(err, errlen, "%s: %s", gw_store_table_names[t], sqlite3_errmsg(db));
		goto out;
	}
	rv = 0;
out:
	sqlite3_finalize(s);
	gw_store_unlock(st);
	return rv;
}
