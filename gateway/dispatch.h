/*
 * Request dispatch: one table states, per operation, the session, the
 * factors and the role it needs; a session is re-checked against the
 * policy in force at every use; handlers get an authorized request and
 * return the reply.
 * Every refusal is recorded in the audit log with its reason.
 */
#ifndef GW_DISPATCH_H
#define GW_DISPATCH_H

#include <jansson.h>

#include "server.h"

/* One request as a handler sees it: the peer, the message, the policy
 * snapshot in force for the whole request, and who is logged in. */
struct gw_req {
	struct gw_ctx *ctx;
	const struct gw_peer *peer;
	const json_t *msg;
	struct gw_snapshot *snap;
	bool logged_in;
	struct gw_login_info login;
	const struct gw_person *who;     /* logged-in person, or NULL */
	bool changed;                    /* a failed attempt was counted or units are reserved:
	                                    a refusal now is always recorded (refusals.h) */
	char err[256];
};

typedef json_t *(*gw_handler_fn)(struct gw_req *r);

/* Records an event of request r (actor defaults to the logged-in person)
 * and waits until it is durable. 0, or -1 when it could not be written:
 * then whatever it records must not happen. */
int gw_req_record(struct gw_req *r, const char *action, const char *outcome, const char *reason,
                   const char *actor, const char *seal, unsigned long mech,
                   const uint8_t *dig, size_t diglen, uint64_t *seq_out);
/* The error reply for a malformed request, with r->err. */
json_t *gw_bad_request(struct gw_req *r);
/* The account the peer acts as (SEALGATE_USER = requested), or NULL with
 * r->err. */
const struct gw_person *gw_req_resolve(struct gw_req *r, const char *requested);
json_t *gw_roles_json(const struct gw_person *who);
/* True while the backend token is there to sign with. */
bool gw_req_token_usable(const struct gw_req *r);

/* Handles one decoded request from peer; always returns a reply object. */
json_t *gw_dispatch(struct gw_ctx *ctx, const struct gw_peer *peer, const json_t *req);

#endif
