/*
 * sealctl risk scan and sealctl report: the risk rules (gateway/risk/)
 * run offline over an audit export on an auditor's machine, after the
 * export was verified the way `sealctl audit verify` does it, and the
 * monthly audit report as one self-contained HTML file with inline SVG
 * charts (no script, no network), or as PDF (report-doc.c). docs/risk.md.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "auditfmt.h"
#include "policy.h"
#include "report-doc.h"
#include "risk.h"
#include "sealctl.h"
#include "sg-config.h"

#define NS 1000000000LL
#define LINE_MAX_BYTES (2u * 1024u * 1024u)

enum { EXIT_CLEAN = 0, EXIT_ALERTS = 1, EXIT_USAGE = 2, EXIT_UNVERIFIED = 3 };

static const char no_verify_warning[] =
	"WARNING: THE EXPORT WAS NOT VERIFIED (--no-verify): its records may have been changed,\n"
	"WARNING: removed or made up, and the alerts below are only as good as the file.\n";

#define REPORT_EXPORTS_MAX 64   /* sites in one report */

struct ropts {
	const char *from_export, *policy, *cert, *ca, *period, *out, *site, *format;
	const char *exports[REPORT_EXPORTS_MAX];   /* each --from-export (report) */
	size_t n_exports;
	bool json, no_verify;
};

static int
parse_ropts(int argc, char **argv, struct ropts *o, bool report)
{
	static const struct option opts[] = {
		{ "from-export", required_argument, NULL, 'f' }, { "policy", required_argument, NULL, 'p' },
		{ "cert", required_argument, NULL, 'c' }, { "ca", required_argument, NULL, 'a' },
		{ "period", required_argument, NULL, 'P' }, { "output", required_argument, NULL, 'o' },
		{ "json", no_argument, NULL, 'j' }, { "no-verify", no_argument, NULL, 'n' },
		{ "site", required_argument, NULL, 'S' }, { "format", required_argument, NULL, 'F' },
		{ NULL, 0, NULL, 0 },
	};
	int ch;

	o->policy = SG_SYSCONFDIR "/policy.yaml";
	optind = 0;
	while ((ch = getopt_long(argc, argv, "o:", opts, NULL)) != -1) {
		switch (ch) {
		case 'f':
			if (o->n_exports == REPORT_EXPORTS_MAX) {
				fprintf(stderr, "sealctl: at most %d exports\n", REPORT_EXPORTS_MAX);
				return -1;
			}
			o->from_export = o->exports[o->n_exports++] = optarg;
			break;
		case 'p': o->policy = optarg; break;
		case 'c': o->cert = optarg; break;
		case 'a': o->ca = optarg; break;
		case 'P': o->period = optarg; break;
		case 'o': o->out = optarg; break;
		case 'j': o->json = true; break;
		case 'n': o->no_verify = true; break;
		case 'S': o->site = optarg; break;
		case 'F': o->format = optarg; break;
		default: return -1;
		}
	}
	if (optind != argc || !o->from_export || (report && (!o->period || !o->out)) ||
	    (!report && (o->period || o->out || o->site || o->format || o->n_exports > 1)))
		return -1;
	return 0;
}

/* ---- reading the export ---- */

#define COPY_MAX 16384                /* a record line decoded in place; longer: jansson */

typedef void (*row_fn)(void *ctx, const struct gw_audit_row *row);

struct feeder {
	struct gw_risk *r;
	row_fn fn;                    /* each record also goes here (the report) */
	void *ctx;
	uint64_t records;
	struct gw_audit_rowbuf buf;
	bool oom;
};

/* One record to the engine (and the report). 0, or -1 on ENOMEM. */
static int
feed_row(void *ctx, const struct gw_audit_row *row)
{
	struct feeder *fd = ctx;

	if (gw_risk_add_record(fd->r, row) != 0) {
		fd->oom = true;
		return -1;
	}
	if (fd->fn)
		fd->fn(fd->ctx, row);
	fd->records++;
	return 0;
}

/* One export item to the engine: records and checkpoints; anything that
 * does not parse was the verifier's business, and under --no-verify is
 * skipped. 0, or -1 on ENOMEM. */
static int
feed_item(void *ctx, const json_t *o)
{
	struct feeder *fd = ctx;
	const char *type = json_string_value(json_object_get(o, "type"));
	char err[256];

	if (type && !strcmp(type, "record")) {
		struct gw_audit_row row;
		if (gw_audit_row_from_json(o, &row, &fd->buf, err, sizeof(err)) != 0)
			return 0;
		return feed_row(fd, &row);
	} else if (type && !strcmp(type, "checkpoint")) {
		json_t *seq = json_object_get(o, "seq"), *ts = json_object_get(o, "ts_ns");
		if (json_is_integer(seq) && json_is_integer(ts) &&
		    gw_risk_add_checkpoint(fd->r, (uint64_t)json_integer_value(seq),
		                           json_integer_value(ts)) != 0) {
			fd->oom = true;
			return -1;
		}
	}
	return 0;
}

/* The export at path, unverified (--no-verify), to the engine. */
static int
read_export(const char *path, struct feeder *fd)
{
	FILE *f = fopen(path, "re");
	char *line = NULL, *copy = NULL;
	size_t cap = 0;
	ssize_t n;
	int rv = -1;

	if (!f) {
		fprintf(stderr, "sealctl: %s: %s\n", path, strerror(errno));
		return -1;
	}
	if ((copy = malloc(COPY_MAX)) == NULL)
		goto out;
	while ((n = getline(&line, &cap, f)) >= 0) {
		json_t *o;
		if (n <= 1 || (size_t)n > LINE_MAX_BYTES)
			continue;
		/* Records without a JSON tree (the verifier's line reader), on a
		 * copy: a line it leaves goes to jansson as it was. */
		if ((size_t)n <= COPY_MAX) {
			struct gw_audit_row row;
			memcpy(copy, line, (size_t)n);
			if (gw_audit_row_from_line(copy, (size_t)n, &row, &fd->buf) == 0) {
				if (feed_row(fd, &row) != 0)
					goto out;
				continue;
			}
		}
		if ((o = json_loadb(line, (size_t)n, JSON_REJECT_DUPLICATES, NULL)) == NULL)
			continue;
		if (feed_item(fd, o) != 0) {
			json_decref(o);
			goto out;
		}
		json_decref(o);
	}
	rv = 0;
out:
	free(copy);
	free(line);
	fclose(f);
	return rv;
}

