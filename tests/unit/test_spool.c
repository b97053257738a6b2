/*
 * test_spool.c - spill files: write, commit, replay, and damaged files
 * (truncated, corrupt, cut short while read) at replay, and when a replayed
 * file goes (once what was pushed from it is stored); names that are not
 * regular files; write failures injected through the writer's writev and
 * ftruncate pointers; dead-letter files and their sync (fdatasync failures
 * injected); spool_dir creation and its lock.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../src/spool.c"
#include "../../src/spool_replay.c"
#include "tap.h"

static char dir[] = "/tmp/zpipe-test-spool-XXXXXX";

#define MAX (1024 * 1024) /* max_size of the replays */

/* What the replay pushed, in order. */
static struct msg *got[16];
static size_t ngot;
static size_t fail_at = (size_t)-1; /* push fails when ngot reaches this */
static struct spool_replay_file *files; /* what the replays read */

static int
collect(void *arg, struct msg *m)
{
    (void)arg;
    if (ngot == fail_at || ngot == sizeof(got) / sizeof(got[0])) {
        return -EPIPE;
    }
    got[ngot++] = m;
    return 0;
}

/* store tells the replay that what it pushed is stored, as a consumer does. */
static void
store(void)
{
    for (size_t i = 0; i < ngot; i++) {
        msg_ack_stored(got[i]);
    }
}

/* Stores and frees what the replays pushed. */
static void
reset(void)
{
    store();
    for (size_t i = 0; i < ngot; i++) {
        msg_destroy(got[i]);
    }
    ngot = 0;
    fail_at = (size_t)-1;
    spool_replay_files_free(files);
    files = NULL;
}

/* Counts the entries of dir whose name starts with prefix and ends with suffix. */
static int
count_files(const char *prefix, const char *suffix, char *first, size_t len)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;

    if (!d) {
        bail_out("opendir %s", dir);
    }
    while ((e = readdir(d))) {
        size_t l = strlen(e->d_name), ls = strlen(suffix);

        if (strncmp(e->d_name, prefix, strlen(prefix)) == 0 && l >= ls &&
            strcmp(e->d_name + l - ls, suffix) == 0) {
            if (n++ == 0 && first) {
                snprintf(first, len, "%s", e->d_name);
            }
        }
    }
    closedir(d);
    return n;
}

static bool
is_msg(const struct msg *m, const char *s)
{
    return m->nframes == 1 && m->size == strlen(s) && memcmp(msg_frame(m, 0).data, s, m->size) == 0;
}

/* A message as zpiped spills them: with an identity (seq counts from 1). */
static struct msg *
new_msg(const void *data, size_t len)
{
    struct msg *m = msg_create_copy(data, len);

    if (m != NULL) {
        msg_id_assign(&m, 1);
    }
    return m;
}

/* Spills "r0".."r{n-1}" into one committed file; returns its name in name. */
static void
spill_n(int n, char *name, size_t len)
{
    spool_writer_t *w;

    if (spool_writer_open(&w, dir, "t") < 0) {
        bail_out("spool_writer_open");
    }
    for (int i = 0; i < n; i++) {
        char buf[16];
        struct msg *m;

        snprintf(buf, sizeof(buf), "r%d", i);
        m = new_msg(buf, strlen(buf));
        if (!m || spool_writer_add(w, m) < 0) {
            bail_out("spool_writer_add");
        }
        msg_destroy(m);
    }
    if (spool_writer_commit(w) < 0 || count_files("spill-", ".zps", name, len) != 1) {
        bail_out("spool_writer_commit");
    }
}

static void
append(const char *name, const void *bytes, size_t len, off_t truncate_by)
{
    char path[512];
    struct stat st;
    int fd;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    fd = open(path, O_WRONLY | O_APPEND);
    if (fd < 0 || fstat(fd, &st) < 0 || ftruncate(fd, st.st_size - truncate_by) < 0 ||
        (len > 0 && write(fd, bytes, len) != (ssize_t)len)) {
        bail_out("append to %s", path);
    }
    close(fd);
}

/* Removes the files (not the directories) a test left in dir. */
static void
empty_dir(void)
{
    DIR *d = opendir(dir);
    struct dirent *e;

    if (!d) {
        bail_out("opendir %s", dir);
    }
    while ((e = readdir(d))) {
        (void)unlinkat(dirfd(d), e->d_name, 0);
    }
    closedir(d);
}

