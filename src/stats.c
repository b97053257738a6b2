/*
 * stats.c - counter snapshots and their text forms; see stats.h.
 */
#include "config.h"
#include "stats.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

static const char *const sink_error_names[STATS_SINK_ERROR_N] = {
    [STATS_SINK_ERROR_OPEN] = "open",       [STATS_SINK_ERROR_WRITE] = "write",
    [STATS_SINK_ERROR_FSYNC] = "fsync",     [STATS_SINK_ERROR_SEND] = "send",
    [STATS_SINK_ERROR_TIMEOUT] = "timeout", [STATS_SINK_ERROR_REFUSED] = "refused",
};

/* Process-wide: every sink instance of every consumer adds to them. */
static _Atomic uint64_t sink_errors[STATS_SINK_ERROR_N];

void
stats_sink_error(enum stats_sink_error kind)
{
    if ((unsigned)kind < STATS_SINK_ERROR_N) {
        atomic_fetch_add_explicit(&sink_errors[kind], 1, memory_order_relaxed);
    }
}

const char *
stats_sink_error_name(enum stats_sink_error kind)
{
    return (unsigned)kind < STATS_SINK_ERROR_N ? sink_error_names[kind] : "?";
}

void
stats_sink_errors_read(struct stats *s)
{
    for (size_t i = 0; i < STATS_SINK_ERROR_N; i++) {
        s->sink_errors[i] = atomic_load_explicit(&sink_errors[i], memory_order_relaxed);
    }
}

/* Process-wide, like sink_errors: bumped by the ZAP handler's thread. */
static _Atomic uint64_t curve_refused;

void
stats_curve_refused(void)
{
    atomic_fetch_add_explicit(&curve_refused, 1, memory_order_relaxed);
}

void
stats_curve_read(struct stats *s)
{
    s->curve_refused = atomic_load_explicit(&curve_refused, memory_order_relaxed);
}

/* An output buffer that remembers whether anything did not fit. */
struct out {
    char *buf;
    size_t len, pos;
    bool is_full;
};

__attribute__((format(printf, 2, 3))) static void
out_printf(struct out *o, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (o->is_full) {
        return;
    }
    va_start(ap, fmt);
    n = vsnprintf(o->buf + o->pos, o->len - o->pos, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= o->len - o->pos) {
        o->is_full = true;
        return;
    }
    o->pos += (size_t)n;
}

/* Writes str as a JSON string: quotes, and escapes for '"', '\\' and control bytes. */
static void
out_json_string(struct out *o, const char *str)
{
    out_printf(o, "\"");
    for (const unsigned char *p = (const unsigned char *)(str ? str : ""); *p; p++) {
        switch (*p) {
        case '"':
            out_printf(o, "\\\"");
            break;
        case '\\':
            out_printf(o, "\\\\");
            break;
        case '\n':
            out_printf(o, "\\n");
            break;
        case '\r':
            out_printf(o, "\\r");
            break;
        case '\t':
            out_printf(o, "\\t");
            break;
        default:
            if (*p < 0x20 || *p == 0x7f) {
                out_printf(o, "\\u%04x", *p);
            } else {
                out_printf(o, "%c", *p);
            }
        }
    }
    out_printf(o, "\"");
}

const char *
stats_format_status(const struct stats *s, uint64_t capacity, char *buf, size_t len)
{
    snprintf(buf, len,
             "received %" PRIu64 " delivered %" PRIu64 " queued %" PRIu64 "/%" PRIu64
             " rejected %" PRIu64 " spilled %" PRIu64,
             s->received, s->delivered, s->queued, capacity, s->rejected, s->spilled);
    return buf;
}

const char *
stats_format_accounting(const struct stats *s, char *buf, size_t len)
{
    snprintf(buf, len,
             "received %" PRIu64 " replayed %" PRIu64 " delivered %" PRIu64 " spilled %" PRIu64
             " queued %" PRIu64 " in_flight %" PRIu64 " rejected %" PRIu64 " failed %" PRIu64
             " retried %" PRIu64,
             s->received, s->replayed, s->delivered, s->spilled, s->queued, s->in_flight,
             s->rejected, s->failed, s->retried);
    return buf;
}

