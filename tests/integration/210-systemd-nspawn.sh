#!/bin/sh
# 210: zpiped under a real systemd.  A minimal Debian 12 tree (debootstrap,
# from the mirror in this machine's apt sources, cached between runs) gets
# this build by "make install DESTDIR=", boots with systemd-nspawn, and is
# driven with "nsenter -t <container pid 1> -a systemctl ...":
#
#   - systemctl start returns after READY=1 and the unit is active;
#   - messages pushed from the host (zpipe push to the tcp:// input: the
#     container shares the host's network) arrive in the sink;
#   - systemctl reload after renaming the sink file loses nothing;
#   - systemctl stop during a stream drains: exit status 0, the accounting
#     line in the journal, and every received message in the sink;
#   - socket activation (zpiped.socket, its ListenStream= on the test's
#     port from a drop-in): enabled and started, it listens while the
#     service is inactive; a client on the host connects and sends, the
#     service starts on that connection with the socket (fd 3), and every
#     message arrives.  systemctl restart zpiped.service while a client
#     keeps sending in router mode (a batch not answered within 3 s is sent
#     again) loses nothing, and no connection attempt made while no zpiped
#     runs is refused (a probe connects every 20 ms; the restart is made
#     slow, ExecStartPre=sleep 1, so that several fall in that window);
#   - the watchdog (WatchdogSec=3s from a drop-in): SIGSTOP the daemon and
#     systemd restarts it, NRestarts=1;
#   - a broken config makes systemctl start fail fast, FILE:LINE in the journal.
#
# Root only; skipped without debootstrap, systemd-nspawn or nsenter (scripts/
# test installs them), in sanitizer builds (no sanitizer runtime in the
# container) and when the container does not boot here.  The container is
# stopped and its copy removed on any exit.  The container code is shared
# with 212 in tests/helpers/nspawn.sh.
#
# Environment: ZP_NSPAWN_CACHE (default /var/cache/zpipe-test), the cache of
# debootstrapped trees; ZP_NSPAWN_PREPARE=1 only builds the cached tree.
ZP_NOTIFY_OPTIONAL=1
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/../helpers/nspawn.sh"

nspawn_require
if [ "${ZP_NSPAWN_PREPARE:-0}" = 1 ]; then
    prepare_tree || exit 1
    echo "$TREE_CACHE"
    exit 0
fi
[ -z "${zp_sanitizer:-}" ] || skip_all "sanitizer build: the container has no sanitizer runtime"
[ -n "${zp_sbindir:-}" ] || skip_all "not run by make check (install directories unknown)"
case ${zp_unitdir:-} in
/lib/systemd/system | /usr/lib/systemd/system | /etc/systemd/system | /usr/local/lib/systemd/system) ;;
"") skip_all "configured without a systemd unit directory" ;;
*) skip_all "unit directory $zp_unitdir is not one systemd reads (distcheck runs this in make check)" ;;
esac
: "${MAKE:=make}"

t_start=$(date +%s)
prepare_tree || skip_all "no Debian $NSPAWN_SUITE tree (see the diagnostics above)"

