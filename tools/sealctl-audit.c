/*
 * sealctl audit: verify (offline, from an export file or a fresh export; or
 * on the gateway, site by site), query with filters, export as JSON lines
 * or CSV. Verification needs only
 * the export and, to pin trust, the audit certificate or its CA: the chain
 * and the checkpoint signatures are recomputed here (gateway/auditfmt.c).
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>

#include "auditfmt.h"
#include "protocol.h"
#include "sealctl.h"

#define LINE_MAX_BYTES (2u * 1024u * 1024u)


static void
audit_usage(FILE *f)
{
	fprintf(f,
"usage: sealctl audit verify [--from-export FILE] [--cert FILE] [--ca FILE]\n"
"       sealctl audit verify --site S | --all-sites [--cert FILE] [--ca FILE]\n"
"       sealctl audit query [--site S | --all-sites] [--from DATE] [--to DATE]\n"
"                           [--seal ID] [--person ID] [--department ID]\n"
"                           [--application N] [--action A] [--outcome ok|denied|error]\n"
"                           [--digest HEX] [--limit N] [--json]\n"
"       sealctl audit export [--site S] [--format jsonl|csv] [-o FILE]\n"
"       sealctl audit checkpoint\n"
"\n"
"  verify      check the whole log offline: every record's hash and link, every\n"
"              checkpoint signature, the checkpoint chain (no checkpoint removed),\n"
"              and that each signed head is still there. Without --from-export it\n"
"              exports from the gateway first (auditors and seal admins). --cert\n"
"              pins the audit certificate (PEM or DER); --ca checks that the\n"
"              export's audit certificate is issued by CA. Without either it\n"
"              proves only that the export is consistent in itself.\n"
"              With --site S or --all-sites the gateway verifies each site's chain\n"
"              and checkpoints in the shared store, a line a site; --cert pins\n"
"              one site's certificate (--site only), --ca checks every site's.\n"
"  query       records you may read (yours; your departments' if you head one;\n"
"              all for auditors and seal admins), of the gateway's own site, site\n"
"              S, or every site (each row with its site). DATE: YYYY-MM-DD or\n"
"              YYYY-MM-DDTHH:MM[:SS] in UTC, or with Z / +HH:MM.\n"
"  export      records and signed checkpoints of one site (default the gateway's\n"
"              own), for verification elsewhere; every site: one export a site\n"
"  checkpoint  have the gateway sign its current head now\n"
"\n"
"Exit status: 0 intact / success, 1 not intact / refused, 2 usage, 3 gateway unreachable.\n");
}

/* ---- options ---- */

struct opts {
	const char *from_export, *cert, *ca, *format, *out;
	const char *from, *to, *seal, *person, *dept, *action, *outcome, *digest;
	const char *site;             /* --site S, or "*" for --all-sites */
	bool all_sites;
	long long application, limit;
};

static int
parse_opts(int argc, char **argv, struct opts *o)
{
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		const char **slot = NULL;

		if (!strcmp(a, "--from-export")) slot = &o->from_export;
		else if (!strcmp(a, "--cert")) slot = &o->cert;
		else if (!strcmp(a, "--ca")) slot = &o->ca;
		else if (!strcmp(a, "--format")) slot = &o->format;
		else if (!strcmp(a, "-o") || !strcmp(a, "--output")) slot = &o->out;
		else if (!strcmp(a, "--from")) slot = &o->from;
		else if (!strcmp(a, "--to")) slot = &o->to;
		else if (!strcmp(a, "--seal")) slot = &o->seal;
		else if (!strcmp(a, "--person")) slot = &o->person;
		else if (!strcmp(a, "--department")) slot = &o->dept;
		else if (!strcmp(a, "--action")) slot = &o->action;
		else if (!strcmp(a, "--outcome")) slot = &o->outcome;
		else if (!strcmp(a, "--digest")) slot = &o->digest;
		else if (!strcmp(a, "--site")) slot = &o->site;
		else if (!strcmp(a, "--all-sites")) {
			o->all_sites = true;
			continue;
		}
		else if (!strcmp(a, "--application") || !strcmp(a, "--limit")) {
			char *end = NULL;
			long long n;
			if (!v || (n = strtoll(v, &end, 10)) <= 0 || *end) {
				fprintf(stderr, "sealctl: %s needs a positive number\n", a);
				return -1;
			}
			if (!strcmp(a, "--limit"))
				o->limit = n;
			else
				o->application = n;
			i++;
			continue;
		} else {
			fprintf(stderr, "sealctl: audit: unknown option %s\n", a);
			return -1;
		}
		if (!v) {
			fprintf(stderr, "sealctl: %s needs a value\n", a);
			return -1;
		}
		*slot = v;
		i++;
	}
	if (o->all_sites) {
		if (o->site) {
			fprintf(stderr, "sealctl: --site and --all-sites: choose one\n");
			return -1;
		}
		o->site = "*";
	}
	return 0;
}

static const char *
jstr_or(const json_t *o, const char *k)
{
	const char *s = json_string_value(json_object_get(o, k));

	return s ? s : "-";
}

