/*
 * The backend token: loads the backend PKCS#11 module, finds the one token
 * the configuration names, logs in once, keeps the pool of sessions the
 * signers share, and turns RFC 7512 key URIs into seal keys (private key +
 * certificate + public data, checked to belong together). A token that goes
 * away is marked absent and reconnected lazily (token_lost/token_reconnect).
 */
#include "token.h"
#include "protocol.h"
#include "log.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <p11-kit/p11-kit.h>
#include <p11-kit/uri.h>

#include <openssl/asn1.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/param_build.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

/* Bounds on what we accept from the token: it is hardware we trust to
 * sign, not to hand us well-formed lengths. */
#define CERT_MAX        (16u * 1024u)
#define ATTR_MAX        (4u * 1024u)    /* id, label, names, serial, params */
#define MODULUS_MAX     1024u           /* 8192-bit RSA */
#define POINT_MAX       256u
#define SLOTS_MAX       1024u
#define SESSIONS_MAX    1024u
#define RECONNECT_GAP_NS 1000000000LL   /* at most one reconnect try a second */
#define BIND_CERTS_MAX  64u             /* certificates hashed into the binding */

/* Ed25519's OID 1.3.101.112, for tokens that give no CKA_EC_PARAMS. */
static const uint8_t ed25519_oid_der[] = { 0x06, 0x03, 0x2b, 0x65, 0x70 };

struct gw_token {
	void *dl;
	CK_FUNCTION_LIST *f;
	bool initialized;
	P11KitUri *match;           /* backend_token as a URI, or NULL ... */
	char *match_label;          /* ... then this plain label */
	char *pin;                  /* our copy, for re-login after the token returns */
	size_t pinlen;
	unsigned nsessions;
	char desc[256];

	pthread_mutex_t lock;       /* guards the fields below */
	pthread_cond_t cond;        /* a session freed, presence changed, nbusy fell */
	bool present;
	bool ever_connected;
	bool pin_dead;              /* a login failed: never try that PIN again */
	unsigned gen;               /* bumped whenever the token goes away */
	CK_SLOT_ID slot;
	CK_SESSION_HANDLE anchor;   /* holds the login; used for key lookups */
	CK_SESSION_HANDLE *free_s;  /* idle pool sessions */
	size_t nfree;
	size_t nopen;               /* pool sessions of this generation, idle or busy */
	size_t nbusy;               /* sessions (any generation) handed out */
	int64_t last_fail_ns;       /* last failed reconnect, for the back-off */

	pthread_mutex_t connect_lock;   /* one (re)connect at a time */
	pthread_mutex_t lookup_lock;    /* one find operation on the anchor at a time */

	/* Binding (token.h), set at the first login, read under connect_lock. */
	bool bound;
	char bound_serial[20];
	uint8_t bound_certs[32];
	unsigned bound_ncerts;
	bool is_pcsc;

	/* Under lock: */
	struct gw_seal_key **known; /* public part of every key found, by uri */
	size_t nknown;
	char reason[256];           /* why not present; "" when present */
	char slot_name[72];         /* slot description at the last login */
	bool refused;               /* the token there now was refused (binding) */
	char last_err[512];         /* last reconnect error logged, to log changes only */
	gw_token_event_fn hook;
	void *hook_arg;
};

static CK_RV find_objects(struct gw_token *tok, CK_SESSION_HANDLE s, CK_ATTRIBUTE *tmpl, CK_ULONG n,
                          CK_OBJECT_HANDLE *found, CK_ULONG max, CK_ULONG *count);
static CK_RV read_attr(struct gw_token *tok, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o,
                       CK_ATTRIBUTE_TYPE type, size_t max, struct gw_bytes *out);
static void bytes_free(struct gw_bytes *b);
static void refind_known(struct gw_token *tok);


static const char *
rvstr(CK_RV rv)
{
	static __thread char buf[160];
	const char *s = p11_kit_strerror(rv);

	snprintf(buf, sizeof(buf), "0x%lx %s", (unsigned long)rv, s ? s : "");
	return buf;
}

static int64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* CK_UTF8CHAR label[32] etc. are blank padded, not NUL terminated. */
static void
padded_to_str(const CK_UTF8CHAR *p, size_t n, char *out, size_t outlen)
{
	while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\0'))
		n--;
	if (n >= outlen)
		n = outlen - 1;
	memcpy(out, p, n);
	out[n] = '\0';
}

/* The errors after which a session (or the whole login) is gone. */
static bool
rv_token_gone(CK_RV rv)
{
	return rv == CKR_SESSION_HANDLE_INVALID || rv == CKR_SESSION_CLOSED ||
	       rv == CKR_DEVICE_REMOVED || rv == CKR_TOKEN_NOT_PRESENT ||
	       rv == CKR_TOKEN_NOT_RECOGNIZED || rv == CKR_SLOT_ID_INVALID ||
	       rv == CKR_USER_NOT_LOGGED_IN || rv == CKR_CRYPTOKI_NOT_INITIALIZED;
}

static bool
rv_pin_fatal(CK_RV rv)
{
	return rv == CKR_PIN_INCORRECT || rv == CKR_PIN_LOCKED ||
	       rv == CKR_PIN_EXPIRED || rv == CKR_PIN_INVALID ||
	       rv == CKR_PIN_LEN_RANGE;
}

int
gw_token_check_pin_flags(CK_FLAGS flags, char *err, size_t errlen)
{
	if (flags & CKF_USER_PIN_LOCKED) {
		sg_seterr(err, errlen, "backend token user PIN is locked; unblock it with the SO PIN");
		return -1;
	}
	/* One more wrong PIN would lock the seal token for the whole company:
	 * a person must look at it, not a daemon in a restart loop. */
	if (flags & CKF_USER_PIN_FINAL_TRY) {
		sg_seterr(err, errlen, "backend token reports one PIN try left (CKF_USER_PIN_FINAL_TRY); "
		       "refusing to log in; check the PIN file and log in once by hand");
		return -1;
	}
	if (flags & CKF_USER_PIN_COUNT_LOW)
		gw_log_warn("backend token reports a wrong PIN was entered before (CKF_USER_PIN_COUNT_LOW)");
	return 0;
}

/* After a refused PIN (or a refusal to try it) no login is attempted again
 * until the gateway restarts: a loop would lock the company's seal token. */
static void
mark_pin_dead(struct gw_token *tok)
{
	pthread_mutex_lock(&tok->lock);
	tok->pin_dead = true;
	pthread_mutex_unlock(&tok->lock);
}

/* ---- token selection ---- */

static bool
token_matches(struct gw_token *tok, const CK_SLOT_INFO *si, const CK_TOKEN_INFO *ti)
{
	char label[sizeof(ti->label) + 1];

	if (tok->match)
		return p11_kit_uri_match_slot_info(tok->match, si) == 1 &&
		       p11_kit_uri_match_token_info(tok->match, ti) == 1;
	padded_to_str(ti->label, sizeof(ti->label), label, sizeof(label));
	return strcmp(label, tok->match_label) == 0;
}

/* Finds the one slot whose token matches backend_token. */
static CK_RV
find_slot(struct gw_token *tok, const char *what, CK_SLOT_ID *slot, CK_TOKEN_INFO *out,
          CK_SLOT_INFO *siout, char *err, size_t errlen)
{
	CK_SLOT_ID *slots = NULL;
	CK_ULONG n = 0, i, nmatch = 0;
	CK_RV rv = CKR_GENERAL_ERROR;
	char seen[512] = "", label[40], serial[20];
	size_t used = 0;

	for (int attempt = 0; attempt < 3; attempt++) {
		rv = tok->f->C_GetSlotList(CK_TRUE, NULL, &n);
		if (rv != CKR_OK)
			break;
		if (n > SLOTS_MAX) {
			rv = CKR_GENERAL_ERROR;
			sg_seterr(err, errlen, "backend module reports %lu slots", (unsigned long)n);
			goto out;
		}
		free(slots);
		slots = calloc(n ? n : 1, sizeof(*slots));
		if (!slots) {
			rv = CKR_HOST_MEMORY;
			break;
		}
		rv = tok->f->C_GetSlotList(CK_TRUE, slots, &n);
		if (rv != CKR_BUFFER_TOO_SMALL)   /* a reader appeared: ask again */
			break;
	}
	if (rv != CKR_OK) {
		sg_seterr(err, errlen, "C_GetSlotList: %s", rvstr(rv));
		goto out;
	}
	for (i = 0; i < n; i++) {
		CK_SLOT_INFO si;
		CK_TOKEN_INFO ti;

		if (tok->f->C_GetSlotInfo(slots[i], &si) != CKR_OK ||
		    tok->f->C_GetTokenInfo(slots[i], &ti) != CKR_OK)
			continue;   /* pulled between the two calls */
		padded_to_str(ti.label, sizeof(ti.label), label, sizeof(label));
		padded_to_str(ti.serialNumber, sizeof(ti.serialNumber), serial, sizeof(serial));
		if (used < sizeof(seen)) {
			int k = snprintf(seen + used, sizeof(seen) - used, "%s'%s' (serial %s)",
			                 used ? ", " : "", label, serial);
			if (k > 0)
				used += (size_t)k;
		}
		if (!token_matches(tok, &si, &ti))
			continue;
		if (nmatch++ == 0) {
			*slot = slots[i];
			*out = ti;
			*siout = si;
		}
	}
	if (nmatch == 0) {
		rv = CKR_TOKEN_NOT_PRESENT;
		sg_seterr(err, errlen, "no backend token matches %s (found: %s)", what,
		       used ? seen : "no token at all");
	} else if (nmatch > 1) {
		rv = CKR_GENERAL_ERROR;
		sg_seterr(err, errlen, "%lu backend tokens match %s (found: %s); name one, e.g. with serial=",
		       (unsigned long)nmatch, what, seen);
	} else {
		rv = CKR_OK;
	}
out:
	free(slots);
	return rv;
}

/* ---- binding: which token this is ---- */

static int
hash_cmp(const void *a, const void *b)
{
	return memcmp(a, b, 32);
}

/* SHA-256 over the sorted SHA-256 hashes of the DER of every certificate
 * the session sees: the same set of certificates gives the same value in
 * whatever order the token lists them. */
static CK_RV
cert_fingerprint(struct gw_token *tok, CK_SESSION_HANDLE s, uint8_t out[32], unsigned *ncerts,
                 char *err, size_t errlen)
{
	CK_OBJECT_CLASS cls = CKO_CERTIFICATE;
	CK_ATTRIBUTE t[] = { { CKA_CLASS, &cls, sizeof(cls) } };
	CK_OBJECT_HANDLE h[BIND_CERTS_MAX];
	uint8_t (*hs)[32] = NULL;
	struct gw_bytes der = { 0 };
	CK_ULONG n = 0, i;
	CK_RV rv;

	rv = find_objects(tok, s, t, 1, h, BIND_CERTS_MAX, &n);
	if (rv != CKR_OK) {
		sg_seterr(err, errlen, "listing the token's certificates: %s", rvstr(rv));
		return rv;
	}
	hs = calloc(n ? n : 1, sizeof(*hs));
	if (!hs) {
		sg_seterr(err, errlen, "out of memory");
		return CKR_HOST_MEMORY;
	}
	for (i = 0; i < n; i++) {
		rv = read_attr(tok, s, h[i], CKA_VALUE, CERT_MAX, &der);
		if (rv != CKR_OK) {
			sg_seterr(err, errlen, "reading a certificate of the token: %s", rvstr(rv));
			goto out;
		}
		if (!EVP_Digest(der.p, der.len, hs[i], NULL, EVP_sha256(), NULL)) {
			rv = CKR_GENERAL_ERROR;
			sg_seterr(err, errlen, "SHA-256 failed");
			goto out;
		}
		bytes_free(&der);
	}
	qsort(hs, n, sizeof(*hs), hash_cmp);
	if (!EVP_Digest(hs, n * sizeof(*hs), out, NULL, EVP_sha256(), NULL)) {
		rv = CKR_GENERAL_ERROR;
		sg_seterr(err, errlen, "SHA-256 failed");
		goto out;
	}
	*ncerts = (unsigned)n;
	rv = CKR_OK;
out:
	bytes_free(&der);
	free(hs);
	return rv;
}

/* First login: remember the token. Later: refuse another one, before any
 * PIN goes to it. CKR_TOKEN_NOT_RECOGNIZED = another token. */
static CK_RV
check_binding(struct gw_token *tok, CK_SESSION_HANDLE s, const char *serial,
              char *err, size_t errlen)
{
	uint8_t fp[32];
	unsigned n = 0;
	CK_RV rv;

	rv = cert_fingerprint(tok, s, fp, &n, err, errlen);
	if (rv != CKR_OK)
		return rv;
	if (!tok->bound) {
		pthread_mutex_lock(&tok->lock);
		snprintf(tok->bound_serial, sizeof(tok->bound_serial), "%s", serial);
		memcpy(tok->bound_certs, fp, sizeof(fp));
		tok->bound_ncerts = n;
		tok->bound = true;
		pthread_mutex_unlock(&tok->lock);
		return CKR_OK;
	}
	if (strcmp(serial, tok->bound_serial) != 0) {
		sg_seterr(err, errlen, "a different token is there (serial %s; the seals' token is "
		       "serial %s): refused", serial, tok->bound_serial);
		return CKR_TOKEN_NOT_RECOGNIZED;
	}
	if (n != tok->bound_ncerts || CRYPTO_memcmp(fp, tok->bound_certs, sizeof(fp)) != 0) {
		sg_seterr(err, errlen, "the token has serial %s but not the certificates the seals' "
		       "token had when it was bound (%u now, %u then): refused", serial, n,
		       tok->bound_ncerts);
		return CKR_TOKEN_NOT_RECOGNIZED;
	}
	return CKR_OK;
}

/* ---- connecting: find the token, check it is ours and the PIN flags, log in, open the pool ---- */

/* Called with connect_lock held and the token absent (no session of an
 * older generation in use). */
