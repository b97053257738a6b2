/*
 * sockact.h - socket activation: listening sockets passed by systemd.
 *
 * Started by a socket unit (zpiped.socket), zpiped inherits its input
 * sockets already bound and listening (the sd_listen_fds protocol:
 * LISTEN_PID, LISTEN_FDS, fds 3..3+N-1).  sockact_take() takes them once,
 * early in main(), and matches each to the input endpoint it serves by its
 * getsockname() address; a producer then asks sockact_fd() for its endpoint
 * and hands the fd to libzmq (ZMQ_USE_FD) instead of binding.  Endpoints
 * without an inherited socket are bound as usual.
 *
 * Matching: ipc://PATH by the socket's path (ipc://@NAME: the abstract
 * name); tcp://ADDRESS:PORT by a numeric address and the port, and
 * tcp://STAR:PORT (STAR is "*") by the port of a socket bound to the
 * any-address (IPv4 or IPv6).  An endpoint naming an interface or a
 * wildcard port matches no socket.
 */
#ifndef ZPIPE_SOCKACT_H
#define ZPIPE_SOCKACT_H

#include <stddef.h>

#include "conf.h"

/* Room for an error message of sockact_match(). */
#define SOCKACT_ERR_MAX 512

/*
 * sockact_take takes the sockets passed by the service manager (none when
 * LISTEN_PID is not this process), removes LISTEN_PID, LISTEN_FDS and
 * LISTEN_FDNAMES from the environment, and matches every socket to one of
 * cfg's input endpoints.  Returns the number of sockets taken (0 when not
 * socket-activated), or a negative errno after logging why: a socket that
 * matches no endpoint, two for one endpoint, or one that is not a
 * listening stream socket.  cfg must outlive the taken sockets.  Main
 * thread, once, before any other thread starts.
 */
int sockact_take(const struct conf *cfg);

/*
 * sockact_fd returns the inherited socket for input endpoint (one of
 * cfg->input_endpoints), or -1 when it has none.  The fd belongs to the
 * caller from then on (libzmq closes it with the socket it is given to).
 * Any thread started after sockact_take().
 */
int sockact_fd(const char *endpoint);

/* sockact_fini forgets the sockets (does not close them).  Main thread. */
void sockact_fini(void);

/*
 * sockact_match matches the n listening sockets fds to the endpoints of
 * list: out[i] is the fd for list->items[i], or -1.  Returns 0, or a
 * negative errno with the reason in err.  No side effects on the fds.
 * Exposed for the unit test.
 */
int sockact_match(const struct conf_list *list, const int *fds, size_t n, int *out, char *err,
                  size_t errlen);

#endif
