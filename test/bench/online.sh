#!/usr/bin/env bash
# What an online snapshot costs (not part of make test or make bench): one table read
# by the relay's online snapshot (cdc-relay snapshot, README "Online snapshots") next to
# the floor of reading it and to the relay's initial snapshot, on the same data in one
# run, idle and under a steady write load, at three chunk sizes.
#
# A throwaway server (test/lib/pg.sh) gets t(id int primary key, a int, b text,
# c timestamptz) of BENCH_ROWS rows (default 1,000,000; ~100 bytes a row), filled and
# vacuumed; a 1-node Kafka (test/kafka/cluster.sh start 1, or the existing
# CDC_RELAY_KAFKA_BROKERS) gets its topic (3 partitions, compact).  Then:
#
# 1. COPY: `psql -c "COPY (SELECT * FROM t) TO STDOUT" > /dev/null`, once untimed, then
#    3 times timed, median (the floor of reading the table);
# 2. initial: `cdc-relay run` from a new slot, timed from its start until it streams (its
#    log says "streaming from slot", right after "snapshot recorded as complete");
# 3. online, idle: the relay started again (fresh process, --metrics 127.0.0.1:0,
#    --snapshot-chunk-rows 8192, the default), then `cdc-relay snapshot public.t`, timed
#    until the relay logs "online snapshot job N of public.t done" (polled every 0.1 s;
#    cdc_relay.snapshot_progress must then say done).  Printed: seconds, rows/s, the
#    relay's CPU seconds during the job (utime + stime of /proc/PID/stat, all threads),
#    its RSS before the request and its peak RSS (VmHWM: the fresh process's peak, so
#    the job's), the most of cdc_relay_lag_seconds sampled every second meanwhile.  The
#    job must deliver every row and drop none;
# 4. online, under load: the same, with pgbench writing to t meanwhile: 2 clients,
#    -R BENCH_LOAD_TPS transactions/s in total (default 200; rate-limited, so every run
#    gets the same load), each transaction one of: UPDATE a random key (60%), DELETE one
#    (20%), INSERT one ON CONFLICT DO UPDATE (20%), keys uniform over 1..BENCH_ROWS.  The
#    load starts 5 s before the request; the lag in those 5 s is the stream's own under
#    this load.  Also printed: the dropped-rows counter
#    (cdc_relay_online_snapshot_dropped_rows_total: chunk rows the stream had a newer
#    version of), the row changes committed while the job ran (pg_stat_user_tables) and
#    the transactions the relay delivered meanwhile (cdc_relay_transactions_total): the
#    stream goes on while the job runs;
# 5. online, idle, at --snapshot-chunk-rows 1024 and 65536 (8192 is run 3); these run
#    before 4, so every idle run reads the same BENCH_ROWS rows.
# 6. online, idle, chunk 8192, with the server's synchronous_commit = off ("sc=off"; every
#    other relay run has on, PostgreSQL's default, set after the fill): the reader reads
#    the next chunk only after the stream has seen the last one's watermark, whose
#    asynchronous commit reaches the walsender only at the WAL writer's next flush
#    (wal_writer_delay, 200 ms), so this shows what that costs per chunk.
# Every rate is the rows read / seconds; the ratios are lib.sh's (> 1x: faster than
# the reference).  At the end the topic's end offsets (kcat -Q) must hold at least every
# row the runs produced.
#
# The numbers are as noisy as the machine: on a shared host say so, and quote the load
# average printed at the start and the end.
#
# Environment: BENCH_ROWS, BENCH_LOAD_TPS, CDC_RELAY_BIN (default relay/cdc-relay of
# this tree), PG_CONFIG, CDC_RELAY_KAFKA_BROKERS, BENCH_TIMEOUT (s, per step, default
# 1800).  The installed extension (make install) must be the one of this tree.
set -euo pipefail
export LC_ALL=C

BENCH_ROWS=${BENCH_ROWS:-1000000}
BENCH_LOAD_TPS=${BENCH_LOAD_TPS:-200}
BENCH_TIMEOUT=${BENCH_TIMEOUT:-1800}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
BENCH_NAME=bench-online
# shellcheck source=test/bench/lib.sh
source "$HERE/lib.sh"
need_positive BENCH_ROWS BENCH_LOAD_TPS BENCH_TIMEOUT
bench_pg_tools
RELAY=${CDC_RELAY_BIN:-$REPO/relay/cdc-relay}
[[ -x $RELAY ]] || die "$RELAY is not built (make)"
[[ -f "$PKGLIBDIR/cdc_relay.so" ]] || die "$PKGLIBDIR/cdc_relay.so is not installed"
[[ -x $BINDIR/pgbench ]] || die "$BINDIR/pgbench is missing"
for tool in kcat curl; do
    command -v "$tool" >/dev/null || die "$tool is missing"
