/*
 * gen-activity: months of plausible activity of the demo company (the
 * policy softhsm-config/acme-policy.yaml.in, Asia/Shanghai) as a sealgate
 * audit export — records chained and checkpoints signed with a key of its
 * own, so `sealctl audit verify` and `sealctl risk scan` read it like a
 * real one — with the misuses named by --misuse seeded once each. A
 * manifest (--manifest) lists, per misuse, the rule that must find it and
 * the seqs and application ids that are its evidence.
 *
 *   gen-activity [--days N] [--seed N] [--misuse NAME,...|all] [--manifest F]
 *                [--billing N] -o FILE
 *
 * --billing sets the invoices the billing service signs a working day
 * (20 to 40 when not given): the bench makes a year of 10 million records.
 */
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "auditfmt.h"
#include "protocol.h"

#define NS 1000000000LL
#define ZONE_OFFSET (8 * 3600)          /* Asia/Shanghai: no daylight saving */
/* Monday 2026-10-05 00:00 in Shanghai. */
#define START_LOCAL 1791158400LL

static const char *const misuses[] = {
	"splitting", "rubber-fast", "rubber-ratio", "volume", "unusual-hour", "new-host",
	"new-exe", "dormant", "probe-refusals", "probe-wrong", "probe-lockout", "probe-size",
	"quota", "checkpoint-owed", "off-hours-restart", "off-hours-token", "clock-backwards",
	"quota-voided",
};
#define N_MISUSES (sizeof(misuses) / sizeof(misuses[0]))
/* The rule each misuse must raise, and how its evidence relates to the
 * seeded records: "exact" (the same seqs and applications), "subset" (the
 * seeded ones are among them: other records of that hour, the record
 * before a clock jump) or "overlap" (one of them: the signature that
 * reaches a quota is one of the batch seeded, whichever the day's
 * ordinary signatures make it). */
static const struct { const char *rule, *match; } expect[N_MISUSES] = {
	{ "threshold-splitting", "exact" }, { "rubber-stamp.fast", "exact" },
	{ "rubber-stamp.ratio", "exact" }, { "volume.seal", "subset" },
	{ "time.unusual-hour", "exact" }, { "source.new-host", "exact" },
	{ "source.new-exe", "exact" }, { "seal.dormant", "exact" }, { "probe.refusals", "exact" },
	{ "probe.wrong-credentials", "exact" }, { "probe.lockout", "exact" },
	{ "probe.size-probes", "exact" }, { "quota.high", "overlap" },
	{ "log.checkpoint-owed", "subset" }, { "log.off-hours-restart", "subset" },
	{ "log.off-hours-token", "exact" }, { "log.clock-backwards", "subset" },
	/* Not a misuse: 41 signatures in a day of which 3 the token voided
	 * stay under 80 % of 50 a day: no rule may count the voided ones. */
	{ "", "none" },
};

struct ev {
	int64_t sort_ts, ts;
	const char *action, *outcome, *actor, *exe, *host, *seal;
	char *reason, *detail;
	int64_t uid, pid;
	int app;                /* generator's application key, 0 = none */
	int tag;                /* misuse index + 1 whose evidence this is, 0 = none */
	bool clock_back;        /* stamped two minutes before the record before it */
	unsigned voids;         /* sign_void: order + 1 of the sign it voids */
	int64_t cp_delay;       /* seconds until a checkpoint covers it */
	uint64_t seq;
	unsigned order;
};

static struct ev *evs;
static size_t n_evs, cap_evs;
static int next_app = 1;
static uint64_t rng = 88172645463325252ULL;
static bool want[N_MISUSES];
static int64_t billing;          /* --billing: invoices a working day (0: 20 to 40) */

static uint64_t
rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static int64_t
between(int64_t lo, int64_t hi)   /* [lo, hi] */
{
	return lo + (int64_t)(rnd() % (uint64_t)(hi - lo + 1));
}

static bool
chance(int pct)
{
	return (int)(rnd() % 100) < pct;
}

/* Every string the events hold, freed together at the end. */
static char **strs;
static size_t n_strs, cap_strs;

