#!/usr/bin/env bash
# nats - the nats sink against bench/ref_jspub into JetStream, and K zpipeds into one stream
#
# The nats sink (README "Scaling past one machine") against
# bench/ref_jspub, a bare libnats async publisher with the sink's settings
# (2 threads, each its own connection, max_pending 4096, a Nats-Msg-Id
# header, ack timeout 10 s), 128 B, into JetStream streams on nats-servers
# on loopback (tests/helpers/nats_cluster.sh): R1 memory and R1 file on one
# server, R3 file on a 3-node cluster; a fresh stream per run.  zpiped:
# pull mode, 2 consumer threads, loaded by zpipe bench --hold; msgs/s from
# starting the load until zpiped counts all N delivered (acknowledged by the
# stream); ref: from the first publish to the last ack.  Median of the runs
# and the ratio (target >= 0.8).  Then scale-out: K zpipeds (K = 1, 2),
# each loaded by its own zpipe bench --hold with N messages, into one R3 file
# stream: total msgs/s, and the CPU seconds the zpipeds and the
# nats-servers used (what bounds it on 2 cores).  Skipped, and said so,
# without the nats sink or nats-server.
# Cases: 128B/tcp/STREAM/CASE, e.g. 128B/tcp/r1mem/zpiped; scale-out
# 128B/tcp/r3file/K=1.

# shellcheck source=scripts/lib/bench.sh
. "$(dirname "$0")/../../scripts/lib/bench.sh"

ref_jspub=$bd/bench/ref_jspub
JS_STREAM=$bd/tests/helpers/js_stream
nats_k=0
nats_loads=()
# nats_stop_loads: stop the loads of a nats run.
nats_stop_loads() {
    local pid
    for pid in "${nats_loads[@]}"; do
        kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    done
    nats_loads=()
}

scenario_cleanup() {
    nats_stop_loads
    if declare -F nats_stop_all >/dev/null; then
        nats_stop_all
    fi
}

# nats_stop_daemons: stop the loads and the zpipeds (z0 ... z<K-1>) of a nats run.
nats_stop_daemons() {
    local i
    nats_stop_loads
    for ((i = 0; i < nats_k; i++)); do
        use_daemon "z$i"
        stop_zpiped TERM >/dev/null
    done
    use_daemon ""
    nats_k=0
}

# nats_stream KIND: a fresh stream ZB on zb.msgs: r1mem, r1file or r3file.
nats_stream() {
    local reps=1 storage=file
    case $1 in
    r1mem) storage=memory ;;
    r3file) reps=3 ;;
    esac
    "$JS_STREAM" delete "$NATS_URLS" ZB >/dev/null 2>&1
    "$JS_STREAM" create "$NATS_URLS" ZB zb.msgs --replicas "$reps" --storage "$storage" \
        --dupe-window 2m 2>"$tmp/js.err" || {
        say "could not create the $1 stream: $(cat "$tmp/js.err")"
        return 1
    }
}

# nats_conf FILE EP NAME: a zpiped config of the nats sink, its spool and
# control socket under $tmp/NAME.
nats_conf() {
    mkdir -p "$tmp/$3"
    write_config "$1" daemon.spool_dir="$tmp/$3/spool" daemon.control_socket="$tmp/$3/ctl.sock" \
        input.endpoints="$2" input.mode=pull output.sink=nats output.threads=2 \
        nats.servers="$NATS_SERVERS" nats.subject=zb.msgs nats.max_pending=4096 \
        nats.ack_timeout=10s
}

# nats_servers_cpu: CPU seconds of the running nats-servers together.
nats_servers_cpu() {
    local s pid total=0
    for s in $nats_names; do
        pid=$(nats_pid "$s")
        [ -n "$pid" ] && total=$(awk -v a="$total" -v b="$(proc_cpu "$pid")" 'BEGIN { print a + b }')
    done
    echo "$total"
}

