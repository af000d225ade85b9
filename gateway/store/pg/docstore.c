/*
 * The documents repository on PostgreSQL (table documents, migration 7):
 * each document's bytes under its SHA-256, shared by the group's sites as
 * applications are (who may read one is decided by the gateway from the
 * applications bound to it). Ranges are read with substring() on a column
 * stored uncompressed (STORAGE EXTERNAL), so a chunk costs its own bytes.
 */
#include "pg_store.h"
#include "protocol.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int
gw_pg_doc_put(struct gw_store *st, const struct gw_doc_info *info, const uint8_t *data,
              char *err, size_t errlen)
{
	char size[24], created[24];
	const char *vals[5] = { (const char *)info->sha256, size, info->name, created,
	                        info->size ? (const char *)data : "" };
	int lens[5] = { 32, 0, 0, 0, (int)info->size }, fmts[5] = { 1, 0, 0, 0, 1 };
	PGresult *r;
	int rv = -1;

	if (info->size > (uint64_t)INT32_MAX) {
		sg_seterr(err, errlen, "documents: %" PRIu64 " bytes is more than one parameter takes",
		          info->size);
		return -1;
	}
	snprintf(size, sizeof(size), "%" PRIu64, info->size);
	snprintf(created, sizeof(created), "%" PRId64, info->created);
	pthread_mutex_lock(&st->lock);
	r = gw_pg_exec(st, "INSERT INTO documents (sha256, size, name, created, data) "
	               "VALUES ($1, $2::bigint, $3, $4::bigint, $5) ON CONFLICT (sha256) DO NOTHING",
	               5, vals, lens, fmts, PGRES_COMMAND_OK, err, errlen);
	if (r != NULL)
		rv = gw_pg_changes(r) > 0 ? 1 : 0;
	PQclear(r);
	pthread_mutex_unlock(&st->lock);
	return rv;
}

int
gw_pg_doc_info(struct gw_store *st, const uint8_t sha256[32], struct gw_doc_info *out)
{
	const char *vals[1] = { (const char *)sha256 };
	int lens[1] = { 32 }, fmts[1] = { 1 };
	PGresult *r;
	int rv = -1;

	memset(out, 0, sizeof(*out));
	pthread_mutex_lock(&st->lock);
	r = gw_pg_exec(st, "SELECT size, name, created FROM documents WHERE sha256 = $1", 1, vals,
	               lens, fmts, PGRES_TUPLES_OK, NULL, 0);
	if (r != NULL) {
		rv = PQntuples(r) > 0;
		if (rv) {
			memcpy(out->sha256, sha256, 32);
			out->size = strtoull(PQgetvalue(r, 0, 0), NULL, 10);
			snprintf(out->name, sizeof(out->name), "%s", PQgetvalue(r, 0, 1));
			out->created = strtoll(PQgetvalue(r, 0, 2), NULL, 10);
		}
	}
	PQclear(r);
	pthread_mutex_unlock(&st->lock);
	return rv;
}

int
gw_pg_doc_read(struct gw_store *st, const uint8_t sha256[32], uint64_t offset, uint8_t *buf,
               size_t len, size_t *got)
{
	char from[24], count[24];
	const char *vals[3] = { (const char *)sha256, from, count };
	int lens[3] = { 32, 0, 0 }, fmts[3] = { 1, 0, 0 };
	PGresult *r;
	int rv = -1, n;

	*got = 0;
	/* substring() of a bytea takes integers (a document is at most
	 * document_max_size, 512 MiB) and counts from 1. */
	if (offset >= (uint64_t)INT32_MAX)
		return gw_pg_doc_info(st, sha256, &(struct gw_doc_info){ 0 });
	if (len > (size_t)INT32_MAX - offset)
		len = (size_t)INT32_MAX - offset;
	snprintf(from, sizeof(from), "%" PRIu64, offset + 1);
	snprintf(count, sizeof(count), "%zu", len);
	pthread_mutex_lock(&st->lock);
	r = gw_pg_exec_fmt(st, "SELECT substring(data FROM $2::integer FOR $3::integer) FROM documents "
	                   "WHERE sha256 = $1", 3, vals, lens, fmts, PGRES_TUPLES_OK, 1, NULL, 0);
	if (r != NULL) {
		rv = PQntuples(r) > 0;
		if (rv) {
			n = PQgetlength(r, 0, 0);
			if (n < 0 || (size_t)n > len) {
				rv = -1;
			} else {
				memcpy(buf, PQgetvalue(r, 0, 0), (size_t)n);
				*got = (size_t)n;
			}
		}
	}
	PQclear(r);
	pthread_mutex_unlock(&st->lock);
	return rv;
}

int
gw_pg_doc_apps(struct gw_store *st, const uint8_t sha256[32], int64_t *ids, size_t max,
               size_t *n)
{
	char lim[24];
	const char *vals[2] = { (const char *)sha256, lim };
	int lens[2] = { 32, 0 }, fmts[2] = { 1, 0 };
	PGresult *r;

	*n = 0;
	snprintf(lim, sizeof(lim), "%zu", max);
	pthread_mutex_lock(&st->lock);
	r = gw_pg_exec(st, "SELECT id FROM applications WHERE doc_digest = $1 ORDER BY id DESC "
	               "LIMIT $2::bigint", 2, vals, lens, fmts, PGRES_TUPLES_OK, NULL, 0);
	for (int i = 0; r != NULL && i < PQntuples(r) && *n < max; i++)
		ids[(*n)++] = strtoll(PQgetvalue(r, i, 0), NULL, 10);
	pthread_mutex_unlock(&st->lock);
	PQclear(r);
	return r != NULL ? 0 : -1;
}
