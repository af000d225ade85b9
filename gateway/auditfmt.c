/*
 * The audit trail's formats (auditfmt.h): canonical record encoding and
 * hash chain, checkpoint message and its signature check, the JSON-lines
 * export, and the verifier that names every place a log was changed.
 * Pure: shared by sealgated and the offline verifier in sealctl.
 */
#include "auditfmt.h"
#include "protocol.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#define ENC_NULL        0xffffffffu     /* length of a NULL string */
#define PROBLEMS_MAX    200             /* then "… and more" */

static const uint8_t enc_magic[8] = { 'S', 'G', 'A', 'U', 'D', 'I', 'T', '1' };
static const uint8_t cp_magic[8] = { 'S', 'G', 'C', 'H', 'K', 'P', 'T', '1' };
static const uint8_t cp2_magic[8] = { 'S', 'G', 'C', 'H', 'K', 'P', 'T', '2' };



/* The encoder writes into a bounded buffer, counting what does not fit, so
 * a caller can size the buffer with a first pass. */
struct enc {
	uint8_t *buf;
	size_t cap, len;
	bool fail;
};

static void
put(struct enc *e, const void *p, size_t n)
{
	if (n == 0)
		return;
	if (e->buf && n <= e->cap && e->len <= e->cap - n)
		memcpy(e->buf + e->len, p, n);
	e->len += n;
}

static void
put_u32(struct enc *e, uint32_t v)
{
	uint8_t b[4] = { v >> 24, v >> 16, v >> 8, v };

	put(e, b, 4);
}

static void
put_u64(struct enc *e, uint64_t v)
{
	uint8_t b[8];

	for (int i = 7; i >= 0; i--, v >>= 8)
		b[i] = (uint8_t)v;
	put(e, b, 8);
}

static void
put_i64(struct enc *e, int64_t v)
{
	put_u64(e, (uint64_t)v);   /* two's complement */
}

static void
put_str(struct enc *e, const char *s)
{
	size_t n;

	if (!s) {
		put_u32(e, ENC_NULL);
		return;
	}
	n = strlen(s);
	if (n >= ENC_NULL) {
		e->fail = true;
		return;
	}
	put_u32(e, (uint32_t)n);
	put(e, s, n);
}

/* Byte fields: absent and empty are the same value (length 0). */
static void
put_bin(struct enc *e, const uint8_t *p, size_t n)
{
	if (!p)
		n = 0;
	if (n >= ENC_NULL) {
		e->fail = true;
		return;
	}
	put_u32(e, (uint32_t)n);
	put(e, p, n);
}

static void
encode(struct enc *e, const struct gw_audit_row *r)
{
	put(e, enc_magic, sizeof(enc_magic));
	put_u64(e, r->seq);
	put_i64(e, r->ts_ns);
	put_str(e, r->action);
	put_str(e, r->outcome);
	put_str(e, r->reason);
	put_str(e, r->actor);
	put_i64(e, r->uid);
	put_i64(e, r->pid);
	put_str(e, r->exe);
	put_str(e, r->host);
	put_str(e, r->seal);
	put_i64(e, r->application);
	put_bin(e, r->doc_digest, r->doc_digest_len);
	put_bin(e, r->signed_digest, r->signed_digest_len);
	put_u64(e, r->mechanism);
	put_str(e, r->detail);
}

size_t
gw_audit_row_encode(const struct gw_audit_row *row, uint8_t *buf, size_t buflen)
{
	struct enc e = { .buf = buf, .cap = buflen };

	encode(&e, row);
	return e.fail ? 0 : e.len;
}

/*
 * Verifying a log hashes every record, so the per-record overhead matters
 * as much as the hash: SHA-256 is fetched once (EVP_sha256() made
 * EVP_DigestInit_ex fetch it again for every record), and the record is
 * encoded into a stack buffer behind prev and hashed in one call instead
 * of ~30 small updates.
 */
static EVP_MD *sha256_md;
static pthread_once_t sha256_once = PTHREAD_ONCE_INIT;
/* Each thread's digest context, kept: EVP_Digest made and freed one (two
 * allocations and the provider's context) for every record. */
static pthread_key_t sha256_ctx_key;
static bool sha256_ctx_keyed;

static void
sha256_ctx_free(void *c)
{
	EVP_MD_CTX_free(c);
}

static void
sha256_fetch(void)
{
	sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
	sha256_ctx_keyed = pthread_key_create(&sha256_ctx_key, sha256_ctx_free) == 0;
}

/* SHA-256 of p with the thread's kept context (a fresh one when it cannot
 * be kept). 0, or -1. */
static int
sha256_once_over(const uint8_t *p, size_t n, uint8_t out[GW_AUDIT_HASH_LEN])
{
	EVP_MD_CTX *c = NULL;
	unsigned int len = 0;
	bool kept = false;
	int rv = -1;

	pthread_once(&sha256_once, sha256_fetch);
	if (!sha256_md)
		return -1;
	if (sha256_ctx_keyed && (c = pthread_getspecific(sha256_ctx_key)) != NULL)
		kept = true;
	else if ((c = EVP_MD_CTX_new()) != NULL && sha256_ctx_keyed &&
	         pthread_setspecific(sha256_ctx_key, c) == 0)
		kept = true;
	if (c && EVP_DigestInit_ex2(c, sha256_md, NULL) && EVP_DigestUpdate(c, p, n) &&
	    EVP_DigestFinal_ex(c, out, &len) && len == GW_AUDIT_HASH_LEN)
		rv = 0;
	if (!kept)
		EVP_MD_CTX_free(c);
	return rv;
}

int
gw_audit_row_hash(const uint8_t prev[GW_AUDIT_HASH_LEN], const struct gw_audit_row *row,
                  uint8_t hash[GW_AUDIT_HASH_LEN])
{
	uint8_t stack[1024], *buf = stack;
	size_t len;
	int rv = -1;

	len = gw_audit_row_encode(row, stack + GW_AUDIT_HASH_LEN, sizeof(stack) - GW_AUDIT_HASH_LEN);
	if (len == 0)
		goto out;
	if (len > sizeof(stack) - GW_AUDIT_HASH_LEN) {
		/* A long detail: encode again into a buffer of the right size. */
		buf = malloc(GW_AUDIT_HASH_LEN + len);
		if (!buf || gw_audit_row_encode(row, buf + GW_AUDIT_HASH_LEN, len) != len)
			goto out;
	}
	memcpy(buf, prev, GW_AUDIT_HASH_LEN);
	if (sha256_once_over(buf, GW_AUDIT_HASH_LEN + len, hash) != 0)
		goto out;
	rv = 0;
out:
	if (buf != stack)
		free(buf);
	return rv;
}


/* ---- hex ---- */

void
gw_hex(const uint8_t *p, size_t n, char *out)
{
	static const char d[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = d[p[i] >> 4];
		out[2 * i + 1] = d[p[i] & 15];
	}
	out[2 * n] = '\0';
}

