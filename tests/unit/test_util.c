/*
 * test_util.c - the number, duration and size parsers, the clock, strerror.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "util.h"

#include "tap.h"

typedef int parse_fn(const char *s, uint64_t *out);

/* Marks "out was not written": no parser result in these tests equals it. */
#define UNTOUCHED UINT64_C(0xdeadbeefcafef00d)

struct parse_case {
    const char *in;
    int rc;
    uint64_t want; /* only when rc == 0 */
};

/* show copies s into buf with \n and \t escaped, so a TAP line stays one line. */
static const char *
show(const char *s, char *buf, size_t len)
{
    size_t n = 0;

    for (; *s != '\0' && n + 3 < len; s++) {
        if (*s == '\n' || *s == '\t') {
            buf[n++] = '\\';
            buf[n++] = *s == '\n' ? 'n' : 't';
        } else {
            buf[n++] = *s;
        }
    }
    buf[n] = '\0';
    return buf;
}

static void
check_cases(const char *fn_name, parse_fn *fn, const struct parse_case *cases, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        uint64_t out = UNTOUCHED;
        int rc = fn(cases[i].in, &out);
        char in[64];

        show(cases[i].in, in, sizeof(in));

        if (cases[i].rc == 0) {
            ok(rc == 0 && out == cases[i].want, "%s(\"%s\") = %" PRIu64 " (got rc %d, %" PRIu64 ")",
               fn_name, in, cases[i].want, rc, out);
        } else {
            ok(rc == cases[i].rc && out == UNTOUCHED,
               "%s(\"%s\") fails with %s, out untouched (got %d)", fn_name, in,
               cases[i].rc == -ERANGE ? "-ERANGE" : "-EINVAL", rc);
        }
    }
}

static const struct parse_case uint_cases[] = {
    { "0", 0, 0 },
    { "1", 0, 1 },
    { "007", 0, 7 },
    { "65536", 0, 65536 },
    { "18446744073709551615", 0, UINT64_MAX },
    { "18446744073709551616", -ERANGE, 0 },
    { "99999999999999999999", -ERANGE, 0 },
    { "184467440737095516150", -ERANGE, 0 },
    { "", -EINVAL, 0 },
    { "-1", -EINVAL, 0 },
    { "+1", -EINVAL, 0 },
    { " 1", -EINVAL, 0 },
    { "1 ", -EINVAL, 0 },
    { "1\n", -EINVAL, 0 },
    { "\t1", -EINVAL, 0 },
    { "1x", -EINVAL, 0 },
    { "0x10", -EINVAL, 0 },
    { "1.5", -EINVAL, 0 },
    { "1K", -EINVAL, 0 },
    { "1e3", -EINVAL, 0 },
    { "abc", -EINVAL, 0 },
    /* A bad suffix is a syntax error even when the digits overflow. */
    { "99999999999999999999x", -EINVAL, 0 },
};

static const struct parse_case duration_cases[] = {
    { "0", 0, 0 },
    { "0ms", 0, 0 },
    { "1", 0, 1000 },
    { "500ms", 0, 500 },
    { "2s", 0, 2000 },
    { "1m", 0, 60000 },
    { "90s", 0, 90000 },
    { "18446744073709551615ms", 0, UINT64_MAX },
    { "18446744073709551s", 0, UINT64_C(18446744073709551000) },
    { "18446744073709552s", -ERANGE, 0 },
    { "18446744073709552", -ERANGE, 0 },
    { "307445734561825m", 0, UINT64_C(307445734561825) * 60000 },
    { "307445734561826m", -ERANGE, 0 },
    { "18446744073709551616ms", -ERANGE, 0 },
    { "", -EINVAL, 0 },
    { "ms", -EINVAL, 0 },
    { "s", -EINVAL, 0 },
    { "-1s", -EINVAL, 0 },
    { "+1s", -EINVAL, 0 },
    { " 1s", -EINVAL, 0 },
    { "1s ", -EINVAL, 0 },
    { "1 s", -EINVAL, 0 },
    { "1S", -EINVAL, 0 },
    { "1MS", -EINVAL, 0 },
    { "1h", -EINVAL, 0 },
    { "1min", -EINVAL, 0 },
    { "1sec", -EINVAL, 0 },
    { "1.5s", -EINVAL, 0 },
    { "1ms2", -EINVAL, 0 },
    { "1s500ms", -EINVAL, 0 },
};

