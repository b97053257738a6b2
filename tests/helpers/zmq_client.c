/*
 * zmq_client - a real libzmq client for the integration tests.
 *
 *   zmq_client push   [OPTIONS] ENDPOINT   PUSH, fire and forget
 *   zmq_client dealer [OPTIONS] ENDPOINT   DEALER, pipelined, one reply per message
 *   zmq_client req    [OPTIONS] ENDPOINT   REQ, one message at a time
 *   zmq_client gen    [OPTIONS]            print the payloads push would send
 *   zmq_client pull   [OPTIONS] ENDPOINT   PULL, bound: receive -n N messages
 *   zmq_client router [OPTIONS] ENDPOINT   ROUTER, bound: receive -n N, then answer them
 *
 * pull binds ENDPOINT (the zmq sink connects to it), writes every message
 * it receives to --out in the escaped form below, and exits 0 once it has
 * N; it fails if --timeout ms pass without a message before that.  Its
 * summary line is "received=N".  router does the same with a ROUTER socket
 * (a dealer zmq sink connects to it), but answers none of the messages
 * until it has all N, then answers each OK (linger --timeout): it shows
 * that the sender had N awaiting a reply at once.
 *
 * Messages are either generated or read from a file:
 *
 *   -n N            N generated messages, sequence numbers 0..N-1 (default 1)
 *   -p PREFIX       payload = PREFIX + decimal sequence number (default "m")
 *   -s SIZE         pad payloads with '.' up to SIZE bytes
 *   --vary          with -s: pad message seq up to a size of its own between
 *                   its length and SIZE, spread evenly over the powers of two
 *                   (a hash of seq picks it, so gen prints the same payloads)
 *   --big-every K   every K-th message (seq % K == K-1) is oversized: padded
 *                   with 'B' up to --big-size bytes (default 2 MiB).  The
 *                   daemon must refuse it: in push mode it is never written
 *                   to --out; in router modes it must be answered ERR.
 *   --frames N      every generated message (oversized ones too) has N frames:
 *                   its payload, then N - 1 empty frames
 *   --records FILE  send FILE's records instead: one record per line, frames
 *                   separated by '|', bytes outside 0x20..0x7e and '\' '|'
 *                   written as \xHH (decode_records prints this same form)
 *
 * Options:
 *   --out FILE      write each accepted message, one per line, in the escaped
 *                   form above (for generated messages that is the payload):
 *                   push: every normal message once zmq_send took it;
 *                   dealer/req: every message answered OK.  Each line is one
 *                   write(2), so the file is complete up to the last reply
 *                   even if the client is killed.
 *   --delim         dealer: send an empty delimiter frame first, as REQ does,
 *                   and expect the reply ["", STATUS]; without it the reply
 *                   must be the single frame [STATUS]
 *   --window W      dealer: at most W messages awaiting a reply (default 100)
 *   --rate R        send at most R messages per second (a load shape)
 *   --timeout MS    longest wait for any send or reply (default 30000)
 *   --linger MS     push: ZMQ_LINGER at close (default: --timeout); the client
 *                   fails if closing took that long (messages may be unsent)
 *   --hold          router: once it has answered, keep the socket open (so
 *                   the sender never sees the connection drop, which could
 *                   make it discard replies it read with the drop) until
 *                   SIGTERM or SIGINT, then exit 0.
 *                   push: once everything is sent, print the summary line and
 *                   keep the socket open until SIGTERM or SIGINT, then close
 *                   it with linger 0 and exit 0.  libzmq may drop the last
 *                   messages of a PUSH socket that closes while its peer has
 *                   not read them yet, even with a linger (libzmq #1922, seen
 *                   with several PUSH peers on one PULL), so a test that
 *                   needs every message holds its senders open until the
 *                   daemon has counted them all.
 *
 * In router modes the replies of one connection arrive in the order of the
 * messages, so reply k belongs to message k: a normal message expects "OK",
 * an oversized one "ERR <reason>"; anything else is reported on stderr as
 * "unexpected reply".  The replies are read and told apart by zpipe's own
 * reply protocol code (src/reply.h), in the envelope the message went with:
 * ["", STATUS] with --delim, else [STATUS].
 *
 * stdout gets one summary line: "sent=S ok=O err=E big=B".  Exit 0 when
 * every message was sent and, in router modes, answered as expected; 1
 * otherwise (timeout, unexpected reply); 2 on usage errors.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "reply.h"
#include "util.h"

enum mode { MODE_PUSH, MODE_DEALER, MODE_REQ, MODE_GEN, MODE_PULL, MODE_ROUTER };

struct frame {
    unsigned char *data;
    size_t len;
};

struct record {
    struct frame *frames;
    size_t nframes;
};

/* One message to send, built by message_get(); storage reused between calls. */
struct message {
    struct frame frames_one[1];
    const struct frame *frames;
    size_t nframes;
    bool is_big;
};

