#!/bin/sh
# 100: the control socket and `zpipe stats` / `zpipe ping`.  ping, stats
# (valid JSON with the documented keys), unknown commands, several requests on
# one connection, the 4096-byte line limit (a 4096-byte line is a request, a
# 4097-byte one closes the connection), 100 kB of random bytes, many clients
# at once; the socket's mode and missing parent directories; a second zpiped
# on the same socket is refused and leaves the first one serving; a leftover
# socket of a killed zpiped is replaced; a path that is not a socket is never
# removed; the socket file is gone after a clean stop; zpipe stats -f prints
# fields' values.
. "$(dirname "$0")/lib.sh"
setup

CTL_SEND=$top_builddir/tests/helpers/ctl_send
CTL=$ZP_TMP/run/sub/ctl.sock
write_config "$ZP_CONF" daemon.control_socket="$CTL" output.threads=1

start_zpiped || bail "zpiped did not become ready"
ok "zpiped is ready; control socket in a directory it created"
check "the control socket has mode 0660" test "$(stat -c %a "$CTL")" = 660

out=$("$ZPIPE" ping -s "$CTL" 2>&1)
check "zpipe ping answers pong (got '$out')" test "$out" = pong

printf 'ping\nstats\nbogus\n\nping\r\n' | "$CTL_SEND" "$CTL" > "$ZP_TMP/r1"
check "five requests on one connection get five replies" test "$(line_count "$ZP_TMP/r1")" -eq 5
check "ping -> pong" test "$(sed -n 1p "$ZP_TMP/r1")" = pong
check "unknown command -> ERR unknown command" test "$(sed -n 3p "$ZP_TMP/r1")" = "ERR unknown command"
check "empty line -> ERR unknown command" test "$(sed -n 4p "$ZP_TMP/r1")" = "ERR unknown command"
check "a CRLF line is accepted" test "$(sed -n 5p "$ZP_TMP/r1")" = pong
sed -n 2p "$ZP_TMP/r1" > "$ZP_TMP/stats.json"
has_keys() {
    for k in received rejected queued queued_bytes delivered failed retried spilled replayed \
        uptime_s in_flight state blocked blocked_s; do
        if ! grep -q "\"$k\":" "$1"; then
            diag "stats: no key $k in $(cat "$1")"
            return 1
        fi
    done
}
check "stats has every documented key, plus in_flight, state, blocked, blocked_s" \
    has_keys "$ZP_TMP/stats.json"
if command -v jq > /dev/null 2>&1; then
    check "stats is valid JSON (jq), state running, not blocked" \
        test "$(jq -r '[.state, .blocked, (.received|type)] | join(",")' "$ZP_TMP/stats.json")" \
        = "running,false,number"
else
    skip "jq not installed: JSON validity not checked"
fi

# The line limit: 4096 bytes is a request, 4097 closes the connection.
awk 'BEGIN { s = ""; for (i = 0; i < 4096; i++) s = s "x"; print s; print "ping" }' \
    > "$ZP_TMP/len4096"
"$CTL_SEND" "$CTL" "$ZP_TMP/len4096" > "$ZP_TMP/r2"
check "a 4096-byte line is a request (ERR unknown command, then pong)" \
    test "$(tr '\n' ' ' < "$ZP_TMP/r2")" = "ERR unknown command pong "
awk 'BEGIN { s = ""; for (i = 0; i < 4097; i++) s = s "x"; print s; print "ping" }' \
    > "$ZP_TMP/len4097"
"$CTL_SEND" "$CTL" "$ZP_TMP/len4097" > "$ZP_TMP/r3"
check "a 4097-byte line gets only ERR line too long, then the connection closes" \
    test "$(tr '\n' ' ' < "$ZP_TMP/r3")" = "ERR line too long "
head -c 20000 /dev/zero > "$ZP_TMP/zeros"
"$CTL_SEND" "$CTL" "$ZP_TMP/zeros" > "$ZP_TMP/r4"
check "20000 NUL bytes: ERR line too long" test "$(cat "$ZP_TMP/r4")" = "ERR line too long"

# Random bytes: whatever the replies, the daemon goes on serving.
head -c 100000 /dev/urandom > "$ZP_TMP/random"
"$CTL_SEND" "$CTL" "$ZP_TMP/random" > "$ZP_TMP/r5"
st=$?
check "100 kB of random bytes: the connection ends normally (status $st)" test "$st" -eq 0
check "every reply to random bytes is an ERR line" \
    test "$(grep -cv '^ERR ' "$ZP_TMP/r5")" -eq 0
out=$("$ZPIPE" ping -s "$CTL" 2>&1)
check "after the random bytes, ping still answers pong" test "$out" = pong

# Many clients at once, each with its own requests.
pids=
for i in $(seq 1 40); do
    printf 'ping\nstats\nping\n' | "$CTL_SEND" "$CTL" > "$ZP_TMP/many.$i" &
    pids="$pids $!"
done
many_ok=0
for p in $pids; do
    wait "$p" || many_ok=1
