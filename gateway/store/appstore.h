/*
 * Applications, approvals and quota counters in the store (tables created
 * by store.c's migration 3). Functions ending in _tx change the store and
 * are meant to run inside gw_audit_record_with's callback, so each change
 * is durable together with its audit record.
 */
#ifndef GW_APPSTORE_H
#define GW_APPSTORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "store.h"
#include "workflow.h"

/* Next free application id (max(id) + 1), read once at start. */
int64_t gw_appstore_max_id(struct gw_store *st);

/* Loads application id with its approvals. 1 found, 0 none, -1 error. */
int gw_appstore_get(struct gw_store *st, int64_t id, struct gw_application *app);

/* _tx: inserts a new application (app->id set by the caller) with its
 * approvals. 0 / -1 with err. */
int gw_appstore_insert_tx(struct gw_store *st, const struct gw_application *app,
                          char *err, size_t errlen);
/* _tx: stores a transition of app from state `from` (and, when pending,
 * level `from_level`): state, level, and approvals not yet stored — never
 * uses_left, which only the store's own conditional spend and refund
 * change (a copy read before the transition may be stale). Fails when the
 * stored row is no longer in that state (changed meanwhile). */
int gw_appstore_update_tx(struct gw_store *st, const struct gw_application *app,
                          enum gw_app_state from, unsigned from_level, time_t now,
                          char *err, size_t errlen);
/* _tx: spends one use of an authorized application; moves it to used_up at
 * zero. 0; -2 (err says so) when it has none left or is no longer
 * authorized and valid — revoked, expired or used up meanwhile; -1 on a
 * store error. */
int gw_appstore_spend_tx(struct gw_store *st, int64_t id, time_t now,
                         char *err, size_t errlen);

/* _tx: gives back the use spent by a signature that was then not
 * released (the token failed after its record was committed). */
int gw_appstore_refund_tx(struct gw_store *st, int64_t id, time_t now,
                          char *err, size_t errlen);

/* Which applications a listing wants: applicant/seal NULL = any; states a
 * bitmask of (1 << gw_app_state), 0 = any. Filtered in SQL, so a page
 * holds matches only and nothing is cut before it is filtered. */
struct gw_app_filter {
	const char *applicant;
	const char *seal;
	unsigned states;
};

/* One page of the ids matching f, at most max: newest first with ids below
 * `from` (0: from the newest), or with oldest_first ids above `from` (0:
 * from the oldest). The next page starts from the last id of this one; a
 * page shorter than max is the last. */
int gw_appstore_page(struct gw_store *st, const struct gw_app_filter *f, bool oldest_first,
                     int64_t from, int64_t *ids, size_t max, size_t *n);

/* Ids of pending/authorized applications whose validity ended by now. */
int gw_appstore_due_to_expire(struct gw_store *st, time_t now, int64_t *ids,
                              size_t max, size_t *n);

/* Quota counters: used count of (seal, period, person) — 0 when none.
 * period is e.g. "d:20612", "m:24322", "total". person "" for seal-wide. */
int gw_appstore_quota_get(struct gw_store *st, const char *seal, const char *period,
                          const char *person, uint64_t *used);
int gw_appstore_quota_sub_tx(struct gw_store *st, const char *seal, const char *period,
                             const char *person, char *err, size_t errlen);
int gw_appstore_quota_add_tx(struct gw_store *st, const char *seal, const char *period,
                             const char *person, char *err, size_t errlen);

#endif
