/*
 * tools/stamp/sealimg.c: the round red seal drawn with cairo in a CJK font
 * fontconfig finds, and a policy's PNG/SVG read with limits (a file named
 * in a policy is input), both as straight-alpha RGBA (sealimg.h).
 */
#include "sealimg.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cairo.h>
#include <cairo-ft.h>
#include <fontconfig/fontconfig.h>
#include <librsvg/rsvg.h>

#define SEAL_PI 3.14159265358979323846

/* The drawing, in units of the seal's radius (the seal spans -1..1).
 * Proportions of a 42 mm seal: a 1.2 mm ring, characters about 6 mm
 * high, a star about 13 mm across. */
#define RING_MARGIN   0.012   /* room for the ring's antialiased edge */
#define RING_WIDTH    0.055
#define NAME_SIZE     0.27    /* font size of the company name */
#define NAME_RADIUS   0.75    /* where the name's glyphs are centred */
#define NAME_SPAN     240.0   /* degrees the name spreads over at most */
#define NAME_STEP_MAX 32.0    /* degrees a glyph of a short name takes */
#define STAR_OUTER    0.30
#define STAR_INNER    (STAR_OUTER * 0.381966)  /* a regular star's ratio */
#define KIND_SIZE     0.20
#define KIND_Y        0.50    /* the kind text's centre below the middle */
#define KIND_WIDTH    0.95    /* the widest the kind text may be */
#define CODE_SIZE     0.11
#define CODE_RADIUS   0.84
#define CODE_SPAN     100.0   /* degrees along the bottom, at most */
#define CODE_STEP_MAX 7.5
/* Stroke around each glyph's outline, thickening it. */
#define NAME_BOLD     0.012
#define KIND_BOLD     0.009
#define CODE_BOLD     0.004

#if defined(__SANITIZE_ADDRESS__)
/* LeakSanitizer: fontconfig 2.14 leaks a little of its own configuration
 * while parsing it in FcInit, once a process, out of our reach; every
 * program drawing a seal (sealctl, sealgate-sealimg, the tests) would
 * report it. Weak: a program with suppressions of its own (the tests
 * that load SoftHSM2, tests/lib/softhsm-sanitizer.c, which names
 * fontconfig too) links this library since the gateway checks a
 * policy's images with it. */
const char *__lsan_default_suppressions(void) __attribute__((weak));
const char *__lsan_default_suppressions(void)
{
	return "leak:libfontconfig.so\n";
}
#endif

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

void sg_image_clear(struct sg_image *img)
{
	if (!img)
		return;
	free(img->rgba);
	memset(img, 0, sizeof(*img));
}

const char *sg_sealimg_kind_text(const char *kind)
{
	if (!kind || !*kind || !strcmp(kind, "official"))
		return NULL;
	if (!strcmp(kind, "contract"))
		return "合同专用章";
	if (!strcmp(kind, "finance"))
		return "财务专用章";
	if (!strcmp(kind, "invoice"))
		return "发票专用章";
	return kind;
}

/* Strict UTF-8 (no overlongs, surrogates or past U+10FFFF) into at most
 * max code points; the count, or -1 when invalid or too long. */
static long utf8_decode(const char *s, uint32_t *cps, size_t max)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t n = 0;

	while (*p) {
		uint32_t c;
		int more;

		if (*p < 0x80) {
			c = *p;
			more = 0;
		} else if (*p >= 0xc2 && *p <= 0xdf) {
			c = *p & 0x1f;
			more = 1;
		} else if (*p >= 0xe0 && *p <= 0xef) {
			c = *p & 0x0f;
			more = 2;
		} else if (*p >= 0xf0 && *p <= 0xf4) {
			c = *p & 0x07;
			more = 3;
		} else {
			return -1;
		}
		p++;
		for (int i = 0; i < more; i++, p++) {
			if ((*p & 0xc0) != 0x80)
				return -1;
			c = (c << 6) | (*p & 0x3f);
		}
		if ((more == 2 && (c < 0x800 || (c >= 0xd800 && c <= 0xdfff))) ||
		    (more == 3 && (c < 0x10000 || c > 0x10ffff)))
			return -1;
		if (c < 0x20 || c == 0x7f)
			return -1;      /* no control characters on a seal */
		if (n == max)
			return -1;
		cps[n++] = c;
	}
	return (long)n;
}

