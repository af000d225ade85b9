/*
 * Authentication requests and the one credential check they share
 * (verify): an attempt taken in the store first (the lockout, store.c
 * "sign-in attempts"), then the password (auth.c), then the TOTP code
 * (totp.c), then the attempt ended as a success or a counted failure.
 * Credential changes are written in their audit record's transaction.
 * What each request needs (session, factors, role) is dispatch.c's table.
 * Passwords, codes and TOTP secrets are wiped after use, never logged and
 * never put in a reply.
 *
 * Who may even try an account: only an OS user the policy lets act as it
 * (gw_policy_resolve_account: the account's own os_logins, or an act_as
 * entry). Failures from the account's own OS logins count against the
 * account (and show in the PKCS#11 token flags); failures from any other
 * uid count against that uid only, so a user allowed to act as someone
 * else cannot lock that person out by guessing — they lock only themselves
 * out of that account (docs/authentication.md, "Lockout").
 */
#include "auth_ops.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sodium.h>

#include <openssl/crypto.h>

#include "changes.h"
#include "log.h"
#include "sessionstore.h"
#include "totp.h"

#define LOCK_OWN        (-1)       /* auth_lockout.uid of the account's own logins */
#define LOCKOUT_CAP     86400      /* longest lockout, seconds */
/* An attempt being checked counts against the account for at most this
 * long (auth clock): longer than the longest check (a wait for the
 * password hashing pool, Argon2id, the TOTP unseal), so that a gateway
 * that died while checking does not hold the attempt for ever. */
#define ATTEMPT_TTL     120
/* A guess that finds max_failures attempts being checked waits this long
 * (real seconds) for one to end before it is refused as busy. */
#define ATTEMPT_WAIT    10

/* ------------------------------------------------------------------ */
/* Tables.                                                             */

static pthread_mutex_t tables_lock = PTHREAD_MUTEX_INITIALIZER;

static int
tables(struct gw_store *st)
{
	char err[256];
	int rv = 0;

	pthread_mutex_lock(&tables_lock);
	if (!gw_store_mark_test(st, &tables_lock)) {
		/* Failed and in-flight attempts (store.c, "sign-in attempts")
		 * and the sealed TOTP secrets (totp.c). */
		if (gw_store_attempts_init(st, err, sizeof(err)) < 0 ||
		    gw_totp_store_init(st, err, sizeof(err)) < 0) {
			gw_log_error("%s", err);
			rv = -1;
		}
		if (rv == 0)
			gw_store_mark_set(st, &tables_lock);
	}
	pthread_mutex_unlock(&tables_lock);
	return rv;
}

struct cred {
	const char *pin;              /* password, or password followed by the code */
	size_t pinlen;
	const char *code;             /* a code given on its own, or NULL */
	bool code_alone_ok;           /* the PIN may be just the code (context-specific) */
	bool password_only;           /* the password is checked, a code at its end ignored */
};

struct verdict {
	unsigned factors;
	time_t totp_at;
	unsigned long rv;
	const char *code;             /* protocol error token */
	bool guess;                   /* refused as a wrong guess: counts for the lockout */
	char reason[320];             /* for people and the audit log; never a secret */
};

/* ------------------------------------------------------------------ */
/* Lockout.                                                            */

/* True when the peer's OS login is one of who's own (not an act_as). */
static bool
own_login(const struct gw_person *who, const struct gw_peer *peer)
{
	if (strcmp(who->id, peer->login) == 0)
		return true;
	for (size_t i = 0; i < who->n_os_logins; i++)
		if (strcmp(who->os_logins[i], peer->login) == 0)
			return true;
	return false;
}

static int64_t
lock_key(const struct gw_person *who, const struct gw_peer *peer)
{
	return own_login(who, peer) ? LOCK_OWN : (int64_t)peer->uid;
}

static void
hhmmss(time_t t, char *buf, size_t len)
{
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(buf, len, "%Y-%m-%d %H:%M:%S UTC", &tm);
}

/* Guesses waiting for a free attempt wake when one ends here; an attempt
 * that ends on another gateway is seen at the next look. */
static pthread_mutex_t attempt_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t attempt_cond = PTHREAD_COND_INITIALIZER;
static uint64_t attempt_gen;

static uint64_t
attempt_generation(void)
{
	uint64_t g;

	pthread_mutex_lock(&attempt_lock);
	g = attempt_gen;
	pthread_mutex_unlock(&attempt_lock);
	return g;
}

static void
attempt_ended(void)
{
	pthread_mutex_lock(&attempt_lock);
	attempt_gen++;
	pthread_cond_broadcast(&attempt_cond);
	pthread_mutex_unlock(&attempt_lock);
}

/* Waits until an attempt ends or 200 ms pass; false once deadline passed. */
static bool
attempt_wait(uint64_t gen, const struct timespec *deadline)
{
	struct timespec now, until;

	clock_gettime(CLOCK_REALTIME, &now);
	if (now.tv_sec > deadline->tv_sec ||
	    (now.tv_sec == deadline->tv_sec && now.tv_nsec >= deadline->tv_nsec))
		return false;
	until = now;
	until.tv_nsec += 200 * 1000000L;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&attempt_lock);
	while (attempt_gen == gen)
		if (pthread_cond_timedwait(&attempt_cond, &attempt_lock, &until) == ETIMEDOUT)
			break;
	pthread_mutex_unlock(&attempt_lock);
	return true;
}

/* Fills v for an account (or this OS user's tries at it) locked until. */
static void
locked_verdict(struct gw_req *r, const struct gw_person *who, int64_t until, struct verdict *v)
{
	char when[40];

	/* No password is even looked at while locked. */
	hhmmss((time_t)until, when, sizeof(when));
	snprintf(v->reason, sizeof(v->reason), lock_key(who, r->peer) == LOCK_OWN ?
	         "the account %s is locked until %s after too many wrong passwords or codes; "
	         "a seal admin can unlock it (`sealctl user unlock %s`)" :
	         "this OS user may not try the account %s until %s after too many wrong "
	         "passwords or codes (a seal admin can unlock it: `sealctl user unlock %s`)",
	         who->id, when, who->id);
	v->rv = CKR_PIN_LOCKED;
	v->code = "pin_locked";
}

/* The lockout check of a login that evaluates no guess (PIN-less, inside
 * a window). Returns 1 not locked, 0 locked (v filled: CKR_PIN_LOCKED),
 * -1 store error. */
static int
locked_out(struct gw_req *r, const struct gw_person *who, time_t now, struct verdict *v)
{
	struct gw_store_attempts row;

	if (gw_store_attempts_get(r->ctx->store, who->id, lock_key(who, r->peer), now, &row) < 0) {
		snprintf(v->reason, sizeof(v->reason), "credential store error");
		return -1;
	}
	if (row.locked_until > (int64_t)now) {
		locked_verdict(r, who, row.locked_until, v);
		return 0;
	}
	return 1;
}

