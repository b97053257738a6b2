/*
 * sink_file.c - the append-only file sink.
 *
 * Each consumer thread has its own instance: its own descriptor opened with
 * O_APPEND on the same path.  A batch is written with writev(2) in chunks of
 * whole records.
 *
 * Failed writes.  write() is all-or-nothing (sink.h): when a writev fails
 * part-way (ENOSPC, EIO, EFBIG, ...), what the batch appended is cut off
 * again with ftruncate(2) to the file's size before the batch, so the
 * consumer can retry the whole batch, or spill it, without storing a record
 * twice or leaving half a record in the file.  That truncation is only safe
 * if no other instance appended behind us in between: every instance has its
 * own O_APPEND descriptor on the same file, and a truncate would destroy the
 * records of another consumer that it already counts as delivered.  So all
 * writes of all instances are serialised by one mutex, write_lock, held from
 * measuring the size to the end of the write (or the truncate).  The kernel
 * serialises appends to one file on its inode lock anyway, so this costs
 * little throughput.  The same lock keeps records whole on pipes, where the
 * kernel only keeps writes of up to PIPE_BUF bytes whole.  A pipe cannot be
 * cut back: a failure part-way through a write to a FIFO (its reader went
 * away: EPIPE) may leave the start of a record in it, which the retried
 * batch then writes again in full.
 *
 * An fsync failure with fsync = always fails the write too, and the batch is
 * cut back the same way (still under the lock).  With fsync = interval, a
 * failed periodic fdatasync does not fail the batch that was written
 * (retrying it would store it twice); the file stays dirty and the next
 * flush reports the error.
 *
 * Formats (DESIGN.md): lines = the frames joined by one space, then "\n";
 * binary = per frame a 4-byte big-endian length (top bit set on every frame
 * but the last) and the bytes.
 *
 * fsync policy: always = fdatasync before write() returns; interval =
 * fdatasync every fsync_interval while the file is dirty, by a syncer
 * thread of the instance, so the consumer never waits for the disk (a
 * fdatasync of a second's writes at 500 MB/s takes a good part of that
 * second, and with an inline sync the consumer sat in it); never = only the
 * kernel decides.  A forced flush (drain, close) and a reopen sync at once,
 * on the consumer.  Non-regular files (FIFOs, devices) are never synced.
 *
 * The syncer and the consumer share sync_lock: the syncer holds it across
 * its fdatasync, and the consumer takes it only to sync itself or to swap
 * the descriptor (reopen, close), never to write.  is_dirty is set by the
 * consumer after each write and taken (exchanged to false) by whoever
 * syncs, before the sync: a write that lands during a sync leaves it set
 * for the next one.
 */
#include "config.h"
#include "sink.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "stats.h"
#include "util.h"
#include "worker.h"

/* writev(2), swapped by tests to inject failures. */
static ssize_t (*file_writev)(int fd, const struct iovec *iov, int iovcnt) = writev;

/* Serialises every instance's writes, truncates and fsync = always syncs
 * (see above); protects nothing in memory, only the file's tail. */
static pthread_mutex_t write_lock = PTHREAD_MUTEX_INITIALIZER;

struct sink_file {
    char *path;
    int fd;
    bool is_regular; /* fsync and whole-record appends apply; sync_lock to change */
    _Atomic bool is_dirty; /* written since the last fdatasync began */
    enum conf_format format;
    enum conf_fsync fsync;
    uint64_t fsync_interval_ms;
    uint64_t last_sync_ms; /* util_now_ms() of the last fdatasync */
    struct iovec *iov;     /* scratch, iov_cap entries */
    size_t iov_cap;
    unsigned char *stage;  /* scratch: small frames, separators and headers, copied */
    size_t stage_cap;
    size_t stage_used;
    bool is_stage_open;    /* the last iovec is in stage and may grow */
    const _Atomic bool *is_cancelled; /* the drain deadline passed, or NULL */

