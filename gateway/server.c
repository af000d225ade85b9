/*
 * The socket server: a listening Unix socket, one thread per connection,
 * peers identified by SO_PEERCRED at accept and counted per uid. Reads
 * have deadlines (a frame, an idle connection), so no client holds a
 * thread or a slot for long without asking for something. Signals arrive
 * through a signalfd polled with the listening socket; reloads and the
 * expiry sweep run on their own thread so nothing slow stops accepts.
 */
#include "server.h"

#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <netdb.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "audit.h"
#include "auth.h"
#include "auth_ops.h"
#include "changes.h"
#include "notify/notify.h"
#include "device.h"
#include "dispatch.h"
#include "policy_ops.h"
#include "quota.h"
#include "refusals.h"
#include "signpath.h"
#include "store.h"
#include "tls.h"
#include "workflow_ops.h"
#include "log.h"
#include "utf8.h"
#include "sg-config.h"

#define CONN_STACK (256 * 1024)
#define STOP_WAIT 10            /* seconds shutdown waits for connection threads */
#define SAY_INTERVAL 60         /* seconds between two refusal lines for one uid */
#define SWEEP_INTERVAL 30       /* seconds between two expiry sweeps */

const char *
gw_ctx_site(const struct gw_ctx *ctx)
{
	return ctx->cfg != NULL && ctx->cfg->site != NULL ? ctx->cfg->site : GW_SITE_DEFAULT;
}

/* The policy at policy_path (a file), or parsed from text. */
static int
snapshot_build(struct gw_ctx *ctx, const char *policy_path, const char *text, size_t len,
               struct gw_snapshot **out, char *err, size_t errlen)
{
	struct gw_snapshot *s;
	char kerr[256];
	int r;

