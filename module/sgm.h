/*
 * Internal contract between the layers of sealgate-pkcs11.so: the module
 * state (one per C_Initialize), sessions, the gateway client, the objects
 * built from the `seals` reply and the sign operations. Everything under
 * sgm_state.lock is held only briefly: never across a gateway round trip.
 */
#ifndef SGM_H
#define SGM_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>
#include <openssl/evp.h>

#include "pkcs11-3.h"
#include "sealgate-pkcs11.h"
#include "protocol.h"

#define SGM_SLOT_ID          SEALGATE_SLOT_ID
#define SGM_POOL_MAX         8      /* idle connections kept */
#define SGM_FD_REG           64     /* connection fds tracked for fork */
#define SGM_SIG_MAX          1024   /* RSA-8192 */
#define SGM_SEALS_MAX        1024
#define SGM_MECHS_MAX        64
#define SGM_TIMEOUT_DEFAULT  60     /* seconds per gateway round trip */
#define SGM_EVENT_POLL_MS    500    /* C_WaitForSlotEvent: one hello this often */

/* ---- debug output: only with SEALGATE_DEBUG set, never secrets ---- */
extern int sgm_debug_on;
void sgm_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- seals and objects ---- */

enum sgm_key { SGM_KEY_RSA = 1, SGM_KEY_EC, SGM_KEY_ED25519 };

struct sgm_bytes {
	uint8_t *p;
	size_t len;
};

struct sgm_seal {
	char *id, *label, *kind;
	char *mfa;              /* the seal's second-factor mode (docs/authentication.md) */
	bool always_auth;       /* mfa per_signature: CKA_ALWAYS_AUTHENTICATE */
	struct sgm_bytes ckaid, cert, subject, issuer, serial;
	struct sgm_bytes modulus, pubexp, ec_params, ec_point, spki;
	enum sgm_key key_type;
	CK_ULONG bits;          /* key size: RSA modulus bits, EC field bits */
	CK_ULONG sig_len;       /* signature length, computed locally */
	CK_MECHANISM_TYPE *mechs;
	size_t n_mechs;
	bool available;
	CK_LONG uses_left, quota_left;
};

/* (seal id, class) → handle; handles are index + 1 and never reused.
 * Private-key entries are retired at logout and instance change, as the
 * spec wants private handles invalid after C_Logout. */
struct sgm_handle {
	char *seal_id;
	CK_OBJECT_CLASS cls;
	bool retired;
};

/* ---- gateway identity as reported by hello ---- */

struct sgm_hello {
	char instance[SG_NAME_MAX + 1];
	char label[SG_NAME_MAX + 1];
	char manufacturer[SG_NAME_MAX + 1];
	char model[SG_NAME_MAX + 1];
	char serial[SG_NAME_MAX + 1];
	char version[SG_NAME_MAX + 1];
	bool token_present;
};

/* ---- sessions ---- */

struct sgm_sign_op;
struct sgm_verify_op;

struct sgm_session {
	struct sgm_session *next;
	CK_SESSION_HANDLE handle;
	CK_FLAGS flags;
	uint64_t epoch;            /* gateway instance it was opened on */
	/* A thread owns this session's sign op outside the lock (hashing or
	 * a round trip). A close meanwhile only unlinks and marks closed; the
	 * owner frees it when it is done. */
	bool busy;
	bool vbusy;                /* the same for the verify op */
	bool closed;
	bool find_active;
	CK_OBJECT_HANDLE *found;
	size_t n_found, pos;
	struct sgm_sign_op *sign;
	struct sgm_verify_op *verify;
	/* The active sign op's key wants a C_Login(CKU_CONTEXT_SPECIFIC)
	 * (CKA_ALWAYS_AUTHENTICATE): its seal, signature length, and whether
	 * the gateway accepted a code for this operation. */
	char *ctx_seal;
	CK_ULONG ctx_sig_len;
	bool ctx_done;
};

struct sgm_conn;

/* ---- configuration (transport_conf.c): sealgate.conf ---- */

#define SGM_SYSTEM_CONF "/etc/sealgate/sealgate.conf"

