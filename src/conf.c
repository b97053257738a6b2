/*
 * conf.c - the zpiped ini file: inih handler, typed values, validation.
 *
 * One file over 700 lines: the key table, the line reader and the rules
 * between keys all work on one parse context (struct conf_parse) and the
 * table generated from conf.def, which a split would have to export.
 *
 * conf.def is expanded twice: into struct conf (conf.h) and into the key
 * table below (name, type, default, offset of the field), which drives the
 * defaults, the dispatch of the inih handler and conf_print_keys().  Defaults are strings
 * parsed by the same code as the file, so they cannot drift from the syntax.
 *
 * Line numbers: the packaged libinih is built without INI_HANDLER_LINENO and
 * with INI_MAX_LINE 200, both compile-time options of the library that we
 * must not redefine.  So we feed ini_parse_stream() through our own reader,
 * which inih calls once per line: it counts lines, refuses lines inih would
 * cut, and looks at each line the way inih will (section header, key line,
 * continuation) so that errors inih cannot describe get a precise message.
 * The first error stops the reader; its text is kept in struct conf_parse.
 *
 * Decisions an operator sees:
 *   - A key set twice in one file is an error (no "last one wins"): with one
 *     file and no drop-ins a repeat is a mistake.  A section may reopen.
 *   - inih reads an indented line after a key as a continuation of that key's
 *     value; we refuse such lines rather than silently glue them on.
 *   - Keys, section names and enum values match exactly (lower case).
 */
#include "config.h"

#include "conf.h"

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include <ini.h>
#ifdef HAVE_LIBPQ
#include <libpq-fe.h>
#endif

#include "curve.h"
#include "msg.h"
#include "util.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* Largest output.batch: a batch is one sink call and one array of pointers. */
#define CONF_BATCH_MAX 65536

/* Largest input.max_message_size with the sqlite and postgres sinks: half
 * of the 1 GB either keeps in one value, with room for a multipart
 * message's record format (4 bytes a frame). */
#define CONF_DB_MESSAGE_MAX (512ull << 20)

/* Most threads of a pool: every worker needs one of the watchdog's
 * HEARTBEAT_MAX check-in slots (two pools and the replay thread share them),
 * and far more threads than cores only add contention. */
#define CONF_THREADS_MAX 64

/* The queue's limits: past them a count no longer fits the 63 bits that
 * zpipe stats' JSON numbers carry, and the reply ring of ack = stored
 * (about 96 bytes a message of capacity) could not be allocated anyway. */
#define CONF_QUEUE_CAPACITY_MAX 4294967295ull
#define CONF_QUEUE_BYTES_MAX    ((uint64_t)INT64_MAX)

/* Most nats.max_pending: each is a message held in memory and a slot of the
 * sink's window, and libnats keeps its own map of them. */
#define CONF_NATS_PENDING_MAX 1000000

enum conf_type {
    CONF_TYPE_STR,
    CONF_TYPE_DURATION,
    CONF_TYPE_SIZE,
    CONF_TYPE_COUNT,
    CONF_TYPE_LIST,
    CONF_TYPE_LISTEN,
    CONF_TYPE_IDENT,
    CONF_TYPE_PATH,
    CONF_TYPE_LOGLEVEL,
    CONF_TYPE_INMODE,
    CONF_TYPE_ACK,
    CONF_TYPE_SINK,
    CONF_TYPE_FORMAT,
    CONF_TYPE_FSYNC,
    CONF_TYPE_ZMQMODE,
    CONF_TYPE_SQLSYNC,
};

struct conf_key {
    const char *section;
    const char *name;
    enum conf_type type;
    const char *def; /* default, in file syntax */
    const char *help;
    size_t offset; /* of the field in struct conf */
};

