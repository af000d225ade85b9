/*
 * tools/stamp/sealimg.c and pdfimg.c: the drawn seal's pixels (ring, star,
 * transparency, Chinese glyphs and no tofu), a policy's PNG and SVG loaded
 * and scaled, bad images refused, and the PDF objects read back by zlib
 * and by poppler (pdftoppm) from a one-page PDF written here.
 */
#include <criterion/criterion.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cairo.h>
#include <zlib.h>

#include "pdfimg.h"
#include "sealimg.h"

#define NAME8 "测试科技有限公司"

static const uint8_t *px(const struct sg_image *img, unsigned x, unsigned y)
{
	cr_assert(x < img->width && y < img->height);
	return img->rgba + (size_t)y * img->stride + (size_t)x * 4;
}

/* Opaque enough and seal red: a red well above green and blue. */
static bool is_red(const uint8_t *p)
{
	return p[3] > 200 && p[0] > 180 && p[1] < 90 && p[2] < 90;
}

static char tmpdir[64];

static void mktmp(void)
{
	strcpy(tmpdir, "/tmp/sg-sealimg-XXXXXX");
	cr_assert_not_null(mkdtemp(tmpdir));
}

static void rmtmp(void)
{
	char cmd[128];

	if (!tmpdir[0])
		return;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", tmpdir);
}

static void write_file(const char *path, const void *data, size_t len)
{
	FILE *f = fopen(path, "wb");

	cr_assert_not_null(f, "%s", path);
	cr_assert_eq(fwrite(data, 1, len, f), len);
	cr_assert_eq(fclose(f), 0);
}

static struct sg_image render(const char *company, const char *kind, const char *code,
	unsigned d)
{
	struct sg_sealimg_spec spec = { .company = company, .kind = kind, .code = code,
		.diameter = d };
	struct sg_image img = { 0 };
	char err[256] = "";

	cr_assert_eq(sg_sealimg_render(&spec, &img, err, sizeof(err)), 0, "%s", err);
	return img;
}

Test(sealimg, default_seal_ring_star_transparent)
{
	struct sg_image img = render(NAME8, NULL, NULL, 0);
	unsigned c = 300;

	cr_assert_eq(img.width, SG_SEALIMG_DEFAULT_DIAMETER);
	cr_assert_eq(img.height, SG_SEALIMG_DEFAULT_DIAMETER);
	cr_assert_eq(img.stride, (size_t)img.width * 4);
	/* The ring, 1.2% in from the edge and 5.5% wide, at 12, 3, 6 and 9
	 * o'clock. */
	cr_assert(is_red(px(&img, c, 12)));
	cr_assert(is_red(px(&img, c, 599 - 12)));
	cr_assert(is_red(px(&img, 12, c)));
	cr_assert(is_red(px(&img, 599 - 12, c)));
	/* The star's centre is the seal red itself, straight alpha. */
	cr_assert_eq(px(&img, c, c)[0], 0xe6);
	cr_assert_eq(px(&img, c, c)[1], 0x00);
	cr_assert_eq(px(&img, c, c)[2], 0x12);
	cr_assert_eq(px(&img, c, c)[3], 0xff);
	/* Its top point, and between the star and the ring below it (no
	 * kind text): clear. */
	cr_assert(is_red(px(&img, c, c - 80)));
	cr_assert_eq(px(&img, c, c + 150)[3], 0);
	/* Outside the circle: transparent. */
	for (unsigned i = 0; i < 40; i++) {
		cr_assert_eq(px(&img, i, i)[3], 0, "(%u,%u)", i, i);
		cr_assert_eq(px(&img, 599 - i, i)[3], 0);
		cr_assert_eq(px(&img, i, 599 - i)[3], 0);
		cr_assert_eq(px(&img, 599 - i, 599 - i)[3], 0);
	}
	/* And nothing but the colour: every pixel with ink is seal red. */
	for (unsigned y = 0; y < img.height; y++)
		for (unsigned x = 0; x < img.width; x++) {
			const uint8_t *p = px(&img, x, y);

			if (p[3] > 64)
				cr_assert(p[0] > 200 && p[1] < 40 && p[2] < 60,
					"(%u,%u) %u %u %u %u", x, y, p[0], p[1], p[2], p[3]);
		}
	sg_image_clear(&img);
	cr_assert_null(img.rgba);
}

