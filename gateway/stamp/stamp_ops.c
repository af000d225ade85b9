/*
 * stamp_prepare and the sign path's check of a prepared stamp
 * (stamp_ops.h). The update is read by stampcheck.c; the document and the
 * stamped file are then both opened with qpdf and compared: the same pages
 * (each page's dictionary the same but for /Annots, which gains the
 * widget on the stamped page only), the same catalog but for /AcroForm
 * (its /Fields gain the widget, its other keys stay), and no object of
 * the document replaced but that page and the catalog. A refusal is
 * recorded; nothing is spent (the signature is never asked for).
 */
#include "stamp_ops.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <qpdf/qpdf-c.h>
#include <sodium.h>

#include "appstore.h"
#include "audit.h"
#include "auditfmt.h"
#include "docstore.h"
#include "log.h"
#include "refusals.h"
#include "stampcheck.h"
#include "workflow.h"

/* Checked stamps waiting for their signature, in the gateway. */
#define PREPARED_MAX 64
#define APPS_MAX 64
/* A signature value named in a receipt request: an RSA-8192 or EC-P521 one fits. */
#define RECEIPT_SIG_MAX 1024

struct prepared {
	bool used;
	const struct gw_ctx *ctx;
	char who[SG_NAME_MAX + 1];
	int64_t app;
	uint8_t digest[32];          /* SHA-256 of the stamped file's byte range */
	time_t until;
};

static pthread_mutex_t prepared_lock = PTHREAD_MUTEX_INITIALIZER;
static struct prepared prepared[PREPARED_MAX];

static void
remember(const struct gw_req *r, int64_t app, const uint8_t digest[32], time_t now)
{
	struct prepared *slot = NULL, *oldest = &prepared[0];

	pthread_mutex_lock(&prepared_lock);
	for (size_t i = 0; i < PREPARED_MAX; i++) {
		struct prepared *p = &prepared[i];
		if (p->used && p->until < now)
			p->used = false;
		if (!p->used && slot == NULL)
			slot = p;
		if (p->until < oldest->until)
			oldest = p;
	}
	/* Full: the one closest to its end goes (a stamp is prepared again
	 * in one request). */
	if (slot == NULL)
		slot = oldest;
	memset(slot, 0, sizeof(*slot));
	slot->used = true;
	slot->ctx = r->ctx;
	snprintf(slot->who, sizeof(slot->who), "%s", r->who->id);
	slot->app = app;
	memcpy(slot->digest, digest, 32);
	slot->until = now + GW_STAMP_PREPARED_TTL;
	pthread_mutex_unlock(&prepared_lock);
}

bool
gw_stamp_prepared(struct gw_req *r, int64_t app_id, const struct gw_sign_input *in,
                  const struct gw_sign_plan *plan)
{
	time_t now = time(NULL);
	uint8_t digest[32];
	bool ok = false;

	pthread_mutex_lock(&prepared_lock);
	for (size_t i = 0; i < PREPARED_MAX && !ok; i++) {
		struct prepared *p = &prepared[i];
		if (!p->used || p->ctx != r->ctx || p->app != app_id || p->until < now ||
		    strcmp(p->who, r->who->id) != 0)
			continue;
		memcpy(digest, p->digest, 32);
		ok = gw_sign_binds_document(in, plan, digest);
	}
	pthread_mutex_unlock(&prepared_lock);
	return ok;
}

static int
get_hex32(struct gw_req *r, const char *key, uint8_t out[32])
{
	const char *hex = NULL;
	size_t n = 0;

	if (sg_get_str(r->msg, key, true, &hex, 64, r->err, sizeof(r->err)) < 0)
		return -1;
	if (strlen(hex) != 64 || sodium_hex2bin(out, 32, hex, 64, NULL, &n, NULL) != 0 || n != 32) {
		snprintf(r->err, sizeof(r->err), "%s must be 64 hex digits", key);
		return -1;
	}
	return 0;
}

