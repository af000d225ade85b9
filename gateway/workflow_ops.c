/*
 * Requests of the approval workflow: apply, list, show, approve, reject,
 * revoke, explain. Each transition runs the pure state machine
 * (workflow.c) on the application as re-read under the store's lock inside
 * the transaction of its audit record, and stores the new state with it:
 * the store, not this process, decides between two approvers (on one
 * gateway or two). New applications get their id from the store.
 */
#include "workflow_ops.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>

#include "appstore.h"
#include "doc_ops.h"
#include "log.h"
#include "notify/notify.h"
#include "refusals.h"
#include "signpath.h"
#include "workflow.h"

/* A list reply holds at most LIST_MAX applications and looks at most at
 * LIST_SCAN_MAX stored ones (so one request's work is bounded however
 * few of them the caller may see); "next" then says where to go on. */
#define LIST_MAX 500
#define LIST_SCAN_MAX 5000
#define LIST_PAGE 500

static json_t *
bad(struct gw_req *r)
{
	return sg_reply_error(CKR_ARGUMENTS_BAD, "bad_request", "%s", r->err);
}

/* The change an application's record commits: a new application (its id
 * from the store) or a decision made on the stored one (gw_wf_decide_tx). */
struct tx {
	struct gw_application *insert;
	struct gw_wf_decide *decide;
	const char *detail;           /* the record's detail, or NULL */
	/* A decision's detail, set by the change: {"authorized":true} when
	 * it authorized the application (the risk rules' approvals about to
	 * expire start there, docs/risk.md), else NULL. */
	const char *decided_detail;
	/* The notices the change makes go in with it (notify.h): the
	 * configuration's notify: and the policy in force, or NULL: none. */
	const struct gw_notify_conf *notify;
	const struct gw_policy *policy;
	time_t now;
};

static int
apply_tx(struct gw_store *st, void *arg, char *err, size_t errlen)
{
	struct tx *t = arg;

	if (t->insert != NULL) {
		if (gw_appstore_insert_tx(st, t->insert, err, errlen) < 0)
			return -1;
		return t->notify == NULL ? 0 :
		       gw_notify_app_tx(st, t->notify, t->policy, t->insert, 0, 0, t->now, err, errlen);
	}
	if (gw_wf_decide_tx(st, t->decide, err, errlen) < 0)
		return -1;
	t->decided_detail = t->decide->from_state != (int)GW_APP_AUTHORIZED &&
	                    t->decide->app->state == GW_APP_AUTHORIZED ? "{\"authorized\":true}" : NULL;
	return t->notify == NULL ? 0 :
	       gw_notify_app_tx(st, t->notify, t->policy, t->decide->app, t->decide->from_state,
	                        t->decide->from_level, t->now, err, errlen);
}

int
gw_wf_decide_tx(struct gw_store *st, void *arg, char *err, size_t errlen)
{
	struct gw_wf_decide *d = arg;
	struct gw_application *app = d->app;
	enum gw_app_state from;
	unsigned from_level;
	int rc;

	d->refused = false;
	d->found_expired = false;
	d->why[0] = '\0';
	rc = gw_appstore_lock_tx(st, d->id, app);
	if (rc != 1) {
		snprintf(err, errlen, rc == 0 ? "application #%lld is not in the store" :
		         "application #%lld could not be read", (long long)d->id);
		return -1;
	}
	/* Decided on what the store holds now, under its lock: not on the
	 * copy the request read before (another gateway may have acted). */
	from = app->state;
	from_level = app->level;
	d->from_state = (int)from;
	d->from_level = from_level;
	switch (d->d) {
	case GW_WF_APPROVE:
		rc = gw_wf_approve(d->policy, app, d->who, d->comment, d->now, d->why, sizeof(d->why));
		break;
	case GW_WF_REJECT:
		rc = gw_wf_reject(d->policy, app, d->who, d->comment, d->now, d->why, sizeof(d->why));
		break;
	case GW_WF_REVOKE:
		rc = gw_wf_revoke(app, d->who, d->now, d->why, sizeof(d->why));
		break;
	default:
		rc = gw_wf_expire(app, d->now) ? 0 : -1;
		if (rc < 0)
			snprintf(d->why, sizeof(d->why), "application #%lld is not due to expire",
			         (long long)d->id);
		break;
	}
	if (rc < 0) {
		d->refused = true;
		d->found_expired = app->state == GW_APP_EXPIRED && from != GW_APP_EXPIRED;
		snprintf(err, errlen, "%s", d->why);
		return -1;
	}
	return gw_appstore_update_tx(st, app, from, from_level, d->now, err, errlen);
}

