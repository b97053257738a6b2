/*
 * sink_file_int.h - what the two files of the file sink share: the
 * instance, the lock that serialises writes, the torn-file state, and the
 * fdatasync side (sink_file_sync.c) that the write side (sink_file.c)
 * calls.  Internal to those two files and their unit test; the sink's
 * contract is sink.h, its design note the top of sink_file.c.
 */
#ifndef ZPIPE_SINK_FILE_INT_H
#define ZPIPE_SINK_FILE_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "conf.h"
#include "sink.h"

struct sink_file {
    sink_done_fn *done; /* outcomes, to the consumer */
    void *arg;
    char *path;
    int fd;
    bool is_regular; /* fsync and whole-record appends apply; sync_lock to change */
    dev_t dev;       /* the open file's identity, for the path check */
    ino_t ino;
    _Atomic bool is_dirty; /* written since the last fdatasync began */
    enum conf_format format;
    enum conf_fsync fsync;
    uint64_t fsync_interval_ms;
    uint64_t last_check_ms; /* util_now_ms() of the last path check */
    bool is_reopen_due;     /* the last reopen failed: retried at each path check */
    bool is_stale;          /* the path changed while groups were in flight: reopen after */
    bool is_tail_checked;   /* find_torn_tail_locked ran on this descriptor */
    struct iovec *iov;      /* scratch, iov_cap <= IOV_MAX entries */
    size_t iov_cap;
    unsigned char *stage; /* scratch: small frames, separators and headers, copied */
    size_t stage_cap;     /* <= STAGE_MAX */
    size_t stage_used;
    bool is_stage_open; /* the last iovec is in stage and may grow */
    const _Atomic bool *is_aborted; /* the drain deadline passed, or NULL */

    pthread_mutex_t sync_lock; /* syncs, and fd/is_regular changes: see above */
    pthread_mutex_t wake_lock; /* the syncer's wake-ups, never held across a sync */
    pthread_cond_t sync_cond;  /* wakes the syncer: a group waits, or stop */
    pthread_t syncer;
    bool has_syncer;
    bool is_syncer_stopping; /* wake_lock */
    bool is_group_due;       /* wake_lock: a group waits for a sync */
    /* errno of the first failed sync since the file was opened (sticky), and
     * whether an idle poll has reported it yet: see above */
    _Atomic int sync_err;
    _Atomic bool is_sync_err_reported;

    /* Group commit (ack = stored, fsync = interval, a regular file): see
     * "Group commit" above.  All under sink_file_write_lock. */
    bool is_registered; /* in group_commits (ack = stored, fsync = interval) */
    bool is_group_commit;
    struct group *groups; /* written, not yet reported: a FIFO */
    size_t groups_cap;    /* a power of two, or 0 */
    size_t groups_head;
    size_t groups_len;
    off_t synced;               /* bytes of the file known durable */
    struct sink_file *next_gc;  /* the next instance in group_commits */
};

/* A batch written and not yet known durable (group commit). */
struct group {
    size_t n;     /* messages */
    off_t end;    /* the file's size after it was written */
    bool is_lost; /* cut off by a failed sync: to be retried */
};

/* Serialises every instance's writes, truncates and fsync = always syncs,
 * and guards the group commit's state (sink_file.c, sink_file_sync.c). */
extern pthread_mutex_t sink_file_write_lock;

/* The file whose end holds a record cut short that could not be cut off
 * (sink_file.c, "Failed writes"); sink_file_write_lock. */
struct sink_file_torn {
    bool is_torn;
    dev_t dev;
    ino_t ino;
    off_t good_size; /* bytes: where the last whole record ends */
};
extern struct sink_file_torn sink_file_torn;

/* fdatasync(2), swapped by tests to inject failures. */
extern int (*sink_file_fdatasync)(int fd);

/* sink_file_tear_locked records that f's file must be cut back to
 * good_size bytes (a record cut short after them, or records not made
 * durable) before anything more is written to it.  sink_file_write_lock
 * held. */
void sink_file_tear_locked(const struct sink_file *f, off_t good_size);

/* sink_file_truncate_to cuts fd to size bytes.  Returns 0 or a negative errno. */
int sink_file_truncate_to(int fd, off_t size);

/* --- sink_file_sync.c; "the consumer" is the instance's consumer thread. */

/* sink_file_note_sync_error keeps the first sync failure of the open file
 * (sticky) for poll() and close to report. */
void sink_file_note_sync_error(struct sink_file *f, int err);

/* sink_file_sync_now syncs f if it is dirty, taking sync_lock.  Returns 0
 * or a negative errno (kept as the sticky error with fsync = interval). */
int sink_file_sync_now(struct sink_file *f);

/* sink_file_set_synced_locked sets what f, just (re)opened on a file of
 * size bytes, takes as durable.  sink_file_write_lock held. */
void sink_file_set_synced_locked(struct sink_file *f, off_t size);

/* sink_file_shrunk_locked tells the group commit that f's file was cut
 * back to size bytes (or found so): no instance takes more of it as
 * durable, and a sync measured before does not count.  sink_file_write_lock
 * held. */
void sink_file_shrunk_locked(const struct sink_file *f, off_t size);

/* sink_file_group_sync is one sync of the group commit: it settles every
 * group of every instance on f's file.  Returns 0 or the sync's negative
 * errno (logged).  The syncer, or the consumer at the drain deadline. */
int sink_file_group_sync(struct sink_file *f);

/* sink_file_syncer_start starts f's syncer thread (fsync = interval);
 * sink_file_syncer_stop stops and joins it, if it runs.  The consumer. */
int sink_file_syncer_start(struct sink_file *f);
void sink_file_syncer_stop(struct sink_file *f);

/* sink_file_wake_syncer wakes the syncer for a group that waits.  The consumer. */
void sink_file_wake_syncer(struct sink_file *f);

/* sink_file_groups_register adds f, just opened on a file of size bytes, to
 * the group-commit instances; sink_file_groups_unregister removes it, if it
 * is one.  The consumer. */
void sink_file_groups_register(struct sink_file *f, off_t size);
void sink_file_groups_unregister(struct sink_file *f);

/* sink_file_groups_reserve_locked makes room for one more group.  Returns 0
 * or -ENOMEM.  sink_file_write_lock held. */
int sink_file_groups_reserve_locked(struct sink_file *f);

/* sink_file_groups_have_lost_locked tells whether a failed sync cut off
 * one of f's groups that is not reported yet.  sink_file_write_lock held. */
bool sink_file_groups_have_lost_locked(const struct sink_file *f);

/* sink_file_groups_report reports the groups whose outcome is known,
 * waiting for one at most timeout_ms.  The consumer. */
void sink_file_groups_report(struct sink_file *f, int timeout_ms);

/* sink_file_groups_settle is the drain deadline's: one more sync, then
 * every group reported, SINK_RETRY where it is not known durable.  The
 * consumer. */
void sink_file_groups_settle(struct sink_file *f);

#endif