static int utf8_encode(uint32_t c, char out[5])
{
	int n;

	if (c < 0x80) {
		out[0] = (char)c;
		n = 1;
	} else if (c < 0x800) {
		out[0] = (char)(0xc0 | (c >> 6));
		out[1] = (char)(0x80 | (c & 0x3f));
		n = 2;
	} else if (c < 0x10000) {
		out[0] = (char)(0xe0 | (c >> 12));
		out[1] = (char)(0x80 | ((c >> 6) & 0x3f));
		out[2] = (char)(0x80 | (c & 0x3f));
		n = 3;
	} else {
		out[0] = (char)(0xf0 | (c >> 18));
		out[1] = (char)(0x80 | ((c >> 12) & 0x3f));
		out[2] = (char)(0x80 | ((c >> 6) & 0x3f));
		out[3] = (char)(0x80 | (c & 0x3f));
		n = 4;
	}
	out[n] = 0;
	return n;
}

static int parse_color(const char *s, double rgb[3])
{
	unsigned v[3];

	if (!s)
		s = SG_SEALIMG_DEFAULT_COLOR;
	if (strlen(s) != 7 || s[0] != '#' || strspn(s + 1, "0123456789abcdefABCDEF") != 6)
		return -1;
	if (sscanf(s + 1, "%2x%2x%2x", &v[0], &v[1], &v[2]) != 3)
		return -1;
	for (int i = 0; i < 3; i++)
		rgb[i] = v[i] / 255.0;
	return 0;
}

/*
 * A scalable font that has every character to draw. fontconfig is asked
 * for one covering them (charset ranks above family), then the answer is
 * checked: with no CJK font installed it hands back a Latin one, which
 * would draw boxes (tofu) in place of the company's name.
 */
static FcPattern *font_find(const char *family, const uint32_t *cps, size_t n,
	char *err, size_t errlen)
{
	FcPattern *pat = NULL, *match = NULL;
	FcCharSet *want = NULL, *have = NULL;
	FcChar8 *file = NULL;
	FcResult res;
	size_t i;

	if (!FcInit()) {
		seterr(err, errlen, "fontconfig could not load its configuration");
		return NULL;
	}
	pat = FcPatternCreate();
	want = FcCharSetCreate();
	if (!pat || !want)
		goto nomem;
	for (i = 0; i < n; i++)
		if (!FcCharSetAddChar(want, cps[i]))
			goto nomem;
	if (!FcPatternAddString(pat, FC_FAMILY, (const FcChar8 *)(family ? family : "sans-serif")) ||
	    !FcPatternAddString(pat, FC_LANG, (const FcChar8 *)"zh-cn") ||
	    !FcPatternAddCharSet(pat, FC_CHARSET, want) ||
	    !FcPatternAddBool(pat, FC_SCALABLE, FcTrue))
		goto nomem;
	if (!FcConfigSubstitute(NULL, pat, FcMatchPattern))
		goto nomem;
	FcDefaultSubstitute(pat);
	match = FcFontMatch(NULL, pat, &res);
	if (!match || res != FcResultMatch ||
	    FcPatternGetCharSet(match, FC_CHARSET, 0, &have) != FcResultMatch) {
		seterr(err, errlen, "no CJK font found by fontconfig (install fonts-wqy-zenhei)");
		goto fail;
	}
	for (i = 0; i < n; i++) {
		if (cps[i] == ' ' || FcCharSetHasChar(have, cps[i]))
			continue;
		FcPatternGetString(match, FC_FILE, 0, &file);
		if (cps[i] >= 0x2e80)
			seterr(err, errlen, "no CJK font has U+%04X (the best fontconfig "
				"found is %s): install fonts-wqy-zenhei", (unsigned)cps[i],
				file ? (const char *)file : "none");
		else
			seterr(err, errlen, "no font has U+%04X (the best fontconfig found is %s)",
				(unsigned)cps[i], file ? (const char *)file : "none");
		goto fail;
	}
	FcPatternDestroy(pat);
	FcCharSetDestroy(want);
	return match;
nomem:
	seterr(err, errlen, "out of memory");
fail:
	if (match)
		FcPatternDestroy(match);
	if (pat)
		FcPatternDestroy(pat);
	if (want)
		FcCharSetDestroy(want);
	return NULL;
}