/* Records action on app, committing the change t with it. id_from: where
 * the record's application id is read after the change (a new
 * application's, from the store), else app->id. 0 / -1 (err). */
static int
commit(struct gw_ctx *ctx, const struct gw_peer *peer, const char *actor,
       const char *action, const char *reason, const struct gw_application *app,
       const int64_t *id_from, struct tx *t, char *err, size_t errlen)
{
	struct gw_audit_event ev = {
		.action = action, .outcome = "ok", .reason = reason, .actor = actor,
		.uid = peer ? (int64_t)peer->uid : -1, .pid = peer ? (int64_t)peer->pid : -1,
		.exe = peer ? peer->exe : "sealgated", .host = ctx->host, .seal = app->seal,
		.application = app->id, .application_from = id_from,
		.doc_digest = app->has_doc ? app->doc_digest : NULL,
		.doc_digest_len = app->has_doc ? 32 : 0,
		.detail = t->detail,
		.detail_from = t->decide ? &t->decided_detail : NULL,
	};
	uint64_t seq = 0;

	if (ctx->audit == NULL) {
		snprintf(err, errlen, "no audit log");
		return -1;
	}
	return gw_audit_record_with(ctx->audit, &ev, apply_tx, t, &seq, err, errlen);
}

static void
denied(struct gw_req *r, const char *action, int64_t app_id, const char *seal)
{
	struct gw_audit_event ev = {
		.action = action, .outcome = "denied", .reason = r->err,
		.actor = r->who ? r->who->id : NULL, .uid = r->peer->uid, .pid = r->peer->pid,
		.exe = r->peer->exe, .host = r->ctx->host, .seal = seal, .application = app_id,
	};
	uint64_t seq;

	if (gw_reflimit_req(r, action, "denied", r->err, ev.actor))
		return;   /* counted for a summary record (refusals.h) */
	if (r->ctx->audit)
		gw_audit_record(r->ctx->audit, &ev, &seq);
}

static json_t *
app_json(const struct gw_policy *p, const struct gw_application *app, time_t now)
{
	char status[GW_WF_TEXT_MAX], hex[65];
	json_t *o, *apps = json_array();

	gw_wf_describe(p, app, now, status, sizeof(status));
	o = json_pack("{s:I,s:s,s:s,s:s,s:I,s:I,s:I,s:I,s:s,s:i,s:i,s:s,s:s}",
	              "id", (json_int_t)app->id, "applicant", app->applicant, "seal", app->seal,
	              "reason", app->reason, "uses_granted", (json_int_t)app->uses_granted,
	              "uses_left", (json_int_t)app->uses_left, "created", (json_int_t)app->created,
	              "valid_until", (json_int_t)app->valid_until,
	              "state", gw_app_state_name(gw_wf_state_at(app, now)), "level", (int)app->level + 1,
	              "levels", (int)app->n_levels, "status", status,
	              "document_type", app->document_type);
	if (app->business_scope[0])
		json_object_set_new(o, "business_scope", json_string(app->business_scope));
	if (app->has_amount)
		json_object_set_new(o, "amount", json_integer(app->amount));
	if (app->has_doc) {
		sodium_bin2hex(hex, sizeof(hex), app->doc_digest, 32);
		json_object_set_new(o, "doc_sha256", json_string(hex));
	}
	for (unsigned i = 0; i < app->n_approvals; i++) {
		const struct gw_approval *a = &app->approvals[i];
		json_array_append_new(apps, json_pack("{s:i,s:s,s:s,s:s,s:I}", "level", (int)a->level + 1,
		                      "by", a->approver, "decision", a->approve ? "approved" : "rejected",
		                      "comment", a->comment, "at", (json_int_t)a->at));
	}
	json_object_set_new(o, "approvals", apps);
	return o;
}

static bool
sees_everything(const struct gw_person *who)
{
	return gw_person_has_role(who, "auditor") || gw_person_has_role(who, "seal_admin");
}