done
PARTS=3
HZ=$(getconf CLK_TCK)
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
# shellcheck source=test/bench/scratch.sh
source "$HERE/scratch.sh"
scratch_pg bench-online

log "filling t with $BENCH_ROWS rows"
t0=$(now)
psql_q <<SQL
CREATE EXTENSION cdc_relay;
CREATE TABLE t (id int PRIMARY KEY, a int NOT NULL, b text NOT NULL, c timestamptz NOT NULL);
INSERT INTO t SELECT g, g % 1000, md5(g::text) || md5((g + 1)::text),
    '2024-01-01 00:00:00+00'::timestamptz + g * interval '1 second'
  FROM generate_series(1, $BENCH_ROWS) g;
VACUUM (FREEZE, ANALYZE) t;
SQL
ROW_BYTES=$(psql_q -c "SELECT round(pg_relation_size('t') / $BENCH_ROWS.0)")
log "filled in $(elapsed "$t0" "$(now)") s ($ROW_BYTES bytes of heap a row)"

# --- 1. COPY -----------------------------------------------------------------------------
log "COPY t TO STDOUT > /dev/null: once untimed, 3 times timed"
psql_q -c "COPY (SELECT * FROM t) TO STDOUT" >/dev/null
copy_all=
for _ in 1 2 3; do
    t0=$(now)
    psql_q -c "COPY (SELECT * FROM t) TO STDOUT" >/dev/null
    copy_all+=" $(elapsed "$t0" "$(now)")"
done
COPY_SECS=$(median "$copy_all")
log "COPY: $copy_all s"

# sync_commit on|off: the server's synchronous_commit (scratch_pg's is off, for the fill)
sync_commit() {
    psql_q -c "ALTER SYSTEM SET synchronous_commit = $1" -c "SELECT pg_reload_conf()" >/dev/null
}
sync_commit on

# --- 2. initial snapshot -------------------------------------------------------------------
scratch_kafka
PREFIX=bonline$$
TOPIC=$PREFIX.public.t
scratch_topic "$TOPIC" "$PARTS"
scratch_topic "$PREFIX.__state" 1
SCRATCH_RELAY_ARGS=(--metrics 127.0.0.1:0)
scratch_relay t
INIT_SECS=$SNAP_SECS
grep -q 'snapshot recorded as complete' "$SCRATCH/relay.log" || die "the relay took no initial snapshot"
PRODUCED=$BENCH_ROWS # rows every run must have put into $TOPIC, summed

# --- helpers of the online runs ----------------------------------------------------------

# metric NAME: the value of the first sample of NAME (with or without labels) on the
# relay's metrics endpoint (awk reads it all: curl must not fail writing)
metric() {
    curl -sf --max-time 2 "http://$MADDR/metrics" |
        awk -v n="$1" '!found && ($1 == n || index($1, n "{") == 1) { print $NF; found = 1 }'
}
relay_cpu() { awk -v hz="$HZ" '{ sub(/^.*\) /, ""); printf "%.2f", ($12 + $13) / hz }' "/proc/$RELAY_PID/stat"; }
relay_kb() { awk -v k="$1:" '$1 == k { print $2 }' "/proc/$RELAY_PID/status"; }
row_changes() {
    psql_q -c "SELECT pg_stat_clear_snapshot(); SELECT n_tup_ins + n_tup_upd + n_tup_del FROM pg_stat_user_tables WHERE relid = 't'::regclass" | tail -n 1
}

