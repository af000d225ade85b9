/*
 * The REST API (docs/api.md, docs/openapi.yaml): one route, one gateway
 * operation. What a route does is shape: it reads JSON and query
 * arguments, relays them with the person's gateway session, and turns the
 * gateway's reply into JSON and an HTTP status. Who may do what is the
 * gateway's answer, never decided here; CSRF and the browser session are.
 */
#include "web.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "protocol.h"

#define API "/api/v1"

struct call {
	const struct web_request *rq;
	struct web_reply *rep;
	struct web_session s;          /* when logged in */
	bool logged_in;
	json_t *body;                  /* a POST's object */
	char param[129];               /* the route's {id} */
	int64_t id;                    /* it as a number, for numeric routes */
};

typedef void (*handler_fn)(struct call *c);

/* ---- replies ---- */

void
web_reply_json(struct web_reply *rep, unsigned status, json_t *body)
{
	free(rep->body);
	rep->body = body ? json_dumps(body, JSON_COMPACT | JSON_ENSURE_ASCII) : NULL;
	json_decref(body);
	if (rep->body == NULL) {
		rep->body = strdup("{\"error\":\"internal\",\"message\":\"out of memory\"}");
		status = 503;
	}
	rep->len = rep->body ? strlen(rep->body) : 0;
	rep->status = status;
	rep->content_type = "application/json; charset=utf-8";
	rep->no_store = true;
}

void
web_reply_error(struct web_reply *rep, unsigned status, const char *code, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	web_reply_json(rep, status, json_pack("{s:s,s:s}", "error", code, "message", msg));
}

/* The HTTP status of a gateway refusal (docs/api.md, "Errors"). */
static unsigned
status_of(const char *code)
{
	static const struct { const char *code; unsigned status; } map[] = {
		{ "not_logged_in", 401 },
		{ "bad_request", 400 }, { "bad_data", 400 }, { "no_seal", 403 },
		{ "denied", 403 }, { "not_allowed", 403 }, { "mfa_required", 403 },
		{ "bad_pin", 403 }, { "replayed", 403 }, { "clock_skew", 403 },
		{ "not_enrolled", 403 }, { "no_window", 403 }, { "mechanism", 403 },
		{ "no_application", 404 }, { "not_found", 404 }, { "no_device", 404 },
		{ "no_document", 404 }, { "unknown_device", 404 },
		{ "conflict", 409 }, { "exists", 409 }, { "pin_locked", 429 },
	};

	for (size_t i = 0; code != NULL && i < sizeof(map) / sizeof(map[0]); i++)
		if (strcmp(map[i].code, code) == 0)
			return map[i].status;
	/* busy, store_unreachable, token_absent, audit_failed, internal,
	 * unknown_op: the service cannot do it now. */
	return 503;
}

/* The reply for a gateway refusal. */
static void
reply_refusal(struct call *c, const json_t *g)
{
	unsigned long rv;
	const char *code = NULL, *msg = NULL;

	(void)sg_reply_is_ok(g, &rv, &code, &msg);
	if (code != NULL && strcmp(code, "unknown_op") == 0) {
		web_reply_error(c->rep, 503, "not_supported", "this gateway does not do that (%s)",
		                msg ? msg : "unknown operation");
		return;
	}
	web_reply_error(c->rep, status_of(code), code ? code : "internal", "%s", msg ? msg : "");
}

/* The gateway's reply without the protocol's own fields. */
static json_t *
strip(json_t *g)
{
	json_object_del(g, "v");
	json_object_del(g, "ok");
	return g;
}

/* Sends req (consumed) with the caller's session; NULL when the reply is
 * already made (a refusal, an unreachable gateway), else the ok reply. */
static json_t *
gw(struct call *c, json_t *req)
{
	char err[256] = "";
	json_t *g;

	g = web_gw_call(c->rq->cfg->gateway_socket, req, c->logged_in ? c->s.gw_session : NULL,
	                c->rq->remote, c->rq->agent, err, sizeof(err));
	if (g == NULL) {
		web_reply_error(c->rep, 503, "gateway_unreachable", "%s", err);
		return NULL;
	}
	if (!sg_reply_is_ok(g, NULL, NULL, NULL)) {
		const char *code = json_string_value(json_object_get(g, "error"));

		/* The gateway ended the login (its timeout, a restart, a
		 * policy change): so does the browser session. */
		if (code != NULL && strcmp(code, "not_logged_in") == 0 && c->logged_in) {
			struct web_session gone;

			if (web_session_end(c->s.id, &gone) == 1)
				web_session_clear(&gone);
		}
		reply_refusal(c, g);
		json_decref(g);
		return NULL;
	}
	return g;
}

