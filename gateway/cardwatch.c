/*
 * The card watcher (cardwatch.h): one thread blocked in pcsc-lite's
 * SCardGetStatusChange over the watched readers and the PnP pseudo-reader.
 * A card leaving the token's reader makes the token absent at once; a card
 * arriving is tried (binding, PIN flags, one login) until it is up, refused,
 * or clearly not ours. It holds no secret and never talks to the card.
 */
#include "cardwatch.h"
#include "log.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <winscard.h>

#define READERS_MAX      16u
#define READER_LIST_MAX  (64u * 1024u)
#define WAIT_MS          2000u    /* longest block: bounds the stop race below */
#define RETRY_MS         500u     /* while a new card is being brought up */
#define RECONNECT_TRIES  40u      /* about 20 s for a card to become usable */
#define PNP_READER       "\\\\?PnP?\\Notification"

struct gw_cardwatch {
	struct gw_token *tok;
	char *reader;                 /* configured reader (prefix), or NULL */
	pthread_t thread;
	bool started;

	pthread_mutex_t lock;         /* guards stop, ctx, has_ctx */
	pthread_cond_t cond;
	bool stop;
	SCARDCONTEXT ctx;
	bool has_ctx;
};

/* One watched reader. */
struct rd {
	char name[256];
	bool mine;                    /* may hold the token */
	bool exact;                   /* named as the token's slot (or configured) */
};

static bool
stopping(struct gw_cardwatch *cw)
{
	bool s;

	pthread_mutex_lock(&cw->lock);
	s = cw->stop;
	pthread_mutex_unlock(&cw->lock);
	return s;
}

/* Sleeps ms unless told to stop. */
static void
nap(struct gw_cardwatch *cw, unsigned ms)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&cw->lock);
	while (!cw->stop && pthread_cond_timedwait(&cw->cond, &cw->lock, &ts) != ETIMEDOUT)
		;
	pthread_mutex_unlock(&cw->lock);
}

static bool
service_gone(LONG rv)
{
	return rv == (LONG)SCARD_E_NO_SERVICE || rv == (LONG)SCARD_E_SERVICE_STOPPED ||
	       rv == (LONG)SCARD_E_INVALID_HANDLE || rv == (LONG)SCARD_F_COMM_ERROR;
}

static void
drop_context(struct gw_cardwatch *cw)
{
	pthread_mutex_lock(&cw->lock);
	if (cw->has_ctx) {
		SCardReleaseContext(cw->ctx);
		cw->has_ctx = false;
	}
	pthread_mutex_unlock(&cw->lock);
}

/* Lists the readers to watch into rds. Returns how many, or -1 when pcscd
 * is gone. */
static int
list_readers(struct gw_cardwatch *cw, struct rd *rds)
{
	DWORD len = 0;
	char *buf = NULL, *p;
	char slot[72];
	int n = 0, nmine = 0;
	LONG rv;

	rv = SCardListReaders(cw->ctx, NULL, NULL, &len);
	if (rv == (LONG)SCARD_E_NO_READERS_AVAILABLE)
		return 0;
	if (rv != SCARD_S_SUCCESS || len == 0 || len > READER_LIST_MAX)
		return service_gone(rv) ? -1 : 0;
	buf = calloc(1, (size_t)len + 2);   /* a multi-string ends in two NULs */
	if (!buf)
		return 0;
	rv = SCardListReaders(cw->ctx, NULL, buf, &len);
	if (rv != SCARD_S_SUCCESS) {
		free(buf);
		return service_gone(rv) ? -1 : 0;
	}
	gw_token_slot_name(cw->tok, slot, sizeof(slot));
	for (p = buf; *p && p < buf + len && n < (int)READERS_MAX; p += strlen(p) + 1) {
		if (cw->reader && strncmp(p, cw->reader, strlen(cw->reader)) != 0)
			continue;
		snprintf(rds[n].name, sizeof(rds[n].name), "%s", p);
		/* OpenSC names its slot after the reader, cut to 64 characters. */
		rds[n].exact = cw->reader || (slot[0] && strncmp(p, slot, strlen(slot)) == 0);
		rds[n].mine = rds[n].exact;
		nmine += rds[n].mine;
		n++;
	}
	/* A module that does not name its slots after readers: any of them may
	 * hold the token. */
	if (nmine == 0)
		for (int i = 0; i < n; i++)
			rds[i].mine = true;
	free(buf);
	return n;
}

