/*
 * A desktop application for the tls suite: loads sealgate-pkcs11.so and
 * signs with a seal, to watch what the module does over TLS when the
 * connection is cut (CKR_DEVICE_REMOVED, then back) and across fork().
 *
 *   p11client MODULE sign|signs|resume|cut|fork
 * env: SG_PIN (the person's password), SG_LABEL (seal, default "Contract
 * Seal"), SG_SYNC (resume: SG_SYNC.ready after the first signature, then
 * waits for SG_SYNC.go), SG_ECDSA (set: the seal is EC, CKM_ECDSA_SHA256), SG_COUNT (signs: how many signatures), SG_IDLE (resume: seconds to wait), SG_SYNC (cut: files SG_SYNC.ready, .cut, .back to step with the
 * script). Prints one line per step; exit 0 when each did what it should.
 */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "pkcs11-3.h"

static CK_FUNCTION_LIST *p;

static CK_RV
init(void)
{
	CK_C_INITIALIZE_ARGS args = { .flags = CKF_OS_LOCKING_OK };

	return p->C_Initialize(&args);
}

/* Opens a session and logs in. */
static CK_RV
open_login(CK_SESSION_HANDLE *s)
{
	CK_SLOT_ID slot[2];
	CK_ULONG n = 2;
	const char *pin = getenv("SG_PIN");
	CK_RV rv;

	rv = p->C_GetSlotList(CK_TRUE, slot, &n);
	if (rv != CKR_OK)
		return rv;
	if (n == 0)
		return CKR_TOKEN_NOT_PRESENT;
	rv = p->C_OpenSession(slot[0], CKF_SERIAL_SESSION, NULL, NULL, s);
	if (rv != CKR_OK)
		return rv;
	rv = p->C_Login(*s, CKU_USER, (CK_UTF8CHAR_PTR)pin, pin ? strlen(pin) : 0);
	return rv == CKR_USER_ALREADY_LOGGED_IN ? CKR_OK : rv;
}

static CK_RV
sign(CK_SESSION_HANDLE s)
{
	const char *label = getenv("SG_LABEL") ? getenv("SG_LABEL") : "Contract Seal";
	CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
	CK_ATTRIBUTE t[] = { { CKA_CLASS, &cls, sizeof(cls) },
	                     { CKA_LABEL, (void *)label, strlen(label) } };
	CK_OBJECT_HANDLE key;
	CK_ULONG n = 0, siglen = sizeof(CK_BYTE[1024]);
	CK_MECHANISM m = { getenv("SG_ECDSA") ? CKM_ECDSA_SHA256 : CKM_SHA256_RSA_PKCS, NULL, 0 };
	CK_BYTE sig[1024], data[] = "a contract";
	CK_RV rv;

	rv = p->C_FindObjectsInit(s, t, 2);
	if (rv != CKR_OK)
		return rv;
	rv = p->C_FindObjects(s, &key, 1, &n);
	p->C_FindObjectsFinal(s);
	if (rv != CKR_OK)
		return rv;
	if (n != 1)
		return CKR_KEY_HANDLE_INVALID;
	rv = p->C_SignInit(s, &m, key);
	if (rv != CKR_OK)
		return rv;
	return p->C_Sign(s, data, sizeof(data) - 1, sig, &siglen);
}

static void
wait_file(const char *suffix)
{
	char path[512];

	snprintf(path, sizeof(path), "%s.%s", getenv("SG_SYNC"), suffix);
	while (access(path, F_OK) != 0)
		usleep(50000);
}

static void
touch(const char *suffix)
{
	char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s.%s", getenv("SG_SYNC"), suffix);
	f = fopen(path, "w");
	if (f)
		fclose(f);
}

int
main(int argc, char **argv)
{
	CK_C_GetFunctionList get;
	CK_SESSION_HANDLE s;
	void *dl;
	CK_RV rv;

	if (argc != 3)
		return 2;
	dl = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
	if (dl == NULL || (get = (CK_C_GetFunctionList)dlsym(dl, "C_GetFunctionList")) == NULL ||
	    get(&p) != CKR_OK)
		return 2;
	rv = init();
	printf("initialize 0x%lx\n", rv);
	if (rv != CKR_OK)
		return 1;
	rv = open_login(&s);
	printf("login 0x%lx\n", rv);
	if (rv == CKR_OK)
		rv = sign(s);
	printf("sign 0x%lx\n", rv);
	fflush(stdout);
	if (rv != CKR_OK)
		return 1;
	if (strcmp(argv[2], "sign") == 0)
		return 0;
	if (strcmp(argv[2], "signs") == 0) {
		/* SG_COUNT signatures in all, on the same session. */
		int n = getenv("SG_COUNT") ? atoi(getenv("SG_COUNT")) : 1;

		for (int i = 1; i < n && rv == CKR_OK; i++)
			rv = sign(s);
		printf("signs 0x%lx\n", rv);
		return rv == CKR_OK ? 0 : 1;
	}
	if (strcmp(argv[2], "resume") == 0) {
		/* The gateway closes the idle connection meanwhile: the next
		 * one resumes the TLS session. */
		if (getenv("SG_SYNC") != NULL) {
			touch("ready");
			wait_file("go");
		}
		sleep((unsigned)atoi(getenv("SG_IDLE") ? getenv("SG_IDLE") : "4"));
		rv = sign(s);
		printf("sign again 0x%lx\n", rv);
		return rv == CKR_OK ? 0 : 1;
	}
	if (strcmp(argv[2], "cut") == 0) {
		touch("ready");
		wait_file("cut");
		rv = sign(s);
		printf("after-cut 0x%lx\n", rv);
		fflush(stdout);
		if (rv != CKR_DEVICE_REMOVED)
			return 1;
		touch("removed");
		wait_file("back");
		/* As after a pulled card: the application opens a session again. */
		p->C_CloseAllSessions(0);
		rv = open_login(&s);
		if (rv == CKR_OK)
			rv = sign(s);
		printf("reconnected 0x%lx\n", rv);
		return rv == CKR_OK ? 0 : 1;
	}
	if (strcmp(argv[2], "fork") == 0) {
		pid_t pid;
		int st = 0;

		fflush(stdout);
		pid = fork();
		if (pid == 0) {
			/* The child's own state, and its own connection. */
			rv = init();
			if (rv == CKR_OK)
				rv = open_login(&s);
			if (rv == CKR_OK)
				rv = sign(s);
			printf("child sign 0x%lx\n", rv);
			fflush(stdout);
			_exit(rv == CKR_OK ? 0 : 1);
		}
		waitpid(pid, &st, 0);
		rv = sign(s);
		printf("parent sign after the child 0x%lx\n", rv);
		return rv == CKR_OK && WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : 1;
	}
	return 2;
}
