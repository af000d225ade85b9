/*
 * The reader of a stamp's incremental update (docs/stamp.md), as sealctl
 * stamp writes it: untrusted bytes from the client, read with bounds on
 * every length and a fixed number of objects. It says what the update
 * holds (its objects, their kinds, the xref, the trailer, the /Sig's
 * /ByteRange and /Contents), and refuses a stamp object (signature,
 * widget, XObject) that would act (an action, a script, a link, an
 * embedded file); stamp_ops.c decides with qpdf whether the
 * objects that replace the document's are only its page and catalog with
 * the field added.
 */
#ifndef GW_STAMPCHECK_H
#define GW_STAMPCHECK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GW_STAMP_OBJS_MAX 16
/* An update, at most: the objects, the appearance and its image. */
#define GW_STAMP_UPDATE_MAX (512u * 1024u)

enum gw_stamp_kind {
	GW_STAMP_OTHER,       /* a dictionary of none of the kinds below */
	GW_STAMP_SIG,         /* << /Type /Sig … */
	GW_STAMP_WIDGET,      /* << /Type /Annot /Subtype /Widget /FT /Sig … */
	GW_STAMP_FORM,        /* a stream: << /Type /XObject /Subtype /Form … */
	GW_STAMP_IMAGE,       /* a stream: << /Type /XObject /Subtype /Image … */
	GW_STAMP_STREAM,      /* another stream */
};

struct gw_stamp_obj {
	long num, gen;
	size_t at;            /* offset in the whole file of "N G obj" */
	enum gw_stamp_kind kind;
};

struct gw_stamp_update {
	size_t n;
	struct gw_stamp_obj objs[GW_STAMP_OBJS_MAX];
	long long prev, size, startxref;
	long root_num, root_gen;
	/* the /Sig's, in the whole file */
	size_t contents_at, contents_len;
	unsigned long long byterange[4];
};

/* Reads update (len bytes) appended to a document of base bytes. 0, or
 * -1 with err saying what is not as sealctl stamp writes it. */
int gw_stamp_parse(const uint8_t *update, size_t len, size_t base, struct gw_stamp_update *out,
                   char *err, size_t errlen);

#endif
