/*
 * sealgated: the only holder of its site's backend token. Parses the command
 * line, opens config, token, store (a PostgreSQL store before the token),
 * audit and policy, then serves until SIGTERM. --set-password, --check and
 * --verify-audit are offline admin commands, and so is --migrate-store (a
 * SQLite store moved to PostgreSQL, store/migrate.c). A management gateway
 * (backend_token: none) opens no token at all (docs/sites.md).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sodium.h>

#include "appstore.h"
#include "audit.h"
#include "audit_ops.h"
#include "cardwatch.h"
#include "online.h"
#include "changes.h"
#include "notify/notify.h"
#include "policy_ops.h"
#include "quota.h"
#include "signpath.h"
#include "auth.h"
#include "auth_ops.h"
#include "config.h"
#include "log.h"
#include "migrate.h"
#include "server.h"
#include "sg-config.h"
#include "store.h"
#include "token.h"
#include "totp.h"

static void
usage(FILE *f)
{
	fprintf(f,
"usage: sealgated --config FILE [--foreground]\n"
"       sealgated --config FILE --rebind [--foreground]\n"
"       sealgated --config FILE --check\n"
"       sealgated --config FILE --set-password USER --password-file FILE|-\n"
"       sealgated --config FILE --migrate-store postgresql://... [--site NAME]\n"
"\n"
"  -c, --config FILE        gateway configuration (docs/configuration.md)\n"
"  -f, --foreground         log to stderr whatever the configuration says\n"
"      --rebind             take the backend token found now as the seals' token,\n"
"                           replacing the one the store is bound to (a replaced\n"
"                           card); recorded in the audit log, then serve as usual\n"
"      --check              validate configuration, policy and seal keys, then exit\n"
"      --verify-audit       check the audit log's hash chain in the store (this\n"
"                           gateway's site, or --site NAME, or --all-sites: one\n"
"                           line a site), then exit\n"
"      --migrate-store URL  copy the configured SQLite store (stopped) to the\n"
"                           PostgreSQL store URL as site NAME (default: the\n"
"                           configured site) in one transaction, verify the copied\n"
"                           audit chain, then exit; the SQLite file is not changed\n"
"      --site NAME          the site the store becomes (with --migrate-store), or\n"
"                           the site to verify (with --verify-audit)\n"
"      --all-sites          every site of the store (with --verify-audit)\n"
"      --set-password USER  set USER's sealgate password in the store (offline\n"
"                           bootstrap of the first seal admin); the password is the\n"
"                           first line of --password-file (- for stdin)\n"
"  -V, --version\n"
"  -h, --help\n"
"\n"
"Signals: SIGHUP reloads configuration and policy (a bad file is rejected and the\n"
"running policy stays); SIGTERM stops cleanly.\n");
}

/* First line of path ("-" = stdin), without the newline. */
static char *
read_secret_line(const char *path, char *err, size_t errlen)
{
	char buf[SG_PIN_MAX + 2];
	FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "re");
	char *nl, *out;

	if (f == NULL) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return NULL;
	}
	if (fgets(buf, sizeof(buf), f) == NULL) {
		snprintf(err, errlen, "%s: empty", path);
		if (f != stdin)
			fclose(f);
		return NULL;
	}
	if (f != stdin)
		fclose(f);
	nl = strchr(buf, '\n');
	if (nl)
		*nl = '\0';
	else if (strlen(buf) > SG_PIN_MAX) {
		snprintf(err, errlen, "%s: password longer than %d bytes", path, SG_PIN_MAX);
		sodium_memzero(buf, sizeof(buf));
		return NULL;
	}
	out = strdup(buf);
	sodium_memzero(buf, sizeof(buf));
	return out;
}

/* Opens the configured store (a SQLite file or a PostgreSQL URL) scoped to
 * the gateway's site; claim: as the one gateway of that site, refused
 * while another holds it. Messages name the store without a password. */
