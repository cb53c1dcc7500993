/*
 * cli_json.c - reading the daemon's status document (JSON): the document
 * parsed with its error, and members read by type, absent ones told apart
 * (cli_json.h). cli_status.c prints what it reads, cli_top.c samples it.
 */
#include "cli_json.h"
#include "cli_util.h"
#include "granary.h"

#include <stdio.h>
#include <string.h>

/* A number member of @o as a double; false when absent or not a number. */
bool cli_json_num(json_t *o, const char *key, double *v)
{
	json_t *x = o ? json_object_get(o, key) : NULL;

	if (!x || !json_is_number(x))
		return false;
	*v = json_number_value(x);
	return true;
}

bool cli_json_u64(json_t *o, const char *key, uint64_t *v)
{
	json_t *x = o ? json_object_get(o, key) : NULL;

	if (x && json_is_integer(x)) {
		json_int_t i = json_integer_value(x);

		*v = i < 0 ? 0 : (uint64_t)i;
		return true;
	}
	if (x && json_is_real(x)) {
		double d = json_real_value(x);

		*v = d < 0 ? 0 : (uint64_t)d;
		return true;
	}
	return false;
}

/* A member as text: strings as they are, numbers and booleans printed. */
bool cli_json_text(json_t *o, const char *key, char *buf, size_t n)
{
	json_t *x = o ? json_object_get(o, key) : NULL;

	if (!x)
		return false;
	if (json_is_string(x))
		snprintf(buf, n, "%s", json_string_value(x));
	else if (json_is_integer(x))
		snprintf(buf, n, "%lld", (long long)json_integer_value(x));
	else if (json_is_real(x))
		snprintf(buf, n, "%g", json_real_value(x));
	else if (json_is_boolean(x))
		snprintf(buf, n, "%s", json_is_true(x) ? "yes" : "no");
	else
		return false;
	return true;
}

const char *cli_json_backend(json_t *m, char *buf, size_t n)
{
	json_t *x = json_object_get(m, "backend");

	if (x && json_is_integer(x) &&
	    strcmp(cli_backend_name((uint32_t)json_integer_value(x)), "?"))
		return cli_backend_name((uint32_t)json_integer_value(x));
	if (!cli_json_text(m, "backend", buf, n))
		snprintf(buf, n, "-");
	return buf;
}

json_t *cli_json_parse(const char *json, char *err, size_t errsz)
{
	json_error_t je;
	json_t *root = json_loads(json, 0, &je);

	if (!root) {
		snprintf(err, errsz, "bad status document: %s (line %d)", je.text, je.line);
		return NULL;
	}
	if (!json_is_object(root)) {
		snprintf(err, errsz, "bad status document: not an object");
		json_decref(root);
		return NULL;
	}
	return root;
}
