/*
 * fuzz_config.c - libFuzzer target for the configuration loader (config/).
 *
 * The input is a YAML document. Loading, validating, printing and freeing it
 * must never crash or leak (LeakSanitizer runs after every input); a refusal
 * comes with one line naming the file; what loads has normalised mount paths
 * that config_find_mount finds again. The size and duration parsers get the
 * same text.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

#define NAME "fuzz.yaml"

static FILE *devnull;

static void fail(const char *what, const char *detail)
{
	fprintf(stderr, "fuzz_config: invariant broken: %s: %s\n", what, detail ? detail : "");
	abort();
}

static void check_error(int rc, const char *err)
{
	if (!memchr(err, '\0', CONFIG_ERR_MAX))
		fail("error message not terminated", NULL);
	if (rc != -EINVAL && rc != -ENOMEM)
		fail("unexpected error code", err);
	if (strncmp(err, NAME ":", sizeof(NAME ":") - 1))
		fail("error message does not name the file", err);
	if (strchr(err, '\n'))
		fail("error message is more than one line", err);
}

static void check_loaded(const struct config *c)
{
	size_t i;
	int line, col;

	for (i = 0; i < c->n_mounts; i++) {
		const struct config_mount *m = &c->mounts[i], *found;

		if (!m->path || m->path[0] != '/')
			fail("mount path is not absolute", m->path);
		found = config_find_mount(c, m->path);
		if (!found || strcmp(found->path, m->path))
			fail("config_find_mount does not find a mount's own path", m->path);
	}
	config_key_location(c, "cache.dir", &line, &col);
	config_key_location(c, "mounts[0].path", &line, &col);
	config_print(c, devnull);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[CONFIG_ERR_MAX];
	struct config c;
	uint64_t u;
	char *text;
	int rc;

	if (!devnull && !(devnull = fopen("/dev/null", "w")))
		abort();
	text = malloc(size + 1);
	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';

	memset(err, 0x55, sizeof(err));
	rc = config_load_string(&c, NAME, text, err, sizeof(err));
	if (rc) {
		check_error(rc, err);
	} else {
		check_loaded(&c);
		memset(err, 0x55, sizeof(err));
		rc = config_validate(&c, err, sizeof(err));
		if (rc)
			check_error(rc, err);
	}
	config_free(&c);
	config_free(&c); /* documented safe twice */

	/* the scalar parsers shared with the CLI */
	if (size < 64) {
		config_parse_size(text, &u);
		config_parse_duration(text, &u);
	}
	free(text);
	return 0;
}
