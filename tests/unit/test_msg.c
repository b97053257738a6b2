/*
 * test_msg.c - the message object and the binary record format.
 */
#include "config.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include "msg.h"
#include "tap.h"

/* Fixed-seed xorshift, so a failure reproduces. */
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint32_t
rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 16);
}

/* make_msg builds a message of n frames of lens[], filled with fill(frame, byte). */
static struct msg *
make_msg(size_t n, const size_t *lens, unsigned char salt)
{
    struct msg *m = msg_create(n, lens);

    if (m == NULL) {
        bail_out("msg_create(%zu) failed", n);
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char *p = msg_frame_data(m, i);

        for (size_t j = 0; j < lens[i]; j++) {
            p[j] = (unsigned char)(salt + i * 31 + j * 7);
        }
    }
    return m;
}

static bool
msg_equal(const struct msg *a, const struct msg *b)
{
    if (a->nframes != b->nframes || a->size != b->size) {
        return false;
    }
    for (size_t i = 0; i < a->nframes; i++) {
        if (msg_frame(a, i).len != msg_frame(b, i).len) {
            return false;
        }
        if (msg_frame(a, i).len > 0
            && memcmp(msg_frame(a, i).data, msg_frame(b, i).data, msg_frame(a, i).len) != 0) {
            return false;
        }
    }
    return true;
}

static unsigned char *
encode(const struct msg *m, size_t *len)
{
    size_t n = msg_binary_size(m);
    unsigned char *buf = malloc(n > 0 ? n : 1);

    if (buf == NULL) {
        bail_out("out of memory");
    }
    *len = msg_encode_binary(m, buf);
    return buf;
}

/* One frame's header by hand, independent of the code under test. */
static void
be32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

static void
test_create(void)
{
    size_t lens[] = { 3, 0, 5 };
    struct msg *m = msg_create(3, lens);

    ok(m != NULL, "create 3 frames");
    ok(m->nframes == 3 && m->size == 8 && m->next == NULL, "create sets nframes, size, next");
    ok(msg_frame(m, 0).len == 3 && msg_frame(m, 1).len == 0 && msg_frame(m, 2).len == 5,
       "create sets frame lengths");
    ok(msg_frame(m, 1).data == msg_frame(m, 0).data + 3 &&
           msg_frame(m, 2).data == msg_frame(m, 1).data,
       "frames are contiguous in one allocation");
    ok(msg_frame_data(m, 2) == msg_frame(m, 2).data, "frame_data returns the frame's storage");
    memcpy(msg_frame_data(m, 0), "abc", 3);
    memcpy(msg_frame_data(m, 2), "hello", 5);
    ok(memcmp(msg_frame(m, 0).data, "abc", 3) == 0 && memcmp(msg_frame(m, 2).data, "hello", 5) == 0,
       "frames hold what was written");
    msg_destroy(m);

    ok(msg_create(0, lens) == NULL, "zero frames refused");
    size_t big = (size_t)MSG_FRAME_MAX + 1;
    ok(msg_create(1, &big) == NULL, "frame above MSG_FRAME_MAX refused, no allocation tried");
    size_t over[3] = { MSG_FRAME_MAX, MSG_FRAME_MAX, 2 };
    ok(msg_create(3, over) == NULL, "frames above MSG_SIZE_MAX together refused");
    size_t huge[] = { SIZE_MAX / 2, SIZE_MAX / 2 };
    ok(msg_create(2, huge) == NULL, "giant frames refused");

    size_t *zeros = calloc(MSG_FRAMES_MAX + 1, sizeof(*zeros));
    if (zeros == NULL) {
        bail_out("out of memory");
    }
    m = msg_create(MSG_FRAMES_MAX, zeros);
    ok(m != NULL && m->nframes == MSG_FRAMES_MAX && m->size == 0,
       "MSG_FRAMES_MAX empty frames accepted");
    msg_destroy(m);
    ok(msg_create(MSG_FRAMES_MAX + 1, zeros) == NULL, "MSG_FRAMES_MAX + 1 frames refused");
    free(zeros);

    m = msg_create_copy("a\0b\n", 4);
    ok(m != NULL && m->nframes == 1 && m->size == 4
       && memcmp(msg_frame(m, 0).data, "a\0b\n", 4) == 0, "create_copy copies NUL and newline");
    msg_destroy(m);
    m = msg_create_copy(NULL, 0);
    ok(m != NULL && m->nframes == 1 && m->size == 0, "create_copy of nothing: one empty frame");
    msg_destroy(m);
    msg_destroy(NULL);
    ok(1, "destroy accepts NULL");
}

