#!/bin/sh
# 240: a sink file whose failed writes cannot be cut back.  An append-only
# file (chattr +a) is refused at start with a clear error.  Made append-only
# after the start, on a full 1 MiB tmpfs, a write that fails part-way cannot
# be truncated: the records that reached the file count as written (not
# written again), and the record cut short after them blocks further writes
# (logged) until the file can be cut back.  Once space is freed and chattr -a
# run, every message is in the file exactly once, no line torn, and the
# accounting and exit status are truthful.  Root only (mount, chattr);
# skipped otherwise.
. "$(dirname "$0")/lib.sh"
setup

N=3000
SIZE=100
FS=$ZP_TMP/fs
mounted=0

mount_tmpfs_or_skip "$FS" 1m
mounted=1
# The tmpfs goes before the temp dir: lib.sh's EXIT trap removes the dir.
# The file must lose +a first, or neither rm nor umount's cleanup could go.
cleanup_fs() {
    chattr -a "$FS/sink.log" 2> /dev/null
    if [ "$mounted" = 1 ]; then
        umount "$FS"
    fi
}
trap 'cleanup_fs; zp_cleanup' EXIT

SINK=$FS/sink.log
: > "$SINK"
if ! chattr +a "$SINK" 2> "$ZP_TMP/chattr.err"; then
    umount "$FS" && mounted=0
    echo "1..1"
    echo "ok 1 # SKIP chattr +a on tmpfs failed: $(cat "$ZP_TMP/chattr.err")"
    exit 0
fi
write_config "$ZP_CONF" input.mode=router "file.path=$SINK" file.fsync=always \
    output.threads=2 output.batch=64 daemon.stats_interval=50ms
if start_zpiped; then
    not_ok "zpiped refuses an append-only sink file at start"
    stop_zpiped
else
    ok "zpiped refuses an append-only sink file at start"
fi
check "the log says why" grep -q "sink.log is append-only (chattr +a)" "$ZP_LOG"

chattr -a "$SINK" || bail "chattr -a failed"
start_zpiped || bail "zpiped did not become ready"
ok "zpiped is ready, its sink on a 1 MiB tmpfs"
chattr +a "$SINK" || bail "chattr +a failed"

# Fill the file system, then leave 100 KiB: the write that hits the end of
# the space fails part-way through a record, and cannot be cut back.
dd if=/dev/zero of="$FS/filler" bs=4096 2> /dev/null
truncate -s -100K "$FS/filler" || bail "truncate failed"

start_client c dealer -n "$N" -s "$SIZE" -p "torn-" --window 100 --timeout 120000 \
    --out "$ZP_TMP/ok.c" "$ZP_EP"
check "a failed write cannot be cut back, and the log names the torn record" \
    wait_until 60 "'a record is cut short' in the log" grep -q 'a record is cut short' "$ZP_LOG"
check "messages keep arriving while the sink is stuck" wait_read "$N" 60

# write_errors_at_least N: the daemon counts N or more failed sink writes.
write_errors_at_least() {
    [ "$(stats_field sink.errors.write)" -ge "$1" ] 2> /dev/null
}
before=$(stats_field sink.errors.write)
rm -f "$FS/filler"
check "with space freed, writes to the torn file keep failing" \
    wait_until 60 "2 more failed writes" write_errors_at_least $((${before:-0} + 2))
delivered_torn=$(status_field delivered)
diag "while torn: $delivered_torn of $N delivered"
check "not everything was delivered while the file was torn" test "${delivered_torn:-0}" -lt "$N"
check "the torn record is still the file's end (no newline after it)" \
    test "$(tail -c 1 "$SINK" | wc -l)" -eq 0

chattr -a "$SINK" || bail "chattr -a failed"
# delivered_all: STATUS= says every message was delivered.
delivered_all() {
    [ "$(status_field delivered)" = "$N" ]
}
check "once it can be cut back, the sink delivers everything" \
    wait_until 60 "delivered $N" delivered_all
check "the log says the torn record was cut off" \
    grep -q 'cut back to its last whole record: writing again' "$ZP_LOG"
check "the client got OK for every message" wait_clients 60
stop_zpiped TERM 60
check "SIGTERM: zpiped exits 0 (status $ZP_STATUS)" test "$ZP_STATUS" -eq 0

"$ZMQ_CLIENT" gen -n "$N" -s "$SIZE" -p "torn-" > "$ZP_TMP/universe"
check "the sink holds every message exactly once, none torn" \
    same_messages "$ZP_TMP/universe" "$SINK"
check "every OK'ed message is in the sink" same_messages "$ZP_TMP/ok.c" "$SINK"
check "accounting: received = delivered = $N, nothing spilled" \
    check_accounting received="$N" delivered="$N" spilled=0 queued=0 in_flight=0
check "no unexpected lines in the log" check_log "$ZP_LOG" \
    'write: (No space left on device|Operation not permitted)|ftruncate after a failed write'

umount "$FS" && mounted=0
done_testing
