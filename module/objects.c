/*
 * The token's objects: per seal a certificate, a public key and (after
 * login) a private key, built from the gateway's `seals` reply. Stable
 * object handles, attribute values with the PKCS#11 size and error
 * conventions, and C_FindObjects* template matching.
 */
#include "sgm.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/objects.h>
#include <openssl/x509.h>

#define SGM_LABEL_MAX   1024
#define SGM_CERT_MAX    (64u * 1024u)
#define SGM_NAME_DER_MAX (8u * 1024u)

static const CK_OBJECT_CLASS sgm_classes[] = { CKO_CERTIFICATE, CKO_PUBLIC_KEY, CKO_PRIVATE_KEY };

/* ---- seals ---- */

static void
seal_clear(struct sgm_seal *s)
{
	free(s->id);
	free(s->label);
	free(s->kind);
	free(s->mfa);
	free(s->ckaid.p);
	free(s->cert.p);
	free(s->subject.p);
	free(s->issuer.p);
	free(s->serial.p);
	free(s->modulus.p);
	free(s->pubexp.p);
	free(s->ec_params.p);
	free(s->ec_point.p);
	free(s->spki.p);
	free(s->mechs);
	memset(s, 0, sizeof(*s));
}

void
sgm_seals_free(struct sgm_seal *seals, size_t n)
{
	for (size_t i = 0; i < n; i++)
		seal_clear(&seals[i]);
	free(seals);
}

static int
dup_str(const json_t *o, const char *key, bool required, size_t max, const char *dflt,
        char **out)
{
	const char *s = NULL;
	char err[128];

	if (sg_get_str(o, key, required, &s, max, err, sizeof(err)) < 0) {
		sgm_debug("seals: %s", err);
		return -1;
	}
	*out = strdup(s != NULL ? s : dflt);
	return *out != NULL ? 0 : -1;
}

static int
get_bytes(const json_t *o, const char *key, bool required, size_t max, struct sgm_bytes *b)
{
	char err[128];

	if (sg_get_bytes(o, key, required, &b->p, &b->len, max, err, sizeof(err)) < 0) {
		sgm_debug("seals: %s", err);
		return -1;
	}
	return 0;
}

/* Field size of a named curve from its DER OID, 0 if unknown. */
static CK_ULONG
ec_field_bits(const struct sgm_bytes *params)
{
	const unsigned char *p = params->p;
	ASN1_OBJECT *oid;
	EC_GROUP *g = NULL;
	CK_ULONG bits = 0;
	int nid;

	if (p == NULL || params->len == 0 || params->len > LONG_MAX)
		return 0;
	oid = d2i_ASN1_OBJECT(NULL, &p, (long)params->len);
	if (oid == NULL)
		return 0;
	nid = OBJ_obj2nid(oid);
	if (nid != NID_undef)
		g = EC_GROUP_new_by_curve_name(nid);
	if (g != NULL)
		bits = (CK_ULONG)EC_GROUP_get_degree(g);
	EC_GROUP_free(g);
	ASN1_OBJECT_free(oid);
	return bits;
}

/* SubjectPublicKeyInfo from the certificate, for CKA_PUBLIC_KEY_INFO. */
static void
cert_spki(struct sgm_seal *s)
{
	const unsigned char *p = s->cert.p;
	unsigned char *der = NULL;
	X509 *x;
	int n;

	if (s->cert.len == 0 || s->cert.len > LONG_MAX)
		return;
	x = d2i_X509(NULL, &p, (long)s->cert.len);
	if (x == NULL)
		return;
	n = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(x), &der);
	if (n > 0) {
		s->spki.p = malloc((size_t)n);
		if (s->spki.p != NULL) {
			memcpy(s->spki.p, der, (size_t)n);
			s->spki.len = (size_t)n;
		}
	}
	OPENSSL_free(der);
	X509_free(x);
}

