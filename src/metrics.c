/*
 * metrics.c - GET /metrics in the Prometheus text format; see metrics.h.
 *
 * Design.  We bind the listening socket ourselves (getaddrinfo, bind,
 * listen) so that the address is checked before anything else starts, and
 * hand it to libmicrohttpd (MHD_OPTION_LISTEN_SOCKET), which owns it from
 * then on and does all the HTTP: request parsing, keep-alive, timeouts,
 * error replies to garbage.  Every connection is non-blocking, so a client
 * that sends half a request or never reads its reply holds one connection
 * slot, and no other client waits for it.  METRICS_CONNECTION_LIMIT caps the
 * slots (and so memory), METRICS_PER_IP_LIMIT the slots of one address.
 *
 * Slow clients.  MHD's own timeout (METRICS_TIMEOUT_S) is an idle timeout:
 * any byte restarts it, so a client trickling a byte a second would keep
 * its slot for ever, and a few dozen of them would hold every slot.  So we
 * run MHD's event loop ourselves (MHD_USE_EPOLL without an internal thread,
 * MHD_run on a thread of ours) and give each request a deadline: a
 * connection must have sent its request and been answered within
 * METRICS_REQUEST_MS of connecting or of its previous reply.  MHD tells us
 * of each connection (MHD_OPTION_NOTIFY_CONNECTION) and its socket; after
 * each MHD_run, the sweep shuts down (shutdown(2)) the socket of every
 * connection past its deadline, and MHD closes it in its next run as for a
 * client that hung up.  Both run on our thread, so a socket we shut down is
 * always one MHD still holds (it tells us before it closes one).
 *
 * The thread is started with every signal blocked, as our workers are, so
 * signals keep going to the main thread's libuv loop.
 *
 * Answers: GET or HEAD /metrics -> 200 with the exposition text; another
 * path -> 404; another method on /metrics -> 405 with "Allow: GET, HEAD".
 * Errors, and a scrape that comes with a body, are answered as soon as the
 * headers are in, and the connection is closed (MHD does not read a body
 * nobody asked for); a plain scrape keeps its connection alive.
 * A query string is ignored (MHD strips it from the url), as Prometheus
 * servers do.
 */
#include "config.h"
#include "metrics.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <microhttpd.h>

#include "conf.h"
#include "log.h"
#include "util.h"
#include "worker.h"

#define METRICS_BACKLOG   16
#define METRICS_SWEEP_MS  250   /* the longest the serving thread sleeps between deadline checks */
#define METRICS_BUF_START 16384 /* the text is ~4 KiB today */
#define METRICS_BUF_MAX   (1024 * 1024)
#define CONTENT_TYPE      "text/plain; version=0.0.4; charset=utf-8"

/* A connection MHD holds, for its request deadline.  Serving thread only. */
struct metrics_conn {
    struct metrics_conn *prev, *next; /* in metrics.conns */
    int fd;
    uint64_t since_ms; /* when it connected, or its previous reply was queued */
    bool is_shut;      /* past its deadline: shut down, MHD closes it next */
};

struct metrics {
    char *listen;           /* as configured, for messages */
    int fd;                 /* the listening socket until MHD owns it, else -1 */
    struct MHD_Daemon *mhd; /* NULL until started */
    int epoll_fd;           /* MHD's, what the serving thread waits on */
    int stop_fd;            /* an eventfd: metrics_close wakes the thread with it */
    pthread_t tid;
    bool has_thread;
    struct metrics_conn *conns; /* serving thread only (or after it is joined) */
    metrics_collect_fn *collect;
    void *arg;
};

int
metrics_open(metrics_t **out, const char *listen_addr)
{
    struct addrinfo hints = {
        .ai_family = AF_UNSPEC,
        .ai_socktype = SOCK_STREAM,
        .ai_flags = AI_PASSIVE | AI_NUMERICSERV,
    };
    struct addrinfo *res = NULL, *ai;
    char host[CONF_HOST_MAX], port[8], ebuf[128];
    const char *what = "bind";
    uint16_t portnum;
    metrics_t *m;
    int err, gai, fd = -1;

    err = util_parse_hostport(listen_addr, host, sizeof(host), &portnum);
    if (err < 0) {
        /* conf.c checked the syntax: only a caller's mistake gets here. */
        log_error("metrics_listen %s: not HOST:PORT", listen_addr);
        return err;
    }
    snprintf(port, sizeof(port), "%u", portnum);
    gai = getaddrinfo(host, port, &hints, &res);
    if (gai != 0) {
        log_error("metrics_listen %s: getaddrinfo %s: %s", listen_addr, host,
                  gai == EAI_SYSTEM ? util_strerror(errno, ebuf, sizeof(ebuf)) : gai_strerror(gai));
        return -EADDRNOTAVAIL;
    }
    err = -EADDRNOTAVAIL;
    for (ai = res; ai != NULL; ai = ai->ai_next) {
        int one = 1;

        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
        if (fd < 0) {
            err = -errno;
            what = "socket";
            continue;
        }
        /* A restart must not wait for the old connections' TIME_WAIT. */
        (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, METRICS_BACKLOG) == 0) {
            break;
        }
        err = -errno;
        what = "bind";
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) {
        log_error("metrics_listen %s: %s: %s", listen_addr, what,
                  util_strerror(-err, ebuf, sizeof(ebuf)));
        return err;
    }
    m = calloc(1, sizeof(*m));
    if (m == NULL || (m->listen = strdup(listen_addr)) == NULL) {
        free(m);
        close(fd);
        log_error("metrics: %s", util_strerror(ENOMEM, ebuf, sizeof(ebuf)));
        return -ENOMEM;
    }
    m->fd = fd;
    m->stop_fd = -1;
    *out = m;
    return 0;
}

