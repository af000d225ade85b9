/*
 * One policy for the group: publishing a version into the store (validated
 * here first, stored with its policy_publish record in one transaction),
 * showing and listing versions, and keeping the newest version in force —
 * at start, on SIGHUP and on a "policy" change event. Every change of the
 * policy in force is recorded (policy_reload, with version and hash)
 * before it rules. docs/policy.md, "One policy for the group".
 */
#include "policy_ops.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <openssl/evp.h>
#include <sodium.h>

#include "changes.h"
#include "log.h"
#include "policystore.h"
#include "yamlutil.h"

#define HISTORY_DEFAULT 50
#define HISTORY_MAX 1000

/* One change of the policy in force at a time (a publish here, an event
 * from the feed, SIGHUP), so that an older version never replaces a newer
 * one and each change has its record before it rules. */
static pthread_mutex_t policy_lock = PTHREAD_MUTEX_INITIALIZER;
/* The newest version refused here, under policy_lock: heard of again (a
 * re-read after each reconnection of the feed) it is not refused and
 * recorded again; SIGHUP and a newer version try afresh. */
static int64_t refused_version;

static void
hex_of(const uint8_t h[32], char out[65])
{
	sodium_bin2hex(out, 65, h, 32);
}

/* Whether the policy_path file holds other bytes than hash (a file that
 * cannot be read differs too). */
static bool
file_differs(const char *path, const uint8_t hash[32])
{
	uint8_t *buf = NULL, h[32];
	size_t len = 0;
	char err[256];
	bool differs = true;

	if (path == NULL)
		return false;
	if (gw_yaml_read_file(path, &buf, &len, err, sizeof(err)) == 0 &&
	    EVP_Digest(buf, len, h, NULL, EVP_sha256(), NULL) && memcmp(h, hash, 32) == 0)
		differs = false;
	free(buf);
	return differs;
}

/* Version v as a snapshot, validated as a reload validates (the parser,
 * then every seal's key on the token), named "policy version N". */
static int
snapshot_of(struct gw_ctx *ctx, const struct gw_policy_version *v, const char *token_label,
            struct gw_snapshot **out, char *err, size_t errlen)
{
	struct gw_snapshot *s = NULL;
	char name[48];

	*out = NULL;
	snprintf(name, sizeof(name), "policy version %" PRId64, v->version);
	if (gw_snapshot_load_text(ctx, name, v->text, v->len, &s, err, errlen) < 0)
		return -1;
	/* The text is what was published, or the store was changed behind
	 * the gateways' back. */
	if (memcmp(s->policy->hash, v->sha256, 32) != 0) {
		snprintf(err, errlen, "%s: its text does not match the SHA-256 it was published with",
		         name);
		gw_snapshot_put(&s);
		return -1;
	}
	free(s->token_label);
	s->token_label = NULL;
	if (token_label != NULL && (s->token_label = strdup(token_label)) == NULL) {
		snprintf(err, errlen, "out of memory");
		gw_snapshot_put(&s);
		return -1;
	}
	s->policy_version = v->version;
	*out = s;
	return 0;
}

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

	if (ctx->audit == NULL || gw_audit_record(ctx->audit, &ev, &seq) < 0) {
		gw_log_error("audit record for %s could not be written", action);
		return -1;
	}
	return 0;
}

/* Records snap as the policy in force, then swaps it in (takes snap).
 * Call with policy_lock held. */
static int
enforce_locked(struct gw_ctx *ctx, struct gw_snapshot *snap)
{
	char detail[640];

	snap->file_differs = ctx->cfg != NULL && file_differs(ctx->cfg->policy_path,
	                                                      snap->policy->hash);
	gw_snapshot_detail(snap, "", detail, sizeof(detail));
	/* Recorded first: a policy the audit log does not show never rules. */
	if (record(ctx, "policy_reload", "ok", NULL, detail) < 0) {
		gw_log_error("policy version %" PRId64 " not put in force: its audit record could "
		             "not be written", snap->policy_version);
		gw_snapshot_put(&snap);
		return -1;
	}
	if (snap->file_differs)
		gw_log_warn("policy_path %s differs from the published version %" PRId64 ", which "
		            "is in force: the file is not used while a version is published",
		            ctx->cfg->policy_path, snap->policy_version);
	gw_log_info("policy in force: %s", detail);
	gw_snapshot_swap(ctx, snap);
	(void)gw_ctx_keep_known_keys(ctx);
	return 0;
}