static int
seal_parse(const json_t *o, struct sgm_seal *s)
{
	const char *kt = NULL;
	json_t *mechs;
	int64_t v;
	char err[128];
	size_t i;

	memset(s, 0, sizeof(*s));
	s->uses_left = s->quota_left = -1;
	s->available = true;
	if (!json_is_object(o) ||
	    dup_str(o, "id", true, SG_NAME_MAX, "", &s->id) < 0 || s->id[0] == '\0' ||
	    dup_str(o, "label", false, SGM_LABEL_MAX, s->id, &s->label) < 0 ||
	    dup_str(o, "kind", false, SG_NAME_MAX, "", &s->kind) < 0 ||
	    dup_str(o, "mfa", false, SG_NAME_MAX, "login", &s->mfa) < 0 ||
	    get_bytes(o, "ckaid", true, 255, &s->ckaid) < 0 ||
	    get_bytes(o, "cert", true, SGM_CERT_MAX, &s->cert) < 0 ||
	    get_bytes(o, "subject", true, SGM_NAME_DER_MAX, &s->subject) < 0 ||
	    get_bytes(o, "issuer", true, SGM_NAME_DER_MAX, &s->issuer) < 0 ||
	    get_bytes(o, "serial", true, 64, &s->serial) < 0 ||
	    sg_get_str(o, "key_type", true, &kt, 16, err, sizeof(err)) < 0 ||
	    sg_get_bool(o, "available", false, &s->available, err, sizeof(err)) < 0)
		return -1;
	v = 0;
	if (sg_get_int(o, "bits", false, 0, 16384, &v, err, sizeof(err)) < 0)
		return -1;
	s->bits = (CK_ULONG)v;
	/* A code per signature: the app must C_Login(CKU_CONTEXT_SPECIFIC)
	 * after each C_SignInit, as with a qualified-signature card. */
	s->always_auth = strcmp(s->mfa, "per_signature") == 0;
	v = -1;
	if (sg_get_int(o, "uses_left", false, -1, LONG_MAX, &v, err, sizeof(err)) < 0)
		return -1;
	s->uses_left = (CK_LONG)v;
	v = -1;
	if (sg_get_int(o, "quota_left", false, -1, LONG_MAX, &v, err, sizeof(err)) < 0)
		return -1;
	s->quota_left = (CK_LONG)v;

	if (strcmp(kt, "rsa") == 0) {
		s->key_type = SGM_KEY_RSA;
		if (get_bytes(o, "modulus", true, SGM_SIG_MAX + 1, &s->modulus) < 0 ||
		    get_bytes(o, "public_exponent", true, 16, &s->pubexp) < 0)
			return -1;
		/* An unsigned big-endian integer: drop sign padding. */
		i = 0;
		while (i < s->modulus.len && s->modulus.p[i] == 0)
			i++;
		memmove(s->modulus.p, s->modulus.p + i, s->modulus.len - i);
		s->modulus.len -= i;
		if (s->modulus.len < 64 || s->modulus.len > SGM_SIG_MAX) {
			sgm_debug("seals: %s: RSA modulus of %zu bytes", s->id, s->modulus.len);
			return -1;
		}
		s->sig_len = s->modulus.len;
		s->bits = s->modulus.len * 8;
		for (unsigned char top = s->modulus.p[0]; !(top & 0x80); top <<= 1)
			s->bits--;
	} else if (strcmp(kt, "ec") == 0 || strcmp(kt, "ed25519") == 0) {
		if (get_bytes(o, "ec_params", true, 128, &s->ec_params) < 0 ||
		    get_bytes(o, "ec_point", true, 256, &s->ec_point) < 0)
			return -1;
		if (strcmp(kt, "ec") == 0) {
			CK_ULONG fb = ec_field_bits(&s->ec_params);
			s->key_type = SGM_KEY_EC;
			if (fb != 0)
				s->bits = fb;
			if (s->bits == 0 || s->bits > 1024) {
				sgm_debug("seals: %s: unknown curve", s->id);
				return -1;
			}
			s->sig_len = 2 * ((s->bits + 7) / 8);
		} else {
			s->key_type = SGM_KEY_ED25519;
			s->bits = 255;
			s->sig_len = 64;
		}
	} else {
		sgm_debug("seals: %s: unsupported key type \"%s\"", s->id, kt);
		return -1;
	}

	mechs = json_object_get(o, "mechanisms");
	if (!json_is_array(mechs) || json_array_size(mechs) > SGM_MECHS_MAX) {
		sgm_debug("seals: %s: bad mechanisms", s->id);
		return -1;
	}
	s->n_mechs = json_array_size(mechs);
	s->mechs = calloc(s->n_mechs + 1, sizeof(*s->mechs));
	if (s->mechs == NULL)
		return -1;
	for (i = 0; i < s->n_mechs; i++) {
		json_t *m = json_array_get(mechs, i);
		if (!json_is_integer(m) || json_integer_value(m) < 0 ||
		    (unsigned long long)json_integer_value(m) > ULONG_MAX) {
			sgm_debug("seals: %s: bad mechanism", s->id);
			return -1;
		}
		s->mechs[i] = (CK_MECHANISM_TYPE)json_integer_value(m);
	}
	cert_spki(s);
	return 0;
}