/* "YYYY-MM-DD[THH:MM[:SS]][Z|+HH:MM|-HH:MM]" (UTC when no zone) -> ns. */
static int
parse_date(const char *s, int64_t *ns)
{
	int y, mo, d, h = 0, mi = 0, se = 0, oh = 0, om = 0, n = 0;
	char sign = 0;
	const char *p;
	struct tm tm = { 0 };
	time_t t;

	if (sscanf(s, "%4d-%2d-%2d%n", &y, &mo, &d, &n) != 3)
		return -1;
	p = s + n;
	if (*p == 'T' || *p == ' ') {
		n = 0;
		if (sscanf(p + 1, "%2d:%2d%n", &h, &mi, &n) != 2)
			return -1;
		p += 1 + n;
		if (*p == ':') {
			n = 0;
			if (sscanf(p + 1, "%2d%n", &se, &n) != 1)
				return -1;
			p += 1 + n;
		}
	}
	if (*p == 'Z') {
		p++;
	} else if (*p == '+' || *p == '-') {
		sign = *p;
		n = 0;
		if (sscanf(p + 1, "%2d:%2d%n", &oh, &om, &n) != 2)
			return -1;
		p += 1 + n;
	}
	if (*p || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || se > 60)
		return -1;
	tm.tm_year = y - 1900;
	tm.tm_mon = mo - 1;
	tm.tm_mday = d;
	tm.tm_hour = h;
	tm.tm_min = mi;
	tm.tm_sec = se;
	t = timegm(&tm);
	if (sign)
		t += (sign == '+' ? -1 : 1) * (oh * 3600 + om * 60);
	*ns = (int64_t)t * 1000000000LL;
	return 0;
}

/* ---- certificates ---- */

static int
read_cert_file(const char *path, uint8_t **der, size_t *len)
{
	FILE *f = fopen(path, "re");
	X509 *x;
	unsigned char *p = NULL;
	int n;

	if (!f) {
		fprintf(stderr, "sealctl: %s: %s\n", path, strerror(errno));
		return -1;
	}
	x = PEM_read_X509(f, NULL, NULL, NULL);
	if (!x) {
		rewind(f);
		x = d2i_X509_fp(f, NULL);
	}
	fclose(f);
	if (!x) {
		fprintf(stderr, "sealctl: %s: not a PEM or DER certificate\n", path);
		return -1;
	}
	n = i2d_X509(x, &p);
	X509_free(x);
	if (n <= 0)
		return -1;
	*der = malloc((size_t)n);
	if (!*der) {
		OPENSSL_free(p);
		return -1;
	}
	memcpy(*der, p, (size_t)n);
	*len = (size_t)n;
	OPENSSL_free(p);
	return 0;
}

/* 0 when der is issued (directly or through the file's chain) by the CA
 * certificates in ca_path. */
static int
check_ca(const uint8_t *der, size_t len, const char *ca_path, char *err, size_t errlen)
{
	const unsigned char *p = der;
	X509 *x = d2i_X509(NULL, &p, (long)len);
	X509_STORE *store = X509_STORE_new();
	X509_STORE_CTX *ctx = X509_STORE_CTX_new();
	int rv = -1;

	if (!x || !store || !ctx) {
		snprintf(err, errlen, "the audit certificate cannot be read");
		goto out;
	}
	if (X509_STORE_load_file(store, ca_path) != 1) {
		snprintf(err, errlen, "%s: no CA certificate could be read", ca_path);
		goto out;
	}
	if (X509_STORE_CTX_init(ctx, store, x, NULL) != 1)
		goto out;
	if (X509_verify_cert(ctx) == 1)
		rv = 0;
	else
		snprintf(err, errlen, "the audit certificate is not issued by %s: %s", ca_path,
		         X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx)));
out:
	X509_STORE_CTX_free(ctx);
	X509_STORE_free(store);
	X509_free(x);
	return rv;
}

/* ---- verification ---- */

struct vstate {
	struct gw_audit_verifier *v;
	uint8_t *hdr_cert; size_t hdr_cert_len;
	bool have_header;
	int64_t upto;                 /* the header's head at export */
	struct gw_audit_rowbuf buf;
};

