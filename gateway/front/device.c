/*
 * Devices and their CA (device.h, docs/deployment.md): the records in
 * tls_devices (one JSON file per device, replaced whole by rename), the
 * enrollment requests, a seal admin's approval issuing the certificate
 * with the device CA's key, revocation, and the check the TLS front makes
 * at every handshake and request.
 */
#include "device.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "audit.h"
#include "dispatch.h"
#include "log.h"
#include "protocol.h"
#include "server.h"
#include "token.h"

#define RECORD_MAX (64 * 1024)
#define HOST_MAX 253

struct dev {
	int64_t id;
	char state[12];             /* pending, approved, revoked */
	char host[HOST_MAX + 1];    /* as the request said */
	char person[SG_NAME_MAX + 1];
	char code[20];              /* the request's key, short: XXXX-XXXX-XXXX-XXXX */
	char fp[65];                /* SHA-256 of the issued certificate, hex */
	char by[SG_NAME_MAX + 1];   /* who approved or revoked */
	char group[GW_DEVICE_GROUP_MAX + 1];  /* given at approval; "" none */
	int64_t requested, changed, not_after;
	char *csr, *cert;           /* PEM */
};

struct gw_devices {
	pthread_mutex_t lock;
	char *dir;
	struct dev *v;
	size_t n, cap;
	int64_t next_id;
	X509 *ca;
	EVP_PKEY *ca_key;           /* a file key (tls_device_ca_key), or NULL */
	struct gw_token *tok;       /* with ca_label: the key on the backend token */
	char *ca_label;             /* NULL, ca_key NULL: this gateway issues nothing */
	char *ca_pem;
	unsigned days;
};

static void
dev_clear(struct dev *e)
{
	free(e->csr);
	free(e->cert);
	memset(e, 0, sizeof(*e));
}

void
gw_devices_close(struct gw_devices **dp)
{
	struct gw_devices *d = dp ? *dp : NULL;

	if (d == NULL)
		return;
	*dp = NULL;
	for (size_t i = 0; i < d->n; i++)
		dev_clear(&d->v[i]);
	free(d->v);
	free(d->dir);
	X509_free(d->ca);
	EVP_PKEY_free(d->ca_key);
	free(d->ca_label);
	free(d->ca_pem);
	pthread_mutex_destroy(&d->lock);
	free(d);
}

static void
hex(const uint8_t *b, size_t n, char *out)
{
	for (size_t i = 0; i < n; i++)
		snprintf(out + 2 * i, 3, "%02x", b[i]);
}

/* ---- the record files ---- */

static json_t *
dev_json(const struct dev *e, bool full)
{
	json_t *o = json_pack("{s:I,s:s,s:s,s:s,s:s,s:s,s:s,s:I,s:I,s:I}",
	                      "id", (json_int_t)e->id, "state", e->state, "host", e->host,
	                      "person", e->person, "code", e->code, "fingerprint", e->fp,
	                      "by", e->by, "requested", (json_int_t)e->requested,
	                      "changed", (json_int_t)e->changed,
	                      "not_after", (json_int_t)e->not_after);

	if (o != NULL)
		json_object_set_new(o, "group", json_string(e->group));
	if (o != NULL && full) {
		json_object_set_new(o, "csr", json_string(e->csr ? e->csr : ""));
		json_object_set_new(o, "cert", json_string(e->cert ? e->cert : ""));
	}
	return o;
}

