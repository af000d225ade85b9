/*
 * The store's redo log: a preallocated file beside the SQLite store that
 * makes an audit batch durable with one small write and one fdatasync.
 * Each frame holds one batch's changes (an SQLite session changeset) and
 * the audit seqs it wrote; the store replays the frames it lost at open.
 * docs/audit.md, "Durability", says why and how.
 */
#ifndef SEALGATE_REDO_H
#define SEALGATE_REDO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GW_REDO_SIZE      (8u << 20)    /* bytes, written once at creation */
#define GW_REDO_HDR_LEN   56u           /* magic, length, seqs, store id, checksum */
#define GW_REDO_ID_LEN    16u           /* the store's random id */

struct gw_redo;

/* Opens path for the store whose id is store_id (frames of another store,
 * say a log left beside a store made anew, are never read), creating it
 * (mode 0600, filled with zeros and synced, so that later writes overwrite
 * blocks that exist) when create is true and it is missing or short.
 * Without create, a missing file gives *out NULL and 0. -1 with err on any
 * other failure. */
int gw_redo_open(const char *path, const uint8_t store_id[GW_REDO_ID_LEN], bool create,
                 struct gw_redo **out, char *err, size_t errlen);
void gw_redo_close(struct gw_redo **r);

/* Calls fn for each intact frame from the start of the file, in order,
 * until a frame is torn or unwritten, belongs to another store, or its
 * seqs do not follow the previous frame's (what is left of an older round
 * through the file).
 * fn returns 0 to go on, -1 to stop (the scan then returns -1). */
typedef int (*gw_redo_frame_fn)(void *ctx, uint64_t first_seq, uint64_t last_seq,
                                const void *data, size_t len);
int gw_redo_scan(struct gw_redo *r, gw_redo_frame_fn fn, void *ctx,
                 char *err, size_t errlen);

/* Appends one frame and waits until it is on disk. 0: durable. 1: no room
 * left, nothing written (make the store durable, then gw_redo_reset).
 * -1: the write or the sync failed; the file's tail is unknown, so the
 * caller must stop using the log (and make the batch durable otherwise). */
int gw_redo_append(struct gw_redo *r, uint64_t first_seq, uint64_t last_seq,
                   const void *data, size_t len, char *err, size_t errlen);

/* The next frame goes to the start of the file. Only once everything the
 * log holds is durable in the store itself. */
void gw_redo_reset(struct gw_redo *r);

/* Like gw_redo_reset, and the first frame is overwritten on disk, so a
 * later scan finds nothing: for a clean close, after which nothing of the
 * log may come back (a store cut back by hand stays cut back). */
int gw_redo_clear(struct gw_redo *r);

/* Bytes in use (for stats and tests). */
size_t gw_redo_used(const struct gw_redo *r);

#endif