/* Relays req and answers with the gateway's reply as it is. */
static void
relay(struct call *c, json_t *req)
{
	json_t *g = gw(c, req);

	if (g != NULL)
		web_reply_json(c->rep, 200, strip(g));
}

/* ---- reading requests ---- */

static json_t *
op(const char *name)
{
	return sg_request_new(name);
}

/* Copies the body's string field key (at most max bytes) into req. 0, or
 * -1 with the 400 reply made. */
static int
copy_str(struct call *c, json_t *req, const char *key, const char *as, size_t max, bool required)
{
	const char *v = NULL;
	char err[160];

	if (sg_get_str(c->body, key, required, &v, max, err, sizeof(err)) < 0) {
		web_reply_error(c->rep, 400, "bad_request", "%s", err);
		return -1;
	}
	if (v != NULL)
		json_object_set_new(req, as ? as : key, json_string(v));
	return 0;
}

static int
copy_int(struct call *c, json_t *req, const char *key, int64_t min, int64_t max, bool required)
{
	int64_t v = 0;
	char err[160];

	if (json_object_get(c->body, key) == NULL && !required)
		return 0;
	if (sg_get_int(c->body, key, required, min, max, &v, err, sizeof(err)) < 0) {
		web_reply_error(c->rep, 400, "bad_request", "%s", err);
		return -1;
	}
	json_object_set_new(req, key, json_integer((json_int_t)v));
	return 0;
}

/* A query argument as an integer: 0 absent, 1 set, -1 bad (400 made). */
static int
arg_int(struct call *c, const char *key, int64_t min, int64_t max, int64_t *out)
{
	const char *v = c->rq->arg(c->rq->arg_cls, key);
	char *end = NULL;
	long long n;

	if (v == NULL || v[0] == '\0')
		return 0;
	errno = 0;
	n = strtoll(v, &end, 10);
	if (errno != 0 || end == v || *end != '\0' || n < min || n > max) {
		web_reply_error(c->rep, 400, "bad_request", "%s must be an integer from %lld to %lld",
		                key, (long long)min, (long long)max);
		return -1;
	}
	*out = n;
	return 1;
}

/* A query argument copied as a string (at most max bytes): -1 bad. */
static int
arg_str(struct call *c, json_t *req, const char *key, const char *as, size_t max)
{
	const char *v = c->rq->arg(c->rq->arg_cls, key);

	if (v == NULL || v[0] == '\0')
		return 0;
	if (strlen(v) > max) {
		web_reply_error(c->rep, 400, "bad_request", "%s is longer than %zu bytes", key, max);
		return -1;
	}
	json_object_set_new(req, as ? as : key, json_string(v));
	return 0;
}

static bool
flag(struct call *c, const char *key)
{
	const char *v = c->rq->arg(c->rq->arg_cls, key);

	return v != NULL && (strcmp(v, "1") == 0 || strcmp(v, "true") == 0);
}

/* ---- session and login ---- */

static char *
cookie(const char *id, unsigned max_age)
{
	char *s = NULL;

	if (asprintf(&s, WEB_COOKIE "=%s; HttpOnly; Secure; SameSite=Strict; Path=/; Max-Age=%u",
	             id, max_age) < 0)
		return NULL;
	return s;
}

