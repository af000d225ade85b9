/*
 * Integration: a real sealgated spoken to over its socket with the wire
 * codec — garbage and oversized messages, a session token presented from
 * another uid, 256 concurrent connections, SIGHUP reload (bad file
 * rejected, good file applied), refusal to start with a loose PIN file,
 * and the audit chain of the run.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <p11-kit/pkcs11.h>

#include "protocol.h"

#include "sgtest.h"

TestSuite(gateway, .timeout = 60);

static bool
hello_ok(void)
{
	int fd = sg_connect_unix(sgt_env("SEALGATE_SOCKET"));
	json_t *rep = NULL;
	char err[256];
	bool ok;

	if (fd < 0)
		return false;
	json_t *req = sg_request_new(SG_OP_HELLO);
	ok = sg_call(fd, req, &rep, err, sizeof(err)) == 0 && sg_reply_is_ok(rep, NULL, NULL, NULL);
	json_decref(req);
	json_decref(rep);
	close(fd);
	return ok;
}

static char *
login(int fd, const char *user)
{
	char pw[64];
	json_t *req = sg_request_new(SG_OP_LOGIN), *rep;
	char *s;

	snprintf(pw, sizeof(pw), "%s-password", user);
	json_object_set_new(req, "user", json_string(user));
	json_object_set_new(req, "pin", json_string(pw));
	rep = sgt_call(fd, req);
	cr_assert(sg_reply_is_ok(rep, NULL, NULL, NULL));
	s = strdup(json_string_value(json_object_get(rep, "session")));
	json_decref(rep);
	return s;
}

Test(gateway, garbage_gets_an_error_and_changes_nothing)
{
	const char *bodies[] = { "not json", "[1,2,3]", "{\"v\":9,\"op\":\"hello\"}", "{\"v\":1}",
		"{\"v\":1,\"op\":\"sign\"}", "{\"v\":1,\"op\":\"login\",\"pin\":5}" };

	for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
		int fd = sgt_conn();
		uint32_t len = (uint32_t)strlen(bodies[i]);
		uint8_t hdr[4] = { len >> 24, len >> 16, len >> 8, len };
		json_t *rep = NULL;
		char err[256];
		unsigned long rv;

		cr_assert_eq(write(fd, hdr, 4), 4);
		cr_assert_eq(write(fd, bodies[i], len), (ssize_t)len);
		cr_assert_eq(sg_msg_read(fd, &rep, err, sizeof(err)), 0, "no reply to %s: %s", bodies[i], err);
		cr_assert_not(sg_reply_is_ok(rep, &rv, NULL, NULL), "accepted %s", bodies[i]);
		cr_assert_neq(rv, CKR_OK);
		json_decref(rep);
		close(fd);
	}
	cr_assert(hello_ok(), "gateway died on garbage");
}

Test(gateway, oversized_length_closes_without_reading)
{
	int fd = sgt_conn();
	uint8_t hdr[4] = { 0x40, 0, 0, 0 };   /* 1 GiB */
	json_t *rep = NULL;
	char err[256];

	cr_assert_eq(write(fd, hdr, 4), 4);
	/* An error reply, then the connection is closed. */
	if (sg_msg_read(fd, &rep, err, sizeof(err)) == 0) {
		cr_assert_not(sg_reply_is_ok(rep, NULL, NULL, NULL));
		json_decref(rep);
	}
	cr_assert_neq(sg_msg_read(fd, &rep, err, sizeof(err)), 0);
	close(fd);
	cr_assert(hello_ok());
}

Test(gateway, session_token_is_worthless_from_another_uid)
{
	int fd = sgt_conn(), status;
	char *session = login(fd, "alice");
	json_t *req, *rep;
	pid_t pid;

	/* The token works for its own uid... */
	req = sg_request_new(SG_OP_WHOAMI);
	json_object_set_new(req, "session", json_string(session));
	rep = sgt_call(fd, req);
	cr_assert(json_is_true(json_object_get(rep, "logged_in")));
	json_decref(rep);
	close(fd);
	if (getuid() != 0)
		cr_skip_test("needs root to switch uid");
	/* ...and not for another. */
	pid = fork();
	if (pid == 0) {
		unsigned long rv = 0;
		json_t *r2 = NULL;
		char err[256];
		int c;
		if (setgid(65534) != 0 || setuid(65534) != 0)
			_exit(10);
		c = sg_connect_unix(getenv("SEALGATE_SOCKET"));
		if (c < 0)
			_exit(11);
		json_t *q = sg_request_new(SG_OP_SIGN);
		json_object_set_new(q, "session", json_string(session));
		json_object_set_new(q, "seal", json_string("contract"));
		json_object_set_new(q, "mechanism", json_integer(CKM_RSA_PKCS));
		sg_set_bytes(q, "data", (const uint8_t *)"0123456789abcdef0123456789abcdef", 32);
		if (sg_call(c, q, &r2, err, sizeof(err)) != 0)
			_exit(12);
		if (sg_reply_is_ok(r2, &rv, NULL, NULL))
			_exit(13);
		_exit(rv == CKR_USER_NOT_LOGGED_IN ? 0 : 14);
	}
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status));
	cr_assert_eq(WEXITSTATUS(status), 0, "child step %d", WEXITSTATUS(status));
	free(session);
}

