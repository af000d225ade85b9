/*
 * The audit log: the group-commit writer that chains each record (encoding
 * in auditfmt.c) and makes it durable, together with its store change,
 * before its caller goes on; the signed checkpoints made with the audit key
 * on the token; and the verifiers over the store. docs/audit.md is the
 * reference a third party writes a verifier from.
 */
#include "audit.h"
#include "protocol.h"
#include "log.h"
#include "token.h"
#include "utf8.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/evp.h>

#define BATCH_MAX       1024            /* records per transaction */
#define WRITERS         2               /* one commits while the other's batch is flushed */
#define FIELD_STR_MAX   (64u * 1024u)   /* any one string of an event */
#define FIELD_BIN_MAX   (4u * 1024u)    /* a digest (callers hash long data) */

/* One gw_audit_record call waiting for its commit. Lives on the caller's
 * stack: the caller is blocked until the writer is done with it, so the
 * event's strings stay valid without a deep copy. */
struct pending {
	struct gw_audit_event ev;
	gw_audit_apply_fn apply;
	void *arg;
	char *err;                  /* the caller's buffer (it is waiting) */
	size_t errlen;
	int64_t ts_ns;
	uint64_t seq;
	int status;
	bool refused;               /* apply said no: this record only */
	bool done;
	pthread_cond_t cond;
	struct pending *next;
};

/* One of the writer threads, with the rows of the batch it is writing
 * (handed to the observer once they are durable). */
struct writer {
	struct gw_audit *au;
	pthread_t thread;
	bool started;
	pthread_cond_t wake;        /* its own, so that the writer woken is chosen */
	bool idle;                  /* on au->idle (under au->lock) */
	bool releasing;             /* counted in au->releasing (under au->lock) */
	struct gw_audit_row rows[BATCH_MAX];
	uint8_t hashes[BATCH_MAX][GW_AUDIT_HASH_LEN];
};

struct gw_audit {
	struct gw_store *st;
	struct writer *writers[WRITERS];

	pthread_mutex_t lock;       /* guards the queue, head and stats */
	struct pending *qhead, *qtail;
	bool stopping;
	uint64_t seq;               /* chain head */
	uint8_t hash[GW_AUDIT_HASH_LEN];
	struct gw_audit_stats stats;

	/* Checkpoints (under lock unless said otherwise). */
	pthread_mutex_t cp_lock;    /* one checkpoint at a time; guards key, tok */
	struct gw_token *tok;
	struct gw_seal_key *key;    /* the audit key, NULL = no checkpoints */
	const char *alg;
	unsigned interval_s, every_n;
	uint64_t cp_seq;            /* head covered by the last checkpoint */
	uint8_t cp_hash[GW_AUDIT_HASH_LEN];
	int64_t cp_ns;              /* when it was made (realtime) */
	bool cp_wanted;             /* the writer saw every_n records pass */
	/* The checkpoint chain (under cp_lock): the last stored checkpoint's
	 * id and hash, which the next one signs, and the id it takes. */
	uint64_t cp_last_id, cp_next_id;
	uint8_t cp_last_own[GW_AUDIT_HASH_LEN];
	bool ticker_started, ticker_stop, tok_present;
	pthread_t ticker;
	pthread_cond_t tick;

	/* The observer (gw_audit_set_observer), under obs_lock: called
	 * outside lock, so that queueing records never waits for it. */
	pthread_mutex_t obs_lock;
	gw_audit_observer_fn obs_fn;
	void *obs_arg;

	/* The writers' two stages (writer_main): one writer at a time holds
	 * stage one (stage_busy, under lock), from taking a batch off the
	 * queue to its COMMIT, so batches commit one at a time and in queue
	 * order; then, without it, the batch is made durable while the other
	 * writer commits the next. An idle writer waits on its own
	 * condition, never for the stage: a wake-up is for a writer that can
	 * start at once. */
	bool stage_busy;
	/* The idle writers, the one idle for the shortest time last: it is
	 * the one woken (its stack and the cache lines it touched are still
	 * warm; a lone signer's records then all go to one thread). */
	struct writer *idle[WRITERS];
	size_t nidle;
	/* Writers waking their batch's callers: each looks at the queue
	 * again next, so a record that arrives then is left to it rather
	 * than another writer woken for it (a lone signer's records stay on
	 * one thread). */
	unsigned releasing;
	bool head_stale;            /* a commit failed: re-read the head first (under lock) */
	/* Stage one's own (its holder only): */
	uint64_t wseq;              /* the head as committed (durable or not yet) */
	uint8_t whash[GW_AUDIT_HASH_LEN];
	/* Batches are released in the order they committed (under lock):
	 * each takes pub_next at its commit and is released at pub_turn. */
	uint64_t pub_next, pub_turn;
	pthread_cond_t pub_cond;
};


static int64_t
realtime_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* ---- the writer ---- */

static void
row_from_event(struct gw_audit_row *r, const struct pending *p)
{
	const struct gw_audit_event *ev = &p->ev;

	memset(r, 0, sizeof(*r));
	r->ts_ns = p->ts_ns;
	r->action = ev->action;
	r->outcome = ev->outcome;
	r->reason = ev->reason;
	r->actor = ev->actor;
	r->uid = ev->uid;
	r->pid = ev->pid;
	r->exe = ev->exe;
	r->host = ev->host;
	r->seal = ev->seal;
	r->application = ev->application_from ? *ev->application_from : ev->application;
	r->doc_digest = ev->doc_digest_len ? ev->doc_digest : NULL;
	r->doc_digest_len = ev->doc_digest ? ev->doc_digest_len : 0;
	r->signed_digest = ev->signed_digest_len ? ev->signed_digest : NULL;
	r->signed_digest_len = ev->signed_digest ? ev->signed_digest_len : 0;
	r->mechanism = ev->mechanism;
	r->detail = ev->detail_from ? *ev->detail_from : ev->detail;
}

/* After a failed commit the head in memory is what we believe; the file
 * is what is. They differ if a COMMIT reported failure after its WAL
 * frames reached the disk: re-read rather than fork the chain. */
