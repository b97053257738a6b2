#!/bin/sh
# 040: pull mode with input.max_message_size = 1K.  Messages one byte over the
# limit, far over it (3 MiB), and multipart messages whose frames together
# are over it are refused: never in the sink, counted as rejected (in STATUS=
# and in the exit accounting).  Messages
# of exactly the limit (single- and multipart) and the normal messages sent
# around the refused ones are all delivered.
. "$(dirname "$0")/lib.sh"
setup

MAX=1024
write_config "$ZP_CONF" input.max_message_size=1K output.threads=2

start_zpiped || bail "zpiped did not become ready"
ok "zpiped is ready"

a504=$(printf '%0504d' 0 | tr 0 a)
b504=$(printf '%0504d' 0 | tr 0 b)
a600=$(printf '%0600d' 0 | tr 0 a)
# Accepted multipart records: 504 + 504 bytes, plus 16 for the second frame
# (exactly the limit: see max_message_size in zpiped.ini(5)), and a small one.
printf '%s|%s\nx|y|z\n' "$a504" "$b504" > "$ZP_TMP/multi-ok.rec"
printf '%s %s\nx y z\n' "$a504" "$b504" > "$ZP_TMP/multi-ok.lines"
# Refused multipart records: 600 + 600 bytes, each frame under the limit.
i=0
: > "$ZP_TMP/multi-big.rec"
while [ $i -lt 20 ]; do
    printf '%s|%s-%d\n' "$a600" "$a600" $i >> "$ZP_TMP/multi-big.rec"
    i=$((i + 1))
done

start_client g push --hold -n 2000 -p g- --big-every 10 --big-size $((MAX + 1)) "$ZP_EP"
start_client h push --hold -n 500 -p h- -s $MAX "$ZP_EP"
start_client H push --hold -n 5 -p H- --big-every 1 --big-size 3145728 "$ZP_EP"
start_client M push --hold --records "$ZP_TMP/multi-big.rec" "$ZP_EP"
start_client m push --hold --records "$ZP_TMP/multi-ok.rec" "$ZP_EP"
wait_until 300 "the clients to send everything" clients_sent
good=0
client_is g "sent=2000 ok=0 err=0 big=200" || good=1
client_is h "sent=500 ok=0 err=0 big=0" || good=1
client_is H "sent=5 ok=0 err=0 big=5" || good=1
client_is M "sent=20 ok=0 err=0 big=0" || good=1
client_is m "sent=2 ok=0 err=0 big=0" || good=1
check "all clients sent everything" test "$good" -eq 0
sent=$((2000 + 500 + 5 + 20 + 2))
check "zpiped read all $sent messages (STATUS= received + rejected)" wait_read "$sent"
check "the clients closed cleanly" finish_clients

stop_zpiped
st=$?
check "SIGTERM: zpiped exits 0 (status $st)" test "$st" -eq 0

{
    "$ZMQ_CLIENT" gen -n 2000 -p g- --big-every 10
    "$ZMQ_CLIENT" gen -n 500 -p h- -s $MAX
    cat "$ZP_TMP/multi-ok.lines"
} > "$ZP_TMP/expected"
check "the sink holds every accepted message exactly once and no refused one" \
    same_messages "$ZP_TMP/expected" "$ZP_SINK"
received=$((1800 + 500 + 2))
rejected=$((200 + 5 + 20))
check "accounting: received $received delivered $received rejected $rejected" \
    check_accounting received=$received replayed=0 delivered=$received spilled=0 queued=0 \
    in_flight=0 rejected=$rejected
check "no unexpected lines in the log" check_log

done_testing