static int
nib(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int
gw_unhex(const char *s, uint8_t *out, size_t max, size_t *n)
{
	size_t len = strlen(s);

	if (len % 2 || len / 2 > max)
		return -1;
	for (size_t i = 0; i < len / 2; i++) {
		int hi = nib(s[2 * i]), lo = nib(s[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return -1;
		out[i] = (uint8_t)(hi << 4 | lo);
	}
	*n = len / 2;
	return 0;
}

/* ---- checkpoints ---- */

static void
put_be64(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t)v;
}

size_t
gw_audit_checkpoint_message(const struct gw_audit_checkpoint *cp,
                            uint8_t msg[GW_AUDIT_CHECKPOINT_MSG_LEN])
{
	uint8_t *p = msg;

	memcpy(p, cp->chained ? cp2_magic : cp_magic, 8);
	p += 8;
	if (cp->chained) {
		put_be64(p, cp->id);
		p += 8;
	}
	put_be64(p, cp->seq);
	p += 8;
	memcpy(p, cp->hash, GW_AUDIT_HASH_LEN);
	p += GW_AUDIT_HASH_LEN;
	put_be64(p, (uint64_t)cp->ts_ns);
	p += 8;
	if (cp->chained) {
		put_be64(p, cp->prev_id);
		p += 8;
		memcpy(p, cp->prev_hash, GW_AUDIT_HASH_LEN);
		p += GW_AUDIT_HASH_LEN;
	}
	return (size_t)(p - msg);
}

int
gw_audit_checkpoint_hash(const struct gw_audit_checkpoint *cp, uint8_t out[GW_AUDIT_HASH_LEN])
{
	uint8_t msg[GW_AUDIT_CHECKPOINT_MSG_LEN];
	size_t n = gw_audit_checkpoint_message(cp, msg);
	unsigned int len = 0;

	return EVP_Digest(msg, n, out, &len, EVP_sha256(), NULL) == 1 && len == GW_AUDIT_HASH_LEN ? 0 : -1;
}

/* The last certificate parsed: an export's checkpoints all carry the one
 * audit certificate, and parsing it (OpenSSL's decoders) cost more than
 * checking the signature. A new reference, or NULL for bad DER. */
static pthread_mutex_t cert_lock = PTHREAD_MUTEX_INITIALIZER;
static uint8_t *cert_der;
static size_t cert_der_len;
static X509 *cert_x;

static X509 *
cert_parse(const uint8_t *der, size_t len)
{
	const unsigned char *p = der;
	X509 *x = NULL;
	uint8_t *copy;

	pthread_mutex_lock(&cert_lock);
	if (cert_x != NULL && cert_der_len == len && memcmp(cert_der, der, len) == 0) {
		X509_up_ref(cert_x);
		x = cert_x;
		goto out;
	}
	x = d2i_X509(NULL, &p, (long)len);
	if (x == NULL || p != der + len) {
		X509_free(x);
		x = NULL;
		goto out;
	}
	if ((copy = malloc(len)) != NULL) {
		memcpy(copy, der, len);
		free(cert_der);
		X509_free(cert_x);
		cert_der = copy;
		cert_der_len = len;
		cert_x = x;
		X509_up_ref(x);
	}
out:
	pthread_mutex_unlock(&cert_lock);
	return x;
}

int
gw_audit_checkpoint_verify(const struct gw_audit_checkpoint *cp,
                           const uint8_t *cert, size_t cert_len,
                           char *err, size_t errlen)
{
	uint8_t msg[GW_AUDIT_CHECKPOINT_MSG_LEN];
	size_t msglen;
	X509 *x = NULL;
	EVP_PKEY *pk;
	EVP_MD_CTX *md = NULL;
	const EVP_MD *h = NULL;
	int rv = -1, base;

	if (!cert) {
		cert = cp->cert;
		cert_len = cp->cert_len;
	}
	if (!cert || cert_len == 0) {
		sg_seterr(err, errlen, "no audit certificate to check the signature with");
		return -1;
	}
	x = cert_parse(cert, cert_len);
	if (!x) {
		sg_seterr(err, errlen, "the audit certificate is not valid DER X.509");
		goto out;
	}
	pk = X509_get0_pubkey(x);
	base = pk ? EVP_PKEY_get_base_id(pk) : 0;
	if (!cp->alg) {
		sg_seterr(err, errlen, "no signature algorithm");
		goto out;
	}
	if (strcmp(cp->alg, "ecdsa-sha256") == 0 && base == EVP_PKEY_EC)
		h = EVP_sha256();
	else if (strcmp(cp->alg, "rsa-pkcs1-sha256") == 0 && base == EVP_PKEY_RSA)
		h = EVP_sha256();
	else if (strcmp(cp->alg, "ed25519") == 0 && base == EVP_PKEY_ED25519)
		h = NULL;
	else {
		sg_seterr(err, errlen, "signature algorithm \"%s\" does not fit the audit certificate's key",
		       cp->alg);
		goto out;
	}
	msglen = gw_audit_checkpoint_message(cp, msg);
	md = EVP_MD_CTX_new();
	if (!md || EVP_DigestVerifyInit(md, NULL, h, NULL, pk) != 1) {
		sg_seterr(err, errlen, "cannot set up the signature check");
		goto out;
	}
	if (EVP_DigestVerify(md, cp->sig, cp->sig_len, msg, msglen) == 1) {
		rv = 1;
	} else {
		sg_seterr(err, errlen, "the signature does not verify with the audit certificate");
		rv = 0;
	}
out:
	EVP_MD_CTX_free(md);
	X509_free(x);
	return rv;
}

/* ---- JSON ---- */

void
gw_audit_format_time(int64_t ts_ns, long offset, char *buf, size_t len)
{
	int64_t s = ts_ns / 1000000000LL, ns = ts_ns % 1000000000LL;
	time_t t;
	struct tm tm;
	long off = offset < 0 ? -offset : offset;

	if (ns < 0) {
		ns += 1000000000LL;
		s--;
	}
	t = (time_t)(s + offset);
	gmtime_r(&t, &tm);
	if (offset == 0)
		snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
		         tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ns / 1000000));
	else
		snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d.%03d%c%02ld:%02ld", tm.tm_year + 1900,
		         tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ns / 1000000),
		         offset < 0 ? '-' : '+', off / 3600, off / 60 % 60);
}

static json_t *
jstr(const char *s)
{
	return s ? json_string(s) : json_null();
}

static json_t *
jhex(const uint8_t *p, size_t n)
{
	char *h;
	json_t *j;

	if (!p || n == 0)
		return json_null();
	h = malloc(2 * n + 1);
	if (!h)
		return NULL;
	gw_hex(p, n, h);
	j = json_string(h);
	free(h);
	return j;
}

