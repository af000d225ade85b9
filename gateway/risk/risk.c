/*
 * The risk rules (docs/risk.md). Records are added in seq order and kept
 * in compact arrays of what the rules need; the rules that look at one
 * record and its predecessor (the log's clock, restarts) fire as it is
 * added, the others run over the arrays in gw_risk_finish. Every alert
 * names its evidence by seq and application id.
 */
#include "risk.h"
#include "policy.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#define NS 1000000000LL
#define NONE UINT32_MAX

/* qsort, which must not be given NULL even for nothing to sort. */
static void
sort_(void *base, size_t n, size_t size, int (*cmp)(const void *, const void *))
{
	if (n > 1)
		qsort(base, n, size, cmp);
}

/* ------------------------------------------------------------------ */
/* Small containers: growable arrays, interned strings, a hash map.     */

static int
grow(void **p, size_t *cap, size_t need, size_t elem)
{
	size_t n = *cap ? *cap : 16;
	void *q;

	if (need <= *cap)
		return 0;
	while (n < need)
		n *= 2;
	q = realloc(*p, n * elem);
	if (q == NULL)
		return -1;
	*p = q;
	*cap = n;
	return 0;
}

#define PUSH(arr, n, cap) \
	(grow((void **)&(arr), &(cap), (n) + 1, sizeof(*(arr))) < 0 ? NULL : &(arr)[(n)++])

/* Map of (a, b) -> v, open addressing; v is the caller's (an index). */
struct map {
	struct slot { uint64_t a, b, v; bool used; } *s;
	size_t cap, n;
};

static uint64_t
mix(uint64_t a, uint64_t b)
{
	uint64_t h = a * 0x9e3779b97f4a7c15ULL ^ (b + 0x632be59bd9b4e019ULL + (a << 6) + (a >> 2));
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	return h;
}

/* The slot for (a, b): found (used) or where it goes. NULL on ENOMEM. */
static struct slot *
map_slot(struct map *m, uint64_t a, uint64_t b)
{
	size_t i;

	if ((m->n + 1) * 2 > m->cap) {
		struct map bigger = { .cap = m->cap ? m->cap * 2 : 64 };
		bigger.s = calloc(bigger.cap, sizeof(*bigger.s));
		if (bigger.s == NULL)
			return NULL;
		for (size_t j = 0; j < m->cap; j++) {
			if (!m->s[j].used)
				continue;
			i = mix(m->s[j].a, m->s[j].b) & (bigger.cap - 1);
			while (bigger.s[i].used)
				i = (i + 1) & (bigger.cap - 1);
			bigger.s[i] = m->s[j];
		}
		bigger.n = m->n;
		free(m->s);
		*m = bigger;
	}
	i = mix(a, b) & (m->cap - 1);
	while (m->s[i].used && (m->s[i].a != a || m->s[i].b != b))
		i = (i + 1) & (m->cap - 1);
	return &m->s[i];
}

/* The value for (a, b), inserting dflt when absent. NULL on ENOMEM. */
static uint64_t *
map_get(struct map *m, uint64_t a, uint64_t b, uint64_t dflt)
{
	struct slot *s = map_slot(m, a, b);

	if (s == NULL)
		return NULL;
	if (!s->used) {
		s->used = true;
		s->a = a;
		s->b = b;
		s->v = dflt;
		m->n++;
	}
	return &s->v;
}

static void
map_free(struct map *m)
{
	free(m->s);
	memset(m, 0, sizeof(*m));
}

struct strtab {
	char **s; size_t n, cap;
	struct map ix;
};

static uint64_t
str_hash(const char *s)
{
	uint64_t h = 1469598103934665603ULL;

	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ULL;
	return h;
}

/* Index of s (copied on first sight); NONE for NULL; on ENOMEM NONE too
 * with *oom set. */
static uint32_t
intern(struct strtab *t, const char *s, bool *oom)
{
	uint64_t h, *v;

	if (s == NULL)
		return NONE;
	h = str_hash(s);
	/* Chained by probing b = 0, 1, 2 … for strings whose hashes collide. */
	for (uint64_t b = 0;; b++) {
		v = map_get(&t->ix, h, b, UINT64_MAX);
		if (v == NULL)
			goto oom;
		if (*v == UINT64_MAX)
			break;
		if (strcmp(t->s[*v], s) == 0)
			return (uint32_t)*v;
	}
	if (grow((void **)&t->s, &t->cap, t->n + 1, sizeof(char *)) < 0 ||
	    (t->s[t->n] = strdup(s)) == NULL)
		goto oom;
	*v = t->n;
	return (uint32_t)t->n++;
oom:
	*oom = true;
	return NONE;
}

static const char *
str_of(const struct strtab *t, uint32_t i)
{
	return i == NONE ? "-" : t->s[i];
}

/* ------------------------------------------------------------------ */
/* What the rules keep of the records.                                 */

struct rec { uint64_t seq; int64_t ts; };
struct sig {
	uint64_t seq; int64_t ts, pid, app;
	uint32_t seal, actor, host, exe;
	bool voided;
	/* Its local time, worked out once as it is added: the whole-history
	 * rules read every signature at each evaluation (online once a
	 * second), and the zone arithmetic was most of their cost. In the
	 * seal's zone, the organization's for a seal not in the policy
	 * (seal: NULL; the quotas skip those). */
	const struct gw_seal *sealp;
	int32_t day;                  /* days since 1970-01-01, local */
	int32_t qday, qmonth;         /* gw_policy_local_day / _month (sealp only) */
	uint8_t hour, wday;           /* 0–23; Monday = 0 */
};
struct probe { uint64_t seq; int64_t ts, pid; uint32_t actor; bool matched; };
struct app {
	int64_t id; uint64_t seq; int64_t ts, last_step;
	uint32_t applicant, seal, scope, party;
	bool has_amount; int64_t amount;
	/* Approvals about to expire: the uses granted and the validity's
	 * end (from the create record), the record that authorized it (0:
	 * not authorized), revoked or expired, and the signatures it made
	 * (counted by the rule). */
	int64_t uses, valid_until_ns, used;
	uint64_t auth_seq; int64_t auth_ts;
	bool ended;
};
struct decision { uint64_t seq; int64_t ts, app; uint32_t approver; bool approve; };
enum { REF_WRONG = 1, REF_LOCKOUT = 2 };
struct refusal { uint64_t seq; int64_t ts; uint32_t key; uint64_t count; unsigned kind; };
struct cpt { uint64_t seq; int64_t ts; };

struct gw_risk {
	const struct gw_policy *p;
	struct gw_risk_policy rp;
	bool oom;
	struct strtab st;
	struct rec *recs; size_t n_recs, cap_recs;
	struct sig *sigs; size_t n_sigs, cap_sigs;
	struct probe *probes; size_t n_probes, cap_probes;
	struct app *apps; size_t n_apps, cap_apps;
	struct map app_ix;                     /* id -> index in apps */
	struct decision *decs; size_t n_decs, cap_decs;
	struct refusal *refs; size_t n_refs, cap_refs;
	struct cpt *cps; size_t n_cps, cap_cps;
	uint64_t *voids; size_t n_voids, cap_voids;
	struct gw_risk_alert *alerts; size_t n_alerts, cap_alerts;
	/* gw_risk_evaluate: the alerts of the whole-history rules are
	 * alerts[batch_from..n_alerts), dropped before the next record or
	 * evaluation; out is every alert, sorted, for the caller. */
	size_t batch_from;
	struct gw_risk_alert *out; size_t cap_out;
	bool finished;
	/* The clock of the approvals rule (gw_risk_set_now; 0: the log's
	 * end), and when it next has something to say. */
	int64_t now_ns, next_due_ns, last_ts;
};

