/*
 * Applications and approvals: the state machine of one seal use request
 * (docs/workflow.md). Pure: a transition takes the application as it is
 * stored, the policy in force and the time, and either changes the
 * application in memory or refuses with a reason in words. The gateway
 * persists the result and its audit record in one transaction.
 *
 *   pending(level k) ──approve (quorum met, last level)──▶ authorized
 *        │  └─approve (quorum met)──▶ pending(level k+1)
 *        ├─reject──▶ rejected
 *        ├─revoke──▶ revoked
 *        └─time──▶ expired
 *   authorized ──last use──▶ used_up │ ──revoke──▶ revoked │ ──time──▶ expired
 */
#ifndef GW_WORKFLOW_H
#define GW_WORKFLOW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "policy.h"
#include "protocol.h"

#define GW_WF_MAX_LEVELS    16
#define GW_WF_MAX_APPROVALS 64
#define GW_WF_TEXT_MAX      512

enum gw_app_state {
	GW_APP_PENDING = 1,
	GW_APP_AUTHORIZED,
	GW_APP_USED_UP,
	GW_APP_EXPIRED,
	GW_APP_REVOKED,
	GW_APP_REJECTED,
};

struct gw_approval {
	unsigned level;              /* 0-based level it counted for */
	char approver[SG_NAME_MAX + 1];
	bool approve;                /* false: a rejection */
	char comment[GW_WF_TEXT_MAX + 1];
	int64_t at;                  /* unix seconds */
};

/* The chain of levels the application must pass, fixed when it is created
 * so that a policy reload does not move the goalposts under it (approvers
 * are resolved against the policy in force at each approval). */
struct gw_wf_level {
	enum gw_level_kind kind;
	unsigned up;
	char role[SG_NAME_MAX + 1];
	unsigned quorum;
};

/* About 45 KiB (the approvals' comments): kept on the heap, passed by
 * pointer, never copied onto a thread's stack. */
struct gw_application {
	int64_t id;
	char applicant[SG_NAME_MAX + 1];
	char seal[SG_NAME_MAX + 1];
	char document_type[SG_NAME_MAX + 1];
	char business_scope[SG_NAME_MAX + 1];
	bool has_amount;
	int64_t amount;
	char reason[GW_WF_TEXT_MAX + 1];
	bool has_doc;
	uint8_t doc_digest[32];      /* SHA-256 of the document the use is bound to */
	int rule;                    /* index of the matching rule at creation */
	struct gw_wf_level levels[GW_WF_MAX_LEVELS];
	unsigned n_levels;
	unsigned level;              /* current level while pending */
	uint32_t uses_granted, uses_left;
	int64_t created, valid_until; /* unix seconds */
	enum gw_app_state state;
	struct gw_approval approvals[GW_WF_MAX_APPROVALS];
	unsigned n_approvals;
};

const char *gw_app_state_name(enum gw_app_state s);
int gw_app_state_from_name(const char *name, enum gw_app_state *out);

/* Limits on what an applicant may ask for. */
#define GW_WF_MAX_USES      1000
#define GW_WF_MAX_VALIDITY  (90 * 24 * 3600)
#define GW_WF_DEFAULT_VALIDITY (7 * 24 * 3600)

/* Fills app for a new application (id left 0). Refuses when the applicant
 * may not use the seal, the conditions fail, no rule matches, or the seal
 * needs no approval (nothing to apply for). A rule with no levels is
 * authorized at once. */
int gw_wf_create(const struct gw_policy *p, const struct gw_seal *seal,
                 const struct gw_person *applicant, const struct gw_use_case *uc,
                 const char *reason, const uint8_t *doc_digest, uint32_t uses,
                 int64_t valid_for, time_t now, struct gw_application *app,
                 char *why, size_t whylen);

/* approver approves the current level. Refused unless pending, not
 * expired, approver != applicant, approver has not already acted on this
 * application, and approver qualifies for the current level. Advances the
 * level when its quorum is met, and authorizes after the last level. */
int gw_wf_approve(const struct gw_policy *p, struct gw_application *app,
                  const struct gw_person *approver, const char *comment, time_t now,
                  char *why, size_t whylen);

/* approver rejects: same qualification as approving; ends the application. */
int gw_wf_reject(const struct gw_policy *p, struct gw_application *app,
                 const struct gw_person *approver, const char *comment, time_t now,
                 char *why, size_t whylen);

/* The applicant or a seal admin revokes a pending or authorized application. */
int gw_wf_revoke(struct gw_application *app, const struct gw_person *actor,
                 time_t now, char *why, size_t whylen);

/* Moves a pending/authorized application past its validity to expired.
 * Returns true when it changed. */
bool gw_wf_expire(struct gw_application *app, time_t now);
/* The state app has at now (expired once past its validity) without
 * changing it: what gw_wf_expire would make of it. */
enum gw_app_state gw_wf_state_at(const struct gw_application *app, time_t now);

/* Spends one use of an authorized application (after a released
 * signature). Refuses when nothing is left; moves to used_up at zero. */
int gw_wf_spend(struct gw_application *app, time_t now, char *why, size_t whylen);

/* True when app may back a signature now (authorized, uses left, valid). */
bool gw_wf_usable(const struct gw_application *app, time_t now);

/* Words on where an application stands, e.g. "approval #42 is waiting for
 * level 2 of 2: an executive (carol)". */
void gw_wf_describe(const struct gw_policy *p, const struct gw_application *app,
                    time_t now, char *out, size_t outlen);

/* Whether who may approve the current level now (for "waiting for me"). */
bool gw_wf_waiting_for(const struct gw_policy *p, const struct gw_application *app,
                       const struct gw_person *who);

#endif
