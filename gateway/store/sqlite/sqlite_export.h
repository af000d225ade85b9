/*
 * The SQLite backend as the source of a move (migrate.h): its rows as
 * plain values, table by table (export.c).
 */
#ifndef GW_STORE_SQLITE_EXPORT_H
#define GW_STORE_SQLITE_EXPORT_H

#include "backend.h"

int gw_sqlite_export_table(struct gw_store *st, enum gw_store_table t, gw_store_row_fn fn,
                           void *ctx, char *err, size_t errlen);

#endif
