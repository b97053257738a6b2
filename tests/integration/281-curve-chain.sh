#!/bin/sh
# 281: a chain of two daemons over CURVE: A (router input, zmq sink in
# dealer mode with zmq.curve_server_key/curve_secret_key) -> B (router input
# on tcp:// with CURVE, A's public key in its curve_allow, file sink).
#
# 1. A client sends N messages to A and records each one A answered OK;
#    all reach B's file exactly once, and both daemons' accountings balance.
# 2. A's key is removed from B's curve_allow and B gets SIGHUP; A is
#    restarted (a new connection, so a new handshake) and takes one more
#    message: B refuses A's key (counted in B's stats and logged with A's
#    address), A counts and logs the refused handshakes, and nothing of them
#    reaches B's file.  A daemon P forwarding in push mode to Q and R (pull
#    inputs over CURVE, another key allowed) also counts and logs the
#    refusals of the 5 it takes.
#    While A and P are refused, the secret key file they share is moved
#    away: both log that they cannot make their sockets, and A (dealer)
#    tries again once a second, not at every pass of its consumers.  It is
#    put back before step 3.
# 3. A's key is allowed again at B and Q (SIGHUP), not at R: A and P, still
#    running, deliver their messages by themselves (libzmq gives a refused
#    connection up for good; the sinks make their sockets anew and handshake
#    again; P its socket to Q while R still refuses), and exit 0 with
#    nothing spilled.  So nothing was lost along the way.
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
# One message: one of A's two consumers holds it, the other is idle (below).
start_client late dealer -n 1 -s 64 -p late- --timeout 60000 --out "$ZP_TMP/acked.late" "$ZP_EP"
check "A answered OK for the late message (queued)" wait_clients 120
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

# ... and the same refusal in push mode: P (zmq.mode = push) forwards to Q
# and R (pull inputs over CURVE, file sinks), whose curve_allow has another
# key.
"$ZPIPE" keygen "$K/c" > /dev/null || bail "zpipe keygen failed"
# puller NAME: start daemon NAME, a pull input over CURVE allowing key c,
# on a free port ($NAME_EP), into $ZP_TMP/NAME.out.
puller() {
    mkdir "$ZP_TMP/spool$1" "$ZP_TMP/allow$1"
    cp "$K/c.key" "$ZP_TMP/allow$1/"
    port=$("$TCP_GARBAGE" freeport) || bail "no free port"
    eval "${1}EP=tcp://127.0.0.1:$port"
    write_config "$ZP_TMP/$1.ini" input.endpoints="tcp://127.0.0.1:$port" \
        input.curve_secret_key="$K/b.key_secret" input.curve_allow="$ZP_TMP/allow$1" \
        file.path="$ZP_TMP/$1.out" file.fsync=never daemon.spool_dir="$ZP_TMP/spool$1" \
        daemon.control_socket="$ZP_TMP/ctl$1.sock"
    use_daemon "$1"
    start_zpiped "$ZP_TMP/$1.ini" || bail "$1 did not become ready"
}
puller Q
puller R
QOUT=$ZP_TMP/Q.out
ROUT=$ZP_TMP/R.out
mkdir "$ZP_TMP/spoolP"
write_config "$ZP_TMP/p.ini" input.mode=router output.sink=zmq output.threads=1 \
    zmq.endpoints="$QEP $REP" zmq.mode=push zmq.curve_server_key="$K/b.key" \
    zmq.curve_secret_key="$K/a.key_secret" daemon.spool_dir="$ZP_TMP/spoolP" \
    daemon.control_socket="$ZP_TMP/ctlP.sock" daemon.drain_timeout=1s daemon.drain_input=300ms \
    daemon.stats_interval=50ms
use_daemon P
start_zpiped "$ZP_TMP/p.ini" || bail "P did not become ready"
start_client pushed dealer -n 5 -s 64 -p push- --timeout 60000 --out "$ZP_TMP/acked.push" "$ZP_EP"
check "P answered OK for 5 messages (queued)" wait_clients 120
check "P (push) counts the refused handshakes" \
    wait_until 60 "P's open errors" open_errors "$ZP_TMP/ctlP.sock"