static void
test_encode(void)
{
    size_t lens[] = { 2, 0, 1 };
    struct msg *m = make_msg(3, lens, 1);
    unsigned char want[4 + 2 + 4 + 4 + 1];
    unsigned char got[sizeof(want) + 1];
    size_t n;

    be32(want, MSG_MORE_BIT | 2);
    memcpy(want + 4, msg_frame(m, 0).data, 2);
    be32(want + 6, MSG_MORE_BIT | 0);
    be32(want + 10, 1);
    want[14] = msg_frame(m, 2).data[0];

    ok(msg_binary_size(m) == sizeof(want), "binary_size counts a header per frame");
    memset(got, 0xee, sizeof(got));
    n = msg_encode_binary(m, got);
    ok(n == sizeof(want) && memcmp(got, want, sizeof(want)) == 0,
       "encode: MORE bit on all but the last frame, big-endian lengths");
    ok(got[sizeof(want)] == 0xee, "encode writes exactly binary_size bytes");

    /* The iovec path must produce the same bytes. */
    unsigned char hdrs[3][MSG_HEADER_SIZE];
    struct iovec iov[6];
    unsigned char flat[sizeof(want)];
    size_t off = 0;
    for (size_t i = 0; i < 3; i++) {
        msg_frame_header(m, i, hdrs[i]);
        iov[2 * i] = (struct iovec){ hdrs[i], MSG_HEADER_SIZE };
        iov[2 * i + 1] = (struct iovec){ (void *)msg_frame(m, i).data, msg_frame(m, i).len };
    }
    for (size_t i = 0; i < 6; i++) {
        memcpy(flat + off, iov[i].iov_base, iov[i].iov_len);
        off += iov[i].iov_len;
    }
    ok(off == sizeof(want) && memcmp(flat, want, sizeof(want)) == 0,
       "frame headers + frame data concatenate to the encoding");
    msg_destroy(m);

    m = msg_create_copy("xyz", 3);
    n = msg_encode_binary(m, got);
    ok(n == 7 && got[0] == 0 && got[1] == 0 && got[2] == 0 && got[3] == 3
       && memcmp(got + 4, "xyz", 3) == 0, "single frame: just length + payload");
    msg_destroy(m);
}

/*
 * near_boundary tells whether offset off of m's encoding is within a few
 * bytes of a frame header, where the decoder makes its decisions.
 */
static bool
near_boundary(const struct msg *m, size_t off)
{
    size_t start = 0;

    for (size_t i = 0; i < m->nframes; i++) {
        size_t end = start + MSG_HEADER_SIZE + msg_frame(m, i).len;

        if (off < end) {
            return off <= start + MSG_HEADER_SIZE + 1 || off + 1 >= end;
        }
        start = end;
    }
    return false;
}

/*
 * round_trip encodes m, decodes it, compares, and checks that every proper
 * prefix of the encoding is -EAGAIN (for long records: every prefix that
 * ends near a frame header, and a sample of the rest).  Returns true when
 * all held.
 */
static bool
round_trip(const struct msg *m, size_t max_size)
{
    size_t len, used = 0;
    unsigned char *buf = encode(m, &len);
    struct msg *d = NULL;
    bool is_good = true;

    if (msg_decode_binary(buf, len, max_size, &d, &used) != 0 || used != len || !msg_equal(m, d)) {
        is_good = false;
    }
    msg_destroy(d);
    for (size_t cut = 0; cut < len && is_good; cut++) {
        if (len > 4096 && cut % 997 != 0 && !near_boundary(m, cut)) {
            continue;
        }
        struct msg *none = NULL;
        size_t unused = 12345;
        /* A private copy, so ASan catches any read past the cut. */
        unsigned char *part = malloc(cut > 0 ? cut : 1);

        memcpy(part, buf, cut);
        if (msg_decode_binary(part, cut, max_size, &none, &unused) != -EAGAIN
            || none != NULL || unused != 12345) {
            diag("prefix of %zu/%zu bytes not -EAGAIN", cut, len);
            is_good = false;
        }
        free(part);
    }
    free(buf);
    return is_good;
}

