/*
 * The audit report as a document (report-doc.h): the blocks sealctl-risk.c
 * builds, and their PDF form, drawn with cairo on A4 pages: headings,
 * wrapped paragraphs, tables whose rows wrap and break across pages, and
 * the bar charts in the HTML form's colour. The text is laid out by cairo
 * alone (no shaping is needed for Latin or Chinese text) in a font
 * fontconfig finds for Chinese (fonts-wqy-zenhei), embedded by cairo.
 */
#include "report-doc.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cairo.h>
#include <cairo-ft.h>
#include <cairo-pdf.h>
#include <fontconfig/fontconfig.h>

/* ---- building ---- */

static struct rdoc_block *
add(struct rdoc *d, enum rdoc_kind kind)
{
	struct rdoc_block *b;

	if (d->oom)
		return NULL;
	if (d->n == d->cap) {
		size_t cap = d->cap ? d->cap * 2 : 32;
		b = realloc(d->b, cap * sizeof(*b));
		if (b == NULL) {
			d->oom = true;
			return NULL;
		}
		d->b = b;
		d->cap = cap;
	}
	b = &d->b[d->n++];
	memset(b, 0, sizeof(*b));
	b->kind = kind;
	return b;
}

static char *
vfmt(struct rdoc *d, const char *fmt, va_list ap)
{
	char *s = NULL;

	if (vasprintf(&s, fmt, ap) < 0) {
		d->oom = true;
		return NULL;
	}
	return s;
}

static char *
dup(struct rdoc *d, const char *s)
{
	char *c = strdup(s ? s : "");

	if (c == NULL)
		d->oom = true;
	return c;
}

void
rdoc_section(struct rdoc *d, const char *id, const char *title)
{
	struct rdoc_block *b = add(d, RB_SECTION);

	if (b) {
		b->id = dup(d, id);
		b->text = dup(d, title);
	}
}

void
rdoc_h3(struct rdoc *d, const char *title)
{
	struct rdoc_block *b = add(d, RB_H3);

	if (b)
		b->text = dup(d, title);
}

void
rdoc_p(struct rdoc *d, const char *cls, const char *fmt, ...)
{
	struct rdoc_block *b = add(d, RB_P);
	va_list ap;

	if (b == NULL)
		return;
	b->cls = cls;
	va_start(ap, fmt);
	b->text = vfmt(d, fmt, ap);
	va_end(ap);
}

void
rdoc_pre(struct rdoc *d, const char *text)
{
	struct rdoc_block *b = add(d, RB_PRE);

	if (b)
		b->text = dup(d, text);
}

void
rdoc_table(struct rdoc *d, unsigned left, size_t ncols, ...)
{
	struct rdoc_block *b = add(d, RB_TABLE);
	va_list ap;

	if (b == NULL)
		return;
	b->ncols = ncols;
	b->left = left;
	b->cap_rows = 8;
	if ((b->cells = calloc(ncols * (b->cap_rows + 1), sizeof(char *))) == NULL) {
		d->oom = true;
		return;
	}
	va_start(ap, ncols);
	for (size_t i = 0; i < ncols; i++)
		b->cells[i] = dup(d, va_arg(ap, const char *));
	va_end(ap);
}

void
rdoc_table_v(struct rdoc *d, unsigned left, size_t ncols, const char *const *header)
{
	struct rdoc_block *b = add(d, RB_TABLE);

	if (b == NULL)
		return;
	b->ncols = ncols;
	b->left = left;
	b->cap_rows = 8;
	if ((b->cells = calloc(ncols * (b->cap_rows + 1), sizeof(char *))) == NULL) {
		d->oom = true;
		return;
	}
	for (size_t i = 0; i < ncols; i++)
		b->cells[i] = dup(d, header[i]);
}

static struct rdoc_block *
last_table(struct rdoc *d)
{
	for (size_t i = d->n; i > 0; i--)
		if (d->b[i - 1].kind == RB_TABLE)
			return &d->b[i - 1];
	return NULL;
}