# refused_logged EP: the log says EP refused our key.
refused_logged() {
    grep -q "sink zmq: $1: the downstream refused our key (ZAP status 400)" "$ZP_LOG"
}
check "... and logs why nothing goes to Q" wait_until 30 "Q's refusal" refused_logged "$QEP"
check "... and why nothing goes to R" wait_until 30 "R's refusal" refused_logged "$REP"
check "nothing of A's reached B's file, nothing of P's Q's or R's" \
    sh -c '! grep -q "^late-" "$1" && ! grep -qs "^push-" "$2" "$3"' - "$BOUT" "$QOUT" "$ROUT"

# key_errors LOG N: LOG tells N times or more that the secret key file is missing.
key_errors() {
    [ "$(grep -c "sink zmq: CURVE: $K/a.key_secret: " "$1")" -ge "$2" ]
}
now_ms() {
    echo $(($(date +%s%N) / 1000000))
}
# key_missing NAME: daemon NAME logs that it cannot make its socket.
key_missing() {
    use_daemon "$1"
    check "$1 cannot make its socket: the key file is missing (logged)" \
        wait_until 30 "$1's key error" key_errors "$ZP_LOG" 1
}
mv "$K/a.key_secret" "$K/a.key_secret.kept"
key_missing P
key_missing A
# Each of A's 2 consumers tries once a second, so 4 more tries take a second
# at least.  Without the delay, the idle one (the one without the late
# message) tried at each of its idle polls, 10 a second.
_t0=$(now_ms)
_first=$(grep -c "sink zmq: CURVE: $K/a.key_secret: " "$ZP_LOG")
wait_until 30 "A's key errors" key_errors "$ZP_LOG" $((_first + 4))
_ms=$(($(now_ms) - _t0))
check "A tries again once a second: 4 more tries took $_ms ms" test "$_ms" -ge 1000
mv "$K/a.key_secret.kept" "$K/a.key_secret"

# ---- 3: allowed again: the messages get through
cp "$K/a.key" "$ALLOW/"
cp "$K/a.key" "$ZP_TMP/allowQ/"
use_daemon Q
kill -HUP "$(zpiped_pid)"
use_daemon B
kill -HUP "$(zpiped_pid)"
refilled() {
    grep -q "curve_allow $ALLOW: 1 key allowed" "$ZP_LOG"
}
check "B re-read its allow-list on SIGHUP: 1 key" wait_until 30 "1 key" refilled
# forwarded NAME N DOWNSTREAM: daemon NAME, not restarted, delivers its N
# messages by itself, exits 0 with nothing spilled, and logged no error but
# the sink's failed sends and the missing key file.
forwarded() {
    use_daemon "$1"
    check "$1, not restarted, delivered its $2 to $3" \
        wait_until 60 "$1 delivered = $2" delivered "$2"
    stop_zpiped
    st=$?
    check "$1 exits 0 (status $st)" test "$st" -eq 0
    check "$1's accounting: $2 received, $2 delivered, none spilled" \
        check_accounting received="$2" delivered="$2" spilled=0 queued=0 in_flight=0
    check "$1's log has only the sink's send errors" \
        check_log "$ZP_LOG" 'sink zmq: consumer [0-9]+: write: |sink zmq: CURVE: '
}
forwarded P 5 Q
use_daemon Q
stop_zpiped
st=$?
check "Q exits 0 (status $st)" test "$st" -eq 0
check "Q's file holds the 5 P acknowledged, once" same_messages "$ZP_TMP/acked.push" "$QOUT"
use_daemon R
stop_zpiped
st=$?
check "R exits 0 (status $st)" test "$st" -eq 0
check "R, still refusing P's key, got nothing" test ! -s "$ROUT"
forwarded A 1 B
use_daemon B
stop_zpiped
st=$?
check "B exits 0 (status $st)" test "$st" -eq 0
cat "$ZP_TMP/acked" "$ZP_TMP/acked.late" > "$ZP_TMP/acked.all"
check "B's file holds every message A acknowledged, once" same_messages "$ZP_TMP/acked.all" "$BOUT"
check "B's log has no error" check_log
done_testing
