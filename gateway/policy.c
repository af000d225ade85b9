/*
 * The seal policy (docs/policy.md): loads and validates the YAML file into
 * an immutable, reference-counted struct gw_policy, and evaluates it
 * purely — who may use a seal, which approval rule applies, who approves
 * each level, time windows and quota days in the seal's own time zone,
 * and the human-readable explanation of all of it.
 */
#include "policy.h"
#include "store.h"
#include "risk.h"
#include "yamlutil.h"
#include "sealimg.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <p11-kit/pkcs11.h>

#define MAX_ENTRIES   100000u   /* departments, people, seals, act_as each */
#define MAX_SITES     64u       /* sites of one group */
#define MAX_RULES     64u
#define MAX_LEVELS    16u
#define MAX_WINDOWS   64u
#define MAX_UP        32
#define MAX_ID        64
#define TZ_FILE_MAX   (256u * 1024)
#define TZ_DEFAULT_DIR "/usr/share/zoneinfo"

/* ------------------------------------------------------------------ */
/* Mechanisms a seal may allow, by their PKCS#11 names without CKM_.   */

static const struct {
	const char *name;
	unsigned long mech;
} mechanisms[] = {
	{ "RSA_PKCS", CKM_RSA_PKCS },
	{ "RSA_X_509", CKM_RSA_X_509 },
	{ "RSA_PKCS_PSS", CKM_RSA_PKCS_PSS },
	{ "SHA1_RSA_PKCS", CKM_SHA1_RSA_PKCS },
	{ "SHA224_RSA_PKCS", CKM_SHA224_RSA_PKCS },
	{ "SHA256_RSA_PKCS", CKM_SHA256_RSA_PKCS },
	{ "SHA384_RSA_PKCS", CKM_SHA384_RSA_PKCS },
	{ "SHA512_RSA_PKCS", CKM_SHA512_RSA_PKCS },
	{ "SHA1_RSA_PKCS_PSS", CKM_SHA1_RSA_PKCS_PSS },
	{ "SHA224_RSA_PKCS_PSS", CKM_SHA224_RSA_PKCS_PSS },
	{ "SHA256_RSA_PKCS_PSS", CKM_SHA256_RSA_PKCS_PSS },
	{ "SHA384_RSA_PKCS_PSS", CKM_SHA384_RSA_PKCS_PSS },
	{ "SHA512_RSA_PKCS_PSS", CKM_SHA512_RSA_PKCS_PSS },
	{ "ECDSA", CKM_ECDSA },
	{ "ECDSA_SHA1", CKM_ECDSA_SHA1 },
	{ "ECDSA_SHA224", CKM_ECDSA_SHA224 },
	{ "ECDSA_SHA256", CKM_ECDSA_SHA256 },
	{ "ECDSA_SHA384", CKM_ECDSA_SHA384 },
	{ "ECDSA_SHA512", CKM_ECDSA_SHA512 },
	{ "EDDSA", CKM_EDDSA },
};

int
gw_policy_mechanism_from_name(const char *name, unsigned long *mech)
{
	if (strncmp(name, "CKM_", 4) == 0)
		name += 4;
	for (size_t i = 0; i < sizeof(mechanisms) / sizeof(mechanisms[0]); i++) {
		if (strcmp(mechanisms[i].name, name) == 0) {
			*mech = mechanisms[i].mech;
			return 0;
		}
	}
	return -1;
}

const char *
gw_policy_mechanism_name(unsigned long mech)
{
	for (size_t i = 0; i < sizeof(mechanisms) / sizeof(mechanisms[0]); i++)
		if (mechanisms[i].mech == mech)
			return mechanisms[i].name;
	return NULL;
}

bool
gw_policy_mechanism_allowed(const struct gw_seal *seal, unsigned long mech)
{
	if (seal->n_mechanisms == 0)
		return true;
	for (size_t i = 0; i < seal->n_mechanisms; i++)
		if (seal->mechanisms[i] == mech)
			return true;
	return false;
}

/* ------------------------------------------------------------------ */
/* Calendar arithmetic (proleptic Gregorian, days since 1970-01-01).   */

static int64_t
floor_div(int64_t a, int64_t b)
{
	int64_t q = a / b;
	if (a % b != 0 && ((a < 0) != (b < 0)))
		q--;
	return q;
}

static int64_t
floor_mod(int64_t a, int64_t b)
{
	return a - floor_div(a, b) * b;
}

/* H. Hinnant's days_from_civil / civil_from_days. */
static int64_t
days_from_civil(int64_t y, unsigned m, unsigned d)
{
	int64_t era, yoe, doy, doe;

	y -= m <= 2;
	era = floor_div(y, 400);
	yoe = y - era * 400;
	doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

static void
civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
	int64_t era, doe, yoe, doy, mp;

	z += 719468;
	era = floor_div(z, 146097);
	doe = z - era * 146097;
	yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	mp = (5 * doy + 2) / 153;
	*d = (unsigned)(doy - (153 * mp + 2) / 5 + 1);
	*m = (unsigned)(mp < 10 ? mp + 3 : mp - 9);
	*y = yoe + era * 400 + (*m <= 2);
}

static bool
is_leap(int64_t y)
{
	return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static unsigned
month_days(int64_t y, unsigned m)
{
	static const unsigned md[12] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	return m == 2 && is_leap(y) ? 29 : md[m - 1];
}

/* ------------------------------------------------------------------ */
/* Time zones: TZif files (RFC 8536) read once at load, with the POSIX
 * TZ footer for instants after the last transition. We do not set TZ and
 * call tzset/localtime_r: that is process-global state, racy with other
 * threads and with the gateway's own log timestamps. */

struct tz_date {
	char kind;                    /* 'M' month.week.day, 'J' 1..365 no leap, 'D' 0..365 */
	int m, w, d, n;
	int32_t time;                 /* seconds after local midnight, may exceed a day */
};

struct gw_tz {
	char *name;
	int64_t *trans;
	uint8_t *trans_type;
	size_t n_trans;
	int32_t *type_off;
	size_t n_types;
	bool has_rule, has_dst;
	int32_t std_off, dst_off;     /* seconds east of UTC */
	struct tz_date start, end;
};

const char *
gw_tz_name(const struct gw_tz *zone)
{
	return zone->name;
}

static void
tz_free(struct gw_tz *z)
{
	if (z == NULL)
		return;
	free(z->name);
	free(z->trans);
	free(z->trans_type);
	free(z->type_off);
	free(z);
}

static const char *
tz_abbr_skip(const char *s)
{
	const char *b = s;

	if (*s == '<') {
		for (s++; *s != '>'; s++)
			if (!isalnum((unsigned char)*s) && *s != '+' && *s != '-')
				return NULL;
		return s - b >= 4 ? s + 1 : NULL;
	}
	while (isalpha((unsigned char)*s))
		s++;
	return s - b >= 3 ? s : NULL;
}

/* [+-]hh[:mm[:ss]] with hh <= maxh; RFC 8536 allows up to 167 for rule times. */
static const char *
tz_hms(const char *s, int32_t *out, int maxh)
{
	int sign = 1, nd = 0;
	long h = 0, m = 0, sec = 0;

	if (*s == '+' || *s == '-')
		sign = *s++ == '-' ? -1 : 1;
	while (isdigit((unsigned char)*s) && nd < 3) {
		h = h * 10 + (*s++ - '0');
		nd++;
	}
	if (nd == 0 || h > maxh)
		return NULL;
	if (*s == ':') {
		if (!isdigit((unsigned char)s[1]) || !isdigit((unsigned char)s[2]))
			return NULL;
		m = (s[1] - '0') * 10 + (s[2] - '0');
		s += 3;
		if (*s == ':') {
			if (!isdigit((unsigned char)s[1]) || !isdigit((unsigned char)s[2]))
				return NULL;
			sec = (s[1] - '0') * 10 + (s[2] - '0');
			s += 3;
		}
		if (m > 59 || sec > 59)
			return NULL;
	}
	*out = (int32_t)(sign * (h * 3600 + m * 60 + sec));
	return s;
}

static const char *
tz_num(const char *s, int *out, int lo, int hi)
{
	int v = 0, nd = 0;

	while (isdigit((unsigned char)*s) && nd < 3) {
		v = v * 10 + (*s++ - '0');
		nd++;
	}
	if (nd == 0 || v < lo || v > hi)
		return NULL;
	*out = v;
	return s;
}

static const char *
tz_date_parse(const char *s, struct tz_date *d)
{
	memset(d, 0, sizeof(*d));
	if (*s == 'M') {
		d->kind = 'M';
		if ((s = tz_num(s + 1, &d->m, 1, 12)) == NULL || *s != '.' ||
		    (s = tz_num(s + 1, &d->w, 1, 5)) == NULL || *s != '.' ||
		    (s = tz_num(s + 1, &d->d, 0, 6)) == NULL)
			return NULL;
	} else if (*s == 'J') {
		d->kind = 'J';
		if ((s = tz_num(s + 1, &d->n, 1, 365)) == NULL)
			return NULL;
	} else {
		d->kind = 'D';
		if ((s = tz_num(s, &d->n, 0, 365)) == NULL)
			return NULL;
	}
	d->time = 7200;
	if (*s == '/')
		s = tz_hms(s + 1, &d->time, 167);
	return s;
}

static int
tz_posix_parse(struct gw_tz *z, const char *s)
{
	int32_t off;

	if (*s == '\0')
		return 0;             /* no rule: the last transition stays in force */
	if ((s = tz_abbr_skip(s)) == NULL || (s = tz_hms(s, &off, 24)) == NULL)
		return -1;
	z->has_rule = true;
	z->std_off = -off;            /* POSIX counts west of UTC */
	if (*s == '\0')
		return 0;
	if ((s = tz_abbr_skip(s)) == NULL)
		return -1;
	z->has_dst = true;
	z->dst_off = z->std_off + 3600;
	if (*s != ',' && *s != '\0') {
		if ((s = tz_hms(s, &off, 24)) == NULL)
			return -1;
		z->dst_off = -off;
	}
	if (*s == '\0') {             /* POSIX's implementation-defined default */
		tz_date_parse("M3.2.0", &z->start);
		tz_date_parse("M11.1.0", &z->end);
		return 0;
	}
	if (*s != ',' || (s = tz_date_parse(s + 1, &z->start)) == NULL || *s != ',' ||
	    (s = tz_date_parse(s + 1, &z->end)) == NULL || *s != '\0')
		return -1;
	return 0;
}

static int64_t
tz_rule_day(const struct tz_date *d, int64_t year)
{
	int64_t first, day;

	switch (d->kind) {
	case 'J':
		day = days_from_civil(year, 1, 1) + d->n - 1;
		return is_leap(year) && d->n >= 60 ? day + 1 : day;
	case 'D':
		return days_from_civil(year, 1, 1) + d->n;
	default:
		first = days_from_civil(year, (unsigned)d->m, 1);
		day = first + floor_mod(d->d - floor_mod(first + 4, 7), 7) + 7 * (d->w - 1);
		while (day >= first + month_days(year, (unsigned)d->m))
			day -= 7;
		return day;
	}
}

static int32_t
tz_rule_offset(const struct gw_tz *z, int64_t t)
{
	int64_t y, s, e;
	unsigned m, d;

	if (!z->has_dst)
		return z->std_off;
	civil_from_days(floor_div(t + z->std_off, 86400), &y, &m, &d);
	/* Start is given in standard time, end in daylight time. */
	s = tz_rule_day(&z->start, y) * 86400 + z->start.time - z->std_off;
	e = tz_rule_day(&z->end, y) * 86400 + z->end.time - z->dst_off;
	if (s < e)
		return t >= s && t < e ? z->dst_off : z->std_off;
	return t >= e && t < s ? z->std_off : z->dst_off;   /* southern hemisphere */
}

long
gw_tz_offset(const struct gw_tz *z, time_t tt)
{
	int64_t t = (int64_t)tt;
	size_t lo, hi;

	if (z->has_rule && (z->n_trans == 0 || t >= z->trans[z->n_trans - 1]))
		return tz_rule_offset(z, t);
	if (z->n_trans == 0 || t < z->trans[0])
		return z->type_off[0];
	lo = 0;
	hi = z->n_trans;                /* trans[lo] <= t < trans[hi] */
	while (hi - lo > 1) {
		size_t mid = lo + (hi - lo) / 2;
		if (z->trans[mid] <= t)
			lo = mid;
		else
			hi = mid;
	}
	return z->type_off[z->trans_type[lo]];
}

static uint32_t
be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int64_t
be64(const uint8_t *p)
{
	return (int64_t)((uint64_t)be32(p) << 32 | be32(p + 4));
}

/* Parses a TZif file; every count is checked against the bytes present. */
static int
tz_parse(struct gw_tz *z, const uint8_t *b, size_t len)
{
	uint64_t isut, isstd, leap, timecnt, typecnt, charcnt, need;
	size_t pos = 0, tsize = 4;
	bool v2;

	if (len < 44 || memcmp(b, "TZif", 4) != 0)
		return -1;
	v2 = b[4] >= '2';
	for (;;) {
		isut = be32(b + pos + 20);
		isstd = be32(b + pos + 24);
		leap = be32(b + pos + 28);
		timecnt = be32(b + pos + 32);
		typecnt = be32(b + pos + 36);
		charcnt = be32(b + pos + 40);
		pos += 44;
		need = timecnt * tsize + timecnt + typecnt * 6 + charcnt +
		       leap * (tsize + 4) + isstd + isut;
		if (need > len - pos)
			return -1;
		if (!v2 || tsize == 8)
			break;
		/* Skip the 32-bit block; the 64-bit one follows with its own header. */
		pos += (size_t)need;
		if (len - pos < 44 || memcmp(b + pos, "TZif", 4) != 0)
			return -1;
		tsize = 8;
	}
	if (typecnt == 0 || typecnt > 256 || timecnt > 100000)
		return -1;
	z->trans = calloc(timecnt ? timecnt : 1, sizeof(*z->trans));
	z->trans_type = calloc(timecnt ? timecnt : 1, 1);
	z->type_off = calloc(typecnt, sizeof(*z->type_off));
	if (z->trans == NULL || z->trans_type == NULL || z->type_off == NULL)
		return -1;
	z->n_trans = (size_t)timecnt;
	z->n_types = (size_t)typecnt;
	for (size_t i = 0; i < z->n_trans; i++) {
		z->trans[i] = tsize == 8 ? be64(b + pos) : (int32_t)be32(b + pos);
		pos += tsize;
		if (i > 0 && z->trans[i] <= z->trans[i - 1])
			return -1;
	}
	for (size_t i = 0; i < z->n_trans; i++) {
		z->trans_type[i] = b[pos++];
		if (z->trans_type[i] >= typecnt)
			return -1;
	}
	for (size_t i = 0; i < z->n_types; i++) {
		int32_t off = (int32_t)be32(b + pos);
		if (off <= -89999 || off >= 93600)      /* RFC 8536: within (-25h, 26h) */
			return -1;
		z->type_off[i] = off;
		pos += 6;
	}
	/* Leap seconds ("right/" zones) would shift every instant; refused. */
	if (leap != 0)
		return -1;
	pos += (size_t)(charcnt + isstd + isut);
	if (v2 && pos < len) {
		char footer[128];
		const uint8_t *nl;
		size_t flen;

		if (b[pos] != '\n')
			return -1;
		nl = memchr(b + pos + 1, '\n', len - pos - 1);
		if (nl == NULL)
			return -1;
		flen = (size_t)(nl - (b + pos + 1));
		if (flen >= sizeof(footer))
			return -1;
		memcpy(footer, b + pos + 1, flen);
		footer[flen] = '\0';
		if (tz_posix_parse(z, footer) < 0)
			return -1;
	}
	return 0;
}

static bool
tz_name_ok(const char *name)
{
	size_t len = strlen(name);

	if (len == 0 || len > 128 || name[0] == '/')
		return false;
	for (const char *s = name; *s; s++) {
		if (!isalnum((unsigned char)*s) && !strchr("/_+-.", *s))
			return false;
		/* No component may start with '.': that excludes "..". */
		if (*s == '.' && (s == name || s[-1] == '/'))
			return false;
	}
	return true;
}

/* Loads a zone by IANA name from $TZDIR or /usr/share/zoneinfo. */
static struct gw_tz *
tz_load(const char *name)
{
	const char *dir = getenv("TZDIR");
	struct gw_tz *z = NULL;
	uint8_t *buf = NULL;
	char path[PATH_MAX];
	size_t have = 0;
	struct stat st;
	int fd = -1;

	if (!tz_name_ok(name))
		return NULL;
	if (dir == NULL || dir[0] == '\0')
		dir = TZ_DEFAULT_DIR;
	if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, name) >= sizeof(path))
		return NULL;
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
		goto fail;
	buf = malloc(TZ_FILE_MAX);
	if (buf == NULL)
		goto fail;
	for (;;) {
		ssize_t n = read(fd, buf + have, TZ_FILE_MAX - have);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			goto fail;
		if (n == 0)
			break;
		have += (size_t)n;
		if (have == TZ_FILE_MAX)
			goto fail;
	}
	z = calloc(1, sizeof(*z));
	if (z == NULL || (z->name = strdup(name)) == NULL || tz_parse(z, buf, have) < 0)
		goto fail;
	free(buf);
	close(fd);
	return z;
