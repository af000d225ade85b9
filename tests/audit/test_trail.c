/*
 * The audit trail end to end, on a real sealgated + SoftHSM2 token with an
 * audit key (tests/audit/fixture.sh): every event with its fields, who may
 * read what, export and offline verification by sealctl (and what it says
 * about an edited, shortened, reordered or forged export or store), kill -9
 * during a storm of concurrent signatures, and a full disk.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/sha.h>
#include <p11-kit/pkcs11.h>
#include <sqlite3.h>

#include "protocol.h"

#include "sgtest.h"

TestSuite(trail, .timeout = 240);

static int __attribute__((format(printf, 1, 2)))
sh(const char *fmt, ...)
{
	char cmd[4096];
	va_list ap;
	int st;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	st = system(cmd);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static void
fixture(const char *what, const char *arg)
{
	cr_assert_eq(sh("sh %s %s %s %s", sgt_env("SG_IT_FIXTURE"), what, sgt_env("SG_IT_DIR"), arg ? arg : ""),
	             0, "fixture %s failed", what);
}

static char *
slurp(const char *path)
{
	FILE *f = fopen(path, "re");
	char *buf;
	long n;

	cr_assert_not_null(f, "%s: %s", path, strerror(errno));
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	rewind(f);
	buf = calloc(1, (size_t)n + 1);
	cr_assert_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	return buf;
}

/* ---- protocol ---- */

static char *
login_pw(int fd, const char *user, const char *pw)
{
	json_t *req = sg_request_new(SG_OP_LOGIN), *rep;
	char *s = NULL;

	json_object_set_new(req, "user", json_string(user));
	json_object_set_new(req, "pin", json_string(pw));
	rep = sgt_call(fd, req);
	if (sg_reply_is_ok(rep, NULL, NULL, NULL))
		s = strdup(json_string_value(json_object_get(rep, "session")));
	json_decref(rep);
	return s;
}

static char *
login(int fd, const char *user)
{
	char pw[64];
	char *s;

	snprintf(pw, sizeof(pw), "%s-password", user);
	s = login_pw(fd, user, pw);
	cr_assert_not_null(s, "login %s", user);
	return s;
}

static json_t *
req_s(const char *op, const char *session)
{
	json_t *r = sg_request_new(op);

	json_object_set_new(r, "session", json_string(session));
	return r;
}

/* CKM_ECDSA over 32 bytes: the reply. */
static json_t *
sign(int fd, const char *session, const char *seal, const uint8_t digest[32])
{
	json_t *r = req_s(SG_OP_SIGN, session);

	json_object_set_new(r, "seal", json_string(seal));
	json_object_set_new(r, "mechanism", json_integer(CKM_ECDSA));
	sg_set_bytes(r, "data", digest, 32);
	return sgt_call(fd, r);
}

static void
hex(const uint8_t *p, size_t n, char *out)
{
	for (size_t i = 0; i < n; i++)
		sprintf(out + 2 * i, "%02x", p[i]);
}

/* Every record user may read matching the extra fields of filt. */
static json_t *
query(const char *user, json_t *filt, const char **scope_out)
{
	int fd = sgt_conn();
	char *s = login(fd, user);
	json_t *all = json_array();
	json_int_t after = 0;

	for (;;) {
		json_t *r = req_s("audit_query", s), *rep, *next;
		if (filt)
			json_object_update(r, filt);
		json_object_set_new(r, "limit", json_integer(1000));
		if (after)
			json_object_set_new(r, "after", json_integer(after));
		rep = sgt_call(fd, r);
		cr_assert(sg_reply_is_ok(rep, NULL, NULL, NULL), "audit_query as %s: %s", user,
		          json_string_value(json_object_get(rep, "message")));
		json_array_extend(all, json_object_get(rep, "records"));
		if (scope_out && after == 0) {
			static char scope[160];
			snprintf(scope, sizeof(scope), "%s", json_string_value(json_object_get(rep, "scope")));
			*scope_out = scope;
		}
		next = json_object_get(rep, "next");
		if (!json_is_integer(next)) {
			json_decref(rep);
			break;
		}
		after = json_integer_value(next);
		json_decref(rep);
	}
	json_decref(sgt_call(fd, req_s(SG_OP_LOGOUT, s)));
	free(s);
	close(fd);
	json_decref(filt);
	return all;
}

/* The first record with action (and actor/outcome when given). */
static json_t *
find(json_t *recs, const char *action, const char *actor, const char *outcome)
{
	size_t i;
	json_t *r;

	json_array_foreach(recs, i, r) {
		const char *a = json_string_value(json_object_get(r, "action"));
		const char *who = json_string_value(json_object_get(r, "actor"));
		const char *o = json_string_value(json_object_get(r, "outcome"));
		if (a && !strcmp(a, action) && (!actor || (who && !strcmp(who, actor))) &&
		    (!outcome || (o && !strcmp(o, outcome))))
			return r;
	}
	return NULL;
}

static const char *
s_of(json_t *r, const char *k)
{
	return json_string_value(json_object_get(r, k));
}

/* ---- sealctl ---- */

static int
sealctl_as(const char *user, const char *args, const char *out)
{
	return sh("SEALGATE_PASSWORD=%s-password %s/tools/sealctl -s %s -u %s %s >%s 2>&1",
	          user, sgt_env("SEALGATE_BUILD"), sgt_env("SEALGATE_SOCKET"), user, args, out);
}

/* sealctl audit verify of file; its output in *text (free it). */
static int
verify_file(const char *file, const char *extra, char **text)
{
	char out[PATH_MAX];
	int rc;

	snprintf(out, sizeof(out), "%s/verify.out", sgt_env("SG_IT_DIR"));
	rc = sh("%s/tools/sealctl audit verify --from-export %s %s >%s 2>&1", sgt_env("SEALGATE_BUILD"),
	        file, extra ? extra : "", out);
	*text = slurp(out);
	return rc;
}

static char *path_in(const char *name);

