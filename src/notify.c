/*
 * notify.c - sd_notify wrappers; see notify.h.  The #ifdef lives here only.
 */
#include "config.h"
#include "notify.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>

#ifdef HAVE_LIBSYSTEMD
#include <systemd/sd-daemon.h>
#endif

static void
notify_send(const char *state)
{
#ifdef HAVE_LIBSYSTEMD
    /* Failure to reach the manager is not ours to handle: the manager
     * times us out, which is the right outcome. */
    (void)sd_notify(0, state);
#else
    (void)state;
#endif
}

void
notify_ready(void)
{
    notify_send("READY=1");
}

void
notify_stopping(void)
{
    notify_send("STOPPING=1");
}

void
notify_watchdog(void)
{
    notify_send("WATCHDOG=1");
}

void
notify_extend_timeout(uint64_t usec)
{
    char buf[64];

    snprintf(buf, sizeof(buf), "EXTEND_TIMEOUT_USEC=%" PRIu64, usec);
    notify_send(buf);
}

void
notify_status(const char *fmt, ...)
{
    char buf[512] = "STATUS=";
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(buf + 7, sizeof(buf) - 7, fmt, ap);
    va_end(ap);
    notify_send(buf);
}

uint64_t
notify_watchdog_usec(void)
{
#ifdef HAVE_LIBSYSTEMD
    uint64_t usec = 0;

    if (sd_watchdog_enabled(0, &usec) > 0) {
        return usec;
    }
#endif
    return 0;
}