    pthread_mutex_t sync_lock; /* syncs, and fd/is_regular changes: see above */
    pthread_cond_t sync_cond;  /* wakes the syncer to stop */
    pthread_t syncer;
    bool has_syncer;
    bool is_syncer_stopping;   /* sync_lock */
    _Atomic int sync_err;      /* errno of a failed background sync, for flush */
};

static const char space = ' ';
static const char newline = '\n';

static int
open_path(struct sink_file *f, int *fd_out, bool *is_regular)
{
    struct stat st;
    int fd;

    /* O_NONBLOCK so that a FIFO without a reader fails (ENXIO) instead of
     * blocking the consumer.  It stays on for anything but a regular file,
     * so a write to a FIFO nobody reads waits in poll(2), where the drain
     * deadline can end it (see write_all). */
    fd = open(f->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NONBLOCK, 0640);
    if (fd < 0) {
        stats_sink_error(STATS_SINK_ERROR_OPEN);
        return -errno;
    }
    if (fstat(fd, &st) < 0 ||
        fcntl(fd, F_SETFL, S_ISREG(st.st_mode) ? O_APPEND : O_APPEND | O_NONBLOCK) < 0) {
        int err = -errno;

        stats_sink_error(STATS_SINK_ERROR_OPEN);
        close(fd);
        return err;
    }
    *fd_out = fd;
    *is_regular = S_ISREG(st.st_mode);
    return 0;
}

/* sync_locked syncs f if it is dirty; sync_lock held. */
static int
sync_locked(struct sink_file *f)
{
    if (!f->is_regular || !atomic_exchange(&f->is_dirty, false)) {
        return 0;
    }
    if (fdatasync(f->fd) < 0) {
        int err = errno;

        stats_sink_error(STATS_SINK_ERROR_FSYNC);
        atomic_store(&f->is_dirty, true); /* still to be made durable */
        return -err;
    }
    f->last_sync_ms = util_now_ms();
    return 0;
}

static int
sync_now(struct sink_file *f)
{
    int err;

    pthread_mutex_lock(&f->sync_lock);
    err = sync_locked(f);
    pthread_mutex_unlock(&f->sync_lock);
    return err;
}

/* The syncer thread (fsync = interval): see the design note. */
static void *
syncer_main(void *arg)
{
    struct sink_file *f = arg;
    struct timespec deadline;

    pthread_mutex_lock(&f->sync_lock);
    while (!f->is_syncer_stopping) {
        clock_gettime(CLOCK_MONOTONIC, &deadline);
        deadline.tv_sec += (time_t)(f->fsync_interval_ms / 1000);
        deadline.tv_nsec += (long)(f->fsync_interval_ms % 1000) * 1000000L;
        if (deadline.tv_nsec >= 1000000000L) {
            deadline.tv_sec++;
            deadline.tv_nsec -= 1000000000L;
        }
        while (!f->is_syncer_stopping &&
               pthread_cond_timedwait(&f->sync_cond, &f->sync_lock, &deadline) != ETIMEDOUT) {
        }
        if (!f->is_syncer_stopping) {
            int err = sync_locked(f);

            if (err < 0) {
                atomic_store(&f->sync_err, -err);
            }
        }
    }
    pthread_mutex_unlock(&f->sync_lock);
    return NULL;
}

static int
syncer_start(struct sink_file *f)
{
    pthread_condattr_t attr;
    int rc = pthread_condattr_init(&attr);

    if (rc == 0) {
        rc = pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
        if (rc == 0) {
            rc = pthread_cond_init(&f->sync_cond, &attr);
        }
        pthread_condattr_destroy(&attr);
    }
    if (rc != 0) {
        return -rc;
    }
    rc = worker_spawn(&f->syncer, "zpipe-fsync", syncer_main, f);
    if (rc < 0) {
        pthread_cond_destroy(&f->sync_cond);
        return rc;
    }
    f->has_syncer = true;
    return 0;
}

static void
syncer_stop(struct sink_file *f)
{
    if (!f->has_syncer) {
        return;
    }
    pthread_mutex_lock(&f->sync_lock);
    f->is_syncer_stopping = true;
    pthread_cond_signal(&f->sync_cond);
    pthread_mutex_unlock(&f->sync_lock);
    pthread_join(f->syncer, NULL);
    pthread_cond_destroy(&f->sync_cond);
    f->has_syncer = false;
}

