/*
 * The card suite: our module (dlopen'ed) → a real sealgated → OpenSC →
 * a private pcscd → vpcd → a libcacard CAC card (tests/card/fixture.sh).
 * Signing with seals on the card; the card pulled mid-session and put back;
 * a look-alike card refused; a PIN counter at its final try left alone; a
 * wrong PIN tried exactly once.
 */
#include <criterion/criterion.h>
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <p11-kit/pkcs11.h>
#include <sqlite3.h>

#include "sgtest.h"

static CK_FUNCTION_LIST *f;

/* Runs "fixture.sh CMD DIR ARGS..." for "CMD ARGS...". */
static int
fixture(const char *what)
{
	char cmd[1024];
	const char *sp = strchr(what, ' ');
	int n = sp ? (int)(sp - what) : (int)strlen(what);
	int st;

	snprintf(cmd, sizeof(cmd), "sh '%s' %.*s '%s'%s", sgt_env("SG_CARD_FIXTURE"), n, what,
	         sgt_env("SG_CARD_DIR"), sp ? sp : "");
	st = system(cmd);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static long
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

static void
nap_ms(long ms)
{
	usleep((useconds_t)ms * 1000);
}

/* Token present as the module sees it (the gateway's answer). */
static bool
present(void)
{
	CK_ULONG n = 0;

	cr_assert_eq(f->C_GetSlotList(CK_TRUE, NULL, &n), CKR_OK);
	return n == 1;
}

/* Waits until present() == want; returns the milliseconds it took or -1. */
static long
wait_present(bool want, long max_ms)
{
	long t0 = now_ms();

	while (now_ms() - t0 <= max_ms) {
		if (present() == want)
			return now_ms() - t0;
		nap_ms(50);
	}
	return -1;
}

/* True if present() stays false for ms. */
static bool
stays_absent(long ms)
{
	long t0 = now_ms();

	while (now_ms() - t0 < ms) {
		if (present())
			return false;
		nap_ms(100);
	}
	return true;
}

static char *
slurp(const char *path)
{
	FILE *fp = fopen(path, "r");
	char *buf = calloc(1, 65536);
	size_t n;

	cr_assert_not_null(buf);
	if (fp) {
		n = fread(buf, 1, 65535, fp);
		buf[n] = '\0';
		fclose(fp);
	}
	return buf;
}

static char *
card_file(const char *name)
{
	char path[512];

	snprintf(path, sizeof(path), "%s/%s", sgt_env("SG_CARD_DIR"), name);
	return slurp(path);
}

/* The gateway's log emptied, so a test reads only what it caused. */
static void
empty_log(void)
{
	char path[512];
	FILE *fp;

	snprintf(path, sizeof(path), "%s/sealgated.log", sgt_env("SG_CARD_DIR"));
	fp = fopen(path, "w");
	cr_assert_not_null(fp);
	fclose(fp);
}

/* PIN verifications the card saw since it was last inserted. */
static int
card_verifies(void)
{
	char *log = card_file("bridge.log"), *p = log;
	int n = 0;

	while ((p = strstr(p, "VERIFY")) != NULL) {
		n++;
		p++;
	}
	free(log);
	return n;
}

/* `sealctl status` output and exit code. */
static char *
status(int *code)
{
	char cmd[1024];
	char *out = calloc(1, 65536);
	size_t n = 0, k;
	FILE *p;

	cr_assert_not_null(out);
	snprintf(cmd, sizeof(cmd), "'%s/tools/sealctl' --socket '%s' status 2>&1",
	         sgt_env("SEALGATE_BUILD"), sgt_env("SEALGATE_SOCKET"));
	p = popen(cmd, "r");
	cr_assert_not_null(p);
	while (n < 65535 && (k = fread(out + n, 1, 65535 - n, p)) > 0)
		n += k;
	*code = WEXITSTATUS(pclose(p));
	return out;
}

static long
count_records(const char *where)
{
	return sgt_count_records(sgt_env("SG_CARD_DIR"), where);
}

/* Every test starts from: card a in the reader, gateway up, token present. */
static void
ready(void)
{
	char *in = card_file("card-in"), *pid = card_file("sealgated.pid");

	if (pid[0] == '\0')
		cr_assert_eq(fixture("start"), 0);
	if (strncmp(in, "a", 1) != 0)
		cr_assert_eq(fixture("insert a"), 0);
	free(in);
	free(pid);
	if (wait_present(true, 10000) < 0) {
		/* a PIN refused earlier: only a restart tries again */
		cr_assert_eq(fixture("stop"), 0);
		cr_assert_eq(fixture("start"), 0);
		cr_assert_geq(wait_present(true, 10000), 0, "the card seal never became available");
	}
}

static void
load(void)
{
	f = sgt_module_load("alice");
	ready();
}

static void
unload(void)
{
	sgt_module_unload(&f);
}

TestSuite(card, .init = load, .fini = unload, .timeout = 90);

static CK_SESSION_HANDLE
open_login(const char *user)
{
	CK_SESSION_HANDLE h;
	CK_SLOT_ID s[2];
	CK_ULONG n = 2;
	char pin[64];
	CK_RV rv;

	snprintf(pin, sizeof(pin), "%s-password", user);
	cr_assert_eq(f->C_GetSlotList(CK_TRUE, s, &n), CKR_OK);
	cr_assert_eq(n, 1, "token not present");
	cr_assert_eq(f->C_OpenSession(s[0], CKF_SERIAL_SESSION, NULL, NULL, &h), CKR_OK);
	rv = f->C_Login(h, CKU_USER, (CK_UTF8CHAR_PTR)pin, strlen(pin));
	cr_assert(rv == CKR_OK || rv == CKR_USER_ALREADY_LOGGED_IN, "login: 0x%lx", rv);
	return h;
}

/* C_FindObjects for (class, label): the first error, or CKR_OK and *n. */
static CK_RV
find_rv(CK_SESSION_HANDLE h, CK_OBJECT_CLASS cls, const char *label, CK_ULONG *n)
{
	CK_ATTRIBUTE t[] = {
		{ CKA_CLASS, &cls, sizeof(cls) },
		{ CKA_LABEL, (void *)label, strlen(label) },
	};
	CK_OBJECT_HANDLE o[4];
	CK_RV rv;

	*n = 0;
	rv = f->C_FindObjectsInit(h, t, 2);
	if (rv != CKR_OK)
		return rv;
	rv = f->C_FindObjects(h, o, 4, n);
	f->C_FindObjectsFinal(h);
	return rv;
}

static CK_OBJECT_HANDLE
find(CK_SESSION_HANDLE h, CK_OBJECT_CLASS cls, const char *label)
{
	CK_ULONG n;

	return sgt_find(f, h, cls, label, &n);
}

/* The seal's certificate as the module shows it must be the card's own
 * (fixture file card-a/NICK.crt.der); returns its public key. */
static EVP_PKEY *
card_cert_key(CK_SESSION_HANDLE h, const char *label, const char *nick)
{
	CK_OBJECT_HANDLE c = find(h, CKO_CERTIFICATE, label);
	CK_ATTRIBUTE a = { CKA_VALUE, NULL, 0 };
	char path[512];
	unsigned char *der, ref[8192];
	const unsigned char *p;
	size_t reflen;
	FILE *fp;
	X509 *x;
	EVP_PKEY *k;

	cr_assert_neq(c, CK_INVALID_HANDLE, "no certificate %s", label);
	cr_assert_eq(f->C_GetAttributeValue(h, c, &a, 1), CKR_OK);
	der = malloc(a.ulValueLen);
	a.pValue = der;
	cr_assert_eq(f->C_GetAttributeValue(h, c, &a, 1), CKR_OK);
	snprintf(path, sizeof(path), "%s/card-a/%s.crt.der", sgt_env("SG_CARD_DIR"), nick);
	fp = fopen(path, "rb");
	cr_assert_not_null(fp, "%s", path);
	reflen = fread(ref, 1, sizeof(ref), fp);
	fclose(fp);
	cr_assert_eq(a.ulValueLen, reflen, "%s: not the card's certificate", label);
	cr_assert_eq(memcmp(der, ref, reflen), 0, "%s: not the card's certificate", label);
	p = der;
	x = d2i_X509(NULL, &p, (long)a.ulValueLen);
	cr_assert_not_null(x);
	k = X509_get_pubkey(x);
	X509_free(x);
	free(der);
	return k;
}

static const char doc[] = "Lease agreement 2026-11, signed with the official seal on its card.";

static CK_RV
sign(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE key, CK_MECHANISM *m, const void *data, size_t len,
     unsigned char *sig, CK_ULONG *siglen)
{
	CK_RV rv = f->C_SignInit(h, m, key);

	if (rv != CKR_OK)
		return rv;
	return f->C_Sign(h, (CK_BYTE_PTR)data, len, sig, siglen);
}

static bool
verify(EVP_PKEY *k, const EVP_MD *md, bool pss, const void *data, size_t len,
       const unsigned char *sig, size_t siglen)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	EVP_PKEY_CTX *pctx = NULL;
	bool ok;

	cr_assert_eq(EVP_DigestVerifyInit(ctx, &pctx, md, NULL, k), 1);
	if (pss) {
		EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING);
		EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST);
	}
	ok = EVP_DigestVerify(ctx, sig, siglen, data, len) == 1;
	EVP_MD_CTX_free(ctx);
	return ok;
}