static CK_RV
token_connect(struct gw_token *tok, const char *what, char *err, size_t errlen)
{
	CK_RV rv;
	CK_SLOT_ID slot = 0;
	CK_TOKEN_INFO ti;
	CK_SLOT_INFO si;
	CK_SESSION_HANDLE anchor = CK_INVALID_HANDLE;
	CK_SESSION_HANDLE *sess = NULL;
	unsigned i, nopen = 0;
	char label[40], model[20], manuf[40], serial[20], sname[72];

	rv = find_slot(tok, what, &slot, &ti, &si, err, errlen);
	if (rv != CKR_OK)
		goto out;
	padded_to_str(ti.serialNumber, sizeof(ti.serialNumber), serial, sizeof(serial));
	/* Read-only sessions: the gateway only signs and reads. */
	rv = tok->f->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &anchor);
	if (rv != CKR_OK) {
		sg_seterr(err, errlen, "C_OpenSession: %s", rvstr(rv));
		goto out;
	}
	rv = check_binding(tok, anchor, serial, err, errlen);
	if (rv != CKR_OK)
		goto out;
	if (gw_token_check_pin_flags(ti.flags, err, errlen) != 0) {
		rv = (ti.flags & CKF_USER_PIN_LOCKED) ? CKR_PIN_LOCKED : CKR_PIN_INCORRECT;
		mark_pin_dead(tok);
		goto out;
	}
	if (ti.flags & CKF_LOGIN_REQUIRED) {
		bool protected_path = (ti.flags & CKF_PROTECTED_AUTHENTICATION_PATH) && !tok->pin;

		if (!tok->pin && !protected_path) {
			rv = CKR_PIN_INCORRECT;
			sg_seterr(err, errlen, "backend token needs a PIN and none was given");
			goto out;
		}
		/* Exactly one attempt: login state is per application, so this one
		 * login covers every pool session; a failure is never retried. */
		rv = tok->f->C_Login(anchor, CKU_USER, protected_path ? NULL : (CK_UTF8CHAR *)tok->pin,
		                     protected_path ? 0 : tok->pinlen);
		if (rv == CKR_USER_ALREADY_LOGGED_IN)
			rv = CKR_OK;
		if (rv != CKR_OK) {
			/* Any refusal other than the token vanishing may have cost a
			 * try (card emulations answer a wrong PIN with
			 * CKR_GENERAL_ERROR): never try this PIN again. */
			bool dead = rv_pin_fatal(rv) || !rv_token_gone(rv);

			if (dead)
				mark_pin_dead(tok);
			sg_seterr(err, errlen, "C_Login on the backend token: %s%s", rvstr(rv),
			       dead ? " (will not retry; fix the PIN file and restart)" : "");
			goto out;
		}
	}
	sess = calloc(tok->nsessions, sizeof(*sess));
	if (!sess) {
		rv = CKR_HOST_MEMORY;
		sg_seterr(err, errlen, "out of memory");
		goto out;
	}
	for (i = 0; i < tok->nsessions; i++) {
		rv = tok->f->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &sess[i]);
		if (rv != CKR_OK) {
			sg_seterr(err, errlen, "C_OpenSession (pool %u of %u): %s", i + 1,
			       tok->nsessions, rvstr(rv));
			goto out;
		}
		nopen++;
	}

	padded_to_str(ti.label, sizeof(ti.label), label, sizeof(label));
	padded_to_str(ti.model, sizeof(ti.model), model, sizeof(model));
	padded_to_str(ti.manufacturerID, sizeof(ti.manufacturerID), manuf, sizeof(manuf));
	padded_to_str(si.slotDescription, sizeof(si.slotDescription), sname, sizeof(sname));

	pthread_mutex_lock(&tok->lock);
	if (!tok->ever_connected)
		snprintf(tok->desc, sizeof(tok->desc), "%s %s slot 0x%lx, label %s, serial %s",
		         manuf, model, (unsigned long)slot, label, serial);
	tok->slot = slot;
	tok->anchor = anchor;
	memcpy(tok->free_s, sess, nopen * sizeof(*sess));
	tok->nfree = nopen;
	tok->nopen = nopen;
	tok->present = true;
	tok->ever_connected = true;
	tok->refused = false;
	tok->reason[0] = '\0';
	tok->last_err[0] = '\0';
	snprintf(tok->slot_name, sizeof(tok->slot_name), "%s", sname);
	pthread_cond_broadcast(&tok->cond);
	pthread_mutex_unlock(&tok->lock);
	gw_log_info("backend token '%s' (serial %s) logged in, %u pool sessions", label, serial, nopen);
	anchor = CK_INVALID_HANDLE;
	nopen = 0;
	rv = CKR_OK;
out:
	for (i = 0; i < nopen; i++)
		tok->f->C_CloseSession(sess[i]);
	/* Closing the anchor also ends the login (no session left open). */
	if (anchor != CK_INVALID_HANDLE)
		tok->f->C_CloseSession(anchor);
	free(sess);
	return rv;
}

static void
fire(struct gw_token *tok, enum gw_token_event ev, const char *detail)
{
	gw_token_event_fn fn;
	void *arg;

	pthread_mutex_lock(&tok->lock);
	fn = tok->hook;
	arg = tok->hook_arg;
	pthread_mutex_unlock(&tok->lock);
	if (fn)
		fn(arg, ev, detail);
}

void
gw_token_lost(struct gw_token *tok, const char *why)
{
	bool changed = false;
	char detail[256];

	pthread_mutex_lock(&tok->lock);
	if (tok->present) {
		tok->present = false;
		tok->gen++;
		/* Idle handles of the old generation are abandoned: reconnect
		 * closes them all with C_CloseAllSessions. */
		tok->nfree = 0;
		tok->nopen = 0;
		snprintf(tok->reason, sizeof(tok->reason), "%s", why);
		snprintf(detail, sizeof(detail), "%s", why);
		changed = true;
		gw_log_warn("backend token went away (%s); signing stops until it is back", why);
		pthread_cond_broadcast(&tok->cond);
	}
	pthread_mutex_unlock(&tok->lock);
	if (changed)
		fire(tok, GW_TOKEN_REMOVED, detail);
}

/* A token never seen in this run, behind a module that is not OpenSC:
 * many modules (SoftHSM2, some HSM clients) list tokens only at
 * C_Initialize, so one that arrived since the start is seen only after the
 * module is initialized again. Called from reconnect with connect_lock
 * held and no session of this module open (never connected, nbusy 0), so
 * no other thread is inside the module. */
static void
module_reinit(struct gw_token *tok)
{
	CK_C_INITIALIZE_ARGS init = { .flags = CKF_OS_LOCKING_OK };

	if (tok->initialized)
		tok->f->C_Finalize(NULL);
	tok->initialized = tok->f->C_Initialize(&init) == CKR_OK;
}

CK_RV
gw_token_reconnect(struct gw_token *tok)
{
	CK_RV rv = CKR_TOKEN_NOT_PRESENT;
	char err[512] = "";
	CK_SLOT_ID old_slot;
	int64_t now;
	bool log_it, first_refusal = false, ever;

	/* Whoever holds connect_lock is already reconnecting: the rest get
	 * "not present" at once rather than queueing behind it. */
	if (pthread_mutex_trylock(&tok->connect_lock) != 0)
		return CKR_TOKEN_NOT_PRESENT;
	pthread_mutex_lock(&tok->lock);
	if (tok->present) {
		pthread_mutex_unlock(&tok->lock);
		rv = CKR_OK;
		goto out;
	}
	if (tok->pin_dead) {
		pthread_mutex_unlock(&tok->lock);
		rv = CKR_PIN_INCORRECT;
		goto out;
	}
	now = now_ns();
	if (tok->last_fail_ns && now - tok->last_fail_ns < RECONNECT_GAP_NS) {
		pthread_mutex_unlock(&tok->lock);
		goto out;
	}
	/* No handle of the old generation may still be in use when new
	 * sessions open: a reused handle number would mix two signers. */
	while (tok->nbusy > 0)
		pthread_cond_wait(&tok->cond, &tok->lock);
	old_slot = tok->slot;
	ever = tok->ever_connected;
	pthread_mutex_unlock(&tok->lock);

	if (ever)
		tok->f->C_CloseAllSessions(old_slot);
	else if (!tok->is_pcsc)
		module_reinit(tok);
	rv = token_connect(tok, "backend_token", err, sizeof(err));
	pthread_mutex_lock(&tok->lock);
	tok->last_fail_ns = rv == CKR_OK ? 0 : now_ns();
	log_it = rv != CKR_OK && strcmp(err, tok->last_err) != 0;
	if (rv != CKR_OK) {
		snprintf(tok->last_err, sizeof(tok->last_err), "%s", err);
		/* "not present" keeps the more telling reason it went away */
		if (rv != CKR_TOKEN_NOT_PRESENT || tok->reason[0] == '\0')
			snprintf(tok->reason, sizeof(tok->reason), "%.*s", (int)sizeof(tok->reason) - 1, err);
	}
	if (rv == CKR_TOKEN_NOT_RECOGNIZED) {
		first_refusal = !tok->refused;
		tok->refused = true;
	}
	pthread_mutex_unlock(&tok->lock);
	if (log_it)
		gw_log_warn("backend token reconnect: %s", err);
	if (rv == CKR_OK) {
		refind_known(tok);
		fire(tok, GW_TOKEN_INSERTED, gw_token_describe(tok));
	}
	else if (first_refusal)
		fire(tok, GW_TOKEN_REFUSED, err);
out:
	pthread_mutex_unlock(&tok->connect_lock);
	return rv;
}

void
gw_token_set_event_hook(struct gw_token *tok, gw_token_event_fn fn, void *arg)
{
	pthread_mutex_lock(&tok->lock);
	tok->hook = fn;
	tok->hook_arg = arg;
	pthread_mutex_unlock(&tok->lock);
}

void
gw_token_reason(struct gw_token *tok, char *buf, size_t len)
{
	if (!buf || len == 0)
		return;
	pthread_mutex_lock(&tok->lock);
	if (tok->present)
		buf[0] = '\0';
	else if (tok->pin_dead && tok->reason[0] == '\0')
		snprintf(buf, len, "the backend token PIN was refused; not retried until restart");
	else
		snprintf(buf, len, "%s", tok->reason[0] ? tok->reason : "backend token not present");
	pthread_mutex_unlock(&tok->lock);
}

bool
gw_token_is_pcsc(struct gw_token *tok)
{
	return tok->is_pcsc;
}

void
gw_token_slot_name(struct gw_token *tok, char *buf, size_t len)
{
	if (!buf || len == 0)
		return;
	pthread_mutex_lock(&tok->lock);
	snprintf(buf, len, "%s", tok->slot_name);
	pthread_mutex_unlock(&tok->lock);
}

void
gw_token_card_changed(struct gw_token *tok)
{
	pthread_mutex_lock(&tok->lock);
	tok->refused = false;
	/* A new card deserves a look now, not after the back-off. */
	tok->last_fail_ns = 0;
	pthread_mutex_unlock(&tok->lock);
}

void
gw_token_bound_serial(struct gw_token *tok, char *buf, size_t len)
{
	if (!buf || len == 0)
		return;
	pthread_mutex_lock(&tok->lock);
	snprintf(buf, len, "%s", tok->bound ? tok->bound_serial : "");
	pthread_mutex_unlock(&tok->lock);
}

/* ---- the pool ---- */

static CK_RV
pool_take(struct gw_token *tok, CK_SESSION_HANDLE *h, unsigned *gen)
{
	CK_RV rv;
	CK_SLOT_ID slot;

	pthread_mutex_lock(&tok->lock);
	for (;;) {
		if (!tok->present) {
			pthread_mutex_unlock(&tok->lock);
			return CKR_TOKEN_NOT_PRESENT;
		}
		if (tok->nfree > 0) {
			*h = tok->free_s[--tok->nfree];
			*gen = tok->gen;
			tok->nbusy++;
			pthread_mutex_unlock(&tok->lock);
			return CKR_OK;
		}
		if (tok->nopen < tok->nsessions)
			break;  /* a session was dropped earlier: open its replacement */
		pthread_cond_wait(&tok->cond, &tok->lock);
	}
	tok->nopen++;
	tok->nbusy++;
	*gen = tok->gen;
	slot = tok->slot;
	pthread_mutex_unlock(&tok->lock);

	rv = tok->f->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, h);
	if (rv != CKR_OK) {
		pthread_mutex_lock(&tok->lock);
		tok->nbusy--;
		if (*gen == tok->gen)
			tok->nopen--;
		pthread_cond_broadcast(&tok->cond);
		pthread_mutex_unlock(&tok->lock);
		if (rv_token_gone(rv))
			gw_token_lost(tok, rvstr(rv));
	}
	return rv;
}

/* Returns a session whose state is clean. */
static void
pool_put(struct gw_token *tok, CK_SESSION_HANDLE h, unsigned gen)
{
	pthread_mutex_lock(&tok->lock);
	tok->nbusy--;
	if (gen == tok->gen && tok->present && tok->nfree < tok->nsessions)
		tok->free_s[tok->nfree++] = h;
	pthread_cond_broadcast(&tok->cond);
	pthread_mutex_unlock(&tok->lock);
}

/* Closes a session that may still have an operation active; the next
 * pool_take opens a replacement. While we hold nbusy no reconnect can open
 * new sessions, so h is either still ours or already dead. */
static void
pool_drop(struct gw_token *tok, CK_SESSION_HANDLE h, unsigned gen)
{
	tok->f->C_CloseSession(h);
	pthread_mutex_lock(&tok->lock);
	tok->nbusy--;
	if (gen == tok->gen && tok->nopen > 0)
		tok->nopen--;
	pthread_cond_broadcast(&tok->cond);
	pthread_mutex_unlock(&tok->lock);
}

/* ---- open / close ---- */

int
gw_token_open(const struct gw_config *cfg, const char *pin,
              struct gw_token **out, char *err, size_t errlen)
{
	return gw_token_open_bound(cfg, pin, NULL, false, out, err, errlen);
}

bool
gw_token_get_binding(struct gw_token *tok, struct gw_token_binding *out)
{
	bool bound;

	memset(out, 0, sizeof(*out));
	pthread_mutex_lock(&tok->lock);
	bound = tok->bound;
	if (bound) {
		snprintf(out->serial, sizeof(out->serial), "%s", tok->bound_serial);
		memcpy(out->certs, tok->bound_certs, sizeof(out->certs));
		out->ncerts = tok->bound_ncerts;
	}
	pthread_mutex_unlock(&tok->lock);
	return bound;
}

int
gw_token_open_bound(const struct gw_config *cfg, const char *pin,
                    const struct gw_token_binding *prior, bool wait,
                    struct gw_token **out, char *err, size_t errlen)
{
	int rv = -1;
	struct gw_token *tok = NULL;
	CK_C_GetFunctionList getfl;
	CK_C_INITIALIZE_ARGS init = { .flags = CKF_OS_LOCKING_OK };
	CK_INFO info;
	CK_RV crv;
	unsigned n;
	long ncpu;