static json_t *
jb64(const uint8_t *p, size_t n)
{
	char *b;
	json_t *j;
	int len;

	if (!p || n == 0)
		return json_null();
	b = malloc(4 * ((n + 2) / 3) + 1);
	if (!b)
		return NULL;
	len = EVP_EncodeBlock((unsigned char *)b, p, (int)n);
	j = len >= 0 ? json_stringn(b, (size_t)len) : NULL;
	free(b);
	return j;
}

json_t *
gw_audit_row_to_json(const struct gw_audit_row *r, gw_audit_tz_fn tz, void *tzctx)
{
	char t[48], lt[48];
	long off = 0;
	const char *zone = NULL;
	json_t *o;

	gw_audit_format_time(r->ts_ns, 0, t, sizeof(t));
	if (tz && tz(tzctx, r, r->ts_ns / 1000000000LL, &off, &zone))
		gw_audit_format_time(r->ts_ns, off, lt, sizeof(lt));
	else
		snprintf(lt, sizeof(lt), "%s", t);
	o = json_object();
	if (!o)
		return NULL;
	/* Key order is the encoding's; set_new tolerates NULL values (fails). */
	json_object_set_new(o, "type", json_string("record"));
	json_object_set_new(o, "seq", json_integer((json_int_t)r->seq));
	json_object_set_new(o, "ts_ns", json_integer(r->ts_ns));
	json_object_set_new(o, "action", jstr(r->action));
	json_object_set_new(o, "outcome", jstr(r->outcome));
	json_object_set_new(o, "reason", jstr(r->reason));
	json_object_set_new(o, "actor", jstr(r->actor));
	json_object_set_new(o, "uid", json_integer(r->uid));
	json_object_set_new(o, "pid", json_integer(r->pid));
	json_object_set_new(o, "exe", jstr(r->exe));
	json_object_set_new(o, "host", jstr(r->host));
	json_object_set_new(o, "seal", jstr(r->seal));
	json_object_set_new(o, "application", json_integer(r->application));
	json_object_set_new(o, "doc_digest", jhex(r->doc_digest, r->doc_digest_len));
	json_object_set_new(o, "signed_digest", jhex(r->signed_digest, r->signed_digest_len));
	/* The 64-bit pattern as a decimal string: JSON numbers above 2^53 are
	 * not safe in every reader, and CKM vendor values can be that large. */
	{
		char m[24];
		snprintf(m, sizeof(m), "%llu", (unsigned long long)r->mechanism);
		json_object_set_new(o, "mechanism", json_string(m));
	}
	json_object_set_new(o, "detail", jstr(r->detail));
	json_object_set_new(o, "prev_hash", jhex(r->prev_hash, r->prev_hash_len));
	json_object_set_new(o, "hash", jhex(r->hash, r->hash_len));
	gw_audit_format_time(r->ts_ns, 0, t, sizeof(t));
	json_object_set_new(o, "time", json_string(t));
	json_object_set_new(o, "local_time", json_string(lt));
	if (zone)
		json_object_set_new(o, "zone", json_string(zone));
	return o;
}

json_t *
gw_audit_checkpoint_to_json(const struct gw_audit_checkpoint *cp, bool with_cert)
{
	char t[48];
	json_t *o = json_object();

	if (!o)
		return NULL;
	gw_audit_format_time(cp->ts_ns, 0, t, sizeof(t));
	json_object_set_new(o, "type", json_string("checkpoint"));
	if (cp->id)
		json_object_set_new(o, "id", json_integer((json_int_t)cp->id));
	json_object_set_new(o, "seq", json_integer((json_int_t)cp->seq));
	json_object_set_new(o, "ts_ns", json_integer(cp->ts_ns));
	json_object_set_new(o, "hash", jhex(cp->hash, GW_AUDIT_HASH_LEN));
	json_object_set_new(o, "alg", jstr(cp->alg));
	if (cp->chained) {
		json_object_set_new(o, "prev_id", json_integer((json_int_t)cp->prev_id));
		json_object_set_new(o, "prev_hash", jhex(cp->prev_hash, GW_AUDIT_HASH_LEN));
	}
	json_object_set_new(o, "signature", jb64(cp->sig, cp->sig_len));
	if (with_cert)
		json_object_set_new(o, "cert", jb64(cp->cert, cp->cert_len));
	json_object_set_new(o, "time", json_string(t));
	return o;
}

/* Field readers: a missing key is an error, so a dropped field is noticed
 * rather than read as NULL. */
static int
get_str(const json_t *o, const char *k, const char **out, char *err, size_t errlen)
{
	json_t *v = json_object_get(o, k);

	if (!v) {
		sg_seterr(err, errlen, "field \"%s\" missing", k);
		return -1;
	}
	if (json_is_null(v)) {
		*out = NULL;
		return 0;
	}
	if (!json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v)) {
		sg_seterr(err, errlen, "field \"%s\" is not a string without NUL", k);
		return -1;
	}
	*out = json_string_value(v);
	return 0;
}

static int
get_i64(const json_t *o, const char *k, int64_t *out, char *err, size_t errlen)
{
	json_t *v = json_object_get(o, k);

	if (!json_is_integer(v)) {
		sg_seterr(err, errlen, "field \"%s\" missing or not an integer", k);
		return -1;
	}
	*out = (int64_t)json_integer_value(v);
	return 0;
}

static int
get_hex(const json_t *o, const char *k, uint8_t *buf, size_t max, const uint8_t **p, size_t *n,
        char *err, size_t errlen)
{
	const char *s = NULL;

	if (get_str(o, k, &s, err, errlen))
		return -1;
	*p = NULL;
	*n = 0;
	if (!s)
		return 0;
	if (gw_unhex(s, buf, max, n)) {
		sg_seterr(err, errlen, "field \"%s\" is not hex of at most %zu bytes", k, max);
		return -1;
	}
	*p = *n ? buf : NULL;
	return 0;
}

static int
get_b64(const json_t *o, const char *k, uint8_t **out, size_t *n, size_t max, char *err, size_t errlen)
{
	const char *s = NULL;
	size_t len;
	int r;

	*out = NULL;
	*n = 0;
	if (get_str(o, k, &s, err, errlen))
		return -1;
	if (!s)
		return 0;
	len = strlen(s);
	if (len % 4 || len / 4 * 3 > max + 2) {
		sg_seterr(err, errlen, "field \"%s\" is not base64 of at most %zu bytes", k, max);
		return -1;
	}
	*out = malloc(len / 4 * 3 + 1);
	if (!*out)
		return -1;
	r = EVP_DecodeBlock(*out, (const unsigned char *)s, (int)len);
	if (r < 0) {
		free(*out);
		*out = NULL;
		sg_seterr(err, errlen, "field \"%s\" is not base64", k);
		return -1;
	}
	/* EVP_DecodeBlock counts the padding as zero bytes. */
	if (len >= 1 && s[len - 1] == '=')
		r--;
	if (len >= 2 && s[len - 2] == '=')
		r--;
	*n = (size_t)r;
	return 0;
}

