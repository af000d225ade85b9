/*
 * sealgate wire protocol: framing and a bounded JSON codec shared by the
 * module, the gateway and the tools (docs/protocol.md is the reference).
 * Nothing here trusts a length from the peer: the frame length is checked
 * against SG_MSG_MAX before any allocation, and every field read is typed
 * and bounded.
 */
#ifndef SG_PROTOCOL_H
#define SG_PROTOCOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <jansson.h>

#define SG_PROTO_VERSION     1
#define SG_MSG_MAX           (1024u * 1024u)   /* whole JSON body */
#define SG_SIGN_DATA_MAX     (64u * 1024u)     /* data shown with a digest */
#define SG_EDDSA_DATA_MAX    (512u * 1024u)    /* pure EdDSA signs the message */
#define SG_SESSION_TOKEN_LEN 32                /* bytes, sent base64 */
#define SG_PIN_MAX           256
#define SG_NAME_MAX          128

/* Operation names: the one table of requests (see docs/protocol.md). */
#define SG_OP_HELLO        "hello"
#define SG_OP_LOGIN        "login"
#define SG_OP_LOGOUT       "logout"
#define SG_OP_SEALS        "seals"
#define SG_OP_SIGN         "sign"
#define SG_OP_STATUS       "status"
#define SG_OP_WHOAMI       "whoami"
#define SG_OP_USER_ADD     "user_add"
#define SG_OP_USER_PASSWD  "user_passwd"
#define SG_OP_WHY          "why"
#define SG_OP_APPLY        "apply"
#define SG_OP_LIST         "list"
#define SG_OP_SHOW         "show"
#define SG_OP_APPROVE      "approve"
#define SG_OP_REJECT       "reject"
#define SG_OP_REVOKE       "revoke"
#define SG_OP_EXPLAIN      "explain"
#define SG_OP_TOTP_ENROLL  "totp_enroll"
#define SG_OP_TOTP_RESET   "totp_reset"
#define SG_OP_USER_UNLOCK  "user_unlock"
#define SG_OP_AUTH_STATE   "auth_state"
#define SG_OP_AUTH_CONTEXT "auth_context"
#define SG_OP_WINDOW_OPEN  "window_open"
#define SG_OP_WINDOW_CLOSE "window_close"
#define SG_OP_CONFIRM      "confirm"
#define SG_OP_POLICY_PUBLISH "policy_publish"
#define SG_OP_POLICY_SHOW    "policy_show"
#define SG_OP_POLICY_HISTORY "policy_history"
/* devices over TLS (docs/deployment.md); the first two on the enrollment
 * endpoint only */
#define SG_OP_DEVICE_ENROLL  "device_enroll"
#define SG_OP_DEVICE_FETCH   "device_fetch"
#define SG_OP_DEVICE_LIST    "device_list"
#define SG_OP_DEVICE_APPROVE "device_approve"
#define SG_OP_DEVICE_REVOKE  "device_revoke"
/* the web front (docs/web.md, docs/api.md) */
#define SG_OP_USAGE          "usage"
#define SG_OP_USERS          "users"
/* documents and stamping (docs/stamp.md) */
#define SG_OP_DOC_PUT        "doc_put"
#define SG_OP_DOC_GET        "doc_get"
#define SG_OP_STAMP_PREPARE  "stamp_prepare"
/* the online risk rules' alerts (docs/risk.md) */
#define SG_OP_ALERTS         "alerts"
#define SG_OP_ALERT_ACK      "alert_ack"
#define SG_OP_ALERT_CLOSE    "alert_close"
#define SG_OP_RECEIPT        "receipt"
#define SG_OP_SEAL_IMAGE     "seal_image"

/* ---- framing (blocking fds; EINTR handled; MSG_NOSIGNAL on send) ---- */

/* Encodes msg and writes one frame: 4-byte big-endian length + JSON.
 * Returns 0, or -errno (-EMSGSIZE when the encoding exceeds SG_MSG_MAX). */
/* printf into err[errlen] when err is not NULL: the error-text idiom of
 * every sealgate part that reports through a caller's buffer. */
