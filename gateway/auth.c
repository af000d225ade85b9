/*
 * Passwords (Argon2id, libsodium), the in-memory session table with the
 * factors each login proved, per-signature grants, out-of-band windows and
 * pending confirmations, and gw_auth_check_sign. Only a hash of each
 * session token is kept, so a memory dump of the table does not yield a
 * usable token. With a store (gw_auth_use_store) the table caches the
 * store's sessions (sessionstore.h): made there at login, asked there
 * when not known here, when the change feed is down, or every
 * GW_AUTH_RECHECK seconds, and deleted there at logout. Grants, windows
 * and confirmations stay here: each is bound to one connection or one
 * OS user of this machine (docs/sites.md). Stored credentials are
 * totp.c's and auth_ops.c's.
 */
#include "auth.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sodium.h>

#include "dispatch.h"
#include "policy.h"
#include "sessionstore.h"
#include "utf8.h"

#define GRANTS_MAX     256        /* outstanding per-signature grants, all sessions */
#define WINDOWS_MAX    1024
#define CONFIRMS_MAX   256
#define LOCKOUT_MAX    86400u

struct session {
	uint8_t id[crypto_generichash_BYTES];   /* BLAKE2b of the token */
	struct gw_login_info info;
	time_t last_used;
	time_t checked;               /* the store said live then; 0: ask before the next use */
	bool used;
};

struct grant {
	uint8_t sid[GW_AUTH_SID_LEN];
	char seal[SG_NAME_MAX + 1];
	time_t until;                 /* 0 = free slot */
};

struct window {
	char user[SG_NAME_MAX + 1];
	uid_t uid;
	time_t until;                 /* 0 = free slot */
};

struct confirm {
	struct gw_confirm_info info;
	char user[SG_NAME_MAX + 1];
	uid_t uid;
	bool used, given;
};

struct gw_auth {
	pthread_mutex_t lock;
	pthread_cond_t confirm_cond;
	unsigned idle_timeout;
	struct gw_auth_settings set;
	/* gw_auth_use_store: the sessions' store, or false (memory only) */
	bool store;
	unsigned max_age;
	struct gw_auth_store_hooks hooks;
	uint64_t forgets;               /* bumped by every forget: a store answer older is not cached */
	struct session *tab;
	size_t n, cap;
	struct grant grants[GRANTS_MAX];
	struct window windows[WINDOWS_MAX];
	struct confirm confirms[CONFIRMS_MAX];
	uint64_t next_confirm;
	bool stopping;                  /* gw_auth_stop: no confirmation waits */
	/* A hash to spend time on for unknown accounts. */
	char dummy_hash[crypto_pwhash_STRBYTES];
};

static unsigned long long pw_ops = crypto_pwhash_OPSLIMIT_INTERACTIVE;
static size_t pw_mem = crypto_pwhash_MEMLIMIT_INTERACTIVE;

void
gw_auth_settings_default(struct gw_auth_settings *s)
{
	memset(s, 0, sizeof(*s));
	s->max_failures = 5;
	s->lockout_seconds = 60;
	s->signing_window = 300;
	s->confirm_timeout = 30;
	s->test_clock = false;
}

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
	pthread_cond_init(&a->confirm_cond, NULL);
	a->idle_timeout = idle_timeout ? idle_timeout : 28800;
	gw_auth_settings_default(&a->set);
	/* The dummy uses the cheapest preset: its cost only has to be
	 * comparable, and tests create many gw_auth objects. */
	if (crypto_pwhash_str(a->dummy_hash, "sealgate-dummy", 14,
	                      crypto_pwhash_OPSLIMIT_INTERACTIVE,
	                      crypto_pwhash_MEMLIMIT_INTERACTIVE) != 0) {
		pthread_cond_destroy(&a->confirm_cond);
		pthread_mutex_destroy(&a->lock);
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
	sodium_memzero(a->grants, sizeof(a->grants));
	pthread_cond_destroy(&a->confirm_cond);
	pthread_mutex_destroy(&a->lock);
	free(a);
	*auth = NULL;
}

