#!/bin/sh
# 191: the dealer zmq sink keeps messages in flight across sink calls.  A
# (pull input, zmq sink in dealer mode, one consumer thread taking batches
# of one message) forwards to a bare ROUTER (zmq_client router) that
# answers nothing until it has received all it waits for.
# 1. zmq.sndhwm = 1000: 500 messages all reach the ROUTER before any reply,
#    so A had 500 awaiting their OK at once although each sink call offered
#    one message; once the OKs come A counts all 500 delivered.
# 2. zmq.sndhwm = 100: a ROUTER waiting for 101 gets only 100, the window
#    of one endpoint, and leaves without answering; a real downstream
#    zpiped (router input, file sink) then binds the endpoint and A resends
#    them and delivers the rest: every message is in its file.
. "$(dirname "$0")/lib.sh"
setup

DOWN=ipc://$ZP_TMP/down
a_config() {
    write_config "$ZP_CONF" output.sink=zmq output.threads=1 output.batch=1 \
        zmq.endpoints="$DOWN" zmq.mode=dealer zmq.ack_timeout=300s "$@"
}
delivered_is() {
    [ "$(status_field delivered)" = "$1" ]
}

# ---- 1: 500 in flight from sink calls of one message each.
N=500
a_config zmq.sndhwm=1000
# --hold: the ROUTER stays connected once it has answered; A drops the
# replies it reads in a round that sees the connection drop.
start_client down router --hold -n $N --timeout 60000 --out "$ZP_TMP/got1" "$DOWN"
start_zpiped || bail "zpiped did not become ready"
ok "zpiped is ready (dealer sink, output.batch = 1, zmq.sndhwm = 1000)"
start_client sender push --hold -n $N -p m "$ZP_EP"
wait_until 300 "the ROUTER's summary" test -s "$ZP_TMP/client.down.out"
check "the ROUTER received all $N before answering any" client_is down "received=$N"
"$ZMQ_CLIENT" gen -n $N -p m > "$ZP_TMP/expected1"
check "... in the order they were sent" cmp -s "$ZP_TMP/expected1" "$ZP_TMP/got1"
check "A counts all $N delivered once the OKs came" \
    wait_until 60 "delivered = $N" delivered_is $N
wait_until 60 "the sender's summary" clients_sent
check "the sender and the ROUTER exit 0" finish_clients
stop_zpiped
st=$?
check "SIGTERM: zpiped exits 0 (status $st)" test "$st" -eq 0
check "accounting: received = delivered = $N" \
    check_accounting received=$N replayed=0 delivered=$N spilled=0 queued=0 in_flight=0
# ZMQ_IMMEDIATE: until the connection is up nothing can be sent; that
# streak of failed writes is logged.
check "no unexpected lines in the log" check_log "$ZP_LOG" 'sink zmq: consumer [0-9]+: write: '

# ---- 2: no more than zmq.sndhwm in flight per endpoint.
M=300
W=100
a_config zmq.sndhwm=$W
start_zpiped || bail "zpiped did not become ready (sndhwm = $W)"
start_client sender2 push --hold -n $M -p w "$ZP_EP"
check "with no downstream, A read all $M" wait_read $M
# The ROUTER gives up after 15 s without a message: longer than the
# consumer's longest backoff while nothing was connected (5 s).
start_client cap router -n $((W + 1)) --timeout 15000 --out "$ZP_TMP/got2.cap" "$DOWN"
cap_pid=$zp_last_pid
wait_pid "$cap_pid" 300
check "a ROUTER waiting for $((W + 1)) gets only the window of $W, none answered" \
    client_is cap "received=$W"
check "A counts none delivered" delivered_is 0
BOUT=$ZP_TMP/b.out
write_config "$ZP_TMP/b.ini" input.mode=router input.endpoints="$DOWN" output.threads=1 \
    file.path="$BOUT" file.fsync=never daemon.spool_dir="$ZP_TMP/spoolB" \
    daemon.control_socket="$ZP_TMP/ctlB.sock"
mkdir "$ZP_TMP/spoolB"
use_daemon B
start_zpiped "$ZP_TMP/b.ini" || bail "the downstream zpiped did not become ready"
ok "a downstream zpiped binds the endpoint"
use_daemon ""
check "A delivers all $M to it" wait_until 120 "delivered = $M" delivered_is $M
wait_until 60 "the sender's summary" clients_sent
finish_clients
stop_zpiped
st=$?
check "A exits 0 (status $st)" test "$st" -eq 0
check "A's accounting: received = delivered = $M" \
    check_accounting received=$M replayed=0 delivered=$M spilled=0 queued=0 in_flight=0
check "A's log is clean" check_log "$ZP_LOG" 'sink zmq: consumer [0-9]+: write: '
use_daemon B
stop_zpiped
st=$?
check "the downstream exits 0 (status $st)" test "$st" -eq 0
"$ZMQ_CLIENT" gen -n $M -p w > "$ZP_TMP/expected2"
check "every message is in the downstream's file" subset_of "$BOUT" "$ZP_TMP/expected2"
check "... and nothing else" subset_of "$ZP_TMP/expected2" "$BOUT"
check "the first ROUTER got the first $W, in order" \
    sh -c 'head -n "$1" "$2" | cmp -s - "$3"' - $W "$ZP_TMP/expected2" "$ZP_TMP/got2.cap"

done_testing
