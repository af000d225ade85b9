/*
 * The audit trail's gateway operations (docs/protocol.md, "audit_*"):
 * query with filters and paging, export of records and signed checkpoints
 * for offline verification, and a checkpoint on demand. Who may read what
 * is decided here, once, for all three.
 */
#ifndef GW_AUDIT_OPS_H
#define GW_AUDIT_OPS_H

#include <jansson.h>

#include "auditfmt.h"
#include "dispatch.h"
#include "store.h"

#ifndef SG_OP_AUDIT_QUERY
#define SG_OP_AUDIT_QUERY      "audit_query"
#define SG_OP_AUDIT_EXPORT     "audit_export"
#define SG_OP_AUDIT_CHECKPOINT "audit_checkpoint"
#endif
#define SG_OP_AUDIT_VERIFY     "audit_verify"

#define GW_AUDIT_QUERY_LIMIT_MAX  1000   /* records per reply */
#define GW_AUDIT_EXPORT_LIMIT_MAX 2000   /* items per export page */

/* All need a session (NEED_SESSION). */
json_t *gw_op_audit_query(struct gw_req *r);
json_t *gw_op_audit_export(struct gw_req *r);
json_t *gw_op_audit_checkpoint(struct gw_req *r);
/* Each site's chain and signed checkpoints verified here, one verdict a
 * site (auditors and seal admins). */
json_t *gw_op_audit_verify(struct gw_req *r);
/* usage: ok signatures of the records the caller may read, counted by
 * site, seal, department or day (UTC) over [from, to) (epoch seconds). */
json_t *gw_op_usage(struct gw_req *r);

/* One site's verdict: r 0 intact, 1 not, -1 unreadable (err says why);
 * certs: the distinct audit certificates of its checkpoints (DER, base64
 * strings), for the caller's --ca check. */
typedef int (*gw_audit_site_fn)(void *arg, const char *site, int r,
                                const struct gw_audit_verdict *vd, json_t *certs,
                                const char *err);
/* Verifies which (NULL: st's own site; "*": every site with records in the
 * store and, on PostgreSQL, every site of policy when given — so that a
 * site whose records were all removed is still named; else that site) with gw_audit_verify_full on a handle scoped to
 * each site: st itself for its own site, one opened from url (read only:
 * nothing claimed, nothing written) for any other. fn is called once a
 * site, sites in name order. 0, or -1 with err when the sites could not be
 * listed or fn returned non-zero. */
struct gw_policy;
int gw_audit_verify_sites(struct gw_store *st, const char *url, const char *which,
                          const struct gw_policy *policy, const uint8_t *pin, size_t pin_len, gw_audit_site_fn fn, void *arg,
                          char *err, size_t errlen);
/* The line people read for one site's verdict ("site a: intact, …"). */
void gw_audit_site_line(const char *site, int r, const struct gw_audit_verdict *vd,
                        const char *err, char *out, size_t outlen);

#endif