static void
feed(struct vstate *vs, const json_t *o, const char *where)
{
	const char *type = json_string_value(json_object_get(o, "type"));
	char err[256] = "";

	if (!type) {
		gw_audit_verifier_problem(vs->v, "%s: not an export item (no \"type\")", where);
		return;
	}
	if (!strcmp(type, "header")) {
		const char *fmt = json_string_value(json_object_get(o, "format"));
		const char *cert = json_string_value(json_object_get(o, "cert"));
		if (vs->have_header || !fmt || strcmp(fmt, "sealgate-audit-export") != 0 ||
		    json_integer_value(json_object_get(o, "version")) != 1) {
			gw_audit_verifier_problem(vs->v, "%s: not a sealgate audit export header (or a second one)",
			                          where);
			return;
		}
		vs->have_header = true;
		vs->upto = json_integer_value(json_object_get(o, "upto"));
		if (json_integer_value(json_object_get(o, "checkpoint_upto")) > 0)
			gw_audit_verifier_expect_checkpoints(vs->v,
				(uint64_t)json_integer_value(json_object_get(o, "checkpoint_upto")));
		if (cert && sg_b64_decode(cert, strlen(cert), &vs->hdr_cert, &vs->hdr_cert_len,
		                          GW_AUDIT_CERT_MAX) != 0)
			gw_audit_verifier_problem(vs->v, "%s: the audit certificate is not base64", where);
		return;
	}
	if (!strcmp(type, "record")) {
		struct gw_audit_row row;
		if (gw_audit_row_from_json(o, &row, &vs->buf, err, sizeof(err)) != 0) {
			json_int_t seq = json_integer_value(json_object_get(o, "seq"));
			gw_audit_verifier_problem(vs->v, "seq %lld (%s): record unreadable (changed): %s",
			                          (long long)seq, where, err);
			return;
		}
		gw_audit_verifier_add_record(vs->v, &row, where);
		return;
	}
	if (!strcmp(type, "checkpoint")) {
		struct gw_audit_checkpoint cp;
		uint8_t *sig = NULL, *cert = NULL;
		if (gw_audit_checkpoint_from_json(o, &cp, &sig, &cert, err, sizeof(err)) != 0) {
			gw_audit_verifier_problem(vs->v, "checkpoint (%s): unreadable (changed): %s", where, err);
			return;
		}
		if (!cp.cert) {
			cp.cert = vs->hdr_cert;
			cp.cert_len = vs->hdr_cert_len;
		}
		gw_audit_verifier_add_checkpoint(vs->v, &cp, where);
		free(sig);
		free(cert);
		return;
	}
	gw_audit_verifier_problem(vs->v, "%s: unknown item type \"%s\"", where, type);
}

/* Each item the verifier was fed, for a caller that reads the export in
 * the same pass (sealctl risk scan). rec, when set, is given the records
 * the line reader decoded without jansson (fn then the other items); with
 * fn alone every item is parsed by jansson for it. */
struct item_hook { sealctl_export_item_fn fn; sealctl_export_record_fn rec; void *ctx; };

/*
 * Reading and checking an export on two threads: this one reads each line,
 * decodes it (the line reader, or jansson) and hands it to the hook (the
 * risk rules), while a second feeds the verifier (each record's SHA-256,
 * the checkpoints' signatures) in the same order, a batch of lines behind.
 * Each batch owns the bytes its rows point into until the verifier is done
 * with it. Without a second thread the batches are verified in turn here.
 */
#define BATCH_ITEMS 1024
#define BATCH_ARENA (LINE_MAX_BYTES + 2 * GW_AUDIT_BIN_MAX + 4 * GW_AUDIT_HASH_LEN + 4096)
#define BATCHES 3

enum vitem_kind { VI_ROW, VI_JSON, VI_PROBLEM };

struct vitem {
	enum vitem_kind kind;
	struct gw_audit_row row;      /* VI_ROW: points into the batch's arena */
	json_t *o;                    /* VI_JSON: the verifier's reference */
	char *problem;                /* VI_PROBLEM */
	char where[32];
};

struct vbatch {
	struct vitem it[BATCH_ITEMS];
	size_t n;
	char *arena;
	size_t used;
};

struct vpipe {
	struct vstate *vs;
	struct gw_audit_rowbuf rb;    /* this thread's decoding (vs->buf is the verifier's) */
	struct vbatch b[BATCHES];
	pthread_mutex_t mu;
	pthread_cond_t cv;
	size_t head, tail;            /* batches queued: [tail, head) mod BATCHES, by count */
	bool done, threaded;
};

static void
batch_verify(struct vstate *vs, struct vbatch *b)
{
	for (size_t i = 0; i < b->n; i++) {
		struct vitem *it = &b->it[i];
		switch (it->kind) {
		case VI_ROW:
			gw_audit_verifier_add_record(vs->v, &it->row, it->where);
			break;
		case VI_JSON:
			feed(vs, it->o, it->where);
			json_decref(it->o);
			it->o = NULL;
			break;
		case VI_PROBLEM:
			gw_audit_verifier_problem(vs->v, "%s", it->problem ? it->problem : "out of memory");
			free(it->problem);
			it->problem = NULL;
			break;
		}
	}
	b->n = 0;
	b->used = 0;
}

static void *
verify_thread(void *arg)
{
	struct vpipe *vp = arg;

	pthread_mutex_lock(&vp->mu);
	for (;;) {
		struct vbatch *b;
		while (vp->tail == vp->head && !vp->done)
			pthread_cond_wait(&vp->cv, &vp->mu);
		if (vp->tail == vp->head)
			break;
		b = &vp->b[vp->tail % BATCHES];
		pthread_mutex_unlock(&vp->mu);
		batch_verify(vp->vs, b);
		pthread_mutex_lock(&vp->mu);
		vp->tail++;
		pthread_cond_broadcast(&vp->cv);
	}
	pthread_mutex_unlock(&vp->mu);
	return NULL;
}

