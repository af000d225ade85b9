/*
 * The TLS front's listeners, contexts and handshakes (tls.h): TLS 1.3
 * only; on the device port a client certificate of the device CA is
 * required and must belong to an approved device (device.c) at the
 * handshake and again after it, since a resumed session skips the
 * certificate check; on the enrollment port none is asked. Sockets are
 * non-blocking so every read keeps server.c's deadlines.
 */
#include "tls.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "device.h"
#include "log.h"
#include "tlsio.h"
#include "server.h"

#define TICKET_LIFETIME 3600    /* seconds a session may be resumed */

struct gw_tls {
	struct gw_ctx *ctx;
	SSL_CTX *dev_ctx, *enroll_ctx;
	int dev_fd, enroll_fd;
};

struct tls_conn {
	SSL *ssl;
	int fd;
	int send_ms;
};

static void
ssl_why(const char *what, char *buf, size_t len)
{
	unsigned long e = ERR_get_error();
	char s[200];

	if (e == 0)
		snprintf(s, sizeof(s), "%s", errno ? strerror(errno) : "the peer closed the connection");
	else
		ERR_error_string_n(e, s, sizeof(s));
	ERR_clear_error();
	snprintf(buf, len, "%s: %s", what, s);
}

static int
fingerprint(X509 *x, char out[65])
{
	unsigned char md[32];
	unsigned len = 0;

	if (X509_digest(x, EVP_sha256(), md, &len) != 1 || len != 32)
		return -1;
	for (unsigned i = 0; i < 32; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
	return 0;
}

/* At depth 0, once OpenSSL found the chain good (CA, dates): the
 * certificate must be an approved device's. */
static int
verify_device(int ok, X509_STORE_CTX *xs)
{
	SSL *ssl = X509_STORE_CTX_get_ex_data(xs, SSL_get_ex_data_X509_STORE_CTX_idx());
	struct gw_tls *t = ssl ? SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl)) : NULL;
	char fp[65], why[160];
	int64_t id;
	int xerr;

	if (!ok || X509_STORE_CTX_get_error_depth(xs) != 0)
		return ok;
	if (t == NULL || fingerprint(X509_STORE_CTX_get_current_cert(xs), fp) < 0) {
		X509_STORE_CTX_set_error(xs, X509_V_ERR_UNSPECIFIED);
		return 0;
	}
	if (gw_devices_check(t->ctx->devices, fp, &id, &xerr, why, sizeof(why)) < 0) {
		gw_log_warn("TLS: refusing a certificate at the handshake: %s (sha256 %.16s…)", why, fp);
		X509_STORE_CTX_set_error(xs, xerr);
		return 0;
	}
	return 1;
}

