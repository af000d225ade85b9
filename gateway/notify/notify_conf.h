/*
 * The gateway configuration's notify: section (docs/configuration.md,
 * docs/notifications.md): where notices go (an SMTP relay, webhooks per
 * department), the link they carry, and how often a failed one is tried
 * again. Parsed with the rest of the configuration; the secrets it names
 * (the SMTP password, a robot's signing secret, a webhook's URL with its
 * token) stay in their 0600 files until the sender starts.
 */
#ifndef GW_NOTIFY_CONF_H
#define GW_NOTIFY_CONF_H

#include <stdbool.h>
#include <stddef.h>

struct gw_yaml;
typedef struct yaml_node_s yaml_node_t;

enum gw_webhook_format {
	GW_WEBHOOK_PLAIN,             /* sealgate's own JSON */
	GW_WEBHOOK_DINGTALK,          /* msgtype markdown, optional signature */
	GW_WEBHOOK_WECOM,             /* msgtype markdown */
	GW_WEBHOOK_FEISHU,            /* msg_type text, optional signature */
};

/* Limits (docs/notifications.md). */
#define GW_NOTIFY_WEBHOOKS_MAX  64
#define GW_NOTIFY_URL_MAX       2048
#define GW_NOTIFY_SECRET_MAX    512

struct gw_notify_webhook {
	char *name;                   /* in records and messages instead of the URL */
	char *department;             /* NULL: every notice; else this department and those under it */
	enum gw_webhook_format format;
	char *url;                    /* may hold a token: never in a message */
	char *url_file;               /* or the URL in a 0600 file */
	char *secret_file;            /* DingTalk / Feishu signing secret, 0600, or NULL */
};

struct gw_notify_conf {
	char *web_url;                /* links: <web_url>/#/applications/ID */
	char *from;                   /* the From: address */
	char *smtp_url;               /* smtp://host[:port] or smtps://…; NULL: no email */
	bool starttls;                /* smtp://: STARTTLS required */
	char *smtp_user;              /* login, or NULL */
	char *smtp_password_file;     /* 0600 */
	char *ca_file;                /* CA bundle for smtps/STARTTLS/https, or NULL: the system's */
	struct gw_notify_webhook *webhooks;
	size_t n_webhooks;
	unsigned retry_initial;       /* seconds before the first retry; doubles */
	unsigned retry_max;           /* the longest wait between tries */
	unsigned max_tries;           /* tries before a notice fails for good */
	unsigned timeout;             /* seconds one send may take */
	unsigned lease;               /* seconds a claimed notice stays with its sender */
	unsigned poll;                /* seconds between looks at the outbox */
};

/* Parses node (the notify: mapping); relative paths against dir. 0, or
 * -1 with the error in y. */
int gw_notify_conf_parse(struct gw_yaml *y, yaml_node_t *node, const char *dir,
                         struct gw_notify_conf **out);
void gw_notify_conf_free(struct gw_notify_conf **c);

/* Reads a secret from path: a regular file owned by the effective uid,
 * not readable or writable by group or others, at most max bytes, one
 * trailing newline dropped. NULL with err (naming the file, never its
 * bytes); wipe and free the result with sg_free_secret_str. */
char *gw_notify_read_secret(const char *path, size_t max, char *err, size_t errlen);

#endif
