/*
 * Moving a single-site SQLite store to a PostgreSQL store (docs/store.md,
 * "Moving to PostgreSQL"): every table through the source's export call
 * and the target's import call, in ONE transaction of the target, which
 * commits only once the copied audit chain verifies there and ends at the
 * source's head. Backend-neutral: no SQL here.
 */
#include "migrate.h"
#include "backend.h"
#include "audit.h"
#include "auditfmt.h"
#include "protocol.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

const unsigned gw_store_table_cols[GW_TABLE_COUNT] = {
	[GW_TABLE_ACCOUNTS] = 4,
	[GW_TABLE_LOCKOUT] = 7,
	[GW_TABLE_TOTP] = 4,
	[GW_TABLE_TOTP_SITES] = 3,
	[GW_TABLE_TOTP_KEYS] = 3,
	[GW_TABLE_APPLICATIONS] = 17,
	[GW_TABLE_APPROVALS] = 6,
	[GW_TABLE_QUOTA] = 4,
	[GW_TABLE_SITE_META] = 2,
	[GW_TABLE_POLICY] = 5,
	[GW_TABLE_AUDIT] = 18,
	[GW_TABLE_CHECKPOINTS] = 9,
	[GW_TABLE_DOCUMENTS] = 5,
	[GW_TABLE_OUTBOX] = 16,
	[GW_TABLE_ALERTS] = 14,
	[GW_TABLE_IDS] = 2,
};

const char *const gw_store_table_names[GW_TABLE_COUNT] = {
	[GW_TABLE_ACCOUNTS] = "accounts",
	[GW_TABLE_LOCKOUT] = "sign-in attempts",
	[GW_TABLE_TOTP] = "TOTP secrets",
	[GW_TABLE_TOTP_SITES] = "TOTP secrets' copies per site",
	[GW_TABLE_TOTP_KEYS] = "sites' TOTP keys",
	[GW_TABLE_APPLICATIONS] = "applications",
	[GW_TABLE_APPROVALS] = "approvals",
	[GW_TABLE_QUOTA] = "quota counters",
	[GW_TABLE_SITE_META] = "token binding and known keys",
	[GW_TABLE_POLICY] = "policy versions",
	[GW_TABLE_AUDIT] = "audit records",
	[GW_TABLE_CHECKPOINTS] = "signed checkpoints",
	[GW_TABLE_DOCUMENTS] = "documents",
	[GW_TABLE_OUTBOX] = "notices (outbox)",
	[GW_TABLE_ALERTS] = "risk alerts",
	[GW_TABLE_IDS] = "id counters",
};

static const struct gw_store_ops *
ops_of(struct gw_store *st)
{
	return ((const struct gw_store_head *)st)->ops;
}

/* The tables whose ids are kept, and the name of their id counter
 * (migrate.h, IDS): the audit log, the notices and the alerts name them. */
static const struct {
	enum gw_store_table t;
	const char *name;
} counted[] = {
	{ GW_TABLE_APPLICATIONS, "applications" },
	{ GW_TABLE_CHECKPOINTS, "audit_checkpoints" },
	{ GW_TABLE_OUTBOX, "outbox" },
	{ GW_TABLE_ALERTS, "risk_alerts" },
};
#define N_COUNTED (sizeof(counted) / sizeof(counted[0]))

struct copy {
	struct gw_store *dst;
	struct gw_migrate_report *rep;
	int64_t max_id[N_COUNTED];   /* the highest ids among the rows */
};

static int
copy_row(void *ctx, enum gw_store_table t, const struct gw_store_value *cols, char *err,
         size_t errlen)
{
	struct copy *c = ctx;

	if (ops_of(c->dst)->import_row_tx(c->dst, t, cols, err, errlen) < 0)
		return -1;
	c->rep->rows[t]++;
	for (size_t k = 0; k < N_COUNTED; k++) {
		if (t == counted[k].t && cols[0].type == GW_VAL_INT && cols[0].i > c->max_id[k])
			c->max_id[k] = cols[0].i;
		/* the source's own counters already cover what they name */
		if (t == GW_TABLE_IDS && cols[0].type == GW_VAL_TEXT &&
		    cols[1].type == GW_VAL_INT && strcmp(cols[0].p, counted[k].name) == 0 &&
		    cols[1].i >= c->max_id[k])
			c->max_id[k] = 0;
	}
	return 0;
}

