/*
 * test_conf.c - conf_load(): defaults, a full file, and every error with its
 * exact "FILE:LINE: message".  Configs are written into a mkdtemp directory
 * that is removed at the end.  Under ASan a failed load that leaks fails the
 * program, which is how "a failed load leaves nothing allocated" is checked.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf.h"

#include "tap.h"

static char dir[] = "/tmp/test_conf.XXXXXX";
static char path[sizeof(dir) + 32];

static void
write_config(const char *text, size_t len)
{
    FILE *f = fopen(path, "w");

    if (f == NULL || fwrite(text, 1, len, f) != len || fclose(f) != 0) {
        bail_out("cannot write %s", path);
    }
}

static bool
is_zeroed(const struct conf *cfg)
{
    static const struct conf zero;

    return memcmp(cfg, &zero, sizeof(zero)) == 0;
}

/* load writes text (len bytes) to the test file and loads it into *cfg. */
static int
load_len(const char *text, size_t len, struct conf *cfg, char *err, size_t errlen)
{
    write_config(text, len);
    memset(cfg, 0xa5, sizeof(*cfg)); /* conf_load must not need a clean struct */
    return conf_load(cfg, path, err, errlen);
}

static int
load(const char *text, struct conf *cfg, char *err, size_t errlen)
{
    return load_len(text, strlen(text), cfg, err, errlen);
}

/*
 * expect_error_len loads text and checks that it fails with rc, that the
 * message is exactly "PATH" + want (want starts with ":LINE: " or ": "), and
 * that the struct is left zeroed.
 */
static void
expect_error_len(const char *what, const char *text, size_t len, int rc, const char *want)
{
    struct conf cfg;
    char err[CONF_ERR_MAX], expected[CONF_ERR_MAX];
    int r;

    snprintf(expected, sizeof(expected), "%s%s", path, want);
    r = load_len(text, len, &cfg, err, sizeof(err));
    if (!ok(r == rc && strcmp(err, expected) == 0 && is_zeroed(&cfg), "%s: %s", what, want)) {
        diag("got rc %d (want %d), message \"%s\", zeroed %d", r, rc, err, is_zeroed(&cfg));
    }
    conf_free(&cfg);
}

static void
expect_error(const char *what, const char *text, const char *want)
{
    expect_error_len(what, text, strlen(text), -EINVAL, want);
}

static void
expect_valid(const char *what, const char *text)
{
    struct conf cfg;
    char err[CONF_ERR_MAX];
    int r;

    r = load(text, &cfg, err, sizeof(err));
    if (!ok(r == 0 && err[0] == '\0', "%s loads", what)) {
        diag("got rc %d, message \"%s\"", r, err);
    }
    conf_free(&cfg);
}

static bool
list_is(const struct conf_list *list, size_t n, const char *const *items)
{
    size_t i;

    if (list->n != n) {
        return false;
    }
    for (i = 0; i < n; i++) {
        if (strcmp(list->items[i], items[i]) != 0) {
            return false;
        }
    }
    return true;
}

static bool
is_default(const struct conf *c)
{
    static const char *const in_ep[] = { "tcp://127.0.0.1:5555" };
    static const char *const out_ep[] = { "tcp://127.0.0.1:6000" };

    return c->daemon_log_level == CONF_LOG_INFO && c->daemon_stats_interval == 10000 &&
           c->daemon_drain_timeout == 30000 && c->daemon_drain_input == 1000 &&
           strcmp(c->daemon_spool_dir, "/var/lib/zpipe/spool") == 0 &&
           strcmp(c->daemon_control_socket, "/run/zpipe/control.sock") == 0 &&
           list_is(&c->input_endpoints, 1, in_ep) && c->input_threads == 1 &&
           c->input_mode == CONF_INMODE_PULL && c->input_ack == CONF_ACK_QUEUED &&
           c->input_max_message_size == 1024 * 1024 &&
           c->input_rcvhwm == 1000 && c->queue_capacity == 65536 &&
           c->queue_max_bytes == UINT64_C(256) * 1024 * 1024 && c->output_sink == CONF_SINK_FILE &&
           c->output_threads == 2 && c->output_batch == 256 &&
           strcmp(c->file_path, "/var/lib/zpipe/messages.log") == 0 &&
           c->file_format == CONF_FORMAT_LINES && c->file_fsync == CONF_FSYNC_INTERVAL &&
           c->file_fsync_interval == 1000 && list_is(&c->zmq_endpoints, 1, out_ep) &&
           c->zmq_mode == CONF_ZMQMODE_PUSH && c->zmq_sndhwm == 1000 &&
           c->zmq_ack_timeout == 10000 &&
           strcmp(c->sqlite_path, "/var/lib/zpipe/messages.db") == 0 &&
           strcmp(c->sqlite_table, "messages") == 0 && c->sqlite_synchronous == CONF_SQLSYNC_FULL &&
           strcmp(c->postgres_conninfo, "postgresql:///zpipe") == 0 &&
           strcmp(c->postgres_table, "messages") == 0;
}

