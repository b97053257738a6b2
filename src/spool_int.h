/*
 * spool_int.h - what the spool's two files share: the spill format's
 * header and the directory sync.  Internal to spool.c (the writers) and
 * spool_replay.c (the replay) and their unit test; the contract is spool.h.
 */
#ifndef ZPIPE_SPOOL_INT_H
#define ZPIPE_SPOOL_INT_H

#include "spool.h"

/*
 * Spill format version 2 (spool.h): spool_magic, then records, each the
 * message's identity and receive time (origin, seq, received_ms: 8-byte
 * big-endian numbers) before its binary record.  Version 1 files are binary
 * records from the first byte.  The magic's first 4 bytes, read as version
 * 1, are the header of a frame of 2,136,690,771 bytes followed by more: a
 * version 1 file that began so (only possible with a max_message_size over
 * 2 GiB) would be read as a damaged version 2 file and moved aside, not lost.
 */
#define SPOOL_MAGIC_SIZE 8u
extern const unsigned char spool_magic[SPOOL_MAGIC_SIZE];
#define SPOOL_ID_SIZE 24u /* origin, seq, received_ms before each version 2 record */

/* spool_fsync_dir makes the entries of dir durable.  Returns 0 or a negative errno. */
int spool_fsync_dir(const char *dir);

#endif
