/*
 * sealctl policy publish|show|history: the group's policy as versions in
 * the gateway's store (docs/policy.md, "One policy for the group"). The
 * gateway validates what is published; this file reads the file, asks for
 * the password and prints replies.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sealctl.h"
#include "policystore.h"
#include "protocol.h"
#include "yamlutil.h"

static void
when(json_int_t t, char *buf, size_t len)
{
	time_t tt = (time_t)t;
	struct tm tm;

	gmtime_r(&tt, &tm);
	strftime(buf, len, "%Y-%m-%d %H:%M:%S UTC", &tm);
}

static int
call_ok(struct cli *c, json_t *req, json_t **rep)
{
	*rep = cli_call(c, req);
	if (sg_reply_is_ok(*rep, NULL, NULL, NULL))
		return 0;
	cli_die_reply(*rep);
	return -1;
}

static int
cmd_publish(struct cli *c, const char *path)
{
	uint8_t *buf = NULL;
	size_t len = 0;
	char err[512];
	json_t *req, *rep = NULL;
	int rv = 1;

	if (gw_yaml_read_file(path, &buf, &len, err, sizeof(err)) < 0) {
		fprintf(stderr, "sealctl: %s\n", err);
		return 1;
	}
	if (len > GW_POLICY_PUBLISH_MAX) {
		fprintf(stderr, "sealctl: %s: %zu bytes; a published policy holds at most %u\n", path,
		        len, GW_POLICY_PUBLISH_MAX);
		goto out;
	}
	/* A seal admin's change: password and a current code. */
	if (cli_login(c) != 0)
		goto out;
	req = sg_request_new(SG_OP_POLICY_PUBLISH);
	sg_set_bytes(req, "policy", buf, len);
	json_object_set_new(req, "name", json_string(path));
	if (call_ok(c, req, &rep) == 0) {
		if (!c->json)
			printf("published %s as policy version %lld (sha256 %s)\n", path,
			       (long long)json_integer_value(json_object_get(rep, "version")),
			       json_string_value(json_object_get(rep, "sha256")));
		rv = 0;
	}
	json_decref(rep);
	cli_logout(c);
out:
	free(buf);
	return rv;
}

static int
cmd_show(struct cli *c, long long version)
{
	json_t *req, *rep = NULL;
	uint8_t *text = NULL;
	size_t len = 0;
	char err[128], t[40];
	int rv = 1;

	if (cli_login(c) != 0)
		return 1;
	req = sg_request_new(SG_OP_POLICY_SHOW);
	if (version > 0)
		json_object_set_new(req, "version", json_integer(version));
	if (call_ok(c, req, &rep) == 0 &&
	    sg_get_bytes(rep, "text", true, &text, &len, SG_MSG_MAX, err, sizeof(err)) == 0) {
		if (!c->json) {
			when(json_integer_value(json_object_get(rep, "published")), t, sizeof(t));
			/* The header goes to stderr: stdout is the policy's bytes. */
			fprintf(stderr, "policy version %lld, sha256 %s, published by %s at %s%s\n",
			        (long long)json_integer_value(json_object_get(rep, "version")),
			        json_string_value(json_object_get(rep, "sha256")),
			        json_string_value(json_object_get(rep, "author")), t,
			        json_is_true(json_object_get(rep, "in_force")) ? " (in force)" : "");
			fwrite(text, 1, len, stdout);
		}
		rv = 0;
	}
	free(text);
	json_decref(rep);
	cli_logout(c);
	return rv;
}

static int
cmd_history(struct cli *c)
{
	json_t *rep = NULL, *v;
	json_int_t in_force;
	size_t i;
	char t[40];
	int rv = 1;

	if (cli_login(c) != 0)
		return 1;
	if (call_ok(c, sg_request_new(SG_OP_POLICY_HISTORY), &rep) == 0) {
		in_force = json_integer_value(json_object_get(rep, "in_force"));
		if (!c->json && json_array_size(json_object_get(rep, "versions")) == 0)
			printf("no policy version is published: the gateway runs its policy_path file\n");
		json_array_foreach(json_object_get(rep, "versions"), i, v) {
			json_int_t n = json_integer_value(json_object_get(v, "version"));

			if (c->json)
				continue;
			when(json_integer_value(json_object_get(v, "published")), t, sizeof(t));
			printf("%6lld  %s  %-16s %s%s\n", (long long)n,
			       json_string_value(json_object_get(v, "sha256")),
			       json_string_value(json_object_get(v, "author")), t,
			       n == in_force ? "  in force" : "");
		}
		rv = 0;
	}
	json_decref(rep);
	cli_logout(c);
	return rv;
}

int
sealctl_policy_store(struct cli *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "version", required_argument, NULL, 'v' }, { NULL, 0, NULL, 0 },
	};
	long long version = 0;
	char *end;
	int ch;

	if (strcmp(argv[1], "publish") == 0 && argc == 3)
		return cmd_publish(c, argv[2]);
	if (strcmp(argv[1], "history") == 0 && argc == 2)
		return cmd_history(c);
	if (strcmp(argv[1], "show") == 0) {
		optind = 0;
		while ((ch = getopt_long(argc - 1, argv + 1, "", opts, NULL)) != -1) {
			if (ch != 'v')
				return 2;
			version = strtoll(optarg, &end, 10);
			if (*end != '\0' || version < 1) {
				fprintf(stderr, "sealctl: --version N: a version number from 1\n");
				return 2;
			}
		}
		if (optind != argc - 1)
			return 2;
		return cmd_show(c, version);
	}
	return 2;
}
