/*
 * Unit tests of sealgate-pkcs11.so: the built module is dlopen()ed and
 * driven through its 3.0 function list against the in-process fake
 * gateway (fakegw.c). Signatures are verified with OpenSSL against the
 * seal certificates.
 */
#include <criterion/criterion.h>
#include <dlfcn.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "fakegw.h"
#include "pkcs11-3.h"
#include "sealgate-pkcs11.h"

#ifndef SGM_MODULE_PATH
#define SGM_MODULE_PATH "sealgate-pkcs11.so"
#endif

static struct fakegw *fg;
static void *dl;
static CK_FUNCTION_LIST_3_0 *p11;

static const char *
module_path(void)
{
	const char *p = getenv("SEALGATE_MODULE");
	return p != NULL && p[0] != '\0' ? p : SGM_MODULE_PATH;
}

static void
load_module(void)
{
	CK_C_GetInterface get;
	CK_INTERFACE *itf = NULL;
	CK_VERSION v3 = { 3, 0 };

	dl = dlopen(module_path(), RTLD_NOW | RTLD_LOCAL);
	cr_assert_not_null(dl, "dlopen %s: %s", module_path(), dlerror());
	get = (CK_C_GetInterface)dlsym(dl, "C_GetInterface");
	cr_assert_not_null(get);
	cr_assert_eq(get((CK_UTF8CHAR_PTR)"PKCS 11", &v3, &itf, 0), CKR_OK);
	p11 = itf->pFunctionList;
}

static void
init_module(void)
{
	CK_C_INITIALIZE_ARGS args = { .flags = CKF_OS_LOCKING_OK };
	cr_assert_eq(p11->C_Initialize(&args), CKR_OK);
}

static void
setup(void)
{
	fg = fakegw_new();
	cr_assert_not_null(fg);
	cr_assert_eq(fakegw_start(fg, "run-1"), 0);
	setenv("SEALGATE_SOCKET", fakegw_path(fg), 1);
	unsetenv("SEALGATE_USER");
	load_module();
	init_module();
}

static void
teardown(void)
{
	if (p11 != NULL)
		p11->C_Finalize(NULL);
	if (dl != NULL)
		dlclose(dl);
	fakegw_free(fg);
	p11 = NULL;
	dl = NULL;
}

TestSuite(module, .init = setup, .fini = teardown, .timeout = 120);

/* ---- helpers ---- */

static CK_SESSION_HANDLE
open_session(CK_FLAGS flags)
{
	CK_SESSION_HANDLE h = 0;
	cr_assert_eq(p11->C_OpenSession(SEALGATE_SLOT_ID, CKF_SERIAL_SESSION | flags, NULL, NULL, &h),
	             CKR_OK);
	return h;
}

static void
login(CK_SESSION_HANDLE h)
{
	cr_assert_eq(p11->C_Login(h, CKU_USER, (CK_UTF8CHAR_PTR)FAKE_PIN, strlen(FAKE_PIN)), CKR_OK);
}

static CK_ULONG
find(CK_SESSION_HANDLE h, CK_ATTRIBUTE *t, CK_ULONG n, CK_OBJECT_HANDLE *out, CK_ULONG max)
{
	CK_ULONG got = 0;

	cr_assert_eq(p11->C_FindObjectsInit(h, t, n), CKR_OK);
	cr_assert_eq(p11->C_FindObjects(h, out, max, &got), CKR_OK);
	cr_assert_eq(p11->C_FindObjectsFinal(h), CKR_OK);
	return got;
}

static CK_OBJECT_HANDLE
find_obj(CK_SESSION_HANDLE h, const char *seal, CK_OBJECT_CLASS cls)
{
	CK_ATTRIBUTE t[] = {
		{ CKA_SEALGATE_SEAL_ID, (void *)seal, strlen(seal) },
		{ CKA_CLASS, &cls, sizeof(cls) },
	};
	CK_OBJECT_HANDLE o[4];
	CK_ULONG n = find(h, t, 2, o, 4);

	return n == 1 ? o[0] : CK_INVALID_HANDLE;
}

static CK_RV
sign_init(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE key, CK_MECHANISM_TYPE m, void *param,
          CK_ULONG plen)
{
	CK_MECHANISM mech = { m, param, plen };
	return p11->C_SignInit(h, &mech, key);
}

static const EVP_MD *
md_of(const char *name)
{
	return name ? EVP_get_digestbyname(name) : NULL;
}

/* Verifies sig over msg with the seal certificate's key. md NULL with
 * Ed25519; saltlen >= 0 selects PSS; EC signatures come as r || s. */
static bool
verify(const char *seal, const char *mdname, int saltlen, const uint8_t *msg, size_t len,
       const uint8_t *sig, size_t siglen)
{
	EVP_PKEY *pub = X509_get0_pubkey(fakegw_cert(fg, seal));
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	EVP_PKEY_CTX *pctx = NULL;
	uint8_t der[256];
	const uint8_t *s = sig;
	size_t slen = siglen;
	bool ok = false;

	if (EVP_PKEY_get_id(pub) == EVP_PKEY_EC) {
		ECDSA_SIG *es = ECDSA_SIG_new();
		unsigned char *p = der;
		ECDSA_SIG_set0(es, BN_bin2bn(sig, (int)siglen / 2, NULL),
		               BN_bin2bn(sig + siglen / 2, (int)siglen / 2, NULL));
		slen = (size_t)i2d_ECDSA_SIG(es, &p);
		ECDSA_SIG_free(es);
		s = der;
	}
	if (EVP_DigestVerifyInit(ctx, &pctx, md_of(mdname), NULL, pub) != 1)
		goto out;
	if (saltlen >= 0 &&
	    (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) != 1 ||
	     EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, saltlen) != 1))
		goto out;
	ok = EVP_DigestVerify(ctx, s, slen, msg, len) == 1;
out:
	EVP_MD_CTX_free(ctx);
	return ok;
}

static void
sha(const char *name, const uint8_t *msg, size_t len, uint8_t *out, unsigned *outlen)
{
	cr_assert_eq(EVP_Digest(msg, len, out, outlen, md_of(name), NULL), 1);
}

/* ---- interfaces and general purpose ---- */

Test(module, interfaces_and_versions)
{
	CK_C_GetInterfaceList list = (CK_C_GetInterfaceList)dlsym(dl, "C_GetInterfaceList");
	CK_C_GetInterface get = (CK_C_GetInterface)dlsym(dl, "C_GetInterface");
	CK_C_GetFunctionList gfl = (CK_C_GetFunctionList)dlsym(dl, "C_GetFunctionList");
	CK_INTERFACE itf[4], *one = NULL;
	CK_VERSION v240 = { 2, 40 }, v3 = { 3, 0 }, v31 = { 3, 1 };
	CK_FUNCTION_LIST *fl = NULL;
	CK_ULONG n = 0;
	CK_INFO info;

	cr_assert_not_null(list);
	/* Only the three entry points are exported. */
	cr_assert_null(dlsym(dl, "C_Sign"));
	cr_assert_null(dlsym(dl, "sg_msg_read"));

	cr_assert_eq(list(NULL, &n), CKR_OK);
	cr_assert_eq(n, 2);
	n = 1;
	cr_assert_eq(list(itf, &n), CKR_BUFFER_TOO_SMALL);
	cr_assert_eq(n, 2);
	n = 4;
	cr_assert_eq(list(itf, &n), CKR_OK);
	cr_assert_eq(n, 2);
	for (int i = 0; i < 2; i++)
		cr_assert_str_eq((char *)itf[i].pInterfaceName, "PKCS 11");
	cr_assert_eq(((CK_VERSION *)itf[0].pFunctionList)->major, 3);
	cr_assert_eq(((CK_VERSION *)itf[0].pFunctionList)->minor, 0);
	cr_assert_eq(((CK_VERSION *)itf[1].pFunctionList)->major, 2);
	cr_assert_eq(((CK_VERSION *)itf[1].pFunctionList)->minor, 40);

	cr_assert_eq(get(NULL, NULL, &one, 0), CKR_OK);
	cr_assert_eq(((CK_VERSION *)one->pFunctionList)->major, 3);
	cr_assert_eq(get((CK_UTF8CHAR_PTR)"PKCS 11", &v240, &one, 0), CKR_OK);
	cr_assert_eq(((CK_VERSION *)one->pFunctionList)->minor, 40);
	cr_assert_eq(get((CK_UTF8CHAR_PTR)"PKCS 11", &v3, &one, 0), CKR_OK);
	cr_assert_eq(get((CK_UTF8CHAR_PTR)"PKCS 11", &v31, &one, 0), CKR_ARGUMENTS_BAD);
	cr_assert_eq(get((CK_UTF8CHAR_PTR)"Vendor", NULL, &one, 0), CKR_ARGUMENTS_BAD);
	cr_assert_eq(get(NULL, NULL, &one, CKF_INTERFACE_FORK_SAFE), CKR_ARGUMENTS_BAD);
	cr_assert_eq(get(NULL, NULL, NULL, 0), CKR_ARGUMENTS_BAD);

	cr_assert_eq(gfl(&fl), CKR_OK);
	cr_assert_eq(fl->version.major, 2);
	cr_assert_eq(fl->version.minor, 40);
	/* The 3.0 list starts with the 2.40 one. */
	cr_assert_eq((void *)fl->C_Sign, (void *)p11->C_Sign);
	cr_assert_eq((void *)fl->C_WaitForSlotEvent, (void *)p11->C_WaitForSlotEvent);
	cr_assert_eq(gfl(NULL), CKR_ARGUMENTS_BAD);

	cr_assert_eq(p11->C_GetInfo(&info), CKR_OK);
	cr_assert_eq(info.cryptokiVersion.major, 3);
	cr_assert_eq(memcmp(info.manufacturerID, "sealgate        ", 16), 0);
}

Test(module, initialize_finalize)
{
	CK_C_INITIALIZE_ARGS half = { .CreateMutex = (CK_CREATEMUTEX)1 };
	CK_C_INITIALIZE_ARGS theirs = { (CK_CREATEMUTEX)1, (CK_DESTROYMUTEX)1,
	                                (CK_LOCKMUTEX)1, (CK_UNLOCKMUTEX)1, 0, NULL };
	CK_INFO info;

	cr_assert_eq(p11->C_Initialize(NULL), CKR_CRYPTOKI_ALREADY_INITIALIZED);
	cr_assert_eq(p11->C_Finalize((void *)1), CKR_ARGUMENTS_BAD);
	cr_assert_eq(p11->C_Finalize(NULL), CKR_OK);
	cr_assert_eq(p11->C_Finalize(NULL), CKR_CRYPTOKI_NOT_INITIALIZED);
	cr_assert_eq(p11->C_GetInfo(&info), CKR_CRYPTOKI_NOT_INITIALIZED);
	cr_assert_eq(p11->C_Sign(1, NULL, 0, NULL, NULL), CKR_CRYPTOKI_NOT_INITIALIZED);
	cr_assert_eq(p11->C_EncryptInit(1, NULL, 0), CKR_CRYPTOKI_NOT_INITIALIZED);
	cr_assert_eq(p11->C_Initialize(&half), CKR_ARGUMENTS_BAD);
	cr_assert_eq(p11->C_Initialize(&theirs), CKR_CANT_LOCK);
	theirs.flags = CKF_OS_LOCKING_OK;
	cr_assert_eq(p11->C_Initialize(&theirs), CKR_OK);   /* NSS style */
	cr_assert_eq(p11->C_Finalize(NULL), CKR_OK);
	cr_assert_eq(p11->C_Initialize(NULL), CKR_OK);
}

