/*
 * Unit tests of sealgated's configuration: the demo file loads, defaults
 * and relative paths, strict types with file:line:col errors, and the
 * token PIN file's ownership and mode checks.
 */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "protocol.h"
#include "sg-config.h"

static char tmpdir[64];

static void
mk_tmpdir(void)
{
	strcpy(tmpdir, "/tmp/sg-config-XXXXXX");
	cr_assert_not_null(mkdtemp(tmpdir));
}

static void
rm_tmpdir(void)
{
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	cr_assert_eq(system(cmd), 0);
}

static void
write_file(const char *path, const char *text, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	cr_assert(fd >= 0, "%s", path);
	cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	cr_assert_eq(fchmod(fd, mode), 0);
	close(fd);
}

static char *
slurp(const char *path)
{
	FILE *f = fopen(path, "rb");
	char *buf;
	long n;

	cr_assert_not_null(f, "cannot open %s", path);
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = calloc(1, (size_t)n + 1);
	cr_assert_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	return buf;
}

static int
parse(const char *text, struct gw_config **c, char *err, size_t errlen)
{
	return gw_config_parse("/etc/sg/c.yaml", (const uint8_t *)text, strlen(text), c,
	                       err, errlen);
}

static void
expect_error(const char *text, const char *want)
{
	struct gw_config *c = NULL;
	char err[2048];

	cr_assert_eq(parse(text, &c, err, sizeof(err)), -1, "loaded, expected %s", want);
	cr_assert_null(c);
	cr_assert_str_eq(err, want);
}

#define REQ "backend_token: \"pkcs11:token=t\"\ntoken_pin_file: pin\n" \
	"store_path: s.db\npolicy_path: p.yaml\n"

Test(config, demo_loads, .init = mk_tmpdir, .fini = rm_tmpdir)
{
	const char *src = getenv("SEALGATE_SOURCE");
	char path[PATH_MAX], cfgpath[PATH_MAX], want[PATH_MAX + 32], err[512];
	struct gw_config *c = NULL;
	char *in, *text, *at;
	size_t dl = strlen(tmpdir);

	snprintf(path, sizeof(path), "%s/softhsm-config/sealgated.yaml.in", src ? src : "../..");
	in = slurp(path);
	/* Substitute every @DIR@ with tmpdir. */
	text = calloc(1, strlen(in) * 2 + 8 * dl);
	for (char *o = text, *p = in;;) {
		at = strstr(p, "@DIR@");
		if (at == NULL) {
			strcpy(o, p);
			break;
		}
		memcpy(o, p, (size_t)(at - p));
		o += at - p;
		memcpy(o, tmpdir, dl);
		o += dl;
		p = at + 5;
	}
	snprintf(cfgpath, sizeof(cfgpath), "%s/sealgated.yaml", tmpdir);
	write_file(cfgpath, text, 0644);
	cr_assert_eq(gw_config_load(cfgpath, &c, err, sizeof(err)), 0, "%s", err);
	cr_assert_str_eq(c->path, cfgpath);
	cr_assert_str_eq(c->backend_module, "/usr/lib/softhsm/libsofthsm2.so");
	cr_assert_str_eq(c->backend_token, "pkcs11:token=sealgate-demo");
	snprintf(want, sizeof(want), "%s/token.pin", tmpdir);
	cr_assert_str_eq(c->token_pin_file, want);
	snprintf(want, sizeof(want), "%s/sealgated.sock", tmpdir);
	cr_assert_str_eq(c->socket_path, want);
	cr_assert_eq(c->socket_mode, 0666);
	snprintf(want, sizeof(want), "%s/policy.yaml", tmpdir);
	cr_assert_str_eq(c->policy_path, want);
	cr_assert_str_eq(c->token_label, "Acme Trading Co.");
	cr_assert_str_eq(c->audit_key, "pkcs11:object=sealgate-audit;type=private");
	cr_assert_str_eq(c->log, "stderr");
	cr_assert_not(c->log_debug);
	cr_assert_eq(c->session_timeout, 28800);
	cr_assert(c->backend_sessions >= 2 && c->backend_sessions <= 64);
	gw_config_free(&c);
	cr_assert_null(c);
	gw_config_free(&c);
	free(in);
	free(text);
}

