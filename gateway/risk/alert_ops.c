/*
 * alerts, alert_ack, alert_close (alert_ops.h): reads of the alerts
 * repository and the auditor's changes to an alert's state, each made
 * inside its audit record's transaction so that neither is ever without
 * the other.
 */
#include "alert_ops.h"
#include "alertstore.h"
#include "audit.h"
#include "log.h"
#include "online.h"
#include "policy.h"
#include "protocol.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define ALERTS_LIMIT_DEFAULT 1000
#define ALERTS_LIMIT_MAX     10000
#define COMMENT_MAX          1000

static bool
may_read(const struct gw_person *who)
{
	return who != NULL &&
	       (gw_person_has_role(who, "auditor") || gw_person_has_role(who, "seal_admin"));
}

static json_t *
refuse(struct gw_req *r, const char *action, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* A refusal, recorded like every other (dispatch.h). */
static json_t *
refuse(struct gw_req *r, const char *action, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(r->err, sizeof(r->err), fmt, ap);
	va_end(ap);
	if (gw_req_record(r, action, "denied", r->err, NULL, NULL, 0, NULL, 0, NULL) < 0)
		return sg_reply_error(CKR_DEVICE_ERROR, "internal",
		                      "the audit record could not be written");
	return sg_reply_error(CKR_FUNCTION_REJECTED, "denied", "%s", r->err);
}

static json_t *
ints(const char *text)
{
	json_t *v = text ? json_loads(text, 0, NULL) : NULL;

	if (!json_is_array(v)) {
		json_decref(v);
		return json_array();
	}
	return v;
}

static json_t *
str_or_null(const char *s)
{
	return s ? json_string(s) : json_null();
}

static int
collect(void *arg, const struct gw_alert_row *a)
{
	json_t *arr = arg, *o = json_object();
	char when[32];
	time_t t = (time_t)(a->ts_ns / 1000000000LL);
	struct tm tm;

	if (o == NULL)
		return -1;
	gmtime_r(&t, &tm);
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
	json_object_set_new(o, "id", json_integer(a->id));
	json_object_set_new(o, "rule", json_string(a->rule));
	json_object_set_new(o, "severity", json_string(a->severity));
	json_object_set_new(o, "subject", json_string(a->subject));
	json_object_set_new(o, "why", json_string(a->why));
	json_object_set_new(o, "site", str_or_null(a->site));
	json_object_set_new(o, "ts_ns", json_integer(a->ts_ns));
	json_object_set_new(o, "time", json_string(when));
	json_object_set_new(o, "seqs", ints(a->seqs));
	json_object_set_new(o, "applications", ints(a->apps));
	json_object_set_new(o, "raised", json_integer(a->raised));
	json_object_set_new(o, "state", json_string(a->state));
	json_object_set_new(o, "state_by", str_or_null(a->state_by));
	json_object_set_new(o, "state_comment", str_or_null(a->state_comment));
	json_object_set_new(o, "state_at", json_integer(a->state_at));
	return json_array_append_new(arr, o) == 0 ? 0 : -1;
}

json_t *
gw_op_alerts(struct gw_req *r)
{
	struct gw_alert_filter f = { .limit = ALERTS_LIMIT_DEFAULT };
	int64_t since = 0, limit = ALERTS_LIMIT_DEFAULT;
	bool open_only = false;
	json_t *rep, *arr, *eng;
	char err[256] = "";

	if (!may_read(r->who))
		return refuse(r, "alerts", "only an auditor or a seal admin may read the alerts");
	if (sg_get_bool(r->msg, "open", false, &open_only, r->err, sizeof(r->err)) < 0 ||
	    sg_get_str(r->msg, "rule", false, &f.rule, SG_NAME_MAX, r->err, sizeof(r->err)) < 0 ||
	    sg_get_int(r->msg, "since", false, 0, INT64_MAX / 1000000000LL, &since, r->err,
	               sizeof(r->err)) < 0 ||
	    sg_get_int(r->msg, "limit", false, 1, ALERTS_LIMIT_MAX, &limit, r->err,
	               sizeof(r->err)) < 0)
		return gw_bad_request(r);
	if (r->ctx->store == NULL)
		return sg_reply_error(CKR_DEVICE_ERROR, "internal", "no store");
	f.open_only = open_only;
	f.since_ns = since * 1000000000LL;
	f.limit = (size_t)limit;
	if ((arr = json_array()) == NULL)
		return sg_reply_error(CKR_HOST_MEMORY, "internal", "out of memory");
	if (gw_alertstore_list(r->ctx->store, &f, collect, arr, err, sizeof(err)) != 0) {
		json_decref(arr);
		gw_log_error("alerts: %s", err[0] ? err : "out of memory");
		return sg_reply_error(CKR_DEVICE_ERROR, "internal", "the alerts could not be read");
	}
	rep = sg_reply_ok();
	json_object_set_new(rep, "alerts", arr);
	/* How far the rules have read: a client waiting for an alert of
	 * records it wrote compares this with the log's head. */
	eng = json_object();
	if (r->ctx->risk != NULL) {
		struct gw_risk_online_stats s;
		uint64_t head = 0;
		uint8_t hash[GW_AUDIT_HASH_LEN];

		gw_risk_online_get_stats(r->ctx->risk, &s);
		if (r->ctx->audit)
			gw_audit_head(r->ctx->audit, &head, hash);
		json_object_set_new(eng, "running", json_boolean(!s.failed));
		json_object_set_new(eng, "seq", json_integer((json_int_t)s.seq));
		json_object_set_new(eng, "evaluated_seq", json_integer((json_int_t)s.evaluated_seq));
		json_object_set_new(eng, "checked_seq", json_integer((json_int_t)s.checked_seq));
		json_object_set_new(eng, "head", json_integer((json_int_t)head));
		json_object_set_new(eng, "handed", json_integer((json_int_t)s.handed));
		json_object_set_new(eng, "caught_up", json_integer((json_int_t)s.caught_up));
		json_object_set_new(eng, "overflows", json_integer((json_int_t)s.overflows));
	} else {
		json_object_set_new(eng, "running", json_false());
	}
	json_object_set_new(rep, "engine", eng);
	return rep;
}

struct change {
	int64_t id;
	const char *const *from;
	const char *state, *by, *comment;
	int64_t at;
	int done;
};

static int
change_apply(struct gw_store *st, void *arg, char *err, size_t errlen)
{
	struct change *c = arg;

	c->done = gw_alertstore_state_tx(st, c->id, c->from, c->state, c->by, c->comment, c->at,
	                                 err, errlen);
	if (c->done < 0)
		return -1;
	if (c->done == 0) {
		/* Refused: the record is not written either. */
		sg_seterr(err, errlen, "no alert %" PRId64 " that is %s", c->id, c->from[1] ?
		          "open or acknowledged" : "open");
		return -1;
	}
	return 0;
}

static json_t *
change_state(struct gw_req *r, bool close)
{
	static const char *const from_ack[] = { "open", NULL };
	static const char *const from_close[] = { "open", "acknowledged", NULL };
	const char *action = close ? "alert_close" : "alert_ack";
	const char *comment = NULL;
	int64_t id = 0;
	struct change c;
	struct gw_audit_event ev = { 0 };
	json_t *d = NULL, *rep = NULL;
	char *detail = NULL, err[256] = "";
	uint64_t seq = 0;

	/* Seal admins read the alerts; only auditors judge them. */
	if (r->who == NULL || !gw_person_has_role(r->who, "auditor"))
		return refuse(r, action, "only an auditor may %s an alert",
		              close ? "close" : "acknowledge");
	if (sg_get_int(r->msg, "id", true, 1, INT64_MAX, &id, r->err, sizeof(r->err)) < 0 ||
	    sg_get_str(r->msg, "comment", true, &comment, COMMENT_MAX, r->err, sizeof(r->err)) < 0)
		return gw_bad_request(r);
	if (comment[0] == '\0') {
		snprintf(r->err, sizeof(r->err), "an alert is %s with a comment",
		         close ? "closed" : "acknowledged");
		return gw_bad_request(r);
	}
	if (r->ctx->audit == NULL || r->ctx->store == NULL)
		return sg_reply_error(CKR_DEVICE_ERROR, "internal", "no audit log");
	c = (struct change){ .id = id, .from = close ? from_close : from_ack,
	                     .state = close ? "closed" : "acknowledged", .by = r->who->id,
	                     .comment = comment, .at = (int64_t)time(NULL), .done = -2 };
	d = json_pack("{s:I, s:s, s:s}", "alert", (json_int_t)id, "state", c.state, "comment",
	              comment);
	if (d == NULL || (detail = json_dumps(d, JSON_COMPACT)) == NULL) {
		rep = sg_reply_error(CKR_HOST_MEMORY, "internal", "out of memory");
		goto out;
	}
	ev = (struct gw_audit_event){
		.action = action, .outcome = "ok", .actor = r->who->id, .uid = r->peer->uid,
		.pid = r->peer->pid, .exe = r->peer->exe, .host = r->ctx->host, .detail = detail,
	};
	if (gw_audit_record_with(r->ctx->audit, &ev, change_apply, &c, &seq, err,
	                         sizeof(err)) < 0) {
		if (c.done == 0) {
			rep = refuse(r, action, "%s", err);
			goto out;
		}
		gw_log_error("%s %" PRId64 ": %s", action, id, err);
		rep = sg_reply_error(CKR_DEVICE_ERROR, "internal", "the change could not be recorded");
		goto out;
	}
	gw_log_info("alert %" PRId64 " %s by %s", id, c.state, r->who->id);
	rep = sg_reply_ok();
	json_object_set_new(rep, "id", json_integer(id));
	json_object_set_new(rep, "state", json_string(c.state));
	json_object_set_new(rep, "seq", json_integer((json_int_t)seq));
out:
	json_decref(d);
	free(detail);
	return rep;
}

json_t *
gw_op_alert_ack(struct gw_req *r)
{
	return change_state(r, false);
}

json_t *
gw_op_alert_close(struct gw_req *r)
{
	return change_state(r, true);
}