/* ---- slot and token ---- */

Test(module, slot_and_token_present)
{
	CK_SLOT_ID slots[2];
	CK_ULONG n = 0;
	CK_SLOT_INFO si;
	CK_TOKEN_INFO ti;
	char label[33];

	cr_assert_eq(p11->C_GetSlotList(CK_TRUE, NULL, &n), CKR_OK);
	cr_assert_eq(n, 1);
	n = 0;
	cr_assert_eq(p11->C_GetSlotList(CK_TRUE, slots, &n), CKR_BUFFER_TOO_SMALL);
	cr_assert_eq(n, 1);
	cr_assert_eq(p11->C_GetSlotList(CK_TRUE, slots, &n), CKR_OK);
	cr_assert_eq(slots[0], SEALGATE_SLOT_ID);

	cr_assert_eq(p11->C_GetSlotInfo(SEALGATE_SLOT_ID, &si), CKR_OK);
	cr_assert_eq(si.flags, CKF_TOKEN_PRESENT | CKF_REMOVABLE_DEVICE | CKF_HW_SLOT);
	cr_assert_eq(p11->C_GetSlotInfo(7, &si), CKR_SLOT_ID_INVALID);

	cr_assert_eq(p11->C_GetTokenInfo(SEALGATE_SLOT_ID, &ti), CKR_OK);
	snprintf(label, sizeof(label), "%-32s", FAKE_LABEL);
	cr_assert_eq(memcmp(ti.label, label, 32), 0);
	cr_assert_eq(memcmp(ti.manufacturerID, "sealgate                        ", 32), 0);
	cr_assert_eq(memcmp(ti.model, "sealgated       ", 16), 0);
	cr_assert_eq(memcmp(ti.serialNumber, "run-1           ", 16), 0);
	cr_assert_eq(ti.flags, CKF_TOKEN_INITIALIZED | CKF_USER_PIN_INITIALIZED |
	                       CKF_LOGIN_REQUIRED | CKF_WRITE_PROTECTED);
	cr_assert_eq(ti.ulMaxSessionCount, CK_EFFECTIVELY_INFINITE);
	cr_assert_eq(ti.ulMinPinLen, 1);
	cr_assert_eq(ti.ulMaxPinLen, 256);
	cr_assert_eq(ti.ulTotalPublicMemory, CK_UNAVAILABLE_INFORMATION);
	cr_assert_eq(ti.ulFreePrivateMemory, CK_UNAVAILABLE_INFORMATION);
	cr_assert_eq(ti.ulSessionCount, 0);
	open_session(0);
	open_session(CKF_RW_SESSION);
	cr_assert_eq(p11->C_GetTokenInfo(SEALGATE_SLOT_ID, &ti), CKR_OK);
	cr_assert_eq(ti.ulSessionCount, 2);
	cr_assert_eq(ti.ulRwSessionCount, 1);
}

Test(module, pooled_connections_are_reused)
{
	CK_TOKEN_INFO ti;

	for (int i = 0; i < 20; i++)
		cr_assert_eq(p11->C_GetTokenInfo(SEALGATE_SLOT_ID, &ti), CKR_OK);
	cr_assert_leq(fakegw_accept_count(fg), 2);
}

Test(module, backend_token_absent)
{
	CK_SLOT_ID slot;
	CK_SESSION_HANDLE h;
	CK_ULONG n = 1;
	CK_SLOT_INFO si;
	CK_TOKEN_INFO ti;

	fakegw_set_token_present(fg, false);
	cr_assert_eq(p11->C_GetSlotList(CK_TRUE, &slot, &n), CKR_OK);
	cr_assert_eq(n, 0);
	n = 1;
	cr_assert_eq(p11->C_GetSlotList(CK_FALSE, &slot, &n), CKR_OK);
	cr_assert_eq(n, 1);
	cr_assert_eq(p11->C_GetSlotInfo(SEALGATE_SLOT_ID, &si), CKR_OK);
	cr_assert_eq(si.flags & CKF_TOKEN_PRESENT, 0);
	cr_assert_eq(p11->C_GetTokenInfo(SEALGATE_SLOT_ID, &ti), CKR_TOKEN_NOT_PRESENT);
	cr_assert_eq(p11->C_OpenSession(SEALGATE_SLOT_ID, CKF_SERIAL_SESSION, NULL, NULL, &h),
	             CKR_TOKEN_NOT_PRESENT);
	fakegw_set_token_present(fg, true);
	cr_assert_eq(p11->C_GetTokenInfo(SEALGATE_SLOT_ID, &ti), CKR_OK);
}

Test(module, gateway_down_then_back_then_restarted)
{
	CK_SESSION_HANDLE s1, s2, h;
	CK_SLOT_ID slot;
	CK_ULONG n = 1, siglen;
	CK_TOKEN_INFO ti;
	CK_SESSION_INFO si;
	CK_OBJECT_HANDLE key;
	uint8_t hash[32], sig[256];

	s1 = open_session(0);
	login(s1);
	key = find_obj(s1, "official", CKO_PRIVATE_KEY);
	cr_assert_neq(key, CK_INVALID_HANDLE);

	/* Unreachable: like a pulled card. */
	fakegw_stop(fg);
	cr_assert_eq(p11->C_GetSlotList(CK_TRUE, &slot, &n), CKR_OK);
	cr_assert_eq(n, 0);
	cr_assert_eq(p11->C_GetTokenInfo(SEALGATE_SLOT_ID, &ti), CKR_TOKEN_NOT_PRESENT);
	cr_assert_eq(p11->C_OpenSession(SEALGATE_SLOT_ID, CKF_SERIAL_SESSION, NULL, NULL, &h),
	             CKR_TOKEN_NOT_PRESENT);
	cr_assert_eq(p11->C_FindObjectsInit(s1, NULL, 0), CKR_DEVICE_REMOVED);
	cr_assert_eq(sign_init(s1, key, CKM_ECDSA, NULL, 0), CKR_OK);
	memset(hash, 7, sizeof(hash));
	siglen = sizeof(sig);
	cr_assert_eq(p11->C_Sign(s1, hash, sizeof(hash), sig, &siglen), CKR_DEVICE_REMOVED);

	/* The same run comes back: the session and the login still hold. */
	cr_assert_eq(fakegw_start(fg, "run-1"), 0);
	n = 1;
	cr_assert_eq(p11->C_GetSlotList(CK_TRUE, &slot, &n), CKR_OK);
	cr_assert_eq(n, 1);
	fakegw_stop(fg);

	/* A new run: old sessions and the login are gone. */
	cr_assert_eq(fakegw_start(fg, "run-2"), 0);
	cr_assert_eq(p11->C_FindObjectsInit(s1, NULL, 0), CKR_DEVICE_REMOVED);
	cr_assert_eq(p11->C_GetSessionInfo(s1, &si), CKR_DEVICE_REMOVED);
	cr_assert_eq(sign_init(s1, key, CKM_ECDSA, NULL, 0), CKR_DEVICE_REMOVED);
	cr_assert_eq(p11->C_CloseSession(s1), CKR_OK);
	s2 = open_session(0);
	cr_assert_eq(p11->C_GetSessionInfo(s2, &si), CKR_OK);
	cr_assert_eq(si.state, CKS_RO_PUBLIC_SESSION);
	cr_assert_eq(find_obj(s2, "official", CKO_PRIVATE_KEY), CK_INVALID_HANDLE);
	login(s2);
	key = find_obj(s2, "official", CKO_PRIVATE_KEY);
	cr_assert_neq(key, CK_INVALID_HANDLE);
	cr_assert_eq(sign_init(s2, key, CKM_ECDSA, NULL, 0), CKR_OK);
	siglen = sizeof(sig);
	cr_assert_eq(p11->C_Sign(s2, hash, sizeof(hash), sig, &siglen), CKR_OK);
	cr_assert_eq(siglen, 64);
}

/* ---- sessions and login ---- */

Test(module, sessions)
{
	CK_SESSION_HANDLE h, rw;
	CK_SESSION_INFO si;

	cr_assert_eq(p11->C_OpenSession(SEALGATE_SLOT_ID, 0, NULL, NULL, &h),
	             CKR_SESSION_PARALLEL_NOT_SUPPORTED);
	cr_assert_eq(p11->C_OpenSession(2, CKF_SERIAL_SESSION, NULL, NULL, &h), CKR_SLOT_ID_INVALID);
	h = open_session(0);
	rw = open_session(CKF_RW_SESSION);
	cr_assert_eq(p11->C_GetSessionInfo(h, &si), CKR_OK);
	cr_assert_eq(si.slotID, SEALGATE_SLOT_ID);
	cr_assert_eq(si.state, CKS_RO_PUBLIC_SESSION);
	cr_assert_eq(si.flags, CKF_SERIAL_SESSION);
	cr_assert_eq(p11->C_GetSessionInfo(rw, &si), CKR_OK);
	cr_assert_eq(si.state, CKS_RW_PUBLIC_SESSION);
	cr_assert_eq(si.flags, CKF_SERIAL_SESSION | CKF_RW_SESSION);
	login(h);
	cr_assert_eq(p11->C_GetSessionInfo(rw, &si), CKR_OK);
	cr_assert_eq(si.state, CKS_RW_USER_FUNCTIONS);
	cr_assert_eq(p11->C_GetSessionInfo(h, &si), CKR_OK);
	cr_assert_eq(si.state, CKS_RO_USER_FUNCTIONS);
	cr_assert_eq(p11->C_CloseSession(h), CKR_OK);
	cr_assert_eq(p11->C_CloseSession(h), CKR_SESSION_HANDLE_INVALID);
	cr_assert_eq(p11->C_GetSessionInfo(h, &si), CKR_SESSION_HANDLE_INVALID);
	cr_assert_eq(fakegw_live_sessions(fg), 1);
	/* Closing the last session ends the login, at the gateway too. */
	cr_assert_eq(p11->C_CloseAllSessions(SEALGATE_SLOT_ID), CKR_OK);
	cr_assert_eq(fakegw_live_sessions(fg), 0);
	h = open_session(0);
	cr_assert_eq(p11->C_GetSessionInfo(h, &si), CKR_OK);
	cr_assert_eq(si.state, CKS_RO_PUBLIC_SESSION);
}