static void
test_round_trip(void)
{
    struct msg *m;

    m = msg_create_copy(NULL, 0);
    ok(round_trip(m, 1024), "round trip: empty payload");
    ok(round_trip(m, 0), "round trip: empty payload under max_size 0");
    msg_destroy(m);

    m = msg_create_copy("\0\0a\0", 4);
    ok(round_trip(m, 1024), "round trip: NUL bytes");
    msg_destroy(m);

    m = msg_create_copy("line one\nline two\n", 18);
    ok(round_trip(m, 1024), "round trip: newlines");
    msg_destroy(m);

    size_t lens[] = { 0, 5, 0, 0, 3, 0 };
    m = make_msg(6, lens, 7);
    ok(round_trip(m, 1024), "round trip: multipart with empty frames, first and last");
    msg_destroy(m);

    size_t lens2[] = { 0, 0 };
    m = make_msg(2, lens2, 0);
    ok(round_trip(m, 0), "round trip: two empty frames under max_size 0");
    msg_destroy(m);

    size_t lens3[] = { 300, 70000, 1 };
    m = make_msg(3, lens3, 9);
    ok(round_trip(m, 70301), "round trip: record of exactly max_size");
    msg_destroy(m);

    /* A big frame, and a header with the largest length the format allows. */
    size_t mib = 4u << 20;
    m = make_msg(1, &mib, 3);
    size_t len, used;
    unsigned char *buf = encode(m, &len);
    struct msg *d = NULL;
    ok(msg_decode_binary(buf, len, mib, &d, &used) == 0 && used == len && msg_equal(m, d),
       "round trip: 4 MiB frame");
    msg_destroy(d);
    d = NULL;
    ok(msg_decode_binary(buf, len - 1, mib, &d, &used) == -EAGAIN && d == NULL,
       "4 MiB frame less one byte: -EAGAIN");
    free(buf);
    msg_destroy(m);

    unsigned char hdr[4];
    be32(hdr, MSG_FRAME_MAX);
    ok(msg_decode_binary(hdr, 4, SIZE_MAX, &d, &used) == -EAGAIN,
       "MSG_FRAME_MAX header alone: -EAGAIN, nothing allocated");
    be32(hdr, MSG_MORE_BIT | MSG_FRAME_MAX);
    ok(msg_decode_binary(hdr, 4, SIZE_MAX, &d, &used) == -EAGAIN,
       "MORE + MSG_FRAME_MAX header alone: -EAGAIN");
    ok(msg_decode_binary(hdr, 4, MSG_FRAME_MAX - 1, &d, &used) == -EBADMSG,
       "MSG_FRAME_MAX frame over max_size: -EBADMSG before the bytes arrive");

    /* Many frames: 1,000 random ones, decode and re-encode byte for byte. */
    size_t many[1000];
    for (size_t i = 0; i < 1000; i++) {
        many[i] = rng() % 4 == 0 ? rng() % 40 : 0;
    }
    m = make_msg(1000, many, 5);
    ok(round_trip(m, SIZE_MAX), "round trip: 1000 frames, mostly empty");
    msg_destroy(m);
}

