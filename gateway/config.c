/*
 * sealgated's configuration file (docs/configuration.md): strict YAML into
 * struct gw_config with defaults and relative paths resolved against the
 * file's directory, and the careful reading of the backend token's PIN file.
 */
#include "config.h"
#include "policy.h"
#include "protocol.h"
#include "sg-config.h"
#include "store.h"
#include "yamlutil.h"
#include "notify/notify_conf.h"
#include "online.h"   /* GW_RISK_QUEUE_DEFAULT */

#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <stddef.h>
#include <openssl/crypto.h>

#define PIN_MAX 256
#define TOKEN_LABEL_MAX 32         /* CK_TOKEN_INFO.label is 32 bytes */
#define SESSIONS_MAX 64
#define TIMEOUT_MAX (30u * 24 * 3600)

static const char *const config_keys[] = {
	"backend_module", "backend_token", "token_pin_file", "socket_path",
	"socket_mode", "store", "store_path", "site", "policy_path", "token_label", "audit_key",
	"backend_sessions", "session_timeout", "log", "log_debug", "card_watch", "reader",
	"audit_checkpoint_interval", "auth_max_failures", "auth_lockout", "signing_window",
	"confirm_timeout", "password_cost", "password_hash_concurrency", "test_clock",
	"max_connections", "connections_per_uid", "connections_per_unknown_uid", "frame_timeout",
	"client_idle_timeout", "totp_site_keys", "totp_key_file",
	/* The TLS front (docs/deployment.md). */
	"tls_listen", "tls_cert", "tls_key", "tls_device_ca", "tls_device_ca_key", "tls_devices",
	"tls_enroll_listen", "tls_connections_per_device", "tls_device_days",
	"tls_device_ca_token_label",
	/* The web front (docs/web.md). */
	"web_front",
	/* Notifications (docs/notifications.md). */
	"notify",
	/* The online risk rules (docs/risk.md). */
	"risk_online", "risk_queue",

	/* Documents (docs/stamp.md). */
	"document_max_size",
	/* Sessions in the store (docs/authentication.md, "Sessions"). */
	"session_max_age", NULL
};

void
gw_config_free(struct gw_config **cfg)
{
	struct gw_config *c = cfg ? *cfg : NULL;

	if (c == NULL)
		return;
	free(c->path);
	free(c->backend_module);
	free(c->backend_token);
	free(c->token_pin_file);
	free(c->socket_path);
	free(c->store_path);
	if (c->store_url != NULL)
		OPENSSL_cleanse(c->store_url, strlen(c->store_url));   /* (it may hold a password) */
	free(c->store_url);
	free(c->store_shown);
	gw_notify_conf_free(&c->notify);
	free(c->site);
	free(c->policy_path);
	free(c->token_label);
	free(c->audit_key);
	free(c->totp_site_keys);
	free(c->totp_key_file);
	free(c->log);
	free(c->card_watch);
	free(c->reader);
	free(c->tls_listen);
	free(c->tls_cert);
	free(c->tls_key);
	free(c->tls_device_ca);
	free(c->tls_device_ca_key);
	free(c->web_front_user);
	free(c->web_front_exe);
	free(c->tls_device_ca_token_label);
	free(c->tls_devices);
	free(c->tls_enroll_listen);
	free(c);
	*cfg = NULL;
}

/* Directory of name, without resolving symlinks: an administrator who
 * links /etc/sealgate/sealgated.yaml expects paths relative to /etc/sealgate. */
static char *
base_dir(const char *name)
{
	const char *slash = strrchr(name, '/');
	char *dir = NULL;

	if (slash == NULL)
		return strdup(".");
	if (slash == name)
		return strdup("/");
	if (asprintf(&dir, "%.*s", (int)(slash - name), name) < 0)
		return NULL;
	return dir;
}

/* Makes *p absolute against dir when it is relative; bare module names
 * (no slash) are left for dlopen's search when module is true. */