/* The batch being filled; NULL when none is free (out of memory). */
static struct vbatch *
batch_current(struct vpipe *vp)
{
	struct vbatch *b;

	if (!vp->threaded)
		return &vp->b[0];
	pthread_mutex_lock(&vp->mu);
	while (vp->head - vp->tail >= BATCHES)   /* the slot to fill is still queued */
		pthread_cond_wait(&vp->cv, &vp->mu);
	b = &vp->b[vp->head % BATCHES];
	pthread_mutex_unlock(&vp->mu);
	return b;
}

static void
batch_send(struct vpipe *vp)
{
	if (!vp->threaded) {
		batch_verify(vp->vs, &vp->b[0]);
		return;
	}
	pthread_mutex_lock(&vp->mu);
	vp->head++;
	pthread_cond_broadcast(&vp->cv);
	pthread_mutex_unlock(&vp->mu);
}

static struct vitem *
batch_add(struct vpipe *vp, struct vbatch **bp, size_t need)
{
	struct vbatch *b = *bp;

	if (b->n == BATCH_ITEMS || BATCH_ARENA - b->used < need) {
		batch_send(vp);
		b = *bp = batch_current(vp);
	}
	return &b->it[b->n++];
}

static void __attribute__((format(printf, 4, 5)))
batch_problem(struct vpipe *vp, struct vbatch **bp, const char *where, const char *fmt, ...)
{
	struct vitem *it = batch_add(vp, bp, 0);
	va_list ap;

	it->kind = VI_PROBLEM;
	snprintf(it->where, sizeof(it->where), "%s", where);
	va_start(ap, fmt);
	if (vasprintf(&it->problem, fmt, ap) < 0)
		it->problem = NULL;
	va_end(ap);
}

/* A decoded digest moved into the arena, where it outlives the rowbuf. */
static const uint8_t *
arena_keep(struct vbatch *b, const uint8_t *p, size_t n)
{
	uint8_t *d;

	if (!p)
		return NULL;
	d = (uint8_t *)b->arena + b->used;
	memcpy(d, p, n);
	b->used += n;
	return d;
}

static int
feed_file(struct vstate *vs, const char *path, const struct item_hook *hook)
{
	FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "re");
	struct vpipe *vp = NULL;
	struct vbatch *b;
	pthread_t th;
	char *line = NULL, where[32];
	size_t cap = 0;
	ssize_t n;
	unsigned long long lineno = 0;
	bool fast = !hook || !hook->fn || hook->rec;
	int rv = -1;

	if (!f) {
		fprintf(stderr, "sealctl: %s: %s\n", path, strerror(errno));
		return -1;
	}
	if ((vp = calloc(1, sizeof(*vp))) == NULL)
		goto out;
	vp->vs = vs;
	for (int i = 0; i < BATCHES; i++)
		if ((vp->b[i].arena = malloc(BATCH_ARENA)) == NULL)
			goto out;
	pthread_mutex_init(&vp->mu, NULL);
	pthread_cond_init(&vp->cv, NULL);
	vp->threaded = pthread_create(&th, NULL, verify_thread, vp) == 0;
	b = batch_current(vp);
	while ((n = getline(&line, &cap, f)) >= 0) {
		json_t *o;
		json_error_t je;
		struct vitem *it;

		lineno++;
		snprintf(where, sizeof(where), "line %llu", lineno);
		if (n == 0 || (n == 1 && line[0] == '\n'))
			continue;
		if ((size_t)n > LINE_MAX_BYTES) {
			batch_problem(vp, &b, where, "%s: longer than %u bytes", where, LINE_MAX_BYTES);
			continue;
		}
		/* Records, nearly every line, without a JSON tree; line 1 is
		 * the header. The line is decoded in place in the batch's
		 * arena; a line the reader leaves goes to jansson as read. */
		if (lineno > 1 && fast) {
			struct gw_audit_row *row;
			char *copy;
			it = batch_add(vp, &b, (size_t)n + 2 * GW_AUDIT_BIN_MAX + 2 * GW_AUDIT_HASH_LEN);
			copy = b->arena + b->used;
			memcpy(copy, line, (size_t)n);
			row = &it->row;
			if (gw_audit_row_from_line(copy, (size_t)n, row, &vp->rb) == 0) {
				b->used += (size_t)n;
				row->doc_digest = arena_keep(b, row->doc_digest, row->doc_digest_len);
				row->signed_digest = arena_keep(b, row->signed_digest, row->signed_digest_len);
				row->prev_hash = arena_keep(b, row->prev_hash, row->prev_hash_len);
				row->hash = arena_keep(b, row->hash, row->hash_len);
				it->kind = VI_ROW;
				memcpy(it->where, where, sizeof(where));
				if (hook && hook->rec && hook->rec(hook->ctx, row) != 0)
					goto out;
				continue;
			}
			b->n--;   /* the item is taken again below */
		}
		o = json_loadb(line, (size_t)n, JSON_REJECT_DUPLICATES, &je);
		if (!o) {
			batch_problem(vp, &b, where, "%s: not JSON (%s) — the line was damaged", where, je.text);
			continue;
		}
		if (lineno == 1 && strcmp(json_string_value(json_object_get(o, "type")) ?: "", "header") != 0)
			batch_problem(vp, &b, where, "line 1: the export header is missing");
		if (hook && hook->fn && hook->fn(hook->ctx, o) != 0) {
			json_decref(o);
			goto out;
		}
		it = batch_add(vp, &b, 0);
		it->kind = VI_JSON;
		it->o = o;
		memcpy(it->where, where, sizeof(where));
	}
	rv = 0;
