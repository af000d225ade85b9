/*
 * The PostgreSQL store as the target of a move from SQLite (migrate.h):
 * each row as an INSERT of its own values in the caller's transaction,
 * ids kept (OVERRIDING SYSTEM VALUE) and the store's id counters moved
 * past them, so that the site's chain is the bytes the SQLite file held.
 */
#include "pg_import.h"
#include "pg_store.h"
#include "protocol.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

/* Per table: the INSERT, and each column's kind in the target: t text,
 * b bytea (sent as binary: bytes as they are), i bigint, o boolean (0 or
 * 1). The site, where the table is per site, is the parameter after the
 * row's columns. */
static const struct {
	const char *sql;
	const char *kinds;
	bool per_site;
} imports[GW_TABLE_COUNT] = {
	[GW_TABLE_ACCOUNTS] = {
		"INSERT INTO accounts (account, password_hash, created, updated) "
		"VALUES ($1, $2, $3, $4)", "ttii", false },
	[GW_TABLE_LOCKOUT] = {
		"INSERT INTO auth_lockout (account, uid, failed, lockouts, locked_until, inflight, "
		"inflight_until) VALUES ($1, $2, $3, $4, $5, $6, $7)", "tiiiiii", false },
	[GW_TABLE_TOTP] = {
		"INSERT INTO auth_totp (account, secret, last_counter, enrolled) "
		"VALUES ($1, $2, $3, $4)", "tbii", false },
	[GW_TABLE_TOTP_SITES] = {
		"INSERT INTO auth_totp_sites (account, site, sealed) VALUES ($1, $2, $3)", "ttb",
		false },
	[GW_TABLE_TOTP_KEYS] = {
		"INSERT INTO totp_site_keys (site, pub, published) VALUES ($1, $2, $3)", "tbi", false },
	[GW_TABLE_APPLICATIONS] = {
		"INSERT INTO applications (id, applicant, seal, document_type, business_scope, "
		"amount, reason, doc_digest, rule, levels, level, uses_granted, uses_left, created, "
		"valid_until, state, updated) OVERRIDING SYSTEM VALUE VALUES ($1, $2, $3, $4, $5, "
		"$6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)", "ittttitbitiiiiiti",
		false },
	/* n (the order) comes from the identity column: rows arrive in the
	 * order SQLite stored them */
	[GW_TABLE_APPROVALS] = {
		"INSERT INTO approvals (application, level, approver, approve, comment, at) "
		"VALUES ($1, $2, $3, $4, $5, $6)", "iitoti", false },
	[GW_TABLE_QUOTA] = {
		"INSERT INTO quota_use (seal, period, person, used) VALUES ($1, $2, $3, $4)",
		"ttti", false },
	[GW_TABLE_SITE_META] = {
		"INSERT INTO site_meta (site, name, value) VALUES ($3, $1, $2)", "tb", true },
	[GW_TABLE_POLICY] = {
		"INSERT INTO policy_versions (version, sha256, text, author, published) "
		"VALUES ($1, $2, $3, $4, $5)", "ibbti", false },
	[GW_TABLE_AUDIT] = {
		"INSERT INTO audit (site, seq, ts_ns, action, outcome, reason, actor, uid, pid, exe, "
		"host, seal, application, doc_digest, signed_digest, mechanism, detail, prev_hash, "
		"hash) VALUES ($19, $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, "
		"$15, $16, $17, $18)", "iittttiitttibbitbb", true },
	[GW_TABLE_CHECKPOINTS] = {
		"INSERT INTO audit_checkpoints (site, id, seq, ts_ns, hash, alg, signature, cert, "
		"prev_id, prev_hash) VALUES ($10, $1, $2, $3, $4, $5, $6, $7, $8, $9)", "iiibtbbib",
		true },
	/* a document the group already holds is the same bytes (its name is
	 * its SHA-256): its first copy stays */
	[GW_TABLE_DOCUMENTS] = {
		"INSERT INTO documents (sha256, size, name, created, data) VALUES ($1, $2, $3, $4, "
		"$5) ON CONFLICT (sha256) DO NOTHING", "bitib", false },
	[GW_TABLE_OUTBOX] = {
		"INSERT INTO outbox (id, event, channel, recipient, address, application, dedupe, "
		"detail, state, tries, next_at, claimed_by, lease_until, last_error, created, settled) "
		"OVERRIDING SYSTEM VALUE VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, "
		"$13, $14, $15, $16)", "ittttitttiititii", false },
	[GW_TABLE_ALERTS] = {
		"INSERT INTO risk_alerts (site, id, key, rule, severity, subject, why, ts_ns, seqs, "
		"apps, raised, state, state_by, state_comment, state_at) OVERRIDING SYSTEM VALUE "
		"VALUES ($15, $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
		"itttttittittti", true },
	[GW_TABLE_IDS] = { NULL, "ti", true },
};

/* The highest id ever given (IDS rows): the identity sequence of
 * applications, outbox or risk_alerts, or the site's audit_checkpoint_ids,
 * raised to it (never lowered: a group's store may have given more
 * already). */
