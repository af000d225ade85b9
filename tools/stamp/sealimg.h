/*
 * The seal's image: the standard round red Chinese seal drawn from the
 * seal's data (cairo, a CJK font found through fontconfig), or a PNG/SVG
 * named in the policy, loaded with limits since that file is input.
 */
#ifndef SG_SEALIMG_H
#define SG_SEALIMG_H

#include <stddef.h>
#include <stdint.h>

/* 42 mm at about 360 dpi. */
#define SG_SEALIMG_DEFAULT_DIAMETER 600u
#define SG_SEALIMG_MIN_DIAMETER     32u
#define SG_SEALIMG_MAX_DIAMETER     4096u
/* The seal red (#E60012). */
#define SG_SEALIMG_DEFAULT_COLOR    "#E60012"
/* What a drawn seal's texts may hold, in characters (not bytes). */
#define SG_SEALIMG_MAX_COMPANY      40u
#define SG_SEALIMG_MAX_KIND         12u
#define SG_SEALIMG_MAX_CODE         24u
/* A policy's image file: at most this many bytes, and a PNG of at most
 * this many pixels (and this width or height) before it is decoded. */
#define SG_SEALIMG_MAX_FILE         (4u * 1024 * 1024)
#define SG_SEALIMG_MAX_SIDE         8192u
#define SG_SEALIMG_MAX_PIXELS       (4096u * 4096u)

/* An image: width x height pixels, rows top to bottom, 4 bytes a pixel
 * R, G, B, A, 8 bits each, NOT premultiplied (straight alpha: a pixel's
 * colour is its own whatever its alpha, as a PDF image and its /SMask
 * want it). stride = width * 4. */
struct sg_image {
	uint32_t width;
	uint32_t height;
	size_t stride;
	uint8_t *rgba;
};

struct sg_sealimg_spec {
	const char *company;    /* UTF-8, around the upper arc; required */
	const char *kind;       /* UTF-8, straight across below the star
	                         * (合同专用章…); NULL or "" = the official seal */
	const char *code;       /* optional number along the bottom arc */
	unsigned diameter;      /* pixels; 0 = SG_SEALIMG_DEFAULT_DIAMETER */
	const char *color;      /* "#RRGGBB"; NULL = SG_SEALIMG_DEFAULT_COLOR */
	const char *font;       /* fontconfig family; NULL = any CJK sans */
};

/* Draws the round seal into out (diameter x diameter, transparent outside
 * the ring). 0, or -1 with a reason in err (a missing CJK font says so). */
int sg_sealimg_render(const struct sg_sealimg_spec *spec, struct sg_image *out,
	char *err, size_t errlen);

/* Loads a PNG or an SVG (plain, not gzipped; no external references) and
 * scales it, aspect kept and centred, into a diameter x diameter square
 * (0 = the default). Refuses a file over SG_SEALIMG_MAX_FILE, a PNG over
 * SG_SEALIMG_MAX_SIDE / SG_SEALIMG_MAX_PIXELS and anything corrupt. */
int sg_sealimg_load(const char *path, unsigned diameter, struct sg_image *out,
	char *err, size_t errlen);
/* The same from bytes in memory (what was read from path). */
int sg_sealimg_load_mem(const uint8_t *data, size_t len, unsigned diameter,
	struct sg_image *out, char *err, size_t errlen);

/* The kind text of a kind name: "contract" 合同专用章, "finance" 财务专用章,
 * "invoice" 发票专用章, "official" NULL (none); any other text as is. */
const char *sg_sealimg_kind_text(const char *kind);

/* Writes img as a PNG file. */
int sg_sealimg_write_png(const struct sg_image *img, const char *path,
	char *err, size_t errlen);

/* Frees the pixels and zeroes img; safe on a zeroed image. */
void sg_image_clear(struct sg_image *img);

#endif