out:
	if (vp) {
		if (vp->b[0].arena && vp->b[BATCHES - 1].arena) {
			/* What was read is verified, even when the hook stopped. */
			batch_send(vp);
			if (vp->threaded) {
				pthread_mutex_lock(&vp->mu);
				vp->done = true;
				pthread_cond_broadcast(&vp->cv);
				pthread_mutex_unlock(&vp->mu);
				pthread_join(th, NULL);
			}
			pthread_mutex_destroy(&vp->mu);
			pthread_cond_destroy(&vp->cv);
		}
		for (int i = 0; i < BATCHES; i++)
			free(vp->b[i].arena);
		free(vp);
	}
	free(line);
	if (f != stdin)
		fclose(f);
	return rv;
}

/* Pages of audit_export: calls fn for the header and each item. */
typedef int (*export_fn)(void *ctx, const json_t *item, unsigned long long n);

static int
fetch_export(struct cli *c, const char *site, export_fn fn, void *ctx)
{
	json_int_t after = 0, upto = 0, cp_upto = 0;
	unsigned long long n = 0;
	bool was = c->json;
	int rv = 1;

	c->json = false;   /* pages are written by fn, not dumped */
	for (;;) {
		json_t *req = sg_request_new("audit_export"), *rep, *it, *next;
		size_t i;

		json_object_set_new(req, "after", json_integer(after));
		if (site)
			json_object_set_new(req, "site", json_string(site));
		if (upto)
			json_object_set_new(req, "upto", json_integer(upto));
		if (cp_upto)
			json_object_set_new(req, "checkpoint_upto", json_integer(cp_upto));
		rep = cli_call(c, req);
		if (!sg_reply_is_ok(rep, NULL, NULL, NULL)) {
			cli_die_reply(rep);
			json_decref(rep);
			goto out;
		}
		if (after == 0) {
			it = json_object_get(rep, "header");
			if (!it || fn(ctx, it, n++) != 0) {
				json_decref(rep);
				goto out;
			}
			upto = json_integer_value(json_object_get(rep, "upto"));
			/* Later pages hold no checkpoint signed after the first. */
			cp_upto = json_integer_value(json_object_get(rep, "checkpoint_upto"));
		}
		json_array_foreach(json_object_get(rep, "items"), i, it)
			if (fn(ctx, it, n++) != 0) {
				json_decref(rep);
				goto out;
			}
		next = json_object_get(rep, "next");
		if (!json_is_integer(next) || json_integer_value(next) <= after) {
			json_decref(rep);
			break;
		}
		after = json_integer_value(next);
		json_decref(rep);
	}
	rv = 0;
out:
	c->json = was;
	return rv;
}

static int
feed_item(void *ctx, const json_t *item, unsigned long long n)
{
	char where[64];

	snprintf(where, sizeof(where), "export item %llu", n + 1);
	feed(ctx, item, where);
	return 0;
}

static int
cmd_verify(struct cli *c, const struct opts *o, FILE *out, const struct item_hook *hook)
{
	struct vstate vs = { 0 };
	struct gw_audit_verdict vd;
	uint8_t *pin = NULL;
	size_t pin_len = 0;
	char err[512];
	int rv = 1, bad;
	bool cut;

	vs.v = gw_audit_verifier_new();
	if (!vs.v)
		return 1;
	if (o->cert) {
		if (read_cert_file(o->cert, &pin, &pin_len) != 0)
			goto out;
		gw_audit_verifier_pin_cert(vs.v, pin, pin_len);
	}
	if (o->from_export) {
		if (feed_file(&vs, o->from_export, hook) != 0)
			goto out;
	} else {
		if (cli_login(c) != 0)
			goto out;
		if (fetch_export(c, NULL, feed_item, &vs) != 0) {
			cli_logout(c);
			goto out;
		}
		cli_logout(c);
	}
	if (!vs.have_header)
		gw_audit_verifier_problem(vs.v, "the export has no header");
	if (o->ca) {
		const uint8_t *cert = pin ? pin : vs.hdr_cert;
		size_t len = pin ? pin_len : vs.hdr_cert_len;
		if (!cert)
			gw_audit_verifier_problem(vs.v, "no audit certificate to check against %s", o->ca);
		else if (check_ca(cert, len, o->ca, err, sizeof(err)) != 0)
			gw_audit_verifier_problem(vs.v, "%s", err);
	}
	bad = gw_audit_verifier_finish(vs.v, &vd);
	/* The header's head against the file's last record (the fresh
	 * checkpoint and the checkpoint ids normally say this already). */
	cut = vs.have_header && vs.upto > 0 && (uint64_t)vs.upto > vd.last_seq;
	if (!bad && !cut) {
		fprintf(out, "audit log intact: %llu records (seq 1 to %llu), %llu signed checkpoints verified, "
		       "signed up to seq %llu\n", (unsigned long long)vd.records,
		       (unsigned long long)vd.last_seq, (unsigned long long)vd.checkpoints,
		       (unsigned long long)vd.covered_seq);
		rv = 0;
	} else {
		size_t np = vd.n_problems + (cut ? 1 : 0);
		fprintf(out, "audit log NOT intact (%zu problem%s):\n", np, np == 1 ? "" : "s");
		for (size_t i = 0; i < vd.n_problems; i++)
			fprintf(out, "  %s\n", vd.problems[i]);
		if (cut)
			fprintf(out, "  seq %llu: missing — the export header says the log went to seq %lld but the "
			       "file ends at seq %llu: the tail was truncated\n",
			       (unsigned long long)vd.last_seq + 1, (long long)vs.upto,
			       (unsigned long long)vd.last_seq);
	}
	for (size_t i = 0; i < vd.n_notes; i++)
		fprintf(out, "note: %s\n", vd.notes[i]);
	if (!o->cert && !o->ca) {
		/* Said on stdout with the verdict and on stderr, where a person
		 * running it sees it even when the verdict goes to a file. */
		static const char unpinned[] =
			"WARNING: NO AUDIT CERTIFICATE PINNED (--cert or --ca): the checkpoints were checked\n"
			"WARNING: only with the certificate the export itself carries. This proves that the\n"
			"WARNING: export is internally consistent, NOT that the gateway's audit key signed it:\n"
			"WARNING: anyone could have rewritten the log and re-signed it with a key of their own.\n"
			"WARNING: Pin the audit certificate with --cert FILE, or its issuer with --ca FILE.\n";
		fputs(unpinned, out);
		fflush(out);
		if (out != stderr)
			fputs(unpinned, stderr);
	}
out:
	free(pin);
	free(vs.hdr_cert);
	gw_audit_verifier_free(&vs.v);
	return rv;
}