static int
resync_head(struct gw_audit *au)
{
	uint64_t seq;
	uint8_t hash[GW_AUDIT_HASH_LEN];
	char err[256];

	if (gw_store_audit_head(au->st, &seq, hash, err, sizeof(err)) < 0) {
		gw_log_error("audit: cannot re-read the chain head: %s", err);
		return -1;
	}
	if (seq != au->wseq)
		gw_log_warn("audit: chain head moved from seq %llu to %llu after a failed commit",
		            (unsigned long long)au->wseq, (unsigned long long)seq);
	au->wseq = seq;
	memcpy(au->whash, hash, sizeof(hash));
	pthread_mutex_lock(&au->lock);
	au->head_stale = false;
	pthread_mutex_unlock(&au->lock);
	return 0;
}

/* Whether p's apply runs under a savepoint of its own (audit.h,
 * apply_whole). */
static bool
apply_savepoint(const struct gw_audit *au, const struct pending *p)
{
	return p->apply != NULL && !(p->ev.apply_whole && gw_store_tx_errors_end(au->st));
}

/* Runs p's apply under its own savepoint (or none: apply_savepoint). 0:
 * go on with the record; 1: refused (savepoint undone, p->refused set);
 * -1: the transaction is gone, the batch fails. */
static int
run_apply(struct gw_audit *au, struct pending *p, char *err, size_t errlen)
{
	char e[256] = "";
	const bool sp = apply_savepoint(au, p);

	if (sp && gw_store_tx_begin(au->st, err, errlen))
		return -1;
	if (p->apply(au->st, p->arg, e, sizeof(e)) == 0)
		return 0;   /* the savepoint is released after the row is in */
	if (sp)
		gw_store_tx_rollback(au->st);
	/* (without a savepoint: a refusal changed nothing; a failed
	 * statement ended the transaction, and that fails the batch) */
	if (!gw_store_tx_alive(au->st)) {
		/* A store error inside apply (SQLITE_FULL…) that made SQLite
		 * roll back the whole transaction. */
		sg_seterr(err, errlen, "the store dropped the transaction in a change: %s",
		       e[0] ? e : "unknown error");
		return -1;
	}
	sg_seterr(p->err, p->errlen, "%s", e[0] ? e : "refused");
	p->refused = true;
	return 1;
}

/* Under au->lock: wakes the writer idle for the shortest time. */
static void
wake_writer(struct gw_audit *au)
{
	if (au->nidle > 0)
		pthread_cond_signal(&au->idle[au->nidle - 1]->wake);
}

static void
idle_remove(struct gw_audit *au, struct writer *w)
{
	for (size_t i = 0; i < au->nidle; i++)
		if (au->idle[i] == w) {
			memmove(&au->idle[i], &au->idle[i + 1], (au->nidle - i - 1) * sizeof(au->idle[0]));
			au->nidle--;
			break;
		}
	w->idle = false;
}

/* Stage one (stage_busy held): takes what is queued (up to BATCH_MAX)
 * into batch, applies, chains and commits it in one transaction. 0: the
 * batch is committed (records refused by their apply have ->refused set)
 * and the store's batch still open (stage two makes it durable and closes
 * it); -1: nothing of it was committed. *n: the records taken, *k: those
 * written, *ticket: its place in the release order. */
static int
write_batch(struct gw_audit *au, struct writer *w, struct pending **batch, size_t *n, size_t *k_out,
            uint64_t *ticket)
{
	const uint8_t *prev;
	uint64_t head;
	size_t i, k = 0;
	char err[512] = "";
	bool stale;

	pthread_mutex_lock(&au->lock);
	stale = au->head_stale;
	pthread_mutex_unlock(&au->lock);
	stale = stale && resync_head(au) != 0;

	/* The store's lock from here to gw_store_batch_end: the batch's
	 * changes are exactly what the redo log gets. Taken before the
	 * queue, so that what arrived while the other writer's batch held
	 * the store joins this one. */
	if (!stale)
		gw_store_batch_begin(au->st);
	pthread_mutex_lock(&au->lock);
	for (*n = 0; au->qhead && *n < BATCH_MAX; (*n)++) {
		batch[*n] = au->qhead;
		au->qhead = au->qhead->next;
	}
	if (!au->qhead)
		au->qtail = NULL;
	*ticket = au->pub_next++;
	pthread_mutex_unlock(&au->lock);
	*k_out = 0;
	if (stale)
		return -1;
	if (gw_store_tx_begin(au->st, err, sizeof(err)) != 0) {
		gw_log_error("audit: cannot begin a transaction: %s", err);
		gw_store_batch_end(au->st);
		return -1;
	}
	head = au->wseq;
	prev = au->whash;
	for (i = 0; i < *n; i++) {
		struct pending *p = batch[i];
		struct gw_audit_row *r = &w->rows[k];

		if (p->apply) {
			r = NULL;
			switch (run_apply(au, p, err, sizeof(err))) {
			case 1: continue;
			case -1: goto fail;
			}
			r = &w->rows[k];
		}
		row_from_event(r, p);
		/* Seqs go to the records actually written: a refused one
		 * leaves no gap. */
		r->seq = head + 1 + k;
		r->prev_hash = prev;
		r->prev_hash_len = GW_AUDIT_HASH_LEN;
		if (gw_audit_row_hash(prev, r, w->hashes[k]) != 0) {
			snprintf(err, sizeof(err), "hashing record seq %llu failed", (unsigned long long)r->seq);
			goto fail_in_apply;
		}
		r->hash = w->hashes[k];
		r->hash_len = GW_AUDIT_HASH_LEN;
		if (gw_store_audit_insert(au->st, r, err, sizeof(err)) != 0)
			goto fail_in_apply;
		if (apply_savepoint(au, p) && gw_store_tx_commit(au->st, err, sizeof(err)) != 0)
			goto fail;   /* (the savepoint level is gone either way) */
		p->seq = r->seq;
		prev = w->hashes[k];
		k++;
	}
	gw_store_batch_images(au->st);
	if (gw_store_tx_commit(au->st, err, sizeof(err)) != 0) {
		gw_log_error("audit: committing %zu record(s) failed, none released: %s", k, err);
		goto failed;
	}
	/* The next batch chains on this one, durable or not yet. */
	if (k > 0) {
		au->wseq = head + k;
		memcpy(au->whash, w->hashes[k - 1], GW_AUDIT_HASH_LEN);
	}
	*k_out = k;
	return 0;

fail_in_apply:
	if (apply_savepoint(au, batch[i]))
		gw_store_tx_rollback(au->st);   /* the record's savepoint */
fail:
	gw_log_error("audit: writing a batch of %zu record(s) failed, none released: %s", *n, err);
	gw_store_tx_rollback(au->st);       /* the batch */
failed:
	gw_store_batch_end(au->st);
	pthread_mutex_lock(&au->lock);
	au->head_stale = true;
	pthread_mutex_unlock(&au->lock);
	return -1;
}

