/*
 * test_sink_file.c - the file sink: both formats byte for byte, multipart
 * records, reopen after rename, FIFOs, and failures injected through the
 * sink's system call pointers: writes, truncates, syncs and reopens that
 * fail, a file deleted under the sink, and the scratch buffers' ceiling.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdarg.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../src/sink_file.c"
#include "../../src/sink_file_sync.c"
#include "tap.h"

static char dir[] = "/tmp/zpipe-test-sink-XXXXXX";
static char path[256];

static struct msg *
make(size_t nframes, const char *const *frames, const size_t *lens)
{
    struct msg *m = msg_create(nframes, lens);

    if (!m) {
        bail_out("msg_create");
    }
    for (size_t i = 0; i < nframes; i++) {
        memcpy(msg_frame_data(m, i), frames[i], lens[i]);
    }
    return m;
}

static struct msg *
make1(const char *s)
{
    return msg_create_copy(s, strlen(s));
}

/* Reads the whole file at p into a malloc'd buffer. */
static char *
slurp(const char *p, size_t *len)
{
    int fd = open(p, O_RDONLY);
    struct stat st;
    char *buf;

    if (fd < 0 || fstat(fd, &st) < 0) {
        bail_out("open %s", p);
    }
    buf = malloc((size_t)st.st_size + 1);
    if (!buf || read(fd, buf, (size_t)st.st_size) != st.st_size) {
        bail_out("read %s", p);
    }
    close(fd);
    *len = (size_t)st.st_size;
    return buf;
}

static size_t taken; /* what sink_write() saw stored */
/* Messages reported SINK_STORED and SINK_RETRY on this thread (the race test has two). */
static _Thread_local size_t stored;
static _Thread_local size_t retried;

static void
on_done(void *arg, size_t n, enum sink_outcome outcome, int err)
{
    (void)arg;
    (void)err;
    if (outcome == SINK_STORED) {
        stored += n;
    } else {
        retried += n;
    }
}

/*
 * sink_write submits batch[0..n) and returns submit's result, with *out
 * set to how many of them the sink reported stored in the call (the file
 * sink writes, and with ack = queued reports, at once).
 */
static int
sink_write(void *state, struct msg *const *batch, size_t n, size_t *out)
{
    size_t accepted = 0, before = stored;
    int err = sink_file_ops.submit(state, batch, n, &accepted);

    *out = stored - before;
    return err;
}

static int
sink_open(const struct sink_env *env, void **state)
{
    return sink_file_ops.open(env, on_done, NULL, state);
}

/* env_of wraps cfg in the sink_env that sink->open takes (no zmq context). */
static const struct sink_env *
env_of(const struct conf *cfg)
{
    static struct sink_env env;

    env.cfg = cfg;
    env.zctx = NULL;
    return &env;
}

static void
config(struct conf *cfg, enum conf_format format, enum conf_fsync fsync)
{
    if (conf_init_defaults(cfg) < 0) {
        bail_out("conf_init_defaults");
    }
    free(cfg->file_path);
    cfg->file_path = strdup(path);
    cfg->file_format = format;
    cfg->file_fsync = fsync;
}

static void
write_and_close(struct conf *cfg, struct msg **batch, size_t n)
{
    void *state;

    ok(sink_open(env_of(cfg), &state) == 0, "open %s", path);
    ok(sink_write(state, batch, n, &taken) == 0, "write %zu records", n);
    sink_file_ops.close(state);
}

static void
test_lines(void)
{
    static const char *const parts[] = { "a", "", "b c" };
    static const size_t lens[] = { 1, 0, 3 };
    struct msg *batch[3] = { make1("hello"), make(3, parts, lens), make1("") };
    struct conf cfg;
    size_t len;
    char *got;

    unlink(path);
    config(&cfg, CONF_FORMAT_LINES, CONF_FSYNC_ALWAYS);
    write_and_close(&cfg, batch, 3);
    got = slurp(path, &len);
    ok(len == 14 && memcmp(got, "hello\na  b c\n\n", 14) == 0,
       "lines: frames joined by one space, one record per line");
    free(got);
    for (size_t i = 0; i < 3; i++) {
        msg_destroy(batch[i]);
    }
    conf_free(&cfg);
}

static void
test_binary(void)
{
    static const char *const parts[] = { "x", "", "\0\n" };
    static const size_t lens[] = { 1, 0, 2 };
    static const unsigned char want[] = {
        0,    0, 0, 3, 'a', '\n', 'b',                            /* single frame */
        0x80, 0, 0, 1, 'x', 0x80, 0,   0, 0, 0, 0, 0, 2, 0, '\n', /* 3 frames */
        0,    0, 0, 0,                                            /* empty record */
    };
    struct msg *batch[3] = { make1("a\nb"), make(3, parts, lens), make1("") };
    struct conf cfg;
    size_t len, used;
    char *got;
    struct msg *back;

    unlink(path);
    config(&cfg, CONF_FORMAT_BINARY, CONF_FSYNC_INTERVAL);
    write_and_close(&cfg, batch, 3);
    got = slurp(path, &len);
    ok(len == sizeof(want) && memcmp(got, want, sizeof(want)) == 0,
       "binary: length-prefixed frames, top bit on all but the last");
    ok(msg_decode_binary((unsigned char *)got + 7, len - 7, 1024, &back, &used) == 0 &&
           back->nframes == 3 && msg_frame(back, 2).len == 2 && used == 15,
       "binary: the multipart record decodes back");
    if (back) {
        msg_destroy(back);
    }
    free(got);
    for (size_t i = 0; i < 3; i++) {
        msg_destroy(batch[i]);
    }
    conf_free(&cfg);
}

