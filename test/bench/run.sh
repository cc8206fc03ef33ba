#!/usr/bin/env bash
# Decoding benchmark (make bench): decodes the same WAL through cdc_relay, pgoutput,
# wal2json (format-version 2) and test_decoding with pg_recvlogical and prints
# changes/s per plugin and cdc_relay's ratio to each peer.
#
#   W1  one transaction inserting BENCH_ROWS rows          (default 1,000,000)
#   W2  BENCH_TXNS transactions of 10 row changes each      (default 100,000)
#       (6 inserts, 3 updates, 1 delete; deterministic)
#
# Method: a throwaway PostgreSQL 15 server (run as the unprivileged "postgres" user
# when started as root) in a scratch directory under /tmp.  Before each workload one
# slot per plugin and repeat is created (plus one for the floor measurement), then
# the workload runs and the end LSN is recorded.  Each slot is then consumed with
#   pg_recvlogical -d bench -S <slot> --start --endpos <end> --no-loop -F 0 -f <file>
# one at a time, in the same order each repeat, and timed.  The reported time is
# the median over BENCH_REPEAT repeats; the first repeat's output is parsed to
# check that every plugin emitted exactly the changes the workload made.
# "floor" is pg_replication_slot_advance() to the same end LSN: WAL reading and
# decoding in fast-forward mode, with no reorder buffer and no output plugin.
# With BENCH_SQL=1 (default) each plugin also decodes the same WAL through
# the SQL interface (count(*) over pg_logical_slot_get_binary_changes): the same
# decoding and plugin work without the walsender's per-message socket writes and
# without pg_recvlogical, printed as a second table.
#
# Environment:
#   BENCH_ROWS, BENCH_TXNS, BENCH_REPEAT   workload sizes and repeats (smoke run:
#                                          BENCH_ROWS=20000 BENCH_TXNS=2000 BENCH_REPEAT=1)
#   BENCH_WORKLOADS   "W1 W2" (default) or a subset
#   BENCH_PLUGINS     default "cdc_relay pgoutput wal2json test_decoding"
#   BENCH_SQL=0       skip the SQL-interface table
#   BENCH_KEEP=1      keep the scratch directory (the server is stopped anyway)
#   BENCH_DECODING_WORK_MEM  logical_decoding_work_mem of the server (default 64MB, the
#                     PostgreSQL default; W1's transaction is far larger and spills to disk)
#   BENCH_TIMEOUT     seconds allowed per pg_recvlogical run (default 900)
#   PG_CONFIG         pg_config of the PostgreSQL 15 installation (default: pg_config)
set -euo pipefail
export LC_ALL=C

BENCH_ROWS=${BENCH_ROWS:-1000000}
BENCH_TXNS=${BENCH_TXNS:-100000}
BENCH_REPEAT=${BENCH_REPEAT:-3}
BENCH_WORKLOADS=${BENCH_WORKLOADS:-W1 W2}
BENCH_PLUGINS=${BENCH_PLUGINS:-cdc_relay pgoutput wal2json test_decoding}
BENCH_SQL=${BENCH_SQL:-1}
BENCH_KEEP=${BENCH_KEEP:-0}
BENCH_TIMEOUT=${BENCH_TIMEOUT:-900}
BENCH_DECODING_WORK_MEM=${BENCH_DECODING_WORK_MEM:-64MB}

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BENCH_NAME=bench
# shellcheck source=test/bench/lib.sh
source "$HERE/lib.sh"
INVOCATION="BENCH_ROWS=$BENCH_ROWS BENCH_TXNS=$BENCH_TXNS BENCH_REPEAT=$BENCH_REPEAT"
[[ "$BENCH_WORKLOADS" != "W1 W2" ]] && INVOCATION+=" BENCH_WORKLOADS='$BENCH_WORKLOADS'"
[[ "$BENCH_PLUGINS" != "cdc_relay pgoutput wal2json test_decoding" ]] && INVOCATION+=" BENCH_PLUGINS='$BENCH_PLUGINS'"
[[ "$BENCH_SQL" != 1 ]] && INVOCATION+=" BENCH_SQL=$BENCH_SQL"
[[ "$BENCH_DECODING_WORK_MEM" != 64MB ]] && INVOCATION+=" BENCH_DECODING_WORK_MEM=$BENCH_DECODING_WORK_MEM"
INVOCATION+=" bash test/bench/run.sh"

