#!/bin/sh
# 130: spill files left by an earlier run, one truncated, one corrupt, one
# whole, and a temporary file of a spill that never completed.  At start the
# replay thread queues every valid record (and READY=1 does not wait for
# it); the log names each damaged file with the offset of the damage; the
# damaged files are moved aside as NAME.bad, never deleted; the temporary
# file is not replayed.
. "$(dirname "$0")/lib.sh"
setup

SPOOL=$ZP_TMP/spool

# rec PAYLOAD: one single-frame binary record (payloads under 256 bytes).
rec() {
    printf '\000\000\000'
    printf "\\$(printf '%03o' "${#1}")"
    printf '%s' "$1"
}

{ rec a1; rec a2; rec a3; printf '\000\000\000\011abc'; } > "$SPOOL/spill-0000000000001-1-c0-0.zps"
{ rec b1; rec b2; printf '\177\377\377\377xy'; rec b3; } > "$SPOOL/spill-0000000000002-1-c1-1.zps"
{ rec c1; } > "$SPOOL/spill-0000000000003-1-c0-2.zps"
{ rec t1; } > "$SPOOL/.spill-0000000000004-1-c0-3.tmp"
printf '%s\n' a1 a2 a3 b1 b2 c1 > "$ZP_TMP/expected"

write_config "$ZP_CONF" file.format=lines
start_zpiped || bail "zpiped did not become ready"
ok "zpiped is ready with three spill files waiting"
check "the replay thread consumes every spill file" wait_until 30 "the spill files" replay_done "$SPOOL"
stop_zpiped TERM 60
check "SIGTERM: zpiped exits 0 (status $ZP_STATUS)" test "$ZP_STATUS" -eq 0
check "the sink holds every valid record exactly once" same_messages "$ZP_TMP/expected" "$ZP_SINK"
check "accounting: replayed 6, delivered 6" \
    check_accounting received=0 replayed=6 delivered=6 spilled=0 queued=0 in_flight=0
check "the log names the truncated file and offset" \
    grep -q 'spill-0000000000001-1-c0-0.zps: damaged record .* at offset 18 of 25' "$ZP_LOG"
check "the log names the corrupt file and offset" \
    grep -q 'spill-0000000000002-1-c1-1.zps: damaged record .* at offset 12 of 24' "$ZP_LOG"
check "the damaged files are moved aside, not deleted" \
    test -s "$SPOOL/spill-0000000000001-1-c0-0.zps.bad" -a -s "$SPOOL/spill-0000000000002-1-c1-1.zps.bad"
check "the whole file is deleted" test ! -e "$SPOOL/spill-0000000000003-1-c0-2.zps"
check "an incomplete spill's temporary file is left alone" test -s "$SPOOL/.spill-0000000000004-1-c0-3.tmp"
check "no unexpected lines in the log" check_log "$ZP_LOG" 'spool: .*damaged record .* at offset'

# A second start finds nothing to replay: the .bad files are not read again.
: > "$ZP_SINK"
start_zpiped || bail "zpiped did not become ready the second time"
stop_zpiped TERM 60
check "restart: exits 0, replays nothing" check_accounting replayed=0 delivered=0
check "restart: the sink stays empty" test ! -s "$ZP_SINK"

done_testing