void
rdoc_row(struct rdoc *d)
{
	struct rdoc_block *b = last_table(d);
	char **c;

	if (d->oom || b == NULL || b->cells == NULL)
		return;
	if (b->nrows == b->cap_rows) {
		size_t cap = b->cap_rows * 2;
		if ((c = realloc(b->cells, b->ncols * (cap + 1) * sizeof(*c))) == NULL) {
			d->oom = true;
			return;
		}
		memset(c + b->ncols * (b->cap_rows + 1), 0, b->ncols * (cap - b->cap_rows) * sizeof(*c));
		b->cells = c;
		b->cap_rows = cap;
	}
	b->nrows++;
}

void
rdoc_cell(struct rdoc *d, const char *fmt, ...)
{
	struct rdoc_block *b = last_table(d);
	char **row;
	va_list ap;

	if (d->oom || b == NULL || b->cells == NULL || b->nrows == 0)
		return;
	row = b->cells + b->ncols * b->nrows;
	for (size_t i = 0; i < b->ncols; i++)
		if (row[i] == NULL) {
			va_start(ap, fmt);
			row[i] = vfmt(d, fmt, ap);
			va_end(ap);
			return;
		}
}

void
rdoc_chart(struct rdoc *d, const char *title, const char *const *labels, const double *v,
           size_t n)
{
	struct rdoc_block *b = add(d, RB_CHART);

	if (b == NULL)
		return;
	b->text = dup(d, title);
	b->n = n;
	b->labels = calloc(n + 1, sizeof(*b->labels));
	b->v = calloc(n + 1, sizeof(*b->v));
	if (b->labels == NULL || b->v == NULL) {
		d->oom = true;
		return;
	}
	for (size_t i = 0; i < n; i++) {
		b->labels[i] = dup(d, labels[i]);
		b->v[i] = v[i];
	}
}

void
rdoc_free(struct rdoc *d)
{
	for (size_t i = 0; i < d->n; i++) {
		struct rdoc_block *b = &d->b[i];
		free(b->id);
		free(b->text);
		for (size_t k = 0; b->cells && k < b->ncols * (b->cap_rows + 1); k++)
			free(b->cells[k]);
		free(b->cells);
		for (size_t k = 0; b->labels && k < b->n; k++)
			free(b->labels[k]);
		free(b->labels);
		free(b->v);
	}
	free(d->b);
	free(d->title);
	free(d->site);
	free(d->period);
	free(d->intro);
	memset(d, 0, sizeof(*d));
}

/* ---- the PDF ---- */

#define PAGE_W   595.0        /* A4, points */
#define PAGE_H   842.0
#define MARGIN   48.0
#define BODY_PT  9.0
#define TABLE_PT 7.5
#define LINE     1.35         /* line height, times the font size */
#define BAR_R    (0x4a / 255.0)   /* the HTML form's #4a78b5 */
#define BAR_G    (0x78 / 255.0)
#define BAR_B    (0xb5 / 255.0)

struct pdf {
	cairo_t *cr;
	double y;
	int page;
};

static void
pdf_newpage(struct pdf *p)
{
	cairo_show_page(p->cr);
	p->page++;
	p->y = MARGIN;
}

/* Room for h more points on this page, or a new one. */
static void
pdf_room(struct pdf *p, double h)
{
	if (p->y + h > PAGE_H - MARGIN)
		pdf_newpage(p);
}

/* The byte length of the UTF-8 sequence at s. */
static size_t
u8len(const char *s)
{
	unsigned char c = (unsigned char)*s;

	if (c < 0x80)
		return 1;
	if ((c & 0xe0) == 0xc0 && s[1])
		return 2;
	if ((c & 0xf0) == 0xe0 && s[1] && s[2])
		return 3;
	if ((c & 0xf8) == 0xf0 && s[1] && s[2] && s[3])
		return 4;
	return 1;
}

static double
text_w(cairo_t *cr, const char *s, size_t n)
{
	cairo_text_extents_t e;
	char buf[1024];

	if (n >= sizeof(buf))
		n = sizeof(buf) - 1;
	memcpy(buf, s, n);
	buf[n] = '\0';
	cairo_text_extents(cr, buf, &e);
	return e.x_advance;
}

/* The length of the first line of s that fits in width w: at a space
 * when there is one, else at a character (Chinese has no spaces); at
 * least one character; a newline ends a line. */
