/*
 * msg.h - the message: one ZeroMQ message, single- or multipart, as one
 * record everywhere in zpiped.
 *
 * A message is a single allocation: the header, the frame table and the
 * frame bytes.  It has exactly one owner at a time (producer -> queue ->
 * consumer -> sink batch) and is freed by msg_destroy() once the sink has
 * taken it.  The next field is the queue's intrusive link, so queueing never
 * allocates; only the queue touches it.  A message is not shared between
 * threads: whoever owns it may use it without locking.
 *
 * Every message msg_create() returns can be encoded in the binary format and
 * decoded back: it has 1..MSG_FRAMES_MAX frames of at most MSG_FRAME_MAX
 * bytes each.  Code that builds messages from untrusted input (the producer)
 * checks those limits itself first, so it can reject with a reason.
 */
#ifndef ZPIPE_MSG_H
#define ZPIPE_MSG_H

#include <stddef.h>
#include <stdint.h>

struct msg_frame {
    const unsigned char *data;  /* points into the message's own allocation */
    size_t len;                 /* bytes */
};

struct msg {
    struct msg *next;           /* queue link, owned by the queue */
    size_t size;                /* payload bytes, all frames together */
    size_t nframes;             /* 1..MSG_FRAMES_MAX */
    struct msg_frame frames[];  /* nframes entries, then the bytes */
};

/*
 * The binary record format (file sink "binary", spill files): each frame is
 * a 4-byte big-endian length then its bytes; the top bit of the length is set
 * on every frame except the last, so a one-frame record is just length +
 * payload.  A frame is at most MSG_FRAME_MAX bytes.  A record has at most
 * MSG_FRAMES_MAX frames: without a cap, a record of zero-length frames would
 * cost a frame table entry per 4 input bytes whatever the payload limit.
 */
#define MSG_MORE_BIT     0x80000000u
#define MSG_FRAME_MAX    0x7fffffffu
#define MSG_FRAMES_MAX   65536u
#define MSG_HEADER_SIZE  4u         /* bytes of length prefix per frame */

/*
 * msg_create allocates a message for nframes frames whose lengths are
 * lens[0..nframes-1] (borrowed), and returns it with every frame's data
 * pointing at uninitialised storage of that length for the caller to fill
 * through msg_frame_data().  Returns NULL when out of memory, when nframes
 * is 0 or above MSG_FRAMES_MAX, or when a frame is longer than
 * MSG_FRAME_MAX.  Any thread; does not block.
 */
struct msg *msg_create(size_t nframes, const size_t *lens);

/*
 * msg_create_copy creates a one-frame message holding a copy of data[0..len)
 * (borrowed; may be NULL when len is 0).  NULL as for msg_create().
 */
struct msg *msg_create_copy(const void *data, size_t len);

/*
 * msg_frame_data returns frame i's writable storage (i < m->nframes), for
 * the creator to fill once before handing the message on.
 */
unsigned char *msg_frame_data(struct msg *m, size_t i);

/* msg_destroy frees m. Accepts NULL. */
void msg_destroy(struct msg *m);

/*
 * msg_binary_size returns the encoded size of m in the binary format:
 * m->size plus MSG_HEADER_SIZE per frame.
 */
size_t msg_binary_size(const struct msg *m);

/*
 * msg_encode_binary writes m as one binary record to out, which must have
 * room for msg_binary_size(m) bytes, and returns that size.
 */
size_t msg_encode_binary(const struct msg *m, unsigned char *out);

/*
 * msg_frame_header writes the 4-byte length prefix of frame i of m (with
 * MSG_MORE_BIT on every frame but the last) to hdr.  For writers that build
 * an iovec per frame, { hdr, 4 } then { frames[i].data, frames[i].len },
 * instead of copying the payload: the concatenation is exactly what
 * msg_encode_binary() writes.
 */
void msg_frame_header(const struct msg *m, size_t i, unsigned char hdr[MSG_HEADER_SIZE]);

/*
 * msg_decode_binary decodes one record from buf[0..len) (borrowed).  On
 * success returns 0, stores a new message (the caller owns it) in *out and
 * the bytes consumed in *used.  Returns -EAGAIN if buf holds only the start
 * of a record (read more and call again with the longer buffer), -EBADMSG if
 * the bytes cannot be a record this call accepts: a frame or the record's
 * payload larger than max_size, or more than MSG_FRAMES_MAX frames.
 * Returns -ENOMEM if allocation fails.  *out and *used are set only on
 * success.
 *
 * Safe on arbitrary bytes: it never reads outside buf[0..len), allocates
 * only after the whole record is present and valid, and then at most
 * max_size payload bytes plus the frame table.  A limit that can be decided
 * from the bytes seen so far is reported as -EBADMSG even when the record is
 * incomplete, so a reader never waits for a record it would refuse.  Any
 * thread; does not block.
 */
int msg_decode_binary(const unsigned char *buf, size_t len, size_t max_size,
                      struct msg **out, size_t *used);

#endif
