#!/bin/sh
# 212: the Debian packages under a real systemd.  scripts/deb builds zpiped
# and zpipe from this source tree (lintian must pass), and again as a newer
# version (scripts/deb -V, a changelog entry in the build's copy only); a
# Debian 12 container (tests/helpers/nspawn.sh, with its own network, so the
# packaged default endpoint tcp://127.0.0.1:5555 is its own) installs them
# with "apt install ./...deb" and checks:
#
#   - after install zpiped.service is enabled and running, unprivileged, and
#     a message pushed with the packaged zpipe arrives in the sink;
#   - the conffile /etc/zpipe/zpiped.ini, edited to router mode, is kept
#     by a reinstall of the same version and by the upgrade;
#   - the reinstall and the upgrade restart zpiped while a client in router
#     mode keeps sending (a batch not all answered OK is sent again): every
#     message answered OK is in the sink, the old zpiped drained (its
#     accounting line, no kill, no failed unit), a new one runs;
#   - apt purge leaves no file (compared with the tree before the install),
#     no user or group, no unit, no process behind.
#
# Root only; skipped without debootstrap, systemd-nspawn, nsenter or
# dpkg-buildpackage, in sanitizer builds (as 210), without debian/ (a dist
# tarball, as in make distcheck), and when the container does not boot here.
ZP_NOTIFY_OPTIONAL=1
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/../helpers/nspawn.sh"

nspawn_require
command -v dpkg-buildpackage > /dev/null 2>&1 || skip_all "dpkg-buildpackage not installed"
[ -z "${zp_sanitizer:-}" ] || skip_all "sanitizer build: the package is built without them"
[ -d "$top_srcdir/debian" ] || skip_all "no debian/ in $top_srcdir (a dist tarball)"

t_start=$(date +%s)
prepare_tree || skip_all "no Debian $NSPAWN_SUITE tree (see the diagnostics above)"
setup

# ------------------------------------------------------------------ build
# build_debs DIR [SCRIPTS_DEB_OPTION...]: scripts/deb in ZP_TMP/deb (its
# configured dist build reused by the second call), the two packages copied
# to DIR; sets DEBS to their paths in the container, under /root.
W=$ZP_TMP/deb
build_debs() {
    _bd_dir=$1
    shift
    env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL DEB_BUILD_OPTIONS="nocheck parallel=2" \
        "$top_srcdir/scripts/deb" -o "$W" "$@" > "$ZP_TMP/scripts-deb.out" 2>&1 || {
        diag_file "$ZP_TMP/scripts-deb.out"
        return 1
    }
    mkdir -p "$_bd_dir" && cp "$W"/zpiped_*.deb "$W"/zpipe_*.deb "$_bd_dir/" || return 1
    DEBS=
    for _bd_f in "$_bd_dir"/*.deb; do
        DEBS="$DEBS /root/${_bd_dir##*/}/${_bd_f##*/}"
    done
}
t0=$(date +%s)
build_debs "$ZP_TMP/v1" || bail "scripts/deb failed"
ok "scripts/deb built$DEBS in $(($(date +%s) - t0)) s, and lintian passed"
sed -n 's/^[EWI]: /lintian: &/p' "$ZP_TMP/scripts-deb.out" | while read -r l; do diag "$l"; done
DEBS1=$DEBS
V1=$(dpkg-deb -f "$ZP_TMP"/v1/zpiped_*.deb Version)
V2=$V1+zpt1
t0=$(date +%s)
build_debs "$ZP_TMP/v2" -V "$V2" --no-lintian || bail "scripts/deb -V $V2 failed"
DEBS2=$DEBS
check "scripts/deb -V $V2 built$DEBS2 in $(($(date +%s) - t0)) s" \
    test "$(dpkg-deb -f "$ZP_TMP"/v2/zpiped_*.deb Version)" = "$V2"

# -------------------------------------------------------------- container
TREE=$ZP_TMP/tree
t0=$(date +%s)
cp -a "$TREE_CACHE" "$TREE" || bail "copying the cached tree failed"
rm -f "$TREE/.zpipe-test-complete"
cp -a "$ZP_TMP/v1" "$ZP_TMP/v2" "$TREE/root/" || bail "copying the packages failed"
if ! nspawn_boot "$TREE" zpipe-deb-test --private-network; then
    echo "1..0 # SKIP the container did not boot here (see the diagnostics)"
    exit 0
fi
ok "container booted in $(($(date +%s) - t0)) s (state $(C systemctl is-system-running))"

