/* `broker exchange` / `broker run`: client side of the RFC 8693 exchange. */
#include "cli_exchange.h"
#include "curlx.h"
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <curl/curl.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include "bounds.h"

#define CLIENT_MAX_RESPONSE 65536
#define CLIENT_TIMEOUT_S 30L
#define CLIENT_CONNECT_TIMEOUT_S 10L
#define CLIENT_MAX_RETRY_AFTER_S 60

struct client_opts {
    const char *server, *identity, *audience, *scope, *token_file, *token_env, *oidc_aud, *format, *cacert;
    long retries;
};

static void client_buf_wipe(struct curlx_body *b)
{
    if (b->p != NULL) {
        OPENSSL_cleanse(b->p, b->n);
        free(b->p);
    }
    b->p = NULL;
    b->n = 0;
}

/* One bounded HTTP request. post may be NULL (GET). Returns the CURLcode; *status the HTTP status. */
static CURLcode client_http(const struct client_opts *o, const char *url, struct curl_slist *hdrs, const char *post,
                            struct curlx_body *out, long *status, long *retry_after)
{
    CURL *c = curl_easy_init();
    *status = 0;
    *retry_after = -1;
    if (c == NULL)
        return CURLE_OUT_OF_MEMORY;
    curl_easy_setopt(c, CURLOPT_URL, url);
    if (hdrs != NULL)
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    if (post != NULL)
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, post);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, curlx_on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, out);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, CLIENT_TIMEOUT_S);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, CLIENT_CONNECT_TIMEOUT_S);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L); /* never resend a bearer elsewhere */
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    if (o->cacert != NULL)
        curl_easy_setopt(c, CURLOPT_CAINFO, o->cacert);
    CURLcode cc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
    curl_off_t ra = -1;
    if (curl_easy_getinfo(c, CURLINFO_RETRY_AFTER, &ra) == CURLE_OK && ra > 0)
        *retry_after = ra > CLIENT_MAX_RETRY_AFTER_S ? CLIENT_MAX_RETRY_AFTER_S : (long)ra;
    curl_easy_cleanup(c);
    return cc;
}

/* Trim surrounding whitespace in place; reject empty, oversized or non-printable tokens. */
static char *client_clean_token(char *t, const char *from)
{
    if (t == NULL)
        return NULL;
    size_t n = strlen(t), s = 0;
    while (s < n && (t[s] == ' ' || t[s] == '\n' || t[s] == '\r' || t[s] == '\t'))
        s++;
    while (n > s && (t[n - 1] == ' ' || t[n - 1] == '\n' || t[n - 1] == '\r' || t[n - 1] == '\t'))
        n--;
    bool ok = n > s && n - s <= BROKER_MAX_TOKEN_LEN;
    for (size_t i = s; ok && i < n; i++)
        if ((unsigned char)t[i] <= 0x20 || (unsigned char)t[i] >= 0x7f)
            ok = false;
    if (!ok) {
        fprintf(stderr, "broker: the subject token from %s is empty, too long or malformed\n", from);
        OPENSSL_cleanse(t, strlen(t));
        free(t);
        return NULL;
    }
    memmove(t, t + s, n - s);
    t[n - s] = '\0';
    return t;
}

static char *client_read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, "broker: cannot read token file %s: %s\n", path, strerror(errno));
        return NULL;
    }
    char *buf = malloc(BROKER_MAX_TOKEN_LEN + 64);
    size_t n = buf ? fread(buf, 1, BROKER_MAX_TOKEN_LEN + 63, f) : 0;
    fclose(f);
    if (buf == NULL)
        return NULL;
    buf[n] = '\0';
    return client_clean_token(buf, path);
}

static char *client_json_token(struct curlx_body *b, const char *field, const char *from)
{
    json_t *r = b->p ? json_loadb(b->p, b->n, JSON_REJECT_DUPLICATES, NULL) : NULL;
    const char *v = json_string_value(json_object_get(r, field));
    char *t = v ? strdup(v) : NULL;
    json_decref(r);
    if (t == NULL)
        fprintf(stderr, "broker: %s: no \"%s\" in the response\n", from, field);
    return client_clean_token(t, from);
}