# run_nats K N: K zpipeds, each loaded by its own hold_load with N messages
# of 128 B, into the stream ZB; prints "msgs/s zpiped_cpu_s servers_cpu_s"
# (msgs/s: K * N over the time until every zpiped counts its N delivered).
run_nats() {
    local k=$1 n=$2 i t0 t1 c0 c1 zcpu=0 eps=() pids=() logs=()
    for ((i = 0; i < k; i++)); do
        eps[i]=$(endpoint_for tcp)
        nats_conf "$tmp/nats$i.ini" "${eps[i]}" "z$i"
        rm -rf "$tmp/z$i/spool" "$tmp/z$i/ctl.sock"
        use_daemon "z$i"
        nats_k=$((i + 1))
        if ! start_zpiped "$tmp/nats$i.ini"; then
            say "zpiped $i (nats) did not start"
            nats_stop_daemons
            return 1
        fi
        pids[i]=$zp_pid
        logs[i]=$ZP_LOG
    done
    use_daemon ""
    c0=$(nats_servers_cpu)
    t0=$EPOCHREALTIME
    for ((i = 0; i < k; i++)); do
        "${hold_load[@]}" -e "${eps[i]}" -n "$n" -s 128 >"$tmp/z$i/load.out" \
            2>"$tmp/z$i/load.err" &
        nats_loads[i]=$!
    done
    for ((i = 0; i < k; i++)); do
        if ! wait_stat "$tmp/z$i/ctl.sock" delivered "$n" 300; then
            say "zpiped $i (nats) did not deliver all $n: $(cat "${logs[i]}")"
            nats_stop_daemons
            return 1
        fi
    done
    t1=$EPOCHREALTIME
    c1=$(nats_servers_cpu)
    for ((i = 0; i < k; i++)); do
        zcpu=$(awk -v a="$zcpu" -v b="$(proc_cpu "${pids[i]}")" 'BEGIN { print a + b }')
    done
    nats_stop_daemons
    awk -v t0="$t0" -v t1="$t1" -v n=$((k * n)) -v z="$zcpu" -v c0="$c0" -v c1="$c1" \
        'BEGIN { d = t1 - t0; if (d <= 0) d = 1e-6; printf "%.0f %.1f %.1f\n", n / d, z, c1 - c0 }'
}

# run_jsref N: one bench/ref_jspub run into ZB; prints its msgs/s.
run_jsref() {
    "$ref_jspub" "$NATS_URLS" zb.msgs "$1" 128 2 4096 10000 >"$tmp/jspub.out" 2>"$tmp/jspub.err" || {
        say "ref_jspub failed: $(cat "$tmp/jspub.out" "$tmp/jspub.err")"
        return 1
    }
    sed -n 's/.* msgs_per_s=\([0-9]*\) .*/\1/p' "$tmp/jspub.out"
}

# nats_cluster_up N: N nats-servers (1 or 3) in $tmp/nats, replacing any.
nats_cluster_up() {
    nats_stop_all
    rm -rf "$tmp/nats"
    if ! nats_init "$tmp/nats" "$1" || ! nats_start_all >"$tmp/nats.err" 2>&1; then
        say "nats-servers did not start: $(cat "$tmp/nats.err")"
        return 1
    fi
}

if ! grep -q '^#define HAVE_NATS 1' "$bd/config.h" 2>/dev/null; then
    skip "zpiped built without the nats sink: libnats-dev"
    exit 0
fi
# shellcheck source=tests/helpers/nats_cluster.sh
. "$top/tests/helpers/nats_cluster.sh"
if ! nats_init "$tmp/nats" 1 2>"$tmp/nats.err"; then
    skip "$(cat "$tmp/nats.err")"
    exit 0
fi
param clients "$clients"
param runs "$runs"
servers=0
for kind in r1mem r1file r3file; do
    n=200000
    [ "$kind" = r3file ] && n=100000
    [ "$is_quick" = true ] && n=2000
    case $kind in
    r3file) k=3 ;;
    *) k=1 ;;
    esac
    if [ "$servers" != "$k" ]; then
        nats_cluster_up "$k" || {
            fail_run - "nats: $k server(s)"
            exit 0
        }
        servers=$k
    fi
    for kase in ref zpiped; do
        id=128B/tcp/$kind/$kase
        row "$id" count "$n"
        for ((r = 1; r <= runs; r++)); do
            nats_stream "$kind" || {
                fail_run "$id" "nats $kind stream"
                continue
            }
            # Not in $(...): the daemons must be this shell's children.
            if { [ "$kase" = ref ] && run_jsref "$n" >"$tmp/run.out"; } ||
                { [ "$kase" = zpiped ] && run_nats 1 "$n" >"$tmp/run.out"; } &&
                [ -s "$tmp/run.out" ]; then
                row "$id" msgs_s "$(awk '{ print $1 }' "$tmp/run.out")"
            else
                fail_run "$id" "nats $kind $kase run $r"
            fi
        done
    done
done
n=100000
[ "$is_quick" = true ] && n=2000
for k in 1 2; do
    id=128B/tcp/r3file/K=$k
    row "$id" count "$n"
    for ((r = 1; r <= runs; r++)); do
        nats_stream r3file || {
            fail_run "$id" "nats r3file stream"
            continue
        }
        if run_nats "$k" "$n" >"$tmp/run.out" && [ -s "$tmp/run.out" ]; then
            read -r rate zcpu scpu <"$tmp/run.out"
            row "$id" msgs_s "$rate"
            row "$id" zpiped_cpu_s "$zcpu"
            row "$id" servers_cpu_s "$scpu"
        else
            fail_run "$id" "nats scale-out K=$k run $r"
        fi
    done
done
