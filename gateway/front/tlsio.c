/*
 * TLS reads and writes shared by the gateway's TLS front and the module's
 * TLS transport (tlsio.h).
 */
#include "tlsio.h"

#include <errno.h>
#include <poll.h>
#include <time.h>

#include <openssl/err.h>

int64_t
sg_mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int
sg_wait_fd(int fd, short events, int64_t deadline)
{
	for (;;) {
		struct pollfd p = { .fd = fd, .events = events };
		int64_t left = deadline - sg_mono_ms();
		int n;

		if (left <= 0)
			return -ETIMEDOUT;
		n = poll(&p, 1, (int)(left > 60000 ? 60000 : left));
		if (n > 0)
			return 0;
		if (n < 0 && errno != EINTR)
			return -errno;
	}
}

ssize_t
sg_tls_read(SSL *ssl, void *buf, size_t len)
{
	size_t n = 0;

	ERR_clear_error();
	if (SSL_read_ex(ssl, buf, len, &n) == 1)
		return (ssize_t)n;
	switch (SSL_get_error(ssl, 0)) {
	case SSL_ERROR_WANT_READ:
	case SSL_ERROR_WANT_WRITE:
		return -EAGAIN;
	case SSL_ERROR_ZERO_RETURN:
		return 0;
	default:
		ERR_clear_error();
		return -ECONNRESET;
	}
}

bool
sg_tls_pending(SSL *ssl)
{
	/* (SSL_pending counts processed plaintext only; SSL_has_pending
	 * also the read-ahead buffer's unprocessed bytes) */
	return SSL_has_pending(ssl) == 1;
}

ssize_t
sg_tls_write(SSL *ssl, int fd, int64_t timeout_ms, const void *buf, size_t len)
{
	int64_t deadline = sg_mono_ms() + timeout_ms;
	size_t n = 0;

	for (;;) {
		int rc;

		ERR_clear_error();
		if (SSL_write_ex(ssl, buf, len, &n) == 1)
			return (ssize_t)n;
		switch (SSL_get_error(ssl, 0)) {
		case SSL_ERROR_WANT_WRITE:
			rc = sg_wait_fd(fd, POLLOUT, deadline);
			break;
		case SSL_ERROR_WANT_READ:
			rc = sg_wait_fd(fd, POLLIN, deadline);
			break;
		default:
			ERR_clear_error();
			return -EPIPE;
		}
		if (rc < 0)
			return rc;
	}
}
