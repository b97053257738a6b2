/*
 * ctl.c - the control socket; see ctl.h.
 *
 * Design.  Everything runs on the main thread's loop: a listening uv_pipe_t
 * and one uv_pipe_t per client.  A client's bytes are read straight into its
 * fixed buffer of CTL_LINE_MAX + 1 bytes (a longest line and its newline),
 * so a connection never costs more than that plus the replies libuv has not
 * written yet; pump() answers complete lines while fewer than CTL_WRITE_MAX
 * reply bytes wait, and stops reading until the client reads its replies.
 * A full buffer without a newline is a line too long: the client gets the
 * error, and the connection is shut down once its replies are out.
 *
 * Lifetime: the ctl counts its open handles (the server and every client);
 * ctl_close() closes them all and the last close callback frees the ctl, as
 * libuv requires (memory of a handle is freed only after its close
 * callback).
 */
#include "config.h"
#include "ctl.h"

#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

#define CTL_WRITE_MAX   (64 * 1024) /* reply bytes queued per client before we stop reading */
#define CTL_STATS_MAX   8192        /* longest stats reply */
#define CTL_PROBE_MS    1000        /* how long a leftover socket has to answer ping */
#define CTL_BACKLOG     128
#define CTL_SOCKET_MODE 0660
#define CTL_DIR_MODE    0755

struct ctl_client {
    uv_pipe_t pipe; /* data = this client */
    struct ctl *ctl;
    struct ctl_client *prev, *next; /* in ctl->clients while open */
    uv_shutdown_t shutdown;
    size_t len;        /* bytes in buf */
    bool is_reading;   /* uv_read_start is in effect */
    bool is_eof;       /* the client shut its side down */
    bool is_finishing; /* shutdown requested: no more requests are read */
    char buf[CTL_LINE_MAX + 1];
};

/* One reply on its way; freed by its write callback. */
struct ctl_write {
    uv_write_t req;
    char data[];
};

struct ctl {
    uv_pipe_t server; /* data = this ctl */
    char *path;
    ctl_stats_fn *stats_fn;
    void *stats_arg;
    struct ctl_client *clients; /* open clients, a doubly linked list */
    unsigned nclients;
    unsigned refs;   /* handles not yet closed: the server and every connection */
    bool is_closing; /* ctl_close was called (or ctl_open failed) */
    bool is_bound;   /* the socket file is ours to remove */
};

static void pump(struct ctl_client *cl);

static void
ctl_unref(struct ctl *c)
{
    if (--c->refs == 0 && c->is_closing) {
        free(c->path);
        free(c);
    }
}

static void
on_client_closed(uv_handle_t *h)
{
    struct ctl_client *cl = h->data;
    struct ctl *c = cl->ctl;

    free(cl);
    ctl_unref(c);
}

static void
client_close(struct ctl_client *cl)
{
    struct ctl *c = cl->ctl;

    if (uv_is_closing((uv_handle_t *)&cl->pipe)) {
        return;
    }
    if (cl->prev) {
        cl->prev->next = cl->next;
    } else {
        c->clients = cl->next;
    }
    if (cl->next) {
        cl->next->prev = cl->prev;
    }
    c->nclients--;
    uv_close((uv_handle_t *)&cl->pipe, on_client_closed);
}

static void
on_shutdown(uv_shutdown_t *req, int status)
{
    (void)status;
    client_close(req->data);
}

/* Stops reading and closes the connection once the queued replies are written. */
static void
client_finish(struct ctl_client *cl)
{
    cl->is_finishing = true;
    if (cl->is_reading) {
        uv_read_stop((uv_stream_t *)&cl->pipe);
        cl->is_reading = false;
    }
    cl->shutdown.data = cl;
    if (uv_shutdown(&cl->shutdown, (uv_stream_t *)&cl->pipe, on_shutdown) < 0) {
        client_close(cl);
    }
}

static void
on_write(uv_write_t *req, int status)
{
    struct ctl_write *w = (struct ctl_write *)req;
    struct ctl_client *cl = req->handle->data;

    free(w);
    if (uv_is_closing((uv_handle_t *)&cl->pipe)) {
        return;
    }
    if (status < 0) {
        client_close(cl);
        return;
    }
    pump(cl);
}

/* Queues text and a newline.  Returns 0 or a negative errno (then close the client). */
static int
reply(struct ctl_client *cl, const char *text, size_t len)
{
    struct ctl_write *w = malloc(sizeof(*w) + len + 1);
    uv_buf_t buf;
    int err;

    if (!w) {
        return -ENOMEM;
    }
    memcpy(w->data, text, len);
    w->data[len] = '\n';
    buf = uv_buf_init(w->data, (unsigned)(len + 1));
    err = uv_write(&w->req, (uv_stream_t *)&cl->pipe, &buf, 1, on_write);
    if (err < 0) {
        free(w);
    }
    return err;
}

static bool
line_is(const char *line, size_t len, const char *word)
{
    return len == strlen(word) && memcmp(line, word, len) == 0;
}