const char *
gw_risk_severity_name(enum gw_risk_severity s)
{
	return s == GW_RISK_HIGH ? "high" : s == GW_RISK_MEDIUM ? "medium" : "low";
}

struct gw_risk *
gw_risk_new(const struct gw_policy *p)
{
	struct gw_risk *r = calloc(1, sizeof(*r));

	if (r == NULL)
		return NULL;
	r->p = p;
	r->batch_from = SIZE_MAX;
	r->next_due_ns = INT64_MAX;
	if (p->risk != NULL)
		r->rp = *p->risk;
	else
		gw_risk_policy_defaults(&r->rp);
	return r;
}

void
gw_risk_free(struct gw_risk **rp)
{
	struct gw_risk *r = rp ? *rp : NULL;

	if (r == NULL)
		return;
	for (size_t i = 0; i < r->st.n; i++)
		free(r->st.s[i]);
	free(r->st.s);
	map_free(&r->st.ix);
	map_free(&r->app_ix);
	for (size_t i = 0; i < r->n_alerts; i++) {
		free(r->alerts[i].subject);
		free(r->alerts[i].why);
		free(r->alerts[i].seqs);
		free(r->alerts[i].apps);
	}
	free(r->alerts);
	free(r->out);
	free(r->recs);
	free(r->sigs);
	free(r->probes);
	free(r->apps);
	free(r->decs);
	free(r->refs);
	free(r->cps);
	free(r->voids);
	free(r);
	*rp = NULL;
}

/* ------------------------------------------------------------------ */
/* Alerts.                                                             */

/* Forgets the alerts of the last gw_risk_evaluate's whole-history rules:
 * the next evaluation finds them again over the longer history. */
static void
drop_batch(struct gw_risk *r)
{
	if (r->batch_from == SIZE_MAX)
		return;
	for (size_t i = r->batch_from; i < r->n_alerts; i++) {
		free(r->alerts[i].subject);
		free(r->alerts[i].why);
		free(r->alerts[i].seqs);
		free(r->alerts[i].apps);
	}
	r->n_alerts = r->batch_from;
	r->batch_from = SIZE_MAX;
}

static struct gw_risk_alert *
alert(struct gw_risk *r, const char *rule, enum gw_risk_severity sev, int64_t ts,
      const char *subject, const char *fmt, ...) __attribute__((format(printf, 6, 7)));

static struct gw_risk_alert *
alert(struct gw_risk *r, const char *rule, enum gw_risk_severity sev, int64_t ts,
      const char *subject, const char *fmt, ...)
{
	struct gw_risk_alert *a = PUSH(r->alerts, r->n_alerts, r->cap_alerts);
	va_list ap;
	int rc;

	if (a == NULL) {
		r->oom = true;
		return NULL;
	}
	memset(a, 0, sizeof(*a));
	a->rule = rule;
	a->severity = sev;
	a->ts_ns = ts;
	a->subject = strdup(subject ? subject : "-");
	va_start(ap, fmt);
	rc = vasprintf(&a->why, fmt, ap);
	va_end(ap);
	if (rc < 0)
		a->why = NULL;
	if (a->subject == NULL || a->why == NULL) {
		free(a->subject);
		free(a->why);
		r->n_alerts--;
		r->oom = true;
		return NULL;
	}
	return a;
}

static void
alert_seq(struct gw_risk *r, struct gw_risk_alert *a, uint64_t seq)
{
	size_t cap;

	if (a == NULL)
		return;
	/* Sized to what it holds: grow() doubles from there. */
	cap = a->n_seqs;
	if (grow((void **)&a->seqs, &cap, a->n_seqs + 1, sizeof(*a->seqs)) < 0) {
		r->oom = true;
		return;
	}
	a->seqs[a->n_seqs++] = seq;
}

static void
alert_app(struct gw_risk *r, struct gw_risk_alert *a, int64_t id)
{
	size_t cap;

	if (a == NULL || id <= 0)
		return;
	cap = a->n_apps;
	for (size_t i = 0; i < a->n_apps; i++)
		if (a->apps[i] == id)
			return;
	if (grow((void **)&a->apps, &cap, a->n_apps + 1, sizeof(*a->apps)) < 0) {
		r->oom = true;
		return;
	}
	a->apps[a->n_apps++] = id;
}

int
gw_risk_add_alert(struct gw_risk *r, const char *rule, enum gw_risk_severity sev,
                  const char *subject, const char *why)
{
	int64_t ts = r->n_recs ? r->recs[r->n_recs - 1].ts : 0;

	return alert(r, rule, sev, ts, subject, "%s", why) ? 0 : -1;
}

/* ------------------------------------------------------------------ */
/* Local time.                                                         */

/* Wall-clock time of ts in the seal's zone, or the organization's (the
 * first zone the policy loaded) when the seal is not in the policy. */
static void
local_tm(const struct gw_risk *r, const struct gw_seal *seal, int64_t ts, struct tm *tm)
{
	time_t t = (time_t)(ts / NS);

	if (seal != NULL) {
		gw_policy_local_time(seal, t, tm);
		return;
	}
	if (r->p->n_zones > 0)
		t += gw_tz_offset(r->p->zones[0], t);
	gmtime_r(&t, tm);
}

/* Days since 1970-01-01 of a local tm (its date fields alone). */
static int64_t
tm_day(const struct tm *tm)
{
	struct tm c = *tm;

	c.tm_hour = 12;
	c.tm_min = c.tm_sec = 0;
	c.tm_isdst = 0;
	return (int64_t)timegm(&c) / 86400;
}

static const char *const weekdays[] = { "Monday", "Tuesday", "Wednesday", "Thursday",
                                        "Friday", "Saturday", "Sunday" };

static int
tm_weekday(const struct tm *tm)
{
	return (tm->tm_wday + 6) % 7;   /* Monday = 0 */
}

static bool
working_time(const struct gw_risk *r, int64_t ts)
{
	struct tm tm;
	int min;

	local_tm(r, NULL, ts, &tm);
	min = tm.tm_hour * 60 + tm.tm_min;
	return (r->rp.work_days & (1u << tm_weekday(&tm))) &&
	       min >= r->rp.work_from_min && min < r->rp.work_to_min;
}

static void
fmt_tm(const struct tm *tm, char *buf, size_t len)
{
	snprintf(buf, len, "%s %04d-%02d-%02d %02d:%02d", weekdays[tm_weekday(tm)],
	         tm->tm_year + 1900, tm->tm_mon + 1, tm->tm_mday, tm->tm_hour, tm->tm_min);
}

static void
fmt_local(const struct gw_risk *r, const struct gw_seal *seal, int64_t ts, char *buf, size_t len)
{
	struct tm tm;

	local_tm(r, seal, ts, &tm);
	fmt_tm(&tm, buf, len);
}

