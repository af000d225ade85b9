/*
 * Fuzz target: the row-image decoder of the redo log (gateway/store/sqlite/rowimage.c),
 * applied to a real store in a temp dir inside a transaction that is
 * rolled back. Frames are checksummed before they get here; this checks
 * that whatever passes cannot crash the replay or apply half a row.
 */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <sqlite3.h>

#include "rowimage.h"
#include "store.h"
#include "sqlite_store.h"   /* gw_store_db: a look at the file from inside */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct gw_store *st;

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	sqlite3 *db;
	char err[256];

	if (st == NULL) {
		char dir[] = "/tmp/sg-fuzz-rows-XXXXXX", path[64];

		if (mkdtemp(dir) == NULL)
			abort();
		snprintf(path, sizeof(path), "%s/store.db", dir);
		if (gw_store_open(path, &st, err, sizeof(err)) != 0) {
			fprintf(stderr, "fuzz-rowimage: %s\n", err);
			exit(1);
		}
	}
	db = gw_store_db(st);
	gw_store_lock(st);
	if (sqlite3_exec(db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK)
		abort();
	(void)gw_rowimage_apply(db, data, size, err, sizeof(err));
	sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
	gw_store_unlock(st);
	return 0;
}
