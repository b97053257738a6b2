/*
 * tcp_garbage - hostile raw TCP peers for the integration tests.
 *
 *   tcp_garbage freeport                 print a TCP port on 127.0.0.1 that
 *                                        was free a moment ago
 *   tcp_garbage MODE HOST PORT [ARG]     one connection of MODE
 *
 * Modes (each connects, writes, and closes; none waits for the daemon
 * unless said):
 *
 *   random N      N pseudo-random bytes (seeded by ARG position and pid)
 *   sig           the 10-byte ZMTP signature 0xFF 0*8 0x7F, then 200
 *                 bytes of garbage
 *   truncated K   the first K bytes of a valid ZMTP 3.0 NULL greeting
 *   badversion    the signature, version 0x01 0x63, then garbage
 *   badmech       a ZMTP 3.0 greeting with mechanism "BOGUS", then garbage
 *   badcmd        a valid greeting, then a command frame that is not READY
 *   reset N       N bytes of a valid greeting, then close with SO_LINGER 0
 *                 (an RST instead of a FIN)
 *   hugeframe TYPE SIZE
 *                 a valid ZMTP 3.0 NULL handshake as a TYPE socket (PUSH,
 *                 DEALER), then one long frame header announcing SIZE bytes
 *                 (decimal, up to 2^63-1) and only 16 bytes of it.  Then
 *                 wait up to 10 s for the peer to close: exit 0 if it did,
 *                 3 if it still held the connection open.
 *   servehuge TYPE SIZE
 *                 the other way round: listen on HOST PORT, print
 *                 "listening", accept one connection and do what
 *                 hugeframe does on it (TYPE: PULL, ROUTER), for a peer
 *                 that connects (a zmq sink, a client).  Exit as hugeframe.
 *   idle TYPE N SECONDS
 *                 N connections, each a valid ZMTP 3.0 NULL handshake as
 *                 a TYPE socket (PUSH, DEALER) that then sends nothing:
 *                 print "connected N" on stdout and hold them open until
 *                 SIGTERM or SECONDS pass (exit 0), or until the peer
 *                 closes one (exit 3).
 *   stall SECONDS half an HTTP request (the request line and one header,
 *                 no blank line), print "sent" on stdout, then wait up to
 *                 SECONDS for the peer to close: exit 0 if it did (a
 *                 server's idle timeout), 3 if it still held it open.
 *
 * Exit 0 on success, 1 if the connection failed, 2 on usage errors.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define GREETING_LEN 64

static uint64_t rng_state;

static uint8_t
rng_byte(void)
{
    /* xorshift64: enough noise for a hostile peer, no libc state. */
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint8_t)(rng_state >> 24);
}

static void
greeting(uint8_t *g, const char *mech)
{
    memset(g, 0, GREETING_LEN);
    g[0] = 0xff;
    g[9] = 0x7f;
    g[10] = 3; /* version 3.0 */
    g[11] = 0;
    memcpy(g + 12, mech, strlen(mech)); /* 20 bytes, zero-padded */
    g[32] = 0;                          /* as-server */
}

static int
connect_to(const char *host, const char *port)
{
    struct sockaddr_in sa;
    int fd;

    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)atoi(port));
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
        fprintf(stderr, "tcp_garbage: bad address %s\n", host);
        return -1;
    }
    fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        fprintf(stderr, "tcp_garbage: connect %s:%s: %s\n", host, port, strerror(errno));
        if (fd >= 0) {
            close(fd);
        }
        return -1;
    }
    return fd;
}

/* Writes what it can; a peer that hangs up early is what we test for. */
static void
send_all(int fd, const void *buf, size_t len)
{
    const uint8_t *p = buf;

    while (len > 0) {
        ssize_t w = send(fd, p, len, MSG_NOSIGNAL);

        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w <= 0) {
            return;
        }
        p += w;
        len -= (size_t)w;
    }
}