static size_t
fit(cairo_t *cr, const char *s, double w)
{
	size_t i = 0, brk = 0;

	while (s[i] && s[i] != '\n') {
		size_t k = u8len(s + i);
		if (i > 0 && text_w(cr, s, i + k) > w)
			return brk ? brk : i;
		i += k;
		if (s[i] == ' ')
			brk = i;
		if (i >= 1000)
			return brk ? brk : i;
	}
	return i;
}

/* Lines of s in width w (counted, and drawn at x from p->y when draw). */
static int
wrap(struct pdf *p, const char *s, double x, double w, double pt, bool draw, double right_w)
{
	int lines = 0;

	while (1) {
		size_t n = fit(p->cr, s, w);
		if (draw) {
			char buf[1024];
			size_t m = n < sizeof(buf) ? n : sizeof(buf) - 1;
			memcpy(buf, s, m);
			buf[m] = '\0';
			/* right_w: aligned right in a column that wide */
			cairo_move_to(p->cr, right_w > 0 ? x + right_w - text_w(p->cr, s, n) : x,
			              p->y + pt * (lines + 1) * LINE - pt * (LINE - 1) / 2);
			cairo_show_text(p->cr, buf);
		}
		lines++;
		s += n;
		while (*s == ' ')
			s++;
		if (*s == '\n')
			s++;
		if (*s == '\0')
			break;
	}
	return lines;
}

static void
pdf_text(struct pdf *p, const char *s, double pt, double r, double g, double b)
{
	double w = PAGE_W - 2 * MARGIN;
	int lines;

	cairo_set_font_size(p->cr, pt);
	lines = wrap(p, s, MARGIN, w, pt, false, 0);
	/* A paragraph longer than a page is drawn line by line. */
	if (lines * pt * LINE > PAGE_H - 2 * MARGIN) {
		const char *q = s;
		while (*q) {
			size_t n = fit(p->cr, q, w);
			char *one = strndup(q, n);
			if (one == NULL)
				return;
			pdf_room(p, pt * LINE);
			cairo_set_source_rgb(p->cr, r, g, b);
			wrap(p, one, MARGIN, w, pt, true, 0);
			free(one);
			p->y += pt * LINE;
			q += n;
			while (*q == ' ' || *q == '\n')
				q++;
		}
	} else {
		pdf_room(p, lines * pt * LINE);
		cairo_set_source_rgb(p->cr, r, g, b);
		wrap(p, s, MARGIN, w, pt, true, 0);
		p->y += lines * pt * LINE;
	}
	p->y += pt * 0.6;
}

static void
pdf_table(struct pdf *p, const struct rdoc_block *b)
{
	double total = PAGE_W - 2 * MARGIN, want[32] = { 0 }, cw[32], sum = 0, pad = 3;
	size_t nc = b->ncols < 32 ? b->ncols : 32;

	cairo_set_font_size(p->cr, TABLE_PT);
	/* Columns as wide as their longest cell, narrowed in proportion when
	 * the table is wider than the page. */
	for (size_t r = 0; r <= b->nrows; r++)
		for (size_t c = 0; c < nc; c++) {
			const char *s = b->cells[r * b->ncols + c];
			double w = s ? text_w(p->cr, s, strlen(s)) + 2 * pad : 0;
			if (w > want[c])
				want[c] = w;
		}
	for (size_t c = 0; c < nc; c++)
		sum += want[c];
	/* Too wide: the narrow columns keep their width while they are
	 * within an even share of what is left (a rule's name, a time stay
	 * on one line); the widest share the rest by their width (the why
	 * and the evidence wrap). */
	for (size_t c = 0; c < nc; c++)
		cw[c] = want[c];
	if (sum > total) {
		double left = total, rest = 0;
		size_t k = nc;
		bool fixed[32] = { false }, grew = true;
		while (grew && k > 0) {
			grew = false;
			for (size_t c = 0; c < nc; c++)
				if (!fixed[c] && want[c] <= left / (double)k) {
					fixed[c] = true;
					left -= want[c];
					k--;
					grew = true;
				}
		}
		for (size_t c = 0; c < nc; c++)
			if (!fixed[c])
				rest += want[c];
		for (size_t c = 0; c < nc; c++)
			if (!fixed[c])
				cw[c] = want[c] * left / rest;
		sum = total;
	}
	for (size_t r = 0; r <= b->nrows; r++) {
		int lines = 1;
		double x = MARGIN, h;
		for (size_t c = 0; c < nc; c++) {
			const char *s = b->cells[r * b->ncols + c];
			int l = s ? wrap(p, s, 0, cw[c] - 2 * pad, TABLE_PT, false, 0) : 1;
			if (l > lines)
				lines = l;
		}
		h = lines * TABLE_PT * LINE + 2;
		pdf_room(p, h);
		if (r == 0) {
			cairo_set_source_rgb(p->cr, 0.9, 0.9, 0.9);
			cairo_rectangle(p->cr, MARGIN, p->y, sum, h);
			cairo_fill(p->cr);
		}
		for (size_t c = 0; c < nc; c++) {
			const char *s = b->cells[r * b->ncols + c];
			bool left = c == 0 || r == 0 || (b->left & (1u << c));
			cairo_set_source_rgb(p->cr, 0.73, 0.73, 0.73);
			cairo_set_line_width(p->cr, 0.5);
			cairo_rectangle(p->cr, x, p->y, cw[c], h);
			cairo_stroke(p->cr);
			cairo_set_source_rgb(p->cr, 0, 0, 0);
			p->y += 1;
			if (s)
				wrap(p, s, x + pad, cw[c] - 2 * pad, TABLE_PT, true,
				     left ? 0 : cw[c] - 2 * pad);
			p->y -= 1;
			x += cw[c];
		}
		p->y += h;
	}
	p->y += BODY_PT;
}

