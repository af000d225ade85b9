/*
 * One try of a notice (send.h): its words from the event and the detail
 * stored with it, then libcurl — SMTP (smtp:// with optional STARTTLS and
 * login, or smtps://) for email, HTTP(S) POST for webhooks in sealgate's
 * JSON or the DingTalk, WeCom and Feishu robot formats (with their
 * signatures). Every message this file writes names a webhook by its
 * configured name, never by its URL, which may carry the robot's token.
 */
#include "send.h"
#include "notify.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "log.h"
#include "protocol.h"

#define RESPONSE_MAX (64u * 1024u)

static void
secret_free(char **s)
{
	if (*s != NULL) {
		OPENSSL_cleanse(*s, strlen(*s));
		free(*s);
		*s = NULL;
	}
}

void
gw_send_done(struct gw_notify_secrets *s)
{
	secret_free(&s->smtp_password);
	for (size_t i = 0; i < s->n; i++) {
		if (s->urls)
			secret_free(&s->urls[i]);
		if (s->signing)
			secret_free(&s->signing[i]);
	}
	free(s->urls);
	free(s->signing);
	memset(s, 0, sizeof(*s));
}

int
gw_send_init(const struct gw_notify_conf *nc, struct gw_notify_secrets *s, char *err,
             size_t errlen)
{
	char why[300];

	memset(s, 0, sizeof(*s));
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		sg_seterr(err, errlen, "notify: libcurl would not start");
		return -1;
	}
	if (nc->smtp_password_file != NULL &&
	    (s->smtp_password = gw_notify_read_secret(nc->smtp_password_file, GW_NOTIFY_SECRET_MAX,
	                                              why, sizeof(why))) == NULL) {
		sg_seterr(err, errlen, "notify: smtp password_file %s", why);
		goto fail;
	}
	s->n = nc->n_webhooks;
	s->urls = calloc(s->n ? s->n : 1, sizeof(*s->urls));
	s->signing = calloc(s->n ? s->n : 1, sizeof(*s->signing));
	if (s->urls == NULL || s->signing == NULL) {
		sg_seterr(err, errlen, "notify: out of memory");
		goto fail;
	}
	for (size_t i = 0; i < s->n; i++) {
		const struct gw_notify_webhook *w = &nc->webhooks[i];

		if (w->url != NULL)
			s->urls[i] = strdup(w->url);
		else
			s->urls[i] = gw_notify_read_secret(w->url_file, GW_NOTIFY_URL_MAX, why, sizeof(why));
		if (s->urls[i] == NULL) {
			sg_seterr(err, errlen, "notify: webhook %s: url_file %s", w->name,
			          w->url ? "out of memory" : why);
			goto fail;
		}
		if (strncasecmp(s->urls[i], "http://", 7) != 0 &&
		    strncasecmp(s->urls[i], "https://", 8) != 0) {
			sg_seterr(err, errlen, "notify: webhook %s: its URL must be http:// or https://",
			          w->name);
			goto fail;
		}
		if (w->secret_file != NULL &&
		    (s->signing[i] = gw_notify_read_secret(w->secret_file, GW_NOTIFY_SECRET_MAX, why,
		                                           sizeof(why))) == NULL) {
			sg_seterr(err, errlen, "notify: webhook %s: secret_file %s", w->name, why);
			goto fail;
		}
	}
	return 0;
fail:
	gw_send_done(s);
	return -1;
}

/* ---- the words ---- */

void
gw_send_words_clear(struct gw_send_words *w)
{
	free(w->title);
	free(w->text);
	free(w->markdown);
	free(w->link);
	memset(w, 0, sizeof(*w));
}

static const char *
get(json_t *d, const char *k)
{
	const char *s = json_string_value(json_object_get(d, k));
	return s ? s : "";
}

/* Text a person typed (a reason, a comment, a name), made inert in the
 * robots' Markdown: what would make a link, an image, a heading or
 * emphasis becomes its full-width form, and a new line a space. */
