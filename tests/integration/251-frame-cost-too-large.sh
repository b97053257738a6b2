#!/bin/sh
# 251: input.max_message_size counts a message's frames as queue.max_bytes
# does: its payload plus a fixed cost (16 bytes) for every frame after the
# first.  With max_message_size = 64K, messages of 65,535 empty frames (a
# few payload bytes, 1 MiB of frame table) are refused: answered ERR in
# router mode, counted in rejected in both modes, never written; messages
# of 1,000 frames (about 16 KiB) pass whole.
. "$(dirname "$0")/lib.sh"
setup

BIG=65535
SMALL=1000
N=3

# run MODE: zpiped in MODE; N messages of $BIG frames, then N of $SMALL.
run() {
    : > "$ZP_SINK"
    write_config "$ZP_CONF" "input.mode=$1" input.max_message_size=64K \
        file.format=binary daemon.stats_interval=50ms
    start_zpiped || bail "zpiped ($1) did not become ready"
    ok "zpiped is ready in $1 mode"
    if [ "$1" = router ]; then
        start_client big dealer -n $N --frames $BIG -p big --big-every 1 --big-size 0 \
            --timeout 120000 "$ZP_EP"
        check "router: every message of $BIG frames is answered ERR" wait_clients 300
        check "router: big client summary" client_is big "sent=$N ok=0 err=$N big=$N"
        start_client small dealer -n $N --frames $SMALL -p small --timeout 120000 "$ZP_EP"
        check "router: every message of $SMALL frames is answered OK" wait_clients 300
        check "router: small client summary" client_is small "sent=$N ok=$N err=0 big=0"
    else
        start_client big push -n $N --frames $BIG -p big --big-every 1 --big-size 0 --hold \
            "$ZP_EP"
        start_client small push -n $N --frames $SMALL -p small --hold "$ZP_EP"
        check "pull: the clients sent everything" wait_until 300 "the clients" clients_sent
        check "pull: zpiped read all $((2 * N)) messages" wait_read $((2 * N)) 300
        check "pull: the clients exit 0" finish_clients
    fi
    stop_zpiped TERM 120
    check "$1: SIGTERM: zpiped exits 0 (status $ZP_STATUS)" test "$ZP_STATUS" -eq 0
    check "$1: accounting: rejected $N, received and delivered $N" \
        check_accounting received=$N replayed=0 delivered=$N spilled=0 queued=0 \
        in_flight=0 rejected=$N
    "$ZMQ_CLIENT" gen -n $N --frames $SMALL -p small > "$ZP_TMP/expected"
    "$DECODE_RECORDS" "$ZP_SINK" > "$ZP_TMP/decoded"
    check "$1: the sink holds the $SMALL-frame messages whole, and nothing else" \
        same_messages "$ZP_TMP/expected" "$ZP_TMP/decoded"
    check "$1: no unexpected lines in the log" check_log
}

run router
run pull

done_testing
