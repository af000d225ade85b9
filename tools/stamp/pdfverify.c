/*
 * sealctl verify's reading of a signed PDF (docs/stamp.md), an untrusted
 * file: for each signature field, the byte range (it must leave out
 * exactly its /Contents), the CMS over it (the seal's certificate against
 * the CA when given), and sealgate's approval receipt inside it: signed by
 * the site's audit key (pinned, or chained to the CA), bound to this
 * signature by the signed attributes' hash and the signature value's;
 * then who applied and who approved; and the timestamp (RFC 3161) of the
 * signature value, its TSA against the TSA CA when given.
 */
#include "pdfverify.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <jansson.h>
#include <openssl/bio.h>
#include <openssl/cms.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <qpdf/qpdf-c.h>

#include "pdfstamp.h"
#include "protocol.h"
#include "tsa.h"

/* Timestamp tokens looked at in one SignerInfo: one is what a stamp has. */
#define TSA_TOKENS_MAX 4

static bool
chains_to(X509 *x, X509_STORE *store)
{
	X509_STORE_CTX *ctx = X509_STORE_CTX_new();
	bool ok = ctx && X509_STORE_CTX_init(ctx, store, x, NULL) == 1 &&
	          X509_verify_cert(ctx) == 1;

	X509_STORE_CTX_free(ctx);
	return ok;
}

static const char *
jstr(const json_t *o, const char *k)
{
	const char *s = json_string_value(json_object_get(o, k));
	return s ? s : "";
}

static void
print_time(json_int_t t, char *buf, size_t len)
{
	time_t tt = (time_t)t;
	struct tm tm;

	gmtime_r(&tt, &tm);
	strftime(buf, len, "%Y-%m-%d %H:%M UTC", &tm);
}

/* The receipt of signer si: 1 holds (printed), 0 none, -1 does not hold
 * (why printed). */
