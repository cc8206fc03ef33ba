#!/usr/bin/env bash
# Relay benchmark (make bench / make bench-relay; not part of make test):
# cdc-relay end to end, from PostgreSQL into Kafka, next to the decoding ceiling and
# a naive pipe, on one throwaway server, into two brokers side by side in one run:
#
#   mock   `cdc-relay broker` (librdkafka's mock cluster, in memory), a fresh one for
#          each timed run
#   kafka  Apache Kafka (the version of test/kafka/pom.xml), one node, KRaft, started
#          once for the whole benchmark with test/kafka/cluster.sh start 1 (the test
#          harness: heap 384 MiB, SerialGC, C1 JIT only, log directory under /tmp;
#          CDC_RELAY_KAFKA_JAVA_OPTS is appended to its JVM options) and stopped at
#          the end; every run writes topics of its own (names end in a per-benchmark
#          tag).  With CDC_RELAY_KAFKA_BROKERS=HOST:PORT,... that existing cluster is
#          used instead (as by the TAP tests), and its CPU is not measured.
#
# Each timed run of each part is done against each broker in turn (mock, then kafka,
# within the same repeat), so slow drifts of the shared machine hit both alike.
#
# 1. Streaming, W2 (test/bench/w2.sql: BENCH_TXNS transactions of 10 row changes,
#    6 inserts + 3 updates + 1 delete; default 100,000 = 1,000,000 changes).
#    Per repeat, one slot per timed run is created before the workload (so all read
#    the same WAL from the same point), then the workload runs and its end LSN is
#    noted.  Each slot is then consumed to that LSN, one at a time, and timed:
#      ceiling  pg_recvlogical -S <slot> --start --endpos <end> -o key-prefix=true -f /dev/null
#               (and again with -o batch-events=true: the plugin options the relay uses, so
#               both ratios are printed)
#               (the cdc_relay plugin with the options the relay uses; nothing delivered:
#               the fastest any client of this plugin can go; no broker, so one run per
#               repeat, shown in both tables)
#      relay    cdc-relay run -S <slot> --snapshot never --endpos <end> -b <broker>
#                 --delivery at-least-once     (alo)
#                 --delivery exactly-once      (eos)
#               (timed until it exits 0, which it does only after the broker acknowledged
#               every message: acks=all, idempotent producer, the relay's defaults; under
#               exactly-once only after the last Kafka transaction committed).  The two
#               modes run back to back on each broker, alternating which goes first from
#               one repeat to the next; eos / alo is also computed per repeat (the median
#               of those ratios is printed: each pair saw the same machine load).  A relay
#               without --delivery (before issue 9) runs once per broker, as "alo".
#      naive    pg_recvlogical -P wal2json -o format-version=2 --endpos <end> -f - |
#                 kcat -P -b <broker> -t <topic> -X acks=all
#               (one Kafka message per output line, no key, no headers, nothing confirmed
#               back to PostgreSQL per message; kcat's acks default is already -1 = all,
#               it is set explicitly anyway)
#    changes/s = 10 x BENCH_TXNS / seconds.  On Kafka a run's topics do not exist
#    before it: the broker creates them at the first message (auto-creation), inside
#    the timed run.  Checked each run: the relay logged 10 x BENCH_TXNS events, and the
#    topics hold 11 x BENCH_TXNS messages (relay: each delete is followed by a
#    tombstone; with --delivery, the transactions topic 2 x BENCH_TXNS begin and
#    commit records) and 12 x BENCH_TXNS (naive: wal2json's begin and commit lines
#    are messages too), counted from the partitions' last offsets, except for
#    exactly-once on Kafka, whose offsets include the transaction markers: there
#    the topics are read to the end (kcat, isolation.level=read_committed).
#    Targets (issue 9): alo >= 0.85x the ceiling and >= 1.3x the naive pipe, on both
#    brokers; eos >= 0.9x alo.
#
# 2. Snapshot.  BENCH_SNAPSHOT_ROWS rows (default 1,000,000) split over
#    BENCH_SNAPSHOT_TABLES tables of (id bigint primary key, a int, b text,
#    c timestamptz, d numeric), vacuumed (frozen, hint bits set) before any run.
#      relay         cdc-relay run --snapshot initial-only --snapshot-jobs N (N =
#                    BENCH_SNAPSHOT_JOBS, default 2): creates the slot with an exported
#                    snapshot, produces every row as an op "r" event, exits 0 once every
#                    row was acknowledged and completion recorded; timed from start to exit
#      COPY          psql -c "COPY <table> TO STDOUT" > /dev/null, table after table
#      COPY xN       the tables dealt round-robin to N concurrent psql processes
#      query xN      the same N psql processes running the relay's own query,
#                    COPY (SELECT cdc_relay.snapshot_row(...) FROM ONLY t) TO STDOUT
#                    (FORMAT binary) > /dev/null: the server's share of the relay's
#                    snapshot (JSON encoding), without Kafka
#    The COPY runs need no broker: one of each per repeat, shown in both tables.
#    rows/s = rows / seconds; the ratio is relay rows/s / COPY rows/s.  COPY writes
#    plain text to /dev/null; the relay encodes each row as its JSON event
#    (cdc_relay.snapshot_row), sends it to the broker and waits for the acknowledgement.
#    Checked each run: the relay's "snapshot complete: N rows" equals the row count,
#    and the topics hold that many messages.
#
# 3. Latency at a fixed rate, one run per broker and delivery mode (exactly-once,
#    then at-least-once; the relay's default --txn-interval-ms).  pgbench -R
#    BENCH_LATENCY_RATE (default 2000 transactions/s) for BENCH_LATENCY_SECS (default
#    25) seconds, each transaction one INSERT, synchronous_commit=on, while the relay
#    streams.  The interval measured per event is commit -> readable by a consumer
#    that reads with isolation.level=read_committed (on Kafka an exactly-once event is
#    readable only once its Kafka transaction committed; the mock broker does not hold
#    back uncommitted messages, so its exactly-once row is no read_committed measure):
#      start: the event's "ts", the transaction's commit timestamp, which PostgreSQL
#             takes just before it writes the commit record (clock of this machine)
#      end:   the moment a consumer process holds the message: kcat -C -u (unbuffered,
#             -X fetch.wait.max.ms=5: the mock broker answers an empty fetch only after
#             that wait) writes it to a pipe, and a perl reader stamps each line with
#             its own clock (Time::HiRes) as it reads it.
#    Same machine, same clock, so no clock skew.  This is what a downstream consumer
#    sees, including the consumer's own fetch polling, so it is an upper bound on the
#    relay's part.  It is split at the message's Kafka CreateTime (kcat %T, set by
#    librdkafka when the relay produces the message, millisecond resolution):
#    commit -> produced (server, walsender, relay) and produced -> consumed (producer
#    batching linger.ms=5, broker, consumer fetch).  The topic has one partition
#    (created before the run: broker option on the mock, Kafka's Admin client through
#    cluster.sh admin on Kafka) so that a sentinel row written after pgbench ends
#    marks the end of the stream.  p50, p99 and max over every transaction pgbench made.
#    Target (issue 9): exactly-once on Kafka, p99 <= 50 ms.
#
# 4. Instructions per change (callgrind): the one measure that the load of a shared
#    machine does not move.  W2 with BENCH_CALLGRIND_TXNS transactions (default
#    10,000 = 100,000 changes) is written once; then, per delivery mode, the relay
#    consumes it to --endpos into a fresh mock broker (a process of its own, so not
#    counted) under
#      valgrind --tool=callgrind --separate-threads=yes (one profile per thread)
#    instructions per change = the Ir of every thread of the relay (librdkafka's
#    included; start-up and shutdown included), summed, / (10 x BENCH_CALLGRIND_TXNS);
#    also printed: the main thread's alone (the relay's own code), steadier still,
#    since librdkafka's threads batch and poll by the clock.  Exactly-once runs with
#    --txn-interval-ms 600000 --txn-max-messages BENCH_CALLGRIND_TXN_MESSAGES (default
#    2500 messages, ~1,900 changes: about what 20 ms hold in a native run), so that
#    the number of Kafka transactions does not depend on valgrind's slowdown.
#    The profiles are kept when BENCH_KEEP=1 (callgrind_annotate --inclusive=yes).
#    Wall time: a few minutes (valgrind runs the relay ~50x slower).
#
# Every number in parts 1 and 2 is the median of BENCH_REPEAT runs (default 3).  The
# PostgreSQL server (fsync=off, synchronous_commit=off except for the latency writer)
# runs as the postgres user; the clients, brokers and relay run as the caller.
# Everything runs on one machine: on 2 cores, the server, the relay, the broker and
# the consumers compete for the same CPUs, and the wall times show it (the report
# prints the load average before and after: other users of a shared machine count).
#
# Environment:
#   BENCH_TXNS            W2 transactions (default 100000)
#   BENCH_SNAPSHOT_ROWS   rows in the snapshot tables (default 1000000)
#   BENCH_SNAPSHOT_TABLES number of snapshot tables (default 4)
#   BENCH_SNAPSHOT_JOBS   --snapshot-jobs and parallel COPYs (default 2)
#   BENCH_LATENCY_SECS    pgbench duration (default 25)
#   BENCH_LATENCY_RATE    pgbench -R transactions/s (default 2000)
#   BENCH_CALLGRIND_TXNS  W2 transactions of the callgrind part (default 10000)
#   BENCH_CALLGRIND_TXN_MESSAGES  its exactly-once run's --txn-max-messages (default 2500)
#   BENCH_REPEAT          repeats of parts 1 and 2 (default 3)
#   BENCH_PARTS           "stream snapshot latency callgrind" (default) or a subset
#   BENCH_DELIVERY        "alo eos" (default) or one of them: the relay's delivery modes
#                         (parts 1, 3, 4; ignored by a relay without --delivery)
#   BENCH_EOS_ARGS        more relay options for every exactly-once run, e.g.
#                         "--txn-interval-ms 100" (part 4 sets its own --txn-* after them)
#   BENCH_BROKERS         "mock kafka" (default) or one of them (mock alone needs no Java)
#   BENCH_TIMEOUT         seconds allowed per timed run (default 900)
#   CDC_RELAY             the relay binary (default: $(pg_config --bindir)/cdc-relay,
#                         else relay/cdc-relay of this tree)
#   CDC_RELAY_KAFKA_BROKERS  an existing Kafka cluster to use instead of starting one
#   BENCH_KEEP=1          keep the scratch directory (logs) at the end
# Smoke run (about two minutes, most of it Kafka's start and valgrind):
#   BENCH_TXNS=2000 BENCH_SNAPSHOT_ROWS=20000 BENCH_LATENCY_SECS=5 BENCH_CALLGRIND_TXNS=1000 \
#   BENCH_REPEAT=1 bash test/bench/relay.sh
# The full run (make bench-relay) takes 25-30 minutes on 2 busy cores (stream ~15, callgrind ~3).
# Exit status: 0 when every check passed (the targets are printed, not asserted).
set -euo pipefail
export LC_ALL=C