/* Takes one attempt at who for the peer of r before anything is checked:
 * the store lets at most max_failures be counted or in flight, so no
 * burst of parallel guesses gets more evaluated than one at a time would.
 * A guess that finds them all in flight waits (bounded) for one to end.
 * Returns 1 taken, 0 refused (locked, or busy; v filled), -1 store error. */
static int
attempt_take(struct gw_req *r, const struct gw_person *who, time_t now, struct verdict *v)
{
	struct gw_auth_settings set;
	struct gw_store_attempts row;
	struct timespec deadline;
	uint64_t gen;
	int rc;

	gw_auth_get_settings(r->ctx->auth, &set);
	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += ATTEMPT_WAIT;
	for (;;) {
		gen = attempt_generation();
		rc = gw_store_attempt_take(r->ctx->store, who->id, lock_key(who, r->peer), (int64_t)now,
		                           set.max_failures, ATTEMPT_TTL, &row);
		if (rc == GW_ATTEMPT_TAKEN)
			return 1;
		if (rc < 0) {
			snprintf(v->reason, sizeof(v->reason), "credential store error");
			return -1;
		}
		if (rc == GW_ATTEMPT_LOCKED) {
			locked_verdict(r, who, row.locked_until, v);
			return 0;
		}
		if (!attempt_wait(gen, &deadline))
			break;
		now = gw_auth_now(r->ctx->auth);
	}
	snprintf(v->reason, sizeof(v->reason),
	         "busy: %u attempts at %s are being checked; try again", set.max_failures, who->id);
	v->rv = CKR_FUNCTION_FAILED;
	v->code = "busy";
	return 0;
}

/* Ends the attempt taken by attempt_take with the outcome of the check
 * (ok: 1 accepted, 0 refused, -1 error; v->guess: a wrong guess), and says
 * in v what a counted failure did. Returns ok, or -1 when the count could
 * not be written (then nothing is accepted). */
static int
attempt_end(struct gw_req *r, const struct gw_person *who, time_t now, int ok, struct verdict *v)
{
	struct gw_auth_settings set;
	struct gw_store_attempts row;
	enum gw_attempt_outcome out = ok == 1 ? GW_ATTEMPT_OK :
	                              ok == 0 && v->guess ? GW_ATTEMPT_FAILED : GW_ATTEMPT_VOID;
	char when[40];
	size_t n;
	int rc;

	gw_auth_get_settings(r->ctx->auth, &set);
	rc = gw_store_attempt_end(r->ctx->store, who->id, lock_key(who, r->peer), (int64_t)now, out,
	                          set.max_failures, set.lockout_seconds, LOCKOUT_CAP, &row);
	attempt_ended();
	if (rc < 0) {
		gw_log_error("auth_lockout: could not count an attempt at %s", who->id);
		if (ok == 1) {
			snprintf(v->reason, sizeof(v->reason), "credential store error");
			return -1;
		}
		return ok;
	}
	if (out != GW_ATTEMPT_FAILED)
		return ok;
	r->changed = true;   /* a counted failure: its refusal is always recorded */
	n = strlen(v->reason);
	if (row.locked_until > (int64_t)now && row.failed == 0) {
		hhmmss((time_t)row.locked_until, when, sizeof(when));
		snprintf(v->reason + n, sizeof(v->reason) - n,
		         "; %u failed attempts: %s until %s", set.max_failures,
		         lock_key(who, r->peer) == LOCK_OWN ? "account locked" :
		         "this OS user may not try this account", when);
		v->rv = CKR_PIN_LOCKED;
		v->code = "pin_locked";
	} else {
		snprintf(v->reason + n, sizeof(v->reason) - n, " (%" PRId64 " of %u attempts used)",
		         row.failed, set.max_failures);
	}
	return ok;
}

/* ------------------------------------------------------------------ */
/* The credential check.                                               */

static bool
ends_in_code(const char *pin, size_t len)
{
	return len > GW_TOTP_DIGITS && gw_totp_syntax(pin + len - GW_TOTP_DIGITS, GW_TOTP_DIGITS);
}

/* The hashing pool stayed full (auth.c): refused, try again. */
static void
busy(struct verdict *v)
{
	snprintf(v->reason, sizeof(v->reason), "busy: the gateway is checking too many passwords "
	         "at once; try again");
	v->rv = CKR_FUNCTION_FAILED;
	v->code = "busy";
}

/* A wrong guess: CKR_PIN_INCORRECT unless attempt_end says it locked. */
static int
wrong(struct verdict *v, const char *code)
{
	v->rv = CKR_PIN_INCORRECT;
	v->code = code;
	v->guess = true;
	return 0;
}

/* The password, and the code, of credential c of who at now (the attempt
 * is already taken). Returns as verify. */
static int
check(struct gw_req *r, const struct gw_person *who, const struct cred *c, time_t now,
      struct verdict *v)
{
	struct gw_store *st = r->ctx->store;
	struct gw_auth *a = r->ctx->auth;
	const char *code = c->code;
	char codebuf[GW_TOTP_DIGITS + 1];
	enum gw_totp_result tr;
	int enrolled, ok = 0;
	long skew = 0;
	bool pw_needed = true;

	enrolled = gw_totp_enrolled(st, who->id);
	if (enrolled < 0) {
		snprintf(v->reason, sizeof(v->reason), "credential store error");
		return -1;
	}

