/* Fuzz target: the wire decoder and the bounded field readers. */
#include <stdlib.h>
#include "protocol.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[256];
	json_t *msg = sg_msg_decode(data, size, err, sizeof(err));
	const char *s;
	int64_t i;
	bool b;
	uint8_t *bytes;
	size_t len;

	if (msg == NULL)
		return 0;
	(void)sg_get_str(msg, "op", true, &s, SG_NAME_MAX, err, sizeof(err));
	(void)sg_get_str(msg, "pin", false, &s, SG_PIN_MAX, err, sizeof(err));
	(void)sg_get_int(msg, "mechanism", false, 0, INT64_MAX, &i, err, sizeof(err));
	(void)sg_get_bool(msg, "ok", false, &b, err, sizeof(err));
	if (sg_get_bytes(msg, "data", false, &bytes, &len, SG_EDDSA_DATA_MAX, err, sizeof(err)) == 0)
		free(bytes);
	if (sg_get_bytes(msg, "session", false, &bytes, &len, SG_SESSION_TOKEN_LEN, err, sizeof(err)) == 0)
		free(bytes);
	(void)sg_reply_is_ok(msg, NULL, NULL, NULL);
	json_decref(msg);
	return 0;
}
