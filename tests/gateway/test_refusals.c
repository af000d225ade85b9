/* Unit tests of the refusal limiter (gateway/refusals.c): the first
 * refusals of a key recorded, the rest counted, summaries whose counts add
 * up exactly, reason classes, the tighter limit for OS users the policy
 * does not know, the table's bound under many uids, summaries at interval
 * end, at a later refusal and at stop; and which logins the policy knows. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "audit.h"
#include "policy.h"
#include "refusals.h"

#define S 1000000000LL
static const int64_t T0 = 1795752000LL * S;

/* What the sink got: one summary each. */
struct summary {
	char action[64], outcome[16], actor[160], reason[600];
	int64_t uid, pid, count, recorded, first_ns, last_ns;
	bool known, vary, has_actor;
	char sample[300];
};
static struct summary got[1024];
static size_t n_got;
static pthread_mutex_t got_lock = PTHREAD_MUTEX_INITIALIZER;

static int
sink(void *arg, struct gw_audit_event *ev)
{
	struct summary *s;
	json_error_t je;
	json_t *d;

	(void)arg;
	pthread_mutex_lock(&got_lock);
	cr_assert_lt(n_got, sizeof(got) / sizeof(got[0]));
	s = &got[n_got];
	memset(s, 0, sizeof(*s));
	snprintf(s->action, sizeof(s->action), "%s", ev->action);
	snprintf(s->outcome, sizeof(s->outcome), "%s", ev->outcome);
	snprintf(s->reason, sizeof(s->reason), "%s", ev->reason);
	s->has_actor = ev->actor != NULL;
	snprintf(s->actor, sizeof(s->actor), "%s", ev->actor ? ev->actor : "");
	s->uid = ev->uid;
	s->pid = ev->pid;
	d = json_loads(ev->detail, 0, &je);
	cr_assert_not_null(d, "detail is not JSON: %s (%s)", ev->detail, je.text);
	s->count = json_integer_value(json_object_get(d, "count"));
	s->recorded = json_integer_value(json_object_get(d, "recorded"));
	s->first_ns = json_integer_value(json_object_get(d, "first_ns"));
	s->last_ns = json_integer_value(json_object_get(d, "last_ns"));
	s->known = json_is_true(json_object_get(d, "known"));
	s->vary = json_is_true(json_object_get(d, "reasons_vary"));
	snprintf(s->sample, sizeof(s->sample), "%s", json_string_value(json_object_get(d, "reason")));
	cr_assert(json_is_null(json_object_get(d, "uid")) ||
	          json_integer_value(json_object_get(d, "uid")) == ev->uid);
	json_decref(d);
	n_got++;
	pthread_mutex_unlock(&got_lock);
	return 0;
}

static size_t
got_n(void)
{
	size_t n;

	pthread_mutex_lock(&got_lock);
	n = n_got;
	pthread_mutex_unlock(&got_lock);
	return n;
}

static int64_t
summed(void)
{
	int64_t n = 0;

	for (size_t i = 0; i < n_got; i++)
		n += got[i].count;
	return n;
}

static struct gw_reflimit *rl;

static void
setup(void)
{
	struct gw_reflimit_settings set = { .no_thread = true };

	n_got = 0;
	cr_assert_eq(gw_reflimit_new(sink, NULL, &set, &rl), 0);
}

static void
teardown(void)
{
	gw_reflimit_free(&rl);
}

TestSuite(refusals, .init = setup, .fini = teardown);