CONF=/etc/zpipe/zpiped.ini
EP=tcp://127.0.0.1:5555
SINK=$TREE/var/lib/private/zpipe/messages.log

# snapshot FILE: the paths in the tree, but for those that change anyway
# (logs and the journal, apt's and dpkg's own state and caches, the systemd
# timers' stamps, this test's packages in /root).
snapshot() {
    (cd "$TREE" && find . \( -path ./proc -o -path ./sys -o -path ./dev -o -path ./run \
        -o -path ./tmp -o -path ./var/tmp -o -path ./var/log -o -path ./var/cache \
        -o -path ./var/lib/apt -o -path ./var/lib/dpkg -o -path ./var/lib/systemd/timers \
        -o -path ./root \) -prune -o -print) | sort > "$1"
}
snapshot "$ZP_TMP/files.before"
cat "$TREE/etc/passwd" "$TREE/etc/group" > "$ZP_TMP/users.before"

prop() {
    C systemctl show -p "$1" --value zpiped.service
}
# apt_in LOG ARG...: apt ARG... in the container, non-interactive, its
# output in ZP_TMP/LOG (shown if it fails).
apt_in() {
    _ai_log=$ZP_TMP/$1
    shift
    C env DEBIAN_FRONTEND=noninteractive apt "$@" < /dev/null > "$_ai_log" 2>&1 || {
        diag_file "$_ai_log"
        return 1
    }
}
running() {
    [ "$(prop ActiveState)/$(prop SubState)" = active/running ] && [ "$(prop MainPID)" != 0 ]
}
sink_has() {
    grep -qx -- "$1" "$SINK" 2> /dev/null
}

# ---------------------------------------------------------------- install
# shellcheck disable=SC2086 # DEBS1: a list of paths
check "apt install$DEBS1" apt_in install.out install -y $DEBS1
check "zpiped.service is enabled ($(C systemctl is-enabled zpiped.service))" \
    test "$(C systemctl is-enabled zpiped.service)" = enabled
check "and running after the install" wait_until 30 "zpiped.service to run" running
check "zpiped.socket is installed, disabled ($(C systemctl is-enabled zpiped.socket))" \
    test "$(C systemctl is-enabled zpiped.socket)" = disabled
main_user=$(C ps -o user= -p "$(prop MainPID)")
check "zpiped runs unprivileged (DynamicUser): user $main_user" test -n "$main_user" -a "$main_user" != root
check "the packaged zpipe pushes a message to the default endpoint" \
    C zpipe push -t 10 -e "$EP" installed-hello
check "it arrives in /var/lib/zpipe/messages.log" \
    wait_until 30 "the message in the sink" sink_has installed-hello

# The administrator's edit: router mode, so that every message a client sent
# is answered OK, and a comment to find it by.
C sed -i -e 's/^mode = pull /mode = router /' -e '1i ; edited by test 212' "$CONF"
conf_edited() {
    C grep -q '^; edited by test 212' "$CONF" && C grep -q '^mode = router ' "$CONF" &&
        ! C sh -c 'ls /etc/zpipe | grep -q dpkg-'
}
check "the conffile is edited (router mode)" conf_edited
check "systemctl restart zpiped takes the edit" C systemctl restart zpiped.service
check "a message in router mode is answered OK" C zpipe push -r -t 10 -e "$EP" router-hello

