/*
 * Integration: the gateway's socket front against a real sealgated — a
 * local user holding all the connections it may, with stalled partial
 * frames, while a real signer still signs (a uid the policy does not know
 * gets the smaller share); a stalled frame and an idle
 * connection closed after their limits (and the module coming back on
 * its own); reloads in a loop while hellos read the token label; a FIFO
 * as the policy path refused on reload without stopping anything.
 * Each test starts the gateway with the limits it needs (front()).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <p11-kit/pkcs11.h>

#include "protocol.h"

#include "sgtest.h"

TestSuite(front, .timeout = 120);

/* DIR/name */
static const char *
at(const char *name)
{
	static char buf[4][512];
	static int k;

	k = (k + 1) % 4;
	snprintf(buf[k], sizeof(buf[k]), "%s/%s", sgt_env("SG_IT_DIR"), name);
	return buf[k];
}

static char *
slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	char *buf = calloc(1, 1 << 20);

	cr_assert_not_null(f, "%s: %s", path, strerror(errno));
	buf[fread(buf, 1, (1 << 20) - 1, f)] = 0;
	fclose(f);
	return buf;
}

static void
spit(const char *path, const char *text)
{
	char tmp[600];
	FILE *f;

	/* beside and renamed over: the gateway never reads half a file */
	snprintf(tmp, sizeof(tmp), "%s.new", path);
	f = fopen(tmp, "w");
	cr_assert_not_null(f);
	fputs(text, f);
	cr_assert_eq(fclose(f), 0);
	cr_assert_eq(rename(tmp, path), 0);
}

/* The fixture's configuration as it was made, kept once beside it. */
static char *
base_config(void)
{
	if (access(at("sealgated.yaml.base"), F_OK) != 0) {
		char *c = slurp(at("sealgated.yaml"));
		spit(at("sealgated.yaml.base"), c);
		free(c);
	}
	return slurp(at("sealgated.yaml.base"));
}

/* Restarts the fixture's gateway with the fixture's configuration plus
 * extra (YAML lines), the log emptied. */
static void
front(const char *extra)
{
	char *base = base_config(), *text, cmd[2048];

	text = malloc(strlen(base) + strlen(extra) + 2);
	sprintf(text, "%s%s", base, extra);
	free(base);
	snprintf(cmd, sizeof(cmd), "sh %s stop %s", sgt_env("SG_IT_FIXTURE"), sgt_env("SG_IT_DIR"));
	cr_assert_eq(system(cmd), 0);
	spit(at("sealgated.yaml"), text);
	free(text);
	spit(at("sealgated.log"), "");
	snprintf(cmd, sizeof(cmd), "sh %s start %s", sgt_env("SG_IT_FIXTURE"), sgt_env("SG_IT_DIR"));
	cr_assert_eq(system(cmd), 0, "the gateway did not start");
}

static pid_t
gateway_pid(void)
{
	char *s = slurp(at("sealgated.pid"));
	pid_t pid = (pid_t)atoi(s);

	free(s);
	cr_assert_gt(pid, 0);
	return pid;
}

/* A hello on a new connection: its token label (caller frees), or NULL
 * when there was no good answer. */
static char *
hello_label(int fd)
{
	json_t *req = sg_request_new(SG_OP_HELLO), *rep = NULL;
	char err[256], *label = NULL;

	if (sg_call(fd, req, &rep, err, sizeof(err)) == 0 && sg_reply_is_ok(rep, NULL, NULL, NULL))
		label = strdup(json_string_value(json_object_get(rep, "token_label")));
	json_decref(req);
	json_decref(rep);
	return label;
}

static bool
hello_ok(void)
{
	int fd = sg_connect_unix(sgt_env("SEALGATE_SOCKET"));
	char *label;

	if (fd < 0)
		return false;
	label = hello_label(fd);
	close(fd);
	free(label);
	return label != NULL;
}

/* alice (the test's own login may act as anyone) logs in and signs with
 * the Contract Seal over one new connection: true when a signature came. */