static void
test_round_trip(void)
{
    static const char *const parts[] = { "a", "", "b c" };
    static const size_t lens[] = { 1, 0, 3 };
    struct msg *multi = msg_create(3, lens);
    struct msg *one = new_msg("hello", 5);
    spool_writer_t *w;
    char name[256];
    uint64_t pushed = 0;

    for (size_t i = 0; i < 3; i++) {
        memcpy(msg_frame_data(multi, i), parts[i], lens[i]);
    }
    msg_id_assign(&multi, 1);
    ok(spool_writer_open(&w, dir, "c0") == 0, "writer: open");
    ok(count_files("", "", NULL, 0) == 2, /* . and .. */
       "writer: the prepared file has no name until committed");
    ok(spool_writer_add(w, one) == 0 && spool_writer_add(w, multi) == 0 &&
           spool_writer_count(w) == 2,
       "writer: two records added");
    ok(spool_writer_commit(w) == 0, "writer: commit");
    ok(count_files(".spill-", ".tmp", NULL, 0) == 0 &&
           count_files("spill-", ".zps", name, sizeof(name)) == 1,
       "writer: committed under its final name");
    ok(spool_is_spill_name(name) && !spool_is_spill_name(".spill-1-2-c0-0.tmp") &&
           !spool_is_spill_name("spill-1.zps.bad"),
       "replay reads final names only");
    ok(spool_replay_file(dir, name, MAX, collect, NULL, &pushed, &files) == 0 && pushed == 2 &&
           ngot == 2,
       "replay: both records pushed");
    ok(ngot == 2 && is_msg(got[0], "hello") && got[1]->nframes == 3 &&
           msg_frame(got[1], 1).len == 0 && memcmp(msg_frame(got[1], 2).data, "b c", 3) == 0,
       "replay: records decode to what was spilled, multipart intact");
    ok(count_files("spill-", ".zps", NULL, 0) == 1,
       "replay: the file stays while its records are not stored");
    msg_ack_stored(got[1]);
    ok(count_files("spill-", ".zps", NULL, 0) == 1, "... while one of them is not");
    store();
    ok(count_files("spill-", "", NULL, 0) == 0, "replay: the file is deleted once all are stored");
    reset();
    msg_destroy(one);
    msg_destroy(multi);

    ok(spool_writer_open(&w, dir, "c1") == 0 && spool_writer_commit(w) == 0 &&
           count_files("", "", NULL, 0) == 2, /* . and .. */
       "writer: an empty spill leaves no file");
}

/*
 * Identities: a version 2 file keeps every message's (origin, seq,
 * received_ms), whoever's run it came from; a version 1 file (built here
 * byte by byte as zpiped wrote them before identities) still replays, each
 * message with a new identity of this run, in order.
 */