Test(refusals, first_five_recorded_the_rest_counted_in_one_summary)
{
	struct gw_reflimit_stats st;
	unsigned recorded = 0;

	for (int i = 0; i < 100; i++)
		recorded += !gw_reflimit_take(rl, 1000, true, "sign", "alice may not use a seal named \"x\"",
		                              "alice", T0 + i * 1000000LL);
	cr_assert_eq(recorded, GW_REFLIMIT_BURST);
	/* Nothing is written while the interval runs. */
	cr_assert_eq(gw_reflimit_flush(rl, T0 + (GW_REFLIMIT_INTERVAL - 1) * S, false), 0);
	cr_assert_eq(n_got, 0);
	cr_assert_eq(gw_reflimit_flush(rl, T0 + GW_REFLIMIT_INTERVAL * S, false), 1);
	cr_assert_eq(n_got, 1);
	cr_assert_str_eq(got[0].action, "refusals_suppressed");
	cr_assert_str_eq(got[0].outcome, "denied");
	cr_assert_eq(got[0].uid, 1000);
	cr_assert_eq(got[0].pid, -1);
	cr_assert_str_eq(got[0].actor, "alice");
	cr_assert_eq(got[0].count, 95);
	cr_assert_eq(got[0].recorded, 5);
	cr_assert(got[0].known);
	cr_assert_not(got[0].vary);
	cr_assert_eq(got[0].first_ns, T0 + 5 * 1000000LL);
	cr_assert_eq(got[0].last_ns, T0 + 99 * 1000000LL);
	cr_assert_str_eq(got[0].sample, "alice may not use a seal named \"x\"");
	cr_assert(strstr(got[0].reason, "95 more refusals of uid 1000 (sign)") == got[0].reason,
	          "%s", got[0].reason);
	/* Owed once: a second flush writes nothing, and the key is gone. */
	cr_assert_eq(gw_reflimit_flush(rl, T0 + 2 * GW_REFLIMIT_INTERVAL * S, false), 0);
	gw_reflimit_get_stats(rl, &st);
	cr_assert_eq(st.taken, 100);
	cr_assert_eq(st.suppressed, 95);
	cr_assert_eq(st.summaries, 1);
	cr_assert_eq(st.keys, 0);
}

Test(refusals, numbers_and_quoted_names_do_not_make_new_keys)
{
	char why[128];
	unsigned recorded = 0;

	for (int i = 0; i < 20; i++) {
		snprintf(why, sizeof(why), "wrong password for bob (%d of %d attempts used)", i, 100 + i);
		recorded += !gw_reflimit_take(rl, 1000, true, "login", why, "bob", T0 + i);
	}
	cr_assert_eq(recorded, 5, "one class for the counters");
	recorded = 0;
	for (int i = 0; i < 20; i++) {
		snprintf(why, sizeof(why), "there is no sealgate account 'guess%d-%c'", i, 'a' + i);
		recorded += !gw_reflimit_take(rl, 1000, true, "login", why, NULL, T0 + i);
	}
	cr_assert_eq(recorded, 5, "one class for names the client chose");
	/* Other words, another key with its own first five; another action
	 * or uid too. */
	recorded = 0;
	for (int i = 0; i < 20; i++) {
		recorded += !gw_reflimit_take(rl, 1000, true, "login", "no password or code given", NULL, T0 + i);
		recorded += !gw_reflimit_take(rl, 1000, true, "application_create", "no password or code given",
		                              NULL, T0 + i);
		recorded += !gw_reflimit_take(rl, 1001, true, "login", "no password or code given", NULL, T0 + i);
	}
	cr_assert_eq(recorded, 15);
	cr_assert_eq(gw_reflimit_flush(rl, T0, true), 5);
	cr_assert_eq(summed(), 15 + 15 + 3 * 15);
	for (size_t i = 0; i < n_got; i++)
		if (got[i].sample[0] == 't')
			cr_assert(got[i].vary, "the names differ: said so");
}

Test(refusals, unknown_uid_gets_two_records_and_one_key_for_any_reason)
{
	char why[128];
	unsigned recorded = 0;
	struct gw_reflimit_stats st;

	for (int i = 0; i < 5000; i++) {
		snprintf(why, sizeof(why), i % 2 ? "OS login 'x%d' is not a sealgate account" :
		         "there is no sealgate account 'y%d'", i);
		recorded += !gw_reflimit_take(rl, 4242, false, "login", why, NULL, T0 + i);
	}
	cr_assert_eq(recorded, GW_REFLIMIT_BURST_UNKNOWN);
	gw_reflimit_get_stats(rl, &st);
	cr_assert_eq(st.keys, 1);
	cr_assert_eq(st.unknown_keys, 1);
	cr_assert_eq(gw_reflimit_flush(rl, T0 + GW_REFLIMIT_INTERVAL * S, false), 1);
	cr_assert_eq(got[0].count, 5000 - GW_REFLIMIT_BURST_UNKNOWN);
	cr_assert_eq(got[0].uid, 4242);
	cr_assert_not(got[0].known);
	cr_assert(got[0].vary);
	cr_assert_not(got[0].has_actor);
}