/* Writes e's file whole: a temporary file, synced, renamed over the old. */
static int
dev_save(struct gw_devices *d, const struct dev *e, char *err, size_t errlen)
{
	char path[4096], tmp[4200];
	json_t *o = dev_json(e, true);
	char *text = o ? json_dumps(o, JSON_INDENT(1) | JSON_SORT_KEYS) : NULL;
	size_t len = text ? strlen(text) : 0, off = 0;
	int fd = -1, dfd, rv = -1;

	json_decref(o);
	if (text == NULL) {
		sg_seterr(err, errlen, "out of memory");
		return -1;
	}
	snprintf(path, sizeof(path), "%s/%lld.json", d->dir, (long long)e->id);
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		goto fail;
	while (off < len) {
		ssize_t n = write(fd, text + off, len - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			goto fail;
		off += (size_t)n;
	}
	if (fsync(fd) < 0 || close(fd) < 0) {
		fd = -1;
		goto fail;
	}
	fd = -1;
	if (rename(tmp, path) < 0)
		goto fail;
	dfd = open(d->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		(void)fsync(dfd);
		close(dfd);
	}
	rv = 0;
	goto out;
fail:
	sg_seterr(err, errlen, "device record %s: %s", path, strerror(errno));
	if (fd >= 0)
		close(fd);
	unlink(tmp);
out:
	free(text);
	return rv;
}

static int
copy_str(const json_t *o, const char *key, char *dst, size_t len)
{
	const char *s = NULL;
	char err[128];

	if (sg_get_str(o, key, true, &s, len - 1, err, sizeof(err)) < 0)
		return -1;
	snprintf(dst, len, "%s", s);
	return 0;
}

static int
dev_load(struct gw_devices *d, const char *name, char *err, size_t errlen)
{
	char path[4096];
	json_error_t je;
	json_t *o;
	struct dev e = { 0 };
	const char *s;
	char why[128];
	struct stat sb;

	snprintf(path, sizeof(path), "%s/%s", d->dir, name);
	if (stat(path, &sb) < 0 || !S_ISREG(sb.st_mode) || sb.st_size > RECORD_MAX) {
		sg_seterr(err, errlen, "%s: not a device record", path);
		return -1;
	}
	o = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
	if (o == NULL) {
		sg_seterr(err, errlen, "%s:%d: %s", path, je.line, je.text);
		return -1;
	}
	if (sg_get_int(o, "id", true, 1, INT32_MAX, &e.id, why, sizeof(why)) < 0 ||
	    copy_str(o, "state", e.state, sizeof(e.state)) < 0 ||
	    copy_str(o, "host", e.host, sizeof(e.host)) < 0 ||
	    copy_str(o, "person", e.person, sizeof(e.person)) < 0 ||
	    copy_str(o, "code", e.code, sizeof(e.code)) < 0 ||
	    copy_str(o, "fingerprint", e.fp, sizeof(e.fp)) < 0 ||
	    copy_str(o, "by", e.by, sizeof(e.by)) < 0 ||
	    sg_get_int(o, "requested", true, 0, INT64_MAX, &e.requested, why, sizeof(why)) < 0 ||
	    sg_get_int(o, "changed", true, 0, INT64_MAX, &e.changed, why, sizeof(why)) < 0 ||
	    sg_get_int(o, "not_after", true, 0, INT64_MAX, &e.not_after, why, sizeof(why)) < 0 ||
	    (strcmp(e.state, "pending") != 0 && strcmp(e.state, "approved") != 0 &&
	     strcmp(e.state, "revoked") != 0)) {
		sg_seterr(err, errlen, "%s: a field is missing or wrong", path);
		json_decref(o);
		return -1;
	}
	/* (records from before device groups have none) */
	s = NULL;
	if (sg_get_str(o, "group", false, &s, GW_DEVICE_GROUP_MAX, why, sizeof(why)) < 0 ||
	    (s != NULL && s[0] != '\0' && !gw_device_group_ok(s))) {
		sg_seterr(err, errlen, "%s: group: %s", path, why);
		json_decref(o);
		return -1;
	}
	if (s != NULL)
		snprintf(e.group, sizeof(e.group), "%s", s);
	s = NULL;
	if (sg_get_str(o, "csr", true, &s, RECORD_MAX, why, sizeof(why)) == 0)
		e.csr = strdup(s);
	if (sg_get_str(o, "cert", true, &s, RECORD_MAX, why, sizeof(why)) == 0)
		e.cert = strdup(s);
	json_decref(o);
	if (e.csr == NULL || e.cert == NULL || d->n == GW_DEVICE_MAX) {
		dev_clear(&e);
		sg_seterr(err, errlen, "%s: out of memory or too many devices", path);
		return -1;
	}
	if (d->n == d->cap) {
		size_t cap = d->cap ? 2 * d->cap : 16;
		struct dev *nv = realloc(d->v, cap * sizeof(*nv));
		if (nv == NULL) {
			dev_clear(&e);
			sg_seterr(err, errlen, "out of memory");
			return -1;
		}
		d->v = nv;
		d->cap = cap;
	}
	d->v[d->n++] = e;
	if (e.id >= d->next_id)
		d->next_id = e.id + 1;
	return 0;
}

/* A key file the gateway's user alone can read, as for the token PIN. */
static EVP_PKEY *
read_key(const char *path, char *err, size_t errlen)
{
	struct stat sb;
	EVP_PKEY *k = NULL;
	FILE *f;

	if (lstat(path, &sb) < 0 || !S_ISREG(sb.st_mode)) {
		sg_seterr(err, errlen, "%s: not a regular file", path);
		return NULL;
	}
	if (sb.st_uid != geteuid() || (sb.st_mode & 077) != 0) {
		sg_seterr(err, errlen, "%s: must be owned by the gateway's user and mode 0600", path);
		return NULL;
	}
	f = fopen(path, "re");
	if (f != NULL) {
		k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
		fclose(f);
	}
	if (k == NULL)
		sg_seterr(err, errlen, "%s: not a PEM private key", path);
	return k;
}

/* Signs x with the device CA's key: the file key, or through the token
 * (ecdsa-with-SHA256 over the TBS that OpenSSL encodes, the signature
 * set in place), and checks the result against the CA's public key so a
 * certificate the token signed wrongly is never handed out. */
static int
ca_sign(struct gw_devices *d, X509 *x, EVP_PKEY *pub, char *err, size_t errlen)
{
	const ASN1_BIT_STRING *csig = NULL;
	const X509_ALGOR *calg = NULL;
	ASN1_BIT_STRING *sig;
	unsigned char *tbs = NULL, md[32], der[80];
	size_t derlen = sizeof(der);
	unsigned mdlen = 0;
	int len, rv = -1;

	if (d->ca_key != NULL) {
		if (X509_sign(x, d->ca_key, EVP_PKEY_get_base_id(d->ca_key) == EVP_PKEY_ED25519 ?
		              NULL : EVP_sha256()) <= 0) {
			sg_seterr(err, errlen, "the device CA's key file could not sign");
			return -1;
		}
		return 0;
	}
	X509_get0_signature(&csig, &calg, x);
	/* (OpenSSL has no setter for a signature made elsewhere: both
	 * algorithm fields and the signature are the certificate's own.) */
	if (X509_ALGOR_set0((X509_ALGOR *)calg, OBJ_nid2obj(NID_ecdsa_with_SHA256), V_ASN1_UNDEF,
	                    NULL) != 1 ||
	    X509_ALGOR_set0((X509_ALGOR *)X509_get0_tbs_sigalg(x),
	                    OBJ_nid2obj(NID_ecdsa_with_SHA256), V_ASN1_UNDEF, NULL) != 1 ||
	    (len = i2d_re_X509_tbs(x, &tbs)) <= 0 ||
	    EVP_Digest(tbs, (size_t)len, md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen != 32) {
		sg_seterr(err, errlen, "the certificate to sign could not be encoded");
		goto out;
	}
	if (gw_token_ca_sign(d->tok, d->ca_label, md, der, &derlen, err, errlen) < 0)
		goto out;
	sig = (ASN1_BIT_STRING *)csig;
	if (ASN1_BIT_STRING_set(sig, der, (int)derlen) != 1)
		goto out;
	sig->flags &= ~(ASN1_STRING_FLAG_BITS_LEFT | 0x07);
	sig->flags |= ASN1_STRING_FLAG_BITS_LEFT;
	if (X509_verify(x, pub) != 1) {
		sg_seterr(err, errlen, "the certificate signed on the token does not verify with the "
		          "device CA's public key");
		goto out;
	}
	rv = 0;
out:
	OPENSSL_free(tbs);
	OPENSSL_cleanse(md, sizeof(md));
	return rv;
}

static int add_ext(X509 *x, X509 *ca, int nid, const char *value);

/* The device CA's own certificate, self-signed through the token, written
 * to path (0644: it is public) when there is none yet. */
static int
ca_make(struct gw_devices *d, const struct gw_config *cfg, EVP_PKEY *pub, char *err,
        size_t errlen)
{
	X509 *x = X509_new();
	X509_NAME *name = NULL;
	BIGNUM *bn = BN_new();
	char cn[128], tmp[4200];
	time_t now = time(NULL);
	FILE *f = NULL;
	int fd, rv = -1;

	snprintf(cn, sizeof(cn), "sealgate device CA, site %s", cfg->site ? cfg->site : "main");
	snprintf(tmp, sizeof(tmp), "%s.tmp", cfg->tls_device_ca);
	if (x == NULL || bn == NULL || (name = X509_NAME_new()) == NULL ||
	    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1, -1, 0) != 1 ||
	    X509_set_version(x, 2) != 1 ||
	    BN_rand(bn, 127, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) != 1 ||
	    BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) == NULL ||
	    X509_set_issuer_name(x, name) != 1 || X509_set_subject_name(x, name) != 1 ||
	    X509_time_adj_ex(X509_getm_notBefore(x), 0, -300, &now) == NULL ||
	    X509_time_adj_ex(X509_getm_notAfter(x), GW_DEVICE_CA_DAYS, 0, &now) == NULL ||
	    X509_set_pubkey(x, pub) != 1 ||
	    add_ext(x, x, NID_basic_constraints, "critical,CA:TRUE,pathlen:0") < 0 ||
	    add_ext(x, x, NID_key_usage, "critical,keyCertSign,cRLSign") < 0 ||
	    add_ext(x, x, NID_subject_key_identifier, "hash") < 0) {
		sg_seterr(err, errlen, "the device CA certificate could not be made");
		goto out;
	}
	if (ca_sign(d, x, pub, err, errlen) < 0)
		goto out;
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
	if (fd < 0 || (f = fdopen(fd, "w")) == NULL) {
		if (fd >= 0)
			close(fd);
		sg_seterr(err, errlen, "tls_device_ca %s: %s", tmp, strerror(errno));
		goto out;
	}
	if (PEM_write_X509(f, x) != 1 || fflush(f) != 0 || fsync(fileno(f)) != 0) {
		sg_seterr(err, errlen, "tls_device_ca %s: %s", tmp, strerror(errno));
		fclose(f);
		unlink(tmp);
		goto out;
	}
	fclose(f);
	if (rename(tmp, cfg->tls_device_ca) < 0) {
		sg_seterr(err, errlen, "tls_device_ca %s: %s", cfg->tls_device_ca, strerror(errno));
		unlink(tmp);
		goto out;
	}
	gw_log_info("device CA certificate %s made, its key '%s' on the backend token",
	            cfg->tls_device_ca, d->ca_label);
	rv = 0;
out:
	X509_NAME_free(name);
	BN_free(bn);
	X509_free(x);
	return rv;
}

