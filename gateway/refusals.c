/*
 * The refusal limiter (refusals.h). One table of keys under one lock: a
 * refusal finds or takes its key, is recorded while the key's burst lasts
 * and counted after; a key whose interval ended owes one summary, written
 * outside the lock by whoever finds it first (the thread, a later refusal
 * of the key, a flush). Counts are exact: every refusal is either recorded
 * by its caller or in exactly one summary.
 */
#include "refusals.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <jansson.h>

#include "audit.h"
#include "dispatch.h"
#include "log.h"
#include "policy.h"
#include "protocol.h"

#define ACTION_MAX 32

struct key {
	bool used;
	bool known;                   /* the policy knows the uid's login */
	int64_t uid;                  /* -1: the bucket of unknown uids beyond their slots */
	uint64_t class;               /* reason class (0: every reason, for unknown uids) */
	char action[ACTION_MAX];
	int64_t start_ns;             /* this interval's first refusal */
	unsigned recorded;            /* recorded in full in this interval */
	uint64_t suppressed;          /* counted in this interval, owed in a summary */
	int64_t first_ns, last_ns;    /* of the counted ones */
	uint64_t reason_hash;         /* of the first counted reason */
	bool reasons_vary, actors_vary, actions_vary;
	char reason[GW_REFLIMIT_REASON_MAX];   /* the first counted one */
	char actor[SG_NAME_MAX + 1];  /* "" = none */
};

struct gw_reflimit {
	pthread_mutex_t lock;         /* the keys, stats, stop */
	pthread_cond_t wake;          /* a first count (a new deadline), or stop */
	gw_reflimit_sink_fn sink;
	void *arg;
	int64_t interval_ns;
	unsigned interval_s, burst, burst_unknown;
	struct key keys[GW_REFLIMIT_SLOTS];
	struct key other;             /* unknown uids that found no slot: one bucket */
	struct gw_reflimit_stats st;
	pthread_mutex_t flush_lock;   /* one flush at a time: it owns due[] */
	struct key due[GW_REFLIMIT_SLOTS + 1];
	pthread_t thread;
	bool thread_started, stop;
};

static int64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static uint64_t
fnv(uint64_t h, unsigned char c)
{
	return (h ^ c) * 1099511628211ULL;
}

/* The class of a reason: its words without what varies from one refusal
 * to the next (numbers, times, quoted names a client chose), so that
 * "(3 of 5 attempts used)" and "(4 of 5 …)" are one key, and a client
 * naming a new account each time does not make a new key each time. */
static uint64_t
reason_class(const char *reason)
{
	uint64_t h = 1469598103934665603ULL;
	char quote = 0;
	bool digits = false;

	for (const char *p = reason ? reason : ""; *p; p++) {
		unsigned char c = (unsigned char)*p;

		if (quote) {
			if (c != (unsigned char)quote)
				continue;
			quote = 0;
		} else if (c == '\'' || c == '"') {
			quote = (char)c;
		}
		if (c >= '0' && c <= '9') {
			if (digits)
				continue;
			digits = true;
			c = '#';
		} else {
			digits = false;
		}
		h = fnv(h, c);
	}
	return h;
}

static uint64_t
text_hash(const char *s)
{
	uint64_t h = 1469598103934665603ULL;

	for (const char *p = s ? s : ""; *p; p++)
		h = fnv(h, (unsigned char)*p);
	return h;
}

/* Copies src into dst (size > 0), cut at a character boundary: the copy
 * stays UTF-8 for the audit record and its JSON detail. */
static void
copy_utf8(char *dst, size_t size, const char *src)
{
	size_t n = src ? strlen(src) : 0;

	if (n >= size) {
		n = size - 1;
		while (n > 0 && ((unsigned char)src[n] & 0xc0) == 0x80)
			n--;
	}
	if (n > 0)
		memcpy(dst, src, n);
	dst[n] = '\0';
}

static bool
ended(const struct gw_reflimit *rl, const struct key *k, int64_t now)
{
	return now - k->start_ns >= rl->interval_ns;
}

static void
key_start(struct key *k, int64_t uid, bool known, uint64_t class, const char *action, int64_t now)
{
	memset(k, 0, sizeof(*k));
	k->used = true;
	k->known = known;
	k->uid = uid;
	k->class = class;
	copy_utf8(k->action, sizeof(k->action), action);
	k->start_ns = now;
}

/* The key's owed counts are handed to a summary: it starts counting anew
 * within the same interval (its burst stays spent). */
