/*
 * The module's TLS transport to a gateway on another machine: TLS 1.3
 * only, the site CA as the only trust anchor and the gateway's name
 * checked against its certificate (an impostor gateway never hears a
 * PIN), this device's certificate for the gateway's mutual check, and the
 * last session kept for resumption so a signature costs no handshake.
 * Sockets are non-blocking with our own deadlines; writes go through a
 * BIO that sends with MSG_NOSIGNAL, since a SIGPIPE would kill the host
 * application.
 */
#include "sgm.h"
#include "tlsio.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

struct sgm_tls {
	SSL_CTX *ctx;
	char host[256], port[8], name[256];
	pthread_mutex_t lock;
	SSL_SESSION *session;           /* the last ticket, under lock */
};

struct tls_conn {
	SSL *ssl;
	int fd;
	int timeout_ms;
	bool ticket;                    /* the gateway sent a session ticket */
};

#define REFUSAL_WAIT_MS 5000   /* longest wait for the gateway's verdict on us */

/* ---- a socket BIO that never raises SIGPIPE ---- */

static BIO_METHOD *nosig_meth;
static pthread_once_t nosig_once = PTHREAD_ONCE_INIT;

static int
nosig_write(BIO *b, const char *buf, int len)
{
	ssize_t n = send(BIO_get_fd(b, NULL), buf, (size_t)len, MSG_NOSIGNAL);

	BIO_clear_retry_flags(b);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		BIO_set_retry_write(b);
	return (int)n;
}

static int
nosig_read(BIO *b, char *buf, int len)
{
	ssize_t n = recv(BIO_get_fd(b, NULL), buf, (size_t)len, 0);

	BIO_clear_retry_flags(b);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		BIO_set_retry_read(b);
	return (int)n;
}

static void
nosig_init(void)
{
	const BIO_METHOD *sock = BIO_s_socket();
	BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK |
	                             BIO_TYPE_DESCRIPTOR, "sealgate socket");

	/* The socket BIO's own ctrl, create and destroy (fd, close flag);
	 * only reading and writing differ. */
	if (m == NULL || !BIO_meth_set_write(m, nosig_write) || !BIO_meth_set_read(m, nosig_read) ||
	    !BIO_meth_set_ctrl(m, BIO_meth_get_ctrl(sock)) ||
	    !BIO_meth_set_create(m, BIO_meth_get_create(sock)) ||
	    !BIO_meth_set_destroy(m, BIO_meth_get_destroy(sock))) {
		BIO_meth_free(m);
		return;
	}
	nosig_meth = m;
}

/* ---- the context ---- */

static int
new_session(SSL *ssl, SSL_SESSION *sess)
{
	struct sgm_tls *t = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
	struct tls_conn *c = SSL_get_app_data(ssl);

	if (c != NULL)
		c->ticket = true;
	if (t == NULL || !SSL_SESSION_is_resumable(sess))
		return 0;
	pthread_mutex_lock(&t->lock);
	SSL_SESSION_free(t->session);
	t->session = sess;
	pthread_mutex_unlock(&t->lock);
	return 1;   /* the reference is ours */
}

/* The first queued OpenSSL error as text (the gateway's alert reads
 * "tlsv13 alert certificate required", "sslv3 alert certificate revoked"). */
static void
ssl_why(char *buf, size_t len)
{
	unsigned long e = ERR_get_error();

	if (e == 0)
		snprintf(buf, len, "%s", errno != 0 ? strerror(errno) : "connection closed");
	else
		ERR_error_string_n(e, buf, len);
	ERR_clear_error();
}

