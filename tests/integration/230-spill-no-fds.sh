#!/bin/sh
# 230: out of file descriptors at the drain deadline.  zpiped runs under
# prlimit --nofile=64:64 with a router input, a zmq sink whose endpoint has
# no peer and queue.capacity=10.  A DEALER client sends 100 messages; 50
# idle DEALER connections (tests/helpers/tcp_garbage idle) then take every
# descriptor zpiped has left.  SIGTERM with a short drain_timeout: the
# spill needs no new descriptor (each consumer's spill file is prepared at
# start), so zpiped exits 0 with every accepted message spilled; a restart
# with a file sink replays each exactly once.  Also: zpiped raises its soft
# RLIMIT_NOFILE to the hard limit at start (prlimit --nofile=256:4096).
# Root is not needed: prlimit only lowers limits here.
. "$(dirname "$0")/lib.sh"
setup

N=100
SPOOL=$ZP_TMP/spool
TCP_GARBAGE=$top_builddir/tests/helpers/tcp_garbage
REAL_ZPIPED=$ZPIPED

if ! command -v prlimit > /dev/null 2>&1; then
    echo "1..0 # SKIP prlimit not installed"
    exit 0
fi

# limited SOFT:HARD: from now on start_zpiped runs zpiped under those
# RLIMIT_NOFILE limits (the wrapper and prlimit exec, so the pid is zpiped's).
limited() {
    printf '#!/bin/sh\nexec prlimit --nofile=%s -- "%s" "$@"\n' "$1" "$REAL_ZPIPED" \
        > "$ZP_TMP/zpiped-limited"
    chmod +x "$ZP_TMP/zpiped-limited"
    ZPIPED=$ZP_TMP/zpiped-limited
}

# limits_of PID: "SOFT HARD" of its open files.
limits_of() {
    sed -n 's/^Max open files *\([0-9a-z]*\) *\([0-9a-z]*\).*/\1 \2/p' "/proc/$1/limits"
}

# fds_full: zpiped holds 64 descriptors, all its limit allows.
fds_full() {
    [ "$(ls "/proc/$(zpiped_pid)/fd" | wc -l)" -ge 64 ]
}

# ------------------------------------------- the soft limit is raised
limited 256:4096
write_config "$ZP_CONF"
start_zpiped || bail "zpiped did not become ready under prlimit --nofile=256:4096"
got=$(limits_of "$(zpiped_pid)")
check "zpiped raised its soft RLIMIT_NOFILE to the hard limit ($got)" test "$got" = "4096 4096"
stop_zpiped
check "... and exits 0 (status $ZP_STATUS)" test "$ZP_STATUS" -eq 0
check "the log says what it got" grep -q 'RLIMIT_NOFILE.*4096' "$ZP_LOG"

# ----------------------------------- no descriptor left at the deadline
port=$("$TCP_GARBAGE" freeport) || bail "no free TCP port"
dead=$("$TCP_GARBAGE" freeport) || bail "no free TCP port"
EP=tcp://127.0.0.1:$port
limited 64:64
write_config "$ZP_CONF" "input.endpoints=$EP" input.mode=router queue.capacity=10 \
    output.sink=zmq output.threads=2 output.batch=64 "zmq.endpoints=tcp://127.0.0.1:$dead" \
    zmq.mode=push daemon.stats_interval=50ms daemon.drain_input=1s daemon.drain_timeout=1s
start_zpiped || bail "zpiped did not become ready under prlimit --nofile=64:64"
ok "zpiped is ready under prlimit --nofile=64:64, its zmq sink without a peer"
start_client c dealer -n $N -s 50 -p f- --window $N --timeout 120000 --out "$ZP_TMP/acked" "$EP"
queue_full() {
    grep -q '^[0-9]* STATUS=.* queued 10/10\( \|$\)' "$ZP_NOTIFY"
}
check "the queue fills up (queued 10/10)" wait_until 60 "queued 10/10 in STATUS=" queue_full
spawn "$TCP_GARBAGE" idle 127.0.0.1 "$port" DEALER 50 600 > "$ZP_TMP/idle.out" 2>&1
idle_pid=$zp_last_pid
idle_up() {
    grep -q '^connected 50$' "$ZP_TMP/idle.out"
}
check "50 idle connections are up" wait_until 60 "50 idle connections" idle_up
check "zpiped has no file descriptor left (64 open)" wait_until 60 "64 open descriptors" fds_full
stop_zpiped TERM 60
check "SIGTERM: zpiped exits 0 (status $ZP_STATUS)" test "$ZP_STATUS" -eq 0
kill_wait "$idle_pid"
# The client keeps waiting for OKs that never come once zpiped is gone.
finish_clients 30
acked=$(line_count "$ZP_TMP/acked")
check "accounting: the $acked accepted messages are all spilled" \
    check_accounting received="$acked" spilled="$acked" delivered=0 queued=0 in_flight=0
check "more than the queue's 10 were accepted ($acked)" test "$acked" -gt 10
check "no 'Too many open files' in the log" sh -c '! grep -q "Too many open files" "$1"' - "$ZP_LOG"
check "no unexpected lines in the log" check_log "$ZP_LOG" 'sink zmq: consumer [0-9]+: write: '

# ------------------------------------- the restart replays them, once
ZPIPED=$REAL_ZPIPED
write_config "$ZP_CONF" "file.path=$ZP_TMP/replay.out" file.fsync=never
start_zpiped || bail "the restarted zpiped did not become ready"
spool_empty() {
    [ -z "$(ls -A "$SPOOL")" ]
}
check "the replay empties the spool" wait_until 60 "an empty spool" spool_empty
stop_zpiped
check "the restarted zpiped exits 0 (status $ZP_STATUS)" test "$ZP_STATUS" -eq 0
check "accounting: replayed = delivered = $acked" \
    check_accounting received=0 replayed="$acked" delivered="$acked" spilled=0 queued=0 in_flight=0
check "every accepted message is in the sink exactly once" \
    same_messages "$ZP_TMP/acked" "$ZP_TMP/replay.out"
check "no unexpected lines in the restart's log" check_log

done_testing
