#!/bin/sh
# 281: a chain of two daemons over CURVE: A (router input, zmq sink in
# dealer mode with zmq.curve_server_key/curve_secret_key) -> B (router input
# on tcp:// with CURVE, A's public key in its curve_allow, file sink).
#
# 1. A client sends N messages to A and records each one A answered OK;
#    all reach B's file exactly once, and both daemons' accountings balance.
# 2. A's key is removed from B's curve_allow and B gets SIGHUP; A is
#    restarted (a new connection, so a new handshake) and takes 20 more
#    messages: B refuses A's key (counted in B's stats and logged with A's
#    address), A counts and logs the refused handshakes, nothing of them
#    reaches B's file, and A, stopped, spills them (exit 0: spilled, not
#    lost).  A daemon P forwarding to B in push mode also counts and logs
#    the refusal, and spills what it took.
# 3. A's key is allowed again (SIGHUP) and A restarted: the 20 are replayed
#    from the spill file and reach B.  So nothing was lost along the way.
. "$(dirname "$0")/lib.sh"
setup

TCP_GARBAGE=$top_builddir/tests/helpers/tcp_garbage
[ -x "$TCP_GARBAGE" ] || { echo "1..0 # SKIP $TCP_GARBAGE not built"; exit 0; }
K=$ZP_TMP/keys
ALLOW=$ZP_TMP/allowB
BOUT=$ZP_TMP/b.out
mkdir "$K" "$ALLOW" "$ZP_TMP/spoolA" "$ZP_TMP/spoolB"
"$ZPIPE" keygen "$K/b" > /dev/null && "$ZPIPE" keygen "$K/a" > /dev/null ||
    bail "zpipe keygen failed"
cp "$K/a.key" "$ALLOW/"
port=$("$TCP_GARBAGE" freeport) || bail "no free port"
BEP=tcp://127.0.0.1:$port

write_config "$ZP_TMP/a.ini" input.mode=router output.sink=zmq output.threads=2 output.batch=64 \
    zmq.endpoints="$BEP" zmq.mode=dealer zmq.ack_timeout=1s \
    zmq.curve_server_key="$K/b.key" zmq.curve_secret_key="$K/a.key_secret" \
    daemon.spool_dir="$ZP_TMP/spoolA" daemon.control_socket="$ZP_TMP/ctlA.sock" \
    daemon.stats_interval=50ms daemon.drain_timeout=3s daemon.drain_input=300ms
write_config "$ZP_TMP/b.ini" input.mode=router input.endpoints="$BEP" output.threads=2 \
    input.curve_secret_key="$K/b.key_secret" input.curve_allow="$ALLOW" \
    file.path="$BOUT" file.fsync=never daemon.spool_dir="$ZP_TMP/spoolB" \
    daemon.control_socket="$ZP_TMP/ctlB.sock" daemon.stats_interval=50ms

# ---- 1: the chain over CURVE
N=5000
use_daemon B
start_zpiped "$ZP_TMP/b.ini" || bail "B did not become ready"
use_daemon A
start_zpiped "$ZP_TMP/a.ini" || bail "A did not become ready"
ok "A (dealer sink, CURVE client) and B (CURVE router input) are ready"
start_client c dealer -n $N -s 64 -p chain- --window 100 --timeout 120000 \
    --out "$ZP_TMP/acked" "$ZP_EP"
check "the client got OK from A for all $N messages" wait_clients 300
delivered() {
    [ "$(status_field delivered)" = "$1" ]
}
check "A delivered all $N to B" wait_until 120 "A delivered = $N" delivered $N
stop_zpiped
st=$?
check "A exits 0 (status $st)" test "$st" -eq 0
check "A's accounting: received = delivered = $N" \
    check_accounting received=$N delivered=$N spilled=0 queued=0 in_flight=0
check "A's log is clean" check_log
use_daemon B
check "B's file holds exactly the $N messages A acknowledged" same_messages "$ZP_TMP/acked" "$BOUT"
check "B logged the CURVE input" grep -q "input: listening on $BEP (router, CURVE)" "$ZP_LOG"

