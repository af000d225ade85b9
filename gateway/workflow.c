/*
 * The application state machine (workflow.h). No I/O: the gateway loads an
 * application, calls one transition here, and stores the result together
 * with its audit record.
 */
#include "workflow.h"

#include <stdio.h>
#include <stdlib.h>
#include <stdarg.h>
#include <string.h>

static const char *const state_names[] = {
	[GW_APP_PENDING] = "pending", [GW_APP_AUTHORIZED] = "authorized",
	[GW_APP_USED_UP] = "used_up", [GW_APP_EXPIRED] = "expired",
	[GW_APP_REVOKED] = "revoked", [GW_APP_REJECTED] = "rejected",
};

const char *
gw_app_state_name(enum gw_app_state s)
{
	if (s < GW_APP_PENDING || s > GW_APP_REJECTED)
		return "unknown";
	return state_names[s];
}

int
gw_app_state_from_name(const char *name, enum gw_app_state *out)
{
	for (int s = GW_APP_PENDING; s <= GW_APP_REJECTED; s++) {
		if (strcmp(state_names[s], name) == 0) {
			*out = (enum gw_app_state)s;
			return 0;
		}
	}
	return -1;
}

static int
refuse(char *why, size_t whylen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int
refuse(char *why, size_t whylen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, whylen, fmt, ap);
	va_end(ap);
	return -1;
}

static void
copy(char *dst, size_t cap, const char *src)
{
	snprintf(dst, cap, "%s", src ? src : "");
}

int
gw_wf_create(const struct gw_policy *p, const struct gw_seal *seal,
             const struct gw_person *applicant, const struct gw_use_case *uc,
             const char *reason, const uint8_t *doc_digest, uint32_t uses,
             int64_t valid_for, time_t now, struct gw_application *app,
             char *why, size_t whylen)
{
	const struct gw_rule *rule;
	int r;

	memset(app, 0, sizeof(*app));
	if (uses == 0 || uses > GW_WF_MAX_USES)
		return refuse(why, whylen, "uses must be between 1 and %d", GW_WF_MAX_USES);
	if (valid_for <= 0)
		valid_for = GW_WF_DEFAULT_VALIDITY;
	if (valid_for > GW_WF_MAX_VALIDITY)
		return refuse(why, whylen, "an application is valid for at most %d days",
		              GW_WF_MAX_VALIDITY / 86400);
	if (reason == NULL || reason[0] == '\0')
		return refuse(why, whylen, "an application needs a reason");
	if (strlen(reason) > GW_WF_TEXT_MAX)
		return refuse(why, whylen, "the reason is longer than %d bytes", GW_WF_TEXT_MAX);
	r = gw_policy_match_rule(p, seal, applicant, uc, why, whylen);
	if (r == GW_RULE_NOT_NEEDED)
		return refuse(why, whylen, "the %s needs no approval: sign directly (quotas and time windows apply)",
		              seal->name);
	if (r < 0)
		return -1;
	rule = &seal->rules[r];
	if (rule->n_levels > GW_WF_MAX_LEVELS)
		return refuse(why, whylen, "rule has more than %d levels", GW_WF_MAX_LEVELS);

	copy(app->applicant, sizeof(app->applicant), applicant->id);
	copy(app->seal, sizeof(app->seal), seal->id);
	copy(app->document_type, sizeof(app->document_type), uc->document_type);
	copy(app->business_scope, sizeof(app->business_scope), uc->business_scope);
	app->has_amount = uc->has_amount;
	app->amount = uc->amount;
	copy(app->reason, sizeof(app->reason), reason);
	if (doc_digest != NULL) {
		app->has_doc = true;
		memcpy(app->doc_digest, doc_digest, sizeof(app->doc_digest));
	}
	app->rule = r;
	for (size_t i = 0; i < rule->n_levels; i++) {
		struct gw_wf_level *l = &app->levels[i];
		l->kind = rule->levels[i].kind;
		l->up = rule->levels[i].up;
		copy(l->role, sizeof(l->role), rule->levels[i].role);
		l->quorum = rule->levels[i].quorum ? rule->levels[i].quorum : 1;
	}
	app->n_levels = (unsigned)rule->n_levels;
	app->uses_granted = app->uses_left = uses;
	app->created = now;
	app->valid_until = now + valid_for;
	app->state = app->n_levels == 0 ? GW_APP_AUTHORIZED : GW_APP_PENDING;
	return 0;
}