	/* Which part is the password and which the code. */
	if (code == NULL && c->code_alone_ok && gw_totp_syntax(c->pin, c->pinlen)) {
		code = c->pin;
		pw_needed = false;
	}
	if (pw_needed) {
		if (c->pin == NULL || c->pinlen == 0) {
			ok = 0;
		} else if (c->password_only) {
			/* The old PIN of C_SetPIN: its code was spent by the login
			 * that sends it, so only the password is checked. */
			ok = gw_auth_check_password_n(a, st, who->id, c->pin, c->pinlen);
			if (ok == 0 && ends_in_code(c->pin, c->pinlen))
				ok = gw_auth_check_password_n(a, st, who->id, c->pin,
				                              c->pinlen - GW_TOTP_DIGITS);
			code = NULL;
		} else if (code == NULL && enrolled == 1 && ends_in_code(c->pin, c->pinlen)) {
			/* PIN convention: password followed by the code. A password
			 * that itself ends in six digits still works alone. */
			ok = gw_auth_check_password_n(a, st, who->id, c->pin, c->pinlen - GW_TOTP_DIGITS);
			if (ok == 1) {
				memcpy(codebuf, c->pin + c->pinlen - GW_TOTP_DIGITS, GW_TOTP_DIGITS);
				codebuf[GW_TOTP_DIGITS] = '\0';
				code = codebuf;
			} else if (ok == 0) {
				ok = gw_auth_check_password_n(a, st, who->id, c->pin, c->pinlen);
			}
		} else {
			ok = gw_auth_check_password_n(a, st, who->id, c->pin, c->pinlen);
		}
		if (ok == GW_AUTH_BUSY) {
			/* Not a guess: nothing was evaluated. */
			busy(v);
			return 0;
		}
		if (ok < 0) {
			snprintf(v->reason, sizeof(v->reason), "credential store error");
			return -1;
		}
		if (ok == 0) {
			snprintf(v->reason, sizeof(v->reason), "wrong password for %s", who->id);
			return wrong(v, "bad_pin");
		}
		v->factors |= GW_FACTOR_PASSWORD;
	}
	if (code != NULL) {
		if (enrolled == 0) {
			snprintf(v->reason, sizeof(v->reason),
			         "%s has no TOTP secret enrolled (`sealctl user totp-enroll`)", who->id);
			v->code = "not_enrolled";
			sodium_memzero(codebuf, sizeof(codebuf));
			return 0;
		}
		if (!gw_totp_opens_here(r->ctx->token)) {
			/* A management gateway without totp_key_file holds no key
			 * pair, so no copy of a secret opens here: refused, never
			 * waved through (docs/sites.md). */
			snprintf(v->reason, sizeof(v->reason), "a TOTP code cannot be checked at a "
			         "management gateway without totp_key_file (no key to open TOTP secrets "
			         "with): sign in with a code at a site's gateway");
			v->code = "mfa_unavailable";
			sodium_memzero(codebuf, sizeof(codebuf));
			return 0;
		}
		tr = gw_totp_verify(st, r->ctx->token, who->id, code, now, &skew, v->reason,
		                    sizeof(v->reason));
		sodium_memzero(codebuf, sizeof(codebuf));
		switch (tr) {
		case GW_TOTP_OK:
			v->factors |= GW_FACTOR_TOTP;
			v->totp_at = now;
			break;
		case GW_TOTP_WRONG:
			snprintf(v->reason, sizeof(v->reason), "wrong code for %s", who->id);
			return wrong(v, "bad_pin");
		case GW_TOTP_REPLAYED:
			snprintf(v->reason, sizeof(v->reason),
			         "replayed code for %s: a code is accepted once; wait for the next one", who->id);
			return wrong(v, "replayed");
		case GW_TOTP_SKEWED:
			snprintf(v->reason, sizeof(v->reason),
			         "the code for %s belongs to a time %ld s %s the gateway's clock: the "
			         "authenticator's clock is off by more than the %d s allowed; set it right",
			         who->id, skew < 0 ? -skew : skew, skew < 0 ? "before" : "after",
			         GW_TOTP_WINDOW * GW_TOTP_STEP);
			return wrong(v, "clock_skew");
		case GW_TOTP_NOT_ENROLLED:
			snprintf(v->reason, sizeof(v->reason), "%s has no TOTP secret enrolled", who->id);
			v->code = "not_enrolled";
			return 0;
		case GW_TOTP_ERROR:
			if (v->reason[0] == '\0')
				snprintf(v->reason, sizeof(v->reason), "TOTP check failed");
			return -1;
		}
	}
	if (v->factors == 0) {
		snprintf(v->reason, sizeof(v->reason), "no password or code given");
		return 0;
	}
	return 1;
}

/* Checks the credential c of who, presented by the peer of r: the attempt
 * is taken first (lockout), then the password and the code are checked,
 * then the attempt ends as a success or a counted failure. Returns 1
 * accepted (v->factors, v->totp_at), 0 refused (v->rv, v->code, v->reason),
 * -1 internal (v->reason). */
static int
verify(struct gw_req *r, const struct gw_person *who, const struct cred *c, struct verdict *v)
{
	struct gw_store *st = r->ctx->store;
	time_t now = gw_auth_now(r->ctx->auth);
	int ok;

	memset(v, 0, sizeof(*v));
	v->rv = CKR_PIN_INCORRECT;
	v->code = "bad_pin";
	if (st == NULL || tables(st) < 0) {
		snprintf(v->reason, sizeof(v->reason), "credential store error");
		return -1;
	}
	ok = attempt_take(r, who, now, v);
	if (ok != 1)
		return ok;
	ok = check(r, who, c, now, v);
	return attempt_end(r, who, now, ok, v);
}

/* The reply when the record of something could not be written. */
static json_t *
audit_refusal(const char *action)
{
	return sg_reply_error(CKR_DEVICE_ERROR, "audit_failed", "%s refused: its audit record could "
	                      "not be written (nothing was changed)", action);
}

/* The reply for a refusal or an internal error of verify, recorded. */
static json_t *
refusal(struct gw_req *r, const char *action, const struct gw_person *who, const char *seal,
        int rc, const struct verdict *v)
{
	gw_req_record(r, action, rc < 0 ? "error" : "denied", v->reason, who ? who->id : NULL,
	              seal, 0, NULL, 0, NULL);
	if (rc < 0)
		return sg_reply_error(CKR_DEVICE_ERROR, "internal", "%s", v->reason);
	return sg_reply_error(v->rv, v->code, "%s", v->reason);
}

static json_t *
factors_json(unsigned f)
{
	json_t *a = json_array();

	if (f & GW_FACTOR_PASSWORD)
		json_array_append_new(a, json_string("password"));
	if (f & GW_FACTOR_TOTP)
		json_array_append_new(a, json_string("totp"));
	if (f & GW_FACTOR_WINDOW)
		json_array_append_new(a, json_string("window"));
	return a;
}

/* ------------------------------------------------------------------ */
/* login / logout                                                      */