BENCH_TXNS=${BENCH_TXNS:-100000}
BENCH_SNAPSHOT_ROWS=${BENCH_SNAPSHOT_ROWS:-1000000}
BENCH_SNAPSHOT_TABLES=${BENCH_SNAPSHOT_TABLES:-4}
BENCH_SNAPSHOT_JOBS=${BENCH_SNAPSHOT_JOBS:-2}
BENCH_LATENCY_SECS=${BENCH_LATENCY_SECS:-25}
BENCH_LATENCY_RATE=${BENCH_LATENCY_RATE:-2000}
BENCH_CALLGRIND_TXNS=${BENCH_CALLGRIND_TXNS:-10000}
BENCH_CALLGRIND_TXN_MESSAGES=${BENCH_CALLGRIND_TXN_MESSAGES:-2500}
BENCH_REPEAT=${BENCH_REPEAT:-3}
BENCH_PARTS=${BENCH_PARTS:-stream snapshot latency callgrind}
BENCH_DELIVERY=${BENCH_DELIVERY:-alo eos}
BENCH_EOS_ARGS=${BENCH_EOS_ARGS:-}
BENCH_BROKERS=${BENCH_BROKERS:-mock kafka}
BENCH_TIMEOUT=${BENCH_TIMEOUT:-900}
BENCH_KEEP=${BENCH_KEEP:-0}

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
BENCH_NAME=bench-relay
# shellcheck source=test/bench/lib.sh
source "$HERE/lib.sh"

need_positive BENCH_TXNS BENCH_SNAPSHOT_ROWS BENCH_SNAPSHOT_TABLES BENCH_SNAPSHOT_JOBS \
    BENCH_LATENCY_SECS BENCH_LATENCY_RATE BENCH_CALLGRIND_TXNS BENCH_CALLGRIND_TXN_MESSAGES BENCH_REPEAT BENCH_TIMEOUT
((BENCH_SNAPSHOT_ROWS >= BENCH_SNAPSHOT_TABLES)) || die "BENCH_SNAPSHOT_ROWS must be >= BENCH_SNAPSHOT_TABLES"
[[ "$BENCH_KEEP" == 0 || "$BENCH_KEEP" == 1 ]] || die "BENCH_KEEP must be 0 or 1"
for p in $BENCH_PARTS; do
    case $p in stream|snapshot|latency|callgrind) ;; *) die "unknown part '$p' in BENCH_PARTS (stream snapshot latency callgrind)" ;; esac
done
for m in $BENCH_DELIVERY; do
    case $m in alo|eos) ;; *) die "unknown delivery mode '$m' in BENCH_DELIVERY (alo eos)" ;; esac