fail:
	tz_free(z);
	free(buf);
	if (fd >= 0)
		close(fd);
	return NULL;
}

/* ------------------------------------------------------------------ */
/* Freeing.                                                            */

static void
strs_free(char ***l, size_t *n)
{
	gw_yaml_strlist_free(l, n);
}

static void
rule_free(struct gw_rule *r)
{
	strs_free(&r->document_types, &r->n_document_types);
	strs_free(&r->business_scopes, &r->n_business_scopes);
	strs_free(&r->departments, &r->n_departments);
	for (size_t i = 0; r->levels != NULL && i < r->n_levels; i++)
		free(r->levels[i].role);
	free(r->levels);
}

static void
seal_free(struct gw_seal *s)
{
	free(s->id);
	free(s->name);
	free(s->kind);
	free(s->key_uri);
	free(s->image_path);
	free(s->image_sha256);
	free(s->image);
	free(s->holder);
	free(s->site);
	strs_free(&s->document_types, &s->n_document_types);
	strs_free(&s->business_scopes, &s->n_business_scopes);
	strs_free(&s->devices, &s->n_devices);
	free(s->timezone);
	free(s->windows);
	free(s->mechanisms);
	strs_free(&s->users.departments, &s->users.n_departments);
	strs_free(&s->users.roles, &s->users.n_roles);
	strs_free(&s->users.people, &s->users.n_people);
	for (size_t i = 0; s->rules != NULL && i < s->n_rules; i++)
		rule_free(&s->rules[i]);
	free(s->rules);
	free(s->mfa);
}

static void
policy_free(struct gw_policy *p)
{
	if (p == NULL)
		return;
	free(p->path);
	free(p->org_name);
	free(p->timezone);
	gw_risk_policy_free(&p->risk);
	gw_yaml_strlist_free(&p->size_probe, &p->n_size_probe);
	for (size_t i = 0; p->departments != NULL && i < p->n_departments; i++) {
		free(p->departments[i].id);
		free(p->departments[i].name);
		free(p->departments[i].parent);
		free(p->departments[i].head);
	}
	free(p->departments);
	for (size_t i = 0; p->people != NULL && i < p->n_people; i++) {
		struct gw_person *w = &p->people[i];
		free(w->id);
		free(w->name);
		free(w->department);
		free(w->email);
		strs_free(&w->roles, &w->n_roles);
		strs_free(&w->os_logins, &w->n_os_logins);
	}
	free(p->people);
	for (size_t i = 0; p->act_as != NULL && i < p->n_act_as; i++) {
		free(p->act_as[i].os_login);
		strs_free(&p->act_as[i].accounts, &p->act_as[i].n_accounts);
	}
	free(p->act_as);
	for (size_t i = 0; p->seals != NULL && i < p->n_seals; i++)
		seal_free(&p->seals[i]);
	free(p->seals);
	for (size_t i = 0; p->sites != NULL && i < p->n_sites; i++) {
		free(p->sites[i].id);
		free(p->sites[i].name);
	}
	free(p->sites);
	free(p->dept_index);
	free(p->person_index);
	free(p->seal_index);
	free(p->roles);
	free(p->role_people);
	for (size_t i = 0; p->zones != NULL && i < p->n_zones; i++)
		tz_free(p->zones[i]);
	free(p->zones);
	free(p);
}

struct gw_policy *
gw_policy_ref(struct gw_policy *p)
{
	if (p != NULL)
		__atomic_add_fetch(&p->refs, 1, __ATOMIC_RELAXED);
	return p;
}

void
gw_policy_unref(struct gw_policy **pp)
{
	struct gw_policy *p = pp ? *pp : NULL;

	if (p == NULL)
		return;
	*pp = NULL;
	if (__atomic_sub_fetch(&p->refs, 1, __ATOMIC_ACQ_REL) == 0)
		policy_free(p);
}

/* ------------------------------------------------------------------ */
/* Lookup indexes: ids sorted, so lookups are O(log n) and duplicates
 * show up as neighbours. */

static int
ix_cmp(const void *a, const void *b)
{
	const struct gw_id_ix *x = a, *y = b;
	int c = strcmp(x->id, y->id);
	return c ? c : (x->ix > y->ix) - (x->ix < y->ix);
}

static int
ix_key_cmp(const void *key, const void *elem)
{
	return strcmp(key, ((const struct gw_id_ix *)elem)->id);
}

static size_t
ix_find(const struct gw_id_ix *index, size_t n, const char *id)
{
	const struct gw_id_ix *e;

	if (index == NULL || id == NULL || n == 0)
		return SIZE_MAX;
	e = bsearch(id, index, n, sizeof(*index), ix_key_cmp);
	return e ? e->ix : SIZE_MAX;
}

const struct gw_person *
gw_policy_person(const struct gw_policy *p, const char *id)
{
	size_t i = ix_find(p->person_index, p->n_people, id);
	return i == SIZE_MAX ? NULL : &p->people[i];
}

const struct gw_seal *
gw_policy_seal(const struct gw_policy *p, const char *id)
{
	size_t i = ix_find(p->seal_index, p->n_seals, id);
	return i == SIZE_MAX ? NULL : &p->seals[i];
}

const struct gw_department *
gw_policy_department(const struct gw_policy *p, const char *id)
{
	size_t i = ix_find(p->dept_index, p->n_departments, id);
	return i == SIZE_MAX ? NULL : &p->departments[i];
}

static size_t
person_ix_of(const struct gw_policy *p, const char *id)
{
	return ix_find(p->person_index, p->n_people, id);
}

static const struct gw_role_count *
role_find(const struct gw_policy *p, const char *role)
{
	size_t lo = 0, hi = p->n_roles;

	while (role != NULL && lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(role, p->roles[mid].role);
		if (c == 0)
			return &p->roles[mid];
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return NULL;
}

static size_t
role_holders(const struct gw_policy *p, const char *role)
{
	const struct gw_role_count *rc = role_find(p, role);
	return rc ? rc->holders : 0;
}

/* Whether people[ix] holds rc's role: its holders are ascending indexes. */
static bool
role_held_by(const struct gw_policy *p, const struct gw_role_count *rc, size_t ix)
{
	const size_t *h = p->role_people + rc->first;
	size_t lo = 0, hi = rc->holders;

	while (ix != SIZE_MAX && lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (h[mid] == ix)
			return true;
		if (h[mid] < ix)
			lo = mid + 1;
		else
			hi = mid;
	}
	return false;
}

/* ------------------------------------------------------------------ */
/* Loading.                                                            */

struct pctx {
	struct gw_yaml y;
	struct gw_policy *p;
	yaml_node_t **dept_nodes, **person_nodes, **seal_nodes;
	char site_list[512];          /* the sites' ids, for a message */
};

static const char *const top_keys[] = { "version", "organization", "clients", "sites", "seals",
	"risk", NULL };
static const char *const site_keys[] = { "id", "name", NULL };
static const char *const client_keys[] = { "size_probe", NULL };
static const char *const org_keys[] = {
	"name", "timezone", "departments", "people", "act_as", NULL };
/* image_sha256: 64 hex digits (either case) into out. 0, or -1. */
static int
image_digest_parse(const char *hex, uint8_t out[32])
{
	if (strlen(hex) != 64)
		return -1;
	for (size_t i = 0; i < 32; i++) {
		unsigned v = 0;

		for (size_t k = 0; k < 2; k++) {
			int ch = tolower((unsigned char)hex[2 * i + k]);

			if (ch >= '0' && ch <= '9')
				v = v * 16 + (unsigned)(ch - '0');
			else if (ch >= 'a' && ch <= 'f')
				v = v * 16 + (unsigned)(ch - 'a' + 10);
			else
				return -1;
		}
		out[i] = (uint8_t)v;
	}
	return 0;
}

static void
hex32(const uint8_t d[32], char out[65])
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < 32; i++) {
		out[2 * i] = digits[d[i] >> 4];
		out[2 * i + 1] = digits[d[i] & 15];
	}
	out[64] = '\0';
}

/* A seal's image (image: PATH): read once, bounded, and drawn with the
 * very loader sealctl stamp draws it with (tools/stamp/sealimg.c), so a
 * file that would not draw is refused here, with the line, not at the
 * first stamp. The bytes are kept: the gateway serves them (seal_image),
 * not the path, so what is stamped is what was checked. The policy names
 * the bytes too (image_sha256:), so that the policy's hash, and so its
 * version, covers what is stamped: a file changed under the same name
 * is refused at the next load rather than stamped under the old version. */