json_t *
gw_op_login(struct gw_req *r)
{
	const char *user = NULL, *pin = NULL, *code = NULL;
	const struct gw_person *who;
	uint8_t token[SG_SESSION_TOKEN_LEN];
	struct verdict v;
	struct cred c = { 0 };
	bool protected_path = false;
	time_t until;
	json_t *rep;
	int ok;

	if (sg_get_str(r->msg, "user", false, &user, SG_NAME_MAX, r->err, sizeof(r->err)) < 0 ||
	    sg_get_str(r->msg, "pin", false, &pin, SG_PIN_MAX, r->err, sizeof(r->err)) < 0 ||
	    sg_get_str(r->msg, "code", false, &code, GW_TOTP_DIGITS, r->err, sizeof(r->err)) < 0 ||
	    sg_get_bool(r->msg, "protected", false, &protected_path, r->err, sizeof(r->err)) < 0)
		return gw_bad_request(r);
	if (pin == NULL && (!protected_path || r->peer->web)) {
		/* (a window is an OS user's at a desk, never the web front's) */
		snprintf(r->err, sizeof(r->err), "field \"pin\" is missing");
		return gw_bad_request(r);
	}
	who = gw_req_resolve(r, user);
	if (who == NULL) {
		gw_req_record(r, "login", "denied", r->err, user, NULL, 0, NULL, 0, NULL);
		return sg_reply_error(CKR_USER_TYPE_INVALID, "not_allowed", "%s", r->err);
	}
	memset(&v, 0, sizeof(v));
	if (pin == NULL) {
		/* The protected authentication path: the app asked for no PIN.
		 * Only inside a window `sealctl login` opened for this uid. */
		until = gw_auth_window_until(r->ctx->auth, who->id, r->peer->uid);
		if (until == 0) {
			snprintf(r->err, sizeof(r->err),
			         "no signing window is open for %s on this OS user: run `sealctl login` "
			         "first (PIN-less login is accepted only inside a window)", who->id);
			gw_req_record(r, "login", "denied", r->err, who->id, NULL, 0, NULL, 0, NULL);
			return sg_reply_error(CKR_FUNCTION_CANCELED, "no_window", "%s", r->err);
		}
		/* A window does not outlive a lockout: the account (or this OS
		 * user's tries at it) locked after the window opened. */
		ok = tables(r->ctx->store) < 0 ? -1 : locked_out(r, who, gw_auth_now(r->ctx->auth), &v);
		if (ok != 1) {
			if (ok < 0)
				snprintf(v.reason, sizeof(v.reason), "credential store error");
			return refusal(r, "login", who, NULL, ok, &v);
		}
		v.factors = GW_FACTOR_WINDOW;
	} else {
		c.pin = pin;
		c.pinlen = strlen(pin);
		c.code = code;
		ok = verify(r, who, &c, &v);
		if (ok != 1)
			return refusal(r, "login", who, NULL, ok, &v);
	}
	ok = gw_auth_session_new_factors(r->ctx->auth, who->id, r->peer->uid, v.factors, v.totp_at,
	                                 token);
	if (ok == GW_AUTH_STORE_FAILED)
		return sg_reply_error(CKR_DEVICE_ERROR, "internal", "the session could not be stored");
	if (ok < 0)
		return sg_reply_error(CKR_HOST_MEMORY, "internal", "too many sessions");
	snprintf(r->err, sizeof(r->err), "factors:%s%s%s", (v.factors & GW_FACTOR_PASSWORD) ? " password" : "",
	         (v.factors & GW_FACTOR_TOTP) ? " totp" : "", (v.factors & GW_FACTOR_WINDOW) ? " window" : "");
	/* A login is recorded or refused (disk full: no login without its
	 * record). */
	if (gw_req_record(r, "login", "ok", r->err, who->id, NULL, 0, NULL, 0, NULL) < 0) {
		gw_auth_session_end(r->ctx->auth, token, sizeof(token), r->peer->uid);
		sodium_memzero(token, sizeof(token));
		return audit_refusal("login");
	}
	rep = sg_reply_ok();
	sg_set_bytes(rep, "session", token, sizeof(token));
	sodium_memzero(token, sizeof(token));
	json_object_set_new(rep, "user", json_string(who->id));
	json_object_set_new(rep, "name", json_string(who->name ? who->name : who->id));
	json_object_set_new(rep, "roles", gw_roles_json(who));
	json_object_set_new(rep, "factors", factors_json(v.factors));
	return rep;
}

json_t *
gw_auth_code_check(struct gw_req *r, const char *action)
{
	const char *code = NULL;
	struct cred c = { 0 };
	struct verdict v;
	int ok;

	if (sg_get_str(r->msg, "code", false, &code, GW_TOTP_DIGITS, r->err, sizeof(r->err)) < 0)
		return gw_bad_request(r);
	if (code == NULL || code[0] == '\0') {
		snprintf(r->err, sizeof(r->err), "%s through the web needs your current code with the "
		         "request", action);
		(void)gw_req_record(r, action, "denied", r->err, NULL, NULL, 0, NULL, 0, NULL);
		return sg_reply_error(CKR_FUNCTION_REJECTED, "mfa_required", "%s", r->err);
	}
	c.pin = code;
	c.pinlen = strlen(code);
	c.code_alone_ok = true;
	ok = verify(r, r->who, &c, &v);
	if (ok == 1 && !(v.factors & GW_FACTOR_TOTP)) {
		snprintf(v.reason, sizeof(v.reason), "%s through the web needs your current code",
		         action);
		v.rv = CKR_FUNCTION_REJECTED;
		v.code = "mfa_required";
		ok = 0;
	}
	if (ok != 1)
		return refusal(r, action, r->who, NULL, ok, &v);
	return NULL;
}

json_t *
gw_op_logout(struct gw_req *r)
{
	uint8_t *tok = NULL;
	size_t len = 0;

	if (sg_get_bytes(r->msg, "session", false, &tok, &len, SG_SESSION_TOKEN_LEN,
	                 r->err, sizeof(r->err)) < 0)
		return gw_bad_request(r);
	/* r->logged_in only for the uid that logged in (gw_auth_session_get):
	 * a token shown by anyone else ends nothing. */
	if (r->logged_in) {
		gw_req_record(r, "logout", "ok", NULL, NULL, NULL, 0, NULL, 0, NULL);
		gw_auth_session_end(r->ctx->auth, tok, len, r->peer->uid);
	}
	sg_free_secret(tok, len);
	return sg_reply_ok();
}

/* ------------------------------------------------------------------ */
/* Credential changes: each one and its audit record in one transaction */

/* Records the ok of r's credential change (reason names the account)
 * with apply(arg) inside the record's transaction (gw_audit_record_with):
 * both are durable or neither is. 0, or -1 (log says why). */
static int
record_change(struct gw_req *r, const char *action, const char *reason,
              gw_audit_apply_fn apply, void *arg)
{
	struct gw_audit_event ev = {
		.action = action, .outcome = "ok", .reason = reason,
		.actor = r->who ? r->who->id : NULL, .uid = r->peer->uid, .pid = r->peer->pid,
		.exe = r->peer->exe, .host = r->ctx->host,
	};
	char err[256] = "";
	uint64_t seq;

	if (r->ctx->audit == NULL) {
		gw_log_error("%s: no audit log to record it in: refused", action);
		return -1;
	}
	if (gw_audit_record_with(r->ctx->audit, &ev, apply, arg, &seq, err, sizeof(err)) < 0) {
		gw_log_error("%s refused: %s", action, err);
		return -1;
	}
	return 0;
}

int
gw_auth_sessions_revoke_tx(struct gw_store *st, const char *user, bool windows, char *err,
                           size_t errlen)
{
	if (gw_sessionstore_end_user(st, user) < 0) {
		snprintf(err, errlen, "could not end the sessions of %s", user);
		return -1;
	}
	return gw_changes_announce_tx(st, windows ? GW_CHANGE_REVOKE : GW_CHANGE_SESSION, user, err,
	                              errlen);
}

int
gw_auth_password_apply_tx(struct gw_store *st, void *arg, char *err, size_t errlen)
{
	const struct gw_password_change *c = arg;

	if (gw_store_password_set(st, c->user, c->hash) < 0) {
		snprintf(err, errlen, "could not store the password of %s", c->user);
		return -1;
	}
	/* Sessions opened with the old password end with it, at every
	 * gateway of the store, in this very transaction. */
	return gw_auth_sessions_revoke_tx(st, c->user, true, err, errlen);
}

/* user_add and user_passwd: the table (dispatch.c) lets a seal admin with
 * password and code set anyone's, and a person their own with password
 * (and code, once enrolled). A person changing their own password proves
 * the old one too (C_SetPIN sends the old PIN, which may carry the code at
 * its end), counted like any guess. Every session of the account ends. */
