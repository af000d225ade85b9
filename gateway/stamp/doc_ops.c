/*
 * doc_put and doc_get (doc_ops.h). An upload is one session's: its chunks
 * come in order into a buffer reserved at the first one and hashed as they
 * come; the document is stored when the last byte is in and the SHA-256
 * is the one announced. What uploads may hold is bounded: one per
 * session, DOC_UPLOADS_MAX in all, their sizes together at most
 * DOC_BUDGET_FACTOR documents of the largest size, an idle one dropped
 * after DOC_UPLOAD_IDLE s when room is needed.
 */
#include "doc_ops.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <openssl/evp.h>
#include <sodium.h>

#include "appstore.h"
#include "config.h"
#include "log.h"
#include "refusals.h"
#include "workflow.h"

#define DOC_UPLOADS_MAX 16
#define DOC_UPLOAD_IDLE 300
#define DOC_BUDGET_FACTOR 4
/* Applications bound to one document looked at for a reader's right. */
#define DOC_APPS_MAX 64

struct upload {
	bool used;
	const struct gw_ctx *ctx;       /* the gateway (tests run several in a process) */
	uint8_t sid[GW_AUTH_SID_LEN];   /* the session's */
	uint8_t sha256[32];             /* announced */
	char name[GW_DOC_NAME_MAX + 1];
	uint64_t size, got;
	uint8_t *data;
	EVP_MD_CTX *md;
	time_t last;
};

static pthread_mutex_t uploads_lock = PTHREAD_MUTEX_INITIALIZER;
static struct upload uploads[DOC_UPLOADS_MAX];

static void
upload_drop(struct upload *u)
{
	free(u->data);
	EVP_MD_CTX_free(u->md);
	memset(u, 0, sizeof(*u));
}

static uint64_t
max_size(const struct gw_req *r)
{
	return r->ctx->cfg && r->ctx->cfg->document_max_size ? r->ctx->cfg->document_max_size :
	       GW_DOC_SIZE_DEFAULT;
}

static int
get_sha(struct gw_req *r, uint8_t out[32])
{
	const char *hex = NULL;
	size_t n = 0;

	if (sg_get_str(r->msg, "sha256", true, &hex, 64, r->err, sizeof(r->err)) < 0)
		return -1;
	if (strlen(hex) != 64 || sodium_hex2bin(out, 32, hex, 64, NULL, &n, NULL) != 0 || n != 32) {
		snprintf(r->err, sizeof(r->err), "sha256 must be 64 hex digits");
		return -1;
	}
	return 0;
}

/* Records an event of r about document sha256 (refusals through the
 * refusal limiter, refusals.h). 0, or -1 when it could not be written. */
static int
record(struct gw_req *r, const char *action, const char *outcome, const char *reason,
       const uint8_t sha256[32], const char *detail)
{
	struct gw_audit_event ev = {
		.action = action, .outcome = outcome, .reason = reason,
		.actor = r->who ? r->who->id : NULL, .uid = r->peer->uid, .pid = r->peer->pid,
		.exe = r->peer->exe, .host = r->ctx->host,
		.doc_digest = sha256, .doc_digest_len = 32, .detail = detail,
	};
	uint64_t seq;

	if (strcmp(outcome, "ok") != 0 && gw_reflimit_req(r, action, outcome, reason, ev.actor))
		return 0;
	if (r->ctx->audit == NULL || gw_audit_record(r->ctx->audit, &ev, &seq) < 0) {
		gw_log_error("audit record for %s (%s) could not be written", action, outcome);
		return -1;
	}
	return 0;
}

static json_t *
refuse(struct gw_req *r, const uint8_t sha256[32], unsigned long rv, const char *code)
{
	(void)record(r, "document_store", "denied", r->err, sha256, NULL);
	return sg_reply_error(rv, code, "%s", r->err);
}

/* The upload of this session, or a free slot (an idle one freed for it)
 * for a new one; NULL when every slot is busy. Lock held. */