/* What the files say; every member NULL when not set. Paths absolute. */
struct sgm_conf {
	char *gateway;             /* "unix:PATH" or "tls://HOST:PORT" */
	char *ca, *cert, *key;     /* site CA, device certificate and key (PEM) */
	char *user;                /* sealgate account, as SEALGATE_USER */
	char *server_name;         /* name in the gateway's certificate; default HOST */
};
/* SEALGATE_CONF alone when set (it must exist), else the system file then
 * the user's over it (both optional). 0, or -1 with err "FILE:LINE: why". */
int sgm_conf_load(struct sgm_conf *c, char *err, size_t errlen);
void sgm_conf_free(struct sgm_conf *c);
/* The user's sealgate configuration directory, malloc'd, or NULL. */
char *sgm_conf_user_dir(void);
/* Splits a gateway address: *unix_path points into g for unix:, else host
 * and port are filled. 0 or -1 with err. */
int sgm_conf_parse_gateway(const char *g, char *host, size_t hostlen, char *port,
                           size_t portlen, const char **unix_path, char *err, size_t errlen);

/* ---- the TLS transport (transport.c) ---- */

struct sgm_tls;
/* The client's TLS context from the configuration: TLS 1.3 only, the
 * site CA as the only trust, the device certificate and key (both NULL:
 * none, for enrollment). */
int sgm_tls_new(const struct sgm_conf *c, const char *host, const char *port,
                struct sgm_tls **out, char *err, size_t errlen);
void sgm_tls_free(struct sgm_tls **t);
/* Connects and handshakes within timeout_s, resuming the last session when
 * it can. Fills io (its arg is the connection, freed by sgm_tls_close). 0,
 * or -1 with err (a message a person can read: the alert the gateway sent). */
int sgm_tls_connect(struct sgm_tls *t, int timeout_s, struct sg_io *io, char *err,
                    size_t errlen);
/* Closes io's connection. in_child: a forked child's inherited one, closed
 * without a word to the gateway (the parent still uses the session). */
void sgm_tls_close(struct sg_io *io, bool in_child);
/* True when nothing but TLS housekeeping (session tickets) is waiting:
 * the pooled connection is still usable. */
bool sgm_tls_alive(struct sg_io *io);

/* ---- the module state, one per C_Initialize ---- */

struct sgm_state {
	pid_t pid;                 /* process that initialized: fork check */
	pthread_mutex_t lock;
	struct sgm_state *abandoned_next;

	/* configuration, read once at C_Initialize */
	char *socket_path;         /* unix: gateway, or NULL with tls */
	char *gateway;             /* what messages call the gateway */
	struct sgm_tls *tls;       /* tls:// gateway, or NULL */
	char *user;                /* SEALGATE_USER or NULL */
	int timeout_s;

	/* gateway instance: epoch changes when the instance does */
	bool have_instance;
	char instance[SG_NAME_MAX + 1];
	uint64_t epoch;

	/* connection pool */
	struct sgm_conn *idle[SGM_POOL_MAX];
	size_t n_idle;
	int fdreg[SGM_FD_REG];     /* every open fd, idle or busy; -1 free */

	/* login state: per application, all sessions */
	bool logged_in;
	uint8_t token[SG_SESSION_TOKEN_LEN];

	/* objects */
	struct sgm_seal *seals;
	size_t n_seals;
	struct sgm_handle *handles;
	size_t n_handles, cap_handles;

	/* sessions */
	struct sgm_session *sessions;
	size_t n_sessions;
	CK_SESSION_HANDLE next_session;

	/* slot events (C_WaitForSlotEvent): the token presence and gateway
	 * instance last given to the application as an event, or first
	 * reported by any function (ev_known). */
	bool ev_known, ev_present;
	uint64_t ev_epoch;
	/* C_Finalize wakes blocked waiters (ev_wake, CLOCK_MONOTONIC) and
	 * waits on ev_gone until none is left inside. */
	bool finalizing;
	unsigned n_waiters;
	pthread_cond_t ev_wake, ev_gone;
};