Test(config, defaults_and_relative_paths)
{
	struct gw_config *c = NULL;
	char err[512];
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);

	cr_assert_eq(parse(REQ, &c, err, sizeof(err)), 0, "%s", err);
	cr_assert_str_eq(c->backend_module, SG_DEFAULT_BACKEND);
	cr_assert_str_eq(c->socket_path, SG_RUNSTATEDIR "/sealgated.sock");
	cr_assert_eq(c->socket_mode, 0666);
	cr_assert_str_eq(c->token_pin_file, "/etc/sg/pin");
	cr_assert_str_eq(c->store_path, "/etc/sg/s.db");
	cr_assert_str_eq(c->policy_path, "/etc/sg/p.yaml");
	cr_assert_null(c->token_label);
	cr_assert_str_eq(c->log, "stderr");
	cr_assert_eq(c->session_timeout, 28800);
	cr_assert_eq(c->backend_sessions, (unsigned)(cpus * 2 > 64 ? 64 : cpus * 2));
	gw_config_free(&c);

	cr_assert_eq(parse(REQ "backend_module: ./lib/mod.so\nsocket_path: run/s.sock\n"
	                   "socket_mode: \"0660\"\nbackend_sessions: 3\nsession_timeout: 60\n"
	                   "log: syslog\nlog_debug: true\naudit_key: \"pkcs11:object=audit\"\n"
	                   "token_label: Acme\n", &c, err, sizeof(err)), 0, "%s", err);
	cr_assert_str_eq(c->backend_module, "/etc/sg/./lib/mod.so");
	cr_assert_str_eq(c->socket_path, "/etc/sg/run/s.sock");
	cr_assert_eq(c->socket_mode, 0660);
	cr_assert_eq(c->backend_sessions, 3);
	cr_assert_eq(c->session_timeout, 60);
	cr_assert_str_eq(c->log, "syslog");
	cr_assert(c->log_debug);
	cr_assert_str_eq(c->audit_key, "pkcs11:object=audit");
	cr_assert_str_eq(c->token_label, "Acme");
	gw_config_free(&c);

	/* A bare module name is left to dlopen's search path. */
	cr_assert_eq(parse(REQ "backend_module: libsofthsm2.so\nsocket_mode: 0600\n", &c,
	                   err, sizeof(err)), 0, "%s", err);
	cr_assert_str_eq(c->backend_module, "libsofthsm2.so");
	cr_assert_eq(c->socket_mode, 0600);
	gw_config_free(&c);
}

Test(config, relative_config_file, .init = mk_tmpdir, .fini = rm_tmpdir)
{
	char cwd[PATH_MAX], want[PATH_MAX + 16], err[512];
	struct gw_config *c = NULL;

	cr_assert_not_null(getcwd(cwd, sizeof(cwd)));
	cr_assert_eq(chdir(tmpdir), 0);
	mkdir("etc", 0755);
	write_file("etc/sg.yaml", REQ, 0644);
	cr_assert_eq(gw_config_load("etc/sg.yaml", &c, err, sizeof(err)), 0, "%s", err);
	snprintf(want, sizeof(want), "%s/etc/pin", tmpdir);
	/* tmpdir may itself sit behind a symlink; compare the tail only. */
	cr_assert_eq(c->token_pin_file[0], '/');
	cr_assert_not_null(strstr(c->token_pin_file, "/etc/pin"), "%s", c->token_pin_file);
	cr_assert_eq(access(c->token_pin_file, F_OK), -1);
	gw_config_free(&c);
	cr_assert_eq(chdir(cwd), 0);
}

