/*
 * The module's configuration file (docs/clients.md, module/transport_conf.c)
 * against the in-process fake gateway: the gateway and account it names,
 * the per-user file, SEALGATE_CONF, the environment over the file, and a
 * bad file failing C_Initialize with its reason on stderr (never stdout).
 */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <criterion/redirect.h>

#include "pkcs11-3.h"
#include "fakegw.h"

static struct fakegw *fg;
static void *dl;
static CK_FUNCTION_LIST_3_0 *p11;
static char dir[] = "/tmp/sg-conf-XXXXXX";

static void
load_module(void)
{
	CK_C_GetInterface get;
	CK_INTERFACE *itf = NULL;
	CK_VERSION v3 = { 3, 0 };
	const char *p = getenv("SEALGATE_MODULE");

	dl = dlopen(p != NULL && p[0] ? p : SGM_MODULE_PATH, RTLD_NOW | RTLD_LOCAL);
	cr_assert_not_null(dl, "dlopen: %s", dlerror());
	get = (CK_C_GetInterface)dlsym(dl, "C_GetInterface");
	cr_assert_not_null(get);
	cr_assert_eq(get((CK_UTF8CHAR_PTR)"PKCS 11", &v3, &itf, 0), CKR_OK);
	p11 = itf->pFunctionList;
}

static void
setup(void)
{
	cr_assert_not_null(mkdtemp(dir));
	fg = fakegw_new();
	cr_assert_not_null(fg);
	cr_assert_eq(fakegw_start(fg, "run-1"), 0);
	unsetenv("SEALGATE_SOCKET");
	unsetenv("SEALGATE_GATEWAY");
	unsetenv("SEALGATE_USER");
	unsetenv("SEALGATE_CONF");
	/* No user file of the machine's own person is read. */
	setenv("XDG_CONFIG_HOME", dir, 1);
	load_module();
}

static void
teardown(void)
{
	char cmd[128];

	if (p11 != NULL)
		p11->C_Finalize(NULL);
	fakegw_stop(fg);
	fakegw_free(fg);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd) != 0)
		cr_log_warn("%s failed", cmd);
}

static void
write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	cr_assert_not_null(f, "%s", path);
	fputs(text, f);
	fclose(f);
}

/* A file in dir with text; its path in out. */
static void
conf(char *out, size_t len, const char *name, const char *text)
{
	snprintf(out, len, "%s/%s", dir, name);
	write_file(out, text);
}

/* Logs in as whoever the module chose and returns that user. */
static void
login_user(char *user, size_t len)
{
	CK_SLOT_ID slots[2];
	CK_ULONG n = 2;
	CK_SESSION_HANDLE s;

	cr_assert_eq(p11->C_GetSlotList(CK_TRUE, slots, &n), CKR_OK);
	cr_assert_eq(n, 1, "the token is seen through the configured gateway");
	cr_assert_eq(p11->C_OpenSession(slots[0], CKF_SERIAL_SESSION, NULL, NULL, &s), CKR_OK);
	cr_assert_eq(p11->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR)FAKE_PIN, strlen(FAKE_PIN)), CKR_OK);
	fakegw_last_user(fg, user, len);
}

TestSuite(conf, .init = setup, .fini = teardown);

Test(conf, sealgate_conf_names_the_gateway_and_the_account)
{
	char path[512], text[512], user[64];
	CK_C_INITIALIZE_ARGS args = { .flags = CKF_OS_LOCKING_OK };

	snprintf(text, sizeof(text), "# the seal room\n\ngateway = unix:%s\n  user  =  dave  \n",
	         fakegw_path(fg));
	conf(path, sizeof(path), "named.conf", text);
	setenv("SEALGATE_CONF", path, 1);
	cr_assert_eq(p11->C_Initialize(&args), CKR_OK);
	login_user(user, sizeof(user));
	cr_assert_str_eq(user, "dave");
	cr_assert_gt(fakegw_hello_count(fg), 0);
}