static void
h_login(struct call *c)
{
	const char *user = NULL, *password = NULL, *code = NULL, *tok, *site = NULL;
	struct web_session s;
	char err[160];
	json_t *req, *g, *st, *me;

	if (sg_get_str(c->body, "user", true, &user, SG_NAME_MAX, err, sizeof(err)) < 0 ||
	    sg_get_str(c->body, "password", true, &password, SG_PIN_MAX, err, sizeof(err)) < 0 ||
	    sg_get_str(c->body, "code", false, &code, 6, err, sizeof(err)) < 0) {
		web_reply_error(c->rep, 400, "bad_request", "%s", err);
		return;
	}
	req = op(SG_OP_LOGIN);
	json_object_set_new(req, "user", json_string(user));
	json_object_set_new(req, "pin", json_string(password));
	if (code != NULL && code[0] != '\0')
		json_object_set_new(req, "code", json_string(code));
	g = web_gw_call(c->rq->cfg->gateway_socket, req, NULL, c->rq->remote, c->rq->agent, err,
	                sizeof(err));
	if (g == NULL) {
		web_reply_error(c->rep, 503, "gateway_unreachable", "%s", err);
		return;
	}
	if (!sg_reply_is_ok(g, NULL, NULL, NULL)) {
		const char *ec = json_string_value(json_object_get(g, "error"));

		/* An unknown account reads as a wrong password: the web does not
		 * tell who has an account. */
		if (ec != NULL && (strcmp(ec, "bad_pin") == 0 || strcmp(ec, "not_allowed") == 0))
			web_reply_error(c->rep, 401, "bad_login", "wrong user, password or code");
		else if (ec != NULL && (strcmp(ec, "replayed") == 0 || strcmp(ec, "clock_skew") == 0))
			web_reply_error(c->rep, 401, ec, "%s",
			                json_string_value(json_object_get(g, "message")));
		else
			reply_refusal(c, g);
		sg_msg_wipe_secrets(g);
		json_decref(g);
		return;
	}
	tok = json_string_value(json_object_get(g, "session"));
	st = web_gw_call(c->rq->cfg->gateway_socket, op(SG_OP_STATUS), NULL, c->rq->remote,
	                 c->rq->agent, err, sizeof(err));
	if (st != NULL)
		site = json_string_value(json_object_get(st, "site"));
	if (tok == NULL || web_session_new(tok, user, site, &s) < 0) {
		/* The table is full: the login made at the gateway ends. */
		json_decref(web_gw_call(c->rq->cfg->gateway_socket, op(SG_OP_LOGOUT), tok,
		                        c->rq->remote, c->rq->agent, err, sizeof(err)));
		web_reply_error(c->rep, 503, "busy", "too many sessions at once; try again later");
		goto out;
	}
	c->rep->set_cookie = cookie(s.id, c->rq->cfg->session_max);
	me = json_pack("{s:O,s:O,s:O,s:s,s:s}", "user", json_object_get(g, "user"),
	               "name", json_object_get(g, "name"), "roles", json_object_get(g, "roles"),
	               "site", s.site, "csrf", s.csrf);
	web_reply_json(c->rep, 200, me);
	web_session_clear(&s);
out:
	json_decref(st);
	sg_msg_wipe_secrets(g);
	json_decref(g);
}

static void
h_logout(struct call *c)
{
	struct web_session gone;
	json_t *g;

	g = gw(c, op(SG_OP_LOGOUT));
	json_decref(g);
	if (web_session_end(c->s.id, &gone) == 1)
		web_session_clear(&gone);
	free(c->rep->set_cookie);
	c->rep->set_cookie = cookie("", 0);
	if (g != NULL || c->rep->status == 0 || c->rep->status == 401)
		web_reply_json(c->rep, 200, json_pack("{s:b}", "logged_out", 1));
}

static void
h_me(struct call *c)
{
	json_t *g = gw(c, op(SG_OP_WHOAMI));

	if (g == NULL)
		return;
	json_object_set_new(g, "site", json_string(c->s.site));
	json_object_set_new(g, "csrf", json_string(c->s.csrf));
	json_object_del(g, "os_user");
	web_reply_json(c->rep, 200, strip(g));
}

/* ---- seals and status ---- */

static void
h_seals(struct call *c)
{
	static const char *const keep[] = { "id", "label", "kind", "site", "held", "available",
		"uses_left", "quota_left", "quotas", "approval_required", "mfa", "key_type", "bits",
		NULL };
	json_t *g = gw(c, op(SG_OP_SEALS)), *out, *v;
	size_t i;

	if (g == NULL)
		return;
	out = json_array();
	/* The key material stays for PKCS#11 clients: a browser needs none. */
	json_array_foreach(json_object_get(g, "seals"), i, v) {
		json_t *o = json_object();

		for (size_t k = 0; keep[k] != NULL; k++)
			if (json_object_get(v, keep[k]) != NULL)
				json_object_set(o, keep[k], json_object_get(v, keep[k]));
		json_array_append_new(out, o);
	}
	web_reply_json(c->rep, 200, json_pack("{s:O,s:o}", "user", json_object_get(g, "user"),
	                                      "seals", out));
	json_decref(g);
}

static void
h_status(struct call *c)
{
	relay(c, op(SG_OP_STATUS));
}

/* ---- applications ---- */

static void
h_apps(struct call *c)
{
	const char *state = c->rq->arg(c->rq->arg_cls, "state");
	json_t *req = op(SG_OP_LIST), *g, *apps, *v, *out;
	int64_t before = 0;
	size_t i;

	json_object_set_new(req, "which", json_string(flag(c, "waiting") ? "waiting" :
	                                              flag(c, "mine") ? "mine" : "all"));
	if (arg_int(c, "before", 1, INT64_MAX, &before) < 0) {
		json_decref(req);
		return;
	}
	if (before > 0)
		json_object_set_new(req, "before", json_integer((json_int_t)before));
	g = gw(c, req);
	if (g == NULL)
		return;
	apps = json_object_get(g, "applications");
	if (state != NULL && state[0] != '\0') {
		/* A view of what the gateway let the caller see. */
		out = json_array();
		json_array_foreach(apps, i, v)
			if (json_is_string(json_object_get(v, "state")) &&
			    strcmp(json_string_value(json_object_get(v, "state")), state) == 0)
				json_array_append(out, v);
		json_object_set_new(g, "applications", out);
	}
	web_reply_json(c->rep, 200, strip(g));
}