static void
pdf_chart(struct pdf *p, const struct rdoc_block *b)
{
	const double w = PAGE_W - 2 * MARGIN, h = 140, left = 30, bottom = 40;
	double max = 1, bw, y0;
	char num[32];

	for (size_t i = 0; i < b->n; i++)
		if (b->v[i] > max)
			max = b->v[i];
	bw = b->n ? (w - left - 10) / (double)b->n : 0;
	pdf_room(p, h + bottom + BODY_PT * 2);
	y0 = p->y + h;
	cairo_set_source_rgb(p->cr, 0.2, 0.2, 0.2);
	cairo_set_line_width(p->cr, 0.8);
	cairo_move_to(p->cr, MARGIN + left, y0);
	cairo_line_to(p->cr, MARGIN + w - 10, y0);
	cairo_stroke(p->cr);
	cairo_set_font_size(p->cr, 8);
	snprintf(num, sizeof(num), "%.0f", max);
	cairo_move_to(p->cr, MARGIN, p->y + 10);
	cairo_show_text(p->cr, num);
	for (size_t i = 0; i < b->n; i++) {
		double bh = (h - 20) * b->v[i] / max, x = MARGIN + left + (double)i * bw;
		cairo_set_source_rgb(p->cr, BAR_R, BAR_G, BAR_B);
		cairo_rectangle(p->cr, x + 1, y0 - bh, bw > 2 ? bw - 2 : bw, bh);
		cairo_fill(p->cr);
		if (b->v[i] > 0 && bw >= 14) {
			snprintf(num, sizeof(num), "%.0f", b->v[i]);
			cairo_set_source_rgb(p->cr, 0, 0, 0);
			cairo_set_font_size(p->cr, 6);
			cairo_move_to(p->cr, x + 2, y0 - bh - 2);
			cairo_show_text(p->cr, num);
		}
		if (b->n <= 12 || i % 5 == 0) {
			cairo_save(p->cr);
			cairo_set_source_rgb(p->cr, 0, 0, 0);
			cairo_set_font_size(p->cr, 7);
			cairo_move_to(p->cr, x + 2, y0 + 9);
			cairo_rotate(p->cr, 0.785398);
			cairo_show_text(p->cr, b->labels[i]);
			cairo_restore(p->cr);
		}
	}
	p->y = y0 + bottom;
}

/* The font: fontconfig's choice for Chinese text (fonts-wqy-zenhei on
 * Debian), so that names and departments written in Chinese show. */
