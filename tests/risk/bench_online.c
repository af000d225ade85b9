/*
 * What the online risk rules cost per record (docs/risk.md, Performance):
 * the records of an export (gen-activity) are held in memory as the audit
 * writer hands them over, then fed as online: each copied the way the
 * hand-off copies it (one block), added to the rules (gw_risk_add_record),
 * and the whole-history rules evaluated (gw_risk_evaluate) at points of
 * the history. CPU time of this one thread, not wall time.
 *   bench-risk-online POLICY EXPORT
 */
#include "auditfmt.h"
#include "policy.h"
#include "risk.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

static double
cpu_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static char *
dup_(const char *s)
{
	return s ? strdup(s) : NULL;
}

/* The hand-off's copy (online.c's qrow_copy): one block per record. */
struct qrow { struct gw_audit_row row; char buf[]; };

static size_t
slen(const char *s)
{
	return s ? strlen(s) + 1 : 0;
}

static const char *
scopy(char **p, const char *s)
{
	char *d = *p;

	if (s == NULL)
		return NULL;
	memcpy(d, s, strlen(s) + 1);
	*p += strlen(s) + 1;
	return d;
}

static struct qrow *
qcopy(const struct gw_audit_row *r)
{
	struct qrow *q = malloc(sizeof(*q) + slen(r->action) + slen(r->outcome) + slen(r->reason) +
	                        slen(r->actor) + slen(r->exe) + slen(r->host) + slen(r->seal) +
	                        slen(r->detail));
	char *p;

	if (q == NULL)
		return NULL;
	p = q->buf;
	q->row = (struct gw_audit_row){ .seq = r->seq, .ts_ns = r->ts_ns, .uid = r->uid,
	                                .pid = r->pid, .application = r->application };
	q->row.action = scopy(&p, r->action);
	q->row.outcome = scopy(&p, r->outcome);
	q->row.reason = scopy(&p, r->reason);
	q->row.actor = scopy(&p, r->actor);
	q->row.exe = scopy(&p, r->exe);
	q->row.host = scopy(&p, r->host);
	q->row.seal = scopy(&p, r->seal);
	q->row.detail = scopy(&p, r->detail);
	return q;
}

int
main(int argc, char **argv)
{
	struct gw_policy *pol = NULL;
	struct gw_risk *r;
	struct gw_audit_row *rows = NULL;
	struct { uint64_t seq; int64_t ts; } *cps = NULL;
	size_t n = 0, cap = 0, ncp = 0, capcp = 0, next_cp = 0;
	char err[512], *line = NULL;
	size_t llen = 0;
	FILE *f;
	double add = 0, t;
	const double marks[] = { 0.1, 0.5, 1.0 };
	size_t m = 0;

	if (argc != 3) {
		fprintf(stderr, "usage: bench-risk-online POLICY EXPORT\n");
		return 2;
	}
	if (gw_policy_load(argv[1], &pol, err, sizeof(err)) != 0) {
		fprintf(stderr, "%s\n", err);
		return 2;
	}
	if ((f = fopen(argv[2], "re")) == NULL) {
		perror(argv[2]);
		return 2;
	}
	while (getline(&line, &llen, f) > 0) {
		json_t *o = json_loads(line, 0, NULL);
		const char *type = json_string_value(json_object_get(o, "type"));
		struct gw_audit_rowbuf buf;
		struct gw_audit_row row;

		if (type && !strcmp(type, "record") &&
		    gw_audit_row_from_json(o, &row, &buf, err, sizeof(err)) == 0) {
			if (n == cap && (rows = realloc(rows, (cap = cap ? cap * 2 : 4096) * sizeof(*rows))) == NULL)
				return 1;
			rows[n] = (struct gw_audit_row){ .seq = row.seq, .ts_ns = row.ts_ns,
				.action = dup_(row.action), .outcome = dup_(row.outcome),
				.reason = dup_(row.reason), .actor = dup_(row.actor), .uid = row.uid,
				.pid = row.pid, .exe = dup_(row.exe), .host = dup_(row.host),
				.seal = dup_(row.seal), .application = row.application,
				.detail = dup_(row.detail) };
			n++;
		} else if (type && !strcmp(type, "checkpoint")) {
			if (ncp == capcp && (cps = realloc(cps, (capcp = capcp ? capcp * 2 : 1024) * sizeof(*cps))) == NULL)
				return 1;
			cps[ncp].seq = (uint64_t)json_integer_value(json_object_get(o, "seq"));
			cps[ncp++].ts = json_integer_value(json_object_get(o, "ts_ns"));
		}
		json_decref(o);
	}
	free(line);
	fclose(f);
	if ((r = gw_risk_new(pol)) == NULL)
		return 1;
	printf("records %zu, checkpoints %zu\n", n, ncp);
	for (size_t i = 0; i < n; i++) {
		struct qrow *q;
		t = cpu_s();
		if ((q = qcopy(&rows[i])) == NULL || gw_risk_add_record(r, &q->row) != 0)
			return 1;
		free(q);
		add += cpu_s() - t;
		/* (checkpoints come from the store: not counted) */
		while (next_cp < ncp && cps[next_cp].seq <= rows[i].seq)
			gw_risk_add_checkpoint(r, cps[next_cp].seq, cps[next_cp].ts), next_cp++;
		if (m < 3 && i + 1 >= (size_t)(marks[m] * (double)n)) {
			const struct gw_risk_alert *al;
			size_t na;
			double e;
			t = cpu_s();
			if (gw_risk_evaluate(r, &al, &na) != 0)
				return 1;
			e = cpu_s() - t;
			printf("evaluation over %zu records: %.3f s CPU (%.3f us a record of the history), "
			       "%zu alerts\n", i + 1, e, e * 1e6 / (double)(i + 1), na);
			m++;
		}
	}
	printf("hand-off copy + gw_risk_add_record: %.3f us CPU a record\n", add * 1e6 / (double)n);
	gw_risk_free(&r);
	gw_policy_unref(&pol);
	return 0;
}
