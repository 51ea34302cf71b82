#include "dec.h"

#include <string.h>

size_t dec_i64(int64_t v, char out[DEC_I64_MAX])
{
    char tmp[DEC_I64_MAX];
    size_t i = sizeof(tmp);
    uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v; /* INT64_MIN too: no signed overflow */
    tmp[--i] = '\0';
    do {
        tmp[--i] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        tmp[--i] = '-';
    memcpy(out, tmp + i, sizeof(tmp) - i);
    return sizeof(tmp) - i - 1;
}