static json_t *
set_password(struct gw_req *r, const char *action)
{
	const char *user = NULL, *password = NULL, *old = NULL;
	struct gw_password_change pc;
	char hash[256];
	struct verdict v;
	struct cred c;
	int ok;

	if (sg_get_str(r->msg, "user", true, &user, SG_NAME_MAX, r->err, sizeof(r->err)) < 0 ||
	    sg_get_str(r->msg, "password", true, &password, SG_PIN_MAX, r->err, sizeof(r->err)) < 0 ||
	    sg_get_str(r->msg, "old_password", false, &old, SG_PIN_MAX, r->err, sizeof(r->err)) < 0)
		return gw_bad_request(r);
	if (gw_policy_person(r->snap->policy, user) == NULL) {
		snprintf(r->err, sizeof(r->err), "no person \"%s\" in the policy", user);
		return sg_reply_error(CKR_ARGUMENTS_BAD, "bad_request", "%s", r->err);
	}
	if (strlen(password) < 8) {
		snprintf(r->err, sizeof(r->err), "a password needs at least 8 characters");
		return sg_reply_error(CKR_PIN_LEN_RANGE, "bad_request", "%s", r->err);
	}
	if (r->ctx->store == NULL || tables(r->ctx->store) < 0)
		return sg_reply_error(CKR_DEVICE_ERROR, "internal", "credential store error");
	if (strcmp(action, "user_passwd") == 0 && strcmp(user, r->who->id) == 0) {
		if (old == NULL) {
			snprintf(r->err, sizeof(r->err), "changing your own password needs the current one "
			         "(field \"old_password\")");
			return gw_bad_request(r);
		}
		/* The old password, counted like any guess at it. */
		memset(&c, 0, sizeof(c));
		c.pin = old;
		c.pinlen = strlen(old);
		c.password_only = true;
		ok = verify(r, r->who, &c, &v);
		if (ok != 1)
			return refusal(r, action, NULL, NULL, ok, &v);
	}
	ok = gw_auth_hash_password(password, hash, sizeof(hash));
	if (ok == GW_AUTH_BUSY) {
		busy(&v);
		return sg_reply_error(v.rv, v.code, "%s", v.reason);
	}
	if (ok < 0) {
		sodium_memzero(hash, sizeof(hash));
		return sg_reply_error(CKR_DEVICE_ERROR, "internal", "could not hash the password");
	}
	pc.user = user;
	pc.hash = hash;
	snprintf(r->err, sizeof(r->err), "password set for %s", user);
	ok = record_change(r, action, r->err, gw_auth_password_apply_tx, &pc);
	sodium_memzero(hash, sizeof(hash));
	if (ok < 0)
		return audit_refusal(action);
	/* Sessions opened with the old password end with it (this one too:
	 * C_SetPIN's own login; the application logs in again). */
	gw_auth_session_end_user(r->ctx->auth, user);
	return sg_reply_ok();
}

json_t *gw_op_user_add(struct gw_req *r) { return set_password(r, "user_add"); }
json_t *gw_op_user_passwd(struct gw_req *r) { return set_password(r, "user_passwd"); }

int
gw_auth_enrolled(struct gw_req *r, const char *user)
{
	if (r->ctx->store == NULL || tables(r->ctx->store) < 0)
		return -1;
	return gw_totp_enrolled(r->ctx->store, user);
}

/* ------------------------------------------------------------------ */
/* TOTP enrollment and administration                                  */

struct totp_change {
	const char *user;
	struct gw_totp_copies *copies;   /* one per site (totp.h) */
	uint64_t counter;
	int removed;
};

static int
apply_totp_set(struct gw_store *st, void *arg, char *err, size_t errlen)
{
	const struct totp_change *t = arg;

	return gw_totp_store_put_sites(st, t->user, t->copies, t->counter, err, errlen);
}

static int
apply_totp_delete(struct gw_store *st, void *arg, char *err, size_t errlen)
{
	struct totp_change *t = arg;

	t->removed = gw_totp_store_delete(st, t->user);
	if (t->removed < 0) {
		snprintf(err, errlen, "could not remove the TOTP secret of %s", t->user);
		return -1;
	}
	return 0;
}

/* totp_reset: the secret goes, and with it every session that proved it. */
static int
apply_totp_reset(struct gw_store *st, void *arg, char *err, size_t errlen)
{
	struct totp_change *t = arg;

	if (apply_totp_delete(st, arg, err, errlen) < 0)
		return -1;
	return gw_auth_sessions_revoke_tx(st, t->user, true, err, errlen);
}

json_t *
gw_op_totp_enroll(struct gw_req *r)
{
	const char *code = NULL;
	uint8_t *secret = NULL;
	size_t len = 0;
	struct totp_change tc = { .user = r->who->id };
	long skew = 0;
	enum gw_totp_result tr;
	json_t *rep = NULL;

	/* sealctl makes the secret and shows it; the gateway never sends one.
	 * Replacing an active secret needs a login with a code (the table):
	 * else a stolen password could replace the second factor. */
	if (sg_get_bytes(r->msg, "secret", true, &secret, &len, GW_TOTP_SECRET_MAX, r->err,
	                 sizeof(r->err)) < 0 ||
	    sg_get_str(r->msg, "code", true, &code, GW_TOTP_DIGITS, r->err, sizeof(r->err)) < 0) {
		rep = gw_bad_request(r);
		goto out;
	}
	if (len < GW_TOTP_SECRET_MIN) {
		snprintf(r->err, sizeof(r->err), "a TOTP secret needs at least %d bytes", GW_TOTP_SECRET_MIN);
		rep = gw_bad_request(r);
		goto out;
	}
	if (r->ctx->store == NULL || tables(r->ctx->store) < 0) {
		rep = sg_reply_error(CKR_DEVICE_ERROR, "internal", "credential store error");
		goto out;
	}
	tr = gw_totp_check(secret, len, gw_auth_now(r->ctx->auth), code, 0, &tc.counter, &skew);
	if (tr != GW_TOTP_OK) {
		snprintf(r->err, sizeof(r->err), tr == GW_TOTP_SKEWED ?
		         "the code belongs to another time: the authenticator's clock is off; set it right "
		         "and try again (the secret is not active)" :
		         "the code does not match the new secret (the secret is not active)");
		rep = sg_reply_error(CKR_PIN_INCORRECT, tr == GW_TOTP_SKEWED ? "clock_skew" : "bad_pin",
		                     "%s", r->err);
		gw_req_record(r, "totp_enroll", "denied", r->err, NULL, NULL, 0, NULL, 0, NULL);
		goto out;
	}
	/* Sealed for every site first (this site's key on its token, the
	 * others' pinned keys): the record's transaction only stores them. */
	if (gw_totp_seal_sites(r->ctx->store, r->ctx->token, r->who->id, secret, len, &tc.copies,
	                       r->err, sizeof(r->err)) < 0) {
		gw_req_record(r, "totp_enroll", "error", r->err, NULL, NULL, 0, NULL, 0, NULL);
		rep = sg_reply_error(CKR_DEVICE_ERROR, "internal", "%s", r->err);
		goto out;
	}
	if (record_change(r, "totp_enroll", "TOTP secret active", apply_totp_set, &tc) < 0) {
		rep = audit_refusal("totp_enroll");
		goto out;
	}
	rep = sg_reply_ok();
	json_object_set_new(rep, "user", json_string(r->who->id));
out:
	gw_totp_copies_free(&tc.copies);
	sg_free_secret(secret, len);
	return rep;
}

