/*
 * Helpers shared by the C tests that drive a real gateway (integration,
 * auth, audit, card): the environment run.sh sets, our module loaded as an
 * application loads it, objects found by label, the audit table counted,
 * and the wire protocol spoken directly. Each helper asserts (Criterion):
 * a test that cannot set up fails there, with the reason.
 */
#ifndef SG_TEST_H
#define SG_TEST_H

#include <p11-kit/pkcs11.h>
#include <jansson.h>
#include <stddef.h>

/* getenv(name), asserting it is set (run.sh sets them). */
const char *sgt_env(const char *name);

/* dlopen($SEALGATE_MODULE), C_GetFunctionList, C_Initialize(NULL), acting
 * as the OS account user (SEALGATE_USER; NULL: unset, i.e. the caller's
 * own login). */
CK_FUNCTION_LIST *sgt_module_load(const char *user);
/* C_Finalize and dlclose; *f becomes NULL. Safe when nothing is loaded. */
void sgt_module_unload(CK_FUNCTION_LIST **f);

/* The one object of class cls labelled label in session h, or
 * CK_INVALID_HANDLE with *n the number found (n may be NULL: then exactly
 * one must be found). */
CK_OBJECT_HANDLE sgt_find(CK_FUNCTION_LIST *f, CK_SESSION_HANDLE h, CK_OBJECT_CLASS cls,
                          const char *label, CK_ULONG *n);

/* The fixture's store is PostgreSQL (SG_TEST_STORE=pg: the fixture's own
 * cluster, conninfo in DIR/store/conninfo), not DIR/sealgate.db. */
int sgt_store_is_pg(void);
/* Skip the running test on a PostgreSQL store: its point is SQLite itself
 * (the message says "(by design: SQLite store only)", which CI accepts). */
void sgt_store_sqlite_only(const char *why);
/* The first column of the first row of an SQL query (SQLite's dialect;
 * tests/lib/sgsql.py translates it for PostgreSQL) on the fixture's store
 * in DIR, read-only; -1 when there is no row. */
long sgt_store_number(const char *dir, const char *sql);
/* The same, as text (NUL-terminated, cut to outlen): 0, or -1 when there
 * is no row. */
int sgt_store_text(const char *dir, const char *sql, char *out, size_t outlen);
/* Every row of an SQL query on the fixture's store: columns joined by '|',
 * each row ended by a newline (as the sqlite3 shell prints them); free()
 * it. */
char *sgt_store_rows(const char *dir, const char *sql);
/* Run SQL statements on the fixture's PostgreSQL store as its role, in one
 * transaction (a test's change behind the gateway's back), asserting they
 * succeed. */
void sgt_store_exec(const char *dir, const char *sql);

/* Audit records in the fixture's store matching an SQL condition (read-only). */
long sgt_count_records(const char *dir, const char *where);
/* The refusals that the refusals_suppressed summaries matching where
 * count (the sum of their detail's count; docs/audit.md). */
long sgt_count_summarized(const char *dir, const char *where);
/* $SG_IT_FIXTURE CMD $SG_IT_DIR (stop, start: the integration fixture). */
void sgt_fixture(const char *cmd);

/* A connection to $SEALGATE_SOCKET, and one request and its reply on it
 * (req is consumed). */
int sgt_conn(void);
json_t *sgt_call(int fd, json_t *req);

#endif