static int
seal_image(struct pctx *c, yaml_node_t *n, yaml_node_t *dn, struct gw_seal *s)
{
	struct sg_image img = { 0 };
	uint8_t want[32], got_d[32];
	char err[256], hex[65], whex[65];
	FILE *f;
	size_t got;

	if (s->image_path[0] != '/')
		return gw_yaml_errf(&c->y, n, "image must be an absolute path (a PNG or an SVG)");
	if ((f = fopen(s->image_path, "rb")) == NULL)
		return gw_yaml_errf(&c->y, n, "image %s cannot be read: %s", s->image_path,
		                    strerror(errno));
	/* One byte more than allowed tells a file that is too large. */
	s->image = malloc(GW_SEAL_IMAGE_MAX + 1);
	got = s->image ? fread(s->image, 1, GW_SEAL_IMAGE_MAX + 1, f) : 0;
	fclose(f);
	if (s->image == NULL)
		return gw_yaml_errf(&c->y, n, "out of memory");
	if (got > GW_SEAL_IMAGE_MAX)
		return gw_yaml_errf(&c->y, n, "image %s is larger than %u bytes", s->image_path,
		                    GW_SEAL_IMAGE_MAX);
	s->image_len = got;
	if (!EVP_Digest(s->image, s->image_len, got_d, NULL, EVP_sha256(), NULL))
		return gw_yaml_errf(&c->y, n, "image %s: SHA-256 failed", s->image_path);
	hex32(got_d, hex);
	/* The file's digest in the message: what the seal admin checks and
	 * writes into the policy, having looked at the image. */
	if (s->image_sha256 == NULL)
		return gw_yaml_errf(&c->y, n, "image %s needs image_sha256: the SHA-256 of the "
		                    "file (now %s), so that the policy's version covers the image",
		                    s->image_path, hex);
	if (image_digest_parse(s->image_sha256, want) < 0)
		return gw_yaml_errf(&c->y, dn, "image_sha256 must be 64 hex digits (the SHA-256 "
		                    "of %s)", s->image_path);
	if (memcmp(want, got_d, 32) != 0) {
		hex32(want, whex);
		return gw_yaml_errf(&c->y, dn, "image %s is not the image this policy names: its "
		                    "SHA-256 is %s, image_sha256 says %s (the file changed since "
		                    "the policy was written; publish a version naming the new one)",
		                    s->image_path, hex, whex);
	}
	memcpy(s->image_digest, got_d, 32);
	if (sg_sealimg_load_mem(s->image, s->image_len, GW_SEAL_IMAGE_CHECK_PX, &img,
	                        err, sizeof(err)) < 0)
		return gw_yaml_errf(&c->y, n, "image %s: %s", s->image_path, err);
	sg_image_clear(&img);
	return 0;
}

static const char *const dept_keys[] = { "id", "name", "parent", "head", NULL };
static const char *const person_keys[] = {
	"id", "name", "department", "roles", "os_logins", "email", NULL };
static const char *const act_as_keys[] = { "os_login", "accounts", NULL };
static const char *const seal_keys[] = {
	"id", "name", "kind", "key", "holder", "document_types", "business_scopes",
	"amount_ceiling", "timezone", "time_windows", "quotas", "mechanisms", "users",
	"approval", "mfa", "site", "devices", "image", "image_sha256", NULL };
static const char *const window_keys[] = { "days", "from", "to", NULL };
static const char *const quota_keys[] = {
	"per_day", "per_month", "total", "per_person_per_day", NULL };
static const char *const users_keys[] = { "departments", "roles", "people", NULL };
static const char *const approval_keys[] = { "rules", NULL };
static const char *const rule_keys[] = { "when", "levels", NULL };
static const char *const when_keys[] = {
	"amount_over", "amount_under", "document_types", "business_scopes",
	"departments", NULL };
static const char *const level_keys[] = { "head_of", "up", "role", "quorum", NULL };

static unsigned
line_of(const yaml_node_t *n)
{
	return (unsigned)n->start_mark.line + 1;
}

static bool
id_ok(const char *s)
{
	size_t len = strlen(s);

	if (len == 0 || len > MAX_ID || !isalnum((unsigned char)s[0]))
		return false;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && !strchr("._-@", *s))
			return false;
	return true;
}

static int
get_id(struct pctx *c, yaml_node_t *map, const char *what, char **out)
{
	yaml_node_t *n = gw_yaml_map_get(&c->y, map, "id");

	if (n == NULL)
		return gw_yaml_errf(&c->y, map, "%s: id missing (required)", what);
	if (gw_yaml_str(&c->y, n, "id", out) < 0)
		return -1;
	if (!id_ok(*out))
		return gw_yaml_errf(&c->y, n, "'%s' is not a valid id (letters, digits, "
		                    "'.', '_', '-', '@', starting with a letter or digit, "
		                    "at most %d)", *out, MAX_ID);
	return 0;
}

/* One plain address local@domain: printable ASCII or UTF-8, none of the
 * characters that would end or bend an SMTP path or a header. */
static bool
email_ok(const char *e)
{
	const char *at = strchr(e, '@');
	size_t len = strlen(e);

	if (len < 3 || len > 254 || at == NULL || at == e || at[1] == '\0' ||
	    strchr(at + 1, '@') != NULL)
		return false;
	for (const unsigned char *q = (const unsigned char *)e; *q; q++)
		if (*q <= ' ' || *q == 0x7f || strchr("<>()[]\\,;:\"", *q) != NULL)
			return false;
	return true;
}

/* Optional string; *out stays NULL when absent (or gets def copied). */
static int
opt_str(struct pctx *c, yaml_node_t *map, const char *key, const char *def, char **out)
{
	yaml_node_t *n = gw_yaml_map_get(&c->y, map, key);

	*out = NULL;
	if (n != NULL)
		return gw_yaml_str(&c->y, n, key, out);
	if (def != NULL && (*out = strdup(def)) == NULL)
		return gw_yaml_errf(&c->y, map, "out of memory");
	return 0;
}

static int
req_str(struct pctx *c, yaml_node_t *map, const char *key, const char *what, char **out)
{
	yaml_node_t *n = gw_yaml_map_get(&c->y, map, key);

	*out = NULL;
	if (n == NULL)
		return gw_yaml_errf(&c->y, map, "%s: %s missing (required)", what, key);
	return gw_yaml_str(&c->y, n, key, out);
}

static int
opt_list(struct pctx *c, yaml_node_t *map, const char *key, char ***out, size_t *n)
{
	yaml_node_t *v = gw_yaml_map_get(&c->y, map, key);

	*out = NULL;
	*n = 0;
	return v ? gw_yaml_strlist(&c->y, v, key, out, n) : 0;
}

static int
entries(struct pctx *c, yaml_node_t *seq, const char *what, size_t *n)
{
	if (gw_yaml_seq_len(&c->y, seq, what, n) < 0)
		return -1;
	if (*n > MAX_ENTRIES)
		return gw_yaml_errf(&c->y, seq, "more than %u %s", MAX_ENTRIES, what);
	return 0;
}

static int
build_index(struct pctx *c, struct gw_id_ix **out, size_t n, const char *what,
            const char *(*id_of)(const struct gw_policy *, size_t), yaml_node_t **nodes)
{
	struct gw_id_ix *ix = calloc(n ? n : 1, sizeof(*ix));

	*out = ix;
	if (ix == NULL)
		return gw_yaml_errf(&c->y, NULL, "out of memory");
	for (size_t i = 0; i < n; i++) {
		ix[i].id = id_of(c->p, i);
		ix[i].ix = i;
	}
	qsort(ix, n, sizeof(*ix), ix_cmp);
	for (size_t i = 1; i < n; i++) {
		if (strcmp(ix[i].id, ix[i - 1].id) == 0) {
			/* Sorted by (id, index): ix[i] is the later declaration. */
			yaml_node_t *m = nodes[ix[i].ix];
			return gw_yaml_errf(&c->y, gw_yaml_map_get(&c->y, m, "id"),
			                    "duplicate %s id '%s' (first declared on line %u)",
			                    what, ix[i].id, line_of(nodes[ix[i - 1].ix]));
		}
	}
	return 0;
}

static const char *
dept_id_of(const struct gw_policy *p, size_t i) { return p->departments[i].id; }
static const char *
person_id_of(const struct gw_policy *p, size_t i) { return p->people[i].id; }
static const char *
seal_id_of(const struct gw_policy *p, size_t i) { return p->seals[i].id; }

static int
parse_departments(struct pctx *c, yaml_node_t *seq)
{
	struct gw_policy *p = c->p;
	size_t n = 0;

	if (entries(c, seq, "departments", &n) < 0)
		return -1;
	if (n == 0)
		return gw_yaml_errf(&c->y, seq, "the organization needs at least one department");
	p->departments = calloc(n, sizeof(*p->departments));
	c->dept_nodes = calloc(n, sizeof(*c->dept_nodes));
	if (p->departments == NULL || c->dept_nodes == NULL)
		return gw_yaml_errf(&c->y, seq, "out of memory");
	for (size_t i = 0; i < n; i++) {
		yaml_node_t *m = gw_yaml_seq_item(&c->y, seq, i);
		struct gw_department *d = &p->departments[i];

		p->n_departments = i + 1;
		c->dept_nodes[i] = m;
		d->parent_ix = d->head_ix = SIZE_MAX;
		d->line = line_of(m);
		if (gw_yaml_map_check(&c->y, m, "a department", dept_keys) < 0 ||
		    get_id(c, m, "department", &d->id) < 0 ||
		    opt_str(c, m, "name", d->id, &d->name) < 0 ||
		    opt_str(c, m, "parent", NULL, &d->parent) < 0 ||
		    opt_str(c, m, "head", NULL, &d->head) < 0)
			return -1;
	}
	return build_index(c, &p->dept_index, n, "department", dept_id_of, c->dept_nodes);
}

static int
parse_people(struct pctx *c, yaml_node_t *seq)
{
	struct gw_policy *p = c->p;
	size_t n = 0;

	if (entries(c, seq, "people", &n) < 0)
		return -1;
	p->people = calloc(n ? n : 1, sizeof(*p->people));
	c->person_nodes = calloc(n ? n : 1, sizeof(*c->person_nodes));
	if (p->people == NULL || c->person_nodes == NULL)
		return gw_yaml_errf(&c->y, seq, "out of memory");
	for (size_t i = 0; i < n; i++) {
		yaml_node_t *m = gw_yaml_seq_item(&c->y, seq, i);
		struct gw_person *w = &p->people[i];

		p->n_people = i + 1;
		c->person_nodes[i] = m;
		w->dept_ix = SIZE_MAX;
		w->line = line_of(m);
		if (gw_yaml_map_check(&c->y, m, "a person", person_keys) < 0 ||
		    get_id(c, m, "person", &w->id) < 0 ||
		    opt_str(c, m, "name", w->id, &w->name) < 0 ||
		    req_str(c, m, "department", "person", &w->department) < 0 ||
		    opt_list(c, m, "roles", &w->roles, &w->n_roles) < 0 ||
		    opt_str(c, m, "email", NULL, &w->email) < 0)
			return -1;
		/* Where notices go (docs/notifications.md): one address, which
		 * goes into an SMTP envelope and a header, so no spaces, no
		 * control characters, no angle brackets. */
		if (w->email != NULL && !email_ok(w->email))
			return gw_yaml_errf(&c->y, gw_yaml_map_get(&c->y, m, "email"),
			                    "person %s: email must be one address like "
			                    "name@example.com (at most 254 characters)", w->id);
		if (gw_yaml_map_get(&c->y, m, "os_logins") != NULL) {
			if (opt_list(c, m, "os_logins", &w->os_logins, &w->n_os_logins) < 0)
				return -1;
		} else {
			/* By default a person logs in under their own id. */
			w->os_logins = calloc(1, sizeof(char *));
			if (w->os_logins == NULL || (w->os_logins[0] = strdup(w->id)) == NULL)
				return gw_yaml_errf(&c->y, m, "out of memory");
			w->n_os_logins = 1;
		}
	}
	return build_index(c, &p->person_index, n, "person", person_id_of, c->person_nodes);
}

/* The role index (role -> holders), built once here so that approvers of
 * a role level and may-approve cost the role's holders, not the whole
 * organization; the policy is immutable afterwards, so no locking. */
static int
index_roles(struct pctx *c)
{
	struct gw_policy *p = c->p;
	struct gw_id_ix *pairs;
	size_t total = 0, k = 0;

	for (size_t i = 0; i < p->n_people; i++)
		total += p->people[i].n_roles;
	pairs = calloc(total ? total : 1, sizeof(*pairs));
	p->roles = calloc(total ? total : 1, sizeof(*p->roles));
	p->role_people = calloc(total ? total : 1, sizeof(*p->role_people));
	if (pairs == NULL || p->roles == NULL || p->role_people == NULL) {
		free(pairs);
		return gw_yaml_errf(&c->y, NULL, "out of memory");
	}
	for (size_t i = 0; i < p->n_people; i++)
		for (size_t j = 0; j < p->people[i].n_roles; j++)
			pairs[k++] = (struct gw_id_ix){ p->people[i].roles[j], i };
	/* By (role, person index): each role's holders end up in file order.
	 * A person lists a role at most once (strlist), so no duplicates. */
	qsort(pairs, total, sizeof(*pairs), ix_cmp);
	k = 0;
	for (size_t i = 0; i < total; i++) {
		p->role_people[i] = pairs[i].ix;
		if (k > 0 && strcmp(p->roles[k - 1].role, pairs[i].id) == 0)
			p->roles[k - 1].holders++;
		else
			p->roles[k++] = (struct gw_role_count){ pairs[i].id, 1, i };
	}
	p->n_roles = k;
	free(pairs);
	return 0;
}

/* Links departments and people by index and rejects dangling references
 * and parent cycles; everything later relies on a finite tree. */
