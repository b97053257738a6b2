/*
 * notify.h - what zpiped tells its service manager.
 *
 * Intent, not protocol: each call maps to one sd_notify message and is a
 * no-op when not run by systemd ($NOTIFY_SOCKET unset) or built without
 * libsystemd.  Main thread only.
 */
#ifndef ZPIPE_NOTIFY_H
#define ZPIPE_NOTIFY_H

#include <stdint.h>

void notify_ready(void);
void notify_stopping(void);
void notify_watchdog(void);
void notify_extend_timeout(uint64_t usec);
void notify_status(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* notify_watchdog_usec returns the watchdog interval asked by systemd, or 0. */
uint64_t notify_watchdog_usec(void);

#endif
