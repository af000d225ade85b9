/*
 * sealctl device: a desktop asks for its certificate (enroll: a key made
 * here, file 0600 in the user's sealgate directory, and a request with the
 * host name and the person, sent to the gateway's enrollment endpoint);
 * a seal admin lists, approves and revokes (docs/deployment.md).
 */
#include "sealctl.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "protocol.h"
#include "sgm.h"
#include "sg-config.h"

int sgm_debug_on;

/* The module's transport reports through this; sealctl says it only
 * with SEALGATE_DEBUG, as the module does. */
void
sgm_debug(const char *fmt, ...)
{
	va_list ap;

	if (getenv("SEALGATE_DEBUG") == NULL)
		return;
	va_start(ap, fmt);
	fputs("sealctl: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

/* sealgate.conf's user, as the module takes it. */
static char conf_user[SG_NAME_MAX + 1];

const char *
sealctl_conf_user(void)
{
	struct sgm_conf conf;
	char err[512];

	if (conf_user[0] == '\0' && sgm_conf_load(&conf, err, sizeof(err)) == 0) {
		if (conf.user != NULL)
			snprintf(conf_user, sizeof(conf_user), "%s", conf.user);
		sgm_conf_free(&conf);
	}
	return conf_user[0] != '\0' ? conf_user : NULL;
}

const char *
sealctl_default_gateway(const char **from)
{
	static char gw[4200];
	struct sgm_conf conf;
	char err[512];

	*from = NULL;
	if (sgm_conf_load(&conf, err, sizeof(err)) == 0 && conf.gateway != NULL) {
		snprintf(gw, sizeof(gw), "%s", strncmp(conf.gateway, "unix:", 5) == 0 ?
		         conf.gateway + 5 : conf.gateway);
		sgm_conf_free(&conf);
		*from = "sealgate.conf";
		return gw;
	}
	sgm_conf_free(&conf);
	return SG_RUNSTATEDIR "/sealgated.sock";
}

void
sealctl_device_done(struct cli *c)
{
	if (c->io.arg != NULL)
		sgm_tls_close(&c->io, false);
	sgm_tls_free(&c->tls);
}

/* ---- enroll ---- */

static int
mkdirs(const char *dir)
{
	char buf[4096];

	snprintf(buf, sizeof(buf), "%s", dir);
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, 0700) < 0 && errno != EEXIST)
			return -1;
		*p = '/';
	}
	return mkdir(buf, 0700) < 0 && errno != EEXIST ? -1 : 0;
}

/* Writes text to path, mode 0600, replacing it. */
static int
write_file(const char *path, const char *text, size_t len)
{
	char tmp[4200];
	int fd;
	size_t off = 0;

	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return -1;
	while (off < len) {
		ssize_t n = write(fd, text + off, len - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			close(fd);
			unlink(tmp);
			return -1;
		}
		off += (size_t)n;
	}
	if (fsync(fd) < 0 || close(fd) < 0 || rename(tmp, path) < 0) {
		unlink(tmp);
		return -1;
	}
	return 0;
}

/* The device key: kept when there (a request waits for it), else made
 * (EC P-256) and written 0600 before anything is sent. */
static EVP_PKEY *
device_key(const char *path)
{
	EVP_PKEY *k = NULL;
	BIO *b = NULL;
	char *p;
	long len;
	FILE *f = fopen(path, "re");

	if (f != NULL) {
		k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
		fclose(f);
		if (k == NULL)
			fprintf(stderr, "sealctl: %s: not a private key\n", path);
		return k;
	}
	k = EVP_EC_gen("P-256");
	if (k == NULL || (b = BIO_new(BIO_s_mem())) == NULL ||
	    PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL) != 1) {
		fprintf(stderr, "sealctl: cannot make a device key\n");
		EVP_PKEY_free(k);
		BIO_free(b);
		return NULL;
	}
	len = BIO_get_mem_data(b, &p);
	if (write_file(path, p, (size_t)len) < 0) {
		fprintf(stderr, "sealctl: %s: %s\n", path, strerror(errno));
		EVP_PKEY_free(k);
		k = NULL;
	}
	OPENSSL_cleanse(p, (size_t)len);
	BIO_free(b);
	return k;
}