static bool
alice_signs(void)
{
	int fd = sg_connect_unix(sgt_env("SEALGATE_SOCKET"));
	json_t *req, *rep = NULL;
	uint8_t *sig = NULL;
	size_t siglen = 0;
	char err[256];
	bool ok = false;

	if (fd < 0)
		return false;
	req = sg_request_new(SG_OP_LOGIN);
	json_object_set_new(req, "user", json_string("alice"));
	json_object_set_new(req, "pin", json_string("alice-password"));
	if (sg_call(fd, req, &rep, err, sizeof(err)) == 0 && sg_reply_is_ok(rep, NULL, NULL, NULL)) {
		json_t *sreq = sg_request_new(SG_OP_SIGN), *srep = NULL;

		json_object_set_new(sreq, "session", json_copy(json_object_get(rep, "session")));
		json_object_set_new(sreq, "seal", json_string("contract"));
		json_object_set_new(sreq, "mechanism", json_integer(CKM_RSA_PKCS));
		sg_set_bytes(sreq, "data", (const uint8_t *)"0123456789abcdef0123456789abcdef", 32);
		ok = sg_call(fd, sreq, &srep, err, sizeof(err)) == 0 &&
		     sg_reply_is_ok(srep, NULL, NULL, NULL) &&
		     sg_get_bytes(srep, "signature", true, &sig, &siglen, 1024, err, sizeof(err)) == 0 &&
		     siglen == 256;
		free(sig);
		json_decref(sreq);
		json_decref(srep);
	}
	json_decref(req);
	json_decref(rep);
	close(fd);
	return ok;
}

/* Waits (bounded, for a test that would otherwise hang) until the
 * gateway closes fd without a byte: true, or false on data or no close. */
static bool
closed_by_gateway(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	char c;

	if (poll(&p, 1, 60000) != 1)
		return false;
	return read(fd, &c, 1) == 0;
}

static int
count_in_log(const char *needle)
{
	char *log = slurp(at("sealgated.log")), *p = log;
	int n = 0;

	while ((p = strstr(p, needle)) != NULL) {
		n++;
		p += strlen(needle);
	}
	free(log);
	return n;
}

#define ATTACKER_TRIES 1100     /* over the global limit (1024) */
#define KNOWN_CAP 64            /* connections_per_uid's default */
#define UNKNOWN_CAP 8           /* connections_per_unknown_uid's default */

/* uid nobody opens ATTACKER_TRIES connections, each stalled on two bytes
 * of a frame; meanwhile alice says hello and signs (asserted). Then the
 * attacker counts what the gateway made of its connections: held (no
 * answer), refused ("busy"), anything else. */