static cairo_font_face_t *
cjk_face(FcPattern **keep)
{
	FcPattern *pat = FcPatternCreate(), *match = NULL;
	FcResult res;
	cairo_font_face_t *face = NULL;

	*keep = NULL;
	if (pat == NULL)
		return NULL;
	if (!FcPatternAddString(pat, FC_FAMILY, (const FcChar8 *)"WenQuanYi Zen Hei") ||
	    !FcPatternAddString(pat, FC_LANG, (const FcChar8 *)"zh-cn") ||
	    !FcPatternAddBool(pat, FC_SCALABLE, FcTrue))
		goto out;
	FcConfigSubstitute(NULL, pat, FcMatchPattern);
	FcDefaultSubstitute(pat);
	if ((match = FcFontMatch(NULL, pat, &res)) == NULL)
		goto out;
	face = cairo_ft_font_face_create_for_pattern(match);
	if (cairo_font_face_status(face) != CAIRO_STATUS_SUCCESS) {
		cairo_font_face_destroy(face);
		face = NULL;
		goto out;
	}
	*keep = match;
	match = NULL;
out:
	if (match)
		FcPatternDestroy(match);
	FcPatternDestroy(pat);
	return face;
}

int
rdoc_write_pdf(const struct rdoc *d, const char *path)
{
	cairo_surface_t *s = NULL;
	cairo_font_face_t *face = NULL;
	FcPattern *fpat = NULL;
	struct pdf p = { .y = MARGIN, .page = 1 };
	char *head = NULL;
	int rv = -1;

	if ((face = cjk_face(&fpat)) == NULL) {
		fprintf(stderr, "sealctl: no font for the PDF report found by fontconfig "
		        "(install fonts-wqy-zenhei)\n");
		goto out;
	}
	s = cairo_pdf_surface_create(path, PAGE_W, PAGE_H);
	if (cairo_surface_status(s) != CAIRO_STATUS_SUCCESS) {
		fprintf(stderr, "sealctl: %s: %s\n", path,
		        cairo_status_to_string(cairo_surface_status(s)));
		goto out;
	}
	cairo_pdf_surface_set_metadata(s, CAIRO_PDF_METADATA_TITLE, d->title ? d->title : "");
	cairo_pdf_surface_set_metadata(s, CAIRO_PDF_METADATA_CREATOR, "sealctl report");
	p.cr = cairo_create(s);
	cairo_set_font_face(p.cr, face);
	if (asprintf(&head, "Seal audit report, %s%s%s%s", d->site ? d->many ? "sites " : "site " : "",
	             d->site ? d->site : "", d->site ? ", " : "", d->period ? d->period : "") < 0) {
		head = NULL;
		goto out;
	}
	pdf_text(&p, head, 16, 0, 0, 0);
	if (d->intro)
		pdf_text(&p, d->intro, BODY_PT, 0, 0, 0);
	for (size_t i = 0; i < d->n; i++) {
		const struct rdoc_block *b = &d->b[i];
		switch (b->kind) {
		case RB_SECTION:
			pdf_room(&p, 13 * LINE * 3);   /* not a heading alone at a page's foot */
			p.y += 6;
			pdf_text(&p, b->text, 13, 0, 0, 0);
			break;
		case RB_H3:
			pdf_room(&p, 11 * LINE * 3);
			pdf_text(&p, b->text, 11, 0, 0, 0);
			break;
		case RB_P:
			if (b->cls && !strcmp(b->cls, "bad"))
				pdf_text(&p, b->text, BODY_PT + 1, 0.7, 0, 0);
			else if (b->cls && !strcmp(b->cls, "ok"))
				pdf_text(&p, b->text, BODY_PT + 1, 0, 0.44, 0);
			else
				pdf_text(&p, b->text, BODY_PT, 0, 0, 0);
			break;
		case RB_PRE:
			pdf_text(&p, b->text, TABLE_PT, 0.25, 0.25, 0.25);
			break;
		case RB_TABLE:
			pdf_table(&p, b);
			break;
		case RB_CHART:
			pdf_chart(&p, b);
			break;
		}
	}
	cairo_show_page(p.cr);
	cairo_surface_finish(s);
	if (cairo_surface_status(s) != CAIRO_STATUS_SUCCESS || cairo_status(p.cr) != CAIRO_STATUS_SUCCESS) {
		fprintf(stderr, "sealctl: writing %s: %s\n", path,
		        cairo_status_to_string(cairo_status(p.cr)));
		goto out;
	}
	rv = 0;
out:
	free(head);
	if (p.cr)
		cairo_destroy(p.cr);
	if (s)
		cairo_surface_destroy(s);
	if (face)
		cairo_font_face_destroy(face);
	if (fpat)
		FcPatternDestroy(fpat);
	return rv;
}
