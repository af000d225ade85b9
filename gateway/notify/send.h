/*
 * How a notice travels (send.c): its words (subject and text, Markdown
 * for the robots) from its event and detail, and one try over libcurl,
 * by email through the SMTP relay or by a webhook in its format.
 */
#ifndef GW_NOTIFY_SEND_H
#define GW_NOTIFY_SEND_H

#include <stdbool.h>

#include "notify_conf.h"
#include "outbox.h"

/* The secrets the configuration names, read once at start (wiped at
 * done): the SMTP password, each webhook's URL (it may hold a token) and
 * signing secret. */
struct gw_notify_secrets {
	char *smtp_password;
	char **urls;                  /* [n_webhooks] */
	char **signing;               /* [n_webhooks], NULL: none */
	size_t n;
};
int gw_send_init(const struct gw_notify_conf *nc, struct gw_notify_secrets *s, char *err,
                 size_t errlen);
void gw_send_done(struct gw_notify_secrets *s);

struct gw_send_result {
	bool ok;
	bool retry;                   /* a failure another try may mend */
	const char *format;           /* the webhook's format, or NULL (email) */
	char error[GW_OUTBOX_ERROR_MAX + 1];   /* words for the record: no URL, no secret */
};

/* One try of n. stop: non-zero cuts a transfer in progress. */
void gw_send_notice(const struct gw_notify_conf *nc, const struct gw_notify_secrets *s,
                    const char *instance, const struct gw_outbox_notice *n,
                    volatile int *stop, struct gw_send_result *r);

/* The words of a notice (for the tests of its texts too): title, text
 * (plain, lines) and markdown; all malloc'd (free with gw_send_words_clear). */
struct gw_send_words {
	char *title, *text, *markdown, *link;
};
int gw_send_words(const char *event, const char *detail, const char *web_url, bool for_group,
                  struct gw_send_words *w);
void gw_send_words_clear(struct gw_send_words *w);

#endif
