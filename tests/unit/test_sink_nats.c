/*
 * test_sink_nats.c - the nats sink against a real nats-server with
 * JetStream, started by the test on a loopback port picked at run time,
 * its store in a temporary directory (skipped when nats-server is not
 * installed).  Messages and their headers in the stream, the window, a
 * batch published again stored once, no stream, an ack that times out, the
 * drain deadline, a server down at open, a server killed with messages
 * in flight, and messages too large for the server's max_payload or for
 * the stream's max_msg_size.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nats/nats.h>

#include "../../src/sink_nats.c"
#include "../../src/spool.c" /* to inject fdatasync failures */
#include "tap.h"

#define STREAM "ZT"

static const char *stream = STREAM; /* the stream the checks read */

static char dir[] = "/tmp/zpipe-test-nats-XXXXXX";
static char server_bin[512];
static char url[64];
static int port;
static pid_t server = -1;
static const char *token; /* the server's --auth, in url too; or NULL */
static const char *server_conf; /* the server's config file, or NULL */

struct outcomes {
    size_t stored;
    size_t retried;
    int last_err;
};

static void
record(void *arg, size_t n, enum sink_outcome outcome, int err)
{
    struct outcomes *o = arg;

    if (outcome == SINK_STORED) {
        o->stored += n;
    } else {
        o->retried += n;
        o->last_err = err;
    }
}

static struct conf cfg;
static struct sink_env env = { .cfg = &cfg };
static const struct sink_ops *ops = &sink_nats_ops;

/* find_server looks for nats-server in PATH, then in /usr/sbin. */
static bool
find_server(void)
{
    const char *path = getenv("PATH");
    char buf[4096];

    snprintf(buf, sizeof(buf), "%s:/usr/sbin:/usr/local/sbin", path != NULL ? path : "/usr/bin");
    for (char *save = NULL, *d = strtok_r(buf, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
        snprintf(server_bin, sizeof(server_bin), "%s/nats-server", d);
        if (access(server_bin, X_OK) == 0) {
            return true;
        }
    }
    return false;
}

/* free_port returns a loopback TCP port nobody listens on now. */
static int
free_port(void)
{
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) < 0) {
        bail_out("free_port: %s", strerror(errno));
    }
    close(fd);
    return ntohs(a.sin_port);
}

/* server_start starts nats-server -js on port and waits until it takes a client. */
static bool
server_start(void)
{
    char p[16], store[300], log[300];
    natsConnection *nc = NULL;

    snprintf(p, sizeof(p), "%d", port);
    snprintf(store, sizeof(store), "%s/store", dir);
    snprintf(log, sizeof(log), "%s/server.log", dir);
    server = fork();
    if (server < 0) {
        bail_out("fork: %s", strerror(errno));
    }
    if (server == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* a test that crashes leaves no server behind */
        const char *argv[16] = { "nats-server", "-a", "127.0.0.1", "-p", p, "-js", "-sd",
                                 store, "-l", log };
        int n = 10;

        if (server_conf != NULL) {
            argv[n++] = "-c";
            argv[n++] = server_conf;
        }
        if (token != NULL) {
            argv[n++] = "--auth";
            argv[n++] = token;
        }
        execv(server_bin, (char *const *)argv);
        _exit(127);
    }
    for (int i = 0; i < 400; i++) {
        if (waitpid(server, NULL, WNOHANG) == server) {
            server = -1;
            return false; /* the port was taken meanwhile */
        }
        if (natsConnection_ConnectTo(&nc, url) == NATS_OK) {
            natsConnection_Destroy(nc);
            return true;
        }
        usleep(25 * 1000);
    }
    return false;
}

static void server_kill(int sig);

/* set_url points url at the server on port, with its token if it has one. */
static void
set_url(void)
{
    snprintf(url, sizeof(url), "nats://%s%s127.0.0.1:%d", token != NULL ? token : "",
             token != NULL ? "@" : "", port);
}

/* server_restart stops the server and starts it again with the token tok (or none). */
static void
server_restart(const char *tok)
{
    server_kill(SIGTERM);
    token = tok;
    set_url();
    if (!server_start()) {
        bail_out("restart nats-server");
    }
}

