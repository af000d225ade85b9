/*
 * The change feed (changes.h): the subscribed hooks, and on a store with a
 * feed (PostgreSQL) the thread that waits on it, hands each event to the
 * hooks of its kind, and after a lost connection opens another and has
 * every hook re-read what it caches.
 */
#include "changes.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "policystore.h"

#define HOOKS_MAX 16
#define WAIT_MS 250             /* how often the thread looks at the stop flag */
#define RETRY_MIN_MS 100        /* first wait before connecting again */
#define RETRY_MAX_MS 2000       /* longest wait between two tries */

struct hook {
	char kind[16];
	gw_change_hook fn;
	void *arg;
};

struct gw_changes {
	struct gw_ctx *ctx;
	pthread_mutex_t lock;       /* hooks, stop */
	struct hook hooks[HOOKS_MAX];
	size_t n_hooks;
	bool started, stop;
	bool live;                  /* connected, and the hooks have re-read (gw_changes_live) */
	pthread_t th;
	unsigned connects;
};

static struct gw_changes *
changes_of(struct gw_ctx *ctx)
{
	struct gw_changes *c = ctx->changes;

	if (c != NULL)
		return c;
	c = calloc(1, sizeof(*c));
	if (c == NULL)
		return NULL;
	c->ctx = ctx;
	pthread_mutex_init(&c->lock, NULL);
	ctx->changes = c;
	return c;
}

int
gw_changes_subscribe(struct gw_ctx *ctx, const char *kind, gw_change_hook fn, void *arg)
{
	struct gw_changes *c = changes_of(ctx);
	int rv = -1;

	if (c == NULL || strlen(kind) >= sizeof(c->hooks[0].kind))
		return -1;
	pthread_mutex_lock(&c->lock);
	if (c->n_hooks < HOOKS_MAX) {
		struct hook *h = &c->hooks[c->n_hooks++];

		snprintf(h->kind, sizeof(h->kind), "%s", kind);
		h->fn = fn;
		h->arg = arg;
		rv = 0;
	}
	pthread_mutex_unlock(&c->lock);
	return rv;
}

/* Calls the hooks of kind (every hook when kind is NULL, with id NULL).
 * The hooks are fixed once the thread runs: read without the lock held
 * across the calls, which may be slow (a policy validated on the token). */
static void
deliver(struct gw_changes *c, const char *kind, const char *id)
{
	struct hook hooks[HOOKS_MAX];
	size_t n;

	pthread_mutex_lock(&c->lock);
	n = c->n_hooks;
	memcpy(hooks, c->hooks, n * sizeof(hooks[0]));
	pthread_mutex_unlock(&c->lock);
	for (size_t i = 0; i < n; i++)
		if (kind == NULL || strcmp(hooks[i].kind, kind) == 0)
			hooks[i].fn(c->ctx, hooks[i].kind, kind ? id : NULL, hooks[i].arg);
}

static void
on_event(void *arg, const char *event)
{
	struct gw_changes *c = arg;
	char kind[GW_CHANGE_EVENT_MAX + 1];
	const char *colon = strchr(event, ':');
	size_t n = colon ? (size_t)(colon - event) : strlen(event);

	if (n == 0 || n > GW_CHANGE_EVENT_MAX)
		return;
	memcpy(kind, event, n);
	kind[n] = '\0';
	/* An event with no id says "something of this kind changed". */
	deliver(c, kind, colon && colon[1] ? colon + 1 : NULL);
}

static bool
stopping(struct gw_changes *c)
{
	bool s;

	pthread_mutex_lock(&c->lock);
	s = c->stop;
	pthread_mutex_unlock(&c->lock);
	return s;
}