static CK_RV
seals_parse(const json_t *reply, struct sgm_seal **out, size_t *n_out)
{
	json_t *arr = json_object_get(reply, "seals");
	struct sgm_seal *v;
	size_t n = 0;

	*out = NULL;
	*n_out = 0;
	if (!json_is_array(arr) || json_array_size(arr) > SGM_SEALS_MAX) {
		sgm_debug("seals reply without a bounded seals array");
		return CKR_DEVICE_ERROR;
	}
	v = calloc(json_array_size(arr) + 1, sizeof(*v));
	if (v == NULL)
		return CKR_HOST_MEMORY;
	for (size_t i = 0; i < json_array_size(arr); i++) {
		bool dup = false;
		/* One malformed seal must not hide the others. */
		if (seal_parse(json_array_get(arr, i), &v[n]) < 0) {
			seal_clear(&v[n]);
			continue;
		}
		for (size_t j = 0; j < n && !dup; j++)
			dup = strcmp(v[j].id, v[n].id) == 0;
		if (dup) {
			sgm_debug("seals: duplicate id %s ignored", v[n].id);
			seal_clear(&v[n]);
			continue;
		}
		n++;
	}
	*out = v;
	*n_out = n;
	return CKR_OK;
}

/* The gateway found no account this OS user may act as (not_allowed). */
static bool
no_account(const json_t *reply)
{
	const char *code = NULL, *msg = NULL;

	(void)sg_reply_is_ok(reply, NULL, &code, &msg);
	if (code == NULL || strcmp(code, "not_allowed") != 0)
		return false;
	sgm_debug("no objects: the gateway has no account for this OS user (%s); set "
	          "SEALGATE_USER to your sealgate account", msg != NULL ? msg : "no reason given");
	return true;
}

CK_RV
sgm_objects_refresh(struct sgm_state *st, uint64_t session_epoch)
{
	uint8_t tok[SG_SESSION_TOKEN_LEN];
	json_t *req = NULL, *reply = NULL;
	struct sgm_seal *seals = NULL, *old;
	size_t n = 0, n_old;
	uint64_t epoch;
	bool have;
	CK_RV rv;

	sgm_lock(st);
	have = sgm_login_token_locked(st, tok);
	sgm_unlock(st);

	for (int attempt = 0; attempt < 2; attempt++) {
		rv = CKR_HOST_MEMORY;
		json_decref(req);
		json_decref(reply);
		reply = NULL;
		req = sg_request_new(SG_OP_SEALS);
		if (req == NULL)
			goto out;
		if (have && sg_set_bytes(req, "session", tok, sizeof(tok)) < 0)
			goto out;
		if (st->user != NULL && json_object_set_new(req, "user", json_string(st->user)) != 0)
			goto out;
		rv = sgm_client_call(st, req, true, &reply, &epoch);
		sgm_json_wipe_str(req, "session");
		if (rv != CKR_OK)
			goto out;
		if (epoch != session_epoch) {
			rv = CKR_DEVICE_REMOVED;
			goto out;
		}
		if (sg_reply_is_ok(reply, NULL, NULL, NULL))
			break;
		rv = sgm_reply_rv(reply);
		if (no_account(reply)) {
			/* Nothing this OS user may see: an empty token, which
			 * C_FindObjectsInit can say (CKR_USER_TYPE_INVALID is
			 * no code of its), and why under SEALGATE_DEBUG. */
			json_decref(reply);
			reply = sg_reply_ok();
			rv = CKR_HOST_MEMORY;
			if (reply == NULL || json_object_set_new(reply, "seals", json_array()) != 0)
				goto out;
			break;
		}
		if (!have || rv != CKR_USER_NOT_LOGGED_IN || attempt > 0)
			goto out;
		/* Our login expired at the gateway: forget it, list publicly. */
		sgm_login_invalidate(st, tok);
		have = false;
	}
	rv = seals_parse(reply, &seals, &n);
	if (rv != CKR_OK)
		goto out;
	sgm_lock(st);
	if (st->epoch != session_epoch) {
		rv = CKR_DEVICE_REMOVED;
		old = seals;
		n_old = n;
	} else {
		old = st->seals;
		n_old = st->n_seals;
		st->seals = seals;
		st->n_seals = n;
	}
	sgm_unlock(st);
	sgm_seals_free(old, n_old);
out:
	OPENSSL_cleanse(tok, sizeof(tok));
	json_decref(req);
	json_decref(reply);
	return rv;
}

