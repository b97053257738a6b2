/*
 * heartbeat.h - worker check-ins for the systemd watchdog.
 *
 * Each worker thread owns a slot and calls heartbeat_beat() on every loop
 * iteration and after every (bounded) wait.  The main thread sends
 * WATCHDOG=1 only while heartbeat_all_fresh() holds, so one stuck worker
 * stops the pings and systemd restarts the service.
 */
#ifndef ZPIPE_HEARTBEAT_H
#define ZPIPE_HEARTBEAT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

struct heartbeat {
    _Atomic uint64_t last_ms; /* util_now_ms() of the last check-in; 0 = not registered */
    char name[32];            /* for the log: "producer 0", "consumer 1" */
};

/*
 * heartbeat_register takes a free slot for a thread about to start, marks it
 * fresh, and returns it; NULL if every slot is taken (HEARTBEAT_MAX).
 * Main thread only.
 */
#define HEARTBEAT_MAX 256
struct heartbeat *heartbeat_register(const char *name);

/* heartbeat_unregister frees the slot of a joined thread. Main thread only. Accepts NULL. */
void heartbeat_unregister(struct heartbeat *hb);

/* heartbeat_beat records a check-in. The owning thread only; lock-free. */
void heartbeat_beat(struct heartbeat *hb);

/*
 * heartbeat_set_self makes hb (or NULL) the calling thread's own slot, for
 * code that waits on the thread's behalf without knowing it (a sink waiting
 * on a full FIFO).  Call it on the owning thread, before such code runs.
 */
void heartbeat_set_self(struct heartbeat *hb);

/* heartbeat_beat_self records a check-in of the calling thread's own slot, if it set one. */
void heartbeat_beat_self(void);

/*
 * heartbeat_all_fresh returns true when every registered slot checked in
 * within max_age_ms; otherwise false, and *stale names the first stale slot.
 */
bool heartbeat_all_fresh(uint64_t max_age_ms, const char **stale);

#endif
