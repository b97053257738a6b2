#!/bin/sh
# 280: CURVE inputs and the allow-list (input.curve_secret_key, curve_allow).
#
# 1. Config errors stop zpiped -t: curve_secret_key without curve_allow, a
#    secret key file group/world-readable, a malformed key in curve_allow,
#    a zmq.curve_server_key without its secret key, a missing key file.
# 2. A router input on tcp:// with CURVE and one allowed key (alice, made
#    by zpipe keygen): alice's 100 messages are stored.  A stranger's key
#    (mallory, on 20 zpipe bench connections), a NULL-mechanism client and 50 raw garbage TCP connections
#    store nothing and leave the daemon serving: alice's next 100 are
#    stored.  The refusals are counted (zpipe stats and its JSON, /metrics
#    when curl is there) and logged with the peer address, rate-limited: fewer lines than
#    refusals.
# 3. Interop: a key pair written by hand in czmq's zcert format is allowed
#    and used by zpipe push; a pyzmq client (when /usr/bin/python3 has zmq)
#    reads our keygen files with zmq.auth.load_certificate and is let in.
# 4. Allow-list change + SIGHUP: mallory's key added, alice's removed:
#    mallory now gets in, alice is refused.
# Afterwards the file holds exactly the messages of the allowed clients,
# the accounting balances and the log has no error.
. "$(dirname "$0")/lib.sh"
setup

TCP_GARBAGE=$top_builddir/tests/helpers/tcp_garbage
[ -x "$TCP_GARBAGE" ] || { echo "1..0 # SKIP $TCP_GARBAGE not built"; exit 0; }
K=$ZP_TMP/keys
ALLOW=$ZP_TMP/allow
mkdir "$K" "$ALLOW"
for name in server alice mallory; do
    "$ZPIPE" keygen "$K/$name" > /dev/null || bail "zpipe keygen $name failed"
done
ok "zpipe keygen made the server's, alice's and mallory's key pairs"
cp "$K/alice.key" "$ALLOW/"

# z85_of FILE: the public key in a zcert file.
z85_of() {
    sed -n 's/^    public-key = "\(.*\)"$/\1/p' "$1"
}

# ---- 1: config errors
# bad_config WHAT EXPECTED OVERRIDES...: zpiped -t refuses, saying EXPECTED.
bad_config() {
    _what=$1
    _want=$2
    shift 2
    write_config "$ZP_TMP/bad.ini" "$@"
    _out=$("$ZPIPED" -t -c "$ZP_TMP/bad.ini" 2>&1)
    _st=$?
    if [ "$_st" -ne 0 ] && printf '%s\n' "$_out" | grep -Fq "$_want"; then
        ok "config error: $_what"
    else
        not_ok "config error: $_what (status $_st)"
        diag "expected '$_want' in: $_out"
    fi
}
bad_config "curve_secret_key without curve_allow" "go together" \
    input.curve_secret_key="$K/server.key_secret"
cp "$K/server.key_secret" "$K/loose.key_secret"
chmod 0640 "$K/loose.key_secret"
bad_config "a group-readable secret key file" "mode 0640" \
    input.curve_secret_key="$K/loose.key_secret" input.curve_allow="$ALLOW"
mkdir "$ZP_TMP/badallow"
printf 'curve\n    public-key = "tooshort"\n' > "$ZP_TMP/badallow/broken.key"
bad_config "a malformed key in curve_allow" "broken.key:2: public-key is not 40 Z85" \
    input.curve_secret_key="$K/server.key_secret" input.curve_allow="$ZP_TMP/badallow"
bad_config "a public key file where the secret one goes" "no curve secret-key" \
    input.curve_secret_key="$K/server.key" input.curve_allow="$ALLOW"
bad_config "a missing key file" "No such file" \
    input.curve_secret_key="$K/nothere" input.curve_allow="$ALLOW"
bad_config "zmq.curve_server_key without zmq.curve_secret_key" "go together" \
    output.sink=zmq zmq.curve_server_key="$K/server.key"