/* ---- handles ---- */

void
sgm_handles_free(struct sgm_state *st)
{
	for (size_t i = 0; i < st->n_handles; i++)
		free(st->handles[i].seal_id);
	free(st->handles);
	st->handles = NULL;
	st->n_handles = st->cap_handles = 0;
}

void
sgm_handles_retire_private_locked(struct sgm_state *st)
{
	for (size_t i = 0; i < st->n_handles; i++)
		if (st->handles[i].cls == CKO_PRIVATE_KEY)
			st->handles[i].retired = true;
}

/* The handle of (seal, class), assigned on first sight; 0 on no memory. */
static CK_OBJECT_HANDLE
handle_for_locked(struct sgm_state *st, const char *seal_id, CK_OBJECT_CLASS cls)
{
	struct sgm_handle *e;

	for (size_t i = 0; i < st->n_handles; i++) {
		e = &st->handles[i];
		if (!e->retired && e->cls == cls && strcmp(e->seal_id, seal_id) == 0)
			return (CK_OBJECT_HANDLE)i + 1;
	}
	if (st->n_handles == st->cap_handles) {
		size_t cap = st->cap_handles ? st->cap_handles * 2 : 32;
		e = reallocarray(st->handles, cap, sizeof(*e));
		if (e == NULL)
			return 0;
		st->handles = e;
		st->cap_handles = cap;
	}
	e = &st->handles[st->n_handles];
	e->seal_id = strdup(seal_id);
	if (e->seal_id == NULL)
		return 0;
	e->cls = cls;
	e->retired = false;
	st->n_handles++;
	return (CK_OBJECT_HANDLE)st->n_handles;
}

static const struct sgm_seal *
seal_by_id_locked(struct sgm_state *st, const char *id)
{
	for (size_t i = 0; i < st->n_seals; i++)
		if (strcmp(st->seals[i].id, id) == 0)
			return &st->seals[i];
	return NULL;
}

const struct sgm_seal *
sgm_object_lookup_locked(struct sgm_state *st, CK_OBJECT_HANDLE h, CK_OBJECT_CLASS *cls)
{
	const struct sgm_handle *e;

	if (h == CK_INVALID_HANDLE || h > st->n_handles)
		return NULL;
	e = &st->handles[h - 1];
	if (e->retired || (e->cls == CKO_PRIVATE_KEY && !st->logged_in))
		return NULL;
	*cls = e->cls;
	return seal_by_id_locked(st, e->seal_id);
}

/* ---- attributes ---- */

enum attr_res { ATTR_OK, ATTR_SENSITIVE, ATTR_INVALID };

struct attr_val {
	const void *p;
	CK_ULONG len;
	union {
		CK_ULONG ul;
		CK_LONG l;
		CK_BBOOL b;
	} u;
};

static enum attr_res
val_bool(struct attr_val *v, bool b)
{
	v->u.b = b ? CK_TRUE : CK_FALSE;
	v->p = &v->u.b;
	v->len = sizeof(CK_BBOOL);
	return ATTR_OK;
}

static enum attr_res
val_ulong(struct attr_val *v, CK_ULONG ul)
{
	v->u.ul = ul;
	v->p = &v->u.ul;
	v->len = sizeof(CK_ULONG);
	return ATTR_OK;
}