static void
export_to(const char *file)
{
	char args[PATH_MAX + 32];
	char *out = path_in("export.out"), *text;
	int rc;

	snprintf(args, sizeof(args), "audit export -o %s", file);
	rc = sealctl_as("grace", args, out);
	text = slurp(out);
	cr_assert_eq(rc, 0, "sealctl audit export: %s", text);
	free(text);
}

/* DIR/name in one of a few rotating buffers (never freed by callers). */
static char *
path_in(const char *name)
{
	static char ring[16][PATH_MAX];
	static unsigned next;
	char *p = ring[next++ % 16];

	snprintf(p, PATH_MAX, "%s/%s", sgt_env("SG_IT_DIR"), name);
	return p;
}

static const char *
cert_opts(void)
{
	static char o[2 * PATH_MAX];

	snprintf(o, sizeof(o), "--cert %s --ca %s", path_in("sealgate-audit.crt.pem"), path_in("ca.pem"));
	return o;
}

/* ---- events and fields ---- */

Test(trail, every_event_is_recorded_with_its_fields)
{
	int fd = sgt_conn();
	char *sa, *sf, *sd, *bad, host[256] = "", exe[PATH_MAX] = "", dhex[65], *p;
	uint8_t d[32];
	json_t *rep, *recs, *r;
	json_int_t signed_seq;
	ssize_t n;

	gethostname(host, sizeof(host) - 1);
	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	exe[n > 0 ? n : 0] = '\0';

	bad = login_pw(fd, "alice", "wrong-password");
	cr_assert_null(bad);
	sa = login(fd, "alice");
	memset(d, 0x5a, sizeof(d));
	d[0] = (uint8_t)time(NULL);
	hex(d, 32, dhex);
	rep = sign(fd, sa, "finance", d);
	cr_assert(sg_reply_is_ok(rep, NULL, NULL, NULL), "%s", json_string_value(json_object_get(rep, "message")));
	signed_seq = json_integer_value(json_object_get(rep, "record"));
	cr_assert_gt(signed_seq, 0);
	json_decref(rep);
	sd = login(fd, "dave");
	rep = sign(fd, sd, "contract", d);
	cr_assert_not(sg_reply_is_ok(rep, NULL, NULL, NULL), "dave may not use the contract seal");
	json_decref(rep);
	/* A password change: frank sets his own (another account's would
	 * need a login with a code, docs/authentication.md). */
	sf = login(fd, "frank");
	rep = req_s(SG_OP_USER_PASSWD, sf);
	json_object_set_new(rep, "user", json_string("frank"));
	json_object_set_new(rep, "password", json_string("frank-password"));
	json_object_set_new(rep, "old_password", json_string("frank-password"));
	rep = sgt_call(fd, rep);
	cr_assert(sg_reply_is_ok(rep, NULL, NULL, NULL), "%s", json_string_value(json_object_get(rep, "message")));
	json_decref(rep);
	close(fd);
	/* A policy reload, a clean stop and a start. */
	cr_assert_eq(sh("kill -HUP $(cat %s)", path_in("sealgated.pid")), 0);
	usleep(500000);
	fixture("stop", NULL);
	fixture("start", NULL);

	recs = query("grace", NULL, NULL);
	r = find(recs, "gateway_start", NULL, "ok");
	cr_assert_not_null(r, "gateway_start");
	cr_assert(strstr(s_of(r, "detail"), "\"sha256\""), "start names the policy hash");
	r = find(recs, "policy_reload", NULL, "ok");
	cr_assert_not_null(r, "policy_reload");
	cr_assert(strstr(s_of(r, "detail"), "\"sha256\""), "reload names the policy hash");
	cr_assert_not_null(find(recs, "gateway_stop", NULL, "ok"), "gateway_stop");

	r = find(recs, "login", "alice", "ok");
	cr_assert_not_null(r, "login ok");
	cr_assert_eq(json_integer_value(json_object_get(r, "uid")), (json_int_t)getuid());
	cr_assert_eq(json_integer_value(json_object_get(r, "pid")), (json_int_t)getpid());
	cr_assert_str_eq(s_of(r, "exe"), exe);
	cr_assert_str_eq(s_of(r, "host"), host);
	r = find(recs, "login", "alice", "denied");
	cr_assert_not_null(r, "failed login");
	cr_assert(s_of(r, "reason") && *s_of(r, "reason"), "a failed login says why");

	r = find(recs, "sign", "alice", "ok");
	cr_assert_not_null(r, "signature granted");
	cr_assert_eq(json_integer_value(json_object_get(r, "seq")), signed_seq,
	             "the reply's record is the record");
	cr_assert_str_eq(s_of(r, "seal"), "finance");
	cr_assert_str_eq(s_of(r, "signed_digest"), dhex);
	cr_assert_str_eq(s_of(r, "mechanism"), "4161");   /* CKM_ECDSA */
	cr_assert_eq(json_integer_value(json_object_get(r, "pid")), (json_int_t)getpid());
	p = strrchr(s_of(r, "time"), 'Z');
	cr_assert(p && p[1] == '\0', "UTC time: %s", s_of(r, "time"));
	cr_assert_str_eq(s_of(r, "zone"), "Europe/Berlin", "local time in the seal's zone");
	cr_assert(strstr(s_of(r, "local_time"), "+01:00") || strstr(s_of(r, "local_time"), "+02:00"),
	          "%s", s_of(r, "local_time"));
	r = find(recs, "sign", "dave", "denied");
	cr_assert_not_null(r, "signature refused");
	cr_assert(s_of(r, "reason") && strstr(s_of(r, "reason"), "contract"), "refusal says why");
	cr_assert_str_eq(s_of(r, "seal"), "contract");
	r = find(recs, "user_passwd", "frank", "ok");
	cr_assert_not_null(r, "seal administration");

	/* Query filters. */
	json_decref(recs);
	recs = query("grace", json_pack("{s:s}", "digest", dhex), NULL);
	cr_assert_eq(json_array_size(recs), 1, "by digest");
	json_decref(recs);
	recs = query("grace", json_pack("{s:s,s:s}", "seal", "finance", "outcome", "ok"), NULL);
	cr_assert_geq(json_array_size(recs), 1);
	json_decref(recs);
	recs = query("grace", json_pack("{s:s}", "department", "finance"), NULL);
	cr_assert_not_null(find(recs, "sign", "dave", "denied"), "dave is in finance");
	cr_assert_null(find(recs, "login", "alice", NULL), "alice is not");
	json_decref(recs);
	recs = query("grace", json_pack("{s:I}", "from_ns", (json_int_t)time(NULL) * 1000000000LL + 3600000000000LL), NULL);
	cr_assert_eq(json_array_size(recs), 0, "nothing in the future");
	json_decref(recs);
	free(sa);
	free(sd);
	free(sf);
}

