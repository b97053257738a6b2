/*
 * conf.h - zpiped configuration: the typed values of the ini file.
 *
 * The keys, their types and defaults are listed once, in conf.def.  A
 * struct conf is filled by conf_load() (or conf_init_defaults()), is
 * read-only afterwards, and is freed by conf_free().  Threads receive the
 * values they need when they are created; nothing reads the config later.
 */
#ifndef ZPIPE_CONF_H
#define ZPIPE_CONF_H

#include <stddef.h>
#include <stdio.h>
#include <stdint.h>

enum conf_log_level { CONF_LOG_ERROR, CONF_LOG_WARNING, CONF_LOG_INFO, CONF_LOG_DEBUG };
enum conf_inmode { CONF_INMODE_PULL, CONF_INMODE_ROUTER };
enum conf_ack { CONF_ACK_QUEUED, CONF_ACK_STORED };
enum conf_sink {
    CONF_SINK_FILE,
    CONF_SINK_ZMQ,
    CONF_SINK_NULL,
    CONF_SINK_SQLITE,
    CONF_SINK_POSTGRES,
    CONF_SINK_NATS,
};
enum conf_format { CONF_FORMAT_LINES, CONF_FORMAT_BINARY };
enum conf_fsync { CONF_FSYNC_NEVER, CONF_FSYNC_INTERVAL, CONF_FSYNC_ALWAYS };
enum conf_zmqmode { CONF_ZMQMODE_PUSH, CONF_ZMQMODE_DEALER };
enum conf_sqlsync { CONF_SQLSYNC_FULL, CONF_SQLSYNC_NORMAL };

/* A space-separated list value, split at load. */
struct conf_list {
    char **items; /* n strings, each owned by the list */
    size_t n;
};

/* C type of each conf.def type. */
#define CONF_CTYPE_STR      char *
#define CONF_CTYPE_DURATION uint64_t /* milliseconds */
#define CONF_CTYPE_SIZE     uint64_t /* bytes */
#define CONF_CTYPE_COUNT    uint64_t
#define CONF_CTYPE_LIST     struct conf_list
#define CONF_CTYPE_LISTEN   char * /* "" when unset */
#define CONF_CTYPE_PATH     char * /* "" when unset */
#define CONF_CTYPE_IDENT    char * /* a valid SQL name, used unquoted */
#define CONF_CTYPE_LOGLEVEL enum conf_log_level
#define CONF_CTYPE_INMODE   enum conf_inmode
#define CONF_CTYPE_ACK      enum conf_ack
#define CONF_CTYPE_SINK     enum conf_sink
#define CONF_CTYPE_FORMAT   enum conf_format
#define CONF_CTYPE_FSYNC    enum conf_fsync
#define CONF_CTYPE_ZMQMODE  enum conf_zmqmode
#define CONF_CTYPE_SQLSYNC  enum conf_sqlsync

/*
 * The whole configuration.  Field names are section_key, e.g.
 * input_max_message_size; durations are in milliseconds (the _ms unit is in
 * conf.def's type, not in the name, so the ini key and the field match).
 */
struct conf {
#define CONF(section, key, type, def, help) CONF_CTYPE_##type section##_##key;
#include "conf.def"
#undef CONF
};

/* Longest HOST of a LISTEN value, with its NUL (getnameinfo's NI_MAXHOST). */
#define CONF_HOST_MAX 1025

/* Size of the buffer conf_load() writes its error message into. */
#define CONF_ERR_MAX 512

/*
 * conf_init_defaults fills *cfg with every default of conf.def.
 * Returns 0, or -ENOMEM (then *cfg holds nothing to free).
 */
int conf_init_defaults(struct conf *cfg);

/*
 * conf_load reads the ini file at path into *cfg: defaults first, then every
 * key of the file, then cross-key validation (e.g. input.threads no more than
 * the number of input endpoints).  Returns 0 on success.  On failure returns a
 * negative errno (-EINVAL for a bad file, -ENOENT etc. if it cannot be
 * opened), writes one line "FILE:LINE: message" (or "FILE: message" when no
 * line applies) into err (errlen bytes, CONF_ERR_MAX is enough), and leaves
 * *cfg empty: nothing to free.  Only the first error is reported.
 */
int conf_load(struct conf *cfg, const char *path, char *err, size_t errlen);

/* conf_free releases what conf_load()/conf_init_defaults() allocated. Accepts a zeroed struct. */
void conf_free(struct conf *cfg);

/* Names of enum values, for logs and --help: e.g. conf_sink_name(CONF_SINK_FILE) = "file". */
const char *conf_log_level_name(enum conf_log_level v);
const char *conf_inmode_name(enum conf_inmode v);
const char *conf_sink_name(enum conf_sink v);
const char *conf_format_name(enum conf_format v);
const char *conf_fsync_name(enum conf_fsync v);

/* conf_print_keys writes every key with its default and help to f (for zpiped --help). */
void conf_print_keys(FILE *f);

#endif
