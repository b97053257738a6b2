/*
 * ctl.c - the control socket; see ctl.h.
 *
 * One file over 700 lines: the listener, the clients' bounded buffers and
 * the socket file's life follow libuv's handle-lifetime rules together
 * (each close callback frees what another part allocated).
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
 * Bounded clients.  Each client has a time of its last progress (connected,
 * a line started or answered, a reply written).  A sweep timer closes a
 * client that has had nothing to do for CTL_IDLE_MS, or that has held an
 * unfinished line or unread replies for CTL_LINE_MS: a request is one short
 * line, so a client that takes longer is not a zpipe.
 *
 * At CTL_CLIENTS_MAX clients a new connection closes one to make room: the
 * one whose last answered request (or accept, if none) is the oldest, among
 * those accepted at least CTL_GRACE_MS ago.  Bytes of an unfinished line do
 * not count, so clients that send "pi" and wait look no fresher than one
 * whose request is not read yet.  The grace is wall time, not loop turns: a
 * turn takes microseconds under a reconnect flood, while a client can be
 * descheduled for far longer between connect() and write() on a loaded
 * machine; so a client that sends its request within the grace is answered
 * before it can be closed for a newer one, whatever other clients do.  If
 * no client is that old, the new connection waits in the backlog (libuv
 * holds one, the kernel the rest) until a client closes or the earliest
 * grace ends (the grace timer); nothing polls meanwhile.  At most
 * CTL_ACCEPTS_MAX connections are accepted per loop turn, the rest wait for
 * the next turn.  So the slots turn over at least once per grace, and
 * clients that reconnect as fast as they are closed delay a new client by
 * about one grace at most (a connection waiting in the backlog is accepted
 * before those that connect after it) and never lock it out; memory stays
 * CTL_CLIENTS_MAX clients.
 *
 * The socket file.  At start, connect() to an existing socket file tells
 * whether anything listens there: only ECONNREFUSED (nobody) makes it a
 * leftover to replace; a connection accepted, answered or not, is a live
 * daemon.  At close, the file is removed only if it is still the inode
 * bind() created: another daemon's socket at the same path is left alone.
 *
 * Lifetime: the ctl counts its open handles (the server and every client);
 * ctl_close() closes them all and the last close callback frees the ctl, as
 * libuv requires (memory of a handle is freed only after its close
 * callback).
 */
#include "config.h"
#include "ctl.h"

#include <errno.h>
#include <inttypes.h>
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
#define CTL_SWEEP_MS    1000        /* how often idle and slow clients are looked for */
#define CTL_ACCEPTS_MAX 16          /* connections accepted per loop turn */
/* A new client cannot be closed for a newer one for this long: see "Bounded clients". */
#define CTL_GRACE_MS    1000
#define CTL_BACKLOG     128
#define CTL_SOCKET_MODE 0660
#define CTL_DIR_MODE    0755

struct ctl_client {
    uv_pipe_t pipe; /* data = this client */
    struct ctl *ctl;
    struct ctl_client *prev, *next; /* in ctl->clients while open */
    uv_shutdown_t shutdown;
    uint64_t since_ms;    /* loop time of its last progress (see "Bounded clients") */
    uint64_t accepted_ms; /* loop time of its accept: its grace ends CTL_GRACE_MS later */
    uint64_t served_ms;   /* loop time of its last answered request, or accepted_ms */
    size_t len;           /* bytes in buf */
    bool is_reading;      /* uv_read_start is in effect */
    bool is_eof;          /* the client shut its side down */
    bool is_finishing;    /* shutdown requested: no more requests are read */
    char buf[CTL_LINE_MAX + 1];
};

/* One reply on its way; freed by its write callback. */
struct ctl_write {
    uv_write_t req;
    char data[];
};

