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

/* One number from the audit table: SELECT what FROM audit WHERE where. */
static long
audit_number(const char *dir, const char *what, const char *where)
{
	char path[512], sql[1024];
	sqlite3 *db;
	sqlite3_stmt *st;
	long n = -1;

	snprintf(path, sizeof(path), "%s/sealgate.db", dir);
	cr_assert_eq(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	sqlite3_busy_timeout(db, 5000);
	snprintf(sql, sizeof(sql), "SELECT %s FROM audit WHERE %s", what, where);
	cr_assert_eq(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK, "%s", sqlite3_errmsg(db));
	if (sqlite3_step(st) == SQLITE_ROW)
		n = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	sqlite3_close(db);
	return n;
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