/* module.c: state and sessions */
CK_RV sgm_state_get(struct sgm_state **out);
void sgm_lock(struct sgm_state *st);
void sgm_unlock(struct sgm_state *st);
/* Caller holds the lock. SESSION_HANDLE_INVALID, or DEVICE_REMOVED when
 * the gateway instance changed since the session was opened. */
CK_RV sgm_session_check_locked(struct sgm_state *st, CK_SESSION_HANDLE h,
                               struct sgm_session **out);
/* Frees an unlinked session and what it holds. */
void sgm_session_free(struct sgm_session *s);
/* Copies the login token (caller holds the lock). false: not logged in. */
bool sgm_login_token_locked(struct sgm_state *st, uint8_t out[SG_SESSION_TOKEN_LEN]);
/* The gateway said the token is not (or no longer) valid: forget it if it
 * is still ours, so the application can log in again. */
void sgm_login_invalidate(struct sgm_state *st, const uint8_t tok[SG_SESSION_TOKEN_LEN]);
/* Wipes the value of a string member of a JSON object in place. */
void sgm_json_wipe_str(json_t *obj, const char *key);
/* Space-pads src into a fixed PKCS#11 field, never splitting a UTF-8
 * character. */
void sgm_pad(unsigned char *dst, size_t dstlen, const char *src);

/* client.c: connection pool and round trips */
/* One request, one reply. may_resend: the request may be sent again on a
 * fresh connection if the reply was lost (never for sign or login).
 * Returns CKR_OK with *reply (success or error reply, caller decrefs)
 * and *epoch (the instance the answer came from); CKR_DEVICE_REMOVED when
 * the gateway cannot be reached; CKR_DEVICE_ERROR on a broken reply. */
CK_RV sgm_client_call(struct sgm_state *st, const json_t *req, bool may_resend,
                      json_t **reply, uint64_t *epoch);
/* Asks hello (reusing the hello of a fresh connection). */
CK_RV sgm_client_hello(struct sgm_state *st, struct sgm_hello *out, uint64_t *epoch);
/* Closes the pool (C_Finalize). */
void sgm_client_close_all(struct sgm_state *st);
/* In a forked child: closes the inherited fds without taking any lock. */
void sgm_client_forget_inherited(struct sgm_state *st);
/* An error reply's rv, never CKR_OK. */
CK_RV sgm_reply_rv(const json_t *reply);

/* objects.c */
void sgm_seals_free(struct sgm_seal *seals, size_t n);
void sgm_handles_free(struct sgm_state *st);
/* Caller holds the lock. */
void sgm_handles_retire_private_locked(struct sgm_state *st);
/* Fetches `seals` and replaces the cache. */
CK_RV sgm_objects_refresh(struct sgm_state *st, uint64_t session_epoch);
/* The visible seal behind a handle (caller holds the lock), or NULL. */
const struct sgm_seal *sgm_object_lookup_locked(struct sgm_state *st, CK_OBJECT_HANDLE h,
                                                CK_OBJECT_CLASS *cls);
CK_RV sgm_objects_find_init(struct sgm_state *st, CK_SESSION_HANDLE h,
                            CK_ATTRIBUTE_PTR templ, CK_ULONG count);
CK_RV sgm_objects_get_attrs(struct sgm_state *st, CK_SESSION_HANDLE h, CK_OBJECT_HANDLE obj,
                            CK_ATTRIBUTE_PTR templ, CK_ULONG count);

/* C_GetObjectSize: the bytes of the object's attribute values. */
CK_RV sgm_objects_size(struct sgm_state *st, CK_SESSION_HANDLE h, CK_OBJECT_HANDLE obj,
                       CK_ULONG_PTR size);
CK_RV sgm_objects_find_next(struct sgm_state *st, CK_SESSION_HANDLE h, CK_OBJECT_HANDLE_PTR out,
                            CK_ULONG max, CK_ULONG_PTR count);
CK_RV sgm_objects_find_final(struct sgm_state *st, CK_SESSION_HANDLE h);
/* Ends a session's find (caller holds the lock). */
void sgm_find_clear(struct sgm_session *s);

