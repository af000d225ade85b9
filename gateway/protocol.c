/*
 * sealgate wire codec: 4-byte big-endian length, then one JSON object.
 * Shared (static library) by the module, sealgated and sealctl. The frame
 * length is checked against SG_MSG_MAX before anything is allocated.
 */
#include "protocol.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <p11-kit/pkcs11.h>

void
sg_seterr(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

static int
write_all(const struct sg_io *io, const uint8_t *buf, size_t len, int more)
{
	int fd = io->fd;

	while (len > 0) {
		ssize_t n;

		if (io->send != NULL) {
			/* The transport blocks (within its own deadline). */
			n = io->send(io->arg, buf, len);
			if (n <= 0)
				return n < 0 ? (int)n : -EPIPE;
			buf += n;
			len -= (size_t)n;
			continue;
		}
		n = send(fd, buf, len, MSG_NOSIGNAL | (more ? MSG_MORE : 0));
		if (n < 0 && errno == ENOTSOCK)
			n = write(fd, buf, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Milliseconds on CLOCK_MONOTONIC (deadlines survive a clock change). */
static int64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits until fd is readable or the deadline (ms, CLOCK_MONOTONIC; < 0:
 * none) passes. 0 readable, -ETIMEDOUT, or -errno. */
static int
wait_readable(int fd, int64_t deadline)
{
	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int64_t left = deadline < 0 ? -1 : deadline - now_ms();
		int n;

		if (deadline >= 0 && left <= 0)
			return -ETIMEDOUT;
		n = poll(&p, 1, left < 0 ? -1 : left > INT_MAX ? INT_MAX : (int)left);
		if (n > 0)
			return 0;
		if (n < 0 && errno != EINTR)
			return -errno;
	}
}

/* A frame being read: the idle deadline until its first byte, then the
 * frame's own (ms on CLOCK_MONOTONIC; < 0: none). */
struct frame_clock {
	int64_t deadline;
	int frame_ms;
	bool started;
};

/* Returns bytes read (== len), 0 on EOF before the frame's first byte,
 * -ETIME when no byte came before the idle deadline, -ETIMEDOUT when the
 * frame's deadline passed, or -errno. */
static ssize_t
read_all(const struct sg_io *io, uint8_t *buf, size_t len, struct frame_clock *fc)
{
	size_t got = 0;
	int fd = io->fd;
	/* (a frame's start over a transport that holds nothing: wait first,
	 * one poll and one read instead of a read, a poll and a read) */
	bool wait = io->recv != NULL && io->pending != NULL && !fc->started &&
	            !io->pending(io->arg);

	while (got < len) {
		ssize_t n;
		int rc;

		if (io->recv != NULL) {
			/* A transport over a non-blocking socket (TLS): what it
			 * holds decrypted comes first, then the socket is waited
			 * on within the same deadlines. */
			if (wait) {
				wait = false;
				rc = wait_readable(fd, fc->deadline);
				if (rc == -ETIMEDOUT)
					return fc->started ? -ETIMEDOUT : -ETIME;
				if (rc < 0)
					return rc;
			}
			n = io->recv(io->arg, buf + got, len - got);
			if (n == -EAGAIN) {
				wait = true;
				continue;
			}
			if (n < 0)
				return n;
			if (n == 0)
				return fc->started ? -EPROTO : 0;
			if (!fc->started) {
				fc->started = true;
				fc->deadline = fc->frame_ms < 0 ? -1 : now_ms() + fc->frame_ms;
			}
			got += (size_t)n;
			continue;
		}
		/* With a deadline: what is there already is taken without a
		 * poll (one system call per frame part, as without one). */
		if (fc->deadline < 0)
			n = read(fd, buf + got, len - got);
		else
			n = recv(fd, buf + got, len - got, MSG_DONTWAIT);
		if (n < 0 && fc->deadline >= 0 &&
		    (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOTSOCK)) {
			bool sock = errno != ENOTSOCK;

			rc = wait_readable(fd, fc->deadline);
			if (rc == -ETIMEDOUT)
				return fc->started ? -ETIMEDOUT : -ETIME;
			if (rc < 0)
				return rc;
			if (sock)
				continue;
			n = read(fd, buf + got, len - got);
		}
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return fc->started ? -EPROTO : 0;
		if (!fc->started) {
			fc->started = true;
			fc->deadline = fc->frame_ms < 0 ? -1 : now_ms() + fc->frame_ms;
		}
		got += (size_t)n;
	}
	return (ssize_t)got;
}

int
sg_msg_write(int fd, const json_t *msg)
{
	const struct sg_io io = { .fd = fd };

	return sg_msg_write_io(&io, msg);
}

int
sg_msg_write_io(const struct sg_io *io, const json_t *msg)
{
	/* Most messages (a signature's answer is ~200 bytes) are encoded
	 * straight behind their header on the stack: no json_dumps buffer
	 * grown by reallocation, no second copy for the frame. */
	uint8_t stack[4096], *frame = stack;
	size_t len;
	int rc;

	len = json_dumpb(msg, (char *)stack + 4, sizeof(stack) - 4, JSON_COMPACT);
	if (len == 0 || len > SG_MSG_MAX) {
		rc = len == 0 ? -ENOMEM : -EMSGSIZE;
		goto out;
	}
	if (len > sizeof(stack) - 4) {
		frame = malloc(len + 4);
		if (frame == NULL) {
			rc = -ENOMEM;
			goto out;
		}
		if (json_dumpb(msg, (char *)frame + 4, len, JSON_COMPACT) != len) {
			rc = -ENOMEM;
			goto out;
		}
	}
	frame[0] = (uint8_t)(len >> 24);
	frame[1] = (uint8_t)(len >> 16);
	frame[2] = (uint8_t)(len >> 8);
	frame[3] = (uint8_t)len;
	/* One write per message: a split header costs a second wakeup. */
	rc = write_all(io, frame, len + 4, 0);
out:
	/* Bodies may carry PINs: wipe what was encoded (all of the stack
	 * buffer when a long message or an error may have filled it). */
	if (frame != stack) {
		if (frame != NULL)
			OPENSSL_cleanse(frame, len + 4);
		free(frame);
		OPENSSL_cleanse(stack, sizeof(stack));
	} else {
		OPENSSL_cleanse(stack, len != 0 && len + 4 < sizeof(stack) ? len + 4 : sizeof(stack));
	}
	return rc;
}

json_t *
sg_msg_decode(const uint8_t *buf, size_t len, char *err, size_t errlen)
{
	json_error_t jerr;
	json_t *msg, *v;

	if (len == 0 || len > SG_MSG_MAX) {
		sg_seterr(err, errlen, "message length %zu out of range", len);
		return NULL;
	}
	msg = json_loadb((const char *)buf, len, JSON_REJECT_DUPLICATES, &jerr);
	if (msg == NULL) {
		sg_seterr(err, errlen, "malformed JSON at byte %d: %s", jerr.position, jerr.text);
		return NULL;
	}
	if (!json_is_object(msg)) {
		sg_seterr(err, errlen, "message is not a JSON object");
		json_decref(msg);
		return NULL;
	}
	v = json_object_get(msg, "v");
	if (!json_is_integer(v) || json_integer_value(v) != SG_PROTO_VERSION) {
		sg_seterr(err, errlen, "unsupported protocol version (want %d)", SG_PROTO_VERSION);
		json_decref(msg);
		return NULL;
	}
	return msg;
}

int
sg_msg_read(int fd, json_t **out, char *err, size_t errlen)
{
	return sg_msg_read_timed(fd, -1, -1, out, err, errlen);
}

int
sg_msg_read_timed(int fd, int idle_ms, int frame_ms, json_t **out, char *err, size_t errlen)
{
	const struct sg_io io = { .fd = fd };

	return sg_msg_read_io(&io, idle_ms, frame_ms, out, err, errlen);
}

int
sg_msg_read_io(const struct sg_io *io, int idle_ms, int frame_ms, json_t **out, char *err,
               size_t errlen)
{
	struct frame_clock fc = {
		.deadline = idle_ms < 0 ? -1 : now_ms() + idle_ms, .frame_ms = frame_ms,
	};
	uint8_t hdr[4];
	uint8_t *body;
	uint32_t len;
	ssize_t n;
	json_t *msg;

	*out = NULL;
	n = read_all(io, hdr, sizeof(hdr), &fc);
	if (n == 0)
		return -EPIPE;
	if (n < 0) {
		if (n == -ETIME)
			sg_seterr(err, errlen, "no request for %d ms", idle_ms);
		else if (n == -ETIMEDOUT)
			sg_seterr(err, errlen, "the frame was not complete within %d ms", frame_ms);
		else
			sg_seterr(err, errlen, "read: %s", strerror((int)-n));
		return (int)n;
	}
	len = (uint32_t)hdr[0] << 24 | (uint32_t)hdr[1] << 16 | (uint32_t)hdr[2] << 8 | hdr[3];
	if (len == 0 || len > SG_MSG_MAX) {
		sg_seterr(err, errlen, "message length %u out of range (max %u)", len, SG_MSG_MAX);
		return -EMSGSIZE;
	}
	body = malloc(len);
	if (body == NULL)
		return -ENOMEM;
	n = read_all(io, body, len, &fc);
	if (n != (ssize_t)len) {
		if (n == -ETIMEDOUT)
			sg_seterr(err, errlen, "the frame was not complete within %d ms", frame_ms);
		else
			sg_seterr(err, errlen, "short message");
		OPENSSL_cleanse(body, len);
		free(body);
		return n < 0 ? (int)n : -EPROTO;
	}
	msg = sg_msg_decode(body, len, err, errlen);
	OPENSSL_cleanse(body, len);
	free(body);
	if (msg == NULL)
		return -EPROTO;
	*out = msg;
	return 0;
}

int
sg_get_str(const json_t *obj, const char *key, bool required,
           const char **out, size_t max, char *err, size_t errlen)
{
	json_t *v = json_object_get(obj, key);
	size_t len;

	if (v == NULL || json_is_null(v)) {
		if (required) {
			sg_seterr(err, errlen, "missing field \"%s\"", key);
			return -1;
		}
		return 0;
	}
	if (!json_is_string(v)) {
		sg_seterr(err, errlen, "field \"%s\" must be a string", key);
		return -1;
	}
	len = json_string_length(v);
	if (len > max || strlen(json_string_value(v)) != len) {
		sg_seterr(err, errlen, "field \"%s\" is too long or has a NUL byte", key);
		return -1;
	}
	*out = json_string_value(v);
	return 0;
}

int
sg_get_int(const json_t *obj, const char *key, bool required,
           int64_t min, int64_t max, int64_t *out, char *err, size_t errlen)
{
	json_t *v = json_object_get(obj, key);
	json_int_t i;

	if (v == NULL || json_is_null(v)) {
		if (required) {
			sg_seterr(err, errlen, "missing field \"%s\"", key);
			return -1;
		}
		return 0;
	}
	if (!json_is_integer(v)) {
		sg_seterr(err, errlen, "field \"%s\" must be an integer", key);
		return -1;
	}
	i = json_integer_value(v);
	if (i < min || i > max) {
		sg_seterr(err, errlen, "field \"%s\" out of range", key);
		return -1;
	}
	*out = i;
	return 0;
}

int
sg_get_bool(const json_t *obj, const char *key, bool required,
            bool *out, char *err, size_t errlen)
{
	json_t *v = json_object_get(obj, key);

	if (v == NULL || json_is_null(v)) {
		if (required) {
			sg_seterr(err, errlen, "missing field \"%s\"", key);
			return -1;
		}
		return 0;
	}
	if (!json_is_boolean(v)) {
		sg_seterr(err, errlen, "field \"%s\" must be true or false", key);
		return -1;
	}
	*out = json_is_true(v);
	return 0;
}

int
sg_get_bytes(const json_t *obj, const char *key, bool required,
             uint8_t **out, size_t *len, size_t max, char *err, size_t errlen)
{
	json_t *v = json_object_get(obj, key);

	*out = NULL;
	*len = 0;
	if (v == NULL || json_is_null(v)) {
		if (required) {
			sg_seterr(err, errlen, "missing field \"%s\"", key);
			return -1;
		}
		return 0;
	}
	if (!json_is_string(v)) {
		sg_seterr(err, errlen, "field \"%s\" must be a base64 string", key);
		return -1;
	}
	if (sg_b64_decode(json_string_value(v), json_string_length(v), out, len, max) < 0) {
		sg_seterr(err, errlen, "field \"%s\" is not valid base64 of at most %zu bytes", key, max);
		return -1;
	}
	return 0;
}

int
sg_set_bytes(json_t *obj, const char *key, const uint8_t *buf, size_t len)
{
	char *s = sg_b64_encode(buf, len);
	int rc;

	if (s == NULL)
		return -1;
	rc = json_object_set_new(obj, key, json_stringn(s, strlen(s)));
	free(s);
	return rc == 0 ? 0 : -1;
}

json_t *
sg_request_new(const char *op)
{
	return json_pack("{s:i,s:s}", "v", SG_PROTO_VERSION, "op", op);
}

json_t *
sg_reply_ok(void)
{
	return json_pack("{s:i,s:b}", "v", SG_PROTO_VERSION, "ok", 1);
}

json_t *
sg_reply_error(unsigned long rv, const char *code, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return json_pack("{s:i,s:b,s:I,s:s,s:s}", "v", SG_PROTO_VERSION, "ok", 0,
	                 "rv", (json_int_t)rv, "error", code, "message", msg);
}

bool
sg_reply_is_ok(const json_t *reply, unsigned long *rv,
               const char **code, const char **message)
{
	json_t *ok = json_object_get(reply, "ok");
	json_t *jrv, *jcode, *jmsg;

	if (json_is_true(ok))
		return true;
	if (rv)
		*rv = CKR_DEVICE_ERROR;
	if (code)
		*code = "bad_reply";
	if (message)
		*message = "malformed reply from the gateway";
	if (!json_is_false(ok))
		return false;
	jrv = json_object_get(reply, "rv");
	jcode = json_object_get(reply, "error");
	jmsg = json_object_get(reply, "message");
	if (rv && json_is_integer(jrv) && json_integer_value(jrv) >= 0)
		*rv = (unsigned long)json_integer_value(jrv);
	if (code && json_is_string(jcode))
		*code = json_string_value(jcode);
	if (message && json_is_string(jmsg))
		*message = json_string_value(jmsg);
	return false;
}

char *
sg_b64_encode(const uint8_t *buf, size_t len)
{
	size_t outlen;
	char *out;

	if (len > SG_MSG_MAX)
		return NULL;
	outlen = 4 * ((len + 2) / 3);
	out = malloc(outlen + 1);
	if (out == NULL)
		return NULL;
	if (len == 0) {
		out[0] = '\0';
		return out;
	}
	EVP_EncodeBlock((unsigned char *)out, buf, (int)len);
	out[outlen] = '\0';
	return out;
}

int
sg_b64_decode(const char *s, size_t slen, uint8_t **out, size_t *outlen, size_t max)
{
	size_t pad = 0, n;
	uint8_t *buf;
	int got;

	*out = NULL;
	*outlen = 0;
	if (slen % 4 != 0 || slen / 4 * 3 > max + 2)
		return -1;
	if (slen == 0) {
		*out = malloc(1);
		return *out ? 0 : -1;
	}
	if (s[slen - 1] == '=')
		pad++;
	if (s[slen - 2] == '=')
		pad++;
	/* EVP_DecodeBlock skips leading/trailing whitespace; refuse it so one
	 * value has exactly one encoding. */
	for (size_t i = 0; i < slen; i++) {
		char c = s[i];
		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
		      (c >= '0' && c <= '9') || c == '+' || c == '/' ||
		      (c == '=' && i >= slen - pad)))
			return -1;
	}
	n = slen / 4 * 3;
	buf = malloc(n);
	if (buf == NULL)
		return -1;
	got = EVP_DecodeBlock(buf, (const unsigned char *)s, (int)slen);
	if (got < 0 || (size_t)got != n || n - pad > max) {
		free(buf);
		return -1;
	}
	*out = buf;
	*outlen = n - pad;
	return 0;
}

void
sg_msg_wipe_secrets(json_t *msg)
{
	static const char *const keys[] = { "pin", "password", "old_password", "code",
	                                    "secret", "session" };

	if (!json_is_object(msg))
		return;
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		json_t *v = json_object_get(msg, keys[i]);
		if (json_is_string(v))
			OPENSSL_cleanse((char *)json_string_value(v), json_string_length(v));
	}
}

void
sg_free_secret(void *p, size_t len)
{
	if (p == NULL)
		return;
	OPENSSL_cleanse(p, len);
	free(p);
}

void
sg_free_secret_str(char *s)
{
	if (s == NULL)
		return;
	OPENSSL_cleanse(s, strlen(s));
	free(s);
}

int
sg_connect_unix(const char *path)
{
	struct sockaddr_un sun;
	int fd;

	if (path == NULL || strlen(path) >= sizeof(sun.sun_path))
		return -ENAMETOOLONG;
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	memcpy(sun.sun_path, path, strlen(path));
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	while (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		int e = errno;
		if (e == EINTR)
			continue;
		close(fd);
		return -e;
	}
	return fd;
}

int
sg_call(int fd, const json_t *req, json_t **reply, char *err, size_t errlen)
{
	int rc;

	*reply = NULL;
	rc = sg_msg_write(fd, req);
	if (rc < 0) {
		sg_seterr(err, errlen, "send: %s", strerror(-rc));
		return rc;
	}
	rc = sg_msg_read(fd, reply, err, errlen);
	if (rc == -EPIPE)
		sg_seterr(err, errlen, "gateway closed the connection");
	return rc;
}
