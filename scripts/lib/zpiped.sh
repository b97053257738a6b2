# scripts/lib/zpiped.sh - run zpiped from a shell script: write its config,
# start it and wait until it is ready, stop it and collect its exit status,
# pick a free TCP port.  The one harness of the integration tests (sourced
# by tests/integration/lib.sh) and of the benchmarks (scripts/bench,
# scripts/bench-compare).  POSIX sh (dash) and bash, also under set -eu;
# Linux only (/proc).  Its temporaries are named _zh_*.
#
# The caller sets, before it calls what uses them:
#   ZPIPED          the daemon
#   ZPIPE           the client (readiness by ping, without sd_notify)
#   NOTIFY_LISTEN   tests/helpers/notify_listen (start_zpiped)
#   TCP_GARBAGE     tests/helpers/tcp_garbage (free_port)
#   ZP_TMP          where the logs and notify sockets go
#   zp_has_notify   1 (the default) when zpiped sends READY=1, 0 in a build
#                   without libsystemd (see zp_build_has_notify): then it is
#                   ready when its control socket answers zpipe ping
# and may set ZP_TIMEOUT_SCALE (multiplies every deadline, default 1),
# ZPIPED_ENV ("VAR=value ..." for the daemon's environment) and ZPIPED_WRAP
# (a command zpiped runs under, e.g. "valgrind --tool=callgrind"), and
# redefine, after sourcing:
#   zp_config_defaults  prints the section.key=value lines every
#                       write_config starts from (default: none)
#   diag TEXT...        a message (default: on stderr)
#   diag_file FILE [N]  the last N (40) lines of FILE as messages
#
# The daemon's state: zp_pid (empty when none runs), zp_listen_pid, ZP_LOG
# (its stdout and stderr this run), ZP_NOTIFY (what it sent to
# NOTIFY_SOCKET), zp_run (runs so far) and, once it exited, ZP_STATUS.
# use_daemon NAME keeps one such state per daemon, for scripts that run
# several; zp_kill_all ends them all.

: "${ZP_TIMEOUT_SCALE:=1}"
: "${zp_has_notify:=1}"
: "${ZPIPED_ENV:=}"
: "${ZPIPED_WRAP:=}"
zp_pid=
zp_listen_pid=
zp_all_pids=
zp_run=0
zp_name=
zp_names=
ZP_LOG=
ZP_NOTIFY=
ZP_STATUS=

diag() {
    printf '%s\n' "$*" >&2
}

diag_file() {
    if [ -s "$1" ]; then
        diag "--- last lines of $1:"
        tail -n "${2:-40}" "$1" | sed 's/^/  /' >&2
    else
        diag "--- $1: empty or missing"
    fi
}

zp_config_defaults() {
    :
}

# ------------------------------------------------------------ processes

