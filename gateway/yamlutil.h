/*
 * Strict YAML reading for the gateway's own files (configuration, policy):
 * one bounded document, one mapping at the top, no anchors/aliases/tags,
 * and typed accessors whose every failure reads "FILE:LINE:COL: message".
 */
#ifndef GW_YAMLUTIL_H
#define GW_YAMLUTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <yaml.h>

#define GW_YAML_MAX_BYTES  (4u * 1024 * 1024)   /* file size cap */
#define GW_YAML_MAX_NODES  1000000u             /* parser events cap */
#define GW_YAML_MAX_LIST   10000u               /* entries in a list of names */

struct gw_yaml {
	yaml_document_t doc;
	bool loaded;
	const char *name;         /* file name used in messages (not owned) */
	char *err;                /* caller's buffer */
	size_t errlen;
	bool failed;              /* first error wins; later ones are dropped */
};

/* Reads a whole file of at most GW_YAML_MAX_BYTES into *buf (malloc'd,
 * NUL-terminated). Returns 0, or -1 with err "FILE: reason". */
int gw_yaml_read_file(const char *path, uint8_t **buf, size_t *len,
                      char *err, size_t errlen);

/* Parses buf as exactly one YAML document whose root is a mapping. Anchors,
 * aliases and explicit tags are refused (nothing here needs them and aliases
 * would let a small file expand into a huge tree). Returns the root mapping
 * or NULL with the error stored in y. */
yaml_node_t *gw_yaml_open(struct gw_yaml *y, const char *name,
                          const uint8_t *buf, size_t len, char *err, size_t errlen);
void gw_yaml_close(struct gw_yaml *y);

/* Records "name:line:col: message" for node (1-based), or "name: message"
 * when node is NULL. Returns -1 so callers can `return gw_yaml_errf(...)`. */
int gw_yaml_errf(struct gw_yaml *y, const yaml_node_t *node, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Checks that node is a mapping with scalar keys, each one of allowed
 * (a NULL-terminated list) and none repeated. */
int gw_yaml_map_check(struct gw_yaml *y, yaml_node_t *node, const char *what,
                      const char *const *allowed);
/* Value for key in a checked mapping, or NULL when absent. */
yaml_node_t *gw_yaml_map_get(struct gw_yaml *y, yaml_node_t *map, const char *key);
/* Key node for key (for messages about the key itself), or NULL. */
yaml_node_t *gw_yaml_map_key(struct gw_yaml *y, yaml_node_t *map, const char *key);

/* Sequence access: -1 (error recorded) when node is not a sequence. */
int gw_yaml_seq_len(struct gw_yaml *y, yaml_node_t *node, const char *what, size_t *n);
yaml_node_t *gw_yaml_seq_item(struct gw_yaml *y, yaml_node_t *seq, size_t i);

/* Scalars. A plain empty scalar, "~" or "null" is "no value" and refused. */
bool gw_yaml_is_scalar(const yaml_node_t *node);
const char *gw_yaml_scalar(const yaml_node_t *node);   /* NULL if not a scalar */
int gw_yaml_str(struct gw_yaml *y, yaml_node_t *node, const char *what, char **out);
/* Decimal integer in [min, max]; no sign for min >= 0, no junk, no overflow. */
int gw_yaml_int(struct gw_yaml *y, yaml_node_t *node, const char *what,
                int64_t min, int64_t max, int64_t *out);
int gw_yaml_bool(struct gw_yaml *y, yaml_node_t *node, const char *what, bool *out);
/* A sequence of non-empty string scalars, no repeats. */
int gw_yaml_strlist(struct gw_yaml *y, yaml_node_t *node, const char *what,
                    char ***out, size_t *n);
void gw_yaml_strlist_free(char ***list, size_t *n);

#endif
