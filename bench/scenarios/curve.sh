#!/usr/bin/env bash
# curve - CURVE against plain, pull and router mode, zpiped and libzmq alone
#
# CURVE against plain (README "Security"): zpiped with the null sink, pull
# and router mode, 128 B and 16 KiB, tcp, loaded by zpipe bench -c 2 (with
# -r in router mode) with and without --curve-server-key/--curve-secret-key
# (keys from zpipe keygen; the client's public key in curve_allow): msgs/s
# end to end (pull: until zpiped received all N), median of the runs, and
# the ratio (target >= 0.5 at 128 B).  The same load against the reference
# receivers (ref_pull, ref_router) with and without CURVE measures what
# CURVE costs libzmq alone on this machine: its ratio is the ceiling of
# zpiped's, and "x ref" is zpiped with CURVE over the reference with CURVE.
# Cases: SIZEB/tcp/MODE/RECEIVER/INPUT, e.g. 128B/tcp/pull/zpiped/curve.

# shellcheck source=scripts/lib/bench.sh
. "$(dirname "$0")/../../scripts/lib/bench.sh"

# run_curve RECV MODE SEC EP N SIZE: one run of zpipe bench -c 2 (-r in
# router mode) against RECV: zpiped with the null sink, or the reference
# receiver (ref: bench/ref_pull, or bench/ref_router in router mode), with
# CURVE on (SEC = curve) or off; prints msgs/s end to end.
run_curve() {
    local recv=$1 mode=$2 sec=$3 ep=$4 n=$5 size=$6 t0 t1 extra=() keys=() secret="" ref=$ref_pull
    if [ "$sec" = curve ]; then
        extra=(input.curve_secret_key="$tmp/keys/server.key_secret"
            input.curve_allow="$tmp/keys/allow")
        keys=(--curve-server-key "$tmp/keys/server.key" --curve-secret-key "$tmp/keys/client.key_secret")
        secret=$(sed -n 's/^ *secret-key = "\(.*\)"$/\1/p' "$tmp/keys/server.key_secret")
    fi
    if [ "$recv" = ref ]; then
        rm -f "$tmp/ready" "$tmp/ref.out"
        if [ "$mode" = router ]; then
            ref=$ref_router
            ZP_REF_CURVE_SECRET=$secret "$ref" "$ep" "$tmp/ready" 2>"$tmp/ref.err" &
        else
            ZP_REF_CURVE_SECRET=$secret "$ref" "$ep" "$n" "$tmp/ready" >"$tmp/ref.out" 2>"$tmp/ref.err" &
        fi
        ref_pid=$!
        if ! wait_until 10 "the ready file" test -e "$tmp/ready"; then
            say "${ref##*/} did not bind $ep: $(cat "$tmp/ref.err")"
            return 1
        fi
    else
        bench_config "$ep" "$mode" null "${extra[@]}"
        start_daemon "curve $mode $sec" || return 1
    fi
    t0=$EPOCHREALTIME
    if [ "$mode" = router ]; then
        "$zpipe" bench -e "$ep" -n "$n" -s "$size" -c "$clients" -r -t 60000 "${keys[@]}" \
            >"$tmp/load.out" || {
            say "zpipe bench -r failed (curve $recv $sec)"
            return 1
        }
    else
        "$zpipe" bench -e "$ep" -n "$n" -s "$size" -c "$clients" -t 60000 "${keys[@]}" \
            >"$tmp/load.out" || {
            say "zpipe bench failed (curve $recv $sec)"
            return 1
        }
        if [ "$recv" = zpiped ] && ! wait_stat "$tmp/ctl.sock" received "$n" 60; then
            say "zpiped (curve $sec) did not receive all $n messages (got $(stat_of received))"
            return 1
        fi
    fi
    if [ "$recv" = ref ]; then
        [ "$mode" = router ] && kill -TERM "$ref_pid"
        wait "$ref_pid" || {
            say "${ref##*/} failed: $(cat "$tmp/ref.err")"
            ref_pid=
            return 1
        }
        ref_pid=
    fi
    t1=$EPOCHREALTIME
    if [ "$recv" = zpiped ]; then
        stop_daemon "curve $mode $sec" || return 1
    fi
    per_s "$t0" "$t1" "$n"
}

mkdir -p "$tmp/keys/allow"
if ! "$zpipe" keygen "$tmp/keys/server" >/dev/null || ! "$zpipe" keygen "$tmp/keys/client" >/dev/null; then
    fail_run - "curve: zpipe keygen failed"
    exit 0
fi
cp "$tmp/keys/client.key" "$tmp/keys/allow/"
param clients "$clients"
param runs "$runs"
for mode in pull router; do
    for size in 128 16384; do
        n=200000
        [ "$size" = 16384 ] && n=30000
        [ "$is_quick" = true ] && n=$((n / 10))
        for recv in ref zpiped; do
            for sec in plain curve; do
                kase=${size}B/tcp/$mode/$recv/$sec
                row "$kase" count "$n"
                for ((r = 1; r <= runs; r++)); do
                    ep=$(endpoint_for tcp)
                    if run_curve "$recv" "$mode" "$sec" "$ep" "$n" "$size" >"$tmp/run.out" &&
                        [ -s "$tmp/run.out" ]; then
                        row "$kase" msgs_s "$(cat "$tmp/run.out")"
                    else
                        fail_run "$kase" "curve $mode $size B $recv $sec run $r"
                        stop_leftovers
                    fi
                done
            done
        done
    done
done