static struct gw_policy *
load_policy(const char *path)
{
	struct gw_policy *p = NULL;
	char err[1024];

	if (gw_policy_load(path, &p, err, sizeof(err)) < 0) {
		fprintf(stderr, "sealctl: %s\n", err);
		return NULL;
	}
	return p;
}

/* ---- risk scan ---- */

static json_t *
alert_json(const struct gw_risk_alert *a)
{
	char t[48];
	json_t *o, *seqs = json_array(), *apps = json_array();

	gw_audit_format_time(a->ts_ns, 0, t, sizeof(t));
	for (size_t i = 0; i < a->n_seqs; i++)
		json_array_append_new(seqs, json_integer((json_int_t)a->seqs[i]));
	for (size_t i = 0; i < a->n_apps; i++)
		json_array_append_new(apps, json_integer(a->apps[i]));
	o = json_pack("{s:s,s:s,s:s,s:s,s:I,s:s,s:o,s:o}", "rule", a->rule,
	              "severity", gw_risk_severity_name(a->severity), "subject", a->subject,
	              "why", a->why, "ts_ns", (json_int_t)a->ts_ns, "time", t,
	              "seqs", seqs, "applications", apps);
	return o;
}

static void
print_alert(FILE *f, const struct gw_risk_alert *a)
{
	char t[48];

	gw_audit_format_time(a->ts_ns, 0, t, sizeof(t));
	fprintf(f, "[%s] %s  %s  %s\n  %s\n  evidence: seq", gw_risk_severity_name(a->severity),
	        a->rule, a->subject, t, a->why);
	for (size_t i = 0; i < a->n_seqs && i < 50; i++)
		fprintf(f, "%s%" PRIu64, i ? ", " : " ", a->seqs[i]);
	if (a->n_seqs > 50)
		fprintf(f, " … (%zu in all)", a->n_seqs);
	if (a->n_apps) {
		fprintf(f, "; applications");
		for (size_t i = 0; i < a->n_apps && i < 50; i++)
			fprintf(f, "%s#%" PRId64, i ? ", " : " ", a->apps[i]);
		if (a->n_apps > 50)
			fprintf(f, " … (%zu in all)", a->n_apps);
	}
	fputc('\n', f);
}

/* Loads the policy, verifies the export (or says loudly it did not) and
 * runs the rules over it: the verifier hands the engine each item as it
 * reads it, so the file is read and parsed once. refuse: an export that
 * does not verify is not scanned (else it is, for the report that says
 * so). The engine is in *r; 0, or an exit status. verdict: 1 intact,
 * 0 not, -1 not checked. */
static int
scan(const struct ropts *o, FILE *vout, bool refuse, struct gw_policy **pol, struct gw_risk **r,
     const struct gw_risk_alert **alerts, size_t *n, row_fn fn, void *ctx, int *verdict,
     uint64_t *records)
{
	struct feeder *fd = NULL;
	int rv = EXIT_USAGE;

	*verdict = -1;
	{
		/* A file that cannot be read is not one that failed to verify. */
		FILE *f = fopen(o->from_export, "re");
		if (f == NULL) {
			fprintf(stderr, "sealctl: %s: %s\n", o->from_export, strerror(errno));
			return EXIT_USAGE;
		}
		fclose(f);
	}
	if ((*pol = load_policy(o->policy)) == NULL)
		return EXIT_USAGE;
	if ((*r = gw_risk_new(*pol)) == NULL || (fd = calloc(1, sizeof(*fd))) == NULL)
		goto out;
	fd->r = *r;
	fd->fn = fn;
	fd->ctx = ctx;
	if (!o->no_verify) {
		/* The same verification as `sealctl audit verify --from-export`. */
		*verdict = sealctl_audit_verify_export_records(o->from_export, o->cert, o->ca, vout,
		                                               feed_item, feed_row, fd) == 0;
		if (fd->oom)
			goto oom;
		if (!*verdict && refuse) {
			rv = EXIT_UNVERIFIED;
			goto out;
		}
	} else {
		fputs(no_verify_warning, stderr);
		if (vout != stderr)
			fputs(no_verify_warning, vout);
		if (read_export(o->from_export, fd) != 0)
			goto out;
		gw_risk_add_alert(*r, "log.unverified", GW_RISK_HIGH, "audit log",
		                  "the export was scanned without verifying its chain and checkpoints "
		                  "(--no-verify): nothing here is proven to be what the gateway recorded");
	}
	*records = fd->records;
	if (gw_risk_finish(*r, alerts, n) != 0)
		goto oom;
	rv = 0;
	goto out;
oom:
	fprintf(stderr, "sealctl: out of memory\n");
out:
	free(fd);
	return rv;
}

static void
risk_usage(FILE *f)
{
	fprintf(f,
"usage: sealctl risk scan --from-export FILE [--policy FILE] [--json] [--no-verify]\n"
"                         [--cert FILE] [--ca FILE]\n"
"       sealctl report --period YYYY-MM --from-export FILE [--from-export FILE...]\n"
"                      [--site S] [--policy FILE]\n"
"                      -o report.html|report.pdf [--format html|pdf] [--no-verify]\n"
"                      [--cert FILE] [--ca FILE]\n"
"\n"
"  risk scan  verify the export as `sealctl audit verify` does, then run the risk\n"
"             rules of the policy (default %s/policy.yaml) over it\n"
"             (docs/risk.md). --no-verify scans an export that was not verified,\n"
"             and says so.\n"
"  report     the audit report of one month (the organization's zone) as one HTML\n"
"             file with its charts inside, or a PDF (-o FILE.pdf or --format pdf);\n"
"             --from-export once per site: one report of every site (--ca);\n"
"             --site S: the export must be site S's\n"
"             (`sealctl audit export --site S`), and the report says so\n"
"\n"
"Exit status: 0 no alert, 1 alerts, 2 usage or unreadable, 3 the export did not verify.\n",
	        SG_SYSCONFDIR);
}

