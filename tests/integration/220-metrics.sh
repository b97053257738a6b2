#!/bin/sh
# 220: the Prometheus endpoint (daemon.metrics_listen), with curl and
# promtool.  Bad listen values are FILE:LINE config errors; a taken port
# stops the start before any input is bound.  After 3000 router messages
# (3 of them too large) have settled, every value of GET /metrics equals the
# control socket's stats JSON, and promtool accepts the text.  404 for other
# paths, 405 for other methods.  Slow clients (half a request, then
# silence) and garbage bytes do not keep curl from being served, and the
# slow ones are closed by the idle timeout.  With a zmq sink that has no
# peer, the sink errors show up by kind, the endpoint keeps serving through
# the drain (state "draining ..." 1), and the drain deadline spills
# everything; the accounting holds in both runs.
. "$(dirname "$0")/lib.sh"
setup

TCP_GARBAGE=$top_builddir/tests/helpers/tcp_garbage
if ! command -v curl > /dev/null 2>&1; then
    echo "1..0 # SKIP curl not installed"
    exit 0
fi
has_jq=0
if command -v jq > /dev/null 2>&1; then
    has_jq=1
fi

# metric FILE NAME: the value of the sample NAME (labels included, as
# written) in the exposition FILE; empty if there is none.
metric() {
    awk -v n="$2" '/^#/ { next }
        { v = $NF; k = substr($0, 1, length($0) - length(v) - 1); if (k == n) print v }' "$1"
}

# scrape FILE: GET /metrics into FILE; fails if curl does.
scrape() {
    curl -sf --max-time "$(scaled 10)" -o "$1" "$URL"
}

# metric_at_least NAME N: a fresh scrape has NAME >= N.
metric_at_least() {
    scrape "$ZP_TMP/m.poll" || return 1
    _v=$(metric "$ZP_TMP/m.poll" "$1")
    [ -n "$_v" ] && [ "$_v" -ge "$2" ]
}

# metric_is NAME V: a fresh scrape has NAME = V.
metric_is() {
    scrape "$ZP_TMP/m.poll" || return 1
    [ "$(metric "$ZP_TMP/m.poll" "$1")" = "$2" ]
}

# ---- config: the syntax of metrics_listen
for bad in 127.0.0.1 127.0.0.1:0 127.0.0.1:65536 ::1:9555 localhost:http '[::1]' '[::1]:'; do
    write_config "$ZP_TMP/bad.ini" daemon.metrics_listen="$bad"
    line=$(grep -n '^metrics_listen' "$ZP_TMP/bad.ini" | cut -d: -f1)
    out=$("$ZPIPED" -t -c "$ZP_TMP/bad.ini" 2>&1)
    st=$?
    if [ "$st" -eq 1 ] &&
        printf '%s\n' "$out" | grep -Fq "bad.ini:$line: [daemon] metrics_listen: bad value"; then
        ok "metrics_listen = $bad is a FILE:LINE error"
    else
        not_ok "metrics_listen = $bad is a FILE:LINE error (status $st)"
        diag "$out"
    fi
done
for good in 127.0.0.1:9555 localhost:9555 '[::1]:9555' ''; do
    write_config "$ZP_TMP/good.ini" daemon.metrics_listen="$good"
    check "metrics_listen = '$good' is valid (zpiped -t)" \
        sh -c '"$1" -t -c "$2" > /dev/null 2>&1' sh "$ZPIPED" "$ZP_TMP/good.ini"
done

# ---- a run: 3000 messages in router mode, 3 of them too large
port=$("$TCP_GARBAGE" freeport) || bail "no free port"
URL=http://127.0.0.1:$port/metrics
write_config "$ZP_CONF" daemon.metrics_listen="127.0.0.1:$port" input.mode=router \
    input.max_message_size=1K output.threads=2
start_zpiped || bail "zpiped did not become ready"
ok "zpiped is ready with metrics on 127.0.0.1:$port"

# A second daemon on the same metrics port: refused before its input is bound.
write_config "$ZP_TMP/second.ini" daemon.metrics_listen="127.0.0.1:$port" \
    daemon.control_socket="$ZP_TMP/ctl2.sock" input.endpoints="ipc://$ZP_TMP/in2" \
    daemon.spool_dir="$ZP_TMP/spool2" file.path="$ZP_TMP/sink2.log"
timeout -k 5 "$(scaled 30)" "$ZPIPED" -c "$ZP_TMP/second.ini" > "$ZP_TMP/second.log" 2>&1 \
    < /dev/null
st=$?
check "a second zpiped on the same metrics port exits 1 (status $st)" test "$st" -eq 1
check "it says: metrics_listen 127.0.0.1:$port: bind: Address already in use" \
    grep -Fq "metrics_listen 127.0.0.1:$port: bind: Address already in use" "$ZP_TMP/second.log"
check "it stopped before binding its input or becoming ready" \
    sh -c '! grep -Eq "input: listening|ready:" "$1"' sh "$ZP_TMP/second.log"

