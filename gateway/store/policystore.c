/*
 * The policy repository's and the change feed's interface (policystore.h):
 * each call goes through the store's table (backend.h). A feed keeps the
 * table of the store it was opened on, so it needs no store to be waited
 * on or closed. Nothing here knows SQL.
 */
#include "backend.h"
#include "protocol.h"

#include <stdlib.h>
#include <string.h>

struct gw_store_feed {
	const struct gw_store_ops *ops;
	void *impl;
};

static inline const struct gw_store_ops *
ops_of(struct gw_store *st)
{
	return ((const struct gw_store_head *)(const void *)st)->ops;
}

void
gw_policy_version_clear(struct gw_policy_version *v)
{
	if (v == NULL)
		return;
	free(v->text);
	free(v->author);
	memset(v, 0, sizeof(*v));
}

int
gw_store_policy_publish_tx(struct gw_store *st, const struct gw_policy_version *v, char *err,
                           size_t errlen)
{
	if (v->version < 1 || v->author == NULL || v->len > GW_POLICY_PUBLISH_MAX) {
		sg_seterr(err, errlen, "policy versions: a version needs a number from 1, an author "
		          "and at most %u bytes", GW_POLICY_PUBLISH_MAX);
		return -1;
	}
	return ops_of(st)->policy_publish_tx(st, v, err, errlen);
}

int
gw_store_policy_get(struct gw_store *st, int64_t n, struct gw_policy_version *out, char *err,
                    size_t errlen)
{
	return ops_of(st)->policy_get(st, n, out, err, errlen);
}

int
gw_store_policy_latest(struct gw_store *st, int64_t *version, char *err, size_t errlen)
{
	return ops_of(st)->policy_latest(st, version, err, errlen);
}

int
gw_store_policy_history(struct gw_store *st, size_t limit, gw_store_policy_fn fn, void *ctx,
                        char *err, size_t errlen)
{
	return ops_of(st)->policy_history(st, limit, fn, ctx, err, errlen);
}

int
gw_store_changes_open(struct gw_store *st, struct gw_store_feed **out, char *err, size_t errlen)
{
	struct gw_store_feed *f;
	void *impl = NULL;
	int r;

	*out = NULL;
	r = ops_of(st)->changes_open(st, &impl, err, errlen);
	if (r <= 0 || impl == NULL)
		return r < 0 ? -1 : 0;
	f = calloc(1, sizeof(*f));
	if (f == NULL) {
		ops_of(st)->changes_close(impl);
		sg_seterr(err, errlen, "out of memory");
		return -1;
	}
	f->ops = ops_of(st);
	f->impl = impl;
	*out = f;
	return 1;
}

int
gw_store_changes_wait(struct gw_store_feed *f, int timeout_ms, gw_store_change_fn fn, void *ctx,
                      char *err, size_t errlen)
{
	return f->ops->changes_wait(f->impl, timeout_ms, fn, ctx, err, errlen);
}

void
gw_store_changes_close(struct gw_store_feed **f)
{
	if (f == NULL || *f == NULL)
		return;
	(*f)->ops->changes_close((*f)->impl);
	free(*f);
	*f = NULL;
}

int
gw_store_changes_notify_tx(struct gw_store *st, const char *event, char *err, size_t errlen)
{
	size_t n = event ? strlen(event) : 0;

	if (n == 0 || n > GW_CHANGE_EVENT_MAX) {
		sg_seterr(err, errlen, "a change event is 1 to %d characters", GW_CHANGE_EVENT_MAX);
		return -1;
	}
	return ops_of(st)->changes_notify_tx(st, event, err, errlen);
}
