/*
 * Devices: the desktops that reach the gateway over TLS (docs/deployment.md).
 * A device asks (device_enroll, on the enrollment endpoint: a certificate
 * request, its host name and the person who asked), a seal admin approves
 * it (the gateway then issues its certificate from the device CA) or
 * revokes it; the TLS front lets in only certificates of approved devices.
 * Each device is one record file in tls_devices; every step is recorded.
 */
#ifndef GW_DEVICE_H
#define GW_DEVICE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "config.h"

struct gw_ctx;
struct gw_peer;
struct gw_req;
struct gw_devices;

#define GW_DEVICE_PENDING_MAX 64     /* requests waiting for an admin at once */
#define GW_DEVICE_MAX 4096           /* device records in all */
#define GW_DEVICE_CSR_MAX 16384      /* bytes of a PEM certificate request */
#define GW_DEVICE_GROUP_MAX 32       /* characters of a device group's name */
/* The group a seal's devices: names for requests on the Unix socket: the
 * gateway's own host (docs/policy.md). No device can be given it. */
#define GW_DEVICE_GROUP_LOCAL "local"

#define GW_DEVICE_CA_DAYS 3650        /* the device CA certificate the gateway makes */

struct gw_token;

/* Loads the records of cfg->tls_devices and, when configured, the device
 * CA's key: on tok (tls_device_ca_token_label: generated there on first
 * use, the CA certificate made at tls_device_ca when there is none) or a
 * file 0600 of the gateway's user (tls_device_ca_key). 0, or -1 with err. */
int gw_devices_open(const struct gw_config *cfg, struct gw_token *tok, struct gw_devices **out,
                    char *err, size_t errlen);
void gw_devices_close(struct gw_devices **d);

/* At the handshake: the device whose certificate has this fingerprint
 * (SHA-256 of its DER, hex), when it is approved: 0 and *id. Otherwise -1,
 * *x509_err the verify error to send (revoked, or not one of ours) and why. */
int gw_devices_check(struct gw_devices *d, const char *fingerprint, int64_t *id, int *x509_err,
                     char *why, size_t whylen);

/* A device group's name: letters, digits, '.', '_', '-', starting with a
 * letter or digit, at most GW_DEVICE_GROUP_MAX. */
bool gw_device_group_ok(const char *group);

/* The group of device id ("" when it has none): 0, or -1 when there is no
 * such device (or no devices at all). */
int gw_devices_group(struct gw_devices *d, int64_t id, char *group, size_t len);

/* The enrollment endpoint's two requests (no certificate yet: nothing
 * else is served there). */
json_t *gw_device_enroll(struct gw_ctx *ctx, const struct gw_peer *peer, const json_t *msg);
json_t *gw_device_fetch(struct gw_ctx *ctx, const struct gw_peer *peer, const json_t *msg);

/* A seal admin's requests (dispatch table). */
json_t *gw_op_device_list(struct gw_req *r);
json_t *gw_op_device_approve(struct gw_req *r);
json_t *gw_op_device_revoke(struct gw_req *r);

#endif