Test(module, login_logout)
{
	CK_SESSION_HANDLE h = open_session(0), h2 = open_session(0);
	CK_SESSION_INFO si;
	char user[64];

	cr_assert_eq(p11->C_Login(h, CKU_USER, (CK_UTF8CHAR_PTR)"wrong", 5), CKR_PIN_INCORRECT);
	cr_assert_eq(p11->C_Login(h, CKU_SO, (CK_UTF8CHAR_PTR)FAKE_PIN, strlen(FAKE_PIN)),
	             CKR_SESSION_READ_ONLY_EXISTS);
	cr_assert_eq(p11->C_Login(h, CKU_CONTEXT_SPECIFIC, (CK_UTF8CHAR_PTR)"1", 1),
	             CKR_OPERATION_NOT_INITIALIZED);
	cr_assert_eq(p11->C_Login(h, 42, (CK_UTF8CHAR_PTR)"1", 1), CKR_USER_TYPE_INVALID);
	cr_assert_eq(p11->C_Login(h, CKU_USER, NULL, 0), CKR_PIN_INCORRECT);
	cr_assert_eq(p11->C_Login(h, CKU_USER, NULL, 4), CKR_ARGUMENTS_BAD);
	cr_assert_eq(p11->C_Login(h, CKU_USER, (CK_UTF8CHAR_PTR)"", 0), CKR_PIN_LEN_RANGE);
	cr_assert_eq(p11->C_Login(h, CKU_USER, (CK_UTF8CHAR_PTR)"a\0b", 3), CKR_PIN_INVALID);
	cr_assert_eq(p11->C_Logout(h), CKR_USER_NOT_LOGGED_IN);
	login(h);
	fakegw_last_user(fg, user, sizeof(user));
	cr_assert_str_eq(user, "");
	cr_assert_eq(p11->C_GetSessionInfo(h2, &si), CKR_OK);
	cr_assert_eq(si.state, CKS_RO_USER_FUNCTIONS);   /* per application */
	cr_assert_eq(p11->C_Login(h2, CKU_USER, (CK_UTF8CHAR_PTR)FAKE_PIN, strlen(FAKE_PIN)),
	             CKR_USER_ALREADY_LOGGED_IN);
	cr_assert_eq(p11->C_Logout(h2), CKR_OK);
	cr_assert_eq(fakegw_logout_count(fg), 1);
	cr_assert_eq(fakegw_live_sessions(fg), 0);
	cr_assert_eq(p11->C_GetSessionInfo(h, &si), CKR_OK);
	cr_assert_eq(si.state, CKS_RO_PUBLIC_SESSION);
	cr_assert_eq(p11->C_Logout(h), CKR_USER_NOT_LOGGED_IN);

	/* C_LoginUser names the account. */
	cr_assert_eq(p11->C_LoginUser(h, CKU_USER, (CK_UTF8CHAR_PTR)FAKE_PIN, strlen(FAKE_PIN),
	                              (CK_UTF8CHAR_PTR)"bob", 3), CKR_OK);
	fakegw_last_user(fg, user, sizeof(user));
	cr_assert_str_eq(user, "bob");
}

Test(module, sealgate_user_env_is_sent)
{
	CK_SESSION_HANDLE h;
	char user[64];

	cr_assert_eq(p11->C_Finalize(NULL), CKR_OK);
	setenv("SEALGATE_USER", "carol", 1);
	init_module();
	h = open_session(0);
	login(h);
	fakegw_last_user(fg, user, sizeof(user));
	cr_assert_str_eq(user, "carol");
	unsetenv("SEALGATE_USER");
}

Test(module, expired_gateway_login_allows_new_login)
{
	CK_SESSION_HANDLE h = open_session(0);
	CK_OBJECT_HANDLE key;
	uint8_t hash[32] = { 1 }, sig[64];
	CK_ULONG siglen = sizeof(sig);

	login(h);
	key = find_obj(h, "official", CKO_PRIVATE_KEY);
	fakegw_expire_sessions(fg);
	cr_assert_eq(sign_init(h, key, CKM_ECDSA, NULL, 0), CKR_OK);
	cr_assert_eq(p11->C_Sign(h, hash, sizeof(hash), sig, &siglen), CKR_USER_NOT_LOGGED_IN);
	/* The module forgot the dead login: a new one is possible. */
	login(h);
	key = find_obj(h, "official", CKO_PRIVATE_KEY);
	cr_assert_eq(sign_init(h, key, CKM_ECDSA, NULL, 0), CKR_OK);
	siglen = sizeof(sig);
	cr_assert_eq(p11->C_Sign(h, hash, sizeof(hash), sig, &siglen), CKR_OK);
}

/* ---- objects ---- */

Test(module, private_keys_only_after_login)
{
	CK_SESSION_HANDLE h = open_session(0);
	CK_OBJECT_CLASS priv = CKO_PRIVATE_KEY;
	CK_ATTRIBUTE t = { CKA_CLASS, &priv, sizeof(priv) };
	CK_OBJECT_HANDLE o[16], key;
	CK_BBOOL b;
	CK_ATTRIBUTE a = { CKA_SIGN, &b, sizeof(b) };

	cr_assert_eq(find(h, &t, 1, o, 16), 0);
	cr_assert_eq(find(h, NULL, 0, o, 16), 8);   /* 4 seals × (cert, public key) */
	login(h);
	cr_assert_eq(find(h, &t, 1, o, 16), 4);
	cr_assert_eq(find(h, NULL, 0, o, 16), 12);
	key = find_obj(h, "contract", CKO_PRIVATE_KEY);
	cr_assert_eq(p11->C_GetAttributeValue(h, key, &a, 1), CKR_OK);
	cr_assert_eq(b, CK_TRUE);
	cr_assert_eq(p11->C_Logout(h), CKR_OK);
	cr_assert_eq(p11->C_GetAttributeValue(h, key, &a, 1), CKR_OBJECT_HANDLE_INVALID);
	cr_assert_eq(find(h, &t, 1, o, 16), 0);
	/* Private handles stay invalid after a new login; new ones appear. */
	login(h);
	cr_assert_eq(p11->C_GetAttributeValue(h, key, &a, 1), CKR_OBJECT_HANDLE_INVALID);
	cr_assert_neq(find_obj(h, "contract", CKO_PRIVATE_KEY), key);
}

Test(module, find_with_templates)
{
	CK_SESSION_HANDLE h = open_session(0);
	CK_OBJECT_CLASS cert = CKO_CERTIFICATE, pub = CKO_PUBLIC_KEY;
	CK_KEY_TYPE ec = CKK_EC;
	CK_BYTE id = 0xA0;
	CK_BBOOL yes = CK_TRUE;
	uint32_t short_class = CKO_CERTIFICATE;
	CK_OBJECT_HANDLE o[16], o2[16], one;
	CK_ULONG n;
	CK_ATTRIBUTE by_class = { CKA_CLASS, &cert, sizeof(cert) };
	CK_ATTRIBUTE by_id = { CKA_ID, &id, 1 };
	CK_ATTRIBUTE by_label = { CKA_LABEL, "Official Seal", 13 };
	CK_ATTRIBUTE by_ec[] = { { CKA_CLASS, &pub, sizeof(pub) }, { CKA_KEY_TYPE, &ec, sizeof(ec) } };
	CK_ATTRIBUTE by_unknown = { CKA_VENDOR_DEFINED | 0x1234, &yes, 1 };
	CK_ATTRIBUTE by_short = { CKA_CLASS, &short_class, sizeof(short_class) };
	CK_ATTRIBUTE by_kind = { CKA_SEALGATE_KIND, "finance", 7 };
	CK_ATTRIBUTE by_token = { CKA_TOKEN, &yes, 1 };
	CK_ATTRIBUTE by_label_utf8 = { CKA_LABEL, "财务专用章", strlen("财务专用章") };

	cr_assert_eq(find(h, &by_class, 1, o, 16), 4);
	cr_assert_eq(find(h, &by_id, 1, o, 16), 2);             /* cert + public key */
	cr_assert_eq(find(h, &by_label, 1, o, 16), 2);
	cr_assert_eq(find(h, by_ec, 2, o, 16), 2);
	cr_assert_eq(find(h, &by_unknown, 1, o, 16), 0);
	cr_assert_eq(find(h, &by_short, 1, o, 16), 0);          /* exact length */
	cr_assert_eq(find(h, &by_kind, 1, o, 16), 2);
	cr_assert_eq(find(h, &by_token, 1, o, 16), 8);
	cr_assert_eq(find(h, &by_label_utf8, 1, o, 16), 2);

	/* Handles are stable between finds. */
	n = find(h, NULL, 0, o, 16);
	cr_assert_eq(find(h, NULL, 0, o2, 16), n);
	cr_assert_eq(memcmp(o, o2, n * sizeof(o[0])), 0);

	/* One at a time, then the end. */
	cr_assert_eq(p11->C_FindObjectsInit(h, &by_class, 1), CKR_OK);
	cr_assert_eq(p11->C_FindObjectsInit(h, &by_class, 1), CKR_OPERATION_ACTIVE);
	for (int i = 0; i < 4; i++) {
		cr_assert_eq(p11->C_FindObjects(h, &one, 1, &n), CKR_OK);
		cr_assert_eq(n, 1);
	}
	cr_assert_eq(p11->C_FindObjects(h, &one, 1, &n), CKR_OK);
	cr_assert_eq(n, 0);
	cr_assert_eq(p11->C_FindObjectsFinal(h), CKR_OK);
	cr_assert_eq(p11->C_FindObjects(h, &one, 1, &n), CKR_OPERATION_NOT_INITIALIZED);
	cr_assert_eq(p11->C_FindObjectsFinal(h), CKR_OPERATION_NOT_INITIALIZED);
	cr_assert_eq(p11->C_GetAttributeValue(h, 9999, &by_class, 1), CKR_OBJECT_HANDLE_INVALID);
}

Test(module, attribute_conventions)
{
	CK_SESSION_HANDLE h = open_session(0);
	CK_OBJECT_HANDLE cert, pub, priv;
	unsigned char *der = NULL, buf[4096], small[4];
	int derlen = i2d_X509(fakegw_cert(fg, "contract"), &der);
	CK_OBJECT_CLASS cls;
	CK_BBOOL b;
	CK_LONG uses, quota;
	CK_ULONG bits;
	CK_MECHANISM_TYPE mechs[16];

	cert = find_obj(h, "contract", CKO_CERTIFICATE);
	pub = find_obj(h, "contract", CKO_PUBLIC_KEY);
	cr_assert_neq(cert, CK_INVALID_HANDLE);

	/* Size query, then the value. */
	CK_ATTRIBUTE v = { CKA_VALUE, NULL, 0 };
	cr_assert_eq(p11->C_GetAttributeValue(h, cert, &v, 1), CKR_OK);
	cr_assert_eq(v.ulValueLen, (CK_ULONG)derlen);
	v.pValue = buf;
	cr_assert_eq(p11->C_GetAttributeValue(h, cert, &v, 1), CKR_OK);
	cr_assert_eq(memcmp(buf, der, (size_t)derlen), 0);
	OPENSSL_free(der);

	/* Too small: that entry is unavailable, the others are filled. */
	CK_ATTRIBUTE two[] = { { CKA_VALUE, small, sizeof(small) }, { CKA_CLASS, &cls, sizeof(cls) } };
	cr_assert_eq(p11->C_GetAttributeValue(h, cert, two, 2), CKR_BUFFER_TOO_SMALL);
	cr_assert_eq(two[0].ulValueLen, CK_UNAVAILABLE_INFORMATION);
	cr_assert_eq(two[1].ulValueLen, sizeof(cls));
	cr_assert_eq(cls, CKO_CERTIFICATE);

	/* Unknown type. */
	CK_ATTRIBUTE bad[] = { { CKA_MODULUS, buf, sizeof(buf) }, { CKA_CLASS, &cls, sizeof(cls) } };
	cr_assert_eq(p11->C_GetAttributeValue(h, cert, bad, 2), CKR_ATTRIBUTE_TYPE_INVALID);
	cr_assert_eq(bad[0].ulValueLen, CK_UNAVAILABLE_INFORMATION);
	cr_assert_eq(bad[1].ulValueLen, sizeof(cls));

	/* Public key material and the vendor attributes. */
	CK_ATTRIBUTE pk[] = {
		{ CKA_MODULUS_BITS, &bits, sizeof(bits) },
		{ CKA_SEALGATE_USES_LEFT, &uses, sizeof(uses) },
		{ CKA_SEALGATE_QUOTA_LEFT, &quota, sizeof(quota) },
		{ CKA_SEALGATE_AVAILABLE, &b, sizeof(b) },
		{ CKA_SEALGATE_SEAL_ID, buf, 64 },
	};
	cr_assert_eq(p11->C_GetAttributeValue(h, pub, pk, 5), CKR_OK);
	cr_assert_eq(bits, 2048);
	cr_assert_eq(uses, 5);
	cr_assert_eq(quota, 10);
	cr_assert_eq(b, CK_TRUE);
	cr_assert_eq(pk[4].ulValueLen, 8);
	cr_assert_eq(memcmp(buf, "contract", 8), 0);

	/* Private key: sensitive parts, and all four cases at once. */
	login(h);
	priv = find_obj(h, "contract", CKO_PRIVATE_KEY);
	CK_ATTRIBUTE many[] = {
		{ CKA_PRIVATE_EXPONENT, buf, sizeof(buf) },
		{ CKA_VENDOR_DEFINED | 0x99, buf, sizeof(buf) },
		{ CKA_MODULUS, small, sizeof(small) },
		{ CKA_SENSITIVE, &b, sizeof(b) },
		{ CKA_ALLOWED_MECHANISMS, mechs, sizeof(mechs) },
	};
	cr_assert_eq(p11->C_GetAttributeValue(h, priv, many, 5), CKR_ATTRIBUTE_SENSITIVE);
	cr_assert_eq(many[0].ulValueLen, CK_UNAVAILABLE_INFORMATION);
	cr_assert_eq(many[1].ulValueLen, CK_UNAVAILABLE_INFORMATION);
	cr_assert_eq(many[2].ulValueLen, CK_UNAVAILABLE_INFORMATION);
	cr_assert_eq(many[3].ulValueLen, sizeof(CK_BBOOL));
	cr_assert_eq(b, CK_TRUE);
	cr_assert_eq(many[4].ulValueLen, 8 * sizeof(CK_MECHANISM_TYPE));
	cr_assert_eq(mechs[0], CKM_RSA_PKCS);

	CK_ATTRIBUTE flags[] = {
		{ CKA_EXTRACTABLE, &b, 1 },
	};
	cr_assert_eq(p11->C_GetAttributeValue(h, priv, flags, 1), CKR_OK);
	cr_assert_eq(b, CK_FALSE);
	CK_ATTRIBUTE isprivate = { CKA_PRIVATE, &b, 1 };
	cr_assert_eq(p11->C_GetAttributeValue(h, priv, &isprivate, 1), CKR_OK);
	cr_assert_eq(b, CK_TRUE);
	cr_assert_eq(p11->C_GetAttributeValue(h, cert, &isprivate, 1), CKR_OK);
	cr_assert_eq(b, CK_FALSE);

	/* The EC public point is the DER OCTET STRING. */
	pub = find_obj(h, "official", CKO_PUBLIC_KEY);
	CK_ATTRIBUTE pt = { CKA_EC_POINT, buf, sizeof(buf) };
	cr_assert_eq(p11->C_GetAttributeValue(h, pub, &pt, 1), CKR_OK);
	cr_assert_eq(pt.ulValueLen, 67);
	cr_assert_eq(buf[0], 0x04);
	cr_assert_eq(buf[2], 0x04);
}

