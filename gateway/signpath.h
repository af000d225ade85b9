/*
 * The sign path (DESIGN.md, "The sign path"): every check before the token
 * is touched, an exact reservation of uses and quotas, the signature on
 * the token, then the audit record and the spent uses in one durable
 * transaction — and only then the signature goes back to the client.
 */
#ifndef GW_SIGNPATH_H
#define GW_SIGNPATH_H

#include <jansson.h>

#include "dispatch.h"

int gw_signpath_init(struct gw_ctx *ctx);
void gw_signpath_fini(struct gw_ctx *ctx);

/* op "sign" */
json_t *gw_op_sign(struct gw_req *r);
/* op "why": the caller's last refusal, in words. */
json_t *gw_op_why(struct gw_req *r);

/* Remembers a refusal for `sealctl why` (also used by other handlers). */
void gw_refusal_note(struct gw_ctx *ctx, const char *user, const char *seal, const char *reason);

/* For the module's vendor attributes: uses left for who on seal across
 * usable applications (-1 when the seal needs no approval), and quota left
 * (-1 = no limit). */
void gw_signpath_state(struct gw_ctx *ctx, const struct gw_policy *p, const struct gw_person *who,
                       const struct gw_seal *seal, int64_t *uses_left, int64_t *quota_left);

#endif
