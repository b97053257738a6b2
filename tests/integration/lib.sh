# lib.sh - helpers for zpiped's integration tests.  Sourced by each
# tests/integration/NNN-name.sh; POSIX sh (dash), Linux only.
#
# Modelled on chrony's test/system/test.common: a test calls setup (its own
# temp dir and a trap that kills, reaps and cleans up), write_config,
# start_zpiped (which waits for READY=1 on a real NOTIFY_SOCKET), drives
# clients, stop_zpiped (SIGTERM, wait, exit status), then checks every
# message and the log.  It prints TAP for automake's tap-driver:
#
#   ok "zpiped became ready"
#   check "sink holds every message exactly once" same_messages "$exp" "$ZP_SINK"
#   done_testing
#
# Synchronisation is by polling a condition with a deadline (wait_until),
# never by sleeping a fixed time.  Deadlines are generous because the same
# tests run on ASan and TSan builds; ZP_TIMEOUT_SCALE multiplies them all.
#
# Pull-mode senders cannot know what zpiped has read, and libzmq 4.3 drops
# what is still in a connection's socket buffer when the peer disconnects
# while zpiped's ZMQ_RCVHWM is full (stream_engine_base_t::in_event_internal
# sets _io_error when input is stopped).  So tests that need every message
# run their PUSH clients with --hold: wait for their summary lines
# (clients_sent), then for zpiped's STATUS= to count everything (wait_read),
# then let them close (finish_clients), then stop zpiped.
#
# Writing the config, starting, stopping and switching daemons, waiting and
# free ports come from scripts/lib/zpiped.sh, the harness the benchmarks
# share (see its top for write_config, start_zpiped, stop_zpiped,
# wait_zpiped, use_daemon, wait_until, wait_pid, pid_alive, free_port).
#
# Environment: top_builddir, top_srcdir (set by make check; default to the
# source tree), KEEP=1 keeps the temp dir, ZP_TIMEOUT_SCALE (default 1).

: "${top_srcdir:=$(cd "$(dirname "$0")/../.." && pwd)}"
: "${top_builddir:=$top_srcdir}"

# shellcheck source=../../scripts/lib/zpiped.sh
. "$top_srcdir/scripts/lib/zpiped.sh"

ZPIPED=$top_builddir/src/zpiped
ZPIPE=$top_builddir/src/zpipe
NOTIFY_LISTEN=$top_builddir/tests/helpers/notify_listen
TCP_GARBAGE=$top_builddir/tests/helpers/tcp_garbage
ZMQ_CLIENT=$top_builddir/tests/helpers/zmq_client
DECODE_RECORDS=$top_builddir/tests/helpers/decode_records

LC_ALL=C
export LC_ALL

# ------------------------------------------------------------------ TAP

tap_n=0
tap_failed=0

# ok DESC / not_ok DESC: one test result.
ok() {
    tap_n=$((tap_n + 1))
    echo "ok $tap_n - $*"
}

not_ok() {
    tap_n=$((tap_n + 1))
    tap_failed=$((tap_failed + 1))
    echo "not ok $tap_n - $*"
}

# skip REASON: a skipped test.
skip() {
    tap_n=$((tap_n + 1))
    echo "ok $tap_n # SKIP $*"
}

# check DESC CMD [ARGS...]: ok if CMD succeeds, else not ok.
check() {
    _zl_desc=$1
    shift
    if "$@"; then
        ok "$_zl_desc"
    else
        not_ok "$_zl_desc"
    fi
}

# diag TEXT...: TAP comment lines (one per line of TEXT).
diag() {
    printf '%s\n' "$*" | sed 's/^/# /'
}

# diag_file FILE [LINES]: the last LINES (default 40) lines of FILE as comments.
diag_file() {
    if [ -s "$1" ]; then
        diag "--- last lines of $1:"
        tail -n "${2:-40}" "$1" | sed 's/^/#   /'
    else
        diag "--- $1: empty or missing"
    fi
}

# plan N: a plan at the start, for tests that know their count.
plan() {
    echo "1..$1"
    tap_planned=$1
}

# done_testing: the plan (if not given up front) and exit 0: failures are
# in the TAP lines, and tap-driver would count a non-zero exit as one more
# error.  (bail, a crash of the script, exits non-zero.)
done_testing() {
    if [ -z "${tap_planned:-}" ]; then
        echo "1..$tap_n"
    fi
    if [ "$tap_failed" -ne 0 ]; then
        diag "$tap_failed of $tap_n failed; KEEP=1 keeps the temp dir"
    fi
    exit 0
}