int
sealctl_risk(int argc, char **argv, bool json)
{
	struct ropts o = { 0 };
	struct gw_policy *pol = NULL;
	struct gw_risk *r = NULL;
	const struct gw_risk_alert *alerts = NULL;
	size_t n = 0;
	uint64_t records = 0;
	int rv, verdict;

	if (argc < 1 || strcmp(argv[0], "scan") != 0 || parse_ropts(argc, argv, &o, false) != 0) {
		bool help = argc >= 1 && (!strcmp(argv[0], "--help") || !strcmp(argv[0], "-h"));
		risk_usage(help ? stdout : stderr);
		return help ? 0 : EXIT_USAGE;
	}
	o.json |= json;
	rv = scan(&o, o.json ? stderr : stdout, true, &pol, &r, &alerts, &n, NULL, NULL, &verdict,
	          &records);
	if (rv == EXIT_UNVERIFIED)
		fprintf(stderr, "sealctl: %s did not verify: not scanned (--no-verify scans it anyway)\n",
		        o.from_export);
	if (rv != 0)
		goto out;
	if (o.json) {
		json_t *out = json_object(), *arr = json_array();
		for (size_t i = 0; i < n; i++)
			json_array_append_new(arr, alert_json(&alerts[i]));
		json_object_set_new(out, "verified", verdict < 0 ? json_null() : json_boolean(verdict));
		json_object_set_new(out, "records", json_integer((json_int_t)records));
		json_object_set_new(out, "alerts", arr);
		json_dumpf(out, stdout, JSON_INDENT(1));
		fputc('\n', stdout);
		json_decref(out);
	} else {
		printf("%" PRIu64 " records scanned, %zu alert%s\n", records, n, n == 1 ? "" : "s");
		for (size_t i = 0; i < n; i++)
			print_alert(stdout, &alerts[i]);
	}
	rv = n ? EXIT_ALERTS : EXIT_CLEAN;
out:
	gw_risk_free(&r);
	gw_policy_unref(&pol);
	return rv;
}

/* ---- the audit report ---- */

#define MAX_DAYS 31

struct tally { char *id; uint64_t signs, refused, probes, apps, approved, rejected, revoked,
               expired, decided, alerts; uint32_t day[MAX_DAYS]; };
struct appinfo { int64_t id, created, approved_at; char *seal; int state; };
enum { APP_OPEN, APP_APPROVED, APP_REJECTED, APP_REVOKED, APP_EXPIRED };

struct report {
	const struct gw_policy *p;
	const char *site;                  /* the site reported on, or NULL (not named) */
	int64_t from, to;                  /* the period, UTC ns */
	long offset;                       /* the organization's offset at its start */
	struct tally *seals, *people; size_t n_seals, n_people;
	struct appinfo *apps; size_t n_apps, cap_apps;
	uint32_t day[MAX_DAYS];
	uint64_t records;
};

static struct tally *
tally_of(struct tally **v, size_t *n, const char *id)
{
	struct tally *t;

	if (id == NULL)
		return NULL;
	for (size_t i = 0; i < *n; i++)
		if (!strcmp((*v)[i].id, id))
			return &(*v)[i];
	t = realloc(*v, (*n + 1) * sizeof(**v));
	if (t == NULL)
		return NULL;
	*v = t;
	t = &(*v)[(*n)++];
	memset(t, 0, sizeof(*t));
	t->id = strdup(id);
	return t->id ? t : (--(*n), NULL);
}

static struct appinfo *
app_info(struct report *rp, int64_t id)
{
	size_t lo = 0, hi = rp->n_apps;

	/* Application ids grow with the log: a binary search finds them. */
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (rp->apps[mid].id < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < rp->n_apps && rp->apps[lo].id == id ? &rp->apps[lo] : NULL;
}

static bool
is_(const char *a, const char *b)
{
	return a && !strcmp(a, b);
}

static void
report_row(void *ctx, const struct gw_audit_row *row)
{
	struct report *rp = ctx;
	struct tally *s, *w;
	struct appinfo *a;
	bool ok = is_(row->outcome, "ok");
	int dayix;

	/* Another site's record is not this site's report's business; a
	 * record that does not name its site is the export's (one chain). */
	if (rp->site && row->site && strcmp(row->site, rp->site) != 0)
		return;

	/* Applications filed before the period still get their outcome. */
	if (ok && is_(row->action, "application_create") && row->application > 0 &&
	    row->ts_ns < rp->to &&
	    (rp->n_apps == 0 || rp->apps[rp->n_apps - 1].id < row->application)) {
		if (rp->n_apps == rp->cap_apps) {
			size_t c = rp->cap_apps ? rp->cap_apps * 2 : 256;
			struct appinfo *v = realloc(rp->apps, c * sizeof(*v));
			if (v == NULL)
				return;
			rp->apps = v;
			rp->cap_apps = c;
		}
		a = &rp->apps[rp->n_apps++];
		memset(a, 0, sizeof(*a));
		a->id = row->application;
		a->created = row->ts_ns;
		a->seal = strdup(row->seal ? row->seal : "-");
	}
	if (row->ts_ns < rp->from || row->ts_ns >= rp->to)
		return;
	rp->records++;
	dayix = (int)((row->ts_ns - rp->from) / (86400 * NS));
	s = tally_of(&rp->seals, &rp->n_seals, row->seal);
	w = tally_of(&rp->people, &rp->n_people, row->actor);
	if (is_(row->outcome, "denied")) {
		if (s && is_(row->action, "sign"))
			s->refused++;
		if (w)
			w->refused++;
		return;
	}
	if (!ok && !is_(row->action, "sign_void"))
		return;
	if (is_(row->action, "sign") || is_(row->action, "sign_void")) {
		int d = is_(row->action, "sign") ? 1 : -1;   /* a void gives the signature back */
		if (s) {
			s->signs += (uint64_t)d;
			if (dayix >= 0 && dayix < MAX_DAYS)
				s->day[dayix] += (uint32_t)d;
		}
		if (w)
			w->signs += (uint64_t)d;
		if (dayix >= 0 && dayix < MAX_DAYS)
			rp->day[dayix] += (uint32_t)d;
	} else if (is_(row->action, "sign_probe")) {
		if (s)
			s->probes++;
	} else if (is_(row->action, "application_create")) {
		if (s)
			s->apps++;
		if (w)
			w->apps++;
	} else if (strncmp(row->action ? row->action : "", "application_", 12) == 0 &&
	           (a = app_info(rp, row->application)) != NULL) {
		if (is_(row->action, "application_approve")) {
			a->state = APP_APPROVED;
			a->approved_at = row->ts_ns;
			if (w)
				w->decided++;
		} else if (is_(row->action, "application_reject")) {
			a->state = APP_REJECTED;
			if (w)
				w->decided++;
		} else if (is_(row->action, "application_revoke")) {
			a->state = APP_REVOKED;
		} else if (is_(row->action, "application_expire")) {
			a->state = APP_EXPIRED;
		}
	}
}

/* Text for HTML and XML: the report is well-formed XHTML. */
static void
esc(FILE *f, const char *s)
{
	for (; s && *s; s++) {
		switch (*s) {
		case '&': fputs("&amp;", f); break;
		case '<': fputs("&lt;", f); break;
		case '>': fputs("&gt;", f); break;
		case '"': fputs("&quot;", f); break;
		default: fputc(*s, f);
		}
	}
}

/* A bar chart: n labelled values, drawn into the file. */
static void
svg_bars(FILE *f, const char *title, const char *const *labels, const double *v, size_t n)
{
	double max = 1;
	const int w = 640, h = 200, left = 40, bottom = 40;
	double bw = n ? (double)(w - left - 10) / (double)n : 0;

	for (size_t i = 0; i < n; i++)
		if (v[i] > max)
			max = v[i];
	fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
	        "viewBox=\"0 0 %d %d\" role=\"img\"><title>", w, h + bottom, w, h + bottom);
	esc(f, title);
	fprintf(f, "</title><line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#333\"/>",
	        left, h, w - 10, h);
	fprintf(f, "<text x=\"2\" y=\"14\" font-size=\"11\">%.0f</text>", max);
	for (size_t i = 0; i < n; i++) {
		double bh = (h - 20) * v[i] / max;
		fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"#4a78b5\">"
		        "<title>", left + i * bw + 1, h - bh, bw > 2 ? bw - 2 : bw, bh);
		esc(f, labels[i]);
		fprintf(f, ": %.0f</title></rect>", v[i]);
		if (n <= 12 || i % 5 == 0) {
			fprintf(f, "<text x=\"%.1f\" y=\"%d\" font-size=\"10\" transform=\"rotate(45 %.1f %d)\">",
			        left + i * bw + 2, h + 12, left + i * bw + 2, h + 12);
			esc(f, labels[i]);
			fputs("</text>", f);
		}
	}
	fputs("</svg>\n", f);
}

