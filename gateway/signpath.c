/*
 * The sign path (signpath.h). Order matters and is the point of this file:
 * parse → who and which seal → the device it comes from → mechanism and input → time window →
 * approval (and document binding) → size probe (answered here, before
 * anything is reserved or a second factor asked) → reserve uses and
 * quotas → second factor → sign on the token → audit record + spent uses
 * committed together → release the signature. A refusal at any step is
 * recorded with its reason. The real EC signature of a size-probing client
 * is made before its record instead: it must have the DER length its
 * probe's placeholder had (sign_fitted), and the record counts the token
 * signatures that took.
 */
#include "signpath.h"
#include "stamp_ops.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "appstore.h"
#include "device.h"
#include "log.h"
#include "quota.h"
#include "refusals.h"
#include "signing.h"
#include "workflow.h"

#define PROBE_SLOTS 256
#define PROBE_TTL 600
#define REFUSAL_SLOTS 256
#define CANDIDATES 64

struct probe {
	pid_t pid;
	unsigned long long start;     /* process start time, against pid reuse */
	uid_t uid;
	char seal[SG_NAME_MAX + 1];
	time_t at;
};

struct gw_probes {
	pthread_mutex_t lock;
	struct probe tab[PROBE_SLOTS];
};

struct refusal {
	char user[SG_NAME_MAX + 1];
	char seal[SG_NAME_MAX + 1];
	char reason[512];
	time_t at;
};

struct gw_refusals {
	pthread_mutex_t lock;
	struct refusal tab[REFUSAL_SLOTS];
};

int
gw_signpath_init(struct gw_ctx *ctx)
{
	ctx->probes = calloc(1, sizeof(*ctx->probes));
	ctx->refusals = calloc(1, sizeof(*ctx->refusals));
	if (ctx->probes == NULL || ctx->refusals == NULL)
		return -1;
	pthread_mutex_init(&ctx->probes->lock, NULL);
	pthread_mutex_init(&ctx->refusals->lock, NULL);
	return 0;
}

void
gw_signpath_fini(struct gw_ctx *ctx)
{
	free(ctx->probes);
	free(ctx->refusals);
	ctx->probes = NULL;
	ctx->refusals = NULL;
}

void
gw_refusal_note(struct gw_ctx *ctx, const char *user, const char *seal, const char *reason)
{
	struct gw_refusals *rf = ctx->refusals;
	struct refusal *slot = NULL;

	if (rf == NULL || user == NULL)
		return;
	pthread_mutex_lock(&rf->lock);
	for (size_t i = 0; i < REFUSAL_SLOTS; i++) {
		struct refusal *e = &rf->tab[i];
		if (strcmp(e->user, user) == 0) {
			slot = e;
			break;
		}
		if (slot == NULL || e->at < slot->at)
			slot = e;      /* the oldest, to be reused */
	}
	snprintf(slot->user, sizeof(slot->user), "%s", user);
	snprintf(slot->seal, sizeof(slot->seal), "%s", seal ? seal : "");
	snprintf(slot->reason, sizeof(slot->reason), "%s", reason);
	slot->at = time(NULL);
	pthread_mutex_unlock(&rf->lock);
}

json_t *
gw_op_why(struct gw_req *r)
{
	struct gw_refusals *rf = r->ctx->refusals;
	json_t *rep = sg_reply_ok();

	pthread_mutex_lock(&rf->lock);
	for (size_t i = 0; i < REFUSAL_SLOTS; i++) {
		struct refusal *e = &rf->tab[i];
		if (e->at != 0 && strcmp(e->user, r->who->id) == 0) {
			json_object_set_new(rep, "seal", json_string(e->seal));
			json_object_set_new(rep, "reason", json_string(e->reason));
			json_object_set_new(rep, "time", json_integer(e->at));
			break;
		}
	}
	pthread_mutex_unlock(&rf->lock);
	return rep;
}

/* Start time of pid (field 22 of /proc/PID/stat), 0 if unknown. */
static unsigned long long
proc_start(pid_t pid)
{
	char path[64], buf[1024], *p;
	unsigned long long start = 0;
	FILE *f;
	size_t n;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "re");
	if (f == NULL)
		return 0;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	/* comm may hold spaces and ')': skip to the last ')'. */
	p = strrchr(buf, ')');
	if (p == NULL)
		return 0;
	/* After ") " come fields 3..; start time is field 22. */
	if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d %*d %*d %*d %*d %llu",
	           &start) != 1)
		return 0;
	return start;
}

