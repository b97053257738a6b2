/*
 * test_sink_zmq.c - the dealer zmq sink (sink_zmq_dealer.c) against a
 * ROUTER socket that the test drives by hand, one step at a time
 * (single-threaded, so every interleaving is chosen, not hoped for): the window, the acknowledged
 * prefix as taken, ERR replies to the dead-letter file, a resend after
 * ack_timeout on a new connection that ignores late replies, a resend after
 * the downstream restarts, the drain deadline, a new batch after an
 * abandoned one, a reply that is neither OK nor ERR, and a dead-letter
 * file that cannot be synced.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "../../src/sink_zmq_dealer.c"
#include "../../src/spool.c" /* to inject fdatasync failures */
#include "tap.h"

static char dir[] = "/tmp/zpipe-test-zmq-XXXXXX";
static char endpoint[256];
static void *ctx;
static void *router;
static _Atomic bool cancelled;

struct got {
    char id[64];
    size_t idlen;
    char payload[256]; /* frames joined by '|' */
};

static void
bind_router(void)
{
    int zero = 0;

    router = zmq_socket(ctx, ZMQ_ROUTER);
    if (!router || zmq_setsockopt(router, ZMQ_LINGER, &zero, sizeof(zero)) < 0 ||
        zmq_bind(router, endpoint) < 0) {
        bail_out("router on %s: %s", endpoint, zmq_strerror(zmq_errno()));
    }
}

/* Receives one message within ms; returns 0, or -1 if none came. */
static int
recv_one(struct got *g, long ms)
{
    zmq_pollitem_t item = { .socket = router, .events = ZMQ_POLLIN };
    size_t nparts = 0, pos = 0;
    int more;

    if (zmq_poll(&item, 1, ms) <= 0) {
        return -1;
    }
    do {
        char buf[256];
        int r = zmq_recv(router, buf, sizeof(buf), 0);
        size_t len;

        if (r < 0) {
            bail_out("zmq_recv: %s", zmq_strerror(zmq_errno()));
        }
        len = (size_t)r < sizeof(buf) ? (size_t)r : sizeof(buf);
        more = 0;
        zmq_getsockopt(router, ZMQ_RCVMORE, &more, &(size_t){ sizeof(more) });
        if (nparts == 0) {
            memcpy(g->id, buf, len);
            g->idlen = len;
        } else if (nparts == 1) {
            if (len != 0) {
                bail_out("the dealer sink sent no empty delimiter");
            }
        } else {
            if (nparts > 2) {
                g->payload[pos++] = '|';
            }
            memcpy(g->payload + pos, buf, len);
            pos += len;
        }
        nparts++;
    } while (more);
    g->payload[pos] = '\0';
    return 0;
}

static void
reply(const struct got *g, const char *text)
{
    if (zmq_send(router, g->id, g->idlen, ZMQ_SNDMORE) < 0 ||
        zmq_send(router, "", 0, ZMQ_SNDMORE) < 0 || zmq_send(router, text, strlen(text), 0) < 0) {
        bail_out("reply: %s", zmq_strerror(zmq_errno()));
    }
}

static bool
same_peer(const struct got *a, const struct got *b)
{
    return a->idlen == b->idlen && memcmp(a->id, b->id, a->idlen) == 0;
}

static void
config(struct conf *cfg, uint64_t sndhwm, uint64_t ack_timeout_ms)
{
    if (conf_init_defaults(cfg) < 0) {
        bail_out("conf_init_defaults");
    }
    cfg->zmq_mode = CONF_ZMQMODE_DEALER;
    free(cfg->zmq_endpoints.items[0]);
    cfg->zmq_endpoints.items[0] = strdup(endpoint);
    free(cfg->daemon_spool_dir);
    cfg->daemon_spool_dir = strdup(dir);
    cfg->output_batch = 16;
    cfg->zmq_sndhwm = sndhwm;
    cfg->zmq_ack_timeout = ack_timeout_ms;
}

static size_t stored; /* messages the sink reported SINK_STORED */

static void
on_done(void *arg, size_t n, enum sink_outcome outcome, int err)
{
    (void)arg;
    (void)err;
    if (outcome == SINK_STORED) {
        stored += n;
    }
}

