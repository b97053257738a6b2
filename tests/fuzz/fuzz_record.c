/*
 * fuzz_record.c - libFuzzer target for the binary record decoder
 * (msg_decode_binary), the parser of the binary file format and of spill
 * files.
 *
 * The input is decoded twice, record after record until it is consumed or
 * refused:
 *   1. as spool_replay_file() reads a spill file: max_size is the bytes left,
 *      and -EAGAIN or -EBADMSG ends the file;
 *   2. with a fixed 64 KiB limit, as a reader with a payload cap would.
 * spool.c has no buffer-level entry point (it mmaps a file by name), so its
 * decode loop is mirrored here rather than called.
 *
 * Oracle: the binary encoding is canonical, so every decoded record must
 * re-encode to exactly the bytes it was decoded from, and must respect the
 * limits msg.h promises.
 */
#include "config.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "msg.h"

/* check_record aborts unless m is exactly buf[0..used) re-encoded, within max_size. */
static void
check_record(const struct msg *m, const uint8_t *buf, size_t used, size_t max_size)
{
    unsigned char *enc;
    size_t total = 0;

    if (m->nframes == 0 || m->nframes > MSG_FRAMES_MAX || m->size > max_size) {
        abort();
    }
    for (size_t i = 0; i < m->nframes; i++) {
        total += msg_frame(m, i).len;
    }
    if (total != m->size || msg_binary_size(m) != used) {
        abort();
    }
    enc = malloc(used);
    if (enc == NULL) {
        abort();
    }
    if (msg_encode_binary(m, enc) != used || memcmp(enc, buf, used) != 0) {
        abort();
    }
    free(enc);
}

/* decode_all decodes buf[0..len) record by record; max_size 0 means "the bytes left". */
static void
decode_all(const uint8_t *buf, size_t len, size_t max_size)
{
    size_t off = 0;

    while (off < len) {
        size_t limit = max_size != 0 ? max_size : len - off;
        struct msg *m = NULL;
        size_t used = 0;
        int r = msg_decode_binary(buf + off, len - off, limit, &m, &used);

        if (r == -EAGAIN || r == -EBADMSG || r == -ENOMEM) {
            if (m != NULL || used != 0) {
                abort(); /* *out and *used are set only on success */
            }
            return;
        }
        if (r != 0 || m == NULL || used < MSG_HEADER_SIZE || used > len - off) {
            abort();
        }
        check_record(m, buf + off, used, limit);
        msg_destroy(m);
        off += used;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    decode_all(data, size, 0);
    decode_all(data, size, 64 * 1024);
    return 0;
}
