/*
 * The module's configuration file (docs/clients.md): where the gateway is
 * (a Unix socket or tls://HOST:PORT), the site CA, the device certificate
 * and key. Applications started from a desktop menu have no SEALGATE_*
 * variables, so the module reads /etc/sealgate/sealgate.conf, then the
 * user's own file over it (or only the file SEALGATE_CONF names); the
 * environment overrides both. Nothing here prints: errors go back to
 * C_Initialize in err.
 */
#include "sgm.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CONF_FILE_MAX (64 * 1024)   /* a configuration file is a few lines */
#define CONF_VALUE_MAX 4096

void
sgm_conf_free(struct sgm_conf *c)
{
	if (c == NULL)
		return;
	free(c->gateway);
	free(c->ca);
	free(c->cert);
	free(c->key);
	free(c->user);
	free(c->server_name);
	memset(c, 0, sizeof(*c));
}

/* Replaces *slot with a copy of v, made absolute against the file's
 * directory when path is true and v is relative. */
static int
set_value(char **slot, const char *v, bool path, const char *file)
{
	char *s = NULL;
	const char *slash = strrchr(file, '/');

	if (path && v[0] != '/' && slash != NULL) {
		if (asprintf(&s, "%.*s/%s", (int)(slash - file), file, v) < 0)
			s = NULL;
	} else {
		s = strdup(v);
	}
	if (s == NULL)
		return -1;
	free(*slot);
	*slot = s;
	return 0;
}

/* Checks a gateway address: unix:/ABSOLUTE or tls://HOST:PORT. */
int
sgm_conf_parse_gateway(const char *g, char *host, size_t hostlen, char *port, size_t portlen,
                       const char **unix_path, char *err, size_t errlen)
{
	const char *hp, *colon;
	char *end = NULL;
	long p;

	*unix_path = NULL;
	if (strncmp(g, "unix:", 5) == 0) {
		if (g[5] != '/') {
			sg_seterr(err, errlen, "gateway \"%s\": unix: wants an absolute socket path", g);
			return -1;
		}
		*unix_path = g + 5;
		return 0;
	}
	if (strncmp(g, "tls://", 6) != 0) {
		sg_seterr(err, errlen, "gateway \"%s\": want unix:PATH or tls://HOST:PORT "
		          "(there is no plaintext TCP)", g);
		return -1;
	}
	hp = g + 6;
	colon = strrchr(hp, ':');
	if (colon == NULL || colon == hp || (size_t)(colon - hp) >= hostlen) {
		sg_seterr(err, errlen, "gateway \"%s\": want tls://HOST:PORT", g);
		return -1;
	}
	errno = 0;
	p = strtol(colon + 1, &end, 10);
	if (errno != 0 || end == colon + 1 || *end != '\0' || p < 1 || p > 65535) {
		sg_seterr(err, errlen, "gateway \"%s\": the port is not a number from 1 to 65535", g);
		return -1;
	}
	if (hp[0] == '[' && colon[-1] == ']')   /* [::1]:8443 */
		snprintf(host, hostlen, "%.*s", (int)(colon - hp - 2), hp + 1);
	else
		snprintf(host, hostlen, "%.*s", (int)(colon - hp), hp);
	snprintf(port, portlen, "%ld", p);
	return 0;
}

/* Reads one file into c. A file that is not there is no error when
 * optional; anything else wrong with it is. */
