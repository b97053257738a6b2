#!/bin/sh
# 272: the drain with input.ack = stored.  Pipelining DEALER clients keep a
# file sink with fsync = always and one consumer (a sync per batch of 8)
# busy, so a backlog is queued; then SIGTERM.  The producers stop reading
# after drain_input but keep their sockets open until what they accepted is
# stored and answered.  zpiped exits 0; every message in the sink was
# answered OK and every OK is in the sink, exactly once: no OK was lost to
# an early close.  The clients stop when nothing has come for a while after
# zpiped is gone, so they have read every reply that reached them.
. "$(dirname "$0")/lib.sh"
setup

SIZE=100
ep1=ipc://$ZP_TMP/in1
write_config "$ZP_CONF" input.mode=router input.ack=stored "input.endpoints=$ZP_EP $ep1" \
    input.threads=2 input.rcvhwm=100 queue.capacity=5000 output.threads=1 output.batch=8 \
    file.fsync=always daemon.drain_input=500ms daemon.drain_timeout=120s \
    daemon.stats_interval=50ms
start_zpiped || bail "zpiped did not become ready"
ok "zpiped is ready (router, ack = stored, fsync = always)"

# The clients end 8 s (scaled) after their last reply: a no-progress exit.
quiet_ms=$(($(scaled 8) * 1000))
for c in a b c d; do
    ep=$ZP_EP
    case $c in b | d) ep=$ep1 ;; esac
    start_client "$c" dealer -n 10000000 -s "$SIZE" -p "$c-" --window 1000 \
        --timeout "$quiet_ms" --out "$ZP_TMP/ok.$c" "$ep"
done

backlog() {
    _q=$(status_field queued) || return 1
    [ "${_q%/*}" -ge 1000 ] && [ "$(line_count "$ZP_SINK")" -ge 2000 ]
}
check "under load with a backlog (STATUS= queued >= 1000)" wait_until 60 "a backlog" backlog

stop_zpiped TERM 120
check "SIGTERM: zpiped exits 0 (status $ZP_STATUS)" test "$ZP_STATUS" -eq 0
queued_at_close=$(sed -n 's/.*drain: inputs closed, \([0-9]*\) messages queued.*/\1/p' "$ZP_LOG")
diag "$queued_at_close messages were queued when the inputs stopped reading"
check "the inputs stopped reading with messages still to store" \
    test "${queued_at_close:-0}" -gt 0
check "the log has no unexpected lines" check_log

wait_clients 120 > /dev/null
for c in a b c d; do
    check "client $c ended on silence, not on a bad reply" \
        grep -q 'no progress for' "$ZP_TMP/client.$c.err"
    if grep -q 'unexpected reply' "$ZP_TMP/client.$c.err"; then
        not_ok "client $c: $(head -n 1 "$ZP_TMP/client.$c.err")"
    fi
done
check "every message stored was answered OK, and only those" \
    same_messages "$ZP_SINK" "$ZP_TMP"/ok.*
check "accounting: all received were delivered" \
    check_accounting "delivered=$(line_count "$ZP_SINK")" "received=$(line_count "$ZP_SINK")" \
    spilled=0 queued=0 in_flight=0
diag "$(line_count "$ZP_SINK") messages stored and answered"

done_testing
