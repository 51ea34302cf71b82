/* Issuer presets ("preset": "github-actions", "kubernetes", ...) and the document helpers they share
 * with policy_doc.c. Internal to the policy module. */
#ifndef BROKER_POLICY_PRESET_H
#define BROKER_POLICY_PRESET_H
#include <stdbool.h>
#include <stddef.h>
#include <jansson.h>
#include "policy.h"

#define POLICY_DOC_MAX_TEXT 1024 /* description, url, audience */

enum policy_doc_str { POLICY_DOC_STR_NAME, POLICY_DOC_STR_TEXT };

/* A required, non-empty string field without NUL bytes, copied into *out (policy_doc.c). */
enum broker_err policy_doc_string(const json_t *v, const char *path, enum policy_doc_str kind, size_t max, char **out,
                                  char *err, size_t errlen) BROKER_WUR;
/* https://authority[/path][?query]; no userinfo, no fragment, printable ASCII only (policy_doc.c). */
bool policy_doc_https_url(const char *s, size_t len, bool allow_query);

/* Fills what the document's preset implies, unless the document spells it out (fields beside a preset
 * override it): url, algorithms (when "algorithms" is absent) and how keys are found. Without "preset",
 * only refuses preset-only fields. out->url is the document's own url or NULL. */
enum broker_err policy_preset_apply(const json_t *doc, struct issuer_cfg *out, char *err, size_t errlen) BROKER_WUR;

#endif