/* Answers one request line (without its newline). Returns 0 or a negative errno. */
static int
handle_line(struct ctl_client *cl, const char *line, size_t len)
{
    static const char err_unknown[] = "ERR unknown command";

    if (len > 0 && line[len - 1] == '\r') {
        len--;
    }
    if (line_is(line, len, "ping")) {
        return reply(cl, "pong", 4);
    }
    if (line_is(line, len, "stats")) {
        char buf[CTL_STATS_MAX];
        int n = cl->ctl->stats_fn(cl->ctl->stats_arg, buf, sizeof(buf));

        if (n < 0) {
            static const char err_stats[] = "ERR stats unavailable";

            return reply(cl, err_stats, sizeof(err_stats) - 1);
        }
        return reply(cl, buf, (size_t)n);
    }
    return reply(cl, err_unknown, sizeof(err_unknown) - 1);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

/*
 * Answers the complete lines in cl->buf while the client keeps up with its
 * replies, then reads more if there is room, or finishes the connection.
 */
static void
pump(struct ctl_client *cl)
{
    uv_stream_t *s = (uv_stream_t *)&cl->pipe;

    while (!cl->is_finishing) {
        char *nl;

        if (uv_stream_get_write_queue_size(s) >= CTL_WRITE_MAX) {
            /* The client does not read its replies: stop reading its requests. */
            if (cl->is_reading) {
                uv_read_stop(s);
                cl->is_reading = false;
            }
            return;
        }
        nl = memchr(cl->buf, '\n', cl->len);
        if (nl) {
            size_t line_len = (size_t)(nl - cl->buf);

            if (handle_line(cl, cl->buf, line_len) < 0) {
                client_close(cl);
                return;
            }
            cl->len -= line_len + 1;
            memmove(cl->buf, nl + 1, cl->len);
            continue;
        }
        if (cl->len > CTL_LINE_MAX) {
            static const char err_long[] = "ERR line too long";

            if (reply(cl, err_long, sizeof(err_long) - 1) < 0) {
                client_close(cl);
            } else {
                client_finish(cl);
            }
            return;
        }
        if (cl->is_eof) {
            /* A last request without a newline is still a request. */
            if (cl->len > 0 && handle_line(cl, cl->buf, cl->len) < 0) {
                client_close(cl);
                return;
            }
            cl->len = 0;
            client_finish(cl);
            return;
        }
        break;
    }
    if (!cl->is_finishing && !cl->is_reading) {
        if (uv_read_start(s, on_alloc, on_read) < 0) {
            client_close(cl);
            return;
        }
        cl->is_reading = true;
    }
}

static void
on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct ctl_client *cl = h->data;

    (void)suggested;
    /* pump() stops reading before the buffer is full, so this is never 0. */
    *buf = uv_buf_init(cl->buf + cl->len, (unsigned)(sizeof(cl->buf) - cl->len));
}

static void
on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct ctl_client *cl = s->data;

    (void)buf;
    if (nread > 0) {
        cl->len += (size_t)nread;
        pump(cl);
    } else if (nread == UV_EOF) {
        cl->is_eof = true;
        uv_read_stop(s);
        cl->is_reading = false;
        pump(cl);
    } else if (nread < 0) {
        client_close(cl);
    }
}

static void
on_reject_closed(uv_handle_t *h)
{
    struct ctl *c = h->data;

    free(h);
    ctl_unref(c);
}

static void
on_connection(uv_stream_t *server, int status)
{
    struct ctl *c = server->data;
    struct ctl_client *cl;

    if (status < 0 || c->is_closing) {
        return;
    }
    if (c->nclients >= CTL_CLIENTS_MAX) {
        /* Accept and close at once, so the backlog does not fill with them. */
        uv_pipe_t *p = malloc(sizeof(*p));

        if (!p) {
            return;
        }
        uv_pipe_init(server->loop, p, 0);
        p->data = c;
        c->refs++;
        (void)uv_accept(server, (uv_stream_t *)p);
        uv_close((uv_handle_t *)p, on_reject_closed);
        return;
    }
    cl = calloc(1, sizeof(*cl));
    if (!cl) {
        return;
    }
    cl->ctl = c;
    uv_pipe_init(server->loop, &cl->pipe, 0);
    cl->pipe.data = cl;
    c->refs++;
    c->nclients++;
    cl->next = c->clients;
    if (c->clients) {
        c->clients->prev = cl;
    }
    c->clients = cl;
    if (uv_accept(server, (uv_stream_t *)&cl->pipe) < 0) {
        client_close(cl);
        return;
    }
    pump(cl);
}

/* Creates the missing parent directories of path. Returns 0 or a negative errno. */
static int
make_parents(const char *path)
{
    char *dir = strdup(path);
    int err = 0;

    if (!dir) {
        return -ENOMEM;
    }
    for (char *p = strchr(dir + 1, '/'); p; p = strchr(p + 1, '/')) {
        *p = '\0';
        if (mkdir(dir, CTL_DIR_MODE) < 0 && errno != EEXIST) {
            err = -errno;
            log_error("control socket: mkdir %s: %s", dir, strerror(errno));
            break;
        }
        *p = '/';
    }
    free(dir);
    return err;
}