Test(config, errors)
{
	expect_error("backend_token: x\n",
	             "/etc/sg/c.yaml:1:1: token_pin_file: missing (required)");
	expect_error("token_pin_file: pin\nstore_path: s\npolicy_path: p\n",
	             "/etc/sg/c.yaml:1:1: backend_token: missing (required)");
	expect_error(REQ "sockt_path: /x\n",
	             "/etc/sg/c.yaml:5:1: unknown key 'sockt_path' in the configuration "
	             "(known keys: backend_module, backend_token, token_pin_file, socket_path, "
	             "socket_mode, store, store_path, site, policy_path, token_label, audit_key, "
	             "backend_sessions, session_timeout, log, log_debug, card_watch, reader, "
	             "audit_checkpoint_interval, auth_max_failures, auth_lockout, signing_window, "
	             "confirm_timeout, password_cost, password_hash_concurrency, test_clock, "
	             "max_connections, connections_per_uid, connections_per_unknown_uid, "
	             "frame_timeout, client_idle_timeout, totp_site_keys, totp_key_file, tls_listen, tls_cert, tls_key, "
	             "tls_device_ca, tls_device_ca_key, tls_devices, tls_enroll_listen, "
	             "tls_connections_per_device, tls_device_days, tls_device_ca_token_label, web_front, notify, risk_online, risk_queue, document_max_size, session_max_age)");
	/* store_path is a SQLite file's old name: a URL there is refused,
	 * never made into a file name (store: takes it). */
	expect_error("backend_token: \"pkcs11:token=t\"\ntoken_pin_file: pin\n"
	             "store_path: postgresql:///sealgate?host=/run/pg\npolicy_path: p.yaml\n",
	             "/etc/sg/c.yaml:3:13: store_path names a SQLite file; write a PostgreSQL "
	             "store as store: postgresql://…");
	expect_error(REQ "store_path: other\n",
	             "/etc/sg/c.yaml:5:1: duplicate key 'store_path' in the configuration");
	expect_error(REQ "socket_mode: \"0999\"\n",
	             "/etc/sg/c.yaml:5:14: socket_mode must be an octal mode such as \"0660\", not '0999'");
	expect_error(REQ "socket_mode: \"1777\"\n",
	             "/etc/sg/c.yaml:5:14: socket_mode must be an octal mode such as \"0660\", not '1777'");
	expect_error(REQ "backend_sessions: 65\n",
	             "/etc/sg/c.yaml:5:19: backend_sessions must be at most 64 (got 65)");
	expect_error(REQ "backend_sessions: 0\n",
	             "/etc/sg/c.yaml:5:19: backend_sessions must be at least 1 (got 0)");
	expect_error(REQ "backend_sessions: 4x\n",
	             "/etc/sg/c.yaml:5:19: backend_sessions must be a whole number, not '4x'");
	expect_error(REQ "session_timeout: 18446744073709551617\n",
	             "/etc/sg/c.yaml:5:18: session_timeout: '18446744073709551617' is out of range");
	expect_error(REQ "log: file\n", "/etc/sg/c.yaml:5:6: log must be stderr or syslog, not 'file'");
	expect_error(REQ "log_debug: yes\n",
	             "/etc/sg/c.yaml:5:12: log_debug must be true or false, not 'yes'");
	expect_error(REQ "token_label: \"123456789012345678901234567890123\"\n",
	             "/etc/sg/c.yaml:5:14: token_label is longer than 32 bytes (a PKCS#11 token label)");
	expect_error(REQ "audit_key: audit\n",
	             "/etc/sg/c.yaml:5:12: audit_key must be a PKCS#11 URI (\"pkcs11:object=...\")");
	expect_error(REQ "policy_path:\n",
	             "/etc/sg/c.yaml:5:1: duplicate key 'policy_path' in the configuration");
	expect_error("backend_token: [a, b]\n",
	             "/etc/sg/c.yaml:1:16: backend_token must be a single value, not a list");
	expect_error("backend_token: ~\n",
	             "/etc/sg/c.yaml:1:16: backend_token must be a single value, not no value");
	expect_error("just text\n",
	             "/etc/sg/c.yaml:1:1: the file must be a mapping of keys to values");
	expect_error("a: *b\n", "/etc/sg/c.yaml:1:4: YAML aliases (*b) are not supported");
	expect_error("a: 'x\n", "/etc/sg/c.yaml:2:1: found unexpected end of stream while scanning a quoted scalar");
	expect_error("", "/etc/sg/c.yaml: empty file");
	expect_error(REQ "socket_path: /" "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	             "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n",
	             "/etc/sg/c.yaml:5:14: socket_path is longer than a Unix socket path may be (107 bytes)");
}