static SSL_CTX *
make_ctx(struct gw_tls *t, const struct gw_config *cfg, bool devices, char *err, size_t errlen)
{
	SSL_CTX *c = SSL_CTX_new(TLS_server_method());
	STACK_OF(X509_NAME) *names;
	struct stat sb;
	char why[256];

	if (c == NULL) {
		snprintf(err, errlen, "TLS: out of memory");
		return NULL;
	}
	SSL_CTX_set_app_data(c, t);
	if (!SSL_CTX_set_min_proto_version(c, TLS1_3_VERSION) ||
	    !SSL_CTX_set_max_proto_version(c, TLS1_3_VERSION)) {
		snprintf(err, errlen, "TLS: this OpenSSL has no TLS 1.3");
		goto fail;
	}
	if (SSL_CTX_use_certificate_chain_file(c, cfg->tls_cert) != 1) {
		ssl_why(cfg->tls_cert, why, sizeof(why));
		snprintf(err, errlen, "tls_cert %s", why);
		goto fail;
	}
	/* The gateway's key, like the token PIN file: the gateway's user's
	 * alone, or someone else could be the gateway. */
	if (lstat(cfg->tls_key, &sb) < 0 || !S_ISREG(sb.st_mode) || sb.st_uid != geteuid() ||
	    (sb.st_mode & 077) != 0) {
		snprintf(err, errlen, "tls_key %s: must be a file owned by the gateway's user, "
		         "mode 0600", cfg->tls_key);
		goto fail;
	}
	if (SSL_CTX_use_PrivateKey_file(c, cfg->tls_key, SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_check_private_key(c) != 1) {
		ssl_why(cfg->tls_key, why, sizeof(why));
		snprintf(err, errlen, "tls_key %s", why);
		goto fail;
	}
	SSL_CTX_set_options(c, SSL_OP_NO_RENEGOTIATION);
	SSL_CTX_set_timeout(c, TICKET_LIFETIME);
	/* One read(2) per TLS record instead of two (its header, then its
	 * body): what OpenSSL reads ahead stays in the SSL and the frame
	 * reader asks it before it waits on the socket (protocol.c read_all),
	 * and a connection is read by its own thread only. */
	SSL_CTX_set_read_ahead(c, 1);
	if (!devices) {
		/* Enrollment: no certificate asked, and no session kept. */
		SSL_CTX_set_verify(c, SSL_VERIFY_NONE, NULL);
		SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_OFF);
		SSL_CTX_set_num_tickets(c, 0);
		return c;
	}
	if (SSL_CTX_load_verify_locations(c, cfg->tls_device_ca, NULL) != 1 ||
	    (names = SSL_load_client_CA_file(cfg->tls_device_ca)) == NULL) {
		ssl_why(cfg->tls_device_ca, why, sizeof(why));
		snprintf(err, errlen, "tls_device_ca %s", why);
		goto fail;
	}
	SSL_CTX_set_client_CA_list(c, names);
	SSL_CTX_set_verify(c, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, verify_device);
	SSL_CTX_set_verify_depth(c, 2);
	/* Resumption needs a context name; tickets are keyed per run. */
	SSL_CTX_set_session_id_context(c, (const unsigned char *)"sealgate-device", 15);
	return c;
fail:
	SSL_CTX_free(c);
	return NULL;
}

/* HOST:PORT, [V6]:PORT or *:PORT. */
static int
listen_tcp(const char *spec, const char *key, char *err, size_t errlen)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
	                          .ai_flags = AI_PASSIVE | AI_NUMERICSERV };
	struct addrinfo *res = NULL;
	const char *colon = strrchr(spec, ':');
	char host[256], port[8];
	int fd = -1, one = 1, rc;

	if (colon == NULL || strlen(colon + 1) == 0 || strlen(colon + 1) >= sizeof(port) ||
	    (size_t)(colon - spec) >= sizeof(host)) {
		snprintf(err, errlen, "%s \"%s\": want HOST:PORT", key, spec);
		return -1;
	}
	if (spec[0] == '[' && colon > spec && colon[-1] == ']')
		snprintf(host, sizeof(host), "%.*s", (int)(colon - spec - 2), spec + 1);
	else
		snprintf(host, sizeof(host), "%.*s", (int)(colon - spec), spec);
	snprintf(port, sizeof(port), "%s", colon + 1);
	rc = getaddrinfo(host[0] == '\0' || strcmp(host, "*") == 0 ? NULL : host, port, &hints, &res);
	if (rc != 0) {
		snprintf(err, errlen, "%s \"%s\": %s", key, spec, gai_strerror(rc));
		return -1;
	}
	fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(fd, res->ai_addr, res->ai_addrlen) < 0 || listen(fd, 512) < 0) {
		snprintf(err, errlen, "%s \"%s\": %s", key, spec, strerror(errno));
		if (fd >= 0)
			close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	return fd;
}