/* Draws character c with its ink centred on the origin, squeezed
 * horizontally by hscale and its strokes thickened by bold (a seal's
 * characters are cut heavier than a screen font's); -1 when the font has
 * no glyph for it. */
static int draw_char(cairo_t *cr, uint32_t c, double hscale, double bold)
{
	cairo_scaled_font_t *sf;
	cairo_glyph_t *glyphs = NULL;
	cairo_text_extents_t ext;
	int nglyphs = 0, rv = -1;
	char utf8[5];
	int len;

	if (c == ' ')
		return 0;
	len = utf8_encode(c, utf8);
	sf = cairo_get_scaled_font(cr);
	if (cairo_scaled_font_text_to_glyphs(sf, 0, 0, utf8, len, &glyphs, &nglyphs,
		NULL, NULL, NULL) != CAIRO_STATUS_SUCCESS || nglyphs != 1 || glyphs[0].index == 0)
		goto out;
	cairo_save(cr);
	cairo_scale(cr, hscale, 1.0);
	cairo_glyph_extents(cr, glyphs, 1, &ext);
	glyphs[0].x = -(ext.x_bearing + ext.width / 2);
	glyphs[0].y = -(ext.y_bearing + ext.height / 2);
	cairo_glyph_path(cr, glyphs, 1);
	cairo_restore(cr);
	cairo_fill_preserve(cr);
	/* thinner on squeezed glyphs, whose strokes are closer together */
	cairo_set_line_width(cr, bold * hscale);
	cairo_set_line_join(cr, CAIRO_LINE_JOIN_ROUND);
	cairo_stroke(cr);
	rv = 0;
out:
	cairo_glyph_free(glyphs);
	return rv;
}

/* The widest advance of the characters at the current font size. */
static double max_advance(cairo_t *cr, const uint32_t *cps, size_t n)
{
	cairo_scaled_font_t *sf = cairo_get_scaled_font(cr);
	double w = 0;

	for (size_t i = 0; i < n; i++) {
		cairo_glyph_t *g = NULL;
		cairo_text_extents_t ext;
		int ng = 0;
		char utf8[5];
		int len = utf8_encode(cps[i], utf8);

		if (cairo_scaled_font_text_to_glyphs(sf, 0, 0, utf8, len, &g, &ng,
			NULL, NULL, NULL) == CAIRO_STATUS_SUCCESS && ng == 1) {
			cairo_glyph_extents(cr, g, 1, &ext);
			if (ext.x_advance > w)
				w = ext.x_advance;
		}
		cairo_glyph_free(g);
	}
	return w;
}

/*
 * Characters along an arc, each rotated so that its top points away from
 * the centre (top arc) or towards it (bottom arc), read left to right.
 * The arc is centred on 12 o'clock (top) or 6 o'clock (bottom).
 */
