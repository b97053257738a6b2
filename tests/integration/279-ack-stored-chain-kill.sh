#!/bin/sh
# 279: an OK that means stored end to end, across a crash downstream.  A
# chain A (router, ack = stored, zmq sink in dealer mode) -> B (router,
# ack = stored, file sink with fsync = interval): A answers a client only
# once B answered A, and B answers only once the message is in its file
# and synced.  B is killed with SIGKILL mid-stream, twice, and restarted on
# the same endpoint; A resends what B never answered.  Every message A's
# clients got OK for is in B's file (duplicates are allowed: A resends what
# it sent to the dead B, which may have stored it), nothing else is, no
# line is torn, and A ends with everything delivered and nothing spilled.
. "$(dirname "$0")/lib.sh"
setup

N=20000
SIZE=64
BEP=ipc://$ZP_TMP/b
BOUT=$ZP_TMP/b.out
A_CONF=$ZP_TMP/a.ini
B_CONF=$ZP_TMP/b.ini
mkdir "$ZP_TMP/spoolA" "$ZP_TMP/spoolB"

write_config "$A_CONF" input.mode=router input.ack=stored output.sink=zmq output.threads=2 \
    output.batch=64 zmq.endpoints="$BEP" zmq.mode=dealer zmq.ack_timeout=1s \
    daemon.spool_dir="$ZP_TMP/spoolA" daemon.control_socket="$ZP_TMP/ctlA.sock" \
    daemon.stats_interval=50ms daemon.drain_timeout=120s
write_config "$B_CONF" input.mode=router input.ack=stored input.endpoints="$BEP" \
    output.threads=2 file.path="$BOUT" file.fsync=interval file.fsync_interval=50ms \
    daemon.spool_dir="$ZP_TMP/spoolB" daemon.control_socket="$ZP_TMP/ctlB.sock" \
    daemon.stats_interval=50ms
: > "$BOUT"

use_daemon B
start_zpiped "$B_CONF" || bail "B did not become ready"
use_daemon A
start_zpiped "$A_CONF" || bail "A did not become ready"
ok "A (ack = stored, dealer sink) and B (ack = stored, file sink) are ready"
for c in x y; do
    start_client "$c" dealer -n $((N / 2)) -s "$SIZE" -p "$c-" --window 200 --rate 4000 \
        --timeout 120000 --out "$ZP_TMP/ok.$c" "$ZP_EP"
done

# grown_to LINES: B's file has at least LINES lines.
grown_to() {
    [ "$(line_count "$BOUT")" -ge "$1" ]
}

for round in 1 2; do
    use_daemon B
    check "round $round: B stored $((round * N / 4)) lines" \
        wait_until 120 "B's file to grow" grown_to $((round * N / 4))
    stop_zpiped KILL 30
    check "round $round: B was killed (status $ZP_STATUS)" test "$ZP_STATUS" -eq 137
    start_zpiped "$B_CONF" || bail "B did not restart"
    ok "round $round: B restarted on the same endpoint"
done

use_daemon A
check "A's clients got OK for all $N" wait_clients 300
stop_zpiped TERM 120
check "A exits 0 (status $ZP_STATUS)" test "$ZP_STATUS" -eq 0
check "A's accounting: received = delivered = $N, nothing spilled" \
    check_accounting received=$N delivered=$N spilled=0 queued=0 in_flight=0
use_daemon B
stop_zpiped TERM 120
check "B exits 0 (status $ZP_STATUS)" test "$ZP_STATUS" -eq 0

# Every line is a whole message; every OK is there; nothing else is.
sort -u "$BOUT" > "$ZP_TMP/b.uniq"
check "no line of B's file is torn" \
    test "$(awk -v s="$SIZE" 'length($0) != s' "$BOUT" | wc -l)" -eq 0
check "every message A's clients got OK for is in B's file" \
    same_messages "$ZP_TMP/b.uniq" "$ZP_TMP/ok.x" "$ZP_TMP/ok.y"
dups=$(($(line_count "$BOUT") - $(line_count "$ZP_TMP/b.uniq")))
diag "B's file holds $dups duplicates (resent after the kills)"
check "no spill file in either spool" \
    test -z "$(find "$ZP_TMP/spoolA" "$ZP_TMP/spoolB" -name 'spill-*')"
done_testing