# bail REASON: abort the whole test file, with the daemon's log for context.
bail() {
    if [ -n "${ZP_LOG:-}" ]; then
        diag_file "$ZP_LOG"
    fi
    echo "Bail out! $*"
    exit 1
}

# ------------------------------------------------------------ processes

zp_bg_pids=

# any_alive PID...: true if one of the PIDs runs.
any_alive() {
    for _zl_p in "$@"; do
        if pid_alive "$_zl_p"; then
            return 0
        fi
    done
    return 1
}

# spawn CMD [ARGS...]: run CMD in the background (redirect at the call site);
# sets zp_last_pid.  The trap kills whatever is still running at exit.
spawn() {
    "$@" &
    zp_last_pid=$!
    zp_bg_pids="$zp_bg_pids $zp_last_pid"
}

# kill_wait PID...: SIGTERM the PIDs that still run and reap them all.
kill_wait() {
    for _zl_p in "$@"; do
        kill -TERM "$_zl_p" 2>/dev/null
    done
    for _zl_p in "$@"; do
        wait_pid "$_zl_p" 20 >/dev/null 2>&1
    done
    return 0
}

zp_cleanup() {
    _zl_rc=$?
    trap - EXIT
    for _zl_p in $zp_bg_pids; do
        if pid_alive "$_zl_p"; then
            kill -KILL "$_zl_p" 2>/dev/null
        fi
    done
    zp_kill_all
    for _zl_p in $zp_bg_pids; do
        wait "$_zl_p" 2>/dev/null
    done
    if [ -n "${ZP_TMP:-}" ] && [ -d "$ZP_TMP" ]; then
        if [ "${KEEP:-0}" = 1 ]; then
            echo "# kept $ZP_TMP"
        else
            rm -rf "$ZP_TMP"
        fi
    fi
    exit "$_zl_rc"
}

# setup: the test's temp dir and the cleanup trap.  The dir is under /tmp,
# not $TMPDIR, so ipc:// and unix socket paths stay far below 108 bytes.
# Sets ZP_TMP, ZP_CONF, ZP_SINK, ZP_EP (the default input endpoint) and
# zp_has_notify.  Skips the whole test when a binary is missing, or when
# zpiped was built without libsystemd unless ZP_NOTIFY_OPTIONAL=1.
setup() {
    for _zl_b in "$ZPIPED" "$NOTIFY_LISTEN" "$ZMQ_CLIENT" "$DECODE_RECORDS"; do
        if [ ! -x "$_zl_b" ]; then
            echo "1..0 # SKIP $_zl_b not built"
            exit 0
        fi
    done
    # Without libsystemd zpiped sends no READY=1 or STATUS=, which the
    # tests read.
    zp_has_notify=1
    if ! zp_build_has_notify "$top_builddir"; then
        zp_has_notify=0
        if [ "${ZP_NOTIFY_OPTIONAL:-0}" != 1 ]; then
            echo "1..0 # SKIP zpiped built without libsystemd: no READY=1 to wait for"
            exit 0
        fi
    fi
    ZP_TMP=$(mktemp -d /tmp/zpt.XXXXXX) || bail "mktemp failed"
    trap zp_cleanup EXIT
    trap 'exit 129' HUP
    trap 'exit 130' INT
    trap 'exit 143' TERM
    mkdir "$ZP_TMP/spool"
    ZP_CONF=$ZP_TMP/zpiped.ini
    ZP_SINK=$ZP_TMP/sink.log
    ZP_EP=ipc://$ZP_TMP/in0
    zp_run=0
}

# --------------------------------------------------------------- config

# zp_config_defaults: every key set (so no test depends on a default), paths
# in the temp dir.  write_config FILE [section.key=value | -section.key]...
# writes them with the changes.
zp_config_defaults() {
    cat <<EOF
daemon.log_level=info
daemon.stats_interval=100ms
daemon.drain_timeout=60s
daemon.drain_input=1s
daemon.spool_dir=$ZP_TMP/spool
daemon.control_socket=$ZP_TMP/ctl.sock
input.endpoints=$ZP_EP
input.threads=1
input.mode=pull
input.max_message_size=1M
input.rcvhwm=1000
queue.capacity=65536
queue.max_bytes=256M
output.sink=file
output.threads=2
output.batch=256
file.path=$ZP_SINK
file.format=lines
file.fsync=interval
file.fsync_interval=1s
EOF
}

# ----------------------------------------------------------------- checks

