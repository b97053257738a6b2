/*
 * spool.c - spill files and their replay; the contract is in spool.h.
 *
 * Design.  Writers are prepared by consumer threads at start and used by
 * them after drain_timeout, one writer per consumer, so they need no
 * locking.  A writer holds everything a spill needs (the directory's and
 * the unnamed file's descriptors, an iovec array), so spilling at the
 * deadline asks the system for no new descriptor and no memory.  The
 * replay thread is one worker thread started after the consumers, before
 * READY=1 (which does not wait for it).  It reads each spill file with
 * read() into a buffer that grows only to the largest record, decodes
 * record after record and pushes each into the queue, waiting in 100 ms
 * steps while the queue is full and checking in with the watchdog between
 * the steps.  It checks its stop flag only between files; see spool.h for
 * why that is exactly-once across a clean stop.
 */
#include "config.h"
#include "spool.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdint.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "heartbeat.h"
#include "log.h"
#include "util.h"
#include "worker.h"

#define SPOOL_PREFIX  "spill-"
#define SPOOL_SUFFIX  ".zps"
#define SPOOL_DL_PREFIX "deadletter-" /* dead letters: a name replay never reads */
#define SPOOL_DL_SUFFIX ".zpd"
#define SPOOL_POLL_MS    100         /* longest wait in a push: watchdog check-in period */
#define SPOOL_READ_CHUNK (64 * 1024) /* first replay buffer; grows to the largest record */

/*
 * Spill format version 2 (spool.h): SPOOL_MAGIC, then records, each the
 * message's identity and receive time (origin, seq, received_ms: 8-byte
 * big-endian numbers) before its binary record.  Version 1 files are binary
 * records from the first byte.  The magic's first 4 bytes, read as version
 * 1, are the header of a frame of 2,136,690,771 bytes followed by more: a
 * version 1 file that began so (only possible with a max_message_size over
 * 2 GiB) would be read as a damaged version 2 file and moved aside, not lost.
 */
static const unsigned char SPOOL_MAGIC[8] = { 0xff, 'Z', 'P', 'S', 0, 0, 0, 2 };
#define SPOOL_ID_SIZE 24u /* origin, seq, received_ms before each version 2 record */

/* ------------------------------------------------------------- helpers */

/* The calls whose failures the unit tests inject. */
static ssize_t (*spool_writev)(int fd, const struct iovec *iov, int iovcnt) = writev;
static int (*spool_ftruncate)(int fd, off_t len) = ftruncate;
static int (*spool_fdatasync)(int fd) = fdatasync;

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
    return util_mkdir_p(path, 0750);
}

static int writer_link(struct spool_writer *w, const char *name);

int
spool_dir_lock(const char *dir, int *fd_out)
{
    spool_writer_t *probe;
    char name[32];
    int fd, err;

    err = spool_dir_create(dir);
    if (err < 0) {
        return err;
    }
    fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        return -errno;
    }
    /* The directory itself is locked, not a file in it: no name that
     * replay could read, nothing to create or clean up, and the kernel
     * drops the lock with the process however it ends. */
    while (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        if (errno != EINTR) {
            err = errno == EWOULDBLOCK ? SPOOL_LOCKED : -errno;
            goto fail;
        }
    }
    /* Writable, and a spill file can be named there: prepare one as a
     * consumer does, link it under a name replay never reads (as a commit
     * would: through /proc/self/fd, which a sandbox might hide), and drop
     * it. */
    err = spool_writer_open(&probe, dir, "probe");
    if (err < 0) {
        goto fail;
    }
    snprintf(name, sizeof(name), ".probe-%ld", (long)getpid());
    err = writer_link(probe, name);
    if (err == 0) {
        (void)unlinkat(fd, name, 0);
    } else {
        char ebuf[128];

        log_error("spool: %s: a prepared spill file cannot be given a name (linkat: %s; "
                  "is /proc mounted?)",
                  dir, util_strerror(-err, ebuf, sizeof(ebuf)));
    }
    spool_writer_discard(probe);
    if (err < 0) {
        goto fail;
    }
    *fd_out = fd;
    return 0;
