/*
 * The PDF side of `sealctl stamp` (docs/stamp.md): what the input file is
 * (read with qpdf: its catalog, pages, trailer and last xref) and the
 * incremental update that adds one signature field, its widget with the
 * seal's appearance, the /AcroForm and the /Sig dictionary whose
 * /Contents placeholder the CMS signature fills. Append only: the input's
 * bytes stay as they are, so earlier signatures stay valid.
 */
#ifndef SG_PDFSTAMP_H
#define SG_PDFSTAMP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The OID of sealgate's approval receipt, an unsigned attribute of the
 * SignerInfo (docs/stamp.md): under the UUID arc 2.25 (ITU-T X.667),
 * which needs no registration; the UUID is f4ab2a3b-982d-4ca1-a723-
 * 4aebc0ec4082. Its value: an OCTET STRING holding the JSON
 * {"receipt","signature","cert"} (base64 each) of the gateway's reply. */
#define SG_RECEIPT_OID "2.25.325220370317090355261310516308583661698"

/* Bytes of the /Contents placeholder (hex digits: twice this): room for
 * the CMS with its certificate and the approval receipt. */
#define SG_STAMP_CONTENTS_MAX 16384
/* The seal's diameter on the page, in points (42 mm, a contract seal's). */
#define SG_STAMP_SIZE 119.0

struct sg_stamp_place {
	int page;                 /* 1-based; 0: the last page */
	bool at_set;
	double x, y;              /* the seal's centre, points from the page's lower left */
	bool clamp;               /* moved inside the page when it would not fit (--near) */
};

struct sg_image;

struct sg_stamp_text {
	const char *reason;       /* /Reason, or NULL */
	const char *name;         /* /Name (the seal's name), or NULL */
	const char *field;        /* the field's /T base name */
	/* The seal's image (sealimg.h), drawn over the whole box as an image
	 * XObject with its /SMask (pdfimg.h); NULL: sg_stamp_appearance's
	 * red ring and star. */
	const struct sg_image *image;
	/* Bytes of DER the /Contents placeholder holds; 0: SG_STAMP_CONTENTS_MAX
	 * (more with a timestamp token to come, tsa.h's SG_TSA_RESERVE). */
	size_t contents_max;
};

/* The update being built: the bytes to append, and where in the whole
 * file (input + update) the /Contents hex string lies. */
struct sg_stamp_update {
	uint8_t *buf;
	size_t len;
	size_t contents_at;       /* offset in the whole file of '<' */
	size_t contents_len;      /* '<' … '>' inclusive */
	size_t contents_max;      /* bytes of DER it holds: (contents_len - 2) / 2 */
	double rect[4];           /* the widget's /Rect */
	int page;                 /* 1-based */
};

/* Builds the update for the PDF in (len bytes), placeholder /Contents all
 * zeros and /ByteRange filled. 0, or -1 with err. */
int sg_stamp_build(const uint8_t *in, size_t len, const struct sg_stamp_place *place,
                   const struct sg_stamp_text *text, struct sg_stamp_update *out, char *err,
                   size_t errlen);
/* Puts the DER signature into the update's /Contents (hex, zero padded).
 * -1 when it does not fit (more than contents_max bytes). */
int sg_stamp_fill(struct sg_stamp_update *u, size_t in_len, const uint8_t *der, size_t der_len);
void sg_stamp_update_free(struct sg_stamp_update *u);

/* The appearance without an image: a form XObject's content stream for a
 * box of size × size points (a red ring and star in PDF operators), and
 * its resources dictionary ("<< … >>" or ""). Free *ops and *resources. */
int sg_stamp_appearance(double size, char **ops, size_t *ops_len, char **resources);

/* The DER of a SignerInfo's signed attributes as they are signed and
 * verified: a SET OF Attribute (tag 0x31), members in DER order (RFC 5652
 * 5.4). free() it; NULL on failure. */
struct CMS_SignerInfo_st;
uint8_t *sg_stamp_signed_attrs(struct CMS_SignerInfo_st *si, size_t *len);

#endif