/* log_count counts the lines of the server's log that contain text. */
static int
log_count(const char *text)
{
    char path[300], line[1024];
    FILE *f;
    int n = 0;

    snprintf(path, sizeof(path), "%s/server.log", dir);
    f = fopen(path, "r");
    if (f == NULL) {
        return 0;
    }
    while (fgets(line, sizeof(line), f) != NULL) {
        n += strstr(line, text) != NULL;
    }
    fclose(f);
    return n;
}

static void
server_kill(int sig)
{
    if (server > 0) {
        kill(server, sig);
        waitpid(server, NULL, 0);
        server = -1;
    }
}

/* reader connects a JetStream context of the test's own. */
static jsCtx *
reader(natsConnection **nc)
{
    jsCtx *js = NULL;

    if (natsConnection_ConnectTo(nc, url) != NATS_OK ||
        natsConnection_JetStream(&js, *nc, NULL) != NATS_OK) {
        bail_out("reader: connect to %s", url);
    }
    return js;
}

/* create_stream makes stream name on subjects, messages up to max_msg_size (-1: any). */
static void
create_stream(const char *name, const char *subjects_of, int32_t max_msg_size)
{
    const char *subjects[] = { subjects_of };
    natsConnection *nc;
    jsCtx *js = reader(&nc);
    jsStreamConfig sc;
    jsStreamInfo *si = NULL;
    jsErrCode code = 0;

    jsStreamConfig_Init(&sc);
    sc.Name = name;
    sc.MaxMsgSize = max_msg_size;
    sc.Subjects = subjects;
    sc.SubjectsLen = 1;
    sc.Storage = js_FileStorage;
    sc.Duplicates = 5LL * 60 * 1000000000LL; /* ns */
    if (js_AddStream(&si, js, &sc, NULL, &code) != NATS_OK) {
        bail_out("create the stream: %s (%d)", nats_GetLastError(NULL), (int)code);
    }
    jsStreamInfo_Destroy(si);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
}

/* stream_msgs returns how many messages the stream holds. */
static uint64_t
stream_msgs(void)
{
    natsConnection *nc;
    jsCtx *js = reader(&nc);
    jsStreamInfo *si = NULL;
    uint64_t n = 0;

    if (js_GetStreamInfo(&si, js, stream, NULL, NULL) == NATS_OK) {
        n = si->State.Msgs;
    }
    jsStreamInfo_Destroy(si);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    return n;
}

static void
make_msgs(struct msg **v, size_t n, uint64_t first)
{
    for (size_t i = 0; i < n; i++) {
        char text[32];

        snprintf(text, sizeof(text), "m%zu", first + i);
        v[i] = msg_create_copy(text, strlen(text));
        if (!v[i]) {
            bail_out("msg_create_copy");
        }
        v[i]->id = (struct msg_id){ 0x9f1c0a3e5b7d2468ull, first + i };
    }
}

/*
 * deliver offers v[0..n) in order and polls until each has an outcome (or
 * 30 s); like a consumer, it stops offering at the first failed submit.
 * Returns the most messages in flight at once; *err is the first submit
 * error.
 */
static size_t
deliver(void *s, struct msg **v, size_t n, struct outcomes *o, int *err)
{
    size_t next = 0, base = o->stored + o->retried, most = 0;

    *err = 0;
    for (int i = 0; i < 300 && o->stored + o->retried - base < n; i++) {
        if (next < n && *err == 0) {
            size_t accepted = 0;

            *err = ops->submit(s, v + next, n - next, &accepted);
            next += accepted;
            if (next - (o->stored + o->retried - base) > most) {
                most = next - (o->stored + o->retried - base);
            }
            if (*err < 0 && next == o->stored + o->retried - base) {
                break; /* nothing in flight to wait for */
            }
        }
        (void)ops->poll(s, SINK_POLL_MAX_MS);
    }
    return most;
}

static void
set_str(char **field, const char *v)
{
    free(*field);
    *field = strdup(v);
    if (*field == NULL) {
        bail_out("strdup");
    }
}

static void
free_msgs(struct msg **v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        msg_destroy(v[i]);
    }
}