/* dealer_write submits b[0..n); *taken is how many the call reported stored. */
static int
dealer_write(void *state, struct msg *const *b, size_t n, size_t *taken)
{
    size_t accepted = 0, before = stored;
    int err = sink_zmq_dealer_ops.submit(state, b, n, &accepted);

    *taken = stored - before;
    return err;
}

static void *
open_sink(const struct conf *cfg)
{
    static struct sink_env env;
    void *state;

    env.cfg = cfg;
    env.zctx = ctx;
    env.is_cancelled = &cancelled;
    if (sink_zmq_dealer_ops.open(&env, on_done, NULL, &state) < 0) {
        bail_out("open the dealer sink");
    }
    return state;
}

static struct msg **
make_batch(const char *prefix, size_t n)
{
    struct msg **b = calloc(n, sizeof(*b));

    for (size_t i = 0; i < n; i++) {
        char s[32];

        snprintf(s, sizeof(s), "%s%zu", prefix, i);
        b[i] = msg_create_copy(s, strlen(s));
        if (!b[i]) {
            bail_out("msg_create_copy");
        }
    }
    return b;
}

static void
free_batch(struct msg **b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        msg_destroy(b[i]);
    }
    free(b);
}

/* Receives exactly want messages (and checks no more come within 150 ms). */
static bool
recv_exactly(struct got *g, size_t want)
{
    struct got extra;

    for (size_t i = 0; i < want; i++) {
        if (recv_one(&g[i], 2000) < 0) {
            diag("only %zu of %zu messages arrived", i, want);
            return false;
        }
    }
    if (recv_one(&extra, 150) == 0) {
        diag("one more than %zu arrived: %s", want, extra.payload);
        return false;
    }
    return true;
}

/* Calls write until it sends something the router receives, at most 50 times. */
static int
write_until_sent(void *state, struct msg **b, size_t n, size_t *taken, struct got *g)
{
    for (int i = 0; i < 50; i++) {
        int r;

        *taken = 0;
        r = dealer_write(state, b, n, taken);
        if (recv_one(g, 0) == 0) {
            return r;
        }
        if (r == 0 || *taken > 0) {
            return r;
        }
    }
    bail_out("nothing arrived after 50 writes");
}

/* Throws away what an earlier test left in the router. */
static void
drain_router(void)
{
    struct got g;

    while (recv_one(&g, 50) == 0) {
    }
}

/*
 * Writes b[*done..n) again and again, as the consumer does, until the sink
 * has taken want messages in all (or the whole batch), at most 30 times:
 * the replies may take a while on a loaded machine.  Returns the last
 * write's result.
 */
static int
pump(void *state, struct msg **b, size_t n, size_t *done, size_t want)
{
    int r = -EAGAIN;

    for (int i = 0; i < 30 && *done < want; i++) {
        size_t t = 0;

        r = dealer_write(state, b + *done, n - *done, &t);
        *done = r == 0 ? n : *done + t; /* taken is set on failure only */
    }
    return r;
}