static int
open_store(const struct gw_config *cfg, bool claim, struct gw_store **st, char *err,
           size_t errlen)
{
	char why[768];

	*st = NULL;
	if (gw_store_open_url(cfg->store_url, st, why, sizeof(why)) < 0 ||
	    gw_store_set_site(*st, cfg->site, why, sizeof(why)) < 0 ||
	    (claim && gw_store_site_claim(*st, why, sizeof(why)) < 0)) {
		snprintf(err, errlen, "store %s, site %s: %s", cfg->store_shown, cfg->site, why);
		gw_store_close(st);
		return -1;
	}
	return 0;
}

/* --verify-audit --site NAME | --all-sites: a line a site, then its
 * problems; 1 when any site's chain broke or could not be read. */
static int
print_site(void *arg, const char *site, int r, const struct gw_audit_verdict *vd,
           json_t *certs, const char *err)
{
	bool *bad = arg;
	char line[1024];

	(void)certs;
	gw_audit_site_line(site, r, vd, err, line, sizeof(line));
	printf("%s\n", line);
	for (size_t i = 1; r > 0 && i < vd->n_problems; i++)
		printf("  %s\n", vd->problems[i]);
	for (size_t i = 0; r >= 0 && i < vd->n_notes; i++)
		printf("  note: %s\n", vd->notes[i]);
	if (r != 0)
		*bad = true;
	return 0;
}

static int
verify_sites(const struct gw_config *cfg, const char *which)
{
	struct gw_store *st = NULL;
	bool bad = false;
	char err[1024];
	int rv = 1;

	if (open_store(cfg, false, &st, err, sizeof(err)) < 0)
		fprintf(stderr, "sealgated: %s\n", err);
	else if (gw_audit_verify_sites(st, cfg->store_url, which, NULL, NULL, 0, print_site, &bad, err,
	                               sizeof(err)) != 0)
		fprintf(stderr, "sealgated: reading the audit log: %s\n", err);
	else
		rv = bad ? 1 : 0;
	gw_store_close(&st);
	return rv;
}

/* --migrate-store: the configured SQLite store, as the configured site,
 * to url as site to_site (docs/store.md, "Moving to PostgreSQL"). */
static int
migrate_store(const struct gw_config *cfg, const char *url, const char *to_site)
{
	struct gw_migrate_report rep;
	char err[2048], shown[512], hex[65];

	if (cfg->store_path == NULL) {
		fprintf(stderr, "sealgated: --migrate-store moves a SQLite store: this configuration's "
		        "store is %s already\n", cfg->store_shown);
		return 1;
	}
	gw_config_redact_url(url, shown, sizeof(shown));
	if (to_site == NULL)
		to_site = cfg->site;
	if (gw_store_migrate(cfg->store_path, cfg->site, url, to_site, &rep, err,
	                     sizeof(err)) < 0) {
		fprintf(stderr, "sealgated: moving the store to %s: %s\n", shown, err);
		return 1;
	}
	printf("moved the SQLite store %s (site %s) to %s as site %s, in one transaction:\n",
	       cfg->store_path, cfg->site, shown, to_site);
	for (int t = 0; t < GW_TABLE_COUNT; t++)
		if (t != GW_TABLE_IDS)
			printf("  %-30s %llu\n", gw_store_table_names[t],
			       (unsigned long long)rep.rows[t]);
	gw_hex(rep.head_hash, sizeof(rep.head_hash), hex);
	printf("audit log intact on the copy: head seq %llu, hash %s, %llu signed checkpoints, "
	       "signed up to seq %llu (the same chain as the SQLite store)\n",
	       (unsigned long long)rep.head_seq, hex, (unsigned long long)rep.checkpoints,
	       (unsigned long long)rep.covered_seq);
	printf("the SQLite file is left as it was; to run on the copy, the configuration "
	       "says store: postgresql://… and site: %s\n", to_site);
	return 0;
}

