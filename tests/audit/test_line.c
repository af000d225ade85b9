/*
 * The export's record lines read without a JSON tree (gw_audit_row_from_line,
 * gateway/auditfmt.c): every line the gateway writes gives the row jansson
 * and gw_audit_row_from_json give, and every line it should not judge alone
 * (what jansson refuses, or reads another way) is left to jansson.
 */
#include <criterion/criterion.h>

#include <stdlib.h>
#include <string.h>

#include "auditfmt.h"

static const uint8_t doc[32] = { 1, 2, 3, 0xfe };
static const uint8_t sigd[48] = { 9, 8, 7 };
static const uint8_t prevh[32] = { 0xaa };
static const uint8_t hashh[32] = { 0x55, 0x01 };

static struct gw_audit_row
row_of(const char *reason, const char *detail)
{
	return (struct gw_audit_row){
		.seq = 4711, .ts_ns = 1791158280123456789LL, .action = "sign", .outcome = "ok",
		.reason = reason, .actor = "alice", .uid = -1, .pid = 4194304,
		.exe = "/usr/bin/sealctl", .host = "app01", .seal = "contracts", .application = 0,
		.doc_digest = doc, .doc_digest_len = sizeof(doc),
		.signed_digest = sigd, .signed_digest_len = sizeof(sigd),
		.mechanism = 18446744073709551615ULL, .detail = detail,
		.prev_hash = prevh, .prev_hash_len = 32, .hash = hashh, .hash_len = 32,
	};
}

static void
same_str(const char *a, const char *b, const char *what)
{
	if (!a || !b)
		cr_assert(a == b, "%s: %s against %s", what, a ? a : "NULL", b ? b : "NULL");
	else
		cr_assert_str_eq(a, b, "%s", what);
}

static void
same_bin(const uint8_t *a, size_t an, const uint8_t *b, size_t bn, const char *what)
{
	cr_assert_eq(an, bn, "%s: length", what);
	cr_assert((a == NULL) == (b == NULL), "%s: NULL", what);
	if (an)
		cr_assert(memcmp(a, b, an) == 0, "%s", what);
}