/* The ink (sum of alpha) in a square of side 2*half around (x, y). */
static double ink(const struct sg_image *img, double x, double y, double half)
{
	double sum = 0;

	for (int j = (int)(y - half); j <= (int)(y + half); j++)
		for (int i = (int)(x - half); i <= (int)(x + half); i++)
			sum += px(img, (unsigned)i, (unsigned)j)[3];
	return sum / 255.0;
}

/* Where glyph i of an 8-character name is centred on a 600 px seal:
 * 30 degrees each over 240 degrees, at 0.75 of the radius. */
static void glyph_at(unsigned i, double *x, double *y)
{
	double a = (-120.0 + 30.0 * (i + 0.5)) * M_PI / 180;

	*x = 300 + 0.75 * 300 * sin(a);
	*y = 300 - 0.75 * 300 * cos(a);
}

Test(sealimg, chinese_name_renders_without_tofu)
{
	/* 甲 is dense, 一 a single stroke: drawn as glyphs their ink differs
	 * several times over; drawn as the same missing-glyph box it would
	 * not. A name of spaces is the blank to compare with. */
	struct sg_image a = render("甲甲甲甲有限公司", NULL, NULL, 600);
	struct sg_image b = render("一一一一有限公司", NULL, NULL, 600);
	struct sg_image blank = render("        ", NULL, NULL, 600);

	for (unsigned i = 0; i < 8; i++) {
		double x, y, ia, ib, i0;

		glyph_at(i, &x, &y);
		ia = ink(&a, x, y, 30);
		ib = ink(&b, x, y, 30);
		i0 = ink(&blank, x, y, 30);
		cr_assert_lt(i0, 1.0, "glyph %u: the blank has ink %f", i, i0);
		cr_assert_gt(ia, 150, "glyph %u of 甲甲甲甲有限公司: ink %f", i, ia);
		cr_assert_gt(ib, 40, "glyph %u of 一一一一有限公司: ink %f", i, ib);
		if (i < 4)
			cr_assert_gt(ia, 2.0 * ib, "glyph %u: 甲 %f, 一 %f", i, ia, ib);
		else
			cr_assert_lt(fabs(ia - ib), 1.0, "glyph %u: the same character", i);
	}
	sg_image_clear(&a);
	sg_image_clear(&b);
	sg_image_clear(&blank);
}

Test(sealimg, kind_text_and_code)
{
	struct sg_image off = render(NAME8, NULL, NULL, 600);
	struct sg_image con = render(NAME8, sg_sealimg_kind_text("contract"), NULL, 600);
	struct sg_image num = render(NAME8, NULL, "3101150012345", 600);

	cr_assert_str_eq(sg_sealimg_kind_text("contract"), "合同专用章");
	cr_assert_str_eq(sg_sealimg_kind_text("finance"), "财务专用章");
	cr_assert_str_eq(sg_sealimg_kind_text("invoice"), "发票专用章");
	cr_assert_null(sg_sealimg_kind_text("official"));
	/* The kind text across, below the star at 0.5 of the radius: its
	 * five characters in a row, straight (the same height at the left
	 * and the right end). */
	cr_assert_lt(ink(&off, 300, 450, 25), 1.0);
	for (int i = -2; i <= 2; i++)
		cr_assert_gt(ink(&con, 300 + i * 57, 450, 25), 100, "kind character %d", i);
	/* The code along the bottom arc. */
	cr_assert_lt(ink(&off, 300, 552, 14), 1.0);
	cr_assert_gt(ink(&num, 300, 552, 14), 20);
	sg_image_clear(&off);
	sg_image_clear(&con);
	sg_image_clear(&num);
}