/* True when the client process runs a program the policy names as one
 * that probes (clients.size_probe). */
static bool
is_size_probe_client(struct gw_req *r)
{
	const struct gw_policy *p = r->snap->policy;

	for (size_t i = 0; i < p->n_size_probe; i++)
		if (strcmp(p->size_probe[i], r->peer->exe) == 0)
			return r->ctx->probes != NULL;
	return false;
}

/* True when this request of a size-probe client is its process's first
 * signature with seal; remembers it. */
static bool
is_size_probe(struct gw_req *r, const struct gw_seal *seal)
{
	struct gw_probes *pr = r->ctx->probes;
	struct probe *slot = NULL;
	unsigned long long start;
	time_t now = time(NULL);
	bool first = true;

	start = proc_start(r->peer->pid);
	pthread_mutex_lock(&pr->lock);
	for (size_t i = 0; i < PROBE_SLOTS; i++) {
		struct probe *e = &pr->tab[i];
		if (e->at != 0 && now - e->at > PROBE_TTL)
			memset(e, 0, sizeof(*e));
		if (e->at != 0 && e->pid == r->peer->pid && e->start == start &&
		    e->uid == r->peer->uid && strcmp(e->seal, seal->id) == 0)
			first = false;
		if (slot == NULL || e->at < slot->at)
			slot = e;
	}
	if (first) {
		slot->pid = r->peer->pid;
		slot->start = start;
		slot->uid = r->peer->uid;
		snprintf(slot->seal, sizeof(slot->seal), "%s", seal->id);
		slot->at = now;
	}
	pthread_mutex_unlock(&pr->lock);
	return first;
}

struct sign_ctx {
	struct gw_req *r;
	const struct gw_seal *seal;
	const char *seal_id;          /* as asked for: recorded when seal is NULL */
	unsigned long mech;
	const struct gw_sign_plan *plan;
	int64_t app_id;
	const uint8_t *doc; /* the application's document digest, or NULL */
	const char *detail; /* for refusals: JSON, or NULL */
};

static void
event(struct sign_ctx *s, const char *action, const char *outcome, const char *reason,
      const char *detail, struct gw_audit_event *ev)
{
	struct gw_req *r = s->r;

	*ev = (struct gw_audit_event){
		.action = action, .outcome = outcome, .reason = reason,
		.actor = r->who ? r->who->id : NULL,
		.uid = r->peer->uid, .pid = r->peer->pid, .exe = r->peer->exe,
		.host = r->ctx->host, .seal = s->seal ? s->seal->id : s->seal_id,
		.application = s->app_id, .mechanism = s->mech,
		.doc_digest = s->doc, .doc_digest_len = s->doc ? 32 : 0,
		.signed_digest = s->plan ? s->plan->signed_digest : NULL,
		.signed_digest_len = s->plan ? s->plan->signed_digest_len : 0,
		.detail = detail,
	};
}

static uint64_t
record(struct sign_ctx *s, const char *action, const char *outcome, const char *reason,
       gw_audit_apply_fn apply, void *arg, char *err, size_t errlen)
{
	struct gw_audit_event ev;
	uint64_t seq = 0;
	char e[256] = "";

	if (s->r->ctx->audit == NULL)
		return 0;
	event(s, action, outcome, reason, s->detail, &ev);
	if (apply == NULL && gw_reflimit_req(s->r, action, outcome, reason, ev.actor))
		return 0;   /* counted for a summary record (refusals.h) */
	if (gw_audit_record_with(s->r->ctx->audit, &ev, apply, arg, &seq, e, sizeof(e)) < 0) {
		gw_log_error("audit record for %s (%s) by %s not written: %s", action, outcome,
		             ev.actor ? ev.actor : "-", e);
		if (err)
			snprintf(err, errlen, "%s", e);
		return 0;
	}
	return seq;
}

/* Operating equipment (docs/policy.md): a seal whose policy lists device
 * groups signs only for a device of one of them. A request on the Unix
 * socket is from the gateway's own host, group "local"; one through the
 * web front (it carries "via") is from a browser, no device at all. false
 * with why (for people) when the request's device may not use seal. */