Test(conf, the_user_file_under_xdg_config_home)
{
	char sub[512], path[600], text[512], user[64];
	CK_C_INITIALIZE_ARGS args = { .flags = CKF_OS_LOCKING_OK };

	snprintf(sub, sizeof(sub), "%s/sealgate", dir);
	cr_assert_eq(mkdir(sub, 0700), 0);
	snprintf(path, sizeof(path), "%s/sealgate.conf", sub);
	snprintf(text, sizeof(text), "gateway = unix:%s\nuser = alice\n", fakegw_path(fg));
	write_file(path, text);
	cr_assert_eq(p11->C_Initialize(&args), CKR_OK);
	login_user(user, sizeof(user));
	cr_assert_str_eq(user, "alice");
}

Test(conf, the_environment_overrides_the_file)
{
	char path[512], user[64];
	CK_C_INITIALIZE_ARGS args = { .flags = CKF_OS_LOCKING_OK };

	conf(path, sizeof(path), "stale.conf", "gateway = unix:/nonexistent/sealgated.sock\nuser = alice\n");
	setenv("SEALGATE_CONF", path, 1);
	setenv("SEALGATE_SOCKET", fakegw_path(fg), 1);
	setenv("SEALGATE_USER", "bob", 1);
	cr_assert_eq(p11->C_Initialize(&args), CKR_OK);
	login_user(user, sizeof(user));
	cr_assert_str_eq(user, "bob");
}

/* A refused file: C_Initialize fails, stderr says why and where, and the
 * application's stdout gets nothing. */
static void
refused(const char *text, const char *needle)
{
	char path[512], err[2048] = "", out[64] = "";
	CK_C_INITIALIZE_ARGS args = { .flags = CKF_OS_LOCKING_OK };
	size_t n;

	if (text != NULL)
		conf(path, sizeof(path), "bad.conf", text);
	else
		snprintf(path, sizeof(path), "%s/absent.conf", dir);
	setenv("SEALGATE_CONF", path, 1);
	cr_assert_eq(p11->C_Initialize(&args), CKR_GENERAL_ERROR);
	p11 = NULL;
	fflush(stderr);
	fflush(stdout);
	n = fread(err, 1, sizeof(err) - 1, cr_get_redirected_stderr());
	err[n] = '\0';
	n = fread(out, 1, sizeof(out) - 1, cr_get_redirected_stdout());
	cr_assert_eq(n, 0, "nothing on stdout: %s", out);
	cr_assert(strstr(err, needle) != NULL, "stderr \"%s\" says \"%s\"", err, needle);
	cr_assert(strstr(err, path) != NULL || text == NULL || strstr(needle, ":") == NULL,
	          "stderr names the file");
}

static void
setup_redirected(void)
{
	cr_redirect_stderr();
	cr_redirect_stdout();
	setup();
}

TestSuite(bad, .init = setup_redirected, .fini = teardown);

Test(bad, an_unknown_key_is_refused_with_file_and_line)
{
	refused("gateway = unix:/run/x.sock\ngatway = tls://a:1\n", "bad.conf:2: unknown key \"gatway\"");
}

Test(bad, plaintext_tcp_is_refused)
{
	refused("gateway = tcp://seals.example:8443\n", "there is no plaintext TCP");
}

Test(bad, a_bad_port_is_refused)
{
	refused("gateway = tls://seals.example:99999\n", "bad.conf:1:");
}

Test(bad, a_line_without_a_value_is_refused)
{
	refused("gateway\n", "bad.conf:1: want KEY = VALUE");
}

Test(bad, a_named_file_that_is_not_there_is_refused)
{
	refused(NULL, "absent.conf: No such file");
}

Test(bad, tls_without_its_files_is_refused)
{
	refused("gateway = tls://seals.example:8443\n", "must name the site CA");
}

Test(bad, an_open_device_key_is_refused)
{
	char key[512], text[1024];

	snprintf(key, sizeof(key), "%s/device.key", dir);
	write_file(key, "not a key\n");
	chmod(key, 0644);
	snprintf(text, sizeof(text), "gateway = tls://seals.example:8443\nca = ca.pem\n"
	         "cert = device.pem\nkey = device.key\n");
	refused(text, "the device key is readable by others");
}
