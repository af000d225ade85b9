/*
 * sealgate-web: the HTTPS front of the gateway (docs/web.md, docs/api.md).
 * It holds no PIN, no store password and no policy: each REST request is
 * relayed as one protocol frame to sealgated's Unix socket with the
 * person's own gateway session, and "via" says which browser it is for.
 * Its own state is the table of browser sessions (session.c).
 */
#ifndef SG_WEB_H
#define SG_WEB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>
#include <sys/types.h>
#include <jansson.h>

#define WEB_COOKIE          "sg_session"
#define WEB_ID_LEN          32            /* random bytes of a cookie id and a CSRF token */
#define WEB_ID_TEXT         64            /* their text: hex */
#define WEB_BODY_MAX        (64u * 1024u) /* a JSON body */
#define WEB_UPLOAD_MAX      (16u * 1024u * 1024u) /* POST /applications with a document */
#define WEB_DOC_CHUNK       (512u * 1024u) /* doc_put / doc_get: bytes per frame */

struct web_config {
	char *listen;              /* HOST:PORT */
	char *gateway_socket;
	char *console_dir;
	char *javascript_dir;      /* Debian's /usr/share/javascript: PDF.js and Chart.js */
	char *tls_cert, *tls_key;  /* PEM files; both or neither (neither: loopback only) */
	unsigned session_idle;     /* seconds; default 900 */
	unsigned session_max;      /* seconds from login; default 28800 */
	unsigned sessions_max;     /* browser sessions at once; default 1024 */
	unsigned body_max;         /* bytes of a JSON body; default 64 KiB */
	unsigned upload_max;       /* bytes of a body carrying a document; default 16 MiB */
	unsigned connections_max;  /* HTTP connections at once; default 48 */
	unsigned connections_per_address; /* of them from one address; default 16 */
	unsigned feed_poll_ms;     /* the feed's look at the audit log; default 500 */
};

int web_config_load(const char *path, struct web_config *c, char *err, size_t errlen);
void web_config_free(struct web_config *c);

/* ---- browser sessions (session.c) ---- */

struct web_session {
	char id[WEB_ID_TEXT + 1];     /* the cookie's value */
	char csrf[WEB_ID_TEXT + 1];
	char *gw_session;             /* the gateway's token (base64) */
	char user[129];
	char site[64];
	time_t created, used;
};

int web_sessions_init(unsigned max, unsigned idle, unsigned absolute);
/* A new session for gateway token tok (copied) of user: 0 and *out (a
 * copy: the table keeps its own), or -1 when the table is full. */
int web_session_new(const char *tok, const char *user, const char *site,
                    struct web_session *out);
/* The live session of cookie id: 1 and *out (a copy; gw_session
 * malloc'd, free with web_session_clear), 0 unknown, -1 expired (it is
 * removed; *out then holds its gateway token, for a logout). */
int web_session_get(const char *id, struct web_session *out);
/* Removes it; 1 and its gateway token in *out when it was there. */
int web_session_end(const char *id, struct web_session *out);
void web_session_clear(struct web_session *s);

/* ---- the files served (files.c) ---- */

/* The real path of the file a GET of url (decoded, without the query)
 * names: under console_dir, or one of the vendor files the console loads
 * under javascript_dir. 0 and out, or -1: not one to serve. */
int web_file_resolve(const struct web_config *cfg, const char *url, char *out, size_t outlen);

/* ---- the gateway (relay.c) ---- */

/* One request to the gateway: req gets "via" {remote, agent} and, when
 * sess is set, its session; consumed. Returns the reply, or NULL with err
 * when the gateway cannot be reached. */
json_t *web_gw_call(const char *socket, json_t *req, const char *sess, const char *remote,
                    const char *agent, char *err, size_t errlen);

/* ---- the REST API (api.c) ---- */

struct web_request {
	const struct web_config *cfg;
	const char *method, *path;       /* path without the query */
	const char *remote, *agent;
	const char *cookie_id;           /* the sg_session cookie, or NULL */
	const char *csrf;                /* X-CSRF-Token, or NULL */
	const char *content_type;
	/* query arguments */
	const char *(*arg)(void *cls, const char *key);
	void *arg_cls;
	const uint8_t *body;
	size_t body_len;
};

struct web_reply {
	unsigned status;
	char *body;                 /* malloc'd */
	size_t len;
	const char *content_type;
	char *set_cookie;           /* malloc'd, or NULL */
	bool no_store;
	/* Server-Sent Events: the reply is the feed (web_feed_*). */
	bool feed;
	char *feed_session;         /* the gateway token the feed reads with */
	int64_t feed_after;
};

/* The API's routes, for the OpenAPI check: method and path pattern. */
struct web_route {
	const char *method, *pattern;
};
extern const struct web_route web_routes[];

/* Handles an /api/v1 request into rep. */
void web_api_handle(const struct web_request *rq, struct web_reply *rep);
/* The error reply {"error","message"} with status. */
void web_reply_error(struct web_reply *rep, unsigned status, const char *code, const char *fmt,
                     ...) __attribute__((format(printf, 4, 5)));
void web_reply_json(struct web_reply *rep, unsigned status, json_t *body);

/* The feed: at most max bytes of "event: record" lines for the audit rows
 * after *after read with gw_session, into buf; waits poll_ms when there
 * are none. Returns bytes, 0 for a keep-alive comment written, -1 when the
 * session has ended (the feed stops). */
ssize_t web_feed_next(const struct web_config *cfg, const char *gw_session, const char *remote,
                      const char *agent, int64_t *after, char *buf, size_t max);

#endif