/* The application's fixed chain as a policy rule, for level resolution. */
static void
as_rule(const struct gw_application *app, struct gw_rule *rule, struct gw_level *levels)
{
	memset(rule, 0, sizeof(*rule));
	for (unsigned i = 0; i < app->n_levels; i++) {
		memset(&levels[i], 0, sizeof(levels[i]));
		levels[i].kind = app->levels[i].kind;
		levels[i].up = app->levels[i].up;
		levels[i].role = (char *)app->levels[i].role;
		levels[i].quorum = app->levels[i].quorum;
	}
	rule->levels = levels;
	rule->n_levels = app->n_levels;
}

static unsigned
approvals_at(const struct gw_application *app, unsigned level)
{
	unsigned n = 0;

	for (unsigned i = 0; i < app->n_approvals; i++)
		n += app->approvals[i].level == level && app->approvals[i].approve;
	return n;
}

/* Checks shared by approve and reject. */
static int
may_decide(const struct gw_policy *p, struct gw_application *app,
           const struct gw_person *who, time_t now, char *why, size_t whylen)
{
	struct gw_rule rule;
	struct gw_level levels[GW_WF_MAX_LEVELS];
	const struct gw_person *applicant;

	gw_wf_expire(app, now);
	if (app->state != GW_APP_PENDING)
		return refuse(why, whylen, "application #%lld is %s, not waiting for approval",
		              (long long)app->id, gw_app_state_name(app->state));
	if (strcmp(who->id, app->applicant) == 0)
		return refuse(why, whylen, "%s applied for #%lld and cannot approve or reject it",
		              who->id, (long long)app->id);
	for (unsigned i = 0; i < app->n_approvals; i++)
		if (strcmp(app->approvals[i].approver, who->id) == 0)
			return refuse(why, whylen, "%s already acted on #%lld (level %u); one person counts once",
			              who->id, (long long)app->id, app->approvals[i].level + 1);
	if (app->n_approvals >= GW_WF_MAX_APPROVALS)
		return refuse(why, whylen, "too many approvals on #%lld", (long long)app->id);
	applicant = gw_policy_person(p, app->applicant);
	if (applicant == NULL)
		return refuse(why, whylen, "the applicant %s is no longer in the policy", app->applicant);
	as_rule(app, &rule, levels);
	if (!gw_policy_may_approve(p, &rule, app->level, applicant, who)) {
		char desc[GW_WF_TEXT_MAX];
		gw_wf_describe(p, app, now, desc, sizeof(desc));
		return refuse(why, whylen, "%s may not decide level %u of #%lld: %s", who->id,
		              app->level + 1, (long long)app->id, desc);
	}
	return 0;
}

static void
add_decision(struct gw_application *app, const struct gw_person *who, bool approve,
             const char *comment, time_t now)
{
	struct gw_approval *a = &app->approvals[app->n_approvals++];

	memset(a, 0, sizeof(*a));
	a->level = app->level;
	copy(a->approver, sizeof(a->approver), who->id);
	a->approve = approve;
	copy(a->comment, sizeof(a->comment), comment);
	a->at = now;
}

int
gw_wf_approve(const struct gw_policy *p, struct gw_application *app,
              const struct gw_person *approver, const char *comment, time_t now,
              char *why, size_t whylen)
{
	if (comment && strlen(comment) > GW_WF_TEXT_MAX)
		return refuse(why, whylen, "the comment is longer than %d bytes", GW_WF_TEXT_MAX);
	if (may_decide(p, app, approver, now, why, whylen) < 0)
		return -1;
	add_decision(app, approver, true, comment, now);
	if (approvals_at(app, app->level) >= app->levels[app->level].quorum) {
		app->level++;
		if (app->level >= app->n_levels)
			app->state = GW_APP_AUTHORIZED;
	}
	return 0;
}

int
gw_wf_reject(const struct gw_policy *p, struct gw_application *app,
             const struct gw_person *approver, const char *comment, time_t now,
             char *why, size_t whylen)
{
	if (comment == NULL || comment[0] == '\0')
		return refuse(why, whylen, "a rejection needs a comment");
	if (strlen(comment) > GW_WF_TEXT_MAX)
		return refuse(why, whylen, "the comment is longer than %d bytes", GW_WF_TEXT_MAX);
	if (may_decide(p, app, approver, now, why, whylen) < 0)
		return -1;
	add_decision(app, approver, false, comment, now);
	app->state = GW_APP_REJECTED;
	return 0;
}

