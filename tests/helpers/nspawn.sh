# nspawn.sh - a Debian 12 container under a real systemd, for the integration
# tests that need one (210, 212).  Sourced after lib.sh; POSIX sh.
#
# A minimal Debian tree (debootstrap, from the mirror in this machine's apt
# sources) is built once and cached in ZP_NSPAWN_CACHE (default
# /var/cache/zpipe-test); each test boots its own copy of it with
# systemd-nspawn and drives it with "nsenter -t <container pid 1> -a ..." (C).
#
#   nspawn_require             skip the test unless root with the tools
#   prepare_tree || ...        TREE_CACHE: the cached tree, built if missing
#   cp -a "$TREE_CACHE" DIR    the test's copy, changed as the test needs
#   nspawn_boot DIR NAME [ARG...] || ...   boot it (ARGs go to systemd-nspawn)
#   C systemctl ...            run a command in the container
#
# nspawn_boot sets an EXIT trap that powers the container off, then runs
# lib.sh's zp_cleanup.

NSPAWN_SUITE=bookworm
# The runtime libraries of zpiped and zpipe: 210 installs a build with make
# install, and 212 installs the packages with apt, without any apt source.
NSPAWN_PACKAGES=systemd,systemd-sysv,dbus,procps,libuv1,libzmq5,libinih1,libsystemd0,libmicrohttpd12,libsqlite3-0,libpq5,libjansson4,libnats3.4
: "${ZP_NSPAWN_CACHE:=/var/cache/zpipe-test}"

nspawn_pid=
pid1=

# skip_all REASON: the whole test is skipped.
skip_all() {
    echo "1..0 # SKIP $*"
    exit 0
}

# nspawn_require: skip unless root with debootstrap, systemd-nspawn, nsenter
# and flock (scripts/test installs them).
nspawn_require() {
    [ "$(id -u)" = 0 ] || skip_all "not root"
    for _ns_tool in debootstrap systemd-nspawn nsenter flock; do
        command -v "$_ns_tool" > /dev/null 2>&1 || skip_all "$_ns_tool not installed"
    done
}

# apt_mirror SUITE: the first URI of this machine's apt sources that serves
# SUITE (deb822 .sources files, then one-line sources.list files).
apt_mirror() {
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        # One stanza per paragraph; print the URIs of one whose Types has deb
        # and whose Suites has SUITE.
        awk -v suite="$1" '
            function flush() {
                if (is_deb && has_suite && uri != "" && !done) { print uri; done = 1 }
                is_deb = has_suite = 0; uri = ""
            }
            /^[ \t]*$/ { flush(); next }
            /^#/ { next }
            tolower($1) == "types:" { for (i = 2; i <= NF; i++) if ($i == "deb") is_deb = 1 }
            tolower($1) == "uris:" { uri = $2 }
            tolower($1) == "suites:" { for (i = 2; i <= NF; i++) if ($i == suite) has_suite = 1 }
            END { flush() }
        ' "$f"
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] || continue
        # deb [options] URI SUITE COMPONENT...
        sed -e 's/\[[^]]*\]//' "$f" | awk -v suite="$1" '$1 == "deb" && $3 == suite { print $2 }'
    done
}

# tree_ok DIR: DIR is a finished tree (its stamp is written last).
tree_ok() {
    [ -f "$1/.zpipe-test-complete" ] && [ -x "$1/lib/systemd/systemd" ] &&
        [ -x "$1/bin/systemctl" ]
}

# prepare_tree: set TREE_CACHE to a finished cached tree, building it when
# missing or broken (a run killed half way leaves no stamp).  Serialised by a
# lock, so two builds on one machine do not debootstrap the same tree.
prepare_tree() {
    key=$(printf '%s %s\n' "$NSPAWN_SUITE" "$NSPAWN_PACKAGES" | md5sum | cut -c1-12)
    TREE_CACHE=$ZP_NSPAWN_CACHE/$NSPAWN_SUITE-$key
    mkdir -p "$ZP_NSPAWN_CACHE" || return 1
    exec 9> "$ZP_NSPAWN_CACHE/lock"
    flock 9 || return 1
    if tree_ok "$TREE_CACHE"; then
        exec 9>&-
        return 0
    fi
    mirror=$(apt_mirror "$NSPAWN_SUITE" | head -n 1)
    if [ -z "$mirror" ]; then
        diag "no apt source for $NSPAWN_SUITE in /etc/apt"
        exec 9>&-
        return 1
    fi
    diag "debootstrap $NSPAWN_SUITE from $mirror into $TREE_CACHE (cached for later runs)"
    rm -rf "$TREE_CACHE" "$TREE_CACHE.new"
    t0=$(date +%s)
    if ! debootstrap --variant=minbase --include="$NSPAWN_PACKAGES" "$NSPAWN_SUITE" \
        "$TREE_CACHE.new" "$mirror" > "$ZP_NSPAWN_CACHE/debootstrap.log" 2>&1; then
        diag "debootstrap failed; the end of $ZP_NSPAWN_CACHE/debootstrap.log:"
        diag "$(tail -n 20 "$ZP_NSPAWN_CACHE/debootstrap.log")"
        rm -rf "$TREE_CACHE.new"
        exec 9>&-
        return 1
    fi
    # Boot quickly and quietly: nothing the test does not need.
    rm -f "$TREE_CACHE.new/etc/machine-id"
    : > "$TREE_CACHE.new/.zpipe-test-complete"
    mv "$TREE_CACHE.new" "$TREE_CACHE"
    diag "debootstrap took $(($(date +%s) - t0)) s"
    exec 9>&-
    tree_ok "$TREE_CACHE"
}

