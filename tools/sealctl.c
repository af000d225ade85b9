/*
 * sealctl: the command line of sealgate for applicants, approvers, seal
 * admins and auditors. Every command is one or more gateway requests
 * (docs/protocol.md); this file only parses arguments, asks for secrets
 * and prints replies.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <p11-kit/pkcs11.h>

#include "sealctl.h"
#include "protocol.h"
#include "sg-config.h"

static void
usage(FILE *f)
{
	fprintf(f,
"usage: sealctl [options] COMMAND [args]\n"
"\n"
"Commands:\n"
"  status                      gateway reachable, token present, seals\n"
"  seals                       the seals you may use, with certificate subject and state\n"
"  whoami                      the account you act as\n"
"  user add USER               (seal admin) give USER a password\n"
"  user passwd [USER]          change your password, or (seal admin) USER's\n"
"  user totp-enroll            new TOTP secret: otpauth:// URI and QR code; active after one code\n"
"  user unlock USER            (seal admin) end USER's lockout\n"
"  user totp-reset USER        (seal admin) remove USER's TOTP secret (lost phone)\n"
"  login [--seconds N]         password + code: open a signing window for apps that\n"
"                              cannot ask for a PIN (seals with mfa: out_of_band)\n"
"  logout                      close the signing window\n"
"  confirm [--wait S] [--list] confirm a waiting signature with a fresh code\n"
"  audit verify|query|export|checkpoint  the audit trail (sealctl audit --help)\n"
"  risk scan --from-export FILE [--json] [--no-verify]  the risk rules over an export\n"
"  report --period YYYY-MM --from-export FILE -o FILE   the month's audit report (HTML)\n"
"  device enroll --gateway tls://HOST:PORT --ca SITE-CA [--enroll tls://HOST:PORT]\n"
"        [--person P] [--wait S]  ask for this desktop's certificate (key 0600 in\n"
"                              ~/.config/sealgate); again, or --wait, to collect it\n"
"  device list|approve ID [--group GROUP]|revoke ID  (seal admin) the devices and their\n"
"      requests; a device's group is what a seal's policy devices: names\n"
"  alerts [--open] [--rule R] [--since UNIX-S]  (auditor, seal admin) the online alerts\n"
"  alerts ack|close ID -m COMMENT     (auditor) acknowledge or close one\n"
"\n"
"  apply --seal S --reason R [--type T] [--amount A] [--scope X] [--doc FILE]\n"
"        [--uses N] [--valid-for 7d]   apply to use a seal; --doc binds the use to\n"
"                              that document: uploaded to the gateway, where the\n"
"                              approvers read it and the stamp is checked\n"
"  doc put FILE | doc get SHA256 --out FILE  a document in the gateway\n"
"  stamp --seal S --in FILE.pdf --out OUT.pdf [--application ID]\n"
"        [--page N --at X,Y | --near TEXT] [--reason R] [--module PATH] [--tsa URL]\n"
"                              the seal on the page (over TEXT's box), signed\n"
"                              through the module (docs/stamp.md); --tsa URL (or\n"
"                              SEALGATE_TSA_URL): with an RFC 3161 timestamp\n"
"  verify FILE.pdf [--ca CA.pem] [--audit-cert CERT] [--export FILE]\n"
"        [--tsa-ca FILE]       every signature of the file, its approval receipt\n"
"                              and timestamp, offline; with an audit export, the\n"
"                              record in it\n"
"  list [--mine|--waiting|--all] your applications, those waiting for you, or all\n"
"  show ID                     one application with its approvals\n"
"  approve ID [--comment C]    approve the level waiting for you\n"
"  reject ID --comment C       reject it (ends the application)\n"
"  revoke ID                   withdraw (applicant) or cancel (seal admin)\n"
"  why                         why your last signature was refused\n"
"  policy check FILE           validate a policy file offline (file:line:column errors)\n"
"  policy explain [--policy FILE] [--seal S] [--user U] [--type T] [--amount A] [--scope X]\n"
"                              which rule applies, who approves, quotas, windows\n"
"  policy publish FILE         (seal admin) validate FILE at the gateway and store it as the\n"
"                              group's next policy version (password + code)\n"
"  policy show [--version N]   a published version's text (default: the newest)\n"
"  policy history              the published versions, newest first\n"
"\n"
"Options:\n"
"  -s, --socket PATH           gateway socket or tls://HOST:PORT (env SEALGATE_SOCKET;\n"
"                              else sealgate.conf's gateway; default %s/sealgated.sock)\n"
"  -u, --user ACCOUNT          act as ACCOUNT (env SEALGATE_USER) if the policy lets your\n"
"                              OS login do so\n"
"  -p, --password-file FILE    your own password: first line of FILE, - for stdin\n"
"                              (env SEALGATE_PASSWORD; otherwise asked on the terminal;\n"
"                              type your 6-digit code right after the password when the\n"
"                              action needs the second factor, or set SEALGATE_CODE)\n"
"      --new-password-file F   for user add/passwd: the new password (otherwise asked)\n"
"      --old-password-file F   for user passwd on your own account\n"
"  -j, --json                  print the gateway's replies as JSON\n"
"  -h, --help\n"
"\n"
"Exit status: 0 success, 1 refused or failed, 2 usage, 3 gateway unreachable.\n",
	SG_RUNSTATEDIR);
}

static char *
dn_of(const json_t *seal)
{
	uint8_t *der = NULL;
	size_t len = 0;
	char err[64], *out = NULL;
	const unsigned char *p;
	X509 *x;

	if (sg_get_bytes(seal, "cert", false, &der, &len, SG_MSG_MAX, err, sizeof(err)) < 0 || der == NULL)
		return strdup("(no certificate)");
	p = der;
	x = d2i_X509(NULL, &p, (long)len);
	if (x != NULL) {
		out = X509_NAME_oneline(X509_get_subject_name(x), NULL, 0);
		X509_free(x);
	}
	free(der);
	return out ? out : strdup("(unreadable certificate)");
}

static int
cmd_status(struct cli *c)
{
	json_t *rep = cli_call(c, sg_request_new(SG_OP_STATUS)), *seals;
	size_t i;
	json_t *s;
	bool present, management, store_down;
	int rv;
	char why[512];

	if (!sg_reply_is_ok(rep, NULL, NULL, NULL)) {
		cli_die_reply(rep);
		json_decref(rep);
		return 1;
	}
	present = json_is_true(json_object_get(rep, "token_present"));
	store_down = json_is_false(json_object_get(rep, "store_reachable"));
	management = json_is_true(json_object_get(rep, "management"));
	if (!c->json) {
		printf("gateway:  sealgated %s, instance %s, reachable at %s\n",
		       json_string_value(json_object_get(rep, "version")),
		       json_string_value(json_object_get(rep, "instance")), c->socket);
		/* Who the gateway takes this login for, without a password: a
		 * person without an account learns it here, not from a refused
		 * C_Login in an application. Not the exit status: status says
		 * whether the gateway and token work (tools/sandbox waits on it). */
		switch (cli_account_check(c, why, sizeof(why))) {
		case 0: printf("account:  %s\n", why); break;
		case 1: printf("account:  NONE: %s\n", why); break;
		default: printf("account:  not known: %s\n", why); break;
		}
		if (json_is_string(json_object_get(rep, "site"))) {
			size_t held = 0, all = json_array_size(json_object_get(rep, "seals"));

			json_array_foreach(json_object_get(rep, "seals"), i, s)
				held += json_is_true(json_object_get(s, "held"));
			if (management)
				printf("site:     %s, a management gateway: no token, no seal held here "
				       "(applications, approvals, audit and status for every site)\n",
				       json_string_value(json_object_get(rep, "site")));
			else
				printf("site:     %s, holding %zu of the policy's %zu seals\n",
				       json_string_value(json_object_get(rep, "site")), held, all);
		}
		if (management)
			printf("token:    none (backend_token: none)\n");
		else
			printf("token:    %s (%s)\n", json_string_value(json_object_get(rep, "token_label")),
			       present ? "present" : "NOT PRESENT");
		if (store_down)
			printf("store:    %s UNREACHABLE: %s (signing and every change are refused "
			       "until it answers)\n", json_string_value(json_object_get(rep, "store")),
			       json_string_value(json_object_get(rep, "store_error")));
		if (json_is_object(json_object_get(rep, "backend"))) {
			json_t *b = json_object_get(rep, "backend");
			printf("backend:  bound to the token with serial %s (%lld certificates)\n",
			       json_string_value(json_object_get(b, "serial")),
			       (long long)json_integer_value(json_object_get(b, "certificates")));
		}
		if (json_integer_value(json_object_get(rep, "policy_version")) > 0)
			printf("policy:   version %lld, sha256 %s\n",
			       (long long)json_integer_value(json_object_get(rep, "policy_version")),
			       json_string_value(json_object_get(rep, "policy")));
		else
			printf("policy:   sha256 %s (the policy_path file: no version published)\n",
			       json_string_value(json_object_get(rep, "policy")));
		if (json_is_object(json_object_get(rep, "audit"))) {
			json_t *a = json_object_get(rep, "audit");
			printf("audit:    durable by %s; %lld records in %lld commits since start "
			       "(largest batch %lld)\n",
			       json_string_value(json_object_get(a, "durability")),
			       (long long)json_integer_value(json_object_get(a, "records")),
			       (long long)json_integer_value(json_object_get(a, "commits")),
			       (long long)json_integer_value(json_object_get(a, "largest_batch")));
		}
		seals = json_object_get(rep, "seals");
		json_array_foreach(seals, i, s) {
			bool avail = json_is_true(json_object_get(s, "available"));
			/* Another site's seal (or any, at a management gateway): not
			 * unavailable, just signed with elsewhere. */
			if (json_is_false(json_object_get(s, "held"))) {
				printf("seal:     %-10s %-18s held by site %s: sign at that site's gateway\n",
				       json_string_value(json_object_get(s, "id")),
				       json_string_value(json_object_get(s, "label")),
				       json_string_value(json_object_get(s, "site")));
				continue;
			}
			printf("seal:     %-10s %-18s %s%s%s\n",
			       json_string_value(json_object_get(s, "id")),
			       json_string_value(json_object_get(s, "label")),
			       avail ? "available" : "UNAVAILABLE",
			       avail ? "" : ": ", avail ? "" : json_string_value(json_object_get(s, "reason")));
		}
	}
	/* A management gateway works without a token: that is not a fault. */
	rv = (present || management) && !store_down ? 0 : 1;
	json_decref(rep);
	return rv;
}