static void
test_window_and_prefix(void)
{
    struct conf cfg;
    struct msg **b = make_batch("w", 10);
    static const char *const parts[] = { "multi", "part" };
    static const size_t lens[] = { 5, 4 };
    struct got g[10];
    size_t taken = 0, done = 0;
    void *state;
    int r;

    msg_destroy(b[3]);
    b[3] = msg_create(2, lens);
    memcpy(msg_frame_data(b[3], 0), parts[0], 5);
    memcpy(msg_frame_data(b[3], 1), parts[1], 4);
    config(&cfg, 4, 60000);
    state = open_sink(&cfg);

    r = write_until_sent(state, b, 10, &taken, &g[0]);
    ok(r == -EINPROGRESS && taken == 0, "no reply yet: -EINPROGRESS, nothing taken (r %d, taken %zu)", r,
       taken);
    ok(recv_exactly(g + 1, 3), "a window of sndhwm = 4 messages is sent, no more");
    ok(strcmp(g[0].payload, "w0") == 0 && strcmp(g[2].payload, "w2") == 0 &&
           strcmp(g[3].payload, "multi|part") == 0,
       "in batch order, after an empty delimiter, multipart as multipart (%s %s %s)", g[0].payload,
       g[2].payload, g[3].payload);
    reply(&g[0], "OK");
    reply(&g[1], "OK");
    r = pump(state, b, 10, &done, 2);
    ok(r == -EINPROGRESS && done == 2, "two OKs: two taken (r %d, taken %zu)", r, done);
    ok(recv_exactly(g + 4, 2), "... and two more sent to fill the window");
    for (int i = 2; i < 6; i++) {
        reply(&g[i], "OK");
    }
    r = pump(state, b, 10, &done, 6);
    ok(r == -EINPROGRESS && done == 6, "the rest of the batch: four more taken (r %d, taken %zu)", r,
       done - 2);
    ok(recv_exactly(g + 6, 4), "... the last four sent");
    reply(&g[6], "OK");
    reply(&g[7], "ERR message too large");
    reply(&g[8], "OK");
    reply(&g[9], "OK");
    r = pump(state, b, 10, &done, 10);
    ok(r == 0, "all answered, one with ERR: the write succeeds (r %d)", r);
    {
        struct sink_zmq_dealer *z = state;
        const char *name = z->dl ? spool_writer_name(z->dl) : NULL;
        char path[512];
        unsigned char want[64], got[64];
        size_t len = msg_encode_binary(b[7], want);
        FILE *f;

        snprintf(path, sizeof(path), "%s/%s", dir, name ? name : "(none)");
        f = fopen(path, "rb");
        size_t n = f ? fread(got, 1, sizeof(got), f) : 0;

        ok(z->refused == 1 && z->resent == 0, "one refusal counted, nothing resent");
        ok(f && n == len && memcmp(got, want, len) == 0,
           "the refused message, alone, is in the dead-letter file %s", path);
        ok(name && strncmp(name, "deadletter-", 11) == 0 && !spool_is_spill_name(name),
           "... which replay does not read");
        if (f) {
            fclose(f);
        }
        unlink(path);
    }
    sink_zmq_dealer_ops.close(state);
    free_batch(b, 10);
    conf_free(&cfg);
}

static void
test_ack_timeout(void)
{
    struct conf cfg;
    struct msg **b = make_batch("t", 3);
    struct got g[3], h[3];
    size_t taken = 0, done;
    void *state;
    int r;

    config(&cfg, 1000, 1000);
    state = open_sink(&cfg);
    r = write_until_sent(state, b, 3, &taken, &g[0]);
    ok(r == -EINPROGRESS && taken == 0 && recv_exactly(g + 1, 2), "three sent, no reply");
    /* Past ack_timeout the sink reconnects and resends. */
    for (int i = 0; i < 50 && recv_one(&h[0], 0) < 0; i++) {
        taken = 0;
        r = dealer_write(state, b, 3, &taken);
    }
    ok(taken == 0 && recv_exactly(h + 1, 2), "after ack_timeout the three are sent again");
    ok(!same_peer(&g[0], &h[0]) && strcmp(h[0].payload, "t0") == 0,
       "... on a new connection, in order");
    /* Late replies on the old connection must not count. */
    for (int i = 0; i < 3; i++) {
        reply(&g[i], "OK");
    }
    reply(&h[0], "OK");
    done = 0;
    r = pump(state, b, 3, &done, 1);
    for (int i = 0; i < 3; i++) { /* time for a wrong match to show */
        taken = 0;
        r = dealer_write(state, b + done, 3 - done, &taken);
        done += r == 0 ? 3 - done : taken;
    }
    ok(r == -EINPROGRESS && done == 1,
       "late OKs on the old connection are ignored: one OK, one taken (r %d, taken %zu)", r, done);
    reply(&h[1], "OK");
    reply(&h[2], "OK");
    r = pump(state, b, 3, &done, 3);
    ok(r == 0, "the rest acknowledged (r %d)", r);
    ok(((struct sink_zmq_dealer *)state)->resent == 3, "three resent");
    sink_zmq_dealer_ops.close(state);
    free_batch(b, 3);
    conf_free(&cfg);
}