int
gw_tls_open(struct gw_ctx *ctx, struct gw_tls **out, char *err, size_t errlen)
{
	const struct gw_config *cfg = ctx->cfg;
	struct gw_tls *t;

	*out = NULL;
	if (cfg->tls_listen == NULL)
		return 0;
	if (ctx->devices == NULL &&
	    gw_devices_open(cfg, ctx->token, &ctx->devices, err, errlen) < 0)
		return -1;
	t = calloc(1, sizeof(*t));
	if (t == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	t->ctx = ctx;
	t->dev_fd = t->enroll_fd = -1;
	if ((t->dev_ctx = make_ctx(t, cfg, true, err, errlen)) == NULL ||
	    (cfg->tls_enroll_listen != NULL &&
	     (t->enroll_ctx = make_ctx(t, cfg, false, err, errlen)) == NULL) ||
	    (t->dev_fd = listen_tcp(cfg->tls_listen, "tls_listen", err, errlen)) < 0 ||
	    (cfg->tls_enroll_listen != NULL &&
	     (t->enroll_fd = listen_tcp(cfg->tls_enroll_listen, "tls_enroll_listen", err,
	                                errlen)) < 0)) {
		gw_tls_close(&t);
		return -1;
	}
	*out = t;
	return 0;
}

void
gw_tls_close(struct gw_tls **tp)
{
	struct gw_tls *t = tp ? *tp : NULL;

	if (t == NULL)
		return;
	*tp = NULL;
	if (t->dev_fd >= 0)
		close(t->dev_fd);
	if (t->enroll_fd >= 0)
		close(t->enroll_fd);
	SSL_CTX_free(t->dev_ctx);
	SSL_CTX_free(t->enroll_ctx);
	free(t);
}

int
gw_tls_fd(const struct gw_tls *t, bool enroll)
{
	return t == NULL ? -1 : enroll ? t->enroll_fd : t->dev_fd;
}

static ssize_t
tls_recv(void *arg, void *buf, size_t len)
{
	struct tls_conn *c = arg;

	return sg_tls_read(c->ssl, buf, len);
}

static bool
tls_pending(void *arg)
{
	struct tls_conn *c = arg;

	return sg_tls_pending(c->ssl);
}

/* A reply the client does not read cannot hold the thread: as the Unix
 * socket's SO_SNDTIMEO, the frame deadline bounds a write. */
static ssize_t
tls_send(void *arg, const void *buf, size_t len)
{
	struct tls_conn *c = arg;

	return sg_tls_write(c->ssl, c->fd, c->send_ms, buf, len);
}

static void
peer_addr(int fd, char *buf, size_t len)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char h[NI_MAXHOST], p[NI_MAXSERV];

	if (getpeername(fd, (struct sockaddr *)&ss, &sl) == 0 &&
	    getnameinfo((struct sockaddr *)&ss, sl, h, sizeof(h), p, sizeof(p),
	                NI_NUMERICHOST | NI_NUMERICSERV) == 0)
		snprintf(buf, len, "%.64s port %.8s", h, p);
	else
		snprintf(buf, len, "an unknown address");
}

int
gw_tls_accept(struct gw_tls *t, int fd, bool enroll, int ms, struct sg_io *io,
              struct gw_peer *peer, char *why, size_t whylen)
{
	int64_t deadline = sg_mono_ms() + ms;
	struct tls_conn *c = calloc(1, sizeof(*c));
	char addr[128], fp[65], dwhy[160];
	X509 *cert;
	int64_t id = 0;
	int rc, xerr, one = 1;

