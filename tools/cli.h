/*
 * What every sealctl command shares: the connection to the gateway, login
 * with the caller's password, reading secrets, printing refusals.
 */
#ifndef SEALCTL_CLI_H
#define SEALCTL_CLI_H

#include <stdbool.h>
#include <jansson.h>

#include "protocol.h"

struct cli {
	const char *socket;
	const char *socket_from;     /* "--socket", "SEALGATE_SOCKET" or NULL: the default */
	const char *user;            /* account to act as (SEALGATE_USER) */
	const char *password_file;   /* the caller's own password */
	bool json;
	int fd;
	char *session;               /* base64 session token */
	/* A tls://HOST:PORT gateway (--socket, SEALGATE_SOCKET or
	 * sealgate.conf): the module's transport, with sealgate.conf's CA,
	 * certificate and key (docs/clients.md). */
	struct sgm_tls *tls;
	struct sg_io io;
};

struct sgm_tls;

/* Prints a refusal reply's message to stderr. */
void cli_die_reply(const json_t *rep);
/* One line of a secret from path ("-" = stdin), or from the terminal with
 * echo off when path is NULL. Free with sg_free_secret_str. */
char *cli_read_secret(const char *path, const char *prompt);
/* Sends req (consumed; the session is added when logged in) and returns
 * the reply; exits 3 when the gateway cannot be reached. --json prints it. */
json_t *cli_call(struct cli *c, json_t *req);
/* Logs in with the caller's password (file, SEALGATE_PASSWORD or prompt). */
int cli_login(struct cli *c);
void cli_logout(struct cli *c);
/* Asks the gateway which account this OS login acts as (c->user or its
 * own), without a password: 0 and the account in buf; 1 and what is
 * missing, for a person to read, in buf; -1 and the gateway's refusal
 * when it says something else. */
int cli_account_check(struct cli *c, char *buf, size_t len);

#endif
