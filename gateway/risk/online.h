/*
 * The risk rules online (docs/risk.md, "Alerts online"): a thread beside
 * the gateway runs the rules of risk.c over the audit log as it is written
 * and keeps what they find in the store's alerts repository (alertstore.h).
 * The audit writer hands each durable record over to a bounded queue; when
 * the queue is full the thread reads what it missed from the store by seq,
 * so no record is skipped and the signing path never waits for the rules.
 */
#ifndef GW_RISK_ONLINE_H
#define GW_RISK_ONLINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct gw_ctx;
struct gw_risk_online;

#define GW_RISK_QUEUE_DEFAULT 8192   /* records waiting for the thread */

/* Reads the whole log from ctx->store into the rules, stores what they
 * find, then follows the writer (ctx->audit), queue_max records handed
 * over at most (0: none, every record read back from the store: for
 * tests of the catch-up). 0, or -1 with err. */
int gw_risk_online_start(struct gw_ctx *ctx, size_t queue_max, struct gw_risk_online **out,
                         char *err, size_t errlen);
void gw_risk_online_stop(struct gw_risk_online **ro);

struct gw_risk_online_stats {
	uint64_t seq;             /* the last record the rules have seen */
	uint64_t evaluated_seq;   /* … and had evaluated, their alerts stored */
	uint64_t checked_seq;     /* the last record whose chain link was checked */
	uint64_t handed;          /* records taken from the queue */
	uint64_t caught_up;       /* records read back from the store */
	uint64_t overflows;       /* times the queue was full */
	uint64_t evaluations;
	uint64_t alerts_raised;   /* new alerts stored by this process */
	bool failed;              /* the thread stopped on an error (logged) */
};
void gw_risk_online_get_stats(struct gw_risk_online *ro, struct gw_risk_online_stats *out);

/* A verification of the log (audit_verify) found site's chain broken:
 * problem is the verifier's words ("seq 12: …"), by who asked. The
 * thread raises log.verify_failed for it (docs/risk.md); the first
 * LOG_BROKEN_MAX problems told between two looks are kept. Thread safe;
 * ro may be NULL (no online rules: nothing). */
void gw_risk_online_log_broken(struct gw_risk_online *ro, const char *site, const char *problem,
                               const char *by);

#endif
