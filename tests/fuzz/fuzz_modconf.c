/* Fuzz target: the module's sealgate.conf parser (module/transport_conf.c:
 * KEY = VALUE lines, the gateway address, paths made absolute). The input
 * is written to a file of the target's own, named by SEALGATE_CONF, since
 * the parser reads files only. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "sgm.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char path[64];

static void
remove_file(void)
{
	unlink(path);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sgm_conf c;
	char err[512];
	FILE *f;

	if (path[0] == '\0') {
		int fd;

		snprintf(path, sizeof(path), "/tmp/sg-fuzz-modconf.XXXXXX");
		fd = mkstemp(path);
		if (fd < 0)
			abort();
		close(fd);
		atexit(remove_file);
		setenv("SEALGATE_CONF", path, 1);
	}
	f = fopen(path, "w");
	if (f == NULL || (size > 0 && fwrite(data, 1, size, f) != size) || fclose(f) != 0)
		abort();
	if (sgm_conf_load(&c, err, sizeof(err)) == 0) {
		/* A gateway is a Unix socket or tls://; every path is absolute. */
		if (c.gateway != NULL && strncmp(c.gateway, "unix:", 5) != 0 &&
		    strncmp(c.gateway, "tls://", 6) != 0 && c.gateway[0] != '/')
			abort();
		if ((c.ca && c.ca[0] != '/') || (c.cert && c.cert[0] != '/') ||
		    (c.key && c.key[0] != '/'))
			abort();
		sgm_conf_free(&c);
	} else if (strncmp(err, path, strlen(path)) != 0) {
		/* every refusal names the file (and its line) */
		abort();
	}
	return 0;
}