static void
fmt_utc(int64_t ts, char *buf, size_t len)
{
	time_t t = (time_t)(ts / NS);
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* ------------------------------------------------------------------ */
/* Adding records.                                                     */

static bool
is(const char *a, const char *b)
{
	return a != NULL && strcmp(a, b) == 0;
}

/* An integer member of a record's JSON detail, found without parsing the
 * whole text (detail is the gateway's own compact JSON). */
static bool
detail_int(const char *detail, const char *key, int64_t *out)
{
	char pat[40];
	const char *p;
	char *end;

	if (detail == NULL)
		return false;
	snprintf(pat, sizeof(pat), "\"%s\":", key);
	if ((p = strstr(detail, pat)) == NULL)
		return false;
	p += strlen(pat);
	while (*p == ' ')
		p++;
	*out = strtoll(p, &end, 10);
	return end != p;
}

/* The counterparty a reason names as "… with NAME[,;.]" (lower case), or
 * NULL: threshold splitting groups applications by it. */
static char *
counterparty(const char *reason)
{
	const char *p = NULL, *q;
	char *out;
	size_t n;

	for (q = reason; q && (q = strstr(q, " with ")) != NULL; q += 6)
		p = q + 6;
	if (p == NULL)
		return NULL;
	n = strcspn(p, ",;.:()");
	while (n > 0 && p[n - 1] == ' ')
		n--;
	if (n == 0 || (out = strndup(p, n)) == NULL)
		return NULL;
	for (char *c = out; *c; c++)
		if (*c >= 'A' && *c <= 'Z')
			*c = (char)(*c - 'A' + 'a');
	return out;
}

static void
add_application(struct gw_risk *r, const struct gw_audit_row *row)
{
	struct app *a;
	json_t *d = NULL;
	char *party;
	uint64_t *ix;

	if ((a = PUSH(r->apps, r->n_apps, r->cap_apps)) == NULL) {
		r->oom = true;
		return;
	}
	memset(a, 0, sizeof(*a));
	a->id = row->application;
	a->seq = row->seq;
	a->ts = a->last_step = row->ts_ns;
	a->applicant = intern(&r->st, row->actor, &r->oom);
	a->seal = intern(&r->st, row->seal, &r->oom);
	a->scope = a->party = NONE;
	/* detail: {"document_type","business_scope","amount"} of the case. */
	if (row->detail != NULL && (d = json_loads(row->detail, 0, NULL)) != NULL) {
		json_t *amount = json_object_get(d, "amount");
		a->scope = intern(&r->st, json_string_value(json_object_get(d, "business_scope")),
		                  &r->oom);
		json_t *uses = json_object_get(d, "uses"), *until = json_object_get(d, "valid_until");
		if (json_is_integer(amount) && json_integer_value(amount) >= 0) {
			a->has_amount = true;
			a->amount = json_integer_value(amount);
		}
		/* Records before sealgate wrote these carry neither: such an
		 * application is never judged about to expire. */
		if (json_is_integer(uses) && json_is_integer(until) && json_integer_value(uses) > 0 &&
		    json_integer_value(until) > 0 && json_integer_value(until) < INT64_MAX / NS) {
			a->uses = json_integer_value(uses);
			a->valid_until_ns = json_integer_value(until) * NS;
		}
		/* No approval level: authorized as it is filed. */
		if (json_is_true(json_object_get(d, "authorized"))) {
			a->auth_seq = row->seq;
			a->auth_ts = row->ts_ns;
		}
		json_decref(d);
	}
	if ((party = counterparty(row->reason)) != NULL) {
		a->party = intern(&r->st, party, &r->oom);
		free(party);
	}
	if ((ix = map_get(&r->app_ix, (uint64_t)a->id, 0, r->n_apps - 1)) == NULL)
		r->oom = true;
	else
		*ix = r->n_apps - 1;
}

static struct app *
app_of(struct gw_risk *r, int64_t id)
{
	struct slot *s = map_slot(&r->app_ix, (uint64_t)id, 0);

	return s && s->used ? &r->apps[s->v] : NULL;
}

static void
add_decision(struct gw_risk *r, const struct gw_audit_row *row, bool approve)
{
	struct decision *d = PUSH(r->decs, r->n_decs, r->cap_decs);
	struct app *a = app_of(r, row->application);

	if (d == NULL) {
		r->oom = true;
		return;
	}
	d->seq = row->seq;
	d->ts = row->ts_ns;
	d->app = row->application;
	d->approver = intern(&r->st, row->actor, &r->oom);
	d->approve = approve;
	if (approve && a != NULL) {
		int64_t dt = row->ts_ns - a->last_step;
		if (dt < r->rp.rubber_stamp.fast_seconds * NS) {
			struct gw_risk_alert *al = alert(r, "rubber-stamp.fast", GW_RISK_MEDIUM, row->ts_ns,
				row->actor, "%s approved application #%" PRId64 " of %s for seal %s %.1f s after "
				"it was %s, under the %" PRId64 " s anyone needs to read it",
				str_of(&r->st, d->approver), a->id, str_of(&r->st, a->applicant),
				str_of(&r->st, a->seal), (double)dt / NS,
				a->last_step == a->ts ? "filed" : "approved at the level before",
				r->rp.rubber_stamp.fast_seconds);
			alert_seq(r, al, a->seq);
			alert_seq(r, al, row->seq);
			alert_app(r, al, a->id);
		}
		a->last_step = row->ts_ns;
	}
	if (approve && a != NULL && row->detail != NULL && strstr(row->detail, "\"authorized\":true")) {
		a->auth_seq = row->seq;
		a->auth_ts = row->ts_ns;
	}
}

static void
add_refusal(struct gw_risk *r, const struct gw_audit_row *row)
{
	struct refusal *f = PUSH(r->refs, r->n_refs, r->cap_refs);
	char key[64];
	int64_t count = 1;

	if (f == NULL) {
		r->oom = true;
		return;
	}
	/* Who probes: the account when one was named, else the OS user. */
	if (row->actor == NULL)
		snprintf(key, sizeof(key), "uid %" PRId64, row->uid);
	f->seq = row->seq;
	f->ts = row->ts_ns;
	f->key = intern(&r->st, row->actor ? row->actor : key, &r->oom);
	f->kind = 0;
	if (is(row->action, "refusals_suppressed") && detail_int(row->detail, "count", &count) &&
	    count > 0)
		f->count = (uint64_t)count;
	else
		f->count = 1;
	if (is(row->action, "login") && row->reason != NULL) {
		if (strstr(row->reason, "wrong password") || strstr(row->reason, "wrong code"))
			f->kind |= REF_WRONG;
		/* The refusal that started the lockout, not those it then caused. */
		if (strstr(row->reason, "failed attempts: account locked") ||
		    strstr(row->reason, "failed attempts: this OS user may not try"))
			f->kind |= REF_LOCKOUT;
	}
}

static void
sig_local(const struct gw_risk *r, struct sig *s)
{
	time_t t = (time_t)(s->ts / NS);
	struct tm tm;

	s->sealp = gw_policy_seal(r->p, str_of(&r->st, s->seal));
	local_tm(r, s->sealp, s->ts, &tm);
	/* (32 bits hold the days and months of ±5.8 million years.) */
	s->day = (int32_t)tm_day(&tm);
	s->hour = (uint8_t)tm.tm_hour;
	s->wday = (uint8_t)tm_weekday(&tm);
	s->qday = s->sealp ? (int32_t)gw_policy_local_day(s->sealp, t) : 0;
	s->qmonth = s->sealp ? (int32_t)gw_policy_local_month(s->sealp, t) : 0;
}

static void
add_sign(struct gw_risk *r, const struct gw_audit_row *row)
{
	struct sig *s = PUSH(r->sigs, r->n_sigs, r->cap_sigs);

	if (s == NULL) {
		r->oom = true;
		return;
	}
	s->seq = row->seq;
	s->ts = row->ts_ns;
	s->pid = row->pid;
	s->app = row->application;
	s->seal = intern(&r->st, row->seal, &r->oom);
	s->actor = intern(&r->st, row->actor, &r->oom);
	s->host = intern(&r->st, row->host, &r->oom);
	s->exe = intern(&r->st, row->exe, &r->oom);
	s->voided = false;
	sig_local(r, s);
	/* A size probe answered in this process is followed by its real
	 * signature: it was not a probe without one. */
	for (size_t i = r->n_probes; i-- > 0;) {
		struct probe *p = &r->probes[i];
		if (row->ts_ns - p->ts > r->rp.probing.window_seconds * NS)
			break;
		if (p->pid == row->pid && p->actor == s->actor)
			p->matched = true;
	}
}

int
gw_risk_add_record(struct gw_risk *r, const struct gw_audit_row *row)
{
	struct rec *rc;
	int64_t prev_ts;
	int64_t v;

	if (r->finished)
		return -1;
	drop_batch(r);
	prev_ts = r->n_recs ? r->recs[r->n_recs - 1].ts : row->ts_ns;
	if ((rc = PUSH(r->recs, r->n_recs, r->cap_recs)) == NULL)
		return -1;
	rc->seq = row->seq;
	rc->ts = row->ts_ns;
	if (row->ts_ns > r->last_ts)
		r->last_ts = row->ts_ns;

	/* The log itself: its clock, and restarts or token removals at night. */
	if (row->ts_ns < prev_ts - r->rp.log.clock_back_seconds * NS) {
		char a[40], b[40];
		struct gw_risk_alert *al;
		fmt_utc(prev_ts, a, sizeof(a));
		fmt_utc(row->ts_ns, b, sizeof(b));
		al = alert(r, "log.clock-backwards", GW_RISK_HIGH, row->ts_ns, "audit log",
		           "the gateway's clock went back %.0f s between seq %" PRIu64 " (%s) and "
		           "seq %" PRIu64 " (%s)", (double)(prev_ts - row->ts_ns) / NS,
		           r->recs[r->n_recs - 2].seq, a, row->seq, b);
		alert_seq(r, al, r->recs[r->n_recs - 2].seq);
		alert_seq(r, al, row->seq);
	}
	if ((is(row->action, "gateway_start") || is(row->action, "gateway_stop") ||
	     is(row->action, "token_absent") || is(row->action, "token_removed")) &&
	    !working_time(r, row->ts_ns)) {
		char when[64];
		bool token = strncmp(row->action, "token", 5) == 0;
		struct gw_risk_alert *al;
		fmt_local(r, NULL, row->ts_ns, when, sizeof(when));
		al = alert(r, token ? "log.off-hours-token" : "log.off-hours-restart", GW_RISK_MEDIUM,
		           row->ts_ns, row->host, "%s at %s, outside working hours",
		           is(row->action, "gateway_start") ? "the gateway started" :
		           is(row->action, "gateway_stop") ? "the gateway stopped" :
		           "the backend token was removed", when);
		alert_seq(r, al, row->seq);
	}

	if (is(row->outcome, "denied") || is(row->action, "refusals_suppressed")) {
		add_refusal(r, row);
	} else if (is(row->outcome, "ok")) {
		if (is(row->action, "sign"))
			add_sign(r, row);
		else if (is(row->action, "sign_probe")) {
			struct probe *p = PUSH(r->probes, r->n_probes, r->cap_probes);
			if (p == NULL)
				return -1;
			*p = (struct probe){ row->seq, row->ts_ns, row->pid,
			                     intern(&r->st, row->actor, &r->oom), false };
		} else if (is(row->action, "application_create") && row->application > 0)
			add_application(r, row);
		else if (is(row->action, "application_approve"))
			add_decision(r, row, true);
		else if (is(row->action, "application_reject"))
			add_decision(r, row, false);
		else if ((is(row->action, "application_revoke") || is(row->action, "application_expire")) &&
		         app_of(r, row->application) != NULL)
			app_of(r, row->application)->ended = true;
	}
	if (is(row->action, "sign_void") && detail_int(row->detail, "voids", &v) && v > 0) {
		uint64_t *vp = PUSH(r->voids, r->n_voids, r->cap_voids);
		if (vp == NULL)
			return -1;
		*vp = (uint64_t)v;
	}
	return r->oom ? -1 : 0;
}

int
gw_risk_add_checkpoint(struct gw_risk *r, uint64_t seq, int64_t ts_ns)
{
	struct cpt *c = PUSH(r->cps, r->n_cps, r->cap_cps);

	if (c == NULL)
		return -1;
	c->seq = seq;
	c->ts = ts_ns;
	if (ts_ns > r->last_ts)
		r->last_ts = ts_ns;
	return 0;
}

/* ------------------------------------------------------------------ */
/* The rules that need the whole history.                              */

static int
cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return (x > y) - (x < y);
}