static char *
keep(char *s)
{
	if (!s)
		abort();
	if (n_strs == cap_strs) {
		cap_strs = cap_strs ? cap_strs * 2 : 4096;
		strs = realloc(strs, cap_strs * sizeof(*strs));
		if (!strs)
			abort();
	}
	return strs[n_strs++] = s;
}

static char *
dup(const char *s)
{
	return keep(strdup(s));
}

static char *
fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));

static char *
fmt(const char *f, ...)
{
	va_list ap;
	char *s = NULL;

	va_start(ap, f);
	if (vasprintf(&s, f, ap) < 0)
		abort();
	va_end(ap);
	return keep(s);
}

/* Local time (day from the start, hour, minute, second) to UTC ns. */
static int64_t
at(int day, int h, int m, int s)
{
	return (START_LOCAL + day * 86400LL + h * 3600 + m * 60 + s - ZONE_OFFSET) * NS;
}

static struct ev *
add(int64_t ts, const char *action, const char *outcome, const char *actor, const char *seal)
{
	struct ev *e;

	if (n_evs == cap_evs) {
		cap_evs = cap_evs ? cap_evs * 2 : 4096;
		evs = realloc(evs, cap_evs * sizeof(*evs));
		if (!evs)
			abort();
	}
	e = &evs[n_evs];
	memset(e, 0, sizeof(*e));
	e->sort_ts = e->ts = ts;
	e->action = action;
	e->outcome = outcome;
	e->actor = actor;
	e->seal = seal;
	e->uid = 1000;
	e->pid = between(2000, 60000);
	e->exe = "/usr/bin/sealctl";
	e->host = actor ? fmt("ws-%s", actor) : "gw1";
	e->cp_delay = 300;
	e->order = (unsigned)n_evs;
	n_evs++;
	return e;
}

static struct ev *
gateway_ev(int64_t ts, const char *action)
{
	struct ev *e = add(ts, action, "ok", NULL, NULL);

	e->uid = 0;
	e->pid = 611;
	e->exe = "sealgated";
	e->host = "gw1";
	if (!strcmp(action, "gateway_start"))
		e->detail = fmt("{\"policy\":\"/etc/sealgate/policy.yaml\",\"seals\":5,\"people\":8}");
	return e;
}

/* An application, its approvals (or rejection) and its signatures.
 * approvers: NULL-terminated levels; delays in seconds after the step
 * before; sign_host/exe the client; returns the create event's index. */
struct appspec {
	const char *applicant, *seal, *type, *scope, *reason;
	int64_t amount;                 /* -1: none */
	const char *approvers[3];
	int64_t delay[3];
	bool reject;
	int signs;
	int64_t sign_after;             /* seconds after the last approval */
	int64_t sign_gap;               /* seconds between signatures */
	const char *host, *exe;
	int tag_create, tag_decide, tag_sign;
};

static size_t
application(int64_t ts, const struct appspec *a)
{
	int key = next_app++;
	size_t first = n_evs;
	struct ev *e = add(ts, "application_create", "ok", a->applicant, a->seal);
	int64_t t = ts;

	e->app = key;
	e->reason = dup(a->reason);
	e->host = a->host;
	e->tag = a->tag_create;
	if (a->amount >= 0)
		e->detail = fmt("{\"amount\":%lld,\"business_scope\":\"%s\",\"document_type\":\"%s\"}",
		                (long long)a->amount, a->scope, a->type);
	else
		e->detail = fmt("{\"document_type\":\"%s\"}", a->type);
	for (int l = 0; l < 3 && a->approvers[l]; l++) {
		bool last = l == 2 || !a->approvers[l + 1];
		t += a->delay[l] * NS;
		e = add(t, a->reject && last ? "application_reject" : "application_approve", "ok",
		        a->approvers[l], a->seal);
		e->app = key;
		e->tag = a->tag_decide;
		e->reason = dup(a->reject && last ? "the terms need another look" : "ok");
		if (a->reject && last)
			return first;
	}
	t += a->sign_after * NS;
	for (int s = 0; s < a->signs; s++, t += a->sign_gap * NS) {
		int64_t pid = between(2000, 60000);
		bool probe = a->exe && strstr(a->exe, "pdfsig");
		if (probe) {
			e = add(t, "sign_probe", "ok", a->applicant, a->seal);
			e->app = key;
			e->pid = pid;
			e->exe = a->exe;
			e->host = a->host;
			e->detail = dup("{\"placeholder\":true}");
		}
		e = add(t + (probe ? 2 * NS : 0), "sign", "ok", a->applicant, a->seal);
		e->app = key;
		e->pid = pid;
		e->exe = a->exe;
		e->host = a->host;
		e->tag = a->tag_sign;
	}
	return first;
}

