/*
 * The outbox's two ends (notify.h): notices put in the transaction of the
 * change that causes them, and the sender thread that claims, sends,
 * settles and records them. What a notice says and how it travels is
 * send.c's.
 */
#include "notify.h"
#include "send.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "appstore.h"
#include "audit.h"
#include "log.h"
#include "outbox.h"
#include "policy.h"
#include "protocol.h"
#include "server.h"
#include "workflow.h"

struct gw_notify {
	struct gw_ctx *ctx;
	const struct gw_notify_conf *nc;
	struct gw_notify_secrets secrets;
	pthread_t thread;
	bool running;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool kicked;
	volatile int stop;            /* read by the transfers' progress callback too */
};

static bool
event_known(const char *e)
{
	return strcmp(e, GW_NOTIFY_APP_WAITING) == 0 || strcmp(e, GW_NOTIFY_APP_AUTHORIZED) == 0 ||
	       strcmp(e, GW_NOTIFY_APP_REJECTED) == 0 || strcmp(e, GW_NOTIFY_ALERT) == 0;
}

static int
put(struct gw_store *st, const char *event, const char *channel, const char *recipient,
    const char *address, int64_t application, const char *detail, const char *tag,
    time_t now, char *err, size_t errlen)
{
	struct gw_outbox_notice n = {
		.event = (char *)event, .channel = (char *)channel, .recipient = (char *)recipient,
		.address = (char *)address, .application = application, .detail = (char *)detail,
	};
	char *key = NULL;
	int rc;

	if (tag != NULL && asprintf(&key, "%s:%s:%s", tag, channel, recipient) < 0) {
		sg_seterr(err, errlen, "notify: out of memory");
		return -1;
	}
	rc = gw_outbox_put_tx(st, &n, key, (int64_t)now, err, errlen);
	free(key);
	return rc < 0 ? -1 : 0;
}

/* The webhooks that hear of a notice for someone of department dept. */
static bool
webhook_for(const struct gw_policy *p, const struct gw_notify_webhook *w, const char *dept)
{
	return w->department == NULL || (dept != NULL && gw_policy_dept_within(p, dept, w->department));
}

int
gw_notify_enqueue_tx(struct gw_store *st, const struct gw_notify_conf *nc,
                     const struct gw_policy *p, const char *event,
                     const char *person_or_dept, int64_t application, json_t *detail,
                     const char *tag, time_t now, char *err, size_t errlen)
{
	const struct gw_person *who;
	const struct gw_department *dept = NULL;
	const char *dept_id;
	char *text = NULL, channel[GW_OUTBOX_CHANNEL_MAX + 1];
	int rv = -1;

	if (nc == NULL)
		return 0;
	if (event == NULL || !event_known(event) || person_or_dept == NULL ||
	    !json_is_object(detail)) {
		sg_seterr(err, errlen, "notify: an event of %s, %s, %s or %s, a recipient and a "
		          "detail object", GW_NOTIFY_APP_WAITING, GW_NOTIFY_APP_AUTHORIZED,
		          GW_NOTIFY_APP_REJECTED, GW_NOTIFY_ALERT);
		return -1;
	}
	who = gw_policy_person(p, person_or_dept);
	if (who == NULL && (dept = gw_policy_department(p, person_or_dept)) == NULL) {
		/* (nobody to tell is not a reason to refuse the change) */
		gw_log_warn("notify: %s: no person or department \"%s\" in the policy: not told",
		            event, person_or_dept);
		return 0;
	}
	dept_id = who ? who->department : dept->id;
	if (who == NULL && dept->head != NULL)
		who = gw_policy_person(p, dept->head);
	text = json_dumps(detail, JSON_COMPACT | JSON_SORT_KEYS);
	if (text == NULL) {
		sg_seterr(err, errlen, "notify: out of memory");
		goto out;
	}
	if (strlen(text) > GW_OUTBOX_DETAIL_MAX) {
		sg_seterr(err, errlen, "notify: the notice's detail is over %u bytes",
		          GW_OUTBOX_DETAIL_MAX);
		goto out;
	}
	/* An email to the person even without an address: the sender
	 * records that it had none (notice_failed), which the seal admin
	 * sees, instead of nothing at all. */
	if (nc->smtp_url != NULL && who != NULL &&
	    put(st, event, "email", who->id, who->email, application, text, tag, now, err,
	        errlen) < 0)
		goto out;
	for (size_t i = 0; i < nc->n_webhooks; i++) {
		const struct gw_notify_webhook *w = &nc->webhooks[i];

		if (!webhook_for(p, w, dept_id))
			continue;
		snprintf(channel, sizeof(channel), "webhook:%s", w->name);
		/* One message per department for a level's approvers: the
		 * recipient is the department the webhook is for. */
		if (put(st, event, channel, w->department ? w->department : person_or_dept, NULL,
		        application, text, tag, now, err, errlen) < 0)
			goto out;
	}
	rv = 0;
out:
	free(text);
	return rv;
}

