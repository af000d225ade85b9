/*
 * The policy's `risk:` section: every parameter of the risk rules, each
 * with a default (docs/risk.md), read with the policy's strict YAML
 * accessors so a typo is refused with its line like the rest of the file.
 */
#include "risk.h"
#include "yamlutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void
gw_risk_policy_defaults(struct gw_risk_policy *rp)
{
	memset(rp, 0, sizeof(*rp));
	rp->work_days = 0x1f;                 /* Monday to Friday */
	rp->work_from_min = 7 * 60;
	rp->work_to_min = 21 * 60;
	rp->splitting.window_hours = 72;
	rp->splitting.min_applications = 2;
	rp->splitting.near_pct = 50;
	rp->rubber_stamp.fast_seconds = 30;
	rp->rubber_stamp.approve_pct = 97;
	rp->rubber_stamp.min_decisions = 30;
	rp->volume.weeks = 8;
	rp->volume.min_weeks = 3;
	rp->volume.k = 6;
	rp->volume.min_signatures = 20;
	rp->history.min_signatures = 30;
	rp->history.min_days = 14;
	rp->history.hour_margin = 2;
	rp->dormant.days = 45;
	rp->probing.window_seconds = 600;
	rp->probing.refusals = 10;
	rp->probing.wrong_credentials = 5;
	rp->probing.probes = 5;
	rp->quota.warn_pct = 80;
	rp->quota.high_pct = 95;
	rp->approvals.expiring_hours = 24;
	rp->log.checkpoint_max_seconds = 900;
	rp->log.clock_back_seconds = 2;
}

struct param {
	const char *key;
	int64_t min, max;
	size_t off;
};

