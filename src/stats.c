/*
 * stats.c - counter snapshots and their text forms; see stats.h.
 */
#include "config.h"
#include "stats.h"

#include <inttypes.h>
#include <stdio.h>

uint64_t
stats_lost(const struct stats *s)
{
    uint64_t in = s->received + s->replayed;
    uint64_t out = s->delivered + s->spilled + s->queued + s->in_flight;

    return in > out ? in - out : 0;
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