static enum attr_res
val_long(struct attr_val *v, CK_LONG l)
{
	v->u.l = l;
	v->p = &v->u.l;
	v->len = sizeof(CK_LONG);
	return ATTR_OK;
}

static enum attr_res
val_bytes(struct attr_val *v, const void *p, size_t len)
{
	v->p = p;
	v->len = (CK_ULONG)len;
	return ATTR_OK;
}

static enum attr_res
val_str(struct attr_val *v, const char *s)
{
	return val_bytes(v, s, strlen(s));
}

static CK_KEY_TYPE
key_type(const struct sgm_seal *s)
{
	switch (s->key_type) {
	case SGM_KEY_RSA:
		return CKK_RSA;
	case SGM_KEY_EC:
		return CKK_EC;
	default:
		return CKK_EC_EDWARDS;
	}
}

/* Attributes of both key objects. */
static enum attr_res
attr_key(const struct sgm_seal *s, CK_OBJECT_CLASS cls, CK_ATTRIBUTE_TYPE t, struct attr_val *v)
{
	bool rsa = s->key_type == SGM_KEY_RSA;

	switch (t) {
	case CKA_KEY_TYPE:
		return val_ulong(v, key_type(s));
	case CKA_ID:
		return val_bytes(v, s->ckaid.p, s->ckaid.len);
	case CKA_SUBJECT:
		return val_bytes(v, s->subject.p, s->subject.len);
	case CKA_START_DATE:
	case CKA_END_DATE:
		return val_bytes(v, NULL, 0);
	case CKA_DERIVE:
		return val_bool(v, false);
	/* The module cannot know how the key came onto the backend token. */
	case CKA_LOCAL:
		return val_bool(v, false);
	case CKA_KEY_GEN_MECHANISM:
		return val_ulong(v, CK_UNAVAILABLE_INFORMATION);
	case CKA_PUBLIC_KEY_INFO:
		if (s->spki.len == 0)
			return ATTR_INVALID;
		return val_bytes(v, s->spki.p, s->spki.len);
	case CKA_MODULUS:
		return rsa ? val_bytes(v, s->modulus.p, s->modulus.len) : ATTR_INVALID;
	case CKA_PUBLIC_EXPONENT:
		return rsa ? val_bytes(v, s->pubexp.p, s->pubexp.len) : ATTR_INVALID;
	case CKA_MODULUS_BITS:
		return rsa ? val_ulong(v, s->bits) : ATTR_INVALID;
	case CKA_EC_PARAMS:
		return rsa ? ATTR_INVALID : val_bytes(v, s->ec_params.p, s->ec_params.len);
	}
	if (cls == CKO_PUBLIC_KEY) {
		switch (t) {
		case CKA_VERIFY:
			return val_bool(v, true);
		case CKA_ENCRYPT:
		case CKA_VERIFY_RECOVER:
		case CKA_WRAP:
		case CKA_TRUSTED:
			return val_bool(v, false);
		case CKA_EC_POINT:
			return rsa ? ATTR_INVALID : val_bytes(v, s->ec_point.p, s->ec_point.len);
		}
		return ATTR_INVALID;
	}
	switch (t) {
	case CKA_SIGN:
	case CKA_SENSITIVE:
	case CKA_ALWAYS_SENSITIVE:
	case CKA_NEVER_EXTRACTABLE:
		return val_bool(v, true);
	case CKA_DECRYPT:
	case CKA_SIGN_RECOVER:
	case CKA_UNWRAP:
	case CKA_EXTRACTABLE:
	case CKA_WRAP_WITH_TRUSTED:
		return val_bool(v, false);
	case CKA_ALWAYS_AUTHENTICATE:
		return val_bool(v, s->always_auth);
	case CKA_ALLOWED_MECHANISMS:
		return val_bytes(v, s->mechs, s->n_mechs * sizeof(CK_MECHANISM_TYPE));
	case CKA_PRIVATE_EXPONENT:
	case CKA_PRIME_1:
	case CKA_PRIME_2:
	case CKA_EXPONENT_1:
	case CKA_EXPONENT_2:
	case CKA_COEFFICIENT:
		return rsa ? ATTR_SENSITIVE : ATTR_INVALID;
	case CKA_VALUE:
		return ATTR_SENSITIVE;
	}
	return ATTR_INVALID;
}