Test(refusals, a_new_interval_writes_the_old_summary_first_and_records_again)
{
	int64_t t1 = T0 + GW_REFLIMIT_INTERVAL * S;

	for (int i = 0; i < 8; i++)
		gw_reflimit_take(rl, 7, true, "sign", "outside its time windows", NULL, T0 + i);
	cr_assert_eq(n_got, 0);
	/* The key's next refusal after the interval: the 3 owed are written
	 * before it, and it is the first of a new interval (recorded). */
	cr_assert_not(gw_reflimit_take(rl, 7, true, "sign", "outside its time windows", NULL, t1));
	cr_assert_eq(n_got, 1);
	cr_assert_eq(got[0].count, 3);
	for (int i = 1; i < 5; i++)
		cr_assert_not(gw_reflimit_take(rl, 7, true, "sign", "outside its time windows", NULL, t1 + i));
	cr_assert(gw_reflimit_take(rl, 7, true, "sign", "outside its time windows", NULL, t1 + 5));
	cr_assert_eq(gw_reflimit_flush(rl, t1 + GW_REFLIMIT_INTERVAL * S, false), 1);
	cr_assert_eq(got[1].count, 1);
	cr_assert_eq(summed() + 10, 8 + 6);
}

Test(refusals, many_uids_do_not_grow_the_table_and_every_refusal_is_counted)
{
	struct gw_reflimit_stats st;
	int64_t recorded = 0, total = 0;

	/* 20,000 unknown uids, three refusals each. */
	for (int64_t uid = 100000; uid < 120000; uid++)
		for (int i = 0; i < 3; i++, total++)
			recorded += !gw_reflimit_take(rl, uid, false, "login", "not a sealgate account",
			                              NULL, T0 + total);
	gw_reflimit_get_stats(rl, &st);
	cr_assert_leq(st.keys, GW_REFLIMIT_SLOTS);
	cr_assert_eq(st.unknown_keys, GW_REFLIMIT_UNKNOWN_SLOTS, "%zu", st.unknown_keys);
	cr_assert_eq(recorded, GW_REFLIMIT_UNKNOWN_SLOTS * GW_REFLIMIT_BURST_UNKNOWN);
	/* A known user in the middle of it still has a slot: first five recorded. */
	for (int i = 0; i < 5; i++)
		cr_assert_not(gw_reflimit_take(rl, 1000, true, "sign", "no authorized application", "alice",
		                               T0 + total + i));
	cr_assert(gw_reflimit_take(rl, 1000, true, "sign", "no authorized application", "alice",
	                           T0 + total + 5));
	cr_assert_eq(gw_reflimit_flush(rl, T0 + total + 10, true), GW_REFLIMIT_UNKNOWN_SLOTS + 2);
	/* One summary per slot, one for the rest (uid -1), one for alice. */
	cr_assert_eq(recorded + summed(), total + 1);
	{
		bool other = false;
		for (size_t i = 0; i < n_got; i++)
			if (got[i].uid == -1) {
				other = true;
				cr_assert_eq(got[i].count, (20000 - GW_REFLIMIT_UNKNOWN_SLOTS) * 3);
				cr_assert(strstr(got[i].reason, "OS users the policy does not know"), "%s", got[i].reason);
			}
		cr_assert(other, "no summary for the uids beyond the slots");
	}
}

Test(refusals, known_uids_beyond_the_table_are_recorded_not_lost)
{
	struct gw_reflimit_stats st;

	for (int64_t uid = 0; uid < GW_REFLIMIT_SLOTS + 44; uid++)
		cr_assert_not(gw_reflimit_take(rl, uid, true, "sign", "denied", NULL, T0 + uid));
	gw_reflimit_get_stats(rl, &st);
	cr_assert_eq(st.keys, GW_REFLIMIT_SLOTS);
	cr_assert_eq(st.untracked, 44);
	/* Their intervals over, the slots are free again. */
	cr_assert_not(gw_reflimit_take(rl, 99999, true, "sign", "denied", NULL, T0 + GW_REFLIMIT_INTERVAL * S + S));
	gw_reflimit_get_stats(rl, &st);
	cr_assert_eq(st.keys, 1);
	cr_assert_eq(st.untracked, 44);
}

