/*
 * The audit trail's formats, shared by the gateway and the offline
 * verifier (sealctl audit verify): the canonical record encoding and hash
 * chain, the signed checkpoint message, the JSON-lines export, and the
 * verifier that says where a log was changed. Pure: no I/O, no store.
 * docs/audit.md is the reference a third party writes a verifier from.
 */
#ifndef GW_AUDITFMT_H
#define GW_AUDITFMT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

#include "store.h"   /* struct gw_audit_row */

#define GW_AUDIT_HASH_LEN 32
#define GW_AUDIT_BIN_MAX  4096        /* longest digest field of a record */
#define GW_AUDIT_SIG_MAX  1024        /* longest checkpoint signature */
#define GW_AUDIT_CERT_MAX (16 * 1024)
/* The signed message of a checkpoint before the chain (SGCHKPT1) and of a
 * chained one (SGCHKPT2, the longest). */
#define GW_AUDIT_CHECKPOINT_MSG1_LEN (8 + 8 + GW_AUDIT_HASH_LEN + 8)
#define GW_AUDIT_CHECKPOINT_MSG_LEN (8 + 8 + 8 + GW_AUDIT_HASH_LEN + 8 + 8 + GW_AUDIT_HASH_LEN)

/* ---- records ---- */

/* The canonical encoding of one record (docs/audit.md): writes it to buf
 * when buflen is large enough and returns its length either way (0 when a
 * field is longer than the encoding allows). */
size_t gw_audit_row_encode(const struct gw_audit_row *row, uint8_t *buf, size_t buflen);

/* hash = SHA-256(prev || encoding(row)). 0, or -1 on failure. */
int gw_audit_row_hash(const uint8_t prev[GW_AUDIT_HASH_LEN], const struct gw_audit_row *row,
                      uint8_t hash[GW_AUDIT_HASH_LEN]);

/* ---- checkpoints ---- */

/* struct gw_audit_checkpoint (store.h): a signed statement "the log's
 * head was record seq with chain hash hash at time ts_ns", made by the
 * gateway with the audit key on the token. */

/* The signed bytes; returns their length. Chained: "SGCHKPT2" || u64 id ||
 * u64 seq || hash || i64 ts_ns || u64 prev_id || prev_hash (104 bytes);
 * before the chain: "SGCHKPT1" || u64 seq || hash || i64 ts_ns (56). */
size_t gw_audit_checkpoint_message(const struct gw_audit_checkpoint *cp,
                                   uint8_t msg[GW_AUDIT_CHECKPOINT_MSG_LEN]);
/* A checkpoint's own hash, which the next one signs: SHA-256 of its
 * message. 0, or -1 on failure. */
int gw_audit_checkpoint_hash(const struct gw_audit_checkpoint *cp, uint8_t out[GW_AUDIT_HASH_LEN]);

/* Checks cp's signature with the public key of the DER certificate cert
 * (cp->cert when cert is NULL). 1 valid, 0 invalid (err says why), -1 when
 * it cannot be checked (no certificate, unknown alg). */
int gw_audit_checkpoint_verify(const struct gw_audit_checkpoint *cp,
                               const uint8_t *cert, size_t cert_len,
                               char *err, size_t errlen);

/* ---- JSON lines (the export format) ---- */

/* Local time shown next to UTC: offset in seconds east of UTC and a zone
 * name, for a record (from the seal's zone). Not part of the hash. */
typedef bool (*gw_audit_tz_fn)(void *ctx, const struct gw_audit_row *row, int64_t unix_s,
                               long *offset, const char **zone);

/* {"type":"record", every field, "time", "local_time"…}. NULL on ENOMEM. */
json_t *gw_audit_row_to_json(const struct gw_audit_row *row, gw_audit_tz_fn tz, void *tzctx);
/* {"type":"checkpoint", …} */
json_t *gw_audit_checkpoint_to_json(const struct gw_audit_checkpoint *cp, bool with_cert);

