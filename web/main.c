/*
 * sealgate-web's process: its configuration, the listening socket (TLS
 * 1.2+ through libmicrohttpd's GnuTLS, or plain HTTP on a loopback
 * address only), dropping root, and the HTTP side of every request:
 * body caps, the headers every reply carries, the console's static files
 * and the feed's stream. The API itself is api.c.
 */
#include "web.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <netdb.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <microhttpd.h>
#include <openssl/crypto.h>

#include "yamlutil.h"

#define CSP "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; " \
            "worker-src 'self' blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; " \
            "form-action 'self'; frame-ancestors 'none'"
#define FILE_MAX (64u * 1024u * 1024u)   /* a static file of the console */

static struct web_config cfg;
static bool tls_on;
static volatile sig_atomic_t stop;

/* ---- configuration ---- */

static const char *const keys[] = { "listen", "gateway_socket", "console_dir", "tls_cert",
	"tls_key", "session_idle", "session_max", "sessions_max", "body_max", "upload_max",
	"connections_max", "connections_per_address", "feed_poll_ms", "javascript_dir", NULL };

void
web_config_free(struct web_config *c)
{
	free(c->listen);
	free(c->gateway_socket);
	free(c->console_dir);
	free(c->javascript_dir);
	free(c->tls_cert);
	free(c->tls_key);
	memset(c, 0, sizeof(*c));
}

static int
get_str(struct gw_yaml *y, yaml_node_t *root, const char *key, const char *def, char **out)
{
	yaml_node_t *n = gw_yaml_map_get(y, root, key);

	if (n == NULL) {
		*out = def ? strdup(def) : NULL;
		return 0;
	}
	return gw_yaml_str(y, n, key, out);
}

int
web_config_load(const char *path, struct web_config *c, char *err, size_t errlen)
{
	static const struct { const char *key; int64_t lo, hi, dflt; size_t off; } ints[] = {
		{ "session_idle", 1, 86400, 900, offsetof(struct web_config, session_idle) },
		{ "session_max", 1, 7 * 86400, 28800, offsetof(struct web_config, session_max) },
		{ "sessions_max", 1, 65536, 1024, offsetof(struct web_config, sessions_max) },
		{ "body_max", 1024, 1024 * 1024, WEB_BODY_MAX, offsetof(struct web_config, body_max) },
		{ "upload_max", 1024, 64 * 1024 * 1024, WEB_UPLOAD_MAX,
		  offsetof(struct web_config, upload_max) },
		{ "connections_max", 4, 1024, 48, offsetof(struct web_config, connections_max) },
		{ "connections_per_address", 1, 1024, 16,
		  offsetof(struct web_config, connections_per_address) },
		{ "feed_poll_ms", 100, 10000, 500, offsetof(struct web_config, feed_poll_ms) },
	};
	struct gw_yaml y = { 0 };
	uint8_t *buf = NULL;
	size_t len = 0;
	yaml_node_t *root, *n;
	int64_t v;
	int rv = -1;

	memset(c, 0, sizeof(*c));
	if (gw_yaml_read_file(path, &buf, &len, err, errlen) < 0)
		return -1;
	root = gw_yaml_open(&y, path, buf, len, err, errlen);
	if (root == NULL || gw_yaml_map_check(&y, root, "sealgate-web's configuration", keys) < 0)
		goto out;
	if (get_str(&y, root, "listen", "127.0.0.1:8443", &c->listen) < 0 ||
	    get_str(&y, root, "gateway_socket", "/run/sealgate/sealgated.sock", &c->gateway_socket) < 0 ||
	    get_str(&y, root, "console_dir", "/usr/share/sealgate/console", &c->console_dir) < 0 ||
	    get_str(&y, root, "javascript_dir", "/usr/share/javascript", &c->javascript_dir) < 0 ||
	    get_str(&y, root, "tls_cert", NULL, &c->tls_cert) < 0 ||
	    get_str(&y, root, "tls_key", NULL, &c->tls_key) < 0)
		goto out;
	for (size_t i = 0; i < sizeof(ints) / sizeof(ints[0]); i++) {
		unsigned *dst = (unsigned *)((char *)c + ints[i].off);

		*dst = (unsigned)ints[i].dflt;
		if ((n = gw_yaml_map_get(&y, root, ints[i].key)) != NULL) {
			if (gw_yaml_int(&y, n, ints[i].key, ints[i].lo, ints[i].hi, &v) < 0)
				goto out;
			*dst = (unsigned)v;
		}
	}
	if ((c->tls_cert == NULL) != (c->tls_key == NULL)) {
		gw_yaml_errf(&y, root, "tls_cert and tls_key go together");
		goto out;
	}
	if (c->session_idle > c->session_max) {
		gw_yaml_errf(&y, root, "session_idle is longer than session_max");
		goto out;
	}
	rv = 0;
out:
	gw_yaml_close(&y);
	free(buf);
	if (rv < 0)
		web_config_free(c);
	return rv;
}

