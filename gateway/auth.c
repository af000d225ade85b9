/*
 * Passwords (Argon2id, libsodium) and the in-memory session table. Only a
 * hash of each session token is kept, so a memory dump of the table does
 * not yield a usable token.
 */
#include "auth.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>

struct session {
	uint8_t id[crypto_generichash_BYTES];   /* BLAKE2b of the token */
	struct gw_login_info info;
	time_t last_used;
	bool used;
};

struct gw_auth {
	pthread_mutex_t lock;
	unsigned idle_timeout;
	struct session *tab;
	size_t n, cap;
	/* A hash to spend time on for unknown accounts. */
	char dummy_hash[crypto_pwhash_STRBYTES];
};

int
gw_auth_new(unsigned idle_timeout, struct gw_auth **out)
{
	struct gw_auth *a;

	*out = NULL;
	if (sodium_init() < 0)
		return -1;
	a = calloc(1, sizeof(*a));
	if (a == NULL)
		return -1;
	pthread_mutex_init(&a->lock, NULL);
	a->idle_timeout = idle_timeout ? idle_timeout : 28800;
	if (gw_auth_hash_password("sealgate-dummy", a->dummy_hash, sizeof(a->dummy_hash)) < 0) {
		free(a);
		return -1;
	}
	*out = a;
	return 0;
}

void
gw_auth_free(struct gw_auth **auth)
{
	struct gw_auth *a = auth ? *auth : NULL;

	if (a == NULL)
		return;
	if (a->tab) {
		sodium_memzero(a->tab, a->cap * sizeof(*a->tab));
		free(a->tab);
	}
	pthread_mutex_destroy(&a->lock);
	free(a);
	*auth = NULL;
}

int
gw_auth_hash_password(const char *password, char *out, size_t outlen)
{
	if (outlen < crypto_pwhash_STRBYTES || sodium_init() < 0)
		return -1;
	return crypto_pwhash_str(out, password, strlen(password),
	                         crypto_pwhash_OPSLIMIT_INTERACTIVE,
	                         crypto_pwhash_MEMLIMIT_INTERACTIVE) == 0 ? 0 : -1;
}

int
gw_auth_check_password(struct gw_auth *a, struct gw_store *st, const char *user,
                       const char *password)
{
	char hash[crypto_pwhash_STRBYTES + 1];
	int rc = gw_store_password_get(st, user, hash, sizeof(hash));

	if (rc < 0)
		return -1;
	if (rc == 0) {
		/* Same cost as a real check: no account enumeration by timing. */
		if (crypto_pwhash_str_verify(a->dummy_hash, password, strlen(password)) == 0)
			return 0;
		return 0;
	}
	rc = crypto_pwhash_str_verify(hash, password, strlen(password)) == 0 ? 1 : 0;
	sodium_memzero(hash, sizeof(hash));
	return rc;
}

static void
token_id(const uint8_t *token, size_t len, uint8_t *id)
{
	crypto_generichash(id, crypto_generichash_BYTES, token, len, NULL, 0);
}

/* Drops sessions idle longer than the timeout. Caller holds the lock. */
static void
expire(struct gw_auth *a, time_t now)
{
	for (size_t i = 0; i < a->n; i++) {
		struct session *s = &a->tab[i];
		if (s->used && now - s->last_used > (time_t)a->idle_timeout) {
			sodium_memzero(s, sizeof(*s));
		}
	}
	while (a->n > 0 && !a->tab[a->n - 1].used)
		a->n--;
}

int
gw_auth_session_new(struct gw_auth *a, const char *user, uid_t uid, uint8_t *token)
{
	struct session *s = NULL;
	time_t now = time(NULL);
	int rv = -1;

	if (strlen(user) > SG_NAME_MAX)
		return -1;
	randombytes_buf(token, SG_SESSION_TOKEN_LEN);
	pthread_mutex_lock(&a->lock);
	expire(a, now);
	for (size_t i = 0; i < a->n; i++) {
		if (!a->tab[i].used) {
			s = &a->tab[i];
			break;
		}
	}
	if (s == NULL) {
		if (a->n == a->cap) {
			size_t ncap = a->cap ? a->cap * 2 : 64;
			struct session *t;
			if (ncap > 65536)
				goto out;
			t = calloc(ncap, sizeof(*t));
			if (t == NULL)
				goto out;
			if (a->tab) {
				memcpy(t, a->tab, a->n * sizeof(*t));
				sodium_memzero(a->tab, a->cap * sizeof(*t));
				free(a->tab);
			}
			a->tab = t;
			a->cap = ncap;
		}
		s = &a->tab[a->n++];
	}
	memset(s, 0, sizeof(*s));
	token_id(token, SG_SESSION_TOKEN_LEN, s->id);
	snprintf(s->info.user, sizeof(s->info.user), "%s", user);
	s->info.uid = uid;
	s->info.created = now;
	s->last_used = now;
	s->used = true;
	rv = 0;
out:
	pthread_mutex_unlock(&a->lock);
	if (rv < 0)
		sodium_memzero(token, SG_SESSION_TOKEN_LEN);
	return rv;
}

bool
gw_auth_session_get(struct gw_auth *a, const uint8_t *token, size_t len,
                    uid_t uid, struct gw_login_info *info)
{
	uint8_t id[crypto_generichash_BYTES];
	time_t now = time(NULL);
	bool found = false;

	if (token == NULL || len != SG_SESSION_TOKEN_LEN)
		return false;
	token_id(token, len, id);
	pthread_mutex_lock(&a->lock);
	for (size_t i = 0; i < a->n; i++) {
		struct session *s = &a->tab[i];
		if (!s->used || sodium_memcmp(s->id, id, sizeof(id)) != 0)
			continue;
		if (now - s->last_used > (time_t)a->idle_timeout) {
			sodium_memzero(s, sizeof(*s));
			break;
		}
		/* A token is bound to the uid that logged in. */
		if (s->info.uid != uid)
			break;
		s->last_used = now;
		*info = s->info;
		found = true;
		break;
	}
	pthread_mutex_unlock(&a->lock);
	return found;
}

void
gw_auth_session_end(struct gw_auth *a, const uint8_t *token, size_t len)
{
	uint8_t id[crypto_generichash_BYTES];

	if (token == NULL || len != SG_SESSION_TOKEN_LEN)
		return;
	token_id(token, len, id);
	pthread_mutex_lock(&a->lock);
	for (size_t i = 0; i < a->n; i++) {
		struct session *s = &a->tab[i];
		if (s->used && sodium_memcmp(s->id, id, sizeof(id)) == 0)
			sodium_memzero(s, sizeof(*s));
	}
	pthread_mutex_unlock(&a->lock);
}

size_t
gw_auth_session_count(struct gw_auth *a)
{
	size_t c = 0;

	pthread_mutex_lock(&a->lock);
	for (size_t i = 0; i < a->n; i++)
		c += a->tab[i].used;
	pthread_mutex_unlock(&a->lock);
	return c;
}