static void
test_reopen(void)
{
    char moved[300];
    struct msg *a = make1("before"), *b = make1("after");
    struct conf cfg;
    void *state;
    size_t len;
    char *got;

    unlink(path);
    snprintf(moved, sizeof(moved), "%s.1", path);
    config(&cfg, CONF_FORMAT_LINES, CONF_FSYNC_NEVER);
    ok(sink_open(env_of(&cfg), &state) == 0, "reopen: open");
    ok(sink_write(state, &a, 1, &taken) == 0, "reopen: write before rename");
    ok(rename(path, moved) == 0, "reopen: rename");
    ok(sink_file_ops.reopen(state) == 0, "reopen: reopen");
    ok(sink_write(state, &b, 1, &taken) == 0, "reopen: write after rename");
    sink_file_ops.close(state);
    got = slurp(moved, &len);
    ok(len == 7 && memcmp(got, "before\n", 7) == 0, "reopen: old file has the old record");
    free(got);
    got = slurp(path, &len);
    ok(len == 6 && memcmp(got, "after\n", 6) == 0, "reopen: new file has the new record");
    free(got);
    unlink(moved);
    msg_destroy(a);
    msg_destroy(b);
    conf_free(&cfg);
}

/* Fails every call with errno = fail_errno after letting fail_after bytes through once. */
static int fail_errno;
static size_t fail_after;

static ssize_t
failing_writev(int fd, const struct iovec *iov, int iovcnt)
{
    if (fail_after > 0) {
        size_t n = iov[0].iov_len < fail_after ? iov[0].iov_len : fail_after;
        ssize_t r = write(fd, iov[0].iov_base, n);

        fail_after = 0;
        return r;
    }
    errno = fail_errno;
    return -1;
}

static void
test_failure(void)
{
    struct msg *batch[2] = { make1("one"), make1("two") };
    struct conf cfg;
    void *state;

    unlink(path);
    config(&cfg, CONF_FORMAT_LINES, CONF_FSYNC_NEVER);
    ok(sink_open(env_of(&cfg), &state) == 0, "failure: open");
    file_writev = failing_writev;
    fail_errno = ENOSPC;
    ok(sink_write(state, batch, 2, &taken) == -ENOSPC, "failure: ENOSPC is returned");
    fail_errno = EIO;
    fail_after = 2;
    ok(sink_write(state, batch, 2, &taken) == -EIO,
       "failure: EIO after a short write is returned");
    file_writev = writev;
    ok(sink_write(state, batch, 2, &taken) == 0, "failure: the sink works again");
    sink_file_ops.close(state);
    for (size_t i = 0; i < 2; i++) {
        msg_destroy(batch[i]);
    }
    conf_free(&cfg);
}

/*
 * Two instances (two consumers) append to one file from two threads; every
 * third writev of instance B writes a few bytes and then fails with EIO, and
 * B retries until its batch goes through, as a consumer does.  B's cut-back
 * must never remove A's records: at the end each record is in the file
 * exactly once and whole.  Without the sink's write lock, B's ftruncate would
 * cut off what A appended between B's size check and its failure.
 */
enum { RACE_BATCHES = 300, RACE_BATCH = 4 };
static int race_fail_fd = -1;
static _Atomic unsigned race_calls;

static ssize_t
racing_writev(int fd, const struct iovec *iov, int iovcnt)
{
    if (fd == race_fail_fd && atomic_fetch_add(&race_calls, 1) % 3 == 0) {
        ssize_t r = write(fd, iov[0].iov_base, iov[0].iov_len > 3 ? 3 : iov[0].iov_len);

        (void)r;
        errno = EIO;
        return -1;
    }
    return writev(fd, iov, iovcnt);
}

struct racer {
    void *state;
    char name;
    unsigned failures;
};

static void *
race(void *arg)
{
    struct racer *r = arg;

    for (int b = 0; b < RACE_BATCHES; b++) {
        struct msg *batch[RACE_BATCH];
        size_t n_taken;
        char buf[32];

        for (int i = 0; i < RACE_BATCH; i++) {
            snprintf(buf, sizeof(buf), "%c-%04d-%d", r->name, b, i);
            batch[i] = msg_create_copy(buf, strlen(buf));
        }
        while (sink_write(r->state, batch, RACE_BATCH, &n_taken) < 0) {
            r->failures++;
        }
        for (int i = 0; i < RACE_BATCH; i++) {
            msg_destroy(batch[i]);
        }
    }
    return NULL;
}