static void sink_file_close(void *state);

static int
sink_file_open(const struct sink_env *env, void **state)
{
    const struct conf *cfg = env->cfg;
    struct sink_file *f;
    int err;

    f = calloc(1, sizeof(*f));
    if (!f) {
        return -ENOMEM;
    }
    pthread_mutex_init(&f->sync_lock, NULL);
    f->fd = -1;
    f->format = cfg->file_format;
    f->fsync = cfg->file_fsync;
    f->fsync_interval_ms = cfg->file_fsync_interval;
    f->is_cancelled = env->is_cancelled;
    f->last_sync_ms = util_now_ms();
    f->path = strdup(cfg->file_path);
    if (!f->path) {
        err = -ENOMEM;
        goto fail;
    }
    err = open_path(f, &f->fd, &f->is_regular);
    if (err < 0) {
        goto fail;
    }
    if (f->fsync == CONF_FSYNC_INTERVAL) {
        err = syncer_start(f);
        if (err < 0) {
            goto fail;
        }
    }
    *state = f;
    return 0;
fail:
    sink_file_close(f);
    return err;
}

static int
reserve(struct sink_file *f, size_t iovs, size_t stage)
{
    if (iovs > f->iov_cap) {
        struct iovec *iov = realloc(f->iov, iovs * sizeof(*iov));

        if (!iov) {
            return -ENOMEM;
        }
        f->iov = iov;
        f->iov_cap = iovs;
    }
    if (stage > f->stage_cap) {
        unsigned char *buf = realloc(f->stage, stage);

        if (!buf) {
            return -ENOMEM;
        }
        f->stage = buf;
        f->stage_cap = stage;
    }
    return 0;
}

/*
 * Writes iov[0..cnt) completely, resuming after short writes, and adds the
 * bytes written to *written.  A target that takes nothing (EAGAIN: a full
 * FIFO) is waited for in 100 ms polls until the drain deadline cancels the
 * write (-ECANCELED).
 */
static int
write_all(struct sink_file *f, struct iovec *iov, size_t cnt, size_t *written)
{
    while (cnt > 0) {
        int chunk = cnt > IOV_MAX ? IOV_MAX : (int)cnt;
        ssize_t n = file_writev(f->fd, iov, chunk);

        if (n < 0) {
            struct pollfd pfd = { .fd = f->fd, .events = POLLOUT };

            if (errno == EINTR) {
                continue;
            }
            if (errno != EAGAIN) {
                stats_sink_error(STATS_SINK_ERROR_WRITE);
                return -errno;
            }
            if (f->is_cancelled && atomic_load(f->is_cancelled)) {
                return -ECANCELED;
            }
            (void)poll(&pfd, 1, 100);
            continue;
        }
        *written += (size_t)n;
        while (cnt > 0 && (size_t)n >= iov->iov_len) {
            n -= (ssize_t)iov->iov_len;
            iov++;
            cnt--;
        }
        if (cnt > 0) {
            iov->iov_base = (char *)iov->iov_base + n;
            iov->iov_len -= (size_t)n;
        }
    }
    return 0;
}

/* Bytes record m takes in the file. */
static size_t
record_size(const struct sink_file *f, const struct msg *m)
{
    return m->size + m->nframes * (f->format == CONF_FORMAT_BINARY ? MSG_HEADER_SIZE : 1);
}

/* Counts the records from batch[first] on that fit whole in written bytes. */
static size_t
whole_records(const struct sink_file *f, struct msg *const *batch, size_t first, size_t n,
              size_t written)
{
    size_t k = first;

    while (k < n && record_size(f, batch[k]) <= written) {
        written -= record_size(f, batch[k]);
        k++;
    }
    return k;
}

/*
 * Frames up to this size are copied into the staging buffer, bigger ones
 * are written from where they are.  The profile of 128 B records showed the
 * kernel's per-iovec copy loop (two iovecs a record: data and separator) as
 * the file sink's main cost; one contiguous buffer per writev is far
 * cheaper, and a copy of a small frame in user space costs next to nothing.
 */