static int
link_org(struct pctx *c)
{
	struct gw_policy *p = c->p;
	uint8_t *state;
	int rv = -1;

	for (size_t i = 0; i < p->n_departments; i++) {
		struct gw_department *d = &p->departments[i];
		yaml_node_t *m = c->dept_nodes[i];

		if (d->parent != NULL) {
			d->parent_ix = ix_find(p->dept_index, p->n_departments, d->parent);
			if (d->parent_ix == SIZE_MAX)
				return gw_yaml_errf(&c->y, gw_yaml_map_get(&c->y, m, "parent"),
				                    "unknown parent department '%s'", d->parent);
		}
		if (d->head != NULL) {
			d->head_ix = ix_find(p->person_index, p->n_people, d->head);
			if (d->head_ix == SIZE_MAX)
				return gw_yaml_errf(&c->y, gw_yaml_map_get(&c->y, m, "head"),
				                    "unknown person '%s' as head of department '%s'",
				                    d->head, d->id);
		}
	}
	for (size_t i = 0; i < p->n_people; i++) {
		struct gw_person *w = &p->people[i];
		w->dept_ix = ix_find(p->dept_index, p->n_departments, w->department);
		if (w->dept_ix == SIZE_MAX)
			return gw_yaml_errf(&c->y, gw_yaml_map_get(&c->y, c->person_nodes[i],
			                    "department"), "unknown department '%s' for person '%s'",
			                    w->department, w->id);
	}
	/* Cycle check in O(n): 0 = unseen, 1 = on the current path, 2 = done. */
	state = calloc(p->n_departments, 1);
	if (state == NULL)
		return gw_yaml_errf(&c->y, NULL, "out of memory");
	for (size_t i = 0; i < p->n_departments; i++) {
		size_t j = i;
		while (j != SIZE_MAX && state[j] == 0) {
			state[j] = 1;
			j = p->departments[j].parent_ix;
		}
		if (j != SIZE_MAX && state[j] == 1) {
			gw_yaml_errf(&c->y, gw_yaml_map_get(&c->y, c->dept_nodes[j], "parent"),
			             "department '%s' is its own ancestor (the parent links form "
			             "a cycle)", p->departments[j].id);
			goto out;
		}
		for (j = i; j != SIZE_MAX && state[j] == 1; j = p->departments[j].parent_ix)
			state[j] = 2;
	}
	rv = index_roles(c);
out:
	free(state);
	return rv;
}

static int
parse_act_as(struct pctx *c, yaml_node_t *seq)
{
	struct gw_policy *p = c->p;
	size_t n = 0;

	if (entries(c, seq, "act_as entries", &n) < 0)
		return -1;
	p->act_as = calloc(n ? n : 1, sizeof(*p->act_as));
	if (p->act_as == NULL)
		return gw_yaml_errf(&c->y, seq, "out of memory");
	for (size_t i = 0; i < n; i++) {
		yaml_node_t *m = gw_yaml_seq_item(&c->y, seq, i), *acc;
		struct gw_act_as *a = &p->act_as[i];

		p->n_act_as = i + 1;
		if (gw_yaml_map_check(&c->y, m, "an act_as entry", act_as_keys) < 0 ||
		    req_str(c, m, "os_login", "act_as", &a->os_login) < 0)
			return -1;
		for (size_t j = 0; j < i; j++)
			if (strcmp(p->act_as[j].os_login, a->os_login) == 0)
				return gw_yaml_errf(&c->y, gw_yaml_map_get(&c->y, m, "os_login"),
				                    "OS login '%s' has a second act_as entry",
				                    a->os_login);
		acc = gw_yaml_map_get(&c->y, m, "accounts");
		if (acc == NULL)
			return gw_yaml_errf(&c->y, m, "act_as: accounts missing (all, or a "
			                    "list of person ids)");
		if (gw_yaml_is_scalar(acc)) {
			if (strcmp(gw_yaml_scalar(acc), "all") != 0)
				return gw_yaml_errf(&c->y, acc, "accounts must be all or a list "
				                    "of person ids, not '%s'", gw_yaml_scalar(acc));
			a->all = true;
			continue;
		}
		if (gw_yaml_strlist(&c->y, acc, "accounts", &a->accounts, &a->n_accounts) < 0)
			return -1;
		if (a->n_accounts == 0)
			return gw_yaml_errf(&c->y, acc, "accounts is empty; remove the entry "
			                    "instead");
		for (size_t j = 0; j < a->n_accounts; j++)
			if (gw_policy_person(p, a->accounts[j]) == NULL)
				return gw_yaml_errf(&c->y, gw_yaml_seq_item(&c->y, acc, j),
				                    "act_as names unknown account '%s'",
				                    a->accounts[j]);
	}
	return 0;
}

static const struct gw_tz *
get_zone(struct pctx *c, yaml_node_t *node, const char *name)
{
	struct gw_policy *p = c->p;
	struct gw_tz *z, **nz;
	const char *dir = getenv("TZDIR");

	for (size_t i = 0; i < p->n_zones; i++)
		if (strcmp(p->zones[i]->name, name) == 0)
			return p->zones[i];
	z = tz_load(name);
	if (z == NULL) {
		gw_yaml_errf(&c->y, node, "unknown time zone '%s' (no valid TZif file %s/%s; "
		             "use an IANA name such as Asia/Shanghai)", name,
		             dir && *dir ? dir : TZ_DEFAULT_DIR, name);
		return NULL;
	}
	nz = realloc(p->zones, (p->n_zones + 1) * sizeof(*nz));
	if (nz == NULL) {
		tz_free(z);
		gw_yaml_errf(&c->y, node, "out of memory");
		return NULL;
	}
	p->zones = nz;
	p->zones[p->n_zones++] = z;
	return z;
}

static int
parse_org(struct pctx *c, yaml_node_t *org)
{
	struct gw_policy *p = c->p;
	yaml_node_t *n;

	if (gw_yaml_map_check(&c->y, org, "organization", org_keys) < 0 ||
	    req_str(c, org, "name", "organization", &p->org_name) < 0 ||
	    req_str(c, org, "timezone", "organization", &p->timezone) < 0)
		return -1;
	if (get_zone(c, gw_yaml_map_get(&c->y, org, "timezone"), p->timezone) == NULL)
		return -1;
	n = gw_yaml_map_get(&c->y, org, "departments");
	if (n == NULL)
		return gw_yaml_errf(&c->y, org, "organization: departments missing (required)");
	if (parse_departments(c, n) < 0)
		return -1;
	n = gw_yaml_map_get(&c->y, org, "people");
	if (n == NULL) {
		p->person_index = calloc(1, sizeof(*p->person_index));
		if (p->person_index == NULL)
			return gw_yaml_errf(&c->y, org, "out of memory");
	} else if (parse_people(c, n) < 0) {
		return -1;
	}
	if (link_org(c) < 0)
		return -1;
	n = gw_yaml_map_get(&c->y, org, "act_as");
	return n ? parse_act_as(c, n) : 0;
}

/* "HH:MM" -> minutes; "24:00" only where end is true. */
static int
parse_hhmm(struct pctx *c, yaml_node_t *n, const char *what, bool end, uint16_t *out)
{
	const char *v = gw_yaml_scalar(n);
	unsigned h, m;

	if (v == NULL || strlen(v) != 5 || !isdigit((unsigned char)v[0]) ||
	    !isdigit((unsigned char)v[1]) || v[2] != ':' ||
	    !isdigit((unsigned char)v[3]) || !isdigit((unsigned char)v[4]))
		return gw_yaml_errf(&c->y, n, "%s must be a time \"HH:MM\"%s", what,
		                    v ? "" : " in quotes");
	h = (unsigned)(v[0] - '0') * 10 + (unsigned)(v[1] - '0');
	m = (unsigned)(v[3] - '0') * 10 + (unsigned)(v[4] - '0');
	if (m > 59 || h > 24 || (h == 24 && (m != 0 || !end)))
		return gw_yaml_errf(&c->y, n, "%s: '%s' is not a time of day%s", what, v,
		                    end ? " (00:00 to 24:00)" : " (00:00 to 23:59)");
	*out = (uint16_t)(h * 60 + m);
	return 0;
}

static int
parse_windows(struct pctx *c, yaml_node_t *seq, struct gw_seal *s)
{
	static const char *const days[7] = { "mon", "tue", "wed", "thu", "fri", "sat", "sun" };
	size_t n = 0;

	if (gw_yaml_seq_len(&c->y, seq, "time_windows", &n) < 0)
		return -1;
	if (n == 0)
		return gw_yaml_errf(&c->y, seq, "time_windows is empty; leave it out to "
		                    "allow any time");
	if (n > MAX_WINDOWS)
		return gw_yaml_errf(&c->y, seq, "more than %u time windows", MAX_WINDOWS);
	s->windows = calloc(n, sizeof(*s->windows));
	if (s->windows == NULL)
		return gw_yaml_errf(&c->y, seq, "out of memory");
	for (size_t i = 0; i < n; i++) {
		yaml_node_t *m = gw_yaml_seq_item(&c->y, seq, i), *dn, *fn, *tn;
		struct gw_time_window *w = &s->windows[i];
		size_t nd = 0;

		s->n_windows = i + 1;
		if (gw_yaml_map_check(&c->y, m, "a time window", window_keys) < 0)
			return -1;
		dn = gw_yaml_map_get(&c->y, m, "days");
		fn = gw_yaml_map_get(&c->y, m, "from");
		tn = gw_yaml_map_get(&c->y, m, "to");
		if (dn == NULL || fn == NULL || tn == NULL)
			return gw_yaml_errf(&c->y, m, "a time window needs days, from and to");
		if (gw_yaml_seq_len(&c->y, dn, "days", &nd) < 0)
			return -1;
		if (nd == 0)
			return gw_yaml_errf(&c->y, dn, "days is empty");
		for (size_t j = 0; j < nd; j++) {
			yaml_node_t *it = gw_yaml_seq_item(&c->y, dn, j);
			const char *v = gw_yaml_scalar(it);
			int d = -1;
			for (int k = 0; v != NULL && k < 7; k++)
				if (strcmp(v, days[k]) == 0)
					d = k;
			if (d < 0)
				return gw_yaml_errf(&c->y, it, "days: '%s' is not a day (mon, tue, "
				                    "wed, thu, fri, sat, sun)", v ? v : "?");
			if (w->days & (1u << d))
				return gw_yaml_errf(&c->y, it, "days: '%s' is listed twice", v);
			w->days |= (uint8_t)(1u << d);
		}
		if (parse_hhmm(c, fn, "from", false, &w->from_min) < 0 ||
		    parse_hhmm(c, tn, "to", true, &w->to_min) < 0)
			return -1;
		if (w->from_min >= w->to_min)
			return gw_yaml_errf(&c->y, tn, "to %s is not after from %s (a window "
			                    "across midnight is written as two windows)",
			                    gw_yaml_scalar(tn), gw_yaml_scalar(fn));
	}
	return 0;
}

static int
parse_quotas(struct pctx *c, yaml_node_t *m, struct gw_quotas *q)
{
	uint64_t *slot[] = { &q->per_day, &q->per_month, &q->total, &q->per_person_per_day };

	if (gw_yaml_map_check(&c->y, m, "quotas", quota_keys) < 0)
		return -1;
	for (size_t i = 0; i < 4; i++) {
		yaml_node_t *n = gw_yaml_map_get(&c->y, m, quota_keys[i]);
		int64_t v;
		if (n == NULL)
			continue;
		if (gw_yaml_int(&c->y, n, quota_keys[i], 0, INT64_MAX, &v) < 0)
			return -1;
		/* 0 reads like "none allowed" but would mean "no limit". */
		if (v == 0)
			return gw_yaml_errf(&c->y, n, "%s: 0 is not a limit; leave the key out "
			                    "for no limit", quota_keys[i]);
		*slot[i] = (uint64_t)v;
	}
	return 0;
}

static int
parse_mechanisms(struct pctx *c, yaml_node_t *seq, struct gw_seal *s)
{
	size_t n = 0;

	if (gw_yaml_seq_len(&c->y, seq, "mechanisms", &n) < 0)
		return -1;
	if (n == 0)
		return gw_yaml_errf(&c->y, seq, "mechanisms is empty; leave it out to allow "
		                    "every mechanism the key supports");
	if (n > sizeof(mechanisms) / sizeof(mechanisms[0]))
		return gw_yaml_errf(&c->y, seq, "too many mechanisms");
	s->mechanisms = calloc(n, sizeof(*s->mechanisms));
	if (s->mechanisms == NULL)
		return gw_yaml_errf(&c->y, seq, "out of memory");
	for (size_t i = 0; i < n; i++) {
		yaml_node_t *it = gw_yaml_seq_item(&c->y, seq, i);
		const char *v = gw_yaml_scalar(it);
		unsigned long mech;

		if (v == NULL || gw_policy_mechanism_from_name(v, &mech) < 0)
			return gw_yaml_errf(&c->y, it, "unknown mechanism '%s' (e.g. "
			                    "SHA256_RSA_PKCS, RSA_PKCS_PSS, ECDSA_SHA256, EDDSA; "
			                    "see docs/policy.md)", v ? v : "?");
		for (size_t j = 0; j < s->n_mechanisms; j++)
			if (s->mechanisms[j] == mech)
				return gw_yaml_errf(&c->y, it, "mechanism '%s' is listed twice", v);
		s->mechanisms[s->n_mechanisms++] = mech;
	}
	return 0;
}

static int
check_departments(struct pctx *c, yaml_node_t *seq, char **l, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (gw_policy_department(c->p, l[i]) == NULL)
			return gw_yaml_errf(&c->y, gw_yaml_seq_item(&c->y, seq, i),
			                    "unknown department '%s'", l[i]);
	return 0;
}