static void
md_put(FILE *f, const char *s)
{
	static const char from[] = "[]()<>*_#`|!~\\";
	static const char *const to[] = { "［", "］", "（", "）", "＜", "＞", "＊", "＿", "＃",
	                                    "｀", "｜", "！", "～", "＼" };

	for (; *s; s++) {
		const char *c = strchr(from, *s);

		if (c != NULL)
			fputs(to[c - from], f);
		else if (*s == '\n' || *s == '\r')
			fputc(' ', f);
		else
			fputc(*s, f);
	}
}

struct two {
	FILE *text, *md;
};

/* One line "Label: value" in both forms; nothing when value is empty. */
static void
line(struct two *o, const char *label, const char *value)
{
	if (value == NULL || value[0] == '\0')
		return;
	fprintf(o->text, "%s: %s\n", label, value);
	fprintf(o->md, "- **%s**: ", label);
	md_put(o->md, value);
	fputs("\n", o->md);
}

static void
say(struct two *o, const char *s)
{
	fputs(s, o->text);
	md_put(o->md, s);
}

int
gw_send_words(const char *event, const char *detail, const char *web_url, bool for_group,
              struct gw_send_words *w)
{
	json_t *d = json_loads(detail, 0, NULL);
	struct two o = { 0 };
	char *tb = NULL, *mb = NULL, num[32];
	size_t tl = 0, ml = 0;
	long long id;
	int rv = -1;

