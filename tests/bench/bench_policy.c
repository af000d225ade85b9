/*
 * Policy decision micro-benchmark: generates a large organization (10,000
 * people in 551 departments, 1,000 seals with conditions, windows, quotas
 * and approval rules), loads it, and times the decisions the gateway makes
 * per request: finding the seal, may-use, rule matching, the approvers of
 * a level. A benchmark, not a test: it prints, it asserts nothing on time.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "policy.h"

#define N_DIVISIONS 50
#define TEAMS_PER_DIV 10
#define N_TEAMS (N_DIVISIONS * TEAMS_PER_DIV)

static size_t n_people = 10000, n_seals = 1000;

struct buf { char *p; size_t len, cap; };

static void __attribute__((format(printf, 2, 3)))
put(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
		va_end(ap);
		if (n >= 0 && (size_t)n < b->cap - b->len) {
			b->len += (size_t)n;
			return;
		}
		b->cap = b->cap * 2 + (size_t)n + 1;
		b->p = realloc(b->p, b->cap);
		if (b->p == NULL) {
			perror("realloc");
			exit(2);
		}
	}
}

/* Person i works in team i % N_TEAMS; the first person of a team heads
 * it, persons 0..49 head the divisions, 50..69 are executives. */
static void
gen_policy(struct buf *b)
{
	put(b, "version: 1\norganization:\n  name: Big Co.\n  timezone: Europe/Berlin\n"
	       "  departments:\n    - { id: hq, name: Headquarters, head: p%05u }\n", 70u);
	for (unsigned d = 0; d < N_DIVISIONS; d++)
		put(b, "    - { id: div%u, name: Division %u, parent: hq, head: p%05u }\n", d, d, d);
	for (unsigned t = 0; t < N_TEAMS; t++)
		put(b, "    - { id: team%u, name: Team %u, parent: div%u, head: p%05u }\n", t, t,
		    t / TEAMS_PER_DIV, N_TEAMS + t);
	put(b, "  people:\n");
	for (size_t i = 0; i < n_people; i++) {
		const char *role = i < N_DIVISIONS ? "department_head" :
		                   i < 71 ? "executive" :
		                   i >= N_TEAMS && i < 2 * N_TEAMS ? "department_head" : "employee";
		const char *dept_kind = i < N_DIVISIONS ? "div" : i <= 70 ? "hq" : "team";
		unsigned dept = i < N_DIVISIONS ? (unsigned)i : (unsigned)(i % N_TEAMS);

		if (strcmp(dept_kind, "hq") == 0)
			put(b, "    - { id: p%05zu, name: Person %zu, department: hq, roles: [%s] }\n",
			    i, i, role);
		else
			put(b, "    - { id: p%05zu, name: Person %zu, department: %s%u, roles: [%s, signer%zu] }\n",
			    i, i, dept_kind, dept, role, i % 7);
	}
	put(b, "seals:\n");
	for (size_t s = 0; s < n_seals; s++) {
		unsigned div = (unsigned)(s % N_DIVISIONS);
		put(b, "  - id: seal%04zu\n    name: Seal %zu\n    kind: contract\n"
		       "    key: \"pkcs11:object=seal-%zu;type=private\"\n    holder: div%u\n"
		       "    document_types: [contract, agreement, invoice]\n"
		       "    business_scopes: [sales, procurement]\n    amount_ceiling: 100000000\n"
		       "    time_windows:\n"
		       "      - { days: [mon, tue, wed, thu, fri], from: \"00:00\", to: \"24:00\" }\n"
		       "      - { days: [sat, sun], from: \"00:00\", to: \"24:00\" }\n"
		       "    quotas: { per_day: 200, per_month: 2000, per_person_per_day: 50 }\n"
		       "    users:\n      departments: [div%u, team%zu]\n      roles: [signer%zu]\n"
		       "      people: [p%05zu, p%05zu]\n"
		       "    approval:\n      rules:\n"
		       "        - when: { amount_over: 1000000 }\n          levels:\n"
		       "            - { head_of: applicant }\n            - { head_of: applicant, up: 1 }\n"
		       "            - { role: executive, quorum: 2 }\n"
		       "        - when: { document_types: [invoice] }\n          levels:\n"
		       "            - { role: executive }\n"
		       "        - levels:\n            - { head_of: applicant }\n",
		    s, s, s, div, div, (s * 7) % N_TEAMS, s % 7, (s * 13 + 1) % n_people,
		    (s * 17 + 2) % n_people);
	}
}

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* What signpath.c does today: a linear strcmp over the seals. */
static size_t
seal_linear(const struct gw_policy *p, const char *id)
{
	size_t i;

	for (i = 0; i < p->n_seals; i++)
		if (strcmp(p->seals[i].id, id) == 0)
			break;
	return i;
}

static volatile size_t sink;