void
gw_auth_configure(struct gw_auth *a, const struct gw_auth_settings *s)
{
	struct gw_auth_settings d;

	gw_auth_settings_default(&d);
	pthread_mutex_lock(&a->lock);
	a->set.max_failures = s->max_failures ? s->max_failures : d.max_failures;
	a->set.lockout_seconds = s->lockout_seconds ? s->lockout_seconds : d.lockout_seconds;
	if (a->set.lockout_seconds > LOCKOUT_MAX)
		a->set.lockout_seconds = LOCKOUT_MAX;
	a->set.signing_window = s->signing_window ? s->signing_window : d.signing_window;
	a->set.confirm_timeout = s->confirm_timeout ? s->confirm_timeout : d.confirm_timeout;
	a->set.test_clock = s->test_clock;
	pthread_mutex_unlock(&a->lock);
}

void
gw_auth_get_settings(struct gw_auth *a, struct gw_auth_settings *out)
{
	pthread_mutex_lock(&a->lock);
	*out = a->set;
	pthread_mutex_unlock(&a->lock);
}

/* The test clock: one decimal number of seconds in the file named by
 * SEALGATE_TEST_CLOCK. Anything unreadable falls back to the real clock. */
static time_t
test_time(void)
{
	const char *path = getenv("SEALGATE_TEST_CLOCK");
	char buf[32];
	long long v;
	char *end;
	size_t n;
	FILE *f;

	if (path == NULL || (f = fopen(path, "re")) == NULL)
		return time(NULL);
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	errno = 0;
	v = strtoll(buf, &end, 10);
	if (errno != 0 || end == buf || v <= 0)
		return time(NULL);
	return (time_t)v;
}

time_t
gw_auth_now(struct gw_auth *a)
{
	bool test;

	if (a == NULL)
		return time(NULL);
	pthread_mutex_lock(&a->lock);
	test = a->set.test_clock;
	pthread_mutex_unlock(&a->lock);
	return test ? test_time() : time(NULL);
}

/* ---- passwords ---- */

void
gw_auth_set_password_cost(enum gw_pw_cost cost)
{
	switch (cost) {
	case GW_PW_SENSITIVE:
		pw_ops = crypto_pwhash_OPSLIMIT_SENSITIVE;
		pw_mem = crypto_pwhash_MEMLIMIT_SENSITIVE;
		break;
	case GW_PW_MODERATE:
		pw_ops = crypto_pwhash_OPSLIMIT_MODERATE;
		pw_mem = crypto_pwhash_MEMLIMIT_MODERATE;
		break;
	default:
		pw_ops = crypto_pwhash_OPSLIMIT_INTERACTIVE;
		pw_mem = crypto_pwhash_MEMLIMIT_INTERACTIVE;
		break;
	}
}

/* ---- the hashing pool ----
 * Each Argon2id hash takes pw_mem bytes (64 MiB at "interactive") for its
 * whole run, so N logins at once would take N times that. At most
 * hash_max hashes run at once; the rest wait their turn, at most
 * GW_AUTH_HASH_WAIT seconds, and are then refused as busy. Process-wide,
 * like the cost. */
static pthread_mutex_t hash_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t hash_cond = PTHREAD_COND_INITIALIZER;
static unsigned hash_max;         /* 0: not sized yet (gw_auth_hash_pool_auto) */
static unsigned hash_running;

unsigned
gw_auth_hash_pool_auto(void)
{
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	long pages = sysconf(_SC_PHYS_PAGES), psize = sysconf(_SC_PAGESIZE);
	unsigned n = cpus < 2 ? 2 : cpus > 4 ? 4 : (unsigned)cpus;

	/* One core each, 2 to 4, and never more than a quarter of the
	 * machine's memory in hashes. */
	if (pages > 0 && psize > 0) {
		unsigned long long quarter = (unsigned long long)pages * (unsigned long long)psize / 4;
		while (n > 1 && (unsigned long long)n * pw_mem > quarter)
			n--;
	}
	return n;
}

void
gw_auth_set_hash_pool(unsigned n)
{
	pthread_mutex_lock(&hash_lock);
	hash_max = n ? n : gw_auth_hash_pool_auto();
	if (hash_max > GW_AUTH_HASH_POOL_MAX)
		hash_max = GW_AUTH_HASH_POOL_MAX;
	pthread_cond_broadcast(&hash_cond);
	pthread_mutex_unlock(&hash_lock);
}

