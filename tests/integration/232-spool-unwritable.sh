#!/bin/sh
# 232: an unwritable spool_dir is found at start, not at the drain.  zpiped
# runs as nobody (setpriv; root only) with every path it needs writable by
# nobody except the spool_dir.  With a spool_dir owned by nobody it starts
# and stops cleanly (the set-up is right); with a root-owned one (mode 0755)
# it exits non-zero before READY=1 with "spool_dir DIR: Permission denied"
# rather than accepting messages it could not spill.
. "$(dirname "$0")/lib.sh"
setup

if [ "$(id -u)" -ne 0 ]; then
    echo "1..0 # SKIP needs root (setpriv to nobody)"
    exit 0
fi
if ! command -v setpriv > /dev/null 2>&1 || ! id nobody > /dev/null 2>&1; then
    echo "1..0 # SKIP setpriv or the user nobody missing"
    exit 0
fi
group=$(id -gn nobody)

# Everything nobody needs: the temp dir traversable, the binaries reachable,
# its own directory for the control socket, input, sink and log.
chmod 0755 "$ZP_TMP"
RUN=$ZP_TMP/run
SPOOL=$ZP_TMP/spool
mkdir "$RUN"
chown nobody "$RUN"
if ! setpriv --reuid=nobody --regid="$group" --clear-groups test -x "$ZPIPED"; then
    echo "1..0 # SKIP nobody cannot run $ZPIPED (a build dir under a private home?)"
    exit 0
fi
printf '#!/bin/sh\nexec setpriv --reuid=nobody --regid=%s --clear-groups -- "%s" "$@"\n' \
    "$group" "$ZPIPED" > "$ZP_TMP/zpiped-nobody"
chmod 0755 "$ZP_TMP/zpiped-nobody"
ZPIPED=$ZP_TMP/zpiped-nobody

write_config "$ZP_CONF" "input.endpoints=ipc://$RUN/in" "daemon.control_socket=$RUN/ctl.sock" \
    "file.path=$RUN/sink.log"
chmod 0644 "$ZP_CONF"
# The notify listener binds its socket with this umask: nobody may send to it.
umask 000

chown nobody "$SPOOL"
start_zpiped || bail "zpiped as nobody with a spool_dir of its own did not become ready"
ok "as nobody, with a spool_dir nobody owns: ready"
stop_zpiped
check "... and exits 0 (status $ZP_STATUS)" test "$ZP_STATUS" -eq 0
check "... with no unexpected lines in the log" check_log

chown root "$SPOOL"
chmod 0755 "$SPOOL"
if start_zpiped; then
    not_ok "as nobody, with a root-owned spool_dir: refuses to start (it became ready)"
    "$ZMQ_CLIENT" push -n 5 "ipc://$RUN/in" > /dev/null 2>&1
    stop_zpiped
else
    ok "as nobody, with a root-owned spool_dir: refuses to start before READY=1"
fi
umask 022
check "... with a non-zero exit status ($ZP_STATUS)" test "${ZP_STATUS:-0}" -ne 0
check "... saying 'spool_dir $SPOOL: Permission denied'" \
    grep -q "error: spool_dir $SPOOL: Permission denied" "$ZP_LOG"
check "... with no other error in the log" check_log "$ZP_LOG" "spool_dir $SPOOL: Permission denied"
check "... and nothing left in the spool_dir" test -z "$(ls -A "$SPOOL")"

done_testing
