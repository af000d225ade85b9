/*
 * sealctl alerts [--open] [--rule RULE] [--since UNIX-SECONDS] [--json]
 * and sealctl alerts ack|close ID -m COMMENT (docs/risk.md, "Alerts
 * online"): the online risk rules' alerts as the gateway stores them.
 */
#include "sealctl.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage_text[] =
	"sealctl alerts [--open] [--rule RULE] [--since UNIX-SECONDS] [--json]\n"
	"sealctl alerts ack|close ID -m COMMENT\n";

static int
usage_err(void)
{
	fputs(usage_text, stderr);
	return 2;
}

/* With --json the command's reply alone, not the logout's too. */
static void
logout(struct cli *c)
{
	bool was = c->json;

	c->json = false;
	cli_logout(c);
	c->json = was;
}

static bool
parse_id(const char *s, long long *out)
{
	char *end = NULL;
	long long v = strtoll(s, &end, 10);

	if (end == s || *end != '\0' || v < 1)
		return false;
	*out = v;
	return true;
}

static int
cmd_list(struct cli *c, bool open_only, const char *rule, long long since)
{
	json_t *req = sg_request_new(SG_OP_ALERTS), *rep, *arr, *a;
	size_t i;
	int rv = 1;

	if (cli_login(c) != 0) {
		json_decref(req);
		return 1;
	}
	if (open_only)
		json_object_set_new(req, "open", json_true());
	if (rule)
		json_object_set_new(req, "rule", json_string(rule));
	if (since > 0)
		json_object_set_new(req, "since", json_integer(since));
	rep = cli_call(c, req);
	if (!sg_reply_is_ok(rep, NULL, NULL, NULL)) {
		cli_die_reply(rep);
		goto out;
	}
	arr = json_object_get(rep, "alerts");
	if (!c->json) {
		json_t *eng = json_object_get(rep, "engine");
		if (!json_is_true(json_object_get(eng, "running")))
			printf("WARNING: the gateway's online rules are not running: no new alert is "
			       "raised (see its log)\n");
		printf("%-6s %-20s %-24s %-6s %-12s %s\n", "ID", "TIME", "RULE", "SEV", "STATE", "WHY");
		json_array_foreach(arr, i, a) {
			printf("%-6lld %-20s %-24s %-6s %-12s %s\n",
			       (long long)json_integer_value(json_object_get(a, "id")),
			       json_string_value(json_object_get(a, "time")),
			       json_string_value(json_object_get(a, "rule")),
			       json_string_value(json_object_get(a, "severity")),
			       json_string_value(json_object_get(a, "state")),
			       json_string_value(json_object_get(a, "why")));
			if (json_is_string(json_object_get(a, "state_comment")))
				printf("       %s by %s: %s\n", json_string_value(json_object_get(a, "state")),
				       json_string_value(json_object_get(a, "state_by")),
				       json_string_value(json_object_get(a, "state_comment")));
		}
	}
	rv = 0;
out:
	json_decref(rep);
	logout(c);
	return rv;
}

static int
cmd_change(struct cli *c, bool close, long long id, const char *comment)
{
	json_t *req = sg_request_new(close ? SG_OP_ALERT_CLOSE : SG_OP_ALERT_ACK), *rep;
	int rv = 1;

	if (cli_login(c) != 0) {
		json_decref(req);
		return 1;
	}
	json_object_set_new(req, "id", json_integer(id));
	json_object_set_new(req, "comment", json_string(comment));
	rep = cli_call(c, req);
	if (!sg_reply_is_ok(rep, NULL, NULL, NULL)) {
		cli_die_reply(rep);
	} else {
		if (!c->json)
			printf("alert %lld: %s\n", id, json_string_value(json_object_get(rep, "state")));
		rv = 0;
	}
	json_decref(rep);
	logout(c);
	return rv;
}

int
sealctl_alerts(struct cli *c, int argc, char **argv)
{
	bool open_only = false;
	const char *rule = NULL, *comment = NULL;
	long long since = 0, id = 0;
	int i = 1;

	if (argc >= 2 && (strcmp(argv[1], "ack") == 0 || strcmp(argv[1], "close") == 0)) {
		bool close = strcmp(argv[1], "close") == 0;
		if (argc != 5 || !parse_id(argv[2], &id) ||
		    (strcmp(argv[3], "-m") != 0 && strcmp(argv[3], "--comment") != 0))
			return usage_err();
		comment = argv[4];
		if (comment[0] == '\0') {
			fprintf(stderr, "sealctl: an alert is %s with a comment (-m)\n",
			        close ? "closed" : "acknowledged");
			return 2;
		}
		return cmd_change(c, close, id, comment);
	}
	for (; i < argc; i++) {
		if (strcmp(argv[i], "--open") == 0)
			open_only = true;
		else if (strcmp(argv[i], "--rule") == 0 && i + 1 < argc)
			rule = argv[++i];
		else if (strcmp(argv[i], "--since") == 0 && i + 1 < argc) {
			char *end = NULL;
			since = strtoll(argv[++i], &end, 10);
			if (end == argv[i] || *end != '\0' || since < 0)
				return usage_err();
		} else
			return usage_err();
	}
	return cmd_list(c, open_only, rule, since);
}
