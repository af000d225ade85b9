/*
 * Unit tests of sites in the policy and the configuration (docs/sites.md):
 * the group's sites and a seal's site, a typo refused at its line; the
 * configuration's store (sqlite:PATH, a path, a PostgreSQL URL; store_path
 * its old name), site and backend_token: none, and a store URL shown
 * without its password.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "policy.h"

/* ---- the policy ---- */

#define ORG \
	"version: 1\n" \
	"organization:\n" \
	"  name: T\n" \
	"  timezone: UTC\n" \
	"  departments:\n" \
	"    - {id: hq}\n" \
	"  people:\n" \
	"    - {id: ed, department: hq, roles: [employee]}\n"

#define SEAL(id, more) \
	"  - id: " id "\n" \
	"    name: " id " seal\n" \
	"    key: \"pkcs11:object=" id "\"\n" \
	"    users: {people: [ed]}\n" \
	"    approval: none\n" more

#define SITES "sites:\n  - {id: hq, name: Headquarters}\n  - {id: shanghai}\n"

static int
parse(const char *text, struct gw_policy **p, char *err, size_t errlen)
{
	return gw_policy_parse("t.yaml", (const uint8_t *)text, strlen(text), p, err, errlen);
}

static struct gw_policy *
load(const char *text)
{
	struct gw_policy *p = NULL;
	char err[1024];

	cr_assert_eq(parse(text, &p, err, sizeof(err)), 0, "%s", err);
	return p;
}

/* The error is at needle's line and column, and says msg. */
static void
expect_error(const char *text, const char *needle, const char *msg)
{
	struct gw_policy *p = NULL;
	char err[1024], want[64];
	const char *at = strstr(text, needle);
	unsigned line = 1, col = 1;

	cr_assert_not_null(at, "test bug: needle '%s' not in text", needle);
	for (const char *s = text; s < at; s++) {
		if (*s == '\n') {
			line++;
			col = 1;
		} else {
			col++;
		}
	}
	cr_assert_eq(parse(text, &p, err, sizeof(err)), -1, "loaded, expected: %s", msg);
	cr_assert_null(p);
	snprintf(want, sizeof(want), "t.yaml:%u:%u: ", line, col);
	cr_assert(strncmp(err, want, strlen(want)) == 0, "error '%s', expected at %s", err, want);
	cr_assert_not_null(strstr(err, msg), "error '%s' does not say '%s'", err, msg);
}

Test(sites, default_main)
{
	struct gw_policy *p = load(ORG "seals:\n" SEAL("a", ""));

	cr_assert_str_eq(gw_policy_seal(p, "a")->site, "main", "a policy without sites means site main");
	cr_assert_not_null(gw_policy_site(p, "main"));
	cr_assert_null(gw_policy_site(p, "hq"));
	cr_assert_eq(p->n_sites, 0);
	gw_policy_unref(&p);
}

Test(sites, seals_of_sites)
{
	struct gw_policy *p = load(ORG SITES "seals:\n" SEAL("a", "    site: hq\n")
	                           SEAL("b", "    site: shanghai\n"));

	cr_assert_eq(p->n_sites, 2);
	cr_assert_str_eq(gw_policy_site(p, "hq")->name, "Headquarters");
	cr_assert_null(gw_policy_site(p, "shanghai")->name);
	cr_assert_null(gw_policy_site(p, "main"), "listed sites are the only ones");
	cr_assert_str_eq(gw_policy_seal(p, "a")->site, "hq");
	cr_assert_str_eq(gw_policy_seal(p, "b")->site, "shanghai");
	{
		char *text = gw_policy_explain(p, gw_policy_seal(p, "a"), NULL, NULL, 0);

		cr_assert_not_null(text);
		cr_assert_not_null(strstr(text, "\n  site: hq (Headquarters): signed with at that "
		                          "site's gateway\n"), "%s", text);
		free(text);
	}
	gw_policy_unref(&p);
}