static void
test_failure_two_writers(void)
{
    struct racer a = { .name = 'a' }, b = { .name = 'b' };
    struct conf cfg;
    pthread_t ta, tb;
    size_t len, lines = 0;
    char *got;
    int is_whole = 1;

    unlink(path);
    config(&cfg, CONF_FORMAT_LINES, CONF_FSYNC_NEVER);
    if (sink_open(env_of(&cfg), &a.state) < 0 || sink_open(env_of(&cfg), &b.state) < 0) {
        bail_out("open two instances");
    }
    race_fail_fd = ((struct sink_file *)b.state)->fd;
    file_writev = racing_writev;
    pthread_create(&ta, NULL, race, &a);
    pthread_create(&tb, NULL, race, &b);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    file_writev = writev;
    sink_file_ops.close(a.state);
    sink_file_ops.close(b.state);
    got = slurp(path, &len);
    /* Every line is a whole record: "x-NNNN-N". */
    for (size_t i = 0, start = 0; i < len; i++) {
        if (got[i] == '\n') {
            is_whole &= i - start == 8 && (got[start] == 'a' || got[start] == 'b');
            lines++;
            start = i + 1;
        }
    }
    ok(b.failures > 0, "two writers: B's writes failed part-way %u times", b.failures);
    ok(is_whole && len > 0 && got[len - 1] == '\n' && lines == 2 * RACE_BATCHES * RACE_BATCH,
       "two writers: %zu whole records, each once: B's cut-backs never touched A's records", lines);
    free(got);
    conf_free(&cfg);
}

static void
test_fifo_without_reader(void)
{
    struct conf cfg;
    void *state = NULL;

    unlink(path);
    if (mkfifo(path, 0600) < 0) {
        bail_out("mkfifo");
    }
    config(&cfg, CONF_FORMAT_LINES, CONF_FSYNC_ALWAYS);
    ok(sink_open(env_of(&cfg), &state) == -ENXIO,
       "a FIFO without a reader fails to open (ENXIO) instead of blocking");
    unlink(path);
    conf_free(&cfg);
}

static void
test_many_frames(void)
{
    /* One record needing more than IOV_MAX iovecs. */
    size_t n = IOV_MAX, lens[IOV_MAX];
    const char *frames[IOV_MAX];
    struct msg *m;
    struct conf cfg;
    size_t len;
    char *got;
    int is_right = 1;

    for (size_t i = 0; i < n; i++) {
        lens[i] = 1;
        frames[i] = "z";
    }
    m = make(n, frames, lens);
    unlink(path);
    config(&cfg, CONF_FORMAT_LINES, CONF_FSYNC_NEVER);
    write_and_close(&cfg, &m, 1);
    got = slurp(path, &len);
    for (size_t i = 0; i < len; i++) {
        is_right &= got[i] == (i % 2 ? (i + 1 == len ? '\n' : ' ') : 'z');
    }
    ok(len == 2 * n && is_right, "a record of %zu frames is written whole", n);
    free(got);
    msg_destroy(m);
    conf_free(&cfg);
}

static void
test_big_batch(void)
{
    /* More staged bytes than the staging buffer holds: written in parts,
     * each cut at a record boundary. */
    enum { N = 1500, LEN = 1000 };
    static char payload[LEN];
    struct msg *batch[N];
    struct conf cfg;
    size_t len;
    char *got;
    int is_right = 1;

    for (size_t i = 0; i < N; i++) {
        memset(payload, 'a' + (int)(i % 26), LEN);
        batch[i] = msg_create_copy(payload, LEN);
        if (!batch[i]) {
            bail_out("msg_create_copy");
        }
    }
    unlink(path);
    config(&cfg, CONF_FORMAT_LINES, CONF_FSYNC_NEVER);
    write_and_close(&cfg, batch, N);
    got = slurp(path, &len);
    for (size_t i = 0; i < len && is_right; i++) {
        size_t rec = i / (LEN + 1);

        is_right = got[i] == (i % (LEN + 1) == LEN ? '\n' : 'a' + (int)(rec % 26));
    }
    ok(len == (size_t)N * (LEN + 1) && is_right,
       "a batch of %d records of %d bytes (%zu bytes in the file) is written whole, in order", N,
       LEN, len);
    free(got);
    for (size_t i = 0; i < N; i++) {
        msg_destroy(batch[i]);
    }
    conf_free(&cfg);
}

/* Fails every ftruncate with EPERM, as on an append-only file. */
static int
failing_ftruncate(int fd, off_t size)
{
    (void)fd;
    (void)size;
    errno = EPERM;
    return -1;
}

/* Whether the file at path holds exactly want. */
static int
holds(const char *p, const char *want)
{
    size_t len;
    char *got = slurp(p, &len);
    int is_same = len == strlen(want) && memcmp(got, want, len) == 0;

    if (!is_same) {
        diag("%s holds %zu bytes: \"%.*s\"", p, len, (int)len, got);
    }
    free(got);
    return is_same;
}

