/*
 * daemon.h - zpiped's lifecycle: start, readiness, drain, exit status.
 */
#ifndef ZPIPE_DAEMON_H
#define ZPIPE_DAEMON_H

#include "conf.h"

/* Exit statuses of zpiped (documented in README.md). */
enum daemon_exit {
    DAEMON_EXIT_OK = 0,      /* every accepted message delivered (or spilled) */
    DAEMON_EXIT_FAILURE = 1, /* could not start: config, bind, sink, resources */
    DAEMON_EXIT_USAGE = 2,   /* bad command line */
    DAEMON_EXIT_LOST = 3,    /* accepted messages unaccounted for: see the log */
};

/*
 * daemon_signals_block blocks SIGTERM, SIGINT and SIGHUP in the calling
 * thread.  main() calls it first thing, so that a signal sent while zpiped
 * starts up waits (pending) instead of killing it with the default action;
 * daemon_run unblocks them once its loop catches them, and the pending one
 * is then handled as usual (TERM/INT: drain, HUP: reopen).
 */
void daemon_signals_block(void);

/*
 * daemon_run starts the pipeline described by cfg (borrowed), sends READY=1
 * once every socket is bound and every sink is open, runs the main loop
 * until a SIGTERM/SIGINT drain completes, tears everything down and returns
 * the exit status.  Main thread only; call once.
 */
enum daemon_exit daemon_run(const struct conf *cfg);

#endif
