#!/bin/sh
# 242: a sink file deleted under zpiped without SIGHUP.  zpiped notices
# within seconds, logs it and reopens the path: the messages sent afterwards
# land in the new file, not in the deleted inode.  (The ones written before
# are gone with the deleted file: the operator's doing, which the log says.)
# Then the same under a steady load with ack = stored, where the file sink
# always has batches in flight waiting for their sync (the group commit):
# the file is renamed away, and zpiped reopens the path once the batches
# in flight are synced; the old and the new file together hold every
# message answered OK exactly once.  Last, a path zpiped cannot open at
# start.
. "$(dirname "$0")/lib.sh"
setup

write_config "$ZP_CONF" input.mode=router daemon.stats_interval=50ms
start_zpiped || bail "zpiped did not become ready"
ok "zpiped is ready"

# send PREFIX: 3 messages in router mode, all answered OK.
send() {
    "$ZMQ_CLIENT" dealer -n 3 -p "$1" --out "$ZP_TMP/ok.$1" "$ZP_EP" > /dev/null
}
# delivered_is N: STATUS= says N messages were delivered.
delivered_is() {
    [ "$(status_field delivered)" = "$1" ]
}
check "3 messages are answered OK" send before-
check "and delivered" wait_until 60 "delivered 3" delivered_is 3
check "the sink file holds them" test "$(line_count "$ZP_SINK")" -eq 3

rm "$ZP_SINK"
check "zpiped notices the deleted file, and the log says so" \
    wait_until 30 "'was deleted or replaced' in the log" \
    grep -q "sink file: $ZP_SINK was deleted or replaced (no SIGHUP): reopened" "$ZP_LOG"
check "the sink file exists again" wait_until 30 "$ZP_SINK to exist" test -e "$ZP_SINK"

check "3 more messages are answered OK" send after-
check "and delivered" wait_until 60 "delivered 6" delivered_is 6
stop_zpiped
check "SIGTERM: zpiped exits 0 (status $ZP_STATUS)" test "$ZP_STATUS" -eq 0

"$ZMQ_CLIENT" gen -n 3 -p "after-" > "$ZP_TMP/expected"
check "the new sink file holds the 3 new messages exactly once" \
    same_messages "$ZP_TMP/expected" "$ZP_SINK"
check "accounting: received = delivered = 6" \
    check_accounting received=6 delivered=6 spilled=0 queued=0 in_flight=0
check "no unexpected lines in the log" check_log

# ---- ack = stored: the path replaced while batches wait for their sync.
N=30000
rm -f "$ZP_SINK"
write_config "$ZP_CONF" input.mode=router input.ack=stored file.fsync=interval \
    daemon.stats_interval=50ms
start_zpiped || bail "zpiped (ack = stored) did not become ready"
ok "zpiped is ready (ack = stored, fsync = interval)"
start_client load dealer -n "$N" -p "load-" --rate 6000 --window 200 --timeout 120000 \
    --out "$ZP_TMP/ok.load" "$ZP_EP"
grown() {
    [ -e "$ZP_SINK" ] && [ "$(line_count "$ZP_SINK")" -ge 3000 ]
}
check "the sink file grows under the load" wait_until 60 "3000 lines" grown
mv "$ZP_SINK" "$ZP_SINK.old"
# Mostly with batches in flight ("reopening it once the batches in flight
# are synced"), or between two ("reopened"), as the timing falls.
check "zpiped notices the renamed file under the load, and says so" \
    wait_until 30 "'was deleted or replaced' in the log" \
    grep -q "sink file: $ZP_SINK was deleted or replaced (no SIGHUP): reopen" "$ZP_LOG"
check "the sink file exists again under the load" wait_until 30 "$ZP_SINK to exist" test -e "$ZP_SINK"
check "the client got OK for all $N" wait_clients 180
stop_zpiped
check "SIGTERM: zpiped exits 0 (status $ZP_STATUS)" test "$ZP_STATUS" -eq 0
check "the new file is used: it holds messages" test "$(line_count "$ZP_SINK")" -gt 0
check "the old and the new file hold every message answered OK, each once" \
    same_messages "$ZP_TMP/ok.load" "$ZP_SINK.old" "$ZP_SINK"
check "no unexpected lines in the log (ack = stored)" check_log

# A path whose directory does not exist: zpiped does not start, and says
# which path it could not open.
write_config "$ZP_TMP/nodir.ini" "file.path=$ZP_TMP/nodir/sink.log"
"$ZPIPED" -c "$ZP_TMP/nodir.ini" > "$ZP_TMP/nodir.out" 2>&1 < /dev/null
st=$?
check "file.path in a missing directory: zpiped exits 1 (status $st)" test "$st" -eq 1
check "... and the log names the path" \
    grep -q "sink file: open $ZP_TMP/nodir/sink.log: No such file or directory" "$ZP_TMP/nodir.out"

done_testing
