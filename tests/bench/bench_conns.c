/*
 * Footprint benchmarks: how many client connections the gateway holds at
 * once (and what they cost it in memory and threads), and how much memory
 * loading a PKCS#11 module adds to a host process. Prints name<TAB>value.
 *
 *   bench-conns conns SOCKET N GATEWAY-PID
 *   bench-conns loadrss MODULE
 *   bench-conns fsync DIR        fdatasync after a 4 KiB append, p50/p99
 *   bench-conns pingpong         a one-byte request and answer between two
 *                                processes over a Unix socket, p50/p99
 */
#include <dlfcn.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include <openssl/crypto.h>
#include <p11-kit/pkcs11.h>

#include "protocol.h"

/* A field of /proc/PID/status in kB ("VmRSS", "Threads" …), -1 if none. */
static long
status_field(pid_t pid, const char *name)
{
	char path[64], line[256];
	size_t nl = strlen(name);
	long v = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	f = fopen(path, "re");
	if (f == NULL)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (strncmp(line, name, nl) == 0 && line[nl] == ':') {
			v = strtol(line + nl + 1, NULL, 10);
			break;
		}
	fclose(f);
	return v;
}

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int
hello(int fd)
{
	json_t *req = sg_request_new(SG_OP_HELLO), *rep = NULL;
	char err[160];
	int ok;

	ok = req && sg_call(fd, req, &rep, err, sizeof(err)) == 0 && sg_reply_is_ok(rep, NULL, NULL, NULL);
	json_decref(req);
	json_decref(rep);
	return ok;
}

