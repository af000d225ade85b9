/*
 * An application's chain of levels as the store keeps it: one JSON text
 * column, the same on every backend (sqlite/appstore.c, pg/appstore.c).
 */
#include "applevels.h"

#include <stdio.h>
#include <string.h>
#include <jansson.h>

char *
gw_app_levels_json(const struct gw_application *app)
{
	json_t *a = json_array();
	char *out;

	for (unsigned i = 0; i < app->n_levels; i++) {
		const struct gw_wf_level *l = &app->levels[i];
		if (l->kind == GW_LEVEL_ROLE)
			json_array_append_new(a, json_pack("{s:s,s:s,s:i}", "kind", "role",
			                                   "role", l->role, "quorum", (int)l->quorum));
		else
			json_array_append_new(a, json_pack("{s:s,s:i,s:i}", "kind", "head",
			                                   "up", (int)l->up, "quorum", (int)l->quorum));
	}
	out = json_dumps(a, JSON_COMPACT);
	json_decref(a);
	return out;
}

int
gw_app_levels_parse(const char *text, struct gw_application *app)
{
	json_t *a = json_loads(text, 0, NULL), *l;
	size_t i;

	if (!json_is_array(a) || json_array_size(a) > GW_WF_MAX_LEVELS) {
		json_decref(a);
		return -1;
	}
	json_array_foreach(a, i, l) {
		const char *kind = json_string_value(json_object_get(l, "kind"));
		struct gw_wf_level *w = &app->levels[i];
		memset(w, 0, sizeof(*w));
		w->quorum = (unsigned)json_integer_value(json_object_get(l, "quorum"));
		if (kind && strcmp(kind, "role") == 0) {
			w->kind = GW_LEVEL_ROLE;
			snprintf(w->role, sizeof(w->role), "%s",
			         json_string_value(json_object_get(l, "role")) ?: "");
		} else {
			w->kind = GW_LEVEL_RELATIVE_HEAD;
			w->up = (unsigned)json_integer_value(json_object_get(l, "up"));
		}
		if (w->quorum == 0)
			w->quorum = 1;
	}
	app->n_levels = (unsigned)json_array_size(a);
	json_decref(a);
	return 0;
}
