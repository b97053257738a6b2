/*
 * decode_records - print a file of binary records as text, for the tests.
 *
 *   decode_records [FILE]      (standard input when FILE is absent or "-")
 *
 * The binary format (file sink "binary", spill files): each frame is a
 * 4-byte big-endian length and then its bytes; the top bit of the length is
 * set on every frame of a record except the last.
 *
 * Output: one line per record, its frames joined by '|'.  Within a frame the
 * bytes 0x20..0x7e are printed as they are, except '\' and '|'; every other
 * byte is written as \xHH (lower case).  So the text is unambiguous: a
 * record of one empty frame is an empty line, two empty frames are "|".
 * zmq_client's --records files use the same form, so a test can diff what it
 * sent with what the sink wrote.
 *
 * Exit 0 when the input is a whole number of records; exit 1, after printing
 * the records before it, when it ends inside a record (the message names the
 * offset); exit 2 on usage or I/O errors.
 */
#include "config.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int
read_all(FILE *f, unsigned char **out, size_t *out_len)
{
    size_t cap = 1 << 16, len = 0;
    unsigned char *buf = malloc(cap);

    if (!buf) {
        return -ENOMEM;
    }
    for (;;) {
        size_t n;

        if (len == cap) {
            unsigned char *nbuf = realloc(buf, cap * 2);

            if (!nbuf) {
                free(buf);
                return -ENOMEM;
            }
            buf = nbuf;
            cap *= 2;
        }
        n = fread(buf + len, 1, cap - len, f);
        len += n;
        if (n == 0) {
            break;
        }
    }
    if (ferror(f)) {
        free(buf);
        return -EIO;
    }
    *out = buf;
    *out_len = len;
    return 0;
}

static uint32_t
read_be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static void
print_frame(const unsigned char *p, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = p[i];

        if (c >= 0x20 && c <= 0x7e && c != '\\' && c != '|') {
            putchar(c);
        } else {
            printf("\\x%02x", c);
        }
    }
}

int
main(int argc, char **argv)
{
    const char *name = "-";
    FILE *f = stdin;
    unsigned char *buf;
    size_t len, off = 0;
    unsigned long records = 0;
    int r;

    if (argc > 2 || (argc == 2 && argv[1][0] == '-' && argv[1][1] != '\0')) {
        fprintf(stderr, "usage: decode_records [FILE]\n");
        return 2;
    }
    if (argc == 2 && strcmp(argv[1], "-") != 0) {
        name = argv[1];
        f = fopen(name, "rb");
        if (!f) {
            fprintf(stderr, "decode_records: open %s: %s\n", name, strerror(errno));
            return 2;
        }
    }
    r = read_all(f, &buf, &len);
    if (f != stdin) {
        fclose(f);
    }
    if (r < 0) {
        fprintf(stderr, "decode_records: read %s: %s\n", name, strerror(-r));
        return 2;
    }

    while (off < len) {
        size_t rec_start = off, end = off;
        uint32_t hdr;

        /* Find the record's end first, so a truncated record prints nothing. */
        do {
            size_t flen;

            if (len - end < 4) {
                fflush(stdout);
                fprintf(stderr,
                        "decode_records: %s: truncated frame header at offset %zu "
                        "(record %lu starts at offset %zu)\n",
                        name, end, records + 1, rec_start);
                free(buf);
                return 1;
            }
            hdr = read_be32(buf + end);
            flen = hdr & 0x7fffffffu;
            if (len - end - 4 < flen) {
                fflush(stdout);
                fprintf(stderr,
                        "decode_records: %s: truncated frame at offset %zu: length %zu, "
                        "%zu bytes left (record %lu starts at offset %zu)\n",
                        name, end, flen, len - end - 4, records + 1, rec_start);
                free(buf);
                return 1;
            }
            end += 4 + flen;
        } while (hdr & 0x80000000u);

        while (off < end) {
            hdr = read_be32(buf + off);
            if (off > rec_start) {
                putchar('|');
            }
            print_frame(buf + off + 4, hdr & 0x7fffffffu);
            off += 4 + (hdr & 0x7fffffffu);
        }
        putchar('\n');
        records++;
    }
    free(buf);
    if (fflush(stdout) != 0) {
        fprintf(stderr, "decode_records: write: %s\n", strerror(errno));
        return 2;
    }
    return 0;
}