	memset(w, 0, sizeof(*w));
	if (!json_is_object(d))
		goto out;
	o.text = open_memstream(&tb, &tl);
	o.md = open_memstream(&mb, &ml);
	if (o.text == NULL || o.md == NULL)
		goto out;
	id = (long long)json_integer_value(json_object_get(d, "application"));
	if (json_is_string(json_object_get(d, "link")))
		w->link = strdup(get(d, "link"));
	else if (asprintf(&w->link, "%s/#/%s", web_url, strcmp(event, GW_NOTIFY_ALERT) == 0 ?
	                  "alerts" : "") < 0)
		w->link = NULL;
	if (strcmp(event, GW_NOTIFY_APP_WAITING) == 0) {
		json_t *names = json_object_get(d, "approvers");
		size_t i;
		json_t *v;
		char *who = NULL;
		size_t wl = 0;
		FILE *wf = open_memstream(&who, &wl);

		if (asprintf(&w->title, for_group ? "Application #%lld for the %s waits for approval" :
		             "Application #%lld for the %s waits for your approval", id,
		             get(d, "seal_name")) < 0)
			w->title = NULL;
		say(&o, get(d, "applicant_name"));
		fprintf(o.text, " (%s) applies to use the %s.\n", get(d, "department"), get(d, "seal_name"));
		fputs(" (", o.md);
		md_put(o.md, get(d, "department"));
		fputs(") applies to use the ", o.md);
		md_put(o.md, get(d, "seal_name"));
		fputs(".\n\n", o.md);
		line(&o, "Reason", get(d, "reason"));
		line(&o, "Document type", get(d, "document_type"));
		line(&o, "Business scope", get(d, "business_scope"));
		if (json_is_integer(json_object_get(d, "amount"))) {
			snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT,
			         json_integer_value(json_object_get(d, "amount")));
			line(&o, "Amount", num);
		}
		snprintf(num, sizeof(num), "%lld of %lld",
		         (long long)json_integer_value(json_object_get(d, "level")),
		         (long long)json_integer_value(json_object_get(d, "levels")));
		line(&o, "Level", num);
		if (wf != NULL) {
			json_array_foreach(names, i, v)
				fprintf(wf, "%s%s", i ? ", " : "", json_string_value(v) ? json_string_value(v) : "");
			fclose(wf);
			line(&o, "Approvers", who);
		}
		free(who);
		fprintf(o.text, "\nTo approve or reject it (you log in, with your second factor):\n%s\n",
		        w->link ? w->link : "");
	} else if (strcmp(event, GW_NOTIFY_APP_AUTHORIZED) == 0 ||
	           strcmp(event, GW_NOTIFY_APP_REJECTED) == 0) {
		bool yes = strcmp(event, GW_NOTIFY_APP_AUTHORIZED) == 0;

		if (asprintf(&w->title, yes ? "Application #%lld for the %s is authorized" :
		             "Application #%lld for the %s was rejected", id, get(d, "seal_name")) < 0)
			w->title = NULL;
		fprintf(o.text, "The application of %s to use the %s was %s", get(d, "applicant_name"),
		        get(d, "seal_name"), yes ? "authorized" : "rejected");
		fputs("The application of ", o.md);
		md_put(o.md, get(d, "applicant_name"));
		fputs(" to use the ", o.md);
		md_put(o.md, get(d, "seal_name"));
		fprintf(o.md, " was %s", yes ? "authorized" : "rejected");
		if (get(d, "by")[0]) {
			fprintf(o.text, " by %s", get(d, "by"));
			fputs(" by ", o.md);
			md_put(o.md, get(d, "by"));
		}
		fputs(".\n", o.text);
		fputs(".\n\n", o.md);
		line(&o, "Reason", get(d, "reason"));
		line(&o, "Comment", get(d, "comment"));
		if (yes) {
			snprintf(num, sizeof(num), "%lld", (long long)json_integer_value(json_object_get(d, "uses")));
			line(&o, "Uses", num);
		}
		fprintf(o.text, "\n%s\n", w->link ? w->link : "");
	} else {
		const char *k;
		json_t *v;
		const char *what = get(d, "title")[0] ? get(d, "title") : get(d, "rule");

		if (asprintf(&w->title, "Alert: %s", what[0] ? what : "a risk rule fired") < 0)
			w->title = NULL;
		json_object_foreach(d, k, v) {
			if (strcmp(k, "title") == 0 || strcmp(k, "link") == 0)
				continue;
			if (json_is_string(v))
				line(&o, k, json_string_value(v));
			else if (json_is_integer(v) || json_is_real(v) || json_is_boolean(v)) {
				char *s = json_dumps(v, JSON_ENCODE_ANY);
				line(&o, k, s);
				free(s);
			}
		}
		fprintf(o.text, "\n%s\n", w->link ? w->link : "");
	}
	if (w->link != NULL) {
		fputs("\n[", o.md);
		fputs(strcmp(event, GW_NOTIFY_ALERT) == 0 ? "Open the alerts" : "Open the application",
		      o.md);
		fprintf(o.md, "](%s)\n", w->link);
	}
	fclose(o.text);
	fclose(o.md);
	o.text = o.md = NULL;
	if (w->title == NULL || w->link == NULL || tb == NULL || mb == NULL)
		goto out;
	w->text = tb;
	w->markdown = mb;
	tb = mb = NULL;
	rv = 0;
out:
	if (o.text)
		fclose(o.text);
	if (o.md)
		fclose(o.md);
	free(tb);
	free(mb);
	json_decref(d);
	if (rv < 0)
		gw_send_words_clear(w);
	return rv;
}

/* ---- transfers ---- */

struct buf {
	char *p;
	size_t len, cap, off;
};

static size_t
collect(char *data, size_t size, size_t n, void *arg)
{
	struct buf *b = arg;
	size_t len = size * n;

	if (b->len + len > RESPONSE_MAX)
		len = b->len < RESPONSE_MAX ? RESPONSE_MAX - b->len : 0;   /* (the rest is dropped) */
	if (len > 0 && b->len + len + 1 > b->cap) {
		size_t cap = b->len + len + 1 + 1024;
		char *p = realloc(b->p, cap);
		if (p == NULL)
			return 0;
		b->p = p;
		b->cap = cap;
	}
	if (len > 0) {
		memcpy(b->p + b->len, data, len);
		b->len += len;
		b->p[b->len] = '\0';
	}
	return size * n;
}