/* ---- signing ---- */

struct sigcase {
	const char *seal;
	CK_MECHANISM_TYPE mech;
	const char *md;      /* the message digest of the whole */
	int input;           /* 0 message, 1 DigestInfo(hash), 2 hash */
	bool pss;
	CK_ULONG siglen;
};

static const struct sigcase cases[] = {
	{ "contract", CKM_RSA_PKCS, "SHA256", 1, false, 256 },
	{ "contract", CKM_SHA256_RSA_PKCS, "SHA256", 0, false, 256 },
	{ "contract", CKM_SHA384_RSA_PKCS, "SHA384", 0, false, 256 },
	{ "contract", CKM_SHA512_RSA_PKCS, "SHA512", 0, false, 256 },
	{ "contract", CKM_RSA_PKCS_PSS, "SHA256", 2, true, 256 },
	{ "contract", CKM_SHA256_RSA_PKCS_PSS, "SHA256", 0, true, 256 },
	{ "contract", CKM_SHA384_RSA_PKCS_PSS, "SHA384", 0, true, 256 },
	{ "contract", CKM_SHA512_RSA_PKCS_PSS, "SHA512", 0, true, 256 },
	{ "official", CKM_ECDSA, "SHA256", 2, false, 64 },
	{ "official", CKM_ECDSA_SHA256, "SHA256", 0, false, 64 },
	{ "official", CKM_ECDSA_SHA384, "SHA384", 0, false, 64 },
	{ "official", CKM_ECDSA_SHA512, "SHA512", 0, false, 64 },
	{ "finance", CKM_EDDSA, NULL, 0, false, 64 },
};

static void
pss_params(const struct sigcase *c, CK_RSA_PKCS_PSS_PARAMS *p)
{
	const EVP_MD *md = md_of(c->md);
	int n = EVP_MD_get_size(md);

	p->hashAlg = n == 32 ? CKM_SHA256 : n == 48 ? CKM_SHA384 : CKM_SHA512;
	p->mgf = n == 32 ? CKG_MGF1_SHA256 : n == 48 ? CKG_MGF1_SHA384 : CKG_MGF1_SHA512;
	p->sLen = (CK_ULONG)n;
}

/* The bytes the application hands to the token for this case. */
static size_t
token_input(const struct sigcase *c, const uint8_t *msg, size_t len, uint8_t *out)
{
	static const uint8_t di256[] = { 0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48,
	                                 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04,
	                                 0x20 };
	unsigned n = 0;

	if (c->input == 0) {
		memcpy(out, msg, len);
		return len;
	}
	if (c->input == 1) {
		memcpy(out, di256, sizeof(di256));
		sha("SHA256", msg, len, out + sizeof(di256), &n);
		return sizeof(di256) + n;
	}
	sha(c->md, msg, len, out, &n);
	return n;
}

static void
sign_case(CK_SESSION_HANDLE h, const struct sigcase *c, const uint8_t *msg, size_t len,
          bool multi)
{
	CK_OBJECT_HANDLE key = find_obj(h, c->seal, CKO_PRIVATE_KEY);
	CK_RSA_PKCS_PSS_PARAMS pp;
	uint8_t *in = malloc(len + 64), sig[512];
	size_t inlen = token_input(c, msg, len, in);
	CK_ULONG siglen = sizeof(sig);

	cr_assert_neq(key, CK_INVALID_HANDLE);
	if (c->pss)
		pss_params(c, &pp);
	cr_assert_eq(sign_init(h, key, c->mech, c->pss ? &pp : NULL, c->pss ? sizeof(pp) : 0),
	             CKR_OK, "mech 0x%lx", c->mech);
	if (!multi) {
		cr_assert_eq(p11->C_Sign(h, in, inlen, sig, &siglen), CKR_OK, "mech 0x%lx", c->mech);
	} else {
		size_t a = inlen / 3, b = inlen / 2;
		cr_assert_eq(p11->C_SignUpdate(h, in, a), CKR_OK);
		cr_assert_eq(p11->C_SignUpdate(h, in + a, b - a), CKR_OK);
		cr_assert_eq(p11->C_SignUpdate(h, in + b, inlen - b), CKR_OK);
		cr_assert_eq(p11->C_SignFinal(h, sig, &siglen), CKR_OK, "mech 0x%lx", c->mech);
	}
	cr_assert_eq(siglen, c->siglen);
	cr_assert(verify(c->seal, c->md, c->pss ? (int)pp.sLen : -1, msg, len, sig, siglen),
	          "signature of mech 0x%lx does not verify", c->mech);
	free(in);
}

Test(module, every_mechanism_signs_and_verifies)
{
	CK_SESSION_HANDLE h = open_session(0);
	uint8_t msg[3000];
	CK_MECHANISM_TYPE list[32];
	CK_ULONG n = 32;

	for (size_t i = 0; i < sizeof(msg); i++)
		msg[i] = (uint8_t)(i * 7);
	login(h);
	cr_assert_eq(p11->C_GetMechanismList(SEALGATE_SLOT_ID, list, &n), CKR_OK);
	cr_assert_eq(n, sizeof(cases) / sizeof(cases[0]));
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		sign_case(h, &cases[i], msg, sizeof(msg), false);
		sign_case(h, &cases[i], msg, sizeof(msg), true);
	}
	cr_assert_eq(fakegw_sign_count(fg), 2 * sizeof(cases) / sizeof(cases[0]));
}

Test(module, hash_and_sign_sends_digest_and_prefix)
{
	CK_SESSION_HANDLE h = open_session(0);
	size_t len = 200 * 1024;
	uint8_t *msg = malloc(len);
	struct fakegw_last_sign last;

	for (size_t i = 0; i < len; i++)
		msg[i] = (uint8_t)(i ^ (i >> 8));
	login(h);
	sign_case(h, &cases[1], msg, len, true);        /* SHA256-RSA-PKCS */
	fakegw_last_sign(fg, &last);
	cr_assert(last.had_digest);
	cr_assert_eq(last.data_size, 64 * 1024);
	cr_assert_eq(last.data_len, (int64_t)len);
	sign_case(h, &cases[9], msg, len, false);       /* ECDSA-SHA256, single part */
	fakegw_last_sign(fg, &last);
	cr_assert_eq(last.data_size, 64 * 1024);
	cr_assert_eq(last.data_len, (int64_t)len);
	sign_case(h, &cases[12], msg, len, true);       /* EdDSA: the whole message */
	fakegw_last_sign(fg, &last);
	cr_assert_not(last.had_digest);
	cr_assert_eq(last.data_size, len);
	free(msg);
}

Test(module, size_query_and_small_buffer_send_nothing)
{
	CK_SESSION_HANDLE h = open_session(0);
	CK_OBJECT_HANDLE key;
	uint8_t msg[100] = { 3 }, sig[512];
	CK_ULONG siglen;
	const char *seals[] = { "contract", "official", "finance" };
	CK_MECHANISM_TYPE mechs[] = { CKM_SHA256_RSA_PKCS, CKM_ECDSA_SHA256, CKM_EDDSA };
	CK_ULONG want[] = { 256, 64, 64 };

	login(h);
	for (int i = 0; i < 3; i++) {
		key = find_obj(h, seals[i], CKO_PRIVATE_KEY);
		cr_assert_eq(sign_init(h, key, mechs[i], NULL, 0), CKR_OK);
		siglen = 0;
		cr_assert_eq(p11->C_Sign(h, msg, sizeof(msg), NULL, &siglen), CKR_OK);
		cr_assert_eq(siglen, want[i]);
		siglen = 10;
		cr_assert_eq(p11->C_Sign(h, msg, sizeof(msg), sig, &siglen), CKR_BUFFER_TOO_SMALL);
		cr_assert_eq(siglen, want[i]);
		cr_assert_eq(fakegw_sign_count(fg), (unsigned)i);
		/* The operation is still there. */
		siglen = sizeof(sig);
		cr_assert_eq(p11->C_Sign(h, msg, sizeof(msg), sig, &siglen), CKR_OK);
		cr_assert_eq(fakegw_sign_count(fg), (unsigned)i + 1);
		cr_assert(verify(seals[i], i < 2 ? "SHA256" : NULL, -1, msg, sizeof(msg), sig, siglen));
		/* And gone after the signature. */
		cr_assert_eq(p11->C_Sign(h, msg, sizeof(msg), sig, &siglen),
		             CKR_OPERATION_NOT_INITIALIZED);
	}
	/* Multi-part: the same at C_SignFinal. */
	key = find_obj(h, "contract", CKO_PRIVATE_KEY);
	cr_assert_eq(sign_init(h, key, CKM_SHA256_RSA_PKCS, NULL, 0), CKR_OK);
	cr_assert_eq(p11->C_SignUpdate(h, msg, 50), CKR_OK);
	cr_assert_eq(p11->C_SignFinal(h, NULL, &siglen), CKR_OK);
	cr_assert_eq(siglen, 256);
	siglen = 255;
	cr_assert_eq(p11->C_SignFinal(h, sig, &siglen), CKR_BUFFER_TOO_SMALL);
	cr_assert_eq(p11->C_SignUpdate(h, msg + 50, 50), CKR_OK);
	siglen = sizeof(sig);
	cr_assert_eq(p11->C_SignFinal(h, sig, &siglen), CKR_OK);
	cr_assert(verify("contract", "SHA256", -1, msg, sizeof(msg), sig, siglen));
	cr_assert_eq(fakegw_sign_count(fg), 4);
}