static const struct parse_case size_cases[] = {
    { "0", 0, 0 },
    { "4096", 0, 4096 },
    { "1K", 0, 1024 },
    { "64K", 0, 65536 },
    { "1M", 0, 1048576 },
    { "256M", 0, UINT64_C(268435456) },
    { "2G", 0, UINT64_C(2147483648) },
    { "17179869183G", 0, UINT64_C(17179869183) << 30 },
    { "17179869184G", -ERANGE, 0 },
    { "17592186044416M", -ERANGE, 0 },
    { "18014398509481984K", -ERANGE, 0 },
    { "18446744073709551615", 0, UINT64_MAX },
    { "18446744073709551616", -ERANGE, 0 },
    { "", -EINVAL, 0 },
    { "K", -EINVAL, 0 },
    { "1k", -EINVAL, 0 },
    { "1m", -EINVAL, 0 },
    { "1g", -EINVAL, 0 },
    { "1KB", -EINVAL, 0 },
    { "1KiB", -EINVAL, 0 },
    { "1T", -EINVAL, 0 },
    { "-1K", -EINVAL, 0 },
    { "+1K", -EINVAL, 0 },
    { " 1K", -EINVAL, 0 },
    { "1K ", -EINVAL, 0 },
    { "1 K", -EINVAL, 0 },
    { "1.5M", -EINVAL, 0 },
};

static void
test_clock(void)
{
    uint64_t a_ms = util_now_ms(), a_us = util_now_us();
    struct timespec ts = { 0, 2 * 1000 * 1000 };
    uint64_t b_ms, b_us;

    nanosleep(&ts, NULL);
    b_ms = util_now_ms();
    b_us = util_now_us();
    ok(b_us >= a_us + 2000, "util_now_us advances by at least the 2 ms slept (%" PRIu64 " us)",
       b_us - a_us);
    ok(b_ms >= a_ms + 2, "util_now_ms advances by at least the 2 ms slept (%" PRIu64 " ms)",
       b_ms - a_ms);
    ok(b_ms <= b_us / 1000 + 1 && b_ms + 1000 >= b_us / 1000,
       "util_now_ms and util_now_us read the same clock");
}

static void
test_deadline(void)
{
    struct timespec before, ts;
    int64_t ahead_ns;

    clock_gettime(CLOCK_MONOTONIC, &before);
    util_deadline_ts(CLOCK_MONOTONIC, 1999, &ts);
    ok(ts.tv_nsec >= 0 && ts.tv_nsec < 1000000000L, "util_deadline_ts normalises tv_nsec (%ld)",
       ts.tv_nsec);
    ahead_ns = (int64_t)(ts.tv_sec - before.tv_sec) * 1000000000 + (ts.tv_nsec - before.tv_nsec);
    ok(ahead_ns >= 1999000000LL && ahead_ns <= 1999000000LL + 60000000000LL,
       "util_deadline_ts is 1999 ms ahead, give or take scheduling (%" PRId64 " ns)", ahead_ns);
}

static void
test_mkdir_p(void)
{
    char top[] = "/tmp/zpipe-test-util-XXXXXX";
    char path[256], file[256];
    struct stat st;
    FILE *f;

    if (!mkdtemp(top)) {
        bail_out("mkdtemp");
    }
    snprintf(path, sizeof(path), "%s/a/b/c", top);
    ok(util_mkdir_p(path, 0750) == 0 && strcmp(path + strlen(top), "/a/b/c") == 0 &&
           stat(path, &st) == 0 && S_ISDIR(st.st_mode),
       "util_mkdir_p makes a directory and its missing parents, path restored");
    ok(util_mkdir_p(path, 0750) == 0, "util_mkdir_p of an existing directory is 0");
    snprintf(file, sizeof(file), "%s/f", top);
    f = fopen(file, "w");
    if (f) {
        fclose(f);
    }
    snprintf(path, sizeof(path), "%s/f/x/y", top);
    ok(util_mkdir_p(path, 0750) == -ENOTDIR && strcmp(path + strlen(top), "/f/x") == 0,
       "under a file: -ENOTDIR, path left at the directory that failed (%s)", path);
    unlink(file);
    snprintf(path, sizeof(path), "%s/a/b/c", top);
    rmdir(path);
    snprintf(path, sizeof(path), "%s/a/b", top);
    rmdir(path);
    snprintf(path, sizeof(path), "%s/a", top);
    rmdir(path);
    rmdir(top);
}