static void
attack(int *held, int *busy, int *other, int *opened)
{
	int ready[2], go[2], status;
	pid_t pid;
	FILE *r;

	cr_assert_eq(pipe(ready), 0);
	cr_assert_eq(pipe(go), 0);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		struct rlimit rl = { ATTACKER_TRIES + 64, ATTACKER_TRIES + 64 };
		static int fds[ATTACKER_TRIES];
		int n = 0, h = 0, b = 0, o = 0;
		char c;

		close(ready[0]);
		close(go[1]);
		if (setrlimit(RLIMIT_NOFILE, &rl) != 0 || setgid(65534) != 0 || setuid(65534) != 0)
			_exit(10);
		for (int i = 0; i < ATTACKER_TRIES; i++) {
			fds[i] = sg_connect_unix(getenv("SEALGATE_SOCKET"));
			if (fds[i] < 0)
				continue;
			n++;
			/* two bytes of a length header, and nothing more (a
			 * refused one may be closed already: EPIPE, its "busy"
			 * still to be read) */
			(void)send(fds[i], "\0\0", 2, MSG_NOSIGNAL);
		}
		dprintf(ready[1], "%d\n", n);
		/* alice signs now; then see what the gateway made of ours */
		if (read(go[0], &c, 1) != 1)
			_exit(11);
		for (int i = 0; i < ATTACKER_TRIES; i++) {
			struct pollfd p = { .fd = fds[i], .events = POLLIN };
			const char *code = NULL;
			json_t *rep = NULL;
			char err[256];

			if (fds[i] < 0)
				continue;
			if (poll(&p, 1, 0) == 0) {
				h++;
				continue;
			}
			if (sg_msg_read(fds[i], &rep, err, sizeof(err)) == 0 &&
			    !sg_reply_is_ok(rep, NULL, &code, NULL) && strcmp(code, "busy") == 0)
				b++;
			else
				o++;
			json_decref(rep);
		}
		dprintf(ready[1], "%d %d %d\n", h, b, o);
		_exit(0);
	}
	close(ready[1]);
	close(go[0]);
	r = fdopen(ready[0], "r");
	cr_assert_not_null(r);
	cr_assert_eq(fscanf(r, "%d", opened), 1, "the attacker did not get going");
	cr_assert_gt(*opened, ATTACKER_TRIES / 2, "the attacker connected only %d times", *opened);
	/* while it holds everything it may */
	cr_assert(hello_ok(), "a hello failed while uid nobody held its connections");
	cr_assert(alice_signs(), "alice could not sign while uid nobody held its connections");
	cr_assert_eq(write(go[1], "g", 1), 1);
	close(go[1]);
	cr_assert_eq(fscanf(r, "%d %d %d", held, busy, other), 3);
	fclose(r);
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "attacker step %d",
	          WEXITSTATUS(status));
}

/* Issue 5: 1,030 connections that each sent two bytes made every other
 * client's hello fail. uid nobody (no sealgate account) opens more than
 * the whole gateway takes and stalls each; only its per-uid share (8) is
 * held, the rest refused with "busy" and logged once, and alice still
 * gets her hello and her signature meanwhile. */
Test(front, an_attacker_at_its_cap_leaves_a_signer_room)
{
	int held, busy, other, opened;

	if (getuid() != 0)
		cr_skip_test("needs root to switch uid");
	/* frames that would not time out during the test */
	front("frame_timeout: 60\nclient_idle_timeout: 600\n");
	attack(&held, &busy, &other, &opened);
	cr_assert_eq(held, UNKNOWN_CAP, "uid nobody holds %d connections (%d refused, %d other)",
	             held, busy, other);
	cr_assert_eq(busy, opened - UNKNOWN_CAP, "refused with busy: %d of %d", busy, opened);
	cr_assert_eq(other, 0);
	/* said, but not once per refusal */
	cr_assert_eq(count_in_log("unknown to the policy, holds its limit of connections"), 1,
	             "the refusals of one uid are not logged once a minute");
	cr_assert(hello_ok());
}

/* The same uid once the policy knows its login (a person with os_logins
 * [nobody]): it may hold the larger share (64), and no more. */
Test(front, a_known_uid_holds_the_larger_share)
{
	char *orig = slurp(at("policy.yaml")), *pol, *p;
	const char *frank = "    - { id: frank,";
	const char *nina = "    - { id: nina, name: Nina, department: sales, roles: [employee], "
	                   "os_logins: [nobody] }\n";
	int held, busy, other, opened;

	if (getuid() != 0)
		cr_skip_test("needs root to switch uid");
	p = strstr(orig, frank);
	cr_assert_not_null(p);
	pol = malloc(strlen(orig) + strlen(nina) + 1);
	memcpy(pol, orig, (size_t)(p - orig));
	strcpy(pol + (p - orig), nina);
	strcat(pol, p);
	spit(at("policy.yaml"), pol);
	free(pol);
	front("frame_timeout: 60\nclient_idle_timeout: 600\n");
	attack(&held, &busy, &other, &opened);
	spit(at("policy.yaml"), orig);
	free(orig);
	cr_assert_eq(held, KNOWN_CAP, "uid nobody, known, holds %d connections (%d refused, %d other)",
	             held, busy, other);
	cr_assert_eq(busy, opened - KNOWN_CAP, "refused with busy: %d of %d", busy, opened);
	cr_assert_eq(other, 0);
	cr_assert_eq(count_in_log("this uid holds its limit of connections"), 1);
}

