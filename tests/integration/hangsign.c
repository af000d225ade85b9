/*
 * Test-only PKCS#11 module for test-front-stop.sh: SoftHSM2 (or
 * $SG_REAL_MODULE) with a C_Sign that does not return while the file
 * $SG_HANG_FILE exists — a token hung inside a signature. On entering
 * such a C_Sign it creates $SG_HANG_FILE.in, so the test knows; a
 * C_Finalize while one hangs (the token closed under a signer) creates
 * $SG_HANG_FILE.finalized.
 */
#include <dlfcn.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <p11-kit/pkcs11.h>

CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR list);

static CK_FUNCTION_LIST *real;
static CK_FUNCTION_LIST hung;
static int hanging;     /* C_Sign calls held now */

static void
touch(const char *suffix)
{
	const char *flag = getenv("SG_HANG_FILE");
	char path[4096];
	int fd;

	if (flag == NULL)
		return;
	snprintf(path, sizeof(path), "%s%s", flag, suffix);
	fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
	if (fd >= 0)
		close(fd);
}

static CK_RV
hung_sign(CK_SESSION_HANDLE s, CK_BYTE_PTR d, CK_ULONG dl, CK_BYTE_PTR sig, CK_ULONG_PTR sl)
{
	const char *flag = getenv("SG_HANG_FILE");

	if (flag != NULL && access(flag, F_OK) == 0) {
		__atomic_add_fetch(&hanging, 1, __ATOMIC_SEQ_CST);
		touch(".in");
		while (access(flag, F_OK) == 0)
			usleep(100000);
		__atomic_sub_fetch(&hanging, 1, __ATOMIC_SEQ_CST);
	}
	return real->C_Sign(s, d, dl, sig, sl);
}

static CK_RV
hung_finalize(CK_VOID_PTR reserved)
{
	if (__atomic_load_n(&hanging, __ATOMIC_SEQ_CST) > 0)
		touch(".finalized");
	return real->C_Finalize(reserved);
}

CK_RV
C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR list)
{
	if (real == NULL) {
		const char *path = getenv("SG_REAL_MODULE");
		void *dl = dlopen(path ? path : "/usr/lib/softhsm/libsofthsm2.so", RTLD_NOW | RTLD_LOCAL);
		CK_C_GetFunctionList gfl = dl ? (CK_C_GetFunctionList)dlsym(dl, "C_GetFunctionList") : NULL;

		if (gfl == NULL || gfl(&real) != CKR_OK)
			return CKR_GENERAL_ERROR;
		hung = *real;
		hung.C_Sign = hung_sign;
		hung.C_Finalize = hung_finalize;
	}
	*list = &hung;
	return CKR_OK;
}
