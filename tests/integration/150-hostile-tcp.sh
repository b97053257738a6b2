#!/bin/sh
# 150: hostile input on a tcp:// endpoint.  In router mode and then in pull
# mode, 50 raw TCP connections (tests/helpers/tcp_garbage) send random bytes,
# truncated and malformed ZMTP greetings (bad signature tail, old version,
# unknown mechanism, a command that is not READY), a long frame announcing
# 2^62 bytes after a valid NULL handshake, and abrupt resets (SO_LINGER 0).
# A peer announcing a frame over the input cap (ZMQ_MAXMSGSIZE, see
# producer.c) must be disconnected at once rather than buffered.  Then a
# normal client's 2000 messages all arrive exactly once, the daemon's peak
# RSS stayed within 64 MiB of what it was before, and it exits 0 on SIGTERM
# with the accounting line consistent.  Random bytes that happen to look
# like a ZMTP 1.0/2.0 peer (no handshake, NULL security) form real messages:
# those are accepted and counted like any other, so the test checks the
# client's messages by prefix and the rest only through the accounting.
. "$(dirname "$0")/lib.sh"
setup

TCP_GARBAGE=$top_builddir/tests/helpers/tcp_garbage
[ -x "$TCP_GARBAGE" ] || { echo "1..0 # SKIP $TCP_GARBAGE not built"; exit 0; }
N=2000
# The client's payloads: PREFIX and a number.  Distinctive, so that no line
# of the random bytes the hostile peers get accepted can pass for one.
PREFIX=zpclient-msg-

# vm_kib PID FIELD: FIELD (VmRSS, VmHWM) of PID's /proc status, in KiB.
vm_kib() {
    awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"
}

