/*
 * client_stats.c - zpipe stats and zpipe ping (see client_stats.h).
 *
 * The stats object is parsed, not searched: nested objects (sink, and
 * sink.errors inside it) repeat key names of the top level, so each value is
 * looked up where the daemon puts it (src/stats.c writes it).  A key the
 * daemon does not send shows as "?" in the summary and as 0 in the rates.
 */
#include "config.h"

#include "client_stats.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "client.h"
#include "util.h"

#define CTL_REPLY_MAX 65536         /* longest control socket reply we accept */
#define FIELD_MAX 64                /* longest value text the summary shows */

/* ------------------------------------------------------------ control socket */

/*
 * ctl_request sends line (without newline) to the control socket at path and
 * reads one reply line into reply (cap bytes, NUL-terminated, newline
 * removed), waiting at most timeout_ms in all (-1 = forever).  Returns 0 or
 * a negative errno (the reason printed).
 */
static int
ctl_request(const char *path, const char *line, int timeout_ms, char *reply, size_t cap)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    uint64_t deadline = util_now_ms() + (uint64_t)(timeout_ms < 0 ? 0 : timeout_ms);
    size_t len = 0, line_len = strlen(line);
    char *req;
    int fd, err = 0;

    if (strlen(path) >= sizeof(sa.sun_path)) {
        client_fail("%s: path too long for a unix socket", path);
        return -ENAMETOOLONG;
    }
    memcpy(sa.sun_path, path, strlen(path) + 1);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        err = -errno;
        client_fail("socket: %s", client_errstr(-err));
        return err;
    }
    if (timeout_ms >= 0) {
        /* A connect waits while the listen queue is full (a zpiped that
         * is stopped or hung): bounded too.  0 would mean for ever. */
        int ms = timeout_ms > 0 ? timeout_ms : 1;
        struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };

        (void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    }
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        err = -errno;
        if (err == -EAGAIN) {
            err = -ETIMEDOUT;
            client_fail("%s: not accepted within %d ms (its listen queue is full: is zpiped "
                        "stopped or hung?)",
                        path, timeout_ms);
        } else {
            client_fail("connect %s: %s (is zpiped running?)", path, client_errstr(-err));
        }
        goto out;
    }
    req = malloc(line_len + 1);
    if (!req) {
        err = -ENOMEM;
        client_fail("%s", client_errstr(ENOMEM));
        goto out;
    }
    memcpy(req, line, line_len);
    req[line_len] = '\n';
    if (send(fd, req, line_len + 1, MSG_NOSIGNAL) != (ssize_t)(line_len + 1)) {
        err = -errno;
        free(req);
        client_fail("send to %s: %s", path, client_errstr(-err));
        goto out;
    }
    free(req);
    for (;;) {
        struct pollfd pfd = { .fd = fd, .events = POLLIN };
        int wait_ms = -1;
        ssize_t n;

        if (timeout_ms >= 0) {
            uint64_t now = util_now_ms();

            wait_ms = now >= deadline ? 0 : (int)(deadline - now);
        }
        if (poll(&pfd, 1, wait_ms) == 0) {
            err = -ETIMEDOUT;
            client_fail("%s: no reply within %d ms", path, timeout_ms);
            goto out;
        }
        n = recv(fd, reply + len, cap - 1 - len, 0);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            err = -errno;
            client_fail("recv from %s: %s", path, client_errstr(-err));
            goto out;
        }
        if (n == 0) {
            err = -ECONNRESET;
            client_fail("%s: connection closed before the reply ended", path);
            goto out;
        }
        len += (size_t)n;
        reply[len] = '\0';
        char *nl = memchr(reply, '\n', len);
        if (nl) {
            *nl = '\0';
            break;
        }
        if (len == cap - 1) {
            err = -EMSGSIZE;
            client_fail("%s: reply longer than %zu bytes", path, cap - 1);
            goto out;
        }
    }
out:
    close(fd);
    return err;
}