Test(sites, typos_refused_at_their_line)
{
	expect_error(ORG SITES "seals:\n" SEAL("a", "    site: shanghia\n"), "shanghia",
	             "unknown site 'shanghia' (the policy's sites: hq, shanghai)");
	expect_error(ORG "seals:\n" SEAL("a", "    site: hq\n"), "hq\n",
	             "unknown site 'hq' (the policy's sites: main)");
	expect_error(ORG SITES "seals:\n" SEAL("a", "    sit: hq\n"), "sit:",
	             "unknown key 'sit' in a seal");
	/* Sites listed without main: a seal must name its own. */
	expect_error(ORG SITES "seals:\n" SEAL("a", ""), "id: a",
	             "seal 'a' has no site: and the policy's sites do not include main");
	expect_error(ORG "sites:\n  - {id: hq}\n  - {id: Shanghai}\n" "seals: []\n", "Shanghai",
	             "'Shanghai' is not a valid site id");
	expect_error(ORG "sites:\n  - {id: hq}\n  - {id: hq}\n" "seals: []\n", "hq}\nseals",
	             "site 'hq' is listed twice (first on line 10)");
	expect_error(ORG "sites:\n  - {id: hq, city: x}\n" "seals: []\n", "city",
	             "unknown key 'city' in a site");
	expect_error(ORG "sites: []\n" "seals: []\n", "[]\nseals", "sites is empty");
	expect_error(ORG "sites:\n  - {name: x}\n" "seals: []\n", "{name", "site: id missing");
}

/* ---- the configuration ---- */

#define CFG_HEAD "backend_token: \"pkcs11:token=t\"\ntoken_pin_file: pin\npolicy_path: p.yaml\n"

static struct gw_config *
config(const char *text)
{
	struct gw_config *c = NULL;
	char err[1024];

	cr_assert_eq(gw_config_parse("/etc/sg/c.yaml", (const uint8_t *)text, strlen(text), &c, err,
	                             sizeof(err)), 0, "%s", err);
	return c;
}

static void
config_error(const char *text, const char *want)
{
	struct gw_config *c = NULL;
	char err[1024];

	cr_assert_eq(gw_config_parse("/etc/sg/c.yaml", (const uint8_t *)text, strlen(text), &c, err,
	                             sizeof(err)), -1, "loaded, expected %s", want);
	cr_assert_null(c);
	cr_assert_str_eq(err, want);
}

Test(site_config, store_forms)
{
	struct gw_config *c;

	c = config(CFG_HEAD "store: sqlite:s.db\n");
	cr_assert_str_eq(c->store_path, "/etc/sg/s.db");
	cr_assert_str_eq(c->store_url, "/etc/sg/s.db");
	cr_assert_str_eq(c->site, "main", "the default site");
	cr_assert_not(c->no_token);
	gw_config_free(&c);
	c = config(CFG_HEAD "store: /var/lib/sg/s.db\nsite: shanghai\n");
	cr_assert_str_eq(c->store_path, "/var/lib/sg/s.db");
	cr_assert_str_eq(c->site, "shanghai");
	gw_config_free(&c);
	c = config(CFG_HEAD "store_path: old.db\n");
	cr_assert_str_eq(c->store_path, "/etc/sg/old.db", "store_path: the old name");
	gw_config_free(&c);
	c = config(CFG_HEAD "store: \"postgresql://sg:s3cret@db.example/sealgate?sslmode=verify-full\"\n");
	cr_assert_null(c->store_path, "a URL is not a file");
	cr_assert_str_eq(c->store_url, "postgresql://sg:s3cret@db.example/sealgate?sslmode=verify-full",
	                 "libpq gets the URL as written");
	cr_assert_str_eq(c->store_shown, "postgresql://sg@db.example/sealgate?sslmode=verify-full");
	gw_config_free(&c);
	c = config(CFG_HEAD "store: postgres:///sealgate?host=/run/pg&password=pw&user=sg\n");
	cr_assert_str_eq(c->store_shown, "postgres:///sealgate?host=/run/pg&password=(hidden)&user=sg");
	gw_config_free(&c);
}

