/*
 * The incremental update of `sealctl stamp` (pdfstamp.h). The input is
 * read with qpdf (its C API: the catalog, the page, existing annotations
 * and form fields, the trailer's /Size and /ID); the update is written
 * here, objects in text with a classic xref section and a trailer whose
 * /Prev is the input's last startxref.
 */
#include "pdfstamp.h"
#include "pdfimg.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <openssl/cms.h>
#include <openssl/x509.h>
#include <qpdf/qpdf-c.h>

/* A growing byte buffer. */
struct out {
	char *p;
	size_t len, cap;
	bool failed;
};

static void
put(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
putn(struct out *o, const char *s, size_t n)
{
	if (o->failed)
		return;
	if (o->len + n + 1 > o->cap) {
		size_t cap = o->cap ? o->cap : 4096;
		char *p;
		while (cap < o->len + n + 1)
			cap *= 2;
		if ((p = realloc(o->p, cap)) == NULL) {
			o->failed = true;
			return;
		}
		o->p = p;
		o->cap = cap;
	}
	memcpy(o->p + o->len, s, n);
	o->len += n;
	o->p[o->len] = '\0';
}

static void
put(struct out *o, const char *fmt, ...)
{
	va_list ap;
	char small[512], *big = NULL;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(small, sizeof(small), fmt, ap);
	va_end(ap);
	if (n < 0) {
		o->failed = true;
		return;
	}
	if ((size_t)n < sizeof(small)) {
		putn(o, small, (size_t)n);
		return;
	}
	if ((big = malloc((size_t)n + 1)) == NULL) {
		o->failed = true;
		return;
	}
	va_start(ap, fmt);
	vsnprintf(big, (size_t)n + 1, fmt, ap);
	va_end(ap);
	putn(o, big, (size_t)n);
	free(big);
}

/* A PDF literal string of s: ( ) \ escaped, bytes kept (UTF-8 text goes
 * as a UTF-16BE string with its BOM, which every reader shows). */
static void
put_text(struct out *o, const char *s)
{
	bool ascii = true;

	for (const unsigned char *c = (const unsigned char *)s; *c; c++)
		if (*c >= 0x80 || *c < 0x20)
			ascii = false;
	if (ascii) {
		putn(o, "(", 1);
		for (const char *c = s; *c; c++) {
			if (*c == '(' || *c == ')' || *c == '\\')
				putn(o, "\\", 1);
			putn(o, c, 1);
		}
		putn(o, ")", 1);
		return;
	}
	/* UTF-8 to UTF-16BE, as a hex string; a bad sequence becomes U+FFFD. */
	put(o, "<FEFF");
	for (const unsigned char *c = (const unsigned char *)s; *c;) {
		unsigned cp = 0xfffd, n = 1;
		if (*c < 0x80) {
			cp = *c;
		} else if ((*c & 0xe0) == 0xc0 && (c[1] & 0xc0) == 0x80) {
			cp = (unsigned)(*c & 0x1f) << 6 | (c[1] & 0x3f);
			n = 2;
		} else if ((*c & 0xf0) == 0xe0 && (c[1] & 0xc0) == 0x80 && (c[2] & 0xc0) == 0x80) {
			cp = (unsigned)(*c & 0x0f) << 12 | (unsigned)(c[1] & 0x3f) << 6 | (c[2] & 0x3f);
			n = 3;
		} else if ((*c & 0xf8) == 0xf0 && (c[1] & 0xc0) == 0x80 && (c[2] & 0xc0) == 0x80 &&
		           (c[3] & 0xc0) == 0x80) {
			cp = (unsigned)(*c & 0x07) << 18 | (unsigned)(c[1] & 0x3f) << 12 |
			     (unsigned)(c[2] & 0x3f) << 6 | (c[3] & 0x3f);
			n = 4;
		}
		if (cp >= 0x10000) {
			cp -= 0x10000;
			put(o, "%04X%04X", 0xd800 + (cp >> 10), 0xdc00 + (cp & 0x3ff));
		} else {
			put(o, "%04X", cp);
		}
		c += n;
	}
	put(o, ">");
}

int
sg_stamp_appearance(double size, char **ops, size_t *ops_len, char **resources)
{
	/* A ring of width w inside the box and a five-pointed star at its
	 * centre, in the seal's red: four Bézier quarters per circle. */
	const double k = 0.5523, c = size / 2, w = size * 0.045;
	double r = c - w / 2;
	struct out o = { 0 };

	put(&o, "q 0.85 0.05 0.05 RG 0.85 0.05 0.05 rg %.2f w\n", w);
	put(&o, "%.2f %.2f m\n", c + r, c);
	put(&o, "%.2f %.2f %.2f %.2f %.2f %.2f c\n", c + r, c + k * r, c + k * r, c + r, c, c + r);
	put(&o, "%.2f %.2f %.2f %.2f %.2f %.2f c\n", c - k * r, c + r, c - r, c + k * r, c - r, c);
	put(&o, "%.2f %.2f %.2f %.2f %.2f %.2f c\n", c - r, c - k * r, c - k * r, c - r, c, c - r);
	put(&o, "%.2f %.2f %.2f %.2f %.2f %.2f c\n", c + k * r, c - r, c + r, c - k * r, c + r, c);
	put(&o, "S\n");
	for (int i = 0; i < 10; i++) {
		double a = M_PI / 2 + i * M_PI / 5, rr = i % 2 ? size * 0.09 : size * 0.22;
		put(&o, "%.2f %.2f %s\n", c + rr * cos(a), c + rr * sin(a), i ? "l" : "m");
	}
	put(&o, "h f Q\n");
	if (o.failed) {
		free(o.p);
		return -1;
	}
	*ops = o.p;
	*ops_len = o.len;
	*resources = strdup("");
	return *resources ? 0 : -1;
}

/* The input's last startxref: the number after the last "startxref" in
 * its final 1024 bytes. */
static long long
last_startxref(const uint8_t *in, size_t len)
{
	size_t from = len > 1024 ? len - 1024 : 0;
	long long v = -1;

	for (size_t i = from; i + 9 <= len; i++) {
		if (memcmp(in + i, "startxref", 9) == 0) {
			size_t j = i + 9;
			long long n = 0;
			bool digits = false;
			while (j < len && (in[j] == ' ' || in[j] == '\r' || in[j] == '\n'))
				j++;
			while (j < len && in[j] >= '0' && in[j] <= '9' && n < 1000000000000LL) {
				n = n * 10 + (in[j++] - '0');
				digits = true;
			}
			if (digits)
				v = n;
		}
	}
	return v;
}

/* The unparsed dictionary d without its final ">>", so keys can follow. */
static int
put_dict_open(struct out *o, const char *d)
{
	size_t n = strlen(d);

	while (n > 0 && (d[n - 1] == ' ' || d[n - 1] == '\n'))
		n--;
	if (n < 4 || memcmp(d, "<<", 2) != 0 || memcmp(d + n - 2, ">>", 2) != 0)
		return -1;
	putn(o, d, n - 2);
	return 0;
}

/* A page's box (its own /MediaBox or its nearest ancestor's). */
static int
media_box(qpdf_data q, qpdf_oh page, double box[4])
{
	qpdf_oh p = page;

	for (int depth = 0; depth < 32; depth++) {
		qpdf_oh mb = qpdf_oh_get_key(q, p, "/MediaBox");
		if (qpdf_oh_is_array(q, mb) && qpdf_oh_get_array_n_items(q, mb) == 4) {
			for (int i = 0; i < 4; i++)
				box[i] = qpdf_oh_get_numeric_value(q, qpdf_oh_get_array_item(q, mb, i));
			return 0;
		}
		p = qpdf_oh_get_key(q, p, "/Parent");
		if (!qpdf_oh_is_dictionary(q, p))
			break;
	}
	return -1;
}

int
sg_stamp_build(const uint8_t *in, size_t len, const struct sg_stamp_place *place,
               const struct sg_stamp_text *text, struct sg_stamp_update *out, char *err,
               size_t errlen)
{
	qpdf_data q = qpdf_init();
	qpdf_oh root, trailer, page, annots, acro, fields, id;
	struct out o = { 0 };
	long long prev;
	int size, npages, pg, sig, wid, ap, page_id, page_gen, root_id, root_gen;
	double box[4], x, y, half = SG_STAMP_SIZE / 2;
	char *ops = NULL, *res = NULL, when[32];
	size_t ops_len = 0, at[7];
	int ids[7], gens[7], nobj = 0, img = 0, smask = 0, last;
	struct sg_pdfimg pi = { 0 };
	uint8_t *ob = NULL;
	size_t oblen = 0;
	time_t now = time(NULL);
	struct tm tm;
	int rv = -1;

	memset(out, 0, sizeof(*out));
	qpdf_silence_errors(q);
	if (qpdf_read_memory(q, "input", (const char *)in, (unsigned long long)len, NULL) & QPDF_ERRORS) {
		snprintf(err, errlen, "not a PDF qpdf can read: %s",
		         qpdf_has_error(q) ? qpdf_get_error_full_text(q, qpdf_get_error(q)) : "?");
		goto out;
	}
	if (qpdf_is_encrypted(q)) {
		snprintf(err, errlen, "an encrypted PDF cannot be stamped");
		goto out;
	}
	if ((prev = last_startxref(in, len)) < 0 || (unsigned long long)prev >= len) {
		snprintf(err, errlen, "no startxref at the end of the file");
		goto out;
	}
	root = qpdf_get_root(q);
	trailer = qpdf_get_trailer(q);
	size = (int)qpdf_oh_get_numeric_value(q, qpdf_oh_get_key(q, trailer, "/Size"));
	npages = qpdf_get_num_pages(q);
	if (!qpdf_oh_is_dictionary(q, root) || !qpdf_oh_is_indirect(q, root) || size < 1 ||
	    npages < 1) {
		snprintf(err, errlen, "the PDF has no catalog, no /Size or no page");
		goto out;
	}
	pg = place->page == 0 ? npages : place->page;
	if (pg < 1 || pg > npages) {
		snprintf(err, errlen, "no page %d: the PDF has %d", pg, npages);
		goto out;
	}
	page = qpdf_get_page_n(q, (size_t)pg - 1);
	if (media_box(q, page, box) < 0) {
		snprintf(err, errlen, "page %d has no /MediaBox", pg);
		goto out;
	}
	/* By default the seal goes low on the right, as a signature does. */
	x = place->at_set ? box[0] + place->x : box[2] - half - 72;
	y = place->at_set ? box[1] + place->y : box[1] + half + 72;
	/* A seal over a text near the edge goes as near as fits. */
	if (place->clamp && box[2] - box[0] >= 2 * half && box[3] - box[1] >= 2 * half) {
		x = x < box[0] + half ? box[0] + half : x > box[2] - half ? box[2] - half : x;
		y = y < box[1] + half ? box[1] + half : y > box[3] - half ? box[3] - half : y;
	}
	if (x - half < box[0] || x + half > box[2] || y - half < box[1] || y + half > box[3]) {
		snprintf(err, errlen, "a seal of %.0f pt at %.0f,%.0f does not fit on page %d "
		         "(%.0f × %.0f pt)", SG_STAMP_SIZE, x - box[0], y - box[1], pg,
		         box[2] - box[0], box[3] - box[1]);
		goto out;
	}
	out->rect[0] = x - half;
	out->rect[1] = y - half;
	out->rect[2] = x + half;
	out->rect[3] = y + half;
	out->page = pg;
	page_id = qpdf_oh_get_object_id(q, page);
	page_gen = qpdf_oh_get_generation(q, page);
	root_id = qpdf_oh_get_object_id(q, root);
	root_gen = qpdf_oh_get_generation(q, root);
	sig = size;
	wid = size + 1;
	ap = size + 2;
	last = ap;
	if (text->image != NULL) {
		img = size + 3;
		smask = size + 4;
		last = smask;
		if (sg_pdfimg_objects(text->image, &pi, err, errlen) < 0)
			goto out;
	} else if (sg_stamp_appearance(SG_STAMP_SIZE, &ops, &ops_len, &res) < 0) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}

	put(&o, "\n");
	/* The /Sig dictionary: /Contents first, so its place is known. */
	at[nobj] = len + o.len; ids[nobj] = sig; gens[nobj++] = 0;
	put(&o, "%d 0 obj\n<< /Type /Sig /Filter /Adobe.PPKLite /SubFilter /ETSI.CAdES.detached "
	    "/Contents ", sig);
	out->contents_at = len + o.len;
	out->contents_max = text->contents_max ? text->contents_max : SG_STAMP_CONTENTS_MAX;
	out->contents_len = 2 + 2 * out->contents_max;
	putn(&o, "<", 1);
	for (size_t i = 0; i < 2 * out->contents_max && !o.failed; i++)
		putn(&o, "0", 1);
	putn(&o, ">", 1);
	/* Filled below, once the update's length is known: fixed width. */
	put(&o, "\n/ByteRange [0 %010zu %010zu %010zu]", (size_t)0, (size_t)0, (size_t)0);
	gmtime_r(&now, &tm);
	strftime(when, sizeof(when), "(D:%Y%m%d%H%M%SZ)", &tm);
	put(&o, "\n/M %s", when);
	if (text->reason) {
		put(&o, " /Reason ");
		put_text(&o, text->reason);
	}
	if (text->name) {
		put(&o, " /Name ");
		put_text(&o, text->name);
	}
	put(&o, " >>\nendobj\n");

	/* The field and its widget, one object. */
	at[nobj] = len + o.len; ids[nobj] = wid; gens[nobj++] = 0;
	put(&o, "%d 0 obj\n<< /Type /Annot /Subtype /Widget /FT /Sig /T ", wid);
	{
		char t[160];
		snprintf(t, sizeof(t), "%s %d", text->field ? text->field : "Seal", wid);
		put_text(&o, t);
	}
	put(&o, " /V %d 0 R /F 132 /Rect [%.2f %.2f %.2f %.2f] /P %d %d R /AP << /N %d 0 R >> >>\n"
	    "endobj\n", sig, out->rect[0], out->rect[1], out->rect[2], out->rect[3], page_id,
	    page_gen, ap);

	/* The appearance: the seal's image over the whole box (the image and
	 * its alpha, pdfimg.c), or the ring and star. */
	at[nobj] = len + o.len; ids[nobj] = ap; gens[nobj++] = 0;
	if (text->image != NULL) {
		if (sg_pdfimg_write_form((unsigned)ap, SG_STAMP_SIZE, SG_STAMP_SIZE, (unsigned)img, &ob,
		                         &oblen) < 0)
			goto oom;
		putn(&o, (const char *)ob, oblen);
		free(ob);
		ob = NULL;
		at[nobj] = len + o.len; ids[nobj] = img; gens[nobj++] = 0;
		if (sg_pdfimg_write_image(&pi, (unsigned)img, (unsigned)smask, &ob, &oblen) < 0)
			goto oom;
		putn(&o, (const char *)ob, oblen);
		free(ob);
		ob = NULL;
		at[nobj] = len + o.len; ids[nobj] = smask; gens[nobj++] = 0;
		if (sg_pdfimg_write_smask(&pi, (unsigned)smask, &ob, &oblen) < 0)
			goto oom;
		putn(&o, (const char *)ob, oblen);
		free(ob);
		ob = NULL;
	} else {
		put(&o, "%d 0 obj\n<< /Type /XObject /Subtype /Form /BBox [0 0 %.2f %.2f]%s%s /Length %zu >>\n"
		    "stream\n", ap, SG_STAMP_SIZE, SG_STAMP_SIZE, *res ? " /Resources " : "", res, ops_len);
		putn(&o, ops, ops_len);
		put(&o, "\nendstream\nendobj\n");
	}

	/* The page again, with the widget among its annotations. */
	annots = qpdf_oh_get_key(q, page, "/Annots");
	{
		struct out items = { 0 };
		int n = qpdf_oh_is_array(q, annots) ? qpdf_oh_get_array_n_items(q, annots) : 0;
		for (int i = 0; i < n; i++)
			put(&items, "%s ", qpdf_oh_unparse(q, qpdf_oh_get_array_item(q, annots, i)));
		qpdf_oh_remove_key(q, page, "/Annots");
		at[nobj] = len + o.len; ids[nobj] = page_id; gens[nobj++] = page_gen;
		put(&o, "%d %d obj\n", page_id, page_gen);
		if (put_dict_open(&o, qpdf_oh_unparse_resolved(q, page)) < 0) {
			free(items.p);
			snprintf(err, errlen, "page %d is not a dictionary qpdf could write back", pg);
			goto out;
		}
		put(&o, " /Annots [ %s%d 0 R ] >>\nendobj\n", items.p ? items.p : "", wid);
		free(items.p);
	}

	/* The catalog again, with the field in /AcroForm (its other keys
	 * kept) and /SigFlags 3: signatures exist, append only. */
	acro = qpdf_oh_get_key(q, root, "/AcroForm");
	{
		struct out items = { 0 }, rest = { 0 };
		int n = 0;
		if (qpdf_oh_is_dictionary(q, acro)) {
			fields = qpdf_oh_get_key(q, acro, "/Fields");
			n = qpdf_oh_is_array(q, fields) ? qpdf_oh_get_array_n_items(q, fields) : 0;
			for (int i = 0; i < n; i++)
				put(&items, "%s ", qpdf_oh_unparse(q, qpdf_oh_get_array_item(q, fields, i)));
			qpdf_oh_remove_key(q, acro, "/Fields");
			qpdf_oh_remove_key(q, acro, "/SigFlags");
			if (put_dict_open(&rest, qpdf_oh_unparse_resolved(q, acro)) < 0)
				rest.failed = true;
		} else {
			put(&rest, "<<");
		}
		qpdf_oh_remove_key(q, root, "/AcroForm");
		at[nobj] = len + o.len; ids[nobj] = root_id; gens[nobj++] = root_gen;
		put(&o, "%d %d obj\n", root_id, root_gen);
		if (rest.failed || put_dict_open(&o, qpdf_oh_unparse_resolved(q, root)) < 0) {
			free(items.p);
			free(rest.p);
			snprintf(err, errlen, "the catalog is not a dictionary qpdf could write back");
			goto out;
		}
		put(&o, " /AcroForm %s /Fields [ %s%d 0 R ] /SigFlags 3 >> >>\nendobj\n", rest.p,
		    items.p ? items.p : "", wid);
		free(items.p);
		free(rest.p);
	}

	/* The xref section: one subsection per object, sorted not needed
	 * (each subsection names its own number). */
	{
		size_t xref = len + o.len;
		put(&o, "xref\n");
		for (int i = 0; i < nobj; i++)
			put(&o, "%d 1\n%010zu %05d n \n", ids[i], at[i], gens[i]);
		put(&o, "trailer\n<< /Size %d /Root %d %d R /Prev %lld", last + 1, root_id, root_gen, prev);
		id = qpdf_oh_get_key(q, trailer, "/ID");
		if (qpdf_oh_is_array(q, id))
			put(&o, " /ID %s", qpdf_oh_unparse(q, id));
		put(&o, " >>\nstartxref\n%zu\n%%%%EOF\n", xref);
	}
	if (o.failed) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	/* The byte range: all but the /Contents string. */
	{
		size_t a = out->contents_at, b = out->contents_at + out->contents_len;
		size_t total = len + o.len;
		char br[64];
		char *p = strstr(o.p, "/ByteRange [0 ");
		int n = snprintf(br, sizeof(br), "/ByteRange [0 %010zu %010zu %010zu]", a, b, total - b);
		if (p == NULL || n != (int)strlen("/ByteRange [0 0000000000 0000000000 0000000000]")) {
			snprintf(err, errlen, "the file is too large to stamp");
			goto out;
		}
		memcpy(p, br, (size_t)n);
	}
	out->buf = (uint8_t *)o.p;
	out->len = o.len;
	o.p = NULL;
	rv = 0;
	goto out;
oom:
	snprintf(err, errlen, "out of memory");
out:
	free(ob);
	sg_pdfimg_clear(&pi);
	free(o.p);
	free(ops);
	free(res);
	qpdf_cleanup(&q);
	return rv;
}