	*out = NULL;
	s = calloc(1, sizeof(*s));
	if (s == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	s->refs = 1;
	r = text != NULL ?
	    gw_policy_parse(policy_path, (const uint8_t *)text, len, &s->policy, err, errlen) :
	    gw_policy_load(policy_path, &s->policy, err, errlen);
	if (r < 0) {
		free(s);
		return -1;
	}
	if (ctx->cfg != NULL && ctx->cfg->token_label != NULL &&
	    (s->token_label = strdup(ctx->cfg->token_label)) == NULL) {
		snprintf(err, errlen, "out of memory");
		gw_snapshot_put(&s);
		return -1;
	}
	s->keys = calloc(s->policy->n_seals ? s->policy->n_seals : 1, sizeof(*s->keys));
	if (s->keys == NULL) {
		snprintf(err, errlen, "out of memory");
		gw_snapshot_put(&s);
		return -1;
	}
	/* A gateway of a site the policy does not know would hold no seal
	 * and refuse every signature: refused at start and at a reload. */
	if (gw_policy_site(s->policy, gw_ctx_site(ctx)) == NULL) {
		snprintf(err, errlen, "%s: this gateway's site '%s' (site: in %s) is not one of the "
		         "policy's sites", policy_path, gw_ctx_site(ctx),
		         ctx->cfg && ctx->cfg->path ? ctx->cfg->path : "the configuration");
		gw_snapshot_put(&s);
		return -1;
	}
	for (size_t i = 0; ctx->token != NULL && i < s->policy->n_seals; i++) {
		const struct gw_seal *seal = &s->policy->seals[i];
		/* Another site's seal: its key is on that site's token. */
		if (strcmp(seal->site, gw_ctx_site(ctx)) != 0)
			continue;
		if (gw_token_find_key(ctx->token, seal->key_uri, &s->keys[i], kerr, sizeof(kerr)) < 0) {
			snprintf(err, errlen, "%s: seal \"%s\": key %s: %s", policy_path,
			         seal->id, seal->key_uri, kerr);
			gw_snapshot_put(&s);
			return -1;
		}
		/* The audit key signs checkpoints only: never a seal. */
		if (ctx->cfg != NULL &&
		    gw_audit_key_check(ctx->token, ctx->cfg->audit_key, s->keys[i], kerr, sizeof(kerr)) < 0) {
			snprintf(err, errlen, "%s: seal \"%s\": %s", policy_path, seal->id, kerr);
			gw_snapshot_put(&s);
			return -1;
		}
	}
	*out = s;
	return 0;
}

int
gw_snapshot_load(struct gw_ctx *ctx, const char *policy_path,
                 struct gw_snapshot **out, char *err, size_t errlen)
{
	return snapshot_build(ctx, policy_path, NULL, 0, out, err, errlen);
}

int
gw_snapshot_load_text(struct gw_ctx *ctx, const char *name, const char *text, size_t len,
                      struct gw_snapshot **out, char *err, size_t errlen)
{
	return snapshot_build(ctx, name, text ? text : "", len, out, err, errlen);
}

struct known_list {
	struct gw_store_known_key *k;   /* uri and blob owned: copies */
	size_t n, cap;
	bool failed;
};

static void
known_add(void *arg, const struct gw_seal_key *key)
{
	struct known_list *l = arg;
	size_t len = 0;
	uint8_t *b;
	char *u;

	if (l->failed || l->n == l->cap)
		return;
	b = gw_seal_key_encode(key, &len);
	u = strdup(key->uri);
	if (b == NULL || u == NULL) {
		free(b);
		free(u);
		l->failed = true;
		return;
	}
	l->k[l->n++] = (struct gw_store_known_key){ .uri = u, .blob = b, .len = len };
}

int
gw_ctx_keep_known_keys(struct gw_ctx *ctx)
{
	struct known_list l = { 0 };
	char err[256];
	int rv = -1;

	if (ctx->token == NULL || ctx->store == NULL || !gw_token_present(ctx->token))
		return 0;   /* nothing new was seen */
	/* (known_add runs under the token's lock: it copies what it needs) */
	l.cap = gw_token_known_keys(ctx->token, NULL, NULL) + 1;
	l.k = calloc(l.cap, sizeof(*l.k));
	if (l.k != NULL)
		gw_token_known_keys(ctx->token, known_add, &l);
	if (l.k == NULL || l.failed)
		gw_log_error("store: keeping the keys found on the token: out of memory");
	else if (gw_store_known_keys_set(ctx->store, l.k, l.n, err, sizeof(err)) < 0)
		gw_log_error("store: keeping the keys found on the token: %s", err);
	else
		rv = 0;
	for (size_t i = 0; i < l.n; i++) {
		free((void *)l.k[i].uri);
		free((void *)l.k[i].blob);
	}
	free(l.k);
	return rv;
}

void
gw_ctx_close(struct gw_ctx *ctx)
{
	gw_reflimit_ctx_close(ctx);   /* its last summaries need the audit writer */
	gw_audit_close(&ctx->audit);
	gw_auth_free(&ctx->auth);
	gw_quota_free(&ctx->quota);
	gw_signpath_fini(ctx);
	gw_snapshot_swap(ctx, NULL);
	gw_store_close(&ctx->store);
	gw_token_close(&ctx->token);
	gw_devices_close(&ctx->devices);
}

struct gw_snapshot *
gw_snapshot_get(struct gw_ctx *ctx)
{
	struct gw_snapshot *s;

	pthread_mutex_lock(&ctx->snap_lock);
	s = ctx->snap;
	if (s)
		__atomic_add_fetch(&s->refs, 1, __ATOMIC_ACQ_REL);
	pthread_mutex_unlock(&ctx->snap_lock);
	return s;
}

void
gw_snapshot_put(struct gw_snapshot **snap)
{
	struct gw_snapshot *s = snap ? *snap : NULL;

	if (s == NULL)
		return;
	*snap = NULL;
	if (__atomic_sub_fetch(&s->refs, 1, __ATOMIC_ACQ_REL) != 0)
		return;
	if (s->keys) {
		for (size_t i = 0; s->policy && i < s->policy->n_seals; i++)
			gw_seal_key_free(&s->keys[i]);
		free(s->keys);
	}
	gw_policy_unref(&s->policy);
	free(s->token_label);
	free(s);
}

void
gw_snapshot_swap(struct gw_ctx *ctx, struct gw_snapshot *snap)
{
	struct gw_snapshot *old;

	pthread_mutex_lock(&ctx->snap_lock);
	old = ctx->snap;
	ctx->snap = snap;
	pthread_mutex_unlock(&ctx->snap_lock);
	/* (pgsess: a role taken away ends its person's sessions) */
	if (old != NULL && snap != NULL)
		gw_auth_sessions_policy_swapped(ctx, old->policy, snap->policy);
	gw_snapshot_put(&old);
}

int
gw_peer_identify(int fd, struct gw_peer *peer)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);
	struct passwd pw, *res = NULL;
	char buf[1024], path[64];
	ssize_t n;

	memset(peer, 0, sizeof(*peer));
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
		return -errno;
	peer->uid = cred.uid;
	peer->gid = cred.gid;
	peer->pid = cred.pid;
	if (getpwuid_r(cred.uid, &pw, buf, sizeof(buf), &res) == 0 && res != NULL)
		snprintf(peer->login, sizeof(peer->login), "%s", pw.pw_name);
	else
		snprintf(peer->login, sizeof(peer->login), "#%u", (unsigned)cred.uid);
	/* For the record only: a pid can be reused, the uid is what counts.
	 * A path is bytes: one that is not UTF-8 is kept \xHH-escaped, so
	 * that it can go into the records and the JSON replies that name it. */
	snprintf(path, sizeof(path), "/proc/%d/exe", (int)cred.pid);
	n = readlink(path, buf, sizeof(buf) - 1);
	buf[n > 0 ? n : 0] = '\0';
	gw_utf8_escape(peer->exe, sizeof(peer->exe), buf);
	return 0;
}

