/*
 * The online risk engine (online.h): the audit writer's hand-off queue,
 * the thread that feeds the records to the rules (risk.c), catches up from
 * the store by seq when the queue overflowed, evaluates at most every so
 * often, and stores each new or grown alert inside an audit record of its
 * own (alert_raise, alert_update), so the log tells every alert.
 */
#include "online.h"
#include "risk.h"
#include "alertstore.h"
#include "audit.h"
#include "auditfmt.h"
#include "auth.h"
#include "log.h"
#include "notify/notify.h"
#include "protocol.h"
#include "server.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#define NS 1000000000LL
/* The whole-history rules cost the history's length at each evaluation:
 * at most every EVAL_MIN_MS, and never more than 1/EVAL_SHARE of the
 * thread's time. */
#define EVAL_MIN_MS   1000
#define EVAL_SHARE    20
#define TICK_MS       1000   /* checkpoints and a changed policy are looked for */

/* One record handed over: the row and its strings in one block. */
struct qrow {
	struct gw_audit_row row;
	char buf[];
};

/* Key of a stored alert -> fingerprint of its evidence and why. */
struct known { uint64_t key, fp; bool used; };

/* The log's own chain (log.verify_failed): what broke, where. */
#define LOG_SUBJECT_MAX 96
#define LOG_WHAT_MAX    512
struct log_broken {
	char site[LOG_SUBJECT_MAX];
	uint64_t seq;                /* 0: no record to name */
	int64_t ts_ns;
	char what[LOG_WHAT_MAX];
};
/* Problems one look at the chain (or one audit_verify) hands over at
 * most: a log rewritten from one record on breaks once per record. */
#define LOG_BROKEN_MAX  16
/* Records one look reads at most (the start over a log with no
 * checkpoint reads it all, a page of this size a second). */
#define LOG_CHECK_PAGE  20000

struct gw_risk_online {
	struct gw_ctx *ctx;
	pthread_t th;
	bool started;

	pthread_mutex_t lock;        /* the queue, stop and stats */
	pthread_cond_t cond;
	struct qrow **q;
	size_t q_max, q_head, q_n;
	bool overflow, stop;
	struct gw_risk_online_stats stats;

	/* Thread-only state. */
	struct gw_snapshot *snap;    /* the policy the rules use */
	struct gw_risk *r;
	uint64_t seq;                /* last record added to r */
	uint64_t cp_seq;             /* last checkpoint added to r */
	bool dirty;                  /* records since the last evaluation */
	int64_t eval_ms;             /* wait between evaluations */
	struct known *kn;
	size_t kn_cap, kn_n;

	/* The chain as checked by the thread (log_check): the last record
	 * whose link and hash held, and the last checkpoint looked at. */
	bool lc_started;
	uint64_t lc_seq;
	uint8_t lc_hash[GW_AUDIT_HASH_LEN];
	uint64_t lc_cp_id, lc_cp_seq;
	uint8_t lc_cp_hash[GW_AUDIT_HASH_LEN];
	bool lc_cp_known;
	struct log_broken lc_found[LOG_BROKEN_MAX];
	size_t lc_n;
	/* Verification failures of audit_verify requests, under lock. */
	struct log_broken told[LOG_BROKEN_MAX];
	size_t told_n;
};