need_positive BENCH_ROWS BENCH_TXNS BENCH_REPEAT BENCH_TIMEOUT
[[ "$BENCH_DECODING_WORK_MEM" =~ ^[0-9]+(kB|MB|GB)$ ]] ||
    die "BENCH_DECODING_WORK_MEM must look like 64MB (got '$BENCH_DECODING_WORK_MEM')"
[[ "$BENCH_SQL" == 0 || "$BENCH_SQL" == 1 ]] || die "BENCH_SQL must be 0 or 1"
[[ "$BENCH_KEEP" == 0 || "$BENCH_KEEP" == 1 ]] || die "BENCH_KEEP must be 0 or 1"
for w in $BENCH_WORKLOADS; do
    [[ "$w" == W1 || "$w" == W2 ]] || die "unknown workload '$w' in BENCH_WORKLOADS (W1, W2)"
done
for p in $BENCH_PLUGINS; do
    case "$p" in cdc_relay|pgoutput|wal2json|test_decoding) ;;
        *) die "unknown plugin '$p' in BENCH_PLUGINS" ;;
    esac
done

# ---------------------------------------------------------------- packages
ensure_packages() {
    local pkgs=(postgresql-15 postgresql-client-15 postgresql-server-dev-15
                postgresql-15-wal2json postgresql-contrib)
    local missing=() p
    for p in "${pkgs[@]}"; do
        [[ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null)" == installed ]] || missing+=("$p")
    done
    ((${#missing[@]} == 0)) && return 0
    ((EUID == 0)) || die "missing packages: ${missing[*]} (run as root, or: apt-get install ${missing[*]})"
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q --no-install-recommends "${missing[@]}" >&2 ||
        { apt-get update -q >&2 && apt-get install -y -q --no-install-recommends "${missing[@]}" >&2; } ||
        die "could not install ${missing[*]}"
}
if command -v dpkg-query >/dev/null; then ensure_packages; fi

bench_pg_tools
for p in $BENCH_PLUGINS; do
    [[ "$p" == pgoutput ]] && continue
    if [[ ! -f "$PKGLIBDIR/$p.so" ]]; then
        if [[ "$p" == cdc_relay ]]; then
            die "$PKGLIBDIR/cdc_relay.so is not installed: run 'make && make install' first (or BENCH_PLUGINS='pgoutput wal2json test_decoding' to bench only the peers)"
        fi
        die "$PKGLIBDIR/$p.so is not installed"
    fi
done

# ---------------------------------------------------------------- scratch server
# test/lib/pg.sh starts it (as the unprivileged postgres user when we are root).
# shellcheck source=test/lib/pg.sh
source "$HERE/../lib/pg.sh"
if ((EUID == 0)); then
    id postgres >/dev/null 2>&1 || die "user 'postgres' does not exist (install postgresql-15)"
fi
as_server() { pg_as_user "$@"; }
export PGUSER=$PG_SUPERUSER

SCRATCH=$(pg_scratch_dir bench) || die "could not create a scratch directory"
RECV_PID=
PERF_PID=

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [[ -n "$PERF_PID" ]]; then
        kill -INT "$PERF_PID" 2>/dev/null || true
        wait "$PERF_PID" 2>/dev/null || true
    fi
    if [[ -n "$RECV_PID" ]]; then
        kill "$RECV_PID" 2>/dev/null || true
        wait "$RECV_PID" 2>/dev/null || true
    fi
    if ((rc != 0)) && [[ -f "$SCRATCH/server.log" ]]; then
        echo "bench: last lines of the server log:" >&2
        tail -n 20 "$SCRATCH/server.log" >&2 || true
    fi
    if [[ "$BENCH_KEEP" == 1 ]]; then
        as_server "$BINDIR/pg_ctl" -D "$SCRATCH/data" -m immediate -w stop >/dev/null 2>&1 || true
        echo "bench: kept $SCRATCH" >&2
    else
        pg_stop || true     # stops the server and removes the scratch directory
    fi
    exit "$rc"
}

PORT=$(pg_free_port) || die "no free TCP port"

# Slots needed at once: per repeat one per plugin (two with BENCH_SQL=1) plus the floor.
NPLUGINS=$(wc -w <<<"$BENCH_PLUGINS")
MAX_SLOTS=$(( (NPLUGINS * (BENCH_SQL == 1 ? 2 : 1) + 1) * BENCH_REPEAT + 4 ))
((MAX_SLOTS < 10)) && MAX_SLOTS=10

log "initdb in $SCRATCH (port $PORT)"
pg_start "$SCRATCH" "$PORT" \
    "# ---- cdc_relay decoding benchmark ----" \
    "synchronous_commit = off" \
    "max_wal_senders = $MAX_SLOTS" \
    "max_replication_slots = $MAX_SLOTS" \
    "shared_buffers = 512MB" \
    "max_wal_size = 20GB" \
    "checkpoint_timeout = 1h" \
    "autovacuum = off" \
    "logical_decoding_work_mem = '$BENCH_DECODING_WORK_MEM'" ||
    die "server did not start"
# pg_start sets its own EXIT trap; the benchmark's cleanup does more and calls pg_stop.
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
export PGHOST=$SCRATCH PGPORT=$PORT PGDATABASE=bench PGAPPNAME=cdc_relay-bench

"$BINDIR/createdb" -T template0 bench
psql_q -f "$HERE/schema.sql" >/dev/null

# ---------------------------------------------------------------- per plugin
# The same options as SQL function arguments.
plugin_sql_opts() {
    case "$1" in
        pgoutput) echo ", 'proto_version', '1', 'publication_names', 'bench_pub'" ;;
        wal2json) echo ", 'format-version', '2'" ;;
        *) echo "" ;;
    esac
}