/* The document of a new application goes to the gateway first, in
 * frames of WEB_DOC_CHUNK bytes (doc_put); 0 and its SHA-256, or -1 with
 * the reply made. */
static int
put_document(struct call *c, const json_t *doc, uint8_t sha[32])
{
	const char *data = NULL, *name = json_string_value(json_object_get(doc, "name"));
	uint8_t *bytes = NULL;
	size_t len = 0;
	char hex[65], err[160];
	unsigned int shalen = 32;
	int rv = -1;

	if (!json_is_object(doc) ||
	    sg_get_str(doc, "data", true, &data, 4 * (size_t)c->rq->cfg->upload_max / 3 + 4, err,
	               sizeof(err)) < 0) {
		web_reply_error(c->rep, 400, "bad_request", "document must be {name, data (base64)}");
		return -1;
	}
	if (sg_b64_decode(data, strlen(data), &bytes, &len, c->rq->cfg->upload_max) < 0 || len == 0) {
		web_reply_error(c->rep, 400, "bad_request", "document.data must be base64 of at most "
		                "%u bytes", c->rq->cfg->upload_max);
		return -1;
	}
	if (EVP_Digest(bytes, len, sha, &shalen, EVP_sha256(), NULL) != 1)
		goto out;
	for (int i = 0; i < 32; i++)
		snprintf(hex + 2 * i, 3, "%02x", sha[i]);
	for (size_t off = 0; off < len; off += WEB_DOC_CHUNK) {
		size_t n = len - off < WEB_DOC_CHUNK ? len - off : WEB_DOC_CHUNK;
		json_t *req = op("doc_put"), *g;

		json_object_set_new(req, "sha256", json_string(hex));
		json_object_set_new(req, "size", json_integer((json_int_t)len));
		json_object_set_new(req, "offset", json_integer((json_int_t)off));
		sg_set_bytes(req, "data", bytes + off, n);
		if (off == 0 && name != NULL)
			json_object_set_new(req, "name", json_string(name));
		g = gw(c, req);
		if (g == NULL)
			goto out;
		json_decref(g);
	}
	rv = 0;
out:
	if (rv < 0 && c->rep->status == 0)
		web_reply_error(c->rep, 503, "internal", "the document could not be hashed");
	free(bytes);
	return rv;
}

static void
h_apply(struct call *c)
{
	json_t *req = op(SG_OP_APPLY), *doc = json_object_get(c->body, "document");
	uint8_t sha[32];

	if (copy_str(c, req, "seal", NULL, SG_NAME_MAX, true) < 0 ||
	    copy_str(c, req, "reason", NULL, 4096, true) < 0 ||
	    copy_str(c, req, "document_type", NULL, SG_NAME_MAX, false) < 0 ||
	    copy_str(c, req, "business_scope", NULL, SG_NAME_MAX, false) < 0 ||
	    copy_int(c, req, "amount", 0, INT64_MAX / 2, false) < 0 ||
	    copy_int(c, req, "uses", 1, 1000000, false) < 0 ||
	    copy_int(c, req, "valid_for", 1, INT32_MAX, false) < 0)
		goto bad;
	if (doc != NULL) {
		if (put_document(c, doc, sha) < 0)
			goto bad;
		sg_set_bytes(req, "doc_sha256", sha, sizeof(sha));
	}
	json_t *g = gw(c, req);

	if (g != NULL) {
		json_t *app = json_object_get(g, "application");

		web_reply_json(c->rep, 200, json_pack("{s:O,s:O}", "id", json_object_get(app, "id"),
		                                      "application", app));
		json_decref(g);
	}
	return;
bad:
	json_decref(req);
}

/* The stored application {id}, as show gives it (NULL: reply made). */
static json_t *
show(struct call *c)
{
	json_t *req = op(SG_OP_SHOW), *g;

	json_object_set_new(req, "id", json_integer((json_int_t)c->id));
	g = gw(c, req);
	return g;
}

static void
h_app(struct call *c)
{
	json_t *g = show(c);

	if (g != NULL) {
		web_reply_json(c->rep, 200, json_incref(json_object_get(g, "application")));
		json_decref(g);
	}
}

