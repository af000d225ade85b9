/*
 * The change feed: what another gateway on the same store changed, heard
 * at once (docs/policy.md, "Changes seen at once"). On PostgreSQL a thread
 * of its own waits on the store's feed (a LISTEN connection) and calls the
 * hooks subscribed to each kind of event; after a lost connection it
 * connects again and calls every hook with id NULL, "re-read all you
 * cache", since an event may have come meanwhile. On SQLite there is no
 * one else: the gateway applies its own changes (gw_changes_local).
 *
 * Events are "KIND:ID" (policystore.h): kinds "policy" (a version
 * published; policy_ops.c follows it), "app" (an application changed:
 * its id) and "quota" (a quota counter changed: its seal), the last two
 * for the parts that cache them.
 */
#ifndef GW_CHANGES_H
#define GW_CHANGES_H

#include "server.h"

#define GW_CHANGE_POLICY "policy"
#define GW_CHANGE_APP    "app"
#define GW_CHANGE_QUOTA  "quota"
/* pgsess: sessions (auth.c): "session:USER" some of USER's sessions were
 * deleted (a logout, an unlock: the cached ones are asked again);
 * "revoke:USER" every one was, with the user's signing windows (a
 * password change, a TOTP reset: dropped at once). */
#define GW_CHANGE_SESSION "session"
#define GW_CHANGE_REVOKE  "revoke"

/* A hook: kind is the subscribed kind; id the event's id ("7", "42",
 * "contract"), or NULL: re-read everything of this kind (after the feed
 * was lost, and once when it starts). Runs on the feed's thread (or the
 * caller's, for gw_changes_local); a hook may hear of one change twice
 * (its own gateway's, on PostgreSQL) and must take that as nothing new. */
typedef void (*gw_change_hook)(struct gw_ctx *ctx, const char *kind, const char *id, void *arg);

/* Subscribes fn to events of kind (before gw_changes_start). 0 or -1. */
int gw_changes_subscribe(struct gw_ctx *ctx, const char *kind, gw_change_hook fn, void *arg);
/* Starts following the store: a thread when the backend has a feed
 * (connecting in the background, and again whenever it is lost; a store
 * that cannot be reached is retried, not fatal), nothing on SQLite. 0, or
 * -1 with err. */
int gw_changes_start(struct gw_ctx *ctx, char *err, size_t errlen);
/* Stops the thread and closes the feed. Safe when never started, and
 * twice. The subscriptions stay: connection threads still running ask
 * gw_changes_live (sessions) until the server has stopped them. */
void gw_changes_stop(struct gw_ctx *ctx);
/* gw_changes_stop, then frees it all: once no thread can use ctx. */
void gw_changes_free(struct gw_ctx *ctx);
/* Inside the transaction of a change made here (a gw_audit_apply_fn):
 * tells the other gateways once it commits ("KIND:ID"). 0, or -1 with
 * err: the change must then not commit. */
int gw_changes_announce_tx(struct gw_store *st, const char *kind, const char *id, char *err,
                           size_t errlen);
/* After the commit of a change made here: applies it on this gateway at
 * once (SQLite's only way; on PostgreSQL the feed brings it again). */
void gw_changes_local(struct gw_ctx *ctx, const char *kind, const char *id);

/* True when what the hooks were told is all there is to hear: no feed
 * is needed (SQLite, no store), or the feed is connected and its hooks
 * have re-read. False from the start of the feed's thread until its
 * first connection, and from a lost connection until the next one:
 * caches are then stale (auth.c asks the store before each use). */
bool gw_changes_live(struct gw_ctx *ctx);

/* For tests: feed connections opened so far (the first and each one
 * after a loss). */
unsigned gw_changes_connects(struct gw_ctx *ctx);

#endif
