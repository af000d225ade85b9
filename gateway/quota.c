/*
 * Use counters (quota.h): an in-memory table of (seal, period, person) →
 * used + reserved, loaded from the store the first time a key is seen and
 * kept exact afterwards by the commit/release protocol, so the sign path
 * never reads the store under this lock after the first use.
 */
#include "quota.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "appstore.h"

#define BUCKETS 1024

struct counter {
	struct counter *next;
	struct gw_quota_key key;
	uint64_t used, reserved;
	uint64_t limit;               /* for application counters; 0 = from policy */
};

struct gw_quota {
	pthread_mutex_t lock;
	struct gw_store *st;
	struct counter *b[BUCKETS];
	int64_t day;                  /* newest local day seen, for pruning */
};

int
gw_quota_new(struct gw_store *st, struct gw_quota **out)
{
	struct gw_quota *q = calloc(1, sizeof(*q));

	*out = NULL;
	if (q == NULL)
		return -1;
	pthread_mutex_init(&q->lock, NULL);
	q->st = st;
	*out = q;
	return 0;
}

void
gw_quota_free(struct gw_quota **qp)
{
	struct gw_quota *q = qp ? *qp : NULL;

	if (q == NULL)
		return;
	for (size_t i = 0; i < BUCKETS; i++) {
		struct counter *c = q->b[i], *n;
		for (; c; c = n) {
			n = c->next;
			free(c);
		}
	}
	pthread_mutex_destroy(&q->lock);
	free(q);
	*qp = NULL;
}

static size_t
hash_key(const struct gw_quota_key *k)
{
	uint64_t h = 1469598103934665603ull;
	const char *parts[3] = { k->seal, k->period, k->person };

	for (int i = 0; i < 3; i++) {
		for (const char *p = parts[i]; *p; p++)
			h = (h ^ (unsigned char)*p) * 1099511628211ull;
		h = (h ^ 0xff) * 1099511628211ull;
	}
	return (size_t)(h % BUCKETS);
}

static bool
same(const struct gw_quota_key *a, const struct gw_quota_key *b)
{
	return strcmp(a->seal, b->seal) == 0 && strcmp(a->period, b->period) == 0 &&
	       strcmp(a->person, b->person) == 0;
}

/* Finds or loads a counter. Caller holds q->lock. NULL on error. */
static struct counter *
get(struct gw_quota *q, const struct gw_quota_key *k)
{
	size_t h = hash_key(k);
	struct counter *c;
	uint64_t used = 0;

	for (c = q->b[h]; c; c = c->next)
		if (same(&c->key, k))
			return c;
	if (strncmp(k->period, "app:", 4) != 0 &&
	    gw_appstore_quota_get(q->st, k->seal, k->period, k->person, &used) < 0)
		return NULL;
	c = calloc(1, sizeof(*c));
	if (c == NULL)
		return NULL;
	c->key = *k;
	c->used = used;
	c->next = q->b[h];
	q->b[h] = c;
	return c;
}

/* Drops seal-day counters older than yesterday (they can never be asked
 * for again) when a new day is first seen. Caller holds q->lock. */
static void
prune(struct gw_quota *q, int64_t day)
{
	if (day <= q->day)
		return;
	q->day = day;
	for (size_t i = 0; i < BUCKETS; i++) {
		struct counter **pp = &q->b[i];
		while (*pp) {
			struct counter *c = *pp;
			long long d;
			if (sscanf(c->key.period, "d:%lld", &d) == 1 && d < day - 1 && c->reserved == 0) {
				*pp = c->next;
				free(c);
			} else {
				pp = &c->next;
			}
		}
	}
}

static void
key(struct gw_quota_key *k, const char *seal, const char *period, const char *person)
{
	snprintf(k->seal, sizeof(k->seal), "%s", seal);
	snprintf(k->period, sizeof(k->period), "%s", period);
	snprintf(k->person, sizeof(k->person), "%s", person ? person : "");
}

/* The quota keys of seal for person at now, with their limits. */
static unsigned
seal_keys(const struct gw_seal *seal, const char *person, time_t now,
          struct gw_quota_key *keys, uint64_t *limits, const char **names)
{
	char period[32];
	unsigned n = 0;
	int64_t day = gw_policy_local_day(seal, now), month = gw_policy_local_month(seal, now);

	if (seal->quotas.per_day) {
		snprintf(period, sizeof(period), "d:%" PRId64, day);
		key(&keys[n], seal->id, period, "");
		limits[n] = seal->quotas.per_day;
		names[n++] = "daily quota";
	}
	if (seal->quotas.per_month) {
		snprintf(period, sizeof(period), "m:%" PRId64, month);
		key(&keys[n], seal->id, period, "");
		limits[n] = seal->quotas.per_month;
		names[n++] = "monthly quota";
	}
	if (seal->quotas.total) {
		key(&keys[n], seal->id, "total", "");
		limits[n] = seal->quotas.total;
		names[n++] = "total quota";
	}
	if (seal->quotas.per_person_per_day) {
		snprintf(period, sizeof(period), "d:%" PRId64, day);
		key(&keys[n], seal->id, period, person);
		limits[n] = seal->quotas.per_person_per_day;
		names[n++] = "daily quota per person";
	}
	return n;
}