static void
test_publish(void)
{
    static const size_t lens[] = { 1, 0, 2 };
    struct outcomes o = { 0 };
    struct msg *v[100];
    natsConnection *nc;
    natsMsg *got = NULL;
    const char *h = NULL;
    unsigned char enc[32];
    char id[MSG_ID_TEXT_MAX];
    void *s = NULL;
    jsCtx *js;
    size_t most;
    int err;
    bool is_same = true;

    make_msgs(v, 100, 1);
    msg_destroy(v[50]);
    v[50] = msg_create(3, lens);
    memcpy(msg_frame_data(v[50], 0), "a", 1);
    memcpy(msg_frame_data(v[50], 2), "bc", 2);
    v[50]->id = (struct msg_id){ 0x9f1c0a3e5b7d2468ull, 51 };
    msg_destroy(v[10]);
    v[10] = msg_create_copy(NULL, 0);
    v[10]->id = (struct msg_id){ 0x9f1c0a3e5b7d2468ull, 11 };
    cfg.nats_max_pending = 16;
    ok(ops->open(&env, record, &o, &s) == 0, "open");
    most = deliver(s, v, 100, &o, &err);
    ok(err == 0 && o.stored == 100 && o.retried == 0, "100 messages stored (%zu, %zu, %d)",
       o.stored, o.retried, err);
    ok(most <= 16 && most > 1, "at most max_pending in flight, and more than one (%zu)", most);
    ok(stream_msgs() == 100, "the stream holds 100");

    js = reader(&nc);
    for (uint64_t seq = 1; seq <= 100; seq++) {
        size_t len = msg_binary_size(v[seq - 1]);
        const unsigned char *want = enc;

        if (js_GetMsg(&got, js, stream, seq, NULL, NULL) != NATS_OK) {
            is_same = false;
            break;
        }
        if (v[seq - 1]->nframes == 1) {
            want = msg_frame(v[seq - 1], 0).data;
            len = v[seq - 1]->size;
        } else {
            msg_encode_binary(v[seq - 1], enc);
        }
        is_same = is_same && (size_t)natsMsg_GetDataLength(got) == len &&
                  memcmp(natsMsg_GetData(got), want, len) == 0 &&
                  natsMsgHeader_Get(got, "Nats-Msg-Id", &h) == NATS_OK &&
                  strcmp(h, msg_id_format(&v[seq - 1]->id, id)) == 0;
        if (seq == 51) {
            ok(natsMsgHeader_Get(got, "Zpipe-Parts", &h) == NATS_OK && strcmp(h, "3") == 0,
               "a multipart message: its frames in the binary format, Zpipe-Parts: 3");
        }
        natsMsg_Destroy(got);
    }
    ok(is_same, "each message in order, with its id as Nats-Msg-Id");
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);

    /* Published again, as after a lost ack: duplicates, stored once. */
    o = (struct outcomes){ 0 };
    deliver(s, v, 100, &o, &err);
    ok(err == 0 && o.stored == 100 && stream_msgs() == 100,
       "published again: acked as duplicates, stored once");
    ops->close(s);
    free_msgs(v, 100);
}

static void
test_no_stream(void)
{
    struct outcomes o = { 0 };
    struct msg *v[3];
    void *s = NULL;
    int err;

    make_msgs(v, 3, 1000);
    set_str(&cfg.nats_subject, "nostream.here");
    ok(ops->open(&env, record, &o, &s) == 0, "open: a subject no stream captures");
    deliver(s, v, 3, &o, &err);
    ok(o.retried == 3 && o.stored == 0 && o.last_err == -ENXIO,
       "no stream: retried (no responders) (%zu, %d)", o.retried, o.last_err);
    ops->close(s);
    set_str(&cfg.nats_subject, "zt.a");
    free_msgs(v, 3);
}

