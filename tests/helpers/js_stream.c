/*
 * js_stream - JetStream chores for the tests and the benchmark of the nats
 * sink, on libnats (the same client library as the sink).
 *
 *   js_stream free-ports N                  N distinct free TCP ports on 127.0.0.1
 *   js_stream ready URLS                    exit 0 if JetStream answers (a cluster
 *                                           has its metadata leader), 1 if not
 *   js_stream create URLS STREAM SUBJECT [--replicas N] [--storage file|memory]
 *                                        [--dupe-window DURATION]
 *   js_stream delete URLS STREAM
 *   js_stream leader URLS STREAM            the server_name of the stream's leader
 *   js_stream count URLS STREAM             the number of messages it holds
 *   js_stream dump URLS STREAM [--raw]      every message, one line each
 *
 * URLS is one server URL or several joined by commas or spaces
 * (nats://127.0.0.1:4222,nats://127.0.0.1:4223).
 * create waits up to 60 s while the cluster cannot place the stream yet (no
 * metadata leader, peers still joining); DURATION is a number and a unit
 * (ms, s, m, h).  Defaults: 1 replica, file storage, a 2 minute window.
 *
 * dump reads the stream with an ordered consumer, from its first message to
 * the last one it held when dump started, and prints one line per message:
 *
 *   <Nats-Msg-Id or "-"> TAB <Zpipe-Parts or "-"> TAB <payload>
 *
 * The payload is in the escaped form of decode_records and zmq_client's
 * --records (bytes 0x20..0x7e as they are but '\' and '|', others \xHH).  A
 * message with Zpipe-Parts has a body in the binary record format: dump
 * prints its frames joined by '|', as decode_records would, or "BAD " and
 * the escaped body if it is not exactly one record of that many frames.
 * --raw prints the body escaped as it is.  So `cut -f3` of a dump compares
 * line for line with `zmq_client gen`.  On stderr, one line: the stream's
 * state when dump started (messages, first and last sequence, its leader).
 *
 * free-ports binds all N sockets before closing any, so the ports differ;
 * nothing stops another process from taking one afterwards, which a test
 * shares with every tool that picks a port this way.
 *
 * Exit status: 0 on success, 1 on failure (the reason on stderr), 2 on usage
 * errors.
 */
#include "config.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <nats/nats.h>

#define JS_WAIT_MS 10000
#define CREATE_DEADLINE_S 60

static void
usage(void)
{
    fprintf(stderr,
            "usage: js_stream free-ports N\n"
            "       js_stream ready URLS\n"
            "       js_stream create URLS STREAM SUBJECT [--replicas N]"
            " [--storage file|memory] [--dupe-window DURATION]\n"
            "       js_stream delete|leader|count URLS STREAM\n"
            "       js_stream dump URLS STREAM [--raw]\n");
    exit(2);
}

/* A count or a duration in milliseconds; exits on garbage. */
static int64_t
parse_num(const char *s, bool is_duration)
{
    char *end;
    long long v = strtoll(s, &end, 10);
    int64_t mult = 1;

    if (end == s || v < 0) {
        fprintf(stderr, "js_stream: bad number '%s'\n", s);
        exit(2);
    }
    if (is_duration) {
        if (strcmp(end, "ms") == 0) {
            mult = 1;
        } else if (strcmp(end, "s") == 0) {
            mult = 1000;
        } else if (strcmp(end, "m") == 0) {
            mult = 60 * 1000;
        } else if (strcmp(end, "h") == 0) {
            mult = 3600 * 1000;
        } else {
            fprintf(stderr, "js_stream: bad duration '%s' (ms, s, m, h)\n", s);
            exit(2);
        }
    } else if (*end != '\0') {
        fprintf(stderr, "js_stream: bad number '%s'\n", s);
        exit(2);
    }
    return (int64_t)v * mult;
}

