/*
 * Documents in the gateway from sealctl (docs/stamp.md): a file uploaded
 * in doc_put chunks to the logged-in session, and read back with doc_get.
 * `sealctl apply --doc` and `sealctl stamp` use these.
 */
#include "sealctl.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <openssl/evp.h>

#include "protocol.h"

/* The gateway's chunk limit (doc_ops.h). */
#define DOC_CHUNK (512u * 1024u)
/* The largest file sealctl reads for upload: the gateway's own cap
 * (document_max_size, at most 512 MiB) refuses past what it keeps. */
#define DOC_FILE_MAX (512u * 1024u * 1024u)

int
sealctl_read_file(const char *path, uint8_t **out, size_t *len)
{
	FILE *f = fopen(path, "rb");
	struct stat sb;
	uint8_t *buf = NULL;
	size_t n;

	*out = NULL;
	*len = 0;
	if (f == NULL || fstat(fileno(f), &sb) < 0 || !S_ISREG(sb.st_mode)) {
		fprintf(stderr, "sealctl: %s: %s\n", path, f ? "not a regular file" : strerror(errno));
		if (f)
			fclose(f);
		return -1;
	}
	if ((uint64_t)sb.st_size > DOC_FILE_MAX) {
		fprintf(stderr, "sealctl: %s: larger than %u bytes\n", path, DOC_FILE_MAX);
		fclose(f);
		return -1;
	}
	n = (size_t)sb.st_size;
	buf = malloc(n ? n : 1);
	if (buf == NULL || (n > 0 && fread(buf, 1, n, f) != n)) {
		fprintf(stderr, "sealctl: %s: could not be read\n", path);
		free(buf);
		fclose(f);
		return -1;
	}
	fclose(f);
	*out = buf;
	*len = n;
	return 0;
}

int
sealctl_doc_upload(struct cli *c, const char *name, const uint8_t *data, size_t len,
                   uint8_t sha256[32])
{
	char hex[65];
	const char *base = strrchr(name, '/');
	bool json = c->json;
	size_t off = 0;
	int rv = -1;

	if (EVP_Digest(data, len, sha256, NULL, EVP_sha256(), NULL) != 1)
		return -1;
	for (int i = 0; i < 32; i++)
		snprintf(hex + 2 * i, 3, "%02x", sha256[i]);
	base = base ? base + 1 : name;
	/* The chunks' replies are not the command's output. */
	c->json = false;
	do {
		size_t n = len - off < DOC_CHUNK ? len - off : DOC_CHUNK;
		json_t *req = sg_request_new(SG_OP_DOC_PUT), *rep;
		bool stored;

		json_object_set_new(req, "sha256", json_string(hex));
		json_object_set_new(req, "size", json_integer((json_int_t)len));
		json_object_set_new(req, "offset", json_integer((json_int_t)off));
		json_t *jname = json_stringn(base, strnlen(base, 200));

		/* (a name that is not UTF-8, or cut inside a character, is not sent) */
		json_object_set_new(req, "name", jname ? jname : json_string("document"));
		if (sg_set_bytes(req, "data", data + off, n) < 0) {
			json_decref(req);
			goto out;
		}
		rep = cli_call(c, req);
		if (!sg_reply_is_ok(rep, NULL, NULL, NULL)) {
			cli_die_reply(rep);
			json_decref(rep);
			goto out;
		}
		stored = json_is_true(json_object_get(rep, "stored"));
		json_decref(rep);
		off += n;
		if (stored) {
			rv = off == len ? 0 : -1;
			goto out;
		}
	} while (off < len);
	fprintf(stderr, "sealctl: the gateway did not say the document was stored\n");
out:
	c->json = json;
	return rv;
}

/* doc get SHA256 --out FILE: the stored document, chunk by chunk. */
static int
doc_get(struct cli *c, const char *hex, const char *outpath)
{
	FILE *f = NULL;
	json_int_t off = 0, size = -1;
	bool json = c->json;
	int rv = 1;

	if (cli_login(c) != 0)
		return 1;
	c->json = false;
	do {
		json_t *req = sg_request_new(SG_OP_DOC_GET), *rep;
		uint8_t *buf = NULL;
		size_t n = 0;
		char err[128];

		json_object_set_new(req, "sha256", json_string(hex));
		json_object_set_new(req, "offset", json_integer(off));
		json_object_set_new(req, "len", json_integer(DOC_CHUNK));
		rep = cli_call(c, req);
		if (!sg_reply_is_ok(rep, NULL, NULL, NULL)) {
			cli_die_reply(rep);
			json_decref(rep);
			goto out;
		}
		size = json_integer_value(json_object_get(rep, "size"));
		if (sg_get_bytes(rep, "data", true, &buf, &n, DOC_CHUNK, err, sizeof(err)) < 0 ||
		    (n == 0 && off < size)) {
			fprintf(stderr, "sealctl: a bad chunk from the gateway: %s\n", err);
			free(buf);
			json_decref(rep);
			goto out;
		}
		json_decref(rep);
		if (f == NULL && (f = fopen(outpath, "wb")) == NULL) {
			fprintf(stderr, "sealctl: %s: %s\n", outpath, strerror(errno));
			free(buf);
			goto out;
		}
		if (n > 0 && fwrite(buf, 1, n, f) != n) {
			fprintf(stderr, "sealctl: %s: %s\n", outpath, strerror(errno));
			free(buf);
			goto out;
		}
		free(buf);
		off += (json_int_t)n;
	} while (off < size);
	rv = 0;
out:
	c->json = json;
	if (f != NULL && fclose(f) != 0)
		rv = 1;
	cli_logout(c);
	return rv;
}

/* doc put FILE: prints the stored document's SHA-256. */
static int
doc_put(struct cli *c, const char *path)
{
	uint8_t *data = NULL, md[32];
	size_t len = 0;
	int rv = 1;

	if (sealctl_read_file(path, &data, &len) < 0)
		return 1;
	if (cli_login(c) != 0)
		goto out;
	if (sealctl_doc_upload(c, path, data, len, md) == 0) {
		for (int i = 0; i < 32; i++)
			printf("%02x", md[i]);
		printf("\n");
		rv = 0;
	}
	cli_logout(c);
out:
	free(data);
	return rv;
}

int
sealctl_doc(struct cli *c, const char *cmd, int argc, char **argv)
{
	if (strcmp(cmd, "doc") != 0)
		return -1;
	if (argc == 3 && strcmp(argv[1], "put") == 0)
		return doc_put(c, argv[2]);
	if (argc == 5 && strcmp(argv[1], "get") == 0 &&
	    (strcmp(argv[3], "--out") == 0 || strcmp(argv[3], "-o") == 0))
		return doc_get(c, argv[2], argv[4]);
	fprintf(stderr, "sealctl: doc put FILE | doc get SHA256 --out FILE\n");
	return 2;
}