/*
 * A write fails part-way and cutting it back fails too: the records that
 * reached the file whole count as taken (the caller does not write them
 * again), and a record cut short after them blocks every further write
 * until the file can be cut back to its last whole record.
 */
static void
test_cut_back_fails(void)
{
    struct msg *batch[3] = { make1("one"), make1("two"), make1("three") };
    struct conf cfg;
    void *state;
    int err;

    unlink(path);
    config(&cfg, CONF_FORMAT_LINES, CONF_FSYNC_NEVER);
    ok(sink_open(env_of(&cfg), &state) == 0, "cut back fails: open");
    file_writev = failing_writev;
    file_ftruncate = failing_ftruncate;
    fail_errno = EIO;
    fail_after = 6; /* "one\ntw" */
    err = sink_write(state, batch, 3, &taken);
    ok(err == -EIO && taken == 1,
       "cut back fails: the write fails, the whole record is taken (err %d, taken %zu)", err,
       taken);
    file_writev = writev;
    err = sink_write(state, batch + 1, 2, &taken);
    ok(err == -EPERM && taken == 0, "cut back fails: the torn file takes nothing more (err %d)",
       err);
    ok(holds(path, "one\ntw"), "cut back fails: nothing was appended after the torn record");
    file_ftruncate = ftruncate;
    ok(sink_write(state, batch + 1, 2, &taken) == 0,
       "cut back fails: once it can be cut back, the rest is written");
    ok(holds(path, "one\ntwo\nthree\n"), "cut back fails: every record once, none torn");

    /* A failure at a record boundary leaves no torn record: the next write goes on. */
    file_writev = failing_writev;
    file_ftruncate = failing_ftruncate;
    fail_after = 4; /* "one\n" */
    err = sink_write(state, batch, 3, &taken);
    file_writev = writev;
    ok(err == -EIO && taken == 1, "cut back fails at a record boundary: 1 taken (taken %zu)",
       taken);
    ok(sink_write(state, batch + 1, 2, &taken) == 0,
       "cut back fails at a record boundary: the rest is written at once");
    file_ftruncate = ftruncate;
    ok(holds(path, "one\ntwo\nthree\none\ntwo\nthree\n"),
       "cut back fails at a record boundary: every record once");
    sink_file_ops.close(state);
    for (size_t i = 0; i < 3; i++) {
        msg_destroy(batch[i]);
    }
    conf_free(&cfg);
}

/* Counts fdatasync calls and syncs. */
static _Atomic int counted_syncs;

static int
counting_fdatasync(int fd)
{
    atomic_fetch_add(&counted_syncs, 1);
    return fdatasync(fd);
}

/*
 * fsync = always: the whole records that stay in the file when a failed
 * write cannot be cut back count as written, so they are synced first.
 */
static void
test_cut_back_fails_always(void)
{
    struct msg *batch[2] = { make1("one"), make1("two") };
    struct conf cfg;
    void *state;
    int err;

    unlink(path);
    config(&cfg, CONF_FORMAT_LINES, CONF_FSYNC_ALWAYS);
    ok(sink_open(env_of(&cfg), &state) == 0, "cut back fails, fsync = always: open");
    atomic_store(&counted_syncs, 0);
    sink_file_fdatasync = counting_fdatasync;
    file_writev = failing_writev;
    file_ftruncate = failing_ftruncate;
    fail_errno = EIO;
    fail_after = 4; /* "one\n" */
    err = sink_write(state, batch, 2, &taken);
    file_writev = writev;
    file_ftruncate = ftruncate;
    sink_file_fdatasync = fdatasync;
    ok(err == -EIO && taken == 1 && atomic_load(&counted_syncs) == 1,
       "cut back fails, fsync = always: the record taken was synced (err %d, taken %zu, "
       "syncs %d)",
       err, taken, atomic_load(&counted_syncs));
    sink_file_ops.close(state);
    for (size_t i = 0; i < 2; i++) {
        msg_destroy(batch[i]);
    }
    conf_free(&cfg);
}

/*
 * A lines file left ending in a record cut short (a run whose cut-back
 * failed spilled that record whole): the next run cuts the partial record
 * off before appending, so it does not run into the next record.
 */
static void
test_torn_tail_at_open(void)
{
    struct msg *m = make1("three");
    struct conf cfg;
    void *state;
    int fd;

    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ok(fd >= 0 && write(fd, "one\ntw", 6) == 6, "torn tail: a file ending in half a record");
    close(fd);
    config(&cfg, CONF_FORMAT_LINES, CONF_FSYNC_NEVER);
    ok(sink_open(env_of(&cfg), &state) == 0, "torn tail: open");
    ok(sink_write(state, &m, 1, &taken) == 0, "torn tail: write");
    ok(holds(path, "one\nthree\n"), "torn tail: the partial record is cut off first");
    ok(sink_write(state, &m, 1, &taken) == 0 && holds(path, "one\nthree\nthree\n"),
       "torn tail: a whole file is appended to as it is");
    sink_file_ops.close(state);
    msg_destroy(m);
    conf_free(&cfg);
}

