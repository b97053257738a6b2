#!/bin/sh
# 270: input.ack = stored in router mode, with a clean stop.
#
# Part 1: pipelining DEALER clients (with and without the delimiter) and a
# REQ client against a file sink with fsync = always, then against the null
# sink: every message is answered OK, the file holds every message exactly
# once, and the exact counts add up.
#
# Part 2: replies per connection stay in arrival order though messages of
# very different sizes (from their own few bytes to 512 KiB) finish storing
# out of order on three consumers, and refused (oversized) messages are
# mixed in: their ERR is due at once, the OKs before them are not.  One
# producer thread serves two endpoints, so its reply ring is shared by
# every connection.  Each client checks that reply k answers message k.
# Then a REQ client sends one oversized message and nothing else: its ERR
# comes at once, with no later message stored to send it along.
. "$(dirname "$0")/lib.sh"
setup

N=3000
ep1=ipc://$ZP_TMP/in1

# run_clients NAME... : start one client per "name:mode:extra" word, wait
# for all, and return 1 if one failed.
run_clients() {
    _pids=
    for _c in "$@"; do
        _name=${_c%%:*}
        _rest=${_c#*:}
        _mode=${_rest%%:*}
        _extra=${_rest#*:}
        # shellcheck disable=SC2086
        spawn "$ZMQ_CLIENT" "$_mode" -n "$n" -p "$_name-" --out "$ZP_TMP/ok.$_name" \
            --timeout 120000 $opts $_extra "$ep" \
            < /dev/null > "$ZP_TMP/client.$_name.out" 2> "$ZP_TMP/client.$_name.err"
        _pids="$_pids $_name:$zp_last_pid"
    done
    _rc=0
    for _p in $_pids; do
        if ! wait_pid "${_p#*:}" 600; then
            diag "client ${_p%%:*}: $(head -n 3 "$ZP_TMP/client.${_p%%:*}.err")"
            _rc=1
        fi
    done
    return "$_rc"
}

# ------------------------------------------------------------ part 1
for sink in file null; do
    rm -f "$ZP_SINK" "$ZP_TMP"/ok.*
    write_config "$ZP_CONF" input.mode=router input.ack=stored output.sink=$sink \
        file.fsync=always output.threads=2 output.batch=64
    start_zpiped || bail "zpiped ($sink sink) did not become ready"
    n=$N opts="-s 100" ep=$ZP_EP
    check "$sink sink: every client gets OK for every message, in order" \
        run_clients dA:dealer:--window=200 dB:dealer:--delim rC:req:
    : > "$ZP_TMP/expected"
    for c in dA dB rC; do
        "$ZMQ_CLIENT" gen -n "$N" -s 100 -p "$c-" >> "$ZP_TMP/expected"
        check "$sink sink: $c: sent=$N ok=$N" client_is "$c" "sent=$N ok=$N err=0 big=0"
    done
    check "$sink sink: the OKs are every message sent" same_messages "$ZP_TMP/expected" \
        "$ZP_TMP"/ok.*
    stop_zpiped
    check "$sink sink: zpiped exits 0 (status $ZP_STATUS)" test "$ZP_STATUS" -eq 0
    check "$sink sink: accounting exact" check_accounting received=$((3 * N)) \
        delivered=$((3 * N)) spilled=0 queued=0 in_flight=0 rejected=0
    if [ "$sink" = file ]; then
        check "file sink: holds every message exactly once" same_messages "$ZP_TMP/expected" \
            "$ZP_SINK"
    fi
    check "$sink sink: the log has no unexpected lines" check_log
done

# ------------------------------------------------------------ part 2
rm -f "$ZP_SINK" "$ZP_TMP"/ok.*
M=240
EVERY=7
write_config "$ZP_CONF" input.mode=router input.ack=stored "input.endpoints=$ZP_EP $ep1" \
    input.threads=1 input.max_message_size=512K file.fsync=always output.threads=3 \
    output.batch=4
start_zpiped || bail "zpiped (part 2) did not become ready"
n=$M opts="-s 524288 --vary --big-every $EVERY --big-size 600000 --window 50"
ep=$ZP_EP
run_clients vA:dealer: vB:dealer:--delim > "$ZP_TMP/run0" 2>&1 &
run0=$!
ep=$ep1
run_clients vC:dealer: vD:dealer:--window=5
st1=$?
wait "$run0"
st0=$?
cat "$ZP_TMP/run0"
check "1 B .. 512 KiB messages from 4 pipelining clients on 2 endpoints: replies in order" \
    test "$st0" -eq 0 -a "$st1" -eq 0
big=$((M / EVERY))
: > "$ZP_TMP/expected"
for c in vA vB vC vD; do
    "$ZMQ_CLIENT" gen -n "$M" -s 524288 --vary --big-every "$EVERY" -p "$c-" >> "$ZP_TMP/expected"
    check "$c: sent=$M ok=$((M - big)) err=$big" client_is "$c" \
        "sent=$M ok=$((M - big)) err=$big big=$big"
done
check "a lone oversized message, nothing stored after it: answered ERR at once" \
    "$ZMQ_CLIENT" req -n 1 -p lone- --big-every 1 --big-size 600000 --timeout 10000 "$ZP_EP"
stop_zpiped
check "part 2: zpiped exits 0 (status $ZP_STATUS)" test "$ZP_STATUS" -eq 0
check "part 2: the file holds every message answered OK exactly once" \
    same_messages "$ZP_TMP/expected" "$ZP_SINK"
check "part 2: accounting exact" check_accounting received=$((4 * (M - big))) \
    delivered=$((4 * (M - big))) rejected=$((4 * big + 1)) in_flight=0
check "part 2: the log has no unexpected lines" check_log

done_testing