static const char *
dept_of(const struct gw_policy *p, const char *person)
{
	const struct gw_person *w = gw_policy_person(p, person);

	return w ? w->department : NULL;
}

/* One site's part of the report: its export, verdict, rules and tallies. */
struct part {
	const char *export;
	char site[GW_SITE_MAX + 1];      /* "" when the export names none */
	struct report rp;
	struct gw_policy *pol;
	struct gw_risk *r;
	const struct gw_risk_alert *alerts;
	size_t n_alerts;
	int verdict;
	char *vtext;
	uint64_t signs, alerts_in;
};

static bool
in_period(const struct report *rp, const struct gw_risk_alert *a)
{
	return a->ts_ns >= rp->from && a->ts_ns < rp->to;
}

/* A table's header with the site first when the report is of several
 * sites (the sections then name each row's site). */
static void
table_hdr(struct rdoc *d, bool many, unsigned left, size_t ncols, const char *const *hdr)
{
	const char *h[16];
	size_t n = 0;

	if (many)
		h[n++] = "site";
	for (size_t i = 0; i < ncols && n < 16; i++)
		h[n++] = hdr[i];
	rdoc_table_v(d, many ? left << 1 : left, n, h);
}

static void
row_begin(struct rdoc *d, bool many, const struct part *p)
{
	rdoc_row(d);
	if (many)
		rdoc_cell(d, "%s", p->site[0] ? p->site : "-");
}

/* The report's content, whatever its form (report-doc.h), over one
 * site's export or several sites' (one part each). */