static void
test_sequence(void)
{
    struct msg *a = msg_create_copy("first", 5);
    size_t lens[] = { 1, 2 };
    struct msg *b = make_msg(2, lens, 4);
    size_t la = msg_binary_size(a), lb = msg_binary_size(b);
    unsigned char *buf = malloc(la + lb);
    struct msg *d1 = NULL, *d2 = NULL;
    size_t u1 = 0, u2 = 0;

    msg_encode_binary(a, buf);
    msg_encode_binary(b, buf + la);
    ok(msg_decode_binary(buf, la + lb, 100, &d1, &u1) == 0 && u1 == la && msg_equal(a, d1),
       "back-to-back records: first decodes, used stops at its end");
    ok(msg_decode_binary(buf + u1, la + lb - u1, 100, &d2, &u2) == 0 && u2 == lb
       && msg_equal(b, d2), "back-to-back records: second decodes");
    msg_destroy(d1);
    msg_destroy(d2);
    msg_destroy(a);
    msg_destroy(b);
    free(buf);
}

static void
test_limits(void)
{
    unsigned char buf[64];
    struct msg *d = NULL;
    size_t used = 0;

    /* One frame of 10 bytes against max_size 9, 10. */
    be32(buf, 10);
    memset(buf + 4, 'x', 10);
    ok(msg_decode_binary(buf, 14, 9, &d, &used) == -EBADMSG && d == NULL,
       "frame over max_size: -EBADMSG");
    ok(msg_decode_binary(buf, 4, 9, &d, &used) == -EBADMSG,
       "frame over max_size, header only: -EBADMSG");
    ok(msg_decode_binary(buf, 14, 10, &d, &used) == 0 && d->size == 10,
       "frame of max_size: accepted");
    msg_destroy(d);
    d = NULL;

    /* Frames that each fit but together exceed. */
    be32(buf, MSG_MORE_BIT | 6);
    memset(buf + 4, 'y', 6);
    be32(buf + 10, 6);
    memset(buf + 14, 'z', 6);
    ok(msg_decode_binary(buf, 20, 11, &d, &used) == -EBADMSG, "record over max_size: -EBADMSG");
    ok(msg_decode_binary(buf, 14, 11, &d, &used) == -EBADMSG,
       "record over max_size, second header only: -EBADMSG");
    ok(msg_decode_binary(buf, 20, 12, &d, &used) == 0 && d->nframes == 2 && used == 20,
       "record of max_size: accepted");
    msg_destroy(d);
    d = NULL;

    /* Frame count cap, with zero-length frames: the pathological case. */
    size_t n = (size_t)MSG_FRAMES_MAX + 1;
    unsigned char *zeros = calloc(n, 4);
    for (size_t i = 0; i + 1 < n; i++) {
        be32(zeros + 4 * i, MSG_MORE_BIT);
    }
    be32(zeros + 4 * (MSG_FRAMES_MAX - 1), 0);
    ok(msg_decode_binary(zeros, 4 * MSG_FRAMES_MAX, 0, &d, &used) == 0
       && d->nframes == MSG_FRAMES_MAX && used == 4 * MSG_FRAMES_MAX,
       "MSG_FRAMES_MAX empty frames: accepted");
    msg_destroy(d);
    d = NULL;
    be32(zeros + 4 * (MSG_FRAMES_MAX - 1), MSG_MORE_BIT);
    ok(msg_decode_binary(zeros, 4 * n, 0, &d, &used) == -EBADMSG && d == NULL,
       "MSG_FRAMES_MAX + 1 frames: -EBADMSG");
    ok(msg_decode_binary(zeros, 4 * n - 4, 0, &d, &used) == -EAGAIN,
       "MSG_FRAMES_MAX MORE frames and no end yet: -EAGAIN");
    be32(zeros + 4 * (n - 1), MSG_MORE_BIT);
    ok(msg_decode_binary(zeros, 4 * n, 0, &d, &used) == -EBADMSG,
       "endless MORE frames: -EBADMSG at MSG_FRAMES_MAX + 1, not -EAGAIN forever");
    free(zeros);
}

/*
 * test_cost: msg_cost() is the payload plus MSG_FRAME_COST for every frame
 * after the first, so frames without payload are not free, and
 * MSG_FRAME_COST covers what a frame really takes in a message: a frame
 * table entry (a message of one more frame is that much larger, checked
 * through the slab carving offsets).
 */
