/*
 * Requests of the documents repository (docs/stamp.md): doc_put uploads a
 * document in chunks and stores it content-addressed once its SHA-256
 * matches; doc_get reads one back for a person allowed to see it.
 */
#ifndef GW_DOC_OPS_H
#define GW_DOC_OPS_H

#include <stdbool.h>
#include <stdint.h>
#include <jansson.h>

#include "dispatch.h"
#include "docstore.h"

/* A chunk's data, at most (doc_put and doc_get). */
#define GW_DOC_CHUNK_MAX (512u * 1024u)
/* A document's size when the configuration names none. */
#define GW_DOC_SIZE_DEFAULT (32u * 1024u * 1024u)

json_t *gw_op_doc_put(struct gw_req *r);
json_t *gw_op_doc_get(struct gw_req *r);

/* What show says of the document an application is bound to:
 * {"sha256", "size", "name", "stored"} (stored false and no size or name
 * when the store has no such document). NULL on a store error. */
json_t *gw_doc_json(struct gw_store *st, const uint8_t sha256[32]);

/* Whether who may read the document sha256: an auditor, a seal admin, or
 * the applicant, an approver who acted on, or one who may act now on an
 * application bound to it. */
bool gw_doc_may_read(struct gw_req *r, const uint8_t sha256[32]);

#endif