# nspawn_cleanup: power the container off (kill it after a deadline), then
# lib.sh's cleanup removes the temp dir with the tree copy.
nspawn_cleanup() {
    _n_rc=$?
    if [ -n "$nspawn_pid" ] && pid_alive "$nspawn_pid"; then
        if [ -n "$pid1" ]; then
            nsenter -t "$pid1" -a systemctl poweroff > /dev/null 2>&1
        fi
        if ! wait_until 30 "the container to power off" nspawn_gone; then
            [ -n "$pid1" ] && kill -KILL "$pid1" 2> /dev/null
            kill -KILL "$nspawn_pid" 2> /dev/null
        fi
        wait "$nspawn_pid" 2> /dev/null
    fi
    (exit "$_n_rc")
    zp_cleanup
}

nspawn_gone() {
    ! pid_alive "$nspawn_pid"
}

# find_pid1: the container's init, the child of systemd-nspawn.
find_pid1() {
    for _p in $(ps -o pid= --ppid "$nspawn_pid" 2> /dev/null); do
        if [ "$(cat "/proc/$_p/comm" 2> /dev/null)" = systemd ]; then
            pid1=$_p
            return 0
        fi
    done
    return 1
}

# C CMD [ARG...]: CMD in the container, in all of its namespaces.
C() {
    nsenter -t "$pid1" -a "$@"
}

booted() {
    pid_alive "$nspawn_pid" || return 1
    _st=$(C systemctl is-system-running 2> /dev/null)
    [ "$_st" = running ] || [ "$_st" = degraded ]
}

# nspawn_boot DIR NAME [ARG...]: boot the tree DIR as machine NAME (not
# registered, so two tests may boot at once), its console in
# $ZP_TMP/nspawn.log; ARGs go to systemd-nspawn.  Returns once systemd in it
# is running (or degraded, whose failed units are named), 1 if it did not
# boot; the EXIT trap powers it off.
nspawn_boot() {
    _ns_dir=$1
    _ns_name=$2
    shift 2
    trap nspawn_cleanup EXIT
    systemd-nspawn -q -b --register=no --keep-unit --console=passive \
        -M "$_ns_name" -D "$_ns_dir" "$@" > "$ZP_TMP/nspawn.log" 2>&1 &
    nspawn_pid=$!
    if ! wait_until 60 "the container's systemd" find_pid1 ||
        ! wait_until 120 "the container to boot" booted; then
        diag_file "$ZP_TMP/nspawn.log"
        return 1
    fi
    if [ "$_st" = degraded ]; then
        diag "failed units: $(C systemctl --failed --no-legend --plain | awk '{ print $1 }')"
    fi
    return 0
}

# router_stream DIR PREFIX CMD [ARG...]: until DIR/stop exists, push batches
# of 200 messages (PREFIX<batch>.<n>) with CMD, a zpipe push in router mode
# with a short timeout; a batch not all answered OK (its connection dropped
# by a restart) is pushed again, up to 10 times, so delivery is
# at-least-once.  DIR/sent collects the batches pushed, DIR/batches is the
# count, DIR/retried and DIR/failed name the batches pushed again and given
# up.
router_stream() {
    _rs_dir=$1
    _rs_prefix=$2
    shift 2
    _rs_b=0
    while [ ! -e "$_rs_dir/stop" ]; do
        _rs_b=$((_rs_b + 1))
        seq 1 200 | sed "s/^/$_rs_prefix$_rs_b./" > "$_rs_dir/batch"
        _rs_tries=0
        until "$@" < "$_rs_dir/batch" > /dev/null 2>> "$_rs_dir/push.err"; do
            _rs_tries=$((_rs_tries + 1))
            echo "$_rs_b" >> "$_rs_dir/retried"
            if [ "$_rs_tries" -ge 10 ]; then
                echo "$_rs_b" >> "$_rs_dir/failed"
                break
            fi
        done
        cat "$_rs_dir/batch" >> "$_rs_dir/sent"
        echo "$_rs_b" > "$_rs_dir/batches"
    done
}

# stream_batches_at_least DIR N: router_stream in DIR pushed N batches.
stream_batches_at_least() {
    [ "$(cat "$1/batches" 2> /dev/null || echo 0)" -ge "$2" ]
}
