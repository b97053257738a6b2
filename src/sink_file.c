/*
 * sink_file.c - the append-only file sink.
 *
 * One file over 700 lines: opening and following the path, staging records,
 * the cut-back of a failed write and the repair of a torn tail all work
 * under the one write lock and on the same notion of the file's good size,
 * which is the argument of the notes below.  The fdatasync side (the syncer
 * thread, the group commit) is in sink_file_sync.c.
 *
 * Each consumer thread has its own instance: its own descriptor opened with
 * O_APPEND on the same path.  A batch is written with writev(2), at most
 * IOV_MAX iovecs and STAGE_MAX staged bytes at a time, so the scratch
 * buffers of an instance stay that small whatever the batch (a record of
 * many frames is written in several parts).
 *
 * Stored.  A batch written is reported SINK_STORED from within submit()
 * (sink.h), after its fdatasync with fsync = always, except with the group
 * commit below.
 *
 * Failed writes.  submit() is all-or-nothing: when a writev fails
 * part-way (ENOSPC, EIO, EFBIG, ...), what the batch appended is cut off
 * again with ftruncate(2) to the file's size before the batch, so the
 * consumer can retry the whole batch, or spill it, without storing a record
 * twice or leaving half a record in the file.  That truncation is only safe
 * if no other instance appended behind us in between: every instance has its
 * own O_APPEND descriptor on the same file, and a truncate would destroy the
 * records of another consumer that it already counts as delivered.  So all
 * writes of all instances are serialised by one mutex, sink_file_write_lock, held from
 * measuring the size to the end of the write (or the truncate).  The kernel
 * serialises appends to one file on its inode lock anyway, so this costs
 * little throughput.  The same lock keeps records whole on pipes, where the
 * kernel only keeps writes of up to PIPE_BUF bytes whole.  A pipe cannot be
 * cut back: a failure part-way through a write to a FIFO (its reader went
 * away: EPIPE) may leave the start of a record in it, which the retried
 * batch then writes again in full.
 *
 * When the cut-back itself fails (an append-only file cannot be truncated,
 * which is why open refuses one, but chattr +a can come later), the sink
 * does not write those records again: it measures the file, reports the
 * records that reached it whole as stored, and, if a record was cut short
 * after them, marks the file torn (torn, under sink_file_write_lock).  Nothing more is
 * appended to a torn file by any instance: each write first tries the
 * truncate to the end of the last whole record again and fails (counted,
 * retried by the consumer with backoff) until it works, e.g. once the
 * operator ran chattr -a; then writing resumes after the last whole record.
 * An instance reopened onto another file (SIGHUP) writes to that one; the
 * torn tail stays in the old file, as the log said.  The torn state lives
 * in memory: a lines file that a stopped run left torn is found by its
 * missing final "\n" on the first write after each open (binary records
 * have no end marker).
 *
 * Waiting.  A consumer that waits on a FIFO whose reader pauses, or on
 * sink_file_write_lock held by such a consumer, is under backpressure, not stuck: it
 * waits in 100 ms steps, checking in with the watchdog for its thread
 * (heartbeat_beat_self) and giving up at the drain deadline (-ECANCELED:
 * the whole records that got out are stored, the rest is spilled).
 *
 * An fsync failure with fsync = always fails the write too, and the batch is
 * cut back the same way (still under the lock).  With fsync = interval, a
 * failed periodic fdatasync does not fail the batch that was written
 * (retrying it would store it twice).  Linux reports a writeback error to
 * one fdatasync only, and a later one succeeds although those pages never
 * reached the disk; so the failure is sticky: logged and counted when it
 * happens, reported by the next idle poll(), and logged again at close,
 * until the file is reopened.  (With the group commit a failed sync is
 * not sticky: what it did not cover is cut off and written again.)
 *
 * The path is checked once a second from the consumer's own calls (submit,
 * idle poll): if it no longer names the open file (deleted, or replaced
 * without a SIGHUP), the sink logs it and reopens, as on SIGHUP; with
 * groups in flight it first takes no more (accepts nothing) until they
 * are judged on the old file.  A reopen that fails (EMFILE) leaves the
 * sink writing to the old file, logged, and is retried at every check until
 * it works.
 *
 * Formats (file.format in zpiped.ini(5)): lines = the frames joined by one
 * space, then "\n"; binary = per frame a 4-byte big-endian length (top bit
 * set on every frame but the last) and the bytes.
 *
 * The fsync policy, the syncer thread and the group commit are in
 * sink_file_sync.c; what the two files share is in sink_file_int.h.  This
 * file is the write path, and stays one (over 700 lines) because its parts
 * (staging, the all-or-nothing cut-back, the torn-tail repair, the path
 * check) all work under write_lock on the same instance state.
 */
