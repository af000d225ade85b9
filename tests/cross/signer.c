/*
 * cross-signer: one signer through the real module, for the tests of two
 * gateways on one store (tests/cross). Loads $SEALGATE_MODULE as an
 * application does (SEALGATE_SOCKET, SEALGATE_USER from the environment),
 * logs in with PIN, and signs 32 bytes with the private key labelled LABEL
 * (CKM_ECDSA) COUNT times, or until the file STOP exists when COUNT is 0.
 * Each attempt signs 32 random bytes and prints one line, flushed, with the
 * wall clock in ms: "ok MS HEX" for a signature the module released (HEX:
 * the bytes signed, which the audit record keeps as signed_digest), or
 * "0xCKR MS" for a refusal, so a test counts what the clients got, when,
 * and finds each one's record.
 *
 * usage: cross-signer PIN LABEL COUNT [STOP]
 * env: SG_SIGNER_PAUSE_US, the pause after a refusal in the loop until STOP
 * (default 20000: the loop need not spin on a refused seal).
 */
#include <dlfcn.h>
#include <sys/random.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <p11-kit/pkcs11.h>

static long long
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int
die(const char *what, CK_RV rv)
{
	printf("setup %s 0x%lx\n", what, (unsigned long)rv);
	fflush(stdout);
	return 1;
}

int
main(int argc, char **argv)
{
	CK_C_GetFunctionList gfl;
	CK_FUNCTION_LIST *f = NULL;
	CK_SLOT_ID slot;
	CK_ULONG n = 1, k = 0;
	CK_SESSION_HANDLE h;
	CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
	CK_OBJECT_HANDLE key;
	CK_MECHANISM mech = { CKM_ECDSA, NULL, 0 };
	unsigned char data[32], sig[256];
	const char *mod = getenv("SEALGATE_MODULE");
	void *lib;
	const char *pause_env = getenv("SG_SIGNER_PAUSE_US");
	useconds_t pause = pause_env ? (useconds_t)strtoul(pause_env, NULL, 10) : 20000;
	long count;
	CK_RV rv;

	if (argc < 4 || mod == NULL) {
		fprintf(stderr, "usage: cross-signer PIN LABEL COUNT [STOP] (SEALGATE_MODULE set)\n");
		return 2;
	}
	count = strtol(argv[3], NULL, 10);
	if ((lib = dlopen(mod, RTLD_NOW | RTLD_LOCAL)) == NULL) {
		fprintf(stderr, "%s\n", dlerror());
		return 1;
	}
	gfl = (CK_C_GetFunctionList)dlsym(lib, "C_GetFunctionList");
	if (gfl == NULL || gfl(&f) != CKR_OK)
		return die("C_GetFunctionList", 0);
	if ((rv = f->C_Initialize(NULL)) != CKR_OK)
		return die("C_Initialize", rv);
	if ((rv = f->C_GetSlotList(CK_TRUE, &slot, &n)) != CKR_OK || n != 1)
		return die("C_GetSlotList", rv);
	if ((rv = f->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &h)) != CKR_OK)
		return die("C_OpenSession", rv);
	if ((rv = f->C_Login(h, CKU_USER, (CK_UTF8CHAR_PTR)argv[1], strlen(argv[1]))) != CKR_OK)
		return die("C_Login", rv);
	CK_ATTRIBUTE t[] = {
		{ CKA_CLASS, &cls, sizeof(cls) },
		{ CKA_LABEL, argv[2], strlen(argv[2]) },
	};
	if ((rv = f->C_FindObjectsInit(h, t, 2)) != CKR_OK ||
	    (rv = f->C_FindObjects(h, &key, 1, &k)) != CKR_OK || k != 1)
		return die("C_FindObjects", rv);
	f->C_FindObjectsFinal(h);
	printf("ready\n");
	fflush(stdout);
	for (long i = 0; count == 0 || i < count; i++) {
		CK_ULONG len = sizeof(sig);

		if (count == 0 && argc > 4 && access(argv[4], F_OK) == 0)
			break;
		if (getrandom(data, sizeof(data), 0) != (ssize_t)sizeof(data))
			return die("getrandom", 0);
		rv = f->C_SignInit(h, &mech, key);
		if (rv == CKR_OK)
			rv = f->C_Sign(h, data, sizeof(data), sig, &len);
		if (rv == CKR_OK) {
			printf("ok %lld ", now_ms());
			for (size_t j = 0; j < sizeof(data); j++)
				printf("%02x", data[j]);
			printf("\n");
		} else
			printf("0x%lx %lld\n", (unsigned long)rv, now_ms());
		fflush(stdout);
		/* (a refused attempt ends the operation; C_SignInit starts anew) */
		if (rv != CKR_OK && count == 0)
			usleep(pause);
	}
	f->C_Logout(h);
	f->C_CloseSession(h);
	f->C_Finalize(NULL);
	dlclose(lib);
	return 0;
}
