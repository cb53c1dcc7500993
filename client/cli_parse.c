/*
 * cli_parse.c - what the CLI is given, read: numbers and durations from its
 * arguments, paths made absolute without touching the file system, and
 * manifests into the growable string lists the warm works on (cli_util.h).
 */
#include "cli_util.h"
#include "granary.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

void cli_strv_init(struct cli_strv *s)
{
	memset(s, 0, sizeof(*s));
}

void cli_strv_fini(struct cli_strv *s)
{
	for (size_t i = 0; i < s->n; i++)
		free(s->v[i]);
	free(s->v);
	free(s->sizes);
	memset(s, 0, sizeof(*s));
}

int cli_strv_push(struct cli_strv *s, const char *str, uint64_t size)
{
	char *copy;

	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 64;
		char **v = realloc(s->v, cap * sizeof(*v));
		uint64_t *sz;

		if (!v)
			return -ENOMEM;
		s->v = v;
		sz = realloc(s->sizes, cap * sizeof(*sz));
		if (!sz)
			return -ENOMEM;
		s->sizes = sz;
		s->cap = cap;
	}
	copy = strdup(str);
	if (!copy)
		return -ENOMEM;
	s->v[s->n] = copy;
	s->sizes[s->n] = size;
	s->n++;
	return 0;
}

int cli_parse_uint(const char *s, unsigned long min, unsigned long max, unsigned long *out)
{
	unsigned long long v;
	char *end;

	if (!s || !isdigit((unsigned char)s[0]))
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (*end)
		return -EINVAL;
	if (errno == ERANGE || v < min || v > max)
		return -ERANGE;
	*out = (unsigned long)v;
	return 0;
}

int cli_abspath(const char *cwd, const char *in, char *out, size_t outsz)
{
	char *tmp;
	size_t o = 0, i = 0, len;
	int rc = 0;

	if (!in || !*in || outsz < 2)
		return -EINVAL;
	if (in[0] == '/') {
		tmp = strdup(in);
	} else {
		if (!cwd || cwd[0] != '/')
			return -EINVAL;
		if (asprintf(&tmp, "%s/%s", cwd, in) < 0)
			tmp = NULL;
	}
	if (!tmp)
		return -ENOMEM;
	len = strlen(tmp);
	while (i < len) {
		size_t start, clen;

		while (i < len && tmp[i] == '/')
			i++;
		start = i;
		while (i < len && tmp[i] != '/')
			i++;
		clen = i - start;
		if (clen == 0 || (clen == 1 && tmp[start] == '.'))
			continue;
		if (clen == 2 && tmp[start] == '.' && tmp[start + 1] == '.') {
			/* back up over the last component; ".." of "/" is "/" */
			while (o > 0 && out[o - 1] != '/')
				o--;
			if (o > 0)
				o--;
			continue;
		}
		if (o + 1 + clen + 1 > outsz) {
			rc = -ENAMETOOLONG;
			goto out;
		}
		out[o++] = '/';
		memcpy(out + o, tmp + start, clen);
		o += clen;
	}
	if (o == 0)
		out[o++] = '/';
	out[o] = '\0';
out:
	free(tmp);
	return rc;
}

char *cli_manifest_line(char *line)
{
	char *p, *end;

	p = line;
	while (*p == ' ' || *p == '\t')
		p++;
	for (end = p; *end; end++) {
		if (*end == '\n' || *end == '\r' ||
		    (*end == '#' && (end == p || end[-1] == ' ' || end[-1] == '\t')))
			break;
	}
	*end = '\0';
	while (end > p && (end[-1] == ' ' || end[-1] == '\t'))
		*--end = '\0';
	return *p ? p : NULL;
}

long cli_manifest_read(FILE *f, const char *cwd, struct cli_strv *out, char *err, size_t errsz)
{
	char *line = NULL, *abs = NULL;
	size_t cap = 0;
	long count = 0, lineno = 0;
	int rc = 0;

	abs = malloc(PATH_MAX);
	if (!abs)
		return -ENOMEM;
	errno = 0;
	while (getline(&line, &cap, f) >= 0) {
		char *path;

		lineno++;
		path = cli_manifest_line(line);
		if (!path)
			continue;
		rc = cli_abspath(cwd, path, abs, PATH_MAX);
		if (rc == 0)
			rc = cli_strv_push(out, abs, UINT64_MAX);
		if (rc < 0) {
			snprintf(err, errsz, "line %ld: %s", lineno, granary_strerror(rc));
			goto out;
		}
		count++;
	}
	if (ferror(f)) {
		rc = errno ? -errno : -EIO;
		snprintf(err, errsz, "line %ld: %s", lineno + 1, granary_strerror(rc));
	}
out:
	free(line);
	free(abs);
	return rc < 0 ? rc : count;
}

int cli_parse_seconds(const char *s, double min, double max, double *out)
{
	char *end;
	double v;

	if (!s || !(isdigit((unsigned char)s[0]) || s[0] == '.') || strpbrk(s, "xX"))
		return -EINVAL;
	errno = 0;
	v = strtod(s, &end);
	if (end == s || errno == ERANGE)
		return -EINVAL;
	if (*end == 's')
		end++;
	if (*end || !(v == v) || v > 1e300)
		return -EINVAL;
	if (v < min || v > max)
		return -ERANGE;
	*out = v;
	return 0;
}
