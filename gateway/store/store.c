/*
 * The store's interface (store.h, appstore.h): each call goes to the
 * backend the store was opened with, through its table of calls
 * (backend.h); gw_store_open_url picks the backend a URL names. Nothing
 * here knows SQL.
 */
#include "backend.h"
#include "protocol.h"

#include <stdio.h>
#include <string.h>

static inline const struct gw_store_ops *
ops_of(struct gw_store *st)
{
	return ((const struct gw_store_head *)(const void *)st)->ops;
}

bool
gw_store_url_is_pg(const char *url)
{
	return url != NULL &&
	       (strncmp(url, "postgresql://", 13) == 0 || strncmp(url, "postgres://", 11) == 0);
}

int
gw_store_open_url(const char *url, struct gw_store **out, char *err, size_t errlen)
{
	*out = NULL;
	if (url == NULL || *url == '\0') {
		sg_seterr(err, errlen, "no store named");
		return -1;
	}
	if (strncmp(url, "sqlite:", 7) == 0)
		return gw_store_open(url + 7, out, err, errlen);
	if (gw_store_url_is_pg(url)) {
#ifdef GW_STORE_HAVE_PG
		return gw_store_pg_open(url, 0, out, err, errlen);
#else
		sg_seterr(err, errlen, "this sealgate was built without libpq: no PostgreSQL store");
		return -1;
#endif
	}
	/* A path never holds "://": a scheme we do not know is refused
	 * rather than taken for a file name. */
	if (strstr(url, "://") != NULL) {
		sg_seterr(err, errlen, "unknown store scheme in '%.*s'",
		          (int)(strstr(url, "://") - url), url);
		return -1;
	}
	return gw_store_open(url, out, err, errlen);
}

void
gw_store_close(struct gw_store **st)
{
	if (st != NULL && *st != NULL)
		ops_of(*st)->close(st);
}

int
gw_store_ping(struct gw_store *st, char *err, size_t errlen)
{
	if (st == NULL) {
		snprintf(err, errlen, "no store");
		return -1;
	}
	if (ops_of(st)->ping == NULL || ops_of(st)->ping(st, err, errlen) == 0)
		return 0;
	/* libpq's message spans lines ("…failed: No such file or directory\n\t
	 * Is the server running…"): one line, for a reply and the log. */
	for (char *p = err; p && *p; p++)
		if ((unsigned char)*p < 0x20)
			*p = ' ';
	return -1;
}

int
gw_store_password_get(struct gw_store *st, const char *user, char *hash, size_t hashlen)
{
	return ops_of(st)->password_get(st, user, hash, hashlen);
}

int
gw_store_password_set(struct gw_store *st, const char *user, const char *hash)
{
	return ops_of(st)->password_set(st, user, hash);
}

int
gw_store_binding_set(struct gw_store *st, const struct gw_store_binding *b, char *err, size_t errlen)
{
	return ops_of(st)->binding_set(st, b, err, errlen);
}

int
gw_store_known_keys_set(struct gw_store *st, const struct gw_store_known_key *keys, size_t n,
                        char *err, size_t errlen)
{
	return ops_of(st)->known_keys_set(st, keys, n, err, errlen);
}

int
gw_store_tx_begin(struct gw_store *st, char *err, size_t errlen)
{
	return ops_of(st)->tx_begin(st, err, errlen);
}

int
gw_store_tx_commit(struct gw_store *st, char *err, size_t errlen)
{
	return ops_of(st)->tx_commit(st, err, errlen);
}

void
gw_store_tx_rollback(struct gw_store *st)
{
	ops_of(st)->tx_rollback(st);
}

bool
gw_store_tx_alive(struct gw_store *st)
{
	return ops_of(st)->tx_alive(st);
}

bool
gw_store_tx_errors_end(struct gw_store *st)
{
	const struct gw_store_ops *o = ops_of(st);

	return o->tx_errors_end != NULL && o->tx_errors_end(st);
}

int
gw_store_schema_version(struct gw_store *st)
{
	return ops_of(st)->schema_version(st);
}

int
gw_store_audit_insert(struct gw_store *st, const struct gw_audit_row *row, char *err, size_t errlen)
{
	return ops_of(st)->audit_insert(st, row, err, errlen);
}