Test(gateway, holds_256_concurrent_connections)
{
	int fds[256];

	for (int i = 0; i < 256; i++)
		fds[i] = sgt_conn();
	json_t *hello = sg_request_new(SG_OP_HELLO);

	for (int i = 0; i < 256; i++)
		cr_assert_eq(sg_msg_write(fds[i], hello), 0);
	json_decref(hello);
	for (int i = 0; i < 256; i++) {
		json_t *rep = NULL;
		char err[256];
		cr_assert_eq(sg_msg_read(fds[i], &rep, err, sizeof(err)), 0, "connection %d: %s", i, err);
		cr_assert(sg_reply_is_ok(rep, NULL, NULL, NULL));
		json_decref(rep);
		close(fds[i]);
	}
}

static pid_t
gateway_pid(void)
{
	char path[512];
	FILE *f;
	int pid = 0;

	snprintf(path, sizeof(path), "%s/sealgated.pid", sgt_env("SG_IT_DIR"));
	f = fopen(path, "r");
	cr_assert_not_null(f);
	cr_assert_eq(fscanf(f, "%d", &pid), 1);
	fclose(f);
	return pid;
}

static int
seal_count(void)
{
	int fd = sgt_conn();
	json_t *req = sg_request_new(SG_OP_STATUS), *rep = sgt_call(fd, req);
	int n = (int)json_array_size(json_object_get(rep, "seals"));

	json_decref(rep);
	close(fd);
	return n;
}

static void
write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	cr_assert_not_null(f);
	fputs(text, f);
	fclose(f);
}

static char *
read_file(const char *path)
{
	FILE *f = fopen(path, "r");
	char *buf = calloc(1, 1 << 20);

	cr_assert_not_null(f);
	buf[fread(buf, 1, (1 << 20) - 1, f)] = 0;
	fclose(f);
	return buf;
}

Test(gateway, sighup_rejects_a_bad_policy_and_applies_a_good_one)
{
	char path[512], logp[512];
	char *orig, *log;
	int before = seal_count();

	snprintf(path, sizeof(path), "%s/policy.yaml", sgt_env("SG_IT_DIR"));
	snprintf(logp, sizeof(logp), "%s/sealgated.log", sgt_env("SG_IT_DIR"));
	orig = read_file(path);

	/* A typo: the old policy stays in force and the log says where. */
	{
		char *bad = malloc(strlen(orig) + 64);
		sprintf(bad, "%s    quotass: { per_day: 1 }\n", orig);
		write_file(path, bad);
		free(bad);
	}
	cr_assert_eq(kill(gateway_pid(), SIGHUP), 0);
	usleep(500000);
	cr_assert(hello_ok());
	cr_assert_eq(seal_count(), before);
	log = read_file(logp);
	cr_assert_not_null(strstr(log, "reload rejected"), "no rejection in the log");
	cr_assert_not_null(strstr(log, "policy.yaml:"), "the rejection names no file:line");
	free(log);

	/* Dropping a seal is a good change: applied. */
	{
		char *cut = strdup(orig), *ed = strstr(cut, "  - id: ed\n"), *next;
		cr_assert_not_null(ed);
		next = strstr(ed + 1, "  - id: ");
		cr_assert_not_null(next);
		memmove(ed, next, strlen(next) + 1);
		write_file(path, cut);
		free(cut);
	}
	cr_assert_eq(kill(gateway_pid(), SIGHUP), 0);
	usleep(500000);
	cr_assert_eq(seal_count(), before - 1);

	write_file(path, orig);
	cr_assert_eq(kill(gateway_pid(), SIGHUP), 0);
	usleep(500000);
	cr_assert_eq(seal_count(), before);
	free(orig);
}

Test(gateway, refuses_to_start_with_a_loose_pin_file)
{
	char cmd[2048], pin[512], out[512];
	char *text;

	snprintf(pin, sizeof(pin), "%s/token.pin", sgt_env("SG_IT_DIR"));
	snprintf(out, sizeof(out), "%s/loose.out", sgt_env("SG_IT_DIR"));
	cr_assert_eq(chmod(pin, 0644), 0);
	snprintf(cmd, sizeof(cmd), "SOFTHSM2_CONF=%s/softhsm2.conf %s/gateway/sealgated --config %s/sealgated.yaml --check >%s 2>&1",
	         sgt_env("SG_IT_DIR"), sgt_env("SEALGATE_BUILD"), sgt_env("SG_IT_DIR"), out);
	cr_assert_neq(system(cmd), 0, "started with a 0644 PIN file");
	chmod(pin, 0600);
	text = read_file(out);
	cr_assert_not_null(strstr(text, "token.pin"), "message does not name the file: %s", text);
	free(text);
	cr_assert_eq(system(cmd), 0, "--check fails with a 0600 PIN file");
}
