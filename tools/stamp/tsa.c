/*
 * RFC 3161 timestamps (docs/stamp.md, "The timestamp"): sealctl stamp asks
 * a TSA for a timestamp of the signature value once the gateway has signed
 * (and recorded) it, and checks the reply before the token goes into the
 * SignerInfo; sealctl verify checks a token found in a file the same way.
 * The TSA is remote and its reply untrusted: bounded in time and size,
 * read by OpenSSL's TS_* and CMS parsers only.
 */
#include "tsa.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <curl/curl.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/cms.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pkcs7.h>
#include <openssl/rand.h>
#include <openssl/ts.h>
#include <openssl/x509v3.h>

static const char *
ossl_reason(void)
{
	const char *r = ERR_reason_error_string(ERR_peek_last_error());
	return r ? r : "no reason given";
}

/* A name from the token, printable only: it is the TSA's text, shown on
 * a terminal. */
static void
clean_text(char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			*s = '?';
}

static void
token_info(TS_TST_INFO *tst, X509 *signer, struct sg_tsa_info *info)
{
	const ASN1_GENERALIZEDTIME *t = TS_TST_INFO_get_time(tst);
	GENERAL_NAME *gn = TS_TST_INFO_get_tsa(tst);
	struct tm tm;

	if (t != NULL && ASN1_TIME_to_tm(t, &tm) == 1)
		strftime(info->time, sizeof(info->time), "%Y-%m-%d %H:%M:%S UTC", &tm);
	if (gn != NULL && gn->type == GEN_DIRNAME) {
		X509_NAME_oneline(gn->d.directoryName, info->tsa, (int)sizeof(info->tsa));
	} else if (gn != NULL) {
		BIO *b = BIO_new(BIO_s_mem());
		int n;
		if (b != NULL && GENERAL_NAME_print(b, gn) == 1 &&
		    (n = BIO_read(b, info->tsa, (int)sizeof(info->tsa) - 1)) > 0)
			info->tsa[n] = '\0';
		BIO_free(b);
	} else if (signer != NULL) {
		X509_NAME_oneline(X509_get_subject_name(signer), info->tsa, (int)sizeof(info->tsa));
	}
	clean_text(info->tsa);
}

int
sg_tsa_check_token(const uint8_t *der, size_t len, const uint8_t *sig, size_t siglen,
                   const ASN1_INTEGER *nonce, X509_STORE *store, struct sg_tsa_info *info,
                   char *err, size_t errlen)
{
	const unsigned char *p = der;
	PKCS7 *token = NULL;
	TS_TST_INFO *tst = NULL;
	CMS_ContentInfo *cms = NULL;
	TS_VERIFY_CTX *vc = NULL;
	STACK_OF(X509) *signers = NULL;
	X509 *signer = NULL;
	TS_MSG_IMPRINT *mi;
	const ASN1_OCTET_STRING *h;
	uint8_t md[32];
	int rv = -1;

	memset(info, 0, sizeof(*info));
	if (len > SG_TSA_REPLY_MAX || (token = d2i_PKCS7(NULL, &p, (long)len)) == NULL ||
	    p != der + len || (tst = PKCS7_to_TS_TST_INFO(token)) == NULL) {
		snprintf(err, errlen, "it is not an RFC 3161 timestamp token");
		goto out;
	}
	signers = PKCS7_get0_signers(token, NULL, 0);
	if (signers != NULL && sk_X509_num(signers) == 1)
		signer = sk_X509_value(signers, 0);
	token_info(tst, signer, info);
	/* The imprint: SHA-256 of this signature value, nothing else. */
	mi = TS_TST_INFO_get_msg_imprint(tst);
	h = mi ? TS_MSG_IMPRINT_get_msg(mi) : NULL;
	EVP_Digest(sig, siglen, md, NULL, EVP_sha256(), NULL);
	if (mi == NULL || OBJ_obj2nid(TS_MSG_IMPRINT_get_algo(mi)->algorithm) != NID_sha256 ||
	    h == NULL || ASN1_STRING_length(h) != 32 || memcmp(ASN1_STRING_get0_data(h), md, 32) != 0) {
		snprintf(err, errlen, "its message imprint is not the SHA-256 of this signature value");
		goto out;
	}
	if (nonce != NULL && (TS_TST_INFO_get_nonce(tst) == NULL ||
	                      ASN1_INTEGER_cmp(TS_TST_INFO_get_nonce(tst), nonce) != 0)) {
		snprintf(err, errlen, "its nonce is not the request's (a reply to another request)");
		goto out;
	}
	if (signer == NULL) {
		snprintf(err, errlen, "it does not carry the TSA's certificate, or carries it twice");
		goto out;
	}
	/* RFC 3161 2.3: the TSA's certificate is for timestamping only, its
	 * extended key usage critical. */
	if (X509_check_purpose(signer, X509_PURPOSE_TIMESTAMP_SIGN, 0) != 1) {
		snprintf(err, errlen, "the TSA's certificate is not for timestamping "
		         "(no critical extended key usage id-kp-timeStamping alone)");
		goto out;
	}
	if (store != NULL) {
		/* The signature, the certificate chained to the store for the
		 * timestamping purpose and the ESS certificate id (OpenSSL's own
		 * check of a token). The context frees the store it holds. */
		if ((vc = TS_VERIFY_CTX_new()) == NULL || X509_STORE_up_ref(store) != 1) {
			snprintf(err, errlen, "out of memory");
			goto out;
		}
		TS_VERIFY_CTX_set_store(vc, store);
		TS_VERIFY_CTX_set_flags(vc, TS_VFY_SIGNATURE | TS_VFY_VERSION);
		if (TS_RESP_verify_token(vc, token) != 1) {
			snprintf(err, errlen, "it does not verify against the TSA CA (%s)", ossl_reason());
			goto out;
		}
	} else {
		/* The signature by its own certificate, not chained to anything. */
		p = der;
		if ((cms = d2i_CMS_ContentInfo(NULL, &p, (long)len)) == NULL ||
		    CMS_verify(cms, NULL, NULL, NULL, NULL, CMS_BINARY | CMS_NO_SIGNER_CERT_VERIFY) != 1) {
			snprintf(err, errlen, "its signature does not verify (%s)", ossl_reason());
			goto out;
		}
	}
	rv = 0;
out:
	ERR_clear_error();
	TS_VERIFY_CTX_free(vc);
	CMS_ContentInfo_free(cms);
	sk_X509_free(signers);
	TS_TST_INFO_free(tst);
	PKCS7_free(token);
	return rv;
}

