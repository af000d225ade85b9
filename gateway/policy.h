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
#include <time.h>

#define GW_HASH_LEN 32

struct gw_tz;                     /* a loaded IANA time zone (opaque) */

struct gw_department {
	char *id, *name;
	char *parent;                 /* id or NULL for the root */
	char *head;                   /* person id or NULL */
	/* Filled in by the loader: */
	size_t parent_ix;             /* index in departments[], SIZE_MAX for a root */
	size_t head_ix;               /* index in people[], SIZE_MAX when no head */
	unsigned line;
};

struct gw_person {
	char *id, *name;
	char *department;             /* id */
	char **roles;  size_t n_roles;
	char **os_logins; size_t n_os_logins;
	char *email;                  /* where notices go, or NULL (docs/notifications.md) */
	/* Filled in by the loader: */
	size_t dept_ix;               /* index in departments[] */
	unsigned line;
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
	unsigned line;
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

/* A seal's image (image: in the policy, docs/stamp.md): at most 512 KiB,
 * so that it travels in one reply (SG_MSG_MAX, base64); checked at load
 * by drawing it at the diameter sealctl stamp draws it at. */
#define GW_SEAL_IMAGE_MAX (512u * 1024u)
#define GW_SEAL_IMAGE_CHECK_PX 600u

struct gw_seal {
	char *id, *name, *kind;
	char *key_uri;                /* backend private key, RFC 7512 */
	char *image_path;             /* the seal's PNG/SVG (image:), or NULL */
	char *image_sha256;           /* image_sha256: as written (required with image:) */
	uint8_t *image; size_t image_len;   /* its bytes, checked at load */
	uint8_t image_digest[32];     /* their SHA-256, equal to image_sha256 */
	char *holder;                 /* department id */
	char *site;                   /* the site whose gateway holds its key; default "main"
	                               * (docs/sites.md) */
	char **document_types; size_t n_document_types;   /* empty = any */
	char **business_scopes; size_t n_business_scopes;
	bool has_amount_ceiling; int64_t amount_ceiling;
	char *timezone;               /* IANA name; default: organization's */
	struct gw_time_window *windows; size_t n_windows; /* none = always */
	struct gw_quotas quotas;
	unsigned long *mechanisms; size_t n_mechanisms;   /* CKM values; empty = all the key supports */
	struct gw_audience users;     /* who may apply / use */
	char **devices; size_t n_devices; /* device groups that may sign ("local": the
	                               * gateway's own host); empty = any (docs/policy.md) */
	bool approval_required;       /* false: quotas and windows alone apply */
	struct gw_rule *rules; size_t n_rules;
	char *mfa;                    /* "none", "login" (default), "per_signature", "out_of_band",
	                               * "out_of_band_confirm" (docs/authentication.md) */
	/* Filled in by the loader: */
	const struct gw_tz *tz;       /* loaded zone of timezone (never NULL) */
	unsigned line;
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
	/* The group's sites (top-level sites:); none listed = the one site
	 * "main" (docs/sites.md). */
	struct gw_site { char *id, *name; unsigned line; } *sites; size_t n_sites;
	/* Filled in by the loader (lookup indexes, loaded zones): */
	struct gw_id_ix { const char *id; size_t ix; } *dept_index, *person_index, *seal_index;
	/* Roles sorted by name; the holders of roles[i] are the people[]
	 * indexes role_people[first .. first + holders), ascending, so
	 * approvers come in file order without scanning everyone. */
	struct gw_role_count { const char *role; size_t holders, first; } *roles; size_t n_roles;
	size_t *role_people;
	struct gw_tz **zones; size_t n_zones;
	int version;
	/* clients.size_probe: executables whose first signature in a process
	 * only measures the signature's size (docs/workflow.md, "Size probes"). */
	char **size_probe; size_t n_size_probe;
	/* risk: the risk rules' parameters, defaults filled in (docs/risk.md). */
	struct gw_risk_policy *risk;
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
/* The site id, or NULL when the policy has no such site ("main" is the
 * policy's one site when it lists none). */
const struct gw_site *gw_policy_site(const struct gw_policy *p, const char *id);
/* A site's name: 1 to GW_SITE_MAX (store.h) of a-z, 0-9, '-' and '_'. */
bool gw_policy_site_name_ok(const char *id);
const struct gw_department *gw_policy_department(const struct gw_policy *p, const char *id);
bool gw_person_has_role(const struct gw_person *who, const char *role);

/* Resolves the account a client acts as. requested == NULL: the person
 * whose id equals os_login, else the only person listing os_login in
 * os_logins. requested != NULL: that person, if os_login is one of their
 * os_logins or an act_as entry lets os_login act as them. Returns the
 * person or NULL with err in words. */
const struct gw_person *gw_policy_resolve_account(const struct gw_policy *p,
		const char *os_login, const char *requested, char *err, size_t errlen);
/* True when the policy knows os_login at all: some person lists it in
 * os_logins, or an act_as entry names it. A login it does not know can
 * only be refused (the refusal limiter holds such logins tighter). */
bool gw_policy_login_known(const struct gw_policy *p, const char *os_login);

/* True when who is in the seal's audience (may apply for / use it). */
bool gw_policy_may_use(const struct gw_policy *p, const struct gw_person *who,
                       const struct gw_seal *seal);

/* True when dept is anc or below it. */
bool gw_policy_dept_within(const struct gw_policy *p, const char *dept, const char *anc);

/* ---- Seal conditions, approval rules, windows (all pure) ---- */

/* What an application or a signature is for. Unstated facts are NULL /
 * has_amount false; a seal or rule that asks about a fact the case does not
 * state never lets it through (docs/policy.md, "Conditions"). */
struct gw_use_case {
	const char *document_type;
	const char *business_scope;
	bool has_amount;
	int64_t amount;               /* whole currency units, >= 0 */
};

/* Seal conditions: document type allowed, business scope allowed, amount
 * stated when the seal or one of its rules looks at it, amount <= ceiling.
 * False with why in words. */
bool gw_policy_check_conditions(const struct gw_seal *seal,
		const struct gw_use_case *uc, char *why, size_t whylen);

#define GW_RULE_NOT_NEEDED   (-1) /* approval: none; windows and quotas alone apply */
#define GW_RULE_NO_MATCH     (-2) /* approval required but no rule covers this case */
#define GW_RULE_NOT_ALLOWED  (-3) /* not among the seal's users, or conditions fail */

/* The first rule of seal matching (applicant, uc): its index (>= 0), or one
 * of GW_RULE_* above with why in words (for GW_RULE_NOT_NEEDED why says so
 * too). Checks gw_policy_may_use and gw_policy_check_conditions first. */
int gw_policy_match_rule(const struct gw_policy *p, const struct gw_seal *seal,
		const struct gw_person *applicant, const struct gw_use_case *uc,
		char *why, size_t whylen);

/* The people who may approve level k (0-based) of rule for applicant, and
 * how many of them must. RELATIVE_HEAD: the head of the applicant's
 * department `up` levels higher (clamped at the root), walking further up
 * while a department has no head or its head is the applicant. ROLE: every
 * holder of the role. The applicant is never in the list. *out is
 * malloc'd (free() it; the pointers are into p). Returns 0, or -1 with err
 * when fewer people qualify than the quorum needs. */
int gw_policy_level_approvers(const struct gw_policy *p, const struct gw_rule *rule,
		size_t k, const struct gw_person *applicant,
		const struct gw_person ***out, size_t *n, unsigned *quorum,
		char *err, size_t errlen);
/* True when approver is one of the people gw_policy_level_approvers lists. */
bool gw_policy_may_approve(const struct gw_policy *p, const struct gw_rule *rule,
		size_t k, const struct gw_person *applicant, const struct gw_person *approver);

/* Time: the seal's zone (its timezone, else the organization's) read from
 * the system's TZif files at load, evaluated without touching TZ/tzset. */
/* Local wall-clock time of t in the seal's zone (tm_gmtoff set, tm_zone NULL). */
void gw_policy_local_time(const struct gw_seal *seal, time_t t, struct tm *out);
/* True when t lies in one of the seal's windows (or it has none). */
bool gw_policy_in_window(const struct gw_seal *seal, time_t t);
/* Quota windows: local calendar day as days since 1970-01-01 and local
 * month as year * 12 + (month - 1), both in the seal's zone. */
int64_t gw_policy_local_day(const struct gw_seal *seal, time_t t);
int64_t gw_policy_local_month(const struct gw_seal *seal, time_t t);
/* UTC offset (seconds east) of zone at t; zone from a seal's tz. */
long gw_tz_offset(const struct gw_tz *zone, time_t t);
const char *gw_tz_name(const struct gw_tz *zone);

/* Mechanisms by their PKCS#11 names without "CKM_" (docs/policy.md). */
bool gw_policy_mechanism_allowed(const struct gw_seal *seal, unsigned long mech);
const char *gw_policy_mechanism_name(unsigned long mech);      /* NULL if unknown */
int gw_policy_mechanism_from_name(const char *name, unsigned long *mech);

/* Human-readable, multi-line explanation shared by `sealctl policy
 * explain` and the gateway's denial reasons: the seal's users, conditions,
 * windows (and whether now is inside one), quotas, mechanisms, MFA and
 * approval rules; with who: whether they may apply; with uc too: which rule
 * matches and who can approve each level. seal NULL explains every seal
 * (every seal who may use, when who is given). malloc'd, NULL on ENOMEM. */
char *gw_policy_explain(const struct gw_policy *p, const struct gw_seal *seal,
		const struct gw_person *who, const struct gw_use_case *uc, time_t now);

#endif
