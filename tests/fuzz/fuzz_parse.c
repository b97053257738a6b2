/*
 * fuzz_parse.c - libFuzzer target for the config syntax's number parsers:
 * util_parse_uint, util_parse_duration_ms and util_parse_size on the input as
 * a NUL-terminated string.
 *
 * Besides the sanitizers, each result is checked against a slow reference
 * (strtoull and an exact suffix table): same return code, same value on
 * success, and *out untouched on failure.
 */
#include "config.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

struct unit {
    const char *name;
    uint64_t factor;
};

static const struct unit uint_units[] = { { "", 1 }, { NULL, 0 } };
static const struct unit duration_units[] = {
    { "", 1000 }, { "ms", 1 }, { "s", 1000 }, { "m", 60 * 1000 }, { NULL, 0 }
};
static const struct unit size_units[] = {
    { "", 1 }, { "K", 1ULL << 10 }, { "M", 1ULL << 20 }, { "G", 1ULL << 30 }, { NULL, 0 }
};

/* reference parses s the slow way: "<digits><unit>", syntax errors before overflow. */
static int
reference(const char *s, const struct unit *units, uint64_t *out)
{
    size_t ndigits = strspn(s, "0123456789");
    const struct unit *u;
    unsigned long long v;
    char *digits;

    if (ndigits == 0) {
        return -EINVAL;
    }
    for (u = units; u->name != NULL; u++) {
        if (strcmp(s + ndigits, u->name) == 0) {
            break;
        }
    }
    if (u->name == NULL) {
        return -EINVAL;
    }
    digits = strndup(s, ndigits);
    if (digits == NULL) {
        abort();
    }
    errno = 0;
    v = strtoull(digits, NULL, 10);
    free(digits);
    if (errno == ERANGE || v > UINT64_MAX / u->factor) {
        return -ERANGE;
    }
    *out = v * u->factor;
    return 0;
}

static void
check(int (*parse)(const char *, uint64_t *), const char *s, const struct unit *units)
{
    const uint64_t sentinel = 0x5a5a5a5a5a5a5a5aULL;
    uint64_t got = sentinel, want = sentinel;
    int r = parse(s, &got);

    if (r != reference(s, units, &want) || got != want) {
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);

    if (s == NULL) {
        return 0;
    }
    memcpy(s, data, size);
    s[size] = '\0';
    check(util_parse_uint, s, uint_units);
    check(util_parse_duration_ms, s, duration_units);
    check(util_parse_size, s, size_units);
    free(s);
    return 0;
}