/* The TLS front's keys (docs/deployment.md): all a listener needs, or an
 * error naming what is missing; relative paths from the file's directory. */
Test(config, tls_front)
{
	struct gw_config *c = NULL;
	char err[1024];

	cr_assert_eq(parse(REQ, &c, err, sizeof(err)), 0, "%s", err);
	cr_assert_null(c->tls_listen);
	cr_assert_eq(c->tls_connections_per_device, 8);
	cr_assert_eq(c->tls_device_days, 365);
	/* the online risk rules (docs/risk.md): on, a queue of 8192 records */
	cr_assert(c->risk_online);
	cr_assert_eq(c->risk_queue, 8192);
	gw_config_free(&c);
	cr_assert_eq(parse(REQ "tls_listen: \"*:8443\"\ntls_cert: gw.pem\ntls_key: gw.key\n"
	                   "tls_device_ca: dca.pem\ntls_devices: devices\n"
	                   "tls_connections_per_device: 3\n", &c, err, sizeof(err)), 0, "%s", err);
	cr_assert_str_eq(c->tls_cert, "/etc/sg/gw.pem");
	cr_assert_str_eq(c->tls_devices, "/etc/sg/devices");
	cr_assert_null(c->tls_device_ca_key);
	cr_assert_eq(c->tls_connections_per_device, 3);
	gw_config_free(&c);
	expect_error(REQ "tls_listen: \"*:8443\"\ntls_cert: gw.pem\n",
	             "/etc/sg/c.yaml:5:13: tls_listen needs tls_cert, tls_key (the gateway's own), "
	             "tls_device_ca (the devices' CA) and tls_devices (their records)");
	expect_error(REQ "tls_enroll_listen: \"*:8444\"\n",
	             "/etc/sg/c.yaml:5:20: tls_enroll_listen without tls_listen: enrolled devices "
	             "would have nowhere to go");
	expect_error(REQ "tls_listen: \"*:8443\"\ntls_cert: gw.pem\ntls_key: gw.key\n"
	             "tls_device_ca: dca.pem\ntls_devices: d\ntls_enroll_listen: \":8444\"\n",
	             "/etc/sg/c.yaml:10:20: tls_enroll_listen needs tls_device_ca_token_label (or "
	             "a file tls_device_ca_key) to issue certificates");
	/* The device CA's key on the token: a label, and never a file besides. */
	cr_assert_eq(parse(REQ "tls_listen: \"*:8443\"\ntls_cert: gw.pem\ntls_key: gw.key\n"
	                   "tls_device_ca: dca.pem\ntls_devices: d\ntls_enroll_listen: \":8444\"\n"
	                   "tls_device_ca_token_label: sealgate device CA\n", &c, err, sizeof(err)),
	             0, "%s", err);
	cr_assert_str_eq(c->tls_device_ca_token_label, "sealgate device CA");
	cr_assert_null(c->tls_device_ca_key);
	gw_config_free(&c);
	expect_error(REQ "tls_listen: \"*:8443\"\ntls_cert: gw.pem\ntls_key: gw.key\n"
	             "tls_device_ca: dca.pem\ntls_devices: d\ntls_device_ca_key: dca.key\n"
	             "tls_device_ca_token_label: ca\n",
	             "/etc/sg/c.yaml:11:28: tls_device_ca_token_label and tls_device_ca_key: the "
	             "device CA's key is on the token or in a file, not both");
}