static int
cmp_sig_seq(const void *key, const void *elem)
{
	uint64_t k = *(const uint64_t *)key, s = ((const struct sig *)elem)->seq;

	return (k > s) - (k < s);
}

static void
apply_voids(struct gw_risk *r)
{
	for (size_t i = 0; r->n_sigs > 0 && i < r->n_voids; i++) {
		struct sig *s = bsearch(&r->voids[i], r->sigs, r->n_sigs, sizeof(*r->sigs), cmp_sig_seq);
		if (s != NULL)
			s->voided = true;
	}
}

/* Threshold splitting. */

struct cand { uint32_t key; int64_t ts; size_t app; };

static int
cmp_cand(const void *a, const void *b)
{
	const struct cand *x = a, *y = b;

	if (x->key != y->key)
		return x->key < y->key ? -1 : 1;
	return (x->ts > y->ts) - (x->ts < y->ts);
}

static void
split_group(struct gw_risk *r, const struct gw_seal *seal, const struct gw_rule *rule,
            size_t rule_no, int64_t limit, const char *how, struct cand *c, size_t n,
            bool *used)
{
	int64_t window = r->rp.splitting.window_hours * 3600 * NS;
	size_t i = 0;

	for (size_t j = 0; j < n; j++) {
		/* Amounts go up to INT64_MAX / 2 each: summed as doubles, which
		 * are exact far beyond any real contract. */
		double sum = 0;
		size_t k;
		bool fresh = false;

		if (j > i && c[j].key != c[i].key)
			i = j;
		while (c[j].ts - c[i].ts > window)
			i++;
		for (k = i; k <= j; k++)
			sum += (double)r->apps[c[k].app].amount;
		if ((int64_t)(j - i + 1) < r->rp.splitting.min_applications || sum <= (double)limit)
			continue;
		/* The rest of the window belongs to the same split. */
		while (j + 1 < n && c[j + 1].key == c[i].key && c[j + 1].ts - c[i].ts <= window)
			sum += (double)r->apps[c[++j].app].amount;
		for (k = i; k <= j; k++)
			fresh |= !used[c[k].app];
		if (fresh) {
			struct gw_risk_alert *a = alert(r, "threshold-splitting", GW_RISK_HIGH, c[j].ts,
				str_of(&r->st, c[j].key),
				"%zu applications for seal %s by %s %s within %" PRId64 " h each stay at or "
				"under %" PRId64 ", above which rule %zu (policy line %u) asks more approval, "
				"but together come to %.0f", j - i + 1, seal->id, how,
				str_of(&r->st, c[j].key), r->rp.splitting.window_hours, limit, rule_no,
				rule->line, sum);
			for (k = i; k <= j; k++) {
				alert_seq(r, a, r->apps[c[k].app].seq);
				alert_app(r, a, r->apps[c[k].app].id);
				used[c[k].app] = true;
			}
		}
		i = j + 1;
	}
}

