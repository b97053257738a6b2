#!/bin/sh
# 010: config errors are reported as FILE:LINE: message by both `zpiped -t -c F`
# and `zpiped -c F`, exit non-zero, and bind nothing; valid configs pass -t;
# --help and --version work.
. "$(dirname "$0")/lib.sh"
ZP_NOTIFY_OPTIONAL=1
setup

# Every case file starts with these 10 lines (a comment and blank lines, so
# the count is not trivially the number of key lines); the case's own lines
# start at line 11.
prefix() {
    cat <<EOF
; zpiped config for 010-config-errors

[daemon]
spool_dir = $ZP_TMP/spool
control_socket = $ZP_TMP/ctl.sock
[input]
endpoints = $ZP_EP

[file]
path = $ZP_SINK
EOF
}

# nothing_created: no trace of a daemon that got as far as binding or opening.
nothing_created() {
    for _nf in "$ZP_TMP/in0" "$ZP_SINK" "$ZP_TMP/ctl.sock"; do
        if [ -e "$_nf" ]; then
            diag "$_nf exists: the daemon bound or opened something"
            rm -f "$_nf"
            return 1
        fi
    done
    return 0
}

# has_error OUT LOCATION [WORD]: OUT holds "LOCATION" (e.g. F:12:) and WORD.
has_error() {
    if ! grep -qF -- "$2" "$1"; then
        diag "expected '$2' in the output; got:"
        diag "$(head -n 5 "$1")"
        return 1
    fi
    if [ -n "${3:-}" ] && ! grep -F -- "$2" "$1" | grep -qi -- "$3"; then
        diag "expected the message to mention '$3'; got:"
        diag "$(grep -F -- "$2" "$1" | head -n 3)"
        return 1
    fi
    return 0
}

# expect_error NAME LINES WORD CASE_LINE...: write the prefix and the case
# lines to a file; both `zpiped -t -c F` and `zpiped -c F` must exit
# non-zero saying "F:N:" for one N of LINES (a space-separated list), the
# message mentioning WORD (may be empty), and leave nothing bound or created.
expect_error() {
    _name=$1
    _lines=$2
    _word=$3
    shift 3
    _f=$ZP_TMP/$_name.ini
    { prefix; printf '%s\n' "$@"; } > "$_f"
    for _how in "-t -c" "-c"; do
        # shellcheck disable=SC2086
        timeout -k 5 "$(scaled 30)" env -u NOTIFY_SOCKET "$ZPIPED" $_how "$_f" \
            > "$ZP_TMP/out" 2> "$ZP_TMP/err" < /dev/null
        _st=$?
        _good=0
        if [ "$_st" -eq 0 ] || [ "$_st" -eq 124 ] || [ "$_st" -gt 128 ]; then
            diag "zpiped $_how $_f: exit status $_st (expected a non-zero exit)"
            diag_file "$ZP_TMP/err" 5
            _good=1
        else
            _found=
            for _n in $_lines; do
                if grep -qF -- "$_f:$_n: " "$ZP_TMP/err"; then
                    _found=$_n
                fi
            done
            if [ -z "$_found" ]; then
                diag "zpiped $_how: expected '$_f:N: ...' on stderr with N in {$_lines}; got:"
                diag "$(head -n 5 "$ZP_TMP/err")"
                _good=1
            elif ! has_error "$ZP_TMP/err" "$_f:$_found: " "$_word"; then
                _good=1
            fi
        fi
        nothing_created || _good=1
        check_log "$ZP_TMP/err" "$_f:[0-9]+: " || _good=1
        if [ "$_good" -eq 0 ]; then
            ok "$_name: zpiped $_how F reports F:{$_lines}: and exits $_st"
        else
            not_ok "$_name: zpiped $_how F reports F:{$_lines}: and exits non-zero"
        fi
    done
}

long=$(printf '%0250d' 0 | tr 0 x)
ok_long=$(printf '%0196d' 0 | tr 0 y)

# An unknown section may be reported on its header line or its first key's.
expect_error unknown-section "11 12" "bogus" "[bogus]" "key = 1"
expect_error unknown-section-later "13 14" "bogus" "[queue]" "capacity = 10" "[bogus]" "key = 1"
expect_error unknown-key 12 "colour" "[input]" "colour = blue"
expect_error unknown-key-2 13 "max_msg_size" "[input]" "threads = 1" "max_msg_size = 10"
expect_error duration-suffix 12 "10x" "[daemon]" "stats_interval = 10x"
expect_error duration-negative 12 "" "[daemon]" "drain_timeout = -1s"
expect_error duration-empty 12 "" "[daemon]" "drain_input ="
expect_error duration-fraction 12 "" "[daemon]" "drain_input = 1.5s"
expect_error size-suffix 12 "12T" "[queue]" "max_bytes = 12T"
expect_error size-fraction 12 "" "[input]" "max_message_size = 1.5M"
expect_error size-lowercase-word 12 "" "[input]" "max_message_size = 1MB"
expect_error enum-mode 12 "push" "[input]" "mode = push"
expect_error enum-sink 12 "kafka" "[output]" "sink = kafka"
expect_error enum-format 11 "json" "format = json"
expect_error enum-fsync 11 "sometimes" "fsync = sometimes"
expect_error enum-log-level 12 "verbose" "[daemon]" "log_level = verbose"
expect_error count-zero 12 "" "[queue]" "capacity = 0"
expect_error count-negative 12 "" "[output]" "threads = -2"
expect_error uint-word 12 "" "[input]" "rcvhwm = many"
expect_error number-overflow 12 "" "[queue]" "capacity = 99999999999999999999999"
expect_error syntax 12 "" "[output]" "this line has no equals sign"
expect_error long-line 12 "long" "[output]" "; $long"
expect_error long-value 12 "long" "[output]" "batch = 1 ; $long"
expect_error duplicate-key 13 "" "[output]" "batch = 1" "batch = 2"
expect_error threads-over-endpoints 12 "threads" "[input]" "threads = 2"