static void
key_owed_clear(struct key *k)
{
	k->suppressed = 0;
	k->first_ns = k->last_ns = 0;
	k->reason_hash = 0;
	k->reasons_vary = k->actors_vary = k->actions_vary = false;
	k->reason[0] = k->actor[0] = '\0';
}

static void
key_count(struct key *k, const char *action, const char *reason, const char *actor, int64_t now)
{
	char a[SG_NAME_MAX + 1];

	copy_utf8(a, sizeof(a), actor);
	if (k->suppressed++ == 0) {
		k->first_ns = now;
		k->reason_hash = text_hash(reason);
		copy_utf8(k->reason, sizeof(k->reason), reason);
		memcpy(k->actor, a, sizeof(a));
		if (k->action[0] == '\0')
			copy_utf8(k->action, sizeof(k->action), action);
	} else {
		k->reasons_vary |= text_hash(reason) != k->reason_hash;
		k->actors_vary |= strcmp(a, k->actor) != 0;
		k->actions_vary |= strncmp(k->action, action, sizeof(k->action) - 1) != 0;
	}
	k->last_ns = now;
}

/* One refusals_suppressed record for the counts of k (a copy). */
static void
write_summary(struct gw_reflimit *rl, const struct key *k)
{
	char reason[GW_REFLIMIT_REASON_MAX + 256], first[40], last[40], *detail = NULL;
	const char *action = k->actions_vary ? "several" : k->action;
	const char *vary = k->reasons_vary ? " (and other reasons)" : "";
	struct gw_audit_event ev;
	json_t *d;
	int rv;

	gw_audit_format_time(k->first_ns, 0, first, sizeof(first));
	gw_audit_format_time(k->last_ns, 0, last, sizeof(last));
	if (k->uid >= 0)
		snprintf(reason, sizeof(reason), "%" PRIu64 " more refusals of uid %" PRId64 " (%s) "
		         "from %s to %s: %s%s", k->suppressed, k->uid, action, first, last, k->reason, vary);
	else
		snprintf(reason, sizeof(reason), "%" PRIu64 " refusals of OS users the policy does not "
		         "know, beyond the %d counted one by one (%s) from %s to %s: %s%s", k->suppressed,
		         GW_REFLIMIT_UNKNOWN_SLOTS, action, first, last, k->reason, vary);
	d = json_object();
	if (d != NULL) {
		json_object_set_new(d, "uid", k->uid >= 0 ? json_integer(k->uid) : json_null());
		json_object_set_new(d, "action", json_string(action));
		json_object_set_new(d, "reason", json_string(k->reason));
		json_object_set_new(d, "reasons_vary", json_boolean(k->reasons_vary));
		json_object_set_new(d, "count", json_integer((json_int_t)k->suppressed));
		json_object_set_new(d, "recorded", json_integer(k->recorded));
		json_object_set_new(d, "first_ns", json_integer(k->first_ns));
		json_object_set_new(d, "last_ns", json_integer(k->last_ns));
		json_object_set_new(d, "interval", json_integer(rl->interval_s));
		json_object_set_new(d, "known", json_boolean(k->known));
		detail = json_dumps(d, JSON_COMPACT | JSON_SORT_KEYS);
		json_decref(d);
	}
	ev = (struct gw_audit_event){
		.action = "refusals_suppressed", .outcome = "denied", .reason = reason,
		.actor = k->actor[0] && !k->actors_vary ? k->actor : NULL,
		.uid = k->uid, .pid = -1, .detail = detail,
	};
	rv = rl->sink(rl->arg, &ev);
	free(detail);
	if (rv != 0) {
		/* The fact stays in the log at least. */
		gw_log_error("refusal summary could not be recorded: %s", reason);
		return;
	}
	pthread_mutex_lock(&rl->lock);
	rl->st.summaries++;
	pthread_mutex_unlock(&rl->lock);
}