/* test_timeout: a server that takes messages but never answers (stopped). */
static void
test_timeout(void)
{
    struct outcomes o = { 0 };
    struct msg *v[5];
    void *s = NULL;
    uint64_t before = stream_msgs();
    size_t accepted = 0;
    int err;

    make_msgs(v, 5, 2000);
    cfg.nats_ack_timeout = 1000;
    ok(ops->open(&env, record, &o, &s) == 0, "open");
    /* kill() only queues the signal: a server still running for a moment
     * could ack what is published next.  Stopped once waitpid says so. */
    kill(server, SIGSTOP);
    waitpid(server, NULL, WUNTRACED);
    deliver(s, v, 5, &o, &err);
    ok(o.retried == 5 && o.last_err == -ETIMEDOUT,
       "no ack within ack_timeout: retried (%zu, %d; stored %zu, submit %d)", o.retried,
       o.last_err, o.stored, err);

    /* The drain deadline: what is in flight is given back at once. */
    o = (struct outcomes){ 0 };
    err = ops->submit(s, v, 5, &accepted);
    ops->abort(s);
    ok(err == 0 && accepted == 5 && o.retried == 5 && o.last_err == 0,
       "abort: every message in flight retried at once");
    ops->close(s);
    kill(server, SIGCONT);

    /* The server stored what it read while stopped; the retry adds nothing. */
    ok(ops->open(&env, record, &o, &s) == 0, "open again");
    o = (struct outcomes){ 0 };
    deliver(s, v, 5, &o, &err);
    ok(o.stored == 5 && stream_msgs() == before + 5, "published again: stored once (%zu)",
       o.stored);
    ops->close(s);
    cfg.nats_ack_timeout = 10000;
    free_msgs(v, 5);
}

/* test_server_down: no server at open, one later; then one killed mid-flight. */
static void
test_server_down(void)
{
    struct outcomes o = { 0 };
    struct msg *v[20];
    void *s = NULL;
    uint64_t before = stream_msgs();
    size_t accepted = 1;
    int err = 0, i;

    make_msgs(v, 20, 3000);
    cfg.nats_max_pending = 20; /* 20 in flight fill the window */
    cfg.nats_ack_timeout = 60000;
    ok(ops->open(&env, record, &o, &s) == 0, "open");
    ops->close(s); /* with nothing ever published */
    server_kill(SIGTERM);
    ok(ops->open(&env, record, &o, &s) == 0, "open with no server: not an error");
    err = ops->submit(s, v, 20, &accepted);
    ok(err == -ENOTCONN && accepted == 0, "not connected: nothing taken (%d)", err);
    if (!server_start()) {
        bail_out("restart nats-server");
    }
    /* libnats reconnects by itself, within its backoff (5 s at most). */
    for (i = 0; i < 200 && ops->submit(s, v, 20, &accepted) == -ENOTCONN; i++) {
        usleep(50 * 1000); /* poll() returns at once with nothing in flight */
    }
    ok(accepted == 20, "the server came: messages taken");
    for (i = 0; i < 300 && o.stored + o.retried < 20; i++) {
        (void)ops->poll(s, SINK_POLL_MAX_MS);
    }
    ok(o.stored == 20 && stream_msgs() == before + 20, "and stored (%zu)", o.stored);

    /* Killed with messages in flight: retried when the connection goes,
     * not after ack_timeout (60 s). */
    o = (struct outcomes){ 0 };
    kill(server, SIGSTOP);
    err = ops->submit(s, v, 20, &accepted);
    server_kill(SIGKILL);
    for (i = 0; i < 30 && o.retried < 20; i++) {
        (void)ops->poll(s, SINK_POLL_MAX_MS);
    }
    ok(err == 0 && o.retried == 20 && o.last_err == -ENOTCONN,
       "server killed: in flight retried within 3 s (%zu, %d)", o.retried, o.last_err);
    if (!server_start()) {
        bail_out("restart nats-server");
    }
    /* Their natsMsgs are taken back from libnats: the full window is free
     * again at once, not when their acks time out. */
    o = (struct outcomes){ 0 };
    for (uint64_t end = util_now_ms() + 20000; o.stored < 20 && util_now_ms() < end;) {
        size_t k = 0;

        if (ops->submit(s, v, 20, &k) == 0 && k == 20) {
            for (i = 0; i < 300 && o.stored + o.retried < 20; i++) {
                (void)ops->poll(s, SINK_POLL_MAX_MS);
            }
        } else {
            usleep(50 * 1000);
        }
    }
    ok(o.stored == 20 && stream_msgs() == before + 20,
       "reconnected: published again within 20 s, stored once (%zu)", o.stored);
    ops->close(s);
    cfg.nats_ack_timeout = 10000;
    free_msgs(v, 20);
}

