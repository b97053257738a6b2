/*
 * reply.h - the reply protocol of router mode, in one place for the three
 * that speak it: the producer that answers (producer.c), and the dealer sink
 * (sink_zmq_dealer.c) and the client (client_send.c) that read the answers.
 *
 * A peer sends ["", frames...] on a DEALER socket; zpiped answers each
 * message with ["", "OK"] once it is queued (or stored, with ack = stored),
 * or ["", "ERR <reason>"] if it refused it, in the order the messages came on
 * that connection (README, "Configuration").  The n-th reply of a connection
 * belongs to its n-th message: no id is carried.  A reply carries the
 * envelope its message came with, so a DEALER that sends [frames...] without
 * the delimiter gets the bare ["OK"] or ["ERR <reason>"]; so does a REQ
 * socket, which adds the delimiter to what it sends and strips it from what
 * it reads.
 */
#ifndef ZPIPE_REPLY_H
#define ZPIPE_REPLY_H

#include <stddef.h>

#define REPLY_OK_TEXT  "OK"  /* the message is queued (or stored) */
#define REPLY_ERR_TEXT "ERR" /* the message is refused; " <reason>" follows */

/* Longest reason zpiped gives after "ERR " ("message too large"...). */
#define REPLY_REASON_MAX 59
/* Longest reply text zpiped sends, without a terminating NUL. */
#define REPLY_TEXT_MAX (sizeof(REPLY_ERR_TEXT " ") - 1 + REPLY_REASON_MAX)

/*
 * Replies a ROUTER socket of zpiped holds for a slow reader (its ZMQ_SNDHWM).
 * Past it a reply is dropped, and a reader that matches replies by their
 * order would then match every later one with the wrong message.
 */
#define REPLY_ROUTER_SNDHWM 100000
/*
 * Most messages a reader keeps awaiting their reply on one connection: far
 * below REPLY_ROUTER_SNDHWM, so zpiped never drops a reply for lack of room.
 */
#define REPLY_WINDOW_MAX (REPLY_ROUTER_SNDHWM / 10)

_Static_assert(REPLY_WINDOW_MAX < REPLY_ROUTER_SNDHWM,
               "a reader's window must stay below the router's reply high-water mark");

/*
 * The ZMQ_MAXMSGSIZE of a socket that reads only replies, or nothing (a
 * PUSH): far above any reply and the frames of a handshake, so that a peer
 * announcing a larger frame is disconnected instead of having libzmq
 * allocate what it announced.
 */
#define REPLY_PEER_FRAME_MAX 65536

/* What reply_recv() read. */
enum reply_kind {
    REPLY_NONE = 0, /* no reply waiting */
    REPLY_OK = 1,   /* ["", "OK"] */
    REPLY_ERR = 2,  /* ["", "ERR ..."] */
};

/*
 * reply_text returns the reply to a message: REPLY_OK_TEXT when why is NULL,
 * else "ERR <why>" written in buf (cap bytes, cut to fit, NUL-terminated;
 * REPLY_TEXT_MAX + 1 bytes hold any reason of zpiped's).  why is borrowed.
 * Any thread.
 */
const char *reply_text(const char *why, char *buf, size_t cap);

/*
 * reply_recv reads one reply from sock, a DEALER socket, without waiting for
 * its first frame.  Returns REPLY_OK or REPLY_ERR, REPLY_NONE if none is
 * waiting (or the call was interrupted), -EPROTO for a reply that is not
 * ["", "OK"] or ["", "ERR ..."] (all its frames are read), or another
 * negative errno.  For REPLY_ERR and -EPROTO, text (cap bytes, cap > 0)
 * receives the reply's last frame for printing: cut to cap - 1 bytes, bytes
 * outside printable ASCII as '?', NUL-terminated; for REPLY_OK it is left
 * as it was.  The thread that owns sock.
 */
int reply_recv(void *sock, char *text, size_t cap);

/*
 * reply_recv_bare is reply_recv for the bare envelope: it reads one reply
 * ["OK"] or ["ERR ..."] from sock, a DEALER socket that sent its messages
 * without the delimiter or a REQ socket, without waiting for it.  Returns as
 * reply_recv does; a reply of several frames is -EPROTO.  The thread that
 * owns sock.
 */
int reply_recv_bare(void *sock, char *text, size_t cap);

#endif
