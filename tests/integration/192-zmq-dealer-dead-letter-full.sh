#!/bin/sh
# 192: A (pull input, zmq sink in dealer mode) -> B (router input, file
# sink, input.max_message_size 1K), A's spool_dir a tmpfs (root only),
# filled once A runs.
# B refuses one message of 2000 bytes with ERR; A cannot write it to its
# dead-letter file.  The message stays in flight and A tries the file again
# after the consumer's backoff (10 ms, doubling up to 5 s), not in a busy
# loop: 8 failed tries take more than a second (without the backoff they
# took 0.1 s, each an error line, and went on so while the disk was full).  Once there is
# room, the message goes to the dead-letter file, A counts it delivered,
# and exits 0 with nothing spilled.  Five small messages sent while the
# large one is stuck reach B but are held behind it (outcomes keep their
# order); each offer then fails as the poll does, and the consumer, which
# stops offering until the messages in flight have their outcome, must
# back off there too.
. "$(dirname "$0")/lib.sh"
setup

MNT=$ZP_TMP/spoolA
mount_tmpfs_or_skip "$MNT" 64K
# The tmpfs goes before the temp dir (lib.sh's EXIT trap removes it), and
# the daemons, which may hold files in it, before the tmpfs.
unmount() {
    _rc=$?
    for _d in A B; do
        use_daemon $_d
        if [ -n "$zp_pid" ]; then
            kill -KILL "$zp_pid" 2> /dev/null
            wait "$zp_pid" 2> /dev/null
        fi
    done
    umount "$MNT" 2> /dev/null
    (exit $_rc)
    zp_cleanup
}
trap unmount EXIT
BEP=ipc://$ZP_TMP/b
mkdir "$ZP_TMP/spoolB"
write_config "$ZP_TMP/b.ini" input.mode=router input.endpoints="$BEP" input.max_message_size=1K \
    file.path="$ZP_TMP/b.out" daemon.spool_dir="$ZP_TMP/spoolB" \
    daemon.control_socket="$ZP_TMP/ctlB.sock"
write_config "$ZP_TMP/a.ini" output.sink=zmq zmq.mode=dealer zmq.endpoints="$BEP" \
    output.threads=1 daemon.spool_dir="$MNT" daemon.control_socket="$ZP_TMP/ctlA.sock"
use_daemon B
start_zpiped "$ZP_TMP/b.ini" || bail "B did not become ready"
use_daemon A
start_zpiped "$ZP_TMP/a.ini" || bail "A did not become ready"
# Filled once A runs: at start it checks that it can write there.
dd if=/dev/zero of="$MNT/filler" bs=4096 2> /dev/null
check "A's spool_dir is full" test "$(df --output=avail -k "$MNT" | tail -n 1 | tr -d ' ')" -eq 0

big=$(printf 'big-%01996d' 0 | tr 0 x)
"$ZPIPE" push -e "$ZP_EP" "$big" > "$ZP_TMP/push.out" 2>&1
check "zpipe push to A exits 0" test $? -eq 0
tries() {
    grep -c 'dead-letter file in .*No space left on device' "$ZP_LOG"
}
at_least() {
    [ "$(tries)" -ge "$1" ]
}
check "A cannot write its dead-letter file: logged" \
    wait_until 30 "a failed dead-letter write in A's log" at_least 1
"$ZPIPE" push -e "$ZP_EP" small-1 small-2 small-3 small-4 small-5 > "$ZP_TMP/push.out" 2>&1
check "zpipe push of 5 small ones to A exits 0" test $? -eq 0
b_read() {
    [ "$(line_count "$ZP_TMP/b.out")" -ge 5 ]
}
check "B stores the 5 small ones" wait_until 30 "5 lines in B's file" b_read
n0=$(tries)
t0=$(date +%s%N)
check "A tries again" wait_until 60 "8 more failed tries" at_least $((n0 + 8))
t1=$(date +%s%N)
ms=$(((t1 - t0) / 1000000))
check "8 tries took more than a second ($ms ms): the consumer backs off between them" \
    test "$ms" -gt 1000
check "the 6 are still in flight, none delivered" test "$(status_field delivered)" = 0

rm -f "$MNT/filler"
delivered() {
    [ "$(status_field delivered)" = 6 ]
}
check "with room again, A counts all 6 delivered" wait_until 60 "delivered = 6" delivered
stop_zpiped
st=$?
check "A exits 0 (status $st)" test "$st" -eq 0
check "A's accounting: 6 delivered, none spilled" \
    check_accounting received=6 delivered=6 spilled=0 queued=0 in_flight=0
# The submits that sent the 5 reported the dead-letter error, but every
# message they took was stored in the end: the consumer's line says there
# is nothing to write again (it once said "retrying 0 messages").
check "A's log: only the dead-letter errors" \
    check_log "$ZP_LOG" \
    'dead-letter file in|records not durable|write: No space left on device \(nothing left to write again\)'
set -- "$MNT"/deadletter-*.zpd
check "one dead-letter file" test $# -eq 1 -a -f "$1"
printf '\000\000\007\320%s' "$big" > "$ZP_TMP/big.record"
check "it holds the message's record exactly" cmp -s "$ZP_TMP/big.record" "$1"
use_daemon B
stop_zpiped
st=$?
check "B exits 0 (status $st)" test "$st" -eq 0
check "B rejected the large one, stored the 5 small ones" \
    check_accounting received=5 rejected=1 delivered=5
printf 'small-%d\n' 1 2 3 4 5 > "$ZP_TMP/small"
check "B's file holds the 5 small ones once" same_messages "$ZP_TMP/small" "$ZP_TMP/b.out"
done_testing