static void
h_document(struct call *c)
{
	json_t *g = show(c), *doc;
	const char *sha;
	int64_t size;
	char *buf = NULL;

	if (g == NULL)
		return;
	doc = json_object_get(json_object_get(g, "application"), "document");
	sha = json_string_value(json_object_get(doc, "sha256"));
	size = json_integer_value(json_object_get(doc, "size"));
	if (sha == NULL || size <= 0 || size > c->rq->cfg->upload_max) {
		web_reply_error(c->rep, 404, "no_document", "application #%lld has no stored document",
		                (long long)c->id);
		goto out;
	}
	buf = malloc((size_t)size);
	if (buf == NULL) {
		web_reply_error(c->rep, 503, "internal", "out of memory");
		goto out;
	}
	for (int64_t off = 0; off < size;) {
		int64_t n = size - off < WEB_DOC_CHUNK ? size - off : WEB_DOC_CHUNK;
		json_t *req = op("doc_get"), *d;
		uint8_t *part = NULL;
		size_t plen = 0;
		char err[128];

		json_object_set_new(req, "sha256", json_string(sha));
		json_object_set_new(req, "offset", json_integer((json_int_t)off));
		json_object_set_new(req, "len", json_integer((json_int_t)n));
		d = gw(c, req);
		if (d == NULL)
			goto out;
		if (sg_get_bytes(d, "data", true, &part, &plen, WEB_DOC_CHUNK, err, sizeof(err)) < 0 ||
		    plen == 0 || (int64_t)plen > size - off) {
			json_decref(d);
			free(part);
			web_reply_error(c->rep, 503, "bad_reply", "the gateway's document reply: %s", err);
			goto out;
		}
		memcpy(buf + off, part, plen);
		off += (int64_t)plen;
		free(part);
		json_decref(d);
	}
	free(c->rep->body);
	c->rep->body = buf;
	c->rep->len = (size_t)size;
	c->rep->status = 200;
	c->rep->content_type = "application/pdf";
	c->rep->no_store = true;
	buf = NULL;
out:
	free(buf);
	json_decref(g);
}

static void
decide(struct call *c, const char *name)
{
	json_t *req = op(name);

	json_object_set_new(req, "id", json_integer((json_int_t)c->id));
	if (copy_str(c, req, "comment", NULL, 4096, false) < 0 ||
	    copy_str(c, req, "code", NULL, 6, false) < 0) {
		json_decref(req);
		return;
	}
	relay(c, req);
}

static void h_approve(struct call *c) { decide(c, SG_OP_APPROVE); }
static void h_reject(struct call *c) { decide(c, SG_OP_REJECT); }

static void
h_revoke(struct call *c)
{
	json_t *req = op(SG_OP_REVOKE);

	json_object_set_new(req, "id", json_integer((json_int_t)c->id));
	relay(c, req);
}

/* Why: the policy's explanation for this application's seal, applicant
 * and use (explain), and the applicant's last refusal when it is the
 * caller's own (why). */
static void
h_why(struct call *c)
{
	json_t *g = show(c), *app, *req, *e;
	static const char *const use[] = { "seal", "document_type", "business_scope", "amount", NULL };

	if (g == NULL)
		return;
	app = json_object_get(g, "application");
	req = op(SG_OP_EXPLAIN);
	for (size_t i = 0; use[i] != NULL; i++) {
		json_t *v = json_object_get(app, use[i]);

		if (v != NULL && !(json_is_string(v) && json_string_length(v) == 0))
			json_object_set(req, use[i], v);
	}
	json_object_set(req, "user", json_object_get(app, "applicant"));
	e = gw(c, req);
	if (e != NULL) {
		json_t *out = json_pack("{s:O,s:O,s:O}", "id", json_object_get(app, "id"),
		                        "status", json_object_get(app, "status"),
		                        "text", json_object_get(e, "text"));

		web_reply_json(c->rep, 200, out);
		json_decref(e);
	}
	json_decref(g);
}

/* The caller's own last refused signature and its reason (the
 * protocol's why): {"refused": false} when there is none. */
static void
h_last_refusal(struct call *c)
{
	json_t *g = gw(c, op(SG_OP_WHY));

	if (g == NULL)
		return;
	strip(g);
	json_object_set_new(g, "refused", json_boolean(json_object_get(g, "reason") != NULL));
	web_reply_json(c->rep, 200, g);
}

/* ---- audit, usage ---- */