Test(module, sign_init_checks)
{
	CK_SESSION_HANDLE h = open_session(0);
	CK_OBJECT_HANDLE rsa, cert, pub, ec, inv, ed;
	CK_RSA_PKCS_PSS_PARAMS pp = { CKM_SHA256, CKG_MGF1_SHA256, 32 };
	CK_EDDSA_PARAMS ep = { CK_TRUE, 0, NULL };
	CK_MECHANISM m = { CKM_SHA256_RSA_PKCS, NULL, 0 };
	uint8_t data[300] = { 0 }, sig[256];
	CK_ULONG siglen = sizeof(sig);

	cert = find_obj(h, "contract", CKO_CERTIFICATE);
	pub = find_obj(h, "contract", CKO_PUBLIC_KEY);
	cr_assert_eq(p11->C_SignInit(h, &m, pub), CKR_USER_NOT_LOGGED_IN);
	login(h);
	rsa = find_obj(h, "contract", CKO_PRIVATE_KEY);
	ec = find_obj(h, "official", CKO_PRIVATE_KEY);
	inv = find_obj(h, "invoice", CKO_PRIVATE_KEY);
	ed = find_obj(h, "finance", CKO_PRIVATE_KEY);
	cr_assert_eq(p11->C_SignInit(h, &m, cert), CKR_KEY_HANDLE_INVALID);
	cr_assert_eq(p11->C_SignInit(h, &m, pub), CKR_KEY_FUNCTION_NOT_PERMITTED);
	cr_assert_eq(p11->C_SignInit(h, &m, 4242), CKR_KEY_HANDLE_INVALID);
	cr_assert_eq(sign_init(h, rsa, CKM_ECDSA, NULL, 0), CKR_KEY_TYPE_INCONSISTENT);
	cr_assert_eq(sign_init(h, ec, CKM_RSA_PKCS, NULL, 0), CKR_KEY_TYPE_INCONSISTENT);
	cr_assert_eq(sign_init(h, inv, CKM_ECDSA_SHA256, NULL, 0), CKR_MECHANISM_INVALID);
	cr_assert_eq(sign_init(h, rsa, CKM_SHA1_RSA_PKCS, NULL, 0), CKR_MECHANISM_INVALID);
	cr_assert_eq(sign_init(h, rsa, CKM_RSA_PKCS_PSS, NULL, 0), CKR_MECHANISM_PARAM_INVALID);
	cr_assert_eq(sign_init(h, rsa, CKM_SHA384_RSA_PKCS_PSS, &pp, sizeof(pp)),
	             CKR_MECHANISM_PARAM_INVALID);          /* hash differs */
	pp.mgf = CKG_MGF1_SHA1;
	cr_assert_eq(sign_init(h, rsa, CKM_SHA256_RSA_PKCS_PSS, &pp, sizeof(pp)),
	             CKR_MECHANISM_PARAM_INVALID);
	pp.mgf = CKG_MGF1_SHA256;
	pp.sLen = 256 - 32 - 2 + 1;
	cr_assert_eq(sign_init(h, rsa, CKM_SHA256_RSA_PKCS_PSS, &pp, sizeof(pp)),
	             CKR_MECHANISM_PARAM_INVALID);
	pp.sLen = 256 - 32 - 2;
	cr_assert_eq(sign_init(h, rsa, CKM_SHA256_RSA_PKCS_PSS, &pp, sizeof(pp)), CKR_OK);
	cr_assert_eq(sign_init(h, rsa, CKM_SHA256_RSA_PKCS, NULL, 0), CKR_OPERATION_ACTIVE);
	cr_assert_eq(p11->C_SessionCancel(h, CKF_SIGN), CKR_OK);
	cr_assert_eq(sign_init(h, rsa, CKM_SHA256_RSA_PKCS, &pp, sizeof(pp)),
	             CKR_MECHANISM_PARAM_INVALID);          /* no params here */
	cr_assert_eq(sign_init(h, ed, CKM_EDDSA, &ep, sizeof(ep)), CKR_MECHANISM_PARAM_INVALID);
	ep.phFlag = CK_FALSE;
	cr_assert_eq(sign_init(h, ed, CKM_EDDSA, &ep, sizeof(ep)), CKR_OK);
	cr_assert_eq(p11->C_SessionCancel(h, CKF_SIGN), CKR_OK);

	/* CKM_RSA_PKCS input is at most k - 11; an error ends the op. */
	cr_assert_eq(sign_init(h, rsa, CKM_RSA_PKCS, NULL, 0), CKR_OK);
	cr_assert_eq(p11->C_Sign(h, data, 246, sig, &siglen), CKR_DATA_LEN_RANGE);
	cr_assert_eq(p11->C_Sign(h, data, 245, sig, &siglen), CKR_OPERATION_NOT_INITIALIZED);
	cr_assert_eq(sign_init(h, rsa, CKM_RSA_PKCS, NULL, 0), CKR_OK);
	cr_assert_eq(p11->C_Sign(h, data, 245, sig, &siglen), CKR_OK);
	/* Raw PSS input must be exactly the hash. */
	pp.sLen = 32;
	cr_assert_eq(sign_init(h, rsa, CKM_RSA_PKCS_PSS, &pp, sizeof(pp)), CKR_OK);
	siglen = sizeof(sig);
	cr_assert_eq(p11->C_Sign(h, data, 31, sig, &siglen), CKR_DATA_LEN_RANGE);
	/* ECDSA raw input must not be empty; an error ends the op. */
	cr_assert_eq(sign_init(h, ec, CKM_ECDSA, NULL, 0), CKR_OK);
	cr_assert_eq(p11->C_Sign(h, data, 0, sig, &siglen), CKR_DATA_LEN_RANGE);
	cr_assert_eq(p11->C_Sign(h, data, 32, sig, &siglen), CKR_OPERATION_NOT_INITIALIZED);
	cr_assert_eq(fakegw_sign_count(fg), 1);

	/* The gateway's refusal is the application's answer; the op ends. */
	fakegw_set_deny(fg, true);
	cr_assert_eq(sign_init(h, ec, CKM_ECDSA, NULL, 0), CKR_OK);
	siglen = sizeof(sig);
	cr_assert_eq(p11->C_Sign(h, data, 32, sig, &siglen), CKR_FUNCTION_REJECTED);
	cr_assert_eq(p11->C_Sign(h, data, 32, sig, &siglen), CKR_OPERATION_NOT_INITIALIZED);
	/* A context-specific login is for keys with CKA_ALWAYS_AUTHENTICATE
	 * (mfa: per_signature); this one's operation does not need it. */
	cr_assert_eq(sign_init(h, ec, CKM_ECDSA, NULL, 0), CKR_OK);
	cr_assert_eq(p11->C_Login(h, CKU_CONTEXT_SPECIFIC, (CK_UTF8CHAR_PTR)"1", 1),
	             CKR_OPERATION_NOT_INITIALIZED);
}

Test(module, mechanism_info)
{
	CK_MECHANISM_INFO mi;
	CK_MECHANISM_TYPE list[2];
	CK_ULONG n = 2;

	cr_assert_eq(p11->C_GetMechanismList(SEALGATE_SLOT_ID, list, &n), CKR_BUFFER_TOO_SMALL);
	cr_assert_eq(n, 13);
	cr_assert_eq(p11->C_GetMechanismInfo(SEALGATE_SLOT_ID, CKM_SHA256_RSA_PKCS_PSS, &mi), CKR_OK);
	cr_assert_eq(mi.flags, CKF_SIGN | CKF_VERIFY | CKF_HW);
	cr_assert_leq(mi.ulMinKeySize, 2048);
	cr_assert_geq(mi.ulMaxKeySize, 4096);
	cr_assert_eq(p11->C_GetMechanismInfo(SEALGATE_SLOT_ID, CKM_ECDSA, &mi), CKR_OK);
	cr_assert_eq(mi.flags, CKF_SIGN | CKF_VERIFY | CKF_HW | CKF_EC_F_P | CKF_EC_NAMEDCURVE |
	                       CKF_EC_UNCOMPRESS);
	cr_assert_eq(p11->C_GetMechanismInfo(SEALGATE_SLOT_ID, CKM_EDDSA, &mi), CKR_OK);
	cr_assert_eq(mi.flags, CKF_SIGN | CKF_VERIFY | CKF_HW);
	cr_assert_eq(p11->C_GetMechanismInfo(SEALGATE_SLOT_ID, CKM_AES_CBC, &mi), CKR_MECHANISM_INVALID);
	cr_assert_eq(p11->C_GetMechanismInfo(SEALGATE_SLOT_ID, CKM_VENDOR_DEFINED, &mi),
	             CKR_MECHANISM_INVALID);
}

/* ---- refusals ---- */

Test(module, write_functions_refused)
{
	CK_SESSION_HANDLE h = open_session(CKF_RW_SESSION);
	CK_OBJECT_HANDLE cert = find_obj(h, "contract", CKO_CERTIFICATE), o;
	CK_OBJECT_CLASS cls = CKO_DATA;
	CK_ATTRIBUTE t = { CKA_CLASS, &cls, sizeof(cls) };
	CK_MECHANISM gen = { CKM_RSA_PKCS_KEY_PAIR_GEN, NULL, 0 }, m = { CKM_SHA256, NULL, 0 };
	CK_ULONG n = 0;
	uint8_t buf[64];

	cr_assert_eq(p11->C_CreateObject(h, &t, 1, &o), CKR_TOKEN_WRITE_PROTECTED);
	cr_assert_eq(p11->C_CopyObject(h, cert, &t, 1, &o), CKR_TOKEN_WRITE_PROTECTED);
	cr_assert_eq(p11->C_CopyObject(h, 4242, &t, 1, &o), CKR_OBJECT_HANDLE_INVALID);
	cr_assert_eq(p11->C_DestroyObject(h, cert), CKR_TOKEN_WRITE_PROTECTED);
	cr_assert_eq(p11->C_SetAttributeValue(h, cert, &t, 1), CKR_TOKEN_WRITE_PROTECTED);
	cr_assert_eq(p11->C_GenerateKeyPair(h, &gen, &t, 1, &t, 1, &o, &o), CKR_TOKEN_WRITE_PROTECTED);
	cr_assert_eq(p11->C_GenerateKey(h, &gen, &t, 1, &o), CKR_TOKEN_WRITE_PROTECTED);
	cr_assert_eq(p11->C_InitToken(SEALGATE_SLOT_ID, (CK_UTF8CHAR_PTR)"1", 1,
	                              (CK_UTF8CHAR_PTR)"x"), CKR_TOKEN_WRITE_PROTECTED);
	cr_assert_eq(p11->C_InitPIN(h, (CK_UTF8CHAR_PTR)"1", 1), CKR_TOKEN_WRITE_PROTECTED);
	/* C_SetPIN changes the sealgate password: the old PIN must log in. */
	cr_assert_eq(p11->C_SetPIN(h, (CK_UTF8CHAR_PTR)"1", 1, (CK_UTF8CHAR_PTR)"2", 1),
	             CKR_PIN_INCORRECT);
	cr_assert_eq(p11->C_EncryptInit(h, &m, cert), CKR_FUNCTION_NOT_SUPPORTED);
	cr_assert_eq(p11->C_DecryptInit(h, &m, cert), CKR_FUNCTION_NOT_SUPPORTED);
	cr_assert_eq(p11->C_DigestInit(h, &m), CKR_FUNCTION_NOT_SUPPORTED);
	cr_assert_eq(p11->C_SignRecoverInit(h, &m, cert), CKR_FUNCTION_NOT_SUPPORTED);
	cr_assert_eq(p11->C_MessageSignInit(h, &m, cert), CKR_FUNCTION_NOT_SUPPORTED);
	cr_assert_eq(p11->C_GetOperationState(h, buf, &n), CKR_FUNCTION_NOT_SUPPORTED);
	cr_assert_eq(p11->C_EncryptInit(4242, &m, cert), CKR_SESSION_HANDLE_INVALID);
}

