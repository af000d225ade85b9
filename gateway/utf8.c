/*
 * UTF-8 validation and escaping (utf8.h): what the gateway does with bytes
 * from outside before they reach the store or a JSON reply.
 */
#include "utf8.h"

#include <string.h>

/* The length of the well-formed UTF-8 character at p (1 to 4), or 0 when
 * the bytes there are not one. */
static size_t
char_len(const unsigned char *p)
{
	unsigned char c = p[0];

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		return (p[1] & 0xc0) == 0x80 ? 2 : 0;
	if (c >= 0xe0 && c <= 0xef) {
		/* E0 needs A0..BF (no overlong form), ED 80..9F (no surrogate) */
		unsigned char lo = c == 0xe0 ? 0xa0 : 0x80, hi = c == 0xed ? 0x9f : 0xbf;

		return p[1] >= lo && p[1] <= hi && (p[2] & 0xc0) == 0x80 ? 3 : 0;
	}
	if (c >= 0xf0 && c <= 0xf4) {
		/* F0 needs 90..BF (no overlong form), F4 80..8F (<= U+10FFFF) */
		unsigned char lo = c == 0xf0 ? 0x90 : 0x80, hi = c == 0xf4 ? 0x8f : 0xbf;

		return p[1] >= lo && p[1] <= hi && (p[2] & 0xc0) == 0x80 &&
		       (p[3] & 0xc0) == 0x80 ? 4 : 0;
	}
	return 0;
}

bool
gw_utf8_valid(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t n;

	if (p == NULL)
		return true;
	while (*p) {
		if ((n = char_len(p)) == 0)
			return false;
		p += n;
	}
	return true;
}

size_t
gw_utf8_escape(char *dst, size_t size, const char *src)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *p = (const unsigned char *)(src ? src : "");
	size_t k = 0, need = 0, n;
	bool full = false;

	while (*p) {
		char esc[4];
		const char *piece;

		n = char_len(p);
		if (n > 0) {
			piece = (const char *)p;
		} else {
			esc[0] = '\\';
			esc[1] = 'x';
			esc[2] = hex[*p >> 4];
			esc[3] = hex[*p & 0xf];
			piece = esc;
		}
		p += n > 0 ? n : 1;
		n = n > 0 ? n : 4;
		need += n;
		if (!full && k + n < size) {
			memcpy(dst + k, piece, n);
			k += n;
		} else {
			full = true;
		}
	}
	if (size > 0)
		dst[k] = '\0';
	return need;
}
