/*
 * Text that must be UTF-8 before it is stored or sent: the audit record's
 * strings (PostgreSQL refuses any other bytes, and a refused string would
 * fail the whole batch it is written in) and the JSON the gateway answers
 * with. Bytes from outside (a client's /proc/PID/exe, a token's label)
 * are not always UTF-8: they are escaped, never dropped.
 */
#ifndef GW_UTF8_H
#define GW_UTF8_H

#include <stdbool.h>
#include <stddef.h>

/* Whether s (NUL-terminated; NULL counts as valid) is well-formed UTF-8
 * (RFC 3629: no overlong forms, no surrogates, nothing past U+10FFFF). */
bool gw_utf8_valid(const char *s);

/* Copies src into dst (size > 0) with each byte that is not part of a
 * well-formed UTF-8 character written as the four characters \xHH (hex,
 * lower case), so the copy is UTF-8 and still shows the byte. Cut, when
 * dst is too small, at a character or escape boundary. Returns the length
 * the whole escaped text needs (without the NUL), as snprintf does. */
size_t gw_utf8_escape(char *dst, size_t size, const char *src);

#endif