static char *client_github(const struct client_opts *o, const char *req_url, const char *req_tok)
{
    char *t = NULL, *aud = curl_easy_escape(NULL, o->oidc_aud ? o->oidc_aud : o->server, 0);
    size_t ul = strlen(req_url) + (aud ? strlen(aud) : 0) + 16, al = strlen(req_tok) + 32;
    char *url = malloc(ul), *auth = malloc(al);
    struct curl_slist *h = NULL;
    struct curlx_body b = {.max = CLIENT_MAX_RESPONSE};
    long st, ra;
    if (aud == NULL || url == NULL || auth == NULL)
        goto out;
    snprintf(url, ul, "%s%caudience=%s", req_url, strchr(req_url, '?') ? '&' : '?', aud);
    snprintf(auth, al, "Authorization: Bearer %s", req_tok);
    h = curl_slist_append(h, auth);
    CURLcode cc = client_http(o, url, h, NULL, &b, &st, &ra);
    if (cc != CURLE_OK)
        fprintf(stderr, "broker: GitHub Actions token request: %s\n", curl_easy_strerror(cc));
    else if (st != 200)
        fprintf(stderr, "broker: GitHub Actions token request: HTTP %ld\n", st);
    else
        t = client_json_token(&b, "value", "the GitHub Actions token request");
out:
    if (auth != NULL) {
        OPENSSL_cleanse(auth, al);
        free(auth);
    }
    curl_slist_free_all(h);
    client_buf_wipe(&b);
    free(url);
    curl_free(aud);
    return t;
}

static char *client_gcp(const struct client_opts *o, const char *host)
{
    char *t = NULL, *aud = curl_easy_escape(NULL, o->oidc_aud ? o->oidc_aud : o->server, 0);
    char url[2048];
    struct curl_slist *h = curl_slist_append(NULL, "Metadata-Flavor: Google");
    struct curlx_body b = {.max = CLIENT_MAX_RESPONSE};
    long st, ra;
    if (aud == NULL || h == NULL)
        goto out;
    int n = snprintf(url, sizeof(url),
                     "http://%s/computeMetadata/v1/instance/service-accounts/default/identity?audience=%s&format=full",
                     host, aud);
    if (n < 0 || (size_t)n >= sizeof(url))
        goto out;
    CURLcode cc = client_http(o, url, h, NULL, &b, &st, &ra);
    if (cc != CURLE_OK)
        fprintf(stderr, "broker: GCP metadata server: %s\n", curl_easy_strerror(cc));
    else if (st != 200)
        fprintf(stderr, "broker: GCP metadata server: HTTP %ld\n", st);
    else {
        t = b.p ? strdup(b.p) : NULL; /* the identity endpoint answers with the bare JWT */
        t = client_clean_token(t, "the GCP metadata server");
    }
out:
    curl_slist_free_all(h);
    client_buf_wipe(&b);
    curl_free(aud);
    return t;
}

/* The ambient subject token, in the documented order of sources. */
static char *client_subject_token(const struct client_opts *o)
{
    const char *v, *v2;
    if (o->token_file != NULL)
        return client_read_file(o->token_file);
    if (o->token_env != NULL) {
        v = getenv(o->token_env);
        if (v == NULL) {
            fprintf(stderr, "broker: environment variable %s is not set\n", o->token_env);
            return NULL;
        }
        return client_clean_token(strdup(v), o->token_env);
    }
    v = getenv("ACTIONS_ID_TOKEN_REQUEST_URL");
    v2 = getenv("ACTIONS_ID_TOKEN_REQUEST_TOKEN");
    if (v != NULL && *v != '\0' && v2 != NULL && *v2 != '\0')
        return client_github(o, v, v2);
    v = getenv("AWS_WEB_IDENTITY_TOKEN_FILE");
    if (v != NULL && *v != '\0')
        return client_read_file(v);
    v = getenv("BROKER_K8S_TOKEN_FILE");
    if (v == NULL || *v == '\0')
        v = "/var/run/secrets/tokens/broker";
    if (access(v, R_OK) == 0)
        return client_read_file(v);
    v = getenv("GCE_METADATA_HOST");
    v2 = getenv("BROKER_GCP_METADATA");
    if ((v != NULL && *v != '\0') || (v2 != NULL && strcmp(v2, "1") == 0))
        return client_gcp(o, v != NULL && *v != '\0' ? v : "metadata.google.internal");
    fprintf(stderr, "broker: no OIDC token found (use --token-file or --token-env, or run in GitHub Actions, "
                    "AWS, Kubernetes with a projected token, or GCP with BROKER_GCP_METADATA=1)\n");
    return NULL;
}

