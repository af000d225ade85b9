/*
 * TOTP codes (liboath) and the sealed secrets of tables auth_totp and
 * auth_totp_sites: one copy of each secret per site, sealed to that site's
 * key pair (its public key pinned outside the store), opened on this
 * site's token (at a management gateway, with its key file,
 * totp_key_file) for each check and wiped right after; never logged, never
 * leaves the gateway.
 */
#include "totp.h"

#include <pthread.h>
#include <stdio.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <unistd.h>
#include <string.h>
#include <liboath/oath.h>
#include <sodium.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "log.h"
#include "protocol.h"

#define SEALED_MAX GW_TOTP_SEALED_MAX
#define AAD_PREFIX "sealgate-totp-v1:"

static pthread_once_t oath_once = PTHREAD_ONCE_INIT;
static int oath_ok;

static void
oath_start(void)
{
	oath_ok = oath_init() == OATH_OK;
}

bool
gw_totp_syntax(const char *code, size_t len)
{
	if (code == NULL || len != GW_TOTP_DIGITS)
		return false;
	for (size_t i = 0; i < len; i++)
		if (code[i] < '0' || code[i] > '9')
			return false;
	return true;
}

int
gw_totp_generate(const uint8_t *secret, size_t len, time_t t, char out[GW_TOTP_DIGITS + 1])
{
	pthread_once(&oath_once, oath_start);
	if (!oath_ok)
		return -1;
	return oath_totp_generate((const char *)secret, len, t, GW_TOTP_STEP, 0, GW_TOTP_DIGITS,
	                          out) == OATH_OK ? 0 : -1;
}

enum gw_totp_result
gw_totp_check(const uint8_t *secret, size_t len, time_t now, const char *code,
              uint64_t last_counter, uint64_t *counter, long *skew)
{
	int pos = 0, rc;
	uint64_t ctr = 0;

	*counter = 0;
	*skew = 0;
	if (!gw_totp_syntax(code, code ? strlen(code) : 0))
		return GW_TOTP_WRONG;
	pthread_once(&oath_once, oath_start);
	if (!oath_ok)
		return GW_TOTP_ERROR;
	/* One search over the wide window: a match within ±1 step is a code;
	 * further out it is a real code from a clock that is wrong, which
	 * deserves a message of its own rather than "wrong code". */
	rc = oath_totp_validate3((const char *)secret, len, now, GW_TOTP_STEP, 0,
	                         GW_TOTP_SKEW_STEPS, &pos, &ctr, code);
	if (rc < 0)
		return rc == OATH_INVALID_OTP ? GW_TOTP_WRONG : GW_TOTP_ERROR;
	if (pos > GW_TOTP_WINDOW || pos < -GW_TOTP_WINDOW) {
		*skew = (long)pos * GW_TOTP_STEP;
		return GW_TOTP_SKEWED;
	}
	if (ctr <= last_counter)
		return GW_TOTP_REPLAYED;
	*counter = ctr;
	return GW_TOTP_OK;
}

/* ---- the store (its TOTP secrets repository, gw_store_totp_*) ---- */

int
gw_totp_store_init(struct gw_store *st, char *err, size_t errlen)
{
	return gw_store_totp_init(st, err, errlen);
}

int
gw_totp_enrolled(struct gw_store *st, const char *user)
{
	return gw_store_totp_enrolled(st, user);
}

static size_t
aad_of(const char *user, uint8_t *aad, size_t max)
{
	int n = snprintf((char *)aad, max, "%s%s", AAD_PREFIX, user);

	return n < 0 || (size_t)n >= max ? 0 : (size_t)n;
}

int
gw_totp_seal(struct gw_token *tok, const char *user, const uint8_t *secret, size_t len,
             uint8_t *sealed, size_t *sealed_len, char *err, size_t errlen)
{
	uint8_t aad[SG_NAME_MAX + 32];
	size_t aadlen;

	if (len < GW_TOTP_SECRET_MIN || len > GW_TOTP_SECRET_MAX || tok == NULL ||
	    *sealed_len < SEALED_MAX) {
		snprintf(err, errlen, tok == NULL ? "no backend token to seal the secret with"
		                                  : "a TOTP secret has 16 to 64 bytes");
		return -1;
	}
	aadlen = aad_of(user, aad, sizeof(aad));
	if (aadlen == 0 ||
	    gw_token_seal(tok, GW_TOTP_WRAP_LABEL, aad, aadlen, secret, len, sealed, sealed_len,
	                  err, errlen) < 0)
		return -1;
	return 0;
}

int
gw_totp_store_put(struct gw_store *st, const char *user, const uint8_t *sealed, size_t sealed_len,
                  uint64_t counter, char *err, size_t errlen)
{
	return gw_store_totp_put(st, user, sealed, sealed_len, counter, err, errlen);
}


int
gw_totp_store_delete(struct gw_store *st, const char *user)
{
	return gw_store_totp_delete(st, user);
}