static void
test_append_only(void)
{
    struct conf cfg;
    void *state = NULL;
    int fd, flags = 0, err;

    unlink(path);
    fd = open(path, O_WRONLY | O_CREAT, 0600);
    if (fd < 0) {
        bail_out("create %s", path);
    }
    if (ioctl(fd, FS_IOC_GETFLAGS, &flags) < 0 ||
        (flags |= FS_APPEND_FL, ioctl(fd, FS_IOC_SETFLAGS, &flags) < 0)) {
        ok(1, "# SKIP chattr +a on %s: %s", path, strerror(errno));
        close(fd);
        unlink(path);
        return;
    }
    config(&cfg, CONF_FORMAT_LINES, CONF_FSYNC_NEVER);
    err = sink_open(env_of(&cfg), &state);
    ok(err == -EPERM, "an append-only file is refused at open (%d)", err);
    flags &= ~FS_APPEND_FL;
    if (ioctl(fd, FS_IOC_SETFLAGS, &flags) < 0) {
        bail_out("chattr -a %s", path);
    }
    close(fd);
    unlink(path);
    conf_free(&cfg);
}

/* Fails the first fdatasync with EIO; the later ones succeed, as Linux's do. */
static _Atomic int sync_calls;

static int
failing_fdatasync(int fd)
{
    if (atomic_fetch_add(&sync_calls, 1) == 0) {
        errno = EIO;
        return -1;
    }
    return fdatasync(fd);
}

static void
test_sync_error_sticky(void)
{
    struct msg *m = make1("lost?");
    struct conf cfg;
    void *state;
    int err;

    unlink(path);
    config(&cfg, CONF_FORMAT_LINES, CONF_FSYNC_INTERVAL);
    cfg.file_fsync_interval = 10;
    sink_file_fdatasync = failing_fdatasync; /* before the syncer thread starts */
    ok(sink_open(env_of(&cfg), &state) == 0, "sync error: open");
    ok(sink_write(state, &m, 1, &taken) == 0, "sync error: write");
    for (int i = 0; i < 1000 && atomic_load(&sync_calls) < 2; i++) {
        usleep(10000); /* the syncer fails once, then syncs again */
    }
    ok(atomic_load(&sync_calls) >= 2, "sync error: the syncer synced again after the failure");
    err = sink_file_ops.poll(state, 0);
    ok(err == -EIO, "sync error: the next idle poll reports it (%d)", err);
    ok(sink_file_ops.poll(state, 0) == 0, "sync error: once, on the idle polls");
    ok(atomic_load(&((struct sink_file *)state)->sync_err) == EIO,
       "sync error: still kept after a good sync");
    ok(sink_file_ops.reopen(state) == 0 && atomic_load(&((struct sink_file *)state)->sync_err) == 0,
       "sync error: a reopen clears it");
    sink_file_ops.close(state);
    sink_file_fdatasync = fdatasync;
    msg_destroy(m);
    conf_free(&cfg);
}

/* Polls state until want messages in all were reported (bounded: 10 s). */
static void
poll_until(void *state, size_t want)
{
    for (int i = 0; i < 100 && stored + retried < want; i++) {
        sink_file_ops.poll(state, 100);
    }
}

/*
 * Group commit (ack = stored, fsync = interval): a batch is reported stored
 * only after a sync, not when written; a failed sync cuts what it did not
 * cover back off the file and reports those messages to be retried, and
 * writing them again stores them once.
 */
static void
test_group_commit(void)
{
    struct msg *a[2] = { make1("one"), make1("two") }, *b = make1("three");
    struct conf cfg;
    size_t accepted;
    void *state;

    unlink(path);
    config(&cfg, CONF_FORMAT_LINES, CONF_FSYNC_INTERVAL);
    cfg.input_ack = CONF_ACK_STORED;
    cfg.file_fsync_interval = 60000; /* the syncer runs because groups wait, not on time */
    stored = retried = 0;
    atomic_store(&sync_calls, 1); /* failing_fdatasync: no failure yet */
    sink_file_fdatasync = failing_fdatasync;
    ok(sink_open(env_of(&cfg), &state) == 0, "group commit: open");
    ok(sink_file_ops.submit(state, a, 2, &accepted) == 0 && accepted == 2,
       "group commit: 2 accepted");
    poll_until(state, 2);
    ok(stored == 2 && retried == 0 && atomic_load(&sync_calls) >= 2,
       "group commit: stored after a sync (stored %zu, syncs %d)", stored,
       atomic_load(&sync_calls) - 1);
    atomic_store(&sync_calls, 0); /* the next sync fails */
    ok(sink_file_ops.submit(state, &b, 1, &accepted) == 0 && accepted == 1,
       "group commit: 1 more accepted");
    poll_until(state, 3);
    ok(stored == 2 && retried == 1, "group commit: a failed sync: to be retried (retried %zu)",
       retried);
    ok(holds(path, "one\ntwo\n"), "group commit: ... and cut off the file");
    ok(sink_file_ops.submit(state, &b, 1, &accepted) == 0 && accepted == 1,
       "group commit: written again");
    poll_until(state, 4);
    ok(stored == 3 && holds(path, "one\ntwo\nthree\n"), "group commit: stored once");
    sink_file_ops.close(state);
    sink_file_fdatasync = fdatasync;
    msg_destroy_batch(a, 2);
    msg_destroy(b);
    conf_free(&cfg);
}

