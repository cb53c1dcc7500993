/*
 * config.c - load, check and print granaryd's settings.
 *
 * DESIGN: everything is driven by the table in config_keys.h. A key's value
 * goes through one parser per type whether it comes from the file or from
 * the table's default, so a default is checked like a setting. Loading walks
 * libyaml's document tree (so every node keeps its mark) and records where
 * each key was read; config_validate and the daemon use those marks to name
 * a line in their messages. Defaults point at the table's own strings, which
 * is how config_free tells them from the strings it owns.
 */
#include "config.h"
#include "config_keys.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

_Static_assert(sizeof(enum config_io) == sizeof(int), "enums are stored as int");
_Static_assert(sizeof(uid_t) == sizeof(uint32_t) && sizeof(gid_t) == sizeof(uint32_t),
	       "ids are stored as uint32_t");

#define CONFIG_FILE_MAX (4u << 20) /* a settings file larger than this is a mistake */
#define CONFIG_KEY_MAX	160	   /* longest key or value shown in a message */
#define CONFIG_MSG_MAX	384

static const char config_default_file[] = "(defaults)";

struct config_mark {
	char *key; /* dotted, with list indexes: "mounts[1].url" */
	int line, column;
};

struct config_marks {
	size_t n, cap;
	struct config_mark *v;
};

/* What one load needs besides the config: the document and the error. */
struct loader {
	struct config *c;
	const char *name;
	yaml_document_t doc;
	char *err;
	size_t errsz;
};

/*
 * Type descriptions: the phrase used in "expected ..." messages, the name
 * in the reference, and the syntax paragraph of the reference.
 */
static const struct {
	const char *expect;
	const char *name;
	const char *syntax;
} config_types[CONFIG_T_COUNT] = {
	[CONFIG_T_STRING] = {"a string", "string",
			     "text; quote it when it holds `#`, `: ` or starts with a symbol."},
	[CONFIG_T_PATH] =
		{"an absolute path", "path",
		 "an absolute path; `//`, `/./` and a trailing `/` are dropped, `..` is refused."},
	[CONFIG_T_URL] =
		{"an http:// or https:// URL", "url",
		 "`http://` or `https://` URL with no query; a `/` is added at the end when missing."},
	[CONFIG_T_ADDRESS] = {"an address like 10.0.0.1:7471", "address",
			      "`host:port`; an IPv6 host goes in brackets, `[::1]:7471`."},
	[CONFIG_T_SIZE] =
		{"a size like 512G", "size",
		 "bytes, with an optional binary unit: `4096`, `512K`, `512KiB`, `512KB`, `1.5T`, `100M`. K, M, G, T, P, E are powers of 1024; a fraction needs a unit."},
	[CONFIG_T_RATE] =
		{"a rate like 100M", "rate",
		 "bytes per second, written as a size with an optional `/s`: `100M`, `1G/s`."},
	[CONFIG_T_DURATION] =
		{"a duration like 30s", "duration",
		 "a number and a unit `ns`, `us`, `ms`, `s`, `m`, `h`, `d`: `250ms`, `1.5s`, `5m`; a plain number is seconds."},
	[CONFIG_T_RATIO] = {"a ratio like 0.9", "ratio", "a decimal number such as `0.95`."},
	[CONFIG_T_UINT] = {"a whole number", "integer", "a whole number in decimal."},
	[CONFIG_T_MODE] = {"an octal mode like 0660", "mode",
			   "permission bits, always read as octal: `0660`, `660`, `0o660`."},
	[CONFIG_T_BOOL] = {"true or false", "bool",
			   "`true` or `false` (also `yes`/`no`, `on`/`off`)."},
	[CONFIG_T_ENUM] = {"one of", "enum", "one of the listed words."},
	[CONFIG_T_WORD] = {"one of", "enum", "one of the listed words."},
	[CONFIG_T_IDS] = {"a list of ids like [1001, 1002]", "id list",
			  "a YAML list of numeric ids: `[1001, 1002]`."},
	[CONFIG_T_CONSISTENCY] =
		{"strict, immutable, ttl or {ttl: DURATION}", "consistency",
		 "`strict` (check the backend on every open), `immutable` (never check), or a time to trust a checked object: `{ttl: 60s}`, or `ttl` with the mount's `ttl` key."},
	[CONFIG_T_PEERS] = {"a list of {name, address}", "peer list",
			    "a YAML list of mappings with `name` and `address`."},
	[CONFIG_T_MOUNTS] = {"a list of mounts", "mount list",
			     "a YAML list of mappings with the `mounts[].` keys."},
};

/* ---- small helpers ---------------------------------------------------- */

static void *key_field(const struct config_key *k, const void *base)
{
	return (char *)base + k->offset;
}

static bool key_is_string(const struct config_key *k)
{
	switch (k->type) {
	case CONFIG_T_STRING:
	case CONFIG_T_PATH:
	case CONFIG_T_URL:
	case CONFIG_T_ADDRESS:
	case CONFIG_T_WORD:
		return true;
	default:
		return false;
	}
}

static bool key_is_list(const struct config_key *k)
{
	return k->type == CONFIG_T_PEERS || k->type == CONFIG_T_MOUNTS;
}

/* The list key @k is an item field of ("mounts" for "mounts[].path"), or NULL. */
static const struct config_key *key_list(const struct config_key *k)
{
	const char *b = strstr(k->name, "[].");
	size_t n;

	if (!b)
		return NULL;
	n = (size_t)(b - k->name);
	for (size_t i = 0; i < CONFIG_N_KEYS; i++)
		if (strlen(config_keys[i].name) == n && !strncmp(config_keys[i].name, k->name, n))
			return &config_keys[i];
	return NULL;
}

/* @k's name within its list's item ("url" for "mounts[].url"), or its name. */
static const char *key_local(const struct config_key *k)
{
	const char *b = strstr(k->name, "[].");

	return b ? b + 3 : k->name;
}

static const struct config_key *key_by_name(const char *name)
{
	for (size_t i = 0; i < CONFIG_N_KEYS; i++)
		if (!strcmp(config_keys[i].name, name))
			return &config_keys[i];
	return NULL;
}

/* The key of scope @list (NULL: the top) whose local name is @local. */
static const struct config_key *key_find(const struct config_key *list, const char *local)
{
	for (size_t i = 0; i < CONFIG_N_KEYS; i++)
		if (key_list(&config_keys[i]) == list && !strcmp(key_local(&config_keys[i]), local))
			return &config_keys[i];
	return NULL;
}

/* Is @prefix ("cache.") the start of some key of scope @list? */
static bool key_is_section(const struct config_key *list, const char *prefix)
{
	size_t n = strlen(prefix);

	for (size_t i = 0; i < CONFIG_N_KEYS; i++)
		if (key_list(&config_keys[i]) == list &&
		    !strncmp(key_local(&config_keys[i]), prefix, n))
			return true;
	return false;
}

/* Release a string field, unless it is the table's default. */
static void key_str_release(const struct config_key *k, char **p)
{
	if (*p != k->def)
		free(*p);
	*p = NULL;
}

/* Copy @s into @buf for a message: control characters replaced, clipped. */
static const char *quote(const char *s, char *buf, size_t sz)
{
	size_t i, n = 0;

	for (i = 0; s[i] && n + 4 < sz; i++)
		buf[n++] = iscntrl((unsigned char)s[i]) ? '?' : s[i];
	if (s[i]) {
		memcpy(buf + n, "...", 3);
		n += 3;
	}
	buf[n] = '\0';
	return buf;
}

/* @a then @b in @buf of CONFIG_KEY_MAX bytes, clipped to fit: names of keys. */
static char *key_join(char *buf, const char *a, const char *b)
{
	size_t na = strnlen(a, CONFIG_KEY_MAX - 1);
	size_t nb = strnlen(b, CONFIG_KEY_MAX - 1 - na);

	memcpy(buf, a, na);
	memcpy(buf + na, b, nb);
	buf[na + nb] = '\0';
	return buf;
}

static void sanitise_line(char *s)
{
	for (; *s; s++)
		if (iscntrl((unsigned char)*s))
			*s = '?';
}

static size_t edit_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b), row[64], prev, tmp;

	if (lb >= sizeof(row) / sizeof(row[0]) || la >= 64)
		return SIZE_MAX;
	for (size_t j = 0; j <= lb; j++)
		row[j] = j;
	for (size_t i = 1; i <= la; i++) {
		prev = row[0];
		row[0] = i;
		for (size_t j = 1; j <= lb; j++) {
			tmp = row[j];
			row[j] = prev + (a[i - 1] != b[j - 1]);
			if (row[j - 1] + 1 < row[j])
				row[j] = row[j - 1] + 1;
			if (tmp + 1 < row[j])
				row[j] = tmp + 1;
			prev = tmp;
		}
	}
	return row[lb];
}