/* Signs doc with the Official Seal and checks the signature. */
static void
sign_ok(CK_SESSION_HANDLE h)
{
	CK_MECHANISM m = { CKM_SHA256_RSA_PKCS, NULL, 0 };
	CK_OBJECT_HANDLE key = find(h, CKO_PRIVATE_KEY, "Official Seal");
	EVP_PKEY *pub = card_cert_key(h, "Official Seal", "seal-a");
	unsigned char sig[512];
	CK_ULONG siglen = sizeof(sig);
	CK_RV rv;

	cr_assert_neq(key, CK_INVALID_HANDLE);
	rv = sign(h, key, &m, doc, sizeof(doc) - 1, sig, &siglen);
	cr_assert_eq(rv, CKR_OK, "sign: 0x%lx", rv);
	cr_assert(verify(pub, EVP_sha256(), false, doc, sizeof(doc) - 1, sig, siglen));
	EVP_PKEY_free(pub);
}

Test(card, seals_on_the_card_sign_and_verify)
{
	CK_SESSION_HANDLE h = open_login("alice");
	CK_OBJECT_HANDLE k2 = find(h, CKO_PRIVATE_KEY, "Contract Seal");
	EVP_PKEY *pub2 = card_cert_key(h, "Contract Seal", "seal-a2");
	/* What desktop apps send: CKM_RSA_PKCS over a SHA-256 DigestInfo. */
	unsigned char di[19 + 32] = { 0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01,
		0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20 };
	CK_MECHANISM raw = { CKM_RSA_PKCS, NULL, 0 };
	CK_RSA_PKCS_PSS_PARAMS pp = { CKM_SHA256, CKG_MGF1_SHA256, 32 };
	CK_MECHANISM pss = { CKM_SHA256_RSA_PKCS_PSS, &pp, sizeof(pp) };
	unsigned char sig[512];
	CK_ULONG siglen = sizeof(sig);
	unsigned mdlen = 32;
	long before = count_records("action = 'sign' AND outcome = 'ok'");

	sign_ok(h);
	cr_assert_neq(k2, CK_INVALID_HANDLE);
	cr_assert_eq(EVP_Digest(doc, sizeof(doc) - 1, di + 19, &mdlen, EVP_sha256(), NULL), 1);
	cr_assert_eq(sign(h, k2, &raw, di, sizeof(di), sig, &siglen), CKR_OK);
	cr_assert_eq(siglen, 384, "a 3072-bit key on the card");
	cr_assert(verify(pub2, EVP_sha256(), false, doc, sizeof(doc) - 1, sig, siglen));
	siglen = sizeof(sig);
	cr_assert_eq(sign(h, k2, &pss, doc, sizeof(doc) - 1, sig, &siglen), CKR_OK);
	cr_assert(verify(pub2, EVP_sha256(), true, doc, sizeof(doc) - 1, sig, siglen));
	cr_assert_not(verify(pub2, EVP_sha256(), true, "x", 1, sig, siglen));
	cr_assert_eq(count_records("action = 'sign' AND outcome = 'ok'"), before + 3);
	EVP_PKEY_free(pub2);
	f->C_CloseSession(h);
}