static void
test_identity(void)
{
    static const unsigned char v1[] = { 0,    0, 0, 2, 'o', '1',               /* "o1" */
                                        0x80, 0, 0, 1, 'a', 0,   0, 0, 1, 'b', /* "a" "b" */
                                        0,    0, 0, 2, 'o', '3' };             /* "o3" */
    struct msg *a = new_msg("a", 1), *b = new_msg("b", 1);
    spool_writer_t *w;
    char name[256], path[512];
    unsigned char head[8];
    uint64_t pushed = 0, seq;
    int fd;

    if (!a || !b || msg_id_init() < 0) {
        bail_out("setup");
    }
    a->id = (struct msg_id){ 0x0123456789abcdefull, 7 };
    a->received_ms = 1700000000123ull;
    b->id = (struct msg_id){ UINT64_MAX, UINT64_MAX - 1 };
    b->received_ms = 5;
    if (spool_writer_open(&w, dir, "id") < 0 || spool_writer_add(w, a) < 0 ||
        spool_writer_add(w, b) < 0 || spool_writer_commit(w) < 0 ||
        count_files("spill-", ".zps", name, sizeof(name)) != 1) {
        bail_out("spill");
    }
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    fd = open(path, O_RDONLY);
    ok(fd >= 0 && read(fd, head, sizeof(head)) == 8 && memcmp(head, "\xffZPS\0\0\0\2", 8) == 0,
       "a spill file begins with the version 2 magic");
    if (fd >= 0) {
        close(fd);
    }
    ok(spool_replay_file(dir, name, MAX, collect, NULL, &pushed, &files) == 0 && pushed == 2 &&
           is_msg(got[0], "a") && is_msg(got[1], "b"),
       "version 2: both records replayed");
    ok(ngot == 2 && got[0]->id.origin == a->id.origin && got[0]->id.seq == 7 &&
           got[0]->received_ms == a->received_ms && got[1]->id.origin == UINT64_MAX &&
           got[1]->id.seq == UINT64_MAX - 1 && got[1]->received_ms == 5,
       "version 2: replay keeps each identity and receive time");
    reset();

    fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0640);
    if (fd < 0 || write(fd, v1, sizeof(v1)) != (ssize_t)sizeof(v1)) {
        bail_out("write %s", path);
    }
    close(fd);
    pushed = 0;
    ok(spool_replay_file(dir, name, MAX, collect, NULL, &pushed, &files) == 0 && pushed == 3 &&
           is_msg(got[0], "o1") && got[1]->nframes == 2 && is_msg(got[2], "o3"),
       "version 1: still replayed, multipart intact");
    seq = ngot == 3 ? got[0]->id.seq : 0;
    ok(ngot == 3 && got[0]->id.origin == msg_id_origin() && got[2]->id.origin == msg_id_origin() &&
           seq > 0 && got[1]->id.seq == seq + 1 && got[2]->id.seq == seq + 2 &&
           got[0]->received_ms > 0,
       "version 1: each message gets a new identity of this run, in order");
    store();
    ok(count_files("spill-", "", NULL, 0) == 0, "version 1: the file is deleted once stored");
    reset();
    msg_destroy(a);
    msg_destroy(b);
}

static void
test_damaged(void)
{
    static const unsigned char huge[] = { 0x7f, 0xff, 0xff, 0xff, 'x', 'y' };
    static const unsigned char zeros[84];
    char name[256];
    uint64_t pushed = 0;

    spill_n(3, name, sizeof(name));
    append(name, NULL, 0, 2); /* cut the last record short */
    ok(spool_replay_file(dir, name, MAX, collect, NULL, &pushed, &files) == 0 && pushed == 2 &&
           is_msg(got[0], "r0") && is_msg(got[1], "r1"),
       "truncated: the whole records before the cut are replayed");
    ok(count_files("spill-", ".zps", NULL, 0) == 1 &&
           count_files("spill-", ".zps.bad", NULL, 0) == 0,
       "truncated: the file stays while those are not stored");
    store();
    ok(count_files("spill-", ".zps", NULL, 0) == 0 &&
           count_files("spill-", ".zps.bad", NULL, 0) == 1,
       "truncated: the file is moved aside as .bad, not deleted");
    reset();

    spill_n(2, name, sizeof(name));
    append(name, huge, sizeof(huge), 0);
    pushed = 0;
    ok(spool_replay_file(dir, name, MAX, collect, NULL, &pushed, &files) == 0 && pushed == 2 &&
           is_msg(got[1], "r1"),
       "corrupt: the valid records before the garbage are replayed");
    store();
    ok(count_files("spill-", ".zps.bad", NULL, 0) == 2, "corrupt: the file is moved aside");
    reset();

    /* A tail of zeros (left by a crash on some file systems) reads as
     * records of no bytes with seq 0, which zpiped never gives. */
    spill_n(2, name, sizeof(name));
    append(name, zeros, sizeof(zeros), 0);
    pushed = 0;
    ok(spool_replay_file(dir, name, MAX, collect, NULL, &pushed, &files) == 0 && pushed == 2 &&
           is_msg(got[0], "r0") && is_msg(got[1], "r1"),
       "a tail of zeros: only the records before it are replayed");
    store();
    ok(count_files("spill-", ".zps.bad", NULL, 0) == 3, "a tail of zeros: the file is moved aside");
    reset();

    spill_n(3, name, sizeof(name));
    fail_at = 1;
    pushed = 0;
    ok(spool_replay_file(dir, name, MAX, collect, NULL, &pushed, &files) == -EPIPE && pushed == 1,
       "a failed push stops the replay of the file");
    store();
    ok(count_files("spill-", ".zps", NULL, 0) == 1,
       "a file not wholly queued stays, though what was pushed is stored");
    reset();
}

