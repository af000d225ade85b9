/*
 * The TOTP second factor (gateway/totp.c): RFC 6238 codes at a fixed time
 * (no sleeps), the ±1 step window, clock skew named as such, replay
 * refused; and the stolen-store case on real SoftHSM2 tokens: the secret
 * column is sealed by a key that stays on the token, so the store file
 * alone (or with another token) reveals nothing.
 */
#include <criterion/criterion.h>
#include <dlfcn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sqlite3.h>
#include <sodium.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <sys/stat.h>

#include "config.h"
#include "store.h"
#include "token.h"
#include "totp.h"

#define SOFTHSM "/usr/lib/softhsm/libsofthsm2.so"

/* RFC 6238 appendix B: the SHA-1 seed, and its 8-digit codes cut to 6. */
static const uint8_t rfc[] = "12345678901234567890";
#define RFC_LEN 20

static enum gw_totp_result
check(time_t now, const char *code, uint64_t last, uint64_t *ctr, long *skew)
{
	return gw_totp_check(rfc, RFC_LEN, now, code, last, ctr, skew);
}

Test(totp, rfc6238_vectors)
{
	char code[8];
	uint64_t ctr;
	long skew;

	/* T = 59 -> 94287082, T = 1111111109 -> 07081804, T = 2000000000 -> 69279037 */
	cr_assert_eq(gw_totp_generate(rfc, RFC_LEN, 59, code), 0);
	cr_assert_str_eq(code, "287082");
	cr_assert_eq(gw_totp_generate(rfc, RFC_LEN, 1111111109, code), 0);
	cr_assert_str_eq(code, "081804");
	cr_assert_eq(gw_totp_generate(rfc, RFC_LEN, 2000000000, code), 0);
	cr_assert_str_eq(code, "279037");
	cr_assert_eq(check(2000000000, "279037", 0, &ctr, &skew), GW_TOTP_OK);
	cr_assert_eq(ctr, 2000000000 / 30);
}

Test(totp, previous_step_accepted_two_ago_refused_as_skew)
{
	const time_t t = 1700000000;     /* a fixed clock, not a sleep */
	char now_c[8], prev[8], prev2[8], next[8], far[8];
	uint64_t ctr;
	long skew;

	gw_totp_generate(rfc, RFC_LEN, t, now_c);
	gw_totp_generate(rfc, RFC_LEN, t - 30, prev);
	gw_totp_generate(rfc, RFC_LEN, t - 60, prev2);
	gw_totp_generate(rfc, RFC_LEN, t + 30, next);
	gw_totp_generate(rfc, RFC_LEN, t + 300, far);
	cr_assert_eq(check(t, now_c, 0, &ctr, &skew), GW_TOTP_OK);
	cr_assert_eq(check(t, prev, 0, &ctr, &skew), GW_TOTP_OK, "one step back is in the window");
	cr_assert_eq(ctr, (uint64_t)(t - 30) / 30);
	cr_assert_eq(check(t, next, 0, &ctr, &skew), GW_TOTP_OK, "one step ahead is in the window");
	cr_assert_eq(check(t, prev2, 0, &ctr, &skew), GW_TOTP_SKEWED, "two steps back is refused");
	cr_assert_eq(skew, -60);
	cr_assert_eq(check(t, far, 0, &ctr, &skew), GW_TOTP_SKEWED);
	cr_assert_eq(skew, 300);
}

