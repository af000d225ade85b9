/* Helpers of the C tests that drive a real gateway: sgtest.h. */
#include "sgtest.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>
#include <sqlite3.h>

#include "protocol.h"

static void *lib;

const char *
sgt_env(const char *name)
{
	const char *v = getenv(name);

	cr_assert_not_null(v, "%s is not set (run the test through its run.sh)", name);
	return v;
}

CK_FUNCTION_LIST *
sgt_module_load(const char *user)
{
	CK_C_GetFunctionList gfl;
	CK_FUNCTION_LIST *f = NULL;

	/* the module reads the account to act as at C_Initialize */
	if (user)
		setenv("SEALGATE_USER", user, 1);
	else
		unsetenv("SEALGATE_USER");
	lib = dlopen(sgt_env("SEALGATE_MODULE"), RTLD_NOW | RTLD_LOCAL);
	cr_assert_not_null(lib, "%s", dlerror());
	gfl = (CK_C_GetFunctionList)dlsym(lib, "C_GetFunctionList");
	cr_assert_not_null(gfl);
	cr_assert_eq(gfl(&f), CKR_OK);
	cr_assert_eq(f->C_Initialize(NULL), CKR_OK);
	return f;
}

void
sgt_module_unload(CK_FUNCTION_LIST **f)
{
	if (f && *f)
		(*f)->C_Finalize(NULL);
	if (lib)
		dlclose(lib);
	if (f)
		*f = NULL;
	lib = NULL;
}

CK_OBJECT_HANDLE
sgt_find(CK_FUNCTION_LIST *f, CK_SESSION_HANDLE h, CK_OBJECT_CLASS cls, const char *label,
         CK_ULONG *n)
{
	CK_ATTRIBUTE t[] = {
		{ CKA_CLASS, &cls, sizeof(cls) },
		{ CKA_LABEL, (void *)label, strlen(label) },
	};
	CK_OBJECT_HANDLE o[4];
	CK_ULONG k = 0;

	cr_assert_eq(f->C_FindObjectsInit(h, t, 2), CKR_OK);
	cr_assert_eq(f->C_FindObjects(h, o, 4, &k), CKR_OK);
	cr_assert_eq(f->C_FindObjectsFinal(h), CKR_OK);
	if (n) {
		*n = k;
		return k == 1 ? o[0] : CK_INVALID_HANDLE;
	}
	cr_assert_eq(k, 1, "%lu %s objects \"%s\", expected one", (unsigned long)k,
	             cls == CKO_PRIVATE_KEY ? "private key" :
	             cls == CKO_CERTIFICATE ? "certificate" : "other", label);
	return o[0];
}

int
sgt_store_is_pg(void)
{
	const char *v = getenv("SG_TEST_STORE");

	return v && strcmp(v, "pg") == 0;
}

void
sgt_store_sqlite_only(const char *why)
{
	if (sgt_store_is_pg())
		cr_skip_test("%s (by design: SQLite store only)", why);
}

/* Every row of sql on the fixture's PostgreSQL store as sgsql.py prints
 * them (columns joined by '|', a row a line), through tests/lib/sgsql.py,
 * which translates the SQLite-only forms the tests write. */
static char *
pg_rows(const char *dir, const char *sql)
{
	char cmd[2048], *buf = NULL;
	const char *q;
	size_t k, len = 0, cap = 0, r;
	FILE *p;

	/* the SQL goes in single quotes: each ' becomes '\'' */
	k = (size_t)snprintf(cmd, sizeof(cmd), "python3 '%s/tests/lib/sgsql.py' '%s' '",
	                     sgt_env("SEALGATE_SOURCE"), dir);
	for (q = sql; *q && k + 8 < sizeof(cmd); q++) {
		if (*q == '\'') {
			memcpy(cmd + k, "'\\''", 4);
			k += 4;
		} else {
			cmd[k++] = *q;
		}
	}
	cr_assert(k + 8 < sizeof(cmd), "SQL too long: %s", sql);
	memcpy(cmd + k, "'", 2);
	p = popen(cmd, "r");
	cr_assert_not_null(p, "%s", cmd);
	do {
		if (cap - len < 4096) {
			cap = cap ? 2 * cap : 8192;
			buf = realloc(buf, cap);
			cr_assert_not_null(buf);
		}
		r = fread(buf + len, 1, cap - len - 1, p);
		len += r;
	} while (r > 0);
	buf[len] = '\0';
	cr_assert_eq(pclose(p), 0, "%s failed", cmd);
	return buf;
}