/* Stage two (stage one free for the other writer): batch's k records (committed, seqs from
 * w->rows[0]) made durable; the store's batch closed. 0 or -1 (committed
 * but maybe not on disk: nothing is released). */
static int
make_durable(struct gw_audit *au, struct writer *w, size_t k)
{
	char err[512] = "";
	int rv = 0;

	if (k > 0 && gw_store_batch_durable(au->st, w->rows[0].seq, w->rows[k - 1].seq, err,
	                                    sizeof(err)) != 0) {
		gw_log_error("audit: %zu record(s) could not be made durable, none released: %s",
		             k, err);
		rv = -1;
	}
	gw_store_batch_end(au->st);
	if (rv != 0) {
		/* The chain goes on from what the store has. */
		pthread_mutex_lock(&au->lock);
		au->head_stale = true;
		pthread_mutex_unlock(&au->lock);
	}
	return rv;
}

/* In commit order (ticket): the head moves on, the observer sees the
 * records, and their callers are woken. */
static void
release(struct gw_audit *au, struct writer *w, struct pending **batch, size_t n, size_t k,
        uint64_t ticket, int status)
{
	size_t i;

	pthread_mutex_lock(&au->lock);
	while (au->pub_turn != ticket)
		pthread_cond_wait(&au->pub_cond, &au->lock);
	if (status == 0 && k > 0) {
		au->seq = w->rows[k - 1].seq;
		memcpy(au->hash, w->hashes[k - 1], GW_AUDIT_HASH_LEN);
		if (au->key && au->seq > au->cp_seq && au->seq - au->cp_seq >= au->every_n &&
		    !au->cp_wanted) {
			au->cp_wanted = true;
			pthread_cond_signal(&au->tick);
		}
	}
	pthread_mutex_unlock(&au->lock);
	if (status == 0 && k > 0) {
		pthread_mutex_lock(&au->obs_lock);
		if (au->obs_fn != NULL)
			au->obs_fn(au->obs_arg, w->rows, k);
		pthread_mutex_unlock(&au->obs_lock);
	}
	pthread_mutex_lock(&au->lock);
	/* From here this writer only wakes the callers and looks at the
	 * queue again (a woken caller may take its CPU meanwhile). */
	au->releasing++;
	w->releasing = true;
	if (status == 0) {
		size_t refused = 0;

		for (i = 0; i < n; i++)
			refused += batch[i]->refused;
		au->stats.commits++;
		au->stats.records += n - refused;
		au->stats.refused += refused;
		if (n - refused > au->stats.max_batch)
			au->stats.max_batch = n - refused;
	} else {
		au->stats.failed_batches++;
		au->stats.failed_records += n;
	}
	/* The waiters cannot run before we unlock, so touching batch[i]
	 * after its signal is safe. */
	for (i = 0; i < n; i++) {
		batch[i]->status = status == 0 && !batch[i]->refused ? 0 : -1;
		if (status != 0)
			sg_seterr(batch[i]->err, batch[i]->errlen,
			       "audit: the record could not be made durable (store error)");
		batch[i]->done = true;
		pthread_cond_signal(&batch[i]->cond);
	}
	au->pub_turn++;
	pthread_cond_broadcast(&au->pub_cond);
	pthread_mutex_unlock(&au->lock);
}

/* Group commit in two stages (docs/performance.md, "Group commit at low
 * concurrency"): a writer takes everything queued into one transaction
 * and commits it; then, while it waits for the batch to be durable (the
 * redo log's flush), the other writer takes what arrived meanwhile and
 * commits that. No timer: a lone record is written the moment it
 * arrives. A record is released only once its batch is durable. */
static void *
writer_main(void *arg)
{
	struct writer *w = arg;
	struct gw_audit *au = w->au;
	struct pending *batch[BATCH_MAX];
	uint64_t ticket;
	size_t n, k;
	int status;

	pthread_setname_np(pthread_self(), "sg-audit");   /* ps -L, top -H, gdb */

	for (;;) {
		pthread_mutex_lock(&au->lock);
		if (w->releasing) {
			au->releasing--;
			w->releasing = false;
		}
		while ((!au->qhead || au->stage_busy) && !(au->stopping && !au->qhead && !au->stage_busy)) {
			if (!w->idle) {
				w->idle = true;
				au->idle[au->nidle++] = w;
			}
			pthread_cond_wait(&w->wake, &au->lock);
		}
		if (w->idle)
			idle_remove(au, w);
		if (!au->qhead) {
			/* stopping, and everything queued is written: the
			 * other writer sees the same */
			wake_writer(au);
			pthread_mutex_unlock(&au->lock);
			break;
		}
		au->stage_busy = true;
		pthread_mutex_unlock(&au->lock);
		status = write_batch(au, w, batch, &n, &k, &ticket);
		pthread_mutex_lock(&au->lock);
		au->stage_busy = false;
		/* What arrived during stage one is for the other writer (or
		 * for this one, once its batch is out). */
		if (au->qhead || au->stopping)
			wake_writer(au);
		pthread_mutex_unlock(&au->lock);
		if (status == 0)
			status = make_durable(au, w, k);
		release(au, w, batch, n, k, ticket, status);
	}
	return NULL;
}

/* ---- public ---- */

