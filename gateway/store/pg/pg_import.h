/*
 * The PostgreSQL backend as the target of a move (migrate.h): one row of
 * a table, written into the store's site in the caller's transaction
 * (import.c).
 */
#ifndef GW_STORE_PG_IMPORT_H
#define GW_STORE_PG_IMPORT_H

#include "backend.h"

int gw_pg_import_row_tx(struct gw_store *st, enum gw_store_table t,
                        const struct gw_store_value *cols, char *err, size_t errlen);

#endif
