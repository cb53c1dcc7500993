/*
 * cli_json.h - reading the daemon's status document (JSON), private to the
 * CLI's files that take it apart: cli_status.c prints it, cli_top.c samples
 * it. The getters take a NULL object as an absent one and never fail on a
 * member of another type: they return false and leave the output alone.
 */
#ifndef GRANARY_CLI_JSON_H
#define GRANARY_CLI_JSON_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Parse the status document @json. Returns the root object (release with
 * json_decref()), or NULL with "bad status document: ..." in @err.
 */
json_t *cli_json_parse(const char *json, char *err, size_t errsz);

/* A number member of @o as a double; false when absent or not a number. */
bool cli_json_num(json_t *o, const char *key, double *v);

/* A number member of @o as a count: negatives read as 0, reals truncated. */
bool cli_json_u64(json_t *o, const char *key, uint64_t *v);

/* A member as text: strings as they are, numbers and booleans printed. */
bool cli_json_text(json_t *o, const char *key, char *buf, size_t n);

/*
 * The backend of mount @m by name ("posix", "http", "s3"), whatever the
 * daemon sent otherwise, "-" when absent. Returns @buf or a constant.
 */
const char *cli_json_backend(json_t *m, char *buf, size_t n);

#endif