static bool
device_allowed(struct gw_req *r, const struct gw_seal *seal, char *why, size_t whylen)
{
	char group[GW_DEVICE_GROUP_MAX + 1] = "", list[160] = "";
	size_t off = 0;

	if (seal->n_devices == 0)
		return true;
	for (size_t i = 0; i < seal->n_devices && off < sizeof(list); i++) {
		int n = snprintf(list + off, sizeof(list) - off, "%s%s", i ? ", " : "", seal->devices[i]);
		off += n > 0 ? (size_t)n : 0;
	}
	if (json_object_get(r->msg, "via") != NULL) {
		snprintf(why, whylen, "the %s may be used only from the devices of %s, not through "
		         "the web front", seal->name, list);
		return false;
	}
	if (r->peer->device == 0)
		snprintf(group, sizeof(group), "%s", GW_DEVICE_GROUP_LOCAL);
	else if (gw_devices_group(r->ctx->devices, r->peer->device, group, sizeof(group)) < 0)
		group[0] = '\0';
	for (size_t i = 0; group[0] != '\0' && i < seal->n_devices; i++)
		if (strcmp(seal->devices[i], group) == 0)
			return true;
	if (r->peer->device == 0)
		snprintf(why, whylen, "the %s may be used only from the devices of %s, not on the "
		         "gateway's own host (local)", seal->name, list);
	else if (group[0] == '\0')
		snprintf(why, whylen, "the %s may be used only from the devices of %s; device %lld is "
		         "in no group", seal->name, list, (long long)r->peer->device);
	else
		snprintf(why, whylen, "the %s may be used only from the devices of %s; device %lld is "
		         "in %s", seal->name, list, (long long)r->peer->device, group);
	return false;
}

static json_t *
refuse(struct sign_ctx *s, unsigned long rv, const char *code, const char *outcome)
{
	struct gw_req *r = s->r;

	record(s, "sign", outcome, r->err, NULL, NULL, NULL, 0);
	gw_refusal_note(r->ctx, r->who->id, s->seal ? s->seal->id : NULL, r->err);
	return sg_reply_error(rv, code, "%s", r->err);
}

/* The committed part of a signature: its use and quota counters, each
 * decided by the store (gw_quota_commit_tx). */
struct spend {
	struct gw_quota_resv *resv;
	bool unspendable;     /* the store refused the use or a unit: revoked, expired,
	                       * used up, or a quota filled at another gateway meanwhile */
	bool quota_full;      /* of those: a quota (why says which) */
	char why[160];
};

static int
spend_tx(struct gw_store *st, void *arg, char *err, size_t errlen)
{
	struct spend *sp = arg;
	int rc = gw_quota_commit_tx(st, sp->resv, err, errlen);

	if (rc < 0) {
		sp->unspendable = rc == -2;
		sp->quota_full = rc == -2 && strstr(err, "quota") != NULL;
		snprintf(sp->why, sizeof(sp->why), "%s", err);
		return -1;
	}
	return 0;
}

/* Gives back what spend_tx took, for a signature the token then failed. */
static int
refund_tx(struct gw_store *st, void *arg, char *err, size_t errlen)
{
	struct spend *sp = arg;

	return gw_quota_refund_tx(st, sp->resv, err, errlen);
}

/* What the sign path keeps of the application a signature spends: the
 * application itself (about 45 KiB) stays on the heap. */
struct chosen {
	int64_t id;
	uint32_t uses_granted, uses_left;
	bool has_doc;
	uint8_t doc_digest[32];
};

/* Finds an authorized application of who for seal with a use left that
 * covers this signature, among all of them (paged, not only the newest).
 * Fills *out. Returns 1 found, 0 none (r->err says why in words), -1
 * store error or out of memory. */