static void
h_audit(struct call *c)
{
	static const char *const strs[] = { "seal", "person", "department", "action", "outcome",
		"digest", "site", NULL };
	static const char *const ints[] = { "from_ns", "to_ns", "application", "limit", "after", NULL };
	json_t *req = op("audit_query");

	for (size_t i = 0; strs[i] != NULL; i++)
		if (arg_str(c, req, strs[i], NULL, 256) < 0)
			goto bad;
	for (size_t i = 0; ints[i] != NULL; i++) {
		int64_t v = 0;
		int rc = arg_int(c, ints[i], strcmp(ints[i], "from_ns") == 0 ||
		                 strcmp(ints[i], "to_ns") == 0 ? INT64_MIN : 0, INT64_MAX, &v);

		if (rc < 0)
			goto bad;
		if (rc > 0)
			json_object_set_new(req, ints[i], json_integer((json_int_t)v));
	}
	relay(c, req);
	return;
bad:
	json_decref(req);
}

static void
h_audit_export(struct call *c)
{
	json_t *req = op("audit_export");
	int64_t limit = 0;

	if (arg_str(c, req, "site", NULL, 64) < 0 || arg_int(c, "limit", 1, INT64_MAX, &limit) < 0) {
		json_decref(req);
		return;
	}
	if (limit > 0)
		json_object_set_new(req, "limit", json_integer((json_int_t)limit));
	relay(c, req);
}

static void
h_audit_verify(struct call *c)
{
	json_t *req = op("audit_verify");

	if (arg_str(c, req, "site", NULL, 64) < 0) {
		json_decref(req);
		return;
	}
	relay(c, req);
}

static void
h_usage(struct call *c)
{
	json_t *req = op(SG_OP_USAGE);
	int64_t v;
	int rc;

	if (arg_str(c, req, "by", NULL, 16) < 0)
		goto bad;
	if ((rc = arg_int(c, "from", 0, INT64_MAX, &v)) < 0)
		goto bad;
	if (rc > 0)
		json_object_set_new(req, "from", json_integer((json_int_t)v));
	if ((rc = arg_int(c, "to", 0, INT64_MAX, &v)) < 0)
		goto bad;
	if (rc > 0)
		json_object_set_new(req, "to", json_integer((json_int_t)v));
	relay(c, req);
	return;
bad:
	json_decref(req);
}

/* ---- people, devices, alerts ---- */

static void
h_users(struct call *c)
{
	relay(c, op(SG_OP_USERS));
}

static void
h_unlock(struct call *c)
{
	json_t *req = op(SG_OP_USER_UNLOCK);

	json_object_set_new(req, "user", json_string(c->param));
	if (copy_str(c, req, "code", NULL, 6, false) < 0) {
		json_decref(req);
		return;
	}
	relay(c, req);
}

static void
h_devices(struct call *c)
{
	relay(c, op(SG_OP_DEVICE_LIST));
}

static void
device_change(struct call *c, const char *name)
{
	json_t *req = op(name);

	json_object_set_new(req, "id", json_integer((json_int_t)c->id));
	if (copy_str(c, req, "code", NULL, 6, false) < 0) {
		json_decref(req);
		return;
	}
	relay(c, req);
}

static void h_device_approve(struct call *c) { device_change(c, SG_OP_DEVICE_APPROVE); }
static void h_device_revoke(struct call *c) { device_change(c, SG_OP_DEVICE_REVOKE); }

static void
h_alerts(struct call *c)
{
	relay(c, op("alerts"));
}

/* The feed: an SSE stream started by the caller (main.c) from here. */
static void
h_feed(struct call *c)
{
	json_t *req = op("audit_query"), *g, *recs;
	int64_t after = 0;

	if (arg_int(c, "after", 0, INT64_MAX, &after) < 0) {
		json_decref(req);
		return;
	}
	/* Without "after", the feed starts at the newest record: one
	 * query of the whole log now, then only what comes. */
	if (after == 0) {
		json_object_set_new(req, "limit", json_integer(1000));
		for (;;) {
			json_object_set_new(req, "after", json_integer((json_int_t)after));
			g = gw(c, json_incref(req));
			if (g == NULL) {
				json_decref(req);
				return;
			}
			recs = json_object_get(g, "records");
			if (json_array_size(recs) > 0)
				after = json_integer_value(json_object_get(
					json_array_get(recs, json_array_size(recs) - 1), "seq"));
			bool more = json_object_get(g, "next") != NULL && json_array_size(recs) > 0;
			json_decref(g);
			if (!more)
				break;
		}
	} else {
		/* Checked once, so a refusal is an HTTP status, not a stream. */
		json_object_set_new(req, "limit", json_integer(1));
		json_object_set_new(req, "after", json_integer((json_int_t)after));
		g = gw(c, json_incref(req));
		if (g == NULL) {
			json_decref(req);
			return;
		}
		json_decref(g);
	}
	json_decref(req);
	c->rep->status = 200;
	c->rep->feed = true;
	c->rep->feed_after = after;
	c->rep->feed_session = strdup(c->s.gw_session);
	c->rep->content_type = "text/event-stream";
	c->rep->no_store = true;
}

