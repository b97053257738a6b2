#!/bin/sh
# 268: a signal sent after the drain is done, while zpiped still stops,
# does not kill it.  The zmq push sink forwards to a PULL peer that is
# stopped (SIGSTOP), so libzmq still holds messages when the drain ends,
# and zpiped waits for its push socket's linger (10 s) on the way out.
# SIGINT and SIGHUP sent then change nothing: zpiped exits 0 (never 130 or
# 129, killed by the default action that libuv gives back once the loop's
# signal handles are closed).
. "$(dirname "$0")/lib.sh"
setup

N=2000
SIZE=16384
DOWN=tcp://127.0.0.1:$(free_port)

start_client down pull -n 1000000 --timeout 600000 "$DOWN"
down_pid=$zp_last_pid
write_config "$ZP_CONF" output.sink=zmq zmq.mode=push "zmq.endpoints=$DOWN" zmq.sndhwm=10 \
    daemon.drain_timeout=1s daemon.drain_input=100ms daemon.stats_interval=50ms
start_zpiped || bail "zpiped did not become ready"
ok "zpiped is ready, forwarding to a PULL peer"

delivered_some() {
    [ "$(status_field delivered)" -gt 0 ] 2> /dev/null
}
start_client load push -n 1 -p first- "$ZP_EP"
check "the peer is connected: a message is delivered" \
    wait_until 60 "delivered > 0" delivered_some
kill -STOP "$down_pid"
# Enough to fill the peer's socket buffers and libzmq's pipe (sndhwm 10).
start_client load2 push -n "$N" -s "$SIZE" -p load- --timeout 60000 "$ZP_EP"
stuck() {
    _r=$(status_field received) && _d=$(status_field delivered) || return 1
    [ "$_r" -ge $((N / 2)) ] && [ "$_r" -gt "$_d" ]
}
check "with the peer stopped, zpiped holds what libzmq will not take" \
    wait_until 60 "received > delivered" stuck

kill -TERM "$zp_pid"
drained() {
    grep -q 'drain: ended by drain_timeout in' "$ZP_LOG"
}
check "SIGTERM: the drain ends (by drain_timeout)" wait_until 60 "the drain to end" drained
check "SIGINT after the drain: zpiped still stopping (the push socket lingers)" \
    kill -INT "$zp_pid"
check "SIGHUP too" kill -HUP "$zp_pid"
wait_zpiped 60 INT
check "zpiped exits 0, not killed by either signal (status $ZP_STATUS)" test "$ZP_STATUS" -eq 0
kill -CONT "$down_pid"
# The push socket's full pipe fails writes; the consumers log them and retry.
check "no unexpected lines in the log" \
    check_log "$ZP_LOG" 'sink zmq: consumer [0-9]+: write: Resource temporarily unavailable'
done_testing