void
gw_audit_set_observer(struct gw_audit *au, gw_audit_observer_fn fn, void *arg)
{
	pthread_mutex_lock(&au->obs_lock);
	au->obs_fn = fn;
	au->obs_arg = arg;
	pthread_mutex_unlock(&au->obs_lock);
}

int
gw_audit_open(struct gw_store *st, struct gw_audit **out, char *err, size_t errlen)
{
	struct gw_audit *au;
	int r;

	*out = NULL;
	au = calloc(1, sizeof(*au));
	if (!au) {
		sg_seterr(err, errlen, "out of memory");
		return -1;
	}
	au->st = st;
	pthread_mutex_init(&au->lock, NULL);
	pthread_mutex_init(&au->cp_lock, NULL);
	pthread_mutex_init(&au->obs_lock, NULL);
	pthread_cond_init(&au->tick, NULL);
	pthread_cond_init(&au->pub_cond, NULL);
	/* The head is the last record by seq: one indexed lookup. */
	r = gw_store_audit_head(st, &au->seq, au->hash, err, errlen);
	if (r < 0)
		goto fail;
	au->wseq = au->seq;
	memcpy(au->whash, au->hash, sizeof(au->whash));
	for (int i = 0; i < WRITERS; i++) {
		struct writer *w = calloc(1, sizeof(*w));

		if (w == NULL) {
			sg_seterr(err, errlen, "out of memory");
			goto fail;
		}
		w->au = au;
		pthread_cond_init(&w->wake, NULL);
		au->writers[i] = w;
		if (pthread_create(&w->thread, NULL, writer_main, w) != 0) {
			sg_seterr(err, errlen, "cannot start the audit writer thread");
			goto fail;
		}
		w->started = true;
	}
	gw_log_info("audit log open, chain head at seq %llu", (unsigned long long)au->seq);
	*out = au;
	return 0;
fail:
	gw_audit_close(&au);
	return -1;
}

void
gw_audit_close(struct gw_audit **aup)
{
	struct gw_audit *au = aup ? *aup : NULL;

	if (!au)
		return;
	pthread_mutex_lock(&au->lock);
	au->stopping = true;
	for (int i = 0; i < WRITERS; i++)
		if (au->writers[i])
			pthread_cond_signal(&au->writers[i]->wake);
	pthread_mutex_unlock(&au->lock);
	for (int i = 0; i < WRITERS; i++)
		if (au->writers[i] && au->writers[i]->started)
			pthread_join(au->writers[i]->thread, NULL);
	for (int i = 0; i < WRITERS; i++) {
		if (au->writers[i])
			pthread_cond_destroy(&au->writers[i]->wake);
		free(au->writers[i]);
	}
	if (au->ticker_started) {
		pthread_mutex_lock(&au->lock);
		au->ticker_stop = true;
		pthread_cond_signal(&au->tick);
		pthread_mutex_unlock(&au->lock);
		pthread_join(au->ticker, NULL);
	}
	/* Everything is written: sign the final head (gateway_stop). */
	if (au->key) {
		char err[256];
		uint64_t seq;

		if (gw_audit_checkpoint_now(au, &seq, err, sizeof(err)) != 0)
			gw_log_error("audit: no checkpoint at shutdown: %s", err);
	}
	gw_seal_key_free(&au->key);
	pthread_mutex_destroy(&au->lock);
	pthread_mutex_destroy(&au->cp_lock);
	pthread_mutex_destroy(&au->obs_lock);
	pthread_cond_destroy(&au->tick);
	pthread_cond_destroy(&au->pub_cond);
	free(au);
	*aup = NULL;
}

static bool
str_ok(const char *s)
{
	return !s || strnlen(s, FIELD_STR_MAX + 1) <= FIELD_STR_MAX;
}

int
gw_audit_record(struct gw_audit *au, const struct gw_audit_event *ev, uint64_t *seq)
{
	return gw_audit_record_with(au, ev, NULL, NULL, seq, NULL, 0);
}

/* The event's strings the ticket made UTF-8 (escape_texts), in the order
 * of text_fields. */
#define N_TEXT_FIELDS 8

struct gw_audit_ticket {
	struct pending p;
	char err[256];
	char *owned[N_TEXT_FIELDS];
};

static void
ticket_free(struct gw_audit_ticket *t)
{
	for (size_t i = 0; i < N_TEXT_FIELDS; i++)
		free(t->owned[i]);
	free(t);
}

/* Every string of a record is made UTF-8 before it is queued: PostgreSQL
 * refuses other bytes, and one refused string would fail the whole batch,
 * the records of others in it too. Such bytes come from outside (a
 * client's /proc/PID/exe, a token's label in a reason): each becomes \xHH,
 * on SQLite as on PostgreSQL, so the record is the same on both and its
 * hash is over what is stored. */
static int
escape_texts(struct gw_audit_ticket *t)
{
	struct gw_audit_event *ev = &t->p.ev;
	const char **f[N_TEXT_FIELDS] = { &ev->action, &ev->outcome, &ev->reason, &ev->actor,
	                                  &ev->exe, &ev->host, &ev->seal, &ev->detail };

	for (size_t i = 0; i < N_TEXT_FIELDS; i++) {
		size_t n;

		if (gw_utf8_valid(*f[i]))
			continue;
		n = gw_utf8_escape(NULL, 0, *f[i]);
		if ((t->owned[i] = malloc(n + 1)) == NULL)
			return -1;
		gw_utf8_escape(t->owned[i], n + 1, *f[i]);
		*f[i] = t->owned[i];
	}
	return 0;
}