int
stats_format_json(const struct stats *s, const struct stats_context *ctx, char *buf, size_t len)
{
    struct out o = { .buf = buf, .len = len };

    out_printf(&o,
               "{\"received\":%" PRIu64 ",\"rejected\":%" PRIu64 ",\"queued\":%" PRIu64
               ",\"queued_bytes\":%" PRIu64 ",\"delivered\":%" PRIu64 ",\"failed\":%" PRIu64
               ",\"retried\":%" PRIu64 ",\"spilled\":%" PRIu64 ",\"replayed\":%" PRIu64
               ",\"in_flight\":%" PRIu64 ",\"uptime_s\":%" PRIu64,
               s->received, s->rejected, s->queued, s->queued_bytes, s->delivered, s->failed,
               s->retried, s->spilled, s->replayed, s->in_flight, s->uptime_s);
    out_printf(&o, ",\"queue_capacity\":%" PRIu64 ",\"queue_max_bytes\":%" PRIu64,
               ctx->queue_capacity, ctx->queue_max_bytes);
    out_printf(&o, ",\"blocked\":%s,\"blocked_s\":%" PRIu64 ".%03" PRIu64,
               s->is_blocked ? "true" : "false", s->blocked_ms / 1000, s->blocked_ms % 1000);
    out_printf(&o, ",\"state\":");
    out_json_string(&o, ctx->state);
    out_printf(&o, ",\"origin\":\"%016" PRIx64 "\"", ctx->origin);
    out_printf(&o, ",\"sink\":{\"kind\":");
    out_json_string(&o, ctx->sink);
    out_printf(&o, ",\"threads\":%" PRIu64 ",\"failed\":%" PRIu64 ",\"retried\":%" PRIu64,
               ctx->sink_threads, s->failed, s->retried);
    out_printf(&o, ",\"errors\":{");
    for (size_t i = 0; i < STATS_SINK_ERROR_N; i++) {
        out_printf(&o, "%s\"%s\":%" PRIu64, i > 0 ? "," : "", sink_error_names[i],
                   s->sink_errors[i]);
    }
    out_printf(&o, "}},\"curve_refused\":%" PRIu64, s->curve_refused);
    out_printf(&o, ",\"uptime_ms\":%" PRIu64 "}", s->uptime_ms);
    if (o.is_full) {
        return -ENOSPC;
    }
    return (int)o.pos;
}

/* Writes str as a Prometheus label value: quoted, with \\, \" and \n escaped. */
static void
out_label_value(struct out *o, const char *str)
{
    out_printf(o, "\"");
    for (const char *p = str ? str : ""; *p; p++) {
        switch (*p) {
        case '\\':
            out_printf(o, "\\\\");
            break;
        case '"':
            out_printf(o, "\\\"");
            break;
        case '\n':
            out_printf(o, "\\n");
            break;
        default:
            out_printf(o, "%c", *p);
        }
    }
    out_printf(o, "\"");
}