static bool client_add_field(char **body, size_t *len, size_t *cap, const char *name, const char *value)
{
    if (value == NULL)
        return true;
    char *e = curl_easy_escape(NULL, value, 0);
    if (e == NULL)
        return false;
    size_t need = *len + strlen(name) + strlen(e) + 3;
    if (need > *cap) {
        size_t nc = need * 2;
        char *nb = malloc(nc);
        if (nb == NULL) {
            curl_free(e);
            return false;
        }
        if (*body != NULL) {
            memcpy(nb, *body, *len + 1);
            OPENSSL_cleanse(*body, *cap);
            free(*body);
        }
        *body = nb;
        *cap = nc;
    }
    int n = snprintf(*body + *len, *cap - *len, "%s%s=%s", *len ? "&" : "", name, e);
    OPENSSL_cleanse(e, strlen(e));
    curl_free(e);
    if (n < 0)
        return false;
    *len += (size_t)n;
    return true;
}

static void client_sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* Exchange once (with retries). Returns the parsed 200 response or NULL (error printed). */
static json_t *client_exchange(const struct client_opts *o)
{
    json_t *res = NULL;
    char *subject = client_subject_token(o), *body = NULL, url[2048];
    size_t blen = 0, bcap = 0, sl = strlen(o->server);
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/x-www-form-urlencoded");
    h = h ? curl_slist_append(h, "Accept: application/json") : NULL;
    while (sl > 0 && o->server[sl - 1] == '/')
        sl--;
    if (subject == NULL || h == NULL)
        goto out;
    if (sl + sizeof("/v1/token") > sizeof(url)) {
        fprintf(stderr, "broker: server URL too long\n");
        goto out;
    }
    snprintf(url, sizeof(url), "%.*s/v1/token", (int)sl, o->server);
    if (!client_add_field(&body, &blen, &bcap, "grant_type", "urn:ietf:params:oauth:grant-type:token-exchange") ||
        !client_add_field(&body, &blen, &bcap, "subject_token_type", "urn:ietf:params:oauth:token-type:jwt") ||
        !client_add_field(&body, &blen, &bcap, "subject_token", subject) ||
        !client_add_field(&body, &blen, &bcap, "identity", o->identity) ||
        !client_add_field(&body, &blen, &bcap, "audience", o->audience) ||
        !client_add_field(&body, &blen, &bcap, "scope", o->scope))
        goto out;
    long delay = 200;
    for (long attempt = 0;; attempt++) {
        struct curlx_body b = {.max = CLIENT_MAX_RESPONSE};
        long st = 0, ra = -1;
        CURLcode cc = client_http(o, url, h, body, &b, &st, &ra);
        json_t *r = b.p ? json_loadb(b.p, b.n, JSON_REJECT_DUPLICATES, NULL) : NULL;
        client_buf_wipe(&b);
        bool transient = false;
        if (cc == CURLE_WRITE_ERROR) {
            fprintf(stderr, "broker: %s: response larger than %d bytes\n", url, CLIENT_MAX_RESPONSE);
        } else if (cc != CURLE_OK) {
            fprintf(stderr, "broker: %s: %s\n", url, curl_easy_strerror(cc));
            transient = true;
        } else if (st == 200 && json_is_string(json_object_get(r, "access_token"))) {
            res = r;
            break;
        } else {
            const char *e = json_string_value(json_object_get(r, "error"));
            const char *d = json_string_value(json_object_get(r, "error_description"));
            fprintf(stderr, "broker: exchange %s (HTTP %ld): %s%s%s\n", st == 200 ? "returned no token" : "refused", st,
                    e ? e : "(no error code)", d ? ": " : "", d ? d : "");
            transient = st == 429 || st >= 500;
        }
        json_decref(r);
        if (!transient || attempt >= o->retries)
            break;
        long wait_ms = (st == 429 && ra > 0) ? ra * 1000 : delay;
        fprintf(stderr, "broker: retrying in %ld ms (%ld of %ld)\n", wait_ms, attempt + 1, o->retries);
        client_sleep_ms(wait_ms);
        if (delay < 30000)
            delay *= 2;
    }
out:
    if (subject != NULL) {
        OPENSSL_cleanse(subject, strlen(subject));
        free(subject);
    }
    if (body != NULL) {
        OPENSSL_cleanse(body, bcap);
        free(body);
    }
    curl_slist_free_all(h);
    return res;
}

static long long client_expires_at(json_t *r, time_t now)
{
    json_t *e = json_object_get(r, "expires_in");
    long long in = json_is_integer(e) ? (long long)json_integer_value(e) : BROKER_DEFAULT_TTL_S;
    return (long long)now + (in > 0 ? in : 0);
}