/* A seal admin's request about another account (the table checked the
 * role and the factors): the target from "user". */
static const struct gw_person *
admin_target(struct gw_req *r)
{
	const char *user = NULL;
	const struct gw_person *t;

	if (sg_get_str(r->msg, "user", true, &user, SG_NAME_MAX, r->err, sizeof(r->err)) < 0)
		return NULL;
	t = gw_policy_person(r->snap->policy, user);
	if (t == NULL)
		snprintf(r->err, sizeof(r->err), "no person \"%s\" in the policy", user);
	return t;
}

json_t *
gw_op_totp_reset(struct gw_req *r)
{
	const struct gw_person *t = admin_target(r);
	struct totp_change tc = { 0 };
	char why[200];
	int enrolled;

	if (t == NULL)
		return sg_reply_error(CKR_ARGUMENTS_BAD, "bad_request", "%s", r->err);
	if (r->ctx->store == NULL || tables(r->ctx->store) < 0 ||
	    (enrolled = gw_totp_enrolled(r->ctx->store, t->id)) < 0)
		return sg_reply_error(CKR_DEVICE_ERROR, "internal", "credential store error");
	tc.user = t->id;
	snprintf(why, sizeof(why), enrolled ? "TOTP secret of %s removed; they enroll a new one" :
	         "%s had no TOTP secret", t->id);
	if (record_change(r, "totp_reset", why, apply_totp_reset, &tc) < 0)
		return audit_refusal("totp_reset");
	/* Sessions that proved the old secret end with it. */
	gw_auth_session_end_user(r->ctx->auth, t->id);
	return sg_reply_ok();
}

static int
apply_unlock(struct gw_store *st, void *arg, char *err, size_t errlen)
{
	const char *user = arg;

	if (gw_store_attempts_clear(st, user) < 0) {
		snprintf(err, errlen, "could not clear the failed attempts of %s", user);
		return -1;
	}
	/* An unlock starts the account afresh: no session opened before it
	 * lives on. The person's signing windows stay (they were opened
	 * with password and code on this machine; a lockout already
	 * refuses a PIN-less login inside one, docs/authentication.md). */
	return gw_auth_sessions_revoke_tx(st, user, false, err, errlen);
}

json_t *
gw_op_user_unlock(struct gw_req *r)
{
	const struct gw_person *t = admin_target(r);
	char why[200];

	if (t == NULL)
		return sg_reply_error(CKR_ARGUMENTS_BAD, "bad_request", "%s", r->err);
	if (r->ctx->store == NULL || tables(r->ctx->store) < 0)
		return sg_reply_error(CKR_DEVICE_ERROR, "internal", "credential store error");
	snprintf(why, sizeof(why), "unlocked %s (failed attempts and lockouts cleared)", t->id);
	if (record_change(r, "user_unlock", why, apply_unlock, (void *)t->id) < 0)
		return audit_refusal("user_unlock");
	/* (the rows are gone: what is cached here is asked again) */
	gw_auth_session_forget_user(r->ctx->auth, t->id, false);
	return sg_reply_ok();
}

/* ------------------------------------------------------------------ */
/* State for the PKCS#11 token flags                                   */

json_t *
gw_op_auth_state(struct gw_req *r)
{
	const char *user = NULL;
	const struct gw_person *who = r->who;
	const struct gw_policy *p = r->snap->policy;
	struct gw_auth_settings set;
	struct gw_store_attempts row;
	time_t now = gw_auth_now(r->ctx->auth), until;
	bool oob = false, locked;
	int enrolled;
	json_t *rep;

	if (who == NULL) {
		if (sg_get_str(r->msg, "user", false, &user, SG_NAME_MAX, r->err, sizeof(r->err)) < 0)
			return gw_bad_request(r);
		who = gw_req_resolve(r, user);
		if (who == NULL)
			return sg_reply_error(CKR_USER_TYPE_INVALID, "not_allowed", "%s", r->err);
	}
	if (r->ctx->store == NULL || tables(r->ctx->store) < 0 ||
	    gw_store_attempts_get(r->ctx->store, who->id, lock_key(who, r->peer), now, &row) < 0 ||
	    (enrolled = gw_totp_enrolled(r->ctx->store, who->id)) < 0)
		return sg_reply_error(CKR_DEVICE_ERROR, "internal", "credential store error");
	gw_auth_get_settings(r->ctx->auth, &set);
	for (size_t i = 0; i < p->n_seals; i++)
		if (p->seals[i].mfa && strncmp(p->seals[i].mfa, "out_of_band", 11) == 0 &&
		    gw_policy_may_use(p, who, &p->seals[i]))
			oob = true;
	locked = row.locked_until > (int64_t)now;
	until = gw_auth_window_until(r->ctx->auth, who->id, r->peer->uid);
	rep = sg_reply_ok();
	json_object_set_new(rep, "user", json_string(who->id));
	json_object_set_new(rep, "totp_enrolled", json_boolean(enrolled == 1));
	json_object_set_new(rep, "failed", json_integer(locked ? 0 : row.failed));
	json_object_set_new(rep, "max_failures", json_integer(set.max_failures));
	/* PKCS#11 token flags, so careful apps stop before locking. */
	json_object_set_new(rep, "locked", json_boolean(locked));
	json_object_set_new(rep, "count_low", json_boolean(!locked && row.failed > 0));
	json_object_set_new(rep, "final_try", json_boolean(!locked &&
	                    row.failed + 1 >= (int64_t)set.max_failures));
	if (locked)
		json_object_set_new(rep, "locked_until", json_integer(row.locked_until));
	json_object_set_new(rep, "protected_path", json_boolean(oob || until != 0));
	json_object_set_new(rep, "window_until", json_integer(until));
	return rep;
}

/* ------------------------------------------------------------------ */
/* Per-signature code: C_Login(CKU_CONTEXT_SPECIFIC)                  */