fail:
    close(fd);
    return err;
}

bool
spool_is_spill_name(const char *name)
{
    size_t len = strlen(name), pre = strlen(SPOOL_PREFIX), suf = strlen(SPOOL_SUFFIX);

    return len > pre + suf && strncmp(name, SPOOL_PREFIX, pre) == 0 &&
           strcmp(name + len - suf, SPOOL_SUFFIX) == 0;
}

/* ------------------------------------------------------------- writing */

#define SPOOL_IOV_FRAMES 32 /* frames per writev: header + data each */

struct spool_writer {
    char *dir;            /* for names in the log */
    char tag[16];         /* of the final name */
    char tmp[NAME_MAX];   /* its temporary name in dir, if it has one */
    char final[NAME_MAX]; /* its name in dir after commit (or the first sync) */
    const char *prefix;   /* of the final name: spill or dead letter */
    const char *suffix;
    bool has_ids;         /* version 2 (spill files); dead letters are bare records */
    bool is_named;        /* created as tmp: no O_TMPFILE here */
    bool is_linked;       /* has its final name */
    bool is_dir_synced;   /* ... and that name is durable */
    int dir_fd;
    int fd;
    off_t size;        /* bytes of whole records written */
    uint64_t count;    /* records written */
    off_t synced;      /* bytes made durable by spool_writer_sync */
    uint64_t synced_count;
    bool is_broken;    /* a failed write could not be cut back: add no more */
    struct iovec iov[1 + 2 * SPOOL_IOV_FRAMES];
    unsigned char id[SPOOL_ID_SIZE];
    unsigned char hdr[SPOOL_IOV_FRAMES][MSG_HEADER_SIZE];
};

static void
put_be64(unsigned char *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (unsigned char)v;
        v >>= 8;
    }
}

static uint64_t
get_be64(const unsigned char *p)
{
    uint64_t v = 0;

    for (int i = 0; i < 8; i++) {
        v = v << 8 | p[i];
    }
    return v;
}

static void
writer_free(struct spool_writer *w)
{
    if (w->fd >= 0) {
        close(w->fd);
    }
    if (w->dir_fd >= 0) {
        close(w->dir_fd);
    }
    free(w->dir);
    free(w);
}

/*
 * "<ms since epoch, 13 digits>-<pid>-<tag>-<n>" ("-<tag>" left out when it
 * is empty): name order is spill order.
 */
static int
writer_name(char *buf, size_t len, const char *prefix, const struct spool_writer *w,
            const char *suffix)
{
    static _Atomic unsigned seq;
    struct timespec ts;
    uint64_t ms;

    clock_gettime(CLOCK_REALTIME, &ts);
    ms = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
    if (snprintf(buf, len, "%s%013" PRIu64 "-%ld%s%s-%u%s", prefix, ms, (long)getpid(),
                 w->tag[0] ? "-" : "", w->tag, atomic_fetch_add(&seq, 1), suffix) >= (int)len) {
        return -ENAMETOOLONG;
    }
    return 0;
}

static int write_iov(int fd, struct iovec *iov, int n);