void sg_seterr(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

int sg_msg_write(int fd, const json_t *msg);

/* A connection's bytes when they do not go straight through fd (TLS):
 * recv takes what is there without blocking (bytes, 0 at EOF, -EAGAIN
 * when fd must be waited on, or -errno); send blocks within its own
 * deadline (bytes, or -errno). With recv and send NULL the io is fd. The
 * frame reader's deadlines and cap are the same either way.
 * pending (may be NULL): true when the transport holds bytes it read
 * ahead of fd. A frame's first bytes are rarely there the moment they
 * are asked for (a reply is being made, a next request not yet sent), so
 * when pending says nothing is held the reader waits on fd before its
 * first recv instead of trying a recv that would say -EAGAIN. */
struct sg_io {
	int fd;
	void *arg;
	ssize_t (*recv)(void *arg, void *buf, size_t len);
	ssize_t (*send)(void *arg, const void *buf, size_t len);
	bool (*pending)(void *arg);
};
int sg_msg_write_io(const struct sg_io *io, const json_t *msg);

/* Reads one frame and decodes it. Returns 0 and *out (caller json_decref's),
 * -EPIPE on a clean EOF before any byte, -EMSGSIZE on an oversized length
 * (nothing past the header is read), -EPROTO on a malformed body (err says
 * why), or another -errno. */
int sg_msg_read(int fd, json_t **out, char *err, size_t errlen);
/* Same, with deadlines (ms; < 0: none): idle_ms for the frame's first byte
 * to arrive (-ETIME when it does not), then frame_ms for the whole frame
 * from that byte on (-ETIMEDOUT), so a peer that trickles bytes cannot
 * hold the reader. */
int sg_msg_read_timed(int fd, int idle_ms, int frame_ms, json_t **out, char *err,
                      size_t errlen);
int sg_msg_read_io(const struct sg_io *io, int idle_ms, int frame_ms, json_t **out, char *err,
                   size_t errlen);

/* Pure decoder used by sg_msg_read and the fuzz target: body must be one
 * JSON object with "v" == SG_PROTO_VERSION. NULL on error, err says why. */
json_t *sg_msg_decode(const uint8_t *buf, size_t len, char *err, size_t errlen);

/* ---- bounded field access: all return 0, or -1 with err set ---- */

/* String field; *out points into obj (valid while obj lives). Rejects
 * non-strings, embedded NULs, and strings longer than max bytes. */
int sg_get_str(const json_t *obj, const char *key, bool required,
               const char **out, size_t max, char *err, size_t errlen);
/* Integer field in [min, max]. Absent and !required: *out untouched. */
int sg_get_int(const json_t *obj, const char *key, bool required,
               int64_t min, int64_t max, int64_t *out, char *err, size_t errlen);
int sg_get_bool(const json_t *obj, const char *key, bool required,
                bool *out, char *err, size_t errlen);
/* Base64 bytes field decoded into a fresh buffer (caller frees; use
 * sg_free_secret for secrets). At most max decoded bytes. Absent and
 * !required: *out = NULL, *len = 0. */
int sg_get_bytes(const json_t *obj, const char *key, bool required,
                 uint8_t **out, size_t *len, size_t max, char *err, size_t errlen);

/* Sets key to base64(buf). Returns 0 or -1 (allocation). */
int sg_set_bytes(json_t *obj, const char *key, const uint8_t *buf, size_t len);

/* ---- messages ---- */

/* {"v":1,"op":op}; NULL on allocation failure. */
json_t *sg_request_new(const char *op);
/* {"v":1,"ok":true} */
json_t *sg_reply_ok(void);
/* {"v":1,"ok":false,"rv":rv,"error":code,"message":...}. code is a short
 * stable token (e.g. "not_logged_in"); message is for people. */
json_t *sg_reply_error(unsigned long rv, const char *code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* For a reply: true when ok; otherwise rv, code and message are filled from
 * the reply (message points into it). Malformed replies give
 * CKR_DEVICE_ERROR and "bad_reply". */
bool sg_reply_is_ok(const json_t *reply, unsigned long *rv,
                    const char **code, const char **message);

/* ---- base64 (standard alphabet, padded, no newlines) ---- */
char *sg_b64_encode(const uint8_t *buf, size_t len);              /* malloc'd */
int sg_b64_decode(const char *s, size_t slen, uint8_t **out, size_t *outlen,
                  size_t max);                                     /* 0 / -1 */

/* Wipes, in place, the values of the fields that carry secrets ("pin",
 * "password", "old_password", "code", "secret", "session"): jansson frees
 * strings without clearing them. Call before json_decref. NULL-safe. */
void sg_msg_wipe_secrets(json_t *msg);

/* Wipes then frees. NULL-safe. */
void sg_free_secret(void *p, size_t len);
/* Wipes a NUL-terminated string in place then frees it. */
void sg_free_secret_str(char *s);

/* Connects to a Unix stream socket path; returns fd (CLOEXEC) or -errno. */
int sg_connect_unix(const char *path);

/* One request/response round trip on fd. Returns 0 and *reply, or -errno. */
int sg_call(int fd, const json_t *req, json_t **reply, char *err, size_t errlen);

#endif
