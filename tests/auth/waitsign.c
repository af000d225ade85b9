/*
 * waitsign: one signature through our module by a program of its own, so
 * that a test can run it from any path (its /proc/PID/exe is what the
 * gateway records and lists). usage: waitsign MODULE LABEL; acts as
 * $SEALGATE_USER, logs in with no PIN (a signing window), signs 32 bytes
 * with the private key labelled LABEL (ECDSA) and prints "rv 0x…".
 */
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

#include <p11-kit/pkcs11.h>

#include "sealgate-pkcs11.h"

int
main(int argc, char **argv)
{
	CK_C_GetFunctionList gfl;
	CK_FUNCTION_LIST *f = NULL;
	CK_SESSION_HANDLE h;
	CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
	CK_ATTRIBUTE t[2] = { { CKA_CLASS, &cls, sizeof(cls) }, { CKA_LABEL, NULL, 0 } };
	CK_MECHANISM m = { CKM_ECDSA, NULL, 0 };
	CK_OBJECT_HANDLE key;
	CK_ULONG n = 0, siglen;
	unsigned char data[32] = { 0x5a }, sig[256];
	CK_RV rv;
	void *lib;

	if (argc != 3) {
		fprintf(stderr, "usage: waitsign MODULE LABEL\n");
		return 2;
	}
	if ((lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL)) == NULL ||
	    (gfl = (CK_C_GetFunctionList)dlsym(lib, "C_GetFunctionList")) == NULL || gfl(&f) != CKR_OK) {
		fprintf(stderr, "waitsign: cannot load %s\n", argv[1]);
		return 2;
	}
	t[1].pValue = argv[2];
	t[1].ulValueLen = strlen(argv[2]);
	siglen = sizeof(sig);
	if ((rv = f->C_Initialize(NULL)) == CKR_OK &&
	    (rv = f->C_OpenSession(SEALGATE_SLOT_ID, CKF_SERIAL_SESSION, NULL, NULL, &h)) == CKR_OK &&
	    (rv = f->C_Login(h, CKU_USER, NULL, 0)) == CKR_OK &&
	    (rv = f->C_FindObjectsInit(h, t, 2)) == CKR_OK &&
	    (rv = f->C_FindObjects(h, &key, 1, &n)) == CKR_OK &&
	    (rv = f->C_FindObjectsFinal(h)) == CKR_OK) {
		rv = n == 1 ? f->C_SignInit(h, &m, key) : CKR_KEY_HANDLE_INVALID;
		if (rv == CKR_OK)
			rv = f->C_Sign(h, data, sizeof(data), sig, &siglen);
	}
	printf("rv 0x%lx\n", (unsigned long)rv);
	f->C_Finalize(NULL);
	dlclose(lib);
	return rv == CKR_OK ? 0 : 1;
}
