#!/bin/sh
# 185: socket activation without a service manager.  systemd-socket-activate
# binds a tcp:// and an ipc:// input, waits for the first connection and
# then execs zpiped with LISTEN_FDS/LISTEN_PID, as systemd does for
# zpiped.socket.  Through a gate (a shell that waits for a file, then execs
# zpiped in place, keeping LISTEN_PID right) the clients connect and send
# everything before zpiped runs:
#
#   - both connections wait in the kernel's backlog (ss: Recv-Q 1 on each
#     listening socket) while zpiped has not started;
#   - zpiped adopts both sockets (ZMQ_USE_FD), binds its third endpoint
#     itself, and every message of the three clients arrives once;
#   - a passed socket that matches no endpoint stops the start: exit 1, the
#     fd and its address in the error, nothing bound;
#   - zpiped -t does not look at the sockets.
#
# Skipped without systemd-socket-activate (package systemd).
. "$(dirname "$0")/lib.sh"

ACTIVATE=
for p in /usr/bin/systemd-socket-activate /lib/systemd/systemd-socket-activate; do
    if [ -x "$p" ]; then
        ACTIVATE=$p
        break
    fi
done
if [ -z "$ACTIVATE" ]; then
    echo "1..0 # SKIP systemd-socket-activate not installed (package systemd)"
    exit 0
fi
TCP_GARBAGE=$top_builddir/tests/helpers/tcp_garbage
setup

gate=$ZP_TMP/gate
act_sock=$ZP_TMP/act.sock

# start_activated [ACTIVATE OPTIONS...]: the notify listener, then
# systemd-socket-activate with the options, running the gate and then
# zpiped -c $ZP_CONF.  Sets zp_pid (the activator, then the gate, then
# zpiped: each execs the next), ZP_LOG, ZP_NOTIFY.  Returns 1 unless the
# activator is listening.
start_activated() {
    zp_run=$((zp_run + 1))
    ZP_LOG=$ZP_TMP/zpiped.$zp_run.log
    ZP_NOTIFY=$ZP_TMP/notify.$zp_run.out
    zp_sock=$ZP_TMP/notify.sock
    rm -f "$zp_sock"
    : > "$ZP_NOTIFY"
    "$NOTIFY_LISTEN" "$zp_sock" "$ZP_NOTIFY" 2>> "$ZP_TMP/notify_listen.err" &
    zp_listen_pid=$!
    wait_until 20 "the notify socket $zp_sock" test -S "$zp_sock" || return 1
    # The activator passes only the environment it is told to (-E).
    "$ACTIVATE" "$@" -E NOTIFY_SOCKET="$zp_sock" \
        -E TSAN_OPTIONS -E ASAN_OPTIONS -E UBSAN_OPTIONS \
        sh -c 'while [ ! -e "$0" ]; do sleep 0.02; done; exec "$@"' \
        "$gate" "$ZPIPED" -c "$ZP_CONF" < /dev/null > "$ZP_LOG" 2>&1 &
    zp_pid=$!
    wait_until 20 "systemd-socket-activate to listen" activator_listening "$#"
}

# activator_listening 2N: the activator logged one "Listening on" per -l.
activator_listening() {
    pid_alive "$zp_pid" || return 1
    [ "$(grep -c '^Listening on ' "$ZP_LOG")" -ge $(($1 / 2)) ]
}

is_ready() {
    grep -q '^[0-9]* READY=1$' "$ZP_NOTIFY"
}

# backlog KIND ADDRESS: the accept queue (Recv-Q) of the listening socket.
backlog() {
    if [ "$1" = tcp ]; then
        ss -Hltn "sport = :${2##*:}" | awk '{ print $2; exit }'
    else
        ss -Hlx "src $2" | awk '{ print $3; exit }'
    fi
}

waits_in_backlog() {
    [ "$(backlog "$1" "$2")" -ge 1 ] 2>/dev/null
}

# ---------------------------------------------- clients before the daemon
# A free port may be taken by someone else before the activator binds it:
# then it exits, and the next try gets another port.
for try in 1 2 3; do
    port=$("$TCP_GARBAGE" freeport) || bail "no free TCP port"
    write_config "$ZP_CONF" "input.endpoints=tcp://127.0.0.1:$port ipc://$act_sock $ZP_EP"
    rm -f "$act_sock"
    if start_activated -l "127.0.0.1:$port" -l "$act_sock"; then
        break
    fi
    diag_file "$ZP_LOG" 5
    stop_listener
    [ "$try" -lt 3 ] || bail "systemd-socket-activate did not start (port $port)"
