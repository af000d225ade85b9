/*
 * The store: sealgate's runtime state in one SQLite database (WAL,
 * synchronous=FULL): accounts and their credentials, and the audit log.
 * Later issues add applications, approvals and quota counters here.
 * Only the gateway opens it; the file is created mode 0600.
 */
#ifndef GW_STORE_H
#define GW_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct gw_store;

int gw_store_open(const char *path, struct gw_store **out, char *err, size_t errlen);
void gw_store_close(struct gw_store **st);

/* Credentials. hash is an Argon2id string (crypto_pwhash_str). get returns
 * 1 and fills hash, 0 when the account has no password, -1 on error. */
int gw_store_password_get(struct gw_store *st, const char *user, char *hash, size_t hashlen);
int gw_store_password_set(struct gw_store *st, const char *user, const char *hash);

#endif
