/*
 * sealctl's shared plumbing (cli.h): gateway connection, login, secrets.
 */
#include "cli.h"

#include <errno.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>
#include <openssl/crypto.h>

#include "protocol.h"
#include "sgm.h"

void
cli_die_reply(const json_t *rep)
{
	unsigned long rv;
	const char *code, *msg;

	sg_reply_is_ok(rep, &rv, &code, &msg);
	fprintf(stderr, "sealctl: %s (%s)\n", msg, code);
}

/* Reads one line of a secret from path ("-" = stdin) or from the terminal
 * with echo off when path is NULL. Caller frees with sg_free_secret_str. */
char *
cli_read_secret(const char *path, const char *prompt)
{
	char buf[SG_PIN_MAX + 2];
	FILE *f = NULL;
	struct termios old, noecho;
	bool tty = false;
	char *nl, *out = NULL;

	if (path != NULL && strcmp(path, "-") == 0)
		f = stdin;
	else if (path != NULL)
		f = fopen(path, "re");
	else {
		f = fopen("/dev/tty", "r+e");
		if (f == NULL) {
			fprintf(stderr, "sealctl: no terminal to ask for the %s; use a file option\n", prompt);
			return NULL;
		}
		fprintf(f, "%s: ", prompt);
		fflush(f);
		if (tcgetattr(fileno(f), &old) == 0) {
			noecho = old;
			noecho.c_lflag &= ~(tcflag_t)ECHO;
			tty = tcsetattr(fileno(f), TCSAFLUSH, &noecho) == 0;
		}
	}
	if (f == NULL) {
		fprintf(stderr, "sealctl: %s: %s\n", path, strerror(errno));
		return NULL;
	}
	if (fgets(buf, sizeof(buf), f) != NULL) {
		nl = strchr(buf, '\n');
		if (nl)
			*nl = '\0';
		out = strdup(buf);
	}
	if (tty) {
		tcsetattr(fileno(f), TCSAFLUSH, &old);
		fputc('\n', f);
	}
	if (f != stdin)
		fclose(f);
	OPENSSL_cleanse(buf, sizeof(buf));
	if (out == NULL)
		fprintf(stderr, "sealctl: no %s given\n", prompt);
	return out;
}

/* The caller's OS login, as the gateway will see it from the socket. */
static void
os_login(char *buf, size_t len)
{
	struct passwd *pw = getpwuid(geteuid());

	if (pw != NULL && pw->pw_name != NULL)
		snprintf(buf, len, "%s", pw->pw_name);
	else
		snprintf(buf, len, "uid %lu", (unsigned long)geteuid());
}

/* Says which socket was tried, where that path came from, why the
 * connection failed and what to do: "cannot reach the gateway: No such
 * file or directory" alone leaves a person guessing whether the gateway
 * is down, the path is wrong or they may not use it. */
static void
report_unreachable(const struct cli *c, int e)
{
	const char *name, *reason, *todo;
	char from[96], me[64];

	if (c->socket_from != NULL)
		snprintf(from, sizeof(from), "from %s", c->socket_from);
	else
		snprintf(from, sizeof(from), "the default: SEALGATE_SOCKET is not set");
	os_login(me, sizeof(me));
	todo = "start sealgated (systemctl start sealgated; the demo site: tools/sandbox up DIR), "
	       "or set SEALGATE_SOCKET (or --socket) to the socket_path of a running gateway";
	switch (e) {
	case ENOENT:
		name = "ENOENT";
		reason = "no gateway is listening there (no such socket)";
		break;
	case ECONNREFUSED:
		name = "ECONNREFUSED";
		reason = "the socket file is there but no gateway accepts on it (stopped or crashed)";
		break;
	case EACCES:
	case EPERM:
		name = e == EACCES ? "EACCES" : "EPERM";
		reason = "permission denied: this OS user may not open the socket or search a directory above it";
		todo = "ask the gateway's administrator to let this login reach the socket "
		       "(socket_mode in sealgated.yaml, search permission on its directories)";
		break;
	case ENOTDIR:
		name = "ENOTDIR";
		reason = "a part of the path is not a directory";
		todo = "check the path in SEALGATE_SOCKET or --socket";
		break;
	case ENAMETOOLONG:
		name = "ENAMETOOLONG";
		reason = "the path is longer than a Unix socket address holds (107 bytes)";
		todo = "use a shorter socket_path";
		break;
	default:
		name = NULL;
		reason = strerror(e);
		break;
	}
	fprintf(stderr, "sealctl: cannot reach the gateway at %s (%s): %s%s%s%s%s\n",
	        c->socket, from, name ? name : "", name ? " (" : "", name ? strerror(e) : "",
	        name ? "): " : "", reason);
	fprintf(stderr, "sealctl: (OS user %s) %s\n", me, todo);
}

/* Connects to a tls:// gateway with the CA, certificate and key of
 * sealgate.conf. Exits 3 with the reason a person can read (an unknown
 * server, a revoked or expired device) when it cannot. */
