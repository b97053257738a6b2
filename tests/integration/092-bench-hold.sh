#!/bin/sh
# 092: zpipe bench --hold, the pull-mode load of the benchmarks.  The file
# sink writes to a FIFO nobody reads at first, so zpiped's small queue and
# ZMQ_RCVHWM fill and bench's sends block; then a slow reader paces the
# rest, so the high-water marks are still full when bench sends its last
# message.  bench must print its line and keep its sockets open (a PUSH
# sender that closed then could lose its tail: libzmq issue 4660), zpiped
# must read all N, and SIGTERM must then end bench with status 0.  Also:
# --hold=DURATION ends by itself, and --hold with -r is a usage error.
. "$(dirname "$0")/lib.sh"
setup

N=4000
SIZE=100
FIFO=$ZP_TMP/fifo
OUT=$ZP_TMP/fifo.out

queue_full() {
    grep -q '^[0-9]* STATUS=.* queued 16/16\( \|$\)' "$ZP_NOTIFY"
}

mkfifo "$FIFO" || bail "mkfifo failed"
# A reader that never reads keeps the sink's open from blocking.
exec 3<>"$FIFO"
write_config "$ZP_CONF" input.rcvhwm=50 queue.capacity=16 output.threads=1 output.batch=8 \
    "file.path=$FIFO" file.fsync=never daemon.stats_interval=50ms
start_zpiped || bail "zpiped did not become ready"
ok "zpiped is ready (pull), writing to a FIFO nobody reads yet"

spawn "$ZPIPE" bench -e "$ZP_EP" -n "$N" -s "$SIZE" -c 2 -t 600 --hold < /dev/null \
    > "$ZP_TMP/bench.out" 2> "$ZP_TMP/bench.err"
bench_pid=$zp_last_pid
check "the queue fills up while bench sends (STATUS= queued 16/16)" \
    wait_until 60 "queued 16/16 in STATUS=" queue_full
check "bench has not sent everything yet" test ! -s "$ZP_TMP/bench.out"

# Not holding fd 3 itself, it sees the end once zpiped and this shell close.
slow_reader "$FIFO" "$OUT" 3<&- &
reader_pid=$!
check "bench prints its line once all is sent" \
    wait_until 120 "bench's line" test -s "$ZP_TMP/bench.out"
diag "bench: $(cat "$ZP_TMP/bench.out")"
check "the line counts all $N messages" grep -Eq "^$N messages, .* msgs/s, .* MB/s\$" \
    "$ZP_TMP/bench.out"
check "zpiped reads all $N messages while bench holds its sockets" wait_read "$N" 120
check "bench still holds (runs) until it is signalled" pid_alive "$bench_pid"
kill -TERM "$bench_pid"
wait_pid "$bench_pid" 60
st=$?
check "SIGTERM: bench exits 0 (status $st)" test "$st" -eq 0
[ "$st" -eq 0 ] || diag_file "$ZP_TMP/bench.err" 5

stop_zpiped TERM 60
st=$?
check "SIGTERM: zpiped exits 0 (status $st)" test "$st" -eq 0
exec 3<&-
wait_pid "$reader_pid" 60
{
    "$ZMQ_CLIENT" gen -n $((N / 2)) -p c0- -s "$SIZE"
    "$ZMQ_CLIENT" gen -n $((N / 2)) -p c1- -s "$SIZE"
} > "$ZP_TMP/expected"
check "the sink holds each of bench's $N messages exactly once" \
    same_messages "$ZP_TMP/expected" "$OUT"
check "accounting: received = delivered = $N" \
    check_accounting received="$N" delivered="$N" spilled=0 rejected=0
check "no unexpected lines in the log" check_log

# ---- --hold=DURATION ends by itself; --hold is for pull mode only
rm -f "$ZP_SINK"
write_config "$ZP_CONF"
start_zpiped || bail "zpiped did not become ready again"
spawn "$ZPIPE" bench -e "$ZP_EP" -n 100 --hold=200ms < /dev/null \
    > "$ZP_TMP/bench.out" 2> "$ZP_TMP/bench.err"
wait_pid "$zp_last_pid" 60
st=$?
check "--hold=200ms: bench exits 0 by itself (status $st)" test "$st" -eq 0
check "--hold=200ms: the line counts 100 messages" grep -q '^100 messages, ' "$ZP_TMP/bench.out"
check "zpiped reads the 100 messages" wait_read 100 60
stop_zpiped TERM 60

"$ZPIPE" bench -e "$ZP_EP" -r --hold > "$ZP_TMP/out" 2>&1 < /dev/null
st=$?
check "--hold with -r is a usage error (status $st)" test "$st" -eq 2
check "... which says why" grep -q -- '--hold applies to pull mode only' "$ZP_TMP/out"

done_testing