plugin_opts() {
    case "$1" in
        pgoutput) echo "-o proto_version=1 -o publication_names=bench_pub" ;;
        wal2json) echo "-o format-version=2" ;;
        *) echo "" ;;
    esac
}

# Prints "<inserts> <updates> <deletes>" found in a plugin's output file.
count_changes() {
    local plugin=$1 file=$2
    case "$plugin" in
        cdc_relay)
            awk '{ p = substr($0, 1, 9) }
                 p == "{\"op\":\"c\"" { i++ } p == "{\"op\":\"u\"" { u++ } p == "{\"op\":\"d\"" { d++ }
                 END { print i + 0, u + 0, d + 0 }' "$file" ;;
        wal2json)
            awk '{ p = substr($0, 1, 13) }
                 p == "{\"action\":\"I\"" { i++ } p == "{\"action\":\"U\"" { u++ } p == "{\"action\":\"D\"" { d++ }
                 END { print i + 0, u + 0, d + 0 }' "$file" ;;
        test_decoding)
            awk '$1 == "table" { if ($3 == "INSERT:") i++; else if ($3 == "UPDATE:") u++; else if ($3 == "DELETE:") d++ }
                 END { print i + 0, u + 0, d + 0 }' "$file" ;;
        pgoutput)
            perl "$HERE/count_pgoutput.pl" "$file" ;;
    esac
}

declare -A SECS SQLSECS CPU BYTES COUNTED CMD
declare -A W_CHANGES W_EXPECT W_DESC W_GEN W_WAL
COUNT_ERRORS=0

# Walsender CPU time is measured with "perf stat -e task-clock -p <walsender pid>"
# when perf works here (root, linux-perf installed); otherwise it is reported as "-".
HAVE_PERF=0
if command -v perf >/dev/null && perf stat -x, -e task-clock -- true >/dev/null 2>&1; then HAVE_PERF=1; fi
PERF_PID=

# Attaches perf stat to the walsender serving $1 (polls for it for up to 2 s).
start_cpu_probe() {
    local slot=$1 i wpid=
    PERF_PID=
    rm -f "$SCRATCH/perf.txt"
    ((HAVE_PERF)) || return 0
    for ((i = 0; i < 100; i++)); do
        wpid=$(sql bench "SELECT active_pid FROM pg_replication_slots WHERE slot_name = '$slot' AND active_pid IS NOT NULL")
        [[ -n "$wpid" ]] && break
        [[ -n "$RECV_PID" ]] && ! kill -0 "$RECV_PID" 2>/dev/null && return 0
        sleep 0.02
    done
    [[ -n "$wpid" ]] || return 0
    perf stat -x, -e task-clock -o "$SCRATCH/perf.txt" -p "$wpid" >/dev/null 2>&1 &
    PERF_PID=$!
}

