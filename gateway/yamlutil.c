/*
 * Strict YAML reading shared by the configuration and the policy loader:
 * bounded input, a pre-scan that refuses what we never want (several
 * documents, anchors, aliases, tags, deep nesting), then typed accessors
 * that report the offending node as FILE:LINE:COL.
 */
#include "yamlutil.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_DEPTH 64

int
gw_yaml_read_file(const char *path, uint8_t **buf, size_t *len, char *err, size_t errlen)
{
	int rv = -1, fd = -1;
	uint8_t *b = NULL;
	size_t have = 0;
	struct stat st;

	*buf = NULL;
	*len = 0;
	/* O_NONBLOCK: opening a FIFO (or a device) must not wait for a
	 * writer; only a regular file is read, and for one it changes nothing. */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		goto out;
	}
	if (fstat(fd, &st) < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "%s: not a regular file (%s); only a regular file is read", path,
		         S_ISFIFO(st.st_mode) ? "a FIFO" : S_ISDIR(st.st_mode) ? "a directory" :
		         S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode) ? "a device" :
		         S_ISSOCK(st.st_mode) ? "a socket" : "a special file");
		goto out;
	}
	/* Read at most one byte past the cap so an oversized (or growing)
	 * file is noticed without trusting st_size. */
	b = malloc(GW_YAML_MAX_BYTES + 2);
	if (b == NULL) {
		snprintf(err, errlen, "%s: out of memory", path);
		goto out;
	}
	for (;;) {
		ssize_t n = read(fd, b + have, GW_YAML_MAX_BYTES + 1 - have);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			snprintf(err, errlen, "%s: %s", path, strerror(errno));
			goto out;
		}
		if (n == 0)
			break;
		have += (size_t)n;
		if (have > GW_YAML_MAX_BYTES) {
			snprintf(err, errlen, "%s: larger than %u bytes", path, GW_YAML_MAX_BYTES);
			goto out;
		}
	}
	b[have] = '\0';
	*buf = b;
	*len = have;
	b = NULL;
	rv = 0;
out:
	free(b);
	if (fd >= 0)
		close(fd);
	return rv;
}