static void
test_defaults(void)
{
    struct conf cfg;
    char err[CONF_ERR_MAX];
    int r;

    r = conf_init_defaults(&cfg);
    ok(r == 0 && is_default(&cfg), "conf_init_defaults fills every default");
    conf_free(&cfg);
    ok(is_zeroed(&cfg), "conf_free zeroes the struct");
    conf_free(&cfg);
    ok(is_zeroed(&cfg), "conf_free accepts a zeroed struct");

    r = load("", &cfg, err, sizeof(err));
    ok(r == 0 && err[0] == '\0' && is_default(&cfg), "an empty file gives every default");
    conf_free(&cfg);

    r = load("; only comments\n# and blank lines\n\n   \n[daemon]\n[input]\n", &cfg, err,
             sizeof(err));
    ok(r == 0 && is_default(&cfg), "comments, blank lines and empty sections give the defaults");
    conf_free(&cfg);
}

static void
test_full(void)
{
    static const char text[] =
        "; a full config\n"
        "[daemon]\n"
        "log_level = debug\n"
        "stats_interval = 0            ; off\n"
        "drain_timeout = 2m\n"
        "drain_input = 500ms\n"
        "spool_dir = /srv/zpipe/spool\n"
        "control_socket = /srv/zpipe/ctl.sock\n"
        "\n"
        "[input]\n"
        "endpoints = tcp://0.0.0.0:7000\tipc:///tmp/z.sock   tcp://[::1]:7001\n"
        "threads = 3\n"
        "mode = router\n"
        "max_message_size = 64K\n"
        "rcvhwm = 7\n"
        "[queue]\n"
        "capacity = 10\n"
        "max_bytes = 2G\n"
        "[output]\n"
        "sink = null\n"
        "threads = 8\n"
        "batch = 65536\n"
        "[file]\n"
        "path = /srv/zpipe/out;log\n"
        "format = binary\n"
        "fsync = always\n"
        "fsync_interval = 0\n"
        "[zmq]                    ; the forwarding sink\n"
        "endpoints = ipc:///run/down.sock\n"
        "mode = dealer\n"
        "sndhwm = 5\n"
        "ack_timeout = 250ms\n"
        "[daemon]\n"
        "# a section may be opened again\n"
        "  ; indented comment\n"
        "stats_interval2 : 1\n";
    static const char *const in_ep[] = { "tcp://0.0.0.0:7000", "ipc:///tmp/z.sock",
                                         "tcp://[::1]:7001" };
    static const char *const out_ep[] = { "ipc:///run/down.sock" };
    struct conf cfg;
    char err[CONF_ERR_MAX];
    int r;

    /* The last line is an unknown key in a reopened section: check it fails there. */
    expect_error("reopened section still checks keys", text,
                 ":36: unknown key 'stats_interval2' in section [daemon]");

    r = load_len(text, sizeof(text) - 1 - strlen("stats_interval2 : 1\n"), &cfg, err, sizeof(err));
    if (!ok(r == 0, "a full valid file loads")) {
        diag("rc %d: %s", r, err);
    }
    ok(cfg.daemon_log_level == CONF_LOG_DEBUG && cfg.daemon_stats_interval == 0 &&
           cfg.daemon_drain_timeout == 120000 && cfg.daemon_drain_input == 500,
       "[daemon] enums and durations");
    ok(strcmp(cfg.daemon_spool_dir, "/srv/zpipe/spool") == 0 &&
           strcmp(cfg.daemon_control_socket, "/srv/zpipe/ctl.sock") == 0,
       "[daemon] strings");
    ok(list_is(&cfg.input_endpoints, 3, in_ep), "[input] endpoints split on spaces and tabs");
    ok(cfg.input_threads == 3 && cfg.input_mode == CONF_INMODE_ROUTER &&
           cfg.input_max_message_size == 65536 && cfg.input_rcvhwm == 7,
       "[input] the rest");
    ok(cfg.queue_capacity == 10 && cfg.queue_max_bytes == UINT64_C(2) << 30, "[queue]");
    ok(cfg.output_sink == CONF_SINK_NULL && cfg.output_threads == 8 && cfg.output_batch == 65536,
       "[output]");
    ok(strcmp(cfg.file_path, "/srv/zpipe/out;log") == 0 && cfg.file_format == CONF_FORMAT_BINARY &&
           cfg.file_fsync == CONF_FSYNC_ALWAYS && cfg.file_fsync_interval == 0,
       "[file] (a ';' not after a blank is part of the value)");
    ok(list_is(&cfg.zmq_endpoints, 1, out_ep) && cfg.zmq_mode == CONF_ZMQMODE_DEALER &&
           cfg.zmq_sndhwm == 5 && cfg.zmq_ack_timeout == 250,
       "[zmq]");
    conf_free(&cfg);

    r = load("\xEF\xBB\xBF[daemon]\r\nlog_level = error\r\n", &cfg, err, sizeof(err));
    ok(r == 0 && cfg.daemon_log_level == CONF_LOG_ERROR,
       "a UTF-8 BOM and CRLF line ends are accepted");
    conf_free(&cfg);

    r = load("[daemon]\nlog_level=warning", &cfg, err, sizeof(err));
    ok(r == 0 && cfg.daemon_log_level == CONF_LOG_WARNING,
       "no blanks around '=' and no final newline");
    conf_free(&cfg);
}