/* ---- verification on the gateway, site by site ---- */

static int
cmd_verify_sites(struct cli *c, const struct opts *o)
{
	json_t *req, *rep = NULL, *site;
	uint8_t *pin = NULL;
	size_t pin_len = 0, i, nsites = 0, nbad = 0;
	char err[512];
	int rv = 1;

	if (o->from_export) {
		fprintf(stderr, "sealctl: --from-export verifies one site's export: no --site there\n");
		return 2;
	}
	if (o->cert && !strcmp(o->site, "*")) {
		fprintf(stderr, "sealctl: --cert pins one site's audit certificate: with --all-sites "
		        "use --ca (or verify site by site with --site S --cert FILE)\n");
		return 2;
	}
	if (o->cert && read_cert_file(o->cert, &pin, &pin_len) != 0)
		return 1;
	if (cli_login(c) != 0)
		goto out;
	req = sg_request_new("audit_verify");
	json_object_set_new(req, "site", json_string(o->site));
	if (pin) {
		char *b = sg_b64_encode(pin, pin_len);
		if (!b) {
			json_decref(req);
			cli_logout(c);
			goto out;
		}
		json_object_set_new(req, "cert", json_string(b));
		free(b);
	}
	rep = cli_call(c, req);
	cli_logout(c);
	if (!sg_reply_is_ok(rep, NULL, NULL, NULL)) {
		cli_die_reply(rep);
		goto out;
	}
	json_array_foreach(json_object_get(rep, "sites"), i, site) {
		const char *state = json_string_value(json_object_get(site, "state"));
		bool bad = !state || strcmp(state, "intact") != 0;
		json_t *certs = json_object_get(site, "certs"), *v;
		size_t j, ncerts = json_array_size(certs);

		/* Each certificate a site's checkpoints were signed with must
		 * chain to the CA, not only the newest. */
		if (o->ca && !bad && json_integer_value(json_object_get(site, "checkpoints")) > 0) {
			if (ncerts == 0) {
				snprintf(err, sizeof(err), "no audit certificate to check against %s", o->ca);
				bad = true;
			}
			json_array_foreach(certs, j, v) {
				const char *b = json_string_value(v);
				uint8_t *der = NULL;
				size_t len = 0;
				if (!b || sg_b64_decode(b, strlen(b), &der, &len, GW_AUDIT_CERT_MAX) != 0) {
					snprintf(err, sizeof(err), "an audit certificate is not base64");
					bad = true;
				} else if (check_ca(der, len, o->ca, err, sizeof(err)) != 0) {
					bad = true;
				}
				free(der);
				if (bad)
					break;
			}
			if (bad) {
				if (!c->json)
					printf("site %s: NOT intact: %s\n", jstr_or(site, "site"), err);
				nbad++;
				nsites++;
				continue;
			}
		}
		nsites++;
		if (bad)
			nbad++;
		if (c->json)
			continue;   /* the reply was printed as it came */
		printf("%s\n", jstr_or(site, "line"));
		json_array_foreach(json_object_get(site, "problems"), j, v)
			if (j > 0)
				printf("  %s\n", json_string_value(v) ?: "-");
		if (json_integer_value(json_object_get(site, "problems_total")) >
		    (json_int_t)json_array_size(json_object_get(site, "problems")))
			printf("  … %lld problems in all\n",
			       (long long)json_integer_value(json_object_get(site, "problems_total")));
		json_array_foreach(json_object_get(site, "notes"), j, v)
			printf("  note: %s\n", json_string_value(v) ?: "-");
	}
	if (nsites == 0 && !c->json)
		printf("no site with audit records%s%s\n", strcmp(o->site, "*") ? ": " : "",
		       strcmp(o->site, "*") ? o->site : "");
	if (!o->cert && !o->ca && !c->json)
		fputs("WARNING: NO AUDIT CERTIFICATE PINNED (--cert or --ca): each checkpoint was "
		      "checked with the certificate\nWARNING: stored beside it, which proves the chain "
		      "consistent, NOT that the site's audit key signed it.\n", stdout);
	rv = nbad ? 1 : 0;
out:
	json_decref(rep);
	free(pin);
	return rv;
}