static int
parse_users(struct pctx *c, yaml_node_t *m, struct gw_seal *s)
{
	struct gw_audience *u = &s->users;
	yaml_node_t *n;

	if (gw_yaml_map_check(&c->y, m, "users", users_keys) < 0 ||
	    opt_list(c, m, "departments", &u->departments, &u->n_departments) < 0 ||
	    opt_list(c, m, "roles", &u->roles, &u->n_roles) < 0 ||
	    opt_list(c, m, "people", &u->people, &u->n_people) < 0)
		return -1;
	if (u->n_departments + u->n_roles + u->n_people == 0)
		return gw_yaml_errf(&c->y, m, "seal '%s' has no users: list departments, "
		                    "roles or people", s->id);
	if ((n = gw_yaml_map_get(&c->y, m, "departments")) != NULL &&
	    check_departments(c, n, u->departments, u->n_departments) < 0)
		return -1;
	n = gw_yaml_map_get(&c->y, m, "roles");
	for (size_t i = 0; i < u->n_roles; i++)
		if (role_holders(c->p, u->roles[i]) == 0)
			return gw_yaml_errf(&c->y, gw_yaml_seq_item(&c->y, n, i),
			                    "no one holds role '%s'", u->roles[i]);
	n = gw_yaml_map_get(&c->y, m, "people");
	for (size_t i = 0; i < u->n_people; i++)
		if (gw_policy_person(c->p, u->people[i]) == NULL)
			return gw_yaml_errf(&c->y, gw_yaml_seq_item(&c->y, n, i),
			                    "unknown person '%s'", u->people[i]);
	return 0;
}

static int
parse_level(struct pctx *c, yaml_node_t *m, struct gw_level *l)
{
	yaml_node_t *head = gw_yaml_map_get(&c->y, m, "head_of");
	yaml_node_t *role = gw_yaml_map_get(&c->y, m, "role");
	yaml_node_t *up = gw_yaml_map_get(&c->y, m, "up");
	yaml_node_t *quorum = gw_yaml_map_get(&c->y, m, "quorum");
	int64_t v;

	l->line = line_of(m);
	l->quorum = 1;
	if ((head == NULL) == (role == NULL))
		return gw_yaml_errf(&c->y, m, "a level is either {head_of: applicant} or "
		                    "{role: ROLE}");
	if (head != NULL) {
		const char *hv = gw_yaml_scalar(head);
		if (hv == NULL || strcmp(hv, "applicant") != 0)
			return gw_yaml_errf(&c->y, head, "head_of must be applicant");
		if (quorum != NULL)
			return gw_yaml_errf(&c->y, gw_yaml_map_key(&c->y, m, "quorum"),
			                    "quorum applies to role levels; a head_of level is "
			                    "one person");
		l->kind = GW_LEVEL_RELATIVE_HEAD;
		if (up != NULL) {
			if (gw_yaml_int(&c->y, up, "up", 0, MAX_UP, &v) < 0)
				return -1;
			l->up = (unsigned)v;
		}
		return 0;
	}
	if (up != NULL)
		return gw_yaml_errf(&c->y, gw_yaml_map_key(&c->y, m, "up"),
		                    "up applies to head_of levels");
	l->kind = GW_LEVEL_ROLE;
	if (gw_yaml_str(&c->y, role, "role", &l->role) < 0)
		return -1;
	v = (int64_t)role_holders(c->p, l->role);
	if (v == 0)
		return gw_yaml_errf(&c->y, role, "no one holds role '%s'", l->role);
	if (quorum != NULL) {
		int64_t q;
		if (gw_yaml_int(&c->y, quorum, "quorum", 1, INT_MAX, &q) < 0)
			return -1;
		if (q > v)
			return gw_yaml_errf(&c->y, quorum, "quorum %lld is more than the %lld "
			                    "%s holding role '%s'", (long long)q, (long long)v,
			                    v == 1 ? "person" : "people", l->role);
		l->quorum = (unsigned)q;
	}
	return 0;
}

static bool
in_list(char **l, size_t n, const char *v)
{
	for (size_t i = 0; v != NULL && i < n; i++)
		if (strcmp(l[i], v) == 0)
			return true;
	return false;
}

/* Conditions of a rule must be satisfiable under the seal's own limits,
 * else the rule is dead text that misleads the reader. */
static int
parse_when(struct pctx *c, yaml_node_t *m, struct gw_seal *s, struct gw_rule *r)
{
	yaml_node_t *n;
	int64_t v;

	if (gw_yaml_map_check(&c->y, m, "when", when_keys) < 0)
		return -1;
	if ((n = gw_yaml_map_get(&c->y, m, "amount_over")) != NULL) {
		if (gw_yaml_int(&c->y, n, "amount_over", 0, INT64_MAX, &v) < 0)
			return -1;
		if (s->has_amount_ceiling && v >= s->amount_ceiling)
			return gw_yaml_errf(&c->y, n, "amount_over %lld is not below the seal's "
			                    "amount_ceiling %lld: the rule can never apply",
			                    (long long)v, (long long)s->amount_ceiling);
		r->has_amount_over = true;
		r->amount_over = v;
	}
	if ((n = gw_yaml_map_get(&c->y, m, "amount_under")) != NULL) {
		if (gw_yaml_int(&c->y, n, "amount_under", 0, INT64_MAX, &v) < 0)
			return -1;
		if (v == 0)
			return gw_yaml_errf(&c->y, n, "amount_under 0: no amount is below 0, the "
			                    "rule can never apply");
		if (r->has_amount_over && v <= r->amount_over + 1)
			return gw_yaml_errf(&c->y, n, "no whole amount is over %lld and under "
			                    "%lld: the rule can never apply",
			                    (long long)r->amount_over, (long long)v);
		r->has_amount_under = true;
		r->amount_under = v;
	}
	if (opt_list(c, m, "document_types", &r->document_types, &r->n_document_types) < 0 ||
	    opt_list(c, m, "business_scopes", &r->business_scopes, &r->n_business_scopes) < 0 ||
	    opt_list(c, m, "departments", &r->departments, &r->n_departments) < 0)
		return -1;
	if ((n = gw_yaml_map_get(&c->y, m, "document_types")) != NULL) {
		if (r->n_document_types == 0)
			return gw_yaml_errf(&c->y, n, "document_types is empty");
		for (size_t i = 0; s->n_document_types > 0 && i < r->n_document_types; i++)
			if (!in_list(s->document_types, s->n_document_types, r->document_types[i]))
				return gw_yaml_errf(&c->y, gw_yaml_seq_item(&c->y, n, i),
				                    "document type '%s' is not allowed for seal '%s' "
				                    "at all", r->document_types[i], s->id);
	}
	if ((n = gw_yaml_map_get(&c->y, m, "business_scopes")) != NULL) {
		if (r->n_business_scopes == 0)
			return gw_yaml_errf(&c->y, n, "business_scopes is empty");
		for (size_t i = 0; s->n_business_scopes > 0 && i < r->n_business_scopes; i++)
			if (!in_list(s->business_scopes, s->n_business_scopes, r->business_scopes[i]))
				return gw_yaml_errf(&c->y, gw_yaml_seq_item(&c->y, n, i),
				                    "business scope '%s' is not allowed for seal "
				                    "'%s' at all", r->business_scopes[i], s->id);
	}
	if ((n = gw_yaml_map_get(&c->y, m, "departments")) != NULL) {
		if (r->n_departments == 0)
			return gw_yaml_errf(&c->y, n, "departments is empty");
		if (check_departments(c, n, r->departments, r->n_departments) < 0)
			return -1;
	}
	return 0;
}

static bool
rule_is_catch_all(const struct gw_rule *r)
{
	return !r->has_amount_over && !r->has_amount_under && r->n_document_types == 0 &&
	       r->n_business_scopes == 0 && r->n_departments == 0;
}

static int
parse_approval(struct pctx *c, yaml_node_t *a, struct gw_seal *s)
{
	yaml_node_t *rules;
	size_t n = 0;

	if (gw_yaml_is_scalar(a)) {
		if (strcmp(gw_yaml_scalar(a), "none") != 0)
			return gw_yaml_errf(&c->y, a, "approval must be none or {rules: [...]}, "
			                    "not '%s'", gw_yaml_scalar(a));
		s->approval_required = false;
		return 0;
	}
	if (gw_yaml_map_check(&c->y, a, "approval", approval_keys) < 0)
		return -1;
	s->approval_required = true;
	rules = gw_yaml_map_get(&c->y, a, "rules");
	if (rules == NULL)
		return gw_yaml_errf(&c->y, a, "approval: rules missing (or write approval: none)");
	if (gw_yaml_seq_len(&c->y, rules, "rules", &n) < 0)
		return -1;
	if (n == 0)
		return gw_yaml_errf(&c->y, rules, "approval has no rules (write approval: "
		                    "none if the seal needs no approval)");
	if (n > MAX_RULES)
		return gw_yaml_errf(&c->y, rules, "more than %u rules", MAX_RULES);
	s->rules = calloc(n, sizeof(*s->rules));
	if (s->rules == NULL)
		return gw_yaml_errf(&c->y, rules, "out of memory");
	for (size_t i = 0; i < n; i++) {
		yaml_node_t *m = gw_yaml_seq_item(&c->y, rules, i), *when, *levels;
		struct gw_rule *r = &s->rules[i];
		size_t nl = 0;

		s->n_rules = i + 1;
		r->line = line_of(m);
		if (gw_yaml_map_check(&c->y, m, "a rule", rule_keys) < 0)
			return -1;
		for (size_t j = 0; j < i; j++)
			if (rule_is_catch_all(&s->rules[j]))
				return gw_yaml_errf(&c->y, m, "rule %zu can never apply: rule %zu "
				                    "(line %u) has no conditions and matches every "
				                    "case first", i + 1, j + 1, s->rules[j].line);
		if ((when = gw_yaml_map_get(&c->y, m, "when")) != NULL &&
		    parse_when(c, when, s, r) < 0)
			return -1;
		levels = gw_yaml_map_get(&c->y, m, "levels");
		if (levels == NULL)
			return gw_yaml_errf(&c->y, m, "rule %zu: levels missing", i + 1);
		if (gw_yaml_seq_len(&c->y, levels, "levels", &nl) < 0)
			return -1;
		if (nl == 0)
			return gw_yaml_errf(&c->y, levels, "rule %zu has no levels (write "
			                    "approval: none if the seal needs no approval)", i + 1);
		if (nl > MAX_LEVELS)
			return gw_yaml_errf(&c->y, levels, "more than %u levels", MAX_LEVELS);
		r->levels = calloc(nl, sizeof(*r->levels));
		if (r->levels == NULL)
			return gw_yaml_errf(&c->y, levels, "out of memory");
		for (size_t k = 0; k < nl; k++) {
			yaml_node_t *lm = gw_yaml_seq_item(&c->y, levels, k);
			r->n_levels = k + 1;
			if (gw_yaml_map_check(&c->y, lm, "a level", level_keys) < 0 ||
			    parse_level(c, lm, &r->levels[k]) < 0)
				return -1;
		}
	}
	return 0;
}