static int
resolve(struct gw_yaml *y, yaml_node_t *node, const char *dir, char **p, bool module)
{
	char *abs = NULL;

	if ((*p)[0] == '/' || (module && strchr(*p, '/') == NULL))
		return 0;
	if (asprintf(&abs, "%s/%s", dir, *p) < 0)
		return gw_yaml_errf(y, node, "out of memory");
	free(*p);
	*p = abs;
	return 0;
}

static int
get_path(struct gw_yaml *y, yaml_node_t *root, const char *key, const char *dir,
         const char *def, char **out)
{
	yaml_node_t *n = gw_yaml_map_get(y, root, key);

	if (n == NULL) {
		if (def == NULL)
			return gw_yaml_errf(y, root, "%s: missing (required)", key);
		*out = strdup(def);
		return *out ? 0 : gw_yaml_errf(y, root, "out of memory");
	}
	if (gw_yaml_str(y, n, key, out) < 0)
		return -1;
	return resolve(y, n, dir, out, strcmp(key, "backend_module") == 0);
}

static int
get_str(struct gw_yaml *y, yaml_node_t *root, const char *key, const char *def,
        char **out)
{
	yaml_node_t *n = gw_yaml_map_get(y, root, key);

	if (n == NULL) {
		*out = def ? strdup(def) : NULL;
		return def && *out == NULL ? gw_yaml_errf(y, root, "out of memory") : 0;
	}
	return gw_yaml_str(y, n, key, out);
}

/* An optional path: NULL when absent. */
static int
get_opt_path(struct gw_yaml *y, yaml_node_t *root, const char *key, const char *dir, char **out)
{
	yaml_node_t *n = gw_yaml_map_get(y, root, key);

	*out = NULL;
	if (n == NULL)
		return 0;
	if (gw_yaml_str(y, n, key, out) < 0)
		return -1;
	return resolve(y, n, dir, out, false);
}

/* The TLS front's keys: all or nothing of what a listener needs. */
static int
parse_tls(struct gw_yaml *y, yaml_node_t *root, const char *dir, struct gw_config *c)
{
	yaml_node_t *n;
	int64_t v;

	if (get_str(y, root, "tls_listen", NULL, &c->tls_listen) < 0 ||
	    get_str(y, root, "tls_enroll_listen", NULL, &c->tls_enroll_listen) < 0 ||
	    get_opt_path(y, root, "tls_cert", dir, &c->tls_cert) < 0 ||
	    get_opt_path(y, root, "tls_key", dir, &c->tls_key) < 0 ||
	    get_opt_path(y, root, "tls_device_ca", dir, &c->tls_device_ca) < 0 ||
	    get_opt_path(y, root, "tls_device_ca_key", dir, &c->tls_device_ca_key) < 0 ||
	    get_opt_path(y, root, "tls_devices", dir, &c->tls_devices) < 0 ||
	    get_str(y, root, "tls_device_ca_token_label", NULL, &c->tls_device_ca_token_label) < 0)
		return -1;
	c->tls_connections_per_device = 8;
	if ((n = gw_yaml_map_get(y, root, "tls_connections_per_device")) != NULL) {
		if (gw_yaml_int(y, n, "tls_connections_per_device", 1, 1024, &v) < 0)
			return -1;
		c->tls_connections_per_device = (unsigned)v;
	}
	c->tls_device_days = 365;
	if ((n = gw_yaml_map_get(y, root, "tls_device_days")) != NULL) {
		if (gw_yaml_int(y, n, "tls_device_days", 1, 3650, &v) < 0)
			return -1;
		c->tls_device_days = (unsigned)v;
	}
	if (c->tls_listen == NULL && c->tls_enroll_listen != NULL)
		return gw_yaml_errf(y, gw_yaml_map_get(y, root, "tls_enroll_listen"),
		                    "tls_enroll_listen without tls_listen: enrolled devices would "
		                    "have nowhere to go");
	if (c->tls_listen == NULL)
		return 0;
	if (c->tls_cert == NULL || c->tls_key == NULL || c->tls_device_ca == NULL ||
	    c->tls_devices == NULL)
		return gw_yaml_errf(y, gw_yaml_map_get(y, root, "tls_listen"),
		                    "tls_listen needs tls_cert, tls_key (the gateway's own), "
		                    "tls_device_ca (the devices' CA) and tls_devices (their records)");
	if (c->tls_device_ca_key != NULL && c->tls_device_ca_token_label != NULL)
		return gw_yaml_errf(y, gw_yaml_map_get(y, root, "tls_device_ca_token_label"),
		                    "tls_device_ca_token_label and tls_device_ca_key: the device CA's "
		                    "key is on the token or in a file, not both");
	if (c->tls_device_ca_token_label != NULL &&
	    (c->tls_device_ca_token_label[0] == '\0' || strlen(c->tls_device_ca_token_label) > 64))
		return gw_yaml_errf(y, gw_yaml_map_get(y, root, "tls_device_ca_token_label"),
		                    "tls_device_ca_token_label: 1 to 64 characters");
	if (c->tls_enroll_listen != NULL && c->tls_device_ca_key == NULL &&
	    c->tls_device_ca_token_label == NULL)
		return gw_yaml_errf(y, gw_yaml_map_get(y, root, "tls_enroll_listen"),
		                    "tls_enroll_listen needs tls_device_ca_token_label (or a file "
		                    "tls_device_ca_key) to issue certificates");
	return 0;
}