setup
TCP_GARBAGE=$top_builddir/tests/helpers/tcp_garbage
[ -x "$TCP_GARBAGE" ] || bail "$TCP_GARBAGE not built"
TREE=$ZP_TMP/tree
t0=$(date +%s)
cp -a "$TREE_CACHE" "$TREE" || bail "copying the cached tree failed"
rm -f "$TREE/.zpipe-test-complete"
env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL $MAKE -s -C "$top_builddir" install DESTDIR="$TREE" \
    > "$ZP_TMP/make.out" 2>&1 || {
    diag_file "$ZP_TMP/make.out"
    bail "make install DESTDIR=tree failed"
}
CONF=$zp_sysconfdir/zpipe/zpiped.ini
# The container shares the host's network: clients on the host push to
# the tcp:// input.  The ipc:// one, in the unit's runtime directory, is
# bound by zpiped itself even when zpiped.socket passes the tcp one.
PORT=$("$TCP_GARBAGE" freeport) || bail "no free TCP port"
TCP_EP=tcp://127.0.0.1:$PORT
EP=ipc:///run/zpipe/in.sock
# The test's config: router mode, so zpipe push exits 0 only when every
# message was queued.
cat > "$TREE$CONF" << CONF_EOF
[daemon]
stats_interval = 1s
[input]
endpoints = $TCP_EP $EP
mode = router
[file]
fsync = always
CONF_EOF
# A short watchdog, no core dumps.
mkdir -p "$TREE/etc/systemd/system/zpiped.service.d"
cat > "$TREE/etc/systemd/system/zpiped.service.d/test.conf" << 'CONF_EOF'
[Service]
WatchdogSec=3s
TimeoutAbortSec=10s
LimitCORE=0
CONF_EOF
# zpiped.socket on the test's port (the shipped one has the default 5555).
mkdir -p "$TREE/etc/systemd/system/zpiped.socket.d"
cat > "$TREE/etc/systemd/system/zpiped.socket.d/test.conf" << CONF_EOF
[Socket]
ListenStream=
ListenStream=127.0.0.1:$PORT
CONF_EOF
# The tree boots for the first time (no machine-id), when systemd enables
# units by preset, by default all: the test starts them itself.
mkdir -p "$TREE/etc/systemd/system-preset"
printf 'disable zpiped.service\ndisable zpiped.socket\n' \
    > "$TREE/etc/systemd/system-preset/00-zpipe-test.preset"
SINK_DIR=$TREE/var/lib/private/zpipe
SINK=$SINK_DIR/messages.log
diag "tree copied and installed in $(($(date +%s) - t0)) s"

t0=$(date +%s)
if ! nspawn_boot "$TREE" zpipe-test; then
    echo "1..0 # SKIP the container did not boot here (see the diagnostics)"
    exit 0
fi
ok "container booted in $(($(date +%s) - t0)) s (state $(C systemctl is-system-running))"

prop() {
    C systemctl show -p "$1" --value zpiped.service
}
journal() {
    C journalctl -q -u zpiped.service -o cat --no-pager
}
journal_has() {
    journal | grep -qF -- "$1"
}
# main_journal_has TEXT: the running zpiped (MainPID) logged TEXT.
main_journal_has() {
    C journalctl -q -u zpiped.service _PID="$(prop MainPID)" -o cat --no-pager |
        grep -qF -- "$1"
}
# lines FILE...: the number of lines in the FILEs that exist.
lines() {
    cat "$@" 2> /dev/null | wc -l
}
sink_lines_at_least() {
    _want=$1
    shift
    [ "$(lines "$@")" -ge "$_want" ]
}

check "after boot, neither zpiped.service nor zpiped.socket runs" \
    test "$(C systemctl is-active zpiped.service zpiped.socket | tr '\n' ' ')" = "inactive inactive "

# ---------------------------------------------------------------- start
check "systemctl start zpiped succeeds" C systemctl start zpiped.service
# Type=notify: start returned, so READY=1 came; the socket is bound by then.
check "unit is active, and READY=1 came before start returned" \
    test "$(prop ActiveState)/$(prop SubState)" = active/running
check "the input socket exists as start returns" C test -S /run/zpipe/in.sock
sock_state=$(C systemctl is-active zpiped.socket)
check "starting the service leaves zpiped.socket alone ($sock_state)" test "$sock_state" = inactive
check "zpiped bound its tcp:// input itself" \
    wait_until 10 "the line in the journal" main_journal_has "input: listening on $TCP_EP (router)"
main_user=$(C ps -o user= -p "$(prop MainPID)")
check "it runs unprivileged (DynamicUser): user $main_user" test -n "$main_user" -a "$main_user" != root