/* ---- marks ------------------------------------------------------------ */

static const struct config_mark *marks_find(const struct config_marks *m, const char *key)
{
	if (!m)
		return NULL;
	for (size_t i = 0; i < m->n; i++)
		if (!strcmp(m->v[i].key, key))
			return &m->v[i];
	return NULL;
}

static int marks_add(struct config_marks *m, const char *key, yaml_mark_t at)
{
	struct config_mark *v;

	if (m->n == m->cap) {
		size_t cap = m->cap ? 2 * m->cap : 64;

		v = realloc(m->v, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		m->v = v;
		m->cap = cap;
	}
	m->v[m->n].key = strdup(key);
	if (!m->v[m->n].key)
		return -ENOMEM;
	m->v[m->n].line = (int)at.line + 1;
	m->v[m->n].column = (int)at.column + 1;
	m->n++;
	return 0;
}

static void marks_free(struct config_marks *m)
{
	if (!m)
		return;
	for (size_t i = 0; i < m->n; i++)
		free(m->v[i].key);
	free(m->v);
	free(m);
}

int config_key_location(const struct config *c, const char *key, int *line, int *column)
{
	const struct config_mark *mk = marks_find(c->marks, key);

	if (!mk)
		return -ENOENT;
	*line = mk->line;
	*column = mk->column;
	return 0;
}

/* ---- sizes, durations and the other scalar parsers --------------------- */

/*
 * A decimal number with an optional fraction, scaled exactly by @unit
 * (an integer multiplier); the rest of the string is left in *@end.
 * Fractions beyond what @unit resolves are dropped.
 */
static int parse_scaled_number(const char *s, const char **end, unsigned __int128 *ip,
			       unsigned __int128 *frac, unsigned __int128 *frac_div)
{
	const char *p = s;

	*ip = 0;
	*frac = 0;
	*frac_div = 1;
	if (!isdigit((unsigned char)*p))
		return -EINVAL;
	for (; isdigit((unsigned char)*p); p++) {
		*ip = *ip * 10 + (unsigned)(*p - '0');
		if (*ip > UINT64_MAX)
			return -EINVAL;
	}
	if (*p == '.') {
		p++;
		if (!isdigit((unsigned char)*p))
			return -EINVAL;
		for (; isdigit((unsigned char)*p); p++) {
			if (*frac_div >= 1000000000000000000ull)
				continue; /* beyond 18 digits: below any unit */
			*frac = *frac * 10 + (unsigned)(*p - '0');
			*frac_div *= 10;
		}
	}
	*end = p;
	return 0;
}

static int scale(unsigned __int128 ip, unsigned __int128 frac, unsigned __int128 frac_div,
		 uint64_t unit, uint64_t *out)
{
	unsigned __int128 v = ip * unit + frac * unit / frac_div;

	if (v > UINT64_MAX)
		return -EINVAL;
	*out = (uint64_t)v;
	return 0;
}

int config_parse_size(const char *s, uint64_t *out)
{
	static const char units[] = "KMGTPE";
	unsigned __int128 ip, frac, frac_div;
	const char *p, *u;
	uint64_t mult = 1;

	if (!s || parse_scaled_number(s, &p, &ip, &frac, &frac_div) < 0)
		return -EINVAL;
	if (*p == ' ' && p[1] && p[1] != ' ')
		p++; /* "512 K" */
	if (*p && (u = strchr(units, toupper((unsigned char)*p)))) {
		mult = 1ull << (10 * (u - units + 1));
		p++;
		if (*p == 'i')
			p++;
	}
	if (*p == 'B')
		p++;
	if (*p || (frac_div > 1 && mult == 1))
		return -EINVAL;
	return scale(ip, frac, frac_div, mult, out);
}

int config_parse_duration(const char *s, uint64_t *ns)
{
	static const struct {
		const char *name;
		uint64_t ns;
	} units[] = {
		{"ns", 1},
		{"us", 1000},
		{"ms", 1000000},
		{"s", 1000000000ull},
		{"m", 60ull * 1000000000ull},
		{"h", 3600ull * 1000000000ull},
		{"d", 86400ull * 1000000000ull},
	};
	unsigned __int128 ip, frac, frac_div;
	const char *p;

	if (!s || parse_scaled_number(s, &p, &ip, &frac, &frac_div) < 0)
		return -EINVAL;
	if (!*p)
		return scale(ip, frac, frac_div, 1000000000ull, ns);
	if (*p == ' ' && p[1])
		p++; /* "30 s" */
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
		if (!strcmp(p, units[i].name))
			return scale(ip, frac, frac_div, units[i].ns, ns);
	return -EINVAL;
}

static int parse_rate(const char *s, uint64_t *out)
{
	char buf[64];
	size_t n = strlen(s);

	if (n > 2 && n < sizeof(buf) && !strcmp(s + n - 2, "/s")) {
		memcpy(buf, s, n - 2);
		buf[n - 2] = '\0';
		return config_parse_size(buf, out);
	}
	return config_parse_size(s, out);
}

static int parse_uint(const char *s, uint64_t *out)
{
	uint64_t v = 0;

	if (!isdigit((unsigned char)*s))
		return -EINVAL;
	for (; isdigit((unsigned char)*s); s++) {
		v = v * 10 + (uint64_t)(*s - '0');
		if (v > UINT32_MAX)
			return -EINVAL;
	}
	if (*s)
		return -EINVAL;
	*out = v;
	return 0;
}

static int parse_mode(const char *s, uint64_t *out)
{
	uint64_t v = 0;

	if (s[0] == '0' && (s[1] == 'o' || s[1] == 'O'))
		s += 2;
	if (!*s)
		return -EINVAL;
	for (; *s; s++) {
		if (*s < '0' || *s > '7')
			return -EINVAL;
		v = v * 8 + (uint64_t)(*s - '0');
		if (v > 07777)
			return -EINVAL;
	}
	*out = v;
	return 0;
}

static int parse_ratio(const char *s, double *out)
{
	char *end;
	double v;

	/* strtod would also take hex, inf, nan and leading blanks */
	if (!isdigit((unsigned char)s[0]) && s[0] != '.')
		return -EINVAL;
	if (strpbrk(s, "xXnN"))
		return -EINVAL;
	errno = 0;
	v = strtod(s, &end);
	if (*end || errno || !isfinite(v))
		return -EINVAL;
	*out = v;
	return 0;
}

static int parse_bool(const char *s, bool *out)
{
	static const char *const yes[] = {"true", "yes", "on"};
	static const char *const no[] = {"false", "no", "off"};

	for (size_t i = 0; i < 3; i++) {
		if (!strcasecmp(s, yes[i])) {
			*out = true;
			return 0;
		}
		if (!strcasecmp(s, no[i])) {
			*out = false;
			return 0;
		}
	}
	return -EINVAL;
}

static const struct config_choice *choice_find(const struct config_choice *ch, const char *s)
{
	for (; ch->name; ch++)
		if (!strcmp(ch->name, s))
			return ch;
	return NULL;
}

static const char *choice_name(const struct config_choice *ch, int v)
{
	for (; ch->name; ch++)
		if (ch->value == v)
			return ch->name;
	return "?";
}

static void choices_list(const struct config_choice *ch, char *buf, size_t sz, bool code)
{
	size_t n = 0;

	buf[0] = '\0';
	for (; ch->name && n < sz; ch++)
		n += (size_t)snprintf(buf + n, sz - n, "%s%s%s%s", n ? ", " : "", code ? "`" : "",
				      ch->name, code ? "`" : "");
}

/*
 * Normalise absolute path @in into a new string: "//", "/./" and trailing
 * slashes go; ".." is refused because it may cross a symlink.
 */
static int path_normalise(const char *in, char **out, char *msg, size_t msgsz)
{
	char q[CONFIG_KEY_MAX], *p, *o;
	const char *s = in;
	size_t n;

	if (in[0] != '/') {
		snprintf(msg, msgsz, "expected an absolute path, got '%s'",
			 quote(in, q, sizeof(q)));
		return -EINVAL;
	}
	if (strlen(in) >= PATH_MAX) {
		snprintf(msg, msgsz, "path is longer than %d bytes", PATH_MAX - 1);
		return -EINVAL;
	}
	p = malloc(strlen(in) + 2);
	if (!p)
		return -ENOMEM;
	o = p;
	while (*s) {
		while (*s == '/')
			s++;
		n = strcspn(s, "/");
		if (!n || (n == 1 && s[0] == '.')) {
			s += n;
			continue;
		}
		if (n == 2 && s[0] == '.' && s[1] == '.') {
			snprintf(msg, msgsz, "'..' is not allowed in a path, got '%s'",
				 quote(in, q, sizeof(q)));
			free(p);
			return -EINVAL;
		}
		*o++ = '/';
		memcpy(o, s, n);
		o += n;
		s += n;
	}
	if (o == p)
		*o++ = '/';
	*o = '\0';
	*out = p;
	return 0;
}

/* Is @p an absolute path in the form path_normalise gives? */
static bool path_is_normal(const char *p)
{
	char *n = NULL, msg[8];
	bool same;

	if (!p || path_normalise(p, &n, msg, sizeof(msg)) < 0)
		return false;
	same = !strcmp(n, p);
	free(n);
	return same;
}

static int url_check(const char *in, char **out, char *msg, size_t msgsz)
{
	char q[CONFIG_KEY_MAX];
	const char *host;
	size_t n = strlen(in);

	if (!strncasecmp(in, "http://", 7))
		host = in + 7;
	else if (!strncasecmp(in, "https://", 8))
		host = in + 8;
	else
		goto bad;
	if (!*host || *host == '/' || strpbrk(in, "?# \t"))
		goto bad;
	for (const char *s = in; *s; s++)
		if (iscntrl((unsigned char)*s))
			goto bad;
	*out = malloc(n + 2);
	if (!*out)
		return -ENOMEM;
	memcpy(*out, in, n + 1);
	if (in[n - 1] != '/')
		memcpy(*out + n, "/", 2);
	return 0;
bad:
	snprintf(msg, msgsz, "expected an http:// or https:// URL without query, got '%s'",
		 quote(in, q, sizeof(q)));
	return -EINVAL;
}

static int address_check(const char *in, char *msg, size_t msgsz)
{
	const char *colon = strrchr(in, ':');
	char q[CONFIG_KEY_MAX];
	uint64_t port;
	size_t hlen;

	if (!colon || colon == in || parse_uint(colon + 1, &port) < 0 || port < 1 || port > 65535)
		goto bad;
	hlen = (size_t)(colon - in);
	if (in[0] == '[') {
		if (hlen < 3 || in[hlen - 1] != ']' || memchr(in + 1, ']', hlen - 2))
			goto bad;
	} else if (memchr(in, ':', hlen) || memchr(in, ']', hlen)) {
		goto bad;
	}
	for (const char *s = in; *s; s++)
		if (isspace((unsigned char)*s) || iscntrl((unsigned char)*s))
			goto bad;
	return 0;
bad:
	snprintf(msg, msgsz, "expected an address like 10.0.0.1:7471 or [::1]:7471, got '%s'",
		 quote(in, q, sizeof(q)));
	return -EINVAL;
}

/* ---- numbers: parse, bound, store, format ------------------------------ */

static bool key_is_number(const struct config_key *k)
{
	switch (k->type) {
	case CONFIG_T_SIZE:
	case CONFIG_T_RATE:
	case CONFIG_T_DURATION:
	case CONFIG_T_UINT:
	case CONFIG_T_MODE:
	case CONFIG_T_RATIO:
		return true;
	default:
		return false;
	}
}

/* Parse a number of @k's type; integers come back in @u, ratios in @d. */
static int number_parse(const struct config_key *k, const char *s, uint64_t *u, double *d)
{
	switch (k->type) {
	case CONFIG_T_SIZE:
		return config_parse_size(s, u);
	case CONFIG_T_RATE:
		return parse_rate(s, u);
	case CONFIG_T_DURATION:
		return config_parse_duration(s, u);
	case CONFIG_T_UINT:
		return parse_uint(s, u);
	case CONFIG_T_MODE:
		return parse_mode(s, u);
	case CONFIG_T_RATIO:
		return parse_ratio(s, d);
	default:
		return -EINVAL;
	}
}

/* Compare a value with a bound written in the table: <0, 0, >0. */
static int number_cmp(const struct config_key *k, uint64_t u, double d, const char *bound)
{
	uint64_t bu = 0;
	double bd = 0;

	number_parse(k, bound, &bu, &bd);
	if (k->type == CONFIG_T_RATIO)
		return d < bd ? -1 : d > bd;
	return u < bu ? -1 : u > bu;
}

static void range_text(const struct config_key *k, char *buf, size_t sz)
{
	bool excl = k->flags & CONFIG_K_MIN_EXCL;

	buf[0] = '\0';
	if (k->min && k->max)
		snprintf(buf, sz, "%s %s and at most %s", excl ? "above" : "at least", k->min,
			 k->max);
	else if (k->min)
		snprintf(buf, sz, "%s %s", excl ? "above" : "at least", k->min);
	else if (k->max)
		snprintf(buf, sz, "at most %s", k->max);
}

static bool number_in_range(const struct config_key *k, uint64_t u, double d)
{
	if (k->min) {
		int r = number_cmp(k, u, d, k->min);

		if (r < 0 || (r == 0 && (k->flags & CONFIG_K_MIN_EXCL)))
			return false;
	}
	return !k->max || number_cmp(k, u, d, k->max) <= 0;
}

static void number_get(const struct config_key *k, const void *base, uint64_t *u, double *d)
{
	const void *f = key_field(k, base);

	*u = 0;
	*d = 0;
	switch (k->type) {
	case CONFIG_T_SIZE:
	case CONFIG_T_RATE:
	case CONFIG_T_DURATION:
		*u = *(const uint64_t *)f;
		break;
	case CONFIG_T_UINT:
	case CONFIG_T_MODE:
		*u = *(const uint32_t *)f;
		break;
	case CONFIG_T_RATIO:
		*d = *(const double *)f;
		break;
	default:
		break;
	}
}

static void number_set(const struct config_key *k, void *base, uint64_t u, double d)
{
	void *f = key_field(k, base);

	switch (k->type) {
	case CONFIG_T_SIZE:
	case CONFIG_T_RATE:
	case CONFIG_T_DURATION:
		*(uint64_t *)f = u;
		break;
	case CONFIG_T_UINT:
	case CONFIG_T_MODE:
		*(uint32_t *)f = (uint32_t)u;
		break;
	case CONFIG_T_RATIO:
		*(double *)f = d;
		break;
	default:
		break;
	}
}

static void format_size(uint64_t v, char *buf, size_t sz)
{
	static const char units[] = "KMGTPE";
	int i;

	for (i = 5; i >= 0; i--) {
		uint64_t m = 1ull << (10 * (i + 1));

		if (v && v % m == 0) {
			snprintf(buf, sz, "%llu%c", (unsigned long long)(v / m), units[i]);
			return;
		}
	}
	snprintf(buf, sz, "%llu", (unsigned long long)v);
}

static void format_duration(uint64_t ns, char *buf, size_t sz)
{
	static const struct {
		const char *name;
		uint64_t ns;
	} units[] = {
		{"d", 86400ull * 1000000000ull},
		{"h", 3600ull * 1000000000ull},
		{"m", 60ull * 1000000000ull},
		{"s", 1000000000ull},
		{"ms", 1000000},
		{"us", 1000},
	};

	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (ns && ns % units[i].ns == 0) {
			snprintf(buf, sz, "%llu%s", (unsigned long long)(ns / units[i].ns),
				 units[i].name);
			return;
		}
	}
	snprintf(buf, sz, ns ? "%lluns" : "%llus", (unsigned long long)ns);
}

