/*
 * zmq_util.c - small libzmq helpers shared by the daemon and the client;
 * see zmq_util.h.
 */
#include "config.h"

#include "zmq_util.h"

#include <zmq.h>

#include "util.h"

const char *
zmq_util_strerror(int errnum, char *buf, size_t len)
{
    /* libzmq's own codes (ETERM, EFSM, ...) start at ZMQ_HAUSNUMERO. */
    if (errnum >= ZMQ_HAUSNUMERO) {
        return zmq_strerror(errnum);
    }
    return util_strerror(errnum, buf, len);
}

int
zmq_util_set_int(void *sock, int option, int value)
{
    return zmq_setsockopt(sock, option, &value, sizeof(value)) < 0 ? -zmq_errno() : 0;
}

int
zmq_util_set_int64(void *sock, int option, int64_t value)
{
    return zmq_setsockopt(sock, option, &value, sizeof(value)) < 0 ? -zmq_errno() : 0;
}
