/*
 * gw_stamp_parse (stampcheck.h): the update in the one form sealctl stamp
 * writes (objects "N G obj\n<< … >>\nendobj\n", streams with their
 * /Length last, an xref of one-entry subsections, a trailer, startxref,
 * %%EOF), every step bounded by the buffer's end. Anything else is
 * refused: the gateway need not read every PDF, only its own stamps.
 */
#include "stampcheck.h"

#include <stdio.h>
#include <string.h>

struct rd {
	const uint8_t *p;
	size_t len, at;
};

static bool
lit(struct rd *r, const char *s)
{
	size_t n = strlen(s);

	if (r->len - r->at < n || memcmp(r->p + r->at, s, n) != 0)
		return false;
	r->at += n;
	return true;
}

/* A decimal number of at most 12 digits. */
static bool
num(struct rd *r, long long *v)
{
	size_t d = 0;

	*v = 0;
	while (r->at < r->len && r->p[r->at] >= '0' && r->p[r->at] <= '9' && d < 12) {
		*v = *v * 10 + (r->p[r->at++] - '0');
		d++;
	}
	return d > 0 && !(r->at < r->len && r->p[r->at] >= '0' && r->p[r->at] <= '9');
}

/* Past one dictionary from "<<" to its ">>", strings and nested
 * dictionaries skipped. */
static bool
skip_dict(struct rd *r)
{
	int depth = 0;

	while (r->at < r->len) {
		uint8_t c = r->p[r->at];
		if (c == '(') {
			int paren = 0;
			do {
				if (r->p[r->at] == '\\')
					r->at++;
				else if (r->p[r->at] == '(')
					paren++;
				else if (r->p[r->at] == ')')
					paren--;
				r->at++;
			} while (r->at < r->len && paren > 0);
			if (paren > 0)
				return false;
		} else if (c == '<' && r->at + 1 < r->len && r->p[r->at + 1] == '<') {
			if (++depth > 32)
				return false;
			r->at += 2;
		} else if (c == '>' && r->at + 1 < r->len && r->p[r->at + 1] == '>') {
			r->at += 2;
			if (--depth == 0)
				return true;
		} else if (c == '<') {
			while (r->at < r->len && r->p[r->at] != '>')
				r->at++;
			if (r->at++ >= r->len)
				return false;
		} else {
			r->at++;
		}
	}
	return false;
}

static bool
starts(const uint8_t *p, size_t len, const char *s)
{
	return len >= strlen(s) && memcmp(p, s, strlen(s)) == 0;
}

/* The number after key in the dictionary d (first occurrence), -1 if none. */
static long long
dict_num(const uint8_t *d, size_t len, const char *key)
{
	size_t k = strlen(key);

	for (size_t i = 0; i + k < len; i++)
		if (memcmp(d + i, key, k) == 0 && d[i + k] == ' ') {
			struct rd r = { d, len, i + k + 1 };
			long long v;
			if (num(&r, &v))
				return v;
		}
	return -1;
}

/* Keys that make a PDF act (run a script, open a file or a link, play
 * media, carry a file): none of them belongs in a stamp's own objects. */
static const char *const acting_keys[] = {
	"/A ", "/A<<", "/AA", "/JS", "/JavaScript", "/Launch", "/OpenAction", "/URI",
	"/EmbeddedFile", "/RichMedia", "/Sound", "/Movie", "/SubmitForm", "/ImportData",
	"/GoToR", "/GoToE", NULL,
};

static const char *
acting_key(const uint8_t *d, size_t len)
{
	for (size_t k = 0; acting_keys[k] != NULL; k++) {
		size_t n = strlen(acting_keys[k]);
		for (size_t i = 0; i + n <= len; i++)
			if (memcmp(d + i, acting_keys[k], n) == 0)
				return acting_keys[k];
	}
	return NULL;
}

