/*
 * test_reply.c - the reply protocol (reply.c): the texts zpiped sends, and
 * reply_recv() and reply_recv_bare() reading real replies on a DEALER socket
 * from a ROUTER over inproc.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <zmq.h>

#include "reply.h"
#include "tap.h"

static void *router, *dealer;
static zmq_msg_t identity; /* the dealer's routing id, from its hello */

/* answer sends the dealer a reply of n frames, after its routing id. */
static void
answer(const char *const *frames, int n)
{
    zmq_msg_t id;

    zmq_msg_init(&id);
    zmq_msg_copy(&id, &identity);
    if (zmq_msg_send(&id, router, ZMQ_SNDMORE) < 0) {
        bail_out("send the routing id: %s", zmq_strerror(zmq_errno()));
    }
    for (int i = 0; i < n; i++) {
        if (zmq_send(router, frames[i], strlen(frames[i]), i + 1 < n ? ZMQ_SNDMORE : 0) < 0) {
            bail_out("send a frame: %s", zmq_strerror(zmq_errno()));
        }
    }
}

/* wait_reply waits for the dealer's next reply, or 5 s. */
static void
wait_reply(void)
{
    zmq_pollitem_t it = { .socket = dealer, .events = ZMQ_POLLIN };

    (void)zmq_poll(&it, 1, 5000);
}

/* next waits for the dealer's next reply and reads it with reply_recv. */
static int
next(char *text, size_t cap)
{
    wait_reply();
    return reply_recv(dealer, text, cap);
}

/* next_bare is next with reply_recv_bare. */
static int
next_bare(char *text, size_t cap)
{
    wait_reply();
    return reply_recv_bare(dealer, text, cap);
}

int
main(void)
{
    static const char *const ok_reply[] = { "", "OK" };
    static const char *const err_reply[] = { "", "ERR queue full" };
    static const char *const bare[] = { "OK" };
    static const char *const bare_err[] = { "ERR queue full" };
    static const char *const three[] = { "", "OK", "more" };
    static const char *const odd[] = { "", "MAYBE\x01" };
    char buf[REPLY_TEXT_MAX + 1], text[16];
    void *ctx = zmq_ctx_new();
    int r;

    plan(17);
    ok(strcmp(reply_text(NULL, buf, sizeof(buf)), "OK") == 0, "reply_text(NULL) is OK");
    ok(strcmp(reply_text("queue full", buf, sizeof(buf)), "ERR queue full") == 0,
       "reply_text(why) is ERR why");
    {
        char small[8];

        ok(strcmp(reply_text("a long reason", small, sizeof(small)), "ERR a l") == 0,
           "reply_text cuts to the buffer (\"%s\")", small);
    }

    router = zmq_socket(ctx, ZMQ_ROUTER);
    dealer = zmq_socket(ctx, ZMQ_DEALER);
    if (zmq_bind(router, "inproc://reply") < 0 || zmq_connect(dealer, "inproc://reply") < 0) {
        bail_out("inproc pair: %s", zmq_strerror(zmq_errno()));
    }
    zmq_send(dealer, "hello", 5, 0);
    zmq_msg_init(&identity);
    if (zmq_msg_recv(&identity, router, 0) < 0) {
        bail_out("the dealer's routing id");
    }
    {
        char hello[8];

        (void)zmq_recv(router, hello, sizeof(hello), 0);
    }

    ok(reply_recv(dealer, text, sizeof(text)) == REPLY_NONE, "nothing waiting: REPLY_NONE");
    strcpy(text, "kept");
    answer(ok_reply, 2);
    ok(next(text, sizeof(text)) == REPLY_OK && strcmp(text, "kept") == 0,
       "[\"\", \"OK\"]: REPLY_OK, text left as it was (\"%s\")", text);
    answer(err_reply, 2);
    ok(next(text, sizeof(text)) == REPLY_ERR && strcmp(text, "ERR queue full") == 0,
       "[\"\", \"ERR queue full\"]: REPLY_ERR with its text (\"%s\")", text);
    answer(ok_reply, 2);
    ok(next(text, sizeof(text)) == REPLY_OK && strcmp(text, "ERR queue full") == 0,
       "an OK after an ERR leaves the ERR's text (\"%s\")", text);
    answer(bare, 1);
    r = next(text, sizeof(text));
    ok(r == -EPROTO && strcmp(text, "OK") == 0,
       "one frame, no delimiter: -EPROTO, its frame as the text (%d, \"%s\")", r, text);
    answer(three, 3);
    r = next(text, sizeof(text));
    ok(r == -EPROTO && strcmp(text, "more") == 0,
       "three frames: -EPROTO, the last as the text (%d, \"%s\")", r, text);
    answer(odd, 2);
    r = next(text, sizeof(text));
    ok(r == -EPROTO && strcmp(text, "MAYBE?") == 0,
       "neither OK nor ERR: -EPROTO, unprintable bytes as '?' (\"%s\")", text);
    answer(err_reply, 2);
    r = next(text, 8);
    ok(r == REPLY_ERR && strcmp(text, "ERR que") == 0, "the text is cut to cap - 1 (\"%s\")",
       text);
    ok(reply_recv(dealer, text, sizeof(text)) == REPLY_NONE, "every frame was read");

    ok(reply_recv_bare(dealer, text, sizeof(text)) == REPLY_NONE,
       "bare: nothing waiting: REPLY_NONE");
    answer(bare, 1);
    ok(next_bare(text, sizeof(text)) == REPLY_OK, "bare: [\"OK\"]: REPLY_OK");
    answer(bare_err, 1);
    ok(next_bare(text, sizeof(text)) == REPLY_ERR && strcmp(text, "ERR queue full") == 0,
       "bare: [\"ERR queue full\"]: REPLY_ERR with its text (\"%s\")", text);
    answer(ok_reply, 2);
    r = next_bare(text, sizeof(text));
    ok(r == -EPROTO && strcmp(text, "OK") == 0,
       "bare: [\"\", \"OK\"]: -EPROTO, the last frame as the text (%d, \"%s\")", r, text);
    ok(reply_recv_bare(dealer, text, sizeof(text)) == REPLY_NONE, "bare: every frame was read");

    zmq_msg_close(&identity);
    zmq_close(dealer);
    zmq_close(router);
    zmq_ctx_term(ctx);
    return done_testing();
}