static int
pg_text(const char *dir, const char *sql, char *out, size_t outlen)
{
	char *rows = pg_rows(dir, sql);
	int rv = rows[0] ? 0 : -1;

	rows[strcspn(rows, "\n")] = '\0';
	snprintf(out, outlen, "%s", rows);
	free(rows);
	return rv;
}

char *
sgt_store_rows(const char *dir, const char *sql)
{
	char path[512], *buf;
	size_t len = 0, cap = 8192;
	sqlite3 *db;
	sqlite3_stmt *st;

	if (sgt_store_is_pg())
		return pg_rows(dir, sql);
	snprintf(path, sizeof(path), "%s/sealgate.db", dir);
	cr_assert_eq(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	sqlite3_busy_timeout(db, 5000);
	cr_assert_eq(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK, "%s", sqlite3_errmsg(db));
	buf = malloc(cap);
	cr_assert_not_null(buf);
	buf[0] = '\0';
	while (sqlite3_step(st) == SQLITE_ROW) {
		for (int i = 0; i < sqlite3_column_count(st); i++) {
			const unsigned char *t = sqlite3_column_text(st, i);
			size_t n = t ? strlen((const char *)t) : 0;

			if (len + n + 2 >= cap) {
				cap = 2 * (len + n + 2);
				buf = realloc(buf, cap);
				cr_assert_not_null(buf);
			}
			if (n)
				memcpy(buf + len, t, n);
			len += n;
			buf[len++] = i + 1 < sqlite3_column_count(st) ? '|' : '\n';
			buf[len] = '\0';
		}
	}
	sqlite3_finalize(st);
	sqlite3_close(db);
	return buf;
}

int
sgt_store_text(const char *dir, const char *sql, char *out, size_t outlen)
{
	char path[512];
	sqlite3 *db;
	sqlite3_stmt *st;
	int rv = -1;

	out[0] = '\0';
	if (sgt_store_is_pg())
		return pg_text(dir, sql, out, outlen);
	snprintf(path, sizeof(path), "%s/sealgate.db", dir);
	cr_assert_eq(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	sqlite3_busy_timeout(db, 5000);
	cr_assert_eq(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK, "%s", sqlite3_errmsg(db));
	if (sqlite3_step(st) == SQLITE_ROW) {
		const unsigned char *t = sqlite3_column_text(st, 0);

		snprintf(out, outlen, "%s", t ? (const char *)t : "");
		rv = 0;
	}
	sqlite3_finalize(st);
	sqlite3_close(db);
	return rv;
}

void
sgt_store_exec(const char *dir, const char *sql)
{
	char t[256];

	cr_assert(sgt_store_is_pg(), "sgt_store_exec is for a PostgreSQL store");
	(void)pg_text(dir, sql, t, sizeof(t));
}

long
sgt_store_number(const char *dir, const char *sql)
{
	char t[64];

	if (sgt_store_text(dir, sql, t, sizeof(t)) != 0)
		return -1;
	return strtol(t, NULL, 10);
}

/* One number from the audit table: SELECT what FROM audit WHERE where. */
static long
audit_number(const char *dir, const char *what, const char *where)
{
	char sql[1024];

	snprintf(sql, sizeof(sql), "SELECT %s FROM audit WHERE %s", what, where);
	return sgt_store_number(dir, sql);
}

long
sgt_count_records(const char *dir, const char *where)
{
	return audit_number(dir, "count(*)", where);
}

long
sgt_count_summarized(const char *dir, const char *where)
{
	char w[768];

	snprintf(w, sizeof(w), "action = 'refusals_suppressed' AND (%s)", where);
	return audit_number(dir, "coalesce(sum(json_extract(detail, '$.count')), 0)", w);
}

void
sgt_fixture(const char *cmd)
{
	char line[1024];

	snprintf(line, sizeof(line), "sh '%s' %s '%s'", sgt_env("SG_IT_FIXTURE"), cmd, sgt_env("SG_IT_DIR"));
	cr_assert_eq(system(line), 0, "%s failed", line);
}

int
sgt_conn(void)
{
	int fd = sg_connect_unix(sgt_env("SEALGATE_SOCKET"));

	cr_assert_geq(fd, 0, "connect: %s", strerror(-fd));
	return fd;
}

json_t *
sgt_call(int fd, json_t *req)
{
	json_t *rep = NULL;
	char err[256];

	cr_assert_eq(sg_call(fd, req, &rep, err, sizeof(err)), 0, "%s", err);
	json_decref(req);
	return rep;
}
