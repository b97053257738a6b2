# shellcheck shell=bash disable=SC2034 # sets what the scenarios that source it use
# scripts/lib/bench.sh - what the scenarios of scripts/bench share (bash):
# the build's tools, a temp dir, zpiped through scripts/lib/zpiped.sh, the
# load (zpipe bench --hold), the receiver's CPU and RSS, the medians a scenario
# needs itself, and the rows it prints.  Sourced by bench/scenarios/NAME.sh,
# which may then run alone: bench/scenarios/throughput.sh | scripts/bench-report
#
# A scenario prints rows on stdout, tab-separated: scenario, case, metric,
# value (case "-": a parameter of the whole scenario, e.g. runs); one per
# measurement and run.  scripts/bench-report turns them into the tables.
# Progress and diagnostics go to stderr.
#
# From the environment (scripts/bench sets them): ZPIPE_BUILD_DIR (the
# build, else build/werror, else build/bench; scripts/bench builds it),
# ZPIPE_BENCH_QUICK=1 (the tiny sizes of --quick), ZPIPE_BENCH_ROWS (a file
# of the rows of this run so far; see rows_median).
set -u

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
scenario=$(basename "$0" .sh)

say() {
    printf 'scripts/bench: %s\n' "$*" >&2
}

# shellcheck source=scripts/lib/bench-build.sh
. "$top/scripts/lib/bench-build.sh"
bd=$(bench_build_dir)
zpipe=$bd/src/zpipe
ref_pull=$bd/bench/ref_pull
ref_router=$bd/bench/ref_router
ack_latency=$bd/bench/ack_latency
fsync_latency=$bd/bench/fsync_latency

clients=2
# The pull-mode load (add -e EP -n N -s SIZE): zpipe bench --hold, whose
# clients keep their sockets open after sending until SIGTERM, so that
# whoever signals knows the receiver has all N (BENCHMARKS.md, "Why --hold").
hold_load=("$zpipe" bench -c "$clients" -t 30 --hold=120)
runs=3
is_quick=false
if [ "${ZPIPE_BENCH_QUICK:-0}" = 1 ]; then
    is_quick=true
    runs=1
fi

tmp=$(mktemp -d /tmp/zpipe-bench.XXXXXX) || exit 1

# shellcheck source=scripts/lib/zpiped.sh
. "$top/scripts/lib/zpiped.sh"
ZPIPED=$bd/src/zpiped
ZPIPE=$zpipe
NOTIFY_LISTEN=$bd/tests/helpers/notify_listen
TCP_GARBAGE=$bd/tests/helpers/tcp_garbage
ZP_TMP=$tmp
zp_has_notify=1
zp_build_has_notify "$bd" || zp_has_notify=0
diag() {
    say "$*"
}

# zp_config_defaults: what every case's config starts from (write_config
# adds the case's keys).
zp_config_defaults() {
    cat <<EOF
daemon.log_level=warning
daemon.stats_interval=0
daemon.spool_dir=$tmp/spool
daemon.control_socket=$tmp/ctl.sock
file.path=$tmp/out.log
file.fsync=interval
EOF
}

# ------------------------------------------------------------------ rows

# row CASE METRIC VALUE: one measurement.
row() {
    printf '%s\t%s\t%s\t%s\n' "$scenario" "$1" "$2" "$3"
}

# param METRIC VALUE: a parameter of the whole scenario (its heading).
param() {
    row - "$1" "$2"
}

# kv_rows CASE LINE: a row per KEY=VALUE word of LINE (ack_latency's output).
kv_rows() {
    local kv
    for kv in $2; do
        row "$1" "${kv%%=*}" "${kv#*=}"
    done
}

# skip REASON: the scenario cannot run here; the report says why.
skip() {
    param skipped "$1"
}

# fail_run CASE WHAT: count a failed run of CASE ("-": of no case) and say
# what failed (the caller stops what the run left running: stop_leftovers).
fail_run() {
    row "$1" failed "$2"
    say "FAILED: $2"
}

# median: the median of the numbers on stdin, one a line (the lower one of
# an even count), as written.
median() {
    sort -g | awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)]; else print "nan" }'
}

# rows_median SCENARIO CASE METRIC: the median of those rows in
# $ZPIPE_BENCH_ROWS (empty if none).
rows_median() {
    [ -r "${ZPIPE_BENCH_ROWS:-}" ] || return 0
    awk -F '\t' -v s="$1" -v c="$2" -v m="$3" '$1 == s && $2 == c && $3 == m { print $4 }' \
        "$ZPIPE_BENCH_ROWS" | median | grep -v '^nan$'
}

# fs_type DIR: the file system type of DIR.
fs_type() {
    df -PT "$1" | awk 'NR == 2 { print $2 }'
}

# ------------------------------------------------------------------ processes

ref_pid=
load_pid=
drain_mnt=
# stop_leftovers: stop the zpipeds, reference or load a failed run left running.
stop_leftovers() {
    local pid
    for pid in "$ref_pid" "$load_pid"; do
        if [ -n "$pid" ]; then
            kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
        fi
    done
    zp_kill_all
    ref_pid=''
    load_pid=''
}

# scenario_cleanup: redefined by a scenario with more to stop at exit.
scenario_cleanup() {
    :
}

