/*
 * sealbench: a PKCS#11 load generator. Loads one or more modules (ours,
 * SoftHSM2 directly, p11-kit-client.so …), runs T threads (a session each)
 * × N signatures per mechanism, alternating the modules round by round,
 * verifies every signature, and prints ops/s, latency and CPU per
 * operation with the ratio against a baseline module of the same run.
 */
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <p11-kit/pkcs11.h>

#define MAX_MODULES 8
#define MAX_THREADS 256
#define MAX_TCOUNTS 16
#define MAX_ROUNDS  32
#define SIG_MAX     512

#ifndef CKK_EC_EDWARDS
#define CKK_EC_EDWARDS 0x40UL
#endif
#ifndef CKM_EDDSA
#define CKM_EDDSA 0x1057UL
#endif

enum mech_kind { M_RSA, M_EC, M_ED25519, M_COUNT };

static const struct mech_desc {
	const char *name;
	CK_KEY_TYPE key_type;
	CK_MECHANISM_TYPE ckm;
	const char *what;
} mechs[M_COUNT] = {
	[M_RSA] = { "rsa", CKK_RSA, CKM_RSA_PKCS, "CKM_RSA_PKCS over a SHA-256 DigestInfo" },
	[M_EC] = { "ec", CKK_EC, CKM_ECDSA, "CKM_ECDSA over a SHA-256 hash" },
	[M_ED25519] = { "ed25519", CKK_EC_EDWARDS, CKM_EDDSA, "CKM_EDDSA over 32 bytes" },
};

/* DER prefix of a SHA-256 DigestInfo: what NSS, OpenSSL/libp11 and GnuTLS
 * hand to CKM_RSA_PKCS (shared/FACTS.md). */
static const uint8_t di_sha256[] = { 0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48,
	0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20 };

struct module {
	char name[32];
	char *path, *pin, *token;
	char *label[M_COUNT];         /* key label filter per mechanism, or NULL */
	pid_t cpu_pid;                /* a server process whose CPU counts too */
	void *lib;
	CK_FUNCTION_LIST *f;
	CK_SLOT_ID slot;
	CK_SESSION_HANDLE main_s;
	CK_SESSION_HANDLE sess[MAX_THREADS];
	bool have_sess[MAX_THREADS];
	CK_OBJECT_HANDLE key[M_COUNT];
	EVP_PKEY *pub[M_COUNT];
};

/* One timed run: T threads × N operations of one module and mechanism. */
struct run {
	double ops_s;
	double cpu_self_us, cpu_srv_us;  /* per operation; srv < 0 = not measured */
	uint64_t *lat_ns;                /* T × N, this round's latencies */
	size_t nlat;
	unsigned long errors, bad_sigs;
};

struct worker {
	struct module *m;
	enum mech_kind mk;
	unsigned idx, round, nops, warmup;
	pthread_barrier_t *ready, *go;
	uint64_t *lat;                   /* nops entries */
	uint8_t *sigs;                   /* nops × SIG_MAX */
	CK_ULONG *siglens;
	unsigned long errors;
	CK_RV first_err;
};

static struct module modules[MAX_MODULES];
static unsigned n_modules;
static unsigned baseline;
static bool quiet;

static void __attribute__((format(printf, 1, 2), noreturn))
die(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fprintf(stderr, "sealbench: ");
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	exit(2);
}