/* The shortest decimal that reads back as @d. */
static void format_ratio(double d, char *buf, size_t sz)
{
	for (int prec = 1; prec <= 17; prec++) {
		snprintf(buf, sz, "%.*g", prec, d);
		if (strtod(buf, NULL) == d)
			break;
	}
	if (!strpbrk(buf, ".e") && strlen(buf) + 3 <= sz)
		strcat(buf, ".0");
}

static void number_format(const struct config_key *k, uint64_t u, double d, char *buf, size_t sz)
{
	switch (k->type) {
	case CONFIG_T_SIZE:
	case CONFIG_T_RATE:
		format_size(u, buf, sz);
		break;
	case CONFIG_T_DURATION:
		format_duration(u, buf, sz);
		break;
	case CONFIG_T_MODE:
		snprintf(buf, sz, "%04llo", (unsigned long long)u);
		break;
	case CONFIG_T_RATIO:
		format_ratio(d, buf, sz);
		break;
	default:
		snprintf(buf, sz, "%llu", (unsigned long long)u);
		break;
	}
}

/* ---- setting one scalar value ----------------------------------------- */

/*
 * Set @k in @base from text @s (NULL for a YAML null). @from_default keeps
 * the table's own string instead of a copy. On error returns -EINVAL and
 * the message (without position or key) in @msg.
 */
