/*
 * The notify: section of the gateway configuration (notify_conf.h): strict
 * keys, bounded values, relative paths resolved like the rest of the
 * file; and the careful reading of the secrets' files it names.
 */
#include "notify_conf.h"
#include "protocol.h"
#include "yamlutil.h"

#include <errno.h>
#include <stddef.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

static const char *const notify_keys[] = {
	"web_url", "from", "smtp", "webhooks", "retry_initial", "retry_max", "max_tries",
	"timeout", "lease", "poll", "ca_file", NULL
};
static const char *const smtp_keys[] = { "url", "starttls", "user", "password_file", NULL };
static const char *const webhook_keys[] = {
	"name", "department", "format", "url", "url_file", "secret_file", NULL
};

void
gw_notify_conf_free(struct gw_notify_conf **cp)
{
	struct gw_notify_conf *c = cp ? *cp : NULL;

	if (c == NULL)
		return;
	free(c->web_url);
	free(c->from);
	free(c->smtp_url);
	free(c->smtp_user);
	free(c->smtp_password_file);
	free(c->ca_file);
	for (size_t i = 0; c->webhooks != NULL && i < c->n_webhooks; i++) {
		struct gw_notify_webhook *w = &c->webhooks[i];
		free(w->name);
		free(w->department);
		if (w->url != NULL)
			OPENSSL_cleanse(w->url, strlen(w->url));   /* (its token) */
		free(w->url);
		free(w->url_file);
		free(w->secret_file);
	}
	free(c->webhooks);
	free(c);
	*cp = NULL;
}

static int
str(struct gw_yaml *y, yaml_node_t *map, const char *key, char **out)
{
	yaml_node_t *n = gw_yaml_map_get(y, map, key);

	*out = NULL;
	return n == NULL ? 0 : gw_yaml_str(y, n, key, out);
}

static int
path(struct gw_yaml *y, yaml_node_t *map, const char *key, const char *dir, char **out)
{
	char *abs = NULL;

	if (str(y, map, key, out) < 0)
		return -1;
	if (*out == NULL || (*out)[0] == '/')
		return 0;
	if (asprintf(&abs, "%s/%s", dir, *out) < 0)
		return gw_yaml_errf(y, gw_yaml_map_get(y, map, key), "out of memory");
	free(*out);
	*out = abs;
	return 0;
}

/* A URL of one of schemes, without spaces or control characters, at most
 * GW_NOTIFY_URL_MAX bytes. */
static bool
url_ok(const char *u, const char *const *schemes)
{
	bool scheme = false;

	if (strlen(u) > GW_NOTIFY_URL_MAX)
		return false;
	for (size_t i = 0; schemes[i] != NULL; i++)
		if (strncasecmp(u, schemes[i], strlen(schemes[i])) == 0 && u[strlen(schemes[i])] != '\0')
			scheme = true;
	if (!scheme)
		return false;
	for (const unsigned char *q = (const unsigned char *)u; *q; q++)
		if (*q <= ' ' || *q >= 0x7f)
			return false;
	return true;
}

static int
parse_smtp(struct gw_yaml *y, yaml_node_t *m, const char *dir, struct gw_notify_conf *c)
{
	static const char *const schemes[] = { "smtp://", "smtps://", NULL };
	yaml_node_t *n;

	if (gw_yaml_map_check(y, m, "notify: smtp", smtp_keys) < 0 ||
	    str(y, m, "url", &c->smtp_url) < 0 || str(y, m, "user", &c->smtp_user) < 0 ||
	    path(y, m, "password_file", dir, &c->smtp_password_file) < 0)
		return -1;
	if (c->smtp_url == NULL)
		return gw_yaml_errf(y, m, "notify: smtp: url missing (required)");
	if (!url_ok(c->smtp_url, schemes))
		return gw_yaml_errf(y, gw_yaml_map_get(y, m, "url"),
		                    "notify: smtp: url must be smtp://HOST[:PORT] or smtps://HOST[:PORT]");
	if ((n = gw_yaml_map_get(y, m, "starttls")) != NULL &&
	    gw_yaml_bool(y, n, "starttls", &c->starttls) < 0)
		return -1;
	if ((c->smtp_user == NULL) != (c->smtp_password_file == NULL))
		return gw_yaml_errf(y, m, "notify: smtp: user and password_file go together");
	return 0;
}

