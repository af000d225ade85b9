/*
 * The sessions repository's interface (sessionstore.h): each call through
 * the store's table (backend.h). A backend without the repository fails
 * closed: no session is made or found.
 */
#include "backend.h"
#include "sessionstore.h"
#include "protocol.h"

#include <stdio.h>
#include <string.h>

static inline const struct gw_store_ops *
ops_of(struct gw_store *st)
{
	return ((const struct gw_store_head *)(const void *)st)->ops;
}

int
gw_sessionstore_init(struct gw_store *st, char *err, size_t errlen)
{
	if (ops_of(st)->session_init == NULL) {
		sg_seterr(err, errlen, "sessions: not on the %s store", ops_of(st)->name);
		return -1;
	}
	return ops_of(st)->session_init(st, err, errlen);
}

int
gw_sessionstore_put(struct gw_store *st, const struct gw_session_row *row, int64_t now,
                    char *err, size_t errlen)
{
	if (ops_of(st)->session_put == NULL) {
		sg_seterr(err, errlen, "sessions: not on the %s store", ops_of(st)->name);
		return -1;
	}
	return ops_of(st)->session_put(st, row, now, err, errlen);
}

int
gw_sessionstore_touch(struct gw_store *st, const uint8_t id[GW_SESSION_ID_LEN], int64_t now,
                      struct gw_session_row *out)
{
	memset(out, 0, sizeof(*out));
	if (ops_of(st)->session_touch == NULL)
		return -1;
	return ops_of(st)->session_touch(st, id, now, out);
}

int
gw_sessionstore_end(struct gw_store *st, const uint8_t id[GW_SESSION_ID_LEN],
                    char user[GW_SESSION_USER_MAX + 1])
{
	user[0] = '\0';
	if (ops_of(st)->session_end == NULL)
		return -1;
	return ops_of(st)->session_end(st, id, user);
}

int
gw_sessionstore_end_user(struct gw_store *st, const char *user)
{
	if (ops_of(st)->session_end_user == NULL)
		return -1;
	return ops_of(st)->session_end_user(st, user);
}