static int
build_report(struct rdoc *d, const struct ropts *o, struct part *parts, size_t np)
{
	char labels_buf[MAX_DAYS][16];
	const char *labels[MAX_DAYS > 16 ? MAX_DAYS : 16];
	double v[MAX_DAYS > 16 ? MAX_DAYS : 16];
	const struct report *rp0 = &parts[0].rp;
	int ndays = (int)((rp0->to - rp0->from + 86400 * NS - 1) / (86400 * NS));
	static const char *const hist_labels[] = { "< 1 min", "1-10 min", "10-60 min", "1-4 h",
	                                          "4-24 h", "> 1 day" };
	static const int64_t hist_edges[] = { 60, 600, 3600, 4 * 3600, 86400 };
	double hist[6] = { 0 };
	uint64_t n_appr = 0, records = 0;
	size_t n_in = 0;
	bool many = np > 1;
	char *sites = NULL, *exports = NULL;
	size_t sl = 0, el = 0;
	FILE *sf = open_memstream(&sites, &sl), *ef = open_memstream(&exports, &el);

	if (sf == NULL || ef == NULL) {
		if (sf)
			fclose(sf);
		if (ef)
			fclose(ef);
		free(sites);
		free(exports);
		return -1;
	}
	for (size_t i = 0; i < np; i++) {
		fprintf(sf, "%s%s", i ? ", " : "", parts[i].site);
		fprintf(ef, "%s%s", i ? ", " : "", parts[i].export);
		records += parts[i].rp.records;
	}
	fclose(sf);
	fclose(ef);
	d->many = many;
	if (rp0->site || many)
		d->site = sites;
	else
		free(sites);
	sites = NULL;
	d->period = strdup(o->period);
	if (asprintf(&d->title, "sealgate audit report %s%s%s%s", d->site ? many ? "sites " : "site " : "",
	             d->site ? d->site : "", d->site ? ", " : "", o->period) < 0)
		d->title = NULL;
	if (asprintf(&d->intro, "%s — %" PRIu64 " audit records in the period, from the export%s %s. "
	             "Made offline by sealctl report; every figure comes from the audit log.",
	             rp0->p->org_name ? rp0->p->org_name : "", records, many ? "s" : "",
	             exports) < 0)
		d->intro = NULL;
	free(exports);
	if (d->title == NULL || d->intro == NULL)
		return -1;

	/* Alerts in the period, and who they are about. */
	for (size_t s = 0; s < np; s++) {
		struct part *p = &parts[s];
		for (size_t k = 0; k < p->n_alerts; k++) {
			if (!in_period(&p->rp, &p->alerts[k]))
				continue;
			p->alerts_in++;
			for (size_t i = 0; i < p->rp.n_people; i++)
				if (!strcmp(p->rp.people[i].id, p->alerts[k].subject))
					p->rp.people[i].alerts++;
		}
		for (size_t i = 0; i < p->rp.n_seals; i++)
			p->signs += p->rp.seals[i].signs;
		n_in += p->alerts_in;
	}

	/* Sites: one line each, when there are several. */
	if (many) {
		static const char *const h[] = { "site", "records", "signatures", "alerts", "log" };
		rdoc_section(d, "sites", "Sites");
		rdoc_table_v(d, 0, 5, h);
		for (size_t s = 0; s < np; s++) {
			rdoc_row(d);
			rdoc_cell(d, "%s", parts[s].site[0] ? parts[s].site : "-");
			rdoc_cell(d, "%" PRIu64, parts[s].rp.records);
			rdoc_cell(d, "%" PRIu64, parts[s].signs);
			rdoc_cell(d, "%" PRIu64, parts[s].alerts_in);
			rdoc_cell(d, "%s", parts[s].verdict < 0 ? "NOT VERIFIED" :
			          parts[s].verdict ? "verified" : "did NOT verify");
		}
	}

	/* Verification. */
	rdoc_section(d, "verification", "Log verification");
	for (size_t s = 0; s < np; s++) {
		const struct part *p = &parts[s];
		const char *who = many ? p->site : "";
		const char *sep = many ? ": " : "";
		if (p->verdict < 0)
			rdoc_p(d, "bad", "%s%sNOT VERIFIED: the report was made with --no-verify; the "
			       "chain and the signed checkpoints were not checked.", who, sep);
		else
			rdoc_p(d, p->verdict ? "ok" : "bad", "%s%s%s", who, sep,
			       p->verdict ? "The log verified: chain and signed checkpoints intact."
			                  : "The log did NOT verify: see the problems below.");
		if (p->vtext && *p->vtext)
			rdoc_pre(d, p->vtext);
	}

	/* Seals. */
	rdoc_section(d, "seals", "Seals");
	{
		static const char *const h[] = { "seal", "signatures", "refused", "size probes",
		                                 "applications", "approved", "rejected", "revoked",
		                                 "expired", "median approval" };
		table_hdr(d, many, 0, 10, h);
	}
	for (size_t s = 0; s < np; s++) {
		struct report *rp = &parts[s].rp;
		for (size_t i = 0; i < rp->n_seals; i++) {
			struct tally *t0 = &rp->seals[i];
			uint64_t st[5] = { 0 };
			double *t = malloc((rp->n_apps + 1) * sizeof(*t)), med;
			size_t nt = 0;
			char mbuf[32] = "-";
			for (size_t k = 0; k < rp->n_apps; k++)
				if (rp->apps[k].created >= rp->from && !strcmp(rp->apps[k].seal, t0->id)) {
					st[rp->apps[k].state]++;
					if (t && rp->apps[k].state == APP_APPROVED)
						t[nt++] = (double)(rp->apps[k].approved_at - rp->apps[k].created) / NS;
				}
			if (nt) {
				med = gw_risk_median(t, nt);
				if (med < 3600)
					snprintf(mbuf, sizeof(mbuf), "%.0f min", med / 60);
				else
					snprintf(mbuf, sizeof(mbuf), "%.1f h", med / 3600);
			}
			free(t);
			row_begin(d, many, &parts[s]);
			rdoc_cell(d, "%s", t0->id);
			rdoc_cell(d, "%" PRIu64, t0->signs);
			rdoc_cell(d, "%" PRIu64, t0->refused);
			rdoc_cell(d, "%" PRIu64, t0->probes);
			rdoc_cell(d, "%" PRIu64, t0->apps);
			rdoc_cell(d, "%" PRIu64, st[APP_APPROVED]);
			rdoc_cell(d, "%" PRIu64, st[APP_REJECTED]);
			rdoc_cell(d, "%" PRIu64, st[APP_REVOKED]);
			rdoc_cell(d, "%" PRIu64, st[APP_EXPIRED]);
			rdoc_cell(d, "%s", mbuf);
		}
	}
	rdoc_h3(d, "Signatures per day");
	for (int day = 0; day < ndays && day < MAX_DAYS; day++) {
		snprintf(labels_buf[day], sizeof(labels_buf[day]), "%s-%02d", o->period, day + 1);
		labels[day] = labels_buf[day];
		v[day] = 0;
		for (size_t s = 0; s < np; s++)
			v[day] += parts[s].rp.day[day];
	}
	rdoc_chart(d, "signatures per day", labels, v, (size_t)(ndays < MAX_DAYS ? ndays : MAX_DAYS));

	/* Quotas: each site's seals (a seal's site in the policy). */
	rdoc_section(d, "quotas", "Quota use");
	{
		static const char *const h[] = { "seal", "busiest day", "per_day", "month",
		                                 "per_month" };
		table_hdr(d, many, 0, 5, h);
	}
	for (size_t s = 0; s < np; s++) {
		struct report *rp = &parts[s].rp;
		for (size_t i = 0; i < rp->p->n_seals; i++) {
			const struct gw_seal *seal = &rp->p->seals[i];
			struct tally *t0 = NULL;
			uint32_t top = 0;
			if (many && parts[s].site[0] && seal->site && strcmp(seal->site, parts[s].site))
				continue;
			for (size_t k = 0; k < rp->n_seals; k++)
				if (!strcmp(rp->seals[k].id, seal->id))
					t0 = &rp->seals[k];
			for (int day = 0; t0 && day < MAX_DAYS; day++)
				if (t0->day[day] > top)
					top = t0->day[day];
			row_begin(d, many, &parts[s]);
			rdoc_cell(d, "%s", seal->id);
			rdoc_cell(d, "%u", top);
			if (seal->quotas.per_day)
				rdoc_cell(d, "%" PRIu64 " (%.0f %%)", seal->quotas.per_day,
				          100.0 * top / (double)seal->quotas.per_day);
			else
				rdoc_cell(d, "none");
			rdoc_cell(d, "%" PRIu64, t0 ? t0->signs : 0);
			if (seal->quotas.per_month)
				rdoc_cell(d, "%" PRIu64 " (%.0f %%)", seal->quotas.per_month,
				          100.0 * (double)(t0 ? t0->signs : 0) / (double)seal->quotas.per_month);
			else
				rdoc_cell(d, "none");
		}
	}

	/* Approval times. */
	for (size_t s = 0; s < np; s++) {
		const struct report *rp = &parts[s].rp;
		for (size_t k = 0; k < rp->n_apps; k++) {
			const struct appinfo *a = &rp->apps[k];
			int64_t dt;
			size_t b = 0;
			if (a->created < rp->from || a->state != APP_APPROVED)
				continue;
			dt = (a->approved_at - a->created) / NS;
			while (b < 5 && dt >= hist_edges[b])
				b++;
			hist[b]++;
			n_appr++;
		}
	}
	rdoc_section(d, "approvals", "Approval times");
	rdoc_p(d, NULL, "%" PRIu64 " applications filed in the period were approved; time from "
	       "filing to the last approval:", n_appr);
	rdoc_chart(d, "approval times", hist_labels, hist, 6);

	/* Departments and people. */
	rdoc_section(d, "departments", "Departments");
	{
		static const char *const h[] = { "department", "people", "signatures",
		                                 "applications", "refusals", "alerts" };
		table_hdr(d, many, 0, 6, h);
	}
	for (size_t s = 0; s < np; s++) {
		struct report *rp = &parts[s].rp;
		for (size_t k = 0; k < rp->p->n_departments; k++) {
			const struct gw_department *dep = &rp->p->departments[k];
			uint64_t ppl = 0, sg = 0, ap = 0, rf = 0, al = 0;
			for (size_t i = 0; i < rp->n_people; i++) {
				const char *pd = dept_of(rp->p, rp->people[i].id);
				if (pd && !strcmp(pd, dep->id)) {
					ppl++;
					sg += rp->people[i].signs;
					ap += rp->people[i].apps;
					rf += rp->people[i].refused;
					al += rp->people[i].alerts;
				}
			}
			row_begin(d, many, &parts[s]);
			rdoc_cell(d, "%s", dep->name);
			rdoc_cell(d, "%" PRIu64, ppl);
			rdoc_cell(d, "%" PRIu64, sg);
			rdoc_cell(d, "%" PRIu64, ap);
			rdoc_cell(d, "%" PRIu64, rf);
			rdoc_cell(d, "%" PRIu64, al);
		}
	}
	rdoc_section(d, "people", "People");
	{
		static const char *const h[] = { "person", "department", "signatures", "applications",
		                                 "decisions as approver", "refusals", "alerts" };
		table_hdr(d, many, 0, 7, h);
	}
	for (size_t s = 0; s < np; s++) {
		struct report *rp = &parts[s].rp;
		for (size_t i = 0; i < rp->n_people; i++) {
			struct tally *w = &rp->people[i];
			row_begin(d, many, &parts[s]);
			rdoc_cell(d, "%s", w->id);
			rdoc_cell(d, "%s", dept_of(rp->p, w->id) ? dept_of(rp->p, w->id) : "-");
			rdoc_cell(d, "%" PRIu64, w->signs);
			rdoc_cell(d, "%" PRIu64, w->apps);
			rdoc_cell(d, "%" PRIu64, w->decided);
			rdoc_cell(d, "%" PRIu64, w->refused);
			rdoc_cell(d, "%" PRIu64, w->alerts);
		}
	}

	/* Alerts. */
	rdoc_section(d, "alerts", "Alerts");
	rdoc_p(d, NULL, "%zu alert%s in the period (the rules ran over the whole export, so that "
	       "baselines have their history).", n_in, n_in == 1 ? "" : "s");
	{
		const char *rl[16];
		double rc[16];
		size_t nr = 0;
		for (size_t s = 0; s < np; s++)
			for (size_t k = 0; k < parts[s].n_alerts; k++) {
				const struct gw_risk_alert *a = &parts[s].alerts[k];
				size_t j;
				if (!in_period(&parts[s].rp, a))
					continue;
				for (j = 0; j < nr && strcmp(rl[j], a->rule); j++)
					;
				if (j == nr && nr < 16) {
					rl[nr] = a->rule;
					rc[nr++] = 0;
				}
				if (j < nr)
					rc[j]++;
			}
		if (nr)
			rdoc_chart(d, "alerts by rule", rl, rc, nr);
	}
	{
		static const char *const h[] = { "time (UTC)", "rule", "severity", "subject", "why",
		                                 "evidence" };
		table_hdr(d, many, 1u << 4, 6, h);
	}
	for (size_t s = 0; s < np; s++)
		for (size_t k = 0; k < parts[s].n_alerts; k++) {
			const struct gw_risk_alert *a = &parts[s].alerts[k];
			char t[48], ev[512];
			size_t l = 0;
			if (!in_period(&parts[s].rp, a))
				continue;
			gw_audit_format_time(a->ts_ns, 0, t, sizeof(t));
			l += (size_t)snprintf(ev + l, sizeof(ev) - l, "seq");
			for (size_t i = 0; i < a->n_seqs && i < 20 && l < sizeof(ev); i++)
				l += (size_t)snprintf(ev + l, sizeof(ev) - l, " %" PRIu64, a->seqs[i]);
			if (a->n_seqs > 20 && l < sizeof(ev))
				l += (size_t)snprintf(ev + l, sizeof(ev) - l, " … (%zu)", a->n_seqs);
			for (size_t i = 0; i < a->n_apps && i < 20 && l < sizeof(ev); i++)
				l += (size_t)snprintf(ev + l, sizeof(ev) - l, " #%" PRId64, a->apps[i]);
			row_begin(d, many, &parts[s]);
			rdoc_cell(d, "%s", t);
			rdoc_cell(d, "%s", a->rule);
			rdoc_cell(d, "%s", gw_risk_severity_name(a->severity));
			rdoc_cell(d, "%s", a->subject ? a->subject : "");
			rdoc_cell(d, "%s", a->why ? a->why : "");
			rdoc_cell(d, "%s", ev);
		}
	return d->oom || !d->period ? -1 : 0;
}

