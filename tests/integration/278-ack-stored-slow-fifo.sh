#!/bin/sh
# 278: with input.ack = stored an OK never runs ahead of what was written.
# The file sink writes to a FIFO read slowly (4 KiB every 10 ms); a write
# to a FIFO is stored once written, so every message answered OK is either
# read already or in the pipe, which holds at most 64 KiB: OKs may lead the
# reader by at most 64 KiB of messages (65 of 1000 bytes), whereas with
# ack = queued they would lead by what the queue (1000) and the batches
# hold.  Sampled while the load runs, OK count first, then what was read.
# At the end the reader has every message answered OK, each once.
. "$(dirname "$0")/lib.sh"
setup

N=3000
SIZE=1000
# Records a full pipe (64 KiB) and the reader's chunk in transit (4 KiB) hold, whole or started.
PIPE_MSGS=$(((65536 + 4096) / (SIZE + 1) + 2))
FIFO=$ZP_TMP/fifo
OUT=$ZP_TMP/fifo.out

mkfifo "$FIFO" || bail "mkfifo failed"
write_config "$ZP_CONF" input.mode=router input.ack=stored queue.capacity=1000 \
    output.threads=1 output.batch=32 "file.path=$FIFO" file.fsync=interval \
    daemon.drain_timeout=120s
: > "$OUT"
slow_reader "$FIFO" "$OUT" &
reader_pid=$!
start_zpiped || bail "zpiped did not become ready"
ok "zpiped is ready (ack = stored), writing to a FIFO read slowly"

start_client a dealer -n "$N" -s "$SIZE" -p "a-" --window 500 --timeout 120000 \
    --out "$ZP_TMP/ok.a" "$ZP_EP"

# ahead: how many more messages were answered OK than the reader has read.
max_ahead=0
samples=0
i=0
while [ "$i" -lt 2000 ] && [ "$(line_count "$ZP_TMP/ok.a")" -lt "$N" ]; do
    oks=$(line_count "$ZP_TMP/ok.a")
    seen=$(line_count "$OUT")
    ahead=$((oks - seen))
    [ "$ahead" -gt "$max_ahead" ] && max_ahead=$ahead
    samples=$((samples + 1))
    i=$((i + 1))
    sleep 0.05
done
check "sampled while the load ran ($samples samples)" test "$samples" -ge 10
check "OKs never led the reader by more than the pipe holds (at most $max_ahead ahead, pipe $PIPE_MSGS)" \
    test "$max_ahead" -le "$PIPE_MSGS"
check "the client got OK for all $N" wait_clients 180
stop_zpiped TERM 120
check "SIGTERM: zpiped exits 0 (status $ZP_STATUS)" test "$ZP_STATUS" -eq 0
wait_pid "$reader_pid" 60
check "the reader has every message answered OK, each once" same_messages "$ZP_TMP/ok.a" "$OUT"
check "accounting: received = delivered = $N" check_accounting received=$N delivered=$N spilled=0
check "no unexpected lines in the log" check_log
done_testing
