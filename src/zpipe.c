/*
 * zpipe.c - the command-line client: main(), its options, and the dispatch
 * to the subcommands.
 *
 *   zpipe push   sends its arguments, or the lines of stdin, to zpiped
 *                (client_send.c).
 *   zpipe bench  sends generated messages from several threads as fast as it
 *                can and prints the rate: the load generator of the benchmarks
 *                (client_bench.c).
 *   zpipe stats  asks the daemon's control socket for its counters
 *                (client_stats.c).
 *   zpipe ping   asks the control socket whether the daemon answers.
 *   zpipe keygen writes a CURVE key pair in czmq's zcert format (curve.c).
 *
 * Exit status: 0 on success (in router mode: every message was answered OK),
 * 1 on an error, 2 on a usage error; the modules return negative errnos and
 * only main() maps them.
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"
#include "client_bench.h"
#include "client_send.h"
#include "client_stats.h"
#include "curve.h"
#include "util.h"

#define DEFAULT_ENDPOINT "tcp://127.0.0.1:5555"
#define DEFAULT_TIMEOUT_MS 10000

/* usage_error reports a bad command line and returns the usage exit status. */
#define usage_error(...) client_complain(CLIENT_EXIT_USAGE, __VA_ARGS__)

static const char usage_text[] =
    "Usage: zpipe [-h] [--version] COMMAND [OPTIONS] [ARGS]\n"
    "\n"
    "Commands:\n"
    "  push [-e ENDPOINT] [-r] [-t TIMEOUT] [MESSAGE...]\n"
    "      Send each MESSAGE as one message; with no MESSAGE, send each line of\n"
    "      standard input (without its newline).\n"
    "  bench [-e ENDPOINT] [-n COUNT] [-s SIZE] [-c CLIENTS] [-r] [-t TIMEOUT]\n"
    "        [--hold[=DURATION]]\n"
    "      Send COUNT messages in total from CLIENTS threads as fast as possible\n"
    "      and print one line: messages, seconds, msgs/s, MB/s (and, with -r,\n"
    "      how many were acked).  Each payload is \"c<client>-<seq>\" padded with\n"
    "      '.' to SIZE bytes; client and seq count from 0.\n"
    "  stats [-s SOCKET] [-t TIMEOUT] [--json | -f NAMES] [-i INTERVAL [-n COUNT]]\n"
    "      Print the daemon's counters, read from its control socket (default\n"
    "      " CLIENT_STATS_DEFAULT_SOCKET "): a summary with the average rates since\n"
    "      the start, or with --json the raw JSON object.  With -i, a line\n"
    "      every INTERVAL with what happened during it: counts and rates per\n"
    "      second (with --json, the raw object every INTERVAL).  With -f, one\n"
    "      line of the values of the fields NAMES (NAME,NAME...), separated by\n"
    "      spaces (each INTERVAL with -i), for scripts.\n"
    "  ping [-s SOCKET] [-t TIMEOUT]\n"
    "      Check that the daemon answers on its control socket; prints \"pong\".\n"
    "  keygen NAME\n"
    "      Make a CURVE key pair: NAME.key (the public key, to give out) and\n"
    "      NAME.key_secret (mode 0600), in czmq's zcert format.  Overwrites nothing.\n"
    "\n"
    "Options:\n"
    "  -e, --endpoint=ENDPOINT  zpiped's input endpoint (default " DEFAULT_ENDPOINT ")\n"
    "  -r, --router             zpiped runs in router mode: use a DEALER socket and\n"
    "                           wait for every message's OK\n"
    "  -t, --timeout=DURATION   fail after waiting this long for the daemon (seconds,\n"
    "                           or with an ms/s/m suffix; default 10; 0 = forever)\n"
    "  -s, --size=SIZE          bench: payload bytes, K/M/G suffixes (default 100)\n"
    "  -s, --socket=SOCKET      stats, ping: the control socket path\n"
    "      --json               stats: print the raw JSON object\n"
    "  -f, --field=NAMES        stats: print these fields' values (NAME,NAME...;\n"
    "                           a dot looks into a nested object: sink.kind)\n"
    "  -i, --interval=DURATION  stats: print a line every DURATION (e.g. 1, 500ms)\n"
    "  -n, --count=COUNT        bench: messages in total (default 100000);\n"
    "                           stats -i: stop after COUNT lines (default: never)\n"
    "  -c, --clients=CLIENTS    bench: client threads, one socket each (default 1)\n"
    "      --hold[=DURATION]    bench, pull mode: once all is sent, print the line but\n"
    "                           keep the sockets open until SIGTERM or SIGINT, at\n"
    "                           most DURATION (default and 0: no limit), then close\n"
    "                           them dropping what is still queued\n"
    "      --curve-server-key=FILE  push, bench: connect with CURVE to the daemon\n"
    "                           whose public key (zcert file) is FILE...\n"
    "      --curve-secret-key=FILE  ...as the key pair in the zcert secret FILE\n"
    "  -h, --help               show this help and exit\n"
    "      --version            show the version and exit\n"
    "\n"
    "Exit status: 0 on success (with -r: every message was answered OK),\n"
    "1 on an error, 2 on a usage error.\n";


