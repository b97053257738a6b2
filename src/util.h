/*
 * util.h - small helpers shared by the daemon and the client: the number,
 * duration and size parsers of the config syntax, a monotonic clock and
 * pthread deadlines, and mkdir -p.
 */
#ifndef ZPIPE_UTIL_H
#define ZPIPE_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

/*
 * util_parse_uint parses a decimal unsigned integer (no sign, no suffix,
 * surrounding blanks not allowed) into *out.  Returns 0, or -EINVAL for
 * anything else, -ERANGE on overflow.  *out is untouched on failure.
 */
int util_parse_uint(const char *s, uint64_t *out);

/*
 * util_parse_duration_ms parses "<digits>[ms|s|m]" into milliseconds; a bare
 * number is seconds, as in systemd's time spans.  Returns 0, -EINVAL or
 * -ERANGE.
 */
int util_parse_duration_ms(const char *s, uint64_t *out_ms);

/*
 * util_parse_size parses "<digits>[K|M|G]" (powers of 1024) into bytes; a
 * bare number is bytes.  Returns 0, -EINVAL or -ERANGE.
 */
int util_parse_size(const char *s, uint64_t *out_bytes);

/*
 * util_parse_hostport splits "HOST:PORT" or "[IPV6]:PORT" (a listen address)
 * into host (hostlen bytes, NUL-terminated, without the brackets) and *port.
 * HOST is non-empty and has no ':' unless bracketed; PORT is decimal, 1 to
 * 65535.  Returns 0, -EINVAL, or -ENAMETOOLONG when host does not fit.
 * Nothing is resolved here.
 */
int util_parse_hostport(const char *s, char *host, size_t hostlen, uint16_t *port);

/* util_now_ms returns CLOCK_MONOTONIC in milliseconds. Thread-safe, never fails. */
uint64_t util_now_ms(void);

/* util_now_us returns CLOCK_MONOTONIC in microseconds. */
uint64_t util_now_us(void);

/*
 * util_deadline_ts sets *ts to ms milliseconds from now on clock, for the
 * timed waits of pthread (a condition's clock, or CLOCK_REALTIME for
 * pthread_mutex_timedlock).
 */
void util_deadline_ts(clockid_t clock, uint64_t ms, struct timespec *ts);

/*
 * util_strerror returns the message for errnum (a positive errno) in buf,
 * thread-safe (strerror_r), and returns buf.
 */
const char *util_strerror(int errnum, char *buf, size_t len);

/*
 * util_printable copies len bytes of data into buf (cap > 0 bytes, cut to
 * cap - 1, NUL-terminated) for a log line or a terminal: bytes outside
 * printable ASCII become '?'.  Returns buf.
 */
char *util_printable(char *buf, size_t cap, const char *data, size_t len);

/*
 * util_mkdir_p creates the directory path and its missing parents with
 * mode (less the umask), as mkdir -p does.  path is cut at each '/' in
 * turn while its parents are made: on success it is restored, on failure
 * it is left holding the directory whose mkdir failed, for the caller's
 * message.  Returns 0 (also when path exists) or a negative errno.
 */
int util_mkdir_p(char *path, mode_t mode);

#endif
