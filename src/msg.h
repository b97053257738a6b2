/*
 * msg.h - the message: one ZeroMQ message, single- or multipart, as one
 * record everywhere in zpiped.
 *
 * A message is one block: the header, the frame table (none for a message
 * of one frame) and the frame bytes.
 * It has exactly one owner at a time (producer -> queue -> consumer -> sink
 * batch) and is freed by msg_destroy() once the sink has taken it.  The block
 * is its own allocation, or (msg_create_in(), the producer's fast path) a
 * piece of a shared slab: see "Slabs" below.  The next field is the
 * queue's intrusive link, so queueing never allocates; only the queue
 * touches it.  A message is not shared between
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

struct msg_slab;

/*
 * The reply owed for a message accepted with [input] ack = stored: the
 * producer that read the message owns it and sets stored; the consumer that
 * has the message stored by the sink, or durably spilled, calls it once
 * (msg_ack_stored()), on its own thread.  The producer sends the OK then.
 */
struct msg_ack {
    void (*stored)(struct msg_ack *a);
};

/*
 * A message's identity (README.md, "Message identity"): origin, a random
 * number drawn at every start of zpiped, and seq, 1, 2, 3 ... in the order
 * messages are accepted within that run.  A message replayed from a spill
 * file keeps the identity it was given when it was first accepted, so a
 * sink that can deduplicate on it stores a message written twice once.
 */
struct msg_id {
    uint64_t origin;
    uint64_t seq;
};

/*
 * The header is kept small: the payload of the usual message is a few
 * hundred bytes, and the header is memory that no limit counts.  So a
 * message of one frame has no frame table (msg_frame() makes its entry
 * from size), the slab is found from slab_off rather than a pointer, size
 * takes 32 bits, and nframes and slab_off 32 more between them: 48 bytes
 * on a 64-bit machine.
 */
struct msg {
    struct msg *next;           /* queue link, owned by the queue */
    struct msg_ack *ack;        /* the OK owed once stored, or NULL */
    struct msg_id id;           /* {0, 0} until msg_id_assign() */
    uint64_t received_ms;       /* when accepted, Unix time in ms (with id) */
    uint32_t size;              /* payload bytes, all frames together, at most
                                 * MSG_SIZE_MAX; the limits count msg_cost() */
    uint32_t nframes : 17;      /* 1..MSG_FRAMES_MAX */
    uint32_t slab_off : 15;     /* msg.c's: where in its slab, 0 if none */
    /* Then, with more than one frame, nframes struct msg_frame; then the
     * bytes of every frame, one after the other. */
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

/* The most payload bytes of one message, all frames together: what
 * struct msg's size holds.  input.max_message_size is at most this. */
#define MSG_SIZE_MAX     0xffffffffu

/*
 * The cost of a message: what it counts for against every byte limit on
 * messages in memory (queue.max_bytes, input.max_message_size, the
 * producer's burst).  Its payload alone would make frames free: 65,535
 * empty frames are no payload but a 1 MiB frame table.  So every frame
 * after the first costs MSG_FRAME_COST on top of the payload: the
 * struct msg_frame entry each one takes in the message (a pointer and a
 * length).  The frames share the message's one allocation, so the
 * allocator adds nothing per frame; the first frame's entry (a message of
 * one frame has none), like the header, is a per-message overhead that no
 * limit counts (README.md,
 * "[queue]").  A fixed number, not sizeof, so that the limits mean the
 * same on every platform.
 */
#define MSG_FRAME_COST   16u

_Static_assert(sizeof(struct msg_frame) <= MSG_FRAME_COST,
               "MSG_FRAME_COST must cover a frame table entry");

/*
 * msg_cost returns the cost of m (see MSG_FRAME_COST): m->size plus
 * MSG_FRAME_COST for every frame after the first.
 */
static inline uint64_t
msg_cost(const struct msg *m)
{
    return (uint64_t)m->size + (uint64_t)MSG_FRAME_COST * (m->nframes - 1);
}

/*
 * msg_frame returns frame i of m (i < m->nframes): where its bytes are and
 * how many.  They stay valid as long as m.
 */
static inline struct msg_frame
msg_frame(const struct msg *m, size_t i)
{
    const unsigned char *end = (const unsigned char *)(m + 1);

    if (m->nframes == 1) {
        return (struct msg_frame){ end, m->size };
    }
    return ((const struct msg_frame *)end)[i];
}

/*
 * msg_create allocates a message for nframes frames whose lengths are
 * lens[0..nframes-1] (borrowed), and returns it with every frame's data
 * pointing at uninitialised storage of that length for the caller to fill
 * through msg_frame_data().  Returns NULL when out of memory, when nframes
 * is 0 or above MSG_FRAMES_MAX, when a frame is longer than MSG_FRAME_MAX,
 * or when they are more than MSG_SIZE_MAX together.  Any thread; does not
 * block.
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
static inline unsigned char *
msg_frame_data(struct msg *m, size_t i)
{
    /* The creator owns the storage; data is const only for everyone after. */
    return (unsigned char *)msg_frame(m, i).data;
}