static void
rule_splitting(struct gw_risk *r)
{
	struct cand *c = calloc(r->n_apps + 1, sizeof(*c));
	bool *used = calloc(r->n_apps + 1, sizeof(*used));

	if (c == NULL || used == NULL) {
		r->oom = true;
		goto out;
	}
	for (size_t s = 0; s < r->p->n_seals; s++) {
		const struct gw_seal *seal = &r->p->seals[s];
		for (size_t ru = 0; ru < seal->n_rules; ru++) {
			const struct gw_rule *rule = &seal->rules[ru];
			/* Amounts at or under limit get a lighter rule than this one. */
			int64_t limit;
			if (rule->has_amount_over)
				limit = rule->amount_over;
			else
				continue;
			memset(used, 0, (r->n_apps + 1) * sizeof(*used));
			for (int kind = 0; kind < 3; kind++) {
				static const char *const how[] = { "applicant", "in business scope",
				                                   "with counterparty" };
				size_t n = 0;
				for (size_t i = 0; i < r->n_apps; i++) {
					const struct app *a = &r->apps[i];
					uint32_t key = kind == 0 ? a->applicant : kind == 1 ? a->scope : a->party;
					if (key == NONE || !a->has_amount || a->amount > limit ||
					    (double)a->amount * 100 <
					            (double)limit * (double)r->rp.splitting.near_pct ||
					    strcmp(str_of(&r->st, a->seal), seal->id) != 0)
						continue;
					c[n++] = (struct cand){ key, a->ts, i };
				}
				sort_(c, n, sizeof(*c), cmp_cand);
				split_group(r, seal, rule, ru + 1, limit, how[kind], c, n, used);
			}
		}
	}
out:
	free(c);
	free(used);
}

/* Rubber-stamping: one approver, one applicant, (nearly) everything approved. */
static void
rule_ratio(struct gw_risk *r)
{
	struct map pairs = { 0 };
	struct pair { uint32_t approver, applicant; uint64_t yes, all; } *ps = NULL;
	size_t n = 0, cap = 0;

	for (size_t i = 0; i < r->n_decs; i++) {
		const struct app *a = app_of(r, r->decs[i].app);
		uint64_t *ix;
		if (a == NULL)
			continue;
		ix = map_get(&pairs, r->decs[i].approver, a->applicant, n);
		if (ix == NULL || (*ix == n && grow((void **)&ps, &cap, n + 1, sizeof(*ps)) < 0)) {
			r->oom = true;
			goto out;
		}
		if (*ix == n)
			ps[n++] = (struct pair){ r->decs[i].approver, a->applicant, 0, 0 };
		ps[*ix].all++;
		ps[*ix].yes += r->decs[i].approve;
	}
	for (size_t k = 0; k < n; k++) {
		struct gw_risk_alert *al;
		if ((int64_t)ps[k].all < r->rp.rubber_stamp.min_decisions ||
		    ps[k].yes * 100 < (uint64_t)r->rp.rubber_stamp.approve_pct * ps[k].all)
			continue;
		al = alert(r, "rubber-stamp.ratio", GW_RISK_MEDIUM, 0, str_of(&r->st, ps[k].approver),
		           "%s approved %" PRIu64 " of the %" PRIu64 " decisions on %s's applications "
		           "(%.0f %%, at least %" PRId64 " %% of at least %" PRId64 " is a rubber stamp)",
		           str_of(&r->st, ps[k].approver), ps[k].yes, ps[k].all,
		           str_of(&r->st, ps[k].applicant), 100.0 * (double)ps[k].yes / (double)ps[k].all,
		           r->rp.rubber_stamp.approve_pct, r->rp.rubber_stamp.min_decisions);
		for (size_t i = 0; al && i < r->n_decs; i++) {
			const struct app *a = app_of(r, r->decs[i].app);
			if (a && r->decs[i].approver == ps[k].approver && a->applicant == ps[k].applicant) {
				alert_seq(r, al, r->decs[i].seq);
				alert_app(r, al, a->id);
				al->ts_ns = r->decs[i].ts;
			}
		}
	}
out:
	free(ps);
	map_free(&pairs);
}

/* Unusual volume: per seal and per person, per weekday and hour. */

static void
volume_of(struct gw_risk *r, bool person, uint32_t subject, const size_t *ix, size_t n)
{
	int64_t first = INT64_MAX, last = INT64_MIN, weeks;
	uint32_t *counts = NULL;
	double *hist = NULL;
	int64_t *wk = malloc(n * sizeof(*wk));
	int *bk = malloc(n * sizeof(*bk));

	if (wk == NULL || bk == NULL)
		goto oom;
	for (size_t i = 0; i < n; i++) {
		const struct sig *s = &r->sigs[ix[i]];
		wk[i] = (s->day + 3) / 7;       /* 1970-01-01 was a Thursday: weeks from Monday */
		bk[i] = s->wday * 24 + s->hour;
		if (wk[i] < first)
			first = wk[i];
		if (wk[i] > last)
			last = wk[i];
	}
	weeks = last - first + 1;
	if (n == 0 || weeks <= r->rp.volume.min_weeks)
		goto out;
	if ((counts = calloc((size_t)weeks * 168, sizeof(*counts))) == NULL ||
	    (hist = malloc((size_t)r->rp.volume.weeks * sizeof(*hist))) == NULL)
		goto oom;
	for (size_t i = 0; i < n; i++)
		counts[(wk[i] - first) * 168 + bk[i]]++;
	for (int64_t w = r->rp.volume.min_weeks; w < weeks; w++) {
		for (int b = 0; b < 168; b++) {
			uint32_t c = counts[w * 168 + b];
			size_t h = 0;
			double thr, med;
			struct gw_risk_alert *al;
			if ((int64_t)c < r->rp.volume.min_signatures)
				continue;
			for (int64_t j = 1; j <= r->rp.volume.weeks && w - j >= 0; j++)
				hist[h++] = counts[(w - j) * 168 + b];
			thr = gw_risk_threshold(hist, h, (double)r->rp.volume.k);
			for (size_t j = 0; j < h; j++)
				hist[j] = counts[(w - 1 - (int64_t)j) * 168 + b];
			med = gw_risk_median(hist, h);
			if ((double)c <= thr)
				continue;
			al = alert(r, person ? "volume.person" : "volume.seal", GW_RISK_MEDIUM, 0,
			           str_of(&r->st, subject),
			           "%s %s made %u signatures on a %s between %02d:00 and %02d:00 where the "
			           "median of the %zu weeks before is %.0f and the limit (median + %" PRId64
			           " × its spread) %.1f", person ? "person" : "seal", str_of(&r->st, subject), c,
			           weekdays[b / 24], b % 24, b % 24 + 1, h, med, r->rp.volume.k, thr);
			for (size_t i = 0; al && i < n; i++)
				if (wk[i] - first == w && bk[i] == b) {
					alert_seq(r, al, r->sigs[ix[i]].seq);
					alert_app(r, al, r->sigs[ix[i]].app);
					al->ts_ns = r->sigs[ix[i]].ts;
				}
		}
	}
	goto out;
oom:
	r->oom = true;
out:
	free(counts);
	free(hist);
	free(wk);
	free(bk);
}

