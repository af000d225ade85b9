/*
 * Entry points of sealgate-pkcs11.so: the 2.40 and 3.0 function lists and
 * interfaces, argument checks, the module state (C_Initialize, fork
 * detection, C_Finalize), the slot and token as the gateway reports them,
 * sessions and the login state. Objects live in objects.c, signing in
 * sign.c, the wire in client.c.
 */
#include "sgm.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "sg-config.h"

#define SGM_DEFAULT_SOCKET SG_RUNSTATEDIR "/sealgated.sock"

int sgm_debug_on;

/* The state of the current C_Initialize, or NULL. A state whose pid is not
 * ours was inherited over fork(): it is abandoned, never locked or freed,
 * since a parent thread may have held its lock at the fork. */
static struct sgm_state *g_state;
static struct sgm_state *g_abandoned;  /* keeps inherited states reachable */

void
sgm_debug(const char *fmt, ...)
{
	va_list ap;

	if (!sgm_debug_on)
		return;
	va_start(ap, fmt);
	fputs("sealgate-pkcs11: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

void
sgm_lock(struct sgm_state *st)
{
	pthread_mutex_lock(&st->lock);
}

void
sgm_unlock(struct sgm_state *st)
{
	pthread_mutex_unlock(&st->lock);
}

CK_RV
sgm_state_get(struct sgm_state **out)
{
	struct sgm_state *st = __atomic_load_n(&g_state, __ATOMIC_ACQUIRE);

	*out = NULL;
	if (st == NULL || st->pid != getpid())
		return CKR_CRYPTOKI_NOT_INITIALIZED;
	*out = st;
	return CKR_OK;
}

void
sgm_pad(unsigned char *dst, size_t dstlen, const char *src)
{
	size_t n = strlen(src);

	if (n > dstlen) {
		n = dstlen;
		/* Back off to the start of a UTF-8 character. */
		while (n > 0 && ((unsigned char)src[n] & 0xC0) == 0x80)
			n--;
	}
	memset(dst, ' ', dstlen);
	memcpy(dst, src, n);
}

void
sgm_json_wipe_str(json_t *obj, const char *key)
{
	json_t *v = json_object_get(obj, key);

	/* jansson frees strings without wiping; the buffer is ours to clear. */
	if (json_is_string(v))
		OPENSSL_cleanse((char *)json_string_value(v), json_string_length(v));
}

/* ---- sessions ---- */

static struct sgm_session *
session_find_locked(struct sgm_state *st, CK_SESSION_HANDLE h)
{
	for (struct sgm_session *s = st->sessions; s != NULL; s = s->next)
		if (s->handle == h)
			return s;
	return NULL;
}

CK_RV
sgm_session_check_locked(struct sgm_state *st, CK_SESSION_HANDLE h, struct sgm_session **out)
{
	struct sgm_session *s = session_find_locked(st, h);

	*out = NULL;
	if (s == NULL)
		return CKR_SESSION_HANDLE_INVALID;
	if (s->epoch != st->epoch)
		return CKR_DEVICE_REMOVED;
	*out = s;
	return CKR_OK;
}

void
sgm_session_free(struct sgm_session *s)
{
	if (s == NULL)
		return;
	sgm_find_clear(s);
	sgm_sign_op_free(s->sign);
	sgm_verify_op_free(s->verify);
	free(s->ctx_seal);
	free(s);
}

/* Forgets a session's per-signature login state (caller holds the lock). */
static void
ctx_clear_locked(struct sgm_session *s)
{
	free(s->ctx_seal);
	s->ctx_seal = NULL;
	s->ctx_sig_len = 0;
	s->ctx_done = false;
}

/* Unlinks s; frees it unless a thread owns it right now (that thread frees
 * it when it sees closed: the last of a signer and a verifier). Caller
 * holds the lock. */
static void
session_close_locked(struct sgm_state *st, struct sgm_session *s)
{
	for (struct sgm_session **pp = &st->sessions; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == s) {
			*pp = s->next;
			st->n_sessions--;
			break;
		}
	}
	s->next = NULL;
	if (s->busy || s->vbusy)
		s->closed = true;
	else
		sgm_session_free(s);
}

bool
sgm_login_token_locked(struct sgm_state *st, uint8_t out[SG_SESSION_TOKEN_LEN])
{
	if (!st->logged_in)
		return false;
	memcpy(out, st->token, SG_SESSION_TOKEN_LEN);
	return true;
}

/* Ends the login locally; the caller tells the gateway. Private-key handles
 * die with it and sign operations (which need the login) end. */
static void
login_clear_locked(struct sgm_state *st)
{
	st->logged_in = false;
	OPENSSL_cleanse(st->token, sizeof(st->token));
	sgm_handles_retire_private_locked(st);
	for (struct sgm_session *s = st->sessions; s != NULL; s = s->next) {
		if (!s->busy) {
			sgm_sign_op_free(s->sign);
			s->sign = NULL;
			ctx_clear_locked(s);
		}
	}
}

void
sgm_login_invalidate(struct sgm_state *st, const uint8_t tok[SG_SESSION_TOKEN_LEN])
{
	sgm_lock(st);
	if (st->logged_in && CRYPTO_memcmp(st->token, tok, SG_SESSION_TOKEN_LEN) == 0) {
		sgm_debug("the gateway no longer knows our login; logged out");
		login_clear_locked(st);
	}
	sgm_unlock(st);
}

/* Best-effort logout at the gateway of a token we already forgot locally. */
static void
gateway_logout(struct sgm_state *st, uint8_t tok[SG_SESSION_TOKEN_LEN])
{
	json_t *req = sg_request_new(SG_OP_LOGOUT), *reply = NULL;
	uint64_t epoch;

	if (req != NULL && sg_set_bytes(req, "session", tok, SG_SESSION_TOKEN_LEN) == 0) {
		if (sgm_client_call(st, req, true, &reply, &epoch) != CKR_OK)
			sgm_debug("logout not delivered; the gateway session will expire");
		sgm_json_wipe_str(req, "session");
	}
	json_decref(req);
	json_decref(reply);
	OPENSSL_cleanse(tok, SG_SESSION_TOKEN_LEN);
}

/* ---- state ---- */

static void
state_free(struct sgm_state *st)
{
	struct sgm_session *s, *next;

	if (st == NULL)
		return;
	sgm_client_close_all(st);
	for (s = st->sessions; s != NULL; s = next) {
		next = s->next;
		sgm_session_free(s);
	}
	sgm_seals_free(st->seals, st->n_seals);
	sgm_handles_free(st);
	OPENSSL_cleanse(st->token, sizeof(st->token));
	free(st->socket_path);
	free(st->gateway);
	sgm_tls_free(&st->tls);
	free(st->user);
	pthread_cond_destroy(&st->ev_wake);
	pthread_cond_destroy(&st->ev_gone);
	pthread_mutex_destroy(&st->lock);
	free(st);
}

/* Where the gateway is: SEALGATE_SOCKET (a socket path, or tls://HOST:PORT),
 * else sealgate.conf, else the default socket. A tls:// gateway needs the
 * site CA, the device certificate and its key. 0, or -1 with err. */
static int
state_gateway(struct sgm_state *st, const struct sgm_conf *c, char *err, size_t errlen)
{
	const char *gw = getenv("SEALGATE_SOCKET");
	const char *up = NULL;
	char host[256], port[8], why[320];

	if (gw != NULL && gw[0] != '\0' && strncmp(gw, "tls://", 6) != 0) {
		up = gw;
	} else {
		if (gw == NULL || gw[0] == '\0')
			gw = c->gateway;
		if (gw == NULL)
			up = SGM_DEFAULT_SOCKET;
		else if (sgm_conf_parse_gateway(gw, host, sizeof(host), port, sizeof(port), &up,
		                                why, sizeof(why)) < 0) {
			snprintf(err, errlen, "%s", why);
			return -1;
		}
	}
	if (up != NULL) {
		st->socket_path = strdup(up);
		st->gateway = strdup(up);
		return st->socket_path != NULL && st->gateway != NULL ? 0 : -1;
	}
	st->gateway = strdup(gw);
	if (st->gateway == NULL)
		return -1;
	if (c->ca == NULL || c->cert == NULL || c->key == NULL) {
		snprintf(err, errlen, "gateway %s: sealgate.conf must name the site CA (ca = FILE), "
		         "this device's certificate (cert = FILE) and its key (key = FILE); "
		         "`sealctl device enroll` makes them", gw);
		return -1;
	}
	return sgm_tls_new(c, host, port, &st->tls, err, errlen);
}

static struct sgm_state *
state_new(char *cerr, size_t cerrlen)
{
	struct sgm_state *st = calloc(1, sizeof(*st));
	const char *user = getenv("SEALGATE_USER");
	const char *tmo = getenv("SEALGATE_TIMEOUT");
	struct sgm_conf conf = { 0 };
	pthread_condattr_t ca;
	char *end = NULL;
	long t;

	cerr[0] = '\0';
	if (st == NULL)
		return NULL;
	if (pthread_mutex_init(&st->lock, NULL) != 0) {
		free(st);
		return NULL;
	}
	/* The event poll waits on a monotonic clock: a clock step must not
	 * stretch or skip it. */
	if (pthread_condattr_init(&ca) != 0) {
		pthread_mutex_destroy(&st->lock);
		free(st);
		return NULL;
	}
	if (pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) != 0 ||
	    pthread_cond_init(&st->ev_wake, &ca) != 0) {
		pthread_condattr_destroy(&ca);
		pthread_mutex_destroy(&st->lock);
		free(st);
		return NULL;
	}
	pthread_condattr_destroy(&ca);
	if (pthread_cond_init(&st->ev_gone, NULL) != 0) {
		pthread_cond_destroy(&st->ev_wake);
		pthread_mutex_destroy(&st->lock);
		free(st);
		return NULL;
	}
	st->pid = getpid();
	st->epoch = 1;
	st->next_session = 1;
	for (size_t i = 0; i < SGM_FD_REG; i++)
		st->fdreg[i] = -1;
	st->timeout_s = SGM_TIMEOUT_DEFAULT;
	if (tmo != NULL) {
		t = strtol(tmo, &end, 10);
		if (end != tmo && *end == '\0' && t >= 1 && t <= 3600)
			st->timeout_s = (int)t;
	}
	if (sgm_conf_load(&conf, cerr, cerrlen) < 0 ||
	    state_gateway(st, &conf, cerr, cerrlen) < 0)
		goto fail;
	/* An over-long name is ignored: the gateway would refuse it anyway. */
	if (user == NULL || user[0] == '\0' || strlen(user) > SG_NAME_MAX)
		user = conf.user;
	if (user != NULL && user[0] != '\0') {
		st->user = strdup(user);
		if (st->user == NULL)
			goto fail;
	}
	sgm_conf_free(&conf);
	return st;
fail:
	sgm_conf_free(&conf);
	state_free(st);
	return NULL;
}

