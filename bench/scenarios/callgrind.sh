#!/usr/bin/env bash
# callgrind - instructions per message through the null and the file sink (needs valgrind)
#
# Instructions per message (valgrind --tool=callgrind, whole zpiped
# process) through the null and the file sink: two runs of different
# counts, difference of the totals over the difference of the counts, so
# start-up and shutdown cancel out.  3 such pairs; the figure is their
# minimum (median and maximum shown): how messages batch still depends on
# thread timing under valgrind, and a loaded machine only ever adds
# instructions (smaller batches), so the minimum is what repeats.  Skipped,
# and said so, without valgrind.
# Cases: 128B/tcp/SINK; per pair the rows ir_n1, ir_n2 and ir_per_msg.

# shellcheck source=scripts/lib/bench.sh
. "$(dirname "$0")/../../scripts/lib/bench.sh"

# run_callgrind SINK N: one zpiped run under callgrind; prints its total instructions.
run_callgrind() {
    local sink=$1 n=$2 ep total deadline
    ep=$(endpoint_for tcp)
    rm -f "$tmp/out.log" "$tmp"/cg.out
    bench_config "$ep" pull "$sink"
    start_daemon "callgrind $sink" valgrind -q --tool=callgrind \
        --callgrind-out-file="$tmp/cg.out" || return 1
    start_load "$ep" "$n" 128
    # Poll every 0.5 s: each poll costs the daemon a few instructions.
    deadline=$((SECONDS + 300))
    until [ "$(stat_of received)" = "$n" ]; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            say "callgrind: zpiped got $(stat_of received) of $n"
            return 1
        fi
        sleep 0.5
    done
    stop_load || return 1
    stop_daemon "callgrind $sink" || return 1
    total=$(sed -n 's/^totals: *\([0-9]*\).*/\1/p' "$tmp/cg.out")
    [ -n "$total" ] || {
        say "callgrind: no totals in its output"
        return 1
    }
    echo "$total"
}

n1=50000 n2=250000
if [ "$is_quick" = true ]; then
    n1=2000 n2=12000
fi
if ! command -v valgrind >/dev/null; then
    skip "needs valgrind"
    exit 0
fi
param runs "$runs"
param n1 "$n1"
param n2 "$n2"
for sink in null file; do
    for ((r = 1; r <= runs; r++)); do
        # Not in a $(...) subshell: cleanup must see the pids.
        if ! run_callgrind "$sink" "$n1" >"$tmp/cg1" ||
            ! run_callgrind "$sink" "$n2" >"$tmp/cg2"; then
            fail_run "128B/tcp/$sink" "callgrind $sink run $r"
            stop_leftovers
            continue
        fi
        awk -v a="$(cat "$tmp/cg1")" -v b="$(cat "$tmp/cg2")" -v x="$n1" -v y="$n2" \
            'BEGIN { printf "ir_n1=%s ir_n2=%s ir_per_msg=%.0f\n", a, b, (b - a) / (y - x) }' \
            >"$tmp/pair"
        kv_rows "128B/tcp/$sink" "$(cat "$tmp/pair")"
    done
done