int
gw_audit_submit_with(struct gw_audit *au, const struct gw_audit_event *ev,
                     gw_audit_apply_fn apply, void *arg, struct gw_audit_ticket **out,
                     char *err, size_t errlen)
{
	struct gw_audit_ticket *t;

	*out = NULL;
	if (err && errlen)
		err[0] = '\0';
	if (!au || !ev) {
		sg_seterr(err, errlen, "audit: no log");
		return -1;
	}
	/* Bounded so one record cannot stall the log; callers hash long data. */
	if (!str_ok(ev->action) || !str_ok(ev->outcome) || !str_ok(ev->reason) ||
	    !str_ok(ev->actor) || !str_ok(ev->exe) || !str_ok(ev->host) ||
	    !str_ok(ev->seal) || !str_ok(ev->detail) ||
	    (ev->doc_digest && ev->doc_digest_len > FIELD_BIN_MAX) ||
	    (ev->signed_digest && ev->signed_digest_len > FIELD_BIN_MAX)) {
		gw_log_error("audit: refusing an oversized record (action %.32s)",
		             ev->action ? ev->action : "-");
		sg_seterr(err, errlen, "audit: record too large");
		return -1;
	}
	t = calloc(1, sizeof(*t));
	if (t == NULL) {
		sg_seterr(err, errlen, "audit: out of memory");
		return -1;
	}
	t->p.ev = *ev;
	if (escape_texts(t) != 0) {
		ticket_free(t);
		sg_seterr(err, errlen, "audit: out of memory");
		return -1;
	}
	t->p.apply = apply;
	t->p.arg = arg;
	t->p.err = t->err;
	t->p.errlen = sizeof(t->err);
	pthread_cond_init(&t->p.cond, NULL);
	pthread_mutex_lock(&au->lock);
	if (au->stopping) {
		pthread_mutex_unlock(&au->lock);
		pthread_cond_destroy(&t->p.cond);
		ticket_free(t);
		sg_seterr(err, errlen, "audit: the log is closing");
		return -1;
	}
	/* Stamped under the queue lock, so time follows seq (barring clock
	 * steps). */
	t->p.ts_ns = realtime_ns();
	if (au->qtail)
		au->qtail->next = &t->p;
	else
		au->qhead = &t->p;
	au->qtail = &t->p;
	/* A writer in stage one takes it with its batch or signals when it
	 * is done, a releasing one takes it next; waking another now would
	 * only put it back to sleep or move the work to another thread. */
	if (!au->stage_busy && au->releasing == 0)
		wake_writer(au);
	pthread_mutex_unlock(&au->lock);
	*out = t;
	return 0;
}

int
gw_audit_wait(struct gw_audit *au, struct gw_audit_ticket **tp, uint64_t *seq,
              char *err, size_t errlen)
{
	struct gw_audit_ticket *t = *tp;
	int status;

	*tp = NULL;
	pthread_mutex_lock(&au->lock);
	while (!t->p.done)
		pthread_cond_wait(&t->p.cond, &au->lock);
	pthread_mutex_unlock(&au->lock);
	pthread_cond_destroy(&t->p.cond);
	status = t->p.status;
	if (status == 0 && seq)
		*seq = t->p.seq;
	if (status != 0)
		sg_seterr(err, errlen, "%s", t->err[0] ? t->err : "audit: the record was not written");
	ticket_free(t);
	return status;
}

int
gw_audit_record_with(struct gw_audit *au, const struct gw_audit_event *ev,
                     gw_audit_apply_fn apply, void *arg, uint64_t *seq,
                     char *err, size_t errlen)
{
	struct gw_audit_ticket *t;

	if (gw_audit_submit_with(au, ev, apply, arg, &t, err, errlen) < 0)
		return -1;
	return gw_audit_wait(au, &t, seq, err, errlen);
}

void
gw_audit_head(struct gw_audit *au, uint64_t *seq, uint8_t hash[GW_AUDIT_HASH_LEN])
{
	pthread_mutex_lock(&au->lock);
	*seq = au->seq;
	memcpy(hash, au->hash, GW_AUDIT_HASH_LEN);
	pthread_mutex_unlock(&au->lock);
}

void
gw_audit_get_stats(struct gw_audit *au, struct gw_audit_stats *out)
{
	pthread_mutex_lock(&au->lock);
	*out = au->stats;
	pthread_mutex_unlock(&au->lock);
}

/* ---- verification ---- */

struct verify {
	uint64_t expect;                      /* next seq */
	uint8_t running[GW_AUDIT_HASH_LEN];   /* hash of expect - 1 */
	uint64_t count;
	uint64_t anchor_seq;                  /* 0 = none */
	const uint8_t *anchor_hash;
	bool anchor_seen;
	char *err;
	size_t errlen;
};

static int
verify_row(void *arg, const struct gw_audit_row *r)
{
	struct verify *v = arg;
	uint8_t h[GW_AUDIT_HASH_LEN];
	unsigned long long seq = v->expect;

	if (r->seq != v->expect) {
		if ((int64_t)r->seq > (int64_t)v->expect)
			sg_seterr(v->err, v->errlen, "seq %llu: missing (record removed; the next present is seq %llu)",
			       seq, (unsigned long long)r->seq);
		else
			sg_seterr(v->err, v->errlen, "seq %lld: not a valid sequence number here (expected seq %llu)",
			       (long long)r->seq, seq);
		return 1;
	}
	if (r->bad_column) {
		sg_seterr(v->err, v->errlen, "seq %llu: column %s holds a type sealgate never writes (record changed)",
		       seq, r->bad_column);
		return 1;
	}
	if (r->prev_hash_len != GW_AUDIT_HASH_LEN || !r->prev_hash ||
	    CRYPTO_memcmp(r->prev_hash, v->running, GW_AUDIT_HASH_LEN) != 0) {
		sg_seterr(v->err, v->errlen, "seq %llu: prev_hash is not the hash of seq %llu "
		       "(record inserted, replaced or reordered)", seq, seq - 1);
		return 1;
	}
	if (gw_audit_row_hash(v->running, r, h) != 0) {
		sg_seterr(v->err, v->errlen, "seq %llu: cannot hash the record", seq);
		return 1;
	}
	if (r->hash_len != GW_AUDIT_HASH_LEN || !r->hash ||
	    CRYPTO_memcmp(r->hash, h, GW_AUDIT_HASH_LEN) != 0) {
		sg_seterr(v->err, v->errlen, "seq %llu: hash does not match the record's content (record changed)", seq);
		return 1;
	}
	if (v->anchor_seq == r->seq) {
		if (CRYPTO_memcmp(h, v->anchor_hash, GW_AUDIT_HASH_LEN) != 0) {
			sg_seterr(v->err, v->errlen, "seq %llu: differs from the remembered head (log rewritten)", seq);
			return 1;
		}
		v->anchor_seen = true;
	}
	memcpy(v->running, h, sizeof(h));
	v->count++;
	v->expect++;
	return 0;
}

