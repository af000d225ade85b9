/*
 * Unit tests of the notifications' pure parts: the notify: section of the
 * configuration (defaults, relative paths, every refusal with its
 * file:line:column, a webhook's URL never quoted back), the secrets'
 * files (mode and owner checked, one line), and the words of a notice
 * (the robots' Markdown made inert, the link, the plain text as typed).
 */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "protocol.h"
#include "notify/notify_conf.h"
#include "notify/send.h"

static const char *const head =
	"backend_token: none\n"
	"socket_path: /run/sg.sock\n"
	"store_path: /var/lib/sg.db\n"
	"policy_path: /etc/sg/policy.yaml\n";

static int
parse(const char *notify, struct gw_config **c, char *err, size_t errlen)
{
	char text[4096];

	snprintf(text, sizeof(text), "%s%s", head, notify);
	return gw_config_parse("/etc/sg/c.yaml", (const uint8_t *)text, strlen(text), c, err,
	                       errlen);
}

static void
refused(const char *notify, const char *want)
{
	struct gw_config *c = NULL;
	char err[2048] = "";

	cr_assert_eq(parse(notify, &c, err, sizeof(err)), -1, "loaded, expected %s", want);
	cr_assert_null(c);
	cr_expect_str_eq(err, want);
}

Test(notify_conf, defaults_and_paths)
{
	struct gw_config *c = NULL;
	char err[1024] = "";

	cr_assert_eq(parse("notify:\n  web_url: https://seal.example.com//\n"
	                   "  from: a@example.com\n"
	                   "  smtp: { url: \"smtps://relay:465\", user: u, password_file: smtp.pw }\n"
	                   "  webhooks:\n"
	                   "    - { name: r1, format: dingtalk, url: \"https://x/?access_token=T\", secret_file: s }\n"
	                   "    - { name: r2, department: sales, url_file: /etc/sg/r2.url }\n",
	                   &c, err, sizeof(err)), 0, "%s", err);
	cr_assert_not_null(c->notify);
	cr_assert_str_eq(c->notify->web_url, "https://seal.example.com");
	cr_assert_str_eq(c->notify->smtp_password_file, "/etc/sg/smtp.pw");
	cr_assert_eq(c->notify->n_webhooks, 2);
	cr_assert_eq(c->notify->webhooks[0].format, GW_WEBHOOK_DINGTALK);
	cr_assert_str_eq(c->notify->webhooks[0].secret_file, "/etc/sg/s");
	cr_assert_eq(c->notify->webhooks[1].format, GW_WEBHOOK_PLAIN);
	cr_assert_str_eq(c->notify->webhooks[1].department, "sales");
	cr_assert_eq(c->notify->retry_initial, 30);
	cr_assert_eq(c->notify->retry_max, 3600);
	cr_assert_eq(c->notify->max_tries, 10);
	cr_assert_eq(c->notify->timeout, 30);
	cr_assert_eq(c->notify->lease, 300);
	cr_assert_eq(c->notify->poll, 5);
	gw_config_free(&c);
	cr_assert_eq(parse("", &c, err, sizeof(err)), 0, "%s", err);
	cr_assert_null(c->notify, "no notify: no notices");
	gw_config_free(&c);
}

Test(notify_conf, refusals)
{
	refused("notify: { from: a@b }\n",
	        "/etc/sg/c.yaml:5:9: notify: web_url missing (required: the links of notices)");
	refused("notify: { web_url: ftp://x }\n",
	        "/etc/sg/c.yaml:5:20: notify: web_url must be http:// or https://, with no spaces");
	refused("notify: { web_url: https://x, colour: red }\n",
	        "/etc/sg/c.yaml:5:31: unknown key 'colour' in notify (known keys: web_url, from, smtp, "
	        "webhooks, retry_initial, retry_max, max_tries, timeout, lease, poll, ca_file)");
	refused("notify: { web_url: https://x, smtp: { url: \"smtp://r\" } }\n",
	        "/etc/sg/c.yaml:5:9: notify: from missing (required with smtp)");
	refused("notify: { web_url: https://x, from: a@b, smtp: { url: \"http://r\" } }\n",
	        "/etc/sg/c.yaml:5:55: notify: smtp: url must be smtp://HOST[:PORT] or smtps://HOST[:PORT]");
	refused("notify: { web_url: https://x, from: a@b, smtp: { url: \"smtp://r\", user: u } }\n",
	        "/etc/sg/c.yaml:5:48: notify: smtp: user and password_file go together");
	refused("notify: { web_url: https://x, webhooks: [ { name: a, url: \"https://h\", url_file: f } ] }\n",
	        "/etc/sg/c.yaml:5:43: webhook a: url or url_file (one of them)");
	refused("notify: { web_url: https://x, webhooks: [ { name: a, format: slack, url: \"https://h\" } ] }\n",
	        "/etc/sg/c.yaml:5:62: webhook a: format must be plain, dingtalk, wecom or feishu");
	refused("notify: { web_url: https://x, webhooks: [ { name: a, format: wecom, url: \"https://h\", secret_file: s } ] }\n",
	        "/etc/sg/c.yaml:5:100: webhook a: only dingtalk and feishu robots sign with a secret");
	refused("notify: { web_url: https://x, webhooks: [ { name: a, url: \"https://h\" }, { name: a, url: \"https://i\" } ] }\n",
	        "/etc/sg/c.yaml:5:74: webhook a: named twice");
	refused("notify: { web_url: https://x, webhooks: [ { name: \"a b\", url: \"https://h\" } ] }\n",
	        "/etc/sg/c.yaml:5:43: a webhook needs a name of at most 64 letters, digits, '-', '_', '.'");
	refused("notify: { web_url: https://x, timeout: 30, lease: 30 }\n",
	        "/etc/sg/c.yaml:5:9: notify: lease (30 s) must be longer than timeout (30 s)");
	refused("notify: { web_url: https://x, max_tries: 0 }\n",
	        "/etc/sg/c.yaml:5:42: max_tries must be at least 1 (got 0)");
}

