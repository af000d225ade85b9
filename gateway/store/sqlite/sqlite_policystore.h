/*
 * The SQLite backend's calls of the policy repository and change feed
 * (policystore.h says what each does); sqlite/policystore.c.
 */
#ifndef GW_SQLITE_POLICYSTORE_H
#define GW_SQLITE_POLICYSTORE_H

#include "policystore.h"

int gw_sqlite_policy_publish_tx(struct gw_store *st, const struct gw_policy_version *v, char *err,
                                size_t errlen);
int gw_sqlite_policy_get(struct gw_store *st, int64_t n, struct gw_policy_version *out, char *err,
                         size_t errlen);
int gw_sqlite_policy_latest(struct gw_store *st, int64_t *version, char *err, size_t errlen);
int gw_sqlite_policy_history(struct gw_store *st, size_t limit, gw_store_policy_fn fn, void *ctx,
                             char *err, size_t errlen);
int gw_sqlite_changes_open(struct gw_store *st, void **impl, char *err, size_t errlen);
int gw_sqlite_changes_notify_tx(struct gw_store *st, const char *event, char *err, size_t errlen);

#endif