static int
verify(struct gw_store *st, uint64_t anchor_seq, const uint8_t *anchor_hash,
       uint64_t *count, char *err, size_t errlen)
{
	struct verify v = { .expect = 1, .anchor_seq = anchor_seq, .anchor_hash = anchor_hash,
	                    .err = err, .errlen = errlen };
	int r;

	r = gw_store_audit_scan(st, verify_row, &v, err, errlen);
	if (count)
		*count = v.count;
	if (r != 0)
		return -1;
	if (anchor_seq && !v.anchor_seen) {
		sg_seterr(err, errlen, "seq %llu: missing (the log ends at seq %llu; records were cut off the end)",
		       (unsigned long long)v.expect, (unsigned long long)(v.expect - 1));
		return -1;
	}
	return 0;
}

int
gw_audit_verify_store(struct gw_store *st, uint64_t *count, char *err, size_t errlen)
{
	return verify(st, 0, NULL, count, err, errlen);
}

int
gw_audit_verify_store_anchor(struct gw_store *st, uint64_t anchor_seq,
                             const uint8_t anchor_hash[GW_AUDIT_HASH_LEN],
                             uint64_t *count, char *err, size_t errlen)
{
	if (anchor_seq == 0)
		return verify(st, 0, NULL, count, err, errlen);
	return verify(st, anchor_seq, anchor_hash, count, err, errlen);
}


/* ---- signed checkpoints ---- */

/* What the token signs for each key type: ECDSA and RSA sign SHA-256 of the
 * message (CKM_ECDSA over the hash; CKM_RSA_PKCS over its DigestInfo),
 * Ed25519 the message itself. ECDSA's raw r || s becomes DER, which is
 * what OpenSSL and every X.509 toolkit verify. */
static int
sign_checkpoint(struct gw_audit *au, const uint8_t *msg, size_t msglen,
                uint8_t *sig, size_t *siglen, char *err, size_t errlen)
{
	static const uint8_t di_sha256[] = { 0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48,
		0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20 };
	/* Ed25519 signs the whole message (104 bytes), the others a hash. */
	uint8_t tbs[GW_AUDIT_CHECKPOINT_MSG_LEN > sizeof(di_sha256) + 32 ?
	            GW_AUDIT_CHECKPOINT_MSG_LEN : sizeof(di_sha256) + 32], raw[GW_AUDIT_SIG_MAX];
	size_t rawlen = sizeof(raw), tbslen;
	CK_MECHANISM mech = { 0 };
	unsigned int n = 0;
	CK_RV rv;
	int rc = -1;

	switch (au->key->type) {
	case GW_KEY_EC:
		mech.mechanism = CKM_ECDSA;
		if (!EVP_Digest(msg, msglen, tbs, &n, EVP_sha256(), NULL))
			return -1;
		tbslen = n;
		break;
	case GW_KEY_RSA:
		mech.mechanism = CKM_RSA_PKCS;
		memcpy(tbs, di_sha256, sizeof(di_sha256));
		if (!EVP_Digest(msg, msglen, tbs + sizeof(di_sha256), &n, EVP_sha256(), NULL))
			return -1;
		tbslen = sizeof(di_sha256) + n;
		break;
	case GW_KEY_ED25519:
		mech.mechanism = CKM_EDDSA;
		if (msglen > sizeof(tbs))
			return -1;
		memcpy(tbs, msg, msglen);
		tbslen = msglen;
		break;
	default:
		sg_seterr(err, errlen, "unsupported audit key type");
		return -1;
	}
	rv = gw_token_sign(au->tok, au->key, &mech, tbs, tbslen, raw, &rawlen);
	if (rv != CKR_OK) {
		sg_seterr(err, errlen, "the token refused to sign the checkpoint (CKR 0x%lx)", rv);
		return -1;
	}
	if (au->key->type == GW_KEY_EC) {
		ECDSA_SIG *es = ECDSA_SIG_new();
		BIGNUM *r = NULL, *s = NULL;
		unsigned char *p = sig;
		int len;

		if (es && rawlen % 2 == 0 && rawlen <= 2 * 66 &&
		    (r = BN_bin2bn(raw, (int)rawlen / 2, NULL)) &&
		    (s = BN_bin2bn(raw + rawlen / 2, (int)rawlen / 2, NULL)) &&
		    ECDSA_SIG_set0(es, r, s)) {
			r = s = NULL;   /* owned by es */
			len = i2d_ECDSA_SIG(es, NULL);
			if (len > 0 && (size_t)len <= *siglen && i2d_ECDSA_SIG(es, &p) == len) {
				*siglen = (size_t)len;
				rc = 0;
			}
		}
		BN_free(r);
		BN_free(s);
		ECDSA_SIG_free(es);
		if (rc != 0)
			sg_seterr(err, errlen, "cannot encode the ECDSA signature");
	} else if (rawlen <= *siglen) {
		memcpy(sig, raw, rawlen);
		*siglen = rawlen;
		rc = 0;
	}
	OPENSSL_cleanse(tbs, sizeof(tbs));
	return rc;
}

int
gw_audit_sign_receipt(struct gw_audit *au, const uint8_t digest[32], uint8_t *sig, size_t *siglen,
                      char *err, size_t errlen)
{
	uint8_t msg[8 + 32];
	int rc = -1;

	memcpy(msg, "SGRCPT01", 8);
	memcpy(msg + 8, digest, 32);
	pthread_mutex_lock(&au->cp_lock);
	if (au->key == NULL || au->tok == NULL)
		sg_seterr(err, errlen, "no audit key: receipts need audit_key (docs/audit.md)");
	else
		rc = sign_checkpoint(au, msg, sizeof(msg), sig, siglen, err, errlen);
	pthread_mutex_unlock(&au->cp_lock);
	return rc;
}