static json_t *
refuse(struct gw_req *r, const char *seal, int64_t app, const uint8_t doc[32], const char *code)
{
	struct gw_audit_event ev = {
		.action = "stamp_prepare", .outcome = "denied", .reason = r->err,
		.actor = r->who->id, .uid = r->peer->uid, .pid = r->peer->pid, .exe = r->peer->exe,
		.host = r->ctx->host, .seal = seal, .application = app,
		.doc_digest = doc, .doc_digest_len = 32,
	};
	uint64_t seq;

	if (!gw_reflimit_req(r, "stamp_prepare", "denied", r->err, ev.actor) && r->ctx->audit)
		(void)gw_audit_record(r->ctx->audit, &ev, &seq);
	return sg_reply_error(CKR_FUNCTION_REJECTED, code, "%s", r->err);
}

/* A copy of qpdf's unparse (its buffer lives until the next call). */
static char *
unparse(qpdf_data q, qpdf_oh oh, bool resolved)
{
	const char *s = resolved ? qpdf_oh_unparse_resolved(q, oh) : qpdf_oh_unparse(q, oh);
	return strdup(s ? s : "");
}

/* The items of an array key of d, unparsed, one string ("a b c "). */
static char *
items_of(qpdf_data q, qpdf_oh d, const char *key)
{
	qpdf_oh a = qpdf_oh_get_key(q, d, key);
	size_t len = 0, cap = 1;
	char *s = calloc(1, 1);
	int n = qpdf_oh_is_array(q, a) ? qpdf_oh_get_array_n_items(q, a) : 0;

	for (int i = 0; s && i < n; i++) {
		const char *it = qpdf_oh_unparse(q, qpdf_oh_get_array_item(q, a, i));
		size_t l = strlen(it);
		char *t;
		if (len + l + 2 > cap) {
			cap = (len + l + 2) * 2;
			if ((t = realloc(s, cap)) == NULL) {
				free(s);
				return NULL;
			}
			s = t;
		}
		memcpy(s + len, it, l);
		s[len + l] = ' ';
		len += l + 1;
		s[len] = '\0';
	}
	return s;
}

/* d's unparse with key removed (d changed in qpdf's memory). */
static char *
without(qpdf_data q, qpdf_oh d, const char *key)
{
	qpdf_oh_remove_key(q, d, key);
	return unparse(q, d, true);
}

static bool
same(char *a, char *b)
{
	bool eq = a && b && strcmp(a, b) == 0;

	free(a);
	free(b);
	return eq;
}

/* The document d and the stamped file s (d + the update u): the same but
 * for the field. widget: the widget's reference ("N 0 R"). */