int
main(int argc, char **argv)
{
	struct buf b = { 0 };
	struct gw_policy *p = NULL;
	char err[512], why[512], sid[32];
	double t0, t1;
	size_t iters = 200000, found = 0, allowed = 0;
	struct gw_use_case uc = { .document_type = "contract", .business_scope = "sales",
	                          .has_amount = true, .amount = 5000000 };

	if (argc > 1)
		iters = strtoul(argv[1], NULL, 10);
	if (argc > 2)
		n_people = strtoul(argv[2], NULL, 10);
	if (argc > 3)
		n_seals = strtoul(argv[3], NULL, 10);
	if (n_people < 2 * N_TEAMS + 1 || n_seals < 1 || iters < 1) {
		fprintf(stderr, "usage: bench-policy [ITERATIONS [PEOPLE>=%d [SEALS]]]\n", 2 * N_TEAMS + 1);
		return 2;
	}
	gen_policy(&b);
	t0 = now_s();
	if (gw_policy_parse("big-policy.yaml", (const uint8_t *)b.p, b.len, &p, err, sizeof(err)) < 0) {
		fprintf(stderr, "bench-policy: %s\n", err);
		return 1;
	}
	t1 = now_s();
	printf("policy\t%zu people, %zu departments, %zu seals, %zu bytes of YAML\n", p->n_people,
	       p->n_departments, p->n_seals, b.len);
	printf("load_ms\t%.1f\n", (t1 - t0) * 1e3);

	/* Each iteration asks about another person and seal, so caches do
	 * not flatter the numbers more than a busy gateway would. */
#define PERSON(i) (&p->people[((i) * 7919u) % p->n_people])
#define SEAL(i) (&p->seals[((i) * 104729u) % p->n_seals])

	t0 = now_s();
	for (size_t i = 0; i < iters; i++) {
		snprintf(sid, sizeof(sid), "seal%04zu", (i * 104729u) % p->n_seals);
		found += seal_linear(p, sid) < p->n_seals;
	}
	t1 = now_s();
	printf("seal_lookup_linear_us\t%.3f\n", (t1 - t0) * 1e6 / (double)iters);

	t0 = now_s();
	for (size_t i = 0; i < iters; i++) {
		snprintf(sid, sizeof(sid), "seal%04zu", (i * 104729u) % p->n_seals);
		found += gw_policy_seal(p, sid) != NULL;
	}
	t1 = now_s();
	printf("seal_lookup_index_us\t%.3f\n", (t1 - t0) * 1e6 / (double)iters);

	t0 = now_s();
	for (size_t i = 0; i < iters; i++) {
		char id[32];
		snprintf(id, sizeof(id), "p%05zu", (i * 7919u) % p->n_people);
		found += gw_policy_person(p, id) != NULL;
	}
	t1 = now_s();
	printf("person_lookup_us\t%.3f\n", (t1 - t0) * 1e6 / (double)iters);

	t0 = now_s();
	for (size_t i = 0; i < iters; i++)
		allowed += gw_policy_may_use(p, PERSON(i), SEAL(i));
	t1 = now_s();
	printf("may_use_us\t%.3f\t(%zu of %zu allowed)\n", (t1 - t0) * 1e6 / (double)iters, allowed, iters);

	/* The sign path's whole policy part: may_use, mechanism, window. */
	t0 = now_s();
	for (size_t i = 0; i < iters; i++) {
		const struct gw_seal *s = SEAL(i);
		sink += gw_policy_may_use(p, PERSON(i), s) + gw_policy_mechanism_allowed(s, 0x1041) +
		        gw_policy_in_window(s, (time_t)(1700000000 + i * 37)) +
		        (size_t)gw_policy_local_day(s, (time_t)(1700000000 + i * 37));
	}
	t1 = now_s();
	printf("sign_decision_us\t%.3f\n", (t1 - t0) * 1e6 / (double)iters);

	t0 = now_s();
	for (size_t i = 0; i < iters; i++) {
		uc.amount = (i & 1) ? 5000000 : 1000;
		uc.document_type = (i % 3) ? "contract" : "invoice";
		sink += (size_t)gw_policy_match_rule(p, SEAL(i), PERSON(i), &uc, why, sizeof(why));
	}
	t1 = now_s();
	printf("match_rule_us\t%.3f\n", (t1 - t0) * 1e6 / (double)iters);

	/* Approvers: the head levels and the role level (every holder). */
	{
		const struct gw_seal *s = &p->seals[0];
		const struct gw_rule *rule = &s->rules[0];
		double per_level[3] = { 0 };

		for (size_t k = 0; k < rule->n_levels && k < 3; k++) {
			t0 = now_s();
			for (size_t i = 0; i < iters / 10 + 1; i++) {
				const struct gw_person **who = NULL;
				size_t n = 0;
				unsigned quorum = 0;
				if (gw_policy_level_approvers(p, rule, k, PERSON(i), &who, &n, &quorum, err,
				                              sizeof(err)) == 0)
					sink += n;
				free(who);
			}
			t1 = now_s();
			per_level[k] = (t1 - t0) * 1e6 / (double)(iters / 10 + 1);
		}
		printf("level_approvers_us\t%.3f\t%.3f\t%.3f\t(head_of, head_of up 1, role executive)\n",
		       per_level[0], per_level[1], per_level[2]);

		t0 = now_s();
		for (size_t i = 0; i < iters; i++)
			sink += gw_policy_may_approve(p, rule, 2, PERSON(i), &p->people[50 + i % 21]);
		t1 = now_s();
		printf("may_approve_role_us\t%.3f\n", (t1 - t0) * 1e6 / (double)iters);

		/* Head levels: the approver asked about is the team's head, so
		 * half the answers are yes (level 0) and half no (level 1). */
		t0 = now_s();
		for (size_t i = 0; i < iters; i++) {
			const struct gw_person *w = PERSON(i);
			const struct gw_department *d = &p->departments[w->dept_ix];
			if (d->head_ix != SIZE_MAX)
				sink += gw_policy_may_approve(p, rule, i & 1, w, &p->people[d->head_ix]);
		}
		t1 = now_s();
		printf("may_approve_head_us\t%.3f\n", (t1 - t0) * 1e6 / (double)iters);
	}
	if (found == 0)
		printf("(nothing found?)\n");
	gw_policy_unref(&p);
	free(b.p);
	return 0;
}