/*
 * fsync = always: the batch written whole, its fdatasync failed, and the
 * cut back failed too: nothing is stored (the records may not be on disk);
 * nothing more is written until the file is cut back where the batch
 * began, and then the batch is written again, once.
 */
static void
test_sync_and_cut_fail_always(void)
{
    struct msg *m = make1("one");
    struct conf cfg;
    void *state;
    int err;

    unlink(path);
    config(&cfg, CONF_FORMAT_LINES, CONF_FSYNC_ALWAYS);
    ok(sink_open(env_of(&cfg), &state) == 0, "sync and cut fail, always: open");
    atomic_store(&sync_calls, 0); /* the next sync fails */
    sink_file_fdatasync = failing_fdatasync;
    file_ftruncate = failing_ftruncate;
    err = sink_write(state, &m, 1, &taken);
    file_ftruncate = ftruncate;
    ok(err == -EIO && taken == 0, "sync and cut fail, always: not stored (err %d, stored %zu)", err,
       taken);
    ok(sink_write(state, &m, 1, &taken) == 0 && taken == 1 && holds(path, "one\n"),
       "sync and cut fail, always: written again once cut back: stored, in the file once");
    sink_file_fdatasync = fdatasync;
    sink_file_ops.close(state);
    msg_destroy(m);
    conf_free(&cfg);
}

/* A sync the test holds: it says when it begins and ends when let go
 * (at once once are_syncs_free), failing with EIO if
 * is_next_sync_failing was set. */
static sem_t sync_begun, sync_go;
static _Atomic bool is_next_sync_failing, are_syncs_free;

static int
held_fdatasync(int fd)
{
    sem_post(&sync_begun);
    if (!atomic_load(&are_syncs_free)) {
        sem_wait(&sync_go);
    }
    if (atomic_exchange(&is_next_sync_failing, false)) {
        errno = EIO;
        return -1;
    }
    return fdatasync(fd);
}

/* Opens a group-commit instance (ack = stored, fsync = interval) whose syncs the test holds. */
static void *
open_held(struct conf *cfg)
{
    void *state;

    unlink(path);
    config(cfg, CONF_FORMAT_LINES, CONF_FSYNC_INTERVAL);
    cfg->input_ack = CONF_ACK_STORED;
    cfg->file_fsync_interval = 60000; /* the syncer runs because groups wait */
    stored = retried = 0;
    sem_init(&sync_begun, 0, 0);
    sem_init(&sync_go, 0, 0);
    atomic_store(&are_syncs_free, false);
    sink_file_fdatasync = held_fdatasync;
    if (sink_open(env_of(cfg), &state) < 0) {
        bail_out("open");
    }
    return state;
}

/* Lets every held sync go, for good, and closes. */
static void
close_held(void *state, struct conf *cfg)
{
    atomic_store(&are_syncs_free, true);
    sem_post(&sync_go); /* the one waiting, if one is */
    sink_file_ops.close(state); /* joins the syncer: then the hook is the test's again */
    sink_file_fdatasync = fdatasync;
    sem_destroy(&sync_begun);
    sem_destroy(&sync_go);
    conf_free(cfg);
}

/*
 * Group commit: a write fails while a sync runs, and its cut back fails.
 * The whole record it left is taken, as a group in flight like any other,
 * never reported stored before a sync covers it; that sync failing, both
 * groups come back to be retried.
 */
static void
test_group_cut_back_fails(void)
{
    struct msg *a = make1("AAA"), *b[2] = { make1("bb"), make1("cc") };
    struct conf cfg;
    void *state = open_held(&cfg);
    size_t accepted;

    ok(sink_file_ops.submit(state, &a, 1, &accepted) == 0 && accepted == 1 && stored == 0,
       "group, cut back fails: one in flight");
    sem_wait(&sync_begun);
    file_writev = failing_writev;
    file_ftruncate = failing_ftruncate;
    fail_errno = ENOSPC;
    fail_after = 3; /* "bb\n" */
    ok(sink_file_ops.submit(state, b, 2, &accepted) == -ENOSPC && accepted == 1 && stored == 0,
       "group, cut back fails: the whole record left is taken, not reported stored");
    file_writev = writev;
    file_ftruncate = ftruncate;
    atomic_store(&is_next_sync_failing, true);
    sem_post(&sync_go);
    poll_until(state, 2);
    ok(stored == 0 && retried == 2,
       "group, cut back fails: the sync fails: both to be retried "
       "(stored %zu, retried %zu)",
       stored, retried);
    close_held(state, &cfg);
    msg_destroy(a);
    msg_destroy_batch(b, 2);
}