/* ---- connections ---- */

/* The front's limits, from the configuration at start (docs/protocol.md). */
static struct {
	unsigned max_conns, per_uid, per_unknown_uid, per_device;
	int frame_ms, idle_ms;
} lim = { 1024, 64, 8, 8, 5000, 120000 };

/* A connection's bytes go through io: the socket itself, or TLS (tls.c)
 * on the same loop, so both fronts share the framing, cap and deadlines. */
struct conn {
	struct gw_ctx *ctx;
	int fd;
	struct sg_io io;
	struct gw_tls *tls;             /* a TLS connection: handshake on its thread */
	bool enroll;                    /* on the enrollment endpoint */
	char addr[64];                  /* TLS: the peer's IP address, numeric */
	struct gw_peer peer;
	struct conn *next, *prev;
};

static pthread_mutex_t conns_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t conns_cond = PTHREAD_COND_INITIALIZER;
static struct conn *conns;
static unsigned n_conns;
static bool trim_due;   /* the last connection closed: give memory back */

/* Refusals and cut connections are logged once per uid per SAY_INTERVAL,
 * with how many went unsaid: a client in a loop must not fill the log. */
static struct said {
	uid_t uid;
	time_t last;
	unsigned quiet;         /* not logged since last */
} said[64];
static pthread_mutex_t said_lock = PTHREAD_MUTEX_INITIALIZER;

/* True when a line about uid is due now; *quiet: those left unsaid since. */
static bool
say_due(uid_t uid, unsigned *quiet)
{
	struct said *e = NULL, *oldest = &said[0];
	time_t now = time(NULL);
	bool due;

	pthread_mutex_lock(&said_lock);
	for (size_t i = 0; i < sizeof(said) / sizeof(said[0]) && e == NULL; i++) {
		if (said[i].last != 0 && said[i].uid == uid)
			e = &said[i];
		else if (said[i].last < oldest->last)
			oldest = &said[i];
	}
	if (e == NULL) {
		e = oldest;
		*e = (struct said){ .uid = uid };
	}
	due = now - e->last >= SAY_INTERVAL;
	*quiet = e->quiet;
	if (due) {
		e->last = now;
		e->quiet = 0;
	} else {
		e->quiet++;
	}
	pthread_mutex_unlock(&said_lock);
	return due;
}

/* True when the policy knows login: some person lists it in os_logins or
 * an act_as entry names it (gw_policy_resolve_account's two ways in). */
static bool
login_known(struct gw_ctx *ctx, const char *login)
{
	struct gw_snapshot *snap = gw_snapshot_get(ctx);
	const struct gw_policy *p = snap ? snap->policy : NULL;
	bool known = false;

	for (size_t i = 0; p != NULL && i < p->n_people && !known; i++)
		for (size_t j = 0; j < p->people[i].n_os_logins && !known; j++)
			known = strcmp(p->people[i].os_logins[j], login) == 0;
	for (size_t i = 0; p != NULL && i < p->n_act_as && !known; i++)
		known = strcmp(p->act_as[i].os_login, login) == 0;
	gw_snapshot_put(&snap);
	return known;
}

static void
conn_unlink(struct conn *c)
{
	pthread_mutex_lock(&conns_lock);
	if (c->prev)
		c->prev->next = c->next;
	else
		conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	n_conns--;
	if (n_conns == 0)
		trim_due = true;
	pthread_cond_broadcast(&conns_cond);
	pthread_mutex_unlock(&conns_lock);
}

static void conn_unlink(struct conn *c);

/* A TLS connection's handshake and admission, on its own thread: the
 * device is known only once the handshake is done, so its own cap is
 * checked then. true to serve it; false: it is refused (said, closed). */
static bool
tls_admit(struct conn *c)
{
	struct gw_peer peer;
	char why[300];
	unsigned mine = 0, cap, quiet;
	json_t *rep;
	int rc;

	rc = gw_tls_accept(c->tls, c->fd, c->enroll, lim.frame_ms, &c->io, &peer, why,
	                   sizeof(why));
	if (rc < 0) {
		if (say_due(GW_TLS_HANDSHAKE_UID, &quiet))
			gw_log_warn("%s (%u more since the last such line)", why, quiet);
		if (rc == -2) {
			rep = sg_reply_error(CKR_DEVICE_ERROR, "device_refused", "sealgated: %s", why);
			if (rep)
				(void)sg_msg_write_io(&c->io, rep);
			json_decref(rep);
		}
		return false;
	}
	cap = c->enroll ? lim.per_unknown_uid : lim.per_device;
	/* The accept thread reads every connection's uid under the lock. */
	pthread_mutex_lock(&conns_lock);
	c->peer = peer;
	for (struct conn *o = conns; o; o = o->next)
		mine += o != c && o->peer.uid == c->peer.uid;
	pthread_mutex_unlock(&conns_lock);
	if (mine < cap)
		return true;
	if (say_due(c->peer.uid, &quiet))
		gw_log_warn("refusing a TLS connection of %s: it holds its limit of connections "
		            "(%u); %u more refused since the last such line", c->peer.login, cap, quiet);
	rep = sg_reply_error(CKR_DEVICE_ERROR, "busy", "sealgated: this device holds its limit "
	                     "of connections (%u)", cap);
	if (rep)
		(void)sg_msg_write_io(&c->io, rep);
	json_decref(rep);
	return false;
}