unsigned
gw_auth_hash_pool(void)
{
	unsigned n;

	pthread_mutex_lock(&hash_lock);
	if (hash_max == 0)
		hash_max = gw_auth_hash_pool_auto();
	n = hash_max;
	pthread_mutex_unlock(&hash_lock);
	return n;
}

/* Waits for a place in the pool: 0, or -1 after GW_AUTH_HASH_WAIT s. */
static int
hash_enter(void)
{
	struct timespec deadline;
	int rv = 0;

	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += GW_AUTH_HASH_WAIT;
	pthread_mutex_lock(&hash_lock);
	if (hash_max == 0)
		hash_max = gw_auth_hash_pool_auto();
	while (hash_running >= hash_max && rv == 0)
		if (pthread_cond_timedwait(&hash_cond, &hash_lock, &deadline) == ETIMEDOUT)
			rv = hash_running >= hash_max ? -1 : 0;
	if (rv == 0)
		hash_running++;
	pthread_mutex_unlock(&hash_lock);
	return rv;
}

static void
hash_leave(void)
{
	pthread_mutex_lock(&hash_lock);
	hash_running--;
	pthread_cond_signal(&hash_cond);
	pthread_mutex_unlock(&hash_lock);
}

int
gw_auth_hash_password(const char *password, char *out, size_t outlen)
{
	int rc;

	if (outlen < crypto_pwhash_STRBYTES || sodium_init() < 0)
		return -1;
	if (hash_enter() < 0)
		return GW_AUTH_BUSY;
	rc = crypto_pwhash_str(out, password, strlen(password), pw_ops, pw_mem) == 0 ? 0 : -1;
	hash_leave();
	return rc;
}

/* crypto_pwhash_str_verify inside the pool: 1 match, 0 not, GW_AUTH_BUSY. */
static int
hash_verify(const char *hash, const char *password, size_t len)
{
	int rc;

	if (hash_enter() < 0)
		return GW_AUTH_BUSY;
	rc = crypto_pwhash_str_verify(hash, password, len) == 0 ? 1 : 0;
	hash_leave();
	return rc;
}

int
gw_auth_check_password_n(struct gw_auth *a, struct gw_store *st, const char *user,
                         const char *password, size_t len)
{
	char hash[crypto_pwhash_STRBYTES + 1];
	int rc = gw_store_password_get(st, user, hash, sizeof(hash));

	if (rc < 0)
		return -1;
	if (rc == 0) {
		/* Same cost as a real check: no account enumeration by timing. */
		rc = hash_verify(a->dummy_hash, password, len);
		return rc == GW_AUTH_BUSY ? rc : 0;
	}
	rc = hash_verify(hash, password, len);
	sodium_memzero(hash, sizeof(hash));
	return rc;
}

int
gw_auth_check_password(struct gw_auth *a, struct gw_store *st, const char *user,
                       const char *password)
{
	return gw_auth_check_password_n(a, st, user, password, strlen(password));
}

/* ---- sessions ---- */

static void
token_id(const uint8_t *token, size_t len, uint8_t *id)
{
	crypto_generichash(id, crypto_generichash_BYTES, token, len, NULL, 0);
}

/* Forgets the grants of session sid. Caller holds the lock. */
static void
grants_drop_locked(struct gw_auth *a, const uint8_t *sid)
{
	for (size_t i = 0; i < GRANTS_MAX; i++)
		if (a->grants[i].until != 0 && sodium_memcmp(a->grants[i].sid, sid, GW_AUTH_SID_LEN) == 0)
			sodium_memzero(&a->grants[i], sizeof(a->grants[i]));
}

static void
session_clear_locked(struct gw_auth *a, struct session *s)
{
	grants_drop_locked(a, s->id);
	sodium_memzero(s, sizeof(*s));
}

/* Drops sessions idle longer than the timeout. Caller holds the lock. */
static void
expire(struct gw_auth *a, time_t now)
{
	for (size_t i = 0; i < a->n; i++) {
		struct session *s = &a->tab[i];
		if (s->used && now - s->last_used > (time_t)a->idle_timeout)
			session_clear_locked(a, s);
	}
	while (a->n > 0 && !a->tab[a->n - 1].used)
		a->n--;
}