/* The target's id counters past the highest ids copied, whatever the
 * source's counters said (an id must never be given twice). */
static int
raise_ids(struct copy *c, char *err, size_t errlen)
{
	struct gw_store_value v[2];

	memset(v, 0, sizeof(v));
	v[0].type = GW_VAL_TEXT;
	v[1].type = GW_VAL_INT;
	for (size_t k = 0; k < N_COUNTED; k++) {
		if (c->max_id[k] <= 0)
			continue;
		v[0].p = counted[k].name;
		v[0].len = strlen(counted[k].name);
		v[1].i = c->max_id[k];
		if (ops_of(c->dst)->import_row_tx(c->dst, GW_TABLE_IDS, v, err, errlen) < 0)
			return -1;
	}
	return 0;
}

/* Verifies st's chain for its site: 0 intact (vd filled), -1 with err
 * naming the first problems (where the chain breaks). */
static int
verify(struct gw_store *st, const char *which, struct gw_audit_verdict *vd, char *err,
       size_t errlen)
{
	struct gw_audit_verifier *v = NULL;
	char why[512];
	size_t off;
	int r, rv = -1;

	memset(vd, 0, sizeof(*vd));
	r = gw_audit_verify_full(st, NULL, 0, &v, vd, why, sizeof(why));
	if (r < 0) {
		sg_seterr(err, errlen, "%s: reading the audit log: %s", which, why);
		goto out;
	}
	if (r > 0) {
		off = (size_t)snprintf(err, errlen, "%s: the audit log is NOT intact", which);
		for (size_t i = 0; i < vd->n_problems && i < 4 && off < errlen; i++)
			off += (size_t)snprintf(err + off, errlen - off, "%s %s", i ? ";" : ":",
			                        vd->problems[i]);
		if (vd->n_problems > 4 && off < errlen)
			snprintf(err + off, errlen - off, "; and %zu more", vd->n_problems - 4);
		goto out;
	}
	rv = 0;
out:
	gw_audit_verifier_free(&v);
	return rv;
}

