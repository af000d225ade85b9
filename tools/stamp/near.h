/*
 * Where a text is on a PDF's pages, for `sealctl stamp --near TEXT`
 * (docs/stamp.md): poppler-glib finds the text's box.
 */
#ifndef SG_STAMP_NEAR_H
#define SG_STAMP_NEAR_H

#include <stddef.h>
#include <stdint.h>

/* The centre of the first place text is found on page (1-based; 0: the
 * first page that has it), in points from the page's lower left; the page
 * in *page_out. 0, or -1 with err (not found, not a PDF). */
int sg_stamp_find_text(const uint8_t *pdf, size_t len, const char *text, int page, int *page_out,
                       double *x, double *y, char *err, size_t errlen);

#endif
