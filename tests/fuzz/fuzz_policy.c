/* Fuzz target: the policy loader (strict YAML, schema, cross-references)
 * and, when a policy loads, every evaluation function over its people and
 * seals, so a file that validates can never crash evaluation. */
#include <stdlib.h>
#include <string.h>
#include "policy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
exercise(const struct gw_policy *p)
{
	/* A few cases, including unstated facts and boundary amounts. */
	static const struct gw_use_case cases[] = {
		{ NULL, NULL, false, 0 },
		{ "contract", "sales", true, 1000000 },
		{ "contract", "sales", true, 1000001 },
		{ "invoice", NULL, true, 0 },
	};
	size_t np = p->n_people < 8 ? p->n_people : 8;
	char why[512];

	for (size_t s = 0; s < p->n_seals && s < 8; s++) {
		const struct gw_seal *seal = &p->seals[s];
		char *text = gw_policy_explain(p, seal, np ? &p->people[0] : NULL, &cases[1], 0);
		free(text);
		(void)gw_policy_in_window(seal, 1700000000);
		(void)gw_policy_local_day(seal, -1);
		(void)gw_policy_local_month(seal, 4102444800);
		for (size_t i = 0; i < np; i++) {
			const struct gw_person *who = &p->people[i];
			for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
				int r = gw_policy_match_rule(p, seal, who, &cases[c], why, sizeof(why));
				for (size_t k = 0; r >= 0 && k < seal->rules[r].n_levels; k++) {
					const struct gw_person **list = NULL;
					size_t n = 0;
					unsigned q = 0;
					if (gw_policy_level_approvers(p, &seal->rules[r], k, who, &list,
					                              &n, &q, why, sizeof(why)) == 0)
						free(list);
				}
			}
		}
	}
	for (size_t i = 0; i < np; i++) {
		const struct gw_person *who = &p->people[i];
		for (size_t j = 0; j < who->n_os_logins; j++) {
			(void)gw_policy_resolve_account(p, who->os_logins[j], NULL, why, sizeof(why));
			(void)gw_policy_resolve_account(p, who->os_logins[j], p->people[0].id,
			                                why, sizeof(why));
		}
	}
	free(gw_policy_explain(p, NULL, NULL, NULL, 0));
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct gw_policy *p = NULL;
	char err[512];

	if (gw_policy_parse("fuzz-policy.yaml", data, size, &p, err, sizeof(err)) == 0) {
		exercise(p);
		gw_policy_unref(&p);
	} else if (strncmp(err, "fuzz-policy.yaml", 16) != 0) {
		abort();   /* every error names the file */
	}
	return 0;
}