int
gw_notify_enqueue(struct gw_ctx *ctx, const char *event, const char *person_or_dept,
                  json_t *detail, char *err, size_t errlen)
{
	const struct gw_notify_conf *nc = ctx->cfg ? ctx->cfg->notify : NULL;
	struct gw_snapshot *snap;
	int rv = -1;

	if (nc == NULL || ctx->store == NULL)
		return 0;
	snap = gw_snapshot_get(ctx);
	if (snap == NULL) {
		sg_seterr(err, errlen, "notify: no policy in force");
		return -1;
	}
	if (gw_store_tx_begin(ctx->store, err, errlen) < 0)
		goto out;
	if (gw_notify_enqueue_tx(ctx->store, nc, snap->policy, event, person_or_dept, 0, detail,
	                         NULL, time(NULL), err, errlen) < 0) {
		gw_store_tx_rollback(ctx->store);
		goto out;
	}
	if (gw_store_tx_commit(ctx->store, err, errlen) < 0)
		goto out;
	rv = 0;
out:
	gw_snapshot_put(&snap);
	if (rv == 0)
		gw_notify_kick(ctx);
	return rv;
}

/* What every notice of an application says (send.c words it). */
static json_t *
app_detail(const struct gw_notify_conf *nc, const struct gw_policy *p,
           const struct gw_application *app)
{
	const struct gw_person *applicant = gw_policy_person(p, app->applicant);
	const struct gw_seal *seal = gw_policy_seal(p, app->seal);
	char link[GW_NOTIFY_URL_MAX + 64];
	json_t *d = json_object();

	if (d == NULL)
		return NULL;
	snprintf(link, sizeof(link), "%s/#/applications/%lld", nc->web_url, (long long)app->id);
	json_object_set_new(d, "application", json_integer(app->id));
	json_object_set_new(d, "link", json_string(link));
	json_object_set_new(d, "seal", json_string(app->seal));
	json_object_set_new(d, "seal_name", json_string(seal && seal->name ? seal->name : app->seal));
	json_object_set_new(d, "applicant", json_string(app->applicant));
	json_object_set_new(d, "applicant_name", json_string(applicant && applicant->name ?
	                    applicant->name : app->applicant));
	if (applicant != NULL)
		json_object_set_new(d, "department", json_string(applicant->department));
	json_object_set_new(d, "reason", json_string(app->reason));
	if (app->document_type[0])
		json_object_set_new(d, "document_type", json_string(app->document_type));
	if (app->business_scope[0])
		json_object_set_new(d, "business_scope", json_string(app->business_scope));
	if (app->has_amount)
		json_object_set_new(d, "amount", json_integer(app->amount));
	json_object_set_new(d, "level", json_integer((json_int_t)app->level + 1));
	json_object_set_new(d, "levels", json_integer((json_int_t)app->n_levels));
	json_object_set_new(d, "state", json_string(gw_app_state_name(app->state)));
	json_object_set_new(d, "uses", json_integer((json_int_t)app->uses_granted));
	json_object_set_new(d, "valid_until", json_integer(app->valid_until));
	if (app->n_approvals > 0) {
		const struct gw_approval *a = &app->approvals[app->n_approvals - 1];
		json_object_set_new(d, "by", json_string(a->approver));
		if (a->comment[0])
			json_object_set_new(d, "comment", json_string(a->comment));
	}
	return d;
}