static void
test_line_errors(void)
{
    expect_error("unknown section, at its header", "; x\n\n[inptu]\nthreads = 1\n",
                 ":3: unknown section [inptu]");
    expect_error("unknown section without keys", "[daemon]\n[Input]\n",
                 ":2: unknown section [Input]");
    expect_error("unknown key", "[input]\n\nthread = 2\n",
                 ":3: unknown key 'thread' in section [input]");
    expect_error("key in the wrong section", "[daemon]\nthreads = 2\n",
                 ":2: unknown key 'threads' in section [daemon]");
    expect_error("keys match exactly", "[daemon]\nLog_Level = info\n",
                 ":2: unknown key 'Log_Level' in section [daemon]");
    expect_error("key before any section", "; top\nlog_level = info\n",
                 ":2: key 'log_level' is outside any section");
    expect_error("duplicate key", "[output]\nthreads = 2\n[input]\n[output]\nthreads = 4\n",
                 ":5: duplicate key 'threads' in section [output] (first set on line 2)");
    expect_error("indented continuation line", "[input]\n  endpoints = tcp://a:1\n  threads = 1\n",
                 ":3: indented line would continue the previous value; "
                 "continuation lines are not supported");
    expect_error("section header without ']'", "[daemon]\nlog_level = info\n[input\n",
                 ":3: syntax error: missing ']'");
    expect_error("text after a section header", "[input]\n[daemon] log_level = bogus\n",
                 ":2: text after the section header: 'log_level = bogus'");
    expect_error("line ends of CR alone", "[daemon]\rlog_level = info\r",
                 ":1: text after the section header: 'log_level = info'");
    expect_valid("a comment after a section header", "[daemon]  ; the daemon\n[input] # in\n");
    expect_error("line without '='", "[daemon]\n\nlog_level info\n",
                 ":3: syntax error: expected 'key = value'");
    expect_error("'=' hidden in an inline comment", "[daemon]\nlog_level ;= info\n",
                 ":2: syntax error: expected 'key = value'");
    {
        static const char nul[] = "[daemon]\nlog_level = in\0fo\n";

        expect_error_len("NUL byte", nul, sizeof(nul) - 1, -EINVAL, ":2: NUL byte in line");
    }
    expect_error("first error wins (syntax before a bad key)", "[daemon]\noops\nnope = 1\n",
                 ":2: syntax error: expected 'key = value'");
    expect_error("first error wins (bad key before a syntax error)", "[daemon]\nnope = 1\noops\n",
                 ":2: unknown key 'nope' in section [daemon]");
}