#define STAGE_FRAME_MAX 2048u
/* The staging buffer's size: a batch that stages more is written in parts
 * (cut at record boundaries), so big batches of small records cost no more
 * memory than this, beyond one record that alone stages more. */
#define STAGE_MAX (1u << 20)

/* The bytes record m puts in the staging buffer. */
static size_t
record_staged(const struct msg *m, size_t sep)
{
    size_t staged = 0;

    for (size_t j = 0; j < m->nframes; j++) {
        staged += sep + (m->frames[j].len <= STAGE_FRAME_MAX ? m->frames[j].len : 0);
    }
    return staged;
}

/*
 * Adds len bytes to the iovecs at *cnt: copied into the staging buffer (and
 * merged with the previous iovec when that ends where they go), or, when
 * is_copied is false, as an iovec of their own pointing at data.
 */
static void
add_bytes(struct sink_file *f, size_t *cnt, const void *data, size_t len, bool is_copied)
{
    unsigned char *dst = f->stage + f->stage_used;

    if (!is_copied) {
        f->iov[(*cnt)++] = (struct iovec){ (void *)data, len };
        f->is_stage_open = false;
        return;
    }
    if (len == 0) {
        return;
    }
    memcpy(dst, data, len);
    f->stage_used += len;
    if (f->is_stage_open && *cnt > 0) {
        f->iov[*cnt - 1].iov_len += len;
    } else {
        f->iov[(*cnt)++] = (struct iovec){ dst, len };
        f->is_stage_open = true;
    }
}

/*
 * Lays out records batch[0..n) as iovecs and writes them, IOV_MAX iovecs
 * or STAGE_MAX staged bytes at a time cut at record boundaries, so each
 * writev(2) appends whole records.  Small frames, the separators and the
 * binary headers are copied into one staging buffer, so a batch of small
 * records is one iovec.  A record needing more than IOV_MAX iovecs goes in
 * one writev chain of its own (rare: over 500 big frames).  On error
 * *taken is the number of records written whole.
 */
static int
write_records(struct sink_file *f, struct msg *const *batch, size_t n, size_t *taken)
{
    size_t frames = 0, staged = 0, biggest = 0, cnt = 0, first = 0, written = 0;
    size_t sep = f->format == CONF_FORMAT_BINARY ? MSG_HEADER_SIZE : 1;
    int err;

    *taken = 0;

    for (size_t i = 0; i < n; i++) {
        size_t rs = record_staged(batch[i], sep);

        frames += batch[i]->nframes;
        staged += rs;
        biggest = rs > biggest ? rs : biggest;
    }
    staged = staged < STAGE_MAX ? staged : STAGE_MAX;
    /* At most two iovecs per frame: a big frame and the bytes after it. */
    err = reserve(f, 2 * frames, staged > biggest ? staged : biggest);
    if (err < 0) {
        return err;
    }
    f->stage_used = 0;
    f->is_stage_open = false;

    for (size_t i = 0; i < n; i++) {
        const struct msg *m = batch[i];
        size_t need = 2 * m->nframes;

        if (cnt > 0 &&
            (cnt + need > IOV_MAX || f->stage_used + record_staged(m, sep) > f->stage_cap)) {
            err = write_all(f, f->iov, cnt, &written);
            if (err < 0) {
                *taken = whole_records(f, batch, first, n, written);
                return err;
            }
            first = i;
            written = 0;
            cnt = 0;
            f->stage_used = 0;
            f->is_stage_open = false;
        }
        for (size_t j = 0; j < m->nframes; j++) {
            const struct msg_frame *fr = &m->frames[j];
            bool is_last = j + 1 == m->nframes;
            bool is_small = fr->len <= STAGE_FRAME_MAX;

            if (f->format == CONF_FORMAT_BINARY) {
                unsigned char hdr[MSG_HEADER_SIZE];

                msg_frame_header(m, j, hdr);
                add_bytes(f, &cnt, hdr, MSG_HEADER_SIZE, true);
                add_bytes(f, &cnt, fr->data, fr->len, is_small);
            } else {
                add_bytes(f, &cnt, fr->data, fr->len, is_small);
                add_bytes(f, &cnt, is_last ? &newline : &space, 1, true);
            }
        }
    }
    err = write_all(f, f->iov, cnt, &written);
    if (err < 0) {
        *taken = whole_records(f, batch, first, n, written);
    }
    if (f->stage_cap > STAGE_MAX) { /* grown for one big record: give it back */
        free(f->stage);
        f->stage = NULL;
        f->stage_cap = 0;
    }
    return err;
}