/* Who may look at an application: its applicant, anyone who acted on it or
 * may act on it now, the heads of the applicant's department and above,
 * auditors and seal admins. */
static bool
may_see(const struct gw_policy *p, const struct gw_person *who, const struct gw_application *app)
{
	const struct gw_person *applicant;

	if (strcmp(who->id, app->applicant) == 0 || sees_everything(who))
		return true;
	for (unsigned i = 0; i < app->n_approvals; i++)
		if (strcmp(app->approvals[i].approver, who->id) == 0)
			return true;
	if (gw_wf_waiting_for(p, app, who))
		return true;
	applicant = gw_policy_person(p, app->applicant);
	for (size_t i = 0; applicant && i < p->n_departments; i++) {
		const struct gw_department *d = &p->departments[i];
		if (d->head && strcmp(d->head, who->id) == 0 &&
		    gw_policy_dept_within(p, applicant->department, d->id))
			return true;
	}
	return false;
}

static int
get_use_case(struct gw_req *r, struct gw_use_case *uc)
{
	int64_t amount = -1;

	memset(uc, 0, sizeof(*uc));
	if (sg_get_str(r->msg, "document_type", false, &uc->document_type, SG_NAME_MAX, r->err, sizeof(r->err)) < 0 ||
	    sg_get_str(r->msg, "business_scope", false, &uc->business_scope, SG_NAME_MAX, r->err, sizeof(r->err)) < 0 ||
	    sg_get_int(r->msg, "amount", false, 0, INT64_MAX / 2, &amount, r->err, sizeof(r->err)) < 0)
		return -1;
	if (amount >= 0) {
		uc->has_amount = true;
		uc->amount = amount;
	}
	return 0;
}