static int
compare(const uint8_t *d, size_t dlen, const uint8_t *s, size_t slen,
        const struct gw_stamp_update *u, const char *widget, char *err, size_t errlen)
{
	qpdf_data qd = qpdf_init(), qs = qpdf_init();
	qpdf_oh rd, rs, ad, as;
	int np, rv = -1, size_d;
	long root_id, root_gen;
	size_t replaced = 0;
	bool stamped = false;

	qpdf_silence_errors(qd);
	qpdf_silence_errors(qs);
	if ((qpdf_read_memory(qd, "document", (const char *)d, dlen, NULL) & QPDF_ERRORS) ||
	    qpdf_is_encrypted(qd)) {
		snprintf(err, errlen, "the approved document is not a PDF that can be stamped");
		goto out;
	}
	if (qpdf_read_memory(qs, "stamped", (const char *)s, slen, NULL) & QPDF_ERRORS) {
		snprintf(err, errlen, "the stamped file does not read as a PDF");
		goto out;
	}
	rd = qpdf_get_root(qd);
	rs = qpdf_get_root(qs);
	root_id = qpdf_oh_get_object_id(qd, rd);
	root_gen = qpdf_oh_get_generation(qd, rd);
	size_d = (int)qpdf_oh_get_numeric_value(qd, qpdf_oh_get_key(qd, qpdf_get_trailer(qd), "/Size"));
	if (u->root_num != root_id || u->root_gen != root_gen) {
		snprintf(err, errlen, "the update names another catalog");
		goto out;
	}
	np = qpdf_get_num_pages(qd);
	if (np < 1 || np != qpdf_get_num_pages(qs)) {
		snprintf(err, errlen, "the stamped file has other pages than the document");
		goto out;
	}
	/* Objects of the document replaced: the catalog, and pages only. */
	for (size_t i = 0; i < u->n; i++) {
		const struct gw_stamp_obj *o = &u->objs[i];
		bool page = false;
		/* A new object is one of the stamp's own (stampcheck.c has
		 * looked at each): never a page, an action or anything else. */
		if (o->num >= size_d) {
			if (o->kind == GW_STAMP_OTHER) {
				snprintf(err, errlen, "the update adds object %ld, which is not one of a "
				         "stamp's", o->num);
				goto out;
			}
			continue;
		}
		for (int k = 0; k < np && !page; k++) {
			qpdf_oh pg = qpdf_get_page_n(qd, (size_t)k);
			page = qpdf_oh_get_object_id(qd, pg) == o->num &&
			       qpdf_oh_get_generation(qd, pg) == o->gen;
		}
		if (!page && !(o->num == root_id && o->gen == root_gen)) {
			snprintf(err, errlen, "the update replaces object %ld of the document, which is "
			         "neither a page nor the catalog", o->num);
			goto out;
		}
		if (page)
			replaced++;
	}
	if (replaced > 1) {
		snprintf(err, errlen, "the update replaces %zu pages", replaced);
		goto out;
	}
	for (int k = 0; k < np; k++) {
		qpdf_oh pd = qpdf_get_page_n(qd, (size_t)k), ps = qpdf_get_page_n(qs, (size_t)k);
		char *annd = items_of(qd, pd, "/Annots"), *anns = items_of(qs, ps, "/Annots");
		bool eq, plus;
		size_t l;

		if (annd == NULL || anns == NULL) {
			free(annd);
			free(anns);
			snprintf(err, errlen, "out of memory");
			goto out;
		}
		eq = strcmp(annd, anns) == 0;
		l = strlen(annd);
		plus = strncmp(annd, anns, l) == 0 && strncmp(anns + l, widget, strlen(widget)) == 0 &&
		       strcmp(anns + l + strlen(widget), " ") == 0;
		free(annd);
		free(anns);
		if (!eq && !(plus && !stamped)) {
			snprintf(err, errlen, "page %d's annotations are not the document's (with the "
			         "seal's widget on one page)", k + 1);
			goto out;
		}
		stamped |= plus;
		if (qpdf_oh_get_object_id(qd, pd) != qpdf_oh_get_object_id(qs, ps) ||
		    !same(without(qd, pd, "/Annots"), without(qs, ps, "/Annots"))) {
			snprintf(err, errlen, "page %d is not the document's", k + 1);
			goto out;
		}
	}
	if (!stamped) {
		snprintf(err, errlen, "no page carries the seal's widget");
		goto out;
	}
	ad = qpdf_oh_get_key(qd, rd, "/AcroForm");
	as = qpdf_oh_get_key(qs, rs, "/AcroForm");
	{
		char *fd = qpdf_oh_is_dictionary(qd, ad) ? items_of(qd, ad, "/Fields") : strdup("");
		char *fs = qpdf_oh_is_dictionary(qs, as) ? items_of(qs, as, "/Fields") : NULL;
		size_t l = fd ? strlen(fd) : 0;
		bool ok = fd && fs && strncmp(fd, fs, l) == 0 && strncmp(fs + l, widget, strlen(widget)) == 0 &&
		          strcmp(fs + l + strlen(widget), " ") == 0;
		free(fd);
		free(fs);
		if (!ok) {
			snprintf(err, errlen, "the form's fields are not the document's and the seal's");
			goto out;
		}
	}
	if (qpdf_oh_is_dictionary(qd, ad)) {
		qpdf_oh_remove_key(qd, ad, "/SigFlags");
		qpdf_oh_remove_key(qs, as, "/SigFlags");
		if (!same(without(qd, ad, "/Fields"), without(qs, as, "/Fields"))) {
			snprintf(err, errlen, "the form's settings are not the document's");
			goto out;
		}
	} else {
		qpdf_oh_remove_key(qs, as, "/SigFlags");
		if (!same(without(qs, as, "/Fields"), strdup("<< >>"))) {
			snprintf(err, errlen, "the form has settings the document had not");
			goto out;
		}
	}
	if (!same(without(qd, rd, "/AcroForm"), without(qs, rs, "/AcroForm"))) {
		snprintf(err, errlen, "the catalog is not the document's");
		goto out;
	}
	rv = 0;
out:
	qpdf_cleanup(&qd);
	qpdf_cleanup(&qs);
	return rv;
}