# pid_alive PID: true while PID runs (a zombie counts as gone).  No fork.
pid_alive() {
    _zh_stat=
    [ -r "/proc/$1/stat" ] || return 1
    { read -r _zh_stat < "/proc/$1/stat"; } 2>/dev/null || return 1
    _zh_stat=${_zh_stat##*) }
    _zh_stat=${_zh_stat%% *}
    [ -n "$_zh_stat" ] && [ "$_zh_stat" != Z ] && [ "$_zh_stat" != X ]
}

# scaled SECONDS: SECONDS times ZP_TIMEOUT_SCALE.
scaled() {
    echo $(($1 * ZP_TIMEOUT_SCALE))
}

# wait_until SECONDS DESC CMD [ARGS...]: poll CMD every 20 ms until it
# succeeds (return 0) or the deadline passes (diag, return 1).
wait_until() {
    _zh_secs=$1
    _zh_wend=$(($(date +%s) + $(scaled "$1")))
    _zh_what=$2
    shift 2
    while ! "$@"; do
        if [ "$(date +%s)" -ge "$_zh_wend" ]; then
            diag "timed out after $_zh_secs s waiting for: $_zh_what"
            return 1
        fi
        sleep 0.02
    done
    return 0
}

# wait_pid PID SECONDS: wait for a child of this shell to exit and return its
# status; after SECONDS, kill it and return 124.
wait_pid() {
    _zh_wp=$1
    _zh_pend=$(($(date +%s) + $(scaled "$2")))
    while pid_alive "$_zh_wp"; do
        if [ "$(date +%s)" -ge "$_zh_pend" ]; then
            diag "pid $_zh_wp still running after $2 s: killing it"
            kill -KILL "$_zh_wp" 2>/dev/null || :
            wait "$_zh_wp" 2>/dev/null || :
            return 124
        fi
        sleep 0.02
    done
    wait "$_zh_wp"
}

# zp_forget PID: PID was reaped; zp_kill_all must not signal it (its number
# may belong to another process by then).
zp_forget() {
    _zh_keep=
    for _zh_p in $zp_all_pids; do
        if [ "$_zh_p" != "$1" ]; then
            _zh_keep="$_zh_keep $_zh_p"
        fi
    done
    zp_all_pids=$_zh_keep
}

# free_port: a TCP port on 127.0.0.1 that nothing listened on a moment ago.
free_port() {
    "$TCP_GARBAGE" freeport
}

# zp_build_has_notify BUILDDIR: true if the zpiped built in BUILDDIR sends
# READY=1 (configure found libsystemd), or if BUILDDIR has no config.h.
zp_build_has_notify() {
    [ ! -f "$1/config.h" ] || grep -q '^#define HAVE_LIBSYSTEMD 1' "$1/config.h"
}

# --------------------------------------------------------------- config

# zp_ini: the section.key=value lines on stdin as an ini file on stdout; a
# later line for the same key wins, -section.key removes the key.  Sections
# come in the order daemon input queue output file zmq, then the others as
# first named.
zp_ini() {
    awk '
        /^-/ { delete val[substr($0, 2)]; next }
        /=/ {
            i = index($0, "=")
            k = substr($0, 1, i - 1)
            if (!(k in seen)) { order[++n] = k; seen[k] = 1 }
            val[k] = substr($0, i + 1)
        }
        END {
            ns = split("daemon input queue output file zmq", sec, " ")
            for (j = 1; j <= n; j++) {
                s = substr(order[j], 1, index(order[j], ".") - 1)
                known = 0
                for (m = 1; m <= ns; m++) if (sec[m] == s) known = 1
                if (!known && !(s in extra)) { extra[s] = 1; sec[++ns] = s }
            }
            for (m = 1; m <= ns; m++) {
                header = 0
                for (j = 1; j <= n; j++) {
                    k = order[j]
                    if (!(k in val) || substr(k, 1, index(k, ".") - 1) != sec[m]) continue
                    if (!header) { printf "[%s]\n", sec[m]; header = 1 }
                    printf "%s = %s\n", substr(k, index(k, ".") + 1), val[k]
                }
            }
        }'
}

# write_config FILE [section.key=value | -section.key]...: the config of
# zp_config_defaults with these changes: section.key=value sets,
# -section.key removes.
write_config() {
    _zh_file=$1
    shift
    { zp_config_defaults; printf '%s\n' "$@"; } | zp_ini > "$_zh_file"
}

# zp_ini_value FILE SECTION KEY: KEY's value in SECTION of the ini FILE.
zp_ini_value() {
    awk -v s="[$2]" -v k="$3" '
        /^\[/ { in_s = ($0 == s); next }
        in_s && index($0, k " = ") == 1 { v = substr($0, length(k) + 4) }
        END { print v }' "$1"
}

# ------------------------------------------------------------- the daemon

# zp_is_ready CONF: zpiped sent READY=1, or without sd_notify, the control
# socket of CONF answers ping.
zp_is_ready() {
    if [ "$zp_has_notify" = 1 ]; then
        grep -q '^[0-9]* READY=1$' "$ZP_NOTIFY"
    else
        "$ZPIPE" ping -s "$(zp_ini_value "$1" daemon control_socket)" -t 200 >/dev/null 2>&1
    fi
}

# start_zpiped [CONF]: start the notify listener and zpiped -c CONF (default
# $ZP_CONF) with NOTIFY_SOCKET set, under ZPIPED_WRAP with ZPIPED_ENV, and
# wait (60 s) until it is ready.  Sets zp_pid, ZP_LOG and ZP_NOTIFY.
# Returns 1, after showing the log, if the daemon exits (its exit status is
# then in ZP_STATUS) or is not ready in time.
start_zpiped() {
    _zh_conf=${1:-$ZP_CONF}
    zp_run=$((zp_run + 1))
    ZP_LOG=$ZP_TMP/zpiped${zp_name:+.$zp_name}.$zp_run.log
    ZP_NOTIFY=$ZP_TMP/notify${zp_name:+.$zp_name}.$zp_run.out
    zp_sock=$ZP_TMP/notify${zp_name:+.$zp_name}.sock
    rm -f "$zp_sock"
    : > "$ZP_NOTIFY"
    "$NOTIFY_LISTEN" "$zp_sock" "$ZP_NOTIFY" 2>> "$ZP_TMP/notify_listen.err" &
    zp_listen_pid=$!
    zp_all_pids="$zp_all_pids $zp_listen_pid"
    if ! wait_until 20 "the notify socket $zp_sock" test -S "$zp_sock"; then
        diag_file "$ZP_TMP/notify_listen.err"
        return 1
    fi
    # env execs zpiped (or its wrapper, which runs it in the same process):
    # $! is the daemon itself, so its signals and exit status are ours to
    # see.  WATCHDOG_PID stays unset, which sd_watchdog_enabled() accepts
    # for any pid.
    # shellcheck disable=SC2086
    env -u WATCHDOG_USEC -u WATCHDOG_PID -u JOURNAL_STREAM -u LISTEN_FDS -u LISTEN_PID \
        NOTIFY_SOCKET="$zp_sock" $ZPIPED_ENV \
        $ZPIPED_WRAP "$ZPIPED" -c "$_zh_conf" < /dev/null > "$ZP_LOG" 2>&1 &
    zp_pid=$!
    zp_all_pids="$zp_all_pids $zp_pid"
    _zh_send=$(($(date +%s) + $(scaled 60)))
    while ! zp_is_ready "$_zh_conf"; do
        if ! pid_alive "$zp_pid"; then
            ZP_STATUS=0
            wait "$zp_pid" || ZP_STATUS=$?
            diag "zpiped exited with status $ZP_STATUS before it was ready"
            diag_file "$ZP_LOG"
            zp_forget "$zp_pid"
            zp_pid=
            stop_listener
            return 1
        fi
        if [ "$(date +%s)" -ge "$_zh_send" ]; then
            diag "zpiped not ready after 60 s"
            diag_file "$ZP_LOG"
            return 1
        fi
        sleep 0.02
    done
    return 0
}

# stop_listener: stop the notify listener (it reads what is queued first).
stop_listener() {
    if [ -n "$zp_listen_pid" ]; then
        kill -TERM "$zp_listen_pid" 2>/dev/null || :
        wait_pid "$zp_listen_pid" 20 >/dev/null || :
        zp_forget "$zp_listen_pid"
        zp_listen_pid=
    fi
}

# wait_zpiped [SECONDS] [SIGNAL]: wait up to SECONDS (default 120) for
# zpiped, sent SIGNAL (default TERM) already, to exit (then SIGABRT, and
# SIGKILL), stop the listener, and return zpiped's exit status (128+N for
# signal N).  Also sets ZP_STATUS (255 when no zpiped ran).
wait_zpiped() {
    if [ -z "$zp_pid" ]; then
        ZP_STATUS=255
        return 255
    fi
    _zh_send=$(($(date +%s) + $(scaled "${1:-120}")))
    while pid_alive "$zp_pid"; do
        if [ "$(date +%s)" -ge "$_zh_send" ]; then
            diag "zpiped did not exit within ${1:-120} s of SIG${2:-TERM}: aborting it"
            kill -ABRT "$zp_pid" 2>/dev/null || :
            sleep 1
            kill -KILL "$zp_pid" 2>/dev/null || :
            break
        fi
        sleep 0.02
    done
    ZP_STATUS=0
    wait "$zp_pid" || ZP_STATUS=$?
    zp_forget "$zp_pid"
    zp_pid=
    if [ "$ZP_STATUS" -gt 128 ]; then
        diag "zpiped ended with status $ZP_STATUS (signal $((ZP_STATUS - 128)))"
    fi
    stop_listener
    return "$ZP_STATUS"
}

# stop_zpiped [SIGNAL] [SECONDS]: send SIGNAL (default TERM) and wait_zpiped
# SECONDS; returns zpiped's exit status.
stop_zpiped() {
    if [ -n "$zp_pid" ]; then
        kill "-${1:-TERM}" "$zp_pid" || :
    fi
    wait_zpiped "${2:-120}" "${1:-TERM}"
}

# use_daemon NAME: from now on start_zpiped, stop_zpiped, zpiped_pid and
# the state variables act on daemon NAME ("" is the default one; a NAME is
# letters, digits and _), each with its own pid, log, notify listener and
# run count.  Its log is $ZP_TMP/zpiped.NAME.RUN.log.
use_daemon() {
    eval "zp_state_${zp_name:-_}=\"\$zp_pid:\$zp_listen_pid:\$zp_run:\$ZP_LOG:\$ZP_NOTIFY\""
    zp_name=$1
    case " $zp_names " in
    *" ${zp_name:-_} "*) ;;
    *) zp_names="$zp_names ${zp_name:-_}" ;;
    esac
    eval "_zh_st=\${zp_state_${zp_name:-_}:-::0::}"
    zp_pid=${_zh_st%%:*}
    _zh_st=${_zh_st#*:}
    zp_listen_pid=${_zh_st%%:*}
    _zh_st=${_zh_st#*:}
    zp_run=${_zh_st%%:*}
    _zh_st=${_zh_st#*:}
    ZP_LOG=${_zh_st%%:*}
    ZP_NOTIFY=${_zh_st#*:}
}

# zpiped_pid: the running daemon's pid (empty when none).
zpiped_pid() {
    echo "$zp_pid"
}

# zp_kill_all: SIGKILL and reap every zpiped and listener started and not
# yet stopped, of every use_daemon NAME; each NAME then has none running.
zp_kill_all() {
    for _zh_p in $zp_pid $zp_listen_pid $zp_all_pids; do
        if pid_alive "$_zh_p"; then
            kill -KILL "$_zh_p" 2>/dev/null || :
        fi
    done
    for _zh_p in $zp_pid $zp_listen_pid $zp_all_pids; do
        wait "$_zh_p" 2>/dev/null || :
    done
    zp_all_pids=
    zp_pid=
    zp_listen_pid=
    for _zh_n in $zp_names; do
        eval "_zh_st=\${zp_state_$_zh_n:-::0::}"
        eval "zp_state_$_zh_n=\"::\${_zh_st#*:*:}\""
    done
}