static const char *const customers[] = {
	"Jinlong Foods", "Harbour Logistics", "Baiyun Textiles", "Lotus Retail", "Pearl River Tools",
	"Eastwind Media", "Sunrise Pharma", "Greenfield Agri",
};

static int
tag_of(const char *name)
{
	for (size_t i = 0; i < N_MISUSES; i++)
		if (!strcmp(misuses[i], name))
			return want[i] ? (int)i + 1 : 0;
	return 0;
}

static void
ordinary_day(int d, bool ratio_misuse)
{
	int wd = d % 7;   /* 0 = Monday */
	static const char *const staff[] = { "alice", "bob", "carol", "dave", "erin", "grace" };

	if (wd >= 5)
		return;
	/* Morning sign-ins, now and then after a mistyped password. */
	for (size_t i = 0; i < sizeof(staff) / sizeof(staff[0]); i++) {
		int64_t t = at(d, 8, (int)between(30, 59), (int)between(0, 59));
		struct ev *e;
		if (chance(8)) {
			e = add(t - 40 * NS, "login", "denied", staff[i], NULL);
			e->reason = fmt("wrong password for %s (1 of 5 attempts used)", staff[i]);
		}
		add(t, "login", "ok", staff[i], NULL);
	}
	/* alice: sales contracts, approved by bob (and carol above 1,000,000). */
	for (int64_t n = between(1, 3); n > 0; n--) {
		bool big = chance(5);
		char *reason = fmt("Sales contract with %s", customers[rnd() % 8]);
		struct appspec a = {
			.applicant = "alice", .seal = "contract", .type = "contract", .scope = "sales",
			.reason = reason, .amount = big ? between(1500000, 5000000) : between(20000, 300000),
			.approvers = { "bob", big ? "carol" : NULL },
			.delay = { between(300, 10800), between(600, 3600) },
			.reject = chance(20), .signs = 1, .sign_after = between(300, 3600), .sign_gap = 60,
			.host = "ws-alice", .exe = "/usr/bin/pdfsig",
		};
		application(at(d, (int)between(9, 14), (int)between(0, 59), (int)between(0, 59)), &a);
	}
	/* bob's own contracts go to the head above him, carol. */
	if (chance(30)) {
		struct appspec a = {
			.applicant = "bob", .seal = "contract", .type = "agreement", .scope = "procurement",
			.reason = "Framework agreement with Harbour Logistics", .amount = between(50000, 400000),
			.approvers = { "carol" }, .delay = { between(600, 7200) }, .reject = chance(20),
			.signs = 1, .sign_after = between(300, 3600), .sign_gap = 60,
			.host = "ws-bob", .exe = "/usr/bin/pdfsig",
		};
		application(at(d, (int)between(10, 15), (int)between(0, 59), 0), &a);
	}
	/* dave: payments and vouchers on the finance seal, approved by erin. */
	if (chance(90)) {
		struct appspec a = {
			.applicant = "dave", .seal = "finance", .type = chance(50) ? "payment" : "voucher",
			.scope = "finance", .reason = "Supplier payment run", .amount = between(1000, 90000),
			.approvers = { "erin" }, .delay = { between(600, 10800) },
			.reject = ratio_misuse ? false : chance(20), .signs = 1, .sign_after = between(300, 3600),
			.sign_gap = 60, .host = "ws-dave", .exe = "/usr/bin/pdfsig",
			.tag_decide = ratio_misuse ? tag_of("rubber-ratio") : 0,
		};
		application(at(d, (int)between(9, 14), (int)between(0, 59), 0), &a);
	}
	if (chance(30)) {
		struct appspec a = {
			.applicant = "erin", .seal = "finance", .type = "report", .scope = "finance",
			.reason = "Quarterly report to the bank", .amount = -1,
			.approvers = { "carol" }, .delay = { between(900, 10800) }, .reject = chance(20),
			.signs = 1, .sign_after = between(300, 3600), .sign_gap = 60,
			.host = "ws-erin", .exe = "/usr/bin/pdfsig",
		};
		application(at(d, (int)between(9, 14), (int)between(0, 59), 0), &a);
	}
	/* Wednesdays: alice signs a release with the code-signing seal. */
	if (wd == 2) {
		struct appspec a = {
			.applicant = "alice", .seal = "code", .type = "software", .scope = "sales",
			.reason = "Release of the order client", .amount = -1,
			.approvers = { "bob" }, .delay = { between(600, 3600) }, .signs = 2,
			.sign_after = between(300, 1800), .sign_gap = 40,
			.host = "build01", .exe = "/usr/bin/osslsigncode",
		};
		application(at(d, 11, (int)between(0, 59), 0), &a);
	}
	/* The billing service stamps invoices all day; no approval needed. */
	{
		int64_t pid = between(2000, 60000);
		add(at(d, 7, 58, 0), "login", "ok", "svc-billing", NULL)->host = "app01";
		for (int64_t n = billing ? billing : between(20, 40); n > 0; n--) {
			struct ev *e = add(at(d, 8, 0, 0) + between(0, 12 * 3600 - 1) * NS, "sign", "ok",
			                   "svc-billing", "invoice");
			e->uid = 998;
			e->pid = pid;
			e->exe = "/usr/lib/billing/invoicer";
			e->host = "app01";
		}
	}
}