/* The CA key on the token: found (or generated) there, its certificate
 * made when tls_device_ca does not exist yet. A token that is away at
 * start is no error when the certificate exists: issuing waits for it. */
static int
ca_token_open(struct gw_devices *d, const struct gw_config *cfg, struct gw_token *tok,
              char *err, size_t errlen)
{
	uint8_t der[256];
	const unsigned char *p = der;
	size_t derlen = sizeof(der);
	EVP_PKEY *pub = NULL;
	char why[256];
	int rv = -1;

	if (tok == NULL) {
		sg_seterr(err, errlen, "tls_device_ca_token_label: this gateway has no backend token");
		return -1;
	}
	d->tok = tok;
	if ((d->ca_label = strdup(cfg->tls_device_ca_token_label)) == NULL) {
		sg_seterr(err, errlen, "out of memory");
		return -1;
	}
	if (gw_token_ca_public(tok, d->ca_label, true, der, &derlen, why, sizeof(why)) < 0) {
		if (access(cfg->tls_device_ca, F_OK) == 0) {
			gw_log_warn("device CA key: %s; no device certificate is issued until it is "
			            "there", why);
			return 0;
		}
		sg_seterr(err, errlen, "tls_device_ca_token_label: %s", why);
		return -1;
	}
	if ((pub = d2i_PUBKEY(NULL, &p, (long)derlen)) == NULL) {
		sg_seterr(err, errlen, "device CA key: a public key OpenSSL cannot read");
		return -1;
	}
	if (access(cfg->tls_device_ca, F_OK) < 0 && errno == ENOENT &&
	    ca_make(d, cfg, pub, err, errlen) < 0)
		goto out;
	rv = 0;
out:
	EVP_PKEY_free(pub);
	return rv;
}