/* A webhook's URL may carry the robot's token: a refusal names the
 * webhook, never the URL. */
Test(notify_conf, the_url_is_not_quoted)
{
	struct gw_config *c = NULL;
	char err[2048] = "";

	cr_assert_eq(parse("notify: { web_url: https://x, webhooks: [ { name: a, "
	                   "url: \"https://h/?access_token=SECRET TOKEN\" } ] }\n", &c, err,
	                   sizeof(err)), -1);
	cr_assert(strstr(err, "webhook a: url must be") != NULL, "%s", err);
	cr_assert(strstr(err, "SECRET") == NULL, "%s", err);
}

Test(notify_conf, secret_files)
{
	char dir[] = "/tmp/sg-nc-XXXXXX", p[128], err[512] = "", *s;
	int fd;

	cr_assert_not_null(mkdtemp(dir));
	snprintf(p, sizeof(p), "%s/s", dir);
	fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	cr_assert(fd >= 0);
	cr_assert_eq(write(fd, "sekrit\n", 7), 7);
	close(fd);
	s = gw_notify_read_secret(p, 512, err, sizeof(err));
	cr_assert_not_null(s, "%s", err);
	cr_assert_str_eq(s, "sekrit");
	sg_free_secret_str(s);
	cr_assert_eq(chmod(p, 0640), 0);
	cr_assert_null(gw_notify_read_secret(p, 512, err, sizeof(err)));
	cr_assert(strstr(err, "mode 0600 (it is") != NULL && strstr(err, "sekrit") == NULL, "%s", err);
	cr_assert_eq(chmod(p, 0600), 0);
	cr_assert_null(gw_notify_read_secret(p, 3, err, sizeof(err)), "over max");
	snprintf(p, sizeof(p), "rm -rf %s", dir);
	cr_assert_eq(system(p), 0);
}

Test(notify_words, markdown_inert_text_as_typed)
{
	struct gw_send_words w;
	const char *d = "{\"application\":42,\"link\":\"https://s/#/applications/42\","
	                "\"seal_name\":\"合同章\",\"applicant_name\":\"Eve](http://x)\","
	                "\"department\":\"sales\",\"reason\":\"![img](http://x/a.png) # big\\nline\","
	                "\"level\":1,\"levels\":2,\"approvers\":[\"Bob\",\"Carol\"]}";

	cr_assert_eq(gw_send_words("app_waiting", d, "https://s", false, &w), 0);
	cr_assert_str_eq(w.title, "Application #42 for the 合同章 waits for your approval");
	cr_assert_str_eq(w.link, "https://s/#/applications/42");
	cr_assert(strstr(w.text, "Reason: ![img](http://x/a.png) # big\nline\n") != NULL, "%s", w.text);
	cr_assert(strstr(w.text, "Approvers: Bob, Carol\n") != NULL, "%s", w.text);
	cr_assert(strstr(w.markdown, "](http://x") == NULL, "%s", w.markdown);
	cr_assert(strstr(w.markdown, "！［img］（http://x/a.png） ＃ big line") != NULL, "%s", w.markdown);
	cr_assert(strstr(w.markdown, "Eve］（http://x）") != NULL, "%s", w.markdown);
	cr_assert(strstr(w.markdown, "[Open the application](https://s/#/applications/42)") != NULL,
	          "%s", w.markdown);
	gw_send_words_clear(&w);
	cr_assert_eq(gw_send_words("app_waiting", "not json", "https://s", false, &w), -1);
}

/* The people's addresses (policy.c): one plain address, or refused with
 * the line, since it goes into an SMTP envelope and a header. */
#include "policy.h"

static int
policy_with(const char *email, struct gw_policy **p, char *err, size_t errlen)
{
	char text[2048];
	int n = snprintf(text, sizeof(text),
		"version: 1\n"
		"organization:\n"
		"  name: Co\n"
		"  timezone: UTC\n"
		"  departments:\n"
		"    - { id: hq, name: HQ }\n"
		"  people:\n"
		"    - { id: bob, department: hq, email: %s }\n"
		"seals: []\n", email);

	return gw_policy_parse("p.yaml", (const uint8_t *)text, (size_t)n, p, err, errlen);
}

Test(notify_policy, email)
{
	static const char *const bad[] = {
		"\"bob\"", "\"@example.com\"", "\"bob@\"", "\"a@b@c\"", "\"bob <b@x>\"",
		"\"b@x\\r\\nBcc: eve@y\"", "\"b,c@x\"",
	};
	struct gw_policy *p = NULL;
	char err[512] = "";

	cr_assert_eq(policy_with("bob@example.com", &p, err, sizeof(err)), 0, "%s", err);
	cr_assert_str_eq(gw_policy_person(p, "bob")->email, "bob@example.com");
	gw_policy_unref(&p);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		cr_assert_eq(policy_with(bad[i], &p, err, sizeof(err)), -1, "accepted %s", bad[i]);
		cr_assert(strstr(err, "p.yaml:8:") != NULL && strstr(err, "email must be one address") != NULL,
		          "%s: %s", bad[i], err);
	}
}