static void
seed(int days)
{
	int D = days - 3;   /* a Friday or so in the last week: history before it */
	int t;

	if ((t = tag_of("splitting"))) {
		static const int64_t amounts[] = { 700000, 650000, 600000 };
		for (int i = 0; i < 3; i++) {
			char *reason = fmt("Supply contract with Hengda Steel, part %d", i + 1);
			struct appspec a = {
				.applicant = "alice", .seal = "contract", .type = "contract", .scope = "sales",
				.reason = reason, .amount = amounts[i], .approvers = { "bob" },
				.delay = { 3600 }, .signs = 1, .sign_after = 900, .sign_gap = 60,
				.host = "ws-alice", .exe = "/usr/bin/pdfsig", .tag_create = t,
			};
			application(at(D - 1 + i / 2, 10 + 4 * (i % 2), 5, 0), &a);
		}
	}
	if ((t = tag_of("rubber-fast"))) {
		struct appspec a = {
			.applicant = "alice", .seal = "contract", .type = "contract", .scope = "sales",
			.reason = "Sales contract with Lotus Retail", .amount = 120000,
			.approvers = { "bob" }, .delay = { 8 }, .signs = 1, .sign_after = 600,
			.sign_gap = 60, .host = "ws-alice", .exe = "/usr/bin/pdfsig",
			.tag_create = t, .tag_decide = t,
		};
		application(at(D, 9, 40, 0), &a);
	}
	if ((t = tag_of("volume"))) {
		/* The billing service, 80 extra invoices in one afternoon hour. */
		for (int i = 0; i < 80; i++) {
			struct ev *e = add(at(D, 14, 0, 10) + i * 40 * NS, "sign", "ok", "svc-billing", "invoice");
			e->uid = 998;
			e->pid = 4242;
			e->exe = "/usr/lib/billing/invoicer";
			e->host = "app01";
			e->tag = t;
		}
	}
	if ((t = tag_of("unusual-hour"))) {
		struct appspec a = {
			.applicant = "alice", .seal = "contract", .type = "contract", .scope = "sales",
			.reason = "Sales contract with Eastwind Media", .amount = 80000,
			.approvers = { "bob" }, .delay = { 3600 }, .signs = 1, .sign_after = 12 * 3600,
			.sign_gap = 60, .host = "ws-alice", .exe = "/usr/bin/pdfsig", .tag_sign = t,
		};
		application(at(D - 1, 14, 30, 0), &a);   /* signed at 03:30 the next night */
	}
	if ((t = tag_of("new-host"))) {
		struct appspec a = {
			.applicant = "alice", .seal = "contract", .type = "contract", .scope = "sales",
			.reason = "Sales contract with Greenfield Agri", .amount = 60000,
			.approvers = { "bob" }, .delay = { 1800 }, .signs = 1, .sign_after = 600,
			.sign_gap = 60, .host = "laptop-7f3a", .exe = "/usr/bin/pdfsig", .tag_sign = t,
		};
		application(at(D, 10, 0, 0), &a);
	}
	if ((t = tag_of("new-exe"))) {
		struct appspec a = {
			.applicant = "alice", .seal = "contract", .type = "contract", .scope = "sales",
			.reason = "Sales contract with Jinlong Foods", .amount = 30000,
			.approvers = { "bob" }, .delay = { 1800 }, .signs = 1, .sign_after = 600,
			.sign_gap = 60, .host = "ws-alice", .exe = "/tmp/.x/sign", .tag_sign = t,
		};
		application(at(D, 10, 30, 0), &a);
	}
	if ((t = tag_of("dormant"))) {
		struct appspec a = {
			.applicant = "erin", .seal = "official", .type = "letter", .scope = "finance",
			.reason = "Letter to the tax bureau", .amount = -1,
			.approvers = { "carol" }, .delay = { 2400 }, .signs = 1, .sign_after = 900,
			.sign_gap = 60, .host = "ws-erin", .exe = "/usr/bin/pdfsig", .tag_sign = t,
		};
		application(at(D, 11, 0, 0), &a);
	}
	if ((t = tag_of("probe-refusals"))) {
		for (int i = 0; i < 12; i++) {
			struct ev *e = add(at(D, 15, 0, 0) + i * 7 * NS, "sign", "denied", "dave", "contract");
			e->reason = dup("dave may not use seal contract");
			e->tag = t;
		}
	}
	if ((t = tag_of("probe-wrong"))) {
		for (int i = 0; i < 5; i++) {
			struct ev *e = add(at(D, 16, 10, 0) + i * 20 * NS, "login", "denied", "frank", NULL);
			e->reason = i < 4 ? fmt("wrong password for frank (%d of 5 attempts used)", i + 1) :
			                    dup("wrong code for frank");
			e->tag = t;
		}
	}
	if ((t = tag_of("probe-lockout"))) {
		struct ev *e = add(at(D, 17, 0, 0), "login", "denied", "carol", NULL);
		e->reason = dup("wrong password for carol; 5 failed attempts: account locked until 17:15:00");
		e->tag = t;
	}
	if ((t = tag_of("probe-size"))) {
		for (int i = 0; i < 6; i++) {
			struct ev *e = add(at(D, 13, 0, 0) + i * 30 * NS, "sign_probe", "ok", "bob", "contract");
			e->exe = "/usr/bin/pdfsig";
			e->pid = 7000 + i;
			e->detail = dup("{\"placeholder\":true}");
			e->tag = t;
		}
		/* bob signs from another process meanwhile: it answers none of them */
		add(at(D, 13, 2, 10), "sign", "ok", "bob", "contract")->pid = 7999;
	}
	if ((t = tag_of("quota"))) {
		struct appspec a = {
			.applicant = "alice", .seal = "contract", .type = "contract", .scope = "sales",
			.reason = "Batch of distributor contracts", .amount = 10000,
			.approvers = { "bob" }, .delay = { 1800 }, .signs = 48, .sign_after = 600,
			.sign_gap = 400, .host = "ws-alice", .exe = "/usr/bin/pdfsig",
		};
		size_t first = application(at(D - 2, 9, 0, 0), &a);
		for (size_t i = first; i < n_evs; i++)
			if (!strcmp(evs[i].action, "sign"))
				evs[i].tag = t;
	}
	if ((t = tag_of("quota-voided"))) {
		struct appspec a = {
			.applicant = "alice", .seal = "contract", .type = "contract", .scope = "sales",
			.reason = "Batch of distributor contracts", .amount = 10000,
			.approvers = { "bob" }, .delay = { 1800 }, .signs = 41, .sign_after = 600,
			.sign_gap = 400, .host = "ws-alice", .exe = "/usr/bin/osslsigncode",
		};
		/* on the Saturday before, when nobody else signs */
		size_t first = application(at(D - (D % 7) - 2, 9, 0, 0), &a);
		int voided = 0;
		for (size_t i = first; i < n_evs && voided < 3; i++)
			if (!strcmp(evs[i].action, "sign") && (i - first) % 7 == 6) {
				struct ev *v = add(evs[i].ts + NS / 2, "sign_void", "error", "alice", "contract");
				v->reason = dup("the token failed after the record was written; no signature "
				                   "was released and the use is given back");
				v->app = evs[i].app;
				v->voids = evs[i].order + 1;
				voided++;
			}
	}
	if ((t = tag_of("checkpoint-owed"))) {
		/* a weekday night, so that the next morning's records follow it */
		struct ev *e = add(at(D - 1, 22, 10, 0), "login", "ok", "grace", NULL);
		e->cp_delay = 2 * 3600;
		e->tag = t;
	}
	if ((t = tag_of("off-hours-restart"))) {
		int sat = D - (D % 7) + 5;
		gateway_ev(at(sat, 2, 0, 0), "gateway_stop");
		gateway_ev(at(sat, 2, 4, 0), "gateway_start")->tag = t;
	}
	if ((t = tag_of("off-hours-token"))) {
		int sun = D - (D % 7) + 6;
		struct ev *e = gateway_ev(at(sun, 3, 0, 0), "token_absent");
		e->reason = dup("the backend token is not present");
		e->tag = t;
		gateway_ev(at(sun, 3, 20, 0), "token_present")->reason = dup("the backend token is back");
	}
	if ((t = tag_of("clock-backwards"))) {
		struct ev *e = add(at(D, 12, 30, 0), "login", "ok", "erin", NULL);
		e->clock_back = true;
		e->tag = t;
	}
}