start_client d dealer -n 3000 -p m -s 40 --big-every 1000 --big-size 2000 \
    --out "$ZP_TMP/acked" "$ZP_EP"
check "the dealer client got its 2997 OKs and 3 ERRs" wait_clients 120
client_is d "sent=3000 ok=2997 err=3 big=3" || true

settled() {
    [ "$(stats_field delivered,queued,in_flight)" = "2997 0 0" ]
}
check "the pipeline settles: 2997 delivered, nothing queued or in flight" wait_until 60 \
    "2997 delivered" settled

curl -sf --max-time "$(scaled 10)" -D "$ZP_TMP/headers" -o "$ZP_TMP/m1" "$URL"
st=$?
check "curl GET /metrics succeeds (status $st)" test "$st" -eq 0
check "Content-Type: text/plain; version=0.0.4; charset=utf-8" \
    grep -qi '^content-type: text/plain; version=0.0.4; charset=utf-8' "$ZP_TMP/headers"
"$ZPIPE" stats -s "$ZP_TMP/ctl.sock" --json > "$ZP_TMP/stats.json"
check "received_total 2997, rejected_total 3, delivered_total 2997" test \
    "$(metric "$ZP_TMP/m1" zpipe_received_total) $(metric "$ZP_TMP/m1" zpipe_rejected_total) $(metric "$ZP_TMP/m1" zpipe_delivered_total)" \
    = "2997 3 2997"

if [ "$has_jq" = 1 ]; then
    same_as_json() {
        _bad=0
        while read -r _name _jq; do
            _m=$(metric "$ZP_TMP/m1" "$_name")
            _j=$(jq -r "$_jq" "$ZP_TMP/stats.json")
            if [ -z "$_m" ] || [ "$_m" != "$_j" ]; then
                diag "$_name is '$_m' in /metrics but $_jq is '$_j' in stats"
                _bad=1
            fi
        done << 'EOF'
zpipe_received_total .received
zpipe_rejected_total .rejected
zpipe_replayed_total .replayed
zpipe_delivered_total .delivered
zpipe_failed_total .failed
zpipe_retried_total .retried
zpipe_spilled_total .spilled
zpipe_queue_messages .queued
zpipe_queue_bytes .queued_bytes
zpipe_queue_capacity_messages .queue_capacity
zpipe_queue_max_bytes .queue_max_bytes
zpipe_in_flight_messages .in_flight
zpipe_backpressure_blocked if .blocked then 1 else 0 end
zpipe_sink_errors_total{kind="open"} .sink.errors.open
zpipe_sink_errors_total{kind="write"} .sink.errors.write
zpipe_sink_errors_total{kind="fsync"} .sink.errors.fsync
zpipe_sink_errors_total{kind="send"} .sink.errors.send
zpipe_sink_errors_total{kind="timeout"} .sink.errors.timeout
zpipe_sink_errors_total{kind="refused"} .sink.errors.refused
zpipe_sink_threads{kind="file"} .sink.threads
EOF
        return "$_bad"
    }
    check "every counter and gauge of /metrics equals the stats JSON" same_as_json
    st_json=$(jq -r .state "$ZP_TMP/stats.json")
    check "zpipe_state{state=\"$st_json\"} is 1, the other states 0" test \
        "$(grep -c '^zpipe_state{' "$ZP_TMP/m1") $(metric "$ZP_TMP/m1" "zpipe_state{state=\"$st_json\"}") $(grep -c '^zpipe_state{.*} 1$' "$ZP_TMP/m1")" \
        = "4 1 1"
else
    skip "jq not installed: /metrics not compared with the stats JSON"
    skip "jq not installed: state not compared"
fi
check "build_info carries the version" \
    grep -Eq '^zpipe_build_info\{version="[0-9]+\.[0-9]+\.[0-9]+[^"]*"\} 1$' "$ZP_TMP/m1"
check "uptime_seconds is a number" grep -Eq '^zpipe_uptime_seconds [0-9]+\.[0-9]{3}$' "$ZP_TMP/m1"
families=$(grep -c '^# TYPE ' "$ZP_TMP/m1")
helps=$(grep -c '^# HELP ' "$ZP_TMP/m1")
check "a HELP and a TYPE line for each of the $families families" test "$families" = "$helps"
if command -v promtool > /dev/null 2>&1; then
    promtool check metrics < "$ZP_TMP/m1" > "$ZP_TMP/promtool.out" 2>&1
    st=$?
    check "promtool check metrics accepts the text (status $st)" test "$st" -eq 0
    [ "$st" -eq 0 ] || diag_file "$ZP_TMP/promtool.out"
else
    skip "promtool not installed (Debian package prometheus)"
fi

curl -sv --max-time "$(scaled 10)" -o /dev/null -o /dev/null "$URL" "$URL" \
    > "$ZP_TMP/keepalive" 2>&1
check "two scrapes on one keep-alive connection" grep -q 'Re-using existing connection' \
    "$ZP_TMP/keepalive"

