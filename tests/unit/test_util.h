/* Shared helpers for unit tests (cmocka). */
#ifndef BROKER_TEST_UTIL_H
#define BROKER_TEST_UTIL_H
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

/* Directory of ../shared/fixtures/real-oidc (env BROKER_FIXTURES overrides). */
static inline const char *test_fixtures_dir(void)
{
    const char *d = getenv("BROKER_FIXTURES");
    return d ? d : "../shared/fixtures/real-oidc";
}

/* Read a whole file (relative paths under the fixtures dir when rel_fixture is set); NUL-terminated. */
static inline char *test_read_file(const char *path, int rel_fixture, size_t *len)
{
    char full[1024];
    if (rel_fixture)
        snprintf(full, sizeof(full), "%s/%s", test_fixtures_dir(), path);
    else
        snprintf(full, sizeof(full), "%s", path);
    FILE *f = fopen(full, "rb");
    if (!f) {
        fprintf(stderr, "cannot open %s\n", full);
        return NULL;
    }
    char *buf = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n + 4096 + 1 > cap) {
            cap = (cap + 4096 + 1) * 2;
            char *nb = realloc(buf, cap);
            if (!nb) { free(buf); fclose(f); return NULL; }
            buf = nb;
        }
        size_t r = fread(buf + n, 1, 4096, f);
        n += r;
        if (r == 0) break;
    }
    fclose(f);
    buf[n] = 0;
    /* strip one trailing newline so token files compare as tokens */
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        buf[--n] = 0;
    if (len) *len = n;
    return buf;
}
#endif
