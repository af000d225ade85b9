/*
 * Integration: the refusal limiter on a real sealgated (docs/audit.md,
 * "Refusal summaries"). An OS user the policy does not know (made for the
 * test) sends 5,000 refused logins: the audit log gains two records and a
 * summary whose count makes up the rest, written when the gateway stops. A
 * known user's refused signatures are recorded (the first five, then
 * counted); failed password attempts, which count towards a lockout, and
 * signatures refused after their units were reserved are recorded every
 * one.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <p11-kit/pkcs11.h>

#include "protocol.h"
#include "audit_ops.h"
#include "refusals.h"

#include "sgtest.h"

#define FLOOD 5000

/* A test that failed between its stop and start leaves the gateway
 * running for the next one. */
static void
gateway_back(void)
{
	char pidfile[512];

	snprintf(pidfile, sizeof(pidfile), "%s/sealgated.pid", sgt_env("SG_IT_DIR"));
	if (access(pidfile, F_OK) != 0)
		sgt_fixture("start");
}

TestSuite(refusals, .fini = gateway_back, .timeout = 240);

static long
count_records(const char *where)
{
	return sgt_count_records(sgt_env("SG_IT_DIR"), where);
}

static long
summarized(const char *where)
{
	return sgt_count_summarized(sgt_env("SG_IT_DIR"), where);
}

/* A login request on fd; returns CKR_OK or the refusal's code. */
static unsigned long
login_as(int fd, const char *user, const char *pin, char **session)
{
	json_t *req = sg_request_new(SG_OP_LOGIN), *rep = NULL;
	unsigned long rv = CKR_OK;
	char err[256];

	if (user)
		json_object_set_new(req, "user", json_string(user));
	json_object_set_new(req, "pin", json_string(pin));
	if (sg_call(fd, req, &rep, err, sizeof(err)) != 0)
		rv = CKR_DEVICE_ERROR;
	else if (!sg_reply_is_ok(rep, &rv, NULL, NULL))
		;
	else if (session)
		*session = strdup(json_string_value(json_object_get(rep, "session")));
	json_decref(req);
	json_decref(rep);
	return rv;
}

/* n signatures with seal asked for in session, each refused with code. */
static void
signs_refused(int fd, const char *session, const char *seal, CK_MECHANISM_TYPE mech, int n,
              const char *want_code)
{
	for (int i = 0; i < n; i++) {
		json_t *req = sg_request_new(SG_OP_SIGN), *rep;
		const char *code = NULL;

		json_object_set_new(req, "session", json_string(session));
		json_object_set_new(req, "seal", json_string(seal));
		json_object_set_new(req, "mechanism", json_integer((json_int_t)mech));
		sg_set_bytes(req, "data", (const uint8_t *)"0123456789abcdef0123456789abcdef", 32);
		rep = sgt_call(fd, req);
		cr_assert_not(sg_reply_is_ok(rep, NULL, &code, NULL), "signed with the %s", seal);
		cr_assert_str_eq(code, want_code);
		json_decref(rep);
	}
}

static char stranger[32];

static void
stranger_gone(void)
{
	char cmd[96];

	if (stranger[0] == '\0')
		return;
	snprintf(cmd, sizeof(cmd), "userdel '%s' 2>/dev/null", stranger);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove the test user %s\n", stranger);
	stranger[0] = '\0';
	gateway_back();
}