static int
set_password(struct gw_config *cfg, const char *user, const char *pwfile)
{
	struct gw_policy *pol = NULL;
	struct gw_store *st = NULL;
	struct gw_audit *au = NULL;
	struct gw_audit_event ev;
	char err[512], hash[256] = "";
	struct gw_password_change pc = { .user = user, .hash = hash };
	char *pw = NULL;
	uint64_t seq;
	int rv = 1, probe;

	if (gw_policy_load(cfg->policy_path, &pol, err, sizeof(err)) < 0) {
		fprintf(stderr, "sealgated: %s\n", err);
		goto out;
	}
	if (gw_policy_person(pol, user) == NULL) {
		fprintf(stderr, "sealgated: no person \"%s\" in %s\n", user, cfg->policy_path);
		goto out;
	}
	pw = read_secret_line(pwfile, err, sizeof(err));
	if (pw == NULL) {
		fprintf(stderr, "sealgated: %s\n", err);
		goto out;
	}
	if (strlen(pw) < 8) {
		fprintf(stderr, "sealgated: a password needs at least 8 characters\n");
		goto out;
	}
	/* The record goes into the chain from this process: a running gateway
	 * writes the chain too, and two writers would fork it. */
	probe = sg_connect_unix(cfg->socket_path);
	if (probe >= 0) {
		close(probe);
		fprintf(stderr, "sealgated: a gateway is running on %s: set the password through it "
		        "(`sealctl user passwd %s`, recorded), or stop it first\n", cfg->socket_path, user);
		goto out;
	}
	/* The site's claim too: a gateway of the site on another socket. */
	if (open_store(cfg, true, &st, err, sizeof(err)) < 0 ||
	    gw_audit_open(st, &au, err, sizeof(err)) < 0) {
		fprintf(stderr, "sealgated: %s\n", err);
		goto out;
	}
	if (gw_auth_hash_password(pw, hash, sizeof(hash)) < 0) {
		fprintf(stderr, "sealgated: could not hash the password\n");
		goto out;
	}
	/* The password and its record in one transaction, or neither. */
	ev = (struct gw_audit_event){
		.action = "password_set", .outcome = "ok", .actor = user,
		.reason = "set offline with sealgated --set-password",
		.uid = (int64_t)getuid(), .pid = (int64_t)getpid(), .exe = "sealgated",
	};
	if (gw_audit_record_with(au, &ev, gw_auth_password_apply_tx, &pc, &seq, err, sizeof(err)) < 0) {
		fprintf(stderr, "sealgated: the password was not set: %s\n", err);
		goto out;
	}
	rv = 0;
out:
	sodium_memzero(hash, sizeof(hash));
	sg_free_secret_str(pw);
	gw_audit_close(&au);
	gw_store_close(&st);
	gw_policy_unref(&pol);
	return rv;
}

/* The backend token came, went or was refused: an audit record, written
 * from the thread that saw it (a signer or the card watcher). */
static void
token_event(void *arg, enum gw_token_event ev, const char *detail)
{
	struct gw_ctx *ctx = arg;
	struct gw_audit_event e = {
		.action = ev == GW_TOKEN_REMOVED ? "token_removed" :
		          ev == GW_TOKEN_INSERTED ? "token_inserted" : "card_refused",
		.outcome = ev == GW_TOKEN_REFUSED ? "denied" : "ok",
		.reason = detail, .uid = -1, .pid = getpid(), .host = ctx->host,
	};
	uint64_t seq;

	if (ctx->audit == NULL || gw_audit_record(ctx->audit, &e, &seq) < 0)
		gw_log_error("audit record %s (%s) could not be written", e.action, detail);
}

/* The keys known from the bound token, read from the store at start. */
struct known {
	struct gw_seal_key **keys;
	size_t n;
};