Test(trail, who_may_read_what)
{
	const char *scope = NULL;
	json_t *recs, *rep;
	size_t i;
	json_t *r;
	int fd = sgt_conn();
	char *s;
	uint8_t d[32] = { 1 };

	/* Some records of each. */
	s = login(fd, "alice");
	json_decref(sign(fd, s, "finance", d));
	free(s);
	s = login(fd, "dave");
	json_decref(sign(fd, s, "finance", d));
	free(s);
	s = login(fd, "bob");
	free(s);

	recs = query("alice", NULL, &scope);
	cr_assert_str_eq(scope, "own");
	cr_assert_gt(json_array_size(recs), 0);
	json_array_foreach(recs, i, r)
		cr_assert_str_eq(s_of(r, "actor"), "alice", "alice sees only her own (seq %lld)",
		                 (long long)json_integer_value(json_object_get(r, "seq")));
	json_decref(recs);

	recs = query("bob", NULL, &scope);
	cr_assert(strstr(scope, "sales"), "%s", scope);
	cr_assert_not_null(find(recs, "login", "alice", NULL), "the head of sales sees alice");
	cr_assert_not_null(find(recs, "login", "bob", NULL), "and himself");
	json_array_foreach(recs, i, r)
		cr_assert(!strcmp(s_of(r, "actor"), "alice") || !strcmp(s_of(r, "actor"), "bob"),
		          "bob sees %s", s_of(r, "actor"));
	json_decref(recs);

	recs = query("carol", NULL, &scope);
	cr_assert_not_null(find(recs, "sign", "dave", NULL), "the head of hq sees finance too");
	cr_assert_null(find(recs, "gateway_start", NULL, NULL), "but not the gateway's own records");
	json_decref(recs);

	recs = query("frank", NULL, &scope);
	cr_assert_str_eq(scope, "all");
	cr_assert_not_null(find(recs, "gateway_start", NULL, NULL), "a seal admin sees everything");
	json_decref(recs);

	/* Refusals, themselves recorded. */
	s = login(fd, "alice");
	rep = req_s("audit_query", s);
	json_object_set_new(rep, "person", json_string("dave"));
	rep = sgt_call(fd, rep);
	cr_assert_not(sg_reply_is_ok(rep, NULL, NULL, NULL), "alice may not read dave's");
	json_decref(rep);
	rep = sgt_call(fd, req_s("audit_export", s));
	cr_assert_not(sg_reply_is_ok(rep, NULL, NULL, NULL), "alice may not export");
	json_decref(rep);
	free(s);
	s = login(fd, "bob");
	rep = req_s("audit_query", s);
	json_object_set_new(rep, "department", json_string("finance"));
	rep = sgt_call(fd, rep);
	cr_assert_not(sg_reply_is_ok(rep, NULL, NULL, NULL), "bob does not head finance");
	json_decref(rep);
	free(s);
	close(fd);
	recs = query("grace", json_pack("{s:s,s:s}", "action", "audit_query", "outcome", "denied"), NULL);
	cr_assert_geq(json_array_size(recs), 2, "refused reads are recorded");
	json_decref(recs);
}

/* ---- export, offline verification, tampering ---- */

