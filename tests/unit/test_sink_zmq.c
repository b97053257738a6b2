/*
 * test_sink_zmq.c - the dealer zmq sink (sink_zmq_dealer.c) against a
 * ROUTER socket that the test drives by hand, one step at a time
 * (single-threaded, so every interleaving is chosen, not hoped for): the
 * window per endpoint whatever output.batch is, messages in flight across
 * calls, outcomes from the oldest, ERR replies to the dead-letter file, a
 * resend after ack_timeout on a new connection that ignores late replies, a
 * resend after the downstream restarts, no peer, the drain deadline
 * (abort), a reply that is neither OK nor ERR, a dead-letter file that
 * cannot be synced, and two endpoints answering out of order.  One test is
 * not single-threaded: a downstream in its own thread answering at once and
 * dropping its connection every few thousand messages, to meet the moment
 * a connection goes while its replies are being read.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
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

struct got {
    char id[64];
    size_t idlen;
    char payload[256]; /* frames joined by '|' */
};

/* What the sink reported through done(). */
struct outcomes {
    size_t stored;   /* messages reported SINK_STORED */
    size_t retried;  /* messages reported SINK_RETRY */
    bool is_ordered; /* no empty report, no STORED after a RETRY, no error with STORED */
};

static struct outcomes oc;

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

static void
on_done(void *arg, size_t n, enum sink_outcome outcome, int err)
{
    struct outcomes *o = arg;

    o->is_ordered = o->is_ordered && n > 0;
    if (outcome == SINK_STORED) {
        o->is_ordered = o->is_ordered && o->retried == 0 && err == 0;
        o->stored += n;
    } else {
        o->retried += n;
    }
}

