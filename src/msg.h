/*
 * msg.h - the message: one ZeroMQ message, single- or multipart, as one
 * record everywhere in zpiped.
 *
 * A message is a single allocation: the header, the frame table and the
 * frame bytes.  It has exactly one owner at a time (producer -> queue ->
 * consumer -> sink batch) and is freed by msg_destroy() once the sink has
 * taken it.  The next field is the queue's intrusive link, so queueing never
 * allocates; only the queue touches it.
 */
#ifndef ZPIPE_MSG_H
#define ZPIPE_MSG_H

#include <stddef.h>
#include <stdint.h>

struct msg_frame {
	const unsigned char *data;  /* points into the message's own allocation */
	size_t len;
};

struct msg {
	struct msg *next;           /* queue link, owned by the queue */
	size_t size;                /* payload bytes, all frames together */
	size_t nframes;             /* >= 1 */
	struct msg_frame frames[];  /* nframes entries, then the bytes */
};

/*
 * msg_create allocates a message for nframes frames whose lengths are
 * lens[0..nframes-1], and returns it with every frame's data pointing at
 * uninitialised storage of that length for the caller to fill (cast away
 * const: the creator fills it once).  Returns NULL when out of memory or
 * when nframes is 0.
 */
struct msg *msg_create(size_t nframes, const size_t *lens);

/* msg_create_copy creates a one-frame message holding a copy of data. */
struct msg *msg_create_copy(const void *data, size_t len);

/* msg_frame_data returns frame i's writable storage, for the creator. */
unsigned char *msg_frame_data(struct msg *m, size_t i);

/* msg_destroy frees m. Accepts NULL. */
void msg_destroy(struct msg *m);

/*
 * The binary record format (file sink "binary", spill files): each frame is
 * a 4-byte big-endian length then its bytes; the top bit of the length is set
 * on every frame except the last.  A frame is at most MSG_FRAME_MAX bytes.
 */
#define MSG_MORE_BIT   0x80000000u
#define MSG_FRAME_MAX  0x7fffffffu

/* msg_binary_size returns the encoded size of m in the binary format. */
size_t msg_binary_size(const struct msg *m);

/*
 * msg_decode_binary decodes one record from buf[0..len).  On success returns
 * 0, stores a new message in *out and the bytes consumed in *used.  Returns
 * -EAGAIN if buf holds only the start of a record (need more bytes),
 * -EBADMSG if the bytes cannot be a record (a frame longer than max_size, or
 * a record larger than max_size), -ENOMEM if allocation fails.
 */
int msg_decode_binary(const unsigned char *buf, size_t len, size_t max_size,
                      struct msg **out, size_t *used);

#endif