	*out = NULL;
	if (!cfg || !cfg->backend_module || !cfg->backend_token) {
		sg_seterr(err, errlen, "backend_module and backend_token must be set");
		return -1;
	}
	tok = calloc(1, sizeof(*tok));
	if (!tok) {
		sg_seterr(err, errlen, "out of memory");
		return -1;
	}
	pthread_mutex_init(&tok->lock, NULL);
	pthread_cond_init(&tok->cond, NULL);
	pthread_mutex_init(&tok->connect_lock, NULL);
	pthread_mutex_init(&tok->lookup_lock, NULL);
	tok->anchor = CK_INVALID_HANDLE;
	if (prior != NULL) {
		/* As if this run had logged in once already: the first connect
		 * checks the token against it before sending the PIN. */
		snprintf(tok->bound_serial, sizeof(tok->bound_serial), "%s", prior->serial);
		memcpy(tok->bound_certs, prior->certs, sizeof(tok->bound_certs));
		tok->bound_ncerts = prior->ncerts;
		tok->bound = true;
	}

	n = cfg->backend_sessions;
	if (n == 0) {
		ncpu = sysconf(_SC_NPROCESSORS_ONLN);
		n = ncpu > 0 ? 2u * (unsigned)ncpu : 2u;
	}
	if (n > SESSIONS_MAX)
		n = SESSIONS_MAX;
	tok->nsessions = n;
	tok->free_s = calloc(n, sizeof(*tok->free_s));
	if (!tok->free_s) {
		sg_seterr(err, errlen, "out of memory");
		goto out;
	}

	if (strncmp(cfg->backend_token, "pkcs11:", 7) == 0) {
		CK_ULONG nattrs = 0;
		int r;

		tok->match = p11_kit_uri_new();
		if (!tok->match) {
			sg_seterr(err, errlen, "out of memory");
			goto out;
		}
		r = p11_kit_uri_parse(cfg->backend_token, P11_KIT_URI_FOR_ANY, tok->match);
		if (r != P11_KIT_URI_OK) {
			sg_seterr(err, errlen, "backend_token '%s': %s", cfg->backend_token,
			       p11_kit_uri_message(r));
			goto out;
		}
		if (p11_kit_uri_any_unrecognized(tok->match)) {
			sg_seterr(err, errlen, "backend_token '%s' has attributes this gateway does not know",
			       cfg->backend_token);
			goto out;
		}
		p11_kit_uri_get_attributes(tok->match, &nattrs);
		if (nattrs > 0) {
			sg_seterr(err, errlen, "backend_token '%s' names an object; name the token only",
			       cfg->backend_token);
			goto out;
		}
	} else {
		tok->match_label = strdup(cfg->backend_token);
		if (!tok->match_label) {
			sg_seterr(err, errlen, "out of memory");
			goto out;
		}
	}
	if (pin) {
		tok->pinlen = strlen(pin);
		tok->pin = malloc(tok->pinlen + 1);
		if (!tok->pin) {
			sg_seterr(err, errlen, "out of memory");
			goto out;
		}
		memcpy(tok->pin, pin, tok->pinlen + 1);
	}

	/* RTLD_LOCAL: the backend's symbols must not satisfy anyone else's
	 * (our own module exports the same C_ names). */
	tok->dl = dlopen(cfg->backend_module, RTLD_NOW | RTLD_LOCAL);
	if (!tok->dl) {
		sg_seterr(err, errlen, "cannot load backend module: %s", dlerror());
		goto out;
	}
	getfl = (CK_C_GetFunctionList)dlsym(tok->dl, "C_GetFunctionList");
	if (!getfl) {
		sg_seterr(err, errlen, "%s has no C_GetFunctionList", cfg->backend_module);
		goto out;
	}
	crv = getfl(&tok->f);
	if (crv != CKR_OK || !tok->f) {
		sg_seterr(err, errlen, "C_GetFunctionList: %s", rvstr(crv));
		goto out;
	}
	crv = tok->f->C_Initialize(&init);
	if (crv != CKR_OK) {
		sg_seterr(err, errlen, "C_Initialize: %s%s", rvstr(crv),
		       crv == CKR_CRYPTOKI_ALREADY_INITIALIZED ?
		       " (another user of this module in the gateway process)" : "");
		goto out;
	}
	tok->initialized = true;
	crv = tok->f->C_GetInfo(&info);
	if (crv != CKR_OK) {
		sg_seterr(err, errlen, "C_GetInfo: %s", rvstr(crv));
		goto out;
	}
	{
		/* OpenSC reaches its cards through pcsc-lite: those come and go. */
		const char *base = strrchr(cfg->backend_module, '/');
		char manuf[40];

		padded_to_str(info.manufacturerID, sizeof(info.manufacturerID), manuf, sizeof(manuf));
		base = base ? base + 1 : cfg->backend_module;
		tok->is_pcsc = strncmp(manuf, "OpenSC", 6) == 0 || strstr(base, "opensc") != NULL;
	}
	if (tok->match) {
		if (p11_kit_uri_match_module_info(tok->match, &info) != 1) {
			sg_seterr(err, errlen, "backend module %s does not match backend_token '%s'",
			       cfg->backend_module, cfg->backend_token);
			goto out;
		}
	}

	pthread_mutex_lock(&tok->connect_lock);
	crv = token_connect(tok, cfg->backend_token, err, errlen);
	pthread_mutex_unlock(&tok->connect_lock);
	if (crv == CKR_TOKEN_NOT_PRESENT && prior != NULL && wait) {
		/* Not there yet: the gateway starts without it, and the first
		 * reconnect checks the token that comes against prior before
		 * it sends the PIN. */
		snprintf(tok->desc, sizeof(tok->desc), "%s (serial %s, not present since the start)",
		         cfg->backend_token, prior->serial);
		snprintf(tok->reason, sizeof(tok->reason), "not present since the gateway started: %s",
		         err);
		snprintf(tok->last_err, sizeof(tok->last_err), "%s", err);
		tok->last_fail_ns = now_ns();
		*out = tok;
		return 1;
	}
	if (crv != CKR_OK) {
		if (crv == CKR_TOKEN_NOT_RECOGNIZED)
			rv = -2;
		goto out;
	}

	*out = tok;
	tok = NULL;
	rv = 0;
out:
	gw_token_close(&tok);
	return rv;
}

void
gw_token_close(struct gw_token **tokp)
{
	struct gw_token *tok = tokp ? *tokp : NULL;

	if (!tok)
		return;
	if (tok->initialized) {
		if (tok->ever_connected)
			tok->f->C_CloseAllSessions(tok->slot);
		tok->f->C_Finalize(NULL);
	}
	if (tok->dl)
		dlclose(tok->dl);
	if (tok->match)
		p11_kit_uri_free(tok->match);
	free(tok->match_label);
	if (tok->pin) {
		OPENSSL_cleanse(tok->pin, tok->pinlen);
		free(tok->pin);
	}
	free(tok->free_s);
	for (size_t i = 0; i < tok->nknown; i++)
		gw_seal_key_free(&tok->known[i]);
	free(tok->known);
	pthread_mutex_destroy(&tok->lock);
	pthread_cond_destroy(&tok->cond);
	pthread_mutex_destroy(&tok->connect_lock);
	pthread_mutex_destroy(&tok->lookup_lock);
	free(tok);
	*tokp = NULL;
}

bool
gw_token_present(struct gw_token *tok)
{
	bool p;

	pthread_mutex_lock(&tok->lock);
	p = tok->present;
	pthread_mutex_unlock(&tok->lock);
	return p;
}

const char *
gw_token_describe(struct gw_token *tok)
{
	return tok->desc;
}

/* ---- object lookup ---- */

/* Reads one attribute into a fresh buffer of at most max bytes.
 * CKR_ATTRIBUTE_TYPE_INVALID when the token has no value for it,
 * CKR_DATA_LEN_RANGE when it is longer than max. */
static CK_RV
read_attr(struct gw_token *tok, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o,
          CK_ATTRIBUTE_TYPE type, size_t max, struct gw_bytes *out)
{
	CK_ATTRIBUTE a = { type, NULL, 0 };
	CK_ULONG cap;
	CK_RV rv;

	out->p = NULL;
	out->len = 0;
	rv = tok->f->C_GetAttributeValue(s, o, &a, 1);
	if (rv != CKR_OK)
		return rv;
	if (a.ulValueLen == CK_UNAVAILABLE_INFORMATION)
		return CKR_ATTRIBUTE_TYPE_INVALID;
	if (a.ulValueLen > max)
		return CKR_DATA_LEN_RANGE;
	if (a.ulValueLen == 0)
		return CKR_OK;
	cap = a.ulValueLen;
	a.pValue = malloc(cap);
	if (!a.pValue)
		return CKR_HOST_MEMORY;
	rv = tok->f->C_GetAttributeValue(s, o, &a, 1);
	if (rv != CKR_OK || a.ulValueLen > cap) {
		free(a.pValue);
		return rv != CKR_OK ? rv : CKR_GENERAL_ERROR;
	}
	out->p = a.pValue;
	out->len = a.ulValueLen;
	return CKR_OK;
}

static CK_RV
read_ulong(struct gw_token *tok, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o,
           CK_ATTRIBUTE_TYPE type, CK_ULONG *v)
{
	CK_ATTRIBUTE a = { type, v, sizeof(*v) };
	CK_RV rv = tok->f->C_GetAttributeValue(s, o, &a, 1);

	if (rv == CKR_OK && a.ulValueLen != sizeof(*v))
		rv = CKR_ATTRIBUTE_VALUE_INVALID;
	return rv;
}

static CK_RV
find_objects(struct gw_token *tok, CK_SESSION_HANDLE s, CK_ATTRIBUTE *tmpl, CK_ULONG n,
             CK_OBJECT_HANDLE *found, CK_ULONG max, CK_ULONG *count)
{
	CK_RV rv, rv2;

	*count = 0;
	rv = tok->f->C_FindObjectsInit(s, tmpl, n);
	if (rv != CKR_OK)
		return rv;
	rv = tok->f->C_FindObjects(s, found, max, count);
	rv2 = tok->f->C_FindObjectsFinal(s);
	if (rv == CKR_OK && *count > max)
		rv = CKR_GENERAL_ERROR;
	return rv != CKR_OK ? rv : rv2;
}

static void
bytes_free(struct gw_bytes *b)
{
	free(b->p);
	b->p = NULL;
	b->len = 0;
}

static int
bytes_dup(struct gw_bytes *b, const uint8_t *p, size_t len)
{
	b->p = NULL;
	b->len = 0;
	if (len == 0)
		return 0;
	b->p = malloc(len);
	if (!b->p)
		return -1;
	memcpy(b->p, p, len);
	b->len = len;
	return 0;
}

void
gw_seal_key_free(struct gw_seal_key **keyp)
{
	struct gw_seal_key *key = keyp ? *keyp : NULL;

	if (!key)
		return;
	free(key->uri);
	free(key->label);
	bytes_free(&key->id);
	bytes_free(&key->cert);
	bytes_free(&key->subject);
	bytes_free(&key->issuer);
	bytes_free(&key->serial);
	bytes_free(&key->modulus);
	bytes_free(&key->public_exponent);
	bytes_free(&key->ec_params);
	bytes_free(&key->ec_point);
	free(key);
	*keyp = NULL;
}

/* ---- known keys (token.h) ---- */

/* A copy of a key's public part, without its handle: through the store's
 * codec, so what is remembered is exactly what a later start reads back. */
static int
key_copy(const struct gw_seal_key *src, struct gw_seal_key **out)
{
	size_t len = 0;
	uint8_t *blob = gw_seal_key_encode(src, &len);
	int rv;

	*out = NULL;
	if (blob == NULL)
		return -1;
	rv = gw_seal_key_decode(src->uri, blob, len, out, NULL, 0);
	free(blob);
	return rv;
}

int
gw_token_know_key(struct gw_token *tok, const struct gw_seal_key *key)
{
	struct gw_seal_key *k, **grown;
	size_t i;

	if (!key || !key->uri || key_copy(key, &k) != 0)
		return -1;
	pthread_mutex_lock(&tok->lock);
	for (i = 0; i < tok->nknown; i++)
		if (strcmp(tok->known[i]->uri, key->uri) == 0)
			break;
	if (i < tok->nknown) {
		gw_seal_key_free(&tok->known[i]);
	} else {
		grown = realloc(tok->known, (tok->nknown + 1) * sizeof(*grown));
		if (!grown) {
			pthread_mutex_unlock(&tok->lock);
			gw_seal_key_free(&k);
			return -1;
		}
		tok->known = grown;
		tok->nknown++;
	}
	tok->known[i] = k;
	pthread_mutex_unlock(&tok->lock);
	return 0;
}

size_t
gw_token_known_keys(struct gw_token *tok, void (*fn)(void *arg, const struct gw_seal_key *key),
                    void *arg)
{
	size_t n;

	pthread_mutex_lock(&tok->lock);
	n = tok->nknown;
	for (size_t i = 0; fn && i < n; i++)
		fn(arg, tok->known[i]);
	pthread_mutex_unlock(&tok->lock);
	return n;
}

/* A copy of the known key for uri, or NULL. */
static struct gw_seal_key *
known_key(struct gw_token *tok, const char *uri)
{
	struct gw_seal_key *k = NULL;

	pthread_mutex_lock(&tok->lock);
	for (size_t i = 0; i < tok->nknown; i++)
		if (strcmp(tok->known[i]->uri, uri) == 0) {
			(void)key_copy(tok->known[i], &k);
			break;
		}
	pthread_mutex_unlock(&tok->lock);
	return k;
}

/* "SGK1", type (u8), always_auth (u8), 0 (u16), bits (u32), then ten
 * byte strings as length (u32) and bytes: id, label, certificate, subject,
 * issuer, serial, modulus, public exponent, EC params, EC point. Big-endian. */
#define KEYBLOB_MAGIC "SGK1"
#define KEYBLOB_FIELDS 10

static void
keyblob_fields(const struct gw_seal_key *k, struct gw_bytes f[KEYBLOB_FIELDS])
{
	f[0] = k->id;
	f[1] = (struct gw_bytes){ (uint8_t *)k->label, k->label ? strlen(k->label) : 0 };
	f[2] = k->cert;
	f[3] = k->subject;
	f[4] = k->issuer;
	f[5] = k->serial;
	f[6] = k->modulus;
	f[7] = k->public_exponent;
	f[8] = k->ec_params;
	f[9] = k->ec_point;
}

static void
put_u32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static uint32_t
get_u32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