int
gw_audit_row_from_json(const json_t *o, struct gw_audit_row *r, struct gw_audit_rowbuf *b,
                       char *err, size_t errlen)
{
	int64_t seq;
	const char *mech = NULL;
	char *end = NULL;

	memset(r, 0, sizeof(*r));
	if (!json_is_object(o)) {
		sg_seterr(err, errlen, "not a JSON object");
		return -1;
	}
	if (get_i64(o, "seq", &seq, err, errlen) || get_i64(o, "ts_ns", &r->ts_ns, err, errlen) ||
	    get_str(o, "action", &r->action, err, errlen) ||
	    get_str(o, "outcome", &r->outcome, err, errlen) ||
	    get_str(o, "reason", &r->reason, err, errlen) ||
	    get_str(o, "actor", &r->actor, err, errlen) ||
	    get_i64(o, "uid", &r->uid, err, errlen) || get_i64(o, "pid", &r->pid, err, errlen) ||
	    get_str(o, "exe", &r->exe, err, errlen) || get_str(o, "host", &r->host, err, errlen) ||
	    get_str(o, "seal", &r->seal, err, errlen) ||
	    get_i64(o, "application", &r->application, err, errlen) ||
	    get_hex(o, "doc_digest", b->doc, sizeof(b->doc), &r->doc_digest, &r->doc_digest_len, err, errlen) ||
	    get_hex(o, "signed_digest", b->sig, sizeof(b->sig), &r->signed_digest, &r->signed_digest_len,
	            err, errlen) ||
	    get_str(o, "mechanism", &mech, err, errlen) ||
	    get_str(o, "detail", &r->detail, err, errlen) ||
	    get_hex(o, "prev_hash", b->prev, sizeof(b->prev), &r->prev_hash, &r->prev_hash_len, err, errlen) ||
	    get_hex(o, "hash", b->hash, sizeof(b->hash), &r->hash, &r->hash_len, err, errlen))
		return -1;
	if (seq <= 0) {
		sg_seterr(err, errlen, "seq %lld is not a sequence number", (long long)seq);
		return -1;
	}
	r->seq = (uint64_t)seq;
	if (!mech || !*mech || mech[0] == '-') {
		sg_seterr(err, errlen, "field \"mechanism\" must be a decimal string");
		return -1;
	}
	r->mechanism = strtoull(mech, &end, 10);
	if (*end) {
		sg_seterr(err, errlen, "field \"mechanism\" must be a decimal string");
		return -1;
	}
	return 0;
}

int
gw_audit_checkpoint_from_json(const json_t *o, struct gw_audit_checkpoint *cp,
                              uint8_t **sig, uint8_t **cert, char *err, size_t errlen)
{
	int64_t seq, id = 0, prev_id = 0;
	const uint8_t *h;
	size_t hl;

	memset(cp, 0, sizeof(*cp));
	*sig = *cert = NULL;
	if (get_i64(o, "seq", &seq, err, errlen) || get_i64(o, "ts_ns", &cp->ts_ns, err, errlen) ||
	    get_hex(o, "hash", cp->hash, sizeof(cp->hash), &h, &hl, err, errlen) ||
	    get_str(o, "alg", &cp->alg, err, errlen) ||
	    get_b64(o, "signature", sig, &cp->sig_len, GW_AUDIT_SIG_MAX, err, errlen))
		goto fail;
	if (json_object_get(o, "cert") &&
	    get_b64(o, "cert", cert, &cp->cert_len, GW_AUDIT_CERT_MAX, err, errlen))
		goto fail;
	if (seq < 0 || hl != GW_AUDIT_HASH_LEN) {
		sg_seterr(err, errlen, "checkpoint seq or hash malformed");
		goto fail;
	}
	/* id: absent in exports made before the checkpoint chain. prev_hash
	 * present makes it a chained checkpoint (SGCHKPT2): dropping it only
	 * changes the message its signature must fit. */
	if (json_object_get(o, "id")) {
		if (get_i64(o, "id", &id, err, errlen))
			goto fail;
		if (id <= 0) {
			sg_seterr(err, errlen, "checkpoint id malformed");
			goto fail;
		}
		cp->id = (uint64_t)id;
	}
	if (json_object_get(o, "prev_hash")) {
		if (get_i64(o, "prev_id", &prev_id, err, errlen) ||
		    get_hex(o, "prev_hash", cp->prev_hash, sizeof(cp->prev_hash), &h, &hl, err, errlen))
			goto fail;
		if (prev_id < 0 || hl != GW_AUDIT_HASH_LEN || cp->id == 0) {
			sg_seterr(err, errlen, "checkpoint id, prev_id or prev_hash malformed");
			goto fail;
		}
		cp->chained = true;
		cp->prev_id = (uint64_t)prev_id;
	}
	cp->seq = (uint64_t)seq;
	cp->sig = *sig;
	cp->cert = *cert;
	return 0;
fail:
	free(*sig);
	free(*cert);
	*sig = *cert = NULL;
	return -1;
}

/* ---- the verifier ---- */

struct ventry {
	uint64_t seq;
	uint64_t pos;                  /* order of arrival */
	uint8_t prev[GW_AUDIT_HASH_LEN];
	uint8_t hash[GW_AUDIT_HASH_LEN];
	bool self_ok;                  /* hash == SHA-256(prev || record) */
	bool shape_ok;                 /* both hashes 32 bytes, types right */
	char *where;
};

struct vcheck {
	struct gw_audit_checkpoint cp;
	bool sig_ok;
	uint8_t own[GW_AUDIT_HASH_LEN];   /* gw_audit_checkpoint_hash: what the next one signs */
	char *where;
};

struct gw_audit_verifier {
	struct ventry *e; size_t n, cap;
	struct vcheck *c; size_t nc, capc;
	uint8_t *pinned; size_t pinned_len;
	uint64_t last_in_order;        /* highest seq so far in arrival order */
	uint64_t expect_cp_id;         /* the header's last checkpoint id, 0 = not said */
	char **problems; size_t np, capp;
	char **notes; size_t nn, capn;
	bool more;
};

static void
vlist_add(char ***list, size_t *n, size_t *cap, bool *more, char *s)
{
	if (!s)
		return;
	if (*n >= PROBLEMS_MAX) {
		*more = true;
		free(s);
		return;
	}
	if (*n == *cap) {
		size_t nc = *cap ? *cap * 2 : 16;
		char **nl = realloc(*list, nc * sizeof(*nl));
		if (!nl) {
			free(s);
			return;
		}
		*list = nl;
		*cap = nc;
	}
	(*list)[(*n)++] = s;
}