Test(sealimg, spec_refused)
{
	struct sg_sealimg_spec spec = { .company = NAME8 };
	struct sg_image img = { 0 };
	char err[256];
	char long_name[4 * 41 + 1] = "";

	spec.diameter = 10000;
	cr_assert_eq(sg_sealimg_render(&spec, &img, err, sizeof(err)), -1);
	cr_assert(strstr(err, "diameter"), "%s", err);
	spec.diameter = 0;
	spec.color = "red";
	cr_assert_eq(sg_sealimg_render(&spec, &img, err, sizeof(err)), -1);
	cr_assert(strstr(err, "#RRGGBB"), "%s", err);
	spec.color = NULL;
	spec.company = "";
	cr_assert_eq(sg_sealimg_render(&spec, &img, err, sizeof(err)), -1);
	cr_assert(strstr(err, "company"), "%s", err);
	spec.company = "\xe6\xb5";      /* a character cut short */
	cr_assert_eq(sg_sealimg_render(&spec, &img, err, sizeof(err)), -1);
	for (int i = 0; i < 41; i++)
		strcat(long_name, "公");
	spec.company = long_name;
	cr_assert_eq(sg_sealimg_render(&spec, &img, err, sizeof(err)), -1);
	cr_assert(strstr(err, "40"), "%s", err);
	cr_assert_null(img.rgba);
}

/* A machine without a CJK font: fontconfig sees DejaVu only. */
Test(sealimg, no_cjk_font_is_a_clear_error, .init = mktmp, .fini = rmtmp)
{
	struct sg_sealimg_spec spec = { .company = NAME8 };
	struct sg_image img = { 0 };
	char conf[128], body[512], err[256] = "";

	if (access("/usr/share/fonts/truetype/dejavu", R_OK) != 0)
		cr_skip_test("no DejaVu fonts to stand in for a Latin-only machine");
	snprintf(conf, sizeof(conf), "%s/fonts.conf", tmpdir);
	snprintf(body, sizeof(body), "<?xml version=\"1.0\"?>\n<fontconfig>\n"
		"<dir>/usr/share/fonts/truetype/dejavu</dir>\n<cachedir>%s</cachedir>\n"
		"</fontconfig>\n", tmpdir);
	write_file(conf, body, strlen(body));
	setenv("FONTCONFIG_FILE", conf, 1);
	cr_assert_eq(sg_sealimg_render(&spec, &img, err, sizeof(err)), -1);
	cr_assert(strstr(err, "CJK") && strstr(err, "fonts-wqy-zenhei"), "%s", err);
	cr_assert_null(img.rgba);
	/* A Latin name still draws from the fonts there are. */
	spec.company = "SEALGATE TEST CO LTD";
	cr_assert_eq(sg_sealimg_render(&spec, &img, err, sizeof(err)), 0, "%s", err);
	sg_image_clear(&img);
}

/* A 100 x 50 PNG: blue left half, green right half, fully opaque. */
static void write_png(const char *path, int w, int h)
{
	cairo_surface_t *s = cairo_image_surface_create(CAIRO_FORMAT_ARGB32, w, h);
	cairo_t *cr = cairo_create(s);

	cairo_set_source_rgb(cr, 0, 0, 1);
	cairo_rectangle(cr, 0, 0, w / 2.0, h);
	cairo_fill(cr);
	cairo_set_source_rgb(cr, 0, 1, 0);
	cairo_rectangle(cr, w / 2.0, 0, w / 2.0, h);
	cairo_fill(cr);
	cairo_destroy(cr);
	cr_assert_eq(cairo_surface_write_to_png(s, path), CAIRO_STATUS_SUCCESS);
	cairo_surface_destroy(s);
}