# lag_sampler FILE: every second, the most of cdc_relay_lag_seconds so far into FILE
lag_sampler() {
    local max=0 v
    while :; do
        v=$(metric cdc_relay_lag_seconds 2>/dev/null || true)
        [[ -n $v ]] && max=$(awk -v a="$max" -v b="$v" 'BEGIN { print (b > a) ? b : a }')
        echo "$max" >"$1"
        sleep 1
    done
}
stop_pid() { kill -TERM "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

RELAY_RUNS=0
# restart_relay CHUNK: a fresh relay (the snapshot is done: it only streams) with
# --snapshot-chunk-rows CHUNK; MADDR = its metrics address
restart_relay() {
    stop_pid "$RELAY_PID"
    mv "$SCRATCH/relay.log" "$SCRATCH/relay.$((++RELAY_RUNS)).log" # scratch_relay must not see the old one
    SCRATCH_RELAY_ARGS=(--metrics 127.0.0.1:0 --snapshot-chunk-rows "$1")
    scratch_relay t
    MADDR=$(sed -n 's/.*metrics: listening on \([0-9.]*:[0-9]*\).*/\1/p' "$SCRATCH/relay.log" | head -n 1)
    [[ -n $MADDR ]] || die "the relay logged no metrics address"
}

# online RUN CHUNK LOAD: one online snapshot of t (LOAD 1: under pgbench); sets R_* [RUN]
declare -A R_SECS R_CPU R_RSS0 R_HWM R_LAG R_LAG0 R_DROP R_ROWS R_CHANGES R_TXNS
online() {
    local run=$1 chunk=$2 load=$3 pgb= sampler cpu0 drop0 txn0 chg0 job t0 deadline line status
    restart_relay "$chunk"
    if ((load)); then
        log "[$run] pgbench: 2 clients, $BENCH_LOAD_TPS tx/s, 5 s before the request"
        "$BINDIR/pgbench" -n -c 2 -j 2 -R "$BENCH_LOAD_TPS" -T "$BENCH_TIMEOUT" -D rows="$BENCH_ROWS" \
            -f "$SCRATCH/upd.sql@6" -f "$SCRATCH/del.sql@2" -f "$SCRATCH/ins.sql@2" >"$SCRATCH/pgbench.log" 2>&1 &
        pgb=$!
        SCRATCH_PIDS+=("$pgb")
        lag_sampler "$SCRATCH/lag0" &
        sampler=$!
        SCRATCH_PIDS+=("$sampler")
        sleep 5
        stop_pid "$sampler"
        kill -0 "$pgb" 2>/dev/null || { cat "$SCRATCH/pgbench.log" >&2; die "pgbench exited"; }
        R_LAG0[$run]=$(cat "$SCRATCH/lag0")
    fi
    R_RSS0[$run]=$(relay_kb VmRSS)
    cpu0=$(relay_cpu)
    drop0=$(metric cdc_relay_online_snapshot_dropped_rows_total) # none before the first job
    drop0=${drop0:-0}
    txn0=$(metric cdc_relay_transactions_total)
    chg0=$(row_changes)
    lag_sampler "$SCRATCH/lag" &
    sampler=$!
    SCRATCH_PIDS+=("$sampler")
    log "[$run] online snapshot, --snapshot-chunk-rows $chunk$( ((load)) && echo ", under load")"
    t0=$(now)
    job=$("$RELAY" snapshot public.t -d "$CONN" 2>"$SCRATCH/request.err") ||
        { cat "$SCRATCH/request.err" >&2; die "cdc-relay snapshot failed"; }
    deadline=$((SECONDS + BENCH_TIMEOUT))
    until line=$(grep -m 1 "online snapshot job $job of public\.t \(done\|failed\)" "$SCRATCH/relay.log"); do
        kill -0 "$RELAY_PID" 2>/dev/null || { tail -n 20 "$SCRATCH/relay.log" >&2; die "the relay exited"; }
        ((SECONDS < deadline)) || die "job $job not done within $BENCH_TIMEOUT s"
        sleep 0.1
    done
    R_SECS[$run]=$(elapsed "$t0" "$(now)")
    R_CPU[$run]=$(elapsed "$cpu0" "$(relay_cpu)")
    R_HWM[$run]=$(relay_kb VmHWM)
    R_DROP[$run]=$(($(metric cdc_relay_online_snapshot_dropped_rows_total) - drop0))
    R_TXNS[$run]=$(($(metric cdc_relay_transactions_total) - txn0))
    R_CHANGES[$run]=$(($(row_changes) - chg0))
    stop_pid "$sampler"
    R_LAG[$run]=$(cat "$SCRATCH/lag")
    [[ -n $pgb ]] && stop_pid "$pgb"
    [[ $line == *" done: "* ]] || die "job $job: $line"
    log "[$run] ${line#* online snapshot }"
    R_ROWS[$run]=$(sed -n 's/.* done: \([0-9]*\) rows in .*/\1/p' <<<"$line")
    status=$(psql_q -c "SELECT status FROM cdc_relay.snapshot_progress WHERE id = $job")
    [[ $status == done ]] || die "job $job: snapshot_progress says '$status' (expected done)"
    if ((!load)); then
        [[ ${R_ROWS[$run]} == "$BENCH_ROWS" && ${R_DROP[$run]} == 0 ]] ||
            die "job $job read ${R_ROWS[$run]} rows and dropped ${R_DROP[$run]} of an idle table of $BENCH_ROWS"
    fi
    PRODUCED=$((PRODUCED + R_ROWS[$run] - R_DROP[$run])) # the job's rows: read, then emitted or dropped
}

cat >"$SCRATCH/upd.sql" <<'SQL'
\set id random(1, :rows)
UPDATE t SET a = a + 1, c = now() WHERE id = :id;
SQL
cat >"$SCRATCH/del.sql" <<'SQL'
\set id random(1, :rows)
DELETE FROM t WHERE id = :id;
SQL
cat >"$SCRATCH/ins.sql" <<'SQL'
\set id random(1, :rows)
INSERT INTO t VALUES (:id, 0, md5(:id::text) || md5((:id + 1)::text), now())
  ON CONFLICT (id) DO UPDATE SET a = t.a + 1, c = now();
SQL

# --- 3.-5. online snapshots ------------------------------------------------------------
online idle 8192 0
online c1024 1024 0
online c65536 65536 0
sync_commit off
online scoff 8192 0
sync_commit on
online load 8192 1 # last: the idle runs read the same rows

# --- the topic holds at least every row produced -------------------------------------------
END_OFFSETS=0
for ((p = 0; p < PARTS; p++)); do
    o=$(kcat -Q -b "$BS" -t "$TOPIC:$p:-1" 2>"$SCRATCH/kcatq.err" | sed -n 's/.* offset \([0-9]*\).*/\1/p')
    [[ -n $o ]] || { cat "$SCRATCH/kcatq.err" >&2; die "kcat -Q gave no end offset of $TOPIC [$p]"; }
    END_OFFSETS=$((END_OFFSETS + o))
done
((END_OFFSETS >= PRODUCED)) || die "$TOPIC ends at $END_OFFSETS messages, fewer than the $PRODUCED rows produced"

# --- the table ----------------------------------------------------------------------------
kb_mb() { awk -v k="$1" 'BEGIN { printf "%.0f", k / 1024 }'; }
echo
echo "Online snapshot of one table of $BENCH_ROWS rows ($ROW_BYTES B heap/row), 1-node Kafka, $PARTS partitions"
echo "($(nproc) CPUs, $(date -u '+%F %H:%M') UTC, load average at start $LOAD_START, at end $(cut -d' ' -f1-3 /proc/loadavg))"
printf '%-30s %8s %9s %7s %7s %7s %8s %8s %8s\n' measure s rows/s /COPY /init "CPU s" "RSS MB" "peak MB" "lag max"
printf '%-30s %8s %9s %7s %7s\n' "COPY TO STDOUT > /dev/null" "$COPY_SECS" "$(rate "$BENCH_ROWS" "$COPY_SECS")" 1.00x \
    "$(ratio "$INIT_SECS" "$COPY_SECS")"
printf '%-30s %8s %9s %7s %7s\n' "initial snapshot (relay start)" "$INIT_SECS" "$(rate "$BENCH_ROWS" "$INIT_SECS")" \
    "$(ratio "$COPY_SECS" "$INIT_SECS")" 1.00x
for run in idle c1024 c65536 scoff load; do
    case $run in
    idle) what="online, chunk 8192, idle" ;;
    load) what="online, chunk 8192, pgbench" ;;
    c1024) what="online, chunk 1024, idle" ;;
    c65536) what="online, chunk 65536, idle" ;;
    scoff) what="online, 8192, idle, sc=off" ;;
    esac
    r=$(rate "${R_ROWS[$run]}" "${R_SECS[$run]}")
    printf '%-30s %8s %9s %7s %7s %7s %8s %8s %8s\n' "$what" "${R_SECS[$run]}" "$r" \
        "$(ratio "$r" "$(rate "$BENCH_ROWS" "$COPY_SECS")")" "$(ratio "$r" "$(rate "$BENCH_ROWS" "$INIT_SECS")")" "${R_CPU[$run]}" \
        "$(kb_mb "${R_RSS0[$run]}")" "$(kb_mb "${R_HWM[$run]}")" "${R_LAG[$run]}"
done
echo
echo "under load (pgbench -c 2 -R $BENCH_LOAD_TPS: 60% update, 20% delete, 20% upsert of random keys):"
echo "  rows read ${R_ROWS[load]}, of them dropped (the stream had a newer version) ${R_DROP[load]}"
echo "  row changes committed during the job ${R_CHANGES[load]}, transactions the relay delivered meanwhile ${R_TXNS[load]}"
echo "  cdc_relay_lag_seconds max: ${R_LAG0[load]} s in the 5 s before the request, ${R_LAG[load]} s during the job"
echo "  $TOPIC end offsets $END_OFFSETS >= $PRODUCED rows produced by the runs: ok"