bool
gw_reflimit_take(struct gw_reflimit *rl, int64_t uid, bool known, const char *action,
                 const char *reason, const char *actor, int64_t now)
{
	uint64_t class = known ? reason_class(reason) : 0;
	struct key *k = NULL, *free_k = NULL, due;
	char act[ACTION_MAX];
	size_t unknown_held = 0;
	bool owed = false, counted;

	if (rl == NULL)
		return false;
	copy_utf8(act, sizeof(act), action);
	pthread_mutex_lock(&rl->lock);
	rl->st.taken++;
	for (size_t i = 0; i < GW_REFLIMIT_SLOTS; i++) {
		struct key *e = &rl->keys[i];

		if (e->used && e->suppressed == 0 && ended(rl, e, now))
			e->used = false;      /* its interval is over and owes nothing */
		if (!e->used) {
			if (free_k == NULL)
				free_k = e;
			continue;
		}
		unknown_held += !e->known;
		if (k == NULL && e->uid == uid && e->known == known && e->class == class &&
		    strcmp(e->action, act) == 0)
			k = e;
	}
	if (k == NULL && !known && (free_k == NULL || unknown_held >= GW_REFLIMIT_UNKNOWN_SLOTS)) {
		/* Many unknown uids share one bucket: the table stays bounded
		 * and known users keep their slots. */
		k = &rl->other;
		if (k->used && !ended(rl, k, now))
			goto count;
		if (k->used && k->suppressed > 0) {
			due = *k;
			owed = true;
		}
		key_start(k, -1, false, 0, "", now);
		goto count;
	}
	if (k == NULL && free_k == NULL) {
		/* Full of keys: a known user's refusal is recorded, never lost. */
		rl->st.untracked++;
		pthread_mutex_unlock(&rl->lock);
		return false;
	}
	if (k == NULL) {
		k = free_k;
		key_start(k, uid, known, class, act, now);
	} else if (ended(rl, k, now)) {
		/* Its interval is over: the summary goes before this refusal,
		 * which is the first of a new interval. */
		due = *k;
		owed = true;
		key_start(k, uid, known, class, act, now);
	}
count:
	/* (nothing of the bucket is recorded one by one) */
	counted = k == &rl->other || k->recorded >= (known ? rl->burst : rl->burst_unknown);
	if (counted) {
		key_count(k, act, reason, actor, now);
		rl->st.suppressed++;
		if (k->suppressed == 1)
			pthread_cond_signal(&rl->wake);   /* a new deadline */
	} else {
		k->recorded++;
	}
	pthread_mutex_unlock(&rl->lock);
	if (owed)
		write_summary(rl, &due);
	return counted;
}

unsigned
gw_reflimit_flush(struct gw_reflimit *rl, int64_t now, bool all)
{
	size_t n = 0;

	if (rl == NULL)
		return 0;
	pthread_mutex_lock(&rl->flush_lock);
	pthread_mutex_lock(&rl->lock);
	for (size_t i = 0; i <= GW_REFLIMIT_SLOTS; i++) {
		struct key *e = i < GW_REFLIMIT_SLOTS ? &rl->keys[i] : &rl->other;
		bool over;

		if (!e->used)
			continue;
		over = ended(rl, e, now);
		if (!over && !all)
			continue;
		if (e->suppressed > 0)
			rl->due[n++] = *e;
		if (over)
			e->used = false;
		else
			key_owed_clear(e);
	}
	pthread_mutex_unlock(&rl->lock);
	for (size_t i = 0; i < n; i++)
		write_summary(rl, &rl->due[i]);
	pthread_mutex_unlock(&rl->flush_lock);
	return (unsigned)n;
}

/* The earliest end of an interval that owes a summary, 0 if none. */
static int64_t
next_due(const struct gw_reflimit *rl)
{
	int64_t next = 0;

	for (size_t i = 0; i <= GW_REFLIMIT_SLOTS; i++) {
		const struct key *e = i < GW_REFLIMIT_SLOTS ? &rl->keys[i] : &rl->other;
		int64_t end = e->start_ns + rl->interval_ns;

		if (e->used && e->suppressed > 0 && (next == 0 || end < next))
			next = end;
	}
	return next;
}

static void *
thread_main(void *arg)
{
	struct gw_reflimit *rl = arg;

	pthread_setname_np(pthread_self(), "sg-refusals");   /* ps -L, top -H */
	pthread_mutex_lock(&rl->lock);
	while (!rl->stop) {
		int64_t due = next_due(rl);

		if (due == 0) {
			/* Nothing owed: sleep until something is counted. */
			pthread_cond_wait(&rl->wake, &rl->lock);
			continue;
		}
		if (now_ns() < due) {
			struct timespec ts = { .tv_sec = due / 1000000000LL, .tv_nsec = due % 1000000000LL };

			pthread_cond_timedwait(&rl->wake, &rl->lock, &ts);
			continue;
		}
		pthread_mutex_unlock(&rl->lock);
		gw_reflimit_flush(rl, now_ns(), false);
		pthread_mutex_lock(&rl->lock);
	}
	pthread_mutex_unlock(&rl->lock);
	return NULL;
}

int
gw_reflimit_new(gw_reflimit_sink_fn sink, void *arg, const struct gw_reflimit_settings *set,
                struct gw_reflimit **out)
{
	struct gw_reflimit *rl = calloc(1, sizeof(*rl));