/* ------------------------------------------------------------ the stats object */

/*
 * stats_request asks for the stats object: its text into reply (CTL_REPLY_MAX
 * bytes) and the parsed object into *out, which the caller json_decref()s.
 * Returns 0, or a negative errno after printing why.
 */
static int
stats_request(const struct client_stats_opts *o, char *reply, json_t **out)
{
    json_t *root;
    int rc = ctl_request(o->sock, "stats", o->timeout_ms, reply, CTL_REPLY_MAX);

    if (rc < 0) {
        return rc;
    }
    root = json_loads(reply, 0, NULL);
    if (!json_is_object(root)) {
        json_decref(root);
        client_fail("stats: %s answered: %s", o->sock,
                    util_printable(reply, CTL_REPLY_MAX, reply, strlen(reply)));
        return -EPROTO;
    }
    *out = root;
    return 0;
}

/*
 * text_of_value writes the text of value into buf (FIELD_MAX bytes,
 * truncated) as the daemon wrote it (a string's bytes outside printable
 * ASCII as '?'), or "?" when value is NULL or not a scalar.  The one real,
 * blocked_s, has three decimals.  Returns buf.
 */
static const char *
text_of_value(const json_t *value, char *buf)
{
    switch (value ? json_typeof(value) : JSON_NULL) {
    case JSON_STRING:
        util_printable(buf, FIELD_MAX, json_string_value(value), json_string_length(value));
        break;
    case JSON_INTEGER:
        snprintf(buf, FIELD_MAX, "%" JSON_INTEGER_FORMAT, json_integer_value(value));
        break;
    case JSON_REAL:
        snprintf(buf, FIELD_MAX, "%.3f", json_real_value(value));
        break;
    case JSON_TRUE:
    case JSON_FALSE:
        snprintf(buf, FIELD_MAX, "%s", json_is_true(value) ? "true" : "false");
        break;
    default:
        snprintf(buf, FIELD_MAX, "?");
        break;
    }
    return buf;
}

/* text_of is text_of_value of key's value in obj. */
static const char *
text_of(const json_t *obj, const char *key, char *buf)
{
    return text_of_value(json_object_get(obj, key), buf);
}

/*
 * field_of returns the scalar at name in stats: a top-level key, or keys
 * joined by dots for the nested objects (sink.kind, sink.errors.open); NULL
 * when there is none.
 */
static const json_t *
field_of(const json_t *stats, const char *name)
{
    char path[FIELD_MAX], *key, *save = NULL;
    const json_t *value = stats;

    if (snprintf(path, sizeof(path), "%s", name) >= (int)sizeof(path)) {
        return NULL;
    }
    for (key = strtok_r(path, ".", &save); key; key = strtok_r(NULL, ".", &save)) {
        value = json_object_get(value, key);
    }
    return json_is_object(value) || json_is_array(value) ? NULL : value;
}

/*
 * print_fields prints the values of the comma-separated names in o->fields
 * (see field_of) on one line, separated by spaces.  Returns 0, or -ENOENT
 * after saying which name the reply lacks; then it prints nothing.
 */
static int
print_fields(const struct client_stats_opts *o, const json_t *stats)
{
    char name[FIELD_MAX], buf[FIELD_MAX];
    const json_t *value;
    const char *p;
    size_t len;

    for (int pass = 0; pass < 2; pass++) {      /* look up every name, then print */
        for (p = o->fields;; p += len + 1) {
            len = strcspn(p, ",");
            snprintf(name, sizeof(name), "%.*s", (int)len, p);
            value = field_of(stats, name);
            if (!value) {
                client_fail("stats: %s sent no field %s", o->sock, name);
                return -ENOENT;
            }
            if (pass == 1) {
                printf("%s%s", p == o->fields ? "" : " ", text_of_value(value, buf));
            }
            if (p[len] == '\0') {
                break;
            }
        }
    }
    printf("\n");
    return 0;
}