# check_log [LOG] [ALLOW_ERE]: fail, showing the lines, if LOG (default
# $ZP_LOG) holds a sanitizer report, an assertion, a crash, or an error line
# that does not match ALLOW_ERE.  Warnings are shown but allowed.
check_log() {
    _zl_log=${1:-$ZP_LOG}
    _zl_allow=${2:-}
    _zl_bad=$(grep -E 'Sanitizer|runtime error:|^SUMMARY:|Assertion .* failed|Assertion failed|assertion failed|Segmentation fault|Aborted|==[0-9]+==' "$_zl_log")
    _zl_err=$(grep -E ' zpiped error: |^<[0-3]>' "$_zl_log")
    if [ -n "$_zl_allow" ] && [ -n "$_zl_err" ]; then
        _zl_err=$(printf '%s\n' "$_zl_err" | grep -Ev -e "$_zl_allow")
    fi
    _zl_warn=$(grep -E ' zpiped warning: |^<4>' "$_zl_log")
    if [ -n "$_zl_warn" ]; then
        diag "warnings in $_zl_log:"
        diag "$(printf '%s\n' "$_zl_warn" | head -n 10)"
    fi
    if [ -n "$_zl_bad$_zl_err" ]; then
        diag "unexpected lines in $_zl_log:"
        diag "$(printf '%s\n%s\n' "$_zl_bad" "$_zl_err" | grep -v '^$' | head -n 40)"
        if [ -n "$_zl_bad" ]; then
            # The whole first report: both stacks of a race, kept with the
            # test's output since the temp dir goes.
            diag "the first report in full:"
            diag "$(sed -n '/^WARNING: ThreadSanitizer\|^==[0-9]*==ERROR/,/^SUMMARY/p' "$_zl_log" |
                head -n 120)"
        fi
        return 1
    fi
    return 0
}

# acct FIELD [LOG]: print FIELD's number from the daemon's exit line
# "accounting: received R replayed P delivered D spilled S queued Q in_flight F rejected X".
acct() {
    _zl_line=$(grep 'accounting: received ' "${2:-$ZP_LOG}" | tail -n 1)
    [ -n "$_zl_line" ] || return 1
    field_of "$1" "${_zl_line#*accounting: }"
}

