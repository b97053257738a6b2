/*
 * metrics.c - GET /metrics in the Prometheus text format; see metrics.h.
 *
 * Design.  We bind the listening socket ourselves (getaddrinfo, bind,
 * listen) so that the address is checked before anything else starts, and
 * hand it to libmicrohttpd (MHD_OPTION_LISTEN_SOCKET), which owns it from
 * then on and does all the HTTP: request parsing, keep-alive, timeouts,
 * error replies to garbage.  MHD runs one internal thread with epoll
 * (MHD_USE_EPOLL_INTERNAL_THREAD): every connection is non-blocking, so a
 * client that sends half a request or never reads its reply holds one
 * connection slot until METRICS_TIMEOUT_S passes, and no other client
 * waits for it.  METRICS_CONNECTION_LIMIT caps the slots (and so memory).
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
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <microhttpd.h>

#include "conf.h"
#include "log.h"
#include "util.h"

#define METRICS_BACKLOG   16
#define METRICS_BUF_START 16384 /* the text is ~4 KiB today */
#define METRICS_BUF_MAX   (1024 * 1024)
#define CONTENT_TYPE      "text/plain; version=0.0.4; charset=utf-8"

struct metrics {
    char *listen;           /* as configured, for messages */
    int fd;                 /* the listening socket until MHD owns it, else -1 */
    struct MHD_Daemon *mhd; /* NULL until started */
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
    return ret;
}

int
metrics_start(metrics_t *m, metrics_collect_fn *collect, void *arg)
{
    sigset_t all, old;

    m->collect = collect;
    m->arg = arg;
    /* MHD's thread inherits the mask in force when it is created. */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    m->mhd = MHD_start_daemon(MHD_USE_EPOLL_INTERNAL_THREAD | MHD_USE_ERROR_LOG, 0, NULL, NULL,
                              on_request, m, MHD_OPTION_LISTEN_SOCKET, (MHD_socket)m->fd,
                              MHD_OPTION_CONNECTION_LIMIT, (unsigned int)METRICS_CONNECTION_LIMIT,
                              MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)METRICS_TIMEOUT_S,
                              MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, (void *)NULL, MHD_OPTION_END);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (m->mhd == NULL) {
        /* Whether MHD closed the socket it was given is not documented:
         * leak it rather than risk closing a descriptor reused by now. */
        m->fd = -1;
        log_error("metrics_listen %s: could not start the HTTP server (libmicrohttpd)", m->listen);
        return -EIO;
    }
    m->fd = -1; /* MHD's now: MHD_stop_daemon closes it */
    log_info("metrics: serving GET /metrics on %s", m->listen);
    return 0;
}

void
metrics_close(metrics_t *m)
{
    if (m == NULL) {
        return;
    }
    if (m->mhd != NULL) {
        MHD_stop_daemon(m->mhd);
    }
    if (m->fd >= 0) {
        close(m->fd);
    }
    free(m->listen);
    free(m);
}
