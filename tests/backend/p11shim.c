/*
 * Test-only PKCS#11 module: forwards everything to the real SoftHSM2 and
 * lets a test inject what SoftHSM cannot be made to do on demand — PIN
 * flags (final try, locked), a failing C_Sign that leaves the operation
 * active, a pulled token, a token that numbers its objects anew (two
 * handles swapped, or a find that answers with the wrong one), ECDSA
 * signatures whose r is short (a DER length no s can make up), a key's
 * handle refused at C_SignInit as if its object were gone — and count
 * logins, sessions, signature starts and attribute reads.
 * Controlled through shim_set/shim_get (dlsym on the same dlopen handle).
 */
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>
#include <p11-kit/pkcs11.h>

#define SOFTHSM "/usr/lib/softhsm/libsofthsm2.so"

static void *real_dl;
static CK_FUNCTION_LIST *real;
static CK_FUNCTION_LIST shim;

static long extra_flags;     /* ORed into CK_TOKEN_INFO.flags */
static long fail_sign_rv;    /* one-shot: C_Sign returns this, real op left active */
static long removed;         /* token pulled */
static long logins, opens, closes;
static long swap_a, swap_b;  /* object handles a and b trade numbers ... */
static long swap_find_only;  /* ... everywhere, or only in what C_FindObjects returns */
static long sign_inits;      /* C_SignInit calls that reached the real module */
static long key_finds;       /* C_FindObjectsInit calls for private keys */
static long short_r;         /* the next N signatures: r's top bytes 00 01 (r||s of 64+ bytes) */
static long fail_signinit_rv; /* one-shot: C_SignInit returns this without reaching the module */
static long attr_reads;      /* C_GetAttributeValue calls */
static long find_one_as_two; /* a find for rsa-one (label, CKA_ID 11) asks for rsa-two (12) */

long shim_get(const char *what);
void shim_set(const char *what, long v);
CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR list);

static long *
var(const char *what)
{
	if (!strcmp(what, "extra_flags")) return &extra_flags;
	if (!strcmp(what, "fail_sign_rv")) return &fail_sign_rv;
	if (!strcmp(what, "removed")) return &removed;
	if (!strcmp(what, "logins")) return &logins;
	if (!strcmp(what, "opens")) return &opens;
	if (!strcmp(what, "closes")) return &closes;
	if (!strcmp(what, "swap_a")) return &swap_a;
	if (!strcmp(what, "swap_b")) return &swap_b;
	if (!strcmp(what, "swap_find_only")) return &swap_find_only;
	if (!strcmp(what, "sign_inits")) return &sign_inits;
	if (!strcmp(what, "key_finds")) return &key_finds;
	if (!strcmp(what, "short_r")) return &short_r;
	if (!strcmp(what, "fail_signinit_rv")) return &fail_signinit_rv;
	if (!strcmp(what, "attr_reads")) return &attr_reads;
	if (!strcmp(what, "find_one_as_two")) return &find_one_as_two;
	abort();
}

long
shim_get(const char *what)
{
	return __atomic_load_n(var(what), __ATOMIC_SEQ_CST);
}

void
shim_set(const char *what, long v)
{
	__atomic_store_n(var(what), v, __ATOMIC_SEQ_CST);
}

static CK_RV
s_GetSlotList(CK_BBOOL present, CK_SLOT_ID_PTR list, CK_ULONG_PTR count)
{
	if (present && shim_get("removed")) {
		*count = 0;
		return CKR_OK;
	}
	return real->C_GetSlotList(present, list, count);
}

static CK_RV
s_GetTokenInfo(CK_SLOT_ID slot, CK_TOKEN_INFO_PTR info)
{
	CK_RV rv;

	if (shim_get("removed"))
		return CKR_TOKEN_NOT_PRESENT;
	rv = real->C_GetTokenInfo(slot, info);
	if (rv == CKR_OK)
		info->flags |= (CK_FLAGS)shim_get("extra_flags");
	return rv;
}

static CK_RV
s_Login(CK_SESSION_HANDLE s, CK_USER_TYPE u, CK_UTF8CHAR_PTR pin, CK_ULONG len)
{
	__atomic_add_fetch(&logins, 1, __ATOMIC_SEQ_CST);
	if (shim_get("removed"))
		return CKR_DEVICE_REMOVED;
	return real->C_Login(s, u, pin, len);
}

static CK_RV
s_OpenSession(CK_SLOT_ID slot, CK_FLAGS f, CK_VOID_PTR app, CK_NOTIFY n, CK_SESSION_HANDLE_PTR s)
{
	if (shim_get("removed"))
		return CKR_TOKEN_NOT_PRESENT;
	__atomic_add_fetch(&opens, 1, __ATOMIC_SEQ_CST);
	return real->C_OpenSession(slot, f, app, n, s);
}

static CK_RV
s_CloseSession(CK_SESSION_HANDLE s)
{
	__atomic_add_fetch(&closes, 1, __ATOMIC_SEQ_CST);
	return real->C_CloseSession(s);
}

