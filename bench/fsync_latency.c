/*
 * fsync_latency - the floor under an ack = stored OK: how long one append
 * and fdatasync(2) of a small record takes on a file system.
 *
 *   fsync_latency DIR COUNT SIZE
 *
 * Appends SIZE bytes to a new file in DIR and fdatasyncs it, COUNT times,
 * then removes the file and prints one line: "p50_us p99_us mean_us" of the
 * append + fdatasync times.  scripts/bench prints it beside the ack latency
 * of zpiped with ack = stored on the same file system.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static uint64_t
now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static int
cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return x < y ? -1 : x > y;
}

int
main(int argc, char **argv)
{
    char path[4096];
    uint64_t *t, sum = 0;
    char *buf;
    long count, size;
    int fd;

    if (argc != 4 || (count = atol(argv[2])) <= 0 || (size = atol(argv[3])) <= 0) {
        fprintf(stderr, "usage: fsync_latency DIR COUNT SIZE\n");
        return 2;
    }
    snprintf(path, sizeof(path), "%s/fsync_latency.%ld", argv[1], (long)getpid());
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0600);
    t = calloc((size_t)count, sizeof(*t));
    buf = malloc((size_t)size);
    if (fd < 0 || !t || !buf) {
        fprintf(stderr, "fsync_latency: %s: %s\n", path, strerror(errno));
        return 1;
    }
    memset(buf, '.', (size_t)size);
    for (long i = 0; i < count; i++) {
        uint64_t t0 = now_us();

        if (write(fd, buf, (size_t)size) != size || fdatasync(fd) < 0) {
            fprintf(stderr, "fsync_latency: %s: %s\n", path, strerror(errno));
            unlink(path);
            return 1;
        }
        t[i] = now_us() - t0;
        sum += t[i];
    }
    close(fd);
    unlink(path);
    qsort(t, (size_t)count, sizeof(*t), cmp_u64);
    printf("%llu %llu %llu\n", (unsigned long long)t[count / 2],
           (unsigned long long)t[(count * 99) / 100], (unsigned long long)(sum / (uint64_t)count));
    free(t);
    free(buf);
    return 0;
}
