/*
 * zap.c - the ZAP handler; see zap.h.
 *
 * Design.  One thread owns a REP socket bound at inproc://zeromq.zap.01 and
 * the allow-list (struct curve_allow): nothing else touches either, so
 * neither needs a lock.  It zmq_polls the socket and a stop eventfd with a
 * 100 ms timeout, checking in with the watchdog each time round, and
 * compares an atomic reload generation, which zap_reload() bumps on SIGHUP,
 * with the one it last loaded: the directory is read on this thread, never
 * on the main loop.  libzmq's sessions send one request per CURVE
 * handshake and wait for the answer, so a REP socket (one request at a time)
 * is enough: handshakes queue in front of it.
 *
 * Request frames (RFC 27): version "1.0", request id, domain, address,
 * routing id, mechanism, then the credentials (for CURVE: the client's
 * 32-byte public key).  Reply: version, request id, status code, status
 * text, user id (the key's file name), metadata (empty).  Anything that is
 * not a well-formed CURVE request for our domain is answered 400.
 */
#include "config.h"
#include "zap.h"

#include <errno.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include <zmq.h>

#include "curve.h"
#include "heartbeat.h"
#include "log.h"
#include "stats.h"
#include "util.h"
#include "worker.h"
#include "zmq_util.h"

#define ZAP_ENDPOINT     "inproc://zeromq.zap.01"
#define ZAP_POLL_MS      100  /* longest wait: watchdog check-in period */
#define ZAP_LOG_EVERY_MS 1000 /* at most one "refused" line this often */
#define ZAP_FRAMES_MAX   8    /* frames of a request kept; more are read and dropped */
#define ZAP_FRAME_MAX    256  /* bytes of a frame kept (addresses, ids, keys) */

/* One request's frames, as read. */
struct zap_request {
    char frames[ZAP_FRAMES_MAX][ZAP_FRAME_MAX + 1]; /* NUL-ended copies */
    size_t lens[ZAP_FRAMES_MAX];
    size_t n;        /* frames kept */
    bool is_cut;     /* a frame or the frame count was over the limits */
};

struct zap {
    void *zctx;
    const char *allow_dir;         /* borrowed from the config */
    void *sock;                    /* the REP socket: the thread's */
    struct curve_allow allow;      /* the thread's */
    int stop_fd;                   /* eventfd, readable once zap_stop began */
    _Atomic unsigned reload_gen;   /* bumped by zap_reload() */
    unsigned loaded_gen;           /* the thread's: the generation it loaded */
    struct heartbeat *hb;
    struct worker_barrier ready;
    pthread_t tid;
    bool is_started;
    uint64_t last_log_ms;          /* the thread's: last "refused" line */
    uint64_t unlogged;             /* the thread's: refusals since then, not logged */
};

/* read_request reads every frame of one request into *req.  Returns 0 or a negative errno. */
static int
read_request(void *sock, struct zap_request *req)
{
    int more;

    memset(req, 0, sizeof(*req));
    do {
        zmq_msg_t part;
        size_t len;

        zmq_msg_init(&part);
        if (zmq_msg_recv(&part, sock, 0) < 0) {
            int err = -zmq_errno();

            zmq_msg_close(&part);
            return err;
        }
        more = zmq_msg_more(&part);
        len = zmq_msg_size(&part);
        if (req->n < ZAP_FRAMES_MAX && len <= ZAP_FRAME_MAX) {
            memcpy(req->frames[req->n], zmq_msg_data(&part), len);
            req->frames[req->n][len] = '\0';
            req->lens[req->n++] = len;
        } else {
            req->is_cut = true;
        }
        zmq_msg_close(&part);
    } while (more);
    return 0;
}