static int
free_ports(int n)
{
    int fds[64];
    int i, rc = 0;

    if (n < 1 || n > 64) {
        usage();
    }
    for (i = 0; i < n; i++) {
        struct sockaddr_in sa = { .sin_family = AF_INET };
        socklen_t len = sizeof(sa);

        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        fds[i] = socket(AF_INET, SOCK_STREAM, 0);
        if (fds[i] < 0 || bind(fds[i], (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
            getsockname(fds[i], (struct sockaddr *)&sa, &len) != 0) {
            perror("js_stream: free-ports");
            rc = 1;
            i++;
            break;
        }
        printf("%u\n", (unsigned)ntohs(sa.sin_port));
    }
    while (i-- > 0) {
        if (fds[i] >= 0) {
            close(fds[i]);
        }
    }
    return rc;
}

/* Connects to URLS (no reconnection: each run is one short job) and makes
 * the JetStream context. */
static int
js_connect(const char *urls, int64_t wait_ms, natsConnection **nc, jsCtx **js)
{
    natsOptions *opts = NULL;
    const char *servers[16];
    char buf[2048];
    char *save = NULL, *tok;
    int n = 0;
    jsOptions jo;
    natsStatus s;

    /* natsOptions_SetURL takes one URL: the list goes in as servers. */
    snprintf(buf, sizeof(buf), "%s", urls);
    for (tok = strtok_r(buf, ", ", &save); tok && n < 16; tok = strtok_r(NULL, ", ", &save)) {
        servers[n++] = tok;
    }
    s = natsOptions_Create(&opts);
    if (s == NATS_OK) {
        s = natsOptions_SetServers(opts, servers, n);
    }
    if (s == NATS_OK) {
        s = natsOptions_SetTimeout(opts, 2000);
    }
    if (s == NATS_OK) {
        s = natsOptions_SetAllowReconnect(opts, false);
    }
    if (s == NATS_OK) {
        s = natsConnection_Connect(nc, opts);
    }
    natsOptions_Destroy(opts);
    if (s == NATS_OK) {
        jsOptions_Init(&jo);
        jo.Wait = wait_ms;
        s = natsConnection_JetStream(js, *nc, &jo);
    }
    if (s != NATS_OK) {
        fprintf(stderr, "js_stream: cannot connect to %s: %s\n", urls, natsStatus_GetText(s));
        natsConnection_Destroy(*nc);
        *nc = NULL;
        return 1;
    }
    return 0;
}

static void
report(const char *what, natsStatus s, jsErrCode jerr)
{
    fprintf(stderr, "js_stream: %s: %s (JetStream error %d)%s%s\n", what, natsStatus_GetText(s),
            (int)jerr, nats_GetLastError(NULL) ? ": " : "",
            nats_GetLastError(NULL) ? nats_GetLastError(NULL) : "");
}

static int
ready(jsCtx *js)
{
    jsAccountInfo *ai = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_GetAccountInfo(&ai, js, NULL, &jerr);

    if (s != NATS_OK) {
        report("account info", s, jerr);
        return 1;
    }
    jsAccountInfo_Destroy(ai);
    return 0;
}

static int
create(jsCtx *js, const char *stream, const char *subject, int argc, char **argv)
{
    jsStreamConfig cfg;
    jsStreamInfo *si = NULL;
    const char *subjects[1] = { subject };
    time_t deadline = time(NULL) + CREATE_DEADLINE_S;
    int i;

    jsStreamConfig_Init(&cfg);
    cfg.Name = stream;
    cfg.Subjects = subjects;
    cfg.SubjectsLen = 1;
    cfg.Storage = js_FileStorage;
    cfg.Replicas = 1;
    cfg.Duplicates = (int64_t)120 * 1000 * 1000 * 1000;
    for (i = 0; i < argc; i++) {
        if (i + 1 >= argc) {
            usage();
        }
        if (strcmp(argv[i], "--replicas") == 0) {
            cfg.Replicas = parse_num(argv[++i], false);
        } else if (strcmp(argv[i], "--storage") == 0) {
            i++;
            if (strcmp(argv[i], "file") == 0) {
                cfg.Storage = js_FileStorage;
            } else if (strcmp(argv[i], "memory") == 0) {
                cfg.Storage = js_MemoryStorage;
            } else {
                usage();
            }
        } else if (strcmp(argv[i], "--dupe-window") == 0) {
            cfg.Duplicates = parse_num(argv[++i], true) * 1000 * 1000;
        } else {
            usage();
        }
    }
    /* Right after the servers start, the cluster may have no metadata
     * leader yet or not know all its peers: such refusals pass. */
    for (;;) {
        jsErrCode jerr = 0;
        natsStatus s = js_AddStream(&si, js, &cfg, NULL, &jerr);

        if (s == NATS_OK) {
            jsStreamInfo_Destroy(si);
            return 0;
        }
        if (time(NULL) >= deadline ||
            (s != NATS_TIMEOUT && jerr != JSClusterNotAvailErr && jerr != JSClusterNoPeersErr &&
             jerr != JSInsufficientResourcesErr && s != NATS_NO_RESPONDERS)) {
            report("create", s, jerr);
            return 1;
        }
        nats_Sleep(200);
    }
}

static int
stream_info(jsCtx *js, const char *stream, jsStreamInfo **si)
{
    jsErrCode jerr = 0;
    natsStatus s = js_GetStreamInfo(si, js, stream, NULL, &jerr);

    if (s != NATS_OK) {
        report("stream info", s, jerr);
        return 1;
    }
    return 0;
}

/* Prints LEN bytes of P in the escaped form of decode_records. */
static void
put_escaped(const unsigned char *p, size_t len)
{
    size_t i;

    for (i = 0; i < len; i++) {
        if (p[i] >= 0x20 && p[i] <= 0x7e && p[i] != '\\' && p[i] != '|') {
            putchar(p[i]);
        } else {
            printf("\\x%02x", p[i]);
        }
    }
}

static uint32_t
get_be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* True if P..P+LEN is exactly one binary record of PARTS frames. */
static bool
is_record(const unsigned char *p, size_t len, long parts)
{
    size_t off = 0;
    long n = 0;

    for (;;) {
        uint32_t hdr;
        size_t flen;

        if (len - off < 4) {
            return false;
        }
        hdr = get_be32(p + off);
        flen = hdr & 0x7fffffffu;
        off += 4;
        if (len - off < flen) {
            return false;
        }
        off += flen;
        n++;
        if (!(hdr & 0x80000000u)) {
            return off == len && n == parts;
        }
    }
}

/* Prints the frames of a record checked by is_record, joined by '|'. */
static void
put_record(const unsigned char *p, size_t len)
{
    size_t off = 0;

    while (off < len) {
        uint32_t hdr = get_be32(p + off);
        size_t flen = hdr & 0x7fffffffu;

        put_escaped(p + off + 4, flen);
        off += 4 + flen;
        if (hdr & 0x80000000u) {
            putchar('|');
        }
    }
}

static void
put_msg(natsMsg *m, bool is_raw)
{
    const char *id = NULL, *parts = NULL;
    const unsigned char *body = (const unsigned char *)natsMsg_GetData(m);
    size_t len = (size_t)natsMsg_GetDataLength(m);

    natsMsgHeader_Get(m, "Nats-Msg-Id", &id);
    natsMsgHeader_Get(m, "Zpipe-Parts", &parts);
    printf("%s\t%s\t", id ? id : "-", parts ? parts : "-");
    if (parts && !is_raw) {
        if (is_record(body, len, strtol(parts, NULL, 10))) {
            put_record(body, len);
        } else {
            fputs("BAD ", stdout);
            put_escaped(body, len);
        }
    } else {
        put_escaped(body, len);
    }
    putchar('\n');
}

static int
dump(jsCtx *js, const char *stream, bool is_raw)
{
    jsStreamInfo *si = NULL;
    natsSubscription *sub = NULL;
    jsSubOptions so;
    natsStatus s;
    uint64_t last;
    int rc = 1;

    if (stream_info(js, stream, &si) != 0) {
        return 1;
    }
    last = si->State.LastSeq;
    fprintf(stderr, "js_stream: dump of %s: %llu messages, seq %llu..%llu, leader %s\n", stream,
            (unsigned long long)si->State.Msgs, (unsigned long long)si->State.FirstSeq,
            (unsigned long long)last,
            si->Cluster && si->Cluster->Leader ? si->Cluster->Leader : "-");
    if (si->State.Msgs == 0) {
        rc = 0;
        goto out;
    }
    jsSubOptions_Init(&so);
    so.Stream = stream;
    so.Ordered = true;
    s = js_SubscribeSync(&sub, js, si->Config->Subjects[0], NULL, &so, NULL);
    if (s != NATS_OK) {
        report("subscribe", s, 0);
        goto out;
    }
    for (;;) {
        natsMsg *m = NULL;
        jsMsgMetaData *meta = NULL;
        uint64_t seq;

        s = natsSubscription_NextMsg(&m, sub, JS_WAIT_MS);
        if (s != NATS_OK) {
            report("next message", s, 0);
            goto out;
        }
        if (natsMsg_GetMetaData(&meta, m) != NATS_OK) {
            natsMsg_Destroy(m);
            fprintf(stderr, "js_stream: a message without JetStream metadata\n");
            goto out;
        }
        seq = meta->Sequence.Stream;
        jsMsgMetaData_Destroy(meta);
        put_msg(m, is_raw);
        natsMsg_Destroy(m);
        if (seq >= last) {
            break;
        }
    }
    rc = 0;
out:
    natsSubscription_Destroy(sub);
    jsStreamInfo_Destroy(si);
    if (fflush(stdout) != 0) {
        perror("js_stream: stdout");
        rc = 1;
    }
    return rc;
}

int
main(int argc, char **argv)
{
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    static char outbuf[1 << 16];
    const char *cmd;
    int rc = 1;

    if (argc < 3) {
        usage();
    }
    cmd = argv[1];
    if (strcmp(cmd, "free-ports") == 0) {
        return free_ports((int)parse_num(argv[2], false));
    }
    if (strcmp(cmd, "ready") != 0 && argc < 4) {
        usage();
    }
    setvbuf(stdout, outbuf, _IOFBF, sizeof(outbuf));
    /* ready is polled: it must not wait long for an answer. */
    if (js_connect(argv[2], strcmp(cmd, "ready") == 0 ? 1000 : JS_WAIT_MS, &nc, &js) != 0) {
        return 1;
    }
    if (strcmp(cmd, "ready") == 0) {
        rc = ready(js);
    } else if (strcmp(cmd, "create") == 0) {
        if (argc < 5) {
            usage();
        }
        rc = create(js, argv[3], argv[4], argc - 5, argv + 5);
    } else if (strcmp(cmd, "delete") == 0) {
        jsErrCode jerr = 0;
        natsStatus s = js_DeleteStream(js, argv[3], NULL, &jerr);

        rc = 0;
        if (s != NATS_OK && jerr != JSStreamNotFoundErr) {
            report("delete", s, jerr);
            rc = 1;
        }
    } else if (strcmp(cmd, "leader") == 0 || strcmp(cmd, "count") == 0) {
        jsStreamInfo *si = NULL;

        rc = stream_info(js, argv[3], &si);
        if (rc == 0 && cmd[0] == 'l') {
            printf("%s\n", si->Cluster && si->Cluster->Leader ? si->Cluster->Leader : "");
        } else if (rc == 0) {
            printf("%llu\n", (unsigned long long)si->State.Msgs);
        }
        jsStreamInfo_Destroy(si);
    } else if (strcmp(cmd, "dump") == 0) {
        rc = dump(js, argv[3], argc > 4 && strcmp(argv[4], "--raw") == 0);
    } else {
        usage();
    }
    fflush(stdout);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    nats_Close();
    return rc;
}