static int
check_receipt(CMS_SignerInfo *si, X509 *pin, X509_STORE *store, struct sg_verify_records *recs,
              FILE *out)
{
	ASN1_OBJECT *oid = OBJ_txt2obj(SG_RECEIPT_OID, 1);
	int idx = oid ? CMS_unsigned_get_attr_by_OBJ(si, oid, -1) : -1;
	X509_ATTRIBUTE *attr;
	ASN1_TYPE *t;
	json_t *wrap = NULL, *rc = NULL, *ap;
	uint8_t *text = NULL, *sig = NULL, *certder = NULL, *attrs = NULL, md[32], want[32];
	size_t tlen = 0, slen = 0, clen = 0, alen = 0, i;
	const unsigned char *cp;
	X509 *cert = NULL;
	EVP_PKEY *key;
	EVP_MD_CTX *vc = NULL;
	ASN1_OCTET_STRING *sv;
	uint8_t msg[40];
	char err[256], when[64], hex[65];
	int rv = -1;

	ASN1_OBJECT_free(oid);
	if (idx < 0) {
		fprintf(out, "    receipt: none (not stamped through sealgate's workflow)\n");
		return 0;
	}
	attr = CMS_unsigned_get_attr(si, idx);
	t = attr ? X509_ATTRIBUTE_get0_type(attr, 0) : NULL;
	if (t == NULL || t->type != V_ASN1_OCTET_STRING ||
	    (wrap = json_loadb((const char *)ASN1_STRING_get0_data(t->value.octet_string),
	                       (size_t)ASN1_STRING_length(t->value.octet_string), 0, NULL)) == NULL ||
	    sg_get_bytes(wrap, "receipt", true, &text, &tlen, 64 * 1024, err, sizeof(err)) < 0 ||
	    sg_get_bytes(wrap, "signature", true, &sig, &slen, 1024, err, sizeof(err)) < 0 ||
	    sg_get_bytes(wrap, "cert", true, &certder, &clen, 16 * 1024, err, sizeof(err)) < 0) {
		fprintf(out, "    receipt: NOT VALID (it does not read)\n");
		goto out;
	}
	cp = certder;
	/* A certificate can read whose key does not (an unknown algorithm,
	 * a bent point): the receipt is outside the signed bytes, anyone's. */
	if ((cert = d2i_X509(NULL, &cp, (long)clen)) == NULL || (key = X509_get0_pubkey(cert)) == NULL) {
		fprintf(out, "    receipt: NOT VALID (its audit certificate does not read)\n");
		goto out;
	}
	/* Whose receipt: the pinned audit certificate, or one the CA issued. */
	if (pin != NULL && X509_cmp(pin, cert) != 0) {
		fprintf(out, "    receipt: NOT VALID (signed by another audit certificate than --audit-cert: "
		       "another site's)\n");
		goto out;
	}
	if (pin == NULL && store != NULL && !chains_to(cert, store)) {
		fprintf(out, "    receipt: NOT VALID (its audit certificate is not from --ca)\n");
		goto out;
	}
	memcpy(msg, "SGRCPT01", 8);
	EVP_Digest(text, tlen, msg + 8, NULL, EVP_sha256(), NULL);
	vc = EVP_MD_CTX_new();
	if (vc == NULL ||
	    EVP_DigestVerifyInit(vc, NULL, EVP_PKEY_get_base_id(key) == EVP_PKEY_ED25519 ?
	                         NULL : EVP_sha256(), NULL, key) != 1 ||
	    EVP_DigestVerify(vc, sig, slen, msg, sizeof(msg)) != 1) {
		fprintf(out, "    receipt: NOT VALID (its signature does not verify: edited)\n");
		goto out;
	}
	if ((rc = json_loadb((const char *)text, tlen, 0, NULL)) == NULL) {
		fprintf(out, "    receipt: NOT VALID (signed, but not JSON)\n");
		goto out;
	}
	/* Bound to this signature: the hash of its signed attributes is what
	 * the gateway recorded as signed. */
	if ((attrs = sg_stamp_signed_attrs(si, &alen)) == NULL)
		goto out;
	EVP_Digest(attrs, alen, md, NULL, EVP_sha256(), NULL);
	{
		const char *h = jstr(json_object_get(rc, "record"), "signed_digest");
		size_t n = 0;
		if (strlen(h) != 64 || OPENSSL_hexstr2buf_ex(want, sizeof(want), &n, h, '\0') != 1 ||
		    n != 32 || memcmp(want, md, 32) != 0) {
			fprintf(out, "    receipt: NOT VALID (it is another signature's)\n");
			goto out;
		}
		/* and the signature value's own hash: two signatures over the
		 * same signed attributes (one application stamped twice in a
		 * second) are still told apart. */
		h = jstr(json_object_get(rc, "record"), "signature_sha256");
		sv = CMS_SignerInfo_get0_signature(si);
		EVP_Digest(ASN1_STRING_get0_data(sv), (size_t)ASN1_STRING_length(sv), md, NULL,
		           EVP_sha256(), NULL);
		if (strlen(h) != 64 || OPENSSL_hexstr2buf_ex(want, sizeof(want), &n, h, '\0') != 1 ||
		    n != 32 || memcmp(want, md, 32) != 0) {
			fprintf(out, "    receipt: NOT VALID (it is another signature's: not of this "
			       "signature value)\n");
			goto out;
		}
	}
	{
		const json_t *a = json_object_get(rc, "application");
		json_t *amount = json_object_get(a, "amount");
		fprintf(out, "    receipt: valid, site %s, audit record #%lld%s\n", jstr(rc, "site"),
		       (long long)json_integer_value(json_object_get(json_object_get(rc, "record"), "seq")),
		       pin ? " (audit certificate pinned)" : store ? " (audit certificate from --ca)" :
		       " (audit certificate NOT pinned: give --audit-cert)");
		fprintf(out, "    application #%lld: %s (%s) applied for the %s: %s\n",
		       (long long)json_integer_value(json_object_get(a, "id")), jstr(a, "applicant_name"),
		       jstr(a, "applicant"), jstr(a, "seal_name"), jstr(a, "reason"));
		fprintf(out, "      type %s, amount %s%lld, scope %s\n",
		       *jstr(a, "document_type") ? jstr(a, "document_type") : "-", amount ? "" : "-",
		       amount ? (long long)json_integer_value(amount) : 0LL,
		       *jstr(a, "business_scope") ? jstr(a, "business_scope") : "-");
		json_array_foreach(json_object_get(rc, "approvals"), i, ap) {
			print_time(json_integer_value(json_object_get(ap, "at")), when, sizeof(when));
			fprintf(out, "      level %lld: %s by %s (%s) at %s\n",
			       (long long)json_integer_value(json_object_get(ap, "level")),
			       jstr(ap, "decision"), jstr(ap, "name"), jstr(ap, "by"), when);
		}
		snprintf(hex, sizeof(hex), "%s", jstr(rc, "policy_sha256"));
		fprintf(out, "      policy sha256 %s\n", hex);
		if (recs->n < SG_VERIFY_RECEIPTS_MAX) {
			const json_t *rec = json_object_get(rc, "record");
			recs->seq[recs->n] = (long long)json_integer_value(json_object_get(rec, "seq"));
			snprintf(recs->hash[recs->n], sizeof(recs->hash[0]), "%s", jstr(rec, "hash"));
			recs->found[recs->n++] = false;
		}
	}
	rv = pin != NULL || store != NULL ? 1 : -1;
	if (rv < 0)
		fprintf(out, "    receipt: its audit certificate is not checked (give --audit-cert or --ca)\n");
out:
	EVP_MD_CTX_free(vc);
	X509_free(cert);
	json_decref(wrap);
	json_decref(rc);
	free(text);
	free(sig);
	free(certder);
	free(attrs);
	return rv;
}