static void
test_cost(void)
{
    size_t lens[] = { 3, 0, 5 };
    struct msg *m = msg_create(3, lens);

    ok(m != NULL && msg_cost(m) == 8 + 2 * MSG_FRAME_COST,
       "cost of 3 frames: the payload plus MSG_FRAME_COST for frames 2 and 3");
    msg_destroy(m);
    m = msg_create_copy("abcd", 4);
    ok(m != NULL && msg_cost(m) == 4, "cost of one frame: its payload");
    msg_destroy(m);
    m = msg_create_copy(NULL, 0);
    ok(m != NULL && msg_cost(m) == 0, "cost of one empty frame: 0");
    msg_destroy(m);

    /* The finding: 65,535 empty frames were free against every limit. */
    size_t *zeros = calloc(MSG_FRAMES_MAX, sizeof(*zeros));
    if (zeros == NULL) {
        bail_out("out of memory");
    }
    m = msg_create(65535, zeros);
    ok(m != NULL && m->size == 0 && msg_cost(m) == 65534u * MSG_FRAME_COST,
       "65,535 empty frames: no payload, cost %llu (just under 1 MiB)",
       m ? (unsigned long long)msg_cost(m) : 0ull);
    msg_destroy(m);
    m = msg_create(MSG_FRAMES_MAX, zeros);
    ok(m != NULL && msg_cost(m) == (uint64_t)(MSG_FRAMES_MAX - 1) * MSG_FRAME_COST,
       "MSG_FRAMES_MAX empty frames: cost (MSG_FRAMES_MAX - 1) * MSG_FRAME_COST");
    msg_destroy(m);

    /* Two messages carved one after the other: the first one's block size
     * is the distance between them (rounded up to the slab's 16 bytes).
     * From two frames to three: a message of one frame has no table. */
    struct msg_arena a = { 0 };
    size_t step[2];

    for (size_t n = 2; n <= 3; n++) {
        struct msg *first = msg_create_in(&a, n, zeros);
        struct msg *second = msg_create_in(&a, 1, zeros);

        step[n - 2] = (size_t)((unsigned char *)second - (unsigned char *)first);
        msg_destroy(first);
        msg_destroy(second);
        msg_arena_release(&a);
    }
    ok(step[1] > step[0] && step[1] - step[0] <= MSG_FRAME_COST,
       "one more frame takes %zu bytes more in memory, at most MSG_FRAME_COST (%u)",
       step[1] - step[0], MSG_FRAME_COST);
    free(zeros);
}

/*
 * test_garbage feeds random bytes and mutated records.  Every answer must be
 * 0, -EAGAIN or -EBADMSG; a decoded record must fit the limits and encode
 * back to exactly the bytes it came from.
 */
static void
test_garbage(void)
{
    int bad_rc = 0, bad_decode = 0, decoded = 0, again = 0, badmsg = 0;
    unsigned char *buf;
    const size_t cap = 4096;

    for (int iter = 0; iter < 20000; iter++) {
        size_t len = rng() % 200;
        size_t max_size = rng() % 3 == 0 ? SIZE_MAX : rng() % 300;

        buf = malloc(len > 0 ? len : 1);
        if (iter % 2 == 0) {
            for (size_t i = 0; i < len; i++) {
                buf[i] = (unsigned char)rng();
            }
        } else {
            /* Plausible structure: small lengths, random MORE bits, then noise. */
            size_t pos = 0;
            while (pos + 4 <= len) {
                uint32_t flen = rng() % 8;
                be32(buf + pos, flen | (rng() % 4 ? MSG_MORE_BIT : 0));
                pos += 4;
                for (uint32_t j = 0; j < flen && pos < len; j++) {
                    buf[pos++] = (unsigned char)rng();
                }
            }
            while (pos < len) {
                buf[pos++] = (unsigned char)rng();
            }
            if (len > 0 && rng() % 4 == 0) {
                buf[rng() % len] ^= (unsigned char)(1u << (rng() % 8));
            }
        }

        struct msg *d = NULL;
        size_t used = 0;
        int rc = msg_decode_binary(buf, len, max_size, &d, &used);
        if (rc == 0) {
            decoded++;
            unsigned char *re = malloc(cap);
            if (used > len || d->size > max_size || d->nframes > MSG_FRAMES_MAX
                || msg_binary_size(d) != used || used > cap
                || msg_encode_binary(d, re) != used || memcmp(re, buf, used) != 0) {
                bad_decode++;
            }
            free(re);
            msg_destroy(d);
        } else if (rc == -EAGAIN) {
            again++;
        } else if (rc == -EBADMSG) {
            badmsg++;
        } else {
            bad_rc++;
        }
        free(buf);
    }
    ok(bad_rc == 0, "garbage: only 0, -EAGAIN or -EBADMSG (%d others)", bad_rc);
    ok(bad_decode == 0, "garbage: decoded records re-encode to their bytes (%d bad)", bad_decode);
    ok(decoded > 0 && again > 0 && badmsg > 0,
       "garbage reached every outcome: %d decoded, %d -EAGAIN, %d -EBADMSG",
       decoded, again, badmsg);
}

