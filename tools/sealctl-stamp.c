/*
 * sealctl stamp (docs/stamp.md): the seal on the page. The input PDF gets
 * one incremental update (tools/stamp/pdfstamp.c) whose /Contents holds a
 * CMS detached SignedData (CAdES: SHA-256, signing-certificate-v2, signing
 * time, content type, message digest) signed through sealgate-pkcs11.so
 * with a hash-and-sign mechanism, so that the gateway sees the signed
 * attributes; before signing, the update goes to the gateway
 * (stamp_prepare), which checks it against the approved document. With
 * --tsa, an RFC 3161 timestamp of the signature value goes into the
 * SignerInfo (tools/stamp/tsa.c, PAdES-B-T).
 */
#include "sealctl.h"

#include <dlfcn.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <p11-kit/pkcs11.h>
#include <openssl/bn.h>
#include <openssl/cms.h>
#include <openssl/ecdsa.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "protocol.h"
#include "stamp/near.h"
#include "stamp/pdfstamp.h"
#include "stamp/sealimg.h"
#include "stamp/tsa.h"

/* The token the module shows, a seal's certificate and key, signing. */
struct p11 {
	void *lib;
	CK_FUNCTION_LIST_PTR f;
	CK_SESSION_HANDLE s;
	bool init, open;
};

static void
p11_close(struct p11 *p)
{
	if (p->open)
		p->f->C_CloseSession(p->s);
	if (p->init)
		p->f->C_Finalize(NULL);
	if (p->lib)
		dlclose(p->lib);
	memset(p, 0, sizeof(*p));
}

static int
p11_open(struct p11 *p, const char *module, const char *pin)
{
	CK_C_GetFunctionList gfl;
	CK_SLOT_ID slots[8];
	CK_ULONG n = 8;
	CK_RV rv;

	memset(p, 0, sizeof(*p));
	if ((p->lib = dlopen(module, RTLD_NOW | RTLD_LOCAL)) == NULL) {
		fprintf(stderr, "sealctl: %s: %s\n", module, dlerror());
		return -1;
	}
	gfl = (CK_C_GetFunctionList)dlsym(p->lib, "C_GetFunctionList");
	if (gfl == NULL || gfl(&p->f) != CKR_OK) {
		fprintf(stderr, "sealctl: %s is not a PKCS#11 module\n", module);
		return -1;
	}
	if ((rv = p->f->C_Initialize(NULL)) != CKR_OK) {
		fprintf(stderr, "sealctl: C_Initialize: 0x%lx\n", (unsigned long)rv);
		return -1;
	}
	p->init = true;
	if ((rv = p->f->C_GetSlotList(CK_TRUE, slots, &n)) != CKR_OK || n == 0) {
		fprintf(stderr, "sealctl: the module shows no token (is the gateway running?)\n");
		return -1;
	}
	if ((rv = p->f->C_OpenSession(slots[0], CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL,
	                              &p->s)) != CKR_OK) {
		fprintf(stderr, "sealctl: C_OpenSession: 0x%lx\n", (unsigned long)rv);
		return -1;
	}
	p->open = true;
	rv = p->f->C_Login(p->s, CKU_USER, (CK_UTF8CHAR_PTR)pin, (CK_ULONG)strlen(pin));
	if (rv != CKR_OK && rv != CKR_USER_ALREADY_LOGGED_IN) {
		fprintf(stderr, "sealctl: the module refused the login (0x%lx)\n", (unsigned long)rv);
		return -1;
	}
	return 0;
}

/* The first object of class cls with attribute (type, val, len). */
static int
p11_find(struct p11 *p, CK_OBJECT_CLASS cls, CK_ATTRIBUTE_TYPE type, const void *val,
         CK_ULONG len, CK_OBJECT_HANDLE *out)
{
	CK_ATTRIBUTE t[2] = { { CKA_CLASS, &cls, sizeof(cls) }, { type, (void *)val, len } };
	CK_ULONG n = 0;

	if (p->f->C_FindObjectsInit(p->s, t, 2) != CKR_OK)
		return -1;
	if (p->f->C_FindObjects(p->s, out, 1, &n) != CKR_OK)
		n = 0;
	p->f->C_FindObjectsFinal(p->s);
	return n == 1 ? 0 : -1;
}