# Waits for the probe (perf ends when the walsender exits); sets LAST_CPU (seconds or "-").
finish_cpu_probe() {
    local i
    LAST_CPU=-
    [[ -n "$PERF_PID" ]] || return 0
    for ((i = 0; i < 100; i++)); do kill -0 "$PERF_PID" 2>/dev/null || break; sleep 0.05; done
    kill -INT "$PERF_PID" 2>/dev/null || true
    wait "$PERF_PID" 2>/dev/null || true
    PERF_PID=
    [[ -f "$SCRATCH/perf.txt" ]] &&
        LAST_CPU=$(awk -F, '$3 == "task-clock" && $1 ~ /^[0-9.]+$/ { printf "%.3f", $1 / 1000; found = 1 }
                            END { if (!found) print "-" }' "$SCRATCH/perf.txt")
    return 0
}

# Runs one pg_recvlogical, in the background so that signals reach our trap;
# sets LAST_SECS (wall clock) and LAST_CPU (walsender CPU seconds or "-").
decode_one() {
    local plugin=$1 slot=$2 endpos=$3 out=$4 rc=0 t0 t1
    local -a cmd=("$BINDIR/pg_recvlogical" -d bench -S "$slot" --start --endpos "$endpos" --no-loop
                  -F 0 -f "$out")
    # shellcheck disable=SC2207
    cmd+=($(plugin_opts "$plugin"))
    LAST_CMD="pg_recvlogical -d bench -S $slot --start --endpos $endpos --no-loop -F 0 -f $out $(plugin_opts "$plugin")"
    LAST_CMD=${LAST_CMD% }
    rm -f "$out"
    t0=$(now)
    timeout "$BENCH_TIMEOUT" "${cmd[@]}" 2>"$SCRATCH/recv.err" &
    RECV_PID=$!
    start_cpu_probe "$slot"
    wait "$RECV_PID" || rc=$?
    t1=$(now)
    RECV_PID=
    finish_cpu_probe
    if ((rc != 0)); then
        cat "$SCRATCH/recv.err" >&2
        ((rc == 124)) && die "$plugin: pg_recvlogical did not reach $endpos within ${BENCH_TIMEOUT}s"
        die "$plugin: pg_recvlogical exited with status $rc"
    fi
    LAST_SECS=$(elapsed "$t0" "$t1")
}

run_workload() {
    local w=$1 r p slot start_lsn end_lsn t0 t1 out counted msgs
    local lw=${w,,}

    for ((r = 1; r <= BENCH_REPEAT; r++)); do
        sql bench "SELECT pg_create_logical_replication_slot('${lw}_floor_r$r', 'test_decoding')" >/dev/null
        for p in $BENCH_PLUGINS; do
            sql bench "SELECT pg_create_logical_replication_slot('${lw}_${p}_r$r', '$p')" >/dev/null
            if [[ $BENCH_SQL == 1 ]]; then
                sql bench "SELECT pg_create_logical_replication_slot('${lw}_${p}_sql_r$r', '$p')" >/dev/null
            fi
        done
    done

    start_lsn=$(sql bench "SELECT pg_current_wal_insert_lsn()")
    t0=$(now)
    if [[ $w == W1 ]]; then
        log "W1: inserting $BENCH_ROWS rows in one transaction"
        psql_q -v rows="$BENCH_ROWS" -f "$HERE/w1.sql" >/dev/null
        W_CHANGES[$w]=$BENCH_ROWS
        W_EXPECT[$w]="$BENCH_ROWS 0 0"
        W_DESC[$w]="1 transaction x $BENCH_ROWS inserts"
    else
        log "W2: $BENCH_TXNS transactions x (6 inserts, 3 updates, 1 delete)"
        psql_q -v txns="$BENCH_TXNS" -f "$HERE/w2.sql" >/dev/null
        W_CHANGES[$w]=$((10 * BENCH_TXNS))
        W_EXPECT[$w]="$((6 * BENCH_TXNS)) $((3 * BENCH_TXNS)) $BENCH_TXNS"
        W_DESC[$w]="$BENCH_TXNS transactions x (6 ins + 3 upd + 1 del)"
    fi
    t1=$(now)
    W_GEN[$w]=$(elapsed "$t0" "$t1")
    # The insert position, not pg_current_wal_lsn() (the write position, which can lag
    # behind the last asynchronous commit).  Wait until it is flushed, so the walsenders
    # never wait for the WAL writer, and checkpoint now rather than during a timed run.
    end_lsn=$(sql bench "SELECT pg_current_wal_insert_lsn()")
    until [[ $(sql bench "SELECT pg_current_wal_flush_lsn() >= '$end_lsn'::pg_lsn") == t ]]; do sleep 0.1; done
    sql bench "CHECKPOINT"
    W_WAL[$w]=$(sql bench "SELECT pg_wal_lsn_diff('$end_lsn', '$start_lsn')")
    log "$w: workload took ${W_GEN[$w]}s, $(( ${W_WAL[$w]} / 1048576 )) MB of WAL, end LSN $end_lsn"

    for ((r = 1; r <= BENCH_REPEAT; r++)); do
        # Floor first: it also brings the WAL into the page cache for everyone.
        slot="${lw}_floor_r$r"
        t0=$(now)
        sql bench "SELECT pg_replication_slot_advance('$slot', '$end_lsn')" >/dev/null
        t1=$(now)
        SECS[$w,floor]+="$(elapsed "$t0" "$t1") "
        sql bench "SELECT pg_drop_replication_slot('$slot')" >/dev/null
        for p in $BENCH_PLUGINS; do
            slot="${lw}_${p}_r$r"
            out="$SCRATCH/out_${lw}_$p"
            decode_one "$p" "$slot" "$end_lsn" "$out"
            SECS[$w,$p]+="$LAST_SECS "
            CPU[$w,$p]+="$LAST_CPU "
            log "$w repeat $r: $p ${LAST_SECS}s (walsender CPU $([[ $LAST_CPU == - ]] && echo "not measured" || echo "${LAST_CPU}s"))"
            if ((r == 1)); then
                CMD[$p]=$LAST_CMD
                BYTES[$w,$p]=$(stat -c %s "$out")
                counted=$(count_changes "$p" "$out")
                COUNTED[$w,$p]=$counted
                if [[ "$counted" != "${W_EXPECT[$w]}" ]]; then
                    log "$w: $p emitted ins/upd/del = $counted, expected ${W_EXPECT[$w]}"
                    COUNT_ERRORS=$((COUNT_ERRORS + 1))
                fi
            fi
            rm -f "$out"
            sql bench "SELECT pg_drop_replication_slot('$slot')" >/dev/null
        done
        [[ $BENCH_SQL == 1 ]] || continue
        for p in $BENCH_PLUGINS; do
            slot="${lw}_${p}_sql_r$r"
            t0=$(now)
            msgs=$(sql bench "SELECT count(*) FROM pg_logical_slot_get_binary_changes('$slot', '$end_lsn', NULL $(plugin_sql_opts "$p"))")
            t1=$(now)
            SQLSECS[$w,$p]+="$(elapsed "$t0" "$t1") "
            log "$w repeat $r: $p via SQL $(elapsed "$t0" "$t1")s ($msgs messages)"
            ((msgs >= ${W_CHANGES[$w]})) || die "$w: $p returned only $msgs messages through the SQL interface"
            sql bench "SELECT pg_drop_replication_slot('$slot')" >/dev/null
        done
    done
}

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
T_START=$(now)
for w in $BENCH_WORKLOADS; do run_workload "$w"; done
T_END=$(now)

# ---------------------------------------------------------------- report
# target PEER RATIO: ">=1.6x ok" / ">=1.6x MISSED" for cdc_relay's speed ratio RATIO
# against PEER (empty when PEER has no target or RATIO is "-").
target() {
    local want
    case $1 in pgoutput) want=1.0 ;; wal2json) want=1.6 ;; *) return 0 ;; esac
    [[ "$2" == - ]] && return 0
    echo ">=${want}x $(verdict "$2" '>=' "$want")"
}
HAS_CDC=0
[[ " $BENCH_PLUGINS " == *" cdc_relay "* ]] && HAS_CDC=1