/*
 * Group commit: the file cut to nothing by someone else (logrotate's
 * copytruncate) after a sync: a batch written then is not stored before a
 * sync that covers it, however far the earlier one reached.
 */
static void
test_group_truncated(void)
{
    struct msg *a = make1("0123456789"), *b = make1("x");
    struct conf cfg;
    void *state = open_held(&cfg);
    size_t accepted;

    ok(sink_file_ops.submit(state, &a, 1, &accepted) == 0 && accepted == 1,
       "group, truncated: one in flight");
    sem_wait(&sync_begun);
    sem_post(&sync_go);
    poll_until(state, 1);
    ok(stored == 1, "group, truncated: stored after a sync");
    if (truncate(path, 0) != 0) {
        bail_out("truncate %s", path);
    }
    ok(sink_file_ops.submit(state, &b, 1, &accepted) == 0 && accepted == 1,
       "group, truncated: the next one in flight");
    sem_wait(&sync_begun); /* its sync is held */
    sink_file_ops.poll(state, 100);
    ok(stored == 1, "group, truncated: not stored before its sync (stored %zu)", stored);
    sem_post(&sync_go);
    poll_until(state, 2);
    ok(stored == 2 && holds(path, "x\n"), "group, truncated: stored once its sync is done");
    close_held(state, &cfg);
    msg_destroy(a);
    msg_destroy(b);
}

/*
 * Group commit: a failed sync cuts two groups off; a batch offered before
 * the consumer learnt it is not taken, so the two are written again first:
 * the file keeps the order.
 */
static void
test_group_order_after_failure(void)
{
    struct msg *g[3] = { make1("g1"), make1("g2"), make1("g3") };
    struct conf cfg;
    void *state = open_held(&cfg);
    size_t accepted;

    ok(sink_file_ops.submit(state, &g[0], 1, &accepted) == 0 && accepted == 1,
       "group, order: g1 in flight");
    sem_wait(&sync_begun);
    ok(sink_file_ops.submit(state, &g[1], 1, &accepted) == 0 && accepted == 1,
       "group, order: g2 in flight while g1's sync runs");
    atomic_store(&is_next_sync_failing, true);
    sem_post(&sync_go);
    sem_wait(&sync_begun); /* the failed sync is over; the next one is held */
    ok(sink_file_ops.submit(state, &g[2], 1, &accepted) == 0 && accepted == 0,
       "group, order: g3 is not taken while g1 and g2 wait to be retried");
    sem_post(&sync_go);
    poll_until(state, 2);
    ok(retried == 2 && stored == 0, "group, order: g1 and g2 to be retried (retried %zu)", retried);
    ok(sink_file_ops.submit(state, g, 3, &accepted) == 0 && accepted == 3,
       "group, order: all three offered again, in order");
    for (int i = 0; i < 8; i++) {
        sem_post(&sync_go);
    }
    poll_until(state, 5);
    ok(stored == 3 && holds(path, "g1\ng2\ng3\n"), "group, order: stored in order");
    close_held(state, &cfg);
    msg_destroy_batch(g, 3);
}

/* Fails every open with EMFILE. */
static int
failing_open(const char *p, int flags, ...)
{
    (void)p;
    (void)flags;
    errno = EMFILE;
    return -1;
}

static void
test_reopen_retried(void)
{
    char moved[300];
    struct msg *a = make1("old"), *b = make1("new");
    struct conf cfg;
    void *state;
    int err;

    unlink(path);
    snprintf(moved, sizeof(moved), "%s.1", path);
    config(&cfg, CONF_FORMAT_LINES, CONF_FSYNC_NEVER);
    ok(sink_open(env_of(&cfg), &state) == 0, "reopen retried: open");
    ok(rename(path, moved) == 0, "reopen retried: rename");
    file_open = failing_open;
    err = sink_file_ops.reopen(state);
    ok(err == -EMFILE, "reopen retried: the reopen fails (%d)", err);
    ok(sink_write(state, &a, 1, &taken) == 0, "reopen retried: writes go on");
    ((struct sink_file *)state)->last_check_ms = 0; /* the next check is due */
    ok(sink_file_ops.poll(state, 0) == 0 && ((struct sink_file *)state)->is_reopen_due,
       "reopen retried: the next check tries again (and fails again)");
    file_open = open;
    ((struct sink_file *)state)->last_check_ms = 0;
    ok(sink_file_ops.poll(state, 0) == 0, "reopen retried: a flush once open works again");
    ok(sink_write(state, &b, 1, &taken) == 0, "reopen retried: write");
    sink_file_ops.close(state);
    ok(holds(moved, "old\n"), "reopen retried: the rotated file got what came before");
    ok(access(path, F_OK) == 0 && holds(path, "new\n"),
       "reopen retried: the retried reopen opened the new file");
    unlink(moved);
    msg_destroy(a);
    msg_destroy(b);
    conf_free(&cfg);
}