static const struct conf_key conf_keys[] = {
#define CONF(section, key, type, def, help)                                                        \
    { #section, #key, CONF_TYPE_##type, def, help, offsetof(struct conf, section##_##key) },
#include "conf.def"
#undef CONF
};

#define CONF_NKEYS ARRAY_SIZE(conf_keys)

/* Index of each key in conf_keys, e.g. KEY_input_threads. */
enum conf_key_index {
#define CONF(section, key, type, def, help) KEY_##section##_##key,
#include "conf.def"
#undef CONF
};

/* Value names of each enum type, indexed by the enum's value. */
static const char *const log_level_names[] = {
    [CONF_LOG_ERROR] = "error",
    [CONF_LOG_WARNING] = "warning",
    [CONF_LOG_INFO] = "info",
    [CONF_LOG_DEBUG] = "debug",
};
static const char *const inmode_names[] = {
    [CONF_INMODE_PULL] = "pull",
    [CONF_INMODE_ROUTER] = "router",
};
static const char *const ack_names[] = {
    [CONF_ACK_QUEUED] = "queued",
    [CONF_ACK_STORED] = "stored",
};
static const char *const sink_names[] = {
    [CONF_SINK_FILE] = "file",
    [CONF_SINK_ZMQ] = "zmq",
    [CONF_SINK_NULL] = "null",
    [CONF_SINK_SQLITE] = "sqlite",
    [CONF_SINK_POSTGRES] = "postgres",
    [CONF_SINK_NATS] = "nats",
};
static const char *const format_names[] = {
    [CONF_FORMAT_LINES] = "lines",
    [CONF_FORMAT_BINARY] = "binary",
};
static const char *const fsync_names[] = {
    [CONF_FSYNC_NEVER] = "never",
    [CONF_FSYNC_INTERVAL] = "interval",
    [CONF_FSYNC_ALWAYS] = "always",
};
static const char *const zmqmode_names[] = {
    [CONF_ZMQMODE_PUSH] = "push",
    [CONF_ZMQMODE_DEALER] = "dealer",
};
static const char *const sqlsync_names[] = {
    [CONF_SQLSYNC_FULL] = "full",
    [CONF_SQLSYNC_NORMAL] = "normal",
};

struct conf_enum {
    const char *const *names;
    size_t n;
};

#define CONF_ENUM(names)                                                                           \
    {                                                                                              \
        names, ARRAY_SIZE(names)                                                                   \
    }
static const struct conf_enum conf_enums[] = {
    [CONF_TYPE_LOGLEVEL] = CONF_ENUM(log_level_names),
    [CONF_TYPE_INMODE] = CONF_ENUM(inmode_names),
    [CONF_TYPE_ACK] = CONF_ENUM(ack_names),
    [CONF_TYPE_SINK] = CONF_ENUM(sink_names),
    [CONF_TYPE_FORMAT] = CONF_ENUM(format_names),
    [CONF_TYPE_FSYNC] = CONF_ENUM(fsync_names),
    [CONF_TYPE_ZMQMODE] = CONF_ENUM(zmqmode_names),
    [CONF_TYPE_SQLSYNC] = CONF_ENUM(sqlsync_names),
};
#undef CONF_ENUM

/* A parsed value before it is stored in its field. */
union conf_value {
    char *str;
    uint64_t u;
    struct conf_list list;
    int e;
};

/* State of one conf_load(); the reader's and the handler's user pointer. */
struct conf_parse {
    struct conf *cfg;
    const char *path;
    FILE *f;
    int lineno;               /* number of the line inih is working on */
    bool has_prev_key;        /* an indented line now is a continuation for inih */
    int key_line[CONF_NKEYS]; /* line that set each key; 0 = still the default */
    int rc;                   /* first error as a negative errno; 0 = none yet */
    int err_line;             /* its line; 0 = none */
    char msg[CONF_ERR_MAX];   /* its text: "FILE:LINE: message" or "FILE: message" */
};

static const char *
enum_name(enum conf_type type, int v)
{
    const struct conf_enum *en = &conf_enums[type];

    if (v < 0 || (size_t)v >= en->n || en->names[v] == NULL) {
        return "?";
    }
    return en->names[v];
}

const char *
conf_log_level_name(enum conf_log_level v)
{
    return enum_name(CONF_TYPE_LOGLEVEL, (int)v);
}

const char *
conf_inmode_name(enum conf_inmode v)
{
    return enum_name(CONF_TYPE_INMODE, (int)v);
}

const char *
conf_sink_name(enum conf_sink v)
{
    return enum_name(CONF_TYPE_SINK, (int)v);
}

const char *
conf_format_name(enum conf_format v)
{
    return enum_name(CONF_TYPE_FORMAT, (int)v);
}

const char *
conf_fsync_name(enum conf_fsync v)
{
    return enum_name(CONF_TYPE_FSYNC, (int)v);
}

static void *
field_of(struct conf *cfg, const struct conf_key *k)
{
    return (char *)cfg + k->offset;
}

static void
list_free(struct conf_list *list)
{
    size_t i;

    for (i = 0; i < list->n; i++) {
        free(list->items[i]);
    }
    free(list->items);
    list->items = NULL;
    list->n = 0;
}

static bool
is_blank(char c)
{
    return c == ' ' || c == '\t';
}

/* parse_list splits text on spaces and tabs.  Returns 0, -EINVAL (no item) or -ENOMEM. */
static int
parse_list(const char *text, struct conf_list *out)
{
    struct conf_list list = { NULL, 0 };
    const char *s;
    size_t n = 0;

    for (s = text; *s != '\0';) {
        while (is_blank(*s)) {
            s++;
        }
        if (*s == '\0') {
            break;
        }
        n++;
        while (*s != '\0' && !is_blank(*s)) {
            s++;
        }
    }
    if (n == 0) {
        return -EINVAL;
    }
    list.items = calloc(n, sizeof(*list.items));
    if (list.items == NULL) {
        return -ENOMEM;
    }
    for (s = text; list.n < n;) {
        size_t len;

        while (is_blank(*s)) {
            s++;
        }
        for (len = 0; s[len] != '\0' && !is_blank(s[len]); len++) {
            ;
        }
        list.items[list.n] = strndup(s, len);
        if (list.items[list.n] == NULL) {
            list_free(&list);
            return -ENOMEM;
        }
        list.n++;
        s += len;
    }
    *out = list;
    return 0;
}

/*
 * Longest IDENT: PostgreSQL's NAMEDATALEN - 1, the longest name it keeps
 * whole (it would cut a longer one silently).
 */
#define CONF_IDENT_MAX 63

/* is_sql_name: letters, digits and '_', not first a digit, 1..CONF_IDENT_MAX bytes. */
static bool
is_sql_name(const char *s)
{
    size_t n = strlen(s);

    if (n == 0 || n > CONF_IDENT_MAX || isdigit((unsigned char)s[0])) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if (!(isascii((unsigned char)s[i]) && (isalnum((unsigned char)s[i]) || s[i] == '_'))) {
            return false;
        }
    }
    return true;
}

/*
 * check_endpoints refuses what zmq_bind()/zmq_connect() would only refuse
 * later, after other sockets are bound: a transport other than tcp or ipc,
 * an empty address, and the same endpoint twice.
 */