# field_of FIELD "NAME VALUE NAME VALUE ...": print FIELD's value.
field_of() {
    _zl_f=$1
    set -f
    # shellcheck disable=SC2086
    set -- $2
    set +f
    while [ $# -ge 2 ]; do
        if [ "$1" = "$_zl_f" ]; then
            echo "$2"
            return 0
        fi
        shift 2
    done
    return 1
}

# check_accounting FIELD=N...: the exit accounting line has these values.
check_accounting() {
    _zl_good=0
    if ! grep -q 'accounting: received ' "$ZP_LOG"; then
        diag "no accounting line in $ZP_LOG"
        return 1
    fi
    for _zl_kv in "$@"; do
        _zl_want=${_zl_kv#*=}
        _zl_got=$(acct "${_zl_kv%%=*}")
        if [ "$_zl_got" != "$_zl_want" ]; then
            diag "accounting: ${_zl_kv%%=*} is '$_zl_got', expected $_zl_want"
            _zl_good=1
        fi
    done
    if [ "$_zl_good" -ne 0 ]; then
        diag "$(grep 'accounting: ' "$ZP_LOG")"
    fi
    return "$_zl_good"
}

# same_messages EXPECTED ACTUAL...: the lines of the ACTUAL files together
# are exactly the lines of EXPECTED, each as often (order ignored).  Shows
# counts and examples of missing, unexpected and duplicated lines.
same_messages() {
    _zl_exp=$1
    shift
    _zl_s=$ZP_TMP/cmp.$$
    sort "$_zl_exp" > "$_zl_s.exp"
    cat "$@" | sort > "$_zl_s.act"
    if cmp -s "$_zl_s.exp" "$_zl_s.act"; then
        rm -f "$_zl_s.exp" "$_zl_s.act"
        return 0
    fi
    comm -23 "$_zl_s.exp" "$_zl_s.act" > "$_zl_s.missing"
    comm -13 "$_zl_s.exp" "$_zl_s.act" > "$_zl_s.extra"
    uniq -d "$_zl_s.act" > "$_zl_s.dup"
    diag "expected $(wc -l < "$_zl_s.exp") lines, got $(wc -l < "$_zl_s.act"):" \
        "$(wc -l < "$_zl_s.missing") missing, $(wc -l < "$_zl_s.extra") unexpected," \
        "$(wc -l < "$_zl_s.dup") duplicated"
    for _zl_k in missing extra dup; do
        if [ -s "$_zl_s.$_zl_k" ]; then
            diag "$_zl_k (first 5): $(head -n 5 "$_zl_s.$_zl_k" | cut -c1-80 | tr '\n' ' ')"
        fi
    done
    rm -f "$_zl_s.exp" "$_zl_s.act" "$_zl_s.missing" "$_zl_s.extra" "$_zl_s.dup"
    return 1
}

# no_duplicates FILE...: no line appears twice in the FILEs together.
no_duplicates() {
    _zl_d=$(cat "$@" | sort | uniq -d | head -n 5)
    if [ -n "$_zl_d" ]; then
        diag "duplicated lines (first 5): $(printf '%s\n' "$_zl_d" | cut -c1-80 | tr '\n' ' ')"
        return 1
    fi
    return 0
}

# subset_of SUPERSET FILE...: every line of the FILEs is a line of SUPERSET.
subset_of() {
    _zl_s=$ZP_TMP/sub.$$
    sort -u "$1" > "$_zl_s.sup"
    shift
    cat "$@" | sort -u | comm -13 "$_zl_s.sup" - > "$_zl_s.extra"
    if [ -s "$_zl_s.extra" ]; then
        diag "$(wc -l < "$_zl_s.extra") lines not in the expected set, e.g.:" \
            "$(head -n 5 "$_zl_s.extra" | cut -c1-80 | tr '\n' ' ')"
        rm -f "$_zl_s.sup" "$_zl_s.extra"
        return 1
    fi
    rm -f "$_zl_s.sup" "$_zl_s.extra"
    return 0
}

# ---------------------------------------------------------------- clients

zp_clients=

# start_client NAME ARGS...: run zmq_client ARGS in the background, stdout in
# $ZP_TMP/client.NAME.out, stderr in $ZP_TMP/client.NAME.err.
start_client() {
    _zl_name=$1
    shift
    spawn "$ZMQ_CLIENT" "$@" < /dev/null \
        > "$ZP_TMP/client.$_zl_name.out" 2> "$ZP_TMP/client.$_zl_name.err"
    zp_clients="$zp_clients $_zl_name:$zp_last_pid"
}

# clients_sent: every client has printed its summary line or has exited.
# (A --hold client prints it once all is sent, then waits for SIGTERM.)
clients_sent() {
    for _zl_c in $zp_clients; do
        if [ ! -s "$ZP_TMP/client.${_zl_c%%:*}.out" ] && pid_alive "${_zl_c#*:}"; then
            return 1
        fi
    done
    return 0
}

# client_is NAME SUMMARY: client NAME's summary line is SUMMARY.
client_is() {
    _zl_got=$(tail -n 1 "$ZP_TMP/client.$1.out" 2>/dev/null)
    if [ "$_zl_got" != "$2" ]; then
        diag "client $1: expected '$2', got '$_zl_got'"
        diag "$(head -n 5 "$ZP_TMP/client.$1.err")"
        return 1
    fi
    return 0
}

# slow_reader FIFO OUT: copy FIFO to OUT 4 KiB at a time with a pause after
# each read, until the writer closes (a read returns nothing).  The pace is
# the load shape of a test, not synchronisation.
slow_reader() {
    exec < "$1"
    while :; do
        _n=$(dd bs=4096 count=1 2>/dev/null | tee -a "$2" | wc -c)
        [ "$_n" -gt 0 ] || break
        sleep 0.01
    done
}

# finish_clients [SECONDS]: SIGTERM the clients still running (--hold ones
# wait for it; call this once they have sent everything), reap them all
# within SECONDS (default 300) and forget them.  Returns 1 if one exited
# non-zero.
finish_clients() {
    for _zl_c in $zp_clients; do
        kill -TERM "${_zl_c#*:}" 2>/dev/null
    done
    wait_clients "$@"
}

# wait_clients [SECONDS]: wait for every client to exit by itself; returns 1
# if one exited non-zero or had to be killed.
wait_clients() {
    _zl_rc=0
    for _zl_c in $zp_clients; do
        wait_pid "${_zl_c#*:}" "${1:-300}"
        _zl_st=$?
        if [ "$_zl_st" -ne 0 ]; then
            diag "client ${_zl_c%%:*} exited with status $_zl_st"
            diag "$(head -n 5 "$ZP_TMP/client.${_zl_c%%:*}.err")"
            _zl_rc=1
        fi
    done
    zp_clients=
    return "$_zl_rc"
}

# status_field FIELD: FIELD's number in zpiped's last STATUS= line, e.g.
# "STATUS=received 1200 delivered 1180 queued 20/65536 rejected 0 spilled 0".
status_field() {
    _zl_line=$(grep '^[0-9]* STATUS=' "$ZP_NOTIFY" | tail -n 1)
    field_of "$1" "${_zl_line#* STATUS=}"
}

# stats_field FIELD[,FIELD...] [SOCKET]: the values of the FIELDs (a dot for
# a field of a nested object: sink.errors.write) in one stats reading of the
# control socket SOCKET (default $ZP_TMP/ctl.sock), on one line separated by
# spaces: `zpipe stats -f`.  Fails, printing nothing, if zpiped does not
# answer or sends no such field.
stats_field() {
    "$ZPIPE" stats -s "${2:-$ZP_TMP/ctl.sock}" -f "$1" 2> /dev/null
}

# holds_all N [SOCKET]: zpiped has received N messages and holds them all,
# queued or in flight (one stats reading; see stats_field).
holds_all() {
    # shellcheck disable=SC2046
    set -- "$1" $(stats_field received,queued,in_flight "${2:-}")
    [ $# -eq 4 ] && [ "$2" = "$1" ] && [ $(($3 + $4)) -eq "$1" ]
}

# read_at_least N: zpiped's STATUS= says it has read N messages (received +
# rejected).  Needs a short daemon.stats_interval.
read_at_least() {
    _zl_r=$(status_field received) || return 1
    _zl_x=$(status_field rejected) || return 1
    [ $((_zl_r + _zl_x)) -ge "$1" ]
}

# wait_read N [SECONDS]: wait until zpiped has read N messages (see
# read_at_least); the way to know pull-mode senders may close.
wait_read() {
    if wait_until "${2:-120}" "zpiped to read $1 messages" read_at_least "$1"; then
        return 0
    fi
    diag "last STATUS: $(grep '^[0-9]* STATUS=' "$ZP_NOTIFY" | tail -n 1)"
    return 1
}

# binary_records [PAYLOAD...]: single-frame records in the binary record
# format (spill files, file.format=binary) on stdout, one per PAYLOAD or,
# without arguments, per line of stdin; payloads of 0..127 bytes.
binary_records() {
    if [ $# -gt 0 ]; then
        printf '%s\n' "$@" | binary_records
        return
    fi
    awk '{ printf "%c%c%c%c%s", 0, 0, 0, length($0), $0 }'
}

# mount_tmpfs_or_skip DIR SIZE: make DIR and mount a tmpfs of SIZE on it, or
# end the test as skipped (not root, or the mount fails).  The caller
# unmounts it, in an EXIT trap placed before zp_cleanup removes the temp dir.
mount_tmpfs_or_skip() {
    _zl_why=
    if [ "$(id -u)" != 0 ]; then
        _zl_why="needs root to mount a tmpfs"
    elif ! mkdir "$1" || ! mount -t tmpfs -o size="$2" zpipe-test "$1" 2> "$ZP_TMP/mount.err"; then
        _zl_why="mount -t tmpfs failed: $(cat "$ZP_TMP/mount.err" 2> /dev/null)"
    fi
    if [ -n "$_zl_why" ]; then
        echo "1..1"
        echo "ok 1 # SKIP $_zl_why"
        exit 0
    fi
}

# replay_done [DIR]: no spill file is left to replay in DIR ($ZP_TMP/spool).
replay_done() {
    ! ls "${1:-$ZP_TMP/spool}"/spill-*.zps > /dev/null 2>&1
}

# line_count FILE...: number of lines in the FILEs together.
line_count() {
    cat "$@" | wc -l | tr -d ' '
}

# notify_count ASSIGNMENT: how many times the listener saw ASSIGNMENT (e.g. WATCHDOG=1).
notify_count() {
    grep -c "^[0-9]* $1\$" "$ZP_NOTIFY"
}

# watchdog_at_least N: N or more WATCHDOG=1 so far.
watchdog_at_least() {
    [ "$(notify_count WATCHDOG=1)" -ge "$1" ]
}

# watchdog_more N [SECONDS]: wait up to SECONDS (default 60) until N more
# WATCHDOG=1 than so far have come.
watchdog_more() {
    _zl_want=$(($(notify_count WATCHDOG=1) + $1))
    wait_until "${2:-60}" "$1 more WATCHDOG=1" watchdog_at_least "$_zl_want"
}

# client_summary FILE: zmq_client's "sent=S ok=O err=E big=B" line.
client_summary() {
    tail -n 1 "$1"
}
