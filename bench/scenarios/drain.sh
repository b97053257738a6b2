#!/usr/bin/env bash
# drain - time from SIGTERM to exit with a full queue (needs root: a frozen loop-mounted ext4)
#
# Time from SIGTERM to exit of a zpiped whose 65,536-message queue is full,
# file sink.  Needs root, a loop device and fsfreeze: the file lives on a
# loop-mounted ext4 that is frozen (writes block) while the queue fills,
# and thawed right after the SIGTERM.  Checks the accounting line: all
# delivered, none spilled.  Skipped, and said so, without them.
# Case: 128B/tcp/file.

# shellcheck source=scripts/lib/bench.sh
. "$(dirname "$0")/../../scripts/lib/bench.sh"

capacity=65536

# fill_queue EP: fill the queue of the running zpiped, whose consumers are
# blocked, to exactly $capacity: send that many, then as many more as the
# consumers took into their (blocked) batches.  False if it does not get there.
fill_queue() {
    local ep=$1 want=$capacity queued
    for _ in 1 2 3 4; do
        [ "$want" -gt 0 ] || break
        "$zpipe" bench -e "$ep" -n "$want" -s 128 -c 1 -t 30000 >/dev/null || return 1
        # Every message sent reaches the queue or a blocked batch (tcp, no loss).
        wait_until 30 "the queue to settle" queue_settled || return 1
        queued=$(stat_of queued)
        want=$((capacity - queued))
    done
    [ "$(stat_of queued)" = "$capacity" ]
}

# run_drain EP: one drain run; prints "exit_s last_write_s received in_flight":
# the seconds from SIGTERM to zpiped's exit and to the file's last
# modification (its mtime), what was drained, and how much of it the blocked
# consumers held in their batches.
run_drain() {
    local ep=$1 t0 t1 received in_flight acct lines mtime
    rm -f "$drain_mnt/out.log"
    start_daemon drain || return 1
    # Writes to the frozen file system block in the kernel: the consumers
    # stop in the middle of a write, with a batch each, and the queue fills.
    fsfreeze -f "$drain_mnt" || return 1
    if ! fill_queue "$ep"; then
        fsfreeze -u "$drain_mnt"
        say "drain: the queue did not fill to $capacity (queued $(stat_of queued))"
        return 1
    fi
    received=$(stat_of received)
    in_flight=$(stat_of in_flight)
    t0=$EPOCHREALTIME
    kill -TERM "$zp_pid"
    fsfreeze -u "$drain_mnt"
    wait_zpiped || {
        say "drain: zpiped exited with status $ZP_STATUS: $(cat "$ZP_LOG")"
        return 1
    }
    t1=$EPOCHREALTIME
    # "accounting: received R replayed 0 delivered D spilled S queued 0 in_flight 0 ..."
    acct=$(grep 'accounting: received' "$ZP_LOG" | tail -n 1)
    if ! grep -q "received $received replayed 0 delivered $received spilled 0 queued 0 in_flight 0 " \
        <<<"$acct "; then
        say "drain: accounting is not all-delivered ($received received): $acct"
        return 1
    fi
    lines=$(wc -l <"$drain_mnt/out.log")
    if [ "$lines" != "$received" ]; then
        say "drain: the file has $lines records, not $received"
        return 1
    fi
    mtime=$(stat -c %.6Y "$drain_mnt/out.log")
    awk -v a="$t0" -v b="$t1" -v m="$mtime" -v r="$received" -v f="$in_flight" \
        'BEGIN { printf "exit_s=%.3f last_write_s=%.3f drained=%s in_batches=%s\n", b - a, m - a, r, f }'
}

why=$(frozen_fs_why)
if [ -n "$why" ]; then
    skip "$why"
    exit 0
fi
drain_mnt=$tmp/mnt
param runs "$runs"
param capacity "$capacity"
ep=$(endpoint_for tcp)
bench_config "$ep" pull file file.path="$drain_mnt/out.log" daemon.log_level=info \
    queue.capacity="$capacity"
for ((r = 1; r <= runs; r++)); do
    if run_drain "$ep" >"$tmp/run.out" && [ -s "$tmp/run.out" ]; then
        kv_rows 128B/tcp/file "$(cat "$tmp/run.out")"
    else
        fail_run 128B/tcp/file "drain run $r"
        stop_leftovers
        fsfreeze -u "$drain_mnt" 2>/dev/null
    fi
done
