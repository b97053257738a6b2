/*
 * spool.c - spill files and their replay; the contract is in spool.h.
 *
 * Design.  Writers are used by consumer threads after drain_timeout, one
 * writer per consumer, so they need no locking.  The replay thread is one
 * worker thread started after the consumers, before READY=1 (which does not
 * wait for it).  It maps each spill file read-only (no copy of a possibly
 * large file in memory), decodes record after record and pushes each into
 * the queue, waiting in 100 ms steps while the queue is full and checking in
 * with the watchdog between the steps.  It checks its stop flag only between
 * files; see spool.h for why that is exactly-once across a clean stop.
 */
#include "config.h"
#include "spool.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "heartbeat.h"
#include "log.h"
#include "util.h"
#include "worker.h"

#define SPOOL_PREFIX  "spill-"
#define SPOOL_SUFFIX  ".zps"
#define SPOOL_POLL_MS 100 /* longest wait in a push: watchdog check-in period */

/* ------------------------------------------------------------- helpers */

static int
fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int err = 0;

    if (fd < 0) {
        return -errno;
    }
    if (fsync(fd) < 0) {
        err = -errno;
    }
    close(fd);
    return err;
}

int
spool_dir_create(const char *dir)
{
    char path[PATH_MAX];
    size_t len = strlen(dir);

    if (len == 0 || len >= sizeof(path)) {
        return -ENAMETOOLONG;
    }
    memcpy(path, dir, len + 1);
    for (char *p = path + 1; *p; p++) {
        if (*p != '/') {
            continue;
        }
        *p = '\0';
        if (mkdir(path, 0750) < 0 && errno != EEXIST) {
            return -errno;
        }
        *p = '/';
    }
    if (mkdir(path, 0750) < 0 && errno != EEXIST) {
        return -errno;
    }
    return 0;
}

bool
spool_is_spill_name(const char *name)
{
    size_t len = strlen(name), pre = strlen(SPOOL_PREFIX), suf = strlen(SPOOL_SUFFIX);

    return len > pre + suf && strncmp(name, SPOOL_PREFIX, pre) == 0 &&
           strcmp(name + len - suf, SPOOL_SUFFIX) == 0;
}

/* ------------------------------------------------------------- writing */

struct spool_writer {
    char *dir;
    char tmp[PATH_MAX];   /* temporary path */
    char final[PATH_MAX]; /* path after commit */
    int fd;
    off_t size;         /* bytes of whole records written */
    uint64_t count;     /* records written */
    unsigned char *buf; /* encoding scratch, cap bytes */
    size_t cap;
};

static void
writer_free(struct spool_writer *w)
{
    if (w->fd >= 0) {
        close(w->fd);
    }
    free(w->buf);
    free(w->dir);
    free(w);
}

