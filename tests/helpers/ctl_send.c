/*
 * ctl_send - send raw bytes to a unix stream socket and print what comes back.
 *
 *   ctl_send SOCKET [FILE]
 *
 * Connects to SOCKET, writes FILE (default: standard input) while reading
 * the replies (so neither side can stall the other), then shuts down its
 * sending side and reads until the peer closes.  Everything received goes
 * to stdout, byte for byte.  A peer that closes early (EPIPE, ECONNRESET
 * while sending) is not an error: the rest of the input is dropped and the
 * replies so far are printed.  Exit 0; 1 if connecting fails or nothing
 * moves for 30 s; 2 on usage errors.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define IDLE_MS 30000

int
main(int argc, char **argv)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    char inbuf[4096], outbuf[4096];
    size_t in_len = 0, in_pos = 0;
    int in_fd = 0, fd;
    int is_in_eof = 0, is_sending = 1;

    if (argc < 2 || argc > 3 || strlen(argv[1]) >= sizeof(sa.sun_path)) {
        fprintf(stderr, "usage: ctl_send SOCKET [FILE]\n");
        return 2;
    }
    if (argc == 3 && (in_fd = open(argv[2], O_RDONLY | O_CLOEXEC)) < 0) {
        fprintf(stderr, "ctl_send: open %s: %s\n", argv[2], strerror(errno));
        return 2;
    }
    memcpy(sa.sun_path, argv[1], strlen(argv[1]) + 1);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        fprintf(stderr, "ctl_send: connect %s: %s\n", argv[1], strerror(errno));
        return 1;
    }
    for (;;) {
        struct pollfd pfd = { .fd = fd, .events = POLLIN };
        int r;

        if (is_sending && in_pos == in_len && !is_in_eof) {
            ssize_t n = read(in_fd, inbuf, sizeof(inbuf));

            if (n <= 0) {
                is_in_eof = 1;
            } else {
                in_len = (size_t)n;
                in_pos = 0;
            }
        }
        if (is_sending && in_pos == in_len && is_in_eof) {
            shutdown(fd, SHUT_WR);
            is_sending = 0;
        }
        if (is_sending) {
            pfd.events |= POLLOUT;
        }
        r = poll(&pfd, 1, IDLE_MS);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r <= 0) {
            fprintf(stderr, "ctl_send: nothing moved for %d ms\n", IDLE_MS);
            return 1;
        }
        if (pfd.revents & (POLLIN | POLLHUP | POLLERR)) {
            ssize_t n = recv(fd, outbuf, sizeof(outbuf), 0);

            if (n == 0 || (n < 0 && errno == ECONNRESET)) {
                break;
            }
            if (n < 0 && errno != EINTR && errno != EAGAIN) {
                fprintf(stderr, "ctl_send: recv: %s\n", strerror(errno));
                return 1;
            }
            if (n > 0 && fwrite(outbuf, 1, (size_t)n, stdout) != (size_t)n) {
                return 1;
            }
        }
        if (is_sending && (pfd.revents & POLLOUT)) {
            ssize_t n = send(fd, inbuf + in_pos, in_len - in_pos, MSG_NOSIGNAL | MSG_DONTWAIT);

            if (n < 0 && (errno == EPIPE || errno == ECONNRESET)) {
                is_sending = 0; /* the peer closed: read what it said */
            } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
                fprintf(stderr, "ctl_send: send: %s\n", strerror(errno));
                return 1;
            } else if (n > 0) {
                in_pos += (size_t)n;
            }
        }
    }
    close(fd);
    return fflush(stdout) == 0 ? 0 : 1;
}