Test(totp, replay_and_wrong_codes)
{
	const time_t t = 1700000000;
	char c[8], prev[8];
	uint64_t ctr, used;
	long skew;

	gw_totp_generate(rfc, RFC_LEN, t, c);
	gw_totp_generate(rfc, RFC_LEN, t - 30, prev);
	cr_assert_eq(check(t, c, 0, &used, &skew), GW_TOTP_OK);
	/* The same code again, or an older one, after it was accepted. */
	cr_assert_eq(check(t, c, used, &ctr, &skew), GW_TOTP_REPLAYED);
	cr_assert_eq(check(t, prev, used, &ctr, &skew), GW_TOTP_REPLAYED);
	c[5] = c[5] == '9' ? '0' : (char)(c[5] + 1);
	cr_assert_eq(check(t, c, 0, &ctr, &skew), GW_TOTP_WRONG);
	cr_assert_eq(check(t, "12345", 0, &ctr, &skew), GW_TOTP_WRONG);
	cr_assert_eq(check(t, "12345a", 0, &ctr, &skew), GW_TOTP_WRONG);
	cr_assert_eq(check(t, "1234567", 0, &ctr, &skew), GW_TOTP_WRONG);
	cr_assert_eq(check(t, NULL, 0, &ctr, &skew), GW_TOTP_WRONG);
	cr_assert(gw_totp_syntax("000000", 6));
	cr_assert_not(gw_totp_syntax("00000 ", 6));
}

/* ---- sealed in the store, on real tokens ---- */

static char dir[64];

static void
sh(const char *fmt, ...)
{
	char cmd[2048];
	va_list ap;
	int r;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	r = system(cmd);
	cr_assert_eq(r, 0, "command failed (%d): %s", r, cmd);
}

/* Opens the token in subdirectory sub (made by mktoken.sh). */
static struct gw_token *
open_token(const char *sub)
{
	static struct gw_config cfg;
	struct gw_token *tok = NULL;
	char conf[256], err[512];

	snprintf(conf, sizeof(conf), "%s/%s/softhsm2.conf", dir, sub);
	setenv("SOFTHSM2_CONF", conf, 1);
	memset(&cfg, 0, sizeof(cfg));
	cfg.backend_module = SOFTHSM;
	cfg.backend_token = "pkcs11:token=sg-totp";
	cfg.backend_sessions = 2;
	cr_assert_eq(gw_token_open(&cfg, "1234", &tok, err, sizeof(err)), 0, "%s", err);
	return tok;
}

static void
setup(void)
{
	const char *src = getenv("SEALGATE_SOURCE");

	cr_assert_not_null(src, "SEALGATE_SOURCE must be set (run through meson test)");
	strcpy(dir, "/tmp/sg-totp-XXXXXX");
	cr_assert(mkdtemp(dir));
	/* Two tokens with the same label and PIN: "the thief's own token". */
	sh("%s/tests/backend/mktoken.sh %s/a sg-totp 1234 k:01:EC:prime256v1 >/dev/null", src, dir);
	sh("%s/tests/backend/mktoken.sh %s/b sg-totp 1234 k:01:EC:prime256v1 >/dev/null", src, dir);
	cr_assert(dlopen(SOFTHSM, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE));
}

static void
teardown(void)
{
	sh("rm -rf %s", dir);
}

TestSuite(totp_store, .init = setup, .fini = teardown, .timeout = 120);

static bool
contains(const uint8_t *hay, size_t n, const uint8_t *needle, size_t m)
{
	for (size_t i = 0; i + m <= n; i++)
		if (memcmp(hay + i, needle, m) == 0)
			return true;
	return false;
}