/* ------------------------------------------------------------ options */

enum {
    OPT_VERSION = 256,
    OPT_CURVE_SERVER_KEY,
    OPT_CURVE_SECRET_KEY,
    OPT_HOLD,
};

static const struct option long_options[] = {
    { "endpoint", required_argument, NULL, 'e' },
    { "router", no_argument, NULL, 'r' },
    { "timeout", required_argument, NULL, 't' },
    { "count", required_argument, NULL, 'n' },
    { "size", required_argument, NULL, 's' },
    { "clients", required_argument, NULL, 'c' },
    { "help", no_argument, NULL, 'h' },
    { "version", no_argument, NULL, OPT_VERSION },
    { "curve-server-key", required_argument, NULL, OPT_CURVE_SERVER_KEY },
    { "curve-secret-key", required_argument, NULL, OPT_CURVE_SECRET_KEY },
    { "hold", optional_argument, NULL, OPT_HOLD },
    { NULL, 0, NULL, 0 },
};

/* A command line; what a subcommand does not take keeps its default. */
struct opts {
    const char *endpoint;
    bool is_router;
    int timeout_ms;                 /* -1 = forever */
    uint64_t count;
    uint64_t size;
    uint64_t clients;
    const char *curve_server_key;   /* NULL = no CURVE */
    const char *curve_secret_key;
    bool is_hold;
    int hold_ms;                    /* with is_hold: -1 = no limit */
};

static const struct opts default_opts = {
    .endpoint = DEFAULT_ENDPOINT,
    .timeout_ms = DEFAULT_TIMEOUT_MS,
    .count = CLIENT_BENCH_DEFAULT_COUNT,
    .size = CLIENT_BENCH_DEFAULT_SIZE,
    .clients = 1,
};

/*
 * check_curve_keys reads the key files of o once, so a bad one is reported
 * once and before connecting (each socket reads them again).  Returns -1
 * when they load or are not given, or the exit status after saying why.
 */
static int
check_curve_keys(const struct opts *o)
{
    const char *paths[2] = { o->curve_server_key, o->curve_secret_key };
    char why[CURVE_ERR_MAX];

    for (int i = 0; i < 2 && paths[i]; i++) {
        struct curve_cert cert;
        int r = curve_cert_load(paths[i], i == 1, &cert, why, sizeof(why));

        curve_cert_wipe(&cert);
        if (r < 0) {
            client_fail("%s", why);
            return CLIENT_EXIT_ERROR;
        }
    }
    return -1;
}

