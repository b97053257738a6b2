/*
 * ref_router - the reference for the router ack latency of scripts/bench:
 * the round trip libzmq alone gives on this machine.  It binds one ROUTER
 * socket and answers every message at once with zpiped's reply, its
 * envelope and "OK" (README, "Configuration"), from the thread that read it.
 * Nothing is queued, stored or checked.
 *
 *   ref_router ENDPOINT [READY_FILE]
 *
 * Once bound it creates READY_FILE (if given), so a script can start the
 * probe only when the socket is there.  It runs until SIGTERM or SIGINT.
 * With ZP_REF_CURVE_SECRET set it is a CURVE server (ref_curve.h).
 * Exit status 0, or 1 on an error.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include <zmq.h>

#include "ref_curve.h"

#define MAX_FRAMES 16 /* envelope frames kept for the reply; the rest is the body */
#define RECV_TIMEOUT_MS 100 /* longest wait before is_stopping is looked at again */

static volatile sig_atomic_t is_stopping;

static void
on_signal(int sig)
{
    (void)sig;
    is_stopping = 1;
}

/* Reads one message and answers it; 0, or -1 with errno (EINTR: a signal; EAGAIN:
 * nothing within RECV_TIMEOUT_MS). */
static int
answer_one(void *sock, zmq_msg_t *frames)
{
    size_t n = 0, env = 0;
    int more = 1;

    while (more) {
        zmq_msg_t *f = &frames[n < MAX_FRAMES ? n : MAX_FRAMES - 1];

        if (n >= MAX_FRAMES) {
            zmq_msg_close(f);
        }
        zmq_msg_init(f);
        if (zmq_msg_recv(f, sock, 0) < 0) {
            int e = errno;

            for (size_t i = 0; i <= n && i < MAX_FRAMES; i++) {
                zmq_msg_close(&frames[i]);
            }
            errno = e;
            return -1;
        }
        more = zmq_msg_more(f);
        /* The envelope: frames up to and including the empty delimiter. */
        if (env == 0 && zmq_msg_size(f) == 0 && n < MAX_FRAMES - 1) {
            env = n + 1;
        }
        n++;
    }
    for (size_t i = 0; i < env; i++) {
        zmq_msg_send(&frames[i], sock, ZMQ_SNDMORE);
    }
    zmq_send(sock, "OK", 2, 0);
    for (size_t i = env; i < n && i < MAX_FRAMES; i++) {
        zmq_msg_close(&frames[i]);
    }
    return 0;
}

int
main(int argc, char **argv)
{
    static zmq_msg_t frames[MAX_FRAMES];
    struct sigaction sa;
    int hwm = 1000, sndhwm = 100000, linger = 0, timeout_ms = RECV_TIMEOUT_MS;

    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: ref_router ENDPOINT [READY_FILE]\n");
        return 2;
    }
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    void *ctx = zmq_ctx_new();
    void *sock = ctx ? zmq_socket(ctx, ZMQ_ROUTER) : NULL;
    if (!sock) {
        fprintf(stderr, "ref_router: zmq: %s\n", zmq_strerror(zmq_errno()));
        return 1;
    }
    /* zpiped's router-mode settings (src/producer.c). */
    zmq_setsockopt(sock, ZMQ_RCVHWM, &hwm, sizeof(hwm));
    zmq_setsockopt(sock, ZMQ_SNDHWM, &sndhwm, sizeof(sndhwm));
    zmq_setsockopt(sock, ZMQ_LINGER, &linger, sizeof(linger));
    /* A SIGTERM may land on a libzmq thread, or just before a blocking
     * receive: the wait is cut short so is_stopping is seen anyway. */
    zmq_setsockopt(sock, ZMQ_RCVTIMEO, &timeout_ms, sizeof(timeout_ms));
    if (ref_curve_server(sock, "ref_router") != 0) {
        return 1;
    }
    if (zmq_bind(sock, argv[1]) != 0) {
        fprintf(stderr, "ref_router: bind %s: %s\n", argv[1], zmq_strerror(zmq_errno()));
        return 1;
    }
    if (argc == 3) {
        FILE *f = fopen(argv[2], "w");
        if (!f || fclose(f) != 0) {
            fprintf(stderr, "ref_router: %s: %s\n", argv[2], strerror(errno));
            return 1;
        }
    }
    while (!is_stopping) {
        if (answer_one(sock, frames) < 0 && errno != EINTR && errno != EAGAIN) {
            fprintf(stderr, "ref_router: %s\n", zmq_strerror(errno));
            return 1;
        }
    }
    zmq_close(sock);
    zmq_ctx_term(ctx);
    return 0;
}
