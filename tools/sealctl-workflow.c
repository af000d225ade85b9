/*
 * sealctl commands of the approval workflow (apply, list, show, approve,
 * reject, revoke, why) and of the policy (check, explain). Policy commands
 * given a file run offline on the same code the gateway decides with.
 */
#include "sealctl.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <openssl/evp.h>

#include "policy.h"
#include "protocol.h"

static void
print_time(const char *label, json_int_t t)
{
	char buf[64];
	time_t tt = (time_t)t;
	struct tm tm;

	gmtime_r(&tt, &tm);
	strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M UTC", &tm);
	printf("  %-12s %s\n", label, buf);
}

static const char *
str(const json_t *o, const char *k)
{
	const char *s = json_string_value(json_object_get(o, k));
	return s ? s : "";
}

static void
print_app(const json_t *a, bool full)
{
	json_t *amount = json_object_get(a, "amount"), *ap;
	size_t i;

	printf("#%lld  %-10s %-9s %-10s by %-8s  %s\n",
	       (long long)json_integer_value(json_object_get(a, "id")), str(a, "seal"),
	       str(a, "state"), str(a, "document_type"), str(a, "applicant"), str(a, "status"));
	if (!full)
		return;
	printf("  %-12s %s\n", "reason", str(a, "reason"));
	if (amount)
		printf("  %-12s %lld\n", "amount", (long long)json_integer_value(amount));
	if (*str(a, "business_scope"))
		printf("  %-12s %s\n", "scope", str(a, "business_scope"));
	if (json_is_object(json_object_get(a, "document"))) {
		json_t *d = json_object_get(a, "document");
		if (json_is_true(json_object_get(d, "stored")))
			printf("  %-12s %s, %lld bytes, sha256 %s (stored)\n", "document", str(d, "name"),
			       (long long)json_integer_value(json_object_get(d, "size")), str(d, "sha256"));
		else
			printf("  %-12s sha256 %s (not stored)\n", "document", str(d, "sha256"));
	} else if (*str(a, "doc_sha256")) {
		printf("  %-12s sha256 %s\n", "document", str(a, "doc_sha256"));
	}
	printf("  %-12s %lld of %lld\n", "uses left",
	       (long long)json_integer_value(json_object_get(a, "uses_left")),
	       (long long)json_integer_value(json_object_get(a, "uses_granted")));
	print_time("created", json_integer_value(json_object_get(a, "created")));
	print_time("valid until", json_integer_value(json_object_get(a, "valid_until")));
	json_array_foreach(json_object_get(a, "approvals"), i, ap) {
		char buf[64];
		time_t tt = (time_t)json_integer_value(json_object_get(ap, "at"));
		struct tm tm;
		gmtime_r(&tt, &tm);
		strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M UTC", &tm);
		printf("  level %lld: %s %s at %s%s%s\n",
		       (long long)json_integer_value(json_object_get(ap, "level")),
		       str(ap, "decision"), str(ap, "by"), buf,
		       *str(ap, "comment") ? ": " : "", str(ap, "comment"));
	}
}

/* Parses 90, 90s, 30m, 12h, 7d into seconds. */
static int
parse_duration(const char *s, int64_t *out)
{
	char *end;
	long long v = strtoll(s, &end, 10);
	int64_t mul = 1;

	if (end == s || v <= 0)
		return -1;
	if (*end == 'm')
		mul = 60;
	else if (*end == 'h')
		mul = 3600;
	else if (*end == 'd')
		mul = 86400;
	else if (*end != 's' && *end != '\0')
		return -1;
	if (*end && end[1] != '\0')
		return -1;
	*out = v * mul;
	return 0;
}

/* Sends req after logging in; prints the application in the reply. */
static int
app_request(struct cli *c, json_t *req)
{
	json_t *rep;
	int rv = 1;

	if (cli_login(c) != 0) {
		json_decref(req);
		return 1;
	}
	rep = cli_call(c, req);
	if (sg_reply_is_ok(rep, NULL, NULL, NULL)) {
		if (!c->json)
			print_app(json_object_get(rep, "application"), true);
		rv = 0;
	} else {
		cli_die_reply(rep);
	}
	json_decref(rep);
	cli_logout(c);
	return rv;
}