ssize_t
web_feed_next(const struct web_config *cfg, const char *gw_session, const char *remote,
              const char *agent, int64_t *after, char *buf, size_t max)
{
	json_t *req = op("audit_query"), *g, *recs, *v;
	char err[256];
	size_t i, o = 0;

	json_object_set_new(req, "after", json_integer((json_int_t)*after));
	json_object_set_new(req, "limit", json_integer(20));
	g = web_gw_call(cfg->gateway_socket, req, gw_session, remote, agent, err, sizeof(err));
	if (g == NULL)
		return 0;       /* the gateway restarts: try again */
	if (!sg_reply_is_ok(g, NULL, NULL, NULL)) {
		json_decref(g);
		return -1;
	}
	recs = json_object_get(g, "records");
	json_array_foreach(recs, i, v) {
		char *line = json_dumps(v, JSON_COMPACT | JSON_ENSURE_ASCII);
		int n;

		if (line == NULL)
			break;
		n = snprintf(buf + o, max - o, "event: record\nid: %lld\ndata: %s\n\n",
		             (long long)json_integer_value(json_object_get(v, "seq")), line);
		free(line);
		if (n < 0 || (size_t)n >= max - o)
			break;      /* the rest comes at the next call */
		o += (size_t)n;
		*after = json_integer_value(json_object_get(v, "seq"));
	}
	json_decref(g);
	return (ssize_t)o;
}

/* ---- the table ---- */

enum { PUBLIC = 0, SESSION = 1 };
enum { P_NONE, P_NUM, P_NAME };

struct route {
	const char *method, *pattern;   /* pattern: one "{id}" segment at most */
	int auth, param;
	handler_fn fn;
};

static const struct route routes[] = {
	{ "POST", "/login", PUBLIC, P_NONE, h_login },
	{ "POST", "/logout", SESSION, P_NONE, h_logout },
	{ "GET", "/me", SESSION, P_NONE, h_me },
	{ "GET", "/seals", SESSION, P_NONE, h_seals },
	{ "GET", "/status", SESSION, P_NONE, h_status },
	{ "GET", "/applications", SESSION, P_NONE, h_apps },
	{ "POST", "/applications", SESSION, P_NONE, h_apply },
	{ "GET", "/applications/{id}", SESSION, P_NUM, h_app },
	{ "GET", "/applications/{id}/document", SESSION, P_NUM, h_document },
	{ "POST", "/applications/{id}/approve", SESSION, P_NUM, h_approve },
	{ "POST", "/applications/{id}/reject", SESSION, P_NUM, h_reject },
	{ "POST", "/applications/{id}/revoke", SESSION, P_NUM, h_revoke },
	{ "GET", "/applications/{id}/why", SESSION, P_NUM, h_why },
	{ "GET", "/why", SESSION, P_NONE, h_last_refusal },
	{ "GET", "/audit", SESSION, P_NONE, h_audit },
	{ "GET", "/audit/export", SESSION, P_NONE, h_audit_export },
	{ "GET", "/audit/verify", SESSION, P_NONE, h_audit_verify },
	{ "GET", "/usage", SESSION, P_NONE, h_usage },
	{ "GET", "/users", SESSION, P_NONE, h_users },
	{ "POST", "/users/{id}/unlock", SESSION, P_NAME, h_unlock },
	{ "GET", "/devices", SESSION, P_NONE, h_devices },
	{ "POST", "/devices/{id}/approve", SESSION, P_NUM, h_device_approve },
	{ "POST", "/devices/{id}/revoke", SESSION, P_NUM, h_device_revoke },
	{ "GET", "/alerts", SESSION, P_NONE, h_alerts },
	{ "GET", "/feed", SESSION, P_NONE, h_feed },
};

const struct web_route web_routes[] = {
#define R(m, p) { m, API p }
	R("POST", "/login"), R("POST", "/logout"), R("GET", "/me"), R("GET", "/seals"),
	R("GET", "/status"), R("GET", "/applications"), R("POST", "/applications"),
	R("GET", "/applications/{id}"), R("GET", "/applications/{id}/document"),
	R("POST", "/applications/{id}/approve"), R("POST", "/applications/{id}/reject"),
	R("POST", "/applications/{id}/revoke"), R("GET", "/applications/{id}/why"), R("GET", "/why"),
	R("GET", "/audit"), R("GET", "/audit/export"), R("GET", "/audit/verify"),
	R("GET", "/usage"), R("GET", "/users"), R("POST", "/users/{id}/unlock"),
	R("GET", "/devices"), R("POST", "/devices/{id}/approve"), R("POST", "/devices/{id}/revoke"),
	R("GET", "/alerts"), R("GET", "/feed"), { NULL, NULL }
#undef R
};

