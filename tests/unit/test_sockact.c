/*
 * test_sockact.c - socket activation: matching passed listening sockets to
 * input endpoints (real sockets, bound here), and sockact_take() with the
 * LISTEN_PID/LISTEN_FDS protocol on fd 3.
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "log.h"
#include "sockact.h"

#include "tap.h"

/* A listening (or, with is_listening false, only bound) socket on addr. */
static int
bound(int family, int type, const void *addr, socklen_t len, bool is_listening)
{
    int fd = socket(family, type | SOCK_CLOEXEC, 0);
    int one = 1;

    if (fd < 0) {
        bail_out("socket: %s", strerror(errno));
    }
    if (family == AF_INET6) {
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    }
    if (bind(fd, addr, len) < 0 || (is_listening && listen(fd, 8) < 0)) {
        int e = errno;

        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

static int
tcp4(const char *ip, unsigned *port, bool is_listening, int type)
{
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)*port) };
    socklen_t len = sizeof(sa);
    int fd;

    inet_pton(AF_INET, ip, &sa.sin_addr);
    fd = bound(AF_INET, type, &sa, sizeof(sa), is_listening);
    if (fd >= 0 && *port == 0) {
        getsockname(fd, (struct sockaddr *)&sa, &len);
        *port = ntohs(sa.sin_port);
    }
    return fd;
}

static int
tcp6(const char *ip, unsigned port)
{
    struct sockaddr_in6 sa = { .sin6_family = AF_INET6, .sin6_port = htons((uint16_t)port) };

    inet_pton(AF_INET6, ip, &sa.sin6_addr);
    return bound(AF_INET6, SOCK_STREAM, &sa, sizeof(sa), true);
}

/* A unix socket at path, or in the abstract namespace for "@name". */
static int
unix_listen(const char *path)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    size_t n = strlen(path);

    memcpy(sa.sun_path, path, n);
    if (path[0] == '@') {
        sa.sun_path[0] = '\0';
    }
    return bound(AF_UNIX, SOCK_STREAM, &sa, (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n),
                 true);
}

/* match runs sockact_match over the n fds and the endpoints eps. */
static int
match(char **eps, size_t neps, const int *fds, size_t n, int *out, char *err)
{
    struct conf_list list = { .items = eps, .n = neps };

    err[0] = '\0';
    return sockact_match(&list, fds, n, out, err, SOCKACT_ERR_MAX);
}