/* The timestamps of signer si (id-aa-signatureTimeStampToken): 1 none or
 * all hold (printed), -1 one does not (why printed). A TSA not checked
 * against a CA is said, and holds: the time is the TSA's word. */
static int
check_timestamps(CMS_SignerInfo *si, X509_STORE *tsa_store, FILE *out)
{
	const ASN1_OCTET_STRING *sv = CMS_SignerInfo_get0_signature(si);
	int idx = -1, seen = 0, rv = 1;

	while ((idx = CMS_unsigned_get_attr_by_NID(si, NID_id_smime_aa_timeStampToken, idx)) >= 0) {
		X509_ATTRIBUTE *attr = CMS_unsigned_get_attr(si, idx);
		int nv = attr ? X509_ATTRIBUTE_count(attr) : 0;
		if (nv <= 0) {
			fprintf(out, "    timestamp: NOT VALID (an empty attribute)\n");
			return -1;
		}
		for (int k = 0; k < nv; k++) {
			ASN1_TYPE *t = X509_ATTRIBUTE_get0_type(attr, k);
			struct sg_tsa_info info;
			char why[256];
			if (++seen > TSA_TOKENS_MAX) {
				fprintf(out, "    timestamp: NOT VALID (more than %d tokens)\n", TSA_TOKENS_MAX);
				return -1;
			}
			if (t == NULL || t->type != V_ASN1_SEQUENCE) {
				fprintf(out, "    timestamp: NOT VALID (not a timestamp token)\n");
				rv = -1;
				continue;
			}
			if (sg_tsa_check_token(ASN1_STRING_get0_data(t->value.sequence),
			                       (size_t)ASN1_STRING_length(t->value.sequence),
			                       ASN1_STRING_get0_data(sv), (size_t)ASN1_STRING_length(sv),
			                       NULL, tsa_store, &info, why, sizeof(why)) < 0) {
				fprintf(out, "    timestamp: NOT VALID (%s)%s%s%s%s\n", why,
				        info.time[0] ? ", says " : "", info.time,
				        info.tsa[0] ? " by " : "", info.tsa);
				rv = -1;
				continue;
			}
			fprintf(out, "    timestamp: %s by %s\n", info.time, info.tsa[0] ? info.tsa : "-");
			fprintf(out, "      verifies over the signature value, %s\n", tsa_store ?
			        "the TSA's certificate from --tsa-ca" :
			        "TSA not checked against a CA (give --tsa-ca)");
		}
	}
	if (seen == 0)
		fprintf(out, "    timestamp: none\n");
	return rv;
}

/* The receipt and the timestamps of each SignerInfo: 0 all hold, 1 not. */
static int
check_signers(CMS_ContentInfo *cms, const struct sg_verify_opts *opts,
              struct sg_verify_records *recs, FILE *out)
{
	STACK_OF(CMS_SignerInfo) *sis = CMS_get0_SignerInfos(cms);
	int bad = 0;

	for (int i = 0; i < sk_CMS_SignerInfo_num(sis); i++) {
		if (check_receipt(sk_CMS_SignerInfo_value(sis, i), opts->pin, opts->store, recs, out) < 0)
			bad = 1;
		if (check_timestamps(sk_CMS_SignerInfo_value(sis, i), opts->tsa_store, out) < 0)
			bad = 1;
	}
	return bad;
}

int
sg_verify_signer_attrs(const uint8_t *der, size_t len, const struct sg_verify_opts *opts, FILE *out,
                       struct sg_verify_records *recs, int *bad)
{
	const unsigned char *p = der;
	CMS_ContentInfo *cms = d2i_CMS_ContentInfo(NULL, &p, (long)len);

	if (cms == NULL)
		return -1;
	*bad |= check_signers(cms, opts, recs, out);
	CMS_ContentInfo_free(cms);
	return 0;
}