/* ---- the listening socket ---- */

/* Binds HOST:PORT ("[v6]:port" for IPv6); *loopback says whether it is
 * a loopback address. fd, or -1 with err. */
static int
listen_on(const char *spec, bool *loopback, char *err, size_t errlen)
{
	char host[128], *colon;
	const char *port;
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICHOST | AI_PASSIVE };
	struct addrinfo *ai = NULL;
	int fd = -1, one = 1, rc;

	if (strlen(spec) >= sizeof(host)) {
		snprintf(err, errlen, "listen: too long");
		return -1;
	}
	snprintf(host, sizeof(host), "%s", spec);
	colon = strrchr(host, ':');
	if (colon == NULL) {
		snprintf(err, errlen, "listen must be HOST:PORT (an IP address), not '%s'", spec);
		return -1;
	}
	*colon = '\0';
	port = colon + 1;
	if (host[0] == '[' && colon > host && colon[-1] == ']') {
		colon[-1] = '\0';
		memmove(host, host + 1, strlen(host));
	}
	rc = getaddrinfo(host, port, &hints, &ai);
	if (rc != 0) {
		snprintf(err, errlen, "listen %s: %s (an IP address and a port)", spec, gai_strerror(rc));
		return -1;
	}
	if (ai->ai_family == AF_INET)
		*loopback = (ntohl(((struct sockaddr_in *)ai->ai_addr)->sin_addr.s_addr) >> 24) == 127;
	else
		*loopback = IN6_IS_ADDR_LOOPBACK(&((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr);
	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 64) < 0) {
		snprintf(err, errlen, "listen %s: %s", spec, strerror(errno));
		if (fd >= 0)
			close(fd);
		fd = -1;
	}
	freeaddrinfo(ai);
	return fd;
}

static char *
read_pem(const char *path, char *err, size_t errlen)
{
	uint8_t *buf = NULL;
	size_t len = 0;

	if (gw_yaml_read_file(path, &buf, &len, err, errlen) < 0)
		return NULL;
	return (char *)buf;
}

/* Root drops to user (its groups none but its own), for good. */
static int
drop_to(const char *user, char *err, size_t errlen)
{
	struct passwd *pw = getpwnam(user);

	if (pw == NULL) {
		snprintf(err, errlen, "--user %s: no such OS user", user);
		return -1;
	}
	if (pw->pw_uid == 0) {
		snprintf(err, errlen, "--user %s is root", user);
		return -1;
	}
	if (setgroups(0, NULL) < 0 || setgid(pw->pw_gid) < 0 || setuid(pw->pw_uid) < 0) {
		snprintf(err, errlen, "dropping to %s: %s", user, strerror(errno));
		return -1;
	}
	if (setuid(0) == 0) {
		snprintf(err, errlen, "dropping to %s: root could be regained", user);
		return -1;
	}
	return 0;
}

/* ---- per connection ---- */

struct conn {
	uint8_t *body;
	size_t len, cap, limit;
	bool too_large;
	char remote[64];
};

static const char *
arg_of(void *cls, const char *key)
{
	return MHD_lookup_connection_value(cls, MHD_GET_ARGUMENT_KIND, key);
}