/* count_of returns the counter key of stats: 0 when absent, negative or not a number. */
static uint64_t
count_of(const json_t *stats, const char *key)
{
    const json_t *value = json_object_get(stats, key);

    if (json_is_integer(value)) {
        json_int_t n = json_integer_value(value);

        return n > 0 ? (uint64_t)n : 0;
    }
    if (json_is_real(value)) {
        double d = json_real_value(value);

        /* Past 2^64 the conversion is undefined; NaN fails d > 0. */
        return !(d > 0) ? 0 : d < 18446744073709551616.0 ? (uint64_t)d : UINT64_MAX;
    }
    return 0;
}

/* per_second is count / ms in messages per second; 0 for no time. */
static double
per_second(uint64_t count, uint64_t ms)
{
    return ms == 0 ? 0.0 : (double)count * 1000.0 / (double)ms;
}

/* print_summary prints the readable summary of the stats object. */
static void
print_summary(const json_t *stats)
{
    const json_t *sink = json_object_get(stats, "sink");
    uint64_t up_ms = count_of(stats, "uptime_ms");
    char a[FIELD_MAX], b[FIELD_MAX], c[FIELD_MAX], d[FIELD_MAX];    /* one per %s of a line */

    if (up_ms == 0) {
        up_ms = count_of(stats, "uptime_s") * 1000;
    }
    printf("state:        %s, up %s s\n", text_of(stats, "state", a),
           text_of(stats, "uptime_s", b));
    printf("origin:       %s (this run's message ids: ORIGIN-SEQ)\n", text_of(stats, "origin", a));
    printf("received:     %s (rejected %s)\n", text_of(stats, "received", a),
           text_of(stats, "rejected", b));
    printf("delivered:    %s\n", text_of(stats, "delivered", a));
    printf("curve:        %s connections refused by the allow-list\n",
           text_of(stats, "curve_refused", a));
    printf("rates:        received %.1f/s, delivered %.1f/s (averages since start)\n",
           per_second(count_of(stats, "received"), up_ms),
           per_second(count_of(stats, "delivered"), up_ms));
    printf("queued:       %s of %s messages, %s of %s bytes\n", text_of(stats, "queued", a),
           text_of(stats, "queue_capacity", b), text_of(stats, "queued_bytes", c),
           text_of(stats, "queue_max_bytes", d));
    printf("in flight:    %s\n", text_of(stats, "in_flight", a));
    printf("sink:         %s on %s thread(s), %s failed writes, %s retries\n",
           text_of(sink, "kind", a), text_of(sink, "threads", b), text_of(stats, "failed", c),
           text_of(stats, "retried", d));
    printf("spilled:      %s (replayed %s)\n", text_of(stats, "spilled", a),
           text_of(stats, "replayed", b));
    if (json_is_true(json_object_get(stats, "blocked"))) {
        printf("backpressure: producers blocked on a full queue for %s s\n",
               text_of(stats, "blocked_s", a));
    } else {
        printf("backpressure: none\n");
    }
}

/* The counters of one stats reply that the interval lines show. */
struct sample {
    uint64_t at_ms;                 /* the daemon's uptime_ms, or our clock if it has none */
    uint64_t received, delivered, rejected, spilled, queued;
    bool is_blocked;
};

static void
sample_read(const json_t *stats, struct sample *s)
{
    s->at_ms = count_of(stats, "uptime_ms");
    if (s->at_ms == 0) {
        s->at_ms = util_now_ms();
    }
    s->received = count_of(stats, "received");
    s->delivered = count_of(stats, "delivered");
    s->rejected = count_of(stats, "rejected");
    s->spilled = count_of(stats, "spilled");
    s->queued = count_of(stats, "queued");
    s->is_blocked = json_is_true(json_object_get(stats, "blocked"));
}

/* Counter b minus a, 0 if it went down (a restarted daemon). */
static uint64_t
delta(uint64_t a, uint64_t b)
{
    return b > a ? b - a : 0;
}