int
gw_devices_open(const struct gw_config *cfg, struct gw_token *tok, struct gw_devices **out,
                char *err, size_t errlen)
{
	struct gw_devices *d = calloc(1, sizeof(*d));
	struct dirent *de;
	BIO *mem = NULL;
	DIR *dir = NULL;
	FILE *f;
	char *p;
	long len;
	int rv = -1;

	*out = NULL;
	if (d == NULL || pthread_mutex_init(&d->lock, NULL) != 0) {
		free(d);
		sg_seterr(err, errlen, "out of memory");
		return -1;
	}
	d->next_id = 1;
	d->days = cfg->tls_device_days;
	d->dir = strdup(cfg->tls_devices);
	if (d->dir == NULL)
		goto oom;
	if (mkdir(d->dir, 0700) < 0 && errno != EEXIST) {
		sg_seterr(err, errlen, "tls_devices %s: %s", d->dir, strerror(errno));
		goto out;
	}
	if (cfg->tls_device_ca_token_label != NULL &&
	    ca_token_open(d, cfg, tok, err, errlen) < 0)
		goto out;
	f = fopen(cfg->tls_device_ca, "re");
	if (f != NULL) {
		d->ca = PEM_read_X509(f, NULL, NULL, NULL);
		fclose(f);
	}
	if (d->ca == NULL) {
		sg_seterr(err, errlen, "tls_device_ca %s: not a PEM certificate", cfg->tls_device_ca);
		goto out;
	}
	if ((mem = BIO_new(BIO_s_mem())) == NULL || PEM_write_bio_X509(mem, d->ca) != 1)
		goto oom;
	len = BIO_get_mem_data(mem, &p);
	if ((d->ca_pem = strndup(p, (size_t)len)) == NULL)
		goto oom;
	if (d->ca_label != NULL && d->tok != NULL) {
		uint8_t der[256];
		const unsigned char *q = der;
		size_t derlen = sizeof(der);
		EVP_PKEY *pub = NULL;
		char why[256];
		bool same;

		/* The certificate beside must be the token key's: a CA file of
		 * another key would trust devices this gateway never issued. */
		if (gw_token_ca_public(d->tok, d->ca_label, false, der, &derlen, why,
		                       sizeof(why)) == 0 &&
		    (pub = d2i_PUBKEY(NULL, &q, (long)derlen)) != NULL) {
			same = EVP_PKEY_eq(pub, X509_get0_pubkey(d->ca)) == 1;
			EVP_PKEY_free(pub);
			if (!same) {
				sg_seterr(err, errlen, "tls_device_ca %s is not the certificate of the key "
				          "'%s' on the backend token (move it away and the gateway makes "
				          "one)", cfg->tls_device_ca, d->ca_label);
				goto out;
			}
		}
	}
	if (cfg->tls_device_ca_key != NULL) {
		gw_log_info("the device CA's key is the file %s; tls_device_ca_token_label keeps it "
		            "on the backend token instead (docs/deployment.md)", cfg->tls_device_ca_key);
		d->ca_key = read_key(cfg->tls_device_ca_key, err, errlen);
		if (d->ca_key == NULL)
			goto out;
		if (X509_check_private_key(d->ca, d->ca_key) != 1) {
			sg_seterr(err, errlen, "tls_device_ca_key %s is not the key of tls_device_ca %s",
			          cfg->tls_device_ca_key, cfg->tls_device_ca);
			goto out;
		}
	}
	dir = opendir(d->dir);
	if (dir == NULL) {
		sg_seterr(err, errlen, "tls_devices %s: %s", d->dir, strerror(errno));
		goto out;
	}
	while ((de = readdir(dir)) != NULL) {
		size_t n = strlen(de->d_name);
		if (n < 6 || strcmp(de->d_name + n - 5, ".json") != 0 ||
		    strspn(de->d_name, "0123456789") != n - 5)
			continue;
		if (dev_load(d, de->d_name, err, errlen) < 0)
			goto out;
	}
	*out = d;
	d = NULL;
	rv = 0;
	goto out;
oom:
	sg_seterr(err, errlen, "out of memory");
out:
	if (dir != NULL)
		closedir(dir);
	BIO_free(mem);
	gw_devices_close(&d);
	return rv;
}