/* One signature field's /V: 0 holds, 1 does not. */
static int
check_sig(qpdf_data q, qpdf_oh v, const uint8_t *file, size_t flen,
          const struct sg_verify_opts *opts, int n, struct sg_verify_records *recs, FILE *out)
{
	qpdf_oh br = qpdf_oh_get_key(q, v, "/ByteRange"), ct = qpdf_oh_get_key(q, v, "/Contents");
	unsigned long long r[4];
	const char *der;
	size_t dlen = 0;
	const unsigned char *p;
	CMS_ContentInfo *cms = NULL;
	BIO *data = NULL;
	uint8_t *buf = NULL;
	STACK_OF(X509) *signers = NULL;
	X509_STORE *store = opts->store;
	int bad = 1, rc;

	fprintf(out, "signature #%d:\n", n);
	if (!qpdf_oh_is_array(q, br) || qpdf_oh_get_array_n_items(q, br) != 4 ||
	    !qpdf_oh_is_string(q, ct)) {
		fprintf(out, "    NOT VALID: no /ByteRange or /Contents\n");
		return 1;
	}
	for (int i = 0; i < 4; i++) {
		double d = qpdf_oh_get_numeric_value(q, qpdf_oh_get_array_item(q, br, i));
		r[i] = d < 0 || d > (double)flen ? (unsigned long long)flen + 1 : (unsigned long long)d;
	}
	der = qpdf_oh_get_binary_string_value(q, ct, &dlen);
	/* The range leaves out the /Contents string and nothing else. */
	if (r[0] != 0 || r[1] >= r[2] || r[2] > flen || r[3] > flen - r[2] || r[1] + 2 + 2 * dlen != r[2] ||
	    file[r[1]] != '<' || file[r[2] - 1] != '>') {
		fprintf(out, "    NOT VALID: its /ByteRange does not leave out just its /Contents\n");
		return 1;
	}
	if ((buf = malloc(r[1] + r[3] + 1)) == NULL)
		return 1;
	memcpy(buf, file, r[1]);
	memcpy(buf + r[1], file + r[2], r[3]);
	data = BIO_new_mem_buf(buf, (int)(r[1] + r[3]));
	p = (const unsigned char *)der;
	if ((cms = d2i_CMS_ContentInfo(NULL, &p, (long)dlen)) == NULL) {
		fprintf(out, "    NOT VALID: its /Contents is not a CMS\n");
		goto out;
	}
	rc = CMS_verify(cms, NULL, store, data, NULL,
	                CMS_BINARY | CMS_DETACHED | (store ? 0 : CMS_NO_SIGNER_CERT_VERIFY));
	if (rc != 1) {
		fprintf(out, "    NOT VALID: %s\n", store && ERR_GET_REASON(ERR_peek_last_error()) ==
		       CMS_R_CERTIFICATE_VERIFY_ERROR ? "the seal's certificate is not from --ca" :
		       "the signature does not match the bytes it covers");
		ERR_clear_error();
		goto out;
	}
	signers = CMS_get0_signers(cms);
	if (signers && sk_X509_num(signers) > 0) {
		char name[256];
		X509_NAME_oneline(X509_get_subject_name(sk_X509_value(signers, 0)), name, sizeof(name));
		fprintf(out, "    valid: signed by %s%s\n", name, store ? " (certificate from --ca)" :
		       " (certificate not checked: give --ca)");
	}
	fprintf(out, "    covers %s\n", r[2] + r[3] == flen ? "the whole file" :
	       "an earlier revision (the file was stamped again after it)");
	bad = check_signers(cms, opts, recs, out);
out:
	sk_X509_free(signers);
	CMS_ContentInfo_free(cms);
	BIO_free(data);
	free(buf);
	return bad;
}

int
sg_verify_pdf(const uint8_t *file, size_t flen, const struct sg_verify_opts *opts, FILE *out,
              struct sg_verify_records *recs, int *nsig, int *bad)
{
	qpdf_data q = qpdf_init();
	qpdf_oh acro, fields;
	int n = 0, rv = -1;

	*nsig = 0;
	qpdf_silence_errors(q);
	if (qpdf_read_memory(q, "file", (const char *)file, flen, NULL) & QPDF_ERRORS)
		goto out;
	acro = qpdf_oh_get_key(q, qpdf_get_root(q), "/AcroForm");
	fields = qpdf_oh_get_key(q, acro, "/Fields");
	for (int i = 0; qpdf_oh_is_array(q, fields) && i < qpdf_oh_get_array_n_items(q, fields); i++) {
		qpdf_oh fld = qpdf_oh_get_array_item(q, fields, i);
		qpdf_oh ft = qpdf_oh_get_key(q, fld, "/FT"), v = qpdf_oh_get_key(q, fld, "/V");
		if (!qpdf_oh_is_name_and_equals(q, ft, "/Sig") || !qpdf_oh_is_dictionary(q, v))
			continue;
		*bad |= check_sig(q, v, file, flen, opts, ++n, recs, out);
	}
	*nsig = n;
	rv = 0;
out:
	qpdf_cleanup(&q);
	return rv;
}