/* A free slot of the table, grown when full. Caller holds the lock. */
static struct session *
slot_locked(struct gw_auth *a)
{
	for (size_t i = 0; i < a->n; i++)
		if (!a->tab[i].used)
			return &a->tab[i];
	if (a->n == a->cap) {
		size_t ncap = a->cap ? a->cap * 2 : 64;
		struct session *t;
		if (ncap > 65536)
			return NULL;
		t = calloc(ncap, sizeof(*t));
		if (t == NULL)
			return NULL;
		if (a->tab) {
			memcpy(t, a->tab, a->n * sizeof(*t));
			sodium_memzero(a->tab, a->cap * sizeof(*t));
			free(a->tab);
		}
		a->tab = t;
		a->cap = ncap;
	}
	return &a->tab[a->n++];
}

/* The cached session of id, or NULL. Caller holds the lock. */
static struct session *
find_locked(struct gw_auth *a, const uint8_t *id)
{
	for (size_t i = 0; i < a->n; i++)
		if (a->tab[i].used && sodium_memcmp(a->tab[i].id, id, crypto_generichash_BYTES) == 0)
			return &a->tab[i];
	return NULL;
}

void
gw_auth_use_store(struct gw_auth *a, unsigned max_age, const struct gw_auth_store_hooks *hooks)
{
	pthread_mutex_lock(&a->lock);
	a->store = hooks != NULL && hooks->put != NULL && hooks->touch != NULL && hooks->end != NULL;
	a->max_age = max_age ? max_age : GW_AUTH_MAX_AGE;
	if (a->store)
		a->hooks = *hooks;
	pthread_mutex_unlock(&a->lock);
}

int
gw_auth_session_new_factors(struct gw_auth *a, const char *user, uid_t uid, unsigned factors,
                            time_t totp_at, uint8_t *token)
{
	struct gw_session_row row = { 0 };
	struct session *s = NULL;
	time_t now = time(NULL);
	int rv = -1;

	if (strlen(user) > SG_NAME_MAX)
		return -1;
	randombytes_buf(token, SG_SESSION_TOKEN_LEN);
	token_id(token, SG_SESSION_TOKEN_LEN, row.id);
	if (a->store) {
		/* The store's row is the session: made before anyone holds
		 * the token (a login whose row is not written gets none). */
		snprintf(row.user, sizeof(row.user), "%s", user);
		row.uid = (int64_t)uid;
		row.factors = factors;
		row.totp_at = (int64_t)totp_at;
		row.created = row.last_used = (int64_t)now;
		row.idle = (int64_t)a->idle_timeout;
		row.expires = (int64_t)now + (int64_t)a->max_age;
		if (a->hooks.put(a->hooks.arg, &row, (int64_t)now) < 0) {
			rv = GW_AUTH_STORE_FAILED;
			goto out;
		}
	}
	pthread_mutex_lock(&a->lock);
	expire(a, now);
	s = slot_locked(a);
	if (s != NULL) {
		memset(s, 0, sizeof(*s));
		memcpy(s->id, row.id, sizeof(s->id));
		snprintf(s->info.user, sizeof(s->info.user), "%s", user);
		s->info.uid = uid;
		s->info.created = now;
		s->info.factors = factors;
		s->info.totp_at = totp_at;
		memcpy(s->info.sid, s->id, GW_AUTH_SID_LEN);
		s->last_used = now;
		s->checked = now;
		s->used = true;
		rv = 0;
	} else if (a->store) {
		/* (the cache is full: the store has it, asked at each use) */
		rv = 0;
	}
	pthread_mutex_unlock(&a->lock);
out:
	sodium_memzero(&row, sizeof(row));
	if (rv < 0)
		sodium_memzero(token, SG_SESSION_TOKEN_LEN);
	return rv;
}

int
gw_auth_session_new(struct gw_auth *a, const char *user, uid_t uid, uint8_t *token)
{
	return gw_auth_session_new_factors(a, user, uid, GW_FACTOR_PASSWORD, 0, token);
}

