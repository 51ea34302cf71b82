/* Bearer token files: see bearer.h. */
#include "bearer.h"
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "bounds.h"
#include "log.h"

/* The entries, NUL-separated in one static buffer: set once before readers start, then only read
 * (no allocation, nothing to free at exit). */
static char allow[BROKER_MAX_BEARER_ALLOW_BYTES];
static size_t nallow;

/* Absolute and normalised: the literal comparison below must mean what it appears to mean. */
static bool path_normal(const char *p, size_t n)
{
    if (n == 0 || p[0] != '/')
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c < 0x20 || c == 0x7f)
            return false;
        if (c != '/')
            continue;
        const char *r = p + i + 1;
        size_t left = n - i - 1;
        if ((left >= 1 && r[0] == '/') || (left == 1 && r[0] == '.') || (left >= 2 && memcmp(r, "./", 2) == 0) ||
            (left == 2 && memcmp(r, "..", 2) == 0) || (left >= 3 && memcmp(r, "../", 3) == 0))
            return false;
    }
    return true;
}

/* A directory entry (ending in '/') allows every path strictly below it; a file entry itself. */
static bool entry_allows(const char *entry, size_t elen, const char *path, size_t plen)
{
    if (entry[elen - 1] == '/')
        return plen > elen && memcmp(path, entry, elen) == 0;
    return plen == elen && memcmp(path, entry, elen) == 0;
}

enum broker_err bearer_allowlist_set(const char *spec, char *err, size_t errlen)
{
    size_t len = spec != NULL ? strlen(spec) : 0, count = 0;
    nallow = 0;
    memset(allow, 0, sizeof(allow));
    if (len == 0)
        return BROKER_OK;
    if (len >= sizeof(allow)) {
        snprintf(err, errlen, "BROKER_BEARER_TOKEN_FILES: longer than %d bytes", BROKER_MAX_BEARER_ALLOW_BYTES - 1);
        return BROKER_ERR_CONFIG;
    }
    for (size_t start = 0; start <= len;) {
        const char *e = spec + start, *comma = memchr(e, ',', len - start);
        size_t n = comma != NULL ? (size_t)(comma - e) : len - start;
        /* "/" would allow every file the broker can read: the very thing this list prevents */
        if (!path_normal(e, n) || n == 1 || ++count > BROKER_MAX_BEARER_ALLOW_ENTRIES) {
            snprintf(err, errlen,
                     "BROKER_BEARER_TOKEN_FILES: expected up to %d comma-separated absolute, normalised paths (no "
                     "\"//\", \"/./\" or \"/../\"; a directory ends in '/', and is not \"/\" itself)",
                     BROKER_MAX_BEARER_ALLOW_ENTRIES);
            nallow = 0;
            memset(allow, 0, sizeof(allow));
            return BROKER_ERR_CONFIG;
        }
        start += n + 1;
    }
    /* commas become the separators: entries are NUL-terminated in place */
    memcpy(allow, spec, len);
    for (size_t i = 0; i < len; i++)
        if (allow[i] == ',')
            allow[i] = '\0';
    nallow = count;
    return BROKER_OK;
}

bool bearer_path_allowed(const char *path)
{
    size_t plen = path != NULL ? strlen(path) : 0;
    if (plen == 0 || path[plen - 1] == '/' || !path_normal(path, plen))
        return false;
    const char *e = allow;
    for (size_t i = 0; i < nallow; i++, e += strlen(e) + 1)
        if (entry_allows(e, strlen(e), path, plen))
            return true;
    return false;
}

/* The file actually opened, symlinks resolved (/proc/self/fd names it even if it was renamed or a
 * symlink was swapped since open), must lie within an entry as resolved now: a symlink inside an
 * allowed directory cannot lead elsewhere. Without /proc nothing is allowed (fail closed). */
static bool opened_allowed(int fd)
{
    char link[64], real[PATH_MAX], re[PATH_MAX + 1];
    snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
    ssize_t rn = readlink(link, real, sizeof(real) - 1);
    if (rn <= 0 || real[0] != '/')
        return false;
    real[rn] = '\0';
    const char *e = allow;
    for (size_t i = 0; i < nallow; i++, e += strlen(e) + 1) {
        size_t elen = strlen(e);
        if (realpath(e, re) == NULL)
            continue;
        size_t rl = strlen(re);
        if (e[elen - 1] == '/' && re[rl - 1] != '/') {
            re[rl++] = '/';
            re[rl] = '\0';
        }
        if (entry_allows(re, rl, real, (size_t)rn))
            return true;
    }
    return false;
}

/* The path for a log line: documents' paths are text already, but a log line is one line. */
static const char *loggable(const char *path)
{
    for (const char *p = path; *p; p++)
        if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e || *p == '"')
            return "(unprintable)";
    return path;
}

enum bearer_result bearer_file_read(const char *path, char *buf, size_t cap, size_t *len)
{
    enum bearer_result r = BEARER_UNREADABLE;
    struct stat st;
    size_t n = 0;
    int fd = -1;
    /* before any file system access: a refused path is neither opened nor probed */
    if (!bearer_path_allowed(path)) {
        r = BEARER_NOT_ALLOWED;
        goto out;
    }
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0)
        goto out;
    if (!opened_allowed(fd)) {
        r = BEARER_NOT_ALLOWED;
        goto out;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
        goto out;
    while (n < cap) {
        ssize_t got = read(fd, buf + n, cap - n);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0)
            goto out;
        if (got == 0)
            break;
        n += (size_t)got;
    }
    if (n == cap) /* filled: too large */
        goto out;
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' ' || buf[n - 1] == '\t'))
        n--;
    if (n == 0)
        goto out;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)buf[i] < 0x21 || (unsigned char)buf[i] > 0x7e)
            goto out;
    *len = n;
    r = BEARER_OK;
out:
    if (fd >= 0)
        close(fd);
    if (r == BEARER_NOT_ALLOWED)
        log_msg(LOG_WARN, "bearer_file_refused",
                "path=\"%s\" reason=\"not allowed by BROKER_BEARER_TOKEN_FILES\"", path != NULL ? loggable(path) : "-");
    return r;
}