static void
mark_errf(struct gw_yaml *y, const yaml_mark_t *m, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void
mark_errf(struct gw_yaml *y, const yaml_mark_t *m, const char *fmt, ...)
{
	char msg[1024];   /* the known-keys list of an unknown key fits */
	va_list ap;

	if (y->failed)
		return;
	y->failed = true;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (m != NULL)
		snprintf(y->err, y->errlen, "%s:%zu:%zu: %s", y->name,
		         m->line + 1, m->column + 1, msg);
	else
		snprintf(y->err, y->errlen, "%s: %s", y->name, msg);
}

int
gw_yaml_errf(struct gw_yaml *y, const yaml_node_t *node, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	mark_errf(y, node ? &node->start_mark : NULL, "%s", msg);
	return -1;
}

static void
parser_error(struct gw_yaml *y, const yaml_parser_t *p)
{
	const char *problem = p->problem ? p->problem : "malformed YAML";

	if (p->context != NULL)
		mark_errf(y, &p->problem_mark, "%s %s", problem, p->context);
	else
		mark_errf(y, &p->problem_mark, "%s", problem);
}

/* Walks the event stream once before building any tree: everything a
 * hostile or mistaken file could use to blow up memory or smuggle in
 * meaning is refused here, with its position. */
static int
prescan(struct gw_yaml *y, const uint8_t *buf, size_t len)
{
	yaml_parser_t p;
	yaml_event_t ev;
	size_t events = 0, docs = 0, depth = 0;
	int rv = -1;
	bool done = false;

	if (!yaml_parser_initialize(&p)) {
		mark_errf(y, NULL, "out of memory");
		return -1;
	}
	yaml_parser_set_input_string(&p, buf, len);
	while (!done) {
		const char *anchor = NULL, *tag = NULL;

		if (!yaml_parser_parse(&p, &ev)) {
			parser_error(y, &p);
			goto out;
		}
		if (++events > GW_YAML_MAX_NODES) {
			mark_errf(y, &ev.start_mark, "more than %u YAML nodes", GW_YAML_MAX_NODES);
			yaml_event_delete(&ev);
			goto out;
		}
		switch (ev.type) {
		case YAML_STREAM_END_EVENT:
			done = true;
			break;
		case YAML_DOCUMENT_START_EVENT:
			if (++docs > 1) {
				mark_errf(y, &ev.start_mark, "only one YAML document is allowed");
				yaml_event_delete(&ev);
				goto out;
			}
			break;
		case YAML_ALIAS_EVENT:
			mark_errf(y, &ev.start_mark, "YAML aliases (*%s) are not supported",
			          (const char *)ev.data.alias.anchor);
			yaml_event_delete(&ev);
			goto out;
		case YAML_SCALAR_EVENT:
			anchor = (const char *)ev.data.scalar.anchor;
			tag = (const char *)ev.data.scalar.tag;
			break;
		case YAML_SEQUENCE_START_EVENT:
		case YAML_MAPPING_START_EVENT:
			if (ev.type == YAML_SEQUENCE_START_EVENT) {
				anchor = (const char *)ev.data.sequence_start.anchor;
				tag = (const char *)ev.data.sequence_start.tag;
			} else {
				anchor = (const char *)ev.data.mapping_start.anchor;
				tag = (const char *)ev.data.mapping_start.tag;
			}
			if (++depth > MAX_DEPTH) {
				mark_errf(y, &ev.start_mark, "nested deeper than %d levels", MAX_DEPTH);
				yaml_event_delete(&ev);
				goto out;
			}
			break;
		case YAML_SEQUENCE_END_EVENT:
		case YAML_MAPPING_END_EVENT:
			depth--;
			break;
		default:
			break;
		}
		if (anchor != NULL) {
			mark_errf(y, &ev.start_mark, "YAML anchors (&%s) are not supported", anchor);
			yaml_event_delete(&ev);
			goto out;
		}
		if (tag != NULL) {
			mark_errf(y, &ev.start_mark, "YAML tags (%s) are not supported", tag);
			yaml_event_delete(&ev);
			goto out;
		}
		yaml_event_delete(&ev);
	}
	if (docs == 0) {
		mark_errf(y, NULL, "empty file");
		goto out;
	}
	rv = 0;
out:
	yaml_parser_delete(&p);
	return rv;
}

yaml_node_t *
gw_yaml_open(struct gw_yaml *y, const char *name, const uint8_t *buf, size_t len,
             char *err, size_t errlen)
{
	yaml_parser_t p;
	yaml_node_t *root;

	memset(y, 0, sizeof(*y));
	y->name = name;
	y->err = err;
	y->errlen = errlen;
	if (errlen > 0)
		err[0] = '\0';
	if (len > GW_YAML_MAX_BYTES) {
		mark_errf(y, NULL, "larger than %u bytes", GW_YAML_MAX_BYTES);
		return NULL;
	}
	if (prescan(y, buf, len) < 0)
		return NULL;
	if (!yaml_parser_initialize(&p)) {
		mark_errf(y, NULL, "out of memory");
		return NULL;
	}
	yaml_parser_set_input_string(&p, buf, len);
	if (!yaml_parser_load(&p, &y->doc)) {
		parser_error(y, &p);
		yaml_parser_delete(&p);
		return NULL;
	}
	yaml_parser_delete(&p);
	y->loaded = true;
	root = yaml_document_get_root_node(&y->doc);
	if (root == NULL) {
		mark_errf(y, NULL, "empty file");
		return NULL;
	}
	if (root->type != YAML_MAPPING_NODE) {
		gw_yaml_errf(y, root, "the file must be a mapping of keys to values");
		return NULL;
	}
	return root;
}

void
gw_yaml_close(struct gw_yaml *y)
{
	if (y->loaded)
		yaml_document_delete(&y->doc);
	y->loaded = false;
}

bool
gw_yaml_is_scalar(const yaml_node_t *node)
{
	return node != NULL && node->type == YAML_SCALAR_NODE;
}

const char *
gw_yaml_scalar(const yaml_node_t *node)
{
	return gw_yaml_is_scalar(node) ? (const char *)node->data.scalar.value : NULL;
}

static bool
is_null(const yaml_node_t *node)
{
	const char *v = (const char *)node->data.scalar.value;

	if (node->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
		return false;
	return v[0] == '\0' || strcmp(v, "~") == 0 || strcmp(v, "null") == 0 ||
	       strcmp(v, "Null") == 0 || strcmp(v, "NULL") == 0;
}

static const char *
type_name(const yaml_node_t *node)
{
	switch (node->type) {
	case YAML_MAPPING_NODE: return "a mapping";
	case YAML_SEQUENCE_NODE: return "a list";
	case YAML_SCALAR_NODE: return is_null(node) ? "no value" : "a single value";
	default: return "nothing";
	}
}

static yaml_node_t *
node_at(struct gw_yaml *y, int id)
{
	return yaml_document_get_node(&y->doc, id);
}

int
gw_yaml_map_check(struct gw_yaml *y, yaml_node_t *node, const char *what,
                  const char *const *allowed)
{
	yaml_node_pair_t *a, *b;

	if (node->type != YAML_MAPPING_NODE)
		return gw_yaml_errf(y, node, "%s must be a mapping, not %s", what, type_name(node));
	for (a = node->data.mapping.pairs.start; a < node->data.mapping.pairs.top; a++) {
		yaml_node_t *k = node_at(y, a->key);
		const char *ks = gw_yaml_scalar(k);
		bool known = false;

		if (ks == NULL || is_null(k))
			return gw_yaml_errf(y, k, "keys of %s must be names", what);
		for (size_t i = 0; allowed[i] != NULL && !known; i++)
			known = strcmp(allowed[i], ks) == 0;
		if (!known) {
			char list[1024];   /* every known key, however many */
			size_t off = 0;
			list[0] = '\0';
			for (size_t i = 0; allowed[i] != NULL && off < sizeof(list); i++) {
				int n = snprintf(list + off, sizeof(list) - off, "%s%s",
				                 i ? ", " : "", allowed[i]);
				if (n < 0)
					break;
				off += (size_t)n;
			}
			return gw_yaml_errf(y, k, "unknown key '%s' in %s (known keys: %s)",
			                    ks, what, list);
		}
	}
	/* Every key is one of a few known names now, so this stays small. */
	for (a = node->data.mapping.pairs.start; a < node->data.mapping.pairs.top; a++) {
		const char *ka = gw_yaml_scalar(node_at(y, a->key));
		for (b = node->data.mapping.pairs.start; b < a; b++) {
			if (strcmp(ka, gw_yaml_scalar(node_at(y, b->key))) == 0)
				return gw_yaml_errf(y, node_at(y, a->key),
				                    "duplicate key '%s' in %s", ka, what);
		}
	}
	return 0;
}

static yaml_node_pair_t *
map_pair(struct gw_yaml *y, yaml_node_t *map, const char *key)
{
	yaml_node_pair_t *a;

	if (map == NULL || map->type != YAML_MAPPING_NODE)
		return NULL;
	for (a = map->data.mapping.pairs.start; a < map->data.mapping.pairs.top; a++) {
		const char *ks = gw_yaml_scalar(node_at(y, a->key));
		if (ks != NULL && strcmp(ks, key) == 0)
			return a;
	}
	return NULL;
}

yaml_node_t *
gw_yaml_map_get(struct gw_yaml *y, yaml_node_t *map, const char *key)
{
	yaml_node_pair_t *a = map_pair(y, map, key);
	return a ? node_at(y, a->value) : NULL;
}

yaml_node_t *
gw_yaml_map_key(struct gw_yaml *y, yaml_node_t *map, const char *key)
{
	yaml_node_pair_t *a = map_pair(y, map, key);
	return a ? node_at(y, a->key) : NULL;
}

int
gw_yaml_seq_len(struct gw_yaml *y, yaml_node_t *node, const char *what, size_t *n)
{
	if (node->type != YAML_SEQUENCE_NODE)
		return gw_yaml_errf(y, node, "%s must be a list, not %s", what, type_name(node));
	*n = (size_t)(node->data.sequence.items.top - node->data.sequence.items.start);
	return 0;
}

yaml_node_t *
gw_yaml_seq_item(struct gw_yaml *y, yaml_node_t *seq, size_t i)
{
	return node_at(y, seq->data.sequence.items.start[i]);
}

int
gw_yaml_str(struct gw_yaml *y, yaml_node_t *node, const char *what, char **out)
{
	const char *v = gw_yaml_scalar(node);

	*out = NULL;
	if (v == NULL || is_null(node))
		return gw_yaml_errf(y, node, "%s must be a single value, not %s", what,
		                    type_name(node));
	if (strlen(v) != node->data.scalar.length)
		return gw_yaml_errf(y, node, "%s contains a NUL character", what);
	if (v[0] == '\0')
		return gw_yaml_errf(y, node, "%s must not be empty", what);
	*out = strdup(v);
	if (*out == NULL)
		return gw_yaml_errf(y, node, "out of memory");
	return 0;
}

int
gw_yaml_int(struct gw_yaml *y, yaml_node_t *node, const char *what,
            int64_t min, int64_t max, int64_t *out)
{
	const char *v = gw_yaml_scalar(node), *s;
	bool neg = false;
	uint64_t acc = 0, lim;

	if (v == NULL || is_null(node))
		return gw_yaml_errf(y, node, "%s must be a whole number, not %s", what,
		                    type_name(node));
	s = v;
	if (*s == '-') {
		neg = true;
		s++;
	}
	if (*s == '\0' || strspn(s, "0123456789") != strlen(s) ||
	    strlen(v) != node->data.scalar.length)
		return gw_yaml_errf(y, node, "%s must be a whole number, not '%s'", what, v);
	if (s[0] == '0' && s[1] != '\0')
		return gw_yaml_errf(y, node, "%s: leading zeros are ambiguous in '%s'", what, v);
	lim = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
	for (; *s; s++) {
		unsigned d = (unsigned)(*s - '0');
		if (acc > (lim - d) / 10)
			return gw_yaml_errf(y, node, "%s: '%s' is out of range", what, v);
		acc = acc * 10 + d;
	}
	{
		int64_t val = neg ? (acc == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)acc)
		                  : (int64_t)acc;
		if (val < min) {
			if (min == 0)
				return gw_yaml_errf(y, node, "%s must not be negative (got %s)", what, v);
			return gw_yaml_errf(y, node, "%s must be at least %lld (got %s)", what,
			                    (long long)min, v);
		}
		if (val > max)
			return gw_yaml_errf(y, node, "%s must be at most %lld (got %s)", what,
			                    (long long)max, v);
		*out = val;
	}
	return 0;
}

int
gw_yaml_bool(struct gw_yaml *y, yaml_node_t *node, const char *what, bool *out)
{
	const char *v = gw_yaml_scalar(node);

	if (v != NULL && strcmp(v, "true") == 0) {
		*out = true;
		return 0;
	}
	if (v != NULL && strcmp(v, "false") == 0) {
		*out = false;
		return 0;
	}
	if (v == NULL || is_null(node))
		return gw_yaml_errf(y, node, "%s must be true or false, not %s", what,
		                    type_name(node));
	return gw_yaml_errf(y, node, "%s must be true or false, not '%s'", what, v);
}

void
gw_yaml_strlist_free(char ***list, size_t *n)
{
	if (*list != NULL) {
		for (size_t i = 0; i < *n; i++)
			free((*list)[i]);
		free(*list);
	}
	*list = NULL;
	*n = 0;
}

int
gw_yaml_strlist(struct gw_yaml *y, yaml_node_t *node, const char *what,
                char ***out, size_t *n)
{
	size_t len = 0;
	char **l;

	*out = NULL;
	*n = 0;
	if (gw_yaml_seq_len(y, node, what, &len) < 0)
		return -1;
	if (len > GW_YAML_MAX_LIST)
		return gw_yaml_errf(y, node, "%s has more than %u entries", what, GW_YAML_MAX_LIST);
	l = calloc(len ? len : 1, sizeof(*l));
	if (l == NULL)
		return gw_yaml_errf(y, node, "out of memory");
	*out = l;
	for (size_t i = 0; i < len; i++) {
		yaml_node_t *it = gw_yaml_seq_item(y, node, i);
		if (gw_yaml_str(y, it, what, &l[i]) < 0) {
			gw_yaml_strlist_free(out, n);
			return -1;
		}
		*n = i + 1;
		/* Lists here are short (names, types); repeats are mistakes. */
		for (size_t j = 0; j < i; j++) {
			if (strcmp(l[i], l[j]) == 0) {
				gw_yaml_errf(y, it, "'%s' is listed twice in %s", l[i], what);
				gw_yaml_strlist_free(out, n);
				return -1;
			}
		}
	}
	return 0;
}
