/*
 * Fuzz target: the reader of a stamp's incremental update
 * (gateway/stamp/stampcheck.c gw_stamp_parse), which takes untrusted bytes from
 * a client's stamp_prepare. Whatever it accepts must say where it is:
 * every object and the /Contents inside the update, at most
 * GW_STAMP_OBJS_MAX objects. Corpus: updates sealctl stamp wrote (one
 * and two stamps), each cut and bent.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stampcheck.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct gw_stamp_update u;
	char err[256];
	size_t base = 0, skip = 0;

	/* The input: the document's length in decimal, a newline, the update
	 * (so a real update and its offsets are a seed as they are). */
	while (skip < size && skip < 10 && data[skip] >= '0' && data[skip] <= '9')
		base = base * 10 + (size_t)(data[skip++] - '0');
	if (skip == 0 || skip >= size || data[skip] != '\n')
		return 0;
	data += skip + 1;
	size -= skip + 1;
	if (gw_stamp_parse(data, size, base, &u, err, sizeof(err)) != 0)
		return 0;
	if (u.n == 0 || u.n > GW_STAMP_OBJS_MAX || u.contents_len < 2 ||
	    u.contents_at < base || u.contents_at + u.contents_len > base + size)
		abort();
	for (size_t i = 0; i < u.n; i++)
		if (u.objs[i].at < base || u.objs[i].at >= base + size)
			abort();
	if (data[u.contents_at - base] != '<' || data[u.contents_at - base + u.contents_len - 1] != '>')
		abort();
	return 0;
}
