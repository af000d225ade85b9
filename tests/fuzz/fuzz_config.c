/* Fuzz target: the gateway configuration parser (strict YAML, types,
 * ranges, path resolution). */
#include <stdlib.h>
#include <string.h>
#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct gw_config *cfg = NULL;
	char err[512];

	if (gw_config_parse("/etc/sealgate/sealgated.yaml", data, size, &cfg, err,
	                    sizeof(err)) == 0) {
		/* Loaded paths are absolute; required ones are present. */
		if (cfg->token_pin_file[0] != '/' || cfg->store_path[0] != '/' ||
		    cfg->policy_path[0] != '/' || cfg->backend_token == NULL)
			abort();
		gw_config_free(&cfg);
	} else if (strncmp(err, "/etc/sealgate/sealgated.yaml", 28) != 0) {
		abort();
	}
	return 0;
}
