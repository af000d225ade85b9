/* Unit tests of the application state machine (gateway/workflow.c) on the
 * demo company's policy. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "workflow.h"

static struct gw_policy *pol;
static char why[512];
static const time_t T0 = 1795000000;   /* a fixed clock */

static void
load(void)
{
	char path[1024], err[512];
	const char *src = getenv("SEALGATE_SOURCE");

	snprintf(path, sizeof(path), "%s/softhsm-config/acme-policy.yaml.in", src ? src : ".");
	cr_assert_eq(gw_policy_load(path, &pol, err, sizeof(err)), 0, "%s", err);
}

static void
unload(void)
{
	gw_policy_unref(&pol);
}

TestSuite(workflow, .init = load, .fini = unload);

static const struct gw_person *
who(const char *id)
{
	const struct gw_person *p = gw_policy_person(pol, id);
	cr_assert_not_null(p, "no person %s", id);
	return p;
}

static void
apply(const char *applicant, const char *seal, const char *type, int64_t amount,
      uint32_t uses, struct gw_application *app)
{
	struct gw_use_case uc = { .document_type = type, .business_scope = "sales",
	                          .has_amount = true, .amount = amount };
	int rc = gw_wf_create(pol, gw_policy_seal(pol, seal), who(applicant), &uc, "customer order",
	                      NULL, uses, 0, T0, app, why, sizeof(why));
	cr_assert_eq(rc, 0, "apply: %s", why);
	app->id = 42;
}