static void
test_slabs(void)
{
    enum { N = 3000 };
    static struct msg *v[N];
    struct msg_arena a = { 0 };
    size_t big = MSG_SLAB_PIECE_MAX, lens[2];
    bool is_ok = true;
    size_t nslabs = 0;

    /* Enough small messages for several slabs; each keeps its own bytes. */
    for (size_t i = 0; i < N; i++) {
        lens[0] = i % 200;
        lens[1] = 3;
        v[i] = msg_create_in(&a, 2, lens);
        if (v[i] == NULL) {
            bail_out("msg_create_in failed");
        }
        memset(msg_frame_data(v[i], 0), (int)(i & 0xff), lens[0]);
        memcpy(msg_frame_data(v[i], 1), "end", 3);
        if (((uintptr_t)v[i] & 15) != 0) {
            is_ok = false;
        }
        if (i == 0 || v[i]->slab_off <= v[i - 1]->slab_off) {
            nslabs++;
        }
    }
    for (size_t i = 0; i < N && is_ok; i++) {
        const struct msg *m = v[i];

        is_ok = m->nframes == 2 && msg_frame(m, 0).len == i % 200 && m->size == i % 200 + 3 &&
                memcmp(msg_frame(m, 1).data, "end", 3) == 0 &&
                (msg_frame(m, 0).len == 0 ||
                 (msg_frame(m, 0).data[0] == (i & 0xff) &&
                  msg_frame(m, 0).data[msg_frame(m, 0).len - 1] == (i & 0xff)));
    }
    ok(is_ok, "%d messages carved from slabs keep their own frames, 16-byte aligned", N);
    ok(nslabs > 2 && v[0]->slab_off != 0, "they span several slabs (%zu)", nslabs);

    /* A message too big for a slab is its own allocation. */
    lens[0] = big;
    struct msg *m = msg_create_in(&a, 1, lens);
    ok(m != NULL && m->slab_off == 0, "a message over MSG_SLAB_PIECE_MAX is allocated alone");
    msg_destroy(m);

    /* Free out of order, some alone, some as batches, the arena in between:
     * ASan and valgrind see any slab freed too early or never. */
    for (size_t i = 1; i < N; i += 2) {
        msg_destroy(v[i]);
    }
    msg_arena_release(&a);
    ok(a.slab == NULL, "released arena is empty");
    for (size_t i = 0; i < N; i += 2) {
        v[i / 2] = v[i];
    }
    msg_destroy_batch(v, N / 2);
    ok(1, "every slab freed once (checked by the sanitizers)");

    /* A recycled slab works again. */
    lens[0] = 10;
    m = msg_create_in(&a, 1, lens);
    ok(m != NULL && m->slab_off != 0, "a new slab after all were freed");

    /* The usual message, one frame of 128 B, takes its header and 128
     * bytes of slab, no frame table: 176 bytes on a 64-bit machine. */
    lens[0] = 128;
    v[0] = msg_create_in(&a, 1, lens);
    v[1] = msg_create_in(&a, 1, lens);
    ok((sizeof(void *) != 8 || sizeof(struct msg) == 48) && v[0] != NULL && v[1] != NULL &&
           (uintptr_t)v[1] - (uintptr_t)v[0] == ((sizeof(struct msg) + 128 + 15) & ~(size_t)15) &&
           msg_frame(v[0], 0).len == 128 &&
           msg_frame(v[0], 0).data == (const unsigned char *)v[0] + sizeof(struct msg),
       "a one-frame message of 128 B takes its header and 128 bytes (%zu)",
       v[0] && v[1] ? (size_t)((uintptr_t)v[1] - (uintptr_t)v[0]) : (size_t)0);
    msg_destroy(v[0]);
    msg_destroy(v[1]);
    msg_destroy(m);
    msg_arena_release(&a);
}