# --------------------------------------------------------------- messages
seq 1 500 | sed 's/^/a/' > "$ZP_TMP/a.exp"
# push FILE: zpipe push from the host, router mode: exit 0 once every
# line of FILE was answered OK.
push() {
    "$ZPIPE" push -r -t 30 -e "$TCP_EP" < "$1" > "$ZP_TMP/push.out" 2>&1 || {
        diag_file "$ZP_TMP/push.out"
        return 1
    }
}
check "zpipe push of 500 messages from the host: every one answered OK" push "$ZP_TMP/a.exp"
check "the 500 messages arrive in the sink" wait_until 30 "500 lines" sink_lines_at_least 500 "$SINK"
sort "$SINK" > "$ZP_TMP/a.got"
sort "$ZP_TMP/a.exp" > "$ZP_TMP/a.sorted"
check "the sink holds them exactly once" cmp -s "$ZP_TMP/a.sorted" "$ZP_TMP/a.got"

# ----------------------------------------------------- rename and reload
mv "$SINK" "$SINK.1"
seq 1 300 | sed 's/^/b/' > "$ZP_TMP/b.exp"
seq 1 300 | sed 's/^/c/' > "$ZP_TMP/c.exp"
check "after a rename: 300 more pushed, OK" push "$ZP_TMP/b.exp"
check "systemctl reload zpiped succeeds" C systemctl reload zpiped.service
check "the sink file is reopened under its name" wait_until 30 "$SINK" test -f "$SINK"
check "300 more pushed after the reload, OK" push "$ZP_TMP/c.exp"
check "all 1100 arrive" wait_until 30 "1100 lines" sink_lines_at_least 1100 "$SINK.1" "$SINK"
cat "$ZP_TMP/a.exp" "$ZP_TMP/b.exp" "$ZP_TMP/c.exp" | sort > "$ZP_TMP/abc.exp"
cat "$SINK.1" "$SINK" | sort > "$ZP_TMP/abc.got"
check "across the reload nothing is lost or doubled" cmp -s "$ZP_TMP/abc.exp" "$ZP_TMP/abc.got"
check "the new file holds the messages pushed after the reload" \
    sh -c 'grep -q "^c300\$" "$1" && ! grep -q "^a" "$1"' - "$SINK"
check "the journal has the SIGHUP line" journal_has "SIGHUP: reopening the sink"

# ------------------------------------------------- stop during a stream
# A client streams until the daemon stops answering (then it times out).
seq 1 100000000 | sed 's/^/s/' |
    "$ZPIPE" push -r -t 2 -e "$TCP_EP" > "$ZP_TMP/stream.out" 2>&1 &
stream_pid=$!
zp_bg_pids=$stream_pid
check "the stream is flowing" wait_until 30 "2000 streamed lines" sink_lines_at_least 3100 "$SINK.1" "$SINK"
t0=$(date +%s)
check "systemctl stop during the stream succeeds" C systemctl stop zpiped.service
diag "stop took $(($(date +%s) - t0)) s"
wait_pid "$stream_pid" 60 > /dev/null
check "exit status 0 (Result=success, ExecMainStatus=0)" \
    test "$(prop Result)/$(prop ExecMainStatus)" = success/0
acct=$(journal | grep '^accounting: received' | tail -n 1)
check "the accounting line is in journalctl -u zpiped: $acct" test -n "$acct"
received=$(echo "$acct" | awk '{ print $3 }')
delivered=$(echo "$acct" | awk '{ print $7 }')
got=$(lines "$SINK.1" "$SINK")
dups=$(cat "$SINK.1" "$SINK" | sort | uniq -d | wc -l)
check "every received message is in the sink once (received $received, delivered $delivered, lines $got, doubled $dups)" \
    test "$received" = "$delivered" -a "$got" = "$received" -a "$dups" = 0
streamed=$(cat "$SINK.1" "$SINK" | grep -c '^s')
last=$(cat "$SINK.1" "$SINK" | sed -n 's/^s//p' | sort -n | tail -n 1)
check "the streamed messages are s1..s$streamed, none missing ($streamed streamed)" \
    test "$streamed" -gt 0 -a "$last" = "$streamed"