int
gw_store_audit_append(struct gw_store *st, const struct gw_audit_row *rows, size_t n, char *err,
                      size_t errlen)
{
	return ops_of(st)->audit_append(st, rows, n, err, errlen);
}

int
gw_store_audit_head(struct gw_store *st, uint64_t *seq, uint8_t hash[32], char *err, size_t errlen)
{
	return ops_of(st)->audit_head(st, seq, hash, err, errlen);
}

int
gw_store_audit_scan(struct gw_store *st, gw_store_audit_fn fn, void *ctx, char *err, size_t errlen)
{
	return ops_of(st)->audit_scan(st, fn, ctx, err, errlen);
}

int
gw_store_audit_query(struct gw_store *st, const struct gw_audit_filter *f, gw_store_audit_fn fn,
                     void *ctx, char *err, size_t errlen)
{
	return ops_of(st)->audit_query(st, f, fn, ctx, err, errlen);
}

int
gw_store_checkpoint_add(struct gw_store *st, const struct gw_audit_checkpoint *cp, char *err,
                        size_t errlen)
{
	return ops_of(st)->checkpoint_add(st, cp, err, errlen);
}

int
gw_store_checkpoint_last(struct gw_store *st, struct gw_audit_checkpoint *last, uint64_t *next_id,
                         char *err, size_t errlen)
{
	return ops_of(st)->checkpoint_last(st, last, next_id, err, errlen);
}

int
gw_store_checkpoint_max_id(struct gw_store *st, uint64_t *id, char *err, size_t errlen)
{
	return ops_of(st)->checkpoint_max_id(st, id, err, errlen);
}

int
gw_store_checkpoint_scan(struct gw_store *st, uint64_t from_seq, uint64_t to_seq,
                         gw_store_checkpoint_fn fn, void *ctx, char *err, size_t errlen)
{
	return ops_of(st)->checkpoint_scan(st, from_seq, to_seq, fn, ctx, err, errlen);
}

void
gw_store_batch_begin(struct gw_store *st)
{
	ops_of(st)->batch_begin(st);
}

void
gw_store_batch_images(struct gw_store *st)
{
	ops_of(st)->batch_images(st);
}

int
gw_store_batch_durable(struct gw_store *st, uint64_t first_seq, uint64_t last_seq, char *err,
                       size_t errlen)
{
	return ops_of(st)->batch_durable(st, first_seq, last_seq, err, errlen);
}

void
gw_store_batch_end(struct gw_store *st)
{
	ops_of(st)->batch_end(st);
}

void
gw_store_get_redo_stats(struct gw_store *st, struct gw_store_redo_stats *out)
{
	ops_of(st)->get_redo_stats(st, out);
}

void
gw_store_release_memory(struct gw_store *st)
{
	ops_of(st)->release_memory(st);
}

bool
gw_store_mark_test(struct gw_store *st, const void *key)
{
	return ops_of(st)->mark_test(st, key);
}

void
gw_store_mark_set(struct gw_store *st, const void *key)
{
	ops_of(st)->mark_set(st, key);
}

int
gw_store_attempts_init(struct gw_store *st, char *err, size_t errlen)
{
	return ops_of(st)->attempts_init(st, err, errlen);
}

int
gw_store_attempts_get(struct gw_store *st, const char *user, int64_t key, int64_t now,
                      struct gw_store_attempts *out)
{
	return ops_of(st)->attempts_get(st, user, key, now, out);
}

int
gw_store_attempt_take(struct gw_store *st, const char *user, int64_t key, int64_t now, unsigned max,
                      unsigned ttl, struct gw_store_attempts *row)
{
	return ops_of(st)->attempt_take(st, user, key, now, max, ttl, row);
}

int
gw_store_attempt_end(struct gw_store *st, const char *user, int64_t key, int64_t now,
                     enum gw_attempt_outcome outcome, unsigned max, unsigned lockout_s,
                     unsigned lockout_cap, struct gw_store_attempts *row)
{
	return ops_of(st)->attempt_end(st, user, key, now, outcome, max, lockout_s, lockout_cap, row);
}