static void
test_long_lines(void)
{
    char text[1024];
    int n;

    /* 198 bytes and a newline: the most inih reads as one line. */
    n = snprintf(text, sizeof(text), "[daemon]\n;%197s\nlog_level = info\n", "");
    ok(n == 9 + 199 + 17, "setup");
    expect_valid("a line of 199 bytes with its newline", text);

    snprintf(text, sizeof(text), "[daemon]\n\n;%198s\nlog_level = info\n", "");
    expect_error("a line of 200 bytes with its newline", text, ":3: line too long (max 199 bytes)");

    snprintf(text, sizeof(text), "[file]\nformat = lines\n\npath = /%250s\n", "x");
    expect_error("an over-long value", text, ":4: line too long (max 199 bytes)");

    snprintf(text, sizeof(text), "[daemon]\n;%198s", "");
    expect_valid("a last line of 199 bytes without a newline", text);
}

static void
test_bad_values(void)
{
    expect_error("empty string", "[daemon]\nspool_dir =\n",
                 ":2: [daemon] spool_dir: bad value '': expected a non-empty string");
    expect_error("empty string before a comment", "[file]\npath = ; later\n",
                 ":2: [file] path: bad value '': expected a non-empty string");
    expect_error("bad duration", "[daemon]\ndrain_timeout = 10 s\n",
                 ":2: [daemon] drain_timeout: bad value '10 s': expected a duration like "
                 "500ms, 2s, 1m (a bare number is seconds)");
    expect_error("duration with an hour suffix", "[daemon]\nstats_interval = 1h\n",
                 ":2: [daemon] stats_interval: bad value '1h': expected a duration like "
                 "500ms, 2s, 1m (a bare number is seconds)");
    expect_error("negative duration", "[file]\nfsync_interval = -1s\n",
                 ":2: [file] fsync_interval: bad value '-1s': expected a duration like "
                 "500ms, 2s, 1m (a bare number is seconds)");
    expect_error("duration too large", "[daemon]\ndrain_input = 18446744073709552s\n",
                 ":2: [daemon] drain_input: bad value '18446744073709552s': duration too large");
    expect_error("duration beyond microseconds", "[daemon]\ndrain_input = 18446744073709552ms\n",
                 ":2: [daemon] drain_input: bad value '18446744073709552ms': duration too large");
    expect_error("bad size", "[queue]\nmax_bytes = 1MB\n",
                 ":2: [queue] max_bytes: bad value '1MB': expected a size like 4096, 64K, 1M, "
                 "2G (a bare number is bytes)");
    expect_error("lower-case size suffix", "[input]\nmax_message_size = 1m\n",
                 ":2: [input] max_message_size: bad value '1m': expected a size like 4096, 64K, "
                 "1M, 2G (a bare number is bytes)");
    expect_error("size too large", "[queue]\nmax_bytes = 17179869184G\n",
                 ":2: [queue] max_bytes: bad value '17179869184G': size too large");
    expect_error("count of zero", "[output]\nthreads = 0\n",
                 ":2: [output] threads: bad value '0': expected a whole number of at least 1");
    expect_error("count with a sign", "[queue]\ncapacity = +5\n",
                 ":2: [queue] capacity: bad value '+5': expected a whole number of at least 1");
    expect_error("count too large", "[queue]\ncapacity = 18446744073709551616\n",
                 ":2: [queue] capacity: bad value '18446744073709551616': number too large");
    expect_error("negative hwm", "[input]\nrcvhwm = -1\n",
                 ":2: [input] rcvhwm: bad value '-1': expected a whole number of at least 1");
    expect_error("hwm with a suffix", "[zmq]\nsndhwm = 1K\n",
                 ":2: [zmq] sndhwm: bad value '1K': expected a whole number of at least 1");
    /* 0 would make libzmq buffer without limit outside every zpiped bound. */
    expect_error("rcvhwm of zero", "[daemon]\nlog_level = info\n[input]\nrcvhwm = 0\n",
                 ":4: [input] rcvhwm: bad value '0': expected a whole number of at least 1 "
                 "(0 would mean no limit to libzmq)");
    expect_error("sndhwm of zero", "[zmq]\nsndhwm = 0\n",
                 ":2: [zmq] sndhwm: bad value '0': expected a whole number of at least 1 "
                 "(0 would mean no limit to libzmq)");
    expect_error("empty list", "[input]\nendpoints =    \n",
                 ":2: [input] endpoints: bad value '': expected a space-separated list of at "
                 "least one item");
    expect_error("endpoint transport", "[input]\nendpoints = tcp://a:1 udp://b:2\n",
                 ":2: [input] endpoints: bad value 'tcp://a:1 udp://b:2': expected "
                 "tcp://ADDRESS or ipc://PATH endpoints");
    expect_error("inproc endpoint", "[input]\nendpoints = inproc://x\n",
                 ":2: [input] endpoints: bad value 'inproc://x': expected tcp://ADDRESS or "
                 "ipc://PATH endpoints");
    expect_error("endpoint without an address", "[zmq]\nendpoints = tcp://\n",
                 ":2: [zmq] endpoints: bad value 'tcp://': expected tcp://ADDRESS or "
                 "ipc://PATH endpoints");
    expect_error("endpoint listed twice", "[input]\nendpoints = ipc://a tcp://b:1 ipc://a\n",
                 ":2: [input] endpoints: bad value 'ipc://a tcp://b:1 ipc://a': an endpoint is "
                 "listed twice");
    expect_error("bad log level", "[daemon]\nlog_level = INFO\n",
                 ":2: [daemon] log_level: bad value 'INFO': expected one of: error | warning | "
                 "info | debug");
    expect_error("bad input mode", "[input]\nmode = push\n",
                 ":2: [input] mode: bad value 'push': expected one of: pull | router");
    expect_error("bad sink", "[output]\nsink = kafka\n",
                 ":2: [output] sink: bad value 'kafka': expected one of: file | zmq | null | sqlite | postgres | "
                 "nats");
    expect_error("bad format", "[file]\nformat = json\n",
                 ":2: [file] format: bad value 'json': expected one of: lines | binary");
    expect_error("bad fsync", "[file]\nfsync = sometimes\n",
                 ":2: [file] fsync: bad value 'sometimes': expected one of: never | interval | "
                 "always");
    expect_error("bad zmq mode", "[zmq]\nmode = pull\n",
                 ":2: [zmq] mode: bad value 'pull': expected one of: push | dealer");
    expect_error("bad ack", "[input]\nack = delivered\n",
                 ":2: [input] ack: bad value 'delivered': expected one of: queued | stored");
    /* ack = stored where no OK could mean stored; the later of the two keys is reported. */
    expect_error("ack = stored in pull mode", "[input]\nack = stored\n",
                 ":2: input.ack = stored needs input.mode = router (PUSH clients get no reply)");
    expect_error("ack = stored into a zmq push sink",
                 "[input]\nmode = router\nack = stored\n[output]\nsink = zmq\n",
                 ":3: input.ack = stored needs zmq.mode = dealer (a PUSH sink is never told "
                 "what was delivered)");
    expect_error("ack = stored into a file never synced",
                 "[input]\nmode = router\nack = stored\n[file]\nfsync = never\n",
                 ":5: input.ack = stored needs file.fsync = interval or always (a file never "
                 "synced is never known to be stored)");
    expect_valid("ack = stored, the unused sink's keys do not matter,",
                 "[input]\nmode = router\nack = stored\n[output]\nsink = null\n[file]\n"
                 "fsync = never\n[zmq]\nmode = push\n");
}