/* A frame that stalls after its first bytes, and one that trickles in a
 * byte at a time, are closed once the frame deadline (1 s here) passed;
 * the gateway says so and goes on answering. */
Test(front, a_stalled_frame_is_closed_after_its_deadline)
{
	int fd, trickle;
	bool cut = false;

	front("frame_timeout: 1\nclient_idle_timeout: 600\n");
	fd = sgt_conn();
	cr_assert_eq(send(fd, "\0\0", 2, MSG_NOSIGNAL), 2);
	cr_assert(closed_by_gateway(fd), "a stalled partial frame was not closed");
	close(fd);

	/* "\0\0\0\x20" then a byte every 100 ms: never a whole frame in 1 s */
	trickle = sgt_conn();
	for (int i = 0; i < 600 && !cut; i++) {
		struct pollfd p = { .fd = trickle, .events = POLLIN };
		cut = send(trickle, i < 3 ? "\0" : i == 3 ? " " : "{", 1, MSG_NOSIGNAL) != 1 ||
		      poll(&p, 1, 100) == 1;
	}
	cr_assert(cut, "a trickling frame was not closed");
	close(trickle);
	cr_assert_geq(count_in_log("the frame was not complete within 1000 ms"), 1);
	cr_assert(hello_ok());
}

/* A connection with no request for the idle limit (1 s here) is closed,
 * and an application keeps working through the module, which notices and
 * reconnects. (A request that waits inside the gateway longer than both
 * limits is not cut: test-front-stop.sh.) */
Test(front, an_idle_connection_is_closed_and_the_module_reconnects)
{
	CK_FUNCTION_LIST *f;
	CK_SLOT_ID slot;
	CK_ULONG n = 1;
	CK_TOKEN_INFO ti;
	char *label;
	int fd;

	front("frame_timeout: 5\nclient_idle_timeout: 1\n");
	fd = sgt_conn();
	label = hello_label(fd);
	cr_assert_not_null(label, "no hello before the idle limit");
	free(label);
	cr_assert(closed_by_gateway(fd), "an idle connection was not closed");
	close(fd);

	f = sgt_module_load("alice");
	cr_assert_eq(f->C_GetSlotList(CK_TRUE, &slot, &n), CKR_OK);
	cr_assert_eq(f->C_GetTokenInfo(slot, &ti), CKR_OK);
	sleep(2);   /* the module's pooled connection is closed meanwhile */
	cr_assert_eq(f->C_GetTokenInfo(slot, &ti), CKR_OK, "the module did not reconnect");
	sgt_module_unload(&f);
}

/* ---- reloads while clients read what they swap (issue 11) ---- */

struct hellos {
	volatile bool stop;
	int n, bad;
	char last_bad[64];
};

static void *
hello_loop(void *arg)
{
	struct hellos *h = arg;
	int fd = sg_connect_unix(getenv("SEALGATE_SOCKET"));

	while (!h->stop && fd >= 0) {
		char *label = hello_label(fd);

		if (label == NULL || (strcmp(label, "Label One") != 0 && strcmp(label, "Label Two") != 0 &&
		                      strcmp(label, "Integration Co.") != 0)) {
			h->bad++;
			snprintf(h->last_bad, sizeof(h->last_bad), "%s", label ? label : "(no answer)");
		}
		h->n++;
		free(label);
	}
	if (fd >= 0)
		close(fd);
	return NULL;
}

/* The token label a hello shows follows the configuration on reload; 60
 * reloads swapping it while two clients say hello in a loop: every hello
 * is answered with a whole label, old or new (ThreadSanitizer and ASan
 * see a label freed under a reader, as before the snapshot carried it). */
