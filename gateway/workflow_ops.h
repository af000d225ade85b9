/*
 * Workflow requests (docs/protocol.md): apply, list, show, approve, reject,
 * revoke, explain; and the periodic expiry sweep.
 */
#ifndef GW_WORKFLOW_OPS_H
#define GW_WORKFLOW_OPS_H

#include <jansson.h>

#include "dispatch.h"
#include "workflow.h"

json_t *gw_op_apply(struct gw_req *r);
json_t *gw_op_list(struct gw_req *r);
json_t *gw_op_show(struct gw_req *r);
json_t *gw_op_approve(struct gw_req *r);
json_t *gw_op_reject(struct gw_req *r);
json_t *gw_op_revoke(struct gw_req *r);
json_t *gw_op_explain(struct gw_req *r);

/* A decision on a stored application, made in the store: run as the
 * change of its audit record (gw_audit_record_with's apply), or inside any
 * gw_store_tx_begin … commit. It re-reads the application under the
 * store's row lock (gw_appstore_lock_tx), applies the transition (gw_wf_*)
 * to that copy and stores it before the commit, so two approvers of one
 * level on two gateways each count once and the level advances once; the
 * same approver twice is refused by the transition, which sees the first
 * approval. No process lock is involved. */
enum gw_wf_decision { GW_WF_APPROVE, GW_WF_REJECT, GW_WF_REVOKE, GW_WF_EXPIRE };

struct gw_wf_decide {
	const struct gw_policy *policy;     /* in force (not for EXPIRE) */
	const struct gw_person *who;        /* the approver or revoker (not for EXPIRE) */
	enum gw_wf_decision d;
	const char *comment;
	time_t now;
	int64_t id;
	struct gw_application *app;         /* out: as re-read and decided */
	bool refused;                       /* out: the transition said no (why) */
	bool found_expired;                 /* out: refused because its validity ended */
	char why[GW_WF_TEXT_MAX];
	int from_state;                     /* out: the state and level it was decided from */
	unsigned from_level;
};

/* A gw_audit_apply_fn on struct gw_wf_decide: 0 decided and stored; -1
 * refused (refused set, why and err say why: nothing changed) or a store
 * error (err). */
int gw_wf_decide_tx(struct gw_store *st, void *arg, char *err, size_t errlen);

/* Expires applications whose validity ended, each with its record. */
void gw_workflow_sweep(struct gw_ctx *ctx);

#endif