/*
 * test_closed: libnats closes a connection for good when a reconnect meets
 * the same authorisation error twice (the server's token changed); the sink
 * makes a new one and delivers once the server takes its token again.
 */
static void
test_closed(void)
{
    struct outcomes o = { 0 };
    struct msg *v[10];
    void *s = NULL;
    uint64_t before;
    size_t accepted = 0;
    int err, i, refused;

    make_msgs(v, 10, 4000);
    server_restart("tok1");
    set_str(&cfg.nats_servers.items[0], url);
    before = stream_msgs();
    ok(ops->open(&env, record, &o, &s) == 0, "open, with the server's token");
    deliver(s, v, 5, &o, &err);
    ok(o.stored == 5, "stored (%zu)", o.stored);

    refused = log_count("authentication error");
    server_restart("tok2");
    for (i = 0; i < 300 && log_count("authentication error") < refused + 2; i++) {
        err = ops->submit(s, v + 5, 5, &accepted);
        (void)ops->poll(s, SINK_POLL_MAX_MS); /* returns at once: nothing in flight */
        usleep(50 * 1000);
    }
    ok(i < 300 && accepted == 0, "the token is refused twice: nothing taken (%d)", err);
    server_restart("tok1");
    for (i = 0; i < 600 && o.stored < 10; i++) {
        if (ops->submit(s, v + 5, 5, &accepted) == 0 && accepted == 5) {
            for (int k = 0; k < 300 && o.stored + o.retried < 10; k++) {
                (void)ops->poll(s, SINK_POLL_MAX_MS);
            }
        } else {
            (void)ops->poll(s, SINK_POLL_MAX_MS); /* returns at once: nothing in flight */
            usleep(50 * 1000);
        }
    }
    ok(o.stored == 10 && stream_msgs() == before + 10,
       "the token taken again: a new connection stores the rest (%zu)", o.stored);
    ops->close(s);
    free_msgs(v, 10);
}

static int
failing_fdatasync(int fd)
{
    (void)fd;
    errno = EIO;
    return -1;
}

/*
 * dead_letters reads the one dead-letter file in spool (its name in name)
 * into buf; returns its size, or -1 if there is not exactly one.
 */
static long
dead_letters(const char *spool, char *name, size_t name_len, unsigned char *buf, size_t len)
{
    DIR *d = opendir(spool);
    struct dirent *e;
    char path[600];
    FILE *f;
    long n = -1;
    int files = 0;

    while (d && (e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, "deadletter-", 11) == 0) {
            snprintf(name, name_len, "%s", e->d_name);
            files++;
        }
    }
    if (d) {
        closedir(d);
    }
    snprintf(path, sizeof(path), "%s/%s", spool, name);
    f = files == 1 ? fopen(path, "rb") : NULL;
    if (f != NULL) {
        n = (long)fread(buf, 1, len, f);
        fclose(f);
    }
    return n;
}

/* stream_has checks that the stream's messages from seq on are v[0..n), in order. */
static bool
stream_has(uint64_t seq, struct msg *const *v, size_t n)
{
    natsConnection *nc;
    jsCtx *js = reader(&nc);
    natsMsg *got = NULL;
    bool is_same = true;

    for (size_t i = 0; i < n && is_same; i++, seq++) {
        is_same = js_GetMsg(&got, js, stream, seq, NULL, NULL) == NATS_OK &&
                  (size_t)natsMsg_GetDataLength(got) == v[i]->size &&
                  memcmp(natsMsg_GetData(got), msg_frame(v[i], 0).data, v[i]->size) == 0;
        natsMsg_Destroy(got);
        got = NULL;
    }
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    return is_same;
}

/*
 * test_too_large: a server with max_payload = 4096.  A message that does
 * not fit with its headers is not published but goes to a dead-letter file
 * in spool_dir, in order, counted as refused; one that fits to the byte is
 * published; nothing stalls.  A dead-letter file that cannot be synced
 * keeps the message in flight, and what is behind it, until it can.
 */
