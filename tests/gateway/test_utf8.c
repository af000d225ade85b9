/*
 * gateway/utf8.c: what counts as UTF-8 (RFC 3629) and how other bytes are
 * escaped before an audit record is queued (\xHH, cut at a boundary).
 */
#include <criterion/criterion.h>

#include <string.h>

#include "utf8.h"

Test(utf8, valid_and_not)
{
	cr_assert(gw_utf8_valid(NULL));
	cr_assert(gw_utf8_valid(""));
	cr_assert(gw_utf8_valid("/usr/bin/sealctl"));
	cr_assert(gw_utf8_valid("/opt/\xe5\x8d\xb0\xe7\xab\xa0/sign"));       /* 印章 */
	cr_assert(gw_utf8_valid("\xf0\x9f\x94\x8f"));                          /* U+1F50F */
	cr_assert_not(gw_utf8_valid("/tmp/b\xffin"));
	cr_assert_not(gw_utf8_valid("\xc0\xaf"), "an overlong '/'");
	cr_assert_not(gw_utf8_valid("\xed\xa0\x80"), "a surrogate");
	cr_assert_not(gw_utf8_valid("\xf4\x90\x80\x80"), "past U+10FFFF");
	cr_assert_not(gw_utf8_valid("\xe5\x8d"), "a character cut short");
}

Test(utf8, escape)
{
	char out[64];

	cr_assert_eq(gw_utf8_escape(out, sizeof(out), "/tmp/b\xffin/x"), 14);
	cr_assert_str_eq(out, "/tmp/b\\xffin/x");
	cr_assert(gw_utf8_valid(out));
	/* valid characters are kept, each stray byte escaped */
	gw_utf8_escape(out, sizeof(out), "\xe5\x8d\xb0\xe5\x8d/\xc0\xaf");
	cr_assert_str_eq(out, "\xe5\x8d\xb0\\xe5\\x8d/\\xc0\\xaf");
	/* the length asked for, and a cut at an escape's boundary */
	cr_assert_eq(gw_utf8_escape(NULL, 0, "a\xff"), 5);
	cr_assert_eq(gw_utf8_escape(out, 4, "a\xff"), 5);
	cr_assert_str_eq(out, "a");
	cr_assert_eq(gw_utf8_escape(out, 4, "\xe5\x8d\xb0\xe5\x8d\xb0"), 6);
	cr_assert_str_eq(out, "\xe5\x8d\xb0");
}
