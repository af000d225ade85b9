/*
 * The policy repository and the change feed, whatever the backend: the
 * group's policy as published versions (number, SHA-256 of the bytes, the
 * text, who, when), and the events that tell every gateway on one store
 * that something it caches changed (a policy published, an application
 * or a quota counter changed). docs/store.md, "The policy repository";
 * docs/policy.md, "One policy for the group".
 */
#ifndef GW_POLICYSTORE_H
#define GW_POLICYSTORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct gw_store;

/* The largest policy text a version holds: it travels in one request
 * frame (SG_MSG_MAX) as base64. A policy file may be larger (4 MiB,
 * docs/policy.md); such a one cannot be published. */
#define GW_POLICY_PUBLISH_MAX (512u * 1024u)

/* One published version. text is the policy's bytes exactly as published
 * (not NUL-terminated on the wire; here a NUL follows them), NULL in a
 * history listing. */
struct gw_policy_version {
	int64_t version;              /* 1, 2, 3, … */
	uint8_t sha256[32];           /* of the text's bytes */
	char *text;
	size_t len;
	char *author;                 /* the seal admin who published it, or "sealgated" */
	int64_t published;            /* Unix seconds */
};
/* Frees v's strings (not v itself) and zeroes it. */
void gw_policy_version_clear(struct gw_policy_version *v);

/* Stores v (its version, hash, text, author, time) as the newest version,
 * inside the caller's transaction (a gw_audit_apply_fn: the version and
 * its policy_publish record commit together or not at all), and tells
 * the other gateways on the store (gw_store_changes_notify_tx). The
 * version must be one past the newest stored: when another publish got
 * there first (a version v->version exists, or the newest is not
 * v->version - 1) nothing is written and -1 returns with err saying so.
 * 0, or -1 with err. On SQLite call another call of this repository
 * first, outside a transaction (it makes the table, durably). */
int gw_store_policy_publish_tx(struct gw_store *st, const struct gw_policy_version *v, char *err,
                               size_t errlen);
/* Reads version n (0 = the newest) with its text into *out (clear it).
 * 1 found, 0 none (nothing published, or no such version), -1 with err. */
int gw_store_policy_get(struct gw_store *st, int64_t n, struct gw_policy_version *out, char *err,
                        size_t errlen);
/* The newest version's number (0 = none published). 0, or -1 with err. */
int gw_store_policy_latest(struct gw_store *st, int64_t *version, char *err, size_t errlen);
/* Calls fn for each version, newest first, without its text (pointers
 * valid during the call), at most limit (0 = all). fn returning non-zero
 * stops the walk and is returned; -1 with err; 0 when done. */
typedef int (*gw_store_policy_fn)(void *ctx, const struct gw_policy_version *v);
int gw_store_policy_history(struct gw_store *st, size_t limit, gw_store_policy_fn fn, void *ctx,
                            char *err, size_t errlen);

/* ---- the change feed ----
 *
 * An event is a short text "KIND" or "KIND:ID": "policy:7", "app:42",
 * "quota:contract". On PostgreSQL a feed is a connection of its own that
 * LISTENs on the store's channel, and an event is a NOTIFY sent inside the
 * transaction that makes the change (so it is seen only if the change
 * commits, and after it). SQLite has no feed: one gateway per file, which
 * applies its own changes (changes.c). */
#define GW_CHANGE_EVENT_MAX 128
struct gw_store_feed;

/* Opens a feed on the store st is open on. 1 opened, 0 the backend has
 * none (SQLite), -1 with err (it could not connect). */
int gw_store_changes_open(struct gw_store *st, struct gw_store_feed **out, char *err,
                          size_t errlen);
/* Waits up to timeout_ms for events and calls fn for each (event valid
 * during the call). The number of events delivered (0: none came), or -1
 * with err when the feed's connection is lost: close it and open another,
 * and re-read whatever the events would have said (one may have been
 * missed meanwhile). */
typedef void (*gw_store_change_fn)(void *ctx, const char *event);
int gw_store_changes_wait(struct gw_store_feed *f, int timeout_ms, gw_store_change_fn fn,
                          void *ctx, char *err, size_t errlen);
void gw_store_changes_close(struct gw_store_feed **f);
/* Sends event to every feed of the store when the caller's transaction
 * commits (call inside one). SQLite: nothing to send, 0. 0 or -1 with
 * err (the transaction must then not commit the change). */
int gw_store_changes_notify_tx(struct gw_store *st, const char *event, char *err, size_t errlen);

#endif