static void
send_garbage(int fd, size_t n)
{
    uint8_t buf[4096];

    while (n > 0) {
        size_t k = n < sizeof(buf) ? n : sizeof(buf);

        for (size_t i = 0; i < k; i++) {
            buf[i] = rng_byte();
        }
        send_all(fd, buf, k);
        n -= k;
    }
}

/* Waits up to ms for the peer to close; returns 1 if it did. */
static int
wait_closed(int fd, int ms)
{
    struct timespec t0, t1;
    char buf[4096];

    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        long left;
        ssize_t r;

        clock_gettime(CLOCK_MONOTONIC, &t1);
        left = ms - ((t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000);
        if (left <= 0) {
            return 0;
        }
        if (poll(&pfd, 1, (int)left) <= 0) {
            continue;
        }
        r = recv(fd, buf, sizeof(buf), 0);
        if (r == 0 || (r < 0 && errno != EINTR && errno != EAGAIN)) {
            return 1;
        }
    }
}

/* Sends a ZMTP 3.0 NULL greeting and READY as a TYPE socket. */
static void
handshake(int fd, const char *type)
{
    uint8_t g[GREETING_LEN], cmd[64];
    size_t tl = strlen(type), n = 0;

    greeting(g, "NULL");
    send_all(fd, g, sizeof(g));
    /* READY command: short command frame, "\5READY", property Socket-Type. */
    cmd[n++] = 0x04;
    cmd[n++] = 0; /* size, filled in below */
    cmd[n++] = 5;
    memcpy(cmd + n, "READY", 5);
    n += 5;
    cmd[n++] = 11;
    memcpy(cmd + n, "Socket-Type", 11);
    n += 11;
    cmd[n++] = 0;
    cmd[n++] = 0;
    cmd[n++] = 0;
    cmd[n++] = (uint8_t)tl;
    memcpy(cmd + n, type, tl);
    n += tl;
    cmd[1] = (uint8_t)(n - 2);
    send_all(fd, cmd, n);
}

static int
hugeframe(int fd, const char *type, uint64_t size)
{
    uint8_t hdr[9], body[16];

    handshake(fd, type);
    /* A long message frame, last frame: flags 0x02, 8-byte big-endian size. */
    hdr[0] = 0x02;
    for (int i = 0; i < 8; i++) {
        hdr[1 + i] = (uint8_t)(size >> (56 - 8 * i));
    }
    send_all(fd, hdr, sizeof(hdr));
    memset(body, 'h', sizeof(body));
    send_all(fd, body, sizeof(body));
    return wait_closed(fd, 10000) ? 0 : 3;
}

/* Listens on host:port, accepts one connection and sends it a huge frame. */
static int
servehuge(const char *host, const char *port, const char *type, uint64_t size)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(port))};
    int one = 1, lfd = socket(AF_INET, SOCK_STREAM, 0), fd, rc;

    if (lfd < 0 || inet_pton(AF_INET, host, &sa.sin_addr) != 1 ||
        setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(lfd, 1) < 0) {
        perror("tcp_garbage: listen");
        return 1;
    }
    printf("listening\n");
    fflush(stdout);
    do {
        fd = accept(lfd, NULL, NULL);
    } while (fd < 0 && errno == EINTR);
    close(lfd);
    if (fd < 0) {
        perror("tcp_garbage: accept");
        return 1;
    }
    rc = hugeframe(fd, type, size);
    close(fd);
    return rc;
}

static void
usage(void)
{
    fprintf(stderr, "usage: tcp_garbage freeport | MODE HOST PORT [ARG...]\n");
    exit(2);
}