/* Pushes and frees; on the first push cuts the file being read to cut_to bytes. */
static const char *cut_path;
static off_t cut_to;
static uint64_t counted;

static int
cutting_push(void *arg, struct msg *m)
{
    (void)arg;
    if (counted++ == 0 && truncate(cut_path, cut_to) < 0) {
        bail_out("truncate %s", cut_path);
    }
    msg_ack_stored(m);
    msg_destroy(m);
    return 0;
}

static void
test_cut_while_read(void)
{
    enum { N = 40000 }; /* ~280 KB: more than one read */
    spool_writer_t *w;
    char name[256], path[512];
    uint64_t pushed = 0;

    if (spool_writer_open(&w, dir, "big") < 0) {
        bail_out("spool_writer_open");
    }
    for (int i = 0; i < N; i++) {
        struct msg *m = new_msg("record", 6);

        if (!m || spool_writer_add(w, m) < 0) {
            bail_out("spool_writer_add");
        }
        msg_destroy(m);
    }
    if (spool_writer_commit(w) < 0 || count_files("spill-", ".zps", name, sizeof(name)) != 1) {
        bail_out("spool_writer_commit");
    }
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    cut_path = path;
    cut_to = 15; /* in the middle of the second record */
    counted = 0;
    ok(spool_replay_file(dir, name, MAX, cutting_push, NULL, &pushed, &files) == 0 && pushed > 0 &&
           pushed < N && pushed == counted,
       "cut short while read: no crash, the records read before are pushed");
    ok(count_files("spill-", ".zps", NULL, 0) == 0 &&
           count_files("spill-", ".zps.bad", NULL, 0) == 1,
       "cut short while read: the file is moved aside");
    spool_replay_files_free(files);
    files = NULL;
    empty_dir();
}

static void
test_big_records(void)
{
    size_t len = 300 * 1024; /* more than the first read buffer */
    char *big = malloc(len);
    struct msg *m;
    spool_writer_t *w;
    char name[256];
    uint64_t pushed = 0;

    if (!big) {
        bail_out("malloc");
    }
    memset(big, 'b', len);
    m = new_msg(big, len);
    if (!m || spool_writer_open(&w, dir, "c2") < 0 || spool_writer_add(w, m) < 0 ||
        spool_writer_add(w, m) < 0 || spool_writer_commit(w) < 0 ||
        count_files("spill-", ".zps", name, sizeof(name)) != 1) {
        bail_out("spill two big records");
    }
    ok(spool_replay_file(dir, name, MAX, collect, NULL, &pushed, &files) == 0 && pushed == 2 &&
           got[1]->size == len && memcmp(msg_frame(got[1], 0).data, big, len) == 0,
       "replay: records larger than the read buffer come back whole");
    reset();

    if (spool_writer_open(&w, dir, "c3") < 0 || spool_writer_add(w, m) < 0 ||
        spool_writer_commit(w) < 0 || count_files("spill-", ".zps", name, sizeof(name)) != 1) {
        bail_out("spill a big record");
    }
    pushed = 0;
    ok(spool_replay_file(dir, name, len - 1, collect, NULL, &pushed, &files) == 0 && pushed == 0 &&
           count_files("spill-", ".zps.bad", NULL, 0) == 1,
       "replay: a record over max_size is damage (moved aside), not an allocation");
    reset();
    empty_dir();
    msg_destroy(m);
    free(big);
}

static void
test_not_regular(void)
{
    char name[256], path[512], target[600];
    uint64_t pushed = 0;
    struct stat st;

    snprintf(path, sizeof(path), "%s/spill-1-fifo.zps", dir);
    if (mkfifo(path, 0600) < 0) {
        bail_out("mkfifo");
    }
    ok(spool_replay_file(dir, "spill-1-fifo.zps", MAX, collect, NULL, &pushed, &files) == 0 &&
           pushed == 0 && count_files("spill-1-fifo.zps.bad", "", NULL, 0) == 1,
       "a FIFO is not opened for reading (no wait for a writer) and is moved aside");

    spill_n(2, name, sizeof(name));
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    snprintf(target, sizeof(target), "%s.target", path);
    if (rename(path, target) < 0 || symlink(target, path) < 0) {
        bail_out("symlink");
    }
    ok(spool_replay_file(dir, name, MAX, collect, NULL, &pushed, &files) == 0 && pushed == 0 &&
           ngot == 0 && lstat(target, &st) == 0 && S_ISREG(st.st_mode),
       "a symlink is not followed: nothing pushed, its target left alone");
    ok(count_files("spill-", ".zps", NULL, 0) == 0 &&
           count_files("spill-", ".zps.bad", NULL, 0) == 2,
       "the symlink is moved aside");
    reset();
    empty_dir();
}

