#!/usr/bin/env bash
# throughput - msgs/s, MB/s, CPU and RSS per payload and transport: zpiped against bench/ref_pull
#
# Per payload (16 B, 128 B, 1 KiB, 16 KiB) and transport (tcp, ipc), the
# cases:
#   ref     bench/ref_pull: binds PULL (RCVHWM 1000), receives N, exits
#   null    zpiped, pull mode, sink = null
#   file    zpiped, pull mode, file sink, fsync = interval
#   router  zpiped, router mode, sink = null, load zpipe bench -r
#           (every message acknowledged)
# Load: zpipe bench --hold -c 2, whose PUSH clients keep their sockets open
# until the receiver has all N (libzmq 4.3 can lose the tail of a PUSH sender that
# disconnects while the receiver's HWM is full: libzmq issue 4660, seen over
# ipc), so ipc is measured too.  Router: zpipe bench -r -c 2 (nothing is in
# flight at its close).
# Columns: msgs/s and MB/s end to end (N over the wall time from starting
# the load until the receiver has all N: ref_pull exited, zpiped's
# "received" polled every 10 ms, router: every message acknowledged); the
# ratio to ref for the same payload and transport; the receiver's CPU
# seconds per million messages; its peak RSS (VmHWM); the load's own
# sender-side rate.  Median of 3 runs per column.
# Cases: SIZEB/TRANSPORT/CASE, e.g. 128B/tcp/null.

# shellcheck source=scripts/lib/bench.sh
. "$(dirname "$0")/../../scripts/lib/bench.sh"

# measured T0 T1 N SIZE CPU RSS: the rows of one run (load.out: the sender).
measured() {
    local sender
    sender=$(sender_rate "$tmp/load.out")
    awk -v t0="$1" -v t1="$2" -v n="$3" -v size="$4" -v snd="${sender:-0}" -v cpu="$5" \
        -v rss="$6" -v c="$kase_id" -v s="$scenario" 'BEGIN {
        d = t1 - t0; if (d <= 0) d = 1e-6
        printf "%s\t%s\tmsgs_s\t%.0f\n", s, c, n / d
        printf "%s\t%s\tMB_s\t%.2f\n", s, c, n * size / d / 1e6
        printf "%s\t%s\tsender_msgs_s\t%s\n", s, c, snd
        printf "%s\t%s\tcpu_s_per_Mmsg\t%.3f\n", s, c, cpu * 1e6 / n
        printf "%s\t%s\trss_kib\t%s\n", s, c, rss }'
}

# run_ref EP N SIZE: one ref run.
run_ref() {
    local ep=$1 n=$2 size=$3 cpu rss t0 t1
    rm -f "$tmp/ready" "$tmp/ref.out" "$tmp/in.sock"
    "$ref_pull" "$ep" "$n" "$tmp/ready" >"$tmp/ref.out" 2>"$tmp/ref.err" &
    ref_pid=$!
    if ! wait_until 10 "the ready file" test -e "$tmp/ready"; then
        say "ref_pull did not bind $ep: $(cat "$tmp/ref.err")"
        return 1
    fi
    t0=$EPOCHREALTIME
    start_load "$ep" "$n" "$size"
    wait "$ref_pid" || {
        say "ref_pull failed: $(cat "$tmp/ref.err")"
        ref_pid=
        return 1
    }
    t1=$EPOCHREALTIME
    ref_pid=
    stop_load || return 1
    read -r _ cpu rss <"$tmp/ref.out"
    measured "$t0" "$t1" "$n" "$size" "$cpu" "$rss"
}

# run_daemon CASE EP N SIZE: one zpiped run.
run_daemon() {
    local kase=$1 ep=$2 n=$3 size=$4 mode=pull sink=null cpu rss t0 t1
    case $kase in
    file) sink="file" ;;
    router) mode=router ;;
    esac
    rm -f "$tmp/out.log"
    bench_config "$ep" "$mode" "$sink"
    start_daemon "$kase" || return 1
    t0=$EPOCHREALTIME
    if [ "$mode" = router ]; then
        "$zpipe" bench -e "$ep" -n "$n" -s "$size" -c "$clients" -r -t 30000 \
            >"$tmp/load.out" || {
            say "zpipe bench -r failed ($ep)"
            return 1
        }
    else
        start_load "$ep" "$n" "$size"
        if ! wait_stat "$tmp/ctl.sock" received "$n" 60; then
            say "zpiped ($kase) did not receive all $n messages (got $(stat_of received))"
            return 1
        fi
    fi
    t1=$EPOCHREALTIME
    cpu=$(proc_cpu "$zp_pid")
    rss=$(proc_hwm "$zp_pid")
    if [ "$mode" = pull ]; then
        stop_load || return 1
    fi
    stop_daemon "$kase" || return 1
    rm -f "$tmp/out.log"
    measured "$t0" "$t1" "$n" "$size" "$cpu" "$rss"
}

sizes=(16 128 1024 16384)
[ "$is_quick" = true ] && sizes=(128)
count_for() {
    if [ "$is_quick" = true ]; then
        echo 20000
        return
    fi
    case $1 in
    16 | 128) echo 1000000 ;;
    1024) echo 300000 ;;
    *) echo 50000 ;;
    esac
}

param clients "$clients"
param runs "$runs"
for tr in tcp ipc; do
    for size in "${sizes[@]}"; do
        n=$(count_for "$size")
        for kase in ref null file router; do
            kase_id=${size}B/$tr/$kase
            row "$kase_id" count "$n"
            for ((r = 1; r <= runs; r++)); do
                ep=$(endpoint_for "$tr")
                # Not in a $(...) subshell: cleanup must see the pids.
                if [ "$kase" = ref ]; then
                    run_ref "$ep" "$n" "$size" >"$tmp/run.out"
                else
                    run_daemon "$kase" "$ep" "$n" "$size" >"$tmp/run.out"
                fi
                # shellcheck disable=SC2181 # the status of either run
                if [ $? -ne 0 ] || [ ! -s "$tmp/run.out" ]; then
                    fail_run "$kase_id" "throughput $tr $size B $kase run $r"
                    stop_leftovers
                    continue
                fi
                cat "$tmp/run.out"
            done
        done
    done
done