static void
headers(struct MHD_Response *r, const struct web_reply *rep)
{
	MHD_add_response_header(r, "Content-Type", rep->content_type ? rep->content_type :
	                        "application/octet-stream");
	MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
	MHD_add_response_header(r, "Referrer-Policy", "no-referrer");
	MHD_add_response_header(r, "X-Frame-Options", "DENY");
	/* A document is bytes to download, never a page of this origin. */
	MHD_add_response_header(r, "Content-Security-Policy",
	                        rep->content_type && strcmp(rep->content_type, "application/pdf") == 0 ?
	                        "sandbox; default-src 'none'" : CSP);
	if (rep->content_type && strcmp(rep->content_type, "application/pdf") == 0)
		MHD_add_response_header(r, "Content-Disposition", "attachment; filename=\"document.pdf\"");
	if (tls_on)
		MHD_add_response_header(r, "Strict-Transport-Security", "max-age=31536000");
	MHD_add_response_header(r, "Cache-Control", rep->no_store ? "no-store" : "no-cache");
	if (rep->set_cookie)
		MHD_add_response_header(r, "Set-Cookie", rep->set_cookie);
}

static enum MHD_Result
send_reply(struct MHD_Connection *mc, struct web_reply *rep)
{
	struct MHD_Response *r;
	enum MHD_Result ret;

	r = MHD_create_response_from_buffer(rep->len, rep->body ? rep->body : (void *)"",
	                                    MHD_RESPMEM_MUST_COPY);
	if (r == NULL)
		return MHD_NO;
	headers(r, rep);
	ret = MHD_queue_response(mc, rep->status, r);
	MHD_destroy_response(r);
	return ret;
}

/* ---- the feed ---- */

struct feed {
	char *session;
	char remote[64];
	char agent[256];
	int64_t after;
	char buf[64 * 1024];
	size_t have, sent;
	unsigned quiet_ms;
};

static ssize_t
feed_read(void *cls, uint64_t pos, char *out, size_t max)
{
	struct feed *f = cls;
	ssize_t n;

	(void)pos;
	while (f->sent == f->have) {
		if (stop)
			return MHD_CONTENT_READER_END_OF_STREAM;
		f->have = f->sent = 0;
		n = web_feed_next(&cfg, f->session, f->remote, f->agent, &f->after, f->buf,
		                  sizeof(f->buf));
		if (n < 0)
			return MHD_CONTENT_READER_END_OF_STREAM;   /* the session ended */
		if (n > 0) {
			f->have = (size_t)n;
			f->quiet_ms = 0;
			break;
		}
		f->quiet_ms += cfg.feed_poll_ms;
		if (f->quiet_ms >= 15000) {
			/* A comment now and then: proxies and the connection
			 * timeout see a live stream. */
			f->have = (size_t)snprintf(f->buf, sizeof(f->buf), ": keep-alive\n\n");
			f->quiet_ms = 0;
			break;
		}
		usleep(cfg.feed_poll_ms * 1000u);
	}
	n = (ssize_t)(f->have - f->sent < max ? f->have - f->sent : max);
	memcpy(out, f->buf + f->sent, (size_t)n);
	f->sent += (size_t)n;
	return n;
}

static void
feed_free(void *cls)
{
	struct feed *f = cls;

	if (f->session) {
		OPENSSL_cleanse(f->session, strlen(f->session));
		free(f->session);
	}
	free(f);
}

static enum MHD_Result
send_feed(struct MHD_Connection *mc, struct web_reply *rep, const char *remote, const char *agent)
{
	struct feed *f = calloc(1, sizeof(*f));
	struct MHD_Response *r;
	enum MHD_Result ret;

	if (f == NULL)
		return MHD_NO;
	f->session = rep->feed_session;
	rep->feed_session = NULL;
	f->after = rep->feed_after;
	snprintf(f->remote, sizeof(f->remote), "%s", remote);
	snprintf(f->agent, sizeof(f->agent), "%s", agent ? agent : "");
	r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, feed_read, f, feed_free);
	if (r == NULL) {
		feed_free(f);
		return MHD_NO;
	}
	headers(r, rep);
	ret = MHD_queue_response(mc, 200, r);
	MHD_destroy_response(r);
	return ret;
}

