/*
 * Authentication requests (auth_ops.c).
 */
#ifndef GW_AUTH_OPS_H
#define GW_AUTH_OPS_H

#include <jansson.h>

#include "dispatch.h"

json_t *gw_op_login(struct gw_req *r);
json_t *gw_op_logout(struct gw_req *r);
json_t *gw_op_user_add(struct gw_req *r);
json_t *gw_op_user_passwd(struct gw_req *r);

#endif