static int client_parse(int argc, char **argv, struct client_opts *o, int *used, const char *cmd)
{
    memset(o, 0, sizeof(*o));
    o->retries = 4;
    o->format = "token";
    int i;
    for (i = 0; i < argc; i++) {
        const char *a = argv[i];
        const char **dst = NULL;
        if (strcmp(a, "--") == 0)
            break;
        if (strcmp(a, "--server") == 0)
            dst = &o->server;
        else if (strcmp(a, "--identity") == 0)
            dst = &o->identity;
        else if (strcmp(a, "--audience") == 0)
            dst = &o->audience;
        else if (strcmp(a, "--scope") == 0)
            dst = &o->scope;
        else if (strcmp(a, "--token-file") == 0)
            dst = &o->token_file;
        else if (strcmp(a, "--token-env") == 0)
            dst = &o->token_env;
        else if (strcmp(a, "--oidc-audience") == 0)
            dst = &o->oidc_aud;
        else if (strcmp(a, "--format") == 0 && strcmp(cmd, "exchange") == 0)
            dst = &o->format;
        else if (strcmp(a, "--cacert") == 0)
            dst = &o->cacert;
        else if (strcmp(a, "--retries") == 0 && i + 1 < argc) {
            char *end = NULL;
            errno = 0;
            long long v = strtoll(argv[++i], &end, 10);
            if (errno != 0 || end == argv[i] || *end != '\0' || v < 0 || v > 20) {
                fprintf(stderr, "broker %s: --retries wants 0..20\n", cmd);
                return -1;
            }
            o->retries = (long)v;
            continue;
        }
        if (dst == NULL || i + 1 >= argc) {
            fprintf(stderr, "broker %s: unknown flag or missing value: %s\n", cmd, a);
            return -1;
        }
        *dst = argv[++i];
    }
    *used = i;
    if (o->server == NULL) {
        fprintf(stderr, "broker %s: --server URL is required\n", cmd);
        return -1;
    }
    if (strcmp(o->format, "token") != 0 && strcmp(o->format, "json") != 0 && strcmp(o->format, "env") != 0) {
        fprintf(stderr, "broker %s: --format is token, json or env\n", cmd);
        return -1;
    }
    return 0;
}

int cli_exchange(int argc, char **argv)
{
    struct client_opts o;
    int used;
    if (client_parse(argc, argv, &o, &used, "exchange") != 0 || used != argc) {
        fprintf(stderr, "usage: broker exchange --server URL [--identity N] [--audience A] [--scope S]\n"
                        "         [--token-file F | --token-env VAR] [--oidc-audience AUD]\n"
                        "         [--format token|json|env] [--cacert F] [--retries N]\n");
        return 2;
    }
    time_t now = time(NULL);
    json_t *r = client_exchange(&o);
    if (r == NULL)
        return 1;
    const char *at = json_string_value(json_object_get(r, "access_token"));
    if (strcmp(o.format, "json") == 0) {
        char *s = json_dumps(r, JSON_COMPACT);
        if (s != NULL) {
            puts(s);
            OPENSSL_cleanse(s, strlen(s));
            free(s);
        }
    } else if (strcmp(o.format, "env") == 0) {
        printf("BROKER_TOKEN=%s\nBROKER_TOKEN_EXPIRES_AT=%lld\n", at, client_expires_at(r, now));
    } else {
        puts(at);
    }
    json_decref(r);
    return fflush(stdout) == 0 ? 0 : 1;
}

/* ---------------------------------------------------------------- broker run */

static volatile sig_atomic_t run_child = 0;
static volatile sig_atomic_t run_pending = 0; /* a signal that arrived before the fork */

static void run_forward(int sig)
{
    if (run_child > 0)
        kill((pid_t)run_child, sig);
    else
        run_pending = sig;
}

/* Atomically replace path with token (mode 0600): write a sibling, fsync, rename. */
static int run_write_token(const char *dir, const char *path, const char *token)
{
    char tmp[4096];
    int n = snprintf(tmp, sizeof(tmp), "%s/.token.tmp", dir);
    if (n < 0 || (size_t)n >= sizeof(tmp))
        return -1;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return -1;
    size_t len = strlen(token), off = 0;
    while (off < len) {
        ssize_t w = write(fd, token + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            close(fd);
            unlink(tmp);
            return -1;
        }
        off += (size_t)w;
    }
    if (fsync(fd) != 0 || close(fd) != 0 || rename(tmp, path) != 0) {
        unlink(tmp);
        return -1;
    }
    return 0;
}

