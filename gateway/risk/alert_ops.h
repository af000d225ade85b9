/*
 * The alerts' protocol operations (docs/protocol.md, docs/risk.md):
 * alerts lists the online engine's alerts (auditors and seal admins);
 * alert_ack and alert_close change one's state with a comment (auditors),
 * each change recorded in the audit log together with the store's row.
 */
#ifndef GW_ALERT_OPS_H
#define GW_ALERT_OPS_H

#include "dispatch.h"

json_t *gw_op_alerts(struct gw_req *r);
json_t *gw_op_alert_ack(struct gw_req *r);
json_t *gw_op_alert_close(struct gw_req *r);

#endif
