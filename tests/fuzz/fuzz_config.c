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
		/* Loaded paths are absolute; required ones are present: a token
		 * and its PIN file, or neither (backend_token: none); a SQLite
		 * path or a PostgreSQL URL; a site. */
		if (cfg->no_token ? cfg->backend_token != NULL || cfg->token_pin_file != NULL :
		                    cfg->backend_token == NULL || cfg->token_pin_file[0] != '/')
			abort();
		if (cfg->store_url == NULL || cfg->store_shown == NULL || cfg->site == NULL ||
		    (cfg->store_path != NULL && cfg->store_path[0] != '/') ||
		    (cfg->store_path == NULL && strncmp(cfg->store_url, "postgres", 8) != 0) ||
		    cfg->policy_path[0] != '/')
			abort();
		gw_config_free(&cfg);
	} else if (strncmp(err, "/etc/sealgate/sealgated.yaml", 28) != 0) {
		abort();
	}
	return 0;
}
