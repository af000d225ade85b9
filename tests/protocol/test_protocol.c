/* Unit tests of the wire codec: framing, caps, bounded field readers. */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <p11-kit/pkcs11.h>

#include "protocol.h"

static int sv[2];

static void
setup(void)
{
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
}

static void
teardown(void)
{
	close(sv[0]);
	close(sv[1]);
}

TestSuite(protocol, .init = setup, .fini = teardown);

Test(protocol, roundtrip)
{
	json_t *req = sg_request_new(SG_OP_SIGN), *got;
	uint8_t data[300], *back;
	size_t len;
	const char *op;
	char err[128];

	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)i;
	cr_assert_eq(sg_set_bytes(req, "data", data, sizeof(data)), 0);
	cr_assert_eq(sg_msg_write(sv[0], req), 0);
	cr_assert_eq(sg_msg_read(sv[1], &got, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(sg_get_str(got, "op", true, &op, 16, err, sizeof(err)), 0);
	cr_assert_str_eq(op, "sign");
	cr_assert_eq(sg_get_bytes(got, "data", true, &back, &len, 1000, err, sizeof(err)), 0);
	cr_assert_eq(len, sizeof(data));
	cr_assert_eq(memcmp(back, data, len), 0);
	free(back);
	json_decref(req);
	json_decref(got);
}

Test(protocol, oversized_length_refused_before_reading_body)
{
	uint8_t hdr[4] = { 0x7f, 0xff, 0xff, 0xff };
	json_t *got;
	char err[128];

	cr_assert_eq(write(sv[0], hdr, 4), 4);
	cr_assert_eq(sg_msg_read(sv[1], &got, err, sizeof(err)), -EMSGSIZE);
	cr_assert_null(got);
}

Test(protocol, zero_length_refused)
{
	uint8_t hdr[4] = { 0, 0, 0, 0 };
	json_t *got;
	char err[128];

	cr_assert_eq(write(sv[0], hdr, 4), 4);
	cr_assert_eq(sg_msg_read(sv[1], &got, err, sizeof(err)), -EMSGSIZE);
}

Test(protocol, eof_and_short_body)
{
	uint8_t frame[6] = { 0, 0, 0, 10, '{', '}' };
	json_t *got;
	char err[128];

	cr_assert_eq(write(sv[0], frame, sizeof(frame)), (ssize_t)sizeof(frame));
	shutdown(sv[0], SHUT_WR);
	cr_assert_eq(sg_msg_read(sv[1], &got, err, sizeof(err)), -EPROTO);
	cr_assert_eq(sg_msg_read(sv[1], &got, err, sizeof(err)), -EPIPE);
}

Test(protocol, decode_rejects)
{
	const char *bad[] = {
		"[]", "\"x\"", "{}", "{\"v\":2}", "{\"v\":\"1\"}", "{\"v\":1,\"v\":1}",
		"{\"v\":1", "{\"v\":1}garbage",
	};
	char err[128];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		json_t *m = sg_msg_decode((const uint8_t *)bad[i], strlen(bad[i]), err, sizeof(err));
		cr_expect_null(m, "accepted %s", bad[i]);
		cr_expect_neq(err[0], '\0');
	}
	json_t *ok = sg_msg_decode((const uint8_t *)"{\"v\":1}", 7, err, sizeof(err));
	cr_assert_not_null(ok);
	json_decref(ok);
}

Test(protocol, field_bounds)
{
	char err[128];
	json_t *m = json_pack("{s:s,s:s#,s:i,s:s,s:s,s:i,s:b}", "name", "alice",
	                      "nul", "a\0b", (int)3, "n", 42, "b64", "AAEC", "b64bad", "AA=C",
	                      "str_as_int", 1, "flag", 1);
	const char *s;
	int64_t i;
	bool b;
	uint8_t *bytes;
	size_t len;

	cr_assert_eq(sg_get_str(m, "name", true, &s, 5, err, sizeof(err)), 0);
	cr_assert_eq(sg_get_str(m, "name", true, &s, 4, err, sizeof(err)), -1);
	cr_assert_eq(sg_get_str(m, "nul", true, &s, 10, err, sizeof(err)), -1);
	cr_assert_eq(sg_get_str(m, "missing", true, &s, 10, err, sizeof(err)), -1);
	cr_assert_eq(sg_get_str(m, "missing", false, &s, 10, err, sizeof(err)), 0);
	cr_assert_eq(sg_get_str(m, "n", true, &s, 10, err, sizeof(err)), -1);
	cr_assert_eq(sg_get_int(m, "n", true, 0, 41, &i, err, sizeof(err)), -1);
	cr_assert_eq(sg_get_int(m, "n", true, 0, 42, &i, err, sizeof(err)), 0);
	cr_assert_eq(i, 42);
	cr_assert_eq(sg_get_int(m, "name", true, 0, 42, &i, err, sizeof(err)), -1);
	cr_assert_eq(sg_get_bool(m, "flag", true, &b, err, sizeof(err)), 0);
	cr_assert(b);
	cr_assert_eq(sg_get_bool(m, "n", true, &b, err, sizeof(err)), -1);
	cr_assert_eq(sg_get_bytes(m, "b64", true, &bytes, &len, 3, err, sizeof(err)), 0);
	cr_assert_eq(len, 3);
	cr_assert_eq(bytes[2], 2);
	free(bytes);
	cr_assert_eq(sg_get_bytes(m, "b64", true, &bytes, &len, 2, err, sizeof(err)), -1);
	cr_assert_eq(sg_get_bytes(m, "b64bad", true, &bytes, &len, 10, err, sizeof(err)), -1);
	json_decref(m);
}