Test(module, null_arguments)
{
	CK_SESSION_HANDLE h = open_session(0);
	CK_OBJECT_HANDLE o;
	CK_ULONG n;
	CK_ATTRIBUTE a = { CKA_CLASS, NULL, 8 };
	uint8_t data[32] = { 0 };
	CK_MECHANISM m = { CKM_ECDSA, NULL, 0 };
	CK_C_GetInterfaceList list = (CK_C_GetInterfaceList)dlsym(dl, "C_GetInterfaceList");

	cr_assert_eq(p11->C_GetInfo(NULL), CKR_ARGUMENTS_BAD);
	cr_assert_eq(p11->C_GetSlotList(CK_TRUE, NULL, NULL), CKR_ARGUMENTS_BAD);
	cr_assert_eq(p11->C_GetSlotInfo(SEALGATE_SLOT_ID, NULL), CKR_ARGUMENTS_BAD);
	cr_assert_eq(p11->C_GetTokenInfo(SEALGATE_SLOT_ID, NULL), CKR_ARGUMENTS_BAD);
	cr_assert_eq(p11->C_GetMechanismList(SEALGATE_SLOT_ID, NULL, NULL), CKR_ARGUMENTS_BAD);
	cr_assert_eq(p11->C_GetMechanismInfo(SEALGATE_SLOT_ID, CKM_ECDSA, NULL), CKR_ARGUMENTS_BAD);
	cr_assert_eq(p11->C_OpenSession(SEALGATE_SLOT_ID, CKF_SERIAL_SESSION, NULL, NULL, NULL),
	             CKR_ARGUMENTS_BAD);
	cr_assert_eq(p11->C_GetSessionInfo(h, NULL), CKR_ARGUMENTS_BAD);
	cr_assert_eq(p11->C_FindObjectsInit(h, NULL, 1), CKR_ARGUMENTS_BAD);
	cr_assert_eq(p11->C_FindObjectsInit(h, &a, 1), CKR_ARGUMENTS_BAD);
	cr_assert_eq(p11->C_FindObjectsInit(h, NULL, 0), CKR_OK);
	cr_assert_eq(p11->C_FindObjects(h, NULL, 1, &n), CKR_ARGUMENTS_BAD);
	cr_assert_eq(p11->C_FindObjects(h, &o, 1, NULL), CKR_ARGUMENTS_BAD);
	cr_assert_eq(p11->C_FindObjectsFinal(h), CKR_OK);
	o = find_obj(h, "official", CKO_CERTIFICATE);
	cr_assert_eq(p11->C_GetAttributeValue(h, o, NULL, 1), CKR_ARGUMENTS_BAD);
	cr_assert_eq(p11->C_CreateObject(h, NULL, 1, &o), CKR_ARGUMENTS_BAD);
	cr_assert_eq(p11->C_Login(h, CKU_USER, NULL, 5), CKR_ARGUMENTS_BAD);
	login(h);
	o = find_obj(h, "official", CKO_PRIVATE_KEY);
	cr_assert_eq(p11->C_SignInit(h, NULL, o), CKR_ARGUMENTS_BAD);
	cr_assert_eq(p11->C_SignInit(h, &m, o), CKR_OK);
	cr_assert_eq(p11->C_SignUpdate(h, NULL, 4), CKR_ARGUMENTS_BAD);
	cr_assert_eq(p11->C_SignInit(h, &m, o), CKR_OK);
	cr_assert_eq(p11->C_Sign(h, data, sizeof(data), data, NULL), CKR_ARGUMENTS_BAD);
	cr_assert_eq(p11->C_SignInit(h, &m, o), CKR_OK);
	cr_assert_eq(p11->C_Sign(h, NULL, 32, data, &n), CKR_ARGUMENTS_BAD);
	cr_assert_eq(list(NULL, NULL), CKR_ARGUMENTS_BAD);
	cr_assert_eq(fakegw_sign_count(fg), 0);
}

/* ---- fork and threads ---- */

/* In the child: plain checks and _exit, no Criterion. */
#define CHILD_CHECK(cond, code) do { if (!(cond)) _exit(code); } while (0)

Test(module, fork_in_the_middle_of_a_session)
{
	CK_SESSION_HANDLE h = open_session(0), h2;
	CK_OBJECT_HANDLE key = CK_INVALID_HANDLE;
	CK_INFO info;
	uint8_t hash[32] = { 9 }, sig[64];
	CK_ULONG siglen = sizeof(sig);
	int status;
	pid_t pid;

	login(h);
	key = find_obj(h, "official", CKO_PRIVATE_KEY);
	cr_assert_eq(sign_init(h, key, CKM_ECDSA, NULL, 0), CKR_OK);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		CK_OBJECT_CLASS priv = CKO_PRIVATE_KEY;
		CK_ATTRIBUTE t[] = { { CKA_CLASS, &priv, sizeof(priv) },
		                     { CKA_SEALGATE_SEAL_ID, "official", 8 } };
		CK_ULONG n = 0;

		CHILD_CHECK(p11->C_GetInfo(&info) == CKR_CRYPTOKI_NOT_INITIALIZED, 10);
		CHILD_CHECK(p11->C_Sign(h, hash, 32, sig, &siglen) == CKR_CRYPTOKI_NOT_INITIALIZED, 11);
		CHILD_CHECK(p11->C_OpenSession(SEALGATE_SLOT_ID, CKF_SERIAL_SESSION, NULL, NULL, &h2) ==
		            CKR_CRYPTOKI_NOT_INITIALIZED, 12);
		CHILD_CHECK(p11->C_Finalize(NULL) == CKR_CRYPTOKI_NOT_INITIALIZED, 13);
		CHILD_CHECK(p11->C_Initialize(NULL) == CKR_OK, 14);
		CHILD_CHECK(p11->C_GetSessionInfo(h, &(CK_SESSION_INFO){ 0 }) ==
		            CKR_SESSION_HANDLE_INVALID, 15);
		CHILD_CHECK(p11->C_OpenSession(SEALGATE_SLOT_ID, CKF_SERIAL_SESSION, NULL, NULL, &h2) ==
		            CKR_OK, 16);
		CHILD_CHECK(p11->C_Login(h2, CKU_USER, (CK_UTF8CHAR_PTR)FAKE_PIN, strlen(FAKE_PIN)) ==
		            CKR_OK, 17);
		CHILD_CHECK(p11->C_FindObjectsInit(h2, t, 2) == CKR_OK, 18);
		CHILD_CHECK(p11->C_FindObjects(h2, &key, 1, &n) == CKR_OK && n == 1, 19);
		CHILD_CHECK(p11->C_FindObjectsFinal(h2) == CKR_OK, 20);
		CHILD_CHECK(sign_init(h2, key, CKM_ECDSA, NULL, 0) == CKR_OK, 21);
		CHILD_CHECK(p11->C_Sign(h2, hash, 32, sig, &siglen) == CKR_OK && siglen == 64, 22);
		CHILD_CHECK(p11->C_Finalize(NULL) == CKR_OK, 24);
		_exit(0);
	}
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status));
	cr_assert_eq(WEXITSTATUS(status), 0, "child failed at check %d", WEXITSTATUS(status));
	/* The parent's operation is untouched. */
	cr_assert_eq(p11->C_Sign(h, hash, sizeof(hash), sig, &siglen), CKR_OK);
	cr_assert_eq(fakegw_sign_count(fg), 2);
}

struct worker {
	const struct sigcase *c;
	int ok;
};

static void *
worker_main(void *arg)
{
	struct worker *w = arg;
	CK_SESSION_HANDLE h;
	CK_OBJECT_HANDLE key;
	CK_OBJECT_CLASS priv = CKO_PRIVATE_KEY;
	CK_ATTRIBUTE t[] = { { CKA_CLASS, &priv, sizeof(priv) },
	                     { CKA_SEALGATE_SEAL_ID, (void *)w->c->seal, strlen(w->c->seal) } };
	CK_ULONG n = 0, siglen;
	uint8_t msg[512], in[600], sig[512];
	size_t inlen;

	if (p11->C_OpenSession(SEALGATE_SLOT_ID, CKF_SERIAL_SESSION, NULL, NULL, &h) != CKR_OK ||
	    p11->C_FindObjectsInit(h, t, 2) != CKR_OK ||
	    p11->C_FindObjects(h, &key, 1, &n) != CKR_OK || n != 1 ||
	    p11->C_FindObjectsFinal(h) != CKR_OK)
		return NULL;
	for (int i = 0; i < 25; i++) {
		CK_MECHANISM m = { w->c->mech, NULL, 0 };
		for (size_t j = 0; j < sizeof(msg); j++)
			msg[j] = (uint8_t)(i + j);
		inlen = token_input(w->c, msg, sizeof(msg), in);
		siglen = sizeof(sig);
		if (p11->C_SignInit(h, &m, key) != CKR_OK ||
		    p11->C_Sign(h, in, inlen, sig, &siglen) != CKR_OK ||
		    !verify(w->c->seal, w->c->md, -1, msg, sizeof(msg), sig, siglen))
			return NULL;
		w->ok++;
	}
	p11->C_CloseSession(h);
	return NULL;
}

Test(module, four_threads_sign_at_once)
{
	CK_SESSION_HANDLE h = open_session(0);
	pthread_t th[4];
	struct worker w[4] = { { &cases[1], 0 }, { &cases[9], 0 }, { &cases[12], 0 },
	                       { &cases[0], 0 } };

	login(h);
	for (int i = 0; i < 4; i++)
		cr_assert_eq(pthread_create(&th[i], NULL, worker_main, &w[i]), 0);
	for (int i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		cr_assert_eq(w[i].ok, 25, "worker %d signed %d", i, w[i].ok);
	}
	cr_assert_eq(fakegw_sign_count(fg), 100);
}

/* ---- codes PKCS#11 names (issue 14: pkcs11test and a probe) ---- */

Test(module, legacy_parallel_functions)
{
	CK_SESSION_HANDLE h = open_session(0);

	cr_assert_eq(p11->C_GetFunctionStatus(h), CKR_FUNCTION_NOT_PARALLEL);
	cr_assert_eq(p11->C_CancelFunction(h), CKR_FUNCTION_NOT_PARALLEL);
	cr_assert_eq(p11->C_GetFunctionStatus(4242), CKR_SESSION_HANDLE_INVALID);
	cr_assert_eq(p11->C_CancelFunction(4242), CKR_SESSION_HANDLE_INVALID);
}