static int
cmd_seals(struct cli *c)
{
	json_t *req = sg_request_new(SG_OP_SEALS), *rep, *s;
	size_t i;

	if (c->user)
		json_object_set_new(req, "user", json_string(c->user));
	rep = cli_call(c, req);
	if (!sg_reply_is_ok(rep, NULL, NULL, NULL)) {
		cli_die_reply(rep);
		json_decref(rep);
		return 1;
	}
	if (!c->json) {
		printf("seals %s may use:\n", json_string_value(json_object_get(rep, "user")));
		json_array_foreach(json_object_get(rep, "seals"), i, s) {
			char *dn = dn_of(s);
			json_int_t uses = json_integer_value(json_object_get(s, "uses_left"));
			json_int_t quota = json_integer_value(json_object_get(s, "quota_left"));
			const char *kt = json_string_value(json_object_get(s, "key_type"));

			printf("  %-10s %-16s %-7s %4d bits  %s\n", json_string_value(json_object_get(s, "id")),
			       json_string_value(json_object_get(s, "label")), kt ? kt : "-",
			       (int)json_integer_value(json_object_get(s, "bits")),
			       json_is_true(json_object_get(s, "available")) ? "available" :
			       json_is_false(json_object_get(s, "held")) ? "elsewhere" : "UNAVAILABLE");
			if (json_is_string(json_object_get(s, "site")))
				printf("             site: %s (%s)\n", json_string_value(json_object_get(s, "site")),
				       json_is_true(json_object_get(s, "held")) ? "held by this gateway" :
				       "sign at that site's gateway");
			printf("             subject: %s\n", dn ? dn : "-");
			printf("             uses left: %s", uses < 0 ? "no limit" : "");
			if (uses >= 0)
				printf("%lld", (long long)uses);
			printf(", quota left: %s", quota < 0 ? "no limit" : "");
			if (quota >= 0)
				printf("%lld", (long long)quota);
			putchar('\n');
			free(dn);
		}
	}
	json_decref(rep);
	return 0;
}