/* The store's answer for id, cached when no change was heard meanwhile
 * (forgets is what it was before the question). Caller holds the lock. */
static int
cache_answer_locked(struct gw_auth *a, const uint8_t *id, int rc, const struct gw_session_row *row,
                    uint64_t forgets, time_t now, uid_t uid, struct gw_login_info *info)
{
	struct session *s = find_locked(a, id);

	if (rc < 0)
		return -1;
	if (rc == 0) {
		/* Ended, expired or revoked: gone here too. */
		if (s != NULL)
			session_clear_locked(a, s);
		return 0;
	}
	if (row->uid != (int64_t)uid)
		return 0;
	if (s == NULL && (s = slot_locked(a)) != NULL) {
		memset(s, 0, sizeof(*s));
		memcpy(s->id, id, sizeof(s->id));
		memcpy(s->info.sid, id, GW_AUTH_SID_LEN);
		s->used = true;
	}
	if (s != NULL) {
		snprintf(s->info.user, sizeof(s->info.user), "%s", row->user);
		s->info.uid = uid;
		s->info.created = (time_t)row->created;
		s->info.factors = row->factors;
		s->info.totp_at = (time_t)row->totp_at;
		s->last_used = now;
		s->checked = forgets == a->forgets ? now : 0;
		*info = s->info;
	} else {
		/* (the cache is full: this use is the store's answer alone) */
		memset(info, 0, sizeof(*info));
		snprintf(info->user, sizeof(info->user), "%s", row->user);
		info->uid = uid;
		info->created = (time_t)row->created;
		info->factors = row->factors;
		info->totp_at = (time_t)row->totp_at;
		memcpy(info->sid, id, GW_AUTH_SID_LEN);
	}
	return 1;
}

int
gw_auth_session_find(struct gw_auth *a, const uint8_t *token, size_t len, uid_t uid,
                     struct gw_login_info *info)
{
	uint8_t id[crypto_generichash_BYTES];
	struct gw_session_row row;
	time_t now = time(NULL);
	struct session *s;
	bool fresh = true;
	uint64_t forgets;
	int rc;

	if (token == NULL || len != SG_SESSION_TOKEN_LEN)
		return 0;
	token_id(token, len, id);
	if (a->store && a->hooks.fresh != NULL)
		fresh = a->hooks.fresh(a->hooks.arg);
	pthread_mutex_lock(&a->lock);
	s = find_locked(a, id);
	/* A token is bound to the uid that logged in. */
	if (s != NULL && s->info.uid != uid) {
		pthread_mutex_unlock(&a->lock);
		return 0;
	}
	if (s != NULL && now - s->last_used > (time_t)a->idle_timeout && !a->store) {
		session_clear_locked(a, s);
		s = NULL;
	}
	if (!a->store || (s != NULL && fresh && s->checked != 0 &&
	    now - s->checked < GW_AUTH_RECHECK && now >= s->checked &&
	    now - s->last_used <= (time_t)a->idle_timeout)) {
		/* Memory's answer: no store, or a session the store said live
		 * a moment ago and whose revocation the feed would have
		 * brought. */
		rc = s != NULL;
		if (s != NULL) {
			s->last_used = now;
			*info = s->info;
		}
		pthread_mutex_unlock(&a->lock);
		return rc;
	}
	forgets = a->forgets;
	pthread_mutex_unlock(&a->lock);
	rc = a->hooks.touch(a->hooks.arg, id, (int64_t)now, &row);
	pthread_mutex_lock(&a->lock);
	rc = cache_answer_locked(a, id, rc, &row, forgets, now, uid, info);
	pthread_mutex_unlock(&a->lock);
	sodium_memzero(&row, sizeof(row));
	return rc;
}

bool
gw_auth_session_get(struct gw_auth *a, const uint8_t *token, size_t len,
                    uid_t uid, struct gw_login_info *info)
{
	return gw_auth_session_find(a, token, len, uid, info) == 1;
}