int
gw_store_attempts_clear(struct gw_store *st, const char *user)
{
	return ops_of(st)->attempts_clear(st, user);
}

int
gw_store_totp_init(struct gw_store *st, char *err, size_t errlen)
{
	return ops_of(st)->totp_init(st, err, errlen);
}

int
gw_store_totp_enrolled(struct gw_store *st, const char *user)
{
	return ops_of(st)->totp_enrolled(st, user);
}

int
gw_store_totp_put(struct gw_store *st, const char *user, const uint8_t *sealed, size_t sealed_len,
                  uint64_t counter, char *err, size_t errlen)
{
	return ops_of(st)->totp_put(st, user, sealed, sealed_len, counter, err, errlen);
}

int
gw_store_totp_delete(struct gw_store *st, const char *user)
{
	return ops_of(st)->totp_delete(st, user);
}

int
gw_store_totp_get(struct gw_store *st, const char *user, uint8_t *sealed, size_t *sealed_len,
                  uint64_t *last)
{
	return ops_of(st)->totp_get(st, user, sealed, sealed_len, last);
}

int
gw_store_totp_advance(struct gw_store *st, const char *user, uint64_t ctr)
{
	return ops_of(st)->totp_advance(st, user, ctr);
}

int
gw_store_totp_key_put(struct gw_store *st, const char *site, const uint8_t *der, size_t len,
                      char *err, size_t errlen)
{
	return ops_of(st)->totp_key_put(st, site, der, len, err, errlen);
}

int
gw_store_totp_keys(struct gw_store *st,
                   void (*fn)(void *arg, const char *site, const uint8_t *der, size_t len),
                   void *arg)
{
	return ops_of(st)->totp_keys(st, fn, arg);
}

int
gw_store_totp_copy_put(struct gw_store *st, const char *user, const char *site,
                       const uint8_t *sealed, size_t len, const char *from_site,
                       const uint8_t *from, size_t from_len, char *err, size_t errlen)
{
	return ops_of(st)->totp_copy_put(st, user, site, sealed, len, from_site, from, from_len, err,
	                                 errlen);
}

int
gw_store_totp_copy_get(struct gw_store *st, const char *user, const char *site, uint8_t *sealed,
                       size_t *len)
{
	return ops_of(st)->totp_copy_get(st, user, site, sealed, len);
}

int
gw_appstore_get(struct gw_store *st, int64_t id, struct gw_application *app)
{
	return ops_of(st)->app_get(st, id, app);
}

int
gw_appstore_insert_tx(struct gw_store *st, struct gw_application *app, char *err,
                      size_t errlen)
{
	return ops_of(st)->app_insert_tx(st, app, err, errlen);
}

int
gw_appstore_update_tx(struct gw_store *st, const struct gw_application *app, enum gw_app_state from,
                      unsigned from_level, time_t now, char *err, size_t errlen)
{
	return ops_of(st)->app_update_tx(st, app, from, from_level, now, err, errlen);
}

int
gw_appstore_spend_tx(struct gw_store *st, int64_t id, time_t now, char *err, size_t errlen)
{
	return ops_of(st)->app_spend_tx(st, id, now, err, errlen);
}

int
gw_appstore_refund_tx(struct gw_store *st, int64_t id, time_t now, char *err, size_t errlen)
{
	return ops_of(st)->app_refund_tx(st, id, now, err, errlen);
}

int
gw_appstore_page(struct gw_store *st, const struct gw_app_filter *f, bool oldest_first,
                 int64_t from, int64_t *ids, size_t max, size_t *n)
{
	return ops_of(st)->app_page(st, f, oldest_first, from, ids, max, n);
}

int
gw_appstore_due_to_expire(struct gw_store *st, time_t now, int64_t *ids, size_t max, size_t *n)
{
	return ops_of(st)->app_due_to_expire(st, now, ids, max, n);
}

int
gw_appstore_quota_get(struct gw_store *st, const char *seal, const char *period, const char *person,
                      uint64_t *used)
{
	return ops_of(st)->quota_get(st, seal, period, person, used);
}