static int
import_ids(struct gw_store *st, const struct gw_store_value *cols, char *err, size_t errlen)
{
	char n[24];
	const char *vals[2] = { n, gw_store_site(st) };
	PGresult *r;

	if (cols[0].type != GW_VAL_TEXT || cols[1].type != GW_VAL_INT || cols[1].i < 1)
		return 0;
	snprintf(n, sizeof(n), "%" PRId64, cols[1].i);
	if (strcmp(cols[0].p, "applications") == 0)
		r = gw_pg_exec(st, "SELECT setval(pg_get_serial_sequence('applications', 'id'), "
		               "greatest($1::bigint, (SELECT coalesce(max(id), 1) FROM applications)))",
		               1, vals, NULL, NULL, PGRES_TUPLES_OK, err, errlen);
	else if (strcmp(cols[0].p, "outbox") == 0)
		r = gw_pg_exec(st, "SELECT setval(pg_get_serial_sequence('outbox', 'id'), "
		               "greatest($1::bigint, (SELECT coalesce(max(id), 1) FROM outbox)))",
		               1, vals, NULL, NULL, PGRES_TUPLES_OK, err, errlen);
	else if (strcmp(cols[0].p, "risk_alerts") == 0)
		r = gw_pg_exec(st, "SELECT setval(pg_get_serial_sequence('risk_alerts', 'id'), "
		               "greatest($1::bigint, (SELECT coalesce(max(id), 1) FROM risk_alerts)))",
		               1, vals, NULL, NULL, PGRES_TUPLES_OK, err, errlen);
	else if (strcmp(cols[0].p, "audit_checkpoints") == 0)
		r = gw_pg_exec(st, "INSERT INTO audit_checkpoint_ids (site, max_id) "
		               "VALUES ($2, $1::bigint) ON CONFLICT (site) DO UPDATE SET max_id = "
		               "greatest(audit_checkpoint_ids.max_id, excluded.max_id)", 2, vals, NULL,
		               NULL, PGRES_COMMAND_OK, err, errlen);
	else
		return 0;
	if (r == NULL)
		return -1;
	PQclear(r);
	return 0;
}

int
gw_pg_import_row_tx(struct gw_store *st, enum gw_store_table t,
                    const struct gw_store_value *cols, char *err, size_t errlen)
{
	char nums[GW_STORE_COLS_MAX][24];
	const char *vals[GW_STORE_COLS_MAX + 1];
	int lens[GW_STORE_COLS_MAX + 1], fmts[GW_STORE_COLS_MAX + 1];
	const char *kinds;
	PGresult *r = NULL;
	size_t n;
	int rv = -1;

	if ((unsigned)t >= GW_TABLE_COUNT) {
		sg_seterr(err, errlen, "no such table to import");
		return -1;
	}
	kinds = imports[t].kinds;
	n = strlen(kinds);
	pthread_mutex_lock(&st->lock);
	/* Only inside the move's transaction: a row alone is half a store. */
	if (st->tx_depth == 0) {
		sg_seterr(err, errlen, "%s: a row is imported inside a transaction only",
		          gw_store_table_names[t]);
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		const struct gw_store_value *v = &cols[i];
		bool ok;

		lens[i] = 0;
		fmts[i] = 0;
		vals[i] = NULL;
		if (v->type == GW_VAL_NULL)
			continue;
		switch (kinds[i]) {
		case 'i':
		case 'o':
			ok = v->type == GW_VAL_INT && (kinds[i] == 'i' || v->i == 0 || v->i == 1);
			snprintf(nums[i], sizeof(nums[i]), "%" PRId64, v->i);
			vals[i] = nums[i];
			break;
		case 't':
			/* SQLite hands over its own NUL-terminated text; one with a
			 * NUL inside is not text PostgreSQL can hold */
			ok = v->type == GW_VAL_TEXT && strlen(v->p) == v->len;
			vals[i] = v->p;
			break;
		default:   /* 'b' */
			ok = v->type == GW_VAL_BLOB && v->len <= (size_t)INT32_MAX;
			vals[i] = v->len ? v->p : "";
			lens[i] = (int)v->len;
			fmts[i] = 1;
			break;
		}
		if (!ok) {
			/* the position only: never the value */
			sg_seterr(err, errlen, "%s: column %zu is not of the type sealgate writes "
			          "there", gw_store_table_names[t], i + 1);
			goto out;
		}
	}
	if (t == GW_TABLE_IDS) {
		rv = import_ids(st, cols, err, errlen);
		goto out;
	}
	if (imports[t].per_site) {
		vals[n] = gw_store_site(st);
		lens[n] = 0;
		fmts[n] = 0;
		n++;
	}
	r = gw_pg_exec(st, imports[t].sql, (int)n, vals, lens, fmts, PGRES_COMMAND_OK, err,
	               errlen);
	if (r == NULL)
		goto out;
	if (t == GW_TABLE_CHECKPOINTS) {
		const char *idv[2] = { vals[0], gw_store_site(st) };

		/* as gw_pg_checkpoint_add: the highest id given, beside the rows */
		PQclear(r);
		r = gw_pg_exec(st, "INSERT INTO audit_checkpoint_ids (site, max_id) "
		               "VALUES ($2, $1::bigint) ON CONFLICT (site) DO UPDATE SET max_id = "
		               "greatest(audit_checkpoint_ids.max_id, excluded.max_id)", 2, idv, NULL,
		               NULL, PGRES_COMMAND_OK, err, errlen);
		if (r == NULL)
			goto out;
	}
	rv = 0;
out:
	PQclear(r);
	pthread_mutex_unlock(&st->lock);
	return rv;
}
