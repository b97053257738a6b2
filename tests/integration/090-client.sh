#!/bin/sh
# 090: the zpipe client.  `zpipe push` with arguments and with stdin lines,
# `zpipe push --router` (exit 0 only when every message is answered OK), and
# `zpipe bench`, which reports a rate.  In router mode every message bench
# sent must land in the sink; in pull mode a sender that exits cannot know
# what the daemon read (libzmq drops what is still in the daemon's socket
# buffer when a peer disconnects while the daemon's ZMQ_RCVHWM is full), so
# there the sink must hold bench messages, each at most once.
. "$(dirname "$0")/lib.sh"
setup

# ---- pull mode: push with arguments, push from stdin, bench
write_config "$ZP_CONF" output.threads=1 input.threads=1
start_zpiped || bail "zpiped did not become ready"
ok "zpiped is ready (pull)"

"$ZPIPE" push -e "$ZP_EP" first "second message" "" third > "$ZP_TMP/out" 2>&1 < /dev/null
st=$?
check "zpipe push with arguments exits 0 (status $st)" test "$st" -eq 0
[ "$st" -eq 0 ] || diag_file "$ZP_TMP/out" 5

printf 'line one\nline two\n\nline four\nno newline at end' |
    "$ZPIPE" push -e "$ZP_EP" > "$ZP_TMP/out" 2>&1
st=$?
check "zpipe push from stdin exits 0 (status $st)" test "$st" -eq 0
[ "$st" -eq 0 ] || diag_file "$ZP_TMP/out" 5

"$ZPIPE" bench -e "$ZP_EP" -n 10000 -c 2 > "$ZP_TMP/bench.out" 2> "$ZP_TMP/bench.err" < /dev/null
st=$?
check "zpipe bench -n 10000 -c 2 exits 0 (status $st)" test "$st" -eq 0
[ "$st" -eq 0 ] || diag_file "$ZP_TMP/bench.err" 5
diag "bench: $(cat "$ZP_TMP/bench.out")"
check "zpipe bench reports 10000 messages and a rate in msgs/s" \
    grep -Eq '^10000 messages, .*[0-9]+ msgs/s' "$ZP_TMP/bench.out"

stop_zpiped
st=$?
check "SIGTERM: zpiped exits 0 (status $st)" test "$st" -eq 0

# With one producer and one consumer thread the order is kept; bench's
# messages come after the pushed ones.
printf 'first\nsecond message\n\nthird\nline one\nline two\n\nline four\nno newline at end\n' \
    > "$ZP_TMP/expected.push"
n_push=$(line_count "$ZP_TMP/expected.push")
head -n "$n_push" "$ZP_SINK" > "$ZP_TMP/sink.push"
if cmp -s "$ZP_TMP/expected.push" "$ZP_TMP/sink.push"; then
    ok "push: arguments and stdin lines arrived in order, empty ones included"
else
    not_ok "push: the sink's first lines differ from what was pushed"
    diag "$(diff "$ZP_TMP/expected.push" "$ZP_TMP/sink.push" | head -n 10)"
fi

tail -n +$((n_push + 1)) "$ZP_SINK" > "$ZP_TMP/sink.bench"
{
    "$ZMQ_CLIENT" gen -n 5000 -p c0- -s 100
    "$ZMQ_CLIENT" gen -n 5000 -p c1- -s 100
} > "$ZP_TMP/expected.bench"
n_bench=$(line_count "$ZP_TMP/sink.bench")
diag "pull: $n_bench of bench's 10000 messages were read by zpiped"
check "pull bench: the sink holds only bench's messages (c0-0..c0-4999, c1-0..c1-4999)" \
    subset_of "$ZP_TMP/expected.bench" "$ZP_TMP/sink.bench"
check "pull bench: no message twice" no_duplicates "$ZP_TMP/sink.bench"
total=$((n_push + n_bench))
check "accounting: received = delivered = $total" \
    check_accounting received=$total delivered=$total spilled=0 rejected=0
check "no unexpected lines in the log" check_log

# ---- router mode: push --router, an oversized message, bench --router
rm -f "$ZP_SINK"
write_config "$ZP_CONF" input.mode=router input.max_message_size=1K output.threads=1
start_zpiped || bail "zpiped did not become ready (router)"
ok "zpiped is ready (router)"

"$ZPIPE" push -e "$ZP_EP" --router r1 r2 r3 > "$ZP_TMP/out" 2>&1 < /dev/null
st=$?
check "zpipe push --router exits 0 after the OKs (status $st)" test "$st" -eq 0
[ "$st" -eq 0 ] || diag_file "$ZP_TMP/out" 5

printf 'r4\nr5\n' | "$ZPIPE" push -e "$ZP_EP" -r > "$ZP_TMP/out" 2>&1
st=$?
check "zpipe push -r from stdin exits 0 (status $st)" test "$st" -eq 0

toobig=$(printf '%02000d' 0)
"$ZPIPE" push -e "$ZP_EP" --router "$toobig" > "$ZP_TMP/out" 2>&1 < /dev/null
st=$?
check "zpipe push --router of an oversized message fails (status $st) and says ERR" \
    sh -c '[ "$1" -ne 0 ] && grep -q ERR "$2"' sh "$st" "$ZP_TMP/out"

"$ZPIPE" bench -e "$ZP_EP" -r -n 10000 -c 2 > "$ZP_TMP/bench.out" 2> "$ZP_TMP/bench.err" < /dev/null
st=$?
check "zpipe bench -r -n 10000 -c 2 exits 0 with 10000 acked (status $st)" \
    sh -c '[ "$1" -eq 0 ] && grep -Eq "^10000 messages, .*[0-9]+ msgs/s.*, 10000 acked" "$2"' \
    sh "$st" "$ZP_TMP/bench.out"
diag "bench -r: $(cat "$ZP_TMP/bench.out")"

stop_zpiped
st=$?
check "SIGTERM: zpiped exits 0 (status $st)" test "$st" -eq 0
{
    printf 'r1\nr2\nr3\nr4\nr5\n'
    "$ZMQ_CLIENT" gen -n 5000 -p c0- -s 100
    "$ZMQ_CLIENT" gen -n 5000 -p c1- -s 100
} > "$ZP_TMP/expected.router"
check "router: all 10000 bench messages and every pushed one landed once, the oversized one not" \
    same_messages "$ZP_TMP/expected.router" "$ZP_SINK"
check "accounting: received 10005 delivered 10005 rejected 1" \
    check_accounting received=10005 delivered=10005 spilled=0 rejected=1
check "no unexpected lines in the log" check_log

# ---- no daemon: push fails within its timeout instead of hanging
timeout -k 5 "$(scaled 30)" "$ZPIPE" push -e "ipc://$ZP_TMP/nobody" -t 1s hello \
    > "$ZP_TMP/out" 2>&1 < /dev/null
st=$?
check "zpipe push with no daemon fails after -t 1s (status $st)" \
    test "$st" -ne 0 -a "$st" -ne 124

done_testing
