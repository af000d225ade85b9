/*
 * Use accounting under concurrency: seal quotas (per day / month / total /
 * per person per day, in the seal's time zone) and the uses of an
 * authorized application. The store decides: a signature's units and use
 * are counted by conditional statements in the transaction of its audit
 * record (gw_quota_commit_tx: the limit in the statement), so gateways
 * sharing one store spend exactly the limit between them. This file keeps
 * a cache in front of it: each signature first reserves one unit of every
 * counter that applies, under one lock, so that signers of this gateway
 * are refused before the token signs or a second factor is asked for when
 * the units in flight already fill the limit; the cache refuses only what
 * the store would (it re-reads the store before it refuses). A crash
 * before the commit loses only reservations.
 */
#ifndef GW_QUOTA_H
#define GW_QUOTA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "policy.h"
#include "store.h"

#define GW_QUOTA_MAX_KEYS 5

struct gw_quota;

struct gw_quota_counter;

struct gw_quota_resv {
	unsigned n;
	struct gw_quota_key {
		char seal[129];
		char period[32];          /* "d:DAY", "m:MONTH", "total", "app:ID" */
		char person[129];         /* "" for seal-wide counters */
	} keys[GW_QUOTA_MAX_KEYS];
	uint64_t limits[GW_QUOTA_MAX_KEYS];   /* the policy's (an application's: granted) */
	struct gw_quota_counter *slot[GW_QUOTA_MAX_KEYS];
	bool counted[GW_QUOTA_MAX_KEYS];      /* set by gw_quota_commit_tx */
	int64_t app_id;               /* 0: no application counter */
	bool held;
};

int gw_quota_new(struct gw_store *st, struct gw_quota **out);
void gw_quota_free(struct gw_quota **q);

/* Reserves one unit of each quota of seal for person at now and, when
 * app_id != 0, one of the application's uses; app_granted and app_left
 * are the application as just read from the store. Returns 0, or -1 with
 * why in words when a counter is exhausted — in the store, counting the
 * units this gateway has in flight (nothing is reserved then). */
int gw_quota_reserve(struct gw_quota *q, const struct gw_seal *seal, const char *person,
                     time_t now, int64_t app_id, uint32_t app_granted, uint32_t app_left,
                     struct gw_quota_resv *r, char *why, size_t whylen);

/* _tx (inside the audit callback): spends the application's use (if any,
 * gw_appstore_spend_tx) and counts one unit of each seal counter of r
 * within its limit (gw_appstore_quota_add_tx). 0; -2 when the store
 * refuses one — no use left, or a limit reached by another gateway
 * meanwhile (err says which) — and then nothing of r is counted (all or
 * none, with no savepoint: the units counted before the refusal are
 * given back in the same transaction); -1 on a store error (the
 * transaction must not commit). */
int gw_quota_commit_tx(struct gw_store *st, struct gw_quota_resv *r, char *err, size_t errlen);

/* _tx: undoes gw_quota_commit_tx (a committed use that was not released). */
int gw_quota_refund_tx(struct gw_store *st, const struct gw_quota_resv *r,
                       char *err, size_t errlen);

/* Ends r; committed: the units count as used from now on. */
void gw_quota_release(struct gw_quota *q, struct gw_quota_resv *r, bool committed);

/* Reads r's seal counters from the store again (after the store refused
 * one: another gateway spent what this one's cache did not know of). */
void gw_quota_refresh(struct gw_quota *q, const struct gw_quota_resv *r);

/* Units left in the tightest quota of seal for person now; -1 = no limit.
 * A counter the cache finds full is read from the store first. */
int64_t gw_quota_left(struct gw_quota *q, const struct gw_seal *seal, const char *person,
                      time_t now);
/* The same with every counter read from the store now, for what is shown
 * (status, seals): this cache is counted on only by the gateway that
 * spends it, the seal's site's; another gateway's copy of a seal's counter
 * would show what it read first (docs/sites.md, "Across gateways"). */
int64_t gw_quota_left_stored(struct gw_quota *q, const struct gw_seal *seal, const char *person,
                             time_t now);
/* Each quota of seal for person now, as shown (seals): its period
 * ("day", "month", "total", "person_day"), the policy's limit and the
 * units used or reserved, every counter read from the store now. The
 * number filled (at most GW_QUOTA_MAX_KEYS); a counter the store cannot
 * give is left out. */
struct gw_quota_use {
	const char *period;
	uint64_t limit, used;
};
unsigned gw_quota_list(struct gw_quota *q, const struct gw_seal *seal, const char *person,
                       time_t now, struct gw_quota_use out[GW_QUOTA_MAX_KEYS]);
/* Uses of application app_id (of seal) neither spent nor reserved here;
 * left is the store's uses_left as just read. */
int64_t gw_quota_app_left(struct gw_quota *q, const char *seal, int64_t app_id, uint32_t left);

#endif