static int
find_application(struct gw_req *r, const struct gw_seal *seal, const struct gw_sign_input *in,
                 const struct gw_sign_plan *plan, time_t now, struct chosen *out)
{
	const struct gw_app_filter f = {
		.applicant = r->who->id, .seal = seal->id,
		.states = (1u << GW_APP_AUTHORIZED) | (1u << GW_APP_PENDING),
	};
	int64_t ids[CANDIDATES], from = 0, pending = 0;
	size_t n = 0;
	bool bound_elsewhere = false;
	struct gw_application *app = malloc(sizeof(*app));
	int rv = -1;

	if (app == NULL)
		return -1;
	/* Oldest first: spend the application that will expire soonest. */
	do {
		if (gw_appstore_page(r->ctx->store, &f, true, from, ids, CANDIDATES, &n) < 0)
			goto out;
		for (size_t k = 0; k < n; k++) {
			from = ids[k];
			if (gw_appstore_get(r->ctx->store, ids[k], app) != 1)
				continue;
			if (app->state == GW_APP_PENDING) {
				if (pending == 0 && (int64_t)now < app->valid_until)
					pending = app->id;
				continue;
			}
			if (!gw_wf_usable(app, now) ||
			    gw_quota_app_left(r->ctx->quota, seal->id, app->id, app->uses_left) <= 0)
				continue;
			/* A stamp of the document checked by stamp_prepare
			 * binds as the document itself does (docs/stamp.md). */
			if (app->has_doc && !gw_sign_binds_document(in, plan, app->doc_digest) &&
			    !gw_stamp_prepared(r, app->id, in, plan)) {
				bound_elsewhere = true;
				continue;
			}
			out->id = app->id;
			out->uses_granted = app->uses_granted;
			out->uses_left = app->uses_left;
			out->has_doc = app->has_doc;
			memcpy(out->doc_digest, app->doc_digest, sizeof(out->doc_digest));
			rv = 1;
			goto out;
		}
	} while (n == CANDIDATES);
	if (bound_elsewhere)
		snprintf(r->err, sizeof(r->err),
		         "your approval for the %s is bound to another document (SHA-256); this data is not that document "
		         "or its signed attributes (use a hash-and-sign mechanism so the gateway can see them)",
		         seal->name);
	else if (pending != 0 && gw_appstore_get(r->ctx->store, pending, app) == 1)
		gw_wf_describe(r->snap->policy, app, now, r->err, sizeof(r->err));
	else
		snprintf(r->err, sizeof(r->err),
		         "no authorized application of %s for the %s with a use left: apply with `sealctl apply --seal %s`",
		         r->who->id, seal->name, seal->id);
	rv = 0;
out:
	free(app);
	return rv;
}

/* Whether one more signature fits the seal's quotas now, without
 * reserving anything (for a size probe). 0, or -1 with r->err. The
 * application's use was checked by find_application. */
static int
quota_room(struct sign_ctx *s, time_t now)
{
	struct gw_req *r = s->r;

	if (r->ctx->quota == NULL || gw_quota_left(r->ctx->quota, s->seal, r->who->id, now) != 0)
		return 0;
	snprintf(r->err, sizeof(r->err),
	         "a quota of the %s is used up, so the signature this size probe announces would be refused",
	         s->seal->name);
	return -1;
}

static void
placeholder(const struct gw_seal_key *key, uint8_t *sig, size_t len)
{
	size_t target = key->type == GW_KEY_EC ? gw_ecdsa_target_len(key, len) : 0;

	/* EC: a random r||s of the DER length the real signature will be
	 * given (sign_fitted), as poppler 22.12 keeps the probe's length. */
	if (target != 0 && gw_ecdsa_placeholder(key, sig, len, target) == 0)
		return;
	/* Random bytes of the real length, top byte cleared so that as an RSA
	 * value it stays below any modulus; it verifies against nothing. */
	if (RAND_bytes(sig, (int)len) != 1)
		memset(sig, 0x5a, len);
	sig[0] = 0;
}

/* Signs on the token until the raw r||s has DER length target, replacing s
 * by n - s where that alone does it; at most GW_ECDSA_FIT_TRIES token
 * signatures (one that does not fit is overwritten by the next, and sig is
 * wiped when none did). *tries says how many it took. CKR_OK with a
 * fitting sig; the token's error; or CKR_FUNCTION_FAILED with *missed. */
static CK_RV
sign_fitted(struct gw_token *tok, const struct gw_seal_key *key, struct gw_sign_plan *plan,
            size_t target, uint8_t *sig, size_t cap, size_t *siglen, int *tries, bool *missed)
{
	CK_RV rv = CKR_FUNCTION_FAILED;

	*missed = false;
	for (*tries = 0; *tries < GW_ECDSA_FIT_TRIES; ) {
		int fit;

		*siglen = cap;
		(*tries)++;
		rv = gw_token_sign(tok, key, &plan->mech, plan->tbs, plan->tbs_len, sig, siglen);
		if (rv != CKR_OK)
			return rv;
		fit = gw_ecdsa_fit(key, sig, *siglen, target);
		if (fit == 1)
			return CKR_OK;
		if (fit < 0) {
			gw_log_error("the token's ECDSA signature of %zu bytes is not r||s below the curve order",
			             *siglen);
			OPENSSL_cleanse(sig, cap);
			return CKR_DEVICE_ERROR;
		}
	}
	OPENSSL_cleanse(sig, cap);
	gw_log_error("%d ECDSA signatures of the token in a row had no DER length of %zu bytes, "
	             "even with s flipped: refused", *tries, target);
	*missed = true;
	return CKR_FUNCTION_FAILED;
}