# ------------------------------------------------- reinstall and upgrade
# across NAME PREFIX APT_ARG...: apt APT_ARG... while a client in the
# container sends in router mode; checks that zpiped was restarted with a
# drain, that every message answered OK is in the sink, and that the edited
# conffile is kept.
across() {
    _ac_name=$1
    _ac_prefix=$2
    shift 2
    _ac_failed=$tap_failed
    R=$ZP_TMP/$_ac_name
    mkdir "$R"
    router_stream "$R" "$_ac_prefix" C zpipe push -r -t 3 -e "$EP" &
    _ac_stream=$!
    zp_bg_pids="$zp_bg_pids $_ac_stream"
    check "$_ac_name: the client's stream is flowing" \
        wait_until 60 "3 batches" stream_batches_at_least "$R" 3
    _ac_old=$(prop MainPID)
    _ac_since=$(C date '+%Y-%m-%d %H:%M:%S')
    _ac_before=$(cat "$R/batches")
    _ac_t0=$(date +%s)
    check "$_ac_name: apt $* while the client sends" apt_in "$_ac_name.out" "$@"
    diag "$_ac_name: apt took $(($(date +%s) - _ac_t0)) s"
    check "$_ac_name: a new zpiped runs" \
        sh -c '[ "$1" != "$2" ] && [ "$2" != 0 ]' - "$_ac_old" "$(prop MainPID)"
    check "$_ac_name: the stream goes on" \
        wait_until 60 "3 more batches" stream_batches_at_least "$R" $((_ac_before + 3))
    : > "$R/stop"
    wait_pid "$_ac_stream" 120 > /dev/null
    check "$_ac_name: no batch was given up" test ! -s "$R/failed"
    check "$_ac_name: the last batch arrives" \
        wait_until 30 "the last batch" sink_has "$_ac_prefix$(cat "$R/batches").200"
    grep "^$_ac_prefix" "$SINK" | sort -u > "$R/got"
    sort -u "$R/sent" > "$R/exp"
    _ac_missing=$(comm -23 "$R/exp" "$R/got" | wc -l)
    _ac_doubled=$(grep "^$_ac_prefix" "$SINK" | sort | uniq -d | wc -l)
    check "$_ac_name: none of the $(wc -l < "$R/exp") messages answered OK is missing (missing $_ac_missing; sent again after a dropped connection: $(cat "$R/retried" 2> /dev/null | wc -l) batches, doubled $_ac_doubled)" \
        test "$_ac_missing" = 0
    C journalctl -q --since "$_ac_since" -u zpiped.service -o cat --no-pager > "$R/journal"
    C journalctl -q --since "$_ac_since" _PID="$_ac_old" -o cat --no-pager > "$R/old.journal"
    check "$_ac_name: the old zpiped drained on SIGTERM" grep -q 'SIGTERM: draining' "$R/old.journal"
    _ac_acct=$(grep '^accounting: received' "$R/old.journal" | tail -n 1)
    check "$_ac_name: and exited with its accounting: $_ac_acct" test -n "$_ac_acct"
    check "$_ac_name: nothing lost, killed or failed in the journal" \
        sh -c '! grep -E "messages lost|code=killed|SIGKILL|Killing|Failed with result|timed out" "$1"' \
        - "$R/journal"
    if [ "$tap_failed" -ne "$_ac_failed" ]; then
        diag_file "$R/journal" 20
    fi
    check "$_ac_name: the edited conffile is kept, no .dpkg-* file beside it" conf_edited
}

# shellcheck disable=SC2086 # DEBS1: a list of paths
across reinstall i install -y --reinstall $DEBS1
check "reinstall: version $V1 installed" \
    test "$(C dpkg-query -W -f '${Version}' zpiped)" = "$V1"
# shellcheck disable=SC2086 # DEBS2: a list of paths
across upgrade u install -y $DEBS2
check "upgrade: version $V2 installed" \
    test "$(C dpkg-query -W -f '${Version}' zpiped)/$(C dpkg-query -W -f '${Version}' zpipe)" = "$V2/$V2"

# ------------------------------------------------------------------ purge
check "apt purge zpiped zpipe" apt_in purge.out purge -y zpiped zpipe
check "no zpiped process is left" sh -c '! nsenter -t "$1" -a pgrep -x zpiped' - "$pid1"
C systemctl daemon-reload
check "no unit is left (zpiped.service: $(prop LoadState), zpiped.socket: $(C systemctl show -p LoadState --value zpiped.socket))" \
    test "$(prop LoadState)/$(C systemctl show -p LoadState --value zpiped.socket)" = not-found/not-found
check "no package is left" sh -c '! nsenter -t "$1" -a dpkg -l zpiped zpipe 2> /dev/null | grep -q "^[a-z][a-z] "' - "$pid1"
snapshot "$ZP_TMP/files.after"
diff "$ZP_TMP/files.before" "$ZP_TMP/files.after" > "$ZP_TMP/files.diff"
check "no file is left: the tree has the same paths as before the install ($(grep -c '^[<>]' "$ZP_TMP/files.diff") differ)" \
    test ! -s "$ZP_TMP/files.diff"
[ -s "$ZP_TMP/files.diff" ] && diag_file "$ZP_TMP/files.diff"
cat "$TREE/etc/passwd" "$TREE/etc/group" > "$ZP_TMP/users.after"
check "no user or group is left: /etc/passwd and /etc/group as before" \
    cmp -s "$ZP_TMP/users.before" "$ZP_TMP/users.after"

diag "the package test took $(($(date +%s) - t_start)) s"
done_testing