int
main(void)
{
    char err[SOCKACT_ERR_MAX], ep1[128], ep2[128], ep3[128], dir[] = "/tmp/zpt-sockact.XXXXXX";
    char path[256], abstract[64], ipc[300], ipc_other[300];
    unsigned port = 0, port6 = 0;
    int out[3], fds[3], r;

    log_init();
    log_set_level(LOG_LEVEL_ERROR);
    if (!mkdtemp(dir)) {
        bail_out("mkdtemp: %s", strerror(errno));
    }

    /* tcp: numeric address and port. */
    fds[0] = tcp4("127.0.0.1", &port, true, SOCK_STREAM);
    if (fds[0] < 0) {
        bail_out("listen on 127.0.0.1: %s", strerror(errno));
    }
    snprintf(ep1, sizeof(ep1), "tcp://127.0.0.1:%u", port);
    snprintf(ep2, sizeof(ep2), "tcp://127.0.0.1:%u", port == 65535 ? 1 : port + 1);
    {
        char *eps[] = { "ipc:///nowhere", ep2, ep1 };

        r = match(eps, 3, fds, 1, out, err);
        ok(r == 0 && out[0] == -1 && out[1] == -1 && out[2] == fds[0],
           "127.0.0.1:%u is %s, not the same address on another port (r %d)", port, ep1, r);
    }
    {
        char *eps[] = { "tcp://*:0", ep2, "tcp://127.0.0.2:1" };

        r = match(eps, 3, fds, 1, out, err);
        snprintf(ep3, sizeof(ep3), "fd %d (127.0.0.1:%u) matches no input endpoint", fds[0], port);
        ok(r == -EADDRNOTAVAIL && strstr(err, ep3) && strstr(err, ep2),
           "no endpoint for it: -EADDRNOTAVAIL naming the fd, its address and the endpoints: %s",
           err);
    }
    {
        char *eps[] = { "tcp://*:1" };

        snprintf(ep3, sizeof(ep3), "tcp://*:%u", port);
        eps[0] = ep3;
        r = match(eps, 1, fds, 1, out, err);
        ok(r == -EADDRNOTAVAIL, "tcp://*:PORT does not take a socket on 127.0.0.1");
    }
    close(fds[0]);

    /* tcp://STAR:PORT: the any-address, IPv4 and IPv6; both at once is two for one. */
    port = 0;
    fds[0] = tcp4("0.0.0.0", &port, true, SOCK_STREAM);
    snprintf(ep1, sizeof(ep1), "tcp://*:%u", port);
    {
        char *eps[] = { ep1 };

        r = match(eps, 1, fds, 1, out, err);
        ok(r == 0 && out[0] == fds[0], "0.0.0.0:%u is %s", port, ep1);
        fds[1] = tcp6("::", port);
        if (fds[1] >= 0) {
            r = match(eps, 1, fds + 1, 1, out, err);
            ok(r == 0 && out[0] == fds[1], "[::]:%u is %s too", port, ep1);
            r = match(eps, 1, fds, 2, out, err);
            ok(r == -EADDRINUSE && strstr(err, "both listen on"),
               "two sockets for one endpoint: -EADDRINUSE: %s", err);
            close(fds[1]);
        } else {
            ok(1, "# SKIP no IPv6 here: %s", strerror(errno));
            ok(1, "# SKIP no IPv6 here");
        }
    }
    close(fds[0]);

    port6 = 0;
    fds[0] = tcp4("127.0.0.1", &port6, true, SOCK_STREAM); /* a free port number */
    close(fds[0]);
    fds[0] = tcp6("::1", port6);
    if (fds[0] >= 0) {
        char *eps[] = { ep2, ep1 };

        snprintf(ep1, sizeof(ep1), "tcp://[::1]:%u", port6);
        r = match(eps, 2, fds, 1, out, err);
        ok(r == 0 && out[1] == fds[0], "[::1]:%u is %s", port6, ep1);
        close(fds[0]);
    } else {
        ok(1, "# SKIP no IPv6 loopback here: %s", strerror(errno));
    }

    /* ipc: the path, and the abstract namespace. */
    snprintf(path, sizeof(path), "%s/in.sock", dir);
    snprintf(ipc, sizeof(ipc), "ipc://%s", path);
    snprintf(ipc_other, sizeof(ipc_other), "ipc://%s/other.sock", dir);
    snprintf(abstract, sizeof(abstract), "@zpipe-test-%ld", (long)getpid());
    fds[0] = unix_listen(path);
    fds[1] = unix_listen(abstract);
    if (fds[0] < 0 || fds[1] < 0) {
        bail_out("unix sockets: %s", strerror(errno));
    }
    snprintf(ep1, sizeof(ep1), "ipc://%s", abstract);
    {
        char *eps[] = { ipc_other, ep1, ipc };

        r = match(eps, 3, fds, 2, out, err);
        ok(r == 0 && out[0] == -1 && out[1] == fds[1] && out[2] == fds[0],
           "%s and %s each find their endpoint, %s none (r %d %s)", path, abstract, ipc_other, r,
           err);
    }
    {
        char *eps[] = { ipc_other };

        r = match(eps, 1, fds, 1, out, err);
        ok(r == -EADDRNOTAVAIL && strstr(err, path), "a path is matched exactly: %s", err);
        snprintf(ep2, sizeof(ep2), "ipc://%s", abstract + 1);
        eps[0] = ep2;
        r = match(eps, 1, fds + 1, 1, out, err);
        ok(r == -EADDRNOTAVAIL && strstr(err, abstract),
           "an abstract name is not the path of the same name: %s", err);
    }
    close(fds[0]);
    close(fds[1]);

    /* Not a listening stream socket. */
    port = 0;
    fds[0] = tcp4("127.0.0.1", &port, false, SOCK_STREAM);
    fds[1] = tcp4("127.0.0.1", &port, false, SOCK_DGRAM);
    snprintf(ep1, sizeof(ep1), "tcp://127.0.0.1:%u", port);
    {
        char *eps[] = { ep1 };

        r = match(eps, 1, fds, 1, out, err);
        ok(r == -EINVAL && strstr(err, "not a listening stream socket"),
           "a bound, not listening, stream socket is refused: %s", err);
        r = match(eps, 1, fds + 1, 1, out, err);
        ok(r == -EINVAL, "a datagram socket is refused");
    }
    close(fds[0]);
    close(fds[1]);

    /* sockact_take: LISTEN_PID/LISTEN_FDS, fd 3. */
    {
        struct conf cfg;
        char pid[32];
        int fd;

        port = 0;
        fd = tcp4("127.0.0.1", &port, true, SOCK_STREAM);
        snprintf(ep1, sizeof(ep1), "tcp://127.0.0.1:%u", port);
        char *eps[] = { ipc, ep1 };

        memset(&cfg, 0, sizeof(cfg));
        cfg.input_endpoints = (struct conf_list){ .items = eps, .n = 2 };
        if (dup2(fd, 3) != 3) {
            bail_out("dup2 to fd 3: %s", strerror(errno));
        }
        close(fd);
        fcntl(3, F_SETFD, 0);
        snprintf(pid, sizeof(pid), "%ld", (long)getpid());
        setenv("LISTEN_PID", pid, 1);
        setenv("LISTEN_FDS", "1", 1);
        r = sockact_take(&cfg);
        ok(r == 1, "sockact_take takes the one socket (r %d)", r);
        ok(!getenv("LISTEN_PID") && !getenv("LISTEN_FDS"),
           "LISTEN_PID and LISTEN_FDS are removed from the environment");
        ok(sockact_fd(ep1) == 3 && sockact_fd(ipc) == -1, "sockact_fd: fd 3 for %s, none for %s",
           ep1, ipc);
        ok((fcntl(3, F_GETFL) & O_NONBLOCK) && (fcntl(3, F_GETFD) & FD_CLOEXEC),
           "the socket is non-blocking and close-on-exec");
        sockact_fini();
        ok(sockact_fd(ep1) == -1, "sockact_fini forgets it");

        setenv("LISTEN_PID", "1", 1);
        setenv("LISTEN_FDS", "1", 1);
        r = sockact_take(&cfg);
        ok(r == 0 && !getenv("LISTEN_FDS") && sockact_fd(ep1) == -1,
           "sockets passed to another pid are not taken, the variables still removed (r %d)", r);
        close(3);
    }

    rmdir(dir);
    return done_testing();
}
