/*
 * The alerts repository's interface (alertstore.h): each call goes to the
 * store's backend through its table (backend.h), like store.c's.
 */
#include "backend.h"
#include "protocol.h"

static inline const struct gw_store_ops *
ops_of(struct gw_store *st)
{
	return ((const struct gw_store_head *)(const void *)st)->ops;
}

int
gw_alertstore_init(struct gw_store *st, char *err, size_t errlen)
{
	if (ops_of(st)->alert_init == NULL) {
		sg_seterr(err, errlen, "the %s store has no alerts repository", ops_of(st)->name);
		return -1;
	}
	return ops_of(st)->alert_init(st, err, errlen);
}

int
gw_alertstore_put_tx(struct gw_store *st, const struct gw_alert_row *a, int64_t *id,
                     bool *created, char *err, size_t errlen)
{
	return ops_of(st)->alert_put_tx(st, a, id, created, err, errlen);
}

int
gw_alertstore_state_tx(struct gw_store *st, int64_t id, const char *const *from,
                       const char *state, const char *by, const char *comment, int64_t at,
                       char *err, size_t errlen)
{
	return ops_of(st)->alert_state_tx(st, id, from, state, by, comment, at, err, errlen);
}

int
gw_alertstore_list(struct gw_store *st, const struct gw_alert_filter *f, gw_alertstore_fn fn,
                   void *ctx, char *err, size_t errlen)
{
	return ops_of(st)->alert_list(st, f, fn, ctx, err, errlen);
}