/* ---- general purpose ---- */

CK_RV
C_Initialize(CK_VOID_PTR pInitArgs)
{
	CK_C_INITIALIZE_ARGS_PTR args = pInitArgs;
	struct sgm_state *st, *fresh, *expect = NULL;
	char cerr[512];

	if (args != NULL) {
		int n = (args->CreateMutex != NULL) + (args->DestroyMutex != NULL) +
		        (args->LockMutex != NULL) + (args->UnlockMutex != NULL);
		if (n != 0 && n != 4)
			return CKR_ARGUMENTS_BAD;
		/* We lock with pthreads only; without CKF_OS_LOCKING_OK the
		 * application insists on its own mutexes. pReserved is not
		 * checked: NSS passes its library parameters there. */
		if (n == 4 && !(args->flags & CKF_OS_LOCKING_OK))
			return CKR_CANT_LOCK;
	}
	sgm_debug_on = getenv("SEALGATE_DEBUG") != NULL;

	st = __atomic_load_n(&g_state, __ATOMIC_ACQUIRE);
	if (st != NULL && st->pid == getpid())
		return CKR_CRYPTOKI_ALREADY_INITIALIZED;
	if (st != NULL) {
		/* A forked child starting over: close what it inherited and
		 * leave the parent's structures (and locks) alone. */
		sgm_client_forget_inherited(st);
		st->abandoned_next = g_abandoned;
		g_abandoned = st;
		__atomic_store_n(&g_state, NULL, __ATOMIC_RELEASE);
		sgm_debug("re-initialized in a forked child");
	}
	fresh = state_new(cerr, sizeof(cerr));
	if (fresh == NULL && cerr[0] != '\0') {
		/* A configuration the module cannot follow: said on stderr
		 * (never stdout, which is the application's) whatever
		 * SEALGATE_DEBUG says, since nothing would work otherwise, and
		 * C_Initialize fails rather than guess another gateway. */
		fprintf(stderr, "sealgate-pkcs11: %s\n", cerr);
		return CKR_GENERAL_ERROR;
	}
	if (fresh == NULL)
		return CKR_HOST_MEMORY;
	if (!__atomic_compare_exchange_n(&g_state, &expect, fresh, false,
	                                 __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
		state_free(fresh);
		return CKR_CRYPTOKI_ALREADY_INITIALIZED;
	}
	sgm_debug("initialized, gateway %s", fresh->gateway);
	return CKR_OK;
}

CK_RV
C_Finalize(CK_VOID_PTR pReserved)
{
	struct sgm_state *st;
	uint8_t tok[SG_SESSION_TOKEN_LEN];
	bool had_login;
	CK_RV rv;

	if (pReserved != NULL)
		return CKR_ARGUMENTS_BAD;
	rv = sgm_state_get(&st);
	if (rv != CKR_OK)
		return rv;
	if (!__atomic_compare_exchange_n(&g_state, &st, NULL, false,
	                                 __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
		return CKR_CRYPTOKI_NOT_INITIALIZED;
	sgm_lock(st);
	/* A thread blocked in C_WaitForSlotEvent returns
	 * CKR_CRYPTOKI_NOT_INITIALIZED (PKCS#11 5.5); it leaves before the
	 * state is freed. Bounded by the hello it may be in the middle of. */
	st->finalizing = true;
	pthread_cond_broadcast(&st->ev_wake);
	while (st->n_waiters > 0)
		pthread_cond_wait(&st->ev_gone, &st->lock);
	had_login = sgm_login_token_locked(st, tok);
	login_clear_locked(st);
	sgm_unlock(st);
	if (had_login)
		gateway_logout(st, tok);
	state_free(st);
	return CKR_OK;
}

CK_RV
C_GetInfo(CK_INFO_PTR pInfo)
{
	struct sgm_state *st;
	unsigned maj = 0, min = 0;
	CK_RV rv = sgm_state_get(&st);

	if (rv != CKR_OK)
		return rv;
	if (pInfo == NULL)
		return CKR_ARGUMENTS_BAD;
	memset(pInfo, 0, sizeof(*pInfo));
	pInfo->cryptokiVersion.major = 3;
	pInfo->cryptokiVersion.minor = 0;
	sgm_pad(pInfo->manufacturerID, sizeof(pInfo->manufacturerID), "sealgate");
	sgm_pad(pInfo->libraryDescription, sizeof(pInfo->libraryDescription),
	        "sealgate PKCS#11 module");
	if (sscanf(SEALGATE_VERSION, "%u.%u", &maj, &min) == 2) {
		pInfo->libraryVersion.major = (CK_BYTE)maj;
		pInfo->libraryVersion.minor = (CK_BYTE)min;
	}
	return CKR_OK;
}

/* ---- slot and token: what the gateway says right now ---- */

/* The PIN flags of the account this process logs in as (auth_state):
 * CKF_USER_PIN_COUNT_LOW / FINAL_TRY / LOCKED so careful applications stop
 * before a lockout, and CKF_PROTECTED_AUTHENTICATION_PATH when the account
 * signs out of band (`sealctl login`, then a PIN-less C_Login). 0 when the
 * gateway does not say. */
static CK_FLAGS
auth_flags(struct sgm_state *st)
{
	uint8_t tok[SG_SESSION_TOKEN_LEN];
	json_t *req = sg_request_new(SG_OP_AUTH_STATE), *reply = NULL;
	CK_FLAGS fl = 0;
	uint64_t epoch;
	bool have;

	sgm_lock(st);
	have = sgm_login_token_locked(st, tok);
	sgm_unlock(st);
	if (req == NULL ||
	    (have && sg_set_bytes(req, "session", tok, sizeof(tok)) < 0) ||
	    (st->user != NULL && json_object_set_new(req, "user", json_string(st->user)) != 0))
		goto out;
	if (sgm_client_call(st, req, true, &reply, &epoch) != CKR_OK ||
	    !sg_reply_is_ok(reply, NULL, NULL, NULL))
		goto out;
	if (json_is_true(json_object_get(reply, "locked")))
		fl |= CKF_USER_PIN_LOCKED;
	else if (json_is_true(json_object_get(reply, "final_try")))
		fl |= CKF_USER_PIN_FINAL_TRY | CKF_USER_PIN_COUNT_LOW;
	else if (json_is_true(json_object_get(reply, "count_low")))
		fl |= CKF_USER_PIN_COUNT_LOW;
	if (json_is_true(json_object_get(reply, "protected_path")))
		fl |= CKF_PROTECTED_AUTHENTICATION_PATH;
out:
	if (req != NULL)
		sgm_json_wipe_str(req, "session");
	OPENSSL_cleanse(tok, sizeof(tok));
	json_decref(req);
	json_decref(reply);
	return fl;
}

/* The token presence and gateway instance now; CKR_HOST_MEMORY is the
 * only failure (an unreachable gateway is an absent token). */
static CK_RV
slot_probe(struct sgm_state *st, struct sgm_hello *h, bool *present, uint64_t *epoch)
{
	CK_RV rv = sgm_client_hello(st, h, epoch);

	if (rv == CKR_HOST_MEMORY)
		return rv;
	*present = rv == CKR_OK && h->token_present;
	if (rv != CKR_OK) {
		sgm_lock(st);
		*epoch = st->epoch;
		sgm_unlock(st);
	}
	return CKR_OK;
}

/* The first presence the module reports is what later slot events are
 * measured against. Caller holds the lock. */
static void
event_baseline_locked(struct sgm_state *st, bool present, uint64_t epoch)
{
	if (st->ev_known)
		return;
	st->ev_known = true;
	st->ev_present = present;
	st->ev_epoch = epoch;
}

static CK_RV
hello_present(struct sgm_state *st, struct sgm_hello *h, uint64_t *epoch)
{
	bool present;
	CK_RV rv = slot_probe(st, h, &present, epoch);

	if (rv != CKR_OK)
		return rv;
	sgm_lock(st);
	event_baseline_locked(st, present, *epoch);
	sgm_unlock(st);
	return present ? CKR_OK : CKR_TOKEN_NOT_PRESENT;
}

CK_RV
C_GetSlotList(CK_BBOOL tokenPresent, CK_SLOT_ID_PTR pSlotList, CK_ULONG_PTR pulCount)
{
	struct sgm_state *st;
	struct sgm_hello h;
	uint64_t epoch;
	CK_ULONG n = 1;
	CK_RV rv = sgm_state_get(&st);

	if (rv != CKR_OK)
		return rv;
	if (pulCount == NULL)
		return CKR_ARGUMENTS_BAD;
	if (tokenPresent) {
		rv = hello_present(st, &h, &epoch);
		if (rv == CKR_HOST_MEMORY)
			return rv;
		n = rv == CKR_OK ? 1 : 0;
	}
	if (pSlotList == NULL) {
		*pulCount = n;
		return CKR_OK;
	}
	if (*pulCount < n) {
		*pulCount = n;
		return CKR_BUFFER_TOO_SMALL;
	}
	if (n > 0)
		pSlotList[0] = SGM_SLOT_ID;
	*pulCount = n;
	return CKR_OK;
}

CK_RV
C_GetSlotInfo(CK_SLOT_ID slotID, CK_SLOT_INFO_PTR pInfo)
{
	struct sgm_state *st;
	struct sgm_hello h;
	uint64_t epoch;
	unsigned maj = 0, min = 0;
	CK_RV rv = sgm_state_get(&st);

	if (rv != CKR_OK)
		return rv;
	if (slotID != SGM_SLOT_ID)
		return CKR_SLOT_ID_INVALID;
	if (pInfo == NULL)
		return CKR_ARGUMENTS_BAD;
	rv = hello_present(st, &h, &epoch);
	if (rv == CKR_HOST_MEMORY)
		return rv;
	memset(pInfo, 0, sizeof(*pInfo));
	sgm_pad(pInfo->slotDescription, sizeof(pInfo->slotDescription), "sealgate gateway");
	sgm_pad(pInfo->manufacturerID, sizeof(pInfo->manufacturerID), "sealgate");
	/* The gateway behaves like a reader whose card comes and goes. */
	pInfo->flags = CKF_REMOVABLE_DEVICE | CKF_HW_SLOT | (rv == CKR_OK ? CKF_TOKEN_PRESENT : 0);
	if (sscanf(SEALGATE_VERSION, "%u.%u", &maj, &min) == 2) {
		pInfo->hardwareVersion.major = pInfo->firmwareVersion.major = (CK_BYTE)maj;
		pInfo->hardwareVersion.minor = pInfo->firmwareVersion.minor = (CK_BYTE)min;
	}
	return CKR_OK;
}

CK_RV
C_GetTokenInfo(CK_SLOT_ID slotID, CK_TOKEN_INFO_PTR pInfo)
{
	struct sgm_state *st;
	struct sgm_hello h;
	uint64_t epoch;
	CK_ULONG n = 0, nrw = 0;
	CK_RV rv = sgm_state_get(&st);

	if (rv != CKR_OK)
		return rv;
	if (slotID != SGM_SLOT_ID)
		return CKR_SLOT_ID_INVALID;
	if (pInfo == NULL)
		return CKR_ARGUMENTS_BAD;
	rv = hello_present(st, &h, &epoch);
	if (rv != CKR_OK)
		return rv;
	sgm_lock(st);
	for (struct sgm_session *s = st->sessions; s != NULL; s = s->next) {
		if (s->epoch != st->epoch)
			continue;
		n++;
		if (s->flags & CKF_RW_SESSION)
			nrw++;
	}
	sgm_unlock(st);

	memset(pInfo, 0, sizeof(*pInfo));
	sgm_pad(pInfo->label, sizeof(pInfo->label), h.label);
	sgm_pad(pInfo->manufacturerID, sizeof(pInfo->manufacturerID), "sealgate");
	sgm_pad(pInfo->model, sizeof(pInfo->model), h.model);
	sgm_pad(pInfo->serialNumber, sizeof(pInfo->serialNumber), h.serial);
	pInfo->flags = CKF_TOKEN_INITIALIZED | CKF_USER_PIN_INITIALIZED |
	               CKF_LOGIN_REQUIRED | CKF_WRITE_PROTECTED | auth_flags(st);
	pInfo->ulMaxSessionCount = CK_EFFECTIVELY_INFINITE;
	pInfo->ulSessionCount = n;
	pInfo->ulMaxRwSessionCount = CK_EFFECTIVELY_INFINITE;
	pInfo->ulRwSessionCount = nrw;
	pInfo->ulMaxPinLen = SG_PIN_MAX;
	pInfo->ulMinPinLen = 1;
	pInfo->ulTotalPublicMemory = CK_UNAVAILABLE_INFORMATION;
	pInfo->ulFreePublicMemory = CK_UNAVAILABLE_INFORMATION;
	pInfo->ulTotalPrivateMemory = CK_UNAVAILABLE_INFORMATION;
	pInfo->ulFreePrivateMemory = CK_UNAVAILABLE_INFORMATION;
	{
		unsigned maj = 0, min = 0;
		if (sscanf(h.version[0] ? h.version : SEALGATE_VERSION, "%u.%u", &maj, &min) == 2) {
			pInfo->firmwareVersion.major = (CK_BYTE)maj;
			pInfo->firmwareVersion.minor = (CK_BYTE)min;
		}
	}
	/* No clock on this token (CKF_CLOCK_ON_TOKEN is not set). */
	memset(pInfo->utcTime, ' ', sizeof(pInfo->utcTime));
	return CKR_OK;
}

/* A slot event: the token came or went (backend token, or the gateway
 * itself), or the gateway that answers is another run than the one last
 * reported (a restart between two polls: every session is gone, as with
 * a card pulled and put back). The module has no thread: the caller's
 * thread polls with hello every SGM_EVENT_POLL_MS. */
CK_RV
C_WaitForSlotEvent(CK_FLAGS flags, CK_SLOT_ID_PTR pSlot, CK_VOID_PTR pReserved)
{
	struct sgm_state *st;
	struct sgm_hello h;
	struct timespec until;
	uint64_t epoch;
	bool present;
	CK_RV rv = sgm_state_get(&st);

	if (rv != CKR_OK)
		return rv;
	if (pSlot == NULL || pReserved != NULL)
		return CKR_ARGUMENTS_BAD;
	sgm_lock(st);
	if (st->finalizing) {
		sgm_unlock(st);
		return CKR_CRYPTOKI_NOT_INITIALIZED;
	}
	st->n_waiters++;
	sgm_unlock(st);

	for (;;) {
		rv = slot_probe(st, &h, &present, &epoch);
		sgm_lock(st);
		if (st->finalizing) {
			rv = CKR_CRYPTOKI_NOT_INITIALIZED;
			break;
		}
		if (rv != CKR_OK)
			break;
		if (!st->ev_known) {
			event_baseline_locked(st, present, epoch);
		} else if (present != st->ev_present || (present && epoch != st->ev_epoch)) {
			sgm_debug("slot event: token %s", present ? "present" : "absent");
			st->ev_present = present;
			st->ev_epoch = epoch;
			*pSlot = SGM_SLOT_ID;
			break;
		}
		if (flags & CKF_DONT_BLOCK) {
			rv = CKR_NO_EVENT;
			break;
		}
		clock_gettime(CLOCK_MONOTONIC, &until);
		until.tv_nsec += SGM_EVENT_POLL_MS * 1000000L;
		until.tv_sec += until.tv_nsec / 1000000000L;
		until.tv_nsec %= 1000000000L;
		/* Woken early only by C_Finalize; anything else waits on. */
		for (int rc = 0; rc == 0 && !st->finalizing;)
			rc = pthread_cond_timedwait(&st->ev_wake, &st->lock, &until);
		if (st->finalizing) {
			rv = CKR_CRYPTOKI_NOT_INITIALIZED;
			break;
		}
		sgm_unlock(st);
	}
	/* Here with the lock held. */
	if (--st->n_waiters == 0 && st->finalizing)
		pthread_cond_broadcast(&st->ev_gone);
	sgm_unlock(st);
	return rv;
}

CK_RV
C_GetMechanismList(CK_SLOT_ID slotID, CK_MECHANISM_TYPE_PTR pMechanismList,
                   CK_ULONG_PTR pulCount)
{
	struct sgm_state *st;
	CK_RV rv = sgm_state_get(&st);

	if (rv != CKR_OK)
		return rv;
	if (slotID != SGM_SLOT_ID)
		return CKR_SLOT_ID_INVALID;
	if (pulCount == NULL)
		return CKR_ARGUMENTS_BAD;
	return sgm_mechanism_list(pMechanismList, pulCount);
}

CK_RV
C_GetMechanismInfo(CK_SLOT_ID slotID, CK_MECHANISM_TYPE type, CK_MECHANISM_INFO_PTR pInfo)
{
	struct sgm_state *st;
	CK_RV rv = sgm_state_get(&st);

	if (rv != CKR_OK)
		return rv;
	if (slotID != SGM_SLOT_ID)
		return CKR_SLOT_ID_INVALID;
	if (pInfo == NULL)
		return CKR_ARGUMENTS_BAD;
	return sgm_mechanism_info(type, pInfo);
}

/* ---- sessions ---- */

CK_RV
C_OpenSession(CK_SLOT_ID slotID, CK_FLAGS flags, CK_VOID_PTR pApplication,
              CK_NOTIFY Notify, CK_SESSION_HANDLE_PTR phSession)
{
	struct sgm_state *st;
	struct sgm_session *s;
	struct sgm_hello h;
	uint64_t epoch;
	CK_RV rv = sgm_state_get(&st);

	if (rv != CKR_OK)
		return rv;
	if (slotID != SGM_SLOT_ID)
		return CKR_SLOT_ID_INVALID;
	if (phSession == NULL)
		return CKR_ARGUMENTS_BAD;
	if (!(flags & CKF_SERIAL_SESSION))
		return CKR_SESSION_PARALLEL_NOT_SUPPORTED;
	/* CKF_RW_SESSION is accepted although the token is write-protected:
	 * pkcs11-tool asks for RW whenever it logs in or signs
	 * (docs/module.md). Writes are refused per function. */
	rv = hello_present(st, &h, &epoch);
	if (rv != CKR_OK)
		return rv;
	s = calloc(1, sizeof(*s));
	if (s == NULL)
		return CKR_HOST_MEMORY;
	s->flags = CKF_SERIAL_SESSION | (flags & CKF_RW_SESSION);
	sgm_lock(st);
	s->epoch = epoch;
	s->handle = st->next_session++;
	s->next = st->sessions;
	st->sessions = s;
	st->n_sessions++;
	*phSession = s->handle;
	sgm_unlock(st);
	return CKR_OK;
}

/* Closing the application's last session ends its login (PKCS#11 5.6). */
static void
after_close_locked(struct sgm_state *st, uint8_t tok[SG_SESSION_TOKEN_LEN], bool *logout)
{
	*logout = false;
	if (st->n_sessions == 0 && st->logged_in) {
		*logout = sgm_login_token_locked(st, tok);
		login_clear_locked(st);
	}
}

CK_RV
C_CloseSession(CK_SESSION_HANDLE hSession)
{
	struct sgm_state *st;
	struct sgm_session *s;
	uint8_t tok[SG_SESSION_TOKEN_LEN];
	bool logout = false;
	CK_RV rv = sgm_state_get(&st);

	if (rv != CKR_OK)
		return rv;
	sgm_lock(st);
	/* No epoch check: a session of a dead gateway run still closes. */
	s = session_find_locked(st, hSession);
	if (s == NULL) {
		rv = CKR_SESSION_HANDLE_INVALID;
	} else {
		session_close_locked(st, s);
		after_close_locked(st, tok, &logout);
	}
	sgm_unlock(st);
	if (logout)
		gateway_logout(st, tok);
	return rv;
}

CK_RV
C_CloseAllSessions(CK_SLOT_ID slotID)
{
	struct sgm_state *st;
	uint8_t tok[SG_SESSION_TOKEN_LEN];
	bool logout = false;
	CK_RV rv = sgm_state_get(&st);

	if (rv != CKR_OK)
		return rv;
	if (slotID != SGM_SLOT_ID)
		return CKR_SLOT_ID_INVALID;
	sgm_lock(st);
	while (st->sessions != NULL)
		session_close_locked(st, st->sessions);
	after_close_locked(st, tok, &logout);
	sgm_unlock(st);
	if (logout)
		gateway_logout(st, tok);
	return CKR_OK;
}

CK_RV
C_GetSessionInfo(CK_SESSION_HANDLE hSession, CK_SESSION_INFO_PTR pInfo)
{
	struct sgm_state *st;
	struct sgm_session *s;
	CK_RV rv = sgm_state_get(&st);
	bool rw;

	if (rv != CKR_OK)
		return rv;
	if (pInfo == NULL)
		return CKR_ARGUMENTS_BAD;
	sgm_lock(st);
	rv = sgm_session_check_locked(st, hSession, &s);
	if (rv == CKR_OK) {
		rw = (s->flags & CKF_RW_SESSION) != 0;
		memset(pInfo, 0, sizeof(*pInfo));
		pInfo->slotID = SGM_SLOT_ID;
		pInfo->flags = s->flags;
		if (st->logged_in)
			pInfo->state = rw ? CKS_RW_USER_FUNCTIONS : CKS_RO_USER_FUNCTIONS;
		else
			pInfo->state = rw ? CKS_RW_PUBLIC_SESSION : CKS_RO_PUBLIC_SESSION;
		pInfo->ulDeviceError = 0;
	}
	sgm_unlock(st);
	return rv;
}

/* Checks the session (and with_obj: the object) for the functions that
 * end in a refusal. */
static CK_RV
session_check(CK_SESSION_HANDLE hSession, bool with_obj, CK_OBJECT_HANDLE obj)
{
	struct sgm_state *st;
	struct sgm_session *s;
	CK_OBJECT_CLASS cls;
	CK_RV rv = sgm_state_get(&st);

	if (rv != CKR_OK)
		return rv;
	sgm_lock(st);
	rv = sgm_session_check_locked(st, hSession, &s);
	if (rv == CKR_OK && with_obj &&
	    sgm_object_lookup_locked(st, obj, &cls) == NULL)
		rv = CKR_OBJECT_HANDLE_INVALID;
	sgm_unlock(st);
	return rv;
}

static CK_RV
initialized_only(void)
{
	struct sgm_state *st;

	return sgm_state_get(&st);
}

CK_RV
C_GetOperationState(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pOperationState,
                    CK_ULONG_PTR pulOperationStateLen)
{
	CK_RV rv = session_check(hSession, false, 0);

	return rv != CKR_OK ? rv : CKR_FUNCTION_NOT_SUPPORTED;
}

CK_RV
C_SetOperationState(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pOperationState,
                    CK_ULONG ulOperationStateLen, CK_OBJECT_HANDLE hEncryptionKey,
                    CK_OBJECT_HANDLE hAuthenticationKey)
{
	CK_RV rv = session_check(hSession, false, 0);

	return rv != CKR_OK ? rv : CKR_FUNCTION_NOT_SUPPORTED;
}

/* ---- login ---- */

/* A copy of a PIN as a NUL-terminated string (checked: no NUL inside).
 * Free with sg_free_secret(p, len + 1). */
static CK_RV
pin_dup(CK_UTF8CHAR_PTR p, CK_ULONG len, char **out)
{
	*out = NULL;
	if (p == NULL)
		return CKR_ARGUMENTS_BAD;
	if (len < 1 || len > SG_PIN_MAX)
		return CKR_PIN_LEN_RANGE;
	if (memchr(p, 0, len) != NULL)
		return CKR_PIN_INVALID;
	*out = malloc(len + 1);
	if (*out == NULL)
		return CKR_HOST_MEMORY;
	memcpy(*out, p, len);
	(*out)[len] = '\0';
	return CKR_OK;
}

/* C_Login(CKU_CONTEXT_SPECIFIC) after C_SignInit on a key with
 * CKA_ALWAYS_AUTHENTICATE (a seal whose policy says mfa: per_signature):
 * the PIN is the current TOTP code (or password followed by code), good
 * for the one signature of this operation. */
static CK_RV
context_login(CK_SESSION_HANDLE hSession, CK_UTF8CHAR_PTR pPin, CK_ULONG ulPinLen)
{
	struct sgm_state *st;
	struct sgm_session *s;
	uint8_t tok[SG_SESSION_TOKEN_LEN];
	json_t *req = NULL, *reply = NULL, *jpin;
	char *seal = NULL, *pin = NULL;
	uint64_t epoch = 0, conn_epoch;
	bool have_tok = false;
	CK_RV rv = sgm_state_get(&st);

	if (rv != CKR_OK)
		return rv;
	sgm_lock(st);
	rv = sgm_session_check_locked(st, hSession, &s);
	if (rv == CKR_OK) {
		epoch = s->epoch;
		if (s->sign == NULL || s->busy || s->ctx_seal == NULL)
			rv = CKR_OPERATION_NOT_INITIALIZED;
		else if (!(have_tok = sgm_login_token_locked(st, tok)))
			rv = CKR_USER_NOT_LOGGED_IN;
		else if ((seal = strdup(s->ctx_seal)) == NULL)
			rv = CKR_HOST_MEMORY;
	}
	sgm_unlock(st);
	if (rv != CKR_OK)
		goto out;
	/* No protected path for the per-signature code: the app must ask. */
	rv = pPin == NULL && ulPinLen == 0 ? CKR_PIN_INCORRECT : pin_dup(pPin, ulPinLen, &pin);
	if (rv != CKR_OK)
		goto out;
	rv = CKR_HOST_MEMORY;
	req = sg_request_new(SG_OP_AUTH_CONTEXT);
	if (req == NULL || sg_set_bytes(req, "session", tok, sizeof(tok)) < 0 ||
	    json_object_set_new(req, "seal", json_string(seal)) != 0)
		goto out;
	jpin = json_stringn(pin, ulPinLen);
	if (jpin == NULL) {
		rv = CKR_PIN_INVALID;
		goto out;
	}
	if (json_object_set_new(req, "pin", jpin) != 0)
		goto out;
	rv = sgm_client_call(st, req, false, &reply, &conn_epoch);
	sgm_json_wipe_str(req, "pin");
	sgm_json_wipe_str(req, "session");
	if (rv != CKR_OK)
		goto out;
	if (conn_epoch != epoch) {
		rv = CKR_DEVICE_REMOVED;
		goto out;
	}
	if (!sg_reply_is_ok(reply, NULL, NULL, NULL)) {
		rv = sgm_reply_rv(reply);
		sgm_debug("context-specific login refused (rv 0x%lx)", rv);
		if (rv == CKR_USER_NOT_LOGGED_IN)
			sgm_login_invalidate(st, tok);
		goto out;
	}
	sgm_lock(st);
	rv = sgm_session_check_locked(st, hSession, &s);
	if (rv == CKR_OK && (s->ctx_seal == NULL || strcmp(s->ctx_seal, seal) != 0))
		rv = CKR_OPERATION_NOT_INITIALIZED;   /* the operation changed meanwhile */
	if (rv == CKR_OK)
		s->ctx_done = true;
	sgm_unlock(st);
out:
	if (req != NULL) {
		sgm_json_wipe_str(req, "pin");
		sgm_json_wipe_str(req, "session");
	}
	json_decref(req);
	json_decref(reply);
	if (pin != NULL)
		sg_free_secret(pin, ulPinLen + 1);
	free(seal);
	if (have_tok)
		OPENSSL_cleanse(tok, sizeof(tok));
	return rv;
}

/* C_Login(CKU_SO): a valid user type for which this token has no PIN
 * (administration is sealctl's), so no SO PIN is ever correct. The codes
 * PKCS#11 gives precedence come first: a user already logged in, then a
 * read-only session (an SO has only R/W sessions). Nothing is sent to the
 * gateway and the PIN is not copied. Caller holds the lock. */
static CK_RV
so_login_locked(struct sgm_state *st)
{
	if (st->logged_in)
		return CKR_USER_ANOTHER_ALREADY_LOGGED_IN;
	for (struct sgm_session *s = st->sessions; s != NULL; s = s->next)
		if (s->epoch == st->epoch && !(s->flags & CKF_RW_SESSION))
			return CKR_SESSION_READ_ONLY_EXISTS;
	sgm_debug("login as SO refused: this token has no security officer (use sealctl)");
	return CKR_PIN_INCORRECT;
}

/* A refused login's code. not_allowed (the gateway found no account this
 * OS user may act as) is the gateway's CKR_USER_TYPE_INVALID, which for
 * CKU_USER would tell the application the user type is wrong: PKCS#11 has
 * no "no such user", so it becomes CKR_PIN_INCORRECT, the code an unknown
 * account gets too, and the debug output says what is missing. */
static CK_RV
login_refused(const json_t *reply, const char *user)
{
	const char *code = NULL, *msg = NULL;
	unsigned long grv = CKR_DEVICE_ERROR;
	CK_RV rv = sgm_reply_rv(reply);

	(void)sg_reply_is_ok(reply, &grv, &code, &msg);
	if (code == NULL || strcmp(code, "not_allowed") != 0) {
		sgm_debug("login refused (rv 0x%lx)", rv);
		return rv;
	}
	if (user == NULL)
		sgm_debug("login refused: SEALGATE_USER is not set and the gateway has no account "
		          "for this OS login (%s); set SEALGATE_USER to your sealgate account or "
		          "ask the administrator to add this OS login to one",
		          msg != NULL ? msg : "no reason given");
	else
		sgm_debug("login refused: this OS user may not act as sealgate account '%s' (%s)",
		          user, msg != NULL ? msg : "no reason given");
	return CKR_PIN_INCORRECT;
}

static CK_RV
login(CK_SESSION_HANDLE hSession, CK_USER_TYPE userType, CK_UTF8CHAR_PTR pPin,
      CK_ULONG ulPinLen, const char *user)
{
	struct sgm_state *st;
	struct sgm_session *s;
	json_t *req = NULL, *reply = NULL;
	uint8_t *tok = NULL, old[SG_SESSION_TOKEN_LEN];
	size_t toklen = 0;
	char *pin = NULL, err[128];
	uint64_t epoch, conn_epoch;
	CK_RV rv = sgm_state_get(&st);

	if (rv != CKR_OK)
		return rv;

	if (userType == CKU_CONTEXT_SPECIFIC)
		return context_login(hSession, pPin, ulPinLen);

	sgm_lock(st);
	rv = sgm_session_check_locked(st, hSession, &s);
	if (rv == CKR_OK) {
		epoch = s->epoch;
		if (userType == CKU_SO)
			rv = so_login_locked(st);
		else if (userType != CKU_USER)
			rv = CKR_USER_TYPE_INVALID;
		else if (st->logged_in)
			rv = CKR_USER_ALREADY_LOGGED_IN;
	}
	sgm_unlock(st);
	if (rv != CKR_OK)
		return rv;

	if (pPin == NULL && ulPinLen != 0)
		return CKR_ARGUMENTS_BAD;
	/* No PIN is only for a token with a protected authentication path. */
	if (pPin == NULL && !(auth_flags(st) & CKF_PROTECTED_AUTHENTICATION_PATH))
		return CKR_PIN_INCORRECT;
	if (pPin != NULL && (ulPinLen < 1 || ulPinLen > SG_PIN_MAX))
		return CKR_PIN_LEN_RANGE;
	if (pPin != NULL && memchr(pPin, 0, ulPinLen) != NULL)
		return CKR_PIN_INVALID;

	rv = CKR_HOST_MEMORY;
	req = sg_request_new(SG_OP_LOGIN);
	if (req == NULL)
		goto out;
	if (pPin == NULL) {
		/* The protected authentication path: no PIN here; the gateway
		 * accepts it only inside a window `sealctl login` opened. */
		if (json_object_set_new(req, "protected", json_true()) != 0)
			goto out;
	} else {
		pin = malloc(ulPinLen + 1);
		if (pin == NULL)
			goto out;
		memcpy(pin, pPin, ulPinLen);
		pin[ulPinLen] = '\0';
		json_t *jpin = json_stringn(pin, ulPinLen);
		if (jpin == NULL) {
			rv = CKR_PIN_INVALID;   /* not UTF-8 */
			goto out;
		}
		if (json_object_set_new(req, "pin", jpin) != 0)
			goto out;
	}
	if (user != NULL && json_object_set_new(req, "user", json_string(user)) != 0)
		goto out;

	rv = sgm_client_call(st, req, false, &reply, &conn_epoch);
	sgm_json_wipe_str(req, "pin");
	if (rv != CKR_OK)
		goto out;
	if (conn_epoch != epoch) {
		rv = CKR_DEVICE_REMOVED;
		goto out;
	}
	if (!sg_reply_is_ok(reply, NULL, NULL, NULL)) {
		rv = login_refused(reply, user);
		goto out;
	}
	if (sg_get_bytes(reply, "session", true, &tok, &toklen, SG_SESSION_TOKEN_LEN,
	                 err, sizeof(err)) < 0 || toklen != SG_SESSION_TOKEN_LEN) {
		sgm_debug("login reply: bad session token");
		rv = CKR_DEVICE_ERROR;
		goto out;
	}

	sgm_lock(st);
	if (st->epoch != epoch) {
		rv = CKR_DEVICE_REMOVED;
	} else if (st->logged_in) {
		rv = CKR_USER_ALREADY_LOGGED_IN;   /* another thread won */
	} else {
		memcpy(st->token, tok, SG_SESSION_TOKEN_LEN);
		st->logged_in = true;
		rv = CKR_OK;
	}
	sgm_unlock(st);
	if (rv != CKR_OK) {
		memcpy(old, tok, SG_SESSION_TOKEN_LEN);
		gateway_logout(st, old);
		goto out;
	}
	/* The private keys appear now; a failed refresh only delays that to
	 * the next C_FindObjectsInit. */
	(void)sgm_objects_refresh(st, epoch);
out:
	if (reply != NULL)
		sgm_json_wipe_str(reply, "session");
	json_decref(req);
	json_decref(reply);
	sg_free_secret(tok, toklen);
	if (pin != NULL)
		sg_free_secret(pin, ulPinLen + 1);
	return rv;
}

CK_RV
C_Login(CK_SESSION_HANDLE hSession, CK_USER_TYPE userType, CK_UTF8CHAR_PTR pPin,
        CK_ULONG ulPinLen)
{
	struct sgm_state *st;
	CK_RV rv = sgm_state_get(&st);

	if (rv != CKR_OK)
		return rv;
	return login(hSession, userType, pPin, ulPinLen, st->user);
}

CK_RV
C_LoginUser(CK_SESSION_HANDLE hSession, CK_USER_TYPE userType, CK_UTF8CHAR_PTR pPin,
            CK_ULONG ulPinLen, CK_UTF8CHAR_PTR pUsername, CK_ULONG ulUsernameLen)
{
	struct sgm_state *st;
	char user[SG_NAME_MAX + 1];
	CK_RV rv = sgm_state_get(&st);

	if (rv != CKR_OK)
		return rv;
	if (pUsername == NULL && ulUsernameLen > 0)
		return CKR_ARGUMENTS_BAD;
	if (pUsername == NULL || ulUsernameLen == 0)
		return login(hSession, userType, pPin, ulPinLen, st->user);
	if (ulUsernameLen > SG_NAME_MAX || memchr(pUsername, 0, ulUsernameLen) != NULL)
		return CKR_ARGUMENTS_BAD;
	memcpy(user, pUsername, ulUsernameLen);
	user[ulUsernameLen] = '\0';
	return login(hSession, userType, pPin, ulPinLen, user);
}

CK_RV
C_Logout(CK_SESSION_HANDLE hSession)
{
	struct sgm_state *st;
	struct sgm_session *s;
	uint8_t tok[SG_SESSION_TOKEN_LEN];
	uint64_t epoch = 0;
	CK_RV rv = sgm_state_get(&st);

	if (rv != CKR_OK)
		return rv;
	sgm_lock(st);
	rv = sgm_session_check_locked(st, hSession, &s);
	if (rv == CKR_OK && !sgm_login_token_locked(st, tok))
		rv = CKR_USER_NOT_LOGGED_IN;
	if (rv == CKR_OK) {
		epoch = s->epoch;
		login_clear_locked(st);
	}
	sgm_unlock(st);
	if (rv != CKR_OK)
		return rv;
	/* Locally logged out whatever the gateway answers. */
	gateway_logout(st, tok);
	(void)sgm_objects_refresh(st, epoch);
	return CKR_OK;
}

CK_RV
C_InitToken(CK_SLOT_ID slotID, CK_UTF8CHAR_PTR pPin, CK_ULONG ulPinLen, CK_UTF8CHAR_PTR pLabel)
{
	CK_RV rv = initialized_only();

	if (rv != CKR_OK)
		return rv;
	if (slotID != SGM_SLOT_ID)
		return CKR_SLOT_ID_INVALID;
	/* Seals are set up by the gateway's administrator (sealctl). */
	return CKR_TOKEN_WRITE_PROTECTED;
}

CK_RV
C_InitPIN(CK_SESSION_HANDLE hSession, CK_UTF8CHAR_PTR pPin, CK_ULONG ulPinLen)
{
	CK_RV rv = session_check(hSession, false, 0);

	return rv != CKR_OK ? rv : CKR_TOKEN_WRITE_PROTECTED;
}

/* C_SetPIN changes the user's own sealgate password: a login of its own
 * with the old PIN (password followed by the current code when the account
 * has TOTP), then user_passwd, then logout. The application's own login is
 * not touched. */
CK_RV
C_SetPIN(CK_SESSION_HANDLE hSession, CK_UTF8CHAR_PTR pOldPin, CK_ULONG ulOldLen,
         CK_UTF8CHAR_PTR pNewPin, CK_ULONG ulNewLen)
{
	struct sgm_state *st;
	char *oldp = NULL, *newp = NULL, err[128];
	json_t *req = NULL, *reply = NULL;
	uint8_t *tok = NULL;
	size_t toklen = 0;
	const char *user;
	uint64_t epoch;
	CK_RV rv = session_check(hSession, false, 0);

	if (rv != CKR_OK)
		return rv;
	if (sgm_state_get(&st) != CKR_OK)
		return CKR_CRYPTOKI_NOT_INITIALIZED;
	if ((rv = pin_dup(pOldPin, ulOldLen, &oldp)) != CKR_OK ||
	    (rv = pin_dup(pNewPin, ulNewLen, &newp)) != CKR_OK)
		goto out;
	rv = CKR_HOST_MEMORY;
	req = sg_request_new(SG_OP_LOGIN);
	if (req == NULL || json_object_set_new(req, "pin", json_string(oldp)) != 0 ||
	    (st->user != NULL && json_object_set_new(req, "user", json_string(st->user)) != 0))
		goto out;
	rv = sgm_client_call(st, req, false, &reply, &epoch);
	sgm_json_wipe_str(req, "pin");
	if (rv != CKR_OK)
		goto out;
	if (!sg_reply_is_ok(reply, NULL, NULL, NULL)) {
		rv = login_refused(reply, st->user);
		goto out;
	}
	user = json_string_value(json_object_get(reply, "user"));
	if (user == NULL || sg_get_bytes(reply, "session", true, &tok, &toklen,
	                                 SG_SESSION_TOKEN_LEN, err, sizeof(err)) < 0 ||
	    toklen != SG_SESSION_TOKEN_LEN) {
		rv = CKR_DEVICE_ERROR;
		goto out;
	}
	json_decref(req);
	req = sg_request_new(SG_OP_USER_PASSWD);
	rv = CKR_HOST_MEMORY;
	if (req == NULL || sg_set_bytes(req, "session", tok, toklen) < 0 ||
	    json_object_set_new(req, "user", json_string(user)) != 0 ||
	    json_object_set_new(req, "password", json_string(newp)) != 0 ||
	    json_object_set_new(req, "old_password", json_string(oldp)) != 0)
		goto out;
	sgm_json_wipe_str(reply, "session");
	json_decref(reply);
	reply = NULL;
	rv = sgm_client_call(st, req, false, &reply, &epoch);
	if (rv == CKR_OK && !sg_reply_is_ok(reply, NULL, NULL, NULL))
		rv = sgm_reply_rv(reply);
out:
	if (req != NULL) {
		sgm_json_wipe_str(req, "pin");
		sgm_json_wipe_str(req, "password");
		sgm_json_wipe_str(req, "old_password");
		sgm_json_wipe_str(req, "session");
	}
	if (reply != NULL)
		sgm_json_wipe_str(reply, "session");
	json_decref(req);
	json_decref(reply);
	if (tok != NULL && toklen == SG_SESSION_TOKEN_LEN)
		gateway_logout(st, tok);          /* wipes tok */
	sg_free_secret(tok, toklen);
	if (oldp != NULL)
		sg_free_secret(oldp, ulOldLen + 1);
	if (newp != NULL)
		sg_free_secret(newp, ulNewLen + 1);
	return rv;
}

/* ---- objects: read-only token ---- */

CK_RV
C_CreateObject(CK_SESSION_HANDLE hSession, CK_ATTRIBUTE_PTR pTemplate, CK_ULONG ulCount,
               CK_OBJECT_HANDLE_PTR phObject)
{
	CK_RV rv = session_check(hSession, false, 0);

	if (rv != CKR_OK)
		return rv;
	if ((pTemplate == NULL && ulCount > 0) || phObject == NULL)
		return CKR_ARGUMENTS_BAD;
	return CKR_TOKEN_WRITE_PROTECTED;
}

CK_RV
C_CopyObject(CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE hObject, CK_ATTRIBUTE_PTR pTemplate,
             CK_ULONG ulCount, CK_OBJECT_HANDLE_PTR phNewObject)
{
	CK_RV rv = session_check(hSession, true, hObject);

	if (rv != CKR_OK)
		return rv;
	if ((pTemplate == NULL && ulCount > 0) || phNewObject == NULL)
		return CKR_ARGUMENTS_BAD;
	return CKR_TOKEN_WRITE_PROTECTED;
}

CK_RV
C_DestroyObject(CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE hObject)
{
	CK_RV rv = session_check(hSession, true, hObject);

	return rv != CKR_OK ? rv : CKR_TOKEN_WRITE_PROTECTED;
}

CK_RV
C_GetObjectSize(CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE hObject, CK_ULONG_PTR pulSize)
{
	struct sgm_state *st;
	CK_RV rv = sgm_state_get(&st);

	if (rv != CKR_OK)
		return rv;
	if (pulSize == NULL)
		return CKR_ARGUMENTS_BAD;
	return sgm_objects_size(st, hSession, hObject, pulSize);
}

CK_RV
C_GetAttributeValue(CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE hObject,
                    CK_ATTRIBUTE_PTR pTemplate, CK_ULONG ulCount)
{
	struct sgm_state *st;
	CK_RV rv = sgm_state_get(&st);

	if (rv != CKR_OK)
		return rv;
	if (pTemplate == NULL && ulCount > 0)
		return CKR_ARGUMENTS_BAD;
	return sgm_objects_get_attrs(st, hSession, hObject, pTemplate, ulCount);
}

CK_RV
C_SetAttributeValue(CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE hObject,
                    CK_ATTRIBUTE_PTR pTemplate, CK_ULONG ulCount)
{
	CK_RV rv = session_check(hSession, true, hObject);

	if (rv != CKR_OK)
		return rv;
	if (pTemplate == NULL && ulCount > 0)
		return CKR_ARGUMENTS_BAD;
	return CKR_TOKEN_WRITE_PROTECTED;
}

CK_RV
C_FindObjectsInit(CK_SESSION_HANDLE hSession, CK_ATTRIBUTE_PTR pTemplate, CK_ULONG ulCount)
{
	struct sgm_state *st;
	CK_RV rv = sgm_state_get(&st);

	if (rv != CKR_OK)
		return rv;
	if (pTemplate == NULL && ulCount > 0)
		return CKR_ARGUMENTS_BAD;
	return sgm_objects_find_init(st, hSession, pTemplate, ulCount);
}

CK_RV
C_FindObjects(CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE_PTR phObject,
              CK_ULONG ulMaxObjectCount, CK_ULONG_PTR pulObjectCount)
{
	struct sgm_state *st;
	CK_RV rv = sgm_state_get(&st);

	if (rv != CKR_OK)
		return rv;
	if ((phObject == NULL && ulMaxObjectCount > 0) || pulObjectCount == NULL)
		return CKR_ARGUMENTS_BAD;
	return sgm_objects_find_next(st, hSession, phObject, ulMaxObjectCount, pulObjectCount);
}

CK_RV
C_FindObjectsFinal(CK_SESSION_HANDLE hSession)
{
	struct sgm_state *st;
	CK_RV rv = sgm_state_get(&st);

	if (rv != CKR_OK)
		return rv;
	return sgm_objects_find_final(st, hSession);
}

/* ---- signing ---- */

/* ---- per-signature login around the sign operation ---- */

/* After C_SignInit: remember whether the key wants C_Login(CKU_CONTEXT_
 * SPECIFIC) before its signature. */
static void
ctx_arm(struct sgm_state *st, CK_SESSION_HANDLE h, CK_OBJECT_HANDLE key)
{
	struct sgm_session *s;
	const struct sgm_seal *seal;
	CK_OBJECT_CLASS cls;

	sgm_lock(st);
	if (sgm_session_check_locked(st, h, &s) == CKR_OK) {
		ctx_clear_locked(s);
		seal = sgm_object_lookup_locked(st, key, &cls);
		if (seal != NULL && seal->always_auth) {
			s->ctx_seal = strdup(seal->id);
			s->ctx_sig_len = seal->sig_len;
			if (s->ctx_seal == NULL && s->sign != NULL && !s->busy) {
				/* Cannot track it: no operation rather than one that
				 * would fail at the gateway. */
				sgm_sign_op_free(s->sign);
				s->sign = NULL;
			}
		}
	}
	sgm_unlock(st);
}

/* Before a C_Sign/C_SignFinal that would reach the gateway: without the
 * context-specific login the operation ends with CKR_USER_NOT_LOGGED_IN
 * (PKCS#11 3.0, 5.2.6), and the application's own login is kept. Size
 * queries pass. */
static CK_RV
ctx_gate(struct sgm_state *st, CK_SESSION_HANDLE h, CK_BYTE_PTR sig, CK_ULONG_PTR siglen)
{
	struct sgm_session *s;
	CK_RV rv = CKR_OK;

	sgm_lock(st);
	if (sgm_session_check_locked(st, h, &s) == CKR_OK && s->ctx_seal != NULL &&
	    !s->ctx_done && !s->busy && s->sign != NULL && sig != NULL && siglen != NULL &&
	    *siglen >= s->ctx_sig_len) {
		sgm_sign_op_free(s->sign);
		s->sign = NULL;
		ctx_clear_locked(s);
		rv = CKR_USER_NOT_LOGGED_IN;
	}
	sgm_unlock(st);
	return rv;
}

/* After C_Sign/C_SignFinal: a code is good for one operation only. */
static void
ctx_after(struct sgm_state *st, CK_SESSION_HANDLE h)
{
	struct sgm_session *s;

	sgm_lock(st);
	if (sgm_session_check_locked(st, h, &s) == CKR_OK && s->sign == NULL && !s->busy)
		ctx_clear_locked(s);
	sgm_unlock(st);
}

CK_RV
C_SignInit(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hKey)
{
	struct sgm_state *st;
	CK_RV rv = sgm_state_get(&st);

	if (rv != CKR_OK)
		return rv;
	if (pMechanism == NULL)
		return CKR_ARGUMENTS_BAD;
	rv = sgm_sign_init(st, hSession, pMechanism, hKey);
	if (rv == CKR_OK)
		ctx_arm(st, hSession, hKey);
	return rv;
}

CK_RV
C_Sign(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pData, CK_ULONG ulDataLen,
       CK_BYTE_PTR pSignature, CK_ULONG_PTR pulSignatureLen)
{
	struct sgm_state *st;
	CK_RV rv = sgm_state_get(&st);

	if (rv != CKR_OK)
		return rv;
	rv = ctx_gate(st, hSession, pSignature, pulSignatureLen);
	if (rv != CKR_OK)
		return rv;
	rv = sgm_sign(st, hSession, false, pData, ulDataLen, pSignature, pulSignatureLen);
	ctx_after(st, hSession);
	return rv;
}

CK_RV
C_SignUpdate(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pPart, CK_ULONG ulPartLen)
{
	struct sgm_state *st;
	CK_RV rv = sgm_state_get(&st);

	if (rv != CKR_OK)
		return rv;
	return sgm_sign_update(st, hSession, pPart, ulPartLen);
}

CK_RV
C_SignFinal(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pSignature, CK_ULONG_PTR pulSignatureLen)
{
	struct sgm_state *st;
	CK_RV rv = sgm_state_get(&st);

	if (rv != CKR_OK)
		return rv;
	rv = ctx_gate(st, hSession, pSignature, pulSignatureLen);
	if (rv != CKR_OK)
		return rv;
	rv = sgm_sign(st, hSession, true, NULL, 0, pSignature, pulSignatureLen);
	ctx_after(st, hSession);
	return rv;
}

CK_RV
C_SessionCancel(CK_SESSION_HANDLE hSession, CK_FLAGS flags)
{
	struct sgm_state *st;
	struct sgm_session *s;
	CK_RV rv = sgm_state_get(&st);

	if (rv != CKR_OK)
		return rv;
	sgm_lock(st);
	rv = sgm_session_check_locked(st, hSession, &s);
	if (rv == CKR_OK && (flags & CKF_SIGN)) {
		if (s->busy) {
			rv = CKR_OPERATION_CANCEL_FAILED;   /* in the middle of a round trip */
		} else {
			sgm_sign_op_free(s->sign);
			s->sign = NULL;
		}
	}
	if (rv == CKR_OK && (flags & CKF_VERIFY)) {
		if (s->vbusy) {
			rv = CKR_OPERATION_CANCEL_FAILED;   /* another thread is checking */
		} else {
			sgm_verify_op_free(s->verify);
			s->verify = NULL;
		}
	}
	sgm_unlock(st);
	return rv;
}

/* ---- verification: local, on the public key, for anyone ---- */

CK_RV
C_VerifyInit(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hKey)
{
	struct sgm_state *st;
	CK_RV rv = sgm_state_get(&st);

	if (rv != CKR_OK)
		return rv;
	if (pMechanism == NULL)
		return CKR_ARGUMENTS_BAD;
	return sgm_verify_init(st, hSession, pMechanism, hKey);
}

CK_RV
C_Verify(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pData, CK_ULONG ulDataLen,
         CK_BYTE_PTR pSignature, CK_ULONG ulSignatureLen)
{
	struct sgm_state *st;
	CK_RV rv = sgm_state_get(&st);

	if (rv != CKR_OK)
		return rv;
	return sgm_verify(st, hSession, false, pData, ulDataLen, pSignature, ulSignatureLen);
}

CK_RV
C_VerifyUpdate(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pPart, CK_ULONG ulPartLen)
{
	struct sgm_state *st;
	CK_RV rv = sgm_state_get(&st);

	if (rv != CKR_OK)
		return rv;
	return sgm_verify_update(st, hSession, pPart, ulPartLen);
}

CK_RV
C_VerifyFinal(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pSignature, CK_ULONG ulSignatureLen)
{
	struct sgm_state *st;
	CK_RV rv = sgm_state_get(&st);

	if (rv != CKR_OK)
		return rv;
	return sgm_verify(st, hSession, true, NULL, 0, pSignature, ulSignatureLen);
}

/* ---- key management: the token is write-protected ---- */

CK_RV
C_GenerateKey(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism,
              CK_ATTRIBUTE_PTR pTemplate, CK_ULONG ulCount, CK_OBJECT_HANDLE_PTR phKey)
{
	CK_RV rv = session_check(hSession, false, 0);

	if (rv != CKR_OK)
		return rv;
	if (pMechanism == NULL || (pTemplate == NULL && ulCount > 0) || phKey == NULL)
		return CKR_ARGUMENTS_BAD;
	return CKR_TOKEN_WRITE_PROTECTED;
}

CK_RV
C_GenerateKeyPair(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism,
                  CK_ATTRIBUTE_PTR pPublicKeyTemplate, CK_ULONG ulPublicKeyAttributeCount,
                  CK_ATTRIBUTE_PTR pPrivateKeyTemplate, CK_ULONG ulPrivateKeyAttributeCount,
                  CK_OBJECT_HANDLE_PTR phPublicKey, CK_OBJECT_HANDLE_PTR phPrivateKey)
{
	CK_RV rv = session_check(hSession, false, 0);

	if (rv != CKR_OK)
		return rv;
	if (pMechanism == NULL || (pPublicKeyTemplate == NULL && ulPublicKeyAttributeCount > 0) ||
	    (pPrivateKeyTemplate == NULL && ulPrivateKeyAttributeCount > 0) ||
	    phPublicKey == NULL || phPrivateKey == NULL)
		return CKR_ARGUMENTS_BAD;
	return CKR_TOKEN_WRITE_PROTECTED;
}

CK_RV
C_WrapKey(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hWrappingKey,
          CK_OBJECT_HANDLE hKey, CK_BYTE_PTR pWrappedKey, CK_ULONG_PTR pulWrappedKeyLen)
{
	CK_RV rv = session_check(hSession, false, 0);

	return rv != CKR_OK ? rv : CKR_FUNCTION_NOT_SUPPORTED;
}

CK_RV
C_UnwrapKey(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism,
            CK_OBJECT_HANDLE hUnwrappingKey, CK_BYTE_PTR pWrappedKey, CK_ULONG ulWrappedKeyLen,
            CK_ATTRIBUTE_PTR pTemplate, CK_ULONG ulAttributeCount, CK_OBJECT_HANDLE_PTR phKey)
{
	CK_RV rv = session_check(hSession, false, 0);

	if (rv != CKR_OK)
		return rv;
	if (pMechanism == NULL || (pWrappedKey == NULL && ulWrappedKeyLen > 0) ||
	    (pTemplate == NULL && ulAttributeCount > 0) || phKey == NULL)
		return CKR_ARGUMENTS_BAD;
	return CKR_TOKEN_WRITE_PROTECTED;
}

CK_RV
C_DeriveKey(CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism, CK_OBJECT_HANDLE hBaseKey,
            CK_ATTRIBUTE_PTR pTemplate, CK_ULONG ulAttributeCount, CK_OBJECT_HANDLE_PTR phKey)
{
	CK_RV rv = session_check(hSession, false, 0);

	if (rv != CKR_OK)
		return rv;
	if (pMechanism == NULL || (pTemplate == NULL && ulAttributeCount > 0) || phKey == NULL)
		return CKR_ARGUMENTS_BAD;
	return CKR_TOKEN_WRITE_PROTECTED;
}

/* ---- everything this token does not do ---- */

/* Initialized first (a forked child gets CKR_CRYPTOKI_NOT_INITIALIZED
 * from every function), then the session, then "not supported". */
#define SGM_UNSUPPORTED(name, params)                                   \
	CK_RV name params                                               \
	{                                                               \
		CK_RV rv_ = session_check(hSession, false, 0); \
		return rv_ != CKR_OK ? rv_ : CKR_FUNCTION_NOT_SUPPORTED; \
	}

SGM_UNSUPPORTED(C_EncryptInit, (CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism,
                                CK_OBJECT_HANDLE hKey))
SGM_UNSUPPORTED(C_Encrypt, (CK_SESSION_HANDLE hSession, CK_BYTE_PTR pData, CK_ULONG ulDataLen,
                            CK_BYTE_PTR pEncryptedData, CK_ULONG_PTR pulEncryptedDataLen))
SGM_UNSUPPORTED(C_EncryptUpdate, (CK_SESSION_HANDLE hSession, CK_BYTE_PTR pPart,
                                  CK_ULONG ulPartLen, CK_BYTE_PTR pEncryptedPart,
                                  CK_ULONG_PTR pulEncryptedPartLen))
SGM_UNSUPPORTED(C_EncryptFinal, (CK_SESSION_HANDLE hSession, CK_BYTE_PTR pLastEncryptedPart,
                                 CK_ULONG_PTR pulLastEncryptedPartLen))
SGM_UNSUPPORTED(C_DecryptInit, (CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism,
                                CK_OBJECT_HANDLE hKey))
SGM_UNSUPPORTED(C_Decrypt, (CK_SESSION_HANDLE hSession, CK_BYTE_PTR pEncryptedData,
                            CK_ULONG ulEncryptedDataLen, CK_BYTE_PTR pData,
                            CK_ULONG_PTR pulDataLen))
SGM_UNSUPPORTED(C_DecryptUpdate, (CK_SESSION_HANDLE hSession, CK_BYTE_PTR pEncryptedPart,
                                  CK_ULONG ulEncryptedPartLen, CK_BYTE_PTR pPart,
                                  CK_ULONG_PTR pulPartLen))
SGM_UNSUPPORTED(C_DecryptFinal, (CK_SESSION_HANDLE hSession, CK_BYTE_PTR pLastPart,
                                 CK_ULONG_PTR pulLastPartLen))
SGM_UNSUPPORTED(C_DigestInit, (CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism))
SGM_UNSUPPORTED(C_Digest, (CK_SESSION_HANDLE hSession, CK_BYTE_PTR pData, CK_ULONG ulDataLen,
                           CK_BYTE_PTR pDigest, CK_ULONG_PTR pulDigestLen))
SGM_UNSUPPORTED(C_DigestUpdate, (CK_SESSION_HANDLE hSession, CK_BYTE_PTR pPart,
                                 CK_ULONG ulPartLen))
SGM_UNSUPPORTED(C_DigestKey, (CK_SESSION_HANDLE hSession, CK_OBJECT_HANDLE hKey))
SGM_UNSUPPORTED(C_DigestFinal, (CK_SESSION_HANDLE hSession, CK_BYTE_PTR pDigest,
                                CK_ULONG_PTR pulDigestLen))
SGM_UNSUPPORTED(C_SignRecoverInit, (CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism,
                                    CK_OBJECT_HANDLE hKey))
SGM_UNSUPPORTED(C_SignRecover, (CK_SESSION_HANDLE hSession, CK_BYTE_PTR pData,
                                CK_ULONG ulDataLen, CK_BYTE_PTR pSignature,
                                CK_ULONG_PTR pulSignatureLen))
SGM_UNSUPPORTED(C_VerifyRecoverInit, (CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism,
                                      CK_OBJECT_HANDLE hKey))
SGM_UNSUPPORTED(C_VerifyRecover, (CK_SESSION_HANDLE hSession, CK_BYTE_PTR pSignature,
                                  CK_ULONG ulSignatureLen, CK_BYTE_PTR pData,
                                  CK_ULONG_PTR pulDataLen))
SGM_UNSUPPORTED(C_DigestEncryptUpdate, (CK_SESSION_HANDLE hSession, CK_BYTE_PTR pPart,
                                        CK_ULONG ulPartLen, CK_BYTE_PTR pEncryptedPart,
                                        CK_ULONG_PTR pulEncryptedPartLen))
SGM_UNSUPPORTED(C_DecryptDigestUpdate, (CK_SESSION_HANDLE hSession, CK_BYTE_PTR pEncryptedPart,
                                        CK_ULONG ulEncryptedPartLen, CK_BYTE_PTR pPart,
                                        CK_ULONG_PTR pulPartLen))
SGM_UNSUPPORTED(C_SignEncryptUpdate, (CK_SESSION_HANDLE hSession, CK_BYTE_PTR pPart,
                                      CK_ULONG ulPartLen, CK_BYTE_PTR pEncryptedPart,
                                      CK_ULONG_PTR pulEncryptedPartLen))
SGM_UNSUPPORTED(C_DecryptVerifyUpdate, (CK_SESSION_HANDLE hSession, CK_BYTE_PTR pEncryptedPart,
                                        CK_ULONG ulEncryptedPartLen, CK_BYTE_PTR pPart,
                                        CK_ULONG_PTR pulPartLen))

/* The token has no CKF_RNG: PKCS#11 names the code for that, and
 * pkcs11-tool's self-test skips the random tests on it. */
CK_RV
C_SeedRandom(CK_SESSION_HANDLE hSession, CK_BYTE_PTR pSeed, CK_ULONG ulSeedLen)
{
	CK_RV rv = session_check(hSession, false, 0);

	return rv != CKR_OK ? rv : CKR_RANDOM_NO_RNG;
}

CK_RV
C_GenerateRandom(CK_SESSION_HANDLE hSession, CK_BYTE_PTR RandomData, CK_ULONG ulRandomLen)
{
	CK_RV rv = session_check(hSession, false, 0);

	return rv != CKR_OK ? rv : CKR_RANDOM_NO_RNG;
}

/* Legacy functions for parallel sessions, which PKCS#11 says return
 * CKR_FUNCTION_NOT_PARALLEL (sessions here are serial). */
CK_RV
C_GetFunctionStatus(CK_SESSION_HANDLE hSession)
{
	CK_RV rv = session_check(hSession, false, 0);

	return rv != CKR_OK ? rv : CKR_FUNCTION_NOT_PARALLEL;
}

CK_RV
C_CancelFunction(CK_SESSION_HANDLE hSession)
{
	CK_RV rv = session_check(hSession, false, 0);

	return rv != CKR_OK ? rv : CKR_FUNCTION_NOT_PARALLEL;
}

SGM_UNSUPPORTED(C_MessageEncryptInit, (CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism,
                                       CK_OBJECT_HANDLE hKey))
SGM_UNSUPPORTED(C_EncryptMessage, (CK_SESSION_HANDLE hSession, CK_VOID_PTR pParameter,
                                   CK_ULONG ulParameterLen, CK_BYTE_PTR pAssociatedData,
                                   CK_ULONG ulAssociatedDataLen, CK_BYTE_PTR pPlaintext,
                                   CK_ULONG ulPlaintextLen, CK_BYTE_PTR pCiphertext,
                                   CK_ULONG_PTR pulCiphertextLen))
SGM_UNSUPPORTED(C_EncryptMessageBegin, (CK_SESSION_HANDLE hSession, CK_VOID_PTR pParameter,
                                        CK_ULONG ulParameterLen, CK_BYTE_PTR pAssociatedData,
                                        CK_ULONG ulAssociatedDataLen))
SGM_UNSUPPORTED(C_EncryptMessageNext, (CK_SESSION_HANDLE hSession, CK_VOID_PTR pParameter,
                                       CK_ULONG ulParameterLen, CK_BYTE_PTR pPlaintextPart,
                                       CK_ULONG ulPlaintextPartLen, CK_BYTE_PTR pCiphertextPart,
                                       CK_ULONG_PTR pulCiphertextPartLen, CK_FLAGS flags))
SGM_UNSUPPORTED(C_MessageEncryptFinal, (CK_SESSION_HANDLE hSession))
SGM_UNSUPPORTED(C_MessageDecryptInit, (CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism,
                                       CK_OBJECT_HANDLE hKey))
SGM_UNSUPPORTED(C_DecryptMessage, (CK_SESSION_HANDLE hSession, CK_VOID_PTR pParameter,
                                   CK_ULONG ulParameterLen, CK_BYTE_PTR pAssociatedData,
                                   CK_ULONG ulAssociatedDataLen, CK_BYTE_PTR pCiphertext,
                                   CK_ULONG ulCiphertextLen, CK_BYTE_PTR pPlaintext,
                                   CK_ULONG_PTR pulPlaintextLen))
SGM_UNSUPPORTED(C_DecryptMessageBegin, (CK_SESSION_HANDLE hSession, CK_VOID_PTR pParameter,
                                        CK_ULONG ulParameterLen, CK_BYTE_PTR pAssociatedData,
                                        CK_ULONG ulAssociatedDataLen))
SGM_UNSUPPORTED(C_DecryptMessageNext, (CK_SESSION_HANDLE hSession, CK_VOID_PTR pParameter,
                                       CK_ULONG ulParameterLen, CK_BYTE_PTR pCiphertextPart,
                                       CK_ULONG ulCiphertextPartLen, CK_BYTE_PTR pPlaintextPart,
                                       CK_ULONG_PTR pulPlaintextPartLen, CK_FLAGS flags))
SGM_UNSUPPORTED(C_MessageDecryptFinal, (CK_SESSION_HANDLE hSession))
SGM_UNSUPPORTED(C_MessageSignInit, (CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism,
                                    CK_OBJECT_HANDLE hKey))
SGM_UNSUPPORTED(C_SignMessage, (CK_SESSION_HANDLE hSession, CK_VOID_PTR pParameter,
                                CK_ULONG ulParameterLen, CK_BYTE_PTR pData, CK_ULONG ulDataLen,
                                CK_BYTE_PTR pSignature, CK_ULONG_PTR pulSignatureLen))
SGM_UNSUPPORTED(C_SignMessageBegin, (CK_SESSION_HANDLE hSession, CK_VOID_PTR pParameter,
                                     CK_ULONG ulParameterLen))
SGM_UNSUPPORTED(C_SignMessageNext, (CK_SESSION_HANDLE hSession, CK_VOID_PTR pParameter,
                                    CK_ULONG ulParameterLen, CK_BYTE_PTR pData,
                                    CK_ULONG ulDataLen, CK_BYTE_PTR pSignature,
                                    CK_ULONG_PTR pulSignatureLen))
SGM_UNSUPPORTED(C_MessageSignFinal, (CK_SESSION_HANDLE hSession))
SGM_UNSUPPORTED(C_MessageVerifyInit, (CK_SESSION_HANDLE hSession, CK_MECHANISM_PTR pMechanism,
                                      CK_OBJECT_HANDLE hKey))
SGM_UNSUPPORTED(C_VerifyMessage, (CK_SESSION_HANDLE hSession, CK_VOID_PTR pParameter,
                                  CK_ULONG ulParameterLen, CK_BYTE_PTR pData,
                                  CK_ULONG ulDataLen, CK_BYTE_PTR pSignature,
                                  CK_ULONG ulSignatureLen))
SGM_UNSUPPORTED(C_VerifyMessageBegin, (CK_SESSION_HANDLE hSession, CK_VOID_PTR pParameter,
                                       CK_ULONG ulParameterLen))
SGM_UNSUPPORTED(C_VerifyMessageNext, (CK_SESSION_HANDLE hSession, CK_VOID_PTR pParameter,
                                      CK_ULONG ulParameterLen, CK_BYTE_PTR pData,
                                      CK_ULONG ulDataLen, CK_BYTE_PTR pSignature,
                                      CK_ULONG ulSignatureLen))
SGM_UNSUPPORTED(C_MessageVerifyFinal, (CK_SESSION_HANDLE hSession))

/* ---- function lists and interfaces ---- */

#define SGM_LIST_2_40                                                           \
	C_Initialize, C_Finalize, C_GetInfo, C_GetFunctionList, C_GetSlotList,  \
	C_GetSlotInfo, C_GetTokenInfo, C_GetMechanismList, C_GetMechanismInfo,  \
	C_InitToken, C_InitPIN, C_SetPIN, C_OpenSession, C_CloseSession,        \
	C_CloseAllSessions, C_GetSessionInfo, C_GetOperationState,              \
	C_SetOperationState, C_Login, C_Logout, C_CreateObject, C_CopyObject,   \
	C_DestroyObject, C_GetObjectSize, C_GetAttributeValue,                  \
	C_SetAttributeValue, C_FindObjectsInit, C_FindObjects,                  \
	C_FindObjectsFinal, C_EncryptInit, C_Encrypt, C_EncryptUpdate,          \
	C_EncryptFinal, C_DecryptInit, C_Decrypt, C_DecryptUpdate,              \
	C_DecryptFinal, C_DigestInit, C_Digest, C_DigestUpdate, C_DigestKey,    \
	C_DigestFinal, C_SignInit, C_Sign, C_SignUpdate, C_SignFinal,           \
	C_SignRecoverInit, C_SignRecover, C_VerifyInit, C_Verify,               \
	C_VerifyUpdate, C_VerifyFinal, C_VerifyRecoverInit, C_VerifyRecover,    \
	C_DigestEncryptUpdate, C_DecryptDigestUpdate, C_SignEncryptUpdate,      \
	C_DecryptVerifyUpdate, C_GenerateKey, C_GenerateKeyPair, C_WrapKey,     \
	C_UnwrapKey, C_DeriveKey, C_SeedRandom, C_GenerateRandom,               \
	C_GetFunctionStatus, C_CancelFunction, C_WaitForSlotEvent

static CK_FUNCTION_LIST sgm_list_2_40 = {
	{ 2, 40 },
	SGM_LIST_2_40
};

static CK_FUNCTION_LIST_3_0 sgm_list_3_0 = {
	{ 3, 0 },
	SGM_LIST_2_40,
	C_GetInterfaceList, C_GetInterface, C_LoginUser, C_SessionCancel,
	C_MessageEncryptInit, C_EncryptMessage, C_EncryptMessageBegin,
	C_EncryptMessageNext, C_MessageEncryptFinal, C_MessageDecryptInit,
	C_DecryptMessage, C_DecryptMessageBegin, C_DecryptMessageNext,
	C_MessageDecryptFinal, C_MessageSignInit, C_SignMessage,
	C_SignMessageBegin, C_SignMessageNext, C_MessageSignFinal,
	C_MessageVerifyInit, C_VerifyMessage, C_VerifyMessageBegin,
	C_VerifyMessageNext, C_MessageVerifyFinal
};

/* 3.0 first: C_GetInterface(NULL, NULL) hands out the newest. The flags
 * are 0: a forked child must call C_Initialize again, which is not the
 * CKF_INTERFACE_FORK_SAFE behaviour. */
static CK_INTERFACE sgm_interfaces[] = {
	{ (void *)"PKCS 11", &sgm_list_3_0, 0 },
	{ (void *)"PKCS 11", &sgm_list_2_40, 0 },
};
#define SGM_N_INTERFACES (sizeof(sgm_interfaces) / sizeof(sgm_interfaces[0]))

CK_RV
C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR ppFunctionList)
{
	if (ppFunctionList == NULL)
		return CKR_ARGUMENTS_BAD;
	*ppFunctionList = &sgm_list_2_40;
	return CKR_OK;
}

CK_RV
C_GetInterfaceList(CK_INTERFACE_PTR pInterfacesList, CK_ULONG_PTR pulCount)
{
	if (pulCount == NULL)
		return CKR_ARGUMENTS_BAD;
	if (pInterfacesList == NULL) {
		*pulCount = SGM_N_INTERFACES;
		return CKR_OK;
	}
	if (*pulCount < SGM_N_INTERFACES) {
		*pulCount = SGM_N_INTERFACES;
		return CKR_BUFFER_TOO_SMALL;
	}
	memcpy(pInterfacesList, sgm_interfaces, sizeof(sgm_interfaces));
	*pulCount = SGM_N_INTERFACES;
	return CKR_OK;
}

CK_RV
C_GetInterface(CK_UTF8CHAR_PTR pInterfaceName, CK_VERSION_PTR pVersion,
               CK_INTERFACE_PTR_PTR ppInterface, CK_FLAGS flags)
{
	if (ppInterface == NULL)
		return CKR_ARGUMENTS_BAD;
	for (size_t i = 0; i < SGM_N_INTERFACES; i++) {
		CK_INTERFACE *itf = &sgm_interfaces[i];
		const CK_VERSION *v = itf->pFunctionList;   /* version leads both lists */

		if (pInterfaceName != NULL &&
		    strcmp((const char *)pInterfaceName, (const char *)itf->pInterfaceName) != 0)
			continue;
		if (pVersion != NULL &&
		    (pVersion->major != v->major || pVersion->minor != v->minor))
			continue;
		if ((itf->flags & flags) != flags)
			continue;
		*ppInterface = itf;
		return CKR_OK;
	}
	return CKR_ARGUMENTS_BAD;
}
