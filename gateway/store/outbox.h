/*
 * The outbox repository, whatever the backend: notices waiting to be sent
 * (gateway/notify/, docs/notifications.md). A notice is written in the
 * transaction of the change that causes it (an approval committed means
 * its notice exists), claimed by a sender for a lease (on PostgreSQL with
 * FOR UPDATE SKIP LOCKED, so two gateways never take one notice), and
 * settled: sent, to be tried again at a time, or failed for good. The
 * outbox is the group's, like the applications: any gateway of the store
 * may send any notice.
 */
#ifndef GW_OUTBOX_H
#define GW_OUTBOX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct gw_store;

/* Bounds of a notice's fields, checked by gw_outbox_put_tx. */
#define GW_OUTBOX_EVENT_MAX     32
#define GW_OUTBOX_CHANNEL_MAX   96     /* "email" or "webhook:NAME" */
#define GW_OUTBOX_NAME_MAX      128    /* recipient: a person or department id */
#define GW_OUTBOX_ADDRESS_MAX   254    /* an email address (RFC 5321 path) */
#define GW_OUTBOX_DETAIL_MAX    (16u * 1024u)
#define GW_OUTBOX_ERROR_MAX     300
#define GW_OUTBOX_CLAIM_MAX     32     /* notices one claim hands out */

/* One notice. Strings are the caller's (put) or malloc'd (claim: free
 * with gw_outbox_notice_clear). */
struct gw_outbox_notice {
	int64_t id;                   /* the store's; 0 before put */
	char *event;                  /* app_waiting, app_authorized, app_rejected, alert */
	char *channel;                /* "email", "webhook:NAME" */
	char *recipient;              /* the person or department it is for */
	char *address;                /* the email address, NULL: none known (or a webhook) */
	int64_t application;          /* 0 = none */
	char *detail;                 /* JSON object text: what the message says */
	unsigned tries;               /* tries made, this claim's included */
	int64_t created;              /* Unix seconds */
};
void gw_outbox_notice_clear(struct gw_outbox_notice *n);

enum gw_outbox_outcome {
	GW_OUTBOX_SENT,               /* done */
	GW_OUTBOX_RETRY,              /* pending again, due at next_at */
	GW_OUTBOX_FAILED,             /* given up: no more tries */
};

/* Makes the table where the backend makes tables on first use (SQLite):
 * call once at start, outside any transaction, before the first put (a
 * put runs in the audit writer's batch, whose redo frame replays rows
 * into tables that exist). 0, or -1 with err. */
int gw_outbox_init(struct gw_store *st, char *err, size_t errlen);
/* Writes n (its id is set) in the caller's transaction, due at once.
 * dedupe: NULL, or a key that makes a second put of the same notice a
 * no-op ("app_waiting:42:1:email:bob"). 1 written, 0 already there, -1
 * with err. */
int gw_outbox_put_tx(struct gw_store *st, struct gw_outbox_notice *n, const char *dedupe,
                     int64_t now, char *err, size_t errlen);
/* Claims at most max due notices for claimer (a gateway's instance id)
 * until now + lease_s: pending ones due by now, and ones whose lease
 * ran out (a sender that died while sending). Each claim counts a try.
 * Fills out[0..*n) (clear each). 0, or -1 with err. */
int gw_outbox_claim(struct gw_store *st, const char *claimer, int64_t now, unsigned lease_s,
                    struct gw_outbox_notice *out, size_t max, size_t *n, char *err,
                    size_t errlen);
/* Settles notice id, still claimed by claimer, in the caller's
 * transaction (with its notice_sent / notice_failed record). error: the
 * last failure's words (no secret), or NULL. 1 settled, 0 no longer
 * claimed by claimer (its lease ran out and another took it), -1 err. */
int gw_outbox_settle_tx(struct gw_store *st, int64_t id, const char *claimer,
                        enum gw_outbox_outcome outcome, int64_t next_at, const char *error,
                        int64_t now, char *err, size_t errlen);

#endif
