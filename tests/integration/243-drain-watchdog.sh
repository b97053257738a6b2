#!/bin/sh
# 243: a consumer that ends early in the drain gives its watchdog slot
# back.  With output.threads = 2, one message larger than a pipe's buffer
# goes to a FIFO whose reader pauses: one consumer waits in the write, the
# other has nothing.  On SIGTERM the idle one exits as soon as the inputs
# close; the drain goes on for the other, and WATCHDOG=1 keeps coming for
# several watchdog intervals without the log saying a worker stopped
# checking in.  Then the reader resumes and the message arrives whole.
. "$(dirname "$0")/lib.sh"
setup

SIZE=200000 # more than the 64 KiB a pipe holds
WD_MS=1000
FIFO=$ZP_TMP/fifo
OUT=$ZP_TMP/fifo.out

mkfifo "$FIFO" || bail "mkfifo failed"
# A paused reader: this shell holds the FIFO open read-write and never reads.
exec 3<>"$FIFO"
write_config "$ZP_CONF" output.threads=2 output.batch=8 "file.path=$FIFO" file.fsync=never \
    daemon.stats_interval=50ms
ZPIPED_ENV="WATCHDOG_USEC=$((WD_MS * 1000))"
start_zpiped || bail "zpiped did not become ready"
ok "zpiped is ready with WATCHDOG_USEC=$((WD_MS * 1000)), writing to a paused FIFO"

start_client c push -n 1 -s "$SIZE" -p "big-" "$ZP_EP"
# one_held: the message is in a consumer's hands, none queued, none delivered.
one_held() {
    # shellcheck disable=SC2046
    set -- $(stats_field received,queued,in_flight,delivered)
    [ "$*" = "1 0 1 0" ]
}
check "a consumer holds the message, stuck in the write" wait_until 60 "one held" one_held
check "the client sent it" wait_clients 60

kill -TERM "$(zpiped_pid)"
# inputs_closed: the drain has closed the queue; the idle consumer ends.
inputs_closed() {
    grep -q "drain: inputs closed" "$ZP_LOG"
}
check "SIGTERM: the drain closes the inputs" wait_until 60 "inputs closed" inputs_closed

# Pings come every WD_MS / 4: 16 more span four watchdog intervals.
check "while the drain waits on the FIFO, WATCHDOG=1 keeps coming (16 more)" watchdog_more 16
check "no worker stopped checking in" sh -c '! grep -q "has not checked in" "$1"' sh "$ZP_LOG"

# Not inheriting fd 3: the reader must see the end once zpiped closes the FIFO.
spawn cat "$FIFO" > "$OUT" 3<&-
reader_pid=$zp_last_pid
exec 3<&-
wait_zpiped 60 TERM
check "the reader resumes: zpiped exits 0 (status $ZP_STATUS)" test "$ZP_STATUS" -eq 0
check "the reader sees the end of the FIFO" wait_pid "$reader_pid" 60

"$ZMQ_CLIENT" gen -n 1 -s "$SIZE" -p "big-" > "$ZP_TMP/universe"
check "the message came through whole" same_messages "$ZP_TMP/universe" "$OUT"
check "accounting: received = delivered = 1" \
    check_accounting received=1 delivered=1 spilled=0 queued=0 in_flight=0
check "no unexpected lines in the log" check_log

done_testing
