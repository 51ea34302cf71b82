#include "log.h"
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static enum log_level min_level = LOG_INFO;
static const char *const level_names[] = {"debug", "info", "warn", "error"};

void log_set_level(enum log_level lvl)
{
    min_level = lvl;
}

void log_msg(enum log_level lvl, const char *event, const char *fmt, ...)
{
    if (lvl < min_level)
        return;
    char line[1024];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(line, sizeof(line), "ts=%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ level=%s event=%s", tm.tm_year + 1900,
                     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000,
                     level_names[lvl], event);
    if (n < 0)
        return;
    if ((size_t)n < sizeof(line) - 2 && fmt != NULL && fmt[0] != '\0') {
        line[n++] = ' ';
        va_list ap;
        va_start(ap, fmt);
        int m = vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
        va_end(ap);
        if (m > 0) {
            /* one event, one line: a value carrying a newline or other control character (a name,
             * a database message) must not be able to forge or split lines */
            size_t end = (size_t)n + (size_t)m < sizeof(line) - 1 ? (size_t)n + (size_t)m : sizeof(line) - 1;
            for (size_t i = (size_t)n; i < end; i++)
                if ((unsigned char)line[i] < 0x20 || line[i] == 0x7f)
                    line[i] = '?';
            n += m;
        }
    }
    if ((size_t)n >= sizeof(line) - 1)
        n = (int)sizeof(line) - 2;
    line[n++] = '\n';
    /* one write so concurrent threads do not interleave within a line */
    fwrite(line, 1, (size_t)n, stderr);
}

const char *log_abbrev(const char *s, char buf[16])
{
    if (s == NULL)
        return "-";
    size_t n = strlen(s);
    if (n <= 8)
        return s;
    memcpy(buf, s, 8);
    memcpy(buf + 8, "...", 4);
    return buf;
}