/* web_front: {user: NAME}: the OS user sealgate-web runs as, resolved to
 * its uid now, so a front that is not there is said at start. Root and a
 * uid that people log in from cannot be the front: every request of that
 * uid would be taken as a web request. */
static int
parse_web_front(struct gw_yaml *y, yaml_node_t *root, struct gw_config *c)
{
	static const char *const keys[] = { "user", "exe", NULL };
	yaml_node_t *n = gw_yaml_map_get(y, root, "web_front"), *u, *e;
	struct passwd pw, *res = NULL;
	char buf[1024];

	if (n == NULL)
		return 0;
	if (gw_yaml_map_check(y, n, "web_front", keys) < 0)
		return -1;
	u = gw_yaml_map_get(y, n, "user");
	if (u == NULL)
		return gw_yaml_errf(y, n, "web_front: user: missing (the OS user sealgate-web runs as)");
	if (gw_yaml_str(y, u, "web_front.user", &c->web_front_user) < 0)
		return -1;
	if (getpwnam_r(c->web_front_user, &pw, buf, sizeof(buf), &res) != 0 || res == NULL)
		return gw_yaml_errf(y, u, "web_front: user: no OS user named '%s'", c->web_front_user);
	if (pw.pw_uid == 0)
		return gw_yaml_errf(y, u, "web_front: user: root cannot be the web front (give "
		                    "sealgate-web a user of its own)");
	c->web_front_uid = pw.pw_uid;
	/* A program of that uid that is not sealgate-web (a shell of the
	 * front's user) is then not the front. */
	if ((e = gw_yaml_map_get(y, n, "exe")) != NULL) {
		if (gw_yaml_str(y, e, "web_front.exe", &c->web_front_exe) < 0)
			return -1;
		if (c->web_front_exe[0] != '/')
			return gw_yaml_errf(y, e, "web_front: exe: must be an absolute path");
	}
	c->web_front = true;
	return 0;
}

static unsigned
default_sessions(void)
{
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);

	if (cpus < 1)
		cpus = 1;
	if (cpus > SESSIONS_MAX / 2)
		cpus = SESSIONS_MAX / 2;
	return (unsigned)cpus * 2;
}

static int
parse_socket_mode(struct gw_yaml *y, yaml_node_t *n, mode_t *out)
{
	const char *v = gw_yaml_scalar(n);
	unsigned long m = 0;
	size_t len;

	if (v == NULL)
		return gw_yaml_errf(y, n, "socket_mode must be an octal mode such as \"0660\"");
	len = strlen(v);
	if (len < 3 || len > 4 || strspn(v, "01234567") != len ||
	    (len == 4 && v[0] != '0'))
		return gw_yaml_errf(y, n, "socket_mode must be an octal mode such as \"0660\", "
		                    "not '%s'", v);
	m = strtoul(v, NULL, 8);
	*out = (mode_t)m;
	return 0;
}

