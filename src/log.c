/*
 * log.c - one line per event on stderr; see log.h.
 */
#include "config.h"
#include "log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define LOG_LINE_MAX 2048

static _Atomic int log_level_max = LOG_LEVEL_INFO;
static bool log_to_journal; /* set once by log_init, before threads start */

static const struct {
    const char *word;
    int priority; /* syslog priority for the journal's "<N>" */
} log_levels[] = {
    [LOG_LEVEL_ERROR] = { "error", 3 },
    [LOG_LEVEL_WARNING] = { "warning", 4 },
    [LOG_LEVEL_INFO] = { "info", 6 },
    [LOG_LEVEL_DEBUG] = { "debug", 7 },
};

/*
 * JOURNAL_STREAM is "DEV:INO" of the stream systemd connected; it only counts
 * when stderr is still that stream (not redirected by a wrapper).
 */
static bool
stderr_is_journal(void)
{
    const char *js = getenv("JOURNAL_STREAM");
    unsigned long long dev, ino;
    struct stat st;

    if (!js || sscanf(js, "%llu:%llu", &dev, &ino) != 2) {
        return false;
    }
    if (fstat(STDERR_FILENO, &st) < 0) {
        return false;
    }
    return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

void
log_init(void)
{
    log_to_journal = stderr_is_journal();
}

void
log_set_level(enum log_level level)
{
    atomic_store_explicit(&log_level_max, (int)level, memory_order_relaxed);
}

bool
log_enabled(enum log_level level)
{
    return (int)level <= atomic_load_explicit(&log_level_max, memory_order_relaxed);
}

void
log_msg(enum log_level level, const char *fmt, ...)
{
    char line[LOG_LINE_MAX];
    size_t n;
    int r;
    va_list ap;

    if (log_to_journal) {
        r = snprintf(line, sizeof(line), "<%d>", log_levels[level].priority);
    } else {
        struct timespec ts;
        struct tm tm;

        clock_gettime(CLOCK_REALTIME, &ts);
        localtime_r(&ts.tv_sec, &tm);
        n = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
        r = (int)n + snprintf(line + n, sizeof(line) - n,
                              ".%03ld zpiped %s: ", ts.tv_nsec / 1000000, log_levels[level].word);
    }
    n = (size_t)r;
    va_start(ap, fmt);
    r = vsnprintf(line + n, sizeof(line) - n - 1, fmt, ap);
    va_end(ap);
    if (r < 0) {
        r = 0;
    }
    n += (size_t)r;
    if (n > sizeof(line) - 2) {
        n = sizeof(line) - 2; /* truncated: keep the newline */
    }
    line[n++] = '\n';

    /* One write per line: concurrent lines never interleave.  A failing
     * stderr has nowhere to be reported. */
    if (write(STDERR_FILENO, line, n) < 0) {
        return;
    }
}