done
many_good() {
    for i in $(seq 1 40); do
        if [ "$(sed -n 1p "$ZP_TMP/many.$i")$(sed -n 3p "$ZP_TMP/many.$i")" != pongpong ]; then
            diag "client $i got: $(head -c 200 "$ZP_TMP/many.$i")"
            return 1
        fi
    done
}
check "40 clients at once each get pong, stats, pong" test "$many_ok" -eq 0
check "40 clients at once: replies in order" many_good

# zpipe stats sees what was pushed.
"$ZPIPE" push -e "$ZP_EP" a b c d e > /dev/null 2>&1 < /dev/null
delivered_is() {
    [ "$("$ZPIPE" stats -s "$CTL" -f delivered 2>/dev/null)" = "$1" ]
}
check "zpipe stats -f delivered: reaches 5" wait_until 30 "delivered 5" delivered_is 5

# zpipe stats -f: the values of top-level and nested fields, for scripts.
out=$("$ZPIPE" stats -s "$CTL" --field received,delivered,state,sink.kind,blocked 2>&1)
check "zpipe stats --field received,delivered,state,sink.kind,blocked: '$out'" \
    test "$out" = "5 5 running file false"
out=$("$ZPIPE" stats -s "$CTL" -f received,nosuch 2> "$ZP_TMP/field.err")
st=$?
check "zpipe stats -f with a field the daemon does not send exits 1, prints nothing (status $st)" \
    test "$st:$out" = "1:"
check "... and names the field" grep -q 'no field nosuch' "$ZP_TMP/field.err"
out=$("$ZPIPE" stats -s "$CTL" -f sink 2>/dev/null)
st=$?
check "zpipe stats -f on an object (sink) exits 1 (status $st)" test "$st" -eq 1
"$ZPIPE" stats -s "$CTL" -f received -i 50ms -n 3 > "$ZP_TMP/fields3" 2>&1
st=$?
check "zpipe stats -f received -i 50ms -n 3 prints 3 lines of 5 (status $st)" \
    test "$st:$(tr '\n' ' ' < "$ZP_TMP/fields3")" = "0:5 5 5 "
for bad in "--json -f received" "-f ''" "-f a,,b" "-f a," "-f ,a"; do
    eval "\"\$ZPIPE\" stats -s \"\$CTL\" $bad" > /dev/null 2>&1
    st=$?
    check "zpipe stats $bad is a usage error (status $st)" test "$st" -eq 2
done
"$ZPIPE" ping -s "$CTL" -f received > /dev/null 2>&1
st=$?
check "zpipe ping -f is a usage error (status $st)" test "$st" -eq 2
"$ZPIPE" stats -s "$CTL" > "$ZP_TMP/summary" 2>&1
st=$?
check "zpipe stats exits 0 (status $st)" test "$st" -eq 0
check "zpipe stats: readable summary with received 5 and the state" \
    grep -q '^received: *5 (rejected 0)' "$ZP_TMP/summary"
check "zpipe stats: shows the state and backpressure" \
    sh -c "grep -q '^state: *running' '$ZP_TMP/summary' && grep -q '^backpressure: none' '$ZP_TMP/summary'"
check "zpipe stats: average rates since the start" \
    grep -Eq '^rates: +received [0-9]+\.[0-9]/s, delivered [0-9]+\.[0-9]/s' "$ZP_TMP/summary"

# zpipe stats -i: each line counts what happened during its interval, so
# the lines' counts add up to what was pushed while it ran, however the
# pushes fall across the intervals.
spawn "$ZPIPE" stats -s "$CTL" -i 200ms > "$ZP_TMP/watch" 2> "$ZP_TMP/watch.err"
watch_pid=$zp_last_pid
check "zpipe stats -i prints its header" wait_until 20 "the header" \
    grep -q '^time  *received  *recv/s  *delivered  *deliv/s  *rejected  *spilled  *queued  *blocked$' \
    "$ZP_TMP/watch"
for i in $(seq 1 20); do
    echo "w$i"
done | "$ZPIPE" push -e "$ZP_EP" > /dev/null 2>&1
check "zpipe stats -f delivered: reaches 25" wait_until 30 "delivered 25" delivered_is 25
lines_now=$(line_count "$ZP_TMP/watch")
more_lines() {
    [ "$(line_count "$ZP_TMP/watch")" -ge $((lines_now + 2)) ]
}
check "zpipe stats -i goes on printing lines" wait_until 20 "two more lines" more_lines
kill -TERM "$watch_pid"
wait "$watch_pid" 2> /dev/null
sums=$(awk 'NR > 1 { r += $2; d += $4 } END { print r + 0, d + 0 }' "$ZP_TMP/watch")
check "the interval lines' received and delivered add up to the 20 pushed ($sums)" \
    test "$sums" = "20 20"
rates_match() {
    awk 'NR > 1 && (($2 > 0) != ($3 > 0) || ($4 > 0) != ($5 > 0)) { bad = 1; print }
        END { exit bad }' "$ZP_TMP/watch"
}
check "a rate is above 0 exactly where its count is" rates_match
"$ZPIPE" stats -s "$CTL" -i 50ms -n 3 > "$ZP_TMP/watch3" 2>&1
st=$?
check "zpipe stats -i 50ms -n 3 exits 0 after a header and 3 lines (status $st)" \
    test "$st:$(line_count "$ZP_TMP/watch3")" = "0:4"