# hostile PORT TYPE: the 50 hostile connections, one after the other.
# Sets hostile_bad to the number that could not connect or misbehaved.
hostile() {
    hostile_bad=0
    _i=0
    while [ $_i -lt 5 ]; do
        for _m in "random 1" "random 100" "random 70000" "sig" "truncated 5" "truncated 11" \
            "badversion" "badmech" "badcmd" "reset 20"; do
            # shellcheck disable=SC2086
            if ! "$TCP_GARBAGE" ${_m%% *} 127.0.0.1 "$1" ${_m#* } 2>> "$ZP_TMP/garbage.err"; then
                hostile_bad=$((hostile_bad + 1))
            fi
        done
        _i=$((_i + 1))
    done
    # A long frame of 2^62 bytes after a valid handshake (one of the 50
    # replaced): libzmq must drop the connection, not try to buffer it.
    "$TCP_GARBAGE" hugeframe 127.0.0.1 "$1" "$2" 4611686018427387904 \
        2>> "$ZP_TMP/garbage.err" || hostile_bad=$((hostile_bad + 1))
}

# run_mode MODE: one daemon run on a fresh port.
run_mode() {
    _mode=$1
    if [ "$_mode" = router ]; then
        _type=DEALER
    else
        _type=PUSH
    fi
    port=$("$TCP_GARBAGE" freeport) || bail "no free port"
    ep=tcp://127.0.0.1:$port
    rm -f "$ZP_SINK" "$ZP_TMP"/ok.* "$ZP_TMP"/client.*
    write_config "$ZP_CONF" "input.endpoints=$ep" input.mode="$_mode" \
        input.max_message_size=1K queue.max_bytes=64M
    start_zpiped || bail "zpiped did not become ready on $ep ($_mode)"
    ok "$_mode: zpiped is ready on $ep"
    rss0=$(vm_kib "$zp_pid" VmRSS)

    hostile "$port" "$_type"
    check "$_mode: 50 hostile connections connected and were dealt with" \
        test "$hostile_bad" -eq 0
    check "$_mode: zpiped still runs after them" pid_alive "$zp_pid"

    # Over the cap (max_message_size 1 KiB: cap 16 MiB + 1 KiB): a 1 GiB
    # frame header gets the connection dropped within 10 s.
    "$TCP_GARBAGE" hugeframe 127.0.0.1 "$port" "$_type" 1073741824 2>> "$ZP_TMP/garbage.err"
    st=$?
    check "$_mode: a peer announcing a 1 GiB frame is disconnected (status $st)" test "$st" -eq 0

    if [ "$_mode" = router ]; then
        start_client c dealer -n $N -p "$PREFIX" --out "$ZP_TMP/ok.c" --timeout 60000 "$ep"
        check "$_mode: the normal client got OK for every message" wait_clients 300
        check "$_mode: client summary" client_is c "sent=$N ok=$N err=0 big=0"
    else
        start_client c push --hold -n $N -p "$PREFIX" "$ep"
        wait_until 300 "the client to send everything" clients_sent
        check "$_mode: client summary" client_is c "sent=$N ok=0 err=0 big=0"
        check "$_mode: zpiped read all $N messages" wait_read $N
        check "$_mode: the client closed cleanly" finish_clients
    fi
    check "$_mode: zpiped still runs" pid_alive "$zp_pid"
    hwm=$(vm_kib "$zp_pid" VmHWM)
    diag "$_mode: VmRSS at start ${rss0} KiB, peak VmHWM ${hwm} KiB"
    check "$_mode: peak RSS within 64 MiB of the start (${rss0} -> ${hwm} KiB)" \
        test "$hwm" -le $((rss0 + 65536))

    stop_zpiped
    st=$?
    check "$_mode: SIGTERM: zpiped exits 0 (status $st)" test "$st" -eq 0
    "$ZMQ_CLIENT" gen -n $N -p "$PREFIX" > "$ZP_TMP/expected"
    # Garbage that happens to pick ZMTP 1.0 or 2.0 (no handshake, NULL
    # security) can form a valid message: a PULL or ROUTER socket accepts
    # it like any other (or refuse it if it is too large).  Such messages
    # are counted like any other; in the lines format their bytes go out as
    # they are, newlines included, so only the accounting can count them.
    grep -a "^$PREFIX[0-9][0-9]*\$" "$ZP_SINK" > "$ZP_TMP/sink.c"
    received=$(acct received)
    other=$((${received:-0} - N))
    diag "$_mode: messages the hostile peers got accepted: $other, refused: $(acct rejected)"
    check "$_mode: the sink holds the client's $N messages exactly once" \
        same_messages "$ZP_TMP/expected" "$ZP_TMP/sink.c"
    if [ "$_mode" = router ]; then
        check "$_mode: the messages answered OK are the client's" \
            same_messages "$ZP_TMP/expected" "$ZP_TMP/ok.c"
    fi
    check "$_mode: accounting: received $received ($N + $other) all delivered, nothing queued" \
        check_accounting replayed=0 delivered="$received" spilled=0 queued=0 in_flight=0
    check "$_mode: accounting: at least the client's $N received" test "$other" -ge 0
    check "$_mode: no unexpected lines in the log" check_log
}

run_mode router
run_mode pull

# A downstream that announces a 1 GiB frame to what connects to it: the zmq
# sink (push and dealer) and the client drop the connection at the frame's
# header (ZMQ_MAXMSGSIZE, reply.h) instead of taking it in.
# serve_huge TYPE: tcp_garbage servehuge as a TYPE socket on a free port,
# in the background; sets port and huge_pid once it listens.
serve_huge() {
    port=$("$TCP_GARBAGE" freeport) || bail "no free port"
    rm -f "$ZP_TMP/huge.out"
    spawn "$TCP_GARBAGE" servehuge 127.0.0.1 "$port" "$1" 1073741824 \
        > "$ZP_TMP/huge.out" 2>> "$ZP_TMP/garbage.err"
    huge_pid=$zp_last_pid
    wait_until 30 "tcp_garbage to listen" grep -q listening "$ZP_TMP/huge.out" ||
        bail "tcp_garbage servehuge did not listen"
}
for zmode in push dealer; do
    type=PULL
    [ "$zmode" = dealer ] && type=ROUTER
    serve_huge "$type"
    write_config "$ZP_CONF" output.sink=zmq "zmq.endpoints=tcp://127.0.0.1:$port" \
        "zmq.mode=$zmode"
    start_zpiped || bail "zpiped did not become ready (zmq sink, $zmode)"
    wait_pid "$huge_pid" 60
    st=$?
    check "zmq sink, $zmode: a downstream announcing a 1 GiB frame is disconnected (status $st)" \
        test "$st" -eq 0
    check "zmq sink, $zmode: zpiped still runs" pid_alive "$zp_pid"
    stop_zpiped
    st=$?
    check "zmq sink, $zmode: SIGTERM: zpiped exits 0 (status $st)" test "$st" -eq 0
    check "zmq sink, $zmode: no unexpected lines in the log" check_log
done
serve_huge ROUTER
# It waits up to 60 s for a reply: longer than the 10 s tcp_garbage holds on.
spawn "$ZPIPE" push -r -t 60s -e "tcp://127.0.0.1:$port" hello > /dev/null 2>&1 < /dev/null
push_pid=$zp_last_pid
wait_pid "$huge_pid" 60
st=$?
check "zpipe push -r: a peer announcing a 1 GiB frame is disconnected (status $st)" \
    test "$st" -eq 0
kill_wait "$push_pid"
if [ -s "$ZP_TMP/garbage.err" ]; then
    diag_file "$ZP_TMP/garbage.err" 10
fi

done_testing