Test(totp_store, stolen_store_reveals_no_secret)
{
	const uint8_t secret[20] = "sealgate-test-secret";
	const time_t t = 1700000000;
	struct gw_store *st;
	struct gw_token *ta, *tb;
	char path[256], err[512], c[8];
	uint8_t blob[GW_STORE_TOTP_COPY_MAX], out[64];
	size_t bloblen = 0, outlen;
	sqlite3 *db;
	sqlite3_stmt *q;
	long skew;

	snprintf(path, sizeof(path), "%s/store.db", dir);
	cr_assert_eq(gw_store_open(path, &st, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(gw_totp_store_init(st, err, sizeof(err)), 0, "%s", err);
	ta = open_token("a");
	cr_assert_eq(gw_totp_enrolled(st, "alice"), 0);
	cr_assert_eq(gw_totp_store_set(st, ta, "alice", secret, sizeof(secret), 0, err, sizeof(err)),
	             0, "%s", err);
	cr_assert_eq(gw_totp_enrolled(st, "alice"), 1);

	/* With the token: codes check, once each. */
	gw_totp_generate(secret, sizeof(secret), t, c);
	cr_assert_eq(gw_totp_verify(st, ta, "alice", c, t, &skew, err, sizeof(err)), GW_TOTP_OK, "%s", err);
	cr_assert_eq(gw_totp_verify(st, ta, "alice", c, t, &skew, err, sizeof(err)), GW_TOTP_REPLAYED);
	gw_totp_generate(secret, sizeof(secret), t + 30, c);
	cr_assert_eq(gw_totp_verify(st, ta, "alice", c, t + 30, &skew, err, sizeof(err)), GW_TOTP_OK);

	/* The thief reads the file: the column is empty, and the site's copy
	 * holds nothing of the secret. */
	cr_assert_eq(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	cr_assert_eq(sqlite3_prepare_v2(db, "SELECT length(secret) FROM auth_totp WHERE user = 'alice'",
	                                -1, &q, NULL), SQLITE_OK);
	cr_assert_eq(sqlite3_step(q), SQLITE_ROW);
	cr_assert_eq(sqlite3_column_int(q, 0), 0);
	sqlite3_finalize(q);
	cr_assert_eq(sqlite3_prepare_v2(db, "SELECT sealed FROM auth_totp_sites WHERE user = 'alice'",
	                                -1, &q, NULL), SQLITE_OK);
	cr_assert_eq(sqlite3_step(q), SQLITE_ROW);
	bloblen = (size_t)sqlite3_column_bytes(q, 0);
	cr_assert(bloblen > sizeof(secret) && bloblen <= sizeof(blob));
	memcpy(blob, sqlite3_column_blob(q, 0), bloblen);
	cr_assert_eq(sqlite3_step(q), SQLITE_DONE, "one copy, for the one site");
	sqlite3_finalize(q);
	sqlite3_close(db);
	cr_assert_not(contains(blob, bloblen, secret, 8), "the sealed copy contains the secret");

	/* The file with another token (same label, same PIN): the key is not there. */
	gw_token_close(&ta);
	tb = open_token("b");
	gw_totp_generate(secret, sizeof(secret), t + 60, c);
	cr_assert_eq(gw_totp_verify(st, tb, "alice", c, t + 60, &skew, err, sizeof(err)), GW_TOTP_ERROR);
	gw_token_close(&tb);

	/* Back on the right token: a copy moved to another account does not
	 * open (the account is bound in), nor does a changed byte. */
	ta = open_token("a");
	cr_assert_eq(gw_totp_store_put(st, "mallory", (const uint8_t *)"", 0, 0, err, sizeof(err)), 0,
	             "%s", err);
	cr_assert_eq(gw_store_totp_copy_put(st, "mallory", "main", blob, bloblen, NULL, NULL, 0, err,
	                                    sizeof(err)), 1, "%s", err);
	cr_assert_eq(gw_totp_verify(st, ta, "mallory", c, t + 60, &skew, err, sizeof(err)),
	             GW_TOTP_ERROR);
	cr_assert(strstr(err, "does not open") != NULL, "%s", err);
	blob[bloblen - 1] ^= 1;
	cr_assert_eq(gw_store_totp_copy_put(st, "alice", "main", blob, bloblen, NULL, NULL, 0, err,
	                                    sizeof(err)), 1, "%s", err);
	cr_assert_eq(gw_totp_verify(st, ta, "alice", c, t + 60, &skew, err, sizeof(err)),
	             GW_TOTP_ERROR);
	blob[bloblen - 1] ^= 1;
	cr_assert_eq(gw_store_totp_copy_put(st, "alice", "main", blob, bloblen, NULL, NULL, 0, err,
	                                    sizeof(err)), 1, "%s", err);
	cr_assert_eq(gw_totp_verify(st, ta, "alice", c, t + 60, &skew, err, sizeof(err)), GW_TOTP_OK,
	             "%s", err);

	/* A secret sealed before copies per site (the token's secret key, in
	 * auth_totp.secret) still opens, and its first sign-in seals the
	 * site's copy: a store made before keeps working. */
	outlen = sizeof(blob);
	cr_assert_eq(gw_totp_seal(ta, "alice", secret, sizeof(secret), blob, &outlen, err,
	                          sizeof(err)), 0, "%s", err);
	cr_assert_eq(gw_totp_store_put(st, "alice", blob, outlen, 2, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(gw_store_totp_copy_get(st, "alice", "main", out, &(size_t){ sizeof(out) }), 0,
	             "the old-format row has no copy yet");
	gw_totp_generate(secret, sizeof(secret), t + 90, c);
	cr_assert_eq(gw_totp_verify(st, ta, "alice", c, t + 90, &skew, err, sizeof(err)), GW_TOTP_OK,
	             "%s", err);
	{
		uint8_t cp[GW_STORE_TOTP_COPY_MAX];
		size_t cplen = sizeof(cp);

		cr_assert_eq(gw_store_totp_copy_get(st, "alice", "main", cp, &cplen), 1,
		             "the first sign-in made the site's copy");
	}
	bloblen = outlen;
	outlen = sizeof(out);
	cr_assert_eq(gw_token_unseal(ta, GW_TOTP_WRAP_LABEL, (const uint8_t *)"sealgate-totp-v1:alice", 22,
	                             blob, bloblen, out, &outlen, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(memcmp(out, secret, sizeof(secret)), 0);
	outlen = sizeof(out);
	cr_assert_eq(gw_token_unseal(ta, GW_TOTP_WRAP_LABEL, (const uint8_t *)"sealgate-totp-v1:mallory", 24,
	                             blob, bloblen, out, &outlen, err, sizeof(err)), -1);
	blob[bloblen - 1] ^= 1;
	outlen = sizeof(out);
	cr_assert_eq(gw_token_unseal(ta, GW_TOTP_WRAP_LABEL, (const uint8_t *)"sealgate-totp-v1:alice", 22,
	                             blob, bloblen, out, &outlen, err, sizeof(err)), -1);
	/* The wrapping key is on the token, and not even its PIN reads it out. */
	{
		char q2[600], line[600];
		bool listed = false;
		FILE *p;
		int ok;
		snprintf(q2, sizeof(q2), "SOFTHSM2_CONF=%s/a/softhsm2.conf pkcs11-tool --module %s "
		         "--token-label sg-totp --login --pin 1234 --list-objects --type secrkey 2>&1",
		         dir, SOFTHSM);
		p = popen(q2, "r");
		cr_assert_not_null(p);
		while (fgets(line, sizeof(line), p) != NULL)
			listed = listed || strstr(line, GW_TOTP_WRAP_LABEL) != NULL;
		pclose(p);
		cr_assert(listed, "no key '%s' on the token", GW_TOTP_WRAP_LABEL);
		/* nor the private key of the site's pair: sensitive, and never
		 * extractable (pkcs11-tool reads no private key to try) */
		{
			bool in = false, guarded = false;

			snprintf(q2, sizeof(q2), "SOFTHSM2_CONF=%s/a/softhsm2.conf pkcs11-tool --module %s "
			         "--token-label sg-totp --login --pin 1234 --list-objects --type privkey "
			         "2>&1", dir, SOFTHSM);
			p = popen(q2, "r");
			cr_assert_not_null(p);
			while (fgets(line, sizeof(line), p) != NULL) {
				if (strstr(line, "Object;") != NULL)
					in = false;
				if (strstr(line, "label:") != NULL && strstr(line, GW_TOTP_KEM_LABEL) != NULL)
					in = true;
				if (in && strstr(line, "Access:") != NULL)
					guarded = strstr(line, "sensitive") != NULL &&
					          strstr(line, "never extractable") != NULL;
			}
			pclose(p);
			cr_assert(guarded, "the site's TOTP private key is not sensitive and never "
			          "extractable");
		}
		snprintf(q2, sizeof(q2), "SOFTHSM2_CONF=%s/a/softhsm2.conf pkcs11-tool --module %s "
		         "--token-label sg-totp --login --pin 1234 --read-object --type secrkey "
		         "--label %s -o %s/key.bin 2>&1", dir, SOFTHSM, GW_TOTP_WRAP_LABEL, dir);
		p = popen(q2, "r");
		cr_assert_not_null(p);
		while (fgets(line, sizeof(line), p) != NULL)
			;
		ok = pclose(p);
		cr_assert_neq(ok, 0, "the TOTP wrapping key was readable");
	}
	gw_token_close(&ta);
	gw_store_close(&st);
}

Test(totp_store, reset_removes_the_secret)
{
	const uint8_t secret[20] = "another-test-secret!";
	struct gw_store *st;
	struct gw_token *ta;
	char path[256], err[512];

	snprintf(path, sizeof(path), "%s/store2.db", dir);
	cr_assert_eq(gw_store_open(path, &st, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(gw_totp_store_init(st, err, sizeof(err)), 0);
	ta = open_token("a");
	cr_assert_eq(gw_totp_store_set(st, ta, "bob", secret, sizeof(secret), 5, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(gw_totp_store_delete(st, "bob"), 1);
	cr_assert_eq(gw_totp_store_delete(st, "bob"), 0);
	cr_assert_eq(gw_totp_enrolled(st, "bob"), 0);
	gw_token_close(&ta);
	gw_store_close(&st);
}

/* "SITE sha256:HEX" for each site key in the store, into dir/pins. */
static void
pin_line(void *arg, const char *site, const uint8_t *der, size_t len)
{
	uint8_t fp[crypto_hash_sha256_BYTES];
	char hex[2 * sizeof(fp) + 1];

	crypto_hash_sha256(fp, der, len);
	sodium_bin2hex(hex, sizeof(hex), fp, sizeof(fp));
	fprintf(arg, "%s sha256:%s\n", site, hex);
}

static const char *
write_pins(struct gw_store *st)
{
	static char path[128];
	FILE *f;

	snprintf(path, sizeof(path), "%s/pins", dir);
	f = fopen(path, "w");
	cr_assert_not_null(f);
	fprintf(f, "# pinned by the operators\n");
	cr_assert_eq(gw_store_totp_keys(st, pin_line, f), 2);
	fclose(f);
	return path;
}

static int
has_copy(struct gw_store *st, const char *user, const char *site)
{
	uint8_t b[GW_STORE_TOTP_COPY_MAX];
	size_t n = sizeof(b);

	return gw_store_totp_copy_get(st, user, site, b, &n);
}

Test(totp_store, a_site_pinned_later_gets_its_copy_and_a_tokenless_gateway_seals_only)
{
	const uint8_t secret[20] = "a-secret-for-2-sites";
	const time_t t = 1700000000;
	struct gw_store *st;
	struct gw_token *tok;
	char path[256], err[512], c[8];
	const char *pins;
	long skew;

	snprintf(path, sizeof(path), "%s/store3.db", dir);
	cr_assert_eq(gw_store_open(path, &st, err, sizeof(err)), 0, "%s", err);
	/* Site b's gateway starts: its key pair is made and published. */
	tok = open_token("b");
	cr_assert_eq(gw_totp_sites_start(st, tok, "b", NULL, NULL, err, sizeof(err)), 0, "%s", err);
	gw_token_close(&tok);
	/* Site a, nothing pinned yet: alice's secret is sealed for a only. */
	tok = open_token("a");
	cr_assert_eq(gw_totp_sites_start(st, tok, "a", NULL, NULL, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(gw_totp_store_set(st, tok, "alice", secret, sizeof(secret), 0, err, sizeof(err)),
	             0, "%s", err);
	cr_assert_eq(has_copy(st, "alice", "a"), 1);
	cr_assert_eq(has_copy(st, "alice", "b"), 0, "a copy for a site nobody pinned");
	/* Pinned: her next sign-in at a seals b's copy. (Pins others may
	 * rewrite are refused.) */
	pins = write_pins(st);
	cr_assert_eq(chmod(pins, 0666), 0);
	cr_assert_eq(gw_totp_sites_start(st, tok, "a", pins, NULL, err, sizeof(err)), -1);
	cr_assert(strstr(err, "writable by others") != NULL, "%s", err);
	cr_assert_eq(chmod(pins, 0644), 0);
	cr_assert_eq(gw_totp_sites_start(st, tok, "a", pins, NULL, err, sizeof(err)), 0, "%s", err);
	gw_totp_generate(secret, sizeof(secret), t, c);
	cr_assert_eq(gw_totp_verify(st, tok, "alice", c, t, &skew, err, sizeof(err)), GW_TOTP_OK,
	             "%s", err);
	cr_assert_eq(has_copy(st, "alice", "b"), 1, "the sign-in at a made no copy for b");
	gw_token_close(&tok);
	/* ... which b's token opens; a code is used once for both sites. */
	tok = open_token("b");
	cr_assert_eq(gw_totp_sites_start(st, tok, "b", pins, NULL, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(gw_totp_verify(st, tok, "alice", c, t, &skew, err, sizeof(err)),
	             GW_TOTP_REPLAYED);
	gw_totp_generate(secret, sizeof(secret), t + 30, c);
	cr_assert_eq(gw_totp_verify(st, tok, "alice", c, t + 30, &skew, err, sizeof(err)), GW_TOTP_OK,
	             "%s", err);
	gw_token_close(&tok);
	/* A copy is made only from the secret it was opened from: one opened
	 * before a re-enrolment brings nothing of the old secret back. */
	cr_assert_eq(gw_store_totp_copy_put(st, "alice", "c", (const uint8_t *)"x", 1, "a",
	                                    (const uint8_t *)"stale", 5, err, sizeof(err)), 0);
	cr_assert_eq(has_copy(st, "alice", "c"), 0);

	/* A management gateway (no token) with the pins seals carol's secret
	 * for a and b, keeps none for itself and opens none. */
	cr_assert_eq(gw_totp_sites_start(st, NULL, "hq", pins, NULL, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(gw_totp_store_set(st, NULL, "carol", secret, sizeof(secret), 0, err, sizeof(err)),
	             0, "%s", err);
	cr_assert_eq(has_copy(st, "carol", "a"), 1);
	cr_assert_eq(has_copy(st, "carol", "b"), 1);
	cr_assert_eq(has_copy(st, "carol", "hq"), 0);
	gw_totp_generate(secret, sizeof(secret), t + 60, c);
	cr_assert_eq(gw_totp_verify(st, NULL, "carol", c, t + 60, &skew, err, sizeof(err)),
	             GW_TOTP_ERROR);
	/* Without pins it has no site to seal to: refused, nothing stored. */
	cr_assert_eq(gw_totp_sites_start(st, NULL, "hq", NULL, NULL, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(gw_totp_store_set(st, NULL, "dave", secret, sizeof(secret), 0, err, sizeof(err)),
	             -1);
	cr_assert_eq(gw_totp_enrolled(st, "dave"), 0);
	gw_store_close(&st);
}

/* A management gateway (no token) with its own key pair in a 0600 file
 * (totp_key_file, docs/sites.md): its key is published and pinned like a
 * site's, a secret enrolled at a site gets a copy for it, and it checks a
 * code itself, once only for the group. */
Test(totp_store, a_management_gateway_with_a_key_file_checks_codes)
{
	const uint8_t secret[20] = "a-secret-for-the-hq!";
	const time_t t = 1700000000;
	struct gw_store *st;
	struct gw_token *tok;
	char path[256], key[256], err[512], c[8];
	const char *pins;
	EVP_PKEY *pk;
	FILE *f;
	long skew;

	snprintf(path, sizeof(path), "%s/store4.db", dir);
	cr_assert_eq(gw_store_open(path, &st, err, sizeof(err)), 0, "%s", err);
	tok = open_token("a");
	cr_assert_eq(gw_totp_sites_start(st, tok, "a", NULL, NULL, err, sizeof(err)), 0, "%s", err);
	/* A key file others may read is refused; a site with a token has none. */
	snprintf(key, sizeof(key), "%s/hq-totp.pem", dir);
	pk = EVP_RSA_gen(2048);
	cr_assert_not_null(pk);
	f = fopen(key, "w");
	cr_assert_not_null(f);
	cr_assert(PEM_write_PrivateKey(f, pk, NULL, NULL, 0, NULL, NULL));
	fclose(f);
	EVP_PKEY_free(pk);
	cr_assert_eq(chmod(key, 0640), 0);
	cr_assert_eq(gw_totp_sites_start(st, NULL, "hq", NULL, key, err, sizeof(err)), -1);
	cr_assert(strstr(err, "chmod 600") != NULL, "%s", err);
	cr_assert_eq(chmod(key, 0600), 0);
	cr_assert_eq(gw_totp_sites_start(st, tok, "a", NULL, key, err, sizeof(err)), -1);
	cr_assert_eq(gw_totp_sites_start(st, NULL, "hq", NULL, key, err, sizeof(err)), 0, "%s", err);
	cr_assert(gw_totp_opens_here(NULL));
	/* Both keys pinned; alice enrols at a: a copy for a and one for hq. */
	pins = write_pins(st);
	cr_assert_eq(gw_totp_sites_start(st, tok, "a", pins, NULL, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(gw_totp_store_set(st, tok, "alice", secret, sizeof(secret), 0, err, sizeof(err)),
	             0, "%s", err);
	cr_assert_eq(has_copy(st, "alice", "hq"), 1);
	gw_token_close(&tok);
	/* Another key file than hq's pin refuses the start. */
	snprintf(path, sizeof(path), "%s/other-totp.pem", dir);
	pk = EVP_RSA_gen(2048);
	cr_assert_not_null(pk);
	f = fopen(path, "w");
	cr_assert_not_null(f);
	cr_assert(PEM_write_PrivateKey(f, pk, NULL, NULL, 0, NULL, NULL));
	fclose(f);
	EVP_PKEY_free(pk);
	cr_assert_eq(chmod(path, 0600), 0);
	cr_assert_eq(gw_totp_sites_start(st, NULL, "hq", pins, path, err, sizeof(err)), -1);
	cr_assert(strstr(err, "totp_key_file's") != NULL, "%s", err);
	/* At hq, without any token: a right code, then the same again, a wrong one. */
	cr_assert_eq(gw_totp_sites_start(st, NULL, "hq", pins, key, err, sizeof(err)), 0, "%s", err);
	gw_totp_generate(secret, sizeof(secret), t, c);
	cr_assert_eq(gw_totp_verify(st, NULL, "alice", c, t, &skew, err, sizeof(err)), GW_TOTP_OK,
	             "%s", err);
	cr_assert_eq(gw_totp_verify(st, NULL, "alice", c, t, &skew, err, sizeof(err)),
	             GW_TOTP_REPLAYED);
	gw_totp_generate(secret, sizeof(secret), t + 30, c);
	c[0] = c[0] == '9' ? '0' : (char)(c[0] + 1);
	cr_assert_eq(gw_totp_verify(st, NULL, "alice", c, t + 30, &skew, err, sizeof(err)),
	             GW_TOTP_WRONG);
	/* Without the key file again, nothing opens here. */
	cr_assert_eq(gw_totp_sites_start(st, NULL, "hq", pins, NULL, err, sizeof(err)), 0, "%s", err);
	cr_assert_not(gw_totp_opens_here(NULL));
	gw_store_close(&st);
}