int
gw_audit_checkpoint_now(struct gw_audit *au, uint64_t *seq_out, char *err, size_t errlen)
{
	struct gw_audit_checkpoint cp = { 0 };
	uint8_t msg[GW_AUDIT_CHECKPOINT_MSG_LEN], sig[GW_AUDIT_SIG_MAX];
	size_t siglen = sizeof(sig), msglen;
	int rv = -1;

	pthread_mutex_lock(&au->cp_lock);
	if (!au->key) {
		sg_seterr(err, errlen, "no audit key configured (audit_key): checkpoints are off");
		goto out;
	}
	gw_audit_head(au, &cp.seq, cp.hash);
	if (seq_out)
		*seq_out = cp.seq;
	pthread_mutex_lock(&au->lock);
	if (cp.seq == au->cp_seq && au->cp_ns != 0 &&
	    memcmp(cp.hash, au->cp_hash, GW_AUDIT_HASH_LEN) == 0) {
		pthread_mutex_unlock(&au->lock);
		rv = 0;   /* already covered */
		goto out;
	}
	pthread_mutex_unlock(&au->lock);
	cp.ts_ns = realtime_ns();
	cp.alg = au->alg;
	cp.cert = au->key->cert.p;
	cp.cert_len = au->key->cert.len;
	/* Chained to the last one stored: a checkpoint removed later leaves a
	 * gap in the ids and a link that names it. */
	cp.chained = true;
	cp.id = au->cp_next_id;
	cp.prev_id = au->cp_last_id;
	memcpy(cp.prev_hash, au->cp_last_own, GW_AUDIT_HASH_LEN);
	msglen = gw_audit_checkpoint_message(&cp, msg);
	if (sign_checkpoint(au, msg, msglen, sig, &siglen, err, errlen) != 0)
		goto out;
	cp.sig = sig;
	cp.sig_len = siglen;
	if (gw_store_checkpoint_add(au->st, &cp, err, errlen) != 0)
		goto out;
	au->cp_last_id = cp.id;
	au->cp_next_id = cp.id + 1;
	if (gw_audit_checkpoint_hash(&cp, au->cp_last_own) != 0)
		gw_log_error("audit: cannot hash checkpoint %llu; the next one will not follow it",
		             (unsigned long long)cp.id);
	pthread_mutex_lock(&au->lock);
	au->cp_seq = cp.seq;
	memcpy(au->cp_hash, cp.hash, GW_AUDIT_HASH_LEN);
	au->cp_ns = cp.ts_ns;
	pthread_mutex_unlock(&au->lock);
	gw_log_debug("audit: checkpoint %llu signed at seq %llu", (unsigned long long)cp.id,
	             (unsigned long long)cp.seq);
	rv = 0;
out:
	pthread_mutex_unlock(&au->cp_lock);
	return rv;
}

static void
token_event(struct gw_audit *au, bool present)
{
	struct gw_audit_event ev = {
		.action = present ? "token_present" : "token_absent",
		.outcome = "ok", .reason = gw_token_describe(au->tok),
		.uid = -1, .pid = -1, .exe = "sealgated",
	};
	uint64_t seq;

	if (gw_audit_record(au, &ev, &seq) != 0)
		gw_log_error("audit record for %s could not be written", ev.action);
}

/* Once a second: a checkpoint when one is due, and the token's presence. */
static void *
ticker_main(void *arg)
{
	struct gw_audit *au = arg;
	struct timespec until;
	bool want, present, owed = false;
	char err[256];
	uint64_t seq;

	pthread_setname_np(pthread_self(), "sg-ticker");   /* ps -L, top -H, gdb */

	pthread_mutex_lock(&au->lock);
	while (!au->ticker_stop) {
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += 1;
		if (!au->cp_wanted)
			pthread_cond_timedwait(&au->tick, &au->lock, &until);
		if (au->ticker_stop)
			break;
		want = au->cp_wanted ||
		       ((au->seq != au->cp_seq || memcmp(au->hash, au->cp_hash, GW_AUDIT_HASH_LEN) != 0) &&
		        realtime_ns() - au->cp_ns >= (int64_t)au->interval_s * 1000000000LL);
		au->cp_wanted = false;
		pthread_mutex_unlock(&au->lock);

		present = gw_token_present(au->tok);
		if ((want || owed) && !present) {
			/* Signing needs the token: owed until it is back, said once. */
			if (!owed)
				gw_log_warn("audit: a signed checkpoint is due; it waits for the token");
			owed = true;
		} else if (want || owed) {
			owed = false;
			if (gw_audit_checkpoint_now(au, &seq, err, sizeof(err)) != 0)
				gw_log_error("audit: checkpoint failed (will retry): %s", err);
		}
		if (present != au->tok_present) {
			au->tok_present = present;
			token_event(au, present);
		}
		pthread_mutex_lock(&au->lock);
	}
	pthread_mutex_unlock(&au->lock);
	return NULL;
}

struct last_cp { uint64_t seq; int64_t ts_ns; uint8_t hash[GW_AUDIT_HASH_LEN]; bool any; };

static int
last_cp_fn(void *ctx, const struct gw_audit_checkpoint *cp)
{
	struct last_cp *l = ctx;

	l->seq = cp->seq;
	l->ts_ns = cp->ts_ns;
	memcpy(l->hash, cp->hash, GW_AUDIT_HASH_LEN);
	l->any = true;
	return 0;
}