static int draw_arc(cairo_t *cr, const uint32_t *cps, size_t n, double size,
	double radius, double span_max, double step_max, bool bottom, double bold)
{
	double step, span, adv, hscale;

	if (!n)
		return 0;
	cairo_set_font_size(cr, size);
	step = span_max / (double)n;
	if (step > step_max)
		step = step_max;
	span = step * (double)n;
	step *= SEAL_PI / 180;
	span *= SEAL_PI / 180;
	/* Squeeze the glyphs of a long name rather than let them touch at
	 * their inner edge, as seal makers do. */
	adv = max_advance(cr, cps, n);
	hscale = adv > 0 ? 0.80 * radius * step / adv : 1.0;
	if (hscale > 1.0)
		hscale = 1.0;
	for (size_t i = 0; i < n; i++) {
		double a = -span / 2 + step * ((double)i + 0.5);

		cairo_save(cr);
		if (bottom) {
			cairo_rotate(cr, -a);
			cairo_translate(cr, 0, radius);
		} else {
			cairo_rotate(cr, a);
			cairo_translate(cr, 0, -radius);
		}
		if (draw_char(cr, cps[i], hscale, bold) < 0) {
			cairo_restore(cr);
			return -1;
		}
		cairo_restore(cr);
	}
	return 0;
}

static int draw_line(cairo_t *cr, const uint32_t *cps, size_t n, double size,
	double y, double width_max, double bold)
{
	double adv, cell, hscale;

	if (!n)
		return 0;
	cairo_set_font_size(cr, size);
	adv = max_advance(cr, cps, n);
	if (adv <= 0)
		return -1;
	hscale = width_max / (adv * (double)n);
	if (hscale > 1.0)
		hscale = 1.0;
	cell = adv * hscale;
	for (size_t i = 0; i < n; i++) {
		cairo_save(cr);
		cairo_translate(cr, -cell * (double)n / 2 + cell * ((double)i + 0.5), y);
		if (draw_char(cr, cps[i], hscale, bold) < 0) {
			cairo_restore(cr);
			return -1;
		}
		cairo_restore(cr);
	}
	return 0;
}

static void draw_star(cairo_t *cr)
{
	for (int k = 0; k < 10; k++) {
		double a = -SEAL_PI / 2 + k * SEAL_PI / 5;
		double r = (k % 2) ? STAR_INNER : STAR_OUTER;

		if (k == 0)
			cairo_move_to(cr, r * cos(a), r * sin(a));
		else
			cairo_line_to(cr, r * cos(a), r * sin(a));
	}
	cairo_close_path(cr);
	cairo_fill(cr);
}

/* cairo's ARGB32 (premultiplied, native-endian words) into out's
 * straight RGBA bytes. */
static int surface_to_image(cairo_surface_t *s, struct sg_image *out,
	char *err, size_t errlen)
{
	int w, h, stride;
	const unsigned char *src;
	uint8_t *dst;

	cairo_surface_flush(s);
	w = cairo_image_surface_get_width(s);
	h = cairo_image_surface_get_height(s);
	stride = cairo_image_surface_get_stride(s);
	src = cairo_image_surface_get_data(s);
	if (!src || w <= 0 || h <= 0) {
		seterr(err, errlen, "cairo drew nothing");
		return -1;
	}
	dst = malloc((size_t)w * (size_t)h * 4);
	if (!dst) {
		seterr(err, errlen, "out of memory");
		return -1;
	}
	for (int y = 0; y < h; y++) {
		const uint32_t *row = (const uint32_t *)(const void *)(src + (size_t)y * (size_t)stride);
		uint8_t *d = dst + (size_t)y * (size_t)w * 4;

		for (int x = 0; x < w; x++, d += 4) {
			uint32_t p = row[x];
			unsigned a = p >> 24, r = (p >> 16) & 0xff, g = (p >> 8) & 0xff, b = p & 0xff;

			if (a == 0) {
				d[0] = d[1] = d[2] = d[3] = 0;
				continue;
			}
			d[0] = (uint8_t)((r * 255 + a / 2) / a);
			d[1] = (uint8_t)((g * 255 + a / 2) / a);
			d[2] = (uint8_t)((b * 255 + a / 2) / a);
			d[3] = (uint8_t)a;
		}
	}
	out->width = (uint32_t)w;
	out->height = (uint32_t)h;
	out->stride = (size_t)w * 4;
	out->rgba = dst;
	return 0;
}