/* apply --doc FILE: the file uploaded to the gateway in this login, then
 * the application bound to its SHA-256. */
static int
apply_doc(struct cli *c, json_t *req, const char *path)
{
	uint8_t *data = NULL, md[32];
	size_t len = 0;
	json_t *rep;
	int rv = 1;

	if (sealctl_read_file(path, &data, &len) < 0) {
		json_decref(req);
		return 1;
	}
	if (cli_login(c) != 0) {
		json_decref(req);
		free(data);
		return 1;
	}
	if (sealctl_doc_upload(c, path, data, len, md) < 0) {
		json_decref(req);
		goto out;
	}
	sg_set_bytes(req, "doc_sha256", md, sizeof(md));
	rep = cli_call(c, req);
	if (sg_reply_is_ok(rep, NULL, NULL, NULL)) {
		if (!c->json)
			print_app(json_object_get(rep, "application"), true);
		rv = 0;
	} else {
		cli_die_reply(rep);
	}
	json_decref(rep);
out:
	free(data);
	cli_logout(c);
	return rv;
}

static int
cmd_apply(struct cli *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "seal", required_argument, NULL, 's' }, { "type", required_argument, NULL, 't' },
		{ "amount", required_argument, NULL, 'a' }, { "scope", required_argument, NULL, 'x' },
		{ "reason", required_argument, NULL, 'r' }, { "doc", required_argument, NULL, 'd' },
		{ "uses", required_argument, NULL, 'n' }, { "valid-for", required_argument, NULL, 'v' },
		{ NULL, 0, NULL, 0 },
	};
	json_t *req = sg_request_new(SG_OP_APPLY);
	const char *doc = NULL;
	int ch;

	optind = 0;  /* 0: glibc re-initialises getopt fully (permutation included) */
	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		char *end;
		long long v;
		int64_t secs;

		switch (ch) {
		case 's': json_object_set_new(req, "seal", json_string(optarg)); break;
		case 't': json_object_set_new(req, "document_type", json_string(optarg)); break;
		case 'x': json_object_set_new(req, "business_scope", json_string(optarg)); break;
		case 'r': json_object_set_new(req, "reason", json_string(optarg)); break;
		case 'a':
		case 'n':
			errno = 0;
			v = strtoll(optarg, &end, 10);
			if (errno || *end || v < 0) {
				fprintf(stderr, "sealctl: --%s needs a whole number, not \"%s\"\n",
				        ch == 'a' ? "amount" : "uses", optarg);
				json_decref(req);
				return 2;
			}
			json_object_set_new(req, ch == 'a' ? "amount" : "uses", json_integer(v));
			break;
		case 'v':
			if (parse_duration(optarg, &secs) < 0) {
				fprintf(stderr, "sealctl: --valid-for takes 3600, 90m, 12h or 7d, not \"%s\"\n", optarg);
				json_decref(req);
				return 2;
			}
			json_object_set_new(req, "valid_for", json_integer(secs));
			break;
		case 'd':
			/* Uploaded once logged in (apply_doc), so the approvers
			 * read the very bytes (docs/stamp.md). */
			doc = optarg;
			break;
		default:
			json_decref(req);
			return 2;
		}
	}
	if (json_object_get(req, "seal") == NULL || json_object_get(req, "reason") == NULL) {
		fprintf(stderr, "sealctl: apply needs --seal and --reason\n");
		json_decref(req);
		return 2;
	}
	if (doc != NULL)
		return apply_doc(c, req, doc);
	return app_request(c, req);
}

static int
cmd_decide(struct cli *c, const char *op, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "comment", required_argument, NULL, 'c' }, { NULL, 0, NULL, 0 },
	};
	json_t *req = sg_request_new(op);
	char *end;
	long long id;
	int ch;

	optind = 0;  /* 0: glibc re-initialises getopt fully (permutation included) */
	while ((ch = getopt_long(argc, argv, "c:", opts, NULL)) != -1) {
		if (ch != 'c') {
			json_decref(req);
			return 2;
		}
		json_object_set_new(req, "comment", json_string(optarg));
	}
	if (optind != argc - 1 || (id = strtoll(argv[optind], &end, 10)) <= 0 || *end) {
		fprintf(stderr, "sealctl: %s needs one application number\n", op);
		json_decref(req);
		return 2;
	}
	json_object_set_new(req, "id", json_integer(id));
	return app_request(c, req);
}