/* MHD's own complaints (garbage requests, timeouts) are the clients' business: debug. */
static void
on_mhd_log(void *arg, const char *fmt, va_list ap)
{
    char line[512];
    size_t n;

    (void)arg;
    if (!log_enabled(LOG_LEVEL_DEBUG)) {
        return;
    }
    vsnprintf(line, sizeof(line), fmt, ap);
    n = strlen(line);
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) {
        line[--n] = '\0';
    }
    log_debug("metrics: %s", line);
}

/* Queues a fixed text reply with status code; allow, if set, is the Allow header. */
static enum MHD_Result
reply_text(struct MHD_Connection *conn, unsigned code, const char *text, const char *allow)
{
    struct MHD_Response *r;
    enum MHD_Result ret;

    r = MHD_create_response_from_buffer(strlen(text), (void *)text, MHD_RESPMEM_PERSISTENT);
    if (r == NULL) {
        return MHD_NO;
    }
    (void)MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain; charset=utf-8");
    if (allow != NULL) {
        (void)MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, allow);
    }
    ret = MHD_queue_response(conn, code, r);
    MHD_destroy_response(r);
    return ret;
}

/* The exposition text of a fresh snapshot, in a malloc'd buffer. */
static char *
render(metrics_t *m, size_t *len)
{
    struct stats s;
    struct stats_context ctx;
    size_t cap = METRICS_BUF_START;

    memset(&s, 0, sizeof(s));
    memset(&ctx, 0, sizeof(ctx));
    m->collect(m->arg, &s, &ctx);
    for (;;) {
        char *buf = malloc(cap);
        int n;

        if (buf == NULL) {
            return NULL;
        }
        n = stats_format_prometheus(&s, &ctx, PACKAGE_VERSION, buf, cap);
        if (n >= 0) {
            *len = (size_t)n;
            return buf;
        }
        free(buf);
        if (cap >= METRICS_BUF_MAX) {
            return NULL;
        }
        cap *= 2;
    }
}

static enum MHD_Result
on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
           const char *version, const char *upload_data, size_t *upload_data_size, void **req_cls)
{
    static int seen; /* a marker: its address tells the later calls */
    metrics_t *m = cls;
    struct MHD_Response *r;
    enum MHD_Result ret;
    size_t len = 0;
    bool has_body;
    char *body;

    (void)version;
    (void)upload_data;
    (void)upload_data_size;
    /* Errors are answered on the first call, before any body is read, so a
     * client cannot hold a slot by trickling an endless body: MHD then
     * closes the connection after the reply. */
    if (strcmp(url, "/metrics") != 0) {
        return reply_text(conn, MHD_HTTP_NOT_FOUND, "Not found: try /metrics\n", NULL);
    }
    if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0) {
        return reply_text(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "Method not allowed\n", "GET, HEAD");
    }
    /* A scrape without a body is answered on the next call, once the
     * request is complete, which lets MHD keep the connection alive. */
    has_body =
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH) ||
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_TRANSFER_ENCODING);
    if (*req_cls == NULL && !has_body) {
        *req_cls = &seen;
        return MHD_YES;
    }
    body = render(m, &len);
    if (body == NULL) {
        return reply_text(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "Out of memory\n", NULL);
    }
    r = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
    if (r == NULL) {
        free(body);
        return MHD_NO;
    }
    (void)MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, CONTENT_TYPE);
    ret = MHD_queue_response(conn, MHD_HTTP_OK, r);
    MHD_destroy_response(r);
    if (ret == MHD_YES) {
        /* Answered: the next request on this connection has a deadline of its own. */
        const union MHD_ConnectionInfo *info =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);

        if (info != NULL && info->socket_context != NULL) {
            ((struct metrics_conn *)info->socket_context)->since_ms = util_now_ms();
        }
    }
    return ret;
}

/* MHD_OPTION_NOTIFY_CONNECTION: keeps m->conns in step with MHD's connections. */
static void
on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
              enum MHD_ConnectionNotificationCode code)
{
    metrics_t *m = cls;
    struct metrics_conn *mc = *socket_context;

    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *info =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);

        /* Without memory the connection has no deadline, only MHD's idle timeout. */
        if (info == NULL || (mc = calloc(1, sizeof(*mc))) == NULL) {
            return;
        }
        mc->fd = info->connect_fd;
        mc->since_ms = util_now_ms();
        mc->next = m->conns;
        if (m->conns != NULL) {
            m->conns->prev = mc;
        }
        m->conns = mc;
        *socket_context = mc;
    } else if (code == MHD_CONNECTION_NOTIFY_CLOSED && mc != NULL) {
        if (mc->prev != NULL) {
            mc->prev->next = mc->next;
        } else {
            m->conns = mc->next;
        }
        if (mc->next != NULL) {
            mc->next->prev = mc->prev;
        }
        free(mc);
        *socket_context = NULL;
    }
}