/*
 * Asks whatever listens at path for "pong".  Returns 1 when it answered
 * within CTL_PROBE_MS, 0 when nothing (or something else) answered.
 * Blocks for at most CTL_PROBE_MS.
 */
static int
probe(const char *path)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    uint64_t deadline = util_now_ms() + CTL_PROBE_MS;
    char buf[64];
    size_t len = 0;
    int fd, rc = 0;

    if (strlen(path) >= sizeof(sa.sun_path)) {
        return 0;
    }
    memcpy(sa.sun_path, path, strlen(path) + 1);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        return 0;
    }
    /* A unix connect completes at once, or fails with EAGAIN while the
     * listener's backlog is full: try again until the deadline. */
    while (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        struct pollfd pfd = { .fd = fd, .events = POLLOUT };

        if (errno != EAGAIN && errno != EINTR && errno != EINPROGRESS) {
            goto out;
        }
        if (util_now_ms() >= deadline) {
            goto out;
        }
        (void)poll(&pfd, 1, 10);
    }
    if (send(fd, "ping\n", 5, MSG_NOSIGNAL) != 5) {
        goto out;
    }
    for (;;) {
        uint64_t now = util_now_ms();
        struct pollfd pfd = { .fd = fd, .events = POLLIN };
        ssize_t n;

        if (now >= deadline || poll(&pfd, 1, (int)(deadline - now)) <= 0) {
            break;
        }
        n = recv(fd, buf + len, sizeof(buf) - len, 0);
        if (n <= 0) {
            break;
        }
        len += (size_t)n;
        if (memchr(buf, '\n', len) || len == sizeof(buf)) {
            rc = len >= 5 && memcmp(buf, "pong\n", 5) == 0;
            break;
        }
    }
out:
    close(fd);
    return rc;
}

/* Makes path free for our socket, or says why not. Returns 0 or a negative errno. */
static int
clear_leftover(const char *path)
{
    struct stat st;

    if (lstat(path, &st) < 0) {
        if (errno == ENOENT) {
            return 0;
        }
        log_error("control socket: %s: %s", path, strerror(errno));
        return -errno;
    }
    if (!S_ISSOCK(st.st_mode)) {
        log_error("control socket: %s exists and is not a socket: not replacing it", path);
        return -EEXIST;
    }
    if (probe(path)) {
        log_error("control socket: %s: another zpiped is running (it answered ping)", path);
        return -EADDRINUSE;
    }
    log_info("control socket: replacing the leftover %s (nothing answered ping)", path);
    if (unlink(path) < 0 && errno != ENOENT) {
        log_error("control socket: unlink %s: %s", path, strerror(errno));
        return -errno;
    }
    return 0;
}

int
ctl_open(ctl_t **out, uv_loop_t *loop, const char *path, ctl_stats_fn *stats_fn, void *arg)
{
    struct ctl *c;
    mode_t old_mask;
    int err;

    c = calloc(1, sizeof(*c));
    if (!c) {
        return -ENOMEM;
    }
    c->path = strdup(path);
    if (!c->path) {
        free(c);
        return -ENOMEM;
    }
    c->stats_fn = stats_fn;
    c->stats_arg = arg;
    if ((err = make_parents(path)) < 0 || (err = clear_leftover(path)) < 0) {
        free(c->path);
        free(c);
        return err;
    }
    err = uv_pipe_init(loop, &c->server, 0);
    if (err < 0) {
        log_error("control socket: %s", uv_strerror(err));
        free(c->path);
        free(c);
        return err;
    }
    c->server.data = c;
    c->refs = 1;
    /* No thread runs yet, so the process-wide umask may change for a
     * moment: the socket never exists with a wider mode than 0660. */
    old_mask = umask(0777 & ~CTL_SOCKET_MODE);
    err = uv_pipe_bind(&c->server, path);
    umask(old_mask);
    if (err < 0) {
        log_error("control socket: bind %s: %s", path, uv_strerror(err));
        goto fail;
    }
    c->is_bound = true;
    if (chmod(path, CTL_SOCKET_MODE) < 0) {
        err = -errno;
        log_error("control socket: chmod %s: %s", path, strerror(errno));
        goto fail;
    }
    err = uv_listen((uv_stream_t *)&c->server, CTL_BACKLOG, on_connection);
    if (err < 0) {
        log_error("control socket: listen %s: %s", path, uv_strerror(err));
        goto fail;
    }
    log_info("control socket: listening on %s", path);
    *out = c;
    return 0;
fail:
    ctl_close(c);
    return err;
}

static void
on_server_closed(uv_handle_t *h)
{
    ctl_unref(h->data);
}

void
ctl_close(ctl_t *c)
{
    if (!c || c->is_closing) {
        return;
    }
    c->is_closing = true;
    if (c->is_bound) {
        (void)unlink(c->path);
    }
    while (c->clients) {
        client_close(c->clients);
    }
    uv_close((uv_handle_t *)&c->server, on_server_closed);
}