static int key_set_scalar(const struct config_key *k, void *base, const char *s, bool from_default,
			  char *msg, size_t msgsz)
{
	char q[CONFIG_KEY_MAX], list[CONFIG_KEY_MAX], range[CONFIG_KEY_MAX];
	const struct config_choice *ch;
	void *f = key_field(k, base);
	char *v = NULL;
	uint64_t u = 0;
	double d = 0;
	int rc;

	if (key_is_string(k)) {
		if (!s || !*s) {
			if (!(k->flags & CONFIG_K_OPTIONAL)) {
				snprintf(msg, msgsz, "expected %s, got nothing",
					 k->type == CONFIG_T_WORD ? "a value"
								  : config_types[k->type].expect);
				return -EINVAL;
			}
			key_str_release(k, (char **)f);
			return 0;
		}
		switch (k->type) {
		case CONFIG_T_PATH:
			rc = path_normalise(s, &v, msg, msgsz);
			break;
		case CONFIG_T_URL:
			rc = url_check(s, &v, msg, msgsz);
			break;
		case CONFIG_T_ADDRESS:
			rc = address_check(s, msg, msgsz);
			break;
		case CONFIG_T_WORD:
			rc = 0;
			if (!choice_find(k->choices, s)) {
				choices_list(k->choices, list, sizeof(list), false);
				snprintf(msg, msgsz, "expected one of %s; got '%s'", list,
					 quote(s, q, sizeof(q)));
				rc = -EINVAL;
			}
			break;
		default:
			rc = 0;
			break;
		}
		if (rc < 0)
			return rc;
		if (from_default) {
			free(v);
			v = (char *)k->def;
		} else if (!v) {
			v = strdup(s);
			if (!v)
				return -ENOMEM;
		}
		key_str_release(k, (char **)f);
		*(char **)f = v;
		return 0;
	}

	if (!s) {
		snprintf(msg, msgsz, "expected %s, got nothing", config_types[k->type].expect);
		return -EINVAL;
	}
	switch (k->type) {
	case CONFIG_T_BOOL:
		if (parse_bool(s, (bool *)f) < 0) {
			snprintf(msg, msgsz, "expected true or false, got '%s'",
				 quote(s, q, sizeof(q)));
			return -EINVAL;
		}
		return 0;
	case CONFIG_T_ENUM:
	case CONFIG_T_CONSISTENCY:
		ch = choice_find(k->choices, s);
		if (!ch) {
			choices_list(k->choices, list, sizeof(list), false);
			if (k->type == CONFIG_T_CONSISTENCY)
				snprintf(list + strlen(list), sizeof(list) - strlen(list),
					 " or {ttl: DURATION}");
			snprintf(msg, msgsz, "expected one of %s; got '%s'", list,
				 quote(s, q, sizeof(q)));
			return -EINVAL;
		}
		*(int *)f = ch->value;
		return 0;
	default:
		break;
	}
	if (number_parse(k, s, &u, &d) < 0) {
		snprintf(msg, msgsz, "expected %s, got '%s'", config_types[k->type].expect,
			 quote(s, q, sizeof(q)));
		return -EINVAL;
	}
	if (!number_in_range(k, u, d)) {
		range_text(k, range, sizeof(range));
		snprintf(msg, msgsz, "must be %s, got '%s'", range, quote(s, q, sizeof(q)));
		return -EINVAL;
	}
	number_set(k, base, u, d);
	return 0;
}

/* Set every key of scope @list (NULL: the top) to its default. */
static void scope_defaults(const struct config_key *list, void *base)
{
	char msg[CONFIG_MSG_MAX];

	for (size_t i = 0; i < CONFIG_N_KEYS; i++) {
		const struct config_key *k = &config_keys[i];

		if (key_list(k) != list || key_is_list(k) || k->type == CONFIG_T_IDS)
			continue;
		/* the table's defaults are checked by the unit test */
		if (k->def)
			key_set_scalar(k, base, k->def, true, msg, sizeof(msg));
	}
}

static void scope_free(const struct config_key *list, void *base)
{
	for (size_t i = 0; i < CONFIG_N_KEYS; i++) {
		const struct config_key *k = &config_keys[i];

		if (key_list(k) == list && key_is_string(k))
			key_str_release(k, (char **)key_field(k, base));
	}
}

void config_init_defaults(struct config *c)
{
	memset(c, 0, sizeof(*c));
	c->file = (char *)config_default_file;
	scope_defaults(NULL, c);
	/* the group is only a default where the package created it */
	if (c->socket_group && !getgrnam(c->socket_group))
		key_str_release(key_by_name("socket_group"), &c->socket_group);
}

void config_free(struct config *c)
{
	const struct config_key *mounts = key_by_name("mounts");
	const struct config_key *nodes = key_by_name("peers.nodes");

	if (!c)
		return;
	scope_free(NULL, c);
	for (size_t i = 0; i < c->n_mounts && i < CONFIG_MAX_MOUNTS; i++)
		scope_free(mounts, &c->mounts[i]);
	for (size_t i = 0; i < c->peers.n_nodes && i < CONFIG_MAX_PEERS; i++)
		scope_free(nodes, &c->peers.nodes[i]);
	if (c->file != config_default_file)
		free(c->file);
	marks_free(c->marks);
	memset(c, 0, sizeof(*c));
}

/* ---- loading ---------------------------------------------------------- */

