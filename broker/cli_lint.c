/* `broker policy lint [--json] PATH...`. Documents are loaded the way `broker policy apply` loads
 * them (a file, or a directory's *.json files, sorted, not recursive) and remembered with their
 * file so each finding names it. A file that is not a policy document is itself a finding. */
#include "cli_lint.h"
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

struct lint_input {
    json_t *issuers, *identities;     /* documents */
    json_t *issuer_files, *identity_files; /* the file of each, same index */
    json_t *bad;                      /* findings about files that are no document: [{"file","message"}] */
    size_t nfiles;
};

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

static int lint_bad_file(struct lint_input *in, const char *path, const char *why)
{
    return json_array_append_new(in->bad, json_pack("{s:s, s:s}", "file", path, "message", why)) == 0 ? 0 : 2;
}

/* 0 loaded (or recorded as a bad document), 2 on I/O errors. */
static int lint_load_file(struct lint_input *in, const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "policy lint: %s: %s\n", path, strerror(errno));
        return 2;
    }
    char *buf = malloc(BROKER_MAX_DOC_BYTES + 1);
    size_t n = buf ? fread(buf, 1, BROKER_MAX_DOC_BYTES + 1, f) : 0;
    int rc = buf && ferror(f) ? 2 : 0;
    fclose(f);
    in->nfiles++;
    if (!buf || rc) {
        fprintf(stderr, "policy lint: %s: %s\n", path, buf ? "read error" : "out of memory");
        free(buf);
        return 2;
    }
    json_t *doc = n > BROKER_MAX_DOC_BYTES ? NULL : jwt_json_load_strict((const uint8_t *)buf, n, BROKER_MAX_JSON_DEPTH);
    free(buf);
    const char *kind = policy_doc_kind(doc);
    if (n > BROKER_MAX_DOC_BYTES)
        rc = lint_bad_file(in, path, "larger than the document limit (1 MiB)");
    else if (!json_is_object(doc))
        rc = lint_bad_file(in, path, "not a JSON object (or duplicate keys, or nested too deeply)");
    else if (!kind)
        rc = lint_bad_file(in, path, "neither an issuer document (\"issuer\") nor an identity document (\"identity\")");
    else if (strcmp(kind, "issuer") == 0)
        rc = json_array_append(in->issuers, doc) || json_array_append_new(in->issuer_files, json_string(path)) ? 2 : 0;
    else
        rc = json_array_append(in->identities, doc) || json_array_append_new(in->identity_files, json_string(path)) ? 2
                                                                                                                   : 0;
    json_decref(doc);
    return rc;
}

static int lint_load_path(struct lint_input *in, const char *path)
{
    struct stat sb;
    struct dirent **ents;
    int rc = 0, n;
    if (stat(path, &sb) != 0) {
        fprintf(stderr, "policy lint: %s: %s\n", path, strerror(errno));
        return 2;
    }
    if (!S_ISDIR(sb.st_mode))
        return lint_load_file(in, path);
    if ((n = scandir(path, &ents, NULL, alphasort)) < 0) {
        fprintf(stderr, "policy lint: %s: %s\n", path, strerror(errno));
        return 2;
    }
    for (int i = 0; i < n; i++) {
        size_t l = strlen(ents[i]->d_name);
        char full[PATH_MAX];
        if (rc == 0 && l > 5 && strcmp(ents[i]->d_name + l - 5, ".json") == 0 && ents[i]->d_name[0] != '.' &&
            (size_t)snprintf(full, sizeof(full), "%s/%s", path, ents[i]->d_name) < sizeof(full) &&
            stat(full, &sb) == 0 && S_ISREG(sb.st_mode))
            rc = lint_load_file(in, full);
        free(ents[i]);
    }
    free(ents);
    return rc;
}

static const char *lint_file_of(const struct lint_input *in, const struct lint_finding *f)
{
    const json_t *files = f->doc_kind == LINT_DOC_ISSUER ? in->issuer_files : in->identity_files;
    if (f->doc_kind == LINT_DOC_SET)
        return "(documents)";
    return json_string_value(json_array_get(files, f->doc_index));
}

int cli_policy_lint(int argc, char **argv)
{
    struct lint_input in = {json_array(), json_array(), json_array(), json_array(), json_array(), 0};
    struct lint_report rep = {0};
    json_t *all = NULL;
    bool as_json = false, flags = true;
    int rc = 2, npaths = 0;
    size_t i, errors = 0, warnings = 0;
    const json_t *b;

    if (!in.issuers || !in.identities || !in.issuer_files || !in.identity_files || !in.bad)
        goto out;
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
            if (lint_load_path(&in, argv[k]) != 0)
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
    json_decref(in.issuers);
    json_decref(in.identities);
    json_decref(in.issuer_files);
    json_decref(in.identity_files);
    json_decref(in.bad);
    return rc;
}