# ------------------------------------------------------ socket activation
sprop() {
    C systemctl show -p "$1" --value zpiped.socket
}
check "systemctl enable --now zpiped.socket succeeds" C systemctl enable --now zpiped.socket
states=$(sprop ActiveState)/$(sprop SubState)/$(prop ActiveState)
check "the socket is listening and the service is not running ($states)" \
    test "$states" = active/listening/inactive
check "the socket listens on 127.0.0.1:$PORT" \
    sh -c 'nsenter -t "$1" -a systemctl show -p Listen --value zpiped.socket | grep -q "127.0.0.1:$2 (Stream)"' \
    - "$pid1" "$PORT"
seq 1 500 | sed 's/^/d/' > "$ZP_TMP/d.exp"
t0=$(date +%s)
check "a host client connects before zpiped runs: 500 pushed, every one answered OK" \
    push "$ZP_TMP/d.exp"
diag "answered in $(($(date +%s) - t0)) s, zpiped started on the way"
check "the connection started the service" \
    test "$(prop ActiveState)/$(prop SubState)" = active/running
check "it took the socket from systemd (fd 3)" wait_until 10 "the line in the journal" \
    main_journal_has "input: $TCP_EP: socket fd 3 from the service manager"
check "and bound its ipc:// endpoint itself" wait_until 10 "the line in the journal" \
    main_journal_has "input: listening on $EP (router)"
check "the 500 messages arrive in the sink" \
    wait_until 30 "d500" sh -c 'grep -q "^d500\$" "$1"' - "$SINK"
grep '^d' "$SINK" | sort > "$ZP_TMP/d.got"
sort "$ZP_TMP/d.exp" > "$ZP_TMP/d.sorted"
check "the sink holds them exactly once" cmp -s "$ZP_TMP/d.sorted" "$ZP_TMP/d.got"

# probe_connect DIR: a bare TCP connect every 20 ms (the pace is the load
# shape, not synchronisation) until DIR/stop exists; one line per attempt,
# "TIME ok" or "TIME refused" (TIME: seconds since the epoch, the clock the
# container's journal uses too).
probe_connect() {
    while [ ! -e "$1/stop" ]; do
        _t=$(date +%s.%N)
        if "$TCP_GARBAGE" random 127.0.0.1 "$PORT" 0 2>> "$1/probe.err"; then
            echo "$_t ok" >> "$1/probe"
        else
            echo "$_t refused" >> "$1/probe"
        fi
        sleep 0.02
    done
}
# journal_time TEXT: the time (epoch seconds) of the last journal line of
# the unit with TEXT.
journal_time() {
    C journalctl -q -u zpiped.service -o short-unix --no-pager |
        grep -F -- "$1" | tail -n 1 | awk '{ print $1 }'
}
R=$ZP_TMP/restart
mkdir "$R"
router_stream "$R" r "$ZPIPE" push -r -t 3 -e "$TCP_EP" &
zp_bg_pids="$zp_bg_pids $!"
stream_pid=$!
probe_connect "$R" &
zp_bg_pids="$zp_bg_pids $!"
probe_pid=$!
check "the restart stream is flowing" wait_until 60 "3 batches" stream_batches_at_least "$R" 3
# A slow start for this restart: a second without any zpiped.
cat > "$TREE/etc/systemd/system/zpiped.service.d/slow.conf" << 'CONF_EOF'
[Service]
ExecStartPre=/bin/sleep 1
CONF_EOF
C systemctl daemon-reload
old_pid=$(prop MainPID)
before=$(cat "$R/batches")
t0=$(date +%s)
check "systemctl restart zpiped.service while the client sends" \
    C systemctl restart zpiped.service
diag "restart took $(($(date +%s) - t0)) s"
rm -f "$TREE/etc/systemd/system/zpiped.service.d/slow.conf"
C systemctl daemon-reload
check "a new zpiped runs" sh -c '[ "$1" != "$2" ] && [ "$2" != 0 ]' - "$old_pid" "$(prop MainPID)"
check "the stream goes on after the restart" \
    wait_until 60 "3 more batches" stream_batches_at_least "$R" $((before + 3))