static int
known_peek(void *arg, const char *uri, const uint8_t *blob, size_t len)
{
	struct known *k = arg;
	struct gw_seal_key **grown;
	char err[256];

	grown = realloc(k->keys, (k->n + 1) * sizeof(*grown));
	if (grown == NULL)
		return -1;
	k->keys = grown;
	if (gw_seal_key_decode(uri, blob, len, &k->keys[k->n], err, sizeof(err)) < 0) {
		gw_log_error("store: %s", err);
		return -1;
	}
	k->n++;
	return 0;
}

/* Makes the store remember the token this run logged in to: the first
 * time (token_bound), or after --rebind took another (token_rebound). */
static int
keep_binding(struct gw_ctx *ctx, const struct gw_store_binding *stored, bool rebind)
{
	struct gw_token_binding now;
	struct gw_store_binding b;
	struct gw_audit_event e = { .outcome = "ok", .uid = -1, .pid = getpid(), .host = ctx->host };
	char err[256], why[160];
	uint64_t seq;

	if (!gw_token_get_binding(ctx->token, &now))
		return 0;
	if (stored != NULL && strcmp(stored->serial, now.serial) == 0 &&
	    stored->ncerts == now.ncerts && memcmp(stored->certs, now.certs, sizeof(now.certs)) == 0) {
		if (rebind)
			gw_log_info("--rebind: the token found (serial %s) is the one the store is bound "
			            "to; nothing changed", now.serial);
		return 0;
	}
	memset(&b, 0, sizeof(b));
	memcpy(b.serial, now.serial, sizeof(b.serial));
	memcpy(b.certs, now.certs, sizeof(b.certs));
	b.ncerts = now.ncerts;
	b.since = (int64_t)time(NULL);
	if (stored != NULL)
		snprintf(why, sizeof(why), "serial %s, %u certificates (was serial %s, %u certificates)",
		         now.serial, now.ncerts, stored->serial, stored->ncerts);
	else
		snprintf(why, sizeof(why), "serial %s, %u certificates", now.serial, now.ncerts);
	e.action = stored != NULL ? "token_rebound" : "token_bound";
	e.reason = why;
	if (ctx->audit == NULL || gw_audit_record(ctx->audit, &e, &seq) < 0) {
		gw_log_error("audit record %s (%s) could not be written", e.action, why);
		return -1;
	}
	/* Recorded first: a binding the log does not show is never kept. */
	if (gw_store_binding_set(ctx->store, &b, err, sizeof(err)) < 0) {
		gw_log_error("store: keeping the token binding: %s", err);
		return -1;
	}
	gw_log_info("%s: %s", e.action, why);
	return 0;
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "foreground", no_argument, NULL, 'f' },
		{ "check", no_argument, NULL, 'C' },
		{ "rebind", no_argument, NULL, 'R' },
		{ "verify-audit", no_argument, NULL, 'A' },
		{ "migrate-store", required_argument, NULL, 'M' },
		{ "site", required_argument, NULL, 'S' },
		{ "all-sites", no_argument, NULL, 'L' },
		{ "set-password", required_argument, NULL, 'P' },
		{ "password-file", required_argument, NULL, 'F' },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *config = NULL, *pw_user = NULL, *pw_file = NULL;
	const char *migrate_url = NULL, *migrate_site = NULL;
	bool foreground = false, check = false, verify = false, rebind = false, all_sites = false;
	struct gw_store_binding stored;
	struct gw_token_binding prior;
	int bound = 0, opened = 0;
	bool store_first;
	struct gw_ctx ctx;
	struct gw_snapshot *snap = NULL;
	struct gw_cardwatch *cardwatch = NULL;
	struct known known = { 0 };
	bool known_unreadable = false;
	char err[1024];
	char *pin = NULL, *file_err = NULL;
	uint8_t inst[8];
	int c, rv = 1;

	while ((c = getopt_long(argc, argv, "c:fVh", longopts, NULL)) != -1) {
		switch (c) {
		case 'c': config = optarg; break;
		case 'f': foreground = true; break;
		case 'C': check = true; break;
		case 'R': rebind = true; break;
		case 'A': verify = true; break;
		case 'M': migrate_url = optarg; break;
		case 'S': migrate_site = optarg; break;
		case 'L': all_sites = true; break;
		case 'P': pw_user = optarg; break;
		case 'F': pw_file = optarg; break;
		case 'V': printf("sealgated %s\n", SEALGATE_VERSION); return 0;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (config == NULL || optind != argc || (pw_user != NULL) != (pw_file != NULL) ||
	    (migrate_site != NULL && migrate_url == NULL && !verify) ||
	    (all_sites && (!verify || migrate_site != NULL)) ||
	    (migrate_url != NULL && (check || verify || rebind || pw_user != NULL))) {
		usage(stderr);
		return 2;
	}
	if (sodium_init() < 0)
		return 1;
	{
		/* Blocked before any thread starts, so every thread inherits the
		 * mask and the server's signalfd is the only receiver. */
		sigset_t mask;
		sigemptyset(&mask);
		sigaddset(&mask, SIGTERM);
		sigaddset(&mask, SIGINT);
		sigaddset(&mask, SIGHUP);
		sigaddset(&mask, SIGPIPE);
		pthread_sigmask(SIG_BLOCK, &mask, NULL);
	}

	memset(&ctx, 0, sizeof(ctx));
	pthread_mutex_init(&ctx.snap_lock, NULL);
	pthread_mutex_init(&ctx.wf_lock, NULL);
	if (gw_config_load(config, &ctx.cfg, err, sizeof(err)) < 0) {
		fprintf(stderr, "sealgated: %s\n", err);
		return 1;
	}
	if (migrate_url != NULL) {
		rv = migrate_store(ctx.cfg, migrate_url, migrate_site);
		gw_config_free(&ctx.cfg);
		return rv;
	}
	if (verify && (all_sites || migrate_site != NULL)) {
		rv = verify_sites(ctx.cfg, all_sites ? "*" : migrate_site);
		gw_config_free(&ctx.cfg);
		return rv;
	}
	if (verify) {
		struct gw_audit_verifier *v = NULL;
		struct gw_audit_verdict vd;
		int r;

		if (open_store(ctx.cfg, false, &ctx.store, err, sizeof(err)) < 0) {
			fprintf(stderr, "sealgated: %s\n", err);
		} else if ((r = gw_audit_verify_full(ctx.store, NULL, 0, &v, &vd, err, sizeof(err))) < 0) {
			fprintf(stderr, "sealgated: reading the audit log: %s\n", err);
		} else if (r > 0) {
			fprintf(stderr, "sealgated: audit log NOT intact:\n");
			for (size_t i = 0; i < vd.n_problems; i++)
				fprintf(stderr, "  %s\n", vd.problems[i]);
		} else {
			printf("audit log intact: %llu records, hash chain verified, %llu signed "
			       "checkpoints, signed up to seq %llu\n", (unsigned long long)vd.records,
			       (unsigned long long)vd.checkpoints, (unsigned long long)vd.covered_seq);
			rv = 0;
		}
		if (v)
			for (size_t i = 0; i < vd.n_notes; i++)
				printf("note: %s\n", vd.notes[i]);
		gw_audit_verifier_free(&v);
		gw_store_close(&ctx.store);
		gw_config_free(&ctx.cfg);
		return rv;
	}
	gw_auth_set_password_cost((enum gw_pw_cost)ctx.cfg->password_cost);
	gw_auth_set_hash_pool(ctx.cfg->password_hash_concurrency);
	if (pw_user != NULL) {
		rv = set_password(ctx.cfg, pw_user, pw_file);
		gw_config_free(&ctx.cfg);
		return rv;
	}
	/* Two heap arenas, not glibc's 8 per core: with a thread per client
	 * the extra arenas keep freed pages scattered and an idle gateway
	 * stays at its busiest size (docs/performance.md, footprint). */
	mallopt(M_ARENA_MAX, 2);
	gw_log_init("sealgated", !foreground && ctx.cfg->log && strcmp(ctx.cfg->log, "syslog") == 0,
	            ctx.cfg->log_debug);
	gethostname(ctx.host, sizeof(ctx.host) - 1);
	randombytes_buf(inst, sizeof(inst));
	sodium_bin2hex(ctx.instance, sizeof(ctx.instance), inst, sizeof(inst));
	ctx.started = time(NULL);

	/* PostgreSQL: the site's binding and known keys are rows of the
	 * shared store, read through a store that is open (and claimed: a
	 * second gateway of the site stops here, before its token). SQLite
	 * keeps its order: the file is peeked read-only before the token, and
	 * opened after it, so that --check beside a running gateway never
	 * opens the store that gateway writes. */
	store_first = ctx.cfg->store_path == NULL;
	if (store_first && open_store(ctx.cfg, !check, &ctx.store, err, sizeof(err)) < 0) {
		gw_log_error("%s", err);
		goto out;
	}
	if (ctx.cfg->no_token) {
		gw_log_info("a management gateway (backend_token: none): no token, no seal held here, "
		            "every signature refused");
		goto token_done;
	}
	pin = gw_config_read_pin(ctx.cfg, err, sizeof(err));
	if (pin == NULL) {
		gw_log_error("%s", err);
		goto out;
	}
	/* The token the store's seals live on, from an earlier run: another
	 * one is refused before its PIN is sent (docs/smartcard.md). */
	bound = store_first ? gw_store_binding_get(ctx.store, &stored, err, sizeof(err)) :
	                      gw_store_binding_peek(ctx.cfg->store_path, &stored, err, sizeof(err));
	if (bound < 0) {
		gw_log_error("store: reading the token binding: %s", err);
		goto out;
	}
	memset(&prior, 0, sizeof(prior));
	memcpy(prior.serial, stored.serial, sizeof(prior.serial));
	memcpy(prior.certs, stored.certs, sizeof(prior.certs));
	prior.ncerts = stored.ncerts;
	/* The keys last found on that token: with them the gateway can start
	 * while it is away (a card not inserted yet) and wait for it. */
	if (bound == 1 && !rebind &&
	    (store_first ? gw_store_known_keys_get(ctx.store, known_peek, &known, err, sizeof(err)) :
	                   gw_store_known_keys_peek(ctx.cfg->store_path, known_peek, &known, err,
	                                            sizeof(err))) < 0) {
		/* Only a start without the token needs them: go on without. */
		gw_log_warn("store: the keys known from the token cannot be read (%s); the gateway "
		            "can start only with its token present", err);
		for (size_t i = 0; i < known.n; i++)
			gw_seal_key_free(&known.keys[i]);
		known.n = 0;
		known_unreadable = true;
	}
	opened = gw_token_open_bound(ctx.cfg, pin, bound == 1 && !rebind ? &prior : NULL,
	                             known.n > 0, &ctx.token, err, sizeof(err));
	if (opened == 1) {
		for (size_t i = 0; i < known.n; i++)
			if (gw_token_know_key(ctx.token, known.keys[i]) < 0) {
				gw_log_error("out of memory");
				goto out;
			}
		gw_log_warn("backend token: %s", err);
		gw_log_warn("starting without the token (serial %s): its %zu keys are known from the "
		            "store, and every seal is unavailable until it is back; it is checked "
		            "against the binding before its PIN is sent", stored.serial, known.n);
	}
	if (opened < 0) {
		gw_log_error("backend token: %s", err);
		if (bound == 1 && !rebind && known.n == 0 && !known_unreadable &&
		    strstr(err, "no backend token matches"))
			gw_log_error("this store knows no keys of the token yet (they are kept from this "
			             "version on), so the gateway cannot start without it: start it once "
			             "with the token present");
		if (rebind && strstr(err, "no backend token matches"))
			gw_log_error("--rebind binds the token found now: insert it first");
		if (opened == -2) {
			char when[32];
			time_t t = (time_t)stored.since;
			struct tm tm;

			gmtime_r(&t, &tm);
			strftime(when, sizeof(when), "%Y-%m-%d %H:%M UTC", &tm);
			gw_log_error("the store %s (site %s) is bound to the token with serial %s since %s; "
			             "no PIN was sent to the one found. If the token was replaced or its "
			             "certificates changed on purpose (a seal added, a certificate renewed), "
			             "start sealgated once with --rebind (recorded in the audit log)",
			             ctx.cfg->store_shown, ctx.cfg->site, stored.serial, when);
		}
		goto out;
	}
	sg_free_secret_str(pin);
	pin = NULL;
token_done:
	if (gw_snapshot_load(&ctx, ctx.cfg->policy_path, &snap, err, sizeof(err)) < 0) {
		/* A published policy in the store may rule instead (policy_ops.c):
		 * fatal only if none is. --check checks the file. */
		if (check || (file_err = strdup(err)) == NULL) {
			gw_log_error("%s", err);
			goto out;
		}
	} else
		gw_snapshot_swap(&ctx, snap);
	if (check) {
		size_t held = 0;

		for (size_t i = 0; i < ctx.snap->policy->n_seals; i++)
			held += strcmp(ctx.snap->policy->seals[i].site, ctx.cfg->site) == 0;
		if (ctx.cfg->no_token)
			printf("configuration and policy are valid: a management gateway of site %s "
			       "(no token; the policy's %zu seals are signed with at their sites' "
			       "gateways)\n", ctx.cfg->site, ctx.snap->policy->n_seals);
		else
			printf("configuration, policy and %zu seal keys are valid%s", held, opened == 1 ?
			       " (the token is not present: its keys as last found on it)" : "");
		if (!ctx.cfg->no_token && held != ctx.snap->policy->n_seals)
			printf(" (site %s holds %zu of the policy's %zu seals)", ctx.cfg->site, held,
			       ctx.snap->policy->n_seals);
		if (!ctx.cfg->no_token)
			printf("\n");
		rv = 0;
		goto out;
	}
	if (!store_first && open_store(ctx.cfg, true, &ctx.store, err, sizeof(err)) < 0) {
		gw_log_error("%s", err);
		goto out;
	}
	if (gw_audit_open(ctx.store, &ctx.audit, err, sizeof(err)) < 0) {
		gw_log_error("audit: %s", err);
		goto out;
	}
	/* The site's TOTP key pair, published for the other sites, and the
	 * pins of theirs (docs/authentication.md, "Across sites"). */
	if (gw_totp_sites_start(ctx.store, ctx.token, ctx.cfg->site, ctx.cfg->totp_site_keys,
	                        ctx.cfg->totp_key_file, err,
	                        sizeof(err)) < 0) {
		gw_log_error("%s", err);
		goto out;
	}
	/* Signed checkpoints with the audit key (docs/audit.md); 0 = defaults. */
	if (ctx.cfg->audit_key != NULL &&
	    gw_audit_checkpoints_start(ctx.audit, ctx.token, ctx.cfg->audit_key,
	                               ctx.cfg->audit_checkpoint_interval, 0,
	                               err, sizeof(err)) < 0) {
		gw_log_error("audit: %s", err);
		goto out;
	}
	if (gw_auth_new(ctx.cfg->session_timeout, &ctx.auth) < 0) {
		gw_log_error("cannot initialise authentication");
		goto out;
	}
	{
		struct gw_auth_settings as = {
			.max_failures = ctx.cfg->auth_max_failures,
			.lockout_seconds = ctx.cfg->auth_lockout,
			.signing_window = ctx.cfg->signing_window,
			.confirm_timeout = ctx.cfg->confirm_timeout,
			.test_clock = ctx.cfg->test_clock,
		};
		gw_auth_configure(ctx.auth, &as);
		gw_log_info("passwords: at most %u Argon2id hashes at once", gw_auth_hash_pool());
		if (as.test_clock)
			gw_log_info("test_clock: TOTP, lockouts and windows follow SEALGATE_TEST_CLOCK (tests only)");
	}
	/* Sessions are the store's, cached here; made before the change
	 * feed starts, whose thread tells them what other gateways ended. */
	if (gw_auth_sessions_follow(&ctx, ctx.cfg->session_max_age, err, sizeof(err)) < 0) {
		gw_log_error("sessions: %s", err);
		goto out;
	}
	/* The newest published policy rules over the file; changes others
	 * make to the store are followed from here on (changes.h). */
	if (gw_policy_store_start(&ctx, file_err, err, sizeof(err)) < 0) {
		gw_log_error("policy: %s", err);
		goto out;
	}
	if (gw_changes_start(&ctx, err, sizeof(err)) < 0) {
		gw_log_error("%s", err);
		goto out;
	}
	/* Notices in the outbox (docs/notifications.md): the ones a stop or
	 * a crash left are sent from here on. */
	if (gw_notify_start(&ctx, err, sizeof(err)) < 0) {
		gw_log_error("%s", err);
		goto out;
	}
	if (gw_quota_new(ctx.store, &ctx.quota) < 0 || gw_signpath_init(&ctx) < 0) {
		gw_log_error("out of memory");
		goto out;
	}
	if (ctx.token != NULL && keep_binding(&ctx, bound == 1 ? &stored : NULL, rebind) < 0)
		goto out;
	/* (a convenience for a later start without the token: not fatal) */
	(void)gw_ctx_keep_known_keys(&ctx);
	if (ctx.token != NULL)
		gw_token_set_event_hook(ctx.token, token_event, &ctx);
	if (ctx.token != NULL && (strcmp(ctx.cfg->card_watch, "on") == 0 ||
	    (strcmp(ctx.cfg->card_watch, "auto") == 0 && gw_token_is_pcsc(ctx.token)))) {
		if (gw_cardwatch_start(ctx.token, ctx.cfg->reader, &cardwatch, err, sizeof(err)) < 0) {
			gw_log_error("%s", err);
			goto out;
		}
	}
	/* The risk rules beside the log (docs/risk.md): a failure to start
	 * them is said loudly, but stops no signing (alerts report misuse,
	 * they do not prevent it). Started once ctx.auth is there: the rules
	 * read the gateway's clock through it. */
	if (ctx.cfg->risk_online &&
	    gw_risk_online_start(&ctx, ctx.cfg->risk_queue, &ctx.risk, err, sizeof(err)) < 0)
		gw_log_error("%s: no alerts will be raised online", err);
	rv = gw_server_run(&ctx);
	if (rv == 1) {
		/* A thread still runs inside ctx (gw_server_run said so):
		 * every record so far is durable (gw_audit_record waits), so
		 * leave now, without freeing what it uses or running the
		 * token's destructors under it. */
		_exit(1);
	}
	rv = rv == 0 ? 0 : 1;
out:
	for (size_t i = 0; i < known.n; i++)
		gw_seal_key_free(&known.keys[i]);
	free(known.keys);
	sg_free_secret_str(pin);
	free(file_err);
	gw_cardwatch_stop(&cardwatch);
	/* (its thread reads the store and swaps snapshots: stopped first) */
	gw_changes_free(&ctx);
	gw_notify_stop(&ctx);
	gw_risk_online_stop(&ctx.risk);   /* (it writes through the audit writer) */
	if (ctx.token != NULL)
		gw_token_set_event_hook(ctx.token, NULL, NULL);
	gw_ctx_close(&ctx);
	gw_config_free(&ctx.cfg);
	return rv;
}
