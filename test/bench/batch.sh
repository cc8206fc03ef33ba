#!/usr/bin/env bash
# What the plugin option batch-events buys on the decoding side (not part of make bench).
#
# The relay's decoding ceiling is pg_recvlogical -o key-prefix=true -f /dev/null.  This
# decodes the same WAL that way without and with -o batch-events=true, alternating,
# BENCH_REPEAT times each, and prints per variant the median wall seconds, changes/s, the
# walsender's CPU (perf stat task-clock on its pid, "-" without perf) and pg_recvlogical's
# CPU (user + sys).
#
#   W2  BENCH_TXNS transactions of 10 row changes (default 100,000; test/bench/w2.sql)
#   W1  one transaction of BENCH_ROWS inserts        (default 200,000; test/bench/w1.sql)
#
# First, untimed, it checks that batching changes nothing but the message boundaries:
# pg_recvlogical ends every message with a newline, so the output files with and without
# batch-events must be byte-identical.  With BENCH_BASE_PLUGIN=<name> (another build of
# the plugin installed as <name>.so next to cdc_relay.so, e.g. the previous version) it
# also checks that this build's output without batch-events, with and without
# key-prefix, is byte-identical to that build's.
#
# Environment: BENCH_TXNS, BENCH_ROWS, BENCH_REPEAT (default 3), BENCH_WORKLOADS ("W2 W1"),
# BENCH_BASE_PLUGIN, BENCH_TIMEOUT (900 s per run), PG_CONFIG (the PostgreSQL 15 whose
# server and plugin library are used; the server is started from its bindir).
set -euo pipefail
export LC_ALL=C

BENCH_TXNS=${BENCH_TXNS:-100000}
BENCH_ROWS=${BENCH_ROWS:-200000}
BENCH_REPEAT=${BENCH_REPEAT:-3}
BENCH_WORKLOADS=${BENCH_WORKLOADS:-W2 W1}
BENCH_BASE_PLUGIN=${BENCH_BASE_PLUGIN:-}
BENCH_TIMEOUT=${BENCH_TIMEOUT:-900}

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BENCH_NAME=batch
# shellcheck source=test/bench/lib.sh
source "$HERE/lib.sh"
need_positive BENCH_TXNS BENCH_ROWS BENCH_REPEAT BENCH_TIMEOUT
bench_pg_tools
[[ -f "$PKGLIBDIR/cdc_relay.so" ]] || die "$PKGLIBDIR/cdc_relay.so is not installed"
[[ -z "$BENCH_BASE_PLUGIN" || -f "$PKGLIBDIR/$BENCH_BASE_PLUGIN.so" ]] ||
    die "BENCH_BASE_PLUGIN: $PKGLIBDIR/$BENCH_BASE_PLUGIN.so is not installed"
HAVE_PERF=0
if command -v perf >/dev/null && perf stat -x, -e task-clock -- true >/dev/null 2>&1; then HAVE_PERF=1; fi

# The server of that installation, so that it loads that installation's plugin.
export PG_BINDIR=$BINDIR
# shellcheck source=test/lib/pg.sh
source "$HERE/../lib/pg.sh"
SCRATCH=$(pg_scratch_dir batch) || die "could not create a scratch directory"
PORT=$(pg_free_port) || die "no free TCP port"
pg_start "$SCRATCH" "$PORT" "synchronous_commit = off" "max_wal_senders = 20" \
    "max_replication_slots = 40" "shared_buffers = 512MB" "max_wal_size = 20GB" \
    "checkpoint_timeout = 1h" "autovacuum = off" \
    "output_plugin_libraries = 'pgoutput, test_decoding, cdc_relay${BENCH_BASE_PLUGIN:+, $BENCH_BASE_PLUGIN}'" ||
    die "server did not start"
export PGHOST=$SCRATCH PGPORT=$PORT PGUSER=$PG_SUPERUSER PGDATABASE=bench
PM_PID=$(head -n 1 "$SCRATCH/data/postmaster.pid")
LAST_WPID=
"$BINDIR/createdb" -T template0 bench
psql_q -f "$HERE/schema.sql" >/dev/null

VARIANTS="kp batch"
declare -A OPTS=([kp]="-o key-prefix=true" [batch]="-o key-prefix=true -o batch-events=true"
                 [plain]="" [base_kp]="-o key-prefix=true" [base_plain]="")
declare -A SECS WCPU RCPU
CHECKS=()