Test(protocol, base64_exact)
{
	uint8_t *out;
	size_t len;

	cr_assert_eq(sg_b64_decode("", 0, &out, &len, 10), 0);
	cr_assert_eq(len, 0);
	free(out);
	cr_assert_eq(sg_b64_decode("QQ==", 4, &out, &len, 10), 0);
	cr_assert_eq(len, 1);
	cr_assert_eq(out[0], 'A');
	free(out);
	cr_assert_eq(sg_b64_decode("QUI=", 4, &out, &len, 10), 0);
	cr_assert_eq(len, 2);
	free(out);
	cr_assert_eq(sg_b64_decode(" QQ=", 4, &out, &len, 10), -1);
	cr_assert_eq(sg_b64_decode("Q===", 4, &out, &len, 10), -1);
	cr_assert_eq(sg_b64_decode("QQ", 2, &out, &len, 10), -1);
	cr_assert_eq(sg_b64_decode("=QQQ", 4, &out, &len, 10), -1);
	char *e = sg_b64_encode((const uint8_t *)"AB", 2);
	cr_assert_str_eq(e, "QUI=");
	free(e);
}

Test(protocol, reply_error_parsing)
{
	json_t *r = sg_reply_error(CKR_FUNCTION_REJECTED, "denied", "approval #%d is waiting", 42);
	unsigned long rv;
	const char *code, *msg;

	cr_assert_not(sg_reply_is_ok(r, &rv, &code, &msg));
	cr_assert_eq(rv, CKR_FUNCTION_REJECTED);
	cr_assert_str_eq(code, "denied");
	cr_assert_str_eq(msg, "approval #42 is waiting");
	json_decref(r);
	r = json_pack("{s:i}", "v", 1);
	cr_assert_not(sg_reply_is_ok(r, &rv, &code, &msg));
	cr_assert_eq(rv, CKR_DEVICE_ERROR);
	json_decref(r);
	r = sg_reply_ok();
	cr_assert(sg_reply_is_ok(r, &rv, &code, &msg));
	json_decref(r);
}

Test(protocol, secrets_are_wiped_in_place)
{
	json_t *m = json_pack("{s:i,s:s,s:s,s:s}", "v", 1, "pin", "hunter2", "code", "123456",
	                      "op", "login");
	const char *pin = json_string_value(json_object_get(m, "pin"));
	const char *code = json_string_value(json_object_get(m, "code"));

	sg_msg_wipe_secrets(m);
	for (int i = 0; i < 7; i++)
		cr_assert_eq(pin[i], 0);
	for (int i = 0; i < 6; i++)
		cr_assert_eq(code[i], 0);
	cr_assert_str_eq(json_string_value(json_object_get(m, "op")), "login");
	json_decref(m);
	sg_msg_wipe_secrets(NULL);
}

/* The deadlines of the gateway's reader (docs/protocol.md, "Limits and
 * deadlines"): nothing sent → -ETIME after idle_ms; a frame begun and not
 * finished → -ETIMEDOUT after frame_ms, however the bytes trickle; a whole
 * frame inside them reads as usual. */
Test(protocol, idle_deadline_before_the_first_byte)
{
	json_t *got = NULL;
	char err[128];

	cr_assert_eq(sg_msg_read_timed(sv[1], 50, 1000, &got, err, sizeof(err)), -ETIME);
	cr_assert_null(got);
	cr_assert_not_null(strstr(err, "no request"), "%s", err);
}