/* option_applies tells whether cmd takes opt: shorts lists its short options. */
static bool
option_applies(int opt, const char *cmd, const char *shorts)
{
    if (opt == OPT_CURVE_SERVER_KEY || opt == OPT_CURVE_SECRET_KEY) {
        return strcmp(cmd, "push") == 0 || strcmp(cmd, "bench") == 0;
    }
    if (opt == OPT_HOLD) {
        return strcmp(cmd, "bench") == 0;
    }
    return opt < 256 && strchr(shorts + 2, opt);
}

/*
 * parse_options reads the options of cmd (NULL for zpipe's own, before the
 * command) into *o.  shorts lists the ones cmd takes in getopt's syntax and
 * starts with "+:": options end at the first argument, since a message may
 * begin with '-', and a missing argument is told apart.  Returns -1 when the
 * caller goes on, with optind at the first argument, or the exit status after
 * --help, --version or a usage error.
 */
static int
parse_options(int argc, char **argv, const char *cmd, const char *shorts, struct opts *o)
{
    const char *sep = cmd ? ": " : "";
    int opt;
    int index;
    uint64_t value;

    if (!cmd) {
        cmd = "";
    }
    opterr = 0;
    optind = 0;                     /* glibc and musl: restart and reset all state */
    while ((index = -1, opt = getopt_long(argc, argv, shorts, long_options, &index)) != -1) {
        if (opt == '?') {
            if (optopt != 0 && optopt != OPT_VERSION) {
                return usage_error("%s%sinvalid option -- '%c'", cmd, sep, optopt);
            }
            return usage_error("%s%sunrecognized option '%s'", cmd, sep, argv[optind - 1]);
        }
        if (opt == ':') {
            return usage_error("%s%soption '%s' requires an argument", cmd, sep,
                               argv[optind - 1]);
        }
        /* getopt checked the short options; a long one may not apply to cmd. */
        if (opt != OPT_VERSION && !option_applies(opt, cmd, shorts)) {
            return usage_error("%s%soption '--%s' does not apply", cmd, sep,
                               index >= 0 ? long_options[index].name : "?");
        }
        switch (opt) {
        case 'e':
            o->endpoint = optarg;
            break;
        case 'r':
            o->is_router = true;
            break;
        case 't':
            if (util_parse_duration_ms(optarg, &value) < 0 || value > INT_MAX) {
                return usage_error("%s%sinvalid timeout '%s'", cmd, sep, optarg);
            }
            o->timeout_ms = value == 0 ? -1 : (int)value;
            break;
        case 'n':
            if (util_parse_uint(optarg, &o->count) < 0) {
                return usage_error("%s%sinvalid count '%s'", cmd, sep, optarg);
            }
            break;
        case 's':
            if (util_parse_size(optarg, &value) < 0 || value > CLIENT_BENCH_MAX_SIZE) {
                return usage_error("%s%sinvalid size '%s' (at most 1G)", cmd, sep, optarg);
            }
            o->size = value;
            break;
        case 'c':
            if (util_parse_uint(optarg, &value) < 0 || value < 1
                || value > CLIENT_BENCH_MAX_CLIENTS) {
                return usage_error("%s%sinvalid client count '%s' (1 to %d)", cmd, sep,
                                   optarg, CLIENT_BENCH_MAX_CLIENTS);
            }
            o->clients = value;
            break;
        case 'h':
            fputs(usage_text, stdout);
            return EXIT_SUCCESS;
        case OPT_VERSION:
            printf("zpipe %s\n", PACKAGE_VERSION);
            return EXIT_SUCCESS;
        case OPT_CURVE_SERVER_KEY:
            o->curve_server_key = optarg;
            break;
        case OPT_CURVE_SECRET_KEY:
            o->curve_secret_key = optarg;
            break;
        case OPT_HOLD:
            value = 0;
            if (optarg && (util_parse_duration_ms(optarg, &value) < 0 || value > INT_MAX)) {
                return usage_error("%s%sinvalid hold '%s'", cmd, sep, optarg);
            }
            o->is_hold = true;
            o->hold_ms = value == 0 ? -1 : (int)value;
            break;
        default:
            return usage_error("%s%sbad option", cmd, sep);
        }
    }
    if (!o->curve_server_key != !o->curve_secret_key) {
        return usage_error("%s%s--curve-server-key and --curve-secret-key go together", cmd,
                           sep);
    }
    return check_curve_keys(o);
}

