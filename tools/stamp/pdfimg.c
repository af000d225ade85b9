/*
 * tools/stamp/pdfimg.c: an RGBA image (sealimg.h) as the bytes of PDF
 * objects: the DeviceRGB image XObject, its DeviceGray /SMask, both
 * FlateDecode (zlib), and the Form XObject that draws it in a box.
 */
#include "pdfimg.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

static void seterr(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void seterr(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (!err || !errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

void sg_pdfimg_clear(struct sg_pdfimg *img)
{
	if (!img)
		return;
	free(img->rgb);
	free(img->alpha);
	memset(img, 0, sizeof(*img));
}

/* zlib's compress2 into a new buffer. */
static int deflate_buf(const uint8_t *in, size_t inlen, uint8_t **out, size_t *outlen)
{
	uLongf n = compressBound((uLong)inlen);
	uint8_t *buf = malloc(n);

	if (!buf)
		return -1;
	if (compress2(buf, &n, in, (uLong)inlen, Z_BEST_COMPRESSION) != Z_OK) {
		free(buf);
		return -1;
	}
	*out = buf;
	*outlen = n;
	return 0;
}

int sg_pdfimg_objects(const struct sg_image *img, struct sg_pdfimg *out,
	char *err, size_t errlen)
{
	uint8_t *rgb = NULL, *alpha = NULL;
	size_t npix;
	int rv = -1;

	if (!out) {
		seterr(err, errlen, "nowhere to put the PDF image");
		return -1;
	}
	memset(out, 0, sizeof(*out));
	if (!img || !img->rgba || !img->width || !img->height) {
		seterr(err, errlen, "no image to put in the PDF");
		return -1;
	}
	if (img->width > SG_PDFIMG_MAX_SIDE || img->height > SG_PDFIMG_MAX_SIDE ||
	    (uint64_t)img->width * img->height > SG_PDFIMG_MAX_PIXELS ||
	    img->stride < (size_t)img->width * 4) {
		seterr(err, errlen, "the image is %ux%u pixels: more than a seal's image may be",
			img->width, img->height);
		return -1;
	}
	npix = (size_t)img->width * img->height;
	rgb = malloc(npix * 3);
	alpha = malloc(npix);
	if (!rgb || !alpha) {
		seterr(err, errlen, "out of memory");
		goto out;
	}
	for (uint32_t y = 0; y < img->height; y++) {
		const uint8_t *p = img->rgba + (size_t)y * img->stride;
		size_t o = (size_t)y * img->width;

		for (uint32_t x = 0; x < img->width; x++, p += 4, o++) {
			memcpy(rgb + o * 3, p, 3);
			alpha[o] = p[3];
		}
	}
	if (deflate_buf(rgb, npix * 3, &out->rgb, &out->rgb_len) < 0 ||
	    deflate_buf(alpha, npix, &out->alpha, &out->alpha_len) < 0) {
		seterr(err, errlen, "zlib could not compress the image");
		sg_pdfimg_clear(out);
		goto out;
	}
	out->width = img->width;
	out->height = img->height;
	rv = 0;
out:
	free(rgb);
	free(alpha);
	return rv;
}

/* head, then the stream's bytes, then the tail, in one new buffer. */
static int write_obj(const char *head, const uint8_t *body, size_t bodylen,
	uint8_t **buf, size_t *len)
{
	static const char tail[] = "\nendstream\nendobj\n";
	size_t hl = strlen(head), n = hl + bodylen + sizeof(tail) - 1;
	uint8_t *b = malloc(n);

	if (!b)
		return -1;
	memcpy(b, head, hl);
	if (bodylen)
		memcpy(b + hl, body, bodylen);
	memcpy(b + hl + bodylen, tail, sizeof(tail) - 1);
	*buf = b;
	*len = n;
	return 0;
}

int sg_pdfimg_write_image(const struct sg_pdfimg *img, unsigned image_num,
	unsigned smask_num, uint8_t **buf, size_t *len)
{
	char head[256];
	int n;

	if (!img || !img->rgb || !image_num || !smask_num || !buf || !len)
		return -1;
	n = snprintf(head, sizeof(head), "%u 0 obj\n<< /Type /XObject /Subtype /Image "
		"/Width %u /Height %u /ColorSpace /DeviceRGB /BitsPerComponent 8 "
		"/Filter /FlateDecode /SMask %u 0 R /Length %zu >>\nstream\n",
		image_num, img->width, img->height, smask_num, img->rgb_len);
	if (n < 0 || (size_t)n >= sizeof(head))
		return -1;
	return write_obj(head, img->rgb, img->rgb_len, buf, len);
}

int sg_pdfimg_write_smask(const struct sg_pdfimg *img, unsigned smask_num,
	uint8_t **buf, size_t *len)
{
	char head[256];
	int n;

	if (!img || !img->alpha || !smask_num || !buf || !len)
		return -1;
	n = snprintf(head, sizeof(head), "%u 0 obj\n<< /Type /XObject /Subtype /Image "
		"/Width %u /Height %u /ColorSpace /DeviceGray /BitsPerComponent 8 "
		"/Filter /FlateDecode /Length %zu >>\nstream\n",
		smask_num, img->width, img->height, img->alpha_len);
	if (n < 0 || (size_t)n >= sizeof(head))
		return -1;
	return write_obj(head, img->alpha, img->alpha_len, buf, len);
}

/* A number as PDF writes it: no exponent, at most 4 decimals, no
 * trailing zeros (PDF has no 1e+03). */
static int pdf_num(char *buf, size_t len, double v)
{
	int n;

	if (!(v > -1e7 && v < 1e7))
		return -1;
	n = snprintf(buf, len, "%.4f", v);
	if (n < 0 || (size_t)n >= len)
		return -1;
	while (n > 1 && buf[n - 1] == '0')
		buf[--n] = 0;
	if (n > 1 && buf[n - 1] == '.')
		buf[--n] = 0;
	if (!strcmp(buf, "-0"))
		n = snprintf(buf, len, "0");
	return n;
}

int sg_pdfimg_appearance(double w, double h, char *buf, size_t len)
{
	char ws[32], hs[32];
	int n;

	if (!buf || !(w > 0) || !(h > 0) ||
	    pdf_num(ws, sizeof(ws), w) < 0 || pdf_num(hs, sizeof(hs), h) < 0)
		return -1;
	n = snprintf(buf, len, "q %s 0 0 %s 0 0 cm /Im0 Do Q\n", ws, hs);
	if (n < 0 || (size_t)n >= len)
		return -1;
	return n;
}

int sg_pdfimg_write_form(unsigned form_num, double w, double h,
	unsigned image_num, uint8_t **buf, size_t *len)
{
	char body[128], head[256], ws[32], hs[32];
	int bn, n;

	if (!form_num || !image_num || !buf || !len)
		return -1;
	bn = sg_pdfimg_appearance(w, h, body, sizeof(body));
	if (bn < 0 || pdf_num(ws, sizeof(ws), w) < 0 || pdf_num(hs, sizeof(hs), h) < 0)
		return -1;
	n = snprintf(head, sizeof(head), "%u 0 obj\n<< /Type /XObject /Subtype /Form "
		"/BBox [0 0 %s %s] /Resources << /XObject << /Im0 %u 0 R >> >> "
		"/Length %d >>\nstream\n", form_num, ws, hs, image_num, bn);
	if (n < 0 || (size_t)n >= sizeof(head))
		return -1;
	return write_obj(head, (const uint8_t *)body, (size_t)bn, buf, len);
}