: > "$R/stop"
wait_pid "$stream_pid" 120 > /dev/null
wait_pid "$probe_pid" 30 > /dev/null
check "no batch was given up" test ! -s "$R/failed"
desc="every batch pushed around the restart arrives ($(cat "$R/batches") batches, $(lines "$R/retried") pushed again)"
check "$desc" wait_until 30 "the last batch" sh -c 'grep -q "^r$2\.200\$" "$1"' - "$SINK" "$(cat "$R/batches")"
grep '^r' "$SINK" | sort -u > "$ZP_TMP/r.got"
sort -u "$R/sent" > "$ZP_TMP/r.exp"
missing=$(comm -23 "$ZP_TMP/r.exp" "$ZP_TMP/r.got" | wc -l)
doubled=$(grep '^r' "$SINK" | sort | uniq -d | wc -l)
check "none of the $(lines "$ZP_TMP/r.exp") messages is missing (missing $missing; doubled by a resend: $doubled)" \
    test "$missing" = 0
# The window: from the old zpiped's exit to the new one's READY=1.
down=$(journal_time "zpiped.service: Deactivated successfully")
up=$(journal_time "Started zpiped.service")
in_window=$(awk -v a="$down" -v b="$up" '$1 >= a && $1 <= b' "$R/probe" | wc -l)
refused=$(grep -c refused "$R/probe")
check "connection attempts while no zpiped ran: $in_window in $down..$up, all accepted ($refused refused of $(lines "$R/probe"))" \
    test -n "$down" -a -n "$up" -a "$in_window" -gt 0 -a "$refused" = 0
[ "$refused" = 0 ] || diag_file "$R/probe.err" 5
check "the new zpiped took the socket too" wait_until 10 "the line in the journal" \
    main_journal_has "input: $TCP_EP: socket fd 3 from the service manager"
check "systemctl stop zpiped.socket zpiped.service: exit status 0" \
    C systemctl stop zpiped.socket zpiped.service
check "exit status 0 (Result=success, ExecMainStatus=0)" \
    test "$(prop Result)/$(prop ExecMainStatus)" = success/0
C systemctl disable zpiped.socket > /dev/null 2>&1

# ---------------------------------------------------------------- watchdog
check "systemctl start zpiped again" C systemctl start zpiped.service
old_pid=$(prop MainPID)
# Never "kill -STOP 0" (that would stop this test's process group, make
# check included): only a real main pid.
case $old_pid in
'' | *[!0-9]* | 0 | 1) bail "no main pid to freeze: '$old_pid'" ;;
esac
C kill -STOP "$old_pid"
restarted() {
    [ "$(prop NRestarts)" = 1 ] && [ "$(prop ActiveState)" = active ] &&
        [ "$(prop MainPID)" != "$old_pid" ] && [ "$(prop MainPID)" != 0 ]
}
t0=$(date +%s)
check "SIGSTOP: the watchdog restarts zpiped (NRestarts=1)" wait_until 60 "a restart" restarted
diag "restarted $(($(date +%s) - t0)) s after SIGSTOP (WatchdogSec=3s)"
check "the journal names the watchdog" journal_has "Watchdog timeout"

# ------------------------------------------------------- broken config
printf 'bogus_key = 1\n' >> "$TREE$CONF"
bad_line=$(wc -l < "$TREE$CONF")
t0=$(date +%s)
if C systemctl restart zpiped.service > /dev/null 2>&1; then
    not_ok "systemctl restart with a broken config fails"
else
    ok "systemctl restart with a broken config fails, in $(($(date +%s) - t0)) s"
fi
check "it failed fast (within 10 s)" test $(($(date +%s) - t0)) -le 10
check "the journal has $CONF:$bad_line:" wait_until 10 "the error in the journal" journal_has "$CONF:$bad_line:"
C systemctl stop zpiped.service > /dev/null 2>&1

diag "the real-systemd test took $(($(date +%s) - t_start)) s"
done_testing