/* The line read both ways gives one row, and its chain hash. */
static void
check_same(const char *line)
{
	size_t n = strlen(line);
	char *copy = strdup(line);
	static struct gw_audit_rowbuf b1, b2;
	struct gw_audit_row fast, slow;
	uint8_t h1[32], h2[32];
	char err[256];
	json_error_t je;
	json_t *o = json_loadb(line, n, JSON_REJECT_DUPLICATES, &je);

	cr_assert(o, "jansson: %s: %s", je.text, line);
	cr_assert_eq(gw_audit_row_from_json(o, &slow, &b2, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(gw_audit_row_from_line(copy, n, &fast, &b1), 0, "not read: %s", line);
	cr_assert_eq(fast.seq, slow.seq);
	cr_assert_eq(fast.ts_ns, slow.ts_ns);
	same_str(fast.action, slow.action, "action");
	same_str(fast.outcome, slow.outcome, "outcome");
	same_str(fast.reason, slow.reason, "reason");
	same_str(fast.actor, slow.actor, "actor");
	cr_assert_eq(fast.uid, slow.uid);
	cr_assert_eq(fast.pid, slow.pid);
	same_str(fast.exe, slow.exe, "exe");
	same_str(fast.host, slow.host, "host");
	same_str(fast.seal, slow.seal, "seal");
	cr_assert_eq(fast.application, slow.application);
	same_bin(fast.doc_digest, fast.doc_digest_len, slow.doc_digest, slow.doc_digest_len, "doc");
	same_bin(fast.signed_digest, fast.signed_digest_len, slow.signed_digest,
	         slow.signed_digest_len, "signed");
	cr_assert_eq(fast.mechanism, slow.mechanism);
	same_str(fast.detail, slow.detail, "detail");
	same_bin(fast.prev_hash, fast.prev_hash_len, slow.prev_hash, slow.prev_hash_len, "prev");
	same_bin(fast.hash, fast.hash_len, slow.hash, slow.hash_len, "hash");
	cr_assert_eq(gw_audit_row_hash(fast.prev_hash, &fast, h1), 0);
	cr_assert_eq(gw_audit_row_hash(slow.prev_hash, &slow, h2), 0);
	cr_assert(memcmp(h1, h2, 32) == 0);
	json_decref(o);
	free(copy);
}

static char *
line_of(const struct gw_audit_row *r, size_t flags)
{
	json_t *o = gw_audit_row_to_json(r, NULL, NULL);
	char *s;

	cr_assert(o);
	s = json_dumps(o, JSON_COMPACT | flags);
	cr_assert(s);
	json_decref(o);
	return s;
}

static void
check_row(const struct gw_audit_row *r)
{
	char *s = line_of(r, 0), *a = line_of(r, JSON_ENSURE_ASCII), *nl;

	check_same(s);
	check_same(a);   /* every non-ASCII character as \u escapes */
	cr_assert(asprintf(&nl, "%s\n", s) > 0);
	check_same(nl);  /* as getline hands it over */
	free(s);
	free(a);
	free(nl);
}

Test(line, the_gateways_lines_read_as_jansson_reads_them)
{
	struct gw_audit_row r = row_of(NULL, NULL);

	check_row(&r);
	r = row_of("quota reached — 41 of 40 (Müller, 東京, 𝄞)", "{\"amount\":\"999999.00\","
	           "\"reason\":\"a \\\"quoted\\\" word\"}");
	check_row(&r);
	r = row_of("tab\there, newline\nthere, \x01 and \x1f, back\\slash, /slash, \"q\"", "");
	check_row(&r);
	r = row_of("", "{}");
	r.seq = 1;
	r.ts_ns = -1;
	r.uid = INT64_MIN;
	r.pid = INT64_MAX;
	r.application = -42;
	r.mechanism = 0;
	r.doc_digest = r.signed_digest = NULL;
	r.doc_digest_len = r.signed_digest_len = 0;
	r.action = r.outcome = r.actor = r.exe = r.host = r.seal = NULL;
	check_row(&r);
}

/* A record line as the gateway writes it, with one field's text replaced. */
static char *
edited(const char *from, const char *to)
{
	struct gw_audit_row r = row_of("ok", "{}");
	char *s = line_of(&r, 0), *p = strstr(s, from), *out;

	cr_assert(p, "%s not in %s", from, s);
	cr_assert(asprintf(&out, "%.*s%s%s", (int)(p - s), s, to, p + strlen(from)) > 0);
	free(s);
	return out;
}

static void
left_to_jansson(const char *line, const char *why)
{
	char *copy = strdup(line);
	static struct gw_audit_rowbuf b;
	struct gw_audit_row r;

	cr_assert_eq(gw_audit_row_from_line(copy, strlen(copy), &r, &b), 1, "%s read: %s", why, line);
	free(copy);
}

Test(line, what_it_does_not_judge_goes_to_jansson)
{
	static const struct { const char *from, *to, *why; } cases[] = {
		{ "\"seq\":4711", "\"seq\":4711,\"seq\":4712", "a key twice" },
		{ "\"host\":\"app01\"", "\"host\":\"app01\",\"host\":\"evil\"", "a string key twice" },
		{ "\"time\":", "\"time\":\"x\",\"time\":", "an ignored key twice" },
		{ "\"seq\":4711", "\"seq\":4711,\"extra\":1", "a key it does not know" },
		{ "\"seq\":4711", "\"seq\": 4711", "whitespace" },
		{ "\"seq\":4711", "\"seq\":4711.0", "a fraction" },
		{ "\"seq\":4711", "\"seq\":4711e0", "an exponent" },
		{ "\"seq\":4711", "\"seq\":04711", "a leading zero" },
		{ "\"seq\":4711", "\"seq\":0", "seq 0" },
		{ "\"seq\":4711", "\"seq\":-4711", "a negative seq" },
		{ "\"seq\":4711", "\"seq\":\"4711\"", "seq as a string" },
		{ "\"seq\":4711", "\"seq\":null", "seq null" },
		{ "\"pid\":4194304", "\"pid\":9223372036854775808", "beyond 64 bits" },
		{ "\"uid\":-1", "\"uid\":-9223372036854775809", "beyond 64 bits, negative" },
		{ "\"uid\":-1,", "", "a field missing" },
		{ "\"actor\":\"alice\"", "\"actor\":7", "a number for a string" },
		{ "\"actor\":\"alice\"", "\"actor\":true", "true" },
		{ "\"actor\":\"alice\"", "\"actor\":[\"alice\"]", "an array" },
		{ "\"actor\":\"alice\"", "\"actor\":\"al\\u0000ice\"", "an escaped NUL" },
		{ "\"actor\":\"alice\"", "\"actor\":\"al\tice\"", "a raw control character" },
		{ "\"actor\":\"alice\"", "\"actor\":\"al\\xice\"", "an unknown escape" },
		{ "\"actor\":\"alice\"", "\"actor\":\"\\udc00\"", "a lone low surrogate" },
		{ "\"actor\":\"alice\"", "\"actor\":\"\\ud800\"", "a lone high surrogate" },
		{ "\"actor\":\"alice\"", "\"actor\":\"\\ud800\\u0041\"", "a high surrogate and no low" },
		{ "\"actor\":\"alice\"", "\"actor\":\"\\u00g1\"", "an escape not hex" },
		{ "\"actor\":\"alice\"", "\"actor\":\"\xc0\x80\"", "an overlong NUL" },
		{ "\"actor\":\"alice\"", "\"actor\":\"\xe0\x80\xaf\"", "an overlong slash" },
		{ "\"actor\":\"alice\"", "\"actor\":\"\xed\xa0\x80\"", "a surrogate in UTF-8" },
		{ "\"actor\":\"alice\"", "\"actor\":\"\xf4\x90\x80\x80\"", "beyond U+10FFFF" },
		{ "\"actor\":\"alice\"", "\"actor\":\"\xc3\"", "a cut sequence" },
		{ "\"actor\":\"alice\"", "\"actor\":\"\xff\"", "not UTF-8" },
		{ "\"actor\":\"alice\"", "\"actor\":\"alice", "an unclosed string" },
		{ "\"type\":\"record\"", "\"type\":\"checkpoint\"", "another type" },
		{ "\"type\":\"record\"", "\"type\":null", "no type" },
		{ "\"mechanism\":\"18446744073709551615\"", "\"mechanism\":\"-1\"", "a negative mechanism" },
		{ "\"mechanism\":\"18446744073709551615\"", "\"mechanism\":\"1x\"", "a mechanism not decimal" },
		{ "\"mechanism\":\"18446744073709551615\"", "\"mechanism\":\"\"", "an empty mechanism" },
		{ "\"mechanism\":\"18446744073709551615\"", "\"mechanism\":18", "a mechanism as a number" },
		{ "\"prev_hash\":\"aa", "\"prev_hash\":\"zz", "a hash not hex" },
		{ "\"prev_hash\":\"aa", "\"prev_hash\":\"aaa", "a hash of odd length" },
		{ "{", "[{", "not an object" },
		{ "{\"type\"", "{ \"type\"", "whitespace first" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *l = edited(cases[i].from, cases[i].to);
		left_to_jansson(l, cases[i].why);
		free(l);
	}
	/* After the object: only the line's end. */
	{
		struct gw_audit_row r = row_of("ok", "{}");
		char *s = line_of(&r, 0), *t;
		cr_assert(asprintf(&t, "%s ", s) > 0);
		left_to_jansson(t, "a space after");
		free(t);
		cr_assert(asprintf(&t, "%s{}", s) > 0);
		left_to_jansson(t, "a second object");
		free(t);
		cr_assert(asprintf(&t, "%s\n\n", s) > 0);
		left_to_jansson(t, "two line ends");
		free(t);
		s[strlen(s) - 1] = '\0';
		left_to_jansson(s, "cut short");
		free(s);
	}
}

/* A hash over 2^16 bytes of detail: past the encoder's stack buffer. */
Test(line, a_long_detail)
{
	char *d = malloc(70000);
	struct gw_audit_row r;

	cr_assert(d);
	memset(d, 'x', 69999);
	d[69999] = '\0';
	r = row_of("ok", d);
	check_row(&r);
	free(d);
}