static void
rule_volume(struct gw_risk *r)
{
	size_t *ix = malloc((r->n_sigs + 1) * sizeof(*ix));
	bool *seen = calloc(r->st.n + 1, 2 * sizeof(*seen));

	if (ix == NULL || seen == NULL) {
		r->oom = true;
		goto out;
	}
	/* One pass per subject keeps memory at one subject's weeks. */
	for (int person = 0; person < 2; person++) {
		for (size_t i = 0; i < r->n_sigs; i++) {
			uint32_t subj = person ? r->sigs[i].actor : r->sigs[i].seal;
			size_t n = 0;
			if (subj == NONE || seen[subj * 2 + (size_t)person])
				continue;
			seen[subj * 2 + (size_t)person] = true;
			for (size_t j = i; j < r->n_sigs; j++)
				if (!r->sigs[j].voided &&
				    (person ? r->sigs[j].actor : r->sigs[j].seal) == subj)
					ix[n++] = j;
			volume_of(r, person, subj, ix, n);
		}
	}
out:
	free(ix);
	free(seen);
}

/* Unusual hour, new host or executable, dormant seal: in time order. */

struct habit { uint32_t hours; uint64_t n; int64_t first; uint32_t *hosts, *exes; size_t nh, ne; };

static bool
has(const uint32_t *v, size_t n, uint32_t x)
{
	for (size_t i = 0; i < n; i++)
		if (v[i] == x)
			return true;
	return false;
}

static void
add_to(struct gw_risk *r, uint32_t **v, size_t *n, uint32_t x)
{
	size_t cap = *n;

	if (grow((void **)v, &cap, *n + 1, sizeof(**v)) < 0) {
		r->oom = true;
		return;
	}
	(*v)[(*n)++] = x;
}

/* Whether hours (bit h = used at h o'clock) has an hour within margin of h. */
static bool
near_hours(uint32_t hours, int h, int64_t margin)
{
	for (int64_t d = -margin; d <= margin; d++)
		if (hours & 1u << (int)((h + d + 24) % 24))
			return true;
	return false;
}

static void
rule_habits(struct gw_risk *r)
{
	struct map pair_ix = { 0 };
	struct habit *per_pair = NULL, *per_actor = calloc(r->st.n + 1, sizeof(*per_actor));
	int64_t *last_use = malloc((r->st.n + 1) * sizeof(*last_use));
	size_t n_pairs = 0, cap_pairs = 0;
	int64_t first_ts = r->n_recs ? r->recs[0].ts : 0, dormant = r->rp.dormant.days * 86400 * NS;
	int64_t min_span = r->rp.history.min_days * 86400 * NS;
	uint64_t min_n = (uint64_t)r->rp.history.min_signatures;

	if (per_actor == NULL || last_use == NULL)
		goto oom;
	for (size_t i = 0; i <= r->st.n; i++)
		last_use[i] = INT64_MIN;
	for (size_t i = 0; i < r->n_sigs; i++) {
		const struct sig *s = &r->sigs[i];
		const struct gw_seal *seal = s->sealp;
		struct habit *hp, *ha;
		uint64_t *pix;
		char when[64];
		struct gw_risk_alert *al;
		int h;

		if (s->voided || s->seal == NONE || s->actor == NONE)
			continue;
		h = s->hour;
		/* Formatted for an alert's why only: every evaluation online
		 * passes every signature of the history through here, and one
		 * snprintf each was most of this loop's cost. */
#define WHEN() (when[0] ? when : (fmt_local(r, seal, s->ts, when, sizeof(when)), when))
		when[0] = '\0';

		/* Dormant: long unused, or unused since the log begins. */
		{
			int64_t since = last_use[s->seal] == INT64_MIN ? first_ts : last_use[s->seal];
			if (s->ts - since >= dormant) {
				al = alert(r, "seal.dormant", GW_RISK_MEDIUM, s->ts, str_of(&r->st, s->seal),
				           "seal %s was used by %s at %s after %.0f days %s", str_of(&r->st, s->seal),
				           str_of(&r->st, s->actor), WHEN(), (double)(s->ts - since) / (86400.0 * NS),
				           last_use[s->seal] == INT64_MIN ? "without a use since the log begins" :
				           "unused");
				alert_seq(r, al, s->seq);
				alert_app(r, al, s->app);
			}
			last_use[s->seal] = s->ts;
		}

		pix = map_get(&pair_ix, s->actor, s->seal, n_pairs);
		if (pix == NULL)
			goto oom;
		if (*pix == n_pairs) {
			if (grow((void **)&per_pair, &cap_pairs, n_pairs + 1, sizeof(*per_pair)) < 0)
				goto oom;
			memset(&per_pair[n_pairs++], 0, sizeof(*per_pair));
			per_pair[*pix].first = s->ts;
		}
		hp = &per_pair[*pix];
		if (hp->n >= min_n && s->ts - hp->first >= min_span &&
		    !near_hours(hp->hours, h, r->rp.history.hour_margin)) {
			al = alert(r, "time.unusual-hour", GW_RISK_MEDIUM, s->ts, str_of(&r->st, s->actor),
			           "%s used seal %s at %s, more than %" PRId64 " h from any hour they used "
			           "it at in %" PRIu64 " signatures before", str_of(&r->st, s->actor),
			           str_of(&r->st, s->seal), WHEN(), r->rp.history.hour_margin, hp->n);
			alert_seq(r, al, s->seq);
			alert_app(r, al, s->app);
		}
		hp->hours |= 1u << h;
		hp->n++;

		ha = &per_actor[s->actor];
		if (ha->n == 0)
			ha->first = s->ts;
		if (ha->n >= min_n && s->ts - ha->first >= min_span) {
			if (s->host != NONE && !has(ha->hosts, ha->nh, s->host)) {
				al = alert(r, "source.new-host", GW_RISK_MEDIUM, s->ts, str_of(&r->st, s->actor),
				           "%s signed with seal %s from host %s at %s, a host they never "
				           "signed from in %" PRIu64 " signatures before", str_of(&r->st, s->actor),
				           str_of(&r->st, s->seal), str_of(&r->st, s->host), WHEN(), ha->n);
				alert_seq(r, al, s->seq);
				alert_app(r, al, s->app);
			}
			if (s->exe != NONE && !has(ha->exes, ha->ne, s->exe)) {
				al = alert(r, "source.new-exe", GW_RISK_MEDIUM, s->ts, str_of(&r->st, s->actor),
				           "%s signed with seal %s through %s at %s, a program they never "
				           "signed with in %" PRIu64 " signatures before", str_of(&r->st, s->actor),
				           str_of(&r->st, s->seal), str_of(&r->st, s->exe), WHEN(), ha->n);
				alert_seq(r, al, s->seq);
				alert_app(r, al, s->app);
			}
		}
		if (s->host != NONE && !has(ha->hosts, ha->nh, s->host))
			add_to(r, &ha->hosts, &ha->nh, s->host);
		if (s->exe != NONE && !has(ha->exes, ha->ne, s->exe))
			add_to(r, &ha->exes, &ha->ne, s->exe);
		ha->n++;
	}
#undef WHEN
	goto out;
oom:
	r->oom = true;
out:
	for (size_t i = 0; per_actor && i <= r->st.n; i++) {
		free(per_actor[i].hosts);
		free(per_actor[i].exes);
	}
	free(per_actor);
	free(per_pair);
	free(last_use);
	map_free(&pair_ix);
}