/* Identities: this run's origin, consecutive seqs, the text form. */
static void
test_identity(void)
{
    struct msg *v[3];
    char text[MSG_ID_TEXT_MAX];
    uint64_t origin;

    ok(msg_id_init() == 0, "msg_id_init draws an origin");
    origin = msg_id_origin();
    ok(origin != 0 && msg_id_init() == 0 && msg_id_origin() != origin,
       "every start draws a new origin");
    origin = msg_id_origin();
    for (size_t i = 0; i < 3; i++) {
        v[i] = msg_create_copy("x", 1);
        if (!v[i]) {
            bail_out("msg_create_copy");
        }
    }
    ok(v[0]->id.origin == 0 && v[0]->id.seq == 0 && v[0]->received_ms == 0,
       "a new message has no identity yet");
    msg_id_assign(v, 2);
    msg_id_assign(v + 2, 1);
    ok(v[0]->id.origin == origin && v[1]->id.origin == origin && v[2]->id.origin == origin,
       "assigned: this run's origin");
    ok(v[0]->id.seq == 1 && v[1]->id.seq == 2 && v[2]->id.seq == 3,
       "assigned: seq 1, 2, 3 in order, across calls");
    ok(v[0]->received_ms > 1700000000000ull && v[0]->received_ms == v[1]->received_ms,
       "assigned: received_ms is Unix time in ms, one per batch");
    ok(strcmp(msg_id_format(&(struct msg_id){ 0x9f1c0a3e5b7d2468ull, 42 }, text),
              "9f1c0a3e5b7d2468-42") == 0 &&
           strcmp(msg_id_format(&(struct msg_id){ 1, UINT64_MAX }, text),
                  "0000000000000001-18446744073709551615") == 0,
       "text form: 16 lowercase hex digits, '-', decimal seq");
    msg_destroy_batch(v, 3);
}

/* msg_body: one frame as it is, several in the binary format, the buffer reused. */
static void
test_body(void)
{
    static const size_t lens[] = { 2, 0, 1 };
    static const unsigned char want[] = { 0x80, 0, 0, 2, 'a', 'b', 0x80, 0, 0, 0, 0, 0, 0, 1, 'c' };
    struct msg *one = msg_create_copy("xyz", 3), *multi = msg_create(3, lens);
    unsigned char *buf = NULL;
    const unsigned char *data;
    size_t cap = 0, len;

    if (!one || !multi) {
        bail_out("msg_create");
    }
    memcpy(msg_frame_data(multi, 0), "ab", 2);
    memcpy(msg_frame_data(multi, 2), "c", 1);
    ok(msg_body(one, &buf, &cap, &data, &len) == 0 && data == msg_frame(one, 0).data && len == 3 &&
           buf == NULL,
       "body of one frame: its payload, not copied");
    ok(msg_body(multi, &buf, &cap, &data, &len) == 0 && data == buf && len == sizeof(want) &&
           memcmp(data, want, len) == 0 && cap >= len,
       "body of three frames: the binary record format");
    ok(msg_body(multi, &buf, &cap, &data, &len) == 0 && data == buf && cap == sizeof(want),
       "the buffer is reused");
    free(buf);
    msg_destroy(one);
    msg_destroy(multi);
}

int
main(void)
{
    test_identity();
    test_body();
    test_create();
    test_encode();
    test_round_trip();
    test_sequence();
    test_limits();
    test_cost();
    test_garbage();
    test_slabs();
    return done_testing();
}