Test(protocol, frame_deadline_for_a_stalled_header_and_body)
{
	uint8_t part[3] = { 0, 0, 0 }, frame[6] = { 0, 0, 0, 40, '{', '"' };
	json_t *got = NULL;
	char err[128];

	/* Two bytes of the length, then silence. */
	cr_assert_eq(write(sv[0], part, 2), 2);
	cr_assert_eq(sg_msg_read_timed(sv[1], 5000, 100, &got, err, sizeof(err)), -ETIMEDOUT);
	cr_assert_null(got);
	teardown();
	setup();
	/* A whole header and part of the body. */
	cr_assert_eq(write(sv[0], frame, sizeof(frame)), (ssize_t)sizeof(frame));
	cr_assert_eq(sg_msg_read_timed(sv[1], 5000, 100, &got, err, sizeof(err)), -ETIMEDOUT);
	cr_assert_not_null(strstr(err, "not complete"), "%s", err);
}

Test(protocol, a_trickled_frame_is_cut_at_its_deadline)
{
	const char body[] = "{\"v\":1,\"op\":\"hello\",\"pad\":\"xxxxxxxxxxxxxxxxxxxxxxxx\"}";
	uint8_t hdr[4] = { 0, 0, 0, (uint8_t)(sizeof(body) - 1) };
	json_t *got = NULL;
	char err[128];
	pid_t pid;
	int rc;

	/* One byte every 20 ms: each read makes progress, the whole frame
	 * would take over a second; the deadline counts from the first byte. */
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		close(sv[1]);
		(void)!write(sv[0], hdr, 4);
		for (size_t i = 0; i + 1 < sizeof(body); i++) {
			if (write(sv[0], body + i, 1) != 1)
				break;
			usleep(20000);
		}
		_exit(0);
	}
	rc = sg_msg_read_timed(sv[1], 5000, 200, &got, err, sizeof(err));
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	cr_assert_eq(rc, -ETIMEDOUT, "rc %d: %s", rc, err);
	cr_assert_null(got);
}

Test(protocol, a_whole_frame_within_the_deadlines_reads)
{
	json_t *req = sg_request_new(SG_OP_HELLO), *got = NULL;
	char err[128];

	cr_assert_eq(sg_msg_write(sv[0], req), 0);
	cr_assert_eq(sg_msg_read_timed(sv[1], 1000, 1000, &got, err, sizeof(err)), 0, "%s", err);
	cr_assert_not_null(got);
	json_decref(req);
	json_decref(got);
}

/* Frames of every size around the writer's stack buffer (4096 bytes with
 * the header) and well past it arrive whole and equal to what was sent:
 * the long ones are encoded a second time into a buffer of their own. */
Test(protocol, frames_around_the_stack_buffer_arrive_whole)
{
	static const size_t pads[] = { 1, 3000, 4060, 4070, 4071, 4072, 4073, 4074, 4075, 4080,
	                               4092, 4093, 4100, 9000, 60000 };
	char err[128];

	for (size_t i = 0; i < sizeof(pads) / sizeof(pads[0]); i++) {
		json_t *req = sg_request_new(SG_OP_SIGN), *got = NULL;
		char *pad = malloc(pads[i] + 1);

		cr_assert_not_null(pad);
		memset(pad, 'a' + (int)(i % 26), pads[i]);
		pad[pads[i]] = '\0';
		json_object_set_new(req, "pad", json_string(pad));
		cr_assert_eq(sg_msg_write(sv[0], req), 0, "pad %zu", pads[i]);
		cr_assert_eq(sg_msg_read(sv[1], &got, err, sizeof(err)), 0, "pad %zu: %s", pads[i], err);
		cr_assert(json_equal(req, got), "pad %zu: the frame read is not the one written", pads[i]);
		json_decref(req);
		json_decref(got);
		free(pad);
	}
}

/* A message longer than SG_MSG_MAX is refused before a byte is written. */
Test(protocol, oversized_message_not_written)
{
	json_t *req = sg_request_new(SG_OP_SIGN);
	char *pad = malloc(SG_MSG_MAX + 1), b;

	cr_assert_not_null(pad);
	memset(pad, 'x', SG_MSG_MAX);
	pad[SG_MSG_MAX] = '\0';
	json_object_set_new(req, "pad", json_string(pad));
	cr_assert_eq(sg_msg_write(sv[0], req), -EMSGSIZE);
	cr_assert_eq(recv(sv[1], &b, 1, MSG_DONTWAIT), -1);
	cr_assert_eq(errno, EAGAIN);
	json_decref(req);
	free(pad);
}

/* ---- a transport's frames (sg_io with recv: TLS) ---- */

/* A transport over sv[1] that counts its recv calls and those made when
 * the socket had nothing, and may hold bytes of its own ahead of it (as
 * OpenSSL's read-ahead does). */
struct fake_tr {
	int fd;
	unsigned calls, empty;
	uint8_t held[256];
	size_t n_held, off;
};