/* Probing: bursts of refusals, wrong passwords or codes, lockouts, size
 * probes without their signature. */

struct burst { uint32_t key; int64_t ts; uint64_t seq, count; };

static int
cmp_burst(const void *a, const void *b)
{
	const struct burst *x = a, *y = b;

	if (x->key != y->key)
		return x->key < y->key ? -1 : 1;
	return (x->seq > y->seq) - (x->seq < y->seq);
}

static void
bursts(struct gw_risk *r, struct burst *v, size_t n, int64_t limit, const char *rule,
       const char *what)
{
	int64_t window = r->rp.probing.window_seconds * NS;
	size_t i = 0;

	sort_(v, n, sizeof(*v), cmp_burst);
	for (size_t j = 0; j < n; j++) {
		uint64_t sum = 0;
		struct gw_risk_alert *al;
		if (j > i && v[j].key != v[i].key)
			i = j;
		while (v[j].ts - v[i].ts > window)
			i++;
		for (size_t k = i; k <= j; k++)
			sum += v[k].count;
		if ((int64_t)sum < limit)
			continue;
		/* The burst goes on while the next one is within the window. */
		while (j + 1 < n && v[j + 1].key == v[i].key && v[j + 1].ts - v[j].ts <= window) {
			j++;
			sum += v[j].count;
		}
		al = alert(r, rule, GW_RISK_HIGH, v[j].ts, str_of(&r->st, v[i].key),
		           "%s: %" PRIu64 " %s in one burst, at least %" PRId64 " of them within %" PRId64
		           " s", str_of(&r->st, v[i].key), sum, what, limit, r->rp.probing.window_seconds);
		for (size_t k = i; al && k <= j; k++)
			alert_seq(r, al, v[k].seq);
		i = j + 1;
	}
}

static void
rule_probing(struct gw_risk *r)
{
	struct burst *v = malloc((r->n_refs + r->n_probes + 1) * sizeof(*v));
	size_t n;

	if (v == NULL) {
		r->oom = true;
		return;
	}
	n = 0;
	for (size_t i = 0; i < r->n_refs; i++)
		v[n++] = (struct burst){ r->refs[i].key, r->refs[i].ts, r->refs[i].seq, r->refs[i].count };
	bursts(r, v, n, r->rp.probing.refusals, "probe.refusals", "refusals");
	n = 0;
	for (size_t i = 0; i < r->n_refs; i++)
		if (r->refs[i].kind & REF_WRONG)
			v[n++] = (struct burst){ r->refs[i].key, r->refs[i].ts, r->refs[i].seq, 1 };
	bursts(r, v, n, r->rp.probing.wrong_credentials, "probe.wrong-credentials",
	       "wrong passwords or codes");
	n = 0;
	for (size_t i = 0; i < r->n_probes; i++)
		if (!r->probes[i].matched && r->probes[i].actor != NONE)
			v[n++] = (struct burst){ r->probes[i].actor, r->probes[i].ts, r->probes[i].seq, 1 };
	bursts(r, v, n, r->rp.probing.probes, "probe.size-probes",
	       "size probes not followed by a signature from the same process");
	for (size_t i = 0; i < r->n_refs; i++) {
		struct gw_risk_alert *al;
		if (!(r->refs[i].kind & REF_LOCKOUT))
			continue;
		al = alert(r, "probe.lockout", GW_RISK_HIGH, r->refs[i].ts, str_of(&r->st, r->refs[i].key),
		           "%s was locked out after too many wrong passwords or codes (seq %" PRIu64 ")",
		           str_of(&r->st, r->refs[i].key), r->refs[i].seq);
		alert_seq(r, al, r->refs[i].seq);
	}
	free(v);
}

/* Quotas nearly spent: the signature that crosses each level. */

static void
quota_step(struct gw_risk *r, struct map *m, const struct sig *s, int kind, uint64_t period,
           uint64_t quota, const char *name, const char *span)
{
	uint64_t *c, before;
	static const char *const rules[] = { "quota.warn", "quota.high" };
	int64_t pct[] = { r->rp.quota.warn_pct, r->rp.quota.high_pct };

	if (quota == 0)
		return;
	c = map_get(m, (uint64_t)kind << 56 | (uint64_t)s->seal << 28 | (kind == 2 ? s->actor : 0),
	            period, 0);
	if (c == NULL) {
		r->oom = true;
		return;
	}
	before = (*c)++;
	for (int l = 0; l < 2; l++) {
		struct gw_risk_alert *al;
		/* The first count at pct of quota, without overflowing a large one. */
		uint64_t need = quota / 100 * (uint64_t)pct[l] + ((quota % 100) * (uint64_t)pct[l] + 99) / 100;
		if (before >= need || *c < need)
			continue;
		al = alert(r, rules[l], l ? GW_RISK_HIGH : GW_RISK_MEDIUM, s->ts,
		           kind == 2 ? str_of(&r->st, s->actor) : str_of(&r->st, s->seal),
		           "seal %s: signature %" PRIu64 " of %" PRIu64 " allowed %s%s%s (%s) reaches %"
		           PRId64 " %% of %s", str_of(&r->st, s->seal), *c, quota,
		           kind == 2 ? "to " : "", kind == 2 ? str_of(&r->st, s->actor) : "",
		           kind == 2 ? " a day" : span, name, pct[l], name);
		alert_seq(r, al, s->seq);
		alert_app(r, al, s->app);
	}
}

static void
rule_quotas(struct gw_risk *r)
{
	struct map m = { 0 };

	for (size_t i = 0; i < r->n_sigs; i++) {
		const struct sig *s = &r->sigs[i];
		const struct gw_seal *seal;
		if (s->voided || (seal = s->sealp) == NULL)
			continue;
		quota_step(r, &m, s, 0, (uint64_t)s->qday, seal->quotas.per_day,
		           "per_day", " a day");
		quota_step(r, &m, s, 1, (uint64_t)s->qmonth, seal->quotas.per_month,
		           "per_month", " a month");
		if (s->actor != NONE)
			quota_step(r, &m, s, 2, (uint64_t)s->qday,
			           seal->quotas.per_person_per_day, "per_person_per_day", "");
		quota_step(r, &m, s, 3, 0, seal->quotas.total, "total", " in all");
	}
	map_free(&m);
}