static int
parse_webhook(struct gw_yaml *y, yaml_node_t *m, const char *dir, struct gw_notify_webhook *w)
{
	static const char *const schemes[] = { "http://", "https://", NULL };
	static const char *const formats[] = { "plain", "dingtalk", "wecom", "feishu" };
	char *fmt = NULL;
	int rv = -1;

	if (gw_yaml_map_check(y, m, "a webhook", webhook_keys) < 0 ||
	    str(y, m, "name", &w->name) < 0 || str(y, m, "department", &w->department) < 0 ||
	    str(y, m, "format", &fmt) < 0 || str(y, m, "url", &w->url) < 0 ||
	    path(y, m, "url_file", dir, &w->url_file) < 0 ||
	    path(y, m, "secret_file", dir, &w->secret_file) < 0)
		goto out;
	if (w->name == NULL || strlen(w->name) > 64 || strspn(w->name,
	    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.") != strlen(w->name)) {
		gw_yaml_errf(y, m, "a webhook needs a name of at most 64 letters, digits, '-', '_', '.'");
		goto out;
	}
	if ((w->url == NULL) == (w->url_file == NULL)) {
		gw_yaml_errf(y, m, "webhook %s: url or url_file (one of them)", w->name);
		goto out;
	}
	/* (the URL is not quoted back: it may hold the robot's token) */
	if (w->url != NULL && !url_ok(w->url, schemes)) {
		gw_yaml_errf(y, gw_yaml_map_get(y, m, "url"), "webhook %s: url must be http:// or "
		             "https://, with no spaces", w->name);
		goto out;
	}
	w->format = GW_WEBHOOK_PLAIN;
	if (fmt != NULL) {
		size_t i;
		for (i = 0; i < sizeof(formats) / sizeof(formats[0]); i++)
			if (strcmp(fmt, formats[i]) == 0)
				break;
		if (i == sizeof(formats) / sizeof(formats[0])) {
			gw_yaml_errf(y, gw_yaml_map_get(y, m, "format"), "webhook %s: format must be "
			             "plain, dingtalk, wecom or feishu", w->name);
			goto out;
		}
		w->format = (enum gw_webhook_format)i;
	}
	if (w->secret_file != NULL && w->format != GW_WEBHOOK_DINGTALK &&
	    w->format != GW_WEBHOOK_FEISHU) {
		gw_yaml_errf(y, gw_yaml_map_get(y, m, "secret_file"), "webhook %s: only dingtalk "
		             "and feishu robots sign with a secret", w->name);
		goto out;
	}
	rv = 0;
out:
	free(fmt);
	return rv;
}

int
gw_notify_conf_parse(struct gw_yaml *y, yaml_node_t *node, const char *dir,
                     struct gw_notify_conf **out)
{
	static const char *const web_schemes[] = { "http://", "https://", NULL };
	struct gw_notify_conf *c = calloc(1, sizeof(*c));
	yaml_node_t *n;
	size_t nw = 0;
	int64_t v;
	int rv = -1;

	*out = NULL;
	if (c == NULL)
		return gw_yaml_errf(y, node, "out of memory");
	if (gw_yaml_map_check(y, node, "notify", notify_keys) < 0 ||
	    str(y, node, "web_url", &c->web_url) < 0 || str(y, node, "from", &c->from) < 0 ||
	    path(y, node, "ca_file", dir, &c->ca_file) < 0)
		goto out;
	if (c->web_url == NULL) {
		gw_yaml_errf(y, node, "notify: web_url missing (required: the links of notices)");
		goto out;
	}
	if (!url_ok(c->web_url, web_schemes)) {
		gw_yaml_errf(y, gw_yaml_map_get(y, node, "web_url"),
		             "notify: web_url must be http:// or https://, with no spaces");
		goto out;
	}
	/* (a trailing / would double in <web_url>/#/…) */
	for (size_t l = strlen(c->web_url); l > 8 && c->web_url[l - 1] == '/'; l--)
		c->web_url[l - 1] = '\0';
	if (c->from != NULL && (strlen(c->from) > 254 || strpbrk(c->from, "\r\n") != NULL)) {
		gw_yaml_errf(y, gw_yaml_map_get(y, node, "from"),
		             "notify: from must be one line of at most 254 characters");
		goto out;
	}
	if ((n = gw_yaml_map_get(y, node, "smtp")) != NULL && parse_smtp(y, n, dir, c) < 0)
		goto out;
	if (c->smtp_url != NULL && c->from == NULL) {
		gw_yaml_errf(y, node, "notify: from missing (required with smtp)");
		goto out;
	}
	if ((n = gw_yaml_map_get(y, node, "webhooks")) != NULL) {
		if (gw_yaml_seq_len(y, n, "notify: webhooks", &nw) < 0)
			goto out;
		if (nw > GW_NOTIFY_WEBHOOKS_MAX) {
			gw_yaml_errf(y, n, "notify: at most %d webhooks", GW_NOTIFY_WEBHOOKS_MAX);
			goto out;
		}
		c->webhooks = calloc(nw ? nw : 1, sizeof(*c->webhooks));
		if (c->webhooks == NULL) {
			gw_yaml_errf(y, n, "out of memory");
			goto out;
		}
		for (size_t i = 0; i < nw; i++) {
			c->n_webhooks = i + 1;
			if (parse_webhook(y, gw_yaml_seq_item(y, n, i), dir, &c->webhooks[i]) < 0)
				goto out;
			for (size_t j = 0; j < i; j++)
				if (strcmp(c->webhooks[j].name, c->webhooks[i].name) == 0) {
					gw_yaml_errf(y, gw_yaml_seq_item(y, n, i), "webhook %s: named twice",
					             c->webhooks[i].name);
					goto out;
				}
		}
	}
	{
		static const struct { const char *key; int64_t lo, hi, dflt; size_t off; } ints[] = {
			{ "retry_initial", 1, 86400, 30, offsetof(struct gw_notify_conf, retry_initial) },
			{ "retry_max", 1, 7 * 86400, 3600, offsetof(struct gw_notify_conf, retry_max) },
			{ "max_tries", 1, 100, 10, offsetof(struct gw_notify_conf, max_tries) },
			{ "timeout", 1, 300, 30, offsetof(struct gw_notify_conf, timeout) },
			{ "lease", 10, 86400, 300, offsetof(struct gw_notify_conf, lease) },
			{ "poll", 1, 3600, 5, offsetof(struct gw_notify_conf, poll) },
		};
		for (size_t i = 0; i < sizeof(ints) / sizeof(ints[0]); i++) {
			unsigned *dst = (unsigned *)((char *)c + ints[i].off);
			*dst = (unsigned)ints[i].dflt;
			if ((n = gw_yaml_map_get(y, node, ints[i].key)) != NULL) {
				if (gw_yaml_int(y, n, ints[i].key, ints[i].lo, ints[i].hi, &v) < 0)
					goto out;
				*dst = (unsigned)v;
			}
		}
	}
	/* A send cut by its timeout must end inside its lease, or a second
	 * sender could take the notice while the first still sends it. */
	if (c->lease <= c->timeout) {
		gw_yaml_errf(y, node, "notify: lease (%u s) must be longer than timeout (%u s)",
		             c->lease, c->timeout);
		goto out;
	}
	*out = c;
	c = NULL;
	rv = 0;
out:
	gw_notify_conf_free(&c);
	return rv;
}

char *
gw_notify_read_secret(const char *p, size_t max, char *err, size_t errlen)
{
	char *buf = NULL, *rv = NULL;
	size_t have = 0;
	struct stat st;
	int fd;

	fd = open(p, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		snprintf(err, errlen, "%s: %s", p, errno == ELOOP ? "a symbolic link" : strerror(errno));
		return NULL;
	}
	if (fstat(fd, &st) < 0) {
		snprintf(err, errlen, "%s: %s", p, strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode) || st.st_uid != geteuid() || (st.st_mode & 077) != 0) {
		snprintf(err, errlen, "%s must be a regular file of the gateway's user (uid %u), "
		         "mode 0600 (it is uid %u, mode %04o)", p, (unsigned)geteuid(),
		         (unsigned)st.st_uid, (unsigned)(st.st_mode & 07777));
		goto out;
	}
	if ((buf = malloc(max + 2)) == NULL) {
		snprintf(err, errlen, "%s: out of memory", p);
		goto out;
	}
	for (;;) {
		ssize_t n = read(fd, buf + have, max + 2 - have);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			snprintf(err, errlen, "%s: %s", p, strerror(errno));
			goto out;
		}
		if (n == 0 || (have += (size_t)n) == max + 2)
			break;
	}
	if (have > 0 && have < max + 2 && buf[have - 1] == '\n')
		have--;
	if (have == 0 || have > max) {
		snprintf(err, errlen, "%s is empty or holds more than %zu bytes", p, max);
		goto out;
	}
	if (memchr(buf, '\0', have) != NULL || memchr(buf, '\n', have) != NULL ||
	    memchr(buf, '\r', have) != NULL) {
		snprintf(err, errlen, "%s must hold one line", p);
		goto out;
	}
	buf[have] = '\0';
	rv = buf;
	buf = NULL;
out:
	if (buf != NULL) {
		OPENSSL_cleanse(buf, max + 2);
		free(buf);
	}
	close(fd);
	return rv;
}