Test(refusals, an_unknown_uid_flood_costs_a_handful_of_records, .fini = stranger_gone)
{
	char cmd[160], where[400];
	struct passwd *pw;
	uid_t uid;
	int status;
	pid_t pid;
	long full;

	if (getuid() != 0)
		cr_skip_test("needs root to make an OS user");
	/* An OS user no person of the policy lists and no act_as names. */
	snprintf(stranger, sizeof(stranger), "sgrl%ld", (long)getpid());
	snprintf(cmd, sizeof(cmd), "flock /tmp/sealgate-useradd.lock useradd --system --no-create-home --shell /usr/sbin/nologin '%s'",
	         stranger);
	cr_assert_eq(system(cmd), 0, "%s failed", cmd);
	pw = getpwnam(stranger);
	cr_assert_not_null(pw);
	uid = pw->pw_uid;
	/* (the gateway names peers at connect: a user made now is known to it) */
	pid = fork();
	if (pid == 0) {
		int c, refused = 0;

		if (setgid(pw->pw_gid) != 0 || setuid(uid) != 0)
			_exit(10);
		c = sg_connect_unix(getenv("SEALGATE_SOCKET"));
		if (c < 0)
			_exit(11);
		for (int i = 0; i < FLOOD; i++)
			refused += login_as(c, NULL, "guess", NULL) == CKR_USER_TYPE_INVALID;
		close(c);
		_exit(refused == FLOOD ? 0 : 12);
	}
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status));
	cr_assert_eq(WEXITSTATUS(status), 0, "child step %d", WEXITSTATUS(status));

	/* While it runs: the first refusals of each interval in full, nothing
	 * else (5,000 requests take a few seconds, not an interval each). */
	snprintf(where, sizeof(where), "uid = %u AND action = 'login'", (unsigned)uid);
	full = count_records(where);
	cr_assert_geq(full, GW_REFLIMIT_BURST_UNKNOWN);
	cr_assert_leq(full, 3 * GW_REFLIMIT_BURST_UNKNOWN, "%ld login records of the unknown uid", full);
	cr_assert_eq(count_records(where), full);

	/* The stop writes what is owed: every refusal is accounted for. */
	sgt_fixture("stop");
	snprintf(where, sizeof(where), "uid = %u", (unsigned)uid);
	/* All the log holds of the flood: those records and a summary or
	 * two (one per interval it spanned). */
	cr_assert_leq(count_records(where), full + 3, "%ld records of the unknown uid",
	              count_records(where));
	cr_assert_eq(full + summarized(where), FLOOD, "%ld recorded + %ld in summaries", full,
	             summarized(where));
	snprintf(where, sizeof(where), "uid = %u AND action = 'refusals_suppressed' AND "
	         "json_extract(detail, '$.known') = 0 AND json_extract(detail, '$.action') = 'login' AND "
	         "reason LIKE '%% more refusals of uid %u (login)%%not a sealgate account%%'",
	         (unsigned)uid, (unsigned)uid);
	cr_assert_geq(count_records(where), 1);
	cr_assert_leq(count_records(where), 3);
	/* ...before the gateway_stop record. */
	cr_assert_eq(count_records("action = 'refusals_suppressed' AND seq > "
	                           "(SELECT max(seq) FROM audit WHERE action = 'gateway_stop')"), 0);
	sgt_fixture("start");
}

Test(refusals, a_known_users_refused_signatures_are_recorded_then_counted)
{
	const char *where = "action = 'sign' AND outcome = 'denied' AND actor = 'alice' AND "
	                    "reason = 'alice may not use a seal named \"finance\"'";
	long before = count_records(where), summed_before;
	int fd = sgt_conn();
	char *session = NULL;

	cr_assert_eq(login_as(fd, "alice", "alice-password", &session), CKR_OK);
	signs_refused(fd, session, "finance", CKM_ECDSA, 8, "no_seal");
	close(fd);
	free(session);
	cr_assert_eq(count_records(where) - before, GW_REFLIMIT_BURST);
	summed_before = summarized("actor = 'alice' AND json_extract(detail, '$.action') = 'sign'");
	sgt_fixture("stop");
	cr_assert_eq(summarized("actor = 'alice' AND json_extract(detail, '$.action') = 'sign'") -
	             summed_before, 8 - GW_REFLIMIT_BURST);
	sgt_fixture("start");
}

/* A seal that wants the second factor at login, on the contract seal's
 * key; the gateway restarted to take it. For the rest of this run. */
static void
add_second_factor_seal(void)
{
	char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/policy.yaml", sgt_env("SG_IT_DIR"));
	f = fopen(path, "a");
	cr_assert_not_null(f);
	fputs("  - id: second\n"
	      "    name: Second Factor Seal\n"
	      "    kind: contract\n"
	      "    key: \"pkcs11:object=contract-seal;type=private\"\n"
	      "    holder: hq\n"
	      "    users: { departments: [sales] }\n"
	      "    approval: none\n"
	      "    mfa: login\n", f);
	cr_assert_eq(fclose(f), 0);
	sgt_fixture("stop");
	sgt_fixture("start");
}

Test(refusals, a_signature_refused_after_its_units_were_reserved_is_recorded)
{
	const char *where = "action = 'sign' AND outcome = 'denied' AND seal = 'second' AND "
	                    "reason LIKE '%wants your second factor at login%'";
	int fd;
	char *session = NULL;

	add_second_factor_seal();
	fd = sgt_conn();
	/* alice logs in with her password alone: the seal refuses each
	 * signature at the second factor, after reserving its units. */
	cr_assert_eq(login_as(fd, "alice", "alice-password", &session), CKR_OK);
	signs_refused(fd, session, "second", CKM_RSA_PKCS, 8, "mfa_required");
	close(fd);
	free(session);
	cr_assert_eq(count_records(where), 8);
}