/*
 * msg_ack_stored tells the producer that m is stored, if it owes an OK for
 * it (m->ack set), once: m->ack is cleared.  The consumer that holds m.
 */
static inline void
msg_ack_stored(struct msg *m)
{
    struct msg_ack *a = m->ack;

    if (a != NULL) {
        m->ack = NULL;
        a->stored(a);
    }
}

/*
 * msg_id_init draws this run's origin from the kernel's random source.
 * Returns 0 or a negative errno.  Main thread, at start, before any
 * message is accepted.
 */
int msg_id_init(void);

/* msg_id_origin returns this run's origin (0 before msg_id_init()). Any thread. */
uint64_t msg_id_origin(void);

/*
 * msg_id_assign gives v[0..n) the next n identities of this run, in order,
 * and the current time as received_ms: one atomic operation and one clock
 * read for the whole batch.  Any thread; the caller owns the messages.
 */
void msg_id_assign(struct msg *const *v, size_t n);

/* Room for the text form of an id, "%016x-%u" with its NUL. */
#define MSG_ID_TEXT_MAX 38

/*
 * msg_id_format writes id's text form, the origin as 16 lowercase hex
 * digits, '-', the decimal seq ("9f1c0a3e5b7d2468-42"), into buf
 * (MSG_ID_TEXT_MAX bytes) and returns buf.
 */
char *msg_id_format(const struct msg_id *id, char buf[MSG_ID_TEXT_MAX]);

/* msg_destroy frees m. Accepts NULL.  Any thread. */
void msg_destroy(struct msg *m);

/*
 * msg_destroy_batch frees v[0..n) (no NULLs), cheaper than one by one:
 * consecutive messages of one slab give it back with one atomic operation.
 */
void msg_destroy_batch(struct msg *const *v, size_t n);

/*
 * Slabs.  One malloc, and one free by another thread, per message cost the
 * producer and the consumers a contended malloc arena lock (the profile
 * showed most of the daemon's futex calls there).  A producer therefore
 * carves its messages out of MSG_SLAB_SIZE slabs, one after the other; a
 * slab is freed (or kept for reuse, a few at most) when its last message is
 * destroyed, on whichever thread.  A message larger than MSG_SLAB_PIECE_MAX
 * gets its own allocation.
 *
 * Memory: a slab lives while any of its messages does.  Messages of a slab
 * are consecutive in the arrival order of one producer and the queue is
 * FIFO, so what slabs hold beyond the live messages is at most about two
 * slabs per producer and per consumer batch: a few hundred KiB, not a
 * multiple of the queue's max_bytes.
 *
 * A struct msg_arena is the carving state of one thread (not thread-safe);
 * zero-initialised is empty.
 */
#define MSG_SLAB_SIZE      (64u * 1024u)
#define MSG_SLAB_PIECE_MAX (MSG_SLAB_SIZE / 8u)

struct msg_arena {
    struct msg_slab *slab;      /* slab being carved, or NULL */
    size_t used;                /* bytes of it carved */
    uint64_t carved;            /* messages carved from it */
};

/*
 * msg_create_in is msg_create() from a's current slab (a new one when it is
 * full).  The message is freed by msg_destroy() as any other.  NULL as for
 * msg_create().  The thread that owns a.
 */
struct msg *msg_create_in(struct msg_arena *a, size_t nframes, const size_t *lens);

/*
 * msg_arena_release lets go of a's current slab (its messages stay valid)
 * and empties a.  The thread that owns a, when it stops creating messages.
 */
void msg_arena_release(struct msg_arena *a);

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
 * msg_body gives m as one byte string, the way the database sinks store it
 * (README.md, "Database sinks"): a one-frame message is its payload, as it
 * is (no copy); a multipart message is its frames in the binary record
 * format, encoded into *buf, which is grown to fit (*cap bytes; the caller
 * frees it and may reuse it for the next message).  Sets *data (valid until
 * *buf is used again) and *len.  Returns 0, or -ENOMEM.
 */
int msg_body(const struct msg *m, unsigned char **buf, size_t *cap, const unsigned char **data,
             size_t *len);

/*
 * msg_frame_header writes the 4-byte length prefix of frame i of m (with
 * MSG_MORE_BIT on every frame but the last) to hdr.  For writers that build
 * an iovec per frame, { hdr, 4 } then frame i's { data, len } (msg_frame()),
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
 * payload larger than max_size or MSG_SIZE_MAX, or more than MSG_FRAMES_MAX
 * frames.
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
