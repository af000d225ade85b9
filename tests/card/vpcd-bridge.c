/*
 * vpcd-bridge: the virtual smartcard of the card suite. libcacard emulates a
 * CAC card whose keys and certificates live in an NSS database; this program
 * plugs that card into vsmartcard's vpcd reader driver (inside pcscd) over
 * TCP. Running = card in the reader; stopped = card pulled. It also keeps
 * the PIN try counter that libcacard's NSS emulation lacks, so the gateway's
 * PIN safety can be tested against a card that really counts.
 */
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <arpa/inet.h>
#include <time.h>
#include <unistd.h>

#include <libcacard.h>

#define READER_NAME "sealgate virtual card"
#define MSG_MAX     65536u        /* vpcd's length field is 16 bits */
#define ATR_MAX     40
#define CERTS_MAX   3

/* vpcd control codes (a 1-byte message) */
enum { VPCD_OFF = 0, VPCD_ON = 1, VPCD_RESET = 2, VPCD_ATR = 4 };

static struct {
	int tries;            /* PIN tries left; -1 = no counter (plain libcacard) */
	int max_tries;
	bool verified;        /* a VERIFY succeeded since the last power-up */
	const char *state;    /* file that keeps tries across "re-insertions" */
	unsigned long verifies; /* VERIFY commands with a PIN, for the tests' log */
} pin = { .tries = 3, .max_tries = 3 };

static void
state_save(void)
{
	FILE *f;

	if (!pin.state || !(f = fopen(pin.state, "w")))
		return;
	fprintf(f, "%d\n", pin.tries);
	fclose(f);
}

static void
state_load(void)
{
	FILE *f;
	int t;

	if (!pin.state || !(f = fopen(pin.state, "r")))
		return;
	if (fscanf(f, "%d", &t) == 1 && t >= 0 && t <= 15)
		pin.tries = t;
	fclose(f);
}

/* Reads exactly n bytes; 0 on success, -1 on EOF or error. */
static int
read_full(int fd, uint8_t *p, size_t n)
{
	int one = 1;

	while (n > 0) {
		/* vpcd waits for our answer before the next command: without
		 * QUICKACK every APDU would wait ~40 ms for a delayed ACK. */
		setsockopt(fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof(one));
		ssize_t k = read(fd, p, n);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return -1;
		p += k;
		n -= (size_t)k;
	}
	return 0;
}

static int
send_msg(int fd, const uint8_t *body, size_t len)
{
	uint8_t buf[2 + MSG_MAX];
	size_t off = 0;

	if (len >= MSG_MAX)
		return -1;
	buf[0] = (uint8_t)(len >> 8);
	buf[1] = (uint8_t)len;
	memcpy(buf + 2, body, len);
	len += 2;
	while (off < len) {
		ssize_t k = write(fd, buf + off, len - off);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return -1;
		off += (size_t)k;
	}
	return 0;
}

static size_t
sw(uint8_t *out, uint8_t sw1, uint8_t sw2)
{
	out[0] = sw1;
	out[1] = sw2;
	return 2;
}

/* VERIFY (INS 20, P1 00) with the counter a real card keeps: an empty one
 * asks for the tries left (63Cx) or the state (9000); a wrong PIN costs a
 * try; none left = blocked (6983) without asking the emulator at all. */
static size_t
verify(VReader *r, uint8_t *apdu, size_t len, uint8_t *out, size_t outcap)
{
	int outlen = (int)outcap;
	bool has_pin = len > 5 && apdu[4] != 0;

	if (!has_pin) {
		if (pin.tries == 0)
			return sw(out, 0x69, 0x83);
		return pin.verified ? sw(out, 0x90, 0x00) : sw(out, 0x63, (uint8_t)(0xC0 | pin.tries));
	}
	pin.verifies++;
	if (pin.tries == 0) {
		fprintf(stderr, "vpcd-bridge: VERIFY refused: PIN blocked\n");
		return sw(out, 0x69, 0x83);
	}
	if (vreader_xfr_bytes(r, apdu, (int)len, out, &outlen) != VREADER_OK || outlen < 2)
		return sw(out, 0x6F, 0x00);
	if (out[outlen - 2] == 0x90 && out[outlen - 1] == 0x00) {
		pin.tries = pin.max_tries;
		pin.verified = true;
		fprintf(stderr, "vpcd-bridge: VERIFY ok\n");
	} else {
		pin.tries--;
		pin.verified = false;
		fprintf(stderr, "vpcd-bridge: VERIFY wrong PIN, %d tries left\n", pin.tries);
		state_save();
		return pin.tries == 0 ? sw(out, 0x69, 0x83) : sw(out, 0x63, (uint8_t)(0xC0 | pin.tries));
	}
	state_save();
	return (size_t)outlen;
}

