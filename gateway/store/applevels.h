/*
 * The levels column of applications (applevels.c), shared by the store's
 * backends. Private to gateway/store/.
 */
#ifndef GW_STORE_APPLEVELS_H
#define GW_STORE_APPLEVELS_H

#include "workflow.h"

/* app's levels as compact JSON (free it), or NULL when out of memory. */
char *gw_app_levels_json(const struct gw_application *app);
/* Fills app's levels from text: 0, or -1 when it is not such a list. */
int gw_app_levels_parse(const char *text, struct gw_application *app);

#endif
