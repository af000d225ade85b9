/*
 * One policy for the group (docs/policy.md, "One policy for the group"):
 * the requests that publish, show and list the versions in the store, and
 * the hooks that keep the newest published version in force on this
 * gateway — at start, on SIGHUP and when the change feed says another
 * gateway published one.
 */
#ifndef GW_POLICY_OPS_H
#define GW_POLICY_OPS_H

#include <jansson.h>

#include "dispatch.h"

json_t *gw_op_policy_publish(struct gw_req *r);
json_t *gw_op_policy_show(struct gw_req *r);
json_t *gw_op_policy_history(struct gw_req *r);

/* At start, once the store and the audit log are open, before serving:
 * when the store has a published version, its newest is validated and
 * put in force (a differing policy_path file is reported, and the file is
 * not used); otherwise the file loaded already stays in force. file_err:
 * why the policy_path file did not load (NULL: it did) — fatal only when
 * nothing is published. Also subscribes to "policy" change events
 * (changes.h). 0, or -1 with err: do not serve. */
int gw_policy_store_start(struct gw_ctx *ctx, const char *file_err, char *err, size_t errlen);
/* The SIGHUP reload of the policy, with the configuration cfg just read:
 * 0 when nothing is published (the caller reloads the file as before);
 * 1 when the store rules: its newest version was validated and put in
 * force again (with a policy_reload record), or refused and reported with
 * the one in force kept. */
int gw_policy_store_reload(struct gw_ctx *ctx, const struct gw_config *cfg);
/* Puts the newest published version in force when it is not yet: read,
 * validated as a reload validates, recorded (policy_reload with its
 * version and hash), swapped in. One this gateway cannot validate is
 * refused and reported (log, and a policy_reload record with outcome
 * error), and the one in force stays. 0 in force (or nothing to do), -1
 * refused or a store error. */
int gw_policy_follow(struct gw_ctx *ctx);

#endif
