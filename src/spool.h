/*
 * spool.h - spill files: what the drain could not deliver before
 * drain_timeout, written to spool_dir, and replayed into the queue on the
 * next start.
 *
 * One daemon per spool_dir: zpiped locks the directory (flock on the
 * directory itself) for its lifetime, and a second one refuses to start.
 * Replay reads every spill file it finds, so two daemons on one spool_dir
 * would each deliver the same records.
 *
 * A spill file (format version 2) begins with an 8-byte magic, "\xffZPS"
 * and the version as a 4-byte big-endian number, and then holds one record
 * per message: its identity and receive time (origin, seq, received_ms, as
 * 8-byte big-endian numbers; msg.h) and then the message in the binary
 * record format (msg.h).  Replay keeps those identities.  Version 1 files,
 * written before messages had identities, are binary records from the first
 * byte; they are still replayed, each message getting a new identity.
 * Each consumer prepares its spill file when it starts: an unnamed
 * file in spool_dir (O_TMPFILE; where the file system has none, a file
 * named ".spill-*.tmp"), so spilling at the deadline needs no new file
 * descriptor and the start fails on a spool_dir it cannot write to.  At
 * commit the file is fsynced, then linked to its final name
 * ("spill-<ms since epoch>-<pid>-<tag>-<n>.zps") and the directory fsynced,
 * so a crash mid-spill never leaves a half file under a name that replay
 * reads; an unused unnamed file vanishes with its descriptor.  Replay reads
 * the final names in name order (oldest first), regular files only (never
 * through a symbolic link, never blocking on a FIFO), and ignores everything
 * else.
 *
 * Exactly once.  A record counts as spilled only once the writer wrote it
 * whole (a failed write is cut back; if it cannot be, the writer takes no
 * more), and the file appears under a name replay reads only complete and
 * fsynced.  A spill file is deleted only after every one of its records is
 * stored, or spilled again durably, and the replay thread stops only
 * between files (it finishes the file it is on; its pushes always complete,
 * because consumers empty the queue until it is closed, and the queue is
 * closed only after the replay thread is joined).  The lock keeps any other
 * daemon from reading the same files.  So a clean stop never replays a
 * record twice.  A crash (kill -9, power cut) before the file was deleted
 * replays it again on the next start, the records already stored too: that
 * window is at-least-once, and no record of it is lost.  So is a spill
 * that fails at the drain: the file stays, and its messages are replayed
 * again rather than lost.
 *
 * A truncated or corrupt spill file, or one that cannot be read to its end:
 * its valid leading records are replayed, the log names the path and the
 * offset of the first bad byte, and the whole file is renamed to NAME.bad
 * (never deleted; its first OFFSET bytes are the records that were
 * replayed, so do not replay it by hand as is).  A spill-*.zps name that is
 * not a regular file (a symlink, a FIFO) is logged and renamed to NAME.bad
 * unread.
 *
 * Dead letters (messages a downstream zpiped refused, see the dealer zmq
 * sink) are written by the same writer as bare binary records (no magic,
 * no identities: the format of a binary file sink), under names
 * replay never reads: "deadletter-<ms since epoch>-<pid>-<n>.zpd".  Their
 * file stays open while refusals come, and each batch of them is made
 * durable with spool_writer_sync() before it counts.
 */
#ifndef ZPIPE_SPOOL_H
#define ZPIPE_SPOOL_H

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>

#include "conf.h"
#include "msg.h"
#include "queue.h"

/*
 * spool_dir_create creates dir and its missing parents with mode 0750 (like
 * mkdir -p).  Returns 0 (also when it exists) or a negative errno.  Any
 * thread; blocks on the file system.
 */
int spool_dir_create(const char *dir);

/* spool_dir_lock's result when another process holds the lock. */
#define SPOOL_LOCKED (-EWOULDBLOCK)

/*
 * spool_dir_lock creates dir (spool_dir_create), locks it for this process
 * and checks that a spill file can be created in it.  Returns 0 and in
 * *fd_out the descriptor that holds the lock (close it to let go, or let
 * the process end), SPOOL_LOCKED when another process holds it, or another
 * negative errno (-EACCES: not writable).  Main thread, at start.
 */