/* ---- secrets sealed to every site (docs/authentication.md, "Across sites") ----
 * A copy per site: RSA-OAEP (SHA-1, as tokens decrypt it) of a fresh 32-byte key to the site's
 * public key, and the secret under that key with XChaCha20-Poly1305:
 *   "SGT2" || sha256(site key DER) (32) || wrapped length (2, big endian)
 *   || wrapped || nonce (24) || ciphertext || tag (16)
 * with the account, the site and the key's hash bound in as associated
 * data. Sealing needs only the public key; opening, the site's token. */

#define COPY_MAGIC   "SGT2"
#define COPY_AAD     "sealgate-totp-v2"
#define KEY_MAX      GW_STORE_TOTP_KEY_MAX
#define COPY_MAX     GW_STORE_TOTP_COPY_MAX
#define WRAPPED_MAX  512          /* RSA-4096 */
#define SITES_MAX    64           /* as the sites of one policy */

struct pin {
	char site[SG_NAME_MAX + 1];
	uint8_t fp[32];
};

/* What gw_totp_sites_start set: this gateway's site, the pins of the
 * other sites' keys, and this site's own key as its token shows it. */
static struct {
	pthread_mutex_t lock;
	char site[SG_NAME_MAX + 1];
	struct pin pins[SITES_MAX];
	size_t n_pins;
	bool have_own;
	bool published;              /* own key in the store (at start, or once the token is back) */
	uint8_t own_der[KEY_MAX];
	size_t own_len;
	uint8_t own_fp[32];
	EVP_PKEY *file_key;          /* a management gateway's key pair (totp_key_file), or NULL */
} sites = { .lock = PTHREAD_MUTEX_INITIALIZER, .site = "main" };

struct site_key {
	char site[SG_NAME_MAX + 1];
	uint8_t der[KEY_MAX];
	size_t len;
	uint8_t fp[32];
};

struct key_list {
	struct site_key *k;
	size_t n;
};

static void
fp_of(const uint8_t *der, size_t len, uint8_t fp[32])
{
	crypto_hash_sha256(fp, der, len);
}

static void
fp_hex(const uint8_t fp[32], char out[65])
{
	sodium_bin2hex(out, 65, fp, 32);
}

/* This site's public key from its token (generated there on first use),
 * remembered. 0, or -1 with err (no token: -1, err "no backend token"). */
static int
own_key(struct gw_token *tok, uint8_t *der, size_t *len, uint8_t fp[32], char *err, size_t errlen)
{
	int rv = -1;

	pthread_mutex_lock(&sites.lock);
	if (tok == NULL && sites.file_key != NULL) {
		/* the key file's public half, set once at start (file_key_load) */
	} else if (!sites.have_own && tok != NULL) {
		sites.own_len = sizeof(sites.own_der);
		if (gw_token_kem_public(tok, GW_TOTP_KEM_LABEL, true, sites.own_der, &sites.own_len,
		                        err, errlen) == 0) {
			fp_of(sites.own_der, sites.own_len, sites.own_fp);
			sites.have_own = true;
		}
	} else if (tok == NULL) {
		snprintf(err, errlen, "no backend token to open the TOTP secret with");
	}
	if (sites.have_own && (tok != NULL || sites.file_key != NULL)) {
		memcpy(der, sites.own_der, sites.own_len);
		*len = sites.own_len;
		memcpy(fp, sites.own_fp, 32);
		rv = 0;
	}
	pthread_mutex_unlock(&sites.lock);
	return rv;
}

static int own_publish(struct gw_store *st, const struct site_key *own, char *err,
                       size_t errlen);

/* Whether this gateway holds a key pair of its own to open copies with:
 * its token's, or a management gateway's key file. */
static bool
own_holder(struct gw_token *tok)
{
	bool have;

	if (tok != NULL)
		return true;
	pthread_mutex_lock(&sites.lock);
	have = sites.file_key != NULL;
	pthread_mutex_unlock(&sites.lock);
	return have;
}

bool
gw_totp_opens_here(struct gw_token *tok)
{
	return own_holder(tok);
}

static void
collect_key(void *arg, const char *site, const uint8_t *der, size_t len)
{
	struct key_list *l = arg;
	struct site_key *k;

	if (l->n >= SITES_MAX + 1 || strlen(site) > SG_NAME_MAX || len > KEY_MAX)
		return;
	k = &l->k[l->n++];
	snprintf(k->site, sizeof(k->site), "%s", site);
	memcpy(k->der, der, len);
	k->len = len;
	fp_of(der, len, k->fp);
}

static const struct pin *
pin_of(const char *site)
{
	for (size_t i = 0; i < sites.n_pins; i++)
		if (strcmp(sites.pins[i].site, site) == 0)
			return &sites.pins[i];
	return NULL;
}