/* What a TLS peer may ask before dispatch: the enrollment endpoint serves
 * enrollment alone, and a device revoked or expired since the handshake
 * is out at its next request. NULL to dispatch; else the reply, after
 * which the connection closes. */
static json_t *
tls_gate(struct conn *c, const json_t *req, bool *close_after)
{
	const char *op = NULL;
	char why[256];

	*close_after = false;
	if (c->tls == NULL)
		return NULL;
	(void)sg_get_str(req, "op", false, &op, SG_NAME_MAX, why, sizeof(why));
	if (c->enroll) {
		if (op != NULL && strcmp(op, "device_enroll") == 0)
			return gw_device_enroll(c->ctx, &c->peer, req);
		if (op != NULL && strcmp(op, "device_fetch") == 0)
			return gw_device_fetch(c->ctx, &c->peer, req);
		*close_after = true;
		return sg_reply_error(CKR_DEVICE_ERROR, "enroll_only", "this is the enrollment "
		                      "endpoint: only device_enroll and device_fetch are served");
	}
	if (gw_tls_recheck(c->ctx, &c->peer, why, sizeof(why)) < 0) {
		*close_after = true;
		gw_log_info("closing a TLS connection of %s: %s", c->peer.login, why);
		return sg_reply_error(CKR_DEVICE_REMOVED, "device_refused", "sealgated: %s", why);
	}
	if (op != NULL && strcmp(op, SG_OP_HELLO) == 0)
		gw_tls_note_client(&c->peer, req);
	return NULL;
}

static void *
conn_main(void *arg)
{
	struct conn *c = arg;
	char err[256];
	unsigned quiet;

	pthread_setname_np(pthread_self(), "sg-conn");   /* ps -L, top -H, gdb */

	if (c->tls != NULL && !tls_admit(c)) {
		gw_tls_conn_free(&c->io);
		conn_unlink(c);
		close(c->fd);
		free(c);
		return NULL;
	}
	for (;;) {
		json_t *req = NULL, *rep;
		bool close_after = false;
		int rc = sg_msg_read_io(&c->io, lim.idle_ms, lim.frame_ms, &req, err, sizeof(err));

		if (rc == -EPIPE || rc == -ECONNRESET)
			break;
		if (rc == -ETIME) {
			/* Idle: the module reconnects when it next needs us. */
			gw_log_debug("client uid %u pid %d: %s: closing", (unsigned)c->peer.uid,
			             (int)c->peer.pid, err);
			break;
		}
		if (rc == -ETIMEDOUT) {
			if (say_due(c->peer.uid, &quiet))
				gw_log_warn("client uid %u (%s) pid %d: %s: closed (%u more since the "
				            "last such line for this uid)", (unsigned)c->peer.uid,
				            c->peer.login, (int)c->peer.pid, err, quiet);
			break;
		}
		if (rc < 0) {
			/* Malformed or oversized: answer if we can, then close,
			 * since the stream cannot be trusted any more. */
			gw_log_warn("client uid %u pid %d: %s", (unsigned)c->peer.uid,
			            (int)c->peer.pid, err);
			if (rc == -EPROTO || rc == -EMSGSIZE) {
				rep = sg_reply_error(CKR_ARGUMENTS_BAD, "bad_request", "%s", err);
				if (rep)
					(void)sg_msg_write_io(&c->io, rep);
				json_decref(rep);
			}
			break;
		}
		rep = tls_gate(c, req, &close_after);
		if (rep == NULL)
			rep = gw_dispatch(c->ctx, &c->peer, req);
		sg_msg_wipe_secrets(req);
		json_decref(req);
		rc = sg_msg_write_io(&c->io, rep);
		sg_msg_wipe_secrets(rep);
		json_decref(rep);
		if (rc < 0 || close_after)
			break;
	}
	gw_tls_conn_free(&c->io);
	conn_unlink(c);
	close(c->fd);
	free(c);
	return NULL;
}

/* Says no to a connection over a limit: one error frame (the module reads
 * it as the answer to its hello), then close. */