static struct dev *
find_locked(struct gw_devices *d, int64_t id)
{
	for (size_t i = 0; i < d->n; i++)
		if (d->v[i].id == id)
			return &d->v[i];
	return NULL;
}

int
gw_devices_check(struct gw_devices *d, const char *fp, int64_t *id, int *x509_err, char *why,
                 size_t whylen)
{
	struct dev *e = NULL;
	int rv = -1;

	*id = 0;
	*x509_err = X509_V_ERR_CERT_REJECTED;
	pthread_mutex_lock(&d->lock);
	for (size_t i = 0; i < d->n && e == NULL; i++)
		if (d->v[i].fp[0] != '\0' && strcmp(d->v[i].fp, fp) == 0)
			e = &d->v[i];
	if (e == NULL) {
		sg_seterr(why, whylen, "a certificate of no device enrolled here");
	} else if (strcmp(e->state, "revoked") == 0) {
		*x509_err = X509_V_ERR_CERT_REVOKED;
		sg_seterr(why, whylen, "device %lld is revoked", (long long)e->id);
	} else if (strcmp(e->state, "approved") != 0) {
		sg_seterr(why, whylen, "device %lld is not approved", (long long)e->id);
	} else if (e->not_after <= time(NULL)) {
		*x509_err = X509_V_ERR_CERT_HAS_EXPIRED;
		sg_seterr(why, whylen, "the certificate of device %lld has expired", (long long)e->id);
	} else {
		*id = e->id;
		rv = 0;
	}
	pthread_mutex_unlock(&d->lock);
	return rv;
}