#include "config.h"
#include "sink_file_int.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/fs.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "heartbeat.h"
#include "log.h"
#include "stats.h"
#include "util.h"
#include "worker.h"

/* The system calls that can fail under the sink, swapped by tests to inject failures. */
static ssize_t (*file_writev)(int fd, const struct iovec *iov, int iovcnt) = writev;
static int (*file_ftruncate)(int fd, off_t size) = ftruncate;
static int (*file_open)(const char *path, int flags, ...) = open;

#define FILE_WAIT_STEP_MS 100  /* longest wait between two watchdog check-ins */
#define FILE_CHECK_MS     1000 /* how often the path is checked (and a failed reopen retried) */

/*
 * Frames up to this size are copied into the staging buffer, bigger ones
 * are written from where they are.  The profile of 128 B records showed the
 * kernel's per-iovec copy loop (two iovecs a record: data and separator) as
 * the file sink's main cost; one contiguous buffer per writev is far
 * cheaper, and a copy of a small frame in user space costs next to nothing.
 */
#define STAGE_FRAME_MAX 2048u
/* The staging buffer's size: a batch that stages more is written in parts,
 * so big batches cost no more memory than this. */
#define STAGE_MAX (1u << 20)

/* See sink_file_int.h and "Failed writes" above. */
pthread_mutex_t sink_file_write_lock = PTHREAD_MUTEX_INITIALIZER;
struct sink_file_torn sink_file_torn;

static const char space = ' ';
static const char newline = '\n';

/* Is the file open on fd append-only (chattr +a)?  False where the file
 * system cannot tell. */
static bool
is_append_only(int fd)
{
    int flags = 0;

    return ioctl(fd, FS_IOC_GETFLAGS, &flags) == 0 && (flags & FS_APPEND_FL);
}

/*
 * Opens f->path for appending into *fd_out and describes it in *st.  An
 * append-only file is refused (-EPERM, logged): a failed write could not be
 * cut back from it.
 */
static int
open_path(struct sink_file *f, int *fd_out, struct stat *st)
{
    int fd, err;

    /* O_NONBLOCK so that a FIFO without a reader fails (ENXIO) instead of
     * blocking the consumer.  It stays on for anything but a regular file,
     * so a write to a FIFO nobody reads waits in poll(2), where the drain
     * deadline can end it (see write_all). */
    fd = file_open(f->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NONBLOCK, 0640);
    if (fd < 0) {
        stats_sink_error(STATS_SINK_ERROR_OPEN);
        return -errno;
    }
    if (fstat(fd, st) < 0 ||
        fcntl(fd, F_SETFL, S_ISREG(st->st_mode) ? O_APPEND : O_APPEND | O_NONBLOCK) < 0) {
        err = -errno;
        goto fail;
    }
    if (S_ISREG(st->st_mode) && is_append_only(fd)) {
        log_error("sink file: %s is append-only (chattr +a): zpiped could not cut a failed "
                  "write back from it, so it does not write to it",
                  f->path);
        err = -EPERM;
        goto fail;
    }
    *fd_out = fd;
    return 0;
fail:
    stats_sink_error(STATS_SINK_ERROR_OPEN);
    close(fd);
    return err;
}