/* An attribute's bytes (free them). */
static uint8_t *
p11_attr(struct p11 *p, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_TYPE type, CK_ULONG *len)
{
	CK_ATTRIBUTE a = { type, NULL, 0 };
	uint8_t *buf;

	if (p->f->C_GetAttributeValue(p->s, o, &a, 1) != CKR_OK || a.ulValueLen == 0 ||
	    a.ulValueLen == CK_UNAVAILABLE_INFORMATION || a.ulValueLen > 65536)
		return NULL;
	if ((buf = malloc(a.ulValueLen)) == NULL)
		return NULL;
	a.pValue = buf;
	if (p->f->C_GetAttributeValue(p->s, o, &a, 1) != CKR_OK) {
		free(buf);
		return NULL;
	}
	*len = a.ulValueLen;
	return buf;
}

/* ECDSA r||s (the token's) as the DER ECDSA-Sig-Value CMS carries. */
static uint8_t *
ecdsa_der(const uint8_t *rs, size_t len, size_t *out_len)
{
	ECDSA_SIG *es = ECDSA_SIG_new();
	BIGNUM *r = BN_bin2bn(rs, (int)(len / 2), NULL), *s = BN_bin2bn(rs + len / 2, (int)(len / 2), NULL);
	uint8_t *der = NULL;
	int n;

	if (es == NULL || r == NULL || s == NULL || ECDSA_SIG_set0(es, r, s) != 1) {
		BN_free(r);
		BN_free(s);
		ECDSA_SIG_free(es);
		return NULL;
	}
	n = i2d_ECDSA_SIG(es, &der);
	ECDSA_SIG_free(es);
	if (n <= 0)
		return NULL;
	*out_len = (size_t)n;
	return der;
}

/* The CMS over the file's byte range, signed by the seal's key through
 * the module. *der: the ContentInfo (OPENSSL_free). */
/* The approval receipt of application app for the signature value sig
 * (the receipt request, after the signature is recorded), as the
 * attribute's value: the reply's {"receipt","signature","cert"} in JSON.
 * NULL with a message. */
static char *
fetch_receipt(struct cli *c, long long app, const ASN1_OCTET_STRING *sig)
{
	json_t *req = sg_request_new(SG_OP_RECEIPT), *rep, *v;
	char *text = NULL;
	bool json = c->json;

	json_object_set_new(req, "application", json_integer(app));
	sg_set_bytes(req, "signature", ASN1_STRING_get0_data(sig), (size_t)ASN1_STRING_length(sig));
	c->json = false;
	rep = cli_call(c, req);
	c->json = json;
	if (!sg_reply_is_ok(rep, NULL, NULL, NULL)) {
		cli_die_reply(rep);
		json_decref(rep);
		return NULL;
	}
	v = json_pack("{s:O,s:O,s:O}", "receipt", json_object_get(rep, "receipt"),
	              "signature", json_object_get(rep, "signature"), "cert", json_object_get(rep, "cert"));
	if (v != NULL)
		text = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(v);
	json_decref(rep);
	return text;
}

/* The seal's image the policy names (seal_image): 1 and *img drawn from
 * it, 0 when the policy names none, -1 (said) when it does not draw. */
static int
policy_image(struct cli *c, const char *seal, struct sg_image *img)
{
	json_t *req = sg_request_new(SG_OP_SEAL_IMAGE), *rep;
	const char *code = NULL;
	uint8_t *bytes = NULL;
	size_t len = 0;
	char err[256];
	bool json = c->json;
	int rv = -1;

	json_object_set_new(req, "seal", json_string(seal));
	c->json = false;
	rep = cli_call(c, req);
	c->json = json;
	if (!sg_reply_is_ok(rep, NULL, &code, NULL)) {
		if (code != NULL && strcmp(code, "no_image") == 0)
			rv = 0;
		else
			cli_die_reply(rep);
		goto out;
	}
	if (sg_get_bytes(rep, "image", true, &bytes, &len, SG_MSG_MAX, err, sizeof(err)) < 0 ||
	    sg_sealimg_load_mem(bytes, len, 0, img, err, sizeof(err)) < 0) {
		fprintf(stderr, "sealctl: the policy's image of seal %s: %s\n", seal, err);
		goto out;
	}
	rv = 1;
out:
	free(bytes);
	json_decref(rep);
	return rv;
}