static void
test_strerror(void)
{
    char buf[128], small[8];
    const char *s;

    s = util_strerror(ENOENT, buf, sizeof(buf));
    ok(s == buf && strcmp(buf, strerror(ENOENT)) == 0, "util_strerror(ENOENT) = \"%s\" in buf", s);
    s = util_strerror(ENOSPC, buf, sizeof(buf));
    ok(s == buf && strcmp(buf, "No space left on device") == 0, "util_strerror(ENOSPC) = \"%s\"",
       s);
    s = util_strerror(123456, buf, sizeof(buf));
    ok(s == buf && buf[0] != '\0', "util_strerror of an unknown errno gives a message: \"%s\"", s);
    s = util_strerror(ENOENT, small, sizeof(small));
    ok(s == small && strlen(small) < sizeof(small),
       "util_strerror truncates to a short buffer: \"%s\"", s);
}

struct hostport_case {
    const char *in;
    int rc;
    const char *host; /* only when rc == 0 */
    uint16_t port;
};

static const struct hostport_case hostport_cases[] = {
    { "127.0.0.1:9555", 0, "127.0.0.1", 9555 },
    { "localhost:1", 0, "localhost", 1 },
    { "[::1]:65535", 0, "::1", 65535 },
    { "[fe80::1%lo]:80", 0, "fe80::1%lo", 80 },
    { "0.0.0.0:9555", 0, "0.0.0.0", 9555 },
    { "", -EINVAL, NULL, 0 },
    { "127.0.0.1", -EINVAL, NULL, 0 },
    { ":9555", -EINVAL, NULL, 0 },
    { "127.0.0.1:", -EINVAL, NULL, 0 },
    { "127.0.0.1:0", -EINVAL, NULL, 0 },
    { "127.0.0.1:65536", -EINVAL, NULL, 0 },
    { "127.0.0.1:+80", -EINVAL, NULL, 0 },
    { "127.0.0.1:80x", -EINVAL, NULL, 0 },
    { "::1:9555", -EINVAL, NULL, 0 },
    { "[::1]9555", -EINVAL, NULL, 0 },
    { "[::1:9555", -EINVAL, NULL, 0 },
    { "[]:9555", -EINVAL, NULL, 0 },
    { "a b:80", -EINVAL, NULL, 0 },
    { "0123456789012345678901234567890123456789:80", -ENAMETOOLONG, NULL, 0 },
};

#define N_HOSTPORT (sizeof(hostport_cases) / sizeof(hostport_cases[0]))

static void
test_hostport(void)
{
    for (size_t i = 0; i < N_HOSTPORT; i++) {
        const struct hostport_case *c = &hostport_cases[i];
        char host[32] = "";
        uint16_t port = 0;
        int rc = util_parse_hostport(c->in, host, sizeof(host), &port);

        if (c->rc == 0) {
            ok(rc == 0 && strcmp(host, c->host) == 0 && port == c->port,
               "util_parse_hostport(\"%s\") = %s port %u (rc %d)", c->in, host, port, rc);
        } else {
            ok(rc == c->rc, "util_parse_hostport(\"%s\") is %d (got %d)", c->in, c->rc, rc);
        }
    }
}

int
main(void)
{
    plan((int)(sizeof(uint_cases) / sizeof(uint_cases[0]) +
               sizeof(duration_cases) / sizeof(duration_cases[0]) +
               sizeof(size_cases) / sizeof(size_cases[0])) +
         3 + 3 + 4 + (int)N_HOSTPORT + 2 + 3);

    check_cases("util_parse_uint", util_parse_uint, uint_cases,
                sizeof(uint_cases) / sizeof(uint_cases[0]));
    check_cases("util_parse_duration_ms", util_parse_duration_ms, duration_cases,
                sizeof(duration_cases) / sizeof(duration_cases[0]));
    check_cases("util_parse_size", util_parse_size, size_cases,
                sizeof(size_cases) / sizeof(size_cases[0]));

    {
        uint64_t out = UNTOUCHED;

        ok(util_parse_uint(NULL, &out) == -EINVAL && out == UNTOUCHED,
           "util_parse_uint(NULL) is -EINVAL");
        ok(util_parse_duration_ms(NULL, &out) == -EINVAL,
           "util_parse_duration_ms(NULL) is -EINVAL");
        ok(util_parse_size(NULL, &out) == -EINVAL, "util_parse_size(NULL) is -EINVAL");
    }
    test_clock();
    test_strerror();
    test_hostport();
    test_deadline();
    test_mkdir_p();
    return done_testing();
}