/* web_front (docs/web.md): a user resolved to its uid at load; root and
 * an unknown user refused, a key of its own mapping only. */
Test(config, web_front)
{
	struct gw_config *c = NULL;
	char err[1024];

	cr_assert_eq(parse(REQ, &c, err, sizeof(err)), 0, "%s", err);
	cr_assert(!c->web_front);
	gw_config_free(&c);
	cr_assert_eq(parse(REQ "web_front: { user: nobody }\n", &c, err, sizeof(err)), 0, "%s", err);
	cr_assert(c->web_front);
	cr_assert_str_eq(c->web_front_user, "nobody");
	cr_assert_eq(c->web_front_uid, getpwnam("nobody")->pw_uid);
	gw_config_free(&c);
	expect_error(REQ "web_front: { user: root }\n",
	             "/etc/sg/c.yaml:5:20: web_front: user: root cannot be the web front (give "
	             "sealgate-web a user of its own)");
	expect_error(REQ "web_front: { user: no-such-user-here }\n",
	             "/etc/sg/c.yaml:5:20: web_front: user: no OS user named 'no-such-user-here'");
	cr_assert_eq(parse(REQ "web_front: { user: nobody, exe: /usr/bin/sealgate-web }\n", &c, err,
	                   sizeof(err)), 0, "%s", err);
	cr_assert_str_eq(c->web_front_exe, "/usr/bin/sealgate-web");
	gw_config_free(&c);
	expect_error(REQ "web_front: { user: nobody, exe: sealgate-web }\n",
	             "/etc/sg/c.yaml:5:33: web_front: exe: must be an absolute path");
	expect_error(REQ "web_front: {}\n",
	             "/etc/sg/c.yaml:5:12: web_front: user: missing (the OS user sealgate-web runs as)");
}

Test(config, too_large)
{
	size_t n = 4u * 1024 * 1024 + 1;
	char *big = malloc(n + 1), err[256];
	struct gw_config *c = NULL;

	memset(big, '#', n);
	big[n] = '\0';
	cr_assert_eq(gw_config_parse("big.yaml", (uint8_t *)big, n, &c, err, sizeof(err)), -1);
	cr_assert_str_eq(err, "big.yaml: larger than 4194304 bytes");
	free(big);
}

static struct gw_config *
pin_config(const char *pin_path)
{
	static char text[PATH_MAX + 256];
	struct gw_config *c = NULL;
	char err[512];

	snprintf(text, sizeof(text), "backend_token: t\ntoken_pin_file: \"%s\"\n"
	         "store_path: s\npolicy_path: p\n", pin_path);
	cr_assert_eq(parse(text, &c, err, sizeof(err)), 0, "%s", err);
	return c;
}

