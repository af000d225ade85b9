/* Fuzz target: what sealctl verify reads from a signed PDF, an untrusted
 * file (tools/stamp/pdfverify.c). Each input is read twice: as the PDF
 * (sg_verify_pdf: the signature fields through qpdf, each /ByteRange and
 * /Contents, the CMS over the range, then its receipt and timestamp), and
 * as a CMS ContentInfo whose SignerInfos' unsigned attributes are read as
 * if its signature held (sg_verify_signer_attrs: the approval receipt's
 * JSON, the RFC 3161 timestamp tokens), which mutations of a PDF seldom
 * reach with a signature still valid. Whatever the bytes, it says what it
 * found and never reads outside them (ASan in the libFuzzer build). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pdfverify.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static FILE *devnull;
	struct sg_verify_records recs = { 0 };
	struct sg_verify_opts vo = { 0 };
	int n = -1, bad = 0;

	if (devnull == NULL && (devnull = fopen("/dev/null", "w")) == NULL)
		abort();
	/* The PDF path for what starts as a PDF: qpdf's recovery of a file
	 * with no header at all is slow, not sealgate's, and would take most
	 * of the runs (sealctl verify still hands qpdf anything). */
	if (size >= 5 && memcmp(data, "%PDF-", 5) == 0) {
		if (sg_verify_pdf(data, size, &vo, devnull, &recs, &n, &bad) < 0) {
			if (n != 0)
				abort();
		} else if (n < 0 || (bad != 0 && bad != 1)) {
			abort();
		}
	}
	/* No receipt holds without a pinned or CA-issued audit certificate,
	 * yet each one that reads and verifies is noted, at most the bound. */
	if (recs.n > SG_VERIFY_RECEIPTS_MAX)
		abort();
	bad = 0;
	if (sg_verify_signer_attrs(data, size, &vo, devnull, &recs, &bad) == 0 && bad != 0 && bad != 1)
		abort();
	if (recs.n > SG_VERIFY_RECEIPTS_MAX)
		abort();
	return 0;
}
