/*
 * zmq_util.h - small libzmq helpers shared by the daemon and the client.
 */
#ifndef ZPIPE_ZMQ_UTIL_H
#define ZPIPE_ZMQ_UTIL_H

#include <stddef.h>
#include <stdint.h>

/*
 * zmq_util_strerror returns the text of errnum (a positive errno, or one of
 * libzmq's own codes, which strerror_r does not know), using buf (len
 * bytes) if it needs one.
 */
const char *zmq_util_strerror(int errnum, char *buf, size_t len);

/* zmq_util_set_int sets an int socket option.  Returns 0 or a negative errno. */
int zmq_util_set_int(void *sock, int option, int value);

/* zmq_util_set_int64 sets an int64_t socket option (ZMQ_MAXMSGSIZE).  Returns as above. */
int zmq_util_set_int64(void *sock, int option, int64_t value);

#endif