static int
cmd_list(struct cli *c, int argc, char **argv)
{
	const char *which = "mine";
	long long before = 0;
	char *end;
	json_t *req, *rep, *a, *next;
	size_t i;
	int rv = 1;

	for (int k = 1; k < argc; k++) {
		if (strcmp(argv[k], "--waiting") == 0)
			which = "waiting";
		else if (strcmp(argv[k], "--all") == 0)
			which = "all";
		else if (strcmp(argv[k], "--mine") == 0)
			which = "mine";
		else if (strcmp(argv[k], "--before") == 0 && k + 1 < argc &&
		         (before = strtoll(argv[k + 1], &end, 10)) > 0 && *end == '\0')
			k++;
		else {
			fprintf(stderr, "sealctl: list takes --mine, --waiting or --all, and --before ID\n");
			return 2;
		}
	}
	if (cli_login(c) != 0)
		return 1;
	req = sg_request_new(SG_OP_LIST);
	json_object_set_new(req, "which", json_string(which));
	if (before > 0)
		json_object_set_new(req, "before", json_integer(before));
	rep = cli_call(c, req);
	if (sg_reply_is_ok(rep, NULL, NULL, NULL)) {
		next = json_object_get(rep, "next");
		if (!c->json) {
			json_array_foreach(json_object_get(rep, "applications"), i, a)
				print_app(a, false);
			if (json_array_size(json_object_get(rep, "applications")) == 0)
				printf("no applications (%s)%s\n", which, next ? " in this page" : "");
			if (next)
				printf("more: sealctl list --%s --before %lld\n", which,
				       (long long)json_integer_value(next));
		}
		rv = 0;
	} else {
		cli_die_reply(rep);
	}
	json_decref(rep);
	cli_logout(c);
	return rv;
}

static int
cmd_why(struct cli *c)
{
	json_t *rep;
	int rv = 1;
	char missing[512];

	/* Without an account there is no refusal of ours to explain, and no
	 * password to ask for: the missing account is the answer. */
	if (cli_account_check(c, missing, sizeof(missing)) == 1) {
		fprintf(stderr, "sealctl: %s\n", missing);
		return 1;
	}
	if (cli_login(c) != 0)
		return 1;
	rep = cli_call(c, sg_request_new(SG_OP_WHY));
	if (sg_reply_is_ok(rep, NULL, NULL, NULL)) {
		if (!c->json) {
			if (json_object_get(rep, "reason"))
				printf("%s\n", str(rep, "reason"));
			else
				printf("no refusal recorded for you since the gateway started\n");
		}
		rv = 0;
	} else {
		cli_die_reply(rep);
	}
	json_decref(rep);
	cli_logout(c);
	return rv;
}