int
gw_audit_checkpoints_start(struct gw_audit *au, struct gw_token *tok, const char *key_uri,
                           unsigned interval_s, unsigned every_n, char *err, size_t errlen)
{
	struct gw_seal_key *key = NULL;
	struct last_cp last = { 0 };
	struct gw_audit_checkpoint newest = { 0 };
	uint8_t own[GW_AUDIT_HASH_LEN] = { 0 };
	uint64_t next_id = 1;
	int found = 0;
	char e[256];

	if (!au || !tok || !key_uri) {
		sg_seterr(err, errlen, "no token or audit key");
		return -1;
	}
	if (au->key) {
		sg_seterr(err, errlen, "checkpoints already started");
		return -1;
	}
	if (gw_token_find_key(tok, key_uri, &key, e, sizeof(e)) != 0) {
		sg_seterr(err, errlen, "audit key %s: %s", key_uri, e);
		return -1;
	}
	if (gw_store_checkpoint_scan(au->st, 0, 0, last_cp_fn, &last, err, errlen) != 0 ||
	    (found = gw_store_checkpoint_last(au->st, &newest, &next_id, err, errlen)) < 0) {
		gw_seal_key_free(&key);
		return -1;
	}
	if (found && gw_audit_checkpoint_hash(&newest, own) != 0) {
		gw_store_checkpoint_clear(&newest);
		gw_seal_key_free(&key);
		sg_seterr(err, errlen, "cannot hash the last audit checkpoint");
		return -1;
	}
	if (next_id != newest.id + 1)
		gw_log_error("audit: signed checkpoint(s) id %llu to %llu are missing from the store "
		             "(removed?); the next one is signed over the gap (sealctl audit verify names it)",
		             (unsigned long long)newest.id + 1, (unsigned long long)next_id - 1);
	pthread_mutex_lock(&au->cp_lock);
	au->cp_last_id = found ? newest.id : 0;
	au->cp_next_id = next_id;
	memcpy(au->cp_last_own, own, GW_AUDIT_HASH_LEN);
	gw_store_checkpoint_clear(&newest);
	au->tok = tok;
	au->alg = key->type == GW_KEY_EC ? "ecdsa-sha256" :
	          key->type == GW_KEY_RSA ? "rsa-pkcs1-sha256" : "ed25519";
	pthread_mutex_lock(&au->lock);
	au->key = key;   /* under both locks: the writer reads it under lock */
	au->interval_s = interval_s ? interval_s : GW_AUDIT_CHECKPOINT_INTERVAL;
	au->every_n = every_n ? every_n : GW_AUDIT_CHECKPOINT_EVERY;
	au->cp_seq = last.seq;
	memcpy(au->cp_hash, last.hash, GW_AUDIT_HASH_LEN);
	au->cp_ns = last.any ? last.ts_ns : 0;
	au->tok_present = gw_token_present(tok);
	if (last.any && last.seq > au->seq)
		gw_log_error("audit: the log ends at seq %llu but a signed checkpoint covers seq %llu: "
		             "records were cut off the end (sealctl audit verify shows it)",
		             (unsigned long long)au->seq, (unsigned long long)last.seq);
	pthread_mutex_unlock(&au->lock);
	pthread_mutex_unlock(&au->cp_lock);
	if (pthread_create(&au->ticker, NULL, ticker_main, au) != 0) {
		sg_seterr(err, errlen, "cannot start the audit checkpoint thread");
		return -1;
	}
	au->ticker_started = true;
	gw_log_info("audit checkpoints: key %s (%s), every %u s or %u records",
	            key_uri, au->alg, au->interval_s, au->every_n);
	return 0;
}

const uint8_t *
gw_audit_cert(struct gw_audit *au, size_t *len)
{
	const uint8_t *p = NULL;

	*len = 0;
	pthread_mutex_lock(&au->cp_lock);
	if (au->key) {
		p = au->key->cert.p;
		*len = au->key->cert.len;
	}
	pthread_mutex_unlock(&au->cp_lock);
	return p;   /* lives as long as au */
}

static bool
bytes_eq(const struct gw_bytes *a, const struct gw_bytes *b)
{
	return a->len > 0 && a->len == b->len && memcmp(a->p, b->p, a->len) == 0;
}

int
gw_audit_key_check(struct gw_token *tok, const char *audit_key_uri,
                   const struct gw_seal_key *k, char *err, size_t errlen)
{
	struct gw_seal_key *ak = NULL;
	char e[256];
	bool same;

	if (!tok || !audit_key_uri || !k)
		return 0;
	if (gw_token_find_key(tok, audit_key_uri, &ak, e, sizeof(e)) != 0)
		return 0;   /* no audit key to confuse it with (start reports that) */
	/* Same key pair whatever URI found it: same public key, or the same
	 * object on the token. */
	same = ak->type == k->type &&
	       ((ak->priv != CK_INVALID_HANDLE && ak->priv == k->priv) ||
	        bytes_eq(&ak->ec_point, &k->ec_point) ||
	        bytes_eq(&ak->modulus, &k->modulus));
	gw_seal_key_free(&ak);
	if (same) {
		sg_seterr(err, errlen, "key %s is the audit key (%s): the audit key signs only audit "
		       "checkpoints and can never be a seal", k->uri ? k->uri : "?", audit_key_uri);
		return -1;
	}
	return 0;
}

/* ---- full verification over the store ---- */

static int
full_row(void *ctx, const struct gw_audit_row *r)
{
	char where[48];

	snprintf(where, sizeof(where), "row seq %llu", (unsigned long long)r->seq);
	gw_audit_verifier_add_record(ctx, r, where);
	return 0;
}

static int
full_cp(void *ctx, const struct gw_audit_checkpoint *cp)
{
	char where[64];

	snprintf(where, sizeof(where), "stored checkpoint of seq %llu", (unsigned long long)cp->seq);
	gw_audit_verifier_add_checkpoint(ctx, cp, where);
	return 0;
}

int
gw_audit_verify_full(struct gw_store *st, const uint8_t *pinned, size_t pinned_len,
                     struct gw_audit_verifier **out, struct gw_audit_verdict *verdict,
                     char *err, size_t errlen)
{
	struct gw_audit_verifier *v = gw_audit_verifier_new();

	*out = NULL;
	if (!v || (pinned && gw_audit_verifier_pin_cert(v, pinned, pinned_len) != 0)) {
		gw_audit_verifier_free(&v);
		sg_seterr(err, errlen, "out of memory");
		return -1;
	}
	if (gw_store_checkpoint_scan(st, 0, 0, full_cp, v, err, errlen) != 0 ||
	    gw_store_audit_scan(st, full_row, v, err, errlen) != 0) {
		gw_audit_verifier_free(&v);
		return -1;
	}
	*out = v;
	return gw_audit_verifier_finish(v, verdict);
}
