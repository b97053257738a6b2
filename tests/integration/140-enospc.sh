#!/bin/sh
# 140: a real full file system.  The sink file lives on a 1 MiB tmpfs that a
# filler file fills up; messages keep arriving (router mode, every one
# answered OK once queued) while every sink write fails with ENOSPC, part-way
# through a batch or at its start.  Then the filler is removed: the sink
# recovers and every message is in the file exactly once, no record cut in
# half, and the counters say what happened (failed > 0, retried > 0).
# Root only (mount); skipped otherwise.
. "$(dirname "$0")/lib.sh"
setup

N=3000
SIZE=100
FS=$ZP_TMP/fs
mounted=0

mount_tmpfs_or_skip "$FS" 1m
mounted=1
# The tmpfs goes before the temp dir: lib.sh's EXIT trap removes the dir.
trap 'if [ "$mounted" = 1 ]; then umount "$FS"; fi; zp_cleanup' EXIT

SINK=$FS/sink.log
write_config "$ZP_CONF" input.mode=router "file.path=$SINK" file.fsync=always \
    output.threads=2 output.batch=64 daemon.stats_interval=50ms
start_zpiped || bail "zpiped did not become ready"
ok "zpiped is ready, its sink on a 1 MiB tmpfs"

# Fill the file system (dd stops at ENOSPC), then leave 100 KiB: a third of
# the messages fit, and the write that hits the end of the space fails
# part-way through its batch.
dd if=/dev/zero of="$FS/filler" bs=4096 2> /dev/null
check "the file system is full" test "$(df -P "$FS" | awk 'NR == 2 { print $4 }')" -eq 0
truncate -s -100K "$FS/filler" || bail "truncate failed"

start_client c dealer -n "$N" -s "$SIZE" -p "nospc-" --window 100 --timeout 120000 \
    --out "$ZP_TMP/ok.c" "$ZP_EP"
check "writes fail with ENOSPC, and the log says so" \
    wait_until 30 "ENOSPC in the log" grep -q 'write: No space left on device' "$ZP_LOG"

# All messages are still accepted while the sink is down (the queue holds them).
check "messages keep arriving while the disk is full" wait_read "$N" 60
delivered_full=$(status_field delivered)
diag "with the disk full: $delivered_full of $N delivered"
check "some messages were written before the disk filled" test "${delivered_full:-0}" -gt 0

sink_errors=$(stats_field sink.errors.open,sink.errors.write,sink.errors.send)
diag "sink errors with the disk full (open write send): $sink_errors"
check "stats counts the failed writes by kind: write > 0, open and send 0" \
    sh -c 'printf "%s\n" "$1" | grep -Eq "^0 [1-9][0-9]* 0\$"' sh "$sink_errors"
rm -f "$FS/filler"
# delivered_all: STATUS= says every message was delivered.
delivered_all() {
    [ "$(status_field delivered)" = "$N" ]
}
check "after space is freed the sink recovers and delivers everything" \
    wait_until 60 "delivered $N" delivered_all
check "the client got OK for every message" wait_clients 60
check "the log says the sink recovered" grep -q 'recovered after [0-9]* failed writes' "$ZP_LOG"
stop_zpiped TERM 60
check "SIGTERM: zpiped exits 0 (status $ZP_STATUS)" test "$ZP_STATUS" -eq 0

"$ZMQ_CLIENT" gen -n "$N" -s "$SIZE" -p "nospc-" > "$ZP_TMP/universe"
check "the sink holds every message exactly once, none cut" same_messages "$ZP_TMP/universe" "$SINK"
check "every OK'ed message is in the sink" same_messages "$ZP_TMP/ok.c" "$SINK"
check "accounting: received = delivered = $N, nothing spilled" \
    check_accounting received="$N" delivered="$N" spilled=0 queued=0 in_flight=0
failed=$(acct failed)
retried=$(acct retried)
diag "failed $failed retried $retried"
check "failed and retried count the failed writes" test "${failed:-0}" -gt 0 -a "${retried:-0}" -gt 0
check "no unexpected lines in the log" check_log "$ZP_LOG" 'write: No space left on device'

# Phase 2: the drain deadline passes while the disk is full.  What the sink
# could not write is spilled (exit 0); after space is freed, a restart
# replays it: every message of both phases is in the file exactly once.
M=500
dd if=/dev/zero of="$FS/filler" bs=4096 2> /dev/null
write_config "$ZP_CONF" input.mode=router "file.path=$SINK" file.fsync=always \
    output.threads=2 output.batch=64 daemon.stats_interval=50ms daemon.drain_input=200ms daemon.drain_timeout=500ms
start_zpiped || bail "zpiped did not become ready (phase 2)"
start_client d dealer -n "$M" -s "$SIZE" -p "outage-" --window 100 --timeout 120000 \
    --out "$ZP_TMP/ok.d" "$ZP_EP"
check "outage: every message is accepted while the disk is full" wait_clients 60
stop_zpiped TERM 60
check "outage: SIGTERM past drain_timeout: zpiped exits 0 (status $ZP_STATUS)" \
    test "$ZP_STATUS" -eq 0
# The sink file's last page may have room for a record or two even with the
# file system full, so some may be delivered; the rest must be spilled.
out_delivered=$(acct delivered)
out_spilled=$(acct spilled)
diag "outage: delivered $out_delivered, spilled $out_spilled"
check "outage: everything unwritten was spilled" \
    check_accounting received="$M" delivered="$out_delivered" \
    spilled="$((M - ${out_delivered:-0}))" queued=0 in_flight=0
check "outage: most of it was spilled" test "${out_spilled:-0}" -gt $((M / 2))
check "outage: no unexpected lines in the log" check_log "$ZP_LOG" 'write: No space left on device'
rm -f "$FS/filler"
write_config "$ZP_CONF" input.mode=router "file.path=$SINK" file.fsync=always
start_zpiped || bail "zpiped did not become ready (phase 2 restart)"
# spool_empty: the replay has consumed the spill.
spool_empty() {
    [ -z "$(ls -A "$ZP_TMP/spool")" ]
}
check "outage: the restart replays the spill" wait_until 60 "the spool to empty" spool_empty
stop_zpiped TERM 60
check "outage: the restart exits 0 having replayed the $out_spilled spilled" \
    check_accounting received=0 replayed="$out_spilled" delivered="$out_spilled"
"$ZMQ_CLIENT" gen -n "$M" -s "$SIZE" -p "outage-" >> "$ZP_TMP/universe"
check "outage: the sink holds every message of both phases exactly once" \
    same_messages "$ZP_TMP/universe" "$SINK"

umount "$FS" && mounted=0
done_testing