/* send_reply answers req with status ("200", "400") and user id. */
static void
send_reply(void *sock, const struct zap_request *req, const char *status, const char *text,
           const char *user)
{
    const char *id = req->n > 1 ? req->frames[1] : "";
    size_t id_len = req->n > 1 ? req->lens[1] : 0;
    char ebuf[128];

    if (zmq_send(sock, "1.0", 3, ZMQ_SNDMORE) < 0 || zmq_send(sock, id, id_len, ZMQ_SNDMORE) < 0 ||
        zmq_send(sock, status, strlen(status), ZMQ_SNDMORE) < 0 ||
        zmq_send(sock, text, strlen(text), ZMQ_SNDMORE) < 0 ||
        zmq_send(sock, user, strlen(user), ZMQ_SNDMORE) < 0 || zmq_send(sock, "", 0, 0) < 0) {
        log_error("curve: ZAP reply: %s", zmq_util_strerror(zmq_errno(), ebuf, sizeof(ebuf)));
    }
}

/* log_refused counts a refusal and logs it unless one was logged within ZAP_LOG_EVERY_MS. */
static void
log_refused(struct zap *z, const struct zap_request *req, const char *why)
{
    uint64_t now = util_now_ms();
    char key[CURVE_Z85_LEN + 1] = "?";
    const char *peer = req->n > 3 && req->lens[3] > 0 ? req->frames[3] : "(local)";

    stats_curve_refused();
    if (z->last_log_ms != 0 && now - z->last_log_ms < ZAP_LOG_EVERY_MS) {
        z->unlogged++;
        return;
    }
    if (req->n > 6 && req->lens[6] == CURVE_KEY_LEN) {
        zmq_z85_encode(key, (const uint8_t *)req->frames[6], CURVE_KEY_LEN);
    }
    if (z->unlogged > 0) {
        log_warning("curve: refused a client from %s, key %s: %s (and %" PRIu64
                    " more refused since the last such line)",
                    peer, key, why, z->unlogged);
    } else {
        log_warning("curve: refused a client from %s, key %s: %s", peer, key, why);
    }
    z->last_log_ms = now;
    z->unlogged = 0;
}

/* Answers one request waiting on the socket. */
static void
handle_request(struct zap *z)
{
    struct zap_request req;
    const char *name, *why = NULL;
    char ebuf[128];
    int r;

    r = read_request(z->sock, &req);
    if (r < 0) {
        log_error("curve: ZAP request: %s", zmq_util_strerror(-r, ebuf, sizeof(ebuf)));
        return;
    }
    if (req.is_cut || req.n != 7 || strcmp(req.frames[0], "1.0") != 0) {
        why = "malformed ZAP request";
    } else if (strcmp(req.frames[2], CURVE_ZAP_DOMAIN) != 0) {
        why = "unknown ZAP domain";
    } else if (strcmp(req.frames[5], "CURVE") != 0 || req.lens[6] != CURVE_KEY_LEN) {
        why = "not a CURVE client";
    }
    name = why ? NULL : curve_allow_find(&z->allow, (const uint8_t *)req.frames[6]);
    if (name) {
        send_reply(z->sock, &req, "200", "OK", name);
        return;
    }
    log_refused(z, &req, why ? why : "not in curve_allow");
    send_reply(z->sock, &req, "400", "No access", "");
}

/* load reads allow_dir; on failure keeps the list in force.  Returns 0 or < 0 (logged). */
static int
load(struct zap *z, bool is_reload)
{
    struct curve_allow fresh;
    char why[CURVE_ERR_MAX];
    int r;

    r = curve_allow_load(z->allow_dir, &fresh, why, sizeof(why));
    if (r < 0) {
        log_error("curve: curve_allow: %s%s", why,
                  is_reload ? " (the keys read before stay allowed)" : "");
        return r;
    }
    curve_allow_free(&z->allow);
    z->allow = fresh;
    log_info("curve: curve_allow %s: %zu key%s allowed", z->allow_dir, z->allow.n,
             z->allow.n == 1 ? "" : "s");
    return 0;
}

