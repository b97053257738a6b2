#!/bin/sh
# 070: with WATCHDOG_USEC set, zpiped sends WATCHDOG=1 more often than the
# interval, idle and under load: no gap between READY=1 and STOPPING=1 is as
# long as the interval.  WATCHDOG_PID is left unset, which sd_watchdog_enabled()
# accepts.
. "$(dirname "$0")/lib.sh"
setup

WD_MS=1000
N=40000
RATE=12000      # per client, about 3.3 s of load
CLIENTS="1 2 3 4"
write_config "$ZP_CONF" output.threads=2
ZPIPED_ENV="WATCHDOG_USEC=$((WD_MS * 1000))"

start_zpiped || bail "zpiped did not become ready"
ok "zpiped is ready with WATCHDOG_USEC=$((WD_MS * 1000))"

check "idle: WATCHDOG=1 keeps arriving (4 pings)" wait_until 30 "4 WATCHDOG=1" watchdog_at_least 4

before=$(notify_count WATCHDOG=1)
for c in $CLIENTS; do
    start_client "$c" push --hold -n "$N" -p "c$c-" --rate "$RATE" --timeout 60000 "$ZP_EP"
done
wait_until 300 "the clients to send everything" clients_sent
during=$(($(notify_count WATCHDOG=1) - before))
good=0
for c in $CLIENTS; do
    client_is "$c" "sent=$N ok=0 err=0 big=0" || good=1
done
check "4 clients sent $N messages each" test "$good" -eq 0
check "under load: WATCHDOG=1 kept arriving ($during pings while clients sent)" \
    test "$during" -ge 3
check "zpiped read all $((N * 4)) messages (STATUS=)" wait_read $((N * 4))
check "the clients closed cleanly" finish_clients

check "idle again: WATCHDOG=1 keeps arriving" watchdog_more 2 30

stop_zpiped
st=$?
check "SIGTERM: zpiped exits 0 (status $st)" test "$st" -eq 0

# Gaps between READY=1, each WATCHDOG=1, and STOPPING=1.
awk -v limit="$WD_MS" '
    / READY=1$/ { last = $1; started = 1; next }
    !started { next }
    / WATCHDOG=1$/ { gap = $1 - last; if (gap > max) max = gap; n++; last = $1; next }
    / STOPPING=1$/ { gap = $1 - last; if (gap > max) max = gap; stopped = 1; exit }
    END {
        printf "%d pings, longest gap %d ms\n", n, max
        exit !(started && stopped && max < limit)
    }' "$ZP_NOTIFY" > "$ZP_TMP/gaps"
st=$?
diag "$(cat "$ZP_TMP/gaps")"
check "every gap from READY=1 through STOPPING=1 is under $WD_MS ms" test "$st" -eq 0
[ "$st" -eq 0 ] || diag "$(grep -E 'READY|WATCHDOG|STOPPING' "$ZP_NOTIFY" | awk '{ print $1 - p, $2; p = $1 }' | sort -rn | head -n 5)"

: > "$ZP_TMP/expected"
for c in $CLIENTS; do
    "$ZMQ_CLIENT" gen -n "$N" -p "c$c-" >> "$ZP_TMP/expected"
done
check "the sink holds every message exactly once" same_messages "$ZP_TMP/expected" "$ZP_SINK"
check "no unexpected lines in the log" check_log

done_testing