Test(config, pin_file, .init = mk_tmpdir, .fini = rm_tmpdir)
{
	char path[PATH_MAX], link[PATH_MAX], want[PATH_MAX + 128], err[512];
	struct gw_config *c;
	char *pin;

	snprintf(path, sizeof(path), "%s/token.pin", tmpdir);
	c = pin_config(path);

	write_file(path, "1234\n", 0600);
	pin = gw_config_read_pin(c, err, sizeof(err));
	cr_assert_not_null(pin, "%s", err);
	cr_assert_str_eq(pin, "1234");
	sg_free_secret_str(pin);

	write_file(path, "secret", 0400);                  /* no newline, read-only */
	pin = gw_config_read_pin(c, err, sizeof(err));
	cr_assert_not_null(pin, "%s", err);
	cr_assert_str_eq(pin, "secret");
	sg_free_secret_str(pin);

	write_file(path, "1234\n\n", 0600);                /* only one newline is dropped */
	cr_assert_null(gw_config_read_pin(c, err, sizeof(err)));

	write_file(path, "1234\n", 0644);
	cr_assert_null(gw_config_read_pin(c, err, sizeof(err)));
	snprintf(want, sizeof(want), "token PIN file %s is readable by group/others "
	         "(mode 0644); chmod 600 it", path);
	cr_assert_str_eq(err, want);

	write_file(path, "1234\n", 0620);
	cr_assert_null(gw_config_read_pin(c, err, sizeof(err)));
	snprintf(want, sizeof(want), "token PIN file %s is writable or executable by "
	         "group/others (mode 0620); chmod 600 it", path);
	cr_assert_str_eq(err, want);

	write_file(path, "\n", 0600);
	cr_assert_null(gw_config_read_pin(c, err, sizeof(err)));
	cr_assert_not_null(strstr(err, "is empty"), "%s", err);

	{
		char big[300];
		memset(big, '7', 256);
		big[256] = '\n';
		big[257] = '\0';
		write_file(path, big, 0600);                 /* 256 bytes + newline: fine */
		pin = gw_config_read_pin(c, err, sizeof(err));
		cr_assert_not_null(pin, "%s", err);
		cr_assert_eq(strlen(pin), 256);
		sg_free_secret_str(pin);
		big[256] = '7';
		big[257] = '\0';
		write_file(path, big, 0600);                 /* 257 bytes: too long */
		cr_assert_null(gw_config_read_pin(c, err, sizeof(err)));
		cr_assert_not_null(strstr(err, "holds more than 256 bytes"), "%s", err);
	}

	/* A symlink is refused even when its target is fine. */
	write_file(path, "1234\n", 0600);
	snprintf(link, sizeof(link), "%s/link.pin", tmpdir);
	cr_assert_eq(symlink(path, link), 0);
	gw_config_free(&c);
	c = pin_config(link);
	cr_assert_null(gw_config_read_pin(c, err, sizeof(err)));
	cr_assert_not_null(strstr(err, "is a symbolic link"), "%s", err);
	gw_config_free(&c);

	/* A directory, a missing file. */
	c = pin_config(tmpdir);
	cr_assert_null(gw_config_read_pin(c, err, sizeof(err)));
	cr_assert_not_null(strstr(err, "is not a regular file"), "%s", err);
	gw_config_free(&c);
	snprintf(link, sizeof(link), "%s/missing.pin", tmpdir);
	c = pin_config(link);
	cr_assert_null(gw_config_read_pin(c, err, sizeof(err)));
	cr_assert_not_null(strstr(err, "No such file"), "%s", err);
	gw_config_free(&c);

	/* Another owner: only root can hand the file to someone else. */
	if (geteuid() == 0) {
		c = pin_config(path);
		cr_assert_eq(chown(path, 4242, (gid_t)-1), 0);
		cr_assert_null(gw_config_read_pin(c, err, sizeof(err)));
		cr_assert_not_null(strstr(err, "is owned by uid 4242"), "%s", err);
		gw_config_free(&c);
	}
}

/* The documents' size cap (docs/stamp.md): 32 MiB by default, 1 KiB to
 * 512 MiB. */
Test(config, document_max_size)
{
	struct gw_config *c = NULL;
	char err[512];

	cr_assert_eq(parse(REQ, &c, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(c->document_max_size, 32u * 1024 * 1024);
	gw_config_free(&c);
	cr_assert_eq(parse(REQ "document_max_size: 1048576\n", &c, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(c->document_max_size, 1048576);
	gw_config_free(&c);
	cr_assert_eq(parse(REQ "document_max_size: 100\n", &c, err, sizeof(err)), -1);
	cr_assert_eq(parse(REQ "document_max_size: 536870913\n", &c, err, sizeof(err)), -1);
}
