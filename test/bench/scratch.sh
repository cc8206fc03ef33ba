# test/bench/scratch.sh: the throwaway PostgreSQL server and Kafka cluster that
# verify.sh and index.sh measure against.  Sourced after lib.sh and bench_pg_tools
# (needs BENCH_NAME, BINDIR, REPO and lib.sh's die/log).
#
#   scratch_pg NAME         initdb + start a server for bulk loads (synchronous_commit off,
#                           512MB shared_buffers, no autovacuum) with database "bench";
#                           sets SCRATCH (its directory), PORT, CONN, exports PGHOST, PGPORT,
#                           PGUSER, PGDATABASE; installs the EXIT/INT/TERM traps that run
#                           scratch_cleanup
#   scratch_kafka           BS = $CDC_RELAY_KAFKA_BROKERS, or a 1-node cluster started here
#                           (test/kafka/cluster.sh; stopped by scratch_cleanup)
#   scratch_topic NAME PARTITIONS
#                           a compacted topic on BS
#   scratch_relay TABLE     start `$RELAY run` (snapshot jobs 2, topics $PREFIX.*, log in
#                           $SCRATCH/relay.log, then the options in SCRATCH_RELAY_ARGS) and
#                           wait until it streams (polled every 0.1 s): RELAY_PID, SNAP_SECS
#                           (the snapshot of TABLE, whose name is only for the log; a relay
#                           started again finds the snapshot done and only starts streaming)
#   SCRATCH_PIDS+=(PID)     processes scratch_cleanup stops (SIGTERM, then waits), last first
#   scratch_cleanup         stops SCRATCH_PIDS, the cluster started here, the server; exits
#                           with the status the script had

KAFKA_HARNESS=$REPO/test/kafka/cluster.sh
KAFKA_DIR=
SCRATCH_PIDS=()
SCRATCH_RELAY_ARGS=()

export PG_BINDIR=$BINDIR
# shellcheck source=test/lib/pg.sh
source "$REPO/test/lib/pg.sh"

scratch_cleanup() {
    local rc=$? i pid
    trap - EXIT INT TERM
    for ((i = ${#SCRATCH_PIDS[@]} - 1; i >= 0; i--)); do
        pid=${SCRATCH_PIDS[i]}
        # a process killed by the signal makes wait fail: not a reason to stop cleaning up
        [[ -n $pid ]] && kill -TERM "$pid" 2>/dev/null && { wait "$pid" 2>/dev/null || true; }
    done
    if [[ -n $KAFKA_DIR ]]; then
        bash "$KAFKA_HARNESS" stop "$KAFKA_DIR" >/dev/null 2>&1 || echo "$BENCH_NAME: cluster.sh stop failed" >&2
    fi
    pg_stop || true
    exit "$rc"
}

scratch_pg() {
    SCRATCH=$(pg_scratch_dir "$1") || die "could not create a scratch directory"
    PORT=$(pg_free_port) || die "no free TCP port"
    log "initdb in $SCRATCH (port $PORT)"
    pg_start "$SCRATCH" "$PORT" "synchronous_commit = off" "shared_buffers = 512MB" "max_wal_size = 20GB" \
        "checkpoint_timeout = 1h" "autovacuum = off" || die "server did not start"
    trap scratch_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    export PGHOST=$SCRATCH PGPORT=$PORT PGUSER=$PG_SUPERUSER PGDATABASE=bench
    CONN="host=$SCRATCH port=$PORT user=$PG_SUPERUSER dbname=bench"
    "$BINDIR/createdb" -T template0 bench
}

scratch_kafka() {
    local out
    if [[ -n ${CDC_RELAY_KAFKA_BROKERS:-} ]]; then
        BS=$CDC_RELAY_KAFKA_BROKERS
        log "Kafka: the existing cluster $BS"
        return
    fi
    log "Kafka: starting a 1-node cluster"
    out=$(CDC_RELAY_KAFKA_OWNER=$$ bash "$KAFKA_HARNESS" start 1 2>"$SCRATCH/kafka_start.log") ||
        { tail -n 40 "$SCRATCH/kafka_start.log" >&2; die "could not start Kafka"; }
    BS=$(sed -n 1p <<<"$out")
    KAFKA_DIR=$(sed -n 2p <<<"$out")
}

scratch_topic() {
    bash "$KAFKA_HARNESS" admin "$BS" create-topic "$1" "$2" 1 cleanup.policy=compact >/dev/null
}

scratch_relay() {
    local t0 deadline
    log "relay: snapshot of $1 into $PREFIX.public.$1"
    t0=$(now)
    "$RELAY" run -d "$CONN" -b "$BS" --topic-prefix "$PREFIX" --snapshot-jobs 2 "${SCRATCH_RELAY_ARGS[@]}" \
        >"$SCRATCH/relay.log" 2>&1 &
    RELAY_PID=$!
    SCRATCH_PIDS+=("$RELAY_PID")
    deadline=$((SECONDS + BENCH_TIMEOUT))
    until grep -qs 'streaming from slot' "$SCRATCH/relay.log"; do
        kill -0 "$RELAY_PID" 2>/dev/null || { tail -n 20 "$SCRATCH/relay.log" >&2; die "the relay exited"; }
        ((SECONDS < deadline)) || die "no snapshot within $BENCH_TIMEOUT s"
        sleep 0.1
    done
    SNAP_SECS=$(elapsed "$t0" "$(now)")
    log "snapshot done in $SNAP_SECS s: $(grep -o 'snapshot complete:.*' "$SCRATCH/relay.log" | head -n 1)"
}