int spool_dir_lock(const char *dir, int *fd_out);

/* ------------------------------------------------------------- writing */

typedef struct spool_writer spool_writer_t;

/*
 * spool_writer_open prepares a new, still unnamed spill file in dir
 * (borrowed; copied) and everything adding records to it needs, so that
 * spool_writer_add() and spool_writer_commit() open no descriptor and
 * allocate nothing.  tag (borrowed; up to 15 bytes are used) goes into the
 * final name (e.g. "c0" for consumer 0).  Returns 0 and *out, or a negative
 * errno.  Any thread; one writer is used by one thread.
 */
int spool_writer_open(spool_writer_t **out, const char *dir, const char *tag);

/*
 * spool_writer_open_dead_letter is spool_writer_open() for a dead-letter
 * file: its final name is "deadletter-<ms>-<pid>-<n>.zpd", which replay
 * never reads (spool_is_spill_name() is false for it).
 */
int spool_writer_open_dead_letter(spool_writer_t **out, const char *dir);

/*
 * spool_writer_add appends m (borrowed) as one record.  Returns 0, or a
 * negative errno, in which case m is not in the file: the file is cut back
 * to where it was, so the records added before stay valid.  If it cannot
 * be cut back, the writer is broken (spool_writer_is_broken()) and every
 * later add fails with -EIO; the records added before are still committed.
 * Blocks on I/O.
 */
int spool_writer_add(spool_writer_t *w, const struct msg *m);

/* spool_writer_count returns how many records were added. */
uint64_t spool_writer_count(const spool_writer_t *w);

/* spool_writer_is_broken returns true once w takes no more records. */
bool spool_writer_is_broken(const spool_writer_t *w);

/*
 * spool_writer_sync makes every record added so far durable, under the
 * final name: the first sync links the file to it and fsyncs the directory,
 * each one fdatasyncs the file.  Returns 0 (also with nothing new to sync),
 * or a negative errno (logged): then the records added since the last
 * successful sync are not durable and are cut off the file, and
 * spool_writer_count() no longer counts them; if they cannot be cut off,
 * the writer is broken, as after a failed spool_writer_add().  Blocks on I/O.
 */
int spool_writer_sync(spool_writer_t *w);

/*
 * spool_writer_name returns the file's final name in dir (borrowed from w)
 * once it has it (after spool_writer_sync()), else NULL.
 */
const char *spool_writer_name(const spool_writer_t *w);

/*
 * spool_writer_commit fsyncs the file, links it to its final name, fsyncs
 * the directory and frees w.  With no record added, the file is dropped
 * instead (spool_writer_discard()).  Returns 0, or a negative errno (logged;
 * the records are then not spilled; a file that could not be synced is left
 * as ".spill-*.tmp" for a human, never replayed).  After a
 * spool_writer_sync(), it is that sync (for the records added since) and
 * frees w.  Accepts NULL (returns 0).
 */
int spool_writer_commit(spool_writer_t *w);

/* spool_writer_discard drops w's file and frees w. Accepts NULL. */
void spool_writer_discard(spool_writer_t *w);

/*
 * A dead-letter file kept by a sink for the messages it will never deliver
 * (a downstream refused them, or they are too large for it): opened on the
 * first one, made durable batch by batch, and started anew after a record
 * could not be cut back.  Plain data the sink embeds; fill it with
 * spool_dead_letter_init().  One thread uses it.
 */
struct spool_dead_letter {
    spool_writer_t *w; /* the file, or NULL before the first message */
    const char *dir;   /* spool_dir (borrowed) */
    const char *who;   /* the log lines' prefix, e.g. "sink zmq" (borrowed) */
    const char *what;  /* what goes to the file, e.g. "messages refused downstream" */
};

/* spool_dead_letter_init fills dl; who and what are for the log (all borrowed). */
void spool_dead_letter_init(struct spool_dead_letter *dl, const char *dir, const char *who,
                            const char *what);

/*
 * spool_dead_letter_add appends m (borrowed) to dl's file, opening one
 * first if needed (spool_writer_open_dead_letter()).  The record counts
 * only after the next successful spool_dead_letter_sync().  Returns 0 or a
 * negative errno (logged; m is not in the file).  Blocks on I/O.
 */
