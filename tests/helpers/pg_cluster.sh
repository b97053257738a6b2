#!/bin/sh
# pg_cluster.sh - a private PostgreSQL cluster for the tests of the postgres
# sink: its data, log and unix socket all in DIR, no TCP port, trust
# authentication, database and user "zpipe".
#
#   pg_cluster.sh start DIR      initdb (the first time) and start; waits until it answers
#   pg_cluster.sh stop DIR       fast shutdown (pg_ctl stop -m fast)
#   pg_cluster.sh crash DIR      immediate shutdown (-m immediate: no checkpoint, as a crash)
#   pg_cluster.sh restart DIR    immediate shutdown, then start
#   pg_cluster.sh psql DIR ...   psql on it, the rest of the arguments passed on
#
# PostgreSQL refuses to run as root: as root, the server and its tools run
# as ZP_PG_USER (default nobody), DIR is made theirs and its parent gets
# search permission (o+x).  The binaries come
# from ZP_PG_BIN (default /usr/lib/postgresql/15/bin, Debian's postgresql-15).
# Exit status 77 (skip) when they are missing.  The connection string is
#   host=DIR dbname=zpipe user=zpipe
set -u
bin=${ZP_PG_BIN:-/usr/lib/postgresql/15/bin}
cmd=${1:?usage: pg_cluster.sh start|stop|crash|restart|psql DIR}
dir=${2:?usage: pg_cluster.sh start|stop|crash|restart|psql DIR}
shift 2

[ -x "$bin/initdb" ] && [ -x "$bin/pg_ctl" ] || {
    echo "pg_cluster.sh: no PostgreSQL in $bin" >&2
    exit 77
}
as_owner() {
    if [ "$(id -u)" = 0 ]; then
        setpriv --reuid="${ZP_PG_USER:-nobody}" --regid="$(id -g "${ZP_PG_USER:-nobody}")" \
            --clear-groups -- "$@"
    else
        "$@"
    fi
}
ctl() {
    as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" "$@" > /dev/null
}
start() {
    if [ ! -d "$dir/data" ]; then
        mkdir -p "$dir" || exit 1
        if [ "$(id -u)" = 0 ]; then
            # The owner must reach DIR: its parent (a test's private
            # directory) gets search permission, nothing more.
            chown "${ZP_PG_USER:-nobody}" "$dir" && chmod o+x "$(dirname "$dir")" || exit 1
        fi
        as_owner "$bin/initdb" -D "$dir/data" -U zpipe -A trust --no-sync -E UTF8 \
            > "$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; exit 1; }
        # fsync off: a test that stops the server with -m immediate loses no
        # commit that way (the page cache survives it), and it is faster.
        cat >> "$dir/data/postgresql.conf" <<CONF
listen_addresses = ''
unix_socket_directories = '$dir'
fsync = off
max_connections = 40
CONF
        fresh=1
    fi
    ctl -w -t 60 start || { cat "$dir/server.log" >&2; exit 1; }
    if [ "${fresh-}" ]; then
        as_owner "$bin/createdb" -h "$dir" -U zpipe zpipe || exit 1
    fi
}
case $cmd in
start) start ;;
stop) ctl -w -t 60 -m fast stop ;;
crash) ctl -w -t 60 -m immediate stop ;;
restart) ctl -w -t 60 -m immediate stop; start ;;
psql) as_owner "$bin/psql" -h "$dir" -U zpipe -d zpipe -X -q -v ON_ERROR_STOP=1 "$@" ;;
*) echo "pg_cluster.sh: unknown command $cmd" >&2; exit 2 ;;
esac