struct ctl {
    uv_pipe_t server;       /* data = this ctl */
    uv_timer_t sweep;       /* closes idle and slow clients; data = this ctl */
    uv_prepare_t turn_prep; /* starts a loop turn's accept count, accepts a waiting one */
    uv_timer_t grace;       /* accepts a waiting connection when the first grace ends */
    char *path;
    ctl_stats_fn *stats_fn;
    void *stats_arg;
    struct ctl_client *clients; /* open clients, a doubly linked list */
    unsigned nclients;
    unsigned accepted_this_turn; /* connections accepted in this turn */
    bool has_waiting;            /* a connection waits: for a turn, a close or the grace timer */
    unsigned refs;               /* handles not yet closed: the server and every connection */
    bool is_closing;             /* ctl_close was called (or ctl_open failed) */
    bool is_bound;               /* bind() created the socket file: dev and ino name it */
    dev_t dev;
    ino_t ino;
};

static void pump(struct ctl_client *cl);
static void on_grace(uv_timer_t *t);

/* The client did something: its idle and line deadlines start over. */
static void
client_progress(struct ctl_client *cl)
{
    cl->since_ms = uv_now(cl->pipe.loop);
}

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
    client_progress(cl);
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
            client_progress(cl);
            cl->served_ms = cl->since_ms;
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
        if (cl->len == 0) {
            client_progress(cl); /* a new line starts: CTL_LINE_MS from now */
        }
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

/* How long cl may go on without progress: idle, or in the middle of a request. */
static uint64_t
client_limit_ms(struct ctl_client *cl)
{
    bool is_idle = cl->len == 0 && uv_stream_get_write_queue_size((uv_stream_t *)&cl->pipe) == 0;

    return is_idle ? CTL_IDLE_MS : CTL_LINE_MS;
}

static void
on_sweep(uv_timer_t *t)
{
    struct ctl *c = t->data;
    uint64_t now = uv_now(t->loop);
    struct ctl_client *cl, *next;

    for (cl = c->clients; cl; cl = next) {
        next = cl->next;
        if (now - cl->since_ms >= client_limit_ms(cl)) {
            log_debug("control socket: closing a client without progress for %" PRIu64 " ms",
                      now - cl->since_ms);
            client_close(cl);
        }
    }
}

/*
 * Closes the client accepted at least CTL_GRACE_MS ago whose last answered
 * request (or accept) is the oldest.  Returns false if there is none yet:
 * the grace timer is then set for the first grace to end.
 */
static bool
evict_oldest(struct ctl *c, uint64_t now)
{
    struct ctl_client *oldest = NULL;
    uint64_t first_accept = UINT64_MAX;

    for (struct ctl_client *cl = c->clients; cl; cl = cl->next) {
        if (now - cl->accepted_ms < CTL_GRACE_MS) {
            first_accept = cl->accepted_ms < first_accept ? cl->accepted_ms : first_accept;
        } else if (!oldest || cl->served_ms <= oldest->served_ms) {
            oldest = cl;
        }
    }
    if (!oldest) {
        uv_timer_start(&c->grace, on_grace, first_accept + CTL_GRACE_MS - now, 0);
        return false;
    }
    log_debug("control socket: %u clients: closing the one served longest ago for a new one",
              c->nclients);
    client_close(oldest);
    return true;
}

/*
 * Accepts the connection waiting on the server.  Returns 0, or -EAGAIN if
 * every slot is taken by a client in its grace, or -ENOMEM: then the
 * connection stays waiting.
 */
static int
accept_one(struct ctl *c)
{
    struct ctl_client *cl;
    uint64_t now;

    /* The loop's time is that of the turn's start: a grace must not start early. */
    uv_update_time(c->server.loop);
    now = uv_now(c->server.loop);
    if (c->nclients >= CTL_CLIENTS_MAX && !evict_oldest(c, now)) {
        return -EAGAIN;
    }
    cl = calloc(1, sizeof(*cl));
    if (!cl) {
        return -ENOMEM;
    }
    cl->ctl = c;
    uv_pipe_init(c->server.loop, &cl->pipe, 0);
    cl->pipe.data = cl;
    cl->accepted_ms = now;
    cl->served_ms = now;
    c->refs++;
    c->nclients++;
    c->accepted_this_turn++;
    cl->next = c->clients;
    if (c->clients) {
        c->clients->prev = cl;
    }
    c->clients = cl;
    if (uv_accept((uv_stream_t *)&c->server, (uv_stream_t *)&cl->pipe) < 0) {
        client_close(cl);
        return 0;
    }
    client_progress(cl);
    pump(cl);
    return 0;
}