int
gw_notify_app_tx(struct gw_store *st, const struct gw_notify_conf *nc,
                 const struct gw_policy *p, const struct gw_application *app,
                 int from_state, unsigned from_level, time_t now, char *err, size_t errlen)
{
	char tag[96];
	json_t *d = NULL, *names = NULL;
	const struct gw_person *to[GW_NOTIFY_APPROVERS_MAX];
	size_t n = 0, more = 0;
	int rv = -1;

	if (nc == NULL || ((int)app->state == from_state && app->level == from_level))
		return 0;
	if ((d = app_detail(nc, p, app)) == NULL)
		goto oom;
	if (app->state == GW_APP_PENDING) {
		/* Waiting for a level (the first, or the next): its approvers
		 * as the policy in force says now. */
		for (size_t i = 0; i < p->n_people; i++) {
			if (!gw_wf_waiting_for(p, app, &p->people[i]))
				continue;
			if (n == GW_NOTIFY_APPROVERS_MAX) {
				more++;
				continue;
			}
			to[n++] = &p->people[i];
		}
		if (more > 0)
			gw_log_warn("notify: application #%lld: %zu more approvers of level %u are not "
			            "told (at most %d)", (long long)app->id, more, app->level + 1,
			            GW_NOTIFY_APPROVERS_MAX);
		if ((names = json_array()) == NULL)
			goto oom;
		for (size_t i = 0; i < n; i++)
			json_array_append_new(names, json_string(to[i]->name ? to[i]->name : to[i]->id));
		json_object_set_new(d, "approvers", names);
		snprintf(tag, sizeof(tag), "%s:%lld:%u", GW_NOTIFY_APP_WAITING, (long long)app->id,
		         app->level + 1);
		for (size_t i = 0; i < n; i++)
			if (gw_notify_enqueue_tx(st, nc, p, GW_NOTIFY_APP_WAITING, to[i]->id, app->id, d,
			                         tag, now, err, errlen) < 0)
				goto out;
	} else if (app->state == GW_APP_AUTHORIZED || app->state == GW_APP_REJECTED) {
		const char *ev = app->state == GW_APP_AUTHORIZED ? GW_NOTIFY_APP_AUTHORIZED :
		                 GW_NOTIFY_APP_REJECTED;
		snprintf(tag, sizeof(tag), "%s:%lld", ev, (long long)app->id);
		if (gw_notify_enqueue_tx(st, nc, p, ev, app->applicant, app->id, d, tag, now, err,
		                         errlen) < 0)
			goto out;
	}
	rv = 0;
	goto out;
oom:
	sg_seterr(err, errlen, "notify: out of memory");
out:
	json_decref(d);
	return rv;
}

/* ---- the sender ---- */

struct settle {
	const struct gw_outbox_notice *n;
	const char *claimer;
	enum gw_outbox_outcome outcome;
	int64_t next_at, now;
	const char *error;
};

static int
settle_tx(struct gw_store *st, void *arg, char *err, size_t errlen)
{
	struct settle *s = arg;
	int rc = gw_outbox_settle_tx(st, s->n->id, s->claimer, s->outcome, s->next_at, s->error,
	                             s->now, err, errlen);

	/* 0: the lease ran out meanwhile and another sender took it; what
	 * this one did is still recorded. */
	return rc < 0 ? -1 : 0;
}

static void
settle(struct gw_notify *nf, const struct gw_outbox_notice *n, enum gw_outbox_outcome outcome,
       int64_t next_at, const char *error, const char *format)
{
	struct gw_ctx *ctx = nf->ctx;
	struct settle s = { .n = n, .claimer = ctx->instance, .outcome = outcome,
	                    .next_at = next_at, .now = (int64_t)time(NULL), .error = error };
	json_t *d = json_pack("{s:I,s:s,s:s,s:s,s:i}", "notice", (json_int_t)n->id, "event", n->event,
	                      "channel", n->channel, "recipient", n->recipient, "try", (int)n->tries);
	char *detail = NULL, err[256];
	uint64_t seq;

	if (d != NULL && n->address != NULL && strcmp(n->channel, "email") == 0)
		json_object_set_new(d, "to", json_string(n->address));
	if (d != NULL && format != NULL)
		json_object_set_new(d, "format", json_string(format));
	if (d != NULL && outcome == GW_OUTBOX_RETRY)
		json_object_set_new(d, "retry_at", json_integer(next_at));
	if (d != NULL && outcome == GW_OUTBOX_FAILED)
		json_object_set_new(d, "final", json_true());
	detail = d ? json_dumps(d, JSON_COMPACT) : NULL;
	json_decref(d);
	{
		struct gw_audit_event ev = {
			.action = outcome == GW_OUTBOX_SENT ? "notice_sent" : "notice_failed",
			.outcome = outcome == GW_OUTBOX_SENT ? "ok" : "error", .reason = error,
			.uid = -1, .pid = -1, .exe = "sealgated", .host = ctx->host,
			.application = n->application, .detail = detail,
		};
		if (ctx->audit == NULL ||
		    gw_audit_record_with(ctx->audit, &ev, settle_tx, &s, &seq, err, sizeof(err)) < 0)
			/* Not settled: the lease runs out and it is tried again. */
			gw_log_error("notify: notice %lld (%s to %s) not settled: %s", (long long)n->id,
			             n->channel, n->recipient, ctx->audit ? err : "no audit log");
	}
	free(detail);
}