/* ---- the console's files ---- */

static const char *
type_of(const char *path)
{
	static const struct { const char *ext, *type; } types[] = {
		{ ".html", "text/html; charset=utf-8" }, { ".js", "text/javascript; charset=utf-8" },
		{ ".mjs", "text/javascript; charset=utf-8" }, { ".css", "text/css; charset=utf-8" },
		{ ".json", "application/json; charset=utf-8" }, { ".svg", "image/svg+xml" },
		{ ".png", "image/png" }, { ".ico", "image/x-icon" }, { ".woff2", "font/woff2" },
		{ ".map", "application/json; charset=utf-8" }, { ".txt", "text/plain; charset=utf-8" },
		{ ".bcmap", "application/octet-stream" }, { ".pfb", "application/octet-stream" },
	};
	const char *dot = strrchr(path, '.');

	for (size_t i = 0; dot != NULL && i < sizeof(types) / sizeof(types[0]); i++)
		if (strcmp(dot, types[i].ext) == 0)
			return types[i].type;
	return "application/octet-stream";
}

/* The file url names (web_file_resolve: under console_dir, or one of
 * the console's vendor files under javascript_dir). */
static void
static_file(const char *url, struct web_reply *rep)
{
	char real[PATH_MAX];
	struct stat st;
	int fd = -1;
	ssize_t n;

	if (web_file_resolve(&cfg, url, real, sizeof(real)) < 0 ||
	    (fd = open(real, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) < 0 || fstat(fd, &st) < 0 ||
	    !S_ISREG(st.st_mode) || st.st_size > (off_t)FILE_MAX) {
		if (fd >= 0)
			close(fd);
		web_reply_error(rep, 404, "not_found", "no such file");
		rep->no_store = false;
		return;
	}
	rep->body = malloc((size_t)st.st_size + 1);
	rep->len = 0;
	while (rep->body != NULL && rep->len < (size_t)st.st_size &&
	       (n = read(fd, rep->body + rep->len, (size_t)st.st_size - rep->len)) > 0)
		rep->len += (size_t)n;
	close(fd);
	if (rep->body == NULL || rep->len != (size_t)st.st_size) {
		web_reply_error(rep, 503, "internal", "the file could not be read");
		return;
	}
	rep->status = 200;
	rep->content_type = type_of(real);
}

/* ---- requests ---- */

static enum MHD_Result
on_request(void *cls, struct MHD_Connection *mc, const char *url, const char *method,
           const char *version, const char *upload, size_t *upload_size, void **con_cls)
{
	struct conn *c = *con_cls;
	struct web_reply rep = { 0 };
	struct web_request rq = { 0 };
	enum MHD_Result ret;
	const char *cookies, *len_h;

	(void)cls;
	(void)version;
	if (c == NULL) {
		const union MHD_ConnectionInfo *ci =
			MHD_get_connection_info(mc, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
		const struct sockaddr *sa = ci ? ci->client_addr : NULL;

		c = calloc(1, sizeof(*c));
		if (c == NULL)
			return MHD_NO;
		*con_cls = c;
		if (sa != NULL && sa->sa_family == AF_INET)
			inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, c->remote,
			          sizeof(c->remote));
		else if (sa != NULL && sa->sa_family == AF_INET6)
			inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, c->remote,
			          sizeof(c->remote));
		else
			snprintf(c->remote, sizeof(c->remote), "0.0.0.0");
		/* Only creating an application carries a document. */
		c->limit = strcmp(method, "POST") == 0 && strcmp(url, "/api/v1/applications") == 0 ?
		           cfg.upload_max * 4 / 3 + 4096 : cfg.body_max;
		len_h = MHD_lookup_connection_value(mc, MHD_HEADER_KIND, "Content-Length");
		if (len_h != NULL && strtoull(len_h, NULL, 10) > c->limit) {
			/* Said before a byte of it is read; the connection closes. */
			c->too_large = true;
			web_reply_error(&rep, 413, "too_large", "the body is over its limit (%zu bytes)",
			                c->limit);
			ret = send_reply(mc, &rep);
			free(rep.body);
			return ret;
		}
		return MHD_YES;
	}
	if (*upload_size > 0) {
		if (!c->too_large && c->len + *upload_size > c->limit)
			c->too_large = true;
		if (!c->too_large) {
			if (c->len + *upload_size > c->cap) {
				size_t cap = c->cap ? c->cap : 4096;
				uint8_t *nb;

				while (cap < c->len + *upload_size)
					cap *= 2;
				if (cap > c->limit)
					cap = c->limit;
				nb = realloc(c->body, cap);
				if (nb == NULL)
					return MHD_NO;
				c->body = nb;
				c->cap = cap;
			}
			memcpy(c->body + c->len, upload, *upload_size);
			c->len += *upload_size;
		}
		*upload_size = 0;
		return MHD_YES;
	}
	if (c->too_large) {
		web_reply_error(&rep, 413, "too_large", "the body is over its limit (%zu bytes)", c->limit);
		ret = send_reply(mc, &rep);
		goto out;
	}
	if (strncmp(url, "/api/", 5) != 0) {
		if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
			web_reply_error(&rep, 404, "not_found", "no such path");
		else
			static_file(url, &rep);
		ret = send_reply(mc, &rep);
		goto out;
	}
	rq.cfg = &cfg;
	rq.method = method;
	rq.path = url;
	rq.remote = c->remote;
	rq.agent = MHD_lookup_connection_value(mc, MHD_HEADER_KIND, "User-Agent");
	cookies = MHD_lookup_connection_value(mc, MHD_COOKIE_KIND, WEB_COOKIE);
	rq.cookie_id = cookies;
	rq.csrf = MHD_lookup_connection_value(mc, MHD_HEADER_KIND, "X-CSRF-Token");
	rq.content_type = MHD_lookup_connection_value(mc, MHD_HEADER_KIND, "Content-Type");
	rq.arg = arg_of;
	rq.arg_cls = mc;
	rq.body = c->body;
	rq.body_len = c->len;
	web_api_handle(&rq, &rep);
	if (rep.feed)
		ret = send_feed(mc, &rep, c->remote, rq.agent);
	else
		ret = send_reply(mc, &rep);
out:
	if (rep.body != NULL) {
		OPENSSL_cleanse(rep.body, rep.len);
		free(rep.body);
	}
	free(rep.set_cookie);
	if (rep.feed_session) {
		OPENSSL_cleanse(rep.feed_session, strlen(rep.feed_session));
		free(rep.feed_session);
	}
	return ret;
}