int
sealctl_audit_verify_export(const char *path, const char *cert, const char *ca, FILE *out,
                            sealctl_export_item_fn fn, void *ctx)
{
	struct opts o = { .from_export = path, .cert = cert, .ca = ca };
	struct item_hook hook = { fn, NULL, ctx };

	return cmd_verify(NULL, &o, out, &hook);
}

int
sealctl_audit_verify_export_records(const char *path, const char *cert, const char *ca, FILE *out,
                                    sealctl_export_item_fn fn, sealctl_export_record_fn rec,
                                    void *ctx)
{
	struct opts o = { .from_export = path, .cert = cert, .ca = ca };
	struct item_hook hook = { fn, rec, ctx };

	return cmd_verify(NULL, &o, out, &hook);
}

/* ---- export ---- */

static void
csv_field(FILE *f, const json_t *v)
{
	const char *s;
	char num[32];

	if (!v || json_is_null(v))
		return;
	if (json_is_integer(v)) {
		snprintf(num, sizeof(num), "%lld", (long long)json_integer_value(v));
		s = num;
	} else {
		s = json_string_value(v);
		if (!s)
			return;
	}
	/* Quoted when needed (RFC 4180); a leading = + - @ is prefixed with '
	 * so a spreadsheet never runs a record's text as a formula. */
	if (strpbrk(s, ",\"\r\n") || strchr("=+-@", s[0]) != NULL) {
		fputc('"', f);
		if (s[0] && strchr("=+-@", s[0]))
			fputc('\'', f);
		for (; *s; s++) {
			if (*s == '"')
				fputc('"', f);
			fputc(*s, f);
		}
		fputc('"', f);
	} else {
		fputs(s, f);
	}
}

static const char *const csv_cols[] = {
	"type", "seq", "time", "local_time", "zone", "ts_ns", "action", "outcome", "reason", "actor",
	"uid", "pid", "exe", "host", "seal", "application", "doc_digest", "signed_digest",
	"mechanism", "detail", "prev_hash", "hash", "alg", "signature", "cert",
};

struct wstate { FILE *f; bool csv; };

static int
write_item(void *ctx, const json_t *item, unsigned long long n)
{
	struct wstate *w = ctx;

	if (!w->csv) {
		if (json_dumpf(item, w->f, JSON_COMPACT) != 0)
			return -1;
		fputc('\n', w->f);
		return ferror(w->f) ? -1 : 0;
	}
	if (n == 0) {
		for (size_t i = 0; i < sizeof(csv_cols) / sizeof(csv_cols[0]); i++)
			fprintf(w->f, "%s%s", i ? "," : "", csv_cols[i]);
		fputs("\r\n", w->f);
	}
	for (size_t i = 0; i < sizeof(csv_cols) / sizeof(csv_cols[0]); i++) {
		if (i)
			fputc(',', w->f);
		csv_field(w->f, json_object_get(item, csv_cols[i]));
	}
	fputs("\r\n", w->f);
	return ferror(w->f) ? -1 : 0;
}

static int
cmd_export(struct cli *c, const struct opts *o)
{
	struct wstate w = { .f = stdout };
	int rv;

	if (o->format && strcmp(o->format, "jsonl") && strcmp(o->format, "csv")) {
		fprintf(stderr, "sealctl: --format is jsonl or csv\n");
		return 2;
	}
	/* Each site's chain has its own head, checkpoints and audit key, and
	 * the export format holds one chain: every site is an export a site. */
	if (o->site && !strcmp(o->site, "*")) {
		fprintf(stderr, "sealctl: an export holds one site's chain (its head, its checkpoints, "
		        "its audit key): export each site with --site S, or check them all with "
		        "sealctl audit verify --all-sites\n");
		return 2;
	}
	w.csv = o->format && !strcmp(o->format, "csv");
	if (o->out && strcmp(o->out, "-")) {
		w.f = fopen(o->out, "we");
		if (!w.f) {
			fprintf(stderr, "sealctl: %s: %s\n", o->out, strerror(errno));
			return 1;
		}
	}
	if (cli_login(c) != 0) {
		if (w.f != stdout)
			fclose(w.f);
		return 1;
	}
	rv = fetch_export(c, o->site, write_item, &w);
	cli_logout(c);
	if (fflush(w.f) != 0 || (w.f != stdout && fclose(w.f) != 0)) {
		fprintf(stderr, "sealctl: writing the export: %s\n", strerror(errno));
		rv = 1;
	}
	return rv;
}

