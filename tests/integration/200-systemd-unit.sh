#!/bin/sh
# 200: make install lays everything out (DESTDIR), keeps an edited
# zpiped.ini, and make uninstall removes the rest; the man pages are clean
# for groff and man; the installed units (zpiped.service, zpiped.socket)
# pass "systemd-analyze verify" with no output at all (warnings count as
# failures), and the service scores at most 2.0 in "systemd-analyze
# security --offline=yes".
#
# Environment (from make check): MAKE, zp_sbindir, zp_bindir, zp_sysconfdir,
# zp_mandir, zp_unitdir (empty with --with-systemdsystemunitdir=no).
ZP_NOTIFY_OPTIONAL=1
. "$(dirname "$0")/lib.sh"
setup

MAX_EXPOSURE=2.0
D=$ZP_TMP/root
: "${MAKE:=make}"

if [ -z "${zp_sbindir:-}" ]; then
    echo "1..0 # SKIP not run by make check (install directories unknown)"
    exit 0
fi

# submake TARGET...: make in the build tree, outside make check's jobserver.
submake() {
    env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL $MAKE -s -C "$top_builddir" "$@" \
        DESTDIR="$D" > "$ZP_TMP/make.out" 2>&1 || {
        diag_file "$ZP_TMP/make.out"
        return 1
    }
}

check "make install DESTDIR=... succeeds" submake install

ini=$D$zp_sysconfdir/zpipe/zpiped.ini
lr=$D$zp_sysconfdir/logrotate.d/zpiped
unit=
socket_unit=
if [ -n "$zp_unitdir" ]; then
    unit=$D$zp_unitdir/zpiped.service
    socket_unit=$D$zp_unitdir/zpiped.socket
fi
check "zpiped in sbindir" test -x "$D$zp_sbindir/zpiped"
check "zpipe in bindir" test -x "$D$zp_bindir/zpipe"
check "zpiped.ini in sysconfdir/zpipe" cmp -s "$top_srcdir/conf/zpiped.ini" "$ini"
check "logrotate snippet in sysconfdir/logrotate.d" \
    cmp -s "$top_srcdir/conf/zpiped.logrotate" "$lr"
check "the installed zpiped.ini is valid (zpiped -t)" sh -c '"$1" -t -c "$2" > /dev/null' - "$D$zp_sbindir/zpiped" "$ini"
for m in man8/zpiped.8 man5/zpiped.ini.5 man1/zpipe.1; do
    check "man page $m installed" test -f "$D$zp_mandir/$m"
done
if [ -n "$unit" ]; then
    check "unit installed in the systemd unit directory" test -f "$unit"
    check "unit has no @variable@ left" sh -c '! grep -q "@[a-z]*@" "$1"' - "$unit"
    check "unit starts $zp_sbindir/zpiped -c $zp_sysconfdir/zpipe/zpiped.ini" \
        grep -qx "ExecStart=$zp_sbindir/zpiped -c $zp_sysconfdir/zpipe/zpiped.ini" "$unit"
    check "unit sets LimitNOFILE= (one descriptor per input connection)" \
        grep -q '^LimitNOFILE=[0-9]' "$unit"
    check "zpiped.socket installed next to it" test -f "$socket_unit"
    # The socket unit listens where the shipped config's input is.
    ep=$(sed -n 's/^endpoints *= *\([^ ;]*\).*/\1/p' "$ini" | head -n 1)
    check "zpiped.socket listens on the default input endpoint ($ep)" \
        grep -qx "ListenStream=${ep#tcp://}" "$socket_unit"
else
    skip "configured --with-systemdsystemunitdir=no: no unit installed"
fi

# ----------------------------------------------------------- man pages
# groff_clean FILE: no warning from groff -ww nor from man --warnings.
man_clean() {
    groff -ww -man -z "$1" > "$ZP_TMP/groff.out" 2>&1 &&
        MANWIDTH=80 man --warnings -l "$1" 2>> "$ZP_TMP/groff.out" > /dev/null &&
        [ ! -s "$ZP_TMP/groff.out" ] || {
        diag_file "$ZP_TMP/groff.out"
        return 1
    }
}
for m in man8/zpiped.8 man5/zpiped.ini.5 man1/zpipe.1; do
    if command -v groff > /dev/null 2>&1 && command -v man > /dev/null 2>&1; then
        check "$m: groff -ww and man --warnings are silent" man_clean "$D$zp_mandir/$m"
    else
        skip "groff or man not installed"
    fi
done

# -------------------------------------------------------- systemd-analyze
if [ -z "$unit" ]; then
    skip "no unit: systemd-analyze verify zpiped.service"
    skip "no unit: systemd-analyze verify zpiped.socket"
    skip "no unit: systemd-analyze security"
elif ! command -v systemd-analyze > /dev/null 2>&1; then
    skip "systemd-analyze not installed: verify zpiped.service"
    skip "systemd-analyze not installed: verify zpiped.socket"
    skip "systemd-analyze not installed: security"
else
    # verify wants the Exec paths to exist: point them into DESTDIR.  The
    # Documentation= man pages are looked up in DESTDIR's man directory.
    mkdir "$ZP_TMP/unit"
    sed -e "s|^\(Exec[A-Za-z]*=[-@:+!]*\)$zp_sbindir/|\1$D$zp_sbindir/|" \
        "$unit" > "$ZP_TMP/unit/zpiped.service"
    cp "$socket_unit" "$ZP_TMP/unit/zpiped.socket"
    # verify_clean UNIT: systemd-analyze verify prints nothing.  The socket
    # unit is checked with its service next to it, as installed.
    verify_clean() {
        MANPATH=$D$zp_mandir systemd-analyze verify "$ZP_TMP/unit/$1" \
            > "$ZP_TMP/verify.out" 2>&1 && [ ! -s "$ZP_TMP/verify.out" ] || {
            diag_file "$ZP_TMP/verify.out"
            return 1
        }
    }
    check "systemd-analyze verify zpiped.service: no errors, no warnings" \
        verify_clean zpiped.service
    check "systemd-analyze verify zpiped.socket: no errors, no warnings" \
        verify_clean zpiped.socket

    systemd-analyze security --offline=yes "$ZP_TMP/unit/zpiped.service" \
        > "$ZP_TMP/security.out" 2>&1
    score=$(sed -n 's/.*Overall exposure level for zpiped.service: \([0-9.]*\).*/\1/p' \
        "$ZP_TMP/security.out")
    if [ -n "$score" ] && awk -v s="$score" -v m="$MAX_EXPOSURE" 'BEGIN { exit !(s <= m) }'; then
        ok "systemd-analyze security: exposure $score (at most $MAX_EXPOSURE)"
    else
        diag_file "$ZP_TMP/security.out"
        not_ok "systemd-analyze security: exposure '${score}' (at most $MAX_EXPOSURE)"
    fi
fi

# ------------------------------------------------- reinstall, uninstall
echo "; edited" >> "$ini"
cp "$ini" "$ZP_TMP/edited.ini"
check "make install again succeeds" submake install
check "an edited zpiped.ini is kept by make install" cmp -s "$ZP_TMP/edited.ini" "$ini"
check "make uninstall succeeds" submake uninstall
check "make uninstall keeps the edited zpiped.ini" cmp -s "$ZP_TMP/edited.ini" "$ini"
left=$(find "$D" -type f ! -path "$ini" | sed "s|^$D||")
check "make uninstall removes everything else" test -z "$left"
[ -z "$left" ] || diag "left behind: $left"

done_testing