static const char *
check_endpoints(const struct conf_list *list)
{
    size_t i, j;

    for (i = 0; i < list->n; i++) {
        const char *ep = list->items[i];

        if (!((strncmp(ep, "tcp://", 6) == 0 || strncmp(ep, "ipc://", 6) == 0) && ep[6] != '\0')) {
            return "expected tcp://ADDRESS or ipc://PATH endpoints";
        }
        for (j = 0; j < i; j++) {
            if (strcmp(ep, list->items[j]) == 0) {
                return "an endpoint is listed twice";
            }
        }
    }
    return NULL;
}

/*
 * parse_value parses text as the type of key k into *v.  Returns 0, -ENOMEM,
 * or -EINVAL/-ERANGE with the reason in why.  On failure *v holds nothing.
 */
static int
parse_value(const struct conf_key *k, const char *text, union conf_value *v, char *why,
            size_t whylen)
{
    const char *reason;
    size_t i;
    int r;

    switch (k->type) {
    case CONF_TYPE_STR:
        if (text[0] == '\0') {
            snprintf(why, whylen, "expected a non-empty string");
            return -EINVAL;
        }
        v->str = strdup(text);
        return v->str != NULL ? 0 : -ENOMEM;
    case CONF_TYPE_IDENT:
        /* Put into SQL statements as it is: only a plain name can be. */
        if (!is_sql_name(text)) {
            snprintf(why, whylen, "expected a name of letters, digits and '_' (not starting "
                                  "with a digit), at most %d bytes", CONF_IDENT_MAX);
            return -EINVAL;
        }
        v->str = strdup(text);
        return v->str != NULL ? 0 : -ENOMEM;
    case CONF_TYPE_LISTEN: {
        char host[CONF_HOST_MAX];
        uint16_t port;

        /* Syntax only: names are resolved when the daemon binds. */
        if (text[0] != '\0' && util_parse_hostport(text, host, sizeof(host), &port) < 0) {
            snprintf(why, whylen,
                     "expected HOST:PORT or [IPV6]:PORT with a port from 1 to "
                     "65535, or nothing (off)");
            return -EINVAL;
        }
        v->str = strdup(text);
        return v->str != NULL ? 0 : -ENOMEM;
    }
    case CONF_TYPE_PATH:
        v->str = strdup(text);
        return v->str != NULL ? 0 : -ENOMEM;
    case CONF_TYPE_DURATION:
        r = util_parse_duration_ms(text, &v->u);
        /* Keep room for microseconds: callers convert for sd_notify and timers. */
        if (r == 0 && v->u > UINT64_MAX / 1000) {
            r = -ERANGE;
        }
        if (r < 0) {
            snprintf(why, whylen, "%s",
                     r == -ERANGE
                         ? "duration too large"
                         : "expected a duration like 500ms, 2s, 1m (a bare number is seconds)");
        }
        return r;
    case CONF_TYPE_SIZE:
        r = util_parse_size(text, &v->u);
        if (r < 0) {
            snprintf(why, whylen, "%s",
                     r == -ERANGE
                         ? "size too large"
                         : "expected a size like 4096, 64K, 1M, 2G (a bare number is bytes)");
        }
        return r;
    case CONF_TYPE_COUNT:
        r = util_parse_uint(text, &v->u);
        if (r == 0 && v->u == 0) {
            /* A high-water mark of 0 is no limit at all to libzmq: say so. */
            snprintf(why, whylen, "expected a whole number of at least 1%s",
                     strstr(k->name, "hwm") != NULL ? " (0 would mean no limit to libzmq)" : "");
            return -EINVAL;
        }
        if (r < 0) {
            snprintf(why, whylen, "%s",
                     r == -ERANGE ? "number too large" : "expected a whole number of at least 1");
        }
        return r;
    case CONF_TYPE_LIST:
        r = parse_list(text, &v->list);
        if (r == -EINVAL) {
            snprintf(why, whylen, "expected a space-separated list of at least one item");
            return r;
        }
        if (r < 0) {
            return r;
        }
        if (strcmp(k->name, "endpoints") == 0) {
            reason = check_endpoints(&v->list);
            if (reason != NULL) {
                list_free(&v->list);
                snprintf(why, whylen, "%s", reason);
                return -EINVAL;
            }
        }
        return 0;
    case CONF_TYPE_LOGLEVEL:
    case CONF_TYPE_INMODE:
    case CONF_TYPE_ACK:
    case CONF_TYPE_SINK:
    case CONF_TYPE_FORMAT:
    case CONF_TYPE_FSYNC:
    case CONF_TYPE_ZMQMODE:
    case CONF_TYPE_SQLSYNC:
        for (i = 0; i < conf_enums[k->type].n; i++) {
            if (strcmp(text, conf_enums[k->type].names[i]) == 0) {
                v->e = (int)i;
                return 0;
            }
        }
        r = snprintf(why, whylen, "expected one of: ");
        for (i = 0; i < conf_enums[k->type].n && r >= 0 && (size_t)r < whylen; i++) {
            r += snprintf(why + r, whylen - (size_t)r, "%s%s", i > 0 ? " | " : "",
                          conf_enums[k->type].names[i]);
        }
        return -EINVAL;
    }
    return -EINVAL;
}

/* value_free releases the field of key k and zeroes it. */
static void
value_free(struct conf *cfg, const struct conf_key *k)
{
    void *field = field_of(cfg, k);

    if (k->type == CONF_TYPE_STR || k->type == CONF_TYPE_LISTEN || k->type == CONF_TYPE_PATH ||
        k->type == CONF_TYPE_IDENT) {
        free(*(char **)field);
        *(char **)field = NULL;
    } else if (k->type == CONF_TYPE_LIST) {
        list_free(field);
    }
}