/* Holds n handshaken, silent TYPE connections for up to secs seconds. */
static int
idle(const char *host, const char *port, const char *type, int n, int secs)
{
    struct pollfd pfd[1024];
    char buf[256];
    time_t end = time(NULL) + secs;

    if (n < 1 || n > (int)(sizeof(pfd) / sizeof(pfd[0]))) {
        usage();
    }
    for (int i = 0; i < n; i++) {
        pfd[i].fd = connect_to(host, port);
        pfd[i].events = POLLIN;
        if (pfd[i].fd < 0) {
            return 1;
        }
        handshake(pfd[i].fd, type);
    }
    printf("connected %d\n", n);
    fflush(stdout);
    while (time(NULL) < end) {
        if (poll(pfd, (nfds_t)n, 1000) <= 0) {
            continue;
        }
        for (int i = 0; i < n; i++) {
            /* The peer's greeting and READY are read and dropped; a close is
             * what this mode reports. */
            if ((pfd[i].revents & (POLLIN | POLLHUP | POLLERR)) &&
                recv(pfd[i].fd, buf, sizeof(buf), 0) <= 0) {
                return 3;
            }
        }
    }
    return 0;
}

static int
freeport(void)
{
    struct sockaddr_in sa;
    socklen_t len = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &len) < 0) {
        perror("tcp_garbage: freeport");
        return 1;
    }
    printf("%u\n", (unsigned)ntohs(sa.sin_port));
    close(fd);
    return 0;
}

int
main(int argc, char **argv)
{
    const char *mode;
    uint8_t g[GREETING_LEN];
    int fd, rc = 0;

    if (argc == 2 && strcmp(argv[1], "freeport") == 0) {
        return freeport();
    }
    if (argc < 4) {
        usage();
    }
    mode = argv[1];
    if (strcmp(mode, "servehuge") == 0 && argc == 6) {
        return servehuge(argv[2], argv[3], argv[4], strtoull(argv[5], NULL, 10));
    }
    if (strcmp(mode, "idle") == 0 && argc == 7) {
        return idle(argv[2], argv[3], argv[4], atoi(argv[5]), atoi(argv[6]));
    }
    rng_state = ((uint64_t)getpid() << 32) ^ (uint64_t)time(NULL) ^ 0x9e3779b97f4a7c15ULL;
    fd = connect_to(argv[2], argv[3]);
    if (fd < 0) {
        return 1;
    }
    greeting(g, "NULL");
    if (strcmp(mode, "random") == 0 && argc == 5) {
        send_garbage(fd, strtoul(argv[4], NULL, 10));
    } else if (strcmp(mode, "sig") == 0) {
        send_all(fd, g, 10);
        send_garbage(fd, 200);
    } else if (strcmp(mode, "truncated") == 0 && argc == 5) {
        size_t k = strtoul(argv[4], NULL, 10);

        send_all(fd, g, k < GREETING_LEN ? k : GREETING_LEN);
    } else if (strcmp(mode, "badversion") == 0) {
        g[10] = 0x01;
        g[11] = 0x63;
        send_all(fd, g, 12);
        send_garbage(fd, 300);
    } else if (strcmp(mode, "badmech") == 0) {
        greeting(g, "BOGUS");
        send_all(fd, g, sizeof(g));
        send_garbage(fd, 100);
    } else if (strcmp(mode, "badcmd") == 0) {
        static const uint8_t cmd[] = {0x04, 8, 5, 'H', 'E', 'L', 'L', 'O', 0xff, 0xfe};

        send_all(fd, g, sizeof(g));
        send_all(fd, cmd, sizeof(cmd));
    } else if (strcmp(mode, "reset") == 0 && argc == 5) {
        struct linger lg = {.l_onoff = 1, .l_linger = 0};
        size_t k = strtoul(argv[4], NULL, 10);

        send_all(fd, g, k < GREETING_LEN ? k : GREETING_LEN);
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    } else if (strcmp(mode, "stall") == 0 && argc == 5) {
        static const char half[] = "GET /metrics HTTP/1.1\r\nHost: localhost\r\nUser-Agent: st";

        send_all(fd, half, sizeof(half) - 1);
        printf("sent\n");
        fflush(stdout);
        rc = wait_closed(fd, 1000 * atoi(argv[4])) ? 0 : 3;
    } else if (strcmp(mode, "hugeframe") == 0 && argc == 6) {
        rc = hugeframe(fd, argv[4], strtoull(argv[5], NULL, 10));
    } else {
        close(fd);
        usage();
    }
    close(fd);
    return rc;
}