static size_t
feed(char *out, size_t size, size_t n, void *arg)
{
	struct buf *b = arg;
	size_t room = size * n, left = b->len - b->off;

	if (left < room)
		room = left;
	memcpy(out, b->p + b->off, room);
	b->off += room;
	return room;
}

static int
progress(void *arg, curl_off_t a, curl_off_t b, curl_off_t c, curl_off_t d)
{
	(void)a; (void)b; (void)c; (void)d;
	return *(volatile int *)arg ? 1 : 0;   /* non-zero aborts the transfer */
}

static CURL *
easy(const struct gw_notify_conf *nc, volatile int *stop)
{
	CURL *c = curl_easy_init();

	if (c == NULL)
		return NULL;
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, (long)nc->timeout);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, (long)(nc->timeout < 10 ? nc->timeout : 10));
	curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, progress);
	curl_easy_setopt(c, CURLOPT_XFERINFODATA, (void *)stop);
	curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
	if (nc->ca_file != NULL)
		curl_easy_setopt(c, CURLOPT_CAINFO, nc->ca_file);
	return c;
}

/* base64 of n bytes (malloc'd), lines of 76 with CRLF when wrap. */
static char *
b64(const unsigned char *p, size_t n, bool wrap)
{
	size_t out = 4 * ((n + 2) / 3), lines = wrap ? out / 76 + 1 : 0;
	char *s = malloc(out + 2 * lines + 1), *q = s;

	if (s == NULL)
		return NULL;
	for (size_t i = 0; i < n; i += 57) {
		size_t k = n - i < 57 ? n - i : 57;
		int w = EVP_EncodeBlock((unsigned char *)q, p + i, (int)k);
		q += w;
		if (wrap) {
			*q++ = '\r';
			*q++ = '\n';
		}
	}
	*q = '\0';
	return s;
}

/* An RFC 2047 header value: as it is when plain ASCII, else encoded words
 * of base64 UTF-8, each at most 75 characters and never splitting a
 * character. */
static void
put_header_text(FILE *f, const char *s)
{
	bool ascii = true;

	for (const unsigned char *q = (const unsigned char *)s; *q; q++)
		if (*q >= 0x7f || *q < ' ')
			ascii = false;
	if (ascii) {
		fputs(s, f);
		return;
	}
	for (size_t i = 0, n = strlen(s); i < n;) {
		size_t k = n - i < 45 ? n - i : 45;   /* 45 bytes: 60 of base64 + 12 of framing */
		char *e;

		while (i + k < n && ((unsigned char)s[i + k] & 0xc0) == 0x80)
			k--;
		if ((e = b64((const unsigned char *)s + i, k, false)) == NULL)
			return;
		fprintf(f, "%s=?UTF-8?B?%s?=", i ? "\r\n " : "", e);
		free(e);
		i += k;
	}
}

/* The address inside "Name <addr>", or the whole. */
static void
bare_address(const char *from, char *out, size_t outlen)
{
	const char *lt = strrchr(from, '<'), *gt = lt ? strchr(lt, '>') : NULL;

	if (lt && gt && gt > lt + 1)
		snprintf(out, outlen, "%.*s", (int)(gt - lt - 1), lt + 1);
	else
		snprintf(out, outlen, "%s", from);
}

