/*
 * The documents repository: the files applications are bound to, kept
 * content-addressed (their SHA-256 is their name), so that the approver
 * reads, and the stamp is checked against, the very bytes that were
 * applied with (docs/stamp.md). Both backends; table documents.
 */
#ifndef GW_DOCSTORE_H
#define GW_DOCSTORE_H

#include <stddef.h>
#include <stdint.h>

#include "store.h"

/* A document's name as shown (the uploader's file name), at most. */
#define GW_DOC_NAME_MAX 200

struct gw_doc_info {
	uint8_t sha256[32];
	uint64_t size;
	char name[GW_DOC_NAME_MAX + 1];
	int64_t created;              /* Unix seconds of the first upload */
};

/* Stores the document data (info->size bytes, whose SHA-256 the caller has
 * checked is info->sha256). A document already stored stays as it is (the
 * same bytes: its first name kept): 1 stored now, 0 was there, -1 error. */
int gw_docstore_put(struct gw_store *st, const struct gw_doc_info *info, const uint8_t *data,
                    char *err, size_t errlen);
/* What is stored under sha256: 1 found (*out), 0 none, -1 error. */
int gw_docstore_info(struct gw_store *st, const uint8_t sha256[32], struct gw_doc_info *out);
/* Up to len bytes of the document from offset into buf (*got: how many; 0
 * at or past its end). 1 found, 0 none, -1 error. */
int gw_docstore_read(struct gw_store *st, const uint8_t sha256[32], uint64_t offset, uint8_t *buf,
                     size_t len, size_t *got);
/* Ids of the applications bound to sha256 (newest first, at most max). */
int gw_docstore_apps(struct gw_store *st, const uint8_t sha256[32], int64_t *ids, size_t max,
                     size_t *n);

#endif
