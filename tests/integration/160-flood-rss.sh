#!/bin/sh
# 160: bounded memory under a flood.  Router mode, queue.max_bytes = 64M, a
# slow sink (a FIFO the test reads 64 KiB at a time with pauses), and
# `zpipe bench --router` pushing far more than max_bytes: by default 1 GiB
# (65536 messages of 16 KiB, 4 clients) in a plain build and 256 MiB under a
# sanitizer, to stay near a minute per build; ZP_FLOOD_MB sets the volume.
# While it floods, a sampler reads the daemon's VmRSS from /proc/PID/status
# every 20 ms.  The control socket must report the producers blocked on the
# full queue (backpressure reaches the senders) while the bench still runs;
# then the reader speeds up and every message must come out exactly once.
# Peak RSS (sampled, and the kernel's VmHWM) must stay within max_bytes +
# 64 MiB; sanitizer builds have large shadow memory overheads, so there the
# peak is only reported and the assertion is skipped.
# input.rcvhwm is 100: libzmq buffers up to rcvhwm messages per input socket
# outside the queue and its max_bytes (with the default 1000 and 16 KiB
# messages that alone is 16 MiB; one run with it and a 2-minute slow phase
# peaked at 133 MiB, 5 MiB over the bound: not yet explained).
. "$(dirname "$0")/lib.sh"
setup

sanitized=0
if [ -n "${zp_sanitizer:-}" ] || ldd "$ZPIPED" 2>/dev/null | grep -q 'lib[at]san'; then
    sanitized=1
fi
if [ $sanitized = 1 ]; then
    : "${ZP_FLOOD_MB:=256}"
else
    : "${ZP_FLOOD_MB:=1024}"
fi
SIZE=16384
COUNT=$((ZP_FLOOD_MB * 64))
MAX_BYTES_MIB=64
FIFO=$ZP_TMP/fifo
OUT=$ZP_TMP/fifo.out
FAST=$ZP_TMP/fast
RSS_MAX=$ZP_TMP/rss.max

# reader: 64 KiB with a pause after each read until $FAST exists, then as
# fast as it can.  The payload padding is stripped on the way: the output
# is one "c<client>-<seq>" line per message.  The pace is load shape.
reader() {
    {
        while [ ! -e "$FAST" ]; do
            dd bs=65536 count=1 2>/dev/null
            sleep 0.05
        done
        cat
    } < "$FIFO" | tr -d . > "$OUT"
}

# sampler PID: the largest VmRSS of PID (KiB) into $RSS_MAX, every 20 ms,
# without forking per sample.
sampler() {
    _max=0
    while [ -r "/proc/$1/status" ]; do
        while read -r _k _v _rest; do
            if [ "$_k" = VmRSS: ]; then
                if [ "$_v" -gt "$_max" ]; then
                    _max=$_v
                    echo "$_max" > "$RSS_MAX.tmp" && mv "$RSS_MAX.tmp" "$RSS_MAX"
                fi
                break
            fi
        done < "/proc/$1/status" 2>/dev/null
        sleep 0.02
    done
}

# blocked_long: the control socket has said 10 times that the producers
# are blocked on the full queue (its stall clock restarts whenever the slow
# reader makes room, so blocked_s stays short; the count is what tells).
n_blocked=0
blocked_long() {
    if [ "$(stats_field blocked)" = true ]; then
        n_blocked=$((n_blocked + 1))
    fi
    [ $n_blocked -ge 10 ]
}

mkfifo "$FIFO" || bail "mkfifo failed"
write_config "$ZP_CONF" input.mode=router input.max_message_size=64K \
    input.rcvhwm=100 queue.max_bytes=${MAX_BYTES_MIB}M queue.capacity=1000000 output.threads=1 \
    output.batch=64 "file.path=$FIFO" file.fsync=never
spawn reader
reader_pid=$zp_last_pid
start_zpiped || bail "zpiped did not become ready"
ok "zpiped is ready, writing to a FIFO read slowly; flooding $ZP_FLOOD_MB MiB"
echo 0 > "$RSS_MAX"
spawn sampler "$zp_pid"
sampler_pid=$zp_last_pid

t0=$(date +%s)
spawn "$ZPIPE" bench -r -e "$ZP_EP" -n "$COUNT" -s "$SIZE" -c 4 -t 0 \
    > "$ZP_TMP/bench.out" 2> "$ZP_TMP/bench.err"
bench_pid=$zp_last_pid

check "the producers block on the full queue while the senders still send" \
    wait_until 120 "stats to say blocked for 2 s" blocked_long
check "the bench is still running, held back by the slow sink" pid_alive "$bench_pid"
: > "$FAST"

wait_pid "$bench_pid" 600
st=$?
t1=$(date +%s)
check "the bench finished (status $st) in $((t1 - t0)) s: $(cat "$ZP_TMP/bench.out")" \
    test "$st" -eq 0
diag_file "$ZP_TMP/bench.err" 5
hwm=$(awk '$1 == "VmHWM:" { print $2 }' "/proc/$zp_pid/status")
stop_zpiped
st=$?
check "SIGTERM: zpiped exits 0 (status $st)" test "$st" -eq 0
wait_pid "$reader_pid" 120
wait_pid "$sampler_pid" 20
peak=$(cat "$RSS_MAX")
limit=$(((MAX_BYTES_MIB + 64) * 1024))
diag "peak VmRSS sampled ${peak} KiB, VmHWM ${hwm} KiB, limit ${limit} KiB"
if [ $sanitized = 1 ]; then
    skip "peak RSS ${hwm} KiB <= max_bytes + 64 MiB: sanitizer build, shadow memory"
else
    check "peak RSS (sampled ${peak} KiB, VmHWM ${hwm} KiB) <= max_bytes + 64 MiB" \
        test "$hwm" -le "$limit" -a "$peak" -le "$limit"
fi

c=0
: > "$ZP_TMP/expected"
while [ $c -lt 4 ]; do
    seq 0 $((COUNT / 4 - 1)) | sed "s/^/c$c-/" >> "$ZP_TMP/expected"
    c=$((c + 1))
done
check "every one of the $COUNT messages came out of the FIFO exactly once" \
    same_messages "$ZP_TMP/expected" "$OUT"
check "accounting: received $COUNT delivered $COUNT" \
    check_accounting received=$COUNT replayed=0 delivered=$COUNT spilled=0 queued=0 \
    in_flight=0 rejected=0
check "no unexpected lines in the log" check_log

done_testing