/* writev that writes fail_after bytes once, then fails with EIO. */
static size_t fail_after;

static ssize_t
failing_writev(int fd, const struct iovec *iov, int iovcnt)
{
    (void)iovcnt;
    if (fail_after > 0) {
        size_t n = iov[0].iov_len < fail_after ? iov[0].iov_len : fail_after;

        fail_after = 0;
        return write(fd, iov[0].iov_base, n);
    }
    errno = EIO;
    return -1;
}

static int
failing_ftruncate(int fd, off_t len)
{
    (void)fd;
    (void)len;
    errno = EIO;
    return -1;
}

static void
test_write_failures(void)
{
    struct msg *a = new_msg("aaaa", 4), *b = new_msg("bbbbbbbb", 8);
    spool_writer_t *w;
    char name[256];
    uint64_t pushed = 0;

    if (!a || !b || spool_writer_open(&w, dir, "f") < 0 || spool_writer_add(w, a) < 0) {
        bail_out("writer");
    }
    spool_writev = failing_writev;
    fail_after = 6; /* header and half of b */
    ok(spool_writer_add(w, b) == -EIO && !spool_writer_is_broken(w) && spool_writer_count(w) == 1,
       "a failed write is cut back: the writer goes on");
    spool_writev = writev;
    ok(spool_writer_add(w, a) == 0 && spool_writer_count(w) == 2, "... and takes the next record");

    spool_writev = failing_writev;
    spool_ftruncate = failing_ftruncate;
    fail_after = 6;
    ok(spool_writer_add(w, b) == -EIO && spool_writer_is_broken(w),
       "a failed write that cannot be cut back breaks the writer");
    spool_writev = writev;
    ok(spool_writer_add(w, a) == -EIO && spool_writer_count(w) == 2,
       "a broken writer takes no more records (nothing after a torn one)");
    ok(spool_writer_commit(w) == 0 && count_files("spill-", ".zps", name, sizeof(name)) == 1,
       "a broken writer still commits the records it took");
    spool_ftruncate = ftruncate;
    ok(spool_replay_file(dir, name, MAX, collect, NULL, &pushed, &files) == 0 && pushed == 2 &&
           is_msg(got[0], "aaaa") && is_msg(got[1], "aaaa"),
       "... and replay gives back exactly those, none twice or torn");
    store();
    ok(count_files("spill-", ".zps", NULL, 0) == 0,
       "... and deletes the file once they are stored");
    reset();
    empty_dir();
    msg_destroy(a);
    msg_destroy(b);
}

static int
failing_fdatasync(int fd)
{
    (void)fd;
    errno = EIO;
    return -1;
}

/* The size of dir/name, or -1. */
static off_t
file_size(const char *name)
{
    char path[512];
    struct stat st;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    return stat(path, &st) == 0 ? st.st_size : -1;
}

