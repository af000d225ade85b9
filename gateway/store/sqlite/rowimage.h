/*
 * What one store transaction changed, as the final images of the rows it
 * touched: captured with SQLite's preupdate hook while it runs, encoded
 * for the redo log after it commits, and applied back at recovery.
 * docs/audit.md, "Durability".
 */
#ifndef SEALGATE_ROWIMAGE_H
#define SEALGATE_ROWIMAGE_H

#include <stdbool.h>
#include <stddef.h>

struct sqlite3;
struct gw_rowimage;

int gw_rowimage_new(struct gw_rowimage **out);
/* Finalizes its statements: call before the connection closes. */
void gw_rowimage_free(struct gw_rowimage **ri);

/* Starts noting every row a change touches on db (forgetting earlier
 * ones); stop removes the hook. Both with the store lock held. */
void gw_rowimage_start(struct gw_rowimage *ri, struct sqlite3 *db);
void gw_rowimage_stop(struct gw_rowimage *ri, struct sqlite3 *db);
bool gw_rowimage_touched(const struct gw_rowimage *ri);

/* Reads each touched row as it is now (the transaction committed): its
 * values, or that it is gone. *out stays valid until the next start.
 * -1 on a store error or a table without rowids. */
int gw_rowimage_encode(struct gw_rowimage *ri, struct sqlite3 *db,
                       const void **out, size_t *len);

/* Makes each row of an encoded image what it says, inside the caller's
 * transaction. -1 with err on a malformed image or a store error. */
int gw_rowimage_apply(struct sqlite3 *db, const void *data, size_t len,
                      char *err, size_t errlen);

#endif
