/*
 * The relay to sealgated: one Unix-socket connection per request (the
 * gateway caps the front's connections as a known uid's), the request
 * carrying "via" and the person's gateway session. Nothing is decided
 * here: the gateway's reply is the answer.
 */
#include "web.h"

#include <string.h>
#include <unistd.h>

#include "protocol.h"

/* The browser's User-Agent as the gateway records it: printable ASCII
 * (a header may hold any bytes, a JSON string only UTF-8), at most 255. */
static void
agent_clean(char *dst, size_t len, const char *src)
{
	size_t o = 0;

	for (; src != NULL && *src != '\0' && o + 1 < len; src++)
		dst[o++] = (*src >= 0x20 && *src < 0x7f) ? *src : '?';
	dst[o] = '\0';
}

json_t *
web_gw_call(const char *socket, json_t *req, const char *sess, const char *remote,
            const char *agent, char *err, size_t errlen)
{
	json_t *rep = NULL;
	char ua[256];
	int fd = -1, rc;

	if (req == NULL) {
		sg_seterr(err, errlen, "out of memory");
		return NULL;
	}
	agent_clean(ua, sizeof(ua), agent);
	json_object_set_new(req, "via", json_pack("{s:s,s:s}", "remote", remote, "agent", ua));
	if (sess != NULL)
		json_object_set_new(req, "session", json_string(sess));
	fd = sg_connect_unix(socket);
	if (fd < 0) {
		sg_seterr(err, errlen, "the gateway (%s) cannot be reached: %s", socket, strerror(-fd));
		goto out;
	}
	rc = sg_call(fd, req, &rep, err, errlen);
	if (rc < 0) {
		rep = NULL;
		if (err != NULL && err[0] == '\0')
			sg_seterr(err, errlen, "the gateway did not answer: %s", strerror(-rc));
	}
out:
	if (fd >= 0)
		close(fd);
	sg_msg_wipe_secrets(req);
	json_decref(req);
	return rep;
}
