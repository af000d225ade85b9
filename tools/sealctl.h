/*
 * sealctl's command groups, each in its own file, dispatched from
 * sealctl.c. Each returns the exit status, or -1 for "not mine".
 */
#ifndef SEALCTL_H
#define SEALCTL_H

#include <stdint.h>
#include <stdio.h>
#include <jansson.h>

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
/* The offline verification of `sealctl audit verify --from-export PATH`
 * (cert, ca: NULL or files to pin trust), its verdict written to out.
 * fn (may be NULL) is given every item of the file that parsed, in file
 * order, as it is verified, so a caller reads the export once; a non-zero
 * return stops the reading (the export then counts as not intact).
 * 0 intact, 1 not. */
typedef int (*sealctl_export_item_fn)(void *ctx, const json_t *item);
int sealctl_audit_verify_export(const char *path, const char *cert, const char *ca, FILE *out,
                                sealctl_export_item_fn fn, void *ctx);
/* The same, with the records the verifier's line reader decoded without
 * jansson given to rec as rows (strings valid during the call only), and
 * every other item, and any record that reader left to jansson, to fn. */
struct gw_audit_row;
typedef int (*sealctl_export_record_fn)(void *ctx, const struct gw_audit_row *row);
int sealctl_audit_verify_export_records(const char *path, const char *cert, const char *ca,
                                        FILE *out, sealctl_export_item_fn fn,
                                        sealctl_export_record_fn rec, void *ctx);

/* risk scan, and report (sealctl-risk.c): argv[0] is "scan" / the first
 * option of report; json: sealctl's --json (taken out of argv). */
int sealctl_risk(int argc, char **argv, bool json);
int sealctl_report(int argc, char **argv);
/* alerts [--open] [--rule R] [--since S] | alerts ack|close ID -m COMMENT
 * (sealctl-alerts.c); argv[0] is "alerts". */
int sealctl_alerts(struct cli *c, int argc, char **argv);

/* Documents (sealctl-doc.c, docs/stamp.md). A regular file of at most
 * 512 MiB read whole (free *out): 0, or -1 said on stderr. */
int sealctl_read_file(const char *path, uint8_t **out, size_t *len);
/* Uploads data to the gateway (doc_put chunks, c logged in) as the
 * document named name; its SHA-256 into sha256. 0, or -1 said on stderr. */
int sealctl_doc_upload(struct cli *c, const char *name, const uint8_t *data, size_t len,
                       uint8_t sha256[32]);

/* doc put FILE | doc get SHA256 --out FILE (sealctl-doc.c); argv[0] is
 * the command. -1 when cmd is not one of these. */
int sealctl_doc(struct cli *c, const char *cmd, int argc, char **argv);

/* verify FILE.pdf … (sealctl-verify.c), offline; -1 when cmd is not
 * "verify". */
int sealctl_verify(const char *cmd, int argc, char **argv);
/* stamp … (sealctl-stamp.c); -1 when cmd is not "stamp". */
int sealctl_stamp(struct cli *c, const char *cmd, int argc, char **argv);

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
