/*
 * sealctl's command groups, each in its own file, dispatched from
 * sealctl.c. Each returns the exit status, or -1 for "not mine".
 */
#ifndef SEALCTL_H
#define SEALCTL_H

#include "cli.h"

/* apply, list, show, approve, reject, revoke, why, policy.
 * argv[0] is the command itself. */
int sealctl_workflow(struct cli *c, const char *cmd, int argc, char **argv);
/* policy publish FILE | show [--version N] | history (sealctl-policy.c).
 * argv[0] is "policy". */
int sealctl_policy_store(struct cli *c, int argc, char **argv);
/* login, logout, confirm, user totp-enroll / unlock / totp-reset. */
int sealctl_auth(struct cli *c, const char *cmd, int argc, char **argv);

/* audit verify|query|export|checkpoint (sealctl-audit.c). argv[0] is the
 * subcommand ("verify"…). */
int sealctl_audit(struct cli *c, int argc, char **argv);

#endif