static char * __attribute__((format(printf, 1, 0)))
vfmt(const char *fmt, va_list ap)
{
	char *s = NULL;

	if (vasprintf(&s, fmt, ap) < 0)
		return NULL;
	return s;
}

static void __attribute__((format(printf, 2, 3)))
problem(struct gw_audit_verifier *v, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlist_add(&v->problems, &v->np, &v->capp, &v->more, vfmt(fmt, ap));
	va_end(ap);
}

static void __attribute__((format(printf, 2, 3)))
note(struct gw_audit_verifier *v, const char *fmt, ...)
{
	va_list ap;
	bool more = false;

	va_start(ap, fmt);
	vlist_add(&v->notes, &v->nn, &v->capn, &more, vfmt(fmt, ap));
	va_end(ap);
}

void
gw_audit_verifier_problem(struct gw_audit_verifier *v, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlist_add(&v->problems, &v->np, &v->capp, &v->more, vfmt(fmt, ap));
	va_end(ap);
}

struct gw_audit_verifier *
gw_audit_verifier_new(void)
{
	return calloc(1, sizeof(struct gw_audit_verifier));
}

void
gw_audit_verifier_free(struct gw_audit_verifier **vp)
{
	struct gw_audit_verifier *v = vp ? *vp : NULL;

	if (!v)
		return;
	for (size_t i = 0; i < v->n; i++)
		free(v->e[i].where);
	for (size_t i = 0; i < v->nc; i++) {
		free(v->c[i].where);
		free((void *)v->c[i].cp.sig);
		free((void *)v->c[i].cp.alg);
	}
	for (size_t i = 0; i < v->np; i++)
		free(v->problems[i]);
	for (size_t i = 0; i < v->nn; i++)
		free(v->notes[i]);
	free(v->problems);
	free(v->notes);
	free(v->e);
	free(v->c);
	free(v->pinned);
	free(v);
	*vp = NULL;
}

int
gw_audit_verifier_pin_cert(struct gw_audit_verifier *v, const uint8_t *der, size_t len)
{
	free(v->pinned);
	v->pinned = malloc(len ? len : 1);
	if (!v->pinned)
		return -1;
	memcpy(v->pinned, der, len);
	v->pinned_len = len;
	return 0;
}

static char *
where_dup(const char *where, uint64_t pos)
{
	char *s = NULL;

	if (where)
		return strdup(where);
	if (asprintf(&s, "item %llu", (unsigned long long)pos + 1) < 0)
		return NULL;
	return s;
}

void
gw_audit_verifier_add_record(struct gw_audit_verifier *v, const struct gw_audit_row *r,
                             const char *where)
{
	struct ventry *e;
	uint8_t h[GW_AUDIT_HASH_LEN];

	if (v->n == v->cap) {
		size_t nc = v->cap ? v->cap * 2 : 1024;
		struct ventry *ne = realloc(v->e, nc * sizeof(*ne));
		if (!ne) {
			problem(v, "out of memory at seq %llu", (unsigned long long)r->seq);
			return;
		}
		v->e = ne;
		v->cap = nc;
	}
	e = &v->e[v->n];
	memset(e, 0, sizeof(*e));
	e->seq = r->seq;
	e->pos = v->n;
	e->where = where_dup(where, v->n);
	e->shape_ok = !r->bad_column && r->prev_hash && r->prev_hash_len == GW_AUDIT_HASH_LEN &&
	              r->hash && r->hash_len == GW_AUDIT_HASH_LEN;
	if (r->prev_hash && r->prev_hash_len == GW_AUDIT_HASH_LEN)
		memcpy(e->prev, r->prev_hash, GW_AUDIT_HASH_LEN);
	if (r->hash && r->hash_len == GW_AUDIT_HASH_LEN)
		memcpy(e->hash, r->hash, GW_AUDIT_HASH_LEN);
	e->self_ok = e->shape_ok && gw_audit_row_hash(e->prev, r, h) == 0 &&
	             CRYPTO_memcmp(h, e->hash, GW_AUDIT_HASH_LEN) == 0;
	if (v->n > 0 && r->seq <= v->last_in_order)
		problem(v, "seq %llu (%s) comes after seq %llu: records out of order "
		        "(reordered, or a record inserted)", (unsigned long long)r->seq,
		        e->where ? e->where : "?", (unsigned long long)v->last_in_order);
	if (r->seq > v->last_in_order)
		v->last_in_order = r->seq;
	v->n++;
}

void
gw_audit_verifier_add_checkpoint(struct gw_audit_verifier *v,
                                 const struct gw_audit_checkpoint *cp, const char *where)
{
	struct vcheck *c;
	char err[256] = "";
	int r;

	if (v->nc == v->capc) {
		size_t nc = v->capc ? v->capc * 2 : 64;
		struct vcheck *n = realloc(v->c, nc * sizeof(*n));
		if (!n)
			return;
		v->c = n;
		v->capc = nc;
	}
	c = &v->c[v->nc];
	memset(c, 0, sizeof(*c));
	c->cp = *cp;
	c->where = where_dup(where, v->nc);
	/* Keep copies: the caller's buffers go away. */
	c->cp.cert = NULL;
	c->cp.cert_len = 0;
	c->cp.alg = cp->alg ? strdup(cp->alg) : NULL;
	c->cp.sig = NULL;
	if (cp->sig_len) {
		uint8_t *s = malloc(cp->sig_len);
		if (s) {
			memcpy(s, cp->sig, cp->sig_len);
			c->cp.sig = s;
		}
	}
	if (gw_audit_checkpoint_hash(cp, c->own) != 0)
		memset(c->own, 0, sizeof(c->own));
	r = gw_audit_checkpoint_verify(cp, v->pinned, v->pinned_len, err, sizeof(err));
	c->sig_ok = r == 1;
	if (r != 1)
		problem(v, "checkpoint at seq %llu (%s): %s — the checkpoint was forged or changed",
		        (unsigned long long)cp->seq, c->where ? c->where : "?", err);
	v->nc++;
}

static int
cmp_entry(const void *a, const void *b)
{
	const struct ventry *x = a, *y = b;

	if (x->seq != y->seq)
		return x->seq < y->seq ? -1 : 1;
	return x->pos < y->pos ? -1 : x->pos > y->pos;
}

static int
cmp_check(const void *a, const void *b)
{
	const struct vcheck *x = a, *y = b;

	return x->cp.seq < y->cp.seq ? -1 : x->cp.seq > y->cp.seq;
}

void
gw_audit_verifier_expect_checkpoints(struct gw_audit_verifier *v, uint64_t last_id)
{
	v->expect_cp_id = last_id;
}

static int
cmp_check_id(const void *a, const void *b)
{
	const struct vcheck *x = *(const struct vcheck *const *)a, *y = *(const struct vcheck *const *)b;

	return x->cp.id < y->cp.id ? -1 : x->cp.id > y->cp.id;
}

