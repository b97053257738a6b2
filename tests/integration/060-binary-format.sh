#!/bin/sh
# 060: the file sink's formats keep records exact.  binary: empty messages,
# NUL bytes, newlines, high bytes and multipart messages with empty frames
# come back byte for byte (decode_records), in order (one producer and one
# consumer thread are FIFO), from PUSH, from DEALER with the delimiter (so a
# message may itself begin with an empty frame) and from REQ.  lines: frames
# joined by one space, then "\n".
. "$(dirname "$0")/lib.sh"
setup

big=$(printf '%070000d' 0 | tr 0 z)
# One record per line in decode_records' form: frames joined by '|', bytes
# outside 0x20..0x7e and '\' '|' as \xHH.  The first line is one empty frame.
cat > "$ZP_TMP/records" <<EOF

\x00
a\x00b
\x00\x00\x00\x00
line1\x0aline2
\x0a
\x0d\x0a
trailing\x0a
a|b
|
||
|x
x|
x||
|\x00|
\x7c\x5c in one frame
\xff\xfe\x80\x7f\x01
with spaces  and\x09tab
1|2|3|4|5|6|7|8|9|10|11|12|13|14|15|16|17|18|19|20|21|22|23|24|25|26|27|28|29|30
$big
$big|$big
EOF
nrec=$(line_count "$ZP_TMP/records")

write_config "$ZP_CONF" file.format=binary output.threads=1 input.threads=1 file.fsync=always
start_zpiped || bail "zpiped did not become ready"
ok "zpiped is ready (pull, binary)"
start_client push push --hold --records "$ZP_TMP/records" "$ZP_EP"
wait_until 60 "the client to send everything" clients_sent
check "PUSH sent the $nrec records" client_is push "sent=$nrec ok=0 err=0 big=0"
check "zpiped read all $nrec records (STATUS=)" wait_read "$nrec"
check "the client closed cleanly" finish_clients
stop_zpiped
st=$?
check "SIGTERM: zpiped exits 0 (status $st)" test "$st" -eq 0
"$DECODE_RECORDS" "$ZP_SINK" > "$ZP_TMP/decoded" 2> "$ZP_TMP/decode.err"
st=$?
check "the sink is a whole number of binary records (status $st)" test "$st" -eq 0
if cmp -s "$ZP_TMP/records" "$ZP_TMP/decoded"; then
    ok "pull: every record decodes exactly as sent, in order"
else
    not_ok "pull: decoded records differ from the ones sent"
    diag "$(diff "$ZP_TMP/records" "$ZP_TMP/decoded" | cut -c1-100 | head -n 20)"
    diag_file "$ZP_TMP/decode.err" 3
fi
check "accounting: received = delivered = $nrec" \
    check_accounting received=$nrec delivered=$nrec rejected=0 spilled=0
check "no unexpected lines in the log" check_log

# Router mode: DEALER with the delimiter, then REQ, one after the other.
rm -f "$ZP_SINK"
write_config "$ZP_CONF" file.format=binary output.threads=1 input.threads=1 input.mode=router
start_zpiped || bail "zpiped did not become ready in router mode"
ok "zpiped is ready (router, binary)"
"$ZMQ_CLIENT" dealer --delim --window 4 --records "$ZP_TMP/records" "$ZP_EP" \
    > "$ZP_TMP/client.out" 2>&1 < /dev/null
st=$?
check "DEALER with delimiter: every record answered [\"\", \"OK\"] (status $st)" test "$st" -eq 0
[ "$st" -eq 0 ] || diag_file "$ZP_TMP/client.out" 10
"$ZMQ_CLIENT" req --records "$ZP_TMP/records" "$ZP_EP" > "$ZP_TMP/client.out" 2>&1 < /dev/null
st=$?
check "REQ: every record answered OK (status $st)" test "$st" -eq 0
[ "$st" -eq 0 ] || diag_file "$ZP_TMP/client.out" 10
stop_zpiped
st=$?
check "SIGTERM: zpiped exits 0 (status $st)" test "$st" -eq 0
cat "$ZP_TMP/records" "$ZP_TMP/records" > "$ZP_TMP/records2"
"$DECODE_RECORDS" "$ZP_SINK" > "$ZP_TMP/decoded" 2> "$ZP_TMP/decode.err"
st=$?
if [ "$st" -eq 0 ] && cmp -s "$ZP_TMP/records2" "$ZP_TMP/decoded"; then
    ok "router: the envelope is stripped and every record decodes exactly, in order"
else
    not_ok "router: decoded records differ (decode status $st)"
    diag "$(diff "$ZP_TMP/records2" "$ZP_TMP/decoded" | cut -c1-100 | head -n 20)"
    diag_file "$ZP_TMP/decode.err" 3
fi
check "no unexpected lines in the log" check_log

# lines format: frames joined by one space, then a newline; bytes as they are.
rm -f "$ZP_SINK"
write_config "$ZP_CONF" file.format=lines output.threads=1 input.threads=1
printf 'hello\na|b|c\n|x\nx|\n\ntab\\x09in\n' > "$ZP_TMP/lines.rec"
printf 'hello\na b c\n x\nx \n\ntab\tin\n' > "$ZP_TMP/lines.expected"
start_zpiped || bail "zpiped did not become ready (lines)"
start_client lines push --hold --records "$ZP_TMP/lines.rec" "$ZP_EP"
wait_until 60 "the client to send everything" clients_sent
wait_read 6
finish_clients
st=$?
stop_zpiped
st2=$?
check "lines: sent and stopped cleanly (client $st, zpiped $st2)" test "$st" -eq 0 -a "$st2" -eq 0
if cmp -s "$ZP_TMP/lines.expected" "$ZP_SINK"; then
    ok "lines: multipart frames joined by one space, one line per message"
else
    not_ok "lines: the sink differs from the expected bytes"
    diag "$(od -c "$ZP_SINK" | head -n 10)"
fi
check "no unexpected lines in the log" check_log

done_testing
