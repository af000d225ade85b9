/*
 * Fuzz target: the whole request dispatcher. A decoded message goes
 * through gw_dispatch with the demo policy, a real store and audit log in a
 * temp dir, and no backend token, as an OS user who is "alice". A
 * "session" of "@NAME" (NAME a person of the demo policy) is replaced by a
 * live session of NAME with password and code, so inputs reach the
 * handlers behind the login too.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "audit.h"
#include "auth.h"
#include "dispatch.h"
#include "quota.h"
#include "signpath.h"
#include "server.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct gw_ctx ctx;
static struct gw_peer peer;

static const char *const people[] = { "alice", "bob", "carol", "dave", "erin", "frank", "grace" };
static char sessions[sizeof(people) / sizeof(people[0])][64];

static void
fail(const char *what, const char *err)
{
	fprintf(stderr, "fuzz-request: %s: %s\n", what, err);
	exit(1);
}

static void
init(void)
{
	static struct gw_config cfg;
	char err[512], dir[] = "/tmp/sg-fuzz-XXXXXX", path[600];
	const char *src = getenv("SEALGATE_SOURCE");
	struct gw_snapshot *snap;

	if (mkdtemp(dir) == NULL)
		fail("mkdtemp", "failed");
	snprintf(path, sizeof(path), "%s/softhsm-config/acme-policy.yaml.in", src ? src : SG_SOURCE_DIR);
	pthread_mutex_init(&ctx.snap_lock, NULL);
	cfg.token_label = (char *)"Fuzz Co.";
	cfg.session_timeout = 60;
	ctx.cfg = &cfg;
	snprintf(ctx.instance, sizeof(ctx.instance), "fuzz");
	snprintf(ctx.host, sizeof(ctx.host), "fuzzhost");
	if (gw_snapshot_load(&ctx, path, &snap, err, sizeof(err)) < 0)
		fail("policy", err);
	gw_snapshot_swap(&ctx, snap);
	snprintf(path, sizeof(path), "%s/store.db", dir);
	if (gw_store_open(path, &ctx.store, err, sizeof(err)) < 0)
		fail("store", err);
	if (gw_audit_open(ctx.store, &ctx.audit, err, sizeof(err)) < 0)
		fail("audit", err);
	if (gw_auth_new(60, &ctx.auth) < 0)
		fail("auth", "init");
	if (gw_quota_new(ctx.store, &ctx.quota) < 0 || gw_signpath_init(&ctx) < 0)
		fail("quota", "init");
	pthread_mutex_init(&ctx.wf_lock, NULL);
	peer.uid = getuid();
	peer.pid = getpid();
	snprintf(peer.login, sizeof(peer.login), "alice");
	snprintf(peer.exe, sizeof(peer.exe), "/fuzz");
	for (size_t i = 0; i < sizeof(people) / sizeof(people[0]); i++) {
		uint8_t tok[SG_SESSION_TOKEN_LEN];

		if (gw_auth_session_new_factors(ctx.auth, people[i], peer.uid,
		                                GW_FACTOR_PASSWORD | GW_FACTOR_TOTP, time(NULL), tok) < 0)
			fail("session", people[i]);
		sodium_bin2base64(sessions[i], sizeof(sessions[i]), tok, sizeof(tok),
		                  sodium_base64_VARIANT_ORIGINAL);
	}
}

/* "@NAME" → NAME's live session, sent from NAME's own OS login (the
 * dispatcher checks that the peer may still act as the session's person). */
static void
live_session(json_t *msg)
{
	const char *s = json_string_value(json_object_get(msg, "session"));

	snprintf(peer.login, sizeof(peer.login), "alice");
	if (s == NULL || s[0] != '@')
		return;
	for (size_t i = 0; i < sizeof(people) / sizeof(people[0]); i++) {
		if (strcmp(s + 1, people[i]) == 0) {
			snprintf(peer.login, sizeof(peer.login), "%s", people[i]);
			json_object_set_new(msg, "session", json_string(sessions[i]));
			return;   /* s is gone with the old value */
		}
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[256];
	json_t *msg, *rep;

	if (ctx.auth == NULL)
		init();
	msg = sg_msg_decode(data, size, err, sizeof(err));
	if (msg == NULL)
		return 0;
	live_session(msg);
	rep = gw_dispatch(&ctx, &peer, msg);
	if (rep == NULL || !json_is_object(rep) || json_object_get(rep, "ok") == NULL)
		abort();
	json_decref(rep);
	json_decref(msg);
	return 0;
}