# ---- other paths and methods
code() {
    curl -s --max-time "$(scaled 10)" -o /dev/null -w '%{http_code}' "$@"
}
check "GET / is 404" test "$(code "http://127.0.0.1:$port/")" = 404
check "GET /metricsx is 404" test "$(code "http://127.0.0.1:$port/metricsx")" = 404
check "HEAD /metrics is 200" test "$(code -I "$URL")" = 200
check "GET /metrics?x=1 is 200 (the query is ignored)" test "$(code "$URL?x=1")" = 200
check "POST /metrics is 405" test "$(code -X POST -d hello "$URL")" = 405
check "DELETE /metrics is 405" test "$(code -X DELETE "$URL")" = 405
curl -s --max-time "$(scaled 10)" -D "$ZP_TMP/h405" -o /dev/null -X PUT -d x "$URL"
check "405 says Allow: GET, HEAD" grep -qi '^allow: GET, HEAD' "$ZP_TMP/h405"

# ---- slow clients and garbage
stall_pids=
for i in 1 2 3 4 5; do
    spawn "$TCP_GARBAGE" stall 127.0.0.1 "$port" "$(scaled 60)" > "$ZP_TMP/stall.$i" 2>&1
    stall_pids="$stall_pids $zp_last_pid"
done
all_stalled() {
    for _i in 1 2 3 4 5; do
        grep -q '^sent$' "$ZP_TMP/stall.$_i" || return 1
    done
}
check "5 clients sent half a request each" wait_until 20 "the stalled clients" all_stalled
for mode in "random 20000" "random 300" sig "truncated 5" "reset 3"; do
    # shellcheck disable=SC2086
    "$TCP_GARBAGE" $mode 127.0.0.1 "$port" > /dev/null 2>&1
done
curl -s --max-time "$(scaled 10)" -o "$ZP_TMP/m2" "$URL"
st=$?
check "with 5 stalled clients and after garbage, curl is served (status $st)" test "$st" -eq 0
check "... while the stalled clients are still connected" any_alive $stall_pids
check "... with the same counters" test "$(metric "$ZP_TMP/m2" zpipe_received_total)" = 2997
stall_ok=0
for p in $stall_pids; do
    wait_pid "$p" 90
    if [ $? -eq 0 ]; then
        stall_ok=$((stall_ok + 1))
    fi
done
zp_bg_pids=
check "the idle timeout closed all 5 stalled connections ($stall_ok)" test "$stall_ok" -eq 5
check "after all that, curl is still served" scrape "$ZP_TMP/m3"

stop_zpiped
st=$?
check "SIGTERM: zpiped exits 0 (status $st)" test "$st" -eq 0
check "accounting: received 2997 delivered 2997 rejected 3" \
    check_accounting received=2997 delivered=2997 rejected=3 spilled=0
check "the sink holds every acknowledged message once" same_messages "$ZP_TMP/acked" "$ZP_SINK"
check "no unexpected lines in the log" check_log
got=$(code "$URL")
check "after the exit nothing listens on the port (got '$got')" test "$got" = 000

# ---- a zmq sink without a peer: sink errors, the drain, the spill
rm -f "$ZP_SINK"
port=$("$TCP_GARBAGE" freeport) || bail "no free port"
URL=http://127.0.0.1:$port/metrics
write_config "$ZP_CONF" daemon.metrics_listen="127.0.0.1:$port" input.mode=router \
    output.sink=zmq zmq.endpoints="ipc://$ZP_TMP/nobody" zmq.mode=push \
    daemon.drain_timeout=3s daemon.drain_input=200ms output.threads=1
start_zpiped || bail "zpiped did not become ready (zmq sink)"
start_client z dealer -n 200 -p z --out "$ZP_TMP/acked.z" "$ZP_EP"
check "200 messages queued and acknowledged" wait_clients 120
check "sink errors of kind timeout show in /metrics" wait_until 60 "timeout errors" \
    metric_at_least 'zpipe_sink_errors_total{kind="timeout"}' 1
check "failed_total and retried_total count the failed writes" \
    test "$(metric "$ZP_TMP/m.poll" zpipe_failed_total)" -ge 1
check "nothing delivered" test "$(metric "$ZP_TMP/m.poll" zpipe_delivered_total)" = 0
kill -TERM "$zp_pid"
draining() {
    scrape "$ZP_TMP/m.drain" || return 1
    grep -Eq '^zpipe_state\{state="draining (inputs|queue)"\} 1$' "$ZP_TMP/m.drain"
}
check "during the drain /metrics is served and says draining" wait_until 20 "state draining" \
    draining
check "... with state running 0" test "$(metric "$ZP_TMP/m.drain" 'zpipe_state{state="running"}')" = 0
stop_zpiped
st=$?
check "the drain deadline spills: zpiped exits 0 (status $st)" test "$st" -eq 0
check "accounting: received 200 delivered 0 spilled 200" \
    check_accounting received=200 delivered=0 spilled=200
check "no unexpected lines in the log (the sink's write errors aside)" \
    check_log "$ZP_LOG" 'sink zmq: consumer [0-9]+: write'

done_testing
