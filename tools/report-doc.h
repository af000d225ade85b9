/*
 * The audit report as a document (sealctl report, docs/risk.md): its
 * sections, paragraphs, tables and bar charts, built once by
 * sealctl-risk.c and written either as XHTML with inline SVG
 * (sealctl-risk.c) or as PDF drawn with cairo (report-pdf.c), so that the
 * two forms say the same things.
 */
#ifndef SEALCTL_REPORT_DOC_H
#define SEALCTL_REPORT_DOC_H

#include <stdbool.h>
#include <stddef.h>

enum rdoc_kind { RB_SECTION, RB_H3, RB_P, RB_PRE, RB_TABLE, RB_CHART };

struct rdoc_block {
	enum rdoc_kind kind;
	char *id;                    /* RB_SECTION: its id */
	char *text;                  /* the title, the paragraph, the chart's title */
	const char *cls;             /* RB_P: "ok", "bad" or NULL */
	/* RB_TABLE: ncols × (nrows + 1) cells, the first row the header;
	 * left: the columns (besides the first) aligned left */
	size_t ncols, nrows, cap_rows;
	char **cells;
	unsigned left;
	/* RB_CHART */
	size_t n;
	char **labels;
	double *v;
};

struct rdoc {
	char *title;                 /* the document's title */
	char *site, *period;         /* the heading: "Seal audit report, site S, P" */
	bool many;                   /* site is several: "sites a, b" */
	char *intro;
	struct rdoc_block *b;
	size_t n, cap;
	bool oom;                    /* a block could not be added: do not write */
};

/* Each adds a block (on ENOMEM sets d->oom and adds nothing). Strings are
 * copied. */
void rdoc_section(struct rdoc *d, const char *id, const char *title);
void rdoc_h3(struct rdoc *d, const char *title);
void rdoc_p(struct rdoc *d, const char *cls, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void rdoc_pre(struct rdoc *d, const char *text);
/* A table of ncols columns whose header is the ncols strings given. */
void rdoc_table(struct rdoc *d, unsigned left, size_t ncols, ...);
void rdoc_table_v(struct rdoc *d, unsigned left, size_t ncols, const char *const *header);
/* A row of the last table: ncols printf formats' results, one a call
 * of rdoc_cell after rdoc_row. */
void rdoc_row(struct rdoc *d);
void rdoc_cell(struct rdoc *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void rdoc_chart(struct rdoc *d, const char *title, const char *const *labels, const double *v,
                size_t n);
void rdoc_free(struct rdoc *d);

/* Writes d as PDF (A4) to path: cairo, the text in a CJK font found by
 * fontconfig (fonts-wqy-zenhei), embedded. 0, or -1 with a message on
 * stderr. */
int rdoc_write_pdf(const struct rdoc *d, const char *path);

#endif