static void
test_too_large(void)
{
    static const size_t lens[] = { 2000, 2000, 100 };
    struct outcomes o = { 0 };
    struct msg *v[8], *pub[5];
    struct stats st;
    char conf_path[300], spool[300], id[MSG_ID_TEXT_MAX], name[256] = "";
    unsigned char want[16384], got[16384];
    size_t wlen = 0, hdr, accepted = 0;
    uint64_t before;
    void *s = NULL;
    FILE *f;
    int err = 0;

    snprintf(conf_path, sizeof(conf_path), "%s/small.conf", dir);
    snprintf(spool, sizeof(spool), "%s/spool", dir);
    f = fopen(conf_path, "w");
    if (f == NULL || fputs("max_payload: 4096\n", f) < 0 || fclose(f) != 0 ||
        mkdir(spool, 0750) < 0) {
        bail_out("%s: %s", conf_path, strerror(errno));
    }
    server_conf = conf_path;
    server_restart(NULL);
    set_str(&cfg.nats_servers.items[0], url);
    set_str(&cfg.daemon_spool_dir, spool);
    before = stream_msgs();

    make_msgs(v, 8, 5000);
    /* "NATS/1.0\r\n", "Nats-Msg-Id: <id>\r\n", "\r\n": 27 bytes and the id's. */
    hdr = 27 + strlen(msg_id_format(&v[1]->id, id));
    for (int k = 1; k <= 2; k++) {
        struct msg_id mid = v[k]->id;

        msg_destroy(v[k]);
        v[k] = msg_create(1, (size_t[]){ 4096 - hdr + (size_t)(k - 1) });
        memset(msg_frame_data(v[k], 0), 'a' + k, v[k]->size);
        v[k]->id = mid;
    }
    msg_destroy(v[3]);
    v[3] = msg_create(3, lens);
    memset(msg_frame_data(v[3], 0), 'x', 2000);
    memset(msg_frame_data(v[3], 1), 'y', 2000);
    memset(msg_frame_data(v[3], 2), 'z', 100);
    v[3]->id = (struct msg_id){ 0x9f1c0a3e5b7d2468ull, 5003 };
    msg_destroy(v[6]);
    v[6] = msg_create(1, (size_t[]){ 5000 });
    memset(msg_frame_data(v[6], 0), 'q', 5000);
    v[6]->id = (struct msg_id){ 0x9f1c0a3e5b7d2468ull, 5006 };

    cfg.nats_max_pending = 16;
    ok(ops->open(&env, record, &o, &s) == 0, "open, server max_payload = 4096");
    deliver(s, v, 5, &o, &err);
    stats_sink_errors_read(&st);
    ok(err == 0 && o.stored == 5 && o.retried == 0 &&
       st.sink_errors[STATS_SINK_ERROR_REFUSED] == 2,
       "two too large (one by a byte, one multipart): all 5 stored, 2 refused (%zu, %zu, %d)",
       o.stored, o.retried, err);
    pub[0] = v[0];
    pub[1] = v[1];
    pub[2] = v[4];
    ok(stream_msgs() == before + 3 && stream_has(before + 1, pub, 3),
       "the others published once, in order, one of exactly 4096 bytes with its headers");
    wlen = msg_encode_binary(v[2], want);
    wlen += msg_encode_binary(v[3], want + wlen);
    ok(dead_letters(spool, name, sizeof(name), got, sizeof(got)) == (long)wlen &&
       memcmp(got, want, wlen) == 0 && !spool_is_spill_name(name),
       "the dead-letter file holds the two records exactly (%s), not a spill name", name);

    /* The dead-letter file cannot be synced: m5006 stays in flight, and
     * m5007 behind it, acked, is held. */
    o = (struct outcomes){ 0 };
    spool_fdatasync = failing_fdatasync;
    err = ops->submit(s, v + 5, 3, &accepted);
    for (int i = 0; i < 100 && err == 0; i++) {
        err = ops->poll(s, 100);
    }
    ok(accepted == 3 && err == -EIO && o.stored == 1 && o.retried == 0 &&
       dead_letters(spool, name, sizeof(name), got, sizeof(got)) == (long)wlen,
       "dead-letter sync fails: poll fails, only the message before it stored (%d, %zu)", err,
       o.stored);
    spool_fdatasync = fdatasync;
    for (int i = 0; i < 100 && o.stored < 3; i++) {
        err = ops->poll(s, 100);
    }
    wlen += msg_encode_binary(v[6], want + wlen);
    pub[3] = v[5];
    pub[4] = v[7];
    ok(err == 0 && o.stored == 3 && o.retried == 0 &&
       dead_letters(spool, name, sizeof(name), got, sizeof(got)) == (long)wlen &&
       memcmp(got, want, wlen) == 0 && stream_msgs() == before + 5 &&
       stream_has(before + 1, pub, 5),
       "once it syncs: all stored, the message once in the file, the others once in order");
    ops->close(s);
    free_msgs(v, 8);
    server_conf = NULL;
}