/*
 * libuv accepts while connections wait, calling this for each.  Past
 * CTL_ACCEPTS_MAX in one loop turn, with every slot in its grace, or
 * without memory, the connection is left waiting: libuv then stops
 * watching the server until accept_waiting accepts it (in the next turn,
 * or when the grace timer fires).  So clients that reconnect as fast as
 * they are closed cannot keep the loop accepting, nor close a new client
 * before its grace ends.
 */
static void
on_connection(uv_stream_t *server, int status)
{
    struct ctl *c = server->data;

    if (status < 0 || c->is_closing) {
        return;
    }
    if (c->accepted_this_turn >= CTL_ACCEPTS_MAX || accept_one(c) < 0) {
        c->has_waiting = true;
    }
}

/* Accepts the connection left waiting, if any and if it can be now. */
static void
accept_waiting(struct ctl *c)
{
    if (c->has_waiting && !c->is_closing) {
        c->has_waiting = false;
        if (accept_one(c) < 0) {
            c->has_waiting = true;
        }
    }
}

/* Before each poll: a new loop turn (a client may have closed in the last one). */
static void
on_turn(uv_prepare_t *p)
{
    struct ctl *c = p->data;

    c->accepted_this_turn = 0;
    accept_waiting(c);
}

static void
on_grace(uv_timer_t *t)
{
    accept_waiting(t->data);
}

/* Creates the missing parent directories of path. Returns 0 or a negative errno. */
static int
make_parents(const char *path)
{
    char *dir = strdup(path);
    char *slash;
    int err = 0;

    if (!dir) {
        return -ENOMEM;
    }
    slash = strrchr(dir, '/');
    if (slash && slash > dir) {
        *slash = '\0';
        err = util_mkdir_p(dir, CTL_DIR_MODE); /* leaves dir at the one that failed */
        if (err < 0) {
            log_error("control socket: mkdir %s: %s", dir, strerror(-err));
        }
    }
    free(dir);
    return err;
}

/*
 * Tells whether something listens on the unix socket at path: returns 1 when
 * a connect() is accepted or waits in a full backlog, 0 when nothing
 * listens (ECONNREFUSED, or the file went away), or a negative errno when
 * it cannot tell.  Never blocks.  A daemon too busy to answer, or with all
 * its client slots taken, still has a listener: only its exit makes this 0.
 */
static int
is_listening(const char *path)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    int fd, rc;

    if (strlen(path) >= sizeof(sa.sun_path)) {
        return -ENAMETOOLONG;
    }
    memcpy(sa.sun_path, path, strlen(path) + 1);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        return -errno;
    }
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
        rc = 1;
    } else if (errno == EAGAIN || errno == EINPROGRESS) {
        rc = 1; /* a listener whose backlog is full */
    } else if (errno == ECONNREFUSED || errno == ENOENT) {
        rc = 0;
    } else {
        rc = -errno;
    }
    close(fd);
    return rc;
}

/* Makes path free for our socket, or says why not. Returns 0 or a negative errno. */
static int
clear_leftover(const char *path)
{
    struct stat st;
    int err;

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
    err = is_listening(path);
    if (err < 0) {
        log_error("control socket: connect %s: %s: not replacing it", path, strerror(-err));
        return err;
    }
    if (err > 0) {
        log_error("control socket: %s: another zpiped is running (it accepts connections on"
                  " this socket): not starting",
                  path);
        return -EADDRINUSE;
    }
    log_info("control socket: replacing the leftover %s (nothing listens on it)", path);
    if (unlink(path) < 0 && errno != ENOENT) {
        log_error("control socket: unlink %s: %s", path, strerror(errno));
        return -errno;
    }
    return 0;
}

/*
 * Creates c->path, a listening socket's file, and records which inode it
 * is.  Bound here rather than by uv_pipe_bind, which would have libuv
 * unlink the path when the handle closes, whoever's socket it names by
 * then.  Returns the socket, or a negative errno (logged).
 */
