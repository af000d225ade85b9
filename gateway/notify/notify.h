/*
 * Notifications from the gateway (docs/notifications.md): notices put in
 * the store's outbox (store/outbox.h) in the flow of the change that
 * causes them, and a sender thread that claims due notices, sends each by
 * email (SMTP relay) or webhook (plain JSON, DingTalk, WeCom, Feishu),
 * settles it (sent, retry with a doubling wait, failed) and records every
 * sent and failed try in the audit log (notice_sent / notice_failed).
 */
#ifndef GW_NOTIFY_H
#define GW_NOTIFY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <jansson.h>

#include "notify_conf.h"

struct gw_ctx;
struct gw_store;
struct gw_policy;
struct gw_application;

/* The events (the detail's shape for each in docs/notifications.md). */
#define GW_NOTIFY_APP_WAITING    "app_waiting"
#define GW_NOTIFY_APP_AUTHORIZED "app_authorized"
#define GW_NOTIFY_APP_REJECTED   "app_rejected"
#define GW_NOTIFY_ALERT          "alert"

/* The most approvers one level's notice goes to (the rest are not told,
 * and the log says so). */
#define GW_NOTIFY_APPROVERS_MAX 64

/* Puts a notice of event for person_or_dept (a person of the policy: by
 * email to their address and by the webhooks of their department; a
 * department: its webhooks and an email to its head) into the outbox, in
 * the caller's flow: inside a gw_audit_apply_fn it is part of that
 * transaction, elsewhere a transaction of its own. detail: a JSON object
 * (borrowed; copied) of what the notice says. Without notify: in the
 * configuration it does nothing (0). 0, or -1 with err. */
int gw_notify_enqueue(struct gw_ctx *ctx, const char *event, const char *person_or_dept,
                      json_t *detail, char *err, size_t errlen);

/* The same inside the caller's transaction, with what the caller holds.
 * tag: the notice's identity for dedupe ("app_waiting:42:1"), or NULL. */
int gw_notify_enqueue_tx(struct gw_store *st, const struct gw_notify_conf *nc,
                         const struct gw_policy *p, const char *event,
                         const char *person_or_dept, int64_t application, json_t *detail,
                         const char *tag, time_t now, char *err, size_t errlen);

/* The notices an application's change makes, inside its transaction
 * (workflow_ops.c): app as stored now, from_state / from_level as it was
 * (from_state 0: just created). Waiting for a level's approvers (new, or
 * advanced a level): app_waiting to each; authorized or rejected:
 * app_authorized / app_rejected to the applicant. nc NULL: none. */
int gw_notify_app_tx(struct gw_store *st, const struct gw_notify_conf *nc,
                     const struct gw_policy *p, const struct gw_application *app,
                     int from_state, unsigned from_level, time_t now, char *err, size_t errlen);

/* Starts the sender (nothing without notify:): reads the secrets its
 * configuration names, makes the outbox table where the backend needs
 * it. 0, or -1 with err. */
int gw_notify_start(struct gw_ctx *ctx, char *err, size_t errlen);
/* Tells the sender to look at the outbox now (after a commit). */
void gw_notify_kick(struct gw_ctx *ctx);
/* Stops the sender (a send in progress is cut; its notice stays claimed
 * until its lease runs out, then is tried again). Safe when not started. */
void gw_notify_stop(struct gw_ctx *ctx);

#endif