static int
parse_seal(struct pctx *c, yaml_node_t *m, struct gw_seal *s)
{
	struct gw_policy *p = c->p;
	yaml_node_t *n;
	int64_t v;

	s->line = line_of(m);
	/* A common slip: rules written beside approval instead of under it. */
	if (m->type == YAML_MAPPING_NODE && (n = gw_yaml_map_key(&c->y, m, "rules")) != NULL)
		return gw_yaml_errf(&c->y, n, "rules belong under approval: (approval: "
		                    "{rules: [...]}); approval: none takes no rules");
	if (gw_yaml_map_check(&c->y, m, "a seal", seal_keys) < 0 ||
	    get_id(c, m, "seal", &s->id) < 0 ||
	    opt_str(c, m, "name", s->id, &s->name) < 0 ||
	    opt_str(c, m, "kind", "other", &s->kind) < 0 ||
	    req_str(c, m, "key", "seal", &s->key_uri) < 0 ||
	    opt_str(c, m, "holder", NULL, &s->holder) < 0 ||
	    opt_list(c, m, "document_types", &s->document_types, &s->n_document_types) < 0 ||
	    opt_list(c, m, "business_scopes", &s->business_scopes, &s->n_business_scopes) < 0 ||
	    opt_str(c, m, "timezone", p->timezone, &s->timezone) < 0 ||
	    opt_str(c, m, "mfa", "login", &s->mfa) < 0 ||
	    opt_str(c, m, "site", GW_SITE_DEFAULT, &s->site) < 0 ||
	    opt_str(c, m, "image", NULL, &s->image_path) < 0 ||
	    opt_str(c, m, "image_sha256", NULL, &s->image_sha256) < 0)
		return -1;
	if (s->image_path == NULL && s->image_sha256 != NULL)
		return gw_yaml_errf(&c->y, gw_yaml_map_get(&c->y, m, "image_sha256"),
		                    "image_sha256 without image: it names an image's bytes");
	if (s->image_path != NULL && seal_image(c, gw_yaml_map_get(&c->y, m, "image"),
	                                        gw_yaml_map_get(&c->y, m, "image_sha256"), s) < 0)
		return -1;
	/* A site nobody runs would leave the seal unusable everywhere: a typo
	 * is refused here, not found at the first signature. */
	if (gw_policy_site(p, s->site) == NULL) {
		n = gw_yaml_map_get(&c->y, m, "site");
		if (n == NULL)
			return gw_yaml_errf(&c->y, m, "seal '%s' has no site: and the policy's sites "
			                    "do not include %s; name the site that holds it", s->id,
			                    GW_SITE_DEFAULT);
		return gw_yaml_errf(&c->y, n, "unknown site '%s' (the policy's sites: %s)", s->site,
		                    c->site_list);
	}
	if (strncmp(s->key_uri, "pkcs11:", 7) != 0 || s->key_uri[7] == '\0' ||
	    strpbrk(s->key_uri, " \t\r\n") != NULL)
		return gw_yaml_errf(&c->y, gw_yaml_map_get(&c->y, m, "key"),
		                    "key must be a PKCS#11 URI such as "
		                    "\"pkcs11:object=contract-seal;type=private\"");
	if (s->holder != NULL && gw_policy_department(p, s->holder) == NULL)
		return gw_yaml_errf(&c->y, gw_yaml_map_get(&c->y, m, "holder"),
		                    "unknown department '%s' as holder", s->holder);
	if ((n = gw_yaml_map_get(&c->y, m, "document_types")) != NULL && s->n_document_types == 0)
		return gw_yaml_errf(&c->y, n, "document_types is empty; leave it out to allow any");
	if ((n = gw_yaml_map_get(&c->y, m, "business_scopes")) != NULL && s->n_business_scopes == 0)
		return gw_yaml_errf(&c->y, n, "business_scopes is empty; leave it out to allow any");
	if (opt_list(c, m, "devices", &s->devices, &s->n_devices) < 0)
		return -1;
	if ((n = gw_yaml_map_get(&c->y, m, "devices")) != NULL) {
		/* Groups are given to devices at approval, so the policy cannot
		 * know them all: it checks the names' form. */
		if (s->n_devices == 0)
			return gw_yaml_errf(&c->y, n, "devices is empty; leave it out to allow any "
			                    "device (or list local for the gateway's own host only)");
		for (size_t i = 0; i < s->n_devices; i++)
			if (!id_ok(s->devices[i]) || strlen(s->devices[i]) > 32 ||
			    strchr(s->devices[i], '@') != NULL)
				return gw_yaml_errf(&c->y, n, "devices: '%s' is not a device group (letters, "
				                    "digits, '.', '_', '-', at most 32)", s->devices[i]);
	}
	if ((n = gw_yaml_map_get(&c->y, m, "amount_ceiling")) != NULL) {
		if (gw_yaml_int(&c->y, n, "amount_ceiling", 0, INT64_MAX, &v) < 0)
			return -1;
		s->has_amount_ceiling = true;
		s->amount_ceiling = v;
	}
	n = gw_yaml_map_get(&c->y, m, "timezone");
	if ((s->tz = get_zone(c, n ? n : m, s->timezone)) == NULL)
		return -1;
	if ((n = gw_yaml_map_get(&c->y, m, "time_windows")) != NULL && parse_windows(c, n, s) < 0)
		return -1;
	if ((n = gw_yaml_map_get(&c->y, m, "quotas")) != NULL && parse_quotas(c, n, &s->quotas) < 0)
		return -1;
	if ((n = gw_yaml_map_get(&c->y, m, "mechanisms")) != NULL && parse_mechanisms(c, n, s) < 0)
		return -1;
	if (strcmp(s->mfa, "none") != 0 && strcmp(s->mfa, "login") != 0 &&
	    strcmp(s->mfa, "per_signature") != 0 && strcmp(s->mfa, "out_of_band") != 0 &&
	    strcmp(s->mfa, "out_of_band_confirm") != 0)
		return gw_yaml_errf(&c->y, gw_yaml_map_get(&c->y, m, "mfa"), "mfa must be none, login, "
		                    "per_signature, out_of_band or out_of_band_confirm, not '%s'", s->mfa);
	if ((n = gw_yaml_map_get(&c->y, m, "users")) == NULL)
		return gw_yaml_errf(&c->y, m, "seal '%s' has no users: list departments, roles "
		                    "or people under users:", s->id);
	if (parse_users(c, n, s) < 0)
		return -1;
	if ((n = gw_yaml_map_get(&c->y, m, "approval")) == NULL)
		return gw_yaml_errf(&c->y, m, "seal '%s': approval missing (write approval: "
		                    "none to allow use without approval)", s->id);
	return parse_approval(c, n, s);
}

static int
parse_seals(struct pctx *c, yaml_node_t *seq)
{
	struct gw_policy *p = c->p;
	size_t n = 0;

	if (entries(c, seq, "seals", &n) < 0)
		return -1;
	p->seals = calloc(n ? n : 1, sizeof(*p->seals));
	c->seal_nodes = calloc(n ? n : 1, sizeof(*c->seal_nodes));
	if (p->seals == NULL || c->seal_nodes == NULL)
		return gw_yaml_errf(&c->y, seq, "out of memory");
	for (size_t i = 0; i < n; i++) {
		c->seal_nodes[i] = gw_yaml_seq_item(&c->y, seq, i);
		p->n_seals = i + 1;
		if (parse_seal(c, c->seal_nodes[i], &p->seals[i]) < 0)
			return -1;
	}
	return build_index(c, &p->seal_index, n, "seal", seal_id_of, c->seal_nodes);
}

bool
gw_policy_site_name_ok(const char *id)
{
	size_t n = id != NULL ? strlen(id) : 0;

	if (n == 0 || n > GW_SITE_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((id[i] >= 'a' && id[i] <= 'z') || (id[i] >= '0' && id[i] <= '9') ||
		      id[i] == '-' || id[i] == '_'))
			return false;
	return true;
}

const struct gw_site *
gw_policy_site(const struct gw_policy *p, const char *id)
{
	static const struct gw_site main_site = { .id = (char *)GW_SITE_DEFAULT };

	if (id == NULL)
		return NULL;
	if (p->n_sites == 0)
		return strcmp(id, GW_SITE_DEFAULT) == 0 ? &main_site : NULL;
	/* (a handful of sites: a scan is the index) */
	for (size_t i = 0; i < p->n_sites; i++)
		if (strcmp(p->sites[i].id, id) == 0)
			return &p->sites[i];
	return NULL;
}

/* sites: [{ id, name }, …]; absent = the one site "main". c->site_list
 * names them for the message of a seal's unknown site. */
static int
parse_sites(struct pctx *c, yaml_node_t *seq)
{
	struct gw_policy *p = c->p;
	size_t n = 0, used = 0;

	snprintf(c->site_list, sizeof(c->site_list), "%s", GW_SITE_DEFAULT);
	if (seq == NULL)
		return 0;
	if (gw_yaml_seq_len(&c->y, seq, "sites", &n) < 0)
		return -1;
	if (n == 0)
		return gw_yaml_errf(&c->y, seq, "sites is empty; leave it out for the one site %s",
		                    GW_SITE_DEFAULT);
	if (n > MAX_SITES)
		return gw_yaml_errf(&c->y, seq, "more than %u sites", MAX_SITES);
	p->sites = calloc(n, sizeof(*p->sites));
	if (p->sites == NULL)
		return gw_yaml_errf(&c->y, seq, "out of memory");
	c->site_list[0] = '\0';
	for (size_t i = 0; i < n; i++) {
		yaml_node_t *m = gw_yaml_seq_item(&c->y, seq, i), *idn;
		struct gw_site *site = &p->sites[i];
		int w;

		p->n_sites = i + 1;
		site->line = line_of(m);
		if (gw_yaml_map_check(&c->y, m, "a site", site_keys) < 0)
			return -1;
		if ((idn = gw_yaml_map_get(&c->y, m, "id")) == NULL)
			return gw_yaml_errf(&c->y, m, "site: id missing (required)");
		if (gw_yaml_str(&c->y, idn, "id", &site->id) < 0 ||
		    opt_str(c, m, "name", NULL, &site->name) < 0)
			return -1;
		if (!gw_policy_site_name_ok(site->id))
			return gw_yaml_errf(&c->y, idn, "'%s' is not a valid site id (1 to %d of a-z, "
			                    "0-9, '-' and '_')", site->id, GW_SITE_MAX);
		for (size_t k = 0; k < i; k++)
			if (strcmp(p->sites[k].id, site->id) == 0)
				return gw_yaml_errf(&c->y, idn, "site '%s' is listed twice (first on line %u)",
				                    site->id, p->sites[k].line);
		w = snprintf(c->site_list + used, sizeof(c->site_list) - used, "%s%s",
		             i ? ", " : "", site->id);
		if (w > 0 && (size_t)w < sizeof(c->site_list) - used)
			used += (size_t)w;
	}
	return 0;
}

static int
parse_root(struct pctx *c, yaml_node_t *root)
{
	yaml_node_t *n;
	int64_t v;

	if (gw_yaml_map_check(&c->y, root, "the policy", top_keys) < 0)
		return -1;
	c->p->version = 1;
	if ((n = gw_yaml_map_get(&c->y, root, "version")) != NULL) {
		if (gw_yaml_int(&c->y, n, "version", 1, 1, &v) < 0)
			return -1;
	}
	if ((n = gw_yaml_map_get(&c->y, root, "organization")) == NULL)
		return gw_yaml_errf(&c->y, root, "organization missing (required)");
	if (parse_org(c, n) < 0)
		return -1;
	if ((n = gw_yaml_map_get(&c->y, root, "clients")) != NULL) {
		yaml_node_t *sp;
		if (gw_yaml_map_check(&c->y, n, "clients", client_keys) < 0)
			return -1;
		if ((sp = gw_yaml_map_get(&c->y, n, "size_probe")) != NULL) {
			if (gw_yaml_strlist(&c->y, sp, "clients.size_probe", &c->p->size_probe,
			                    &c->p->n_size_probe) < 0)
				return -1;
			for (size_t i = 0; i < c->p->n_size_probe; i++)
				if (c->p->size_probe[i][0] != '/')
					return gw_yaml_errf(&c->y, sp, "clients.size_probe: \"%s\" is not an absolute path",
					                    c->p->size_probe[i]);
		}
	}
	if (parse_sites(c, gw_yaml_map_get(&c->y, root, "sites")) < 0)
		return -1;
	if (gw_risk_policy_parse(&c->y, gw_yaml_map_get(&c->y, root, "risk"), &c->p->risk) < 0)
		return -1;
	if ((n = gw_yaml_map_get(&c->y, root, "seals")) == NULL)
		return gw_yaml_errf(&c->y, root, "seals missing (required; may be [])");
	return parse_seals(c, n);
}

int
gw_policy_parse(const char *name, const uint8_t *buf, size_t len,
                struct gw_policy **out, char *err, size_t errlen)
{
	struct pctx c;
	yaml_node_t *root;
	int rv = -1;

	memset(&c, 0, sizeof(c));
	*out = NULL;
	root = gw_yaml_open(&c.y, name, buf, len, err, errlen);
	if (root == NULL)
		goto out;
	c.p = calloc(1, sizeof(*c.p));
	if (c.p == NULL || (c.p->path = strdup(name)) == NULL) {
		gw_yaml_errf(&c.y, NULL, "out of memory");
		goto out;
	}
	c.p->refs = 1;
	if (!EVP_Digest(buf, len, c.p->hash, NULL, EVP_sha256(), NULL)) {
		gw_yaml_errf(&c.y, NULL, "cannot hash the policy");
		goto out;
	}
	if (parse_root(&c, root) < 0)
		goto out;
	*out = c.p;
	c.p = NULL;
	rv = 0;
out:
	policy_free(c.p);
	free(c.dept_nodes);
	free(c.person_nodes);
	free(c.seal_nodes);
	gw_yaml_close(&c.y);
	return rv;
}

int
gw_policy_load(const char *path, struct gw_policy **out, char *err, size_t errlen)
{
	uint8_t *buf = NULL;
	size_t len = 0;
	int rv;

	*out = NULL;
	if (gw_yaml_read_file(path, &buf, &len, err, errlen) < 0)
		return -1;
	rv = gw_policy_parse(path, buf, len, out, err, errlen);
	free(buf);
	return rv;
}

/* ------------------------------------------------------------------ */
/* Evaluation: accounts and audiences.                                 */

bool
gw_person_has_role(const struct gw_person *who, const char *role)
{
	return who != NULL && in_list(who->roles, who->n_roles, role);
}

static size_t
dept_ix_of(const struct gw_policy *p, const char *id)
{
	return ix_find(p->dept_index, p->n_departments, id);
}

static bool
dept_ix_within(const struct gw_policy *p, size_t d, size_t anc)
{
	/* The loader rejected cycles; the step bound is belt and braces. */
	for (size_t steps = 0; d != SIZE_MAX && steps <= p->n_departments; steps++) {
		if (d == anc)
			return true;
		d = p->departments[d].parent_ix;
	}
	return false;
}

bool
gw_policy_dept_within(const struct gw_policy *p, const char *dept, const char *anc)
{
	size_t d = dept_ix_of(p, dept), a = dept_ix_of(p, anc);
	return d != SIZE_MAX && a != SIZE_MAX && dept_ix_within(p, d, a);
}

