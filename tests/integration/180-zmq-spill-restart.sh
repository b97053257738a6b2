#!/bin/sh
# 180: the zmq sink with its downstream gone, in both modes.  A client sends
# N messages to zpiped (router input, so it knows each one was accepted);
# with no downstream they pile up in the queue (stats: none delivered).
# SIGTERM with a short drain_timeout spills them all; zpiped exits 0.  The
# downstream comes back (push: a PULL peer; dealer: a zpiped in router mode
# with a file sink), zpiped is started again, replays the spill, and the
# downstream gets every message exactly once; the spool ends empty and both
# runs' accounting lines balance.
. "$(dirname "$0")/lib.sh"
setup

DOWN=ipc://$ZP_TMP/down
SPOOL=$ZP_TMP/spool
N=5000

spool_has_spill() {
    for _f in "$SPOOL"/spill-*.zps; do
        [ -e "$_f" ] && return 0
    done
    return 1
}
spool_empty() {
    [ -z "$(ls -A "$SPOOL")" ]
}

for mode in push dealer; do
    p=$mode-
    write_config "$ZP_CONF" input.mode=router output.sink=zmq output.threads=2 output.batch=64 \
        zmq.endpoints="$DOWN" zmq.mode=$mode zmq.ack_timeout=1s \
        daemon.drain_input=200ms daemon.drain_timeout=500ms
    use_daemon ""
    start_zpiped || bail "$mode: zpiped did not become ready"
    ok "$mode: zpiped is ready with no downstream"
    start_client c dealer -n $N -s 50 -p "$p" --window 100 --timeout 60000 \
        --out "$ZP_TMP/acked.$mode" "$ZP_EP"
    wait_clients 120
    check "$mode: the client got OK for all $N" client_is c "sent=$N ok=$N err=0 big=0"
    check "$mode: stats show all $N queued or in flight" wait_until 30 "piled up" holds_all $N
    check "$mode: ... none delivered" test "$(stats_field delivered)" = 0
    stop_zpiped TERM 60
    st=$?
    check "$mode: SIGTERM with drain_timeout=500ms: exits 0 (status $st)" test "$st" -eq 0
    check "$mode: accounting: all $N spilled, none delivered" \
        check_accounting received=$N replayed=0 delivered=0 spilled=$N queued=0 in_flight=0
    check "$mode: the log says the drain spilled" grep -q 'spill' "$ZP_LOG"
    check "$mode: no unexpected lines in the log" check_log "$ZP_LOG" 'sink zmq: consumer [0-9]+: write: '
    check "$mode: a spill file is in the spool" spool_has_spill

    # The downstream comes back, then zpiped.
    if [ $mode = push ]; then
        start_client peer pull -n $N --out "$ZP_TMP/got.$mode" --timeout 120000 "$DOWN"
        peer_pid=$zp_last_pid
    else
        write_config "$ZP_TMP/b.ini" input.mode=router input.endpoints="$DOWN" \
            file.path="$ZP_TMP/got.$mode" daemon.spool_dir="$ZP_TMP/spoolB" \
            daemon.control_socket="$ZP_TMP/ctlB.sock"
        mkdir -p "$ZP_TMP/spoolB"
        use_daemon B
        start_zpiped "$ZP_TMP/b.ini" || bail "downstream zpiped did not become ready"
        use_daemon ""
    fi
    start_zpiped || bail "$mode: zpiped did not restart"
    ok "$mode: zpiped restarted with the downstream back"
    check "$mode: the replay consumed the spool" wait_until 60 "an empty spool" spool_empty
    delivered_all() {
        [ "$(stats_field delivered)" = $N ]
    }
    check "$mode: all $N delivered" wait_until 60 "delivered = $N" delivered_all
    if [ $mode = push ]; then
        wait_pid "$peer_pid" 120
        st=$?
        check "$mode: the PULL peer received $N messages (status $st)" test "$st" -eq 0
        wait_clients 10
    fi
    stop_zpiped
    st=$?
    check "$mode: zpiped exits 0 (status $st)" test "$st" -eq 0
    check "$mode: accounting of the second run: replayed = delivered = $N" \
        check_accounting received=0 replayed=$N delivered=$N spilled=0 queued=0 in_flight=0
    # The first writes may find the connection not up yet (as in 110).
    check "$mode: no unexpected lines in the log" check_log "$ZP_LOG" 'sink zmq: consumer [0-9]+: write: '
    if [ $mode = dealer ]; then
        use_daemon B
        stop_zpiped
        st=$?
        check "$mode: the downstream zpiped exits 0 (status $st)" test "$st" -eq 0
        check "$mode: ... having received $N" check_accounting received=$N delivered=$N spilled=0
        use_daemon ""
    fi
    "$ZMQ_CLIENT" gen -n $N -s 50 -p "$p" > "$ZP_TMP/expected.$mode"
    check "$mode: the client's OK list is the $N messages" \
        same_messages "$ZP_TMP/expected.$mode" "$ZP_TMP/acked.$mode"
    check "$mode: the downstream got every message exactly once" \
        same_messages "$ZP_TMP/expected.$mode" "$ZP_TMP/got.$mode"
    check "$mode: the spool is empty" spool_empty
done

done_testing
