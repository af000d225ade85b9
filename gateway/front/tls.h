/*
 * The TLS front of sealgated (docs/deployment.md, docs/protocol.md): TCP
 * listeners for TLS 1.3 only, never plaintext. On tls_listen every peer
 * is a device presenting a certificate of the device CA that device.c
 * knows as approved (checked at the handshake, on resumption and at every
 * request); on tls_enroll_listen there is no client certificate and only
 * enrollment is served. Connections then run server.c's own loop through
 * a struct sg_io, with the Unix socket's frame cap and deadlines.
 */
#ifndef GW_TLS_H
#define GW_TLS_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "protocol.h"

struct gw_ctx;
struct gw_peer;
struct gw_tls;

/* Peers that are not a device yet: their uid for the per-uid count. */
#define GW_TLS_HANDSHAKE_UID 0x3ffffffeu   /* handshake not finished */
#define GW_TLS_ENROLL_UID    0x3fffffffu   /* on the enrollment endpoint */
#define GW_TLS_HANDSHAKES_MAX 64           /* handshakes in flight at once */
#define GW_TLS_HANDSHAKES_PER_ADDR 8       /* of those, from one IP address */

/* Loads the gateway's certificate and key and the device CA, and listens
 * on cfg->tls_listen (and tls_enroll_listen). 0 (*out NULL when nothing
 * is configured), or -1 with err. */
int gw_tls_open(struct gw_ctx *ctx, struct gw_tls **out, char *err, size_t errlen);
void gw_tls_close(struct gw_tls **t);
/* The listening sockets (-1: none). */
int gw_tls_fd(const struct gw_tls *t, bool enroll);

/* On the connection's thread: the handshake on fd (non-blocking) within
 * ms, then the device's identity into peer and the transport into io.
 * 0; -1 refused at the handshake (why for the log); -2 the handshake was
 * done but the device is refused (a resumed session of a device revoked
 * since): why goes to the peer as an error frame. */
int gw_tls_accept(struct gw_tls *t, int fd, bool enroll, int ms, struct sg_io *io,
                  struct gw_peer *peer, char *why, size_t whylen);
void gw_tls_conn_free(struct sg_io *io);
/* The device is still approved (revocation and expiry take effect on
 * open connections at their next request). 0, or -1 with why. */
int gw_tls_recheck(struct gw_ctx *ctx, const struct gw_peer *peer, char *why, size_t whylen);
/* What the module reported in its hello (OS user, host, program, pid),
 * appended to peer->exe as reported. */
void gw_tls_note_client(struct gw_peer *peer, const json_t *hello);

#endif
