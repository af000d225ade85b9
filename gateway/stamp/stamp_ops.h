/*
 * stamp_prepare (docs/stamp.md): before a document-bound application's
 * stamp is signed, the gateway is shown the incremental update and checks
 * that the stamped file is exactly the stored approved document followed
 * by one update holding only the signature field, its widget and
 * appearance, the /AcroForm and the /Sig. It then knows the SHA-256 of the
 * file's byte range, and the sign path accepts signed attributes with that
 * message digest for that application (gw_stamp_prepared).
 */
#ifndef GW_STAMP_OPS_H
#define GW_STAMP_OPS_H

#include <stdbool.h>
#include <stdint.h>
#include <jansson.h>

#include "dispatch.h"
#include "signing.h"

/* How long a checked stamp waits for its signature, seconds. */
#define GW_STAMP_PREPARED_TTL 300

json_t *gw_op_stamp_prepare(struct gw_req *r);
/* receipt {application}: the approval receipt of the applicant's last
 * signature on it, signed by the site's audit key (docs/stamp.md). */
json_t *gw_op_receipt(struct gw_req *r);

/* Whether the data of this signature are signed attributes whose message
 * digest is that of a stamp of application app_id prepared by the
 * requester in the last GW_STAMP_PREPARED_TTL s. */
bool gw_stamp_prepared(struct gw_req *r, int64_t app_id, const struct gw_sign_input *in,
                       const struct gw_sign_plan *plan);

#endif
