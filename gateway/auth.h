/*
 * Authentication: sealgate accounts' passwords (Argon2id via libsodium) and
 * the table of logged-in sessions. A session token is 32 random bytes,
 * valid only from the OS uid that logged in, ended by logout, idle timeout
 * or gateway restart (the table lives in memory only).
 */
#ifndef GW_AUTH_H
#define GW_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "protocol.h"
#include "store.h"

struct gw_auth;

struct gw_login_info {
	char user[SG_NAME_MAX + 1];
	uid_t uid;
	time_t created;
};

int gw_auth_new(unsigned idle_timeout, struct gw_auth **out);
void gw_auth_free(struct gw_auth **auth);

/* Argon2id hash of password into out (crypto_pwhash_STRBYTES). 0 / -1. */
int gw_auth_hash_password(const char *password, char *out, size_t outlen);

/* Checks password against the account's stored hash. Returns 1 when it
 * matches, 0 when it does not or the account has no password, -1 on a
 * store error. Spends the same time for unknown accounts. */
int gw_auth_check_password(struct gw_auth *auth, struct gw_store *st,
                           const char *user, const char *password);

/* Creates a session for user at uid; token receives SG_SESSION_TOKEN_LEN bytes. */
int gw_auth_session_new(struct gw_auth *auth, const char *user, uid_t uid,
                        uint8_t *token);
/* Finds a live session for token presented by uid and refreshes its idle
 * timer. Returns true and fills info. */
bool gw_auth_session_get(struct gw_auth *auth, const uint8_t *token, size_t len,
                         uid_t uid, struct gw_login_info *info);
void gw_auth_session_end(struct gw_auth *auth, const uint8_t *token, size_t len);
size_t gw_auth_session_count(struct gw_auth *auth);

#endif
