/*
 * zpiped.c - main(): options, config, then the daemon.
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#ifdef HAVE_MALLOPT
#include <malloc.h>
#endif
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>

#include "conf.h"
#include "daemon.h"
#include "log.h"
#include "msg.h"
#include "sockact.h"
#include "util.h"

#define DEFAULT_CONFIG "/etc/zpipe/zpiped.ini"

/*
 * Messages are allocated on a producer thread and freed on a consumer
 * thread.  By default glibc gives the free top of a thread's heap back to
 * the kernel (madvise) once 128 KiB of it is free, which with that pattern
 * was a madvise, a TLB shootdown on the other CPUs and page faults to get
 * the memory back every few hundred messages.  zpiped keeps up to this
 * much free at the top of each heap instead; what a flood used beyond it
 * is still given back.  Messages up to MMAP_THRESHOLD come from the heaps,
 * not a mmap(2) and munmap(2) each.
 */
#define TRIM_THRESHOLD (64 << 20)
#define MMAP_THRESHOLD (4 << 20)

/*
 * Each input connection costs a descriptor, and a daemon that runs out can
 * take no more of them.  The soft limit (often 1024) is there for programs
 * that use select(); zpiped does not, so it takes all the hard limit allows
 * (systemd/zpiped.service sets LimitNOFILE=).
 */
static void
raise_nofile_limit(void)
{
    struct rlimit rl;
    rlim_t was;
    char ebuf[128];

    if (getrlimit(RLIMIT_NOFILE, &rl) < 0) {
        return;
    }
    was = rl.rlim_cur;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0) {
            log_warning("RLIMIT_NOFILE: raise the soft limit %ju to %ju: %s", (uintmax_t)was,
                        (uintmax_t)rl.rlim_max, util_strerror(errno, ebuf, sizeof(ebuf)));
            return;
        }
    }
    log_info("RLIMIT_NOFILE: %ju file descriptors (soft limit was %ju, hard limit %ju)",
             (uintmax_t)rl.rlim_cur, (uintmax_t)was, (uintmax_t)rl.rlim_max);
}

static void
usage(FILE *f)
{
    fprintf(f, "Usage: zpiped [-c FILE] [-t]\n"
               "\n"
               "The zpipe message pipeline daemon: receives messages over ZeroMQ and\n"
               "delivers them to a sink.  Runs in the foreground; SIGTERM or SIGINT drain\n"
               "and exit, SIGHUP reopens the file sink.\n"
               "\n"
               "  -c, --config FILE  configuration file (default " DEFAULT_CONFIG ")\n"
               "  -t, --test         check the configuration and exit (0 = valid)\n"
               "  -h, --help         show this help and the configuration keys\n"
               "  -V, --version      show the version\n"
               "\n"
               "Exit status: 0 every accepted message delivered; 1 could not start\n"
               "(configuration, bind, sink); 2 bad usage; 3 accepted messages lost.\n"
               "\n"
               "Configuration keys ([section] key = default):\n");
    conf_print_keys(f);
}

int
main(int argc, char **argv)
{
    static const struct option options[] = {
        { "config", required_argument, NULL, 'c' },
        { "test", no_argument, NULL, 't' },
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, 'V' },
        { NULL, 0, NULL, 0 },
    };
    const char *path = DEFAULT_CONFIG;
    char err[CONF_ERR_MAX];
    struct conf cfg;
    int is_test = 0, opt, status;

    /* First: a SIGTERM or SIGHUP sent as zpiped starts (systemd stopping or
     * reloading it at once) must wait for the loop, not kill the process. */
    daemon_signals_block();
    while ((opt = getopt_long(argc, argv, "c:thV", options, NULL)) != -1) {
        switch (opt) {
        case 'c':
            path = optarg;
            break;
        case 't':
            is_test = 1;
            break;
        case 'h':
            usage(stdout);
            return EXIT_SUCCESS;
        case 'V':
            printf("zpiped %s\n", PACKAGE_VERSION);
            return EXIT_SUCCESS;
        default:
            usage(stderr);
            return DAEMON_EXIT_USAGE;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "zpiped: unexpected argument '%s'\n", argv[optind]);
        return DAEMON_EXIT_USAGE;
    }

    log_init();
    if (conf_load(&cfg, path, err, sizeof(err)) < 0) {
        log_error("%s", err);
        return DAEMON_EXIT_FAILURE;
    }
    if (is_test) {
        printf("%s: configuration OK\n", path);
        conf_free(&cfg);
        return EXIT_SUCCESS;
    }
    log_set_level((enum log_level)cfg.daemon_log_level);
    /* A vanished FIFO reader or socket peer is an EPIPE to handle, not a death. */
    signal(SIGPIPE, SIG_IGN);
    if ((status = msg_id_init()) < 0) {
        log_error("cannot draw this run's message origin: getrandom: %s",
                  util_strerror(-status, err, sizeof(err)));
        conf_free(&cfg);
        return DAEMON_EXIT_FAILURE;
    }
    log_info("zpiped %s starting with %s; message origin %016" PRIx64, PACKAGE_VERSION, path,
             msg_id_origin());
#ifdef HAVE_MALLOPT
    mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD);
    mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD);
#endif
    raise_nofile_limit();
    /* Before any thread: the sockets of a socket unit, matched to the
     * input endpoints (zpiped -t above does not need them). */
    if (sockact_take(&cfg) < 0) {
        conf_free(&cfg);
        return DAEMON_EXIT_FAILURE;
    }
    status = daemon_run(&cfg);
    sockact_fini();
    conf_free(&cfg);
    return status;
}
