#!/bin/sh
# 274: the drain deadline with input.ack = stored and a sink that stores
# nothing more: the file sink writes to a FIFO whose reader never reads (a
# write to a FIFO counts as stored once written).  The pipe fills, zpiped
# holds a backlog, SIGTERM with a short drain_timeout: what the FIFO did
# not take is spilled, and each spilled message is answered OK once its
# spill file is durable (synced), while the producers still hold their
# sockets open.
# zpiped exits 0.  A restart whose sink stores nothing (a zmq dealer with
# no downstream) queues the whole spill and is killed (SIGKILL): the spill
# file is still there, since none of its records was stored.  The next
# start replays it exactly once; the FIFO's whole lines and that replay
# together are exactly the messages answered OK.
. "$(dirname "$0")/lib.sh"
setup

SIZE=100
FIFO=$ZP_TMP/fifo
SPOOL=$ZP_TMP/spool
OUT=$ZP_TMP/fifo.out
REPLAY=$ZP_TMP/replay.out

# stuck: zpiped holds messages it has not written and has written none for
# 2 s: the pipe is full.  (Not "the queue is full", nor a count held or
# written: with ack = stored the reply ring of the producer may fill first,
# with OKs that wait behind a batch stuck on the FIFO, which may be a
# single message; and how many records a full pipe holds depends on how
# the writes filled its pages.)  Polled by wait_until in this shell.
stuck_d=-1
stuck_t=0
stuck() {
    _r=$(status_field received) && _d=$(status_field delivered) || return 1
    if [ "$_d" != "$stuck_d" ]; then
        stuck_d=$_d
        stuck_t=$(date +%s)
        return 1
    fi
    [ "$_r" -gt "$_d" ] && [ "$(date +%s)" -ge $((stuck_t + 2)) ]
}

mkfifo "$FIFO" || bail "mkfifo failed"
# A reader that never reads: this shell holds the FIFO open read-write.
exec 3<>"$FIFO"
write_config "$ZP_CONF" input.mode=router input.ack=stored input.rcvhwm=100 \
    queue.capacity=16 output.threads=2 output.batch=8 "file.path=$FIFO" file.fsync=always \
    daemon.stats_interval=50ms daemon.drain_input=200ms daemon.drain_timeout=500ms
start_zpiped || bail "zpiped did not become ready"
ok "zpiped is ready (ack = stored), writing to a FIFO nobody reads"

# The clients end 8 s (scaled) after their last reply: a no-progress exit.
quiet_ms=$(($(scaled 8) * 1000))
for c in a b; do
    start_client "$c" dealer -n 100000 -s "$SIZE" -p "$c-" --window 50 --timeout "$quiet_ms" \
        --out "$ZP_TMP/ok.$c" "$ZP_EP"
done
check "the pipe fills up, and zpiped holds what it cannot write" \
    wait_until 60 "nothing written for 2 s, received > delivered in STATUS=" stuck

stop_zpiped TERM 60
check "SIGTERM: zpiped exits 0 (status $ZP_STATUS)" test "$ZP_STATUS" -eq 0
spilled=$(acct spilled)
check "what the FIFO did not take is spilled ($spilled)" test "${spilled:-0}" -gt 0
check "the log has no unexpected lines" check_log
wait_clients 120 > /dev/null
for c in a b; do
    check "client $c ended on silence, not on a bad reply" \
        grep -q 'no progress for' "$ZP_TMP/client.$c.err"
done

# The pipe holds at most 64 KiB: one non-blocking read takes it all.  Keep
# whole lines only: a cut-short record was spilled whole.
dd if="$FIFO" of="$ZP_TMP/fifo.raw" iflag=nonblock bs=1048576 count=1 2>/dev/null
exec 3<&-
sed -n '/^[ab]-/p' "$ZP_TMP/fifo.raw" | awk -v size="$SIZE" 'length($0) == size' > "$OUT"

write_config "$ZP_CONF" input.mode=router output.sink=zmq zmq.mode=dealer \
    "zmq.endpoints=tcp://127.0.0.1:$(free_port)" daemon.stats_interval=50ms
start_zpiped || bail "zpiped with a dealer sink and no downstream did not become ready"
all_queued() {
    [ "$(stats_field replayed)" = "$spilled" ]
}
check "a restart whose sink stores nothing queues the whole spill" \
    wait_until 60 "replayed = $spilled" all_queued
stop_zpiped KILL
check "SIGKILL then: the spill file stays, none of its records was stored" \
    ls "$SPOOL"/spill-*.zps

write_config "$ZP_CONF" input.mode=router "file.path=$REPLAY" file.fsync=never \
    daemon.stats_interval=50ms
start_zpiped || bail "the restarted zpiped did not become ready"
check "the restart replays the spool until it is empty" \
    wait_until 60 "the spool to empty" replay_done "$SPOOL"
stop_zpiped TERM 60
check "the restarted zpiped exits 0 (status $ZP_STATUS)" test "$ZP_STATUS" -eq 0
check "it replayed every spilled message once" test "$(acct replayed)" = "$spilled"
cat "$ZP_TMP"/ok.* > "$ZP_TMP/oks"
check "every spilled message was answered OK" subset_of "$ZP_TMP/oks" "$REPLAY"
check "the FIFO and the replay hold exactly the messages answered OK, once each" \
    same_messages "$ZP_TMP/oks" "$OUT" "$REPLAY"
diag "$(line_count "$ZP_TMP/oks") OK'ed, $(line_count "$OUT") through the FIFO, $spilled spilled"

done_testing