/* value_store replaces the field of key k by *v, which it takes. */
static void
value_store(struct conf *cfg, const struct conf_key *k, union conf_value *v)
{
    void *field = field_of(cfg, k);

    value_free(cfg, k);
    switch (k->type) {
    case CONF_TYPE_STR:
    case CONF_TYPE_LISTEN:
    case CONF_TYPE_IDENT:
    case CONF_TYPE_PATH:
        *(char **)field = v->str;
        break;
    case CONF_TYPE_DURATION:
    case CONF_TYPE_SIZE:
    case CONF_TYPE_COUNT:
        *(uint64_t *)field = v->u;
        break;
    case CONF_TYPE_LIST:
        *(struct conf_list *)field = v->list;
        break;
    case CONF_TYPE_LOGLEVEL:
        *(enum conf_log_level *)field = (enum conf_log_level)v->e;
        break;
    case CONF_TYPE_INMODE:
        *(enum conf_inmode *)field = (enum conf_inmode)v->e;
        break;
    case CONF_TYPE_ACK:
        *(enum conf_ack *)field = (enum conf_ack)v->e;
        break;
    case CONF_TYPE_SINK:
        *(enum conf_sink *)field = (enum conf_sink)v->e;
        break;
    case CONF_TYPE_FORMAT:
        *(enum conf_format *)field = (enum conf_format)v->e;
        break;
    case CONF_TYPE_FSYNC:
        *(enum conf_fsync *)field = (enum conf_fsync)v->e;
        break;
    case CONF_TYPE_ZMQMODE:
        *(enum conf_zmqmode *)field = (enum conf_zmqmode)v->e;
        break;
    case CONF_TYPE_SQLSYNC:
        *(enum conf_sqlsync *)field = (enum conf_sqlsync)v->e;
        break;
    }
}

/* conf_set parses text for key k and stores it.  Returns as parse_value(). */
static int
conf_set(struct conf *cfg, const struct conf_key *k, const char *text, char *why, size_t whylen)
{
    union conf_value v;
    int r;

    memset(&v, 0, sizeof(v));
    r = parse_value(k, text, &v, why, whylen);
    if (r == 0) {
        value_store(cfg, k, &v);
    }
    return r;
}

void
conf_free(struct conf *cfg)
{
    size_t i;

    if (cfg == NULL) {
        return;
    }
    for (i = 0; i < CONF_NKEYS; i++) {
        value_free(cfg, &conf_keys[i]);
    }
    memset(cfg, 0, sizeof(*cfg));
}

int
conf_init_defaults(struct conf *cfg)
{
    char why[CONF_ERR_MAX];
    size_t i;
    int r;

    memset(cfg, 0, sizeof(*cfg));
    for (i = 0; i < CONF_NKEYS; i++) {
        r = conf_set(cfg, &conf_keys[i], conf_keys[i].def, why, sizeof(why));
        /* A default that does not parse is a bug in conf.def, not input. */
        assert(r != -EINVAL && r != -ERANGE);
        if (r < 0) {
            conf_free(cfg);
            return r;
        }
    }
    return 0;
}

void
conf_print_keys(FILE *f)
{
    const char *section = NULL;
    size_t i;

    for (i = 0; i < CONF_NKEYS; i++) {
        const struct conf_key *k = &conf_keys[i];

        if (section == NULL || strcmp(section, k->section) != 0) {
            fprintf(f, "%s[%s]\n", section != NULL ? "\n" : "", k->section);
            section = k->section;
        }
        fprintf(f, "%-16s = %-28s ; %s\n", k->name, k->def, k->help);
    }
}

static const struct conf_key *
find_key(const char *section, const char *name)
{
    size_t i;

    for (i = 0; i < CONF_NKEYS; i++) {
        if (strcmp(conf_keys[i].section, section) == 0 && strcmp(conf_keys[i].name, name) == 0) {
            return &conf_keys[i];
        }
    }
    return NULL;
}

static bool
is_known_section(const char *section, size_t len)
{
    size_t i;

    for (i = 0; i < CONF_NKEYS; i++) {
        if (strlen(conf_keys[i].section) == len &&
            memcmp(conf_keys[i].section, section, len) == 0) {
            return true;
        }
    }
    return false;
}

/* parse_fail records the first error; later ones are dropped. line 0 = none. */
__attribute__((format(printf, 4, 5))) static void
parse_fail(struct conf_parse *p, int rc, int line, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (p->rc != 0) {
        return;
    }
    p->rc = rc;
    p->err_line = line;
    if (line > 0) {
        n = snprintf(p->msg, sizeof(p->msg), "%s:%d: ", p->path, line);
    } else {
        n = snprintf(p->msg, sizeof(p->msg), "%s: ", p->path);
    }
    if (n < 0 || (size_t)n >= sizeof(p->msg)) {
        return;
    }
    va_start(ap, fmt);
    vsnprintf(p->msg + n, sizeof(p->msg) - (size_t)n, fmt, ap);
    va_end(ap);
}

/*
 * find_chars_or_comment is inih's own scan: the first of chars, or the start
 * of an inline comment (a ';' after whitespace), or the end of s.
 */
static const char *
find_chars_or_comment(const char *s, const char *chars)
{
    bool was_space = false;

    while (*s != '\0' && strchr(chars, *s) == NULL && !(was_space && *s == ';')) {
        was_space = isspace((unsigned char)*s);
        s++;
    }
    return s;
}

/*
 * check_line looks at a line as inih is about to: a section header gets its
 * name checked here (inih does not call the handler for it), an indented
 * line after a key would be glued onto that key's value, and a line that is
 * neither a comment, a header nor "key = value" is a syntax error.
 */