static void
send_email(const struct gw_notify_conf *nc, const struct gw_notify_secrets *s,
           const struct gw_outbox_notice *n, volatile int *stop, struct gw_send_result *r)
{
	struct gw_send_words w;
	struct buf msg = { 0 };
	char from[300], path[310], date[64], *body = NULL;
	const char *at;
	struct curl_slist *rcpt = NULL;
	CURL *c = NULL;
	CURLcode rc;
	FILE *f = NULL;
	time_t now = time(NULL);
	struct tm tm;

	if (nc->smtp_url == NULL) {
		snprintf(r->error, sizeof(r->error), "no SMTP relay is configured (notify: smtp)");
		return;
	}
	if (n->address == NULL) {
		/* Nothing another try could mend: recorded, not retried. */
		snprintf(r->error, sizeof(r->error), "%s has no email address in the policy",
		         n->recipient);
		return;
	}
	r->retry = true;
	if (gw_send_words(n->event, n->detail, nc->web_url, false, &w) < 0) {
		snprintf(r->error, sizeof(r->error), "the notice's words could not be made");
		r->retry = false;
		return;
	}
	bare_address(nc->from, from, sizeof(from));
	at = strrchr(from, '@');
	gmtime_r(&now, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S +0000", &tm);
	if ((f = open_memstream(&msg.p, &msg.len)) == NULL ||
	    (body = b64((const unsigned char *)w.text, strlen(w.text), true)) == NULL)
		goto oom;
	fprintf(f, "From: %s\r\nTo: <%s>\r\nSubject: ", nc->from, n->address);
	put_header_text(f, w.title);
	/* One Message-ID per notice, the same on every try: a relay that
	 * got a try whose answer was lost sees the next as the same mail. */
	fprintf(f, "\r\nDate: %s\r\nMessage-ID: <notice-%" PRId64 ".%" PRId64 "@%s>\r\n"
	        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=UTF-8\r\n"
	        "Content-Transfer-Encoding: base64\r\nAuto-Submitted: auto-generated\r\n"
	        "X-Sealgate-Event: %s\r\n\r\n%s", date, n->id, n->created,
	        at && at[1] ? at + 1 : "sealgate.invalid", n->event, body);
	if (fclose(f) != 0) {
		f = NULL;
		goto oom;
	}
	f = NULL;
	snprintf(path, sizeof(path), "<%s>", n->address);
	if ((c = easy(nc, stop)) == NULL || (rcpt = curl_slist_append(NULL, path)) == NULL)
		goto oom;
	snprintf(path, sizeof(path), "<%s>", from);
	curl_easy_setopt(c, CURLOPT_URL, nc->smtp_url);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "smtp,smtps");
	curl_easy_setopt(c, CURLOPT_MAIL_FROM, path);
	curl_easy_setopt(c, CURLOPT_MAIL_RCPT, rcpt);
	curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
	curl_easy_setopt(c, CURLOPT_READFUNCTION, feed);
	curl_easy_setopt(c, CURLOPT_READDATA, &msg);
	curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, (curl_off_t)msg.len);
	if (nc->starttls)
		curl_easy_setopt(c, CURLOPT_USE_SSL, (long)CURLUSESSL_ALL);
	if (nc->smtp_user != NULL) {
		curl_easy_setopt(c, CURLOPT_USERNAME, nc->smtp_user);
		curl_easy_setopt(c, CURLOPT_PASSWORD, s->smtp_password);
	}
	rc = curl_easy_perform(c);
	if (rc == CURLE_OK) {
		r->ok = true;
	} else {
		long code = 0;
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
		if (code != 0)
			snprintf(r->error, sizeof(r->error), "SMTP relay: %s (answer %ld)",
			         curl_easy_strerror(rc), code);
		else
			snprintf(r->error, sizeof(r->error), "SMTP relay: %s", curl_easy_strerror(rc));
	}
	goto out;
oom:
	snprintf(r->error, sizeof(r->error), "out of memory");
out:
	if (c != NULL) {
		/* (libcurl keeps a copy of the password: cleared with it) */
		curl_easy_setopt(c, CURLOPT_PASSWORD, "");
		curl_easy_cleanup(c);
	}
	curl_slist_free_all(rcpt);
	if (f != NULL)
		fclose(f);
	free(msg.p);
	free(body);
	gw_send_words_clear(&w);
}

/* HMAC-SHA256(key, msg) as base64 (malloc'd). */
static char *
hmac_b64(const char *key, size_t keylen, const char *msg, size_t msglen)
{
	unsigned char mac[32];
	unsigned int maclen = 0;

	if (HMAC(EVP_sha256(), key, (int)keylen, (const unsigned char *)msg, msglen, mac,
	         &maclen) == NULL)
		return NULL;
	return b64(mac, maclen, false);
}