# ---- 2: A's key removed from B's allow-list
rm "$ALLOW/a.key"
kill -HUP "$(zpiped_pid)"
emptied() {
    grep -q "curve_allow $ALLOW: 0 keys allowed" "$ZP_LOG"
}
check "B re-read its allow-list on SIGHUP: 0 keys" wait_until 30 "0 keys" emptied
use_daemon A
start_zpiped "$ZP_TMP/a.ini" || bail "A did not restart"
start_client late dealer -n 20 -s 64 -p late- --timeout 60000 --out "$ZP_TMP/acked.late" "$ZP_EP"
check "A answered OK for the 20 late messages (queued)" wait_clients 120
use_daemon B
b_refused() {
    [ "$(stats_field curve_refused "$ZP_TMP/ctlB.sock")" -gt 0 ] 2> /dev/null
}
check "B refuses A's key now (stats: curve_refused > 0)" wait_until 60 "B's refusal" b_refused
check "... and logged it with A's address" \
    grep -Fq "curve: refused a client from 127.0.0.1, key $(sed -n 's/^    public-key = "\(.*\)"$/\1/p' "$K/a.key")" \
    "$ZP_LOG"
check "nothing late reached B's file" sh -c '! grep -q "^late-" "$1"' - "$BOUT"
use_daemon A
# open_errors CTL: the daemon on control socket CTL counts failed handshakes.
open_errors() {
    [ "$(stats_field sink.errors.open "$1")" -gt 0 ] 2> /dev/null
}
check "A counts the refused handshakes (stats: sink.errors.open > 0)" \
    wait_until 60 "A's open errors" open_errors "$ZP_TMP/ctlA.sock"
check "... and logs why nothing goes to B" \
    grep -q "sink zmq: $BEP: the downstream refused our key (ZAP status 400)" "$ZP_LOG"
stop_zpiped
st=$?
check "A, stopped, exits 0 (status $st): what it could not deliver is spilled" test "$st" -eq 0
check "A's accounting: 20 received, 20 spilled" \
    check_accounting received=20 delivered=0 spilled=20 queued=0 in_flight=0
check "A's log has only the sink's send errors" check_log "$ZP_LOG" 'sink zmq: consumer [0-9]+: write: '

# ... and the same refusal in push mode: P (zmq.mode = push) says why too.
mkdir "$ZP_TMP/spoolP"
write_config "$ZP_TMP/p.ini" input.mode=router output.sink=zmq output.threads=1 \
    zmq.endpoints="$BEP" zmq.mode=push zmq.curve_server_key="$K/b.key" \
    zmq.curve_secret_key="$K/a.key_secret" daemon.spool_dir="$ZP_TMP/spoolP" \
    daemon.control_socket="$ZP_TMP/ctlP.sock" daemon.drain_timeout=1s daemon.drain_input=300ms
use_daemon P
start_zpiped "$ZP_TMP/p.ini" || bail "P did not become ready"
start_client pushed dealer -n 5 -s 64 -p push- --timeout 60000 --out "$ZP_TMP/acked.push" "$ZP_EP"
check "P answered OK for 5 messages (queued)" wait_clients 120
check "P (push) counts the refused handshakes" \
    wait_until 60 "P's open errors" open_errors "$ZP_TMP/ctlP.sock"
# A PUSH may see the refusal as the connection closed under it (EPIPE).
check "... and logs why nothing goes to B" \
    grep -Eq "sink zmq: $BEP: (the downstream refused our key|handshake failed)" "$ZP_LOG"
stop_zpiped
st=$?
check "P, stopped, exits 0 (status $st), the 5 spilled" test "$st" -eq 0
check "P's accounting: 5 received, 5 spilled" \
    check_accounting received=5 delivered=0 spilled=5 queued=0 in_flight=0

# ---- 3: allowed again: the spilled messages get through
cp "$K/a.key" "$ALLOW/"
use_daemon B
kill -HUP "$(zpiped_pid)"
refilled() {
    grep -q "curve_allow $ALLOW: 1 key allowed" "$ZP_LOG"
}
check "B re-read its allow-list on SIGHUP: 1 key" wait_until 30 "1 key" refilled
use_daemon A
start_zpiped "$ZP_TMP/a.ini" || bail "A did not restart"
check "A delivered the 20 replayed messages" wait_until 120 "A delivered = 20" delivered 20
stop_zpiped
st=$?
check "A exits 0 (status $st)" test "$st" -eq 0
check "A's accounting: 20 replayed, 20 delivered" \
    check_accounting received=0 replayed=20 delivered=20 spilled=0 queued=0 in_flight=0
use_daemon B
stop_zpiped
st=$?
check "B exits 0 (status $st)" test "$st" -eq 0
cat "$ZP_TMP/acked" "$ZP_TMP/acked.late" > "$ZP_TMP/acked.all"
check "B's file holds every message A acknowledged, once" same_messages "$ZP_TMP/acked.all" "$BOUT"
check "B's log has no error" check_log
done_testing
