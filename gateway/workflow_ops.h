/*
 * Workflow requests (docs/protocol.md): apply, list, show, approve, reject,
 * revoke, explain; and the periodic expiry sweep.
 */
#ifndef GW_WORKFLOW_OPS_H
#define GW_WORKFLOW_OPS_H

#include <jansson.h>

#include "dispatch.h"

json_t *gw_op_apply(struct gw_req *r);
json_t *gw_op_list(struct gw_req *r);
json_t *gw_op_show(struct gw_req *r);
json_t *gw_op_approve(struct gw_req *r);
json_t *gw_op_reject(struct gw_req *r);
json_t *gw_op_revoke(struct gw_req *r);
json_t *gw_op_explain(struct gw_req *r);

/* Expires applications whose validity ended, each with its record. */
void gw_workflow_sweep(struct gw_ctx *ctx);

#endif