Test(site_config, store_errors)
{
	config_error(CFG_HEAD "store: a.db\nstore_path: b.db\n",
	             "/etc/sg/c.yaml:4:8: store and store_path are both given (store_path is the old "
	             "name of a SQLite store): keep store only");
	config_error(CFG_HEAD, "/etc/sg/c.yaml:1:1: store: missing (required: sqlite:PATH, a path "
	             "or a postgresql:// URL)");
	config_error(CFG_HEAD "store: \"mysql://u:pw@h/db\"\n",
	             "/etc/sg/c.yaml:4:8: store: unknown kind of store (sqlite:PATH, a path, or "
	             "postgresql://…)");
	config_error(CFG_HEAD "store: \"sqlite:\"\n", "/etc/sg/c.yaml:4:8: store: sqlite: names no file");
	config_error(CFG_HEAD "store: s.db\nsite: Shang Hai\n",
	             "/etc/sg/c.yaml:5:7: site must be 1 to 32 of a-z, 0-9, '-' and '_', not 'Shang Hai'");
}

Test(site_config, management_gateway)
{
	struct gw_config *c = config("backend_token: none\nstore: s.db\npolicy_path: p.yaml\nsite: hq\n");

	cr_assert(c->no_token);
	cr_assert_null(c->backend_token);
	cr_assert_null(c->token_pin_file, "no PIN file needed");
	gw_config_free(&c);
	config_error("backend_token: none\ntoken_pin_file: pin\nstore: s.db\npolicy_path: p.yaml\n",
	             "/etc/sg/c.yaml:2:17: token_pin_file: a gateway with backend_token: none has no "
	             "token for it (leave it out)");
	config_error("backend_token: none\nstore: s.db\npolicy_path: p.yaml\n"
	             "audit_key: \"pkcs11:object=a\"\n",
	             "/etc/sg/c.yaml:4:12: audit_key: a gateway with backend_token: none has no token "
	             "for it (leave it out)");
	/* A TOTP key file is a management gateway's: a site's pair is on its token. */
	c = config("backend_token: none\nstore: s.db\npolicy_path: p.yaml\nsite: hq\n"
	           "totp_key_file: hq-totp.pem\n");
	cr_assert_str_eq(c->totp_key_file, "/etc/sg/hq-totp.pem");
	gw_config_free(&c);
	config_error(CFG_HEAD "store: s.db\ntotp_key_file: hq-totp.pem\n",
	             "/etc/sg/c.yaml:5:16: totp_key_file: only a gateway with backend_token: none has "
	             "one (a site's TOTP key pair is on its token)");
}

Test(site_config, redact_url)
{
	char out[256];

	gw_config_redact_url("postgresql://u:p@ss:w@rd@h:5432/db", out, sizeof(out));
	cr_assert_str_eq(out, "postgresql://u@h:5432/db", "a password holding '@' and ':'");
	gw_config_redact_url("postgresql://h/db?PassWord=x&sslmode=require", out, sizeof(out));
	cr_assert_str_eq(out, "postgresql://h/db?password=(hidden)&sslmode=require");
	gw_config_redact_url("postgresql://u@h/db?passfile=/etc/sg/pgpass", out, sizeof(out));
	cr_assert_str_eq(out, "postgresql://u@h/db?passfile=/etc/sg/pgpass", "a passfile is no secret");
	gw_config_redact_url("/var/lib/sg/s.db", out, sizeof(out));
	cr_assert_str_eq(out, "/var/lib/sg/s.db");
	gw_config_redact_url("postgresql://u:secret@h/db", out, 12);
	cr_assert_null(strstr(out, "secret"), "cut short, still no password: %s", out);
}