static void
check_line(struct conf_parse *p, const char *line)
{
    const char *s = line, *end;

    if (p->lineno == 1 && strncmp(s, "\xEF\xBB\xBF", 3) == 0) {
        s += 3;
    }
    while (isspace((unsigned char)*s)) {
        s++;
    }
    if (*s == '\0' || *s == ';' || *s == '#') {
        return;
    }
    if (s > line && p->has_prev_key) {
        parse_fail(p, -EINVAL, p->lineno,
                   "indented line would continue the previous "
                   "value; continuation lines are not supported");
        return;
    }
    if (*s == '[') {
        end = find_chars_or_comment(s + 1, "]");
        if (*end != ']') {
            parse_fail(p, -EINVAL, p->lineno, "syntax error: missing ']'");
            return;
        }
        if (!is_known_section(s + 1, (size_t)(end - s - 1))) {
            parse_fail(p, -EINVAL, p->lineno, "unknown section [%.*s]", (int)(end - s - 1), s + 1);
            return;
        }
        /* inih ignores the rest of the line: a key put there would be lost. */
        for (end++; isspace((unsigned char)*end); end++) {
        }
        if (*end != '\0' && *end != ';' && *end != '#') {
            size_t n = strcspn(end, "\r\n"); /* a file with CR line ends is one line */

            parse_fail(p, -EINVAL, p->lineno, "text after the section header: '%.*s'",
                       (int)(n < 40 ? n : 40), end);
            return;
        }
        p->has_prev_key = false;
        return;
    }
    end = find_chars_or_comment(s, "=:");
    if (*end == '\0' || *end == ';') {
        parse_fail(p, -EINVAL, p->lineno, "syntax error: expected 'key = value'");
    }
    p->has_prev_key = true;
}

/*
 * conf_reader is the fgets() that inih calls once per line.  It reads one
 * whole line or fails: a line of more than num - 1 bytes (counting its
 * newline) would be split by inih into pieces read as separate lines.  After
 * the first error it returns NULL, which inih takes for the end of the file.
 */
static char *
conf_reader(char *str, int num, void *stream)
{
    struct conf_parse *p = stream;
    char buf[128];
    size_t max, n = 0;
    int c;

    if (p->rc != 0 || num < 2) {
        return NULL;
    }
    max = (size_t)num - 1;
    while ((c = getc(p->f)) != EOF) {
        if (n == max) {
            parse_fail(p, -EINVAL, p->lineno + 1, "line too long (max %zu bytes)", max);
            return NULL;
        }
        if (c == '\0') {
            parse_fail(p, -EINVAL, p->lineno + 1, "NUL byte in line");
            return NULL;
        }
        str[n++] = (char)c;
        if (c == '\n') {
            break;
        }
    }
    if (ferror(p->f)) {
        int err = errno != 0 ? errno : EIO;

        parse_fail(p, -err, 0, "read error: %s", util_strerror(err, buf, sizeof(buf)));
        return NULL;
    }
    if (n == 0) {
        return NULL;
    }
    str[n] = '\0';
    p->lineno++;
    check_line(p, str);
    return p->rc == 0 ? str : NULL;
}

static int
conf_handler(void *user, const char *section, const char *name, const char *value)
{
    struct conf_parse *p = user;
    const struct conf_key *k;
    char why[CONF_ERR_MAX];
    size_t i;
    int r;

    if (p->rc != 0) {
        return 0;
    }
    /* A new-section call (INI_CALL_HANDLER_ON_NEW_SECTION): check_line did it. */
    if (name == NULL) {
        return 1;
    }
    if (section[0] == '\0') {
        parse_fail(p, -EINVAL, p->lineno, "key '%s' is outside any section", name);
        return 0;
    }
    k = find_key(section, name);
    if (k == NULL) {
        if (!is_known_section(section, strlen(section))) {
            parse_fail(p, -EINVAL, p->lineno, "unknown section [%s]", section);
        } else {
            parse_fail(p, -EINVAL, p->lineno, "unknown key '%s' in section [%s]", name, section);
        }
        return 0;
    }
    i = (size_t)(k - conf_keys);
    if (p->key_line[i] != 0) {
        parse_fail(p, -EINVAL, p->lineno,
                   "duplicate key '%s' in section [%s] "
                   "(first set on line %d)",
                   name, section, p->key_line[i]);
        return 0;
    }
    p->key_line[i] = p->lineno;
    /* value is NULL only for a bare "key" line under INI_ALLOW_NO_VALUE. */
    r = conf_set(p->cfg, k, value != NULL ? value : "", why, sizeof(why));
    if (r == -ENOMEM) {
        parse_fail(p, r, p->lineno, "out of memory");
    } else if (r < 0) {
        parse_fail(p, -EINVAL, p->lineno, "[%s] %s: bad value '%s': %s", section, name,
                   value != NULL ? value : "", why);
    }
    return r == 0;
}

/* fmt_size writes bytes in the largest exact unit: 1048576 -> "1M". */
static const char *
fmt_size(uint64_t bytes, char *buf, size_t len)
{
    static const char units[] = "GMK";
    int i;

    for (i = 0; i < 3 && bytes != 0; i++) {
        uint64_t unit = 1ULL << (10 * (3 - i));

        if (bytes % unit == 0) {
            snprintf(buf, len, "%" PRIu64 "%c", bytes / unit, units[i]);
            return buf;
        }
    }
    snprintf(buf, len, "%" PRIu64, bytes);
    return buf;
}