# decode SLOT VARIANT OUT: pg_recvlogical to OUT up to END_LSN; sets LAST_SECS, LAST_WCPU,
# LAST_RCPU.
decode() {
    local slot=$1 v=$2 out=$3 rc=0 t0 t1 c0 c1 wpid= perf_pid= i p
    # shellcheck disable=SC2086
    set -- "$BINDIR/pg_recvlogical" -d bench -S "$slot" --start --endpos "$END_LSN" --no-loop -F 0 -f "$out" ${OPTS[$v]}
    children_cpu c0
    t0=$(now)
    timeout "$BENCH_TIMEOUT" "$@" 2>"$SCRATCH/recv.err" &
    local recv=$!
    if ((HAVE_PERF)); then
        # the postmaster's new walsender child, found without a query (fast, so perf
        # misses little of its life)
        for ((i = 0; i < 1000; i++)); do
            for p in $(pgrep -P "$PM_PID"); do
                [[ $p != "$LAST_WPID" && $(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null) == *walsender* ]] && wpid=$p
            done
            [[ -z "$wpid" ]] && kill -0 "$recv" 2>/dev/null || break
            sleep 0.002
        done
        LAST_WPID=$wpid
        [[ -n "$wpid" ]] && { perf stat -x, -e task-clock -o "$SCRATCH/perf.txt" -p "$wpid" >/dev/null 2>&1 & perf_pid=$!; }
    fi
    wait "$recv" || rc=$?
    t1=$(now)
    children_cpu c1
    LAST_WCPU=-
    if [[ -n "$perf_pid" ]]; then
        for ((i = 0; i < 100; i++)); do kill -0 "$perf_pid" 2>/dev/null || break; sleep 0.05; done
        kill -INT "$perf_pid" 2>/dev/null || true
        wait "$perf_pid" 2>/dev/null || true
        LAST_WCPU=$(awk -F, '$3 == "task-clock" && $1 ~ /^[0-9.]+$/ { printf "%.3f", $1 / 1000; f = 1 }
                             END { if (!f) print "-" }' "$SCRATCH/perf.txt")
    fi
    ((rc == 0)) || { cat "$SCRATCH/recv.err" >&2; die "pg_recvlogical ($v) exited with status $rc"; }
    LAST_SECS=$(elapsed "$t0" "$t1")
    LAST_RCPU=$(awk -v a="$c0" -v b="$c1" 'BEGIN { printf "%.3f", b - a }')
}

# scan_bench W FILE: relay/scan.c against jansson on FILE (test/bench/scan_bench.c; skipped
# without cc or jansson); instructions per begin/commit from callgrind when valgrind is here.
SCAN_BENCH=
scan_bench() {
    local w=$1 f=$2 m none
    local -A ir
    if [[ -z "$SCAN_BENCH" ]]; then
        SCAN_BENCH=$SCRATCH/scan_bench
        cc -std=c11 -O2 -D_GNU_SOURCE -I"$HERE/../../relay" "$HERE/../../relay/scan.c" "$HERE/scan_bench.c" \
            $(pkg-config --cflags --libs jansson 2>/dev/null) -o "$SCAN_BENCH" 2>"$SCRATCH/cc.err" ||
            { log "scan_bench not built: $(head -n 1 "$SCRATCH/cc.err")"; SCAN_BENCH=-; }
    fi
    [[ "$SCAN_BENCH" != - ]] || return 0
    SCAN_OUT+="$("$SCAN_BENCH" "$f" all 5 | sed "s|^$f|$w|")"$'\n'
    command -v valgrind >/dev/null || return 0
    # on the first 120,000 events (callgrind is slow)
    head -n 120000 "$f" >"$f.head"
    for m in none split jansson scan; do
        ir[$m]=$(valgrind --tool=callgrind --callgrind-out-file=/dev/null "$SCAN_BENCH" "$f.head" "$m" 1 2>&1 >/dev/null |
                 awk '/Collected :/ { print $NF }')
    done
    none=${ir[none]}
    SCAN_OUT+="$(awk -v j="${ir[jansson]}" -v s="${ir[scan]}" -v l="${ir[split]}" -v z="$none" \
        -v n="$(grep -c '^{"op":"\(begin\|commit\)"' "$f.head")" -v c="$(grep -c "$(printf '\t')" "$f.head")" -v e=120000 \
        'BEGIN { printf "  instructions (callgrind, first %d events): split + TAB test %.0f per event; begin/commit by jansson %.0f, by scan.c %.0f (%.0f and %.0f per row change)", e, (l - z) / e, (j - z) / n, (s - z) / n, (j - z) / c, (s - z) / c }')"$'\n'
    rm -f "$f.head"
}
SCAN_OUT=

slot() { sql bench "SELECT pg_create_logical_replication_slot('$1', '$2')" >/dev/null; }

run_workload() {
    local w=$1 lw=${1,,} r v start_lsn
    for v in $VARIANTS; do
        slot "${lw}_chk_$v" cdc_relay
        for ((r = 1; r <= BENCH_REPEAT; r++)); do slot "${lw}_${v}_r$r" cdc_relay; done
    done
    slot "${lw}_chk_plain" cdc_relay
    if [[ -n "$BENCH_BASE_PLUGIN" ]]; then
        slot "${lw}_chk_base_kp" "$BENCH_BASE_PLUGIN"
        slot "${lw}_chk_base_plain" "$BENCH_BASE_PLUGIN"
    fi
    start_lsn=$(sql bench "SELECT pg_current_wal_insert_lsn()")
    if [[ $w == W1 ]]; then
        CHANGES[$w]=$BENCH_ROWS
        psql_q -v rows="$BENCH_ROWS" -f "$HERE/w1.sql" >/dev/null
    else
        CHANGES[$w]=$((10 * BENCH_TXNS))
        psql_q -v txns="$BENCH_TXNS" -f "$HERE/w2.sql" >/dev/null
    fi
    END_LSN=$(sql bench "SELECT pg_current_wal_insert_lsn()")
    until [[ $(sql bench "SELECT pg_current_wal_flush_lsn() >= '$END_LSN'::pg_lsn") == t ]]; do sleep 0.1; done
    sql bench "CHECKPOINT"
    log "$w: ${CHANGES[$w]} changes, $(( $(sql bench "SELECT pg_wal_lsn_diff('$END_LSN', '$start_lsn')") / 1048576 )) MB of WAL"

    # untimed checks (also bring the WAL into the page cache)
    for v in $VARIANTS plain ${BENCH_BASE_PLUGIN:+base_kp base_plain}; do
        decode "${lw}_chk_$v" "$v" "$SCRATCH/$lw.$v"
    done
    CHECKS+=("$w: output with batch-events identical to without: $(cmp -s "$SCRATCH/$lw.kp" "$SCRATCH/$lw.batch" && echo yes || echo NO) ($(wc -l <"$SCRATCH/$lw.kp") lines)")
    if [[ -n "$BENCH_BASE_PLUGIN" ]]; then
        CHECKS+=("$w: default output identical to $BENCH_BASE_PLUGIN's: $(cmp -s "$SCRATCH/$lw.plain" "$SCRATCH/$lw.base_plain" && echo yes || echo NO), with key-prefix: $(cmp -s "$SCRATCH/$lw.kp" "$SCRATCH/$lw.base_kp" && echo yes || echo NO)")
    fi
    scan_bench "$w" "$SCRATCH/$lw.kp"
    rm -f "$SCRATCH/$lw".*

    for ((r = 1; r <= BENCH_REPEAT; r++)); do
        for v in $VARIANTS; do
            decode "${lw}_${v}_r$r" "$v" /dev/null
            SECS[$w,$v]+="$LAST_SECS "
            WCPU[$w,$v]+="$LAST_WCPU "
            RCPU[$w,$v]+="$LAST_RCPU "
            log "$w repeat $r: $v ${LAST_SECS}s, walsender CPU ${LAST_WCPU}s, pg_recvlogical CPU ${LAST_RCPU}s"
        done
    done
}

declare -A CHANGES
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
for w in $BENCH_WORKLOADS; do run_workload "$w"; done

echo
echo "batch-events on the decoding side  ($PGVERSION, $(nproc) CPUs, $(date -u +%Y-%m-%dT%H:%MZ))"
echo "load average before: $LOAD_BEFORE   after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "medians of $BENCH_REPEAT; kp = -o key-prefix=true (the relay's ceiling today), batch = kp + -o batch-events=true"
printf '%s\n' "${CHECKS[@]}"
[[ -z "$SCAN_OUT" ]] || printf '\nrelay/scan.c against jansson (begin/commit as stream.c reads them; test/bench/scan_bench.c)\n%s' "$SCAN_OUT"
for w in $BENCH_WORKLOADS; do
    echo
    printf '%-3s %-6s %8s %10s %9s %9s %7s  %s\n' "$w" variant seconds changes/s "wsnd cpu" "recv cpu" speed "runs (s)"
    for v in $VARIANTS; do
        s=$(median "${SECS[$w,$v]}")
        printf '%-3s %-6s %8s %10s %9s %9s %7s  %s\n' "" "$v" "$s" "$(rate "${CHANGES[$w]}" "$s")" \
            "$(median "${WCPU[$w,$v]}")" "$(median "${RCPU[$w,$v]}")" \
            "$(ratio "$(median "${SECS[$w,kp]}")" "$s")" "${SECS[$w,$v]% }"
    done
done