int
sgm_tls_new(const struct sgm_conf *c, const char *host, const char *port, struct sgm_tls **out,
            char *err, size_t errlen)
{
	struct sgm_tls *t = NULL;
	struct stat sb;
	char why[256];
	int rv = -1;

	*out = NULL;
	pthread_once(&nosig_once, nosig_init);
	if (nosig_meth == NULL) {
		snprintf(err, errlen, "TLS: out of memory");
		return -1;
	}
	/* The device key proves this machine: a key others can read proves
	 * nothing, so it is refused like ssh refuses an open identity file. */
	if (c->key != NULL && stat(c->key, &sb) == 0 && (sb.st_mode & 077) != 0) {
		snprintf(err, errlen, "%s: the device key is readable by others (chmod 600 it)",
		         c->key);
		return -1;
	}
	t = calloc(1, sizeof(*t));
	if (t == NULL || pthread_mutex_init(&t->lock, NULL) != 0) {
		free(t);
		snprintf(err, errlen, "TLS: out of memory");
		return -1;
	}
	snprintf(t->host, sizeof(t->host), "%s", host);
	snprintf(t->port, sizeof(t->port), "%s", port);
	snprintf(t->name, sizeof(t->name), "%s", c->server_name != NULL ? c->server_name : host);
	t->ctx = SSL_CTX_new(TLS_client_method());
	if (t->ctx == NULL) {
		snprintf(err, errlen, "TLS: out of memory");
		goto out;
	}
	SSL_CTX_set_app_data(t->ctx, t);
	if (!SSL_CTX_set_min_proto_version(t->ctx, TLS1_3_VERSION) ||
	    !SSL_CTX_set_max_proto_version(t->ctx, TLS1_3_VERSION)) {
		snprintf(err, errlen, "TLS: this OpenSSL has no TLS 1.3");
		goto out;
	}
	SSL_CTX_set_verify(t->ctx, SSL_VERIFY_PEER, NULL);
	/* One recv(2) per record instead of two (its header, then its body):
	 * what OpenSSL reads ahead stays in the SSL, and the frame reader and
	 * the pool's alive check ask it (sg_tls_pending) before they look at
	 * the socket. A connection is used by one thread at a time. */
	SSL_CTX_set_read_ahead(t->ctx, 1);
	if (SSL_CTX_load_verify_locations(t->ctx, c->ca, NULL) != 1) {
		ssl_why(why, sizeof(why));
		snprintf(err, errlen, "ca %s: %s", c->ca, why);
		goto out;
	}
	/* No certificate: enrollment (sealctl device enroll) only. */
	if (c->cert == NULL || c->key == NULL) {
		SSL_CTX_set_session_cache_mode(t->ctx, SSL_SESS_CACHE_OFF);
		*out = t;
		return 0;
	}
	if (SSL_CTX_use_certificate_chain_file(t->ctx, c->cert) != 1) {
		ssl_why(why, sizeof(why));
		snprintf(err, errlen, "cert %s: %s", c->cert, why);
		goto out;
	}
	if (SSL_CTX_use_PrivateKey_file(t->ctx, c->key, SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_check_private_key(t->ctx) != 1) {
		ssl_why(why, sizeof(why));
		snprintf(err, errlen, "key %s: %s", c->key, why);
		goto out;
	}
	SSL_CTX_set_session_cache_mode(t->ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
	SSL_CTX_sess_set_new_cb(t->ctx, new_session);
	*out = t;
	t = NULL;
	rv = 0;
out:
	sgm_tls_free(&t);
	return rv;
}

void
sgm_tls_free(struct sgm_tls **tp)
{
	struct sgm_tls *t = tp ? *tp : NULL;

	if (t == NULL)
		return;
	*tp = NULL;
	SSL_SESSION_free(t->session);
	SSL_CTX_free(t->ctx);
	pthread_mutex_destroy(&t->lock);
	free(t);
}

/* ---- connections ---- */

static int
tcp_connect(const struct sgm_tls *t, int64_t deadline, char *err, size_t errlen)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM };
	struct addrinfo *res = NULL, *ai;
	int fd = -1, rc, one = 1, soerr = 0;
	socklen_t sl = sizeof(soerr);

	rc = getaddrinfo(t->host, t->port, &hints, &res);
	if (rc != 0) {
		snprintf(err, errlen, "%s: %s", t->host, gai_strerror(rc));
		return -1;
	}
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK,
		            ai->ai_protocol);
		if (fd < 0)
			continue;
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0 ||
		    (errno == EINPROGRESS && sg_wait_fd(fd, POLLOUT, deadline) == 0 &&
		     getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) == 0 && soerr == 0))
			break;
		if (soerr != 0)
			errno = soerr;
		snprintf(err, errlen, "%s port %s: %s", t->host, t->port,
		         errno == EINPROGRESS ? "no answer" : strerror(errno));
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd >= 0)
		(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return fd;
}

static ssize_t
tls_recv(void *arg, void *buf, size_t len)
{
	struct tls_conn *c = arg;

	return sg_tls_read(c->ssl, buf, len);
}

static ssize_t
tls_send(void *arg, const void *buf, size_t len)
{
	struct tls_conn *c = arg;

	return sg_tls_write(c->ssl, c->fd, c->timeout_ms, buf, len);
}

static bool
tls_pending(void *arg)
{
	struct tls_conn *c = arg;

	return sg_tls_pending(c->ssl);
}

static bool
is_ip(const char *s)
{
	unsigned char buf[sizeof(struct in6_addr)];

	return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
}

