/*
 * The module's side of the wire: a small pool of Unix-socket connections
 * to sealgated, one request/response round trip per call, and tracking of
 * the gateway instance (hello) so that a restart kills the sessions and
 * the login of the run before it.
 */
#include "sgm.h"

#include <errno.h>
#include <poll.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <openssl/crypto.h>

struct sgm_conn {
	int fd;
	struct sg_io io;           /* the fd itself, or TLS (transport.c) */
	uint64_t epoch;            /* instance this connection said hello to */
};

/* ---- fd registry: lets a forked child close what it inherited ---- */

static void
fd_register(struct sgm_state *st, int fd)
{
	for (size_t i = 0; i < SGM_FD_REG; i++) {
		int expect = -1;
		if (__atomic_compare_exchange_n(&st->fdreg[i], &expect, fd, false,
		                                __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
			return;
	}
	/* Full: the fd is CLOEXEC anyway; a child merely keeps it open. */
}

static void
fd_unregister(struct sgm_state *st, int fd)
{
	for (size_t i = 0; i < SGM_FD_REG; i++) {
		int expect = fd;
		if (__atomic_compare_exchange_n(&st->fdreg[i], &expect, -1, false,
		                                __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
			return;
	}
}

void
sgm_client_forget_inherited(struct sgm_state *st)
{
	/* Runs in a child after fork: the parent's threads are gone and may
	 * have held st->lock, so only the atomic fd slots are read. */
	for (size_t i = 0; i < SGM_FD_REG; i++) {
		int fd = __atomic_exchange_n(&st->fdreg[i], -1, __ATOMIC_ACQ_REL);
		if (fd >= 0)
			close(fd);
	}
}

static void
conn_close(struct sgm_state *st, struct sgm_conn *c)
{
	if (c == NULL)
		return;
	/* Unregister before close, so a child never closes a reused number. */
	fd_unregister(st, c->fd);
	sgm_tls_close(&c->io, false);
	close(c->fd);
	free(c);
}

void
sgm_client_close_all(struct sgm_state *st)
{
	sgm_lock(st);
	while (st->n_idle > 0)
		conn_close(st, st->idle[--st->n_idle]);
	sgm_unlock(st);
}

/* A pooled connection the gateway closed (restart, idle timeout) reads as
 * EOF or HUP; the gateway never sends anything unasked, so readable means
 * dead. */
static bool
conn_alive(struct sgm_conn *c)
{
	struct pollfd p = { .fd = c->fd, .events = POLLIN };
	int n;

	if (c->io.arg != NULL)
		return sgm_tls_alive(&c->io);
	do
		n = poll(&p, 1, 0);
	while (n < 0 && errno == EINTR);
	return n == 0;
}

CK_RV
sgm_reply_rv(const json_t *reply)
{
	unsigned long rv = CKR_DEVICE_ERROR;

	if (sg_reply_is_ok(reply, &rv, NULL, NULL))
		return CKR_DEVICE_ERROR;        /* not an error reply */
	return rv == CKR_OK ? CKR_DEVICE_ERROR : (CK_RV)rv;
}

static int
copy_field(const json_t *obj, const char *key, bool required, char *dst, size_t dstlen,
           const char *dflt)
{
	const char *s = NULL;
	char err[128];

	if (sg_get_str(obj, key, required, &s, dstlen - 1, err, sizeof(err)) < 0) {
		sgm_debug("hello: %s", err);
		return -1;
	}
	snprintf(dst, dstlen, "%s", s != NULL ? s : dflt);
	return 0;
}

static CK_RV
parse_hello(const json_t *reply, struct sgm_hello *h)
{
	char err[128];

	memset(h, 0, sizeof(*h));
	if (!sg_reply_is_ok(reply, NULL, NULL, NULL)) {
		sgm_debug("hello refused by the gateway");
		return CKR_DEVICE_ERROR;
	}
	if (copy_field(reply, "instance", true, h->instance, sizeof(h->instance), "") < 0 ||
	    h->instance[0] == '\0' ||
	    copy_field(reply, "token_label", false, h->label, sizeof(h->label), "sealgate") < 0 ||
	    copy_field(reply, "manufacturer", false, h->manufacturer, sizeof(h->manufacturer),
	               "sealgate") < 0 ||
	    copy_field(reply, "model", false, h->model, sizeof(h->model), "sealgated") < 0 ||
	    copy_field(reply, "serial", false, h->serial, sizeof(h->serial), "") < 0 ||
	    copy_field(reply, "version", false, h->version, sizeof(h->version), "") < 0)
		return CKR_DEVICE_ERROR;
	if (sg_get_bool(reply, "token_present", true, &h->token_present, err, sizeof(err)) < 0) {
		sgm_debug("hello: %s", err);
		return CKR_DEVICE_ERROR;
	}
	return CKR_OK;
}

/* Records the instance a fresh connection met. A different one than
 * before means the gateway restarted: every session and the login of the
 * earlier run are gone. Returns the epoch for the connection. */
static uint64_t
note_instance(struct sgm_state *st, const char *instance)
{
	uint64_t epoch;

	sgm_lock(st);
	if (!st->have_instance) {
		snprintf(st->instance, sizeof(st->instance), "%s", instance);
		st->have_instance = true;
	} else if (strcmp(st->instance, instance) != 0) {
		sgm_debug("gateway instance changed: sessions and login of the old one are void");
		snprintf(st->instance, sizeof(st->instance), "%s", instance);
		st->epoch++;
		st->logged_in = false;
		OPENSSL_cleanse(st->token, sizeof(st->token));
		sgm_handles_retire_private_locked(st);
		/* The old run's objects are not this run's: refetched on demand. */
		sgm_seals_free(st->seals, st->n_seals);
		st->seals = NULL;
		st->n_seals = 0;
	}
	epoch = st->epoch;
	sgm_unlock(st);
	return epoch;
}

/* One frame read on io: a TLS connection's socket is non-blocking, so the
 * round trip's timeout is the reader's deadline there. */
static int
read_io(struct sgm_state *st, const struct sg_io *io, json_t **reply, char *err, size_t errlen)
{
	int ms = st->timeout_s * 1000;

	if (io->recv == NULL)
		return sg_msg_read(io->fd, reply, err, errlen);
	return sg_msg_read_io(io, ms, ms, reply, err, errlen);
}

static int
call_io(struct sgm_state *st, const struct sg_io *io, const json_t *req, json_t **reply,
        char *err, size_t errlen)
{
	int rc = sg_msg_write_io(io, req);

	*reply = NULL;
	if (rc < 0) {
		sg_seterr(err, errlen, "write: %s", strerror(-rc));
		return rc;
	}
	return read_io(st, io, reply, err, errlen);
}

/* The hello of a new connection. Over TLS the gateway cannot ask the
 * kernel who is calling, so the module reports the OS user, host and
 * program (recorded as reported, never trusted for a decision). */
static json_t *
hello_request(struct sgm_state *st)
{
	json_t *req = sg_request_new(SG_OP_HELLO);
	char host[256] = "", exe[512] = "";
	struct passwd pw, *res = NULL;
	char buf[1024];
	ssize_t n;

	if (req == NULL || st->tls == NULL)
		return req;
	(void)gethostname(host, sizeof(host) - 1);
	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	exe[n > 0 ? n : 0] = '\0';
	if (getpwuid_r(getuid(), &pw, buf, sizeof(buf), &res) != 0 || res == NULL)
		snprintf(buf, sizeof(buf), "#%u", (unsigned)getuid());
	json_object_set_new(req, "client", json_pack("{s:s,s:s,s:s,s:I}",
	                    "user", res != NULL ? pw.pw_name : buf, "host", host, "exe", exe,
	                    "pid", (json_int_t)getpid()));
	return req;
}

/* Opens a connection and says hello on it. */
static CK_RV
conn_open(struct sgm_state *st, struct sgm_conn **out, struct sgm_hello *hello)
{
	struct sgm_conn *c = NULL;
	json_t *req = NULL, *reply = NULL;
	struct timeval tv = { .tv_sec = st->timeout_s };
	char err[160];
	CK_RV rv = CKR_DEVICE_REMOVED;
	int fd, rc;

	*out = NULL;
	c = calloc(1, sizeof(*c));
	if (c == NULL)
		return CKR_HOST_MEMORY;
	if (st->tls != NULL) {
		/* Unreachable, refused or an impostor: like a pulled card,
		 * and the next call tries again. */
		if (sgm_tls_connect(st->tls, st->timeout_s, &c->io, err, sizeof(err)) < 0) {
			sgm_debug("cannot reach the gateway at %s: %s", st->gateway, err);
			free(c);
			return CKR_DEVICE_REMOVED;
		}
		fd = c->io.fd;
	} else {
		fd = sg_connect_unix(st->socket_path);
		if (fd < 0) {
			sgm_debug("cannot reach the gateway at %s: %s", st->socket_path, strerror(-fd));
			free(c);
			return CKR_DEVICE_REMOVED;
		}
		c->io.fd = fd;
		/* A hung gateway must not hang the application forever. */
		(void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		(void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	}
	fd_register(st, fd);
	c->fd = fd;

	req = hello_request(st);
	if (req == NULL) {
		rv = CKR_HOST_MEMORY;
		goto out;
	}
	rc = call_io(st, &c->io, req, &reply, err, sizeof(err));
	if (rc < 0) {
		sgm_debug("hello: %s", err);
		rv = (rc == -EPROTO || rc == -EMSGSIZE) ? CKR_DEVICE_ERROR : CKR_DEVICE_REMOVED;
		goto out;
	}
	rv = parse_hello(reply, hello);
	if (rv != CKR_OK)
		goto out;
	c->epoch = note_instance(st, hello->instance);
	*out = c;
	c = NULL;
	rv = CKR_OK;
out:
	json_decref(req);
	json_decref(reply);
	conn_close(st, c);
	return rv;
}

/* An idle connection of the current instance, or a new one (then *fresh
 * and *hello are set). */
static CK_RV
conn_get(struct sgm_state *st, struct sgm_conn **out, bool *fresh, struct sgm_hello *hello)
{
	struct sgm_conn *c;

	*fresh = false;
	for (;;) {
		sgm_lock(st);
		c = st->n_idle > 0 ? st->idle[--st->n_idle] : NULL;
		if (c != NULL && c->epoch != st->epoch) {
			sgm_unlock(st);
			conn_close(st, c);
			continue;
		}
		sgm_unlock(st);
		if (c == NULL)
			break;
		if (conn_alive(c)) {
			*out = c;
			return CKR_OK;
		}
		conn_close(st, c);
	}
	*fresh = true;
	return conn_open(st, out, hello);
}

static void
conn_put(struct sgm_state *st, struct sgm_conn *c)
{
	sgm_lock(st);
	if (c->epoch == st->epoch && st->n_idle < SGM_POOL_MAX) {
		st->idle[st->n_idle++] = c;
		c = NULL;
	}
	sgm_unlock(st);
	conn_close(st, c);
}

CK_RV
sgm_client_call(struct sgm_state *st, const json_t *req, bool may_resend,
                json_t **reply, uint64_t *epoch)
{
	struct sgm_hello hello;
	struct sgm_conn *c = NULL;
	char err[160];
	bool fresh;
	CK_RV rv;
	int rc;

	*reply = NULL;
	for (int attempt = 0; attempt < 2; attempt++) {
		rv = conn_get(st, &c, &fresh, &hello);
		if (rv != CKR_OK)
			return rv;
		rc = sg_msg_write_io(&c->io, req);
		if (rc < 0) {
			conn_close(st, c);
			c = NULL;
			if (rc == -EMSGSIZE)
				return CKR_DATA_LEN_RANGE;
			/* A frame that was not fully written is never acted on,
			 * so even a sign may go again on a fresh connection. */
			if (!fresh)
				continue;
			sgm_debug("send to the gateway failed: %s", strerror(-rc));
			return CKR_DEVICE_REMOVED;
		}
		rc = read_io(st, &c->io, reply, err, sizeof(err));
		if (rc < 0) {
			conn_close(st, c);
			c = NULL;
			sgm_debug("reply from the gateway: %s", err);
			/* The request may have reached the gateway: only
			 * idempotent requests go again. */
			if (may_resend && !fresh && rc != -EPROTO && rc != -EMSGSIZE)
				continue;
			return (rc == -EPROTO || rc == -EMSGSIZE) ? CKR_DEVICE_ERROR
			                                           : CKR_DEVICE_REMOVED;
		}
		*epoch = c->epoch;
		conn_put(st, c);
		return CKR_OK;
	}
	return CKR_DEVICE_REMOVED;
}

CK_RV
sgm_client_hello(struct sgm_state *st, struct sgm_hello *out, uint64_t *epoch)
{
	struct sgm_conn *c = NULL;
	json_t *req = NULL, *reply = NULL;
	bool fresh;
	CK_RV rv;

	rv = conn_get(st, &c, &fresh, out);
	if (rv != CKR_OK)
		return rv;
	if (fresh) {
		/* The connection's own hello is seconds-fresh by definition. */
		*epoch = c->epoch;
		conn_put(st, c);
		return CKR_OK;
	}
	conn_put(st, c);
	req = sg_request_new(SG_OP_HELLO);
	if (req == NULL)
		return CKR_HOST_MEMORY;
	rv = sgm_client_call(st, req, true, &reply, epoch);
	if (rv == CKR_OK) {
		rv = parse_hello(reply, out);
		/* A pooled connection may have outlived a restart we have not
		 * seen: the instance in the reply is the truth. */
		if (rv == CKR_OK)
			*epoch = note_instance(st, out->instance);
	}
	json_decref(req);
	json_decref(reply);
	return rv;
}
