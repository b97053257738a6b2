#!/bin/sh
# 262: a second zpiped never takes or removes a running daemon's control
# socket.  With the first daemon's client slots kept full by idle clients
# (so it accepts connections but a new one may wait for an answer), a
# second zpiped on the same control socket refuses to start and names the
# socket, whether its input endpoint is free or the first daemon's; the
# first keeps its socket and answers ping.  A second zpiped with its own
# control socket but the first's input endpoint fails to bind and leaves
# the first's socket alone.  And a daemon whose socket file was replaced
# (removed, and a new daemon started on the same path) leaves the new one's
# socket in place when it stops.
. "$(dirname "$0")/lib.sh"
setup

HOLD=$top_builddir/tests/helpers/hold_conns
TCP_GARBAGE=$top_builddir/tests/helpers/tcp_garbage
CTL=$ZP_TMP/ctl.sock
# A TCP input: a second bind of it fails (an ipc:// one would be taken over).
port=$("$TCP_GARBAGE" freeport) || bail "no free port"
ZP_EP=tcp://127.0.0.1:$port
write_config "$ZP_CONF" output.threads=1 input.endpoints="$ZP_EP"

# second NAME [KEY=VALUE...]: a config for another daemon, NAME.ini, with its
# own spool dir, sink file and input endpoint unless overridden.
second() {
    _name=$1
    shift
    mkdir -p "$ZP_TMP/spool.$_name"
    write_config "$ZP_TMP/$_name.ini" daemon.spool_dir="$ZP_TMP/spool.$_name" \
        file.path="$ZP_TMP/$_name.log" input.endpoints="ipc://$ZP_TMP/in.$_name" output.threads=1 "$@"
}

# run_second NAME: run zpiped -c NAME.ini (no notify socket) and wait up to
# 30 s for it to exit; its status in st (124: still running, killed).
run_second() {
    env -u NOTIFY_SOCKET "$ZPIPED" -c "$ZP_TMP/$1.ini" < /dev/null > "$ZP_TMP/$1.out" 2>&1 &
    _pid=$!
    zp_bg_pids="$zp_bg_pids $_pid"
    wait_pid "$_pid" 30
    st=$?
}

# pong: one zpipe ping answers pong (within zpipe's own 10 s timeout).  Under
# the reconnect flood too: a client that sends its request at once is never
# closed to make room before it is answered, so one attempt must do.
pong() {
    _out=$("$ZPIPE" ping -s "$CTL" 2>&1)
    [ "$_out" = pong ] || { diag "zpipe ping: $_out"; return 1; }
}

start_zpiped || bail "zpiped did not become ready"
ok "the first zpiped is ready"

spawn "$HOLD" -r "unix:$CTL" 80 "$(scaled 120)" > "$ZP_TMP/hold.out" 2> "$ZP_TMP/hold.err"
hold=$zp_last_pid
check "80 reconnecting idle clients keep the first daemon's slots full" \
    wait_until 30 "hold_conns to connect" grep -q '^connected ' "$ZP_TMP/hold.out"

second same-ctl daemon.control_socket="$CTL"
run_second same-ctl
check "a second zpiped on the same control socket exits 1 (status $st)" test "$st" -eq 1
check "... saying another zpiped is running there, and naming the socket" \
    grep -q "control socket: $CTL: another zpiped is running" "$ZP_TMP/same-ctl.out"
check "... the socket is still the first daemon's: ping answers pong" pong

second same-both daemon.control_socket="$CTL" input.endpoints="$ZP_EP"
run_second same-both
check "a second zpiped on the same socket and input endpoint exits 1 (status $st)" \
    test "$st" -eq 1
check "... saying another zpiped is running" \
    grep -q "control socket: $CTL: another zpiped is running" "$ZP_TMP/same-both.out"
check "... the first daemon's socket is still there" test -S "$CTL"
check "... and answers pong" pong
kill -TERM "$hold"
wait "$hold" 2> /dev/null

second same-input daemon.control_socket="$ZP_TMP/ctl2.sock" input.endpoints="$ZP_EP"
run_second same-input
check "a second zpiped with its own socket on the first's input endpoint exits 1 (status $st)" \
    test "$st" -eq 1
check "... the first daemon's socket is still there" test -S "$CTL"
check "... and answers pong" pong
check "... the second one removed its own socket" test ! -e "$ZP_TMP/ctl2.sock"

# The first daemon's socket file removed, a new daemon on the same path: the
# first one's exit must not take the new one's socket with it.
rm -f "$CTL"
second replacer daemon.control_socket="$CTL"
use_daemon replacer
start_zpiped "$ZP_TMP/replacer.ini" || bail "the replacing zpiped did not become ready"
ok "a new zpiped starts on the removed socket's path"
use_daemon ""
stop_zpiped
st=$?
check "the first zpiped exits 0 (status $st)" test "$st" -eq 0
check "... saying the socket file is no longer its own" \
    grep -q "control socket: $CTL is no longer the socket this zpiped created" "$ZP_LOG"
check "... and the new daemon's socket is still there" test -S "$CTL"
check "... and answers pong" pong
check "no unexpected lines in the first daemon's log" check_log
use_daemon replacer
stop_zpiped
st=$?
check "the new zpiped exits 0 (status $st)" test "$st" -eq 0
check "... and removes its socket" test ! -e "$CTL"
check "no unexpected lines in the new daemon's log" check_log

done_testing