static void
deliver(struct gw_notify *nf, const struct gw_outbox_notice *n)
{
	const struct gw_notify_conf *nc = nf->nc;
	struct gw_send_result r = { 0 };
	int64_t now, wait;
	unsigned shift;

	gw_send_notice(nc, &nf->secrets, nf->ctx->instance, n, &nf->stop, &r);
	if (r.ok) {
		settle(nf, n, GW_OUTBOX_SENT, 0, NULL, r.format);
		return;
	}
	if (nf->stop && r.retry) {
		/* Cut by the stop: no try counted against it, and nothing to
		 * record; it stays claimed until its lease runs out. */
		return;
	}
	if (!r.retry || n->tries >= nc->max_tries) {
		settle(nf, n, GW_OUTBOX_FAILED, 0, r.error, r.format);
		return;
	}
	/* retry_initial, doubled for each try made before, at most retry_max */
	shift = n->tries > 1 ? n->tries - 1 : 0;
	wait = shift >= 20 ? (int64_t)nc->retry_max : (int64_t)nc->retry_initial << shift;
	if (wait > (int64_t)nc->retry_max)
		wait = nc->retry_max;
	now = (int64_t)time(NULL);
	settle(nf, n, GW_OUTBOX_RETRY, now + wait, r.error, r.format);
}

static void *
sender_main(void *arg)
{
	struct gw_notify *nf = arg;
	struct gw_outbox_notice got[8];
	char err[256];

	pthread_setname_np(pthread_self(), "sg-notify");
	while (!nf->stop) {
		size_t n = 0;

		if (gw_outbox_claim(nf->ctx->store, nf->ctx->instance, (int64_t)time(NULL),
		                    nf->nc->lease, got, 8, &n, err, sizeof(err)) < 0)
			gw_log_warn("notify: %s", err);
		for (size_t i = 0; i < n; i++) {
			if (!nf->stop)
				deliver(nf, &got[i]);
			gw_outbox_notice_clear(&got[i]);
		}
		if (n == 8)
			continue;   /* (more may be due) */
		pthread_mutex_lock(&nf->lock);
		if (!nf->kicked && !nf->stop) {
			struct timespec ts;
			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_sec += nf->nc->poll;
			pthread_cond_timedwait(&nf->cond, &nf->lock, &ts);
		}
		nf->kicked = false;
		pthread_mutex_unlock(&nf->lock);
	}
	return NULL;
}

int
gw_notify_start(struct gw_ctx *ctx, char *err, size_t errlen)
{
	const struct gw_notify_conf *nc = ctx->cfg ? ctx->cfg->notify : NULL;
	struct gw_notify *nf;

	if (nc == NULL || ctx->notify != NULL)
		return 0;
	if (gw_outbox_init(ctx->store, err, errlen) < 0)
		return -1;
	if ((nf = calloc(1, sizeof(*nf))) == NULL) {
		sg_seterr(err, errlen, "notify: out of memory");
		return -1;
	}
	nf->ctx = ctx;
	nf->nc = nc;
	pthread_mutex_init(&nf->lock, NULL);
	pthread_cond_init(&nf->cond, NULL);
	if (gw_send_init(nc, &nf->secrets, err, errlen) < 0)
		goto fail;
	if (pthread_create(&nf->thread, NULL, sender_main, nf) != 0) {
		sg_seterr(err, errlen, "notify: cannot start the sender: %s", strerror(errno));
		goto fail;
	}
	nf->running = true;
	ctx->notify = nf;
	gw_log_info("notify: sending%s%s, %zu webhooks; links to %s", nc->smtp_url ? " email via " : "",
	            nc->smtp_url ? "the SMTP relay" : "", nc->n_webhooks, nc->web_url);
	return 0;
fail:
	gw_send_done(&nf->secrets);
	pthread_cond_destroy(&nf->cond);
	pthread_mutex_destroy(&nf->lock);
	free(nf);
	return -1;
}

void
gw_notify_kick(struct gw_ctx *ctx)
{
	struct gw_notify *nf = ctx ? ctx->notify : NULL;

	if (nf == NULL)
		return;
	pthread_mutex_lock(&nf->lock);
	nf->kicked = true;
	pthread_cond_signal(&nf->cond);
	pthread_mutex_unlock(&nf->lock);
}

void
gw_notify_stop(struct gw_ctx *ctx)
{
	struct gw_notify *nf = ctx ? ctx->notify : NULL;

	if (nf == NULL)
		return;
	pthread_mutex_lock(&nf->lock);
	nf->stop = 1;
	pthread_cond_signal(&nf->cond);
	pthread_mutex_unlock(&nf->lock);
	if (nf->running)
		pthread_join(nf->thread, NULL);
	gw_send_done(&nf->secrets);
	pthread_cond_destroy(&nf->cond);
	pthread_mutex_destroy(&nf->lock);
	ctx->notify = NULL;
	free(nf);
}
