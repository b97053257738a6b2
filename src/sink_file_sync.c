/*
 * sink_file_sync.c - the file sink's fdatasync: the syncer thread of
 * fsync = interval and the group commit of ack = stored; see
 * sink_file_int.h.  The write path is in sink_file.c.
 *
 * fsync policy: always = fdatasync before submit() returns; interval =
 * fdatasync every fsync_interval while the file is dirty, by a syncer
 * thread of the instance, so the consumer never waits for the disk (a
 * fdatasync of a second's writes takes a good part of that second at full
 * speed, and with an inline sync the consumer sat in it: BENCHMARKS.md,
 * "Figures behind the code"); never = only the kernel decides.  A close
 * and a reopen sync at once, on the consumer.  Non-regular files (FIFOs,
 * devices) are never synced.
 *
 * Group commit.  With [input] ack = stored and fsync = interval, a batch
 * written to a regular file is not reported stored at once: it stays in
 * flight as a group (its message count and the file size after it) until a
 * fdatasync that began after it succeeds, and the syncer then runs back to
 * back while groups wait (not every fsync_interval), so an OK waits one or
 * two fdatasync times and one sync covers the batches of every consumer.
 * Each sync measures the file before it begins, between two writes; on
 * success every instance on that file learns that the bytes below are
 * durable (synced) and a polling consumer reports its groups that end
 * there.  A file cut back meanwhile (a failed write undone, a torn record
 * repaired, a failed sync's cut) may hold bytes below that size written
 * after the sync began: that sync then counts for nothing and the next one
 * settles them; a file found shorter than synced (copytruncate) lowers
 * synced (sink_file_shrunk_locked).  A failed sync means
 * nothing written since the last good one is known durable (Linux reports
 * a writeback error once and may drop the pages): the file is cut back to
 * synced, every group of every instance beyond it is marked lost and
 * reported SINK_RETRY, and the consumers write those messages again,
 * before anything newer (submit() takes nothing while one is not yet
 * reported), so the file keeps each consumer's order.  If the cut fails,
 * the file is torn there and takes nothing more until it can be cut (as
 * after a failed write).  The groups and synced are under
 * sink_file_write_lock; a syncer takes it inside sync_lock, to measure the
 * file before its fdatasync and to settle the groups after it, never across
 * the fdatasync.  A reopen (SIGHUP, path check) waits until no group is in
 * flight.
 *
 * The syncer and the consumer share sync_lock: the syncer holds it across
 * its fdatasync, and the consumer takes it only to sync itself or to swap
 * the descriptor (reopen, close), never to write.  is_dirty is set by the
 * consumer after each write and taken (exchanged to false) by whoever
 * syncs, before the sync: a write that lands during a sync leaves it set
 * for the next one.  Everything else in an instance is the consumer's.
 */
#include "config.h"
#include "sink_file_int.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "stats.h"
#include "util.h"
#include "worker.h"

/* Swapped by tests to inject failures. */
int (*sink_file_fdatasync)(int fd) = fdatasync;

/* Every group-commit instance, for the syncers to update; sink_file_write_lock. */
static struct sink_file *group_commits;
/* Times a file shrank (sink_file_shrunk_locked); sink_file_write_lock. */
static uint64_t shrinks;
/* Broadcast under sink_file_write_lock when a sync succeeded or failed. */
static pthread_cond_t durable_cond;
static pthread_once_t durable_once = PTHREAD_ONCE_INIT;

/* Keeps the first sync failure of the open file for poll() and close to report. */
void
sink_file_note_sync_error(struct sink_file *f, int err)
{
    int none = 0;

    atomic_compare_exchange_strong(&f->sync_err, &none, -err);
}

/* sync_locked syncs f if it is dirty; sync_lock held. */
static int
sync_locked(struct sink_file *f)
{
    if (!f->is_regular || !atomic_exchange(&f->is_dirty, false)) {
        return 0;
    }
    if (sink_file_fdatasync(f->fd) < 0) {
        int err = -errno;

        stats_sink_error(STATS_SINK_ERROR_FSYNC);
        atomic_store(&f->is_dirty, true); /* still to be made durable */
        if (f->fsync == CONF_FSYNC_INTERVAL) {
            /* What the batches since the last good sync wrote may be lost,
             * and they were reported delivered: a later sync cannot undo it. */
            sink_file_note_sync_error(f, err);
        }
        return err;
    }
    return 0;
}