static int
make_cms(struct p11 *p, struct cli *c, long long app, const char *label, const uint8_t md[32],
         const char *tsa, uint8_t **der, size_t *der_len, char *err, size_t errlen)
{
	CK_OBJECT_HANDLE cert_o, key_o;
	CK_ULONG cert_len = 0, id_len = 0, siglen = 0;
	uint8_t *cert_der = NULL, *ckaid = NULL, *attrs = NULL, *sig = NULL, *edsig = NULL, *tok = NULL;
	const uint8_t *cp;
	X509 *cert = NULL;
	CMS_ContentInfo *cms = NULL;
	CMS_SignerInfo *si;
	EVP_PKEY *pub;
	ASN1_TIME *t = NULL;
	CK_MECHANISM mech = { CKM_SHA256_RSA_PKCS, NULL, 0 };
	size_t attrs_len = 0, edlen = 0, tok_len = 0;
	int rv = -1, n;

	if (p11_find(p, CKO_CERTIFICATE, CKA_LABEL, label, (CK_ULONG)strlen(label), &cert_o) < 0 ||
	    (cert_der = p11_attr(p, cert_o, CKA_VALUE, &cert_len)) == NULL ||
	    (ckaid = p11_attr(p, cert_o, CKA_ID, &id_len)) == NULL ||
	    p11_find(p, CKO_PRIVATE_KEY, CKA_ID, ckaid, id_len, &key_o) < 0) {
		snprintf(err, errlen, "the module shows no certificate and key of \"%s\"", label);
		goto out;
	}
	cp = cert_der;
	if ((cert = d2i_X509(NULL, &cp, (long)cert_len)) == NULL || (pub = X509_get0_pubkey(cert)) == NULL) {
		snprintf(err, errlen, "the seal's certificate does not parse");
		goto out;
	}
	if (EVP_PKEY_get_base_id(pub) == EVP_PKEY_EC)
		mech.mechanism = CKM_ECDSA_SHA256;
	else if (EVP_PKEY_get_base_id(pub) != EVP_PKEY_RSA) {
		snprintf(err, errlen, "only RSA and EC seals can stamp");
		goto out;
	}
	/* The signer is set up with the certificate's public key (it only
	 * has to match the certificate): the private key stays behind the
	 * module, and CMS_PARTIAL leaves the signature to us. */
	cms = CMS_sign(NULL, NULL, NULL, NULL, CMS_PARTIAL | CMS_DETACHED | CMS_BINARY);
	if (cms == NULL ||
	    (si = CMS_add1_signer(cms, cert, pub, EVP_sha256(),
	                          CMS_PARTIAL | CMS_BINARY | CMS_NOSMIMECAP | CMS_CADES)) == NULL ||
	    (t = X509_gmtime_adj(NULL, 0)) == NULL ||
	    CMS_signed_add1_attr_by_NID(si, NID_pkcs9_contentType, V_ASN1_OBJECT,
	                                OBJ_nid2obj(NID_pkcs7_data), -1) != 1 ||
	    CMS_signed_add1_attr_by_NID(si, NID_pkcs9_signingTime, t->type, t, -1) != 1 ||
	    CMS_signed_add1_attr_by_NID(si, NID_pkcs9_messageDigest, V_ASN1_OCTET_STRING, md, 32) != 1 ||
	    (attrs = sg_stamp_signed_attrs(si, &attrs_len)) == NULL) {
		snprintf(err, errlen, "the CMS could not be set up: %s",
		         ERR_reason_error_string(ERR_get_error()));
		goto out;
	}
	/* The data itself goes to the module (no size probe: the buffer is
	 * as large as any signature of this key). */
	siglen = 1024;
	if ((sig = malloc(siglen)) == NULL)
		goto out;
	if (p->f->C_SignInit(p->s, &mech, key_o) != CKR_OK ||
	    (n = (int)p->f->C_Sign(p->s, attrs, (CK_ULONG)attrs_len, sig, &siglen)) != CKR_OK) {
		snprintf(err, errlen, "the gateway refused the signature (sealctl why says why)");
		goto out;
	}
	if (mech.mechanism == CKM_ECDSA_SHA256) {
		if ((edsig = ecdsa_der(sig, siglen, &edlen)) == NULL)
			goto out;
		ASN1_STRING_set(CMS_SignerInfo_get0_signature(si), edsig, (int)edlen);
	} else {
		ASN1_STRING_set(CMS_SignerInfo_get0_signature(si), sig, (int)siglen);
	}
	/* The receipt: unsigned, so it is added after the signature it
	 * speaks of (and binds to it by the signed attributes' hash and the
	 * signature value's, which the gateway checks is of its record). The
	 * use is spent by now: without a receipt the stamp is still written,
	 * and that is said. */
	if (app > 0) {
		char *receipt = fetch_receipt(c, app, CMS_SignerInfo_get0_signature(si));
		ASN1_OBJECT *oid = OBJ_txt2obj(SG_RECEIPT_OID, 1);
		int ok = receipt && oid &&
		         CMS_unsigned_add1_attr_by_OBJ(si, oid, V_ASN1_OCTET_STRING, receipt,
		                                       (int)strlen(receipt)) == 1;
		free(receipt);
		ASN1_OBJECT_free(oid);
		if (!ok)
			fprintf(stderr, "sealctl: the stamp carries no approval receipt (application "
			        "#%lld): sealctl verify will say so\n", app);
	}
	/* The timestamp (PAdES-B-T), of the signature value as it stands in
	 * the SignerInfo: unsigned as well. A TSA that fails fails the stamp,
	 * though the signature is made and recorded by now: a stamp asked
	 * with --tsa is not written without its timestamp. */
	if (tsa != NULL) {
		const ASN1_OCTET_STRING *sv = CMS_SignerInfo_get0_signature(si);
		char why[512];
		if (sg_tsa_stamp(tsa, ASN1_STRING_get0_data(sv), (size_t)ASN1_STRING_length(sv),
		                 SG_TSA_TIMEOUT, &tok, &tok_len, why, sizeof(why)) < 0) {
			snprintf(err, errlen, "%s: no timestamp, so no stamped file is written (the "
			         "gateway has made and recorded the signature already%s)", why,
			         app > 0 ? ": the application's use is spent" : "");
			goto out;
		}
		if (tok_len > SG_TSA_RESERVE) {
			snprintf(err, errlen, "the TSA's token is %zu bytes, more than the %d reserved "
			         "for it: no stamped file is written (the gateway has made and recorded "
			         "the signature already)", tok_len, SG_TSA_RESERVE);
			goto out;
		}
		if (CMS_unsigned_add1_attr_by_NID(si, NID_id_smime_aa_timeStampToken, V_ASN1_SEQUENCE,
		                                  tok, (int)tok_len) != 1) {
			snprintf(err, errlen, "the timestamp could not be added: %s",
			         ERR_reason_error_string(ERR_get_error()));
			goto out;
		}
	}
	*der = NULL;
	if ((n = i2d_CMS_ContentInfo(cms, der)) <= 0) {
		snprintf(err, errlen, "the CMS could not be encoded");
		goto out;
	}
	*der_len = (size_t)n;
	rv = 0;
out:
	free(cert_der);
	free(ckaid);
	free(attrs);
	free(sig);
	OPENSSL_free(edsig);
	OPENSSL_free(tok);
	ASN1_TIME_free(t);
	X509_free(cert);
	CMS_ContentInfo_free(cms);
	return rv;
}