static ssize_t
fake_recv(void *arg, void *buf, size_t len)
{
	struct fake_tr *t = arg;
	ssize_t n;

	t->calls++;
	if (t->off < t->n_held) {
		n = (ssize_t)(len < t->n_held - t->off ? len : t->n_held - t->off);
		memcpy(buf, t->held + t->off, (size_t)n);
		t->off += (size_t)n;
		return n;
	}
	n = recv(t->fd, buf, len, MSG_DONTWAIT);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
		t->empty++;
		return -EAGAIN;
	}
	return n < 0 ? -errno : n;
}

static ssize_t
fake_send(void *arg, const void *buf, size_t len)
{
	struct fake_tr *t = arg;

	return send(t->fd, buf, len, MSG_NOSIGNAL);
}

static bool
fake_pending(void *arg)
{
	struct fake_tr *t = arg;

	return t->off < t->n_held;
}

/* Writes one hello frame on sv[0] once the reader's thread waits in
 * poll(2) (its /proc syscall file names it), so that the frame comes
 * after the reader began, whatever the scheduler does. */
struct late_writer {
	pid_t tid;
	int polled;
};

static bool
in_poll(pid_t tid)
{
	char path[64], line[64] = "";
	long nr = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/self/task/%d/syscall", (int)tid);
	f = fopen(path, "r");
	if (f == NULL)
		return false;
	if (fgets(line, sizeof(line), f) != NULL)
		nr = strtol(line, NULL, 10);
	fclose(f);
#ifdef SYS_poll
	if (nr == SYS_poll)
		return true;
#endif
	return nr == SYS_ppoll;
}

static void *
late_write(void *arg)
{
	struct late_writer *w = arg;
	json_t *req = sg_request_new(SG_OP_HELLO);

	/* (bounded: 10 s of looking, then the frame is sent anyway) */
	for (int i = 0; i < 10000 && !(w->polled = in_poll(w->tid)); i++)
		usleep(1000);
	(void)sg_msg_write(sv[0], req);
	json_decref(req);
	return NULL;
}

/* A frame that has not come yet when it is asked for: over a transport
 * that holds nothing, the reader waits on the socket before its first
 * recv, so a frame of one record costs one recv for its header and one for
 * its body (which a read-ahead transport takes from what it holds), and
 * no recv is tried on an empty socket (a system call that says EAGAIN). */
Test(protocol, a_transport_waits_before_its_first_recv)
{
	struct fake_tr t = { .fd = sv[1] };
	struct sg_io io = { .fd = sv[1], .arg = &t, .recv = fake_recv, .send = fake_send,
	                    .pending = fake_pending };
	struct late_writer w = { .tid = (pid_t)syscall(SYS_gettid) };
	json_t *got = NULL;
	pthread_t th;
	char err[128];
	int rc;

	cr_assert_eq(pthread_create(&th, NULL, late_write, &w), 0);
	rc = sg_msg_read_io(&io, 20000, 20000, &got, err, sizeof(err));
	pthread_join(th, NULL);
	cr_assert_eq(rc, 0, "%s", err);
	cr_assert_not_null(got);
	cr_assert(w.polled, "the reader never waited in poll");
	cr_assert_eq(t.empty, 0, "%u recv on an empty socket", t.empty);
	cr_assert_eq(t.calls, 2, "%u recv calls for one frame", t.calls);
	json_decref(got);
}

/* What the transport holds is read without a wait on the socket, which
 * here never becomes readable: a wait would end in the idle deadline. */
Test(protocol, what_a_transport_holds_is_read_without_a_wait)
{
	const char body[] = "{\"v\":1,\"op\":\"hello\"}";
	struct fake_tr t = { .fd = sv[1] };
	struct sg_io io = { .fd = sv[1], .arg = &t, .recv = fake_recv, .send = fake_send,
	                    .pending = fake_pending };
	json_t *got = NULL;
	char err[128];

	t.held[3] = (uint8_t)(sizeof(body) - 1);
	memcpy(t.held + 4, body, sizeof(body) - 1);
	t.n_held = 4 + sizeof(body) - 1;
	cr_assert_eq(sg_msg_read_io(&io, 10000, 10000, &got, err, sizeof(err)), 0, "%s", err);
	cr_assert_not_null(got);
	cr_assert_str_eq(json_string_value(json_object_get(got, "op")), "hello");
	cr_assert_eq(t.empty, 0);
	json_decref(got);
	/* The next frame: nothing held, nothing sent: the idle deadline. */
	cr_assert_eq(sg_msg_read_io(&io, 50, 1000, &got, err, sizeof(err)), -ETIME);
	cr_assert_null(got);
}