cleanup() {
    if [ -n "$drain_mnt" ]; then
        fsfreeze -u "$drain_mnt" 2>/dev/null
    fi
    scenario_cleanup
    stop_leftovers
    if [ -n "$drain_mnt" ]; then
        umount "$drain_mnt" 2>/dev/null
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

clk_tck=$(getconf CLK_TCK)

endpoint_for() {
    case $1 in
    tcp) echo "tcp://127.0.0.1:$(free_port)" ;;
    ipc) echo "ipc://$tmp/in.sock" ;;
    esac
}

# proc_cpu PID: user + system CPU seconds of PID from /proc/PID/stat.
proc_cpu() {
    # Fields after the ")" of comm: state is 1, utime 12, stime 13.
    awk -v tck="$clk_tck" '{ sub(/^.*\) /, ""); split($0, f, " ");
        printf "%.3f\n", (f[12] + f[13]) / tck }' "/proc/$1/stat"
}

# proc_hwm PID: peak RSS of PID in KiB.
proc_hwm() {
    awk '/^VmHWM:/ { print $2 }' "/proc/$1/status"
}

# stat_of FIELD[,FIELD...]: the values of the running zpiped's counters
# (zpipe stats -f; empty if it does not answer).
stat_of() {
    "$zpipe" stats -s "$tmp/ctl.sock" -t 1000 -f "$1" 2>/dev/null
}

# wait_stat SOCKET FIELD N SECONDS: wait (at most SECONDS) until FIELD of
# the stats of the zpiped on control socket SOCKET reaches N, read every
# 10 ms by one `zpipe stats -i` process.  Not a zpipe and a sed spawned per
# poll: on 2 CPUs those cost the daemon under measurement a third of its
# rate (BENCHMARKS.md).
wait_stat() {
    local v
    while IFS= read -r v; do
        [ -n "$v" ] && [ "$v" -ge "$3" ] && return 0
    done < <("$zpipe" stats -s "$1" -t 1000 -f "$2" -i 10ms -n $(($4 * 100)) 2>/dev/null)
    return 1
}

# bench_config EP MODE SINK [section.key=value...]: zpiped's config in
# $tmp/zpiped.ini (zp_config_defaults, then these keys).
bench_config() {
    write_config "$tmp/zpiped.ini" input.endpoints="$1" input.mode="$2" output.sink="$3" "${@:4}"
}

# start_daemon LABEL [WRAPPER...]: start zpiped on $tmp/zpiped.ini (under
# WRAPPER, e.g. valgrind) and wait until it is ready.
start_daemon() {
    local label=$1
    shift
    rm -rf "$tmp/spool" "$tmp/ctl.sock" "$tmp/in.sock"
    ZPIPED_WRAP="$*" start_zpiped "$tmp/zpiped.ini" || {
        say "zpiped ($label) did not start"
        return 1
    }
}

# stop_daemon LABEL: SIGTERM, and wait for a clean exit.
stop_daemon() {
    stop_zpiped TERM || {
        say "zpiped ($1) exited with status $ZP_STATUS: $(cat "$ZP_LOG")"
        return 1
    }
}

# start_load EP N SIZE: the pull-mode load (hold_load) in the background,
# output in $tmp/load.out.
start_load() {
    "${hold_load[@]}" -e "$1" -n "$2" -s "$3" >"$tmp/load.out" 2>"$tmp/load.err" &
    load_pid=$!
}

# stop_load: tell the load the receiver has everything; false if it failed.
stop_load() {
    kill -TERM "$load_pid" 2>/dev/null
    wait "$load_pid" || {
        say "the load (zpipe bench --hold) failed: $(cat "$tmp/load.err")"
        load_pid=
        return 1
    }
    load_pid=
}

# sender_rate FILE: the msgs/s zpipe bench reported in FILE.
sender_rate() {
    sed -n 's/.* s, \([0-9.]*\) msgs\/s, .*/\1/p' "$1"
}

# per_s T0 T1 N: N over the wall time from T0 to T1 ($EPOCHREALTIME), rounded.
per_s() {
    awk -v t0="$1" -v t1="$2" -v n="$3" 'BEGIN { d = t1 - t0; if (d <= 0) d = 1e-6; printf "%.0f\n", n / d }'
}

# ------------------------------------------------------------------ frozen fs

# frozen_fs_why: mount (once) the ext4 image the drain and flood scenarios
# freeze, at $tmp/mnt; prints nothing if it is there, else why not (the
# caller then sets drain_mnt, which cleanup thaws and unmounts).
frozen_fs_why() {
    if [ -n "$drain_mnt" ]; then
        return
    fi
    if [ "$(id -u)" != 0 ]; then
        echo "needs root (loop mount, fsfreeze)"
    elif ! command -v fsfreeze >/dev/null || ! command -v mkfs.ext4 >/dev/null; then
        echo "needs fsfreeze and mkfs.ext4"
    elif ! { truncate -s 1G "$tmp/frozen.img" && mkfs.ext4 -q -F "$tmp/frozen.img" &&
        mkdir -p "$tmp/mnt" && mount -o loop "$tmp/frozen.img" "$tmp/mnt"; } >&2; then
        echo "could not loop-mount an ext4 image"
    fi
}

# queue_settled: received stopped moving and equals queued + in_flight.
queue_settled() {
    local r1 r2 q f
    r1=$(stat_of received) || return 1
    sleep 0.2
    read -r r2 q f <<<"$(stat_of received,queued,in_flight)"
    [ -n "$f" ] && [ "$r1" = "$r2" ] && [ "$r2" -eq $((q + f)) ]
}