/* Cuts the file back to size after a failed batch; see the design note. */
static void
cut_back(struct sink_file *f, off_t size)
{
    if (!f->is_regular || size < 0) {
        return;
    }
    while (ftruncate(f->fd, size) < 0 && errno == EINTR) {
    }
}

static int
sink_file_write(void *state, struct msg *const *batch, size_t n, size_t *taken)
{
    struct sink_file *f = state;
    off_t size = -1;
    int err;

    pthread_mutex_lock(&write_lock);
    if (f->is_regular) {
        size = lseek(f->fd, 0, SEEK_END);
        if (size < 0) {
            err = -errno;
            stats_sink_error(STATS_SINK_ERROR_WRITE);
            pthread_mutex_unlock(&write_lock);
            return err;
        }
    }
    err = write_records(f, batch, n, taken);
    if (err == 0) {
        atomic_store(&f->is_dirty, true);
        if (f->fsync == CONF_FSYNC_ALWAYS) {
            err = sync_now(f);
        }
    }
    if (err < 0 && f->is_regular) {
        /* All or nothing on a regular file: the failed batch is undone. */
        cut_back(f, size);
        *taken = 0;
    }
    pthread_mutex_unlock(&write_lock);
    /* fsync = interval: the syncer thread makes it durable. */
    return err < 0 ? err : 0;
}

static int
sink_file_flush(void *state, int force)
{
    struct sink_file *f = state;

    int err;

    if (f->fsync == CONF_FSYNC_NEVER) {
        return 0;
    }
    if (force) {
        return sync_now(f);
    }
    /* A background sync that failed is reported once; the file stays dirty
     * and the syncer tries again next interval. */
    err = atomic_exchange(&f->sync_err, 0);
    if (err != 0) {
        return -err;
    }
    if (!f->has_syncer && util_now_ms() - f->last_sync_ms >= f->fsync_interval_ms) {
        return sync_now(f);
    }
    return 0;
}

/*
 * Opens the path anew before closing the old descriptor, so a failed reopen
 * leaves the sink writing where it was.  What was written to the old file
 * is synced first (per policy), so a rotated file is complete on disk.
 */
static int
sink_file_reopen(void *state)
{
    struct sink_file *f = state;
    bool is_regular;
    int fd, err;

    if (f->fsync != CONF_FSYNC_NEVER) {
        err = sync_now(f);
        if (err < 0) {
            return err;
        }
    }
    err = open_path(f, &fd, &is_regular);
    if (err < 0) {
        return err;
    }
    pthread_mutex_lock(&f->sync_lock);
    close(f->fd);
    f->fd = fd;
    f->is_regular = is_regular;
    atomic_store(&f->is_dirty, false);
    pthread_mutex_unlock(&f->sync_lock);
    return 0;
}

static void
sink_file_close(void *state)
{
    struct sink_file *f = state;

    if (!f) {
        return;
    }
    syncer_stop(f);
    if (f->fd >= 0) {
        if (f->fsync != CONF_FSYNC_NEVER) {
            (void)sync_now(f);
        }
        close(f->fd);
    }
    free(f->iov);
    free(f->stage);
    pthread_mutex_destroy(&f->sync_lock);
    free(f->path);
    free(f);
}

const struct sink_ops sink_file_ops = {
    .name = "file",
    .open = sink_file_open,
    .write = sink_file_write,
    .flush = sink_file_flush,
    .reopen = sink_file_reopen,
    .close = sink_file_close,
};