Test(module, no_rng)
{
	CK_SESSION_HANDLE h = open_session(0);
	CK_TOKEN_INFO ti;
	uint8_t buf[16] = { 0 };

	cr_assert_eq(p11->C_GetTokenInfo(SEALGATE_SLOT_ID, &ti), CKR_OK);
	cr_assert_eq(ti.flags & CKF_RNG, 0);
	cr_assert_eq(p11->C_GenerateRandom(h, buf, sizeof(buf)), CKR_RANDOM_NO_RNG);
	cr_assert_eq(p11->C_SeedRandom(h, buf, sizeof(buf)), CKR_RANDOM_NO_RNG);
	cr_assert_eq(p11->C_GenerateRandom(4242, buf, sizeof(buf)), CKR_SESSION_HANDLE_INVALID);
}

Test(module, so_login)
{
	CK_SESSION_HANDLE rw = open_session(CKF_RW_SESSION), ro;
	unsigned logins = fakegw_login_count(fg);

	/* A valid user type with no PIN on this token; never sent. */
	cr_assert_eq(p11->C_Login(rw, CKU_SO, (CK_UTF8CHAR_PTR)FAKE_PIN, strlen(FAKE_PIN)),
	             CKR_PIN_INCORRECT);
	cr_assert_eq(p11->C_Login(rw, CKU_SO, NULL, 0), CKR_PIN_INCORRECT);
	cr_assert_eq(fakegw_login_count(fg), logins);
	/* An SO has only R/W sessions. */
	ro = open_session(0);
	cr_assert_eq(p11->C_Login(rw, CKU_SO, (CK_UTF8CHAR_PTR)"x", 1), CKR_SESSION_READ_ONLY_EXISTS);
	cr_assert_eq(p11->C_CloseSession(ro), CKR_OK);
	login(rw);
	cr_assert_eq(p11->C_Login(rw, CKU_SO, (CK_UTF8CHAR_PTR)"x", 1),
	             CKR_USER_ANOTHER_ALREADY_LOGGED_IN);
	cr_assert_eq(p11->C_Login(rw, 42, (CK_UTF8CHAR_PTR)"x", 1), CKR_USER_TYPE_INVALID);
	cr_assert_eq(fakegw_login_count(fg), logins + 1);
}

/* Runs C_Login with fd 2 sent to a file; returns what the module wrote. */
static CK_RV
login_capturing_stderr(CK_SESSION_HANDLE h, const char *pin, char *out, size_t outlen)
{
	FILE *tmp = tmpfile();
	int saved = dup(2);
	size_t n;
	CK_RV rv;

	cr_assert_not_null(tmp);
	cr_assert_geq(saved, 0);
	fflush(stderr);
	cr_assert_geq(dup2(fileno(tmp), 2), 0);
	rv = p11->C_Login(h, CKU_USER, (CK_UTF8CHAR_PTR)pin, strlen(pin));
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	rewind(tmp);
	n = fread(out, 1, outlen - 1, tmp);
	out[n] = '\0';
	fclose(tmp);
	return rv;
}

Test(module, login_without_an_account_says_why)
{
	CK_SESSION_HANDLE h;
	CK_OBJECT_HANDLE o[4];
	char err[2048];

	fakegw_set_no_account(fg, true);
	cr_assert_eq(p11->C_Finalize(NULL), CKR_OK);
	setenv("SEALGATE_DEBUG", "1", 1);
	init_module();
	h = open_session(0);
	/* Not CKR_USER_TYPE_INVALID: CKU_USER is a valid type. */
	cr_assert_eq(login_capturing_stderr(h, FAKE_PIN, err, sizeof(err)), CKR_PIN_INCORRECT);
	cr_assert_not_null(strstr(err, "SEALGATE_USER is not set"), "stderr: %s", err);
	cr_assert_not_null(strstr(err, "OS login 'tester' is not a sealgate account"), "stderr: %s",
	                   err);
	cr_assert_null(strstr(err, FAKE_PIN));
	/* Nothing to see: an empty token, not an error C_FindObjectsInit
	 * has no code for; changing a password fails as a login does. */
	cr_assert_eq(find(h, NULL, 0, o, 4), 0);
	cr_assert_eq(p11->C_SetPIN(h, (CK_UTF8CHAR_PTR)FAKE_PIN, strlen(FAKE_PIN),
	                           (CK_UTF8CHAR_PTR)"new", 3), CKR_PIN_INCORRECT);

	/* Named, but not an account this OS user may use. */
	cr_assert_eq(p11->C_Finalize(NULL), CKR_OK);
	setenv("SEALGATE_USER", "stranger", 1);
	init_module();
	h = open_session(0);
	cr_assert_eq(login_capturing_stderr(h, FAKE_PIN, err, sizeof(err)), CKR_PIN_INCORRECT);
	cr_assert_not_null(strstr(err, "may not act as sealgate account 'stranger'"), "stderr: %s",
	                   err);
	unsetenv("SEALGATE_USER");
	unsetenv("SEALGATE_DEBUG");
}

Test(module, object_size)
{
	CK_SESSION_HANDLE h = open_session(0);
	CK_OBJECT_HANDLE cert = find_obj(h, "contract", CKO_CERTIFICATE);
	CK_OBJECT_HANDLE pub = find_obj(h, "official", CKO_PUBLIC_KEY), priv;
	unsigned char *der = NULL;
	int derlen = i2d_X509(fakegw_cert(fg, "contract"), &der);
	CK_ULONG size = 0;

	OPENSSL_free(der);
	cr_assert_eq(p11->C_GetObjectSize(h, cert, &size), CKR_OK);
	cr_assert_gt(size, (CK_ULONG)derlen);           /* the DER and the rest */
	cr_assert_lt(size, (CK_ULONG)derlen + 4096);
	size = 0;
	cr_assert_eq(p11->C_GetObjectSize(h, pub, &size), CKR_OK);
	cr_assert_gt(size, 67);                         /* at least the EC point */
	cr_assert_eq(p11->C_GetObjectSize(h, 4242, &size), CKR_OBJECT_HANDLE_INVALID);
	cr_assert_eq(p11->C_GetObjectSize(h, cert, NULL), CKR_ARGUMENTS_BAD);
	login(h);
	priv = find_obj(h, "contract", CKO_PRIVATE_KEY);
	size = 0;
	cr_assert_eq(p11->C_GetObjectSize(h, priv, &size), CKR_OK);
	cr_assert_gt(size, 256);                        /* the modulus at least */
	cr_assert_eq(p11->C_Logout(h), CKR_OK);
	cr_assert_eq(p11->C_GetObjectSize(h, priv, &size), CKR_OBJECT_HANDLE_INVALID);
}

/* Raw ECDSA verification of r || s over an input OpenSSL truncates to the
 * order's length itself. */
static bool
verify_ecdsa_raw(const char *seal, const uint8_t *in, size_t inlen, const uint8_t *sig,
                 size_t siglen)
{
	EVP_PKEY *pub = X509_get0_pubkey(fakegw_cert(fg, seal));
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(pub, NULL);
	ECDSA_SIG *es = ECDSA_SIG_new();
	unsigned char der[256], *p = der;
	int derlen;
	bool ok;

	ECDSA_SIG_set0(es, BN_bin2bn(sig, (int)siglen / 2, NULL),
	               BN_bin2bn(sig + siglen / 2, (int)siglen / 2, NULL));
	derlen = i2d_ECDSA_SIG(es, &p);
	ok = EVP_PKEY_verify_init(ctx) == 1 &&
	     EVP_PKEY_verify(ctx, der, (size_t)derlen, in, inlen) == 1;
	ECDSA_SIG_free(es);
	EVP_PKEY_CTX_free(ctx);
	return ok;
}

Test(module, ecdsa_input_longer_than_the_key_is_truncated)
{
	CK_SESSION_HANDLE h = open_session(0);
	CK_OBJECT_HANDLE key;
	struct fakegw_last_sign last;
	uint8_t in[100], sig[64];
	CK_ULONG siglen;

	for (size_t i = 0; i < sizeof(in); i++)
		in[i] = (uint8_t)(i * 13 + 1);
	login(h);
	key = find_obj(h, "official", CKO_PRIVATE_KEY);
	/* A SHA-512 hash on P-256, and a longer input: the leftmost 256 bits. */
	for (size_t len = 64; len <= sizeof(in); len += sizeof(in) - 64) {
		cr_assert_eq(sign_init(h, key, CKM_ECDSA, NULL, 0), CKR_OK);
		siglen = sizeof(sig);
		cr_assert_eq(p11->C_Sign(h, in, len, sig, &siglen), CKR_OK, "len %zu", len);
		cr_assert_eq(siglen, 64);
		fakegw_last_sign(fg, &last);
		cr_assert_eq(last.data_size, 32);
		cr_assert_eq(last.data_len, 32);
		cr_assert(verify_ecdsa_raw("official", in, 32, sig, siglen));
		cr_assert(verify_ecdsa_raw("official", in, len, sig, siglen));
	}
}

/* ---- verification in the module ---- */

/* Signs c over msg through the module (logged in) into sig. */
static CK_ULONG
module_sign(CK_SESSION_HANDLE h, const struct sigcase *c, uint8_t *in, size_t inlen,
            uint8_t *sig)
{
	CK_OBJECT_HANDLE key = find_obj(h, c->seal, CKO_PRIVATE_KEY);
	CK_RSA_PKCS_PSS_PARAMS pp;
	CK_ULONG siglen = 512;

	if (c->pss)
		pss_params(c, &pp);
	cr_assert_eq(sign_init(h, key, c->mech, c->pss ? &pp : NULL, c->pss ? sizeof(pp) : 0),
	             CKR_OK);
	cr_assert_eq(p11->C_Sign(h, in, inlen, sig, &siglen), CKR_OK, "mech 0x%lx", c->mech);
	return siglen;
}

static CK_RV
verify_init(CK_SESSION_HANDLE h, const struct sigcase *c, CK_OBJECT_HANDLE key)
{
	CK_RSA_PKCS_PSS_PARAMS pp;
	CK_MECHANISM m = { c->mech, NULL, 0 };

	if (c->pss) {
		pss_params(c, &pp);
		m.pParameter = &pp;
		m.ulParameterLen = sizeof(pp);
	}
	return p11->C_VerifyInit(h, &m, key);
}

