/*
 * ref_pull - the reference receiver of scripts/bench: the ceiling zpiped is
 * measured against.  It binds one PULL socket (ZMQ_RCVHWM 1000, zpiped's
 * default), receives COUNT messages (every frame of each) and exits.  Nothing
 * is stored, parsed or counted beyond the message count.
 *
 *   ref_pull ENDPOINT COUNT [READY_FILE]
 *
 * Once bound it creates READY_FILE (if given), so a script can start the
 * load only when the socket is there.  At the end it prints one line: the
 * count, its own CPU seconds (user + system) and its peak RSS in KiB, since
 * it exits before a script could read them from /proc.  If no message comes
 * for 30 s it gives up: exit 1, saying how many it received.  With
 * ZP_REF_CURVE_SECRET set it is a CURVE server (ref_curve.h).
 * Exit status 0, or 1 on an error.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include <zmq.h>

#include "ref_curve.h"

int
main(int argc, char **argv)
{
    if (argc < 3 || argc > 4) {
        fprintf(stderr, "usage: ref_pull ENDPOINT COUNT [READY_FILE]\n");
        return 2;
    }
    const char *endpoint = argv[1];
    char *end;
    errno = 0;
    unsigned long long count = strtoull(argv[2], &end, 10);
    if (errno != 0 || *end != '\0' || end == argv[2]) {
        fprintf(stderr, "ref_pull: invalid count '%s'\n", argv[2]);
        return 2;
    }

    void *ctx = zmq_ctx_new();
    void *sock = ctx ? zmq_socket(ctx, ZMQ_PULL) : NULL;
    if (!sock) {
        fprintf(stderr, "ref_pull: zmq: %s\n", zmq_strerror(zmq_errno()));
        return 1;
    }
    int hwm = 1000, linger = 0, timeout_ms = 30000;
    zmq_setsockopt(sock, ZMQ_RCVHWM, &hwm, sizeof(hwm));
    zmq_setsockopt(sock, ZMQ_RCVTIMEO, &timeout_ms, sizeof(timeout_ms));
    zmq_setsockopt(sock, ZMQ_LINGER, &linger, sizeof(linger));
    if (ref_curve_server(sock, "ref_pull") != 0) {
        return 1;
    }
    if (zmq_bind(sock, endpoint) != 0) {
        fprintf(stderr, "ref_pull: bind %s: %s\n", endpoint, zmq_strerror(zmq_errno()));
        return 1;
    }
    if (argc == 4) {
        FILE *f = fopen(argv[3], "w");
        if (!f || fclose(f) != 0) {
            fprintf(stderr, "ref_pull: %s: %s\n", argv[3], strerror(errno));
            return 1;
        }
    }

    zmq_msg_t msg;
    zmq_msg_init(&msg);
    unsigned long long received = 0;
    while (received < count) {
        if (zmq_msg_recv(&msg, sock, 0) < 0) {
            if (zmq_errno() == EINTR) {
                continue;
            }
            fprintf(stderr, "ref_pull: recv: %s (%llu of %llu messages received)\n",
                    zmq_strerror(zmq_errno()), received, count);
            return 1;
        }
        if (!zmq_msg_more(&msg)) {
            received++;
        }
    }
    zmq_msg_close(&msg);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("%llu %.3f %ld\n", received,
           (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
               (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6,
           ru.ru_maxrss);
    zmq_close(sock);
    zmq_ctx_term(ctx);
    return 0;
}
