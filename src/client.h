/*
 * client.h - what the parts of the zpipe client share: exit statuses and
 * error reporting on stderr.
 *
 * The client's modules print why they failed where they fail ("zpipe: push:
 * message 3: ERR ..."), as the user wants to read it, and return a negative
 * errno; zpipe.c alone turns that into an exit status.
 */
#ifndef ZPIPE_CLIENT_H
#define ZPIPE_CLIENT_H

/* zpipe's exit statuses besides EXIT_SUCCESS (see zpipe --help, man/zpipe.1). */
#define CLIENT_EXIT_ERROR 1
#define CLIENT_EXIT_USAGE 2

/*
 * client_complain prints "zpipe: MESSAGE" on stderr and, when status is
 * CLIENT_EXIT_USAGE, the --help hint; it returns status.  It writes with one
 * fprintf, which locks the stream, so lines from bench threads never
 * interleave.  Any thread may call it.
 */
int client_complain(int status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* client_fail reports an error; the caller decides the exit status. */
#define client_fail(...) ((void)client_complain(CLIENT_EXIT_ERROR, __VA_ARGS__))

/*
 * client_errstr describes errnum, a positive errno or libzmq error code.  The
 * text lives in a thread-local buffer until the thread's next call; any
 * thread may call it.
 */
const char *client_errstr(int errnum);

#endif
