#!/bin/sh
# 241: backpressure from a FIFO is not a hung worker.  The file sink writes
# to a FIFO whose reader holds it open but pauses; with output.threads = 2,
# one consumer waits on the full pipe and the other on the sink's write
# lock.  Both keep checking in: WATCHDOG=1 keeps coming for several watchdog
# intervals, and the log never says a worker stopped checking in.  Then the
# reader resumes and every message arrives exactly once.
. "$(dirname "$0")/lib.sh"
setup

N=3000
SIZE=100
WD_MS=1000
FIFO=$ZP_TMP/fifo
OUT=$ZP_TMP/fifo.out

mkfifo "$FIFO" || bail "mkfifo failed"
# A paused reader: this shell holds the FIFO open read-write and never reads.
exec 3<>"$FIFO"
write_config "$ZP_CONF" input.mode=router output.threads=2 output.batch=8 \
    "file.path=$FIFO" file.fsync=never daemon.stats_interval=50ms
ZPIPED_ENV="WATCHDOG_USEC=$((WD_MS * 1000))"
start_zpiped || bail "zpiped did not become ready"
ok "zpiped is ready with WATCHDOG_USEC=$((WD_MS * 1000)), writing to a paused FIFO"

start_client c dealer -n "$N" -s "$SIZE" -p "fifo-" --window 50 --timeout 120000 \
    --out "$ZP_TMP/ok.c" "$ZP_EP"
check "every message is queued and answered OK" wait_clients 120
delivered=$(status_field delivered)
check "the pipe is full: not everything is delivered ($delivered of $N)" \
    test "${delivered:-0}" -lt "$N"

# Pings come every WD_MS / 4: 16 more span four watchdog intervals.
check "while the reader pauses, WATCHDOG=1 keeps coming (16 more)" watchdog_more 16
check "no worker stopped checking in" sh -c '! grep -q "has not checked in" "$1"' sh "$ZP_LOG"

# Not inheriting fd 3: the reader must see the end once zpiped closes the FIFO.
spawn cat "$FIFO" > "$OUT" 3<&-
reader_pid=$zp_last_pid
exec 3<&-
# delivered_all: STATUS= says every message was delivered.
delivered_all() {
    [ "$(status_field delivered)" = "$N" ]
}
check "the reader resumes: everything is delivered" wait_until 120 "delivered $N" delivered_all
stop_zpiped TERM 60
check "SIGTERM: zpiped exits 0 (status $ZP_STATUS)" test "$ZP_STATUS" -eq 0
check "the reader sees the end of the FIFO" wait_pid "$reader_pid" 60

"$ZMQ_CLIENT" gen -n "$N" -s "$SIZE" -p "fifo-" > "$ZP_TMP/universe"
check "the reader got every message exactly once" same_messages "$ZP_TMP/universe" "$OUT"
check "every OK'ed message came through" same_messages "$ZP_TMP/ok.c" "$OUT"
check "accounting: received = delivered = $N" \
    check_accounting received="$N" delivered="$N" spilled=0 queued=0 in_flight=0
check "no unexpected lines in the log" check_log

done_testing