/* The SHA-256 of the whole file but its /Contents string. */
static void
range_digest(const uint8_t *in, size_t in_len, const struct sg_stamp_update *u, uint8_t md[32])
{
	EVP_MD_CTX *c = EVP_MD_CTX_new();
	size_t a = u->contents_at, b = u->contents_at + u->contents_len;

	EVP_DigestInit_ex(c, EVP_sha256(), NULL);
	EVP_DigestUpdate(c, in, in_len);
	EVP_DigestUpdate(c, u->buf, a - in_len);
	EVP_DigestUpdate(c, u->buf + (b - in_len), in_len + u->len - b);
	EVP_DigestFinal_ex(c, md, NULL);
	EVP_MD_CTX_free(c);
}

/* The company a seal is the company's: its certificate's O. */
static int
seal_company(struct p11 *p, const char *label, char *out, size_t len)
{
	CK_OBJECT_HANDLE o;
	CK_ULONG n = 0;
	uint8_t *der = NULL;
	const uint8_t *cp;
	X509 *x = NULL;
	int rv = -1;

	if (p11_find(p, CKO_CERTIFICATE, CKA_LABEL, label, (CK_ULONG)strlen(label), &o) == 0 &&
	    (der = p11_attr(p, o, CKA_VALUE, &n)) != NULL) {
		cp = der;
		if ((x = d2i_X509(NULL, &cp, (long)n)) != NULL &&
		    X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_organizationName, out,
		                              (int)len) > 0)
			rv = 0;
	}
	X509_free(x);
	free(der);
	return rv;
}