int
sink_file_sync_now(struct sink_file *f)
{
    int err;

    pthread_mutex_lock(&f->sync_lock);
    err = sync_locked(f);
    pthread_mutex_unlock(&f->sync_lock);
    return err;
}

static void
durable_init(void)
{
    pthread_condattr_t attr;

    /* Nothing to do on failure: the defaults (CLOCK_REALTIME) would mistime
     * the waits, and these calls cannot fail with valid arguments. */
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&durable_cond, &attr);
    pthread_condattr_destroy(&attr);
}

/*
 * Sets what f takes as durable in the file it just opened, of size bytes:
 * what another instance on the same file knows (the rest may be its groups
 * in flight), else all of it (synced by whoever wrote it).  sink_file_write_lock held.
 */
void
sink_file_set_synced_locked(struct sink_file *f, off_t size)
{
    f->synced = size;
    for (struct sink_file *g = group_commits; g; g = g->next_gc) {
        if (g != f && g->dev == f->dev && g->ino == f->ino) {
            f->synced = g->synced;
            return;
        }
    }
}

void
sink_file_shrunk_locked(const struct sink_file *f, off_t size)
{
    shrinks++;
    for (struct sink_file *g = group_commits; g; g = g->next_gc) {
        if (g->dev == f->dev && g->ino == f->ino && g->synced > size) {
            g->synced = size;
        }
    }
}

/*
 * One sync of the group commit (see above): measures the file, syncs it,
 * and tells every instance on the file what is durable now, or cuts the
 * file back to what was and marks the groups beyond lost.  Returns 0 or the
 * sync's negative errno.  The syncer, or the consumer at the drain
 * deadline; takes sync_lock, then sink_file_write_lock.
 */
int
sink_file_group_sync(struct sink_file *f)
{
    struct stat st;
    uint64_t shrinks_before;
    int err = 0, cut_err = 0;
    off_t cut_to = -1;
    bool is_shrunk;

    pthread_mutex_lock(&f->sync_lock);
    if (!f->is_regular || !atomic_exchange(&f->is_dirty, false)) {
        /* Nothing written since the last sync began: it covered every group. */
        pthread_mutex_unlock(&f->sync_lock);
        return 0;
    }
    /* Measured between two writes, and with the count of shrinks: bytes
     * below the size written after it began (into a file cut back
     * meanwhile) are not covered by this sync. */
    pthread_mutex_lock(&sink_file_write_lock);
    shrinks_before = shrinks;
    if (fstat(f->fd, &st) < 0) {
        err = -errno;
    }
    pthread_mutex_unlock(&sink_file_write_lock);
    if (err == 0 && sink_file_fdatasync(f->fd) < 0) {
        err = -errno;
    }
    if (err < 0) {
        stats_sink_error(STATS_SINK_ERROR_FSYNC);
    }
    pthread_mutex_lock(&sink_file_write_lock);
    is_shrunk = shrinks != shrinks_before;
    if (err < 0) {
        struct stat now;

        /* Never past the end: ftruncate would pad the file with zeros. */
        cut_to = f->synced;
        if (fstat(f->fd, &now) == 0 && now.st_size < cut_to) {
            cut_to = now.st_size;
        }
        cut_err = sink_file_truncate_to(f->fd, cut_to);
        if (cut_err < 0) {
            sink_file_tear_locked(f, cut_to);
        } else {
            sink_file_shrunk_locked(f, cut_to);
        }
    }
    for (struct sink_file *g = group_commits; g; g = g->next_gc) {
        if (g->dev != f->dev || g->ino != f->ino) {
            continue;
        }
        if (err == 0 && !is_shrunk && g->synced < st.st_size) {
            g->synced = st.st_size;
        }
        for (size_t i = 0; err < 0 && i < g->groups_len; i++) {
            struct group *gr = &g->groups[(g->groups_head + i) & (g->groups_cap - 1)];

            gr->is_lost |= gr->end > cut_to;
        }
    }
    if (err == 0 && is_shrunk) {
        atomic_store(&f->is_dirty, true); /* the next sync settles them */
    }
    pthread_cond_broadcast(&durable_cond);
    pthread_mutex_unlock(&sink_file_write_lock);
    pthread_mutex_unlock(&f->sync_lock);
    if (err == 0 && is_shrunk && f->has_syncer) {
        sink_file_wake_syncer(f);
    }
    if (err < 0) {
        char ebuf[128], cbuf[128];

        log_error("sink file: fdatasync %s: %s: what was written since the last good sync is "
                  "written again%s%s",
                  f->path, util_strerror(-err, ebuf, sizeof(ebuf)),
                  cut_err < 0 ? "; cutting the file back failed: " : "",
                  cut_err < 0 ? util_strerror(-cut_err, cbuf, sizeof(cbuf)) : "");
    }
    return err;
}