/* The reply, as much as SG_TSA_REPLY_MAX. */
struct reply {
	uint8_t *p;
	size_t len;
	bool over;
};

static size_t
reply_write(char *data, size_t size, size_t n, void *ctx)
{
	struct reply *r = ctx;
	size_t add = size * n;
	uint8_t *np;

	if (add > SG_TSA_REPLY_MAX - r->len) {
		r->over = true;
		return 0;
	}
	if ((np = realloc(r->p, r->len + add)) == NULL)
		return 0;
	memcpy(np + r->len, data, add);
	r->p = np;
	r->len += add;
	return add;
}

/* The DER of a TimeStampReq for SHA-256(sig) with a fresh nonce. */
static uint8_t *
make_request(const uint8_t *sig, size_t siglen, ASN1_INTEGER **nonce, int *len)
{
	TS_REQ *req = TS_REQ_new();
	TS_MSG_IMPRINT *mi = TS_MSG_IMPRINT_new();
	X509_ALGOR *alg = X509_ALGOR_new();
	BIGNUM *bn = NULL;
	uint8_t md[32], rnd[8], *der = NULL;

	*nonce = NULL;
	EVP_Digest(sig, siglen, md, NULL, EVP_sha256(), NULL);
	if (req == NULL || mi == NULL || alg == NULL ||
	    X509_ALGOR_set0(alg, OBJ_nid2obj(NID_sha256), V_ASN1_NULL, NULL) != 1 ||
	    TS_MSG_IMPRINT_set_algo(mi, alg) != 1 || TS_MSG_IMPRINT_set_msg(mi, md, 32) != 1 ||
	    TS_REQ_set_version(req, 1) != 1 || TS_REQ_set_msg_imprint(req, mi) != 1 ||
	    RAND_bytes(rnd, sizeof(rnd)) != 1 || (bn = BN_bin2bn(rnd, sizeof(rnd), NULL)) == NULL ||
	    (*nonce = BN_to_ASN1_INTEGER(bn, NULL)) == NULL || TS_REQ_set_nonce(req, *nonce) != 1 ||
	    TS_REQ_set_cert_req(req, 1) != 1 || (*len = i2d_TS_REQ(req, &der)) <= 0) {
		ASN1_INTEGER_free(*nonce);
		*nonce = NULL;
		der = NULL;
	}
	BN_free(bn);
	X509_ALGOR_free(alg);
	TS_MSG_IMPRINT_free(mi);
	TS_REQ_free(req);
	return der;
}