int
sg_stamp_fill(struct sg_stamp_update *u, size_t in_len, const uint8_t *der, size_t der_len)
{
	uint8_t *p;

	if (der_len > u->contents_max || u->contents_at < in_len)
		return -1;
	p = u->buf + (u->contents_at - in_len) + 1;
	for (size_t i = 0; i < der_len; i++) {
		static const char hex[] = "0123456789ABCDEF";
		p[2 * i] = (uint8_t)hex[der[i] >> 4];
		p[2 * i + 1] = (uint8_t)hex[der[i] & 15];
	}
	return 0;
}

void
sg_stamp_update_free(struct sg_stamp_update *u)
{
	free(u->buf);
	memset(u, 0, sizeof(*u));
}

/* DER of the signed attributes as they are signed: a SET OF Attribute
 * (tag 0x31), its members in DER order (RFC 5652 5.4). */
static int
cmp_der(const void *a, const void *b)
{
	const uint8_t *const *x = a, *const *y = b;
	size_t lx = ((const size_t *)x)[1], ly = ((const size_t *)y)[1];
	int c = memcmp(x[0], y[0], lx < ly ? lx : ly);

	return c ? c : (lx > ly) - (lx < ly);
}

uint8_t *
sg_stamp_signed_attrs(CMS_SignerInfo *si, size_t *len)
{
	int n = CMS_signed_get_attr_count(si);
	struct { uint8_t *p; size_t len; } *m;
	size_t body = 0, hdr, off;
	uint8_t *out = NULL;

	if (n <= 0 || (m = calloc((size_t)n, sizeof(*m))) == NULL)
		return NULL;
	for (int i = 0; i < n; i++) {
		int l = i2d_X509_ATTRIBUTE(CMS_signed_get_attr(si, i), &m[i].p);
		if (l <= 0)
			goto out;
		m[i].len = (size_t)l;
		body += m[i].len;
	}
	qsort(m, (size_t)n, sizeof(*m), cmp_der);
	hdr = body < 0x80 ? 2 : body < 0x100 ? 3 : body < 0x10000 ? 4 : 5;
	if ((out = malloc(hdr + body)) == NULL)
		goto out;
	out[0] = 0x31;
	if (hdr == 2) {
		out[1] = (uint8_t)body;
	} else {
		out[1] = (uint8_t)(0x80 | (hdr - 2));
		for (size_t i = 0; i < hdr - 2; i++)
			out[2 + i] = (uint8_t)(body >> (8 * (hdr - 3 - i)));
	}
	off = hdr;
	for (int i = 0; i < n; i++) {
		memcpy(out + off, m[i].p, m[i].len);
		off += m[i].len;
	}
	*len = hdr + body;
out:
	for (int i = 0; i < n; i++)
		OPENSSL_free(m[i].p);
	free(m);
	return out;
}