/* Shuts down the connections past their deadline; MHD closes them in its next run. */
static void
sweep(metrics_t *m)
{
    uint64_t now = util_now_ms();

    for (struct metrics_conn *mc = m->conns; mc != NULL; mc = mc->next) {
        if (!mc->is_shut && now - mc->since_ms >= METRICS_REQUEST_MS) {
            log_debug("metrics: closing a connection without a complete request for %" PRIu64 " ms",
                      now - mc->since_ms);
            (void)shutdown(mc->fd, SHUT_RDWR);
            mc->is_shut = true;
        }
    }
}

/* The serving thread: MHD's event loop, the deadlines, until metrics_close. */
static void *
serve(void *arg)
{
    metrics_t *m = arg;
    struct pollfd pfd[2] = {
        { .fd = m->epoll_fd, .events = POLLIN },
        { .fd = m->stop_fd, .events = POLLIN },
    };

    for (;;) {
        MHD_UNSIGNED_LONG_LONG mhd_ms;
        int timeout_ms = METRICS_SWEEP_MS;

        if (MHD_get_timeout(m->mhd, &mhd_ms) == MHD_YES && mhd_ms < (unsigned)timeout_ms) {
            timeout_ms = (int)mhd_ms;
        }
        if (poll(pfd, 2, timeout_ms) < 0 && errno != EINTR) {
            char ebuf[128];

            log_error("metrics: poll: %s: no longer serving",
                      util_strerror(errno, ebuf, sizeof(ebuf)));
            break;
        }
        if (pfd[1].revents != 0) {
            break;
        }
        (void)MHD_run(m->mhd);
        sweep(m);
    }
    return NULL;
}

int
metrics_start(metrics_t *m, metrics_collect_fn *collect, void *arg)
{
    const union MHD_DaemonInfo *info;
    char ebuf[128];
    int err;

    m->collect = collect;
    m->arg = arg;
    m->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (m->stop_fd < 0) {
        err = -errno;
        log_error("metrics: eventfd: %s", util_strerror(errno, ebuf, sizeof(ebuf)));
        return err;
    }
    /* MHD_USE_EPOLL without MHD_USE_INTERNAL_POLLING_THREAD: serve() runs its
     * loop.  The logger first: MHD writes what comes before it to stderr. */
    m->mhd = MHD_start_daemon(
        MHD_USE_EPOLL | MHD_USE_ERROR_LOG, 0, NULL, NULL, on_request, m,
        MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, (void *)NULL, MHD_OPTION_LISTEN_SOCKET,
        (MHD_socket)m->fd, MHD_OPTION_CONNECTION_LIMIT, (unsigned int)METRICS_CONNECTION_LIMIT,
        MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned int)METRICS_PER_IP_LIMIT,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)METRICS_TIMEOUT_S,
        MHD_OPTION_NOTIFY_CONNECTION, on_connection, (void *)m, MHD_OPTION_END);
    if (m->mhd == NULL) {
        /* Whether MHD closed the socket it was given is not documented:
         * leak it rather than risk closing a descriptor reused by now. */
        m->fd = -1;
        log_error("metrics_listen %s: could not start the HTTP server (libmicrohttpd)", m->listen);
        return -EIO;
    }
    m->fd = -1; /* MHD's now: MHD_stop_daemon closes it */
    info = MHD_get_daemon_info(m->mhd, MHD_DAEMON_INFO_EPOLL_FD);
    if (info == NULL) {
        log_error("metrics_listen %s: libmicrohttpd has no epoll descriptor", m->listen);
        return -EIO;
    }
    m->epoll_fd = info->epoll_fd;
    err = worker_spawn(&m->tid, "zpiped-metrics", serve, m);
    if (err < 0) {
        log_error("metrics: start the thread: %s", util_strerror(-err, ebuf, sizeof(ebuf)));
        return err;
    }
    m->has_thread = true;
    log_info("metrics: serving GET /metrics on %s", m->listen);
    return 0;
}

void
metrics_close(metrics_t *m)
{
    if (m == NULL) {
        return;
    }
    if (m->has_thread) {
        uint64_t one = 1;

        /* An eventfd write of 1 cannot fail short of an overflow. */
        (void)!write(m->stop_fd, &one, sizeof(one));
        pthread_join(m->tid, NULL);
    }
    /* With the thread gone, MHD's loop and m->conns are this thread's. */
    if (m->mhd != NULL) {
        MHD_stop_daemon(m->mhd);
    }
    if (m->stop_fd >= 0) {
        close(m->stop_fd);
    }
    if (m->fd >= 0) {
        close(m->fd);
    }
    free(m->listen);
    free(m);
}