static void
connect_tls(struct cli *c)
{
	struct sgm_conf conf;
	char host[256], port[8], err[512];
	const char *up;

	if (sgm_conf_load(&conf, err, sizeof(err)) < 0 ||
	    sgm_conf_parse_gateway(c->socket, host, sizeof(host), port, sizeof(port), &up, err,
	                           sizeof(err)) < 0 ||
	    (c->tls == NULL && sgm_tls_new(&conf, host, port, &c->tls, err, sizeof(err)) < 0) ||
	    sgm_tls_connect(c->tls, 30, &c->io, err, sizeof(err)) < 0) {
		fprintf(stderr, "sealctl: cannot reach the gateway at %s: %s\n", c->socket, err);
		sgm_conf_free(&conf);
		exit(3);
	}
	sgm_conf_free(&conf);
	c->fd = c->io.fd;
}

json_t *
cli_call(struct cli *c, json_t *req)
{
	json_t *rep = NULL;
	char err[256];
	int rc;

	if (c->fd < 0 && strncmp(c->socket, "tls://", 6) == 0) {
		connect_tls(c);
	} else if (c->fd < 0) {
		c->fd = sg_connect_unix(c->socket);
		if (c->fd < 0) {
			report_unreachable(c, -c->fd);
			json_decref(req);
			exit(3);
		}
		c->io = (struct sg_io){ .fd = c->fd };
	}
	if (c->session)
		json_object_set_new(req, "session", json_string(c->session));
	rc = sg_msg_write_io(&c->io, req);
	if (rc < 0)
		snprintf(err, sizeof(err), "write: %s", strerror(-rc));
	else if (c->io.recv != NULL)
		rc = sg_msg_read_io(&c->io, 120000, 120000, &rep, err, sizeof(err));
	else
		rc = sg_msg_read(c->fd, &rep, err, sizeof(err));
	if (rc < 0) {
		fprintf(stderr, "sealctl: %s\n", err);
		sg_msg_wipe_secrets(req);
		json_decref(req);
		exit(3);
	}
	sg_msg_wipe_secrets(req);
	json_decref(req);
	if (c->json) {
		json_t *copy = json_deep_copy(rep);
		json_object_del(copy, "session");
		json_dumpf(copy, stdout, JSON_INDENT(2) | JSON_SORT_KEYS);
		putchar('\n');
		json_decref(copy);
	}
	return rep;
}

int
cli_login(struct cli *c)
{
	const char *envpw = getenv("SEALGATE_PASSWORD");
	char *pw = NULL;
	json_t *req, *rep;
	int rv = 1;

	if (c->password_file)
		pw = cli_read_secret(c->password_file, "password");
	else if (envpw)
		pw = strdup(envpw);
	else
		pw = cli_read_secret(NULL, "sealgate password");
	if (pw == NULL)
		return 1;
	req = sg_request_new(SG_OP_LOGIN);
	json_object_set_new(req, "pin", json_string(pw));
	/* The second factor: typed after the password, or SEALGATE_CODE for
	 * scripts (docs/authentication.md). */
	if (getenv("SEALGATE_CODE") != NULL)
		json_object_set_new(req, "code", json_string(getenv("SEALGATE_CODE")));
	if (c->user)
		json_object_set_new(req, "user", json_string(c->user));
	sg_free_secret_str(pw);
	{
		bool was = c->json;
		c->json = false;  /* the reply holds the session token */
		rep = cli_call(c, req);
		c->json = was;
	}
	if (!sg_reply_is_ok(rep, NULL, NULL, NULL)) {
		cli_die_reply(rep);
		goto out;
	}
	c->session = strdup(json_string_value(json_object_get(rep, "session")));
	rv = c->session ? 0 : 1;
out:
	json_decref(rep);
	return rv;
}

void
cli_logout(struct cli *c)
{
	if (c->session == NULL || c->fd < 0)
		return;
	json_decref(cli_call(c, sg_request_new(SG_OP_LOGOUT)));
	sg_free_secret_str(c->session);
	c->session = NULL;
}

int
cli_account_check(struct cli *c, char *buf, size_t len)
{
	json_t *req = sg_request_new(SG_OP_WHOAMI), *rep;
	const char *code = NULL, *msg = NULL;
	char me[64];
	bool was = c->json;
	int rv = -1;

	if (c->user)
		json_object_set_new(req, "user", json_string(c->user));
	c->json = false;  /* a check, not the command's own output */
	rep = cli_call(c, req);
	c->json = was;
	if (sg_reply_is_ok(rep, NULL, &code, &msg)) {
		const char *id = json_string_value(json_object_get(rep, "user"));
		snprintf(buf, len, "%s", id ? id : "?");
		rv = 0;
		goto out;
	}
	if (code == NULL || msg == NULL || strcmp(code, "not_allowed") != 0) {
		snprintf(buf, len, "%s (%s)", msg ? msg : "unreadable reply", code ? code : "?");
		goto out;
	}
	os_login(me, sizeof(me));
	/* The gateway's words (gw_policy_resolve_account) say what is missing:
	 * no account, no act_as entry, or SEALGATE_USER to set. */
	if (c->user == NULL)
		snprintf(buf, len, "%s", msg);
	else
		snprintf(buf, len, "OS user %s acting as '%s' (SEALGATE_USER or --user): %s",
		         me, c->user, msg);
	rv = 1;
out:
	json_decref(rep);
	return rv;
}