static struct upload *
upload_find(struct gw_req *r, bool make, time_t now)
{
	struct upload *free_slot = NULL;

	for (size_t i = 0; i < DOC_UPLOADS_MAX; i++) {
		struct upload *u = &uploads[i];
		if (u->used && u->ctx == r->ctx && sodium_memcmp(u->sid, r->login.sid, GW_AUTH_SID_LEN) == 0)
			return u;
		if (u->used && now - u->last > DOC_UPLOAD_IDLE)
			upload_drop(u);
		if (!u->used && free_slot == NULL)
			free_slot = u;
	}
	return make ? free_slot : NULL;
}

/* The bytes every upload but skip has reserved. Lock held. */
static uint64_t
reserved(const struct upload *skip)
{
	uint64_t n = 0;

	for (size_t i = 0; i < DOC_UPLOADS_MAX; i++)
		if (uploads[i].used && &uploads[i] != skip)
			n += uploads[i].size;
	return n;
}

json_t *
gw_op_doc_put(struct gw_req *r)
{
	uint8_t sha[32], md[32];
	const char *name = NULL;
	int64_t size = 0, offset = 0;
	uint8_t *data = NULL;
	size_t len = 0;
	struct upload *u = NULL, done = { 0 };
	struct gw_doc_info info;
	time_t now = time(NULL);
	unsigned mdlen = 0;
	char detail[GW_DOC_NAME_MAX * 6 + 64], err[256], hex[65];
	json_t *rep = NULL, *jn;
	int stored;

	if (get_sha(r, sha) < 0)
		return gw_bad_request(r);
	if (json_is_integer(json_object_get(r->msg, "size")) &&
	    json_integer_value(json_object_get(r->msg, "size")) > (json_int_t)max_size(r)) {
		snprintf(r->err, sizeof(r->err), "a document may have at most %" PRIu64 " bytes "
		         "(document_max_size)", max_size(r));
		return refuse(r, sha, CKR_DATA_LEN_RANGE, "too_large");
	}
	if (sg_get_int(r->msg, "size", true, 0, (int64_t)max_size(r), &size, r->err, sizeof(r->err)) < 0 ||
	    sg_get_int(r->msg, "offset", true, 0, INT64_MAX, &offset, r->err, sizeof(r->err)) < 0 ||
	    sg_get_str(r->msg, "name", false, &name, GW_DOC_NAME_MAX, r->err, sizeof(r->err)) < 0 ||
	    sg_get_bytes(r->msg, "data", true, &data, &len, GW_DOC_CHUNK_MAX, r->err, sizeof(r->err)) < 0)
		return gw_bad_request(r);
	if ((uint64_t)offset > (uint64_t)size || len > (uint64_t)size - (uint64_t)offset) {
		snprintf(r->err, sizeof(r->err), "a chunk of %zu bytes at %" PRId64 " goes past the "
		         "document's %" PRId64 " bytes", len, offset, size);
		rep = gw_bad_request(r);
		goto out;
	}

	pthread_mutex_lock(&uploads_lock);
	u = upload_find(r, offset == 0, now);
	if (offset == 0) {
		/* A first chunk starts this session's upload anew. */
		if (u != NULL && u->used)
			upload_drop(u);
		if (u == NULL || reserved(u) + (uint64_t)size >
		                 (uint64_t)DOC_BUDGET_FACTOR * max_size(r)) {
			pthread_mutex_unlock(&uploads_lock);
			snprintf(r->err, sizeof(r->err), "too many documents are being uploaded: try "
			         "again in a moment");
			rep = sg_reply_error(CKR_DEVICE_MEMORY, "busy", "%s", r->err);
			goto out;
		}
		u->used = true;
		u->ctx = r->ctx;
		memcpy(u->sid, r->login.sid, GW_AUTH_SID_LEN);
		memcpy(u->sha256, sha, 32);
		snprintf(u->name, sizeof(u->name), "%s", name ? name : "");
		u->size = (uint64_t)size;
		u->data = malloc(size ? (size_t)size : 1);
		u->md = EVP_MD_CTX_new();
		if (u->data == NULL || u->md == NULL ||
		    EVP_DigestInit_ex(u->md, EVP_sha256(), NULL) != 1) {
			upload_drop(u);
			pthread_mutex_unlock(&uploads_lock);
			rep = sg_reply_error(CKR_HOST_MEMORY, "internal", "out of memory");
			goto out;
		}
	} else if (u == NULL || memcmp(u->sha256, sha, 32) != 0 || u->size != (uint64_t)size ||
	           u->got != (uint64_t)offset) {
		/* Chunks come in order, one upload a session: anything else
		 * is a client that lost its place; it starts again at 0. */
		if (u != NULL)
			upload_drop(u);
		pthread_mutex_unlock(&uploads_lock);
		snprintf(r->err, sizeof(r->err), "no upload of this document at offset %" PRId64
		         " in this session: send it again from offset 0", offset);
		rep = sg_reply_error(CKR_ARGUMENTS_BAD, "bad_offset", "%s", r->err);
		goto out;
	}
	if (len > 0) {
		memcpy(u->data + u->got, data, len);
		EVP_DigestUpdate(u->md, data, len);
		u->got += len;
	}
	u->last = now;
	if (u->got < u->size) {
		pthread_mutex_unlock(&uploads_lock);
		rep = sg_reply_ok();
		json_object_set_new(rep, "stored", json_false());
		json_object_set_new(rep, "received", json_integer((json_int_t)u->got));
		goto out;
	}
	/* The last byte is in: the upload leaves the table, and is checked
	 * and stored outside the lock. */
	done = *u;
	memset(u, 0, sizeof(*u));
	pthread_mutex_unlock(&uploads_lock);

	if (EVP_DigestFinal_ex(done.md, md, &mdlen) != 1 || mdlen != 32) {
		rep = sg_reply_error(CKR_HOST_MEMORY, "internal", "digest failed");
		goto out;
	}
	if (sodium_memcmp(md, done.sha256, 32) != 0) {
		sodium_bin2hex(hex, sizeof(hex), md, 32);
		snprintf(r->err, sizeof(r->err), "the document's SHA-256 is %s, not the one announced: "
		         "not stored", hex);
		rep = refuse(r, done.sha256, CKR_DATA_INVALID, "digest_mismatch");
		goto out;
	}
	memset(&info, 0, sizeof(info));
	memcpy(info.sha256, done.sha256, 32);
	info.size = done.size;
	info.created = (int64_t)now;
	snprintf(info.name, sizeof(info.name), "%s", done.name);
	stored = gw_docstore_put(r->ctx->store, &info, done.data, err, sizeof(err));
	if (stored < 0) {
		gw_log_error("document not stored: %s", err);
		rep = sg_reply_error(CKR_DEVICE_ERROR, "internal", "the document could not be stored");
		goto out;
	}
	jn = json_pack("{s:I,s:s,s:b}", "size", (json_int_t)done.size, "name", done.name,
	               "new", stored == 1);
	{
		char *d = jn ? json_dumps(jn, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
		snprintf(detail, sizeof(detail), "%s", d ? d : "{}");
		free(d);
		json_decref(jn);
	}
	if (record(r, "document_store", "ok", NULL, done.sha256, detail) < 0) {
		rep = sg_reply_error(CKR_DEVICE_ERROR, "internal", "audit record failed");
		goto out;
	}
	sodium_bin2hex(hex, sizeof(hex), done.sha256, 32);
	rep = sg_reply_ok();
	json_object_set_new(rep, "stored", json_true());
	json_object_set_new(rep, "sha256", json_string(hex));
	json_object_set_new(rep, "size", json_integer((json_int_t)done.size));
out:
	if (done.used)
		upload_drop(&done);
	free(data);
	return rep;
}

bool
gw_doc_may_read(struct gw_req *r, const uint8_t sha256[32])
{
	const struct gw_policy *p = r->snap->policy;
	int64_t ids[DOC_APPS_MAX];
	size_t n = 0;
	struct gw_application *app;
	bool ok = false;

	if (gw_person_has_role(r->who, "auditor") || gw_person_has_role(r->who, "seal_admin"))
		return true;
	if (gw_docstore_apps(r->ctx->store, sha256, ids, DOC_APPS_MAX, &n) < 0 ||
	    (app = calloc(1, sizeof(*app))) == NULL)
		return false;
	for (size_t i = 0; i < n && !ok; i++) {
		if (gw_appstore_get(r->ctx->store, ids[i], app) != 1)
			continue;
		if (strcmp(app->applicant, r->who->id) == 0 || gw_wf_waiting_for(p, app, r->who))
			ok = true;
		for (unsigned k = 0; k < app->n_approvals && !ok; k++)
			if (strcmp(app->approvals[k].approver, r->who->id) == 0)
				ok = true;
	}
	free(app);
	return ok;
}

json_t *
gw_op_doc_get(struct gw_req *r)
{
	uint8_t sha[32], *buf = NULL;
	int64_t offset = 0, len = GW_DOC_CHUNK_MAX;
	struct gw_doc_info info;
	size_t got = 0;
	json_t *rep = NULL;
	int rc;

	if (get_sha(r, sha) < 0 ||
	    sg_get_int(r->msg, "offset", false, 0, INT64_MAX, &offset, r->err, sizeof(r->err)) < 0 ||
	    sg_get_int(r->msg, "len", false, 1, GW_DOC_CHUNK_MAX, &len, r->err, sizeof(r->err)) < 0)
		return gw_bad_request(r);
	/* One answer for a document not there and one not to be seen, so
	 * that doc_get says nothing of what others stored. */
	rc = gw_docstore_info(r->ctx->store, sha, &info);
	if (rc < 0)
		return sg_reply_error(CKR_DEVICE_ERROR, "internal", "store error");
	if (rc == 0 || !gw_doc_may_read(r, sha)) {
		snprintf(r->err, sizeof(r->err), "no document that %s may read", r->who->id);
		(void)record(r, "document_read", "denied", r->err, sha, NULL);
		return sg_reply_error(CKR_ARGUMENTS_BAD, "no_document", "%s", r->err);
	}
	if ((buf = malloc((size_t)len)) == NULL)
		return sg_reply_error(CKR_HOST_MEMORY, "internal", "out of memory");
	if (gw_docstore_read(r->ctx->store, sha, (uint64_t)offset, buf, (size_t)len, &got) != 1) {
		rep = sg_reply_error(CKR_DEVICE_ERROR, "internal", "store error");
		goto out;
	}
	/* A reading is recorded once, at its first chunk (not 64 records
	 * for a 32 MiB file). */
	if (offset == 0 && record(r, "document_read", "ok", NULL, sha, NULL) < 0) {
		rep = sg_reply_error(CKR_DEVICE_ERROR, "internal", "audit record failed");
		goto out;
	}
	rep = sg_reply_ok();
	sg_set_bytes(rep, "data", buf, got);
	json_object_set_new(rep, "size", json_integer((json_int_t)info.size));
	json_object_set_new(rep, "offset", json_integer((json_int_t)offset));
out:
	free(buf);
	return rep;
}

json_t *
gw_doc_json(struct gw_store *st, const uint8_t sha256[32])
{
	struct gw_doc_info info;
	char hex[65];
	json_t *o;
	int rc = gw_docstore_info(st, sha256, &info);

	if (rc < 0)
		return NULL;
	sodium_bin2hex(hex, sizeof(hex), sha256, 32);
	o = json_pack("{s:s,s:b}", "sha256", hex, "stored", rc == 1);
	if (o && rc == 1) {
		json_object_set_new(o, "size", json_integer((json_int_t)info.size));
		json_object_set_new(o, "name", json_string(info.name));
	}
	return o;
}