	memset(io, 0, sizeof(*io));
	io->fd = fd;
	peer_addr(fd, addr, sizeof(addr));
	if (c == NULL || (c->ssl = SSL_new(enroll ? t->enroll_ctx : t->dev_ctx)) == NULL ||
	    SSL_set_fd(c->ssl, fd) != 1) {
		snprintf(why, whylen, "TLS from %s: out of memory", addr);
		goto fail;
	}
	c->fd = fd;
	c->send_ms = ms;
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	for (;;) {
		ERR_clear_error();
		errno = 0;
		if (SSL_accept(c->ssl) == 1)
			break;
		switch (SSL_get_error(c->ssl, 0)) {
		case SSL_ERROR_WANT_READ:
			rc = sg_wait_fd(fd, POLLIN, deadline);
			break;
		case SSL_ERROR_WANT_WRITE:
			rc = sg_wait_fd(fd, POLLOUT, deadline);
			break;
		default:
			ssl_why("handshake", dwhy, sizeof(dwhy));
			snprintf(why, whylen, "TLS from %s refused: %s", addr, dwhy);
			goto fail;
		}
		if (rc < 0) {
			/* A slow handshake is a slowloris: the frame deadline. */
			snprintf(why, whylen, "TLS from %s: the handshake was not done within %d ms",
			         addr, ms);
			goto fail;
		}
	}
	memset(peer, 0, sizeof(*peer));
	peer->pid = 0;
	peer->gid = (gid_t)-1;
	if (enroll) {
		peer->uid = GW_TLS_ENROLL_UID;
		peer->enroll_only = true;
		snprintf(peer->login, sizeof(peer->login), "enroll");
		snprintf(peer->exe, sizeof(peer->exe), "enrollment from %s", addr);
	} else {
		cert = SSL_get0_peer_certificate(c->ssl);
		if (cert == NULL || fingerprint(cert, fp) < 0) {
			snprintf(why, whylen, "TLS from %s: no device certificate", addr);
			goto fail;
		}
		/* Again: a resumed session did not show its certificate to
		 * verify_device, and the device may be revoked since. */
		if (gw_devices_check(t->ctx->devices, fp, &id, &xerr, dwhy, sizeof(dwhy)) < 0) {
			snprintf(why, whylen, "%s", dwhy);
			io->arg = c;
			io->recv = tls_recv;
			io->send = tls_send;
			io->pending = tls_pending;
			return -2;
		}
		peer->device = id;
		peer->uid = (uid_t)(GW_DEVICE_UID_BASE + (uint64_t)id);
		snprintf(peer->fingerprint, sizeof(peer->fingerprint), "%s", fp);
		snprintf(peer->login, sizeof(peer->login), "device:%lld", (long long)id);
		snprintf(peer->exe, sizeof(peer->exe), "device %lld sha256:%.16s from %s%s",
		         (long long)id, fp, addr, SSL_session_reused(c->ssl) ? " (resumed)" : "");
	}
	io->arg = c;
	io->recv = tls_recv;
	io->send = tls_send;
	io->pending = tls_pending;
	return 0;
fail:
	ERR_clear_error();
	if (c != NULL)
		SSL_free(c->ssl);
	free(c);
	return -1;
}

void
gw_tls_conn_free(struct sg_io *io)
{
	struct tls_conn *c = io->arg;

	if (c == NULL)
		return;
	(void)SSL_shutdown(c->ssl);
	ERR_clear_error();
	SSL_free(c->ssl);
	free(c);
	io->arg = NULL;
}

int
gw_tls_recheck(struct gw_ctx *ctx, const struct gw_peer *peer, char *why, size_t whylen)
{
	int64_t id;
	int xerr;

	if (peer->device == 0)
		return 0;
	if (ctx->devices == NULL) {
		snprintf(why, whylen, "no devices");
		return -1;
	}
	return gw_devices_check(ctx->devices, peer->fingerprint, &id, &xerr, why, whylen);
}

/* Keeps what a person can read of a reported string: no quotes, no
 * control characters (the record is JSON and logs are lines). */
static void
clean(char *dst, size_t len, const char *s)
{
	size_t j = 0;

	for (size_t i = 0; s != NULL && s[i] != '\0' && j + 1 < len; i++) {
		unsigned char ch = (unsigned char)s[i];
		dst[j++] = ch < 0x20 || ch == 0x7f || ch == '"' || ch == '\\' ? '?' : (char)ch;
	}
	dst[j] = '\0';
}

void
gw_tls_note_client(struct gw_peer *peer, const json_t *hello)
{
	const json_t *cl = json_object_get(hello, "client");
	char user[65], host[129], exe[257], err[64];
	const char *u = NULL, *h = NULL, *e = NULL;
	int64_t pid = 0;
	size_t n;

	if (peer->device == 0 || !json_is_object(cl) || strstr(peer->exe, " reported:") != NULL)
		return;
	(void)sg_get_str(cl, "user", false, &u, 256, err, sizeof(err));
	(void)sg_get_str(cl, "host", false, &h, 256, err, sizeof(err));
	(void)sg_get_str(cl, "exe", false, &e, 1024, err, sizeof(err));
	(void)sg_get_int(cl, "pid", false, 0, INT32_MAX, &pid, err, sizeof(err));
	clean(user, sizeof(user), u);
	clean(host, sizeof(host), h);
	clean(exe, sizeof(exe), e);
	n = strlen(peer->exe);
	snprintf(peer->exe + n, sizeof(peer->exe) - n, "; reported: user %s host %s exe %s pid %lld",
	         user, host, exe, (long long)pid);
}