# ---- 2: allowed, refused and hostile clients
port=$("$TCP_GARBAGE" freeport) || bail "no free port"
EP=tcp://127.0.0.1:$port
has_curl=0
set --
if command -v curl > /dev/null 2>&1; then
    has_curl=1
    mport=$("$TCP_GARBAGE" freeport) || bail "no free port"
    set -- daemon.metrics_listen="127.0.0.1:$mport"
fi
write_config "$ZP_CONF" input.endpoints="$EP" input.mode=router file.fsync=never \
    input.curve_secret_key="$K/server.key_secret" input.curve_allow="$ALLOW" "$@"
check "the CURVE config is valid (zpiped -t)" "$ZPIPED" -t -c "$ZP_CONF"
start_zpiped || bail "zpiped did not become ready"
ok "zpiped is ready with a CURVE input on $EP"
check "it logged the allow-list it read" grep -q "curve_allow $ALLOW: 1 key allowed" "$ZP_LOG"

# push NAME TIMEOUT PREFIX COUNT: send COUNT messages PREFIX1.. as NAME.
push() {
    seq 1 "$4" | sed "s/^/$3/" | "$ZPIPE" push -r -t "$2" -e "$EP" \
        --curve-server-key "$K/server.key" --curve-secret-key "$K/$1.key_secret" \
        2>> "$ZP_TMP/push.err"
}
: > "$ZP_TMP/expected"
expect() {
    seq 1 "$2" | sed "s/^/$1/" >> "$ZP_TMP/expected"
}

check "alice (allowed) gets OK for 100 messages" push alice 60s alice- 100
expect alice- 100
# 20 connections at once, so the refusals outnumber the log lines.
if "$ZPIPE" bench -r -c 20 -n 20 -t 3s -e "$EP" --curve-server-key "$K/server.key" \
    --curve-secret-key "$K/mallory.key_secret" > "$ZP_TMP/bench.out" 2>&1; then
    not_ok "mallory (not allowed) is refused"
else
    ok "mallory (not allowed) is refused on 20 connections: no reply within 3 s"
fi
if "$ZPIPE" push -r -t 3s -e "$EP" null-1 2>> "$ZP_TMP/push.err"; then
    not_ok "a NULL-mechanism client is refused"
else
    ok "a NULL-mechanism client is refused"