/* The last startxref of the document (as the update's /Prev must be). */
static long long
last_startxref(const uint8_t *d, size_t len)
{
	size_t from = len > 1024 ? len - 1024 : 0;
	long long v = -1;

	for (size_t i = from; i + 9 <= len; i++)
		if (memcmp(d + i, "startxref", 9) == 0) {
			size_t j = i + 9;
			long long n = 0;
			int digits = 0;
			while (j < len && (d[j] == ' ' || d[j] == '\r' || d[j] == '\n'))
				j++;
			while (j < len && d[j] >= '0' && d[j] <= '9' && digits < 12) {
				n = n * 10 + (d[j++] - '0');
				digits++;
			}
			if (digits)
				v = n;
		}
	return v;
}

/* The application of r's person for seal bound to doc that this stamp
 * spends: id (0: any of them), else the oldest usable. 1 found, 0 none. */
static int
bound_app(struct gw_req *r, const char *seal, const uint8_t doc[32], int64_t id, int64_t *out)
{
	int64_t ids[APPS_MAX];
	size_t n = 0;
	struct gw_application *app = calloc(1, sizeof(*app));
	time_t now = time(NULL);
	int rv = 0;

	*out = 0;
	if (app == NULL || gw_docstore_apps(r->ctx->store, doc, ids, APPS_MAX, &n) < 0) {
		free(app);
		return -1;
	}
	for (size_t i = n; i-- > 0;) {
		if (id != 0 && ids[i] != id)
			continue;
		if (gw_appstore_get(r->ctx->store, ids[i], app) != 1 ||
		    strcmp(app->applicant, r->who->id) != 0 || strcmp(app->seal, seal) != 0 ||
		    !gw_wf_usable(app, now))
			continue;
		*out = ids[i];
		rv = 1;
		break;
	}
	free(app);
	return rv;
}

