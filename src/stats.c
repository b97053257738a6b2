/*
 * stats.c - counter snapshots and their text forms; see stats.h.
 */
#include "config.h"
#include "stats.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

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
    out_printf(&o, ",\"sink\":{\"kind\":");
    out_json_string(&o, ctx->sink);
    out_printf(&o,
               ",\"threads\":%" PRIu64 ",\"failed\":%" PRIu64 ",\"retried\":%" PRIu64 "}}",
               ctx->sink_threads, s->failed, s->retried);
    if (o.is_full) {
        return -ENOSPC;
    }
    return (int)o.pos;
}
