/*
 * log.h - one line per event on stderr.
 *
 * Under systemd (JOURNAL_STREAM set and matching stderr) each line starts
 * with the syslog priority "<N>" and carries no timestamp; otherwise it
 * starts with a timestamp and a level word.  Each line is written with one
 * write(2), so lines from different threads never interleave.  Any thread
 * may log.  The level test comes before formatting, so a disabled debug line
 * costs one atomic load.
 */
#ifndef ZPIPE_LOG_H
#define ZPIPE_LOG_H

#include <stdbool.h>

enum log_level { LOG_LEVEL_ERROR, LOG_LEVEL_WARNING, LOG_LEVEL_INFO, LOG_LEVEL_DEBUG };

/* log_init picks the line format from the environment. Call once, before threads start. */
void log_init(void);

/* log_set_level sets the most verbose level that is written. Default: info. */
void log_set_level(enum log_level level);

/* log_enabled tells whether a line at level would be written. */
bool log_enabled(enum log_level level);

/* log_msg writes one line at level. Prefer the macros below. */
void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_at(level, ...)                                                                         \
    do {                                                                                           \
        if (log_enabled(level))                                                                    \
            log_msg(level, __VA_ARGS__);                                                           \
    } while (0)
#define log_error(...)   log_at(LOG_LEVEL_ERROR, __VA_ARGS__)
#define log_warning(...) log_at(LOG_LEVEL_WARNING, __VA_ARGS__)
#define log_info(...)    log_at(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_debug(...)   log_at(LOG_LEVEL_DEBUG, __VA_ARGS__)

#endif