static enum attr_res
attr_get(const struct sgm_seal *s, CK_OBJECT_CLASS cls, CK_ATTRIBUTE_TYPE t, struct attr_val *v)
{
	memset(v, 0, sizeof(*v));
	/* Common to all three objects. */
	switch (t) {
	case CKA_CLASS:
		return val_ulong(v, cls);
	case CKA_TOKEN:
		return val_bool(v, true);
	case CKA_PRIVATE:
		return val_bool(v, cls == CKO_PRIVATE_KEY);
	case CKA_MODIFIABLE:
	case CKA_COPYABLE:
	case CKA_DESTROYABLE:
		return val_bool(v, false);
	case CKA_LABEL:
		return val_str(v, s->label);
	case CKA_SEALGATE_SEAL_ID:
		return val_str(v, s->id);
	case CKA_SEALGATE_KIND:
		return val_str(v, s->kind);
	case CKA_SEALGATE_USES_LEFT:
		return val_long(v, s->uses_left);
	case CKA_SEALGATE_QUOTA_LEFT:
		return val_long(v, s->quota_left);
	case CKA_SEALGATE_AVAILABLE:
		return val_bool(v, s->available);
	}
	if (cls != CKO_CERTIFICATE)
		return attr_key(s, cls, t, v);
	switch (t) {
	case CKA_CERTIFICATE_TYPE:
		return val_ulong(v, CKC_X_509);
	case CKA_CERTIFICATE_CATEGORY:
		return val_ulong(v, CK_CERTIFICATE_CATEGORY_TOKEN_USER);
	case CKA_TRUSTED:
		return val_bool(v, false);
	case CKA_VALUE:
		return val_bytes(v, s->cert.p, s->cert.len);
	case CKA_SUBJECT:
		return val_bytes(v, s->subject.p, s->subject.len);
	case CKA_ISSUER:
		return val_bytes(v, s->issuer.p, s->issuer.len);
	case CKA_SERIAL_NUMBER:
		return val_bytes(v, s->serial.p, s->serial.len);
	case CKA_ID:
		return val_bytes(v, s->ckaid.p, s->ckaid.len);
	case CKA_PUBLIC_KEY_INFO:
		if (s->spki.len == 0)
			return ATTR_INVALID;
		return val_bytes(v, s->spki.p, s->spki.len);
	case CKA_START_DATE:
	case CKA_END_DATE:
	case CKA_URL:
	case CKA_HASH_OF_SUBJECT_PUBLIC_KEY:
	case CKA_HASH_OF_ISSUER_PUBLIC_KEY:
		return val_bytes(v, NULL, 0);
	case CKA_JAVA_MIDP_SECURITY_DOMAIN:
		return val_ulong(v, 0);
	}
	return ATTR_INVALID;
}

