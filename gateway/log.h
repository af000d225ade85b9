/*
 * Gateway logging: stderr (foreground, tests) or syslog. Never pass a
 * secret to these functions.
 */
#ifndef GW_LOG_H
#define GW_LOG_H

#include <stdbool.h>

void gw_log_init(const char *ident, bool use_syslog, bool debug);
void gw_log_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void gw_log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void gw_log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void gw_log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
