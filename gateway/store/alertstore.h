/*
 * The alerts repository (docs/risk.md, "Alerts online"): what the
 * gateway's online risk engine raised, with its evidence and the state an
 * auditor gave it. One row per alert of the store's site, named by a key
 * the engine derives from the alert (rule, subject, first evidence seq), so
 * that finding it again after a restart changes the row instead of adding
 * one. Every change is made inside an audit record's transaction
 * (gw_audit_record_with), so the log tells each one.
 */
#ifndef GW_ALERTSTORE_H
#define GW_ALERTSTORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct gw_store;

#define GW_ALERT_KEY_MAX 512

/* Strings are the caller's on write and the store's (valid during the
 * callback) on read. seqs and apps are JSON arrays of integers. */
struct gw_alert_row {
	int64_t id;                   /* 1, 2, … (set by the store) */
	const char *key;
	const char *rule, *severity, *subject, *why;
	int64_t ts_ns;                /* its last evidence record's time */
	const char *seqs, *apps;
	int64_t raised;               /* Unix seconds */
	const char *state;            /* "open", "acknowledged", "closed" */
	const char *state_by, *state_comment;   /* the last change's, or NULL */
	int64_t state_at;             /* Unix seconds, 0 while open */
	const char *site;             /* on read */
};

struct gw_alert_filter {
	bool open_only;               /* state not closed */
	const char *rule;             /* NULL = any */
	int64_t since_ns;             /* ts_ns >= since_ns when non-zero */
	int64_t id;                   /* 0 = any */
	size_t limit;                 /* 0 = no limit */
};

typedef int (*gw_alertstore_fn)(void *ctx, const struct gw_alert_row *a);

/* Makes the table where the backend has no migration for it. 0 or -1. */
int gw_alertstore_init(struct gw_store *st, char *err, size_t errlen);
/* Inside the caller's transaction: a new alert (state open) under a->key,
 * or the evidence, why and ts_ns of the one already under it (its state
 * kept). *id its id, *created whether it is new. 0 or -1 with err. */
int gw_alertstore_put_tx(struct gw_store *st, const struct gw_alert_row *a, int64_t *id,
                         bool *created, char *err, size_t errlen);
/* Inside the caller's transaction: alert id goes to state (by, comment,
 * at) when it is in one of the states of from (a NULL-ended list). 1 done,
 * 0 no such alert in those states, -1 with err. */
int gw_alertstore_state_tx(struct gw_store *st, int64_t id, const char *const *from,
                           const char *state, const char *by, const char *comment, int64_t at,
                           char *err, size_t errlen);
/* Calls fn for each matching alert, newest evidence first (then highest
 * id); fn returning non-zero stops and is returned. -1 with err. */
int gw_alertstore_list(struct gw_store *st, const struct gw_alert_filter *f,
                       gw_alertstore_fn fn, void *ctx, char *err, size_t errlen);

#endif
