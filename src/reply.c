/*
 * reply.c - the reply protocol of router mode; see reply.h.
 */
#include "config.h"

#include "reply.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <zmq.h>

#include "util.h"

const char *
reply_text(const char *why, char *buf, size_t cap)
{
    if (!why) {
        return REPLY_OK_TEXT;
    }
    snprintf(buf, cap, REPLY_ERR_TEXT " %s", why);
    return buf;
}

/* Classifies a reply's text (len bytes): REPLY_OK, REPLY_ERR or -EPROTO. */
static int
reply_parse(const char *text, size_t len)
{
    size_t ok_len = sizeof(REPLY_OK_TEXT) - 1;
    size_t err_len = sizeof(REPLY_ERR_TEXT) - 1;

    if (len == ok_len && memcmp(text, REPLY_OK_TEXT, ok_len) == 0) {
        return REPLY_OK;
    }
    if (len >= err_len && memcmp(text, REPLY_ERR_TEXT, err_len) == 0) {
        return REPLY_ERR;
    }
    return -EPROTO;
}

/*
 * recv_text_at reads one reply from sock, without waiting for its first
 * frame, whose text is frame number text_part: 0 for the bare envelope, 1
 * after the empty delimiter.  Returns as reply_recv does.
 */
static int
recv_text_at(void *sock, size_t text_part, char *text, size_t cap)
{
    zmq_msg_t part;
    size_t nparts = 0;
    bool is_framed = true; /* so far: the envelope, then one text frame */
    int kind = -EPROTO;
    int more;

    do {
        zmq_msg_init(&part);
        if (zmq_msg_recv(&part, sock, nparts == 0 ? ZMQ_DONTWAIT : 0) < 0) {
            int err = zmq_errno();

            zmq_msg_close(&part);
            return nparts == 0 && (err == EAGAIN || err == EINTR) ? REPLY_NONE : -err;
        }
        const char *data = zmq_msg_data(&part);
        size_t len = zmq_msg_size(&part);

        more = zmq_msg_more(&part);
        if (nparts < text_part) {
            is_framed = len == 0 && more;
        } else {
            is_framed = is_framed && nparts == text_part && !more;
            kind = is_framed ? reply_parse(data, len) : -EPROTO;
        }
        /* The delimiter is no text; a lone first frame is (a bad reply). */
        if (kind != REPLY_OK && (nparts >= text_part || !more)) {
            (void)util_printable(text, cap, data, len);
        }
        nparts++;
        zmq_msg_close(&part);
    } while (more);
    return kind;
}

int
reply_recv(void *sock, char *text, size_t cap)
{
    return recv_text_at(sock, 1, text, cap);
}

int
reply_recv_bare(void *sock, char *text, size_t cap)
{
    return recv_text_at(sock, 0, text, cap);
}