static void
conn_refuse(struct conn *c, const char *why, unsigned limit)
{
	json_t *rep;
	unsigned quiet;

	if (say_due(c->peer.uid, &quiet))
		gw_log_warn("refusing a connection from uid %u (%s) pid %d: %s (%u); %u more refused "
		            "since the last such line for this uid", (unsigned)c->peer.uid,
		            c->peer.login, (int)c->peer.pid, why, limit, quiet);
	rep = sg_reply_error(CKR_DEVICE_ERROR, "busy", "sealgated: %s (%u)", why, limit);
	if (rep)
		(void)sg_msg_write_io(&c->io, rep);
	json_decref(rep);
	close(c->fd);
	free(c);
}

/* tls: a TLS connection (enroll: on the enrollment endpoint), whose peer
 * is known after the handshake; until then it counts as a handshake. */
static void
conn_start(struct gw_ctx *ctx, int fd, struct gw_tls *tls, bool enroll)
{
	struct conn *c;
	pthread_attr_t attr;
	pthread_t th;
	unsigned mine = 0, cap = 0, from_addr = 0;
	struct timeval tv = { .tv_sec = lim.frame_ms / 1000 };
	const char *why = NULL;
	unsigned limit = 0;

	c = calloc(1, sizeof(*c));
	if (c == NULL || (tls == NULL && gw_peer_identify(fd, &c->peer) < 0)) {
		free(c);
		close(fd);
		return;
	}
	c->ctx = ctx;
	c->fd = fd;
	c->io.fd = fd;
	c->tls = tls;
	c->enroll = enroll;
	if (tls != NULL) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);

		c->peer.uid = GW_TLS_HANDSHAKE_UID;
		snprintf(c->peer.login, sizeof(c->peer.login), "handshake");
		cap = GW_TLS_HANDSHAKES_MAX;
		if (getpeername(fd, (struct sockaddr *)&ss, &sl) < 0 ||
		    getnameinfo((struct sockaddr *)&ss, sl, c->addr, sizeof(c->addr), NULL, 0,
		                NI_NUMERICHOST) != 0)
			snprintf(c->addr, sizeof(c->addr), "?");
	} else {
		/* A reply the client does not read cannot hold the thread either. */
		(void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	}
	/* Root and the gateway's own user could stop the gateway anyway: a
	 * cap on them protects nothing, so only the global one applies. */
	if (tls == NULL && c->peer.uid != 0 && c->peer.uid != geteuid())
		/* The web front carries many people's requests: a known uid. */
		cap = login_known(ctx, c->peer.login) ||
		      (ctx->cfg != NULL && ctx->cfg->web_front && c->peer.uid == ctx->cfg->web_front_uid) ?
		      lim.per_uid : lim.per_unknown_uid;
	pthread_mutex_lock(&conns_lock);
	if (cap > 0)
		for (struct conn *o = conns; o; o = o->next)
			mine += o->peer.uid == c->peer.uid;
	/* Before its handshake a peer is only an address: one address gets a
	 * small share of the handshakes in flight, so a slowloris from one
	 * machine cannot take them all. */
	if (tls != NULL)
		for (struct conn *o = conns; o; o = o->next)
			from_addr += o->peer.uid == GW_TLS_HANDSHAKE_UID && strcmp(o->addr, c->addr) == 0;
	if (n_conns >= lim.max_conns) {
		why = "the gateway's connection limit is reached";
		limit = lim.max_conns;
	} else if (tls != NULL && from_addr >= GW_TLS_HANDSHAKES_PER_ADDR) {
		why = "this address holds its limit of TLS handshakes in flight";
		limit = GW_TLS_HANDSHAKES_PER_ADDR;
	} else if (cap > 0 && mine >= cap) {
		why = tls != NULL ? "the limit of TLS handshakes in flight is reached" :
		      cap == lim.per_uid ? "this uid holds its limit of connections" :
		      "this uid, unknown to the policy, holds its limit of connections";
		limit = cap;
	}
	if (why == NULL) {
		c->next = conns;
		if (conns)
			conns->prev = c;
		conns = c;
		n_conns++;
	}
	pthread_mutex_unlock(&conns_lock);
	if (why != NULL && tls != NULL) {
		/* Nothing can be said before a handshake: just closed. */
		unsigned quiet;
		if (say_due(GW_TLS_HANDSHAKE_UID, &quiet))
			gw_log_warn("refusing a TLS connection from %s: %s (%u); %u more since the "
			            "last such line", c->addr, why, limit, quiet);
		close(fd);
		free(c);
		return;
	}
	if (why != NULL) {
		conn_refuse(c, why, limit);
		return;
	}

	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, CONN_STACK);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	if (pthread_create(&th, &attr, conn_main, c) != 0) {
		gw_log_error("cannot start a connection thread");
		conn_unlink(c);
		close(fd);
		free(c);
	}
	pthread_attr_destroy(&attr);
}