/* The label the module shows for seal id, and its kind (the seals
 * request). */
static int
seal_label(struct cli *c, const char *seal, char *label, size_t len, char *kind, size_t kindlen)
{
	json_t *rep = cli_call(c, sg_request_new(SG_OP_SEALS)), *s;
	size_t i;
	int rv = -1;

	json_array_foreach(json_object_get(rep, "seals"), i, s) {
		const char *id = json_string_value(json_object_get(s, "id"));
		const char *l = json_string_value(json_object_get(s, "label"));
		if (id && l && strcmp(id, seal) == 0) {
			const char *k = json_string_value(json_object_get(s, "kind"));
			snprintf(label, len, "%s", l);
			snprintf(kind, kindlen, "%s", k ? k : "");
			rv = 0;
		}
	}
	if (rv < 0)
		fprintf(stderr, "sealctl: no seal \"%s\" that you may use\n", seal);
	json_decref(rep);
	return rv;
}

/* Shows the gateway the update before signing (stamp_prepare): for an
 * application bound to the input, it checks the update is a stamp of that
 * document and nothing else. 0 checked or nothing to check, -1 refused. */
static int
prepare(struct cli *c, const char *seal, long long *app, const uint8_t *in, size_t in_len,
        const struct sg_stamp_update *u)
{
	json_t *req = sg_request_new(SG_OP_STAMP_PREPARE), *rep;
	uint8_t sha[32];
	char hex[65];
	const char *code = NULL, *msg = NULL;
	int rv = -1;

	EVP_Digest(in, in_len, sha, NULL, EVP_sha256(), NULL);
	for (int i = 0; i < 32; i++)
		snprintf(hex + 2 * i, 3, "%02x", sha[i]);
	json_object_set_new(req, "seal", json_string(seal));
	json_object_set_new(req, "doc_sha256", json_string(hex));
	if (*app > 0)
		json_object_set_new(req, "application", json_integer(*app));
	sg_set_bytes(req, "update", u->buf, u->len);
	{
		bool json = c->json;
		c->json = false;
		rep = cli_call(c, req);
		c->json = json;
	}
	if (sg_reply_is_ok(rep, NULL, NULL, NULL)) {
		*app = (long long)json_integer_value(json_object_get(rep, "application"));
		rv = 0;
	} else if (!sg_reply_is_ok(rep, NULL, &code, &msg) && code && strcmp(code, "not_bound") == 0 &&
	         *app <= 0)
		rv = 0;   /* no document-bound application: the sign path decides */
	else
		cli_die_reply(rep);
	json_decref(rep);
	return rv;
}

