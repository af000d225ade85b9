/*
 * Audit log benchmark: fills a store with N chained sign records (through
 * the store API, in batches) spread over a year, 1,000 seals and 2,000
 * people, then times what a large log costs: opening the log (chain head,
 * what gateway start does), a query for one seal and one month, and full
 * chain verification. Prints name<TAB>value lines; asserts nothing on time.
 *
 *   bench-audit DB [RECORDS]     create DB (when absent) and measure
 *   bench-audit DB 0             measure an existing DB only
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/sha.h>

#include "audit.h"
#include "store.h"

#define BATCH 10000
#define N_SEALS 1000
#define N_ACTORS 2000
#define YEAR_NS (365LL * 86400LL * 1000000000LL)
#define T0_NS (1735689600LL * 1000000000LL)      /* 2025-01-01T00:00:00Z */

static double
clock_s(clockid_t c)
{
	struct timespec ts;

	clock_gettime(c, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double
now_s(void)
{
	return clock_s(CLOCK_MONOTONIC);
}

/* CPU time of the process: on a shared machine, records per CPU second
 * say more about a change than records per wall second. */
static double
cpu_s(void)
{
	return clock_s(CLOCK_PROCESS_CPUTIME_ID);
}

struct rowbuf {
	char seal[16], actor[16];
	uint8_t digest[51];
	uint8_t hash[GW_AUDIT_HASH_LEN];
};

static int
fill(struct gw_store *st, uint64_t n)
{
	struct gw_audit_row *rows = calloc(BATCH, sizeof(*rows));
	struct rowbuf *bufs = calloc(BATCH, sizeof(*bufs));
	uint8_t prev[GW_AUDIT_HASH_LEN] = { 0 };
	uint64_t head = 0;
	char err[512];
	double t0 = now_s(), t1;

	if (!rows || !bufs)
		return -1;
	if (gw_store_audit_head(st, &head, prev, err, sizeof(err)) < 0) {
		fprintf(stderr, "bench-audit: %s\n", err);
		return -1;
	}
	for (uint64_t done = 0; done < n;) {
		size_t k = n - done < BATCH ? (size_t)(n - done) : BATCH;

		for (size_t i = 0; i < k; i++) {
			uint64_t seq = head + done + i + 1;
			struct gw_audit_row *r = &rows[i];
			struct rowbuf *b = &bufs[i];
			uint64_t x = seq * 0x9e3779b97f4a7c15ull;

			memset(r, 0, sizeof(*r));
			snprintf(b->seal, sizeof(b->seal), "seal%04u", (unsigned)(x >> 33) % N_SEALS);
			snprintf(b->actor, sizeof(b->actor), "p%05u", (unsigned)(x >> 17) % N_ACTORS);
			memcpy(b->digest, "\x30\x31\x30\x0d\x06\x09\x60\x86\x48\x01\x65\x03\x04\x02\x01\x05\x00\x04\x20", 19);
			SHA256((const uint8_t *)&seq, sizeof(seq), b->digest + 19);
			r->seq = seq;
			r->ts_ns = T0_NS + (int64_t)((double)(seq - 1) / (double)(head + n) * (double)YEAR_NS);
			r->action = "sign";
			r->outcome = "ok";
			r->actor = b->actor;
			r->uid = 1000;
			r->pid = (int64_t)(10000 + seq % 5000);
			r->exe = "/usr/bin/pdfsig";
			r->host = "bench-host";
			r->seal = b->seal;
			r->signed_digest = b->digest;
			r->signed_digest_len = sizeof(b->digest);
			r->mechanism = 0x1;
			r->prev_hash = i ? bufs[i - 1].hash : prev;
			r->prev_hash_len = GW_AUDIT_HASH_LEN;
			if (gw_audit_row_hash(r->prev_hash, r, b->hash) != 0)
				return -1;
			r->hash = b->hash;
			r->hash_len = GW_AUDIT_HASH_LEN;
		}
		if (gw_store_audit_append(st, rows, k, err, sizeof(err)) < 0) {
			fprintf(stderr, "bench-audit: append: %s\n", err);
			return -1;
		}
		memcpy(prev, bufs[k - 1].hash, sizeof(prev));
		done += k;
		if (done % 1000000 == 0)
			fprintf(stderr, "  %" PRIu64 " records...\n", done);
	}
	t1 = now_s();
	printf("fill_records\t%" PRIu64 "\n", n);
	printf("fill_s\t%.1f\n", t1 - t0);
	printf("fill_records_per_s\t%.0f\n", (double)n / (t1 - t0));
	free(rows);
	free(bufs);
	return 0;
}

static int
count_row(void *ctx, const struct gw_audit_row *row)
{
	(void)row;
	(*(uint64_t *)ctx)++;
	return 0;
}

int
main(int argc, char **argv)
{
	struct gw_store *st = NULL;
	struct gw_audit *au = NULL;
	uint64_t n = 1000000, count = 0, seq = 0;
	uint8_t hash[GW_AUDIT_HASH_LEN];
	char err[512];
	double t0, t1, c0, c1;

	if (argc < 2) {
		fprintf(stderr, "usage: bench-audit DB [RECORDS]\n");
		return 2;
	}
	if (argc > 2)
		n = strtoull(argv[2], NULL, 10);
	t0 = now_s();
	if (gw_store_open(argv[1], &st, err, sizeof(err)) < 0) {
		fprintf(stderr, "bench-audit: %s\n", err);
		return 1;
	}
	t1 = now_s();
	if (n > 0 && fill(st, n) < 0)
		return 1;
	printf("store_open_ms\t%.1f\n", (t1 - t0) * 1e3);

	/* What gateway start does with the log: the head, one lookup. */
	gw_store_close(&st);
	t0 = now_s();
	if (gw_store_open(argv[1], &st, err, sizeof(err)) < 0 ||
	    gw_audit_open(st, &au, err, sizeof(err)) < 0) {
		fprintf(stderr, "bench-audit: %s\n", err);
		return 1;
	}
	t1 = now_s();
	gw_audit_head(au, &seq, hash);
	printf("records\t%" PRIu64 "\n", seq);
	printf("open_store_and_log_ms\t%.1f\n", (t1 - t0) * 1e3);
	gw_audit_close(&au);

	/* One seal, one month (March 2025), as `sealctl audit query` asks. */
	{
		struct gw_audit_filter f = {
			.seal = "seal0042",
			.from_ns = T0_NS + 59LL * 86400LL * 1000000000LL,
			.to_ns = T0_NS + 90LL * 86400LL * 1000000000LL,
		};
		for (int rep = 0; rep < 3; rep++) {
			count = 0;
			t0 = now_s();
			if (gw_store_audit_query(st, &f, count_row, &count, err, sizeof(err)) < 0) {
				fprintf(stderr, "bench-audit: query: %s\n", err);
				return 1;
			}
			t1 = now_s();
			printf("query_seal_month_ms\t%.1f\t%" PRIu64 " rows\n", (t1 - t0) * 1e3, count);
		}
		f.seal = NULL;
		f.actor = "p00042";
		count = 0;
		t0 = now_s();
		if (gw_store_audit_query(st, &f, count_row, &count, err, sizeof(err)) < 0)
			return 1;
		t1 = now_s();
		printf("query_actor_month_ms\t%.1f\t%" PRIu64 " rows\n", (t1 - t0) * 1e3, count);
	}

	t0 = now_s();
	c0 = cpu_s();
	if (gw_audit_verify_store(st, &count, err, sizeof(err)) < 0) {
		fprintf(stderr, "bench-audit: verify: %s\n", err);
		return 1;
	}
	t1 = now_s();
	c1 = cpu_s();
	printf("verify_records\t%" PRIu64 "\n", count);
	printf("verify_s\t%.2f\n", t1 - t0);
	printf("verify_records_per_s\t%.0f\n", (double)count / (t1 - t0));
	printf("verify_records_per_cpu_s\t%.0f\n", (double)count / (c1 - c0));

	count = 0;
	t0 = now_s();
	c0 = cpu_s();
	if (gw_store_audit_scan(st, count_row, &count, err, sizeof(err)) < 0)
		return 1;
	t1 = now_s();
	c1 = cpu_s();
	printf("scan_only_records_per_s\t%.0f\n", (double)count / (t1 - t0));
	printf("scan_only_records_per_cpu_s\t%.0f\n", (double)count / (c1 - c0));
	gw_store_close(&st);
	return 0;
}
