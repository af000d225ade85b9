/*
 * sg_stamp_find_text (near.h): poppler-glib's text search. Its matches
 * come in points with the origin at the page's lower left (poppler-glib
 * flips them to PDF space), measured in the page's crop box, which for a
 * page without /CropBox is its /MediaBox, as sg_stamp_build measures.
 */
#include "near.h"

#include <stdio.h>
#include <glib.h>
#include <poppler.h>

int
sg_stamp_find_text(const uint8_t *pdf, size_t len, const char *text, int page, int *page_out,
                   double *x, double *y, char *err, size_t errlen)
{
	GBytes *bytes = g_bytes_new(pdf, len);
	GError *ge = NULL;
	PopplerDocument *doc = poppler_document_new_from_bytes(bytes, NULL, &ge);
	int n, rv = -1;

	if (doc == NULL) {
		snprintf(err, errlen, "poppler cannot read it: %s", ge ? ge->message : "?");
		goto out;
	}
	n = poppler_document_get_n_pages(doc);
	for (int i = page ? page - 1 : 0; i < (page ? page : n) && i < n && rv < 0; i++) {
		PopplerPage *pg = poppler_document_get_page(doc, i);
		GList *found = pg ? poppler_page_find_text(pg, text) : NULL;

		if (found != NULL) {
			PopplerRectangle *r = found->data;
			*x = (r->x1 + r->x2) / 2;
			*y = (r->y1 + r->y2) / 2;
			*page_out = i + 1;
			rv = 0;
		}
		g_list_free_full(found, (GDestroyNotify)poppler_rectangle_free);
		if (pg)
			g_object_unref(pg);
	}
	if (rv < 0)
		snprintf(err, errlen, "\"%s\" is not on %s", text, page ? "that page" : "any page");
out:
	if (ge)
		g_error_free(ge);
	if (doc)
		g_object_unref(doc);
	g_bytes_unref(bytes);
	return rv;
}