static int check_diameter(unsigned *d, char *err, size_t errlen)
{
	if (!*d)
		*d = SG_SEALIMG_DEFAULT_DIAMETER;
	if (*d < SG_SEALIMG_MIN_DIAMETER || *d > SG_SEALIMG_MAX_DIAMETER) {
		seterr(err, errlen, "a seal's diameter is %u to %u pixels, not %u",
			SG_SEALIMG_MIN_DIAMETER, SG_SEALIMG_MAX_DIAMETER, *d);
		return -1;
	}
	return 0;
}

int sg_sealimg_render(const struct sg_sealimg_spec *spec, struct sg_image *out,
	char *err, size_t errlen)
{
	uint32_t name[SG_SEALIMG_MAX_COMPANY], kind[SG_SEALIMG_MAX_KIND], code[SG_SEALIMG_MAX_CODE];
	uint32_t all[SG_SEALIMG_MAX_COMPANY + SG_SEALIMG_MAX_KIND + SG_SEALIMG_MAX_CODE];
	long nname, nkind = 0, ncode = 0;
	unsigned d;
	double rgb[3];
	FcPattern *font = NULL;
	cairo_font_face_t *face = NULL;
	cairo_font_options_t *fopt = NULL;
	cairo_surface_t *s = NULL;
	cairo_t *cr = NULL;
	int rv = -1;

	if (!spec || !out) {
		seterr(err, errlen, "no seal to draw");
		return -1;
	}
	memset(out, 0, sizeof(*out));
	d = spec->diameter;
	if (check_diameter(&d, err, errlen) < 0)
		return -1;
	if (parse_color(spec->color, rgb) < 0) {
		seterr(err, errlen, "a seal's colour is #RRGGBB, not '%s'", spec->color);
		return -1;
	}
	nname = spec->company ? utf8_decode(spec->company, name, SG_SEALIMG_MAX_COMPANY) : -1;
	if (nname <= 0) {
		seterr(err, errlen, "a seal's company name is 1 to %u characters of UTF-8",
			SG_SEALIMG_MAX_COMPANY);
		return -1;
	}
	if (spec->kind && (nkind = utf8_decode(spec->kind, kind, SG_SEALIMG_MAX_KIND)) < 0) {
		seterr(err, errlen, "a seal's kind text is at most %u characters of UTF-8",
			SG_SEALIMG_MAX_KIND);
		return -1;
	}
	if (spec->code && (ncode = utf8_decode(spec->code, code, SG_SEALIMG_MAX_CODE)) < 0) {
		seterr(err, errlen, "a seal's code number is at most %u characters of UTF-8",
			SG_SEALIMG_MAX_CODE);
		return -1;
	}
	memcpy(all, name, (size_t)nname * sizeof(*all));
	memcpy(all + nname, kind, (size_t)nkind * sizeof(*all));
	memcpy(all + nname + nkind, code, (size_t)ncode * sizeof(*all));
	font = font_find(spec->font, all, (size_t)(nname + nkind + ncode), err, errlen);
	if (!font)
		return -1;

	face = cairo_ft_font_face_create_for_pattern(font);
	s = cairo_image_surface_create(CAIRO_FORMAT_ARGB32, (int)d, (int)d);
	cr = cairo_create(s);
	fopt = cairo_font_options_create();
	if (cairo_font_face_status(face) || cairo_status(cr) || cairo_font_options_status(fopt)) {
		seterr(err, errlen, "cairo could not start drawing (out of memory?)");
		goto out;
	}
	/* Rotated glyphs: hinting to the pixel grid would bend them. */
	cairo_font_options_set_hint_style(fopt, CAIRO_HINT_STYLE_NONE);
	cairo_font_options_set_hint_metrics(fopt, CAIRO_HINT_METRICS_OFF);
	cairo_font_options_set_antialias(fopt, CAIRO_ANTIALIAS_GRAY);
	cairo_set_font_options(cr, fopt);
	cairo_set_font_face(cr, face);

	cairo_translate(cr, d / 2.0, d / 2.0);
	cairo_scale(cr, d / 2.0, d / 2.0);
	cairo_set_source_rgb(cr, rgb[0], rgb[1], rgb[2]);

	cairo_set_line_width(cr, RING_WIDTH);
	cairo_arc(cr, 0, 0, 1.0 - RING_MARGIN - RING_WIDTH / 2, 0, 2 * SEAL_PI);
	cairo_stroke(cr);
	draw_star(cr);
	if (draw_arc(cr, name, (size_t)nname, NAME_SIZE, NAME_RADIUS, NAME_SPAN,
		NAME_STEP_MAX, false, NAME_BOLD) < 0 ||
	    draw_line(cr, kind, (size_t)nkind, KIND_SIZE, KIND_Y, KIND_WIDTH, KIND_BOLD) < 0 ||
	    draw_arc(cr, code, (size_t)ncode, CODE_SIZE, CODE_RADIUS, CODE_SPAN,
		CODE_STEP_MAX, true, CODE_BOLD) < 0) {
		seterr(err, errlen, "the font fontconfig chose has no glyph for a character "
			"of the seal (install fonts-wqy-zenhei)");
		goto out;
	}
	if (cairo_status(cr)) {
		seterr(err, errlen, "cairo: %s", cairo_status_to_string(cairo_status(cr)));
		goto out;
	}
	rv = surface_to_image(s, out, err, errlen);
out:
	if (fopt)
		cairo_font_options_destroy(fopt);
	if (cr)
		cairo_destroy(cr);
	if (s)
		cairo_surface_destroy(s);
	if (face)
		cairo_font_face_destroy(face);
	FcPatternDestroy(font);
	return rv;
}

