/*
 * The PostgreSQL backend's calls of the policy repository and change feed
 * (policystore.h says what each does); pg/policystore.c.
 */
#ifndef GW_PG_POLICYSTORE_H
#define GW_PG_POLICYSTORE_H

#include "policystore.h"

int gw_pg_policy_publish_tx(struct gw_store *st, const struct gw_policy_version *v, char *err,
                            size_t errlen);
int gw_pg_policy_get(struct gw_store *st, int64_t n, struct gw_policy_version *out, char *err,
                     size_t errlen);
int gw_pg_policy_latest(struct gw_store *st, int64_t *version, char *err, size_t errlen);
int gw_pg_policy_history(struct gw_store *st, size_t limit, gw_store_policy_fn fn, void *ctx,
                         char *err, size_t errlen);
int gw_pg_changes_open(struct gw_store *st, void **feed, char *err, size_t errlen);
int gw_pg_changes_wait(void *feed, int timeout_ms, gw_store_change_fn fn, void *ctx, char *err,
                       size_t errlen);
void gw_pg_changes_close(void *feed);
int gw_pg_changes_notify_tx(struct gw_store *st, const char *event, char *err, size_t errlen);

#endif
