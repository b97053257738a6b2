#!/bin/sh
# 050: SIGHUP reopens the file sink (logrotate's rename-then-signal).  While 4
# paced clients are sending, the sink file is renamed and zpiped gets SIGHUP,
# up to 3 times; the renamed files and the new file together must hold every
# message exactly once.
. "$(dirname "$0")/lib.sh"
setup

N=20000
RATE=8000       # per client: each sends for about N / RATE = 2.5 s
CLIENTS="1 2 3 4"
TOTAL=$((N * 4))
write_config "$ZP_CONF" output.threads=2 output.batch=64

start_zpiped || bail "zpiped did not become ready"
ok "zpiped is ready"

for c in $CLIENTS; do
    start_client "$c" push --hold -n "$N" -p "c$c-" --rate "$RATE" --timeout 60000 "$ZP_EP"
done

# sink_written_or_sent: the (new) sink file has 5000 lines (so the rotations
# spread over the run), or the clients are done.
sink_written_or_sent() {
    { [ -e "$ZP_SINK" ] && [ "$(line_count "$ZP_SINK")" -ge 5000 ]; } || clients_sent
}

rotations=0
rotated_while_sending=0
while [ $rotations -lt 3 ]; do
    wait_until 60 "data in $ZP_SINK" sink_written_or_sent || break
    [ -s "$ZP_SINK" ] || break
    if ! clients_sent; then
        rotated_while_sending=$((rotated_while_sending + 1))
    fi
    rotations=$((rotations + 1))
    mv "$ZP_SINK" "$ZP_SINK.$rotations"
    kill -HUP "$(zpiped_pid)"
done
diag "$rotations rotations, $rotated_while_sending while clients were sending"

wait_until 300 "the clients to send everything" clients_sent
good=0
for c in $CLIENTS; do
    client_is "$c" "sent=$N ok=0 err=0 big=0" || good=1
done
check "4 clients sent $N messages each" test "$good" -eq 0
check "the sink was renamed and SIGHUPed while clients were sending" \
    test "$rotated_while_sending" -ge 1
check "zpiped read all $TOTAL messages (STATUS=)" wait_read "$TOTAL"
check "the clients closed cleanly" finish_clients

stop_zpiped
st=$?
check "SIGTERM: zpiped exits 0 (status $st)" test "$st" -eq 0

check "zpiped reopened: the renamed file and a new file both have messages" \
    sh -c '[ -s "$1.1" ] && { [ -s "$1.2" ] || [ -s "$1" ]; }' sh "$ZP_SINK"

: > "$ZP_TMP/expected"
for c in $CLIENTS; do
    "$ZMQ_CLIENT" gen -n "$N" -p "c$c-" >> "$ZP_TMP/expected"
done
set --
for f in "$ZP_SINK".1 "$ZP_SINK".2 "$ZP_SINK".3 "$ZP_SINK"; do
    if [ -e "$f" ]; then
        set -- "$@" "$f"
    fi
done
diag "files: $(wc -l "$@" | tr '\n' ' ')"
check "the old and new files together hold every message exactly once" \
    same_messages "$ZP_TMP/expected" "$@"
check "accounting: received = delivered = $TOTAL" \
    check_accounting received=$TOTAL delivered=$TOTAL spilled=0 queued=0 in_flight=0 rejected=0
check "no unexpected lines in the log" check_log "$ZP_LOG"

done_testing