/* The checkpoint chain: ids 1, 2, 3, … without a gap, each chained
 * checkpoint signing the id and hash of the one before it. A gap names the
 * checkpoints removed; a chained checkpoint whose predecessor is not the
 * one it signed, or that covers less of the log than its predecessor, is
 * a rewritten or cut-back log. */
static void
check_chain(struct gw_audit_verifier *v)
{
	struct vcheck **byid = v->nc ? calloc(v->nc, sizeof(*byid)) : NULL;
	uint64_t expect = 1, unchained = 0, last_unchained = 0, no_id = 0;
	size_t n = 0;

	if (v->nc && !byid) {
		problem(v, "out of memory checking the checkpoint chain");
		return;
	}
	for (size_t i = 0; i < v->nc; i++) {
		if (v->c[i].cp.id == 0)
			no_id++;
		else
			byid[n++] = &v->c[i];
	}
	if (n > 0)
		qsort(byid, n, sizeof(*byid), cmp_check_id);
	for (size_t k = 0; k < n; k++) {
		struct vcheck *c = byid[k], *p = NULL;
		unsigned long long id = c->cp.id;

		if (k > 0 && byid[k - 1]->cp.id == c->cp.id) {
			problem(v, "checkpoint id %llu appears twice (%s and %s): a checkpoint was inserted",
			        id, byid[k - 1]->where, c->where);
			continue;
		}
		if (id > expect) {
			if (id == expect + 1)
				problem(v, "checkpoint id %llu: missing — a signed checkpoint was removed "
				        "(%s is checkpoint id %llu)", (unsigned long long)expect, c->where, id);
			else
				problem(v, "checkpoint id %llu to %llu: missing — %llu signed checkpoints were "
				        "removed (%s is checkpoint id %llu)", (unsigned long long)expect, id - 1,
				        (unsigned long long)(id - expect), c->where, id);
		}
		expect = id + 1;
		if (!c->cp.chained) {
			unchained++;
			last_unchained = id;
			continue;
		}
		if (!c->sig_ok)
			continue;   /* reported as forged */
		if (c->cp.prev_id >= id) {
			problem(v, "checkpoint id %llu (%s): names checkpoint id %llu as the one before it",
			        id, c->where, (unsigned long long)c->cp.prev_id);
			continue;
		}
		if (c->cp.prev_id + 1 < id)
			problem(v, "checkpoint id %llu (%s) was signed after checkpoint id %llu: ids %llu to "
			        "%llu were already missing from the store when the gateway signed it", id,
			        c->where, (unsigned long long)c->cp.prev_id,
			        (unsigned long long)c->cp.prev_id + 1, id - 1);
		if (k > 0 && byid[k - 1]->cp.id == c->cp.prev_id)
			p = byid[k - 1];
		if (!p)
			continue;   /* its predecessor is missing: said above */
		if (CRYPTO_memcmp(p->own, c->cp.prev_hash, GW_AUDIT_HASH_LEN) != 0)
			problem(v, "checkpoint id %llu (%s): the checkpoint before it (id %llu, %s) is not the "
			        "one it signed: the checkpoint chain is broken (a checkpoint was replaced)",
			        id, c->where, (unsigned long long)p->cp.id, p->where);
		else if (p->sig_ok && c->cp.seq < p->cp.seq)
			problem(v, "checkpoint id %llu (%s) covers seq %llu, the one before it (id %llu) seq "
			        "%llu: the log was cut back between them", id, c->where,
			        (unsigned long long)c->cp.seq, (unsigned long long)p->cp.id,
			        (unsigned long long)p->cp.seq);
	}
	if (v->expect_cp_id > 0 && expect - 1 < v->expect_cp_id)
		problem(v, "checkpoint id %llu: missing — the export says it holds checkpoints up to id %llu "
		        "but the last is id %llu: the tail was truncated (checkpoints cut off the end)",
		        (unsigned long long)expect, (unsigned long long)v->expect_cp_id,
		        (unsigned long long)(expect - 1));
	if (no_id > 0)
		note(v, "%llu checkpoint(s) without an id (an export made before the checkpoint chain): "
		     "one removed from among them would not show", (unsigned long long)no_id);
	if (unchained > 0)
		note(v, "%llu checkpoint(s) up to id %llu predate the checkpoint chain (SGCHKPT1): they do "
		     "not sign the one before them, so one removed among them shows only as a gap in their "
		     "ids, which are not signed", (unsigned long long)unchained,
		     (unsigned long long)last_unchained);
	free(byid);
}

static int
cmp_str_seq(const void *a, const void *b)
{
	/* Problems start with "seq N" or "checkpoint at seq N": sort by N. */
	const char *x = *(char *const *)a, *y = *(char *const *)b;
	const char *px = strstr(x, "seq "), *py = strstr(y, "seq ");
	unsigned long long nx = px ? strtoull(px + 4, NULL, 10) : 0;
	unsigned long long ny = py ? strtoull(py + 4, NULL, 10) : 0;

	return nx < ny ? -1 : nx > ny;
}

