/*
 * sealctl commands of authentication: `login` / `logout` (the out-of-band
 * signing window), `confirm` (a fresh code for a waiting signature),
 * `user totp-enroll` (a new TOTP secret, shown as an otpauth:// URI and a
 * QR code, active only after one valid code), `user unlock` and
 * `user totp-reset` (seal admins). docs/authentication.md explains them.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <liboath/oath.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <qrencode.h>

#include "sealctl.h"
#include "protocol.h"

#define SECRET_LEN 20          /* 160 bits, RFC 4226 section 4 */
#define SECRET_MAX 64

struct auth_opts {
	const char *code;          /* --code */
	const char *code_file;     /* --code-file ("-" = stdin) */
	const char *secret_file;   /* --secret-file (base32) */
	const char *current_code;  /* --current-code: replacing an active secret */
	long seconds;              /* --seconds */
	long wait;                 /* --wait */
	long long id;              /* --id */
	bool list;                 /* --list */
	bool no_qr;                /* --no-qr */
	int nargs;
	char **args;
};

static int
parse_opts(int argc, char **argv, struct auth_opts *o)
{
	static const struct option opts[] = {
		{ "code", required_argument, NULL, 'C' },
		{ "code-file", required_argument, NULL, 'F' },
		{ "secret-file", required_argument, NULL, 'S' },
		{ "current-code", required_argument, NULL, 'K' },
		{ "seconds", required_argument, NULL, 's' },
		{ "wait", required_argument, NULL, 'w' },
		{ "id", required_argument, NULL, 'i' },
		{ "list", no_argument, NULL, 'l' },
		{ "no-qr", no_argument, NULL, 'q' },
		{ "password-file", required_argument, NULL, 'p' },
		{ "json", no_argument, NULL, 'j' },
		{ NULL, 0, NULL, 0 },
	};
	char *end;
	int ch;

	memset(o, 0, sizeof(*o));
	optind = 0;   /* glibc: re-initialise fully */
	while ((ch = getopt_long(argc, argv, "p:j", opts, NULL)) != -1) {
		switch (ch) {
		case 'C': o->code = optarg; break;
		case 'F': o->code_file = optarg; break;
		case 'S': o->secret_file = optarg; break;
		case 'K': o->current_code = optarg; break;
		case 'l': o->list = true; break;
		case 'q': o->no_qr = true; break;
		case 'p': case 'j': break;   /* taken by the caller's option pass */
		case 's': case 'w': case 'i': {
			long long v;
			errno = 0;
			v = strtoll(optarg, &end, 10);
			if (errno || end == optarg || *end || v < 0 || v > 86400 * 365) {
				fprintf(stderr, "sealctl: bad number '%s'\n", optarg);
				return -1;
			}
			if (ch == 's')
				o->seconds = (long)v;
			else if (ch == 'w')
				o->wait = (long)v;
			else
				o->id = v;
			break;
		}
		default:
			return -1;
		}
	}
	o->nargs = argc - optind;
	o->args = argv + optind;
	return 0;
}

/* Options sealctl.c takes before the command may also follow it. */
static void
early_opts(struct cli *c, int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		if ((strcmp(argv[i], "--password-file") == 0 || strcmp(argv[i], "-p") == 0) && i + 1 < argc)
			c->password_file = argv[++i];
		else if (strcmp(argv[i], "--json") == 0 || strcmp(argv[i], "-j") == 0)
			c->json = true;
	}
}

/* The current TOTP code: --code, --code-file, SEALGATE_CODE, or asked. */
static char *
read_code(const struct auth_opts *o, const char *prompt)
{
	const char *env = getenv("SEALGATE_CODE");
	char *code;
	size_t n;

	if (o->code != NULL)
		code = strdup(o->code);
	else if (o->code_file != NULL)
		code = cli_read_secret(o->code_file, prompt);
	else if (env != NULL)
		code = strdup(env);
	else
		code = cli_read_secret(NULL, prompt);
	if (code == NULL)
		return NULL;
	n = strlen(code);
	if (n != 6 || strspn(code, "0123456789") != 6) {
		fprintf(stderr, "sealctl: a code is 6 digits\n");
		sg_free_secret_str(code);
		return NULL;
	}
	return code;
}

static char *
read_password(struct cli *c)
{
	const char *env = getenv("SEALGATE_PASSWORD");

	if (c->password_file != NULL)
		return cli_read_secret(c->password_file, "password");
	if (env != NULL)
		return strdup(env);
	return cli_read_secret(NULL, "sealgate password");
}

