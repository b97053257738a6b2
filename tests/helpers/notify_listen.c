/*
 * notify_listen - a NOTIFY_SOCKET listener for the integration tests.
 *
 *   notify_listen SOCKET_PATH OUTFILE
 *
 * Binds an AF_UNIX datagram socket at SOCKET_PATH (replacing a stale file)
 * and appends every sd_notify assignment it receives to OUTFILE, one line
 * each, prefixed with CLOCK_MONOTONIC in milliseconds:
 *
 *   12345678 READY=1
 *   12345690 STATUS=received 0 delivered 0 queued 0/65536 rejected 0 spilled 0
 *
 * A datagram holds newline-separated assignments; each becomes its own line.
 * A newline inside a value cannot be told apart from a separator, which is
 * sd_notify's own rule.  Every line is written with one write(2) on an
 * O_APPEND descriptor, so a reader polling OUTFILE never sees a half line.
 *
 * The socket exists once bind() returned, so a caller may start the daemon
 * as soon as SOCKET_PATH is a socket: datagrams sent before the first recv()
 * wait in the socket buffer.  On SIGTERM or SIGINT the listener reads what
 * is still queued, removes SOCKET_PATH and exits 0.  Exit 1 on errors.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* sd_notify datagrams are small; systemd itself accepts up to 128 KiB. */
#define DATAGRAM_MAX (128 * 1024)

static volatile sig_atomic_t is_stopping;

static void
on_signal(int sig)
{
    (void)sig;
    is_stopping = 1;
}

static unsigned long long
now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (unsigned long long)ts.tv_sec * 1000ULL + (unsigned long long)ts.tv_nsec / 1000000ULL;
}

static int
write_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, buf, len);

        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -errno;
        }
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Writes one "<ms> <assignment>\n" line per non-empty assignment of buf. */
static int
record_datagram(int out_fd, const char *buf, size_t len)
{
    static char line[DATAGRAM_MAX + 64];
    unsigned long long ms = now_ms();
    size_t start = 0;

    while (start < len) {
        const char *nl = memchr(buf + start, '\n', len - start);
        size_t end = nl ? (size_t)(nl - buf) : len;

        if (end > start) {
            int head = snprintf(line, sizeof(line), "%llu ", ms);
            size_t n = (size_t)head;

            memcpy(line + n, buf + start, end - start);
            n += end - start;
            line[n++] = '\n';
            if (write_all(out_fd, line, n) < 0) {
                return -1;
            }
        }
        start = end + 1;
    }
    return 0;
}

/* Reads every datagram that is queued now; returns -1 on a write error. */
static int
drain_socket(int sock, int out_fd)
{
    static char buf[DATAGRAM_MAX];

    for (;;) {
        ssize_t n = recv(sock, buf, sizeof(buf), MSG_DONTWAIT);

        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            if (errno != EAGAIN && errno != EWOULDBLOCK) {
                fprintf(stderr, "notify_listen: recv: %s\n", strerror(errno));
            }
            return 0;
        }
        if (record_datagram(out_fd, buf, (size_t)n) < 0) {
            fprintf(stderr, "notify_listen: write: %s\n", strerror(errno));
            return -1;
        }
    }
}

int
main(int argc, char **argv)
{
    struct sockaddr_un addr;
    struct sigaction sa;
    int sock, out_fd, rc = 0;

    if (argc != 3) {
        fprintf(stderr, "usage: notify_listen SOCKET_PATH OUTFILE\n");
        return 2;
    }
    if (strlen(argv[1]) >= sizeof(addr.sun_path)) {
        fprintf(stderr, "notify_listen: socket path too long (max %zu bytes): %s\n",
                sizeof(addr.sun_path) - 1, argv[1]);
        return 2;
    }

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    out_fd = open(argv[2], O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (out_fd < 0) {
        fprintf(stderr, "notify_listen: open %s: %s\n", argv[2], strerror(errno));
        return 1;
    }
    sock = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (sock < 0) {
        fprintf(stderr, "notify_listen: socket: %s\n", strerror(errno));
        return 1;
    }
    /* A big receive buffer, so a burst of STATUS= lines never blocks the daemon. */
    {
        int size = 1 << 20;

        setsockopt(sock, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
    }
    memset(&addr, 0, sizeof(addr));
    addr.sun_family = AF_UNIX;
    strcpy(addr.sun_path, argv[1]);
    unlink(argv[1]);
    if (bind(sock, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
        fprintf(stderr, "notify_listen: bind %s: %s\n", argv[1], strerror(errno));
        return 1;
    }

    while (!is_stopping) {
        struct pollfd pfd = { .fd = sock, .events = POLLIN };
        /* Bounded wait: a signal landing just before poll() is seen within 100 ms. */
        int n = poll(&pfd, 1, 100);

        if (n < 0 && errno != EINTR) {
            fprintf(stderr, "notify_listen: poll: %s\n", strerror(errno));
            rc = 1;
            break;
        }
        if (n > 0 && drain_socket(sock, out_fd) < 0) {
            rc = 1;
            break;
        }
    }
    /* The daemon may have sent its last lines (STOPPING=1) just before we were told to stop. */
    if (rc == 0 && drain_socket(sock, out_fd) < 0) {
        rc = 1;
    }
    close(sock);
    unlink(argv[1]);
    close(out_fd);
    return rc;
}