uint8_t *
gw_seal_key_encode(const struct gw_seal_key *key, size_t *len)
{
	struct gw_bytes f[KEYBLOB_FIELDS];
	size_t n = 12, off;
	uint8_t *b;

	keyblob_fields(key, f);
	for (int i = 0; i < KEYBLOB_FIELDS; i++)
		n += 4 + f[i].len;
	b = malloc(n);
	if (!b)
		return NULL;
	memcpy(b, KEYBLOB_MAGIC, 4);
	b[4] = (uint8_t)key->type;
	b[5] = key->always_auth ? 1 : 0;
	b[6] = b[7] = 0;
	put_u32(b + 8, key->bits);
	off = 12;
	for (int i = 0; i < KEYBLOB_FIELDS; i++) {
		put_u32(b + off, (uint32_t)f[i].len);
		if (f[i].len)
			memcpy(b + off + 4, f[i].p, f[i].len);
		off += 4 + f[i].len;
	}
	*len = n;
	return b;
}

int
gw_seal_key_decode(const char *uri, const uint8_t *p, size_t len, struct gw_seal_key **out,
                   char *err, size_t errlen)
{
	struct gw_seal_key *k = NULL;
	struct gw_bytes f[KEYBLOB_FIELDS];
	size_t off = 12;
	const uint8_t *c;
	X509 *x = NULL;

	*out = NULL;
	if (!uri || !p || len < 12 || memcmp(p, KEYBLOB_MAGIC, 4) != 0 ||
	    p[4] < GW_KEY_RSA || p[4] > GW_KEY_ED25519 || p[5] > 1 || p[6] || p[7] ||
	    get_u32(p + 8) == 0 || get_u32(p + 8) > 16384) {
		sg_seterr(err, errlen, "known key %s: not a key record", uri ? uri : "?");
		return -1;
	}
	for (int i = 0; i < KEYBLOB_FIELDS; i++) {
		uint32_t n;

		if (len - off < 4 || (n = get_u32(p + off)) > CERT_MAX || len - off - 4 < n) {
			sg_seterr(err, errlen, "known key %s: record cut short or too long", uri);
			return -1;
		}
		f[i] = (struct gw_bytes){ (uint8_t *)p + off + 4, n };
		off += 4 + n;
	}
	if (off != len || f[0].len == 0 || f[2].len == 0 ||
	    memchr(f[1].p, '\0', f[1].len) != NULL ||
	    (p[4] == GW_KEY_RSA ? f[6].len == 0 || f[7].len == 0 : f[9].len == 0)) {
		sg_seterr(err, errlen, "known key %s: malformed record", uri);
		return -1;
	}
	c = f[2].p;
	x = d2i_X509(NULL, &c, (long)f[2].len);
	if (!x || c != f[2].p + f[2].len) {
		X509_free(x);
		sg_seterr(err, errlen, "known key %s: the certificate does not parse", uri);
		return -1;
	}
	X509_free(x);
	k = calloc(1, sizeof(*k));
	if (!k || !(k->uri = strdup(uri)) || !(k->label = calloc(1, f[1].len + 1)) ||
	    bytes_dup(&k->id, f[0].p, f[0].len) || bytes_dup(&k->cert, f[2].p, f[2].len) ||
	    bytes_dup(&k->subject, f[3].p, f[3].len) || bytes_dup(&k->issuer, f[4].p, f[4].len) ||
	    bytes_dup(&k->serial, f[5].p, f[5].len) || bytes_dup(&k->modulus, f[6].p, f[6].len) ||
	    bytes_dup(&k->public_exponent, f[7].p, f[7].len) ||
	    bytes_dup(&k->ec_params, f[8].p, f[8].len) || bytes_dup(&k->ec_point, f[9].p, f[9].len)) {
		gw_seal_key_free(&k);
		sg_seterr(err, errlen, "out of memory");
		return -1;
	}
	if (f[1].len)
		memcpy(k->label, f[1].p, f[1].len);
	k->type = (enum gw_key_type)p[4];
	k->always_auth = p[5] == 1;
	k->bits = get_u32(p + 8);
	k->priv = CK_INVALID_HANDLE;
	*out = k;
	return 0;
}

/* The public key object with the same CKA_ID, if the token has one. */
static CK_OBJECT_HANDLE
find_pubkey(struct gw_token *tok, CK_SESSION_HANDLE s, const struct gw_bytes *id)
{
	CK_OBJECT_CLASS cls = CKO_PUBLIC_KEY;
	CK_ATTRIBUTE t[] = {
		{ CKA_CLASS, &cls, sizeof(cls) },
		{ CKA_ID, id->p, id->len },
	};
	CK_OBJECT_HANDLE h[2];
	CK_ULONG n = 0;

	if (find_objects(tok, s, t, 2, h, 2, &n) != CKR_OK || n != 1)
		return CK_INVALID_HANDLE;
	return h[0];
}

/* Splits a CKA_EC_POINT into the raw point: the standard says DER OCTET
 * STRING, some tokens give the raw point. want_len 0 = any length. */
static int
point_raw(const struct gw_bytes *pt, size_t want_len, struct gw_bytes *raw)
{
	const unsigned char *p = pt->p;
	ASN1_OCTET_STRING *os = d2i_ASN1_OCTET_STRING(NULL, &p, (long)pt->len);
	int rv = -1;

	if (os && p == pt->p + pt->len &&
	    (want_len == 0 || (size_t)ASN1_STRING_length(os) == want_len)) {
		rv = bytes_dup(raw, ASN1_STRING_get0_data(os), (size_t)ASN1_STRING_length(os));
	} else if (want_len == 0 || pt->len == want_len) {
		rv = bytes_dup(raw, pt->p, pt->len);
	}
	ASN1_OCTET_STRING_free(os);
	return rv;
}

/* The DER OCTET STRING wrapping of a raw point (PKCS#11's CKA_EC_POINT). */
static int
point_wrap(const uint8_t *raw, size_t len, struct gw_bytes *out)
{
	ASN1_OCTET_STRING *os = ASN1_OCTET_STRING_new();
	unsigned char *der = NULL;
	int n, rv = -1;

	if (!os || !ASN1_OCTET_STRING_set(os, raw, (int)len))
		goto out;
	n = i2d_ASN1_OCTET_STRING(os, &der);
	if (n <= 0)
		goto out;
	rv = bytes_dup(out, der, (size_t)n);
out:
	OPENSSL_free(der);
	ASN1_OCTET_STRING_free(os);
	return rv;
}

static int
bn_to_bytes(const BIGNUM *bn, struct gw_bytes *out)
{
	int n = BN_num_bytes(bn);

	out->p = malloc(n > 0 ? (size_t)n : 1);
	if (!out->p)
		return -1;
	out->len = (size_t)BN_bn2bin(bn, out->p);
	return 0;
}

static int
fill_rsa(struct gw_token *tok, CK_SESSION_HANDLE s, struct gw_seal_key *key,
         EVP_PKEY *certkey, char *err, size_t errlen)
{
	BIGNUM *cn = NULL, *ce = NULL, *kn = NULL, *ke = NULL;
	CK_OBJECT_HANDLE pub;
	int rv = -1;

	if (EVP_PKEY_get_base_id(certkey) != EVP_PKEY_RSA) {
		sg_seterr(err, errlen, "the certificate holds no RSA key but the private key is RSA");
		goto out;
	}
	if (!EVP_PKEY_get_bn_param(certkey, OSSL_PKEY_PARAM_RSA_N, &cn) ||
	    !EVP_PKEY_get_bn_param(certkey, OSSL_PKEY_PARAM_RSA_E, &ce)) {
		sg_seterr(err, errlen, "cannot read the certificate's RSA key");
		goto out;
	}
	/* SoftHSM shows the modulus on the private key; others only on the
	 * public key object; the certificate is the last resort. */
	if (read_attr(tok, s, key->priv, CKA_MODULUS, MODULUS_MAX, &key->modulus) != CKR_OK ||
	    key->modulus.len == 0 ||
	    read_attr(tok, s, key->priv, CKA_PUBLIC_EXPONENT, MODULUS_MAX, &key->public_exponent) != CKR_OK ||
	    key->public_exponent.len == 0) {
		bytes_free(&key->modulus);
		bytes_free(&key->public_exponent);
		pub = find_pubkey(tok, s, &key->id);
		if (pub == CK_INVALID_HANDLE ||
		    read_attr(tok, s, pub, CKA_MODULUS, MODULUS_MAX, &key->modulus) != CKR_OK ||
		    key->modulus.len == 0 ||
		    read_attr(tok, s, pub, CKA_PUBLIC_EXPONENT, MODULUS_MAX, &key->public_exponent) != CKR_OK ||
		    key->public_exponent.len == 0) {
			bytes_free(&key->modulus);
			bytes_free(&key->public_exponent);
			if (bn_to_bytes(cn, &key->modulus) || bn_to_bytes(ce, &key->public_exponent)) {
				sg_seterr(err, errlen, "out of memory");
				goto out;
			}
		}
	}
	kn = BN_bin2bn(key->modulus.p, (int)key->modulus.len, NULL);
	ke = BN_bin2bn(key->public_exponent.p, (int)key->public_exponent.len, NULL);
	if (!kn || !ke) {
		sg_seterr(err, errlen, "out of memory");
		goto out;
	}
	if (BN_cmp(kn, cn) != 0 || BN_cmp(ke, ce) != 0) {
		sg_seterr(err, errlen, "the certificate's RSA key does not match the private key");
		goto out;
	}
	key->bits = (unsigned)BN_num_bits(kn);
	rv = 0;
out:
	BN_free(cn);
	BN_free(ce);
	BN_free(kn);
	BN_free(ke);
	return rv;
}

static int
fill_ec(struct gw_token *tok, CK_SESSION_HANDLE s, struct gw_seal_key *key,
        EVP_PKEY *certkey, char *err, size_t errlen)
{
	char gname[80];
	int nid, pnid;
	EC_GROUP *grp = NULL;
	EC_POINT *cp = NULL, *kp = NULL;
	ASN1_OBJECT *oid = NULL;
	uint8_t certpt[POINT_MAX];
	size_t certptlen = 0;
	struct gw_bytes raw = { 0 }, tokpt = { 0 };
	unsigned char *der = NULL;
	const unsigned char *p;
	CK_OBJECT_HANDLE pub;
	int n, rv = -1;

	if (EVP_PKEY_get_base_id(certkey) != EVP_PKEY_EC) {
		sg_seterr(err, errlen, "the certificate holds no EC key but the private key is EC");
		goto out;
	}
	if (!EVP_PKEY_get_utf8_string_param(certkey, OSSL_PKEY_PARAM_GROUP_NAME, gname, sizeof(gname), NULL) ||
	    (nid = OBJ_sn2nid(gname)) == NID_undef ||
	    !(grp = EC_GROUP_new_by_curve_name(nid)) ||
	    !EVP_PKEY_get_octet_string_param(certkey, OSSL_PKEY_PARAM_PUB_KEY, certpt, sizeof(certpt), &certptlen) ||
	    !(cp = EC_POINT_new(grp)) || !EC_POINT_oct2point(grp, cp, certpt, certptlen, NULL)) {
		sg_seterr(err, errlen, "cannot read the certificate's EC key (named curves only)");
		goto out;
	}

	if (read_attr(tok, s, key->priv, CKA_EC_PARAMS, ATTR_MAX, &key->ec_params) != CKR_OK ||
	    key->ec_params.len == 0) {
		bytes_free(&key->ec_params);
		oid = OBJ_nid2obj(nid);
		n = i2d_ASN1_OBJECT(oid, &der);
		oid = NULL;   /* static object from the table */
		if (n <= 0 || bytes_dup(&key->ec_params, der, (size_t)n)) {
			sg_seterr(err, errlen, "out of memory");
			goto out;
		}
	}
	p = key->ec_params.p;
	oid = d2i_ASN1_OBJECT(NULL, &p, (long)key->ec_params.len);
	if (!oid || p != key->ec_params.p + key->ec_params.len ||
	    (pnid = OBJ_obj2nid(oid)) == NID_undef) {
		sg_seterr(err, errlen, "the key's CKA_EC_PARAMS is not a named curve this gateway knows");
		goto out;
	}
	if (pnid != nid) {
		sg_seterr(err, errlen, "the certificate's curve (%s) is not the key's curve (%s)",
		       OBJ_nid2sn(nid), OBJ_nid2sn(pnid));
		goto out;
	}

	pub = find_pubkey(tok, s, &key->id);
	if (pub != CK_INVALID_HANDLE &&
	    read_attr(tok, s, pub, CKA_EC_POINT, POINT_MAX, &tokpt) == CKR_OK && tokpt.len > 0) {
		/* Wrapped or raw, compressed or not: let OpenSSL decide. */
		kp = EC_POINT_new(grp);
		if (!kp) {
			sg_seterr(err, errlen, "out of memory");
			goto out;
		}
		if ((point_raw(&tokpt, 0, &raw) != 0 ||
		     !EC_POINT_oct2point(grp, kp, raw.p, raw.len, NULL)) &&
		    !EC_POINT_oct2point(grp, kp, tokpt.p, tokpt.len, NULL)) {
			sg_seterr(err, errlen, "the public key object's CKA_EC_POINT is not a point on %s",
			       OBJ_nid2sn(nid));
			goto out;
		}
		if (EC_POINT_cmp(grp, cp, kp, NULL) != 0) {
			sg_seterr(err, errlen, "the certificate's EC key does not match the token's public key");
			goto out;
		}
	}
	/* Always hand out the standard form: DER OCTET STRING of the
	 * uncompressed point, as the certificate carries it. */
	if (point_wrap(certpt, certptlen, &key->ec_point)) {
		sg_seterr(err, errlen, "out of memory");
		goto out;
	}
	key->bits = (unsigned)EC_GROUP_get_degree(grp);
	rv = 0;
out:
	OPENSSL_free(der);
	ASN1_OBJECT_free(oid);
	EC_POINT_free(cp);
	EC_POINT_free(kp);
	EC_GROUP_free(grp);
	bytes_free(&raw);
	bytes_free(&tokpt);
	return rv;
}