static int
parse_sig(const uint8_t *d, size_t len, size_t dict_at, struct gw_stamp_update *u, char *err,
          size_t errlen)
{
	static const char br[] = "/ByteRange [";
	const uint8_t *c = NULL;
	size_t i;

	for (i = 0; i + 11 < len; i++)
		if (memcmp(d + i, "/Contents <", 11) == 0) {
			c = d + i + 10;
			break;
		}
	if (c == NULL || u->contents_len != 0) {
		snprintf(err, errlen, "the /Sig has no /Contents, or there are two");
		return -1;
	}
	u->contents_at = dict_at + (size_t)(c - d);
	for (i = 1; c + i < d + len && c[i] != '>'; i++)
		if (!((c[i] >= '0' && c[i] <= '9') || (c[i] >= 'A' && c[i] <= 'F') ||
		      (c[i] >= 'a' && c[i] <= 'f'))) {
			snprintf(err, errlen, "the /Contents is not a hex string");
			return -1;
		}
	if (c + i >= d + len) {
		snprintf(err, errlen, "the /Contents does not end");
		return -1;
	}
	u->contents_len = i + 1;
	for (i = 0; i + sizeof(br) - 1 < len; i++)
		if (memcmp(d + i, br, sizeof(br) - 1) == 0) {
			struct rd r = { d, len, i + sizeof(br) - 1 };
			for (int k = 0; k < 4; k++) {
				long long v;
				while (r.at < r.len && r.p[r.at] == ' ')
					r.at++;
				if (!num(&r, &v)) {
					snprintf(err, errlen, "the /ByteRange is not four numbers");
					return -1;
				}
				u->byterange[k] = (unsigned long long)v;
			}
			return 0;
		}
	snprintf(err, errlen, "the /Sig has no /ByteRange");
	return -1;
}

