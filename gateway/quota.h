/*
 * Exact use accounting under concurrency: seal quotas (per day / month /
 * total / per person per day, in the seal's time zone) and the uses of an
 * authorized application. A signature first reserves one unit of every
 * counter that applies (in memory, under one lock); the token signs; the
 * counters are made durable in the same transaction as the audit record;
 * then the reservation is released as used — or, if anything failed, as
 * not used. A crash before the commit loses only reservations, so no
 * unreleased signature is ever counted and none is released uncounted.
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

struct gw_quota_resv {
	unsigned n;
	struct gw_quota_key {
		char seal[129];
		char period[32];          /* "d:DAY", "m:MONTH", "total", "app:ID" */
		char person[129];         /* "" for seal-wide counters */
	} keys[GW_QUOTA_MAX_KEYS];
	int64_t app_id;               /* 0: no application counter */
	bool held;
};

int gw_quota_new(struct gw_store *st, struct gw_quota **out);
void gw_quota_free(struct gw_quota **q);

/* Reserves one unit of each quota of seal for person at now and, when
 * app_id != 0, one of the application's uses (granted/left as stored when
 * the counter is first seen). Returns 0, or -1 with why in words when a
 * counter is exhausted (nothing is reserved then). */
int gw_quota_reserve(struct gw_quota *q, const struct gw_seal *seal, const char *person,
                     time_t now, int64_t app_id, uint32_t app_granted, uint32_t app_left,
                     struct gw_quota_resv *r, char *why, size_t whylen);

/* _tx: makes the seal counters of r durable (inside the audit callback).
 * The application's use is spent by gw_appstore_spend_tx. */
int gw_quota_commit_tx(struct gw_store *st, const struct gw_quota_resv *r,
                       char *err, size_t errlen);

/* _tx: undoes gw_quota_commit_tx (a committed use that was not released). */
int gw_quota_refund_tx(struct gw_store *st, const struct gw_quota_resv *r,
                       char *err, size_t errlen);

/* Ends r; committed: the units count as used from now on. */
void gw_quota_release(struct gw_quota *q, struct gw_quota_resv *r, bool committed);

/* Units left in the tightest quota of seal for person now; -1 = no limit. */
int64_t gw_quota_left(struct gw_quota *q, const struct gw_seal *seal, const char *person,
                      time_t now);
/* Uses of application app_id (of seal) neither spent nor reserved; left
 * (as stored) when the counter has not been used yet. */
int64_t gw_quota_app_left(struct gw_quota *q, const char *seal, int64_t app_id, uint32_t left);

#endif