int
gw_audit_verifier_finish(struct gw_audit_verifier *v, struct gw_audit_verdict *out)
{
	uint8_t running[GW_AUDIT_HASH_LEN] = { 0 };
	uint64_t expect = 1, last = 0, covered = 0, good_cp = 0;
	size_t i, k = 0;
	const struct ventry *prev_e = NULL;

	/* qsort's array may not be NULL, even with no element. */
	if (v->n > 0)
		qsort(v->e, v->n, sizeof(*v->e), cmp_entry);
	if (v->nc > 0)
		qsort(v->c, v->nc, sizeof(*v->c), cmp_check);
	for (i = 0; i < v->n; i++) {
		const struct ventry *e = &v->e[i];
		unsigned long long s = e->seq;
		bool linked = true;

		if (prev_e && prev_e->seq == e->seq) {
			problem(v, "seq %llu appears twice (%s and %s): a record was inserted",
			        s, prev_e->where, e->where);
			continue;
		}
		if (e->seq > expect) {
			if (e->seq == expect + 1)
				problem(v, "seq %llu: missing (a record was removed; %s is seq %llu)",
				        (unsigned long long)expect, e->where, s);
			else
				problem(v, "seq %llu to %llu: missing (%llu records removed; %s is seq %llu)",
				        (unsigned long long)expect, s - 1,
				        (unsigned long long)(e->seq - expect), e->where, s);
			linked = false;
		}
		if (!e->shape_ok)
			problem(v, "seq %llu (%s): malformed (hash fields or column types changed)", s, e->where);
		else if (!e->self_ok)
			problem(v, "seq %llu (%s): record changed (its content does not match its hash)",
			        s, e->where);
		else if (linked && CRYPTO_memcmp(e->prev, running, GW_AUDIT_HASH_LEN) != 0)
			problem(v, "seq %llu (%s): does not follow seq %llu (prev_hash differs): a record "
			        "before it was replaced or inserted, or the log was rewritten", s, e->where,
			        s - 1);
		/* Checkpoints at seqs we passed without a record fell in a gap. */
		for (; k < v->nc && v->c[k].cp.seq < e->seq; k++)
			if (v->c[k].sig_ok && v->c[k].cp.seq > 0 && v->c[k].cp.seq >= expect)
				problem(v, "checkpoint at seq %llu (%s): no such record (removed)",
				        (unsigned long long)v->c[k].cp.seq, v->c[k].where);
		for (; k < v->nc && v->c[k].cp.seq == e->seq; k++) {
			if (!v->c[k].sig_ok)
				continue;
			if (CRYPTO_memcmp(v->c[k].cp.hash, e->hash, GW_AUDIT_HASH_LEN) != 0)
				problem(v, "seq %llu (%s): differs from the signed checkpoint (%s): the log "
				        "was rewritten up to here", s, e->where, v->c[k].where);
			else if (e->self_ok) {
				good_cp++;
				if (e->seq > covered)
					covered = e->seq;
			}
		}
		memcpy(running, e->hash, GW_AUDIT_HASH_LEN);
		expect = e->seq + 1;
		last = e->seq;
		prev_e = e;
	}
	for (; k < v->nc; k++) {
		if (!v->c[k].sig_ok)
			continue;
		if (v->c[k].cp.seq == 0) {
			good_cp++;
			continue;
		}
		problem(v, "seq %llu: missing — the log ends at seq %llu but a signed checkpoint (%s) "
		        "covers seq %llu: the tail was truncated", (unsigned long long)(last + 1),
		        (unsigned long long)last, v->c[k].where, (unsigned long long)v->c[k].cp.seq);
		break;
	}
	check_chain(v);
	if (v->nc == 0)
		note(v, "no signed checkpoint: records cut off the end or a rewritten log cannot be ruled out");
	else if (last > covered)
		note(v, "seq %llu to %llu: not yet covered by a signed checkpoint (cutting them off "
		     "would not show)", (unsigned long long)(covered + 1), (unsigned long long)last);
	if (v->more)
		note(v, "more than %d problems; the rest are not listed", PROBLEMS_MAX);
	if (v->np > 0)
		qsort(v->problems, v->np, sizeof(char *), cmp_str_seq);
	memset(out, 0, sizeof(*out));
	out->records = v->n;
	out->last_seq = last;
	out->checkpoints = good_cp;
	out->covered_seq = covered;
	out->n_problems = v->np;
	out->problems = v->problems;
	out->n_notes = v->nn;
	out->notes = v->notes;
	return v->np ? 1 : 0;
}

/* ---- a record's JSON line, read in place ---- */

/*
 * An export's records are the gateway's own flat JSON objects, one a line
 * (gw_audit_row_to_json, dumped compact). A scan of millions of them spent
 * two thirds of its time building a jansson tree for each and freeing it
 * again, so this reads such a line in place. It accepts only what jansson
 * (JSON_REJECT_DUPLICATES) and gw_audit_row_from_json would accept, with
 * the same row: whitespace, a key it does not know or sees twice, a number
 * with a fraction or beyond 64 bits, bytes that are not UTF-8, an escaped
 * NUL, a field missing or of another type make it answer 1, and the
 * caller reads the line with jansson, which says what is wrong. The chain
 * hash is over the row's canonical encoding, not over these bytes.
 */

enum {
	LK_TYPE, LK_SEQ, LK_TS, LK_ACTION, LK_OUTCOME, LK_REASON, LK_ACTOR, LK_UID, LK_PID, LK_EXE,
	LK_HOST, LK_SEAL, LK_APP, LK_DOC, LK_SIG, LK_MECH, LK_DETAIL, LK_PREV, LK_HASH, LK_TIME,
	LK_LOCAL, LK_ZONE, LK_N
};

/* In gw_audit_row_to_json's order, which is tried first. */
static const struct { const char *name; size_t len; bool integer; } line_keys[LK_N] = {
#define K(s, i) { s, sizeof(s) - 1, i }
	K("type", false), K("seq", true), K("ts_ns", true), K("action", false),
	K("outcome", false), K("reason", false), K("actor", false), K("uid", true),
	K("pid", true), K("exe", false), K("host", false), K("seal", false),
	K("application", true), K("doc_digest", false), K("signed_digest", false),
	K("mechanism", false), K("detail", false), K("prev_hash", false), K("hash", false),
	K("time", false), K("local_time", false), K("zone", false),
#undef K
};

static int
hex4(const char *p)
{
	int v = 0;

	for (int i = 0; i < 4; i++) {
		int d = nib(p[i]);
		if (d < 0)
			return -1;
		v = v << 4 | d;
	}
	return v;
}

/* Length of the UTF-8 sequence at p (jansson's rules: no overlong form,
 * no surrogate, at most U+10FFFF), or 0. */
static size_t
utf8_len(const unsigned char *p, const unsigned char *end)
{
	unsigned char c = p[0];
	size_t n;
	unsigned char lo = 0x80, hi = 0xbf;

	if (c >= 0xc2 && c <= 0xdf)
		n = 2;
	else if (c >= 0xe0 && c <= 0xef) {
		n = 3;
		if (c == 0xe0)
			lo = 0xa0;
		else if (c == 0xed)
			hi = 0x9f;
	} else if (c >= 0xf0 && c <= 0xf4) {
		n = 4;
		if (c == 0xf0)
			lo = 0x90;
		else if (c == 0xf4)
			hi = 0x8f;
	} else
		return 0;
	if ((size_t)(end - p) < n || p[1] < lo || p[1] > hi)
		return 0;
	for (size_t i = 2; i < n; i++)
		if (p[i] < 0x80 || p[i] > 0xbf)
			return 0;
	return n;
}

static char *
put_utf8(char *o, unsigned cp)
{
	if (cp < 0x80) {
		*o++ = (char)cp;
	} else if (cp < 0x800) {
		*o++ = (char)(0xc0 | cp >> 6);
		*o++ = (char)(0x80 | (cp & 0x3f));
	} else if (cp < 0x10000) {
		*o++ = (char)(0xe0 | cp >> 12);
		*o++ = (char)(0x80 | (cp >> 6 & 0x3f));
		*o++ = (char)(0x80 | (cp & 0x3f));
	} else {
		*o++ = (char)(0xf0 | cp >> 18);
		*o++ = (char)(0x80 | (cp >> 12 & 0x3f));
		*o++ = (char)(0x80 | (cp >> 6 & 0x3f));
		*o++ = (char)(0x80 | (cp & 0x3f));
	}
	return o;
}

/* The string whose opening quote is at *pp, decoded in place (never
 * longer than its JSON form) and NUL-terminated; *pp moves past its
 * closing quote. 0, or 1 for anything to leave to jansson. */
