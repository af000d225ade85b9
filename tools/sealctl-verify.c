/*
 * sealctl verify FILE.pdf (docs/stamp.md): every signature of the file,
 * offline. For each signature field: the byte range (it must leave out
 * exactly its /Contents), the CMS over it (the seal's certificate against
 * --ca when given), and sealgate's approval receipt inside it: signed by
 * the site's audit key (pinned with --audit-cert, or chained to --ca),
 * bound to this signature by the signed attributes' hash; then who
 * applied and who approved; the RFC 3161 timestamp of the signature (its
 * TSA against --tsa-ca when given); with --export, that each receipt's audit
 * record is in the (intact) export. Exit 0 when every signature and
 * receipt holds, 1 when one does not, 2 on bad arguments.
 */
#include "sealctl.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <openssl/crypto.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "stamp/pdfverify.h"

/* A record of the export: one a receipt names? (--export) */
static int
export_item(void *ctx, const json_t *item)
{
	struct sg_verify_records *w = ctx;
	const char *type = json_string_value(json_object_get(item, "type"));
	const char *hash = json_string_value(json_object_get(item, "hash"));
	long long seq = (long long)json_integer_value(json_object_get(item, "seq"));

	if (type == NULL || strcmp(type, "record") != 0 || hash == NULL)
		return 0;
	for (size_t i = 0; i < w->n; i++)
		if (w->seq[i] == seq && OPENSSL_strcasecmp(w->hash[i], hash) == 0)
			w->found[i] = true;
	return 0;
}

static X509 *
read_cert(const char *path)
{
	FILE *f = fopen(path, "rb");
	X509 *x = NULL;

	if (f == NULL) {
		fprintf(stderr, "sealctl: %s: %s\n", path, strerror(errno));
		return NULL;
	}
	x = PEM_read_X509(f, NULL, NULL, NULL);
	if (x == NULL) {
		rewind(f);
		x = d2i_X509_fp(f, NULL);
	}
	fclose(f);
	if (x == NULL)
		fprintf(stderr, "sealctl: %s: not a certificate (PEM or DER)\n", path);
	return x;
}

int
sealctl_verify(const char *cmd, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "ca", required_argument, NULL, 'c' }, { "audit-cert", required_argument, NULL, 'a' },
		{ "export", required_argument, NULL, 'e' }, { "tsa-ca", required_argument, NULL, 't' },
		{ NULL, 0, NULL, 0 },
	};
	const char *ca = NULL, *acert = NULL, *export = NULL, *tsaca = NULL;
	struct sg_verify_records recs = { 0 };
	struct sg_verify_opts vo = { 0 };
	X509_STORE *store = NULL, *tsa_store = NULL;
	X509 *pin = NULL;
	uint8_t *file = NULL;
	size_t flen = 0;
	int ch, n = 0, bad = 0, rv = 1;

	if (strcmp(cmd, "verify") != 0)
		return -1;
	optind = 0;
	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (ch == 'c')
			ca = optarg;
		else if (ch == 'a')
			acert = optarg;
		else if (ch == 'e')
			export = optarg;
		else if (ch == 't')
			tsaca = optarg;
		else
			return 2;
	}
	if (optind != argc - 1) {
		fprintf(stderr, "sealctl: verify FILE.pdf [--ca CA.pem] [--audit-cert CERT] "
		        "[--export FILE] [--tsa-ca FILE]\n");
		return 2;
	}
	if (ca != NULL) {
		store = X509_STORE_new();
		if (store == NULL || X509_STORE_load_file(store, ca) != 1) {
			fprintf(stderr, "sealctl: %s: not a CA file\n", ca);
			goto out;
		}
		/* A seal's certificate is for signing documents, not e-mail. */
		X509_STORE_set_purpose(store, X509_PURPOSE_ANY);
	}
	/* The TSA's CA: the token's certificate must chain to it for the
	 * timestamping purpose (TS_RESP_verify_token sets it). */
	if (tsaca != NULL && ((tsa_store = X509_STORE_new()) == NULL ||
	                      X509_STORE_load_file(tsa_store, tsaca) != 1)) {
		fprintf(stderr, "sealctl: %s: not a CA file\n", tsaca);
		goto out;
	}
	if (acert != NULL && (pin = read_cert(acert)) == NULL)
		goto out;
	if (sealctl_read_file(argv[optind], &file, &flen) < 0)
		goto out;
	vo.store = store;
	vo.pin = pin;
	vo.tsa_store = tsa_store;
	if (sg_verify_pdf(file, flen, &vo, stdout, &recs, &n, &bad) < 0) {
		fprintf(stderr, "sealctl: %s: not a PDF\n", argv[optind]);
		goto out;
	}
	if (n == 0) {
		printf("%s: no signature\n", argv[optind]);
		goto out;
	}
	/* The records are in the log: the export verified whole (its chain and
	 * checkpoints, pinned as the receipts are), and each receipt's record
	 * (seq and hash) in it. */
	if (export != NULL) {
		FILE *devnull = fopen("/dev/null", "w");
		int ev = sealctl_audit_verify_export(export, acert, ca, devnull ? devnull : stderr,
		                                     export_item, &recs);
		if (devnull)
			fclose(devnull);
		if (ev != 0) {
			printf("export %s: NOT intact (sealctl audit verify --from-export says why)\n", export);
			bad = 1;
		}
		for (size_t i = 0; i < recs.n; i++) {
			printf("audit record #%lld: %s\n", recs.seq[i], recs.found[i] && ev == 0 ?
			       "in the export, intact" : "NOT in the export");
			if (!recs.found[i])
				bad = 1;
		}
	}
	printf("%s: %d signature(s), %s\n", argv[optind], n, bad ? "NOT all valid" : "all valid");
	rv = bad ? 1 : 0;
out:
	X509_free(pin);
	X509_STORE_free(store);
	X509_STORE_free(tsa_store);
	free(file);
	return rv;
}