#define P(sect, field, lo, hi) \
	{ #field, lo, hi, offsetof(struct gw_risk_policy, sect.field) }

static const struct param splitting[] = {
	P(splitting, window_hours, 1, 24 * 366),
	P(splitting, min_applications, 2, 1000),
	P(splitting, near_pct, 1, 100),
	{ NULL, 0, 0, 0 } };
static const struct param rubber_stamp[] = {
	P(rubber_stamp, fast_seconds, 1, 86400),
	P(rubber_stamp, approve_pct, 1, 100),
	P(rubber_stamp, min_decisions, 1, 1000000),
	{ NULL, 0, 0, 0 } };
static const struct param volume[] = {
	P(volume, weeks, 1, 104),
	P(volume, min_weeks, 1, 104),
	P(volume, k, 1, 1000),
	P(volume, min_signatures, 1, 1000000),
	{ NULL, 0, 0, 0 } };
static const struct param history[] = {
	P(history, min_signatures, 1, 1000000),
	P(history, min_days, 0, 3660),
	P(history, hour_margin, 0, 11),
	{ NULL, 0, 0, 0 } };
static const struct param dormant[] = {
	P(dormant, days, 1, 3660),
	{ NULL, 0, 0, 0 } };
static const struct param probing[] = {
	P(probing, window_seconds, 1, 86400),
	P(probing, refusals, 1, 1000000),
	P(probing, wrong_credentials, 1, 1000000),
	P(probing, probes, 1, 1000000),
	{ NULL, 0, 0, 0 } };
static const struct param quota[] = {
	P(quota, warn_pct, 1, 100),
	P(quota, high_pct, 1, 100),
	{ NULL, 0, 0, 0 } };
static const struct param approvals[] = {
	P(approvals, expiring_hours, 1, 24 * 90),
	{ NULL, 0, 0, 0 } };
static const struct param logp[] = {
	P(log, checkpoint_max_seconds, 1, 86400 * 31),
	P(log, clock_back_seconds, 0, 86400),
	{ NULL, 0, 0, 0 } };
#undef P

static const struct {
	const char *name;
	const struct param *params;
} sections[] = {
	{ "splitting", splitting }, { "rubber_stamp", rubber_stamp }, { "volume", volume },
	{ "history", history }, { "dormant", dormant }, { "probing", probing },
	{ "quota", quota }, { "approvals", approvals }, { "log", logp },
};
#define N_SECTIONS (sizeof(sections) / sizeof(sections[0]))

static int
parse_section(struct gw_yaml *y, yaml_node_t *m, const char *name, const struct param *ps,
              struct gw_risk_policy *rp)
{
	const char *keys[8];
	char what[64];
	size_t n = 0;

	for (; ps[n].key != NULL; n++)
		keys[n] = ps[n].key;
	keys[n] = NULL;
	snprintf(what, sizeof(what), "risk.%s", name);
	if (gw_yaml_map_check(y, m, what, keys) < 0)
		return -1;
	for (size_t i = 0; i < n; i++) {
		yaml_node_t *v = gw_yaml_map_get(y, m, ps[i].key);
		char w[96];
		if (v == NULL)
			continue;
		snprintf(w, sizeof(w), "risk.%s.%s", name, ps[i].key);
		if (gw_yaml_int(y, v, w, ps[i].min, ps[i].max,
		                (int64_t *)((char *)rp + ps[i].off)) < 0)
			return -1;
	}
	return 0;
}

/* "HH:MM" (24:00 allowed as an end) -> minutes. */
static int
hhmm(struct gw_yaml *y, yaml_node_t *n, const char *what, uint16_t *out)
{
	const char *s = gw_yaml_scalar(n);
	unsigned h, m;
	char tail;

	if (s == NULL || sscanf(s, "%2u:%2u%c", &h, &m, &tail) != 2 || strlen(s) != 5 ||
	    m > 59 || h > 24 || (h == 24 && m != 0))
		return gw_yaml_errf(y, n, "%s must be \"HH:MM\"", what);
	*out = (uint16_t)(h * 60 + m);
	return 0;
}

static int
parse_hours(struct gw_yaml *y, yaml_node_t *m, struct gw_risk_policy *rp)
{
	static const char *const keys[] = { "days", "from", "to", NULL };
	static const char *const names[] = { "mon", "tue", "wed", "thu", "fri", "sat", "sun" };
	yaml_node_t *n;

	if (gw_yaml_map_check(y, m, "risk.working_hours", keys) < 0)
		return -1;
	if ((n = gw_yaml_map_get(y, m, "days")) != NULL) {
		char **days = NULL;
		size_t nd = 0;
		if (gw_yaml_strlist(y, n, "risk.working_hours.days", &days, &nd) < 0)
			return -1;
		rp->work_days = 0;
		for (size_t i = 0; i < nd; i++) {
			size_t d = 0;
			while (d < 7 && strcmp(days[i], names[d]) != 0)
				d++;
			if (d == 7) {
				gw_yaml_errf(y, n, "risk.working_hours.days: \"%s\" is not mon … sun", days[i]);
				gw_yaml_strlist_free(&days, &nd);
				return -1;
			}
			rp->work_days |= (uint8_t)(1u << d);
		}
		gw_yaml_strlist_free(&days, &nd);
	}
	if ((n = gw_yaml_map_get(y, m, "from")) != NULL &&
	    hhmm(y, n, "risk.working_hours.from", &rp->work_from_min) < 0)
		return -1;
	if ((n = gw_yaml_map_get(y, m, "to")) != NULL &&
	    hhmm(y, n, "risk.working_hours.to", &rp->work_to_min) < 0)
		return -1;
	if (rp->work_from_min >= rp->work_to_min)
		return gw_yaml_errf(y, m, "risk.working_hours: from must be before to");
	return 0;
}

int
gw_risk_policy_parse(struct gw_yaml *y, yaml_node_t *node, struct gw_risk_policy **out)
{
	const char *keys[N_SECTIONS + 2];
	struct gw_risk_policy *rp = calloc(1, sizeof(*rp));
	yaml_node_t *n;
	int rv = -1;

	*out = NULL;
	if (rp == NULL)
		return gw_yaml_errf(y, NULL, "out of memory");
	gw_risk_policy_defaults(rp);
	if (node == NULL)
		goto done;
	for (size_t i = 0; i < N_SECTIONS; i++)
		keys[i] = sections[i].name;
	keys[N_SECTIONS] = "working_hours";
	keys[N_SECTIONS + 1] = NULL;
	if (gw_yaml_map_check(y, node, "risk", keys) < 0)
		goto out;
	for (size_t i = 0; i < N_SECTIONS; i++)
		if ((n = gw_yaml_map_get(y, node, sections[i].name)) != NULL &&
		    parse_section(y, n, sections[i].name, sections[i].params, rp) < 0)
			goto out;
	if ((n = gw_yaml_map_get(y, node, "working_hours")) != NULL && parse_hours(y, n, rp) < 0)
		goto out;
	if (rp->quota.warn_pct >= rp->quota.high_pct) {
		gw_yaml_errf(y, gw_yaml_map_get(y, node, "quota"),
		             "risk.quota: warn_pct must be below high_pct");
		goto out;
	}
	if (rp->volume.min_weeks > rp->volume.weeks) {
		gw_yaml_errf(y, gw_yaml_map_get(y, node, "volume"),
		             "risk.volume: min_weeks cannot exceed weeks");
		goto out;
	}
done:
	*out = rp;
	rp = NULL;
	rv = 0;
out:
	free(rp);
	return rv;
}

void
gw_risk_policy_free(struct gw_risk_policy **rp)
{
	if (rp == NULL)
		return;
	free(*rp);
	*rp = NULL;
}