static char *
make_csr(EVP_PKEY *k, const char *host)
{
	X509_REQ *r = X509_REQ_new();
	X509_NAME *n = X509_NAME_new();
	BIO *b = BIO_new(BIO_s_mem());
	char *p, *out = NULL;
	long len;

	if (r != NULL && n != NULL && b != NULL &&
	    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_UTF8, (const unsigned char *)host, -1, -1, 0) == 1 &&
	    X509_REQ_set_subject_name(r, n) == 1 && X509_REQ_set_pubkey(r, k) == 1 &&
	    X509_REQ_sign(r, k, EVP_sha256()) > 0 && PEM_write_bio_X509_REQ(b, r) == 1) {
		len = BIO_get_mem_data(b, &p);
		out = strndup(p, (size_t)len);
	}
	X509_NAME_free(n);
	X509_REQ_free(r);
	BIO_free(b);
	return out;
}

/* tls://HOST:PORT with PORT + 1: the enrollment endpoint by convention. */
static int
next_port(const char *gw, char *out, size_t len)
{
	const char *colon = strrchr(gw, ':');
	long p;

	if (strncmp(gw, "tls://", 6) != 0 || colon == NULL)
		return -1;
	p = strtol(colon + 1, NULL, 10);
	if (p < 1 || p >= 65535)
		return -1;
	snprintf(out, len, "%.*s:%ld", (int)(colon - gw), gw, p + 1);
	return 0;
}

static json_t *
enroll_call(struct cli *e, json_t *req)
{
	json_t *rep = cli_call(e, req);

	if (!sg_reply_is_ok(rep, NULL, NULL, NULL)) {
		cli_die_reply(rep);
		json_decref(rep);
		return NULL;
	}
	return rep;
}

