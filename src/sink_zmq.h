/*
 * sink_zmq.h - what the two forwarding sinks share (zpiped.ini(5),
 * "[zmq]"): zmq.mode = push is sink_zmq_push.c, zmq.mode = dealer is
 * sink_zmq_dealer.c; sink_find() picks one by the mode.  A socket to one
 * endpoint (a link) and sending a message without blocking live here, once.
 */
#ifndef ZPIPE_SINK_ZMQ_H
#define ZPIPE_SINK_ZMQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "conf.h"
#include "msg.h"

#define SINK_ZMQ_WAIT_MS 100 /* longest a submit() waits for room, in all */

/*
 * A connection whose handshake the downstream refused (our key not in its
 * curve_allow, or a wrong zmq.curve_server_key) is given up for good by
 * libzmq 4.3: no reconnect.  The sink makes the socket anew this long
 * after, so a downstream that allows the key again is found again.  A
 * socket that could not be made (a key file unreadable while it is
 * replaced, no file descriptor left) is tried again as often, and its
 * error logged as often: not at every pass of the consumer.
 */
#define SINK_ZMQ_REMAKE_MS 1000

/*
 * One endpoint's socket and its monitor.  Both modes keep one per
 * zmq.endpoints entry per consumer thread, owned by that thread.
 */
struct sink_zmq_link {
    const char *endpoint;   /* borrowed from the config; set by the owner */
    void *sock;             /* NULL while it could not be made */
    void *mon;              /* inproc PAIR reading sock's monitor events */
    bool is_up;             /* the last event was a completed handshake */
    bool has_curve;         /* sock is a CURVE client (for the log's advice) */
    uint64_t refused_ms;    /* when a handshake was refused; 0: none since sock was made */
    uint64_t failed_ms;     /* when making sock last failed */
    uint64_t failed_log_ms; /* when a failed handshake was last logged */
};

/*
 * sink_zmq_link_open makes l's socket of type (ZMQ_PUSH or ZMQ_DEALER) on
 * zctx: ZMQ_LINGER linger_ms, ZMQ_SNDHWM zmq.sndhwm, ZMQ_IMMEDIATE (never
 * queue for a peer that is not connected) if is_immediate, a CURVE client
 * of the downstream when zmq.curve_server_key is set (with
 * zmq.curve_secret_key; README.md, "Security"; the key files are read each
 * time), and its monitor, made before it connects to l->endpoint so no
 * event is missed.  Returns 0, or a negative errno (logged) with l->sock
 * NULL and l->failed_ms now.
 */
int sink_zmq_link_open(struct sink_zmq_link *l, void *zctx, const struct conf *cfg, int type,
                       int linger_ms, bool is_immediate);

/*
 * sink_zmq_link_read takes l's monitor events (none while l has no socket)
 * without waiting and sets l->is_up from the last one, and l->refused_ms
 * on a refused handshake (an authentication or protocol failure).  A
 * failed handshake (the downstream refused our CURVE key, or a wrong
 * zmq.curve_server_key, or a connection cut during the handshake) is
 * counted in sink.errors.open and logged with its endpoint, at most every
 * 10 s per link: nothing goes there until one succeeds, and the operator
 * would otherwise only see the consumer backing off.  Called often enough
 * that the events never fill the monitor: libzmq sends them from its I/O
 * thread without ZMQ_DONTWAIT, so a full monitor would stall every socket
 * on that thread.  Returns true if one was a disconnect.
 */
bool sink_zmq_link_read(struct sink_zmq_link *l);

/*
 * sink_zmq_link_remake_ms returns when l's socket is to be made (anew):
 * SINK_ZMQ_REMAKE_MS after making it failed, or after the downstream
 * refused its handshake; UINT64_MAX when neither.
 */
uint64_t sink_zmq_link_remake_ms(const struct sink_zmq_link *l);

/*
 * sink_zmq_link_close closes l's socket and monitor, the monitor first:
 * libzmq 4.3 stops it only once the socket is destroyed, after its
 * connections are torn down, and leaks an event it emits then with the
 * reading end already closed.
 */
void sink_zmq_link_close(struct sink_zmq_link *l);

/*
 * sink_zmq_send offers m (borrowed) to sock without blocking, after an
 * empty envelope frame if has_delim.  Returns 0 when libzmq took it, -EAGAIN
 * when no peer has room, another negative errno on failure.  libzmq admits
 * or refuses a message at its first frame; a later frame fails only when
 * the peer's pipe is torn down under the message, and then the message is
 * dropped whole and this returns that error: never half taken.
 */
int sink_zmq_send(void *sock, const struct msg *m, bool has_delim);

/*
 * sink_zmq_abort and sink_zmq_reopen are the push sink's abort and reopen:
 * they do nothing, as nothing is ever in flight there (a message is stored
 * once libzmq took it) and there is no file to reopen.  The dealer sink
 * shares sink_zmq_reopen.
 */
void sink_zmq_abort(void *state);
int sink_zmq_reopen(void *state);

#endif