static int
fill_ed25519(struct gw_token *tok, CK_SESSION_HANDLE s, struct gw_seal_key *key,
             EVP_PKEY *certkey, char *err, size_t errlen)
{
	uint8_t certpt[32];
	size_t certptlen = sizeof(certpt);
	struct gw_bytes raw = { 0 }, tokpt = { 0 };
	CK_OBJECT_HANDLE pub;
	int rv = -1;

	if (EVP_PKEY_get_base_id(certkey) != EVP_PKEY_ED25519) {
		sg_seterr(err, errlen, "the certificate holds no Ed25519 key but the private key is "
		       "CKK_EC_EDWARDS (only Ed25519 is supported)");
		goto out;
	}
	if (!EVP_PKEY_get_raw_public_key(certkey, certpt, &certptlen) || certptlen != 32) {
		sg_seterr(err, errlen, "cannot read the certificate's Ed25519 key");
		goto out;
	}
	if (read_attr(tok, s, key->priv, CKA_EC_PARAMS, ATTR_MAX, &key->ec_params) != CKR_OK ||
	    key->ec_params.len == 0) {
		bytes_free(&key->ec_params);
		if (bytes_dup(&key->ec_params, ed25519_oid_der, sizeof(ed25519_oid_der))) {
			sg_seterr(err, errlen, "out of memory");
			goto out;
		}
	}
	pub = find_pubkey(tok, s, &key->id);
	if (pub != CK_INVALID_HANDLE &&
	    read_attr(tok, s, pub, CKA_EC_POINT, POINT_MAX, &tokpt) == CKR_OK && tokpt.len > 0) {
		if (point_raw(&tokpt, 32, &raw) != 0) {
			sg_seterr(err, errlen, "the public key object's CKA_EC_POINT is not an Ed25519 key");
			goto out;
		}
		if (CRYPTO_memcmp(raw.p, certpt, 32) != 0) {
			sg_seterr(err, errlen, "the certificate's Ed25519 key does not match the token's public key");
			goto out;
		}
	}
	if (point_wrap(certpt, 32, &key->ec_point)) {
		sg_seterr(err, errlen, "out of memory");
		goto out;
	}
	key->bits = 255;   /* field bits of Curve25519 */
	rv = 0;
out:
	bytes_free(&raw);
	bytes_free(&tokpt);
	return rv;
}

static int
name_der(const X509_NAME *name, struct gw_bytes *out)
{
	unsigned char *der = NULL;
	int n = i2d_X509_NAME(name, &der);
	int rv = (n > 0) ? bytes_dup(out, der, (size_t)n) : -1;

	OPENSSL_free(der);
	return rv;
}

static int
serial_der(const ASN1_INTEGER *serial, struct gw_bytes *out)
{
	unsigned char *der = NULL;
	int n = i2d_ASN1_INTEGER(serial, &der);
	int rv = (n > 0) ? bytes_dup(out, der, (size_t)n) : -1;

	OPENSSL_free(der);
	return rv;
}

/* Finds the certificate with the key's CKA_ID and fills cert, subject,
 * issuer and serial; *x gets the parsed certificate. */
static int
fill_cert(struct gw_token *tok, CK_SESSION_HANDLE s, struct gw_seal_key *key,
          X509 **x, char *err, size_t errlen)
{
	CK_OBJECT_CLASS cls = CKO_CERTIFICATE;
	CK_CERTIFICATE_TYPE ctype = CKC_X_509;
	CK_ATTRIBUTE t[] = {
		{ CKA_CLASS, &cls, sizeof(cls) },
		{ CKA_CERTIFICATE_TYPE, &ctype, sizeof(ctype) },
		{ CKA_ID, key->id.p, key->id.len },
	};
	CK_OBJECT_HANDLE h[2];
	CK_ULONG n = 0;
	CK_RV crv;
	const unsigned char *p;

	crv = find_objects(tok, s, t, 3, h, 2, &n);
	if (crv != CKR_OK) {
		sg_seterr(err, errlen, "looking for the certificate: %s", rvstr(crv));
		return -1;
	}
	if (n == 0) {
		sg_seterr(err, errlen, "no X.509 certificate on the token has the key's CKA_ID; "
		       "write one with the same id");
		return -1;
	}
	if (n > 1) {
		sg_seterr(err, errlen, "more than one certificate has the key's CKA_ID");
		return -1;
	}
	crv = read_attr(tok, s, h[0], CKA_VALUE, CERT_MAX, &key->cert);
	if (crv != CKR_OK || key->cert.len == 0) {
		sg_seterr(err, errlen, "reading the certificate: %s",
		       crv == CKR_DATA_LEN_RANGE ? "longer than 16 KiB" :
		       crv == CKR_OK ? "empty" : rvstr(crv));
		return -1;
	}
	p = key->cert.p;
	*x = d2i_X509(NULL, &p, (long)key->cert.len);
	if (!*x || p != key->cert.p + key->cert.len) {
		sg_seterr(err, errlen, "the certificate with the key's CKA_ID is not valid DER X.509");
		return -1;
	}
	/* Prefer the token's own attributes; derive missing ones from the
	 * certificate (what they must equal anyway). */
	if (read_attr(tok, s, h[0], CKA_SUBJECT, ATTR_MAX, &key->subject) != CKR_OK ||
	    key->subject.len == 0) {
		bytes_free(&key->subject);
		if (name_der(X509_get_subject_name(*x), &key->subject))
			goto nomem;
	}
	if (read_attr(tok, s, h[0], CKA_ISSUER, ATTR_MAX, &key->issuer) != CKR_OK ||
	    key->issuer.len == 0) {
		bytes_free(&key->issuer);
		if (name_der(X509_get_issuer_name(*x), &key->issuer))
			goto nomem;
	}
	if (read_attr(tok, s, h[0], CKA_SERIAL_NUMBER, ATTR_MAX, &key->serial) != CKR_OK ||
	    key->serial.len == 0) {
		bytes_free(&key->serial);
		if (serial_der(X509_get0_serialNumber(*x), &key->serial))
			goto nomem;
	}
	return 0;
nomem:
	sg_seterr(err, errlen, "out of memory");
	return -1;
}

/* Takes the anchor session for a lookup (counts as busy so a reconnect
 * waits for us). */
static CK_RV
anchor_take(struct gw_token *tok, CK_SESSION_HANDLE *s, CK_SLOT_ID *slot, unsigned *gen)
{
	CK_RV rv = CKR_TOKEN_NOT_PRESENT;

	pthread_mutex_lock(&tok->lookup_lock);
	pthread_mutex_lock(&tok->lock);
	if (tok->present) {
		*s = tok->anchor;
		*slot = tok->slot;
		*gen = tok->gen;
		tok->nbusy++;
		rv = CKR_OK;
	}
	pthread_mutex_unlock(&tok->lock);
	if (rv != CKR_OK)
		pthread_mutex_unlock(&tok->lookup_lock);
	return rv;
}

static void
anchor_put(struct gw_token *tok)
{
	pthread_mutex_lock(&tok->lock);
	tok->nbusy--;
	pthread_cond_broadcast(&tok->cond);
	pthread_mutex_unlock(&tok->lock);
	pthread_mutex_unlock(&tok->lookup_lock);
}

int
gw_token_find_key(struct gw_token *tok, const char *uri,
                  struct gw_seal_key **out, char *err, size_t errlen)
{
	int rv = -1, r;
	P11KitUri *u = NULL;
	CK_ATTRIBUTE *uattrs, tmpl[3], found_attrs[3];
	CK_ULONG nuattrs = 0, ntmpl = 0, i, n = 0;
	CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
	CK_OBJECT_HANDLE h[2];
	CK_SESSION_HANDLE s = CK_INVALID_HANDLE;
	CK_SLOT_ID slot;
	CK_TOKEN_INFO ti;
	CK_INFO info;
	CK_ULONG ktype = 0;
	unsigned gen = 0;
	CK_BBOOL can_sign = CK_FALSE;
	CK_ATTRIBUTE sign_attr = { CKA_SIGN, &can_sign, sizeof(can_sign) };
	CK_BBOOL always_auth = CK_FALSE;
	CK_ATTRIBUTE auth_attr = { CKA_ALWAYS_AUTHENTICATE, &always_auth, sizeof(always_auth) };
	struct gw_bytes label = { 0 };
	struct gw_seal_key *key = NULL;
	bool have_anchor = false, named = false;
	X509 *x = NULL;
	CK_RV crv = CKR_OK;
	char tlabel[40];

	*out = NULL;
	if (!uri) {
		sg_seterr(err, errlen, "no key URI");
		return -1;
	}
	u = p11_kit_uri_new();
	if (!u) {
		sg_seterr(err, errlen, "out of memory");
		goto out;
	}
	r = p11_kit_uri_parse(uri, P11_KIT_URI_FOR_OBJECT_ON_TOKEN_AND_MODULE, u);
	if (r != P11_KIT_URI_OK) {
		sg_seterr(err, errlen, "key URI '%s': %s", uri, p11_kit_uri_message(r));
		goto out;
	}
	if (p11_kit_uri_any_unrecognized(u)) {
		sg_seterr(err, errlen, "key URI '%s' has attributes this gateway does not know", uri);
		goto out;
	}
	if (p11_kit_uri_get_pin_value(u) || p11_kit_uri_get_pin_source(u)) {
		sg_seterr(err, errlen, "key URI '%s' carries a PIN; the token PIN belongs in token_pin_file", uri);
		goto out;
	}
	uattrs = p11_kit_uri_get_attributes(u, &nuattrs);
	tmpl[ntmpl++] = (CK_ATTRIBUTE){ CKA_CLASS, &cls, sizeof(cls) };
	for (i = 0; i < nuattrs; i++) {
		switch (uattrs[i].type) {
		case CKA_CLASS:
			if (uattrs[i].ulValueLen != sizeof(CK_OBJECT_CLASS) ||
			    *(CK_OBJECT_CLASS *)uattrs[i].pValue != CKO_PRIVATE_KEY) {
				sg_seterr(err, errlen, "key URI '%s': type= must be private", uri);
				goto out;
			}
			break;
		case CKA_LABEL:
		case CKA_ID:
			tmpl[ntmpl++] = uattrs[i];
			named = true;
			break;
		default:
			sg_seterr(err, errlen, "key URI '%s' has an attribute this gateway does not use", uri);
			goto out;
		}
	}
	if (!named) {
		sg_seterr(err, errlen, "key URI '%s' names no key: give object= or id=", uri);
		goto out;
	}

	if (!gw_token_present(tok) && gw_token_reconnect(tok) != CKR_OK) {
		/* Away: what it had when it was last here (token.h). */
		*out = known_key(tok, uri);
		if (*out != NULL)
			rv = 0;
		else
			sg_seterr(err, errlen, "backend token not present, and this key was never found "
			       "on it (insert it and try again)");
		goto out;
	}
	crv = anchor_take(tok, &s, &slot, &gen);
	if (crv != CKR_OK) {
		sg_seterr(err, errlen, "backend token not present");
		goto out;
	}
	have_anchor = true;
	/* The key URI may name the token and module too: they must be ours. */
	if ((crv = tok->f->C_GetTokenInfo(slot, &ti)) != CKR_OK ||
	    (crv = tok->f->C_GetInfo(&info)) != CKR_OK) {
		sg_seterr(err, errlen, "C_GetTokenInfo: %s", rvstr(crv));
		goto out;
	}
	if (p11_kit_uri_match_token_info(u, &ti) != 1 || p11_kit_uri_match_module_info(u, &info) != 1) {
		padded_to_str(ti.label, sizeof(ti.label), tlabel, sizeof(tlabel));
		sg_seterr(err, errlen, "key URI '%s' names another token or module (backend token is '%s')",
		       uri, tlabel);
		goto out;
	}

	crv = find_objects(tok, s, tmpl, ntmpl, h, 2, &n);
	if (crv != CKR_OK) {
		sg_seterr(err, errlen, "looking for '%s': %s", uri, rvstr(crv));
		goto out;
	}
	if (n == 0) {
		sg_seterr(err, errlen, "no private key on the backend token matches '%s'", uri);
		goto out;
	}
	if (n > 1) {
		sg_seterr(err, errlen, "more than one private key matches '%s'; add id= to the URI", uri);
		goto out;
	}

	key = calloc(1, sizeof(*key));
	if (!key || !(key->uri = strdup(uri))) {
		sg_seterr(err, errlen, "out of memory");
		goto out;
	}
	key->priv = h[0];
	key->gen = gen;
	if ((crv = read_ulong(tok, s, key->priv, CKA_KEY_TYPE, &ktype)) != CKR_OK) {
		sg_seterr(err, errlen, "reading CKA_KEY_TYPE of '%s': %s", uri, rvstr(crv));
		goto out;
	}
	crv = read_attr(tok, s, key->priv, CKA_ID, ATTR_MAX, &key->id);
	if (crv != CKR_OK || key->id.len == 0) {
		sg_seterr(err, errlen, "the key '%s' has no CKA_ID, so its certificate cannot be found", uri);
		goto out;
	}
	crv = read_attr(tok, s, key->priv, CKA_LABEL, ATTR_MAX, &label);
	if (crv != CKR_OK && crv != CKR_ATTRIBUTE_TYPE_INVALID) {
		sg_seterr(err, errlen, "reading CKA_LABEL of '%s': %s", uri, rvstr(crv));
		goto out;
	}
	key->label = calloc(1, label.len + 1);
	if (!key->label) {
		sg_seterr(err, errlen, "out of memory");
		goto out;
	}
	if (label.len)
		memcpy(key->label, label.p, label.len);
	/* Tokens are not always faithful to a find template: check the object
	 * we got against the URI once more with p11-kit's matcher. */
	found_attrs[0] = (CK_ATTRIBUTE){ CKA_CLASS, &cls, sizeof(cls) };
	found_attrs[1] = (CK_ATTRIBUTE){ CKA_ID, key->id.p, key->id.len };
	found_attrs[2] = (CK_ATTRIBUTE){ CKA_LABEL, label.p, label.len };
	if (p11_kit_uri_match_attributes(u, found_attrs, 3) != 1) {
		sg_seterr(err, errlen, "the token returned a key that does not match '%s'", uri);
		goto out;
	}
	if (tok->f->C_GetAttributeValue(s, key->priv, &sign_attr, 1) != CKR_OK || !can_sign) {
		sg_seterr(err, errlen, "the key '%s' is not allowed to sign (CKA_SIGN false)", uri);
		goto out;
	}
	if (tok->f->C_GetAttributeValue(s, key->priv, &auth_attr, 1) == CKR_OK && always_auth)
		key->always_auth = true;

