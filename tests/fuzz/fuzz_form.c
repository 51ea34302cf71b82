// SOURCES: broker/form.c broker/jwt.c broker/b64.c broker/err.c broker/json.c
/* libFuzzer target: form_parse and form_parse_json with scratch of exactly the input size
 * (the documented bound), checking the invariants of every parsed field. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "form.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(const struct form *f)
{
    if (f->n > BROKER_MAX_FORM_FIELDS)
        abort();
    for (size_t i = 0; i < f->n; i++) {
        size_t nl = strlen(f->f[i].name), len;
        if (nl == 0 || nl > BROKER_MAX_FORM_NAME || f->f[i].len > BROKER_MAX_FORM_VALUE ||
            strlen(f->f[i].value) != f->f[i].len)
            abort();
        /* names are unique: form_get finds this very field */
        if (form_get(f, f->f[i].name, &len) != f->f[i].value || len != f->f[i].len)
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *scratch = malloc(size ? size : 1);
    struct form f;

    if (scratch == NULL)
        return 0;
    enum broker_err e = form_parse(data, size, &f, scratch, size);
    if (e == BROKER_OK)
        check(&f);
    else if (e != BROKER_ERR_BAD_REQUEST || f.n != 0)
        abort(); /* scratch of size bytes is always enough: INTERNAL would be a bug */
    e = form_parse_json(data, size, &f, scratch, size);
    if (e == BROKER_OK)
        check(&f);
    else if (e != BROKER_ERR_BAD_REQUEST || f.n != 0)
        abort();
    free(scratch);
    return 0;
}