static int
cmd_enroll(struct cli *c, int argc, char **argv)
{
	const char *gateway = NULL, *enroll = NULL, *ca = NULL, *person = c->user;
	const char *server_name = NULL;
	char host[256] = "", enroll_buf[300], *dir = NULL, path[4096], key[4096], csrpath[4096];
	char *csr = NULL, text[16384], ca_abs[4096], sn_line[300];
	struct cli e = { .fd = -1, .json = c->json };
	int wait = 0, rv = 1;
	int64_t id = 0;
	const char *code = NULL;
	json_t *rep = NULL, *req, *saved = NULL;
	EVP_PKEY *k = NULL;
	FILE *f;
	char me[64];

	for (int i = 1; i < argc; i++) {
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (strcmp(argv[i], "--gateway") == 0 && v)
			gateway = argv[++i];
		else if (strcmp(argv[i], "--enroll") == 0 && v)
			enroll = argv[++i];
		else if (strcmp(argv[i], "--ca") == 0 && v)
			ca = argv[++i];
		else if (strcmp(argv[i], "--person") == 0 && v)
			person = argv[++i];
		else if (strcmp(argv[i], "--host") == 0 && v)
			snprintf(host, sizeof(host), "%s", argv[++i]);
		else if (strcmp(argv[i], "--server-name") == 0 && v)
			server_name = argv[++i];
		else if (strcmp(argv[i], "--wait") == 0 && v)
			wait = atoi(argv[++i]);
		else {
			fprintf(stderr, "sealctl: device enroll: unknown argument %s\n", argv[i]);
			return 2;
		}
	}
	if (gateway == NULL || ca == NULL) {
		fprintf(stderr, "sealctl: device enroll needs --gateway tls://HOST:PORT and --ca FILE "
		        "(the site CA your administrator gave you)\n");
		return 2;
	}
	if (enroll == NULL) {
		if (next_port(gateway, enroll_buf, sizeof(enroll_buf)) < 0) {
			fprintf(stderr, "sealctl: --gateway wants tls://HOST:PORT\n");
			return 2;
		}
		enroll = enroll_buf;
	}
	if (host[0] == '\0' && gethostname(host, sizeof(host) - 1) < 0)
		snprintf(host, sizeof(host), "unknown");
	if (person == NULL) {
		const char *u = getenv("USER");
		snprintf(me, sizeof(me), "%s", u ? u : "");
		person = me;
	}
	dir = sgm_conf_user_dir();
	if (dir == NULL || mkdirs(dir) < 0) {
		fprintf(stderr, "sealctl: no configuration directory for this user\n");
		goto out;
	}
	snprintf(key, sizeof(key), "%s/device.key", dir);
	snprintf(csrpath, sizeof(csrpath), "%s/enroll.json", dir);
	/* The enrollment connection: the site CA, no client certificate. */
	if (ca[0] != '/') {
		char cwd[2048];
		if (getcwd(cwd, sizeof(cwd)) == NULL)
			goto out;
		snprintf(ca_abs, sizeof(ca_abs), "%s/%s", cwd, ca);
	} else {
		snprintf(ca_abs, sizeof(ca_abs), "%s", ca);
	}
	snprintf(sn_line, sizeof(sn_line), "%s%s%s", server_name ? "server_name = " : "",
	         server_name ? server_name : "", server_name ? "\n" : "");
	snprintf(path, sizeof(path), "%s/enroll.conf", dir);
	snprintf(text, sizeof(text), "ca = %s\n%s", ca_abs, sn_line);
	if (write_file(path, text, strlen(text)) < 0) {
		fprintf(stderr, "sealctl: %s: %s\n", path, strerror(errno));
		goto out;
	}
	setenv("SEALGATE_CONF", path, 1);
	e.socket = enroll;
	/* A request already made from this key: ask about it again. */
	f = fopen(csrpath, "re");
	if (f != NULL) {
		saved = json_loadf(f, 0, NULL);
		fclose(f);
	}
	if (saved != NULL && json_integer_value(json_object_get(saved, "id")) > 0 &&
	    json_is_string(json_object_get(saved, "code")) && access(key, R_OK) == 0) {
		id = json_integer_value(json_object_get(saved, "id"));
		code = json_string_value(json_object_get(saved, "code"));
	} else {
		k = device_key(key);
		if (k == NULL || (csr = make_csr(k, host)) == NULL)
			goto out;
		req = sg_request_new(SG_OP_DEVICE_ENROLL);
		json_object_set_new(req, "csr", json_string(csr));
		json_object_set_new(req, "host", json_string(host));
		json_object_set_new(req, "person", json_string(person));
		rep = enroll_call(&e, req);
		if (rep == NULL)
			goto out;
		id = json_integer_value(json_object_get(rep, "id"));
		json_decref(saved);
		saved = json_pack("{s:I,s:O,s:s,s:s,s:s}", "id", (json_int_t)id, "code",
		                  json_object_get(rep, "code"), "gateway", gateway, "person", person,
		                  "host", host);
		code = json_string_value(json_object_get(saved, "code"));
		{
			char *s = json_dumps(saved, JSON_COMPACT);
			if (s == NULL || write_file(csrpath, s, strlen(s)) < 0) {
				free(s);
				fprintf(stderr, "sealctl: %s: cannot keep the request\n", csrpath);
				goto out;
			}
			free(s);
		}
		printf("device request %lld sent for %s from host %s\n"
		       "key code %s: a seal admin approves it with\n"
		       "    sealctl device approve %lld\n"
		       "after checking that code with you. Run this again (or use --wait) to "
		       "collect the certificate.\n", (long long)id, person, host, code, (long long)id);
		fflush(stdout);
		json_decref(rep);
		rep = NULL;
	}
	for (int waited = 0;; waited += 2) {
		const char *state;

		req = sg_request_new(SG_OP_DEVICE_FETCH);
		json_object_set_new(req, "id", json_integer((json_int_t)id));
		json_object_set_new(req, "code", json_string(code));
		json_decref(rep);
		rep = enroll_call(&e, req);
		if (rep == NULL)
			goto out;
		state = json_string_value(json_object_get(rep, "state"));
		if (state != NULL && strcmp(state, "approved") == 0)
			break;
		if (state != NULL && strcmp(state, "revoked") == 0) {
			fprintf(stderr, "sealctl: device request %lld was refused (revoked)\n", (long long)id);
			goto out;
		}
		if (waited >= wait) {
			printf("device request %lld: waiting for a seal admin (key code %s)\n",
			       (long long)id, code);
			rv = 1;
			goto out;
		}
		sleep(2);
	}
	/* Approved: the certificate, and sealgate.conf naming it all. */
	snprintf(path, sizeof(path), "%s/device.pem", dir);
	{
		const char *cert = json_string_value(json_object_get(rep, "cert"));
		if (cert == NULL || write_file(path, cert, strlen(cert)) < 0) {
			fprintf(stderr, "sealctl: %s: cannot write the certificate\n", path);
			goto out;
		}
	}
	snprintf(text, sizeof(text), "# written by sealctl device enroll\ngateway = %s\nca = %s\n"
	         "cert = %s/device.pem\nkey = %s\nuser = %s\n%s", gateway, ca_abs, dir, key, person,
	         sn_line);
	snprintf(path, sizeof(path), "%s/sealgate.conf", dir);
	if (write_file(path, text, strlen(text)) < 0) {
		fprintf(stderr, "sealctl: %s: %s\n", path, strerror(errno));
		goto out;
	}
	unlink(csrpath);
	snprintf(csrpath, sizeof(csrpath), "%s/enroll.conf", dir);
	unlink(csrpath);
	printf("device %lld approved: certificate in %s/device.pem, valid until %lld;\n"
	       "%s names the gateway for the module\n", (long long)id, dir,
	       (long long)json_integer_value(json_object_get(rep, "not_after")), path);
	rv = 0;
out:
	sealctl_device_done(&e);
	if (e.fd >= 0)
		close(e.fd);
	json_decref(rep);
	json_decref(saved);
	EVP_PKEY_free(k);
	free(csr);
	free(dir);
	return rv;
}