done
[[ -n ${BENCH_DELIVERY// /} ]] || die "BENCH_DELIVERY names no delivery mode (alo eos)"
# the brokers in a fixed order (mock first), whatever order they were given in
BROKERS=()
for b in $BENCH_BROKERS; do
    case $b in mock|kafka) ;; *) die "unknown broker '$b' in BENCH_BROKERS (mock kafka)" ;; esac
done
for b in mock kafka; do [[ " $BENCH_BROKERS " == *" $b "* ]] && BROKERS+=("$b"); done
((${#BROKERS[@]})) || die "BENCH_BROKERS names no broker (mock kafka)"
want() { [[ " $BENCH_PARTS " == *" $1 "* ]]; }
want_broker() { [[ " ${BROKERS[*]} " == *" $1 "* ]]; }

# the command that repeats this run: the sizes of the parts that run, and what differs from the defaults
INVOCATION=
VARS=()
want stream && VARS+=(BENCH_TXNS)
want snapshot && VARS+=(BENCH_SNAPSHOT_ROWS BENCH_SNAPSHOT_TABLES BENCH_SNAPSHOT_JOBS)
want latency && VARS+=(BENCH_LATENCY_SECS BENCH_LATENCY_RATE)
want callgrind && VARS+=(BENCH_CALLGRIND_TXNS)
want callgrind && ((BENCH_CALLGRIND_TXN_MESSAGES != 2500)) && VARS+=(BENCH_CALLGRIND_TXN_MESSAGES)
{ want stream || want snapshot; } && VARS+=(BENCH_REPEAT)
for v in "${VARS[@]}"; do INVOCATION+="$v=${!v} "; done
[[ "$BENCH_PARTS" != "stream snapshot latency callgrind" ]] && INVOCATION+="BENCH_PARTS='$BENCH_PARTS' "
[[ "${BROKERS[*]}" != "mock kafka" ]] && INVOCATION+="BENCH_BROKERS='${BROKERS[*]}' "
[[ "$BENCH_DELIVERY" != "alo eos" ]] && INVOCATION+="BENCH_DELIVERY='$BENCH_DELIVERY' "
[[ -n $BENCH_EOS_ARGS ]] && INVOCATION+="BENCH_EOS_ARGS='$BENCH_EOS_ARGS' "
[[ -n ${CDC_RELAY:-} ]] && INVOCATION+="CDC_RELAY=$CDC_RELAY "
want_broker kafka && [[ -n ${CDC_RELAY_KAFKA_BROKERS:-} ]] &&
    INVOCATION+="CDC_RELAY_KAFKA_BROKERS=$CDC_RELAY_KAFKA_BROKERS "
INVOCATION+="bash test/bench/relay.sh"

# ---------------------------------------------------------------- tools
bench_pg_tools
if [[ -z ${CDC_RELAY:-} ]]; then
    if [[ -x $BINDIR/cdc-relay ]]; then CDC_RELAY=$BINDIR/cdc-relay; else CDC_RELAY=$REPO/relay/cdc-relay; fi
fi
[[ -x $CDC_RELAY ]] || die "$CDC_RELAY is not an executable: run 'make && make install' first"
[[ -f $PKGLIBDIR/cdc_relay.so ]] || die "$PKGLIBDIR/cdc_relay.so is not installed: run 'make && make install' first"
[[ -f $PKGLIBDIR/wal2json.so ]] || die "wal2json is not installed (apt-get install postgresql-15-wal2json)"
for tool in kcat perl timeout setsid; do
    command -v "$tool" >/dev/null || die "$tool is missing (kcat: apt-get install kcat)"
done
want callgrind && { command -v valgrind >/dev/null || die "valgrind is missing (apt-get install valgrind, or BENCH_PARTS without callgrind)"; }

# Delivery modes (issue 9).  A relay built before them has no --delivery option and
# only one mode, today's at-least-once: it runs as "alo", without the option.
declare -A MODE_NAME=([alo]=at-least-once [eos]=exactly-once)
# (the help read whole first: grep -q stops reading at the first match, and with
# pipefail the relay's SIGPIPE would fail the test)
RELAY_HELP=$("$CDC_RELAY" --help 2>&1 || true)
if grep -q -- '--delivery' <<<"$RELAY_HELP"; then
    HAS_DELIVERY=1
    MODES=()
    for m in alo eos; do [[ " $BENCH_DELIVERY " == *" $m "* ]] && MODES+=("$m"); done
else
    HAS_DELIVERY=0
    MODES=(alo)
    log "$CDC_RELAY has no --delivery option (a relay before issue 9): at-least-once only, without the option"
fi
# delivery_opts MODE: DOPTS = the relay's options for that mode (none for a relay without
# them), BENCH_EOS_ARGS (split at blanks) added for exactly-once
delivery_opts() {
    DOPTS=()
    ((HAS_DELIVERY)) || return 0
    DOPTS=(--delivery "${MODE_NAME[$1]}")
    # shellcheck disable=SC2206
    [[ $1 == eos ]] && DOPTS+=($BENCH_EOS_ARGS)
    return 0
}
# mode_label MODE: how the report names the relay in that mode
mode_label() { if ((HAS_DELIVERY)); then echo "--delivery ${MODE_NAME[$1]}"; else echo "(no --delivery option)"; fi; }
for tool in psql pg_recvlogical pgbench createdb; do
    [[ -x $BINDIR/$tool ]] || die "$BINDIR/$tool is missing"
done
if ((EUID == 0)); then
    id postgres >/dev/null 2>&1 || die "user 'postgres' does not exist (install postgresql-15)"
fi
KAFKA_HARNESS=$REPO/test/kafka/cluster.sh
KAFKA_VERSION=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$REPO/test/kafka/pom.xml")

# ---------------------------------------------------------------- scratch server
# shellcheck source=test/lib/pg.sh
source "$HERE/../lib/pg.sh"
SCRATCH=$(pg_scratch_dir bench-relay) || die "could not create a scratch directory"
PORT=$(pg_free_port) || die "no free TCP port"
PGROUPS=()          # process groups we started (setsid): ended at cleanup
REPORTED=0          # the report is out: a failure now is a failed check, not a crash
KAFKA_DIR=          # the cluster we started (cluster.sh stop at cleanup)

cleanup() {
    local rc=$? i
    trap - EXIT INT TERM
    # Newest first: consumers and the relay stop while their broker still answers.
    for ((i = ${#PGROUPS[@]} - 1; i >= 0; i--)); do
        end_bg "${PGROUPS[i]}"
    done
    if [[ -n $KAFKA_DIR ]]; then
        [[ "$BENCH_KEEP" == 1 ]] && { cp "$KAFKA_DIR/n1.log" "$SCRATCH/kafka_n1.log" 2>/dev/null || true; }
        bash "$KAFKA_HARNESS" stop "$KAFKA_DIR" >/dev/null 2>&1 ||
            echo "bench-relay: cluster.sh stop $KAFKA_DIR failed" >&2
    fi
    if ((rc != 0 && !REPORTED)) && [[ -f "$SCRATCH/server.log" ]]; then
        echo "bench-relay: last lines of the server log:" >&2
        tail -n 15 "$SCRATCH/server.log" >&2 || true
    fi
    if [[ "$BENCH_KEEP" == 1 ]]; then
        pg_as_user "$BINDIR/pg_ctl" -D "$SCRATCH/data" -m fast -w stop >/dev/null 2>&1 || true
        echo "bench-relay: kept $SCRATCH" >&2
    else
        pg_stop || true     # stops the server, removes the scratch directory
    fi
    exit "$rc"
}

log "command: $INVOCATION"
log "initdb in $SCRATCH (port $PORT)"
pg_start "$SCRATCH" "$PORT" \
    "# ---- cdc-relay benchmark ----" \
    "synchronous_commit = off" \
    "max_wal_senders = 30" \
    "max_replication_slots = 64" \
    "shared_buffers = 512MB" \
    "max_wal_size = 20GB" \
    "checkpoint_timeout = 1h" \
    "autovacuum = off" ||
    die "server did not start"
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Clients run as the caller and connect through the socket in the scratch directory.
export PGHOST=$SCRATCH PGPORT=$PORT PGUSER=$PG_SUPERUSER PGAPPNAME=cdc_relay-bench-relay
conninfo() { echo "host=$SCRATCH port=$PORT user=$PG_SUPERUSER dbname=$1"; }

# CPU seconds (user + system) a running process has used ("-" when it is not known).
proc_cpu() {
    [[ -n ${1:-} ]] || { echo -; return 0; }
    awk -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); printf "%.3f", ($12 + $13) / hz }' "/proc/$1/stat" 2>/dev/null ||
        echo -
}
# cpu_diff A B: B - A in CPU seconds ("-" when either is unknown)
cpu_diff() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "-" || b == "-") print "-"; else printf "%.3f", b - a }'; }

# spawn LOGFILE COMMAND...: start COMMAND in a process group of its own; BG_PID = its
# pid = its group id (a background child of a script is no group leader, so setsid
# makes the new session in place, without forking).
spawn() {
    local logf=$1
    shift
    setsid "$@" </dev/null >"$logf" 2>&1 &
    BG_PID=$!
    PGROUPS+=("$BG_PID")
}
# run_wait LOGFILE COMMAND...: run COMMAND (as spawn) and wait for it; its exit status.
# Unlike a foreground command, the wait ends at once on a signal, so cleanup runs.
run_wait() {
    local rc=0
    spawn "$@"
    wait "$BG_PID" || rc=$?
    forget "$BG_PID"
    return "$rc"
}
# end_bg PID: stop a process group started with spawn (TERM, then KILL after 10 s).
end_bg() {
    local pid=$1 i
    kill -TERM -- "-$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    forget "$pid"
}
# forget PID: a process group that has ended (waited for).
forget() {
    local g keep=()
    for g in "${PGROUPS[@]}"; do [[ $g == "$1" ]] || keep+=("$g"); done
    PGROUPS=("${keep[@]}")
}

# ---------------------------------------------------------------- brokers
# Topic names: the mock starts empty for every run; on Kafka every run's topic prefix
# ends in this benchmark's tag, so that an existing cluster (CDC_RELAY_KAFKA_BROKERS)
# or a run of the benchmark next to this one never mixes its topics with ours.
KAFKA_TAG=k$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')
declare -A SFX=([mock]="" [kafka]="-$KAFKA_TAG")
declare -A BTITLE=([mock]="the test broker (cdc-relay broker: librdkafka's mock cluster, in memory, one per run)")
KAFKA_PID=
KAFKA_BS=
if want_broker kafka; then
    if [[ -n ${CDC_RELAY_KAFKA_BROKERS:-} ]]; then
        KAFKA_BS=$CDC_RELAY_KAFKA_BROKERS
        BTITLE[kafka]="the existing Kafka cluster CDC_RELAY_KAFKA_BROKERS=$KAFKA_BS (its CPU not measured)"
        log "Kafka: the existing cluster $KAFKA_BS"
    else
        log "Kafka: starting a 1-node cluster (test/kafka/cluster.sh start 1)"
        t0=$(now)
        # the watcher stops the cluster if this script is killed before its cleanup runs
        out=$(CDC_RELAY_KAFKA_OWNER=$$ bash "$KAFKA_HARNESS" start 1 2>"$SCRATCH/kafka_start.log") ||
            { tail -n 40 "$SCRATCH/kafka_start.log" >&2; die "could not start a 1-node Kafka cluster (test/kafka/cluster.sh start 1; BENCH_BROKERS=mock runs without)"; }
        KAFKA_BS=$(sed -n 1p <<<"$out")
        KAFKA_DIR=$(sed -n 2p <<<"$out")
        [[ -n $KAFKA_BS && -d $KAFKA_DIR ]] || die "cluster.sh start printed no bootstrap list and directory: $out"
        KAFKA_PID=$(cat "$KAFKA_DIR/n1.pid")
        KAFKA_JVM=$(tr '\0' '\n' <"/proc/$KAFKA_PID/cmdline" | grep -E '^-X' | tr '\n' ' ')
        BTITLE[kafka]="Apache Kafka $KAFKA_VERSION (1 node, KRaft, test/kafka/cluster.sh start 1)"
        KAFKA_START_SECS=$(elapsed "$t0" "$(now)")
        log "Kafka: ready at $KAFKA_BS in ${KAFKA_START_SECS}s ($KAFKA_DIR)"
    fi
fi

# broker_start B [ARGS...]: the broker of kind B for one run; sets BS (bootstrap list).
#   mock:  a fresh `cdc-relay broker ARGS` (BROKER_PID)
#   kafka: the cluster started above, shared by every run (ARGS ignored)
BROKER_N=0
broker_start() {
    local b=$1 out i
    shift
    BROKER_PID=
    if [[ $b == kafka ]]; then
        BS=$KAFKA_BS
        BROKER_CPU0=$(proc_cpu "$KAFKA_PID")
        return 0
    fi
    BROKER_N=$((BROKER_N + 1))
    out="$SCRATCH/broker$BROKER_N.out"
    setsid "$CDC_RELAY" broker "$@" </dev/null >"$out" 2>"$SCRATCH/broker$BROKER_N.err" &
    BROKER_PID=$!
    PGROUPS+=("$BROKER_PID")
    BS=
    for ((i = 0; i < 100; i++)); do
        BS=$(head -n 1 "$out" 2>/dev/null || true)
        [[ -n $BS ]] && break
        kill -0 "$BROKER_PID" 2>/dev/null || break
        sleep 0.05
    done
    [[ -n $BS ]] || { cat "$SCRATCH/broker$BROKER_N.err" >&2; die "cdc-relay broker did not print its bootstrap list"; }
}
# broker_stop: ends the run's broker (the mock; Kafka runs on); sets BROKER_CPU, the
# CPU seconds the broker used: the mock's whole life, Kafka's since broker_start.
broker_stop() {
    if [[ -z $BROKER_PID ]]; then
        BROKER_CPU=$(cpu_diff "$BROKER_CPU0" "$(proc_cpu "$KAFKA_PID")")
        return 0
    fi
    BROKER_CPU=$(proc_cpu "$BROKER_PID")
    end_bg "$BROKER_PID"
}

# topic_messages TOPIC [read]: messages in TOPIC on the current broker.  By default
# the sum over partitions of the last offset + 1 (the mock broker keeps only the newest
# ~5 MiB per partition, the offsets still count everything; an idempotent producer
# that is not transactional leaves no control records between the offsets).  With
# "read": the topic read to its end, read_committed (a transactional producer's
# commit markers take offsets too; not on the mock, which keeps too little).
topic_messages() {
    if [[ ${2:-} == read ]]; then
        timeout 300 kcat -C -b "$BS" -t "$1" -o beginning -e -q -f '\n' -X isolation.level=read_committed \
            -X fetch.wait.max.ms=10 2>/dev/null | wc -l
        return 0
    fi
    timeout 60 kcat -C -b "$BS" -t "$1" -o -1 -e -q -f '%o\n' -X fetch.wait.max.ms=10 2>/dev/null |
        awk '{ s += $1 + 1 } END { print s + 0 }'
}

CHECK_ERRORS=0
check() {   # check DESCRIPTION GOT EXPECTED
    if [[ "$2" == "$3" ]]; then
        log "check ok: $1 = $2"
    else
        log "CHECK FAILED: $1: got $2, expected $3"
        CHECK_ERRORS=$((CHECK_ERRORS + 1))
    fi
}

T_START=$(now)
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
RELAY_VERSION=$("$CDC_RELAY" --version 2>&1)
KCAT_VERSION=$(kcat -V 2>&1 | sed -n 's/^Version \([^ ]*\).*/\1/p')

# ================================================================ 1. streaming
# SECS CPU BCPU keyed "KIND,BROKER" (the ceiling: "ceiling,-"); KTXN[BROKER]: the
# exactly-once runs' Kafka transactions (records in the state topic)
declare -A SECS CPU BCPU KTXN
if want stream; then
    "$BINDIR/createdb" -T template0 bench
    psql_q -d bench -f "$HERE/schema.sql" >/dev/null
    for ((r = 1; r <= BENCH_REPEAT; r++)); do
        sql bench "SELECT pg_create_logical_replication_slot('w2_ceiling_r$r', 'cdc_relay')" >/dev/null
        sql bench "SELECT pg_create_logical_replication_slot('w2_ceilingb_r$r', 'cdc_relay')" >/dev/null
        for b in "${BROKERS[@]}"; do
            for m in "${MODES[@]}"; do
                sql bench "SELECT pg_create_logical_replication_slot('w2_${m}_${b}_r$r', 'cdc_relay')" >/dev/null
            done
            sql bench "SELECT pg_create_logical_replication_slot('w2_naive_${b}_r$r', 'wal2json')" >/dev/null
        done
    done
    START_LSN=$(sql bench "SELECT pg_current_wal_insert_lsn()")
    log "W2: $BENCH_TXNS transactions x (6 inserts, 3 updates, 1 delete)"
    t0=$(now)
    run_wait "$SCRATCH/w2.log" "$BINDIR/psql" -X -q -A -t -v ON_ERROR_STOP=1 -d bench -v txns="$BENCH_TXNS" \
        -f "$HERE/w2.sql" || { cat "$SCRATCH/w2.log" >&2; die "the W2 workload failed"; }
    t1=$(now)
    # The insert position (pg_current_wal_lsn() can lag behind asynchronous commits);
    # wait until it is flushed so no run waits for the WAL writer; checkpoint now rather
    # than during a timed run.
    END_LSN=$(sql bench "SELECT pg_current_wal_insert_lsn()")
    until [[ $(sql bench "SELECT pg_current_wal_flush_lsn() >= '$END_LSN'::pg_lsn") == t ]]; do sleep 0.1; done
    sql bench "CHECKPOINT"
    W2_WAL=$(sql bench "SELECT pg_wal_lsn_diff('$END_LSN', '$START_LSN')")
    W2_CHANGES=$((10 * BENCH_TXNS))
    log "W2 took $(elapsed "$t0" "$t1")s, $((W2_WAL / 1048576)) MB of WAL, end LSN $END_LSN"

    # stream_run KIND BROKER REPEAT: one timed run (BROKER "-" for the ceiling; KIND
    # ceiling, naive, or the relay in a delivery mode: alo, eos); adds to
    # SECS CPU BCPU["KIND,BROKER"].
    stream_run() {
        local kind=$1 b=$2 r=$3 t0 t1 c0 c1 rc=0 n slot prefix topic how=
        local logf="$SCRATCH/${kind}_${b/-/none}_r$r.log"
        if [[ $kind == ceiling* ]]; then slot=w2_${kind}_r$r; else slot=w2_${kind}_${b}_r$r; fi
        [[ $b != - ]] && broker_start "$b"
        prefix="w2$kind$r${SFX[$b]:-}"
        [[ $kind == alo || $kind == eos ]] && delivery_opts "$kind"
        topic="w2naive$r${SFX[$b]:-}"
        children_cpu c0
        t0=$(now)
        case $kind in
            ceiling)
                spawn "$logf" timeout "$BENCH_TIMEOUT" "$BINDIR/pg_recvlogical" -d "$(conninfo bench)" -S "$slot" \
                    --start --endpos "$END_LSN" --no-loop -F 0 -o key-prefix=true -f /dev/null ;;
            ceilingb)
                # the plugin options the relay itself uses
                spawn "$logf" timeout "$BENCH_TIMEOUT" "$BINDIR/pg_recvlogical" -d "$(conninfo bench)" -S "$slot" \
                    --start --endpos "$END_LSN" --no-loop -F 0 -o key-prefix=true -o batch-events=true -f /dev/null ;;
            alo|eos)
                spawn "$logf" timeout "$BENCH_TIMEOUT" "$CDC_RELAY" run -d "$(conninfo bench)" -b "$BS" -S "$slot" \
                    --topic-prefix "$prefix" --snapshot never --endpos "$END_LSN" \
                    --heartbeat-interval 0 --status-interval 1 "${DOPTS[@]}" ;;
            naive)
                spawn "$logf" timeout "$BENCH_TIMEOUT" bash -o pipefail -c '"$1" -d "$2" -S "$3" --start --endpos "$4" \
                        --no-loop -F 0 -o format-version=2 -f - | kcat -P -b "$5" -t "$6" -X acks=all' \
                    naive "$BINDIR/pg_recvlogical" "$(conninfo bench)" "$slot" "$END_LSN" "$BS" "$topic" ;;
        esac
        wait "$BG_PID" || rc=$?
        t1=$(now)
        children_cpu c1
        forget "$BG_PID"
        if ((rc != 0)); then
            tail -n 20 "$logf" >&2
            ((rc == 124)) && die "$kind ($b): did not reach $END_LSN within ${BENCH_TIMEOUT}s"
            die "$kind ($b) exited with status $rc (log above)"
        fi
        SECS[$kind,$b]+="$(elapsed "$t0" "$t1") "
        CPU[$kind,$b]+="$(cpu_diff "$c0" "$c1") "
        case $kind in
            alo|eos)
                # exactly-once on Kafka: commit markers between the offsets
                [[ $kind == eos && $b == kafka ]] && how=read
                n=$(sed -n 's/.*confirmed up to .* transactions, \([0-9]*\) events.*/\1/p' "$logf" | tail -n 1)
                check "relay $kind run $r ($b): events the relay logged" "${n:--}" "$W2_CHANGES"
                check "relay $kind run $r ($b): messages in topic $prefix.public.bench_w2" \
                    "$(topic_messages "$prefix.public.bench_w2" $how)" "$((11 * BENCH_TXNS))"
                if ((HAS_DELIVERY)); then
                    check "relay $kind run $r ($b): records in topic $prefix.transactions" \
                        "$(topic_messages "$prefix.transactions" $how)" "$((2 * BENCH_TXNS))"
                fi
                # exactly-once: one checkpoint record per Kafka transaction
                [[ $kind == eos ]] && KTXN[$b]+="$(topic_messages "$prefix.__state" $how) "
                cp "$logf" "$SCRATCH/relay_${kind}_${b}_last.log" ;;
            naive)
                check "naive run $r ($b): messages in topic $topic" "$(topic_messages "$topic")" "$((12 * BENCH_TXNS))" ;;
        esac
        if [[ $b != - ]]; then
            broker_stop
            BCPU[$kind,$b]+="$BROKER_CPU "
        fi
        sql bench "SELECT pg_drop_replication_slot('$slot')" >/dev/null
        if [[ $b == - ]]; then log "stream run $r: $kind $(elapsed "$t0" "$t1")s"
        else log "stream run $r: $kind ($b) $(elapsed "$t0" "$t1")s"; fi
    }
    for ((r = 1; r <= BENCH_REPEAT; r++)); do
        stream_run ceiling - "$r"
        stream_run ceilingb - "$r"
        for b in "${BROKERS[@]}"; do
            # the delivery modes back to back, which one first alternating per repeat
            if ((r % 2)); then order=("${MODES[@]}"); else order=(); for m in "${MODES[@]}"; do order=("$m" "${order[@]}"); done; fi
            for m in "${order[@]}"; do stream_run "$m" "$b" "$r"; done
        done
        for b in "${BROKERS[@]}"; do stream_run naive "$b" "$r"; done
    done
    "$BINDIR/dropdb" bench     # its WAL stays; the other parts do not read it