static void *
open_sink(const struct conf *cfg)
{
    static struct sink_env env;
    void *state;

    env.cfg = cfg;
    env.zctx = ctx;
    oc = (struct outcomes){ .is_ordered = true };
    if (sink_zmq_dealer_ops.open(&env, on_done, &oc, &state) < 0) {
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

/* Throws away what an earlier test left in the router. */
static void
drain_router(void)
{
    struct got g;

    while (recv_one(&g, 50) == 0) {
    }
}

/*
 * Submits b[*sent..n) as the consumer does: while the sink accepts nothing
 * because its socket is not connected yet (-EAGAIN), backs off 20 ms and
 * tries again (for 5 s at most).  Adds what it accepted to *sent; returns
 * the last submit's result.
 */
static int
submit_some(void *state, struct msg **b, size_t n, size_t *sent)
{
    int r = -EAGAIN;

    for (int i = 0; i < 250; i++) {
        struct timespec backoff = { 0, 20000000 };
        size_t accepted = 0;

        r = sink_zmq_dealer_ops.submit(state, b + *sent, n - *sent, &accepted);
        *sent += accepted;
        if (accepted > 0 || r != -EAGAIN) {
            return r;
        }
        nanosleep(&backoff, NULL);
    }
    return r;
}

/* Polls until want messages in all are reported stored, at most 50 times 100 ms. */
static int
poll_until_stored(void *state, size_t want)
{
    int r = 0;

    for (int i = 0; i < 50 && oc.stored < want; i++) {
        r = sink_zmq_dealer_ops.poll(state, 100);
    }
    return r;
}

/* Polls until the router receives a message in g, at most 50 times 100 ms. */
static bool
poll_until_received(void *state, struct got *g)
{
    for (int i = 0; i < 50; i++) {
        if (recv_one(g, 0) == 0) {
            return true;
        }
        (void)sink_zmq_dealer_ops.poll(state, 100);
    }
    return recv_one(g, 0) == 0;
}

/* Polls three times: time for a wrong match to show. */
static void
poll_a_while(void *state)
{
    for (int i = 0; i < 3; i++) {
        (void)sink_zmq_dealer_ops.poll(state, 50);
    }
}

static void
close_sink(void *state)
{
    sink_zmq_dealer_ops.close(state);
}

static void
test_window(void)
{
    struct conf cfg;
    struct msg **b = make_batch("w", 10);
    static const char *const parts[] = { "multi", "part" };
    static const size_t lens[] = { 5, 4 };
    struct got g[10];
    size_t sent = 0, accepted = 1;
    void *state;
    int r;

    msg_destroy(b[3]);
    b[3] = msg_create(2, lens);
    memcpy(msg_frame_data(b[3], 0), parts[0], 5);
    memcpy(msg_frame_data(b[3], 1), parts[1], 4);
    config(&cfg, 4, 60000);
    cfg.output_batch = 1; /* the window does not depend on it */
    state = open_sink(&cfg);

    r = submit_some(state, b, 10, &sent);
    ok(r == 0 && sent == 4, "sndhwm = 4: four of ten accepted in one call (r %d, accepted %zu)", r,
       sent);
    ok(recv_exactly(g, 4), "... and sent, no more");
    ok(strcmp(g[0].payload, "w0") == 0 && strcmp(g[2].payload, "w2") == 0 &&
           strcmp(g[3].payload, "multi|part") == 0,
       "in order, after an empty delimiter, multipart as multipart (%s %s %s)", g[0].payload,
       g[2].payload, g[3].payload);
    r = sink_zmq_dealer_ops.submit(state, b + 4, 6, &accepted);
    ok(r == 0 && accepted == 0, "the window full: nothing accepted, and no error (r %d)", r);
    r = sink_zmq_dealer_ops.poll(state, 0);
    ok(r == 0 && oc.stored == 0, "no reply yet: nothing reported (r %d)", r);
    reply(&g[0], "OK");
    reply(&g[1], "OK");
    r = poll_until_stored(state, 2);
    ok(r == 0 && oc.stored == 2, "two OKs: the two oldest stored (%zu)", oc.stored);
    r = submit_some(state, b, 10, &sent);
    ok(r == 0 && sent == 6 && recv_exactly(g + 4, 2), "... and two more accepted and sent");
    for (int i = 2; i < 6; i++) {
        reply(&g[i], "OK");
    }
    poll_until_stored(state, 6);
    r = submit_some(state, b, 10, &sent);
    ok(r == 0 && oc.stored == 6 && sent == 10 && recv_exactly(g + 6, 4),
       "four more OKs: six stored, the last four sent (%zu stored)", oc.stored);
    reply(&g[6], "OK");
    reply(&g[7], "ERR message too large");
    reply(&g[8], "OK");
    reply(&g[9], "OK");
    r = poll_until_stored(state, 10);
    ok(r == 0 && oc.stored == 10 && oc.retried == 0 && oc.is_ordered,
       "all answered, one with ERR: all ten stored (r %d, %zu)", r, oc.stored);
    {
        struct sink_zmq_dealer *z = state;
        const char *name = z->dl.w ? spool_writer_name(z->dl.w) : NULL;
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
    close_sink(state);
    free_batch(b, 10);
    conf_free(&cfg);
}

/* The point of the contract: one message per call, and yet many in flight. */
static void
test_pipeline_across_calls(void)
{
    enum { N = 50 };
    struct conf cfg;
    struct msg **b = make_batch("a", N);
    struct got g[N];
    size_t sent = 0;
    bool is_in_order = true;
    void *state;
    int r = 0;

    config(&cfg, 1000, 60000);
    cfg.output_batch = 1;
    state = open_sink(&cfg);
    for (size_t i = 0; i < N && r == 0 && sent == i; i++) {
        r = submit_some(state, b, i + 1, &sent);
    }
    ok(r == 0 && sent == N, "%d calls of one message each: all accepted (r %d, %zu)", N, r, sent);
    ok(recv_exactly(g, N) && oc.stored == 0 && ((struct sink_zmq_dealer *)state)->ds[0].count == N,
       "... all %d sent and in flight at once, with no reply yet", N);
    for (size_t i = 0; i < N; i++) {
        char want[16];

        snprintf(want, sizeof(want), "a%zu", i);
        is_in_order = is_in_order && strcmp(g[i].payload, want) == 0;
        reply(&g[i], "OK");
    }
    r = poll_until_stored(state, N);
    ok(is_in_order && r == 0 && oc.stored == N && oc.is_ordered,
       "in order, and all stored once answered (%zu)", oc.stored);
    close_sink(state);
    free_batch(b, N);
    conf_free(&cfg);
}

static void
test_ack_timeout(void)
{
    struct conf cfg;
    struct msg **b = make_batch("t", 3);
    struct got g[3], h[3];
    size_t sent = 0;
    void *state;
    int r;

    config(&cfg, 1000, 1000);
    state = open_sink(&cfg);
    r = submit_some(state, b, 3, &sent);
    ok(r == 0 && sent == 3 && recv_exactly(g, 3), "three sent, no reply");
    /* Past ack_timeout the sink reconnects and resends, by itself. */
    ok(poll_until_received(state, &h[0]) && recv_exactly(h + 1, 2),
       "after ack_timeout the three are sent again");
    ok(!same_peer(&g[0], &h[0]) && strcmp(h[0].payload, "t0") == 0 && oc.retried == 0,
       "... on a new connection, in order, still in flight (none reported for retry)");
    /* Late replies on the old connection must not count. */
    for (int i = 0; i < 3; i++) {
        reply(&g[i], "OK");
    }
    reply(&h[0], "OK");
    poll_until_stored(state, 1);
    poll_a_while(state);
    ok(oc.stored == 1, "late OKs on the old connection are ignored: one OK, one stored (%zu)",
       oc.stored);
    reply(&h[1], "OK");
    reply(&h[2], "OK");
    r = poll_until_stored(state, 3);
    ok(r == 0 && oc.stored == 3 && oc.is_ordered, "the rest acknowledged and stored (%zu)",
       oc.stored);
    ok(((struct sink_zmq_dealer *)state)->resent == 3, "three resent");
    close_sink(state);
    free_batch(b, 3);
    conf_free(&cfg);
}

static void
test_restart(void)
{
    struct conf cfg;
    struct msg **b = make_batch("r", 2);
    struct got g[2], h[2];
    size_t sent = 0;
    void *state;
    int r;

    config(&cfg, 1000, 600000); /* only the lost connection can cause a resend */
    state = open_sink(&cfg);
    r = submit_some(state, b, 2, &sent);
    ok(r == 0 && sent == 2 && recv_exactly(g, 2), "two sent, no reply (r %d, %zu)", r, sent);
    zmq_close(router); /* the downstream stops and starts again */
    bind_router();
    ok(poll_until_received(state, &h[0]) && recv_exactly(h + 1, 1) &&
           strcmp(h[0].payload, "r0") == 0 && oc.stored == 0 && oc.retried == 0,
       "the downstream restarted: both resent at once, in order, nothing reported");
    reply(&h[0], "OK");
    reply(&h[1], "OK");
    r = poll_until_stored(state, 2);
    ok(r == 0 && oc.stored == 2, "acknowledged by the new downstream (%zu)", oc.stored);
    close_sink(state);
    free_batch(b, 2);
    conf_free(&cfg);
}

/* With no peer nothing can be sent: -EAGAIN, the consumer backs off. */
static void
test_no_peer(void)
{
    struct conf cfg;
    struct msg **b = make_batch("n", 2);
    size_t accepted = 1;
    void *state;
    int r;

    config(&cfg, 1000, 60000);
    free(cfg.zmq_endpoints.items[0]);
    cfg.zmq_endpoints.items[0] = strdup("ipc:///nonexistent/zpipe-test-no-peer");
    state = open_sink(&cfg);
    r = sink_zmq_dealer_ops.submit(state, b, 2, &accepted);
    ok(r == -EAGAIN && accepted == 0, "no peer: -EAGAIN, nothing accepted (r %d, %zu)", r,
       accepted);
    r = sink_zmq_dealer_ops.poll(state, 100);
    ok(r == 0 && oc.stored + oc.retried == 0, "nothing in flight: poll returns 0 (r %d)", r);
    close_sink(state);
    free_batch(b, 2);
    conf_free(&cfg);
}

static void
test_abort(void)
{
    struct conf cfg;
    struct msg **b = make_batch("c", 4);
    struct got g[4];
    struct sink_zmq_dealer *z;
    zmq_pollitem_t item;
    size_t sent = 0;
    void *state;
    int r;

    config(&cfg, 1000, 600000);
    state = open_sink(&cfg);
    z = state;
    r = submit_some(state, b, 4, &sent);
    ok(r == 0 && sent == 4 && recv_exactly(g, 4), "four sent");
    reply(&g[0], "OK");
    reply(&g[1], "OK");
    poll_until_stored(state, 2);
    ok(oc.stored == 2, "two OKs: two stored (%zu)", oc.stored);
    /* An OK that has arrived but was not read yet counts at the deadline. */
    reply(&g[2], "OK");
    item = (zmq_pollitem_t){ .socket = z->ds[0].link.sock, .events = ZMQ_POLLIN };
    ok(zmq_poll(&item, 1, 5000) == 1, "the third OK is waiting on the sink's socket");
    sink_zmq_dealer_ops.abort(state);
    ok(oc.stored == 3 && oc.retried == 1 && oc.is_ordered && z->count == 0,
       "drain deadline: the third stored, the fourth to retry, nothing left in flight "
       "(%zu stored, %zu to retry)",
       oc.stored, oc.retried);
    close_sink(state);
    free_batch(b, 4);
    conf_free(&cfg);
}

static void
test_bad_reply(void)
{
    struct conf cfg;
    struct msg **b = make_batch("p", 1);
    struct got g, h;
    size_t sent = 0;
    void *state;
    int r;

    config(&cfg, 1000, 600000);
    state = open_sink(&cfg);
    r = submit_some(state, b, 1, &sent);
    ok(r == 0 && sent == 1 && recv_one(&g, 2000) == 0, "one sent");
    reply(&g, "WHAT");
    ok(poll_until_received(state, &h) && !same_peer(&g, &h) && strcmp(h.payload, "p0") == 0 &&
           oc.stored + oc.retried == 0,
       "a reply that is neither OK nor ERR: nothing reported, resent on a new connection");
    reply(&h, "OK");
    r = poll_until_stored(state, 1);
    ok(r == 0 && oc.stored == 1, "then stored (r %d)", r);
    close_sink(state);
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
    size_t len = msg_encode_binary(b[0], want), n = 0, sent = 0;
    void *state;
    FILE *f;
    int r;

    config(&cfg, 1000, 600000);
    state = open_sink(&cfg);
    r = submit_some(state, b, 2, &sent);
    ok(r == 0 && sent == 2 && recv_exactly(g, 2), "two sent");
    reply(&g[0], "ERR message too large");
    reply(&g[1], "OK");
    spool_fdatasync = failing_fdatasync;
    r = 0;
    for (int i = 0; i < 50 && r == 0; i++) {
        r = sink_zmq_dealer_ops.poll(state, 100);
    }
    ok(r == -EIO && oc.stored == 0 && count_dead_letters(path, sizeof(path)) == 0,
       "the dead-letter file cannot be synced: poll fails, nothing stored, no file (r %d)", r);
    spool_fdatasync = fdatasync;
    r = poll_until_stored(state, 2);
    f = count_dead_letters(path, sizeof(path)) == 1 ? fopen(path, "rb") : NULL;
    n = f ? fread(got, 1, sizeof(got), f) : 0;
    ok(r == 0 && oc.stored == 2 && f && n == len && memcmp(got, want, len) == 0,
       "once it syncs: both stored, the refused message once in the file, nothing torn (r %d)", r);
    if (f) {
        fclose(f);
        unlink(path);
    }
    close_sink(state);
    free_batch(b, 2);
    conf_free(&cfg);
}

/* Receives what the router rtr has, up to max into g from *n on, answering OK if is_ok. */
static void
take_from(void *rtr, struct got *g, size_t *n, size_t max, bool is_ok)
{
    void *saved = router;

    router = rtr;
    while (*n < max && recv_one(&g[*n], 0) == 0) {
        if (is_ok) {
            reply(&g[*n], "OK");
        }
        (*n)++;
    }
    router = saved;
}

static void
test_two_endpoints(void)
{
    char ep2[300];
    struct conf cfg;
    struct msg **b = make_batch("e", 6), **c = make_batch("f", 6);
    struct got g[64], h[64];
    void *router2, *state;
    size_t sent = 0, n1 = 0, n2 = 0, base;
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
    r = submit_some(state, b, 6, &sent);
    ok(r == 0 && sent == 6 && recv_exactly(g, 6), "with one of two peers up, all six go to it");
    for (int i = 0; i < 6; i++) {
        reply(&g[i], "OK");
    }
    r = poll_until_stored(state, 6);
    ok(r == 0 && oc.stored == 6, "and are stored (%zu)", oc.stored);

    /* Both up, once the second connection is made, which a probe shows:
     * with the first socket busy, the next message goes to the idle one. */
    router2 = zmq_socket(ctx, ZMQ_ROUTER);
    if (!router2 || zmq_setsockopt(router2, ZMQ_LINGER, &zero, sizeof(zero)) < 0 ||
        zmq_bind(router2, ep2) < 0) {
        bail_out("second router");
    }
    for (int i = 0; i < 60 && n2 == 0; i++) {
        struct msg **probe = make_batch("probe", 2);
        size_t psent = 0, want = oc.stored + 2;

        n1 = 0;
        (void)submit_some(state, probe, 2, &psent);
        for (int k = 0; k < 50 && oc.stored < want; k++) {
            take_from(router, g, &n1, 64, true);
            take_from(router2, h, &n2, 64, true);
            (void)sink_zmq_dealer_ops.poll(state, 20);
        }
        if (psent != 2 || oc.stored != want) {
            bail_out("probe not stored");
        }
        free_batch(probe, 2);
    }
    ok(n2 > 0, "the second peer is reached");
    /* Spread over both; the second peer's OKs alone store nothing when the
     * oldest message went to the first. */
    base = oc.stored;
    sent = n1 = n2 = 0;
    r = submit_some(state, c, 6, &sent);
    for (int i = 0; i < 50 && n1 + n2 < 6; i++) {
        take_from(router, g, &n1, 6, false);
        take_from(router2, h, &n2, 6, false);
        (void)sink_zmq_dealer_ops.poll(state, 20);
    }
    ok(r == 0 && sent == 6 && n1 + n2 == 6 && n1 > 0 && n2 > 0,
       "with both up, both get messages (%zu and %zu)", n1, n2);
    ok(strcmp(g[0].payload, "f0") == 0, "the oldest went to the first (%s)", g[0].payload);
    for (size_t i = 0; i < n2; i++) {
        void *saved = router;

        router = router2;
        reply(&h[i], "OK");
        router = saved;
    }
    poll_a_while(state);
    ok(oc.stored == base, "the second peer's OKs alone: nothing stored yet (%zu)",
       oc.stored - base);
    for (size_t i = 0; i < n1; i++) {
        reply(&g[i], "OK");
    }
    r = poll_until_stored(state, base + 6);
    ok(r == 0 && oc.stored == base + 6 && oc.is_ordered, "all acknowledged: all stored (%zu)",
       oc.stored - base);
    close_sink(state);
    zmq_close(router2);
    free_batch(b, 6);
    free_batch(c, 6);
    conf_free(&cfg);
}

#define CUT_TOTAL 100000 /* messages */
#define CUT_EVERY 2000   /* the downstream drops its connection after this many */

/* The downstream of test_cut: a ROUTER in its own thread. */
struct cutter {
    char endpoint[256];
    atomic_bool is_stopping;
    size_t cuts;     /* connections dropped */
    uint8_t *seen;   /* per message: received at least once */
    size_t strays;   /* messages that are not "x<index>" */
};

static void *
cutter_run(void *arg)
{
    struct cutter *c = arg;

    while (!atomic_load(&c->is_stopping)) {
        void *r = zmq_socket(ctx, ZMQ_ROUTER);
        int zero = 0;

        if (!r || zmq_setsockopt(r, ZMQ_LINGER, &zero, sizeof(zero)) < 0 ||
            zmq_bind(r, c->endpoint) < 0) {
            bail_out("router on %s: %s", c->endpoint, zmq_strerror(zmq_errno()));
        }
        for (size_t k = 0; k < CUT_EVERY && !atomic_load(&c->is_stopping);) {
            zmq_pollitem_t item = { .socket = r, .events = ZMQ_POLLIN };
            char id[64], body[32];
            int idlen, len;

            if (zmq_poll(&item, 1, 100) <= 0) {
                continue;
            }
            /* [id, "", "x<index>"]: what the sink sends for a one-frame message. */
            if ((idlen = zmq_recv(r, id, sizeof(id), 0)) < 0 || zmq_recv(r, body, 0, 0) < 0 ||
                (len = zmq_recv(r, body, sizeof(body) - 1, 0)) < 0) {
                bail_out("cutter: zmq_recv: %s", zmq_strerror(zmq_errno()));
            }
            body[len < (int)sizeof(body) - 1 ? len : (int)sizeof(body) - 1] = '\0';
            unsigned long i = strtoul(body + 1, NULL, 10);

            if (body[0] == 'x' && i < CUT_TOTAL) {
                c->seen[i] = 1;
            } else {
                c->strays++;
            }
            if (zmq_send(r, id, (size_t)idlen, ZMQ_SNDMORE) < 0 ||
                zmq_send(r, "", 0, ZMQ_SNDMORE) < 0 || zmq_send(r, "OK", 2, 0) < 0) {
                bail_out("cutter: reply: %s", zmq_strerror(zmq_errno()));
            }
            k++;
        }
        zmq_close(r);
        c->cuts++;
    }
    return NULL;
}

/*
 * The downstream drops its connection every CUT_EVERY messages, mostly while
 * replies are on their way, so the sink is often between the two frames of
 * a reply when the connection goes.  With ZMQ_IMMEDIATE on the DEALER,
 * libzmq 4.3 aborted the process there (assertion "!_more" in fq.cpp)
 * within a few dozen cuts.  Every message is stored, in order, and reached
 * the downstream at least once.
 */
static void
test_cut(void)
{
    static struct cutter c;
    struct conf cfg;
    struct msg **b = make_batch("x", CUT_TOTAL);
    void *state;
    pthread_t t;
    size_t sent = 0, missing = 0;
    time_t end = time(NULL) + 300;
    int r = 0;

    snprintf(c.endpoint, sizeof(c.endpoint), "ipc://%s/cut", dir);
    c.seen = calloc(CUT_TOTAL, 1);
    if (!c.seen || pthread_create(&t, NULL, cutter_run, &c) != 0) {
        bail_out("the cutter thread");
    }
    config(&cfg, 1000, 60000);
    free(cfg.zmq_endpoints.items[0]);
    cfg.zmq_endpoints.items[0] = strdup(c.endpoint);
    state = open_sink(&cfg);
    while (oc.stored < CUT_TOTAL && time(NULL) < end && (r == 0 || r == -EAGAIN)) {
        size_t accepted = 0;

        r = sink_zmq_dealer_ops.submit(state, b + sent, CUT_TOTAL - sent, &accepted);
        sent += accepted;
        if (r == 0 || r == -EAGAIN) {
            r = sink_zmq_dealer_ops.poll(state, 10);
        }
    }
    atomic_store(&c.is_stopping, true);
    pthread_join(t, NULL);
    for (size_t i = 0; i < CUT_TOTAL; i++) {
        missing += !c.seen[i];
    }
    ok(r == 0 && oc.stored == CUT_TOTAL && oc.retried == 0 && oc.is_ordered,
       "connection dropped %zu times under load: all %d stored, in order (%zu; r %d)", c.cuts,
       CUT_TOTAL, oc.stored, r);
    ok(missing == 0 && c.strays == 0, "... each reached the downstream (%zu missing, %zu strays)",
       missing, c.strays);
    ok(c.cuts >= CUT_TOTAL / CUT_EVERY, "... which dropped its connection %zu times", c.cuts);
    close_sink(state);
    free_batch(b, CUT_TOTAL);
    free(c.seen);
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
    test_window();
    drain_router();
    test_pipeline_across_calls();
    drain_router();
    test_ack_timeout();
    drain_router();
    test_restart();
    drain_router();
    test_no_peer();
    test_abort();
    drain_router();
    test_bad_reply();
    drain_router();
    test_dead_letter_sync_fails();
    drain_router();
    test_two_endpoints();
    test_cut();
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