int
spool_writer_open(spool_writer_t **out, const char *dir, const char *tag)
{
    static _Atomic unsigned seq;
    struct spool_writer *w;
    unsigned n = atomic_fetch_add(&seq, 1);
    struct timespec ts;
    uint64_t ms;
    int err;

    w = calloc(1, sizeof(*w));
    if (!w) {
        return -ENOMEM;
    }
    w->fd = -1;
    w->dir = strdup(dir);
    if (!w->dir) {
        err = -ENOMEM;
        goto fail;
    }
    clock_gettime(CLOCK_REALTIME, &ts);
    ms = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
    /* Zero-padded time first: name order is spill order. */
    if (snprintf(w->final, sizeof(w->final),
                 "%s/" SPOOL_PREFIX "%013" PRIu64 "-%ld-%s-%u" SPOOL_SUFFIX, dir, ms,
                 (long)getpid(), tag, n) >= (int)sizeof(w->final) ||
        snprintf(w->tmp, sizeof(w->tmp), "%s/.spill-%013" PRIu64 "-%ld-%s-%u.tmp", dir, ms,
                 (long)getpid(), tag, n) >= (int)sizeof(w->tmp)) {
        err = -ENAMETOOLONG;
        goto fail;
    }
    w->fd = open(w->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
    if (w->fd < 0) {
        err = -errno;
        goto fail;
    }
    *out = w;
    return 0;
fail:
    writer_free(w);
    return err;
}

int
spool_writer_add(spool_writer_t *w, const struct msg *m)
{
    size_t need = msg_binary_size(m), done = 0;

    if (need > w->cap) {
        unsigned char *buf = realloc(w->buf, need);

        if (!buf) {
            return -ENOMEM;
        }
        w->buf = buf;
        w->cap = need;
    }
    msg_encode_binary(m, w->buf);
    while (done < need) {
        ssize_t n = write(w->fd, w->buf + done, need - done);

        if (n < 0) {
            int err = -errno;

            if (errno == EINTR) {
                continue;
            }
            /* Keep the file a sequence of whole records. */
            while (ftruncate(w->fd, w->size) < 0 && errno == EINTR) {
            }
            (void)lseek(w->fd, w->size, SEEK_SET);
            return err;
        }
        done += (size_t)n;
    }
    w->size += (off_t)need;
    w->count++;
    return 0;
}

uint64_t
spool_writer_count(const spool_writer_t *w)
{
    return w->count;
}

int
spool_writer_commit(spool_writer_t *w)
{
    int err = 0;

    if (!w) {
        return 0;
    }
    if (w->count == 0) {
        unlink(w->tmp);
        writer_free(w);
        return 0;
    }
    if (fsync(w->fd) < 0) {
        err = -errno;
    } else if (rename(w->tmp, w->final) < 0) {
        err = -errno;
    } else if ((err = fsync_dir(w->dir)) < 0) {
        /* The file is in place under its final name and will be replayed:
         * its records are spilled, only the rename may not be durable yet. */
        char ebuf[128];

        log_warning("spool: spill file %s: fsync of %s: %s", w->final, w->dir,
                    util_strerror(-err, ebuf, sizeof(ebuf)));
        err = 0;
    }
    if (err < 0) {
        char ebuf[128];

        log_error("spool: spill file %s: %s", w->tmp, util_strerror(-err, ebuf, sizeof(ebuf)));
    } else {
        log_info("spool: spilled %" PRIu64 " messages to %s", w->count, w->final);
    }
    writer_free(w);
    return err;
}

/* --------------------------------------------------------------- replay */

/* Moves a damaged file aside as NAME.bad; never deletes it. */
static void
move_aside(const char *dir, const char *path)
{
    char bad[PATH_MAX];
    char ebuf[128];

    if (snprintf(bad, sizeof(bad), "%s.bad", path) >= (int)sizeof(bad) || rename(path, bad) < 0) {
        log_error("spool: %s: could not move it aside: %s (left in place; it will be replayed"
                  " again)",
                  path, util_strerror(errno, ebuf, sizeof(ebuf)));
        return;
    }
    (void)fsync_dir(dir);
    log_warning("spool: %s: moved aside to %s", path, bad);
}

int
spool_replay_file(const char *dir, const char *name, spool_push_fn *push, void *arg,
                  uint64_t *pushed)
{
    char path[PATH_MAX];
    char ebuf[128];
    const unsigned char *map = NULL;
    struct stat st;
    size_t off = 0, len;
    int fd, err = 0;
    bool is_bad = false;

    if (snprintf(path, sizeof(path), "%s/%s", dir, name) >= (int)sizeof(path)) {
        return -ENAMETOOLONG;
    }
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) < 0) {
        err = -errno;
        log_error("spool: %s: %s", path, util_strerror(-err, ebuf, sizeof(ebuf)));
        if (fd >= 0) {
            close(fd);
        }
        return err;
    }
    len = (size_t)st.st_size;
    if (len > 0) {
        map = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
        if (map == MAP_FAILED) {
            err = -errno;
            close(fd);
            log_error("spool: %s: mmap: %s", path, util_strerror(-err, ebuf, sizeof(ebuf)));
            return err;
        }
    }
    close(fd);

    while (off < len) {
        struct msg *m;
        size_t used;

        /* Every record in the file fits in the file: the size bound only
         * keeps a corrupt length from asking for more. */
        err = msg_decode_binary(map + off, len - off, len - off, &m, &used);
        if (err == -EAGAIN || err == -EBADMSG) {
            /* A record running past the end of the file is a truncation
             * or a corrupt length: the bytes cannot tell which. */
            log_error("spool: %s: damaged record (truncated or corrupt) at offset %zu of %zu:"
                      " replayed the %" PRIu64 " records before it",
                      path, off, len, *pushed);
            is_bad = true;
            err = 0;
            break;
        }
        if (err < 0) {
            break;
        }
        err = push(arg, m);
        if (err < 0) {
            msg_destroy(m);
            break;
        }
        (*pushed)++;
        off += used;
    }
    if (map) {
        munmap((void *)map, len);
    }
    if (err < 0) {
        /* The records pushed so far would be replayed again: say so. */
        log_error("spool: %s: stopped at offset %zu after %" PRIu64 " records: %s", path, off,
                  *pushed, util_strerror(-err, ebuf, sizeof(ebuf)));
        return err;
    }
    if (is_bad) {
        move_aside(dir, path);
        return 0;
    }
    if (unlink(path) < 0) {
        err = -errno;
        log_error("spool: %s: unlink: %s (its records would be replayed again)", path,
                  util_strerror(-err, ebuf, sizeof(ebuf)));
        return err;
    }
    return fsync_dir(dir);
}