/* fmt_duration writes ms in the largest exact unit: 60000 -> "1m". */
static const char *
fmt_duration(uint64_t ms, char *buf, size_t len)
{
    if (ms != 0 && ms % 60000 == 0) {
        snprintf(buf, len, "%" PRIu64 "m", ms / 60000);
    } else if (ms != 0 && ms % 1000 == 0) {
        snprintf(buf, len, "%" PRIu64 "s", ms / 1000);
    } else {
        snprintf(buf, len, "%" PRIu64 "ms", ms);
    }
    return buf;
}

/*
 * rule_line is where a rule between keys a and b is reported: the later of
 * the lines that set them, or 0 (no line) when both are defaults.
 */
static int
rule_line(const struct conf_parse *p, enum conf_key_index a, enum conf_key_index b)
{
    return p->key_line[a] > p->key_line[b] ? p->key_line[a] : p->key_line[b];
}

/*
 * validate_ack_stored refuses the setups where an OK could not mean stored:
 * PUSH clients get no reply, a zmq PUSH sink learns nothing of delivery, and
 * a file never synced is never known to be stored.
 */
static void
validate_ack_stored(struct conf_parse *p)
{
    const struct conf *c = p->cfg;

    if (c->input_mode == CONF_INMODE_PULL) {
        parse_fail(p, -EINVAL, rule_line(p, KEY_input_ack, KEY_input_mode),
                   "input.ack = stored needs input.mode = router (PUSH clients get no reply)");
    } else if (c->output_sink == CONF_SINK_ZMQ && c->zmq_mode == CONF_ZMQMODE_PUSH) {
        parse_fail(p, -EINVAL, rule_line(p, KEY_input_ack, KEY_zmq_mode),
                   "input.ack = stored needs zmq.mode = dealer (a PUSH sink is never told "
                   "what was delivered)");
    } else if (c->output_sink == CONF_SINK_FILE && c->file_fsync == CONF_FSYNC_NEVER) {
        parse_fail(p, -EINVAL, rule_line(p, KEY_input_ack, KEY_file_fsync),
                   "input.ack = stored needs file.fsync = interval or always (a file never "
                   "synced is never known to be stored)");
    }
}

/*
 * check_key_file loads the key file of key i (a secret one when
 * want_secret), so a missing, unreadable or malformed key stops zpiped (and
 * zpiped -t) before anything is bound.  The file is read again when used.
 */
static void
check_key_file(struct conf_parse *p, enum conf_key_index i, bool want_secret)
{
    const struct conf_key *k = &conf_keys[i];
    const char *path = *(char **)field_of(p->cfg, k);
    char why[CURVE_ERR_MAX];
    struct curve_cert cert;
    int r;

    r = curve_cert_load(path, want_secret, &cert, why, sizeof(why));
    curve_cert_wipe(&cert);
    if (r < 0) {
        parse_fail(p, -EINVAL, p->key_line[i], "%s.%s: %s", k->section, k->name, why);
    }
}

/*
 * validate_curve: CURVE keys come in pairs (an input needs its secret key
 * and an allow-list; the zmq sink needs the server's key and its own), and
 * every key file named must load.  An empty allow-list directory is valid:
 * nobody gets in until a key is added and SIGHUP sent.
 */
static void
validate_curve(struct conf_parse *p)
{
    const struct conf *c = p->cfg;
    bool has_secret = c->input_curve_secret_key[0] != '\0';
    bool has_allow = c->input_curve_allow[0] != '\0';
    bool has_server = c->zmq_curve_server_key[0] != '\0';
    bool has_own = c->zmq_curve_secret_key[0] != '\0';

    if (has_secret != has_allow) {
        parse_fail(p, -EINVAL, rule_line(p, KEY_input_curve_secret_key, KEY_input_curve_allow),
                   "input.curve_secret_key and input.curve_allow go together (CURVE needs "
                   "both our key and the list of clients let in)");
    } else if (has_secret) {
        char why[CURVE_ERR_MAX];
        struct curve_allow allow;

        check_key_file(p, KEY_input_curve_secret_key, true);
        if (curve_allow_load(c->input_curve_allow, &allow, why, sizeof(why)) < 0) {
            parse_fail(p, -EINVAL, p->key_line[KEY_input_curve_allow], "input.curve_allow: %s",
                       why);
        } else {
            curve_allow_free(&allow);
        }
    }
    if (has_server != has_own) {
        parse_fail(p, -EINVAL, rule_line(p, KEY_zmq_curve_server_key, KEY_zmq_curve_secret_key),
                   "zmq.curve_server_key and zmq.curve_secret_key go together (CURVE needs "
                   "the server's public key and our own key pair)");
    } else if (has_server && c->output_sink == CONF_SINK_ZMQ) {
        check_key_file(p, KEY_zmq_curve_server_key, false);
        check_key_file(p, KEY_zmq_curve_secret_key, true);
    }
}

/*
 * validate_sink_built refuses a database sink this build has no library
 * for (configure looks for them; README.md, "Building"), and checks a
 * postgres connection string's syntax, which needs no server.
 */
