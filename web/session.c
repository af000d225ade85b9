/*
 * Browser sessions: a random cookie id mapped to the person's gateway
 * token, with a CSRF token of its own, an idle and an absolute timeout.
 * The table is bounded; ids are compared in constant time and every token
 * is wiped when its session ends.
 */
#include "web.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct web_session *table;
static unsigned n_max, idle_s, absolute_s;

int
web_sessions_init(unsigned max, unsigned idle, unsigned absolute)
{
	table = calloc(max, sizeof(*table));
	if (table == NULL)
		return -1;
	n_max = max;
	idle_s = idle;
	absolute_s = absolute;
	return 0;
}

static int
random_hex(char out[WEB_ID_TEXT + 1])
{
	static const char hex[] = "0123456789abcdef";
	unsigned char b[WEB_ID_LEN];

	if (RAND_bytes(b, sizeof(b)) != 1)
		return -1;
	for (size_t i = 0; i < sizeof(b); i++) {
		out[2 * i] = hex[b[i] >> 4];
		out[2 * i + 1] = hex[b[i] & 15];
	}
	out[WEB_ID_TEXT] = '\0';
	OPENSSL_cleanse(b, sizeof(b));
	return 0;
}

void
web_session_clear(struct web_session *s)
{
	if (s->gw_session != NULL) {
		OPENSSL_cleanse(s->gw_session, strlen(s->gw_session));
		free(s->gw_session);
	}
	OPENSSL_cleanse(s, sizeof(*s));
}

static bool
expired(const struct web_session *s, time_t now)
{
	return now - s->used > (time_t)idle_s || now - s->created > (time_t)absolute_s ||
	       now < s->created;
}

/* The slot of id (an id is WEB_ID_TEXT hex digits), or NULL. */
static struct web_session *
find(const char *id)
{
	if (id == NULL || strlen(id) != WEB_ID_TEXT)
		return NULL;
	for (unsigned i = 0; i < n_max; i++)
		if (table[i].gw_session != NULL && CRYPTO_memcmp(table[i].id, id, WEB_ID_TEXT) == 0)
			return &table[i];
	return NULL;
}

static int
copy_out(const struct web_session *s, struct web_session *out)
{
	*out = *s;
	out->gw_session = strdup(s->gw_session);
	return out->gw_session ? 0 : -1;
}

int
web_session_new(const char *tok, const char *user, const char *site, struct web_session *out)
{
	time_t now = time(NULL);
	struct web_session *free_slot = NULL;
	int rv = -1;

	memset(out, 0, sizeof(*out));
	pthread_mutex_lock(&lock);
	for (unsigned i = 0; i < n_max && free_slot == NULL; i++) {
		/* An expired session's slot is taken back here; its gateway
		 * session ends by the gateway's own timeout. */
		if (table[i].gw_session != NULL && expired(&table[i], now))
			web_session_clear(&table[i]);
		if (table[i].gw_session == NULL)
			free_slot = &table[i];
	}
	if (free_slot == NULL)
		goto out;
	if (random_hex(free_slot->id) < 0 || random_hex(free_slot->csrf) < 0 ||
	    (free_slot->gw_session = strdup(tok)) == NULL) {
		web_session_clear(free_slot);
		goto out;
	}
	snprintf(free_slot->user, sizeof(free_slot->user), "%s", user);
	snprintf(free_slot->site, sizeof(free_slot->site), "%s", site ? site : "");
	free_slot->created = free_slot->used = now;
	rv = copy_out(free_slot, out);
out:
	pthread_mutex_unlock(&lock);
	return rv;
}

int
web_session_get(const char *id, struct web_session *out)
{
	time_t now = time(NULL);
	struct web_session *s;
	int rv = 0;

	memset(out, 0, sizeof(*out));
	pthread_mutex_lock(&lock);
	s = find(id);
	if (s == NULL)
		goto out;
	if (expired(s, now)) {
		rv = copy_out(s, out) < 0 ? 0 : -1;
		web_session_clear(s);
		goto out;
	}
	s->used = now;
	rv = copy_out(s, out) < 0 ? 0 : 1;
out:
	pthread_mutex_unlock(&lock);
	return rv;
}

int
web_session_end(const char *id, struct web_session *out)
{
	struct web_session *s;
	int rv = 0;

	memset(out, 0, sizeof(*out));
	pthread_mutex_lock(&lock);
	s = find(id);
	if (s != NULL) {
		rv = copy_out(s, out) < 0 ? 0 : 1;
		web_session_clear(s);
	}
	pthread_mutex_unlock(&lock);
	return rv;
}