/* Parses a "record" object. Strings point into o (keep it alive);
 * digests are decoded into buf. 0 or -1 with err. */
struct gw_audit_rowbuf {
	uint8_t doc[GW_AUDIT_BIN_MAX], sig[GW_AUDIT_BIN_MAX];
	uint8_t prev[GW_AUDIT_HASH_LEN], hash[GW_AUDIT_HASH_LEN];
};
int gw_audit_row_from_json(const json_t *o, struct gw_audit_row *row, struct gw_audit_rowbuf *buf,
                           char *err, size_t errlen);
/* A "record" line of an export as the gateway writes it (the line's '\n'
 * may end it), decoded in place without building a JSON tree: strings
 * point into line, which is changed. 0 with *row as gw_audit_row_from_json
 * gives it; 1 for any line it leaves to jansson (not the gateway's compact
 * form, or not a well-formed record), which then says what is wrong. */
int gw_audit_row_from_line(char *line, size_t len, struct gw_audit_row *row,
                           struct gw_audit_rowbuf *buf);
/* Parses a "checkpoint" object; sig and cert are malloc'd into *sig and *cert
 * (free them), alg points into o. */
int gw_audit_checkpoint_from_json(const json_t *o, struct gw_audit_checkpoint *cp,
                                  uint8_t **sig, uint8_t **cert, char *err, size_t errlen);

/* "2026-01-01T08:00:00.123+08:00" for unix ns + offset; buf >= 40. */
void gw_audit_format_time(int64_t ts_ns, long offset, char *buf, size_t len);

/* ---- the verifier ---- */

/*
 * Feed it the checkpoints (any order, before or among the records) and the
 * records in the order they are stored or exported; then finish. It checks
 * every record's hash, the links, gaps, duplicates, order, every
 * checkpoint's signature and that each checkpoint matches the record it
 * covers, and lists every problem with its position.
 */
struct gw_audit_verifier;

struct gw_audit_verifier *gw_audit_verifier_new(void);
void gw_audit_verifier_free(struct gw_audit_verifier **v);
/* Certificate to check checkpoint signatures with instead of the one each
 * checkpoint carries (an auditor's pinned copy). Copied. */
int gw_audit_verifier_pin_cert(struct gw_audit_verifier *v, const uint8_t *der, size_t len);
/* where: words for the position ("line 12"), used in messages; may be NULL. */
void gw_audit_verifier_add_record(struct gw_audit_verifier *v, const struct gw_audit_row *row,
                                  const char *where);
void gw_audit_verifier_add_checkpoint(struct gw_audit_verifier *v,
                                      const struct gw_audit_checkpoint *cp, const char *where);
/* A problem found outside (a line that does not parse). */
void gw_audit_verifier_problem(struct gw_audit_verifier *v, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

struct gw_audit_verdict {
	uint64_t records;             /* records seen */
	uint64_t last_seq;            /* highest seq seen */
	uint64_t checkpoints;         /* checkpoints whose signature verified */
	uint64_t covered_seq;         /* highest seq a valid checkpoint covers */
	size_t n_problems;
	char **problems;              /* in seq order; points into the verifier */
	size_t n_notes;
	char **notes;                 /* not failures: e.g. the tail not yet signed */
};
/* The export's header names the highest checkpoint id it holds: a
 * checkpoint cut off the end of the file then shows. */
void gw_audit_verifier_expect_checkpoints(struct gw_audit_verifier *v, uint64_t last_id);
/* Runs the checks that need everything; fills out. Returns 0 when intact
 * (no problems), 1 when not. */
int gw_audit_verifier_finish(struct gw_audit_verifier *v, struct gw_audit_verdict *out);

/* Hex helpers (lower case). */
void gw_hex(const uint8_t *p, size_t n, char *out);              /* out: 2n + 1 */
int gw_unhex(const char *s, uint8_t *out, size_t max, size_t *n); /* 0 or -1 */

#endif