/* Reads the newest version and validates it. 1 and *out, 0 nothing
 * published, -1 with err (and *version: the one refused, 0 unknown). */
static int
newest(struct gw_ctx *ctx, const char *token_label, struct gw_snapshot **out, int64_t *version,
       char *err, size_t errlen)
{
	struct gw_policy_version v;
	int r;

	*out = NULL;
	*version = 0;
	r = gw_store_policy_get(ctx->store, 0, &v, err, errlen);
	if (r <= 0)
		return r;
	*version = v.version;
	r = snapshot_of(ctx, &v, token_label, out, err, errlen) < 0 ? -1 : 1;
	gw_policy_version_clear(&v);
	return r;
}

/* A version this gateway cannot put in force: said, recorded, and the one
 * in force kept. Call with policy_lock held. */
static void
refused(struct gw_ctx *ctx, int64_t version, const char *err)
{
	char detail[64];

	snprintf(detail, sizeof(detail), "{\"version\":%" PRId64 "}", version);
	if (version > 0)
		refused_version = version;
	gw_log_error("policy version %" PRId64 " refused, the policy in force stays: %s", version,
	             err);
	(void)record(ctx, "policy_reload", "error", err, version > 0 ? detail : NULL);
}

int
gw_policy_follow(struct gw_ctx *ctx)
{
	struct gw_snapshot *cur, *snap = NULL;
	int64_t latest = 0, in_force, version;
	char err[1024];
	int rv = -1, got;

	if (ctx->store == NULL)
		return 0;
	pthread_mutex_lock(&policy_lock);
	if (gw_store_policy_latest(ctx->store, &latest, err, sizeof(err)) < 0) {
		gw_log_error("policy: %s", err);
		goto out;
	}
	cur = gw_snapshot_get(ctx);
	in_force = cur ? cur->policy_version : 0;
	if (latest == 0 || latest == in_force || latest == refused_version) {
		gw_snapshot_put(&cur);
		rv = latest == refused_version && latest != in_force ? -1 : 0;
		goto out;
	}
	got = newest(ctx, cur ? cur->token_label : NULL, &snap, &version, err, sizeof(err));
	gw_snapshot_put(&cur);
	if (got <= 0) {
		if (got < 0)
			refused(ctx, version, err);
		rv = got < 0 ? -1 : 0;
		goto out;
	}
	rv = enforce_locked(ctx, snap);
out:
	pthread_mutex_unlock(&policy_lock);
	return rv;
}

static void
on_change(struct gw_ctx *ctx, const char *kind, const char *id, void *arg)
{
	(void)kind; (void)id; (void)arg;
	/* "policy:N" or a re-read after a lost feed: the newest either way
	 * (an event may name a version already overtaken). */
	(void)gw_policy_follow(ctx);
}

int
gw_policy_store_start(struct gw_ctx *ctx, const char *file_err, char *err, size_t errlen)
{
	struct gw_snapshot *snap = NULL;
	int64_t version = 0;
	char why[1024];
	int r;

	r = newest(ctx, ctx->cfg ? ctx->cfg->token_label : NULL, &snap, &version, why, sizeof(why));
	if (r < 0) {
		/* Never a policy this gateway cannot validate, nor an older
		 * one than the group's. */
		if (version > 0)
			snprintf(err, errlen, "the newest published policy, version %" PRId64 ", does "
			         "not validate here: %s", version, why);
		else
			snprintf(err, errlen, "reading the published policy: %s", why);
		return -1;
	}
	if (r == 0) {
		if (ctx->snap == NULL) {
			snprintf(err, errlen, "%s", file_err ? file_err : "no policy");
			return -1;
		}
	} else {
		if (file_err != NULL)
			gw_log_warn("policy_path does not load (%s): the published version %" PRId64
			            " is in force", file_err, version);
		snap->file_differs = ctx->cfg != NULL &&
		                     file_differs(ctx->cfg->policy_path, snap->policy->hash);
		if (snap->file_differs && file_err == NULL)
			gw_log_warn("policy_path %s differs from the published version %" PRId64
			            ", which is in force: the file is not used while a version is "
			            "published", ctx->cfg->policy_path, version);
		/* (the gateway_start record says which version rules) */
		gw_snapshot_swap(ctx, snap);
		gw_log_info("policy: the published version %" PRId64 " is in force", version);
	}
	if (gw_changes_subscribe(ctx, "policy", on_change, NULL) < 0) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	return 0;
}