static bool
person_in_depts(const struct gw_policy *p, const struct gw_person *who,
                char **depts, size_t n)
{
	size_t d = dept_ix_of(p, who->department);

	for (size_t i = 0; d != SIZE_MAX && i < n; i++) {
		size_t a = dept_ix_of(p, depts[i]);
		if (a != SIZE_MAX && dept_ix_within(p, d, a))
			return true;
	}
	return false;
}

bool
gw_policy_may_use(const struct gw_policy *p, const struct gw_person *who,
                  const struct gw_seal *seal)
{
	const struct gw_audience *u = &seal->users;

	if (who == NULL)
		return false;
	if (in_list(u->people, u->n_people, who->id))
		return true;
	for (size_t i = 0; i < u->n_roles; i++)
		if (gw_person_has_role(who, u->roles[i]))
			return true;
	return person_in_depts(p, who, u->departments, u->n_departments);
}

static const struct gw_act_as *
act_as_of(const struct gw_policy *p, const char *os_login)
{
	for (size_t i = 0; i < p->n_act_as; i++)
		if (strcmp(p->act_as[i].os_login, os_login) == 0)
			return &p->act_as[i];
	return NULL;
}

static bool
act_as_allows(const struct gw_policy *p, const char *os_login, const char *account)
{
	const struct gw_act_as *a = act_as_of(p, os_login);
	return a != NULL && (a->all || in_list(a->accounts, a->n_accounts, account));
}

const struct gw_person *
gw_policy_resolve_account(const struct gw_policy *p, const char *os_login,
                          const char *requested, char *err, size_t errlen)
{
	const struct gw_person *found = NULL, *w;
	size_t count = 0;

	if (os_login == NULL || os_login[0] == '\0') {
		snprintf(err, errlen, "the connecting process has no OS login name");
		return NULL;
	}
	if (requested != NULL) {
		w = gw_policy_person(p, requested);
		if (w == NULL) {
			snprintf(err, errlen, "there is no sealgate account '%s'", requested);
			return NULL;
		}
		if (in_list(w->os_logins, w->n_os_logins, os_login) ||
		    act_as_allows(p, os_login, requested))
			return w;
		snprintf(err, errlen, "OS login '%s' may not act as '%s'", os_login, requested);
		return NULL;
	}
	/* Only people who list the login count: a person whose id happens to
	 * equal someone else's login but who set os_logins is not theirs. */
	w = gw_policy_person(p, os_login);
	if (w != NULL && in_list(w->os_logins, w->n_os_logins, os_login))
		return w;
	for (size_t i = 0; i < p->n_people; i++) {
		if (in_list(p->people[i].os_logins, p->people[i].n_os_logins, os_login)) {
			if (count++ == 0)
				found = &p->people[i];
		}
	}
	if (count == 1)
		return found;
	if (count > 1) {
		snprintf(err, errlen, "OS login '%s' belongs to %zu accounts; choose one "
		         "with SEALGATE_USER", os_login, count);
		return NULL;
	}
	snprintf(err, errlen, "OS login '%s' is not a sealgate account%s", os_login,
	         act_as_of(p, os_login) ? "; set SEALGATE_USER to the account to act as" :
	         " and no act_as entry names it; ask the seal admin");
	return NULL;
}

bool
gw_policy_login_known(const struct gw_policy *p, const char *os_login)
{
	if (p == NULL || os_login == NULL)
		return false;
	if (act_as_of(p, os_login) != NULL)
		return true;
	for (size_t i = 0; i < p->n_people; i++)
		if (in_list(p->people[i].os_logins, p->people[i].n_os_logins, os_login))
			return true;
	return false;
}

/* ------------------------------------------------------------------ */
/* Evaluation: conditions and rules.                                   */

static void
list_str(char *buf, size_t len, char **l, size_t n)
{
	size_t off = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < n && off < len; i++) {
		int k = snprintf(buf + off, len - off, "%s%s", i ? ", " : "", l[i]);
		if (k < 0)
			break;
		off += (size_t)k;
	}
}

static bool
seal_looks_at_amount(const struct gw_seal *s)
{
	if (s->has_amount_ceiling)
		return true;
	for (size_t i = 0; i < s->n_rules; i++)
		if (s->rules[i].has_amount_over || s->rules[i].has_amount_under)
			return true;
	return false;
}

bool
gw_policy_check_conditions(const struct gw_seal *s, const struct gw_use_case *uc,
                           char *why, size_t whylen)
{
	static const struct gw_use_case none = { NULL, NULL, false, 0 };
	char list[256];

	if (uc == NULL)
		uc = &none;
	if (s->n_document_types > 0 &&
	    !in_list(s->document_types, s->n_document_types, uc->document_type)) {
		list_str(list, sizeof(list), s->document_types, s->n_document_types);
		if (uc->document_type == NULL)
			snprintf(why, whylen, "seal %s needs the document type (one of: %s)",
			         s->id, list);
		else
			snprintf(why, whylen, "seal %s may not be used for document type '%s' "
			         "(allowed: %s)", s->id, uc->document_type, list);
		return false;
	}
	if (s->n_business_scopes > 0 &&
	    !in_list(s->business_scopes, s->n_business_scopes, uc->business_scope)) {
		list_str(list, sizeof(list), s->business_scopes, s->n_business_scopes);
		if (uc->business_scope == NULL)
			snprintf(why, whylen, "seal %s needs the business scope (one of: %s)",
			         s->id, list);
		else
			snprintf(why, whylen, "seal %s may not be used for business scope '%s' "
			         "(allowed: %s)", s->id, uc->business_scope, list);
		return false;
	}
	if (uc->has_amount && uc->amount < 0) {
		snprintf(why, whylen, "the amount must not be negative");
		return false;
	}
	if (!uc->has_amount && seal_looks_at_amount(s)) {
		snprintf(why, whylen, "seal %s needs the amount of the document (0 if it "
		         "has none)", s->id);
		return false;
	}
	if (s->has_amount_ceiling && uc->amount > s->amount_ceiling) {
		snprintf(why, whylen, "amount %lld is over the ceiling %lld of seal %s",
		         (long long)uc->amount, (long long)s->amount_ceiling, s->id);
		return false;
	}
	return true;
}

static bool
rule_matches(const struct gw_policy *p, const struct gw_rule *r,
             const struct gw_person *who, const struct gw_use_case *uc)
{
	if (r->has_amount_over && !(uc->has_amount && uc->amount > r->amount_over))
		return false;
	if (r->has_amount_under && !(uc->has_amount && uc->amount < r->amount_under))
		return false;
	if (r->n_document_types > 0 &&
	    !in_list(r->document_types, r->n_document_types, uc->document_type))
		return false;
	if (r->n_business_scopes > 0 &&
	    !in_list(r->business_scopes, r->n_business_scopes, uc->business_scope))
		return false;
	if (r->n_departments > 0 && !person_in_depts(p, who, r->departments, r->n_departments))
		return false;
	return true;
}

int
gw_policy_match_rule(const struct gw_policy *p, const struct gw_seal *seal,
                     const struct gw_person *applicant, const struct gw_use_case *uc,
                     char *why, size_t whylen)
{
	static const struct gw_use_case none = { NULL, NULL, false, 0 };

	if (uc == NULL)
		uc = &none;
	if (applicant == NULL) {
		snprintf(why, whylen, "no applicant");
		return GW_RULE_NOT_ALLOWED;
	}
	if (!gw_policy_may_use(p, applicant, seal)) {
		snprintf(why, whylen, "%s (%s) is not among the users of seal %s",
		         applicant->id, applicant->name, seal->id);
		return GW_RULE_NOT_ALLOWED;
	}
	if (!gw_policy_check_conditions(seal, uc, why, whylen))
		return GW_RULE_NOT_ALLOWED;
	if (!seal->approval_required) {
		snprintf(why, whylen, "seal %s needs no approval", seal->id);
		return GW_RULE_NOT_NEEDED;
	}
	for (size_t i = 0; i < seal->n_rules; i++) {
		if (rule_matches(p, &seal->rules[i], applicant, uc)) {
			snprintf(why, whylen, "rule %zu of seal %s (policy line %u) applies",
			         i + 1, seal->id, seal->rules[i].line);
			return (int)i;
		}
	}
	snprintf(why, whylen, "no approval rule of seal %s covers this case; it cannot "
	         "be used for it", seal->id);
	return GW_RULE_NO_MATCH;
}

/* ------------------------------------------------------------------ */
/* Evaluation: approvers.                                              */

/* RELATIVE_HEAD level k: the people[] index of its one approver, or
 * SIZE_MAX with err. O(depth): no list is built, so may_approve stays
 * allocation-free. */
static size_t
level_head(const struct gw_policy *p, const struct gw_level *l, size_t k,
           const struct gw_person *applicant, char *err, size_t errlen)
{
	size_t d = dept_ix_of(p, applicant->department);

	if (d == SIZE_MAX) {
		snprintf(err, errlen, "%s's department '%s' is not in the policy",
		         applicant->id, applicant->department);
		return SIZE_MAX;
	}
	/* up: N starts N levels higher; a shorter tree stops at its root. */
	for (unsigned u = 0; u < l->up && p->departments[d].parent_ix != SIZE_MAX; u++)
		d = p->departments[d].parent_ix;
	/* Bounded by the tree's size; the loader rejected cycles. */
	for (size_t steps = 0; d != SIZE_MAX && steps <= p->n_departments; steps++) {
		const struct gw_department *dep = &p->departments[d];
		if (dep->head_ix != SIZE_MAX &&
		    strcmp(p->people[dep->head_ix].id, applicant->id) != 0)
			return dep->head_ix;
		d = dep->parent_ix;
	}
	snprintf(err, errlen, "level %zu (head of the applicant's department): "
	         "no department from %s upwards has a head other than %s", k + 1,
	         applicant->department, applicant->id);
	return SIZE_MAX;
}

/* ROLE level: how many holders of the role in p are not the applicant.
 * The applicant is matched by id (the rule may come from a stored
 * application, the person from another load), hence the lookup in p. */
static size_t
role_others(const struct gw_policy *p, const struct gw_role_count *rc, size_t app_ix)
{
	if (rc == NULL)
		return 0;
	return rc->holders - (role_held_by(p, rc, app_ix) ? 1 : 0);
}

static void
quorum_err(const struct gw_level *l, size_t k, size_t count, char *err, size_t errlen)
{
	snprintf(err, errlen, "level %zu needs %u of role %s, but only %zu %s than "
	         "the applicant %s it", k + 1, l->quorum, l->role, count,
	         count == 1 ? "person other" : "people other",
	         count == 1 ? "holds" : "hold");
}

