/*
 * msg.c - the message object and its binary record format.
 */
#include "config.h"
#include "msg.h"

#include <errno.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

/*
 * A slab: refs, then the carved messages, each at a 16-byte boundary.  refs
 * starts at SLAB_BIAS while the producer carves (so carving needs no atomic
 * operation per message); destroying a message takes 1 off, and the
 * producer takes off SLAB_BIAS - carved when it moves on.  Whoever brings
 * refs to 0 frees the slab.
 */
struct msg_slab {
    _Atomic uint64_t refs;
    uint64_t pad;               /* keeps the first message 16-byte aligned */
};

#define SLAB_BIAS   ((uint64_t)1 << 48)
#define SLAB_ALIGN  16u
#define SLAB_SPARES 4           /* freed slabs kept for reuse */

/* A message's slab_off is its offset in the slab in SLAB_ALIGN units; the
 * slab's own header is at 0, so 0 means a message of its own allocation. */
_Static_assert(MSG_SLAB_SIZE / SLAB_ALIGN <= 1u << 15, "slab_off must hold every offset");
_Static_assert(sizeof(struct msg) % _Alignof(struct msg_frame) == 0, "the frame table aligns");
_Static_assert(sizeof(struct msg_slab) % SLAB_ALIGN == 0, "slab pieces align");

/* Freed slabs kept for the next producer that needs one; NULL = empty slot.
 * Only exchanged whole, so there is no ABA problem. */
static _Atomic(struct msg_slab *) slab_spares[SLAB_SPARES];

static struct msg_slab *
slab_new(void)
{
    struct msg_slab *s = NULL;

    for (size_t i = 0; i < SLAB_SPARES && s == NULL; i++) {
        s = atomic_exchange_explicit(&slab_spares[i], NULL, memory_order_acquire);
    }
    if (s == NULL) {
        s = malloc(MSG_SLAB_SIZE);
        if (s == NULL) {
            return NULL;
        }
    }
    atomic_store_explicit(&s->refs, SLAB_BIAS, memory_order_relaxed);
    return s;
}

/* slab_unref takes n references off s and frees it with the last one. */
static void
slab_unref(struct msg_slab *s, uint64_t n)
{
    if (atomic_fetch_sub_explicit(&s->refs, n, memory_order_acq_rel) != n) {
        return;
    }
    for (size_t i = 0; i < SLAB_SPARES; i++) {
        struct msg_slab *expected = NULL;

        if (atomic_compare_exchange_strong_explicit(&slab_spares[i], &expected, s,
                                                    memory_order_release,
                                                    memory_order_relaxed)) {
            return;
        }
    }
    free(s);
}

/* This run's origin, set once at start; the last seq given out. */
static _Atomic uint64_t id_origin;
static _Atomic uint64_t id_seq;

int
msg_id_init(void)
{
    uint64_t origin;
    ssize_t n;

    /* Blocks only until the kernel's pool is first initialised (early boot). */
    while ((n = getrandom(&origin, sizeof(origin), 0)) < 0 && errno == EINTR) {
    }
    if (n < 0) {
        return -errno;
    }
    if (n != (ssize_t)sizeof(origin)) {
        return -EIO;
    }
    atomic_store(&id_origin, origin);
    atomic_store(&id_seq, 0);
    return 0;
}

uint64_t
msg_id_origin(void)
{
    return atomic_load_explicit(&id_origin, memory_order_relaxed);
}

