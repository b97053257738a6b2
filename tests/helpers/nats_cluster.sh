# nats_cluster.sh - NATS servers with JetStream on loopback for the tests
# and the benchmark of the nats sink.  Sourced (POSIX sh; bash too):
#
#   nats_init DIR [N]      N servers (default 3) named n1..nN, not started:
#                          free client and cluster ports picked now, a config
#                          each in DIR (server_name, the cluster "zpipe" with
#                          routes to the others, JetStream with its file store
#                          in DIR/NAME).  N = 1: one server, no cluster block.
#                          Sets NATS_URLS (comma-separated, for js_stream) and
#                          NATS_SERVERS (space-separated, for [nats] servers).
#   nats_start NAME...     start these servers (returns at once)
#   nats_start_all         start every server, then nats_wait_ready
#   nats_wait_ready [S]    wait up to S seconds (default 60) until JetStream
#                          answers: a cluster has elected its metadata leader
#   nats_wait_up NAME [S]  wait until server NAME answers JetStream requests
#   nats_kill NAME         kill -9 server NAME and reap it
#   nats_restart NAME      start it again (same ports, same store) and nats_wait_up
#   nats_stop NAME         SIGTERM it and reap it (it may take some seconds)
#   nats_stop_all          kill -9 every server still running (a test's exit)
#   nats_url NAME          its client URL
#   nats_log NAME          its log file (every start appends to it)
#   nats_test_init N       an integration test's servers (see below), and
#                          nats_sink_errors_over, nats_origin_of for its checks
#
# Needs js_stream (JS_STREAM, default $top_builddir/tests/helpers/js_stream)
# for the free ports and the readiness checks, and nats-server (NATS_SERVER,
# default from PATH or /usr/sbin; Debian's nats-server 2.9.10).  nats_init
# returns 77 when one is missing.  With setpriv (util-linux), each server
# gets SIGKILL when the shell that started it dies, so a test killed without
# running its traps leaves no server behind.  Deadlines are multiplied by
# ZP_TIMEOUT_SCALE (default 1).  Functions and variables start with nats_
# (NATS_ for the ones callers read).