static char **
read_lines(const char *file, size_t *n)
{
	char *all = slurp(file), *save = NULL, *l;
	char **v = NULL;

	*n = 0;
	for (l = strtok_r(all, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
		v = realloc(v, (*n + 1) * sizeof(*v));
		v[(*n)++] = strdup(l);
	}
	free(all);
	return v;
}

static void
write_lines(const char *file, char **v, size_t n)
{
	FILE *f = fopen(file, "we");

	cr_assert_not_null(f);
	for (size_t i = 0; i < n; i++)
		if (v[i])
			fprintf(f, "%s\n", v[i]);
	fclose(f);
}

static long long
seq_of(const char *line)
{
	const char *p = strstr(line, "\"seq\":");

	return p ? atoll(p + 6) : -1;
}

static bool
is_record(const char *l)
{
	return strstr(l, "\"type\":\"record\"") != NULL;
}

/* The n-th record line from the end. */
static size_t
record_line(char **v, size_t n, size_t from_end)
{
	for (size_t i = n; i-- > 0;)
		if (is_record(v[i]) && from_end-- == 0)
			return i;
	cr_assert_fail("not enough records");
	return 0;
}

static void
expect_bad(char **v, size_t n, const char *what, const char *needle1, const char *needle2)
{
	char *file = path_in("tampered.jsonl"), *out;
	int rc;

	write_lines(file, v, n);
	rc = verify_file(file, cert_opts(), &out);
	cr_assert_eq(rc, 1, "%s not detected:\n%s", what, out);
	cr_assert(strstr(out, "NOT intact"), "%s:\n%s", what, out);
	cr_assert(strstr(out, needle1), "%s: expected \"%s\" in:\n%s", what, needle1, out);
	if (needle2)
		cr_assert(strstr(out, needle2), "%s: expected \"%s\" in:\n%s", what, needle2, out);
	free(out);
}

Test(trail, export_verifies_offline_and_names_every_tampering)
{
	char *file = path_in("export.jsonl"), *out, *csv, *save, needle[64], needle2[64];
	char **v, **w;
	size_t n, k;
	int fd = sgt_conn();
	char *s = login(fd, "alice");
	uint8_t d[32] = { 7 };

	for (int i = 0; i < 20; i++) {
		d[1] = (uint8_t)i;
		json_decref(sign(fd, s, "finance", d));
	}
	free(s);
	close(fd);
	export_to(file);
	cr_assert_eq(verify_file(file, cert_opts(), &out), 0, "%s", out);
	cr_assert(strstr(out, "audit log intact"), "%s", out);
	free(out);
	/* Against the gateway directly (exports, then checks here). */
	{
		char args[2 * PATH_MAX];
		snprintf(args, sizeof(args), "audit verify --cert %s", path_in("sealgate-audit.crt.pem"));
		cr_assert_eq(sealctl_as("grace", args, path_in("verify2.out")), 0);
		/* CSV too. */
		snprintf(args, sizeof(args), "audit export --format csv -o %s", path_in("export.csv"));
		cr_assert_eq(sealctl_as("grace", args, path_in("csv.out")), 0);
	}
	csv = slurp(path_in("export.csv"));
	cr_assert(!strncmp(csv, "type,seq,time,local_time", 24), "%.80s", csv);
	cr_assert(strstr(csv, "\r\nrecord,1,"), "records in the CSV");
	cr_assert(strstr(csv, "\r\ncheckpoint,"), "checkpoints in the CSV");
	free(csv);
	(void)save;

	v = read_lines(file, &n);
	w = calloc(n, sizeof(*w));
	cr_assert_gt(n, 20);

	/* One byte of a record changed. */
	memcpy(w, v, n * sizeof(*w));
	k = record_line(v, n, 5);
	w[k] = strdup(v[k]);
	{
		char *o = strstr(w[k], "\"outcome\":\"");
		cr_assert_not_null(o);
		o[11] ^= 0x20;   /* ok -> Ok */
	}
	snprintf(needle, sizeof(needle), "seq %lld", seq_of(v[k]));
	expect_bad(w, n, "a changed byte", needle, "record changed");
	free(w[k]);

	/* One record removed. */
	memcpy(w, v, n * sizeof(*w));
	w[k] = NULL;
	snprintf(needle, sizeof(needle), "seq %lld: missing", seq_of(v[k]));
	expect_bad(w, n, "a removed record", needle, NULL);

	/* Two records swapped. */
	memcpy(w, v, n * sizeof(*w));
	{
		size_t a = record_line(v, n, 8), b = record_line(v, n, 7);
		w[a] = v[b];
		w[b] = v[a];
		snprintf(needle, sizeof(needle), "seq %lld", seq_of(v[a]));
		expect_bad(w, n, "swapped records", needle, "out of order");
	}

	/* A record inserted (a copy of another, renumbered). */
	memcpy(w, v, n * sizeof(*w));
	{
		char **x = calloc(n + 1, sizeof(*x));
		size_t a = record_line(v, n, 6);
		memcpy(x, v, (a + 1) * sizeof(*x));
		x[a + 1] = v[a];
		memcpy(x + a + 2, v + a + 1, (n - a - 1) * sizeof(*x));
		snprintf(needle, sizeof(needle), "seq %lld", seq_of(v[a]));
		expect_bad(x, n + 1, "an inserted record", needle, "twice");
		free(x);
	}

	/* The last three records cut off, the signed checkpoint kept. */
	memcpy(w, v, n * sizeof(*w));
	{
		size_t last = record_line(v, n, 0);
		long long cut = seq_of(v[record_line(v, n, 2)]);
		for (size_t i = record_line(v, n, 2); i <= last; i++)
			if (is_record(v[i]))
				w[i] = NULL;
		snprintf(needle, sizeof(needle), "seq %lld: missing", cut);
		expect_bad(w, n, "a truncated tail", needle, "truncated");
	}

	/* The file simply cut short. */
	snprintf(needle2, sizeof(needle2), "truncated");
	expect_bad(v, record_line(v, n, 3), "a cut file", needle2, NULL);

	/* A checkpoint's signature changed. */
	memcpy(w, v, n * sizeof(*w));
	for (k = n; k-- > 0;)
		if (strstr(v[k], "\"type\":\"checkpoint\""))
			break;
	w[k] = strdup(v[k]);
	{
		char *sig = strstr(w[k], "\"signature\":\"");
		cr_assert_not_null(sig);
		sig[20] = sig[20] == 'A' ? 'B' : 'A';
	}
	snprintf(needle, sizeof(needle), "checkpoint at seq %lld", seq_of(v[k]));
	expect_bad(w, n, "a forged checkpoint", needle, "forged");
	free(w[k]);

	/* The wrong audit certificate pinned. */
	{
		char extra[PATH_MAX + 16];
		snprintf(extra, sizeof(extra), "--cert %s", path_in("finance-seal.crt.pem"));
		cr_assert_eq(verify_file(file, extra, &out), 1, "a foreign certificate:\n%s", out);
		free(out);
	}
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
	free(w);
}

/* The same on PostgreSQL: the audit tables copied aside, the role (their
 * owner) turning their append-only triggers off for the change, and the
 * copies put back afterwards. */
#define PG_AUDIT_TABLES(x) x(audit) x(audit_checkpoints) x(audit_checkpoint_ids)
#define PG_SAVE(t) "CREATE TABLE sgt_" #t " AS SELECT * FROM " #t ";"
#define PG_OFF(t) "ALTER TABLE " #t " DISABLE TRIGGER USER;"
#define PG_ON(t) "ALTER TABLE " #t " ENABLE TRIGGER USER;"
#define PG_BACK(t) "DELETE FROM " #t "; INSERT INTO " #t " SELECT * FROM sgt_" #t "; DROP TABLE sgt_" #t ";"

static void
store_tamper_pg(const char *sql, const char *needle)
{
	const char *dir = sgt_env("SG_IT_DIR");
	char *file = path_in("store-export.jsonl"), *out, all[2048];

	fixture("stop", NULL);
	sgt_store_exec(dir, PG_AUDIT_TABLES(PG_SAVE));
	snprintf(all, sizeof(all), "%s %s; %s", PG_AUDIT_TABLES(PG_OFF), sql, PG_AUDIT_TABLES(PG_ON));
	sgt_store_exec(dir, all);
	fixture("start", NULL);
	export_to(file);
	cr_assert_eq(verify_file(file, cert_opts(), &out), 1, "%s not detected:\n%s", sql, out);
	cr_assert(strstr(out, needle), "%s: expected \"%s\" in:\n%s", sql, needle, out);
	free(out);
	fixture("stop", NULL);
	sgt_store_exec(dir, PG_AUDIT_TABLES(PG_OFF) PG_AUDIT_TABLES(PG_BACK) PG_AUDIT_TABLES(PG_ON));
	fixture("start", NULL);
}

/* Store tampering: the gateway is stopped, the file changed behind its
 * back (triggers dropped), and restored afterwards. */
static void
store_tamper(const char *sql, const char *needle)
{
	char *db = path_in("sealgate.db"), *file = path_in("store-export.jsonl"), *out;
	sqlite3 *h = NULL;
	char *msg = NULL;

	if (sgt_store_is_pg()) {
		store_tamper_pg(sql, needle);
		return;
	}
	fixture("stop", NULL);
	cr_assert_eq(sh("cp %s %s.bak", db, db), 0);
	cr_assert_eq(sqlite3_open(db, &h), SQLITE_OK);
	cr_assert_eq(sqlite3_exec(h, "DROP TRIGGER IF EXISTS audit_no_update;"
	                             "DROP TRIGGER IF EXISTS audit_no_delete;"
	                             "DROP TRIGGER IF EXISTS audit_checkpoints_no_update;"
	                             "DROP TRIGGER IF EXISTS audit_checkpoints_no_delete;", NULL, NULL, &msg),
	             SQLITE_OK, "%s", msg);
	cr_assert_eq(sqlite3_exec(h, sql, NULL, NULL, &msg), SQLITE_OK, "%s: %s", sql, msg);
	sqlite3_close(h);
	fixture("start", NULL);
	export_to(file);
	cr_assert_eq(verify_file(file, cert_opts(), &out), 1, "%s not detected:\n%s", sql, out);
	cr_assert(strstr(out, needle), "%s: expected \"%s\" in:\n%s", sql, needle, out);
	free(out);
	fixture("stop", NULL);
	cr_assert_eq(sh("mv %s.bak %s && rm -f %s-wal %s-shm", db, db, db, db), 0);
	fixture("start", NULL);
}

static long long
store_int(const char *sql)
{
	return sgt_store_number(sgt_env("SG_IT_DIR"), sql);
}

Test(trail, store_tampering_is_named)
{
	char sql[1024], needle[64];
	long long head;
	int fd = sgt_conn();
	char *s = login(fd, "dave");
	uint8_t d[32] = { 9 };

	for (int i = 0; i < 10; i++) {
		d[1] = (uint8_t)i;
		json_decref(sign(fd, s, "finance", d));
	}
	free(s);
	close(fd);
	/* A clean stop signs the head. */
	fixture("stop", NULL);
	fixture("start", NULL);
	head = store_int("SELECT MAX(seq) FROM audit_checkpoints");
	cr_assert_gt(head, 12);

	snprintf(sql, sizeof(sql), "UPDATE audit SET actor = 'mallory' WHERE seq = %lld", head - 4);
	snprintf(needle, sizeof(needle), "seq %lld", head - 4);
	store_tamper(sql, needle);

	snprintf(sql, sizeof(sql), "DELETE FROM audit WHERE seq = %lld", head - 6);
	snprintf(needle, sizeof(needle), "seq %lld: missing", head - 6);
	store_tamper(sql, needle);

	/* Swap two records' contents (each keeps its seq). */
	snprintf(sql, sizeof(sql),
	         "CREATE TEMP TABLE t AS SELECT * FROM audit WHERE seq IN (%lld, %lld);"
	         "UPDATE audit SET (ts_ns, action, outcome, reason, actor, uid, pid, exe, host, seal,"
	         " application, doc_digest, signed_digest, mechanism, detail, prev_hash, hash) ="
	         " (SELECT ts_ns, action, outcome, reason, actor, uid, pid, exe, host, seal,"
	         "  application, doc_digest, signed_digest, mechanism, detail, prev_hash, hash"
	         "  FROM t WHERE t.seq = %lld - audit.seq) WHERE seq IN (%lld, %lld);",
	         head - 8, head - 7, 2 * head - 15, head - 8, head - 7);
	snprintf(needle, sizeof(needle), "seq %lld", head - 8);
	store_tamper(sql, needle);

	/* The tail cut off under a signed checkpoint (the gateway then grows
	 * a shorter log from the cut: the signed heads past it are missing). */
	snprintf(sql, sizeof(sql), "DELETE FROM audit WHERE seq > %lld", head - 3);
	store_tamper(sql, "the tail was truncated");
}

/* ---- kill -9 during a storm of signatures ---- */

#define STORM_THREADS 8
#define STORM_MAX 20000

struct got { long long seq; uint8_t d[32]; };
struct stormer { int id; const char *session; struct got *got; volatile size_t n; int errors;
                 char first_error[200]; };
static volatile int storm_stop;

/* No cr_assert in these threads: a failed call ends the thread. */
static json_t *
tcall(int fd, json_t *req)
{
	json_t *rep = NULL;
	char err[256];

	if (sg_call(fd, req, &rep, err, sizeof(err)) != 0)
		rep = NULL;
	json_decref(req);
	return rep;
}

static void *
stormer_main(void *arg)
{
	struct stormer *w = arg;
	int fd = sg_connect_unix(getenv("SEALGATE_SOCKET"));
	const char *s = w->session;
	json_t *req, *rep;

	if (fd < 0)
		return NULL;
	for (unsigned i = 0; s && !storm_stop && w->n < STORM_MAX; i++) {
		uint8_t d[32];

		memset(d, 0, sizeof(d));
		d[0] = (uint8_t)w->id;
		memcpy(d + 1, &i, sizeof(i));
		d[31] = 0xee;
		req = sg_request_new(SG_OP_SIGN);
		json_object_set_new(req, "session", json_string(s));
		json_object_set_new(req, "seal", json_string("finance"));
		json_object_set_new(req, "mechanism", json_integer(CKM_ECDSA));
		sg_set_bytes(req, "data", d, 32);
		rep = tcall(fd, req);
		if (!rep)
			break;   /* the gateway died */
		if (sg_reply_is_ok(rep, NULL, NULL, NULL) && json_object_get(rep, "signature")) {
			w->got[w->n].seq = json_integer_value(json_object_get(rep, "record"));
			memcpy(w->got[w->n].d, d, 32);
			w->n++;
		} else {
			if (w->errors++ == 0)
				snprintf(w->first_error, sizeof(w->first_error), "%s",
				         json_string_value(json_object_get(rep, "message")));
		}
		json_decref(rep);
	}
	close(fd);
	return NULL;
}

/* Eight signers on the finance seal until a few hundred signatures are
 * out (or 5 s), then the gateway dies (kill -9). Returns how many
 * signatures the clients received. */
static size_t
storm_then_kill(struct stormer *w)
{
	pthread_t th[STORM_THREADS];
	size_t total = 0;
	int lfd = sgt_conn();
	char *sess[2] = { login(lfd, "dave"), login(lfd, "alice") };

	close(lfd);
	storm_stop = 0;
	for (int i = 0; i < STORM_THREADS; i++) {
		w[i].id = i;
		w[i].n = 0;
		w[i].errors = 0;
		w[i].session = sess[i % 2];
		w[i].got = calloc(STORM_MAX, sizeof(struct got));
		cr_assert_eq(pthread_create(&th[i], NULL, stormer_main, &w[i]), 0);
	}
	/* Kill it in full flight: after a few hundred signatures or 5 s. */
	for (int t = 0; t < 50; t++) {
		size_t sum = 0;
		for (int i = 0; i < STORM_THREADS; i++)
			sum += w[i].n;
		if (sum > 300)
			break;
		usleep(100000);
	}
	fixture("stop", "KILL");
	storm_stop = 1;
	for (int i = 0; i < STORM_THREADS; i++) {
		pthread_join(th[i], NULL);
		total += w[i].n;
	}
	free(sess[0]);
	free(sess[1]);
	cr_assert_gt(total, 50, "the storm signed (%zu): %s / %s", total, w[0].first_error,
	             w[1].first_error);
	return total;
}

/* Every signature a client got has its record, with its digest, and the
 * log verifies: nothing half written. */
static void
all_released_are_recorded(struct stormer *w)
{
	char *out, *rows, *line, *next, want[96];
	char **by_seq = NULL;
	long long max = 0, seq;

	/* One query for all: each row "seq|DIGEST-HEX|action|outcome". */
	rows = sgt_store_rows(sgt_env("SG_IT_DIR"),
	                      "SELECT seq, hex(signed_digest), action, outcome FROM audit");
	for (line = rows; *line; line = next) {
		next = line + strcspn(line, "\n");
		if (*next)
			*next++ = '\0';
		seq = strtoll(line, NULL, 10);
		if (seq <= 0)
			continue;
		if (seq > max) {
			by_seq = realloc(by_seq, (size_t)(seq + 1) * sizeof(*by_seq));
			cr_assert_not_null(by_seq);
			memset(by_seq + max + 1, 0, (size_t)(seq - max) * sizeof(*by_seq));
			max = seq;
		}
		by_seq[seq] = strchr(line, '|') + 1;
	}
	for (int i = 0; i < STORM_THREADS; i++) {
		for (size_t j = 0; j < w[i].n; j++) {
			seq = w[i].got[j].seq;
			cr_assert(seq > 0 && seq <= max && by_seq[seq],
			          "no record %lld for a released signature", seq);
			for (int k = 0; k < 32; k++)
				snprintf(want + 2 * k, 3, "%02X", w[i].got[j].d[k]);
			strcat(want, "|sign|ok");
			cr_assert_str_eq(by_seq[seq], want, "record %lld is not the signature's", seq);
		}
		free(w[i].got);
		w[i].got = NULL;
	}
	free(by_seq);
	free(rows);
	export_to(path_in("storm.jsonl"));
	cr_assert_eq(verify_file(path_in("storm.jsonl"), cert_opts(), &out), 0, "%s", out);
	free(out);
}

Test(trail, kill9_during_a_signing_storm_loses_no_record)
{
	static struct stormer w[STORM_THREADS];
	size_t total = storm_then_kill(w);

	fixture("start", NULL);
	all_released_are_recorded(w);
	fprintf(stderr, "storm: %zu signatures released before kill -9, all recorded\n", total);
}

/* A power failure: the store's last commits never reached the disk, only
 * the redo log's frames did (docs/audit.md, "Durability"). Played by
 * putting back the store files as they were at a synced point (a clean
 * stop) beside the redo log that a gateway killed mid-storm left. */
Test(trail, power_failure_during_a_signing_storm_loses_no_record)
{
	static struct stormer w[STORM_THREADS];
	size_t total;

	sgt_store_sqlite_only("the redo log replayed into SQLite's files put back");
	fixture("stop", NULL);
	cr_assert_eq(sh("cd %s && cp sealgate.db synced.db && rm -f synced.db-wal", sgt_env("SG_IT_DIR")), 0);
	fixture("start", NULL);
	total = storm_then_kill(w);
	cr_assert_eq(sh("cd %s && cp synced.db sealgate.db && rm -f sealgate.db-wal sealgate.db-shm",
	                sgt_env("SG_IT_DIR")), 0);
	cr_assert_eq(sh("cd %s && : >sealgated.log", sgt_env("SG_IT_DIR")), 0);
	fixture("start", NULL);
	cr_assert_eq(sh("grep -q 'store: replayed .* from .*sealgate.db.redo' %s",
	                path_in("sealgated.log")), 0, "the gateway replayed the redo log");
	{
		int fd = sgt_conn();
		json_t *rep = sgt_call(fd, sg_request_new(SG_OP_STATUS)), *a = json_object_get(rep, "audit");

		cr_assert(json_is_object(a), "status says how records are made durable");
		cr_assert_str_eq(json_string_value(json_object_get(a, "durability")), "redo log");
		cr_assert_gt(json_integer_value(json_object_get(a, "replayed_at_start")), 0);
		json_decref(rep);
		close(fd);
	}
	all_released_are_recorded(w);
	fprintf(stderr, "power failure: %zu signatures released, all recorded after the replay\n", total);
}

/* ---- a full disk ---- */

Test(trail, full_disk_refuses_signatures_cleanly_and_recovers)
{
	char *small = path_in("small"), *filler = path_in("small/filler"), *out;
	char store[PATH_MAX];
	int fd, gfd, failed = 0, ok_before = 0;
	char *s;
	uint8_t d[32] = { 0x42 };
	char block[65536];
	json_t *rep;

	sgt_store_sqlite_only("the SQLite file on a full tmpfs");
	fixture("stop", NULL);
	mkdir(small, 0700);
	if (mount("sg-audit-full", small, "tmpfs", 0, "size=2m,mode=0700") != 0) {
		fixture("start", NULL);
		cr_skip_test("cannot mount a tmpfs here (%s)", strerror(errno));
	}
	snprintf(store, sizeof(store), "%s/sealgate.db", small);
	fixture("store", store);
	fixture("start", NULL);

	gfd = sgt_conn();
	s = login(gfd, "alice");
	/* Fill the file system. */
	fd = open(filler, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	cr_assert_geq(fd, 0);
	memset(block, 0xff, sizeof(block));
	while (write(fd, block, sizeof(block)) > 0)
		;
	while (write(fd, block, 512) > 0)
		;
	close(fd);
	for (int i = 0; i < 3000 && !failed; i++) {
		d[1] = (uint8_t)i;
		d[2] = (uint8_t)(i >> 8);
		rep = sign(gfd, s, "finance", d);
		if (sg_reply_is_ok(rep, NULL, NULL, NULL)) {
			ok_before++;
		} else {
			failed = 1;
			cr_assert_str_eq(s_of(rep, "error"), "audit_failed", "%s", s_of(rep, "message"));
			cr_assert_null(json_object_get(rep, "signature"), "no signature without a record");
		}
		json_decref(rep);
	}
	cr_assert(failed, "the disk never filled (%d signatures)", ok_before);
	/* Space returns: signing works again, on the same connection and login. */
	cr_assert_eq(unlink(filler), 0);
	rep = sign(gfd, s, "finance", d);
	cr_assert(sg_reply_is_ok(rep, NULL, NULL, NULL), "after space returns: %s", s_of(rep, "message"));
	cr_assert_not_null(json_object_get(rep, "signature"));
	json_decref(rep);
	free(s);
	close(gfd);
	export_to(path_in("full.jsonl"));
	cr_assert_eq(verify_file(path_in("full.jsonl"), cert_opts(), &out), 0, "%s", out);
	free(out);

	fixture("stop", NULL);
	cr_assert_eq(umount2(small, MNT_DETACH), 0, "umount %s: %s", small, strerror(errno));
	fixture("store", path_in("sealgate.db"));
	fixture("start", NULL);
}

/* ---- the audit key is never a seal ---- */

Test(trail, a_policy_using_the_audit_key_as_a_seal_is_refused)
{
	const char *dir = sgt_env("SG_IT_DIR");
	char *out;
	int rc;

	/* The same key named another way (by CKA_ID) still counts. */
	cr_assert_eq(sh("sed 's|pkcs11:object=finance-seal;type=private|pkcs11:id=%%a0;type=private|' "
	                "%s/policy.yaml >%s/bad-policy.yaml && "
	                "sed 's|^policy_path: .*|policy_path: %s/bad-policy.yaml|' "
	                "%s/sealgated.yaml >%s/bad.yaml", dir, dir, dir, dir, dir), 0);
	rc = sh("SOFTHSM2_CONF=%s/softhsm2.conf %s/gateway/sealgated --config %s/bad.yaml --check "
	        ">%s/check.out 2>&1", dir, sgt_env("SEALGATE_BUILD"), dir, dir);
	out = slurp(path_in("check.out"));
	cr_assert_neq(rc, 0, "a policy with the audit key as a seal was accepted:\n%s", out);
	cr_assert(strstr(out, "audit key"), "%s", out);
	free(out);
	/* And the real policy is fine. */
	rc = sh("SOFTHSM2_CONF=%s/softhsm2.conf %s/gateway/sealgated --config %s/sealgated.yaml --check "
	        ">%s/check.out 2>&1", dir, sgt_env("SEALGATE_BUILD"), dir, dir);
	cr_assert_eq(rc, 0);
}

/* ---- the checkpoint chain and live exports ---- */

/* A checkpoint deleted from the store and the log cut back to the one
 * before it: the records and the remaining checkpoints agree, and only
 * the gap in the checkpoint ids (and the next checkpoint, signed over
 * it) shows what was removed. */
Test(trail, a_removed_checkpoint_is_named)
{
	int fd = sgt_conn();
	char *s = login(fd, "dave"), *g = login(fd, "grace");
	uint8_t d[32] = { 0x18 };

	for (int i = 0; i < 6; i++) {
		d[1] = (uint8_t)i;
		json_decref(sign(fd, s, "finance", d));
	}
	json_decref(sgt_call(fd, req_s("audit_checkpoint", g)));
	free(g);
	for (int i = 0; i < 6; i++) {
		d[2] = (uint8_t)i;
		json_decref(sign(fd, s, "finance", d));
	}
	free(s);
	close(fd);
	/* store_tamper stops the gateway first, which signs the head: that
	 * last checkpoint is removed, and the log cut back to the one before. */
	cr_assert_gt(store_int("SELECT COUNT(*) FROM audit_checkpoints"), 0);
	store_tamper("DELETE FROM audit WHERE seq > (SELECT seq FROM audit_checkpoints"
	             " ORDER BY id DESC LIMIT 1 OFFSET 1);"
	             "DELETE FROM audit_checkpoints WHERE id = (SELECT MAX(id) FROM audit_checkpoints);",
	             "a signed checkpoint was removed");
}

/* Exports of a log that keeps growing, with checkpoints signed all the
 * while (signers, and an auditor asking for checkpoints): each export
 * verifies. A checkpoint signed after an export began covers records it
 * does not hold and must not be in it. */
struct cpasker { const char *session; volatile int stop; int made; };

static void *
cpasker_main(void *arg)
{
	struct cpasker *a = arg;
	int fd = sg_connect_unix(getenv("SEALGATE_SOCKET"));

	if (fd < 0)
		return NULL;
	while (!a->stop) {
		json_t *req = sg_request_new("audit_checkpoint"), *rep;

		json_object_set_new(req, "session", json_string(a->session));
		rep = tcall(fd, req);
		if (!rep)
			break;
		a->made += sg_reply_is_ok(rep, NULL, NULL, NULL);
		json_decref(rep);
		usleep(2000);
	}
	close(fd);
	return NULL;
}

Test(trail, exports_of_a_busy_log_verify)
{
	static struct stormer w[2];
	struct cpasker ask = { 0 };
	pthread_t th[2], ath;
	int lfd = sgt_conn();
	char *sess = login(lfd, "dave");
	char *file = path_in("busy.jsonl"), *out;

	ask.session = login(lfd, "frank");
	close(lfd);
	storm_stop = 0;
	for (int i = 0; i < 2; i++) {
		w[i].id = 20 + i;
		w[i].n = 0;
		w[i].errors = 0;
		w[i].session = sess;
		w[i].got = calloc(STORM_MAX, sizeof(struct got));
		cr_assert_eq(pthread_create(&th[i], NULL, stormer_main, &w[i]), 0);
	}
	/* Enough records for an export of several pages. */
	while (w[0].n + w[1].n < 2500 && w[0].n + w[1].n < 2 * STORM_MAX - 10)
		usleep(50000);
	cr_assert_eq(pthread_create(&ath, NULL, cpasker_main, &ask), 0);
	for (int run = 0; run < 10; run++) {
		export_to(file);
		cr_assert_eq(verify_file(file, cert_opts(), &out), 0, "run %d of a busy log:\n%s", run, out);
		cr_assert(strstr(out, "audit log intact"), "%s", out);
		free(out);
	}
	ask.stop = 1;
	storm_stop = 1;
	pthread_join(ath, NULL);
	for (int i = 0; i < 2; i++) {
		pthread_join(th[i], NULL);
		free(w[i].got);
	}
	cr_assert_gt(ask.made, 10, "checkpoints were asked for while exporting (%d)", ask.made);
	free(sess);
	free((char *)ask.session);
	/* A real truncation of the same export still shows. */
	{
		size_t n, last;
		char **v = read_lines(file, &n), **cut = calloc(n, sizeof(*cut));

		cr_assert_not_null(cut);
		memcpy(cut, v, n * sizeof(*cut));
		last = record_line(v, n, 0);
		for (size_t i = record_line(v, n, 2); i <= last; i++)
			if (is_record(v[i]))
				cut[i] = NULL;
		expect_bad(cut, n, "a truncated busy export", "missing", "truncated");
		for (size_t i = 0; i < n; i++)
			free(v[i]);
		free(v);
		free(cut);
	}
}

/* Without --cert or --ca the verdict says, loudly, what it does not prove. */
Test(trail, an_unpinned_verify_warns_what_it_proves)
{
	char *file = path_in("unpinned.jsonl"), *out;

	export_to(file);
	cr_assert_eq(verify_file(file, NULL, &out), 0, "%s", out);
	cr_assert(strstr(out, "audit log intact"), "%s", out);
	cr_assert(strstr(out, "WARNING: NO AUDIT CERTIFICATE PINNED"), "%s", out);
	cr_assert(strstr(out, "internally consistent"), "%s", out);
	cr_assert(strstr(out, "re-signed it with a key of their own"), "%s", out);
	free(out);
	cr_assert_eq(verify_file(file, cert_opts(), &out), 0, "%s", out);
	cr_assert_null(strstr(out, "WARNING"), "pinned, no warning:\n%s", out);
	free(out);
}

/* A SQLite store is one site's: audit_verify of every site is this one,
 * and another site is refused, verified or exported, without a second
 * handle on the file the gateway writes (which could replay its redo log). */
Test(trail, a_sqlite_store_has_one_site)
{
	int fd = sgt_conn();
	char *g;
	const char *msg = NULL;
	json_t *req, *rep, *one;

	if (sgt_store_is_pg()) {
		close(fd);
		cr_skip_test("a PostgreSQL store holds every site, tested in tests/cross/test-siteaudit.sh "
		             "(by design: SQLite store only)");
	}
	g = login(fd, "grace");
	req = req_s("audit_verify", g);
	json_object_set_new(req, "site", json_string("*"));
	rep = sgt_call(fd, req);
	cr_assert(sg_reply_is_ok(rep, NULL, NULL, NULL));
	cr_assert_eq(json_array_size(json_object_get(rep, "sites")), 1);
	one = json_array_get(json_object_get(rep, "sites"), 0);
	cr_assert_str_eq(json_string_value(json_object_get(one, "site")), "main");
	cr_assert_str_eq(json_string_value(json_object_get(one, "state")), "intact",
	                 "%s", json_string_value(json_object_get(one, "line")));
	json_decref(rep);

	req = req_s("audit_verify", g);
	json_object_set_new(req, "site", json_string("other"));
	rep = sgt_call(fd, req);
	cr_assert(sg_reply_is_ok(rep, NULL, NULL, NULL));
	one = json_array_get(json_object_get(rep, "sites"), 0);
	cr_assert_str_eq(json_string_value(json_object_get(one, "state")), "error");
	cr_assert(strstr(json_string_value(json_object_get(one, "error")), "holds site main only"),
	          "%s", json_string_value(json_object_get(one, "error")));
	json_decref(rep);

	req = req_s("audit_export", g);
	json_object_set_new(req, "site", json_string("other"));
	rep = sgt_call(fd, req);
	cr_assert_not(sg_reply_is_ok(rep, NULL, NULL, &msg));
	cr_assert(msg && strstr(msg, "holds site main only"), "%s", msg ? msg : "(none)");
	json_decref(rep);
	free(g);
	close(fd);
}