Test(sealimg, png_loads_and_scales, .init = mktmp, .fini = rmtmp)
{
	struct sg_image img = { 0 };
	char path[128], err[256] = "";

	snprintf(path, sizeof(path), "%s/seal.png", tmpdir);
	write_png(path, 100, 50);
	cr_assert_eq(sg_sealimg_load(path, 200, &img, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(img.width, 200);
	cr_assert_eq(img.height, 200);
	/* Twice as large, centred: rows 50..149 hold it, above and below
	 * is transparent. */
	cr_assert_eq(px(&img, 100, 20)[3], 0);
	cr_assert_eq(px(&img, 100, 180)[3], 0);
	cr_assert_eq(memcmp(px(&img, 2, 100), "\x00\x00\xff\xff", 4), 0);
	cr_assert_eq(memcmp(px(&img, 60, 55), "\x00\x00\xff\xff", 4), 0);
	cr_assert_eq(memcmp(px(&img, 197, 144), "\x00\xff\x00\xff", 4), 0);
	sg_image_clear(&img);
}

static const char svg_disc[] =
	"<?xml version=\"1.0\"?>\n"
	"<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 10 10\" width=\"10\" height=\"10\">\n"
	"<circle cx=\"5\" cy=\"5\" r=\"5\" fill=\"#E60012\"/>\n</svg>\n";

Test(sealimg, svg_loads_and_scales, .init = mktmp, .fini = rmtmp)
{
	struct sg_image img = { 0 };
	char path[128], err[256] = "";

	snprintf(path, sizeof(path), "%s/seal.svg", tmpdir);
	write_file(path, svg_disc, strlen(svg_disc));
	cr_assert_eq(sg_sealimg_load(path, 120, &img, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(img.width, 120);
	cr_assert_eq(img.height, 120);
	cr_assert_eq(memcmp(px(&img, 60, 60), "\xe6\x00\x12\xff", 4), 0);
	cr_assert(is_red(px(&img, 60, 2)));
	cr_assert(is_red(px(&img, 2, 60)));
	cr_assert_eq(px(&img, 3, 3)[3], 0);
	cr_assert_eq(px(&img, 116, 116)[3], 0);
	sg_image_clear(&img);
}

/* An SVG whose only drawing is a PNG on disk: with no base file the
 * reference is not followed, so it draws nothing and is refused. */
Test(sealimg, svg_external_image_not_loaded, .init = mktmp, .fini = rmtmp)
{
	struct sg_image img = { 0 };
	char png[128], svg[128], body[512], err[256] = "";

	snprintf(png, sizeof(png), "%s/outside.png", tmpdir);
	snprintf(svg, sizeof(svg), "%s/seal.svg", tmpdir);
	write_png(png, 10, 10);
	snprintf(body, sizeof(body), "<svg xmlns=\"http://www.w3.org/2000/svg\" "
		"xmlns:xlink=\"http://www.w3.org/1999/xlink\" viewBox=\"0 0 10 10\">"
		"<image x=\"0\" y=\"0\" width=\"10\" height=\"10\" xlink:href=\"file://%s\"/>"
		"</svg>", png);
	write_file(svg, body, strlen(body));
	cr_assert_eq(sg_sealimg_load(svg, 64, &img, err, sizeof(err)), -1);
	cr_assert(strstr(err, "draws nothing"), "%s", err);
	cr_assert_null(img.rgba);
}

static void put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

/* A PNG chunk with its CRC, appended at *len. */
static void chunk(uint8_t *buf, size_t *len, const char *type, const void *data, uint32_t n)
{
	put32(buf + *len, n);
	memcpy(buf + *len + 4, type, 4);
	memcpy(buf + *len + 8, data, n);
	put32(buf + *len + 8 + n, (uint32_t)crc32(0, buf + *len + 4, 4 + n));
	*len += 12 + n;
}

/* A PNG with a valid IHDR of w x h and then idat as its only data. */
static size_t make_png(uint8_t *buf, uint32_t w, uint32_t h, const void *idat, uint32_t n)
{
	uint8_t ihdr[13] = { 0 };
	size_t len = 8;

	memcpy(buf, "\x89PNG\r\n\x1a\n", 8);
	put32(ihdr, w);
	put32(ihdr + 4, h);
	ihdr[8] = 8;            /* bit depth */
	ihdr[9] = 6;            /* RGBA */
	chunk(buf, &len, "IHDR", ihdr, 13);
	chunk(buf, &len, "IDAT", idat, n);
	chunk(buf, &len, "IEND", "", 0);
	return len;
}

Test(sealimg, bad_images_refused, .init = mktmp, .fini = rmtmp)
{
	struct sg_image img = { 0 };
	uint8_t buf[4096], *big;
	size_t len;
	char path[128], err[256];
	static const char garbage[] = "this is not zlib data at all, not a PNG's pixels";

	/* A PNG claiming 20000 x 20000 pixels (1.6 GB decoded) in a few
	 * bytes: refused from its header, before decoding. */
	len = make_png(buf, 20000, 20000, garbage, sizeof(garbage));
	cr_assert_eq(sg_sealimg_load_mem(buf, len, 0, &img, err, sizeof(err)), -1);
	cr_assert(strstr(err, "20000x20000") && strstr(err, "8192"), "%s", err);
	/* Within each side's limit, over the pixel count. */
	len = make_png(buf, 8000, 8000, garbage, sizeof(garbage));
	cr_assert_eq(sg_sealimg_load_mem(buf, len, 0, &img, err, sizeof(err)), -1);
	cr_assert(strstr(err, "16777216"), "%s", err);
	/* A right header over corrupt pixel data. */
	len = make_png(buf, 10, 10, garbage, sizeof(garbage));
	cr_assert_eq(sg_sealimg_load_mem(buf, len, 0, &img, err, sizeof(err)), -1);
	cr_assert(strstr(err, "not a valid PNG"), "%s", err);
	/* Cut short after its signature. */
	cr_assert_eq(sg_sealimg_load_mem(buf, 12, 0, &img, err, sizeof(err)), -1);
	cr_assert(strstr(err, "not a valid PNG"), "%s", err);
	/* Not an image. */
	cr_assert_eq(sg_sealimg_load_mem((const uint8_t *)"GIF89a....", 10, 0, &img,
		err, sizeof(err)), -1);
	cr_assert(strstr(err, "neither a PNG nor an SVG"), "%s", err);
	/* A broken SVG, and a gzipped one. */
	cr_assert_eq(sg_sealimg_load_mem((const uint8_t *)"<svg xmlns=", 11, 0, &img,
		err, sizeof(err)), -1);
	cr_assert(strstr(err, "not a valid SVG"), "%s", err);
	cr_assert_eq(sg_sealimg_load_mem((const uint8_t *)"\x1f\x8b\x08\x00", 4, 0, &img,
		err, sizeof(err)), -1);
	cr_assert(strstr(err, "svgz"), "%s", err);
	/* Entities, which nest into megabytes of text. */
	static const char entities[] = "<?xml version=\"1.0\"?>\n<!DOCTYPE svg [<!ENTITY a \"aaaa\">"
		"<!ENTITY b \"&a;&a;&a;&a;\">]>\n<svg xmlns=\"http://www.w3.org/2000/svg\" "
		"viewBox=\"0 0 10 10\"><text y=\"5\">&b;</text><rect width=\"2\" height=\"2\"/></svg>\n";
	cr_assert_eq(sg_sealimg_load_mem((const uint8_t *)entities, strlen(entities), 0, &img,
		err, sizeof(err)), -1);
	cr_assert(strstr(err, "<!ENTITY"), "%s", err);
	/* A file over the size limit: refused by its size, named. */
	big = calloc(1, SG_SEALIMG_MAX_FILE + 1);
	cr_assert_not_null(big);
	memcpy(big, svg_disc, strlen(svg_disc));
	memset(big + strlen(svg_disc), ' ', SG_SEALIMG_MAX_FILE + 1 - strlen(svg_disc));
	snprintf(path, sizeof(path), "%s/big.svg", tmpdir);
	write_file(path, big, SG_SEALIMG_MAX_FILE + 1);
	cr_assert_eq(sg_sealimg_load(path, 0, &img, err, sizeof(err)), -1);
	cr_assert(strstr(err, path) && strstr(err, "4194304"), "%s", err);
	cr_assert_eq(sg_sealimg_load_mem(big, SG_SEALIMG_MAX_FILE + 1, 0, &img, err,
		sizeof(err)), -1);
	cr_assert(strstr(err, "4194304"), "%s", err);
	/* At the limit it is taken. */
	cr_assert_eq(sg_sealimg_load_mem(big, SG_SEALIMG_MAX_FILE, 64, &img, err,
		sizeof(err)), 0, "%s", err);
	sg_image_clear(&img);
	free(big);
	/* A missing file, by name. */
	snprintf(path, sizeof(path), "%s/none.png", tmpdir);
	cr_assert_eq(sg_sealimg_load(path, 0, &img, err, sizeof(err)), -1);
	cr_assert(strstr(err, path), "%s", err);
	cr_assert_null(img.rgba);
}

/* The stream's bytes of an object written by pdfimg, checked against its
 * /Length. */
static const uint8_t *stream_of(const uint8_t *obj, size_t len, size_t *slen)
{
	const char *s = memmem(obj, len, ">>\nstream\n", 10);
	const char *l = memmem(obj, len, "/Length ", 8);
	const uint8_t *body;

	cr_assert(s && l);
	*slen = strtoul(l + 8, NULL, 10);
	body = (const uint8_t *)s + 10;
	cr_assert_eq((size_t)(body - obj) + *slen + strlen("\nendstream\nendobj\n"), len);
	cr_assert_eq(memcmp(body + *slen, "\nendstream\nendobj\n", 18), 0);
	return body;
}

Test(pdfimg, xobject_inflates_back_to_the_pixels)
{
	struct sg_image img = render(NAME8, sg_sealimg_kind_text("finance"), NULL, 96);
	struct sg_pdfimg pi = { 0 };
	uint8_t *obj = NULL, *raw;
	size_t len, slen;
	uLongf rawlen;
	const uint8_t *body;
	char err[256] = "", ap[64];

	cr_assert_eq(sg_pdfimg_objects(&img, &pi, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(pi.width, 96);
	cr_assert_eq(pi.height, 96);
	raw = malloc(96 * 96 * 3);

	cr_assert_eq(sg_pdfimg_write_image(&pi, 5, 7, &obj, &len), 0);
	cr_assert_eq(memcmp(obj, "5 0 obj\n<< /Type /XObject /Subtype /Image /Width 96 /Height 96 "
		"/ColorSpace /DeviceRGB /BitsPerComponent 8 /Filter /FlateDecode /SMask 7 0 R ", 136), 0,
		"%.*s", 160, obj);
	body = stream_of(obj, len, &slen);
	rawlen = 96 * 96 * 3;
	cr_assert_eq(uncompress(raw, &rawlen, body, slen), Z_OK);
	cr_assert_eq(rawlen, 96 * 96 * 3);
	for (size_t i = 0; i < 96 * 96; i++)
		cr_assert_eq(memcmp(raw + i * 3, img.rgba + i * 4, 3), 0, "pixel %zu", i);
	free(obj);

	cr_assert_eq(sg_pdfimg_write_smask(&pi, 7, &obj, &len), 0);
	cr_assert(memmem(obj, len, "7 0 obj\n", 8) == obj);
	cr_assert(memmem(obj, len, "/ColorSpace /DeviceGray /BitsPerComponent 8 /Filter /FlateDecode", 64));
	body = stream_of(obj, len, &slen);
	rawlen = 96 * 96;
	cr_assert_eq(uncompress(raw, &rawlen, body, slen), Z_OK);
	cr_assert_eq(rawlen, 96 * 96);
	for (size_t i = 0; i < 96 * 96; i++)
		cr_assert_eq(raw[i], img.rgba[i * 4 + 3], "alpha %zu", i);
	free(obj);

	cr_assert_eq(sg_pdfimg_write_form(6, 42.5, 42.5, 5, &obj, &len), 0);
	body = stream_of(obj, len, &slen);
	cr_assert_eq(slen, strlen("q 42.5 0 0 42.5 0 0 cm /Im0 Do Q\n"));
	cr_assert_eq(memcmp(body, "q 42.5 0 0 42.5 0 0 cm /Im0 Do Q\n", slen), 0);
	cr_assert(memmem(obj, len, "/BBox [0 0 42.5 42.5] /Resources << /XObject << /Im0 5 0 R >> >>", 64));
	free(obj);

	cr_assert_eq(sg_pdfimg_appearance(120, 80.25, ap, sizeof(ap)), 33);
	cr_assert_str_eq(ap, "q 120 0 0 80.25 0 0 cm /Im0 Do Q\n");
	cr_assert_eq(sg_pdfimg_appearance(120, 80, ap, 10), -1);
	cr_assert_eq(sg_pdfimg_appearance(0, 80, ap, sizeof(ap)), -1);
	cr_assert_eq(sg_pdfimg_appearance(1e300, 80, ap, sizeof(ap)), -1);
	cr_assert_eq(sg_pdfimg_write_image(&pi, 0, 7, &obj, &len), -1);

	free(raw);
	sg_pdfimg_clear(&pi);
	cr_assert_null(pi.rgb);
	sg_image_clear(&img);
}

Test(pdfimg, oversized_image_refused)
{
	struct sg_image img = { .width = 5000, .height = 5000, .stride = 5000 * 4 };
	struct sg_pdfimg pi = { 0 };
	uint8_t one[4] = { 0 };
	char err[256] = "";

	img.rgba = one;        /* never read: refused by its size first */
	cr_assert_eq(sg_pdfimg_objects(&img, &pi, err, sizeof(err)), -1);
	cr_assert(strstr(err, "5000x5000"), "%s", err);
	img.width = 1;
	img.height = 1;
	img.stride = 2;
	cr_assert_eq(sg_pdfimg_objects(&img, &pi, err, sizeof(err)), -1);
	cr_assert_null(pi.rgb);
}

/* ---- end to end: a one-page PDF with the seal, rendered by poppler ---- */

struct pdfw {
	FILE *f;
	long off[16];
};

static void pdf_put(struct pdfw *w, unsigned num, const void *obj, size_t len)
{
	w->off[num] = ftell(w->f);
	cr_assert_eq(fwrite(obj, 1, len, w->f), len);
}

static void pdf_puts(struct pdfw *w, unsigned num, const char *obj)
{
	pdf_put(w, num, obj, strlen(obj));
}

/* A 300 x 300 pt page with the seal drawn in the 100 x 100 box whose
 * lower left corner is (150, 100), as sealctl stamp's widget would. */
static void write_pdf(const char *path, const struct sg_pdfimg *pi)
{
	static const char content[] = "q 1 0 0 1 150 100 cm /Fm0 Do Q\n";
	struct pdfw w = { 0 };
	uint8_t *obj;
	size_t len;
	long xref;
	char buf[256];

	w.f = fopen(path, "wb");
	cr_assert_not_null(w.f);
	fputs("%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", w.f);
	pdf_puts(&w, 1, "1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n");
	pdf_puts(&w, 2, "2 0 obj\n<< /Type /Pages /Kids [3 0 R] /Count 1 >>\nendobj\n");
	pdf_puts(&w, 3, "3 0 obj\n<< /Type /Page /Parent 2 0 R /MediaBox [0 0 300 300] "
		"/Resources << /XObject << /Fm0 6 0 R >> >> /Contents 4 0 R >>\nendobj\n");
	snprintf(buf, sizeof(buf), "4 0 obj\n<< /Length %zu >>\nstream\n%sendstream\nendobj\n",
		strlen(content), content);
	pdf_puts(&w, 4, buf);
	cr_assert_eq(sg_pdfimg_write_image(pi, 5, 7, &obj, &len), 0);
	pdf_put(&w, 5, obj, len);
	free(obj);
	cr_assert_eq(sg_pdfimg_write_form(6, 100, 100, 5, &obj, &len), 0);
	pdf_put(&w, 6, obj, len);
	free(obj);
	cr_assert_eq(sg_pdfimg_write_smask(pi, 7, &obj, &len), 0);
	pdf_put(&w, 7, obj, len);
	free(obj);
	xref = ftell(w.f);
	fputs("xref\n0 8\n0000000000 65535 f \n", w.f);
	for (unsigned i = 1; i < 8; i++)
		fprintf(w.f, "%010ld 00000 n \n", w.off[i]);
	fprintf(w.f, "trailer\n<< /Size 8 /Root 1 0 R >>\nstartxref\n%ld\n%%%%EOF\n", xref);
	cr_assert_eq(fclose(w.f), 0);
}

Test(pdfimg, seal_on_a_pdf_page_where_it_was_put, .init = mktmp, .fini = rmtmp)
{
	struct sg_image img = render(NAME8, sg_sealimg_kind_text("contract"), NULL, 400);
	struct sg_pdfimg pi = { 0 };
	cairo_surface_t *page;
	const unsigned char *data;
	char pdf[128], out[128], png[160], cmd[512], err[256] = "";
	int stride, w, h, inside = 0, outside = 0, rc;

	cr_assert_eq(sg_pdfimg_objects(&img, &pi, err, sizeof(err)), 0, "%s", err);
	snprintf(pdf, sizeof(pdf), "%s/page.pdf", tmpdir);
	snprintf(out, sizeof(out), "%s/page", tmpdir);
	snprintf(png, sizeof(png), "%s.png", out);
	write_pdf(pdf, &pi);
	/* One pixel a point. */
	snprintf(cmd, sizeof(cmd), "pdftoppm -r 72 -png -singlefile '%s' '%s' 2>'%s/pdftoppm.err'",
		pdf, out, tmpdir);
	rc = system(cmd);
	if (WIFEXITED(rc) && WEXITSTATUS(rc) == 127)
		cr_skip_test("pdftoppm (poppler-utils) is not installed");
	cr_assert_eq(rc, 0, "%s", cmd);
	/* poppler found nothing to complain of in the objects. */
	snprintf(cmd, sizeof(cmd), "test ! -s '%s/pdftoppm.err'", tmpdir);
	cr_assert_eq(system(cmd), 0, "pdftoppm printed errors");

	/* qpdf, where installed, finds the objects well formed too. */
	if (system("command -v qpdf >/dev/null") == 0) {
		snprintf(cmd, sizeof(cmd), "qpdf --check '%s' >'%s/qpdf.out' 2>&1", pdf, tmpdir);
		cr_assert_eq(system(cmd), 0, "qpdf --check %s failed", pdf);
	}

	page = cairo_image_surface_create_from_png(png);
	cr_assert_eq(cairo_surface_status(page), CAIRO_STATUS_SUCCESS);
	w = cairo_image_surface_get_width(page);
	h = cairo_image_surface_get_height(page);
	cr_assert_eq(w, 300);
	cr_assert_eq(h, 300);
	data = cairo_image_surface_get_data(page);
	stride = cairo_image_surface_get_stride(page);
	/* The box is x 150..250 and, the page's y going up, rows 100..200. */
	for (int y = 0; y < h; y++)
		for (int x = 0; x < w; x++) {
			uint32_t p = *(const uint32_t *)(const void *)(data + y * stride + x * 4);
			unsigned r = (p >> 16) & 0xff, g = (p >> 8) & 0xff, b = p & 0xff;
			bool red = r > 180 && g < 110 && b < 110;
			bool in_box = x >= 150 && x < 250 && y >= 100 && y < 200;
			/* poppler's smoothing of the image's edge reaches a pixel
			 * past the box. */
			bool near_box = x >= 149 && x <= 250 && y >= 99 && y <= 200;

			if (red && in_box)
				inside++;
			else if (red)
				outside++;
			if (!near_box)
				cr_assert(r > 250 && g > 250 && b > 250, "(%d,%d) not white: %u %u %u",
					x, y, r, g, b);
		}
	cr_assert_eq(outside, 0);
	cr_assert_gt(inside, 1500, "red pixels in the box: %d", inside);
	/* The star's centre in the box's centre, the ring at its top and
	 * left, the box's corners white (transparent outside the circle). */
#define PIX(x, y) (*(const uint32_t *)(const void *)(data + (y) * stride + (x) * 4))
	/* (poppler's colour arithmetic may be a unit off) */
	cr_assert(abs((int)((PIX(200, 150) >> 16) & 0xff) - 0xe6) <= 2 &&
		abs((int)((PIX(200, 150) >> 8) & 0xff) - 0x00) <= 2 &&
		abs((int)(PIX(200, 150) & 0xff) - 0x12) <= 2, "%06x", PIX(200, 150) & 0xffffff);
	cr_assert_gt((PIX(200, 102) >> 16) & 0xff, 180);
	cr_assert_lt((PIX(200, 102) >> 8) & 0xff, 110);
	cr_assert_gt((PIX(152, 150) >> 16) & 0xff, 180);
	cr_assert_lt((PIX(152, 150) >> 8) & 0xff, 110);
	cr_assert_eq(PIX(152, 102) & 0xffffff, 0xffffff);
	cr_assert_eq(PIX(248, 198) & 0xffffff, 0xffffff);
#undef PIX
	cairo_surface_destroy(page);
	sg_pdfimg_clear(&pi);
	sg_image_clear(&img);
}