static uint64_t
now_ns(clockid_t c)
{
	struct timespec ts;

	clock_gettime(c, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* CPU time of this process in ns. */
static uint64_t
self_cpu_ns(void)
{
	return now_ns(CLOCK_PROCESS_CPUTIME_ID);
}

/* One /proc/PID/stat: parent and CPU (user + system) in clock ticks. */
static bool
proc_stat(pid_t pid, pid_t *ppid, unsigned long long *ticks)
{
	char path[64], buf[2048], *p;
	unsigned long long ut = 0, st = 0;
	int pp = 0;
	FILE *f;
	size_t n;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "re");
	if (f == NULL)
		return false;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	p = strrchr(buf, ')');
	if (p == NULL || sscanf(p + 2, "%*c %d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu",
	                        &pp, &ut, &st) != 3)
		return false;
	*ppid = (pid_t)pp;
	*ticks = ut + st;
	return true;
}

/* CPU time in ns of pid and every live descendant (p11-kit's server runs
 * a child per client), or 0. */
static uint64_t
pid_cpu_ns(pid_t root)
{
	enum { MAXP = 65536 };
	static pid_t pids[MAXP], parents[MAXP];
	static unsigned long long ticks[MAXP];
	unsigned long long total = 0;
	size_t n = 0;
	DIR *d = opendir("/proc");
	struct dirent *e;

	if (d == NULL)
		return 0;
	while ((e = readdir(d)) != NULL && n < MAXP) {
		char *end;
		long v = strtol(e->d_name, &end, 10);
		if (*end == '\0' && v > 0 && proc_stat((pid_t)v, &parents[n], &ticks[n]))
			pids[n++] = (pid_t)v;
	}
	closedir(d);
	for (size_t i = 0; i < n; i++) {
		pid_t p = pids[i];
		for (int depth = 0; p > 1 && depth < 16; depth++) {
			if (p == root) {
				total += ticks[i];
				break;
			}
			size_t j;
			for (j = 0; j < n && pids[j] != p; j++)
				;
			p = j < n ? parents[j] : 0;
		}
	}
	return total * (1000000000ull / (unsigned long long)sysconf(_SC_CLK_TCK));
}

/* ---- loading a module and finding its keys ---- */

static const char *
trim_label(const CK_UTF8CHAR *p, size_t n, char *out, size_t outlen)
{
	while (n > 0 && p[n - 1] == ' ')
		n--;
	snprintf(out, outlen, "%.*s", (int)n, (const char *)p);
	return out;
}

static CK_RV
get_attr(struct module *m, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_TYPE t,
         uint8_t **val, CK_ULONG *len)
{
	CK_ATTRIBUTE a = { t, NULL, 0 };
	CK_RV rv;

	*val = NULL;
	*len = 0;
	rv = m->f->C_GetAttributeValue(s, o, &a, 1);
	if (rv != CKR_OK)
		return rv;
	if (a.ulValueLen == CK_UNAVAILABLE_INFORMATION || a.ulValueLen > (1u << 20))
		return CKR_ATTRIBUTE_TYPE_INVALID;
	a.pValue = malloc(a.ulValueLen + 1);
	if (a.pValue == NULL)
		return CKR_HOST_MEMORY;
	rv = m->f->C_GetAttributeValue(s, o, &a, 1);
	if (rv != CKR_OK) {
		free(a.pValue);
		return rv;
	}
	((uint8_t *)a.pValue)[a.ulValueLen] = 0;
	*val = a.pValue;
	*len = a.ulValueLen;
	return CKR_OK;
}

static CK_ULONG
find(struct module *m, CK_ATTRIBUTE *t, CK_ULONG n, CK_OBJECT_HANDLE *out, CK_ULONG max)
{
	CK_ULONG found = 0;

	if (m->f->C_FindObjectsInit(m->main_s, t, n) != CKR_OK)
		return 0;
	if (m->f->C_FindObjects(m->main_s, out, max, &found) != CKR_OK)
		found = 0;
	m->f->C_FindObjectsFinal(m->main_s);
	return found;
}

static bool
is_p256(const uint8_t *params, CK_ULONG len)
{
	static const uint8_t oid[] = { 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07 };
	return len == sizeof(oid) && memcmp(params, oid, len) == 0;
}

/* The public key for key: the certificate with the same CKA_ID, else the
 * key's CKA_PUBLIC_KEY_INFO (SubjectPublicKeyInfo DER). */
static EVP_PKEY *
public_key(struct module *m, CK_OBJECT_HANDLE key)
{
	uint8_t *id = NULL, *der = NULL;
	CK_ULONG idlen, derlen;
	CK_OBJECT_CLASS cls = CKO_CERTIFICATE;
	CK_OBJECT_HANDLE h[4];
	EVP_PKEY *pk = NULL;

	if (get_attr(m, m->main_s, key, CKA_ID, &id, &idlen) != CKR_OK)
		return NULL;
	CK_ATTRIBUTE t[] = { { CKA_CLASS, &cls, sizeof(cls) }, { CKA_ID, id, idlen } };
	if (find(m, t, 2, h, 4) >= 1 && get_attr(m, m->main_s, h[0], CKA_VALUE, &der, &derlen) == CKR_OK) {
		const unsigned char *p = der;
		X509 *x = d2i_X509(NULL, &p, (long)derlen);
		if (x != NULL)
			pk = X509_get_pubkey(x);
		X509_free(x);
	}
	free(der);
	der = NULL;
	if (pk == NULL && get_attr(m, m->main_s, key, CKA_PUBLIC_KEY_INFO, &der, &derlen) == CKR_OK) {
		const unsigned char *p = der;
		pk = d2i_PUBKEY(NULL, &p, (long)derlen);
	}
	free(id);
	free(der);
	return pk;
}

/* First private key of the mechanism's type (P-256 for ec), with the
 * module's label filter when given. */
static void
find_key(struct module *m, enum mech_kind mk)
{
	CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
	CK_KEY_TYPE kt = mechs[mk].key_type;
	CK_ATTRIBUTE t[3] = { { CKA_CLASS, &cls, sizeof(cls) }, { CKA_KEY_TYPE, &kt, sizeof(kt) } };
	CK_ULONG n = 2, found;
	CK_OBJECT_HANDLE h[64];

	if (m->label[mk]) {
		t[2] = (CK_ATTRIBUTE){ CKA_LABEL, m->label[mk], strlen(m->label[mk]) };
		n = 3;
	}
	found = find(m, t, n, h, 64);
	for (CK_ULONG i = 0; i < found; i++) {
		uint8_t *params = NULL;
		CK_ULONG plen = 0;
		bool ok = true;

		if (mk == M_EC) {
			ok = get_attr(m, m->main_s, h[i], CKA_EC_PARAMS, &params, &plen) == CKR_OK &&
			     is_p256(params, plen);
			free(params);
		}
		if (ok) {
			m->key[mk] = h[i];
			m->pub[mk] = public_key(m, h[i]);
			if (m->pub[mk] == NULL)
				die("%s: no certificate or public key for the %s key", m->name, mechs[mk].name);
			return;
		}
	}
	die("%s: no %s private key%s%s", m->name, mechs[mk].name,
	    m->label[mk] ? " labelled " : "", m->label[mk] ? m->label[mk] : "");
}

static void
load_module(struct module *m, const bool want[M_COUNT])
{
	CK_C_GetFunctionList gfl;
	CK_C_INITIALIZE_ARGS args = { .flags = CKF_OS_LOCKING_OK };
	CK_SLOT_ID slots[32];
	CK_ULONG ns = 32;
	CK_RV rv;
	bool found = false;

	m->lib = dlopen(m->path, RTLD_NOW | RTLD_LOCAL);
	if (m->lib == NULL)
		die("%s: %s", m->name, dlerror());
	gfl = (CK_C_GetFunctionList)dlsym(m->lib, "C_GetFunctionList");
	if (gfl == NULL || gfl(&m->f) != CKR_OK)
		die("%s: no C_GetFunctionList", m->name);
	rv = m->f->C_Initialize(&args);
	if (rv != CKR_OK)
		die("%s: C_Initialize: 0x%lx", m->name, rv);
	rv = m->f->C_GetSlotList(CK_TRUE, slots, &ns);
	if (rv != CKR_OK)
		die("%s: C_GetSlotList: 0x%lx", m->name, rv);
	for (CK_ULONG i = 0; i < ns && !found; i++) {
		CK_TOKEN_INFO ti;
		char label[33];

		if (m->f->C_GetTokenInfo(slots[i], &ti) != CKR_OK)
			continue;
		trim_label(ti.label, sizeof(ti.label), label, sizeof(label));
		if (m->token == NULL || strcmp(m->token, label) == 0) {
			m->slot = slots[i];
			found = true;
		}
	}
	if (!found)
		die("%s: no token%s%s present", m->name, m->token ? " labelled " : "",
		    m->token ? m->token : "");
	rv = m->f->C_OpenSession(m->slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &m->main_s);
	if (rv != CKR_OK)
		rv = m->f->C_OpenSession(m->slot, CKF_SERIAL_SESSION, NULL, NULL, &m->main_s);
	if (rv != CKR_OK)
		die("%s: C_OpenSession: 0x%lx", m->name, rv);
	if (m->pin) {
		rv = m->f->C_Login(m->main_s, CKU_USER, (CK_UTF8CHAR *)m->pin, strlen(m->pin));
		if (rv != CKR_OK && rv != CKR_USER_ALREADY_LOGGED_IN)
			die("%s: C_Login: 0x%lx", m->name, rv);
	}
	for (int mk = 0; mk < M_COUNT; mk++)
		if (want[mk])
			find_key(m, (enum mech_kind)mk);
}

/* ---- one operation ---- */

/* The input of operation (module, thread, round, i): distinct per
 * signature so that every one is checked against its own data. */
static size_t
make_input(enum mech_kind mk, unsigned mod, unsigned thr, unsigned round, unsigned i, uint8_t *out)
{
	uint32_t seed[4] = { mod, thr, round, i };
	unsigned int hl = 0;
	uint8_t h[32];

	EVP_Digest(seed, sizeof(seed), h, &hl, EVP_sha256(), NULL);
	if (mk == M_RSA) {
		memcpy(out, di_sha256, sizeof(di_sha256));
		memcpy(out + sizeof(di_sha256), h, 32);
		return sizeof(di_sha256) + 32;
	}
	memcpy(out, h, 32);
	return 32;
}

static bool
verify(EVP_PKEY *pk, enum mech_kind mk, const uint8_t *in, size_t inlen,
       const uint8_t *sig, size_t siglen)
{
	EVP_PKEY_CTX *c = NULL;
	EVP_MD_CTX *md = NULL;
	bool ok = false;

	if (mk == M_ED25519) {
		md = EVP_MD_CTX_new();
		ok = md && EVP_DigestVerifyInit(md, NULL, NULL, NULL, pk) == 1 &&
		     EVP_DigestVerify(md, sig, siglen, in, inlen) == 1;
		EVP_MD_CTX_free(md);
		return ok;
	}
	c = EVP_PKEY_CTX_new(pk, NULL);
	if (c == NULL || EVP_PKEY_verify_init(c) != 1)
		goto out;
	if (mk == M_RSA) {
		ok = EVP_PKEY_CTX_set_rsa_padding(c, RSA_PKCS1_PADDING) == 1 &&
		     EVP_PKEY_verify(c, sig, siglen, in, inlen) == 1;
	} else {
		/* PKCS#11 ECDSA is r || s; OpenSSL verifies DER. */
		ECDSA_SIG *es = ECDSA_SIG_new();
		BIGNUM *r = NULL, *s = NULL;
		unsigned char *der = NULL;
		int dl;

		if (es && siglen % 2 == 0 && (r = BN_bin2bn(sig, (int)siglen / 2, NULL)) &&
		    (s = BN_bin2bn(sig + siglen / 2, (int)siglen / 2, NULL)) && ECDSA_SIG_set0(es, r, s)) {
			r = s = NULL;
			dl = i2d_ECDSA_SIG(es, &der);
			ok = dl > 0 && EVP_PKEY_verify(c, der, (size_t)dl, in, inlen) == 1;
		}
		OPENSSL_free(der);
		BN_free(r);
		BN_free(s);
		ECDSA_SIG_free(es);
	}
out:
	EVP_PKEY_CTX_free(c);
	return ok;
}

static CK_RV
sign_once(struct worker *w, CK_SESSION_HANDLE s, const uint8_t *in, size_t inlen,
          uint8_t *sig, CK_ULONG *siglen)
{
	CK_MECHANISM mech = { mechs[w->mk].ckm, NULL, 0 };
	CK_RV rv;

	*siglen = SIG_MAX;
	rv = w->m->f->C_SignInit(s, &mech, w->m->key[w->mk]);
	if (rv != CKR_OK)
		return rv;
	return w->m->f->C_Sign(s, (CK_BYTE *)in, inlen, sig, siglen);
}

static void *
worker_main(void *arg)
{
	struct worker *w = arg;
	struct module *m = w->m;
	uint8_t in[64], sig[SIG_MAX];
	CK_ULONG sl;
	size_t inlen;
	CK_RV rv;

	/* Warm up (and open the session on first use) outside the clock. */
	for (unsigned i = 0; i < w->warmup; i++) {
		inlen = make_input(w->mk, 99, w->idx, w->round, i, in);
		rv = sign_once(w, m->sess[w->idx], in, inlen, sig, &sl);
		if (rv != CKR_OK) {
			w->errors++;
			w->first_err = rv;
		}
	}
	pthread_barrier_wait(w->ready);
	pthread_barrier_wait(w->go);
	for (unsigned i = 0; i < w->nops; i++) {
		uint64_t t0;

		inlen = make_input(w->mk, (unsigned)(m - modules), w->idx, w->round, i, in);
		t0 = now_ns(CLOCK_MONOTONIC);
		rv = sign_once(w, m->sess[w->idx], in, inlen, w->sigs + (size_t)i * SIG_MAX, &w->siglens[i]);
		w->lat[i] = now_ns(CLOCK_MONOTONIC) - t0;
		if (rv != CKR_OK) {
			w->siglens[i] = 0;
			if (w->errors++ == 0 || w->first_err == CKR_OK)
				w->first_err = rv;
		}
	}
	return NULL;
}

static void
run_once(struct module *m, enum mech_kind mk, unsigned nthreads, unsigned nops,
         unsigned warmup, unsigned round, struct run *out)
{
	struct worker *w = calloc(nthreads, sizeof(*w));
	pthread_t *th = calloc(nthreads, sizeof(*th));
	pthread_barrier_t ready, go;
	uint64_t t0, t1, c0, c1, s0 = 0, s1 = 0;

	if (w == NULL || th == NULL)
		die("out of memory");
	memset(out, 0, sizeof(*out));
	out->lat_ns = calloc((size_t)nthreads * nops, sizeof(uint64_t));
	if (out->lat_ns == NULL)
		die("out of memory");
	pthread_barrier_init(&ready, NULL, nthreads + 1);
	pthread_barrier_init(&go, NULL, nthreads + 1);
	for (unsigned t = 0; t < nthreads; t++) {
		if (!m->have_sess[t]) {
			CK_RV rv = m->f->C_OpenSession(m->slot, CKF_SERIAL_SESSION, NULL, NULL, &m->sess[t]);
			if (rv != CKR_OK)
				die("%s: C_OpenSession for thread %u: 0x%lx", m->name, t, rv);
			m->have_sess[t] = true;
		}
		w[t] = (struct worker){ .m = m, .mk = mk, .idx = t, .round = round, .nops = nops,
		                        .warmup = warmup, .ready = &ready, .go = &go,
		                        .lat = out->lat_ns + (size_t)t * nops };
		w[t].sigs = malloc((size_t)nops * SIG_MAX);
		w[t].siglens = calloc(nops, sizeof(CK_ULONG));
		if (w[t].sigs == NULL || w[t].siglens == NULL)
			die("out of memory");
		if (pthread_create(&th[t], NULL, worker_main, &w[t]) != 0)
			die("cannot start thread %u", t);
	}
	pthread_barrier_wait(&ready);
	c0 = self_cpu_ns();
	if (m->cpu_pid)
		s0 = pid_cpu_ns(m->cpu_pid);
	t0 = now_ns(CLOCK_MONOTONIC);
	pthread_barrier_wait(&go);
	for (unsigned t = 0; t < nthreads; t++)
		pthread_join(th[t], NULL);
	t1 = now_ns(CLOCK_MONOTONIC);
	c1 = self_cpu_ns();
	if (m->cpu_pid)
		s1 = pid_cpu_ns(m->cpu_pid);

	out->nlat = (size_t)nthreads * nops;
	out->ops_s = (double)out->nlat * 1e9 / (double)(t1 - t0);
	out->cpu_self_us = (double)(c1 - c0) / 1e3 / (double)out->nlat;
	out->cpu_srv_us = m->cpu_pid ? (double)(s1 - s0) / 1e3 / (double)out->nlat : -1;

	/* Every signature is checked, after the clock stopped. */
	for (unsigned t = 0; t < nthreads; t++) {
		if (w[t].errors && !quiet)
			fprintf(stderr, "sealbench: %s %s thread %u: %lu failed operations (first CKR 0x%lx)\n",
			        m->name, mechs[mk].name, t, w[t].errors, w[t].first_err);
		out->errors += w[t].errors;
		for (unsigned i = 0; i < nops; i++) {
			uint8_t in[64];
			size_t inlen;

			if (w[t].siglens[i] == 0)
				continue;
			inlen = make_input(mk, (unsigned)(m - modules), t, round, i, in);
			if (!verify(m->pub[mk], mk, in, inlen, w[t].sigs + (size_t)i * SIG_MAX, w[t].siglens[i]))
				out->bad_sigs++;
		}
		free(w[t].sigs);
		free(w[t].siglens);
	}
	pthread_barrier_destroy(&ready);
	pthread_barrier_destroy(&go);
	free(w);
	free(th);
}

/* ---- statistics and output ---- */

static int
cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static int
cmp_dbl(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double
median(double *v, unsigned n)
{
	qsort(v, n, sizeof(double), cmp_dbl);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

struct result {
	double ops_s, p50_us, p99_us, cpu_self_us, cpu_srv_us;
	double per_round[MAX_ROUNDS];
	unsigned long errors, bad_sigs;
};

static void
summarize(struct run *runs, unsigned nr, struct result *res)
{
	double v[MAX_ROUNDS];
	size_t total = 0, k = 0;
	uint64_t *all;

	memset(res, 0, sizeof(*res));
	for (unsigned r = 0; r < nr; r++) {
		total += runs[r].nlat;
		res->per_round[r] = runs[r].ops_s;
		res->errors += runs[r].errors;
		res->bad_sigs += runs[r].bad_sigs;
	}
	for (unsigned r = 0; r < nr; r++)
		v[r] = runs[r].ops_s;
	res->ops_s = median(v, nr);
	for (unsigned r = 0; r < nr; r++)
		v[r] = runs[r].cpu_self_us;
	res->cpu_self_us = median(v, nr);
	for (unsigned r = 0; r < nr; r++)
		v[r] = runs[r].cpu_srv_us;
	res->cpu_srv_us = median(v, nr);
	all = malloc(total * sizeof(uint64_t));
	if (all == NULL)
		die("out of memory");
	for (unsigned r = 0; r < nr; r++) {
		memcpy(all + k, runs[r].lat_ns, runs[r].nlat * sizeof(uint64_t));
		k += runs[r].nlat;
	}
	qsort(all, total, sizeof(uint64_t), cmp_u64);
	res->p50_us = total ? (double)all[total / 2] / 1e3 : 0;
	res->p99_us = total ? (double)all[(size_t)((double)(total - 1) * 0.99)] / 1e3 : 0;
	free(all);
}

static void
parse_list(const char *s, unsigned *out, unsigned *n, unsigned max, unsigned lo, unsigned hi,
           const char *what)
{
	char *copy = strdup(s), *save = NULL, *tok;

	*n = 0;
	for (tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		char *end;
		unsigned long v = strtoul(tok, &end, 10);
		if (*end || v < lo || v > hi || *n >= max)
			die("bad %s list: %s", what, s);
		out[(*n)++] = (unsigned)v;
	}
	free(copy);
	if (*n == 0)
		die("empty %s list", what);
}

/* NAME=PATH[,pin=PIN][,token=LABEL][,cpu-pid=PID][,rsa=LABEL][,ec=LABEL][,ed25519=LABEL] */
static void
parse_module(const char *spec)
{
	struct module *m;
	char *copy, *save = NULL, *tok, *eq;

	if (n_modules >= MAX_MODULES)
		die("at most %d modules", MAX_MODULES);
	m = &modules[n_modules];
	copy = strdup(spec);
	eq = strchr(copy, '=');
	if (eq == NULL || eq == copy || (size_t)(eq - copy) >= sizeof(m->name))
		die("module spec wants NAME=PATH[,pin=..]: %s", spec);
	*eq = '\0';
	snprintf(m->name, sizeof(m->name), "%s", copy);
	for (tok = strtok_r(eq + 1, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		char *v = strchr(tok, '=');
		if (m->path == NULL && v == NULL) {
			m->path = strdup(tok);
			continue;
		}
		if (v == NULL)
			die("module %s: option without a value: %s", m->name, tok);
		*v++ = '\0';
		if (strcmp(tok, "pin") == 0)
			m->pin = strdup(v);
		else if (strcmp(tok, "token") == 0)
			m->token = strdup(v);
		else if (strcmp(tok, "cpu-pid") == 0)
			m->cpu_pid = (pid_t)atoi(v);
		else if (strcmp(tok, "rsa") == 0)
			m->label[M_RSA] = strdup(v);
		else if (strcmp(tok, "ec") == 0)
			m->label[M_EC] = strdup(v);
		else if (strcmp(tok, "ed25519") == 0)
			m->label[M_ED25519] = strdup(v);
		else
			die("module %s: unknown option %s", m->name, tok);
	}
	if (m->path == NULL)
		die("module %s: no path", m->name);
	free(copy);
	n_modules++;
}

static void
usage(FILE *out)
{
	fprintf(out,
"usage: sealbench [options] NAME=MODULE[,pin=PIN][,token=LABEL][,cpu-pid=PID]\n"
"                 [,rsa=LABEL][,ec=LABEL][,ed25519=LABEL] ...\n"
"Signs with every module in turn (round r starts with module r mod M), T threads\n"
"with a session each, N signatures per thread (C_SignInit + C_Sign each), checks\n"
"every signature with OpenSSL, and reports the median of the rounds.\n"
"  -m, --mech LIST      rsa,ec,ed25519 (default rsa,ec)\n"
"  -t, --threads LIST   thread counts (default 1,2)\n"
"  -n, --ops N          signatures per thread per round (default 500)\n"
"  -r, --rounds N       rounds per module (default 3)\n"
"  -w, --warmup N       untimed signatures per thread before each round (default 10)\n"
"  -b, --baseline NAME  ratios against this module (default: the last one)\n"
"  -o, --tsv FILE       also append one line per result to FILE\n"
"  -q, --quiet          no progress on stderr\n"
"cpu-pid: a server process (sealgated, p11-kit server) whose CPU is added.\n"
"Exit status: 0 when every signature was made and verified, 1 otherwise.\n");
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "mech", required_argument, NULL, 'm' },
		{ "threads", required_argument, NULL, 't' },
		{ "ops", required_argument, NULL, 'n' },
		{ "rounds", required_argument, NULL, 'r' },
		{ "warmup", required_argument, NULL, 'w' },
		{ "baseline", required_argument, NULL, 'b' },
		{ "tsv", required_argument, NULL, 'o' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	unsigned tcounts[MAX_TCOUNTS], ntc = 0, nops = 500, rounds = 3, warmup = 10, one;
	bool want[M_COUNT] = { [M_RSA] = true, [M_EC] = true };
	const char *base_name = NULL, *tsv_path = NULL;
	FILE *tsv = NULL;
	unsigned long bad = 0;
	int c;

	tcounts[0] = 1;
	tcounts[1] = 2;
	ntc = 2;
	while ((c = getopt_long(argc, argv, "m:t:n:r:w:b:o:qh", opts, NULL)) != -1) {
		switch (c) {
		case 'm': {
			char *copy = strdup(optarg), *save = NULL, *tok;
			memset(want, 0, sizeof(want));
			for (tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
				int k;
				for (k = 0; k < M_COUNT && strcmp(mechs[k].name, tok) != 0; k++)
					;
				if (k == M_COUNT)
					die("unknown mechanism %s (rsa, ec, ed25519)", tok);
				want[k] = true;
			}
			free(copy);
			break;
		}
		case 't': parse_list(optarg, tcounts, &ntc, MAX_TCOUNTS, 1, MAX_THREADS, "thread"); break;
		case 'n': parse_list(optarg, &nops, &one, 1, 1, 10000000, "ops"); break;
		case 'r': parse_list(optarg, &rounds, &one, 1, 1, MAX_ROUNDS, "rounds"); break;
		case 'w': parse_list(optarg, &warmup, &one, 1, 0, 100000, "warmup"); break;
		case 'b': base_name = optarg; break;
		case 'o': tsv_path = optarg; break;
		case 'q': quiet = true; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	for (int i = optind; i < argc; i++)
		parse_module(argv[i]);
	if (n_modules == 0) {
		usage(stderr);
		return 2;
	}
	baseline = n_modules - 1;
	if (base_name) {
		for (baseline = 0; baseline < n_modules && strcmp(modules[baseline].name, base_name); baseline++)
			;
		if (baseline == n_modules)
			die("no module named %s", base_name);
	}
	if (tsv_path && (tsv = fopen(tsv_path, "a")) == NULL)
		die("%s: %s", tsv_path, strerror(errno));
	for (unsigned i = 0; i < n_modules; i++)
		load_module(&modules[i], want);

	printf("%-8s %4s %-12s %10s %9s %9s %9s %9s %7s\n", "mech", "thr", "module", "ops/s",
	       "p50 us", "p99 us", "cpu us/op", "srv us/op", "ratio");
	for (int mk = 0; mk < M_COUNT; mk++) {
		if (!want[mk])
			continue;
		for (unsigned ti = 0; ti < ntc; ti++) {
			struct run runs[MAX_MODULES][MAX_ROUNDS];
			struct result res[MAX_MODULES];

			for (unsigned r = 0; r < rounds; r++) {
				for (unsigned k = 0; k < n_modules; k++) {
					unsigned mi = (r + k) % n_modules;
					if (!quiet)
						fprintf(stderr, "  %s %u threads %s round %u...\n", mechs[mk].name,
						        tcounts[ti], modules[mi].name, r + 1);
					run_once(&modules[mi], (enum mech_kind)mk, tcounts[ti], nops, warmup, r,
					         &runs[mi][r]);
				}
			}
			for (unsigned mi = 0; mi < n_modules; mi++) {
				summarize(runs[mi], rounds, &res[mi]);
				for (unsigned r = 0; r < rounds; r++)
					free(runs[mi][r].lat_ns);
			}
			for (unsigned mi = 0; mi < n_modules; mi++) {
				struct result *x = &res[mi];
				double ratio = x->ops_s / res[baseline].ops_s;
				char srv[16] = "-";

				if (x->cpu_srv_us >= 0)
					snprintf(srv, sizeof(srv), "%.1f", x->cpu_srv_us);
				printf("%-8s %4u %-12s %10.0f %9.1f %9.1f %9.1f %9s %7.2f", mechs[mk].name,
				       tcounts[ti], modules[mi].name, x->ops_s, x->p50_us, x->p99_us,
				       x->cpu_self_us, srv, ratio);
				if (x->errors || x->bad_sigs)
					printf("  ERRORS %lu, BAD SIGNATURES %lu", x->errors, x->bad_sigs);
				printf("\n");
				bad += x->errors + x->bad_sigs;
				if (tsv) {
					fprintf(tsv, "%s\t%u\t%s\t%.1f\t%.1f\t%.1f\t%.2f\t%.2f\t%.3f\t%lu\t%lu\t",
					        mechs[mk].name, tcounts[ti], modules[mi].name, x->ops_s, x->p50_us,
					        x->p99_us, x->cpu_self_us, x->cpu_srv_us, ratio, x->errors,
					        x->bad_sigs);
					for (unsigned r = 0; r < rounds; r++)
						fprintf(tsv, "%s%.0f", r ? "," : "", x->per_round[r]);
					fprintf(tsv, "\n");
				}
			}
			fflush(stdout);
		}
	}
	if (tsv)
		fclose(tsv);
	for (unsigned i = 0; i < n_modules; i++) {
		struct module *m = &modules[i];
		for (int mk = 0; mk < M_COUNT; mk++)
			EVP_PKEY_free(m->pub[mk]);
		/* Finalize, but keep the libraries mapped: SoftHSM2 crashes when
		 * unloaded before its atexit handlers run (shared/FACTS.md). */
		m->f->C_Finalize(NULL);
	}
	if (bad)
		fprintf(stderr, "sealbench: %lu operations failed or did not verify\n", bad);
	return bad ? 1 : 0;
}