static int load_error(struct loader *ld, yaml_mark_t at, const char *key, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int load_error(struct loader *ld, yaml_mark_t at, const char *key, const char *fmt, ...)
{
	char msg[CONFIG_MSG_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (ld->errsz) {
		snprintf(ld->err, ld->errsz, "%s:%lu:%lu: %s: %s", ld->name,
			 (unsigned long)at.line + 1, (unsigned long)at.column + 1, key, msg);
		sanitise_line(ld->err);
	}
	return -EINVAL;
}

static int load_oom(struct loader *ld)
{
	if (ld->errsz)
		snprintf(ld->err, ld->errsz, "%s: out of memory", ld->name);
	return -ENOMEM;
}

static const char *node_kind(const yaml_node_t *n)
{
	switch (n->type) {
	case YAML_MAPPING_NODE:
		return "a mapping";
	case YAML_SEQUENCE_NODE:
		return "a list";
	default:
		return "a value";
	}
}

static bool node_is_null(const yaml_node_t *n)
{
	const char *s;

	if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
		return false;
	s = (const char *)n->data.scalar.value;
	return !*s || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") ||
	       !strcmp(s, "NULL");
}

/* What a value of @k looks like, for "expected ..." messages. */
static const char *expect_text(const struct config_key *k, char *buf, size_t sz)
{
	size_t n;

	if (k->type != CONFIG_T_ENUM && k->type != CONFIG_T_WORD)
		return config_types[k->type].expect;
	n = (size_t)snprintf(buf, sz, "one of ");
	if (n < sz)
		choices_list(k->choices, buf + n, sz - n, false);
	return buf;
}

/* Record where @key was read; a key read twice is an error. */
static int load_mark(struct loader *ld, const char *key, yaml_mark_t at)
{
	const struct config_mark *prev = marks_find(ld->c->marks, key);

	if (prev)
		return load_error(ld, at, key, "given twice (first at line %d)", prev->line);
	if (marks_add(ld->c->marks, key, at) < 0)
		return load_oom(ld);
	return 0;
}

static int load_mapping(struct loader *ld, yaml_node_t *map, const struct config_key *list,
			const char *section, void *base, const char *disp_prefix);

static int load_scalar(struct loader *ld, const struct config_key *k, void *base, yaml_node_t *v,
		       const char *disp)
{
	char msg[CONFIG_MSG_MAX], expect[CONFIG_KEY_MAX];
	const char *s;
	int rc;

	if (v->type != YAML_SCALAR_NODE)
		return load_error(ld, v->start_mark, disp, "expected %s, got %s",
				  expect_text(k, expect, sizeof(expect)), node_kind(v));
	s = (const char *)v->data.scalar.value;
	if (strlen(s) != v->data.scalar.length)
		return load_error(ld, v->start_mark, disp, "contains a NUL byte");
	rc = key_set_scalar(k, base, node_is_null(v) ? NULL : s, false, msg, sizeof(msg));
	if (rc == -ENOMEM)
		return load_oom(ld);
	if (rc < 0)
		return load_error(ld, v->start_mark, disp, "%s", msg);
	return 0;
}

static int load_ids(struct loader *ld, const struct config_key *k, void *base, yaml_node_t *v,
		    const char *disp)
{
	uint32_t *ids = key_field(k, base);
	size_t *n = (size_t *)((char *)base + k->count_offset);
	char q[CONFIG_KEY_MAX];

	if (node_is_null(v)) {
		*n = 0;
		return 0;
	}
	if (v->type != YAML_SEQUENCE_NODE)
		return load_error(ld, v->start_mark, disp, "expected %s, got %s",
				  config_types[k->type].expect, node_kind(v));
	*n = 0;
	for (yaml_node_item_t *it = v->data.sequence.items.start; it < v->data.sequence.items.top;
	     it++) {
		yaml_node_t *item = yaml_document_get_node(&ld->doc, *it);
		uint64_t id;

		if (*n == k->max_items)
			return load_error(ld, item->start_mark, disp, "more than %zu ids",
					  k->max_items);
		if (item->type != YAML_SCALAR_NODE)
			return load_error(ld, item->start_mark, disp,
					  "expected a numeric id, got %s", node_kind(item));
		if (parse_uint((const char *)item->data.scalar.value, &id) < 0 || id == UINT32_MAX)
			return load_error(
				ld, item->start_mark, disp, "expected a numeric id, got '%s'",
				quote((const char *)item->data.scalar.value, q, sizeof(q)));
		ids[(*n)++] = (uint32_t)id;
	}
	return 0;
}

/* consistency: strict | immutable | ttl | {ttl: DURATION} */
static int load_consistency(struct loader *ld, const struct config_key *k, void *base,
			    yaml_node_t *v, const char *disp, const char *disp_prefix)
{
	const struct config_key *ttl = key_find(key_list(k), "ttl");
	char q[CONFIG_KEY_MAX], key[CONFIG_KEY_MAX];
	yaml_node_pair_t *p;
	int rc;

	if (v->type != YAML_MAPPING_NODE)
		return load_scalar(ld, k, base, v, disp);
	for (p = v->data.mapping.pairs.start; p < v->data.mapping.pairs.top; p++) {
		yaml_node_t *kn = yaml_document_get_node(&ld->doc, p->key);
		yaml_node_t *vn = yaml_document_get_node(&ld->doc, p->value);
		const char *name;

		if (kn->type != YAML_SCALAR_NODE)
			return load_error(ld, kn->start_mark, disp,
					  "expected {ttl: DURATION}, got %s as a key",
					  node_kind(kn));
		name = (const char *)kn->data.scalar.value;
		if (strcmp(name, "ttl"))
			return load_error(ld, kn->start_mark, disp,
					  "expected {ttl: DURATION}, got key '%s'",
					  quote(name, q, sizeof(q)));
		key_join(key, disp_prefix, key_local(ttl));
		rc = load_mark(ld, key, vn->start_mark);
		if (rc < 0)
			return rc;
		rc = load_scalar(ld, ttl, base, vn, key);
		if (rc < 0)
			return rc;
	}
	if (v->data.mapping.pairs.start == v->data.mapping.pairs.top)
		return load_error(ld, v->start_mark, disp, "expected {ttl: DURATION}, got {}");
	*(int *)key_field(k, base) = CONFIG_CONSISTENCY_TTL;
	return 0;
}

/* Defaults that depend on other keys of a finished mount, and its needs. */
static int mount_finish(struct loader *ld, struct config_mount *m, yaml_node_t *node,
			const char *disp_prefix)
{
	const struct config_mark *ttl_mark;
	char key[CONFIG_KEY_MAX];
	const char *bname = choice_name(config_choices_backend, m->backend);
	yaml_mark_t at;

	m->line = (int)node->start_mark.line + 1;
	if (m->backend != CONFIG_BACKEND_POSIX && !m->url) {
		key_join(key, disp_prefix, "url");
		return load_error(ld, node->start_mark, key, "required for backend %s", bname);
	}
	if (m->backend == CONFIG_BACKEND_S3 && !m->region) {
		key_join(key, disp_prefix, "region");
		return load_error(ld, node->start_mark, key, "required for backend s3");
	}
	key_join(key, disp_prefix, "ttl");
	ttl_mark = marks_find(ld->c->marks, key);
	if (ttl_mark && m->consistency != CONFIG_CONSISTENCY_TTL) {
		at.line = (size_t)ttl_mark->line - 1;
		at.column = (size_t)ttl_mark->column - 1;
		return load_error(ld, at, key, "applies only with consistency: ttl");
	}
	if (m->backend == CONFIG_BACKEND_POSIX && !m->source) {
		m->source = strdup(m->path);
		if (!m->source)
			return load_oom(ld);
	}
	if (!m->dataset) {
		m->dataset = strdup(m->path);
		if (!m->dataset)
			return load_oom(ld);
	}
	return 0;
}

static int node_finish(struct loader *ld, const struct config_key *list, void *item,
		       yaml_node_t *node, const char *disp_prefix)
{
	char key[CONFIG_KEY_MAX];

	for (size_t i = 0; i < CONFIG_N_KEYS; i++) {
		const struct config_key *k = &config_keys[i];

		if (key_list(k) != list || !(k->flags & CONFIG_K_REQUIRED))
			continue;
		if (!*(char **)key_field(k, item)) {
			key_join(key, disp_prefix, key_local(k));
			return load_error(ld, node->start_mark, key, "required");
		}
	}
	return 0;
}

static int load_list(struct loader *ld, const struct config_key *k, void *base, yaml_node_t *v,
		     const char *disp)
{
	bool mounts = k->type == CONFIG_T_MOUNTS;
	size_t item_size = mounts ? sizeof(struct config_mount) : sizeof(struct config_peer);
	size_t *n = (size_t *)((char *)base + k->count_offset);
	char name[CONFIG_KEY_MAX], prefix[CONFIG_KEY_MAX], idx[24];
	int rc;

	if (node_is_null(v))
		return 0;
	if (v->type != YAML_SEQUENCE_NODE)
		return load_error(ld, v->start_mark, disp, "expected %s, got %s",
				  config_types[k->type].expect, node_kind(v));
	for (yaml_node_item_t *it = v->data.sequence.items.start; it < v->data.sequence.items.top;
	     it++) {
		yaml_node_t *item = yaml_document_get_node(&ld->doc, *it);
		void *ib = (char *)key_field(k, base) + *n * item_size;

		snprintf(idx, sizeof(idx), "[%zu]", *n);
		key_join(name, disp, idx);
		key_join(prefix, name, ".");
		if (*n == k->max_items)
			return load_error(ld, item->start_mark, name, "more than %zu items in %s",
					  k->max_items, disp);
		if (item->type != YAML_MAPPING_NODE)
			return load_error(ld, item->start_mark, name, "expected a mapping, got %s",
					  node_kind(item));
		rc = load_mark(ld, name, item->start_mark);
		if (rc < 0)
			return rc;
		memset(ib, 0, item_size);
		(*n)++; /* counted before it is filled, so config_free sees it */
		scope_defaults(k, ib);
		rc = load_mapping(ld, item, k, "", ib, prefix);
		if (rc < 0)
			return rc;
		rc = node_finish(ld, k, ib, item, prefix);
		if (rc < 0)
			return rc;
		if (mounts) {
			rc = mount_finish(ld, ib, item, prefix);
			if (rc < 0)
				return rc;
		}
	}
	return 0;
}

/* Suggest a key near @name within @section of scope @list, into @buf. */
static void suggest(const struct config_key *list, const char *section, const char *name, char *buf,
		    size_t sz)
{
	size_t best = SIZE_MAX, seclen = strlen(section), limit = strlen(name) <= 4 ? 1 : 2;
	const char *found = NULL;
	size_t found_len = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < CONFIG_N_KEYS; i++) {
		const struct config_key *k = &config_keys[i];
		const char *local = key_local(k), *comp;
		char cand[CONFIG_KEY_MAX];
		size_t d, n;

		if (key_list(k) != list || strncmp(local, section, seclen))
			continue;
		comp = local + seclen;
		n = strcspn(comp, ".");
		if (n >= sizeof(cand))
			continue;
		memcpy(cand, comp, n);
		cand[n] = '\0';
		d = edit_distance(name, cand);
		if (d < best) {
			best = d;
			found = comp;
			found_len = n;
		}
	}
	if (found && best <= limit) {
		snprintf(buf, sz, "; did you mean '%.*s'?", (int)found_len, found);
		return;
	}
	/* a known key put in the wrong section */
	for (size_t i = 0; i < CONFIG_N_KEYS; i++) {
		const struct config_key *k = &config_keys[i];
		const char *leaf = strrchr(key_local(k), '.');

		if (key_list(k) == list && leaf && !strcmp(leaf + 1, name)) {
			snprintf(buf, sz, "; did you mean '%s'?", key_local(k));
			return;
		}
	}
}

/*
 * Load the pairs of mapping @map into @base: keys of scope @list (NULL: the
 * top level) under @section ("" or "cache."). @disp_prefix is what messages
 * put before a key ("mounts[2].").
 */
static int load_mapping(struct loader *ld, yaml_node_t *map, const struct config_key *list,
			const char *section, void *base, const char *disp_prefix)
{
	char local[CONFIG_KEY_MAX], sub[CONFIG_KEY_MAX], disp[CONFIG_KEY_MAX];
	char q[CONFIG_KEY_MAX], hint[CONFIG_KEY_MAX];
	yaml_node_pair_t *p, *prev;
	int rc;

	for (p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
		yaml_node_t *kn = yaml_document_get_node(&ld->doc, p->key);
		yaml_node_t *vn = yaml_document_get_node(&ld->doc, p->value);
		const struct config_key *k;
		const char *name;

		if (kn->type != YAML_SCALAR_NODE) {
			/* the mapping's own name: prefix and section without the dot */
			key_join(disp, disp_prefix, section);
			if (*disp)
				disp[strlen(disp) - 1] = '\0';
			return load_error(ld, kn->start_mark, *disp ? disp : "(top level)",
					  "expected a key name, got %s", node_kind(kn));
		}
		name = (const char *)kn->data.scalar.value;
		key_join(local, section, name);
		key_join(disp, disp_prefix, quote(local, q, sizeof(q)));
		if (strlen(name) != kn->data.scalar.length)
			return load_error(ld, kn->start_mark, disp, "key contains a NUL byte");
		for (prev = map->data.mapping.pairs.start; prev < p; prev++) {
			yaml_node_t *pk = yaml_document_get_node(&ld->doc, prev->key);

			if (pk->type == YAML_SCALAR_NODE &&
			    !strcmp((const char *)pk->data.scalar.value, name))
				return load_error(ld, kn->start_mark, disp,
						  "duplicate key (first at line %lu)",
						  (unsigned long)pk->start_mark.line + 1);
		}

		k = key_find(list, local);
		if (!k) {
			key_join(sub, local, ".");
			if (key_is_section(list, sub)) {
				if (node_is_null(vn))
					continue; /* an empty section */
				if (vn->type != YAML_MAPPING_NODE)
					return load_error(ld, vn->start_mark, disp,
							  "expected a mapping, got %s",
							  node_kind(vn));
				rc = load_mapping(ld, vn, list, sub, base, disp_prefix);
				if (rc < 0)
					return rc;
				continue;
			}
			suggest(list, section, name, hint, sizeof(hint));
			return load_error(ld, kn->start_mark, disp, "unknown key%s", hint);
		}

		rc = load_mark(ld, disp, vn->start_mark);
		if (rc < 0)
			return rc;
		switch (k->type) {
		case CONFIG_T_IDS:
			rc = load_ids(ld, k, base, vn, disp);
			break;
		case CONFIG_T_PEERS:
		case CONFIG_T_MOUNTS:
			rc = load_list(ld, k, base, vn, disp);
			break;
		case CONFIG_T_CONSISTENCY:
			rc = load_consistency(ld, k, base, vn, disp, disp_prefix);
			break;
		default:
			rc = load_scalar(ld, k, base, vn, disp);
			break;
		}
		if (rc < 0)
			return rc;
	}
	return 0;
}

/* Line and column of byte @off of @text, for reader errors that have no mark. */
static yaml_mark_t mark_of_offset(const char *text, size_t len, size_t off)
{
	yaml_mark_t m = {0};

	for (size_t i = 0; i < off && i < len; i++) {
		if (text[i] == '\n') {
			m.line++;
			m.column = 0;
		} else {
			m.column++;
		}
	}
	return m;
}

static int load_yaml_error(struct loader *ld, yaml_parser_t *p, const char *text, size_t len)
{
	yaml_mark_t at = p->problem_mark;

	switch (p->error) {
	case YAML_MEMORY_ERROR:
		return load_oom(ld);
	case YAML_READER_ERROR:
		at = mark_of_offset(text, len, p->problem_offset);
		return load_error(ld, at, "syntax error", "%s",
				  p->problem ? p->problem : "cannot read");
	default:
		if (p->context)
			return load_error(ld, at, "syntax error", "%s (%s at %lu:%lu)",
					  p->problem ? p->problem : "malformed YAML", p->context,
					  (unsigned long)p->context_mark.line + 1,
					  (unsigned long)p->context_mark.column + 1);
		return load_error(ld, at, "syntax error", "%s",
				  p->problem ? p->problem : "malformed YAML");
	}
}

/* Settings that follow from others once the whole file is read. */
static int load_finish(struct loader *ld)
{
	struct config *c = ld->c;
	char key[CONFIG_KEY_MAX], host[256];

	for (size_t i = 0; i < c->n_mounts; i++) {
		snprintf(key, sizeof(key), "mounts[%zu].placement", i);
		if (!marks_find(c->marks, key))
			c->mounts[i].placement = c->peers.placement;
	}
	if (c->peers.n_nodes && !c->peers.self) {
		if (gethostname(host, sizeof(host)) < 0)
			host[0] = '\0';
		host[sizeof(host) - 1] = '\0';
		host[strcspn(host, ".")] = '\0';
		if (*host) {
			c->peers.self = strdup(host);
			if (!c->peers.self)
				return load_oom(ld);
		}
	}
	return 0;
}

static int load_text(struct config *c, const char *name, const char *text, size_t len, char *err,
		     size_t errsz)
{
	struct loader ld = {.c = c, .name = name, .err = err, .errsz = errsz};
	yaml_parser_t parser;
	yaml_document_t extra;
	yaml_node_t *root;
	int rc;

	if (errsz)
		err[0] = '\0';
	c->file = strdup(name);
	c->marks = calloc(1, sizeof(*c->marks));
	if (!c->file || !c->marks)
		return load_oom(&ld);
	if (!yaml_parser_initialize(&parser))
		return load_oom(&ld);
	yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
	if (!yaml_parser_load(&parser, &ld.doc)) {
		rc = load_yaml_error(&ld, &parser, text, len);
		goto out_parser;
	}
	root = yaml_document_get_root_node(&ld.doc);
	if (root && !node_is_null(root)) {
		if (root->type != YAML_MAPPING_NODE) {
			rc = load_error(&ld, root->start_mark, "(top level)",
					"expected a mapping of settings, got %s", node_kind(root));
			goto out_doc;
		}
		rc = load_mapping(&ld, root, NULL, "", c, "");
		if (rc < 0)
			goto out_doc;
	}
	if (!yaml_parser_load(&parser, &extra)) {
		rc = load_yaml_error(&ld, &parser, text, len);
		goto out_doc;
	}
	root = yaml_document_get_root_node(&extra);
	if (root)
		rc = load_error(&ld, root->start_mark, "(top level)",
				"a second YAML document; the file must hold one");
	else
		rc = load_finish(&ld);
	yaml_document_delete(&extra);
out_doc:
	yaml_document_delete(&ld.doc);
out_parser:
	yaml_parser_delete(&parser);
	return rc;
}

int config_load_string(struct config *c, const char *name, const char *yaml, char *err,
		       size_t errsz)
{
	config_init_defaults(c);
	if (!yaml) {
		snprintf(err, errsz, "%s: no text", name ? name : "(string)");
		return -EINVAL;
	}
	return load_text(c, name ? name : "(string)", yaml, strlen(yaml), err, errsz);
}

int config_load(struct config *c, const char *path, char *err, size_t errsz)
{
	char *text = NULL;
	size_t len = 0;
	struct stat st;
	ssize_t r;
	int fd, rc;

	config_init_defaults(c);
	if (errsz)
		err[0] = '\0';
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		rc = -errno;
		snprintf(err, errsz, "%s: cannot open: %s", path, strerror(-rc));
		return rc;
	}
	if (fstat(fd, &st) < 0) {
		rc = -errno;
		snprintf(err, errsz, "%s: cannot stat: %s", path, strerror(-rc));
		goto out_close;
	}
	if (!S_ISREG(st.st_mode) || st.st_size > CONFIG_FILE_MAX) {
		snprintf(err, errsz, "%s: not a regular file of at most %u bytes", path,
			 CONFIG_FILE_MAX);
		rc = -EINVAL;
		goto out_close;
	}
	text = malloc((size_t)st.st_size + 1);
	if (!text) {
		rc = -ENOMEM;
		snprintf(err, errsz, "%s: out of memory", path);
		goto out_close;
	}
	while (len < (size_t)st.st_size) {
		r = read(fd, text + len, (size_t)st.st_size - len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			rc = -errno;
			snprintf(err, errsz, "%s: cannot read: %s", path, strerror(-rc));
			goto out_free;
		}
		if (r == 0)
			break; /* shrank under us: take what is there */
		len += (size_t)r;
	}
	text[len] = '\0';
	rc = load_text(c, path, text, len, err, errsz);
out_free:
	free(text);
out_close:
	close(fd);
	if (errsz)
		sanitise_line(err);
	return rc;
}