static void
test_restart(void)
{
    struct conf cfg;
    struct msg **b = make_batch("r", 2);
    struct got g[2], h[2];
    size_t taken = 0;
    int r = 0;
    void *state;

    config(&cfg, 1000, 600000); /* only the lost connection can cause a resend */
    state = open_sink(&cfg);
    r = write_until_sent(state, b, 2, &taken, &g[0]);
    ok(r == -EINPROGRESS && recv_exactly(g + 1, 1), "two sent, no reply");
    zmq_close(router); /* the downstream stops and starts again */
    bind_router();
    for (int i = 0; i < 50 && recv_one(&h[0], 0) < 0; i++) {
        taken = 0;
        r = dealer_write(state, b, 2, &taken);
    }
    ok(taken == 0 && recv_exactly(h + 1, 1) && strcmp(h[0].payload, "r0") == 0,
       "the downstream restarted: both resent at once, in order");
    reply(&h[0], "OK");
    reply(&h[1], "OK");
    taken = 0;
    r = pump(state, b, 2, &taken, 2);
    ok(r == 0, "acknowledged by the new downstream (r %d)", r);
    sink_zmq_dealer_ops.close(state);
    free_batch(b, 2);
    conf_free(&cfg);
}

/* With no peer nothing can be sent: -EAGAIN (the consumer backs off), not
 * -EINPROGRESS (which is for messages awaiting a reply). */
static void
test_no_peer(void)
{
    struct conf cfg;
    struct msg **b = make_batch("n", 2);
    size_t taken = 0;
    void *state;
    int r;

    config(&cfg, 1000, 60000);
    free(cfg.zmq_endpoints.items[0]);
    cfg.zmq_endpoints.items[0] = strdup("ipc:///nonexistent/zpipe-test-no-peer");
    state = open_sink(&cfg);
    r = dealer_write(state, b, 2, &taken);
    ok(r == -EAGAIN && taken == 0, "no peer: -EAGAIN, nothing taken (r %d, taken %zu)", r, taken);
    sink_zmq_dealer_ops.close(state);
    free_batch(b, 2);
    conf_free(&cfg);
}

static void
test_cancel_and_new_batch(void)
{
    struct conf cfg;
    struct msg **b = make_batch("c", 4), **b2 = make_batch("d", 2);
    struct got g[4], h[2];
    size_t taken = 0;
    void *state;
    int r;

    config(&cfg, 1000, 600000);
    state = open_sink(&cfg);
    r = write_until_sent(state, b, 4, &taken, &g[0]);
    ok(r == -EINPROGRESS && recv_exactly(g + 1, 3), "four sent");
    reply(&g[0], "OK");
    reply(&g[1], "OK");
    atomic_store(&cancelled, true);
    {
        /* Cancelled, a write returns at once with what is acknowledged so
         * far; the two OKs may still be on their way. */
        size_t total = 0;
        bool is_cancel = true;

        for (int i = 0; i < 1000 && total < 2; i++) {
            struct timespec ts = { 0, 2000000 };

            taken = 0;
            r = dealer_write(state, b + total, 4 - total, &taken);
            is_cancel = is_cancel && r == -ECANCELED;
            total += taken;
            nanosleep(&ts, NULL);
        }
        taken = 0;
        r = dealer_write(state, b + total, 4 - total, &taken);
        is_cancel = is_cancel && r == -ECANCELED;
        total += taken;
        ok(is_cancel && total == 2,
           "drain deadline: -ECANCELED, the two acknowledged taken, no more (taken %zu)", total);
    }
    atomic_store(&cancelled, false);
    /* The consumer spills c2, c3 and goes on with a new batch; late OKs
     * for c2 and c3 must not count for it. */
    reply(&g[2], "OK");
    reply(&g[3], "OK");
    r = write_until_sent(state, b2, 2, &taken, &h[0]);
    ok(r == -EINPROGRESS && taken == 0 && recv_exactly(h + 1, 1),
       "a new batch: nothing taken on the old batch's replies");
    ok(!same_peer(&g[0], &h[0]) && strcmp(h[0].payload, "d0") == 0, "... sent on a new connection");
    reply(&h[0], "OK");
    reply(&h[1], "OK");
    taken = 0;
    r = pump(state, b2, 2, &taken, 2);
    ok(r == 0, "the new batch is acknowledged (r %d)", r);
    sink_zmq_dealer_ops.close(state);
    free_batch(b, 4);
    free_batch(b2, 2);
    conf_free(&cfg);
}

