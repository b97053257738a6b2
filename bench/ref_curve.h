/*
 * ref_curve.h - CURVE for the reference receivers of scripts/bench, so the
 * cost of CURVE in libzmq alone is measured beside zpiped's.
 *
 * With ZP_REF_CURVE_SECRET set to a Z85 secret key (40 characters, as in a
 * zpipe keygen NAME.key_secret), the socket becomes a CURVE server with that
 * key.  No ZAP handler runs, so libzmq lets every client in: the reference
 * pays for the encryption and the handshake, not for an allow-list.
 */
#ifndef ZPIPE_REF_CURVE_H
#define ZPIPE_REF_CURVE_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zmq.h>

/* ref_curve_server makes sock a CURVE server if the environment asks for it
 * (before bind).  0, or -1 after saying why on stderr. */
static inline int
ref_curve_server(void *sock, const char *prog)
{
    const char *secret = getenv("ZP_REF_CURVE_SECRET");
    int on = 1;

    if (!secret || *secret == '\0') {
        return 0;
    }
    if (zmq_setsockopt(sock, ZMQ_CURVE_SERVER, &on, sizeof(on)) != 0 ||
        zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, secret, strlen(secret)) != 0) {
        fprintf(stderr, "%s: CURVE server: %s\n", prog, zmq_strerror(zmq_errno()));
        return -1;
    }
    return 0;
}

#endif