json_t *
gw_op_auth_context(struct gw_req *r)
{
	const char *seal_id = NULL, *pin = NULL;
	const struct gw_seal *seal;
	struct cred c = { 0 };
	struct verdict v;
	int ok;

	if (sg_get_str(r->msg, "seal", true, &seal_id, SG_NAME_MAX, r->err, sizeof(r->err)) < 0 ||
	    sg_get_str(r->msg, "pin", true, &pin, SG_PIN_MAX, r->err, sizeof(r->err)) < 0)
		return gw_bad_request(r);
	seal = gw_policy_seal(r->snap->policy, seal_id);
	if (seal == NULL || !gw_policy_may_use(r->snap->policy, r->who, seal)) {
		snprintf(r->err, sizeof(r->err), "%s may not use a seal named \"%s\"", r->who->id, seal_id);
		return sg_reply_error(CKR_KEY_HANDLE_INVALID, "no_seal", "%s", r->err);
	}
	/* The code alone, or password followed by code (pkcs11-tool sends
	 * its --pin again); either way a code must be in it. */
	c.pin = pin;
	c.pinlen = strlen(pin);
	c.code_alone_ok = true;
	ok = verify(r, r->who, &c, &v);
	if (ok == 1 && !(v.factors & GW_FACTOR_TOTP)) {
		snprintf(v.reason, sizeof(v.reason),
		         "a per-signature login needs your current code (alone, or after your password)");
		v.rv = CKR_PIN_INCORRECT;
		v.code = "mfa_required";
		ok = 0;
	}
	if (ok != 1)
		return refusal(r, "login_context", r->who, seal->id, ok, &v);
	if (gw_req_record(r, "login_context", "ok", "code for one signature", NULL, seal->id, 0, NULL,
	                  0, NULL) < 0)
		return audit_refusal("login_context");
	if (gw_auth_grant_add(r->ctx->auth, r->login.sid, seal->id) < 0)
		return sg_reply_error(CKR_HOST_MEMORY, "internal", "too many per-signature logins pending");
	return sg_reply_ok();
}

/* ------------------------------------------------------------------ */
/* Out-of-band windows and confirmations                               */

json_t *
gw_op_window_open(struct gw_req *r)
{
	int64_t secs = 0;
	time_t until, now = gw_auth_now(r->ctx->auth);
	char why[160];
	json_t *rep;

	/* Only right after a login with password and code: the table. */
	if (sg_get_int(r->msg, "seconds", false, 1, 86400, &secs, r->err, sizeof(r->err)) < 0)
		return gw_bad_request(r);
	if (gw_auth_window_open(r->ctx->auth, r->who->id, r->peer->uid, (unsigned)secs, &until) < 0)
		return sg_reply_error(CKR_HOST_MEMORY, "internal", "cannot open a window");
	snprintf(why, sizeof(why), "signing window for uid %u until %lld", (unsigned)r->peer->uid,
	         (long long)until);
	if (gw_req_record(r, "window_open", "ok", why, NULL, NULL, 0, NULL, 0, NULL) < 0) {
		gw_auth_window_close(r->ctx->auth, r->who->id, r->peer->uid);
		return audit_refusal("window_open");
	}
	rep = sg_reply_ok();
	json_object_set_new(rep, "user", json_string(r->who->id));
	json_object_set_new(rep, "until", json_integer(until));
	json_object_set_new(rep, "seconds", json_integer(until - now));
	return rep;
}

json_t *
gw_op_window_close(struct gw_req *r)
{
	const char *user = NULL;
	const struct gw_person *who = r->who;

	if (who == NULL) {
		if (sg_get_str(r->msg, "user", false, &user, SG_NAME_MAX, r->err, sizeof(r->err)) < 0)
			return gw_bad_request(r);
		who = gw_req_resolve(r, user);
		if (who == NULL)
			return sg_reply_error(CKR_USER_TYPE_INVALID, "not_allowed", "%s", r->err);
	}
	gw_auth_window_close(r->ctx->auth, who->id, r->peer->uid);
	gw_req_record(r, "window_close", "ok", NULL, who->id, NULL, 0, NULL, 0, NULL);
	return sg_reply_ok();
}

json_t *
gw_op_confirm(struct gw_req *r)
{
	const char *user = NULL, *code = NULL;
	const struct gw_person *who;
	struct gw_confirm_info info, list[16];
	struct cred c = { 0 };
	struct verdict v;
	int64_t id = 0;
	bool list_only = false;
	size_t n;
	json_t *rep, *arr;
	int ok;

	if (sg_get_str(r->msg, "user", false, &user, SG_NAME_MAX, r->err, sizeof(r->err)) < 0 ||
	    sg_get_str(r->msg, "code", false, &code, GW_TOTP_DIGITS, r->err, sizeof(r->err)) < 0 ||
	    sg_get_int(r->msg, "id", false, 0, INT64_MAX, &id, r->err, sizeof(r->err)) < 0 ||
	    sg_get_bool(r->msg, "list", false, &list_only, r->err, sizeof(r->err)) < 0)
		return gw_bad_request(r);
	who = gw_req_resolve(r, user);
	if (who == NULL)
		return sg_reply_error(CKR_USER_TYPE_INVALID, "not_allowed", "%s", r->err);
	if (list_only) {
		n = gw_auth_confirm_list(r->ctx->auth, who->id, r->peer->uid, list, 16);
		rep = sg_reply_ok();
		arr = json_array();
		for (size_t i = 0; i < n; i++)
			json_array_append_new(arr, json_pack("{s:I,s:s,s:s,s:i,s:I}", "id", (json_int_t)list[i].id,
			                      "seal", list[i].seal, "exe", list[i].exe, "pid", (int)list[i].pid,
			                      "since", (json_int_t)list[i].since));
		json_object_set_new(rep, "pending", arr);
		return rep;
	}
	if (code == NULL) {
		snprintf(r->err, sizeof(r->err), "field \"code\" is missing");
		return gw_bad_request(r);
	}
	/* Only the OS user whose window it is confirms, with a fresh code. */
	if (gw_auth_window_until(r->ctx->auth, who->id, r->peer->uid) == 0) {
		snprintf(r->err, sizeof(r->err), "no signing window is open for %s on this OS user", who->id);
		return sg_reply_error(CKR_FUNCTION_REJECTED, "no_window", "%s", r->err);
	}
	if (gw_auth_confirm_list(r->ctx->auth, who->id, r->peer->uid, list, 1) == 0) {
		snprintf(r->err, sizeof(r->err), "no signature of %s is waiting for a confirmation", who->id);
		return sg_reply_error(CKR_FUNCTION_REJECTED, "nothing_pending", "%s", r->err);
	}
	c.pin = code;
	c.pinlen = strlen(code);
	c.code_alone_ok = true;
	ok = verify(r, who, &c, &v);
	if (ok != 1)
		return refusal(r, "sign_confirm", who, NULL, ok, &v);
	if (!gw_auth_confirm_give(r->ctx->auth, who->id, r->peer->uid, (uint64_t)id, &info)) {
		snprintf(r->err, sizeof(r->err), "that signature is no longer waiting");
		return sg_reply_error(CKR_FUNCTION_REJECTED, "nothing_pending", "%s", r->err);
	}
	snprintf(r->err, sizeof(r->err), "confirmed a signature with %.64s by %.120s (pid %d)", info.seal,
	         info.exe, (int)info.pid);
	gw_req_record(r, "sign_confirm", "ok", r->err, who->id, info.seal, 0, NULL, 0, NULL);
	rep = sg_reply_ok();
	json_object_set_new(rep, "id", json_integer((json_int_t)info.id));
	json_object_set_new(rep, "seal", json_string(info.seal));
	json_object_set_new(rep, "exe", json_string(info.exe));
	json_object_set_new(rep, "pid", json_integer(info.pid));
	return rep;
}

