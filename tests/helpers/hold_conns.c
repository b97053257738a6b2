/*
 * hold_conns - many slow clients on one server, for the integration tests.
 *
 *   hold_conns [-r] [-i MS] unix:PATH N SECONDS
 *   hold_conns [-r] [-i MS] tcp:HOST:PORT N SECONDS
 *
 * Opens N connections to the unix stream socket PATH or to HOST:PORT (IPv4
 * or IPv6 numeric HOST), and on each sends the start of a request that it
 * never finishes: "pi" (half a control socket "ping", no newline) on a unix
 * socket, "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: " on TCP.  With -i,
 * it then sends one more byte ('a') on each connection every MS
 * milliseconds, for ever: a client trickling a request.  Then it prints
 * "connected K" (K of the N connects that succeeded) and waits.
 *
 * A connection the server closes (EOF, reset, or a failed send) is counted.
 * With -r it is opened again at once (a client that keeps the server's
 * slots taken); without, hold_conns ends when every connection is closed.
 * In any case it ends after SECONDS, and prints "closed C of K" (C closes
 * seen) and exits 0.  Exit 1 if no connection could be made, 2 on usage
 * errors.  Bytes received are read and dropped.
 */
#include "config.h"

#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define CONNS_MAX 1000

static const char unix_start[] = "pi";
static const char tcp_start[] = "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: ";

static struct sockaddr_storage addr;
static socklen_t addr_len;
static bool is_unix;

static long long
now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Parses unix:PATH or tcp:HOST:PORT into addr. Returns 0 or -1. */
static int
parse_target(const char *target)
{
    if (strncmp(target, "unix:", 5) == 0) {
        struct sockaddr_un *sa = (struct sockaddr_un *)&addr;
        const char *path = target + 5;

        if (strlen(path) >= sizeof(sa->sun_path)) {
            return -1;
        }
        sa->sun_family = AF_UNIX;
        memcpy(sa->sun_path, path, strlen(path) + 1);
        addr_len = sizeof(*sa);
        is_unix = true;
        return 0;
    }
    if (strncmp(target, "tcp:", 4) == 0) {
        struct addrinfo hints = { .ai_socktype = SOCK_STREAM,
                                  .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV };
        struct addrinfo *res;
        char host[256];
        const char *colon = strrchr(target + 4, ':');
        size_t host_len;

        if (colon == NULL || (host_len = (size_t)(colon - (target + 4))) >= sizeof(host)) {
            return -1;
        }
        memcpy(host, target + 4, host_len);
        host[host_len] = '\0';
        if (getaddrinfo(host, colon + 1, &hints, &res) != 0) {
            return -1;
        }
        memcpy(&addr, res->ai_addr, res->ai_addrlen);
        addr_len = res->ai_addrlen;
        freeaddrinfo(res);
        return 0;
    }
    return -1;
}

/* Connects and sends the start of a request. Returns the socket, or -1. */
static int
open_conn(void)
{
    const char *start = is_unix ? unix_start : tcp_start;
    int fd = socket(addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);

    if (fd < 0) {
        return -1;
    }
    if (connect(fd, (struct sockaddr *)&addr, addr_len) < 0 ||
        send(fd, start, strlen(start), MSG_NOSIGNAL) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

int
main(int argc, char **argv)
{
    static struct pollfd pfd[CONNS_MAX];
    bool is_reconnect = false;
    long interval_ms = 0;
    long long end_ms, next_byte_ms;
    int opt, n, connected = 0, open_count, closed = 0;

    while ((opt = getopt(argc, argv, "ri:")) != -1) {
        if (opt == 'r') {
            is_reconnect = true;
        } else if (opt == 'i') {
            interval_ms = atol(optarg);
        } else {
            return 2;
        }
    }
    if (argc - optind != 3 || parse_target(argv[optind]) < 0 || (n = atoi(argv[optind + 1])) <= 0 ||
        n > CONNS_MAX || atoi(argv[optind + 2]) <= 0) {
        fprintf(stderr, "usage: hold_conns [-r] [-i MS] unix:PATH|tcp:HOST:PORT N SECONDS\n");
        return 2;
    }
    end_ms = now_ms() + atoi(argv[optind + 2]) * 1000LL;
    for (int i = 0; i < n; i++) {
        pfd[i].fd = open_conn();
        pfd[i].events = POLLIN;
        if (pfd[i].fd >= 0) {
            connected++;
        }
    }
    if (connected == 0) {
        fprintf(stderr, "hold_conns: %s: no connection: %s\n", argv[optind], strerror(errno));
        return 1;
    }
    printf("connected %d\n", connected);
    fflush(stdout);
    open_count = connected;
    next_byte_ms = interval_ms > 0 ? now_ms() + interval_ms : end_ms;
    while (now_ms() < end_ms && (is_reconnect || open_count > 0)) {
        long long now = now_ms();
        long long wake = next_byte_ms < end_ms ? next_byte_ms : end_ms;
        bool is_byte_due = false;

        if (poll(pfd, (nfds_t)n, wake > now ? (int)(wake - now) : 0) < 0 && errno != EINTR) {
            perror("hold_conns: poll");
            break;
        }
        if (interval_ms > 0 && now_ms() >= next_byte_ms) {
            is_byte_due = true;
            next_byte_ms += interval_ms;
        }
        for (int i = 0; i < n; i++) {
            bool is_closed = false;

            if (pfd[i].fd < 0) {
                continue;
            }
            if (pfd[i].revents & (POLLIN | POLLHUP | POLLERR)) {
                char buf[4096];
                ssize_t got = recv(pfd[i].fd, buf, sizeof(buf), MSG_DONTWAIT);

                is_closed = got == 0 || (got < 0 && errno != EAGAIN && errno != EINTR);
            }
            if (!is_closed && is_byte_due) {
                is_closed = send(pfd[i].fd, "a", 1, MSG_NOSIGNAL) < 0;
            }
            if (is_closed) {
                close(pfd[i].fd);
                pfd[i].fd = is_reconnect ? open_conn() : -1;
                closed++;
                if (pfd[i].fd < 0) {
                    open_count--;
                }
            }
            pfd[i].revents = 0;
        }
    }
    printf("closed %d of %d\n", closed, connected);
    return 0;
}
