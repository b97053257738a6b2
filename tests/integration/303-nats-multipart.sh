#!/bin/sh
# 303: multipart messages through the nats sink (one server, a stream of 1
# replica).  Each message is one NATS message: a single-frame one is its
# payload and has no Zpipe-Parts header; a multipart one has the header
# Zpipe-Parts: N and its frames in the binary record format as its body
# (each frame a 4-byte big-endian length, the top bit set on all but the
# last, then its bytes), byte for byte, binary frames and empty ones too.
. "$(dirname "$0")/lib.sh"
. "$top_srcdir/tests/helpers/nats_cluster.sh"

setup
nats_test_init 1
nats_start_all || bail "the server did not start"
"$JS_STREAM" create "$NATS_URLS" ZT zt.parts --replicas 1 --dupe-window 5m ||
    bail "could not create the stream"
write_config "$ZP_CONF" input.mode=router output.sink=nats output.threads=1 output.batch=64 \
    "nats.servers=$NATS_SERVERS" nats.subject=zt.parts
start_zpiped || bail "zpiped did not start"

# Records in zmq_client's escaped form: frames joined by '|'.  None starts
# with an empty frame: in router mode that is the delimiter of a REQ envelope.
cat > "$ZP_TMP/records" <<'EOF'
a|bc
single
z|
\x00\xff\x80|\x7c\x5c|
x|y|z|\x0a
EOF
start_client recs dealer --records "$ZP_TMP/records" --window 1 "$ZP_EP"
check "the client gets OK for the 5 records" wait_clients 60
start_client gen dealer -n 1000 -s 50 -p gen- --frames 3 --window 100 "$ZP_EP"
check "the client gets OK for 1000 messages of 3 frames" wait_clients 60
delivered_all() {
    [ "$(status_field delivered)" = 1005 ]
}
check "zpiped delivers all 1005" wait_until 60 "delivered 1005" delivered_all
stop_zpiped
check "SIGTERM: zpiped exits 0 (status $ZP_STATUS)" test "$ZP_STATUS" -eq 0
check "accounting: delivered 1005" check_accounting received=1005 delivered=1005
check "no error lines in the log" check_log

"$JS_STREAM" dump "$NATS_URLS" ZT > "$ZP_TMP/dump" || bail "js_stream dump failed"
"$JS_STREAM" dump "$NATS_URLS" ZT --raw > "$ZP_TMP/raw" || bail "js_stream dump --raw failed"
check "1005 NATS messages: one per message" test "$(line_count "$ZP_TMP/dump")" = 1005
{
    cat "$ZP_TMP/records"
    "$ZMQ_CLIENT" gen -n 1000 -s 50 -p gen- --frames 3
} > "$ZP_TMP/sent"
cut -f3 "$ZP_TMP/dump" > "$ZP_TMP/stored"
check "every body decodes to its message's frames (none BAD)" \
    same_messages "$ZP_TMP/sent" "$ZP_TMP/stored"
# The header against the frames: the number of '|' plus one, "-" for one frame.
awk -F '\t' '{ n = split($3, f, "|"); want = n > 1 ? n : "-"
               if ($2 != want) { print; bad++ } } END { exit bad > 0 }' "$ZP_TMP/dump" \
    > "$ZP_TMP/bad.parts"
check "Zpipe-Parts is the number of frames, absent for a single frame" test ! -s "$ZP_TMP/bad.parts"
[ -s "$ZP_TMP/bad.parts" ] && diag "$(head -n 3 "$ZP_TMP/bad.parts")"
# The raw bodies of the records, byte for byte: has_raw PARTS BODY (the
# body escaped as dump prints it).
has_raw() {
    P=$1 B=$2 awk -F '\t' '$2 == ENVIRON["P"] && $3 == ENVIRON["B"] { f = 1 } END { exit !f }' \
        "$ZP_TMP/raw"
}
check "a|bc is 80000001 'a' 00000002 'bc', with Zpipe-Parts: 2" \
    has_raw 2 '\x80\x00\x00\x01a\x00\x00\x00\x02bc'
check "single is the payload alone, without Zpipe-Parts" has_raw - single
check "an empty last frame is 00000000" has_raw 2 '\x80\x00\x00\x01z\x00\x00\x00\x00'
check "binary frames are kept byte for byte" \
    has_raw 3 '\x80\x00\x00\x03\x00\xff\x80\x80\x00\x00\x02\x7c\x5c\x00\x00\x00\x00'
done_testing
