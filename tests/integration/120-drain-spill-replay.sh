#!/bin/sh
# 120: SIGTERM under load with a drain_timeout too short for the sink.
# Router mode, a slow sink (a FIFO that a slow reader empties), a small
# queue kept full by dealer clients, drain_timeout=300ms.  The queue holds
# 1000 records (~100 KB), more than the slow reader takes in the 100 ms
# between the end of drain_input and the deadline, so every round reaches
# the deadline with records left (producers stop reading at drain_input;
# 200 queued records were sometimes written out in time).  zpiped must exit 0
# in time, having spilled what the sink did not take; a restarted zpiped
# (writing to a regular file) replays the spill; together the FIFO output
# and the replayed output hold every message answered OK exactly once, and
# nothing that was not sent; the spool is empty afterwards.
#
# ZP_SPILL_ROUNDS rounds (default 20), each with its own
# messages and a second SIGTERM during the drain; every round must pass.  A
# round takes 3-8 s, most of it the slow reader and the restarts.
. "$(dirname "$0")/lib.sh"
setup

ROUNDS=${ZP_SPILL_ROUNDS:-20}
N=2000
SIZE=100
FIFO=$ZP_TMP/fifo
SPOOL=$ZP_TMP/spool
ep1=ipc://$ZP_TMP/in1

queue_full() {
    grep -q '^[0-9]* STATUS=.* queued 1000/1000\( \|$\)' "$ZP_NOTIFY"
}

# spool_has_spill: a committed spill file is in the spool.
spool_has_spill() {
    for _f in "$SPOOL"/spill-*.zps; do
        [ -e "$_f" ] && return 0
    done
    return 1
}

spool_empty() {
    [ -z "$(ls -A "$SPOOL")" ]
}

fails=0
spilled_total=0
replayed_total=0
start_s=$(date +%s)
r=0
while [ "$r" -lt "$ROUNDS" ]; do
    r=$((r + 1))
    fail() {
        diag "round $r: $*"
        fails=$((fails + 1))
    }
    OUT=$ZP_TMP/fifo.$r.out
    REPLAY=$ZP_TMP/replay.$r.out
    rm -f "$FIFO" "$ZP_TMP"/ok.*
    mkfifo "$FIFO" || bail "mkfifo failed"
    : > "$OUT"
    write_config "$ZP_CONF" input.mode=router "input.endpoints=$ZP_EP $ep1" input.threads=2 \
        input.rcvhwm=100 queue.capacity=1000 output.threads=2 output.batch=16 \
        "file.path=$FIFO" file.fsync=always daemon.stats_interval=50ms \
        daemon.drain_input=200ms daemon.drain_timeout=300ms
    spawn slow_reader "$FIFO" "$OUT"
    reader_pid=$zp_last_pid
    start_zpiped || bail "round $r: zpiped did not become ready"
    cpids=
    for _i in 0 1; do
        _ep=$ZP_EP
        [ "$_i" = 1 ] && _ep=$ep1
        spawn "$ZMQ_CLIENT" dealer -n "$N" -s "$SIZE" -p "r$r-c$_i-" --window 50 \
            --timeout 600000 --out "$ZP_TMP/ok.$_i" "$_ep" \
            < /dev/null > "$ZP_TMP/client.$_i.out" 2> "$ZP_TMP/client.$_i.err"
        cpids="$cpids $zp_last_pid"
    done
    wait_until 60 "queued 1000/1000 in STATUS=" queue_full || fail "the queue never filled"
    t0=$(date +%s)
    # Two SIGTERMs: the second must not skip the spill.
    kill -TERM "$(zpiped_pid)"
    stop_zpiped TERM 60
    st=$?
    t1=$(date +%s)
    [ "$st" -eq 0 ] || fail "zpiped exited with status $st"
    # drain_input + drain_timeout is under a second; allow for slow builds.
    [ $((t1 - t0)) -le "$(scaled 10)" ] || fail "the drain took $((t1 - t0)) s"
    check_log "$ZP_LOG" >/dev/null || fail "unexpected lines in the log"
    spilled=$(acct spilled)
    [ "${spilled:-0}" -gt 0 ] || fail "nothing was spilled (the scenario did not reach the deadline)"
    grep -q 'drain: ended by drain_timeout' "$ZP_LOG" || fail "no drain timeout in the log"
    wait_pid "$reader_pid" 60 || fail "the FIFO reader did not finish"
    # shellcheck disable=SC2086
    kill_wait $cpids
    spool_has_spill || fail "no spill file in the spool"
    if ls "$SPOOL" | grep -q '\.tmp$'; then
        fail "a temporary spill file was left behind"
    fi

    # The restart replays the spill into a regular file.
    write_config "$ZP_CONF" input.mode=router input.threads=1 "file.path=$REPLAY" \
        file.fsync=never daemon.stats_interval=50ms daemon.drain_timeout=30s
    start_zpiped || bail "round $r: the restarted zpiped did not become ready"
    wait_until 60 "the spool to empty" spool_empty || fail "the spool did not empty"
    stop_zpiped TERM 60 || fail "the restarted zpiped exited with status $ZP_STATUS"
    check_log "$ZP_LOG" >/dev/null || fail "unexpected lines in the restart's log"
    replayed=$(acct replayed)
    [ "${replayed:-x}" = "${spilled:-y}" ] || fail "replayed $replayed but spilled $spilled"
    [ "$(line_count "$REPLAY")" = "${spilled:-y}" ] || fail "replay output has $(line_count "$REPLAY") lines"
    spool_empty || fail "the spool is not empty: $(ls "$SPOOL")"

    cat "$ZP_TMP"/ok.* > "$ZP_TMP/oks"
    : > "$ZP_TMP/universe"
    for _i in 0 1; do
        "$ZMQ_CLIENT" gen -n "$N" -s "$SIZE" -p "r$r-c$_i-" >> "$ZP_TMP/universe"
    done
    no_duplicates "$OUT" "$REPLAY" || fail "a message came out twice"
    subset_of "$ZP_TMP/universe" "$OUT" "$REPLAY" || fail "output that was never sent"
    cat "$OUT" "$REPLAY" > "$ZP_TMP/all"
    subset_of "$ZP_TMP/all" "$ZP_TMP/oks" || fail "a message answered OK is missing"
    diag "round $r: $(line_count "$ZP_TMP/oks") OK'ed, $(line_count "$OUT") via the FIFO," \
        "$spilled spilled and replayed"
    spilled_total=$((spilled_total + ${spilled:-0}))
    replayed_total=$((replayed_total + ${replayed:-0}))
    if [ "$fails" -eq 0 ] && [ "${KEEP:-0}" != 1 ]; then
        rm -f "$OUT" "$REPLAY" "$ZP_TMP"/zpiped.*.log "$ZP_TMP"/notify.*.out
    fi
done
diag "$ROUNDS rounds in $(($(date +%s) - start_s)) s: $spilled_total spilled, $replayed_total replayed"
check "$ROUNDS of $ROUNDS rounds: exit 0 in time, every OK'ed message exactly once across the spill" \
    test "$fails" -eq 0

done_testing
