/*
 * Authentication state held in memory: sealgate accounts' passwords
 * (Argon2id via libsodium), the table of logged-in sessions with the
 * factors each login proved, per-signature grants (C_Login with
 * CKU_CONTEXT_SPECIFIC), out-of-band signing windows (`sealctl login`),
 * pending per-signature confirmations (`sealctl confirm`), the test clock,
 * and THE check of a seal's second-factor rule on the sign path
 * (gw_auth_check_sign). A session token is 32 random bytes, valid only
 * from the OS uid that logged in, ended by logout (from that uid), idle
 * timeout, its absolute end or a password change; with a store the
 * sessions are the store's (gw_auth_use_store) and this table caches
 * them; the dispatcher re-checks each against the policy in force at
 * every use (dispatch.c). Stored credentials (TOTP
 * secrets, failed-attempt counters) live in totp.c and auth_ops.c.
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
struct gw_req;
struct gw_seal;

/* Factors a login proved (gw_login_info.factors). */
#define GW_FACTOR_PASSWORD 0x1u   /* the account's password */
#define GW_FACTOR_TOTP     0x2u   /* a fresh TOTP code at this login */
#define GW_FACTOR_WINDOW   0x4u   /* a PIN-less login inside an out-of-band window */

#define GW_AUTH_SID_LEN 32        /* session id: BLAKE2b of the token */

struct gw_login_info {
	char user[SG_NAME_MAX + 1];
	uid_t uid;
	time_t created;
	unsigned factors;             /* GW_FACTOR_* */
	time_t totp_at;               /* when this login's code was accepted, or 0 */
	uint8_t sid[GW_AUTH_SID_LEN]; /* names the session for grants (not the token) */
};

/* Tunables (gateway configuration, docs/authentication.md). */
struct gw_auth_settings {
	unsigned max_failures;        /* wrong passwords/codes before a lockout; default 5 */
	unsigned lockout_seconds;     /* first lockout; doubles with each further one (max 1 day); default 60 */
	unsigned signing_window;      /* longest out-of-band window, seconds; default 300 */
	unsigned confirm_timeout;     /* how long a sign waits for `sealctl confirm`; default 30 */
	/* TEST ONLY: read the clock of TOTP, lockouts and windows from the
	 * file named by env SEALGATE_TEST_CLOCK (Unix seconds), so tests pin
	 * the time instead of sleeping. Never set in production. */
	bool test_clock;
};

/* Password hashing cost (Argon2id opslimit/memlimit presets of libsodium). */
enum gw_pw_cost { GW_PW_INTERACTIVE = 0, GW_PW_MODERATE, GW_PW_SENSITIVE };

int gw_auth_new(unsigned idle_timeout, struct gw_auth **out);
void gw_auth_free(struct gw_auth **auth);
/* The gateway is stopping: every signature waiting for `sealctl confirm`
 * is woken and refused at once, and none waits any more. */
void gw_auth_stop(struct gw_auth *a);

void gw_auth_settings_default(struct gw_auth_settings *s);
/* Applies s (values of 0 keep the defaults). Call before serving, and
 * again after a reload. */
void gw_auth_configure(struct gw_auth *a, const struct gw_auth_settings *s);
void gw_auth_get_settings(struct gw_auth *a, struct gw_auth_settings *out);
/* The clock of TOTP, lockouts, windows and grants: time(NULL), or the
 * test clock when enabled. */
time_t gw_auth_now(struct gw_auth *a);

/* Sets the Argon2id cost of new password hashes, process-wide (verifying
 * reads the cost from each stored hash, so old hashes keep working). */
void gw_auth_set_password_cost(enum gw_pw_cost cost);
/* Argon2id runs in a pool: at most gw_auth_hash_pool() hashes at once
 * (each takes the cost's memory, 64 MiB at "interactive"); the others wait
 * up to GW_AUTH_HASH_WAIT seconds for their turn, then get GW_AUTH_BUSY.
 * n = 0 sizes the pool from the machine (gw_auth_hash_pool_auto: one per
 * core, 2 to 4, no more than a quarter of the memory); at most
 * GW_AUTH_HASH_POOL_MAX. Call after gw_auth_set_password_cost. */
