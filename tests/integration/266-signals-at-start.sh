#!/bin/sh
# 266: a signal sent while zpiped starts up, before its loop catches
# signals, does not kill it.  zpiped reads its configuration from a FIFO
# that the test writes only after the signal, so the signal deterministically
# arrives inside main(), before the loop exists: SIGTERM and SIGINT then
# drain and exit 0 (never status 143/130, killed by the default action), and
# SIGHUP is a sink reopen: zpiped becomes ready, serves, and a later SIGTERM
# stops it with status 0.  Each signal is tried a few times.
. "$(dirname "$0")/lib.sh"
setup

FIFO=$ZP_TMP/conf.fifo
mkfifo "$FIFO" || bail "mkfifo failed"
write_config "$ZP_CONF"

# opened_fifo PID: PID holds the FIFO open (it is in conf_load, in main()).
opened_fifo() {
    for _fd in /proc/"$1"/fd/*; do
        if [ "$(readlink "$_fd" 2> /dev/null)" = "$FIFO" ]; then
            return 0
        fi
    done
    return 1
}

# start_on_fifo SIGNAL RUN: start zpiped -c FIFO, send SIGNAL once it has
# the FIFO open, then give it its configuration.  Sets pid and log.
start_on_fifo() {
    log=$ZP_TMP/zpiped.$1.$2.log
    # Read-write: opening never blocks, and zpiped's read waits for the
    # config until this shell writes it and closes (EOF).
    exec 3<> "$FIFO"
    env -u NOTIFY_SOCKET -u WATCHDOG_USEC -u LISTEN_FDS "$ZPIPED" -c "$FIFO" \
        < /dev/null > "$log" 2>&1 3>&- &
    pid=$!
    zp_bg_pids="$zp_bg_pids $pid"
    if ! wait_until 30 "zpiped to open its config FIFO" opened_fifo "$pid"; then
        exec 3>&-
        return 1
    fi
    kill "-$1" "$pid"
    cat "$ZP_CONF" >&3
    exec 3>&-
    return 0
}

for sig in TERM INT; do
    for run in 1 2 3; do
        if ! start_on_fifo "$sig" "$run"; then
            not_ok "SIG$sig during start-up, run $run: zpiped never opened its config"
            continue
        fi
        wait_pid "$pid" 60
        st=$?
        check "SIG$sig during start-up, run $run: zpiped drains and exits 0 (status $st)" \
            test "$st" -eq 0
        check "... after starting its loop and draining" \
            grep -q "SIG$sig: draining" "$log"
        check "... no unexpected lines in the log" check_log "$log"
    done
done

for run in 1 2 3; do
    if ! start_on_fifo HUP "$run"; then
        not_ok "SIGHUP during start-up, run $run: zpiped never opened its config"
        continue
    fi
    served() {
        [ "$("$ZPIPE" ping -s "$ZP_TMP/ctl.sock" 2> /dev/null)" = pong ]
    }
    check "SIGHUP during start-up, run $run: zpiped keeps running and answers ping" \
        wait_until 60 "zpiped to answer ping" served
    check "... it reopened its sink for the SIGHUP" \
        wait_until 30 "the reopen" grep -q 'SIGHUP: reopening the sink' "$log"
    kill -TERM "$pid"
    wait_pid "$pid" 60
    st=$?
    check "... and a SIGTERM then stops it with status 0 (status $st)" test "$st" -eq 0
    check "... no unexpected lines in the log" check_log "$log"
done

done_testing
