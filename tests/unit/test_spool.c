/*
 * test_spool.c - spill files: write, commit, replay, and damaged files
 * (truncated, corrupt) at replay; spool_dir creation.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../src/spool.h"
#include "tap.h"

static char dir[] = "/tmp/zpipe-test-spool-XXXXXX";

/* What the replay pushed, in order. */
static struct msg *got[16];
static size_t ngot;
static size_t fail_at = (size_t)-1; /* push fails when ngot reaches this */

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

static void
reset(void)
{
    for (size_t i = 0; i < ngot; i++) {
        msg_destroy(got[i]);
    }
    ngot = 0;
    fail_at = (size_t)-1;
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
    return m->nframes == 1 && m->size == strlen(s) && memcmp(m->frames[0].data, s, m->size) == 0;
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
        m = msg_create_copy(buf, strlen(buf));
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

static void
test_round_trip(void)
{
    static const char *const parts[] = { "a", "", "b c" };
    static const size_t lens[] = { 1, 0, 3 };
    struct msg *multi = msg_create(3, lens);
    struct msg *one = msg_create_copy("hello", 5);
    spool_writer_t *w;
    char name[256];
    uint64_t pushed = 0;

    for (size_t i = 0; i < 3; i++) {
        memcpy(msg_frame_data(multi, i), parts[i], lens[i]);
    }
    ok(spool_writer_open(&w, dir, "c0") == 0, "writer: open");
    ok(count_files(".spill-", ".tmp", NULL, 0) == 1 && count_files("spill-", ".zps", NULL, 0) == 0,
       "writer: the file has a temporary name until committed");
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
    ok(spool_replay_file(dir, name, collect, NULL, &pushed) == 0 && pushed == 2 && ngot == 2,
       "replay: both records pushed");
    ok(ngot == 2 && is_msg(got[0], "hello") && got[1]->nframes == 3 && got[1]->frames[1].len == 0 &&
           memcmp(got[1]->frames[2].data, "b c", 3) == 0,
       "replay: records decode to what was spilled, multipart intact");
    ok(count_files("spill-", "", NULL, 0) == 0, "replay: the file is deleted once all is queued");
    reset();
    msg_destroy(one);
    msg_destroy(multi);

    ok(spool_writer_open(&w, dir, "c1") == 0 && spool_writer_commit(w) == 0 &&
           count_files("", "", NULL, 0) == 2, /* . and .. */
       "writer: an empty spill leaves no file");
}

static void
test_damaged(void)
{
    static const unsigned char huge[] = { 0x7f, 0xff, 0xff, 0xff, 'x', 'y' };
    char name[256];
    uint64_t pushed = 0;

    spill_n(3, name, sizeof(name));
    append(name, NULL, 0, 2); /* cut the last record short */
    ok(spool_replay_file(dir, name, collect, NULL, &pushed) == 0 && pushed == 2 &&
           is_msg(got[0], "r0") && is_msg(got[1], "r1"),
       "truncated: the whole records before the cut are replayed");
    ok(count_files("spill-", ".zps", NULL, 0) == 0 &&
           count_files("spill-", ".zps.bad", NULL, 0) == 1,
       "truncated: the file is moved aside as .bad, not deleted");
    reset();

    spill_n(2, name, sizeof(name));
    append(name, huge, sizeof(huge), 0);
    pushed = 0;
    ok(spool_replay_file(dir, name, collect, NULL, &pushed) == 0 && pushed == 2 &&
           is_msg(got[1], "r1"),
       "corrupt: the valid records before the garbage are replayed");
    ok(count_files("spill-", ".zps.bad", NULL, 0) == 2, "corrupt: the file is moved aside");
    reset();

    spill_n(3, name, sizeof(name));
    fail_at = 1;
    pushed = 0;
    ok(spool_replay_file(dir, name, collect, NULL, &pushed) == -EPIPE && pushed == 1,
       "a failed push stops the replay of the file");
    ok(count_files("spill-", ".zps", NULL, 0) == 1, "a file not wholly queued stays");
    reset();
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
    test_damaged();
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
