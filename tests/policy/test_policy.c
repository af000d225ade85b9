/*
 * Unit tests of the seal policy: the demo company loads, every validation
 * error points at its file:line:col, and the pure evaluation (accounts,
 * audiences, rules, approvers, windows, quota days in a zone) behaves at
 * its boundaries.
 */
#include <criterion/criterion.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "policy.h"

/* ---- helpers ---- */

static char *
slurp(const char *path)
{
	FILE *f = fopen(path, "rb");
	char *buf;
	long n;

	cr_assert_not_null(f, "cannot open %s", path);
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = calloc(1, (size_t)n + 1);
	cr_assert_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	return buf;
}

static char *
replace(const char *s, const char *what, const char *with)
{
	size_t wl = strlen(what), nl = strlen(with), cnt = 0;
	const char *p;
	char *out, *o;

	for (p = s; (p = strstr(p, what)) != NULL; p += wl)
		cnt++;
	out = malloc(strlen(s) + cnt * nl + 1);
	for (o = out, p = s;;) {
		const char *q = strstr(p, what);
		if (q == NULL) {
			strcpy(o, p);
			break;
		}
		memcpy(o, p, (size_t)(q - p));
		o += q - p;
		memcpy(o, with, nl);
		o += nl;
		p = q + wl;
	}
	return out;
}

static const char *
source_dir(void)
{
	const char *s = getenv("SEALGATE_SOURCE");
	return s ? s : "../..";
}

/* The demo policy as tools/sandbox writes it, loaded from a temp file. */
static struct gw_policy *
load_demo(void)
{
	char path[4096], tmp[] = "/tmp/sg-policy-XXXXXX", err[512];
	struct gw_policy *p = NULL;
	char *in, *text;
	int fd;

	snprintf(path, sizeof(path), "%s/softhsm-config/acme-policy.yaml.in", source_dir());
	in = slurp(path);
	text = replace(in, "@OS_USER@", "acmeop");
	fd = mkstemp(tmp);
	cr_assert(fd >= 0);
	cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	cr_assert_eq(gw_policy_load(tmp, &p, err, sizeof(err)), 0, "demo policy: %s", err);
	unlink(tmp);
	free(in);
	free(text);
	return p;
}

static int
parse(const char *text, struct gw_policy **p, char *err, size_t errlen)
{
	return gw_policy_parse("t.yaml", (const uint8_t *)text, strlen(text), p, err, errlen);
}

/* Asserts text fails to load with the error at the first occurrence of
 * needle (1-based line:col) and a message containing msg. */