static void
clock_add(long s)
{
	char path[512], tmp[520];
	long long t = 0;
	FILE *f;

	snprintf(path, sizeof(path), "%s/clock", sgt_env("SG_IT_DIR"));
	snprintf(tmp, sizeof(tmp), "%s.new", path);
	f = fopen(path, "r");
	cr_assert_not_null(f);
	cr_assert_eq(fscanf(f, "%lld", &t), 1);
	fclose(f);
	f = fopen(tmp, "w");
	cr_assert_not_null(f);
	fprintf(f, "%lld\n", t + s);
	cr_assert_eq(fclose(f), 0);
	cr_assert_eq(rename(tmp, path), 0, "%s", strerror(errno));
}

Test(refusals, every_counted_password_failure_is_recorded)
{
	const char *where = "action = 'login' AND outcome = 'denied' AND actor = 'dave' AND "
	                    "reason LIKE 'wrong password for dave (% of 5 attempts used)'";
	long before = count_records(where);
	int fd = sgt_conn();

	/* Four wrong passwords, a fifth that locks, the lock waited out (on
	 * the gateway's test clock), four more: eight refusals of one class
	 * in one interval, each of which counted towards a lockout. */
	for (int round = 0; round < 2; round++) {
		for (int i = 0; i < 5; i++)
			cr_assert_neq(login_as(fd, "dave", "not-daves-password", NULL), CKR_OK);
		clock_add(3600);
	}
	close(fd);
	cr_assert_eq(count_records(where) - before, 8);
	sgt_fixture("stop");
	cr_assert_eq(summarized("json_extract(detail, '$.reason') LIKE 'wrong password%'"), 0);
	sgt_fixture("start");
}

/* n requests op (with one extra string field) in session, each refused with
 * code; returns nothing: the assertions are the caller's counts. */
static void
ops_refused(int fd, const char *session, const char *op, const char *field, const char *value,
            int n, const char *want_code)
{
	for (int i = 0; i < n; i++) {
		json_t *req = sg_request_new(op), *rep;
		const char *code = NULL;

		json_object_set_new(req, "session", json_string(session));
		json_object_set_new(req, field, json_string(value));
		if (strcmp(op, SG_OP_APPLY) == 0) {
			json_object_set_new(req, "reason", json_string("flood"));
			json_object_set_new(req, "document_type", json_string("contract"));
		}
		rep = sgt_call(fd, req);
		cr_assert_not(sg_reply_is_ok(rep, NULL, &code, NULL), "%s was not refused", op);
		cr_assert_str_eq(code, want_code, "%s refused with %s", op, code);
		json_decref(rep);
	}
}

/* Refusals of applications and of audit reads are written by their own
 * handlers (workflow_ops.c, audit_ops.c): they are counted the same way. */
Test(refusals, refused_applications_and_audit_reads_are_recorded_then_counted)
{
	const char *apply = "action = 'application_create' AND outcome = 'denied' AND actor = 'alice'";
	const char *export = "action = 'audit_export' AND outcome = 'denied' AND actor = 'alice'";
	long apply_before = count_records(apply), export_before = count_records(export);
	long apply_sum, export_sum;
	int fd = sgt_conn();
	char *session = NULL;

	cr_assert_eq(login_as(fd, "alice", "alice-password", &session), CKR_OK);
	ops_refused(fd, session, SG_OP_APPLY, "seal", "finance", 9, "no_seal");
	ops_refused(fd, session, SG_OP_AUDIT_EXPORT, "format", "json", 9, "denied");
	close(fd);
	free(session);
	cr_assert_eq(count_records(apply) - apply_before, GW_REFLIMIT_BURST);
	cr_assert_eq(count_records(export) - export_before, GW_REFLIMIT_BURST);
	apply_sum = summarized("actor = 'alice' AND json_extract(detail, '$.action') = 'application_create'");
	export_sum = summarized("actor = 'alice' AND json_extract(detail, '$.action') = 'audit_export'");
	sgt_fixture("stop");
	cr_assert_eq(summarized("actor = 'alice' AND json_extract(detail, '$.action') = "
	                        "'application_create'") - apply_sum, 9 - GW_REFLIMIT_BURST);
	cr_assert_eq(summarized("actor = 'alice' AND json_extract(detail, '$.action') = "
	                        "'audit_export'") - export_sum, 9 - GW_REFLIMIT_BURST);
	sgt_fixture("start");
}