int spool_dead_letter_add(struct spool_dead_letter *dl, const struct msg *m);

/*
 * spool_dead_letter_sync makes the records added since the last call
 * durable (spool_writer_sync()); the first time the file gets its name,
 * that name is logged.  Returns 0 (also with nothing to sync), or a
 * negative errno: then those records are cut off the file again, and the
 * caller keeps their messages to add them again later.  A file that could
 * not be cut back is closed (its synced records stay) and the next add
 * starts a new one, so a torn record is never followed by another.
 */
int spool_dead_letter_sync(struct spool_dead_letter *dl);

/*
 * spool_dead_letter_fini closes dl's file.  Every record counted was synced
 * by spool_dead_letter_sync(): nothing more becomes durable here.
 */
void spool_dead_letter_fini(struct spool_dead_letter *dl);

/* --------------------------------------------------------------- replay */

/*
 * The callback spool_replay_file hands each decoded record to; it takes m
 * (returns 0) or returns a negative errno, and then the caller still owns m
 * and the file is left as it is.
 */
typedef int spool_push_fn(void *arg, struct msg *m);

/* A spill file replayed, or being replayed: on a list that its replay owns. */
struct spool_replay_file;

/*
 * spool_replay_file decodes dir/name and pushes every record through push,
 * in order, adding each pushed one to *pushed.  Each pushed message carries
 * the file's ack (m->ack): once all records are pushed and each of them is
 * told stored (msg_ack_stored(), on any thread: stored by the sink, or
 * spilled again durably), the file is deleted (and the directory fsynced),
 * by whichever call comes last.  A truncated or corrupt file, a record over
 * max_size payload bytes, or a read error: the valid records before it are
 * pushed, the path and offset are logged, and the file is renamed to
 * NAME.bad instead (once they are stored).  Not a regular file: logged and
 * renamed unread.  The file's state goes on *files (a list; dir is
 * borrowed and must outlive it) and is freed by spool_replay_files_free()
 * once no message pushed from it is left.  Memory: a buffer of the largest
 * record read (64 KiB at least).  Returns 0 when the file was read to its
 * end (or is damaged), or a negative errno: the file stays, to be replayed
 * whole next time.  Blocks on I/O and in push, never on opening.
 */
int spool_replay_file(const char *dir, const char *name, size_t max_size, spool_push_fn *push,
                      void *arg, uint64_t *pushed, struct spool_replay_file **files);

/* spool_replay_files_free frees a list that spool_replay_file() filled. Accepts NULL. */
void spool_replay_files_free(struct spool_replay_file *list);

/* spool_is_spill_name returns true for the names replay reads. */
bool spool_is_spill_name(const char *name);

typedef struct spool_replay spool_replay_t;

/* Called from the replay thread when it exits (see consumer_exit_fn). */
typedef void spool_exit_fn(void *arg);

/*
 * spool_replay_start starts the replay thread: it lists cfg's spool_dir once
 * (files spilled after that, by this run's drain, are left for the next
 * start), and replays the spill files in name order into q.  cfg and q are
 * borrowed and must outlive the replay; on_exit(arg) is called from the
 * thread as it exits.  Returns 0 and *out, or a negative errno.  Main
 * thread only.  The queue must not be closed before spool_replay_join().
 */
int spool_replay_start(spool_replay_t **out, const struct conf *cfg, queue_t *q,
                       spool_exit_fn *on_exit, void *arg);

/* spool_replay_stop asks the thread to stop after the file it is on. Main thread. */
void spool_replay_stop(spool_replay_t *r);

/* spool_replay_is_running returns true until the thread has exited. Any thread. */
bool spool_replay_is_running(spool_replay_t *r);

/* spool_replay_count returns how many records were queued so far. Any thread. */
uint64_t spool_replay_count(spool_replay_t *r);

/* spool_replay_join joins the thread (it exits by itself when done or stopped). Main thread. */
void spool_replay_join(spool_replay_t *r);

/*
 * spool_replay_destroy frees a joined replay, once no message it queued is
 * left (after the consumers are joined).  Accepts NULL.
 */
void spool_replay_destroy(spool_replay_t *r);

#endif