static const char *
state_words(DWORD s)
{
	if (s & SCARD_STATE_MUTE)
		return "card does not answer";
	if (s & SCARD_STATE_PRESENT)
		return "card present";
	if (s & (SCARD_STATE_UNKNOWN | SCARD_STATE_UNAVAILABLE | SCARD_STATE_IGNORE))
		return "reader gone";
	return "empty";
}

static bool
card_in(DWORD s)
{
	return (s & SCARD_STATE_PRESENT) && !(s & (SCARD_STATE_MUTE | SCARD_STATE_UNKNOWN |
	                                           SCARD_STATE_UNAVAILABLE | SCARD_STATE_IGNORE));
}

/* Tries to bring the token back; returns the attempts still allowed. */
static unsigned
try_reconnect(struct gw_cardwatch *cw, unsigned left)
{
	CK_RV rv;

	if (left == 0 || gw_token_present(cw->tok))
		return 0;
	rv = gw_token_reconnect(cw->tok);
	if (rv == CKR_OK) {
		gw_log_info("card watcher: backend card is back; its seals are available again");
		return 0;
	}
	/* Refused (another card) or a PIN not to be tried: waiting won't help,
	 * the next card event will look again. */
	if (rv == CKR_TOKEN_NOT_RECOGNIZED || rv == CKR_PIN_INCORRECT || rv == CKR_PIN_LOCKED)
		return 0;
	if (left == 1)
		gw_log_warn("card watcher: a card is in the reader but the backend token did not come back");
	return left - 1;
}

/* Watches one reader list until it changes or pcscd goes. Returns -1 when
 * pcscd is gone, 0 to list the readers again. */
static int
watch(struct gw_cardwatch *cw, struct rd *rds, int n)
{
	SCARD_READERSTATE st[READERS_MAX + 1];
	unsigned pending = 0;
	bool first = true;
	LONG rv;
	int i;

	memset(st, 0, sizeof(st));
	for (i = 0; i < n; i++) {
		st[i].szReader = rds[i].name;
		st[i].dwCurrentState = SCARD_STATE_UNAWARE;
	}
	st[n].szReader = PNP_READER;
	st[n].dwCurrentState = SCARD_STATE_UNAWARE;

	while (!stopping(cw)) {
		rv = SCardGetStatusChange(cw->ctx, first ? 0 : (pending ? RETRY_MS : WAIT_MS),
		                          st, (DWORD)n + 1);
		if (rv == (LONG)SCARD_E_TIMEOUT) {
			pending = try_reconnect(cw, pending);
			continue;
		}
		if (rv == (LONG)SCARD_E_CANCELLED)
			continue;   /* the loop condition sees stop */
		if (service_gone(rv))
			return -1;
		if (rv != SCARD_S_SUCCESS)
			return 0;   /* a reader vanished mid-call (UNKNOWN_READER & co.) */

		for (i = 0; i < n; i++) {
			DWORD was = st[i].dwCurrentState, now = st[i].dwEventState;
			bool was_in = !first && card_in(was), now_in = card_in(now);
			/* pcsc-lite counts card events in the high 16 bits: a pull
			 * and re-insert between two calls still shows. */
			bool swapped = !first && was_in && now_in && (was >> 16) != (now >> 16);

			if (!first && !(now & SCARD_STATE_CHANGED))
				continue;
			st[i].dwCurrentState = now & ~(DWORD)SCARD_STATE_CHANGED;
			if (!rds[i].mine)
				continue;
			/* At the start only a reader known to be the token's counts:
			 * an empty reader next to it says nothing. */
			if ((was_in && !now_in) || swapped || (first && !now_in && rds[i].exact)) {
				char why[320];

				if (now & (SCARD_STATE_MUTE | SCARD_STATE_UNKNOWN | SCARD_STATE_UNAVAILABLE |
				           SCARD_STATE_IGNORE))
					snprintf(why, sizeof(why), "card removed from reader '%s' (%s)",
					         rds[i].name, state_words(now));
				else
					snprintf(why, sizeof(why), "card removed from reader '%s'", rds[i].name);
				gw_token_card_changed(cw->tok);
				if (gw_token_present(cw->tok))
					gw_token_lost(cw->tok, why);
			}
			if ((!was_in && now_in && !first) || swapped || (first && now_in)) {
				if (!first)
					gw_log_info("card watcher: card inserted in reader '%s'", rds[i].name);
				if (!first || !gw_token_present(cw->tok)) {
					gw_token_card_changed(cw->tok);
					pending = RECONNECT_TRIES;
				}
			}
		}
		if (!first && (st[n].dwEventState & SCARD_STATE_CHANGED))
			return 0;   /* readers came or went */
		st[n].dwCurrentState = st[n].dwEventState & ~(DWORD)SCARD_STATE_CHANGED;
		first = false;
		pending = try_reconnect(cw, pending);
	}
	return 0;
}

