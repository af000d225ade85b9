/*
 * The outbox repository's interface (outbox.h): bounds checked here, each
 * call through the store's table (backend.h). Nothing here knows SQL.
 */
#include "backend.h"
#include "outbox.h"
#include "protocol.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static inline const struct gw_store_ops *
ops_of(struct gw_store *st)
{
	return ((const struct gw_store_head *)(const void *)st)->ops;
}

void
gw_outbox_notice_clear(struct gw_outbox_notice *n)
{
	if (n == NULL)
		return;
	free(n->event);
	free(n->channel);
	free(n->recipient);
	free(n->address);
	free(n->detail);
	memset(n, 0, sizeof(*n));
}

static bool
fits(const char *s, size_t max, bool may_be_null)
{
	if (s == NULL)
		return may_be_null;
	return s[0] != '\0' && strnlen(s, max + 1) <= max;
}

static int
missing(const char *call, char *err, size_t errlen)
{
	sg_seterr(err, errlen, "outbox: %s is not on this store's backend", call);
	return -1;
}

int
gw_outbox_init(struct gw_store *st, char *err, size_t errlen)
{
	const struct gw_store_ops *o = ops_of(st);

	if (o->outbox_init == NULL)
		return missing("init", err, errlen);
	return o->outbox_init(st, err, errlen);
}

int
gw_outbox_put_tx(struct gw_store *st, struct gw_outbox_notice *n, const char *dedupe,
                 int64_t now, char *err, size_t errlen)
{
	const struct gw_store_ops *o = ops_of(st);

	if (!fits(n->event, GW_OUTBOX_EVENT_MAX, false) ||
	    !fits(n->channel, GW_OUTBOX_CHANNEL_MAX, false) ||
	    !fits(n->recipient, GW_OUTBOX_NAME_MAX, false) ||
	    !fits(n->address, GW_OUTBOX_ADDRESS_MAX, true) ||
	    !fits(n->detail, GW_OUTBOX_DETAIL_MAX, false) ||
	    !fits(dedupe, GW_OUTBOX_EVENT_MAX + GW_OUTBOX_CHANNEL_MAX + GW_OUTBOX_NAME_MAX + 48, true)) {
		sg_seterr(err, errlen, "outbox: a notice needs an event, a channel, a recipient and "
		          "a detail within their bounds");
		return -1;
	}
	if (o->outbox_put_tx == NULL)
		return missing("put", err, errlen);
	return o->outbox_put_tx(st, n, dedupe, now, err, errlen);
}

int
gw_outbox_claim(struct gw_store *st, const char *claimer, int64_t now, unsigned lease_s,
                struct gw_outbox_notice *out, size_t max, size_t *n, char *err, size_t errlen)
{
	const struct gw_store_ops *o = ops_of(st);

	*n = 0;
	if (max > GW_OUTBOX_CLAIM_MAX)
		max = GW_OUTBOX_CLAIM_MAX;
	if (claimer == NULL || claimer[0] == '\0' || max == 0) {
		sg_seterr(err, errlen, "outbox: a claim needs a claimer and room");
		return -1;
	}
	if (o->outbox_claim == NULL)
		return missing("claim", err, errlen);
	return o->outbox_claim(st, claimer, now, lease_s, out, max, n, err, errlen);
}

int
gw_outbox_settle_tx(struct gw_store *st, int64_t id, const char *claimer,
                    enum gw_outbox_outcome outcome, int64_t next_at, const char *error,
                    int64_t now, char *err, size_t errlen)
{
	const struct gw_store_ops *o = ops_of(st);
	char cut[GW_OUTBOX_ERROR_MAX + 1];

	if (o->outbox_settle_tx == NULL)
		return missing("settle", err, errlen);
	/* (a long error is cut, on a character boundary left to the caller:
	 * notify.c keeps its words ASCII) */
	if (error != NULL) {
		snprintf(cut, sizeof(cut), "%s", error);
		error = cut;
	}
	return o->outbox_settle_tx(st, id, claimer, outcome, next_at, error, now, err, errlen);
}