static void
nap(unsigned ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static void *
feed_main(void *arg)
{
	struct gw_changes *c = arg;
	struct gw_store_feed *feed = NULL;
	unsigned retry = RETRY_MIN_MS;
	bool said = false;
	char err[512];

	pthread_setname_np(pthread_self(), "sg-changes");
	while (!stopping(c)) {
		if (feed == NULL) {
			if (gw_store_changes_open(c->ctx->store, &feed, err, sizeof(err)) <= 0) {
				if (!said)
					gw_log_warn("change feed: %s; trying again", err);
				said = true;
				/* In short steps, so a stop is not held up. */
				for (unsigned t = 0; t < retry && !stopping(c); t += 50)
					nap(50);
				retry = retry * 2 > RETRY_MAX_MS ? RETRY_MAX_MS : retry * 2;
				continue;
			}
			pthread_mutex_lock(&c->lock);
			c->connects++;
			pthread_mutex_unlock(&c->lock);
			if (said)
				gw_log_info("change feed: connected again; re-reading what it caches");
			said = false;
			retry = RETRY_MIN_MS;
			/* Whatever came before this connection listened (at the
			 * start, or while it was lost) is read again. */
			deliver(c, NULL, NULL);
			pthread_mutex_lock(&c->lock);
			c->live = true;
			pthread_mutex_unlock(&c->lock);
		}
		if (gw_store_changes_wait(feed, WAIT_MS, on_event, c, err, sizeof(err)) < 0) {
			/* Stale from here: what comes meanwhile is not heard. */
			pthread_mutex_lock(&c->lock);
			c->live = false;
			pthread_mutex_unlock(&c->lock);
			gw_log_warn("change feed: %s; connecting again", err);
			said = true;
			gw_store_changes_close(&feed);
		}
	}
	gw_store_changes_close(&feed);
	return NULL;
}

int
gw_changes_start(struct gw_ctx *ctx, char *err, size_t errlen)
{
	struct gw_store_feed *probe = NULL;
	struct gw_changes *c = changes_of(ctx);
	int r;

	if (c == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	if (ctx->store == NULL)
		return 0;
	/* Only a backend with a feed needs the thread: SQLite says 0. */
	r = gw_store_changes_open(ctx->store, &probe, err, errlen);
	gw_store_changes_close(&probe);
	if (r == 0)
		return 0;
	/* (r < 0: the store is unreachable now; the thread keeps trying) */
	c->stop = false;
	c->live = false;
	if (pthread_create(&c->th, NULL, feed_main, c) != 0) {
		snprintf(err, errlen, "cannot start the change feed's thread");
		return -1;
	}
	c->started = true;
	return 0;
}

void
gw_changes_stop(struct gw_ctx *ctx)
{
	struct gw_changes *c = ctx->changes;

	bool started;

	if (c == NULL)
		return;
	pthread_mutex_lock(&c->lock);
	started = c->started;
	c->stop = true;
	pthread_mutex_unlock(&c->lock);
	if (started) {
		pthread_join(c->th, NULL);
		pthread_mutex_lock(&c->lock);
		c->started = false;
		c->live = false;
		pthread_mutex_unlock(&c->lock);
	}
}

void
gw_changes_free(struct gw_ctx *ctx)
{
	struct gw_changes *c = ctx->changes;

	if (c == NULL)
		return;
	gw_changes_stop(ctx);
	pthread_mutex_destroy(&c->lock);
	free(c);
	ctx->changes = NULL;
}

int
gw_changes_announce_tx(struct gw_store *st, const char *kind, const char *id, char *err,
                       size_t errlen)
{
	char ev[GW_CHANGE_EVENT_MAX + 1];
	int n = id ? snprintf(ev, sizeof(ev), "%s:%s", kind, id) : snprintf(ev, sizeof(ev), "%s", kind);

	if (n < 0 || (size_t)n >= sizeof(ev)) {
		snprintf(err, errlen, "change event too long");
		return -1;
	}
	return gw_store_changes_notify_tx(st, ev, err, errlen);
}

void
gw_changes_local(struct gw_ctx *ctx, const char *kind, const char *id)
{
	if (ctx->changes != NULL)
		deliver(ctx->changes, kind, id);
}

bool
gw_changes_live(struct gw_ctx *ctx)
{
	struct gw_changes *c = ctx->changes;
	bool live = true;

	if (c != NULL) {
		pthread_mutex_lock(&c->lock);
		live = !c->started || c->live;
		pthread_mutex_unlock(&c->lock);
	}
	return live;
}

unsigned
gw_changes_connects(struct gw_ctx *ctx)
{
	unsigned n = 0;

	if (ctx->changes != NULL) {
		pthread_mutex_lock(&ctx->changes->lock);
		n = ctx->changes->connects;
		pthread_mutex_unlock(&ctx->changes->lock);
	}
	return n;
}