int
gw_policy_level_approvers(const struct gw_policy *p, const struct gw_rule *rule,
                          size_t k, const struct gw_person *applicant,
                          const struct gw_person ***out, size_t *n, unsigned *quorum,
                          char *err, size_t errlen)
{
	const struct gw_level *l;
	const struct gw_role_count *rc;
	const struct gw_person **list = NULL;
	size_t count = 0, app_ix;

	*out = NULL;
	*n = 0;
	*quorum = 0;
	if (rule == NULL || k >= rule->n_levels || applicant == NULL) {
		snprintf(err, errlen, "no such approval level");
		return -1;
	}
	l = &rule->levels[k];
	if (l->kind == GW_LEVEL_RELATIVE_HEAD) {
		size_t found = level_head(p, l, k, applicant, err, errlen);

		if (found == SIZE_MAX)
			return -1;
		list = malloc(sizeof(*list));
		if (list == NULL) {
			snprintf(err, errlen, "out of memory");
			return -1;
		}
		list[0] = &p->people[found];
		*out = list;
		*n = 1;
		*quorum = 1;
		return 0;
	}
	rc = role_find(p, l->role);
	app_ix = person_ix_of(p, applicant->id);
	count = role_others(p, rc, app_ix);
	if (count < l->quorum) {
		quorum_err(l, k, count, err, errlen);
		return -1;
	}
	list = calloc(count ? count : 1, sizeof(*list));
	if (list == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	/* The index keeps holders in file order, which callers show. */
	count = 0;
	for (size_t i = 0; rc != NULL && i < rc->holders; i++) {
		size_t ix = p->role_people[rc->first + i];
		if (ix != app_ix)
			list[count++] = &p->people[ix];
	}
	*out = list;
	*n = count;
	*quorum = l->quorum;
	return 0;
}

bool
gw_policy_may_approve(const struct gw_policy *p, const struct gw_rule *rule, size_t k,
                      const struct gw_person *applicant, const struct gw_person *approver)
{
	const struct gw_level *l;
	const struct gw_role_count *rc;
	char err[256];

	/* Same answer as searching gw_policy_level_approvers' list, without
	 * building it: a level that cannot reach its quorum lists no one. */
	if (approver == NULL || rule == NULL || k >= rule->n_levels || applicant == NULL)
		return false;
	l = &rule->levels[k];
	if (l->kind == GW_LEVEL_RELATIVE_HEAD) {
		size_t found = level_head(p, l, k, applicant, err, sizeof(err));
		return found != SIZE_MAX && strcmp(p->people[found].id, approver->id) == 0;
	}
	rc = role_find(p, l->role);
	if (rc == NULL || strcmp(approver->id, applicant->id) == 0 ||
	    role_others(p, rc, person_ix_of(p, applicant->id)) < l->quorum)
		return false;
	return role_held_by(p, rc, person_ix_of(p, approver->id));
}

/* ------------------------------------------------------------------ */
/* Evaluation: time.                                                   */

static int64_t
local_seconds(const struct gw_seal *seal, time_t t)
{
	return (int64_t)t + gw_tz_offset(seal->tz, t);
}

void
gw_policy_local_time(const struct gw_seal *seal, time_t t, struct tm *tm)
{
	int64_t lt = local_seconds(seal, t), days = floor_div(lt, 86400), y;
	int64_t secs = lt - days * 86400;
	unsigned m, d;

	civil_from_days(days, &y, &m, &d);
	memset(tm, 0, sizeof(*tm));
	tm->tm_year = (int)(y - 1900);
	tm->tm_mon = (int)m - 1;
	tm->tm_mday = (int)d;
	tm->tm_hour = (int)(secs / 3600);
	tm->tm_min = (int)(secs / 60 % 60);
	tm->tm_sec = (int)(secs % 60);
	tm->tm_wday = (int)floor_mod(days + 4, 7);      /* 1970-01-01 was a Thursday */
	tm->tm_yday = (int)(days - days_from_civil(y, 1, 1));
	tm->tm_isdst = -1;
	tm->tm_gmtoff = gw_tz_offset(seal->tz, t);
	tm->tm_zone = NULL;
}

bool
gw_policy_in_window(const struct gw_seal *seal, time_t t)
{
	int64_t lt, days;
	unsigned minute, wd;

	if (seal->n_windows == 0)
		return true;
	lt = local_seconds(seal, t);
	days = floor_div(lt, 86400);
	minute = (unsigned)((lt - days * 86400) / 60);
	wd = (unsigned)floor_mod(days + 3, 7);           /* 0 = Monday */
	for (size_t i = 0; i < seal->n_windows; i++) {
		const struct gw_time_window *w = &seal->windows[i];
		if ((w->days & (1u << wd)) && minute >= w->from_min && minute < w->to_min)
			return true;
	}
	return false;
}

int64_t
gw_policy_local_day(const struct gw_seal *seal, time_t t)
{
	return floor_div(local_seconds(seal, t), 86400);
}

int64_t
gw_policy_local_month(const struct gw_seal *seal, time_t t)
{
	int64_t y;
	unsigned m, d;

	civil_from_days(gw_policy_local_day(seal, t), &y, &m, &d);
	return y * 12 + (m - 1);
}

/* ------------------------------------------------------------------ */
/* Explanation.                                                        */

static void
put_list(FILE *f, char **l, size_t n)
{
	for (size_t i = 0; i < n; i++)
		fprintf(f, "%s%s", i ? ", " : "", l[i]);
}

static void
put_level(FILE *f, const struct gw_level *l)
{
	if (l->kind == GW_LEVEL_RELATIVE_HEAD) {
		if (l->up == 0)
			fprintf(f, "head of the applicant's department");
		else
			fprintf(f, "head of the department %u level%s above the applicant's",
			        l->up, l->up == 1 ? "" : "s");
		fprintf(f, " (walking up past a department without a head or headed by "
		        "the applicant)");
	} else {
		fprintf(f, "%u of the people with role %s", l->quorum, l->role);
	}
}

static void
put_when(FILE *f, const struct gw_rule *r)
{
	bool any = false;

	if (rule_is_catch_all(r)) {
		fprintf(f, "in every other case");
		return;
	}
	fprintf(f, "when");
	if (r->has_amount_over) {
		fprintf(f, " amount > %lld", (long long)r->amount_over);
		any = true;
	}
	if (r->has_amount_under) {
		fprintf(f, "%s amount < %lld", any ? " and" : "", (long long)r->amount_under);
		any = true;
	}
	if (r->n_document_types) {
		fprintf(f, "%s document type in [", any ? " and" : "");
		put_list(f, r->document_types, r->n_document_types);
		fprintf(f, "]");
		any = true;
	}
	if (r->n_business_scopes) {
		fprintf(f, "%s business scope in [", any ? " and" : "");
		put_list(f, r->business_scopes, r->n_business_scopes);
		fprintf(f, "]");
		any = true;
	}
	if (r->n_departments) {
		fprintf(f, "%s applicant within department [", any ? " and" : "");
		put_list(f, r->departments, r->n_departments);
		fprintf(f, "]");
	}
}

static void
put_quota(FILE *f, bool *any, uint64_t v, const char *what)
{
	if (v == 0)
		return;
	fprintf(f, "%s%llu %s", *any ? ", " : "", (unsigned long long)v, what);
	*any = true;
}

static void
explain_case(FILE *f, const struct gw_policy *p, const struct gw_seal *s,
             const struct gw_person *who, const struct gw_use_case *uc)
{
	char why[512], err[512];
	int r;

	fprintf(f, "  case:");
	if (uc->document_type)
		fprintf(f, " document type %s;", uc->document_type);
	if (uc->business_scope)
		fprintf(f, " business scope %s;", uc->business_scope);
	if (uc->has_amount)
		fprintf(f, " amount %lld;", (long long)uc->amount);
	if (!uc->document_type && !uc->business_scope && !uc->has_amount)
		fprintf(f, " nothing stated;");
	r = gw_policy_match_rule(p, s, who, uc, why, sizeof(why));
	fprintf(f, " %s\n", why);
	if (r < 0)
		return;
	for (size_t k = 0; k < s->rules[r].n_levels; k++) {
		const struct gw_person **list = NULL;
		size_t n = 0;
		unsigned quorum = 0;

		fprintf(f, "    level %zu: ", k + 1);
		if (gw_policy_level_approvers(p, &s->rules[r], k, who, &list, &n, &quorum,
		                              err, sizeof(err)) < 0) {
			fprintf(f, "NOBODY CAN APPROVE: %s\n", err);
			continue;
		}
		fprintf(f, "%u of:", quorum);
		for (size_t i = 0; i < n; i++)
			fprintf(f, "%s %s (%s)", i ? "," : "", list[i]->id, list[i]->name);
		fprintf(f, "\n");
		free(list);
	}
}

static void
explain_seal(FILE *f, const struct gw_policy *p, const struct gw_seal *s,
             const struct gw_person *who, const struct gw_use_case *uc, time_t now)
{
	static const char *const days[7] = { "mon", "tue", "wed", "thu", "fri", "sat", "sun" };
	const struct gw_audience *u = &s->users;
	const struct gw_department *h = s->holder ? gw_policy_department(p, s->holder) : NULL;
	struct tm tm;
	bool any = false;

	fprintf(f, "Seal %s \"%s\" (kind %s; key %s)\n", s->id, s->name, s->kind, s->key_uri);
	if (h != NULL)
		fprintf(f, "  held by: %s (%s)\n", h->id, h->name);
	/* (a policy without sites: every seal is main's, nothing to say) */
	if (p->n_sites > 0) {
		const struct gw_site *site = gw_policy_site(p, s->site);

		fprintf(f, "  site: %s%s%s%s: signed with at that site's gateway\n", s->site,
		        site && site->name ? " (" : "", site && site->name ? site->name : "",
		        site && site->name ? ")" : "");
	}
	fprintf(f, "  users:");
	if (u->n_departments) {
		fprintf(f, " departments ");
		put_list(f, u->departments, u->n_departments);
		fprintf(f, " (with their sub-departments);");
	}
	if (u->n_roles) {
		fprintf(f, " roles ");
		put_list(f, u->roles, u->n_roles);
		fprintf(f, ";");
	}
	if (u->n_people) {
		fprintf(f, " people ");
		put_list(f, u->people, u->n_people);
		fprintf(f, ";");
	}
	fprintf(f, "\n  document types: ");
	if (s->n_document_types)
		put_list(f, s->document_types, s->n_document_types);
	else
		fprintf(f, "any");
	fprintf(f, "\n  business scopes: ");
	if (s->n_business_scopes)
		put_list(f, s->business_scopes, s->n_business_scopes);
	else
		fprintf(f, "any");
	if (s->has_amount_ceiling)
		fprintf(f, "\n  amount ceiling: %lld", (long long)s->amount_ceiling);
	fprintf(f, "\n  time windows (%s): ", s->timezone);
	if (s->n_windows == 0)
		fprintf(f, "any time");
	for (size_t i = 0; i < s->n_windows; i++) {
		const struct gw_time_window *w = &s->windows[i];
		fprintf(f, "%s", i ? "; " : "");
		for (int d = 0, first = 1; d < 7; d++) {
			if (w->days & (1u << d)) {
				fprintf(f, "%s%s", first ? "" : ",", days[d]);
				first = 0;
			}
		}
		fprintf(f, " %02u:%02u-%02u:%02u", w->from_min / 60, w->from_min % 60,
		        w->to_min / 60, w->to_min % 60);
	}
	gw_policy_local_time(s, now, &tm);
	fprintf(f, "\n  now: %04d-%02d-%02d %02d:%02d %s, %s a window\n",
	        tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
	        s->timezone, gw_policy_in_window(s, now) ? "inside" : "OUTSIDE");
	fprintf(f, "  quotas: ");
	put_quota(f, &any, s->quotas.per_day, "per day");
	put_quota(f, &any, s->quotas.per_month, "per month");
	put_quota(f, &any, s->quotas.total, "in total");
	put_quota(f, &any, s->quotas.per_person_per_day, "per person per day");
	fprintf(f, "%s (days and months in %s)\n", any ? "" : "none", s->timezone);
	fprintf(f, "  mechanisms: ");
	if (s->n_mechanisms == 0)
		fprintf(f, "any the key supports");
	for (size_t i = 0; i < s->n_mechanisms; i++)
		fprintf(f, "%s%s", i ? ", " : "", gw_policy_mechanism_name(s->mechanisms[i]));
	fprintf(f, "\n  second factor: %s\n", s->mfa);
	/* The devices rule is checked at each signature, after who and which
	 * seal: said here, or a refusal by device would look unexplained. */
	if (s->n_devices > 0) {
		bool local = false;

		fprintf(f, "  devices: only desktops of the device group%s ", s->n_devices > 1 ? "s" : "");
		put_list(f, s->devices, s->n_devices);
		for (size_t i = 0; i < s->n_devices; i++)
			local = local || strcmp(s->devices[i], "local") == 0;   /* GW_DEVICE_GROUP_LOCAL */
		fprintf(f, " (a seal admin gives a device its group: sealctl device approve ID "
		        "--group G); a device of another group or of none%s the web front%s are "
		        "refused\n", local ? " and" : ",",
		        local ? "" : " and the gateway's own host (local)");
	}
	if (!s->approval_required) {
		fprintf(f, "  approval: none\n");
	} else {
		fprintf(f, "  approval (first matching rule wins; no level can be skipped; the "
		        "applicant never approves; one person counts once):\n");
		for (size_t i = 0; i < s->n_rules; i++) {
			const struct gw_rule *r = &s->rules[i];
			fprintf(f, "    rule %zu (line %u) ", i + 1, r->line);
			put_when(f, r);
			fprintf(f, ":\n");
			for (size_t k = 0; k < r->n_levels; k++) {
				fprintf(f, "      level %zu: ", k + 1);
				put_level(f, &r->levels[k]);
				fprintf(f, "\n");
			}
		}
	}
	if (who == NULL)
		return;
	fprintf(f, "For %s (%s, department %s):\n", who->id, who->name, who->department);
	if (!gw_policy_may_use(p, who, s)) {
		fprintf(f, "  may apply: no, %s is not among the seal's users\n", who->id);
		return;
	}
	fprintf(f, "  may apply: yes\n");
	if (uc != NULL) {
		explain_case(f, p, s, who, uc);
		return;
	}
	/* No case given: show who would approve each rule's levels. */
	for (size_t i = 0; s->approval_required && i < s->n_rules; i++) {
		fprintf(f, "  if rule %zu applies:\n", i + 1);
		for (size_t k = 0; k < s->rules[i].n_levels; k++) {
			const struct gw_person **list = NULL;
			size_t n = 0;
			unsigned quorum = 0;
			char err[512];

			fprintf(f, "    level %zu: ", k + 1);
			if (gw_policy_level_approvers(p, &s->rules[i], k, who, &list, &n,
			                              &quorum, err, sizeof(err)) < 0) {
				fprintf(f, "NOBODY CAN APPROVE: %s\n", err);
				continue;
			}
			fprintf(f, "%u of:", quorum);
			for (size_t j = 0; j < n; j++)
				fprintf(f, "%s %s (%s)", j ? "," : "", list[j]->id, list[j]->name);
			fprintf(f, "\n");
			free(list);
		}
	}
}

char *
gw_policy_explain(const struct gw_policy *p, const struct gw_seal *seal,
                  const struct gw_person *who, const struct gw_use_case *uc, time_t now)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	bool any = false;

	if (f == NULL)
		return NULL;
	if (seal != NULL) {
		explain_seal(f, p, seal, who, uc, now);
	} else {
		for (size_t i = 0; i < p->n_seals; i++) {
			if (who != NULL && !gw_policy_may_use(p, who, &p->seals[i]))
				continue;
			if (any)
				fprintf(f, "\n");
			explain_seal(f, p, &p->seals[i], who, uc, now);
			any = true;
		}
		if (!any)
			fprintf(f, who ? "%s may use no seal.\n" : "The policy has no seals.\n",
			        who ? who->id : "");
	}
	if (fclose(f) != 0) {
		free(text);
		return NULL;
	}
	return text;
}
