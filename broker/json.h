/* Strict, bounded, single-pass JSON parser (RFC 8259) that builds ordinary jansson values. It
 * replaces json_loadb on the token path, where jansson's character-at-a-time stream lexer cost
 * about as much as the RSA signature check. */
#ifndef BROKER_JSON_H
#define BROKER_JSON_H
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

/* max_depth above this is treated as this, so recursion stays bounded whatever a caller passes. */
#define JSON_PARSE_DEPTH_CAP 256

/* Parse exactly one JSON value (any kind) from p[0..len), whitespace around it allowed; never
 * reads past len. Rejects duplicate object keys, more than max_depth nested arrays/objects
 * ("[]" and "[1]" have depth 1, a scalar 0: the lexical count jwt_json_load_strict always used),
 * invalid UTF-8 (overlong, surrogates, above U+10FFFF), raw control characters in strings,
 * "\u0000", unpaired surrogate escapes, numbers outside the RFC grammar, integers outside int64
 * and reals that overflow a double. Returns a new reference, or NULL on any error. */
json_t *json_parse_strict(const uint8_t *p, size_t len, size_t max_depth);

#endif