static void
test_cross_key(void)
{
    expect_error("more input threads than endpoints",
                 "[input]\nendpoints = tcp://a:1 tcp://b:2\nthreads = 3\n",
                 ":3: input.threads = 3 but only 2 endpoints");
    expect_error("two input threads, one default endpoint", "[input]\nthreads = 2\n",
                 ":2: input.threads = 2 but only 1 endpoint");
    expect_valid("as many input threads as endpoints",
                 "[input]\nendpoints = tcp://a:1 tcp://b:2\nthreads = 2\n");
    expect_error("max_message_size over max_bytes",
                 "[input]\nmax_message_size = 2G\n[queue]\nmax_bytes = 1536M\n",
                 ":4: input.max_message_size = 2G is larger than queue.max_bytes = 1536M");
    expect_valid("max_message_size equal to max_bytes",
                 "[input]\nmax_message_size = 1024\n[queue]\nmax_bytes = 1K\n");
    expect_valid("max_message_size 600M with the file sink",
                 "[input]\nmax_message_size = 600M\n[queue]\nmax_bytes = 2G\n");
    expect_error("too many output threads", "[output]\nthreads = 65\n",
                 ":2: output.threads = 65 is more than 64");
    expect_valid("64 output threads", "[output]\nthreads = 64\n");
    expect_error("too many input threads",
                 "[input]\nthreads = 100000\nendpoints = tcp://a:1\n",
                 ":2: input.threads = 100000 is more than 64");
    expect_error("batch too large", "[output]\nbatch = 65537\n",
                 ":2: output.batch = 65537 is more than 65536");
    {
        char text[256];

        snprintf(text, sizeof(text), "[daemon]\ncontrol_socket = /run/%0108d\n", 0);
        expect_error("a control socket path too long for a unix socket", text,
                     ":2: daemon.control_socket is 113 bytes long: a unix socket's path holds "
                     "at most 107");
        snprintf(text, sizeof(text), "[daemon]\ncontrol_socket = /run/%0102d\n", 0);
        expect_valid("a control socket path of 107 bytes", text);
    }
    expect_error("fsync interval of zero", "[file]\nfsync_interval = 0ms\n",
                 ":2: file.fsync_interval must be more than 0 when file.fsync = interval");
    expect_valid("fsync interval of zero when fsync = never",
                 "[file]\nfsync = never\nfsync_interval = 0\n");
    expect_error("drain_input longer than drain_timeout",
                 "[daemon]\ndrain_timeout = 1500ms\ndrain_input = 2s\n",
                 ":3: daemon.drain_input = 2s is longer than daemon.drain_timeout = 1500ms");
    expect_valid("drain_input equal to drain_timeout",
                 "[daemon]\ndrain_timeout = 1m\ndrain_input = 60s\n");
    expect_valid("zmq sink, push mode", "[output]\nsink = zmq\n[zmq]\nmode = push\n");
    expect_valid("zmq sink, dealer mode", "[output]\nsink = zmq\n[zmq]\nmode = dealer\n");
    expect_error("zmq ack_timeout of zero", "[zmq]\nmode = dealer\nack_timeout = 0\n",
                 ":3: zmq.ack_timeout must be more than 0");
    expect_error("zmq sndhwm above INT_MAX", "[zmq]\nsndhwm = 4294967296\n",
                 ":2: zmq.sndhwm = 4294967296 is more than 2147483647");
    expect_error("rcvhwm over INT_MAX", "[input]\nrcvhwm = 2147483648\n",
                 ":2: input.rcvhwm = 2147483648 is more than 2147483647");
    expect_error("table name with a space", "[sqlite]\ntable = my table\n",
                 ":2: [sqlite] table: bad value 'my table': expected a name of letters, digits"
                 " and '_' (not starting with a digit), at most 63 bytes");
    expect_error("table name with a quote", "[postgres]\ntable = a\"b\n",
                 ":2: [postgres] table: bad value 'a\"b': expected a name of letters, digits"
                 " and '_' (not starting with a digit), at most 63 bytes");
    expect_error("table name starting with a digit", "[sqlite]\ntable = 1m\n",
                 ":2: [sqlite] table: bad value '1m': expected a name of letters, digits"
                 " and '_' (not starting with a digit), at most 63 bytes");
    expect_error("table name of 64 bytes",
                 "[sqlite]\ntable = a123456789012345678901234567890123456789012345678901234567890123\n",
                 ":2: [sqlite] table: bad value "
                 "'a123456789012345678901234567890123456789012345678901234567890123': expected a"
                 " name of letters, digits and '_' (not starting with a digit), at most 63 bytes");
    expect_valid(
        "table names of 63 bytes, keywords, '_'",
        "[sqlite]\ntable = a12345678901234567890123456789012345678901234567890123456789012\n"
        "[postgres]\ntable = _Select_9\n");
    expect_error("max_message_size over what a message holds",
                 "[input]\nmax_message_size = 4G\n[queue]\nmax_bytes = 8G\n",
                 ":2: input.max_message_size = 4G is larger than zpiped takes (4294967295 bytes)");
    expect_valid("max_message_size at what a message holds",
                 "[input]\nmax_message_size = 4294967295\n[queue]\nmax_bytes = 8G\n");
    expect_error("queue.capacity over what stats can report",
                 "[queue]\ncapacity = 9223372036854775808\n",
                 ":2: queue.capacity = 9223372036854775808 is more than 4294967295");
    expect_valid("queue.capacity at its limit", "[queue]\ncapacity = 4294967295\n");
    expect_error("queue.max_bytes 0", "[queue]\nmax_bytes = 0\n[input]\nmax_message_size = 0\n",
                 ":2: queue.max_bytes = 0: expected 1 to 9223372036854775807 bytes");
    expect_error("queue.max_bytes over what stats can report", "[queue]\nmax_bytes = 8589934592G\n",
                 ":2: queue.max_bytes = 8589934592G: expected 1 to 9223372036854775807 bytes");
    expect_valid("queue.max_bytes at its limit", "[queue]\nmax_bytes = 9223372036854775807\n");
    expect_error("sqlite synchronous", "[sqlite]\nsynchronous = off\n",
                 ":2: [sqlite] synchronous: bad value 'off': expected one of: full | normal");
#ifdef HAVE_SQLITE3
    expect_valid("sqlite sink, ack = stored, synchronous = normal",
                 "[input]\nmode = router\nack = stored\n[output]\nsink = sqlite\n"
                 "[sqlite]\nsynchronous = normal\npath = /tmp/x.db\n");
    expect_error("max_message_size over what a database row takes",
                 "[input]\nmax_message_size = 600M\n[queue]\nmax_bytes = 2G\n"
                 "[output]\nsink = sqlite\n",
                 ":6: input.max_message_size = 600M is larger than the sqlite sink takes (512M)");
#else
    expect_error("sqlite sink in a build without it", "[output]\nsink = sqlite\n",
                 ":2: output.sink = sqlite is unavailable: this zpiped was built without"
                 " SQLite (libsqlite3)");
#endif
#ifdef HAVE_LIBPQ
    expect_valid("postgres sink, ack = stored",
                 "[input]\nmode = router\nack = stored\n[output]\nsink = postgres\n"
                 "[postgres]\nconninfo = host=/tmp dbname=x connect_timeout=5\n");
    expect_error("postgres conninfo that libpq cannot parse",
                 "[output]\nsink = postgres\n[postgres]\nconninfo = host=/tmp nosuchkey=1\n",
                 ":4: postgres.conninfo: invalid connection option \"nosuchkey\"");
    expect_valid("a bad conninfo does not matter with another sink",
                 "[postgres]\nconninfo = nosuchkey=1\n");
#else
    expect_error("postgres sink in a build without it", "[output]\nsink = postgres\n",
                 ":2: output.sink = postgres is unavailable: this zpiped was built without"
                 " PostgreSQL's libpq");
#endif
#ifdef HAVE_NATS
    expect_valid("nats sink, ack = stored, a cluster's servers",
                 "[input]\nmode = router\nack = stored\n[output]\nsink = nats\n"
                 "[nats]\nservers = nats://a:4222 nats://u:p@b:4223\nsubject = a.b-c_d\n"
                 "max_pending = 1\nack_timeout = 500ms\n");
    expect_error("nats server without nats://", "[output]\nsink = nats\n[nats]\n"
                 "servers = nats://a:1 127.0.0.1:4222\n",
                 ":4: nats.servers: expected nats://HOST[:PORT] URLs, not \"127.0.0.1:4222\"");
    expect_error("nats subject with a wildcard", "[output]\nsink = nats\n[nats]\nsubject = a.*\n",
                 ":4: nats.subject = \"a.*\": a wildcard ('*' or '>') cannot be published to");
    expect_error("nats subject with an empty token", "[output]\nsink = nats\n[nats]\n"
                 "subject = a..b\n",
                 ":4: nats.subject = \"a..b\": expected tokens separated by '.', none empty");
    expect_error("nats max_pending too large", "[output]\nsink = nats\n[nats]\n"
                 "max_pending = 1000001\n",
                 ":4: nats.max_pending = 1000001 is more than 1000000");
    expect_error("nats ack_timeout of 0", "[output]\nsink = nats\n[nats]\nack_timeout = 0\n",
                 ":4: nats.ack_timeout must be more than 0");
#else
    expect_error("nats sink in a build without it", "[output]\nsink = nats\n",
                 ":2: output.sink = nats is unavailable: this zpiped was built without libnats");
#endif
    expect_valid("a bad nats subject does not matter with another sink",
                 "[nats]\nsubject = a.>\n");
    expect_error("first cross-key error wins", "[output]\nsink = zmq\nbatch = 100000\n",
                 ":3: output.batch = 100000 is more than 65536");
}

