/*
 * The seal policy: organization (departments, people, roles), seals and
 * their rules, read from one YAML file (docs/policy.md) and validated with
 * file:line:column errors. A loaded policy is immutable and reference
 * counted, so a SIGHUP reload swaps it atomically while requests in flight
 * keep the one they started with. Evaluation here is pure: no I/O.
 */
#ifndef GW_POLICY_H
#define GW_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GW_HASH_LEN 32

struct gw_department {
	char *id, *name;
	char *parent;                 /* id or NULL for the root */
	char *head;                   /* person id or NULL */
};

struct gw_person {
	char *id, *name;
	char *department;             /* id */
	char **roles;  size_t n_roles;
	char **os_logins; size_t n_os_logins;
};

/* Who may apply for / use a seal: anyone matching any list. */
struct gw_audience {
	char **departments; size_t n_departments;   /* includes sub-departments */
	char **roles; size_t n_roles;
	char **people; size_t n_people;
};

struct gw_time_window {
	uint8_t days;                 /* bit 0 = Monday … bit 6 = Sunday */
	uint16_t from_min, to_min;    /* minutes after local midnight, from < to */
};

struct gw_quotas {                /* 0 = unlimited */
	uint64_t per_day, per_month, total, per_person_per_day;
};

enum gw_level_kind { GW_LEVEL_RELATIVE_HEAD = 1, GW_LEVEL_ROLE = 2 };

struct gw_level {
	enum gw_level_kind kind;
	unsigned up;                  /* RELATIVE_HEAD: 0 = applicant's dept, 1 = its parent … */
	char *role;                   /* ROLE */
	unsigned quorum;              /* M of the N qualifying people; default 1 */
};

struct gw_rule {                  /* first matching rule wins */
	bool has_amount_over, has_amount_under;
	int64_t amount_over, amount_under;          /* strict bounds, in minor units? no: whole units */
	char **document_types; size_t n_document_types;   /* empty = any */
	char **business_scopes; size_t n_business_scopes;
	char **departments; size_t n_departments;   /* applicant's department in (with sub-departments) */
	struct gw_level *levels; size_t n_levels;
	unsigned line;                /* where it was declared, for explain */
};

struct gw_seal {
	char *id, *name, *kind;
	char *key_uri;                /* backend private key, RFC 7512 */
	char *holder;                 /* department id */
	char **document_types; size_t n_document_types;   /* empty = any */
	char **business_scopes; size_t n_business_scopes;
	bool has_amount_ceiling; int64_t amount_ceiling;
	char *timezone;               /* IANA name; default: organization's */
	struct gw_time_window *windows; size_t n_windows; /* none = always */
	struct gw_quotas quotas;
	unsigned long *mechanisms; size_t n_mechanisms;   /* CKM values; empty = all the key supports */
	struct gw_audience users;     /* who may apply / use */
	bool approval_required;       /* false: quotas and windows alone apply */
	struct gw_rule *rules; size_t n_rules;
	char *mfa;                    /* "login" (default), "per_signature", "out_of_band" */
};

struct gw_policy {
	unsigned refs;                /* use gw_policy_ref/unref */
	char *path;
	uint8_t hash[GW_HASH_LEN];    /* SHA-256 of the file's bytes */
	char *org_name;
	char *timezone;               /* default IANA zone */
	struct gw_department *departments; size_t n_departments;
	struct gw_person *people; size_t n_people;
	/* OS logins allowed to act as other accounts (SEALGATE_USER). */
	struct gw_act_as { char *os_login; bool all; char **accounts; size_t n_accounts; } *act_as;
	size_t n_act_as;
	struct gw_seal *seals; size_t n_seals;
};

/* Parses and validates. On error returns -1, err = "file:line:col: msg". */
int gw_policy_load(const char *path, struct gw_policy **out, char *err, size_t errlen);
/* Same, from a buffer (fuzz target, tests); name is used in messages. */
int gw_policy_parse(const char *name, const uint8_t *buf, size_t len,
                    struct gw_policy **out, char *err, size_t errlen);
struct gw_policy *gw_policy_ref(struct gw_policy *p);
void gw_policy_unref(struct gw_policy **p);

const struct gw_person *gw_policy_person(const struct gw_policy *p, const char *id);
const struct gw_seal *gw_policy_seal(const struct gw_policy *p, const char *id);
const struct gw_department *gw_policy_department(const struct gw_policy *p, const char *id);
bool gw_person_has_role(const struct gw_person *who, const char *role);

/* Resolves the account a client acts as. requested == NULL: the person
 * whose id equals os_login, else the only person listing os_login in
 * os_logins. requested != NULL: that person, if os_login is one of their
 * os_logins or an act_as entry lets os_login act as them. Returns the
 * person or NULL with err in words. */
const struct gw_person *gw_policy_resolve_account(const struct gw_policy *p,
		const char *os_login, const char *requested, char *err, size_t errlen);

/* True when who is in the seal's audience (may apply for / use it). */
bool gw_policy_may_use(const struct gw_policy *p, const struct gw_person *who,
                       const struct gw_seal *seal);

/* True when dept is anc or below it. */
bool gw_policy_dept_within(const struct gw_policy *p, const char *dept, const char *anc);

#endif
