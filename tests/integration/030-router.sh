#!/bin/sh
# 030: router mode.  DEALER clients without and with the empty delimiter and
# a REQ client run at once; oversized messages are mixed into every stream at
# known positions.  Each client checks that reply k answers message k (OK for
# a normal one, ERR for an oversized one) and the envelope: DEALER gets
# ["OK"], DEALER with delimiter and REQ get ["", "OK"].  Everything answered
# OK, and nothing else, is in the sink exactly once.
# Then a client (pyzmq, where /usr/bin/python3 has it) that never reads its
# replies sends 150,000 messages: zpiped takes them all, drops the replies
# past its reply high-water mark (100,000) and says so in one warning.
. "$(dirname "$0")/lib.sh"
setup

MAX=1024
write_config "$ZP_CONF" input.mode=router input.max_message_size=1K output.threads=2

start_zpiped || bail "zpiped did not become ready"
ok "zpiped is ready in router mode"

# One client per line: name, socket type, count, every K-th oversized (0 =
# none), the oversized size, and an extra option.  dB and rC send oversized
# messages one byte over the limit; dD sends messages of exactly the limit.
cat > "$ZP_TMP/clients" <<EOF
dA dealer 5000 50 4096 -
dB dealer 5000 100 $((MAX + 1)) --delim
rC req 1000 10 $((MAX + 1)) -
dD dealer 3000 0 0 -s=$MAX
EOF

pids=
while read -r name mode n every size extra; do
    set -- "$mode" -n "$n" -p "$name-" --out "$ZP_TMP/ok.$name" --timeout 60000
    if [ "$every" -gt 0 ]; then
        set -- "$@" --big-every "$every" --big-size "$size"
    fi
    case $extra in
    --delim) set -- "$@" --delim ;;
    -s=*) set -- "$@" -s "${extra#-s=}" ;;
    esac
    spawn "$ZMQ_CLIENT" "$@" "$ZP_EP" < /dev/null \
        > "$ZP_TMP/client.$name.out" 2> "$ZP_TMP/client.$name.err"
    pids="$pids $zp_last_pid"
done < "$ZP_TMP/clients"

status_good=0
for p in $pids; do
    wait_pid "$p" 300 || status_good=1
done
check "all clients got a reply to every message, in order, with the right envelope" \
    test "$status_good" -eq 0

: > "$ZP_TMP/expected"
rejected=0
received=0
while read -r name mode n every size extra; do
    big=0
    if [ "$every" -gt 0 ]; then
        big=$((n / every))
    fi
    want="sent=$n ok=$((n - big)) err=$big big=$big"
    got=$(client_summary "$ZP_TMP/client.$name.out")
    if [ "$got" = "$want" ]; then
        ok "$name ($mode $extra): $got"
    else
        not_ok "$name ($mode $extra): expected '$want', got '$got'"
        diag_file "$ZP_TMP/client.$name.err" 12
    fi
    rejected=$((rejected + big))
    received=$((received + n - big))
    if [ "$every" -gt 0 ]; then
        "$ZMQ_CLIENT" gen -n "$n" -p "$name-" --big-every "$every" >> "$ZP_TMP/expected"
    elif [ "$extra" != "${extra#-s=}" ]; then
        "$ZMQ_CLIENT" gen -n "$n" -p "$name-" -s "${extra#-s=}" >> "$ZP_TMP/expected"
    else
        "$ZMQ_CLIENT" gen -n "$n" -p "$name-" >> "$ZP_TMP/expected"
    fi
done < "$ZP_TMP/clients"

stop_zpiped
st=$?
check "SIGTERM: zpiped exits 0 (status $st)" test "$st" -eq 0

check "the messages answered OK are exactly the normal ones" \
    same_messages "$ZP_TMP/expected" "$ZP_TMP"/ok.*
check "the sink holds every message answered OK exactly once, no oversized one" \
    same_messages "$ZP_TMP/expected" "$ZP_SINK"
check "accounting: received $received delivered $received rejected $rejected" \
    check_accounting received=$received replayed=0 delivered=$received spilled=0 queued=0 \
    in_flight=0 rejected=$rejected
check "no unexpected lines in the log" check_log

if /usr/bin/python3 -c 'import zmq' 2> /dev/null; then
    U=150000
    start_zpiped || bail "zpiped did not restart"
    # stdin held open by a FIFO: the client keeps its socket until the end.
    mkfifo "$ZP_TMP/unread.hold"
    /usr/bin/python3 - "$ZP_EP" "$U" "$ZP_TMP/unread.hold" > "$ZP_TMP/unread.out" 2>&1 <<'PY' &
import sys, zmq
s = zmq.Context().socket(zmq.DEALER)
s.setsockopt(zmq.RCVHWM, 1)
s.setsockopt(zmq.SNDHWM, 0)
s.setsockopt(zmq.RCVBUF, 4096)
s.connect(sys.argv[1])
for i in range(int(sys.argv[2])):
    s.send_multipart([b"", b"unread-%d" % i])
open(sys.argv[3]).read()
s.close(linger=0)
PY
    unread_pid=$!
    exec 7<> "$ZP_TMP/unread.hold" # read-write: never blocks on a FIFO
    check "zpiped takes all $U messages of a client that reads no reply" wait_read $U 120
    warned() {
        grep -q "input: a client left 100000 replies unread" "$ZP_LOG"
    }
    check "... and warns that it dropped replies to it" wait_until 30 "the warning" warned
    check "... once (at most every 10 s)" test "$(grep -c 'replies unread' "$ZP_LOG")" -le 2
    exec 7>&-
    wait "$unread_pid"
    st=$?
    check "the client exits 0 (status $st)" test "$st" -eq 0
    stop_zpiped
    st=$?
    check "SIGTERM: zpiped exits 0 (status $st)" test "$st" -eq 0
    check "accounting: all $U received and delivered" \
        check_accounting received=$U delivered=$U spilled=0 queued=0 in_flight=0
else
    skip "a client that reads no reply: /usr/bin/python3 has no zmq module"
fi

done_testing