/* ---- validation ------------------------------------------------------- */

static int validate_error(const struct config *c, char *err, size_t errsz, const char *key,
			  const char *fallback, const char *fmt, ...)
	__attribute__((format(printf, 6, 7)));

/*
 * Report a problem with @key at the place it was read (or, failing that,
 * where @fallback was: the mount's item); a config built in code has none.
 */
static int validate_error(const struct config *c, char *err, size_t errsz, const char *key,
			  const char *fallback, const char *fmt, ...)
{
	const struct config_mark *mk = marks_find(c->marks, key);
	const char *file = c->file ? c->file : "(config)";
	char msg[CONFIG_MSG_MAX];
	va_list ap;

	if (!mk && fallback)
		mk = marks_find(c->marks, fallback);
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (!errsz)
		return -EINVAL;
	if (mk)
		snprintf(err, errsz, "%s:%d:%d: %s: %s", file, mk->line, mk->column, key, msg);
	else
		snprintf(err, errsz, "%s: %s: %s", file, key, msg);
	sanitise_line(err);
	return -EINVAL;
}

/* Every key of scope @list in @base: set when needed, within its bounds. */
static int validate_scope(const struct config *c, const struct config_key *list, const void *base,
			  const char *disp_prefix, const char *item, char *err, size_t errsz)
{
	char key[CONFIG_KEY_MAX], range[CONFIG_KEY_MAX], val[64];
	uint64_t u;
	double d;

	for (size_t i = 0; i < CONFIG_N_KEYS; i++) {
		const struct config_key *k = &config_keys[i];

		if (key_list(k) != list || (k->flags & CONFIG_K_PART))
			continue;
		key_join(key, disp_prefix, key_local(k));
		if (key_is_string(k) && !(k->flags & CONFIG_K_OPTIONAL) &&
		    !*(char *const *)key_field(k, base))
			return validate_error(c, err, errsz, key, item, "required");
		if (!key_is_number(k))
			continue;
		number_get(k, base, &u, &d);
		if (!number_in_range(k, u, d)) {
			range_text(k, range, sizeof(range));
			number_format(k, u, d, val, sizeof(val));
			return validate_error(c, err, errsz, key, item, "must be %s, got %s", range,
					      val);
		}
	}
	return 0;
}

