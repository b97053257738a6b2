#!/bin/sh
# 231: two daemons sharing one spool_dir.  Each replays every spill file it
# finds, so a second zpiped on the same spool_dir would deliver the same
# records twice.  The first zpiped locks the directory for its lifetime; a
# second one with the same spool_dir (its own control socket, endpoint and
# sink) exits non-zero before READY=1 with an error naming the directory,
# and touches nothing.  The first keeps running and replays the spill files
# once.  Once it has exited, the lock is gone: the second one starts.
. "$(dirname "$0")/lib.sh"
setup

SPOOL=$ZP_TMP/spool
N=10000

# seq_of PREFIX: the payloads PREFIX0..PREFIX{N-1}, one per line.
seq_of() {
    awk -v p="$1" -v n=$N 'BEGIN { for (i = 0; i < n; i++) print p i }'
}
seq_of a- | binary_records > "$SPOOL/spill-0000000000001-1-c0-0.zps"
seq_of b- | binary_records > "$SPOOL/spill-0000000000002-1-c1-1.zps"
{ seq_of a-; seq_of b-; } > "$ZP_TMP/expected"

spool_empty() {
    [ -z "$(ls -A "$SPOOL")" ]
}

write_config "$ZP_CONF" "file.path=$ZP_TMP/a.out" file.fsync=never
write_config "$ZP_TMP/b.ini" "file.path=$ZP_TMP/b.out" file.fsync=never \
    "input.endpoints=ipc://$ZP_TMP/inB" "daemon.control_socket=$ZP_TMP/ctlB.sock"

start_zpiped || bail "zpiped A did not become ready"
ok "zpiped A is ready with two spill files of $N records in $SPOOL"
a_pid=$(zpiped_pid)

use_daemon B
if start_zpiped "$ZP_TMP/b.ini"; then
    not_ok "zpiped B with the same spool_dir refuses to start (it became ready)"
    stop_zpiped
else
    ok "zpiped B with the same spool_dir refuses to start before READY=1"
fi
check "... with a non-zero exit status ($ZP_STATUS)" test "${ZP_STATUS:-0}" -ne 0
check "... and an error naming $SPOOL" grep -q "error: spool_dir $SPOOL: .*zpiped" "$ZP_LOG"
check "... having replayed nothing" sh -c '! grep -q "spool: replay" "$1"' - "$ZP_LOG"
b_log=$ZP_LOG
use_daemon ""

check "zpiped A keeps running" pid_alive "$a_pid"
check "zpiped A replays the spool" wait_until 60 "an empty spool" spool_empty
stop_zpiped
check "zpiped A exits 0 (status $ZP_STATUS)" test "$ZP_STATUS" -eq 0
check "accounting of A: replayed = delivered = $((2 * N))" \
    check_accounting received=0 replayed=$((2 * N)) delivered=$((2 * N)) queued=0 in_flight=0
touch "$ZP_TMP/b.out"
check "every record is delivered exactly once across both daemons" \
    same_messages "$ZP_TMP/expected" "$ZP_TMP/a.out" "$ZP_TMP/b.out"
check "no unexpected lines in A's log" check_log

use_daemon B
start_zpiped "$ZP_TMP/b.ini" || bail "zpiped B did not start once A had exited"
ok "once A has exited, zpiped B starts on the same spool_dir"
stop_zpiped
check "... and exits 0 (status $ZP_STATUS)" test "$ZP_STATUS" -eq 0
check "no unexpected lines in B's logs" check_log "$b_log" "spool_dir $SPOOL: "

done_testing
