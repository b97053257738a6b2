/*
 * sink_zmq.c - what the push and dealer forwarding sinks share; see
 * sink_zmq.h.
 */
#include "config.h"
#include "sink_zmq.h"

#include <errno.h>
#include <zmq.h>

#include "curve.h"
#include "log.h"
#include "zmq_util.h"

int
sink_zmq_setup(void *sock, int linger_ms, uint64_t sndhwm, bool is_immediate)
{
    char ebuf[128];
    int err;

    if ((err = zmq_util_set_int(sock, ZMQ_LINGER, linger_ms)) < 0 ||
        (err = zmq_util_set_int(sock, ZMQ_IMMEDIATE, is_immediate)) < 0 ||
        (err = zmq_util_set_int(sock, ZMQ_SNDHWM, (int)sndhwm)) < 0) {
        log_error("sink zmq: zmq_setsockopt: %s", zmq_util_strerror(-err, ebuf, sizeof(ebuf)));
        return err;
    }
    return 0;
}

int
sink_zmq_set_curve(void *sock, const struct conf *cfg)
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

int
sink_zmq_connect(void *sock, const char *endpoint)
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

int
sink_zmq_send(void *sock, const struct msg *m, bool has_delim)
{
    if (has_delim && zmq_send(sock, "", 0, ZMQ_DONTWAIT | ZMQ_SNDMORE) < 0) {
        int err = zmq_errno();

        return err == EINTR ? -EAGAIN : -err;
    }
    for (size_t i = 0; i < m->nframes; i++) {
        int flags = ZMQ_DONTWAIT | (i + 1 < m->nframes ? ZMQ_SNDMORE : 0);

        if (zmq_send(sock, m->frames[i].data, m->frames[i].len, flags) < 0) {
            int err = zmq_errno();

            /* Only the first frame can be refused for lack of room. */
            return err == EINTR ? -EAGAIN : -err;
        }
    }
    return 0;
}

int
sink_zmq_poll(void *state, int timeout_ms)
{
    (void)state;
    (void)timeout_ms;
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