/* Approvals about to expire unused: authorized, neither revoked nor
 * expired, uses left, and the validity ending within expiring_hours of
 * now. The why names the end, not the hours left, so that the alert found
 * again a minute later is the same alert. */
static void
rule_expiring(struct gw_risk *r)
{
	int64_t now = r->now_ns ? r->now_ns : r->last_ts;
	int64_t window = r->rp.approvals.expiring_hours * 3600 * NS;

	r->next_due_ns = INT64_MAX;
	for (size_t i = 0; i < r->n_apps; i++)
		r->apps[i].used = 0;
	for (size_t i = 0; i < r->n_sigs; i++) {
		struct app *a;
		if (!r->sigs[i].voided && r->sigs[i].app > 0 && (a = app_of(r, r->sigs[i].app)) != NULL)
			a->used++;
	}
	for (size_t i = 0; i < r->n_apps; i++) {
		struct app *a = &r->apps[i];
		struct gw_risk_alert *al;
		char until[40];
		if (a->auth_seq == 0 || a->ended || a->valid_until_ns == 0 || a->used >= a->uses ||
		    a->valid_until_ns <= now)
			continue;
		if (a->valid_until_ns - window > now) {
			if (a->valid_until_ns - window < r->next_due_ns)
				r->next_due_ns = a->valid_until_ns - window;
			continue;
		}
		fmt_utc(a->valid_until_ns, until, sizeof(until));
		al = alert(r, "approval.expiring", GW_RISK_LOW, a->auth_ts, str_of(&r->st, a->applicant),
		           "application #%" PRId64 " of %s for seal %s is authorized until %s with %"
		           PRId64 " of its %" PRId64 " use%s left, and its validity ends within %" PRId64 " h",
		           a->id, str_of(&r->st, a->applicant), str_of(&r->st, a->seal), until,
		           a->uses - a->used, a->uses, a->uses == 1 ? "" : "s",
		           r->rp.approvals.expiring_hours);
		alert_seq(r, al, a->seq);
		if (a->auth_seq != a->seq)
			alert_seq(r, al, a->auth_seq);
		alert_app(r, al, a->id);
	}
}

void
gw_risk_set_now(struct gw_risk *r, int64_t now_ns)
{
	r->now_ns = now_ns;
}

int64_t
gw_risk_next_due(const struct gw_risk *r)
{
	return r->next_due_ns;
}

/* A checkpoint owed too long: records that waited for their signature. */

static int
cmp_cpt(const void *a, const void *b)
{
	const struct cpt *x = a, *y = b;

	return (x->seq > y->seq) - (x->seq < y->seq);
}

static void
rule_checkpoints(struct gw_risk *r)
{
	int64_t max = r->rp.log.checkpoint_max_seconds * NS;
	size_t j = 0, alerted = SIZE_MAX;

	sort_(r->cps, r->n_cps, sizeof(*r->cps), cmp_cpt);
	for (size_t i = 0; i < r->n_recs; i++) {
		const struct rec *rc = &r->recs[i];
		struct gw_risk_alert *al;
		while (j < r->n_cps && r->cps[j].seq < rc->seq)
			j++;
		if (j == r->n_cps)
			break;   /* not yet covered: the verifier notes the tail */
		if (r->cps[j].ts - rc->ts <= max || alerted == j)
			continue;
		alerted = j;
		al = alert(r, "log.checkpoint-owed", GW_RISK_MEDIUM, r->cps[j].ts, "audit log",
		           "seq %" PRIu64 " waited %.0f s for a signed checkpoint (the one at seq %"
		           PRIu64 "), more than %" PRId64 " s", rc->seq, (double)(r->cps[j].ts - rc->ts) / NS,
		           r->cps[j].seq, r->rp.log.checkpoint_max_seconds);
		alert_seq(r, al, rc->seq);
		alert_seq(r, al, r->cps[j].seq);
	}
}

static int
cmp_alert(const void *a, const void *b)
{
	const struct gw_risk_alert *x = a, *y = b;
	int c;

	if (x->ts_ns != y->ts_ns)
		return x->ts_ns < y->ts_ns ? -1 : 1;
	if ((c = strcmp(x->rule, y->rule)) != 0)
		return c;
	if (x->n_seqs && y->n_seqs && x->seqs[0] != y->seqs[0])
		return x->seqs[0] < y->seqs[0] ? -1 : 1;
	return strcmp(x->subject, y->subject);
}

/* Every alert's evidence ascending and without repeats (idempotent). */
static void
tidy_alerts(struct gw_risk *r)
{
	for (size_t i = 0; i < r->n_alerts; i++) {
		struct gw_risk_alert *a = &r->alerts[i];
		size_t u = 0;
		sort_(a->seqs, a->n_seqs, sizeof(*a->seqs), cmp_u64);
		for (size_t k = 0; k < a->n_seqs; k++)
			if (u == 0 || a->seqs[u - 1] != a->seqs[k])
				a->seqs[u++] = a->seqs[k];
		a->n_seqs = u;
		sort_(a->apps, a->n_apps, sizeof(*a->apps), cmp_u64);
	}
}

static void
run_rules(struct gw_risk *r)
{
	sort_(r->voids, r->n_voids, sizeof(*r->voids), cmp_u64);
	apply_voids(r);
	rule_splitting(r);
	rule_ratio(r);
	rule_volume(r);
	rule_habits(r);
	rule_probing(r);
	rule_quotas(r);
	rule_checkpoints(r);
	rule_expiring(r);
	tidy_alerts(r);
}

int
gw_risk_evaluate(struct gw_risk *r, const struct gw_risk_alert **alerts, size_t *n)
{
	size_t from;

	*alerts = NULL;
	*n = 0;
	if (r->finished)
		return -1;
	drop_batch(r);
	from = r->n_alerts;
	run_rules(r);
	r->batch_from = from;
	/* Sorted as a copy: the alerts of add_record stay before batch_from. */
	if (grow((void **)&r->out, &r->cap_out, r->n_alerts + 1, sizeof(*r->out)) < 0) {
		r->oom = true;
		return -1;
	}
	if (r->n_alerts > 0)
		memcpy(r->out, r->alerts, r->n_alerts * sizeof(*r->out));
	sort_(r->out, r->n_alerts, sizeof(*r->out), cmp_alert);
	*alerts = r->out;
	*n = r->n_alerts;
	return r->oom ? -1 : 0;
}

int
gw_risk_finish(struct gw_risk *r, const struct gw_risk_alert **alerts, size_t *n)
{
	if (!r->finished) {
		r->finished = true;
		drop_batch(r);
		run_rules(r);
		sort_(r->alerts, r->n_alerts, sizeof(*r->alerts), cmp_alert);
	}
	*alerts = r->alerts;
	*n = r->n_alerts;
	return r->oom ? -1 : 0;
}