static void
on_done(void *cls, struct MHD_Connection *mc, void **con_cls, enum MHD_RequestTerminationCode t)
{
	struct conn *c = *con_cls;

	(void)cls;
	(void)mc;
	(void)t;
	if (c == NULL)
		return;
	if (c->body != NULL) {
		/* (a login's body holds a password) */
		OPENSSL_cleanse(c->body, c->cap);
		free(c->body);
	}
	free(c);
	*con_cls = NULL;
}

static void
on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static void
usage(FILE *f)
{
	fprintf(f, "usage: sealgate-web --config FILE [--user NAME] [--print-routes]\n");
}

int
main(int argc, char **argv)
{
	const char *config = NULL, *user = NULL;
	char err[512], *cert = NULL, *key = NULL;
	struct MHD_Daemon *d = NULL;
	bool loopback = false;
	unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
	                 MHD_USE_ERROR_LOG;
	int fd = -1, rv = 1;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
			config = argv[++i];
		} else if (strcmp(argv[i], "--user") == 0 && i + 1 < argc) {
			user = argv[++i];
		} else if (strcmp(argv[i], "--print-routes") == 0) {
			/* For the OpenAPI check (tests/web): the routes served. */
			for (size_t k = 0; web_routes[k].method != NULL; k++)
				printf("%s %s\n", web_routes[k].method, web_routes[k].pattern);
			return 0;
		} else {
			usage(stderr);
			return 2;
		}
	}
	if (config == NULL) {
		usage(stderr);
		return 2;
	}
	if (geteuid() == 0 && user == NULL) {
		fprintf(stderr, "sealgate-web: refusing to run as root: give --user NAME to drop to "
		        "(its own user, the gateway's web_front)\n");
		return 1;
	}
	if (web_config_load(config, &cfg, err, sizeof(err)) < 0) {
		fprintf(stderr, "sealgate-web: %s\n", err);
		return 1;
	}
	fd = listen_on(cfg.listen, &loopback, err, sizeof(err));
	if (fd < 0) {
		fprintf(stderr, "sealgate-web: %s\n", err);
		goto out;
	}
	if (cfg.tls_cert == NULL && !loopback) {
		fprintf(stderr, "sealgate-web: listen %s without TLS: plain HTTP is for a loopback "
		        "address only (set tls_cert and tls_key)\n", cfg.listen);
		goto out;
	}
	if (cfg.tls_cert != NULL) {
		if (!MHD_is_feature_supported(MHD_FEATURE_TLS)) {
			fprintf(stderr, "sealgate-web: this libmicrohttpd has no TLS\n");
			goto out;
		}
		/* Read as root, before the drop: the key stays root's file. */
		if ((cert = read_pem(cfg.tls_cert, err, sizeof(err))) == NULL ||
		    (key = read_pem(cfg.tls_key, err, sizeof(err))) == NULL) {
			fprintf(stderr, "sealgate-web: %s\n", err);
			goto out;
		}
		flags |= MHD_USE_TLS;
		tls_on = true;
	}
	if (user != NULL && geteuid() == 0 && drop_to(user, err, sizeof(err)) < 0) {
		fprintf(stderr, "sealgate-web: %s\n", err);
		goto out;
	}
	if (web_sessions_init(cfg.sessions_max, cfg.session_idle, cfg.session_max) < 0) {
		fprintf(stderr, "sealgate-web: out of memory\n");
		goto out;
	}
	signal(SIGPIPE, SIG_IGN);
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);
	if (tls_on)
		d = MHD_start_daemon(flags, 0, NULL, NULL, on_request, NULL,
		                     MHD_OPTION_LISTEN_SOCKET, fd,
		                     MHD_OPTION_NOTIFY_COMPLETED, on_done, NULL,
		                     MHD_OPTION_CONNECTION_LIMIT, cfg.connections_max,
		                     MHD_OPTION_PER_IP_CONNECTION_LIMIT, cfg.connections_per_address,
		                     MHD_OPTION_CONNECTION_TIMEOUT, 60u,
		                     MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)64 * 1024,
		                     MHD_OPTION_HTTPS_MEM_CERT, cert, MHD_OPTION_HTTPS_MEM_KEY, key,
		                     MHD_OPTION_HTTPS_PRIORITIES,
		                     "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2",
		                     MHD_OPTION_END);
	else
		d = MHD_start_daemon(flags, 0, NULL, NULL, on_request, NULL,
		                     MHD_OPTION_LISTEN_SOCKET, fd,
		                     MHD_OPTION_NOTIFY_COMPLETED, on_done, NULL,
		                     MHD_OPTION_CONNECTION_LIMIT, cfg.connections_max,
		                     MHD_OPTION_PER_IP_CONNECTION_LIMIT, cfg.connections_per_address,
		                     MHD_OPTION_CONNECTION_TIMEOUT, 60u,
		                     MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)64 * 1024,
		                     MHD_OPTION_END);
	if (d == NULL) {
		fprintf(stderr, "sealgate-web: the HTTP server did not start\n");
		goto out;
	}
	fd = -1;   /* the daemon's now */
	fprintf(stderr, "sealgate-web: serving %s://%s (gateway %s, console %s)\n",
	        tls_on ? "https" : "http", cfg.listen, cfg.gateway_socket, cfg.console_dir);
	while (!stop)
		pause();
	rv = 0;
out:
	if (d != NULL)
		MHD_stop_daemon(d);
	if (fd >= 0)
		close(fd);
	if (key != NULL) {
		OPENSSL_cleanse(key, strlen(key));
		free(key);
	}
	free(cert);
	web_config_free(&cfg);
	return rv;
}