/* A family's HELP and TYPE lines; help is ours, so it needs no escaping. */
static void
out_family(struct out *o, const char *name, const char *type, const char *help)
{
    out_printf(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A family of one unlabelled sample. */
static void
out_metric(struct out *o, const char *name, const char *type, const char *help, uint64_t v)
{
    out_family(o, name, type, help);
    out_printf(o, "%s %" PRIu64 "\n", name, v);
}

/* Milliseconds as seconds with three decimals, exactly (no floating point). */
static void
out_seconds(struct out *o, const char *name, const char *help, uint64_t ms)
{
    out_family(o, name, "gauge", help);
    out_printf(o, "%s %" PRIu64 ".%03" PRIu64 "\n", name, ms / 1000, ms % 1000);
}

int
stats_format_prometheus(const struct stats *s, const struct stats_context *ctx, const char *version,
                        char *buf, size_t len)
{
    struct out o = { .buf = buf, .len = len };

    out_metric(&o, "zpipe_received_total", "counter", "Messages accepted from the input sockets.",
               s->received);
    out_metric(&o, "zpipe_rejected_total", "counter",
               "Messages refused for their size; counted nowhere else.", s->rejected);
    out_metric(&o, "zpipe_replayed_total", "counter",
               "Messages fed into the queue from spill files of earlier runs.", s->replayed);
    out_metric(&o, "zpipe_delivered_total", "counter", "Messages taken by the sink.", s->delivered);
    out_metric(&o, "zpipe_failed_total", "counter",
               "Failed sink writes of a batch (each is retried, or spilled at the drain "
               "deadline).",
               s->failed);
    out_metric(&o, "zpipe_retried_total", "counter", "Batch writes retried after an error.",
               s->retried);
    out_metric(&o, "zpipe_spilled_total", "counter",
               "Messages written to a spill file at the drain deadline.", s->spilled);
    out_metric(&o, "zpipe_queue_messages", "gauge", "Messages in the queue now.", s->queued);
    out_metric(&o, "zpipe_queue_bytes", "gauge",
               "Bytes in the queue now: payload plus 16 per frame after the first.",
               s->queued_bytes);
    out_metric(&o, "zpipe_queue_capacity_messages", "gauge",
               "Queue capacity in messages (queue.capacity).", ctx->queue_capacity);
    out_metric(&o, "zpipe_queue_max_bytes", "gauge",
               "Queue capacity in bytes (queue.max_bytes).", ctx->queue_max_bytes);
    out_metric(&o, "zpipe_in_flight_messages", "gauge",
               "Messages a consumer holds that are neither delivered nor spilled yet.",
               s->in_flight);
    out_metric(&o, "zpipe_backpressure_blocked", "gauge",
               "1 while producers wait on a full queue, else 0.", s->is_blocked ? 1 : 0);
    out_seconds(&o, "zpipe_backpressure_blocked_seconds",
                "How long the producers have been waiting on a full queue (0 when not).",
                s->blocked_ms);
    out_family(&o, "zpipe_state", "gauge",
               "Drain state: 1 for the current state, 0 for the others.");
    for (const char *const *st = ctx->states; st && *st; st++) {
        out_printf(&o, "zpipe_state{state=");
        out_label_value(&o, *st);
        out_printf(&o, "} %d\n", ctx->state && strcmp(*st, ctx->state) == 0 ? 1 : 0);
    }
    out_family(&o, "zpipe_sink_errors_total", "counter",
               "Failed calls of the sinks by what failed (one failed batch may count "
               "several).");
    for (size_t i = 0; i < STATS_SINK_ERROR_N; i++) {
        out_printf(&o, "zpipe_sink_errors_total{kind=\"%s\"} %" PRIu64 "\n", sink_error_names[i],
                   s->sink_errors[i]);
    }
    out_metric(&o, "zpipe_curve_refused_total", "counter",
               "Connections refused by the CURVE allow-list (input.curve_allow).",
               s->curve_refused);
    out_family(&o, "zpipe_sink_threads", "gauge",
               "Consumer threads, each with its own instance of the sink.");
    out_printf(&o, "zpipe_sink_threads{kind=");
    out_label_value(&o, ctx->sink);
    out_printf(&o, "} %" PRIu64 "\n", ctx->sink_threads);
    out_seconds(&o, "zpipe_uptime_seconds", "Seconds since zpiped started.", s->uptime_ms);
    out_family(&o, "zpipe_build_info", "gauge", "The version of zpiped; always 1.");
    out_printf(&o, "zpipe_build_info{version=");
    out_label_value(&o, version);
    out_printf(&o, "} 1\n");
    if (o.is_full) {
        return -ENOSPC;
    }
    return (int)o.pos;
}
