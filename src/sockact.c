/*
 * sockact.c - socket activation; see sockact.h.
 *
 * The sockets are taken in main() before any thread exists, because taking
 * them edits the environment (unsetenv is not thread-safe) and so that a
 * socket matching no endpoint stops the start before anything is bound.
 * The table is written once there and only read afterwards, by producer
 * threads created later (pthread_create orders the two).
 *
 * libzmq 4.3 and ZMQ_USE_FD: zmq_bind() then neither binds nor listens
 * (for tcp:// it does not even resolve the address: no interface lookup);
 * it adopts the fd as its listener, accepts on it, and closes it with the
 * socket.  For ipc:// it does not unlink the
 * path (systemd owns the file).  Closing our copy leaves systemd's copy
 * listening, so connections made while zpiped restarts wait in the backlog
 * for the next zpiped.  The fd is made non-blocking here: systemd passes it
 * blocking (NonBlocking=no), and libzmq's listener expects accept() to
 * fail with EAGAIN, not to block its I/O thread, when a connection went
 * away between the readiness and the accept.  O_NONBLOCK is shared with
 * systemd's copy, which systemd only polls (Accept=no).
 */
#include "config.h"
#include "sockact.h"

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

#ifdef HAVE_LIBSYSTEMD
#include <systemd/sd-daemon.h>
#else
#define SD_LISTEN_FDS_START 3
#endif

#include "log.h"
#include "util.h"

#define ADDR_TEXT_MAX (sizeof(((struct sockaddr_un *)0)->sun_path) + 16)

static const struct conf_list *taken_list; /* the endpoints of the config */
static int *taken_fds;                     /* taken_fds[i] serves item i, or -1 */

#ifndef HAVE_LIBSYSTEMD
/* sd_listen_fds(1) for a build without libsystemd: the same protocol. */
static int
listen_fds(void)
{
    const char *pid_s = getenv("LISTEN_PID"), *n_s = getenv("LISTEN_FDS");
    uint64_t pid, n;
    int r = 0;

    if (!pid_s || !n_s || util_parse_uint(pid_s, &pid) < 0 || pid != (uint64_t)getpid()) {
        goto out;
    }
    if (util_parse_uint(n_s, &n) < 0 || n > 1024) {
        r = -EINVAL;
        goto out;
    }
    for (int fd = SD_LISTEN_FDS_START; fd < SD_LISTEN_FDS_START + (int)n; fd++) {
        int flags = fcntl(fd, F_GETFD);

        if (flags < 0 || fcntl(fd, F_SETFD, flags | FD_CLOEXEC) < 0) {
            r = -errno;
            goto out;
        }
    }
    r = (int)n;
out:
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_FDNAMES");
    return r;
}
#else
static int
listen_fds(void)
{
    /* 1: unset LISTEN_PID, LISTEN_FDS and LISTEN_FDNAMES, so nothing we
     * start takes the sockets for its own. */
    return sd_listen_fds(1);
}
#endif

/* addr_text writes sa as "ADDRESS:PORT", "[ADDRESS]:PORT", a path or "@NAME". */
static const char *
addr_text(const struct sockaddr_storage *ss, socklen_t len, char *buf, size_t cap)
{
    char host[INET6_ADDRSTRLEN];

    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)ss;

        inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
        snprintf(buf, cap, "%s:%u", host, (unsigned)ntohs(in->sin_port));
    } else if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;

        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
        snprintf(buf, cap, "[%s]:%u", host, (unsigned)ntohs(in6->sin6_port));
    } else if (ss->ss_family == AF_UNIX) {
        const struct sockaddr_un *un = (const struct sockaddr_un *)ss;
        size_t n = len > offsetof(struct sockaddr_un, sun_path)
                       ? len - offsetof(struct sockaddr_un, sun_path)
                       : 0;

        if (n > 0 && un->sun_path[0] == '\0') {
            snprintf(buf, cap, "@%.*s", (int)(n - 1), un->sun_path + 1);
        } else {
            snprintf(buf, cap, "%.*s", (int)strnlen(un->sun_path, n), un->sun_path);
        }
    } else {
        snprintf(buf, cap, "address family %d", ss->ss_family);
    }
    return buf;
}

