/* Fuzz target: sealgate-web's own parsing of what a browser sends, without
 * a socket: the routing of /api/v1 paths and their {id}, query arguments,
 * the session cookie, the X-CSRF-Token header, the JSON body (web/api.c),
 * and the path of a static file (web/files.c). Input, one per line:
 * METHOD, PATH[?QUERY], COOKIE, CSRF, CONTENT-TYPE, then the body; a
 * cookie or token of "S" is a live session's own, "-" none. The gateway's
 * socket does not exist: a request that gets as far as relaying gets 503. */
#include <limits.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include "web.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define ARGS_MAX 16

struct args {
	char *key[ARGS_MAX], *val[ARGS_MAX];
	size_t n;
};

static const char *
arg_of(void *cls, const char *key)
{
	struct args *a = cls;

	for (size_t i = 0; i < a->n; i++)
		if (strcmp(a->key[i], key) == 0)
			return a->val[i];
	return NULL;
}

/* The next line of [*p, end) as a string (malloc'd), *p past it. */
static char *
line(const uint8_t **p, const uint8_t *end)
{
	const uint8_t *nl = memchr(*p, '\n', (size_t)(end - *p));
	size_t n = nl ? (size_t)(nl - *p) : (size_t)(end - *p);
	char *s = malloc(n + 1);

	if (s == NULL)
		abort();
	memcpy(s, *p, n);
	s[n] = '\0';
	*p += nl ? n + 1 : n;
	return s;
}

static bool
under(const char *real, const char *dir)
{
	char root[PATH_MAX];
	size_t n;

	if (realpath(dir, root) == NULL)
		return false;
	n = strlen(root);
	return strncmp(real, root, n) == 0 && real[n] == '/';
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool ready;
	static struct web_config cfg = {
		.gateway_socket = "/nonexistent/sealgate-fuzz.sock",
		.console_dir = SG_SOURCE_DIR "/web/console",
		.javascript_dir = "/usr/share/javascript",
		.session_idle = 900, .session_max = 28800, .sessions_max = 4,
		.body_max = WEB_BODY_MAX, .upload_max = WEB_UPLOAD_MAX,
		.connections_max = 48, .connections_per_address = 16, .feed_poll_ms = 100,
	};
	const uint8_t *p = data, *end = data + size;
	char *method, *path, *cookie, *csrf, *type, *q, real[PATH_MAX];
	struct web_request rq = { .cfg = &cfg, .remote = "192.0.2.1", .agent = "fuzz" };
	struct web_reply rep = { 0 };
	struct web_session s, gone;
	struct args a = { .n = 0 };

	if (!ready) {
		if (web_sessions_init(cfg.sessions_max, cfg.session_idle, cfg.session_max) < 0)
			abort();
		ready = true;
	}
	if (web_session_new("ZnV6eg==", "alice", "main", &s) < 0)
		abort();
	method = line(&p, end);
	path = line(&p, end);
	cookie = line(&p, end);
	csrf = line(&p, end);
	type = line(&p, end);
	/* PATH?a=1&b=2: the query's pairs, as the HTTP server hands them. */
	if ((q = strchr(path, '?')) != NULL) {
		char *save = NULL, *kv;

		*q++ = '\0';
		for (kv = strtok_r(q, "&", &save); kv != NULL && a.n < ARGS_MAX;
		     kv = strtok_r(NULL, "&", &save)) {
			char *eq = strchr(kv, '=');

			if (eq != NULL)
				*eq++ = '\0';
			a.key[a.n] = kv;
			a.val[a.n++] = eq ? eq : "";
		}
	}
	if (web_file_resolve(&cfg, path, real, sizeof(real)) == 0 &&
	    !under(real, cfg.console_dir) && !under(real, cfg.javascript_dir))
		abort();   /* a path out of the served directories */
	rq.method = method;
	rq.path = path;
	rq.cookie_id = strcmp(cookie, "S") == 0 ? s.id : strcmp(cookie, "-") == 0 ? NULL : cookie;
	rq.csrf = strcmp(csrf, "S") == 0 ? s.csrf : strcmp(csrf, "-") == 0 ? NULL : csrf;
	rq.content_type = strcmp(type, "-") == 0 ? NULL : type;
	rq.arg = arg_of;
	rq.arg_cls = &a;
	rq.body = p;
	rq.body_len = (size_t)(end - p);
	web_api_handle(&rq, &rep);
	if (rep.status < 200 || rep.status > 599 || (rep.body == NULL && !rep.feed))
		abort();
	free(rep.body);
	free(rep.set_cookie);
	free(rep.feed_session);
	if (web_session_end(s.id, &gone) == 1)
		web_session_clear(&gone);
	web_session_clear(&s);
	free(method);
	free(path);
	free(cookie);
	free(csrf);
	free(type);
	return 0;
}