	*out = NULL;
	if (rl == NULL || sink == NULL) {
		free(rl);
		return -1;
	}
	rl->sink = sink;
	rl->arg = arg;
	rl->interval_s = set && set->interval_s ? set->interval_s : GW_REFLIMIT_INTERVAL;
	rl->interval_ns = (int64_t)rl->interval_s * 1000000000LL;
	rl->burst = set && set->burst ? set->burst : GW_REFLIMIT_BURST;
	rl->burst_unknown = set && set->burst_unknown ? set->burst_unknown : GW_REFLIMIT_BURST_UNKNOWN;
	pthread_mutex_init(&rl->lock, NULL);
	pthread_mutex_init(&rl->flush_lock, NULL);
	pthread_cond_init(&rl->wake, NULL);
	if (!(set && set->no_thread)) {
		if (pthread_create(&rl->thread, NULL, thread_main, rl) != 0) {
			gw_reflimit_free(&rl);
			return -1;
		}
		rl->thread_started = true;
	}
	*out = rl;
	return 0;
}

void
gw_reflimit_free(struct gw_reflimit **rlp)
{
	struct gw_reflimit *rl = rlp ? *rlp : NULL;

	if (rl == NULL)
		return;
	*rlp = NULL;
	if (rl->thread_started) {
		pthread_mutex_lock(&rl->lock);
		rl->stop = true;
		pthread_cond_signal(&rl->wake);
		pthread_mutex_unlock(&rl->lock);
		pthread_join(rl->thread, NULL);
	}
	gw_reflimit_flush(rl, now_ns(), true);
	pthread_cond_destroy(&rl->wake);
	pthread_mutex_destroy(&rl->flush_lock);
	pthread_mutex_destroy(&rl->lock);
	free(rl);
}

void
gw_reflimit_get_stats(struct gw_reflimit *rl, struct gw_reflimit_stats *out)
{
	memset(out, 0, sizeof(*out));
	if (rl == NULL)
		return;
	pthread_mutex_lock(&rl->lock);
	*out = rl->st;
	for (size_t i = 0; i < GW_REFLIMIT_SLOTS; i++) {
		out->keys += rl->keys[i].used;
		out->unknown_keys += rl->keys[i].used && !rl->keys[i].known;
	}
	pthread_mutex_unlock(&rl->lock);
}

/* ---- the gateway's hooks ---- */

/* Guards the making and the closing of ctx->reflimit. */
static pthread_mutex_t ctx_lock = PTHREAD_MUTEX_INITIALIZER;

static int
audit_sink(void *arg, struct gw_audit_event *ev)
{
	struct gw_ctx *ctx = arg;
	uint64_t seq;

	ev->host = ctx->host;
	return ctx->audit != NULL ? gw_audit_record(ctx->audit, ev, &seq) : -1;
}

/* The limiter of ctx, made at the first refusal; NULL when it cannot be
 * (out of memory): then every refusal is recorded, as before. */
static struct gw_reflimit *
limiter_of(struct gw_ctx *ctx)
{
	struct gw_reflimit *rl = __atomic_load_n(&ctx->reflimit, __ATOMIC_ACQUIRE);

	if (rl != NULL)
		return rl;
	pthread_mutex_lock(&ctx_lock);
	rl = ctx->reflimit;
	if (rl == NULL && gw_reflimit_new(audit_sink, ctx, NULL, &rl) == 0)
		__atomic_store_n(&ctx->reflimit, rl, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&ctx_lock);
	return rl;
}

bool
gw_reflimit_req(struct gw_req *r, const char *action, const char *outcome,
                const char *reason, const char *actor)
{
	struct gw_reflimit *rl;
	bool known;

	/* Only a pure denial: not an error, not one that counted a failed
	 * attempt or holds reserved units (r->changed). */
	if (outcome == NULL || strcmp(outcome, "denied") != 0 || r->changed || r->ctx->audit == NULL)
		return false;
	known = r->snap != NULL && gw_policy_login_known(r->snap->policy, r->peer->login);
	rl = limiter_of(r->ctx);
	return gw_reflimit_take(rl, r->peer->uid, known, action, reason, actor, now_ns());
}

void
gw_reflimit_ctx_flush(struct gw_ctx *ctx)
{
	pthread_mutex_lock(&ctx_lock);
	gw_reflimit_flush(ctx->reflimit, now_ns(), true);
	pthread_mutex_unlock(&ctx_lock);
}

void
gw_reflimit_ctx_close(struct gw_ctx *ctx)
{
	struct gw_reflimit *rl;

	pthread_mutex_lock(&ctx_lock);
	rl = ctx->reflimit;
	__atomic_store_n(&ctx->reflimit, NULL, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&ctx_lock);
	gw_reflimit_free(&rl);
}
