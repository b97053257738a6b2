/*
 * heartbeat.c - worker check-ins for the systemd watchdog; see heartbeat.h.
 *
 * A fixed table of slots.  Registration and removal happen on the main
 * thread only; workers only store their own slot's timestamp, and the main
 * thread reads all of them.  last_ms == 0 marks a free slot.
 */
#include "config.h"
#include "heartbeat.h"

#include <stdio.h>

#include "util.h"

static struct heartbeat slots[HEARTBEAT_MAX];
static _Thread_local struct heartbeat *self; /* the calling thread's slot, or NULL */

struct heartbeat *
heartbeat_register(const char *name)
{
    for (size_t i = 0; i < HEARTBEAT_MAX; i++) {
        struct heartbeat *hb = &slots[i];

        if (atomic_load_explicit(&hb->last_ms, memory_order_relaxed) == 0) {
            snprintf(hb->name, sizeof(hb->name), "%s", name);
            atomic_store_explicit(&hb->last_ms, util_now_ms(), memory_order_relaxed);
            return hb;
        }
    }
    return NULL;
}

void
heartbeat_unregister(struct heartbeat *hb)
{
    if (hb) {
        atomic_store_explicit(&hb->last_ms, 0, memory_order_relaxed);
    }
}

void
heartbeat_beat(struct heartbeat *hb)
{
    /* The clock is read on every worker iteration: monotonic ms is plenty. */
    if (hb) {
        atomic_store_explicit(&hb->last_ms, util_now_ms(), memory_order_relaxed);
    }
}

void
heartbeat_set_self(struct heartbeat *hb)
{
    self = hb;
}

void
heartbeat_beat_self(void)
{
    heartbeat_beat(self);
}

bool
heartbeat_all_fresh(uint64_t max_age_ms, const char **stale)
{
    uint64_t now = util_now_ms();

    for (size_t i = 0; i < HEARTBEAT_MAX; i++) {
        uint64_t last = atomic_load_explicit(&slots[i].last_ms, memory_order_relaxed);

        if (last != 0 && now > last && now - last > max_age_ms) {
            if (stale) {
                *stale = slots[i].name;
            }
            return false;
        }
    }
    return true;
}