static void
expect_error(const char *text, const char *needle, const char *msg)
{
	struct gw_policy *p = NULL;
	char err[1024], want[64];
	const char *at = strstr(text, needle), *s;
	unsigned line = 1, col = 1;

	cr_assert_not_null(at, "test bug: needle '%s' not in text", needle);
	for (s = text; s < at; s++) {
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

/* A small organization used by the error tests: a seal section is appended. */
#define ORG \
	"version: 1\n" \
	"organization:\n" \
	"  name: T\n" \
	"  timezone: Asia/Shanghai\n" \
	"  departments:\n" \
	"    - {id: hq, head: ceo}\n" \
	"    - {id: ops, parent: hq}\n" \
	"  people:\n" \
	"    - {id: ceo, department: hq, roles: [executive]}\n" \
	"    - {id: ed, department: ops, roles: [employee]}\n"

#define SEAL_HEAD \
	"seals:\n" \
	"  - id: s\n" \
	"    key: \"pkcs11:object=s\"\n" \
	"    users: {departments: [ops]}\n"

/* ---- the demo company ---- */

Test(policy, demo_loads)
{
	struct gw_policy *p = load_demo();
	const struct gw_seal *c, *inv;
	const struct gw_person *svc;

	cr_assert_str_eq(p->org_name, "Acme Trading Co.");
	cr_assert_str_eq(p->timezone, "Asia/Shanghai");
	cr_assert_eq(p->n_departments, 4);
	cr_assert_eq(p->n_people, 8);
	cr_assert_eq(p->n_seals, 5);
	cr_assert_eq(p->refs, 1);
	/* The code-signing seal (osslsigncode, docs/clients.md). */
	c = gw_policy_seal(p, "code");
	cr_assert_not_null(c);
	cr_assert_str_eq(c->key_uri, "pkcs11:object=code-seal;type=private");
	cr_assert_str_eq(c->kind, "code");
	cr_assert(c->approval_required);
	c = gw_policy_seal(p, "contract");
	cr_assert_not_null(c);
	cr_assert_str_eq(c->key_uri, "pkcs11:object=contract-seal;type=private");
	cr_assert_str_eq(c->holder, "legal");
	cr_assert(c->has_amount_ceiling);
	cr_assert_eq(c->amount_ceiling, 100000000);
	cr_assert_eq(c->n_windows, 1);
	cr_assert_eq(c->windows[0].days, 0x7f);
	cr_assert_eq(c->windows[0].from_min, 0);
	cr_assert_eq(c->windows[0].to_min, 24 * 60);
	cr_assert_eq(c->quotas.per_day, 200);
	cr_assert_eq(c->quotas.per_month, 2000);
	cr_assert_eq(c->quotas.total, 0);
	cr_assert_eq(c->quotas.per_person_per_day, 50);
	cr_assert(c->approval_required);
	cr_assert_eq(c->n_rules, 2);
	cr_assert(c->rules[0].has_amount_over);
	cr_assert_eq(c->rules[0].amount_over, 1000000);
	cr_assert_eq(c->rules[0].n_levels, 2);
	cr_assert_eq(c->rules[0].levels[0].kind, GW_LEVEL_RELATIVE_HEAD);
	cr_assert_eq(c->rules[0].levels[1].kind, GW_LEVEL_ROLE);
	cr_assert_str_eq(c->rules[0].levels[1].role, "executive");
	cr_assert_eq(c->rules[0].levels[1].quorum, 1);
	cr_assert_str_eq(c->mfa, "none");
	cr_assert_str_eq(c->timezone, "Asia/Shanghai");
	inv = gw_policy_seal(p, "invoice");
	cr_assert_not(inv->approval_required);
	svc = gw_policy_person(p, "svc-billing");
	cr_assert_eq(svc->n_os_logins, 1);
	cr_assert_str_eq(gw_policy_person(p, "alice")->os_logins[0], "alice");
	cr_assert_eq(p->n_act_as, 1);
	cr_assert_str_eq(p->act_as[0].os_login, "acmeop");
	cr_assert(p->act_as[0].all);
	{
		struct gw_policy *q = gw_policy_ref(p);
		cr_assert(q == p);
		cr_assert_eq(p->refs, 2);
		gw_policy_unref(&q);
		cr_assert_null(q);
		cr_assert_eq(p->refs, 1);
	}
	gw_policy_unref(&p);
	cr_assert_null(p);
}

Test(policy, demo_walkthrough)
{
	struct gw_policy *p = load_demo();
	const struct gw_seal *c = gw_policy_seal(p, "contract");
	const struct gw_person *alice = gw_policy_person(p, "alice");
	const struct gw_person *bob = gw_policy_person(p, "bob");
	const struct gw_person **list;
	struct gw_use_case big = { "contract", "sales", true, 2000000 };
	struct gw_use_case small = { "contract", "sales", true, 1000000 };
	size_t n;
	unsigned q;
	char why[512];

	cr_assert_eq(gw_policy_match_rule(p, c, alice, &big, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(gw_policy_match_rule(p, c, alice, &small, why, sizeof(why)), 1, "%s", why);
	/* alice's head is bob; bob's own application goes to carol (hq). */
	cr_assert_eq(gw_policy_level_approvers(p, &c->rules[0], 0, alice, &list, &n, &q,
	                                       why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(n, 1);
	cr_assert_str_eq(list[0]->id, "bob");
	free(list);
	cr_assert_eq(gw_policy_level_approvers(p, &c->rules[0], 0, bob, &list, &n, &q,
	                                       why, sizeof(why)), 0, "%s", why);
	cr_assert_str_eq(list[0]->id, "carol");
	free(list);
	cr_assert(gw_policy_may_use(p, alice, c));
	/* Sales and Legal use the contract seal; Finance does not. */
	cr_assert_not(gw_policy_may_use(p, gw_policy_person(p, "dave"), c));
	cr_assert(gw_policy_may_use(p, gw_policy_person(p, "frank"), c));
	cr_assert_not(gw_policy_may_use(p, alice, gw_policy_seal(p, "finance")));
	cr_assert(gw_policy_may_use(p, gw_policy_person(p, "dave"), gw_policy_seal(p, "finance")));
	cr_assert_not(gw_policy_may_use(p, alice, gw_policy_seal(p, "invoice")));
	cr_assert(gw_policy_may_use(p, gw_policy_person(p, "svc-billing"), gw_policy_seal(p, "invoice")));
	gw_policy_unref(&p);
}

/* ---- validation errors with positions ---- */

Test(policy_errors, unknown_key)
{
	expect_error(ORG SEAL_HEAD "    approval: none\n    quotass: {per_day: 1}\n",
	             "quotass", "unknown key 'quotass' in a seal");
	expect_error(ORG "  colour: red\n" SEAL_HEAD "    approval: none\n",
	             "colour", "unknown key 'colour' in organization");
}

/* A seal for some device groups (operating equipment): a list of group
 * names, never empty, a misspelt key refused as any other. */
Test(policy_errors, devices)
{
	struct gw_policy *p = NULL;
	const struct gw_seal *s;
	char err[1024];

	cr_assert_eq(parse(ORG SEAL_HEAD "    approval: none\n    devices: [finance-office, local]\n",
	                   &p, err, sizeof(err)), 0, "%s", err);
	s = &p->seals[0];
	cr_assert_eq(s->n_devices, 2);
	cr_assert_str_eq(s->devices[0], "finance-office");
	cr_assert_str_eq(s->devices[1], "local");
	gw_policy_unref(&p);
	cr_assert_eq(parse(ORG SEAL_HEAD "    approval: none\n", &p, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(p->seals[0].n_devices, 0);
	gw_policy_unref(&p);
	expect_error(ORG SEAL_HEAD "    approval: none\n    devices: []\n", "[]",
	             "devices is empty; leave it out to allow any device");
	expect_error(ORG SEAL_HEAD "    approval: none\n    devices: [\"finance office\"]\n",
	             "[\"finance", "'finance office' is not a device group");
	expect_error(ORG SEAL_HEAD "    approval: none\n    device: [finance-office]\n",
	             "device:", "unknown key 'device' in a seal");
	expect_error(ORG SEAL_HEAD "    approval: none\n    devices: finance-office\n",
	             "finance-office", "devices");
}

/* The SHA-256 of the file at path, as image_sha256: writes it. */
static void
file_sha256_hex(const char *path, char out[65])
{
	static uint8_t buf[GW_SEAL_IMAGE_MAX + 2];
	uint8_t d[32];
	size_t n;
	FILE *f = fopen(path, "rb");

	if (f == NULL) {
		/* a file that is not there: any digest */
		memset(out, '0', 64);
		out[64] = '\0';
		return;
	}
	n = fread(buf, 1, sizeof(buf), f);
	fclose(f);
	cr_assert(EVP_Digest(buf, n, d, NULL, EVP_sha256(), NULL));
	for (int i = 0; i < 32; i++)
		snprintf(out + 2 * i, 3, "%02X", d[i]);
}

/* A seal's image (image:): read and drawn at load, its bytes kept; a
 * relative path, a missing file, one that is not an image and one over
 * 512 KiB refused with the line. */
Test(policy_errors, image)
{
	char dir[] = "/tmp/sg-policy-img-XXXXXX", path[4][256], *text[4], err[1024], hex[65];
	const char *body[3] = {
		"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"10\" height=\"10\">"
		"<rect width=\"10\" height=\"10\" fill=\"#ff0000\"/></svg>",
		"just some words\n", NULL };
	struct gw_policy *p = NULL;
	FILE *f;

	cr_assert(mkdtemp(dir) != NULL);
	for (int i = 0; i < 4; i++)
		snprintf(path[i], sizeof(path[i]), "%s/%d.img", dir, i);
	for (int i = 0; i < 2; i++) {
		cr_assert((f = fopen(path[i], "w")) != NULL);
		fputs(body[i], f);
		fclose(f);
	}
	cr_assert((f = fopen(path[2], "w")) != NULL);
	for (unsigned i = 0; i < GW_SEAL_IMAGE_MAX + 1; i++)
		fputc(' ', f);
	fclose(f);
	for (int i = 0; i < 4; i++) {
		file_sha256_hex(path[i], hex);
		if (asprintf(&text[i], ORG SEAL_HEAD "    approval: none\n    image: %s\n"
		             "    image_sha256: %s\n", path[i], hex) < 0)
			cr_assert_fail("asprintf");
	}
	cr_assert_eq(parse(text[0], &p, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(p->seals[0].image_len, strlen(body[0]));
	cr_assert(memcmp(p->seals[0].image, body[0], strlen(body[0])) == 0);
	gw_policy_unref(&p);
	expect_error(text[1], path[1], "neither a PNG nor an SVG");
	expect_error(text[2], path[2], "larger than 524288 bytes");
	expect_error(text[3], path[3], "cannot be read");
	expect_error(ORG SEAL_HEAD "    approval: none\n    image: seal.png\n", "seal.png",
	             "image must be an absolute path");
	for (int i = 0; i < 4; i++) {
		unlink(path[i]);
		free(text[i]);
	}
	rmdir(dir);
}

/* The policy's hash covers the image's bytes (image_sha256:): the same
 * policy text over a file changed under the same name is refused, saying
 * both digests; an image without its digest is refused, saying the
 * file's; a digest that is not one, or without an image, is refused. */
Test(policy_errors, image_sha256)
{
	char dir[] = "/tmp/sg-policy-imgh-XXXXXX", path[256], *text = NULL, *bare = NULL;
	char err[1024], hex[65], msg[512], now[65], *bad = NULL;
	struct gw_policy *p = NULL;
	FILE *f;

	cr_assert(mkdtemp(dir) != NULL);
	snprintf(path, sizeof(path), "%s/seal.svg", dir);
	cr_assert((f = fopen(path, "w")) != NULL);
	fputs("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"10\" height=\"10\">"
	      "<rect width=\"10\" height=\"10\" fill=\"#ff0000\"/></svg>", f);
	fclose(f);
	file_sha256_hex(path, hex);
	cr_assert(asprintf(&text, ORG SEAL_HEAD "    approval: none\n    image: %s\n"
	                   "    image_sha256: %s\n", path, hex) > 0);
	cr_assert_eq(parse(text, &p, err, sizeof(err)), 0, "%s", err);
	gw_policy_unref(&p);
	/* a blue seal under the same name, the policy's text unchanged */
	cr_assert((f = fopen(path, "w")) != NULL);
	fputs("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"10\" height=\"10\">"
	      "<rect width=\"10\" height=\"10\" fill=\"#0000ff\"/></svg>", f);
	fclose(f);
	file_sha256_hex(path, now);
	for (int i = 0; i < 64; i++)
		now[i] = (char)tolower((unsigned char)now[i]);
	snprintf(msg, sizeof(msg), "its SHA-256 is %s", now);
	expect_error(text, hex, msg);
	cr_assert_eq(parse(text, &p, err, sizeof(err)), -1, "a changed image loaded");
	cr_assert(strstr(err, "is not the image this policy names"), "%s", err);
	/* without its digest: refused, naming the file's */
	cr_assert(asprintf(&bare, ORG SEAL_HEAD "    approval: none\n    image: %s\n", path) > 0);
	snprintf(msg, sizeof(msg), "needs image_sha256: the SHA-256 of the file (now %s)", now);
	expect_error(bare, path, msg);
	cr_assert(asprintf(&bad, ORG SEAL_HEAD "    approval: none\n    image: %s\n"
	                   "    image_sha256: 1234\n", path) > 0);
	expect_error(bad, "1234", "image_sha256 must be 64 hex digits");
	free(bad);
	expect_error(ORG SEAL_HEAD "    approval: none\n    image_sha256: 00\n", "00",
	             "image_sha256 without image");
	free(text);
	free(bare);
	unlink(path);
	rmdir(dir);
}

Test(policy_errors, duplicate_key)
{
	expect_error(ORG SEAL_HEAD "    approval: none\n    key: \"pkcs11:object=t\"\n",
	             "key: \"pkcs11:object=t", "duplicate key 'key'");
}

Test(policy_errors, duplicate_ids)
{
	expect_error("version: 1\norganization:\n  name: T\n  timezone: UTC\n"
	             "  departments:\n    - {id: hq}\n    - {id: hq2}\n    - {id: hq}\n"
	             "seals: []\n", "hq}\nseals", "duplicate department id 'hq' (first declared on line 6)");
	expect_error(ORG "    - {id: ed, department: hq}\nseals: []\n",
	             "ed, department: hq", "duplicate person id 'ed'");
	expect_error(ORG SEAL_HEAD "    approval: none\n"
	             "  - id: s\n    key: \"pkcs11:x\"\n    users: {people: [ed]}\n    approval: none\n",
	             "s\n    key: \"pkcs11:x", "duplicate seal id 's'");
}

Test(policy_errors, unknown_references)
{
	expect_error("version: 1\norganization:\n  name: T\n  timezone: UTC\n"
	             "  departments:\n    - {id: hq}\n    - {id: ops, parent: hx}\nseals: []\n",
	             "hx", "unknown parent department 'hx'");
	expect_error("version: 1\norganization:\n  name: T\n  timezone: UTC\n"
	             "  departments:\n    - {id: hq, head: nobody}\nseals: []\n",
	             "nobody", "unknown person 'nobody' as head of department 'hq'");
	expect_error(ORG "    - {id: zed, department: nowhere}\nseals: []\n",
	             "nowhere", "unknown department 'nowhere' for person 'zed'");
	expect_error(ORG "seals:\n  - id: s\n    key: \"pkcs11:object=s\"\n"
	             "    users: {people: [ed, zed]}\n    approval: none\n",
	             "zed", "unknown person 'zed'");
	expect_error(ORG "seals:\n  - id: s\n    key: \"pkcs11:object=s\"\n"
	             "    users: {departments: [sales]}\n    approval: none\n",
	             "sales", "unknown department 'sales'");
	expect_error(ORG "seals:\n  - id: s\n    key: \"pkcs11:object=s\"\n"
	             "    users: {roles: [wizard]}\n    approval: none\n",
	             "wizard", "no one holds role 'wizard'");
	expect_error(ORG SEAL_HEAD "    holder: legal\n    approval: none\n",
	             "legal", "unknown department 'legal' as holder");
	expect_error(ORG "  act_as:\n    - {os_login: op, accounts: [ed, zed]}\n" SEAL_HEAD
	             "    approval: none\n", "zed", "act_as names unknown account 'zed'");
}

Test(policy_errors, department_cycle)
{
	expect_error("version: 1\norganization:\n  name: T\n  timezone: UTC\n"
	             "  departments:\n    - {id: a, parent: c}\n    - {id: b, parent: a}\n"
	             "    - {id: c, parent: b}\n    - {id: d}\nseals: []\n",
	             "c}\n    - {id: b", "department 'a' is its own ancestor");
	expect_error("version: 1\norganization:\n  name: T\n  timezone: UTC\n"
	             "  departments:\n    - {id: a}\n    - {id: b, parent: b}\nseals: []\n",
	             "b}\nseals", "department 'b' is its own ancestor");
}

Test(policy_errors, levels)
{
	expect_error(ORG SEAL_HEAD "    approval:\n      rules:\n        - levels: [{role: wizard}]\n",
	             "wizard", "no one holds role 'wizard'");
	expect_error(ORG SEAL_HEAD "    approval:\n      rules:\n"
	             "        - levels: [{role: executive, quorum: 2}]\n",
	             "2}]", "quorum 2 is more than the 1 person holding role 'executive'");
	expect_error(ORG SEAL_HEAD "    approval:\n      rules:\n"
	             "        - levels: [{role: executive, quorum: 0}]\n",
	             "0}]", "quorum must be at least 1");
	expect_error(ORG SEAL_HEAD "    approval:\n      rules:\n        - levels: []\n",
	             "[]", "rule 1 has no levels");
	expect_error(ORG SEAL_HEAD "    approval:\n      rules:\n        - when: {amount_over: 5}\n",
	             "when", "rule 1: levels missing");
	expect_error(ORG SEAL_HEAD "    approval:\n      rules:\n        - levels: [{head_of: boss}]\n",
	             "boss", "head_of must be applicant");
	expect_error(ORG SEAL_HEAD "    approval:\n      rules:\n"
	             "        - levels: [{head_of: applicant, role: executive}]\n",
	             "{head_of", "a level is either");
	expect_error(ORG SEAL_HEAD "    approval:\n      rules:\n"
	             "        - levels: [{head_of: applicant, quorum: 2}]\n",
	             "quorum", "quorum applies to role levels");
	expect_error(ORG SEAL_HEAD "    approval:\n      rules:\n"
	             "        - levels: [{role: executive, up: 1}]\n",
	             "up", "up applies to head_of levels");
}

Test(policy_errors, rules)
{
	expect_error(ORG SEAL_HEAD "    approval:\n      rules:\n"
	             "        - levels: [{head_of: applicant}]\n"
	             "        - when: {amount_over: 10}\n          levels: [{head_of: applicant}]\n",
	             "when: {amount_over: 10}", "rule 2 can never apply: rule 1 (line 17) has no conditions");
	expect_error(ORG SEAL_HEAD "    approval: none\n    rules:\n      - levels: [{head_of: applicant}]\n",
	             "rules", "rules belong under approval");
	expect_error(ORG SEAL_HEAD "    approval:\n      rules: []\n",
	             "[]", "approval has no rules");
	expect_error(ORG SEAL_HEAD "    approval: maybe\n", "maybe", "approval must be none");
	expect_error(ORG SEAL_HEAD, "id: s", "approval missing");
	expect_error(ORG SEAL_HEAD "    amount_ceiling: 100\n    approval:\n      rules:\n"
	             "        - when: {amount_over: 100}\n          levels: [{head_of: applicant}]\n",
	             "100}", "not below the seal's amount_ceiling 100");
	expect_error(ORG SEAL_HEAD "    approval:\n      rules:\n"
	             "        - when: {amount_over: 10, amount_under: 11}\n"
	             "          levels: [{head_of: applicant}]\n",
	             "11}", "no whole amount is over 10 and under 11");
	expect_error(ORG SEAL_HEAD "    document_types: [contract]\n    approval:\n      rules:\n"
	             "        - when: {document_types: [invoice]}\n"
	             "          levels: [{head_of: applicant}]\n",
	             "invoice", "document type 'invoice' is not allowed for seal 's'");
}

Test(policy_errors, seal_fields)
{
	expect_error(ORG "seals:\n  - id: s\n    key: \"pkcs11:object=s\"\n    approval: none\n",
	             "id: s", "seal 's' has no users");
	expect_error(ORG "seals:\n  - id: s\n    key: \"pkcs11:object=s\"\n    users: {}\n"
	             "    approval: none\n", "{}", "seal 's' has no users");
	expect_error(ORG "seals:\n  - id: s\n    key: \"/dev/key\"\n    users: {people: [ed]}\n"
	             "    approval: none\n", "\"/dev", "key must be a PKCS#11 URI");
	expect_error(ORG SEAL_HEAD "    approval: none\n    mechanisms: [SHA256_RSA_PKCS, RSA_MAGIC]\n",
	             "RSA_MAGIC", "unknown mechanism 'RSA_MAGIC'");
	expect_error(ORG SEAL_HEAD "    approval: none\n    quotas: {per_day: -1}\n",
	             "-1", "per_day must not be negative");
	expect_error(ORG SEAL_HEAD "    approval: none\n    quotas: {per_month: 0}\n",
	             "0}", "0 is not a limit");
	expect_error(ORG SEAL_HEAD "    approval: none\n    quotas: {total: 12abc}\n",
	             "12abc", "total must be a whole number");
	expect_error(ORG SEAL_HEAD "    approval: none\n    quotas: {total: 99999999999999999999}\n",
	             "9999", "out of range");
	expect_error(ORG SEAL_HEAD "    approval: none\n    amount_ceiling: -5\n",
	             "-5", "amount_ceiling must not be negative");
	expect_error(ORG SEAL_HEAD "    approval: none\n    mfa: sms\n", "sms", "mfa must be none, login");
	expect_error(ORG SEAL_HEAD "    approval: none\n    timezone: Mars/Olympus\n",
	             "Mars", "unknown time zone 'Mars/Olympus'");
	expect_error(ORG SEAL_HEAD "    approval: none\n    timezone: ../../etc/passwd\n",
	             "../", "unknown time zone");
	expect_error("version: 1\norganization:\n  name: T\n  timezone: Europe\n"
	             "  departments: [{id: a}]\nseals: []\n", "Europe", "unknown time zone 'Europe'");
	expect_error(ORG "seals:\n  - id: \"bad id\"\n", "\"bad", "is not a valid id");
}

Test(policy_errors, time_windows)
{
	expect_error(ORG SEAL_HEAD "    approval: none\n    time_windows:\n"
	             "      - {days: [mon], from: \"18:00\", to: \"09:00\"}\n",
	             "\"09:00\"", "to 09:00 is not after from 18:00");
	expect_error(ORG SEAL_HEAD "    approval: none\n    time_windows:\n"
	             "      - {days: [mon], from: \"09:00\", to: \"24:30\"}\n",
	             "\"24:30\"", "is not a time of day");
	expect_error(ORG SEAL_HEAD "    approval: none\n    time_windows:\n"
	             "      - {days: [mon], from: \"24:00\", to: \"24:00\"}\n",
	             "\"24:00\", to", "is not a time of day");
	expect_error(ORG SEAL_HEAD "    approval: none\n    time_windows:\n"
	             "      - {days: [mon, funday], from: \"09:00\", to: \"10:00\"}\n",
	             "funday", "'funday' is not a day");
	expect_error(ORG SEAL_HEAD "    approval: none\n    time_windows:\n"
	             "      - {days: [], from: \"09:00\", to: \"10:00\"}\n",
	             "[]", "days is empty");
	expect_error(ORG SEAL_HEAD "    approval: none\n    time_windows:\n"
	             "      - {days: [mon], from: \"9:00\", to: \"10:00\"}\n",
	             "\"9:00\"", "from must be a time \"HH:MM\"");
	expect_error(ORG SEAL_HEAD "    approval: none\n    time_windows:\n"
	             "      - {days: [mon], from: \"09:00\"}\n",
	             "{days", "needs days, from and to");
}

Test(policy_errors, yaml_level)
{
	expect_error("- a\n- b\n", "- a", "must be a mapping");
	expect_error(ORG SEAL_HEAD "    approval: &x none\n", "&x", "anchors");
	expect_error("a: 1\n---\nb: 2\n", "---", "only one YAML document");
	expect_error(ORG SEAL_HEAD "    approval: !!str none\n", "!!str", "tags");
	struct gw_policy *p = NULL;
	char err[256];

	/* libyaml's own syntax errors keep its position and words. */
	cr_assert_eq(parse("organization: [\n", &p, err, sizeof(err)), -1);
	cr_assert_str_eq(err, "t.yaml:2:1: did not find expected node content while parsing a flow node");
	cr_assert_eq(parse("", &p, err, sizeof(err)), -1);
	cr_assert_str_eq(err, "t.yaml: empty file");
	cr_assert_eq(parse("version: 2\n", &p, err, sizeof(err)), -1);
	cr_assert_str_eq(err, "t.yaml:1:10: version must be at most 1 (got 2)");
}

Test(policy_errors, missing_file)
{
	struct gw_policy *p = NULL;
	char err[256];
	cr_assert_eq(gw_policy_load("/nonexistent/policy.yaml", &p, err, sizeof(err)), -1);
	cr_assert_str_eq(err, "/nonexistent/policy.yaml: No such file or directory");
}

/* ---- evaluation on a richer organization ---- */

static const char *eval_policy =
	"version: 1\n"
	"organization:\n"
	"  name: Test Co\n"
	"  timezone: Europe/Berlin\n"
	"  departments:\n"
	"    - {id: hq, name: HQ, head: ceo}\n"
	"    - {id: ops, parent: hq}\n"
	"    - {id: east, parent: ops, head: olga}\n"
	"    - {id: east-lab, parent: east}\n"
	"    - {id: fin, parent: hq, head: fiona}\n"
	"  people:\n"
	"    - {id: ceo, department: hq, roles: [executive]}\n"
	"    - {id: vp, department: hq, roles: [executive]}\n"
	"    - {id: olga, department: east, roles: [manager]}\n"
	"    - {id: ed, department: east-lab, roles: [employee]}\n"
	"    - {id: fiona, department: fin, roles: [manager]}\n"
	"    - {id: fred, department: fin, roles: [employee], os_logins: [fred, shared]}\n"
	"    - {id: frida, department: fin, roles: [employee], os_logins: [shared]}\n"
	"    - {id: bob, department: fin, os_logins: [robert]}\n"
	"    - {id: aud, department: hq, roles: [auditor]}\n"
	"  act_as:\n"
	"    - {os_login: ops-robot, accounts: [ed, olga]}\n"
	"    - {os_login: admin, accounts: all}\n"
	"seals:\n"
	"  - id: contract\n"
	"    key: \"pkcs11:object=contract\"\n"
	"    document_types: [contract, nda]\n"
	"    business_scopes: [sales, hr]\n"
	"    amount_ceiling: 1000000\n"
	"    timezone: Asia/Shanghai\n"
	"    time_windows:\n"
	"      - {days: [mon, tue, wed, thu, fri], from: \"09:00\", to: \"18:00\"}\n"
	"      - {days: [sat], from: \"10:00\", to: \"24:00\"}\n"
	"    quotas: {per_day: 10, per_month: 100, total: 1000, per_person_per_day: 2}\n"
	"    mechanisms: [SHA256_RSA_PKCS, CKM_ECDSA_SHA256]\n"
	"    users: {departments: [ops], people: [fiona], roles: [auditor]}\n"
	"    mfa: per_signature\n"
	"    approval:\n"
	"      rules:\n"
	"        - when: {amount_over: 500000}\n"
	"          levels: [{head_of: applicant}, {head_of: applicant, up: 2}, {role: executive, quorum: 2}]\n"
	"        - when: {amount_under: 1000, document_types: [nda]}\n"
	"          levels: [{head_of: applicant}]\n"
	"        - when: {departments: [fin], business_scopes: [hr]}\n"
	"          levels: [{role: manager}]\n"
	"        - levels: [{head_of: applicant}, {role: executive}]\n"
	"  - id: stamp\n"
	"    key: \"pkcs11:object=stamp\"\n"
	"    users: {people: [ed]}\n"
	"    approval: none\n"
	"  - id: picky\n"
	"    key: \"pkcs11:object=picky\"\n"
	"    users: {people: [ed]}\n"
	"    approval:\n"
	"      rules:\n"
	"        - when: {amount_over: 10}\n"
	"          levels: [{role: manager}]\n"
	"  - id: berlin\n"
	"    key: \"pkcs11:object=berlin\"\n"
	"    time_windows:\n"
	"      - {days: [sun], from: \"00:00\", to: \"03:00\"}\n"
	"    users: {people: [ed]}\n"
	"    approval: none\n";

static struct gw_policy *
load_eval(void)
{
	struct gw_policy *p = NULL;
	char err[512];
	cr_assert_eq(parse(eval_policy, &p, err, sizeof(err)), 0, "%s", err);
	return p;
}

#define PERSON(id) gw_policy_person(p, id)

Test(policy_eval, accounts)
{
	struct gw_policy *p = load_eval();
	char err[256];

	cr_assert_eq(gw_policy_resolve_account(p, "ed", NULL, err, sizeof(err)), PERSON("ed"));
	cr_assert_eq(gw_policy_resolve_account(p, "robert", NULL, err, sizeof(err)), PERSON("bob"));
	/* bob logs in as robert: OS user "bob" is somebody else. */
	cr_assert_null(gw_policy_resolve_account(p, "bob", NULL, err, sizeof(err)));
	cr_assert_not_null(strstr(err, "not a sealgate account"), "%s", err);
	/* Two people share a login: ambiguous unless one is named. */
	cr_assert_null(gw_policy_resolve_account(p, "shared", NULL, err, sizeof(err)));
	cr_assert_not_null(strstr(err, "belongs to 2 accounts"), "%s", err);
	cr_assert_eq(gw_policy_resolve_account(p, "shared", "frida", err, sizeof(err)), PERSON("frida"));
	cr_assert_eq(gw_policy_resolve_account(p, "shared", "fred", err, sizeof(err)), PERSON("fred"));
	/* fred's own login "fred" resolves to him although "shared" is his too. */
	cr_assert_eq(gw_policy_resolve_account(p, "fred", NULL, err, sizeof(err)), PERSON("fred"));
	/* act_as list */
	cr_assert_eq(gw_policy_resolve_account(p, "ops-robot", "ed", err, sizeof(err)), PERSON("ed"));
	cr_assert_eq(gw_policy_resolve_account(p, "ops-robot", "olga", err, sizeof(err)), PERSON("olga"));
	cr_assert_null(gw_policy_resolve_account(p, "ops-robot", "fiona", err, sizeof(err)));
	cr_assert_str_eq(err, "OS login 'ops-robot' may not act as 'fiona'");
	cr_assert_null(gw_policy_resolve_account(p, "ops-robot", NULL, err, sizeof(err)));
	/* act_as all */
	cr_assert_eq(gw_policy_resolve_account(p, "admin", "ceo", err, sizeof(err)), PERSON("ceo"));
	cr_assert_eq(gw_policy_resolve_account(p, "admin", "bob", err, sizeof(err)), PERSON("bob"));
	/* refused / unknown */
	cr_assert_null(gw_policy_resolve_account(p, "ed", "olga", err, sizeof(err)));
	cr_assert_str_eq(err, "OS login 'ed' may not act as 'olga'");
	cr_assert_null(gw_policy_resolve_account(p, "admin", "nobody", err, sizeof(err)));
	cr_assert_str_eq(err, "there is no sealgate account 'nobody'");
	cr_assert_null(gw_policy_resolve_account(p, "", NULL, err, sizeof(err)));
	gw_policy_unref(&p);
}

Test(policy_eval, may_use_and_departments)
{
	struct gw_policy *p = load_eval();
	const struct gw_seal *c = gw_policy_seal(p, "contract");

	cr_assert(gw_policy_dept_within(p, "east-lab", "hq"));
	cr_assert(gw_policy_dept_within(p, "east-lab", "east-lab"));
	cr_assert_not(gw_policy_dept_within(p, "hq", "ops"));
	cr_assert_not(gw_policy_dept_within(p, "fin", "ops"));
	cr_assert_not(gw_policy_dept_within(p, "nowhere", "hq"));
	cr_assert(gw_policy_may_use(p, PERSON("ed"), c));      /* east-lab under ops */
	cr_assert(gw_policy_may_use(p, PERSON("olga"), c));    /* east under ops */
	cr_assert(gw_policy_may_use(p, PERSON("fiona"), c));   /* by name */
	cr_assert(gw_policy_may_use(p, PERSON("aud"), c));     /* by role */
	cr_assert_not(gw_policy_may_use(p, PERSON("ceo"), c)); /* hq is above ops, not in it */
	cr_assert_not(gw_policy_may_use(p, PERSON("fred"), c));
	cr_assert_not(gw_policy_may_use(p, NULL, c));
	cr_assert(gw_person_has_role(PERSON("fiona"), "manager"));
	cr_assert_not(gw_person_has_role(PERSON("fiona"), "executive"));
	cr_assert_null(gw_policy_department(p, "nowhere"));
	cr_assert_str_eq(gw_policy_department(p, "east")->head, "olga");
	gw_policy_unref(&p);
}

static int
match(const struct gw_policy *p, const char *seal, const char *who, const char *type,
      const char *scope, bool has_amount, int64_t amount, char *why, size_t whylen)
{
	struct gw_use_case uc = { type, scope, has_amount, amount };
	return gw_policy_match_rule(p, gw_policy_seal(p, seal), gw_policy_person(p, who),
	                            &uc, why, whylen);
}

Test(policy_eval, rule_matching)
{
	struct gw_policy *p = load_eval();
	char why[512];

	/* amount_over is strict */
	cr_assert_eq(match(p, "contract", "ed", "contract", "sales", true, 500000, why, sizeof(why)), 3, "%s", why);
	cr_assert_eq(match(p, "contract", "ed", "contract", "sales", true, 500001, why, sizeof(why)), 0, "%s", why);
	cr_assert_str_eq(why, "rule 1 of seal contract (policy line 40) applies");
	/* amount_under is strict, and needs the type too */
	cr_assert_eq(match(p, "contract", "ed", "nda", "sales", true, 999, why, sizeof(why)), 1, "%s", why);
	cr_assert_eq(match(p, "contract", "ed", "nda", "sales", true, 1000, why, sizeof(why)), 3, "%s", why);
	cr_assert_eq(match(p, "contract", "ed", "contract", "sales", true, 999, why, sizeof(why)), 3, "%s", why);
	/* departments (with sub-departments) and scopes */
	cr_assert_eq(match(p, "contract", "fiona", "contract", "hr", true, 10, why, sizeof(why)), 2, "%s", why);
	cr_assert_eq(match(p, "contract", "fiona", "contract", "sales", true, 10, why, sizeof(why)), 3, "%s", why);
	cr_assert_eq(match(p, "contract", "ed", "contract", "hr", true, 10, why, sizeof(why)), 3, "%s", why);
	/* first match wins: both rule 2 and rule 3 fit */
	cr_assert_eq(match(p, "contract", "fiona", "nda", "hr", true, 999, why, sizeof(why)), 1, "%s", why);
	/* not allowed: not a user, conditions */
	cr_assert_eq(match(p, "contract", "fred", "contract", "sales", true, 1, why, sizeof(why)), GW_RULE_NOT_ALLOWED);
	cr_assert_str_eq(why, "fred (fred) is not among the users of seal contract");
	cr_assert_eq(match(p, "contract", "ed", "invoice", "sales", true, 1, why, sizeof(why)), GW_RULE_NOT_ALLOWED);
	cr_assert_not_null(strstr(why, "document type 'invoice'"), "%s", why);
	cr_assert_eq(match(p, "contract", "ed", NULL, "sales", true, 1, why, sizeof(why)), GW_RULE_NOT_ALLOWED);
	cr_assert_not_null(strstr(why, "needs the document type"), "%s", why);
	cr_assert_eq(match(p, "contract", "ed", "contract", "it", true, 1, why, sizeof(why)), GW_RULE_NOT_ALLOWED);
	cr_assert_eq(match(p, "contract", "ed", "contract", NULL, true, 1, why, sizeof(why)), GW_RULE_NOT_ALLOWED);
	cr_assert_eq(match(p, "contract", "ed", "contract", "sales", false, 0, why, sizeof(why)), GW_RULE_NOT_ALLOWED);
	cr_assert_not_null(strstr(why, "needs the amount"), "%s", why);
	cr_assert_eq(match(p, "contract", "ed", "contract", "sales", true, 1000000, why, sizeof(why)), 0);
	cr_assert_eq(match(p, "contract", "ed", "contract", "sales", true, 1000001, why, sizeof(why)), GW_RULE_NOT_ALLOWED);
	cr_assert_str_eq(why, "amount 1000001 is over the ceiling 1000000 of seal contract");
	cr_assert_eq(match(p, "contract", "ed", "contract", "sales", true, -1, why, sizeof(why)), GW_RULE_NOT_ALLOWED);
	/* no approval needed; approval needed but no rule fits */
	cr_assert_eq(match(p, "stamp", "ed", NULL, NULL, false, 0, why, sizeof(why)), GW_RULE_NOT_NEEDED);
	cr_assert_eq(match(p, "picky", "ed", NULL, NULL, true, 10, why, sizeof(why)), GW_RULE_NO_MATCH);
	cr_assert_not_null(strstr(why, "no approval rule of seal picky covers"), "%s", why);
	cr_assert_eq(match(p, "picky", "ed", NULL, NULL, true, 11, why, sizeof(why)), 0);
	/* an unstated amount never satisfies amount_over: it is refused instead */
	cr_assert_eq(match(p, "picky", "ed", NULL, NULL, false, 0, why, sizeof(why)), GW_RULE_NOT_ALLOWED);

	struct gw_use_case uc = { "contract", "sales", true, 5 };
	cr_assert(gw_policy_check_conditions(gw_policy_seal(p, "contract"), &uc, why, sizeof(why)));
	cr_assert(gw_policy_check_conditions(gw_policy_seal(p, "stamp"), NULL, why, sizeof(why)));
	gw_policy_unref(&p);
}

static void
expect_approvers(const struct gw_policy *p, size_t rule, size_t level, const char *applicant,
                 unsigned want_quorum, const char *want)
{
	const struct gw_seal *c = gw_policy_seal(p, "contract");
	const struct gw_person **list = NULL;
	char err[512], got[512] = "";
	size_t n = 0;
	unsigned q = 0;

	cr_assert_eq(gw_policy_level_approvers(p, &c->rules[rule], level, gw_policy_person(p, applicant),
	                                       &list, &n, &q, err, sizeof(err)), 0, "%s", err);
	for (size_t i = 0; i < n; i++) {
		strcat(got, i ? "," : "");
		strcat(got, list[i]->id);
	}
	free(list);
	cr_assert_str_eq(got, want, "rule %zu level %zu for %s", rule + 1, level + 1, applicant);
	cr_assert_eq(q, want_quorum);
}

Test(policy_eval, level_resolution)
{
	struct gw_policy *p = load_eval();
	const struct gw_seal *c = gw_policy_seal(p, "contract");
	const struct gw_person **list = NULL;
	char err[512];
	size_t n;
	unsigned q;

	/* east-lab has no head: walk up to east (olga). */
	expect_approvers(p, 0, 0, "ed", 1, "olga");
	/* olga heads east herself: walk past east and headless ops to hq. */
	expect_approvers(p, 0, 0, "olga", 1, "ceo");
	/* up: 2 from east-lab is ops (no head) -> hq. */
	expect_approvers(p, 0, 1, "ed", 1, "ceo");
	/* up: 2 from east is hq. */
	expect_approvers(p, 0, 1, "olga", 1, "ceo");
	/* fin -> up 2 clamps at the root hq. */
	expect_approvers(p, 0, 1, "fiona", 1, "ceo");
	/* role quorum */
	expect_approvers(p, 0, 2, "ed", 2, "ceo,vp");
	expect_approvers(p, 3, 1, "ed", 1, "ceo,vp");
	/* the applicant is never among approvers */
	expect_approvers(p, 2, 0, "fiona", 1, "olga");
	expect_approvers(p, 2, 0, "fred", 1, "olga,fiona");
	cr_assert_eq(gw_policy_level_approvers(p, &c->rules[0], 2, PERSON("ceo"), &list, &n, &q,
	                                       err, sizeof(err)), -1);
	cr_assert_null(list);
	cr_assert_not_null(strstr(err, "needs 2 of role executive, but only 1 person other"), "%s", err);
	/* the root's head applies: nobody above */
	cr_assert_eq(gw_policy_level_approvers(p, &c->rules[0], 0, PERSON("ceo"), &list, &n, &q,
	                                       err, sizeof(err)), -1);
	cr_assert_not_null(strstr(err, "no department from hq upwards has a head other than ceo"), "%s", err);
	cr_assert_eq(gw_policy_level_approvers(p, &c->rules[0], 3, PERSON("ed"), &list, &n, &q,
	                                       err, sizeof(err)), -1);
	cr_assert(gw_policy_may_approve(p, &c->rules[0], 0, PERSON("ed"), PERSON("olga")));
	cr_assert_not(gw_policy_may_approve(p, &c->rules[0], 0, PERSON("ed"), PERSON("ceo")));
	cr_assert_not(gw_policy_may_approve(p, &c->rules[2], 0, PERSON("fiona"), PERSON("fiona")));
	gw_policy_unref(&p);
}

/* ---- role levels with many holders (the role index) ---- */

#define MANY 600
/* Who holds what, independent of the policy: many people hold several
 * roles, listed in rotating order so the role is not always first. */
static bool many_signer(unsigned i) { return i % 3 == 0 || i % 5 == 0; }
static bool many_auditor(unsigned i) { return i % 5 == 0 || i % 7 == 0; }
static bool many_clerk(unsigned i) { return i % 2 == 0; }

static char *
many_policy(void)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);

	cr_assert_not_null(f);
	fprintf(f, "version: 1\norganization:\n  name: Many\n  timezone: UTC\n"
	           "  departments:\n    - {id: hq, head: p000}\n    - {id: a, parent: hq, head: p010}\n"
	           "  people:\n");
	for (unsigned i = 0; i < MANY; i++) {
		const char *r[4];
		unsigned n = 0;

		if (many_signer(i))
			r[n++] = "signer";
		if (many_auditor(i))
			r[n++] = "auditor";
		if (many_clerk(i))
			r[n++] = "clerk";
		if (i == 1 || i == 2)
			r[n++] = "pair";
		fprintf(f, "    - {id: p%03u, department: %s, roles: [", i, i % 2 ? "a" : "hq");
		for (unsigned j = 0; j < n; j++)
			fprintf(f, "%s%s", j ? ", " : "", r[(j + i) % n]);
		fprintf(f, "]}\n");
	}
	fprintf(f, "seals:\n  - id: s\n    key: \"pkcs11:object=s\"\n    users: {departments: [hq]}\n"
	           "    approval:\n      rules:\n"
	           "        - levels: [{role: signer, quorum: 3}, {role: pair, quorum: 2}, {head_of: applicant}]\n");
	fclose(f);
	return text;
}

/* The approvers of level k as "id,id,…" (NULL when it fails), and checks
 * that may_approve agrees with the list for every person. */
static char *
approvers_str(const struct gw_policy *p, const struct gw_rule *rule, size_t k,
              const struct gw_person *applicant, unsigned *quorum, char *err, size_t errlen)
{
	const struct gw_person **list = NULL;
	size_t n = 0;
	char *out = NULL;
	size_t len = 0;
	FILE *f;

	if (gw_policy_level_approvers(p, rule, k, applicant, &list, &n, quorum, err, errlen) < 0) {
		cr_assert_null(list);
		for (size_t i = 0; i < p->n_people; i++)
			cr_assert_not(gw_policy_may_approve(p, rule, k, applicant, &p->people[i]),
			              "%s may approve a level no one can complete", p->people[i].id);
		return NULL;
	}
	f = open_memstream(&out, &len);
	cr_assert_not_null(f);
	for (size_t i = 0; i < n; i++)
		fprintf(f, "%s%s", i ? "," : "", list[i]->id);
	fclose(f);
	for (size_t i = 0; i < p->n_people; i++) {
		bool listed = false;
		for (size_t j = 0; j < n && !listed; j++)
			listed = strcmp(list[j]->id, p->people[i].id) == 0;
		cr_assert_eq(gw_policy_may_approve(p, rule, k, applicant, &p->people[i]), listed,
		             "may_approve(%s) disagrees with the list", p->people[i].id);
	}
	free(list);
	return out;
}

static char *
expected_holders(bool (*holds)(unsigned), unsigned applicant)
{
	char *out = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&out, &len);
	bool first = true;

	cr_assert_not_null(f);
	for (unsigned i = 0; i < MANY; i++) {
		if (!holds(i) || i == applicant)
			continue;
		fprintf(f, "%sp%03u", first ? "" : ",", i);
		first = false;
	}
	fclose(f);
	return out;
}

Test(policy_eval, role_level_many_holders)
{
	char *text = many_policy(), err[512], id[8];
	struct gw_policy *p = NULL, *p2 = NULL;
	const struct gw_rule *rule;
	/* Applicants: a signer with three roles, a non-signer, the head of
	 * hq (first in the file), the last signer, someone holding nothing. */
	static const unsigned applicants[] = { 15, 1, 0, 597, 599 };
	unsigned q;
	char *got, *want;

	cr_assert_eq(parse(text, &p, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(parse(text, &p2, err, sizeof(err)), 0, "%s", err);
	rule = &gw_policy_seal(p, "s")->rules[0];
	cr_assert(gw_person_has_role(PERSON("p015"), "signer"));
	cr_assert(gw_person_has_role(PERSON("p015"), "auditor"));
	cr_assert(gw_person_has_role(PERSON("p030"), "clerk"));

	for (size_t a = 0; a < sizeof(applicants) / sizeof(applicants[0]); a++) {
		snprintf(id, sizeof(id), "p%03u", applicants[a]);
		want = expected_holders(many_signer, applicants[a]);
		got = approvers_str(p, rule, 0, PERSON(id), &q, err, sizeof(err));
		cr_assert_not_null(got, "%s: %s", id, err);
		cr_assert_str_eq(got, want, "applicant %s", id);
		cr_assert_eq(q, 3);
		free(got);
		/* The applicant as another load of the policy knows them (a
		 * reload): matched by id, so still excluded. */
		got = approvers_str(p, rule, 0, gw_policy_person(p2, id), &q, err, sizeof(err));
		cr_assert_not_null(got, "%s: %s", id, err);
		cr_assert_str_eq(got, want, "applicant %s from another load", id);
		free(got);
		free(want);
	}
	cr_assert(gw_policy_may_approve(p, rule, 0, PERSON("p015"), gw_policy_person(p2, "p030")));
	cr_assert_not(gw_policy_may_approve(p, rule, 0, PERSON("p015"), gw_policy_person(p2, "p015")));
	cr_assert_not(gw_policy_may_approve(p, rule, 0, PERSON("p015"), gw_policy_person(p2, "p007")));

	/* Two holders, quorum 2: one of them applying leaves the level
	 * unreachable, so no one may approve it. */
	got = approvers_str(p, rule, 1, PERSON("p003"), &q, err, sizeof(err));
	cr_assert_str_eq(got, "p001,p002");
	free(got);
	cr_assert_null(approvers_str(p, rule, 1, PERSON("p002"), &q, err, sizeof(err)));
	cr_assert_not_null(strstr(err, "needs 2 of role pair, but only 1 person other than the "
	                          "applicant holds it"), "%s", err);

	/* Head levels through the same checks. */
	got = approvers_str(p, rule, 2, PERSON("p015"), &q, err, sizeof(err));
	cr_assert_str_eq(got, "p010");
	free(got);
	got = approvers_str(p, rule, 2, PERSON("p010"), &q, err, sizeof(err));
	cr_assert_str_eq(got, "p000");
	free(got);

	/* A stored application's level may name a role this load no longer
	 * has, or ask more than its holders can give. */
	{
		struct gw_level lv = { .kind = GW_LEVEL_ROLE, .role = "ghost", .quorum = 1 };
		struct gw_rule r = { .levels = &lv, .n_levels = 1 };
		cr_assert_null(approvers_str(p, &r, 0, PERSON("p015"), &q, err, sizeof(err)));
		cr_assert_not_null(strstr(err, "needs 1 of role ghost, but only 0 people"), "%s", err);
		lv.role = "auditor";
		lv.quorum = 1000;
		cr_assert_null(approvers_str(p, &r, 0, PERSON("p015"), &q, err, sizeof(err)));
		lv.quorum = 2;
		want = expected_holders(many_auditor, 35);
		got = approvers_str(p, &r, 0, PERSON("p035"), &q, err, sizeof(err));
		cr_assert_not_null(got, "%s", err);
		cr_assert_str_eq(got, want);
		cr_assert_eq(q, 2);
		free(got);
		free(want);
		lv.role = "clerk";
		want = expected_holders(many_clerk, 1);
		got = approvers_str(p, &r, 0, PERSON("p001"), &q, err, sizeof(err));
		cr_assert_str_eq(got, want);
		free(got);
		free(want);
	}
	gw_policy_unref(&p2);
	gw_policy_unref(&p);
	free(text);
}

static time_t
utc(int y, int mo, int d, int h, int mi, int s)
{
	struct tm tm = { .tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d,
	                 .tm_hour = h, .tm_min = mi, .tm_sec = s };
	return timegm(&tm);
}

static int64_t
day_of(int y, int mo, int d)
{
	return (int64_t)utc(y, mo, d, 0, 0, 0) / 86400;
}

Test(policy_time, shanghai_windows)
{
	struct gw_policy *p = load_eval();
	const struct gw_seal *c = gw_policy_seal(p, "contract");   /* Asia/Shanghai, UTC+8 */

	/* Monday 2024-05-06: 09:00 local is 01:00 UTC. */
	cr_assert_not(gw_policy_in_window(c, utc(2024, 5, 6, 0, 59, 59)));
	cr_assert(gw_policy_in_window(c, utc(2024, 5, 6, 1, 0, 0)));
	cr_assert(gw_policy_in_window(c, utc(2024, 5, 6, 9, 59, 59)));
	cr_assert_not(gw_policy_in_window(c, utc(2024, 5, 6, 10, 0, 0)));
	/* Saturday 10:00-24:00 local; Sunday closed. */
	cr_assert_not(gw_policy_in_window(c, utc(2024, 5, 11, 1, 59, 59)));
	cr_assert(gw_policy_in_window(c, utc(2024, 5, 11, 2, 0, 0)));
	cr_assert(gw_policy_in_window(c, utc(2024, 5, 11, 15, 59, 59)));   /* Sat 23:59:59 */
	cr_assert_not(gw_policy_in_window(c, utc(2024, 5, 11, 16, 0, 0)));   /* Sun 00:00 */
	cr_assert_not(gw_policy_in_window(c, utc(2024, 5, 12, 3, 0, 0)));
	/* Friday 17:30 UTC is Saturday 01:30 in Shanghai: closed although a
	 * UTC clock says Friday afternoon. */
	cr_assert_not(gw_policy_in_window(c, utc(2024, 5, 10, 17, 30, 0)));
	/* Local day and month turn at 16:00 UTC. */
	cr_assert_eq(gw_policy_local_day(c, utc(2024, 1, 31, 15, 59, 59)), day_of(2024, 1, 31));
	cr_assert_eq(gw_policy_local_day(c, utc(2024, 1, 31, 16, 0, 0)), day_of(2024, 2, 1));
	cr_assert_eq(gw_policy_local_month(c, utc(2024, 1, 31, 15, 59, 59)), 2024 * 12 + 0);
	cr_assert_eq(gw_policy_local_month(c, utc(2024, 1, 31, 16, 0, 0)), 2024 * 12 + 1);
	cr_assert_eq(gw_policy_local_month(c, utc(2023, 12, 31, 16, 0, 0)), 2024 * 12 + 0);
	cr_assert_eq(gw_policy_local_month(c, utc(2023, 12, 31, 15, 59, 59)), 2023 * 12 + 11);
	/* no windows: always open */
	cr_assert(gw_policy_in_window(gw_policy_seal(p, "stamp"), utc(2024, 5, 12, 3, 0, 0)));
	gw_policy_unref(&p);
}

Test(policy_time, berlin_dst)
{
	struct gw_policy *p = load_eval();
	const struct gw_seal *b = gw_policy_seal(p, "berlin");   /* Sunday 00:00-03:00 local */
	struct tm tm;

	cr_assert_str_eq(b->timezone, "Europe/Berlin");
	/* Spring forward 2024-03-31 01:00 UTC: 02:00 CET becomes 03:00 CEST. */
	cr_assert_not(gw_policy_in_window(b, utc(2024, 3, 30, 22, 59, 59)));  /* Sat 23:59:59 CET */
	cr_assert(gw_policy_in_window(b, utc(2024, 3, 30, 23, 0, 0)));        /* Sun 00:00 CET */
	cr_assert(gw_policy_in_window(b, utc(2024, 3, 31, 0, 59, 59)));       /* 01:59:59 CET */
	cr_assert_not(gw_policy_in_window(b, utc(2024, 3, 31, 1, 0, 0)));     /* 03:00 CEST */
	/* Fall back 2024-10-27 01:00 UTC: 03:00 CEST becomes 02:00 CET. */
	cr_assert(gw_policy_in_window(b, utc(2024, 10, 26, 22, 0, 0)));       /* Sun 00:00 CEST */
	cr_assert_not(gw_policy_in_window(b, utc(2024, 10, 26, 21, 59, 59)));
	cr_assert(gw_policy_in_window(b, utc(2024, 10, 27, 0, 30, 0)));       /* 02:30 CEST */
	cr_assert(gw_policy_in_window(b, utc(2024, 10, 27, 1, 30, 0)));       /* 02:30 CET */
	cr_assert(gw_policy_in_window(b, utc(2024, 10, 27, 1, 59, 59)));      /* 02:59:59 CET */
	cr_assert_not(gw_policy_in_window(b, utc(2024, 10, 27, 2, 0, 0)));    /* 03:00 CET */
	/* Day boundaries: midnight is 23:00 UTC in winter, 22:00 UTC in summer. */
	cr_assert_eq(gw_policy_local_day(b, utc(2024, 3, 30, 22, 59, 59)), day_of(2024, 3, 30));
	cr_assert_eq(gw_policy_local_day(b, utc(2024, 3, 30, 23, 0, 0)), day_of(2024, 3, 31));
	cr_assert_eq(gw_policy_local_day(b, utc(2024, 3, 31, 21, 59, 59)), day_of(2024, 3, 31));
	cr_assert_eq(gw_policy_local_day(b, utc(2024, 3, 31, 22, 0, 0)), day_of(2024, 4, 1));
	/* Month boundaries on both sides of the change. */
	cr_assert_eq(gw_policy_local_month(b, utc(2024, 3, 31, 21, 59, 59)), 2024 * 12 + 2);
	cr_assert_eq(gw_policy_local_month(b, utc(2024, 3, 31, 22, 0, 0)), 2024 * 12 + 3);
	cr_assert_eq(gw_policy_local_month(b, utc(2024, 10, 31, 22, 59, 59)), 2024 * 12 + 9);
	cr_assert_eq(gw_policy_local_month(b, utc(2024, 10, 31, 23, 0, 0)), 2024 * 12 + 10);
	cr_assert_eq(gw_policy_local_month(b, utc(2023, 12, 31, 23, 0, 0)), 2024 * 12 + 0);
	cr_assert_eq(gw_policy_local_month(b, utc(2023, 12, 31, 22, 59, 59)), 2023 * 12 + 11);
	/* Beyond the TZif table (footer rule): summer 2100 is CEST. */
	cr_assert_eq(gw_tz_offset(b->tz, utc(2100, 7, 1, 12, 0, 0)), 7200);
	cr_assert_eq(gw_tz_offset(b->tz, utc(2100, 1, 1, 12, 0, 0)), 3600);
	gw_policy_local_time(b, utc(2024, 10, 27, 1, 30, 0), &tm);
	cr_assert_eq(tm.tm_year, 124);
	cr_assert_eq(tm.tm_mon, 9);
	cr_assert_eq(tm.tm_mday, 27);
	cr_assert_eq(tm.tm_hour, 2);
	cr_assert_eq(tm.tm_min, 30);
	cr_assert_eq(tm.tm_wday, 0);
	cr_assert_eq(tm.tm_yday, 300);
	cr_assert_eq(tm.tm_gmtoff, 3600);
	gw_policy_unref(&p);
}

/* Our TZif reader against glibc's, over two centuries and zones with
 * northern, southern, odd-offset and abolished DST (single-threaded test,
 * so setting TZ here is fine). */
Test(policy_time, zones_agree_with_libc)
{
	static const char *zones[] = {
		"Europe/Berlin", "Asia/Shanghai", "America/New_York", "Australia/Sydney",
		"America/Sao_Paulo", "Asia/Tehran", "Australia/Lord_Howe", "Pacific/Chatham",
		"America/St_Johns", "Africa/Casablanca", "UTC",
	};
	for (size_t z = 0; z < sizeof(zones) / sizeof(zones[0]); z++) {
		char text[2048], err[512];
		struct gw_policy *p = NULL;
		snprintf(text, sizeof(text),
		         "organization:\n  name: T\n  timezone: %s\n  departments: [{id: a}]\n"
		         "  people: [{id: x, department: a}]\n"
		         "seals:\n  - {id: s, key: \"pkcs11:object=s\", users: {people: [x]}, "
		         "approval: none}\n", zones[z]);
		cr_assert_eq(parse(text, &p, err, sizeof(err)), 0, "%s", err);
		setenv("TZ", zones[z], 1);
		tzset();
		for (int64_t t = utc(1950, 1, 1, 0, 0, 0); t < utc(2150, 1, 1, 0, 0, 0); t += 86400 * 3 + 3607) {
			time_t tt = (time_t)t;
			struct tm tm;
			localtime_r(&tt, &tm);
			cr_assert_eq(gw_tz_offset(p->seals[0].tz, tt), tm.tm_gmtoff,
			             "%s at %lld: ours %ld, libc %ld", zones[z], (long long)t,
			             gw_tz_offset(p->seals[0].tz, tt), (long)tm.tm_gmtoff);
		}
		cr_assert_str_eq(gw_tz_name(p->seals[0].tz), zones[z]);
		gw_policy_unref(&p);
	}
	unsetenv("TZ");
}

Test(policy_eval, mechanisms)
{
	struct gw_policy *p = load_eval();
	const struct gw_seal *c = gw_policy_seal(p, "contract");
	unsigned long m;

	cr_assert_eq(c->n_mechanisms, 2);
	cr_assert(gw_policy_mechanism_allowed(c, 0x40));       /* CKM_SHA256_RSA_PKCS */
	cr_assert(gw_policy_mechanism_allowed(c, 0x1044));     /* CKM_ECDSA_SHA256 */
	cr_assert_not(gw_policy_mechanism_allowed(c, 0x1));    /* CKM_RSA_PKCS */
	cr_assert(gw_policy_mechanism_allowed(gw_policy_seal(p, "stamp"), 0x1));
	cr_assert_eq(gw_policy_mechanism_from_name("EDDSA", &m), 0);
	cr_assert_eq(m, 0x1057);
	cr_assert_eq(gw_policy_mechanism_from_name("RSA_PKCS_PSS", &m), 0);
	cr_assert_eq(m, 0xd);
	cr_assert_eq(gw_policy_mechanism_from_name("MD5_RSA_PKCS", &m), -1);
	cr_assert_str_eq(gw_policy_mechanism_name(0x43), "SHA256_RSA_PKCS_PSS");
	cr_assert_null(gw_policy_mechanism_name(0x7777));
	cr_assert_str_eq(c->mfa, "per_signature");
	gw_policy_unref(&p);
}

Test(policy_eval, explain)
{
	struct gw_policy *p = load_eval();
	const struct gw_seal *c = gw_policy_seal(p, "contract");
	struct gw_use_case uc = { "contract", "sales", true, 600000 };
	char *text;

	text = gw_policy_explain(p, c, PERSON("ed"), &uc, utc(2024, 5, 6, 2, 0, 0));
	cr_assert_not_null(text);
	cr_assert_not_null(strstr(text, "Seal contract \"contract\""), "%s", text);
	cr_assert_not_null(strstr(text, "time windows (Asia/Shanghai): mon,tue,wed,thu,fri 09:00-18:00; sat 10:00-24:00"), "%s", text);
	cr_assert_not_null(strstr(text, "now: 2024-05-06 10:00 Asia/Shanghai, inside a window"), "%s", text);
	cr_assert_not_null(strstr(text, "quotas: 10 per day, 100 per month, 1000 in total, 2 per person per day"), "%s", text);
	cr_assert_not_null(strstr(text, "mechanisms: SHA256_RSA_PKCS, ECDSA_SHA256"), "%s", text);
	cr_assert_not_null(strstr(text, "rule 1 (line 40) when amount > 500000:"), "%s", text);
	cr_assert_not_null(strstr(text, "rule 4 (line 46) in every other case:"), "%s", text);
	cr_assert_not_null(strstr(text, "may apply: yes"), "%s", text);
	cr_assert_not_null(strstr(text, "rule 1 of seal contract (policy line 40) applies"), "%s", text);
	cr_assert_not_null(strstr(text, "level 1: 1 of: olga (olga)"), "%s", text);
	cr_assert_not_null(strstr(text, "level 3: 2 of: ceo (ceo), vp (vp)"), "%s", text);
	free(text);

	text = gw_policy_explain(p, c, PERSON("fred"), NULL, utc(2024, 5, 12, 2, 0, 0));
	cr_assert_not_null(strstr(text, "OUTSIDE a window"), "%s", text);
	cr_assert_not_null(strstr(text, "may apply: no"), "%s", text);
	free(text);

	/* All seals ed may use. */
	text = gw_policy_explain(p, NULL, PERSON("ed"), NULL, 0);
	cr_assert_not_null(strstr(text, "Seal stamp"), "%s", text);
	cr_assert_not_null(strstr(text, "approval: none"), "%s", text);
	cr_assert_not_null(strstr(text, "if rule 1 applies:"), "%s", text);
	free(text);
	text = gw_policy_explain(p, NULL, PERSON("bob"), NULL, 0);
	cr_assert_str_eq(text, "bob may use no seal.\n");
	free(text);
	gw_policy_unref(&p);
}

/* A seal's devices: rule is explained (the groups allowed, who gives a
 * device its group, what is refused), the gateway's host named as refused
 * unless local is listed. */
Test(policy_eval, explain_devices)
{
	struct gw_policy *p = NULL;
	char err[1024], *text;

	cr_assert_eq(parse(ORG SEAL_HEAD "    approval: none\n    devices: [finance-office, sales-desk]\n",
	                   &p, err, sizeof(err)), 0, "%s", err);
	text = gw_policy_explain(p, gw_policy_seal(p, "s"), PERSON("ed"), NULL, 0);
	cr_assert_not_null(text);
	cr_assert_not_null(strstr(text, "devices: only desktops of the device groups finance-office, "
	                          "sales-desk (a seal admin gives a device its group: sealctl device "
	                          "approve ID --group G); a device of another group or of none, the "
	                          "web front and the gateway's own host (local) are refused"),
	                   "%s", text);
	free(text);
	gw_policy_unref(&p);
	cr_assert_eq(parse(ORG SEAL_HEAD "    approval: none\n    devices: [finance-office, local]\n",
	                   &p, err, sizeof(err)), 0, "%s", err);
	text = gw_policy_explain(p, gw_policy_seal(p, "s"), NULL, NULL, 0);
	cr_assert_not_null(strstr(text, "device groups finance-office, local ("), "%s", text);
	cr_assert_not_null(strstr(text, "another group or of none and the web front are refused"), "%s", text);
	free(text);
	gw_policy_unref(&p);
	/* no devices: rule, nothing said */
	cr_assert_eq(parse(ORG SEAL_HEAD "    approval: none\n", &p, err, sizeof(err)), 0, "%s", err);
	text = gw_policy_explain(p, gw_policy_seal(p, "s"), NULL, NULL, 0);
	cr_assert_null(strstr(text, "devices:"), "%s", text);
	free(text);
	gw_policy_unref(&p);
}

Test(policy, hash_and_path)
{
	struct gw_policy *p = load_eval(), *q = load_eval();
	static const uint8_t zero[GW_HASH_LEN];

	cr_assert_str_eq(p->path, "t.yaml");
	cr_assert(memcmp(p->hash, zero, GW_HASH_LEN) != 0);
	cr_assert(memcmp(p->hash, q->hash, GW_HASH_LEN) == 0);
	gw_policy_unref(&p);
	gw_policy_unref(&q);
	gw_policy_unref(&q);   /* NULL is fine */
}