/* ------------------------------------------------------------------ */
/* The people (seal admins; the web console's list)                   */

/* One person's lock for key: its end, or 0. -1 store error. */
static int64_t
locked_until_for(struct gw_req *r, const struct gw_person *who, int64_t key, time_t now)
{
	struct gw_store_attempts row;

	if (gw_store_attempts_get(r->ctx->store, who->id, key, now, &row) < 0)
		return -1;
	return row.locked_until > (int64_t)now ? row.locked_until : 0;
}

json_t *
gw_op_users(struct gw_req *r)
{
	const struct gw_policy *p = r->snap->policy;
	const struct gw_config *cfg = r->ctx->cfg;
	time_t now = gw_auth_now(r->ctx->auth);
	json_t *rep, *arr = json_array();

	if (r->ctx->store == NULL || tables(r->ctx->store) < 0 || arr == NULL) {
		json_decref(arr);
		return sg_reply_error(CKR_DEVICE_ERROR, "internal", "credential store error");
	}
	for (size_t i = 0; i < p->n_people; i++) {
		const struct gw_person *q = &p->people[i];
		int enrolled = gw_totp_enrolled(r->ctx->store, q->id);
		int64_t own = locked_until_for(r, q, LOCK_OWN, now);
		/* Guesses through the web count against the front's uid. */
		int64_t web = cfg && cfg->web_front ?
		              locked_until_for(r, q, (int64_t)cfg->web_front_uid, now) : 0;

		if (enrolled < 0 || own < 0 || web < 0) {
			json_decref(arr);
			return sg_reply_error(CKR_DEVICE_ERROR, "internal", "credential store error");
		}
		json_array_append_new(arr, json_pack("{s:s,s:s,s:s,s:o,s:b,s:b,s:I,s:I}",
			"id", q->id, "name", q->name ? q->name : q->id,
			"department", q->department ? q->department : "", "roles", gw_roles_json(q),
			"totp_enrolled", enrolled == 1, "locked", own > 0 || web > 0,
			"locked_until", (json_int_t)own, "web_locked_until", (json_int_t)web));
	}
	rep = sg_reply_ok();
	json_object_set_new(rep, "users", arr);
	return rep;
}

/* ------------------------------------------------------------------ */
/* Sessions in the store (sessionstore.h)                              */

static bool
feed_fresh(void *arg)
{
	return gw_changes_live(arg);
}

static int
store_put(void *arg, const struct gw_session_row *row, int64_t now)
{
	struct gw_ctx *ctx = arg;
	char err[256];

	if (gw_sessionstore_put(ctx->store, row, now, err, sizeof(err)) < 0) {
		gw_log_error("login of %s: the session could not be stored: %s", row->user, err);
		return -1;
	}
	return 0;
}

static int
store_touch(void *arg, const uint8_t *id, int64_t now, struct gw_session_row *out)
{
	struct gw_ctx *ctx = arg;

	return gw_sessionstore_touch(ctx->store, id, now, out);
}

/* Deletes the store's row of id and tells the other gateways, in one
 * transaction (the NOTIFY goes with the DELETE's commit). */
static void
store_end(void *arg, const uint8_t *id)
{
	struct gw_ctx *ctx = arg;
	char user[GW_SESSION_USER_MAX + 1], err[256] = "";
	int rc;

	if (gw_store_tx_begin(ctx->store, err, sizeof(err)) < 0)
		goto fail;
	rc = gw_sessionstore_end(ctx->store, id, user);
	if (rc < 0 || (rc == 1 && gw_changes_announce_tx(ctx->store, GW_CHANGE_SESSION, user, err,
	                                                sizeof(err)) < 0)) {
		gw_store_tx_rollback(ctx->store);
		goto fail;
	}
	if (gw_store_tx_commit(ctx->store, err, sizeof(err)) < 0)
		goto fail;
	return;
fail:
	/* The row stays until its idle time ends it; this gateway has
	 * forgotten it and the others ask the store at least every
	 * GW_AUTH_RECHECK seconds. */
	gw_log_warn("logout: the session could not be deleted from the store: %s",
	            err[0] ? err : "store error");
}

static void
on_session_change(struct gw_ctx *ctx, const char *kind, const char *id, void *arg)
{
	(void)arg;
	if (ctx->auth != NULL)
		gw_auth_session_forget_user(ctx->auth, id, strcmp(kind, GW_CHANGE_REVOKE) == 0);
}

int
gw_auth_sessions_follow(struct gw_ctx *ctx, unsigned max_age, char *err, size_t errlen)
{
	struct gw_auth_store_hooks h = {
		.fresh = feed_fresh, .put = store_put, .touch = store_touch, .end = store_end,
		.arg = ctx,
	};

	if (ctx->store == NULL)
		return 0;
	if (gw_sessionstore_init(ctx->store, err, errlen) < 0)
		return -1;
	if (gw_changes_subscribe(ctx, GW_CHANGE_SESSION, on_session_change, NULL) < 0 ||
	    gw_changes_subscribe(ctx, GW_CHANGE_REVOKE, on_session_change, NULL) < 0) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	gw_auth_use_store(ctx->auth, max_age, &h);
	return 0;
}

/* A reload: a person of the old policy who lost a role in the new one
 * loses their sessions at every gateway (each gateway that swaps does
 * it; the DELETE finds nothing the second time). A person no longer in
 * the policy is ended at the session's next use, recorded as a logout
 * naming why (dispatch.c); here only role losses. */
void
gw_auth_sessions_policy_swapped(struct gw_ctx *ctx, const struct gw_policy *old,
                                const struct gw_policy *now)
{
	char err[256];

	if (ctx->auth == NULL || old == NULL || now == NULL)
		return;
	for (size_t i = 0; i < old->n_people; i++) {
		const struct gw_person *was = &old->people[i], *is = gw_policy_person(now, was->id);
		const char *lost = NULL;

		for (size_t j = 0; is != NULL && j < was->n_roles && lost == NULL; j++)
			if (!gw_person_has_role(is, was->roles[j]))
				lost = was->roles[j];
		if (lost == NULL)
			continue;
		gw_log_info("sessions of %s end: the policy in force takes away their role %s",
		            was->id, lost);
		gw_auth_session_end_user(ctx->auth, was->id);
		if (ctx->store == NULL)
			continue;
		err[0] = '\0';
		if (gw_store_tx_begin(ctx->store, err, sizeof(err)) < 0 ||
		    gw_auth_sessions_revoke_tx(ctx->store, was->id, true, err, sizeof(err)) < 0) {
			gw_store_tx_rollback(ctx->store);
			gw_log_warn("sessions of %s: not deleted from the store: %s (each gateway "
			            "checks the role at every use)", was->id, err[0] ? err : "store error");
			continue;
		}
		if (gw_store_tx_commit(ctx->store, err, sizeof(err)) < 0)
			gw_log_warn("sessions of %s: not deleted from the store: %s", was->id, err);
	}
}