static int64_t
mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- the hand-off (on the audit writer's thread) ---- */

static size_t
slen(const char *s)
{
	return s ? strlen(s) + 1 : 0;
}

static const char *
scopy(char **p, const char *s)
{
	size_t n = slen(s);
	char *d = *p;

	if (s == NULL)
		return NULL;
	memcpy(d, s, n);
	*p += n;
	return d;
}

/* What the rules read of a record, in one allocation. */
static struct qrow *
qrow_copy(const struct gw_audit_row *r)
{
	size_t n = slen(r->action) + slen(r->outcome) + slen(r->reason) + slen(r->actor) +
	           slen(r->exe) + slen(r->host) + slen(r->seal) + slen(r->detail);
	struct qrow *q = malloc(sizeof(*q) + n);
	char *p;

	if (q == NULL)
		return NULL;
	p = q->buf;
	memset(&q->row, 0, sizeof(q->row));
	q->row.seq = r->seq;
	q->row.ts_ns = r->ts_ns;
	q->row.uid = r->uid;
	q->row.pid = r->pid;
	q->row.application = r->application;
	q->row.mechanism = r->mechanism;
	q->row.action = scopy(&p, r->action);
	q->row.outcome = scopy(&p, r->outcome);
	q->row.reason = scopy(&p, r->reason);
	q->row.actor = scopy(&p, r->actor);
	q->row.exe = scopy(&p, r->exe);
	q->row.host = scopy(&p, r->host);
	q->row.seal = scopy(&p, r->seal);
	q->row.detail = scopy(&p, r->detail);
	return q;
}

static void
handoff(void *arg, const struct gw_audit_row *rows, size_t n)
{
	struct gw_risk_online *ro = arg;

	pthread_mutex_lock(&ro->lock);
	for (size_t i = 0; i < n; i++) {
		struct qrow *q;
		/* Full (or no memory): dropped here, read back from the store
		 * by the thread, which sees the gap. */
		if (ro->q_n == ro->q_max || (q = qrow_copy(&rows[i])) == NULL) {
			if (!ro->overflow)
				ro->stats.overflows++;
			ro->overflow = true;
			continue;
		}
		ro->q[(ro->q_head + ro->q_n++) % ro->q_max] = q;
	}
	pthread_cond_signal(&ro->cond);
	pthread_mutex_unlock(&ro->lock);
}

/* ---- the thread ---- */

static uint64_t
fnv(uint64_t h, const char *s)
{
	for (; s && *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ULL;
	return (h ^ 0xff) * 1099511628211ULL;
}

static struct known *
known_slot(struct gw_risk_online *ro, uint64_t key)
{
	size_t i;

	if ((ro->kn_n + 1) * 2 > ro->kn_cap) {
		size_t cap = ro->kn_cap ? ro->kn_cap * 2 : 256;
		struct known *k = calloc(cap, sizeof(*k));
		if (k == NULL)
			return NULL;
		for (size_t j = 0; j < ro->kn_cap; j++) {
			if (!ro->kn[j].used)
				continue;
			for (i = ro->kn[j].key & (cap - 1); k[i].used; i = (i + 1) & (cap - 1))
				;
			k[i] = ro->kn[j];
		}
		free(ro->kn);
		ro->kn = k;
		ro->kn_cap = cap;
	}
	for (i = key & (ro->kn_cap - 1); ro->kn[i].used && ro->kn[i].key != key;
	     i = (i + 1) & (ro->kn_cap - 1))
		;
	return &ro->kn[i];
}

static int
known_set(struct gw_risk_online *ro, uint64_t key, uint64_t fp)
{
	struct known *k = known_slot(ro, key);

	if (k == NULL)
		return -1;
	if (!k->used) {
		k->used = true;
		k->key = key;
		ro->kn_n++;
	}
	k->fp = fp;
	return 0;
}

/* An alert's name in the store: its rule, subject and first evidence
 * record, which later records never change (they only add evidence). */
static void
alert_key(const struct gw_risk_alert *a, char *buf, size_t len)
{
	snprintf(buf, len, "%s|%" PRIu64 "|%s", a->rule, a->n_seqs ? a->seqs[0] : 0, a->subject);
}

static char *
ints_json(const uint64_t *u, const int64_t *s, size_t n)
{
	json_t *arr = json_array();
	char *out;

	for (size_t i = 0; arr && i < n; i++)
		json_array_append_new(arr, json_integer(u ? (json_int_t)u[i] : (json_int_t)s[i]));
	out = arr ? json_dumps(arr, JSON_COMPACT) : NULL;
	json_decref(arr);
	return out;
}

static uint64_t
fingerprint(const char *seqs, const char *apps, const char *why)
{
	return fnv(fnv(fnv(1469598103934665603ULL, seqs), apps), why);
}

static int
load_known(void *arg, const struct gw_alert_row *a)
{
	struct gw_risk_online *ro = arg;

	return known_set(ro, fnv(1469598103934665603ULL, a->key),
	                 fingerprint(a->seqs, a->apps, a->why)) < 0 ? -1 : 0;
}

struct put {
	struct gw_risk_online *ro;
	const struct gw_alert_row *row;
	int64_t id;
	bool created;
};

/* A new alert's notices to the auditors (docs/notifications.md, event
 * alert), in the transaction that stores it: an alert stored is an alert
 * its auditors will be told of, whatever happens to the gateway next.
 * Without notify: in the configuration, nothing. */
static int
alert_notices_tx(struct gw_store *st, struct put *p, char *err, size_t errlen)
{
	struct gw_risk_online *ro = p->ro;
	const struct gw_notify_conf *nc = ro->ctx->cfg ? ro->ctx->cfg->notify : NULL;
	const struct gw_policy *pol = ro->snap != NULL ? ro->snap->policy : NULL;
	const struct gw_alert_row *a = p->row;
	char tag[64];
	json_t *d;
	int rv = 0;

	if (nc == NULL || pol == NULL)
		return 0;
	d = json_pack("{sIssssssssss}", "alert", (json_int_t)p->id, "rule", a->rule, "severity",
	              a->severity, "subject", a->subject ? a->subject : "", "why", a->why, "site",
	              gw_ctx_site(ro->ctx));
	if (d == NULL) {
		sg_seterr(err, errlen, "out of memory");
		return -1;
	}
	for (size_t i = 0; i < pol->n_people && rv == 0; i++) {
		if (!gw_person_has_role(&pol->people[i], "auditor"))
			continue;
		snprintf(tag, sizeof(tag), "alert:%s:%" PRId64 ":%zu", gw_ctx_site(ro->ctx), p->id, i);
		rv = gw_notify_enqueue_tx(st, nc, pol, GW_NOTIFY_ALERT, pol->people[i].id, 0, d, tag,
		                          time(NULL), err, errlen);
	}
	json_decref(d);
	return rv;
}

static int
put_apply(struct gw_store *st, void *arg, char *err, size_t errlen)
{
	struct put *p = arg;

	if (gw_alertstore_put_tx(st, p->row, &p->id, &p->created, err, errlen) < 0)
		return -1;
	return p->created ? alert_notices_tx(st, p, err, errlen) : 0;
}

/* Where a new alert is raised, once it is stored with its record and its
 * notices (alert_notices_tx). */
static void
alert_raised(struct gw_risk_online *ro, int64_t id, const struct gw_alert_row *a)
{
	(void)ro;
	gw_log_warn("risk: alert %" PRId64 " %s (%s): %s", id, a->rule, a->severity, a->why);
}

/* Stores a (new, or its evidence grown) with its audit record. */
static int
store_alert(struct gw_risk_online *ro, const struct gw_risk_alert *a)
{
	char key[GW_ALERT_KEY_MAX], err[256] = "";
	char *seqs = ints_json(a->seqs, NULL, a->n_seqs), *apps = ints_json(NULL, a->apps, a->n_apps);
	char *detail = NULL;
	uint64_t kh, fp, seq;
	struct known *k;
	bool fresh;
	int rv = -1;
	json_t *d = NULL;

	alert_key(a, key, sizeof(key));
	if (seqs == NULL || apps == NULL)
		goto out;
	kh = fnv(1469598103934665603ULL, key);
	fp = fingerprint(seqs, apps, a->why);
	if ((k = known_slot(ro, kh)) == NULL)
		goto out;
	if (k->used && k->fp == fp) {
		rv = 0;   /* stored as it is */
		goto out;
	}
	fresh = !k->used;
	{
		struct gw_alert_row row = {
			.key = key, .rule = a->rule, .severity = gw_risk_severity_name(a->severity),
			.subject = a->subject, .why = a->why, .ts_ns = a->ts_ns, .seqs = seqs,
			.apps = apps, .raised = (int64_t)time(NULL),
		};
		struct put p = { .ro = ro, .row = &row };
		struct gw_audit_event ev = {
			.action = fresh ? "alert_raise" : "alert_update", .outcome = "ok",
			/* a record the gateway makes on its own (docs/audit.md) */
			.uid = (int64_t)getuid(), .pid = (int64_t)getpid(), .exe = "sealgated",
			.host = ro->ctx->host,
		};
		d = json_pack("{s:s, s:s, s:s, s:s, s:I}", "key", key, "rule", a->rule, "severity",
		              row.severity, "why", a->why, "evidence", (json_int_t)a->n_seqs);
		if (d == NULL || (detail = json_dumps(d, JSON_COMPACT)) == NULL)
			goto out;
		ev.detail = detail;
		if (gw_audit_record_with(ro->ctx->audit, &ev, put_apply, &p, &seq, err,
		                         sizeof(err)) < 0) {
			gw_log_error("risk: alert %s could not be stored: %s", key, err);
			goto out;
		}
		if (known_set(ro, kh, fp) < 0)
			goto out;
		if (p.created) {
			pthread_mutex_lock(&ro->lock);
			ro->stats.alerts_raised++;
			pthread_mutex_unlock(&ro->lock);
			alert_raised(ro, p.id, &row);
		}
	}
	rv = 0;
out:
	json_decref(d);
	free(detail);
	free(seqs);
	free(apps);
	return rv;
}

static int
evaluate(struct gw_risk_online *ro)
{
	const struct gw_risk_alert *al;
	size_t n;
	int64_t t0 = mono_ms(), took;
	int rv = 0;

	/* The gateway's clock (the test clock under test_clock): approvals
	 * about to expire are judged by it, not by the last record. */
	gw_risk_set_now(ro->r, (int64_t)gw_auth_now(ro->ctx->auth) * 1000000000LL);
	if (gw_risk_evaluate(ro->r, &al, &n) < 0) {
		gw_log_error("risk: out of memory evaluating the rules");
		return -1;
	}
	for (size_t i = 0; i < n; i++)
		if (store_alert(ro, &al[i]) < 0)
			rv = -1;   /* tried again at the next evaluation */
	took = mono_ms() - t0;
	ro->eval_ms = took * EVAL_SHARE > EVAL_MIN_MS ? took * EVAL_SHARE : EVAL_MIN_MS;
	if (rv == 0)
		ro->dirty = false;
	pthread_mutex_lock(&ro->lock);
	ro->stats.evaluations++;
	if (rv == 0)
		ro->stats.evaluated_seq = ro->seq;
	pthread_mutex_unlock(&ro->lock);
	return 0;
}

/* ---- the log itself: log.verify_failed ----
 *
 * The gateway notices a broken chain by itself, not only when an auditor
 * verifies: each second the thread reads the records stored since the
 * last it checked and checks each one's link and hash, and each new
 * checkpoint's signature (with the certificate it carries, as
 * audit_verify does without a pin), its place in the checkpoint chain and
 * that the record it covers still has its hash. At start it begins at
 * the last checkpoint (its record checked too), not at seq 1: the whole
 * log is `sealctl audit verify`'s to read. A failed audit_verify hands its
 * problems over too (gw_risk_online_log_broken). Each problem is one
 * alert, high, keyed by the record it names. */

static void
lc_found(struct gw_risk_online *ro, uint64_t seq, int64_t ts_ns, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void
lc_found(struct gw_risk_online *ro, uint64_t seq, int64_t ts_ns, const char *fmt, ...)
{
	struct log_broken *b;
	va_list ap;

	if (ro->lc_n == LOG_BROKEN_MAX)
		return;
	b = &ro->lc_found[ro->lc_n++];
	snprintf(b->site, sizeof(b->site), "%s", gw_ctx_site(ro->ctx));
	b->seq = seq;
	b->ts_ns = ts_ns;
	va_start(ap, fmt);
	vsnprintf(b->what, sizeof(b->what), fmt, ap);
	va_end(ap);
}

/* The seq a verifier's problem names ("seq 12 …", "checkpoint at seq 12
 * …", "checkpoint id 3 (…) covers seq 12 …"), or 0. */
static uint64_t
problem_seq(const char *p)
{
	const char *s = strstr(p, "seq ");

	return s != NULL ? strtoull(s + 4, NULL, 10) : 0;
}

void
gw_risk_online_log_broken(struct gw_risk_online *ro, const char *site, const char *problem,
                          const char *by)
{
	struct log_broken *b;

	if (ro == NULL)
		return;
	pthread_mutex_lock(&ro->lock);
	if (ro->told_n < LOG_BROKEN_MAX) {
		b = &ro->told[ro->told_n++];
		snprintf(b->site, sizeof(b->site), "%s", site);
		b->seq = problem_seq(problem);
		b->ts_ns = (int64_t)time(NULL) * NS;
		snprintf(b->what, sizeof(b->what), "%s (audit_verify by %s)", problem, by);
		pthread_cond_signal(&ro->cond);
	}
	pthread_mutex_unlock(&ro->lock);
}

static int
raise_broken(struct gw_risk_online *ro, const struct log_broken *b)
{
	char subject[LOG_SUBJECT_MAX + 32], why[LOG_SUBJECT_MAX + LOG_WHAT_MAX + 64];
	uint64_t seqs[1] = { b->seq };
	struct gw_risk_alert a = {
		.rule = "log.verify_failed", .severity = GW_RISK_HIGH, .ts_ns = b->ts_ns,
		.subject = subject, .why = why, .seqs = b->seq ? seqs : NULL,
		.n_seqs = b->seq ? 1 : 0,
	};

	snprintf(subject, sizeof(subject), "audit log of site %s", b->site);
	snprintf(why, sizeof(why), "the audit log of site %s does not verify: %s", b->site,
	         b->what);
	return store_alert(ro, &a);
}

static int
lc_row(void *arg, const struct gw_audit_row *r)
{
	struct gw_risk_online *ro = arg;
	uint8_t h[GW_AUDIT_HASH_LEN];
	unsigned long long seq = r->seq;

	if (ro->lc_n == LOG_BROKEN_MAX)
		return 1;   /* the rest at the next look */
	if (r->seq != ro->lc_seq + 1)
		lc_found(ro, ro->lc_seq + 1, r->ts_ns, "seq %llu: missing (a record was removed; "
		         "the next present is seq %llu)", (unsigned long long)ro->lc_seq + 1, seq);
	else if (r->bad_column)
		lc_found(ro, seq, r->ts_ns, "seq %llu: column %s holds a type sealgate never "
		         "writes (record changed)", seq, r->bad_column);
	else if (r->prev_hash_len != GW_AUDIT_HASH_LEN || r->prev_hash == NULL ||
	         memcmp(r->prev_hash, ro->lc_hash, GW_AUDIT_HASH_LEN) != 0)
		lc_found(ro, seq, r->ts_ns, "seq %llu: prev_hash is not the hash of seq %llu "
		         "(record inserted, replaced or reordered)", seq, seq - 1);
	else if (r->hash_len != GW_AUDIT_HASH_LEN || r->hash == NULL ||
	         gw_audit_row_hash(r->prev_hash, r, h) != 0 ||
	         memcmp(h, r->hash, GW_AUDIT_HASH_LEN) != 0)
		lc_found(ro, seq, r->ts_ns, "seq %llu: record changed (its content does not match "
		         "its hash)", seq);
	/* Said once: the chain goes on from the hash stored, so a later
	 * break is a problem of its own. */
	ro->lc_seq = r->seq;
	if (r->hash_len == GW_AUDIT_HASH_LEN && r->hash != NULL)
		memcpy(ro->lc_hash, r->hash, GW_AUDIT_HASH_LEN);
	else
		memset(ro->lc_hash, 0, GW_AUDIT_HASH_LEN);
	return 0;
}

/* One checkpoint, copied out of the scan: the record it covers is read
 * after the scan (no read of the store inside another). */
struct lc_cp {
	uint64_t id, seq;
	int64_t ts_ns;
	uint8_t hash[GW_AUDIT_HASH_LEN], own[GW_AUDIT_HASH_LEN];
	bool chained, own_ok;
	uint64_t prev_id;
	uint8_t prev_hash[GW_AUDIT_HASH_LEN];
	int sig;                     /* gw_audit_checkpoint_verify */
	char sig_err[160];
};

struct lc_cps {
	struct gw_risk_online *ro;
	bool last_only;              /* the start: the last checkpoint only */
	struct lc_cp v[LOG_BROKEN_MAX];
	size_t n;
	bool more;
};

static int
lc_cp_add(void *arg, const struct gw_audit_checkpoint *cp)
{
	struct lc_cps *c = arg;
	struct lc_cp *k;

	if (c->ro->lc_cp_known &&
	    (cp->seq < c->ro->lc_cp_seq || (cp->id != 0 ? cp->id <= c->ro->lc_cp_id
	                                                : cp->seq == c->ro->lc_cp_seq)))
		return 0;   /* looked at already */
	if (c->last_only)
		c->n = 0;
	if (c->n == LOG_BROKEN_MAX) {
		c->more = true;
		return 1;
	}
	k = &c->v[c->n++];
	memset(k, 0, sizeof(*k));
	k->id = cp->id;
	k->seq = cp->seq;
	k->ts_ns = cp->ts_ns;
	memcpy(k->hash, cp->hash, sizeof(k->hash));
	k->chained = cp->chained;
	k->prev_id = cp->prev_id;
	memcpy(k->prev_hash, cp->prev_hash, sizeof(k->prev_hash));
	k->own_ok = gw_audit_checkpoint_hash(cp, k->own) == 0;
	/* The signature is checked here, while its bytes are at hand: for
	 * each new one (a few a second), not for every one the start passes
	 * on its way to the last (it reads that one again, below). */
	k->sig = c->last_only ? -1
	                      : gw_audit_checkpoint_verify(cp, NULL, 0, k->sig_err, sizeof(k->sig_err));
	return 0;
}

struct lc_one { bool seen; uint64_t seq; int64_t ts_ns; bool ok; uint8_t hash[GW_AUDIT_HASH_LEN]; };

static int
lc_one_row(void *arg, const struct gw_audit_row *r)
{
	struct lc_one *o = arg;
	uint8_t h[GW_AUDIT_HASH_LEN];

	o->seen = true;
	o->seq = r->seq;
	o->ts_ns = r->ts_ns;
	o->ok = !r->bad_column && r->hash_len == GW_AUDIT_HASH_LEN && r->hash != NULL &&
	        r->prev_hash_len == GW_AUDIT_HASH_LEN && r->prev_hash != NULL &&
	        gw_audit_row_hash(r->prev_hash, r, h) == 0 &&
	        memcmp(h, r->hash, GW_AUDIT_HASH_LEN) == 0;
	if (r->hash_len == GW_AUDIT_HASH_LEN && r->hash != NULL)
		memcpy(o->hash, r->hash, GW_AUDIT_HASH_LEN);
	return 1;
}

/* The record a checkpoint covers, as stored now: its own hash holds, and
 * it is the hash the checkpoint signed. */
static int
lc_cp_record(struct gw_risk_online *ro, const struct lc_cp *k, struct lc_one *o, char *err,
             size_t errlen)
{
	struct gw_audit_filter f = { .after_seq = k->seq - 1, .upto_seq = k->seq, .limit = 1 };
	unsigned long long seq = k->seq;

	memset(o, 0, sizeof(*o));
	err[0] = '\0';
	if (gw_store_audit_query(ro->ctx->store, &f, lc_one_row, o, err, errlen) < 0)
		return -1;
	if (!o->seen || o->seq != k->seq)
		lc_found(ro, k->seq, k->ts_ns, "checkpoint at seq %llu: no such record (removed)", seq);
	else if (!o->ok)
		lc_found(ro, k->seq, o->ts_ns, "seq %llu: record changed (its content does not "
		         "match its hash)", seq);
	else if (memcmp(o->hash, k->hash, GW_AUDIT_HASH_LEN) != 0)
		lc_found(ro, k->seq, o->ts_ns, "seq %llu: differs from the signed checkpoint id "
		         "%llu (the log was rewritten)", seq, (unsigned long long)k->id);
	return 0;
}

static void
lc_cp_check(struct gw_risk_online *ro, const struct lc_cp *k)
{
	unsigned long long id = k->id;

	if (k->sig == 0)
		lc_found(ro, k->seq, k->ts_ns, "checkpoint id %llu at seq %llu: %s (the checkpoint "
		         "was forged or changed)", id, (unsigned long long)k->seq, k->sig_err);
	else if (ro->lc_cp_known && k->chained &&
	         (k->prev_id != ro->lc_cp_id ||
	          memcmp(k->prev_hash, ro->lc_cp_hash, GW_AUDIT_HASH_LEN) != 0))
		lc_found(ro, k->seq, k->ts_ns, "checkpoint id %llu at seq %llu does not follow "
		         "checkpoint id %llu (a checkpoint was removed, inserted or changed)", id,
		         (unsigned long long)k->seq, (unsigned long long)ro->lc_cp_id);
	ro->lc_cp_known = true;
	ro->lc_cp_id = k->id;
	ro->lc_cp_seq = k->seq;
	memcpy(ro->lc_cp_hash, k->own, GW_AUDIT_HASH_LEN);
}

/* One look: the records since the last, then the new checkpoints; then
 * an alert for each problem found (and each an audit_verify handed
 * over). 0, or -1 with err when the store could not be read. */
static int
log_check(struct gw_risk_online *ro, char *err, size_t errlen)
{
	struct gw_audit_filter f = { 0 };
	struct lc_cps *c = NULL;
	struct log_broken told[LOG_BROKEN_MAX];
	size_t n_told;
	int rv = -1;

	if ((c = calloc(1, sizeof(*c))) == NULL) {
		sg_seterr(err, errlen, "out of memory");
		return -1;
	}
	c->ro = ro;
	err[0] = '\0';
	if (!ro->lc_started) {
		/* From the last checkpoint, its record checked. */
		c->last_only = true;
		if (gw_store_checkpoint_scan(ro->ctx->store, 0, 0, lc_cp_add, c, err, errlen) < 0)
			goto out;
		if (c->n == 1) {
			/* The last one again, its signature checked this time. */
			uint64_t at = c->v[0].seq;
			c->last_only = false;
			c->n = 0;
			if (gw_store_checkpoint_scan(ro->ctx->store, at, at, lc_cp_add, c, err,
			                             errlen) < 0)
				goto out;
			if (c->n > 1) {
				c->v[0] = c->v[c->n - 1];   /* the highest id at that seq */
				c->n = 1;
			}
		}
		if (c->n == 1) {
			struct lc_one o = { 0 };
			/* (a checkpoint of the empty log covers no record) */
			if (c->v[0].seq > 0 && lc_cp_record(ro, &c->v[0], &o, err, errlen) < 0)
				goto out;
			lc_cp_check(ro, &c->v[0]);
			ro->lc_seq = c->v[0].seq;
			memcpy(ro->lc_hash, o.seen && o.seq == c->v[0].seq ? o.hash : c->v[0].hash,
			       GW_AUDIT_HASH_LEN);
		}
		ro->lc_started = true;
	}
	f.after_seq = ro->lc_seq;
	f.limit = LOG_CHECK_PAGE;
	if (gw_store_audit_query(ro->ctx->store, &f, lc_row, ro, err, errlen) < 0)
		goto out;
	c->last_only = false;
	c->n = 0;
	if (gw_store_checkpoint_scan(ro->ctx->store, ro->lc_cp_seq, 0, lc_cp_add, c, err,
	                             errlen) < 0)
		goto out;
	for (size_t i = 0; i < c->n; i++) {
		struct lc_one o;
		/* A checkpoint ahead of the records read: at the next look. */
		if (c->v[i].seq > ro->lc_seq)
			break;
		if (c->v[i].seq > 0 && lc_cp_record(ro, &c->v[i], &o, err, errlen) < 0)
			goto out;
		lc_cp_check(ro, &c->v[i]);
	}
	rv = 0;
out:
	free(c);
	pthread_mutex_lock(&ro->lock);
	ro->stats.checked_seq = ro->lc_seq;
	n_told = ro->told_n;
	memcpy(told, ro->told, n_told * sizeof(*told));
	ro->told_n = 0;
	pthread_mutex_unlock(&ro->lock);
	for (size_t i = 0; i < ro->lc_n; i++) {
		gw_log_error("audit: the log does not verify: %s", ro->lc_found[i].what);
		raise_broken(ro, &ro->lc_found[i]);
	}
	ro->lc_n = 0;
	for (size_t i = 0; i < n_told; i++)
		raise_broken(ro, &told[i]);
	return rv;
}

static int
add_row(struct gw_risk_online *ro, const struct gw_audit_row *row)
{
	if (row->seq <= ro->seq)
		return 0;   /* seen already (read back, then handed over too) */
	if (gw_risk_add_record(ro->r, row) < 0)
		return -1;
	ro->seq = row->seq;
	ro->dirty = true;
	return 0;
}

static int
add_stored(void *arg, const struct gw_audit_row *row)
{
	struct gw_risk_online *ro = arg;

	if (add_row(ro, row) < 0)
		return -1;
	pthread_mutex_lock(&ro->lock);
	ro->stats.caught_up++;
	pthread_mutex_unlock(&ro->lock);
	return 0;
}

/* What the queue missed, read from the store in seq order. */
static int
catch_up(struct gw_risk_online *ro, char *err, size_t errlen)
{
	struct gw_audit_filter f = { .after_seq = ro->seq };

	err[0] = '\0';
	if (gw_store_audit_query(ro->ctx->store, &f, add_stored, ro, err, errlen) != 0) {
		if (err[0] == '\0')
			sg_seterr(err, errlen, "out of memory");
		return -1;
	}
	return 0;
}

static int
add_cp(void *arg, const struct gw_audit_checkpoint *cp)
{
	struct gw_risk_online *ro = arg;

	if (cp->seq <= ro->cp_seq)
		return 0;
	if (gw_risk_add_checkpoint(ro->r, cp->seq, cp->ts_ns) < 0)
		return -1;
	ro->cp_seq = cp->seq;
	ro->dirty = true;
	return 0;
}

static int
checkpoints(struct gw_risk_online *ro, char *err, size_t errlen)
{
	err[0] = '\0';
	if (gw_store_checkpoint_scan(ro->ctx->store, ro->cp_seq + 1, UINT64_MAX, add_cp, ro, err,
	                             errlen) != 0) {
		if (err[0] == '\0')
			sg_seterr(err, errlen, "out of memory");
		return -1;
	}
	return 0;
}

/* Empty rules with the policy in force; the log is read into them by
 * catch_up from seq 1. -1 on ENOMEM. */
static int
start_over(struct gw_risk_online *ro)
{
	gw_risk_free(&ro->r);
	gw_snapshot_put(&ro->snap);
	ro->snap = gw_snapshot_get(ro->ctx);
	ro->seq = ro->cp_seq = 0;
	ro->dirty = true;
	if (ro->snap == NULL || (ro->r = gw_risk_new(ro->snap->policy)) == NULL)
		return -1;
	return 0;
}

/* The store could not be read (a PostgreSQL server away, say): said once,
 * shown in the status, tried again every second until it can. */
static void
set_stalled(struct gw_risk_online *ro, bool stalled, const char *why)
{
	bool was;

	pthread_mutex_lock(&ro->lock);
	was = ro->stats.failed;
	ro->stats.failed = stalled;
	pthread_mutex_unlock(&ro->lock);
	if (stalled && !was)
		gw_log_error("risk: reading the log from seq %" PRIu64 ": %s; no alert is raised "
		             "until it can be read (tried again every second)", ro->seq + 1, why);
	else if (!stalled && was)
		gw_log_info("risk: the log is read again, up to seq %" PRIu64, ro->seq);
}

static void *
thread_main(void *arg)
{
	struct gw_risk_online *ro = arg;
	struct qrow **batch = NULL;
	int64_t last_eval = INT64_MIN / 2, last_tick = mono_ms();
	bool fresh = true, behind = true;
	char err[256];

	pthread_setname_np(pthread_self(), "sg-risk");
	if ((batch = calloc(ro->q_max + 1, sizeof(*batch))) == NULL)
		goto fail;
	for (;;) {
		size_t n = 0;
		bool overflow, tick, told;
		int64_t t;

		pthread_mutex_lock(&ro->lock);
		if (ro->q_n == 0 && !ro->stop && !ro->overflow && !fresh && !behind &&
		    ro->told_n == 0) {
			struct timespec dl;
			clock_gettime(CLOCK_REALTIME, &dl);
			dl.tv_sec += 1;
			pthread_cond_timedwait(&ro->cond, &ro->lock, &dl);
		}
		if (ro->stop) {
			pthread_mutex_unlock(&ro->lock);
			break;
		}
		while (ro->q_n > 0) {
			batch[n++] = ro->q[ro->q_head];
			ro->q_head = (ro->q_head + 1) % ro->q_max;
			ro->q_n--;
		}
		overflow = ro->overflow;
		ro->overflow = false;
		told = ro->told_n > 0;
		ro->stats.handed += n;
		pthread_mutex_unlock(&ro->lock);

		for (size_t i = 0; i < n; i++) {
			/* A gap: what is missing is read from the store first. */
			if (!fresh && !behind && batch[i]->row.seq > ro->seq + 1)
				behind = true;
			if (!fresh && !behind && add_row(ro, &batch[i]->row) < 0)
				goto fail;
			free(batch[i]);
			batch[i] = NULL;
		}
		behind |= overflow;
		t = mono_ms();
		tick = t - last_tick >= TICK_MS;
		if (tick) {
			struct gw_snapshot *now = gw_snapshot_get(ro->ctx);
			last_tick = t;
			if (now != ro->snap && !fresh) {
				/* A new policy: its parameters over the whole log. */
				gw_log_info("risk: the policy changed: the rules run anew over the log");
				fresh = true;
			}
			gw_snapshot_put(&now);
			/* An approval entering its last hours raises its alert
			 * with no record to say so: the clock is the event. */
			if (!fresh && ro->r != NULL &&
			    (int64_t)gw_auth_now(ro->ctx->auth) * 1000000000LL >= gw_risk_next_due(ro->r))
				ro->dirty = true;
		}
		if (fresh) {
			if (start_over(ro) < 0)
				goto fail;
			fresh = false;
			behind = true;
		}
		if (behind || tick) {
			if (catch_up(ro, err, sizeof(err)) < 0 || checkpoints(ro, err, sizeof(err)) < 0) {
				/* (the wait above is skipped while behind: this
				 * paces the retries) */
				const struct timespec pause = { 1, 0 };
				set_stalled(ro, true, err);
				behind = true;
				nanosleep(&pause, NULL);
				continue;
			}
			set_stalled(ro, false, NULL);
			behind = false;
		}
		/* The log's own chain, each second (and at once when an
		 * audit_verify found it broken). */
		if ((tick || told || !ro->lc_started) && log_check(ro, err, sizeof(err)) < 0)
			gw_log_error("risk: checking the log's chain from seq %" PRIu64 ": %s",
			             ro->lc_seq + 1, err);
		if (ro->dirty && t - last_eval >= ro->eval_ms) {
			evaluate(ro);
			last_eval = mono_ms();
		}
		pthread_mutex_lock(&ro->lock);
		ro->stats.seq = ro->seq;
		pthread_mutex_unlock(&ro->lock);
	}
	free(batch);
	return NULL;
fail:
	/* Out of memory: said loudly and in the status, the log is no longer
	 * watched. */
	gw_log_error("risk: out of memory: the online rules stopped; alerts are no longer raised");
	pthread_mutex_lock(&ro->lock);
	ro->stats.failed = true;
	pthread_mutex_unlock(&ro->lock);
	for (size_t i = 0; batch && i < ro->q_max + 1; i++)
		free(batch[i]);
	free(batch);
	return NULL;
}

int
gw_risk_online_start(struct gw_ctx *ctx, size_t queue_max, struct gw_risk_online **out,
                     char *err, size_t errlen)
{
	struct gw_risk_online *ro;
	struct gw_alert_filter all = { 0 };

	*out = NULL;
	if (ctx->audit == NULL || ctx->store == NULL) {
		sg_seterr(err, errlen, "risk: no audit log to read");
		return -1;
	}
	if (gw_alertstore_init(ctx->store, err, errlen) < 0)
		return -1;
	if ((ro = calloc(1, sizeof(*ro))) == NULL)
		goto oom;
	ro->ctx = ctx;
	ro->q_max = queue_max;
	ro->eval_ms = EVAL_MIN_MS;
	pthread_mutex_init(&ro->lock, NULL);
	pthread_cond_init(&ro->cond, NULL);
	if ((ro->q = calloc(ro->q_max + 1, sizeof(*ro->q))) == NULL)
		goto oom;
	/* The alerts stored before: found again, they change nothing. */
	if (gw_alertstore_list(ctx->store, &all, load_known, ro, err, errlen) != 0) {
		if (err[0] == '\0')
			sg_seterr(err, errlen, "risk: out of memory");
		gw_risk_online_stop(&ro);
		return -1;
	}
	/* Set before the thread reads the store: a record written between
	 * is both in the store and handed over, and added once. */
	gw_audit_set_observer(ctx->audit, handoff, ro);
	if (pthread_create(&ro->th, NULL, thread_main, ro) != 0) {
		gw_audit_set_observer(ctx->audit, NULL, NULL);
		sg_seterr(err, errlen, "risk: cannot start its thread");
		gw_risk_online_stop(&ro);
		return -1;
	}
	ro->started = true;
	*out = ro;
	return 0;
oom:
	sg_seterr(err, errlen, "risk: out of memory");
	gw_risk_online_stop(&ro);
	return -1;
}

void
gw_risk_online_stop(struct gw_risk_online **rop)
{
	struct gw_risk_online *ro = rop ? *rop : NULL;

	if (ro == NULL)
		return;
	if (ro->started) {
		gw_audit_set_observer(ro->ctx->audit, NULL, NULL);
		pthread_mutex_lock(&ro->lock);
		ro->stop = true;
		pthread_cond_signal(&ro->cond);
		pthread_mutex_unlock(&ro->lock);
		pthread_join(ro->th, NULL);
	}
	for (size_t i = 0; ro->q && i < ro->q_n; i++)
		free(ro->q[(ro->q_head + i) % ro->q_max]);
	free(ro->q);
	free(ro->kn);
	gw_risk_free(&ro->r);
	gw_snapshot_put(&ro->snap);
	pthread_mutex_destroy(&ro->lock);
	pthread_cond_destroy(&ro->cond);
	free(ro);
	*rop = NULL;
}

void
gw_risk_online_get_stats(struct gw_risk_online *ro, struct gw_risk_online_stats *out)
{
	pthread_mutex_lock(&ro->lock);
	*out = ro->stats;
	pthread_mutex_unlock(&ro->lock);
}