/*
 * parse_ctl_options reads the options of stats and ping (cmd) into *o: their
 * own, since -s means the socket here; the stats-only ones apply only when
 * is_stats.  Returns -1 when the caller goes on, or the exit status after
 * --help or a usage error.
 */
static int
parse_ctl_options(int argc, char **argv, const char *cmd, bool is_stats,
                  struct client_stats_opts *o)
{
    enum { OPT_JSON = 300 };
    static const struct option opts[] = {
        { "socket", required_argument, NULL, 's' },
        { "timeout", required_argument, NULL, 't' },
        { "json", no_argument, NULL, OPT_JSON },
        { "field", required_argument, NULL, 'f' },
        { "interval", required_argument, NULL, 'i' },
        { "count", required_argument, NULL, 'n' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    uint64_t value;
    int opt;

    opterr = 0;
    optind = 0;
    while ((opt = getopt_long(argc, argv, "+:s:t:i:n:f:h", opts, NULL)) != -1) {
        if (!is_stats && (opt == OPT_JSON || opt == 'f' || opt == 'i' || opt == 'n')) {
            return usage_error("%s: option '%s' does not apply", cmd, argv[optind - 1]);
        }
        switch (opt) {
        case 's':
            o->sock = optarg;
            break;
        case 't':
            if (util_parse_duration_ms(optarg, &value) < 0 || value > INT_MAX) {
                return usage_error("%s: invalid timeout '%s'", cmd, optarg);
            }
            o->timeout_ms = value == 0 ? -1 : (int)value;
            break;
        case 'i':
            if (util_parse_duration_ms(optarg, &value) < 0 || value == 0 || value > INT_MAX) {
                return usage_error("%s: invalid interval '%s'", cmd, optarg);
            }
            o->interval_ms = value;
            break;
        case 'n':
            if (util_parse_uint(optarg, &value) < 0 || value == 0) {
                return usage_error("%s: invalid count '%s'", cmd, optarg);
            }
            o->count = value;
            break;
        case OPT_JSON:
            o->is_json = true;
            break;
        case 'f':
            if (optarg[0] == '\0' || optarg[0] == ',' || strstr(optarg, ",,") ||
                optarg[strlen(optarg) - 1] == ',') {
                return usage_error("%s: invalid field list '%s'", cmd, optarg);
            }
            o->fields = optarg;
            break;
        case 'h':
            fputs(usage_text, stdout);
            return EXIT_SUCCESS;
        case ':':
            return usage_error("%s: option '%s' requires an argument", cmd, argv[optind - 1]);
        default:
            return usage_error("%s: unrecognized option '%s'", cmd, argv[optind - 1]);
        }
    }
    if (optind < argc) {
        return usage_error("%s: unexpected argument '%s'", cmd, argv[optind]);
    }
    if (o->count > 0 && o->interval_ms == 0) {
        return usage_error("%s: option '-n' needs '-i'", cmd);
    }
    if (o->is_json && o->fields) {
        return usage_error("%s: options '--json' and '-f' exclude each other", cmd);
    }
    return -1;
}

/* stats_request asks for the stats object into reply; 0, or -1 after saying why. */

/* ------------------------------------------------------------ commands */

/* exit_status maps a module's result (0 or a negative errno) to zpipe's exit status. */
static int
exit_status(int rc)
{
    return rc == 0 ? EXIT_SUCCESS : CLIENT_EXIT_ERROR;
}

static int
cmd_push(int argc, char **argv)
{
    struct opts o = default_opts;
    int status = parse_options(argc, argv, "push", "+:e:rt:h", &o);

    if (status >= 0) {
        return status;
    }
    const struct client_job job = {
        .label = "push",
        .endpoint = o.endpoint,
        .is_router = o.is_router,
        .timeout_ms = o.timeout_ms,
        .err_report_limit = UINT64_MAX,
        .curve_server_key = o.curve_server_key,
        .curve_secret_key = o.curve_secret_key,
    };
    return exit_status(client_send_push(&job, argv + optind, argc - optind));
}

static int
cmd_bench(int argc, char **argv)
{
    struct opts o = default_opts;
    int status = parse_options(argc, argv, "bench", "+:e:rt:n:s:c:h", &o);

    if (status >= 0) {
        return status;
    }
    if (optind < argc) {
        return usage_error("bench: unexpected argument '%s'", argv[optind]);
    }
    if (o.is_hold && o.is_router) {
        /* A DEALER waits for every reply before closing: nothing to hold for. */
        return usage_error("bench: --hold applies to pull mode only, not with -r");
    }
    const struct client_bench_opts bo = {
        .endpoint = o.endpoint,
        .is_router = o.is_router,
        .timeout_ms = o.timeout_ms,
        .count = o.count,
        .size = (size_t)o.size,
        .clients = (unsigned)o.clients,
        .curve_server_key = o.curve_server_key,
        .curve_secret_key = o.curve_secret_key,
        .is_hold = o.is_hold,
        .hold_ms = o.hold_ms,
    };
    return exit_status(client_bench_run(&bo));
}

static int
cmd_stats(int argc, char **argv)
{
    struct client_stats_opts o = { .sock = CLIENT_STATS_DEFAULT_SOCKET,
                                   .timeout_ms = DEFAULT_TIMEOUT_MS };
    int status = parse_ctl_options(argc, argv, "stats", true, &o);

    return status >= 0 ? status : exit_status(client_stats_run(&o));
}

static int
cmd_ping(int argc, char **argv)
{
    struct client_stats_opts o = { .sock = CLIENT_STATS_DEFAULT_SOCKET,
                                   .timeout_ms = DEFAULT_TIMEOUT_MS };
    int status = parse_ctl_options(argc, argv, "ping", false, &o);

    return status >= 0 ? status : exit_status(client_stats_ping(&o));
}

static int
cmd_keygen(int argc, char **argv)
{
    struct opts o = default_opts;
    char why[CURVE_ERR_MAX];
    int status = parse_options(argc, argv, "keygen", "+:h", &o);

    if (status >= 0) {
        return status;
    }
    if (optind + 1 != argc || argv[optind][0] == '\0') {
        return usage_error("keygen: expected one NAME (writes NAME.key and NAME.key_secret)");
    }
    if (curve_keygen(argv[optind], why, sizeof(why)) < 0) {
        client_fail("keygen: %s", why);
        return CLIENT_EXIT_ERROR;
    }
    printf("%s.key\n%s.key_secret\n", argv[optind], argv[optind]);
    return EXIT_SUCCESS;
}

static const struct {
    const char *name;
    int (*run)(int argc, char **argv);
} commands[] = {
    { "push", cmd_push },
    { "bench", cmd_bench },
    { "stats", cmd_stats },
    { "ping", cmd_ping },
    { "keygen", cmd_keygen },
};

int
main(int argc, char **argv)
{
    struct opts o = default_opts;
    int status = parse_options(argc, argv, NULL, "+:h", &o);

    if (status >= 0) {
        return status;
    }
    if (optind >= argc) {
        fprintf(stderr, "zpipe: no command given\n\n%s", usage_text);
        return CLIENT_EXIT_USAGE;
    }
    argc -= optind;
    argv += optind;
    status = -1;
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        if (strcmp(argv[0], commands[i].name) == 0) {
            status = commands[i].run(argc, argv);
            break;
        }
    }
    if (status < 0) {
        fprintf(stderr, "zpipe: unknown command '%s'\n\n%s", argv[0], usage_text);
        return CLIENT_EXIT_USAGE;
    }
    if (fflush(stdout) != 0) {
        client_fail("write stdout: %s", client_errstr(errno));
        return CLIENT_EXIT_ERROR;
    }
    return status;
}