static void
test_files(void)
{
    struct conf cfg;
    char err[CONF_ERR_MAX], expected[CONF_ERR_MAX], missing[sizeof(path) + 16];
    char small[16];
    FILE *f;
    int r;

    snprintf(missing, sizeof(missing), "%s/missing.ini", dir);
    memset(&cfg, 0xa5, sizeof(cfg));
    r = conf_load(&cfg, missing, err, sizeof(err));
    snprintf(expected, sizeof(expected), "%s: cannot open: No such file or directory", missing);
    if (!ok(r == -ENOENT && strcmp(err, expected) == 0 && is_zeroed(&cfg),
            "a missing file: -ENOENT, \"FILE: cannot open: ...\"")) {
        diag("rc %d: %s", r, err);
    }

    memset(&cfg, 0xa5, sizeof(cfg));
    r = conf_load(&cfg, dir, err, sizeof(err));
    snprintf(expected, sizeof(expected), "%s: read error: Is a directory", dir);
    if (!ok(r == -EISDIR && strcmp(err, expected) == 0 && is_zeroed(&cfg),
            "a directory: -EISDIR, \"FILE: read error: ...\"")) {
        diag("rc %d: %s", r, err);
    }

    r = load("[daemon]\nbogus = 1\n", &cfg, small, sizeof(small));
    ok(r == -EINVAL && strlen(small) == sizeof(small) - 1 &&
           strncmp(small, path, sizeof(small) - 1) == 0,
       "the message is cut to errlen, NUL-terminated");

    /* conf_print_keys writes a valid config of the defaults. */
    f = fopen(path, "w");
    if (f == NULL) {
        bail_out("cannot write %s", path);
    }
    conf_print_keys(f);
    fclose(f);
    memset(&cfg, 0xa5, sizeof(cfg));
    r = conf_load(&cfg, path, err, sizeof(err));
    if (!ok(r == 0 && is_default(&cfg), "conf_print_keys output loads back as the defaults")) {
        diag("rc %d: %s", r, err);
    }
    conf_free(&cfg);
}

static void
test_names(void)
{
    ok(strcmp(conf_log_level_name(CONF_LOG_WARNING), "warning") == 0 &&
           strcmp(conf_inmode_name(CONF_INMODE_ROUTER), "router") == 0 &&
           strcmp(conf_sink_name(CONF_SINK_FILE), "file") == 0 &&
           strcmp(conf_format_name(CONF_FORMAT_BINARY), "binary") == 0 &&
           strcmp(conf_fsync_name(CONF_FSYNC_ALWAYS), "always") == 0,
       "enum names");
    ok(strcmp(conf_sink_name((enum conf_sink)42), "?") == 0, "an out-of-range enum is \"?\"");
}

int
main(void)
{
    if (mkdtemp(dir) == NULL) {
        bail_out("mkdtemp: %s", strerror(errno));
    }
    snprintf(path, sizeof(path), "%s/zpiped.ini", dir);

    test_defaults();
    test_full();
    test_line_errors();
    test_long_lines();
    test_bad_values();
    test_cross_key();
    test_files();
    test_names();

    unlink(path);
    if (rmdir(dir) != 0) {
        diag("rmdir %s: %s", dir, strerror(errno));
    }
    return done_testing();
}
