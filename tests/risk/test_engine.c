/*
 * The risk engine on records built by hand (gateway/risk/risk.c), at the
 * edges of its parameters: the log's clock and its tolerance, restarts in
 * and outside working hours in the organization's zone, a checkpoint owed
 * one second too long, bursts of refusals just inside and outside the
 * window (a summary counting as its count), and a fast approval at the
 * limit. The generator's months are tests/risk/run.sh's business.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "policy.h"
#include "risk.h"

#define NS 1000000000LL
/* Monday 2026-10-05 00:00 in Shanghai (UTC+8), as UTC seconds. */
#define MON0 (1791158400LL - 8 * 3600)

static struct gw_policy *pol;
static struct gw_risk *eng;
static uint64_t seq;

static void
setup(void)
{
	static const char text[] =
		"version: 1\n"
		"organization:\n"
		"  name: T\n"
		"  timezone: Asia/Shanghai\n"
		"  departments: [ { id: hq, name: HQ } ]\n"
		"  people: [ { id: a, name: A, department: hq, roles: [employee] },\n"
		"            { id: b, name: B, department: hq, roles: [employee] } ]\n"
		"seals: []\n";
	char err[512] = "";

	cr_assert_eq(gw_policy_parse("p.yaml", (const uint8_t *)text, strlen(text), &pol, err,
	                             sizeof(err)), 0, "%s", err);
	eng = gw_risk_new(pol);
	cr_assert_not_null(eng);
	seq = 0;
}

static void
teardown(void)
{
	gw_risk_free(&eng);
	gw_policy_unref(&pol);
}

TestSuite(engine, .init = setup, .fini = teardown);

static uint64_t
rec(int64_t ts_ns, const char *action, const char *outcome, const char *actor, int64_t app,
    const char *reason, const char *detail)
{
	struct gw_audit_row row = {
		.seq = ++seq, .ts_ns = ts_ns, .action = action, .outcome = outcome, .actor = actor,
		.reason = reason, .uid = 1000, .pid = 42, .exe = "/usr/bin/x", .host = "h",
		.application = app, .detail = detail,
	};
	cr_assert_eq(gw_risk_add_record(eng, &row), 0);
	return row.seq;
}

/* The alerts of rule, after finishing. */
static size_t
alerts_of(const char *rule, const struct gw_risk_alert **first)
{
	const struct gw_risk_alert *a;
	size_t n, k = 0;

	cr_assert_eq(gw_risk_finish(eng, &a, &n), 0);
	*first = NULL;
	for (size_t i = 0; i < n; i++)
		if (!strcmp(a[i].rule, rule)) {
			if (!*first)
				*first = &a[i];
			k++;
		}
	return k;
}

/* Monday 10:00 local plus s seconds, in ns. */
static int64_t
at(int64_t s)
{
	return (MON0 + 10 * 3600 + s) * NS;
}

Test(engine, clock_going_back_beyond_its_tolerance)
{
	const struct gw_risk_alert *a;

	rec(at(100), "login", "ok", "a", 0, NULL, NULL);
	rec(at(98), "login", "ok", "a", 0, NULL, NULL);    /* 2 s back: within the tolerance */
	rec(at(95), "login", "ok", "a", 0, NULL, NULL);    /* 3 s back */
	cr_assert_eq(alerts_of("log.clock-backwards", &a), 1);
	cr_assert_eq(a->n_seqs, 2);
	cr_expect_eq(a->seqs[0], 2);
	cr_expect_eq(a->seqs[1], 3);
}

Test(engine, restarts_outside_working_hours_in_the_organizations_zone)
{
	const struct gw_risk_alert *a;

	rec((MON0 + 7 * 3600) * NS, "gateway_start", "ok", NULL, 0, NULL, NULL);       /* Mon 07:00 */
	rec((MON0 + 21 * 3600 - 1) * NS, "gateway_stop", "ok", NULL, 0, NULL, NULL);   /* Mon 20:59:59 */
	rec((MON0 + 21 * 3600) * NS, "gateway_start", "ok", NULL, 0, NULL, NULL);      /* Mon 21:00 */
	rec((MON0 + 5 * 86400 + 12 * 3600) * NS, "token_removed", "ok", NULL, 0, NULL, NULL); /* Sat */
	cr_assert_eq(alerts_of("log.off-hours-restart", &a), 1);
	cr_expect_eq(a->seqs[0], 3);
	cr_assert_eq(alerts_of("log.off-hours-token", &a), 1);
	cr_expect_eq(a->seqs[0], 4);
}

Test(engine, checkpoint_owed_one_second_too_long)
{
	const struct gw_risk_alert *a;
	uint64_t s1 = rec(at(0), "login", "ok", "a", 0, NULL, NULL);
	uint64_t s2;

	cr_assert_eq(gw_risk_add_checkpoint(eng, s1, at(900)), 0);     /* exactly the limit */
	s2 = rec(at(1000), "login", "ok", "a", 0, NULL, NULL);
	rec(at(1100), "login", "ok", "a", 0, NULL, NULL);
	cr_assert_eq(gw_risk_add_checkpoint(eng, s2 + 1, at(1901)), 0);  /* s2 waited 901 s */
	cr_assert_eq(alerts_of("log.checkpoint-owed", &a), 1);
	cr_expect_eq(a->seqs[0], s2);
}