/* The keys to seal to: this site's (when it has a token) and each other
 * site's from the store whose hash is the one pinned for it. A site's key
 * in the store that is not its pin is refused (-1, err): whoever can write
 * the store must not get a copy sealed to a key of theirs. A site with no
 * pin is left out, as is a pinned site that has not published its key yet
 * (it gets its copy at a later sign-in). strict = false: a refused key is
 * logged and left out instead. The number of keys (in *out, to free), or -1. */
static int
seal_targets(struct gw_store *st, struct gw_token *tok, bool strict, struct site_key **out,
             char *err, size_t errlen)
{
	struct key_list l = { calloc(SITES_MAX + 2, sizeof(struct site_key)), 0 };
	struct site_key *own;
	char site[SG_NAME_MAX + 1], hex[65], why[256];
	size_t keep = 0;
	bool mine = false;
	int rv = -1;

	*out = NULL;
	if (l.k == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	pthread_mutex_lock(&sites.lock);
	snprintf(site, sizeof(site), "%s", sites.site);
	pthread_mutex_unlock(&sites.lock);
	if (own_holder(tok)) {
		own = &l.k[0];
		own->len = sizeof(own->der);
		if (own_key(tok, own->der, &own->len, own->fp, err, errlen) < 0)
			goto out;
		snprintf(own->site, sizeof(own->site), "%s", site);
		keep = l.n = 1;
		mine = true;
		if (own_publish(st, own, err, errlen) < 0)
			goto out;
	}
	if (gw_store_totp_keys(st, collect_key, &l) < 0) {
		snprintf(err, errlen, "the TOTP store could not be read (site keys)");
		goto out;
	}
	pthread_mutex_lock(&sites.lock);
	for (size_t i = keep; i < l.n; i++) {
		const struct pin *p;

		if (mine && strcmp(l.k[i].site, site) == 0)
			continue;   /* this site's: its own key, above */
		p = pin_of(l.k[i].site);
		if (p == NULL) {
			gw_log_debug("totp: the key of site %s in the store has no pin here: "
			             "no copy for it", l.k[i].site);
			continue;
		}
		if (sodium_memcmp(p->fp, l.k[i].fp, 32) != 0) {
			fp_hex(l.k[i].fp, hex);
			snprintf(why, sizeof(why), "the TOTP key of site %s in the store (sha256:%.16s…) "
			         "is not the one pinned for it in totp_site_keys: refused", l.k[i].site, hex);
			if (strict) {
				pthread_mutex_unlock(&sites.lock);
				snprintf(err, errlen, "%s", why);
				gw_log_error("%s", why);
				goto out;
			}
			gw_log_error("%s", why);
			continue;
		}
		if (keep != i)
			l.k[keep] = l.k[i];
		keep++;
	}
	pthread_mutex_unlock(&sites.lock);
	if (keep == 0) {
		snprintf(err, errlen, "no site's key to seal the TOTP secret to (a gateway without a "
		         "token seals to the sites pinned in totp_site_keys)");
		goto out;
	}
	*out = l.k;
	l.k = NULL;
	rv = (int)keep;
out:
	free(l.k);
	return rv;
}

static size_t
copy_aad(const char *user, const char *site, const uint8_t fp[32], uint8_t *aad, size_t max)
{
	size_t ul = strlen(user), sl = strlen(site), n = sizeof(COPY_AAD) + ul + 1 + sl + 1 + 32;

	if (n > max)
		return 0;
	memcpy(aad, COPY_AAD, sizeof(COPY_AAD));   /* with its NUL */
	memcpy(aad + sizeof(COPY_AAD), user, ul + 1);
	memcpy(aad + sizeof(COPY_AAD) + ul + 1, site, sl + 1);
	memcpy(aad + n - 32, fp, 32);
	return n;
}

/* One copy of secret for key k. 0, or -1 with err. */
static int
copy_seal(const char *user, const struct site_key *k, const uint8_t *secret, size_t len,
          uint8_t *out, size_t *outlen, char *err, size_t errlen)
{
	const unsigned char *p = k->der;
	EVP_PKEY *pk = d2i_PUBKEY(NULL, &p, (long)k->len);
	EVP_PKEY_CTX *c = NULL;
	uint8_t key[crypto_aead_xchacha20poly1305_ietf_KEYBYTES], aad[SG_NAME_MAX * 2 + 64];
	size_t aadlen, wlen = WRAPPED_MAX, off;
	unsigned long long clen;
	int rv = -1;

	randombytes_buf(key, sizeof(key));
	aadlen = copy_aad(user, k->site, k->fp, aad, sizeof(aad));
	if (pk == NULL || p != k->der + k->len || EVP_PKEY_get_base_id(pk) != EVP_PKEY_RSA ||
	    EVP_PKEY_get_bits(pk) < 2048 || EVP_PKEY_get_size(pk) > WRAPPED_MAX) {
		snprintf(err, errlen, "the TOTP key of site %s is not an RSA key of 2048 to 4096 bits",
		         k->site);
		goto out;
	}
	off = 4 + 32 + 2;
	if (aadlen == 0 || *outlen < off + WRAPPED_MAX + crypto_aead_xchacha20poly1305_ietf_NPUBBYTES +
	                             len + crypto_aead_xchacha20poly1305_ietf_ABYTES) {
		snprintf(err, errlen, "a TOTP copy for site %s does not fit", k->site);
		goto out;
	}
	if ((c = EVP_PKEY_CTX_new(pk, NULL)) == NULL || EVP_PKEY_encrypt_init(c) <= 0 ||
	    EVP_PKEY_CTX_set_rsa_padding(c, RSA_PKCS1_OAEP_PADDING) <= 0 ||
	    EVP_PKEY_CTX_set_rsa_oaep_md(c, EVP_sha1()) <= 0 ||
	    EVP_PKEY_CTX_set_rsa_mgf1_md(c, EVP_sha1()) <= 0 ||
	    EVP_PKEY_encrypt(c, out + off, &wlen, key, sizeof(key)) <= 0 || wlen > WRAPPED_MAX) {
		snprintf(err, errlen, "the TOTP secret could not be sealed to the key of site %s",
		         k->site);
		goto out;
	}
	memcpy(out, COPY_MAGIC, 4);
	memcpy(out + 4, k->fp, 32);
	out[36] = (uint8_t)(wlen >> 8);
	out[37] = (uint8_t)wlen;
	off += wlen;
	randombytes_buf(out + off, crypto_aead_xchacha20poly1305_ietf_NPUBBYTES);
	crypto_aead_xchacha20poly1305_ietf_encrypt(out + off + crypto_aead_xchacha20poly1305_ietf_NPUBBYTES,
	                                           &clen, secret, len, aad, aadlen, NULL, out + off,
	                                           key);
	*outlen = off + crypto_aead_xchacha20poly1305_ietf_NPUBBYTES + (size_t)clen;
	rv = 0;
out:
	sodium_memzero(key, sizeof(key));
	EVP_PKEY_CTX_free(c);
	EVP_PKEY_free(pk);
	return rv;
}

/* The fingerprint a copy says it is sealed to, or NULL when it is no copy. */
static const uint8_t *
copy_fp(const uint8_t *in, size_t len)
{
	return len > 38 && memcmp(in, COPY_MAGIC, 4) == 0 ? in + 4 : NULL;
}

/* RSA-OAEP with SHA-1, as a token decrypts it (gw_token_kem_open), with
 * a management gateway's key file. 0, or -1 with err. */
static int
file_kem_open(const uint8_t *in, size_t inlen, uint8_t *out, size_t *outlen, char *err,
              size_t errlen)
{
	EVP_PKEY_CTX *c = NULL;
	int rv = -1;

	pthread_mutex_lock(&sites.lock);
	if (sites.file_key == NULL || (c = EVP_PKEY_CTX_new(sites.file_key, NULL)) == NULL ||
	    EVP_PKEY_decrypt_init(c) <= 0 ||
	    EVP_PKEY_CTX_set_rsa_padding(c, RSA_PKCS1_OAEP_PADDING) <= 0 ||
	    EVP_PKEY_CTX_set_rsa_oaep_md(c, EVP_sha1()) <= 0 ||
	    EVP_PKEY_CTX_set_rsa_mgf1_md(c, EVP_sha1()) <= 0 ||
	    EVP_PKEY_decrypt(c, out, outlen, in, inlen) <= 0) {
		snprintf(err, errlen, "the TOTP copy does not open with this gateway's key file");
		goto out;
	}
	rv = 0;
out:
	pthread_mutex_unlock(&sites.lock);
	EVP_PKEY_CTX_free(c);
	return rv;
}

/* Opens this site's copy on tok, or with the key file when tok is NULL
 * (own: its key). 0, or -1 with err. */
static int
copy_open(struct gw_token *tok, const char *user, const struct site_key *own, const uint8_t *in,
          size_t len, uint8_t *secret, size_t *secret_len, char *err, size_t errlen)
{
	uint8_t key[WRAPPED_MAX], aad[SG_NAME_MAX * 2 + 64];   /* (a token wants the modulus' room) */
	size_t klen = sizeof(key), wlen, off, aadlen;
	unsigned long long plen;
	const uint8_t *fp = copy_fp(in, len);
	int rv = -1;

	if (fp == NULL) {
		snprintf(err, errlen, "the TOTP copy of %s for site %s is malformed", user, own->site);
		goto out;
	}
	if (sodium_memcmp(fp, own->fp, 32) != 0) {
		snprintf(err, errlen, "the TOTP copy of %s for site %s is sealed to another key than "
		         "this site's token holds", user, own->site);
		goto out;
	}
	wlen = (size_t)in[36] << 8 | in[37];
	off = 38 + wlen;
	if (wlen == 0 || wlen > WRAPPED_MAX ||
	    len < off + crypto_aead_xchacha20poly1305_ietf_NPUBBYTES +
	          crypto_aead_xchacha20poly1305_ietf_ABYTES + GW_TOTP_SECRET_MIN ||
	    len - off - crypto_aead_xchacha20poly1305_ietf_NPUBBYTES -
	          crypto_aead_xchacha20poly1305_ietf_ABYTES > *secret_len) {
		snprintf(err, errlen, "the TOTP copy of %s for site %s is malformed", user, own->site);
		goto out;
	}
	aadlen = copy_aad(user, own->site, own->fp, aad, sizeof(aad));
	if (aadlen == 0 ||
	    (tok != NULL ? gw_token_kem_open(tok, GW_TOTP_KEM_LABEL, in + 38, wlen, key, &klen, err,
	                                     errlen)
	                 : file_kem_open(in + 38, wlen, key, &klen, err, errlen)) < 0)
		goto out;
	if (klen != crypto_aead_xchacha20poly1305_ietf_KEYBYTES ||
	    crypto_aead_xchacha20poly1305_ietf_decrypt(
	            secret, &plen, NULL, in + off + crypto_aead_xchacha20poly1305_ietf_NPUBBYTES,
	            len - off - crypto_aead_xchacha20poly1305_ietf_NPUBBYTES, aad, aadlen,
	            in + off, key) != 0) {
		snprintf(err, errlen, "the TOTP copy of %s for site %s does not open (altered, or "
		         "another account's)", user, own->site);
		goto out;
	}
	*secret_len = (size_t)plen;
	rv = 0;
out:
	sodium_memzero(key, sizeof(key));
	if (rv != 0)
		sodium_memzero(secret, *secret_len);
	return rv;
}

struct gw_totp_copies {
	size_t n;
	struct {
		char site[SG_NAME_MAX + 1];
		size_t len;
		uint8_t b[COPY_MAX];
	} c[SITES_MAX + 1];
};

void
gw_totp_copies_free(struct gw_totp_copies **cp)
{
	if (cp == NULL || *cp == NULL)
		return;
	sodium_memzero(*cp, sizeof(**cp));
	free(*cp);
	*cp = NULL;
}

int
gw_totp_seal_sites(struct gw_store *st, struct gw_token *tok, const char *user,
                   const uint8_t *secret, size_t len, struct gw_totp_copies **out,
                   char *err, size_t errlen)
{
	struct gw_totp_copies *cp = NULL;
	struct site_key *k = NULL;
	int n, rv = -1;

	*out = NULL;
	if (len < GW_TOTP_SECRET_MIN || len > GW_TOTP_SECRET_MAX) {
		snprintf(err, errlen, "a TOTP secret has 16 to 64 bytes");
		return -1;
	}
	if (sodium_init() < 0 || (n = seal_targets(st, tok, true, &k, err, errlen)) < 0)
		goto out;
	if ((cp = calloc(1, sizeof(*cp))) == NULL) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	for (int i = 0; i < n; i++) {
		cp->c[i].len = sizeof(cp->c[i].b);
		if (copy_seal(user, &k[i], secret, len, cp->c[i].b, &cp->c[i].len, err, errlen) < 0)
			goto out;
		snprintf(cp->c[i].site, sizeof(cp->c[i].site), "%s", k[i].site);
		cp->n++;
	}
	*out = cp;
	cp = NULL;
	rv = 0;
out:
	gw_totp_copies_free(&cp);
	free(k);
	return rv;
}

int
gw_totp_store_put_sites(struct gw_store *st, const char *user, const struct gw_totp_copies *cp,
                        uint64_t counter, char *err, size_t errlen)
{
	if (gw_store_totp_put(st, user, NULL, 0, counter, err, errlen) < 0)
		return -1;
	for (size_t i = 0; i < cp->n; i++)
		if (gw_store_totp_copy_put(st, user, cp->c[i].site, cp->c[i].b, cp->c[i].len, NULL,
		                           NULL, 0, err, errlen) != 1)
			return -1;
	return 0;
}

/* After a sign-in opened the secret from `from` (from_site's copy, or the
 * legacy sealed secret when from_site is NULL): a copy for every pinned
 * site that has none yet, or one sealed to a key it no longer has. Not
 * fatal: the code was right; a site left out gets its copy next time. */
static void
reseal_missing(struct gw_store *st, struct gw_token *tok, const char *user, const uint8_t *secret,
               size_t len, const char *from_site, const uint8_t *from, size_t from_len)
{
	struct site_key *k = NULL;
	uint8_t have[COPY_MAX], made[COPY_MAX];
	size_t hlen, mlen;
	char err[256];
	int n, rc;

	n = seal_targets(st, tok, false, &k, err, sizeof(err));
	if (n < 0) {
		gw_log_warn("totp: copies of %s for other sites not made: %s", user, err);
		return;
	}
	for (int i = 0; i < n; i++) {
		const uint8_t *fp;

		hlen = sizeof(have);
		rc = gw_store_totp_copy_get(st, user, k[i].site, have, &hlen);
		fp = rc == 1 ? copy_fp(have, hlen) : NULL;
		if (rc < 0 || (fp != NULL && sodium_memcmp(fp, k[i].fp, 32) == 0))
			continue;
		mlen = sizeof(made);
		if (copy_seal(user, &k[i], secret, len, made, &mlen, err, sizeof(err)) < 0 ||
		    (rc = gw_store_totp_copy_put(st, user, k[i].site, made, mlen, from_site, from,
		                                 from_len, err, sizeof(err))) < 0)
			gw_log_warn("totp: the copy of %s for site %s not made: %s", user, k[i].site, err);
		else if (rc == 1)
			gw_log_info("totp: %s's secret sealed for site %s", user, k[i].site);
	}
	free(k);
}

enum gw_totp_result
gw_totp_verify(struct gw_store *st, struct gw_token *tok, const char *user, const char *code,
               time_t now, long *skew, char *err, size_t errlen)
{
	uint8_t sealed[SEALED_MAX], copy[COPY_MAX], secret[SEALED_MAX], aad[SG_NAME_MAX + 32];
	size_t sealed_len = sizeof(sealed), copy_len = sizeof(copy), secret_len = sizeof(secret);
	size_t aadlen;
	struct site_key *own = NULL;
	uint64_t last = 0, ctr = 0;
	enum gw_totp_result res = GW_TOTP_ERROR;
	bool from_copy = false;
	int rc;

	*skew = 0;
	rc = gw_store_totp_get(st, user, sealed, &sealed_len, &last);
	if (rc <= 0) {
		if (rc < 0)
			snprintf(err, errlen, "the TOTP store could not be read");
		return rc == 0 ? GW_TOTP_NOT_ENROLLED : GW_TOTP_ERROR;
	}
	if (!own_holder(tok)) {
		snprintf(err, errlen, "no backend token to open the TOTP secret with");
		goto out;
	}
	if (sodium_init() < 0 || (own = calloc(1, sizeof(*own))) == NULL) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	own->len = sizeof(own->der);
	if (own_key(tok, own->der, &own->len, own->fp, err, errlen) < 0)
		goto out;
	pthread_mutex_lock(&sites.lock);
	snprintf(own->site, sizeof(own->site), "%s", sites.site);
	pthread_mutex_unlock(&sites.lock);
	if (own_publish(st, own, err, errlen) < 0)
		goto out;
	/* This site's copy first; a secret enrolled before copies existed is
	 * the one sealed with the token's secret key (GW_TOTP_WRAP_LABEL). */
	rc = gw_store_totp_copy_get(st, user, own->site, copy, &copy_len);
	if (rc < 0) {
		snprintf(err, errlen, "the TOTP store could not be read");
		goto out;
	}
	if (rc == 1) {
		if (copy_open(tok, user, own, copy, copy_len, secret, &secret_len, err, errlen) < 0)
			goto out;
		from_copy = true;
	} else if (sealed_len > 0 && tok != NULL) {
		aadlen = aad_of(user, aad, sizeof(aad));
		if (aadlen == 0 ||
		    gw_token_unseal(tok, GW_TOTP_WRAP_LABEL, aad, aadlen, sealed, sealed_len,
		                    secret, &secret_len, err, errlen) < 0)
			goto out;
	} else {
		snprintf(err, errlen, "the TOTP secret of %s has no copy for site %s yet: sign in once "
		         "at a site that has one (it then seals one for this site)", user, own->site);
		goto out;
	}
	res = gw_totp_check(secret, secret_len, now, code, last, &ctr, skew);
	if (res == GW_TOTP_OK) {
		rc = gw_store_totp_advance(st, user, ctr);
		if (rc < 0) {
			snprintf(err, errlen, "the TOTP store could not be written");
			res = GW_TOTP_ERROR;
		} else if (rc == 0) {
			res = GW_TOTP_REPLAYED;
		}
	}
	if (res == GW_TOTP_OK)
		reseal_missing(st, tok, user, secret, secret_len, from_copy ? own->site : NULL,
		               from_copy ? copy : sealed, from_copy ? copy_len : sealed_len);
out:
	free(own);
	sodium_memzero(secret, sizeof(secret));
	sodium_memzero(sealed, sizeof(sealed));
	sodium_memzero(copy, sizeof(copy));
	return res;
}

int
gw_totp_store_set(struct gw_store *st, struct gw_token *tok, const char *user,
                  const uint8_t *secret, size_t len, uint64_t counter, char *err, size_t errlen)
{
	struct gw_totp_copies *cp = NULL;
	int rv;

	rv = gw_totp_seal_sites(st, tok, user, secret, len, &cp, err, errlen);
	if (rv == 0)
		rv = gw_totp_store_put_sites(st, user, cp, counter, err, errlen);
	gw_totp_copies_free(&cp);
	return rv;
}

/* "SITE sha256:HEX" lines; # starts a comment. */
static int
pins_load(const char *path, struct pin *pins, size_t *n, char *err, size_t errlen)
{
	FILE *f = fopen(path, "r");
	char line[512], site[SG_NAME_MAX + 1], hex[80], extra[2];
	struct stat sb;
	unsigned lineno = 0;
	size_t bin;
	int rv = -1;

	*n = 0;
	if (f == NULL) {
		snprintf(err, errlen, "totp_site_keys %s: cannot be read", path);
		return -1;
	}
	/* Whoever may rewrite the pins may have secrets sealed to a key of
	 * theirs: a file others can write is refused. */
	if (fstat(fileno(f), &sb) != 0 || (sb.st_mode & (S_IWGRP | S_IWOTH)) != 0) {
		snprintf(err, errlen, "totp_site_keys %s: writable by others than its owner "
		         "(chmod go-w)", path);
		goto out;
	}
	while (fgets(line, sizeof(line), f) != NULL) {
		char *h = strchr(line, '#');
		const char *x;
		int k;

		lineno++;
		if (h != NULL)
			*h = '\0';
		k = sscanf(line, "%128s %79s %1s", site, hex, extra);
		if (k <= 0)
			continue;
		x = strncmp(hex, "sha256:", 7) == 0 ? hex + 7 : hex;
		if (k != 2 || strlen(x) != 64 || *n >= SITES_MAX ||
		    sodium_hex2bin(pins[*n].fp, 32, x, 64, NULL, &bin, NULL) != 0 || bin != 32) {
			snprintf(err, errlen, "totp_site_keys %s:%u: expected \"SITE sha256:HEX\" (64 hex "
			         "digits; at most %d sites)", path, lineno, SITES_MAX);
			goto out;
		}
		for (size_t i = 0; i < *n; i++)
			if (strcmp(pins[i].site, site) == 0) {
				snprintf(err, errlen, "totp_site_keys %s:%u: site %s pinned twice", path,
				         lineno, site);
				goto out;
			}
		snprintf(pins[*n].site, sizeof(pins[*n].site), "%s", site);
		(*n)++;
	}
	rv = 0;
out:
	fclose(f);
	return rv;
}

struct find_key {
	const char *site;
	bool found, same;
	const uint8_t *fp;
};

static void
find_key(void *arg, const char *site, const uint8_t *der, size_t len)
{
	struct find_key *f = arg;
	uint8_t fp[32];

	if (strcmp(site, f->site) != 0)
		return;
	fp_of(der, len, fp);
	f->found = true;
	f->same = sodium_memcmp(fp, f->fp, 32) == 0;
}

/* Puts this site's key into the store unless it is there already (once
 * per start); another key there for this site is replaced, loudly. */
static int
own_publish(struct gw_store *st, const struct site_key *own, char *err, size_t errlen)
{
	struct find_key fk = { .site = own->site, .fp = own->fp };
	bool done;

	pthread_mutex_lock(&sites.lock);
	done = sites.published;
	pthread_mutex_unlock(&sites.lock);
	if (done)
		return 0;
	if (gw_store_totp_keys(st, find_key, &fk) < 0) {
		snprintf(err, errlen, "the TOTP store could not be read (site keys)");
		return -1;
	}
	if (fk.found && !fk.same)
		gw_log_warn("totp: the store held another TOTP key for site %s: replaced by this "
		            "gateway's own", own->site);
	if ((!fk.found || !fk.same) &&
	    gw_store_totp_key_put(st, own->site, own->der, own->len, err, errlen) < 0)
		return -1;
	pthread_mutex_lock(&sites.lock);
	sites.published = true;
	pthread_mutex_unlock(&sites.lock);
	return 0;
}

/* A management gateway's key pair from key_path: a PEM RSA private key
 * of 2048 to 4096 bits in a regular file of the gateway's user, readable
 * by nobody else (as the token PIN file): whoever reads it opens every
 * copy sealed for this site. Sets sites.file_key and the public half as
 * this site's own key. 0, or -1 with err. */
static int
file_key_load(const char *path, char *err, size_t errlen)
{
	int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	FILE *f = NULL;
	EVP_PKEY *pk = NULL;
	unsigned char *der = NULL;
	struct stat sb;
	int len, rv = -1;

	if (fd < 0) {
		snprintf(err, errlen, "totp_key_file %s: %s", path,
		         errno == ELOOP ? "a symbolic link; name the file itself" : strerror(errno));
		return -1;
	}
	if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
		snprintf(err, errlen, "totp_key_file %s: not a regular file", path);
		goto out;
	}
	if (sb.st_uid != geteuid() || (sb.st_mode & 077) != 0) {
		snprintf(err, errlen, "totp_key_file %s: must be owned by the gateway's user (uid %u) "
		         "and readable by nobody else (mode %04o; chmod 600 it)", path,
		         (unsigned)geteuid(), (unsigned)(sb.st_mode & 07777));
		goto out;
	}
	if ((f = fdopen(fd, "r")) == NULL) {
		snprintf(err, errlen, "totp_key_file %s: %s", path, strerror(errno));
		goto out;
	}
	fd = -1;
	pk = PEM_read_PrivateKey(f, NULL, NULL, NULL);
	if (pk == NULL || EVP_PKEY_get_base_id(pk) != EVP_PKEY_RSA || EVP_PKEY_get_bits(pk) < 2048 ||
	    EVP_PKEY_get_size(pk) > WRAPPED_MAX) {
		snprintf(err, errlen, "totp_key_file %s: not a PEM RSA private key of 2048 to 4096 "
		         "bits (openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:3072)", path);
		goto out;
	}
	len = i2d_PUBKEY(pk, &der);
	if (len <= 0 || (size_t)len > KEY_MAX) {
		snprintf(err, errlen, "totp_key_file %s: its public key does not fit", path);
		goto out;
	}
	pthread_mutex_lock(&sites.lock);
	EVP_PKEY_free(sites.file_key);
	sites.file_key = pk;
	pk = NULL;
	memcpy(sites.own_der, der, (size_t)len);
	sites.own_len = (size_t)len;
	fp_of(sites.own_der, sites.own_len, sites.own_fp);
	sites.have_own = true;
	pthread_mutex_unlock(&sites.lock);
	rv = 0;
out:
	OPENSSL_free(der);
	EVP_PKEY_free(pk);   /* (OpenSSL clears an RSA key's numbers as it frees them) */
	if (f != NULL)
		fclose(f);
	if (fd >= 0)
		close(fd);
	return rv;
}