done

start_client tcp push --hold -n 500 -p t "tcp://127.0.0.1:$port"
start_client ipc push --hold -n 500 -p i "ipc://$act_sock"
check "both clients sent everything (queued in libzmq) before zpiped runs" \
    wait_until 60 "the clients' summaries" clients_sent
if command -v ss > /dev/null 2>&1; then
    check "the tcp connection waits in the listening socket's backlog" \
        wait_until 20 "Recv-Q 1 on 127.0.0.1:$port" waits_in_backlog tcp "127.0.0.1:$port"
    check "the ipc connection waits in the listening socket's backlog" \
        wait_until 20 "Recv-Q 1 on $act_sock" waits_in_backlog unix "$act_sock"
else
    skip "ss not installed: the tcp backlog"
    skip "ss not installed: the ipc backlog"
fi
check "the activator saw the connection and started the gate" \
    grep -q '^Communication attempt on fd' "$ZP_LOG"
check "zpiped has not started yet (the gate waits, no READY=1)" \
    sh -c '[ "$(cat /proc/$1/comm)" = sh ] && ! grep -q READY=1 "$2"' - "$zp_pid" "$ZP_NOTIFY"

: > "$gate"
check "zpiped became ready" wait_until 60 "READY=1" is_ready
check "it took the tcp socket (fd 3) from the service manager" \
    grep -q "input: tcp://127.0.0.1:$port: socket fd 3 from the service manager" "$ZP_LOG"
check "it took the ipc socket (fd 4) from the service manager" \
    grep -q "input: ipc://$act_sock: socket fd 4 from the service manager" "$ZP_LOG"
check "it bound its third endpoint itself" \
    grep -q "input: listening on $ZP_EP (pull)\$" "$ZP_LOG"
start_client own push --hold -n 500 -p o "$ZP_EP"
check "zpiped read all 1500 messages" wait_read 1500
check "the clients exit 0" finish_clients
check "clean stop: exit status 0" stop_zpiped
"$ZMQ_CLIENT" gen -n 500 -p t > "$ZP_TMP/exp"
"$ZMQ_CLIENT" gen -n 500 -p i >> "$ZP_TMP/exp"
"$ZMQ_CLIENT" gen -n 500 -p o >> "$ZP_TMP/exp"
check "the sink holds every message exactly once" same_messages "$ZP_TMP/exp" "$ZP_SINK"
check "accounting: 1500 received and delivered" \
    check_accounting received=1500 delivered=1500 spilled=0 rejected=0
check "the log is clean" check_log
check "the ipc socket file is still there (libzmq does not unlink a passed socket)" \
    test -S "$act_sock"

# ------------------------------------------- a socket for no endpoint
other=$("$TCP_GARBAGE" freeport) || bail "no free TCP port"
rm -f "$ZP_SINK" "$act_sock" "$ZP_TMP/in0" "$ZP_TMP/ctl.sock"
start_activated -l "127.0.0.1:$port" -l "127.0.0.1:$other" ||
    bail "systemd-socket-activate did not start (ports $port $other)"
"$TCP_GARBAGE" random 127.0.0.1 "$other" 16 > /dev/null 2>&1
wait_pid "$zp_pid" 60
st=$?
zp_pid=
stop_listener
check "a socket matching no endpoint: zpiped exits 1 (status $st)" test "$st" = 1
check "the error names the fd and its address" \
    grep -q "socket activation: fd 4 (127.0.0.1:$other) matches no input endpoint" "$ZP_LOG"
check "nothing was bound: no control socket, no ipc input" \
    test ! -e "$ZP_TMP/ctl.sock" -a ! -e "$ZP_TMP/in0"
check "no READY=1" sh -c '! grep -q READY=1 "$1"' - "$ZP_NOTIFY"

# ---------------------------------------------- zpiped -t ignores them
"$ACTIVATE" -l "127.0.0.1:$other" "$ZPIPED" -t -c "$ZP_CONF" > "$ZP_TMP/t.out" 2>&1 &
t_pid=$!
zp_bg_pids="$zp_bg_pids $t_pid"
wait_until 20 "the activator to listen" grep -q '^Listening on ' "$ZP_TMP/t.out"
"$TCP_GARBAGE" random 127.0.0.1 "$other" 16 > /dev/null 2>&1
wait_pid "$t_pid" 60
st=$?
check "zpiped -t with a foreign passed socket: exit 0, config OK (status $st)" \
    sh -c '[ "$1" = 0 ] && grep -q "configuration OK" "$2"' - "$st" "$ZP_TMP/t.out"

done_testing