void
gw_auth_session_end(struct gw_auth *a, const uint8_t *token, size_t len, uid_t uid)
{
	uint8_t id[crypto_generichash_BYTES];
	bool ended = false;

	if (token == NULL || len != SG_SESSION_TOKEN_LEN)
		return;
	token_id(token, len, id);
	pthread_mutex_lock(&a->lock);
	for (size_t i = 0; i < a->n; i++) {
		struct session *s = &a->tab[i];
		/* Only the uid that logged in ends it: a token seen by
		 * someone else is no logout for them to give. */
		if (s->used && sodium_memcmp(s->id, id, sizeof(id)) == 0 && s->info.uid == uid) {
			session_clear_locked(a, s);
			ended = true;
		}
	}
	pthread_mutex_unlock(&a->lock);
	/* (the cache has every session the dispatcher let through: a
	 * logout is of a session found, hence cached, here) */
	if (ended && a->store)
		a->hooks.end(a->hooks.arg, id);
}

void
gw_auth_session_end_user(struct gw_auth *a, const char *user)
{
	pthread_mutex_lock(&a->lock);
	for (size_t i = 0; i < a->n; i++) {
		struct session *s = &a->tab[i];
		if (s->used && strcmp(s->info.user, user) == 0)
			session_clear_locked(a, s);
	}
	for (size_t i = 0; i < WINDOWS_MAX; i++)
		if (a->windows[i].until != 0 && strcmp(a->windows[i].user, user) == 0)
			memset(&a->windows[i], 0, sizeof(a->windows[i]));
	a->forgets++;
	pthread_mutex_unlock(&a->lock);
}