json_t *
gw_op_stamp_prepare(struct gw_req *r)
{
	const char *seal = NULL;
	int64_t id = 0, app = 0;
	uint8_t doc[32], *update = NULL, *file = NULL, md[32];
	size_t ulen = 0, got = 0;
	struct gw_doc_info info;
	struct gw_stamp_update u;
	char err[256], widget[32], hex[65];
	EVP_MD_CTX *c = NULL;
	json_t *rep = NULL;
	long wid = -1;
	int rc;

	if (sg_get_str(r->msg, "seal", true, &seal, SG_NAME_MAX, r->err, sizeof(r->err)) < 0 ||
	    get_hex32(r, "doc_sha256", doc) < 0 ||
	    sg_get_int(r->msg, "application", false, 1, INT64_MAX, &id, r->err, sizeof(r->err)) < 0 ||
	    sg_get_bytes(r->msg, "update", true, &update, &ulen, GW_STAMP_UPDATE_MAX, r->err,
	                 sizeof(r->err)) < 0)
		return gw_bad_request(r);
	rc = bound_app(r, seal, doc, id, &app);
	if (rc < 0) {
		rep = sg_reply_error(CKR_DEVICE_ERROR, "internal", "store error");
		goto out;
	}
	if (rc == 0) {
		snprintf(r->err, sizeof(r->err), "%s has no usable application for the %s seal bound "
		         "to this document%s", r->who->id, seal, id ? " with that number" : "");
		/* Without a bound application nothing is checked here: the
		 * sign path decides (recorded when one was named). */
		if (id != 0)
			rep = refuse(r, seal, id, doc, "not_bound");
		else
			rep = sg_reply_error(CKR_FUNCTION_REJECTED, "not_bound", "%s", r->err);
		goto out;
	}
	if ((rc = gw_docstore_info(r->ctx->store, doc, &info)) != 1 ||
	    info.size > SIZE_MAX - ulen || (file = malloc(info.size + ulen + 1)) == NULL) {
		snprintf(r->err, sizeof(r->err), "the approved document is not in the gateway: apply "
		         "with sealctl apply --doc");
		rep = refuse(r, seal, app, doc, "no_document");
		goto out;
	}
	for (uint64_t off = 0; off < info.size; off += got)
		if (gw_docstore_read(r->ctx->store, doc, off, file + off, (size_t)(info.size - off),
		                     &got) != 1 || got == 0) {
			rep = sg_reply_error(CKR_DEVICE_ERROR, "internal", "store error");
			goto out;
		}
	memcpy(file + info.size, update, ulen);
	if (gw_stamp_parse(update, ulen, (size_t)info.size, &u, err, sizeof(err)) < 0) {
		snprintf(r->err, sizeof(r->err), "not a stamp of the approved document: %.200s", err);
		rep = refuse(r, seal, app, doc, "bad_stamp");
		goto out;
	}
	for (size_t i = 0; i < u.n; i++) {
		const struct gw_stamp_obj *o = &u.objs[i];
		bool fresh = o->num >= u.size - (long long)u.n && o->num < u.size;
		if (o->kind == GW_STAMP_WIDGET)
			wid = wid < 0 ? o->num : -2;
		if (o->kind == GW_STAMP_STREAM || (o->kind != GW_STAMP_OTHER && !fresh && o->gen != 0))
			wid = -3;
	}
	if (wid < 0 || u.prev != last_startxref(file, (size_t)info.size) ||
	    u.byterange[0] != 0 || u.byterange[1] != u.contents_at ||
	    u.byterange[2] != u.contents_at + u.contents_len ||
	    u.byterange[2] + u.byterange[3] != info.size + ulen) {
		snprintf(r->err, sizeof(r->err), "not a stamp of the approved document: %s",
		         wid < 0 ? "not one widget, or an object of another kind" :
		         u.prev != last_startxref(file, (size_t)info.size) ?
		         "its /Prev is not the document's last xref" :
		         "its /ByteRange does not cover the whole file but the signature");
		rep = refuse(r, seal, app, doc, "bad_stamp");
		goto out;
	}
	snprintf(widget, sizeof(widget), "%ld 0 R", wid);
	if (compare(file, (size_t)info.size, file, (size_t)info.size + ulen, &u, widget, err,
	            sizeof(err)) < 0) {
		snprintf(r->err, sizeof(r->err), "not a stamp of the approved document: %.200s", err);
		rep = refuse(r, seal, app, doc, "bad_stamp");
		goto out;
	}
	/* What the signed attributes' message digest must be. */
	if ((c = EVP_MD_CTX_new()) == NULL || EVP_DigestInit_ex(c, EVP_sha256(), NULL) != 1 ||
	    EVP_DigestUpdate(c, file, u.contents_at) != 1 ||
	    EVP_DigestUpdate(c, file + u.byterange[2], u.byterange[3]) != 1 ||
	    EVP_DigestFinal_ex(c, md, NULL) != 1) {
		rep = sg_reply_error(CKR_HOST_MEMORY, "internal", "digest failed");
		goto out;
	}
	remember(r, app, md, time(NULL));
	sodium_bin2hex(hex, sizeof(hex), md, 32);
	gw_log_info("stamp of application #%lld by %s prepared (byte range sha256 %s)", (long long)app,
	            r->who->id, hex);
	rep = sg_reply_ok();
	json_object_set_new(rep, "application", json_integer(app));
	json_object_set_new(rep, "range_sha256", json_string(hex));
out:
	EVP_MD_CTX_free(c);
	free(update);
	free(file);
	return rep;
}

/* ---- the approval receipt ---- */

/* The sign record a signature value speaks of: among the person's sign
 * records for the application, the newest whose signed digest the value
 * verifies over with the seal's public key. Choosing by the value, not
 * "the newest", keeps two signatures of one application made at once
 * from taking each other's receipts. */
struct last_sign {
	EVP_PKEY *pub;
	const uint8_t *sig; size_t sig_len;
	uint64_t seq;
	uint8_t hash[32], signed_digest[32];
	bool found;
};

