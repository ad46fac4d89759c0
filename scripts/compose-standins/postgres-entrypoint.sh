#!/bin/bash
# First start: initdb in $PGDATA with POSTGRES_USER as superuser (password
# POSTGRES_PASSWORD, scram over TCP), then POSTGRES_DB. Every start: postgres as the
# postgres user on 0.0.0.0:5432, as PID 1 so `docker stop` shuts it down cleanly.
set -euo pipefail

: "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD must be set}"
POSTGRES_USER=${POSTGRES_USER:-postgres}
POSTGRES_DB=${POSTGRES_DB:-$POSTGRES_USER}
as_postgres=(setpriv --reuid=postgres --regid=postgres --init-groups)

mkdir -p "$PGDATA" /run/postgresql
chown postgres:postgres "$PGDATA" /run/postgresql
chmod 0700 "$PGDATA"

if [ ! -s "$PGDATA/PG_VERSION" ]; then
    pwfile=$(mktemp)
    printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
    chown postgres "$pwfile"
    "${as_postgres[@]}" initdb --username="$POSTGRES_USER" --pwfile="$pwfile" \
        --auth-local=trust --auth-host=scram-sha-256 --encoding=UTF8 >/dev/null
    rm -f "$pwfile"
    echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
    # Socket only while the database is created, so no client sees a half-made server;
    # stopped again if that fails, so the container exits instead of serving it.
    "${as_postgres[@]}" pg_ctl -D "$PGDATA" -w -o "-c listen_addresses=''" start >/dev/null
    trap '"${as_postgres[@]}" pg_ctl -D "$PGDATA" -w -m fast stop >/dev/null' EXIT
    if [ "$POSTGRES_DB" != postgres ]; then
        # From stdin: psql interpolates :"db" (quoted as an identifier) there, not in -c.
        "${as_postgres[@]}" psql -v ON_ERROR_STOP=1 -U "$POSTGRES_USER" -d postgres -q \
            -v db="$POSTGRES_DB" <<<'CREATE DATABASE :"db";'
    fi
    "${as_postgres[@]}" pg_ctl -D "$PGDATA" -w -m fast stop >/dev/null
    trap - EXIT
    echo "postgres-entrypoint: initialised $PGDATA (user $POSTGRES_USER, database $POSTGRES_DB)"
fi

exec "${as_postgres[@]}" postgres -D "$PGDATA" -c listen_addresses='*' -c port=5432
