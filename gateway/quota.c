/*
 * Use counters (quota.h): an in-memory table of (seal, period, person) →
 * used + reserved, a cache of the store's quota_use in front of the
 * conditional statements that decide (gw_quota_commit_tx). It is loaded
 * from the store the first time a key is seen and read again before it
 * refuses, so it never refuses what the store would still count: another
 * gateway's refund, or its own stale view, cannot make it say no.
 */
#include "quota.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "appstore.h"

#define BUCKETS 1024

struct gw_quota_counter {
	struct gw_quota_counter *next;
	struct gw_quota_key key;
	/* used: the store's count when last read, plus what this gateway
	 * committed since; reserved: this gateway's signatures in flight;
	 * counted: those of them the audit writer has already counted in the
	 * store (set without q->lock, from inside the store's transaction), so
	 * that a fresh read of the store is not counted twice. */
	uint64_t used, reserved;
	_Atomic uint64_t counted;
};

struct gw_quota {
	pthread_mutex_t lock;
	struct gw_store *st;
	struct gw_quota_counter *b[BUCKETS];
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
		struct gw_quota_counter *c = q->b[i], *n;
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
static struct gw_quota_counter *
get(struct gw_quota *q, const struct gw_quota_key *k)
{
	size_t h = hash_key(k);
	struct gw_quota_counter *c;
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

/* Reads c's count from the store again; the units of this gateway the
 * store has counted but not yet released here are taken out (they are in
 * reserved still). A store that counted one more meanwhile only makes the
 * cache lower: the store decides at the commit. Caller holds q->lock. */
static int
refresh(struct gw_quota *q, struct gw_quota_counter *c)
{
	uint64_t stored = 0, counted;

	if (gw_appstore_quota_get(q->st, c->key.seal, c->key.period, c->key.person, &stored) < 0)
		return -1;
	counted = atomic_load(&c->counted);
	c->used = stored > counted ? stored - counted : 0;
	return 0;
}

static bool
is_app(const struct gw_quota_key *k)
{
	return strncmp(k->period, "app:", 4) == 0;
}

/* This gateway's units of c in flight that the store has not counted. */
static uint64_t
in_flight(struct gw_quota_counter *c)
{
	uint64_t counted = atomic_load(&c->counted);

	return c->reserved > counted ? c->reserved - counted : 0;
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
		struct gw_quota_counter **pp = &q->b[i];
		while (*pp) {
			struct gw_quota_counter *c = *pp;
			long long d;
			if (sscanf(c->key.period, "d:%lld", &d) == 1 && d < day - 1 && c->reserved == 0 &&
			    atomic_load(&c->counted) == 0) {
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

/* Words for the counter k of seal name (from its period and person). */
static const char *
key_name(const struct gw_quota_key *k)
{
	if (strncmp(k->period, "m:", 2) == 0)
		return "monthly quota";
	if (strcmp(k->period, "total") == 0)
		return "total quota";
	return k->person[0] ? "daily quota per person" : "daily quota";
}

int
gw_quota_reserve(struct gw_quota *q, const struct gw_seal *seal, const char *person,
                 time_t now, int64_t app_id, uint32_t app_granted, uint32_t app_left,
                 struct gw_quota_resv *r, char *why, size_t whylen)
{
	const char *names[GW_QUOTA_MAX_KEYS];
	struct gw_quota_counter *cs[GW_QUOTA_MAX_KEYS];
	int rv = -1;

	memset(r, 0, sizeof(*r));
	r->n = seal_keys(seal, person, now, r->keys, r->limits, names);
	if (app_id != 0) {
		char period[32];
		snprintf(period, sizeof(period), "app:%lld", (long long)app_id);
		key(&r->keys[r->n], seal->id, period, "");
		r->limits[r->n] = app_granted;
		names[r->n++] = "application";
		r->app_id = app_id;
	}
	pthread_mutex_lock(&q->lock);
	prune(q, gw_policy_local_day(seal, now));
	for (unsigned i = 0; i < r->n; i++) {
		bool full;

		cs[i] = get(q, &r->keys[i]);
		if (cs[i] == NULL) {
			snprintf(why, whylen, "quota counters unavailable (store error)");
			goto out;
		}
		if (is_app(&r->keys[i])) {
			/* The uses left are the store's, as the sign path just
			 * read them (another gateway's spend or refund included):
			 * only this gateway's uses in flight are taken off. */
			cs[i]->used = app_granted >= app_left ? app_granted - app_left : app_granted;
			full = app_left <= in_flight(cs[i]);
		} else {
			full = cs[i]->used + cs[i]->reserved >= r->limits[i];
			/* Before saying no, ask the store: the cache may be
			 * high (a unit given back at another gateway). */
			if (full) {
				if (refresh(q, cs[i]) < 0) {
					snprintf(why, whylen, "quota counters unavailable (store error)");
					goto out;
				}
				full = cs[i]->used + cs[i]->reserved >= r->limits[i];
			}
		}
		if (full) {
			if (is_app(&r->keys[i]))
				snprintf(why, whylen, "application #%lld has no use left", (long long)app_id);
			else
				snprintf(why, whylen, "the %s %s of the %s (%" PRIu64 ") is used up",
				         names[i], names[i][0] == 'd' && strstr(names[i], "person") ? "for you" : "",
				         seal->name, r->limits[i]);
			goto out;
		}
	}
	for (unsigned i = 0; i < r->n; i++) {
		cs[i]->reserved++;
		r->slot[i] = cs[i];
	}
	r->held = true;
	rv = 0;
out:
	pthread_mutex_unlock(&q->lock);
	if (rv < 0)
		r->n = 0;
	return rv;
}

/* Marks r's unit i as counted in the store (writer thread, inside the
 * transaction; r's reservation keeps the counter alive). */
static void
mark_counted(struct gw_quota_resv *r, unsigned i)
{
	if (r->held && r->slot[i] != NULL && !r->counted[i]) {
		atomic_fetch_add(&r->slot[i]->counted, 1);
		r->counted[i] = true;
	}
}

int
gw_quota_commit_tx(struct gw_store *st, struct gw_quota_resv *r, char *err, size_t errlen)
{
	struct gw_appstore_quota_unit u[GW_QUOTA_MAX_KEYS];
	unsigned at[GW_QUOTA_MAX_KEYS], m = 0;
	size_t full = 0;
	int rc;

	/* The seal's counters first, in one call: on PostgreSQL one round
	 * trip for all of them (the application's use, last, stays a
	 * statement of its own: it updates another table). All or none,
	 * whatever refuses: a refusal leaves nothing counted, so that the
	 * writer needs no savepoint around it where a failed statement ends
	 * the transaction anyway (gw_store_tx_errors_end). */
	for (unsigned i = 0; i < r->n; i++) {
		const struct gw_quota_key *k = &r->keys[i];

		if (is_app(k))
			continue;
		u[m] = (struct gw_appstore_quota_unit){ .seal = k->seal, .period = k->period,
		                                        .person = k->person, .limit = r->limits[i] };
		at[m++] = i;
	}
	if (m > 0) {
		rc = gw_appstore_quota_add_all_tx(st, u, m, &full, err, errlen);
		if (rc < 0)
			return -1;
		if (rc == 0) {
			const unsigned i = at[full < m ? full : 0];

			/* (none counted: appstore.h) */
			snprintf(err, errlen, "the %s of seal %s (%" PRIu64 ") is used up in the store",
			         key_name(&r->keys[i]), r->keys[i].seal, r->limits[i]);
			return -2;
		}
	}
	for (unsigned i = 0; i < r->n; i++) {
		if (!is_app(&r->keys[i]))
			continue;
		/* -2: revoked, expired or used up meanwhile. */
		rc = gw_appstore_spend_tx(st, r->app_id, time(NULL), err, errlen);
		if (rc == -2) {
			char e[256] = "";

			/* The counters above are given back: all or none. */
			for (unsigned j = 0; j < m; j++)
				if (gw_appstore_quota_sub_tx(st, u[j].seal, u[j].period, u[j].person, e,
				                             sizeof(e)) < 0) {
					snprintf(err, errlen, "%s", e);
					return -1;
				}
			return -2;
		}
		if (rc < 0)
			return -1;
		mark_counted(r, i);
	}
	for (unsigned j = 0; j < m; j++)
		mark_counted(r, at[j]);
	return 0;
}

int
gw_quota_refund_tx(struct gw_store *st, const struct gw_quota_resv *r, char *err, size_t errlen)
{
	for (unsigned i = 0; i < r->n; i++) {
		const struct gw_quota_key *k = &r->keys[i];

		if (is_app(k)) {
			if (gw_appstore_refund_tx(st, r->app_id, time(NULL), err, errlen) < 0)
				return -1;
		} else if (gw_appstore_quota_sub_tx(st, k->seal, k->period, k->person, err, errlen) < 0) {
			return -1;
		}
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
		struct gw_quota_counter *c = r->slot[i];
		if (c == NULL || c->reserved == 0)
			continue;
		if (r->counted[i])
			atomic_fetch_sub(&c->counted, 1);
		c->reserved--;
		if (committed)
			c->used++;
	}
	pthread_mutex_unlock(&q->lock);
	memset(r->counted, 0, sizeof(r->counted));
	r->held = false;
}

void
gw_quota_refresh(struct gw_quota *q, const struct gw_quota_resv *r)
{
	pthread_mutex_lock(&q->lock);
	for (unsigned i = 0; i < r->n; i++) {
		struct gw_quota_counter *c;

		if (is_app(&r->keys[i]) || (c = get(q, &r->keys[i])) == NULL)
			continue;
		(void)refresh(q, c);
	}
	pthread_mutex_unlock(&q->lock);
}

/* gw_quota_left and gw_quota_left_stored: fresh reads every counter from
 * the store, else only one the cache finds full. */
static int64_t
left_of(struct gw_quota *q, const struct gw_seal *seal, const char *person, time_t now,
        bool fresh)
{
	struct gw_quota_key keys[GW_QUOTA_MAX_KEYS];
	uint64_t limits[GW_QUOTA_MAX_KEYS];
	const char *names[GW_QUOTA_MAX_KEYS];
	unsigned n = seal_keys(seal, person, now, keys, limits, names);
	int64_t left = -1;

	pthread_mutex_lock(&q->lock);
	for (unsigned i = 0; i < n; i++) {
		struct gw_quota_counter *c = get(q, &keys[i]);
		int64_t l;
		if (c == NULL)
			continue;
		if (fresh || c->used + c->reserved >= limits[i])
			(void)refresh(q, c);
		l = c->used + c->reserved >= limits[i] ? 0 : (int64_t)(limits[i] - c->used - c->reserved);
		if (left < 0 || l < left)
			left = l;
	}
	pthread_mutex_unlock(&q->lock);
	return left;
}

int64_t
gw_quota_left(struct gw_quota *q, const struct gw_seal *seal, const char *person, time_t now)
{
	return left_of(q, seal, person, now, false);
}

int64_t
gw_quota_left_stored(struct gw_quota *q, const struct gw_seal *seal, const char *person,
                     time_t now)
{
	return left_of(q, seal, person, now, true);
}

unsigned
gw_quota_list(struct gw_quota *q, const struct gw_seal *seal, const char *person, time_t now,
              struct gw_quota_use out[GW_QUOTA_MAX_KEYS])
{
	struct gw_quota_key keys[GW_QUOTA_MAX_KEYS];
	uint64_t limits[GW_QUOTA_MAX_KEYS];
	const char *names[GW_QUOTA_MAX_KEYS];
	unsigned n = seal_keys(seal, person, now, keys, limits, names), m = 0;

	pthread_mutex_lock(&q->lock);
	for (unsigned i = 0; i < n; i++) {
		struct gw_quota_counter *c = get(q, &keys[i]);

		if (c == NULL)
			continue;
		(void)refresh(q, c);
		/* (the period's word from the key, as seal_keys made it) */
		out[m].period = strncmp(keys[i].period, "m:", 2) == 0 ? "month" :
		                strcmp(keys[i].period, "total") == 0 ? "total" :
		                keys[i].person[0] ? "person_day" : "day";
		out[m].limit = limits[i];
		out[m].used = c->used + c->reserved;
		m++;
	}
	pthread_mutex_unlock(&q->lock);
	return m;
}

int64_t
gw_quota_app_left(struct gw_quota *q, const char *seal, int64_t app_id, uint32_t left)
{
	struct gw_quota_key k;
	int64_t out = left;

	key(&k, seal, "", "");
	snprintf(k.period, sizeof(k.period), "app:%lld", (long long)app_id);
	pthread_mutex_lock(&q->lock);
	for (struct gw_quota_counter *c = q->b[hash_key(&k)]; c; c = c->next)
		if (same(&c->key, &k)) {
			uint64_t f = in_flight(c);
			out = left > f ? (int64_t)(left - f) : 0;
		}
	pthread_mutex_unlock(&q->lock);
	return out;
}
