/*
 * Audit operations: audit_query (filters, paging), audit_export (records and
 * signed checkpoints as the JSON-lines export of docs/audit.md, in pages
 * under the message cap), audit_checkpoint and audit_verify (each site's
 * chain verified on a handle scoped to it). The read rule lives in
 * scope_of(): auditors and seal admins see everything, department heads
 * their departments' people, everyone their own records.
 */
#include "audit_ops.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "audit.h"
#include "auditfmt.h"
#include "config.h"
#include "log.h"
#include "refusals.h"
#include "risk/online.h"
#include "protocol.h"
#include "server.h"

#define REPLY_BUDGET (700u * 1024u)   /* bytes of records per reply, under SG_MSG_MAX */
#define DIGEST_HEX_MAX 128

/* Whose records the caller may read: all, or the accounts in actors. */
struct scope {
	bool all;
	json_t *actors;               /* array of account ids (when !all) */
	char what[160];               /* "all", "own", "departments sales, hq" */
};

static bool
may_read_all(const struct gw_person *who)
{
	return gw_person_has_role(who, "auditor") || gw_person_has_role(who, "seal_admin");
}

static bool
json_has(const json_t *arr, const char *id)
{
	size_t i;
	json_t *v;

	json_array_foreach(arr, i, v)
		if (strcmp(json_string_value(v), id) == 0)
			return true;
	return false;
}

/* The departments who heads: those naming them as head; a department_head
 * named nowhere heads their own department. */
static bool
heads(const struct gw_policy *p, const struct gw_person *who, const char *dept)
{
	const struct gw_department *d;
	bool named = false;

	for (size_t i = 0; i < p->n_departments; i++) {
		d = &p->departments[i];
		if (d->head && strcmp(d->head, who->id) == 0) {
			named = true;
			if (gw_policy_dept_within(p, dept, d->id))
				return true;
		}
	}
	return !named && gw_person_has_role(who, "department_head") && who->department &&
	       gw_policy_dept_within(p, dept, who->department);
}

static void
scope_of(const struct gw_policy *p, const struct gw_person *who, struct scope *sc)
{
	size_t len = 0;

	memset(sc, 0, sizeof(*sc));
	if (may_read_all(who)) {
		sc->all = true;
		snprintf(sc->what, sizeof(sc->what), "all");
		return;
	}
	sc->actors = json_array();
	json_array_append_new(sc->actors, json_string(who->id));
	for (size_t i = 0; i < p->n_people; i++) {
		const struct gw_person *q = &p->people[i];
		if (q->department && strcmp(q->id, who->id) != 0 && heads(p, who, q->department))
			json_array_append_new(sc->actors, json_string(q->id));
	}
	len = (size_t)snprintf(sc->what, sizeof(sc->what), "%s",
	                       json_array_size(sc->actors) > 1 ? "own and departments:" : "own");
	for (size_t i = 0; i < p->n_departments && len < sizeof(sc->what); i++)
		if (heads(p, who, p->departments[i].id) &&
		    (!p->departments[i].parent || !heads(p, who, p->departments[i].parent)))
			len += (size_t)snprintf(sc->what + len, sizeof(sc->what) - len, " %s",
			                        p->departments[i].id);
}

/* ---- local time next to UTC ---- */

static bool
tz_of(void *ctx, const struct gw_audit_row *row, int64_t t, long *off, const char **zone)
{
	const struct gw_policy *p = ctx;
	const struct gw_tz *z = NULL;

	if (row->seal) {
		const struct gw_seal *s = gw_policy_seal(p, row->seal);
		if (s)
			z = s->tz;
	}
	for (size_t i = 0; !z && p->timezone && i < p->n_zones; i++)
		if (strcmp(gw_tz_name(p->zones[i]), p->timezone) == 0)
			z = p->zones[i];
	if (!z)
		return false;
	*off = gw_tz_offset(z, (time_t)t);
	*zone = gw_tz_name(z);
	return true;
}

static int64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* ---- the audit of reading the audit ---- */

