#!/bin/sh
# 276: SIGKILL under load with input.ack = stored: an OK means stored.
# Router mode on two endpoints, a file sink with fsync = interval (a group
# commit: OKs wait for the sync that covers them; 50 ms between idle syncs), three
# pipelining DEALER clients recording every OK.  Each round starts zpiped
# on the same file, waits until a random number (1..4000) of new lines is
# in the file, kills zpiped with SIGKILL, and then the clients.  After each
# round every message answered OK in it is in the file.  A last clean run
# (which also cuts back a line the kill left torn) ends the test; then every
# OK of every round is in the file exactly once, and every line is a whole
# message.
#
# ZP_KILL_ROUNDS rounds (default 20); scripts/soak runs more and prints the
# tally.
. "$(dirname "$0")/lib.sh"
setup

ROUNDS=${ZP_KILL_ROUNDS:-20}
SIZE=64
ep1=ipc://$ZP_TMP/in1
write_config "$ZP_CONF" input.mode=router input.ack=stored "input.endpoints=$ZP_EP $ep1" \
    input.threads=2 output.threads=2 output.batch=64 file.fsync=interval file.fsync_interval=50ms \
    daemon.stats_interval=1s

# random_below N: a random number in 0..N-1.
random_below() {
    echo $(($(od -An -N2 -tu2 /dev/urandom | tr -d ' ') % $1))
}

# grown_by N FROM: the sink has at least FROM + N lines.
grown_by() {
    [ "$(line_count "$ZP_SINK")" -ge $(($2 + $1)) ]
}

: > "$ZP_SINK"
fails=0
total_ok=0
total_lines=0
start_s=$(date +%s)
r=0
while [ "$r" -lt "$ROUNDS" ]; do
    r=$((r + 1))
    fail() {
        diag "round $r: $*"
        fails=$((fails + 1))
    }
    before=$(line_count "$ZP_SINK")
    start_zpiped || bail "round $r: zpiped did not become ready"
    cpids=
    for c in 0 1 2; do
        ep=$ZP_EP
        [ "$c" = 1 ] && ep=$ep1
        spawn "$ZMQ_CLIENT" dealer -n 100000000 -s "$SIZE" -p "r$r-c$c-" --window 300 \
            --timeout 600000 --out "$ZP_TMP/ok.$r.$c" "$ep" \
            < /dev/null > /dev/null 2> "$ZP_TMP/client.$r.$c.err"
        cpids="$cpids $zp_last_pid"
    done
    want=$(($(random_below 4000) + 1))
    wait_until 60 "$want new lines in the sink" grown_by "$want" "$before" ||
        fail "the sink did not grow by $want lines"
    stop_zpiped KILL 30
    [ "$ZP_STATUS" -eq 137 ] || fail "zpiped ended with status $ZP_STATUS, not by SIGKILL"
    # shellcheck disable=SC2086
    kill_wait $cpids
    check_log "$ZP_LOG" > /dev/null || fail "unexpected lines in the log"
    oks=$(line_count "$ZP_TMP"/ok.$r.*)
    lines=$(($(line_count "$ZP_SINK") - before))
    subset_of "$ZP_SINK" "$ZP_TMP"/ok.$r.* || fail "a message answered OK is not in the file"
    [ "$oks" -gt 0 ] || fail "no OK came before the kill"
    diag "round $r: killed after $lines new lines (wanted $want), $oks answered OK"
    total_ok=$((total_ok + oks))
    total_lines=$((total_lines + lines))
    if [ "$fails" -eq 0 ] && [ "${KEEP:-0}" != 1 ]; then
        rm -f "$ZP_TMP"/zpiped.*.log "$ZP_TMP"/notify.*.out
    fi
done

# A clean run: the first write cuts back a torn last line.
start_zpiped || bail "the last zpiped did not become ready"
start_client last dealer -n 100 -s "$SIZE" -p "last-" --out "$ZP_TMP/ok.last" "$ZP_EP"
check "a clean run after the kills answers every message" wait_clients 120
stop_zpiped
check "the clean run exits 0 (status $ZP_STATUS)" test "$ZP_STATUS" -eq 0
check "the clean run's log has no unexpected lines" check_log

check "$ROUNDS of $ROUNDS rounds: every message answered OK was in the file after the kill" \
    test "$fails" -eq 0
check "every message answered OK in any round is in the file" \
    subset_of "$ZP_SINK" "$ZP_TMP"/ok.*
check "no message is in the file twice" no_duplicates "$ZP_SINK"
torn=$(awk -v size="$SIZE" 'length($0) != size || !/^(r[0-9]+-c[0-9]|last)-[0-9]+\.*$/' \
    "$ZP_SINK" | head -n 3)
check "no line of the file is torn" test -z "$torn"
[ -z "$torn" ] || diag "torn lines: $torn"
diag "tally: $ROUNDS rounds in $(($(date +%s) - start_s)) s, $total_ok answered OK," \
    "$total_lines stored before the kills, $((total_lines - total_ok)) stored without an OK" \
    "(in flight at the kill), $fails failed"

done_testing