static void
validate_sink_built(struct conf_parse *p)
{
    const struct conf *c = p->cfg;
    int line = rule_line(p, KEY_output_sink, KEY_output_sink);

    if (c->output_sink == CONF_SINK_SQLITE) {
#ifndef HAVE_SQLITE3
        parse_fail(p, -EINVAL, line, "output.sink = sqlite is unavailable: this zpiped was "
                                     "built without SQLite (libsqlite3)");
#endif
    } else if (c->output_sink == CONF_SINK_POSTGRES) {
#ifdef HAVE_LIBPQ
        char *why = NULL;
        PQconninfoOption *opts = PQconninfoParse(c->postgres_conninfo, &why);

        if (opts == NULL) {
            /* why is NULL when libpq ran out of memory. */
            parse_fail(p, why != NULL ? -EINVAL : -ENOMEM,
                       rule_line(p, KEY_output_sink, KEY_postgres_conninfo),
                       "postgres.conninfo: %s", why != NULL ? why : "out of memory");
            /* libpq's messages end in a newline; the config error is one line. */
            p->msg[strcspn(p->msg, "\n")] = '\0';
        }
        PQconninfoFree(opts);
        PQfreemem(why);
#else
        parse_fail(p, -EINVAL, line, "output.sink = postgres is unavailable: this zpiped was "
                                     "built without PostgreSQL's libpq");
#endif
    }
    (void)line;
}

/*
 * nats_subject_why returns why subj cannot be published to, or NULL: NATS
 * subjects are tokens separated by '.', none empty, without spaces or
 * control characters, and a publish subject has no wildcard token.
 */
static const char *
nats_subject_why(const char *subj)
{
    const char *t = subj;

    for (;;) {
        size_t n = strcspn(t, ".");
        size_t i;

        if (n == 0) {
            return "expected tokens separated by '.', none empty";
        }
        if (n == 1 && (t[0] == '*' || t[0] == '>')) {
            return "a wildcard ('*' or '>') cannot be published to";
        }
        for (i = 0; i < n; i++) {
            if ((unsigned char)t[i] <= ' ' || t[i] == 0x7f) {
                return "spaces and control characters are not allowed";
            }
        }
        if (t[n] == '\0') {
            return NULL;
        }
        t += n + 1;
    }
}

/*
 * validate_nats checks the nats sink's keys when it is the sink: only a
 * build with libnats has it (configure looks for it), servers are nats://
 * URLs (libnats would read "host:port" too, but a typo'd scheme should not
 * quietly become a host name), the subject is one a message can be
 * published to, and the waits are bounded.  Nothing here needs a server:
 * one that is down at start is retried by the sink, not refused.
 */
static void
validate_nats(struct conf_parse *p)
{
    const struct conf *c = p->cfg;
    const char *why;
    size_t i;

#ifndef HAVE_NATS
    parse_fail(p, -EINVAL, rule_line(p, KEY_output_sink, KEY_output_sink),
               "output.sink = nats is unavailable: this zpiped was built without libnats");
#endif
    for (i = 0; i < c->nats_servers.n; i++) {
        const char *u = c->nats_servers.items[i];

        if (strncmp(u, "nats://", 7) != 0 || u[7] == '\0') {
            parse_fail(p, -EINVAL, p->key_line[KEY_nats_servers],
                       "nats.servers: expected nats://HOST[:PORT] URLs, not \"%s\"", u);
            break;
        }
    }
    why = nats_subject_why(c->nats_subject);
    if (why != NULL) {
        parse_fail(p, -EINVAL, p->key_line[KEY_nats_subject], "nats.subject = \"%s\": %s",
                   c->nats_subject, why);
    }
    if (c->nats_max_pending > CONF_NATS_PENDING_MAX) {
        parse_fail(p, -EINVAL, p->key_line[KEY_nats_max_pending],
                   "nats.max_pending = %" PRIu64 " is more than %d", c->nats_max_pending,
                   CONF_NATS_PENDING_MAX);
    }
    if (c->nats_ack_timeout == 0) {
        parse_fail(p, -EINVAL, p->key_line[KEY_nats_ack_timeout],
                   "nats.ack_timeout must be more than 0");
    }
}