/* Copies url without its password: "scheme://user:pw@host" loses ":pw",
 * and a "password=" parameter (after '?' or '&') loses its value. Works on
 * any string, so a malformed URL is redacted the same way. */
void
gw_config_redact_url(const char *url, char *out, size_t outlen)
{
	const char *p = url, *auth = strstr(url, "://"), *at = NULL, *colon = NULL, *end;
	size_t o = 0;

	if (outlen == 0)
		return;
#define PUT(ch) do { if (o + 1 < outlen) out[o++] = (ch); } while (0)
	if (auth != NULL) {
		auth += 3;
		end = auth + strcspn(auth, "/?");
		/* The last '@' before the host: a password may hold '@'s of its own. */
		for (const char *q = auth; q < end; q++)
			if (*q == '@')
				at = q;
		if (at != NULL)
			colon = memchr(auth, ':', (size_t)(at - auth));
		for (; p < auth; p++)
			PUT(*p);
		if (colon != NULL) {
			for (; p < colon; p++)
				PUT(*p);
			p = at;
		}
	}
	while (*p != '\0') {
		bool param_start = p != url && (p[-1] == '?' || p[-1] == '&');

		if (param_start && strncasecmp(p, "password=", 9) == 0) {
			for (const char *w = "password=(hidden)"; *w; w++)
				PUT(*w);
			p += strcspn(p, "&");
			continue;
		}
		PUT(*p);
		p++;
	}
#undef PUT
	out[o] = '\0';
}

/* store: sqlite:PATH, a plain PATH or a postgresql:// URL; store_path is
 * the old name of a SQLite path. The URL is kept as written (libpq reads
 * it), and its shown form has no password. */
static int
parse_store(struct gw_yaml *y, yaml_node_t *root, const char *dir, struct gw_config *c)
{
	yaml_node_t *ns = gw_yaml_map_get(y, root, "store");
	yaml_node_t *np = gw_yaml_map_get(y, root, "store_path");
	char *v = NULL, shown[1024];
	int rv = -1;

	if (ns != NULL && np != NULL)
		return gw_yaml_errf(y, ns, "store and store_path are both given (store_path is the "
		                    "old name of a SQLite store): keep store only");
	if (ns == NULL && np == NULL)
		return gw_yaml_errf(y, root, "store: missing (required: sqlite:PATH, a path or a "
		                    "postgresql:// URL)");
	if (gw_yaml_str(y, ns ? ns : np, ns ? "store" : "store_path", &v) < 0)
		return -1;
	if (v[0] == '\0') {
		gw_yaml_errf(y, ns ? ns : np, "%s is empty", ns ? "store" : "store_path");
		goto out;
	}
	/* (gw_store_url_is_pg's test: the policy library does not link the store) */
	if (strncmp(v, "postgresql://", 13) == 0 || strncmp(v, "postgres://", 11) == 0) {
		if (np != NULL) {
			gw_yaml_errf(y, np, "store_path names a SQLite file; write a PostgreSQL "
			             "store as store: postgresql://…");
			goto out;
		}
		c->store_url = v;
		v = NULL;
	} else if (strstr(v, "://") != NULL) {
		gw_yaml_errf(y, ns ? ns : np, "%s: unknown kind of store (sqlite:PATH, a path, or "
		             "postgresql://…)", ns ? "store" : "store_path");
		goto out;
	} else {
		const char *path = v;

		if (ns != NULL && strncmp(v, "sqlite:", 7) == 0)
			path = v + 7;
		if (path[0] == '\0') {
			gw_yaml_errf(y, ns, "store: sqlite: names no file");
			goto out;
		}
		c->store_path = strdup(path);
		if (c->store_path == NULL || resolve(y, ns ? ns : np, dir, &c->store_path, false) < 0 ||
		    (c->store_url = strdup(c->store_path)) == NULL) {
			gw_yaml_errf(y, ns ? ns : np, "out of memory");
			goto out;
		}
	}
	gw_config_redact_url(c->store_url, shown, sizeof(shown));
	c->store_shown = strdup(shown);
	if (c->store_shown == NULL) {
		gw_yaml_errf(y, root, "out of memory");
		goto out;
	}
	rv = 0;
out:
	if (v != NULL)
		OPENSSL_cleanse(v, strlen(v));   /* (a URL may hold a password) */
	free(v);
	return rv;
}