fi
bad=0
i=0
while [ $i -lt 5 ]; do
    for m in "random 1" "random 100" "random 70000" "sig" "truncated 5" "truncated 11" \
        "badversion" "badmech" "badcmd" "reset 20"; do
        # shellcheck disable=SC2086
        "$TCP_GARBAGE" ${m%% *} 127.0.0.1 "$port" ${m#* } 2>> "$ZP_TMP/garbage.err" ||
            bad=$((bad + 1))
    done
    i=$((i + 1))
done
check "50 garbage TCP connections were made" test "$bad" -eq 0
check "zpiped still runs" pid_alive "$zp_pid"
check "alice's next 100 messages get OK" push alice 60s alice2- 100
expect alice2- 100

refused=$(stats_field curve_refused)
check "stats counts mallory's 20 refusals (curve_refused = $refused)" \
    test "${refused:-0}" -ge 20
check "zpipe stats shows them" sh -c '"$1" stats -s "$2" | grep -Eq "^curve: +$3 connections refused"' \
    - "$ZPIPE" "$ZP_TMP/ctl.sock" "$refused"
MKEY=$(z85_of "$K/mallory.key")
check "the log names mallory's key and address" \
    grep -Fq "curve: refused a client from 127.0.0.1, key $MKEY: not in curve_allow" "$ZP_LOG"
lines=$(grep -c 'curve: refused a client' "$ZP_LOG")
check "the refusal lines are rate-limited ($lines lines for $refused refusals)" \
    test "$lines" -lt "$refused"
if [ "$has_curl" = 1 ]; then
    m=$(curl -sf --max-time "$(scaled 10)" "http://127.0.0.1:$mport/metrics" |
        sed -n 's/^zpipe_curve_refused_total \([0-9]*\)$/\1/p')
    check "/metrics has zpipe_curve_refused_total ($m)" test "${m:-0}" -ge "$refused"
else
    skip "/metrics: curl not installed"
fi

# ---- 3: interop with czmq's and pyzmq's key files
# A client key pair as czmq's zcert_save() writes it (the client pair of
# zmq_curve(7)): written by hand from the format, not by our code.
cat > "$K/czmq.key_secret" <<'EOF'
#   ****  Generated on 2015-06-01 10:00:00 by CZMQ  ****
#   ZeroMQ CURVE **Secret** Certificate
#   DO NOT PROVIDE THIS FILE TO OTHER USERS nor change its permissions.

metadata
    name = "czmq client"
curve
    public-key = "Yne@$w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{hID"
    secret-key = "D:)Q[IlAW!ahhC2ac:9*A}h:p?([4%wOTJ%JR%cs"
EOF
chmod 600 "$K/czmq.key_secret"
cat > "$ALLOW/czmq_client" <<'EOF'
#   ****  Generated on 2015-06-01 10:00:00 by CZMQ  ****
#   ZeroMQ CURVE Public Certificate
#   Exchange securely, or use a secure mechanism to verify the contents
#   of this file after exchange. Store public certificates in your home
#   directory, in the .curve subdirectory.

metadata
    name = "czmq client"
curve
    public-key = "Yne@$w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{hID"
EOF
kill -HUP "$zp_pid"
reloaded() {
    [ "$(grep -c "curve_allow $ALLOW: $1 key" "$ZP_LOG")" -ge "$2" ]
}
check "SIGHUP: the czmq client's public key file is read" wait_until 30 "2 keys" reloaded 2 1
check "a client with czmq's key files gets OK" push czmq 60s czmq- 3
expect czmq- 3

if /usr/bin/python3 -c 'import zmq.auth' 2> /dev/null; then
    /usr/bin/python3 - "$K" "$EP" > "$ZP_TMP/pyzmq.out" 2>&1 <<'EOF'
import sys, zmq, zmq.auth
keys, ep = sys.argv[1], sys.argv[2]
server_public, _ = zmq.auth.load_certificate(keys + "/server.key")
public, secret = zmq.auth.load_certificate(keys + "/alice.key_secret")
ctx = zmq.Context()
s = ctx.socket(zmq.DEALER)
s.curve_serverkey, s.curve_publickey, s.curve_secretkey = server_public, public, secret
s.linger = 0
s.rcvtimeo = 60000
s.connect(ep)
s.send_multipart([b"", b"pyzmq-1"])
print(s.recv_multipart())
EOF
    check "pyzmq reads our key files and is let in ($(cat "$ZP_TMP/pyzmq.out"))" \
        grep -Fq "[b'', b'OK']" "$ZP_TMP/pyzmq.out"
    expect pyzmq- 1
else
    skip "pyzmq: /usr/bin/python3 has no zmq module (apt-get install python3-zmq)"
fi

# ---- 4: allow-list change + SIGHUP
cp "$K/mallory.key" "$ALLOW/"
rm "$ALLOW/alice.key"
kill -HUP "$zp_pid"
check "SIGHUP: the new list is read (mallory in, alice out)" wait_until 30 "2 keys" reloaded 2 2
check "mallory now gets OK" push mallory 60s mallory- 2
expect mallory- 2
before=$(stats_field curve_refused)
if push alice 3s alice3- 1; then
    not_ok "alice, removed, is refused"
else
    ok "alice, removed, is refused"
fi
after=$(stats_field curve_refused)
check "... and counted ($before -> $after)" test "${after:-0}" -gt "${before:-0}"

stop_zpiped
st=$?
check "zpiped exits 0 (status $st)" test "$st" -eq 0
check "the file holds exactly the allowed clients' messages" same_messages "$ZP_TMP/expected" \
    "$ZP_SINK"
n=$(line_count "$ZP_TMP/expected")
check "accounting: received = delivered = $n" check_accounting received="$n" delivered="$n" \
    rejected=0 spilled=0 queued=0 in_flight=0
check "the log has no error" check_log
done_testing