/* Opens the REP socket and binds the ZAP endpoint; before the barrier. */
static int
open_socket(struct zap *z)
{
    char ebuf[128];
    int err;

    z->sock = zmq_socket(z->zctx, ZMQ_REP);
    if (!z->sock) {
        err = -zmq_errno();
        log_error("curve: ZAP socket: %s", zmq_util_strerror(-err, ebuf, sizeof(ebuf)));
        return err;
    }
    if ((err = zmq_util_set_int(z->sock, ZMQ_LINGER, 0)) < 0) {
        log_error("curve: ZAP socket: %s", zmq_util_strerror(-err, ebuf, sizeof(ebuf)));
        return err;
    }
    if (zmq_bind(z->sock, ZAP_ENDPOINT) < 0) {
        err = -zmq_errno();
        log_error("curve: bind %s: %s", ZAP_ENDPOINT, zmq_util_strerror(-err, ebuf, sizeof(ebuf)));
        return err;
    }
    return 0;
}

static void *
zap_main(void *arg)
{
    struct zap *z = arg;
    int err = open_socket(z);

    worker_barrier_arrive(&z->ready, err);
    while (err == 0) {
        zmq_pollitem_t items[2] = {
            { .socket = z->sock, .events = ZMQ_POLLIN },
            { .fd = z->stop_fd, .events = ZMQ_POLLIN },
        };
        unsigned gen = atomic_load(&z->reload_gen);
        int r;

        heartbeat_beat(z->hb);
        if (gen != z->loaded_gen) {
            z->loaded_gen = gen;
            (void)load(z, true);
        }
        r = zmq_poll(items, 2, ZAP_POLL_MS);
        if (r < 0 && zmq_errno() == EINTR) {
            continue;
        }
        if (r < 0) {
            char ebuf[128];

            log_error("curve: ZAP zmq_poll: %s",
                      zmq_util_strerror(zmq_errno(), ebuf, sizeof(ebuf)));
            break;
        }
        if (items[1].revents & ZMQ_POLLIN) {
            break;
        }
        if (items[0].revents & ZMQ_POLLIN) {
            handle_request(z);
        }
    }
    /* From here on libzmq refuses every CURVE client: the domain is enforced. */
    if (z->sock) {
        zmq_close(z->sock);
        z->sock = NULL;
    }
    return NULL;
}

int
zap_start(zap_t **out, void *zctx, const char *allow_dir)
{
    struct zap *z;
    char ebuf[128];
    int err;

    z = calloc(1, sizeof(*z));
    if (!z) {
        log_error("curve: out of memory");
        return -ENOMEM;
    }
    z->zctx = zctx;
    z->allow_dir = allow_dir;
    z->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (z->stop_fd < 0) {
        err = -errno;
        log_error("curve: eventfd: %s", util_strerror(-err, ebuf, sizeof(ebuf)));
        goto fail;
    }
    err = load(z, false);
    if (err < 0) {
        goto fail;
    }
    err = worker_barrier_init(&z->ready, 1);
    if (err < 0) {
        log_error("curve: %s", util_strerror(-err, ebuf, sizeof(ebuf)));
        goto fail;
    }
    z->hb = heartbeat_register("ZAP handler");
    err = worker_spawn(&z->tid, "zpipe-zap", zap_main, z);
    if (err < 0) {
        log_error("curve: start the ZAP thread: %s", util_strerror(-err, ebuf, sizeof(ebuf)));
        worker_barrier_cancel(&z->ready, 1, err);
    } else {
        z->is_started = true;
    }
    err = worker_barrier_wait(&z->ready);
    worker_barrier_fini(&z->ready);
    if (err < 0) {
        goto fail;
    }
    *out = z;
    return 0;
fail:
    zap_stop(z);
    return err;
}

void
zap_reload(zap_t *z)
{
    if (z) {
        atomic_fetch_add(&z->reload_gen, 1);
    }
}

void
zap_stop(zap_t *z)
{
    uint64_t one = 1;

    if (!z) {
        return;
    }
    if (z->is_started) {
        /* Level-triggered: nobody reads the eventfd. */
        if (write(z->stop_fd, &one, sizeof(one)) < 0) {
            char ebuf[128];

            log_error("curve: stop the ZAP thread: %s", util_strerror(errno, ebuf, sizeof(ebuf)));
        }
        pthread_join(z->tid, NULL);
    }
    heartbeat_unregister(z->hb);
    if (z->stop_fd >= 0) {
        close(z->stop_fd);
    }
    curve_allow_free(&z->allow);
    free(z);
}