static void
test_dead_letter_sync(void)
{
    struct msg *a = new_msg("aaaa", 4), *b = new_msg("bbbbbbbb", 8);
    off_t la, lb;
    struct dirent **names = NULL;
    spool_writer_t *w;
    char name[256];

    if (!a || !b) {
        bail_out("msg_create_copy");
    }
    la = (off_t)msg_binary_size(a);
    lb = (off_t)msg_binary_size(b);

    ok(spool_writer_open_dead_letter(&w, dir) == 0 && spool_writer_add(w, a) == 0 &&
           spool_writer_add(w, b) == 0 && spool_writer_name(w) == NULL &&
           count_files("deadletter-", "", NULL, 0) == 0,
       "dead letter: two records added, no name before the first sync");
    ok(spool_writer_sync(w) == 0 && count_files("deadletter-", ".zpd", name, sizeof(name)) == 1 &&
           spool_writer_name(w) && strcmp(name, spool_writer_name(w)) == 0 &&
           file_size(name) == la + lb,
       "sync: the file is visible as deadletter-*.zpd with both records (%s)", name);
    ok(!spool_is_spill_name(name) && scandir(dir, &names, spill_filter, NULL) == 0,
       "... a name replay never reads");
    free(names);

    spool_fdatasync = failing_fdatasync;
    ok(spool_writer_add(w, a) == 0 && spool_writer_sync(w) == -EIO &&
           spool_writer_count(w) == 2 && !spool_writer_is_broken(w) && file_size(name) == la + lb,
       "a failed fdatasync: the error is returned, the unsynced record cut off");
    spool_fdatasync = fdatasync;
    ok(spool_writer_add(w, b) == 0 && spool_writer_sync(w) == 0 && spool_writer_count(w) == 3 &&
           file_size(name) == la + 2 * lb,
       "... the writer goes on in the same file");

    spool_fdatasync = failing_fdatasync;
    spool_ftruncate = failing_ftruncate;
    ok(spool_writer_add(w, a) == 0 && spool_writer_sync(w) == -EIO && spool_writer_is_broken(w) &&
           spool_writer_add(w, a) == -EIO && spool_writer_count(w) == 3,
       "a failed sync that cannot be cut back breaks the writer: nothing more is added");
    spool_fdatasync = fdatasync;
    spool_ftruncate = ftruncate;
    ok(spool_writer_commit(w) == 0 && count_files("deadletter-", ".zpd", NULL, 0) == 1,
       "commit closes it; the file stays");
    empty_dir();

    spool_fdatasync = failing_fdatasync;
    ok(spool_writer_open_dead_letter(&w, dir) == 0 && spool_writer_add(w, a) == 0 &&
           spool_writer_sync(w) == -EIO && spool_writer_count(w) == 0 &&
           spool_writer_name(w) == NULL && count_files("deadletter-", "", NULL, 0) == 0,
       "a failed first sync: no name, nothing counted");
    spool_fdatasync = fdatasync;
    ok(spool_writer_commit(w) == 0 && count_files("", "", NULL, 0) == 2,
       "... and commit drops the empty file");
    empty_dir();
    msg_destroy(a);
    msg_destroy(b);
}

static void
test_lock(void)
{
    char path[512];
    int fd, fd2 = -1;

    snprintf(path, sizeof(path), "%s/locked", dir);
    ok(spool_dir_lock(path, &fd) == 0, "spool_dir_lock creates, locks and checks the dir");
    ok(count_files("", "", NULL, 0) == 3, "... leaving nothing in the spool but the dir");
    ok(spool_dir_lock(path, &fd2) == SPOOL_LOCKED, "a second lock on the same dir is refused");
    close(fd);
    ok(spool_dir_lock(path, &fd2) == 0, "once the holder lets go, it can be locked again");
    close(fd2);
    if (geteuid() != 0) {
        snprintf(path, sizeof(path), "%s/ro", dir);
        if (mkdir(path, 0555) < 0) {
            bail_out("mkdir %s", path);
        }
        ok(spool_dir_lock(path, &fd) == -EACCES, "a dir that is not writable is refused");
    } else {
        diag("root writes to any dir: an unwritable one is tested by 232-spool-unwritable.sh");
    }
}

static void
test_dir_create(void)
{
    char path[512];
    struct stat st;

    snprintf(path, sizeof(path), "%s/a/b/c", dir);
    ok(spool_dir_create(path) == 0 && stat(path, &st) == 0 && S_ISDIR(st.st_mode) &&
           (st.st_mode & 0777) == 0750,
       "spool_dir_create makes missing parents, mode 0750");
    ok(spool_dir_create(path) == 0, "spool_dir_create accepts an existing dir");
}

int
main(void)
{
    if (!mkdtemp(dir)) {
        bail_out("mkdtemp");
    }
    umask(0);
    test_round_trip();
    test_identity();
    test_damaged();
    empty_dir();
    test_cut_while_read();
    test_big_records();
    test_not_regular();
    test_write_failures();
    test_dead_letter_sync();
    test_lock();
    test_dir_create();
    {
        char cmd[128];

        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
        if (system(cmd) != 0) {
            diag("could not remove %s", dir);
        }
    }
    return done_testing();
}
