/*
 * sink_zmq.h - what the two forwarding sinks share (zpiped.ini(5),
 * "[zmq]"): zmq.mode = push is sink_zmq_push.c, zmq.mode = dealer is
 * sink_zmq_dealer.c; sink_find() picks one by the mode.  Socket set-up and
 * sending a message without blocking live here, once.
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
 * sink_zmq_setup sets the options both modes give their sending sockets:
 * ZMQ_LINGER linger_ms, ZMQ_SNDHWM sndhwm and, if is_immediate,
 * ZMQ_IMMEDIATE (never queue for a peer that is not connected).  Returns 0
 * or a negative errno (logged).
 */
int sink_zmq_setup(void *sock, int linger_ms, uint64_t sndhwm, bool is_immediate);

/*
 * sink_zmq_set_curve makes sock a CURVE client of the downstream when
 * zmq.curve_server_key is set (with zmq.curve_secret_key as our key pair;
 * README.md, "Security"), reading the key files each time, and does nothing
 * otherwise.  Before connect.  Returns 0 or a negative errno (logged).
 */
int sink_zmq_set_curve(void *sock, const struct conf *cfg);

/* sink_zmq_connect connects sock to endpoint.  Returns 0 or a negative errno (logged). */
int sink_zmq_connect(void *sock, const char *endpoint);

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

/* What a socket's monitor tells of its peer (sink_zmq_monitor_read). */
struct sink_zmq_peer {
    bool is_up;             /* the last event was a completed handshake */
    bool has_curve;         /* set by the owner: the socket uses CURVE (for the log's advice) */
    uint64_t refused_ms;    /* when a handshake was refused; 0: none since the socket was made */
    uint64_t failed_log_ms; /* when a failed handshake was last logged */
};

/* sink_zmq_peer_is_given_up: a refused handshake SINK_ZMQ_REMAKE_MS ago or more. */
bool sink_zmq_peer_is_given_up(const struct sink_zmq_peer *peer, uint64_t now);

/*
 * sink_zmq_monitor_open makes *mon an inproc PAIR on zctx that reads sock's
 * monitor events: completed handshakes, disconnects and failed handshakes.
 * Before sock connects, so no event is missed.  Returns 0 or a negative
 * errno (logged; *mon is then NULL).
 */
int sink_zmq_monitor_open(void *zctx, void *sock, void **mon);

/*
 * sink_zmq_monitor_read takes mon's events without waiting and sets
 * peer->is_up from the last one, and peer->refused_ms on a refused
 * handshake (an authentication or protocol failure).  A failed handshake
 * (the downstream refused our CURVE key, or a wrong zmq.curve_server_key,
 * or a connection cut during the handshake) is counted in
 * sink.errors.open and logged with its endpoint, at most every 10 s per
 * peer: nothing goes there until one succeeds, and the operator would
 * otherwise only see the consumer backing off.  Called often enough that
 * the events never fill mon: libzmq sends them from its I/O thread without
 * ZMQ_DONTWAIT, so a full mon would stall every socket on that thread.
 * Returns true if one was a disconnect.
 */
bool sink_zmq_monitor_read(void *mon, struct sink_zmq_peer *peer);

/*
 * sink_zmq_close closes sock and its monitor mon (either may be NULL), the
 * monitor first: libzmq 4.3 stops it only once the socket is destroyed,
 * after its connections are torn down, and leaks an event it emits then
 * with the reading end already closed.
 */
void sink_zmq_close(void *sock, void *mon);

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
