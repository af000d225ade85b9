/*
 * The SQLite backend's calls of the outbox repository (outbox.h says what
 * each does); sqlite/outbox.c.
 */
#ifndef GW_SQLITE_OUTBOX_H
#define GW_SQLITE_OUTBOX_H

#include "outbox.h"

int gw_sqlite_outbox_init(struct gw_store *st, char *err, size_t errlen);
int gw_sqlite_outbox_put_tx(struct gw_store *st, struct gw_outbox_notice *n, const char *dedupe,
                            int64_t now, char *err, size_t errlen);
int gw_sqlite_outbox_claim(struct gw_store *st, const char *claimer, int64_t now,
                           unsigned lease_s, struct gw_outbox_notice *out, size_t max,
                           size_t *n, char *err, size_t errlen);
int gw_sqlite_outbox_settle_tx(struct gw_store *st, int64_t id, const char *claimer,
                               enum gw_outbox_outcome outcome, int64_t next_at,
                               const char *error, int64_t now, char *err, size_t errlen);

#endif