static struct opts {
    enum mode mode;
    const char *endpoint;
    unsigned long n;
    const char *prefix;
    size_t size;
    unsigned long big_every;
    size_t big_size;
    unsigned long nframes;
    const char *records_path;
    const char *out_path;
    bool has_delim;
    bool is_holding;
    bool is_varied;
    unsigned long window;
    double rate;
    int timeout_ms;
    int linger_ms;
} o = {
    .n = 1, .prefix = "m", .nframes = 1, .big_size = 2 * 1024 * 1024, .window = 100,
    .timeout_ms = 30000, .linger_ms = -1,
};

static struct record *records;  /* when --records */
static size_t nrecords;
static unsigned char *gen_buf;  /* payload storage for generated messages */
static struct frame *gen_frames; /* --frames: the payload, then empty frames */
static char *text_buf;          /* escaped text storage */
static size_t text_cap;
static int out_fd = -1;
static unsigned long n_sent, n_ok, n_err, n_big, n_unexpected;
static sigset_t hold_signals;   /* what --hold waits for */

static void
sleep_ms(uint64_t ms)
{
    struct timespec ts = { .tv_sec = (time_t)(ms / 1000), .tv_nsec = (long)(ms % 1000) * 1000000 };

    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
    }
}

static void *
xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);

    if (!p) {
        fprintf(stderr, "zmq_client: out of memory\n");
        exit(1);
    }
    return p;
}

static unsigned long
message_count(void)
{
    return o.records_path ? nrecords : o.n;
}

static bool
seq_is_big(unsigned long seq)
{
    return !o.records_path && o.big_every > 0 && seq % o.big_every == o.big_every - 1;
}

/* --vary: the size message seq is padded to, 1..o.size, log-uniform. */
static size_t
varied_size(unsigned long seq)
{
    uint64_t h = (uint64_t)seq * UINT64_C(0x9e3779b97f4a7c15);
    unsigned bits = 0;
    size_t size;

    h ^= h >> 29;
    while (bits < 63 && (UINT64_C(1) << (bits + 1)) <= o.size) {
        bits++;
    }
    /* A power of two 2^k (k = 0..bits), then a random offset below it. */
    size = (size_t)1 << (h % (bits + 1));
    size += (size_t)((h >> 8) % size);
    return size < o.size ? size : o.size;
}

/* Fills *m with message seq. Valid until the next call. */
static void
message_get(unsigned long seq, struct message *m)
{
    if (o.records_path) {
        m->frames = records[seq].frames;
        m->nframes = records[seq].nframes;
        m->is_big = false;
        return;
    }
    int len = snprintf((char *)gen_buf, 48, "%s%lu", o.prefix, seq);
    size_t want = (size_t)len;

    m->is_big = seq_is_big(seq);
    if (m->is_big) {
        want = o.big_size;
        memset(gen_buf + len, 'B', want > (size_t)len ? want - (size_t)len : 0);
    } else if (o.size > (size_t)len) {
        want = o.is_varied ? varied_size(seq) : o.size;
        if (want > (size_t)len) {
            memset(gen_buf + len, '.', want - (size_t)len);
        }
    }
    if (want < (size_t)len) {
        want = (size_t)len;
    }
    m->frames_one[0].data = gen_buf;
    m->frames_one[0].len = want;
    m->frames = m->frames_one;
    m->nframes = 1;
    if (o.nframes > 1) {
        gen_frames[0] = m->frames_one[0];
        m->frames = gen_frames;
        m->nframes = o.nframes;
    }
}