Test(card, card_pulled_mid_session_then_put_back)
{
	CK_SESSION_HANDLE h = open_login("alice");
	CK_OBJECT_HANDLE key = find(h, CKO_PRIVATE_KEY, "Official Seal");
	CK_MECHANISM m = { CKM_SHA256_RSA_PKCS, NULL, 0 };
	unsigned char sig[512];
	CK_ULONG siglen = sizeof(sig);
	long removed = count_records("action = 'token_removed'");
	long inserted = count_records("action = 'token_inserted'");
	long took;
	char *out;
	int code;
	CK_ULONG n;
	CK_RV rv;

	sign_ok(h);
	cr_assert_eq(fixture("pull"), 0);
	/* pcscd polls every 0.4 s; the gateway must follow at once. */
	took = wait_present(false, 3000);
	cr_assert_geq(took, 0, "the gateway still shows the seal 3 s after the card was pulled");

	rv = sign(h, key, &m, doc, sizeof(doc) - 1, sig, &siglen);
	cr_assert(rv == CKR_DEVICE_REMOVED || rv == CKR_TOKEN_NOT_PRESENT,
	          "signing without the card: 0x%lx", rv);
	/* The seal's objects are gone with the card. */
	rv = find_rv(h, CKO_PRIVATE_KEY, "Official Seal", &n);
	cr_assert(rv == CKR_DEVICE_REMOVED || rv == CKR_TOKEN_NOT_PRESENT || (rv == CKR_OK && n == 0),
	          "the key is still listed without the card (rv 0x%lx, %lu objects)", rv, n);
	out = status(&code);
	cr_assert_eq(code, 1, "sealctl status exits 1 while the token is absent:\n%s", out);
	cr_assert(strstr(out, "Official Seal") && strstr(out, "UNAVAILABLE: card removed from reader"),
	          "status does not say which seal is missing and why:\n%s", out);
	free(out);
	cr_assert_eq(count_records("action = 'token_removed'"), removed + 1);

	cr_assert_eq(fixture("insert a"), 0);
	took = wait_present(true, 10000);
	cr_assert_geq(took, 0, "the seal did not come back after the card was put back");
	cr_assert_eq(count_records("action = 'token_inserted'"), inserted + 1);
	/* Same session, same login: the gateway logged in to the card again. */
	sign_ok(h);
	out = status(&code);
	cr_assert_eq(code, 0, "%s", out);
	cr_assert_null(strstr(out, "UNAVAILABLE"), "%s", out);
	free(out);
	f->C_CloseSession(h);
}

