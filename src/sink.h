/*
 * sink.h - where consumers deliver messages.
 *
 * A sink kind is a table of operations, one file each (sink_file.c,
 * sink_null.c), chosen by name at start.  Each consumer thread opens its own
 * instance on its own thread and is the only thread that ever uses it, so
 * sinks need no locking of their own state.
 *
 * Errors are negative errnos.  write() is all-or-nothing from the caller's
 * point of view: 0 means every message of the batch is delivered (and, for
 * fsync = always, on stable storage); on error none of the batch counts as
 * delivered, and the sink has undone any partial write, so the consumer may
 * retry the whole batch.
 */
#ifndef ZPIPE_SINK_H
#define ZPIPE_SINK_H

#include <stddef.h>

#include "conf.h"
#include "msg.h"

struct sink_ops {
    const char *name;
    /* open makes a new instance for the calling thread in *state. */
    int (*open)(const struct conf *cfg, void **state);
    /* write delivers batch[0..n); the messages stay the caller's. */
    int (*write)(void *state, struct msg *const *batch, size_t n);
    /* flush makes what was written durable if the sink's policy calls for it
     * now (e.g. fsync = interval and the interval has passed); force = 1
     * makes it durable regardless of the interval (at close, at drain). */
    int (*flush)(void *state, int force);
    /* reopen closes and reopens the underlying resource (SIGHUP). */
    int (*reopen)(void *state);
    /* close flushes (force) and frees the instance. Accepts NULL. */
    void (*close)(void *state);
};

extern const struct sink_ops sink_file_ops;
extern const struct sink_ops sink_null_ops;

/* sink_find returns the operations for kind, or NULL if this build has none. */
const struct sink_ops *sink_find(enum conf_sink kind);

#endif
