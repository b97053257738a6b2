/*
 * util.c - number, duration and size parsers of the config syntax, the
 * monotonic clock and pthread deadlines, a thread-safe strerror, and mkdir -p.
 */
#include "config.h"

#include "util.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

/*
 * parse_number reads the leading decimal digits of s into *out and points
 * *rest at the first byte after them.  Returns 0, -EINVAL when s does not
 * start with a digit (so signs and blanks are refused), or -ERANGE when the
 * digits do not fit in 64 bits; *rest is set in every case, so the caller can
 * still tell a bad suffix (-EINVAL) from an overflow.
 */
static int
parse_number(const char *s, const char **rest, uint64_t *out)
{
    uint64_t v = 0;
    bool is_overflow = false;

    *rest = s;
    if (*s < '0' || *s > '9') {
        return -EINVAL;
    }
    for (; *s >= '0' && *s <= '9'; s++) {
        unsigned digit = (unsigned)(*s - '0');

        if (v > (UINT64_MAX - digit) / 10) {
            is_overflow = true;
        } else {
            v = v * 10 + digit;
        }
    }
    *rest = s;
    if (is_overflow) {
        return -ERANGE;
    }
    *out = v;
    return 0;
}

/*
 * parse_scaled parses "<digits><suffix>" where suffix is one of the names in
 * units (NULL-terminated, matched exactly) and multiplies by its factor.
 * Syntax errors win over overflow: "99999999999999999999x" is -EINVAL.
 */
static int
parse_scaled(const char *s, const char *const *units, const uint64_t *factors, uint64_t *out)
{
    const char *rest;
    uint64_t v = 0;
    int r;
    size_t i;

    if (s == NULL) {
        return -EINVAL;
    }
    r = parse_number(s, &rest, &v);
    if (r == -EINVAL) {
        return r;
    }
    for (i = 0; units[i] != NULL; i++) {
        if (strcmp(rest, units[i]) == 0) {
            break;
        }
    }
    if (units[i] == NULL) {
        return -EINVAL;
    }
    if (r < 0) {
        return r;
    }
    if (v > UINT64_MAX / factors[i]) {
        return -ERANGE;
    }
    *out = v * factors[i];
    return 0;
}

int
util_parse_uint(const char *s, uint64_t *out)
{
    static const char *const units[] = { "", NULL };
    static const uint64_t factors[] = { 1 };

    return parse_scaled(s, units, factors, out);
}

int
util_parse_duration_ms(const char *s, uint64_t *out_ms)
{
    /* A bare number is seconds, as in systemd.time(7). Suffixes are case-sensitive. */
    static const char *const units[] = { "", "ms", "s", "m", NULL };
    static const uint64_t factors[] = { 1000, 1, 1000, 60 * 1000 };

    return parse_scaled(s, units, factors, out_ms);
}

int
util_parse_size(const char *s, uint64_t *out_bytes)
{
    /* Upper case only, as zpiped.ini(5) spells them: in a duration "m" means minutes. */
    static const char *const units[] = { "", "K", "M", "G", NULL };
    static const uint64_t factors[] = { 1, 1ULL << 10, 1ULL << 20, 1ULL << 30 };

    return parse_scaled(s, units, factors, out_bytes);
}

int
util_parse_hostport(const char *s, char *host, size_t hostlen, uint16_t *port)
{
    const char *h = s, *colon;
    size_t hlen;
    uint64_t v;

    if (*s == '[') {
        const char *close = strchr(s, ']');

        if (close == NULL || close[1] != ':') {
            return -EINVAL;
        }
        h = s + 1;
        hlen = (size_t)(close - h);
        colon = close + 1;
    } else {
        colon = strrchr(s, ':');
        if (colon == NULL) {
            return -EINVAL;
        }
        hlen = (size_t)(colon - s);
        if (memchr(s, ':', hlen) != NULL) {
            return -EINVAL; /* an IPv6 address needs its brackets */
        }
    }
    if (hlen == 0 || memchr(h, ' ', hlen) != NULL || memchr(h, '\t', hlen) != NULL ||
        memchr(h, '[', hlen) != NULL || memchr(h, ']', hlen) != NULL) {
        return -EINVAL;
    }
    if (util_parse_uint(colon + 1, &v) < 0 || v == 0 || v > 65535) {
        return -EINVAL;
    }
    if (hlen >= hostlen) {
        return -ENAMETOOLONG;
    }
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    *port = (uint16_t)v;
    return 0;
}

uint64_t
util_now_ms(void)
{
    return util_now_us() / 1000;
}

uint64_t
util_now_us(void)
{
    struct timespec ts = { 0, 0 };

    /* CLOCK_MONOTONIC cannot fail on Linux with a valid pointer. */
    (void)clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

void
util_deadline_ts(clockid_t clock, uint64_t ms, struct timespec *ts)
{
    clock_gettime(clock, ts);
    ts->tv_sec += (time_t)(ms / 1000);
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

char *
util_printable(char *buf, size_t cap, const char *data, size_t len)
{
    size_t keep = len < cap - 1 ? len : cap - 1;

    for (size_t i = 0; i < keep; i++) {
        buf[i] = data[i] >= 0x20 && data[i] < 0x7f ? data[i] : '?';
    }
    buf[keep] = '\0';
    return buf;
}

const char *
util_strerror(int errnum, char *buf, size_t len)
{
    if (len == 0) {
        return buf;
    }
#if defined(__GLIBC__) && defined(_GNU_SOURCE)
    {
        /* The GNU variant may return a static string instead of filling buf. */
        const char *msg = strerror_r(errnum, buf, len);

        if (msg != buf) {
            snprintf(buf, len, "%s", msg);
        }
    }
#else
    if (strerror_r(errnum, buf, len) != 0)
        snprintf(buf, len, "Unknown error %d", errnum);
#endif
    return buf;
}

int
util_mkdir_p(char *path, mode_t mode)
{
    if (path[0] == '\0') {
        return -ENOENT; /* as mkdir("") */
    }
    for (char *p = path + 1; *p; p++) {
        if (*p != '/') {
            continue;
        }
        *p = '\0';
        if (mkdir(path, mode) < 0 && errno != EEXIST) {
            return -errno;
        }
        *p = '/';
    }
    if (mkdir(path, mode) < 0 && errno != EEXIST) {
        return -errno;
    }
    return 0;
}