static bool path_is_under(const char *p, const char *dir)
{
	size_t n = strlen(dir);

	return !strncmp(p, dir, n) && (p[n] == '/' || dir[n - 1] == '/');
}

static int validate_mount(const struct config *c, size_t i, char *err, size_t errsz)
{
	const struct config_key *mounts = key_by_name("mounts");
	const struct config_mount *m = &c->mounts[i];
	char item[CONFIG_KEY_MAX], prefix[CONFIG_KEY_MAX], key[CONFIG_KEY_MAX];
	int rc;

	snprintf(item, sizeof(item), "mounts[%zu]", i);
	key_join(prefix, item, ".");
	rc = validate_scope(c, mounts, m, prefix, item, err, errsz);
	if (rc < 0)
		return rc;

#define MKEY(leaf) key_join(key, prefix, leaf)
	if (!path_is_normal(m->path) || !strcmp(m->path, "/"))
		return validate_error(
			c, err, errsz, MKEY("path"), item,
			"expected an absolute, normalised path other than /, got '%s'", m->path);
	for (size_t j = 0; j < i; j++) {
		const char *o = c->mounts[j].path;

		if (!o)
			continue;
		if (!strcmp(m->path, o))
			return validate_error(c, err, errsz, MKEY("path"), item,
					      "'%s' is also mounts[%zu]", m->path, j);
		if (path_is_under(m->path, o))
			return validate_error(c, err, errsz, MKEY("path"), item,
					      "'%s' is nested in mounts[%zu] ('%s')", m->path, j,
					      o);
		if (path_is_under(o, m->path))
			return validate_error(c, err, errsz, MKEY("path"), item,
					      "'%s' contains mounts[%zu] ('%s')", m->path, j, o);
	}
	switch (m->backend) {
	case CONFIG_BACKEND_POSIX:
		if (m->source && !path_is_normal(m->source))
			return validate_error(c, err, errsz, MKEY("source"), item,
					      "expected an absolute, normalised path, got '%s'",
					      m->source);
		if (m->url)
			return validate_error(c, err, errsz, MKEY("url"), item,
					      "applies only to backends http and s3");
		break;
	case CONFIG_BACKEND_HTTP:
	case CONFIG_BACKEND_S3:
		if (!m->url)
			return validate_error(c, err, errsz, MKEY("url"), item,
					      "required for backend %s",
					      choice_name(config_choices_backend, m->backend));
		if ((strncasecmp(m->url, "http://", 7) && strncasecmp(m->url, "https://", 8)) ||
		    m->url[strlen(m->url) - 1] != '/')
			return validate_error(c, err, errsz, MKEY("url"), item,
					      "expected an http:// or https:// URL ending in '/'");
		if (m->source)
			return validate_error(c, err, errsz, MKEY("source"), item,
					      "applies only to backend posix");
		if (m->large == CONFIG_LARGE_DIRECT)
			return validate_error(c, err, errsz, MKEY("large"), item,
					      "direct applies only to backend posix");
		break;
	default:
		return validate_error(c, err, errsz, MKEY("backend"), item, "unknown backend %d",
				      (int)m->backend);
	}
	if (m->consistency == CONFIG_CONSISTENCY_TTL && m->ttl_ns < 1000000)
		return validate_error(c, err, errsz, MKEY("ttl"), item,
				      "must be at least 1ms with consistency: ttl");
	if (m->backend == CONFIG_BACKEND_S3 && !m->region)
		return validate_error(c, err, errsz, MKEY("region"), item,
				      "required for backend s3");
	if (m->backend != CONFIG_BACKEND_S3 && m->region)
		return validate_error(c, err, errsz, MKEY("region"), item,
				      "applies only to backend s3");
	if (m->backend != CONFIG_BACKEND_S3 && m->credentials_file)
		return validate_error(c, err, errsz, MKEY("credentials_file"), item,
				      "applies only to backend s3");
	if (m->n_allow_uids > CONFIG_MAX_IDS || m->n_allow_gids > CONFIG_MAX_IDS)
		return validate_error(c, err, errsz, MKEY("allow_uids"), item, "more than %d ids",
				      CONFIG_MAX_IDS);
#undef MKEY
	return 0;
}

static int validate_peers(const struct config *c, char *err, size_t errsz)
{
	const struct config_key *nodes = key_by_name("peers.nodes");
	char item[CONFIG_KEY_MAX], prefix[CONFIG_KEY_MAX], key[CONFIG_KEY_MAX];
	bool self_found = false;
	int rc;

	if (c->peers.n_nodes > CONFIG_MAX_PEERS)
		return validate_error(c, err, errsz, "peers.nodes", NULL, "more than %d nodes",
				      CONFIG_MAX_PEERS);
	for (size_t i = 0; i < c->peers.n_nodes; i++) {
		const struct config_peer *n = &c->peers.nodes[i];

		snprintf(item, sizeof(item), "peers.nodes[%zu]", i);
		key_join(prefix, item, ".");
		rc = validate_scope(c, nodes, n, prefix, item, err, errsz);
		if (rc < 0)
			return rc;
		for (size_t j = 0; j < i; j++)
			if (!strcmp(n->name, c->peers.nodes[j].name)) {
				key_join(key, prefix, "name");
				return validate_error(c, err, errsz, key, item,
						      "'%s' is also peers.nodes[%zu]", n->name, j);
			}
		if (c->peers.self && !strcmp(n->name, c->peers.self))
			self_found = true;
	}
	if (!c->peers.n_nodes)
		return 0;
	if (!c->peers.self)
		return validate_error(c, err, errsz, "peers.self", "peers.nodes",
				      "required with peers.nodes");
	if (!self_found)
		return validate_error(c, err, errsz, "peers.self", "peers.nodes",
				      "'%s' is not among peers.nodes", c->peers.self);
	if (!c->peers.secret_file)
		return validate_error(c, err, errsz, "peers.secret_file", "peers.nodes",
				      "required with peers.nodes: peers authenticate");
	return 0;
}

int config_validate(const struct config *c, char *err, size_t errsz)
{
	char a[32], b[32];
	int rc;

	if (errsz)
		err[0] = '\0';
	rc = validate_scope(c, NULL, c, "", NULL, err, errsz);
	if (rc < 0)
		return rc;
	if (c->cache.low_watermark > c->cache.high_watermark) {
		format_ratio(c->cache.low_watermark, a, sizeof(a));
		format_ratio(c->cache.high_watermark, b, sizeof(b));
		return validate_error(c, err, errsz, "cache.low_watermark", "cache.high_watermark",
				      "%s is above cache.high_watermark (%s)", a, b);
	}
	if (c->fetch.fg_reserved >= c->fetch.max_parallel)
		return validate_error(c, err, errsz, "fetch.fg_reserved", "fetch.max_parallel",
				      "must be below fetch.max_parallel (%u), got %u",
				      c->fetch.max_parallel, c->fetch.fg_reserved);
	if (c->n_mounts > CONFIG_MAX_MOUNTS)
		return validate_error(c, err, errsz, "mounts", NULL, "more than %d mounts",
				      CONFIG_MAX_MOUNTS);
	for (size_t i = 0; i < c->n_mounts; i++) {
		rc = validate_mount(c, i, err, errsz);
		if (rc < 0)
			return rc;
	}
	return validate_peers(c, err, errsz);
}