static int
parse_site(struct gw_yaml *y, yaml_node_t *root, struct gw_config *c)
{
	yaml_node_t *n = gw_yaml_map_get(y, root, "site");

	if (get_str(y, root, "site", GW_SITE_DEFAULT, &c->site) < 0)
		return -1;
	if (!gw_policy_site_name_ok(c->site))
		return gw_yaml_errf(y, n, "site must be 1 to %d of a-z, 0-9, '-' and '_', not '%s'",
		                    GW_SITE_MAX, c->site);
	return 0;
}

static int
parse_tree(struct gw_yaml *y, yaml_node_t *root, const char *name, struct gw_config *c)
{
	char *dir = NULL;
	yaml_node_t *n;
	int64_t v;
	int rv = -1;

	if (gw_yaml_map_check(y, root, "the configuration", config_keys) < 0)
		goto out;
	dir = base_dir(name);
	if (dir == NULL) {
		gw_yaml_errf(y, NULL, "out of memory");
		goto out;
	}
	c->path = strdup(name);
	if (c->path == NULL) {
		gw_yaml_errf(y, NULL, "out of memory");
		goto out;
	}
	/* (the order of the chain is the order the missing keys are named in) */
	if (get_path(y, root, "backend_module", dir, SG_DEFAULT_BACKEND, &c->backend_module) < 0 ||
	    get_str(y, root, "backend_token", NULL, &c->backend_token) < 0 ||
	    ((c->backend_token == NULL || strcmp(c->backend_token, "none") != 0) &&
	     get_path(y, root, "token_pin_file", dir, NULL, &c->token_pin_file) < 0) ||
	    get_path(y, root, "socket_path", dir, SG_RUNSTATEDIR "/sealgated.sock",
	             &c->socket_path) < 0 ||
	    parse_store(y, root, dir, c) < 0 ||
	    get_path(y, root, "policy_path", dir, NULL, &c->policy_path) < 0 ||
	    get_str(y, root, "token_label", NULL, &c->token_label) < 0 ||
	    get_str(y, root, "audit_key", NULL, &c->audit_key) < 0 ||
	    (gw_yaml_map_get(y, root, "totp_site_keys") != NULL &&
	     get_path(y, root, "totp_site_keys", dir, NULL, &c->totp_site_keys) < 0) ||
	    (gw_yaml_map_get(y, root, "totp_key_file") != NULL &&
	     get_path(y, root, "totp_key_file", dir, NULL, &c->totp_key_file) < 0) ||
	    get_str(y, root, "log", "stderr", &c->log) < 0 ||
	    get_str(y, root, "card_watch", "auto", &c->card_watch) < 0 ||
	    get_str(y, root, "reader", NULL, &c->reader) < 0)
		goto out;
	if (strcmp(c->card_watch, "auto") != 0 && strcmp(c->card_watch, "on") != 0 &&
	    strcmp(c->card_watch, "off") != 0) {
		gw_yaml_errf(y, gw_yaml_map_get(y, root, "card_watch"),
		             "card_watch must be auto, on or off, not '%s'", c->card_watch);
		goto out;
	}
	if (c->backend_token == NULL) {
		gw_yaml_errf(y, root, "backend_token: missing (required)");
		goto out;
	}
	/* A management gateway (docs/sites.md): no token, so no PIN, no audit
	 * key and no card to watch; what names one is a mistake to point out. */
	if (strcmp(c->backend_token, "none") == 0) {
		static const char *const unused[] = { "token_pin_file", "audit_key", "reader", NULL };

		c->no_token = true;
		free(c->backend_token);
		c->backend_token = NULL;
		for (size_t i = 0; unused[i] != NULL; i++)
			if ((n = gw_yaml_map_get(y, root, unused[i])) != NULL) {
				gw_yaml_errf(y, n, "%s: a gateway with backend_token: none has no token "
				             "for it (leave it out)", unused[i]);
				goto out;
			}
	}
	/* A site's TOTP key pair is on its token; a key file is only for a
	 * gateway with none (docs/sites.md, "Approvals at a management gateway"). */
	if (!c->no_token && c->totp_key_file != NULL) {
		gw_yaml_errf(y, gw_yaml_map_get(y, root, "totp_key_file"), "totp_key_file: only a "
		             "gateway with backend_token: none has one (a site's TOTP key pair is on its "
		             "token)");
		goto out;
	}
	if (parse_site(y, root, c) < 0)
		goto out;
	if (strlen(c->socket_path) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
		gw_yaml_errf(y, gw_yaml_map_get(y, root, "socket_path"),
		             "socket_path is longer than a Unix socket path may be (%zu bytes)",
		             sizeof(((struct sockaddr_un *)0)->sun_path) - 1);
		goto out;
	}
	if (c->token_label != NULL && strlen(c->token_label) > TOKEN_LABEL_MAX) {
		gw_yaml_errf(y, gw_yaml_map_get(y, root, "token_label"),
		             "token_label is longer than %d bytes (a PKCS#11 token label)",
		             TOKEN_LABEL_MAX);
		goto out;
	}
	if (c->audit_key != NULL && strncmp(c->audit_key, "pkcs11:", 7) != 0) {
		gw_yaml_errf(y, gw_yaml_map_get(y, root, "audit_key"),
		             "audit_key must be a PKCS#11 URI (\"pkcs11:object=...\")");
		goto out;
	}
	if (strcmp(c->log, "stderr") != 0 && strcmp(c->log, "syslog") != 0) {
		gw_yaml_errf(y, gw_yaml_map_get(y, root, "log"),
		             "log must be stderr or syslog, not '%s'", c->log);
		goto out;
	}
	c->socket_mode = 0666;
	if ((n = gw_yaml_map_get(y, root, "socket_mode")) != NULL &&
	    parse_socket_mode(y, n, &c->socket_mode) < 0)
		goto out;
	c->backend_sessions = default_sessions();
	if ((n = gw_yaml_map_get(y, root, "backend_sessions")) != NULL) {
		if (gw_yaml_int(y, n, "backend_sessions", 1, SESSIONS_MAX, &v) < 0)
			goto out;
		c->backend_sessions = (unsigned)v;
	}
	c->risk_online = true;
	if ((n = gw_yaml_map_get(y, root, "risk_online")) != NULL &&
	    gw_yaml_bool(y, n, "risk_online", &c->risk_online) < 0)
		goto out;
	c->risk_queue = GW_RISK_QUEUE_DEFAULT;
	if ((n = gw_yaml_map_get(y, root, "risk_queue")) != NULL) {
		if (gw_yaml_int(y, n, "risk_queue", 0, 1048576, &v) < 0)
			goto out;
		c->risk_queue = (unsigned)v;
	}
	c->audit_checkpoint_interval = 300;
	if ((n = gw_yaml_map_get(y, root, "audit_checkpoint_interval")) != NULL) {
		if (gw_yaml_int(y, n, "audit_checkpoint_interval", 10, 86400, &v) < 0)
			goto out;
		c->audit_checkpoint_interval = (unsigned)v;
	}
	c->session_timeout = 28800;
	if ((n = gw_yaml_map_get(y, root, "session_timeout")) != NULL) {
		if (gw_yaml_int(y, n, "session_timeout", 1, TIMEOUT_MAX, &v) < 0)
			goto out;
		c->session_timeout = (unsigned)v;
	}
	c->session_max_age = 604800;
	if ((n = gw_yaml_map_get(y, root, "session_max_age")) != NULL) {
		if (gw_yaml_int(y, n, "session_max_age", 60, 31536000, &v) < 0)
			goto out;
		c->session_max_age = (unsigned)v;
	}
	if ((n = gw_yaml_map_get(y, root, "log_debug")) != NULL &&
	    gw_yaml_bool(y, n, "log_debug", &c->log_debug) < 0)
		goto out;
	{
		static const struct { const char *key; int64_t lo, hi, dflt; size_t off; } ints[] = {
			{ "auth_max_failures", 1, 100, 5, offsetof(struct gw_config, auth_max_failures) },
			{ "auth_lockout", 1, 86400, 60, offsetof(struct gw_config, auth_lockout) },
			{ "signing_window", 10, 3600, 300, offsetof(struct gw_config, signing_window) },
			{ "confirm_timeout", 1, 50, 30, offsetof(struct gw_config, confirm_timeout) },
			{ "password_hash_concurrency", 0, 64, 0,
			  offsetof(struct gw_config, password_hash_concurrency) },
			/* The socket front (docs/protocol.md, limits). */
			{ "max_connections", 16, 16384, 1024, offsetof(struct gw_config, max_connections) },
			{ "connections_per_uid", 1, 16384, 64,
			  offsetof(struct gw_config, connections_per_uid) },
			{ "connections_per_unknown_uid", 1, 16384, 8,
			  offsetof(struct gw_config, connections_per_unknown_uid) },
			{ "frame_timeout", 1, 60, 5, offsetof(struct gw_config, frame_timeout) },
			{ "client_idle_timeout", 1, 86400, 120,
			  offsetof(struct gw_config, client_idle_timeout) },
			/* Documents (docs/stamp.md): 1 KiB to 512 MiB. */
			{ "document_max_size", 1024, 512 * 1024 * 1024, 32 * 1024 * 1024,
			  offsetof(struct gw_config, document_max_size) },
		};
		for (size_t i = 0; i < sizeof(ints) / sizeof(ints[0]); i++) {
			unsigned *dst = (unsigned *)((char *)c + ints[i].off);
			*dst = (unsigned)ints[i].dflt;
			if ((n = gw_yaml_map_get(y, root, ints[i].key)) != NULL) {
				if (gw_yaml_int(y, n, ints[i].key, ints[i].lo, ints[i].hi, &v) < 0)
					goto out;
				*dst = (unsigned)v;
			}
		}
	}
	if ((n = gw_yaml_map_get(y, root, "password_cost")) != NULL) {
		char *pc = NULL;
		if (gw_yaml_str(y, n, "password_cost", &pc) < 0)
			goto out;
		c->password_cost = strcmp(pc, "interactive") == 0 ? 0 : strcmp(pc, "moderate") == 0 ? 1 :
		                   strcmp(pc, "sensitive") == 0 ? 2 : 99;
		free(pc);
		if (c->password_cost == 99) {
			gw_yaml_errf(y, n, "password_cost must be interactive, moderate or sensitive");
			goto out;
		}
	}
	if ((n = gw_yaml_map_get(y, root, "test_clock")) != NULL &&
	    gw_yaml_bool(y, n, "test_clock", &c->test_clock) < 0)
		goto out;
	if (parse_tls(y, root, dir, c) < 0 || parse_web_front(y, root, c) < 0)
		goto out;
	if ((n = gw_yaml_map_get(y, root, "notify")) != NULL &&
	    gw_notify_conf_parse(y, n, dir, &c->notify) < 0)
		goto out;
	rv = 0;
out:
	free(dir);
	return rv;
}