int
sgm_tls_connect(struct sgm_tls *t, int timeout_s, struct sg_io *io, char *err, size_t errlen)
{
	int64_t deadline = sg_mono_ms() + (int64_t)timeout_s * 1000;
	struct tls_conn *c;
	SSL_SESSION *sess;
	BIO *bio;
	char why[256];
	long vr;
	int fd, rc;

	memset(io, 0, sizeof(*io));
	io->fd = -1;
	fd = tcp_connect(t, deadline, err, errlen);
	if (fd < 0)
		return -1;
	c = calloc(1, sizeof(*c));
	if (c == NULL || (c->ssl = SSL_new(t->ctx)) == NULL ||
	    (bio = BIO_new(nosig_meth)) == NULL) {
		if (c != NULL)
			SSL_free(c->ssl);
		free(c);
		close(fd);
		snprintf(err, errlen, "TLS: out of memory");
		return -1;
	}
	c->fd = fd;
	c->timeout_ms = timeout_s * 1000;
	SSL_set_app_data(c->ssl, c);
	BIO_set_fd(bio, fd, BIO_NOCLOSE);
	SSL_set_bio(c->ssl, bio, bio);
	/* The name is both sent (SNI) and required in the certificate; an
	 * address is required as an IP address of the certificate (and is
	 * never sent as SNI). */
	if (is_ip(t->name) ?
	    X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), t->name) != 1 :
	    SSL_set_tlsext_host_name(c->ssl, t->name) != 1 || SSL_set1_host(c->ssl, t->name) != 1) {
		snprintf(err, errlen, "TLS: bad server name \"%s\"", t->name);
		goto fail;
	}
	pthread_mutex_lock(&t->lock);
	sess = t->session;
	if (sess != NULL)
		SSL_SESSION_up_ref(sess);
	pthread_mutex_unlock(&t->lock);
	if (sess != NULL) {
		(void)SSL_set_session(c->ssl, sess);
		SSL_SESSION_free(sess);
	}
	for (;;) {
		ERR_clear_error();
		errno = 0;
		if (SSL_connect(c->ssl) == 1)
			break;
		switch (SSL_get_error(c->ssl, 0)) {
		case SSL_ERROR_WANT_READ:
			rc = sg_wait_fd(fd, POLLIN, deadline);
			break;
		case SSL_ERROR_WANT_WRITE:
			rc = sg_wait_fd(fd, POLLOUT, deadline);
			break;
		default:
			vr = SSL_get_verify_result(c->ssl);
			if (vr != X509_V_OK)
				snprintf(err, errlen, "%s: the gateway's certificate is not the site's: %s",
				         t->host, X509_verify_cert_error_string(vr));
			else {
				ssl_why(why, sizeof(why));
				snprintf(err, errlen, "%s: TLS handshake: %s", t->host, why);
			}
			goto fail;
		}
		if (rc < 0) {
			snprintf(err, errlen, "%s: TLS handshake: no answer within %d s", t->host,
			         timeout_s);
			goto fail;
		}
	}
	/* In TLS 1.3 the gateway judges our certificate after our side of
	 * the handshake is done: its verdict is the first thing it sends, a
	 * session ticket when we are let in, an alert (revoked, expired,
	 * unknown) when not. Waited for here, so a refusal reads as what it
	 * is rather than as a broken pipe on the first request. */
	if (SSL_get_certificate(c->ssl) != NULL) {
		int64_t verdict = sg_mono_ms() + REFUSAL_WAIT_MS;
		char b;
		size_t n;

		if (verdict > deadline)
			verdict = deadline;
		while (!c->ticket) {
			ERR_clear_error();
			errno = 0;
			if (SSL_peek_ex(c->ssl, &b, 1, &n) == 1)
				break;
			if (SSL_get_error(c->ssl, 0) != SSL_ERROR_WANT_READ) {
				ssl_why(why, sizeof(why));
				snprintf(err, errlen, "%s: the gateway refused this device: %s", t->host, why);
				goto fail;
			}
			if (c->ticket || sg_wait_fd(fd, POLLIN, verdict) < 0)
				break;
		}
	}
	sgm_debug("TLS to %s:%s: %s, session %s", t->host, t->port, SSL_get_version(c->ssl),
	          SSL_session_reused(c->ssl) ? "resumed" : "new");
	io->fd = fd;
	io->arg = c;
	io->recv = tls_recv;
	io->send = tls_send;
	io->pending = tls_pending;
	return 0;
fail:
	ERR_clear_error();
	SSL_free(c->ssl);
	close(fd);
	free(c);
	return -1;
}

void
sgm_tls_close(struct sg_io *io, bool in_child)
{
	struct tls_conn *c = io->arg;

	if (c == NULL)
		return;
	/* One try at close_notify, never a wait; a child says nothing on a
	 * connection that is its parent's. */
	if (!in_child)
		(void)SSL_shutdown(c->ssl);
	ERR_clear_error();
	SSL_free(c->ssl);
	free(c);
	io->arg = NULL;
}

bool
sgm_tls_alive(struct sg_io *io)
{
	struct tls_conn *c = io->arg;
	struct pollfd p = { .fd = io->fd, .events = POLLIN };
	char b;
	size_t n = 0;
	int rc;

	/* What read-ahead took in with the last reply (a close_notify sent
	 * right behind it) is in the SSL, not in the socket: looked at first. */
	if (!sg_tls_pending(c->ssl)) {
		do
			rc = poll(&p, 1, 0);
		while (rc < 0 && errno == EINTR);
		if (rc == 0)
			return true;
	}
	/* Readable: session tickets are fine, anything else (a close, an
	 * alert, bytes we did not ask for) is not. */
	ERR_clear_error();
	if (SSL_peek_ex(c->ssl, &b, 1, &n) == 1)
		return false;
	rc = SSL_get_error(c->ssl, 0);
	ERR_clear_error();
	return rc == SSL_ERROR_WANT_READ;
}