/* tcp_matches: hostport ("ADDRESS:PORT", "[ADDRESS]:PORT", "*:PORT") is ss. */
static bool
tcp_matches(const char *hostport, const struct sockaddr_storage *ss)
{
    const char *colon = strrchr(hostport, ':');
    char host[INET6_ADDRSTRLEN];
    size_t hlen;
    uint64_t port;

    if (!colon || util_parse_uint(colon + 1, &port) < 0 || port == 0 || port > 65535) {
        return false; /* "*" or "0": an ephemeral port is never passed in */
    }
    hlen = (size_t)(colon - hostport);
    if (hlen >= 2 && hostport[0] == '[' && hostport[hlen - 1] == ']') {
        hostport++;
        hlen -= 2;
    }
    if (hlen == 0 || hlen >= sizeof(host)) {
        return false;
    }
    memcpy(host, hostport, hlen);
    host[hlen] = '\0';

    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)ss;
        struct in_addr a;

        if (ntohs(in->sin_port) != port) {
            return false;
        }
        if (strcmp(host, "*") == 0) {
            return in->sin_addr.s_addr == htonl(INADDR_ANY);
        }
        return inet_pton(AF_INET, host, &a) == 1 && a.s_addr == in->sin_addr.s_addr;
    }
    if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;
        struct in6_addr a;

        if (ntohs(in6->sin6_port) != port) {
            return false;
        }
        if (strcmp(host, "*") == 0) {
            /* systemd's ListenStream=PORT: [::], also serving IPv4. */
            return memcmp(&in6->sin6_addr, &in6addr_any, sizeof(a)) == 0;
        }
        return inet_pton(AF_INET6, host, &a) == 1 && memcmp(&a, &in6->sin6_addr, sizeof(a)) == 0;
    }
    return false;
}

/* ipc_matches: path ("PATH" or "@NAME") is the unix socket ss of length len. */
static bool
ipc_matches(const char *path, const struct sockaddr_storage *ss, socklen_t len)
{
    const struct sockaddr_un *un = (const struct sockaddr_un *)ss;
    size_t n;

    if (ss->ss_family != AF_UNIX || len <= offsetof(struct sockaddr_un, sun_path)) {
        return false;
    }
    n = len - offsetof(struct sockaddr_un, sun_path);
    if (un->sun_path[0] == '\0') {
        return path[0] == '@' && strlen(path + 1) == n - 1 &&
               memcmp(path + 1, un->sun_path + 1, n - 1) == 0;
    }
    return strnlen(un->sun_path, n) == strlen(path) &&
           memcmp(path, un->sun_path, strlen(path)) == 0;
}

static bool
endpoint_matches(const char *endpoint, const struct sockaddr_storage *ss, socklen_t len)
{
    if (strncmp(endpoint, "tcp://", 6) == 0) {
        return tcp_matches(endpoint + 6, ss);
    }
    if (strncmp(endpoint, "ipc://", 6) == 0) {
        return ipc_matches(endpoint + 6, ss, len);
    }
    return false;
}

/* is_listening_stream: fd is a socket of type SOCK_STREAM in listen(). */
static bool
is_listening_stream(int fd)
{
    int type = 0, accepting = 0;
    socklen_t len = sizeof(type);

    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0 || type != SOCK_STREAM) {
        return false;
    }
    len = sizeof(accepting);
    return getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &accepting, &len) == 0 && accepting;
}

