/*
 * The sessions repository: every gateway's logins in the store, so that a
 * login at one gateway (or through sealgate-web at a management gateway)
 * is known at another, and a revocation (password change, TOTP reset,
 * unlock) is one DELETE every gateway sees. A row is keyed by the
 * session token's BLAKE2b digest, never the token. Idle and absolute
 * expiry are checked in the statement that reads a row, so an expired
 * session is never returned, whatever a gateway's cache says. Both
 * backends; table sessions (docs/store.md, "Sessions").
 */
#ifndef GW_SESSIONSTORE_H
#define GW_SESSIONSTORE_H

#include <stddef.h>
#include <stdint.h>

#include "store.h"

#define GW_SESSION_ID_LEN 32          /* BLAKE2b of the token */
#define GW_SESSION_USER_MAX 128       /* SG_NAME_MAX */

struct gw_session_row {
	uint8_t id[GW_SESSION_ID_LEN];
	char user[GW_SESSION_USER_MAX + 1];
	int64_t uid;                  /* the OS uid that logged in */
	unsigned factors;             /* GW_FACTOR_* of auth.h */
	int64_t totp_at;              /* when the login's code was accepted, or 0 */
	int64_t created;              /* Unix seconds of the login */
	int64_t last_used;            /* of the last use a gateway wrote */
	int64_t idle;                 /* seconds idle after which it ends */
	int64_t expires;              /* Unix seconds it ends at, however used */
};

/* Makes the table when the backend makes it at first use (SQLite; the
 * pg migration has it): call at start, outside any audit batch. 0 or -1
 * with err. */
int gw_sessionstore_init(struct gw_store *st, char *err, size_t errlen);
/* Writes a new session's row (its id is new: 32 random bytes hashed),
 * and drops the rows that expired by now. 0 or -1 with err. */
int gw_sessionstore_put(struct gw_store *st, const struct gw_session_row *row, int64_t now,
                        char *err, size_t errlen);
/* The row of id when it is live at now (used within its idle time and
 * before it expires: both checked in the statement), its last use set to
 * now. 1 found (*out), 0 none or expired, -1 store error. */
int gw_sessionstore_touch(struct gw_store *st, const uint8_t id[GW_SESSION_ID_LEN], int64_t now,
                          struct gw_session_row *out);
/* Deletes the row of id: 1 deleted (*user names its account), 0 none,
 * -1 error. Inside or outside a transaction. */
int gw_sessionstore_end(struct gw_store *st, const uint8_t id[GW_SESSION_ID_LEN],
                        char user[GW_SESSION_USER_MAX + 1]);
/* Deletes every row of user, in one statement: inside the transaction of
 * the change that revokes them (a gw_audit_apply_fn). The count, or -1. */
int gw_sessionstore_end_user(struct gw_store *st, const char *user);

#endif