Test(front, reloads_in_a_loop_while_hellos_read_the_label)
{
	struct hellos h = { 0 };
	pthread_t th[2];
	char *base, *text, *label;
	pid_t gw;
	int fd;

	front("");
	base = base_config();
	cr_assert_not_null(strstr(base, "token_label: Integration Co.\n"));
	gw = gateway_pid();
	for (int i = 0; i < 2; i++)
		cr_assert_eq(pthread_create(&th[i], NULL, hello_loop, &h), 0);
	for (int i = 0; i < 60; i++) {
		const char *now = i % 2 ? "token_label: Label Two\n" : "token_label: Label One\n";
		char *p;

		text = malloc(strlen(base) + 64);
		strcpy(text, base);
		p = strstr(text, "token_label: Integration Co.\n");
		memmove(p + strlen(now), p + strlen("token_label: Integration Co.\n"),
		        strlen(p + strlen("token_label: Integration Co.\n")) + 1);
		memcpy(p, now, strlen(now));
		spit(at("sealgated.yaml"), text);
		free(text);
		cr_assert_eq(kill(gw, SIGHUP), 0);
		usleep(20000);
	}
	h.stop = true;
	for (int i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	cr_assert_gt(h.n, 0);
	cr_assert_eq(h.bad, 0, "%d of %d hellos got a bad label, e.g. \"%s\"", h.bad, h.n, h.last_bad);
	cr_assert_gt(count_in_log("policy reloaded"), 0);
	/* SIGHUPs close together count as one: the last file is what rules */
	fd = sgt_conn();
	label = NULL;
	for (int i = 0; i < 100; i++) {
		free(label);
		label = hello_label(fd);
		if (label != NULL && strcmp(label, "Label Two") == 0)
			break;
		usleep(100000);
	}
	close(fd);
	cr_assert_str_eq(label ? label : "", "Label Two");
	free(label);
	spit(at("sealgated.yaml"), base);
	free(base);
}

/* ---- a FIFO as the policy path (issue 15) ---- */

/* Policy path replaced by a FIFO with no writer, SIGHUP: the reload is
 * rejected at once with a line naming the path and a policy_reload error
 * record, instead of blocking in open(); the gateway answers and signs
 * throughout, and a good file afterwards reloads again. */
Test(front, a_fifo_as_policy_is_refused_on_reload)
{
	char pol[512], keep[512];
	long before;
	int i;

	front("");
	snprintf(pol, sizeof(pol), "%s", at("policy.yaml"));
	snprintf(keep, sizeof(keep), "%s", at("policy.yaml.keep"));
	before = sgt_count_records(sgt_env("SG_IT_DIR"), "action = 'policy_reload' AND outcome = 'error' "
	                           "AND reason LIKE '%policy.yaml: not a regular file (a FIFO)%'");
	cr_assert_eq(rename(pol, keep), 0);
	cr_assert_eq(mkfifo(pol, 0644), 0);
	cr_assert_eq(kill(gateway_pid(), SIGHUP), 0);
	for (i = 0; i < 100; i++) {
		if (sgt_count_records(sgt_env("SG_IT_DIR"), "action = 'policy_reload' AND outcome = 'error' "
		                      "AND reason LIKE '%policy.yaml: not a regular file (a FIFO)%'") > before)
			break;
		usleep(100000);
	}
	cr_assert_lt(i, 100, "no policy_reload error record for the FIFO (the reload blocks?)");
	cr_assert_geq(count_in_log("policy.yaml: not a regular file (a FIFO); only a regular file is read"),
	              1);
	cr_assert(hello_ok(), "no hello after the FIFO reload");
	cr_assert(alice_signs(), "no signature after the FIFO reload");
	cr_assert_eq(unlink(pol), 0);
	cr_assert_eq(rename(keep, pol), 0);
	cr_assert_eq(kill(gateway_pid(), SIGHUP), 0);
	for (i = 0; i < 100 && count_in_log("policy reloaded") < 1; i++)
		usleep(100000);
	cr_assert_lt(i, 100, "the good policy did not reload");
	cr_assert(alice_signs());
}