int
gw_config_parse(const char *name, const uint8_t *buf, size_t len,
                struct gw_config **out, char *err, size_t errlen)
{
	struct gw_yaml y;
	struct gw_config *c = NULL;
	yaml_node_t *root;
	int rv = -1;

	*out = NULL;
	root = gw_yaml_open(&y, name, buf, len, err, errlen);
	if (root == NULL)
		goto out;
	c = calloc(1, sizeof(*c));
	if (c == NULL) {
		gw_yaml_errf(&y, NULL, "out of memory");
		goto out;
	}
	if (parse_tree(&y, root, name, c) < 0)
		goto out;
	*out = c;
	c = NULL;
	rv = 0;
out:
	gw_config_free(&c);
	gw_yaml_close(&y);
	return rv;
}

int
gw_config_load(const char *path, struct gw_config **out, char *err, size_t errlen)
{
	uint8_t *buf = NULL;
	size_t len = 0;
	char *abs = NULL, cwd[4096];
	int rv = -1;

	*out = NULL;
	/* Relative paths inside must not depend on where the daemon later
	 * chdir()s, so anchor a relative file name to today's directory. */
	if (path[0] != '/') {
		if (getcwd(cwd, sizeof(cwd)) == NULL) {
			snprintf(err, errlen, "%s: cannot get the current directory: %s",
			         path, strerror(errno));
			goto out;
		}
		if (asprintf(&abs, "%s/%s", cwd, path) < 0) {
			abs = NULL;
			snprintf(err, errlen, "%s: out of memory", path);
			goto out;
		}
	}
	if (gw_yaml_read_file(path, &buf, &len, err, errlen) < 0)
		goto out;
	rv = gw_config_parse(abs ? abs : path, buf, len, out, err, errlen);
out:
	free(buf);
	free(abs);
	return rv;
}

