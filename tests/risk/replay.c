/*
 * Online and offline over the generator's months (docs/risk.md, "Alerts
 * online"): the records of an export are fed to one engine as the gateway
 * feeds its own, evaluated every STEP records (gw_risk_evaluate) and each
 * alert kept under the online engine's key (rule, first evidence seq,
 * subject; the last version of it wins, none is withdrawn), and to another
 * at once (gw_risk_finish, as `sealctl risk scan`). Exit 0 when both give
 * the same alerts (rule, subject, evidence, why), 1 with the differences.
 *   risk-replay POLICY EXPORT STEP
 */
#include "auditfmt.h"
#include "policy.h"
#include "risk.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

/* An alert as text: what the online store keeps of it. */
static char *
alert_text(const struct gw_risk_alert *a)
{
	json_t *o = json_object(), *s = json_array(), *p = json_array();
	char *t;

	for (size_t i = 0; i < a->n_seqs; i++)
		json_array_append_new(s, json_integer((json_int_t)a->seqs[i]));
	for (size_t i = 0; i < a->n_apps; i++)
		json_array_append_new(p, json_integer(a->apps[i]));
	json_object_set_new(o, "rule", json_string(a->rule));
	json_object_set_new(o, "subject", json_string(a->subject));
	json_object_set_new(o, "seqs", s);
	json_object_set_new(o, "applications", p);
	json_object_set_new(o, "why", json_string(a->why));
	t = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(o);
	return t;
}

static void
keep(json_t *online, const struct gw_risk_alert *al, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		char key[600], *t = alert_text(&al[i]);
		snprintf(key, sizeof(key), "%s|%" PRIu64 "|%s", al[i].rule,
		         al[i].n_seqs ? al[i].seqs[0] : 0, al[i].subject);
		json_object_set_new(online, key, json_string(t));
		free(t);
	}
}

static int
cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int
main(int argc, char **argv)
{
	struct gw_policy *pol = NULL;
	struct gw_risk *on, *off;
	const struct gw_risk_alert *al;
	size_t n, n_off, step, since = 0, n_on = 0, diffs = 0;
	json_t *online = json_object(), *v;
	const char *k;
	char err[512], *line = NULL, **a = NULL, **b = NULL;
	size_t llen = 0;
	FILE *f;

	if (argc != 4 || (step = strtoul(argv[3], NULL, 10)) == 0) {
		fprintf(stderr, "usage: risk-replay POLICY EXPORT STEP\n");
		return 2;
	}
	if (gw_policy_load(argv[1], &pol, err, sizeof(err)) != 0) {
		fprintf(stderr, "%s\n", err);
		return 2;
	}
	if ((f = fopen(argv[2], "re")) == NULL) {
		perror(argv[2]);
		return 2;
	}
	on = gw_risk_new(pol);
	off = gw_risk_new(pol);
	if (on == NULL || off == NULL)
		return 2;
	while (getline(&line, &llen, f) > 0) {
		json_t *o = json_loads(line, 0, NULL);
		const char *type = json_string_value(json_object_get(o, "type"));
		struct gw_audit_rowbuf buf;
		struct gw_audit_row row;

		if (type && !strcmp(type, "record") &&
		    gw_audit_row_from_json(o, &row, &buf, err, sizeof(err)) == 0) {
			if (gw_risk_add_record(on, &row) != 0 || gw_risk_add_record(off, &row) != 0)
				return 2;
			if (++since == step) {
				since = 0;
				if (gw_risk_evaluate(on, &al, &n) != 0)
					return 2;
				keep(online, al, n);
			}
		} else if (type && !strcmp(type, "checkpoint")) {
			uint64_t seq = (uint64_t)json_integer_value(json_object_get(o, "seq"));
			int64_t ts = json_integer_value(json_object_get(o, "ts_ns"));
			if (gw_risk_add_checkpoint(on, seq, ts) != 0 || gw_risk_add_checkpoint(off, seq, ts) != 0)
				return 2;
		}
		json_decref(o);
	}
	free(line);
	fclose(f);
	if (gw_risk_evaluate(on, &al, &n) != 0)
		return 2;
	keep(online, al, n);
	if (gw_risk_finish(off, &al, &n_off) != 0)
		return 2;
	n_on = json_object_size(online);
	a = calloc(n_on + 1, sizeof(*a));
	b = calloc(n_off + 1, sizeof(*b));
	n = 0;
	json_object_foreach(online, k, v)
		a[n++] = strdup(json_string_value(v));
	for (size_t i = 0; i < n_off; i++)
		b[i] = alert_text(&al[i]);
	qsort(a, n_on, sizeof(*a), cmp_str);
	qsort(b, n_off, sizeof(*b), cmp_str);
	for (size_t i = 0, j = 0; i < n_on || j < n_off;) {
		int c = i == n_on ? 1 : j == n_off ? -1 : strcmp(a[i], b[j]);
		if (c == 0) {
			i++, j++;
			continue;
		}
		printf("%s %s\n", c < 0 ? "online only: " : "offline only:", c < 0 ? a[i] : b[j]);
		diffs++;
		if (c < 0)
			i++;
		else
			j++;
	}
	printf("%zu alerts online, %zu offline, %zu differences (evaluated every %zu records)\n",
	       n_on, n_off, diffs, step);
	for (size_t i = 0; i < n_on; i++)
		free(a[i]);
	for (size_t i = 0; i < n_off; i++)
		free(b[i]);
	free(a);
	free(b);
	json_decref(online);
	gw_risk_free(&on);
	gw_risk_free(&off);
	gw_policy_unref(&pol);
	return diffs ? 1 : 0;
}
