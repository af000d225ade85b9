/*
 * Public definitions of sealgate-pkcs11.so for tools that talk to it:
 * the vendor attributes every seal object (certificate, public key,
 * private key) carries. All are read-only. See docs/module.md.
 */
#ifndef SEALGATE_PKCS11_H
#define SEALGATE_PKCS11_H

#include <p11-kit/pkcs11.h>

/* The seal id from the policy, UTF-8, not NUL-terminated ("contract"). */
#define CKA_SEALGATE_SEAL_ID     (CKA_VENDOR_DEFINED | 0x53470001UL)
/* The seal kind, UTF-8 ("official", "contract", "finance", "invoice" …). */
#define CKA_SEALGATE_KIND        (CKA_VENDOR_DEFINED | 0x53470002UL)
/* Uses left on the caller's current authorization: a CK_LONG, -1 = no
 * limit. As reported by the gateway at the last object refresh
 * (C_FindObjectsInit, C_Login, C_Logout). */
#define CKA_SEALGATE_USES_LEFT   (CKA_VENDOR_DEFINED | 0x53470003UL)
/* Uses left in the tightest quota: a CK_LONG, -1 = no limit. */
#define CKA_SEALGATE_QUOTA_LEFT  (CKA_VENDOR_DEFINED | 0x53470004UL)
/* CK_BBOOL: the key is present on the backend token now. */
#define CKA_SEALGATE_AVAILABLE   (CKA_VENDOR_DEFINED | 0x53470005UL)

/* The module's one slot. */
#define SEALGATE_SLOT_ID         1UL

#endif
