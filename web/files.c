/*
 * Which file a GET names: the console's own under console_dir, and the
 * three files of Debian's PDF.js and Chart.js the console loads under
 * javascript_dir (docs/web.md). The URL is untrusted: this is the one
 * place that maps it to a path, without a socket (tests/fuzz/fuzz_web.c).
 */
#include "web.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define VENDOR "/javascript/"

/* Exactly what web/console/vendor.js loads; nothing else of
 * /usr/share/javascript (other packages' files) is served. */
static const char *const vendor_files[] = {
	VENDOR "pdf/build/pdf.js",
	VENDOR "pdf/build/pdf.worker.js",
	VENDOR "chart.js/chart.min.js",
	NULL
};

/* real is root itself or inside it. */
static bool
inside(const char *real, const char *root)
{
	size_t n = strlen(root);

	return strncmp(real, root, n) == 0 && real[n] == '/';
}

int
web_file_resolve(const struct web_config *cfg, const char *url, char *out, size_t outlen)
{
	char path[PATH_MAX], real[PATH_MAX], root[PATH_MAX];
	const char *dir = cfg->console_dir, *rel = url;

	if (url == NULL || url[0] != '/')
		return -1;
	if (strcmp(url, "/") == 0)
		rel = "/index.html";
	if (strncmp(url, VENDOR, strlen(VENDOR)) == 0) {
		size_t i;

		for (i = 0; vendor_files[i] != NULL && strcmp(vendor_files[i], url) != 0; i++)
			;
		if (vendor_files[i] == NULL || cfg->javascript_dir == NULL)
			return -1;
		dir = cfg->javascript_dir;
		rel = url + strlen(VENDOR) - 1;
	}
	/* Letters, digits, '.', '-', '_' and '/'; no segment starting with
	 * '.' (no "..", no hidden file), no empty one. */
	if (dir == NULL ||
	    strspn(rel, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-/") !=
	    strlen(rel) || strstr(rel, "/.") != NULL || strstr(rel, "//") != NULL ||
	    (size_t)snprintf(path, sizeof(path), "%s%s", dir, rel) >= sizeof(path))
		return -1;
	/* No link followed out of the directory. */
	if (realpath(dir, root) == NULL || realpath(path, real) == NULL || !inside(real, root) ||
	    strlen(real) >= outlen)
		return -1;
	memcpy(out, real, strlen(real) + 1);
	return 0;
}