/* sign.c: mechanisms */
struct sgm_hash {
	CK_MECHANISM_TYPE ckm;
	const char *md;                 /* EVP name */
	size_t len;
	CK_RSA_PKCS_MGF_TYPE mgf;       /* the MGF1 that goes with it */
};

struct sgm_mech {
	CK_MECHANISM_TYPE type;
	enum sgm_key key;
	const struct sgm_hash *hash;    /* hash-and-sign: hashed here */
	bool pss;                       /* takes CK_RSA_PKCS_PSS_PARAMS */
	CK_ULONG min_bits, max_bits;
	CK_FLAGS flags;
};

/* A mechanism of the table, or NULL. */
const struct sgm_mech *sgm_mech_find(CK_MECHANISM_TYPE t);
/* The mechanism's parameters for this key (CKR_MECHANISM_PARAM_INVALID);
 * PSS ones are copied out with their hash. */
CK_RV sgm_check_params(const struct sgm_mech *m, const struct sgm_seal *seal,
                       const CK_MECHANISM *mech, CK_RSA_PKCS_PSS_PARAMS *pss,
                       const struct sgm_hash **pss_hash);
/* The seal's policy offers the mechanism. */
bool sgm_seal_allows(const struct sgm_seal *seal, CK_MECHANISM_TYPE t);

/* sign.c: the input of an operation. Hash-and-sign mechanisms hash it and
 * keep a prefix of max_in bytes; raw ones keep it whole up to max_in
 * (CKR_DATA_LEN_RANGE past it), except CKM_ECDSA (truncate), whose input
 * past the key's length is dropped as PKCS#11 says. */
struct sgm_input {
	const struct sgm_mech *mech;
	const struct sgm_hash *pss_hash;
	EVP_MD_CTX *md;
	uint8_t *buf;
	size_t len, cap, max_in;
	uint64_t total;
	bool truncate;
};
CK_RV sgm_input_init(struct sgm_input *in, const struct sgm_mech *m, const struct sgm_seal *seal,
                     const struct sgm_hash *pss_hash);
CK_RV sgm_input_feed(struct sgm_input *in, const CK_BYTE *data, CK_ULONG len);
/* The checks only the complete input allows. */
CK_RV sgm_input_check_final(const struct sgm_input *in);
/* Frees and wipes; the input is empty afterwards. */
void sgm_input_clear(struct sgm_input *in);

/* sign.c: operations */
void sgm_sign_op_free(struct sgm_sign_op *op);
CK_RV sgm_sign_init(struct sgm_state *st, CK_SESSION_HANDLE h, CK_MECHANISM_PTR mech,
                    CK_OBJECT_HANDLE key);
/* Single-part C_Sign (data != NULL or len 0) or C_SignFinal (final). */
CK_RV sgm_sign(struct sgm_state *st, CK_SESSION_HANDLE h, bool final,
               const CK_BYTE *data, CK_ULONG len, CK_BYTE_PTR sig, CK_ULONG_PTR siglen);
CK_RV sgm_sign_update(struct sgm_state *st, CK_SESSION_HANDLE h, const CK_BYTE *part,
                      CK_ULONG len);
CK_RV sgm_mechanism_list(CK_MECHANISM_TYPE_PTR list, CK_ULONG_PTR count);
CK_RV sgm_mechanism_info(CK_MECHANISM_TYPE type, CK_MECHANISM_INFO_PTR info);

/* verify.c: C_Verify* on the seal's public key, in the module */
void sgm_verify_op_free(struct sgm_verify_op *op);
CK_RV sgm_verify_init(struct sgm_state *st, CK_SESSION_HANDLE h, CK_MECHANISM_PTR mech,
                      CK_OBJECT_HANDLE key);
/* Single-part C_Verify (final false) or C_VerifyFinal. */
CK_RV sgm_verify(struct sgm_state *st, CK_SESSION_HANDLE h, bool final, const CK_BYTE *data,
                 CK_ULONG len, const CK_BYTE *sig, CK_ULONG siglen);
CK_RV sgm_verify_update(struct sgm_state *st, CK_SESSION_HANDLE h, const CK_BYTE *part,
                        CK_ULONG len);

#endif