#define GW_AUTH_BUSY          (-2)
#define GW_AUTH_HASH_WAIT     10
#define GW_AUTH_HASH_POOL_MAX 64
void gw_auth_set_hash_pool(unsigned n);
unsigned gw_auth_hash_pool(void);
unsigned gw_auth_hash_pool_auto(void);

/* Argon2id hash of password into out (crypto_pwhash_STRBYTES). 0, -1, or
 * GW_AUTH_BUSY. */
int gw_auth_hash_password(const char *password, char *out, size_t outlen);

/* Checks password against the account's stored hash. Returns 1 when it
 * matches, 0 when it does not or the account has no password, -1 on a
 * store error, GW_AUTH_BUSY when the hashing pool stayed full. Spends the
 * same time for unknown accounts. */
int gw_auth_check_password(struct gw_auth *auth, struct gw_store *st,
                           const char *user, const char *password);
/* Same with an explicit length (password need not be NUL-terminated
 * there: the PIN convention splits "password followed by code"). */
int gw_auth_check_password_n(struct gw_auth *auth, struct gw_store *st,
                             const char *user, const char *password, size_t len);

/* ---- sessions ---- */

/* Creates a session for user at uid; token receives SG_SESSION_TOKEN_LEN
 * bytes. The plain form proves the password only. 0, -1 (too many),
 * or GW_AUTH_STORE_FAILED (the store's row could not be written: no
 * session). */
#define GW_AUTH_STORE_FAILED (-3)
int gw_auth_session_new(struct gw_auth *auth, const char *user, uid_t uid,
                        uint8_t *token);
int gw_auth_session_new_factors(struct gw_auth *auth, const char *user, uid_t uid,
                                unsigned factors, time_t totp_at, uint8_t *token);
/* Finds a live session for token presented by uid and refreshes its idle
 * timer. Returns true and fills info. */
bool gw_auth_session_get(struct gw_auth *auth, const uint8_t *token, size_t len,
                         uid_t uid, struct gw_login_info *info);
/* Ends the session of token, when uid is the one that logged in. */
void gw_auth_session_end(struct gw_auth *auth, const uint8_t *token, size_t len, uid_t uid);
size_t gw_auth_session_count(struct gw_auth *auth);
/* Ends every session (and window) of user: after a password change, own
 * or by an admin, and a TOTP reset. */
void gw_auth_session_end_user(struct gw_auth *auth, const char *user);

/* ---- sessions in the store (sessionstore.h; docs/store.md, "Sessions") ----
 * With a store, a session is a row of the store's sessions table, made
 * at login and read by any gateway of the store: this table is a cache
 * in front of it. A cached session is used without asking the store (the
 * sign path gains no round trip) while the change feed is up (fresh) and
 * the store said it was live less than GW_AUTH_RECHECK seconds ago;
 * otherwise the store is asked first, in a statement that checks idle
 * time and absolute end. What another gateway revokes reaches the cache
 * through the feed (gw_auth_session_forget_user). Without a store
 * (gw_auth_use_store never called: unit tests, fuzzers) the table is the
 * sessions, in memory only. */
#define GW_AUTH_RECHECK 60
/* Default absolute end of a session, seconds from its login. */
#define GW_AUTH_MAX_AGE 604800
struct gw_session_row;
/* The store behind the cache (auth_ops.c: sessionstore.h and the change
 * feed), so that this file stays free of the store. */