/* ---- query ---- */

static const char *
jstr(const json_t *o, const char *k)
{
	const char *s = json_string_value(json_object_get(o, k));

	return s ? s : "-";
}

static int
cmd_query(struct cli *c, const struct opts *o)
{
	long long want = o->limit ? o->limit : 100, shown = 0;
	json_int_t after = 0;
	int64_t from = 0, to = 0;
	int rv = 1;

	if ((o->from && parse_date(o->from, &from) != 0) || (o->to && parse_date(o->to, &to) != 0)) {
		fprintf(stderr, "sealctl: dates are YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS][Z|+HH:MM]\n");
		return 2;
	}
	if (cli_login(c) != 0)
		return 1;
	while (shown < want) {
		json_t *req = sg_request_new("audit_query"), *rep, *r, *next;
		size_t i;

#define SETS(k, v) do { if (v) json_object_set_new(req, k, json_string(v)); } while (0)
		SETS("seal", o->seal);
		SETS("person", o->person);
		SETS("department", o->dept);
		SETS("action", o->action);
		SETS("outcome", o->outcome);
		SETS("digest", o->digest);
		SETS("site", o->site);
#undef SETS
		if (from)
			json_object_set_new(req, "from_ns", json_integer(from));
		if (to)
			json_object_set_new(req, "to_ns", json_integer(to));
		if (o->application)
			json_object_set_new(req, "application", json_integer(o->application));
		json_object_set_new(req, "limit", json_integer(want - shown > 1000 ? 1000 : want - shown));
		if (after)
			json_object_set_new(req, "after", json_integer(after));
		rep = cli_call(c, req);
		if (!sg_reply_is_ok(rep, NULL, NULL, NULL)) {
			cli_die_reply(rep);
			json_decref(rep);
			goto out;
		}
		if (!c->json && after == 0)
			printf("# records you may read: %s%s%s\n"
			       "%-*s%-6s %-24s %-30s %-10s %-16s %-7s %-9s %-5s %s\n", jstr(rep, "scope"),
			       o->site ? "; site: " : "",
			       o->site ? (strcmp(o->site, "*") ? o->site : "every site") : "",
			       o->site ? 11 : 0, o->site ? "site" : "", "seq", "time (UTC)", "local time (seal's zone)", "actor", "action",
			       "outcome", "seal", "app", "reason / digest");
		json_array_foreach(json_object_get(rep, "records"), i, r) {
			if (!c->json) {
				const char *reason = json_string_value(json_object_get(r, "reason"));
				const char *dig = json_string_value(json_object_get(r, "doc_digest"));
				if (!dig)
					dig = json_string_value(json_object_get(r, "signed_digest"));
				if (o->site)
					printf("%-10s ", jstr(r, "site"));
				printf("%-6lld %-24s %-30s %-10s %-16s %-7s %-9s %-5lld %s%s%.16s\n",
				       (long long)json_integer_value(json_object_get(r, "seq")),
				       jstr(r, "time"), jstr(r, "local_time"), jstr(r, "actor"),
				       jstr(r, "action"), jstr(r, "outcome"), jstr(r, "seal"),
				       (long long)json_integer_value(json_object_get(r, "application")),
				       reason ? reason : "", reason || !dig ? "" : "digest ",
				       reason ? "" : (dig ? dig : ""));
			}
			shown++;
		}
		next = json_object_get(rep, "next");
		if (!json_is_integer(next) || json_integer_value(next) <= after) {
			json_decref(rep);
			break;
		}
		after = json_integer_value(next);
		json_decref(rep);
	}
	rv = 0;
out:
	cli_logout(c);
	return rv;
}

static int
cmd_checkpoint(struct cli *c)
{
	json_t *rep;
	int rv = 1;

	if (cli_login(c) != 0)
		return 1;
	rep = cli_call(c, sg_request_new("audit_checkpoint"));
	if (sg_reply_is_ok(rep, NULL, NULL, NULL)) {
		if (!c->json)
			printf("checkpoint signed at seq %lld\n",
			       (long long)json_integer_value(json_object_get(rep, "seq")));
		rv = 0;
	} else {
		cli_die_reply(rep);
	}
	json_decref(rep);
	cli_logout(c);
	return rv;
}

int
sealctl_audit(struct cli *c, int argc, char **argv)
{
	struct opts o = { 0 };

	if (argc < 1 || !strcmp(argv[0], "--help") || !strcmp(argv[0], "-h")) {
		audit_usage(argc < 1 ? stderr : stdout);
		return argc < 1 ? 2 : 0;
	}
	if (parse_opts(argc, argv, &o) != 0) {
		audit_usage(stderr);
		return 2;
	}
	if (!strcmp(argv[0], "verify"))
		return o.site ? cmd_verify_sites(c, &o) : cmd_verify(c, &o, stdout, NULL);
	if (!strcmp(argv[0], "query"))
		return cmd_query(c, &o);
	if (!strcmp(argv[0], "export"))
		return cmd_export(c, &o);
	if (!strcmp(argv[0], "checkpoint") && argc == 1)
		return cmd_checkpoint(c);
	audit_usage(stderr);
	return 2;
}