/* The XHTML form: one self-contained file, the charts inline SVG. */
static int
write_html(FILE *f, const struct rdoc *d)
{
	bool open = false;

	fputs("<!DOCTYPE html>\n<html xmlns=\"http://www.w3.org/1999/xhtml\" lang=\"en\">\n<head>"
	      "<meta charset=\"utf-8\"/><title>", f);
	esc(f, d->title);
	fputs("</title><style>body{font-family:sans-serif;margin:2em;max-width:60em}"
	      "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #bbb;padding:2px 8px;"
	      "text-align:right}th:first-child,td:first-child{text-align:left}"
	      ".bad{color:#b00;font-weight:bold}.ok{color:#070;font-weight:bold}"
	      "pre{background:#f4f4f4;padding:1em;white-space:pre-wrap}</style></head>\n<body>\n", f);
	fputs("<h1>Seal audit report, ", f);
	if (d->site) {
		fputs(d->many ? "sites <span id=\"site\">" : "site <span id=\"site\">", f);
		esc(f, d->site);
		fputs("</span>, ", f);
	}
	esc(f, d->period);
	fputs("</h1>\n<p>", f);
	esc(f, d->intro);
	fputs("</p>\n", f);
	for (size_t i = 0; i < d->n; i++) {
		const struct rdoc_block *b = &d->b[i];
		switch (b->kind) {
		case RB_SECTION:
			if (open)
				fputs("</section>\n", f);
			fprintf(f, "<section id=\"%s\"><h2>", b->id);
			esc(f, b->text);
			fputs("</h2>\n", f);
			open = true;
			break;
		case RB_H3:
			fputs("<h3>", f);
			esc(f, b->text);
			fputs("</h3>\n", f);
			break;
		case RB_P:
			if (b->cls)
				fprintf(f, "<p class=\"%s\">", b->cls);
			else
				fputs("<p>", f);
			esc(f, b->text);
			fputs("</p>\n", f);
			break;
		case RB_PRE:
			fputs("<pre>", f);
			esc(f, b->text);
			fputs("</pre>\n", f);
			break;
		case RB_TABLE:
			fputs("<table>", f);
			for (size_t r = 0; r <= b->nrows; r++) {
				fputs("<tr>", f);
				for (size_t c = 0; c < b->ncols; c++) {
					const char *s = b->cells[r * b->ncols + c];
					if (r == 0)
						fputs("<th>", f);
					else if (c > 0 && (b->left & (1u << c)))
						fputs("<td style=\"text-align:left\">", f);
					else
						fputs("<td>", f);
					esc(f, s);
					fputs(r == 0 ? "</th>" : "</td>", f);
				}
				fputs("</tr>\n", f);
			}
			fputs("</table>\n", f);
			break;
		case RB_CHART:
			svg_bars(f, b->text, (const char *const *)b->labels, b->v, b->n);
			break;
		}
	}
	if (open)
		fputs("</section>\n", f);
	fputs("</body>\n</html>\n", f);
	return ferror(f) ? -1 : 0;
}