static int
serve(int fd, VReader *r, const uint8_t *atr, size_t atrlen)
{
	static uint8_t in[MSG_MAX], out[MSG_MAX];
	uint8_t hdr[2];
	size_t len, outlen;
	int k;

	for (;;) {
		if (read_full(fd, hdr, 2) != 0)
			return 0;   /* vpcd closed: pcscd stopped */
		len = (size_t)hdr[0] << 8 | hdr[1];
		if (len == 0 || read_full(fd, in, len) != 0)
			return -1;
		if (len == 1) {
			switch (in[0]) {
			case VPCD_OFF:
				vreader_power_off(r);
				pin.verified = false;
				break;
			case VPCD_ON:
			case VPCD_RESET:
				k = ATR_MAX;
				vreader_power_off(r);
				vreader_power_on(r, out, &k);
				pin.verified = false;
				break;
			case VPCD_ATR:
				/* asked on every presence poll: answer, never reset */
				if (send_msg(fd, atr, atrlen) != 0)
					return -1;
				break;
			default:
				fprintf(stderr, "vpcd-bridge: unknown control code %u\n", in[0]);
			}
			continue;
		}
		if (len >= 4 && in[1] == 0x20 && in[2] == 0x00 && pin.tries >= 0) {
			outlen = verify(r, in, len, out, sizeof(out));
		} else {
			k = (int)sizeof(out);
			if (vreader_xfr_bytes(r, in, (int)len, out, &k) != VREADER_OK || k < 2)
				outlen = sw(out, 0x6F, 0x00);
			else
				outlen = (size_t)k;
		}
		if (send_msg(fd, out, outlen) != 0)
			return -1;
	}
}

static void
usage(void)
{
	fprintf(stderr,
"usage: vpcd-bridge --db DIR --cert NICK [--cert NICK...] [--port N]\n"
"                   [--tries N | --no-pin-counter] [--state FILE]\n"
"  plugs a libcacard CAC card (keys and certificates in the NSS database DIR,\n"
"  card PIN = database password) into vpcd on 127.0.0.1:N (default 35963).\n"
"  --tries N: PIN tries left at start (default 3, the card's maximum);\n"
"  --state FILE keeps the counter across runs (re-insertions).\n");
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "db", required_argument, NULL, 'd' },
		{ "cert", required_argument, NULL, 'c' },
		{ "port", required_argument, NULL, 'p' },
		{ "tries", required_argument, NULL, 't' },
		{ "no-pin-counter", no_argument, NULL, 'n' },
		{ "state", required_argument, NULL, 's' },
		{ NULL, 0, NULL, 0 },
	};
	const char *db = NULL, *certs[CERTS_MAX];
	unsigned ncerts = 0, port = 35963;
	char args[4096];
	uint8_t atr[ATR_MAX];
	int c, atrlen = ATR_MAX, fd = -1, one = 1, rv = 1, n;
	VCardEmulOptions *o;
	VReader *r;
	struct sockaddr_in sa = { .sin_family = AF_INET };

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'd': db = optarg; break;
		case 'c':
			if (ncerts == CERTS_MAX) {
				fprintf(stderr, "vpcd-bridge: a CAC card holds at most %d certificates\n", CERTS_MAX);
				return 2;
			}
			certs[ncerts++] = optarg;
			break;
		case 'p': port = (unsigned)strtoul(optarg, NULL, 10); break;
		case 't': pin.tries = atoi(optarg); break;
		case 'n': pin.tries = -1; break;
		case 's': pin.state = optarg; break;
		default: usage(); return 2;
		}
	}
	if (!db || ncerts == 0 || port == 0 || port > 65535 || pin.tries > 15) {
		usage();
		return 2;
	}
	state_load();

	n = snprintf(args, sizeof(args), "db=\"sql:%s\" use_hw=no soft=(,%s,CAC,", db, READER_NAME);
	for (unsigned i = 0; i < ncerts && n > 0 && (size_t)n < sizeof(args); i++)
		n += snprintf(args + n, sizeof(args) - (size_t)n, ",%s", certs[i]);
	if (n <= 0 || (size_t)n + 2 > sizeof(args)) {
		fprintf(stderr, "vpcd-bridge: arguments too long\n");
		return 2;
	}
	strcat(args, ")");
	o = vcard_emul_options(args);
	if (!o || vcard_emul_init(o) != VCARD_EMUL_OK) {
		fprintf(stderr, "vpcd-bridge: libcacard cannot start on %s (certificates %s...)\n",
		        db, certs[0]);
		return 1;
	}
	r = vreader_get_reader_by_name(READER_NAME);
	if (!r || vreader_power_on(r, atr, &atrlen) != VREADER_OK) {
		fprintf(stderr, "vpcd-bridge: no emulated card (wrong certificate nickname?)\n");
		goto out;
	}

	/* vpcd may still be starting: try for 10 s. */
	sa.sin_port = htons((uint16_t)port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	for (int i = 0; i < 100; i++) {
		fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0)
			goto out;
		if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
			break;
		close(fd);
		fd = -1;
		nanosleep(&(struct timespec){ .tv_nsec = 100000000 }, NULL);
	}
	if (fd < 0) {
		fprintf(stderr, "vpcd-bridge: cannot reach vpcd on 127.0.0.1:%u\n", port);
		goto out;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	fprintf(stderr, "vpcd-bridge: card inserted (port %u, PIN tries %d)\n", port, pin.tries);
	rv = serve(fd, r, atr, (size_t)atrlen) == 0 ? 0 : 1;
	fprintf(stderr, "vpcd-bridge: reader gone; %lu PIN verifications\n", pin.verifies);
out:
	if (fd >= 0)
		close(fd);
	if (r)
		vreader_free(r);
	return rv;
}