static int
writer_open(spool_writer_t **out, const char *dir, const char *tag, const char *prefix,
            const char *suffix, bool has_ids)
{
    struct spool_writer *w;
    int err;

    w = calloc(1, sizeof(*w));
    if (!w) {
        return -ENOMEM;
    }
    w->fd = -1;
    w->dir_fd = -1;
    w->prefix = prefix;
    w->suffix = suffix;
    w->has_ids = has_ids;
    w->dir = strdup(dir);
    if (!w->dir) {
        err = -ENOMEM;
        goto fail;
    }
    snprintf(w->tag, sizeof(w->tag), "%s", tag);
    w->dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (w->dir_fd < 0) {
        err = -errno;
        goto fail;
    }
    /* Unnamed until commit: nothing to clean up if it is never used, and
     * never a name that replay reads before it is complete. */
    w->fd = openat(w->dir_fd, ".", O_TMPFILE | O_WRONLY | O_CLOEXEC, 0640);
    if (w->fd < 0 && (errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL)) {
        /* A file system without O_TMPFILE: a temporary name, as replay ignores. */
        err = writer_name(w->tmp, sizeof(w->tmp), ".spill-", w, ".tmp");
        if (err < 0) {
            goto fail;
        }
        w->fd = openat(w->dir_fd, w->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
        w->is_named = true;
    }
    if (w->fd < 0) {
        err = -errno;
        goto fail;
    }
    if (has_ids) {
        /* Written now, so a spill at the deadline is records only; the
         * records cut back on an error never reach into it. */
        struct iovec iov = { (void *)SPOOL_MAGIC, sizeof(SPOOL_MAGIC) };

        err = write_iov(w->fd, &iov, 1);
        if (err < 0) {
            goto fail;
        }
        w->size = w->synced = (off_t)sizeof(SPOOL_MAGIC);
    }
    *out = w;
    return 0;
fail:
    writer_free(w);
    return err;
}

int
spool_writer_open(spool_writer_t **out, const char *dir, const char *tag)
{
    return writer_open(out, dir, tag, SPOOL_PREFIX, SPOOL_SUFFIX, true);
}

int
spool_writer_open_dead_letter(spool_writer_t **out, const char *dir)
{
    return writer_open(out, dir, "", SPOOL_DL_PREFIX, SPOOL_DL_SUFFIX, false);
}

/* Writes iov[0..n) whole, going on after short writes. */
static int
write_iov(int fd, struct iovec *iov, int n)
{
    while (n > 0) {
        ssize_t done = spool_writev(fd, iov, n);

        if (done < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -errno;
        }
        while (n > 0 && (size_t)done >= iov->iov_len) {
            done -= (ssize_t)iov->iov_len;
            iov++;
            n--;
        }
        if (n > 0) {
            iov->iov_base = (unsigned char *)iov->iov_base + done;
            iov->iov_len -= (size_t)done;
        }
    }
    return 0;
}

int
spool_writer_add(spool_writer_t *w, const struct msg *m)
{
    size_t id_size = w->has_ids ? SPOOL_ID_SIZE : 0;
    int err = 0;

    if (w->is_broken) {
        return -EIO;
    }
    if (w->has_ids) {
        put_be64(w->id, m->id.origin);
        put_be64(w->id + 8, m->id.seq);
        put_be64(w->id + 16, m->received_ms);
    }
    /* Straight from the message's frames through the writer's own iovec
     * array: adding a record allocates nothing. */
    for (size_t i = 0; i < m->nframes && err == 0; i += SPOOL_IOV_FRAMES) {
        int n = 0;

        if (i == 0 && w->has_ids) {
            w->iov[n++] = (struct iovec){ w->id, SPOOL_ID_SIZE };
        }
        for (size_t k = i; k < m->nframes && k < i + SPOOL_IOV_FRAMES; k++) {
            msg_frame_header(m, k, w->hdr[k - i]);
            w->iov[n++] = (struct iovec){ w->hdr[k - i], MSG_HEADER_SIZE };
            if (m->frames[k].len > 0) {
                w->iov[n++] = (struct iovec){ (void *)m->frames[k].data, m->frames[k].len };
            }
        }
        err = write_iov(w->fd, w->iov, n);
    }
    if (err < 0) {
        /* Keep the file a sequence of whole records; if it cannot be cut
         * back, a torn record ends it and nothing may follow. */
        int r;

        while ((r = spool_ftruncate(w->fd, w->size)) < 0 && errno == EINTR) {
        }
        if (r < 0 || lseek(w->fd, w->size, SEEK_SET) != w->size) {
            w->is_broken = true;
        }
        return err;
    }
    w->size += (off_t)(id_size + msg_binary_size(m));
    w->count++;
    return 0;
}

uint64_t
spool_writer_count(const spool_writer_t *w)
{
    return w->count;
}

bool
spool_writer_is_broken(const spool_writer_t *w)
{
    return w->is_broken;
}

const char *
spool_writer_name(const spool_writer_t *w)
{
    return w->is_linked ? w->final : NULL;
}

/* Gives the file the name dir/name (no file may have it yet). */
static int
writer_link(struct spool_writer *w, const char *name)
{
    char proc[64];

    if (w->is_named) {
        return renameat(w->dir_fd, w->tmp, w->dir_fd, name) < 0 ? -errno : 0;
    }
    /* linkat(AT_EMPTY_PATH) needs CAP_DAC_READ_SEARCH; the /proc link does
     * not.  Neither needs a new descriptor. */
    snprintf(proc, sizeof(proc), "/proc/self/fd/%d", w->fd);
    if (linkat(AT_FDCWD, proc, w->dir_fd, name, AT_SYMLINK_FOLLOW) == 0) {
        return 0;
    }
    if (errno == ENOENT && linkat(w->fd, "", w->dir_fd, name, AT_EMPTY_PATH) == 0) {
        return 0;
    }
    return -errno;
}

void
spool_writer_discard(spool_writer_t *w)
{
    if (!w) {
        return;
    }
    if (w->is_named) {
        (void)unlinkat(w->dir_fd, w->tmp, 0);
    }
    writer_free(w);
}

int
spool_writer_sync(spool_writer_t *w)
{
    char ebuf[128];
    int r, err = 0;

    if (w->count == w->synced_count) {
        return 0;
    }
    if (w->is_broken) {
        (void)spool_ftruncate(w->fd, w->size); /* one more try to cut the torn record off */
    }
    if (spool_fdatasync(w->fd) < 0) {
        err = -errno;
        goto fail;
    }
    if (!w->is_linked) {
        err = writer_name(w->final, sizeof(w->final), w->prefix, w, w->suffix);
        if (err == 0) {
            err = writer_link(w, w->final);
        }
        if (err < 0) {
            goto fail;
        }
        w->is_linked = true;
    }
    if (!w->is_dir_synced) {
        if (fsync(w->dir_fd) < 0) {
            err = -errno;
            goto fail;
        }
        w->is_dir_synced = true;
    }
    w->synced = w->size;
    w->synced_count = w->count;
    return 0;
fail:
    log_error("spool: %s/%s: sync: %s (%" PRIu64 " records not durable)", w->dir,
              w->is_linked ? w->final : "(unnamed)", util_strerror(-err, ebuf, sizeof(ebuf)),
              w->count - w->synced_count);
    /* A sync error is not retried (the kernel may have dropped the data it
     * reported): the records written since the last sync are cut off, and
     * the caller writes them again if it wants them. */
    while ((r = spool_ftruncate(w->fd, w->synced)) < 0 && errno == EINTR) {
    }
    if (r < 0 || lseek(w->fd, w->synced, SEEK_SET) != w->synced) {
        w->is_broken = true;
    }
    w->size = w->synced;
    w->count = w->synced_count;
    return err;
}

int
spool_writer_commit(spool_writer_t *w)
{
    char ebuf[128];
    int err = 0;

    if (!w) {
        return 0;
    }
    if (w->count == 0 && !w->is_linked) {
        spool_writer_discard(w);
        return 0;
    }
    if (w->is_linked) {
        /* Synced before: the same, for what was added since. */
        err = spool_writer_sync(w);
        writer_free(w);
        return err;
    }
    if (w->is_broken) {
        /* One more try to cut the torn record off; if it stays, replay
         * takes the whole records before it and moves the file aside. */
        (void)spool_ftruncate(w->fd, w->size);
    }
    if (fsync(w->fd) < 0) {
        err = -errno;
        log_error("spool: spill file in %s: fsync: %s (%" PRIu64 " messages not spilled)",
                  w->dir, util_strerror(-err, ebuf, sizeof(ebuf)), w->count);
        /* Not durable, so never replayed: keep it under a temporary name
         * for a human (a sync error is not retried: the kernel may have
         * dropped the data it reported). */
        if (w->is_named || (writer_name(w->tmp, sizeof(w->tmp), ".spill-", w, ".tmp") == 0 &&
                            writer_link(w, w->tmp) == 0)) {
            log_error("spool: they are left in %s/%s", w->dir, w->tmp);
        }
        writer_free(w);
        return err;
    }
    err = writer_name(w->final, sizeof(w->final), w->prefix, w, w->suffix);
    if (err == 0) {
        err = writer_link(w, w->final);
    }
    if (err < 0) {
        log_error("spool: spill file %s/%s: %s (%" PRIu64 " messages not spilled)", w->dir,
                  w->final, util_strerror(-err, ebuf, sizeof(ebuf)), w->count);
        writer_free(w);
        return err;
    }
    if (fsync(w->dir_fd) < 0) {
        /* The file is in place under its final name and will be replayed:
         * its records are spilled, only the name may not be durable yet. */
        log_warning("spool: spill file %s/%s: fsync of %s: %s", w->dir, w->final, w->dir,
                    util_strerror(errno, ebuf, sizeof(ebuf)));
    }
    log_info("spool: spilled %" PRIu64 " messages to %s/%s", w->count, w->dir, w->final);
    writer_free(w);
    return 0;
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

/*
 * Opens path for replay: a regular file, never through a symlink, never
 * waiting (a FIFO would block the open until a writer came).  Returns the
 * descriptor, or a negative errno; *is_irregular tells a name that is not
 * a regular file from other errors.
 */
static int
replay_open(const char *path, struct stat *st, bool *is_irregular)
{
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);

    *is_irregular = fd < 0 && errno == ELOOP;
    if (fd < 0) {
        return -errno;
    }
    if (fstat(fd, st) < 0) {
        int err = -errno;

        close(fd);
        return err;
    }
    if (!S_ISREG(st->st_mode)) {
        *is_irregular = true;
        close(fd);
        return -EINVAL;
    }
    return fd;
}

/*
 * Reads more of fd into *buf after its first *have bytes, growing it (up
 * to max) when it is full.  Returns the bytes read (0 at the end of the
 * file) or a negative errno.
 */
static ssize_t
replay_read(int fd, unsigned char **buf, size_t *cap, size_t have, size_t max)
{
    ssize_t n;

    if (have == *cap) {
        size_t grown = *cap < max / 2 ? *cap * 2 : max;
        unsigned char *p;

        if (grown <= *cap) {
            return -EBADMSG; /* cannot happen: the decoder bounds a record by max */
        }
        p = realloc(*buf, grown);
        if (!p) {
            return -ENOMEM;
        }
        *buf = p;
        *cap = grown;
    }
    while ((n = read(fd, *buf + have, *cap - have)) < 0 && errno == EINTR) {
    }
    return n < 0 ? -errno : n;
}

/*
 * Decodes one record of a spill file of the given version (1 or 2) from
 * buf[0..len), as msg_decode_binary() does (same returns).  A version 2
 * record keeps its identity; a version 1 record is given a new one.
 */
static int
replay_decode(int version, const unsigned char *buf, size_t len, size_t max_size,
              struct msg **out, size_t *used)
{
    int err;

    if (version == 1) {
        err = msg_decode_binary(buf, len, max_size, out, used);
        if (err == 0) {
            msg_id_assign(out, 1);
        }
        return err;
    }
    if (len < SPOOL_ID_SIZE) {
        return -EAGAIN;
    }
    err = msg_decode_binary(buf + SPOOL_ID_SIZE, len - SPOOL_ID_SIZE, max_size, out, used);
    if (err == 0) {
        (*out)->id.origin = get_be64(buf);
        (*out)->id.seq = get_be64(buf + 8);
        (*out)->received_ms = get_be64(buf + 16);
        *used += SPOOL_ID_SIZE;
    }
    return err;
}

int
spool_replay_file(const char *dir, const char *name, size_t max_size, spool_push_fn *push,
                  void *arg, uint64_t *pushed)
{
    char path[PATH_MAX];
    char ebuf[128];
    unsigned char *buf;
    size_t cap = SPOOL_READ_CHUNK, have = 0, pos = 0, off = 0, frames, max;
    struct stat st;
    int fd, err = 0, version = 0; /* 0: not known until the first bytes are read */
    bool is_bad = false, is_eof = false, is_irregular;

    if (snprintf(path, sizeof(path), "%s/%s", dir, name) >= (int)sizeof(path)) {
        return -ENAMETOOLONG;
    }
    fd = replay_open(path, &st, &is_irregular);
    if (is_irregular) {
        log_error("spool: %s: not a regular file (a symbolic link, FIFO, device or directory):"
                  " not replayed",
                  path);
        move_aside(dir, path);
        return 0;
    }
    if (fd < 0) {
        log_error("spool: %s: %s", path, util_strerror(-fd, ebuf, sizeof(ebuf)));
        return fd;
    }
    /* No record is larger than its file: a corrupt length asks for no more
     * memory than the file holds.  The largest record the decoder accepts
     * under max_size is max bytes long. */
    if ((uint64_t)st.st_size < max_size) {
        max_size = (size_t)st.st_size;
    }
    frames = (size_t)MSG_HEADER_SIZE * MSG_FRAMES_MAX;
    max = max_size < SIZE_MAX - frames ? max_size + frames : SIZE_MAX;
    buf = malloc(cap);
    if (!buf) {
        close(fd);
        return -ENOMEM;
    }
    /* read(), not mmap(): an I/O error or a file cut short while it is
     * read is an error return or a short read here, never a SIGBUS. */
    for (;;) {
        struct msg *m;
        size_t used;
        ssize_t n;

        if (version == 0 && (have >= sizeof(SPOOL_MAGIC) || is_eof)) {
            version = have >= sizeof(SPOOL_MAGIC) &&
                      memcmp(buf, SPOOL_MAGIC, sizeof(SPOOL_MAGIC)) == 0 ? 2 : 1;
            if (version == 2) {
                pos = off = sizeof(SPOOL_MAGIC);
            }
        }
        err = version == 0 ? -EAGAIN : replay_decode(version, buf + pos, have - pos, max_size,
                                                      &m, &used);
        if (err == 0) {
            err = push(arg, m);
            if (err < 0) {
                msg_destroy(m);
                break;
            }
            (*pushed)++;
            pos += used;
            off += used;
            continue;
        }
        if (err == -EAGAIN && is_eof && pos == have) {
            err = 0; /* the end, between two records */
            break;
        }
        if (err == -EBADMSG || (err == -EAGAIN && is_eof)) {
            /* A record running past the end of the file is a truncation
             * or a corrupt length: the bytes cannot tell which. */
            log_error("spool: %s: damaged record (truncated or corrupt) at offset %zu of %jd:"
                      " replayed the %" PRIu64 " records before it",
                      path, off, (intmax_t)st.st_size, *pushed);
            is_bad = true;
            err = 0;
            break;
        }
        if (err != -EAGAIN) {
            break;
        }
        memmove(buf, buf + pos, have - pos);
        have -= pos;
        pos = 0;
        n = replay_read(fd, &buf, &cap, have, max);
        if (n == -EIO || n == -EBADMSG) {
            /* The rest cannot be read: as for damage, keep the file and
             * never replay its first records twice. */
            log_error("spool: %s: read at offset %zu: %s: replayed the %" PRIu64
                      " records before it",
                      path, off + have, util_strerror((int)-n, ebuf, sizeof(ebuf)), *pushed);
            is_bad = true;
            break;
        }
        if (n < 0) {
            err = (int)n;
            break;
        }
        is_eof = n == 0;
        have += (size_t)n;
    }
    free(buf);
    close(fd);
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
            /* No bound but the file's size: a record spilled under a larger
             * queue.max_bytes than today's is still replayed (the queue
             * takes any message while it is empty). */
            (void)spool_replay_file(dir, names[i]->d_name, SIZE_MAX, replay_push, r, &pushed);
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