struct gw_auth_store_hooks {
	/* True while the cache hears every change (the feed is up, or the
	 * store has no other gateway); false makes every use ask the store. */
	bool (*fresh)(void *arg);
	/* gw_sessionstore_put (logging why it failed), _touch, and _end
	 * with the other gateways told. */
	int (*put)(void *arg, const struct gw_session_row *row, int64_t now);
	int (*touch)(void *arg, const uint8_t *id, int64_t now, struct gw_session_row *out);
	void (*end)(void *arg, const uint8_t *id);
	void *arg;
};
/* Call before serving. max_age 0 = GW_AUTH_MAX_AGE. */
void gw_auth_use_store(struct gw_auth *a, unsigned max_age, const struct gw_auth_store_hooks *hooks);
/* gw_auth_session_get with the store's answer: 1 live (info filled), 0
 * not (unknown, expired, ended, another uid's), -1 the store could not be
 * asked (the request is refused as a store failure, not a logout). */
int gw_auth_session_find(struct gw_auth *auth, const uint8_t *token, size_t len, uid_t uid,
                         struct gw_login_info *info);
/* A change another gateway made to user's sessions (the feed; user NULL:
 * any, after the feed was lost): the cached ones are asked again before
 * their next use. revoked: every session of the user was deleted (a
 * password change, TOTP reset or unlock): they and the user's signing
 * windows are dropped at once. */
void gw_auth_session_forget_user(struct gw_auth *auth, const char *user, bool revoked);

/* ---- per-signature grants (mfa: per_signature) ----
 * A code given with C_Login(CKU_CONTEXT_SPECIFIC) after C_SignInit grants
 * ONE signature with that seal to that session, for GW_AUTH_GRANT_TTL
 * seconds. The sign path takes it (gw_auth_check_sign). */
#define GW_AUTH_GRANT_TTL 120
int gw_auth_grant_add(struct gw_auth *a, const uint8_t sid[GW_AUTH_SID_LEN], const char *seal);

/* ---- out-of-band windows (mfa: out_of_band) ----
 * `sealctl login` (password + code) opens a window for (account, uid):
 * inside it a PIN-less C_Login of that uid as that account is accepted
 * and signatures with out_of_band seals may be made. */
int gw_auth_window_open(struct gw_auth *a, const char *user, uid_t uid, unsigned seconds,
                        time_t *until);
void gw_auth_window_close(struct gw_auth *a, const char *user, uid_t uid);
/* 0 when no window is open, else its end. */
time_t gw_auth_window_until(struct gw_auth *a, const char *user, uid_t uid);

/* ---- confirmations (mfa: out_of_band_confirm) ----
 * A signature waits (bounded) until the same OS user confirms it with a
 * fresh code through `sealctl confirm`. */
struct gw_confirm_info {
	uint64_t id;
	char seal[SG_NAME_MAX + 1];
	char exe[128];
	pid_t pid;
	time_t since;
};
/* Lists up to max pending confirmations of (user, uid). Returns the count. */
size_t gw_auth_confirm_list(struct gw_auth *a, const char *user, uid_t uid,
                            struct gw_confirm_info *out, size_t max);
/* Confirms the pending request id (0 = the oldest) of (user, uid).
 * Returns 1 and fills *info, 0 when none is pending. */
int gw_auth_confirm_give(struct gw_auth *a, const char *user, uid_t uid, uint64_t id,
                         struct gw_confirm_info *info);

/* ---- the sign path's second-factor check ----
 * The one place that decides whether the second factor a seal's policy
 * asks for (seal->mfa) has been given for this signature:
 *   none                 any login
 *   login                a code at this login (PIN = password followed by code)
 *   per_signature        a grant from C_Login(CKU_CONTEXT_SPECIFIC) with a code,
 *                        taken by this signature
 *   out_of_band          an open window for (account, uid) now
 *   out_of_band_confirm  as out_of_band, and `sealctl confirm` with a fresh code
 *                        for this signature (waits at most confirm_timeout)
 * Returns 0 to go on, or -1 with r->err set (words for people, no secret),
 * *rv the PKCS#11 code and *code the protocol error token. Called by
 * gw_op_sign after the time-window check and the size probe, before the reservation. */
int gw_auth_check_sign(struct gw_req *r, const struct gw_seal *seal,
                       unsigned long *rv, const char **code);

#endif
