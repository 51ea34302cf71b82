/* `broker policy lint [--json] PATH...`. Documents are loaded the way `broker policy apply` loads
 * them (a file, or a directory's *.json files, sorted, not recursive) and remembered with their
 * file so each finding names it. A file that is not a policy document is itself a finding. */
#include "cli_lint.h"
#include "docload.h"
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "bounds.h"
#include "jwt.h"
#include "policy.h"

#define LINT_USAGE "usage: broker policy lint [--json] PATH...\n"

void cli_lint_print(FILE *out, const char *file, const struct lint_finding *f)
{
    const char *sep = "";
    if (file) {
        fprintf(out, "%s", file);
        sep = ": ";
    }
    if (f->doc_kind == LINT_DOC_IDENTITY && f->identity[0])
        fprintf(out, "%sidentity %s", sep, f->identity);
    else if (f->doc_kind == LINT_DOC_IDENTITY)
        fprintf(out, "%sidentity #%zu", sep, f->doc_index);
    else if (f->doc_kind == LINT_DOC_ISSUER)
        fprintf(out, "%sissuer %s", sep, f->issuer[0] ? f->issuer : "?");
    if (f->doc_kind != LINT_DOC_SET)
        sep = " ";
    if (f->policy[0]) {
        fprintf(out, "%spolicy %s", sep, f->policy);
        sep = " ";
    }
    fprintf(out, "%s%s[%s]: %s\n    fix: %s\n", sep[0] ? ": " : "", lint_level_name(f->level), f->rule, f->message,
            f->fix);
}

static const char *lint_file_of(const struct docset *in, const struct lint_finding *f)
{
    const json_t *files = f->doc_kind == LINT_DOC_ISSUER ? in->issuer_files : in->identity_files;
    if (f->doc_kind == LINT_DOC_SET)
        return "(documents)";
    return json_string_value(json_array_get(files, f->doc_index));
}

int cli_policy_lint(int argc, char **argv)
{
    struct docset in;
    struct lint_report rep = {0};
    json_t *all = NULL;
    bool as_json = false, flags = true;
    int rc = 2, npaths = 0;
    size_t i, errors = 0, warnings = 0;
    const json_t *b;

    if (docset_init(&in) != 0)
        return 2;
    for (int k = 0; k < argc; k++) {
        if (flags && strcmp(argv[k], "--json") == 0) {
            as_json = true;
        } else if (flags && strcmp(argv[k], "--") == 0) {
            flags = false;
        } else if (flags && (strcmp(argv[k], "-h") == 0 || strcmp(argv[k], "--help") == 0)) {
            fputs(LINT_USAGE, stdout);
            rc = 0;
            goto out;
        } else if (flags && argv[k][0] == '-') {
            fprintf(stderr, "policy lint: unknown flag %s\n" LINT_USAGE, argv[k]);
            goto out;
        } else {
            npaths++;
            if (docset_load_path(&in, argv[k], true, stderr) != 0) /* bad documents are findings */
                goto out;
        }
    }
    if (npaths == 0) {
        fputs(LINT_USAGE, stderr);
        goto out;
    }
    if (lint_documents(in.issuers, in.identities, &rep) != BROKER_OK) {
        fprintf(stderr, "policy lint: out of memory\n");
        goto out;
    }
    errors = lint_report_count(&rep, LINT_ERROR) + json_array_size(in.bad);
    warnings = lint_report_count(&rep, LINT_WARNING);
    if (as_json && !(all = json_array()))
        goto out;
    json_array_foreach (in.bad, i, b) {
        const char *file = json_string_value(json_object_get(b, "file"));
        const char *msg = json_string_value(json_object_get(b, "message"));
        const char *fix = "make it an issuer or identity document, or move it out of PATH";
        if (as_json && json_array_append_new(all, json_pack("{s:s, s:s, s:s, s:s, s:s}", "file", file, "level",
                                                            "error", "rule", "invalid-document", "message", msg,
                                                            "fix", fix)) != 0)
            goto out;
        if (!as_json)
            printf("%s: error[invalid-document]: %s\n    fix: %s\n", file, msg, fix);
    }
    for (i = 0; i < rep.n; i++) {
        const char *file = lint_file_of(&in, &rep.items[i]);
        json_t *o = as_json ? lint_finding_json(&rep.items[i]) : NULL;
        if (as_json && (!o || json_object_set_new(o, "file", json_string(file ? file : "?")) != 0 ||
                        json_array_append_new(all, o) != 0))
            goto out;
        if (!as_json)
            cli_lint_print(stdout, file ? file : "?", &rep.items[i]);
    }
    if (as_json) {
        char *text = json_dumps(all, JSON_INDENT(2));
        if (!text)
            goto out;
        puts(text);
        free(text);
    } else if (errors + warnings == 0) {
        printf("%zu file%s: no findings\n", in.nfiles, in.nfiles == 1 ? "" : "s");
    } else {
        printf("%zu file%s: %zu error%s, %zu warning%s\n", in.nfiles, in.nfiles == 1 ? "" : "s", errors,
               errors == 1 ? "" : "s", warnings, warnings == 1 ? "" : "s");
    }
    rc = fflush(stdout) != 0 ? 2 : errors ? 1 : 0;
out:
    lint_report_free(&rep);
    json_decref(all);
    docset_clear(&in);
    return rc;
}