/* "YYYY-MM" in the organization's zone -> [from, to) in UTC ns. */
static int
period_bounds(const struct gw_policy *p, const char *s, int64_t *from, int64_t *to, long *off)
{
	int y, m, n = 0;
	struct tm a = { 0 }, b = { 0 };
	time_t ta, tb;

	if (sscanf(s, "%4d-%2d%n", &y, &m, &n) != 2 || s[n] || m < 1 || m > 12 || y < 1970)
		return -1;
	a.tm_year = y - 1900;
	a.tm_mon = m - 1;
	a.tm_mday = 1;
	b = a;
	if (++b.tm_mon == 12) {
		b.tm_mon = 0;
		b.tm_year++;
	}
	ta = timegm(&a);
	tb = timegm(&b);
	*off = p->n_zones ? gw_tz_offset(p->zones[0], ta) : 0;
	*from = ((int64_t)ta - (p->n_zones ? gw_tz_offset(p->zones[0], ta) : 0)) * NS;
	*to = ((int64_t)tb - (p->n_zones ? gw_tz_offset(p->zones[0], tb) : 0)) * NS;
	return 0;
}

/* The site an export's header names (an export holds one site's chain:
 * docs/sites.md), into site; "" when the header names none. 0, or -1 when
 * the file's first line is not an export header. */
static int
export_site(const char *path, char site[GW_SITE_MAX + 1])
{
	FILE *f = fopen(path, "re");
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	json_t *o = NULL;
	const char *s;
	int rv = -1;

	site[0] = '\0';
	if (f == NULL)
		return -1;
	if ((n = getline(&line, &cap, f)) <= 1 || (size_t)n > LINE_MAX_BYTES)
		goto out;
	if ((o = json_loadb(line, (size_t)n, JSON_REJECT_DUPLICATES, NULL)) == NULL ||
	    !is_(json_string_value(json_object_get(o, "type")), "header"))
		goto out;
	s = json_string_value(json_object_get(o, "site"));
	if (s && (strlen(s) > GW_SITE_MAX || !gw_policy_site_name_ok(s)))
		goto out;
	if (s)
		memcpy(site, s, strlen(s) + 1);
	rv = 0;
out:
	json_decref(o);
	free(line);
	fclose(f);
	return rv;
}

