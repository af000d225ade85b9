/* Unit tests of the session table (gateway/auth.c). */
#include <criterion/criterion.h>
#include <string.h>

#include "auth.h"

/* A one-account stand-in for the store, so these tests link auth.c alone. */
static char alice_hash[256];

int
gw_store_password_get(struct gw_store *st, const char *user, char *hash, size_t hashlen)
{
	(void)st;
	if (strcmp(user, "alice") != 0 || alice_hash[0] == '\0')
		return 0;
	snprintf(hash, hashlen, "%s", alice_hash);
	return 1;
}

Test(auth, check_password)
{
	struct gw_auth *a;

	cr_assert_eq(gw_auth_new(60, &a), 0);
	cr_assert_eq(gw_auth_hash_password("alice-secret", alice_hash, sizeof(alice_hash)), 0);
	cr_assert_eq(gw_auth_check_password(a, NULL, "alice", "alice-secret"), 1);
	cr_assert_eq(gw_auth_check_password(a, NULL, "alice", "alice-secreT"), 0);
	cr_assert_eq(gw_auth_check_password(a, NULL, "alice", ""), 0);
	/* Unknown account: refused, even with the dummy hash's own password. */
	cr_assert_eq(gw_auth_check_password(a, NULL, "mallory", "alice-secret"), 0);
	cr_assert_eq(gw_auth_check_password(a, NULL, "mallory", "sealgate-dummy"), 0);
	gw_auth_free(&a);
}

Test(auth, session_bound_to_uid_and_ended_by_logout)
{
	struct gw_auth *a;
	uint8_t tok[SG_SESSION_TOKEN_LEN], other[SG_SESSION_TOKEN_LEN];
	struct gw_login_info info;

	cr_assert_eq(gw_auth_new(60, &a), 0);
	cr_assert_eq(gw_auth_session_new(a, "alice", 1000, tok), 0);
	cr_assert(gw_auth_session_get(a, tok, sizeof(tok), 1000, &info));
	cr_assert_str_eq(info.user, "alice");
	/* The same token from another uid is worth nothing. */
	cr_assert_not(gw_auth_session_get(a, tok, sizeof(tok), 1001, &info));
	/* A truncated or altered token is unknown. */
	cr_assert_not(gw_auth_session_get(a, tok, sizeof(tok) - 1, 1000, &info));
	memcpy(other, tok, sizeof(tok));
	other[0] ^= 1;
	cr_assert_not(gw_auth_session_get(a, other, sizeof(other), 1000, &info));
	cr_assert_eq(gw_auth_session_count(a), 1);
	/* Nor may another uid end it. */
	gw_auth_session_end(a, tok, sizeof(tok), 1001);
	cr_assert(gw_auth_session_get(a, tok, sizeof(tok), 1000, &info));
	gw_auth_session_end(a, tok, sizeof(tok), 1000);
	cr_assert_not(gw_auth_session_get(a, tok, sizeof(tok), 1000, &info));
	cr_assert_eq(gw_auth_session_count(a), 0);
	gw_auth_free(&a);
	cr_assert_null(a);
}

Test(auth, many_sessions_distinct)
{
	struct gw_auth *a;
	uint8_t toks[300][SG_SESSION_TOKEN_LEN];
	struct gw_login_info info;
	char name[16];

	cr_assert_eq(gw_auth_new(60, &a), 0);
	for (int i = 0; i < 300; i++) {
		snprintf(name, sizeof(name), "u%d", i);
		cr_assert_eq(gw_auth_session_new(a, name, 1000, toks[i]), 0);
	}
	for (int i = 0; i < 300; i++) {
		snprintf(name, sizeof(name), "u%d", i);
		cr_assert(gw_auth_session_get(a, toks[i], SG_SESSION_TOKEN_LEN, 1000, &info));
		cr_assert_str_eq(info.user, name);
	}
	gw_auth_free(&a);
}

Test(auth, password_hash_roundtrip_shape)
{
	char hash[256];

	cr_assert_eq(gw_auth_hash_password("correct horse", hash, sizeof(hash)), 0);
	cr_assert(strncmp(hash, "$argon2id$", 10) == 0, "%s", hash);
	cr_assert_null(strstr(hash, "correct horse"));
}
