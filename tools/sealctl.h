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
/* login, logout, confirm, user totp-enroll / unlock / totp-reset. */
int sealctl_auth(struct cli *c, const char *cmd, int argc, char **argv);

/* audit verify|query|export|checkpoint (sealctl-audit.c). argv[0] is the
 * subcommand ("verify"…). */
int sealctl_audit(struct cli *c, int argc, char **argv);

/* device enroll|list|approve|revoke (sealctl-device.c). */
int sealctl_device(struct cli *c, const char *cmd, int argc, char **argv);
/* Closes a TLS connection of c, if any. */
void sealctl_device_done(struct cli *c);
/* The gateway when neither --socket nor SEALGATE_SOCKET names one:
 * sealgate.conf's (docs/clients.md), else the
 * default socket; *from says which. */
const char *sealctl_default_gateway(const char **from);
/* sealgate.conf's user (the account, as for the module), or NULL. */
const char *sealctl_conf_user(void);

#endif