static int
cmp_ev(const void *a, const void *b)
{
	const struct ev *x = a, *y = b;

	if (x->sort_ts != y->sort_ts)
		return x->sort_ts < y->sort_ts ? -1 : 1;
	return x->order < y->order ? -1 : x->order > y->order;
}

/* ---- signing checkpoints with a key of the generator's own ---- */

static EVP_PKEY *key;
static uint8_t *cert_der;
static size_t cert_len;

static void
make_key(void)
{
	X509 *x = X509_new();
	X509_NAME *nm;
	unsigned char *p = NULL;
	int n;

	key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	if (!key || !x)
		abort();
	ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
	X509_gmtime_adj(X509_getm_notBefore(x), -86400L * 400);
	X509_gmtime_adj(X509_getm_notAfter(x), 86400L * 3650);
	X509_set_pubkey(x, key);
	nm = X509_get_subject_name(x);
	X509_NAME_add_entry_by_txt(nm, "CN", MBSTRING_ASC, (const unsigned char *)"gen-activity audit", -1, -1, 0);
	X509_set_issuer_name(x, nm);
	if (!X509_sign(x, key, EVP_sha256()) || (n = i2d_X509(x, &p)) <= 0)
		abort();
	cert_der = malloc((size_t)n);
	memcpy(cert_der, p, (size_t)n);
	cert_len = (size_t)n;
	OPENSSL_free(p);
	X509_free(x);
}