static int
bind_socket(struct ctl *c)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    struct stat st;
    mode_t old_mask;
    int fd, err;

    if (strlen(c->path) >= sizeof(sa.sun_path)) {
        log_error("control socket: %s: path too long for a unix socket", c->path);
        return -ENAMETOOLONG;
    }
    memcpy(sa.sun_path, c->path, strlen(c->path) + 1);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        err = -errno;
        log_error("control socket: socket: %s", strerror(errno));
        return err;
    }
    /* No thread runs yet, so the process-wide umask may change for a
     * moment: the socket never exists with a wider mode than 0660. */
    old_mask = umask(0777 & ~CTL_SOCKET_MODE);
    err = bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ? -errno : 0;
    umask(old_mask);
    if (err < 0) {
        log_error("control socket: bind %s: %s", c->path, strerror(-err));
        goto fail;
    }
    if (lstat(c->path, &st) < 0) {
        err = -errno;
        log_error("control socket: stat %s: %s", c->path, strerror(errno));
        goto fail;
    }
    c->is_bound = true;
    c->dev = st.st_dev;
    c->ino = st.st_ino;
    if (chmod(c->path, CTL_SOCKET_MODE) < 0) {
        err = -errno;
        log_error("control socket: chmod %s: %s", c->path, strerror(errno));
        goto fail;
    }
    return fd;
fail:
    close(fd);
    return err;
}

int
ctl_open(ctl_t **out, uv_loop_t *loop, const char *path, ctl_stats_fn *stats_fn, void *arg)
{
    struct ctl *c;
    int err, fd;

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
    (void)uv_timer_init(loop, &c->sweep); /* cannot fail */
    c->sweep.data = c;
    c->refs++;
    (void)uv_prepare_init(loop, &c->turn_prep); /* cannot fail */
    c->turn_prep.data = c;
    c->refs++;
    (void)uv_timer_init(loop, &c->grace); /* cannot fail */
    c->grace.data = c;
    c->refs++;
    fd = bind_socket(c);
    if (fd < 0) {
        err = fd;
        goto fail;
    }
    err = uv_pipe_open(&c->server, fd);
    if (err < 0) {
        log_error("control socket: %s: %s", path, uv_strerror(err));
        close(fd);
        goto fail;
    }
    err = uv_listen((uv_stream_t *)&c->server, CTL_BACKLOG, on_connection);
    if (err < 0) {
        log_error("control socket: listen %s: %s", path, uv_strerror(err));
        goto fail;
    }
    uv_timer_start(&c->sweep, on_sweep, CTL_SWEEP_MS, CTL_SWEEP_MS);
    uv_prepare_start(&c->turn_prep, on_turn);
    log_info("control socket: listening on %s", path);
    *out = c;
    return 0;
fail:
    ctl_close(c);
    return err;
}

static void
on_handle_closed(uv_handle_t *h)
{
    ctl_unref(h->data);
}

/* Removes the socket file if it is still the one bind() created. */
static void
remove_socket(struct ctl *c)
{
    struct stat st;

    if (lstat(c->path, &st) < 0) {
        if (errno != ENOENT) {
            log_error("control socket: stat %s: %s", c->path, strerror(errno));
        }
        return;
    }
    if (st.st_dev != c->dev || st.st_ino != c->ino) {
        log_warning("control socket: %s is no longer the socket this zpiped created:"
                    " leaving it",
                    c->path);
        return;
    }
    if (unlink(c->path) < 0 && errno != ENOENT) {
        log_error("control socket: unlink %s: %s", c->path, strerror(errno));
    }
}

void
ctl_close(ctl_t *c)
{
    if (!c || c->is_closing) {
        return;
    }
    c->is_closing = true;
    if (c->is_bound) {
        remove_socket(c);
    }
    while (c->clients) {
        client_close(c->clients);
    }
    uv_close((uv_handle_t *)&c->sweep, on_handle_closed);
    uv_close((uv_handle_t *)&c->turn_prep, on_handle_closed);
    uv_close((uv_handle_t *)&c->grace, on_handle_closed);
    uv_close((uv_handle_t *)&c->server, on_handle_closed);
}