Test(engine, refusal_bursts_and_the_window)
{
	const struct gw_risk_alert *a;

	/* a: ten refusals, each 601 s after the one before: no burst */
	for (int i = 0; i < 10; i++)
		rec(at(i * 601), "sign", "denied", "a", 0, "no", NULL);
	/* b: one refusal and a summary of nine more within the window */
	rec(at(50000), "sign", "denied", "b", 0, "no", NULL);
	rec(at(50060), "refusals_suppressed", "denied", "b", 0, "9 more",
	    "{\"action\":\"sign\",\"count\":9,\"interval\":60}");
	cr_assert_eq(alerts_of("probe.refusals", &a), 1);
	cr_expect_str_eq(a->subject, "b");
	cr_expect_eq(a->n_seqs, 2);
}

Test(engine, fast_approval_at_the_limit)
{
	const struct gw_risk_alert *a;

	rec(at(0), "application_create", "ok", "a", 1, "contract", NULL);
	rec(at(30), "application_approve", "ok", "b", 1, "ok", NULL);    /* 30 s: not under 30 */
	rec(at(100), "application_create", "ok", "a", 2, "contract", NULL);
	rec(at(129), "application_approve", "ok", "b", 2, "ok", NULL);   /* 29 s */
	cr_assert_eq(alerts_of("rubber-stamp.fast", &a), 1);
	cr_assert_eq(a->n_apps, 1);
	cr_expect_eq(a->apps[0], 2);
	cr_expect_eq(a->n_seqs, 2);
}

/* The create record of application id, valid until until_s (Unix s). */
static uint64_t
app_rec(int64_t ts_ns, int64_t id, int64_t uses, int64_t until_s)
{
	char d[128];

	snprintf(d, sizeof(d), "{\"amount\":10,\"uses\":%lld,\"valid_until\":%lld}",
	         (long long)uses, (long long)until_s);
	return rec(ts_ns, "application_create", "ok", "a", id, "contract", d);   /* copied by the engine */
}

static void
sign_rec(int64_t ts_ns, int64_t app)
{
	struct gw_audit_row row = {
		.seq = ++seq, .ts_ns = ts_ns, .action = "sign", .outcome = "ok", .actor = "a",
		.uid = 1000, .pid = 42, .exe = "/usr/bin/x", .host = "h", .seal = "s",
		.application = app,
	};
	cr_assert_eq(gw_risk_add_record(eng, &row), 0);
}

#define AUTHORIZED "{\"authorized\":true}"

Test(engine, approvals_about_to_expire_offline_at_the_exports_end)
{
	const struct gw_risk_alert *a;
	int64_t end = MON0 + 10 * 3600 + 1000;    /* the export's checkpoint, Unix s */
	uint64_t c2, a2;

	/* 1: ends 24 h and 1 s after the export: not yet */
	app_rec(at(0), 1, 2, end + 24 * 3600 + 1);
	rec(at(100), "application_approve", "ok", "b", 1, "ok", AUTHORIZED);
	/* 2: ends exactly 24 h after it, one of its two uses spent */
	c2 = app_rec(at(1), 2, 2, end + 24 * 3600);
	a2 = rec(at(101), "application_approve", "ok", "b", 2, "ok", AUTHORIZED);
	sign_rec(at(200), 2);
	/* 3: every use spent */
	app_rec(at(2), 3, 1, end + 3600);
	rec(at(102), "application_approve", "ok", "b", 3, "ok", AUTHORIZED);
	sign_rec(at(201), 3);
	/* 4: revoked; 5: approved at a first level only, not authorized */
	app_rec(at(3), 4, 1, end + 3600);
	rec(at(103), "application_approve", "ok", "b", 4, "ok", AUTHORIZED);
	rec(at(203), "application_revoke", "ok", "a", 4, "no", NULL);
	app_rec(at(4), 5, 1, end + 3600);
	rec(at(104), "application_approve", "ok", "b", 5, "ok", NULL);
	/* 6: ended before the export */
	app_rec(at(5), 6, 1, end - 1);
	rec(at(105), "application_approve", "ok", "b", 6, "ok", AUTHORIZED);
	cr_assert_eq(gw_risk_add_checkpoint(eng, seq, end * NS), 0);
	cr_assert_eq(alerts_of("approval.expiring", &a), 1);
	cr_expect_eq(a->n_apps, 1);
	cr_expect_eq(a->apps[0], 2);
	cr_assert_eq(a->n_seqs, 2);
	cr_expect_eq(a->seqs[0], c2);
	cr_expect_eq(a->seqs[1], a2);
	cr_expect_str_eq(a->subject, "a");
	cr_expect(strstr(a->why, "1 of its 2 uses left") != NULL, "%s", a->why);
}

Test(engine, approvals_about_to_expire_online_on_the_clock)
{
	const struct gw_risk_alert *a;
	size_t n;
	int64_t until = MON0 + 3 * 86400;

	app_rec(at(0), 7, 1, until);
	rec(at(100), "application_approve", "ok", "b", 7, "ok", AUTHORIZED);
	gw_risk_set_now(eng, (until - 24 * 3600 - 1) * NS);
	cr_assert_eq(gw_risk_evaluate(eng, &a, &n), 0);
	cr_expect_eq(n, 0);
	/* told when to look again: the start of its last 24 h */
	cr_expect_eq(gw_risk_next_due(eng), (until - 24 * 3600) * NS);
	gw_risk_set_now(eng, (until - 24 * 3600) * NS);
	cr_assert_eq(gw_risk_evaluate(eng, &a, &n), 0);
	cr_assert_eq(n, 1);
	cr_expect_str_eq(a[0].rule, "approval.expiring");
	cr_expect_eq(gw_risk_next_due(eng), INT64_MAX);
}