static void
test_deleted(void)
{
    struct msg *a = make1("gone"), *b = make1("after");
    struct conf cfg;
    void *state;

    unlink(path);
    config(&cfg, CONF_FORMAT_LINES, CONF_FSYNC_INTERVAL);
    ok(sink_open(env_of(&cfg), &state) == 0, "deleted: open");
    ok(sink_write(state, &a, 1, &taken) == 0, "deleted: write");
    ok(unlink(path) == 0, "deleted: rm the file");
    ((struct sink_file *)state)->last_check_ms = 0; /* the next check is due */
    ok(sink_write(state, &b, 1, &taken) == 0, "deleted: write");
    sink_file_ops.close(state);
    ok(access(path, F_OK) == 0 && holds(path, "after\n"),
       "deleted: the sink noticed and wrote to a new file");
    msg_destroy(a);
    msg_destroy(b);
    conf_free(&cfg);
}

/*
 * A batch of records of many empty frames: two iovecs a frame would be
 * megabytes of scratch, kept for the sink's lifetime.  It is written in
 * parts instead, and the scratch stays under its ceiling.
 */
static void
test_scratch_ceiling(void)
{
    enum { N = 4, FRAMES = 65535 };
    static size_t lens[FRAMES];
    static const char *frames[FRAMES];
    struct msg *batch[N];
    struct sink_file *f;
    struct conf cfg;
    void *state;
    size_t len;
    char *got;
    int is_right = 1;

    for (size_t i = 0; i < FRAMES; i++) {
        frames[i] = "";
    }
    for (size_t i = 0; i < N; i++) {
        batch[i] = make(FRAMES, frames, lens);
    }
    unlink(path);
    config(&cfg, CONF_FORMAT_LINES, CONF_FSYNC_NEVER);
    ok(sink_open(env_of(&cfg), &state) == 0, "scratch: open");
    f = state;
    ok(sink_write(state, batch, N, &taken) == 0, "scratch: write %d records of %d "
       "empty frames", N, FRAMES);
    ok(f->iov_cap <= IOV_MAX && f->stage_cap <= STAGE_MAX,
       "scratch: %zu iovecs, %zu staged bytes: under the ceiling", f->iov_cap, f->stage_cap);
    sink_file_ops.close(state);
    got = slurp(path, &len);
    for (size_t i = 0; i < len && is_right; i++) {
        is_right = got[i] == ((i + 1) % FRAMES == 0 ? '\n' : ' ');
    }
    ok(len == (size_t)N * FRAMES && is_right, "scratch: the records are written whole");
    free(got);
    for (size_t i = 0; i < N; i++) {
        msg_destroy(batch[i]);
    }
    conf_free(&cfg);
}

/* Holds sink_file_write_lock, as another consumer waiting on a FIFO would. */
static void *
hold_write_lock(void *arg)
{
    pthread_barrier_t *b = arg;

    pthread_mutex_lock(&sink_file_write_lock);
    pthread_barrier_wait(b); /* locked: the test writes */
    pthread_barrier_wait(b); /* the write returned */
    pthread_mutex_unlock(&sink_file_write_lock);
    return NULL;
}

/* Another consumer holds the write lock: a write waits, and gives up at the drain deadline. */
static void
test_lock_wait_aborted(void)
{
    pthread_barrier_t b;
    pthread_t holder;
    static _Atomic bool is_aborted = true;
    struct msg *m = make1("x");
    struct sink_env env = { 0 };
    struct conf cfg;
    void *state;
    int err;

    unlink(path);
    config(&cfg, CONF_FORMAT_LINES, CONF_FSYNC_NEVER);
    env.cfg = &cfg;
    env.is_aborted = &is_aborted;
    ok(sink_open(&env, &state) == 0, "lock wait: open");
    pthread_barrier_init(&b, NULL, 2);
    pthread_create(&holder, NULL, hold_write_lock, &b);
    pthread_barrier_wait(&b);
    err = sink_write(state, &m, 1, &taken);
    pthread_barrier_wait(&b);
    pthread_join(holder, NULL);
    pthread_barrier_destroy(&b);
    ok(err == -ECANCELED && taken == 0,
       "lock wait: a write waiting for the write lock gives up at the drain deadline (%d)", err);
    sink_file_ops.close(state);
    msg_destroy(m);
    conf_free(&cfg);
}

int
main(void)
{
    if (!mkdtemp(dir)) {
        bail_out("mkdtemp");
    }
    snprintf(path, sizeof(path), "%s/out", dir);
    test_lines();
    test_binary();
    test_reopen();
    test_failure();
    test_failure_two_writers();
    test_fifo_without_reader();
    test_many_frames();
    test_big_batch();
    test_cut_back_fails();
    test_cut_back_fails_always();
    test_torn_tail_at_open();
    test_append_only();
    test_sync_error_sticky();
    test_group_commit();
    test_sync_and_cut_fail_always();
    test_group_cut_back_fails();
    test_group_truncated();
    test_group_order_after_failure();
    test_reopen_retried();
    test_deleted();
    test_scratch_ceiling();
    test_lock_wait_aborted();
    unlink(path);
    rmdir(dir);
    return done_testing();
}