/* validate checks what no single key can: the rules between keys. */
static void
validate(struct conf_parse *p)
{
    const struct conf *c = p->cfg;
    char a[32], b[32];

    if (c->input_threads > CONF_THREADS_MAX) {
        parse_fail(p, -EINVAL, rule_line(p, KEY_input_threads, KEY_input_threads),
                   "input.threads = %" PRIu64 " is more than %d", c->input_threads,
                   CONF_THREADS_MAX);
    }
    if (c->output_threads > CONF_THREADS_MAX) {
        parse_fail(p, -EINVAL, rule_line(p, KEY_output_threads, KEY_output_threads),
                   "output.threads = %" PRIu64 " is more than %d", c->output_threads,
                   CONF_THREADS_MAX);
    }
    if (c->input_threads > c->input_endpoints.n) {
        parse_fail(p, -EINVAL, rule_line(p, KEY_input_threads, KEY_input_endpoints),
                   "input.threads = %" PRIu64 " but only %zu endpoint%s", c->input_threads,
                   c->input_endpoints.n, c->input_endpoints.n == 1 ? "" : "s");
    }
    /* What a message's header holds (src/msg.h). */
    if (c->input_max_message_size > MSG_SIZE_MAX) {
        parse_fail(p, -EINVAL,
                   rule_line(p, KEY_input_max_message_size, KEY_input_max_message_size),
                   "input.max_message_size = %s is larger than zpiped takes (%s bytes)",
                   fmt_size(c->input_max_message_size, a, sizeof(a)),
                   fmt_size(MSG_SIZE_MAX, b, sizeof(b)));
    }
    if (c->queue_capacity > CONF_QUEUE_CAPACITY_MAX) {
        parse_fail(p, -EINVAL, rule_line(p, KEY_queue_capacity, KEY_queue_capacity),
                   "queue.capacity = %" PRIu64 " is more than %llu", c->queue_capacity,
                   CONF_QUEUE_CAPACITY_MAX);
    }
    if (c->queue_max_bytes == 0 || c->queue_max_bytes > CONF_QUEUE_BYTES_MAX) {
        parse_fail(p, -EINVAL, rule_line(p, KEY_queue_max_bytes, KEY_queue_max_bytes),
                   "queue.max_bytes = %s: expected 1 to %" PRIu64 " bytes",
                   fmt_size(c->queue_max_bytes, a, sizeof(a)), CONF_QUEUE_BYTES_MAX);
    }
    /* Else a message we accept could never fit in the queue, even empty. */
    if (c->input_max_message_size > c->queue_max_bytes) {
        parse_fail(p, -EINVAL, rule_line(p, KEY_input_max_message_size, KEY_queue_max_bytes),
                   "input.max_message_size = %s is larger than "
                   "queue.max_bytes = %s",
                   fmt_size(c->input_max_message_size, a, sizeof(a)),
                   fmt_size(c->queue_max_bytes, b, sizeof(b)));
    }
    /* A row's body is one value, which SQLite and PostgreSQL keep to about
     * 1 GB: a message over it would fail its batch at every try. */
    if ((c->output_sink == CONF_SINK_SQLITE || c->output_sink == CONF_SINK_POSTGRES) &&
        c->input_max_message_size > CONF_DB_MESSAGE_MAX) {
        parse_fail(p, -EINVAL, rule_line(p, KEY_input_max_message_size, KEY_output_sink),
                   "input.max_message_size = %s is larger than the %s sink takes (%s)",
                   fmt_size(c->input_max_message_size, a, sizeof(a)),
                   sink_names[c->output_sink], fmt_size(CONF_DB_MESSAGE_MAX, b, sizeof(b)));
    }
    if (strlen(c->daemon_control_socket) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
        parse_fail(p, -EINVAL, rule_line(p, KEY_daemon_control_socket, KEY_daemon_control_socket),
                   "daemon.control_socket is %zu bytes long: a unix socket's path holds at most "
                   "%zu",
                   strlen(c->daemon_control_socket),
                   sizeof(((struct sockaddr_un *)0)->sun_path) - 1);
    }
    if (c->output_batch > CONF_BATCH_MAX) {
        parse_fail(p, -EINVAL, rule_line(p, KEY_output_batch, KEY_output_batch),
                   "output.batch = %" PRIu64 " is more than %d", c->output_batch, CONF_BATCH_MAX);
    }
    if (c->file_fsync == CONF_FSYNC_INTERVAL && c->file_fsync_interval == 0) {
        parse_fail(p, -EINVAL, rule_line(p, KEY_file_fsync_interval, KEY_file_fsync),
                   "file.fsync_interval must be more than 0 "
                   "when file.fsync = interval");
    }
    if (c->daemon_drain_input > c->daemon_drain_timeout) {
        parse_fail(p, -EINVAL, rule_line(p, KEY_daemon_drain_input, KEY_daemon_drain_timeout),
                   "daemon.drain_input = %s is longer than "
                   "daemon.drain_timeout = %s",
                   fmt_duration(c->daemon_drain_input, a, sizeof(a)),
                   fmt_duration(c->daemon_drain_timeout, b, sizeof(b)));
    }
    if (c->input_rcvhwm > INT_MAX) {
        parse_fail(p, -EINVAL, rule_line(p, KEY_input_rcvhwm, KEY_input_rcvhwm),
                   "input.rcvhwm = %" PRIu64 " is more than %d", c->input_rcvhwm, INT_MAX);
    }
    if (c->zmq_sndhwm > INT_MAX) {
        parse_fail(p, -EINVAL, rule_line(p, KEY_zmq_sndhwm, KEY_zmq_sndhwm),
                   "zmq.sndhwm = %" PRIu64 " is more than %d", c->zmq_sndhwm, INT_MAX);
    }
    if (c->input_ack == CONF_ACK_STORED) {
        validate_ack_stored(p);
    }
    validate_sink_built(p);
    if (c->output_sink == CONF_SINK_NATS) {
        validate_nats(p);
    }
    if (c->zmq_ack_timeout == 0) {
        parse_fail(p, -EINVAL, rule_line(p, KEY_zmq_ack_timeout, KEY_zmq_ack_timeout),
                   "zmq.ack_timeout must be more than 0");
    }
    validate_curve(p);
}

int
conf_load(struct conf *cfg, const char *path, char *err, size_t errlen)
{
    struct conf_parse p;
    char buf[128];
    int r;

    memset(&p, 0, sizeof(p));
    p.cfg = cfg;
    p.path = path;
    r = conf_init_defaults(cfg);
    if (r < 0) {
        parse_fail(&p, r, 0, "out of memory");
        goto done;
    }
    p.f = fopen(path, "re");
    if (p.f == NULL) {
        r = -errno;
        parse_fail(&p, r, 0, "cannot open: %s", util_strerror(-r, buf, sizeof(buf)));
        goto done;
    }
    errno = 0;
    r = ini_parse_stream(conf_reader, &p, conf_handler, &p);
    fclose(p.f);
    if (r == -2) {
        parse_fail(&p, -ENOMEM, 0, "out of memory");
    } else if (r < 0) {
        parse_fail(&p, -EINVAL, 0, "cannot parse (inih error %d)", r);
    } else if (r > 0 && (p.rc == 0 || r < p.err_line)) {
        /* inih refused a line before any error of ours: that one comes first. */
        p.rc = 0;
        parse_fail(&p, -EINVAL, r, "syntax error");
    }
    if (p.rc == 0) {
        validate(&p);
    }
done:
    if (p.rc < 0) {
        conf_free(cfg);
        snprintf(err, errlen, "%s", p.msg);
    } else if (errlen > 0) {
        err[0] = '\0';
    }
    return p.rc;
}