static int
line_string(char **pp, char *end, char **out)
{
	char *p = *pp + 1, *o = p;

	*out = o;
	while (p < end) {
		unsigned char c = (unsigned char)*p;
		if (c == '"') {
			*pp = p + 1;
			*o = '\0';   /* o <= p: at most over the closing quote */
			return 0;
		}
		if (c < 0x20)
			return 1;
		if (c >= 0x80) {
			size_t n = utf8_len((const unsigned char *)p, (const unsigned char *)end);
			if (n == 0)
				return 1;
			memmove(o, p, n);
			o += n;
			p += n;
			continue;
		}
		if (c != '\\') {
			*o++ = (char)c;
			p++;
			continue;
		}
		if (end - p < 2)
			return 1;
		switch (p[1]) {
		case '"': case '\\': case '/': *o++ = p[1]; break;
		case 'b': *o++ = '\b'; break;
		case 'f': *o++ = '\f'; break;
		case 'n': *o++ = '\n'; break;
		case 'r': *o++ = '\r'; break;
		case 't': *o++ = '\t'; break;
		case 'u': {
			int u, l;
			if (end - p < 6 || (u = hex4(p + 2)) <= 0 || (u >= 0xdc00 && u <= 0xdfff))
				return 1;   /* NUL, a lone low surrogate, not hex */
			if (u >= 0xd800 && u <= 0xdbff) {
				if (end - p < 12 || p[6] != '\\' || p[7] != 'u' ||
				    (l = hex4(p + 8)) < 0xdc00 || l > 0xdfff)
					return 1;
				o = put_utf8(o, 0x10000u + (((unsigned)u - 0xd800u) << 10) +
				                ((unsigned)l - 0xdc00u));
				p += 12;
			} else {
				o = put_utf8(o, (unsigned)u);
				p += 6;
			}
			continue;
		}
		default:
			return 1;
		}
		p += 2;
	}
	return 1;
}

/* A JSON integer in jansson's range (a 64-bit json_int_t; beyond it
 * jansson refuses the line). */
static int
line_int(char **pp, char *end, int64_t *out)
{
	char *p = *pp;
	bool neg = false;
	uint64_t v = 0, max = INT64_MAX;

	if (p < end && *p == '-') {
		neg = true;
		max = (uint64_t)INT64_MAX + 1;
		p++;
	}
	if (p >= end || *p < '0' || *p > '9' || (*p == '0' && p + 1 < end && p[1] >= '0' && p[1] <= '9'))
		return 1;
	for (; p < end && *p >= '0' && *p <= '9'; p++) {
		unsigned d = (unsigned)(*p - '0');
		if (v > (max - d) / 10)
			return 1;
		v = v * 10 + d;
	}
	if (p < end && (*p == '.' || *p == 'e' || *p == 'E'))
		return 1;
	*pp = p;
	*out = neg ? (int64_t)(0 - v) : (int64_t)v;
	return 0;
}

static int
line_hex(const char *s, uint8_t *buf, size_t max, const uint8_t **p, size_t *n)
{
	*p = NULL;
	*n = 0;
	if (!s)
		return 0;
	if (gw_unhex(s, buf, max, n))
		return 1;
	*p = *n ? buf : NULL;
	return 0;
}

int
gw_audit_row_from_line(char *line, size_t len, struct gw_audit_row *r, struct gw_audit_rowbuf *b)
{
	char *p = line, *end = line + len, *str[LK_N] = { 0 };
	int64_t num[LK_N] = { 0 };
	uint32_t seen = 0;
	size_t next = 0;
	char *m_end = NULL;

	memset(r, 0, sizeof(*r));
	if (len > 0 && end[-1] == '\n')
		end--;
	if (p >= end || *p++ != '{')
		return 1;
	for (;;) {
		char *key, *q;
		size_t klen, k;

		if (p >= end || *p != '"')
			return 1;
		key = p + 1;
		for (q = key; q < end && *q != '"' && *q != '\\'; q++)
			;
		if (q >= end || *q != '"')
			return 1;
		klen = (size_t)(q - key);
		k = next < LK_N && line_keys[next].len == klen && !memcmp(line_keys[next].name, key, klen)
		    ? next : LK_N;
		for (size_t i = 0; k == LK_N && i < LK_N; i++)
			if (line_keys[i].len == klen && !memcmp(line_keys[i].name, key, klen))
				k = i;
		if (k == LK_N || (seen & (1u << k)))
			return 1;   /* a key of another writer, or twice */
		seen |= 1u << k;
		next = k + 1;
		p = q + 1;
		if (p >= end || *p++ != ':' || p >= end)
			return 1;
		if (line_keys[k].integer) {
			if (line_int(&p, end, &num[k]))
				return 1;
		} else if (*p == '"') {
			if (line_string(&p, end, &str[k]))
				return 1;
		} else if (end - p >= 4 && !memcmp(p, "null", 4)) {
			p += 4;   /* str[k] stays NULL */
		} else {
			return 1;
		}
		if (p >= end)
			return 1;
		if (*p == '}') {
			if (p + 1 != end)
				return 1;
			break;
		}
		if (*p++ != ',')
			return 1;
	}
	/* Every field gw_audit_row_from_json reads; "type" a record. */
	if ((seen & ((1u << LK_TIME) - 1)) != (1u << LK_TIME) - 1 || !str[LK_TYPE] ||
	    strcmp(str[LK_TYPE], "record") != 0 || num[LK_SEQ] <= 0)
		return 1;
	if (!str[LK_MECH] || !*str[LK_MECH] || str[LK_MECH][0] == '-')
		return 1;
	r->mechanism = strtoull(str[LK_MECH], &m_end, 10);
	if (*m_end)
		return 1;
	r->seq = (uint64_t)num[LK_SEQ];
	r->ts_ns = num[LK_TS];
	r->action = str[LK_ACTION];
	r->outcome = str[LK_OUTCOME];
	r->reason = str[LK_REASON];
	r->actor = str[LK_ACTOR];
	r->uid = num[LK_UID];
	r->pid = num[LK_PID];
	r->exe = str[LK_EXE];
	r->host = str[LK_HOST];
	r->seal = str[LK_SEAL];
	r->application = num[LK_APP];
	r->detail = str[LK_DETAIL];
	if (line_hex(str[LK_DOC], b->doc, sizeof(b->doc), &r->doc_digest, &r->doc_digest_len) ||
	    line_hex(str[LK_SIG], b->sig, sizeof(b->sig), &r->signed_digest, &r->signed_digest_len) ||
	    line_hex(str[LK_PREV], b->prev, sizeof(b->prev), &r->prev_hash, &r->prev_hash_len) ||
	    line_hex(str[LK_HASH], b->hash, sizeof(b->hash), &r->hash, &r->hash_len)) {
		memset(r, 0, sizeof(*r));
		return 1;
	}
	return 0;
}
