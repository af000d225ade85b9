/*
 * The policy's risk: section (gateway/risk/riskpolicy.c) and the robust
 * baseline (baseline.c): every parameter has its documented default, a
 * value is read into its own field, an unknown key or a value out of range
 * is refused with its line, and median / MAD behave on small histories.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy.h"
#include "risk.h"

static const char base[] =
	"version: 1\n"
	"organization:\n"
	"  name: T\n"
	"  timezone: Asia/Shanghai\n"
	"  departments: [ { id: hq, name: HQ } ]\n"
	"  people: [ { id: a, name: A, department: hq, roles: [employee] } ]\n"
	"seals: []\n";

static int
load(const char *risk, struct gw_policy **p, char *err, size_t errlen)
{
	char buf[4096];

	snprintf(buf, sizeof(buf), "%s%s", base, risk);
	return gw_policy_parse("p.yaml", (const uint8_t *)buf, strlen(buf), p, err, errlen);
}

Test(riskpolicy, defaults_without_a_risk_key)
{
	struct gw_policy *p = NULL;
	char err[512] = "";

	cr_assert_eq(load("", &p, err, sizeof(err)), 0, "%s", err);
	cr_assert_not_null(p->risk);
	cr_expect_eq(p->risk->work_days, 0x1f);
	cr_expect_eq(p->risk->work_from_min, 7 * 60);
	cr_expect_eq(p->risk->work_to_min, 21 * 60);
	cr_expect_eq(p->risk->splitting.window_hours, 72);
	cr_expect_eq(p->risk->splitting.near_pct, 50);
	cr_expect_eq(p->risk->rubber_stamp.fast_seconds, 30);
	cr_expect_eq(p->risk->rubber_stamp.approve_pct, 97);
	cr_expect_eq(p->risk->rubber_stamp.min_decisions, 30);
	cr_expect_eq(p->risk->volume.k, 6);
	cr_expect_eq(p->risk->volume.weeks, 8);
	cr_expect_eq(p->risk->volume.min_weeks, 3);
	cr_expect_eq(p->risk->dormant.days, 45);
	cr_expect_eq(p->risk->probing.refusals, 10);
	cr_expect_eq(p->risk->quota.warn_pct, 80);
	cr_expect_eq(p->risk->quota.high_pct, 95);
	cr_expect_eq(p->risk->log.checkpoint_max_seconds, 900);
	gw_policy_unref(&p);
}

Test(riskpolicy, values_are_read)
{
	struct gw_policy *p = NULL;
	char err[512] = "";

	cr_assert_eq(load("risk:\n"
	                  "  working_hours: { days: [mon, sat], from: \"06:30\", to: \"24:00\" }\n"
	                  "  splitting: { window_hours: 24, near_pct: 70 }\n"
	                  "  volume: { k: 4 }\n"
	                  "  probing: { window_seconds: 60, probes: 3 }\n"
	                  "  quota: { warn_pct: 50, high_pct: 90 }\n", &p, err, sizeof(err)), 0, "%s", err);
	cr_expect_eq(p->risk->work_days, 1 | 1 << 5);
	cr_expect_eq(p->risk->work_from_min, 6 * 60 + 30);
	cr_expect_eq(p->risk->work_to_min, 24 * 60);
	cr_expect_eq(p->risk->splitting.window_hours, 24);
	cr_expect_eq(p->risk->splitting.near_pct, 70);
	cr_expect_eq(p->risk->splitting.min_applications, 2);   /* untouched default */
	cr_expect_eq(p->risk->volume.k, 4);
	cr_expect_eq(p->risk->probing.window_seconds, 60);
	cr_expect_eq(p->risk->probing.probes, 3);
	cr_expect_eq(p->risk->quota.warn_pct, 50);
	cr_expect_eq(p->risk->quota.high_pct, 90);
	gw_policy_unref(&p);
}

Test(riskpolicy, typos_and_bad_values_refused_with_their_line)
{
	static const struct { const char *text, *want; } cases[] = {
		{ "risk:\n  volum: { k: 4 }\n", "p.yaml:9:3: unknown key 'volum' in risk" },
		{ "risk:\n  volume:\n    kk: 4\n", "p.yaml:10:5: unknown key 'kk' in risk.volume" },
		{ "risk:\n  volume: { k: 0 }\n", "p.yaml:9:16:" },
		{ "risk:\n  quota: { warn_pct: 99 }\n", "warn_pct must be below high_pct" },
		{ "risk:\n  working_hours: { from: \"9\" }\n", "p.yaml:9:26: risk.working_hours.from must be \"HH:MM\"" },
		{ "risk:\n  working_hours: { days: [monday] }\n", "\"monday\" is not mon" },
		{ "risk:\n  working_hours: { from: \"18:00\", to: \"08:00\" }\n", "from must be before to" },
		{ "risk: 3\n", "risk must be a mapping" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct gw_policy *p = NULL;
		char err[512] = "";
		cr_expect_neq(load(cases[i].text, &p, err, sizeof(err)), 0, "accepted: %s", cases[i].text);
		cr_expect(strstr(err, cases[i].want) != NULL, "case %zu: \"%s\" lacks \"%s\"", i, err,
		          cases[i].want);
		gw_policy_unref(&p);
	}
}

Test(baseline, median_mad_threshold)
{
	double v[] = { 3, 1, 2, 10, 2 };
	double w[] = { 0, 0, 0, 0 };
	double u[] = { 4, 2 };

	cr_expect_float_eq(gw_risk_median(u, 2), 3, 1e-9);
	/* median 2; deviations 1 1 0 8 0 -> MAD 1; 2 + 3 * 1.4826 */
	cr_expect_float_eq(gw_risk_threshold(v, 5, 3), 2 + 3 * 1.4826, 1e-9);
	double x[] = { 4, 4, 4 };
	/* A flat history: the floor of 1 keeps one more from being unusual. */
	cr_expect_float_eq(gw_risk_threshold(w, 4, 6), 6, 1e-9);
	/* and of √median at a higher level */
	cr_expect_float_eq(gw_risk_threshold(x, 3, 6), 4 + 6 * 2, 1e-9);
	cr_expect_float_eq(gw_risk_median(NULL, 0), 0, 1e-9);
}