static const char *const format_names[] = { "plain", "dingtalk", "wecom", "feishu" };

/* The robot's own verdict in a 2xx answer: DingTalk and WeCom say
 * errcode, Feishu code (older: StatusCode); 0 is done. */
static bool
robot_says_ok(enum gw_webhook_format f, const char *body, char *why, size_t whylen)
{
	json_t *j, *v;
	bool ok = true;

	if (f == GW_WEBHOOK_PLAIN)
		return true;
	j = body ? json_loads(body, 0, NULL) : NULL;
	if (!json_is_object(j)) {
		json_decref(j);
		return true;   /* (a 2xx with no JSON: taken as done) */
	}
	v = json_object_get(j, f == GW_WEBHOOK_FEISHU ? "code" : "errcode");
	if (v == NULL && f == GW_WEBHOOK_FEISHU)
		v = json_object_get(j, "StatusCode");
	if (json_is_integer(v) && json_integer_value(v) != 0) {
		ok = false;
		snprintf(why, whylen, "the robot answered error %" JSON_INTEGER_FORMAT,
		         json_integer_value(v));
	}
	json_decref(j);
	return ok;
}

static void
send_webhook(const struct gw_notify_conf *nc, const struct gw_notify_secrets *s,
             const struct gw_outbox_notice *n, volatile int *stop, struct gw_send_result *r)
{
	const char *name = n->channel + strlen("webhook:");
	const struct gw_notify_webhook *w = NULL;
	const char *secret = NULL, *url = NULL;
	struct gw_send_words words;
	struct buf resp = { 0 };
	struct curl_slist *hdr = NULL;
	json_t *body = NULL;
	char *json = NULL, *signed_url = NULL, *sig = NULL, *esc = NULL, *tosign = NULL, ts[32];
	CURL *c = NULL;
	CURLcode rc;
	long code = 0;

	for (size_t i = 0; i < nc->n_webhooks; i++)
		if (strcmp(nc->webhooks[i].name, name) == 0) {
			w = &nc->webhooks[i];
			url = s->urls[i];
			secret = s->signing[i];
		}
	if (w == NULL) {
		snprintf(r->error, sizeof(r->error), "no webhook named %s is configured", name);
		return;
	}
	r->format = format_names[w->format];
	r->retry = true;
	if (gw_send_words(n->event, n->detail, nc->web_url, true, &words) < 0) {
		snprintf(r->error, sizeof(r->error), "the notice's words could not be made");
		r->retry = false;
		return;
	}
	switch (w->format) {
	case GW_WEBHOOK_PLAIN: {
		json_t *d = json_loads(n->detail, 0, NULL);
		body = json_pack("{s:s,s:I,s:s,s:s,s:s,s:s,s:o}", "event", n->event,
		                 "notice", (json_int_t)n->id, "recipient", n->recipient,
		                 "title", words.title, "text", words.text, "link", words.link,
		                 "detail", d ? d : json_object());
		break;
	}
	case GW_WEBHOOK_DINGTALK:
		body = json_pack("{s:s,s:{s:s,s:s}}", "msgtype", "markdown", "markdown",
		                 "title", words.title, "text", words.markdown);
		if (secret != NULL) {
			/* timestamp (ms) + "\n" + secret, HMAC-SHA256 keyed with the
			 * secret, base64, URL-encoded: DingTalk's signed robot. */
			struct timespec now;
			clock_gettime(CLOCK_REALTIME, &now);
			snprintf(ts, sizeof(ts), "%lld", (long long)now.tv_sec * 1000 + now.tv_nsec / 1000000);
			if (asprintf(&tosign, "%s\n%s", ts, secret) < 0)
				tosign = NULL;
			sig = tosign ? hmac_b64(secret, strlen(secret), tosign, strlen(tosign)) : NULL;
			esc = sig ? curl_easy_escape(NULL, sig, 0) : NULL;
			if (esc == NULL || asprintf(&signed_url, "%s%ctimestamp=%s&sign=%s", url,
			                            strchr(url, '?') ? '&' : '?', ts, esc) < 0) {
				signed_url = NULL;
				goto oom;
			}
			url = signed_url;
		}
		break;
	case GW_WEBHOOK_WECOM:
		body = json_pack("{s:s,s:{s:s}}", "msgtype", "markdown", "markdown", "content",
		                 words.markdown);
		break;
	case GW_WEBHOOK_FEISHU: {
		char *t = NULL;
		if (asprintf(&t, "%s\n%s", words.title, words.text) < 0)
			goto oom;
		body = json_pack("{s:s,s:{s:s}}", "msg_type", "text", "content", "text", t);
		free(t);
		if (body != NULL && secret != NULL) {
			/* Feishu: the key is timestamp (s) + "\n" + secret, the
			 * message empty; base64, in the body. */
			snprintf(ts, sizeof(ts), "%lld", (long long)time(NULL));
			if (asprintf(&tosign, "%s\n%s", ts, secret) < 0) {
				tosign = NULL;
				goto oom;
			}
			if ((sig = hmac_b64(tosign, strlen(tosign), "", 0)) == NULL)
				goto oom;
			json_object_set_new(body, "timestamp", json_string(ts));
			json_object_set_new(body, "sign", json_string(sig));
		}
		break;
	}
	}
	if (body == NULL || (json = json_dumps(body, JSON_COMPACT)) == NULL)
		goto oom;
	if ((c = easy(nc, stop)) == NULL ||
	    (hdr = curl_slist_append(NULL, "Content-Type: application/json; charset=utf-8")) == NULL)
		goto oom;
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdr);
	curl_easy_setopt(c, CURLOPT_POSTFIELDS, json);
	curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(json));
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &resp);
	curl_easy_setopt(c, CURLOPT_USERAGENT, "sealgate-notify");
	rc = curl_easy_perform(c);
	if (rc != CURLE_OK) {
		snprintf(r->error, sizeof(r->error), "webhook %s: %s", w->name, curl_easy_strerror(rc));
		goto out;
	}
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
	if (code < 200 || code > 299) {
		/* A 4xx other than 408 and 429 will say the same next time. */
		r->retry = code >= 500 || code == 408 || code == 429;
		snprintf(r->error, sizeof(r->error), "webhook %s: HTTP %ld", w->name, code);
		goto out;
	}
	if (!robot_says_ok(w->format, resp.p, r->error, sizeof(r->error))) {
		char why[sizeof(r->error)];
		memcpy(why, r->error, sizeof(why));
		snprintf(r->error, sizeof(r->error), "webhook %s: %.200s", w->name, why);
		goto out;
	}
	r->ok = true;
	goto out;
oom:
	snprintf(r->error, sizeof(r->error), "webhook %s: out of memory", w->name);
out:
	if (c != NULL)
		curl_easy_cleanup(c);
	curl_slist_free_all(hdr);
	json_decref(body);
	free(json);
	free(resp.p);
	if (signed_url != NULL)
		OPENSSL_cleanse(signed_url, strlen(signed_url));
	free(signed_url);
	curl_free(esc);
	free(sig);
	if (tosign != NULL)
		OPENSSL_cleanse(tosign, strlen(tosign));
	free(tosign);
	gw_send_words_clear(&words);
}

void
gw_send_notice(const struct gw_notify_conf *nc, const struct gw_notify_secrets *s,
               const char *instance, const struct gw_outbox_notice *n, volatile int *stop,
               struct gw_send_result *r)
{
	(void)instance;
	memset(r, 0, sizeof(*r));
	if (strcmp(n->channel, "email") == 0)
		send_email(nc, s, n, stop, r);
	else if (strncmp(n->channel, "webhook:", 8) == 0)
		send_webhook(nc, s, n, stop, r);
	else
		snprintf(r->error, sizeof(r->error), "no channel %s", n->channel);
}