int
sealctl_report(int argc, char **argv)
{
	struct ropts o = { 0 };
	struct gw_policy *ppol = NULL;
	struct part *parts = NULL;
	struct rdoc doc = { 0 };
	size_t np = 0;
	bool pdf, bad = false;
	FILE *f = NULL;
	int rv = EXIT_USAGE;

	if (argc >= 1 && (!strcmp(argv[0], "--help") || !strcmp(argv[0], "-h"))) {
		risk_usage(stdout);
		return 0;
	}
	{
		/* getopt takes argv[0] for the command's name: give it one. */
		char **av = calloc((size_t)argc + 2, sizeof(*av));
		int e;
		if (av == NULL)
			return EXIT_USAGE;
		av[0] = (char *)"report";
		memcpy(av + 1, argv, (size_t)argc * sizeof(*av));
		e = parse_ropts(argc + 1, av, &o, true);
		free(av);
		if (e) {
			risk_usage(stderr);
			return EXIT_USAGE;
		}
	}
	/* The form: --format, else the output's extension (.pdf), else XHTML. */
	if (o.format && strcmp(o.format, "pdf") != 0 && strcmp(o.format, "html") != 0) {
		fprintf(stderr, "sealctl: --format is html or pdf\n");
		return EXIT_USAGE;
	}
	pdf = o.format ? !strcmp(o.format, "pdf")
	               : strlen(o.out) > 4 && !strcasecmp(o.out + strlen(o.out) - 4, ".pdf");
	/* Several sites: one export each (an export is one site's chain),
	 * each pinned by the group's CA, not by one site's certificate. */
	if (o.n_exports > 1 && (o.cert || o.site)) {
		fprintf(stderr, "sealctl: several exports are several sites: pin their audit "
		        "certificates with --ca, not --cert; --site names one site's export\n");
		return EXIT_USAGE;
	}
	if ((ppol = load_policy(o.policy)) == NULL)
		return EXIT_USAGE;
	if ((parts = calloc(o.n_exports, sizeof(*parts))) == NULL)
		goto out;
	for (np = 0; np < o.n_exports; np++) {
		struct part *p = &parts[np];
		struct ropts po = o;
		FILE *vout;
		size_t vlen = 0;
		uint64_t records = 0;
		int r;

		p->export = o.exports[np];
		po.from_export = p->export;
		p->rp.p = ppol;
		if (period_bounds(ppol, o.period, &p->rp.from, &p->rp.to, &p->rp.offset) != 0) {
			fprintf(stderr, "sealctl: --period is YYYY-MM\n");
			goto out;
		}
		/* An export is one site's chain: --site names the site the
		 * auditor means, and another site's export (or one that does
		 * not say whose it is) is refused rather than reported under
		 * the wrong name; of several, each must name its own site,
		 * once. */
		if (export_site(p->export, p->site) != 0) {
			fprintf(stderr, "sealctl: %s: not a sealgate audit export\n", p->export);
			np++;
			goto out;
		}
		if (o.site && strcmp(o.site, p->site) != 0) {
			if (p->site[0])
				fprintf(stderr, "sealctl: %s is site %s's export, not %s's: export that "
				        "site's with `sealctl audit export --site %s`\n", p->export, p->site,
				        o.site, o.site);
			else
				fprintf(stderr, "sealctl: %s does not name its site: --site %s cannot be "
				        "checked\n", p->export, o.site);
			np++;
			goto out;
		}
		if (o.n_exports > 1) {
			if (!p->site[0]) {
				fprintf(stderr, "sealctl: %s does not name its site: a report of several "
				        "sites needs each export's site\n", p->export);
				np++;
				goto out;
			}
			for (size_t k = 0; k < np; k++)
				if (!strcmp(parts[k].site, p->site)) {
					fprintf(stderr, "sealctl: %s and %s are both site %s's exports\n",
					        parts[k].export, p->export, p->site);
					np++;
					goto out;
				}
		}
		p->rp.site = p->site[0] ? p->site : NULL;
		/* The report states the verdict, whatever it is: an export
		 * that does not verify is reported on, and says so first. */
		if ((vout = open_memstream(&p->vtext, &vlen)) == NULL) {
			np++;
			goto out;
		}
		r = scan(&po, vout, false, &p->pol, &p->r, &p->alerts, &p->n_alerts, report_row, &p->rp,
		         &p->verdict, &records);
		fclose(vout);
		if (r != 0) {
			rv = r;
			np++;
			goto out;
		}
		bad |= p->verdict == 0;
	}
	rv = EXIT_USAGE;
	if (build_report(&doc, &o, parts, np) != 0) {
		fprintf(stderr, "sealctl: out of memory\n");
		goto out;
	}
	if (pdf) {
		if (rdoc_write_pdf(&doc, o.out) != 0) {
			unlink(o.out);   /* no half-drawn report left behind */
			goto out;
		}
	} else {
		f = fopen(o.out, "we");
		if (f == NULL) {
			fprintf(stderr, "sealctl: %s: %s\n", o.out, strerror(errno));
			goto out;
		}
		rv = write_html(f, &doc);
		if (fclose(f) != 0 || rv != 0) {
			fprintf(stderr, "sealctl: writing %s failed\n", o.out);
			f = NULL;
			rv = EXIT_USAGE;
			goto out;
		}
		f = NULL;
	}
	for (size_t i = 0; i < np; i++) {
		const struct part *p = &parts[i];
		printf("report for %s%s%s%s written to %s (%" PRIu64 " records in the period, log %s)\n",
		       p->rp.site ? "site " : "", p->rp.site ? p->rp.site : "", p->rp.site ? ", " : "",
		       o.period, o.out, p->rp.records,
		       p->verdict < 0 ? "NOT VERIFIED" : p->verdict ? "verified" : "NOT INTACT");
	}
	rv = bad ? EXIT_UNVERIFIED : EXIT_CLEAN;
out:
	if (f)
		fclose(f);
	rdoc_free(&doc);
	for (size_t k = 0; parts && k < np; k++) {
		struct report *rp = &parts[k].rp;
		free(parts[k].vtext);
		for (size_t i = 0; i < rp->n_seals; i++)
			free(rp->seals[i].id);
		for (size_t i = 0; i < rp->n_people; i++)
			free(rp->people[i].id);
		for (size_t i = 0; i < rp->n_apps; i++)
			free(rp->apps[i].seal);
		free(rp->seals);
		free(rp->people);
		free(rp->apps);
		gw_risk_free(&parts[k].r);
		gw_policy_unref(&parts[k].pol);
	}
	free(parts);
	gw_policy_unref(&ppol);
	return rv;
}