void
gw_auth_session_forget_user(struct gw_auth *a, const char *user, bool revoked)
{
	pthread_mutex_lock(&a->lock);
	for (size_t i = 0; i < a->n; i++) {
		struct session *s = &a->tab[i];
		if (!s->used || (user != NULL && strcmp(s->info.user, user) != 0))
			continue;
		if (revoked)
			session_clear_locked(a, s);
		else
			s->checked = 0;
	}
	/* A window is this gateway's alone: a revocation heard closes it
	 * here; after a lost feed (user NULL) any may have been revoked. */
	if (revoked)
		for (size_t i = 0; i < WINDOWS_MAX; i++)
			if (a->windows[i].until != 0 &&
			    (user == NULL || strcmp(a->windows[i].user, user) == 0))
				memset(&a->windows[i], 0, sizeof(a->windows[i]));
	a->forgets++;
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

/* ---- grants ---- */

int
gw_auth_grant_add(struct gw_auth *a, const uint8_t sid[GW_AUTH_SID_LEN], const char *seal)
{
	time_t now = gw_auth_now(a);
	struct grant *slot = NULL;

	if (strlen(seal) > SG_NAME_MAX)
		return -1;
	pthread_mutex_lock(&a->lock);
	for (size_t i = 0; i < GRANTS_MAX && slot == NULL; i++) {
		struct grant *g = &a->grants[i];
		if (g->until != 0 && g->until < now)
			sodium_memzero(g, sizeof(*g));
		if (g->until == 0)
			slot = g;
	}
	if (slot != NULL) {
		memcpy(slot->sid, sid, GW_AUTH_SID_LEN);
		snprintf(slot->seal, sizeof(slot->seal), "%s", seal);
		slot->until = now + GW_AUTH_GRANT_TTL;
	}
	pthread_mutex_unlock(&a->lock);
	return slot ? 0 : -1;
}

/* Takes one live grant of (sid, seal). */
static bool
grant_take(struct gw_auth *a, const uint8_t *sid, const char *seal)
{
	time_t now = gw_auth_now(a);
	bool found = false;

	pthread_mutex_lock(&a->lock);
	for (size_t i = 0; i < GRANTS_MAX && !found; i++) {
		struct grant *g = &a->grants[i];
		if (g->until == 0)
			continue;
		if (g->until < now) {
			sodium_memzero(g, sizeof(*g));
			continue;
		}
		if (sodium_memcmp(g->sid, sid, GW_AUTH_SID_LEN) == 0 && strcmp(g->seal, seal) == 0) {
			sodium_memzero(g, sizeof(*g));
			found = true;
		}
	}
	pthread_mutex_unlock(&a->lock);
	return found;
}

/* ---- windows ---- */

int
gw_auth_window_open(struct gw_auth *a, const char *user, uid_t uid, unsigned seconds,
                    time_t *until)
{
	time_t now = gw_auth_now(a);
	struct window *slot = NULL, *oldest = NULL;

	if (strlen(user) > SG_NAME_MAX)
		return -1;
	pthread_mutex_lock(&a->lock);
	if (seconds == 0 || seconds > a->set.signing_window)
		seconds = a->set.signing_window;
	for (size_t i = 0; i < WINDOWS_MAX; i++) {
		struct window *w = &a->windows[i];
		if (w->until != 0 && w->until <= now)
			memset(w, 0, sizeof(*w));
		if (w->until != 0 && w->uid == uid && strcmp(w->user, user) == 0) {
			slot = w;
			break;
		}
		if (w->until == 0 && slot == NULL)
			slot = w;
		if (oldest == NULL || w->until < oldest->until)
			oldest = w;
	}
	if (slot == NULL)
		slot = oldest;   /* full: the window closest to its end gives way */
	snprintf(slot->user, sizeof(slot->user), "%s", user);
	slot->uid = uid;
	slot->until = now + (time_t)seconds;
	*until = slot->until;
	pthread_mutex_unlock(&a->lock);
	return 0;
}

void
gw_auth_window_close(struct gw_auth *a, const char *user, uid_t uid)
{
	pthread_mutex_lock(&a->lock);
	for (size_t i = 0; i < WINDOWS_MAX; i++) {
		struct window *w = &a->windows[i];
		if (w->until != 0 && w->uid == uid && strcmp(w->user, user) == 0)
			memset(w, 0, sizeof(*w));
	}
	pthread_mutex_unlock(&a->lock);
}

time_t
gw_auth_window_until(struct gw_auth *a, const char *user, uid_t uid)
{
	time_t now = gw_auth_now(a), until = 0;

	pthread_mutex_lock(&a->lock);
	for (size_t i = 0; i < WINDOWS_MAX; i++) {
		struct window *w = &a->windows[i];
		if (w->until != 0 && w->uid == uid && strcmp(w->user, user) == 0 && w->until > now)
			until = w->until;
	}
	pthread_mutex_unlock(&a->lock);
	return until;
}

/* ---- confirmations ---- */

size_t
gw_auth_confirm_list(struct gw_auth *a, const char *user, uid_t uid,
                     struct gw_confirm_info *out, size_t max)
{
	size_t n = 0;

	pthread_mutex_lock(&a->lock);
	for (size_t i = 0; i < CONFIRMS_MAX && n < max; i++) {
		struct confirm *c = &a->confirms[i];
		if (c->used && !c->given && c->uid == uid && strcmp(c->user, user) == 0)
			out[n++] = c->info;
	}
	pthread_mutex_unlock(&a->lock);
	return n;
}

int
gw_auth_confirm_give(struct gw_auth *a, const char *user, uid_t uid, uint64_t id,
                     struct gw_confirm_info *info)
{
	struct confirm *pick = NULL;

	pthread_mutex_lock(&a->lock);
	for (size_t i = 0; i < CONFIRMS_MAX; i++) {
		struct confirm *c = &a->confirms[i];
		if (!c->used || c->given || c->uid != uid || strcmp(c->user, user) != 0)
			continue;
		if (id != 0 ? c->info.id == id : (pick == NULL || c->info.id < pick->info.id))
			pick = c;
	}
	if (pick != NULL) {
		pick->given = true;
		*info = pick->info;
		pthread_cond_broadcast(&a->confirm_cond);
	}
	pthread_mutex_unlock(&a->lock);
	return pick != NULL;
}

/* Waits until the pending confirmation is given or the timeout passes.
 * Returns 1 given, 0 timed out, -1 no room, -2 the gateway is stopping.
 * Real time, not the test clock: the wait is a wait. */
static int
confirm_wait(struct gw_auth *a, const char *user, const struct gw_peer *peer, const char *seal)
{
	struct confirm *slot = NULL;
	struct timespec deadline;
	int rc = 0;

	clock_gettime(CLOCK_REALTIME, &deadline);
	pthread_mutex_lock(&a->lock);
	deadline.tv_sec += a->set.confirm_timeout;
	for (size_t i = 0; i < CONFIRMS_MAX && slot == NULL; i++)
		if (!a->confirms[i].used)
			slot = &a->confirms[i];
	if (slot == NULL || a->stopping) {
		pthread_mutex_unlock(&a->lock);
		return slot == NULL ? -1 : -2;
	}
	memset(slot, 0, sizeof(*slot));
	slot->used = true;
	slot->info.id = ++a->next_confirm;
	snprintf(slot->info.seal, sizeof(slot->info.seal), "%s", seal);
	/* cut at a character's boundary: the list of waiting signatures
	 * sends it as a JSON string */
	gw_utf8_escape(slot->info.exe, sizeof(slot->info.exe), peer->exe);
	slot->info.pid = peer->pid;
	slot->info.since = time(NULL);
	snprintf(slot->user, sizeof(slot->user), "%s", user);
	slot->uid = peer->uid;
	while (!slot->given && !a->stopping) {
		if (pthread_cond_timedwait(&a->confirm_cond, &a->lock, &deadline) == ETIMEDOUT)
			break;
	}
	rc = slot->given ? 1 : a->stopping ? -2 : 0;
	memset(slot, 0, sizeof(*slot));
	pthread_mutex_unlock(&a->lock);
	return rc;
}

void
gw_auth_stop(struct gw_auth *a)
{
	if (a == NULL)
		return;
	pthread_mutex_lock(&a->lock);
	a->stopping = true;
	pthread_cond_broadcast(&a->confirm_cond);
	pthread_mutex_unlock(&a->lock);
}

/* ---- the sign path's check ---- */

int
gw_auth_check_sign(struct gw_req *r, const struct gw_seal *seal, unsigned long *rv,
                   const char **code)
{
	struct gw_auth *a = r->ctx->auth;
	const char *mode = seal->mfa ? seal->mfa : "login";
	const struct gw_login_info *l = &r->login;
	time_t until;
	int w;

	*rv = CKR_FUNCTION_REJECTED;
	*code = "mfa_required";
	if (strcmp(mode, "none") == 0)
		return 0;
	if (strcmp(mode, "login") == 0) {
		if (l->factors & GW_FACTOR_TOTP)
			return 0;
		snprintf(r->err, sizeof(r->err),
		         "the %s wants your second factor at login: log in with your password followed by "
		         "your current 6-digit code as the PIN (no code yet? `sealctl user totp-enroll`)",
		         seal->name);
		return -1;
	}
	if (strcmp(mode, "per_signature") == 0) {
		if (grant_take(a, l->sid, seal->id))
			return 0;
		snprintf(r->err, sizeof(r->err),
		         "the %s wants a fresh code for each signature: give it with "
		         "C_Login(CKU_CONTEXT_SPECIFIC) after C_SignInit (the application asks for the "
		         "\"context specific PIN\")", seal->name);
		return -1;
	}
	if (strcmp(mode, "out_of_band") == 0 || strcmp(mode, "out_of_band_confirm") == 0) {
		until = gw_auth_window_until(a, l->user, r->peer->uid);
		if (until == 0) {
			snprintf(r->err, sizeof(r->err),
			         "the %s signs only inside a signing window: run `sealctl login` "
			         "(password and code) as this OS user first", seal->name);
			return -1;
		}
		if (strcmp(mode, "out_of_band") == 0)
			return 0;
		w = confirm_wait(a, l->user, r->peer, seal->id);
		if (w == 1)
			return 0;
		if (w == -2) {
			*rv = CKR_DEVICE_REMOVED;
			*code = "stopping";
		}
		snprintf(r->err, sizeof(r->err), w == 0 ?
		         "the %s wants each signature confirmed: nobody ran `sealctl confirm` in time" :
		         w == -2 ? "the gateway is stopping: the %s made no signature" :
		         "the %s wants each signature confirmed: too many signatures are waiting",
		         seal->name);
		return -1;
	}
	/* A mode this build does not know: deny. */
	snprintf(r->err, sizeof(r->err), "the %s has an unknown second-factor mode \"%s\"",
	         seal->name, mode);
	*code = "denied";
	return -1;
}
