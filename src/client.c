/*
 * client.c - the zpipe client's error reporting (see client.h).
 */
#include "config.h"

#include "client.h"

#include <stdarg.h>
#include <stdio.h>

#include "zmq_util.h"

int
client_complain(int status, const char *fmt, ...)
{
    char line[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    fprintf(stderr, "zpipe: %s\n%s", line,
            status == CLIENT_EXIT_USAGE ? "Try 'zpipe --help'.\n" : "");
    return status;
}

const char *
client_errstr(int errnum)
{
    static _Thread_local char buf[128];

    return zmq_util_strerror(errnum, buf, sizeof(buf));
}