json_t *
gw_op_apply(struct gw_req *r)
{
	const struct gw_policy *p = r->snap->policy;
	const char *seal_id = NULL, *reason = NULL;
	int64_t uses = 1, valid_for = 0;
	uint8_t *doc = NULL;
	size_t doclen = 0;
	struct gw_use_case uc;
	const struct gw_seal *seal;
	struct gw_application *app = calloc(1, sizeof(*app));
	struct tx t = { .insert = app };
	char err[256], msg[GW_WF_TEXT_MAX];
	time_t now = time(NULL);
	json_t *rep = NULL;
	char *detail = NULL;

	if (app == NULL)
		return sg_reply_error(CKR_HOST_MEMORY, "internal", "out of memory");
	if (sg_get_str(r->msg, "seal", true, &seal_id, SG_NAME_MAX, r->err, sizeof(r->err)) < 0 ||
	    sg_get_str(r->msg, "reason", true, &reason, GW_WF_TEXT_MAX, r->err, sizeof(r->err)) < 0 ||
	    sg_get_int(r->msg, "uses", false, 1, GW_WF_MAX_USES, &uses, r->err, sizeof(r->err)) < 0 ||
	    sg_get_int(r->msg, "valid_for", false, 1, GW_WF_MAX_VALIDITY, &valid_for, r->err, sizeof(r->err)) < 0 ||
	    sg_get_bytes(r->msg, "doc_sha256", false, &doc, &doclen, 32, r->err, sizeof(r->err)) < 0 ||
	    get_use_case(r, &uc) < 0) {
		rep = bad(r);
		goto out;
	}
	if (doc != NULL && doclen != 32) {
		snprintf(r->err, sizeof(r->err), "doc_sha256 must be 32 bytes");
		rep = bad(r);
		goto out;
	}
	seal = gw_policy_seal(p, seal_id);
	if (seal == NULL || !gw_policy_may_use(p, r->who, seal)) {
		snprintf(r->err, sizeof(r->err), "%s may not apply for a seal named \"%s\"", r->who->id, seal_id);
		denied(r, "application_create", 0, seal_id);
		rep = sg_reply_error(CKR_KEY_HANDLE_INVALID, "no_seal", "%s", r->err);
		goto out;
	}
	if (gw_wf_create(p, seal, r->who, &uc, reason, doc, (uint32_t)uses, valid_for, now, app,
	                 r->err, sizeof(r->err)) < 0) {
		denied(r, "application_create", 0, seal->id);
		rep = sg_reply_error(CKR_FUNCTION_REJECTED, "denied", "%s", r->err);
		goto out;
	}
	/* The case goes into the record: the risk rules read amounts and
	 * scopes from the log alone (docs/risk.md, threshold splitting). */
	{
		json_t *d = json_object();
		if (d && app->document_type[0])
			json_object_set_new(d, "document_type", json_string(app->document_type));
		if (d && app->business_scope[0])
			json_object_set_new(d, "business_scope", json_string(app->business_scope));
		if (d && app->has_amount)
			json_object_set_new(d, "amount", json_integer(app->amount));
		/* and what approvals about to expire unused are judged by */
		if (d)
			json_object_set_new(d, "uses", json_integer(app->uses_granted));
		if (d)
			json_object_set_new(d, "valid_until", json_integer(app->valid_until));
		if (d && app->state == GW_APP_AUTHORIZED)
			json_object_set_new(d, "authorized", json_true());
		detail = d ? json_dumps(d, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
		json_decref(d);
		if (detail == NULL) {
			rep = sg_reply_error(CKR_HOST_MEMORY, "internal", "out of memory");
			goto out;
		}
		t.detail = detail;
	}
	t.notify = r->ctx->cfg ? r->ctx->cfg->notify : NULL;
	t.policy = p;
	t.now = now;
	/* The id is the store's, given inside the record's transaction. */
	if (commit(r->ctx, r->peer, r->who->id, "application_create", reason, app, &app->id, &t,
	           err, sizeof(err)) < 0) {
		rep = sg_reply_error(CKR_DEVICE_ERROR, "internal", "the application could not be stored: %s", err);
		goto out;
	}
	gw_notify_kick(r->ctx);
	gw_wf_describe(p, app, now, msg, sizeof(msg));
	gw_log_info("application #%lld by %s for %s: %s", (long long)app->id, app->applicant,
	            app->seal, msg);
	rep = sg_reply_ok();
	json_object_set_new(rep, "application", app_json(p, app, now));
out:
	free(detail);
	free(doc);
	free(app);
	return rep;
}

static int
get_id(struct gw_req *r, int64_t *id)
{
	return sg_get_int(r->msg, "id", true, 1, INT64_MAX, id, r->err, sizeof(r->err));
}

/* Records what an expiry found on the way (by a decision refused for it,
 * or by the sweep) and stores it, decided in the store like any other. */
static void
expire(struct gw_ctx *ctx, int64_t id, const struct gw_application *seen,
       struct gw_application *buf, time_t now)
{
	struct gw_wf_decide dx = { .d = GW_WF_EXPIRE, .now = now, .id = id, .app = buf };
	struct tx t = { .decide = &dx };
	char err[256];

	if (commit(ctx, NULL, NULL, "application_expire", "validity ended", seen, NULL, &t,
	           err, sizeof(err)) < 0 && !dx.refused)
		gw_log_error("application #%lld could not be expired: %s", (long long)id, err);
}

static json_t *
decide(struct gw_req *r, enum gw_wf_decision d)
{
	static const char *const actions[] = { "application_approve", "application_reject",
	                                       "application_revoke" };
	const struct gw_policy *p = r->snap->policy;
	struct gw_application *app = calloc(1, sizeof(*app));
	struct gw_application *fresh = calloc(1, sizeof(*fresh));
	struct gw_wf_decide dx = { .policy = p, .who = r->who, .d = d, .app = fresh };
	struct tx t = { .decide = &dx };
	const char *comment = NULL;
	int64_t id = 0;
	time_t now = time(NULL);
	char err[256], msg[GW_WF_TEXT_MAX];
	json_t *rep = NULL;

	if (app == NULL || fresh == NULL) {
		rep = sg_reply_error(CKR_HOST_MEMORY, "internal", "out of memory");
		goto out;
	}
	if (get_id(r, &id) < 0 ||
	    sg_get_str(r->msg, "comment", false, &comment, GW_WF_TEXT_MAX, r->err, sizeof(r->err)) < 0) {
		rep = bad(r);
		goto out;
	}
	/* This read only says whether the caller may see the application
	 * and names its seal for the record; the decision itself is made on
	 * the copy re-read under the store's lock (gw_wf_decide_tx). */
	if (gw_appstore_get(r->ctx->store, id, app) != 1 || !may_see(p, r->who, app)) {
		snprintf(r->err, sizeof(r->err), "no application #%lld that %s may see", (long long)id, r->who->id);
		rep = sg_reply_error(CKR_ARGUMENTS_BAD, "no_application", "%s", r->err);
		goto out;
	}
	dx.comment = comment;
	dx.now = now;
	dx.id = id;
	t.notify = r->ctx->cfg ? r->ctx->cfg->notify : NULL;
	t.policy = p;
	t.now = now;
	if (commit(r->ctx, r->peer, r->who->id, actions[d], comment, app, NULL, &t,
	           err, sizeof(err)) < 0) {
		if (!dx.refused) {
			rep = sg_reply_error(CKR_DEVICE_ERROR, "internal", "not stored: %s", err);
			goto out;
		}
		/* Found expired on the way: record that first. */
		if (dx.found_expired)
			expire(r->ctx, id, app, fresh, now);
		snprintf(r->err, sizeof(r->err), "%.*s", (int)sizeof(r->err) - 1, dx.why);
		denied(r, actions[d], id, app->seal);
		rep = sg_reply_error(CKR_FUNCTION_REJECTED, "denied", "%s", r->err);
		goto out;
	}
	gw_notify_kick(r->ctx);
	gw_wf_describe(p, fresh, now, msg, sizeof(msg));
	gw_log_info("%s #%lld by %s: %s", actions[d], (long long)id, r->who->id, msg);
	rep = sg_reply_ok();
	json_object_set_new(rep, "application", app_json(p, fresh, now));
out:
	free(app);
	free(fresh);
	return rep;
}

json_t *gw_op_approve(struct gw_req *r) { return decide(r, GW_WF_APPROVE); }
json_t *gw_op_reject(struct gw_req *r) { return decide(r, GW_WF_REJECT); }
json_t *gw_op_revoke(struct gw_req *r) { return decide(r, GW_WF_REVOKE); }

json_t *
gw_op_show(struct gw_req *r)
{
	struct gw_application *app = calloc(1, sizeof(*app));
	int64_t id = 0;
	json_t *rep;

	if (app == NULL)
		return sg_reply_error(CKR_HOST_MEMORY, "internal", "out of memory");
	if (get_id(r, &id) < 0) {
		free(app);
		return bad(r);
	}
	if (gw_appstore_get(r->ctx->store, id, app) != 1 || !may_see(r->snap->policy, r->who, app)) {
		free(app);
		return sg_reply_error(CKR_ARGUMENTS_BAD, "no_application",
		                      "no application #%lld that %s may see", (long long)id, r->who->id);
	}
	rep = sg_reply_ok();
	json_object_set_new(rep, "application", app_json(r->snap->policy, app, time(NULL)));
	/* The document it is bound to, and whether the store has its bytes
	 * (docs/stamp.md). */
	if (app->has_doc) {
		json_t *d = gw_doc_json(r->ctx->store, app->doc_digest);
		if (d == NULL) {
			free(app);
			json_decref(rep);
			return sg_reply_error(CKR_DEVICE_ERROR, "internal", "store error");
		}
		json_object_set_new(json_object_get(rep, "application"), "document", d);
	}
	free(app);
	return rep;
}

json_t *
gw_op_list(struct gw_req *r)
{
	const struct gw_policy *p = r->snap->policy;
	const char *which = "mine";
	struct gw_app_filter f = { 0 };
	int64_t *ids = calloc(LIST_PAGE, sizeof(*ids)), from = 0, last = 0;
	struct gw_application *app = calloc(1, sizeof(*app));
	size_t n = 0, scanned = 0, shown = 0;
	time_t now = time(NULL);
	json_t *rep = NULL, *arr = NULL;
	bool all, waiting, more = false;

	if (ids == NULL || app == NULL) {
		rep = sg_reply_error(CKR_HOST_MEMORY, "internal", "out of memory");
		goto out;
	}
	if (sg_get_str(r->msg, "which", false, &which, 16, r->err, sizeof(r->err)) < 0 ||
	    sg_get_int(r->msg, "before", false, 1, INT64_MAX, &from, r->err, sizeof(r->err)) < 0) {
		rep = bad(r);
		goto out;
	}
	all = strcmp(which, "all") == 0;
	waiting = strcmp(which, "waiting") == 0;
	if (!all && !waiting && strcmp(which, "mine") != 0) {
		snprintf(r->err, sizeof(r->err), "which must be mine, waiting or all");
		rep = bad(r);
		goto out;
	}
	/* What SQL can filter it filters; who may see or approve what is
	 * policy, decided here — before anything is cut, page by page, so a
	 * match older than many others is still found. */
	f.applicant = all || waiting ? NULL : r->who->id;
	f.states = waiting ? 1u << GW_APP_PENDING : 0;
	arr = json_array();
	do {
		if (gw_appstore_page(r->ctx->store, &f, false, from, ids, LIST_PAGE, &n) < 0) {
			rep = sg_reply_error(CKR_DEVICE_ERROR, "internal", "store error");
			goto out;
		}
		for (size_t i = 0; i < n; i++) {
			if (shown == LIST_MAX || scanned == LIST_SCAN_MAX) {
				more = true;
				break;
			}
			from = last = ids[i];
			scanned++;
			if (gw_appstore_get(r->ctx->store, ids[i], app) != 1)
				continue;
			if (waiting && !gw_wf_waiting_for(p, app, r->who))
				continue;
			if (all && !may_see(p, r->who, app))
				continue;
			json_array_append_new(arr, app_json(p, app, now));
			shown++;
		}
	} while (!more && n == LIST_PAGE);
	rep = sg_reply_ok();
	json_object_set_new(rep, "applications", arr);
	arr = NULL;
	/* The next page starts below the last application looked at. */
	if (more)
		json_object_set_new(rep, "next", json_integer(last));
out:
	json_decref(arr);
	free(ids);
	free(app);
	return rep;
}

json_t *
gw_op_explain(struct gw_req *r)
{
	const struct gw_policy *p = r->snap->policy;
	const char *seal_id = NULL, *user = NULL;
	const struct gw_seal *seal = NULL;
	const struct gw_person *who = r->who;
	struct gw_use_case uc;
	bool has_case;
	char *text;
	json_t *rep;

	if (sg_get_str(r->msg, "seal", false, &seal_id, SG_NAME_MAX, r->err, sizeof(r->err)) < 0 ||
	    sg_get_str(r->msg, "user", false, &user, SG_NAME_MAX, r->err, sizeof(r->err)) < 0 ||
	    get_use_case(r, &uc) < 0)
		return bad(r);
	if (seal_id && (seal = gw_policy_seal(p, seal_id)) == NULL)
		return sg_reply_error(CKR_ARGUMENTS_BAD, "no_seal", "no seal \"%s\"", seal_id);
	if (user && (who = gw_policy_person(p, user)) == NULL)
		return sg_reply_error(CKR_ARGUMENTS_BAD, "bad_request", "no person \"%s\"", user);
	has_case = uc.document_type || uc.business_scope || uc.has_amount;
	text = gw_policy_explain(p, seal, who, has_case ? &uc : NULL, time(NULL));
	if (text == NULL)
		return sg_reply_error(CKR_HOST_MEMORY, "internal", "out of memory");
	rep = sg_reply_ok();
	json_object_set_new(rep, "text", json_string(text));
	free(text);
	return rep;
}

void
gw_workflow_sweep(struct gw_ctx *ctx)
{
	int64_t ids[64];
	size_t n = 0;
	time_t now = time(NULL);
	struct gw_application *app, *buf;

	if (ctx->store == NULL || gw_appstore_due_to_expire(ctx->store, now, ids, 64, &n) < 0 || n == 0)
		return;
	app = calloc(1, sizeof(*app));
	buf = calloc(1, sizeof(*buf));
	/* Each expiry is decided in the store (another gateway's sweep or a
	 * decision may have got there first: then it is refused, quietly). */
	for (size_t i = 0; app && buf && i < n; i++) {
		if (gw_appstore_get(ctx->store, ids[i], app) != 1 || gw_wf_state_at(app, now) != GW_APP_EXPIRED ||
		    app->state == GW_APP_EXPIRED)
			continue;
		expire(ctx, ids[i], app, buf, now);
	}
	free(app);
	free(buf);
}
