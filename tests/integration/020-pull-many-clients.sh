#!/bin/sh
# 020: pull mode, 4 concurrent PUSH clients x 50,000 distinct messages on two
# endpoints and two producer threads.  The senders are stopped before the
# daemon, as the README asks of pull mode: they hold their sockets open until
# zpiped's STATUS= has counted every message, then close.  Then SIGTERM: the
# daemon must exit 0 and the sink must hold every message exactly once.
# While the clients send, stats taken over the control socket must satisfy
# the accounting invariant in every snapshot, not only at exit.
. "$(dirname "$0")/lib.sh"
setup
CTL_SEND=$top_builddir/tests/helpers/ctl_send

N=50000
CLIENTS="1 2 3 4"
TOTAL=$((N * 4))
ep1=ipc://$ZP_TMP/in1
write_config "$ZP_CONF" \
    "input.endpoints=$ZP_EP $ep1" input.threads=2 output.threads=2 output.batch=256

start_zpiped || bail "zpiped did not become ready"
ok "zpiped is ready"

# Paced, so that the load lasts about 2 s however fast this build reads:
# the snapshots below must catch it under way.
for c in $CLIENTS; do
    if [ $((c % 2)) -eq 1 ]; then ep=$ZP_EP; else ep=$ep1; fi
    start_client "$c" push --hold -n "$N" -p "c$c-" --rate 25000 --timeout 60000 "$ep"
done
# Live snapshots while the load runs: 20 "stats" requests a connection (small
# rounds, so a slow build still samples while the load runs),
# until the clients are done.
: > "$ZP_TMP/live"
i=0
while ! clients_sent && [ "$i" -lt 2000 ]; do
    yes stats | head -n 20 | "$CTL_SEND" "$ZP_TMP/ctl.sock" >> "$ZP_TMP/live" 2>/dev/null
    i=$((i + 1))
done
wait_until 300 "the clients to send everything" clients_sent
# live_invariant: every stats line has received + replayed = delivered +
# spilled + queued + in_flight; prints the samples taken mid-load.
live_invariant() {
    awk -v total="$TOTAL" '
        function num(k,   r) {
            if (match($0, "\"" k "\":[0-9]+")) {
                r = substr($0, RSTART, RLENGTH); sub(/.*:/, "", r); return r + 0
            }
            bad = 1; return -1
        }
        /^\{/ {
            n++
            in_ = num("received") + num("replayed")
            out = num("delivered") + num("spilled") + num("queued") + num("in_flight")
            if (in_ != out) {
                bad = 1
                if (shown++ < 3) print "inconsistent: " $0 > "/dev/stderr"
            }
            if (num("received") > 0 && num("received") < total) mid++
        }
        END { print mid + 0; exit (bad || n == 0) }' "$ZP_TMP/live"
}
mid=$(live_invariant 2> "$ZP_TMP/live.err")
st=$?
[ -s "$ZP_TMP/live.err" ] && diag_file "$ZP_TMP/live.err"
check "live stats: the invariant holds in all $(grep -c '^{' "$ZP_TMP/live") snapshots ($mid mid-load)" \
    test "$st" -eq 0 -a "${mid:-0}" -gt 0
good=0
for c in $CLIENTS; do
    client_is "$c" "sent=$N ok=0 err=0 big=0" || good=1
done
check "4 clients sent $N messages each" test "$good" -eq 0
check "zpiped read all $TOTAL messages (STATUS=)" wait_read "$TOTAL"
check "the clients closed cleanly" finish_clients

stop_zpiped
st=$?
check "SIGTERM: zpiped exits 0 (status $st)" test "$st" -eq 0
check "STOPPING=1 was sent" test "$(notify_count STOPPING=1)" -ge 1

: > "$ZP_TMP/expected"
for c in $CLIENTS; do
    "$ZMQ_CLIENT" gen -n "$N" -p "c$c-" >> "$ZP_TMP/expected"
done
check "the sink holds each of the $TOTAL messages exactly once" \
    same_messages "$ZP_TMP/expected" "$ZP_SINK"
check "accounting: received = delivered = $TOTAL, nothing rejected, spilled or left" \
    check_accounting received=$TOTAL replayed=0 delivered=$TOTAL spilled=0 queued=0 \
    in_flight=0 rejected=0
check "no unexpected lines in the log" check_log

done_testing