Test(workflow, one_level_head_of_department)
{
	struct gw_application app;

	apply("alice", "contract", "contract", 50000, 1, &app);
	cr_assert_eq(app.state, GW_APP_PENDING);
	cr_assert_eq(app.n_levels, 1);
	cr_assert(gw_wf_waiting_for(pol, &app, who("bob")));
	cr_assert_not(gw_wf_waiting_for(pol, &app, who("carol")));
	/* The applicant never approves her own application. */
	cr_assert_eq(gw_wf_approve(pol, &app, who("alice"), NULL, T0, why, sizeof(why)), -1);
	cr_assert_not_null(strstr(why, "cannot approve"), "%s", why);
	/* Carol is not the head of Sales: not her level. */
	cr_assert_eq(gw_wf_approve(pol, &app, who("carol"), NULL, T0, why, sizeof(why)), -1);
	cr_assert_eq(app.state, GW_APP_PENDING);
	cr_assert_eq(gw_wf_approve(pol, &app, who("bob"), "ok", T0 + 60, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(app.state, GW_APP_AUTHORIZED);
	cr_assert(gw_wf_usable(&app, T0 + 120));
	cr_assert_eq(app.n_approvals, 1);
	cr_assert_str_eq(app.approvals[0].approver, "bob");
}

Test(workflow, two_levels_in_order_no_skipping)
{
	struct gw_application app;

	apply("alice", "contract", "contract", 5000000, 1, &app);
	cr_assert_eq(app.n_levels, 2);
	/* Carol (executive) before Bob: level 2 cannot be approved first. */
	cr_assert_eq(gw_wf_approve(pol, &app, who("carol"), NULL, T0, why, sizeof(why)), -1);
	gw_wf_describe(pol, &app, T0, why, sizeof(why));
	cr_assert_not_null(strstr(why, "level 1 of 2"), "%s", why);
	cr_assert_not_null(strstr(why, "bob"), "%s", why);
	cr_assert_eq(gw_wf_approve(pol, &app, who("bob"), NULL, T0, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(app.state, GW_APP_PENDING);
	cr_assert_eq(app.level, 1);
	gw_wf_describe(pol, &app, T0, why, sizeof(why));
	cr_assert_not_null(strstr(why, "approval #42 is waiting for level 2 of 2: an executive (carol)"), "%s", why);
	/* Bob counts once. */
	cr_assert_eq(gw_wf_approve(pol, &app, who("bob"), NULL, T0, why, sizeof(why)), -1);
	cr_assert_not_null(strstr(why, "once"), "%s", why);
	cr_assert_eq(gw_wf_approve(pol, &app, who("carol"), NULL, T0, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(app.state, GW_APP_AUTHORIZED);
	/* Nothing more to approve. */
	cr_assert_eq(gw_wf_approve(pol, &app, who("erin"), NULL, T0, why, sizeof(why)), -1);
}

Test(workflow, department_head_applying_goes_up_the_tree)
{
	struct gw_application app;

	apply("bob", "contract", "contract", 1000, 1, &app);
	cr_assert_eq(gw_wf_approve(pol, &app, who("bob"), NULL, T0, why, sizeof(why)), -1);
	cr_assert(gw_wf_waiting_for(pol, &app, who("carol")));
	cr_assert_eq(gw_wf_approve(pol, &app, who("carol"), NULL, T0, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(app.state, GW_APP_AUTHORIZED);
}

Test(workflow, rejection_ends_it)
{
	struct gw_application app;

	apply("alice", "contract", "contract", 5000000, 1, &app);
	cr_assert_eq(gw_wf_reject(pol, &app, who("bob"), "", T0, why, sizeof(why)), -1);
	cr_assert_eq(gw_wf_reject(pol, &app, who("bob"), "price too low", T0, why, sizeof(why)), 0);
	cr_assert_eq(app.state, GW_APP_REJECTED);
	cr_assert_eq(gw_wf_approve(pol, &app, who("carol"), NULL, T0, why, sizeof(why)), -1);
	cr_assert_eq(gw_wf_revoke(&app, who("alice"), T0, why, sizeof(why)), -1);
	cr_assert_not(gw_wf_usable(&app, T0));
}

Test(workflow, revoke_by_applicant_or_seal_admin_only)
{
	struct gw_application app, app2;

	apply("alice", "contract", "contract", 50000, 1, &app);
	app2 = app;
	cr_assert_eq(gw_wf_revoke(&app, who("dave"), T0, why, sizeof(why)), -1);
	cr_assert_eq(gw_wf_revoke(&app, who("alice"), T0, why, sizeof(why)), 0);
	cr_assert_eq(app.state, GW_APP_REVOKED);
	cr_assert_eq(gw_wf_approve(pol, &app2, who("bob"), NULL, T0, why, sizeof(why)), 0);
	cr_assert_eq(gw_wf_revoke(&app2, who("frank"), T0, why, sizeof(why)), 0);
	cr_assert_not(gw_wf_usable(&app2, T0));
}

Test(workflow, uses_and_expiry)
{
	struct gw_application app;

	apply("alice", "contract", "contract", 50000, 2, &app);
	cr_assert_eq(gw_wf_spend(&app, T0, why, sizeof(why)), -1);   /* not authorized yet */
	cr_assert_eq(gw_wf_approve(pol, &app, who("bob"), NULL, T0, why, sizeof(why)), 0);
	cr_assert_eq(gw_wf_spend(&app, T0, why, sizeof(why)), 0);
	cr_assert_eq(app.uses_left, 1);
	cr_assert_eq(gw_wf_spend(&app, T0, why, sizeof(why)), 0);
	cr_assert_eq(app.state, GW_APP_USED_UP);
	cr_assert_eq(gw_wf_spend(&app, T0, why, sizeof(why)), -1);

	apply("alice", "contract", "contract", 50000, 1, &app);
	cr_assert_not(gw_wf_expire(&app, app.valid_until - 1));
	cr_assert_eq(gw_wf_approve(pol, &app, who("bob"), NULL, (time_t)app.valid_until, why, sizeof(why)), -1);
	cr_assert_eq(app.state, GW_APP_EXPIRED);
}

Test(workflow, what_cannot_be_applied_for)
{
	struct gw_application app;
	struct gw_use_case uc = { .document_type = "contract", .business_scope = "sales",
	                          .has_amount = true, .amount = 10 };

	/* The invoice seal needs no approval. */
	uc.document_type = "invoice";
	cr_assert_eq(gw_wf_create(pol, gw_policy_seal(pol, "invoice"), who("svc-billing"), &uc,
	                          "invoices", NULL, 1, 0, T0, &app, why, sizeof(why)), -1);
	cr_assert_not_null(strstr(why, "no approval"), "%s", why);
	/* Dave (finance) is not among the contract seal's users. */
	uc.document_type = "contract";
	cr_assert_eq(gw_wf_create(pol, gw_policy_seal(pol, "contract"), who("dave"), &uc,
	                          "x", NULL, 1, 0, T0, &app, why, sizeof(why)), -1);
	/* A document type the seal does not allow. */
	uc.document_type = "invoice";
	cr_assert_eq(gw_wf_create(pol, gw_policy_seal(pol, "contract"), who("alice"), &uc,
	                          "x", NULL, 1, 0, T0, &app, why, sizeof(why)), -1);
	/* Over the seal's amount ceiling. */
	uc.document_type = "contract";
	uc.amount = 100000001;
	cr_assert_eq(gw_wf_create(pol, gw_policy_seal(pol, "contract"), who("alice"), &uc,
	                          "x", NULL, 1, 0, T0, &app, why, sizeof(why)), -1);
	/* Bounds on uses, validity and reason. */
	uc.amount = 10;
	cr_assert_eq(gw_wf_create(pol, gw_policy_seal(pol, "contract"), who("alice"), &uc,
	                          "x", NULL, 0, 0, T0, &app, why, sizeof(why)), -1);
	cr_assert_eq(gw_wf_create(pol, gw_policy_seal(pol, "contract"), who("alice"), &uc,
	                          "", NULL, 1, 0, T0, &app, why, sizeof(why)), -1);
	cr_assert_eq(gw_wf_create(pol, gw_policy_seal(pol, "contract"), who("alice"), &uc,
	                          "x", NULL, 1, 365 * 86400, T0, &app, why, sizeof(why)), -1);
}