int
sockact_match(const struct conf_list *list, const int *fds, size_t n, int *out, char *err,
              size_t errlen)
{
    char text[ADDR_TEXT_MAX], ebuf[128];

    for (size_t i = 0; i < list->n; i++) {
        out[i] = -1;
    }
    for (size_t k = 0; k < n; k++) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof(ss);
        size_t i;

        memset(&ss, 0, sizeof(ss));
        if (!is_listening_stream(fds[k])) {
            snprintf(err, errlen,
                     "socket activation: fd %d is not a listening stream socket "
                     "(the socket unit needs ListenStream=)",
                     fds[k]);
            return -EINVAL;
        }
        if (getsockname(fds[k], (struct sockaddr *)&ss, &len) < 0) {
            int e = errno;

            snprintf(err, errlen, "socket activation: getsockname on fd %d: %s", fds[k],
                     util_strerror(e, ebuf, sizeof(ebuf)));
            return -e;
        }
        for (i = 0; i < list->n; i++) {
            if (endpoint_matches(list->items[i], &ss, len)) {
                break;
            }
        }
        addr_text(&ss, len, text, sizeof(text));
        if (i == list->n) {
            int used = snprintf(err, errlen,
                                "socket activation: fd %d (%s) matches no input endpoint; "
                                "input.endpoints =",
                                fds[k], text);

            for (size_t j = 0; j < list->n && used >= 0 && (size_t)used < errlen; j++) {
                used += snprintf(err + used, errlen - (size_t)used, " %s", list->items[j]);
            }
            return -EADDRNOTAVAIL;
        }
        if (out[i] >= 0) {
            snprintf(err, errlen, "socket activation: fd %d and fd %d both listen on %s (%s)",
                     out[i], fds[k], text, list->items[i]);
            return -EADDRINUSE;
        }
        out[i] = fds[k];
    }
    return 0;
}

int
sockact_take(const struct conf *cfg)
{
    const struct conf_list *list = &cfg->input_endpoints;
    char err[SOCKACT_ERR_MAX], ebuf[128];
    int *fds = NULL, *out = NULL;
    int n = listen_fds();
    int r;

    if (n <= 0) {
        if (n < 0) {
            log_error("socket activation: sd_listen_fds: %s",
                      util_strerror(-n, ebuf, sizeof(ebuf)));
        }
        return n;
    }
    fds = calloc((size_t)n, sizeof(*fds));
    out = calloc(list->n ? list->n : 1, sizeof(*out));
    if (!fds || !out) {
        r = -ENOMEM;
        log_error("socket activation: out of memory");
        goto fail;
    }
    for (int k = 0; k < n; k++) {
        fds[k] = SD_LISTEN_FDS_START + k;
    }
    r = sockact_match(list, fds, (size_t)n, out, err, sizeof(err));
    if (r < 0) {
        log_error("%s", err);
        goto fail;
    }
    for (int k = 0; k < n; k++) {
        int flags = fcntl(fds[k], F_GETFL);

        if (flags < 0 || fcntl(fds[k], F_SETFL, flags | O_NONBLOCK) < 0) {
            r = -errno;
            log_error("socket activation: fcntl(O_NONBLOCK) on fd %d: %s", fds[k],
                      util_strerror(-r, ebuf, sizeof(ebuf)));
            goto fail;
        }
    }
    for (size_t i = 0; i < list->n; i++) {
        if (out[i] >= 0) {
            log_info("input: %s: socket fd %d from the service manager", list->items[i], out[i]);
        }
    }
    free(fds);
    taken_list = list;
    taken_fds = out;
    return n;
fail:
    free(fds);
    free(out);
    return r;
}

int
sockact_fd(const char *endpoint)
{
    for (size_t i = 0; taken_fds && i < taken_list->n; i++) {
        if (strcmp(taken_list->items[i], endpoint) == 0) {
            return taken_fds[i];
        }
    }
    return -1;
}

void
sockact_fini(void)
{
    free(taken_fds);
    taken_fds = NULL;
    taken_list = NULL;
}
