/*
 * How soon a gateway hears of a policy published at another (the change
 * feed, docs/policy.md "Changes seen at once"; goal: in force within 1 s):
 * on a PostgreSQL store, one handle publishes N versions one after the
 * other and a feed on a second handle waits for each. Prints the publish
 * (its commit) and the time from the commit until the feed had the event,
 * as median, 95th percentile and maximum. Measures, never fails on a
 * number.
 *
 * usage: bench-feed URL [N]        (tests/bench/run-feed.sh gives a cluster)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>

#include "policystore.h"
#include "store.h"

static double
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int
cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static void
report(const char *what, double *v, size_t n)
{
	qsort(v, n, sizeof(*v), cmp);
	printf("%-28s median %7.2f ms  p95 %7.2f ms  max %7.2f ms\n", what, v[n / 2],
	       v[(n * 95) / 100 < n ? (n * 95) / 100 : n - 1], v[n - 1]);
}

struct want { char event[32]; int seen; };

static void
heard(void *ctx, const char *event)
{
	struct want *w = ctx;

	if (strcmp(event, w->event) == 0)
		w->seen = 1;
}

int
main(int argc, char **argv)
{
	struct gw_store *a = NULL, *b = NULL;
	struct gw_store_feed *f = NULL;
	char err[512], text[64];
	size_t n = argc > 2 ? strtoul(argv[2], NULL, 10) : 200;
	double *commit, *hear;
	int64_t base = 0;

	if (argc < 2 || n == 0) {
		fprintf(stderr, "usage: bench-feed URL [N]\n");
		return 2;
	}
	commit = calloc(n, sizeof(*commit));
	hear = calloc(n, sizeof(*hear));
	if (commit == NULL || hear == NULL ||
	    gw_store_open_url(argv[1], &a, err, sizeof(err)) < 0 ||
	    gw_store_open_url(argv[1], &b, err, sizeof(err)) < 0 ||
	    gw_store_changes_open(b, &f, err, sizeof(err)) != 1 ||
	    gw_store_policy_latest(a, &base, err, sizeof(err)) < 0) {
		fprintf(stderr, "bench-feed: %s\n", err);
		return 1;
	}
	for (size_t i = 0; i < n; i++) {
		struct gw_policy_version v = { .version = base + 1 + (int64_t)i, .author = "bench" };
		struct want w = { .seen = 0 };
		double t0, t1;

		snprintf(text, sizeof(text), "version: 1\n# %zu\n", i);
		v.text = text;
		v.len = strlen(text);
		EVP_Digest(text, v.len, v.sha256, NULL, EVP_sha256(), NULL);
		snprintf(w.event, sizeof(w.event), "policy:%lld", (long long)v.version);
		t0 = now_ms();
		if (gw_store_tx_begin(a, err, sizeof(err)) < 0 ||
		    gw_store_policy_publish_tx(a, &v, err, sizeof(err)) < 0 ||
		    gw_store_tx_commit(a, err, sizeof(err)) < 0) {
			fprintf(stderr, "bench-feed: publish: %s\n", err);
			return 1;
		}
		t1 = now_ms();
		while (!w.seen)
			if (gw_store_changes_wait(f, 1000, heard, &w, err, sizeof(err)) < 0) {
				fprintf(stderr, "bench-feed: feed: %s\n", err);
				return 1;
			}
		commit[i] = t1 - t0;
		hear[i] = now_ms() - t1;
	}
	printf("%zu versions published through one store handle, heard by the feed of another:\n",
	       n);
	report("publish (to its commit)", commit, n);
	report("commit to heard", hear, n);
	gw_store_changes_close(&f);
	gw_store_close(&a);
	gw_store_close(&b);
	free(commit);
	free(hear);
	return 0;
}