static void
test_bad_reply(void)
{
    struct conf cfg;
    struct msg **b = make_batch("p", 1);
    struct got g, h;
    size_t taken = 0;
    void *state;
    int r;

    config(&cfg, 1000, 600000);
    state = open_sink(&cfg);
    r = write_until_sent(state, b, 1, &taken, &g);
    ok(r == -EINPROGRESS, "one sent");
    reply(&g, "WHAT");
    for (int i = 0; i < 10 && recv_one(&h, 0) < 0; i++) {
        taken = 0;
        r = dealer_write(state, b, 1, &taken);
    }
    ok(taken == 0 && !same_peer(&g, &h) && strcmp(h.payload, "p0") == 0,
       "a reply that is neither OK nor ERR: nothing taken, resent on a new connection");
    reply(&h, "OK");
    taken = 0;
    r = pump(state, b, 1, &taken, 1);
    ok(r == 0, "then acknowledged (r %d)", r);
    sink_zmq_dealer_ops.close(state);
    free_batch(b, 1);
    conf_free(&cfg);
}

static int
failing_fdatasync(int fd)
{
    (void)fd;
    errno = EIO;
    return -1;
}

/* Counts the dead-letter files in dir, and names the last one in name. */
static int
count_dead_letters(char *name, size_t len)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;

    while (d && (e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, "deadletter-", 11) == 0) {
            snprintf(name, len, "%s/%s", dir, e->d_name);
            n++;
        }
    }
    if (d) {
        closedir(d);
    }
    return n;
}

static void
test_dead_letter_sync_fails(void)
{
    struct conf cfg;
    struct msg **b = make_batch("d", 2);
    struct got g[2];
    char path[512];
    unsigned char want[64], got[64];
    size_t len = msg_encode_binary(b[0], want), n = 0, taken = 0, done = 0;
    void *state;
    FILE *f;
    int r;

    config(&cfg, 1000, 600000);
    state = open_sink(&cfg);
    r = write_until_sent(state, b, 2, &taken, &g[0]);
    ok(r == -EINPROGRESS && recv_exactly(g + 1, 1), "two sent");
    reply(&g[0], "ERR message too large");
    reply(&g[1], "OK");
    spool_fdatasync = failing_fdatasync;
    r = pump(state, b, 2, &done, 1);
    ok(r == -EIO && done == 0 && count_dead_letters(path, sizeof(path)) == 0,
       "the dead-letter file cannot be synced: the write fails, nothing taken, no file (r %d)", r);
    spool_fdatasync = fdatasync;
    r = pump(state, b, 2, &done, 2);
    f = count_dead_letters(path, sizeof(path)) == 1 ? fopen(path, "rb") : NULL;
    n = f ? fread(got, 1, sizeof(got), f) : 0;
    ok(r == 0 && done == 2 && f && n == len && memcmp(got, want, len) == 0,
       "once it syncs: both taken, the refused message once in the file, nothing torn (r %d)", r);
    if (f) {
        fclose(f);
        unlink(path);
    }
    sink_zmq_dealer_ops.close(state);
    free_batch(b, 2);
    conf_free(&cfg);
}