bool
gw_device_group_ok(const char *g)
{
	size_t n = strlen(g);

	if (n == 0 || n > GW_DEVICE_GROUP_MAX ||
	    strspn(g, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") != n)
		return false;
	return g[0] != '.' && g[0] != '-' && g[0] != '_';
}

int
gw_devices_group(struct gw_devices *d, int64_t id, char *group, size_t len)
{
	struct dev *e;
	int rv = -1;

	if (len > 0)
		group[0] = '\0';
	if (d == NULL)
		return -1;
	pthread_mutex_lock(&d->lock);
	for (size_t i = 0; i < d->n; i++) {
		e = &d->v[i];
		if (e->id == id) {
			snprintf(group, len, "%s", e->group);
			rv = 0;
			break;
		}
	}
	pthread_mutex_unlock(&d->lock);
	return rv;
}

/* ---- records in the audit log ---- */

static int
record(struct gw_ctx *ctx, const struct gw_peer *peer, const char *action, const char *outcome,
       const char *reason, const char *actor, const struct dev *e)
{
	json_t *o = json_pack("{s:I,s:s,s:s,s:s,s:s,s:s}", "device", (json_int_t)e->id,
	                      "host", e->host, "person", e->person, "code", e->code,
	                      "fingerprint", e->fp, "group", e->group);
	char *detail = o ? json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
	struct gw_audit_event ev = {
		.action = action, .outcome = outcome, .reason = reason, .actor = actor,
		.uid = peer ? (int64_t)peer->uid : -1, .pid = peer ? (int64_t)peer->pid : -1,
		.exe = peer ? peer->exe : "sealgated", .host = ctx->host, .detail = detail,
	};
	uint64_t seq;
	int rv = 0;

	json_decref(o);
	if (detail == NULL || ctx->audit == NULL || gw_audit_record(ctx->audit, &ev, &seq) < 0) {
		gw_log_error("audit record for %s of device %lld could not be written", action,
		             (long long)e->id);
		rv = -1;
	}
	free(detail);
	return rv;
}

/* ---- enrollment ---- */

static bool
host_ok(const char *h)
{
	size_t n = strlen(h);

	return n > 0 && n <= HOST_MAX &&
	       strspn(h, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_") == n;
}

/* The request's key is one a device may have: RSA of 2048 bits or more,
 * an EC key on a named curve of 256 bits or more, or Ed25519. */
static bool
key_ok(EVP_PKEY *k)
{
	int id = EVP_PKEY_get_base_id(k);

	if (id == EVP_PKEY_RSA)
		return EVP_PKEY_get_bits(k) >= 2048;
	if (id == EVP_PKEY_EC)
		return EVP_PKEY_get_bits(k) >= 256;
	return id == EVP_PKEY_ED25519;
}

/* The short form of the request's public key both sides show, so the
 * admin approves the request the person made and not one slipped in. */
static int
key_code(EVP_PKEY *k, char out[20])
{
	unsigned char *der = NULL, md[32];
	unsigned mdlen = 0;
	int len = i2d_PUBKEY(k, &der);
	char h[17];

	if (len <= 0 || EVP_Digest(der, (size_t)len, md, &mdlen, EVP_sha256(), NULL) != 1) {
		OPENSSL_free(der);
		return -1;
	}
	OPENSSL_free(der);
	hex(md, 8, h);
	for (char *c = h; *c; c++)
		*c = (char)(*c >= 'a' ? *c - 32 : *c);
	snprintf(out, 20, "%.4s-%.4s-%.4s-%.4s", h, h + 4, h + 8, h + 12);
	return 0;
}

static json_t *
refuse(unsigned long rv, const char *code, const char *msg)
{
	return sg_reply_error(rv, code, "%s", msg);
}

json_t *
gw_device_enroll(struct gw_ctx *ctx, const struct gw_peer *peer, const json_t *msg)
{
	struct gw_devices *d = ctx->devices;
	const char *csr = NULL, *host = NULL, *person = NULL;
	struct gw_snapshot *snap = NULL;
	X509_REQ *req = NULL;
	EVP_PKEY *k;
	BIO *b = NULL;
	struct dev e = { 0 }, *same = NULL;
	size_t pending = 0;
	int64_t id;
	char err[256], code[20];
	json_t *rep = NULL;
	bool known;

	if (d == NULL)
		return refuse(CKR_FUNCTION_NOT_SUPPORTED, "no_devices", "this gateway enrolls no devices");
	if (sg_get_str(msg, "csr", true, &csr, GW_DEVICE_CSR_MAX, err, sizeof(err)) < 0 ||
	    sg_get_str(msg, "host", true, &host, HOST_MAX, err, sizeof(err)) < 0 ||
	    sg_get_str(msg, "person", true, &person, SG_NAME_MAX, err, sizeof(err)) < 0)
		return sg_reply_error(CKR_ARGUMENTS_BAD, "bad_request", "%s", err);
	if (!host_ok(host))
		return refuse(CKR_ARGUMENTS_BAD, "bad_request", "host: letters, digits, . - _ only");
	snap = gw_snapshot_get(ctx);
	known = snap != NULL && gw_policy_person(snap->policy, person) != NULL;
	gw_snapshot_put(&snap);
	if (!known)
		return refuse(CKR_ARGUMENTS_BAD, "unknown_person", "the policy has no such person");
	if ((b = BIO_new_mem_buf(csr, (int)strlen(csr))) == NULL ||
	    (req = PEM_read_bio_X509_REQ(b, NULL, NULL, NULL)) == NULL ||
	    (k = X509_REQ_get0_pubkey(req)) == NULL || X509_REQ_verify(req, k) != 1 ||
	    !key_ok(k) || key_code(k, code) < 0) {
		rep = refuse(CKR_ARGUMENTS_BAD, "bad_request", "csr: not a signed PEM certificate "
		             "request with an RSA-2048+, EC P-256+ or Ed25519 key");
		goto out;
	}
	pthread_mutex_lock(&d->lock);
	for (size_t i = 0; i < d->n; i++) {
		if (strcmp(d->v[i].state, "pending") == 0) {
			pending++;
			if (strcmp(d->v[i].code, code) == 0 && strcmp(d->v[i].person, person) == 0 &&
			    strcmp(d->v[i].host, host) == 0)
				same = &d->v[i];
		}
	}
	if (same != NULL) {
		/* Asked again (a lost reply): the same request. */
		rep = sg_reply_ok();
		json_object_set_new(rep, "id", json_integer((json_int_t)same->id));
		json_object_set_new(rep, "code", json_string(same->code));
		pthread_mutex_unlock(&d->lock);
		goto out;
	}
	if (pending >= GW_DEVICE_PENDING_MAX || d->n >= GW_DEVICE_MAX) {
		pthread_mutex_unlock(&d->lock);
		rep = refuse(CKR_DEVICE_ERROR, "busy", "too many device requests wait for a seal admin");
		goto out;
	}
	e.id = d->next_id;
	snprintf(e.state, sizeof(e.state), "pending");
	snprintf(e.host, sizeof(e.host), "%s", host);
	snprintf(e.person, sizeof(e.person), "%s", person);
	snprintf(e.code, sizeof(e.code), "%s", code);
	e.requested = e.changed = time(NULL);
	e.csr = strdup(csr);
	e.cert = strdup("");
	if (e.csr != NULL && e.cert != NULL && d->n == d->cap) {
		size_t cap = d->cap ? 2 * d->cap : 16;
		struct dev *nv = realloc(d->v, cap * sizeof(*nv));
		if (nv != NULL) {
			d->v = nv;
			d->cap = cap;
		}
	}
	if (e.csr == NULL || e.cert == NULL || d->n == d->cap) {
		pthread_mutex_unlock(&d->lock);
		rep = refuse(CKR_HOST_MEMORY, "internal", "out of memory");
		goto out;
	}
	/* Recorded, then kept: a request the log does not show is not made. */
	if (record(ctx, peer, "device_enroll", "ok", NULL, NULL, &e) < 0 ||
	    dev_save(d, &e, err, sizeof(err)) < 0) {
		pthread_mutex_unlock(&d->lock);
		gw_log_error("device request not kept: %s", err);
		rep = refuse(CKR_DEVICE_ERROR, "internal", "the request could not be kept");
		goto out;
	}
	id = e.id;
	d->next_id++;
	d->v[d->n++] = e;
	memset(&e, 0, sizeof(e));
	pthread_mutex_unlock(&d->lock);
	gw_log_info("device request %lld from host %s for %s, key %s", (long long)id, host, person,
	            code);
	rep = sg_reply_ok();
	json_object_set_new(rep, "id", json_integer((json_int_t)id));
	json_object_set_new(rep, "code", json_string(code));
out:
	dev_clear(&e);
	X509_REQ_free(req);
	BIO_free(b);
	return rep;
}

json_t *
gw_device_fetch(struct gw_ctx *ctx, const struct gw_peer *peer, const json_t *msg)
{
	struct gw_devices *d = ctx->devices;
	const char *code = NULL;
	int64_t id = 0;
	struct dev *e;
	char err[256];
	json_t *rep;

	(void)peer;
	if (d == NULL)
		return refuse(CKR_FUNCTION_NOT_SUPPORTED, "no_devices", "this gateway enrolls no devices");
	if (sg_get_int(msg, "id", true, 1, INT32_MAX, &id, err, sizeof(err)) < 0 ||
	    sg_get_str(msg, "code", true, &code, 19, err, sizeof(err)) < 0)
		return sg_reply_error(CKR_ARGUMENTS_BAD, "bad_request", "%s", err);
	pthread_mutex_lock(&d->lock);
	e = find_locked(d, id);
	/* The code makes the id useless to whoever did not ask. */
	if (e == NULL || strcmp(e->code, code) != 0) {
		pthread_mutex_unlock(&d->lock);
		return refuse(CKR_ARGUMENTS_BAD, "unknown_device", "no such device request");
	}
	rep = sg_reply_ok();
	json_object_set_new(rep, "state", json_string(e->state));
	if (strcmp(e->state, "approved") == 0) {
		json_object_set_new(rep, "cert", json_string(e->cert));
		json_object_set_new(rep, "ca", json_string(d->ca_pem));
		json_object_set_new(rep, "not_after", json_integer((json_int_t)e->not_after));
	}
	pthread_mutex_unlock(&d->lock);
	return rep;
}

/* ---- a seal admin's requests ---- */

json_t *
gw_op_device_list(struct gw_req *r)
{
	struct gw_devices *d = r->ctx->devices;
	json_t *arr = json_array(), *rep;

	if (d == NULL) {
		json_decref(arr);
		return refuse(CKR_FUNCTION_NOT_SUPPORTED, "no_devices", "this gateway has no TLS front");
	}
	pthread_mutex_lock(&d->lock);
	for (size_t i = 0; i < d->n; i++)
		json_array_append_new(arr, dev_json(&d->v[i], false));
	pthread_mutex_unlock(&d->lock);
	rep = sg_reply_ok();
	json_object_set_new(rep, "devices", arr);
	return rep;
}

static int
add_ext(X509 *x, X509 *ca, int nid, const char *value)
{
	X509V3_CTX v3;
	X509_EXTENSION *ext;
	int ok;

	X509V3_set_ctx(&v3, ca, x, NULL, NULL, 0);
	ext = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
	if (ext == NULL)
		return -1;
	ok = X509_add_ext(x, ext, -1);
	X509_EXTENSION_free(ext);
	return ok == 1 ? 0 : -1;
}

/* The device certificate for e's request: a client certificate only,
 * days long, a random serial. */
static X509 *
issue(struct gw_devices *d, const struct dev *e, int64_t *not_after, char *err, size_t errlen)
{
	X509 *x = X509_new();
	X509_REQ *req = NULL;
	X509_NAME *name = NULL;
	BIGNUM *bn = BN_new();
	BIO *b = BIO_new_mem_buf(e->csr, (int)strlen(e->csr));
	char cn[64];
	time_t now = time(NULL);
	bool ok = false;

	snprintf(cn, sizeof(cn), "sealgate device %lld", (long long)e->id);
	if (x == NULL || bn == NULL || b == NULL ||
	    (req = PEM_read_bio_X509_REQ(b, NULL, NULL, NULL)) == NULL ||
	    (name = X509_NAME_new()) == NULL ||
	    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1, -1, 0) != 1 ||
	    X509_set_version(x, 2) != 1 ||
	    BN_rand(bn, 127, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) != 1 ||
	    BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) == NULL ||
	    X509_set_issuer_name(x, X509_get_subject_name(d->ca)) != 1 ||
	    X509_set_subject_name(x, name) != 1 ||
	    X509_time_adj_ex(X509_getm_notBefore(x), 0, -300, &now) == NULL ||
	    X509_time_adj_ex(X509_getm_notAfter(x), (int)d->days, 0, &now) == NULL ||
	    X509_set_pubkey(x, X509_REQ_get0_pubkey(req)) != 1 ||
	    add_ext(x, d->ca, NID_basic_constraints, "critical,CA:FALSE") < 0 ||
	    add_ext(x, d->ca, NID_key_usage, "critical,digitalSignature") < 0 ||
	    add_ext(x, d->ca, NID_ext_key_usage, "clientAuth") < 0 ||
	    add_ext(x, d->ca, NID_subject_key_identifier, "hash") < 0 ||
	    add_ext(x, d->ca, NID_authority_key_identifier, "keyid") < 0 ||
	    ca_sign(d, x, X509_get0_pubkey(d->ca), err, errlen) < 0)
		goto out;
	*not_after = (int64_t)now + (int64_t)d->days * 86400;
	ok = true;
out:
	X509_NAME_free(name);
	X509_REQ_free(req);
	BN_free(bn);
	BIO_free(b);
	if (!ok) {
		X509_free(x);
		x = NULL;
	}
	return x;
}

static int
cert_fp(X509 *x, char out[65])
{
	unsigned char md[32];
	unsigned len = 0;

	if (X509_digest(x, EVP_sha256(), md, &len) != 1 || len != 32)
		return -1;
	hex(md, 32, out);
	return 0;
}

/* Applies a change to device id (approve or revoke), recorded first. */
static json_t *
change(struct gw_req *r, bool approve)
{
	struct gw_devices *d = r->ctx->devices;
	struct dev *e, next = { 0 };
	X509 *x = NULL;
	BIO *b = NULL;
	char *p, err[256];
	long len;
	int64_t id = 0, not_after = 0;
	const char *action = approve ? "device_approve" : "device_revoke", *group = NULL;
	json_t *rep = NULL;

	if (d == NULL)
		return refuse(CKR_FUNCTION_NOT_SUPPORTED, "no_devices", "this gateway has no TLS front");
	if (sg_get_int(r->msg, "id", true, 1, INT32_MAX, &id, r->err, sizeof(r->err)) < 0 ||
	    sg_get_str(r->msg, "group", false, &group, GW_DEVICE_GROUP_MAX, r->err,
	               sizeof(r->err)) < 0)
		return gw_bad_request(r);
	if (group != NULL && !approve)
		return refuse(CKR_ARGUMENTS_BAD, "bad_request", "a group is given at approval");
	if (group != NULL && (!gw_device_group_ok(group) ||
	                      strcmp(group, GW_DEVICE_GROUP_LOCAL) == 0)) {
		snprintf(r->err, sizeof(r->err), "group: letters, digits, '.', '_', '-', at most %d, "
		         "and not '%s' (the gateway's own host)", GW_DEVICE_GROUP_MAX,
		         GW_DEVICE_GROUP_LOCAL);
		return refuse(CKR_ARGUMENTS_BAD, "bad_request", r->err);
	}
	if (approve && d->ca_key == NULL && d->ca_label == NULL)
		return refuse(CKR_FUNCTION_NOT_SUPPORTED, "no_ca_key",
		              "this gateway has no device CA key (tls_device_ca_token_label) to "
		              "issue certificates with");
	pthread_mutex_lock(&d->lock);
	e = find_locked(d, id);
	if (e == NULL) {
		rep = refuse(CKR_ARGUMENTS_BAD, "unknown_device", "no such device");
		goto out;
	}
	if (approve ? strcmp(e->state, "pending") != 0 : strcmp(e->state, "revoked") == 0) {
		snprintf(r->err, sizeof(r->err), "device %lld is %s", (long long)id, e->state);
		rep = refuse(CKR_FUNCTION_FAILED, "bad_state", r->err);
		goto out;
	}
	next = *e;
	next.csr = next.cert = NULL;
	next.changed = time(NULL);
	snprintf(next.by, sizeof(next.by), "%s", r->who->id);
	snprintf(next.state, sizeof(next.state), approve ? "approved" : "revoked");
	if (approve)
		snprintf(next.group, sizeof(next.group), "%s", group ? group : "");
	next.csr = strdup(e->csr);
	if (approve) {
		err[0] = '\0';
		if ((x = issue(d, e, &not_after, err, sizeof(err))) == NULL ||
		    cert_fp(x, next.fp) < 0 ||
		    (b = BIO_new(BIO_s_mem())) == NULL || PEM_write_bio_X509(b, x) != 1) {
			gw_log_error("device %lld: the certificate could not be made: %s",
			             (long long)id, err[0] ? err : "out of memory");
			rep = refuse(CKR_DEVICE_ERROR, "internal", "the certificate could not be made");
			goto out;
		}
		len = BIO_get_mem_data(b, &p);
		next.cert = strndup(p, (size_t)len);
		next.not_after = not_after;
	} else {
		next.cert = strdup(e->cert);
	}
	if (next.csr == NULL || next.cert == NULL) {
		rep = refuse(CKR_HOST_MEMORY, "internal", "out of memory");
		goto out;
	}
	/* Recorded first: a device the log does not show approved never
	 * gets in, and one it shows revoked is out from this moment. */
	if (record(r->ctx, r->peer, action, "ok", NULL, r->who->id, &next) < 0) {
		rep = refuse(CKR_DEVICE_ERROR, "internal", "the audit record could not be written");
		goto out;
	}
	if (dev_save(d, &next, err, sizeof(err)) < 0) {
		gw_log_error("%s: %s", action, err);
		rep = refuse(CKR_DEVICE_ERROR, "internal", "the device record could not be written");
		goto out;
	}
	free(e->csr);
	free(e->cert);
	*e = next;
	memset(&next, 0, sizeof(next));
	gw_log_info("device %lld (%s, %s) %s by %s", (long long)id, e->host, e->person,
	            approve ? "approved" : "revoked", r->who->id);
	rep = sg_reply_ok();
	json_object_set_new(rep, "device", dev_json(e, false));
out:
	pthread_mutex_unlock(&d->lock);
	free(next.csr);
	free(next.cert);
	X509_free(x);
	BIO_free(b);
	return rep;
}

json_t *
gw_op_device_approve(struct gw_req *r)
{
	return change(r, true);
}

json_t *
gw_op_device_revoke(struct gw_req *r)
{
	return change(r, false);
}