	if (fill_cert(tok, s, key, &x, err, errlen))
		goto out;
	switch (ktype) {
	case CKK_RSA:
		key->type = GW_KEY_RSA;
		r = fill_rsa(tok, s, key, X509_get0_pubkey(x), err, errlen);
		break;
	case CKK_EC:
		key->type = GW_KEY_EC;
		r = fill_ec(tok, s, key, X509_get0_pubkey(x), err, errlen);
		break;
	case CKK_EC_EDWARDS:
		key->type = GW_KEY_ED25519;
		r = fill_ed25519(tok, s, key, X509_get0_pubkey(x), err, errlen);
		break;
	default:
		sg_seterr(err, errlen, "the key '%s' has a type this gateway cannot use (CKK 0x%lx)",
		       uri, (unsigned long)ktype);
		r = -1;
	}
	if (r)
		goto out;

	if (gw_token_know_key(tok, key) != 0) {
		sg_seterr(err, errlen, "out of memory");
		goto out;
	}
	*out = key;
	key = NULL;
	rv = 0;
out:
	if (have_anchor)
		anchor_put(tok);
	if (rv != 0 && have_anchor && rv_token_gone(crv))
		gw_token_lost(tok, rvstr(crv));
	X509_free(x);
	bytes_free(&label);
	gw_seal_key_free(&key);
	if (u)
		p11_kit_uri_free(u);
	return rv;
}

/* ---- signing ---- */

/* Finds the key again by class, CKA_ID and label in the signer's own
 * session: exactly one object, or CK_INVALID_HANDLE. */
static CK_OBJECT_HANDLE
refind_key(struct gw_token *tok, CK_SESSION_HANDLE s, const struct gw_seal_key *key)
{
	CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
	CK_ATTRIBUTE t[] = {
		{ CKA_CLASS, &cls, sizeof(cls) },
		{ CKA_ID, key->id.p, key->id.len },
		{ CKA_LABEL, key->label, strlen(key->label) },
	};
	CK_OBJECT_HANDLE h[2];
	CK_ULONG n = 0;

	if (find_objects(tok, s, t, 3, h, 2, &n) != CKR_OK || n != 1)
		return CK_INVALID_HANDLE;
	return h[0];
}

static bool
same_id(const struct gw_seal_key *a, const struct gw_seal_key *b)
{
	return a->id.len == b->id.len && (a->id.len == 0 || memcmp(a->id.p, b->id.p, a->id.len) == 0);
}

/* The handle found for key in generation gen, kept with the known keys
 * (token.h), or CK_INVALID_HANDLE. */
static CK_OBJECT_HANDLE
handle_kept(struct gw_token *tok, const struct gw_seal_key *key, unsigned gen)
{
	CK_OBJECT_HANDLE h = CK_INVALID_HANDLE;

	if (key->uri == NULL)
		return h;
	pthread_mutex_lock(&tok->lock);
	for (size_t i = 0; i < tok->nknown && h == CK_INVALID_HANDLE; i++) {
		const struct gw_seal_key *k = tok->known[i];
		if (k->gen == gen && k->priv != CK_INVALID_HANDLE && strcmp(k->uri, key->uri) == 0 &&
		    same_id(k, key))
			h = k->priv;
	}
	pthread_mutex_unlock(&tok->lock);
	return h;
}

static void
handle_keep(struct gw_token *tok, const struct gw_seal_key *key, unsigned gen, CK_OBJECT_HANDLE h)
{
	if (key->uri == NULL)
		return;
	pthread_mutex_lock(&tok->lock);
	for (size_t i = 0; i < tok->nknown; i++) {
		struct gw_seal_key *k = tok->known[i];
		if (strcmp(k->uri, key->uri) == 0 && same_id(k, key)) {
			k->priv = h;
			k->gen = gen;
		}
	}
	pthread_mutex_unlock(&tok->lock);
}

/* b without its leading zero bytes (an unsigned big-endian integer). */
static const uint8_t *
unpadded(const uint8_t *p, size_t *len)
{
	while (*len > 1 && p[0] == 0) {
		p++;
		(*len)--;
	}
	return p;
}

/* Whether object h is key: a private key of its type with its CKA_ID and
 * its public part where the object shows one (the RSA modulus; the curve
 * of an EC or EdDSA key, whose private object seldom carries a point). CKR_OK,
 * CKR_KEY_CHANGED (another object), CKR_KEY_HANDLE_INVALID (no object),
 * or the token's error. Token data is untrusted: every length is checked
 * against the buffer before it is read. */
static CK_RV
key_is(struct gw_token *tok, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE h, const struct gw_seal_key *key)
{
	CK_OBJECT_CLASS cls = 0;
	CK_KEY_TYPE kt = 0, want_kt = key->type == GW_KEY_RSA ? CKK_RSA :
	                              key->type == GW_KEY_EC ? CKK_EC : CKK_EC_EDWARDS;
	const struct gw_bytes *pub = key->type == GW_KEY_RSA ? &key->modulus : &key->ec_params;
	size_t idcap = key->id.len + 1, pubcap = pub->len + 16, a_len, b_len;
	uint8_t *id = malloc(idcap), *pb = malloc(pubcap);
	const uint8_t *a, *b;
	CK_ATTRIBUTE t[4] = {
		{ CKA_CLASS, &cls, sizeof(cls) },
		{ CKA_KEY_TYPE, &kt, sizeof(kt) },
		{ CKA_ID, id, idcap },
		{ key->type == GW_KEY_RSA ? CKA_MODULUS : CKA_EC_PARAMS, pb, pubcap },
	};
	CK_RV rv, grv;

	if (id == NULL || pb == NULL) {
		rv = CKR_HOST_MEMORY;
		goto out;
	}
	rv = grv = tok->f->C_GetAttributeValue(s, h, t, 4);
	if (rv == CKR_OBJECT_HANDLE_INVALID || rv == CKR_KEY_HANDLE_INVALID) {
		rv = CKR_KEY_HANDLE_INVALID;
		goto out;
	}
	/* These still fill every attribute they can (PKCS#11 5.7): a
	 * sensitive or too long one reads CK_UNAVAILABLE_INFORMATION. */
	if (rv != CKR_OK && rv != CKR_ATTRIBUTE_SENSITIVE && rv != CKR_ATTRIBUTE_TYPE_INVALID &&
	    rv != CKR_BUFFER_TOO_SMALL)
		goto out;
	rv = CKR_KEY_CHANGED;
	if (t[0].ulValueLen != sizeof(cls) || cls != CKO_PRIVATE_KEY ||
	    t[1].ulValueLen != sizeof(kt) || kt != want_kt ||
	    t[2].ulValueLen != key->id.len || memcmp(id, key->id.p, key->id.len) != 0)
		goto out;
	/* A public part the object does not show (CK_UNAVAILABLE_INFORMATION)
	 * is not held against it; one it shows must be the key's. Too long a
	 * value reads as unavailable too, so it must fit in pubcap. */
	if (t[3].ulValueLen != CK_UNAVAILABLE_INFORMATION) {
		if (t[3].ulValueLen > pubcap)
			goto out;
		a = pb;
		a_len = t[3].ulValueLen;
		b = pub->p;
		b_len = pub->len;
		if (key->type == GW_KEY_RSA) {
			a = unpadded(a, &a_len);
			b = b ? unpadded(b, &b_len) : b;
		}
		if (a_len != b_len || (a_len > 0 && memcmp(a, b, a_len) != 0))
			goto out;
	} else if (grv == CKR_BUFFER_TOO_SMALL) {
		goto out;   /* the CKA_ID fitted, so the public part did not */
	}
	rv = CKR_OK;
out:
	free(id);
	free(pb);
	return rv;
}

/* The object to sign with for key in session s of generation gen.
 * A handle kept with the known keys for gen has been checked by key_is in
 * gen (only a checked handle is kept), and is used without asking again:
 * PKCS#11 keeps a handle naming its object while the session lives and
 * the object exists (2.40, 2.4 "Objects"), and whatever ends either for
 * the gateway — a card pulled or swapped, the token re-initialised, its
 * sessions closed — ends the generation (docs/performance.md, "The key
 * check, once per handle and generation"). Any other handle (the key's
 * own from its lookup, or one found again by CKA_ID and label) is checked
 * first, then kept for the rest of the generation. fresh: the kept handle
 * was refused by the token (C_SignInit said it names no key), so it is
 * forgotten and the key looked up again. */
static CK_RV
key_handle(struct gw_token *tok, CK_SESSION_HANDLE s, unsigned gen, const struct gw_seal_key *key,
           bool fresh, CK_OBJECT_HANDLE *out)
{
	CK_OBJECT_HANDLE h = CK_INVALID_HANDLE;
	CK_RV rv;

	*out = CK_INVALID_HANDLE;
	if (fresh) {
		handle_keep(tok, key, gen, CK_INVALID_HANDLE);
	} else {
		h = handle_kept(tok, key, gen);
		if (h != CK_INVALID_HANDLE) {
			*out = h;
			return CKR_OK;
		}
		if (key->gen == gen)
			h = key->priv;
	}
	if (h != CK_INVALID_HANDLE) {
		rv = key_is(tok, s, h, key);
		if (rv == CKR_OK) {
			handle_keep(tok, key, gen, h);
			*out = h;
			return CKR_OK;
		}
		if (rv_token_gone(rv))
			return rv;
		/* The number names another object now: look again. */
	}
	h = refind_key(tok, s, key);
	if (h == CK_INVALID_HANDLE)
		return CKR_KEY_HANDLE_INVALID;
	rv = key_is(tok, s, h, key);
	if (rv == CKR_KEY_CHANGED)
		gw_log_error("the backend token offers an object for '%s' (its CKA_ID and label) that is "
		             "not that key: its class, type, CKA_ID or public key differ; not signing",
		             key->uri ? key->uri : key->label);
	if (rv != CKR_OK)
		return rv;
	handle_keep(tok, key, gen, h);
	*out = h;
	return CKR_OK;
}

CK_RV
gw_token_sign(struct gw_token *tok, const struct gw_seal_key *key,
              CK_MECHANISM *mech, const uint8_t *in, size_t inlen,
              uint8_t *sig, size_t *siglen)
{
	CK_RV rv;
	CK_SESSION_HANDLE h;
	CK_OBJECT_HANDLE kh;
	CK_ULONG sl;
	unsigned gen;
	bool dirty = false;

	if (!tok || !key || !mech || !sig || !siglen || (!in && inlen))
		return CKR_ARGUMENTS_BAD;
	if (!gw_token_present(tok)) {
		rv = gw_token_reconnect(tok);
		if (rv != CKR_OK)
			return rv;
	}
	rv = pool_take(tok, &h, &gen);
	if (rv != CKR_OK)
		return rv;

	/* Never an old generation's handle (a re-inserted card may number
	 * its objects anew, and a reused number could name another key),
	 * and always checked to be the key (token.h). A key known only from
	 * an earlier run has no handle yet. */
	rv = key_handle(tok, h, gen, key, false, &kh);
	if (rv == CKR_OK)
		rv = tok->f->C_SignInit(h, mech, kh);
	/* The object is gone (deleted, the token re-initialised under the
	 * same session): its number may come back naming another object, so
	 * it is found again and checked before a second try. */
	if (rv == CKR_KEY_HANDLE_INVALID || rv == CKR_OBJECT_HANDLE_INVALID) {
		rv = key_handle(tok, h, gen, key, true, &kh);
		if (rv == CKR_OK)
			rv = tok->f->C_SignInit(h, mech, kh);
	}
	if (rv == CKR_OK && key->always_auth) {
		/* Smartcard signature keys often want the PIN again for each
		 * operation. Same rule as the first login: one try, and a
		 * refused PIN stops all signing until someone fixes it. */
		rv = tok->f->C_Login(h, CKU_CONTEXT_SPECIFIC, (CK_UTF8CHAR *)tok->pin,
		                     tok->pin ? tok->pinlen : 0);
		if (rv != CKR_OK) {
			dirty = true;
			if (rv_pin_fatal(rv)) {
				mark_pin_dead(tok);
				gw_log_error("backend token refused the PIN for a context-specific login: %s "
				             "(will not retry)", rvstr(rv));
				pool_drop(tok, h, gen);
				gw_token_lost(tok, "PIN refused");
				return rv;
			}
		}
	}
	if (rv == CKR_OK) {
		sl = *siglen;
		rv = tok->f->C_Sign(h, (CK_BYTE *)in, inlen, sig, &sl);
		if (rv == CKR_OK || rv == CKR_BUFFER_TOO_SMALL)
			*siglen = sl;
		/* The operation may still be active (CKR_BUFFER_TOO_SMALL keeps
		 * it by definition; modules differ on other errors) and PKCS#11
		 * 2.40 has no way to cancel it: this session is not reused. */
		if (rv != CKR_OK)
			dirty = true;
	} else if (rv == CKR_OPERATION_ACTIVE) {
		dirty = true;
	}

	if (rv_token_gone(rv)) {
		pool_drop(tok, h, gen);
		gw_token_lost(tok, rvstr(rv));
	} else if (dirty) {
		pool_drop(tok, h, gen);
	} else {
		pool_put(tok, h, gen);
	}
	return rv;
}

/* The token is back (a new generation): every key it had is found again
 * by CKA_ID and label and checked now, so no signature meets a handle of
 * the earlier generation, and a key that is missing or another key is said
 * at once rather than at its seal's first signature (which would look
 * again anyway). Copies are taken under the lock: the list may change. */
static void
refind_known(struct gw_token *tok)
{
	CK_SESSION_HANDLE s;
	CK_SLOT_ID slot;
	unsigned gen;
	size_t n;

	if (anchor_take(tok, &s, &slot, &gen) != CKR_OK)
		return;
	pthread_mutex_lock(&tok->lock);
	n = tok->nknown;
	pthread_mutex_unlock(&tok->lock);
	for (size_t i = 0; i < n; i++) {
		struct gw_seal_key *k = NULL;
		CK_OBJECT_HANDLE h;
		CK_RV rv;

		pthread_mutex_lock(&tok->lock);
		if (i < tok->nknown)
			(void)key_copy(tok->known[i], &k);
		pthread_mutex_unlock(&tok->lock);
		if (k == NULL)
			continue;
		h = refind_key(tok, s, k);
		rv = h == CK_INVALID_HANDLE ? CKR_KEY_HANDLE_INVALID : key_is(tok, s, h, k);
		if (rv == CKR_OK)
			handle_keep(tok, k, gen, h);
		else if (!rv_token_gone(rv))
			gw_log_warn("the backend token is back, but the key '%s' %s", k->uri,
			            rv == CKR_KEY_CHANGED ?
			            "on it is not the key found before (its class, type, CKA_ID or public key "
			            "differ): its seals will not sign" :
			            "is not on it (no one private key with its CKA_ID and label): its seals "
			            "cannot sign until it is");
		gw_seal_key_free(&k);
	}
	anchor_put(tok);
}

