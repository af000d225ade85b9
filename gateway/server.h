/*
 * The gateway's shared state and its socket server: accepts local
 * connections, identifies each peer with SO_PEERCRED, and serves one
 * request at a time per connection on its own thread (so signatures from
 * different clients run in parallel), within per-uid and global connection
 * limits and read deadlines. SIGHUP reloads, SIGTERM stops.
 */
#ifndef GW_SERVER_H
#define GW_SERVER_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "audit.h"
#include "auth.h"
#include "config.h"
#include "policy.h"
#include "store.h"
#include "token.h"

struct gw_quota;
struct gw_devices;
struct gw_tls;
struct gw_probes;
struct gw_refusals;
struct gw_reflimit;
struct gw_changes;

/* A policy together with the token keys of its seals, swapped as one on
 * reload. keys[i] belongs to policy->seals[i]. */
struct gw_snapshot {
	unsigned refs;
	struct gw_policy *policy;
	struct gw_seal_key **keys;
	char *token_label;      /* configured token_label, or NULL: the organization's */
	/* The published version it is (docs/policy.md, "One policy for the
	 * group"): 0 = the policy_path file, no version published. */
	int64_t policy_version;
	bool file_differs;      /* a version, and policy_path holds other bytes */
};

struct gw_ctx {
	struct gw_config *cfg;
	struct gw_token *token;         /* NULL: no backend (fuzzing, tests) */
	struct gw_store *store;
	struct gw_audit *audit;
	struct gw_auth *auth;
	pthread_mutex_t snap_lock;
	struct gw_snapshot *snap;
	struct gw_quota *quota;         /* use counters (quota.h) */
	pthread_mutex_t wf_lock;        /* unused: the store decides transitions (workflow_ops.c) */
	struct gw_probes *probes;       /* size-probe clients seen (signpath.c) */
	struct gw_refusals *refusals;   /* last refusal per account, for "why" */
	struct gw_reflimit *reflimit;   /* refusal floods counted, not recorded (refusals.h) */
	struct gw_changes *changes;     /* the change feed (changes.h), or NULL */
	char instance[17];
	char host[256];
	time_t started;
	struct gw_devices *devices;     /* enrolled devices (device.h), or NULL: no TLS front */
};

/* Identity of a connected client, from the kernel, never from a message.
 * A TLS peer is a device, proven by its certificate (tls.c): its uid is
 * GW_DEVICE_UID_BASE + the device's id (so sessions, windows and
 * connection caps are per device), login names the device and matches no
 * OS login of the policy, and exe holds the device and what its module
 * reported (OS user, host, program), marked as reported. */
#define GW_DEVICE_UID_BASE 0x40000000u
struct gw_peer {
	uid_t uid;
	gid_t gid;
	pid_t pid;
	char login[64];                 /* OS login name of uid, or "#uid"; "device:ID" */
	char exe[512];                  /* /proc/PID/exe at connect, or ""; see above */
	int64_t device;                 /* the TLS device's id, 0: a local peer */
	bool enroll_only;               /* TLS without a certificate: device_enroll, device_fetch */
	char fingerprint[65];           /* TLS: SHA-256 of the device certificate, hex */
	/* The web front's uid (web_front in the configuration): for one
	 * request, login is "web:IP" and exe says front and user agent, from
	 * the request's "via" (dispatch.c); people name their account. */
	bool web;
};

/* The site this gateway serves (cfg->site; "main" without a configuration). */
const char *gw_ctx_site(const struct gw_ctx *ctx);

/* Builds a snapshot: loads the policy at path and finds the key of every
 * seal of this gateway's site on the token (a missing key is an error);
 * other sites' seals get no key. A site the policy does not list is an
 * error. */
int gw_snapshot_load(struct gw_ctx *ctx, const char *policy_path,
                     struct gw_snapshot **out, char *err, size_t errlen);
/* The same from a policy's bytes (a published version); name is used in
 * messages ("name:line:column: …"). */
int gw_snapshot_load_text(struct gw_ctx *ctx, const char *name, const char *text, size_t len,
                          struct gw_snapshot **out, char *err, size_t errlen);
/* The JSON detail of the records that say which policy is in force
 * (gateway_start, policy_reload): its name, SHA-256, version, sizes, and
 * more (",\"key\":…" or ""). */
void gw_snapshot_detail(const struct gw_snapshot *s, const char *more, char *buf, size_t len);
struct gw_snapshot *gw_snapshot_get(struct gw_ctx *ctx);   /* new reference */
void gw_snapshot_put(struct gw_snapshot **snap);
/* Replaces the current snapshot (takes ownership of snap). */
void gw_snapshot_swap(struct gw_ctx *ctx, struct gw_snapshot *snap);

/* Closes what a running gateway holds in ctx, last opened first: audit
 * writer, logins, quotas, sign path, policy snapshot, store, token. The
 * configuration stays (it may not be the caller's to free). */
void gw_ctx_close(struct gw_ctx *ctx);
/* Writes the keys found on the token so far to the store (token.h, known
 * keys), so a later start can do without the token. Nothing while the
 * token is away. 0 or -1 (logged). */
int gw_ctx_keep_known_keys(struct gw_ctx *ctx);

/* Fills peer from a connected Unix socket. */
int gw_peer_identify(int fd, struct gw_peer *peer);

/* Runs the accept loop until SIGTERM/SIGINT. Returns 0 on a clean stop,
 * -1 when it could not start (socket, gateway_start record) or the
 * gateway_stop record could not be written, 1 when threads still use ctx
 * after the stop: the caller must then leave without freeing it. */
int gw_server_run(struct gw_ctx *ctx);

#endif