char *
gw_config_read_pin(const struct gw_config *cfg, char *err, size_t errlen)
{
	const char *path = cfg->token_pin_file;
	char buf[PIN_MAX + 2];
	char *pin = NULL;
	size_t have = 0;
	struct stat st;
	int fd;

	fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		if (errno == ELOOP)
			snprintf(err, errlen, "token PIN file %s is a symbolic link; "
			         "point token_pin_file at the file itself", path);
		else
			snprintf(err, errlen, "token PIN file %s: %s", path, strerror(errno));
		return NULL;
	}
	if (fstat(fd, &st) < 0) {
		snprintf(err, errlen, "token PIN file %s: %s", path, strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "token PIN file %s is not a regular file", path);
		goto out;
	}
	if (st.st_uid != geteuid()) {
		snprintf(err, errlen, "token PIN file %s is owned by uid %u, not by the "
		         "gateway's user (uid %u); chown it", path, (unsigned)st.st_uid,
		         (unsigned)geteuid());
		goto out;
	}
	if ((st.st_mode & 077) != 0) {
		snprintf(err, errlen, "token PIN file %s is %s by group/others (mode %04o); "
		         "chmod 600 it", path,
		         (st.st_mode & 044) ? "readable" : "writable or executable",
		         (unsigned)(st.st_mode & 07777));
		goto out;
	}
	for (;;) {
		ssize_t n = read(fd, buf + have, sizeof(buf) - have);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			snprintf(err, errlen, "token PIN file %s: %s", path, strerror(errno));
			goto out;
		}
		if (n == 0)
			break;
		have += (size_t)n;
		if (have == sizeof(buf))   /* PIN_MAX + newline + at least one more */
			break;
	}
	if (have > 0 && have < sizeof(buf) && buf[have - 1] == '\n')
		have--;
	if (have > PIN_MAX) {
		snprintf(err, errlen, "token PIN file %s holds more than %d bytes", path, PIN_MAX);
		goto out;
	}
	if (have == 0) {
		snprintf(err, errlen, "token PIN file %s is empty", path);
		goto out;
	}
	if (memchr(buf, '\0', have) != NULL || memchr(buf, '\n', have) != NULL) {
		snprintf(err, errlen, "token PIN file %s must hold the PIN on one line", path);
		goto out;
	}
	pin = malloc(have + 1);
	if (pin == NULL) {
		snprintf(err, errlen, "token PIN file %s: out of memory", path);
		goto out;
	}
	memcpy(pin, buf, have);
	pin[have] = '\0';
out:
	OPENSSL_cleanse(buf, sizeof(buf));
	close(fd);
	return pin;
}
