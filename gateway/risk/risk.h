/*
 * Risk rules over the audit trail (docs/risk.md): pure code that takes
 * audit records, checkpoints and the policy in force and returns alerts —
 * threshold splitting, rubber-stamping, unusual volume, time and source,
 * dormant seals, probing, quotas nearly spent and the log itself. No I/O:
 * `sealctl risk scan` feeds it an export, the gateway can feed it its log.
 */
#ifndef GW_RISK_H
#define GW_RISK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store.h"   /* struct gw_audit_row */

#include <yaml.h>

struct gw_policy;
struct gw_yaml;

/* ---- the policy's `risk:` parameters (riskpolicy.c) ---- */

struct gw_risk_policy {
	/* working_hours: days (bit 0 = Monday) and minutes after local
	 * midnight, in the organization's zone. */
	uint8_t work_days; uint16_t work_from_min, work_to_min;
	struct { int64_t window_hours, min_applications, near_pct; } splitting;
	struct { int64_t fast_seconds, approve_pct, min_decisions; } rubber_stamp;
	struct { int64_t weeks, min_weeks, k, min_signatures; } volume;
	struct { int64_t min_signatures, min_days, hour_margin; } history;   /* unusual hour, new host/exe */
	struct { int64_t days; } dormant;
	struct { int64_t window_seconds, refusals, wrong_credentials, probes; } probing;
	struct { int64_t warn_pct, high_pct; } quota;
	struct { int64_t expiring_hours; } approvals;   /* authorized, unused, ending soon */
	struct { int64_t checkpoint_max_seconds, clock_back_seconds; } log;
};

/* Fills *out with the defaults, then with what node (the value of the
 * top-level `risk:` key, or NULL when absent) sets; an unknown key or a
 * value out of range is an error with its line. 0 or -1 (error in y). */
int gw_risk_policy_parse(struct gw_yaml *y, yaml_node_t *node, struct gw_risk_policy **out);
void gw_risk_policy_free(struct gw_risk_policy **rp);
/* The defaults alone (for a policy without `risk:`). */
void gw_risk_policy_defaults(struct gw_risk_policy *rp);

/* ---- alerts ---- */

enum gw_risk_severity { GW_RISK_LOW = 1, GW_RISK_MEDIUM = 2, GW_RISK_HIGH = 3 };

struct gw_risk_alert {
	const char *rule;             /* static: "threshold-splitting", … (docs/risk.md) */
	enum gw_risk_severity severity;
	int64_t ts_ns;                /* time of the last evidence record */
	char *subject;                /* the person, seal or key it is about */
	char *why;                    /* one sentence */
	uint64_t *seqs; size_t n_seqs;        /* evidence records, ascending */
	int64_t *apps; size_t n_apps;         /* evidence applications, ascending */
};

const char *gw_risk_severity_name(enum gw_risk_severity s);

/* ---- the engine ---- */

struct gw_risk;

/* The rules of policy p (its risk parameters, seals, rules, quotas and
 * zones; p is referenced, not copied: keep it alive). NULL on ENOMEM. */
struct gw_risk *gw_risk_new(const struct gw_policy *p);
void gw_risk_free(struct gw_risk **r);
/* Records in seq order (strings are copied). 0, or -1 on ENOMEM. */
int gw_risk_add_record(struct gw_risk *r, const struct gw_audit_row *row);
/* Signed checkpoints (only their seq and time are used). */
int gw_risk_add_checkpoint(struct gw_risk *r, uint64_t seq, int64_t ts_ns);
/* The time the rules judge "now" by, for approvals about to expire:
 * the gateway's clock online (set before each gw_risk_evaluate), unset
 * offline, where gw_risk_finish takes the export's end (its last record
 * or checkpoint, the one the export made as it started). */
void gw_risk_set_now(struct gw_risk *r, int64_t now_ns);
/* When the approvals rule next has something to say with no new record
 * (an authorized approval entering its last expiring_hours), as of the
 * last evaluation; INT64_MAX: nothing due. The online engine evaluates
 * again on its clock tick once this time has come. */
int64_t gw_risk_next_due(const struct gw_risk *r);
/* An alert from outside the rules (the export did not verify). */
int gw_risk_add_alert(struct gw_risk *r, const char *rule, enum gw_risk_severity sev,
                      const char *subject, const char *why);
/* Runs every rule over what was added; the alerts, ordered by time then
 * rule, stay valid until gw_risk_free. 0, or -1 on ENOMEM. */
int gw_risk_finish(struct gw_risk *r, const struct gw_risk_alert **alerts, size_t *n);

/* The same rules over what was added so far, for the gateway's online
 * engine (gateway/risk/online.c): records may be added afterwards and it
 * called again. The alerts, ordered like gw_risk_finish's, stay valid
 * until the next gw_risk_add_record, gw_risk_evaluate or gw_risk_free.
 * Whole-history rules can only be re-run: each call costs the history's
 * length. 0, or -1 on ENOMEM. */
int gw_risk_evaluate(struct gw_risk *r, const struct gw_risk_alert **alerts, size_t *n);

/* ---- robust baselines (baseline.c) ---- */

/* Median of v[0..n) (reorders v); 0 for n == 0. */
double gw_risk_median(double *v, size_t n);
/* Median absolute deviation around med (reorders v). */
double gw_risk_mad(double *v, size_t n, double med);
/* median + k · max(1.4826 · MAD, √median, 1): the count above which a
 * bucket is unusual (the floors keep a flat history from alerting on a
 * few more). */
double gw_risk_threshold(double *v, size_t n, double k);

#endif
