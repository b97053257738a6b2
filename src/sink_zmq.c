/*
 * sink_zmq.c - what the push and dealer forwarding sinks share; see
 * sink_zmq.h.
 */
#include "config.h"
#include "sink_zmq.h"

#include <errno.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <zmq.h>

#include "curve.h"
#include "log.h"
#include "reply.h"
#include "stats.h"
#include "util.h"
#include "zmq_util.h"

#define HANDSHAKE_LOG_MS 10000 /* a failed handshake is logged this often at most */
/* What a monitor reports: whether the peer is up, and why not. */
#define MONITOR_EVENTS                                                                             \
    (ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_DISCONNECTED | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH |    \
     ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL | ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL)

/*
 * Sets sock's linger, send high-water mark and ZMQ_IMMEDIATE, and the
 * largest frame it takes from the downstream (reply.h).
 */
static int
setup(void *sock, int linger_ms, uint64_t sndhwm, bool is_immediate)
{
    char ebuf[128];
    int err;

    if ((err = zmq_util_set_int64(sock, ZMQ_MAXMSGSIZE, REPLY_PEER_FRAME_MAX)) < 0 ||
        (err = zmq_util_set_int(sock, ZMQ_LINGER, linger_ms)) < 0 ||
        (err = zmq_util_set_int(sock, ZMQ_IMMEDIATE, is_immediate)) < 0 ||
        (err = zmq_util_set_int(sock, ZMQ_SNDHWM, (int)sndhwm)) < 0) {
        log_error("sink zmq: zmq_setsockopt: %s", zmq_util_strerror(-err, ebuf, sizeof(ebuf)));
        return err;
    }
    return 0;
}

/* Makes sock a CURVE client when zmq.curve_server_key is set. */
static int
set_curve(void *sock, const struct conf *cfg)
{
    char why[CURVE_ERR_MAX];
    int err;

    if (cfg->zmq_curve_server_key[0] == '\0') {
        return 0;
    }
    err = curve_client_setup(sock, cfg->zmq_curve_server_key, cfg->zmq_curve_secret_key, why,
                             sizeof(why));
    if (err < 0) {
        log_error("sink zmq: CURVE: %s", why);
    }
    return err;
}

static int
connect_to(void *sock, const char *endpoint)
{
    char ebuf[128];
    int err;

    if (zmq_connect(sock, endpoint) < 0) {
        err = -zmq_errno();
        log_error("sink zmq: connect %s: %s", endpoint,
                  zmq_util_strerror(-err, ebuf, sizeof(ebuf)));
        return err;
    }
    return 0;
}

/* Makes *mon an inproc PAIR on zctx that reads sock's monitor events. */
static int
monitor_open(void *zctx, void *sock, void **mon)
{
    static _Atomic unsigned seq;
    char addr[64], ebuf[128];
    int err;

    snprintf(addr, sizeof(addr), "inproc://zpipe-sink-zmq-mon-%u", atomic_fetch_add(&seq, 1));
    *mon = zmq_socket(zctx, ZMQ_PAIR);
    if (!*mon) {
        err = -zmq_errno();
        log_error("sink zmq: zmq_socket: %s", zmq_util_strerror(-err, ebuf, sizeof(ebuf)));
        return err;
    }
    if ((err = zmq_util_set_int(*mon, ZMQ_LINGER, 0)) < 0) {
        log_error("sink zmq: zmq_setsockopt: %s", zmq_util_strerror(-err, ebuf, sizeof(ebuf)));
        goto fail;
    }
    if (zmq_socket_monitor(sock, addr, MONITOR_EVENTS) < 0) {
        err = -zmq_errno();
        log_error("sink zmq: monitor %s: %s", addr, zmq_util_strerror(-err, ebuf, sizeof(ebuf)));
        goto fail;
    }
    if (zmq_connect(*mon, addr) < 0) {
        err = -zmq_errno();
        log_error("sink zmq: monitor %s: %s", addr, zmq_util_strerror(-err, ebuf, sizeof(ebuf)));
        (void)zmq_socket_monitor(sock, NULL, 0); /* as sink_zmq_link_close() says */
        goto fail;
    }
    return 0;
fail:
    zmq_close(*mon);
    *mon = NULL;
    return err;
}

/* Counts and logs (see sink_zmq_link_read) a failed handshake of l. */
static void
handshake_failed(struct sink_zmq_link *l, uint16_t event, uint32_t value)
{
    const char *endpoint = l->endpoint;
    uint64_t now = util_now_ms();
    char why[128];

    stats_sink_error(STATS_SINK_ERROR_OPEN);
    if (l->failed_log_ms != 0 && now - l->failed_log_ms < HANDSHAKE_LOG_MS) {
        return;
    }
    l->failed_log_ms = now;
    if (event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH) {
        log_warning("sink zmq: %s: the downstream refused our key (ZAP status %" PRIu32 "): "
                    "is zmq.curve_secret_key's public key in its curve_allow?",
                    endpoint, value);
        return;
    }
    if (event == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL) {
        snprintf(why, sizeof(why), "protocol error %#" PRIx32, value);
    } else {
        util_strerror((int)value, why, sizeof(why)); /* no detail: an errno */
    }
    if (!l->has_curve) {
        log_warning("sink zmq: %s: handshake failed (%s)", endpoint, why);
        return;
    }
    log_warning("sink zmq: %s: handshake failed (%s): is our key in the downstream's "
                "curve_allow, zmq.curve_server_key its key, and CURVE on at both ends?",
                endpoint, why);
}

