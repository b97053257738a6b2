/*
 * spool_replay.c - the replay of the spill files of earlier runs; the
 * writers are in spool.c, the contract in spool.h.
 *
 * The replay thread is one worker thread started after the consumers, before
 * READY=1 (which does not wait for it).  It reads each spill file with
 * read() into a buffer that grows only to the largest record, decodes
 * record after record and pushes each into the queue, waiting in 100 ms
 * steps while the queue is full and checking in with the watchdog between
 * the steps.  It checks its stop flag only between files; see spool.h for
 * why that is exactly-once across a clean stop.
 *
 * A file read to its end is deleted (or moved aside, if damaged) only once
 * every record pushed from it is stored: each pushed message carries the
 * file's ack (m->ack), which the consumer calls once the sink stored the
 * message or it was spilled again, durably (msg_ack_stored()).  The last
 * of those, on a consumer's thread, or the end of the reading, on this
 * one, deletes the file.  Until then a crash replays the file again, so a
 * message replayed and not yet stored is never lost, nor an OK given for
 * it (ack = stored) in the run that spilled it.
 */
#include "config.h"
#include "spool_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "heartbeat.h"
#include "log.h"
#include "util.h"
#include "worker.h"

#define SPOOL_POLL_MS    100         /* longest wait in a push: watchdog check-in period */
#define SPOOL_READ_CHUNK (64 * 1024) /* first replay buffer; grows to the largest record */

/* What becomes of a replayed file once no record pushed from it is left unstored. */
enum replay_fate {
    FATE_DELETE,     /* read to its end */
    FATE_MOVE_ASIDE, /* damaged: its valid leading records were pushed */
    FATE_KEEP,       /* the reading stopped on an error: replayed again next time */
};

/*
 * A spill file being replayed.  Each record pushed from it holds a
 * reference, through its message's ack, and the reading holds one more;
 * the last reference let go settles the file's fate.  Freed with the list
 * it is on (spool_replay_files_free()), not at the last reference: a
 * message lost by a failed spill never lets go of its reference.
 */
struct spool_replay_file {
    struct msg_ack ack; /* every pushed message's m->ack */
    _Atomic uint64_t refs;
    enum replay_fate fate;          /* set before the reading's reference is let go */
    const char *dir;                /* borrowed */
    struct spool_replay_file *next; /* the owner's list */
    char path[];
};

/* Reads the 8-byte big-endian number at p (a spill record's identity). */
static uint64_t
get_be64(const unsigned char *p)
{
    uint64_t v = 0;

    for (int i = 0; i < 8; i++) {
        v = v << 8 | p[i];
    }
    return v;
}

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
    (void)spool_fsync_dir(dir);
    log_warning("spool: %s: moved aside to %s", path, bad);
}

/* Deletes a replayed file, or moves it aside, or keeps it, as its fate says. */
static void
settle(struct spool_replay_file *f)
{
    char ebuf[128];

    switch (f->fate) {
    case FATE_DELETE:
        if (unlink(f->path) < 0) {
            log_error("spool: %s: unlink: %s (its records will be replayed again)", f->path,
                      util_strerror(errno, ebuf, sizeof(ebuf)));
            return;
        }
        (void)spool_fsync_dir(f->dir);
        return;
    case FATE_MOVE_ASIDE:
        move_aside(f->dir, f->path);
        return;
    case FATE_KEEP:
        return;
    }
}

/* Lets go of one reference to f; the last one settles it. */
static void
replay_file_unref(struct spool_replay_file *f)
{
    /* acq_rel: the fate written before the reading's reference went is
     * seen by whichever thread lets go last. */
    if (atomic_fetch_sub_explicit(&f->refs, 1, memory_order_acq_rel) == 1) {
        settle(f);
    }
}

/* The ack of a replayed message: stored, or spilled again durably. */
static void
replay_file_stored(struct msg_ack *a)
{
    replay_file_unref(
        (struct spool_replay_file *)((char *)a - offsetof(struct spool_replay_file, ack)));
}

void
spool_replay_files_free(struct spool_replay_file *list)
{
    while (list) {
        struct spool_replay_file *next = list->next;

        free(list);
        list = next;
    }
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
    if (get_be64(buf + 8) == 0) {
        return -EBADMSG; /* seq counts from 1 (msg_id_assign): zeros, not a record */
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
                  void *arg, uint64_t *pushed, struct spool_replay_file **files)
{
    char path[PATH_MAX];
    char ebuf[128];
    struct spool_replay_file *f;
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
    f = malloc(sizeof(*f) + strlen(path) + 1);
    if (!buf || !f) {
        free(buf);
        free(f);
        close(fd);
        return -ENOMEM;
    }
    f->ack.stored = replay_file_stored;
    atomic_init(&f->refs, 1); /* the reading's */
    f->fate = FATE_KEEP;
    f->dir = dir;
    strcpy(f->path, path);
    f->next = *files;
    *files = f;
    /* read(), not mmap(): an I/O error or a file cut short while it is
     * read is an error return or a short read here, never a SIGBUS. */
    for (;;) {
        struct msg *m;
        size_t used;
        ssize_t n;

        if (version == 0 && (have >= sizeof(spool_magic) || is_eof)) {
            version =
                have >= sizeof(spool_magic) && memcmp(buf, spool_magic, sizeof(spool_magic)) == 0
                    ? 2
                    : 1;
            if (version == 2) {
                pos = off = sizeof(spool_magic);
            }
        }
        err = version == 0 ? -EAGAIN
                           : replay_decode(version, buf + pos, have - pos, max_size, &m, &used);
        if (err == 0) {
            m->ack = &f->ack;
            atomic_fetch_add_explicit(&f->refs, 1, memory_order_relaxed);
            err = push(arg, m);
            if (err < 0) {
                atomic_fetch_sub_explicit(&f->refs, 1, memory_order_relaxed);
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
            err = 0; /* not the decoder's -EAGAIN: the file is moved aside */
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
        /* The records pushed so far will be replayed again: say so. */
        log_error("spool: %s: stopped at offset %zu after %" PRIu64 " records: %s", path, off,
                  *pushed, util_strerror(-err, ebuf, sizeof(ebuf)));
    }
    f->fate = err < 0 ? FATE_KEEP : is_bad ? FATE_MOVE_ASIDE : FATE_DELETE;
    replay_file_unref(f);
    return err;
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
    struct spool_replay_file *files; /* replayed, or being replayed */
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
             * takes any message once nothing is queued or held). */
            (void)spool_replay_file(dir, names[i]->d_name, SIZE_MAX, replay_push, r, &pushed,
                                    &r->files);
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
    if (r) {
        spool_replay_files_free(r->files);
        free(r);
    }
}