echo
echo "cdc_relay decoding benchmark  ($PGVERSION, $(nproc) CPUs, $(date -u +%Y-%m-%dT%H:%MZ))"
echo "seconds = median wall time of $BENCH_REPEAT pg_recvlogical --endpos run(s), best = fastest run;"
echo "changes/s = workload row changes / seconds; ratio = cdc_relay changes/s / peer changes/s"
echo "target: cdc_relay >= 1.0x pgoutput and >= 1.6x wal2json (printed, not asserted)"
echo "wsnd cpu = median CPU seconds of the walsender process (perf stat task-clock), cpu ratio = peer / cdc_relay"
echo "load average before: $LOAD_BEFORE   after: $(cut -d' ' -f1-3 /proc/loadavg)   (other load on the machine skews wall times)"
for w in $BENCH_WORKLOADS; do
    echo
    printf '%s: %s = %d changes, %.1f MB WAL (workload took %ss)\n' "$w" "${W_DESC[$w]}" \
        "${W_CHANGES[$w]}" "$(awk -v b="${W_WAL[$w]}" 'BEGIN { print b / 1048576 }')" "${W_GEN[$w]}"
    counts=
    for p in $BENCH_PLUGINS; do counts+="${COUNTED[$w,$p]}"$'\n'; done
    if [[ $(sort -u <<<"$counts" | awk 'NF' | wc -l) == 1 ]]; then
        read -r ci cu cd <<<"${COUNTED[$w,${BENCH_PLUGINS%% *}]}"
        printf "  counted in every plugin's output: %s inserts, %s updates, %s deletes (%s)\n" "$ci" "$cu" "$cd" \
            "$([[ "$ci $cu $cd" == "${W_EXPECT[$w]}" ]] && echo "as expected" || echo "EXPECTED ${W_EXPECT[$w]// /\/}")"
    else
        for p in $BENCH_PLUGINS; do
            echo "  counted in $p's output: ins/upd/del = ${COUNTED[$w,$p]// /\/} (expected ${W_EXPECT[$w]// /\/})"
        done
    fi
    printf '%-16s %8s %8s %10s %7s %-13s %9s %8s %9s  %s\n' \
        plugin seconds best changes/s ratio target "output MB" "wsnd cpu" "cpu ratio" "runs (s)"
    cdc_secs=-; cdc_cpu=-
    if ((HAS_CDC)); then
        cdc_secs=$(median "${SECS[$w,cdc_relay]}")
        cdc_cpu=$(median "${CPU[$w,cdc_relay]}")
    fi
    for p in $BENCH_PLUGINS floor; do
        s=$(median "${SECS[$w,$p]}")
        r=-; tg=; cpu=-; cr=-; mb=-; name=$p
        if [[ $p == floor ]]; then
            name="(floor)"
        else
            mb=$(awk -v b="${BYTES[$w,$p]}" 'BEGIN { printf "%.1f", b / 1048576 }')
            cpu=$(median "${CPU[$w,$p]}")
        fi
        if [[ $p != cdc_relay && $p != floor ]]; then
            r=$(ratio "$s" "$cdc_secs")     # cdc_relay's rate / the peer's
            cr=$(ratio "$cpu" "$cdc_cpu")   # the peer's CPU / cdc_relay's
            tg=$(target "$p" "$r")
        fi
        printf '%-16s %8.3f %8.3f %10s %7s %-13s %9s %8s %9s  %s\n' "$name" "$s" "$(lowest "${SECS[$w,$p]}")" \
            "$(rate "${W_CHANGES[$w]}" "$s")" "$r" "$tg" "$mb" "$cpu" "$cr" "${SECS[$w,$p]% }"
    done
    [[ $BENCH_SQL == 1 ]] || continue
    echo "  same WAL through the SQL interface (no walsender socket, no pg_recvlogical):"
    cdc_secs=-
    ((HAS_CDC)) && cdc_secs=$(median "${SQLSECS[$w,cdc_relay]}")
    for p in $BENCH_PLUGINS; do
        s=$(median "${SQLSECS[$w,$p]}")
        r=-; tg=
        if [[ $p != cdc_relay ]]; then
            r=$(ratio "$s" "$cdc_secs")
            tg=$(target "$p" "$r")
        fi
        printf '  %-14s %8.3f %8.3f %10s %7s %-13s %9s %8s %9s  %s\n' "$p" "$s" "$(lowest "${SQLSECS[$w,$p]}")" \
            "$(rate "${W_CHANGES[$w]}" "$s")" "$r" "$tg" "" "" "" "${SQLSECS[$w,$p]% }"
    done
done

echo
echo "checked: every plugin emitted exactly the workload's inserts/updates/deletes: $( ((COUNT_ERRORS == 0)) && echo yes || echo "NO ($COUNT_ERRORS mismatches, see above)")"
echo "(floor) = pg_replication_slot_advance() to the same end LSN: WAL read in fast-forward mode, no reorder buffer, no plugin"
echo "server: fsync=off synchronous_commit=off shared_buffers=512MB wal_level=logical logical_decoding_work_mem=$BENCH_DECODING_WORK_MEM"
echo
echo "command: $INVOCATION"
echo "decoding commands (first repeat of the last workload):"
for p in $BENCH_PLUGINS; do echo "  $p: ${CMD[$p]}"; done
if [[ $BENCH_SQL == 1 ]]; then
    echo "SQL interface: SELECT count(*) FROM pg_logical_slot_get_binary_changes('<slot>', '<end LSN>', NULL[, options as above])"
fi
echo "total benchmark time: $(elapsed "$T_START" "$T_END")s"

((COUNT_ERRORS == 0)) || exit 1