/* The syncer thread (fsync = interval): see the design note. */
static void *
syncer_main(void *arg)
{
    struct sink_file *f = arg;
    struct timespec deadline;

    pthread_mutex_lock(&f->wake_lock);
    while (!f->is_syncer_stopping) {
        util_deadline_ts(CLOCK_MONOTONIC, f->fsync_interval_ms, &deadline);
        while (!f->is_syncer_stopping && !f->is_group_due &&
               pthread_cond_timedwait(&f->sync_cond, &f->wake_lock, &deadline) != ETIMEDOUT) {
        }
        if (f->is_syncer_stopping) {
            break;
        }
        f->is_group_due = false;
        pthread_mutex_unlock(&f->wake_lock);
        if (f->is_group_commit) {
            (void)sink_file_group_sync(f); /* logged there */
        } else {
            int err = sink_file_sync_now(f);

            if (err < 0) {
                char ebuf[128];

                log_error("sink file: fdatasync %s: %s: what was written since the last good "
                          "sync may not be on disk (reported until the file is reopened)",
                          f->path, util_strerror(-err, ebuf, sizeof(ebuf)));
            }
        }
        pthread_mutex_lock(&f->wake_lock);
    }
    pthread_mutex_unlock(&f->wake_lock);
    return NULL;
}

/* Wakes the syncer for a group that waits; the consumer, after a write. */
void
sink_file_wake_syncer(struct sink_file *f)
{
    pthread_mutex_lock(&f->wake_lock);
    f->is_group_due = true;
    pthread_cond_signal(&f->sync_cond);
    pthread_mutex_unlock(&f->wake_lock);
}

int
sink_file_syncer_start(struct sink_file *f)
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

void
sink_file_syncer_stop(struct sink_file *f)
{
    if (!f->has_syncer) {
        return;
    }
    pthread_mutex_lock(&f->wake_lock);
    f->is_syncer_stopping = true;
    pthread_cond_signal(&f->sync_cond);
    pthread_mutex_unlock(&f->wake_lock);
    pthread_join(f->syncer, NULL);
    pthread_cond_destroy(&f->sync_cond);
    f->has_syncer = false;
}

/* Makes room for one more group; sink_file_write_lock held (the syncers read groups). */
int
sink_file_groups_reserve_locked(struct sink_file *f)
{
    size_t cap = f->groups_cap ? f->groups_cap * 2 : 64;
    struct group *v;

    if (f->groups_len < f->groups_cap) {
        return 0;
    }
    v = malloc(cap * sizeof(*v));
    if (!v) {
        return -ENOMEM;
    }
    for (size_t i = 0; i < f->groups_len; i++) {
        v[i] = f->groups[(f->groups_head + i) & (f->groups_cap - 1)];
    }
    free(f->groups);
    f->groups = v;
    f->groups_cap = cap;
    f->groups_head = 0;
    return 0;
}

/*
 * Takes the groups whose outcome is known from the front, as runs of one
 * outcome into runs[] (at most max), and returns how many runs.
 * sink_file_write_lock held.
 */
