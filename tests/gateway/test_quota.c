/* Unit tests of exact use accounting (gateway/quota.c) over a real store:
 * limits, release without commit, per-person and day/month boundaries in
 * the seal's time zone, and counters surviving a restart. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "appstore.h"
#include "sqlite_store.h"   /* gw_store_db: a look at the file from inside */
#include "quota.h"

static const char policy[] =
	"version: 1\n"
	"organization:\n"
	"  name: Q Co.\n"
	"  timezone: Asia/Shanghai\n"
	"  departments: [ { id: hq, name: HQ } ]\n"
	"  people:\n"
	"    - { id: ann, name: Ann, department: hq, roles: [employee] }\n"
	"    - { id: ben, name: Ben, department: hq, roles: [employee] }\n"
	"seals:\n"
	"  - id: s\n"
	"    name: S Seal\n"
	"    kind: invoice\n"
	"    key: \"pkcs11:object=s\"\n"
	"    holder: hq\n"
	"    users: { departments: [hq] }\n"
	"    quotas: { per_day: 3, per_month: 5, per_person_per_day: 2 }\n"
	"    approval: none\n";

static struct gw_policy *pol;
static struct gw_store *st;
static struct gw_quota *q;
static char dir[] = "/tmp/sg-quota-XXXXXX", path[128];
static char why[256];

/* 2026-11-27 12:00 in Shanghai (UTC+8) */
static const time_t NOON = 1795752000;

static void
setup(void)
{
	char err[512];

	cr_assert_not_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/store.db", dir);
	cr_assert_eq(gw_policy_parse("q.yaml", (const uint8_t *)policy, sizeof(policy) - 1, &pol,
	                             err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(gw_store_open(path, &st, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(gw_quota_new(st, &q), 0);
}

static void
teardown(void)
{
	char cmd[160];

	gw_quota_free(&q);
	gw_store_close(&st);
	gw_policy_unref(&pol);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	(void)!system(cmd);
}

TestSuite(quota, .init = setup, .fini = teardown);

static const struct gw_seal *
seal(void)
{
	return gw_policy_seal(pol, "s");
}

/* Reserve, commit to the store, release as used. */
static int
use(const char *who, time_t t)
{
	struct gw_quota_resv r;
	char err[256];

	if (gw_quota_reserve(q, seal(), who, t, 0, 0, 0, &r, why, sizeof(why)) < 0)
		return -1;
	gw_store_lock(st);
	cr_assert_eq(gw_quota_commit_tx(st, &r, err, sizeof(err)), 0, "%s", err);
	gw_store_unlock(st);
	gw_quota_release(q, &r, true);
	return 0;
}

Test(quota, per_person_then_per_day)
{
	cr_assert_eq(use("ann", NOON), 0);
	cr_assert_eq(use("ann", NOON), 0);
	cr_assert_eq(use("ann", NOON), -1);
	cr_assert_not_null(strstr(why, "per person"), "%s", why);
	cr_assert_eq(use("ben", NOON), 0);
	cr_assert_eq(gw_quota_left(q, seal(), "ben", NOON), 0);   /* the day is full */
	cr_assert_eq(use("ben", NOON), -1);
	cr_assert_not_null(strstr(why, "daily quota"), "%s", why);
}

Test(quota, a_reservation_released_unused_spends_nothing)
{
	struct gw_quota_resv r1, r2, r3;

	cr_assert_eq(gw_quota_reserve(q, seal(), "ann", NOON, 0, 0, 0, &r1, why, sizeof(why)), 0);
	cr_assert_eq(gw_quota_reserve(q, seal(), "ann", NOON, 0, 0, 0, &r2, why, sizeof(why)), 0);
	/* Two held for ann: a third is refused while they are in flight. */
	cr_assert_eq(gw_quota_reserve(q, seal(), "ann", NOON, 0, 0, 0, &r3, why, sizeof(why)), -1);
	gw_quota_release(q, &r1, false);
	gw_quota_release(q, &r2, false);
	cr_assert_eq(gw_quota_left(q, seal(), "ann", NOON), 2);
	cr_assert_eq(use("ann", NOON), 0);
}

Test(quota, local_midnight_starts_a_new_day_but_not_a_new_month)
{
	/* 23:59 and 00:01 Shanghai time are different days. */
	time_t before = NOON + 11 * 3600 + 59 * 60, after = NOON + 12 * 3600 + 60;

	cr_assert_eq(use("ann", before), 0);
	cr_assert_eq(use("ben", before), 0);
	cr_assert_eq(use("ben", before), 0);
	cr_assert_eq(use("ann", before), -1);           /* day full (3) */
	cr_assert_eq(use("ann", after), 0);             /* new day */
	cr_assert_eq(use("ann", after), 0);
	cr_assert_eq(use("ben", after), -1);            /* month full (5) */
	cr_assert_not_null(strstr(why, "monthly"), "%s", why);
}

Test(quota, counters_survive_a_restart)
{
	char err[256];

	cr_assert_eq(use("ann", NOON), 0);
	cr_assert_eq(use("ben", NOON), 0);
	gw_quota_free(&q);
	cr_assert_eq(gw_quota_new(st, &q), 0);
	cr_assert_eq(gw_quota_left(q, seal(), "ann", NOON), 1);
	cr_assert_eq(use("ann", NOON), 0);
	cr_assert_eq(use("ben", NOON), -1);
	(void)err;
}

Test(quota, application_uses_are_exact)
{
	struct gw_quota_resv r[3];

	cr_assert_eq(gw_quota_reserve(q, seal(), "ann", NOON, 42, 2, 2, &r[0], why, sizeof(why)), 0);
	cr_assert_eq(gw_quota_reserve(q, seal(), "ann", NOON, 42, 2, 2, &r[1], why, sizeof(why)), 0);
	cr_assert_eq(gw_quota_reserve(q, seal(), "ben", NOON, 42, 2, 2, &r[2], why, sizeof(why)), -1);
	cr_assert_not_null(strstr(why, "no use left"), "%s", why);
	/* Uses left are the store's (as the sign path reads them before it
	 * reserves): only this gateway's uses in flight are taken off. */
	cr_assert_eq(gw_quota_app_left(q, "s", 42, 2), 0);
	gw_quota_release(q, &r[0], true);
	gw_quota_release(q, &r[1], false);
	cr_assert_eq(gw_quota_app_left(q, "s", 42, 1), 1);
	/* Another gateway gave a use back: the store's 2 is what counts. */
	cr_assert_eq(gw_quota_app_left(q, "s", 42, 2), 2);
	cr_assert_eq(gw_quota_reserve(q, seal(), "ben", NOON, 42, 2, 2, &r[2], why, sizeof(why)), 0);
	gw_quota_release(q, &r[2], false);
}
