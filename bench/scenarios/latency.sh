#!/usr/bin/env bash
# latency - router mode ack latency p50/p99/p99.9 at 10 % and 50 % of the peak, and an echo's
#
# Router mode ack latency p50/p99/p99.9 with bench/ack_latency (2 DEALER
# clients, paced sends, latency from when each message was due), at 10 %
# and 50 % of the router msgs/s measured at 128 B tcp by throughput (its
# rows in $ZPIPE_BENCH_ROWS; or, run alone, by one zpipe bench -r run), 3 s
# each, median of 3 runs; and the same against bench/ref_router, an echo
# answering at once (the ceiling).
# Cases: LOAD%/RECEIVER, e.g. 10%/zpiped (128 B, tcp).

# shellcheck source=scripts/lib/bench.sh
. "$(dirname "$0")/../../scripts/lib/bench.sh"

ep=$(endpoint_for tcp)
bench_config "$ep" router null
start_daemon latency || {
    fail_run - "latency: zpiped did not start"
    exit 0
}
peak=$(rows_median throughput 128B/tcp/router msgs_s)
if [ -z "$peak" ]; then
    # Run alone: measure the peak as throughput would, one run.
    n=200000
    [ "$is_quick" = true ] && n=20000
    "$zpipe" bench -e "$ep" -n "$n" -s 128 -c "$clients" -r -t 30000 >"$tmp/load.out" || {
        fail_run - "latency: zpipe bench -r failed"
        exit 0
    }
    peak=$(sender_rate "$tmp/load.out")
    label="one zpipe bench -r -c $clients run, 128 B tcp"
else
    label="throughput's router, 128 B tcp"
fi
secs=3
[ "$is_quick" = true ] && secs=0.3
# The ceiling: bench/ref_router answers each message at once, libzmq alone.
ref_ep=$(endpoint_for tcp)
rm -f "$tmp/ready"
"$ref_router" "$ref_ep" "$tmp/ready" 2>"$tmp/ref.err" &
ref_pid=$!
if ! wait_until 10 "the ready file" test -e "$tmp/ready"; then
    fail_run - "latency: ref_router did not bind $ref_ep: $(cat "$tmp/ref.err")"
    exit 0
fi
param clients "$clients"
param runs "$runs"
param peak "$peak"
param peak_from "$label"
for pct in 10 50; do
    rate=$(awk -v p="$peak" -v q="$pct" 'BEGIN { r = int(p * q / 100); print (r > 0 ? r : 1) }')
    n=$(awk -v r="$rate" -v s="$secs" 'BEGIN { n = int(r * s); print (n > 100 ? n : 100) }')
    for kase in ref zpiped; do
        target=$ep
        [ "$kase" = ref ] && target=$ref_ep
        row "$pct%/$kase" target "$rate"
        row "$pct%/$kase" count "$n"
        for ((r = 1; r <= runs; r++)); do
            if ! "$ack_latency" "$target" "$rate" "$n" 128 "$clients" >"$tmp/lat.out" \
                2>"$tmp/lat.err"; then
                fail_run "$pct%/$kase" "latency $pct % $kase: $(cat "$tmp/lat.err")"
                continue
            fi
            # n= target= achieved= p50_us= p99_us= p999_us= max_us=
            kv_rows "$pct%/$kase" "$(sed -e 's/\<n=[0-9]* //; s/target=[0-9]* //' "$tmp/lat.out")"
        done
    done
done
if ! kill -TERM "$ref_pid" || ! wait "$ref_pid"; then
    fail_run - "latency: ref_router exit"
fi
ref_pid=
stop_daemon latency || fail_run - "latency: zpiped exit"