static int
cmd_whoami(struct cli *c)
{
	json_t *req = sg_request_new(SG_OP_WHOAMI), *rep, *r;
	size_t i;

	if (c->user)
		json_object_set_new(req, "user", json_string(c->user));
	rep = cli_call(c, req);
	if (!sg_reply_is_ok(rep, NULL, NULL, NULL)) {
		cli_die_reply(rep);
		json_decref(rep);
		return 1;
	}
	if (!c->json) {
		printf("%s (%s), department %s, roles:", json_string_value(json_object_get(rep, "user")),
		       json_string_value(json_object_get(rep, "name")),
		       json_string_value(json_object_get(rep, "department")));
		json_array_foreach(json_object_get(rep, "roles"), i, r)
			printf(" %s", json_string_value(r));
		printf("; OS user %s\n", json_string_value(json_object_get(rep, "os_user")));
	}
	json_decref(rep);
	return 0;
}

static int
cmd_user(struct cli *c, int argc, char **argv, const char *newfile, const char *oldfile)
{
	const char *sub, *target;
	char *pw = NULL, *old = NULL;
	json_t *req, *rep;
	int rv = 1;

	if (argc < 1) {
		usage(stderr);
		return 2;
	}
	sub = argv[0];
	if (strcmp(sub, "add") == 0 && argc == 2)
		target = argv[1];
	else if (strcmp(sub, "passwd") == 0 && argc <= 2)
		target = argc == 2 ? argv[1] : NULL;
	else {
		usage(stderr);
		return 2;
	}
	if (cli_login(c) != 0)
		return 1;
	if (target == NULL) {
		json_t *w = cli_call(c, sg_request_new(SG_OP_WHOAMI));
		target = strdup(json_string_value(json_object_get(w, "user")));
		json_decref(w);
		old = cli_read_secret(oldfile, "current password");
		if (old == NULL)
			goto out;
	}
	pw = cli_read_secret(newfile, "new password");
	if (pw == NULL)
		goto out;
	req = sg_request_new(strcmp(sub, "add") == 0 ? SG_OP_USER_ADD : SG_OP_USER_PASSWD);
	json_object_set_new(req, "user", json_string(target));
	json_object_set_new(req, "password", json_string(pw));
	if (old)
		json_object_set_new(req, "old_password", json_string(old));
	rep = cli_call(c, req);
	if (sg_reply_is_ok(rep, NULL, NULL, NULL)) {
		if (!c->json)
			printf("password set for %s\n", target);
		rv = 0;
	} else
		cli_die_reply(rep);
	json_decref(rep);
out:
	sg_free_secret_str(pw);
	sg_free_secret_str(old);
	cli_logout(c);
	return rv;
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "user", required_argument, NULL, 'u' },
		{ "password-file", required_argument, NULL, 'p' },
		{ "new-password-file", required_argument, NULL, 'N' },
		{ "old-password-file", required_argument, NULL, 'O' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct cli c = { .fd = -1 };
	const char *newfile = NULL, *oldfile = NULL, *cmd;
	int ch, rv;

	c.socket = getenv("SEALGATE_SOCKET");
	if (c.socket != NULL && c.socket[0] != '\0')
		c.socket_from = "SEALGATE_SOCKET";
	else
		c.socket = sealctl_default_gateway(&c.socket_from);
	c.user = getenv("SEALGATE_USER");
	if (c.user == NULL || c.user[0] == '\0')
		c.user = sealctl_conf_user();
	/* "+": options stop at the command, so its own args are left alone. */
	while ((ch = getopt_long(argc, argv, "+s:u:p:jh", longopts, NULL)) != -1) {
		switch (ch) {
		case 's': c.socket = optarg; c.socket_from = "--socket"; break;
		case 'u': c.user = optarg; break;
		case 'p': c.password_file = optarg; break;
		case 'N': newfile = optarg; break;
		case 'O': oldfile = optarg; break;
		case 'j': c.json = true; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind >= argc) {
		usage(stderr);
		return 2;
	}
	cmd = argv[optind++];
	rv = sealctl_workflow(&c, cmd, argc - optind + 1, argv + optind - 1);
	if (rv >= 0)
		goto done;
	rv = sealctl_auth(&c, cmd, argc - optind + 1, argv + optind - 1);
	if (rv >= 0)
		goto done;
	rv = sealctl_device(&c, cmd, argc - optind + 1, argv + optind - 1);
	if (rv >= 0)
		goto done;
	rv = sealctl_doc(&c, cmd, argc - optind + 1, argv + optind - 1);
	if (rv >= 0)
		goto done;
	rv = sealctl_stamp(&c, cmd, argc - optind + 1, argv + optind - 1);
	if (rv >= 0)
		goto done;
	rv = sealctl_verify(cmd, argc - optind + 1, argv + optind - 1);
	if (rv >= 0)
		goto done;
	/* Options may also follow the command. */
	{
		int rest = argc - optind;
		char **rargv = argv + optind;
		int n = 0;
		char **pos = calloc((size_t)rest + 2, sizeof(char *));
		for (int i = 0; i < rest; i++) {
			if (strcmp(rargv[i], "--new-password-file") == 0 && i + 1 < rest)
				newfile = rargv[++i];
			else if (strcmp(rargv[i], "--old-password-file") == 0 && i + 1 < rest)
				oldfile = rargv[++i];
			else if ((strcmp(rargv[i], "--password-file") == 0 || strcmp(rargv[i], "-p") == 0) && i + 1 < rest)
				c.password_file = rargv[++i];
			else if (strcmp(rargv[i], "--json") == 0 || strcmp(rargv[i], "-j") == 0)
				c.json = true;
			else
				pos[n++] = rargv[i];
		}
		if (strcmp(cmd, "status") == 0 && n == 0)
			rv = cmd_status(&c);
		else if (strcmp(cmd, "seals") == 0 && n == 0)
			rv = cmd_seals(&c);
		else if (strcmp(cmd, "whoami") == 0 && n == 0)
			rv = cmd_whoami(&c);
		else if (strcmp(cmd, "user") == 0)
			rv = cmd_user(&c, n, pos, newfile, oldfile);
		else if (strcmp(cmd, "audit") == 0)
			rv = sealctl_audit(&c, n, pos);
		else if (strcmp(cmd, "risk") == 0)
			rv = sealctl_risk(n, pos, c.json);
		else if (strcmp(cmd, "report") == 0)
			rv = sealctl_report(n, pos);
		else if (strcmp(cmd, "alerts") == 0) {
			/* (argv[0] the command, like the others' groups) */
			memmove(pos + 1, pos, (size_t)n * sizeof(*pos));
			pos[0] = (char *)cmd;
			rv = sealctl_alerts(&c, n + 1, pos);
		}
		else {
			fprintf(stderr, "sealctl: unknown command or arguments: %s\n", cmd);
			usage(stderr);
			rv = 2;
		}
		free(pos);
	}
done:
	sealctl_device_done(&c);
	if (c.fd >= 0)
		close(c.fd);
	sg_free_secret_str(c.session);
	return rv;
}