static void sink_file_close(void *state);

static int
sink_file_open(const struct sink_env *env, sink_done_fn *done, void *arg, void **state)
{
    const struct conf *cfg = env->cfg;
    struct sink_file *f;
    struct stat st;
    int err;

    f = calloc(1, sizeof(*f));
    if (!f) {
        return -ENOMEM;
    }
    pthread_mutex_init(&f->sync_lock, NULL);
    pthread_mutex_init(&f->wake_lock, NULL);
    f->fd = -1;
    f->done = done;
    f->arg = arg;
    f->format = cfg->file_format;
    f->fsync = cfg->file_fsync;
    f->fsync_interval_ms = cfg->file_fsync_interval;
    f->is_aborted = env->is_aborted;
    f->last_check_ms = util_now_ms();
    f->path = strdup(cfg->file_path);
    if (!f->path) {
        err = -ENOMEM;
        goto fail;
    }
    err = open_path(f, &f->fd, &st);
    if (err < 0) {
        char ebuf[128];

        log_error("sink file: open %s: %s", f->path, util_strerror(-err, ebuf, sizeof(ebuf)));
        goto fail;
    }
    f->is_regular = S_ISREG(st.st_mode);
    f->dev = st.st_dev;
    f->ino = st.st_ino;
    if (cfg->input_ack == CONF_ACK_STORED && f->fsync == CONF_FSYNC_INTERVAL) {
        sink_file_groups_register(f, st.st_size);
    }
    if (f->fsync == CONF_FSYNC_INTERVAL) {
        err = sink_file_syncer_start(f);
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

/*
 * Opens the path anew before closing the old descriptor, so a failed reopen
 * leaves the sink writing where it was (and due for another try).  What was
 * written to the old file is synced first (per policy), so a rotated file is
 * complete on disk.
 */
static int
reopen_path(struct sink_file *f)
{
    struct stat st;
    int fd, err = 0;

    if (f->fsync != CONF_FSYNC_NEVER) {
        err = sink_file_sync_now(f);
    }
    if (err == 0) {
        err = open_path(f, &fd, &st);
    }
    f->is_reopen_due = err < 0;
    f->last_check_ms = util_now_ms();
    if (err < 0) {
        return err;
    }
    pthread_mutex_lock(&f->sync_lock);
    close(f->fd);
    f->fd = fd;
    f->is_regular = S_ISREG(st.st_mode);
    if (f->is_registered) {
        /* The syncers match instances by file under sink_file_write_lock. */
        pthread_mutex_lock(&sink_file_write_lock);
        f->dev = st.st_dev;
        f->ino = st.st_ino;
        f->is_group_commit = f->is_regular;
        sink_file_set_synced_locked(f, st.st_size);
        pthread_mutex_unlock(&sink_file_write_lock);
    } else {
        f->dev = st.st_dev;
        f->ino = st.st_ino;
    }
    f->is_tail_checked = false;
    atomic_store(&f->is_dirty, false);
    atomic_store(&f->sync_err, 0);
    atomic_store(&f->is_sync_err_reported, false);
    pthread_mutex_unlock(&f->sync_lock);
    return 0;
}

/*
 * Once every FILE_CHECK_MS, on the consumer's thread: retries a reopen that
 * failed, or reopens the path if it no longer names the open file.
 */
static void
check_path(struct sink_file *f)
{
    bool was_due = f->is_reopen_due;
    char ebuf[128];
    struct stat st;
    int err;

    if (f->is_stale) {
        if (f->groups_len > 0) {
            return; /* submit() holds back until they are judged on this file */
        }
        f->is_stale = false;
        was_due = true; /* found and logged already */
    } else if (util_now_ms() - f->last_check_ms < FILE_CHECK_MS) {
        return;
    }
    f->last_check_ms = util_now_ms();
    if (!was_due) {
        if (stat(f->path, &st) == 0) {
            if (st.st_dev == f->dev && st.st_ino == f->ino) {
                return;
            }
        } else if (errno != ENOENT) {
            return; /* cannot tell; the open will say why if it fails too */
        }
    }
    if (f->groups_len > 0) {
        /* The groups in flight are synced and judged on the open file. */
        log_warning("sink file: %s was deleted or replaced (no SIGHUP): reopening it once the "
                    "batches in flight are synced; what was written to the old file stays "
                    "with it (gone, if it was deleted)",
                    f->path);
        f->is_stale = true;
        return;
    }
    err = reopen_path(f);
    if (!was_due) {
        log_warning("sink file: %s was deleted or replaced (no SIGHUP): %s; what was written "
                    "to the old file stays with it (gone, if it was deleted)",
                    f->path, err < 0 ? "reopening it" : "reopened");
    }
    if (err < 0) {
        log_error("sink file: reopen %s: %s (still writing to the old file; retrying every "
                  "%d ms)",
                  f->path, util_strerror(-err, ebuf, sizeof(ebuf)), FILE_CHECK_MS);
    } else if (was_due) {
        log_info("sink file: reopened %s", f->path);
    }
}

/*
 * Makes room for the iovecs and staged bytes of a batch, up to IOV_MAX and
 * STAGE_MAX; a batch that needs more is written in parts.
 */
static int
reserve(struct sink_file *f, size_t iovs, size_t stage)
{
    iovs = iovs < IOV_MAX ? iovs : IOV_MAX;
    stage = stage < STAGE_MAX ? stage : STAGE_MAX;
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

static bool
is_aborted(const struct sink_file *f)
{
    return f->is_aborted && atomic_load(f->is_aborted);
}

/*
 * Writes iov[0..cnt) (cnt <= IOV_MAX) completely, resuming after short
 * writes, and adds the bytes written to *written.  A target that takes
 * nothing (EAGAIN: a full FIFO) is waited for in FILE_WAIT_STEP_MS polls,
 * checking in with the watchdog, until the drain deadline aborts the write
 * (-ECANCELED).
 */
static int
write_all(struct sink_file *f, struct iovec *iov, size_t cnt, size_t *written)
{
    while (cnt > 0) {
        ssize_t n = file_writev(f->fd, iov, (int)cnt);

        if (n < 0) {
            struct pollfd pfd = { .fd = f->fd, .events = POLLOUT };

            if (errno == EINTR) {
                continue;
            }
            if (errno != EAGAIN) {
                stats_sink_error(STATS_SINK_ERROR_WRITE);
                return -errno;
            }
            if (is_aborted(f)) {
                return -ECANCELED;
            }
            (void)poll(&pfd, 1, FILE_WAIT_STEP_MS);
            heartbeat_beat_self();
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
    size_t sep = f->format == CONF_FORMAT_BINARY ? MSG_HEADER_SIZE : 1;

    return (size_t)m->size + (size_t)m->nframes * sep;
}

/*
 * Counts the records from the front of batch[0..n) that fit whole in the
 * first written bytes; *bytes (if not NULL) gets their size.
 */
static size_t
whole_records(const struct sink_file *f, struct msg *const *batch, size_t n, size_t written,
              size_t *bytes)
{
    size_t k = 0, sum = 0;

    while (k < n && sum + record_size(f, batch[k]) <= written) {
        sum += record_size(f, batch[k]);
        k++;
    }
    if (bytes) {
        *bytes = sum;
    }
    return k;
}

/* The bytes record m puts in the staging buffer. */
static size_t
record_staged(const struct msg *m, size_t sep)
{
    size_t staged = 0;

    for (size_t j = 0; j < m->nframes; j++) {
        size_t len = msg_frame(m, j).len;

        staged += sep + (len <= STAGE_FRAME_MAX ? len : 0);
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
 * Lays out records batch[0..n) as iovecs and writes them, a writev(2)
 * whenever the scratch buffers are full (so a part may end inside a
 * record).  Small frames, the separators and the binary headers are copied
 * into one staging buffer, so a batch of small records is one iovec.
 * *written gets the bytes appended, on error too.
 */
static int
write_records(struct sink_file *f, struct msg *const *batch, size_t n, size_t *written)
{
    size_t frames = 0, staged = 0, cnt = 0;
    size_t sep = f->format == CONF_FORMAT_BINARY ? MSG_HEADER_SIZE : 1;
    int err;

    *written = 0;
    for (size_t i = 0; i < n; i++) {
        frames += batch[i]->nframes;
        staged += record_staged(batch[i], sep);
    }
    /* At most two iovecs per frame: a big frame and the bytes after it;
     * every frame stages at most STAGE_FRAME_MAX + sep <= STAGE_MAX. */
    err = reserve(f, 2 * frames, staged);
    if (err < 0) {
        return err;
    }
    f->stage_used = 0;
    f->is_stage_open = false;

    for (size_t i = 0; i < n; i++) {
        const struct msg *m = batch[i];

        for (size_t j = 0; j < m->nframes; j++) {
            struct msg_frame fr = msg_frame(m, j);
            bool is_last = j + 1 == m->nframes;
            bool is_small = fr.len <= STAGE_FRAME_MAX;
            size_t frame_staged = sep + (is_small ? fr.len : 0);

            if (cnt + 2 > f->iov_cap || f->stage_used + frame_staged > f->stage_cap) {
                err = write_all(f, f->iov, cnt, written);
                if (err < 0) {
                    return err;
                }
                cnt = 0;
                f->stage_used = 0;
                f->is_stage_open = false;
            }
            if (f->format == CONF_FORMAT_BINARY) {
                unsigned char hdr[MSG_HEADER_SIZE];

                msg_frame_header(m, j, hdr);
                add_bytes(f, &cnt, hdr, MSG_HEADER_SIZE, true);
                add_bytes(f, &cnt, fr.data, fr.len, is_small);
            } else {
                add_bytes(f, &cnt, fr.data, fr.len, is_small);
                add_bytes(f, &cnt, is_last ? &newline : &space, 1, true);
            }
        }
    }
    return write_all(f, f->iov, cnt, written);
}

/*
 * Takes sink_file_write_lock in FILE_WAIT_STEP_MS steps, checking in with the
 * watchdog between them: another consumer may hold it for long (waiting on
 * a FIFO whose reader pauses), and waiting for it is backpressure.  Gives
 * up with -ECANCELED at the drain deadline.
 */
static int
lock_writes(const struct sink_file *f)
{
    for (;;) {
        struct timespec until;
        int rc;

        /* CLOCK_REALTIME: pthread_mutex_timedlock's clock. */
        util_deadline_ts(CLOCK_REALTIME, FILE_WAIT_STEP_MS, &until);
        rc = pthread_mutex_timedlock(&sink_file_write_lock, &until);
        if (rc == 0) {
            return 0;
        }
        if (rc != ETIMEDOUT) {
            return -rc;
        }
        heartbeat_beat_self();
        if (is_aborted(f)) {
            return -ECANCELED;
        }
    }
}

void
sink_file_tear_locked(const struct sink_file *f, off_t good_size)
{
    sink_file_torn = (struct sink_file_torn){
        .is_torn = true, .dev = f->dev, .ino = f->ino, .good_size = good_size
    };
}

int
sink_file_truncate_to(int fd, off_t size)
{
    while (file_ftruncate(fd, size) < 0) {
        if (errno != EINTR) {
            return -errno;
        }
    }
    return 0;
}

/*
 * A lines file that does not end in "\n" ends in a record cut short: an
 * earlier run could not cut it back after a failed write, and spilled that
 * record whole.  Marks such a file torn at the end of its last line, so
 * that repair_locked cuts the partial record off before anything is
 * appended (else it would run into the next record).  The binary format
 * has no end marker to check.  sink_file_write_lock held; once per descriptor.
 */
static void
find_torn_tail_locked(struct sink_file *f)
{
    char buf[4096];
    struct stat st;
    off_t end;
    int fd;

    f->is_tail_checked = true;
    if (f->format != CONF_FORMAT_LINES || !f->is_regular ||
        (sink_file_torn.is_torn && sink_file_torn.dev == f->dev && sink_file_torn.ino == f->ino)) {
        return;
    }
    /* The sink's descriptor is write-only: read through one of our own, if
     * the path still names the same file (else there is nothing to check). */
    fd = open(f->path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        return;
    }
    if (fstat(fd, &st) < 0 || st.st_dev != f->dev || st.st_ino != f->ino || st.st_size == 0) {
        close(fd);
        return;
    }
    for (end = st.st_size; end > 0;) {
        off_t from = end > (off_t)sizeof(buf) ? end - (off_t)sizeof(buf) : 0;
        ssize_t n = pread(fd, buf, (size_t)(end - from), from);

        if (n <= 0) {
            close(fd);
            return; /* unreadable: leave the file as it is */
        }
        for (ssize_t i = n; i > 0; i--) {
            if (buf[i - 1] == '\n') {
                if (from + i == st.st_size) {
                    close(fd);
                    return; /* whole */
                }
                end = from + i;
                goto torn;
            }
        }
        end = from;
    }
torn:
    close(fd);
    sink_file_tear_locked(f, end);
}

/*
 * If f's file is torn, cuts it back to its last whole record; sink_file_write_lock
 * held.  Returns 0 if the file is whole (*is_repaired says if it just got
 * so), or the error: then nothing may be written to it.  A file already no
 * longer than that (the operator cut it) is left as it is: ftruncate would
 * pad it with zeros.
 */
static int
repair_locked(struct sink_file *f, bool *is_repaired)
{
    struct stat st;
    int err = 0;

    *is_repaired = false;
    if (!sink_file_torn.is_torn || !f->is_regular || f->dev != sink_file_torn.dev ||
        f->ino != sink_file_torn.ino) {
        return 0;
    }
    if (fstat(f->fd, &st) < 0) {
        err = -errno;
    } else if (st.st_size > sink_file_torn.good_size) {
        err = sink_file_truncate_to(f->fd, sink_file_torn.good_size);
    }
    if (err < 0) {
        stats_sink_error(STATS_SINK_ERROR_WRITE);
        return err;
    }
    sink_file_shrunk_locked(f, sink_file_torn.good_size);
    sink_file_torn.is_torn = false;
    *is_repaired = true;
    return 0;
}

/*
 * Undoes a failed batch on a regular file: cuts the file back to size, its
 * length before the batch (if it grew), and returns 0 (nothing taken).  If
 * the cut fails, the records that reached the file whole are left there
 * and their count is returned (they must not be written again), *end set
 * to where they end; a record cut short after them makes the file torn
 * (*tear_at is set to where it starts, else -1).  sink_file_write_lock held.
 */
static size_t
undo_locked(struct sink_file *f, off_t size, struct msg *const *batch, size_t n, int *cut_err,
            off_t *tear_at, off_t *end)
{
    size_t k = 0, bytes = 0;
    struct stat st;

    *tear_at = -1;
    *cut_err = 0;
    *end = size;
    if (fstat(f->fd, &st) == 0 && st.st_size == size) {
        return 0; /* nothing reached the file */
    }
    *cut_err = sink_file_truncate_to(f->fd, size);
    if (*cut_err == 0) {
        sink_file_shrunk_locked(f, size);
        return 0;
    }
    stats_sink_error(STATS_SINK_ERROR_WRITE);
    /* What is really in the file now; if even that is unknown, nothing is
     * taken and the whole batch counts as the torn tail. */
    if (fstat(f->fd, &st) == 0 && st.st_size >= size) {
        k = whole_records(f, batch, n, (size_t)(st.st_size - size), &bytes);
        *end = size + (off_t)bytes;
        if (st.st_size == *end) {
            return k;
        }
    }
    sink_file_tear_locked(f, size + (off_t)bytes);
    *tear_at = sink_file_torn.good_size;
    return k;
}

/*
 * Writes batch[0..n): all of it (*taken = n, and 0), or on a failure (a
 * negative errno) what *taken says, from the front: none on a regular file
 * unless the cut-back failed; the whole records that got out on a FIFO.
 * With the group commit, nothing while a group of f's cut off by a failed
 * sync is not yet reported (its retry goes first: the order), and what is
 * taken is a group in flight until a sync covers it.
 */
static int
write_batch(struct sink_file *f, struct msg *const *batch, size_t n, size_t *taken)
{
    bool is_repaired = false, is_written = false, is_unsynced = false;
    off_t size = -1, tear_at = -1, end = -1;
    size_t written = 0;
    char ebuf[128];
    int err, cut_err = 0;

    *taken = 0;
    err = lock_writes(f);
    if (err < 0) {
        return err;
    }
    if (f->is_group_commit && sink_file_groups_have_lost_locked(f)) {
        pthread_mutex_unlock(&sink_file_write_lock);
        return 0;
    }
    if (!f->is_tail_checked) {
        find_torn_tail_locked(f);
    }
    err = repair_locked(f, &is_repaired);
    if (err == 0 && f->is_group_commit) {
        err = sink_file_groups_reserve_locked(f);
    }
    if (err == 0 && f->is_regular) {
        size = lseek(f->fd, 0, SEEK_END);
        if (size < 0) {
            err = -errno;
            stats_sink_error(STATS_SINK_ERROR_WRITE);
        } else if (f->is_group_commit && size < f->synced) {
            sink_file_shrunk_locked(f, size); /* cut by someone else: copytruncate */
        }
    }
    if (err == 0) {
        err = write_records(f, batch, n, &written);
        is_written = err == 0;
        if (is_written) {
            *taken = n;
            end = size + (off_t)written;
            atomic_store(&f->is_dirty, true);
            if (f->fsync == CONF_FSYNC_ALWAYS) {
                err = sink_file_sync_now(f);
            }
        }
        if (err < 0 && f->is_regular) {
            /* All or nothing on a regular file: the failed batch is undone. */
            *taken = undo_locked(f, size, batch, n, &cut_err, &tear_at, &end);
            if (*taken > 0) {
                atomic_store(&f->is_dirty, true);
            }
            if (*taken > 0 && f->fsync == CONF_FSYNC_ALWAYS &&
                (is_written || sink_file_sync_now(f) < 0)) {
                /* Whole records that could not be cut back, and not made
                 * durable: not stored.  Nothing more is written until the
                 * file is cut back to where the batch began, and then the
                 * batch is written again. */
                *taken = 0;
                is_unsynced = true;
                tear_at = size;
                sink_file_tear_locked(f, size);
            }
        } else if (err < 0) {
            *taken = whole_records(f, batch, n, written, NULL); /* a pipe keeps them */
        }
        if (*taken > 0 && f->is_group_commit) {
            /* In flight until a sync covers it, even what a failed cut left. */
            f->groups[(f->groups_head + f->groups_len++) & (f->groups_cap - 1)] =
                (struct group){ .n = *taken, .end = end };
        }
    }
    pthread_mutex_unlock(&sink_file_write_lock);

    if (is_repaired) {
        log_info("sink file: %s: cut back to its last whole record: writing again", f->path);
    }
    if (cut_err < 0) {
        util_strerror(-cut_err, ebuf, sizeof(ebuf));
        if (is_unsynced) {
            log_error("sink file: %s: ftruncate after a failed fdatasync: %s; the batch is not "
                      "stored, and nothing more is written to this file until it can be cut "
                      "back to byte %jd, where the batch began",
                      f->path, ebuf, (intmax_t)tear_at);
        } else if (tear_at >= 0) {
            log_error("sink file: %s: ftruncate after a failed write: %s; a record is cut short "
                      "at byte %jd: nothing more is written to this file until it can be cut "
                      "back there",
                      f->path, ebuf, (intmax_t)tear_at);
        } else {
            log_warning("sink file: %s: ftruncate after a failed write: %s; the %zu whole "
                        "records that reached the file stay and count as written",
                        f->path, ebuf, *taken);
        }
    }
    /* fsync = interval: the syncer thread makes it durable. */
    return err < 0 ? err : 0;
}

static int
sink_file_submit(void *state, struct msg *const *msgs, size_t n, size_t *accepted)
{
    struct sink_file *f = state;
    int err;

    check_path(f);
    if (f->is_stale) {
        *accepted = 0; /* the path changed: nothing more until the groups are judged */
        return 0;
    }
    err = write_batch(f, msgs, n, accepted);
    if (*accepted > 0 && f->is_group_commit) {
        sink_file_wake_syncer(f); /* in flight until a sync covers them */
    } else if (*accepted > 0) {
        f->done(f->arg, *accepted, SINK_STORED, 0);
    }
    return err;
}

/* With nothing in flight: the path check, and the sticky sync error reported once. */
static int
sink_file_poll(void *state, int timeout_ms)
{
    struct sink_file *f = state;
    int sync_err;

    if (f->groups_len > 0) {
        sink_file_groups_report(f, timeout_ms);
        return 0;
    }
    check_path(f);
    if (f->fsync == CONF_FSYNC_NEVER) {
        return 0;
    }
    sync_err = atomic_load(&f->sync_err);
    if (sync_err != 0 && !atomic_exchange(&f->is_sync_err_reported, true)) {
        return -sync_err;
    }
    return 0;
}

/*
 * The drain deadline: one more sync settles every group written before it;
 * what is still not known durable then is reported to be spilled.
 */
static void
sink_file_abort(void *state)
{
    struct sink_file *f = state;

    if (f->groups_len > 0) {
        sink_file_groups_settle(f);
    }
}

static int
sink_file_reopen(void *state)
{
    return reopen_path(state);
}

static void
sink_file_close(void *state)
{
    struct sink_file *f = state;

    if (!f) {
        return;
    }
    sink_file_syncer_stop(f);
    sink_file_groups_unregister(f);
    if (f->fd >= 0 && f->is_regular && lock_writes(f) == 0) {
        /* A last try at cutting off a torn record before the exit. */
        bool is_repaired;
        off_t tear_at = sink_file_torn.good_size;
        int err = repair_locked(f, &is_repaired);

        pthread_mutex_unlock(&sink_file_write_lock);
        if (err < 0) {
            log_error("sink file: %s is left with a record cut short at byte %jd: cut the "
                      "file back there before reading it",
                      f->path, (intmax_t)tear_at);
        }
    }
    if (f->fd >= 0) {
        if (f->fsync != CONF_FSYNC_NEVER) {
            int err = sink_file_sync_now(f), sync_err = atomic_load(&f->sync_err);

            if (sync_err != 0 || err < 0) {
                char ebuf[128];

                log_error("sink file: %s: the last fdatasync: %s", f->path,
                          util_strerror(sync_err != 0 ? sync_err : -err, ebuf, sizeof(ebuf)));
            }
        }
        close(f->fd);
    }
    free(f->iov);
    free(f->stage);
    pthread_mutex_destroy(&f->wake_lock);
    pthread_mutex_destroy(&f->sync_lock);
    free(f->groups);
    free(f->path);
    free(f);
}

const struct sink_ops sink_file_ops = {
    .name = "file",
    .open = sink_file_open,
    .submit = sink_file_submit,
    .poll = sink_file_poll,
    .abort = sink_file_abort,
    .reopen = sink_file_reopen,
    .close = sink_file_close,
};