/* ---- secrets sealed on the token (token.h; used by totp.c) ---- */

#define SEAL_IV_LEN  12
#define SEAL_TAG_LEN 16

/* One key generation at a time, so two first uses make one key. */
static pthread_mutex_t seal_keygen_lock = PTHREAD_MUTEX_INITIALIZER;

static CK_RV
seal_key_find(struct gw_token *tok, CK_SESSION_HANDLE s, const char *label,
              CK_OBJECT_HANDLE *key)
{
	CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
	CK_KEY_TYPE kt = CKK_AES;
	CK_ATTRIBUTE t[] = {
		{ CKA_CLASS, &cls, sizeof(cls) },
		{ CKA_KEY_TYPE, &kt, sizeof(kt) },
		{ CKA_LABEL, (void *)label, strlen(label) },
	};
	CK_OBJECT_HANDLE h[2];
	CK_ULONG n = 0;
	CK_RV rv = find_objects(tok, s, t, 3, h, 2, &n);

	if (rv != CKR_OK)
		return rv;
	if (n != 1)
		return n == 0 ? CKR_KEY_HANDLE_INVALID : CKR_KEY_NOT_NEEDED;  /* two: ambiguous */
	*key = h[0];
	return CKR_OK;
}

/* The sealing key labelled label, generated on the token when absent and
 * create is set (in a read-write session of its own: pool sessions are
 * read-only). */
static CK_RV
seal_key(struct gw_token *tok, CK_SESSION_HANDLE s, const char *label, bool create,
         CK_OBJECT_HANDLE *key)
{
	CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
	CK_KEY_TYPE kt = CKK_AES;
	CK_ULONG vlen = 32;
	CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
	CK_ATTRIBUTE g[] = {
		{ CKA_CLASS, &cls, sizeof(cls) },
		{ CKA_KEY_TYPE, &kt, sizeof(kt) },
		{ CKA_LABEL, (void *)label, strlen(label) },
		{ CKA_VALUE_LEN, &vlen, sizeof(vlen) },
		{ CKA_TOKEN, &yes, sizeof(yes) },
		{ CKA_PRIVATE, &yes, sizeof(yes) },
		{ CKA_SENSITIVE, &yes, sizeof(yes) },
		{ CKA_EXTRACTABLE, &no, sizeof(no) },
		{ CKA_ENCRYPT, &yes, sizeof(yes) },
		{ CKA_DECRYPT, &yes, sizeof(yes) },
		{ CKA_WRAP, &no, sizeof(no) },
		{ CKA_UNWRAP, &no, sizeof(no) },
	};
	CK_MECHANISM m = { CKM_AES_KEY_GEN, NULL, 0 };
	CK_SESSION_HANDLE rw;
	CK_OBJECT_HANDLE made;
	CK_SLOT_ID slot;
	CK_RV rv = seal_key_find(tok, s, label, key);

	if (rv != CKR_KEY_HANDLE_INVALID || !create)
		return rv;
	pthread_mutex_lock(&seal_keygen_lock);
	rv = seal_key_find(tok, s, label, key);
	if (rv == CKR_KEY_HANDLE_INVALID) {
		pthread_mutex_lock(&tok->lock);
		slot = tok->slot;
		pthread_mutex_unlock(&tok->lock);
		rv = tok->f->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &rw);
		if (rv == CKR_OK) {
			rv = tok->f->C_GenerateKey(rw, &m, g, sizeof(g) / sizeof(g[0]), &made);
			tok->f->C_CloseSession(rw);
			if (rv == CKR_OK)
				rv = seal_key_find(tok, s, label, key);
		}
	}
	pthread_mutex_unlock(&seal_keygen_lock);
	return rv;
}

/* Encrypts (enc) or decrypts on a pooled session; the GCM mechanism with
 * iv and aad. */
static CK_RV
seal_run(struct gw_token *tok, bool enc, const char *label, uint8_t *iv,
         const uint8_t *aad, size_t aadlen, const uint8_t *in, size_t inlen,
         uint8_t *out, CK_ULONG *outlen)
{
	CK_GCM_PARAMS gp;
	CK_MECHANISM m;
	CK_SESSION_HANDLE s;
	CK_OBJECT_HANDLE key;
	unsigned gen;
	bool dirty = false;
	CK_RV rv;

	if (!gw_token_present(tok)) {
		rv = gw_token_reconnect(tok);
		if (rv != CKR_OK)
			return rv;
	}
	rv = pool_take(tok, &s, &gen);
	if (rv != CKR_OK)
		return rv;
	rv = seal_key(tok, s, label, enc, &key);
	if (rv == CKR_OK && enc)
		rv = tok->f->C_GenerateRandom(s, iv, SEAL_IV_LEN);
	if (rv == CKR_OK) {
		memset(&gp, 0, sizeof(gp));
		gp.iv_ptr = iv;
		gp.iv_len = SEAL_IV_LEN;
		gp.iv_bits = SEAL_IV_LEN * 8;
		gp.aad_ptr = (unsigned char *)aad;
		gp.aad_len = aadlen;
		gp.tag_bits = SEAL_TAG_LEN * 8;
		m.mechanism = CKM_AES_GCM;
		m.pParameter = &gp;
		m.ulParameterLen = sizeof(gp);
		rv = enc ? tok->f->C_EncryptInit(s, &m, key) : tok->f->C_DecryptInit(s, &m, key);
		if (rv == CKR_OK) {
			rv = enc ? tok->f->C_Encrypt(s, (CK_BYTE *)in, inlen, out, outlen)
			         : tok->f->C_Decrypt(s, (CK_BYTE *)in, inlen, out, outlen);
			/* As in gw_token_sign: an operation may be left active. */
			if (rv != CKR_OK)
				dirty = true;
		}
	}
	if (rv_token_gone(rv)) {
		pool_drop(tok, s, gen);
		gw_token_lost(tok, rvstr(rv));
	} else if (dirty) {
		pool_drop(tok, s, gen);
	} else {
		pool_put(tok, s, gen);
	}
	return rv;
}

int
gw_token_seal(struct gw_token *tok, const char *label, const uint8_t *aad, size_t aadlen,
              const uint8_t *in, size_t inlen, uint8_t *out, size_t *outlen,
              char *err, size_t errlen)
{
	CK_ULONG clen;
	CK_RV rv;

	if (!tok || !label || !in || !out || !outlen || inlen == 0 ||
	    *outlen < inlen + GW_TOKEN_SEAL_OVERHEAD) {
		sg_seterr(err, errlen, "seal: bad arguments");
		return -1;
	}
	clen = *outlen - SEAL_IV_LEN;
	rv = seal_run(tok, true, label, out, aad, aadlen, in, inlen, out + SEAL_IV_LEN, &clen);
	if (rv != CKR_OK || clen != inlen + SEAL_TAG_LEN) {
		OPENSSL_cleanse(out, *outlen);
		sg_seterr(err, errlen, "the backend token could not seal with key '%s': %s", label,
		       rv != CKR_OK ? rvstr(rv) : "unexpected length");
		return -1;
	}
	*outlen = SEAL_IV_LEN + clen;
	return 0;
}

int
gw_token_unseal(struct gw_token *tok, const char *label, const uint8_t *aad, size_t aadlen,
                const uint8_t *in, size_t inlen, uint8_t *out, size_t *outlen,
                char *err, size_t errlen)
{
	uint8_t iv[SEAL_IV_LEN];
	CK_ULONG plen;
	CK_RV rv;

	if (!tok || !label || !in || !out || !outlen ||
	    inlen < GW_TOKEN_SEAL_OVERHEAD + 1 || *outlen < inlen - GW_TOKEN_SEAL_OVERHEAD) {
		sg_seterr(err, errlen, "unseal: bad arguments");
		return -1;
	}
	memcpy(iv, in, SEAL_IV_LEN);
	plen = *outlen;
	rv = seal_run(tok, false, label, iv, aad, aadlen, in + SEAL_IV_LEN, inlen - SEAL_IV_LEN,
	              out, &plen);
	if (rv != CKR_OK || plen != inlen - GW_TOKEN_SEAL_OVERHEAD) {
		OPENSSL_cleanse(out, *outlen);
		if (rv == CKR_KEY_HANDLE_INVALID)
			sg_seterr(err, errlen, "the sealing key '%s' is not on this backend token", label);
		else
			sg_seterr(err, errlen, "the backend token could not open a value sealed with '%s': %s",
			       label, rv != CKR_OK ? rvstr(rv) : "unexpected length");
		return -1;
	}
	*outlen = plen;
	return 0;
}

/* ---- a site's key pair for secrets sealed to it (token.h; totp.c) ---- */

#define KEM_BITS 3072

/* The one object of class cls and key type kt labelled label: the site's
 * key pair for sealed secrets (RSA) and the device CA's (EC) are found by
 * their label alone. CKR_KEY_HANDLE_INVALID: none; CKR_KEY_NOT_NEEDED:
 * more than one. */
static CK_RV
labelled_key_find(struct gw_token *tok, CK_SESSION_HANDLE s, const char *label,
                  CK_OBJECT_CLASS cls, CK_KEY_TYPE kt, CK_OBJECT_HANDLE *key)
{
	CK_ATTRIBUTE t[] = {
		{ CKA_CLASS, &cls, sizeof(cls) },
		{ CKA_KEY_TYPE, &kt, sizeof(kt) },
		{ CKA_LABEL, (void *)label, strlen(label) },
	};
	CK_OBJECT_HANDLE h[2];
	CK_ULONG n = 0;
	CK_RV rv = find_objects(tok, s, t, 3, h, 2, &n);

	if (rv != CKR_OK)
		return rv;
	if (n != 1)
		return n == 0 ? CKR_KEY_HANDLE_INVALID : CKR_KEY_NOT_NEEDED;
	*key = h[0];
	return CKR_OK;
}

static CK_RV
kem_find(struct gw_token *tok, CK_SESSION_HANDLE s, const char *label, CK_OBJECT_CLASS cls,
         CK_OBJECT_HANDLE *key)
{
	return labelled_key_find(tok, s, label, cls, CKK_RSA, key);
}

/* The private key labelled label, the pair generated when absent and
 * create is set (under the lock of the secret keys, in a read-write
 * session of its own). */
static CK_RV
kem_key(struct gw_token *tok, CK_SESSION_HANDLE s, const char *label, bool create,
        CK_OBJECT_HANDLE *key)
{
	CK_ULONG bits = KEM_BITS;
	CK_BYTE e[] = { 0x01, 0x00, 0x01 };
	CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
	CK_ATTRIBUTE pubt[] = {
		{ CKA_LABEL, (void *)label, strlen(label) },
		{ CKA_TOKEN, &yes, sizeof(yes) },
		{ CKA_ENCRYPT, &yes, sizeof(yes) },
		{ CKA_VERIFY, &no, sizeof(no) },
		{ CKA_WRAP, &no, sizeof(no) },
		{ CKA_MODULUS_BITS, &bits, sizeof(bits) },
		{ CKA_PUBLIC_EXPONENT, e, sizeof(e) },
	};
	CK_ATTRIBUTE privt[] = {
		{ CKA_LABEL, (void *)label, strlen(label) },
		{ CKA_TOKEN, &yes, sizeof(yes) },
		{ CKA_PRIVATE, &yes, sizeof(yes) },
		{ CKA_SENSITIVE, &yes, sizeof(yes) },
		{ CKA_EXTRACTABLE, &no, sizeof(no) },
		{ CKA_DECRYPT, &yes, sizeof(yes) },
		{ CKA_SIGN, &no, sizeof(no) },
		{ CKA_UNWRAP, &no, sizeof(no) },
	};
	CK_MECHANISM m = { CKM_RSA_PKCS_KEY_PAIR_GEN, NULL, 0 };
	CK_SESSION_HANDLE rw;
	CK_OBJECT_HANDLE hpub, hpriv;
	CK_SLOT_ID slot;
	CK_RV rv = kem_find(tok, s, label, CKO_PRIVATE_KEY, key);

	if (rv != CKR_KEY_HANDLE_INVALID || !create)
		return rv;
	pthread_mutex_lock(&seal_keygen_lock);
	rv = kem_find(tok, s, label, CKO_PRIVATE_KEY, key);
	if (rv == CKR_KEY_HANDLE_INVALID) {
		pthread_mutex_lock(&tok->lock);
		slot = tok->slot;
		pthread_mutex_unlock(&tok->lock);
		rv = tok->f->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &rw);
		if (rv == CKR_OK) {
			rv = tok->f->C_GenerateKeyPair(rw, &m, pubt, sizeof(pubt) / sizeof(pubt[0]),
			                               privt, sizeof(privt) / sizeof(privt[0]),
			                               &hpub, &hpriv);
			tok->f->C_CloseSession(rw);
			if (rv == CKR_OK)
				rv = kem_find(tok, s, label, CKO_PRIVATE_KEY, key);
		}
	}
	pthread_mutex_unlock(&seal_keygen_lock);
	return rv;
}

/* SubjectPublicKeyInfo DER of the RSA key n, e. */
static int
kem_spki(const struct gw_bytes *n, const struct gw_bytes *e, uint8_t *out, size_t *outlen)
{
	OSSL_PARAM_BLD *b = OSSL_PARAM_BLD_new();
	OSSL_PARAM *p = NULL;
	EVP_PKEY_CTX *c = NULL;
	EVP_PKEY *k = NULL;
	BIGNUM *bn = BN_bin2bn(n->p, (int)n->len, NULL), *be = BN_bin2bn(e->p, (int)e->len, NULL);
	unsigned char *q;
	int len, rv = -1;

	if (!b || !bn || !be || !OSSL_PARAM_BLD_push_BN(b, OSSL_PKEY_PARAM_RSA_N, bn) ||
	    !OSSL_PARAM_BLD_push_BN(b, OSSL_PKEY_PARAM_RSA_E, be) ||
	    (p = OSSL_PARAM_BLD_to_param(b)) == NULL ||
	    (c = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL)) == NULL ||
	    EVP_PKEY_fromdata_init(c) <= 0 || EVP_PKEY_fromdata(c, &k, EVP_PKEY_PUBLIC_KEY, p) <= 0)
		goto out;
	len = i2d_PUBKEY(k, NULL);
	if (len <= 0 || (size_t)len > *outlen)
		goto out;
	q = out;
	if (i2d_PUBKEY(k, &q) != len)
		goto out;
	*outlen = (size_t)len;
	rv = 0;
