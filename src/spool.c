/*
 * spool.c - the spool directory and its writers (spill files, dead
 * letters); their replay is in spool_replay.c, the contract in spool.h.
 *
 * Design.  Writers are prepared by consumer threads at start and used by
 * them after drain_timeout, one writer per consumer, so they need no
 * locking.  A writer holds everything a spill needs (the directory's and
 * the unnamed file's descriptors, an iovec array), so spilling at the
 * deadline asks the system for no new descriptor and no memory.
 */
#include "config.h"
#include "spool_int.h"

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

#include "log.h"
#include "util.h"

#define SPOOL_PREFIX  "spill-"
#define SPOOL_SUFFIX  ".zps"
#define SPOOL_DL_PREFIX "deadletter-" /* dead letters: a name replay never reads */
#define SPOOL_DL_SUFFIX ".zpd"

/* Spill format version 2: see spool_int.h. */
const unsigned char spool_magic[SPOOL_MAGIC_SIZE] = { 0xff, 'Z', 'P', 'S', 0, 0, 0, 2 };

/* ------------------------------------------------------------- helpers */

/* The calls whose failures the unit tests inject. */
static ssize_t (*spool_writev)(int fd, const struct iovec *iov, int iovcnt) = writev;
static int (*spool_ftruncate)(int fd, off_t len) = ftruncate;
static int (*spool_fdatasync)(int fd) = fdatasync;

int
spool_fsync_dir(const char *dir)
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
        struct iovec iov = { (void *)spool_magic, sizeof(spool_magic) };

        err = write_iov(w->fd, &iov, 1);
        if (err < 0) {
            goto fail;
        }
        w->size = w->synced = (off_t)sizeof(spool_magic);
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
            struct msg_frame f = msg_frame(m, k);

            msg_frame_header(m, k, w->hdr[k - i]);
            w->iov[n++] = (struct iovec){ w->hdr[k - i], MSG_HEADER_SIZE };
            if (f.len > 0) {
                w->iov[n++] = (struct iovec){ (void *)f.data, f.len };
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

void
spool_dead_letter_init(struct spool_dead_letter *dl, const char *dir, const char *who,
                       const char *what)
{
    *dl = (struct spool_dead_letter){ .dir = dir, .who = who, .what = what };
}

int
spool_dead_letter_add(struct spool_dead_letter *dl, const struct msg *m)
{
    char ebuf[128];
    int err = 0;

    if (!dl->w) {
        err = spool_writer_open_dead_letter(&dl->w, dl->dir);
    }
    if (err == 0) {
        err = spool_writer_add(dl->w, m);
    }
    if (err < 0) {
        log_error("%s: dead-letter file in %s: %s", dl->who, dl->dir,
                  util_strerror(-err, ebuf, sizeof(ebuf)));
    }
    return err;
}

int
spool_dead_letter_sync(struct spool_dead_letter *dl)
{
    bool was_named;
    int err;

    if (!dl->w) {
        return 0;
    }
    was_named = spool_writer_name(dl->w) != NULL;
    err = spool_writer_sync(dl->w); /* logs its failure */
    if (err == 0 && !was_named && spool_writer_name(dl->w)) {
        log_warning("%s: %s go to %s/%s", dl->who, dl->what, dl->dir, spool_writer_name(dl->w));
    }
    if (spool_writer_is_broken(dl->w)) {
        /* A torn record ends that file and nothing may follow it: its
         * synced records stay, the next message starts a new file. */
        (void)spool_writer_commit(dl->w);
        dl->w = NULL;
    }
    return err;
}

void
spool_dead_letter_fini(struct spool_dead_letter *dl)
{
    (void)spool_writer_commit(dl->w);
    dl->w = NULL;
}