/*
 * test_stream_too_large: a stream with max_msg_size = 1024 refuses a
 * message of 2000 bytes (JetStream error 10054) each time it is published.
 * It goes to the dead-letter file, counted as refused, and the messages
 * around it are stored in order: nothing stalls.
 */
static void
test_stream_too_large(void)
{
    struct outcomes o = { 0 };
    struct msg *v[3], *pub[2];
    struct stats before, after;
    char spool[300], name[256] = "";
    unsigned char want[4096], got[4096];
    size_t wlen;
    void *s = NULL;
    int err = 0;

    snprintf(spool, sizeof(spool), "%s/spool-stream", dir);
    if (mkdir(spool, 0750) < 0) {
        bail_out("%s: %s", spool, strerror(errno));
    }
    create_stream("ZTSMALL", "zs.>", 1024);
    stream = "ZTSMALL";
    set_str(&cfg.nats_subject, "zs.a");
    set_str(&cfg.daemon_spool_dir, spool);
    make_msgs(v, 3, 6000);
    msg_destroy(v[1]);
    v[1] = msg_create(1, (size_t[]){ 2000 });
    memset(msg_frame_data(v[1], 0), 'L', 2000);
    v[1]->id = (struct msg_id){ 0x9f1c0a3e5b7d2468ull, 6001 };
    stats_sink_errors_read(&before);

    ok(ops->open(&env, record, &o, &s) == 0, "open, a stream with max_msg_size = 1024");
    deliver(s, v, 3, &o, &err);
    stats_sink_errors_read(&after);
    pub[0] = v[0];
    pub[1] = v[2];
    wlen = msg_encode_binary(v[1], want);
    ok(err == 0 && o.stored == 3 && o.retried == 0 &&
           after.sink_errors[STATS_SINK_ERROR_REFUSED] ==
               before.sink_errors[STATS_SINK_ERROR_REFUSED] + 1 &&
           stream_msgs() == 2 && stream_has(1, pub, 2) &&
           dead_letters(spool, name, sizeof(name), got, sizeof(got)) == (long)wlen &&
           memcmp(got, want, wlen) == 0,
       "the one the stream refuses goes to the dead-letter file, refused; the others are in "
       "the stream in order (%zu, %zu, %d)",
       o.stored, o.retried, err);
    ops->close(s);
    free_msgs(v, 3);
    stream = STREAM;
}

int
main(void)
{
    if (!find_server()) {
        printf("1..0 # SKIP nats-server is not installed\n");
        return 0;
    }
    if (mkdtemp(dir) == NULL) {
        bail_out("mkdtemp: %s", strerror(errno));
    }
    for (int i = 0; i < 5 && server < 0; i++) {
        port = free_port();
        set_url();
        if (!server_start()) {
            server_kill(SIGKILL);
        }
    }
    if (server < 0) {
        bail_out("nats-server does not start (%s)", server_bin);
    }
    create_stream(STREAM, "zt.>", -1);
    if (conf_init_defaults(&cfg) < 0) {
        bail_out("conf_init_defaults");
    }
    cfg.output_sink = CONF_SINK_NATS;
    set_str(&cfg.nats_servers.items[0], url);
    set_str(&cfg.nats_subject, "zt.a");

    plan(33);
    test_publish();
    test_no_stream();
    test_timeout();
    test_server_down();
    test_closed();
    test_too_large();
    test_stream_too_large();

    server_kill(SIGTERM);
    conf_free(&cfg);
    nats_CloseAndWait(5000);
    {
        char cmd[128];

        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
        if (system(cmd) != 0) {
            diag("could not remove %s", dir);
        }
    }
    return done_testing();
}
