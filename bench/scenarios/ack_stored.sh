#!/usr/bin/env bash
# ack_stored - router mode into the file sink: ack = stored against ack = queued, and its latency
#
# Router mode into the file sink (fsync = interval, the file on the disk
# under /tmp), ack = stored against ack = queued, 128 B and 16 KiB, zpipe
# bench -r -c 2 (each client keeps its window of messages in flight):
# msgs/s, median of the runs, and the ratio (target >= 0.5 at 128 B).  Then
# the ack latency of ack = stored at 10 % of its own peak (bench/ack_latency)
# beside the floor: one append + fdatasync of 128 B on the same file system
# (bench/fsync_latency), p50 and p99.
# Cases: SIZEB/tcp/ACK, e.g. 128B/tcp/stored; 128B/tcp/stored@10% (the
# latency) and 128B/fsync (the floor).

# shellcheck source=scripts/lib/bench.sh
. "$(dirname "$0")/../../scripts/lib/bench.sh"

# run_ack ACK EP N SIZE: one router run into the file sink with ack = ACK;
# prints msgs/s (every message acknowledged).
run_ack() {
    local ack=$1 ep=$2 n=$3 size=$4
    rm -f "$tmp/out.log"
    bench_config "$ep" router file input.ack="$ack"
    start_daemon "ack = $ack" || return 1
    "$zpipe" bench -e "$ep" -n "$n" -s "$size" -c "$clients" -r -t 60000 >"$tmp/load.out" || {
        say "zpipe bench -r failed (ack = $ack)"
        return 1
    }
    stop_daemon "ack = $ack" || return 1
    rm -f "$tmp/out.log"
    sender_rate "$tmp/load.out"
}

param clients "$clients"
param runs "$runs"
param fs "$(fs_type "$tmp")"
for size in 128 16384; do
    n=200000
    [ "$size" = 16384 ] && n=30000
    [ "$is_quick" = true ] && n=$((n / 10))
    for ack in queued stored; do
        kase=${size}B/tcp/$ack
        row "$kase" count "$n"
        : >"$tmp/results"
        for ((r = 1; r <= runs; r++)); do
            ep=$(endpoint_for tcp)
            if run_ack "$ack" "$ep" "$n" "$size" >"$tmp/run.out" && [ -s "$tmp/run.out" ]; then
                row "$kase" msgs_s "$(cat "$tmp/run.out")"
                cat "$tmp/run.out" >>"$tmp/results"
            else
                fail_run "$kase" "ack_stored $size B ack = $ack run $r"
                stop_leftovers
            fi
        done
        [ "$kase" = 128B/tcp/stored ] && [ -s "$tmp/results" ] && peak=$(median <"$tmp/results")
    done
done
[ -n "${peak:-}" ] || exit 0
# The latency of an OK at 10 % of the peak, and the floor under it.
rate=$(awk -v p="$peak" 'BEGIN { r = int(p / 10); print (r > 0 ? r : 1) }')
n=$(awk -v r="$rate" -v q="$is_quick" 'BEGIN { n = int(r * (q == "true" ? 0.3 : 3)); print (n > 100 ? n : 100) }')
ep=$(endpoint_for tcp)
bench_config "$ep" router file input.ack=stored
if ! start_daemon "ack = stored latency"; then
    fail_run - "ack_stored latency: zpiped did not start"
    exit 0
fi
if lat=$("$ack_latency" "$ep" "$rate" "$n" 128 "$clients" 2>"$tmp/lat.err"); then
    kv_rows 128B/tcp/stored@10% "$lat"
else
    fail_run - "ack_stored latency: $(cat "$tmp/lat.err")"
fi
stop_daemon "ack = stored latency" || fail_run - "ack_stored latency: zpiped exit"
rm -f "$tmp/out.log"
if fl=$("$fsync_latency" "$tmp" "$([ "$is_quick" = true ] && echo 100 || echo 1000)" 128); then
    read -r p50 p99 mean <<<"$fl"
    kv_rows 128B/fsync "p50_us=$p50 p99_us=$p99 mean_us=$mean"
else
    fail_run - "ack_stored: fsync_latency failed"
fi