/* The handle the real module knows for h, as the caller sees it. */
static CK_OBJECT_HANDLE
swapped(CK_OBJECT_HANDLE h)
{
	CK_OBJECT_HANDLE a = (CK_OBJECT_HANDLE)shim_get("swap_a"), b = (CK_OBJECT_HANDLE)shim_get("swap_b");

	if (a == 0 || b == 0)
		return h;
	return h == a ? b : h == b ? a : h;
}

static CK_OBJECT_HANDLE
swapped_in(CK_OBJECT_HANDLE h)
{
	return shim_get("swap_find_only") ? h : swapped(h);
}

/* A find whatever the numbers are: the template itself names the other key. */
static CK_RV
s_FindObjectsInit(CK_SESSION_HANDLE s, CK_ATTRIBUTE_PTR t, CK_ULONG n)
{
	static CK_BYTE two_id = 0x12;
	static char two_label[] = "rsa-two";
	CK_ATTRIBUTE c[16];

	for (CK_ULONG i = 0; i < n; i++)
		if (t[i].type == CKA_CLASS && t[i].ulValueLen == sizeof(CK_OBJECT_CLASS) &&
		    *(CK_OBJECT_CLASS *)t[i].pValue == CKO_PRIVATE_KEY)
			__atomic_add_fetch(&key_finds, 1, __ATOMIC_SEQ_CST);
	if (!shim_get("find_one_as_two") || n > 16)
		return real->C_FindObjectsInit(s, t, n);
	for (CK_ULONG i = 0; i < n; i++) {
		c[i] = t[i];
		if (t[i].type == CKA_LABEL && t[i].ulValueLen == 7 && !memcmp(t[i].pValue, "rsa-one", 7)) {
			c[i].pValue = two_label;
		} else if (t[i].type == CKA_ID && t[i].ulValueLen == 1 && *(CK_BYTE *)t[i].pValue == 0x11) {
			c[i].pValue = &two_id;
		}
	}
	return real->C_FindObjectsInit(s, c, n);
}

static CK_RV
s_FindObjects(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE_PTR out, CK_ULONG max, CK_ULONG_PTR n)
{
	CK_RV rv = real->C_FindObjects(s, out, max, n);

	for (CK_ULONG i = 0; rv == CKR_OK && i < *n && i < max; i++)
		out[i] = swapped(out[i]);
	return rv;
}

static CK_RV
s_GetAttributeValue(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_PTR t, CK_ULONG n)
{
	__atomic_add_fetch(&attr_reads, 1, __ATOMIC_SEQ_CST);
	return real->C_GetAttributeValue(s, swapped_in(o), t, n);
}

static CK_RV
s_SignInit(CK_SESSION_HANDLE s, CK_MECHANISM_PTR m, CK_OBJECT_HANDLE k)
{
	long rv;

	if (shim_get("removed"))
		return CKR_DEVICE_REMOVED;
	rv = __atomic_exchange_n(&fail_signinit_rv, 0, __ATOMIC_SEQ_CST);
	if (rv)
		return (CK_RV)rv;
	__atomic_add_fetch(&sign_inits, 1, __ATOMIC_SEQ_CST);
	return real->C_SignInit(s, m, swapped_in(k));
}

static CK_RV
s_Sign(CK_SESSION_HANDLE s, CK_BYTE_PTR d, CK_ULONG dl, CK_BYTE_PTR sig, CK_ULONG_PTR sl)
{
	long rv;

	if (shim_get("removed"))
		return CKR_DEVICE_REMOVED;
	rv = __atomic_exchange_n(&fail_sign_rv, 0, __ATOMIC_SEQ_CST);
	if (rv && sig)
		return (CK_RV)rv;   /* the real module's operation stays active */
	rv = real->C_Sign(s, d, dl, sig, sl);
	if (rv == CKR_OK && sig && *sl >= 64 && __atomic_load_n(&short_r, __ATOMIC_SEQ_CST) > 0) {
		__atomic_sub_fetch(&short_r, 1, __ATOMIC_SEQ_CST);
		sig[0] = 0;
		sig[1] = 1;
	}
	return (CK_RV)rv;
}

CK_RV
C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR list)
{
	CK_C_GetFunctionList getfl;
	const char *path = getenv("SG_SHIM_REAL");

	if (!real) {
		real_dl = dlopen(path ? path : SOFTHSM, RTLD_NOW | RTLD_LOCAL);
		if (!real_dl)
			return CKR_GENERAL_ERROR;
		getfl = (CK_C_GetFunctionList)dlsym(real_dl, "C_GetFunctionList");
		if (!getfl || getfl(&real) != CKR_OK)
			return CKR_GENERAL_ERROR;
		shim = *real;
		shim.C_GetSlotList = s_GetSlotList;
		shim.C_GetTokenInfo = s_GetTokenInfo;
		shim.C_Login = s_Login;
		shim.C_OpenSession = s_OpenSession;
		shim.C_CloseSession = s_CloseSession;
		shim.C_SignInit = s_SignInit;
		shim.C_FindObjectsInit = s_FindObjectsInit;
		shim.C_FindObjects = s_FindObjects;
		shim.C_GetAttributeValue = s_GetAttributeValue;
		shim.C_Sign = s_Sign;
	}
	*list = &shim;
	return CKR_OK;
}
