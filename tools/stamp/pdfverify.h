/*
 * What `sealctl verify` reads from a signed PDF (docs/stamp.md), an
 * untrusted file: the signature fields, each /ByteRange and /Contents, the
 * CMS over the range, sealgate's approval receipt and the RFC 3161
 * timestamp token inside it. Apart from
 * sealctl-verify.c's arguments and --export so that the fuzz target
 * (tests/fuzz/fuzz_verify.c) reads files as verify does.
 */
#ifndef SG_PDFVERIFY_H
#define SG_PDFVERIFY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <openssl/x509.h>

/* The audit records the receipts name, for --export. */
#define SG_VERIFY_RECEIPTS_MAX 64
struct sg_verify_records {
	size_t n;
	long long seq[SG_VERIFY_RECEIPTS_MAX];
	char hash[SG_VERIFY_RECEIPTS_MAX][65];
	bool found[SG_VERIFY_RECEIPTS_MAX];
};

struct sg_verify_opts {
	X509_STORE *store;        /* --ca, or NULL: the seal's certificate not checked */
	X509 *pin;                /* --audit-cert, or NULL */
	X509_STORE *tsa_store;    /* --tsa-ca, or NULL: a timestamp's TSA not checked */
};

/* Checks every signature field of the PDF file (flen bytes), saying what
 * it finds on out: *nsig the signatures seen, *bad set when one of them
 * (or its receipt) does not hold; recs gets each valid receipt's record.
 * 0, or -1 when the file is not a PDF (nothing said). */
int sg_verify_pdf(const uint8_t *file, size_t flen, const struct sg_verify_opts *opts,
                  FILE *out, struct sg_verify_records *recs, int *nsig, int *bad);

/* The receipts and timestamps of the SignerInfos of a CMS ContentInfo
 * (DER), as sg_verify_pdf checks them once the signature holds — which is
 * not checked here: for the fuzz target, which reaches them so without
 * having to sign what it makes. 0, or -1 when it is no CMS. */
int sg_verify_signer_attrs(const uint8_t *der, size_t len, const struct sg_verify_opts *opts,
                           FILE *out, struct sg_verify_records *recs, int *bad);

#endif