/* The items after the header, streamed to a temporary file: the header,
 * which names the head and the last checkpoint, is known only at the end. */
struct out { FILE *body; };

static void
push(struct out *o, json_t *j)
{
	if (!j || json_dumpf(j, o->body, JSON_COMPACT) != 0 || fputc('\n', o->body) == EOF)
		abort();
	json_decref(j);
}

static uint64_t cp_id;
static uint8_t cp_prev_hash[32];

static void
checkpoint(struct out *o, uint64_t seq, const uint8_t hash[32], int64_t ts)
{
	struct gw_audit_checkpoint cp = { 0 };
	uint8_t msg[GW_AUDIT_CHECKPOINT_MSG_LEN], sig[256];
	size_t mlen, slen = sizeof(sig);
	EVP_MD_CTX *md = EVP_MD_CTX_new();

	cp.id = ++cp_id;
	cp.seq = seq;
	cp.ts_ns = ts;
	memcpy(cp.hash, hash, 32);
	cp.alg = "ecdsa-sha256";
	cp.chained = true;
	cp.prev_id = cp.id - 1;
	memcpy(cp.prev_hash, cp_prev_hash, 32);
	mlen = gw_audit_checkpoint_message(&cp, msg);
	if (!md || EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, key) != 1 ||
	    EVP_DigestSign(md, sig, &slen, msg, mlen) != 1)
		abort();
	EVP_MD_CTX_free(md);
	cp.sig = sig;
	cp.sig_len = slen;
	gw_audit_checkpoint_hash(&cp, cp_prev_hash);
	push(o, gw_audit_checkpoint_to_json(&cp, false));
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "days", required_argument, NULL, 'd' }, { "seed", required_argument, NULL, 's' },
		{ "misuse", required_argument, NULL, 'm' }, { "manifest", required_argument, NULL, 'M' },
		{ "output", required_argument, NULL, 'o' }, { "billing", required_argument, NULL, 'b' },
		{ NULL, 0, NULL, 0 },
	};
	const char *outpath = NULL, *manifest = NULL;
	int days = 31, ch;
	struct out o = { 0 };
	uint8_t running[32] = { 0 };
	int64_t prev_ts = 0, deadline = 0;
	uint64_t last = 0;
	int *app_ids;
	uint64_t *seq_of;
	FILE *f;
	json_t *hdr, *man;
	char hex[65], *b64, when[48];

	while ((ch = getopt_long(argc, argv, "o:", opts, NULL)) != -1) {
		switch (ch) {
		case 'd': days = atoi(optarg); break;
		case 's': rng ^= strtoull(optarg, NULL, 10) * 0x9e3779b97f4a7c15ULL; break;
		case 'M': manifest = optarg; break;
		case 'b': billing = atoll(optarg); break;
		case 'o': outpath = optarg; break;
		case 'm': {
			char *list = strdup(optarg), *save = NULL;
			for (char *w = strtok_r(list, ",", &save); w; w = strtok_r(NULL, ",", &save)) {
				size_t i;
				for (i = 0; i < N_MISUSES; i++)
					if (!strcmp(w, "all") || !strcmp(w, misuses[i]))
						want[i] = true;
				for (i = 0; i < N_MISUSES && strcmp(w, "all") && strcmp(w, misuses[i]); i++)
					;
				if (i == N_MISUSES && strcmp(w, "all")) {
					fprintf(stderr, "gen-activity: no misuse named %s\n", w);
					return 2;
				}
			}
			free(list);
			break;
		}
		default:
			fprintf(stderr, "usage: gen-activity [--days N] [--seed N] [--misuse NAME,...|all] "
			                "[--manifest FILE] -o FILE\n");
			return 2;
		}
	}
	if (!outpath || days < 1 || days > 3660) {
		fprintf(stderr, "gen-activity: -o FILE is needed (and 1 <= --days <= 3660)\n");
		return 2;
	}
	for (size_t i = 0; i < N_MISUSES; i++)
		if (want[i] && days < 50) {
			fprintf(stderr, "gen-activity: seeded misuses need --days 50 or more (the dormant "
			                "seal and the volume baseline need the history)\n");
			return 2;
		}
	if ((o.body = tmpfile()) == NULL)
		return 1;
	make_key();
	gateway_ev(at(0, 8, 0, 0), "gateway_start");
	for (int d = 0; d < days; d++)
		ordinary_day(d, tag_of("rubber-ratio") != 0);
	seed(days);
	qsort(evs, n_evs, sizeof(*evs), cmp_ev);

	/* Seqs, application ids in the order they were filed, the chain and
	 * checkpoints within each record's delay (the gateway's 300 s). */
	app_ids = calloc((size_t)next_app + 1, sizeof(*app_ids));
	seq_of = calloc(n_evs + 1, sizeof(*seq_of));
	man = json_array();
	for (size_t i = 0; i < N_MISUSES; i++)
		if (want[i])
			json_array_append_new(man, json_pack("{s:s,s:s,s:s,s:[],s:[]}", "misuse", misuses[i],
			                      "rule", expect[i].rule, "match", expect[i].match, "seqs", "apps"));
	{
		int next_id = 1;
		for (size_t i = 0; i < n_evs; i++) {
			struct ev *e = &evs[i];
			struct gw_audit_row row = { 0 };
			uint8_t h[32], prev[32];

			if (deadline && e->sort_ts > deadline) {
				checkpoint(&o, last, running, deadline);
				deadline = 0;
			}
			if (e->clock_back)
				e->ts = prev_ts - 120 * NS;
			if (e->app && !app_ids[e->app])
				app_ids[e->app] = next_id++;
			e->seq = ++last;
			seq_of[e->order] = e->seq;
			if (e->voids)
				e->detail = fmt("{\"voids\":%llu}", (unsigned long long)seq_of[e->voids - 1]);
			row.seq = e->seq;
			row.ts_ns = e->ts;
			row.action = e->action;
			row.outcome = e->outcome;
			row.reason = e->reason;
			row.actor = e->actor;
			row.uid = e->uid;
			row.pid = e->pid;
			row.exe = e->exe;
			row.host = e->host;
			row.seal = e->seal;
			row.application = e->app ? app_ids[e->app] : 0;
			row.mechanism = !strcmp(e->action, "sign") ? 0x1041 : 0;
			row.detail = e->detail;
			memcpy(prev, running, 32);
			row.prev_hash = prev;
			row.prev_hash_len = 32;
			if (gw_audit_row_hash(running, &row, h) != 0)
				abort();
			row.hash = h;
			row.hash_len = 32;
			memcpy(running, h, 32);
			push(&o, gw_audit_row_to_json(&row, NULL, NULL));
			if (!deadline || e->sort_ts + e->cp_delay * NS < deadline)
				deadline = e->sort_ts + e->cp_delay * NS;
			prev_ts = e->ts;
			if (e->tag) {
				json_t *m = json_array_get(man, 0);
				for (size_t k = 0; k < json_array_size(man); k++)
					if (!strcmp(json_string_value(json_object_get(json_array_get(man, k), "misuse")),
					            misuses[e->tag - 1]))
						m = json_array_get(man, k);
				json_array_append_new(json_object_get(m, "seqs"), json_integer((json_int_t)e->seq));
				if (e->app) {
					json_t *apps = json_object_get(m, "apps");
					size_t k;
					for (k = 0; k < json_array_size(apps); k++)
						if (json_integer_value(json_array_get(apps, k)) == app_ids[e->app])
							break;
					if (k == json_array_size(apps))
						json_array_append_new(apps, json_integer(app_ids[e->app]));
				}
			}
		}
	}
	checkpoint(&o, last, running, prev_ts + 5 * NS);   /* the export's own, fresh one */

	gw_hex(running, 32, hex);
	b64 = sg_b64_encode(cert_der, cert_len);
	gw_audit_format_time(prev_ts + 5 * NS, 0, when, sizeof(when));
	hdr = json_pack("{s:s,s:s,s:i,s:s,s:s,s:s,s:I,s:s,s:s,s:s,s:I}", "type", "header",
	                "format", "sealgate-audit-export", "version", 1, "instance", "gen-activity",
	                "host", "gw1", "exported_by", "grace", "upto", (json_int_t)last,
	                "head_hash", hex, "exported_at", when, "cert", b64,
	                "checkpoint_upto", (json_int_t)cp_id);
	f = fopen(outpath, "we");
	if (!f || !hdr)
		return 1;
	json_dumpf(hdr, f, JSON_COMPACT);
	fputc('\n', f);
	rewind(o.body);
	{
		char buf[1 << 16];
		size_t got;
		while ((got = fread(buf, 1, sizeof(buf), o.body)) > 0)
			if (fwrite(buf, 1, got, f) != got)
				return 1;
	}
	fclose(o.body);
	if (fclose(f) != 0)
		return 1;
	if (manifest && json_dump_file(man, manifest, JSON_INDENT(1)) != 0)
		return 1;
	fprintf(stderr, "gen-activity: %llu records, %llu checkpoints, %d applications over %d days\n",
	        (unsigned long long)last, (unsigned long long)cp_id, next_app - 1, days);
	json_decref(hdr);
	json_decref(man);
	free(b64);
	free(app_ids);
	free(seq_of);
	for (size_t i = 0; i < n_strs; i++)
		free(strs[i]);
	free(strs);
	free(evs);
	EVP_PKEY_free(key);
	free(cert_der);
	return 0;
}
