#!/usr/bin/env bash
# flood - peak RSS while the queue holds max_bytes (needs root: a frozen loop-mounted ext4)
#
# Peak RSS under a flood (target: <= max_bytes + 32 MiB): 16 KiB messages
# into a file sink on the frozen ext4 (consumers blocked) until the queue
# holds max_bytes (256 MiB; --quick 16 MiB) and the sockets are full, then
# SIGTERM and thaw.  VmHWM when full and at the last read before the exit;
# checks the accounting (all delivered).  With the default rcvhwm (1000)
# and again with rcvhwm = 100 (not with --quick): the difference is what
# libzmq buffers in front of zpiped.  Same needs as drain.
# Cases: 16384B/tcp/rcvhwm=N.

# shellcheck source=scripts/lib/bench.sh
. "$(dirname "$0")/../../scripts/lib/bench.sh"

# vm_hwm_until_exit PID: VmHWM (KiB) of PID read every 10 ms until it exits;
# prints the last value read.
vm_hwm_until_exit() {
    local hwm='' v
    while v=$(proc_hwm "$1" 2>/dev/null) && [ -n "$v" ]; do
        hwm=$v
        sleep 0.01
    done
    echo "${hwm:-0}"
}

# run_flood EP SIZE N: one flood run; prints the KEY=VALUE of its rows.
run_flood() {
    local ep=$1 size=$2 n=$3 hwm_full hwm received qbytes acct full
    rm -f "$drain_mnt/out.log"
    start_daemon flood || return 1
    fsfreeze -f "$drain_mnt" || return 1
    start_load "$ep" "$n" "$size"
    # The load ends when every message is in a socket buffer or the daemon.
    if ! wait_until 60 "the load to end" test -s "$tmp/load.out" ||
        ! wait_until 30 "the queue to settle" queue_settled; then
        fsfreeze -u "$drain_mnt"
        say "flood: the queue did not settle (received $(stat_of received))"
        return 1
    fi
    received=$(stat_of received)
    qbytes=$(stat_of queued_bytes)
    hwm_full=$(proc_hwm "$zp_pid")
    kill -TERM "$zp_pid"
    fsfreeze -u "$drain_mnt"
    hwm=$(vm_hwm_until_exit "$zp_pid")
    wait_zpiped || {
        say "flood: zpiped exited with status $ZP_STATUS: $(cat "$ZP_LOG")"
        return 1
    }
    stop_load || return 1
    # The drain read more of what was still in the sockets (for at most
    # drain_input: what it leaves there is the senders' loss, pull mode).
    full=$received
    acct=$(grep 'accounting: received' "$ZP_LOG" | tail -n 1)
    received=$(sed -n 's/.*accounting: received \([0-9]*\) .*/\1/p' <<<"$acct")
    if [ -z "$received" ] || [ "$received" -lt "$full" ] ||
        ! grep -q "received $received replayed 0 delivered $received spilled 0 queued 0 in_flight 0 " <<<"$acct "; then
        say "flood: accounting is not all delivered ($full received when full): $acct"
        return 1
    fi
    echo "hwm_full_kib=$hwm_full hwm_kib=$hwm queued_bytes=$qbytes received=$received"
}

why=$(frozen_fs_why)
if [ -n "$why" ]; then
    skip "$why"
    exit 0
fi
drain_mnt=$tmp/mnt
size=16384
max_bytes=$((256 * 1024 * 1024))
[ "$is_quick" = true ] && max_bytes=$((16 * 1024 * 1024))
# Enough to fill the queue's bytes, the consumers' batches and the sockets.
n=$((max_bytes / size + 2048))
param clients "$clients"
param runs "$runs"
param count "$n"
param max_bytes "$max_bytes"
ep=$(endpoint_for tcp)
# The default, then a small rcvhwm: the difference is libzmq's buffers.
rcvhwms=(1000 100)
[ "$is_quick" = true ] && rcvhwms=(1000)
for rcvhwm in "${rcvhwms[@]}"; do
    kase=${size}B/tcp/rcvhwm=$rcvhwm
    bench_config "$ep" pull file file.path="$drain_mnt/out.log" daemon.log_level=info \
        queue.max_bytes="$max_bytes" input.rcvhwm="$rcvhwm"
    for ((r = 1; r <= runs; r++)); do
        if run_flood "$ep" "$size" "$n" >"$tmp/run.out" && [ -s "$tmp/run.out" ]; then
            kv_rows "$kase" "$(cat "$tmp/run.out")"
        else
            fail_run "$kase" "flood rcvhwm $rcvhwm run $r"
            stop_leftovers
            fsfreeze -u "$drain_mnt" 2>/dev/null
        fi
    done
done
