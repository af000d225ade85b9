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

/* Loads application id with its approvals. 1 found, 0 none, -1 error. */
int gw_appstore_get(struct gw_store *st, int64_t id, struct gw_application *app);

/* _tx: inserts a new application with its approvals; the store gives it
 * its id (app->id is set): one no other store handle, gateway or earlier
 * application ever had, also after the newest row is gone (SQLite:
 * AUTOINCREMENT's sqlite_sequence; PostgreSQL: an identity column). An
 * id may be skipped (a rolled-back insert), never given twice. 0 / -1
 * with err. */
int gw_appstore_insert_tx(struct gw_store *st, struct gw_application *app,
                          char *err, size_t errlen);
/* _tx: re-reads application id with its approvals into app, locked until
 * the caller's transaction ends (PostgreSQL: SELECT … FOR UPDATE of the
 * application and its approvals; SQLite: the read inside the writer's
 * BEGIN IMMEDIATE). A transition decided on this copy and stored before
 * the commit is decided on what the store holds: another gateway's
 * decision on the same application waits, then sees this one. 1 found,
 * 0 none, -1 error (logged, as gw_appstore_get's). Call inside a
 * transaction (gw_store_tx_begin or gw_audit_record_with's apply). */
int gw_appstore_lock_tx(struct gw_store *st, int64_t id, struct gw_application *app);
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
/* _tx: counts one use of (seal, period, person) if it stays within limit
 * (0 = no limit): one statement (`… used + 1 <= limit`, the first row's
 * insert bounded likewise), whose row count decides, so of any number of
 * gateways adding at once exactly limit are counted. 1 counted; 0 the
 * limit is reached (nothing changed); -1 error (err). */
int gw_appstore_quota_add_tx(struct gw_store *st, const char *seal, const char *period,
                             const char *person, uint64_t limit, char *err, size_t errlen);
/* One counter of gw_appstore_quota_add_all_tx. */
struct gw_appstore_quota_unit {
	const char *seal, *period, *person;   /* person "" for seal-wide counters */
	uint64_t limit;                       /* 0 = no limit */
};
/* _tx: gw_appstore_quota_add_tx of each of u[0..n) in order, as one
 * statement where the backend can (PostgreSQL: one round trip for all of
 * a signature's counters instead of one each), each counter's row count
 * deciding as there, all or none: 1 all counted; 0 when u[*full] had no
 * room, and none is counted (those counted before it are taken back in
 * the same transaction, which holds their rows: no savepoint is needed
 * to undo them); -1 error (err; the caller's transaction may hold some of
 * them and must not commit). The counters must be distinct. */
int gw_appstore_quota_add_all_tx(struct gw_store *st, const struct gw_appstore_quota_unit *u,
                                 size_t n, size_t *full, char *err, size_t errlen);

#endif