CK_RV
sgm_objects_get_attrs(struct sgm_state *st, CK_SESSION_HANDLE h, CK_OBJECT_HANDLE obj,
                      CK_ATTRIBUTE_PTR templ, CK_ULONG count)
{
	const struct sgm_seal *seal;
	struct sgm_session *s;
	CK_OBJECT_CLASS cls = 0;
	bool sensitive = false, invalid = false, small = false;
	struct attr_val v;
	CK_RV rv;

	/* Uses and quota left change with every approval and signature: a
	 * caller asking for them gets the gateway's answer of now. */
	for (CK_ULONG i = 0; i < count; i++) {
		if (templ[i].type == CKA_SEALGATE_USES_LEFT || templ[i].type == CKA_SEALGATE_QUOTA_LEFT ||
		    templ[i].type == CKA_SEALGATE_AVAILABLE) {
			uint64_t epoch;
			sgm_lock(st);
			rv = sgm_session_check_locked(st, h, &s);
			epoch = rv == CKR_OK ? s->epoch : 0;
			sgm_unlock(st);
			if (rv == CKR_OK)
				(void)sgm_objects_refresh(st, epoch);
			break;
		}
	}

	sgm_lock(st);
	rv = sgm_session_check_locked(st, h, &s);
	if (rv != CKR_OK)
		goto out;
	seal = sgm_object_lookup_locked(st, obj, &cls);
	if (seal == NULL) {
		rv = CKR_OBJECT_HANDLE_INVALID;
		goto out;
	}
	/* Every entry is processed whatever happens to the others. */
	for (CK_ULONG i = 0; i < count; i++) {
		CK_ATTRIBUTE *a = &templ[i];
		switch (attr_get(seal, cls, a->type, &v)) {
		case ATTR_SENSITIVE:
			a->ulValueLen = CK_UNAVAILABLE_INFORMATION;
			sensitive = true;
			break;
		case ATTR_INVALID:
			a->ulValueLen = CK_UNAVAILABLE_INFORMATION;
			invalid = true;
			break;
		case ATTR_OK:
			if (a->pValue == NULL) {
				a->ulValueLen = v.len;
			} else if (a->ulValueLen < v.len) {
				a->ulValueLen = CK_UNAVAILABLE_INFORMATION;
				small = true;
			} else {
				if (v.len > 0)
					memcpy(a->pValue, v.p, v.len);
				a->ulValueLen = v.len;
			}
			break;
		}
	}
	/* PKCS#11 lets any of the three be returned when several apply;
	 * we report them in the order the spec lists them. */
	rv = sensitive ? CKR_ATTRIBUTE_SENSITIVE
	   : invalid   ? CKR_ATTRIBUTE_TYPE_INVALID
	   : small     ? CKR_BUFFER_TOO_SMALL
	               : CKR_OK;
out:
	sgm_unlock(st);
	return rv;
}

/* The attributes whose values make up an object, for C_GetObjectSize. */
static const CK_ATTRIBUTE_TYPE sgm_size_attrs[] = {
	CKA_CLASS, CKA_TOKEN, CKA_PRIVATE, CKA_LABEL, CKA_ID, CKA_SUBJECT, CKA_KEY_TYPE,
	CKA_VALUE, CKA_ISSUER, CKA_SERIAL_NUMBER, CKA_CERTIFICATE_TYPE, CKA_MODULUS,
	CKA_PUBLIC_EXPONENT, CKA_EC_PARAMS, CKA_EC_POINT, CKA_ALLOWED_MECHANISMS,
	CKA_SEALGATE_SEAL_ID, CKA_SEALGATE_KIND,
};

CK_RV
sgm_objects_size(struct sgm_state *st, CK_SESSION_HANDLE h, CK_OBJECT_HANDLE obj,
                 CK_ULONG_PTR size)
{
	const struct sgm_seal *seal;
	struct sgm_session *s;
	CK_OBJECT_CLASS cls = 0;
	struct attr_val v;
	CK_ULONG n = 0;
	CK_RV rv;

	/* PKCS#11 leaves "size" to the token; ours is the bytes of the
	 * object's attribute values, which is what a token would store
	 * (sensitive values are not counted: they are not here). */
	sgm_lock(st);
	rv = sgm_session_check_locked(st, h, &s);
	if (rv != CKR_OK)
		goto out;
	seal = sgm_object_lookup_locked(st, obj, &cls);
	if (seal == NULL) {
		rv = CKR_OBJECT_HANDLE_INVALID;
		goto out;
	}
	for (size_t i = 0; i < sizeof(sgm_size_attrs) / sizeof(sgm_size_attrs[0]); i++)
		if (attr_get(seal, cls, sgm_size_attrs[i], &v) == ATTR_OK)
			n += v.len;
	*size = n;
out:
	sgm_unlock(st);
	return rv;
}

/* ---- find ---- */

void
sgm_find_clear(struct sgm_session *s)
{
	free(s->found);
	s->found = NULL;
	s->n_found = s->pos = 0;
	s->find_active = false;
}

static bool
matches(const struct sgm_seal *seal, CK_OBJECT_CLASS cls, const CK_ATTRIBUTE *templ,
        CK_ULONG count)
{
	struct attr_val v;

	for (CK_ULONG i = 0; i < count; i++) {
		/* Unknown and sensitive attributes match nothing. */
		if (attr_get(seal, cls, templ[i].type, &v) != ATTR_OK)
			return false;
		if (v.len != templ[i].ulValueLen)
			return false;
		if (v.len > 0 && memcmp(v.p, templ[i].pValue, v.len) != 0)
			return false;
	}
	return true;
}