# A key before any section (the prefix would give it a section: own file).
f=$ZP_TMP/no-section.ini
{ printf '; comment\n\nstats_interval = 1s\n'; prefix; } > "$f"
"$ZPIPED" -t -c "$f" > "$ZP_TMP/out" 2> "$ZP_TMP/err" < /dev/null
st=$?
if [ "$st" -ne 0 ] && grep -qF "$f:3: " "$ZP_TMP/err"; then
    ok "key outside any section: F:3: reported, exit $st"
else
    not_ok "key outside any section: expected F:3: and a non-zero exit, got $st"
    diag_file "$ZP_TMP/err" 5
fi

# A missing file: non-zero, the message names the file.
"$ZPIPED" -t -c "$ZP_TMP/does-not-exist.ini" > "$ZP_TMP/out" 2> "$ZP_TMP/err" < /dev/null
st=$?
if [ "$st" -ne 0 ] && grep -qF "$ZP_TMP/does-not-exist.ini" "$ZP_TMP/err"; then
    ok "missing config file: exit $st, named in the message"
else
    not_ok "missing config file: exit $st"
    diag_file "$ZP_TMP/err" 5
fi

# Valid configs: -t exits 0 and creates nothing.
write_config "$ZP_CONF"
"$ZPIPED" -t -c "$ZP_CONF" > "$ZP_TMP/out" 2> "$ZP_TMP/err" < /dev/null
st=$?
if [ "$st" -eq 0 ] && nothing_created; then
    ok "-t on a full valid config exits 0 and binds nothing"
else
    not_ok "-t on a full valid config: exit $st"
    diag_file "$ZP_TMP/err" 5
fi

: > "$ZP_TMP/empty.ini"
"$ZPIPED" -t -c "$ZP_TMP/empty.ini" > "$ZP_TMP/out" 2> "$ZP_TMP/err" < /dev/null
st=$?
if [ "$st" -eq 0 ]; then
    ok "-t on an empty config (all defaults) exits 0"
else
    not_ok "-t on an empty config: exit $st"
    diag_file "$ZP_TMP/err" 5
fi

# 196 + "; " = 198 bytes, 199 with the newline: the longest line allowed.
{ prefix; printf '; %s\n[output]\nbatch = 16 ; inline comment\n' "$ok_long"; } > "$ZP_TMP/longok.ini"
"$ZPIPED" -t -c "$ZP_TMP/longok.ini" > "$ZP_TMP/out" 2> "$ZP_TMP/err" < /dev/null
st=$?
if [ "$st" -eq 0 ]; then
    ok "-t accepts a 198-byte line, a reopened section and an inline comment"
else
    not_ok "-t on a config with a 198-byte line: exit $st"
    diag_file "$ZP_TMP/err" 5
fi

# The contrast to "binds nothing": a good config does bind, and stops cleanly.
if [ "$zp_has_notify" != 1 ]; then
    skip "built without libsystemd: no READY=1"
    skip "built without libsystemd"
    skip "built without libsystemd"
elif start_zpiped; then
    if [ -S "$ZP_TMP/in0" ]; then
        ok "a valid config starts: READY=1 and the ipc endpoint is bound"
    else
        not_ok "READY=1 but $ZP_TMP/in0 is not a socket"
    fi
    stop_zpiped
    st=$?
    check "SIGTERM on an idle daemon exits 0 (status $st)" test "$st" -eq 0
    check "no unexpected lines in the log" check_log
    # libzmq 4.3 leaves a named ipc socket file behind at close.
    rm -f "$ZP_TMP/in0" "$ZP_SINK" "$ZP_TMP/ctl.sock"
else
    not_ok "a valid config starts"
    skip "daemon did not start"
    skip "daemon did not start"
fi

# --help, --version, a bad option.
"$ZPIPED" --help > "$ZP_TMP/out" 2> "$ZP_TMP/err" < /dev/null
st=$?
if [ "$st" -eq 0 ] && grep -q -- '-c' "$ZP_TMP/out" && grep -q 'max_message_size' "$ZP_TMP/out"; then
    ok "--help exits 0 and lists the options and config keys on stdout"
else
    not_ok "--help: exit $st"
    diag_file "$ZP_TMP/out" 5
fi

"$ZPIPED" --version > "$ZP_TMP/out" 2> "$ZP_TMP/err" < /dev/null
st=$?
if [ "$st" -eq 0 ] && [ "$(cat "$ZP_TMP/out")" = "zpiped 0.1.0" ]; then
    ok "--version prints 'zpiped 0.1.0' and exits 0"
else
    not_ok "--version: exit $st, output '$(cat "$ZP_TMP/out")'"
fi

"$ZPIPED" --no-such-option > "$ZP_TMP/out" 2> "$ZP_TMP/err" < /dev/null
st=$?
if [ "$st" -ne 0 ] && [ -s "$ZP_TMP/err" ] && nothing_created; then
    ok "an unknown option exits $st with a message on stderr"
else
    not_ok "an unknown option: exit $st"
fi

done_testing
