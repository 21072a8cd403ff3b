#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for the tests: Debian's server packages, `initdb` + `pg_ctl` as an
# unprivileged user, listening on loopback only, in a directory of its own. No system service is used or
# started.
#
#   ci/peers/postgres.sh start DIR    # prints the lines to export: HERALD_TEST_POSTGRES_URL, ..._PASSWORD,
#                                     # HERALD_TEST_PG_CTL (a command that runs pg_ctl on this cluster)
#   ci/peers/postgres.sh stop DIR
#
# As root it installs the packages when missing (apt) and runs the server as the system user `herald-pg`
# (initdb refuses root); otherwise as the current user. The role `herald` (password auth, scram) may
# create databases: each test makes one of its own.
set -euo pipefail

cmd=${1:?usage: postgres.sh start|stop DIR}
dir=${2:?usage: postgres.sh start|stop DIR}

bin_dir() {
    local found
    found=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1 || true)
    if [ -z "$found" ] || [ ! -x "$found/initdb" ]; then
        if [ "$(id -u)" = 0 ]; then
            echo "installing PostgreSQL (Debian packages)" >&2
            # The package's own cluster and service are not wanted: no service starts during the install.
            printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
            chmod 755 /usr/sbin/policy-rc.d
            trap 'rm -f /usr/sbin/policy-rc.d' RETURN
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends postgresql >&2 || {
                apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends postgresql >&2
            }
            found=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1)
        else
            echo "PostgreSQL's server is not installed (apt install postgresql, as root)" >&2
            return 1
        fi
    fi
    echo "$found"
}

as_owner() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u herald-pg -- "$@"
    else
        "$@"
    fi
}

case "$cmd" in
start)
    bin=$(bin_dir)
    if [ "$(id -u)" = 0 ] && ! id herald-pg >/dev/null 2>&1; then
        useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin herald-pg
    fi
    mkdir -p "$dir"
    [ "$(id -u)" = 0 ] && chown herald-pg "$dir"
    chmod 700 "$dir"
    if [ "$(id -u)" = 0 ] && ! runuser -u herald-pg -- test -w "$dir"; then
        echo "herald-pg cannot reach $dir: every folder above it must let others pass (chmod o+x)" >&2
        exit 1
    fi
    password=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
    port=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
    printf '%s\n' "$password" >"$dir/pwfile"
    [ "$(id -u)" = 0 ] && chown herald-pg "$dir/pwfile"
    as_owner "$bin/initdb" -D "$dir/data" -U herald --pwfile="$dir/pwfile" --auth=scram-sha-256 \
        --encoding=UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; exit 1; }
    rm -f "$dir/pwfile"
    # Loopback only; the socket in the cluster's own directory (not /var/run/postgresql).
    cat >>"$dir/data/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
max_connections = 200
fsync = on
EOF
    as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 start >&2 || { cat "$dir/server.log" >&2; exit 1; }
    echo "HERALD_TEST_POSTGRES_URL=postgres://herald@127.0.0.1:$port/postgres"
    echo "HERALD_TEST_POSTGRES_PASSWORD=$password"
    if [ "$(id -u)" = 0 ]; then
        echo "HERALD_TEST_PG_CTL=runuser -u herald-pg -- $bin/pg_ctl -D $dir/data -l $dir/server.log"
    else
        echo "HERALD_TEST_PG_CTL=$bin/pg_ctl -D $dir/data -l $dir/server.log"
    fi
    ;;
stop)
    bin=$(bin_dir)
    if [ -d "$dir/data" ]; then
        as_owner "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >&2 || true
    fi
    rm -rf "$dir"
    ;;
*)
    echo "usage: postgres.sh start|stop DIR" >&2
    exit 2
    ;;
esac
