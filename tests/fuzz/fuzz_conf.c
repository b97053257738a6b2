/*
 * fuzz_conf.c - libFuzzer target for the config loader: conf_load() on the
 * input as an ini file (inih, our line reader, the typed value parsers and
 * the cross-key validation).
 *
 * conf_load() takes a path, so the input is written to one memfd, created
 * once, and loaded through /proc/self/fd/N: no file system writes.  Oracle:
 * a failure always comes with a message, and a success is freed by
 * conf_free() (LeakSanitizer checks both paths leave nothing behind).
 */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "conf.h"

static int conf_fd = -1;
static char conf_path[64];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct conf cfg;
    char err[CONF_ERR_MAX];
    int r;

    if (conf_fd < 0) {
        conf_fd = memfd_create("fuzz_conf.ini", MFD_CLOEXEC);
        if (conf_fd < 0) {
            perror("fuzz_conf: memfd_create");
            abort();
        }
        snprintf(conf_path, sizeof(conf_path), "/proc/self/fd/%d", conf_fd);
    }
    if (ftruncate(conf_fd, 0) < 0 || (size > 0 && pwrite(conf_fd, data, size, 0) != (ssize_t)size)) {
        perror("fuzz_conf: write memfd");
        abort();
    }
    err[0] = '\0';
    r = conf_load(&cfg, conf_path, err, sizeof(err));
    if (r < 0) {
        if (err[0] == '\0') {
            abort(); /* every failure must say why */
        }
        return 0;
    }
    if (r != 0 || err[0] != '\0') {
        abort();
    }
    conf_free(&cfg);
    return 0;
}
