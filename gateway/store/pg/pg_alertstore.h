/* The PostgreSQL backend's alerts repository (alertstore.c), for ops.c. */
#ifndef GW_PG_ALERTSTORE_H
#define GW_PG_ALERTSTORE_H

#include "alertstore.h"

int gw_pg_alert_init(struct gw_store *st, char *err, size_t errlen);
int gw_pg_alert_put_tx(struct gw_store *st, const struct gw_alert_row *a, int64_t *id,
                           bool *created, char *err, size_t errlen);
int gw_pg_alert_state_tx(struct gw_store *st, int64_t id, const char *const *from,
                             const char *state, const char *by, const char *comment, int64_t at,
                             char *err, size_t errlen);
int gw_pg_alert_list(struct gw_store *st, const struct gw_alert_filter *f,
                         gw_alertstore_fn fn, void *ctx, char *err, size_t errlen);

#endif