"$ZPIPE" stats -s "$CTL" --json -i 50ms -n 2 > "$ZP_TMP/watch4" 2>&1
check "zpipe stats --json -i 50ms -n 2 prints 2 objects" \
    test "$(grep -c '^{.*}$' "$ZP_TMP/watch4")" = 2
"$ZPIPE" stats -s "$CTL" -n 2 > /dev/null 2>&1
st=$?
check "zpipe stats -n without -i is a usage error (status $st)" test "$st" -eq 2
"$ZPIPE" ping -s "$CTL" -i 1 > /dev/null 2>&1
st=$?
check "zpipe ping -i is a usage error (status $st)" test "$st" -eq 2

"$ZPIPE" stats -s "$ZP_TMP/nothing.sock" > "$ZP_TMP/nosock" 2>&1
st=$?
check "zpipe stats on a missing socket exits 1 with a reason (status $st)" test "$st" -eq 1
"$ZPIPE" stats --bogus > /dev/null 2>&1
st=$?
check "zpipe stats with a bad option exits 2 (status $st)" test "$st" -eq 2

# A second zpiped on the same control socket: refused, the first unharmed.
mkdir -p "$ZP_TMP/spool-second"
write_config "$ZP_TMP/second.ini" daemon.control_socket="$CTL" \
    daemon.spool_dir="$ZP_TMP/spool-second" \
    input.endpoints="ipc://$ZP_TMP/in-second" file.path="$ZP_TMP/second.log"
"$ZPIPED" -c "$ZP_TMP/second.ini" > "$ZP_TMP/second.out" 2>&1 < /dev/null
st=$?
check "a second zpiped on the same control socket exits non-zero (status $st)" test "$st" -ne 0
check "... saying another zpiped is running" grep -q 'another zpiped is running' "$ZP_TMP/second.out"
out=$("$ZPIPE" ping -s "$CTL" 2>&1)
check "... and the first one still answers pong" test "$out" = pong

# A killed zpiped leaves its socket file: the next one replaces it.
kill -KILL "$zp_pid"
wait "$zp_pid" 2>/dev/null
zp_pid=
stop_listener
check "SIGKILL leaves the socket file behind" test -S "$CTL"
start_zpiped || bail "zpiped did not start over a leftover socket"
ok "zpiped starts over a leftover socket"
check "... and says it replaced it" grep -q 'replacing the leftover' "$ZP_LOG"
out=$("$ZPIPE" ping -s "$CTL" 2>&1)
check "... and answers pong" test "$out" = pong

# A stopped zpiped whose listen queue fills up (128 and one): a zpipe ping
# that finds the queue full gives up at its -t instead of waiting in
# connect() for as long as zpiped stays stopped.
kill -STOP "$zp_pid"
pings=
for i in $(seq 1 140); do
    spawn "$ZPIPE" ping -s "$CTL" -t 500ms > "$ZP_TMP/stopped.$i" 2>&1
    pings="$pings $zp_last_pid"
done
# pings_ended: every ping above has ended.
pings_ended() {
    ! any_alive $pings
}
check "140 pings to a stopped zpiped each end within their -t" \
    wait_until 30 "the pings to end" pings_ended
check "... those past the full queue say so" \
    grep -q "not accepted within 500 ms" $(for i in $(seq 1 140); do echo "$ZP_TMP/stopped.$i"; done)
out=$(timeout 20 "$ZPIPE" ping -s "$CTL" -t 1s 2>&1)
st=$?
check "the queue still full: zpipe ping -t 1s fails (status $st): $out" \
    sh -c 'test "$1" -eq 1 && case "$2" in *"not accepted within 1000 ms"*) ;; *) exit 1 ;; esac' \
    sh "$st" "$out"
kill -CONT "$zp_pid"
# answers_pong: zpipe ping gets pong.
answers_pong() {
    [ "$("$ZPIPE" ping -s "$CTL" 2> /dev/null)" = pong ]
}
check "SIGCONT: zpiped works through its queue and answers pong again" \
    wait_until 30 "pong" answers_pong

stop_zpiped
st=$?
check "SIGTERM: zpiped exits 0 (status $st)" test "$st" -eq 0
check "the socket file is removed at exit" test ! -e "$CTL"
check "no unexpected lines in the log" check_log

# A path that is not a socket is never removed.
echo precious > "$ZP_TMP/notasocket"
write_config "$ZP_TMP/third.ini" daemon.control_socket="$ZP_TMP/notasocket"
"$ZPIPED" -c "$ZP_TMP/third.ini" > "$ZP_TMP/third.out" 2>&1 < /dev/null
st=$?
check "control_socket naming a regular file: zpiped exits non-zero (status $st)" test "$st" -ne 0
check "... and the file is untouched" test "$(cat "$ZP_TMP/notasocket")" = precious

done_testing