static bool
sig_verifies(EVP_PKEY *pub, const uint8_t *sig, size_t sig_len, const uint8_t digest[32])
{
	EVP_PKEY_CTX *c = EVP_PKEY_CTX_new(pub, NULL);
	bool ok = c != NULL && EVP_PKEY_verify_init(c) == 1 &&
	          (EVP_PKEY_get_base_id(pub) != EVP_PKEY_RSA ||
	           EVP_PKEY_CTX_set_rsa_padding(c, RSA_PKCS1_PADDING) == 1) &&
	          EVP_PKEY_CTX_set_signature_md(c, EVP_sha256()) == 1 &&
	          EVP_PKEY_verify(c, sig, sig_len, digest, 32) == 1;

	EVP_PKEY_CTX_free(c);
	ERR_clear_error();
	return ok;
}

static int
last_sign_fn(void *arg, const struct gw_audit_row *row)
{
	struct last_sign *l = arg;

	if (row->hash_len != 32 || row->signed_digest_len != 32 ||
	    !sig_verifies(l->pub, l->sig, l->sig_len, row->signed_digest))
		return 0;
	l->seq = row->seq;
	memcpy(l->hash, row->hash, 32);
	memcpy(l->signed_digest, row->signed_digest, 32);
	l->found = true;
	return 0;
}

/* The public key of the seal's certificate as the token showed it, or
 * NULL (EVP_PKEY_free). */
static EVP_PKEY *
seal_pubkey(struct gw_req *r, const char *seal_id)
{
	const struct gw_policy *p = r->snap->policy;
	const struct gw_seal_key *key = NULL;
	const uint8_t *cp;
	X509 *cert;
	EVP_PKEY *pub = NULL;

	for (size_t i = 0; i < p->n_seals; i++)
		if (strcmp(p->seals[i].id, seal_id) == 0)
			key = r->snap->keys ? r->snap->keys[i] : NULL;
	if (key == NULL || key->cert.p == NULL)
		return NULL;
	cp = key->cert.p;
	if ((cert = d2i_X509(NULL, &cp, (long)key->cert.len)) != NULL)
		pub = X509_get_pubkey(cert);
	X509_free(cert);
	return pub;
}

static json_t *
jhex(const uint8_t *b, size_t n)
{
	char hex[2 * 64 + 1];

	if (n > 64)
		return json_null();
	sodium_bin2hex(hex, sizeof(hex), b, n);
	return json_string(hex);
}

