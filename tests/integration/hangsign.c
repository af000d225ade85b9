/*
 * Test-only PKCS#11 module for test-front-stop.sh: SoftHSM2 (or
 * $SG_REAL_MODULE) with a C_Sign that does not return while the file
 * $SG_HANG_FILE exists — a token hung inside a signature — and a
 * C_FindObjectsInit held the same way while $SG_HANG_FILE.find exists (a
 * slow key lookup, as a reload does). On entering either it creates the
 * file's name + ".in", so the test knows; a C_Finalize while a C_Sign
 * hangs (the token closed under a signer) creates $SG_HANG_FILE.finalized.
 */
#include <dlfcn.h>
#include <fcntl.h>
#include <stdbool.h>
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

/* True when $SG_HANG_FILE + suffix exists. */
static bool
held(const char *suffix)
{
	const char *flag = getenv("SG_HANG_FILE");
	char path[4096];

	if (flag == NULL)
		return false;
	snprintf(path, sizeof(path), "%s%s", flag, suffix);
	return access(path, F_OK) == 0;
}

static CK_RV
hung_sign(CK_SESSION_HANDLE s, CK_BYTE_PTR d, CK_ULONG dl, CK_BYTE_PTR sig, CK_ULONG_PTR sl)
{
	if (held("")) {
		__atomic_add_fetch(&hanging, 1, __ATOMIC_SEQ_CST);
		touch(".in");
		while (held(""))
			usleep(100000);
		__atomic_sub_fetch(&hanging, 1, __ATOMIC_SEQ_CST);
	}
	return real->C_Sign(s, d, dl, sig, sl);
}

static CK_RV
hung_find_init(CK_SESSION_HANDLE s, CK_ATTRIBUTE_PTR t, CK_ULONG n)
{
	if (held(".find")) {
		touch(".find.in");
		while (held(".find"))
			usleep(100000);
	}
	return real->C_FindObjectsInit(s, t, n);
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
		hung.C_FindObjectsInit = hung_find_init;
	}
	*list = &hung;
	return CKR_OK;
}