static int
cmd_policy(struct cli *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "policy", required_argument, NULL, 'p' }, { "seal", required_argument, NULL, 's' },
		{ "user", required_argument, NULL, 'u' }, { "type", required_argument, NULL, 't' },
		{ "amount", required_argument, NULL, 'a' }, { "scope", required_argument, NULL, 'x' },
		{ NULL, 0, NULL, 0 },
	};
	const char *file = NULL, *seal = NULL, *user = NULL, *type = NULL, *scope = NULL;
	long long amount = -1;
	struct gw_policy *pol = NULL;
	char err[1024];
	int ch, rv = 1;

	if (argc < 2) {
		fprintf(stderr, "sealctl: policy check FILE | policy explain [--policy FILE] --seal S ...\n");
		return 2;
	}
	if (strcmp(argv[1], "publish") == 0 || strcmp(argv[1], "show") == 0 ||
	    strcmp(argv[1], "history") == 0) {
		rv = sealctl_policy_store(c, argc, argv);
		if (rv == 2)
			fprintf(stderr, "sealctl: policy publish FILE | policy show [--version N] | "
			        "policy history\n");
		return rv;
	}
	if (strcmp(argv[1], "check") == 0) {
		if (argc != 3) {
			fprintf(stderr, "sealctl: policy check FILE\n");
			return 2;
		}
		if (gw_policy_load(argv[2], &pol, err, sizeof(err)) < 0) {
			fprintf(stderr, "%s\n", err);
			return 1;
		}
		printf("%s: valid (%zu departments, %zu people, %zu seals)\n", argv[2],
		       pol->n_departments, pol->n_people, pol->n_seals);
		gw_policy_unref(&pol);
		return 0;
	}
	if (strcmp(argv[1], "explain") != 0) {
		fprintf(stderr, "sealctl: policy check | explain | publish | show | history\n");
		return 2;
	}
	optind = 0;
	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (ch) {
		case 'p': file = optarg; break;
		case 's': seal = optarg; break;
		case 'u': user = optarg; break;
		case 't': type = optarg; break;
		case 'x': scope = optarg; break;
		case 'a': amount = strtoll(optarg, NULL, 10); break;
		default: return 2;
		}
	}
	if (file != NULL) {
		/* Offline: the same evaluation code as the gateway, on a file. */
		const struct gw_seal *s = NULL;
		const struct gw_person *who = NULL;
		struct gw_use_case uc = { .document_type = type, .business_scope = scope,
		                          .has_amount = amount >= 0, .amount = amount };
		char *text;

		if (gw_policy_load(file, &pol, err, sizeof(err)) < 0) {
			fprintf(stderr, "%s\n", err);
			return 1;
		}
		if (seal && (s = gw_policy_seal(pol, seal)) == NULL)
			fprintf(stderr, "sealctl: no seal \"%s\" in %s\n", seal, file);
		else if (user && (who = gw_policy_person(pol, user)) == NULL)
			fprintf(stderr, "sealctl: no person \"%s\" in %s\n", user, file);
		else if ((text = gw_policy_explain(pol, s, who,
		                                   type || scope || amount >= 0 ? &uc : NULL,
		                                   time(NULL))) != NULL) {
			fputs(text, stdout);
			free(text);
			rv = 0;
		}
		gw_policy_unref(&pol);
		return rv;
	}
	{
		json_t *req = sg_request_new(SG_OP_EXPLAIN), *rep;
		if (seal)
			json_object_set_new(req, "seal", json_string(seal));
		if (user)
			json_object_set_new(req, "user", json_string(user));
		if (type)
			json_object_set_new(req, "document_type", json_string(type));
		if (scope)
			json_object_set_new(req, "business_scope", json_string(scope));
		if (amount >= 0)
			json_object_set_new(req, "amount", json_integer(amount));
		if (cli_login(c) != 0) {
			json_decref(req);
			return 1;
		}
		rep = cli_call(c, req);
		if (sg_reply_is_ok(rep, NULL, NULL, NULL)) {
			if (!c->json)
				fputs(str(rep, "text"), stdout);
			rv = 0;
		} else {
			cli_die_reply(rep);
		}
		json_decref(rep);
		cli_logout(c);
	}
	return rv;
}

int
sealctl_workflow(struct cli *c, const char *cmd, int argc, char **argv)
{
	if (strcmp(cmd, "apply") == 0)
		return cmd_apply(c, argc, argv);
	if (strcmp(cmd, "approve") == 0)
		return cmd_decide(c, SG_OP_APPROVE, argc, argv);
	if (strcmp(cmd, "reject") == 0)
		return cmd_decide(c, SG_OP_REJECT, argc, argv);
	if (strcmp(cmd, "revoke") == 0)
		return cmd_decide(c, SG_OP_REVOKE, argc, argv);
	if (strcmp(cmd, "show") == 0)
		return cmd_decide(c, SG_OP_SHOW, argc, argv);
	if (strcmp(cmd, "list") == 0)
		return cmd_list(c, argc, argv);
	if (strcmp(cmd, "why") == 0)
		return cmd_why(c);
	if (strcmp(cmd, "policy") == 0)
		return cmd_policy(c, argc, argv);
	return -1;
}
