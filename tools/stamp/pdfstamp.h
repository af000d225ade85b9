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

/* Bytes of the /Contents placeholder (hex digits: twice this): room for
 * the CMS with its certificate and the approval receipt. */
#define SG_STAMP_CONTENTS_MAX 16384
/* The seal's diameter on the page, in points (42 mm, a contract seal's). */
#define SG_STAMP_SIZE 119.0

struct sg_stamp_place {
	int page;                 /* 1-based; 0: the last page */
	bool at_set;
	double x, y;              /* the seal's centre, points from the page's lower left */
};

struct sg_stamp_text {
	const char *reason;       /* /Reason, or NULL */
	const char *name;         /* /Name (the seal's name), or NULL */
	const char *field;        /* the field's /T base name */
};

/* The update being built: the bytes to append, and where in the whole
 * file (input + update) the /Contents hex string lies. */
struct sg_stamp_update {
	uint8_t *buf;
	size_t len;
	size_t contents_at;       /* offset in the whole file of '<' */
	size_t contents_len;      /* '<' … '>' inclusive */
	double rect[4];           /* the widget's /Rect */
	int page;                 /* 1-based */
};

/* Builds the update for the PDF in (len bytes), placeholder /Contents all
 * zeros and /ByteRange filled. 0, or -1 with err. */
int sg_stamp_build(const uint8_t *in, size_t len, const struct sg_stamp_place *place,
                   const struct sg_stamp_text *text, struct sg_stamp_update *out, char *err,
                   size_t errlen);
/* Puts the DER signature into the update's /Contents (hex, zero padded).
 * -1 when it does not fit. */
int sg_stamp_fill(struct sg_stamp_update *u, size_t in_len, const uint8_t *der, size_t der_len);
void sg_stamp_update_free(struct sg_stamp_update *u);

/* The seal's appearance: a form XObject's content stream for a box of
 * size × size points, and its resources dictionary ("<< … >>" or "").
 * A placeholder (a red ring and star in PDF operators) until the seal's
 * image (tools/stamp/sealimg, pdfimg) takes its place. Free *ops. */
int sg_stamp_appearance(double size, char **ops, size_t *ops_len, char **resources);

#endif