static int
conns(const char *sock, int n, pid_t gw)
{
	int *fds = calloc((size_t)n, sizeof(int)), opened = 0, first = 0, second = 0;
	long rss0 = status_field(gw, "VmRSS"), thr0 = status_field(gw, "Threads"), rss1, thr1;
	double t0, t1;

	if (fds == NULL)
		return 2;
	t0 = now_s();
	for (int i = 0; i < n; i++) {
		fds[i] = sg_connect_unix(sock);
		opened += fds[i] >= 0;
	}
	for (int i = 0; i < n; i++)
		first += fds[i] >= 0 && hello(fds[i]);
	t1 = now_s();
	/* All still there: each answers again while the others stay open. */
	for (int i = 0; i < n; i++)
		second += fds[i] >= 0 && hello(fds[i]);
	usleep(100000);
	rss1 = status_field(gw, "VmRSS");
	thr1 = status_field(gw, "Threads");
	printf("conns_opened\t%d\n", opened);
	printf("conns_answered\t%d\t%d\n", first, second);
	printf("conns_setup_ms\t%.1f\n", (t1 - t0) * 1e3);
	printf("gateway_rss_kib_before\t%ld\n", rss0);
	printf("gateway_rss_kib_with_conns\t%ld\n", rss1);
	printf("gateway_threads\t%ld\t%ld\n", thr0, thr1);
	for (int i = 0; i < n; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	free(fds);
	return first == n && second == n ? 0 : 1;
}

static int
loadrss(const char *path)
{
	long rss0, rss1, rss2;
	void *lib;
	CK_C_GetFunctionList gfl;
	CK_FUNCTION_LIST *f = NULL;
	CK_C_INITIALIZE_ARGS args = { .flags = CKF_OS_LOCKING_OK };
	CK_SLOT_ID slots[8];
	CK_ULONG n = 8;
	CK_TOKEN_INFO ti;

	/* Touch what the host itself would have loaded (libc, libcrypto are
	 * there already in every signing app) before the first reading. */
	OPENSSL_init_crypto(0, NULL);
	rss0 = status_field(getpid(), "VmRSS");
	lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (lib == NULL) {
		fprintf(stderr, "bench-conns: %s\n", dlerror());
		return 1;
	}
	rss1 = status_field(getpid(), "VmRSS");
	gfl = (CK_C_GetFunctionList)dlsym(lib, "C_GetFunctionList");
	if (gfl == NULL || gfl(&f) != CKR_OK || f->C_Initialize(&args) != CKR_OK ||
	    f->C_GetSlotList(CK_TRUE, slots, &n) != CKR_OK || n == 0 ||
	    f->C_GetTokenInfo(slots[0], &ti) != CKR_OK) {
		fprintf(stderr, "bench-conns: %s: cannot initialize or no token\n", path);
		return 1;
	}
	rss2 = status_field(getpid(), "VmRSS");
	printf("load_rss_kib\t%ld\t%ld\t(dlopen, after C_Initialize + slot and token info)\n",
	       rss1 - rss0, rss2 - rss0);
	f->C_Finalize(NULL);
	return 0;
}

static int
cmp_dbl(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* The disk's price of durability: what every audit commit pays at least. */
static int
fsync_cost(const char *dir)
{
	enum { N = 200 };
	char path[4096], page[4096];
	double t[N];
	int fd;

	snprintf(path, sizeof(path), "%s/fsync-probe", dir);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		perror(path);
		return 1;
	}
	memset(page, 0x5a, sizeof(page));
	for (int i = 0; i < N; i++) {
		double t0 = now_s();
		if (write(fd, page, sizeof(page)) != (ssize_t)sizeof(page) || fdatasync(fd) != 0) {
			perror("write/fdatasync");
			close(fd);
			return 1;
		}
		t[i] = now_s() - t0;
	}
	close(fd);
	unlink(path);
	qsort(t, N, sizeof(double), cmp_dbl);
	printf("fdatasync_us\t%.0f\t%.0f\t(p50, p99 of %d appends of 4 KiB)\n", t[N / 2] * 1e6,
	       t[N * 99 / 100] * 1e6, N);
	return 0;
}

/* The machine's price of a socket between two processes: one blocking
 * round trip (write, the peer wakes, reads and answers, we wake), the least
 * any remoting of PKCS#11 adds to a call. */
static int
pingpong(void)
{
	enum { N = 20000 };
	static double t[N];
	int sv[2];
	pid_t pid;
	char b = 'x';

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
		perror("socketpair");
		return 1;
	}
	pid = fork();
	if (pid < 0) {
		perror("fork");
		return 1;
	}
	if (pid == 0) {
		close(sv[0]);
		while (read(sv[1], &b, 1) == 1)
			if (write(sv[1], &b, 1) != 1)
				break;
		_exit(0);
	}
	close(sv[1]);
	for (int i = 0; i < N; i++) {
		double t0 = now_s();
		if (write(sv[0], &b, 1) != 1 || read(sv[0], &b, 1) != 1) {
			perror("pingpong");
			close(sv[0]);
			waitpid(pid, NULL, 0);
			return 1;
		}
		t[i] = now_s() - t0;
	}
	close(sv[0]);
	waitpid(pid, NULL, 0);
	qsort(t, N, sizeof(double), cmp_dbl);
	printf("socket_round_trip_us\t%.1f\t%.1f\t(p50, p99 of %d)\n", t[N / 2] * 1e6,
	       t[N * 99 / 100] * 1e6, N);
	return 0;
}

int
main(int argc, char **argv)
{
	if (argc == 2 && strcmp(argv[1], "pingpong") == 0)
		return pingpong();
	if (argc == 3 && strcmp(argv[1], "fsync") == 0)
		return fsync_cost(argv[2]);
	if (argc == 5 && strcmp(argv[1], "conns") == 0)
		return conns(argv[2], atoi(argv[3]), (pid_t)atoi(argv[4]));
	if (argc == 3 && strcmp(argv[1], "loadrss") == 0)
		return loadrss(argv[2]);
	fprintf(stderr, "usage: bench-conns conns SOCKET N GATEWAY-PID | loadrss MODULE | fsync DIR | pingpong\n");
	return 2;
}