int
sg_tsa_stamp(const char *url, const uint8_t *sig, size_t siglen, long timeout, uint8_t **token,
             size_t *token_len, char *err, size_t errlen)
{
	CURL *curl = NULL;
	struct curl_slist *hdr = NULL;
	struct reply r = { 0 };
	char cerr[CURL_ERROR_SIZE] = "";
	ASN1_INTEGER *nonce = NULL;
	uint8_t *req = NULL;
	const unsigned char *p;
	TS_RESP *resp = NULL;
	PKCS7 *tok;
	const ASN1_INTEGER *status;
	const char *ctype = NULL;
	struct sg_tsa_info info;
	char why[256];
	long code = 0, st;
	int req_len = 0, n;
	CURLcode cc;
	bool curl_up = false;
	int rv = -1;

	*token = NULL;
	if ((req = make_request(sig, siglen, &nonce, &req_len)) == NULL) {
		snprintf(err, errlen, "the timestamp request could not be made: %s", ossl_reason());
		goto out;
	}
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		snprintf(err, errlen, "libcurl could not be set up");
		goto out;
	}
	curl_up = true;
	if ((curl = curl_easy_init()) == NULL ||
	    (hdr = curl_slist_append(NULL, "Content-Type: application/timestamp-query")) == NULL ||
	    (hdr = curl_slist_append(hdr, "Accept: application/timestamp-reply")) == NULL) {
		snprintf(err, errlen, "libcurl could not be set up");
		goto out;
	}
	curl_easy_setopt(curl, CURLOPT_URL, url);
	/* http and https only, no redirection: a TSA's URL is its own. */
	curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(curl, CURLOPT_TIMEOUT, timeout);
	curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, timeout);
	curl_easy_setopt(curl, CURLOPT_HTTPHEADER, hdr);
	curl_easy_setopt(curl, CURLOPT_POSTFIELDS, req);
	curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE, (long)req_len);
	curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, reply_write);
	curl_easy_setopt(curl, CURLOPT_WRITEDATA, &r);
	curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, cerr);
	if ((cc = curl_easy_perform(curl)) != CURLE_OK) {
		if (r.over)
			snprintf(err, errlen, "the TSA %s answered more than %d bytes", url, SG_TSA_REPLY_MAX);
		else if (cc == CURLE_OPERATION_TIMEDOUT)
			snprintf(err, errlen, "the TSA %s did not answer within %ld s", url, timeout);
		else
			snprintf(err, errlen, "the TSA %s cannot be reached: %s", url,
			         cerr[0] ? cerr : curl_easy_strerror(cc));
		goto out;
	}
	curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &code);
	curl_easy_getinfo(curl, CURLINFO_CONTENT_TYPE, &ctype);
	if (code != 200) {
		snprintf(err, errlen, "the TSA %s answered HTTP %ld", url, code);
		goto out;
	}
	if (ctype == NULL || OPENSSL_strncasecmp(ctype, "application/timestamp-reply", 27) != 0) {
		snprintf(err, errlen, "the TSA %s answered %s, not application/timestamp-reply", url,
		         ctype ? ctype : "no content type");
		goto out;
	}
	p = r.p;
	if ((resp = d2i_TS_RESP(NULL, &p, (long)r.len)) == NULL || p != r.p + r.len) {
		snprintf(err, errlen, "the TSA's reply is not an RFC 3161 TimeStampResp");
		goto out;
	}
	/* granted (0) or grantedWithMods (1), RFC 3161 2.4.2 */
	status = TS_STATUS_INFO_get0_status(TS_RESP_get_status_info(resp));
	st = status ? ASN1_INTEGER_get(status) : -1;
	if (st != 0 && st != 1) {
		snprintf(err, errlen, "the TSA refused the request (status %ld)", st);
		goto out;
	}
	if ((tok = TS_RESP_get_token(resp)) == NULL || (n = i2d_PKCS7(tok, token)) <= 0) {
		snprintf(err, errlen, "the TSA's reply grants, but carries no token");
		goto out;
	}
	*token_len = (size_t)n;
	if (sg_tsa_check_token(*token, *token_len, sig, siglen, nonce, NULL, &info, why,
	                       sizeof(why)) < 0) {
		snprintf(err, errlen, "the TSA's token is refused: %s", why);
		goto out;
	}
	rv = 0;
out:
	if (rv < 0) {
		OPENSSL_free(*token);
		*token = NULL;
	}
	ERR_clear_error();
	TS_RESP_free(resp);
	ASN1_INTEGER_free(nonce);
	OPENSSL_free(req);
	free(r.p);
	curl_slist_free_all(hdr);
	curl_easy_cleanup(curl);
	if (curl_up)
		curl_global_cleanup();
	return rv;
}
