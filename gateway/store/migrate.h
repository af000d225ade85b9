/*
 * Moving a single-site SQLite store to PostgreSQL (docs/store.md, "Moving
 * to PostgreSQL"): the rows of every table as plain values, read by the
 * source backend's export call and written by the target's import call,
 * so that migrate.c copies through the interface and runs no SQL.
 */
#ifndef GW_STORE_MIGRATE_H
#define GW_STORE_MIGRATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct gw_store;

/* The tables a store is moved by, in the order they are copied (an
 * approval after its application, checkpoints after the log). Each row is
 * these columns, in this order, whatever the backend calls them:
 *
 *   ACCOUNTS      user, password_hash, created, updated
 *   LOCKOUT       user, uid, failed, lockouts, locked_until, inflight,
 *                 inflight_until
 *   TOTP          user, secret (sealed bytes), last_counter, enrolled
 *   APPLICATIONS  id, applicant, seal, document_type, business_scope,
 *                 amount, reason, doc_digest, rule, levels, level,
 *                 uses_granted, uses_left, created, valid_until, state,
 *                 updated
 *   APPROVALS     application, level, approver, approve (0/1), comment, at
 *                 (in the order they were stored)
 *   QUOTA         seal, period, person, used
 *   SITE_META     name, value: the site's token binding ('token_binding')
 *                 and known keys ('key:' || uri)
 *   POLICY        version, sha256, text, author, published
 *   AUDIT         seq, ts_ns, action, outcome, reason, actor, uid, pid,
 *                 exe, host, seal, application, doc_digest, signed_digest,
 *                 mechanism, detail, prev_hash, hash (in seq order)
 *   CHECKPOINTS   id, seq, ts_ns, hash, alg, signature, cert, prev_id,
 *                 prev_hash (in id order)
 *   DOCUMENTS     sha256, size, name, created, data (the file's bytes)
 *   OUTBOX        id, event, channel, recipient, address, application,
 *                 dedupe, detail, state, tries, next_at, claimed_by,
 *                 lease_until, last_error, created, settled (in id order)
 *   ALERTS        id, key, rule, severity, subject, why, ts_ns, seqs, apps,
 *                 raised, state, state_by, state_comment, state_at (the
 *                 site's, in id order)
 *   IDS           name ('applications', 'audit_checkpoints', 'outbox'),
 *                 the highest id ever given (more than the rows show when
 *                 the newest are gone: an id is never given twice)
 */
enum gw_store_table {
	GW_TABLE_ACCOUNTS,
	GW_TABLE_LOCKOUT,
	GW_TABLE_TOTP,
	GW_TABLE_TOTP_SITES,         /* a sealed copy per site (totp.c) */
	GW_TABLE_TOTP_KEYS,          /* the sites' TOTP public keys */
	GW_TABLE_APPLICATIONS,
	GW_TABLE_APPROVALS,
	GW_TABLE_QUOTA,
	GW_TABLE_SITE_META,
	GW_TABLE_POLICY,
	GW_TABLE_AUDIT,
	GW_TABLE_CHECKPOINTS,
	GW_TABLE_DOCUMENTS,          /* the files applications are bound to */
	GW_TABLE_OUTBOX,             /* notices, pending and sent */
	GW_TABLE_ALERTS,             /* the online risk rules' alerts */
	GW_TABLE_IDS,
	GW_TABLE_COUNT
};

/* The number of columns of each table's rows, and its name for messages. */
extern const unsigned gw_store_table_cols[GW_TABLE_COUNT];
extern const char *const gw_store_table_names[GW_TABLE_COUNT];

#define GW_STORE_COLS_MAX 18

enum gw_store_vtype { GW_VAL_NULL, GW_VAL_INT, GW_VAL_TEXT, GW_VAL_BLOB };

/* One column's value as stored: TEXT is NUL-terminated, p and len are the
 * bytes of TEXT and BLOB (valid during the call only). */
struct gw_store_value {
	enum gw_store_vtype type;
	int64_t i;
	const void *p;
	size_t len;
};

/* Called once per row: 0 to go on, else the walk stops and returns it. */
typedef int (*gw_store_row_fn)(void *ctx, enum gw_store_table t,
                               const struct gw_store_value *cols, char *err, size_t errlen);

/* What one migration moved, table by table, and the chain it verified. */
struct gw_migrate_report {
	uint64_t rows[GW_TABLE_COUNT];
	uint64_t head_seq;            /* the chain's head, on both stores */
	uint8_t head_hash[32];
	uint64_t checkpoints;         /* signed checkpoints verified */
	uint64_t covered_seq;         /* signed up to */
};

/* Copies the SQLite store at sqlite_path (site from: the site it belongs
 * to, the gateway's configured one) to the PostgreSQL store url as site
 * to_site, in one transaction of the target, and verifies the copy before
 * it commits. Refused (nothing written to either): the source's site
 * claimed (a gateway running on it), its audit log not intact (err says
 * where it breaks), the target site claimed or already holding audit
 * rows, checkpoints or a token binding, any row refused by the target.
 * Messages never carry the URL (it may hold a password) or a row's bytes.
 * 0 and *rep, or -1 with err. */
int gw_store_migrate(const char *sqlite_path, const char *from_site, const char *url,
                     const char *to_site, struct gw_migrate_report *rep, char *err,
                     size_t errlen);

#endif