int
gw_stamp_parse(const uint8_t *update, size_t len, size_t base, struct gw_stamp_update *out,
               char *err, size_t errlen)
{
	struct rd r = { update, len, 0 };
	long long v, n, g, off;
	size_t nxref = 0;

	memset(out, 0, sizeof(*out));
	out->root_num = -1;
	if (len > GW_STAMP_UPDATE_MAX) {
		snprintf(err, errlen, "the update is larger than %u bytes", GW_STAMP_UPDATE_MAX);
		return -1;
	}
	if (!lit(&r, "\n")) {
		snprintf(err, errlen, "the update does not start on a new line");
		return -1;
	}
	while (!lit(&r, "xref\n")) {
		struct gw_stamp_obj *o;
		size_t dict_at, dict_end;
		const uint8_t *d;

		if (out->n == GW_STAMP_OBJS_MAX) {
			snprintf(err, errlen, "more than %d objects", GW_STAMP_OBJS_MAX);
			return -1;
		}
		o = &out->objs[out->n];
		o->at = base + r.at;
		if (!num(&r, &n) || !lit(&r, " ") || !num(&r, &g) || !lit(&r, " obj\n") ||
		    n < 1 || n > 8388607 || g > 65535) {
			snprintf(err, errlen, "object %zu: not \"N G obj\" at byte %zu", out->n + 1, r.at);
			return -1;
		}
		o->num = (long)n;
		o->gen = (long)g;
		dict_at = r.at;
		if (!starts(r.p + r.at, r.len - r.at, "<<") || !skip_dict(&r)) {
			snprintf(err, errlen, "object %ld: not a dictionary", o->num);
			return -1;
		}
		dict_end = r.at;
		d = update + dict_at;
		if (starts(d, dict_end - dict_at, "<< /Type /Sig "))
			o->kind = GW_STAMP_SIG;
		else if (starts(d, dict_end - dict_at, "<< /Type /Annot /Subtype /Widget /FT /Sig "))
			o->kind = GW_STAMP_WIDGET;
		if (lit(&r, "\nstream\n")) {
			long long l = dict_num(d, dict_end - dict_at, "/Length");
			if (o->kind != GW_STAMP_OTHER || l < 0 || (unsigned long long)l > r.len - r.at) {
				snprintf(err, errlen, "object %ld: a stream without its /Length", o->num);
				return -1;
			}
			o->kind = starts(d, dict_end - dict_at, "<< /Type /XObject /Subtype /Form ") ?
			          GW_STAMP_FORM :
			          starts(d, dict_end - dict_at, "<< /Type /XObject /Subtype /Image ") ?
			          GW_STAMP_IMAGE : GW_STAMP_STREAM;
			r.at += (size_t)l;
			if (!lit(&r, "\nendstream")) {
				snprintf(err, errlen, "object %ld: its stream is not /Length bytes", o->num);
				return -1;
			}
		}
		if (!lit(&r, "\nendobj\n")) {
			snprintf(err, errlen, "object %ld: no endobj", o->num);
			return -1;
		}
		if (o->kind == GW_STAMP_SIG &&
		    parse_sig(d, dict_end - dict_at, base + dict_at, out, err, errlen) < 0)
			return -1;
		/* The stamp's own objects do not act; the page and catalog
		 * (OTHER) are compared with the document's instead. */
		if (o->kind != GW_STAMP_OTHER) {
			const char *k = acting_key(d, dict_end - dict_at);
			if (k != NULL) {
				snprintf(err, errlen, "object %ld has %s: a stamp does not act", o->num, k);
				return -1;
			}
		}
		for (size_t i = 0; i < out->n; i++)
			if (out->objs[i].num == o->num) {
				snprintf(err, errlen, "object %ld comes twice", o->num);
				return -1;
			}
		out->n++;
	}
	out->startxref = (long long)(base + r.at - 5);
	/* One entry a subsection, one for each object, at its offset. */
	while (!lit(&r, "trailer\n")) {
		bool found = false;
		if (!num(&r, &n) || !lit(&r, " 1\n") || !num(&r, &off) || !lit(&r, " ") ||
		    !num(&r, &g) || !lit(&r, " n \n")) {
			snprintf(err, errlen, "the xref is not one-entry subsections");
			return -1;
		}
		for (size_t i = 0; i < out->n; i++)
			if (out->objs[i].num == n && out->objs[i].gen == g &&
			    (long long)out->objs[i].at == off)
				found = true;
		if (!found || ++nxref > out->n) {
			snprintf(err, errlen, "the xref entry of object %lld is not where it is", n);
			return -1;
		}
	}
	if (nxref != out->n) {
		snprintf(err, errlen, "the xref lists %zu of %zu objects", nxref, out->n);
		return -1;
	}
	{
		size_t t = r.at;
		if (!starts(r.p + r.at, r.len - r.at, "<<") || !skip_dict(&r)) {
			snprintf(err, errlen, "the trailer is not a dictionary");
			return -1;
		}
		out->size = dict_num(update + t, r.at - t, "/Size");
		out->prev = dict_num(update + t, r.at - t, "/Prev");
		out->root_num = (long)dict_num(update + t, r.at - t, "/Root");
		{
			/* "/Root N G R" */
			struct rd q = { update + t, r.at - t, 0 };
			for (; q.at + 6 < q.len; q.at++)
				if (memcmp(q.p + q.at, "/Root ", 6) == 0)
					break;
			q.at += 6;
			if (num(&q, &v) && lit(&q, " ") && num(&q, &g) && lit(&q, " R"))
				out->root_gen = (long)g;
			else
				out->root_num = -1;
		}
	}
	if (out->size < 1 || out->prev < 0 || out->root_num < 1) {
		snprintf(err, errlen, "the trailer lacks /Size, /Prev or /Root");
		return -1;
	}
	if (!lit(&r, "\nstartxref\n") || !num(&r, &v) || v != out->startxref || !lit(&r, "\n%%EOF\n") ||
	    r.at != r.len) {
		snprintf(err, errlen, "the update does not end with its startxref and %%%%EOF");
		return -1;
	}
	if (out->contents_len == 0) {
		snprintf(err, errlen, "the update has no /Sig");
		return -1;
	}
	return 0;
}