out:
	EVP_PKEY_free(k);
	EVP_PKEY_CTX_free(c);
	OSSL_PARAM_free(p);
	OSSL_PARAM_BLD_free(b);
	BN_free(bn);
	BN_free(be);
	return rv;
}

int
gw_token_kem_public(struct gw_token *tok, const char *label, bool create, uint8_t *der,
                    size_t *derlen, char *err, size_t errlen)
{
	struct gw_bytes n = { 0 }, e = { 0 };
	CK_SESSION_HANDLE s;
	CK_OBJECT_HANDLE priv, pub;
	unsigned gen;
	CK_RV rv;
	int out = -1;

	if (!tok || !label || !der || !derlen) {
		sg_seterr(err, errlen, "kem: bad arguments");
		return -1;
	}
	if (!gw_token_present(tok)) {
		rv = gw_token_reconnect(tok);
		if (rv != CKR_OK)
			goto fail;
	}
	rv = pool_take(tok, &s, &gen);
	if (rv != CKR_OK)
		goto fail;
	rv = kem_key(tok, s, label, create, &priv);
	/* The public key object is where every token shows n and e. */
	if (rv == CKR_OK)
		rv = kem_find(tok, s, label, CKO_PUBLIC_KEY, &pub);
	if (rv == CKR_OK)
		rv = read_attr(tok, s, pub, CKA_MODULUS, MODULUS_MAX, &n);
	if (rv == CKR_OK)
		rv = read_attr(tok, s, pub, CKA_PUBLIC_EXPONENT, MODULUS_MAX, &e);
	if (rv_token_gone(rv)) {
		pool_drop(tok, s, gen);
		gw_token_lost(tok, rvstr(rv));
	} else {
		pool_put(tok, s, gen);
	}
	if (rv != CKR_OK)
		goto fail;
	if (n.len == 0 || e.len == 0 || kem_spki(&n, &e, der, derlen) < 0) {
		sg_seterr(err, errlen, "the key pair '%s' on the backend token has no usable RSA "
		          "public key", label);
		goto done;
	}
	out = 0;
	goto done;
fail:
	if (rv == CKR_KEY_HANDLE_INVALID)
		sg_seterr(err, errlen, "the key pair '%s' is not on this backend token", label);
	else
		sg_seterr(err, errlen, "the backend token could not give the key pair '%s': %s",
		          label, rvstr(rv));
done:
	bytes_free(&n);
	bytes_free(&e);
	return out;
}

int
gw_token_kem_open(struct gw_token *tok, const char *label, const uint8_t *in, size_t inlen,
                  uint8_t *out, size_t *outlen, char *err, size_t errlen)
{
	/* SHA-1 for OAEP: SoftHSM (2.6) and many cards decrypt with no other;
	 * OAEP needs no collision resistance of it. */
	CK_RSA_PKCS_OAEP_PARAMS op = { CKM_SHA_1, CKG_MGF1_SHA1, CKZ_DATA_SPECIFIED, NULL, 0 };
	CK_MECHANISM m = { CKM_RSA_PKCS_OAEP, &op, sizeof(op) };
	CK_SESSION_HANDLE s;
	CK_OBJECT_HANDLE key;
	CK_ULONG plen;
	unsigned gen;
	bool dirty = false;
	CK_RV rv;

	if (!tok || !label || !in || !out || !outlen || inlen == 0 || inlen > MODULUS_MAX) {
		sg_seterr(err, errlen, "kem: bad arguments");
		return -1;
	}
	if (!gw_token_present(tok)) {
		rv = gw_token_reconnect(tok);
		if (rv != CKR_OK)
			goto fail;
	}
	rv = pool_take(tok, &s, &gen);
	if (rv != CKR_OK)
		goto fail;
	plen = *outlen;
	rv = kem_key(tok, s, label, false, &key);
	if (rv == CKR_OK) {
		rv = tok->f->C_DecryptInit(s, &m, key);
		if (rv == CKR_OK) {
			rv = tok->f->C_Decrypt(s, (CK_BYTE *)in, inlen, out, &plen);
			if (rv != CKR_OK)
				dirty = true;
		}
	}
	if (rv_token_gone(rv)) {
		pool_drop(tok, s, gen);
		gw_token_lost(tok, rvstr(rv));
	} else if (dirty) {
		pool_drop(tok, s, gen);
	} else {
		pool_put(tok, s, gen);
	}
	if (rv == CKR_OK && plen <= *outlen) {
		*outlen = plen;
		return 0;
	}
fail:
	OPENSSL_cleanse(out, *outlen);
	if (rv == CKR_KEY_HANDLE_INVALID)
		sg_seterr(err, errlen, "the key pair '%s' is not on this backend token", label);
	else
		sg_seterr(err, errlen, "the backend token could not open a key sealed to '%s': %s",
		          label, rv != CKR_OK ? rvstr(rv) : "unexpected length");
	return -1;
}

/* ---- the device CA's key pair (token.h; device.c) ---- */

/* CKA_EC_PARAMS of P-256: the OID prime256v1. */
static const CK_BYTE ca_p256[] = { 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07 };

static CK_RV
ca_find(struct gw_token *tok, CK_SESSION_HANDLE s, const char *label, CK_OBJECT_CLASS cls,
        CK_OBJECT_HANDLE *key)
{
	return labelled_key_find(tok, s, label, cls, CKK_EC, key);
}

/* The CA's private key labelled label; with create, the pair is generated
 * when absent: on the token, sensitive, never extractable, sign only, with
 * a random CKA_ID of its own so no seal's certificate can pair with it. */
static CK_RV
ca_key(struct gw_token *tok, CK_SESSION_HANDLE s, const char *label, bool create,
       CK_OBJECT_HANDLE *key)
{
	CK_BYTE id[16];
	CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
	CK_ATTRIBUTE pubt[] = {
		{ CKA_LABEL, (void *)label, strlen(label) },
		{ CKA_ID, id, sizeof(id) },
		{ CKA_TOKEN, &yes, sizeof(yes) },
		{ CKA_VERIFY, &yes, sizeof(yes) },
		{ CKA_ENCRYPT, &no, sizeof(no) },
		{ CKA_WRAP, &no, sizeof(no) },
		{ CKA_EC_PARAMS, (void *)ca_p256, sizeof(ca_p256) },
	};
	CK_ATTRIBUTE privt[] = {
		{ CKA_LABEL, (void *)label, strlen(label) },
		{ CKA_ID, id, sizeof(id) },
		{ CKA_TOKEN, &yes, sizeof(yes) },
		{ CKA_PRIVATE, &yes, sizeof(yes) },
		{ CKA_SENSITIVE, &yes, sizeof(yes) },
		{ CKA_EXTRACTABLE, &no, sizeof(no) },
		{ CKA_SIGN, &yes, sizeof(yes) },
		{ CKA_DECRYPT, &no, sizeof(no) },
		{ CKA_DERIVE, &no, sizeof(no) },
		{ CKA_UNWRAP, &no, sizeof(no) },
	};
	CK_MECHANISM m = { CKM_EC_KEY_PAIR_GEN, NULL, 0 };
	CK_SESSION_HANDLE rw;
	CK_OBJECT_HANDLE hpub, hpriv;
	CK_SLOT_ID slot;
	CK_RV rv = ca_find(tok, s, label, CKO_PRIVATE_KEY, key);

	if (rv != CKR_KEY_HANDLE_INVALID || !create)
		return rv;
	if (RAND_bytes(id, sizeof(id)) != 1)
		return CKR_FUNCTION_FAILED;
	pthread_mutex_lock(&seal_keygen_lock);
	rv = ca_find(tok, s, label, CKO_PRIVATE_KEY, key);
	if (rv == CKR_KEY_HANDLE_INVALID) {
		pthread_mutex_lock(&tok->lock);
		slot = tok->slot;
		pthread_mutex_unlock(&tok->lock);
		rv = tok->f->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &rw);
		if (rv == CKR_OK) {
			rv = tok->f->C_GenerateKeyPair(rw, &m, pubt, sizeof(pubt) / sizeof(pubt[0]),
			                               privt, sizeof(privt) / sizeof(privt[0]),
			                               &hpub, &hpriv);
			tok->f->C_CloseSession(rw);
			if (rv == CKR_OK) {
				gw_log_info("device CA key '%s' generated on the backend token", label);
				rv = ca_find(tok, s, label, CKO_PRIVATE_KEY, key);
			}
		}
	}
	pthread_mutex_unlock(&seal_keygen_lock);
	return rv;
}

/* SubjectPublicKeyInfo DER of the P-256 point raw (uncompressed). */
static int
ca_spki(const struct gw_bytes *raw, uint8_t *out, size_t *outlen)
{
	OSSL_PARAM p[3];
	EVP_PKEY_CTX *c = NULL;
	EVP_PKEY *k = NULL;
	unsigned char *q;
	int len, rv = -1;

	p[0] = OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, (char *)"prime256v1", 0);
	p[1] = OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, raw->p, raw->len);
	p[2] = OSSL_PARAM_construct_end();
	if ((c = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL)) == NULL ||
	    EVP_PKEY_fromdata_init(c) <= 0 || EVP_PKEY_fromdata(c, &k, EVP_PKEY_PUBLIC_KEY, p) <= 0)
		goto out;
	len = i2d_PUBKEY(k, NULL);
	if (len <= 0 || (size_t)len > *outlen)
		goto out;
	q = out;
	if (i2d_PUBKEY(k, &q) != len)
		goto out;
	*outlen = (size_t)len;
	rv = 0;
out:
	EVP_PKEY_free(k);
	EVP_PKEY_CTX_free(c);
	return rv;
}

int
gw_token_ca_public(struct gw_token *tok, const char *label, bool create, uint8_t *der,
                   size_t *derlen, char *err, size_t errlen)
{
	struct gw_bytes pt = { 0 }, raw = { 0 };
	CK_SESSION_HANDLE s;
	CK_OBJECT_HANDLE priv, pub;
	unsigned gen;
	CK_RV rv;
	int out = -1;

	if (!tok || !label || !der || !derlen) {
		sg_seterr(err, errlen, "device CA: bad arguments");
		return -1;
	}
	if (!gw_token_present(tok)) {
		rv = gw_token_reconnect(tok);
		if (rv != CKR_OK)
			goto fail;
	}
	rv = pool_take(tok, &s, &gen);
	if (rv != CKR_OK)
		goto fail;
	rv = ca_key(tok, s, label, create, &priv);
	if (rv == CKR_OK)
		rv = ca_find(tok, s, label, CKO_PUBLIC_KEY, &pub);
	if (rv == CKR_OK)
		rv = read_attr(tok, s, pub, CKA_EC_POINT, ATTR_MAX, &pt);
	if (rv_token_gone(rv)) {
		pool_drop(tok, s, gen);
		gw_token_lost(tok, rvstr(rv));
	} else {
		pool_put(tok, s, gen);
	}
	if (rv != CKR_OK)
		goto fail;
	if (point_raw(&pt, 65, &raw) < 0 || ca_spki(&raw, der, derlen) < 0) {
		sg_seterr(err, errlen, "the key pair '%s' on the backend token has no usable P-256 "
		          "public key", label);
		goto done;
	}
	out = 0;
	goto done;
fail:
	if (rv == CKR_KEY_HANDLE_INVALID)
		sg_seterr(err, errlen, "the key pair '%s' is not on this backend token", label);
	else if (rv == CKR_KEY_NOT_NEEDED)
		sg_seterr(err, errlen, "more than one key pair '%s' on the backend token", label);
	else
		sg_seterr(err, errlen, "the backend token could not give the key pair '%s': %s",
		          label, rvstr(rv));
done:
	bytes_free(&pt);
	bytes_free(&raw);
	return out;
}

int
gw_token_ca_sign(struct gw_token *tok, const char *label, const uint8_t digest[32], uint8_t *der,
                 size_t *derlen, char *err, size_t errlen)
{
	CK_MECHANISM m = { CKM_ECDSA, NULL, 0 };
	CK_SESSION_HANDLE s;
	CK_OBJECT_HANDLE key;
	CK_BYTE raw[64];
	CK_ULONG rawlen = sizeof(raw);
	ECDSA_SIG *es = NULL;
	BIGNUM *r = NULL, *bs = NULL;
	unsigned char *q = der;
	unsigned gen;
	bool dirty = false;
	int len, out = -1;
	CK_RV rv;

	if (!tok || !label || !digest || !der || !derlen) {
		sg_seterr(err, errlen, "device CA: bad arguments");
		return -1;
	}
	if (!gw_token_present(tok)) {
		rv = gw_token_reconnect(tok);
		if (rv != CKR_OK)
			goto fail;
	}
	rv = pool_take(tok, &s, &gen);
	if (rv != CKR_OK)
		goto fail;
	rv = ca_key(tok, s, label, false, &key);
	if (rv == CKR_OK) {
		rv = tok->f->C_SignInit(s, &m, key);
		if (rv == CKR_OK) {
			rv = tok->f->C_Sign(s, (CK_BYTE *)digest, 32, raw, &rawlen);
			if (rv != CKR_OK)
				dirty = true;
		}
	}
	if (rv_token_gone(rv)) {
		pool_drop(tok, s, gen);
		gw_token_lost(tok, rvstr(rv));
	} else if (dirty) {
		pool_drop(tok, s, gen);
	} else {
		pool_put(tok, s, gen);
	}
	if (rv != CKR_OK)
		goto fail;
	/* The token gives r || s; a certificate carries ECDSA-Sig-Value. */
	if (rawlen != sizeof(raw) || (es = ECDSA_SIG_new()) == NULL ||
	    (r = BN_bin2bn(raw, 32, NULL)) == NULL || (bs = BN_bin2bn(raw + 32, 32, NULL)) == NULL ||
	    ECDSA_SIG_set0(es, r, bs) != 1) {
		sg_seterr(err, errlen, "the backend token gave a signature of the wrong form");
		goto done;
	}
	r = bs = NULL;
	len = i2d_ECDSA_SIG(es, NULL);
	if (len <= 0 || (size_t)len > *derlen || i2d_ECDSA_SIG(es, &q) != len) {
		sg_seterr(err, errlen, "device CA signature: buffer too small");
		goto done;
	}
	*derlen = (size_t)len;
	out = 0;
	goto done;
fail:
	if (rv == CKR_KEY_HANDLE_INVALID)
		sg_seterr(err, errlen, "the key pair '%s' is not on this backend token", label);
	else
		sg_seterr(err, errlen, "the backend token could not sign with '%s': %s", label,
		          rvstr(rv));
done:
	BN_free(r);
	BN_free(bs);
	ECDSA_SIG_free(es);
	return out;
}