static void
text_reserve(size_t n)
{
    if (n > text_cap) {
        free(text_buf);
        text_cap = n;
        text_buf = xmalloc(text_cap);
    }
}

/* The escaped one-line form of m (see the file comment). */
static const char *
message_text(const struct message *m)
{
    size_t need = 1, k = 0;

    for (size_t i = 0; i < m->nframes; i++) {
        need += m->frames[i].len * 4 + 1;
    }
    text_reserve(need);
    for (size_t i = 0; i < m->nframes; i++) {
        if (i > 0) {
            text_buf[k++] = '|';
        }
        for (size_t j = 0; j < m->frames[i].len; j++) {
            unsigned char c = m->frames[i].data[j];

            if (c >= 0x20 && c <= 0x7e && c != '\\' && c != '|') {
                text_buf[k++] = (char)c;
            } else {
                k += (size_t)sprintf(text_buf + k, "\\x%02x", c);
            }
        }
    }
    text_buf[k] = '\0';
    return text_buf;
}

static int
hexval(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

/* Parses one escaped line into r. Returns 0 or -EINVAL. */
static int
record_parse(const char *line, struct record *r)
{
    size_t len = strlen(line), nframes = 1;

    for (size_t i = 0; i < len; i++) {
        nframes += line[i] == '|';
    }
    r->frames = xmalloc(nframes * sizeof(*r->frames));
    r->nframes = 0;
    for (size_t i = 0;;) {
        unsigned char *data = xmalloc(len + 1);
        size_t flen = 0;

        while (i < len && line[i] != '|') {
            if (line[i] == '\\') {
                int hi, lo;

                if (i + 3 >= len) {
                    return -EINVAL;
                }
                if (line[i + 1] != 'x' || (hi = hexval(line[i + 2])) < 0 ||
                    (lo = hexval(line[i + 3])) < 0) {
                    return -EINVAL;
                }
                data[flen++] = (unsigned char)(hi << 4 | lo);
                i += 4;
            } else {
                data[flen++] = (unsigned char)line[i++];
            }
        }
        r->frames[r->nframes].data = data;
        r->frames[r->nframes].len = flen;
        r->nframes++;
        if (i >= len) {
            break;
        }
        i++;   /* the '|' */
    }
    return 0;
}

static void
records_load(const char *path)
{
    FILE *f = fopen(path, "r");
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    size_t alloc = 0;

    if (!f) {
        fprintf(stderr, "zmq_client: open %s: %s\n", path, strerror(errno));
        exit(2);
    }
    while ((n = getline(&line, &cap, f)) >= 0) {
        if (n > 0 && line[n - 1] == '\n') {
            line[n - 1] = '\0';
        }
        if (nrecords == alloc) {
            alloc = alloc ? alloc * 2 : 64;
            records = realloc(records, alloc * sizeof(*records));
            if (!records) {
                fprintf(stderr, "zmq_client: out of memory\n");
                exit(1);
            }
        }
        if (record_parse(line, &records[nrecords]) < 0) {
            fprintf(stderr, "zmq_client: %s:%zu: bad escape in record\n", path, nrecords + 1);
            exit(2);
        }
        nrecords++;
    }
    free(line);
    fclose(f);
}

static void
out_write(const char *text)
{
    size_t len = strlen(text);
    char *line;

    if (out_fd < 0) {
        return;
    }
    line = xmalloc(len + 1);
    memcpy(line, text, len);
    line[len] = '\n';
    /* One write per line: the file stays whole if we are killed. */
    if (write(out_fd, line, len + 1) != (ssize_t)(len + 1)) {
        fprintf(stderr, "zmq_client: write %s: %s\n", o.out_path, strerror(errno));
        exit(1);
    }
    free(line);
}

/* Milliseconds to wait before the next send is allowed by --rate (0 = now). */
static uint64_t
rate_wait_ms(uint64_t start_ms, unsigned long sent)
{
    if (o.rate <= 0) {
        return 0;
    }
    uint64_t due = start_ms + (uint64_t)((double)sent * 1000.0 / o.rate);
    uint64_t now = util_now_ms();

    return due > now ? due - now : 0;
}

/* Sends m on s; prefix_delim adds an empty first frame. Returns 0, or -errno (EAGAIN: timeout). */
static int
send_message(void *s, const struct message *m, bool prefix_delim, int flags)
{
    if (prefix_delim && zmq_send(s, "", 0, ZMQ_SNDMORE | flags) < 0) {
        return -zmq_errno();
    }
    for (size_t i = 0; i < m->nframes; i++) {
        int more = i + 1 < m->nframes ? ZMQ_SNDMORE : 0;

        /* After the first frame the rest of a multipart message never blocks. */
        if (zmq_send(s, m->frames[i].data, m->frames[i].len, more | flags) < 0) {
            return -zmq_errno();
        }
    }
    return 0;
}

/*
 * recv_reply reads one reply, if one is waiting, and checks it against
 * message seq: a normal message expects OK, an oversized one ERR; another
 * reply, or one not in its envelope (["", STATUS] if expect_delim, else
 * [STATUS]), is unexpected.  Returns 1 once it has read a reply, 0 if none
 * was waiting, or -errno of the receive.
 */
static int
recv_reply(void *s, unsigned long seq, bool expect_delim)
{
    char text[256];
    int kind = expect_delim ? reply_recv(s, text, sizeof(text))
                            : reply_recv_bare(s, text, sizeof(text));
    struct message m;

    if (kind == REPLY_NONE || (kind < 0 && kind != -EPROTO)) {
        return kind;
    }
    message_get(seq, &m);
    if (kind == REPLY_OK) {
        n_ok++;
        out_write(message_text(&m));
    } else if (kind == REPLY_ERR) {
        n_err++;
    }
    if (kind != (m.is_big ? REPLY_ERR : REPLY_OK) && ++n_unexpected <= 10) {
        fprintf(stderr, "zmq_client: unexpected reply to message %lu (%s): %s'%s'\n", seq,
                m.is_big ? "oversized, expected ERR" : "expected OK",
                kind == -EPROTO ? "not [STATUS] in its envelope, last frame " : "",
                kind == REPLY_OK ? REPLY_OK_TEXT : text);
    }
    return 1;
}

static void
set_int(void *s, int opt, int val)
{
    if (zmq_setsockopt(s, opt, &val, sizeof(val)) < 0) {
        fprintf(stderr, "zmq_client: zmq_setsockopt(%d): %s\n", opt, zmq_strerror(zmq_errno()));
        exit(1);
    }
}

/*
 * send_paced waits until --rate allows message seq (sending began at
 * start_ms), fills *m with it and sends it, blocking up to ZMQ_SNDTIMEO.
 * Returns 0, or 1 after saying on stderr why the send failed.
 */
static int
send_paced(void *s, unsigned long seq, uint64_t start_ms, struct message *m)
{
    uint64_t wait = rate_wait_ms(start_ms, seq);
    int r;

    if (wait > 0) {
        sleep_ms(wait);
    }
    message_get(seq, m);
    r = send_message(s, m, false, 0);
    if (r == -EAGAIN) {
        fprintf(stderr, "zmq_client: send of message %lu timed out after %d ms\n", seq,
                o.timeout_ms);
        return 1;
    }
    if (r < 0) {
        fprintf(stderr, "zmq_client: send of message %lu: %s\n", seq, zmq_strerror(-r));
        return 1;
    }
    n_sent++;
    n_big += m->is_big;
    return 0;
}

/*
 * run_in_turn sends the messages one at a time, each send blocking up to
 * --timeout.  push writes each normal message to --out once it is sent; req
 * waits up to --timeout for each message's reply before the next one.
 */
static int
run_in_turn(void *s)
{
    unsigned long total = message_count();
    uint64_t start = util_now_ms();
    struct message m;

    set_int(s, ZMQ_SNDTIMEO, o.timeout_ms);
    for (unsigned long seq = 0; seq < total; seq++) {
        zmq_pollitem_t item = { .socket = s, .events = ZMQ_POLLIN };
        int r;

        if (send_paced(s, seq, start, &m) != 0) {
            return 1;
        }
        if (o.mode == MODE_PUSH) {
            if (!m.is_big) {
                out_write(message_text(&m));
            }
            continue;
        }
        r = zmq_poll(&item, 1, o.timeout_ms);
        r = r < 0 ? -zmq_errno() : recv_reply(s, seq, false);
        if (r <= 0) {
            fprintf(stderr, "zmq_client: reply to message %lu: %s\n", seq,
                    r == 0 ? "timed out" : zmq_strerror(-r));
            return 1;
        }
    }
    return n_unexpected ? 1 : 0;
}

static int
run_dealer(void *s)
{
    unsigned long total = message_count(), replied = 0;
    uint64_t start = util_now_ms(), last_progress = start;
    struct message m;

    while (replied < total) {
        bool can_send = n_sent < total && n_sent - replied < o.window;
        uint64_t wait = can_send ? rate_wait_ms(start, n_sent) : 0;
        uint64_t now = util_now_ms();
        zmq_pollitem_t item = { .socket = s, .events = ZMQ_POLLIN };
        long timeout;
        int r;

        if (now - last_progress >= (uint64_t)o.timeout_ms) {
            fprintf(stderr,
                    "zmq_client: no progress for %d ms: sent %lu, replies %lu of %lu\n",
                    o.timeout_ms, n_sent, replied, total);
            return 1;
        }
        timeout = (long)(last_progress + (uint64_t)o.timeout_ms - now);
        if (can_send && wait == 0) {
            item.events |= ZMQ_POLLOUT;
        } else if (can_send && (long)wait < timeout) {
            timeout = (long)wait;
        }
        r = zmq_poll(&item, 1, timeout);
        if (r < 0) {
            if (zmq_errno() == EINTR) {
                continue;
            }
            fprintf(stderr, "zmq_client: zmq_poll: %s\n", zmq_strerror(zmq_errno()));
            return 1;
        }
        if (item.revents & ZMQ_POLLIN) {
            r = recv_reply(s, replied, o.has_delim);
            if (r > 0) {
                replied++;
                last_progress = util_now_ms();
            } else if (r < 0) {
                fprintf(stderr, "zmq_client: recv: %s\n", zmq_strerror(-r));
                return 1;
            }
        }
        if ((item.revents & ZMQ_POLLOUT) && n_sent < total && n_sent - replied < o.window) {
            message_get(n_sent, &m);
            r = send_message(s, &m, o.has_delim, ZMQ_DONTWAIT);
            if (r == 0) {
                n_big += m.is_big;
                n_sent++;
                last_progress = util_now_ms();
            } else if (r != -EAGAIN) {
                fprintf(stderr, "zmq_client: send: %s\n", zmq_strerror(-r));
                return 1;
            }
        }
    }
    return n_unexpected ? 1 : 0;
}

/*
 * Receives one whole message into parts (at most 64 frames), setting
 * *nparts.  Returns 0, or 1 after a timeout or error, reported on stderr
 * with got, the messages received so far (the caller closes nothing then).
 */
static int
recv_parts(void *s, zmq_msg_t *parts, size_t *nparts, unsigned long got)
{
    int more = 1;
    size_t more_len = sizeof(more);

    *nparts = 0;
    while (more) {
        if (*nparts == 64) {
            fprintf(stderr, "zmq_client: message with more than 64 frames\n");
            return 1;
        }
        zmq_msg_init(&parts[*nparts]);
        if (zmq_msg_recv(&parts[*nparts], s, 0) < 0) {
            int e = zmq_errno();

            zmq_msg_close(&parts[*nparts]);
            if (e == EINTR) {
                continue;
            }
            fprintf(stderr, "zmq_client: %s after %lu of %lu messages\n",
                    e == EAGAIN ? "timed out" : zmq_strerror(e), got, o.n);
            return 1;
        }
        (*nparts)++;
        zmq_getsockopt(s, ZMQ_RCVMORE, &more, &more_len);
    }
    return 0;
}

/* Writes parts[skip..nparts) to --out as one message and closes all of parts. */
static void
out_parts(zmq_msg_t *parts, size_t nparts, size_t skip)
{
    struct frame frames[64];
    struct message m = { .frames = frames, .nframes = nparts - skip };

    for (size_t i = skip; i < nparts; i++) {
        frames[i - skip].data = zmq_msg_data(&parts[i]);
        frames[i - skip].len = zmq_msg_size(&parts[i]);
    }
    out_write(message_text(&m));
    for (size_t i = 0; i < nparts; i++) {
        zmq_msg_close(&parts[i]);
    }
}

static int
run_pull(void *s)
{
    zmq_msg_t parts[64];
    unsigned long got = 0;
    size_t nparts;

    set_int(s, ZMQ_RCVTIMEO, o.timeout_ms);
    for (; got < o.n; got++) {
        if (recv_parts(s, parts, &nparts, got) != 0) {
            printf("received=%lu\n", got);
            return 1;
        }
        out_parts(parts, nparts, 0);
    }
    printf("received=%lu\n", got);
    return 0;
}

/*
 * router: receives N messages [identity, "", frames...] and answers none
 * of them until it has all N; then answers each ["", "OK"], in order.  A
 * sender that gets them all to it has had N awaiting a reply at once.
 */
static int
run_router(void *s)
{
    zmq_msg_t *ids = xmalloc(o.n * sizeof(*ids));
    zmq_msg_t parts[64];
    unsigned long got = 0;
    int rc = 0;

    set_int(s, ZMQ_RCVTIMEO, o.timeout_ms);
    set_int(s, ZMQ_SNDTIMEO, o.timeout_ms);
    for (; got < o.n; got++) {
        size_t nparts;

        if (recv_parts(s, parts, &nparts, got) != 0) {
            rc = 1;
            break;
        }
        if (nparts < 3 || zmq_msg_size(&parts[1]) != 0) {
            fprintf(stderr, "zmq_client: router: message %lu is not [id, \"\", frames...]\n",
                    got);
            for (size_t i = 0; i < nparts; i++) {
                zmq_msg_close(&parts[i]);
            }
            rc = 1;
            break;
        }
        zmq_msg_init(&ids[got]);
        zmq_msg_move(&ids[got], &parts[0]);
        out_parts(parts, nparts, 2);
    }
    for (unsigned long i = 0; i < got; i++) {
        if (rc == 0 && (zmq_msg_send(&ids[i], s, ZMQ_SNDMORE) < 0 ||
                        zmq_send(s, "", 0, ZMQ_SNDMORE) < 0 ||
                        zmq_send(s, REPLY_OK_TEXT, strlen(REPLY_OK_TEXT), 0) < 0)) {
            fprintf(stderr, "zmq_client: router: reply: %s\n", zmq_strerror(zmq_errno()));
            rc = 1;
        }
        zmq_msg_close(&ids[i]);
    }
    free(ids);
    printf("received=%lu\n", got);
    return rc;
}

static void
usage(void)
{
    fprintf(stderr,
            "usage: zmq_client push|dealer|req|pull|router [OPTIONS] ENDPOINT\n"
            "       zmq_client gen [OPTIONS]\n"
            "options: -n N -p PREFIX -s SIZE --big-every K --big-size B --frames N\n"
            "         --records FILE --out FILE --delim --window W --rate R --timeout MS\n"
            "         --linger MS --hold --vary\n");
    exit(2);
}

static unsigned long
parse_ulong(const char *s, const char *what)
{
    char *end;
    unsigned long v;

    errno = 0;
    v = strtoul(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-') {
        fprintf(stderr, "zmq_client: bad %s: %s\n", what, s);
        exit(2);
    }
    return v;
}

static void
parse_args(int argc, char **argv)
{
    enum { OPT_BIG_EVERY = 256, OPT_BIG_SIZE, OPT_FRAMES, OPT_RECORDS, OPT_OUT, OPT_DELIM,
           OPT_WINDOW, OPT_RATE, OPT_TIMEOUT, OPT_LINGER, OPT_HOLD, OPT_VARY };
    static const struct option longopts[] = {
        { "big-every", required_argument, NULL, OPT_BIG_EVERY },
        { "big-size", required_argument, NULL, OPT_BIG_SIZE },
        { "frames", required_argument, NULL, OPT_FRAMES },
        { "records", required_argument, NULL, OPT_RECORDS },
        { "out", required_argument, NULL, OPT_OUT },
        { "delim", no_argument, NULL, OPT_DELIM },
        { "window", required_argument, NULL, OPT_WINDOW },
        { "rate", required_argument, NULL, OPT_RATE },
        { "timeout", required_argument, NULL, OPT_TIMEOUT },
        { "linger", required_argument, NULL, OPT_LINGER },
        { "hold", no_argument, NULL, OPT_HOLD },
        { "vary", no_argument, NULL, OPT_VARY },
        { NULL, 0, NULL, 0 },
    };
    int c;

    if (argc < 2) {
        usage();
    }
    if (strcmp(argv[1], "push") == 0) {
        o.mode = MODE_PUSH;
    } else if (strcmp(argv[1], "dealer") == 0) {
        o.mode = MODE_DEALER;
    } else if (strcmp(argv[1], "req") == 0) {
        o.mode = MODE_REQ;
    } else if (strcmp(argv[1], "gen") == 0) {
        o.mode = MODE_GEN;
    } else if (strcmp(argv[1], "pull") == 0) {
        o.mode = MODE_PULL;
    } else if (strcmp(argv[1], "router") == 0) {
        o.mode = MODE_ROUTER;
    } else {
        usage();
    }
    argc--;
    argv++;
    while ((c = getopt_long(argc, argv, "n:p:s:", longopts, NULL)) != -1) {
        switch (c) {
        case 'n': o.n = parse_ulong(optarg, "count"); break;
        case 'p': o.prefix = optarg; break;
        case 's': o.size = parse_ulong(optarg, "size"); break;
        case OPT_BIG_EVERY: o.big_every = parse_ulong(optarg, "--big-every"); break;
        case OPT_BIG_SIZE: o.big_size = parse_ulong(optarg, "--big-size"); break;
        case OPT_FRAMES: o.nframes = parse_ulong(optarg, "--frames"); break;
        case OPT_RECORDS: o.records_path = optarg; break;
        case OPT_OUT: o.out_path = optarg; break;
        case OPT_DELIM: o.has_delim = true; break;
        case OPT_WINDOW: o.window = parse_ulong(optarg, "--window"); break;
        case OPT_RATE: o.rate = (double)parse_ulong(optarg, "--rate"); break;
        case OPT_TIMEOUT: o.timeout_ms = (int)parse_ulong(optarg, "--timeout"); break;
        case OPT_LINGER: o.linger_ms = (int)parse_ulong(optarg, "--linger"); break;
        case OPT_HOLD: o.is_holding = true; break;
        case OPT_VARY: o.is_varied = true; break;
        default: usage();
        }
    }
    if (o.mode == MODE_GEN) {
        if (optind != argc) {
            usage();
        }
    } else {
        if (optind + 1 != argc) {
            usage();
        }
        o.endpoint = argv[optind];
    }
    if (o.window == 0 || o.timeout_ms <= 0 || o.nframes == 0 || strlen(o.prefix) > 16) {
        fprintf(stderr, "zmq_client: --window, --timeout and --frames must be > 0, "
                        "-p at most 16 bytes\n");
        exit(2);
    }
    if (o.linger_ms < 0) {
        o.linger_ms = o.timeout_ms;
    }
}

int
main(int argc, char **argv)
{
    void *ctx, *s;
    int rc, type;
    uint64_t t0;

    parse_args(argc, argv);
    if (o.records_path) {
        records_load(o.records_path);
    }
    {
        size_t cap = 64 + o.size;

        if (o.big_every && o.big_size + 64 > cap) {
            cap = o.big_size + 64;
        }
        gen_buf = xmalloc(cap);
        gen_frames = xmalloc(o.nframes * sizeof(*gen_frames));
        for (size_t i = 1; i < o.nframes; i++) {
            gen_frames[i].data = gen_buf; /* any valid pointer: 0 bytes */
            gen_frames[i].len = 0;
        }
    }

    if (o.mode == MODE_GEN) {
        struct message m;

        for (unsigned long seq = 0; seq < message_count(); seq++) {
            message_get(seq, &m);
            if (!m.is_big) {
                printf("%s\n", message_text(&m));
            }
        }
        return fflush(stdout) == 0 ? 0 : 1;
    }

    if (o.out_path) {
        out_fd = open(o.out_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (out_fd < 0) {
            fprintf(stderr, "zmq_client: open %s: %s\n", o.out_path, strerror(errno));
            return 2;
        }
    }
    /* --hold: SIGTERM/SIGINT are taken by sigwait(); block them before
     * zmq_ctx_new() so libzmq's threads inherit the mask. */
    sigemptyset(&hold_signals);
    sigaddset(&hold_signals, SIGTERM);
    sigaddset(&hold_signals, SIGINT);
    if (o.is_holding) {
        pthread_sigmask(SIG_BLOCK, &hold_signals, NULL);
    }
    ctx = zmq_ctx_new();
    type = o.mode == MODE_PUSH     ? ZMQ_PUSH
           : o.mode == MODE_DEALER ? ZMQ_DEALER
           : o.mode == MODE_PULL   ? ZMQ_PULL
           : o.mode == MODE_ROUTER ? ZMQ_ROUTER
                                   : ZMQ_REQ;
    s = zmq_socket(ctx, type);
    if (!ctx || !s) {
        fprintf(stderr, "zmq_client: zmq_socket: %s\n", zmq_strerror(zmq_errno()));
        return 1;
    }
    if (o.mode == MODE_PULL || o.mode == MODE_ROUTER) {
        /* router: the replies must leave before the context ends. */
        set_int(s, ZMQ_LINGER, o.mode == MODE_ROUTER ? o.timeout_ms : 0);
        if (zmq_bind(s, o.endpoint) < 0) {
            fprintf(stderr, "zmq_client: bind %s: %s\n", o.endpoint, zmq_strerror(zmq_errno()));
            return 1;
        }
        rc = o.mode == MODE_PULL ? run_pull(s) : run_router(s);
        if (rc == 0 && o.is_holding) {
            int sig;

            fflush(stdout);
            sigwait(&hold_signals, &sig);
        }
        zmq_close(s);
        zmq_ctx_term(ctx);
        if (out_fd >= 0) {
            close(out_fd);
        }
        return rc;
    }
    set_int(s, ZMQ_LINGER, o.mode == MODE_PUSH ? o.linger_ms : 0);
    if (zmq_connect(s, o.endpoint) < 0) {
        fprintf(stderr, "zmq_client: connect %s: %s\n", o.endpoint, zmq_strerror(zmq_errno()));
        return 1;
    }

    rc = o.mode == MODE_DEALER ? run_dealer(s) : run_in_turn(s);

    if (o.is_holding && o.mode == MODE_PUSH && rc == 0) {
        int sig;

        printf("sent=%lu ok=%lu err=%lu big=%lu\n", n_sent, n_ok, n_err, n_big);
        fflush(stdout);
        sigwait(&hold_signals, &sig);
        set_int(s, ZMQ_LINGER, 0);
        zmq_close(s);
        zmq_ctx_term(ctx);
        if (out_fd >= 0) {
            close(out_fd);
        }
        return 0;
    }

    /* PUSH: closing waits up to the linger for queued messages to leave. */
    t0 = util_now_ms();
    zmq_close(s);
    zmq_ctx_term(ctx);
    if (o.mode == MODE_PUSH && rc == 0 && util_now_ms() - t0 + 50 >= (uint64_t)o.linger_ms) {
        fprintf(stderr, "zmq_client: close took the whole linger (%d ms): messages may be unsent\n",
                o.linger_ms);
        rc = 1;
    }
    printf("sent=%lu ok=%lu err=%lu big=%lu\n", n_sent, n_ok, n_err, n_big);
    if (n_unexpected > 10) {
        fprintf(stderr, "zmq_client: %lu unexpected replies in all\n", n_unexpected);
    }
    if (out_fd >= 0) {
        close(out_fd);
    }
    return rc;
}
