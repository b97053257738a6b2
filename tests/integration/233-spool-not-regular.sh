#!/bin/sh
# 233: replay reads regular files only.  Next to two real spill files the
# spool holds a FIFO and a symbolic link (to a spill file outside the
# spool) under spill-*.zps names.  Replay must neither block on the FIFO
# (nobody ever writes to it) nor follow the link: it replays the real
# files, moves the other two aside as NAME.bad with a log line each, and
# SIGTERM ends zpiped in time with status 0.  The link's target is left
# untouched.
. "$(dirname "$0")/lib.sh"
setup

SPOOL=$ZP_TMP/spool

binary_records a1 a2 a3 > "$SPOOL/spill-0000000000001-1-c0-0.zps"
mkfifo "$SPOOL/spill-0000000000002-1-c0-1.zps" || bail "mkfifo failed"
binary_records x1 x2 > "$ZP_TMP/outside.zps"
cp "$ZP_TMP/outside.zps" "$ZP_TMP/outside.orig"
ln -s "$ZP_TMP/outside.zps" "$SPOOL/spill-0000000000003-1-c0-2.zps"
binary_records b1 b2 > "$SPOOL/spill-0000000000004-1-c1-3.zps"
printf '%s\n' a1 a2 a3 b1 b2 > "$ZP_TMP/expected"

write_config "$ZP_CONF" daemon.drain_input=200ms daemon.drain_timeout=2s
start_zpiped || bail "zpiped did not become ready"
ok "zpiped is ready with a FIFO and a symlink among the spill files"
check "the replay leaves no spill-*.zps behind" wait_until 30 "the spill files" replay_done "$SPOOL"
t0=$(date +%s)
stop_zpiped TERM 30
t1=$(date +%s)
check "SIGTERM: zpiped exits 0 (status $ZP_STATUS)" test "$ZP_STATUS" -eq 0
check "... in time ($((t1 - t0)) s)" test $((t1 - t0)) -le "$(scaled 10)"
check "the sink holds the records of the two real files, once" \
    same_messages "$ZP_TMP/expected" "$ZP_SINK"
check "accounting: replayed 5, delivered 5" \
    check_accounting received=0 replayed=5 delivered=5 spilled=0 queued=0 in_flight=0
check "the FIFO is moved aside" test -p "$SPOOL/spill-0000000000002-1-c0-1.zps.bad"
check "the symlink is moved aside" test -L "$SPOOL/spill-0000000000003-1-c0-2.zps.bad"
check "the symlink's target is untouched" cmp -s "$ZP_TMP/outside.zps" "$ZP_TMP/outside.orig"
check "the log names the FIFO" \
    grep -q 'spool: .*spill-0000000000002-1-c0-1.zps: not a regular file' "$ZP_LOG"
check "the log names the symlink" \
    grep -q 'spool: .*spill-0000000000003-1-c0-2.zps: not a regular file' "$ZP_LOG"
check "no other errors in the log" check_log "$ZP_LOG" 'not a regular file'

done_testing