json_t *
gw_op_receipt(struct gw_req *r)
{
	const struct gw_policy *p = r->snap->policy;
	struct gw_application *app = calloc(1, sizeof(*app));
	struct gw_audit_filter f = { 0 };
	struct last_sign last = { 0 };
	const struct gw_person *person;
	const struct gw_seal *seal;
	int64_t id = 0;
	json_t *o = NULL, *a, *levels, *rep = NULL;
	char *text = NULL, err[256];
	uint8_t digest[32], sig[GW_AUDIT_SIG_MAX], value_sha256[32], *value = NULL;
	size_t siglen = sizeof(sig), certlen = 0, value_len = 0;
	const uint8_t *cert;

	if (app == NULL)
		return sg_reply_error(CKR_HOST_MEMORY, "internal", "out of memory");
	/* The signature value the receipt is for, as it stands in the
	 * SignerInfo (an EC seal's DER ECDSA-Sig-Value). */
	if (sg_get_int(r->msg, "application", true, 1, INT64_MAX, &id, r->err, sizeof(r->err)) < 0 ||
	    sg_get_bytes(r->msg, "signature", true, &value, &value_len, RECEIPT_SIG_MAX,
	                 r->err, sizeof(r->err)) < 0) {
		rep = gw_bad_request(r);
		goto out;
	}
	/* The applicant's own: the receipt goes into the signature they made. */
	if (gw_appstore_get(r->ctx->store, id, app) != 1 || strcmp(app->applicant, r->who->id) != 0) {
		rep = sg_reply_error(CKR_ARGUMENTS_BAD, "no_application",
		                     "no application #%lld of %s", (long long)id, r->who->id);
		goto out;
	}
	if ((last.pub = seal_pubkey(r, app->seal)) == NULL) {
		rep = sg_reply_error(CKR_ARGUMENTS_BAD, "no_signature", "the certificate of seal %s "
		                     "is not known at this gateway", app->seal);
		goto out;
	}
	last.sig = value;
	last.sig_len = value_len;
	f.application = id;
	f.action = "sign";
	f.outcome = "ok";
	f.actor = r->who->id;
	if (gw_store_audit_query(r->ctx->store, &f, last_sign_fn, &last, err, sizeof(err)) < 0) {
		rep = sg_reply_error(CKR_DEVICE_ERROR, "internal", "store error");
		goto out;
	}
	if (!last.found) {
		rep = sg_reply_error(CKR_ARGUMENTS_BAD, "no_signature",
		                     "application #%lld has no signature recorded that this signature "
		                     "value is of", (long long)id);
		goto out;
	}
	EVP_Digest(value, value_len, value_sha256, NULL, EVP_sha256(), NULL);
	person = gw_policy_person(p, app->applicant);
	seal = gw_policy_seal(p, app->seal);
	a = json_pack("{s:I,s:s,s:s,s:s,s:s,s:s}", "id", (json_int_t)app->id,
	              "applicant", app->applicant,
	              "applicant_name", person && person->name ? person->name : app->applicant,
	              "seal", app->seal, "seal_name", seal && seal->name ? seal->name : app->seal,
	              "reason", app->reason);
	if (a && app->document_type[0])
		json_object_set_new(a, "document_type", json_string(app->document_type));
	if (a && app->business_scope[0])
		json_object_set_new(a, "business_scope", json_string(app->business_scope));
	if (a && app->has_amount)
		json_object_set_new(a, "amount", json_integer(app->amount));
	if (a && app->has_doc)
		json_object_set_new(a, "doc_sha256", jhex(app->doc_digest, 32));
	levels = json_array();
	for (unsigned i = 0; levels && i < app->n_approvals; i++) {
		const struct gw_approval *ap = &app->approvals[i];
		const struct gw_person *by = gw_policy_person(p, ap->approver);
		json_array_append_new(levels, json_pack("{s:i,s:s,s:s,s:s,s:I,s:s}",
		                      "level", (int)ap->level + 1, "by", ap->approver,
		                      "name", by && by->name ? by->name : ap->approver,
		                      "decision", ap->approve ? "approved" : "rejected",
		                      "at", (json_int_t)ap->at, "comment", ap->comment));
	}
	o = json_pack("{s:i,s:s,s:o,s:o,s:o,s:I,s:{s:I,s:o,s:o,s:o},s:I}", "v", 1,
	              "site", gw_ctx_site(r->ctx), "application", a, "approvals", levels,
	              "policy_sha256", jhex(p->hash, GW_HASH_LEN),
	              "policy_version", (json_int_t)r->snap->policy_version,
	              "record", "seq", (json_int_t)last.seq, "hash", jhex(last.hash, 32),
	              "signed_digest", jhex(last.signed_digest, 32),
	              "signature_sha256", jhex(value_sha256, 32),
	              "issued", (json_int_t)time(NULL));
	if (o == NULL || (text = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS)) == NULL) {
		rep = sg_reply_error(CKR_HOST_MEMORY, "internal", "out of memory");
		goto out;
	}
	EVP_Digest(text, strlen(text), digest, NULL, EVP_sha256(), NULL);
	if (r->ctx->audit == NULL ||
	    gw_audit_sign_receipt(r->ctx->audit, digest, sig, &siglen, err, sizeof(err)) < 0 ||
	    (cert = gw_audit_cert(r->ctx->audit, &certlen)) == NULL) {
		rep = sg_reply_error(CKR_FUNCTION_FAILED, "no_audit_key", "the receipt could not be "
		                     "signed: %s", r->ctx->audit ? err : "no audit log");
		goto out;
	}
	rep = sg_reply_ok();
	sg_set_bytes(rep, "receipt", (const uint8_t *)text, strlen(text));
	sg_set_bytes(rep, "signature", sig, siglen);
	sg_set_bytes(rep, "cert", cert, certlen);
out:
	EVP_PKEY_free(last.pub);
	free(value);
	free(text);
	json_decref(o);
	free(app);
	return rep;
}