int
gw_quota_reserve(struct gw_quota *q, const struct gw_seal *seal, const char *person,
                 time_t now, int64_t app_id, uint32_t app_granted, uint32_t app_left,
                 struct gw_quota_resv *r, char *why, size_t whylen)
{
	uint64_t limits[GW_QUOTA_MAX_KEYS];
	const char *names[GW_QUOTA_MAX_KEYS];
	struct counter *cs[GW_QUOTA_MAX_KEYS];
	int rv = -1;

	memset(r, 0, sizeof(*r));
	r->n = seal_keys(seal, person, now, r->keys, limits, names);
	if (app_id != 0) {
		char period[32];
		snprintf(period, sizeof(period), "app:%lld", (long long)app_id);
		key(&r->keys[r->n], seal->id, period, "");
		limits[r->n] = app_granted;
		names[r->n++] = "application";
		r->app_id = app_id;
	}
	pthread_mutex_lock(&q->lock);
	prune(q, gw_policy_local_day(seal, now));
	for (unsigned i = 0; i < r->n; i++) {
		cs[i] = get(q, &r->keys[i]);
		if (cs[i] == NULL) {
			snprintf(why, whylen, "quota counters unavailable (store error)");
			goto out;
		}
		if (i == r->n - 1 && app_id != 0 && cs[i]->limit == 0) {
			/* First sight of this application: what the store says. */
			cs[i]->limit = app_granted;
			cs[i]->used = app_granted >= app_left ? app_granted - app_left : app_granted;
		}
		if (i == r->n - 1 && app_id != 0)
			limits[i] = cs[i]->limit;
		if (cs[i]->used + cs[i]->reserved >= limits[i]) {
			if (app_id != 0 && i == r->n - 1)
				snprintf(why, whylen, "application #%lld has no use left", (long long)app_id);
			else
				snprintf(why, whylen, "the %s %s of the %s (%" PRIu64 ") is used up",
				         names[i], names[i][0] == 'd' && strstr(names[i], "person") ? "for you" : "",
				         seal->name, limits[i]);
			goto out;
		}
	}
	for (unsigned i = 0; i < r->n; i++)
		cs[i]->reserved++;
	r->held = true;
	rv = 0;
out:
	pthread_mutex_unlock(&q->lock);
	if (rv < 0)
		r->n = 0;
	return rv;
}

int
gw_quota_commit_tx(struct gw_store *st, const struct gw_quota_resv *r, char *err, size_t errlen)
{
	for (unsigned i = 0; i < r->n; i++) {
		if (strncmp(r->keys[i].period, "app:", 4) == 0)
			continue;
		if (gw_appstore_quota_add_tx(st, r->keys[i].seal, r->keys[i].period,
		                             r->keys[i].person, err, errlen) < 0)
			return -1;
	}
	return 0;
}

int
gw_quota_refund_tx(struct gw_store *st, const struct gw_quota_resv *r, char *err, size_t errlen)
{
	for (unsigned i = 0; i < r->n; i++) {
		if (strncmp(r->keys[i].period, "app:", 4) == 0)
			continue;
		if (gw_appstore_quota_sub_tx(st, r->keys[i].seal, r->keys[i].period,
		                             r->keys[i].person, err, errlen) < 0)
			return -1;
	}
	return 0;
}

void
gw_quota_release(struct gw_quota *q, struct gw_quota_resv *r, bool committed)
{
	if (!r->held)
		return;
	pthread_mutex_lock(&q->lock);
	for (unsigned i = 0; i < r->n; i++) {
		struct counter *c = get(q, &r->keys[i]);
		if (c == NULL || c->reserved == 0)
			continue;
		c->reserved--;
		if (committed)
			c->used++;
	}
	pthread_mutex_unlock(&q->lock);
	r->held = false;
}

int64_t
gw_quota_left(struct gw_quota *q, const struct gw_seal *seal, const char *person, time_t now)
{
	struct gw_quota_key keys[GW_QUOTA_MAX_KEYS];
	uint64_t limits[GW_QUOTA_MAX_KEYS];
	const char *names[GW_QUOTA_MAX_KEYS];
	unsigned n = seal_keys(seal, person, now, keys, limits, names);
	int64_t left = -1;

	pthread_mutex_lock(&q->lock);
	for (unsigned i = 0; i < n; i++) {
		struct counter *c = get(q, &keys[i]);
		int64_t l;
		if (c == NULL)
			continue;
		l = c->used + c->reserved >= limits[i] ? 0 : (int64_t)(limits[i] - c->used - c->reserved);
		if (left < 0 || l < left)
			left = l;
	}
	pthread_mutex_unlock(&q->lock);
	return left;
}

int64_t
gw_quota_app_left(struct gw_quota *q, const char *seal, int64_t app_id, uint32_t left)
{
	struct gw_quota_key k;
	int64_t out = left;

	key(&k, seal, "", "");
	snprintf(k.period, sizeof(k.period), "app:%lld", (long long)app_id);
	pthread_mutex_lock(&q->lock);
	for (struct counter *c = q->b[hash_key(&k)]; c; c = c->next)
		if (same(&c->key, &k) && c->limit)
			out = c->used + c->reserved >= c->limit ? 0 :
			      (int64_t)(c->limit - c->used - c->reserved);
	pthread_mutex_unlock(&q->lock);
	return out;
}
