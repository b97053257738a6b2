#!/bin/sh
# 264: clients trickling a request to /metrics cannot hold its connection
# slots.  40 clients from 127.0.0.1 each send the start of a request and
# then one byte a second (MHD's idle timeout never fires): a scrape from
# another address (127.0.0.2) is answered meanwhile, every trickling client
# is closed by the request deadline, and then a scrape from 127.0.0.1 is
# answered too.  With 40 clients that reconnect as soon as they are closed,
# scrapes from 127.0.0.2 keep being answered.
. "$(dirname "$0")/lib.sh"
setup

HOLD=$top_builddir/tests/helpers/hold_conns
TCP_GARBAGE=$top_builddir/tests/helpers/tcp_garbage
if ! command -v curl > /dev/null 2>&1; then
    echo "1..0 # SKIP curl not installed"
    exit 0
fi
port=$("$TCP_GARBAGE" freeport) || bail "no free port"
URL=http://127.0.0.1:$port/metrics
write_config "$ZP_CONF" daemon.metrics_listen="127.0.0.1:$port" output.threads=1

# scrape_from ADDR: GET /metrics from source address ADDR answers 200 with
# the exposition text, within 10 s (scaled).
scrape_from() {
    curl -sf --interface "$1" --max-time "$(scaled 10)" -o "$ZP_TMP/scrape.out" "$URL" \
        2> "$ZP_TMP/scrape.err" && grep -q '^zpipe_received_total ' "$ZP_TMP/scrape.out"
}

start_zpiped || bail "zpiped did not become ready"
ok "zpiped is ready"
check "a scrape is answered" scrape_from 127.0.0.1

spawn "$HOLD" -i 1000 "tcp:127.0.0.1:$port" 40 "$(scaled 60)" \
    > "$ZP_TMP/hold1.out" 2> "$ZP_TMP/hold1.err"
hold1=$zp_last_pid
check "40 trickling clients are connected" \
    wait_until 30 "hold_conns to connect" grep -q '^connected 40$' "$ZP_TMP/hold1.out"
if scrape_from 127.0.0.2; then
    ok "a scrape from 127.0.0.2 is answered while they trickle"
else
    not_ok "a scrape from 127.0.0.2 is answered while they trickle"
    diag "curl: $(cat "$ZP_TMP/scrape.err")"
fi
wait_pid "$hold1" 90
closed=$(grep '^closed ' "$ZP_TMP/hold1.out")
check "the server closed all 40 trickling clients ($closed)" test "$closed" = "closed 40 of 40"
check "then a scrape from 127.0.0.1 is answered" scrape_from 127.0.0.1

spawn "$HOLD" -r -i 1000 "tcp:127.0.0.1:$port" 40 "$(scaled 60)" \
    > "$ZP_TMP/hold2.out" 2> "$ZP_TMP/hold2.err"
hold2=$zp_last_pid
check "40 reconnecting trickling clients are connected" \
    wait_until 30 "hold_conns -r to connect" grep -q '^connected ' "$ZP_TMP/hold2.out"
answered=0
for i in 1 2 3; do
    if scrape_from 127.0.0.2; then
        answered=$((answered + 1))
    else
        diag "scrape $i: $(cat "$ZP_TMP/scrape.err")"
    fi
done
check "scrapes from 127.0.0.2 are answered 3 times out of 3 meanwhile ($answered)" \
    test "$answered" -eq 3
kill -TERM "$hold2"
wait "$hold2" 2> /dev/null

stop_zpiped
st=$?
check "SIGTERM: zpiped exits 0 (status $st)" test "$st" -eq 0
check "no unexpected lines in the log" check_log

done_testing
