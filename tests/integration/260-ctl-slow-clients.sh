#!/bin/sh
# 260: idle and slow control socket clients cannot lock out `zpipe stats`.
# 80 clients that each send "pi" (half a ping, no newline) and then nothing:
# `zpipe stats` and `zpipe ping` still answer while they hold on, and the
# daemon closes every one of them (a line not finished within 5 s).  Then
# 80 clients that reconnect as soon as they are closed, so that the client
# slots stay full: `zpipe stats` still answers, every time, and so does a
# client that connects and sends its ping only a moment later (as a zpipe
# descheduled between connect() and write() on a loaded machine does).
. "$(dirname "$0")/lib.sh"
setup

HOLD=$top_builddir/tests/helpers/hold_conns
CTL_SEND=$top_builddir/tests/helpers/ctl_send
CTL=$ZP_TMP/ctl.sock
write_config "$ZP_CONF" output.threads=1

start_zpiped || bail "zpiped did not become ready"
ok "zpiped is ready"

# hold_conns's "connected N" line is in FILE.
connected() {
    grep -q '^connected ' "$1"
}

# stats_answers: zpipe stats gets its reply (within zpipe's own 10 s timeout).
stats_answers() {
    "$ZPIPE" stats -s "$CTL" --json > "$ZP_TMP/stats.out" 2> "$ZP_TMP/stats.err" &&
        grep -q '"received":' "$ZP_TMP/stats.out"
}

spawn "$HOLD" "unix:$CTL" 80 "$(scaled 60)" > "$ZP_TMP/hold1.out" 2> "$ZP_TMP/hold1.err"
hold1=$zp_last_pid
check "80 idle clients sending \"pi\" are connected" \
    wait_until 30 "hold_conns to connect" connected "$ZP_TMP/hold1.out"
if stats_answers; then
    ok "zpipe stats answers while 80 idle clients hold connections"
else
    not_ok "zpipe stats answers while 80 idle clients hold connections"
    diag "$(cat "$ZP_TMP/stats.err")"
fi
out=$("$ZPIPE" ping -s "$CTL" 2>&1)
check "zpipe ping answers pong too (got '$out')" test "$out" = pong
wait_pid "$hold1" 90
closed=$(grep '^closed ' "$ZP_TMP/hold1.out")
check "the daemon closed all 80 idle clients ($closed)" test "$closed" = "closed 80 of 80"

# Clients that come back at once keep every slot taken.
spawn "$HOLD" -r "unix:$CTL" 80 "$(scaled 60)" > "$ZP_TMP/hold2.out" 2> "$ZP_TMP/hold2.err"
hold2=$zp_last_pid
check "80 reconnecting idle clients are connected" \
    wait_until 30 "hold_conns -r to connect" connected "$ZP_TMP/hold2.out"
answered=0
for i in 1 2 3 4 5; do
    if stats_answers; then
        answered=$((answered + 1))
    else
        diag "stats $i: $(cat "$ZP_TMP/stats.err")"
    fi
done
check "zpipe stats answers 5 times out of 5 while the slots stay full ($answered)" \
    test "$answered" -eq 5
# ctl_send connects at once and writes what its standard input gives it.
# The 0.1 s pause models the client, it synchronises nothing: a request
# sent within the daemon's 1 s grace must be answered.
late=0
for i in 1 2 3; do
    out=$({ sleep 0.1; echo ping; } | "$CTL_SEND" "$CTL" 2>&1)
    if [ "$out" = pong ]; then
        late=$((late + 1))
    else
        diag "late ping $i: got '$out'"
    fi
done
check "a client that sends ping 0.1 s after connecting is answered 3 times out of 3 ($late)" \
    test "$late" -eq 3
check "the reconnecting clients are still running" pid_alive "$hold2"
kill -TERM "$hold2"
wait "$hold2" 2> /dev/null

out=$("$ZPIPE" ping -s "$CTL" 2>&1)
check "zpipe ping answers pong afterwards (got '$out')" test "$out" = pong
stop_zpiped
st=$?
check "SIGTERM: zpiped exits 0 (status $st)" test "$st" -eq 0
check "no unexpected lines in the log" check_log

done_testing