/* ---- a policy's image ---- */

struct membuf {
	const uint8_t *p;
	size_t len, off;
};

static cairo_status_t mem_read(void *closure, unsigned char *data, unsigned int len)
{
	struct membuf *m = closure;

	if (len > m->len - m->off)
		return CAIRO_STATUS_READ_ERROR;
	memcpy(data, m->p + m->off, len);
	m->off += len;
	return CAIRO_STATUS_SUCCESS;
}

static const uint8_t png_magic[8] = { 0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n' };

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* The PNG's size from its IHDR, checked before anything is decoded: a
 * few KiB of PNG can inflate to gigabytes of pixels. */
static int png_check(const uint8_t *data, size_t len, char *err, size_t errlen)
{
	uint32_t w, h;

	if (len < 8 + 8 + 13 + 4 || be32(data + 8) != 13 || memcmp(data + 12, "IHDR", 4)) {
		seterr(err, errlen, "the image is not a valid PNG (no IHDR header)");
		return -1;
	}
	w = be32(data + 16);
	h = be32(data + 20);
	if (!w || !h) {
		seterr(err, errlen, "the image is not a valid PNG (%ux%u pixels)", w, h);
		return -1;
	}
	if (w > SG_SEALIMG_MAX_SIDE || h > SG_SEALIMG_MAX_SIDE ||
	    (uint64_t)w * h > SG_SEALIMG_MAX_PIXELS) {
		seterr(err, errlen, "the PNG is %ux%u pixels: more than a seal's image may be "
			"(%u a side, %u pixels)", w, h, SG_SEALIMG_MAX_SIDE, SG_SEALIMG_MAX_PIXELS);
		return -1;
	}
	return 0;
}

static bool looks_svg(const uint8_t *data, size_t len)
{
	size_t i = 0;

	if (len >= 3 && data[0] == 0xef && data[1] == 0xbb && data[2] == 0xbf)
		i = 3;
	while (i < len && (data[i] == ' ' || data[i] == '\t' || data[i] == '\r' || data[i] == '\n'))
		i++;
	return i < len && data[i] == '<';
}

/* Draws src (w x h) fitted and centred into the d x d surface dst. */
static void paint_fitted(cairo_t *cr, cairo_surface_t *src, int w, int h, unsigned d)
{
	double sc = (double)d / (w > h ? w : h);

	cairo_translate(cr, (d - w * sc) / 2, (d - h * sc) / 2);
	cairo_scale(cr, sc, sc);
	cairo_set_source_surface(cr, src, 0, 0);
	cairo_pattern_set_filter(cairo_get_source(cr), CAIRO_FILTER_GOOD);
	cairo_paint(cr);
}

static int blank_check(const struct sg_image *img, char *err, size_t errlen)
{
	size_t n = (size_t)img->width * img->height;

	for (size_t i = 0; i < n; i++)
		if (img->rgba[i * 4 + 3])
			return 0;
	seterr(err, errlen, "the image draws nothing (every pixel transparent)");
	return -1;
}

int sg_sealimg_load_mem(const uint8_t *data, size_t len, unsigned diameter,
	struct sg_image *out, char *err, size_t errlen)
{
	cairo_surface_t *src = NULL, *dst = NULL;
	cairo_t *cr = NULL;
	RsvgHandle *svg = NULL;
	GError *gerr = NULL;
	int rv = -1;

	if (!out) {
		seterr(err, errlen, "nowhere to put the image");
		return -1;
	}
	memset(out, 0, sizeof(*out));
	if (check_diameter(&diameter, err, errlen) < 0)
		return -1;
	if (!data || !len) {
		seterr(err, errlen, "the image is empty");
		return -1;
	}
	if (len > SG_SEALIMG_MAX_FILE) {
		seterr(err, errlen, "the image is %zu bytes: more than a seal's image may be (%u)",
			len, SG_SEALIMG_MAX_FILE);
		return -1;
	}
	dst = cairo_image_surface_create(CAIRO_FORMAT_ARGB32, (int)diameter, (int)diameter);
	cr = cairo_create(dst);
	if (cairo_status(cr)) {
		seterr(err, errlen, "out of memory");
		goto out;
	}
	if (len >= 8 && !memcmp(data, png_magic, 8)) {
		struct membuf m = { data, len, 0 };

		if (png_check(data, len, err, errlen) < 0)
			goto out;
		src = cairo_image_surface_create_from_png_stream(mem_read, &m);
		if (cairo_surface_status(src)) {
			seterr(err, errlen, "the image is not a valid PNG (%s)",
				cairo_status_to_string(cairo_surface_status(src)));
			goto out;
		}
		paint_fitted(cr, src, cairo_image_surface_get_width(src),
			cairo_image_surface_get_height(src), diameter);
	} else if (len >= 2 && data[0] == 0x1f && data[1] == 0x8b) {
		/* librsvg would inflate it with no bound of ours. */
		seterr(err, errlen, "a gzipped SVG (svgz) is not taken: give the plain SVG");
		goto out;
	} else if (looks_svg(data, len)) {
		RsvgRectangle vp = { 0, 0, diameter, diameter };

		/* Entities: a seal's drawing needs none, libxml2 expands them
		 * (a few of them nested make megabytes) and librsvg 2.54 leaks
		 * each one's value. */
		if (memmem(data, len, "<!ENTITY", 8)) {
			seterr(err, errlen, "an SVG declaring entities (<!ENTITY) is not taken");
			goto out;
		}
		/* From memory, with no base file: librsvg then loads no external
		 * image, stylesheet or entity the SVG names. */
		svg = rsvg_handle_new_from_data(data, len, &gerr);
		if (!svg) {
			seterr(err, errlen, "the image is not a valid SVG (%s)",
				gerr ? gerr->message : "librsvg refused it");
			goto out;
		}
		if (!rsvg_handle_render_document(svg, cr, &vp, &gerr)) {
			seterr(err, errlen, "the SVG could not be drawn (%s)",
				gerr ? gerr->message : "librsvg refused it");
			goto out;
		}
	} else {
		seterr(err, errlen, "the image is neither a PNG nor an SVG");
		goto out;
	}
	if (cairo_status(cr)) {
		seterr(err, errlen, "cairo: %s", cairo_status_to_string(cairo_status(cr)));
		goto out;
	}
	if (surface_to_image(dst, out, err, errlen) < 0)
		goto out;
	if (blank_check(out, err, errlen) < 0) {
		sg_image_clear(out);
		goto out;
	}
	rv = 0;
out:
	if (gerr)
		g_error_free(gerr);
	if (svg)
		g_object_unref(svg);
	if (src)
		cairo_surface_destroy(src);
	if (cr)
		cairo_destroy(cr);
	if (dst)
		cairo_surface_destroy(dst);
	return rv;
}

int sg_sealimg_load(const char *path, unsigned diameter, struct sg_image *out,
	char *err, size_t errlen)
{
	struct stat st;
	uint8_t *buf = NULL;
	size_t got = 0;
	int fd = -1, rv = -1;
	char why[256] = "";

	if (out)
		memset(out, 0, sizeof(*out));
	if (!path) {
		seterr(err, errlen, "no image file named");
		return -1;
	}
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0 || fstat(fd, &st) < 0) {
		seterr(err, errlen, "%s: %s", path, strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		seterr(err, errlen, "%s: not a regular file", path);
		goto out;
	}
	if (st.st_size > (off_t)SG_SEALIMG_MAX_FILE) {
		seterr(err, errlen, "%s: %lld bytes, more than a seal's image may be (%u)",
			path, (long long)st.st_size, SG_SEALIMG_MAX_FILE);
		goto out;
	}
	/* One byte more than the cap, to see a file that grew since fstat. */
	buf = malloc(SG_SEALIMG_MAX_FILE + 1);
	if (!buf) {
		seterr(err, errlen, "out of memory");
		goto out;
	}
	for (;;) {
		ssize_t n = read(fd, buf + got, SG_SEALIMG_MAX_FILE + 1 - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			seterr(err, errlen, "%s: %s", path, strerror(errno));
			goto out;
		}
		if (n == 0)
			break;
		got += (size_t)n;
		if (got > SG_SEALIMG_MAX_FILE) {
			seterr(err, errlen, "%s: more than a seal's image may be (%u bytes)",
				path, SG_SEALIMG_MAX_FILE);
			goto out;
		}
	}
	if (sg_sealimg_load_mem(buf, got, diameter, out, why, sizeof(why)) < 0) {
		seterr(err, errlen, "%s: %s", path, why);
		goto out;
	}
	rv = 0;
out:
	free(buf);
	if (fd >= 0)
		close(fd);
	return rv;
}

int sg_sealimg_write_png(const struct sg_image *img, const char *path,
	char *err, size_t errlen)
{
	cairo_surface_t *s;
	cairo_status_t st;
	unsigned char *data;
	int stride;

	if (!img || !img->rgba || !img->width || !img->height ||
	    img->width > SG_SEALIMG_MAX_SIDE || img->height > SG_SEALIMG_MAX_SIDE) {
		seterr(err, errlen, "no image to write");
		return -1;
	}
	s = cairo_image_surface_create(CAIRO_FORMAT_ARGB32, (int)img->width, (int)img->height);
	if (cairo_surface_status(s)) {
		cairo_surface_destroy(s);
		seterr(err, errlen, "out of memory");
		return -1;
	}
	cairo_surface_flush(s);
	data = cairo_image_surface_get_data(s);
	stride = cairo_image_surface_get_stride(s);
	for (uint32_t y = 0; y < img->height; y++) {
		uint32_t *row = (uint32_t *)(void *)(data + (size_t)y * (size_t)stride);
		const uint8_t *p = img->rgba + (size_t)y * img->stride;

		for (uint32_t x = 0; x < img->width; x++, p += 4) {
			unsigned a = p[3];

			row[x] = (uint32_t)a << 24 | ((p[0] * a + 127) / 255) << 16 |
				((p[1] * a + 127) / 255) << 8 | ((p[2] * a + 127) / 255);
		}
	}
	cairo_surface_mark_dirty(s);
	st = cairo_surface_write_to_png(s, path);
	cairo_surface_destroy(s);
	if (st != CAIRO_STATUS_SUCCESS) {
		seterr(err, errlen, "%s: %s", path, cairo_status_to_string(st));
		return -1;
	}
	return 0;
}