CK_RV
sgm_objects_find_init(struct sgm_state *st, CK_SESSION_HANDLE h, CK_ATTRIBUTE_PTR templ,
                      CK_ULONG count)
{
	struct sgm_session *s;
	CK_OBJECT_HANDLE *found = NULL;
	uint64_t epoch;
	size_t n = 0;
	CK_RV rv;

	for (CK_ULONG i = 0; i < count; i++)
		if (templ[i].pValue == NULL && templ[i].ulValueLen > 0)
			return CKR_ARGUMENTS_BAD;

	sgm_lock(st);
	rv = sgm_session_check_locked(st, h, &s);
	if (rv == CKR_OK && s->find_active)
		rv = CKR_OPERATION_ACTIVE;
	epoch = rv == CKR_OK ? s->epoch : 0;
	sgm_unlock(st);
	if (rv != CKR_OK)
		return rv;

	/* Seals come and go with policy: ask the gateway every time. */
	rv = sgm_objects_refresh(st, epoch);
	if (rv != CKR_OK)
		return rv;

	sgm_lock(st);
	rv = sgm_session_check_locked(st, h, &s);
	if (rv == CKR_OK && s->find_active)
		rv = CKR_OPERATION_ACTIVE;
	if (rv != CKR_OK)
		goto out;
	found = calloc(st->n_seals * 3 + 1, sizeof(*found));
	if (found == NULL) {
		rv = CKR_HOST_MEMORY;
		goto out;
	}
	for (size_t i = 0; i < st->n_seals; i++) {
		/* A seal whose card is out (or whose key is missing) has no
		 * objects, as with a pulled token; they return with the card. */
		if (!st->seals[i].available)
			continue;
		for (size_t c = 0; c < sizeof(sgm_classes) / sizeof(sgm_classes[0]); c++) {
			CK_OBJECT_CLASS cls = sgm_classes[c];
			CK_OBJECT_HANDLE oh;

			if (cls == CKO_PRIVATE_KEY && !st->logged_in)
				continue;
			if (!matches(&st->seals[i], cls, templ, count))
				continue;
			oh = handle_for_locked(st, st->seals[i].id, cls);
			if (oh == 0) {
				rv = CKR_HOST_MEMORY;
				goto out;
			}
			found[n++] = oh;
		}
	}
	s->found = found;
	s->n_found = n;
	s->pos = 0;
	s->find_active = true;
	found = NULL;
out:
	sgm_unlock(st);
	free(found);
	return rv;
}

CK_RV
sgm_objects_find_next(struct sgm_state *st, CK_SESSION_HANDLE h, CK_OBJECT_HANDLE_PTR out,
                      CK_ULONG max, CK_ULONG_PTR count)
{
	struct sgm_session *s;
	CK_OBJECT_CLASS cls;
	CK_ULONG n = 0;
	CK_RV rv;

	sgm_lock(st);
	rv = sgm_session_check_locked(st, h, &s);
	if (rv == CKR_OK && !s->find_active)
		rv = CKR_OPERATION_NOT_INITIALIZED;
	if (rv == CKR_OK) {
		while (n < max && s->pos < s->n_found) {
			CK_OBJECT_HANDLE oh = s->found[s->pos++];
			/* Skip what vanished since the init (a logout). */
			if (sgm_object_lookup_locked(st, oh, &cls) != NULL)
				out[n++] = oh;
		}
		*count = n;
	}
	sgm_unlock(st);
	return rv;
}

CK_RV
sgm_objects_find_final(struct sgm_state *st, CK_SESSION_HANDLE h)
{
	struct sgm_session *s;
	CK_RV rv;

	sgm_lock(st);
	rv = sgm_session_check_locked(st, h, &s);
	if (rv == CKR_OK && !s->find_active)
		rv = CKR_OPERATION_NOT_INITIALIZED;
	if (rv == CKR_OK)
		sgm_find_clear(s);
	sgm_unlock(st);
	return rv;
}
