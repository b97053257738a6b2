/*
 * test_stats.c - the text forms of a stats snapshot: the Prometheus
 * exposition (every family has HELP and TYPE before its samples, values,
 * label escaping, -ENOSPC), the sink error counters, and the JSON's new keys.
 */
#include "config.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "stats.h"

#include "tap.h"

static const char *const states[] = { "running", "draining inputs", "we\"ird\\", NULL };

static bool
has_line(const char *text, const char *line)
{
    size_t n = strlen(line);

    for (const char *p = text; (p = strstr(p, line)) != NULL; p++) {
        if ((p == text || p[-1] == '\n') && p[n] == '\n') {
            return true;
        }
    }
    return false;
}

/*
 * Every sample line's family (its name up to '{' or ' ') was announced by
 * "# HELP name" then "# TYPE name" lines before it, and every family has
 * samples.  Returns the first offending line, or NULL.
 */
static const char *
check_families(const char *text, char *bad, size_t len)
{
    char help[128] = "", type[128] = "", line[512];
    const char *p = text;
    bool has_sample = true;

    while (*p) {
        const char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) : strlen(p);

        snprintf(line, sizeof(line), "%.*s", (int)n, p);
        p += n + (nl ? 1 : 0);
        if (strncmp(line, "# HELP ", 7) == 0) {
            if (!has_sample) {
                snprintf(bad, len, "family %s without samples", help);
                return bad;
            }
            sscanf(line + 7, "%127s", help);
            type[0] = '\0';
            has_sample = false;
        } else if (strncmp(line, "# TYPE ", 7) == 0) {
            sscanf(line + 7, "%127s", type);
            if (strcmp(type, help) != 0) {
                snprintf(bad, len, "TYPE %s after HELP %s", type, help);
                return bad;
            }
        } else {
            size_t name = strcspn(line, "{ ");

            if (type[0] == '\0' || strlen(type) != name || strncmp(line, type, name) != 0) {
                snprintf(bad, len, "sample '%s' outside its family (%s)", line, type);
                return bad;
            }
            has_sample = true;
        }
    }
    return NULL;
}

int
main(void)
{
    struct stats s = {
        .received = 10,
        .rejected = 1,
        .replayed = 2,
        .delivered = 9,
        .failed = 3,
        .retried = 4,
        .spilled = 1,
        .queued = 2,
        .queued_bytes = 200,
        .in_flight = 0,
        .uptime_s = 12,
        .uptime_ms = 12345,
        .is_blocked = true,
        .blocked_ms = 1500,
    };
    struct stats_context ctx = {
        .state = "draining inputs",
        .origin = 0x9f1c0a3e5b7d2468ull,
        .states = states,
        .sink = "file",
        .sink_threads = 2,
        .queue_capacity = 100,
        .queue_max_bytes = 4096,
    };
    char buf[8192], small[256], bad[600];
    int n;

    plan(21);

    stats_sink_errors_read(&s);
    ok(s.sink_errors[STATS_SINK_ERROR_FSYNC] == 0, "sink error counters start at 0");
    stats_sink_error(STATS_SINK_ERROR_FSYNC);
    stats_sink_error(STATS_SINK_ERROR_FSYNC);
    stats_sink_error(STATS_SINK_ERROR_OPEN);
    stats_sink_error(STATS_SINK_ERROR_N); /* out of range: ignored */
    stats_sink_errors_read(&s);
    ok(s.sink_errors[STATS_SINK_ERROR_FSYNC] == 2 && s.sink_errors[STATS_SINK_ERROR_OPEN] == 1 &&
           s.sink_errors[STATS_SINK_ERROR_WRITE] == 0,
       "stats_sink_error counts by kind");
    ok(strcmp(stats_sink_error_name(STATS_SINK_ERROR_SEND), "send") == 0 &&
           strcmp(stats_sink_error_name(STATS_SINK_ERROR_N), "?") == 0,
       "stats_sink_error_name");

    n = stats_format_prometheus(&s, &ctx, "1.2.3", buf, sizeof(buf));
    ok(n > 0 && (size_t)n == strlen(buf), "stats_format_prometheus returns the length (%d)", n);
    ok(check_families(buf, bad, sizeof(bad)) == NULL, "HELP and TYPE before every family: %s",
       check_families(buf, bad, sizeof(bad)) ? bad : "yes");
    ok(has_line(buf, "# TYPE zpipe_received_total counter"), "received is a counter");
    ok(has_line(buf, "zpipe_received_total 10"), "received_total 10");
    ok(has_line(buf, "zpipe_replayed_total 2") && has_line(buf, "zpipe_spilled_total 1"),
       "replayed_total and spilled_total");
    ok(has_line(buf, "zpipe_queue_messages 2") && has_line(buf, "zpipe_queue_bytes 200") &&
           has_line(buf, "zpipe_queue_capacity_messages 100") &&
           has_line(buf, "zpipe_queue_max_bytes 4096"),
       "queue depth, bytes and capacities");
    ok(has_line(buf, "zpipe_backpressure_blocked 1") &&
           has_line(buf, "zpipe_backpressure_blocked_seconds 1.500"),
       "backpressure: blocked 1 for 1.500 s");
    ok(has_line(buf, "zpipe_state{state=\"draining inputs\"} 1") &&
           has_line(buf, "zpipe_state{state=\"running\"} 0"),
       "state: 1 for the current one, 0 for the others");
    ok(has_line(buf, "zpipe_state{state=\"we\\\"ird\\\\\"} 0"), "label values are escaped");
    ok(has_line(buf, "zpipe_sink_errors_total{kind=\"fsync\"} 2") &&
           has_line(buf, "zpipe_sink_errors_total{kind=\"timeout\"} 0"),
       "sink errors by kind");
    ok(has_line(buf, "zpipe_uptime_seconds 12.345"), "uptime in seconds with milliseconds");
    ok(has_line(buf, "zpipe_build_info{version=\"1.2.3\"} 1"), "build info");
    ok(buf[n - 1] == '\n', "ends with a newline");
    ok(stats_format_prometheus(&s, &ctx, "1.2.3", small, sizeof(small)) == -ENOSPC,
       "a buffer too small is -ENOSPC");

    n = stats_format_json(&s, &ctx, buf, sizeof(buf));
    ok(n > 0 && strstr(buf, "\"errors\":{\"open\":1,\"write\":0,\"fsync\":2,\"send\":0,"
                            "\"timeout\":0,\"refused\":0}") != NULL,
       "JSON has the sink errors: %s", buf);
    ok(strstr(buf, "\"uptime_ms\":12345}") != NULL && strstr(buf, "\"uptime_s\":12,") != NULL,
       "JSON has uptime_s and uptime_ms");
    ok(strstr(buf, "\"origin\":\"9f1c0a3e5b7d2468\"") != NULL,
       "JSON has the run's origin as 16 hex digits");
    ok(buf[0] == '{' && buf[n - 1] == '}', "JSON is one object");
    return done_testing();
}