static int
get_pss(struct gw_req *r, struct gw_sign_input *in)
{
	json_t *pss = json_object_get(r->msg, "pss");
	int64_t hash = 0, mgf = 0, slen = 0;

	if (pss == NULL || json_is_null(pss))
		return 0;
	if (!json_is_object(pss)) {
		snprintf(r->err, sizeof(r->err), "field \"pss\" must be an object");
		return -1;
	}
	if (sg_get_int(pss, "hash", true, 0, UINT32_MAX, &hash, r->err, sizeof(r->err)) < 0 ||
	    sg_get_int(pss, "mgf", true, 0, UINT32_MAX, &mgf, r->err, sizeof(r->err)) < 0 ||
	    sg_get_int(pss, "slen", true, 0, 4096, &slen, r->err, sizeof(r->err)) < 0)
		return -1;
	in->has_pss = true;
	in->pss.hashAlg = (CK_MECHANISM_TYPE)hash;
	in->pss.mgf = (CK_RSA_PKCS_MGF_TYPE)mgf;
	in->pss.sLen = (CK_ULONG)slen;
	return 0;
}

json_t *
gw_op_sign(struct gw_req *r)
{
	const struct gw_policy *p = r->snap->policy;
	const char *seal_id = NULL;
	int64_t mech = 0, total = -1;
	uint8_t *digest = NULL, *data = NULL;
	size_t digest_len = 0, data_len = 0, idx;
	struct gw_sign_input in = { 0 };
	struct gw_sign_plan plan;
	struct sign_ctx s = { .r = r };
	const struct gw_seal_key *key = NULL;
	struct chosen app = { 0 };
	struct gw_quota_resv resv = { 0 };
	struct spend sp;
	uint8_t sig[1024];
	size_t siglen = sizeof(sig), fit_target = 0;
	char fit_detail[96] = "";
	int fit_tries = 0;
	bool fit_missed = false;
	uint64_t seq;
	time_t now = time(NULL);
	json_t *rep = NULL;
	char err[200];
	CK_RV rv;

	if (sg_get_str(r->msg, "seal", true, &seal_id, SG_NAME_MAX, r->err, sizeof(r->err)) < 0 ||
	    sg_get_int(r->msg, "mechanism", true, 0, UINT32_MAX, &mech, r->err, sizeof(r->err)) < 0 ||
	    sg_get_bytes(r->msg, "digest", false, &digest, &digest_len, 64, r->err, sizeof(r->err)) < 0 ||
	    sg_get_bytes(r->msg, "data", false, &data, &data_len, SG_EDDSA_DATA_MAX, r->err, sizeof(r->err)) < 0 ||
	    sg_get_int(r->msg, "data_len", false, 0, INT64_MAX, &total, r->err, sizeof(r->err)) < 0 ||
	    get_pss(r, &in) < 0) {
		rep = sg_reply_error(CKR_ARGUMENTS_BAD, "bad_request", "%s", r->err);
		goto out;
	}
	in.mechanism = (CK_MECHANISM_TYPE)mech;
	in.digest = digest;
	in.digest_len = digest_len;
	in.data = data;
	in.data_len = data_len;
	in.total_len = total < 0 ? data_len : (uint64_t)total;
	s.mech = in.mechanism;
	s.seal_id = seal_id;

	/* Who and which seal. */
	for (idx = 0; idx < p->n_seals; idx++)
		if (strcmp(p->seals[idx].id, seal_id) == 0)
			break;
	if (idx == p->n_seals || !gw_policy_may_use(p, r->who, &p->seals[idx])) {
		snprintf(r->err, sizeof(r->err), "%s may not use a seal named \"%s\"", r->who->id, seal_id);
		rep = refuse(&s, CKR_KEY_HANDLE_INVALID, "no_seal", "denied");
		goto out;
	}
	s.seal = &p->seals[idx];
	/* A seal of another site: its key is on that site's token, and this
	 * gateway never looked for it (docs/sites.md). */
	if (strcmp(s.seal->site, gw_ctx_site(r->ctx)) != 0) {
		snprintf(r->err, sizeof(r->err), "the %s is held by site %s; sign at that site's gateway",
		         s.seal->name, s.seal->site);
		rep = refuse(&s, CKR_FUNCTION_REJECTED, "other_site", "denied");
		goto out;
	}
	/* The device it comes from, before any of the token's work. */
	if (!device_allowed(r, s.seal, r->err, sizeof(r->err))) {
		rep = refuse(&s, CKR_FUNCTION_REJECTED, "device", "denied");
		goto out;
	}
	if (r->ctx->cfg != NULL && r->ctx->cfg->no_token) {
		snprintf(r->err, sizeof(r->err), "the %s cannot be used here: this is a management "
		         "gateway without a token (backend_token: none); sign at the gateway of site %s",
		         s.seal->name, s.seal->site);
		rep = refuse(&s, CKR_FUNCTION_REJECTED, "no_token", "denied");
		goto out;
	}
	key = r->snap->keys ? r->snap->keys[idx] : NULL;
	/* Without a card watcher nobody else notices a token that came
	 * back: a signer tries (at most once a second, never again with a
	 * PIN the token refused). */
	if (key != NULL && r->ctx->token != NULL && !gw_token_present(r->ctx->token))
		gw_token_reconnect(r->ctx->token);
	if (key == NULL || !gw_req_token_usable(r)) {
		char why[200] = "its token is not present";

		if (r->ctx->token != NULL && key != NULL) {
			gw_token_reason(r->ctx->token, why, sizeof(why));
			if (why[0] == '\0')
				snprintf(why, sizeof(why), "its token is not present");
		}
		snprintf(r->err, sizeof(r->err), "the %s is not available: %s",
		         s.seal->name, why);
		rep = refuse(&s, CKR_TOKEN_NOT_PRESENT, "token_absent", "error");
		goto out;
	}

	/* Mechanism and input. */
	if (!gw_policy_mechanism_allowed(s.seal, in.mechanism) ||
	    !gw_mech_fits_key(in.mechanism, key->type)) {
		snprintf(r->err, sizeof(r->err), "mechanism %s is not allowed for the %s",
		         gw_mech_name(in.mechanism), s.seal->name);
		rep = refuse(&s, CKR_MECHANISM_INVALID, "mechanism", "denied");
		goto out;
	}
	rv = gw_sign_plan(key, &in, &plan, r->err, sizeof(r->err));
	if (rv != CKR_OK) {
		rep = refuse(&s, rv, "bad_data", "denied");
		goto out;
	}
	s.plan = &plan;

	/* Time window. */
	if (!gw_policy_in_window(s.seal, now)) {
		struct tm tm;
		gw_policy_local_time(s.seal, now, &tm);
		snprintf(r->err, sizeof(r->err),
		         "the %s may not be used now (%04d-%02d-%02d %02d:%02d %s): outside its time windows",
		         s.seal->name, tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
		         tm.tm_min, gw_tz_name(s.seal->tz));
		rep = refuse(&s, CKR_FUNCTION_REJECTED, "denied", "denied");
		goto out;
	}

	/* Approval. */
	if (s.seal->approval_required) {
		int f = find_application(r, s.seal, &in, &plan, now, &app);
		if (f < 0) {
			snprintf(r->err, sizeof(r->err), "the application store could not be read");
			rep = refuse(&s, CKR_DEVICE_ERROR, "internal", "error");
			goto out;
		}
		if (f == 0) {
			rep = refuse(&s, CKR_FUNCTION_REJECTED, "denied", "denied");
			goto out;
		}
		s.app_id = app.id;
		s.doc = app.has_doc ? app.doc_digest : NULL;
	}

	/* A size probe is decided first, before anything is reserved or a
	 * second factor is asked for (habit 10: a size query changes no
	 * state): it gets a placeholder that verifies against nothing, so it
	 * needs no per-signature code, waits for no confirmation and holds no
	 * quota unit. It is refused, as before, when the quotas have no room:
	 * the signature it announces would be. */
	if (is_size_probe_client(r)) {
		if (quota_room(&s, now) < 0) {
			rep = refuse(&s, CKR_FUNCTION_REJECTED, "denied", "denied");
			goto out;
		}
		if (is_size_probe(r, s.seal)) {
			placeholder(key, sig, plan.sig_len);
			seq = record(&s, "sign_probe", "ok",
			             "size probe: answered with a placeholder of the signature's length; no signature released, nothing spent",
			             NULL, NULL, NULL, 0);
			if (seq == 0) {
				rep = sg_reply_error(CKR_DEVICE_ERROR, "audit_failed",
				                     "the audit record could not be written");
				goto out;
			}
			rep = sg_reply_ok();
			sg_set_bytes(rep, "signature", sig, plan.sig_len);
			json_object_set_new(rep, "record", json_integer((json_int_t)seq));
			json_object_set_new(rep, "probe", json_true());
			goto out;
		}
		/* Its real signature: of the DER length the placeholder had. */
		if (key->type == GW_KEY_EC)
			fit_target = gw_ecdsa_target_len(key, plan.sig_len);
	}

	/* The uses and quota units this signature would spend are reserved
	 * before a second factor is spent on it (a per-signature code, a
	 * confirmation), so a signature the quotas refuse is refused first,
	 * and one waiting for its confirmation holds its units; they are given
	 * back if it does not happen. */
	if (gw_quota_reserve(r->ctx->quota, s.seal, r->who->id, now, s.app_id,
	                     s.app_id ? app.uses_granted : 0, s.app_id ? app.uses_left : 0,
	                     &resv, r->err, sizeof(r->err)) < 0) {
		rep = refuse(&s, CKR_FUNCTION_REJECTED, "denied", "denied");
		goto out;
	}
	r->changed = true;   /* units reserved: every refusal from here on is recorded */

	/* Second factor as the seal's policy wants it (auth.c). */
	{
		unsigned long mrv;
		const char *mcode;
		if (gw_auth_check_sign(r, s.seal, &mrv, &mcode) < 0) {
			gw_quota_release(r->ctx->quota, &resv, false);
			rep = refuse(&s, mrv, mcode, "denied");
			goto out;
		}
	}

	/* Sign, record with the spent uses, release (the reservation above).
	 * The record and the spent uses are committed while the token signs:
	 * everything the record says is known now but the token's answer. A
	 * signature leaves only when both succeeded; a token failure after a
	 * committed record is voided by a second record that gives the uses
	 * back (docs/audit.md, "sign_void"). */
	memset(&sp, 0, sizeof(sp));
	sp.resv = &resv;
	{
		struct gw_audit_event ev;
		struct gw_audit_ticket *ticket = NULL;
		int recorded;

		/* A signature of a promised length is made before its record is
		 * submitted: the record says how many token signatures it took,
		 * and one that never fits is refused with nothing spent. */
		rv = CKR_OK;
		if (fit_target != 0) {
			rv = sign_fitted(r->ctx->token, key, &plan, fit_target, sig, sizeof(sig), &siglen,
			                 &fit_tries, &fit_missed);
			snprintf(fit_detail, sizeof(fit_detail),
			         "{\"token_signatures\":%d,\"der_len\":%zu%s}", fit_tries, fit_target,
			         fit_missed ? ",\"bound_hit\":true" : "");
		}
		event(&s, "sign", "ok", NULL, fit_target != 0 ? fit_detail : NULL, &ev);
		/* (spend_tx counts all or none: no savepoint on PostgreSQL) */
		ev.apply_whole = true;
		recorded = rv == CKR_OK && r->ctx->audit != NULL &&
		           gw_audit_submit_with(r->ctx->audit, &ev, spend_tx, &sp, &ticket,
		                                err, sizeof(err)) == 0;
		if (fit_target == 0)
			rv = gw_token_sign(r->ctx->token, key, &plan.mech, plan.tbs, plan.tbs_len, sig, &siglen);
		seq = 0;
		if (recorded && gw_audit_wait(r->ctx->audit, &ticket, &seq, err, sizeof(err)) < 0)
			seq = 0;
		if (!recorded)
			seq = 0;
	}
	if (rv != CKR_OK) {
		bool spent = false;

		if (seq != 0) {
			char detail[64];
			struct gw_audit_event ev;
			uint64_t vseq = 0;

			snprintf(detail, sizeof(detail), "{\"voids\":%llu}", (unsigned long long)seq);
			event(&s, "sign_void", "error", "the token failed after the record was written; "
			      "no signature was released and the use is given back", detail, &ev);
			spent = gw_audit_record_with(r->ctx->audit, &ev, refund_tx, &sp, &vseq,
			                             err, sizeof(err)) < 0;
		}
		gw_quota_release(r->ctx->quota, &resv, spent);
		if (fit_target != 0)
			s.detail = fit_detail;   /* how many token signatures were tried */
		if (fit_missed) {
			snprintf(r->err, sizeof(r->err),
			         "the token gave no signature with the %s of the DER length the size probe announced "
			         "(%zu bytes) in %d tries; no signature was released and nothing was spent",
			         s.seal->name, fit_target, fit_tries);
			rep = refuse(&s, CKR_FUNCTION_FAILED, "internal", "error");
			goto out;
		}
		if (rv == CKR_KEY_CHANGED)
			snprintf(r->err, sizeof(r->err),
			         "the token refused to sign with the %s: the object it offers for the seal's key "
			         "is not that key (its CKA_ID, type or public key differ), so nothing was signed",
			         s.seal->name);
		else
			snprintf(r->err, sizeof(r->err), "the token refused to sign with the %s (CKR 0x%lx)",
			         s.seal->name, rv);
		rep = refuse(&s, rv == CKR_DEVICE_REMOVED || rv == CKR_TOKEN_NOT_PRESENT ?
		             CKR_TOKEN_NOT_PRESENT : CKR_DEVICE_ERROR,
		             rv == CKR_DEVICE_REMOVED || rv == CKR_TOKEN_NOT_PRESENT ? "token_absent" : "internal",
		             "error");
		goto out;
	}
	gw_quota_release(r->ctx->quota, &resv, seq != 0);
	if (seq == 0 && sp.unspendable) {
		/* The store decides (docs/workflow.md): the application changed
		 * between the check above and the commit (a revoke won), or a
		 * quota was filled meanwhile, at this gateway or another one
		 * sharing the store. The signature made is wiped below. */
		if (sp.quota_full) {
			gw_quota_refresh(r->ctx->quota, &resv);
			snprintf(r->err, sizeof(r->err), "%s while this signature was made; no signature "
			         "was released", sp.why);
		} else {
			snprintf(r->err, sizeof(r->err),
			         "application #%lld for the %s was revoked, expired or used up while this "
			         "signature was made; no signature was released", (long long)s.app_id,
			         s.seal->name);
		}
		rep = refuse(&s, CKR_FUNCTION_REJECTED, "denied", "denied");
		goto out;
	}
	if (seq == 0) {
		/* No record, no signature. Try to leave a trace of the refusal. */
		snprintf(r->err, sizeof(r->err),
		         "the audit record could not be made durable (%.160s); no signature was released", err);
		record(&s, "sign", "error", r->err, NULL, NULL, NULL, 0);
		gw_refusal_note(r->ctx, r->who->id, s.seal->id, r->err);
		rep = sg_reply_error(CKR_DEVICE_ERROR, "audit_failed", "%s", r->err);
		goto out;
	}
	rep = sg_reply_ok();
	sg_set_bytes(rep, "signature", sig, siglen);
	json_object_set_new(rep, "record", json_integer((json_int_t)seq));
	if (s.app_id)
		json_object_set_new(rep, "application", json_integer(s.app_id));
out:
	OPENSSL_cleanse(sig, sizeof(sig));
	free(digest);
	free(data);
	return rep;
}