int
gw_wf_revoke(struct gw_application *app, const struct gw_person *actor,
             time_t now, char *why, size_t whylen)
{
	gw_wf_expire(app, now);
	if (strcmp(actor->id, app->applicant) != 0 && !gw_person_has_role(actor, "seal_admin"))
		return refuse(why, whylen, "only the applicant or a seal admin may revoke #%lld",
		              (long long)app->id);
	if (app->state != GW_APP_PENDING && app->state != GW_APP_AUTHORIZED)
		return refuse(why, whylen, "application #%lld is already %s", (long long)app->id,
		              gw_app_state_name(app->state));
	app->state = GW_APP_REVOKED;
	return 0;
}

enum gw_app_state
gw_wf_state_at(const struct gw_application *app, time_t now)
{
	if ((app->state == GW_APP_PENDING || app->state == GW_APP_AUTHORIZED) &&
	    (int64_t)now >= app->valid_until)
		return GW_APP_EXPIRED;
	return app->state;
}

bool
gw_wf_expire(struct gw_application *app, time_t now)
{
	enum gw_app_state s = gw_wf_state_at(app, now);

	if (s == app->state)
		return false;
	app->state = s;
	return true;
}

bool
gw_wf_usable(const struct gw_application *app, time_t now)
{
	return app->state == GW_APP_AUTHORIZED && app->uses_left > 0 &&
	       (int64_t)now < app->valid_until;
}

int
gw_wf_spend(struct gw_application *app, time_t now, char *why, size_t whylen)
{
	if (!gw_wf_usable(app, now))
		return refuse(why, whylen, "application #%lld has no use left", (long long)app->id);
	app->uses_left--;
	if (app->uses_left == 0)
		app->state = GW_APP_USED_UP;
	return 0;
}

static const char *
article(const char *word)
{
	return strchr("aeiouAEIOU", word[0]) ? "an" : "a";
}

void
gw_wf_describe(const struct gw_policy *p, const struct gw_application *app,
               time_t now, char *out, size_t outlen)
{
	enum gw_app_state state = gw_wf_state_at(app, now);
	struct gw_rule rule;
	struct gw_level levels[GW_WF_MAX_LEVELS];
	const struct gw_person *applicant, **who = NULL;
	const struct gw_wf_level *l;
	size_t n = 0, len;
	unsigned quorum = 1, have;
	char err[256];

	switch (state) {
	case GW_APP_AUTHORIZED:
		snprintf(out, outlen, "application #%lld is authorized: %u of %u uses left",
		         (long long)app->id, app->uses_left, app->uses_granted);
		return;
	case GW_APP_PENDING:
		break;
	default:
		snprintf(out, outlen, "application #%lld is %s", (long long)app->id,
		         gw_app_state_name(state));
		return;
	}
	l = &app->levels[app->level];
	have = approvals_at(app, app->level);
	if (l->kind == GW_LEVEL_ROLE)
		len = (size_t)snprintf(out, outlen, "approval #%lld is waiting for level %u of %u: %s %s",
		                       (long long)app->id, app->level + 1, app->n_levels,
		                       article(l->role), l->role);
	else
		len = (size_t)snprintf(out, outlen, "approval #%lld is waiting for level %u of %u: the head of the applicant's department%s",
		                       (long long)app->id, app->level + 1, app->n_levels,
		                       l->up ? " (higher up)" : "");
	if (len >= outlen)
		return;
	applicant = gw_policy_person(p, app->applicant);
	as_rule(app, &rule, levels);
	if (applicant != NULL &&
	    gw_policy_level_approvers(p, &rule, app->level, applicant, &who, &n, &quorum,
	                              err, sizeof(err)) == 0) {
		len += (size_t)snprintf(out + len, outlen - len, " (");
		for (size_t i = 0; i < n && len < outlen; i++)
			len += (size_t)snprintf(out + len, outlen - len, "%s%s", i ? ", " : "", who[i]->id);
		if (len < outlen)
			len += (size_t)snprintf(out + len, outlen - len, ")");
	}
	free(who);
	if (len < outlen && quorum > 1)
		snprintf(out + len, outlen - len, ", %u of %u approvals given", have, quorum);
}

bool
gw_wf_waiting_for(const struct gw_policy *p, const struct gw_application *app,
                  const struct gw_person *who)
{
	struct gw_rule rule;
	struct gw_level levels[GW_WF_MAX_LEVELS];
	const struct gw_person *applicant = gw_policy_person(p, app->applicant);

	if (app->state != GW_APP_PENDING || applicant == NULL || strcmp(who->id, app->applicant) == 0)
		return false;
	for (unsigned i = 0; i < app->n_approvals; i++)
		if (strcmp(app->approvals[i].approver, who->id) == 0)
			return false;
	as_rule(app, &rule, levels);
	return gw_policy_may_approve(p, &rule, app->level, applicant, who);
}
