# shellcheck shell=bash disable=SC2154 # $top: set by the script that sources it
# scripts/lib/bench-build.sh - which build scripts/bench, scripts/bench-compare
# and the scenarios of scripts/bench use (bash; needs $top, the source tree).

# bench_build_dir: that build directory, absolute: $ZPIPE_BUILD_DIR if set,
# else build/werror if it is configured, else build/bench.
bench_build_dir() {
    local d
    if [ -n "${ZPIPE_BUILD_DIR:-}" ]; then
        d=$ZPIPE_BUILD_DIR
    elif [ -f "$top/build/werror/Makefile" ]; then
        d=build/werror
    else
        d=build/bench
    fi
    case $d in
    /*) echo "$d" ;;
    *) echo "$top/$d" ;;
    esac
}

# bench_configure DIR: configure DIR (the default build/bench) unless it is;
# its log in build/bench-configure.log.
bench_configure() {
    [ ! -f "$1/Makefile" ] || return 0
    [ -x "$top/configure" ] || (cd "$top" && ./autogen.sh) || return 1
    mkdir -p "$1"
    (cd "$1" && "$top/configure") >"$top/build/bench-configure.log" 2>&1 || {
        printf 'scripts/bench: configure failed: see build/bench-configure.log\n' >&2
        return 1
    }
}
