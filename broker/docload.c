#include "docload.h"
#include <dirent.h>
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include "bounds.h"
#include "jwt.h"
#include "policy.h"

int docset_init(struct docset *d)
{
    d->issuers = json_array();
    d->identities = json_array();
    d->issuer_files = json_array();
    d->identity_files = json_array();
    d->bad = json_array();
    d->nfiles = 0;
    if (!d->issuers || !d->identities || !d->issuer_files || !d->identity_files || !d->bad) {
        docset_clear(d);
        return -1;
    }
    return 0;
}

void docset_clear(struct docset *d)
{
    json_decref(d->issuers);
    json_decref(d->identities);
    json_decref(d->issuer_files);
    json_decref(d->identity_files);
    json_decref(d->bad);
    memset(d, 0, sizeof(*d));
}

static int absolutize(json_t *doc, const char *key, const char *docpath, FILE *err)
{
    const char *v = json_string_value(json_object_get(doc, key));
    if (v == NULL || v[0] == '/')
        return 0;
    while (v[0] == '.' && v[1] == '/') /* "./x" is "x" */
        v += 2;
    /* A bearer token file is stored with only the document's directory resolved: the file itself
     * may be a symlink meant to move (Kubernetes rotates projected tokens through a "..data" link),
     * so its resolved target must not be what gets stored. */
    char dirbuf[PATH_MAX], realdir[PATH_MAX], joined[PATH_MAX * 2];
    snprintf(dirbuf, sizeof(dirbuf), "%s", docpath);
    if (realpath(dirname(dirbuf), realdir) == NULL) {
        fprintf(err, "%s: %s: cannot resolve the document's directory: %s\n", docpath, key, strerror(errno));
        return -1;
    }
    snprintf(joined, sizeof(joined), "%s/%s", realdir, v);
    char real[PATH_MAX];
    if (strcmp(key, "bearer_token_file") != 0 && realpath(joined, real) != NULL) /* static files: canonical */
        snprintf(joined, sizeof(joined), "%s", real);
    if (access(joined, F_OK) != 0) {
        fprintf(err, "%s: %s: cannot resolve %s: %s\n", docpath, key, joined, strerror(errno));
        return -1;
    }
    return json_object_set_new(doc, key, json_string(joined)) == 0 ? 0 : -1;
}

static int not_a_document(struct docset *d, const char *path, const char *why, bool collect_bad, FILE *err)
{
    if (!collect_bad) {
        fprintf(err, "%s: %s\n", path, why);
        return -1;
    }
    return json_array_append_new(d->bad, json_pack("{s:s, s:s}", "file", path, "message", why)) == 0 ? 0 : -1;
}

static int load_file(struct docset *d, const char *path, bool collect_bad, FILE *err)
{
    FILE *f = fopen(path, "rbe");
    if (f == NULL) {
        fprintf(err, "%s: %s\n", path, strerror(errno));
        return -1;
    }
    uint8_t *buf = malloc(BROKER_MAX_DOC_BYTES + 1);
    size_t n = buf ? fread(buf, 1, BROKER_MAX_DOC_BYTES + 1, f) : 0;
    bool ioerr = buf == NULL || ferror(f);
    fclose(f);
    d->nfiles++;
    if (ioerr) {
        fprintf(err, "%s: %s\n", path, buf ? "read error" : "out of memory");
        free(buf);
        return -1;
    }
    json_t *doc = n > BROKER_MAX_DOC_BYTES ? NULL : jwt_json_load_strict(buf, n, BROKER_MAX_JSON_DEPTH);
    free(buf);
    const char *kind = json_is_object(doc) ? policy_doc_kind(doc) : NULL;
    int rc = -1;
    if (n > BROKER_MAX_DOC_BYTES)
        rc = not_a_document(d, path, "larger than the document limit (1 MiB)", collect_bad, err);
    else if (!json_is_object(doc))
        rc = not_a_document(d, path, "not a JSON object (or duplicate keys, or nested too deeply)", collect_bad, err);
    else if (kind == NULL)
        rc = not_a_document(d, path, "neither an issuer document (\"issuer\") nor an identity document (\"identity\")",
                            collect_bad, err);
    else if (strcmp(kind, "issuer") == 0)
        rc = absolutize(doc, "jwks_file", path, err) == 0 && absolutize(doc, "ca_file", path, err) == 0 &&
                     absolutize(doc, "bearer_token_file", path, err) == 0 && json_array_append(d->issuers, doc) == 0 &&
                     json_array_append_new(d->issuer_files, json_string(path)) == 0
                 ? 0
                 : -1;
    else
        rc = json_array_append(d->identities, doc) == 0 &&
                     json_array_append_new(d->identity_files, json_string(path)) == 0
                 ? 0
                 : -1;
    json_decref(doc);
    return rc;
}

int docset_load_path(struct docset *d, const char *path, bool collect_bad, FILE *err)
{
    struct stat sb;
    if (stat(path, &sb) != 0) {
        fprintf(err, "%s: %s\n", path, strerror(errno));
        return -1;
    }
    if (!S_ISDIR(sb.st_mode))
        return load_file(d, path, collect_bad, err);
    struct dirent **ents;
    int n = scandir(path, &ents, NULL, alphasort), rc = 0;
    if (n < 0) {
        fprintf(err, "%s: %s\n", path, strerror(errno));
        return -1;
    }
    for (int i = 0; i < n; i++) {
        size_t l = strlen(ents[i]->d_name);
        char full[PATH_MAX];
        if (rc == 0 && l > 5 && strcmp(ents[i]->d_name + l - 5, ".json") == 0 && ents[i]->d_name[0] != '.' &&
            (size_t)snprintf(full, sizeof(full), "%s/%s", path, ents[i]->d_name) < sizeof(full) &&
            stat(full, &sb) == 0 && S_ISREG(sb.st_mode))
            rc = load_file(d, full, collect_bad, err);
        free(ents[i]);
    }
    free(ents);
    return rc;
}