static void
test_two_endpoints(void)
{
    char ep2[300];
    struct conf cfg;
    struct msg **b = make_batch("e", 6);
    struct got g[6], h[3];
    void *router2, *first = router, *state;
    bool is_up2 = false;
    size_t taken = 0, n1 = 0;
    char **items;
    int r, zero = 0;

    snprintf(ep2, sizeof(ep2), "ipc://%s/down2", dir);
    config(&cfg, 1000, 600000);
    items = realloc(cfg.zmq_endpoints.items, 2 * sizeof(*items));
    if (!items) {
        bail_out("realloc");
    }
    items[1] = strdup(ep2);
    cfg.zmq_endpoints.items = items;
    cfg.zmq_endpoints.n = 2;
    state = open_sink(&cfg);

    /* Only the first endpoint has a peer: everything goes there. */
    r = write_until_sent(state, b, 6, &taken, &g[0]);
    ok(r == -EINPROGRESS && recv_exactly(g + 1, 5), "with one of two peers up, all six go to it");
    for (int i = 0; i < 6; i++) {
        reply(&g[i], "OK");
    }
    taken = 0;
    r = pump(state, b, 6, &taken, 6);
    ok(r == 0, "and are acknowledged (r %d)", r);

    /* Both up (once the second connection is made, which a two-message
     * batch shows: the second message goes to the idle socket): the
     * messages are spread, and acknowledgements out of batch order count
     * only as a prefix. */
    router2 = zmq_socket(ctx, ZMQ_ROUTER);
    if (!router2 || zmq_setsockopt(router2, ZMQ_LINGER, &zero, sizeof(zero)) < 0 ||
        zmq_bind(router2, ep2) < 0) {
        bail_out("second router");
    }
    for (int i = 0; i < 100 && !is_up2; i++) {
        struct msg **probe = make_batch("probe", 2);
        size_t total = 0, got1 = 0;

        for (int k = 0; k < 50 && total < 2; k++) {
            taken = 0;
            r = dealer_write(state, probe + total, 2 - total, &taken);
            total = r == 0 ? 2 : total + taken; /* taken is set on failure only */
            while (recv_one(&g[0], 0) == 0) {
                reply(&g[0], "OK");
                got1++;
            }
            router = router2;
            while (recv_one(&h[0], 0) == 0) {
                reply(&h[0], "OK");
                is_up2 = true;
            }
            router = first;
        }
        if (total < 2) {
            bail_out("probe batch not acknowledged");
        }
        free_batch(probe, 2);
        (void)got1;
    }
    ok(is_up2, "the second peer is reached");
    {
        struct msg **c = make_batch("f", 6);
        size_t n2 = 0;

        for (int i = 0; i < 50 && n1 + n2 < 6; i++) {
            taken = 0;
            r = dealer_write(state, c, 6, &taken);
            while (n1 < 6 && recv_one(&g[n1], 0) == 0) {
                n1++;
            }
            router = router2;
            while (n2 < 3 && recv_one(&h[n2], 0) == 0) {
                n2++;
            }
            router = first;
        }
        ok(n1 + n2 == 6 && n2 > 0 && n1 > 0, "with both up, both get messages (%zu and %zu)", n1,
           n2);
        router = router2;
        for (size_t i = 0; i < n2; i++) {
            reply(&h[i], "OK");
        }
        router = first;
        for (int i = 0; i < 3; i++) { /* time for a wrong take to show */
            taken = 0;
            r = dealer_write(state, c, 6, &taken);
        }
        ok(r == -EINPROGRESS && taken == (strcmp(g[0].payload, "f0") == 0 ? 0 : n2),
           "the second peer's OKs alone: only a prefix is taken (taken %zu)", taken);
        for (size_t i = 0; i < n1; i++) {
            reply(&g[i], "OK");
        }
        {
            size_t total = taken;

            for (int i = 0; i < 20 && total < 6; i++) {
                taken = 0;
                r = dealer_write(state, c + total, 6 - total, &taken);
                total = r == 0 ? 6 : total + taken;
            }
            ok(total == 6 && r == 0, "all acknowledged: all taken (%zu, r %d)", total, r);
        }
        free_batch(c, 6);
    }
    sink_zmq_dealer_ops.close(state);
    zmq_close(router2);
    free_batch(b, 6);
    conf_free(&cfg);
}

int
main(void)
{
    DIR *d;
    struct dirent *e;

    if (!mkdtemp(dir)) {
        bail_out("mkdtemp");
    }
    snprintf(endpoint, sizeof(endpoint), "ipc://%s/down", dir);
    ctx = zmq_ctx_new();
    if (!ctx) {
        bail_out("zmq_ctx_new");
    }
    bind_router();
    test_window_and_prefix();
    drain_router();
    test_ack_timeout();
    drain_router();
    test_restart();
    drain_router();
    test_no_peer();
    test_cancel_and_new_batch();
    drain_router();
    test_bad_reply();
    drain_router();
    test_dead_letter_sync_fails();
    drain_router();
    test_two_endpoints();
    zmq_close(router);
    zmq_ctx_term(ctx);
    d = opendir(dir);
    while (d && (e = readdir(d)) != NULL) {
        if (e->d_name[0] != '.') {
            char p[512];

            snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
            unlink(p);
        }
    }
    if (d) {
        closedir(d);
    }
    rmdir(dir);
    return done_testing();
}