nats_init() {
    NATS_DIR=$1
    _nc_n=${2:-3}
    : "${JS_STREAM:=${top_builddir:-.}/tests/helpers/js_stream}"
    if [ -z "${NATS_SERVER:-}" ]; then
        NATS_SERVER=$(command -v nats-server 2>/dev/null || echo /usr/sbin/nats-server)
    fi
    if [ ! -x "$NATS_SERVER" ] || [ ! -x "$JS_STREAM" ]; then
        echo "nats_cluster.sh: need nats-server ($NATS_SERVER) and js_stream ($JS_STREAM)" >&2
        return 77
    fi
    mkdir -p "$NATS_DIR" || return 1
    _nc_ports=$("$JS_STREAM" free-ports $((2 * _nc_n))) || return 1
    set -f
    # shellcheck disable=SC2086
    set -- $_nc_ports
    set +f
    nats_names=
    NATS_URLS=
    NATS_SERVERS=
    _nc_routes=
    _nc_i=1
    while [ "$_nc_i" -le "$_nc_n" ]; do
        eval "nats_port_n$_nc_i=\$1 nats_cport_n$_nc_i=\${$((_nc_n + 1))}"
        eval "nats_pid_n$_nc_i="
        nats_names="$nats_names n$_nc_i"
        NATS_URLS="$NATS_URLS${NATS_URLS:+,}nats://127.0.0.1:$1"
        NATS_SERVERS="$NATS_SERVERS${NATS_SERVERS:+ }nats://127.0.0.1:$1"
        shift
        _nc_i=$((_nc_i + 1))
    done
    for _nc_s in $nats_names; do
        eval "_nc_p=\$nats_port_$_nc_s _nc_c=\$nats_cport_$_nc_s"
        {
            echo "server_name: $_nc_s"
            echo "listen: 127.0.0.1:$_nc_p"
            echo "jetstream {"
            echo "    store_dir: \"$NATS_DIR/$_nc_s\""
            echo "}"
            if [ "$_nc_n" -gt 1 ]; then
                echo "cluster {"
                echo "    name: zpipe"
                echo "    listen: 127.0.0.1:$_nc_c"
                echo "    routes: ["
                for _nc_o in $nats_names; do
                    if [ "$_nc_o" != "$_nc_s" ]; then
                        eval "echo \"        nats-route://127.0.0.1:\$nats_cport_$_nc_o\""
                    fi
                done
                echo "    ]"
                echo "}"
            fi
        } > "$NATS_DIR/$_nc_s.conf"
    done
    nats_names=${nats_names# }
    nats_setpriv=
    if setpriv --pdeathsig KILL true 2>/dev/null; then
        nats_setpriv="setpriv --pdeathsig KILL"
    fi
    return 0
}

nats_url() {
    eval "echo nats://127.0.0.1:\$nats_port_$1"
}

nats_log() {
    echo "$NATS_DIR/$1.log"
}

nats_pid() {
    eval "echo \"\$nats_pid_$1\""
}

nats_start() {
    for _nc_s in "$@"; do
        echo "=== start $(date +%T)" >> "$NATS_DIR/$_nc_s.log"
        # shellcheck disable=SC2086
        $nats_setpriv "$NATS_SERVER" -c "$NATS_DIR/$_nc_s.conf" \
            < /dev/null >> "$NATS_DIR/$_nc_s.log" 2>&1 &
        eval "nats_pid_$_nc_s=\$!"
    done
}

# nats_poll SECONDS CMD...: run CMD every 100 ms until it succeeds; 1 if
# SECONDS (times ZP_TIMEOUT_SCALE) pass first.
nats_poll() {
    _nc_end=$(($(date +%s) + $1 * ${ZP_TIMEOUT_SCALE:-1}))
    shift
    until "$@" > /dev/null 2>&1; do
        if [ "$(date +%s)" -ge "$_nc_end" ]; then
            return 1
        fi
        sleep 0.1
    done
    return 0
}

nats_wait_ready() {
    if ! nats_poll "${1:-60}" "$JS_STREAM" ready "$NATS_URLS"; then
        echo "nats_cluster.sh: JetStream not ready after ${1:-60} s:" >&2
        "$JS_STREAM" ready "$NATS_URLS" >&2
        return 1
    fi
}

nats_wait_up() {
    if ! nats_poll "${2:-60}" "$JS_STREAM" ready "$(nats_url "$1")"; then
        echo "nats_cluster.sh: server $1 does not answer after ${2:-60} s" >&2
        return 1
    fi
}

nats_start_all() {
    # shellcheck disable=SC2086
    nats_start $nats_names
    nats_wait_ready
}

# nats_signal SIGNAL NAME: send SIGNAL to server NAME and reap it (waiting
# at most 60 s, then SIGKILL).
nats_signal() {
    _nc_pid=$(nats_pid "$2")
    [ -n "$_nc_pid" ] || return 0
    kill "-$1" "$_nc_pid" 2>/dev/null
    _nc_end=$(($(date +%s) + 60))
    while kill -0 "$_nc_pid" 2>/dev/null && [ "$(date +%s)" -lt "$_nc_end" ]; do
        # A zombie still takes kill -0: reap it if it is one.
        if grep -q '^State:.*Z' "/proc/$_nc_pid/status" 2>/dev/null; then
            break
        fi
        sleep 0.05
    done
    kill -KILL "$_nc_pid" 2>/dev/null
    wait "$_nc_pid" 2>/dev/null
    eval "nats_pid_$2="
    return 0
}

nats_kill() {
    nats_signal KILL "$1"
}

nats_stop() {
    nats_signal TERM "$1"
}

nats_restart() {
    nats_start "$1"
    nats_wait_up "$1"
}

nats_stop_all() {
    for _nc_s in ${nats_names:-}; do
        nats_kill "$_nc_s"
    done
}

# nats_test_init N: for an integration test, after lib.sh's setup: the test
# is skipped unless zpiped has the nats sink and nats-server and js_stream
# are there; then nats_init "$ZP_TMP/nats" N, and an EXIT trap that kills
# the servers before lib.sh's cleanup removes their directory.
nats_test_init() {
    if ! grep -q '^#define HAVE_NATS 1' "$top_builddir/config.h"; then
        echo "1..0 # SKIP zpiped built without the nats sink"
        exit 0
    fi
    nats_init "$ZP_TMP/nats" "$1" 2> "$ZP_TMP/nats_init.err"
    case $? in
    0) ;;
    77)
        echo "1..0 # SKIP $(cat "$ZP_TMP/nats_init.err") (Debian package nats-server)"
        exit 0
        ;;
    *) bail "nats_init failed: $(cat "$ZP_TMP/nats_init.err")" ;;
    esac
    trap nats_test_exit EXIT
}

# nats_sink_errors_over N: zpipe stats counts more than N sink errors.
nats_sink_errors_over() {
    "$ZPIPE" stats -s "$ZP_TMP/ctl.sock" --json |
        jq -e "[.sink.errors[]] | add > $1" > /dev/null
}

# nats_origin_of LOG: the message origin zpiped logged at its start.
nats_origin_of() {
    sed -n 's/.*message origin \([0-9a-f]\{16\}\)$/\1/p' "$1" | head -n 1
}

nats_test_exit() {
    _nc_rc=$?
    nats_stop_all
    (exit "$_nc_rc")
    zp_cleanup
}