struct spool_replay {
    const struct conf *cfg;
    queue_t *q;
    spool_exit_fn *on_exit;
    void *exit_arg;
    pthread_t tid;
    struct heartbeat *hb;
    _Atomic bool is_stopping; /* set by the main thread; read between files */
    _Atomic bool is_running;  /* cleared by the thread just before on_exit */
    _Atomic uint64_t replayed;
};

static int
replay_push(void *arg, struct msg *m)
{
    struct spool_replay *r = arg;
    int err;

    /* Consumers empty the queue until it is closed, and it is closed only
     * after this thread is joined: the wait always ends. */
    while ((err = queue_push_batch(r->q, &m, 1, SPOOL_POLL_MS, &r->replayed, NULL)) == -ETIMEDOUT) {
        heartbeat_beat(r->hb);
    }
    /* replayed was counted under the queue's lock, with the message, so a
     * live stats snapshot sees both or neither (queue_snapshot). */
    if (err > 0) {
        heartbeat_beat(r->hb);
        return 0;
    }
    return err == QUEUE_CLOSED ? -EPIPE : err;
}

static int
name_cmp(const struct dirent **a, const struct dirent **b)
{
    return strcmp((*a)->d_name, (*b)->d_name);
}

static int
spill_filter(const struct dirent *d)
{
    return spool_is_spill_name(d->d_name);
}

static void *
replay_main(void *arg)
{
    struct spool_replay *r = arg;
    const char *dir = r->cfg->daemon_spool_dir;
    struct dirent **names = NULL;
    uint64_t total = 0;
    int n;

    n = scandir(dir, &names, spill_filter, name_cmp);
    if (n < 0) {
        char ebuf[128];

        log_error("spool: replay: %s: %s", dir, util_strerror(errno, ebuf, sizeof(ebuf)));
        n = 0;
    } else if (n > 0) {
        log_info("spool: replaying %d spill file(s) from %s", n, dir);
    }
    for (int i = 0; i < n; i++) {
        if (!atomic_load(&r->is_stopping)) {
            uint64_t pushed = 0;

            heartbeat_beat(r->hb);
            (void)spool_replay_file(dir, names[i]->d_name, replay_push, r, &pushed);
            total += pushed;
        }
        free(names[i]);
    }
    free(names);
    if (n > 0) {
        log_info("spool: replay %s: %" PRIu64 " messages queued",
                 atomic_load(&r->is_stopping) ? "stopped" : "done", total);
    }
    atomic_store(&r->is_running, false);
    r->on_exit(r->exit_arg);
    return NULL;
}

int
spool_replay_start(spool_replay_t **out, const struct conf *cfg, queue_t *q, spool_exit_fn *on_exit,
                   void *arg)
{
    struct spool_replay *r = calloc(1, sizeof(*r));
    int err;

    if (!r) {
        return -ENOMEM;
    }
    r->cfg = cfg;
    r->q = q;
    r->on_exit = on_exit;
    r->exit_arg = arg;
    r->hb = heartbeat_register("replay");
    atomic_store(&r->is_running, true);
    err = worker_spawn(&r->tid, "zpipe-replay", replay_main, r);
    if (err < 0) {
        heartbeat_unregister(r->hb);
        free(r);
        return err;
    }
    *out = r;
    return 0;
}

void
spool_replay_stop(spool_replay_t *r)
{
    atomic_store(&r->is_stopping, true);
}

bool
spool_replay_is_running(spool_replay_t *r)
{
    return atomic_load(&r->is_running);
}

uint64_t
spool_replay_count(spool_replay_t *r)
{
    return atomic_load_explicit(&r->replayed, memory_order_relaxed);
}

void
spool_replay_join(spool_replay_t *r)
{
    pthread_join(r->tid, NULL);
    heartbeat_unregister(r->hb);
    r->hb = NULL;
}

void
spool_replay_destroy(spool_replay_t *r)
{
    free(r);
}
