# shellcheck shell=bash disable=SC2034,SC2154 # uses and sets what scripts/lib/bench.sh and the scenario do
# scripts/lib/bench-db.sh - what the sqlite and postgres scenarios of
# scripts/bench share: a database sink against its bare reference
# (bench/ref_sqlite, bench/ref_pgcopy).  Sourced after scripts/lib/bench.sh.
# Cases: [SYNC/]SIZEB/CASE, CASE one of ref, queued, stored (the ack).

db_batch=256 # [output] batch's default, the references' rows per transaction

# run_db SINK N SIZE ACK KEY=VALUE...: one zpiped run into SINK (sqlite or
# postgres; KEY=VALUE..., its config keys) of N messages of SIZE bytes.
# ack = queued: pull mode under hold_load, done when zpiped counts all N
# delivered (committed); ack = stored: router mode, zpipe bench -r (every
# message answered after its COMMIT).  Prints "rows/s cpu_s_per_mrow"
# (zpiped's own CPU).
run_db() {
    local sink=$1 n=$2 size=$3 ack=$4 ep t0 t1 cpu
    shift 4
    ep=$(endpoint_for tcp)
    if [ "$ack" = stored ]; then
        bench_config "$ep" router "$sink" "$@" input.ack=stored
    else
        bench_config "$ep" pull "$sink" "$@"
    fi
    start_daemon "$sink ack = $ack" || return 1
    t0=$EPOCHREALTIME
    if [ "$ack" = stored ]; then
        "$zpipe" bench -e "$ep" -n "$n" -s "$size" -c "$clients" -r -t 60000 >"$tmp/load.out" || {
            say "zpipe bench -r failed ($sink ack = stored)"
            return 1
        }
    else
        start_load "$ep" "$n" "$size"
        if ! wait_stat "$tmp/ctl.sock" delivered "$n" 120; then
            say "zpiped ($sink) did not deliver all $n messages (got $(stat_of delivered))"
            return 1
        fi
    fi
    t1=$EPOCHREALTIME
    cpu=$(proc_cpu "$zp_pid")
    if [ "$ack" = queued ]; then
        stop_load || return 1
    fi
    stop_daemon "$sink ack = $ack" || return 1
    awk -v t0="$t0" -v t1="$t1" -v n="$n" -v cpu="$cpu" \
        'BEGIN { d = t1 - t0; if (d <= 0) d = 1e-6; printf "%.0f %.3f\n", n / d, cpu / n * 1e6 }'
}

# ref_db_line: "rows/s cpu_s_per_mrow" from a ref_sqlite or ref_pgcopy output line.
ref_db_line() {
    sed -n 's/.*rows_per_s=\([0-9.]*\).*cpu_s_per_mrow=\([0-9.]*\).*/\1 \2/p'
}

# db_cases PREFIX RESET REF KEY=VALUE...: the sink (config keys KEY=VALUE...)
# against its bare reference (the command REF N SIZE), at 128 B and 1 KiB;
# RESET (a command) empties the database before each run; then the acked
# throughput with ack = stored at 128 B.  Rows of cases PREFIX SIZEB/CASE.
db_cases() {
    local prefix=$1 reset=$2 ref=$3 size n r kase id rate cpu
    shift 3
    for size in 128 1024; do
        n=300000
        [ "$is_quick" = true ] && n=$((n / 20))
        for kase in ref queued stored; do
            [ "$kase" = stored ] && [ "$size" != 128 ] && continue
            id=$prefix${size}B/$kase
            row "$id" count "$n"
            for ((r = 1; r <= runs; r++)); do
                $reset || {
                    fail_run "$id" "$scenario: emptying the database failed"
                    continue
                }
                if [ "$kase" = ref ]; then
                    $ref "$n" "$size" 2>"$tmp/ref.err" | ref_db_line >"$tmp/run.out"
                else
                    run_db "$scenario" "$n" "$size" "$kase" "$@" >"$tmp/run.out"
                fi
                if [ -s "$tmp/run.out" ]; then
                    read -r rate cpu <"$tmp/run.out"
                    row "$id" rows_s "$rate"
                    row "$id" cpu_s_per_Mrow "$cpu"
                else
                    fail_run "$id" "$scenario $prefix$size B $kase run $r $(cat "$tmp/ref.err" 2>/dev/null)"
                    stop_leftovers
                fi
            done
        done
    done
}