int
gw_store_migrate(const char *sqlite_path, const char *from_site, const char *url,
                 const char *to_site, struct gw_migrate_report *rep, char *err, size_t errlen)
{
	struct gw_store *src = NULL, *dst = NULL;
	struct gw_audit_verdict svd, dvd;
	struct gw_store_binding b;
	struct copy c;
	struct stat sb;
	uint64_t sseq = 0, dseq = 0, cp_max = 0, cp_next = 0;
	uint8_t shash[32], dhash[32];
	struct gw_audit_checkpoint last;
	char why[768];
	bool in_tx = false;
	int rv = -1, r;

	memset(rep, 0, sizeof(*rep));
	memset(shash, 0, sizeof(shash));
	memset(dhash, 0, sizeof(dhash));
	memset(&last, 0, sizeof(last));
	/* gw_store_open makes a store where there is none: a move of a file
	 * that is not there must not leave an empty one behind. */
	if (stat(sqlite_path, &sb) < 0 || !S_ISREG(sb.st_mode)) {
		sg_seterr(err, errlen, "the SQLite store %s: %s", sqlite_path,
		          errno ? strerror(errno) : "not a file");
		goto out;
	}
	if (!gw_store_url_is_pg(url)) {
		sg_seterr(err, errlen, "the target must be a postgresql:// store");
		goto out;
	}
	/* The source, as its gateway opens it, and claimed: refused while a
	 * gateway serves it, and no gateway starts on it during the move. */
	if (gw_store_open(sqlite_path, &src, why, sizeof(why)) < 0 ||
	    gw_store_set_site(src, from_site, why, sizeof(why)) < 0 ||
	    gw_store_site_claim(src, why, sizeof(why)) < 0) {
		sg_seterr(err, errlen, "the SQLite store %s: %s", sqlite_path, why);
		goto out;
	}
	if (ops_of(src)->export_table == NULL) {
		sg_seterr(err, errlen, "a %s store cannot be moved", gw_store_backend(src));
		goto out;
	}
	/* A log that does not verify is not copied: its copy would carry the
	 * break under a new store's name. */
	if (verify(src, "the SQLite store", &svd, err, errlen) < 0)
		goto out;
	if (gw_store_audit_head(src, &sseq, shash, why, sizeof(why)) < 0) {
		sg_seterr(err, errlen, "the SQLite store: the audit head: %s", why);
		goto out;
	}
	/* The target, claimed as the site: refused while a gateway serves it. */
	if (gw_store_open_url(url, &dst, why, sizeof(why)) < 0 ||
	    gw_store_set_site(dst, to_site, why, sizeof(why)) < 0 ||
	    gw_store_site_claim(dst, why, sizeof(why)) < 0) {
		sg_seterr(err, errlen, "the PostgreSQL store, site %s: %s", to_site, why);
		goto out;
	}
	if (ops_of(dst)->import_row_tx == NULL) {
		sg_seterr(err, errlen, "a %s store cannot be moved to", gw_store_backend(dst));
		goto out;
	}
	/* A site with a history of its own is not merged into: two chains
	 * cannot be one. */
	if (gw_store_audit_head(dst, &dseq, dhash, why, sizeof(why)) < 0 ||
	    gw_store_checkpoint_last(dst, &last, &cp_next, why, sizeof(why)) < 0 ||
	    gw_store_checkpoint_max_id(dst, &cp_max, why, sizeof(why)) < 0 ||
	    (r = gw_store_binding_get(dst, &b, why, sizeof(why))) < 0) {
		sg_seterr(err, errlen, "the PostgreSQL store, site %s: %s", to_site, why);
		goto out;
	}
	if (dseq != 0 || cp_max != 0 || cp_next > 1 || r != 0) {
		sg_seterr(err, errlen, "the PostgreSQL store's site %s is not empty (%llu audit "
		          "records, %s checkpoints, %s token binding): nothing copied", to_site,
		          (unsigned long long)dseq, cp_next > 1 ? "had" : "no", r ? "a" : "no");
		goto out;
	}
	if (gw_store_tx_begin(dst, why, sizeof(why)) < 0) {
		sg_seterr(err, errlen, "the PostgreSQL store: %s", why);
		goto out;
	}
	in_tx = true;
	memset(&c, 0, sizeof(c));
	c.dst = dst;
	c.rep = rep;
	for (int t = 0; t < GW_TABLE_COUNT; t++)
		if (ops_of(src)->export_table(src, (enum gw_store_table)t, copy_row, &c, why,
		                              sizeof(why)) != 0) {
			sg_seterr(err, errlen, "copying the %s: %s", gw_store_table_names[t], why);
			goto out;
		}
	if (raise_ids(&c, why, sizeof(why)) < 0) {
		sg_seterr(err, errlen, "the id counters: %s", why);
		goto out;
	}
	/* The copy, read back inside the transaction: intact, and the same
	 * chain (head, records, signed checkpoints) as the source. */
	if (verify(dst, "the copy on PostgreSQL", &dvd, err, errlen) < 0)
		goto out;
	if (gw_store_audit_head(dst, &dseq, dhash, why, sizeof(why)) < 0) {
		sg_seterr(err, errlen, "the copy on PostgreSQL: the audit head: %s", why);
		goto out;
	}
	if (dseq != sseq || memcmp(dhash, shash, sizeof(shash)) != 0 ||
	    dvd.records != svd.records || dvd.checkpoints != svd.checkpoints ||
	    dvd.covered_seq != svd.covered_seq) {
		sg_seterr(err, errlen, "the copy on PostgreSQL is not the SQLite store's chain "
		          "(head %llu against %llu, %llu records against %llu, %llu checkpoints "
		          "against %llu): nothing copied", (unsigned long long)dseq,
		          (unsigned long long)sseq, (unsigned long long)dvd.records,
		          (unsigned long long)svd.records, (unsigned long long)dvd.checkpoints,
		          (unsigned long long)svd.checkpoints);
		goto out;
	}
	in_tx = false;
	if (gw_store_tx_commit(dst, why, sizeof(why)) < 0) {
		gw_store_tx_rollback(dst);
		sg_seterr(err, errlen, "the PostgreSQL store: committing: %s", why);
		goto out;
	}
	rep->head_seq = sseq;
	memcpy(rep->head_hash, shash, sizeof(shash));
	rep->checkpoints = dvd.checkpoints;
	rep->covered_seq = dvd.covered_seq;
	rv = 0;
out:
	if (in_tx)
		gw_store_tx_rollback(dst);
	gw_store_checkpoint_clear(&last);
	gw_store_close(&dst);
	gw_store_close(&src);
	return rv;
}