static int
conf_read(struct sgm_conf *c, const char *file, bool optional, char *err, size_t errlen)
{
	struct stat sb;
	char *buf = NULL, *line, *next;
	ssize_t n;
	size_t got = 0;
	unsigned lineno = 0;
	int fd, rv = -1;

	fd = open(file, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		if (optional && (errno == ENOENT || errno == ENOTDIR))
			return 0;
		sg_seterr(err, errlen, "%s: %s", file, strerror(errno));
		return -1;
	}
	if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode)) {
		sg_seterr(err, errlen, "%s: not a regular file", file);
		goto out;
	}
	if (sb.st_size > CONF_FILE_MAX) {
		sg_seterr(err, errlen, "%s: larger than %d bytes", file, CONF_FILE_MAX);
		goto out;
	}
	buf = malloc((size_t)sb.st_size + 1);
	if (buf == NULL) {
		sg_seterr(err, errlen, "%s: out of memory", file);
		goto out;
	}
	while (got < (size_t)sb.st_size) {
		n = read(fd, buf + got, (size_t)sb.st_size - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	buf[got] = '\0';
	if (memchr(buf, '\0', got) != NULL) {
		sg_seterr(err, errlen, "%s: not a text file", file);
		goto out;
	}
	for (line = buf; line != NULL; line = next) {
		char *eq, *k, *v, *e;

		lineno++;
		next = strchr(line, '\n');
		if (next != NULL)
			*next++ = '\0';
		while (*line == ' ' || *line == '\t')
			line++;
		e = line + strlen(line);
		while (e > line && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
			*--e = '\0';
		if (*line == '\0' || *line == '#')
			continue;
		eq = strchr(line, '=');
		if (eq == NULL) {
			sg_seterr(err, errlen, "%s:%u: want KEY = VALUE", file, lineno);
			goto out;
		}
		k = line;
		v = eq + 1;
		for (e = eq; e > k && (e[-1] == ' ' || e[-1] == '\t'); e--)
			;
		*e = '\0';
		while (*v == ' ' || *v == '\t')
			v++;
		if (*v == '\0' || strlen(v) > CONF_VALUE_MAX) {
			sg_seterr(err, errlen, "%s:%u: %s: the value is empty or longer than %d bytes",
			          file, lineno, k, CONF_VALUE_MAX);
			goto out;
		}
		if (strcmp(k, "gateway") == 0) {
			char host[256], port[8];
			const char *up;
			char why[300];

			if (sgm_conf_parse_gateway(v, host, sizeof(host), port, sizeof(port), &up,
			                           why, sizeof(why)) < 0) {
				sg_seterr(err, errlen, "%s:%u: %s", file, lineno, why);
				goto out;
			}
			if (set_value(&c->gateway, v, false, file) < 0)
				goto oom;
		} else if (strcmp(k, "ca") == 0) {
			if (set_value(&c->ca, v, true, file) < 0)
				goto oom;
		} else if (strcmp(k, "cert") == 0) {
			if (set_value(&c->cert, v, true, file) < 0)
				goto oom;
		} else if (strcmp(k, "key") == 0) {
			if (set_value(&c->key, v, true, file) < 0)
				goto oom;
		} else if (strcmp(k, "user") == 0) {
			if (strlen(v) > SG_NAME_MAX) {
				sg_seterr(err, errlen, "%s:%u: user: longer than %d bytes", file, lineno,
				          SG_NAME_MAX);
				goto out;
			}
			if (set_value(&c->user, v, false, file) < 0)
				goto oom;
		} else if (strcmp(k, "server_name") == 0) {
			if (strlen(v) > 253) {
				sg_seterr(err, errlen, "%s:%u: server_name: longer than 253 bytes", file,
				          lineno);
				goto out;
			}
			if (set_value(&c->server_name, v, false, file) < 0)
				goto oom;
		} else {
			sg_seterr(err, errlen, "%s:%u: unknown key \"%.64s\" (gateway, ca, cert, key, "
			          "user, server_name)", file, lineno, k);
			goto out;
		}
	}
	rv = 0;
	goto out;
oom:
	sg_seterr(err, errlen, "%s: out of memory", file);
out:
	free(buf);
	close(fd);
	return rv;
}

/* The per-user file: $XDG_CONFIG_HOME/sealgate/sealgate.conf, else
 * ~/.config/sealgate/sealgate.conf. NULL when there is no home. */
char *
sgm_conf_user_dir(void)
{
	const char *xdg = getenv("XDG_CONFIG_HOME"), *home = getenv("HOME");
	struct passwd pw, *res = NULL;
	char buf[1024], *dir = NULL;

	if (xdg != NULL && xdg[0] == '/') {
		if (asprintf(&dir, "%s/sealgate", xdg) < 0)
			dir = NULL;
		return dir;
	}
	if ((home == NULL || home[0] != '/') &&
	    getpwuid_r(getuid(), &pw, buf, sizeof(buf), &res) == 0 && res != NULL)
		home = pw.pw_dir;
	if (home == NULL || home[0] != '/')
		return NULL;
	if (asprintf(&dir, "%s/.config/sealgate", home) < 0)
		dir = NULL;
	return dir;
}

int
sgm_conf_load(struct sgm_conf *c, char *err, size_t errlen)
{
	const char *named = getenv("SEALGATE_CONF");
	char *dir, *file = NULL;
	int rv;

	memset(c, 0, sizeof(*c));
	if (named != NULL && named[0] != '\0') {
		/* Named on purpose: it must be there. */
		rv = conf_read(c, named, false, err, errlen);
	} else {
		rv = conf_read(c, SGM_SYSTEM_CONF, true, err, errlen);
		dir = rv == 0 ? sgm_conf_user_dir() : NULL;
		if (dir != NULL && asprintf(&file, "%s/sealgate.conf", dir) < 0)
			file = NULL;
		if (file != NULL)
			rv = conf_read(c, file, true, err, errlen);
		free(file);
		free(dir);
	}
	if (rv < 0)
		sgm_conf_free(c);
	return rv;
}