Test(refusals, stop_writes_what_is_owed)
{
	for (int i = 0; i < 10; i++)
		gw_reflimit_take(rl, 5, false, "login", "not a sealgate account", NULL, T0 + i);
	cr_assert_eq(n_got, 0);
	gw_reflimit_free(&rl);
	cr_assert_null(rl);
	cr_assert_eq(n_got, 1);
	cr_assert_eq(got[0].count, 10 - GW_REFLIMIT_BURST_UNKNOWN);
}

Test(refusals, a_long_reason_is_cut_at_a_character)
{
	char why[1024] = "";

	/* "é" is two bytes: a cut at any byte count keeps whole characters. */
	for (int i = 0; i < 300; i++)
		strcat(why, "\xc3\xa9");
	for (int i = 0; i < 3; i++)
		gw_reflimit_take(rl, 5, false, "login", why, NULL, T0 + i);
	cr_assert_eq(gw_reflimit_flush(rl, T0, true), 1);   /* the sink parsed its JSON */
	cr_assert_lt(strlen(got[0].sample), GW_REFLIMIT_REASON_MAX);
	cr_assert_eq(strlen(got[0].sample) % 2, 0);
}

static void
set_thread(void)
{
	struct gw_reflimit_settings set = { .interval_s = 1 };

	n_got = 0;
	cr_assert_eq(gw_reflimit_new(sink, NULL, &set, &rl), 0);
}

static int64_t
realtime(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * S + ts.tv_nsec;
}

/* Waited for, not timed: the bound only keeps a broken build from hanging. */
static void
wait_for(size_t n)
{
	for (int i = 0; i < 1000 && got_n() < n; i++)
		usleep(10000);
}

Test(refusals_thread, the_summary_is_written_when_the_interval_ends, .init = set_thread, .fini = teardown)
{
	/* No refusal and no flush follow: the thread writes it. */
	for (int i = 0; i < 10; i++)
		gw_reflimit_take(rl, 5, true, "sign", "outside its time windows", NULL, realtime());
	wait_for(1);
	cr_assert_eq(got_n(), 1);
	cr_assert_eq(got[0].count, 5);
	/* Now the thread sleeps with nothing owed: a new count wakes it. */
	for (int i = 0; i < 7; i++)
		gw_reflimit_take(rl, 6, true, "sign", "outside its time windows", NULL, realtime());
	wait_for(2);
	cr_assert_eq(got_n(), 2);
	cr_assert_eq(got[1].count, 2);
	cr_assert_eq(got[1].uid, 6);
}

Test(refusals_policy, which_logins_the_policy_knows)
{
	static const char pol[] =
		"version: 1\n"
		"organization:\n"
		"  name: R Co.\n"
		"  timezone: UTC\n"
		"  departments: [ { id: hq, name: HQ } ]\n"
		"  people:\n"
		"    - { id: ann, name: Ann, department: hq, roles: [employee] }\n"
		"    - { id: ben, name: Ben, department: hq, roles: [employee], os_logins: [bsmith] }\n"
		"  act_as:\n"
		"    - { os_login: robot, accounts: [ann] }\n"
		"seals: []\n";
	struct gw_policy *p = NULL;
	char err[512];

	cr_assert_eq(gw_policy_parse("r.yaml", (const uint8_t *)pol, sizeof(pol) - 1, &p, err, sizeof(err)),
	             0, "%s", err);
	cr_assert(gw_policy_login_known(p, "ann"));        /* os_logins defaults to the id */
	cr_assert(gw_policy_login_known(p, "bsmith"));
	cr_assert_not(gw_policy_login_known(p, "ben"));    /* ben named other logins */
	cr_assert(gw_policy_login_known(p, "robot"));      /* act_as */
	cr_assert_not(gw_policy_login_known(p, "mallory"));
	cr_assert_not(gw_policy_login_known(p, "#4242"));
	cr_assert_not(gw_policy_login_known(NULL, "ann"));
	gw_policy_unref(&p);
}
