/*
 * sealgated configuration: one YAML file (docs/configuration.md). Loaded at
 * start and on SIGHUP; a bad file is reported as file:line:column and the
 * old configuration stays in force.
 */
#ifndef GW_CONFIG_H
#define GW_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct gw_notify_conf;

struct gw_config {
	char *path;              /* the file it was read from */
	char *backend_module;    /* PKCS#11 module of the backend token */
	char *backend_token;     /* PKCS#11 URI ("pkcs11:token=Acme") or a plain label;
	                          * NULL with no_token */
	char *token_pin_file;    /* mode 0600, owned by the gateway's user; NULL with no_token */
	char *socket_path;
	mode_t socket_mode;      /* default 0666: access is decided per user */
	char *store_path;        /* SQLite file, or NULL: a PostgreSQL store */
	char *store_url;         /* what gw_store_open_url opens: the SQLite path or the URL */
	char *store_shown;       /* store_url as messages show it: never a password */
	char *site;              /* the site this gateway serves; default "main" (docs/sites.md) */
	bool no_token;           /* backend_token: none, a management gateway (docs/sites.md) */
	char *policy_path;
	char *token_label;       /* label the module shows; default: organization name */
	char *audit_key;         /* PKCS#11 URI of the audit checkpoint key, or NULL */
	char *totp_site_keys;    /* pins of the sites' TOTP keys (docs/authentication.md), or NULL */
	char *totp_key_file;     /* a management gateway's TOTP key pair (docs/sites.md), or NULL */
	unsigned backend_sessions; /* size of the backend session pool; default 2 * cores */
	unsigned session_timeout;  /* seconds of idleness before a login ends; default 28800 */
	unsigned session_max_age;  /* seconds from a login to its end, however used; default 604800 */
	unsigned audit_checkpoint_interval; /* seconds between signed checkpoints; default 300 */
	bool risk_online;        /* the risk rules run online (docs/risk.md); default true */
	unsigned risk_queue;     /* records handed to them before a catch-up from the store; 8192 */
	char *log;               /* "stderr" or "syslog" */
	char *card_watch;        /* "auto" (default: on when the backend is OpenSC), "on", "off" */
	char *reader;            /* PC/SC reader name (or its start) holding the card; NULL = any */
	bool log_debug;
	/* Authentication (docs/authentication.md); see struct gw_auth_settings. */
	unsigned auth_max_failures;  /* wrong passwords/codes before a lockout; default 5 */
	unsigned auth_lockout;       /* seconds of the first lockout (doubles); default 60 */
	unsigned signing_window;     /* longest out-of-band signing window, seconds; default 300 */
	unsigned confirm_timeout;    /* seconds a signature waits for `sealctl confirm`; default 30 */
	unsigned password_cost;      /* Argon2id preset: 0 interactive, 1 moderate, 2 sensitive */
	unsigned password_hash_concurrency; /* Argon2id hashes at once; 0 (default) = sized from the machine */
	bool test_clock;             /* TEST ONLY: honour env SEALGATE_TEST_CLOCK */
	/* The socket front (docs/protocol.md, limits): read at start. */
	unsigned max_connections;    /* open client connections in all; default 1024 */
	unsigned connections_per_uid;         /* per uid the policy knows; default 64 */
	unsigned connections_per_unknown_uid; /* per other uid; default 8 */
	unsigned frame_timeout;      /* seconds for a whole frame once its first byte is in; 5 */
	unsigned client_idle_timeout; /* seconds a connection may wait with no request; 120 */
	/* The TLS front (docs/deployment.md): read at start. NULL: none. */
	char *tls_listen;            /* "HOST:PORT": mutual TLS 1.3 for enrolled devices */
	char *tls_cert, *tls_key;    /* the gateway's certificate (from the site CA) and key */
	char *tls_device_ca;         /* the CA whose certificates the devices present */
	char *tls_device_ca_key;     /* its key (file 0600): the gateway issues device certificates */
	char *tls_device_ca_token_label; /* or its key on the backend token, this label */
	char *tls_devices;           /* directory of the device records */
	char *tls_enroll_listen;     /* "HOST:PORT": enrollment only, no client certificate */
	unsigned tls_connections_per_device; /* open connections per device; default 8 */
	unsigned tls_device_days;    /* days a device certificate is valid; default 365 */
	/* The web front (docs/web.md): the uid sealgate-web runs as. Its
	 * peers log people in by password (+ code) only and say who is
	 * behind each request ("via"). */
	bool web_front;
	char *web_front_user;
	uid_t web_front_uid;
	char *web_front_exe;     /* the front's program (/proc/PID/exe), or NULL: any */
	/* Documents (docs/stamp.md). */
	unsigned document_max_size;  /* bytes of one stored document; default 32 MiB */
	/* Notifications (docs/notifications.md): NULL without notify:. */
	struct gw_notify_conf *notify;
};

/* Reads and validates path. On error returns -1 and err holds
 * "file:line:column: message". */
int gw_config_load(const char *path, struct gw_config **out, char *err, size_t errlen);
void gw_config_free(struct gw_config **cfg);

/* Writes url into out (at most outlen bytes, always terminated) without the
 * password a libpq URL may carry (the userinfo's ":password", a "password="
 * parameter): what a message or a log line may show of a store URL. */
void gw_config_redact_url(const char *url, char *out, size_t outlen);

/* Reads the token PIN from cfg->token_pin_file: refuses a file that is not
 * a regular file, not owned by the effective uid, or readable/writable by
 * group or others. One trailing newline is dropped. Caller wipes+frees with
 * sg_free_secret_str. Returns NULL with err set. */
char *gw_config_read_pin(const struct gw_config *cfg, char *err, size_t errlen);

/* Same as gw_config_load from a buffer (fuzz target, tests): name is used
 * in messages and its directory resolves relative paths. */
int gw_config_parse(const char *name, const uint8_t *buf, size_t len,
                    struct gw_config **out, char *err, size_t errlen);

#endif