/* Wakes every connection thread and waits (bounded) for them to finish.
 * Returns how many still run. Only reading is shut: a request being
 * answered still gets its reply. */
static unsigned
conns_stop(void)
{
	struct timespec until;
	unsigned left;

	pthread_mutex_lock(&conns_lock);
	for (struct conn *c = conns; c; c = c->next)
		shutdown(c->fd, SHUT_RD);
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += STOP_WAIT;
	while (n_conns > 0)
		if (pthread_cond_timedwait(&conns_cond, &conns_lock, &until) == ETIMEDOUT)
			break;
	left = n_conns;
	pthread_mutex_unlock(&conns_lock);
	return left;
}

static int
listen_socket(const char *path, mode_t mode)
{
	struct sockaddr_un sun;
	struct stat st;
	int fd, probe;

	if (strlen(path) >= sizeof(sun.sun_path)) {
		gw_log_error("socket path too long: %s", path);
		return -1;
	}
	/* A socket file left by a dead gateway is removed; a live one is not. */
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			gw_log_error("%s exists and is not a socket", path);
			return -1;
		}
		probe = sg_connect_unix(path);
		if (probe >= 0) {
			close(probe);
			gw_log_error("another sealgated is listening on %s", path);
			return -1;
		}
		unlink(path);
	}
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	memcpy(sun.sun_path, path, strlen(path));
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0 ||
	    chmod(path, mode) < 0 || listen(fd, 512) < 0) {
		gw_log_error("cannot listen on %s: %s", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

/* Writes one of the gateway's own records. 0, or -1 (logged): what it
 * covers must then not happen. */
static int
record(struct gw_ctx *ctx, const char *action, const char *outcome, const char *reason,
       const char *detail)
{
	struct gw_audit_event ev = {
		.action = action, .outcome = outcome, .reason = reason,
		.uid = (int64_t)getuid(), .pid = (int64_t)getpid(), .host = ctx->host,
		.exe = "sealgated", .detail = detail,
	};
	uint64_t seq;

	if (ctx->audit && gw_audit_record(ctx->audit, &ev, &seq) < 0) {
		gw_log_error("audit record for %s could not be written", action);
		return -1;
	}
	return 0;
}

void
gw_snapshot_detail(const struct gw_snapshot *s, const char *more, char *buf, size_t len)
{
	char hex[2 * GW_HASH_LEN + 1];
	json_t *name = json_string(s->policy->path ? s->policy->path : "");
	char *qname = name ? json_dumps(name, JSON_ENCODE_ANY) : NULL;

	for (size_t i = 0; i < GW_HASH_LEN; i++)
		snprintf(hex + 2 * i, 3, "%02x", s->policy->hash[i]);
	/* version 0: the policy_path file, nothing published (policy.md). */
	snprintf(buf, len, "{\"policy\":%s,\"sha256\":\"%s\",\"version\":%lld,\"seals\":%zu,"
	         "\"people\":%zu%s%s}", qname ? qname : "\"\"", hex, (long long)s->policy_version,
	         s->policy->n_seals, s->policy->n_people,
	         s->file_differs ? ",\"policy_path\":\"differs\"" : "", more);
	free(qname);
	json_decref(name);
}

/* Loads the configuration and policy again. ctx->cfg is not touched: what
 * a reload changes (the policy, the token label) lives in the snapshot,
 * which readers hold a reference to; the rest is read at start only. */
static void
reload(struct gw_ctx *ctx)
{
	struct gw_config *cfg = NULL;
	struct gw_snapshot *snap = NULL;
	char err[1024], detail[512];

	gw_log_info("SIGHUP: reloading %s", ctx->cfg->path);
	/* A store with a published policy rules over the file (policy_ops.c). */
	if (gw_config_load(ctx->cfg->path, &cfg, err, sizeof(err)) == 0 &&
	    gw_policy_store_reload(ctx, cfg) != 0) {
		gw_config_free(&cfg);
		return;
	}
	if (cfg == NULL ||
	    gw_snapshot_load(ctx, cfg->policy_path, &snap, err, sizeof(err)) < 0) {
		gw_log_error("reload rejected, the running policy stays in force: %s", err);
		(void)record(ctx, "policy_reload", "error", err, NULL);
		gw_config_free(&cfg);
		return;
	}
	/* The site, its store and its token are the process's, taken at start:
	 * say so rather than let an edited file look applied. */
	if (strcmp(cfg->site, gw_ctx_site(ctx)) != 0 || strcmp(cfg->store_url, ctx->cfg->store_url) != 0 ||
	    cfg->no_token != ctx->cfg->no_token)
		gw_log_warn("reload: site, store and backend_token changes take effect at the next "
		            "start only (still site %s on %s)", gw_ctx_site(ctx), ctx->cfg->store_shown);
	free(snap->token_label);
	snap->token_label = cfg->token_label;
	cfg->token_label = NULL;
	gw_config_free(&cfg);
	gw_snapshot_detail(snap, "", detail, sizeof(detail));
	/* Recorded first: a policy the audit log does not show never rules. */
	if (record(ctx, "policy_reload", "ok", NULL, detail) < 0) {
		gw_log_error("reload not applied, the running policy stays in force: its audit "
		             "record could not be written");
		gw_snapshot_put(&snap);
		return;
	}
	gw_snapshot_swap(ctx, snap);
	(void)gw_ctx_keep_known_keys(ctx);
	gw_log_info("policy reloaded: %s", detail);
}

/* A second after the last client left: the store's unused cache pages and
 * the threads' freed heap go back to the system, so an idle gateway stays
 * small however busy it was (docs/performance.md, footprint). */
static void
idle_trim(struct gw_ctx *ctx)
{
	bool due;

	pthread_mutex_lock(&conns_lock);
	due = trim_due && n_conns == 0;
	trim_due = false;
	pthread_mutex_unlock(&conns_lock);
	if (!due)
		return;
	if (ctx->store)
		gw_store_release_memory(ctx->store);
	malloc_trim(0);
}

/* ---- housekeeping: reloads, the expiry sweep, the idle trim ---- */

/* Off the accept thread, so a slow reload (a token that answers slowly,
 * a large policy) or sweep never keeps a client from connecting. */
static struct {
	pthread_mutex_t lock;
	pthread_cond_t cond;    /* CLOCK_MONOTONIC */
	bool reload_due, stop;
} house = { .lock = PTHREAD_MUTEX_INITIALIZER };

static void *
house_main(void *arg)
{
	struct gw_ctx *ctx = arg;
	struct timespec now, last_sweep = { 0 };

	pthread_setname_np(pthread_self(), "sg-house");
	for (;;) {
		struct timespec until;
		bool do_reload;

		clock_gettime(CLOCK_MONOTONIC, &until);
		until.tv_sec += 1;
		pthread_mutex_lock(&house.lock);
		while (!house.reload_due && !house.stop)
			if (pthread_cond_timedwait(&house.cond, &house.lock, &until) == ETIMEDOUT)
				break;
		do_reload = house.reload_due && !house.stop;
		house.reload_due = false;
		if (house.stop) {
			pthread_mutex_unlock(&house.lock);
			break;
		}
		pthread_mutex_unlock(&house.lock);
		if (do_reload)
			reload(ctx);
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (last_sweep.tv_sec == 0 || now.tv_sec - last_sweep.tv_sec >= SWEEP_INTERVAL) {
			gw_workflow_sweep(ctx);
			last_sweep = now;
		}
		idle_trim(ctx);
	}
	return NULL;
}

static int
house_start(struct gw_ctx *ctx, pthread_t *th)
{
	pthread_condattr_t ca;

	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&house.cond, &ca);
	pthread_condattr_destroy(&ca);
	house.stop = house.reload_due = false;
	if (pthread_create(th, NULL, house_main, ctx) != 0) {
		gw_log_error("cannot start the housekeeping thread");
		pthread_cond_destroy(&house.cond);
		return -1;
	}
	return 0;
}

static void
house_poke(bool stop)
{
	pthread_mutex_lock(&house.lock);
	if (stop)
		house.stop = true;
	else
		house.reload_due = true;
	pthread_cond_signal(&house.cond);
	pthread_mutex_unlock(&house.lock);
}

/* Stops it; false when it did not finish in time (a reload stuck in the
 * token): it then still uses ctx. */
static bool
house_stop(pthread_t th)
{
	struct timespec until;

	house_poke(true);
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += STOP_WAIT;
	if (pthread_timedjoin_np(th, NULL, &until) != 0)
		return false;
	pthread_cond_destroy(&house.cond);
	return true;
}

int
gw_server_run(struct gw_ctx *ctx)
{
	sigset_t mask;
	int sfd, lfd, rv = 0;
	char detail[512], more[96], err[512];
	struct gw_tls *tls = NULL;
	struct gw_snapshot *snap;
	pthread_t house_th;
	unsigned busy;
	bool started, house_done;

	if (ctx->cfg->max_connections > 0) {
		lim.max_conns = ctx->cfg->max_connections;
		lim.per_uid = ctx->cfg->connections_per_uid;
		lim.per_unknown_uid = ctx->cfg->connections_per_unknown_uid;
		lim.frame_ms = (int)ctx->cfg->frame_timeout * 1000;
		lim.idle_ms = (int)ctx->cfg->client_idle_timeout * 1000;
	}
	if (ctx->cfg->tls_connections_per_device > 0)
		lim.per_device = ctx->cfg->tls_connections_per_device;
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	sigaddset(&mask, SIGPIPE);
	if (pthread_sigmask(SIG_BLOCK, &mask, NULL) != 0)
		return -1;
	sigdelset(&mask, SIGPIPE);
	sfd = signalfd(-1, &mask, SFD_CLOEXEC);
	if (sfd < 0)
		return -1;
	lfd = listen_socket(ctx->cfg->socket_path, ctx->cfg->socket_mode);
	if (lfd < 0) {
		close(sfd);
		return -1;
	}
	/* The TLS front, when configured (tls.c): its listeners too. */
	if (gw_tls_open(ctx, &tls, err, sizeof(err)) < 0) {
		gw_log_error("not starting: %s", err);
		close(lfd);
		unlink(ctx->cfg->socket_path);
		close(sfd);
		return -1;
	}
	snap = gw_snapshot_get(ctx);
	/* (a site name is [a-z0-9_-]: nothing to escape) */
	snprintf(more, sizeof(more), ",\"site\":\"%s\"%s", gw_ctx_site(ctx),
	         ctx->cfg->no_token ? ",\"token\":\"none\"" :
	         ctx->token != NULL && !gw_token_present(ctx->token) ? ",\"token\":\"absent\"" : "");
	gw_snapshot_detail(snap, more, detail, sizeof(detail));
	gw_snapshot_put(&snap);
	/* A gateway whose start the audit log does not show does not serve. */
	started = record(ctx, "gateway_start", "ok", NULL, detail) == 0;
	if (!started)
		gw_log_error("not starting: the gateway_start record could not be written "
		             "(is the store's file system full?)");
	if (!started || house_start(ctx, &house_th) < 0) {
		gw_tls_close(&tls);
		close(lfd);
		unlink(ctx->cfg->socket_path);
		close(sfd);
		return -1;
	}
	gw_log_info("sealgated %s listening on %s (instance %s)", SEALGATE_VERSION,
	            ctx->cfg->socket_path, ctx->instance);
	if (tls != NULL)
		gw_log_info("TLS 1.3 for devices on %s%s%s", ctx->cfg->tls_listen,
		            ctx->cfg->tls_enroll_listen ? ", enrollment on " : "",
		            ctx->cfg->tls_enroll_listen ? ctx->cfg->tls_enroll_listen : "");

	for (;;) {
		struct pollfd pfd[4] = { { .fd = lfd, .events = POLLIN }, { .fd = sfd, .events = POLLIN },
		                         { .fd = gw_tls_fd(tls, false), .events = POLLIN },
		                         { .fd = gw_tls_fd(tls, true), .events = POLLIN } };

		if (poll(pfd, 4, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (pfd[1].revents & POLLIN) {
			struct signalfd_siginfo si;
			if (read(sfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
				if (si.ssi_signo == SIGHUP) {
					house_poke(false);
				} else {
					gw_log_info("signal %u: stopping", si.ssi_signo);
					break;
				}
			}
		}
		if (pfd[0].revents & POLLIN) {
			int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
			if (fd >= 0)
				conn_start(ctx, fd, NULL, false);
			else if (errno == EMFILE || errno == ENFILE)
				usleep(10000);
		}
		for (int i = 2; i < 4; i++) {
			if (!(pfd[i].revents & POLLIN))
				continue;
			int fd = accept4(pfd[i].fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
			if (fd >= 0)
				conn_start(ctx, fd, tls, i == 3);
			else if (errno == EMFILE || errno == ENFILE)
				usleep(10000);
		}
	}
	close(lfd);
	unlink(ctx->cfg->socket_path);
	house_done = house_stop(house_th);
	/* No policy change after the gateway_stop record (changes.h), and
	 * no notice recorded after it (notify.h). */
	gw_changes_stop(ctx);
	gw_notify_stop(ctx);
	/* Signatures waiting for a confirmation are refused now, not after
	 * confirm_timeout: their clients hear why and nothing is spent. */
	gw_auth_stop(ctx->auth);
	busy = conns_stop() + !house_done;
	if (busy == 0)
		gw_tls_close(&tls);   /* else a thread may still use its context */
	if (busy > 0) {
		/* A thread still inside the token (a C_Sign that does not
		 * return) uses ctx: freeing it would pull the ground from under
		 * it, so the caller leaves without tearing down. */
		gw_log_error("%u threads still busy %d s after the stop (a backend call that does "
		             "not return?): leaving without closing what they use", busy, STOP_WAIT);
		snprintf(detail, sizeof(detail), "{\"busy\":%u}", busy);
		rv = 1;
	}
	gw_reflimit_ctx_flush(ctx);   /* refusal summaries owed, before the stop */
	if (record(ctx, "gateway_stop", "ok", NULL, busy > 0 ? detail : NULL) < 0)
		rv = rv == 1 ? 1 : -1;
	close(sfd);
	return rv;
}