/* ---- lookups ---------------------------------------------------------- */

const struct config_mount *config_find_mount(const struct config *c, const char *path)
{
	const struct config_mount *best = NULL;
	size_t best_len = 0;

	if (!path)
		return NULL;
	for (size_t i = 0; i < c->n_mounts && i < CONFIG_MAX_MOUNTS; i++) {
		const char *mp = c->mounts[i].path;
		size_t n;

		if (!mp || !*mp)
			continue;
		n = strlen(mp);
		if (strncmp(path, mp, n) || (path[n] && path[n] != '/' && mp[n - 1] != '/'))
			continue;
		if (!best || n > best_len) {
			best = &c->mounts[i];
			best_len = n;
		}
	}
	return best;
}

/* ---- printing --------------------------------------------------------- */

/* Can @s be written as a plain YAML scalar that reads back as the same text? */
static bool plain_ok(const char *s)
{
	static const char *const reserved[] = {"~", "null", "Null", "NULL"};

	if (!*s || strchr("-?:,[]{}#&*!|>'\"%@`", s[0]) || s[strlen(s) - 1] == ':')
		return false;
	for (size_t i = 0; i < sizeof(reserved) / sizeof(reserved[0]); i++)
		if (!strcmp(s, reserved[i]))
			return false;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && !strchr("/._-+@:=;", *s))
			return false;
	return true;
}

static void print_string(FILE *out, const char *s)
{
	if (!s) {
		fputs("~", out);
		return;
	}
	if (plain_ok(s)) {
		fputs(s, out);
		return;
	}
	fputc('"', out);
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;

		if (ch == '"' || ch == '\\')
			fprintf(out, "\\%c", ch);
		else if (ch < 0x20 || ch == 0x7f)
			fprintf(out, "\\x%02x", ch);
		else
			fputc(ch, out);
	}
	fputc('"', out);
}

struct printer {
	FILE *out;
	int base;  /* column of the current block's keys */
	bool dash; /* the next line opens a list item */
};

static void print_indent(struct printer *p, int level)
{
	if (p->dash) {
		fprintf(p->out, "%*s- ", p->base - 2, "");
		p->dash = false;
	} else {
		fprintf(p->out, "%*s", p->base, "");
	}
	fprintf(p->out, "%*s", 2 * level, "");
}

static void print_scope(struct printer *p, const struct config_key *list, const void *base);

static void print_value(struct printer *p, const struct config_key *k, const void *base, int level)
{
	const void *f = key_field(k, base);
	char buf[64];
	uint64_t u;
	double d;

	switch (k->type) {
	case CONFIG_T_STRING:
	case CONFIG_T_PATH:
	case CONFIG_T_URL:
	case CONFIG_T_ADDRESS:
	case CONFIG_T_WORD:
		fputc(' ', p->out);
		print_string(p->out, *(char *const *)f);
		break;
	case CONFIG_T_BOOL:
		fputs(*(const bool *)f ? " true" : " false", p->out);
		break;
	case CONFIG_T_ENUM:
		fprintf(p->out, " %s", choice_name(k->choices, *(const int *)f));
		break;
	case CONFIG_T_CONSISTENCY:
		if (*(const int *)f == CONFIG_CONSISTENCY_TTL) {
			const struct config_key *ttl = key_find(key_list(k), "ttl");

			number_get(ttl, base, &u, &d);
			number_format(ttl, u, d, buf, sizeof(buf));
			fprintf(p->out, " { ttl: %s }", buf);
		} else {
			fprintf(p->out, " %s", choice_name(k->choices, *(const int *)f));
		}
		break;
	case CONFIG_T_IDS: {
		size_t n = *(const size_t *)((const char *)base + k->count_offset);

		fputs(" [", p->out);
		for (size_t i = 0; i < n && i < k->max_items; i++)
			fprintf(p->out, "%s%u", i ? ", " : "", ((const uint32_t *)f)[i]);
		fputc(']', p->out);
		break;
	}
	case CONFIG_T_PEERS:
	case CONFIG_T_MOUNTS: {
		size_t n = *(const size_t *)((const char *)base + k->count_offset);
		size_t size = k->type == CONFIG_T_MOUNTS ? sizeof(struct config_mount)
							 : sizeof(struct config_peer);

		if (!n) {
			fputs(" []", p->out);
			break;
		}
		fputc('\n', p->out);
		for (size_t i = 0; i < n && i < k->max_items; i++) {
			struct printer item = {
				.out = p->out,
				.base = p->base + 2 * level + 4,
				.dash = true,
			};

			print_scope(&item, k, (const char *)f + i * size);
		}
		return; /* print_scope ended the line */
	}
	default:
		number_get(k, base, &u, &d);
		number_format(k, u, d, buf, sizeof(buf));
		fprintf(p->out, " %s", buf);
		break;
	}
	fputc('\n', p->out);
}

/*
 * Print the keys of scope @list from @base as a block, opening a section
 * ("cache:") whenever a key's section differs from the previous key's.
 */
static void print_scope(struct printer *p, const struct config_key *list, const void *base)
{
	const char *prev = "";

	for (size_t i = 0; i < CONFIG_N_KEYS; i++) {
		const struct config_key *k = &config_keys[i];
		const char *local = key_local(k), *a = local, *b = prev, *leaf;
		int level = 0;

		if (key_list(k) != list || (k->flags & CONFIG_K_PART))
			continue;
		/* an unset item key reads back unset: spare the reader the noise */
		if (list && key_is_string(k) && !k->def && !*(char *const *)key_field(k, base))
			continue;
		/* skip the sections this key shares with the previous one */
		for (;;) {
			size_t na = strcspn(a, "."), nb = strcspn(b, ".");

			if (!a[na] || !b[nb] || na != nb || strncmp(a, b, na))
				break;
			a += na + 1;
			b += nb + 1;
			level++;
		}
		/* open the sections it does not share */
		for (;;) {
			size_t na = strcspn(a, ".");

			if (!a[na])
				break;
			print_indent(p, level);
			fprintf(p->out, "%.*s:\n", (int)na, a);
			a += na + 1;
			level++;
		}
		leaf = a;
		print_indent(p, level);
		fprintf(p->out, "%s:", leaf);
		print_value(p, k, base, level);
		prev = local;
	}
}

void config_print(const struct config *c, FILE *out)
{
	struct printer p = {.out = out};
	char name[CONFIG_KEY_MAX];

	fprintf(out, "# granaryd settings: %s, with every default filled in\n",
		quote(c->file ? c->file : config_default_file, name, sizeof(name)));
	print_scope(&p, NULL, c);
}

/* ---- the reference ---------------------------------------------------- */

static void reference_row(FILE *out, const struct config_key *k)
{
	char allowed[CONFIG_KEY_MAX] = "";
	const char *type = config_types[k->type].name;

	if (k->choices)
		choices_list(k->choices, allowed, sizeof(allowed), true);
	else
		range_text(k, allowed, sizeof(allowed));
	fprintf(out, "| `%s` | %s | ", k->name, type);
	if (k->def_doc)
		fprintf(out, "%s", k->def_doc);
	else if (k->def)
		fprintf(out, "`%s`", k->def);
	else
		fputs("none", out);
	fprintf(out, " | %s | %s |\n", allowed, k->help);
}

void config_print_reference(FILE *out)
{
	bool seen[CONFIG_T_COUNT] = {false};

	fputs("<!-- generated by config_print_reference() from config/config_keys.h -->\n\n", out);
	fputs("| key | type | default | allowed | meaning |\n", out);
	fputs("|---|---|---|---|---|\n", out);
	for (size_t i = 0; i < CONFIG_N_KEYS; i++)
		reference_row(out, &config_keys[i]);
	fputs("\nValue types:\n\n", out);
	for (size_t i = 0; i < CONFIG_N_KEYS; i++)
		seen[config_keys[i].type == CONFIG_T_WORD ? CONFIG_T_ENUM : config_keys[i].type] =
			true;
	for (int t = 0; t < CONFIG_T_COUNT; t++)
		if (seen[t])
			fprintf(out, "- **%s**: %s\n", config_types[t].name,
				config_types[t].syntax);
	fputs("<!-- end of generated reference -->\n", out);
}