int cli_run(int argc, char **argv)
{
    struct client_opts o;
    int used, rc = 1;
    char dir[4000] = "", path[4096] = "", exp_s[32];
    if (client_parse(argc, argv, &o, &used, "run") != 0 || used + 1 >= argc) {
        fprintf(stderr, "usage: broker run --server URL [--identity N] [--audience A] [--scope S]\n"
                        "         [--token-file F | --token-env VAR] [--oidc-audience AUD] [--cacert F]\n"
                        "         [--retries N] -- CMD [ARGS...]\n");
        return 2;
    }
    char **cmdv = argv + used + 1;
    time_t issued = time(NULL);
    json_t *r = client_exchange(&o);
    if (r == NULL)
        return 1;
    long long exp_at = client_expires_at(r, issued);
    const char *tmpdir = getenv("TMPDIR");
    int n = snprintf(dir, sizeof(dir), "%s/broker-run.XXXXXX", tmpdir && *tmpdir == '/' ? tmpdir : "/tmp");
    if (n < 0 || (size_t)n >= sizeof(dir) || mkdtemp(dir) == NULL) {
        fprintf(stderr, "broker run: cannot create a private directory: %s\n", strerror(errno));
        dir[0] = '\0';
        goto out;
    }
    snprintf(path, sizeof(path), "%s/token", dir);
    if (run_write_token(dir, path, json_string_value(json_object_get(r, "access_token"))) != 0) {
        fprintf(stderr, "broker run: cannot write %s: %s\n", path, strerror(errno));
        goto out;
    }
    snprintf(exp_s, sizeof(exp_s), "%lld", exp_at);
    struct sigaction sa, old_term, old_int;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = run_forward;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, &old_term);
    sigaction(SIGINT, &sa, &old_int);
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "broker run: fork: %s\n", strerror(errno));
        goto restore;
    }
    if (pid == 0) {
        /* default dispositions, even when ours were ignored (a background job's SIGINT): the
         * signals we forward must reach the command */
        sa.sa_handler = SIG_DFL;
        sigaction(SIGTERM, &sa, NULL);
        sigaction(SIGINT, &sa, NULL);
        if (setenv("BROKER_TOKEN", json_string_value(json_object_get(r, "access_token")), 1) != 0 ||
            setenv("BROKER_TOKEN_EXPIRES_AT", exp_s, 1) != 0 || setenv("BROKER_TOKEN_FILE", path, 1) != 0)
            _exit(127);
        execvp(cmdv[0], cmdv);
        fprintf(stderr, "broker run: %s: %s\n", cmdv[0], strerror(errno));
        _exit(errno == ENOENT ? 127 : 126);
    }
    run_child = pid;
    if (run_pending != 0)
        kill(pid, run_pending);
    /* refresh at ~80% of the lifetime; on failure try again sooner, until the token expires */
    time_t refresh_at = issued + (time_t)((exp_at - issued) * 8 / 10);
    int status = 0;
    for (;;) {
        pid_t w = waitpid(pid, &status, WNOHANG);
        if (w == pid)
            break;
        if (w < 0 && errno != EINTR) {
            fprintf(stderr, "broker run: waitpid: %s\n", strerror(errno));
            status = 1 << 8;
            break;
        }
        time_t now = time(NULL);
        if (now >= refresh_at) {
            json_t *nr = client_exchange(&o);
            if (nr != NULL) {
                long long nexp = client_expires_at(nr, now);
                if (run_write_token(dir, path, json_string_value(json_object_get(nr, "access_token"))) == 0)
                    refresh_at = now + (time_t)((nexp - now) * 8 / 10);
                else
                    fprintf(stderr, "broker run: cannot rewrite %s: %s\n", path, strerror(errno));
                json_decref(nr);
            }
            if (refresh_at <= now) /* failed: retry in a few seconds */
                refresh_at = now + 2;
        }
        client_sleep_ms(100);
    }
    run_child = 0;
    if (WIFEXITED(status))
        rc = WEXITSTATUS(status);
    else if (WIFSIGNALED(status))
        rc = 128 + WTERMSIG(status);
restore:
    sigaction(SIGTERM, &old_term, NULL);
    sigaction(SIGINT, &old_int, NULL);
out:
    if (path[0] != '\0')
        unlink(path);
    if (dir[0] != '\0') {
        char tmp[4200];
        snprintf(tmp, sizeof(tmp), "%s/.token.tmp", dir);
        unlink(tmp);
        rmdir(dir);
    }
    json_decref(r);
    return rc;
}