int
gw_appstore_quota_sub_tx(struct gw_store *st, const char *seal, const char *period,
                         const char *person, char *err, size_t errlen)
{
	return ops_of(st)->quota_sub_tx(st, seal, period, person, err, errlen);
}

int
gw_appstore_quota_add_tx(struct gw_store *st, const char *seal, const char *period,
                         const char *person, uint64_t limit, char *err, size_t errlen)
{
	return ops_of(st)->quota_add_tx(st, seal, period, person, limit, err, errlen);
}

int
gw_appstore_quota_add_all_tx(struct gw_store *st, const struct gw_appstore_quota_unit *u,
                             size_t n, size_t *full, char *err, size_t errlen)
{
	const struct gw_store_ops *o = ops_of(st);

	*full = 0;
	if (o->quota_add_all_tx != NULL)
		return o->quota_add_all_tx(st, u, n, full, err, errlen);
	for (size_t i = 0; i < n; i++) {
		int rc = o->quota_add_tx(st, u[i].seal, u[i].period, u[i].person, u[i].limit, err,
		                         errlen);

		if (rc != 1) {
			*full = i;
			/* All or none (appstore.h): those before it are given
			 * back, in the transaction that counted them. */
			while (rc == 0 && i-- > 0)
				if (o->quota_sub_tx(st, u[i].seal, u[i].period, u[i].person, err,
				                    errlen) < 0)
					return -1;
			return rc;
		}
	}
	return 1;
}

const char *
gw_store_backend(struct gw_store *st)
{
	return ops_of(st)->name;
}

/* ---- sites ---- */

static bool
site_name_ok(const char *s)
{
	size_t n = s != NULL ? strlen(s) : 0;

	if (n == 0 || n > GW_SITE_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-' ||
		      s[i] == '_'))
			return false;
	return true;
}

int
gw_store_set_site(struct gw_store *st, const char *site, char *err, size_t errlen)
{
	struct gw_store_head *h = (struct gw_store_head *)(void *)st;

	if (!site_name_ok(site)) {
		sg_seterr(err, errlen, "a site name is 1 to %d of a-z, 0-9, '-' and '_'", GW_SITE_MAX);
		return -1;
	}
	if (ops_of(st)->set_site(st, site, err, errlen) < 0)
		return -1;
	memcpy(h->site, site, strlen(site) + 1);
	return 0;
}

const char *
gw_store_site(struct gw_store *st)
{
	const struct gw_store_head *h = (const struct gw_store_head *)(const void *)st;

	return h->site[0] != '\0' ? h->site : GW_SITE_DEFAULT;
}

int
gw_store_site_claim(struct gw_store *st, char *err, size_t errlen)
{
	return ops_of(st)->site_claim(st, err, errlen);
}

int
gw_store_binding_get(struct gw_store *st, struct gw_store_binding *b, char *err, size_t errlen)
{
	return ops_of(st)->binding_get(st, b, err, errlen);
}

int
gw_store_known_keys_get(struct gw_store *st,
                        int (*fn)(void *arg, const char *uri, const uint8_t *blob, size_t len),
                        void *arg, char *err, size_t errlen)
{
	return ops_of(st)->known_keys_get(st, fn, arg, err, errlen);
}

int
gw_appstore_lock_tx(struct gw_store *st, int64_t id, struct gw_application *app)
{
	return ops_of(st)->app_lock_tx(st, id, app);
}

void
gw_store_attempt_settle(struct gw_store_attempts *row, enum gw_attempt_outcome outcome,
                        unsigned max, unsigned lockout_s, unsigned lockout_cap, int64_t now)
{
	if (row->inflight > 0)
		row->inflight--;
	if (outcome == GW_ATTEMPT_OK) {
		row->failed = 0;
		row->lockouts = 0;
	} else if (outcome == GW_ATTEMPT_FAILED) {
		row->failed++;
		if (row->failed >= (int64_t)max) {
			int64_t d = lockout_s;
			for (int64_t i = 0; i < row->lockouts && d < lockout_cap; i++)
				d *= 2;
			if (d > lockout_cap)
				d = lockout_cap;
			row->locked_until = now + d;
			row->lockouts++;
			row->failed = 0;
		}
	}
}
