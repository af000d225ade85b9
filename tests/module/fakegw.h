/*
 * An in-process fake sealgated for the module's unit tests: a thread that
 * serves docs/protocol.md with the real codec on a temporary Unix socket,
 * with canned seals (RSA-2048, EC P-256, Ed25519 and a second P-256 key
 * limited to CKM_ECDSA) whose keys and self-signed certificates are made
 * with OpenSSL, and signs with OpenSSL so signatures verify.
 */
#ifndef FAKEGW_H
#define FAKEGW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#define FAKE_PIN   "correct horse"
#define FAKE_LABEL "ACME Seals Co."

struct fakegw;

/* Generates the keys and certificates; nothing listens yet. */
struct fakegw *fakegw_new(void);
void fakegw_free(struct fakegw *fg);
/* Listens on the socket path with this instance id (restartable). */
int fakegw_start(struct fakegw *fg, const char *instance);
/* Stops listening and closes every connection. */
void fakegw_stop(struct fakegw *fg);
const char *fakegw_path(const struct fakegw *fg);

/* Knobs and counters (thread-safe). */
void fakegw_set_token_present(struct fakegw *fg, bool present);
void fakegw_set_deny(struct fakegw *fg, bool deny);       /* sign → denied */
void fakegw_expire_sessions(struct fakegw *fg);           /* forget logins */
/* login without a user → not_allowed, as for an OS login with no account
 * (the user "stranger" always gets it). */
void fakegw_set_no_account(struct fakegw *fg, bool none);
unsigned fakegw_hello_count(struct fakegw *fg);
unsigned fakegw_login_count(struct fakegw *fg);
unsigned fakegw_request_count(struct fakegw *fg);         /* every request */
unsigned fakegw_sign_count(struct fakegw *fg);
unsigned fakegw_accept_count(struct fakegw *fg);
unsigned fakegw_logout_count(struct fakegw *fg);
size_t fakegw_live_sessions(struct fakegw *fg);
/* What the last sign request carried. */
struct fakegw_last_sign {
	bool had_digest;
	size_t data_size;
	int64_t data_len;
	char seal[64];
};
void fakegw_last_sign(struct fakegw *fg, struct fakegw_last_sign *out);
/* The user field of the last login ("" when absent). */
void fakegw_last_user(struct fakegw *fg, char *buf, size_t len);

/* Seal material for verification in the tests. */
EVP_PKEY *fakegw_key(struct fakegw *fg, const char *seal_id);
X509 *fakegw_cert(struct fakegw *fg, const char *seal_id);

#endif