Test(card, a_look_alike_card_is_refused)
{
	long refused = count_records("action = 'card_refused'");
	char *out;
	int code;

	cr_assert_eq(fixture("pull"), 0);
	cr_assert_geq(wait_present(false, 3000), 0);
	/* Same token label, same PIN, other key and certificate. */
	cr_assert_eq(fixture("insert b"), 0);
	cr_assert(stays_absent(3000), "the gateway accepted a different card");
	cr_assert_eq(card_verifies(), 0, "the gateway sent its PIN to a foreign card");
	cr_assert_eq(count_records("action = 'card_refused' AND outcome = 'denied'"), refused + 1);
	out = status(&code);
	cr_assert(strstr(out, "Official Seal") && strstr(out, "refused"), "%s", out);
	free(out);

	cr_assert_eq(fixture("insert a"), 0);
	cr_assert_geq(wait_present(true, 10000), 0, "the right card was not taken back");
}

/* The binding outlives the gateway: stopped, card swapped, started again,
 * the look-alike is refused before it sees the PIN and the log says what
 * to do if the swap was meant. */
Test(card, a_look_alike_card_at_restart_is_refused)
{
	char *log;

	cr_assert_eq(fixture("stop"), 0);
	cr_assert_eq(fixture("insert b"), 0);
	empty_log();
	cr_assert_neq(fixture("start"), 0, "sealgated started on a card it is not bound to");
	cr_assert_eq(card_verifies(), 0, "the gateway sent its PIN to a foreign card at start");
	log = card_file("sealgated.log");
	cr_assert(strstr(log, "is bound to the token with serial") && strstr(log, "--rebind"),
	          "no clear error in the log:\n%s", log);
	free(log);

	cr_assert_eq(fixture("insert a"), 0);
	cr_assert_eq(fixture("start"), 0);
	cr_assert_geq(wait_present(true, 10000), 0);
	cr_assert_eq(card_verifies(), 1, "the seals' card is logged in to once");
}

/* A gateway restarted while its card is out (a reboot before anyone put the
 * card in) starts anyway, from the keys the store remembers, with every
 * seal unavailable; a look-alike put in is refused without the PIN; the
 * seals' card is taken when it comes, and signs. */