bool
sink_zmq_link_read(struct sink_zmq_link *l)
{
    bool is_down = false;

    while (l->mon) {
        zmq_msg_t ev;
        uint16_t event = 0;
        uint32_t value = 0;
        bool is_event;
        int more;

        /* [event (2 bytes) value (4 bytes)] [endpoint, l's own]; libzmq
         * writes both frames at once, so the second is there when the
         * first is. */
        zmq_msg_init(&ev);
        if (zmq_msg_recv(&ev, l->mon, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&ev);
            return is_down;
        }
        is_event = zmq_msg_size(&ev) >= 6;
        if (is_event) {
            memcpy(&event, zmq_msg_data(&ev), sizeof(event));
            memcpy(&value, (char *)zmq_msg_data(&ev) + sizeof(event), sizeof(value));
        }
        more = zmq_msg_more(&ev);
        while (more) {
            if (zmq_msg_recv(&ev, l->mon, ZMQ_DONTWAIT) < 0) {
                zmq_msg_close(&ev);
                return is_down;
            }
            more = zmq_msg_more(&ev);
        }
        zmq_msg_close(&ev);
        if (!is_event) {
            continue;
        }
        is_down = is_down || event == ZMQ_EVENT_DISCONNECTED;
        l->is_up = event == ZMQ_EVENT_HANDSHAKE_SUCCEEDED;
        if (event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH ||
            event == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL) {
            l->refused_ms = util_now_ms(); /* libzmq will not reconnect */
        }
        if (!l->is_up && event != ZMQ_EVENT_DISCONNECTED) {
            handshake_failed(l, event, value);
        }
    }
    return is_down;
}

uint64_t
sink_zmq_link_remake_ms(const struct sink_zmq_link *l)
{
    if (!l->sock) {
        return l->failed_ms + SINK_ZMQ_REMAKE_MS;
    }
    return l->refused_ms != 0 ? l->refused_ms + SINK_ZMQ_REMAKE_MS : UINT64_MAX;
}

void
sink_zmq_link_close(struct sink_zmq_link *l)
{
    if (l->sock) {
        if (l->mon) {
            (void)zmq_socket_monitor(l->sock, NULL, 0);
        }
        zmq_close(l->sock);
    }
    if (l->mon) {
        zmq_close(l->mon);
    }
    l->sock = NULL;
    l->mon = NULL;
}

int
sink_zmq_link_open(struct sink_zmq_link *l, void *zctx, const struct conf *cfg, int type,
                   int linger_ms, bool is_immediate)
{
    char ebuf[128];
    int err;

    l->is_up = false;
    l->has_curve = cfg->zmq_curve_server_key[0] != '\0';
    l->refused_ms = 0;
    l->sock = zmq_socket(zctx, type);
    if (!l->sock) {
        err = -zmq_errno();
        log_error("sink zmq: zmq_socket: %s", zmq_util_strerror(-err, ebuf, sizeof(ebuf)));
        goto fail;
    }
    if ((err = setup(l->sock, linger_ms, cfg->zmq_sndhwm, is_immediate)) < 0 ||
        (err = set_curve(l->sock, cfg)) < 0 ||
        (err = monitor_open(zctx, l->sock, &l->mon)) < 0 ||
        (err = connect_to(l->sock, l->endpoint)) < 0) {
        goto fail;
    }
    return 0;
fail:
    sink_zmq_link_close(l);
    l->failed_ms = util_now_ms();
    return err;
}

/* Sends frame k of m (after the delimiter if has_delim), retrying an interrupted call. */
static int
send_frame(void *sock, const struct msg *m, bool has_delim, size_t k, size_t total)
{
    size_t i = k - (has_delim ? 1 : 0);
    int flags = ZMQ_DONTWAIT | (k + 1 < total ? ZMQ_SNDMORE : 0);
    struct msg_frame f = has_delim && k == 0 ? (struct msg_frame){ (const unsigned char *)"", 0 }
                                             : msg_frame(m, i);
    int rc;

    do {
        rc = zmq_send(sock, f.data, f.len, flags);
    } while (rc < 0 && zmq_errno() == EINTR);
    return rc < 0 ? -zmq_errno() : 0;
}

int
sink_zmq_send(void *sock, const struct msg *m, bool has_delim)
{
    size_t total = (size_t)m->nframes + (has_delim ? 1 : 0);

    for (size_t k = 0; k < total; k++) {
        int err = send_frame(sock, m, has_delim, k, total);

        if (err == 0) {
            continue;
        }
        /* A later frame fails only when the peer's pipe went away under
         * the message: libzmq then drops the rest of it, and would drop as
         * much of the next message as it takes to see a last frame.  Its
         * rest goes now, to be dropped, and the whole message is offered
         * again (-EAGAIN), never counted as taken. */
        for (size_t j = k + 1; k > 0 && j < total; j++) {
            (void)send_frame(sock, m, has_delim, j, total);
        }
        return err;
    }
    return 0;
}

void
sink_zmq_abort(void *state)
{
    (void)state;
}

int
sink_zmq_reopen(void *state)
{
    (void)state;
    return 0;
}