static void
note_read(struct gw_req *r, const char *action, const char *outcome, const char *reason)
{
	json_t *copy = json_deep_copy(r->msg);
	char *detail;
	struct gw_audit_event ev = {
		.action = action, .outcome = outcome, .reason = reason,
		.actor = r->who ? r->who->id : NULL,
		.uid = r->peer->uid, .pid = r->peer->pid, .exe = r->peer->exe, .host = r->ctx->host,
	};
	uint64_t seq;

	if (gw_reflimit_req(r, action, outcome, reason, ev.actor)) {
		json_decref(copy);
		return;   /* a refusal counted for a summary record (refusals.h) */
	}
	json_object_del(copy, "session");
	json_object_del(copy, "v");
	/* audit_verify's pinned certificate: public, but up to 16 KiB of it
	 * in every record; that one was pinned is what the record keeps. */
	if (json_object_get(copy, "cert"))
		json_object_set_new(copy, "cert", json_string("pinned"));
	detail = json_dumps(copy, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(copy);
	ev.detail = detail;
	if (r->ctx->audit && gw_audit_record(r->ctx->audit, &ev, &seq) != 0)
		gw_log_error("audit record for %s could not be written", action);
	free(detail);
}

static json_t * __attribute__((format(printf, 3, 4)))
denied(struct gw_req *r, const char *action, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(r->err, sizeof(r->err), fmt, ap);
	va_end(ap);
	note_read(r, action, "denied", r->err);
	return sg_reply_error(CKR_FUNCTION_REJECTED, "denied", "%s", r->err);
}

/* ---- collecting rows into a reply ---- */

struct collect {
	json_t *arr;
	const struct gw_policy *policy;
	size_t bytes, n, limit;
	uint64_t last;
	bool full;                    /* stopped at limit or budget: maybe more */
	bool with_site;               /* query rows say their site */
	/* Across every site rows come in (seq, site) order: the rows at the
	 * end that share the last seq, and the seq before them, so that a
	 * page never ends inside one seq (the next page goes on after_seq). */
	size_t tail_same;
	uint64_t before_tail;
};

static int
collect_row(void *ctx, const struct gw_audit_row *row)
{
	struct collect *c = ctx;
	json_t *o = gw_audit_row_to_json(row, tz_of, (void *)c->policy);
	size_t sz;

	if (!o)
		return -1;
	if (c->with_site && row->site)
		json_object_set_new(o, "site", json_string(row->site));
	sz = json_dumpb(o, NULL, 0, JSON_COMPACT) + 2;
	if (c->n > 0 && c->bytes + sz > REPLY_BUDGET) {
		json_decref(o);
		c->full = true;
		return 1;
	}
	json_array_append_new(c->arr, o);
	c->bytes += sz;
	if (c->n == 0 || row->seq != c->last) {
		c->before_tail = c->n == 0 ? 0 : c->last;
		c->tail_same = 0;
	}
	c->tail_same++;
	c->n++;
	c->last = row->seq;
	if (c->n >= c->limit) {
		c->full = true;
		return 1;
	}
	return 0;
}

static int
get_u64(struct gw_req *r, const char *key, uint64_t *out)
{
	int64_t v = 0;

	if (sg_get_int(r->msg, key, false, 0, INT64_MAX, &v, r->err, sizeof(r->err)) < 0)
		return -1;
	*out = (uint64_t)v;
	return 0;
}

/* ---- audit_query ---- */

json_t *
gw_op_audit_query(struct gw_req *r)
{
	const struct gw_policy *p = r->snap->policy;
	struct gw_audit_filter f = { 0 };
	struct scope sc;
	struct collect c = { .policy = p };
	const char *person = NULL, *dept = NULL, *digest = NULL, *site = NULL;
	uint8_t dbuf[DIGEST_HEX_MAX / 2];
	size_t dlen = 0;
	int64_t from = 0, to = 0, app = 0, limit = 100;
	uint64_t after = 0;
	json_t *rep = NULL, *actors = NULL;
	char *actors_s = NULL, err[256];

	if (sg_get_int(r->msg, "from_ns", false, INT64_MIN, INT64_MAX, &from, r->err, sizeof(r->err)) < 0 ||
	    sg_get_int(r->msg, "to_ns", false, INT64_MIN, INT64_MAX, &to, r->err, sizeof(r->err)) < 0 ||
	    sg_get_str(r->msg, "seal", false, &f.seal, SG_NAME_MAX, r->err, sizeof(r->err)) < 0 ||
	    sg_get_str(r->msg, "person", false, &person, SG_NAME_MAX, r->err, sizeof(r->err)) < 0 ||
	    sg_get_str(r->msg, "department", false, &dept, SG_NAME_MAX, r->err, sizeof(r->err)) < 0 ||
	    sg_get_str(r->msg, "action", false, &f.action, SG_NAME_MAX, r->err, sizeof(r->err)) < 0 ||
	    sg_get_str(r->msg, "outcome", false, &f.outcome, SG_NAME_MAX, r->err, sizeof(r->err)) < 0 ||
	    sg_get_str(r->msg, "digest", false, &digest, DIGEST_HEX_MAX, r->err, sizeof(r->err)) < 0 ||
	    sg_get_int(r->msg, "application", false, 1, INT64_MAX, &app, r->err, sizeof(r->err)) < 0 ||
	    sg_get_int(r->msg, "limit", false, 1, GW_AUDIT_QUERY_LIMIT_MAX, &limit, r->err, sizeof(r->err)) < 0 ||
	    sg_get_str(r->msg, "site", false, &site, GW_SITE_MAX, r->err, sizeof(r->err)) < 0 ||
	    get_u64(r, "after", &after) < 0)
		return sg_reply_error(CKR_ARGUMENTS_BAD, "bad_request", "%s", r->err);
	if (digest && (gw_unhex(digest, dbuf, sizeof(dbuf), &dlen) != 0 || dlen == 0))
		return sg_reply_error(CKR_ARGUMENTS_BAD, "bad_request",
		                      "digest must be hex (at most %d bytes)", DIGEST_HEX_MAX / 2);
	if (!r->ctx->audit || !r->ctx->store)
		return sg_reply_error(CKR_DEVICE_ERROR, "internal", "no audit log");
	if (dept && !gw_policy_department(p, dept))
		return sg_reply_error(CKR_ARGUMENTS_BAD, "bad_request", "no department \"%s\"", dept);

	scope_of(p, r->who, &sc);
	if (!sc.all && person && !json_has(sc.actors, person)) {
		rep = denied(r, "audit_query", "you may not read the records of %s", person);
		goto out;
	}
	if (!sc.all && dept && !heads(p, r->who, dept)) {
		rep = denied(r, "audit_query", "you may not read the records of department %s", dept);
		goto out;
	}
	/* The actors to show: the caller's scope, narrowed by department. */
	if (dept) {
		actors = json_array();
		for (size_t i = 0; i < p->n_people; i++) {
			const struct gw_person *q = &p->people[i];
			if (q->department && gw_policy_dept_within(p, q->department, dept) &&
			    (sc.all || json_has(sc.actors, q->id)))
				json_array_append_new(actors, json_string(q->id));
		}
	} else if (!sc.all) {
		actors = json_incref(sc.actors);
	}
	if (actors) {
		actors_s = json_dumps(actors, JSON_COMPACT);
		if (!actors_s)
			goto nomem;
		f.actors_json = actors_s;
	}
	f.actor = person;
	f.from_ns = from;
	f.to_ns = to;
	f.application = app;
	f.digest = dlen ? dbuf : NULL;
	f.digest_len = dlen;
	f.after_seq = after;
	f.site = site;
	c.with_site = true;
	c.limit = (size_t)limit;
	c.arr = json_array();
	if (!c.arr)
		goto nomem;
	if (after == 0)
		note_read(r, "audit_query", "ok", NULL);
	if (gw_store_audit_query(r->ctx->store, &f, collect_row, &c, err, sizeof(err)) < 0) {
		gw_log_error("audit query: %s", err);
		json_decref(c.arr);
		rep = sg_reply_error(CKR_DEVICE_ERROR, "internal", "the audit log could not be read");
		goto out;
	}
	/* Every site: a full page ends before its last seq's rows (other
	 * sites' rows of that seq may follow), unless they are all it has. */
	if (c.full && site && strcmp(site, "*") == 0 && c.tail_same < c.n) {
		for (size_t k = 0; k < c.tail_same; k++)
			json_array_remove(c.arr, json_array_size(c.arr) - 1);
		c.last = c.before_tail;
	}
	rep = sg_reply_ok();
	json_object_set_new(rep, "site", json_string(site ? site : gw_store_site(r->ctx->store)));
	json_object_set_new(rep, "scope", json_string(sc.what));
	json_object_set_new(rep, "records", c.arr);
	if (c.full)
		json_object_set_new(rep, "next", json_integer((json_int_t)c.last));
	goto out;
nomem:
	rep = NULL;
out:
	free(actors_s);
	json_decref(actors);
	json_decref(sc.actors);
	return rep;
}

/* ---- audit_export ---- */

struct cpcollect {
	json_t *arr;
	const uint8_t *cert; size_t cert_len;   /* the header's: omitted when equal */
	uint64_t max_id;                        /* the export's last checkpoint; 0 = all */
};

static int
collect_cp(void *ctx, const struct gw_audit_checkpoint *cp)
{
	struct cpcollect *c = ctx;
	bool same = cp->cert && c->cert && cp->cert_len == c->cert_len &&
	            memcmp(cp->cert, c->cert, c->cert_len) == 0;
	json_t *o;

	/* Signed after the export began: it covers records the export does not
	 * hold, and would look like a cut-off tail. */
	if (c->max_id && cp->id > c->max_id)
		return 0;
	o = gw_audit_checkpoint_to_json(cp, !same && cp->cert);
	if (!o)
		return -1;
	json_array_append_new(c->arr, o);
	return 0;
}

/* Another site's export header names the certificate of its first
 * checkpoint that has one: stored checkpoints never change, so every page
 * of the export omits the same one. */
struct firstcert { uint8_t *der; size_t len; };

static int
first_cert(void *ctx, const struct gw_audit_checkpoint *cp)
{
	struct firstcert *fc = ctx;

	if (!cp->cert)
		return 0;
	if (!(fc->der = malloc(cp->cert_len)))
		return -1;
	memcpy(fc->der, cp->cert, cp->cert_len);
	fc->len = cp->cert_len;
	return 1;
}

/* Interleaves checkpoints after the record whose seq they cover. */
static json_t *
merge(json_t *records, json_t *cps)
{
	json_t *out = json_array();
	size_t i = 0, j = 0;

	while (i < json_array_size(records) || j < json_array_size(cps)) {
		json_t *rec = json_array_get(records, i), *cp = json_array_get(cps, j);
		if (cp && (!rec || json_integer_value(json_object_get(cp, "seq")) <
		                   json_integer_value(json_object_get(rec, "seq")))) {
			json_array_append(out, cp);
			j++;
		} else {
			json_array_append(out, rec);
			i++;
		}
	}
	return out;
}

json_t *
gw_op_audit_export(struct gw_req *r)
{
	const struct gw_policy *p = r->snap->policy;
	struct gw_audit_filter f = { 0 };
	struct collect c = { .policy = p };
	struct cpcollect cc = { 0 };
	uint64_t after = 0, upto = 0, head = 0, cpseq = 0;
	uint8_t head_hash[GW_AUDIT_HASH_LEN];
	int64_t limit = GW_AUDIT_EXPORT_LIMIT_MAX;
	json_t *rep = NULL, *hdr = NULL, *items = NULL;
	char err[256], hex[2 * GW_AUDIT_HASH_LEN + 1], t[48];
	const char *cperr = NULL, *site = NULL;
	struct gw_store *st = NULL;
	struct firstcert fc = { 0 };
	bool own;

	if (get_u64(r, "after", &after) < 0 || get_u64(r, "upto", &upto) < 0 ||
	    get_u64(r, "checkpoint_upto", &cc.max_id) < 0 ||
	    sg_get_int(r->msg, "limit", false, 1, GW_AUDIT_EXPORT_LIMIT_MAX, &limit,
	               r->err, sizeof(r->err)) < 0 ||
	    sg_get_str(r->msg, "site", false, &site, GW_SITE_MAX, r->err, sizeof(r->err)) < 0)
		return sg_reply_error(CKR_ARGUMENTS_BAD, "bad_request", "%s", r->err);
	if (!r->ctx->audit || !r->ctx->store)
		return sg_reply_error(CKR_DEVICE_ERROR, "internal", "no audit log");
	if (!may_read_all(r->who))
		return denied(r, "audit_export", "%s", "exporting the audit log is for auditors and "
		              "seal admins (use audit query for your own records)");
	if (site && strcmp(site, "*") == 0)
		return sg_reply_error(CKR_ARGUMENTS_BAD, "bad_request", "%s",
		                      "an export holds one site's chain: export each site");
	own = !site || strcmp(site, gw_store_site(r->ctx->store)) == 0;
	st = r->ctx->store;
	/* Another site's chain, on a handle scoped to it: its head is its last
	 * stored record, its checkpoints are signed by its own key at its own
	 * gateway (none fresh from here), each carrying its certificate. */
	if (!own && (!r->ctx->cfg || !gw_store_url_is_pg(r->ctx->cfg->store_url))) {
		return sg_reply_error(CKR_ARGUMENTS_BAD, "bad_request", "this store holds site %s only",
		                      gw_store_site(r->ctx->store));
	}
	if (!own && (gw_store_open_url(r->ctx->cfg->store_url, &st, err, sizeof(err)) < 0 ||
	             gw_store_set_site(st, site, err, sizeof(err)) < 0)) {
		if (st != r->ctx->store)
			gw_store_close(&st);
		gw_log_error("audit export of site %s: %s", site, err);
		return sg_reply_error(CKR_DEVICE_ERROR, "internal", "site %s could not be read", site);
	}
	if (own) {
		cc.cert = gw_audit_cert(r->ctx->audit, &cc.cert_len);
	} else if (gw_store_checkpoint_scan(st, 0, 0, first_cert, &fc, err, sizeof(err)) < 0) {
		goto fail;
	} else {
		cc.cert = fc.der;
		cc.cert_len = fc.len;
	}
	if (after == 0) {
		/* A fresh checkpoint, so the export is signed to its last record
		 * and a cut-off tail of the file shows. */
		note_read(r, "audit_export", "ok", NULL);
		if (own && cc.cert && gw_audit_checkpoint_now(r->ctx->audit, &cpseq, err, sizeof(err)) != 0) {
			gw_log_warn("audit export without a fresh checkpoint: %s", err);
			cperr = err;
		}
		/* The last checkpoint, then the head, in this order: every
		 * checkpoint stored by now covers a seq at most the head read
		 * after it, so the export holds no checkpoint of a record it
		 * does not hold (a busy log is not a truncated one), and still
		 * every earlier one, also those past a head that was cut back. */
		if (gw_store_checkpoint_max_id(st, &cc.max_id, err, sizeof(err)) != 0)
			goto fail;
		if (own)
			gw_audit_head(r->ctx->audit, &head, head_hash);
		else if (gw_store_audit_head(st, &head, head_hash, err, sizeof(err)) < 0)
			goto fail;
		else if (head == 0)
			memset(head_hash, 0, sizeof(head_hash));
		upto = head;
		gw_hex(head_hash, sizeof(head_hash), hex);
		gw_audit_format_time(now_ns(), 0, t, sizeof(t));
		hdr = json_pack("{s:s,s:s,s:i,s:s,s:s,s:s,s:I,s:s,s:s}",
		                "type", "header", "format", "sealgate-audit-export", "version", 1,
		                "instance", r->ctx->instance, "host", r->ctx->host,
		                "exported_by", r->who->id, "upto", (json_int_t)upto,
		                "head_hash", hex, "exported_at", t);
		if (!hdr) {
			snprintf(err, sizeof(err), "out of memory");
			goto fail;
		}
		json_object_set_new(hdr, "site", json_string(gw_store_site(st)));
		if (cc.cert) {
			char *b = sg_b64_encode(cc.cert, cc.cert_len);
			json_object_set_new(hdr, "cert", b ? json_string(b) : json_null());
			free(b);
		} else {
			json_object_set_new(hdr, "cert", json_null());
		}
		if (cperr)
			json_object_set_new(hdr, "checkpoint_error", json_string(cperr));
		json_object_set_new(hdr, "checkpoint_upto", json_integer((json_int_t)cc.max_id));
	} else if (upto == 0) {
		if (st != r->ctx->store)
			gw_store_close(&st);
		free(fc.der);
		return sg_reply_error(CKR_ARGUMENTS_BAD, "bad_request",
		                      "a later export page needs the \"upto\" of the first");
	}
	f.after_seq = after;
	f.upto_seq = upto ? upto : 1;
	c.limit = (size_t)limit;
	c.arr = json_array();
	cc.arr = json_array();
	if (upto > after &&
	    gw_store_audit_query(st, &f, collect_row, &c, err, sizeof(err)) < 0)
		goto fail;
	/* Checkpoints up to the last record of this page; on the last page all
	 * the rest, also those past the head: they prove a cut-off tail. */
	if (gw_store_checkpoint_scan(st, after == 0 ? 0 : after + 1,
	                             c.full ? c.last : 0, collect_cp, &cc,
	                             err, sizeof(err)) < 0)
		goto fail;
	items = merge(c.arr, cc.arr);
	rep = sg_reply_ok();
	if (hdr)
		json_object_set_new(rep, "header", hdr);
	hdr = NULL;
	json_object_set_new(rep, "items", items);
	json_object_set_new(rep, "upto", json_integer((json_int_t)upto));
	json_object_set_new(rep, "checkpoint_upto", json_integer((json_int_t)cc.max_id));
	if (c.full && c.last < upto)
		json_object_set_new(rep, "next", json_integer((json_int_t)c.last));
	json_decref(c.arr);
	json_decref(cc.arr);
	if (st != r->ctx->store)
		gw_store_close(&st);
	free(fc.der);
	return rep;
fail:
	gw_log_error("audit export: %s", err);
	json_decref(c.arr);
	json_decref(cc.arr);
	json_decref(hdr);
	if (st != r->ctx->store)
		gw_store_close(&st);
	free(fc.der);
	return sg_reply_error(CKR_DEVICE_ERROR, "internal", "the audit log could not be read");
}

/* ---- audit_checkpoint ---- */

json_t *
gw_op_audit_checkpoint(struct gw_req *r)
{
	uint64_t seq = 0;
	char err[256];
	json_t *rep;

	if (!may_read_all(r->who))
		return denied(r, "audit_checkpoint", "%s",
		              "only auditors and seal admins may ask for a checkpoint");
	if (!r->ctx->audit)
		return sg_reply_error(CKR_DEVICE_ERROR, "internal", "no audit log");
	if (gw_audit_checkpoint_now(r->ctx->audit, &seq, err, sizeof(err)) != 0)
		return sg_reply_error(CKR_DEVICE_ERROR, "internal", "no checkpoint: %s", err);
	rep = sg_reply_ok();
	json_object_set_new(rep, "seq", json_integer((json_int_t)seq));
	return rep;
}

/* ---- audit_verify: each site's chain ---- */

#define VERIFY_PROBLEMS_MAX 20        /* problems per site in a reply */

struct names { char **v; size_t n; };

static int
names_add(struct names *s, const char *name)
{
	char **nv;

	for (size_t i = 0; i < s->n; i++)
		if (strcmp(s->v[i], name) == 0)
			return 0;
	nv = realloc(s->v, (s->n + 1) * sizeof(*nv));
	if (!nv)
		return -1;
	s->v = nv;
	if (!(s->v[s->n] = strdup(name)))
		return -1;
	s->n++;
	return 0;
}

static int
collect_site(void *ctx, const struct gw_audit_row *row)
{
	return row->site ? names_add(ctx, row->site) : 0;
}

static int
by_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int
collect_cert(void *ctx, const struct gw_audit_checkpoint *cp)
{
	json_t *certs = ctx, *v;
	char *b;
	size_t i;

	if (!cp->cert)
		return 0;
	if (!(b = sg_b64_encode(cp->cert, cp->cert_len)))
		return -1;
	json_array_foreach(certs, i, v)
		if (strcmp(json_string_value(v), b) == 0) {
			free(b);
			return 0;
		}
	json_array_append_new(certs, json_string(b));
	free(b);
	return 0;
}

/* One site on its own handle: gw_audit_verify_full reads the chain and
 * the checkpoints of the handle's site only. */
static int
verify_one(struct gw_store *st, const char *url, const char *site, const uint8_t *pin,
           size_t pin_len, gw_audit_site_fn fn, void *arg)
{
	struct gw_store *h = NULL;
	struct gw_audit_verifier *v = NULL;
	struct gw_audit_verdict vd = { 0 };
	json_t *certs = json_array();
	char err[512] = "";
	int r = -1, rv;

	if (strcmp(site, gw_store_site(st)) == 0) {
		h = st;
	} else if (!url || !gw_store_url_is_pg(url)) {
		/* A SQLite store is one site's, and a second handle on the file
		 * a running gateway writes could replay its redo log. */
		snprintf(err, sizeof(err), "this store holds site %s only", gw_store_site(st));
		goto done;
	} else if (gw_store_open_url(url, &h, err, sizeof(err)) < 0 ||
	           gw_store_set_site(h, site, err, sizeof(err)) < 0) {
		goto done;
	}
	r = gw_audit_verify_full(h, pin, pin_len, &v, &vd, err, sizeof(err));
	if (r >= 0 && certs && gw_store_checkpoint_scan(h, 0, 0, collect_cert, certs, err,
	                                                sizeof(err)) < 0)
		r = -1;
done:
	rv = fn(arg, site, r, r >= 0 ? &vd : NULL, certs, err);
	gw_audit_verifier_free(&v);
	json_decref(certs);
	if (h != st)
		gw_store_close(&h);
	return rv;
}

int
gw_audit_verify_sites(struct gw_store *st, const char *url, const char *which,
                      const struct gw_policy *policy, const uint8_t *pin, size_t pin_len, gw_audit_site_fn fn, void *arg,
                      char *err, size_t errlen)
{
	struct gw_audit_filter f = { .site = "*" };
	struct names s = { 0 };
	int rv = -1;

	if (!which || strcmp(which, "*") != 0) {
		if (verify_one(st, url, which ? which : gw_store_site(st), pin, pin_len, fn, arg) != 0) {
			sg_seterr(err, errlen, "stopped");
			return -1;
		}
		return 0;
	}
	/* The sites are those with a chain: one read of every site's rows. */
	if (gw_store_audit_query(st, &f, collect_site, &s, err, errlen) != 0)
		goto out;
	/* And the group's sites: one whose every record was removed has no
	 * row left to name it, but its checkpoints still speak. (A SQLite
	 * store is one site's: the policy's other sites have stores of their
	 * own.) */
	for (size_t i = 0; policy && url && gw_store_url_is_pg(url) && i < policy->n_sites; i++)
		if (names_add(&s, policy->sites[i].id) != 0) {
			sg_seterr(err, errlen, "out of memory");
			goto out;
		}
	qsort(s.v, s.n, sizeof(*s.v), by_name);
	for (size_t i = 0; i < s.n; i++)
		if (verify_one(st, url, s.v[i], pin, pin_len, fn, arg) != 0) {
			sg_seterr(err, errlen, "stopped");
			goto out;
		}
	rv = 0;
out:
	for (size_t i = 0; i < s.n; i++)
		free(s.v[i]);
	free(s.v);
	return rv;
}

void
gw_audit_site_line(const char *site, int r, const struct gw_audit_verdict *vd, const char *err,
                   char *out, size_t outlen)
{
	if (r < 0)
		snprintf(out, outlen, "site %s: NOT verified: %s", site, err);
	else if (r > 0)
		snprintf(out, outlen, "site %s: NOT intact (%zu problem%s): %s", site, vd->n_problems,
		         vd->n_problems == 1 ? "" : "s",
		         vd->n_problems ? vd->problems[0] : "unknown");
	else
		snprintf(out, outlen, "site %s: intact, %llu records, %llu signed checkpoints, "
		         "signed up to seq %llu", site, (unsigned long long)vd->records,
		         (unsigned long long)vd->checkpoints, (unsigned long long)vd->covered_seq);
}

/* The verdicts of a reply, under the same budget as a page of records:
 * past it (sites without number, or certificates without number, which
 * only someone writing the store could make) the reply says so instead. */
struct verdicts {
	json_t *arr;
	size_t bytes;
	bool over;
	struct gw_risk_online *risk;  /* told of a broken chain (log.verify_failed) */
	const char *by;
};

/* Problems of one broken site raised as alerts at most (the first ones:
 * a log rewritten from one record on breaks at every record). */
#define VERIFY_ALERTS_MAX 5

static int
verdict_json(void *arg, const char *site, int r, const struct gw_audit_verdict *vd,
             json_t *certs, const char *err)
{
	struct verdicts *vs = arg;
	json_t *o, *probs, *notes;
	char line[768];

	gw_audit_site_line(site, r, vd, err, line, sizeof(line));
	/* A broken chain is an alert of its own, whoever found it: the
	 * auditors are told even when a seal admin ran the check. */
	for (size_t i = 0; r > 0 && vd && i < vd->n_problems && i < VERIFY_ALERTS_MAX; i++)
		gw_risk_online_log_broken(vs->risk, site, vd->problems[i], vs->by);
	o = json_pack("{s:s,s:s,s:s,s:o}", "site", site,
	              "state", r < 0 ? "error" : r > 0 ? "broken" : "intact", "line", line,
	              "certs", certs ? json_incref(certs) : json_array());
	if (!o)
		return -1;
	if (vd) {
		probs = json_array();
		notes = json_array();
		for (size_t i = 0; i < vd->n_problems && i < VERIFY_PROBLEMS_MAX; i++)
			json_array_append_new(probs, json_string(vd->problems[i]));
		for (size_t i = 0; i < vd->n_notes && i < VERIFY_PROBLEMS_MAX; i++)
			json_array_append_new(notes, json_string(vd->notes[i]));
		json_object_set_new(o, "problems", probs);
		json_object_set_new(o, "problems_total", json_integer((json_int_t)vd->n_problems));
		json_object_set_new(o, "notes", notes);
		json_object_set_new(o, "records", json_integer((json_int_t)vd->records));
		json_object_set_new(o, "last_seq", json_integer((json_int_t)vd->last_seq));
		json_object_set_new(o, "checkpoints", json_integer((json_int_t)vd->checkpoints));
		json_object_set_new(o, "covered_seq", json_integer((json_int_t)vd->covered_seq));
	} else {
		json_object_set_new(o, "error", json_string(err));
	}
	vs->bytes += json_dumpb(o, NULL, 0, JSON_COMPACT) + 2;
	if (vs->bytes > REPLY_BUDGET) {
		json_decref(o);
		vs->over = true;
		return 1;
	}
	json_array_append_new(vs->arr, o);
	return 0;
}

json_t *
gw_op_audit_verify(struct gw_req *r)
{
	const char *site = NULL, *cert = NULL;
	uint8_t *pin = NULL;
	size_t pin_len = 0;
	struct verdicts vs = { 0 };
	json_t *rep;
	char err[256];

	if (sg_get_str(r->msg, "site", false, &site, GW_SITE_MAX, r->err, sizeof(r->err)) < 0 ||
	    sg_get_str(r->msg, "cert", false, &cert, 4 * GW_AUDIT_CERT_MAX / 3 + 4, r->err,
	               sizeof(r->err)) < 0)
		return sg_reply_error(CKR_ARGUMENTS_BAD, "bad_request", "%s", r->err);
	if (!r->ctx->store)
		return sg_reply_error(CKR_DEVICE_ERROR, "internal", "no audit log");
	if (!may_read_all(r->who))
		return denied(r, "audit_verify", "%s",
		              "verifying the audit log is for auditors and seal admins");
	/* One certificate is one site's audit key: it pins one site only. */
	if (cert && site && strcmp(site, "*") == 0)
		return sg_reply_error(CKR_ARGUMENTS_BAD, "bad_request", "%s",
		                      "a pinned certificate is one site's: verify every site with a CA");
	if (cert && sg_b64_decode(cert, strlen(cert), &pin, &pin_len, GW_AUDIT_CERT_MAX) != 0)
		return sg_reply_error(CKR_ARGUMENTS_BAD, "bad_request", "cert is not base64 DER");
	note_read(r, "audit_verify", "ok", NULL);
	vs.arr = json_array();
	vs.risk = r->ctx->risk;
	vs.by = r->who->id;
	if (!vs.arr || gw_audit_verify_sites(r->ctx->store, r->ctx->cfg ? r->ctx->cfg->store_url : NULL,
	                                     site, r->snap->policy, pin, pin_len, verdict_json, &vs,
	                                     err, sizeof(err)) != 0) {
		json_decref(vs.arr);
		free(pin);
		if (vs.over)
			return sg_reply_error(CKR_DEVICE_ERROR, "internal", "the verdicts of every site "
			                      "do not fit in one reply (%u bytes): verify site by site "
			                      "with --site", REPLY_BUDGET);
		gw_log_error("audit verify: %s", err);
		return sg_reply_error(CKR_DEVICE_ERROR, "internal", "the audit log could not be read");
	}
	free(pin);
	rep = sg_reply_ok();
	json_object_set_new(rep, "sites", vs.arr);
	return rep;
}

/* ---- usage: signatures counted by site, seal, department or day ---- */

#define USAGE_SCAN_MAX 1000000    /* records one request reads at most */
#define USAGE_KEYS_MAX 10000      /* distinct keys in a reply */
#define USAGE_DEFAULT_DAYS 30

struct usage {
	const struct gw_policy *policy;
	const char *by;
	const char *own_site;
	json_t *counts;               /* key -> integer */
	size_t scanned;
	bool truncated;
};

static int
usage_row(void *ctx, const struct gw_audit_row *row)
{
	struct usage *u = ctx;
	const struct gw_person *q;
	char day[16];
	const char *key = NULL;
	json_t *n;

	if (++u->scanned > USAGE_SCAN_MAX) {
		u->truncated = true;
		return 1;
	}
	if (strcmp(u->by, "site") == 0) {
		key = row->site ? row->site : u->own_site;
	} else if (strcmp(u->by, "seal") == 0) {
		key = row->seal ? row->seal : "";
	} else if (strcmp(u->by, "department") == 0) {
		q = row->actor ? gw_policy_person(u->policy, row->actor) : NULL;
		key = q && q->department ? q->department : "";
	} else {
		time_t t = (time_t)(row->ts_ns / 1000000000LL);
		struct tm tm;

		gmtime_r(&t, &tm);
		strftime(day, sizeof(day), "%Y-%m-%d", &tm);
		key = day;
	}
	n = json_object_get(u->counts, key);
	if (n != NULL) {
		json_integer_set(n, json_integer_value(n) + 1);
	} else if (json_object_size(u->counts) < USAGE_KEYS_MAX) {
		json_object_set_new(u->counts, key, json_integer(1));
	} else {
		u->truncated = true;
		return 1;
	}
	return 0;
}

json_t *
gw_op_usage(struct gw_req *r)
{
	const struct gw_policy *p = r->snap->policy;
	struct gw_audit_filter f = { .action = "sign", .outcome = "ok" };
	struct usage u = { .policy = p, .by = "seal" };
	struct scope sc;
	int64_t now = (int64_t)time(NULL), from = now - USAGE_DEFAULT_DAYS * 86400LL, to = now;
	const char *key;
	char *actors_s = NULL, err[256];
	json_t *rep = NULL, *rows, *v;

	if (sg_get_str(r->msg, "by", false, &u.by, 16, r->err, sizeof(r->err)) < 0 ||
	    sg_get_int(r->msg, "from", false, 0, INT64_MAX / 1000000000LL, &from, r->err,
	               sizeof(r->err)) < 0 ||
	    sg_get_int(r->msg, "to", false, 0, INT64_MAX / 1000000000LL, &to, r->err,
	               sizeof(r->err)) < 0)
		return sg_reply_error(CKR_ARGUMENTS_BAD, "bad_request", "%s", r->err);
	if (strcmp(u.by, "site") != 0 && strcmp(u.by, "seal") != 0 &&
	    strcmp(u.by, "department") != 0 && strcmp(u.by, "day") != 0)
		return sg_reply_error(CKR_ARGUMENTS_BAD, "bad_request",
		                      "by must be site, seal, department or day");
	if (from >= to)
		return sg_reply_error(CKR_ARGUMENTS_BAD, "bad_request", "from must be before to");
	if (!r->ctx->audit || !r->ctx->store)
		return sg_reply_error(CKR_DEVICE_ERROR, "internal", "no audit log");
	/* Counted from the records the caller may read (scope_of), so the
	 * numbers tell nothing the records would not. */
	scope_of(p, r->who, &sc);
	if (!sc.all) {
		actors_s = json_dumps(sc.actors, JSON_COMPACT);
		if (actors_s == NULL)
			goto nomem;
		f.actors_json = actors_s;
	}
	f.from_ns = from * 1000000000LL;
	f.to_ns = to * 1000000000LL;
	/* Every site of the store for the whole group's view; a SQLite store
	 * holds one site (its own). */
	f.site = sc.all && strcmp(gw_store_backend(r->ctx->store), "sqlite") != 0 ? "*" : NULL;
	u.own_site = gw_store_site(r->ctx->store);
	u.counts = json_object();
	if (u.counts == NULL)
		goto nomem;
	note_read(r, "usage", "ok", NULL);
	if (gw_store_audit_query(r->ctx->store, &f, usage_row, &u, err, sizeof(err)) < 0) {
		gw_log_error("usage: %s", err);
		rep = sg_reply_error(CKR_DEVICE_ERROR, "internal", "the audit log could not be read");
		goto out;
	}
	rows = json_array();
	json_object_foreach(u.counts, key, v)
		json_array_append_new(rows, json_pack("{s:s,s:O}", "key", key, "signatures", v));
	rep = sg_reply_ok();
	json_object_set_new(rep, "by", json_string(u.by));
	json_object_set_new(rep, "from", json_integer((json_int_t)from));
	json_object_set_new(rep, "to", json_integer((json_int_t)to));
	json_object_set_new(rep, "scope", json_string(sc.what));
	json_object_set_new(rep, "rows", rows);
	json_object_set_new(rep, "truncated", json_boolean(u.truncated));
	goto out;
nomem:
	rep = sg_reply_error(CKR_HOST_MEMORY, "internal", "out of memory");
out:
	json_decref(u.counts);
	json_decref(sc.actors);
	free(actors_s);
	return rep;
}
