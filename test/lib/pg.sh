# test/lib/pg.sh — sourced bash helpers: a throwaway PostgreSQL server for scripts
# (demo, bench).  Not for `make installcheck` or the TAP tests, which start their own.
#
#   source test/lib/pg.sh
#   pg_start "$(pg_scratch_dir demo)" "$(pg_free_port)"   # initdb + start, cleanup on EXIT
#   pg_psql -c 'select 1'                                  # psql as postgres
#   pg_bg_pid $!                                           # kill this pid at cleanup
#   pg_stop                                                # stop + rm (also done by the EXIT trap)
#
# The server runs as the unprivileged user postgres when we are root (initdb refuses
# root): UTF8 with the C locale, wal_level=logical, fsync=off, its unix socket in the
# scratch dir, TCP on 127.0.0.1 only, output_plugin_libraries allowing cdc_relay and
# wal2json.
# Client programs also run as that user; pass SQL on stdin or -c, not as files the
# postgres user may not be able to read.

PG_BINDIR=${PG_BINDIR:-$(pg_config --bindir)}
PG_SUPERUSER=postgres          # database superuser name (initdb -U)
PG_DIR=                        # scratch dir: data/, server.log, socket
PG_PORT=
PG_BG_PIDS=()

# Run a command as the OS user that owns the server (postgres if we are root).
pg_as_user() {
    if [[ $(id -u) == 0 ]]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

# pg_scratch_dir NAME: a fresh directory under /tmp the server user can write.
pg_scratch_dir() {
    local d
    d=$(mktemp -d "/tmp/cdc_relay-$1.XXXXXX") || return 1
    [[ $(id -u) == 0 ]] && chown postgres: "$d"
    echo "$d"
}

# pg_free_port [FROM]: first TCP port on 127.0.0.1 nobody listens on.
pg_free_port() {
    local p
    for ((p = ${1:-55432}; p < ${1:-55432} + 500; p++)); do
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && [[ ! -e /tmp/.s.PGSQL.$p ]]; then
            echo "$p"
            return 0
        fi
    done
    echo "pg.sh: no free port" >&2
    return 1
}

# pg_start DIR PORT [CONF_LINE...]: initdb in DIR/data and start; extra lines go to postgresql.conf.
pg_start() {
    PG_DIR=$1 PG_PORT=$2
    shift 2
    trap pg_cleanup EXIT
    trap 'exit 130' INT TERM
    pg_as_user "$PG_BINDIR/initdb" -D "$PG_DIR/data" -U "$PG_SUPERUSER" -A trust -N -E UTF8 --no-locale \
        --no-instructions >"$PG_DIR/initdb.log" 2>&1 ||
        { cat "$PG_DIR/initdb.log" >&2; return 1; }
    {
        echo "# added by test/lib/pg.sh"
        echo "port = $PG_PORT"
        echo "listen_addresses = '127.0.0.1'"
        echo "unix_socket_directories = '$PG_DIR'"
        echo "wal_level = logical"
        echo "max_replication_slots = 10"
        echo "max_wal_senders = 10"
        echo "output_plugin_libraries = 'pgoutput, test_decoding, cdc_relay, wal2json'"
        echo "fsync = off"
        printf '%s\n' "$@"
    } | pg_as_user tee -a "$PG_DIR/data/postgresql.conf" >/dev/null
    pg_as_user "$PG_BINDIR/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -t 60 start >/dev/null ||
        { cat "$PG_DIR/server.log" >&2; return 1; }
}

# Connection string for clients (libpq keyword form).
pg_connstr() {
    echo "host=$PG_DIR port=$PG_PORT user=$PG_SUPERUSER dbname=${1:-postgres}"
}

# pg_psql [PSQL_ARGS...]: psql as postgres against the throwaway server, stop on error.
pg_psql() {
    pg_as_user "$PG_BINDIR/psql" -X -q -v ON_ERROR_STOP=1 -d "$(pg_connstr)" "$@"
}

# pg_bg_pid PID...: background processes to end at cleanup (before the server stops).
pg_bg_pid() {
    PG_BG_PIDS+=("$@")
}

# pg_stop: end tracked background processes, stop the server, remove the scratch dir.
# Safe under set -e (it also runs from the EXIT trap).
pg_stop() {
    local pid
    for pid in "${PG_BG_PIDS[@]}"; do
        { kill "$pid" && wait "$pid"; } 2>/dev/null || true
    done
    PG_BG_PIDS=()
    if [[ -n $PG_DIR && -f $PG_DIR/data/postmaster.pid ]]; then
        pg_as_user "$PG_BINDIR/pg_ctl" -D "$PG_DIR/data" -m fast -w stop >/dev/null 2>&1 ||
            pg_as_user "$PG_BINDIR/pg_ctl" -D "$PG_DIR/data" -m immediate -w stop >/dev/null 2>&1 ||
            true
    fi
    if [[ -n $PG_DIR && -d $PG_DIR ]]; then
        rm -rf "$PG_DIR"
    fi
    PG_DIR=
}

# EXIT trap: keep the script's exit status.
pg_cleanup() {
    local rc=$?
    pg_stop || true
    exit $rc
}