static void *
watch_main(void *arg)
{
	struct gw_cardwatch *cw = arg;
	struct rd *rds = calloc(READERS_MAX, sizeof(*rds));
	bool warned = false;
	SCARDCONTEXT ctx;
	LONG rv;
	int n;

	pthread_setname_np(pthread_self(), "sg-cardwatch");   /* ps -L, top -H, gdb */

	if (!rds) {
		gw_log_error("card watcher: out of memory; card removal is noticed only when signing fails");
		return NULL;
	}
	while (!stopping(cw)) {
		rv = SCardEstablishContext(SCARD_SCOPE_SYSTEM, NULL, NULL, &ctx);
		if (rv != SCARD_S_SUCCESS) {
			if (!warned)
				gw_log_warn("card watcher: pcscd not reachable (%s); waiting for it",
				            pcsc_stringify_error(rv));
			warned = true;
			nap(cw, 1000);
			continue;
		}
		pthread_mutex_lock(&cw->lock);
		cw->ctx = ctx;
		cw->has_ctx = !cw->stop;
		pthread_mutex_unlock(&cw->lock);
		if (!cw->has_ctx) {
			SCardReleaseContext(ctx);
			break;
		}
		if (warned)
			gw_log_info("card watcher: pcscd reachable again");
		warned = false;
		for (;;) {
			n = list_readers(cw, rds);
			if (n < 0 || stopping(cw) || watch(cw, rds, n) < 0)
				break;
		}
		drop_context(cw);
		if (stopping(cw))
			break;
		/* Without pcscd OpenSC cannot reach the card either. */
		if (gw_token_present(cw->tok))
			gw_token_lost(cw->tok, "pcscd stopped: no access to the card reader");
		gw_log_warn("card watcher: lost pcscd; waiting for it");
		warned = true;
		nap(cw, 1000);
	}
	free(rds);
	return NULL;
}

int
gw_cardwatch_start(struct gw_token *tok, const char *reader,
                   struct gw_cardwatch **out, char *err, size_t errlen)
{
	struct gw_cardwatch *cw;
	int rc;

	*out = NULL;
	cw = calloc(1, sizeof(*cw));
	if (!cw) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	cw->tok = tok;
	if (reader && reader[0] && !(cw->reader = strdup(reader))) {
		free(cw);
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	pthread_mutex_init(&cw->lock, NULL);
	pthread_cond_init(&cw->cond, NULL);
	rc = pthread_create(&cw->thread, NULL, watch_main, cw);
	if (rc != 0) {
		snprintf(err, errlen, "cannot start the card watcher: %s", strerror(rc));
		cw->started = false;
		gw_cardwatch_stop(&cw);
		return -1;
	}
	cw->started = true;
	gw_log_info("card watcher: following %s through pcsc-lite",
	            cw->reader ? cw->reader : "every reader");
	*out = cw;
	return 0;
}

void
gw_cardwatch_stop(struct gw_cardwatch **cwp)
{
	struct gw_cardwatch *cw = cwp ? *cwp : NULL;

	if (!cw)
		return;
	pthread_mutex_lock(&cw->lock);
	cw->stop = true;
	/* Wakes a SCardGetStatusChange in progress; one about to start is
	 * bounded by WAIT_MS. */
	if (cw->has_ctx)
		SCardCancel(cw->ctx);
	pthread_cond_broadcast(&cw->cond);
	pthread_mutex_unlock(&cw->lock);
	if (cw->started)
		pthread_join(cw->thread, NULL);
	pthread_mutex_destroy(&cw->lock);
	pthread_cond_destroy(&cw->cond);
	free(cw->reader);
	free(cw);
	*cwp = NULL;
}