struct run {
    size_t n;
    enum sink_outcome outcome;
};

static size_t
groups_take_locked(struct sink_file *f, struct run *runs, size_t max)
{
    size_t nruns = 0;

    while (f->groups_len > 0) {
        struct group *g = &f->groups[f->groups_head];
        enum sink_outcome outcome;

        if (g->is_lost) {
            outcome = SINK_RETRY;
        } else if (g->end <= f->synced) {
            outcome = SINK_STORED;
        } else {
            break;
        }
        if (nruns == 0 || runs[nruns - 1].outcome != outcome) {
            if (nruns == max) {
                break;
            }
            runs[nruns++] = (struct run){ .n = 0, .outcome = outcome };
        }
        runs[nruns - 1].n += g->n;
        f->groups_head = (f->groups_head + 1) & (f->groups_cap - 1);
        f->groups_len--;
    }
    return nruns;
}

/*
 * Reports the groups whose outcome is known, waiting for one at most
 * timeout_ms.  The consumer's thread.
 */
void
sink_file_groups_report(struct sink_file *f, int timeout_ms)
{
    struct run runs[8];
    struct timespec until;
    size_t nruns;

    util_deadline_ts(CLOCK_MONOTONIC, (uint64_t)timeout_ms, &until);
    pthread_mutex_lock(&sink_file_write_lock);
    while ((nruns = groups_take_locked(f, runs, sizeof(runs) / sizeof(runs[0]))) == 0 &&
           f->groups_len > 0 &&
           pthread_cond_timedwait(&durable_cond, &sink_file_write_lock, &until) != ETIMEDOUT) {
    }
    while (nruns > 0) {
        pthread_mutex_unlock(&sink_file_write_lock);
        for (size_t i = 0; i < nruns; i++) {
            f->done(f->arg, runs[i].n, runs[i].outcome, runs[i].outcome == SINK_RETRY ? -EIO : 0);
        }
        pthread_mutex_lock(&sink_file_write_lock);
        nruns = groups_take_locked(f, runs, sizeof(runs) / sizeof(runs[0]));
    }
    pthread_mutex_unlock(&sink_file_write_lock);
}

void
sink_file_groups_settle(struct sink_file *f)
{
    (void)sink_file_group_sync(f);
    pthread_mutex_lock(&sink_file_write_lock);
    for (size_t i = 0; i < f->groups_len; i++) {
        struct group *g = &f->groups[(f->groups_head + i) & (f->groups_cap - 1)];

        g->is_lost |= g->end > f->synced; /* not known durable: spilled */
    }
    pthread_mutex_unlock(&sink_file_write_lock);
    sink_file_groups_report(f, 0);
}

bool
sink_file_groups_have_lost_locked(const struct sink_file *f)
{
    for (size_t i = 0; i < f->groups_len; i++) {
        if (f->groups[(f->groups_head + i) & (f->groups_cap - 1)].is_lost) {
            return true;
        }
    }
    return false;
}

/*
 * Adds f, just opened on a file of size bytes, to the group-commit
 * instances (ack = stored, fsync = interval).  The consumer's thread.
 */
void
sink_file_groups_register(struct sink_file *f, off_t size)
{
    pthread_once(&durable_once, durable_init);
    pthread_mutex_lock(&sink_file_write_lock);
    f->is_registered = true;
    f->is_group_commit = f->is_regular;
    f->next_gc = group_commits;
    group_commits = f;
    sink_file_set_synced_locked(f, size);
    pthread_mutex_unlock(&sink_file_write_lock);
}

/* Removes f from the group-commit instances, if it is one.  The consumer's thread. */
void
sink_file_groups_unregister(struct sink_file *f)
{
    if (!f->is_registered) {
        return;
    }
    pthread_mutex_lock(&sink_file_write_lock);
    for (struct sink_file **p = &group_commits; *p; p = &(*p)->next_gc) {
        if (*p == f) {
            *p = f->next_gc;
            break;
        }
    }
    pthread_mutex_unlock(&sink_file_write_lock);
}