fi

# ================================================================ 2. snapshot
# SNAP keyed by measure (copy copyN json: no broker) or "measure,BROKER"
declare -A SNAP
if want snapshot; then
    "$BINDIR/createdb" -T template0 snap
    sql snap "CREATE EXTENSION cdc_relay"
    per=$((BENCH_SNAPSHOT_ROWS / BENCH_SNAPSHOT_TABLES))
    SNAP_TABLES=()
    for ((i = 1; i <= BENCH_SNAPSHOT_TABLES; i++)); do
        n=$per
        ((i == BENCH_SNAPSHOT_TABLES)) && n=$((BENCH_SNAPSHOT_ROWS - per * (BENCH_SNAPSHOT_TABLES - 1)))
        SNAP_TABLES+=("snap_$i")
        cat >"$SCRATCH/snap_$i.sql" <<SQL
CREATE TABLE snap_$i (id bigint PRIMARY KEY, a int NOT NULL, b text NOT NULL, c timestamptz NOT NULL, d numeric NOT NULL);
INSERT INTO snap_$i
SELECT g, (g * 7919) % 1000000, 'row ' || g || ' of table $i, some text', timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second',
       round(g * 1.2345, 4)
FROM generate_series(1, $n) AS g;
SQL
        run_wait "$SCRATCH/snap_load.log" "$BINDIR/psql" -X -q -v ON_ERROR_STOP=1 -d snap -f "$SCRATCH/snap_$i.sql" ||
            { cat "$SCRATCH/snap_load.log" >&2; die "loading snap_$i failed"; }
    done
    log "snapshot tables: ${#SNAP_TABLES[@]} x ~$per rows, $(sql snap "SELECT pg_size_pretty(sum(pg_table_size(c.oid))) FROM pg_class c WHERE relname LIKE 'snap\_%' AND relkind = 'r'")"
    sql snap "VACUUM (FREEZE, ANALYZE)"

    copy_seq() {
        local t
        for t in "${SNAP_TABLES[@]}"; do psql_q -d snap -c "COPY $t TO STDOUT" >/dev/null; done
    }
    # copy_par [json]: the tables dealt round-robin to BENCH_SNAPSHOT_JOBS concurrent psql
    # processes; with "json", each reads the relay's own snapshot query instead of the table.
    copy_par() {
        local j i pids=() list rc=0 q
        for ((j = 0; j < BENCH_SNAPSHOT_JOBS; j++)); do
            list=()
            for ((i = j; i < ${#SNAP_TABLES[@]}; i += BENCH_SNAPSHOT_JOBS)); do list+=("${SNAP_TABLES[$i]}"); done
            ((${#list[@]})) || continue
            (
                for t in "${list[@]}"; do
                    q="COPY $t TO STDOUT"
                    [[ ${1:-} == json ]] &&
                        q="COPY (SELECT cdc_relay.snapshot_row('$t'::regclass, t.*, '$SNAP_LSN', '{}'::text[]) FROM ONLY $t t) TO STDOUT (FORMAT binary)"
                    psql_q -d snap -c "$q" >/dev/null || exit 1
                done
            ) &
            pids+=($!)
        done
        for j in "${pids[@]}"; do wait "$j" || rc=1; done
        return $rc
    }
    # snap_relay BROKER REPEAT: one timed `cdc-relay run --snapshot initial-only`
    snap_relay() {
        local b=$1 r=$2 logf="$SCRATCH/snapshot_$1_r$2.log" rc=0 t0 t1 c0 c1 n m t
        local prefix="snap$r${SFX[$b]}" slot="snap_${b}_r$r"
        broker_start "$b"
        children_cpu c0
        t0=$(now)
        spawn "$logf" timeout "$BENCH_TIMEOUT" "$CDC_RELAY" run -d "$(conninfo snap)" -b "$BS" -S "$slot" \
            --topic-prefix "$prefix" --snapshot initial-only --snapshot-jobs "$BENCH_SNAPSHOT_JOBS"
        wait "$BG_PID" || rc=$?
        t1=$(now)
        children_cpu c1
        forget "$BG_PID"
        if ((rc != 0)); then
            tail -n 20 "$logf" >&2
            die "cdc-relay --snapshot initial-only ($b) exited with status $rc (log above)"
        fi
        SNAP[relay,$b]+="$(elapsed "$t0" "$t1") "
        SNAP[relaycpu,$b]+="$(cpu_diff "$c0" "$c1") "
        n=$(sed -n 's/.*snapshot complete: \([0-9]*\) rows.*/\1/p' "$logf" | tail -n 1)
        check "snapshot run $r ($b): rows the relay logged" "${n:--}" "$BENCH_SNAPSHOT_ROWS"
        m=0
        for t in "${SNAP_TABLES[@]}"; do m=$((m + $(topic_messages "$prefix.public.$t"))); done
        check "snapshot run $r ($b): messages in the $prefix.public.snap_* topics" "$m" "$BENCH_SNAPSHOT_ROWS"
        SNAP[relayown,$b]+="$(sed -n 's/.*snapshot complete: .* in \([0-9.]*\) s .*/\1/p' "$logf" | tail -n 1) "
        cp "$logf" "$SCRATCH/snapshot_${b}_last.log"
        broker_stop
        SNAP[brokercpu,$b]+="$BROKER_CPU "
        sql snap "SELECT pg_drop_replication_slot('$slot')" >/dev/null
        log "snapshot run $r: relay ($b) $(elapsed "$t0" "$t1")s"
    }
    SNAP_LSN=$(sql snap "SELECT pg_current_wal_lsn()")
    for ((r = 1; r <= BENCH_REPEAT; r++)); do
        t0=$(now); copy_seq; t1=$(now)
        SNAP[copy]+="$(elapsed "$t0" "$t1") "
        log "snapshot run $r: COPY sequential $(elapsed "$t0" "$t1")s"
        t0=$(now); copy_par; t1=$(now)
        SNAP[copyN]+="$(elapsed "$t0" "$t1") "
        log "snapshot run $r: COPY x$BENCH_SNAPSHOT_JOBS $(elapsed "$t0" "$t1")s"
        t0=$(now); copy_par json; t1=$(now)
        SNAP[json]+="$(elapsed "$t0" "$t1") "
        log "snapshot run $r: COPY (snapshot_row) x$BENCH_SNAPSHOT_JOBS $(elapsed "$t0" "$t1")s"
        for b in "${BROKERS[@]}"; do snap_relay "$b" "$r"; done
    done
fi

# ================================================================ 3. latency
# LAT["BROKER,MODE"] = the reader's summary line; LAT_TPS LAT_RELAY_CPU LAT_BROKER_CPU alike
declare -A LAT LAT_TPS LAT_RELAY_CPU LAT_BROKER_CPU LAT_KTXN
if want latency; then
    "$BINDIR/createdb" -T template0 lat
    sql lat "CREATE TABLE lat_t (id bigserial PRIMARY KEY, v int NOT NULL)"
    echo 'INSERT INTO lat_t (v) VALUES (1);' >"$SCRATCH/lat.sql"

    # The reader: stamps each line with its own clock as it arrives; line 1 (the warm-up
    # row) creates READY; the row with v = -1 (written after pgbench) ends the stream.
    cat >"$SCRATCH/lat_reader.pl" <<'PERL'
use strict;
use warnings;
use Time::HiRes qw(time);
use Time::Local qw(timegm);

my ($ready, $out) = @ARGV;
my (@total, @to_producer, @to_consumer);
my $n = 0;
my $sentinel = 0;
while (defined(my $line = <STDIN>)) {
    my $now = time;     # seconds since the epoch, microsecond resolution
    $n++;
    if ($n == 1) {
        open(my $f, '>', $ready) or die "$ready: $!";
        close($f);
        next;
    }
    chomp $line;
    my ($created_ms, $value) = split /\t/, $line, 2;
    if ($value =~ /"after":\{"id":\d+,"v":-1\}/) {
        $sentinel = 1;
        last;
    }
    $value =~ /"ts":"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(\.\d+)?\+00:00"\}$/
        or die "no commit timestamp in: $value\n";
    my $ts = timegm($6, $5, $4, $3, $2 - 1, $1) + ($7 // 0);
    push @total, ($now - $ts) * 1000;
    push @to_producer, $created_ms - $ts * 1000;
    push @to_consumer, $now * 1000 - $created_ms;
}
sub pct {
    my ($p, @v) = @_;
    return '-' unless @v;
    @v = sort { $a <=> $b } @v;
    my $i = int($p * @v + 0.999999) - 1;
    $i = 0 if $i < 0;
    return sprintf('%.1f', $v[$i]);
}
open(my $f, '>', "$out.tmp") or die "$out: $!";
printf $f "%d %d %s %s %s %s %s %s %s\n", scalar(@total), $sentinel,
    pct(0.5, @total), pct(0.99, @total), pct(1, @total),
    pct(0.5, @to_producer), pct(0.99, @to_producer), pct(0.5, @to_consumer), pct(0.99, @to_consumer);
close($f);
rename("$out.tmp", $out) or die "$out: $!";
PERL

    # lat_run BROKER MODE: one latency run (its own slot, created now, and its own topic)
    lat_run() {
        local b=$1 m=$2 relay consumer i r0 r1 b0 b1 txns n
        local prefix="lat$m${SFX[$1]}" slot="lat_$1_$m" k="$1,$2" tag="$1_$2"
        local topic="$prefix.public.lat_t" ready="$SCRATCH/lat_$tag.ready" out="$SCRATCH/lat_$tag.out"
        local rlog="$SCRATCH/lat_relay_$tag.log" clog="$SCRATCH/lat_consumer_$tag.log"
        delivery_opts "$m"
        sql lat "SELECT pg_create_logical_replication_slot('$slot', 'cdc_relay')" >/dev/null
        if [[ $b == kafka ]]; then
            broker_start kafka
            run_wait "$SCRATCH/lat_topic_$tag.log" bash "$KAFKA_HARNESS" admin "$BS" create-topic "$topic" 1 1 ||
                { cat "$SCRATCH/lat_topic_$tag.log" >&2; die "could not create the Kafka topic $topic"; }
        else
            broker_start mock --partitions 1 --topic "$topic"
        fi
        spawn "$rlog" "$CDC_RELAY" run -d "$(conninfo lat)" -b "$BS" -S "$slot" --topic-prefix "$prefix" \
            --snapshot never --heartbeat-interval 0 --status-interval 1 "${DOPTS[@]}"
        relay=$BG_PID
        for ((i = 0; i < 300; i++)); do
            grep -qs 'streaming from slot' "$rlog" && break
            kill -0 "$relay" 2>/dev/null || { cat "$rlog" >&2; die "the relay ($b, $m) exited"; }
            sleep 0.1
        done
        grep -qs 'streaming from slot' "$rlog" || die "the relay ($b, $m) did not start streaming"
        spawn "$clog" bash -o pipefail -c 'kcat -C -b "$1" -t "$2" -o beginning -u -q \
                -X fetch.wait.max.ms=5 -X isolation.level=read_committed -f "%T\t%s\n" | perl "$3" "$4" "$5"' \
            consumer "$BS" "$topic" "$SCRATCH/lat_reader.pl" "$ready" "$out"
        consumer=$BG_PID
        sql lat "INSERT INTO lat_t (v) VALUES (0)"      # warm-up: relay, topic and consumer are ready
        for ((i = 0; i < 300; i++)); do
            [[ -e $ready ]] && break
            sleep 0.1
        done
        [[ -e $ready ]] || { cat "$clog" >&2; die "the warm-up row did not reach the consumer ($b, $m)"; }

        log "latency ($b, ${MODE_NAME[$m]}): pgbench -R $BENCH_LATENCY_RATE for ${BENCH_LATENCY_SECS}s while the relay streams"
        r0=$(proc_cpu "$relay")
        b0=$(proc_cpu "${BROKER_PID:-$KAFKA_PID}")
        run_wait "$SCRATCH/pgbench_$tag.out" env PGOPTIONS='-c synchronous_commit=on' "$BINDIR/pgbench" -n \
            -h "$SCRATCH" -p "$PORT" -U "$PG_SUPERUSER" -f "$SCRATCH/lat.sql" -c 4 -j 2 \
            -R "$BENCH_LATENCY_RATE" -T "$BENCH_LATENCY_SECS" lat || { cat "$SCRATCH/pgbench_$tag.out" >&2; die "pgbench failed"; }
        txns=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$SCRATCH/pgbench_$tag.out")
        LAT_TPS[$k]=$(sed -n 's/^tps = \([0-9]*\).*/\1/p' "$SCRATCH/pgbench_$tag.out" | head -n 1)
        sql lat "INSERT INTO lat_t (v) VALUES (-1)"     # the end of the stream
        for ((i = 0; i < 600; i++)); do
            [[ -s $out ]] && break
            sleep 0.1
        done
        [[ -s $out ]] || { cat "$clog" >&2; die "the consumer ($b, $m) did not see the end of the stream"; }
        r1=$(proc_cpu "$relay")
        b1=$(proc_cpu "${BROKER_PID:-$KAFKA_PID}")
        LAT[$k]=$(cat "$out")
        # exactly-once: one checkpoint record per Kafka transaction (read_committed on Kafka: markers)
        if [[ $m == eos ]]; then
            if [[ $b == kafka ]]; then LAT_KTXN[$k]=$(topic_messages "$prefix.__state" read)
            else LAT_KTXN[$k]=$(topic_messages "$prefix.__state"); fi
        fi
        read -r n _ <<<"${LAT[$k]}"
        check "latency ($b, ${MODE_NAME[$m]}): events the consumer received" "$n" "$txns"
        end_bg "$consumer"
        end_bg "$relay"
        grep -q 'cdc-relay exiting with status 0' "$rlog" ||
            { tail -n 5 "$rlog" >&2; check "latency ($b, ${MODE_NAME[$m]}): relay exit status" "not 0" 0; }
        broker_stop
        sql lat "SELECT pg_drop_replication_slot('$slot')" >/dev/null
        LAT_RELAY_CPU[$k]=$(cpu_diff "$r0" "$r1")
        LAT_BROKER_CPU[$k]=$(cpu_diff "$b0" "$b1")
    }
    # exactly-once first: the run the target is about
    LAT_MODES=()
    for m in eos alo; do [[ " ${MODES[*]} " == *" $m "* ]] && LAT_MODES+=("$m"); done
    for b in "${BROKERS[@]}"; do
        for m in "${LAT_MODES[@]}"; do lat_run "$b" "$m"; done
    done
fi

# ================================================================ 4. callgrind
# CG_IR[MODE] = the relay's instructions (Ir), all threads; CG_MAIN[MODE] its main thread's;
# CG_THREADS[MODE] = threads profiled; CG_SECS[MODE] = wall seconds under valgrind
declare -A CG_IR CG_MAIN CG_THREADS CG_SECS
CG_KTXN=-   # the exactly-once run's Kafka transactions (checkpoint records)
if want callgrind; then
    "$BINDIR/createdb" -T template0 cg
    psql_q -d cg -f "$HERE/schema.sql" >/dev/null
    for m in "${MODES[@]}"; do
        sql cg "SELECT pg_create_logical_replication_slot('cg_$m', 'cdc_relay')" >/dev/null
    done
    log "callgrind: W2 with $BENCH_CALLGRIND_TXNS transactions"
    run_wait "$SCRATCH/cg_w2.log" "$BINDIR/psql" -X -q -A -t -v ON_ERROR_STOP=1 -d cg -v txns="$BENCH_CALLGRIND_TXNS" \
        -f "$HERE/w2.sql" || { cat "$SCRATCH/cg_w2.log" >&2; die "the W2 workload (callgrind) failed"; }
    CG_END=$(sql cg "SELECT pg_current_wal_insert_lsn()")
    until [[ $(sql cg "SELECT pg_current_wal_flush_lsn() >= '$CG_END'::pg_lsn") == t ]]; do sleep 0.1; done
    CG_CHANGES=$((10 * BENCH_CALLGRIND_TXNS))
    for m in "${MODES[@]}"; do
        delivery_opts "$m"
        # exactly-once: Kafka transactions by size, not by the clock (valgrind's slowdown
        # would multiply them): the same number of commits whatever the machine's load
        [[ $m == eos ]] && DOPTS+=(--txn-interval-ms 600000 --txn-max-messages "$BENCH_CALLGRIND_TXN_MESSAGES")
        broker_start mock
        cgout="$SCRATCH/callgrind.$m.out"
        logf="$SCRATCH/callgrind_$m.log"
        log "callgrind: the relay under valgrind, $(mode_label "$m")"
        t0=$(now)
        run_wait "$logf" timeout "$BENCH_TIMEOUT" valgrind --tool=callgrind --separate-threads=yes \
            --callgrind-out-file="$cgout" "$CDC_RELAY" run -d "$(conninfo cg)" -b "$BS" -S "cg_$m" \
            --topic-prefix "cg$m" --snapshot never --endpos "$CG_END" --heartbeat-interval 0 \
            --status-interval 1 "${DOPTS[@]}" ||
            { tail -n 20 "$logf" >&2; die "the relay under valgrind ($m) failed (log above)"; }
        t1=$(now)
        CG_SECS[$m]=$(elapsed "$t0" "$t1")
        # one profile per thread, $cgout-01 (the relay's main thread), -02 ...; in each,
        # "totals:" (or "summary:") is the thread's instruction count
        CG_IR[$m]=0
        CG_MAIN[$m]=
        CG_THREADS[$m]=0
        for f in "$cgout"-[0-9]*; do
            [[ -f $f ]] || continue
            n=$(sed -n 's/^\(summary\|totals\): *\([0-9][0-9]*\).*/\2/p' "$f" | tail -n 1)
            [[ -n $n ]] || die "no total in the callgrind profile $f"
            CG_IR[$m]=$((CG_IR[$m] + n))
            CG_THREADS[$m]=$((CG_THREADS[$m] + 1))
            [[ $f == "$cgout-01" ]] && CG_MAIN[$m]=$n
        done
        [[ -n ${CG_MAIN[$m]} ]] || die "no callgrind profile $cgout-01 (valgrind: $logf)"
        n=$(sed -n 's/.*confirmed up to .* transactions, \([0-9]*\) events.*/\1/p' "$logf" | tail -n 1)
        check "callgrind $m: events the relay logged" "${n:--}" "$CG_CHANGES"
        check "callgrind $m: messages in topic cg$m.public.bench_w2" \
            "$(topic_messages "cg$m.public.bench_w2")" "$((11 * BENCH_CALLGRIND_TXNS))"
        [[ $m == eos ]] && CG_KTXN=$(topic_messages "cg$m.__state")
        broker_stop
        sql cg "SELECT pg_drop_replication_slot('cg_$m')" >/dev/null
        log "callgrind $m: $(rate "${CG_IR[$m]}" "$CG_CHANGES") instructions per change, main thread $(rate "${CG_MAIN[$m]}" "$CG_CHANGES") (${CG_SECS[$m]}s)"
    done
    "$BINDIR/dropdb" cg
fi
T_END=$(now)

# ================================================================ report
echo
echo "cdc-relay benchmark, $(date -u +%Y-%m-%dT%H:%MZ)"
echo "command: $INVOCATION"
echo "machine: $(nproc) CPUs, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1), $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), Linux $(uname -r)"
echo "relay: $CDC_RELAY ($RELAY_VERSION$( ((HAS_DELIVERY)) || echo ', no --delivery option: at-least-once only'))"
echo "versions: $PGVERSION; $RELAY_VERSION; kcat $KCAT_VERSION; wal2json $(dpkg-query -W -f='${Version}' postgresql-15-wal2json 2>/dev/null || echo '?')"
echo "load average before: $LOAD_BEFORE   after: $(cut -d' ' -f1-3 /proc/loadavg)   (a shared machine: other load skews the numbers)"
echo "server: fsync=off synchronous_commit=off (latency writer: on) shared_buffers=512MB"
echo "brokers:"
want_broker mock && echo "  mock:  ${BTITLE[mock]}"
if want_broker kafka; then
    echo "  kafka: ${BTITLE[kafka]}"
    [[ -n $KAFKA_DIR ]] &&
        echo "         one for the whole benchmark (started in ${KAFKA_START_SECS}s, not in the total time), JVM options ${KAFKA_JVM% };" &&
        echo "         the topics of each run are new (created at first use, inside the timed run)"
fi
echo "seconds = median of $BENCH_REPEAT run(s); cpu = CPU seconds (user+sys) of the client processes (median),"
echo "broker = CPU seconds of the broker process during the run (median); ratio = the first named over the second"

if want stream; then
    echo
    printf '1. Streaming, W2: %d transactions x 10 changes = %d changes, %.0f MB of WAL\n' \
        "$BENCH_TXNS" "$W2_CHANGES" "$(awk -v b="$W2_WAL" 'BEGIN { print b / 1048576 }')"
    s_ceil=$(median "${SECS[ceiling,-]}")
    s_ceilb=$(median "${SECS[ceilingb,-]}")
    for b in "${BROKERS[@]}"; do
        echo "   into ${BTITLE[$b]}"
        printf '   %-52s %8s %10s %7s %7s  %s\n' path seconds changes/s cpu broker "runs (s)"
        for kind in ceiling ceilingb "${MODES[@]}" naive; do
            k=$kind,$b
            case $kind in
                ceiling) name="ceiling: pg_recvlogical cdc_relay > /dev/null"; k=ceiling,- ;;
                ceilingb) name="ceiling, batch-events (the relay's options)"; k=ceilingb,- ;;
                alo|eos) name="cdc-relay run --endpos $(mode_label "$kind")" ;;
                naive)   name="naive: pg_recvlogical wal2json | kcat -P" ;;
            esac
            printf '   %-52s %8.3f %10s %7s %7s  %s\n' "$name" "$(median "${SECS[$k]}")" \
                "$(rate "$W2_CHANGES" "$(median "${SECS[$k]}")")" "$(median "${CPU[$k]}")" \
                "$(median "${BCPU[$k]:--}")" "${SECS[$k]% }"
        done
        s_naive=$(median "${SECS[naive,$b]}")
        for m in "${MODES[@]}"; do
            s_relay=$(median "${SECS[$m,$b]}")
            rc_ratio=$(ratio "$s_ceil" "$s_relay")
            rb_ratio=$(ratio "$s_ceilb" "$s_relay")
            rn_ratio=$(ratio "$s_naive" "$s_relay")
            if [[ $m == alo ]]; then
                echo "   ${MODE_NAME[$m]} / ceiling = $rc_ratio (target >= 0.85x: $(verdict "$rc_ratio" '>=' 0.85))   / ceiling with batch-events = $rb_ratio ($(verdict "$rb_ratio" '>=' 0.85))   / naive = $rn_ratio (target >= 1.3x: $(verdict "$rn_ratio" '>=' 1.3))"
            else
                echo "   ${MODE_NAME[$m]} / ceiling = $rc_ratio   / ceiling with batch-events = $rb_ratio   / naive = $rn_ratio"
            fi
        done
        if [[ " ${MODES[*]} " == *" alo "* && " ${MODES[*]} " == *" eos "* ]]; then
            # per repeat: the two modes ran back to back, under the same load
            read -ra A <<<"${SECS[alo,$b]}"
            read -ra E <<<"${SECS[eos,$b]}"
            per=()
            for ((i = 0; i < ${#A[@]}; i++)); do per+=("$(ratio "${A[i]}" "${E[i]}")"); done
            eo=$(median "${per[*]//x/}")
            [[ $eo != - ]] && eo=$(printf '%.2fx' "$eo")
            kt=$(median "${KTXN[$b]:-}")
            [[ $kt != - ]] && kt=$(printf '%.0f' "$kt")
            echo "   exactly-once: $kt Kafka transactions per run (median; runs: ${KTXN[$b]% }), $(rate "$W2_CHANGES" "$kt") changes each"
            echo "   exactly-once / at-least-once = $eo (median of the repeats' ratios: ${per[*]}; of the medians: $(ratio "$(median "${SECS[alo,$b]}")" "$(median "${SECS[eos,$b]}")"))   target >= 0.90x: $(verdict "$eo" '>=' 0.9)"
        fi
    done
    if want_broker mock && want_broker kafka; then
        for m in "${MODES[@]}"; do
            echo "   Kafka / test broker, changes/s: ${MODE_NAME[$m]} $(ratio "$(median "${SECS[$m,mock]}")" "$(median "${SECS[$m,kafka]}")")"
        done
        echo "   Kafka / test broker, changes/s: naive $(ratio "$(median "${SECS[naive,mock]}")" "$(median "${SECS[naive,kafka]}")")"
    fi
    echo "   ratio = the first named's changes/s over the second's; the relay runs with its defaults otherwise"
    if [[ -n $BENCH_EOS_ARGS ]]; then
        echo "   (acks=all, idempotent producer; exactly-once with $BENCH_EOS_ARGS)"
    else
        echo "   (acks=all, idempotent producer; exactly-once: its default --txn-interval-ms and --txn-max-messages)"
    fi
    echo "   (the ceiling needs no broker: the same runs in both tables)"
fi

if want snapshot; then
    echo
    printf '2. Snapshot: %d rows in %d tables (id bigint pk, a int, b text, c timestamptz, d numeric), %d jobs\n' \
        "$BENCH_SNAPSHOT_ROWS" "$BENCH_SNAPSHOT_TABLES" "$BENCH_SNAPSHOT_JOBS"
    s_copy=$(median "${SNAP[copy]}")
    s_copyn=$(median "${SNAP[copyN]}")
    s_json=$(median "${SNAP[json]}")
    for b in "${BROKERS[@]}"; do
        echo "   into ${BTITLE[$b]}"
        printf '   %-55s %8s %10s %7s  %s\n' path seconds rows/s ratio "runs (s)"
        s_relay=$(median "${SNAP[relay,$b]}")
        printf '   %-55s %8.3f %10s %7s  %s\n' \
            "cdc-relay run --snapshot initial-only --snapshot-jobs $BENCH_SNAPSHOT_JOBS" "$s_relay" \
            "$(rate "$BENCH_SNAPSHOT_ROWS" "$s_relay")" "" "${SNAP[relay,$b]% }"
        printf '   %-55s %8.3f %10s %7s  %s\n' "psql COPY TO STDOUT > /dev/null, sequential" "$s_copy" \
            "$(rate "$BENCH_SNAPSHOT_ROWS" "$s_copy")" "$(ratio "$s_copy" "$s_relay")" "${SNAP[copy]% }"
        printf '   %-55s %8.3f %10s %7s  %s\n' "psql COPY TO STDOUT > /dev/null, $BENCH_SNAPSHOT_JOBS in parallel" "$s_copyn" \
            "$(rate "$BENCH_SNAPSHOT_ROWS" "$s_copyn")" "$(ratio "$s_copyn" "$s_relay")" "${SNAP[copyN]% }"
        printf '   %-55s %8.3f %10s %7s  %s\n' "the relay's query > /dev/null, $BENCH_SNAPSHOT_JOBS in parallel" "$s_json" \
            "$(rate "$BENCH_SNAPSHOT_ROWS" "$s_json")" "$(ratio "$s_json" "$s_relay")" "${SNAP[json]% }"
        echo "   (ratio = relay rows/s / that path's rows/s)  target >= 0.7x COPY: vs sequential $(verdict "$(ratio "$s_copy" "$s_relay")" '>=' 0.7), vs $BENCH_SNAPSHOT_JOBS parallel $(verdict "$(ratio "$s_copyn" "$s_relay")" '>=' 0.7)"
        echo "   relay: its own \"snapshot complete\" time $(median "${SNAP[relayown,$b]}")s; relay cpu $(median "${SNAP[relaycpu,$b]}")s, broker cpu $(median "${SNAP[brokercpu,$b]}")s"
    done
    if want_broker mock && want_broker kafka; then
        echo "   Kafka / test broker, relay rows/s: $(ratio "$(median "${SNAP[relay,mock]}")" "$(median "${SNAP[relay,kafka]}")")"
    fi
    echo "   the relay's query: COPY (SELECT cdc_relay.snapshot_row(t, t.*, ...) FROM ONLY t) TO STDOUT (FORMAT binary), the JSON the server makes for the relay"
    echo "   relay seconds: process start to exit (slot creation, snapshot, state record); the COPY runs need no broker: the same runs in both tables"
fi

if want latency; then
    echo
    echo "3. Commit-to-consumer latency (ms): pgbench -R $BENCH_LATENCY_RATE for ${BENCH_LATENCY_SECS}s, one INSERT per transaction, one run per broker and delivery mode${BENCH_EOS_ARGS:+ (exactly-once with $BENCH_EOS_ARGS)}"
    for b in "${BROKERS[@]}"; do
        echo "   into ${BTITLE[$b]}"
        printf '   %-15s %6s %7s | %-23s | %-15s | %-15s | %s\n' "" "" "" "commit -> consumer" "commit->produced" "produced->read" ""
        printf '   %-15s %6s %7s | %7s %7s %7s | %7s %7s | %7s %7s | %s\n' delivery tps events p50 p99 max p50 p99 p50 p99 "cpu: relay broker"
        for m in "${LAT_MODES[@]}"; do
            k=$b,$m
            read -r LAT_N _sent L50 L99 LMAX P50 P99 C50 C99 <<<"${LAT[$k]}"
            printf '   %-15s %6s %7s | %7s %7s %7s | %7s %7s | %7s %7s | %s %s\n' "${MODE_NAME[$m]}" "${LAT_TPS[$k]:-?}" "$LAT_N" \
                "$L50" "$L99" "$LMAX" "$P50" "$P99" "$C50" "$C99" "${LAT_RELAY_CPU[$k]}" "${LAT_BROKER_CPU[$k]}"
        done
        L99=-
        [[ -n ${LAT[$b,eos]:-} ]] && read -r _ _ _ L99 _ <<<"${LAT[$b,eos]}"
        [[ -n ${LAT_KTXN[$b,eos]:-} ]] &&
            echo "   exactly-once: ${LAT_KTXN[$b,eos]} Kafka transactions (checkpoint records), one per $(awk -v n="${LAT_KTXN[$b,eos]}" -v s="$BENCH_LATENCY_SECS" 'BEGIN { printf "%.0f", (n > 0) ? s * 1000 / n : 0 }') ms of the pgbench run on average"
        note=
        [[ $b == mock ]] && note=" (the mock shows messages before their transaction commits: the target is about Kafka)"
        [[ -z ${LAT[$b,eos]:-} ]] && note=" (no exactly-once run)"
        echo "   target (issue 9) exactly-once p99 <= 50 ms: $(verdict "$L99" '<=' 50)$note"
    done
    echo "   commit = the event's \"ts\" (commit timestamp); consumer = a perl reader's clock when kcat -C -u"
    echo "   (isolation.level=read_committed) hands it the line; produced = the message's CreateTime, which has"
    echo "   millisecond resolution (truncated), so the split is good to about 1 ms (hence a negative p50)"
fi

if want callgrind; then
    echo
    printf '4. Instructions per change: W2, %d transactions x 10 = %d changes, into the test broker, relay process only\n' \
        "$BENCH_CALLGRIND_TXNS" "$CG_CHANGES"
    printf '   %-48s %14s %10s %12s %8s %9s\n' delivery "instructions" "per change" "main thread" threads "wall (s)"
    for m in "${MODES[@]}"; do
        printf '   %-48s %14s %10s %12s %8s %9s\n' "cdc-relay run --endpos $(mode_label "$m")" "${CG_IR[$m]}" \
            "$(rate "${CG_IR[$m]}" "$CG_CHANGES")" "$(rate "${CG_MAIN[$m]}" "$CG_CHANGES")" "${CG_THREADS[$m]}" "${CG_SECS[$m]}"
    done
    if [[ -n ${CG_IR[eos]:-} && -n ${CG_IR[alo]:-} ]]; then
        echo "   exactly-once / at-least-once, instructions: $(ratio "${CG_IR[eos]}" "${CG_IR[alo]}") (main thread $(ratio "${CG_MAIN[eos]}" "${CG_MAIN[alo]}"))"
    fi
    [[ -n ${CG_IR[eos]:-} ]] &&
        echo "   exactly-once ran with --txn-interval-ms 600000 --txn-max-messages $BENCH_CALLGRIND_TXN_MESSAGES: $CG_KTXN Kafka transactions"
    echo "   valgrind --tool=callgrind --separate-threads=yes, the threads summed (librdkafka's included; start-up and"
    echo "   shutdown included) / changes; main thread = the relay's own thread (parsing, headers, produce calls,"
    echo "   delivery reports), the rest is librdkafka's.  Not a wall-time measure, and far steadier; timing-dependent"
    echo "   batching and polling in librdkafka still move the total by a few percent on a loaded machine."
fi

echo
echo "checks: $( ((CHECK_ERRORS == 0)) && echo "all passed (event and message counts, see the log above)" || echo "$CHECK_ERRORS FAILED (see above)")"
echo "command: $INVOCATION"
echo "total time: $(elapsed "$T_START" "$T_END")s"
REPORTED=1
((CHECK_ERRORS == 0))
