/*
 * Fuzz target: the decoder of a seal key's public part as the store keeps
 * it (gateway/token.c gw_seal_key_decode; token.h, "known keys"). Whatever
 * it accepts must encode back to the same bytes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "token.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct gw_seal_key *k = NULL;
	uint8_t *again;
	size_t len = 0;
	char err[256];

	if (gw_seal_key_decode("pkcs11:object=fuzz;type=private", data, size, &k, err,
	                       sizeof(err)) != 0)
		return 0;
	if (k->priv != CK_INVALID_HANDLE || strcmp(k->uri, "pkcs11:object=fuzz;type=private") != 0)
		abort();
	again = gw_seal_key_encode(k, &len);
	if (again == NULL)
		abort();
	if (len != size || memcmp(again, data, size) != 0)
		abort();   /* accepted, but not what it says it is */
	free(again);
	gw_seal_key_free(&k);
	return 0;
}
