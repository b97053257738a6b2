/*
 * msg.c - the message object and its binary record format.
 */
#include "config.h"
#include "msg.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/*
 * msg_alloc allocates one block for the header, nframes frame table entries
 * and size payload bytes, and fills in everything but the frame table.
 * Returns NULL on overflow or when out of memory.
 */
static struct msg *
msg_alloc(size_t nframes, size_t size)
{
    size_t head = sizeof(struct msg);
    size_t table;
    struct msg *m;

    if (nframes > (SIZE_MAX - head) / sizeof(struct msg_frame)) {
        return NULL;
    }
    table = head + nframes * sizeof(struct msg_frame);
    if (size > SIZE_MAX - table) {
        return NULL;
    }
    /* malloc(0) is never asked for: the header alone is non-empty. */
    m = malloc(table + size);
    if (m == NULL) {
        return NULL;
    }
    m->next = NULL;
    m->size = size;
    m->nframes = nframes;
    return m;
}

/* msg_bytes returns the start of m's payload area, just after the table. */
static unsigned char *
msg_bytes(struct msg *m)
{
    return (unsigned char *)&m->frames[m->nframes];
}

struct msg *
msg_create(size_t nframes, const size_t *lens)
{
    size_t size = 0;
    unsigned char *p;
    struct msg *m;

    if (nframes == 0 || nframes > MSG_FRAMES_MAX) {
        return NULL;
    }
    for (size_t i = 0; i < nframes; i++) {
        if (lens[i] > MSG_FRAME_MAX || lens[i] > SIZE_MAX - size) {
            return NULL;
        }
        size += lens[i];
    }
    m = msg_alloc(nframes, size);
    if (m == NULL) {
        return NULL;
    }
    p = msg_bytes(m);
    for (size_t i = 0; i < nframes; i++) {
        m->frames[i].data = p;
        m->frames[i].len = lens[i];
        p += lens[i];
    }
    return m;
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

unsigned char *
msg_frame_data(struct msg *m, size_t i)
{
    /* The creator owns the storage; data is const only for everyone after. */
    return (unsigned char *)m->frames[i].data;
}

void
msg_destroy(struct msg *m)
{
    free(m);
}

size_t
msg_binary_size(const struct msg *m)
{
    return m->size + m->nframes * MSG_HEADER_SIZE;
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
    uint32_t v = (uint32_t)m->frames[i].len;

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
        msg_frame_header(m, i, p);
        p += MSG_HEADER_SIZE;
        if (m->frames[i].len > 0) {
            memcpy(p, m->frames[i].data, m->frames[i].len);
            p += m->frames[i].len;
        }
    }
    return (size_t)(p - out);
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
        m->frames[i].data = p;
        m->frames[i].len = flen;
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
