#!/usr/bin/env bash
# zmq_sink - the zmq sink's dealer mode against its push mode, 128 B, tcp
#
# zpiped A (pull input on tcp, sink = zmq, 2 consumer threads) forwards N
# messages of 128 B that zpipe bench -c 2 sends it:
#   push    zmq.mode = push to bench/ref_pull (PULL); done when ref_pull has
#           all N
#   dealer  zmq.mode = dealer to zpiped B (router input, sink = null); done
#           when A counts all N delivered, i.e. every one acknowledged by B
#   alone   B alone: zpipe bench -r -c 2 straight into such a B: what the
#           downstream's router input takes by itself, the ceiling of the
#           dealer mode
# msgs/s = N over the wall time from starting the load until done; median
# of 3 runs (1 with --quick), all in the same run; the report gives the
# rates and dealer / push.  The first failed run ends the scenario.
# Cases: 128B/tcp/MODE, MODE one of push, dealer, alone.

# shellcheck source=scripts/lib/bench.sh
. "$(dirname "$0")/../../scripts/lib/bench.sh"

# zs_conf FILE EP SINK MODE SPOOL CTL [DOWN ZMQMODE]: the config of A or B.
zs_conf() {
    write_config "$1" input.endpoints="$2" output.sink="$3" input.mode="$4" \
        daemon.spool_dir="$5" daemon.control_socket="$6" \
        zmq.endpoints="${7:-tcp://127.0.0.1:1}" zmq.mode="${8:-push}"
}
# zs_fail WHAT: the run failed; the scenario ends (its row on fd 3, the
# scenario's stdout).
zs_fail() {
    fail_run "128B/tcp/$mode" "zmq sink: $*" >&3
    exit 0
}
# zs_start NAME CONF: start zpiped NAME (a or b) on CONF; it stays the
# current daemon (use_daemon).
zs_start() {
    use_daemon "$1"
    start_zpiped "$2" || zs_fail "zpiped $1 did not start"
}
# zs_stop NAME: stop zpiped NAME; fails the run unless it exited 0.
zs_stop() {
    use_daemon "$1"
    stop_zpiped TERM || zs_fail "zpiped $1 exited $ZP_STATUS: $(cat "$ZP_LOG")"
}

# zs_run MODE: one run of MODE; prints its msgs/s.
zs_run() {
    local t0 t1 ep down
    rm -rf "$tmp/spoolA" "$tmp/spoolB" "$tmp/ready"
    ep=tcp://127.0.0.1:$(free_port)
    down=tcp://127.0.0.1:$(free_port)
    if [ "$mode" = push ]; then
        "$ref_pull" "$down" "$n" "$tmp/ready" >"$tmp/ref.out" 2>"$tmp/ref.err" &
        ref_pid=$!
        wait_until 10 "ref_pull to bind" test -e "$tmp/ready" || zs_fail "ref_pull did not start"
    else
        zs_conf "$tmp/b.ini" "$down" null router "$tmp/spoolB" "$tmp/ctlB.sock"
        zs_start b "$tmp/b.ini"
    fi
    if [ "$mode" = alone ]; then
        t0=$EPOCHREALTIME
        "$zpipe" bench -e "$down" -n "$n" -s "$size" -c "$clients" -r -t 30000 \
            >"$tmp/bench.out" || zs_fail "zpipe bench -r failed"
        t1=$EPOCHREALTIME
        zs_stop b
        use_daemon ""
        per_s "$t0" "$t1" "$n"
        return
    fi
    zs_conf "$tmp/a.ini" "$ep" zmq pull "$tmp/spoolA" "$tmp/ctlA.sock" "$down" "$mode"
    zs_start a "$tmp/a.ini"
    t0=$EPOCHREALTIME
    "$zpipe" bench -e "$ep" -n "$n" -s "$size" -c "$clients" -t 30000 >"$tmp/bench.out" ||
        zs_fail "zpipe bench failed ($mode)"
    if [ "$mode" = push ]; then
        wait "$ref_pid" || zs_fail "ref_pull failed: $(cat "$tmp/ref.err")"
        ref_pid=
    else
        wait_stat "$tmp/ctlA.sock" delivered "$n" 60 ||
            zs_fail "A did not deliver all $n in dealer mode"
    fi
    t1=$EPOCHREALTIME
    zs_stop a
    if [ "$mode" = dealer ]; then
        zs_stop b
    fi
    use_daemon ""
    per_s "$t0" "$t1" "$n"
}

n=300000 size=128
[ "$is_quick" = true ] && n=20000
param runs "$runs"
param count "$n"
exec 3>&1
for mode in push dealer alone; do
    for ((r = 1; r <= runs; r++)); do
        # Not in $(...): the daemons must be this shell's children.
        zs_run >"$tmp/run.out"
        row "128B/tcp/$mode" msgs_s "$(cat "$tmp/run.out")"
    done
done
