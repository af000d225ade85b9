/*
 * The documents repository's interface (docstore.h): each call through the
 * store's table (backend.h), so the gateway never knows which backend
 * keeps the bytes. A backend without the repository fails closed.
 */
#include "backend.h"
#include "protocol.h"

#include <stdio.h>
#include <string.h>

static inline const struct gw_store_ops *
ops_of(struct gw_store *st)
{
	return ((const struct gw_store_head *)(const void *)st)->ops;
}

int
gw_docstore_put(struct gw_store *st, const struct gw_doc_info *info, const uint8_t *data,
                char *err, size_t errlen)
{
	if (ops_of(st)->doc_put == NULL) {
		sg_seterr(err, errlen, "documents: not on the %s store yet", ops_of(st)->name);
		return -1;
	}
	return ops_of(st)->doc_put(st, info, data, err, errlen);
}

int
gw_docstore_info(struct gw_store *st, const uint8_t sha256[32], struct gw_doc_info *out)
{
	memset(out, 0, sizeof(*out));
	if (ops_of(st)->doc_info == NULL)
		return -1;
	return ops_of(st)->doc_info(st, sha256, out);
}

int
gw_docstore_read(struct gw_store *st, const uint8_t sha256[32], uint64_t offset, uint8_t *buf,
                 size_t len, size_t *got)
{
	*got = 0;
	if (ops_of(st)->doc_read == NULL)
		return -1;
	return ops_of(st)->doc_read(st, sha256, offset, buf, len, got);
}

int
gw_docstore_apps(struct gw_store *st, const uint8_t sha256[32], int64_t *ids, size_t max,
                 size_t *n)
{
	*n = 0;
	if (ops_of(st)->doc_apps == NULL)
		return -1;
	return ops_of(st)->doc_apps(st, sha256, ids, max, n);
}