int
sealctl_stamp(struct cli *c, const char *cmd, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "seal", required_argument, NULL, 's' }, { "in", required_argument, NULL, 'i' },
		{ "out", required_argument, NULL, 'o' }, { "application", required_argument, NULL, 'a' },
		{ "page", required_argument, NULL, 'p' }, { "at", required_argument, NULL, 'x' },
		{ "near", required_argument, NULL, 'n' }, { "reason", required_argument, NULL, 'r' },
		{ "module", required_argument, NULL, 'm' }, { "tsa", required_argument, NULL, 't' },
		{ NULL, 0, NULL, 0 },
	};
	const char *seal = NULL, *inpath = NULL, *outpath = NULL, *reason = NULL, *module = NULL;
	const char *near = NULL, *tsa = NULL;
	struct sg_stamp_place place = { 0 };
	struct sg_stamp_text text = { 0 };
	struct sg_stamp_update u = { 0 };
	struct p11 p = { 0 };
	long long app = 0;
	uint8_t *in = NULL, md[32], *der = NULL;
	size_t in_len = 0, der_len = 0;
	char label[256], kind[64], company[256], err[1024], *pin = NULL, *end, *tmp = NULL;
	struct sg_image image = { 0 };
	FILE *f = NULL;
	mode_t um;
	int ch, rv = 1, got, fd;

	if (strcmp(cmd, "stamp") != 0)
		return -1;
	optind = 0;
	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (ch) {
		case 's': seal = optarg; break;
		case 'i': inpath = optarg; break;
		case 'o': outpath = optarg; break;
		case 'r': reason = optarg; break;
		case 'm': module = optarg; break;
		case 't': tsa = optarg; break;
		case 'a':
			app = strtoll(optarg, &end, 10);
			if (app <= 0 || *end) {
				fprintf(stderr, "sealctl: --application takes an application number\n");
				return 2;
			}
			break;
		case 'p':
			place.page = (int)strtol(optarg, &end, 10);
			if (place.page <= 0 || *end) {
				fprintf(stderr, "sealctl: --page takes a page number (1 = the first)\n");
				return 2;
			}
			break;
		case 'x':
			if (sscanf(optarg, "%lf,%lf", &place.x, &place.y) != 2) {
				fprintf(stderr, "sealctl: --at takes X,Y in points from the page's lower left\n");
				return 2;
			}
			place.at_set = true;
			break;
		case 'n': near = optarg; break;
		default:
			return 2;
		}
	}
	if (near != NULL && place.at_set) {
		fprintf(stderr, "sealctl: --near TEXT or --at X,Y, not both\n");
		return 2;
	}
	if (seal == NULL || inpath == NULL || outpath == NULL || optind != argc) {
		fprintf(stderr, "sealctl: stamp --seal S --in FILE.pdf --out OUT.pdf [--application ID] "
		        "[--page N --at X,Y | --near TEXT] [--reason R] [--module PATH] [--tsa URL]\n");
		return 2;
	}
	if (module == NULL)
		module = getenv("SEALGATE_MODULE");
	if (module == NULL)
		module = "sealgate-pkcs11.so";
	if (tsa == NULL)
		tsa = getenv("SEALGATE_TSA_URL");
	if (tsa != NULL && *tsa == '\0')
		tsa = NULL;
	if (sealctl_read_file(inpath, &in, &in_len) < 0)
		return 1;
	/* --near: the seal's centre on the text's (poppler finds it). */
	if (near != NULL) {
		if (sg_stamp_find_text(in, in_len, near, place.page, &place.page, &place.x, &place.y,
		                       err, sizeof(err)) < 0) {
			fprintf(stderr, "sealctl: %s: %s\n", inpath, err);
			free(in);
			return 1;
		}
		place.at_set = true;
		place.clamp = true;
	}
	if (cli_login(c) != 0)
		goto out;
	if (seal_label(c, seal, label, sizeof(label), kind, sizeof(kind)) < 0)
		goto out;
	/* The module reaches the gateway sealctl talks to, as this account. */
	if (c->socket_from != NULL)
		setenv("SEALGATE_SOCKET", c->socket, 1);
	if (c->user != NULL)
		setenv("SEALGATE_USER", c->user, 1);
	if ((pin = getenv("SEALGATE_PASSWORD") ? strdup(getenv("SEALGATE_PASSWORD")) :
	           cli_read_secret(c->password_file, "sealgate password")) == NULL)
		goto out;
	if (p11_open(&p, module, pin) < 0)
		goto out;
	/* The policy's image for the seal where it names one; else the round
	 * red seal of the company, of the seal's kind (sealimg.c); without a
	 * CJK font the ring and star stand in, said on stderr. */
	if ((got = policy_image(c, seal, &image)) < 0)
		goto out;
	if (got == 1)
		text.image = &image;
	else if (seal_company(&p, label, company, sizeof(company)) == 0) {
		struct sg_sealimg_spec spec = { .company = company, .kind = sg_sealimg_kind_text(kind) };
		if (sg_sealimg_render(&spec, &image, err, sizeof(err)) == 0)
			text.image = &image;
		else
			fprintf(stderr, "sealctl: the seal's image cannot be drawn (%s): a red ring "
			        "stands in\n", err);
	}
	text.reason = reason;
	text.name = label;
	text.field = "Seal";
	/* The token's room is reserved now: the placeholder is signed around. */
	if (tsa != NULL)
		text.contents_max = SG_STAMP_CONTENTS_MAX + SG_TSA_RESERVE;
	if (sg_stamp_build(in, in_len, &place, &text, &u, err, sizeof(err)) < 0) {
		fprintf(stderr, "sealctl: %s: %s\n", inpath, err);
		goto out;
	}
	if (prepare(c, seal, &app, in, in_len, &u) < 0)
		goto out;
	range_digest(in, in_len, &u, md);
	if (make_cms(&p, c, app, label, md, tsa, &der, &der_len, err, sizeof(err)) < 0) {
		fprintf(stderr, "sealctl: %s\n", err);
		goto out;
	}
	if (sg_stamp_fill(&u, in_len, der, der_len) < 0) {
		fprintf(stderr, "sealctl: the signature (%zu bytes) does not fit its place\n", der_len);
		goto out;
	}
	/* Written beside OUT and renamed onto it once whole: a failure on the
	 * way (a full disk) leaves no half-written OUT. */
	if (asprintf(&tmp, "%s.XXXXXX", outpath) < 0) {
		tmp = NULL;
		goto out;
	}
	if ((fd = mkstemp(tmp)) < 0) {
		fprintf(stderr, "sealctl: %s: %s\n", tmp, strerror(errno));
		free(tmp);
		tmp = NULL;
		goto out;
	}
	um = umask(0);
	umask(um);
	if (fchmod(fd, 0666 & ~um) < 0 || (f = fdopen(fd, "wb")) == NULL) {
		fprintf(stderr, "sealctl: %s: %s\n", tmp, strerror(errno));
		close(fd);
		goto out;
	}
	if (fwrite(in, 1, in_len, f) != in_len || fwrite(u.buf, 1, u.len, f) != u.len) {
		fprintf(stderr, "sealctl: %s: %s\n", tmp, strerror(errno));
		goto out;
	}
	if (fclose(f) != 0) {
		f = NULL;
		fprintf(stderr, "sealctl: %s: %s\n", tmp, strerror(errno));
		goto out;
	}
	f = NULL;
	if (rename(tmp, outpath) < 0) {
		fprintf(stderr, "sealctl: %s: %s\n", outpath, strerror(errno));
		goto out;
	}
	free(tmp);
	tmp = NULL;
	if (!c->json)
		printf("stamped %s with the %s on page %d at [%.0f %.0f %.0f %.0f]: %s\n", inpath, label,
		       u.page, u.rect[0], u.rect[1], u.rect[2], u.rect[3], outpath);
	rv = 0;
out:
	if (f != NULL)
		fclose(f);
	if (tmp != NULL) {
		unlink(tmp);
		free(tmp);
	}
	if (pin != NULL)
		sg_free_secret_str(pin);
	p11_close(&p);
	sg_image_clear(&image);
	OPENSSL_free(der);
	sg_stamp_update_free(&u);
	free(in);
	cli_logout(c);
	return rv;
}
