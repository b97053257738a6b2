/*
 * zap.h - zpiped's ZAP handler (ZeroMQ RFC 27): the allow-list of CURVE
 * clients, answered on its own thread.
 *
 * libzmq asks the handler bound at inproc://zeromq.zap.01 in the socket's
 * context about every client that completes a CURVE handshake on a CURVE
 * input; it lets the client in only on status 200.  The handler answers 200
 * for public keys with a file in input.curve_allow and 400 for all others,
 * counts those (stats_curve_refused) and logs them, at most one line a
 * second, with the peer's address.  Inputs set and enforce the ZAP domain
 * (curve_server_setup), so while no handler is bound every client is
 * refused: a handler that is not running fails closed.
 */
#ifndef ZPIPE_ZAP_H
#define ZPIPE_ZAP_H

typedef struct zap zap_t;

/*
 * zap_start reads the allow-list directory allow_dir (borrowed, must outlive
 * the handler), binds inproc://zeromq.zap.01 in zctx and starts the
 * handler's thread; it returns once the endpoint is bound, so the inputs
 * bound after it never see a moment without a handler.  Returns 0 and *out,
 * or a negative errno after logging why.  Main thread.
 */
int zap_start(zap_t **out, void *zctx, const char *allow_dir);

/*
 * zap_reload asks the handler to read allow_dir again (SIGHUP).  It does so
 * on its own thread within 100 ms, then answers from the new list; if the
 * new list cannot be read (a malformed file, the directory gone) it logs why
 * and keeps the old one.  Connections already let in stay: the list is
 * asked at each handshake only.  Does not block.  Main thread.
 */
void zap_reload(zap_t *z);

/*
 * zap_stop stops and joins the handler's thread, which closes its socket,
 * and frees z.  Call after the inputs are closed and before the context is
 * terminated (zmq_ctx_term waits for every socket).  Accepts NULL.  Main
 * thread.
 */
void zap_stop(zap_t *z);

#endif