Test(module, verify_what_the_module_signed)
{
	CK_SESSION_HANDLE h = open_session(0);
	uint8_t msg[3000], in[3100], sig[512];
	CK_ULONG siglen;
	size_t inlen;
	unsigned requests;

	for (size_t i = 0; i < sizeof(msg); i++)
		msg[i] = (uint8_t)(i * 5 + 3);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct sigcase *c = &cases[i];
		CK_OBJECT_HANDLE pub;

		login(h);
		inlen = token_input(c, msg, sizeof(msg), in);
		siglen = module_sign(h, c, in, inlen, sig);
		cr_assert_eq(p11->C_Logout(h), CKR_OK);
		/* Anyone may verify: no login, and nothing goes to the gateway. */
		pub = find_obj(h, c->seal, CKO_PUBLIC_KEY);
		requests = fakegw_request_count(fg);

		cr_assert_eq(verify_init(h, c, pub), CKR_OK, "mech 0x%lx", c->mech);
		cr_assert_eq(p11->C_Verify(h, in, inlen, sig, siglen), CKR_OK, "mech 0x%lx", c->mech);
		/* Multi-part, in three pieces. */
		cr_assert_eq(verify_init(h, c, pub), CKR_OK);
		cr_assert_eq(p11->C_VerifyUpdate(h, in, inlen / 3), CKR_OK);
		cr_assert_eq(p11->C_VerifyUpdate(h, in + inlen / 3, inlen / 2 - inlen / 3), CKR_OK);
		cr_assert_eq(p11->C_VerifyUpdate(h, in + inlen / 2, inlen - inlen / 2), CKR_OK);
		cr_assert_eq(p11->C_VerifyFinal(h, sig, siglen), CKR_OK, "mech 0x%lx", c->mech);
		/* A flipped bit in the signature, then in the data. */
		sig[siglen / 2] ^= 0x10;
		cr_assert_eq(verify_init(h, c, pub), CKR_OK);
		cr_assert_eq(p11->C_Verify(h, in, inlen, sig, siglen), CKR_SIGNATURE_INVALID,
		             "mech 0x%lx", c->mech);
		sig[siglen / 2] ^= 0x10;
		in[0] ^= 0x01;
		cr_assert_eq(verify_init(h, c, pub), CKR_OK);
		cr_assert_eq(p11->C_Verify(h, in, inlen, sig, siglen), CKR_SIGNATURE_INVALID,
		             "mech 0x%lx", c->mech);
		in[0] ^= 0x01;
		/* A signature of the wrong length is refused on its length;
		 * the operation ends either way. */
		cr_assert_eq(verify_init(h, c, pub), CKR_OK);
		cr_assert_eq(p11->C_Verify(h, in, inlen, sig, siglen - 1), CKR_SIGNATURE_LEN_RANGE);
		cr_assert_eq(p11->C_Verify(h, in, inlen, sig, siglen), CKR_OPERATION_NOT_INITIALIZED);
		cr_assert_eq(fakegw_request_count(fg), requests, "mech 0x%lx asked the gateway",
		             c->mech);
	}
}

Test(module, verify_a_truncated_ecdsa_input)
{
	CK_SESSION_HANDLE h = open_session(0);
	CK_OBJECT_HANDLE pub;
	uint8_t in[100], sig[64];
	CK_ULONG siglen;

	for (size_t i = 0; i < sizeof(in); i++)
		in[i] = (uint8_t)(i + 40);
	login(h);
	siglen = module_sign(h, &cases[8], in, 32, sig);     /* CKM_ECDSA over 32 bytes */
	pub = find_obj(h, "official", CKO_PUBLIC_KEY);
	/* The same signature holds for any input that starts with them. */
	cr_assert_eq(verify_init(h, &cases[8], pub), CKR_OK);
	cr_assert_eq(p11->C_Verify(h, in, sizeof(in), sig, siglen), CKR_OK);
	in[31] ^= 1;
	cr_assert_eq(verify_init(h, &cases[8], pub), CKR_OK);
	cr_assert_eq(p11->C_Verify(h, in, sizeof(in), sig, siglen), CKR_SIGNATURE_INVALID);
}

Test(module, verify_init_checks)
{
	CK_SESSION_HANDLE h = open_session(0);
	CK_OBJECT_HANDLE cert, pub, ecpub, invpub, priv;
	CK_MECHANISM m = { CKM_SHA256_RSA_PKCS, NULL, 0 };
	CK_MECHANISM ecdsa256 = { CKM_ECDSA_SHA256, NULL, 0 };
	uint8_t data[32] = { 0 }, sig[256] = { 0 };

	cert = find_obj(h, "contract", CKO_CERTIFICATE);
	pub = find_obj(h, "contract", CKO_PUBLIC_KEY);
	ecpub = find_obj(h, "official", CKO_PUBLIC_KEY);
	invpub = find_obj(h, "invoice", CKO_PUBLIC_KEY);
	cr_assert_eq(p11->C_VerifyInit(h, &m, cert), CKR_KEY_HANDLE_INVALID);
	cr_assert_eq(p11->C_VerifyInit(h, &m, 4242), CKR_KEY_HANDLE_INVALID);
	cr_assert_eq(p11->C_VerifyInit(h, &m, ecpub), CKR_KEY_TYPE_INCONSISTENT);
	cr_assert_eq(p11->C_VerifyInit(h, &ecdsa256, invpub), CKR_MECHANISM_INVALID);
	cr_assert_eq(p11->C_VerifyInit(h, NULL, pub), CKR_ARGUMENTS_BAD);
	cr_assert_eq(p11->C_VerifyInit(4242, &m, pub), CKR_SESSION_HANDLE_INVALID);
	cr_assert_eq(p11->C_Verify(h, data, sizeof(data), sig, 256), CKR_OPERATION_NOT_INITIALIZED);
	cr_assert_eq(p11->C_VerifyInit(h, &m, pub), CKR_OK);
	cr_assert_eq(p11->C_VerifyInit(h, &m, pub), CKR_OPERATION_ACTIVE);
	cr_assert_eq(p11->C_SessionCancel(h, CKF_VERIFY), CKR_OK);
	cr_assert_eq(p11->C_VerifyFinal(h, sig, 256), CKR_OPERATION_NOT_INITIALIZED);
	cr_assert_eq(p11->C_VerifyInit(h, &m, pub), CKR_OK);
	cr_assert_eq(p11->C_Verify(h, data, sizeof(data), NULL, 256), CKR_ARGUMENTS_BAD);
	cr_assert_eq(p11->C_VerifyInit(h, &m, pub), CKR_OK);
	cr_assert_eq(p11->C_VerifyUpdate(h, data, 16), CKR_OK);
	cr_assert_eq(p11->C_Verify(h, data, 16, sig, 256), CKR_OPERATION_ACTIVE);
	/* A verification and a signature can run side by side. */
	login(h);
	priv = find_obj(h, "contract", CKO_PRIVATE_KEY);
	cr_assert_eq(p11->C_VerifyInit(h, &m, priv), CKR_KEY_FUNCTION_NOT_PERMITTED);
	cr_assert_eq(p11->C_VerifyInit(h, &m, pub), CKR_OK);
	cr_assert_eq(p11->C_SignInit(h, &m, priv), CKR_OK);
	cr_assert_eq(p11->C_CloseSession(h), CKR_OK);
}

/* ---- slot events ---- */

static CK_RV
event_now(CK_SLOT_ID *slot)
{
	*slot = 0;
	return p11->C_WaitForSlotEvent(CKF_DONT_BLOCK, slot, NULL);
}

Test(module, slot_events_without_blocking)
{
	CK_SLOT_ID slot;
	CK_ULONG n = 1;

	cr_assert_eq(p11->C_WaitForSlotEvent(CKF_DONT_BLOCK, NULL, NULL), CKR_ARGUMENTS_BAD);
	cr_assert_eq(p11->C_WaitForSlotEvent(CKF_DONT_BLOCK, &slot, (void *)1), CKR_ARGUMENTS_BAD);
	cr_assert_eq(p11->C_GetSlotList(CK_TRUE, &slot, &n), CKR_OK);
	cr_assert_eq(event_now(&slot), CKR_NO_EVENT);

	/* The gateway gone: the token is pulled, once. */
	fakegw_stop(fg);
	cr_assert_eq(event_now(&slot), CKR_OK);
	cr_assert_eq(slot, SEALGATE_SLOT_ID);
	cr_assert_eq(event_now(&slot), CKR_NO_EVENT);
	/* Back (the same run): inserted again. */
	cr_assert_eq(fakegw_start(fg, "run-1"), 0);
	cr_assert_eq(event_now(&slot), CKR_OK);
	cr_assert_eq(slot, SEALGATE_SLOT_ID);
	cr_assert_eq(event_now(&slot), CKR_NO_EVENT);
	/* The backend token out and in. */
	fakegw_set_token_present(fg, false);
	cr_assert_eq(event_now(&slot), CKR_OK);
	cr_assert_eq(event_now(&slot), CKR_NO_EVENT);
	fakegw_set_token_present(fg, true);
	cr_assert_eq(event_now(&slot), CKR_OK);
	cr_assert_eq(event_now(&slot), CKR_NO_EVENT);
	/* A restart between two polls: present before and after, but the
	 * sessions are gone, so it is an event. */
	fakegw_stop(fg);
	cr_assert_eq(fakegw_start(fg, "run-2"), 0);
	cr_assert_eq(event_now(&slot), CKR_OK);
	cr_assert_eq(event_now(&slot), CKR_NO_EVENT);
	/* Other functions reporting the slot take no event away. */
	fakegw_set_token_present(fg, false);
	n = 1;
	cr_assert_eq(p11->C_GetSlotList(CK_TRUE, &slot, &n), CKR_OK);
	cr_assert_eq(n, 0);
	cr_assert_eq(event_now(&slot), CKR_OK);
}

Test(module, first_wait_measures_from_now)
{
	CK_SLOT_ID slot;

	/* Nothing reported yet: the first call sets the baseline. */
	cr_assert_eq(event_now(&slot), CKR_NO_EVENT);
	fakegw_set_token_present(fg, false);
	cr_assert_eq(event_now(&slot), CKR_OK);
}

struct waiter {
	CK_FLAGS flags;
	CK_SLOT_ID slot;
	CK_RV rv;
	int done;
};

static void *
waiter_main(void *arg)
{
	struct waiter *w = arg;

	w->rv = p11->C_WaitForSlotEvent(w->flags, &w->slot, NULL);
	__atomic_store_n(&w->done, 1, __ATOMIC_RELEASE);
	return NULL;
}

/* Starts a blocking waiter and returns once it has polled the gateway
 * (or returned at once, which the caller's assertions then catch). */
static void
start_waiter(pthread_t *th, struct waiter *w)
{
	unsigned hellos = fakegw_hello_count(fg);

	memset(w, 0, sizeof(*w));
	cr_assert_eq(pthread_create(th, NULL, waiter_main, w), 0);
	while (!__atomic_load_n(&w->done, __ATOMIC_ACQUIRE) && fakegw_hello_count(fg) == hellos)
		usleep(1000);
}

Test(module, blocking_wait_returns_the_event)
{
	CK_SLOT_ID slot;
	CK_ULONG n = 1;
	pthread_t th;
	struct waiter w;

	cr_assert_eq(p11->C_GetSlotList(CK_TRUE, &slot, &n), CKR_OK);
	start_waiter(&th, &w);
	fakegw_set_token_present(fg, false);
	pthread_join(th, NULL);
	cr_assert_eq(w.rv, CKR_OK);
	cr_assert_eq(w.slot, SEALGATE_SLOT_ID);
	/* The gateway gone while waiting for the token back: no event
	 * (absent either way), then the token back. */
	start_waiter(&th, &w);
	fakegw_stop(fg);
	cr_assert_eq(fakegw_start(fg, "run-1"), 0);
	fakegw_set_token_present(fg, true);
	pthread_join(th, NULL);
	cr_assert_eq(w.rv, CKR_OK);
	cr_assert_eq(event_now(&slot), CKR_NO_EVENT);
}

Test(module, finalize_wakes_a_blocked_waiter)
{
	CK_SLOT_ID slot;
	CK_ULONG n = 1;
	pthread_t th;
	struct waiter w;

	cr_assert_eq(p11->C_GetSlotList(CK_TRUE, &slot, &n), CKR_OK);
	start_waiter(&th, &w);
	cr_assert_eq(p11->C_Finalize(NULL), CKR_OK);
	pthread_join(th, NULL);
	cr_assert_eq(w.rv, CKR_CRYPTOKI_NOT_INITIALIZED);
	/* And a new C_Initialize has its own events. */
	init_module();
	cr_assert_eq(event_now(&slot), CKR_NO_EVENT);
}