/* One interval line: what happened between samples a and b, and b's gauges. */
static void
print_interval(const struct sample *a, const struct sample *b)
{
    uint64_t ms = delta(a->at_ms, b->at_ms);
    time_t now = time(NULL);
    struct tm tm;
    char clock[16] = "?";

    if (localtime_r(&now, &tm) != NULL) {
        strftime(clock, sizeof(clock), "%H:%M:%S", &tm);
    }
    printf("%-8s %10" PRIu64 " %10.1f %10" PRIu64 " %10.1f %9" PRIu64 " %8" PRIu64 " %8" PRIu64
           " %s\n",
           clock, delta(a->received, b->received), per_second(delta(a->received, b->received), ms),
           delta(a->delivered, b->delivered), per_second(delta(a->delivered, b->delivered), ms),
           delta(a->rejected, b->rejected), delta(a->spilled, b->spilled), b->queued,
           b->is_blocked ? "yes" : "no");
}

/* stats_print prints stats: the fields asked for, its text with --json, else the summary. */
static int
stats_print(const struct client_stats_opts *o, const char *reply, const json_t *stats)
{
    if (o->fields) {
        return print_fields(o, stats);
    }
    if (o->is_json) {
        printf("%s\n", reply);
    } else {
        print_summary(stats);
    }
    return 0;
}

/*
 * stats_watch prints, every interval, what happened since the previous
 * sample: counts and per-second rates (the daemon's uptime_ms is the clock,
 * so the rates do not depend on how late our wake-ups are), or with --json
 * or --field each object as stats_print does.  Runs until count lines or an
 * error.
 */
static int
stats_watch(const struct client_stats_opts *o, char *reply)
{
    bool is_each = o->is_json || o->fields;
    struct sample prev, cur;
    uint64_t lines = 0;
    json_t *stats;
    int rc = stats_request(o, reply, &stats);

    if (rc < 0) {
        return rc;
    }
    sample_read(stats, &prev);
    if (is_each) {
        rc = stats_print(o, reply, stats);
        lines++;
    } else {
        printf("%-8s %10s %10s %10s %10s %9s %8s %8s %s\n", "time", "received", "recv/s",
               "delivered", "deliv/s", "rejected", "spilled", "queued", "blocked");
    }
    json_decref(stats);
    while (rc == 0 && (o->count == 0 || lines < o->count)) {
        if (fflush(stdout) != 0) {
            rc = -errno;
            client_fail("write stdout: %s", client_errstr(-rc));
            return rc;
        }
        (void)poll(NULL, 0, (int)o->interval_ms);
        rc = stats_request(o, reply, &stats);
        if (rc < 0) {
            return rc;
        }
        if (is_each) {
            rc = stats_print(o, reply, stats);
        } else {
            sample_read(stats, &cur);
            print_interval(&prev, &cur);
            prev = cur;
        }
        json_decref(stats);
        lines++;
    }
    return rc;
}

int
client_stats_run(const struct client_stats_opts *o)
{
    char *reply = malloc(CTL_REPLY_MAX);
    json_t *stats;
    int rc;

    if (!reply) {
        client_fail("stats: %s", client_errstr(ENOMEM));
        return -ENOMEM;
    }
    if (o->interval_ms > 0) {
        rc = stats_watch(o, reply);
    } else {
        rc = stats_request(o, reply, &stats);
        if (rc == 0) {
            rc = stats_print(o, reply, stats);
            json_decref(stats);
        }
    }
    free(reply);
    return rc;
}

int
client_stats_ping(const struct client_stats_opts *o)
{
    char reply[256];
    int rc = ctl_request(o->sock, "ping", o->timeout_ms, reply, sizeof(reply));

    if (rc < 0) {
        return rc;
    }
    if (strcmp(reply, "pong") != 0) {
        client_fail("ping: %s answered: %s", o->sock,
                    util_printable(reply, sizeof(reply), reply, strlen(reply)));
        return -EPROTO;
    }
    printf("pong\n");
    return 0;
}