/* ---- a seal admin's commands ---- */

static int
cmd_list(struct cli *c)
{
	json_t *rep, *arr, *d;
	size_t i;
	int rv = 1;

	if (cli_login(c) != 0)
		return 1;
	rep = cli_call(c, sg_request_new(SG_OP_DEVICE_LIST));
	if (!sg_reply_is_ok(rep, NULL, NULL, NULL)) {
		cli_die_reply(rep);
		goto out;
	}
	arr = json_object_get(rep, "devices");
	if (!c->json) {
		printf("%-5s %-9s %-20s %-12s %-19s %-16s %s\n", "ID", "STATE", "HOST", "PERSON",
		       "KEY CODE", "GROUP", "CERTIFICATE SHA-256");
		json_array_foreach(arr, i, d) {
			const char *fp = json_string_value(json_object_get(d, "fingerprint"));
			const char *g = json_string_value(json_object_get(d, "group"));
			printf("%-5lld %-9s %-20s %-12s %-19s %-16s %.16s%s\n",
			       (long long)json_integer_value(json_object_get(d, "id")),
			       json_string_value(json_object_get(d, "state")),
			       json_string_value(json_object_get(d, "host")),
			       json_string_value(json_object_get(d, "person")),
			       json_string_value(json_object_get(d, "code")),
			       g && g[0] ? g : "-", fp && fp[0] ? fp : "-", fp && fp[0] ? "…" : "");
		}
	}
	rv = 0;
out:
	json_decref(rep);
	cli_logout(c);
	return rv;
}

static int
cmd_change(struct cli *c, const char *op, const char *id_s, const char *group)
{
	char *end = NULL;
	long long id = strtoll(id_s, &end, 10);
	json_t *req, *rep;
	int rv = 1;

	if (end == id_s || *end != '\0' || id < 1) {
		fprintf(stderr, "sealctl: not a device id: %s\n", id_s);
		return 2;
	}
	if (cli_login(c) != 0)
		return 1;
	req = sg_request_new(op);
	json_object_set_new(req, "id", json_integer(id));
	if (group != NULL)
		json_object_set_new(req, "group", json_string(group));
	rep = cli_call(c, req);
	if (!sg_reply_is_ok(rep, NULL, NULL, NULL)) {
		cli_die_reply(rep);
	} else {
		json_t *d = json_object_get(rep, "device");
		const char *g = json_string_value(json_object_get(d, "group"));
		if (!c->json)
			printf("device %lld (%s, %s): %s%s%s\n", id,
			       json_string_value(json_object_get(d, "host")),
			       json_string_value(json_object_get(d, "person")),
			       json_string_value(json_object_get(d, "state")),
			       g && g[0] ? ", group " : "", g && g[0] ? g : "");
		rv = 0;
	}
	json_decref(rep);
	cli_logout(c);
	return rv;
}

int
sealctl_device(struct cli *c, const char *cmd, int argc, char **argv)
{
	if (strcmp(cmd, "device") != 0)
		return -1;
	if (argc < 2) {
		fprintf(stderr, "sealctl: device enroll|list|approve ID|revoke ID\n");
		return 2;
	}
	if (strcmp(argv[1], "enroll") == 0)
		return cmd_enroll(c, argc - 1, argv + 1);
	if (strcmp(argv[1], "list") == 0 && argc == 2)
		return cmd_list(c);
	if (strcmp(argv[1], "approve") == 0 && argc == 3)
		return cmd_change(c, SG_OP_DEVICE_APPROVE, argv[2], NULL);
	if (strcmp(argv[1], "approve") == 0 && argc == 5 && strcmp(argv[3], "--group") == 0)
		return cmd_change(c, SG_OP_DEVICE_APPROVE, argv[2], argv[4]);
	if (strcmp(argv[1], "revoke") == 0 && argc == 3)
		return cmd_change(c, SG_OP_DEVICE_REVOKE, argv[2], NULL);
	fprintf(stderr, "sealctl: device enroll|list|approve ID [--group GROUP]|revoke ID\n");
	return 2;
}