int
gw_policy_store_reload(struct gw_ctx *ctx, const struct gw_config *cfg)
{
	struct gw_snapshot *snap = NULL;
	int64_t latest = 0, version;
	char err[1024];
	int got;

	if (ctx->store == NULL)
		return 0;
	pthread_mutex_lock(&policy_lock);
	if (gw_store_policy_latest(ctx->store, &latest, err, sizeof(err)) < 0) {
		/* Not knowing whether a version rules, the file must not. */
		refused(ctx, 0, err);
		pthread_mutex_unlock(&policy_lock);
		return 1;
	}
	if (latest == 0) {
		pthread_mutex_unlock(&policy_lock);
		return 0;
	}
	refused_version = 0;   /* asked for: tried again */
	got = newest(ctx, cfg->token_label, &snap, &version, err, sizeof(err));
	if (got < 0)
		refused(ctx, version, err);
	else if (got > 0)
		(void)enforce_locked(ctx, snap);
	pthread_mutex_unlock(&policy_lock);
	return 1;
}

/* ---- requests ---- */

/* A snapshot validated from a request becomes version n: its name and
 * the token label in force. 0 or -1 (out of memory). */
static int
name_version(struct gw_snapshot *snap, int64_t n, const char *token_label)
{
	char name[48];
	char *p, *l = NULL;

	snprintf(name, sizeof(name), "policy version %" PRId64, n);
	p = strdup(name);
	if (p == NULL || (token_label != NULL && (l = strdup(token_label)) == NULL)) {
		free(p);
		return -1;
	}
	free(snap->policy->path);
	snap->policy->path = p;
	if (token_label != NULL) {
		free(snap->token_label);
		snap->token_label = l;
	}
	snap->policy_version = n;
	return 0;
}

static int
publish_apply(struct gw_store *st, void *arg, char *err, size_t errlen)
{
	return gw_store_policy_publish_tx(st, arg, err, errlen);
}

json_t *
gw_op_policy_publish(struct gw_req *r)
{
	struct gw_ctx *ctx = r->ctx;
	struct gw_snapshot *snap = NULL;
	struct gw_policy_version v = { 0 };
	struct gw_audit_event ev = {
		.action = "policy_publish", .outcome = "ok", .actor = r->who->id,
		.uid = r->peer->uid, .pid = r->peer->pid, .exe = r->peer->exe, .host = ctx->host,
	};
	const char *name = NULL;
	uint8_t *text = NULL;
	size_t len = 0;
	int64_t latest = 0;
	char err[1024], hex[65], detail[128];
	uint64_t seq;
	json_t *rep = NULL;

	if (sg_get_bytes(r->msg, "policy", true, &text, &len, GW_POLICY_PUBLISH_MAX, r->err,
	                 sizeof(r->err)) < 0 ||
	    sg_get_str(r->msg, "name", false, &name, 256, r->err, sizeof(r->err)) < 0)
		return gw_bad_request(r);
	if (ctx->store == NULL || ctx->audit == NULL) {
		rep = sg_reply_error(CKR_DEVICE_ERROR, "internal", "no store to publish into");
		goto out;
	}
	/* Validated as a reload validates, before anything is stored. */
	if (gw_snapshot_load_text(ctx, name ? name : "policy", (const char *)text, len, &snap, err,
	                          sizeof(err)) < 0) {
		(void)gw_req_record(r, "policy_publish", "denied", err, NULL, NULL, 0, NULL, 0, NULL);
		rep = sg_reply_error(CKR_ARGUMENTS_BAD, "invalid_policy", "%s", err);
		goto out;
	}
	pthread_mutex_lock(&policy_lock);
	if (gw_store_policy_latest(ctx->store, &latest, err, sizeof(err)) < 0) {
		pthread_mutex_unlock(&policy_lock);
		gw_log_error("policy_publish: %s", err);
		rep = sg_reply_error(CKR_DEVICE_ERROR, "internal", "policy store error");
		goto out;
	}
	v.version = latest + 1;
	memcpy(v.sha256, snap->policy->hash, 32);
	v.text = (char *)text;
	v.len = len;
	v.author = (char *)r->who->id;
	v.published = (int64_t)time(NULL);
	hex_of(v.sha256, hex);
	snprintf(detail, sizeof(detail), "{\"version\":%" PRId64 ",\"sha256\":\"%s\"}", v.version,
	         hex);
	ev.detail = detail;
	/* The version and its record in one transaction, or neither. */
	if (gw_audit_record_with(ctx->audit, &ev, publish_apply, &v, &seq, err, sizeof(err)) < 0) {
		pthread_mutex_unlock(&policy_lock);
		gw_log_error("policy_publish refused: %s", err);
		rep = sg_reply_error(CKR_DEVICE_ERROR, "publish_failed", "the policy was not "
		                     "published: %s", err);
		goto out;
	}
	/* In force here at once, named as a restart would name it; the
	 * others hear of it from the feed. */
	if (name_version(snap, v.version, r->snap->token_label) < 0) {
		pthread_mutex_unlock(&policy_lock);
		rep = sg_reply_error(CKR_HOST_MEMORY, "internal", "published as version %" PRId64
		                     ", but not in force here yet: out of memory", v.version);
		goto out;
	}
	if (enforce_locked(ctx, snap) < 0) {
		snap = NULL;
		pthread_mutex_unlock(&policy_lock);
		rep = sg_reply_error(CKR_DEVICE_ERROR, "internal", "published as version %" PRId64
		                     ", but not in force here yet: see the gateway's log", v.version);
		goto out;
	}
	snap = NULL;
	pthread_mutex_unlock(&policy_lock);
	gw_log_info("policy version %" PRId64 " (sha256 %s) published by %s", v.version, hex,
	            r->who->id);
	rep = sg_reply_ok();
	json_object_set_new(rep, "version", json_integer((json_int_t)v.version));
	json_object_set_new(rep, "sha256", json_string(hex));
out:
	gw_snapshot_put(&snap);
	free(text);
	return rep;
}