/* Logs in with password and a code (or the password alone when code is
 * NULL). The session goes into c (cli_call adds it, cli_logout ends it). */
static int
login_with(struct cli *c, const char *code)
{
	char *pw = read_password(c);
	json_t *req, *rep;
	bool was;
	int rv = 1;

	if (pw == NULL)
		return 1;
	req = sg_request_new(SG_OP_LOGIN);
	json_object_set_new(req, "pin", json_string(pw));
	sg_free_secret_str(pw);
	if (code != NULL)
		json_object_set_new(req, "code", json_string(code));
	if (c->user)
		json_object_set_new(req, "user", json_string(c->user));
	was = c->json;
	c->json = false;   /* the reply holds the session token */
	rep = cli_call(c, req);
	c->json = was;
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

static int
reply_ok(json_t *rep)
{
	if (sg_reply_is_ok(rep, NULL, NULL, NULL))
		return 1;
	cli_die_reply(rep);
	return 0;
}

static void
local_time(time_t t, char *buf, size_t len)
{
	struct tm tm;

	localtime_r(&t, &tm);
	strftime(buf, len, "%H:%M:%S", &tm);
}

/* ---- login / logout: the out-of-band window ---- */

static int
cmd_login(struct cli *c, const struct auth_opts *o)
{
	char *code = read_code(o, "TOTP code");
	json_t *req, *rep;
	char when[16];
	int rv = 1;

	if (code == NULL)
		return 1;
	if (login_with(c, code) != 0)
		goto out;
	req = sg_request_new(SG_OP_WINDOW_OPEN);
	if (o->seconds > 0)
		json_object_set_new(req, "seconds", json_integer(o->seconds));
	rep = cli_call(c, req);
	if (reply_ok(rep)) {
		local_time((time_t)json_integer_value(json_object_get(rep, "until")), when, sizeof(when));
		if (!c->json)
			printf("signing window open for %s until %s (%lld s): applications of this OS "
			       "user may now log in without a PIN\n",
			       json_string_value(json_object_get(rep, "user")), when,
			       (long long)json_integer_value(json_object_get(rep, "seconds")));
		rv = 0;
	}
	json_decref(rep);
	cli_logout(c);
out:
	sg_free_secret_str(code);
	return rv;
}

static int
cmd_logout(struct cli *c)
{
	json_t *req = sg_request_new(SG_OP_WINDOW_CLOSE), *rep;
	int rv;

	if (c->user)
		json_object_set_new(req, "user", json_string(c->user));
	rep = cli_call(c, req);
	rv = reply_ok(rep) ? 0 : 1;
	if (rv == 0 && !c->json)
		printf("signing window closed\n");
	json_decref(rep);
	return rv;
}

/* ---- confirm ---- */

static json_t *
pending(struct cli *c)
{
	json_t *req = sg_request_new(SG_OP_CONFIRM);

	json_object_set_new(req, "list", json_true());
	if (c->user)
		json_object_set_new(req, "user", json_string(c->user));
	return cli_call(c, req);
}

static int
cmd_confirm(struct cli *c, const struct auth_opts *o)
{
	json_t *req, *rep, *e;
	char *code = NULL;
	size_t i, n = 0;
	int rv = 1;

	/* With --wait, give the application time to ask. */
	for (long waited = 0;; waited++) {
		rep = pending(c);
		if (!reply_ok(rep)) {
			json_decref(rep);
			return 1;
		}
		n = json_array_size(json_object_get(rep, "pending"));
		if (o->list || n > 0 || waited >= o->wait * 10) {
			if (!c->json) {
				json_array_foreach(json_object_get(rep, "pending"), i, e)
					printf("waiting: #%lld %s by %s (pid %lld)\n",
					       (long long)json_integer_value(json_object_get(e, "id")),
					       json_string_value(json_object_get(e, "seal")),
					       json_string_value(json_object_get(e, "exe")),
					       (long long)json_integer_value(json_object_get(e, "pid")));
			}
			json_decref(rep);
			break;
		}
		json_decref(rep);
		usleep(100000);
	}
	if (o->list)
		return 0;
	if (n == 0) {
		fprintf(stderr, "sealctl: no signature is waiting for a confirmation\n");
		return 1;
	}
	code = read_code(o, "TOTP code to confirm the signature");
	if (code == NULL)
		return 1;
	req = sg_request_new(SG_OP_CONFIRM);
	json_object_set_new(req, "code", json_string(code));
	if (o->id > 0)
		json_object_set_new(req, "id", json_integer(o->id));
	if (c->user)
		json_object_set_new(req, "user", json_string(c->user));
	rep = cli_call(c, req);
	if (reply_ok(rep)) {
		if (!c->json)
			printf("confirmed: %s by %s\n", json_string_value(json_object_get(rep, "seal")),
			       json_string_value(json_object_get(rep, "exe")));
		rv = 0;
	}
	json_decref(rep);
	sg_free_secret_str(code);
	return rv;
}

/* ---- user totp-enroll ---- */

/* Half-block rendering: two QR rows per terminal line, with the quiet
 * zone the standard asks for. */
static void
print_qr(const char *text)
{
	QRcode *q = QRcode_encodeString(text, 0, QR_ECLEVEL_M, QR_MODE_8, 1);
	int w, quiet = 2;

	if (q == NULL) {
		fprintf(stderr, "sealctl: cannot draw the QR code (%s)\n", strerror(errno));
		return;
	}
	w = q->width;
	for (int y = -quiet; y < w + quiet; y += 2) {
		for (int x = -quiet; x < w + quiet; x++) {
			bool top = y >= 0 && y < w && x >= 0 && x < w && (q->data[y * w + x] & 1);
			bool bot = y + 1 >= 0 && y + 1 < w && x >= 0 && x < w && (q->data[(y + 1) * w + x] & 1);
			/* For a dark terminal: light modules drawn, dark ones blank. */
			fputs(top ? (bot ? " " : "\u2584") : (bot ? "\u2580" : "\u2588"), stdout);
		}
		putchar('\n');
	}
	OPENSSL_cleanse(q->data, (size_t)w * (size_t)w);
	QRcode_free(q);
}

/* Percent-encodes s for an otpauth:// URI label or parameter. */
static void
uri_escape(const char *s, char *out, size_t outlen)
{
	size_t n = 0;

	for (; *s && n + 4 < outlen; s++) {
		unsigned char ch = (unsigned char)*s;
		if ((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
		    ch == '-' || ch == '.' || ch == '_' || ch == '~')
			out[n++] = (char)ch;
		else
			n += (size_t)snprintf(out + n, outlen - n, "%%%02X", ch);
	}
	out[n] = '\0';
}

static int
load_secret(const char *path, uint8_t *secret, size_t *len)
{
	char *b32 = cli_read_secret(path, "base32 secret"), *bin = NULL;
	size_t binlen = 0;
	int rv = -1;

	if (b32 == NULL)
		return -1;
	if (oath_base32_decode(b32, strlen(b32), &bin, &binlen) != OATH_OK ||
	    binlen < 16 || binlen > SECRET_MAX) {
		fprintf(stderr, "sealctl: %s: not a base32 secret of 16 to 64 bytes\n", path);
	} else {
		memcpy(secret, bin, binlen);
		*len = binlen;
		rv = 0;
	}
	if (bin != NULL) {
		OPENSSL_cleanse(bin, binlen);
		free(bin);
	}
	sg_free_secret_str(b32);
	return rv;
}

static int
cmd_totp_enroll(struct cli *c, const struct auth_opts *o)
{
	uint8_t secret[SECRET_MAX];
	size_t len = SECRET_LEN, b32len = 0;
	char *b32 = NULL, *code = NULL, *uri = NULL, issuer[256] = "sealgate", label[640], acct[256];
	const char *user, *tok;
	json_t *req, *rep;
	int rv = 1;

	if (oath_init() != OATH_OK)
		return 1;
	/* A login with the password; replacing an active secret needs the
	 * current code as well (--current-code). */
	if (login_with(c, o->current_code) != 0)
		return 1;
	rep = cli_call(c, sg_request_new(SG_OP_WHOAMI));
	user = json_string_value(json_object_get(rep, "user"));
	snprintf(acct, sizeof(acct), "%s", user ? user : "user");
	json_decref(rep);
	rep = cli_call(c, sg_request_new(SG_OP_HELLO));
	tok = json_string_value(json_object_get(rep, "token_label"));
	if (tok != NULL)
		snprintf(issuer, sizeof(issuer), "%s", tok);
	json_decref(rep);

	if (o->secret_file != NULL) {
		if (load_secret(o->secret_file, secret, &len) < 0)
			goto out;
	} else if (RAND_bytes(secret, (int)len) != 1) {
		fprintf(stderr, "sealctl: no random bytes for the secret\n");
		goto out;
	}
	if (oath_base32_encode((const char *)secret, len, &b32, &b32len) != OATH_OK)
		goto out;
	{
		char ei[300], ea[300];
		size_t ulen;
		uri_escape(issuer, ei, sizeof(ei));
		uri_escape(acct, ea, sizeof(ea));
		snprintf(label, sizeof(label), "%s:%s", ei, ea);
		ulen = strlen(label) + strlen(b32) + strlen(ei) + 96;
		uri = malloc(ulen);
		if (uri == NULL)
			goto out;
		snprintf(uri, ulen, "otpauth://totp/%s?secret=%s&issuer=%s&algorithm=SHA1&digits=6&period=30",
		         label, b32, ei);
	}
	if (o->secret_file == NULL) {
		printf("Add this account to your authenticator app (scan, or type the secret):\n\n");
		if (!o->no_qr)
			print_qr(uri);
		printf("\n%s\nsecret: %s\n\n", uri, b32);
		fflush(stdout);
	}
	code = read_code(o, "code shown by the authenticator (activates the secret)");
	if (code == NULL)
		goto out;
	req = sg_request_new(SG_OP_TOTP_ENROLL);
	sg_set_bytes(req, "secret", secret, len);
	json_object_set_new(req, "code", json_string(code));
	rep = cli_call(c, req);
	if (reply_ok(rep)) {
		if (!c->json)
			printf("TOTP secret active for %s: from now on give a code with your password\n", acct);
		rv = 0;
	}
	json_decref(rep);
out:
	cli_logout(c);
	OPENSSL_cleanse(secret, sizeof(secret));
	if (b32 != NULL) {
		OPENSSL_cleanse(b32, b32len);
		free(b32);
	}
	if (uri != NULL)
		sg_free_secret_str(uri);
	sg_free_secret_str(code);
	return rv;
}

/* ---- seal admin: unlock, totp-reset ---- */

static int
cmd_admin(struct cli *c, const struct auth_opts *o, const char *op, const char *target)
{
	char *code = read_code(o, "your TOTP code");
	json_t *req, *rep;
	int rv = 1;

	if (code == NULL)
		return 1;
	if (login_with(c, code) != 0)
		goto out;
	req = sg_request_new(op);
	json_object_set_new(req, "user", json_string(target));
	rep = cli_call(c, req);
	if (reply_ok(rep)) {
		if (!c->json)
			printf("%s: done for %s\n", strcmp(op, SG_OP_USER_UNLOCK) == 0 ? "unlock" : "totp-reset",
			       target);
		rv = 0;
	}
	json_decref(rep);
	cli_logout(c);
out:
	sg_free_secret_str(code);
	return rv;
}

int
sealctl_auth(struct cli *c, const char *cmd, int argc, char **argv)
{
	struct auth_opts o;
	bool user_cmd = strcmp(cmd, "user") == 0 && argc >= 2 &&
	                (strcmp(argv[1], "totp-enroll") == 0 || strcmp(argv[1], "unlock") == 0 ||
	                 strcmp(argv[1], "totp-reset") == 0);

	if (strcmp(cmd, "login") != 0 && strcmp(cmd, "logout") != 0 &&
	    strcmp(cmd, "confirm") != 0 && !user_cmd)
		return -1;
	early_opts(c, argc, argv);
	if (user_cmd) {
		argc--;
		argv++;
	}
	if (parse_opts(argc, argv, &o) < 0)
		return 2;
	if (strcmp(cmd, "login") == 0 && o.nargs == 0)
		return cmd_login(c, &o);
	if (strcmp(cmd, "logout") == 0 && o.nargs == 0)
		return cmd_logout(c);
	if (strcmp(cmd, "confirm") == 0 && o.nargs == 0)
		return cmd_confirm(c, &o);
	if (user_cmd && strcmp(argv[0], "totp-enroll") == 0 && o.nargs == 0)
		return cmd_totp_enroll(c, &o);
	if (user_cmd && strcmp(argv[0], "unlock") == 0 && o.nargs == 1)
		return cmd_admin(c, &o, SG_OP_USER_UNLOCK, o.args[0]);
	if (user_cmd && strcmp(argv[0], "totp-reset") == 0 && o.nargs == 1)
		return cmd_admin(c, &o, SG_OP_TOTP_RESET, o.args[0]);
	fprintf(stderr, "sealctl: usage: sealctl login [--seconds N] [--code C|--code-file F] | logout |\n"
	        "       confirm [--list] [--id N] [--wait S] [--code C|--code-file F] |\n"
	        "       user totp-enroll [--secret-file F] [--no-qr] [--code C|--code-file F]\n"
	        "                        [--current-code C] |\n"
	        "       user unlock USER | user totp-reset USER\n");
	return 2;
}
