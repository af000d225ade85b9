/*
 * The refusal limiter: a flood of refusals leaves its fact in the audit
 * log, not a record per refusal (docs/audit.md, "Refusal summaries"). Per
 * (OS uid, action, reason class) the first refusals of an interval are
 * recorded in full; the rest are counted, and one refusals_suppressed
 * record per key gives their number when the interval ends or the gateway
 * stops. Only pure denials pass through here: a refusal that spent or
 * changed something is always recorded by its caller.
 */
#ifndef GW_REFUSALS_H
#define GW_REFUSALS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GW_REFLIMIT_INTERVAL       60    /* seconds a key's count runs */
#define GW_REFLIMIT_BURST           5    /* recorded in full per key and interval */
#define GW_REFLIMIT_BURST_UNKNOWN   2    /* the same for an OS user the policy does not know */
#define GW_REFLIMIT_SLOTS         256    /* keys counted at once */
#define GW_REFLIMIT_UNKNOWN_SLOTS  64    /* of those, what unknown OS users may hold */
#define GW_REFLIMIT_REASON_MAX    256    /* bytes of a reason kept for its summary */

struct gw_audit_event;
struct gw_ctx;
struct gw_req;
struct gw_reflimit;

/* Where summaries go: gw_audit_record in the gateway, a list in tests.
 * 0 written, -1 not (the limiter then logs the count instead). */
typedef int (*gw_reflimit_sink_fn)(void *arg, struct gw_audit_event *ev);

struct gw_reflimit_settings {
	unsigned interval_s;          /* 0 = GW_REFLIMIT_INTERVAL */
	unsigned burst;               /* 0 = GW_REFLIMIT_BURST */
	unsigned burst_unknown;       /* 0 = GW_REFLIMIT_BURST_UNKNOWN */
	bool no_thread;               /* tests: summaries only by gw_reflimit_flush */
};

/* A limiter writing its summaries to sink(arg, …); set may be NULL (the
 * defaults). Unless set->no_thread, a thread (sg-refusals) writes each
 * summary when its interval ends. 0, or -1 (out of memory). */
int gw_reflimit_new(gw_reflimit_sink_fn sink, void *arg, const struct gw_reflimit_settings *set,
                    struct gw_reflimit **out);
/* Writes every summary still owed, stops the thread, frees; *rl = NULL. */
void gw_reflimit_free(struct gw_reflimit **rl);

/* A pure refusal of uid about to be recorded (known: the policy knows the
 * uid's login). True when it was counted for a summary instead: the caller
 * writes no record. False: the caller records it in full, as always. */
bool gw_reflimit_take(struct gw_reflimit *rl, int64_t uid, bool known, const char *action,
                      const char *reason, const char *actor, int64_t now_ns);
/* Writes the summaries of the intervals ended by now_ns (every one when
 * all). Returns how many were written. */
unsigned gw_reflimit_flush(struct gw_reflimit *rl, int64_t now_ns, bool all);

struct gw_reflimit_stats {
	uint64_t taken;               /* refusals seen */
	uint64_t suppressed;          /* of those, counted instead of recorded */
	uint64_t summaries;           /* summary records written */
	uint64_t untracked;           /* known uids' refusals recorded for want of a slot */
	size_t keys;                  /* keys held now (at most GW_REFLIMIT_SLOTS) */
	size_t unknown_keys;          /* of those, unknown uids' */
};
void gw_reflimit_get_stats(struct gw_reflimit *rl, struct gw_reflimit_stats *out);

/* The gateway's hooks. gw_reflimit_req: for a refusal of request r that
 * its caller is about to record; true = counted, record nothing. Only
 * outcome "denied" is ever counted. The limiter of ctx is made at the
 * first refusal. gw_reflimit_ctx_flush: every summary owed now (before
 * gateway_stop). gw_reflimit_ctx_close: the same, and the limiter freed. */
bool gw_reflimit_req(struct gw_req *r, const char *action, const char *outcome,
                     const char *reason, const char *actor);
void gw_reflimit_ctx_flush(struct gw_ctx *ctx);
void gw_reflimit_ctx_close(struct gw_ctx *ctx);

#endif