void
msg_id_assign(struct msg *const *v, size_t n)
{
    uint64_t origin = msg_id_origin();
    uint64_t seq = atomic_fetch_add_explicit(&id_seq, n, memory_order_relaxed);
    struct timespec ts;
    uint64_t now_ms;

    clock_gettime(CLOCK_REALTIME, &ts);
    now_ms = (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
    for (size_t i = 0; i < n; i++) {
        v[i]->id.origin = origin;
        v[i]->id.seq = ++seq;
        v[i]->received_ms = now_ms;
    }
}

char *
msg_id_format(const struct msg_id *id, char buf[MSG_ID_TEXT_MAX])
{
    snprintf(buf, MSG_ID_TEXT_MAX, "%016" PRIx64 "-%" PRIu64, id->origin, id->seq);
    return buf;
}

/* msg_slab returns the slab m was carved from, or NULL. */
static struct msg_slab *
msg_slab(const struct msg *m)
{
    if (m->slab_off == 0) {
        return NULL;
    }
    return (struct msg_slab *)((uintptr_t)m - (uintptr_t)m->slab_off * SLAB_ALIGN);
}

/* msg_table returns m's frame table (more than one frame only). */
static struct msg_frame *
msg_table(struct msg *m)
{
    return (struct msg_frame *)(m + 1);
}

/*
 * msg_block_size returns the bytes of a message with nframes frames (1 ..
 * MSG_FRAMES_MAX: the table is at most 1 MiB) and size payload bytes, or 0
 * when that is more than a size_t holds (a 32-bit machine).
 */
static size_t
msg_block_size(size_t nframes, size_t size)
{
    size_t head = sizeof(struct msg) + (nframes > 1 ? nframes * sizeof(struct msg_frame) : 0);

    return size > SIZE_MAX - head ? 0 : head + size;
}

/* msg_init fills in everything in m but the frame table. */
static struct msg *
msg_init(struct msg *m, size_t slab_off, size_t nframes, size_t size)
{
    m->next = NULL;
    m->ack = NULL;
    m->id = (struct msg_id){ 0, 0 };
    m->received_ms = 0;
    m->size = (uint32_t)size;
    m->nframes = (uint32_t)nframes & 0x1ffffu;
    m->slab_off = (uint32_t)(slab_off / SLAB_ALIGN) & 0x7fffu;
    return m;
}

/*
 * msg_alloc allocates one block for the header, nframes frame table entries
 * and size payload bytes, and fills in everything but the frame table.
 * Returns NULL on overflow or when out of memory.
 */
static struct msg *
msg_alloc(size_t nframes, size_t size)
{
    size_t total = msg_block_size(nframes, size);
    struct msg *m;

    if (total == 0) {
        return NULL;
    }
    m = malloc(total);
    if (m == NULL) {
        return NULL;
    }
    return msg_init(m, 0, nframes, size);
}

void
msg_arena_release(struct msg_arena *a)
{
    if (a->slab != NULL) {
        slab_unref(a->slab, SLAB_BIAS - a->carved);
    }
    a->slab = NULL;
    a->used = 0;
    a->carved = 0;
}

/* msg_carve is msg_alloc from a's slab; falls back to msg_alloc for big ones. */
static struct msg *
msg_carve(struct msg_arena *a, size_t nframes, size_t size)
{
    size_t total = msg_block_size(nframes, size);
    struct msg *m;

    if (total == 0 || total > MSG_SLAB_PIECE_MAX) {
        return msg_alloc(nframes, size);
    }
    total = (total + SLAB_ALIGN - 1) & ~(size_t)(SLAB_ALIGN - 1);
    if (a->slab == NULL || MSG_SLAB_SIZE - a->used < total) {
        msg_arena_release(a);
        a->slab = slab_new();
        if (a->slab == NULL) {
            return msg_alloc(nframes, size);
        }
        a->used = sizeof(struct msg_slab);
    }
    m = msg_init((struct msg *)((unsigned char *)a->slab + a->used), a->used, nframes, size);
    a->used += total;
    a->carved++;
    return m;
}

/* msg_bytes returns the start of m's payload area, just after the table. */
static unsigned char *
msg_bytes(struct msg *m)
{
    return (unsigned char *)(m + 1) + (m->nframes > 1 ? m->nframes * sizeof(struct msg_frame) : 0);
}

/* msg_fill_table points m's frame table at its payload, lens[i] bytes each. */
static void
msg_fill_table(struct msg *m, const size_t *lens)
{
    struct msg_frame *t = msg_table(m);
    unsigned char *p = msg_bytes(m);

    for (size_t i = 0; i < m->nframes; i++) {
        t[i] = (struct msg_frame){ p, lens[i] };
        p += lens[i];
    }
}

/*
 * msg_create_from creates in a, or on its own when a is NULL.  Not inlined:
 * msg_create_in()'s fast path then saves no registers for it.
 */
__attribute__((noinline)) static struct msg *
msg_create_from(struct msg_arena *a, size_t nframes, const size_t *lens)
{
    size_t size = 0;
    struct msg *m;

    if (nframes == 0 || nframes > MSG_FRAMES_MAX) {
        return NULL;
    }
    for (size_t i = 0; i < nframes; i++) {
        if (lens[i] > MSG_FRAME_MAX || lens[i] > MSG_SIZE_MAX - size) {
            return NULL;
        }
        size += lens[i];
    }
    m = a != NULL ? msg_carve(a, nframes, size) : msg_alloc(nframes, size);
    if (m != NULL && nframes > 1) {
        msg_fill_table(m, lens);
    }
    return m;
}

struct msg *
msg_create(size_t nframes, const size_t *lens)
{
    return msg_create_from(NULL, nframes, lens);
}

struct msg *
msg_create_in(struct msg_arena *a, size_t nframes, const size_t *lens)
{
    /* The producer's usual message, one frame that fits the slab being
     * carved, without the general path: its checks and the registers it
     * saves were a visible part of the per-message cost.  The same block
     * as msg_carve() makes. */
    if (nframes == 1 && a->slab != NULL && lens[0] <= MSG_SLAB_PIECE_MAX) {
        size_t total = sizeof(struct msg) + lens[0];
        struct msg *m;

        total = (total + SLAB_ALIGN - 1) & ~(size_t)(SLAB_ALIGN - 1);
        if (total <= MSG_SLAB_PIECE_MAX && MSG_SLAB_SIZE - a->used >= total) {
            m = msg_init((struct msg *)((unsigned char *)a->slab + a->used), a->used, 1,
                         lens[0]);
            a->used += total;
            a->carved++;
            return m;
        }
    }
    return msg_create_from(a, nframes, lens);
}

struct msg *
msg_create_copy(const void *data, size_t len)
{
    struct msg *m = msg_create(1, &len);

    /* memcpy with a NULL source is undefined even for 0 bytes. */
    if (m != NULL && len > 0) {
        memcpy(msg_frame_data(m, 0), data, len);
    }
    return m;
}

void
msg_destroy(struct msg *m)
{
    struct msg_slab *s = m != NULL ? msg_slab(m) : NULL;

    if (s != NULL) {
        slab_unref(s, 1);
    } else {
        free(m);
    }
}

void
msg_destroy_batch(struct msg *const *v, size_t n)
{
    size_t i = 0;

    while (i < n) {
        struct msg_slab *s = msg_slab(v[i]);
        size_t k = i + 1;

        if (s == NULL) {
            free(v[i]);
            i++;
            continue;
        }
        while (k < n && msg_slab(v[k]) == s) {
            k++;
        }
        slab_unref(s, k - i);
        i = k;
    }
}

size_t
msg_binary_size(const struct msg *m)
{
    return (size_t)m->size + (size_t)m->nframes * MSG_HEADER_SIZE;
}

static void
put_be32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

static uint32_t
get_be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

void
msg_frame_header(const struct msg *m, size_t i, unsigned char hdr[MSG_HEADER_SIZE])
{
    /* msg_create() guarantees len <= MSG_FRAME_MAX, so the cast is exact. */
    uint32_t v = (uint32_t)msg_frame(m, i).len;

    if (i + 1 < m->nframes) {
        v |= MSG_MORE_BIT;
    }
    put_be32(hdr, v);
}

size_t
msg_encode_binary(const struct msg *m, unsigned char *out)
{
    unsigned char *p = out;

    for (size_t i = 0; i < m->nframes; i++) {
        struct msg_frame f = msg_frame(m, i);

        msg_frame_header(m, i, p);
        p += MSG_HEADER_SIZE;
        if (f.len > 0) {
            memcpy(p, f.data, f.len);
            p += f.len;
        }
    }
    return (size_t)(p - out);
}

int
msg_body(const struct msg *m, unsigned char **buf, size_t *cap, const unsigned char **data,
         size_t *len)
{
    size_t need;

    if (m->nframes == 1) {
        struct msg_frame f = msg_frame(m, 0);

        *data = f.data;
        *len = f.len;
        return 0;
    }
    need = msg_binary_size(m);
    if (need > *cap) {
        unsigned char *p = realloc(*buf, need);

        if (p == NULL) {
            return -ENOMEM;
        }
        *buf = p;
        *cap = need;
    }
    *len = msg_encode_binary(m, *buf);
    *data = *buf;
    return 0;
}

int
msg_decode_binary(const unsigned char *buf, size_t len, size_t max_size,
                  struct msg **out, size_t *used)
{
    size_t pos = 0;
    size_t nframes = 0;
    size_t size = 0;
    struct msg *m;
    unsigned char *p;
    uint32_t h;

    if (max_size > MSG_SIZE_MAX) {
        max_size = MSG_SIZE_MAX;
    }
    /*
     * First pass: validate without allocating, so garbage costs nothing and
     * a partial record is never half-built.  Every comparison is written as
     * a subtraction from a bound already checked, so nothing can overflow.
     */
    for (;;) {
        if (len - pos < MSG_HEADER_SIZE) {
            return -EAGAIN;
        }
        h = get_be32(buf + pos);
        if ((h & MSG_FRAME_MAX) > max_size - size) {
            return -EBADMSG;
        }
        if (++nframes > MSG_FRAMES_MAX) {
            return -EBADMSG;
        }
        pos += MSG_HEADER_SIZE;
        if (len - pos < (h & MSG_FRAME_MAX)) {
            return -EAGAIN;
        }
        pos += h & MSG_FRAME_MAX;
        size += h & MSG_FRAME_MAX;
        if (!(h & MSG_MORE_BIT)) {
            break;
        }
    }

    m = msg_alloc(nframes, size);
    if (m == NULL) {
        return -ENOMEM;
    }

    /* Second pass: the record is known good and complete; copy it. */
    p = msg_bytes(m);
    pos = 0;
    for (size_t i = 0; i < nframes; i++) {
        size_t flen = get_be32(buf + pos) & MSG_FRAME_MAX;

        pos += MSG_HEADER_SIZE;
        if (nframes > 1) {
            msg_table(m)[i] = (struct msg_frame){ p, flen };
        }
        if (flen > 0) {
            memcpy(p, buf + pos, flen);
        }
        p += flen;
        pos += flen;
    }
    *out = m;
    *used = pos;
    return 0;
}