Test(card, a_gateway_started_without_its_card_waits_for_it)
{
	long inserted = count_records("action = 'token_inserted'");
	long started = count_records("action = 'gateway_start' AND detail LIKE '%\"token\":\"absent\"%'");
	CK_SESSION_HANDLE h;
	char *out, *log;
	int code;

	cr_assert_eq(fixture("stop"), 0);
	cr_assert_eq(fixture("pull"), 0);
	empty_log();
	setenv("SG_GATEWAY_WAIT", "answer", 1);
	code = fixture("start");
	unsetenv("SG_GATEWAY_WAIT");
	log = card_file("sealgated.log");
	cr_assert_eq(code, 0, "sealgated did not start without its card:\n%s", log);
	cr_assert(strstr(log, "starting without the token"), "the log does not say so:\n%s", log);
	free(log);
	out = status(&code);
	cr_assert_eq(code, 1, "status says all is well without the card:\n%s", out);
	cr_assert(strstr(out, "NOT PRESENT") && strstr(out, "Official Seal") &&
	          strstr(out, "UNAVAILABLE"), "%s", out);
	free(out);
	cr_assert(stays_absent(1500), "a token without its card");
	cr_assert_eq(count_records("action = 'gateway_start' AND detail LIKE '%\"token\":\"absent\"%'"),
	             started + 1);

	/* The look-alike: refused, never sent the PIN. */
	cr_assert_eq(fixture("insert b"), 0);
	cr_assert(stays_absent(3000), "the gateway took a card it is not bound to");
	cr_assert_eq(card_verifies(), 0, "the gateway sent its PIN to a foreign card");

	cr_assert_eq(fixture("insert a"), 0);
	cr_assert_geq(wait_present(true, 10000), 0, "the seals' card was not taken when it came");
	cr_assert_eq(card_verifies(), 1, "one login to the seals' card");
	cr_assert_eq(count_records("action = 'token_inserted'"), inserted + 1);
	h = open_login("alice");
	sign_ok(h);
	f->C_CloseSession(h);
	out = status(&code);
	cr_assert_eq(code, 0, "%s", out);
	cr_assert_null(strstr(out, "UNAVAILABLE"), "%s", out);
	free(out);
}

Test(card, final_pin_try_is_never_spent)
{
	char *out, *tries;
	int code;

	cr_assert_eq(fixture("pull"), 0);
	cr_assert_geq(wait_present(false, 3000), 0);
	cr_assert_eq(fixture("tries a 1"), 0);
	cr_assert_eq(fixture("insert a"), 0);
	cr_assert(stays_absent(3000), "the gateway logged in on the final PIN try");
	cr_assert_eq(card_verifies(), 0, "the gateway tried the PIN on its final try");
	tries = card_file("card-a/tries");
	cr_assert_eq(atoi(tries), 1, "the card's counter changed");
	free(tries);
	out = status(&code);
	cr_assert(strstr(out, "one PIN try left"), "status does not say why:\n%s", out);
	free(out);

	/* Counter reset (by an administrator): the gateway still does not try
	 * until it is restarted, deliberately. */
	cr_assert_eq(fixture("pull"), 0);
	cr_assert_eq(fixture("tries a 3"), 0);
	cr_assert_eq(fixture("insert a"), 0);
	cr_assert(stays_absent(1500));
	cr_assert_eq(card_verifies(), 0);
	cr_assert_eq(fixture("stop"), 0);
	cr_assert_eq(fixture("start"), 0);
	cr_assert_geq(wait_present(true, 10000), 0);
	cr_assert_eq(card_verifies(), 1);
}

Test(card, gateway_start_refuses_final_try_and_wrong_pin_is_tried_once)
{
	char *log, *tries, *pin;
	char path[512];
	FILE *fp;

	cr_assert_eq(fixture("stop"), 0);
	cr_assert_eq(fixture("pull"), 0);
	cr_assert_eq(fixture("tries a 1"), 0);
	cr_assert_eq(fixture("insert a"), 0);
	cr_assert_neq(fixture("start"), 0, "sealgated started on a card at its final PIN try");
	cr_assert_eq(card_verifies(), 0);
	log = card_file("sealgated.log");
	cr_assert(strstr(log, "one PIN try left"), "no clear error in the log");
	free(log);

	/* A wrong PIN file: exactly one try, then the gateway stops. */
	cr_assert_eq(fixture("pull"), 0);
	cr_assert_eq(fixture("tries a 3"), 0);
	cr_assert_eq(fixture("insert a"), 0);
	pin = card_file("card.pin");
	snprintf(path, sizeof(path), "%s/card.pin", sgt_env("SG_CARD_DIR"));
	fp = fopen(path, "w");
	cr_assert_not_null(fp);
	fputs("00000000\n", fp);   /* 8 digits: a valid length, a wrong PIN */
	fclose(fp);
	cr_assert_neq(fixture("start"), 0, "sealgated started with a wrong card PIN");
	cr_assert_eq(card_verifies(), 1, "a wrong PIN must be tried exactly once");
	tries = card_file("card-a/tries");
	cr_assert_eq(atoi(tries), 2);
	free(tries);

	fp = fopen(path, "w");
	cr_assert_not_null(fp);
	fputs(pin, fp);
	fclose(fp);
	free(pin);
	cr_assert_eq(fixture("pull"), 0);
	cr_assert_eq(fixture("tries a 3"), 0);
	cr_assert_eq(fixture("insert a"), 0);
	cr_assert_eq(fixture("start"), 0);
	cr_assert_geq(wait_present(true, 10000), 0);
}