void
gw_signpath_state(struct gw_ctx *ctx, const struct gw_policy *p, const struct gw_person *who,
                  const struct gw_seal *seal, int64_t *uses_left, int64_t *quota_left)
{
	const struct gw_app_filter f = {
		.applicant = who->id, .seal = seal->id, .states = 1u << GW_APP_AUTHORIZED,
	};
	int64_t ids[CANDIDATES], from = 0;
	size_t n = 0;
	time_t now = time(NULL);
	struct gw_application *app;

	(void)p;
	/* Shown to people, for any site's seal: the store's count, not a copy
	 * this gateway read once (another site spends that seal's quota). */
	*quota_left = ctx->quota ? gw_quota_left_stored(ctx->quota, seal, who->id, now) : -1;
	if (!seal->approval_required) {
		*uses_left = -1;
		return;
	}
	*uses_left = 0;
	if (ctx->store == NULL || (app = malloc(sizeof(*app))) == NULL)
		return;
	do {
		if (gw_appstore_page(ctx->store, &f, true, from, ids, CANDIDATES, &n) < 0)
			break;
		for (size_t i = 0; i < n; i++) {
			from = ids[i];
			if (gw_appstore_get(ctx->store, ids[i], app) == 1 && gw_wf_usable(app, now))
				*uses_left += gw_quota_app_left(ctx->quota, seal->id, app->id, app->uses_left);
		}
	} while (n == CANDIDATES);
	free(app);
}
