#!/bin/sh
# 110: the zmq sink, mode push.  100000 messages forwarded exactly once to a
# real PULL peer; then, with no peer, messages pile up in the queue (the
# control socket's stats show them queued, none delivered) until a peer
# binds, and then all of them, multipart records included, arrive exactly
# once.  zmq.mode = dealer passes the config check (180 and 190 test it).
. "$(dirname "$0")/lib.sh"
setup

DOWN=ipc://$ZP_TMP/down
write_config "$ZP_CONF" output.sink=zmq output.threads=2 zmq.endpoints="$DOWN" zmq.mode=push \
    zmq.sndhwm=1000

# ---- 1: 100000 messages to a PULL peer that is there from the start.
N=100000
start_client peer pull -n $N --out "$ZP_TMP/got1" --timeout 120000 "$DOWN"
peer_pid=$zp_last_pid
start_zpiped || bail "zpiped did not become ready"
ok "zpiped is ready with the zmq sink"
start_client sender push --hold -n $N -p m "$ZP_EP"
wait_pid "$peer_pid" 300
st=$?
check "the peer received $N messages and exited (status $st)" test "$st" -eq 0
"$ZMQ_CLIENT" gen -n $N -p m > "$ZP_TMP/expected1"
check "the peer got each of the $N messages exactly once" \
    same_messages "$ZP_TMP/expected1" "$ZP_TMP/got1"
wait_until 60 "the sender's summary" clients_sent
finish_clients
stop_zpiped
st=$?
check "SIGTERM: zpiped exits 0 (status $st)" test "$st" -eq 0
check "accounting: received = delivered = $N" \
    check_accounting received=$N replayed=0 delivered=$N spilled=0 queued=0 in_flight=0
# ZMQ_IMMEDIATE: until the ipc connection is up, the first writes find no
# peer and are retried; that streak is logged.
check "no unexpected lines in the log" check_log "$ZP_LOG" 'sink zmq: consumer [0-9]+: write: '

# ---- 2: no peer: messages pile up; a peer appears: all arrive once.
M=5000
printf '%s\n' 'multi|part|record' 'bin\x00ary|\x7c\xff' 'single' > "$ZP_TMP/records"
start_zpiped || bail "zpiped did not become ready (no peer)"
ok "zpiped is ready with no downstream peer"
start_client sender2 push --hold -n $M -p n "$ZP_EP"
start_client records push --hold --records "$ZP_TMP/records" "$ZP_EP"
check "with no peer, stats show all $((M + 3)) messages queued or in flight" \
    wait_until 60 "queued + in_flight = $((M + 3))" holds_all $((M + 3))
check "... none delivered" test "$(stats_field delivered)" = 0
# A write gives up after 100 ms: poll for the count rather than expect it
# at once (the queue may fill sooner than that).
failed_counted() {
    [ "$(stats_field failed)" -gt 0 ] 2> /dev/null
}
check "... and the sink's failed writes counted" wait_until 30 "failed > 0" failed_counted
start_client peer2 pull -n $((M + 3)) --out "$ZP_TMP/got2" --timeout 120000 "$DOWN"
peer_pid=$zp_last_pid
wait_pid "$peer_pid" 300
st=$?
check "a peer that binds later receives all $((M + 3)) messages (status $st)" test "$st" -eq 0
{ "$ZMQ_CLIENT" gen -n $M -p n; cat "$ZP_TMP/records"; } > "$ZP_TMP/expected2"
check "each message exactly once, multipart records as multipart" \
    same_messages "$ZP_TMP/expected2" "$ZP_TMP/got2"
finish_clients
stop_zpiped
st=$?
check "SIGTERM: zpiped exits 0 (status $st)" test "$st" -eq 0
check "accounting: received = delivered = $((M + 3))" \
    check_accounting received=$((M + 3)) delivered=$((M + 3)) spilled=0 queued=0 in_flight=0
check "no unexpected lines in the log (sink errors while no peer are expected)" \
    check_log "$ZP_LOG" 'sink zmq: consumer [0-9]+: write: '

# ---- 3: mode = dealer passes the config check (tests 180-190 run it);
# ack_timeout = 0 does not.
write_config "$ZP_TMP/dealer.ini" output.sink=zmq zmq.endpoints="$DOWN" zmq.mode=dealer \
    zmq.ack_timeout=2s
"$ZPIPED" -t -c "$ZP_TMP/dealer.ini" > "$ZP_TMP/dealer.out" 2>&1
st=$?
check "zmq.mode = dealer is a valid config (status $st)" test "$st" -eq 0
write_config "$ZP_TMP/dealer0.ini" output.sink=zmq zmq.endpoints="$DOWN" zmq.mode=dealer \
    zmq.ack_timeout=0
"$ZPIPED" -t -c "$ZP_TMP/dealer0.ini" > "$ZP_TMP/dealer0.out" 2>&1
st=$?
check "zmq.ack_timeout = 0 is refused (status $st)" test "$st" -ne 0
check "... with a clear reason" grep -q 'ack_timeout must be more than 0' "$ZP_TMP/dealer0.out"

done_testing