int
gw_totp_sites_start(struct gw_store *st, struct gw_token *tok, const char *site,
                    const char *pins_path, const char *key_path, char *err, size_t errlen)
{
	struct pin *pins = calloc(SITES_MAX, sizeof(*pins));
	struct site_key *own = calloc(1, sizeof(*own));
	const struct pin *mine = NULL;
	size_t n = 0;
	char hex[65];
	int rv = -1;

	if (pins == NULL || own == NULL || sodium_init() < 0) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	if (site == NULL || strlen(site) > SG_NAME_MAX) {
		snprintf(err, errlen, "totp: no site");
		goto out;
	}
	if ((pins_path != NULL && pins_load(pins_path, pins, &n, err, errlen) < 0) ||
	    gw_store_totp_init(st, err, errlen) < 0)
		goto out;
	pthread_mutex_lock(&sites.lock);
	snprintf(sites.site, sizeof(sites.site), "%s", site);
	memcpy(sites.pins, pins, n * sizeof(*pins));
	sites.n_pins = n;
	sites.have_own = false;
	sites.published = false;
	EVP_PKEY_free(sites.file_key);
	sites.file_key = NULL;
	mine = pin_of(site);
	pthread_mutex_unlock(&sites.lock);
	if (tok != NULL && key_path != NULL) {
		snprintf(err, errlen, "totp_key_file: only a gateway without a token has one (a site's "
		         "key pair is on its token)");
		goto out;
	}
	if (tok == NULL && key_path != NULL && file_key_load(key_path, err, errlen) < 0)
		goto out;
	if (tok == NULL && key_path == NULL) {
		gw_log_info("totp: no token: this gateway opens no TOTP secret; it seals new ones to "
		            "the %zu site(s) pinned in totp_site_keys", n);
		rv = 0;
		goto out;
	}
	/* The site's key pair, made on its token at the first start, and
	 * published so that the other sites can seal to it. A token away at
	 * start is not fatal: the key is published at its first use. */
	own->len = sizeof(own->der);
	if (own_key(tok, own->der, &own->len, own->fp, err, errlen) < 0) {
		if (tok == NULL)
			goto out;
		gw_log_warn(gw_token_present(tok) ?
		            "totp: %s: this site has no TOTP key pair, so no TOTP secret opens or is "
		            "enrolled here (make one labelled " GW_TOTP_KEM_LABEL " on the token)" :
		            "totp: %s: this site's TOTP key is published once the token is back", err);
		rv = 0;
		goto out;
	}
	fp_hex(own->fp, hex);
	if (mine != NULL && sodium_memcmp(mine->fp, own->fp, 32) != 0) {
		snprintf(err, errlen, "totp_site_keys pins site %s to another key than its %s "
		         "(sha256:%s)", site, tok != NULL ? "token's" : "totp_key_file's", hex);
		goto out;
	}
	snprintf(own->site, sizeof(own->site), "%s", site);
	if (own_publish(st, own, err, errlen) < 0)
		goto out;
	gw_log_info("totp: site %s seals TOTP secrets to its key sha256:%s (pin it at the other "
	            "sites: totp_site_keys)", site, hex);
	rv = 0;
out:
	free(pins);
	free(own);
	return rv;
}
