/*
 * The seal's image as PDF objects: an image XObject (DeviceRGB, 8 bpc,
 * FlateDecode) with its /SMask (DeviceGray alpha), and the appearance
 * that draws it in a box. The caller numbers the objects and writes them.
 */
#ifndef SG_PDFIMG_H
#define SG_PDFIMG_H

#include <stddef.h>
#include <stdint.h>

#include "sealimg.h"

/* The largest image turned into PDF objects (the image's own limits). */
#define SG_PDFIMG_MAX_SIDE   SG_SEALIMG_MAX_SIDE
#define SG_PDFIMG_MAX_PIXELS SG_SEALIMG_MAX_PIXELS

struct sg_pdfimg {
	uint32_t width;
	uint32_t height;
	uint8_t *rgb;           /* zlib stream of width*height*3 samples */
	size_t rgb_len;
	uint8_t *alpha;         /* zlib stream of width*height alpha samples */
	size_t alpha_len;
};

/* Compresses img's colour and alpha. 0, or -1 with a reason in err. */
int sg_pdfimg_objects(const struct sg_image *img, struct sg_pdfimg *out,
	char *err, size_t errlen);

/*
 * Each writes one whole indirect object, "N 0 obj ... endobj\n", into a
 * new buffer (*buf, *len; free() it); 0 or -1 (out of memory, a number 0).
 * The caller writes the buffers where it likes and notes their offsets
 * for its xref.
 *   image: the XObject numbered image_num whose /SMask is smask_num;
 *   smask: the alpha, numbered smask_num;
 *   form:  a Form XObject numbered form_num, /BBox [0 0 w h], drawing the
 *          image image_num as /Im0 over the whole box: a widget's /AP /N.
 */
int sg_pdfimg_write_image(const struct sg_pdfimg *img, unsigned image_num,
	unsigned smask_num, uint8_t **buf, size_t *len);
int sg_pdfimg_write_smask(const struct sg_pdfimg *img, unsigned smask_num,
	uint8_t **buf, size_t *len);
int sg_pdfimg_write_form(unsigned form_num, double w, double h,
	unsigned image_num, uint8_t **buf, size_t *len);

/* The appearance stream's body drawing /Im0 in a w x h box:
 * "q W 0 0 H 0 0 cm /Im0 Do Q\n". Its length, or -1 when it does not fit. */
int sg_pdfimg_appearance(double w, double h, char *buf, size_t len);

/* Frees the streams and zeroes img; safe on a zeroed one. */
void sg_pdfimg_clear(struct sg_pdfimg *img);

#endif
