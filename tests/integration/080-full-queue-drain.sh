#!/bin/sh
# 080: the producer-blocked-on-a-full-queue scenario.  A queue of 4 messages,
# one consumer writing to a FIFO that a slow reader empties, three producer
# threads whose clients send far more than that: the queue stays full and the
# producers block in queue_push.  SIGTERM then must not deadlock: zpiped
# exits 0, and every accepted message comes out of the FIFO exactly once.
#
# Router mode first: every message answered OK is in the output, nothing is
# in it twice, nothing that was not sent.  Then pull mode, where the daemon's
# own accounting says what it accepted.
. "$(dirname "$0")/lib.sh"
setup

N=3000
SIZE=100
ep1=ipc://$ZP_TMP/in1
ep2=ipc://$ZP_TMP/in2
FIFO=$ZP_TMP/fifo
OUT=$ZP_TMP/fifo.out

# queue_full: zpiped's STATUS= says the queue is at capacity.
queue_full() {
    grep -q '^[0-9]* STATUS=.* queued 4/4\( \|$\)' "$ZP_NOTIFY"
}

# run_phase MODE CLIENT_MODE: one daemon run; sets phase_* results.
run_phase() {
    _mode=$1
    _cmode=$2
    rm -f "$FIFO" "$OUT" "$ZP_TMP"/ok.*
    mkfifo "$FIFO" || bail "mkfifo failed"
    : > "$OUT"
    write_config "$ZP_CONF" input.mode="$_mode" "input.endpoints=$ZP_EP $ep1 $ep2" \
        input.threads=3 input.rcvhwm=100 queue.capacity=4 output.threads=1 output.batch=2 \
        "file.path=$FIFO" file.fsync=always daemon.stats_interval=100ms \
        daemon.drain_input=1s daemon.drain_timeout=60s
    # The file sink opens the FIFO before READY=1; opening for writing waits for a reader.
    spawn slow_reader "$FIFO" "$OUT"
    reader_pid=$zp_last_pid
    start_zpiped || bail "zpiped did not become ready ($_mode)"
    ok "$_mode: zpiped is ready, writing to a FIFO"

    cpids=
    _i=0
    for _ep in "$ZP_EP" "$ep1" "$ep2"; do
        spawn "$ZMQ_CLIENT" "$_cmode" -n "$N" -s "$SIZE" -p "p$_i-" --window 50 \
            --timeout 600000 --out "$ZP_TMP/ok.$_i" "$_ep" \
            < /dev/null > "$ZP_TMP/client.$_i.out" 2> "$ZP_TMP/client.$_i.err"
        cpids="$cpids $zp_last_pid"
        _i=$((_i + 1))
    done
    check "$_mode: the queue fills up (STATUS= queued 4/4)" \
        wait_until 60 "queued 4/4 in STATUS=" queue_full
    # shellcheck disable=SC2086
    check "$_mode: the clients are still sending, blocked by the full queue" any_alive $cpids

    stop_zpiped TERM 120
    phase_status=$?
    check "$_mode: SIGTERM with producers blocked on a full queue: zpiped exits 0 (status $phase_status)" \
        test "$phase_status" -eq 0
    wait_pid "$reader_pid" 60
    # The clients wait for replies or buffer space that will never come.
    # shellcheck disable=SC2086
    kill_wait $cpids
    if grep -q 'unexpected' "$ZP_TMP"/client.*.err; then
        not_ok "$_mode: clients saw only the replies they expected"
        diag "$(cat "$ZP_TMP"/client.*.err | head -n 10)"
    else
        ok "$_mode: clients saw only the replies they expected"
    fi

    : > "$ZP_TMP/universe"
    for _i in 0 1 2; do
        "$ZMQ_CLIENT" gen -n "$N" -s "$SIZE" -p "p$_i-" >> "$ZP_TMP/universe"
    done
    check "$_mode: the FIFO output has no message twice" no_duplicates "$OUT"
    check "$_mode: the FIFO output has only messages that were sent" \
        subset_of "$ZP_TMP/universe" "$OUT"
    _lines=$(line_count "$OUT")
    diag "$_mode: $_lines messages came out of the FIFO"
    check "$_mode: accounting: received = delivered = $_lines lines, nothing spilled or left" \
        check_accounting received="$_lines" replayed=0 delivered="$_lines" spilled=0 queued=0 \
        in_flight=0 rejected=0
    check "$_mode: no unexpected lines in the log" check_log
}

run_phase router dealer
oks=$(line_count "$ZP_TMP"/ok.*)
diag "router: $oks messages were answered OK"
check "router: every message answered OK came out of the FIFO" subset_of "$OUT" "$ZP_TMP"/ok.*
check "router: some but not all messages were answered before the stop" \
    test "$oks" -gt 0 -a "$oks" -lt $((N * 3))

run_phase pull push

done_testing
