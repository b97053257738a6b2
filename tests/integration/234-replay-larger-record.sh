#!/bin/sh
# 234: a spill file written under a larger queue.max_bytes than today's
# still replays whole.  The spool holds a record of 300 KiB (spilled, say,
# before max_bytes was lowered) and a small one; zpiped now runs with
# max_bytes = 256K.  Replay bounds a record by its file, not by today's
# limits, and the queue takes a message larger than max_bytes while it is
# empty: both records reach the sink, once, and nothing is moved aside.
. "$(dirname "$0")/lib.sh"
setup

SPOOL=$ZP_TMP/spool
big=307200 # 0x04b000 bytes

{
    printf '\000\004\260\000'
    head -c "$big" /dev/zero | tr '\0' x
    binary_records small
} > "$SPOOL/spill-0000000000001-1-c0-0.zps"

# One consumer: the order of the two records in the sink is then the replay's.
write_config "$ZP_CONF" queue.max_bytes=256K input.max_message_size=128K output.threads=1
start_zpiped || bail "zpiped did not become ready"
ok "zpiped is ready with a spill file holding a record larger than max_bytes"
check "the replay leaves no spill-*.zps behind" wait_until 30 "the spill file" replay_done "$SPOOL"
stop_zpiped
check "zpiped exits 0 (status $ZP_STATUS)" test "$ZP_STATUS" -eq 0
check "accounting: replayed 2, delivered 2" \
    check_accounting received=0 replayed=2 delivered=2 spilled=0 queued=0 in_flight=0
check "the sink holds the big record whole, then the small one" \
    test "$(awk '{ print length($0) }' "$ZP_SINK" | tr '\n' ' ')" = "$big 5 "
check "nothing is moved aside" test -z "$(ls "$SPOOL" | grep '\.bad$')"
check "no errors in the log" check_log

done_testing
