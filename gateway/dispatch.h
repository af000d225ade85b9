/*
 * Request dispatch: one table states, per operation, what authentication it
 * needs; handlers get an authenticated request and return the reply.
 * Every refusal is recorded in the audit log with its reason.
 */
#ifndef GW_DISPATCH_H
#define GW_DISPATCH_H

#include <jansson.h>

#include "server.h"

/* Handles one decoded request from peer; always returns a reply object. */
json_t *gw_dispatch(struct gw_ctx *ctx, const struct gw_peer *peer, const json_t *req);

#endif
