/*
 * The audit trail's gateway operations (docs/protocol.md, "audit_*"):
 * query with filters and paging, export of records and signed checkpoints
 * for offline verification, and a checkpoint on demand. Who may read what
 * is decided here, once, for all three.
 */
#ifndef GW_AUDIT_OPS_H
#define GW_AUDIT_OPS_H

#include <jansson.h>

#include "dispatch.h"

#ifndef SG_OP_AUDIT_QUERY
#define SG_OP_AUDIT_QUERY      "audit_query"
#define SG_OP_AUDIT_EXPORT     "audit_export"
#define SG_OP_AUDIT_CHECKPOINT "audit_checkpoint"
#endif

#define GW_AUDIT_QUERY_LIMIT_MAX  1000   /* records per reply */
#define GW_AUDIT_EXPORT_LIMIT_MAX 2000   /* items per export page */

/* All need a session (NEED_SESSION). */
json_t *gw_op_audit_query(struct gw_req *r);
json_t *gw_op_audit_export(struct gw_req *r);
json_t *gw_op_audit_checkpoint(struct gw_req *r);

#endif
