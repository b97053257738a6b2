#!/bin/sh
# 170: a sink that takes nothing.  The file sink writes to a FIFO whose
# reader holds it open but never reads: the pipe fills, the sink write waits,
# the queue fills, the senders block.  SIGTERM with a short drain_timeout
# must still end the drain in time: the waiting write gives up at the
# deadline, and what the FIFO did not take is spilled.  A restart replays
# the spill into a regular file; the FIFO's contents plus the replay hold
# every message answered OK exactly once.  (The one record the FIFO may hold
# only the start of, when the deadline cut a write short, is spilled whole.)
. "$(dirname "$0")/lib.sh"
setup

N=3000
SIZE=100
FIFO=$ZP_TMP/fifo
SPOOL=$ZP_TMP/spool
OUT=$ZP_TMP/fifo.out
REPLAY=$ZP_TMP/replay.out

queue_full() {
    grep -q '^[0-9]* STATUS=.* queued 16/16\( \|$\)' "$ZP_NOTIFY"
}

mkfifo "$FIFO" || bail "mkfifo failed"
# A reader that never reads: this shell holds the FIFO open read-write.
exec 3<>"$FIFO"
write_config "$ZP_CONF" input.mode=router input.rcvhwm=100 queue.capacity=16 \
    output.threads=2 output.batch=8 "file.path=$FIFO" file.fsync=never \
    daemon.stats_interval=50ms daemon.drain_input=200ms daemon.drain_timeout=500ms
start_zpiped || bail "zpiped did not become ready"
ok "zpiped is ready, writing to a FIFO nobody reads"

spawn "$ZMQ_CLIENT" dealer -n "$N" -s "$SIZE" -p "s-" --window 50 --timeout 600000 \
    --out "$ZP_TMP/oks" "$ZP_EP" < /dev/null > "$ZP_TMP/client.out" 2> "$ZP_TMP/client.err"
client_pid=$zp_last_pid
check "the pipe and then the queue fill up (STATUS= queued 16/16)" \
    wait_until 60 "queued 16/16 in STATUS=" queue_full

t0=$(date +%s)
stop_zpiped TERM 60
st=$?
t1=$(date +%s)
check "SIGTERM: zpiped exits 0 (status $st)" test "$st" -eq 0
check "the drain ends in time ($((t1 - t0)) s)" test $((t1 - t0)) -le "$(scaled 10)"
spilled=$(acct spilled)
check "what the FIFO did not take is spilled ($spilled)" test "${spilled:-0}" -gt 0
check "the log has no unexpected lines" check_log
kill_wait "$client_pid"

# The pipe holds at most 64 KiB: one non-blocking read takes it all.  Keep
# whole lines only: a cut-short record was spilled whole.
dd if="$FIFO" of="$ZP_TMP/fifo.raw" iflag=nonblock bs=1048576 count=1 2>/dev/null
exec 3<&-
sed -n '/^s-/p' "$ZP_TMP/fifo.raw" | awk -v size="$SIZE" 'length($0) == size' > "$OUT"

write_config "$ZP_CONF" input.mode=router "file.path=$REPLAY" file.fsync=never \
    daemon.stats_interval=50ms
start_zpiped || bail "the restarted zpiped did not become ready"
spool_empty() {
    [ -z "$(ls -A "$SPOOL")" ]
}
check "the restart replays the spool until it is empty" wait_until 60 "the spool to empty" spool_empty
stop_zpiped TERM 60
check "the restarted zpiped exits 0 (status $ZP_STATUS)" test "$ZP_STATUS" -eq 0
check "it replayed every spilled message" test "$(acct replayed)" = "$spilled"

cat "$OUT" "$REPLAY" > "$ZP_TMP/all"
check "no message came out twice" no_duplicates "$OUT" "$REPLAY"
check "every message answered OK is in the FIFO or the replay" \
    subset_of "$ZP_TMP/all" "$ZP_TMP/oks"
diag "$(line_count "$ZP_TMP/oks") OK'ed, $(line_count "$OUT") through the FIFO, $spilled spilled"

done_testing