/* Matches path against pattern; the {id} segment goes to c->param. */
static bool
match(const char *pattern, const char *path, int kind, struct call *c)
{
	const char *brace = strstr(pattern, "{id}");
	size_t pre, seg;

	if (brace == NULL)
		return strcmp(pattern, path) == 0;
	pre = (size_t)(brace - pattern);
	if (strncmp(pattern, path, pre) != 0)
		return false;
	path += pre;
	seg = strcspn(path, "/");
	if (seg == 0 || seg >= sizeof(c->param) || strcmp(path + seg, brace + 4) != 0)
		return false;
	memcpy(c->param, path, seg);
	c->param[seg] = '\0';
	if (kind == P_NUM) {
		char *end = NULL;
		long long n;

		if (strspn(c->param, "0123456789") != seg || seg > 18)
			return false;
		n = strtoll(c->param, &end, 10);
		if (n < 1)
			return false;
		c->id = n;
	} else if (strspn(c->param, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
	           != seg) {
		return false;
	}
	return true;
}

void
web_api_handle(const struct web_request *rq, struct web_reply *rep)
{
	struct call c = { .rq = rq, .rep = rep };
	const struct route *rt = NULL;
	bool path_known = false;
	const char *sub;
	json_error_t jerr;
	int rc;

	if (strncmp(rq->path, API, strlen(API)) != 0) {
		web_reply_error(rep, 404, "not_found", "no such API path");
		return;
	}
	sub = rq->path + strlen(API);
	for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]) && rt == NULL; i++)
		if (match(routes[i].pattern, sub, routes[i].param, &c)) {
			path_known = true;
			if (strcmp(routes[i].method, rq->method) == 0)
				rt = &routes[i];
		}
	if (rt == NULL) {
		if (path_known)
			web_reply_error(rep, 404, "not_found", "%s is not done on this path", rq->method);
		else
			web_reply_error(rep, 404, "not_found", "no such API path");
		return;
	}
	if (rt->auth == SESSION) {
		rc = web_session_get(rq->cookie_id, &c.s);
		if (rc < 0) {
			/* Idle or too old: the gateway's login ends with it. */
			char err[128];

			json_decref(web_gw_call(rq->cfg->gateway_socket, op(SG_OP_LOGOUT), c.s.gw_session,
			                        rq->remote, rq->agent, err, sizeof(err)));
			web_session_clear(&c.s);
			web_reply_error(rep, 401, "session_expired", "your session has expired: log in again");
			return;
		}
		if (rc == 0) {
			web_reply_error(rep, 401, "not_logged_in", "not logged in");
			return;
		}
		c.logged_in = true;
	}
	if (strcmp(rq->method, "POST") == 0) {
		/* Every change names the session's CSRF token (a cross-site form
		 * cannot read it), and carries JSON (a form cannot send it). */
		if (c.logged_in && (rq->csrf == NULL || strlen(rq->csrf) != WEB_ID_TEXT ||
		                    CRYPTO_memcmp(rq->csrf, c.s.csrf, WEB_ID_TEXT) != 0)) {
			web_reply_error(rep, 403, "csrf", "missing or wrong X-CSRF-Token");
			goto out;
		}
		if (rq->body_len > 0 &&
		    (rq->content_type == NULL ||
		     strncasecmp(rq->content_type, "application/json", 16) != 0)) {
			web_reply_error(rep, 400, "bad_request", "the body must be application/json");
			goto out;
		}
		c.body = rq->body_len == 0 ? json_object() :
		         json_loadb((const char *)rq->body, rq->body_len, JSON_REJECT_DUPLICATES, &jerr);
		if (!json_is_object(c.body)) {
			web_reply_error(rep, 400, "bad_json", "the body is not a JSON object%s%s",
			                c.body == NULL ? ": " : "", c.body == NULL ? jerr.text : "");
			goto out;
		}
	}
	rt->fn(&c);
	if (rep->status == 0)
		web_reply_error(rep, 503, "internal", "no reply");
out:
	if (c.body != NULL) {
		sg_msg_wipe_secrets(c.body);
		json_decref(c.body);
	}
	web_session_clear(&c.s);
}
