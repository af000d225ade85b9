/*
 * Reading and writing one TLS connection on a non-blocking socket, for
 * both ends of the TLS front: the gateway (tls.c) and the module
 * (module/transport.c), so that both treat OpenSSL's answers alike.
 */
#ifndef SG_TLSIO_H
#define SG_TLSIO_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <openssl/ssl.h>

/* Milliseconds of CLOCK_MONOTONIC. */
int64_t sg_mono_ms(void);

/* Waits for events on fd until deadline (sg_mono_ms). 0, or -ETIMEDOUT /
 * -errno. */
int sg_wait_fd(int fd, short events, int64_t deadline);

/* One SSL_read_ex: the bytes read, 0 when the peer closed the connection,
 * -EAGAIN when nothing can be read now, -ECONNRESET on any other error
 * (OpenSSL's error queue cleared). */
ssize_t sg_tls_read(SSL *ssl, void *buf, size_t len);

/* True when ssl holds bytes already taken from its socket (read-ahead):
 * a record not yet processed, or plaintext not yet read. Then the socket
 * must not be waited on before sg_tls_read: what is held may be all the
 * peer sends. */
bool sg_tls_pending(SSL *ssl);

/* SSL_write_ex of buf on fd, waiting for the socket until timeout_ms have
 * passed: the bytes written, -ETIMEDOUT / -errno from the wait, or -EPIPE
 * on an error of the connection (OpenSSL's error queue cleared). */
ssize_t sg_tls_write(SSL *ssl, int fd, int64_t timeout_ms, const void *buf, size_t len);

#endif