static json_t *
version_json(const struct gw_policy_version *v)
{
	char hex[65];

	hex_of(v->sha256, hex);
	return json_pack("{s:I,s:s,s:s,s:I}", "version", (json_int_t)v->version, "sha256", hex,
	                 "author", v->author ? v->author : "", "published",
	                 (json_int_t)v->published);
}

json_t *
gw_op_policy_show(struct gw_req *r)
{
	struct gw_policy_version v;
	int64_t n = 0;
	char err[512];
	json_t *rep;
	int got;

	if (sg_get_int(r->msg, "version", false, 0, INT64_MAX, &n, r->err, sizeof(r->err)) < 0)
		return gw_bad_request(r);
	if (r->ctx->store == NULL)
		return sg_reply_error(CKR_DEVICE_ERROR, "internal", "no store");
	got = gw_store_policy_get(r->ctx->store, n, &v, err, sizeof(err));
	if (got < 0) {
		gw_log_error("policy_show: %s", err);
		return sg_reply_error(CKR_DEVICE_ERROR, "internal", "policy store error");
	}
	if (got == 0)
		return sg_reply_error(CKR_ARGUMENTS_BAD, "not_found", n > 0 ? "no policy version %"
		                      PRId64 : "no policy version is published (the gateway runs its "
		                      "policy_path file)", n);
	rep = sg_reply_ok();
	{
		json_t *vj = version_json(&v);

		json_object_update(rep, vj);
		json_decref(vj);
	}
	sg_set_bytes(rep, "text", (const uint8_t *)v.text, v.len);
	json_object_set_new(rep, "in_force", json_boolean(r->snap->policy_version == v.version));
	gw_policy_version_clear(&v);
	return rep;
}

static int
history_fn(void *ctx, const struct gw_policy_version *v)
{
	return json_array_append_new(ctx, version_json(v)) == 0 ? 0 : -1;
}

json_t *
gw_op_policy_history(struct gw_req *r)
{
	int64_t limit = HISTORY_DEFAULT;
	json_t *arr = json_array(), *rep;
	char err[512];

	if (sg_get_int(r->msg, "limit", false, 1, HISTORY_MAX, &limit, r->err, sizeof(r->err)) < 0) {
		json_decref(arr);
		return gw_bad_request(r);
	}
	if (r->ctx->store == NULL ||
	    gw_store_policy_history(r->ctx->store, (size_t)limit, history_fn, arr, err,
	                            sizeof(err)) != 0) {
		json_decref(arr);
		return sg_reply_error(CKR_DEVICE_ERROR, "internal", "policy store error");
	}
	rep = sg_reply_ok();
	json_object_set_new(rep, "versions", arr);
	json_object_set_new(rep, "in_force", json_integer((json_int_t)r->snap->policy_version));
	return rep;
}
